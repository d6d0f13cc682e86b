//! Malformed input over raw UDP and TCP sockets: truncated bodies, wrong
//! Content-Length, garbage, oversize messages. A request whose Via is usable
//! gets a 400 (or, where the message can't be framed at all, a drop / a
//! closed connection); garbage gets nothing. After every case the proxy must
//! still answer an OPTIONS over UDP and over TCP, and at the end it must still
//! be running and exit cleanly on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_millis(1000);

/// Answers OPTIONS itself, 483 on Max-Forwards, 404 to anything else: no
/// relaying, so every reply seen here comes from the proxy.
const SCRIPT: &str = r#"// siprox malformed-input test script (tests/malformed.rs)
fn route() {
    if is_method("OPTIONS") { sl_send_reply(200, "OK"); exit(); }
    if mf_process_maxfwd_header(10) == -1 { sl_send_reply(483, "Too Many Hops"); exit(); }
    if is_method("ACK") { exit(); }
    sl_send_reply(404, "Not here");
}
"#;

fn options_over_udp_answered(proxy: SocketAddr) -> bool {
    let req = Req::new("OPTIONS", proxy, Proto::Udp);
    let got = udp_exchange_until(
        proxy,
        |l| req.build(l),
        Duration::from_millis(1500),
        |g| g.iter().any(|m| status_codes(m).contains(&200)),
    );
    got.iter().any(|m| status_codes(m).contains(&200))
}

fn options_over_tcp_answered(proxy: SocketAddr) -> bool {
    let req = Req::new("OPTIONS", proxy, Proto::Tcp);
    let out = tcp_exchange(proxy, |l| req.build(l), Duration::from_millis(1500), |d| status_codes(d).contains(&200));
    status_codes(&out.data).contains(&200)
}

/// Collects every failed expectation, so one run reports them all.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let w = what();
            eprintln!("FAILED: {w}");
            self.0.push(w);
        }
    }
}

fn assert_still_serving(proxy: &mut Proxy, f: &mut Findings, after: &str) {
    proxy.assert_alive(); // a dead proxy ends the test at once
    let a = proxy.addr();
    f.check(options_over_udp_answered(a), || format!("no 200 to an OPTIONS over UDP after: {after}"));
    f.check(options_over_tcp_answered(a), || format!("no 200 to an OPTIONS over TCP after: {after}"));
}

fn show(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    s.chars().take(400).collect()
}

/// UDP: exactly one reply, a 400.
fn expect_udp_400(proxy: &mut Proxy, f: &mut Findings, case: &str, msg: impl FnOnce(SocketAddr) -> Vec<u8>) {
    let got = udp_exchange(proxy.addr(), msg, WAIT);
    let codes: Vec<u16> = got.iter().flat_map(|m| status_codes(m)).collect();
    f.check(codes.contains(&400) && codes.iter().all(|c| *c == 400), || {
        format!("UDP {case}: expected a 400, got {codes:?}: {:?}", got.iter().map(|m| show(m)).collect::<Vec<_>>())
    });
    assert_still_serving(proxy, f, &format!("UDP {case}"));
}

/// UDP: no SIP reply at all.
fn expect_udp_silence(proxy: &mut Proxy, f: &mut Findings, case: &str, msg: Vec<u8>) {
    let got = udp_exchange(proxy.addr(), move |_| msg, WAIT);
    let codes: Vec<u16> = got.iter().flat_map(|m| status_codes(m)).collect();
    f.check(codes.is_empty(), || format!("UDP {case}: expected no reply, got {codes:?}"));
    assert_still_serving(proxy, f, &format!("UDP {case}"));
}

/// TCP: any reply must be one of `allowed`; a closed connection is fine.
fn expect_tcp(
    proxy: &mut Proxy,
    f: &mut Findings,
    case: &str,
    allowed: &[u16],
    must_answer_or_close: bool,
    msg: impl FnOnce(SocketAddr) -> Vec<u8>,
) {
    let out = tcp_exchange(proxy.addr(), msg, WAIT, |d| !status_codes(d).is_empty());
    let codes = status_codes(&out.data);
    f.check(codes.iter().all(|c| allowed.contains(c)), || {
        format!("TCP {case}: got {codes:?}, allowed {allowed:?} (closed: {}): {}", out.closed, show(&out.data))
    });
    if must_answer_or_close {
        f.check(!codes.is_empty() || out.closed, || {
            format!("TCP {case}: neither a reply ({allowed:?}) nor a closed connection within {WAIT:?}")
        });
    }
    assert_still_serving(proxy, f, &format!("TCP {case}"));
}

fn invite(proto: Proto, target: SocketAddr) -> Req<'static> {
    let mut r = Req::new("INVITE", target, proto);
    r.extra = "Content-Type: application/sdp\r\n".into();
    r.body =
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".to_vec();
    r
}

