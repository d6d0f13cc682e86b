//! nathelper's script functions through the real engine (the modules' registrar, as the
//! proxy builds it): what they return, the script errors their arguments raise, the AVP
//! `fix_nated_register` fills (also under a configured `received_avp`), and the lumps they
//! leave on the message. The relayed bytes of a NAT-ed INVITE are checked end to end by
//! scripts/nat.test.toml.

mod support;

use bytes::Bytes;
use siprox::config::Config;
use siprox::message::{Edits, SipMsg};
use siprox::modules::Modules;
use siprox::script::api::{Ctx, RouteKind};
use siprox::script::{run_hook, Outcome};
use std::net::SocketAddr;
use std::sync::Arc;
use support::recording::{avp, compile_script, Core};

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-n1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: nat-1@192.168.1.20\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.168.1.20:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 57\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\nc=IN IP4 192.168.1.20\r\n";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.168.1.20:5060;branch=z9hG4bK-r1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=r1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: reg-1@192.168.1.20\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.168.1.20:5060>;expires=60\r\n\
Content-Length: 0\r\n\r\n";

/// Runs `route` of `src` on `text`, received from 203.0.113.7:40123 (a NAT's binding) over
/// `proto` on 10.0.0.1:5060, with the module parameters of `cfg`.
fn run(cfg: &Config, src: &str, text: &str, proto: &'static str) -> (Ctx, Outcome) {
    let bundle = compile_script(&Modules::new(cfg), src, "nat.rhai");
    let core = Arc::new(Core::default());
    let msg = SipMsg::parse(Bytes::from(text.to_string())).expect("parses");
    let from: SocketAddr = "203.0.113.7:40123".parse().expect("addr");
    let local: SocketAddr = "10.0.0.1:5060".parse().expect("addr");
    run_hook(&bundle, "route", Ctx::new(RouteKind::Request, msg, from, proto, local, core))
}

fn rendered(ctx: &Ctx) -> String {
    String::from_utf8(Edits::render(&ctx.msg, &[&ctx.edits])).expect("utf8")
}

fn var(ctx: &Ctx, name: &str) -> String {
    avp(ctx, name)
}

#[test]
fn nat_uac_test_takes_names_and_old_masks() {
    let script = r#"
        fn route() {
            $avp(names) = nat_uac_test("diff-ip-src-via,private-contact");
            $avp(mask) = nat_uac_test(19);
            $avp(text_mask) = nat_uac_test("19");
            $avp(public_via) = nat_uac_test("diff-port-src-via") && nat_uac_test(128);
            $avp(sdp) = nat_uac_test("private-sdp");
            $avp(cgn_only) = nat_uac_test(128);
        }
    "#;
    let (ctx, out) = run(&Config::default(), script, INVITE, "udp");
    assert!(matches!(out, Outcome::Done), "{out:?}");
    for (name, want) in [
        ("names", "true"),
        ("mask", "true"),
        ("text_mask", "true"),
        ("public_via", "false"),
        ("sdp", "true"),
        ("cgn_only", "false"),
    ] {
        assert_eq!(var(&ctx, name), want, "{name}");
    }
}

#[test]
fn bad_arguments_are_script_errors() {
    for call in [
        r#"nat_uac_test("private-contacts")"#,
        "nat_uac_test(256)",
        r#"fix_nated_sdp("rewrite-ip")"#,
        r#"fix_nated_sdp(2, "not-an-ip")"#,
    ] {
        let (_, out) = run(&Config::default(), &format!("fn route() {{ {call}; }}"), INVITE, "udp");
        match out {
            Outcome::Error(e) => assert!(e.to_string().contains(call.split('(').next().unwrap_or("")), "{call}: {e}"),
            other => panic!("{call}: expected a script error, got {other:?}"),
        }
    }
}

#[test]
fn fixes_are_lumps_with_codes() {
    let script = r#"
        fn route() {
            $avp(c) = fix_nated_contact(";nat=yes");
            $avp(s) = fix_nated_sdp("rewrite-media-ip,rewrite-origin-ip", "198.51.100.9");
            $avp(r) = fix_nated_register();
            $avp(p) = add_path_received();
            $avp(still) = $hdr(Contact);
        }
    "#;
    let (ctx, _) = run(&Config::default(), script, INVITE, "udp");
    assert_eq!(
        (var(&ctx, "c"), var(&ctx, "s"), var(&ctx, "r"), var(&ctx, "p")),
        ("1".into(), "1".into(), "-1".into(), "-1".into())
    );
    assert_eq!(var(&ctx, "still"), "<sip:alice@192.168.1.20:5060>", "reads see the message as received");
    let out = rendered(&ctx);
    assert!(out.contains("Contact: <sip:alice@203.0.113.7:40123;nat=yes>\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nv=0\r\no=- 1 1 IN IP4 198.51.100.9\r\nc=IN IP4 198.51.100.9\r\na=oldcip:192.168.1.20\r\na=oldoip:192.168.1.20\r\n"), "{out}");
    assert!(out.contains("Content-Length: 103\r\n"), "{out}");
}

#[test]
fn register_fixes_use_the_configured_avp_and_transport() {
    let script = r#"
        fn route() {
            $avp(reg) = fix_nated_register();
            $avp(rcv_code) = add_rcv_param();
            $avp(path) = add_path("edge");
            $avp(contact) = fix_nated_contact();
        }
    "#;
    let (ctx, _) = run(&Config::default(), script, REGISTER, "tcp");
    assert_eq!(var(&ctx, "rcv"), "sip:203.0.113.7:40123;transport=tcp");
    assert_eq!((var(&ctx, "reg"), var(&ctx, "rcv_code"), var(&ctx, "path")), ("1".into(), "1".into(), "1".into()));
    let out = rendered(&ctx);
    assert!(
        out.contains(
            "Contact: <sip:alice@203.0.113.7:40123>;expires=60;received=\"sip:203.0.113.7:40123;transport=tcp\"\r\n"
        ),
        "{out}"
    );
    assert!(out.contains("Path: <sip:edge@10.0.0.1:5060;transport=tcp;lr>\r\n"), "{out}");

    let cfg: Config = toml::from_str("[nathelper]\nreceived_avp = \"$avp(nat_rcv)\"\n").expect("config");
    let (ctx, _) = run(&cfg, "fn route() { fix_nated_register(); }", REGISTER, "udp");
    assert_eq!(var(&ctx, "nat_rcv"), "sip:203.0.113.7:40123");
    assert_eq!(var(&ctx, "rcv"), "<none>");
}

#[test]
fn oldip_skip_and_nortpproxy_str_from_config() {
    let cfg: Config =
        toml::from_str("[nathelper]\noldip_skip = true\nnortpproxy_str = \"a=no-relay:1\"\n").expect("config");
    let (ctx, _) = run(&cfg, r#"fn route() { fix_nated_sdp(6); }"#, INVITE, "udp");
    let out = rendered(&ctx);
    assert!(
        out.ends_with("\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.168.1.20\r\nc=IN IP4 203.0.113.7\r\na=no-relay:1\r\n"),
        "{out}"
    );
    assert!(out.contains("Content-Length: 70\r\n"), "{out}");
}
