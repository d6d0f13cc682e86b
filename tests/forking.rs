//! Parallel forking through the real `siprox` binary: the route sends each
//! INVITE to two SIPp backends at once (`$du` = backend 1 for the Request-URI
//! branch, `append_branch("sip:127.0.0.1:B2")` for the second) and the tests
//! check what the caller gets: the 2xx when one branch answers, the best
//! negative reply by OpenSIPS's order when none does, CANCEL of the branches
//! left ringing, 6xx ending the fork, failure_route once after every branch,
//! branch_route once per branch and `drop()` there suppressing a branch.
//!
//! Backend scenarios: tests/sipp/uas-{404,486,503,603,302}.xml (refuse, after
//! `-d` ms), uas-call-late.xml (answer after `-d` ms), uas-cancel.xml (ring,
//! then expect CANCEL), uas-xbranch*.xml (check X-Branch). Caller:
//! uac-call.xml or uac-reject.xml (any of several finals; the test reads which
//! one from the caller's message log).

mod support;

use std::time::Duration;
use support::*;

/// What the route does besides forking to two backends.
#[derive(Default)]
struct Route<'a> {
    /// Statements run just before t_relay() (arming hooks).
    before_relay: &'a str,
    /// More functions (the hooks).
    hooks: &'a str,
}

/// The forking route: Max-Forwards, in-dialog by loose_route, CANCEL by
/// t_check_trans, then record_route and two branches: the Request-URI sent to
/// backend `b1` (`$du`) and `sip:127.0.0.1:b2` (append_branch).
fn fork_script(b1: u16, b2: u16, r: Route) -> String {
    format!(
        r#"// siprox parallel-forking test script (tests/forking.rs)
fn route() {{
{head}    record_route();
    $du = "sip:127.0.0.1:{b1}";
    append_branch("sip:127.0.0.1:{b2}");
    {before}
    if t_relay() < 0 {{ sl_reply_error(); }}
}}
{hooks}
"#,
        head = ROUTE_HEAD,
        before = r.before_relay,
        hooks = r.hooks,
    )
}

/// A backend: scenario file and its `-d` delay (the <pause/> before answering).
fn backend(name: &str, scenario: &str, port: u16, delay_ms: u32, calls: u32, dir: &TempDir) -> RunningSipp {
    Sipp::uas(name, scenario, port, Proto::Udp)
        .calls(calls)
        .timeout_s(12)
        .arg("-d")
        .arg(&delay_ms.to_string())
        .message_log()
        .spawn(dir)
}

fn caller(scenario: &str, proxy: &Proxy, calls: u32) -> RunningSipp {
    Sipp::uac("uac", scenario, proxy, Proto::Udp).calls(calls).timeout_s(12).message_log().spawn(&proxy.dir)
}

/// Status codes of the finals (>= 200) the caller received for its INVITEs,
/// one entry per message received (retransmissions included).
fn invite_finals(uac: &RunningSipp) -> Vec<u16> {
    uac.logged_messages("received")
        .iter()
        .filter(|m| header_values(m, "CSeq").iter().any(|v| v.ends_with(" INVITE")))
        .filter_map(|m| m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok())
        .filter(|&c: &u16| c >= 200)
        .collect()
}

/// Every final the caller got for its INVITEs is `code`, at least one per call.
fn assert_caller_got_only(uac: &RunningSipp, code: u16, calls: usize) {
    let finals = invite_finals(uac);
    assert!(
        finals.len() >= calls && finals.iter().all(|&c| c == code),
        "the caller should get {code} (and no other final) for each of its {calls} INVITE(s); \
         it got {finals:?}\n{}",
        uac.report()
    );
}

