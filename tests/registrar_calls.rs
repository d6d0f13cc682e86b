//! The registrar end to end (issue 6): REGISTERs from SIPp and from plain sockets through
//! `save("location")`, and calls to the registered users through `lookup("location")`.
//!
//! - One phone's REGISTER life (tests/sipp/uac-register-flow.xml): two contacts with q,
//!   refresh, removal of one, query, `*`, expiry; an out-of-order CSeq is refused.
//! - A call to a registered user reaches its contact; an unknown user gets 404.
//! - Two contacts of one AoR are rung in parallel, best q first in the branch order.
//! - Path (RFC 3327): a contact registered through an edge proxy is called through it.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::testdb;
use support::*;

/// A registrar and a home proxy: REGISTER is saved, everything else looked up and relayed.
pub const REGISTRAR_SCRIPT: &str = r#"// registrar test route
fn route() {
    if is_method("REGISTER") {
        if $hdr(X-Save-Flags) != () {
            save("location", $hdr(X-Save-Flags));
        } else {
            save("location");
        }
        exit();
    }
    if has_totag() {
        if loose_route() == 1 { t_relay(); }
        exit();
    }
    if is_method("CANCEL") {
        if t_check_trans() == 1 { t_relay(); }
        exit();
    }
    record_route();
    let rc = lookup("location");
    if rc == -2 {
        sl_send_reply(405, "Method Not Allowed");
        exit();
    }
    if rc < 0 {
        sl_send_reply(404, "Not Found");
        exit();
    }
    if t_relay() < 0 { sl_reply_error(); }
}
"#;

const FAST_EXPIRY: &str = "\n[registrar]\nmin_expires = 1\n";

/// Sends one REGISTER from `sock` and returns the reply's text.
pub fn register(
    sock: &UdpSocket,
    proxy: SocketAddr,
    user: &str,
    contacts: &[&str],
    expires: u32,
    cseq: u32,
    extra: &str,
) -> String {
    let local = sock.local_addr().expect("bound");
    let contact_lines: String = contacts.iter().map(|c| format!("Contact: {c}\r\n")).collect();
    let req = format!(
        "REGISTER sip:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg-{user}-{cseq}\r\n\
         From: <sip:{user}@{proxy}>;tag=r{cseq}\r\nTo: <sip:{user}@{proxy}>\r\nCall-ID: reg-{user}-{local}\r\n\
         CSeq: {cseq} REGISTER\r\n{contact_lines}Expires: {expires}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), proxy).expect("send REGISTER");
    recv_text(sock)
}

pub fn recv_text(sock: &UdpSocket) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 8192];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The first reply above 1xx that reaches `sock`.
pub fn recv_final(sock: &UdpSocket) -> String {
    loop {
        let r = recv_text(sock);
        if !r.starts_with("SIP/2.0 1") {
            return r;
        }
    }
}

fn udp_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind")
}

