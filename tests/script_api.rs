//! The script primitives with OpenSIPS semantics (spec/opensips-primitives.md §1–5), run
//! through `siprox::script` exactly as the proxy runs them: `build_engine` with the
//! modules' registrar, `compile`, `run_hook` on an `api::Ctx`, and a recording `CoreOps`
//! standing in for the proxy (it records what the script asked for and returns codes the
//! test chooses). Also `check_script`'s diagnostics.

use bytes::Bytes;
use siprox::config::Config;
use siprox::message::{Edits, SipMsg};
use siprox::script::api::{CoreOps, Ctx, RouteKind};
use siprox::script::{build_engine, check_script, compile, run_hook, Bundle, Limits, Outcome, ScriptError, Source};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ------------------------------------------------------------------ recording core

struct Core {
    calls: Mutex<Vec<String>>,
    t_check_trans: AtomicI64,
    t_relay: AtomicI64,
}

impl Core {
    fn new() -> Arc<Core> {
        Arc::new(Core { calls: Mutex::new(Vec::new()), t_check_trans: AtomicI64::new(-1), t_relay: AtomicI64::new(1) })
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl CoreOps for Core {
    fn sl_send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        ctx.answered = true;
        self.record(format!("sl_send_reply {code} {reason}"));
        1
    }
    fn send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        ctx.answered = true;
        self.record(format!("send_reply {code} {reason}"));
        1
    }
    fn t_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        ctx.answered = true;
        self.record(format!("t_reply {code} {reason}"));
        1
    }
    fn t_relay(&self, ctx: &mut Ctx, flags: &str, outbound: Option<&str>) -> i64 {
        self.record(format!("t_relay [{flags}] {outbound:?} ruri={} du={:?}", ctx.ruri(), ctx.du));
        self.t_relay.load(Ordering::SeqCst)
    }
    fn t_newtran(&self, _ctx: &mut Ctx) -> i64 {
        self.record("t_newtran".into());
        1
    }
    fn t_check_trans(&self, _ctx: &mut Ctx) -> i64 {
        self.record("t_check_trans".into());
        self.t_check_trans.load(Ordering::SeqCst)
    }
    fn t_was_cancelled(&self, _ctx: &Ctx) -> bool {
        false
    }
    fn forward(&self, _ctx: &mut Ctx, dest: Option<&str>) -> i64 {
        self.record(format!("forward {dest:?}"));
        1
    }
    /// "Myself" is 10.0.0.1 on port 5060 (or no port) and the name proxy.example.com.
    fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        (host == "10.0.0.1" || host.eq_ignore_ascii_case("proxy.example.com")) && port.unwrap_or(5060) == 5060
    }
    fn has_socket(&self, spec: &str) -> bool {
        spec == "udp:10.0.0.1:5060" || spec == "tcp:10.0.0.1:5060"
    }
}

// ------------------------------------------------------------------ helpers

const LIMITS: Limits = Limits {
    max_operations: 100_000,
    max_call_levels: 32,
    max_string_size: 64 * 1024,
    max_array_size: 10_000,
    max_map_size: 10_000,
};

fn bundle(src: &str) -> Bundle {
    bundle_with(src, &Config::default(), LIMITS)
}

fn bundle_with(src: &str, cfg: &Config, limits: Limits) -> Bundle {
    let register = siprox::modules::Modules::new(cfg).registrar();
    let engine = build_engine(limits, &*register);
    compile(engine, Source::Text { text: src, name: "test.rhai" }).unwrap_or_else(|e| panic!("compile: {e}"))
}

const INVITE: &str = "INVITE sip:bob@example.com:5070;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-s1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=ft1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
X-Foo: one\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
Content-Length: 0\r\n\r\n";

fn msg(text: &str) -> SipMsg {
    SipMsg::parse(Bytes::from(text.to_string())).expect("test message parses")
}

fn ctx_for(text: &str, core: &Arc<Core>) -> Ctx {
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let local: SocketAddr = "10.0.0.1:5060".parse().unwrap();
    Ctx::new(RouteKind::Request, msg(text), src, "udp", local, core.clone())
}

/// Runs `hook` of `src` on `text`; returns the context and the outcome.
fn run_on(src: &str, text: &str) -> (Ctx, Outcome, Arc<Core>) {
    let core = Core::new();
    let b = bundle(src);
    let (ctx, out) = run_hook(&b, "route", ctx_for(text, &core));
    (ctx, out, core)
}

/// The newest value of an AVP as text (`<none>` when absent).
fn avp(ctx: &Ctx, name: &str) -> String {
    ctx.avps.get(name).map(|d| d.to_string()).unwrap_or_else(|| "<none>".into())
}

fn rendered(ctx: &Ctx) -> String {
    String::from_utf8(Edits::render(&ctx.msg, &[&ctx.edits])).expect("utf8")
}

fn assert_done(out: &Outcome) {
    assert!(matches!(out, Outcome::Done), "expected Done, got {out:?}");
}

