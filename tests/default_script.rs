//! The shipped route script, `scripts/default.rhai`, end to end: the proxy is
//! started on a config whose `[core] script` is that very file (absolute
//! path, nothing copied), so these tests break when the script does.
//!
//! Requests addressed to the proxy itself and the one-shot error cases use raw
//! UDP sockets (as tests/malformed.rs does); calls use SIPp. The default script
//! relays by Request-URI, so the SIPp UAC names the backend in its R-URI
//! (`[remote_ip]:[remote_port]` = the backend) while `-rsa` sends every packet
//! to the proxy: `Sipp::uac_to`. Each test checks in the backend's message log
//! that what it got really came through the proxy (the proxy's Via on top).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

fn default_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join("default.rhai")
}

fn start(label: &str) -> Proxy {
    let script = default_script();
    let proxy = Proxy::start_script_file(label, &script, "");
    // The proxy runs the repository's file, not the copy built into the binary.
    let ready = format!("siprox ready script={}", script.display());
    assert!(proxy.log_text().contains(&ready), "expected `{ready}` in the proxy's log:\n{}", proxy.log_text());
    proxy
}

fn backend_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn reply_to(proxy: SocketAddr, req: &Req) -> Vec<Vec<u8>> {
    udp_exchange_until(
        proxy,
        |l| req.build(l),
        Duration::from_millis(1500),
        |g| g.iter().any(|m| status_codes(m).iter().any(|&c| c >= 200)),
    )
}

fn codes_of(replies: &[Vec<u8>]) -> Vec<u16> {
    replies.iter().flat_map(|m| status_codes(m)).collect()
}

fn show(replies: &[Vec<u8>]) -> String {
    replies.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect::<Vec<_>>().join("\n----\n")
}

/// OPTIONS to the proxy itself gets 200; INVITE (and the other methods the
/// script lists) without a user part gets 404; a method the script does not
/// know gets 405 with an Allow header. All three are stateless replies from the script.
#[test]
fn requests_addressed_to_the_proxy_itself() {
    let proxy = start("default-myself");
    let me = proxy.addr();

    let cases: [(&str, u16, &str); 5] = [
        ("OPTIONS", 200, "OK"),
        ("INVITE", 404, "Not Found"),
        ("MESSAGE", 404, "Not Found"),
        ("FROBNICATE", 405, "Method Not Allowed"),
        ("PING", 405, "Method Not Allowed"),
    ];
    for (method, code, reason) in cases {
        let req = Req::new(method, me, Proto::Udp);
        assert_eq!(req.ruri, format!("sip:127.0.0.1:{}", proxy.port));
        let replies = reply_to(me, &req);
        assert_eq!(
            codes_of(&replies),
            vec![code],
            "{method} {} should get exactly one reply, {code}; got:\n{}",
            req.ruri,
            show(&replies)
        );
        let text = String::from_utf8_lossy(&replies[0]);
        assert!(text.starts_with(&format!("SIP/2.0 {code} {reason}\r\n")), "{method}: unexpected status line:\n{text}");
        assert!(
            text.contains(&format!("CSeq: 1 {method}\r\n")),
            "{method}: the reply does not carry the request's CSeq:\n{text}"
        );
        // RFC 3261 §8.2.1: a 405 says what is allowed (append_to_reply in the script).
        assert_eq!(
            code == 405,
            text.contains("\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS"),
            "{method}: Allow header belongs on the 405 only:\n{text}"
        );
    }

    // Over TCP too, on the connection the request came in on.
    let req = Req::new("OPTIONS", me, Proto::Tcp);
    let out = tcp_exchange(me, |l| req.build(l), Duration::from_millis(1500), |d| status_codes(d).contains(&200));
    assert_eq!(
        status_codes(&out.data),
        vec![200],
        "OPTIONS over TCP to the proxy: {}",
        String::from_utf8_lossy(&out.data)
    );
    proxy.stop();
}