#[test]
fn a_phone_registers_refreshes_removes_queries_and_expires() {
    let proxy = Proxy::start_with("reg-flow", REGISTRAR_SCRIPT, FAST_EXPIRY);
    let mut uac = Sipp::uac("reg", "uac-register-flow.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(20)
        .arg("-s")
        .arg("alice")
        .message_log()
        .spawn(&proxy.dir);
    uac.assert_success();
    proxy.stop();
}

/// The same REGISTER life with the location table kept in a shared database (`sql-only`):
/// every step answered from memory while the rows follow.
fn register_flow_on(t: &testdb::TestDb) {
    let toml = format!("{FAST_EXPIRY}\n[db]\nurl = \"{}\"\n\n[usrloc]\nworking_mode_preset = \"sql-only\"\n", t.url);
    let proxy = Proxy::start_with("reg-flow-db", REGISTRAR_SCRIPT, &toml);
    let mut uac = Sipp::uac("reg", "uac-register-flow.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(20)
        .args(&["-s", "alice"])
        .spawn(&proxy.dir);
    uac.assert_success();
    proxy.stop();
}

#[test]
fn register_flow_on_postgres() {
    if let Some(t) = testdb::TestDb::server(siprox::db::Backend::Postgres, "reg_flow_pg") {
        register_flow_on(&t);
    }
}

#[test]
fn register_flow_on_mysql() {
    if let Some(t) = testdb::TestDb::server(siprox::db::Backend::MySql, "reg_flow_my") {
        register_flow_on(&t);
    }
}

#[test]
fn registered_users_are_called_and_unknown_ones_get_404() {
    let proxy = Proxy::start("reg-call", REGISTRAR_SCRIPT);
    let uas_port = free_port();
    let sock = udp_socket();
    let ok = register(&sock, proxy.addr(), "bob", &[&format!("<sip:bob@127.0.0.1:{uas_port}>")], 600, 1, "");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains(&format!("Contact: <sip:bob@127.0.0.1:{uas_port}>;expires=600")), "{ok}");
    assert!(ok.contains("\r\nDate: "), "RFC 3261 §10.3 step 8: {ok}");
    let contact = format!("<sip:bob@127.0.0.1:{uas_port}>");
    let newer = register(&sock, proxy.addr(), "bob", &[&contact], 600, 5, "");
    assert!(newer.starts_with("SIP/2.0 200"), "{newer}");
    let older = register(&sock, proxy.addr(), "bob", &[&contact], 600, 3, "");
    assert!(older.starts_with("SIP/2.0 400"), "RFC 3261 §10.3 step 7: an older CSeq is out of order: {older}");

    let mut uas = Sipp::uas("uas", "uas-call.xml", uas_port, Proto::Udp).calls(2).timeout_s(20).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, Proto::Udp)
        .calls(2)
        .timeout_s(20)
        .arg("-s")
        .arg("bob")
        .spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();

    let mut nobody = Sipp::uac("nobody", "uac-reject.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(10)
        .arg("-s")
        .arg("carol")
        .message_log()
        .spawn(&proxy.dir);
    nobody.assert_success();
    assert!(nobody.message_log_text().contains("SIP/2.0 404 Not Found"), "{}", nobody.message_log_text());
    proxy.stop();
}

#[test]
fn two_contacts_ring_in_parallel_and_method_filtering_skips_one() {
    let proxy = Proxy::start("reg-fork", REGISTRAR_SCRIPT);
    let (a, b) = (udp_socket(), udp_socket());
    let (pa, pb) = (a.local_addr().expect("a").port(), b.local_addr().expect("b").port());
    let sock = udp_socket();
    let reply = register(
        &sock,
        proxy.addr(),
        "dave",
        &[&format!("<sip:dave@127.0.0.1:{pa}>;q=0.4"), &format!("<sip:dave@127.0.0.1:{pb}>;q=0.9")],
        600,
        1,
        "Allow: INVITE, ACK, BYE, CANCEL\r\n",
    );
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    let caller = udp_socket();
    let invite = |method: &str, n: u32| {
        format!(
            "{method} sip:dave@{p} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-fork-{n}\r\nFrom: <sip:x@{c}>;tag=f{n}\r\n\
             To: <sip:dave@{p}>\r\nCall-ID: fork-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:x@{c}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = proxy.addr(),
            c = caller.local_addr().expect("bound"),
        )
    };
    caller.send_to(invite("INVITE", 1).as_bytes(), proxy.addr()).expect("send");
    let got_b = recv_text(&b);
    let got_a = recv_text(&a);
    assert!(got_b.starts_with(&format!("INVITE sip:dave@127.0.0.1:{pb} ")), "{got_b}");
    assert!(got_a.starts_with(&format!("INVITE sip:dave@127.0.0.1:{pa} ")), "{got_a}");

    // MESSAGE is not in the contacts' Allow: lookup("location", "method-filtering") → -2.
    let script = REGISTRAR_SCRIPT.replace(r#"lookup("location")"#, r#"lookup("location", "method-filtering")"#);
    std::fs::write(proxy.dir.join("route.rhai"), script).expect("rewrite script");
    ctl(&proxy, &["reload_routes"]);
    caller.send_to(invite("MESSAGE", 2).as_bytes(), proxy.addr()).expect("send");
    let reply = recv_final(&caller);
    assert!(reply.starts_with("SIP/2.0 405"), "{reply}");
    proxy.stop();
}

#[test]
fn a_contact_registered_through_an_edge_proxy_is_called_through_it() {
    let proxy = Proxy::start("reg-path", REGISTRAR_SCRIPT);
    let edge = udp_socket();
    let edge_addr = edge.local_addr().expect("bound");
    let sock = udp_socket();
    let reply = register(
        &sock,
        proxy.addr(),
        "erin",
        &["<sip:erin@10.1.2.3:5060>"],
        600,
        1,
        &format!("Path: <sip:{edge_addr};lr>\r\nSupported: path\r\nX-Save-Flags: path-strict\r\n"),
    );
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(reply.contains(&format!("Path: <sip:{edge_addr};lr>")), "RFC 3327 §5.3: Path echoed: {reply}");

    let caller = udp_socket();
    let c = caller.local_addr().expect("bound");
    let invite = format!(
        "INVITE sip:erin@{p} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-path-1\r\nFrom: <sip:x@{c}>;tag=p1\r\n\
         To: <sip:erin@{p}>\r\nCall-ID: path-1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{c}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = proxy.addr()
    );
    caller.send_to(invite.as_bytes(), proxy.addr()).expect("send");
    let got = recv_text(&edge);
    assert!(got.starts_with("INVITE sip:erin@10.1.2.3:5060 "), "the R-URI is the contact: {got}");
    assert!(got.contains(&format!("\r\nRoute: <sip:{edge_addr};lr>\r\n")), "the Path is the route set: {got}");
    proxy.stop();
}

/// The reply `code` to request `req` (its Via, From, To with a tag, Call-ID and CSeq).
fn reply_to(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" | "t" => out.push_str(&format!("{line};tag=phone\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Waits up to `within` for a request whose first line starts with `start` at `sock`,
/// answering every OPTIONS keep-alive on the way with 200 (`answer_pings`); returns it.
fn wait_request(sock: &UdpSocket, start: &str, within: Duration, answer_pings: bool) -> Option<String> {
    let end = std::time::Instant::now() + within;
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut buf = [0u8; 8192];
    while std::time::Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(start) {
            return Some(text);
        }
        if answer_pings && text.starts_with("OPTIONS ") {
            sock.send_to(reply_to(&text, 200, "OK").as_bytes(), from).expect("answer ping");
        }
    }
    None
}

const NAT_TOML: &str = r#"
[usrloc]
nat_bflag = "NAT"

[nathelper]
natping_interval = 1
sipping_bflag = "SIPPING"
sipping_from = "sip:pinger@127.0.0.1"
max_pings_lost = 2
ping_threshold = 1
"#;

#[test]
fn a_phone_behind_nat_is_called_at_its_source_address_and_kept_alive_until_it_goes_silent() {
    let script = REGISTRAR_SCRIPT.replace(
        "    if is_method(\"REGISTER\") {\n",
        "    if is_method(\"REGISTER\") {\n        if nat_uac_test(\"private-contact\") {\n            fix_nated_register();\n            setbflag(\"NAT\");\n            setbflag(\"SIPPING\");\n        }\n",
    );
    let proxy = Proxy::start_with("reg-nat", &script, NAT_TOML);
    // The phone: another loopback address and its own port, a private address in its Contact.
    let phone = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let at = phone.local_addr().expect("bound");
    let ok = register(&phone, proxy.addr(), "frank", &["<sip:frank@192.168.1.50:5060>"], 600, 1, "");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains(&format!(";received=\"sip:{at}\"")), "the NAT address is stored: {ok}");

    // Kept alive: OPTIONS pings reach the NAT address, addressed to the registered contact.
    for _ in 0..2 {
        let ping = wait_request(&phone, "OPTIONS sip:frank@192.168.1.50:5060 ", Duration::from_secs(4), false)
            .unwrap_or_else(|| panic!("no keep-alive ping within 4 s\n{}", proxy.log_text()));
        phone.send_to(reply_to(&ping, 200, "OK").as_bytes(), proxy.addr()).expect("answer");
    }

    // Called: the INVITE for frank goes to 127.0.0.2:port, the R-URI stays the contact.
    let caller = udp_socket();
    let c = caller.local_addr().expect("bound");
    let invite = format!(
        "INVITE sip:frank@{p} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-nat-1\r\nFrom: <sip:x@{c}>;tag=n1\r\n\
         To: <sip:frank@{p}>\r\nCall-ID: nat-1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{c}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = proxy.addr()
    );
    caller.send_to(invite.as_bytes(), proxy.addr()).expect("send");
    let got = wait_request(&phone, "INVITE sip:frank@192.168.1.50:5060 ", Duration::from_secs(4), true)
        .unwrap_or_else(|| panic!("the INVITE did not reach the phone's NAT address\n{}", proxy.log_text()));
    phone.send_to(reply_to(&got, 486, "Busy Here").as_bytes(), proxy.addr()).expect("answer");
    let busy = recv_final(&caller);
    assert!(busy.starts_with("SIP/2.0 486"), "{busy}");

    // Silent: after two lost pings the contact is removed and frank is unknown.
    let gone = (0..40).any(|i| {
        std::thread::sleep(Duration::from_millis(250));
        let probe = format!(
            "OPTIONS sip:frank@{p} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-nat-probe-{i}\r\nFrom: <sip:x@{c}>;tag=q{i}\r\n\
             To: <sip:frank@{p}>\r\nCall-ID: nat-probe-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = proxy.addr()
        );
        caller.send_to(probe.as_bytes(), proxy.addr()).expect("send");
        // While registered the OPTIONS is relayed to the silent phone (408 after fr_timeout);
        // once removed, lookup answers 404 at once.
        caller.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let mut buf = [0u8; 4096];
        matches!(caller.recv_from(&mut buf), Ok((n, _)) if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 404"))
    });
    assert!(gone, "the silent phone was not removed\n{}", proxy.log_text());
    let stats = ctl_json(&proxy, &["get_statistics", "nathelper:"]);
    assert!(stats["nathelper:contacts_removed"].as_u64() == Some(1), "{stats}");
    proxy.stop();
}

/// `ul_show_contact location AOR` as text; "" when the AoR has no binding (404).
fn ul_show(proxy: &Proxy, aor: &str) -> String {
    let out = std::process::Command::new(siprox_bin())
        .args(["ctl", "-c"])
        .arg(proxy.config_path())
        .args(["--json", "ul_show_contact", "location", aor])
        .output()
        .expect("run siprox ctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// scripts/registrar.rhai as shipped, for the domain example.com.
fn residential(label: &str, extra_toml: &str) -> Proxy {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/registrar.rhai");
    let toml = format!("\n[usrloc]\nnat_bflag = \"NAT\"\n{extra_toml}");
    let proxy = Proxy::start_script_file_with_core(label, &script, "alias = [\"example.com\"]", &toml);
    ctl(&proxy, &["subscriber", "add", "alice@example.com", "alice-secret"]);
    ctl(&proxy, &["subscriber", "add", "bob@example.com", "bob-secret"]);
    proxy
}

#[test]
fn residential_script_phones_log_in_register_from_behind_nat_and_call_each_other() {
    let proxy = residential("reg-residential", "");
    // Bob's phone: behind NAT (127.0.0.2, a private Contact), logs in, then waits for a call
    // on the address and port it registered from.
    let phone_port = free_port();
    let port = phone_port.to_string();
    let mut reg = Sipp::uac("bob-reg", "uac-register-nat.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(15)
        .args(&["-i", "127.0.0.2", "-p", &port, "-s", "bob", "-au", "bob", "-ap", "bob-secret"])
        .spawn(&proxy.dir);
    reg.assert_success();
    assert!(ul_show(&proxy, "bob").contains("192.168.1.20"), "bob is not registered\n{}", proxy.log_text());
    let mut bob = Sipp::uas("bob", "uas-nat-answer.xml", phone_port, Proto::Udp)
        .calls(1)
        .timeout_s(30)
        .args(&["-i", "127.0.0.2"])
        .message_log()
        .spawn(&proxy.dir);

    // A wrong password is refused with a new challenge, and nothing is saved.
    let mut mallory = Sipp::uac("mallory", "uac-register-auth-refused.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(15)
        .args(&["-s", "alice", "-au", "alice", "-ap", "wrong"])
        .spawn(&proxy.dir);
    mallory.assert_success();

    // Alice calls bob: challenged, authenticated, and bob's phone rings at its NAT address.
    let mut alice = Sipp::uac("alice", "uac-call-auth.xml", &proxy, Proto::Udp)
        .calls(1)
        .timeout_s(30)
        .args(&["-s", "bob", "-au", "alice", "-ap", "alice-secret"])
        .message_log()
        .spawn(&proxy.dir);
    alice.assert_success();
    bob.assert_success();
    assert!(!ul_show(&proxy, "alice").contains("sip:"), "alice never registered");
    proxy.stop();
}