#[test]
fn malformed_input_gets_400_or_drop_and_proxy_keeps_serving() {
    let mut proxy = Proxy::start("malformed", SCRIPT);
    let mut f = Findings::default();
    let a = proxy.addr();
    assert_still_serving(&mut proxy, &mut f, "startup");

    // ---- UDP -----------------------------------------------------------
    // truncated: the datagram ends before Content-Length says the body does
    // (RFC 3261 18.3: 400 for a request)
    let mut r = invite(Proto::Udp, a);
    r.content_length = Some((r.body.len() + 100).to_string());
    expect_udp_400(&mut proxy, &mut f, "truncated body (Content-Length > datagram)", |l| r.build(l));

    // Content-Length that is no number
    let mut r = invite(Proto::Udp, a);
    r.content_length = Some("abc".into());
    expect_udp_400(&mut proxy, &mut f, "non-numeric Content-Length", |l| r.build(l));

    // negative Content-Length (RFC 4475 ncl)
    let mut r = invite(Proto::Udp, a);
    r.content_length = Some("-999".into());
    expect_udp_400(&mut proxy, &mut f, "negative Content-Length", |l| r.build(l));

    // headers cut off mid-line, no end of header section: 400 or a drop
    let r = invite(Proto::Udp, a);
    let got = udp_exchange(
        a,
        |l| {
            let full = r.build(l);
            let cut = full.windows(6).position(|w| w == b"Call-I").unwrap() + 3;
            full[..cut].to_vec()
        },
        WAIT,
    );
    let codes: Vec<u16> = got.iter().flat_map(|m| status_codes(m)).collect();
    f.check(codes.iter().all(|c| *c == 400), || format!("UDP headers cut off: expected 400 or nothing, got {codes:?}"));
    assert_still_serving(&mut proxy, &mut f, "UDP headers cut off");

    // garbage: nothing to answer to
    expect_udp_silence(&mut proxy, &mut f, "binary garbage", (0..1400u32).map(|i| (i * 7 + 3) as u8).collect());
    expect_udp_silence(&mut proxy, &mut f, "text garbage", b"hello proxy, this is not SIP\r\n\r\n".to_vec());
    expect_udp_silence(&mut proxy, &mut f, "request line only", b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n".to_vec());
    expect_udp_silence(&mut proxy, &mut f, "bare response line", b"SIP/2.0 200 OK\r\n\r\n".to_vec());
    expect_udp_silence(&mut proxy, &mut f, "NUL bytes", vec![0u8; 512]);
    expect_udp_silence(&mut proxy, &mut f, "CRLF keepalive", b"\r\n\r\n".to_vec());

    // oversize: the largest datagram UDP can carry (a 70 KB one can't be
    // sent over UDP at all), a huge header. Relaying it or refusing it are
    // both fine (404 from this script, 400 or 513 from the core, or a drop);
    // the point is the proxy survives it.
    let mut r = Req::new("MESSAGE", a, Proto::Udp);
    r.extra = format!("X-Padding: {}\r\n", "x".repeat(65_507 - 600));
    let got = udp_exchange(a, |l| r.build(l), WAIT);
    let codes: Vec<u16> = got.iter().flat_map(|m| status_codes(m)).collect();
    f.check(codes.iter().all(|c| [400, 404, 513].contains(c)), || format!("UDP 65 KB datagram: got {codes:?}"));
    assert_still_serving(&mut proxy, &mut f, "UDP 65 KB datagram");

    // ---- TCP -----------------------------------------------------------
    // non-numeric Content-Length: the stream can't be framed -> 400 and/or close
    let mut r = invite(Proto::Tcp, a);
    r.content_length = Some("abc".into());
    expect_tcp(&mut proxy, &mut f, "non-numeric Content-Length", &[400], true, |l| r.build(l));

    // negative Content-Length
    let mut r = invite(Proto::Tcp, a);
    r.content_length = Some("-5".into());
    expect_tcp(&mut proxy, &mut f, "negative Content-Length", &[400], true, |l| r.build(l));

    // truncated: Content-Length larger than what is sent, then silence. On a
    // stream the proxy rightly waits for the rest: no reply, or 400, or close.
    let mut r = invite(Proto::Tcp, a);
    r.content_length = Some((r.body.len() + 100).to_string());
    expect_tcp(&mut proxy, &mut f, "truncated body (Content-Length > sent)", &[400], false, |l| r.build(l));

    // garbage on a stream: never a SIP reply; the proxy may close
    expect_tcp(&mut proxy, &mut f, "binary garbage", &[], false, |_| {
        (0..4000u32).map(|i| (i * 13 + 1) as u8).collect()
    });
    expect_tcp(&mut proxy, &mut f, "text garbage", &[], false, |_| {
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()
    });

    // oversize: a 70 KB request (header section of 70 KB, no end) and a
    // request with a 70 KB body. Beyond any sane limit for a proxy: 400 or
    // 513 (Message Too Large), or the connection closed; never processed.
    expect_tcp(&mut proxy, &mut f, "70 KB header section", &[400, 513], true, |l| {
        let mut m = invite(Proto::Tcp, a).build(l);
        let end = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
        m.truncate(end);
        m.extend_from_slice(format!("X-Padding: {}\r\n", "y".repeat(70 * 1024)).as_bytes());
        m
    });
    expect_tcp(&mut proxy, &mut f, "70 KB body", &[400, 513], true, |l| {
        let mut r = invite(Proto::Tcp, a);
        r.body = vec![b'z'; 70 * 1024];
        r.build(l)
    });

    // a good request still works on a connection that stays up while bad
    // ones come and go on others
    let mut r = Req::new("OPTIONS", a, Proto::Tcp);
    r.max_forwards = 5;
    let out = tcp_exchange(a, |l| r.build(l), Duration::from_millis(1500), |d| status_codes(d).contains(&200));
    f.check(status_codes(&out.data).contains(&200), || format!("OPTIONS over TCP at the end: {}", show(&out.data)));

    // fail while the proxy still runs, so its log is printed with the findings
    assert!(f.0.is_empty(), "{} malformed-input expectation(s) failed:\n{}", f.0.len(), f.0.join("\n"));
    proxy.stop();
}