/// Max-Forwards: 0 on a request the script would relay: 483 Too Many Hops
/// from the proxy, nothing relayed (RFC 3261 §16.3 step 3). An OPTIONS may
/// instead be answered by the proxy itself (same step: "MAY act as the final
/// recipient"), so for it only "one final reply, not relayed" is checked.
#[test]
fn max_forwards_zero_gets_483() {
    let backend = SilentUdp::start();
    let proxy = start("default-maxfwd");
    for method in ["INVITE", "MESSAGE", "OPTIONS"] {
        let mut req = Req::new(method, backend_addr(backend.port), Proto::Udp);
        req.ruri = format!("sip:bob@127.0.0.1:{}", backend.port);
        req.max_forwards = 0;
        let replies = reply_to(proxy.addr(), &req);
        let codes = codes_of(&replies);
        if method == "OPTIONS" {
            assert!(
                codes == vec![483] || codes == vec![200],
                "OPTIONS with Max-Forwards 0: expected one 483 (or 200); got:\n{}",
                show(&replies)
            );
            continue;
        }
        assert_eq!(codes, vec![483], "{method} with Max-Forwards 0: expected one 483; got:\n{}", show(&replies));
        assert!(String::from_utf8_lossy(&replies[0]).starts_with("SIP/2.0 483 Too Many Hops\r\n"));
    }

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        backend.received().is_empty(),
        "a request with Max-Forwards 0 reached the backend:\n{}",
        show(&backend.received())
    );
    proxy.stop();
}

/// An in-dialog request (To tag) with no Route header: a BYE gets 404
/// "Not here"; an ACK gets nothing (no transaction, dropped). Neither reaches
/// the host named in the Request-URI.
#[test]
fn in_dialog_request_without_route_gets_404() {
    let backend = SilentUdp::start();
    let proxy = start("default-indialog");
    let target = backend_addr(backend.port);

    for method in ["BYE", "INFO", "UPDATE"] {
        let mut req = Req::new(method, target, Proto::Udp);
        req.ruri = format!("sip:bob@127.0.0.1:{}", backend.port);
        req.extra = "X-Note: in-dialog, To tag added below\r\n".into();
        let replies = udp_exchange_until(
            proxy.addr(),
            |l| to_tagged(req.build(l)),
            Duration::from_millis(1500),
            |g| g.iter().any(|m| status_codes(m).iter().any(|&c| c >= 200)),
        );
        assert_eq!(
            codes_of(&replies),
            vec![404],
            "in-dialog {method} without Route: expected one 404; got:\n{}",
            show(&replies)
        );
        assert!(String::from_utf8_lossy(&replies[0]).starts_with("SIP/2.0 404 Not here\r\n"));
    }

    let mut ack = Req::new("ACK", target, Proto::Udp);
    ack.ruri = format!("sip:bob@127.0.0.1:{}", backend.port);
    let replies = udp_exchange(proxy.addr(), |l| to_tagged(ack.build(l)), Duration::from_millis(700));
    assert!(replies.is_empty(), "an in-dialog ACK without Route must get no reply; got:\n{}", show(&replies));

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        backend.received().is_empty(),
        "an in-dialog request without Route reached the R-URI host:\n{}",
        show(&backend.received())
    );
    proxy.stop();
}

/// Adds a To tag to a request built by `Req` (its To has none).
fn to_tagged(msg: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(msg).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| if l.starts_with("To:") { format!("{l};tag=callee-tag-1") } else { l.to_string() })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// An OPTIONS to another host is relayed statefully, by Request-URI, with the
/// proxy's Via on top, Max-Forwards decremented and no Record-Route (the
/// script record-routes everything except REGISTER, MESSAGE and OPTIONS).
#[test]
fn options_elsewhere_relayed_without_record_route() {
    let backend = SilentUdp::start();
    let proxy = start("default-options-relay");
    let mut req = Req::new("OPTIONS", backend_addr(backend.port), Proto::Udp);
    req.ruri = format!("sip:bob@127.0.0.1:{}", backend.port);
    // The backend never answers; the proxy's 408 comes after fr_timeout (not waited for).
    let _ = udp_exchange(proxy.addr(), |l| req.build(l), Duration::from_millis(300));
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while backend.received().is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = backend.received();
    assert!(!got.is_empty(), "the OPTIONS was not relayed to its Request-URI");
    let text = String::from_utf8_lossy(&got[0]).replace("\r\n", "\n");
    assert!(text.starts_with(&format!("OPTIONS sip:bob@127.0.0.1:{} SIP/2.0\n", backend.port)), "{text}");
    let vias = header_values(&text, "Via");
    assert!(
        vias.first().is_some_and(|v| v.contains(&format!("127.0.0.1:{}", proxy.port))),
        "the proxy's Via is not on top:\n{text}"
    );
    assert_eq!(vias.len(), 2, "{text}");
    assert_eq!(header_values(&text, "Max-Forwards"), vec!["69"], "{text}");
    assert!(
        header_values(&text, "Record-Route").is_empty(),
        "OPTIONS must not be record-routed by the default script:\n{text}"
    );
    proxy.stop();
}