// ------------------------------------------------------------------ maxfwd (spec §2)

const MF: &str = r#"
fn route() {
    $avp(rc) = mf_process_maxfwd_header(10);
    $avp(seen) = $hdr(Max-Forwards);
}
"#;

#[test]
fn maxfwd_decrements_and_returns_1() {
    let (ctx, out, _) = run_on(MF, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(ctx.retcode, 1);
    assert_eq!(avp(&ctx, "seen"), "70", "the edit is a lump: reads still see the received value");
    assert_eq!(rendered(&ctx), INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 69\r\n"));
}

#[test]
fn maxfwd_of_1_becomes_0_and_is_forwarded() {
    let text = INVITE.replace("Max-Forwards: 70", "Max-Forwards: 1");
    let (ctx, _, _) = run_on(MF, &text);
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(rendered(&ctx), INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 0\r\n"));
}

#[test]
fn maxfwd_missing_header_is_inserted_and_returns_2() {
    let text = INVITE.replace("Max-Forwards: 70\r\n", "");
    let (ctx, _, _) = run_on(MF, &text);
    assert_eq!(avp(&ctx, "rc"), "2");
    assert_eq!(avp(&ctx, "seen"), "<none>", "no header to read (NULL deletes nothing)");
    let out = rendered(&ctx);
    assert!(
        out.starts_with("INVITE sip:bob@example.com:5070;transport=udp SIP/2.0\r\nMax-Forwards: 10\r\nVia: "),
        "inserted before the first header:\n{out}"
    );
    assert_eq!(out.matches("Max-Forwards").count(), 1);
}

#[test]
fn maxfwd_zero_returns_minus_1_and_edits_nothing() {
    let text = INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0");
    let (ctx, out, _) = run_on(MF, &text);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "-1");
    assert!(ctx.edits.is_empty());
}

#[test]
fn maxfwd_unparsable_returns_minus_2() {
    let text = INVITE.replace("Max-Forwards: 70", "Max-Forwards: seventy");
    let (ctx, _, _) = run_on(MF, &text);
    assert_eq!(avp(&ctx, "rc"), "-2");
    assert!(ctx.edits.is_empty());
}

/// spec §2 / OpenSIPS maxfwd.c: a value above `max_limit` is first lowered to max_limit
/// + 1 and then decremented, so it leaves as `max_limit` (70 with max_limit 10 → 10).
#[test]
fn maxfwd_above_max_limit_leaves_as_max_limit() {
    let mut cfg = Config::default();
    cfg.maxfwd.max_limit = 10;
    let core = Core::new();
    let b = bundle_with(MF, &cfg, LIMITS);
    let (ctx, _) = run_hook(&b, "route", ctx_for(INVITE, &core));
    assert_eq!(avp(&ctx, "rc"), "1");
    let out = rendered(&ctx);
    assert!(out.contains("\r\nMax-Forwards: 10\r\n"), "OpenSIPS caps to max_limit:\n{out}");
}

// ------------------------------------------------------------------ sipmsgops (spec §1.7)

#[test]
fn is_method_lists_and_unknown_methods() {
    let src = r#"
fn route() {
    $avp(a) = is_method("INVITE|BYE");
    $avp(b) = is_method("BYE|CANCEL");
    $avp(c) = is_method("INVITE");
    $avp(d) = is_method("PING");
    $avp(e) = is_method("ping|BYE");
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(
        ["a", "b", "c", "d", "e"].map(|k| avp(&ctx, k)),
        ["true", "false", "true", "false", "false"].map(String::from)
    );

    let ping = INVITE.replace("INVITE sip:", "PING sip:").replace("CSeq: 1 INVITE", "CSeq: 1 PING");
    let (ctx, _, _) = run_on(src, &ping);
    assert_eq!(
        ["a", "b", "c", "d", "e"].map(|k| avp(&ctx, k)),
        ["false", "false", "false", "true", "true"].map(String::from),
        "unknown methods compare as text, ignoring case"
    );

    // On a reply, the CSeq method.
    let reply = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-r\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: r\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let core = Core::new();
    let b = bundle(src);
    let mut c = ctx_for(reply, &core);
    c.kind = RouteKind::OnReply;
    let (ctx, _) = run_hook(&b, "route", c);
    assert_eq!(avp(&ctx, "a"), "true");
    assert_eq!(avp(&ctx, "c"), "false");
}

#[test]
fn has_totag() {
    let src = "fn route() { $avp(t) = has_totag(); }";
    let (ctx, _, _) = run_on(src, INVITE);
    assert_eq!(avp(&ctx, "t"), "false");
    let (ctx, _, _) = run_on(src, &INVITE.replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=xyz"));
    assert_eq!(avp(&ctx, "t"), "true");
    let (ctx, _, _) = run_on(src, &INVITE.replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag="));
    assert_eq!(avp(&ctx, "t"), "false", "an empty tag is no tag");
}

/// spec §1.6: header edits are lumps — later reads see the received message, the sent
/// message has the edits.
#[test]
fn lumps_are_invisible_to_reads_but_rendered() {
    let src = r#"
fn route() {
    $avp(rm) = remove_hf("X-Foo");
    $avp(present) = is_present_hf("X-Foo");
    $avp(foo) = $hdr(X-Foo);
    $avp(rm_none) = remove_hf("X-Absent");
    $avp(app) = append_hf("X-New: two\r\n");
    $avp(new_present) = is_present_hf("X-New");
    $avp(new_hdr) = type_of($hdr(X-New));
    append_hf("X-After-From: 3", "From");
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rm"), "1");
    assert_eq!(avp(&ctx, "present"), "true", "remove_hf is a lump");
    assert_eq!(avp(&ctx, "foo"), "one");
    assert_eq!(avp(&ctx, "rm_none"), "-1", "nothing to remove");
    assert_eq!(avp(&ctx, "app"), "1");
    assert_eq!(avp(&ctx, "new_present"), "false", "append_hf is a lump");
    assert_eq!(avp(&ctx, "new_hdr"), "()");
    let want = INVITE
        .replace("X-Foo: one\r\n", "")
        .replace("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\nX-New: two\r\n\r\n")
        .replace(";tag=ft1\r\n", ";tag=ft1\r\nX-After-From: 3\r\n");
    assert_eq!(rendered(&ctx), want);
}

// ------------------------------------------------------------------ pseudo-variables (spec §1.3)

#[test]
fn request_uri_variables_read_and_write() {
    let src = r#"
fn route() {
    $avp(ru) = $ru;
    $avp(ru_user) = $rU;
    $avp(ru_host) = $rd;
    $avp(ru_port) = $rp;
    $rU = "carol";
    $avp(after_user) = $ru;
    $rd = "10.1.2.3";
    $avp(after_host) = $ru;
    $rp = 5080;
    $avp(after_port) = $ru;
    $avp(new_port) = $rp;
    $avp(ou) = $ou;
    $ru = "sip:dave@host.example.net";
    $avp(final_user) = $rU;
    $avp(final_host) = $rd;
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "ru"), "sip:bob@example.com:5070;transport=udp");
    assert_eq!(avp(&ctx, "ru_user"), "bob");
    assert_eq!(avp(&ctx, "ru_host"), "example.com");
    assert_eq!(avp(&ctx, "ru_port"), "5070");
    assert_eq!(avp(&ctx, "after_user"), "sip:carol@example.com:5070;transport=udp");
    assert_eq!(avp(&ctx, "after_host"), "sip:carol@10.1.2.3:5070;transport=udp");
    assert_eq!(avp(&ctx, "after_port"), "sip:carol@10.1.2.3:5080;transport=udp");
    assert_eq!(avp(&ctx, "new_port"), "5080");
    assert_eq!(avp(&ctx, "ou"), "sip:bob@example.com:5070;transport=udp", "$ou is the received R-URI");
    assert_eq!(avp(&ctx, "final_user"), "dave");
    assert_eq!(avp(&ctx, "final_host"), "host.example.net");
    assert_eq!(ctx.ruri(), "sip:dave@host.example.net");
    assert_eq!(ctx.msg.ruri(), "sip:bob@example.com:5070;transport=udp", "the message itself is untouched");
}

#[test]
fn destination_uri_set_read_and_reset() {
    let src = r#"
fn route() {
    $avp(before) = type_of($du);
    $du = "sip:10.0.0.9:5070;transport=tcp";
    $avp(set) = $du;
    $avp(is_set) = isdsturiset();
    t_relay();
    $du = ();
    $avp(after) = type_of($du);
}
"#;
    let (ctx, out, core) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "before"), "()");
    assert_eq!(avp(&ctx, "set"), "sip:10.0.0.9:5070;transport=tcp");
    assert_eq!(avp(&ctx, "is_set"), "true");
    assert_eq!(
        core.calls(),
        vec![
            r#"t_relay [] None ruri=sip:bob@example.com:5070;transport=udp du=Some("sip:10.0.0.9:5070;transport=tcp")"#
        ]
    );
    assert_eq!(avp(&ctx, "after"), "()", "$du = NULL resets it");
    assert_eq!(ctx.du, None);
}

/// spec §1.3: `$var` lives in the worker and is never reset between messages.
#[test]
fn script_vars_survive_between_hook_runs_on_one_thread() {
    let src = r#"
fn route() {
    if type_of($var(hits_sv)) == "()" {
        $var(hits_sv) = 41;
    } else {
        $var(hits_sv) = $var(hits_sv) + 1;
    }
    $avp(hits) = $var(hits_sv);
}
"#;
    let core = Core::new();
    let b = bundle(src);
    let (first, _) = run_hook(&b, "route", ctx_for(INVITE, &core));
    assert_eq!(avp(&first, "hits"), "41");
    let bye = INVITE.replace("INVITE sip:", "BYE sip:").replace("CSeq: 1 INVITE", "CSeq: 2 BYE");
    let (second, out) = run_hook(&b, "route", ctx_for(&bye, &core));
    assert_done(&out);
    assert_eq!(avp(&second, "hits"), "42", "the second message sees the first one's $var");
    assert!(second.avps.get("hits").is_some() && first.avps.all("hits").len() == 1, "AVPs are per message");
}

/// spec §1.3: `$avp(x) = v` pushes, reads give the newest, `$avp(x) = NULL` deletes the
/// newest; AVPs the transaction carried in are visible.
#[test]
fn avps_are_a_stack() {
    let src = r#"
fn route() {
    $avp(seen_pre) = $avp(pre);
    $avp(x) = 1;
    $avp(x) = "two";
    $avp(top) = $avp(x);
    $avp(x) = ();
    $avp(after_pop) = $avp(x);
}
"#;
    let core = Core::new();
    let b = bundle(src);
    let mut c = ctx_for(INVITE, &core);
    c.avps.push("pre", "from-tx".into());
    let (ctx, out) = run_hook(&b, "route", c);
    assert_done(&out);
    assert_eq!(avp(&ctx, "seen_pre"), "from-tx");
    assert_eq!(avp(&ctx, "top"), "two");
    assert_eq!(avp(&ctx, "after_pop"), "1");
    let all: Vec<String> = ctx.avps.all("x").iter().map(|d| d.to_string()).collect();
    assert_eq!(all, vec!["1"]);
    assert_eq!(ctx.avps.get("x").and_then(|d| d.as_int().ok()), Some(1), "the type is kept");
}

#[test]
fn header_and_message_variables() {
    // Compact forms on the wire: $hdr(Call-ID) and $ci still find `i:`.
    let text = INVITE.replace("Call-ID: call-1@192.0.2.10", "i: call-1@192.0.2.10").replace("From:", "f:");
    let src = r#"
fn route() {
    $avp(mf) = $hdr(Max-Forwards);
    $avp(cid_hdr) = $hdr(Call-ID);
    $avp(ci) = $ci;
    $avp(fu) = $fu;
    $avp(ft) = $ft;
    $avp(tu) = $tu;
    $avp(tt) = type_of($tt);
    $avp(rm) = $rm;
    $avp(cs) = $cs;
    $avp(si) = $si;
    $avp(sp) = $sp;
    $avp(pr) = $pr;
    $avp(ri) = $Ri;
    $avp(missing) = type_of($hdr(X-Nope));
}
"#;
    let (ctx, out, _) = run_on(src, &text);
    assert_done(&out);
    let got: Vec<(String, String)> =
        ["mf", "cid_hdr", "ci", "fu", "ft", "tu", "tt", "rm", "cs", "si", "sp", "pr", "ri", "missing"]
            .iter()
            .map(|k| (k.to_string(), avp(&ctx, k)))
            .collect();
    let want: Vec<(String, String)> = [
        ("mf", "70"),
        ("cid_hdr", "call-1@192.0.2.10"),
        ("ci", "call-1@192.0.2.10"),
        ("fu", "sip:alice@example.com"),
        ("ft", "ft1"),
        ("tu", "sip:bob@example.com"),
        ("tt", "()"),
        ("rm", "INVITE"),
        ("cs", "1"),
        ("si", "192.0.2.10"),
        ("sp", "5060"),
        ("pr", "udp"),
        ("ri", "10.0.0.1"),
        ("missing", "()"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

/// design.md §3 spells header access `$hdr(Max-Forwards)`: a hyphenated name written
/// bare must reach the header, like the quoted form does.
#[test]
fn hdr_with_a_hyphenated_name() {
    let src = r#"
fn route() {
    $avp(bare) = $hdr(Max-Forwards);
    $avp(quoted) = $hdr("Max-Forwards");
    $avp(x_foo) = $hdr(X-Foo);
    $avp(cid) = $hdr(Call-ID);
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "quoted"), "70");
    assert_eq!(avp(&ctx, "bare"), "70");
    assert_eq!(avp(&ctx, "x_foo"), "one");
    assert_eq!(avp(&ctx, "cid"), "call-1@192.0.2.10");
}

/// `$fn` (From display name) is one of the documented pseudo-variables; `fn` is also a
/// Rhai keyword, and the `$` syntax must still accept it (as it does `$var`).
#[test]
fn from_display_name_variable() {
    let register = siprox::modules::Modules::new(&Config::default()).registrar();
    let engine = build_engine(LIMITS, &*register);
    let src = "fn route() {\n    $avp(n) = $fn;\n}\n";
    let b = compile(engine, Source::Text { text: src, name: "test.rhai" })
        .unwrap_or_else(|e| panic!("`$fn` does not compile: {e}"));
    let core = Core::new();
    let (ctx, out) = run_hook(&b, "route", ctx_for(INVITE, &core));
    assert_done(&out);
    assert_eq!(avp(&ctx, "n"), "Alice");
}

// ------------------------------------------------------------------ exit, drop, 0, errors (spec §1.2)

#[test]
fn exit_from_a_sub_route_ends_the_whole_hook() {
    let src = r#"
fn route() {
    $avp(step) = "a";
    route_sub();
    $avp(step) = "c";
}
fn route_sub() {
    $avp(step) = "b";
    exit();
    $avp(step) = "unreachable";
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert!(matches!(out, Outcome::Exit), "{out:?}");
    let steps: Vec<String> = ctx.avps.all("step").iter().map(|d| d.to_string()).collect();
    assert_eq!(steps, vec!["b", "a"], "newest first; nothing after exit()");
}

#[test]
fn drop_gives_outcome_drop_from_any_depth() {
    let src = r#"
fn route() {
    route_deeper();
    $avp(after) = 1;
}
fn route_deeper() { route_deepest(); }
fn route_deepest() { drop(); }
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert!(matches!(out, Outcome::Drop), "{out:?}");
    assert!(ctx.dropped);
    assert_eq!(avp(&ctx, "after"), "<none>");
}

/// spec §1.2 / §4.2: a primitive returning 0 (t_check_trans on a retransmission) stops
/// the script, even inside an `if` condition.
#[test]
fn a_primitive_returning_0_ends_the_script() {
    let src = r#"
fn route() {
    $avp(step) = "before";
    if t_check_trans() == 1 {
        $avp(step) = "then";
    }
    $avp(step) = "after";
    sl_send_reply(404, "Not Here");
}
"#;
    let core = Core::new();
    core.t_check_trans.store(0, Ordering::SeqCst);
    let b = bundle(src);
    let (ctx, out) = run_hook(&b, "route", ctx_for(INVITE, &core));
    assert!(matches!(out, Outcome::Exit), "{out:?}");
    assert_eq!(avp(&ctx, "step"), "before");
    assert_eq!(ctx.retcode, 0);
    assert_eq!(core.calls(), vec!["t_check_trans"]);

    // A negative code does not end anything; retcode() and $retcode give it back.
    let src = r#"
fn route() {
    t_check_trans();
    $avp(rc) = retcode();
    $avp(rc_pv) = $retcode;
    sl_send_reply(404, "Not Here");
    $avp(rc2) = $retcode;
}
"#;
    let core = Core::new();
    core.t_check_trans.store(-1, Ordering::SeqCst);
    let b = bundle(src);
    let (ctx, out) = run_hook(&b, "route", ctx_for(INVITE, &core));
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "-1");
    assert_eq!(avp(&ctx, "rc_pv"), "-1");
    assert_eq!(avp(&ctx, "rc2"), "1");
    assert_eq!(core.calls(), vec!["t_check_trans", "sl_send_reply 404 Not Here"]);
    assert!(ctx.answered);
}

fn error_at(out: Outcome) -> (String, usize, usize, String) {
    match out {
        Outcome::Error(ScriptError::At { file, line, col, message }) => (file, line, col, message),
        other => panic!("expected an error with a position, got {other:?}"),
    }
}

#[test]
fn runtime_error_reports_file_and_line_of_the_failing_line() {
    let src = "fn route() {\n    $avp(a) = 1;\n    route_helper();\n}\n\nfn route_helper() {\n    let x = 1;\n    throw \"boom\";\n}\n";
    let (ctx, out, _) = run_on(src, INVITE);
    let shown = format!(
        "{}",
        match &out {
            Outcome::Error(e) => e.clone(),
            other => panic!("{other:?}"),
        }
    );
    let (file, line, _, message) = error_at(out);
    assert_eq!((file.as_str(), line), ("test.rhai", 8), "the throw inside the sub-route: {shown}");
    assert!(message.contains("boom"), "{message}");
    assert!(shown.starts_with("test.rhai:8:"), "{shown}");
    assert_eq!(avp(&ctx, "a"), "1", "the context comes back");

    // A primitive failing (a bad regular expression) points at its call.
    let src = "fn route() {\n    $avp(a) = 1;\n    subst_uri(\"/(unclosed/x/\");\n}\n";
    let (_, out, _) = run_on(src, INVITE);
    let (_, line, _, message) = error_at(out);
    assert_eq!(line, 3, "{message}");
}

#[test]
fn an_endless_loop_is_stopped_by_the_operation_limit() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let core = Core::new();
        let b = bundle_with(
            "fn route() {\n    let i = 0;\n    loop {\n        i += 1;\n    }\n}\n",
            &Config::default(),
            Limits { max_operations: 10_000, ..LIMITS },
        );
        let (_, out) = run_hook(&b, "route", ctx_for(INVITE, &core));
        let _ = tx.send(format!("{out:?}"));
    });
    let out = rx.recv_timeout(Duration::from_secs(30)).expect("the hook ended (no hang)");
    assert!(out.starts_with("Error("), "{out}");
    assert!(out.to_lowercase().contains("operations"), "{out}");
}

#[test]
fn runaway_recursion_is_an_error_not_a_crash() {
    let src = "fn route() { deeper(1); }\nfn deeper(n) { deeper(n + 1); }\n";
    let (_, out, _) = run_on(src, INVITE);
    assert!(matches!(out, Outcome::Error(_)), "{out:?}");
}

// ------------------------------------------------------------------ flags (spec §1.4)

#[test]
fn message_and_branch_flags() {
    let src = r#"
fn route() {
    $avp(f7) = isflagset(7);
    setflag(3);
    resetflag(7);
    setflag("NAT_SA");
    $avp(named) = isflagset("NAT_SA");
    $avp(f3) = isflagset(3);
    $avp(f7_after) = isflagset(7);
    setbflag(5);
    $avp(b5) = isbflagset(5);
    $avp(b6) = isbflagset(6);
}
"#;
    let core = Core::new();
    let b = bundle(src);
    let mut c = ctx_for(INVITE, &core);
    c.flags = 1 << 7;
    let (ctx, out) = run_hook(&b, "route", c);
    assert_done(&out);
    assert_eq!(avp(&ctx, "f7"), "true", "flags the transaction carried in are visible");
    assert_eq!(avp(&ctx, "f3"), "true");
    assert_eq!(avp(&ctx, "f7_after"), "false");
    assert_eq!(avp(&ctx, "named"), "true");
    assert_ne!(ctx.flags & (1 << 3), 0);
    assert_eq!(ctx.flags & (1 << 7), 0);
    assert_eq!(ctx.flags.count_ones(), 2, "bit 3 and the named flag: {:b}", ctx.flags);
    assert_eq!(avp(&ctx, "b5"), "true");
    assert_eq!(avp(&ctx, "b6"), "false");
    assert_eq!(ctx.bflags, 1 << 5);

    let (_, out, _) = run_on("fn route() { setflag(64); }", INVITE);
    assert!(matches!(out, Outcome::Error(_)), "flag 64 is out of range: {out:?}");
}

// ------------------------------------------------------------------ rr (spec §5)

#[test]
fn record_route_and_rr_params() {
    let src = r#"
fn route() {
    add_rr_param(";p1=a");
    $avp(rc) = record_route();
    add_rr_param("p2=b");
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "1");
    let rr = ctx.rr.as_ref().expect("record_route recorded");
    assert!(rr.preset.is_none());
    assert_eq!(rr.params, ";p1=a;p2=b", "add_rr_param before and after record_route");

    let (ctx, _, _) = run_on(r#"fn route() { record_route(";x=1"); }"#, INVITE);
    assert_eq!(ctx.rr.as_ref().map(|r| r.params.as_str()), Some(";x=1"));

    let (ctx, _, _) = run_on(r#"fn route() { record_route_preset("198.51.100.1:5060"); }"#, INVITE);
    assert_eq!(ctx.rr.as_ref().and_then(|r| r.preset.clone()), Some(("198.51.100.1:5060".to_string(), None)));
}

const BYE: &str = "BYE sip:bob@192.0.2.20:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-b1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:10.0.0.1;lr;ftag=ft1;did=7>, <sip:10.0.0.5:5070;lr>\r\n\
From: <sip:alice@example.com>;tag=ft1\r\n\
To: <sip:bob@example.com>;tag=tt1\r\n\
Call-ID: call-1@192.0.2.10\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n";

const LOOSE: &str = r#"
fn route() {
    $avp(rc) = loose_route();
    $avp(du) = $du;
    $avp(ru) = $ru;
    $avp(did) = check_route_param("did=7");
    $avp(other) = check_route_param("did=8");
    $avp(down) = is_direction("downstream");
    $avp(up) = is_direction("upstream");
    $avp(route_hdr) = $hdr(Route);
}
"#;

#[test]
fn loose_route_on_a_route_set_naming_the_proxy() {
    let (ctx, out, _) = run_on(LOOSE, BYE);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(avp(&ctx, "du"), "sip:10.0.0.5:5070;lr", "$du = the next (loose) Route");
    assert_eq!(avp(&ctx, "ru"), "sip:bob@192.0.2.20:5062", "the R-URI is left alone");
    assert_eq!(avp(&ctx, "did"), "true");
    assert_eq!(avp(&ctx, "other"), "false");
    assert_eq!(avp(&ctx, "down"), "true", "From tag = ftag");
    assert_eq!(avp(&ctx, "up"), "false");
    assert_eq!(avp(&ctx, "route_hdr"), "<sip:10.0.0.1;lr;ftag=ft1;did=7>, <sip:10.0.0.5:5070;lr>", "a lump");
    assert_eq!(rendered(&ctx), BYE.replace("Route: <sip:10.0.0.1;lr;ftag=ft1;did=7>, ", "Route: "));
    assert_eq!(ctx.send_socket.as_deref(), Some("udp:10.0.0.1:5060"), "single RR: leave on the inbound socket");

    // The other direction: the callee's From tag differs from ftag.
    let up = BYE.replace("From: <sip:alice@example.com>;tag=ft1", "From: <sip:bob@example.com>;tag=tt1");
    let (ctx, _, _) = run_on(LOOSE, &up);
    assert_eq!((avp(&ctx, "down"), avp(&ctx, "up")), ("false".into(), "true".into()));
}

#[test]
fn loose_route_preloaded_route_to_us_only_and_no_route() {
    // An initial request whose only Route is us: stripped, -1 (route by R-URI).
    let pre = INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRoute: <sip:proxy.example.com;lr>\r\n");
    let (ctx, out, _) = run_on(LOOSE, &pre);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "-1");
    assert_eq!(rendered(&ctx), INVITE, "our Route is removed");
    assert_eq!(avp(&ctx, "du"), "<none>");
    // No Route at all.
    let (ctx, _, _) = run_on(LOOSE, INVITE);
    assert_eq!(avp(&ctx, "rc"), "-1");
    assert!(ctx.edits.is_empty());
    // A Route set that does not start with us (in dialog): routed to its first entry.
    let foreign = BYE.replace("<sip:10.0.0.1;lr;ftag=ft1;did=7>, ", "");
    let (ctx, _, _) = run_on(LOOSE, &foreign);
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(avp(&ctx, "du"), "sip:10.0.0.5:5070;lr");
    assert!(ctx.edits.is_empty(), "not our entry: nothing removed");
}

// ------------------------------------------------------------------ tm (spec §4)

#[test]
fn t_on_failure_reply_branch_are_armed_last_call_wins() {
    let src = r#"
fn route() {
    t_on_failure("first");
    t_on_failure("missed_call");
    t_on_reply("rpl");
    t_on_branch("br");
    $avp(rc) = t_relay("no-auto-477", "udp:198.51.100.7:5060");
}
"#;
    let (ctx, out, core) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(ctx.on_failure.as_deref(), Some("missed_call"));
    assert_eq!(ctx.on_reply.as_deref(), Some("rpl"));
    assert_eq!(ctx.on_branch.as_deref(), Some("br"));
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(
        core.calls(),
        vec![
            r#"t_relay [no-auto-477] Some("udp:198.51.100.7:5060") ruri=sip:bob@example.com:5070;transport=udp du=None"#
        ]
    );
}

/// spec §4.4: t_check_status is an unanchored regex against the reply code in scope
/// (the winning code in failure_route).
#[test]
fn t_check_status_matches_the_code_in_scope() {
    let src = r#"
fn failure_route_x() {
    $avp(exact) = t_check_status("486");
    $avp(class) = t_check_status("4[0-9][0-9]");
    $avp(five) = t_check_status("^5");
    $avp(unanchored) = t_check_status("8");
    $avp(alt) = t_check_status("(408)|(5[0-9][0-9])");
    $avp(code) = $T_reply_code;
}
fn route() {}
"#;
    let core = Core::new();
    let b = bundle(src);
    let mut c = ctx_for(INVITE, &core);
    c.kind = RouteKind::Failure;
    c.reply_code = 486;
    let (ctx, out) = run_hook(&b, "failure_route_x", c);
    assert_done(&out);
    assert_eq!(
        ["exact", "class", "five", "unanchored", "alt", "code"].map(|k| avp(&ctx, k)),
        ["true", "true", "false", "true", "false", "486"].map(String::from)
    );

    // With a reply in scope (onreply), its status counts.
    let reply = "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-x\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut c = ctx_for(INVITE, &core);
    c.kind = RouteKind::Failure;
    c.reply = Some(msg(reply));
    c.reply_code = 503;
    let (ctx, _) = run_hook(&b, "failure_route_x", c);
    assert_eq!(["exact", "five", "alt"].map(|k| avp(&ctx, k)), ["false", "true", "true"].map(String::from));

    // No reply at all: nothing matches.
    let (ctx, _) = run_hook(&b, "failure_route_x", ctx_for(INVITE, &core));
    assert_eq!(avp(&ctx, "unanchored"), "false");
}

// ------------------------------------------------------------------ textops, xlog

#[test]
fn subst_uri_with_back_references() {
    let src = r#"
fn route() {
    $avp(rc) = subst_uri("/^sip:\\+49([0-9]+)@([^;]*)(.*)$/sip:0\\1@gw.\\2\\3/");
    $avp(ru) = $ru;
    $avp(miss) = subst_uri("/^tel:(.*)$/sip:\\1@x/");
    $avp(ru2) = $ru;
    $avp(ci) = subst_uri("/GW\\.EXAMPLE/gw2.example/i");
}
"#;
    let text =
        INVITE.replace("sip:bob@example.com:5070;transport=udp SIP/2.0", "sip:+4930123@example.com;user=phone SIP/2.0");
    let (ctx, out, _) = run_on(src, &text);
    assert_done(&out);
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(avp(&ctx, "ru"), "sip:030123@gw.example.com;user=phone");
    assert_eq!(avp(&ctx, "miss"), "-1");
    assert_eq!(avp(&ctx, "ru2"), "sip:030123@gw.example.com;user=phone", "no match: unchanged");
    assert_eq!(avp(&ctx, "ci"), "1");
    assert_eq!(ctx.ruri(), "sip:030123@gw2.example.com;user=phone");
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn xlog_expands_pseudo_variables() {
    let src = r#"
fn route() {
    $avp(who) = "carol";
    xlog("L_INFO", "ru=$ru fu=$fu mf=$hdr(Max-Forwards) ci=$ci avp=$avp(who) var=$var(never_set_xlog) rm=$rm\n");
    xlog("one-arg $si:$sp");
}
"#;
    let buf = LogBuf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let (_, out, _) = tracing::subscriber::with_default(subscriber, || run_on(src, INVITE));
    assert_done(&out);
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("ru=sip:bob@example.com:5070;transport=udp fu=sip:alice@example.com mf=70 ci=call-1@192.0.2.10 avp=carol var=<null> rm=INVITE"),
        "{log}"
    );
    assert!(log.contains("one-arg 192.0.2.10:5060"), "{log}");
}

// ------------------------------------------------------------------ check_script

fn check(src: &str) -> Vec<siprox::script::Diagnostic> {
    let register = siprox::modules::Modules::new(&Config::default()).registrar();
    let engine = build_engine(LIMITS, &*register);
    check_script(engine, Source::Text { text: src, name: "t.rhai" })
}

#[test]
fn check_reports_unknown_function_with_line_and_col() {
    let d = check("fn route() {\n    if has_totag() {\n        foo_bar(1);\n    }\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].file.as_str(), d[0].line, d[0].col), ("t.rhai", 3, 9), "{}", d[0]);
    assert!(d[0].message.contains("unknown function `foo_bar`"), "{}", d[0]);
}

#[test]
fn check_reports_wrong_arity_with_line_and_col() {
    let d = check("fn route() {\n    sl_send_reply(404);\n    t_relay();\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].col), (2, 5), "{}", d[0]);
    assert!(d[0].message.contains("sl_send_reply"), "{}", d[0]);
    assert!(d[0].message.contains('2') && d[0].message.contains('1'), "{}", d[0]);
}

#[test]
fn check_reports_unknown_pseudo_variable_with_line_and_col() {
    let d = check("fn route() {\n    $avp(a) = 1;\n    let x = $nope;\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].line, 3, "{}", d[0]);
    assert_eq!(d[0].col, 14, "the column of the unknown name: {}", d[0]);
    assert!(d[0].message.contains("nope"), "{}", d[0]);
}

#[test]
fn check_reports_a_missing_route() {
    let d = check("fn route_relay() {\n    t_relay();\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].col), (1, 1), "{}", d[0]);
    assert!(d[0].message.contains("route"), "{}", d[0]);
    assert!(d[0].to_string().starts_with("t.rhai:1:1: "), "{}", d[0]);
}

#[test]
fn check_accepts_a_clean_script() {
    let d = check(siprox::script::DEFAULT_SCRIPT);
    assert!(d.is_empty(), "{d:?}");
    let d = check(
        "fn route() {\n    if is_method(\"INVITE\") { route_relay(); }\n}\nfn route_relay() { t_relay(); exit(); }\n",
    );
    assert!(d.is_empty(), "{d:?}");
}

// ------------------------------------------------------------------ regex, sipmsgops

/// `pcre_match` (what `siprox port` writes for `=~`): unanchored Rust regex on a value's
/// text, ints as their digits, `()` never matching; `has_body` with and without a type.
#[test]
fn pcre_match_and_has_body() {
    let src = r#"
fn route() {
    $avp(ru) = pcre_match($ru, "^sip:bob@");
    $avp(anchored) = pcre_match($ru, "^bob");
    $avp(int) = pcre_match($cs, "^1$");
    $avp(unit) = pcre_match($du, ".*");
    $avp(again) = pcre_match($ru, "^sip:bob@");
    $avp(body) = has_body();
    $avp(sdp) = has_body("application/sdp");
    $avp(text) = has_body("text/plain");
}
"#;
    let (ctx, out, _) = run_on(src, INVITE);
    assert_done(&out);
    assert_eq!(
        ["ru", "anchored", "int", "unit", "again", "body", "sdp", "text"].map(|n| avp(&ctx, n)),
        ["true", "false", "true", "false", "true", "false", "false", "false"]
    );
    let with_sdp = INVITE
        .replace("Content-Length: 0\r\n\r\n", "Content-Type: Application/SDP\r\nContent-Length: 5\r\n\r\nv=0\r\n");
    let (ctx, _, _) = run_on(src, &with_sdp);
    assert_eq!(["body", "sdp", "text"].map(|n| avp(&ctx, n)), ["true", "true", "false"]);
    let (_, out, _) = run_on("fn route() { pcre_match($ru, \"(\"); }", INVITE);
    assert!(!matches!(out, Outcome::Done), "a bad regex is a script error: {out:?}");
}
