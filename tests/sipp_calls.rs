//! End-to-end calls through the real `siprox` binary with SIPp peers
//! (Debian package sip-tester): UAC -> siprox -> UAS backends on loopback.
//!
//! Each test gets its own ports, config, route script and temp dir; SIPp runs
//! are bounded (-m, -timeout with -timeout_error) and every process is stopped
//! by its guard. A SIPp exit code of 0 means every call of the scenario
//! succeeded; the scenarios (tests/sipp/*.xml) check the messages themselves.
//! Scenarios were validated against Kamailio 5.6 running the same route.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// A plain call (INVITE/100/180/200/ACK/BYE/200, record-routed) in and out on
/// the given transports; the UAS scenario checks what it must see.
fn call(label: &str, in_proto: Proto, out_proto: Proto, uas_scenario: &str, calls: u32) {
    let backend = free_port();
    let du = match out_proto {
        Proto::Udp => udp_uri(backend),
        Proto::Tcp => tcp_uri(backend),
    };
    let proxy = Proxy::start(label, &relay_script(&du, &du));
    let mut uas = Sipp::uas("uas", uas_scenario, backend, out_proto).calls(calls).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, in_proto).calls(calls).spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();
    proxy.stop();
}

#[test]
fn call_over_udp() {
    call("call-udp", Proto::Udp, Proto::Udp, "uas-call.xml", 5);
}

#[test]
fn call_over_tcp() {
    call("call-tcp", Proto::Tcp, Proto::Tcp, "uas-call.xml", 5);
}

/// UDP in, TCP out: the proxy must record-route twice (r2=on), which
/// uas-call-double-rr.xml checks on the INVITE; ACK and BYE then cross the
/// transport change the other way through loose_route.
#[test]
fn call_udp_in_tcp_out_double_record_route() {
    call("call-udp-tcp", Proto::Udp, Proto::Tcp, "uas-call-double-rr.xml", 3);
}

/// The caller cancels a ringing call: 200 to the CANCEL (from the proxy),
/// the CANCEL relayed to the backend, its 487 relayed back, ACK absorbed.
fn cancel(label: &str, proto: Proto) {
    let backend = free_port();
    let du = if proto == Proto::Tcp { tcp_uri(backend) } else { udp_uri(backend) };
    let proxy = Proxy::start(label, &relay_script(&du, &du));
    let mut uas = Sipp::uas("uas", "uas-cancel.xml", backend, proto).calls(2).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-cancel.xml", &proxy, proto).calls(2).spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();
    proxy.stop();
}

#[test]
fn cancel_ringing_call_udp() {
    cancel("cancel-udp", Proto::Udp);
}

#[test]
fn cancel_ringing_call_tcp() {
    cancel("cancel-tcp", Proto::Tcp);
}

/// A backend that never answers: the caller gets the proxy's 100, then its
/// local 408 once fr_timeout (2 s, no provisional reply) runs out.
#[test]
fn silent_udp_backend_gets_408() {
    let backend = SilentUdp::start();
    let du = udp_uri(backend.port);
    let proxy = Proxy::start("silent-udp", &relay_script(&du, &du));
    let t0 = Instant::now();
    let mut uac = Sipp::uac("uac", "uac-timeout.xml", &proxy, Proto::Udp).timeout_s(20).spawn(&proxy.dir);
    uac.assert_success();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1500), "408 came after {took:?}, before fr_timeout (2 s) could have run out");
    assert!(backend.count_starting("INVITE ") >= 1, "the proxy never relayed the INVITE to the backend");
    proxy.stop();
}

/// Same over TCP both ways: the backend accepts the connection and reads,
/// never answers.
#[test]
fn silent_tcp_backend_gets_408() {
    let backend = SilentTcp::start();
    let du = tcp_uri(backend.port);
    let proxy = Proxy::start("silent-tcp", &relay_script(&du, &du));
    let t0 = Instant::now();
    let mut uac = Sipp::uac("uac", "uac-timeout.xml", &proxy, Proto::Tcp).timeout_s(20).spawn(&proxy.dir);
    uac.assert_success();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1500), "408 came after {took:?}, before fr_timeout (2 s) could have run out");
    assert_eq!(
        backend.count_starting("INVITE "),
        1,
        "a TCP backend must get the INVITE once (no retransmissions over a reliable transport)"
    );
    proxy.stop();
}

/// Serial forking: backend A answers 503 (and gets the proxy's ACK), the
/// script's failure_route relays to backend B, which completes the call.
#[test]
fn serial_forking_503_then_second_backend() {
    let a = free_port();
    let b = free_port();
    let proxy = Proxy::start("serial", &relay_script(&udp_uri(a), &udp_uri(b)));
    let mut uas_a = Sipp::uas("uas-a-503", "uas-503.xml", a, Proto::Udp).calls(3).spawn(&proxy.dir);
    let mut uas_b = Sipp::uas("uas-b", "uas-call.xml", b, Proto::Udp).calls(3).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, Proto::Udp).calls(3).spawn(&proxy.dir);
    uac.assert_success();
    uas_a.assert_success();
    uas_b.assert_success();
    proxy.stop();
}

/// The caller sends its INVITE twice (same branch, same bytes) before any
/// answer; the stateful proxy absorbs the copy, the backend sees ONE INVITE.
#[test]
fn retransmitted_invite_is_absorbed() {
    let backend = free_port();
    let du = udp_uri(backend);
    let proxy = Proxy::start("retrans", &relay_script(&du, &du));
    let mut uas = Sipp::uas("uas", "uas-retrans.xml", backend, Proto::Udp).message_log().spawn(&proxy.dir);
    let mut uac =
        Sipp::uac("uac", "uac-retrans.xml", &proxy, Proto::Udp).message_log().arg("-pause_msg_ign").spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();
    assert_eq!(uac.sent_requests("INVITE"), 2, "the UAC should have sent its INVITE twice:\n{}", uac.report());
    assert_eq!(
        uas.received_requests("INVITE"),
        1,
        "the backend saw the retransmitted INVITE: the proxy relayed it instead of absorbing it\n{}",
        uas.report()
    );
    proxy.stop();
}

/// Max-Forwards: 0 -> 483 from the proxy, nothing relayed.
#[test]
fn max_forwards_zero_gets_483() {
    let backend = SilentUdp::start();
    let du = udp_uri(backend.port);
    let proxy = Proxy::start("maxfwd", &relay_script(&du, &du));
    let mut uac = Sipp::uac("uac-udp", "uac-maxfwd.xml", &proxy, Proto::Udp).spawn(&proxy.dir);
    uac.assert_success();
    let mut uac = Sipp::uac("uac-tcp", "uac-maxfwd.xml", &proxy, Proto::Tcp).spawn(&proxy.dir);
    uac.assert_success();
    assert!(backend.received().is_empty(), "a request with Max-Forwards 0 reached the backend");
    proxy.stop();
}