/// Backend 1 answers 486 at once, backend 2 answers 200 300 ms later: the
/// 486 is kept (and ACKed by the proxy) while the other branch is pending,
/// the caller gets the 200 and completes the call; the 486 never reaches it.
#[test]
fn busy_and_answered_caller_gets_the_200() {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start("fork-486-200", &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1-486", "uas-486.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-200", "uas-call-late.xml", b2, 300, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success(); // got the proxy's ACK of its 486
    uas2.assert_success(); // got ACK and BYE

    assert_caller_got_only(&uac, 200, 2);
    assert!(
        uac.received_starting("SIP/2.0 486 ").is_empty(),
        "the 486 of branch 1 reached the caller:\n{}",
        uac.report()
    );
    assert!(
        uas1.received_starting("CANCEL ").is_empty(),
        "a branch that already answered 486 got a CANCEL:\n{}",
        uas1.report()
    );
    // Both backends got the same INVITE, through the proxy, each on its branch.
    let inv1 = uas1.received_starting("INVITE ");
    let inv2 = uas2.received_starting("INVITE ");
    assert_eq!((inv1.len(), inv2.len()), (2, 2), "{}\n{}", uas1.report(), uas2.report());
    assert!(inv2[0].starts_with(&format!("INVITE sip:127.0.0.1:{b2} SIP/2.0\n")), "{}", inv2[0]);
    proxy.stop();
}

/// Both branches fail: the caller gets the one best reply by OpenSIPS's
/// order, never the other; the proxy ACKs both backends.
fn best_of_two(label: &str, first: (&str, u32), second: (&str, u32), want: u16, not: u16) {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start(label, &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1", first.0, b1, first.1, 2, &proxy.dir);
    let mut uas2 = backend("b2", second.0, b2, second.1, 2, &proxy.dir);
    let mut uac = caller("uac-reject.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success();
    uas2.assert_success();
    assert_caller_got_only(&uac, want, 2);
    assert!(
        uac.received_starting(&format!("SIP/2.0 {not} ")).is_empty(),
        "the losing {not} reached the caller:\n{}",
        uac.report()
    );
    proxy.stop();
}

/// 503 (at once) and 404 (300 ms later): 404 wins (a 4xx beats 503, the
/// worst of all), and it is the last to arrive, so the proxy must wait for it.
#[test]
fn both_fail_503_and_404_caller_gets_404() {
    best_of_two("fork-503-404", ("uas-503.xml", 0), ("uas-404.xml", 300), 404, 503);
}

/// 404 (at once) and 503 (300 ms later): still 404; the order of arrival
/// does not matter.
#[test]
fn both_fail_404_and_503_caller_gets_404() {
    best_of_two("fork-404-503", ("uas-404.xml", 0), ("uas-503.xml", 300), 404, 503);
}

/// 486 and 302: a 3xx beats any 4xx.
#[test]
fn both_fail_486_and_302_caller_gets_302() {
    best_of_two("fork-486-302", ("uas-486.xml", 0), ("uas-302.xml", 300), 302, 486);
}

/// Backend 1 refuses with 486 at once, backend 2 never answers: the proxy
/// waits for backend 2's local timeout (fr_timeout = 2 s, no provisional
/// reply, so no CANCEL) and the 486 beats that local 408; the caller gets 486
/// only then, and never a 408.
#[test]
fn silent_branch_times_out_and_the_486_wins() {
    let silent = SilentUdp::start();
    let b1 = free_port();
    let proxy = Proxy::start("fork-486-silent", &fork_script(b1, silent.port, Route::default()));
    let mut uas1 = backend("b1-486", "uas-486.xml", b1, 0, 1, &proxy.dir);
    let t0 = std::time::Instant::now();
    let mut uac = caller("uac-reject.xml", &proxy, 1);
    uac.assert_success();
    uas1.assert_success();
    assert_caller_got_only(&uac, 486, 1);
    assert!(
        uac.received_starting("SIP/2.0 408 ").is_empty(),
        "the local 408 of the silent branch reached the caller:\n{}",
        uac.report()
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "the caller got its final after {took:?}: the proxy did not wait for the silent branch"
    );
    assert!(silent.count_starting("INVITE ") >= 1, "branch 2 was never sent");
    assert_eq!(silent.count_starting("CANCEL "), 0, "a branch that never answered got a CANCEL");
    proxy.stop();
}

/// With a failure_route armed, it runs once per transaction, after BOTH
/// branches failed (the 404 that wins arrives 300 ms after the 503), and sees
/// the winning code; it does nothing, so the winner goes upstream.
#[test]
fn failure_route_runs_once_after_both_branches() {
    let (b1, b2) = (free_port(), free_port());
    let script = fork_script(
        b1,
        b2,
        Route {
            before_relay: r#"t_on_failure("after");"#,
            hooks: r#"
fn failure_route_after() {
    xlog("L_INFO", "FAILURE-ROUTE-RAN ci=$ci code=$T_reply_code rs=$rs");
}
"#,
        },
    );
    let proxy = Proxy::start("fork-failure-route", &script);
    let mut uas1 = backend("b1-503", "uas-503.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-404", "uas-404.xml", b2, 300, 2, &proxy.dir);
    let mut uac = caller("uac-reject.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success();
    uas2.assert_success();
    assert_caller_got_only(&uac, 404, 2);

    let log = proxy.log_text();
    let runs: Vec<&str> = log.lines().filter(|l| l.contains("FAILURE-ROUTE-RAN")).collect();
    assert_eq!(runs.len(), 2, "failure_route must run exactly once per call (2 calls):\n{}", runs.join("\n"));
    for r in &runs {
        assert!(
            r.contains("code=404 rs=404"),
            "failure_route ran before the winning 404 arrived, or saw another code: {r}"
        );
    }
    let call_ids: std::collections::HashSet<&str> =
        runs.iter().filter_map(|r| r.split("ci=").nth(1)?.split_whitespace().next()).collect();
    assert_eq!(call_ids.len(), 2, "one failure_route run per call:\n{}", runs.join("\n"));
    proxy.stop();
}

/// Serial after parallel: both branches fail, the failure_route relays to a
/// third backend that takes the call; the caller sees neither 503 nor 404.
#[test]
fn failure_route_after_parallel_fork_relays_to_third_backend() {
    let (b1, b2, b3) = (free_port(), free_port(), free_port());
    let hooks = format!(
        r#"
fn failure_route_next() {{
    if t_was_cancelled() {{ exit(); }}
    $du = "sip:127.0.0.1:{b3}";
    if t_relay() < 0 {{ xlog("L_ERR", "relay to backend 3 failed"); }}
}}
"#
    );
    let script = fork_script(b1, b2, Route { before_relay: r#"t_on_failure("next");"#, hooks: &hooks });
    let proxy = Proxy::start("fork-then-serial", &script);
    let mut uas1 = backend("b1-503", "uas-503.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-404", "uas-404.xml", b2, 200, 2, &proxy.dir);
    let mut uas3 = backend("b3-200", "uas-call-late.xml", b3, 0, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success();
    uas2.assert_success();
    uas3.assert_success();
    assert_caller_got_only(&uac, 200, 2);
    proxy.stop();
}

/// Backend 1 rings (180), backend 2 answers 200 300 ms later: the 200 goes
/// to the caller and completes the call; backend 1 gets a CANCEL (Reason:
/// call completed elsewhere), answers it 200 and its INVITE 487, which the
/// proxy ACKs and never relays to the caller.
#[test]
fn ringing_branch_cancelled_when_the_other_answers() {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start("fork-180-200", &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1-ringing", "uas-cancel.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-200", "uas-call-late.xml", b2, 300, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success(); // INVITE / 180 / CANCEL / 200 / 487 / ACK
    uas2.assert_success();

    assert_caller_got_only(&uac, 200, 2);
    assert!(
        uac.received_starting("SIP/2.0 487 ").is_empty(),
        "the 487 of the cancelled branch reached the caller:\n{}",
        uac.report()
    );
    // Branch 1's ringing did reach the caller before the answer.
    assert!(uac.received_starting("SIP/2.0 180 ").len() >= 2, "{}", uac.report());
    let cancels = uas1.received_starting("CANCEL ");
    assert_eq!(cancels.len(), 2, "one CANCEL per call:\n{}", uas1.report());
    for c in &cancels {
        let reason = header_values(c, "Reason").join(", ");
        assert!(
            reason.contains("cause=200"),
            "a CANCEL because another branch answered should say so (Reason: SIP;cause=200): {c}"
        );
    }
    proxy.stop();
}

/// Backend 1 answers 200 at once, backend 2 rings only 300 ms later: the
/// proxy cannot CANCEL a branch that has not answered (RFC 3261 §9.1), so it
/// CANCELs backend 2 when its 180 arrives. The call completes, backend 2's
/// late 180 and its 487 never reach the caller, and that CANCEL too says the
/// call was completed elsewhere (OpenSIPS builds every CANCEL of an answered
/// INVITE with that Reason).
#[test]
fn late_ringing_branch_cancelled_after_the_other_answered() {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start("fork-200-late180", &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1-200", "uas-call-late.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-late-ringing", "uas-cancel.xml", b2, 300, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success();
    uas2.assert_success(); // INVITE / (300 ms) 180 / CANCEL / 200 / 487 / ACK

    assert_caller_got_only(&uac, 200, 2);
    assert!(
        uac.received_starting("SIP/2.0 487 ").is_empty(),
        "the 487 of the cancelled branch reached the caller:\n{}",
        uac.report()
    );
    let cancels = uas2.received_starting("CANCEL ");
    assert_eq!(cancels.len(), 2, "one CANCEL per call:\n{}", uas2.report());
    for c in &cancels {
        let reason = header_values(c, "Reason").join(", ");
        assert!(
            reason.contains("cause=200"),
            "the caller never cancelled; the CANCEL should say the call was completed elsewhere, \
             it says `Reason: {reason}`:\n{c}"
        );
    }
    proxy.stop();
}

/// Backend 1 rings, backend 2 declines with 603 300 ms later: a 6xx ends the
/// fork, so backend 1 gets a CANCEL; once its 487 is in, the caller gets the
/// 603 (a 6xx beats the 487 of a transaction the caller did not cancel) and
/// never the 487.
#[test]
fn six_xx_cancels_the_other_branch() {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start("fork-180-603", &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1-ringing", "uas-cancel.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-603", "uas-603.xml", b2, 300, 2, &proxy.dir);
    let mut uac = caller("uac-reject.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success(); // got the CANCEL, answered 487, got the ACK
    uas2.assert_success();

    assert_caller_got_only(&uac, 603, 2);
    assert!(
        uac.received_starting("SIP/2.0 487 ").is_empty(),
        "the 487 of the cancelled branch reached the caller:\n{}",
        uac.report()
    );
    let cancels = uas1.received_starting("CANCEL ");
    assert_eq!(cancels.len(), 2, "{}", uas1.report());
    // No branch answered: the CANCEL must not say "Call completed elsewhere"
    // (cause=200), which phones take to mean "not a missed call"; siprox
    // passes the 6xx's own cause on (RFC 3326).
    for c in &cancels {
        let reason = header_values(c, "Reason").join(", ");
        assert!(
            !reason.contains("cause=200") && !reason.contains("completed elsewhere"),
            "no branch answered, yet the CANCEL says `Reason: {reason}`:\n{c}"
        );
        assert!(reason.contains("cause=603"), "the CANCEL should carry the 603's cause: `Reason: {reason}`:\n{c}");
    }
    proxy.stop();
}

/// The caller cancels while backend 1 rings and backend 2 has refused with
/// 486: backend 1 gets a CANCEL and answers 487, and since the caller
/// cancelled, that 487 outranks the 486 (OpenSIPS's order puts a 487 of a
/// cancelled transaction first; otherwise 486 < 487 would win). The caller
/// gets 200 to its CANCEL and 487 to its INVITE, never the 486.
#[test]
fn caller_cancel_487_beats_the_other_branch_486() {
    let (b1, b2) = (free_port(), free_port());
    let proxy = Proxy::start("fork-cancel", &fork_script(b1, b2, Route::default()));
    let mut uas1 = backend("b1-ringing", "uas-cancel.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-486", "uas-486.xml", b2, 0, 2, &proxy.dir);
    let mut uac = caller("uac-cancel.xml", &proxy, 2);
    uac.assert_success(); // 180, then 200 (CANCEL) and 487 (INVITE), ACK
    uas1.assert_success();
    uas2.assert_success();
    assert_caller_got_only(&uac, 487, 2);
    assert!(uac.received_starting("SIP/2.0 486 ").is_empty(), "the 486 reached the caller:\n{}", uac.report());
    let cancels = uas1.received_starting("CANCEL ");
    assert_eq!(cancels.len(), 2, "{}", uas1.report());
    for c in &cancels {
        let reason = header_values(c, "Reason").join(", ");
        assert!(reason.contains("cause=487"), "the caller's CANCEL is an ORIGINATOR_CANCEL: {c}");
    }
    proxy.stop();
}

const BRANCH_ROUTE: &str = r#"
fn branch_route_b() {
    append_hf("X-Branch: $T_branch_idx\r\n");
}
"#;

/// branch_route runs once per branch, just before it is sent, with
/// $T_branch_idx 0 for the Request-URI branch and 1 for the appended one:
/// each backend checks its own X-Branch value (uas-xbranch*.xml) and the test
/// counts the headers. The edit stays on the INVITE's branches: the in-dialog
/// ACK and BYE (not armed) carry none.
#[test]
fn branch_route_runs_once_per_branch() {
    let (b1, b2) = (free_port(), free_port());
    let script = fork_script(b1, b2, Route { before_relay: r#"t_on_branch("b");"#, hooks: BRANCH_ROUTE });
    let proxy = Proxy::start("fork-branch-route", &script);
    let mut uas1 = backend("b1-x0-486", "uas-xbranch0-486.xml", b1, 0, 2, &proxy.dir);
    let mut uas2 = backend("b2-x1-200", "uas-xbranch1-call.xml", b2, 0, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas1.assert_success();
    uas2.assert_success();
    assert_caller_got_only(&uac, 200, 2);

    for (uas, want) in [(&uas1, "0"), (&uas2, "1")] {
        let invites = uas.received_starting("INVITE ");
        assert_eq!(invites.len(), 2, "{}", uas.report());
        for inv in &invites {
            assert_eq!(
                header_values(inv, "X-Branch"),
                vec![want.to_string()],
                "backend {} should see exactly one X-Branch: {want}:\n{inv}",
                uas.name
            );
        }
    }
    for m in uas2.logged_messages("received") {
        if m.starts_with("ACK ") || m.starts_with("BYE ") {
            assert!(header_values(&m, "X-Branch").is_empty(), "{m}");
        }
    }
    assert!(
        uac.logged_messages("received").iter().all(|m| header_values(m, "X-Branch").is_empty()),
        "a branch_route edit leaked into a reply:\n{}",
        uac.report()
    );
    proxy.stop();
}

/// drop() in branch_route suppresses that branch only: branch 0 (to a
/// backend that would log anything it gets) is never sent, branch 1 still
/// carries X-Branch: 1 and takes the call.
#[test]
fn drop_in_branch_route_suppresses_that_branch() {
    let silent = SilentUdp::start();
    let b2 = free_port();
    let script = fork_script(
        silent.port,
        b2,
        Route {
            before_relay: r#"t_on_branch("b");"#,
            hooks: r#"
fn branch_route_b() {
    if $T_branch_idx == 0 { drop(); }
    append_hf("X-Branch: $T_branch_idx\r\n");
}
"#,
        },
    );
    let proxy = Proxy::start("fork-branch-drop", &script);
    let mut uas2 = backend("b2-x1-200", "uas-xbranch1-call.xml", b2, 0, 2, &proxy.dir);
    let mut uac = caller("uac-call.xml", &proxy, 2);
    uac.assert_success();
    uas2.assert_success();
    assert_caller_got_only(&uac, 200, 2);
    std::thread::sleep(Duration::from_millis(200));
    let got = silent.received();
    assert!(
        got.is_empty(),
        "the branch dropped in branch_route was sent anyway:\n{}",
        got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect::<Vec<_>>().join("\n---\n")
    );
    proxy.stop();
}
