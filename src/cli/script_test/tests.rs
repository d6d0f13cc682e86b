//! The runner on small scripts written to a temp dir: passing cases pass, wrong
//! expectations fail and say why, bad files are reported with their position, and the dry
//! run renders, forks and fails over as the proxy does.

use super::{normalise_message, run, Summary};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A temp dir holding one script and one test file; removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(script: &str, tests: &str) -> Files {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("siprox-script-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("route.rhai"), script).expect("write script");
        std::fs::write(dir.join("route.test.toml"), tests).expect("write tests");
        Files { dir }
    }

    fn with_file(self, name: &str, content: &str) -> Files {
        std::fs::write(self.dir.join(name), content).expect("write file");
        self
    }

    fn test_file(&self) -> PathBuf {
        self.dir.join("route.test.toml")
    }

    /// Runs the test file; the summary and everything printed.
    fn run(&self) -> (Summary, String) {
        let mut out = Vec::new();
        let summary = run(&[self.test_file()], &mut out).expect("writing to a Vec");
        (summary, String::from_utf8(out).expect("utf8 output"))
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const INVITE: &str = r#"message = """
INVITE sip:bob@10.0.0.20:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv1
Max-Forwards: 70
From: "Alice" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: inv-1@192.0.2.10
CSeq: 1 INVITE
X-Secret: s3cret
Contact: <sip:alice@192.0.2.10>
""""#;

fn case(name: &str, expect: &str) -> String {
    format!("script = \"route.rhai\"\n\n[[case]]\nname = \"{name}\"\n{INVITE}\n[case.expect]\n{expect}\n")
}

const REPLY_404: &str = r#"fn route() { sl_send_reply(404, "Not here"); }"#;

#[test]
fn a_right_expectation_passes() {
    let f = Files::new(REPLY_404, &case("answers 404", "reply = 404\nreason = \"Not here\"\nno_relay = true"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    assert!(out.contains("ok   ") && out.contains("route.test.toml: answers 404"), "{out}");
    assert!(out.ends_with("1 passed, 0 failed\n"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_saying_what_happened() {
    let f = Files::new(REPLY_404, &case("wants a relay", "reply = 200\nrelay = \"sip:bob@10.0.0.20:5080\""));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 0, failed: 1 }, "{out}");
    assert!(out.contains("FAIL "), "{out}");
    assert!(out.contains("reply: expected 200, got 404 Not here"), "{out}");
    assert!(out.contains("relay: expected \"sip:bob@10.0.0.20:5080\", got no relay"), "{out}");
    // The reply as it would have gone out, so the reader sees why.
    assert!(out.contains("reply 404 Not here (stateless):"), "{out}");
    assert!(out.contains("  | SIP/2.0 404 Not here"), "{out}");
    assert!(out.ends_with("0 passed, 1 failed\n"), "{out}");
}

#[test]
fn a_misspelt_key_is_an_error_at_its_position() {
    let f = Files::new(REPLY_404, &case("typo", "rely = 404"));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    // Line 17 of the generated file holds `rely = 404`.
    assert!(out.contains("route.test.toml:17:1: unknown field `rely`"), "{out}");
}

#[test]
fn a_script_that_does_not_compile_is_a_failure_with_its_position() {
    let f = Files::new("fn route() {\n    sl_send_reply(404);\n}\n", &case("x", "reply = 404"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 0, failed: 1 }, "{out}");
    assert!(out.contains("route.rhai:2:5: `sl_send_reply` takes 2 argument(s), not 1"), "{out}");
}

#[test]
fn empty_expectations_are_refused() {
    let f = Files::new(REPLY_404, &case("expects nothing", ""));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("[case.expect] expects nothing"), "{out}");
}

#[test]
fn state_of_modules_not_built_is_refused_by_name() {
    let tests =
        case("dialog", "reply = 404").replace("[case.expect]", "[case.state.dialog]\ncallid = \"c1\"\n\n[case.expect]");
    let f = Files::new(REPLY_404, &tests);
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(
        out.contains("[case.state.dialog]: `dialog` cannot be preset yet: the dialog module is not built"),
        "{out}"
    );
    let f = Files::new(REPLY_404, &tests.replace("case.state.dialog", "case.state.nosuch"));
    let (_, out) = f.run();
    assert!(out.contains("unknown state table `nosuch` (known: tm, location, dispatcher"), "{out}");
}

#[test]
fn location_rows_are_preset_for_lookup() {
    let script = "fn route() {\n    if lookup(\"location\") == 1 { t_relay(); } else { sl_send_reply(404, \"Not Found\"); }\n}\n";
    let tests = case("lookup", "relay = \"sip:198.51.100.7:40123\"").replace(
        "[case.expect]",
        "[[case.state.location]]\naor = \"bob\"\ncontact = \"sip:bob@10.0.0.5\"\nreceived = \"sip:198.51.100.7:40123\"\n\n[case.expect]",
    );
    let f = Files::new(script, &tests);
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    let f = Files::new(script, &tests.replace("aor = \"bob\"", "aor = \"carol\""));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "a preset for another AoR is not found: {out}");
}

const EDITS: &str = r#"
fn route() {
    if mf_process_maxfwd_header(10) == -1 { sl_send_reply(483, "Too Many Hops"); exit(); }
    append_hf("X-Foo: bar\r\n");
    remove_hf("X-Secret");
    $ru = "sip:bob@10.0.0.21";
    record_route();
    xlog("L_DBG", "relaying $ci to $ru");
    if t_relay() < 0 { sl_reply_error(); }
}
"#;

#[test]
fn the_relayed_request_carries_every_edit_as_the_proxy_renders_it() {
    let expect = r#"relay = "sip:bob@10.0.0.21"
ruri = "sip:bob@10.0.0.21"
du = ""
dest = "udp:10.0.0.21:5060"
branches = ["sip:bob@10.0.0.21"]
replies = [100]
transaction = true
headers_added = ["Record-Route: <sip:127.0.0.1:5060;lr;ftag=a1>", "X-Foo: bar", "Via: branch=z9hG4bKdryrun.0"]
headers_removed = ["X-Secret"]
header = { "Max-Forwards" = "69" }
log = ["relaying inv-1@192.0.2.10 to sip:bob@10.0.0.21"]
message = """
INVITE sip:bob@10.0.0.21 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKdryrun.0
Record-Route: <sip:127.0.0.1:5060;lr;ftag=a1>
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv1
Max-Forwards: 69
From: "Alice" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: inv-1@192.0.2.10
CSeq: 1 INVITE
Contact: <sip:alice@192.0.2.10>
Content-Length: 0
X-Foo: bar

""""#;
    let f = Files::new(EDITS, &case("relayed with edits", expect));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
}

#[test]
fn a_wrong_header_value_and_message_fail() {
    let expect = "header = { \"Max-Forwards\" = \"70\" }\nheaders_removed = [\"Contact\"]\nmessage = \"INVITE x\"";
    let f = Files::new(EDITS, &case("wrong", expect));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("header Max-Forwards: expected \"70\", got \"69\""), "{out}");
    assert!(out.contains("headers_removed: \"Contact\" was not removed (1 before, 1 after)"), "{out}");
    assert!(out.contains("message: differs at line 1: expected \"INVITE x\""), "{out}");
    assert!(
        out.contains("relay #0 (t_relay) sip:bob@10.0.0.21 -> udp:10.0.0.21:5060 from udp:127.0.0.1:5060:"),
        "{out}"
    );
}

#[test]
fn tcp_in_udp_out_double_record_route_and_nat_via() {
    let message = INVITE.replace("SIP/2.0/UDP 192.0.2.10", "SIP/2.0/TCP 192.0.2.10");
    let tests = format!(
        "script = \"route.rhai\"\n\n[[case]]\nname = \"from tcp\"\nsource = \"tcp:203.0.113.7:40000\"\n\
         socket = \"tcp:127.0.0.1:5060\"\n{message}\n[case.expect]\ndest = \"udp:10.0.0.21:5060\"\n\
         headers_added = [\"Record-Route: transport=tcp;r2=on\", \"Record-Route: <sip:127.0.0.1:5060;r2=on;lr\", \
         \"Via: received=203.0.113.7\"]\n"
    );
    let f = Files::new(EDITS, &tests);
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    let f = Files::new(EDITS, &tests.replace("socket = \"tcp:", "socket = \"udp:"));
    let (_, out) = f.run();
    assert!(out.contains("the socket is udp but the source is tcp"), "{out}");
}

const FAILOVER: &str = r#"
fn route() {
    setflag(3);
    $avp(tries) = 1;
    append_hf("X-Route: kept\r\n");
    $du = "sip:10.0.0.31:5060";
    t_on_failure("next");
    t_relay();
}

fn failure_route_next() {
    xlog("L_INFO", "failed with $T_reply_code $rr, tries $avp(tries), ru $ru");
    if t_was_cancelled() { xlog("L_INFO", "cancelled"); exit(); }
    if isflagset(3) && t_check_status("486|5[0-9][0-9]") {
        $du = "sip:10.0.0.32:5060";
        t_on_failure("last");
        t_relay();
    }
}

fn failure_route_last() { t_reply(503, "Nobody"); }
"#;

#[test]
fn a_played_back_failure_runs_the_failure_route_on_the_saved_transaction() {
    let base = case("first backend busy", "relay = \"sip:10.0.0.31:5060\"\nfailure_route = \"next\"");
    // Flags, AVPs and header edits of `route` are the transaction's; $ru is as received.
    let then = "[case.then]\nreply = 486\n\n[case.then.expect]\nrelay = \"sip:10.0.0.32:5060\"\n\
                ruri = \"sip:bob@10.0.0.20:5080\"\nfailure_route = \"last\"\nno_reply = true\n\
                headers_added = [\"X-Route: kept\"]\n\
                log = [\"failed with 486 Busy Here, tries 1, ru sip:bob@10.0.0.20:5080\"]\n";
    let f = Files::new(FAILOVER, &format!("{base}\n{then}"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
}

#[test]
fn a_failure_route_can_answer_and_a_cancelled_call_relays_the_winner() {
    let base = case("x", "relay = \"sip:10.0.0.31:5060\"");
    // 408 does not match t_check_status: nothing relayed, the 408 goes upstream.
    let f = Files::new(
        FAILOVER,
        &format!("{base}\n[case.then]\nreply = 408\n\n[case.then.expect]\nreply = 408\nno_relay = true\nfailure_route = \"\"\n"),
    );
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    let f = Files::new(
        FAILOVER,
        &format!("{base}\n[case.then]\nreply = 487\ncancelled = true\n\n[case.then.expect]\nreply = 487\nlog = [\"cancelled\"]\n"),
    );
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    // A wrong `then` expectation fails and is marked as such.
    let f = Files::new(FAILOVER, &format!("{base}\n[case.then]\nreply = 486\n\n[case.then.expect]\nreply = 486\n"));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("then: reply: expected 486, got no reply"), "{out}");
    assert!(out.contains("--- then ---") && out.contains("failure_route_next: ended"), "{out}");
}

#[test]
fn without_a_failure_route_the_reply_is_relayed_upstream_without_our_via() {
    let script = r#"fn route() { record_route(); t_relay(); }"#;
    let base = case("x", "transaction = true");
    let expect = "reply = 486\nreason = \"Busy\"\nheaders_removed = [\"Via: 127.0.0.1:5060\"]\nreplies = [486]";
    let f = Files::new(
        script,
        &format!("{base}\n[case.then]\nreply = 486\nreason = \"Busy\"\n\n[case.then.expect]\n{expect}\n"),
    );
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
}

#[test]
fn a_reply_needs_a_relayed_request() {
    let f = Files::new(
        REPLY_404,
        &format!("{}\n[case.then]\nreply = 486\n\n[case.then.expect]\nreply = 486\n", case("x", "reply = 404")),
    );
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("no reply can come back: the route relayed nothing statefully"), "{out}");
}

#[test]
fn script_errors_answer_500_and_drop_is_seen() {
    let f =
        Files::new("fn route() { let x = 1 + \"a\" * 2; }", &case("err", "error = true\nreply = 500\ndropped = false"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    let f = Files::new("fn route() { drop(); }", &case("drop", "dropped = true\nno_reply = true\nno_relay = true"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
}

#[test]
fn transaction_presets_drive_cancel_retransmission_and_ack() {
    let script = r#"
fn route() {
    if is_method("CANCEL") { if t_check_trans() == 1 { t_relay(); } exit(); }
    if is_method("ACK") { if t_check_trans() == 1 { t_relay(); } exit(); }
    t_check_trans();
    xlog("new request");
    t_relay();
}
"#;
    let cancel = INVITE.replace("INVITE sip", "CANCEL sip").replace("1 INVITE", "1 CANCEL");
    let tests = format!(
        "script = \"route.rhai\"\n\n[[case]]\nname = \"cancel\"\n{cancel}\n[case.state.tm]\nlast_reply = 180\n\
         [case.expect]\ncancel_relayed = true\nreply = 200\nreason = \"canceling\"\nno_relay = true\n\n\
         [[case]]\nname = \"retransmission\"\n{INVITE}\n[case.state.tm]\n[case.expect]\nabsorbed = true\nno_relay = true\nreplies = []\n\n\
         [[case]]\nname = \"ack\"\n{}\n[case.state.tm]\nlast_reply = 486\n[case.expect]\nabsorbed = true\nno_relay = true\n\n\
         [[case]]\nname = \"new\"\n{INVITE}\n[case.expect]\nabsorbed = false\nlog = [\"new request\"]\n",
        INVITE.replace("INVITE sip", "ACK sip").replace("1 INVITE", "1 ACK")
    );
    let f = Files::new(script, &tests);
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 4, failed: 0 }, "{out}");
}

#[test]
fn each_case_starts_with_empty_script_variables() {
    let script = r#"fn route() { if $var(seen) == () { xlog("fresh"); } $var(seen) = 1; sl_send_reply(404, "x"); }"#;
    let one = case("one", "log = [\"fresh\"]");
    let f =
        Files::new(script, &format!("{one}\n[[case]]\nname = \"two\"\n{INVITE}\n[case.expect]\nlog = [\"fresh\"]\n"));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 2, failed: 0 }, "{out}");
}

#[test]
fn message_text_becomes_wire_format() {
    let m = normalise_message("\nOPTIONS sip:a SIP/2.0\nVia: SIP/2.0/UDP h\n");
    assert_eq!(m, b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 0\r\n\r\n");
    let m = normalise_message("MESSAGE sip:a SIP/2.0\nl: 2\n\nhi\n");
    assert_eq!(m, b"MESSAGE sip:a SIP/2.0\r\nl: 2\r\n\r\nhi\r\n", "a Content-Length given stays as written");
    let m = normalise_message("MESSAGE sip:a SIP/2.0\r\nTo: b\r\n\r\nhello\n");
    assert_eq!(m, b"MESSAGE sip:a SIP/2.0\r\nTo: b\r\nContent-Length: 7\r\n\r\nhello\r\n");
}

#[test]
fn a_file_that_is_not_there_or_has_no_case_fails() {
    let mut out = Vec::new();
    let s = run(&[PathBuf::from("/nonexistent/x.test.toml")], &mut out).expect("write");
    assert_eq!(s, Summary { passed: 0, failed: 1 });
    let f = Files::new(REPLY_404, "script = \"route.rhai\"\n");
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("route.test.toml:1:1: no [[case]] in this file"), "{out}");
}

#[test]
fn the_config_gives_sockets_advertised_address_aliases_and_module_parameters() {
    let script = r#"
fn route() {
    if is_myself("sip:proxy.example.com") && is_myself("sip:203.0.113.10") { xlog("L_INFO", "me"); }
    record_route();
    t_relay();
}
"#;
    let config = "[core]\nlisten = [\"udp:10.0.0.1:5070\"]\nadvertise = \"203.0.113.10\"\n\
                  alias = [\"proxy.example.com\"]\n\n[rr]\nappend_fromtag = false\n";
    let tests = case(
        "advertised",
        "log = [\"me\"]\nheaders_added = [\"Record-Route: <sip:203.0.113.10:5070;lr>\", \
         \"Via: SIP/2.0/UDP 203.0.113.10:5070;branch=\"]\ndest = \"udp:10.0.0.20:5080\"",
    )
    .replace("script = \"route.rhai\"", "script = \"route.rhai\"\nconfig = \"siprox.toml\"");
    let f = Files::new(script, &tests).with_file("siprox.toml", config);
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    // A socket that is not in [core] listen is refused, naming those that are.
    let f = Files::new(script, &tests.replace("[case.expect]", "socket = \"udp:127.0.0.1:5060\"\n[case.expect]"))
        .with_file("siprox.toml", config);
    let (_, out) = f.run();
    assert!(out.contains("socket \"udp:127.0.0.1:5060\" is not in [core] listen (udp:10.0.0.1:5070)"), "{out}");
    // A config that does not load is reported at the `config` key.
    let f = Files::new(script, &tests).with_file("siprox.toml", "[core]\nlisten = [\"sctp:1.2.3.4:5\"]\n");
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("route.test.toml:2:10: config: listen"), "{out}");
}

#[test]
fn a_bad_key_in_a_state_table_is_named() {
    let tests = case("x", "reply = 404").replace("[case.expect]", "[case.state.tm]\nlast = 1\n[case.expect]");
    let f = Files::new(REPLY_404, &tests);
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("[case.state.tm]: `tm`: unknown field `last`, expected `last_reply`"), "{out}");
}

#[test]
fn parallel_branches_run_the_branch_route_each() {
    let script = r#"
fn route() {
    append_branch("sip:carol@10.0.0.22");
    append_branch("sip:dave@10.0.0.23");
    t_on_branch("mark");
    t_relay();
}
fn branch_route_mark() {
    if $T_branch_idx == 2 { drop(); }
    append_hf("X-Branch: $T_branch_idx\r\n");
}
"#;
    let expect = "branches = [\"sip:bob@10.0.0.20:5080\", \"sip:carol@10.0.0.22\"]\nbranch_route = \"mark\"\n\
                  headers_added = [\"X-Branch: 0\"]\ndropped = false";
    let f = Files::new(script, &case("fork", expect));
    let (summary, out) = f.run();
    assert_eq!(summary, Summary { passed: 1, failed: 0 }, "{out}");
    let f = Files::new(script, &case("fork", "branches = [\"sip:bob@10.0.0.20:5080\"]"));
    let (summary, out) = f.run();
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("relay #1 (t_relay) sip:carol@10.0.0.22 -> udp:10.0.0.22:5060"), "{out}");
    assert!(out.contains("  | X-Branch: 1"), "{out}");
}