/// A Request-URI the proxy cannot send to (port 0): t_relay() answers the
/// INVITE itself (100, then `477 Send failed`), statefully, so the 477 is
/// repeated until the caller's ACK, which the transaction absorbs.
#[test]
fn relay_failure_gets_an_error_reply() {
    let proxy = start("default-relay-fail");
    let mut req = Req::new("INVITE", proxy.addr(), Proto::Udp);
    req.ruri = "sip:bob@127.0.0.1:0".into();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = s.local_addr().unwrap();
    let invite = req.build(local);
    s.send_to(&invite, proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut codes = Vec::new();
    let final_reply = loop {
        let Ok((n, _)) = s.recv_from(&mut buf) else { panic!("no final reply to an INVITE to port 0; got {codes:?}") };
        let c = status_codes(&buf[..n]);
        codes.extend(c.iter().copied());
        if c.iter().any(|&c| c >= 200) {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    };
    assert_eq!(codes, vec![100, 477], "{final_reply}");
    assert!(final_reply.starts_with("SIP/2.0 477 Send failed (477/TM)\r\n"), "{final_reply}");
    // ACK it (hop by hop: the INVITE's Via branch and R-URI, the 477's To),
    // then nothing more may come.
    let text = String::from_utf8(invite).unwrap();
    let via = text.lines().find(|l| l.starts_with("Via:")).unwrap();
    let from = text.lines().find(|l| l.starts_with("From:")).unwrap();
    let call_id = text.lines().find(|l| l.starts_with("Call-ID:")).unwrap();
    let to = final_reply.lines().find(|l| l.starts_with("To:")).unwrap();
    assert!(to.contains(";tag="), "{final_reply}");
    let ack = format!(
        "ACK sip:bob@127.0.0.1:0 SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n{from}\r\n{to}\r\n{call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(ack.as_bytes(), proxy.addr()).unwrap();
    // Drain a retransmission that may have crossed the ACK, then expect silence
    // for longer than the next retransmission interval (1 s).
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let _ = s.recv_from(&mut buf);
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    if let Ok((n, _)) = s.recv_from(&mut buf) {
        panic!("the proxy kept sending after the ACK:\n{}", String::from_utf8_lossy(&buf[..n]));
    }
    proxy.stop();
}

/// The message a SIPp peer logged whose first line starts with `start`,
/// exactly one of them.
fn only(sipp: &RunningSipp, dir: &str, start: &str) -> String {
    let all: Vec<String> = sipp.logged_messages(dir).into_iter().filter(|m| m.starts_with(start)).collect();
    assert_eq!(
        all.len(),
        1,
        "sipp {} should have {dir} exactly one `{start}…`; has {}:\n{}",
        sipp.name,
        all.len(),
        sipp.report()
    );
    all.into_iter().next().unwrap()
}

/// A full call relayed by Request-URI to a SIPp UAS: INVITE / 100 / 180 /
/// 200 record-routed, then ACK and BYE sent by the caller to the callee's
/// Contact with the Route set learnt from the 200, and the proxy forwarding
/// them by loose_route. SIPp's exit codes say every message came; the message
/// logs say they came the right way.
#[test]
fn call_relayed_by_request_uri() {
    let backend = free_port();
    let proxy = start("default-call");
    let mut uas = Sipp::uas("uas", "uas-call.xml", backend, Proto::Udp).message_log().spawn(&proxy.dir);
    let mut uac =
        Sipp::uac_to("uac", "uac-call.xml", &proxy, Proto::Udp, backend_addr(backend)).message_log().spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();

    let proxy_hp = format!("127.0.0.1:{}", proxy.port);
    let rr = format!("<sip:{proxy_hp};lr;");

    // The caller addressed the backend, and the packets went to the proxy.
    let invite_sent = only(&uac, "sent", "INVITE ");
    assert!(invite_sent.starts_with(&format!("INVITE sip:service@127.0.0.1:{backend} SIP/2.0")), "{invite_sent}");
    // The backend got it from the proxy: its Via on top, its Record-Route.
    let invite = only(&uas, "received", "INVITE ");
    let vias = header_values(&invite, "Via");
    assert_eq!(vias.len(), 2, "one proxy, two Vias:\n{invite}");
    assert!(vias[0].contains(&proxy_hp), "the proxy's Via is not on top:\n{invite}");
    let rrs = header_values(&invite, "Record-Route");
    assert_eq!(rrs.len(), 1, "{invite}");
    assert!(rrs[0].starts_with(&rr), "unexpected Record-Route {:?}", rrs[0]);
    assert_eq!(header_values(&invite, "Max-Forwards"), vec!["69"], "{invite}");

    // The caller learnt the route set and used it for ACK and BYE.
    let ok =
        uac.received_starting("SIP/2.0 200 ").into_iter().find(|m| m.contains("INVITE")).expect("no 200 to the INVITE");
    assert_eq!(header_values(&ok, "Record-Route").len(), 1, "{ok}");
    for method in ["ACK", "BYE"] {
        let sent = only(&uac, "sent", &format!("{method} "));
        assert!(
            sent.starts_with(&format!("{method} sip:127.0.0.1:{backend};transport=UDP SIP/2.0")),
            "{method} not sent to the callee's Contact:\n{sent}"
        );
        let routes = header_values(&sent, "Route");
        assert!(routes.len() == 1 && routes[0].starts_with(&rr), "{method} without the proxy's Route:\n{sent}");
        // ... and the proxy forwarded it: its Via on top, its Route consumed.
        let got = only(&uas, "received", &format!("{method} "));
        let vias = header_values(&got, "Via");
        assert_eq!(vias.len(), 2, "{method} did not come through the proxy:\n{got}");
        assert!(vias[0].contains(&proxy_hp), "{got}");
        assert!(header_values(&got, "Route").is_empty(), "the proxy left its own Route in the {method}:\n{got}");
    }
    proxy.stop();
}

/// The caller cancels a ringing call relayed by Request-URI: the proxy answers
/// the CANCEL with 200, CANCELs the branch, relays the backend's 487 and
/// absorbs the caller's ACK of it (hop by hop).
#[test]
fn cancel_of_ringing_call_gets_487() {
    let backend = free_port();
    let proxy = start("default-cancel");
    let mut uas = Sipp::uas("uas", "uas-cancel.xml", backend, Proto::Udp).calls(2).message_log().spawn(&proxy.dir);
    let mut uac = Sipp::uac_to("uac", "uac-cancel.xml", &proxy, Proto::Udp, backend_addr(backend))
        .calls(2)
        .message_log()
        .spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();

    let proxy_hp = format!("127.0.0.1:{}", proxy.port);
    // Finals to the INVITEs: 487 only (the UAC ACKed them; retransmissions
    // would repeat the same code).
    let invite_finals: Vec<u16> = uac
        .logged_messages("received")
        .iter()
        .filter(|m| header_values(m, "CSeq").iter().any(|v| v.ends_with("INVITE")))
        .filter_map(|m| m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok())
        .filter(|&c: &u16| c >= 200)
        .collect();
    assert!(
        invite_finals.len() >= 2 && invite_finals.iter().all(|&c| c == 487),
        "finals to the INVITEs: {invite_finals:?}\n{}",
        uac.report()
    );
    // The CANCEL the backend got is the proxy's own (one Via: the proxy's).
    let cancels = uas.received_starting("CANCEL ");
    assert_eq!(cancels.len(), 2, "{}", uas.report());
    for c in &cancels {
        let vias = header_values(c, "Via");
        assert!(vias.len() == 1 && vias[0].contains(&proxy_hp), "{c}");
    }
    // The 200 to each CANCEL came from the proxy, not from the backend.
    let cancel_oks: Vec<String> = uac
        .received_starting("SIP/2.0 200 ")
        .into_iter()
        .filter(|m| header_values(m, "CSeq").iter().any(|v| v.ends_with("CANCEL")))
        .collect();
    assert!(!cancel_oks.is_empty(), "{}", uac.report());
    // The caller's ACK of the 487 stayed with the proxy (the backend got the
    // proxy's ACK, one Via).
    for a in uas.received_starting("ACK ") {
        let vias = header_values(&a, "Via");
        assert!(vias.len() == 1 && vias[0].contains(&proxy_hp), "{a}");
    }
    proxy.stop();
}
