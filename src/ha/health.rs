//! The SIP health check: an OPTIONS to a SIP socket (`siprox ping`, `[ha] health_check`).
//!
//! One non-INVITE client transaction over UDP (RFC 3261 §17.1.2) from a socket of its own,
//! so it needs no running proxy: a standby checks the active node, or a node checks itself
//! through the address it serves. Its answer is the health rule of [`is_healthy`]: a proxy
//! whose script ran and answered (even 404 or 403) is alive; a 5xx or silence is not.

use crate::message::{build_request, NewRequest, SipMsg};
use bytes::Bytes;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// RFC 3261 §17.1.2.2 Timer E starts at T1 (500 ms, Table 4) and doubles up to T2 (4 s).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// The port of a target that names none (RFC 3261 §19.1.2: 5060 for `sip:` over UDP).
const DEFAULT_PORT: u16 = 5060;

/// The final reply that answered the ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReply {
    pub code: u16,
    pub reason: String,
    /// From the first transmission to the reply: a retransmission's reply cannot be told
    /// from the original's, so this is an upper bound when the first was lost.
    pub rtt: Duration,
    /// Where the reply came from (a multi-homed target may answer from another address).
    pub from: SocketAddr,
}

#[derive(Debug, Error)]
pub enum PingError {
    /// The target is not `HOST[:PORT]` / `sip:HOST[:PORT]`, or its name did not resolve.
    #[error("bad target {0}")]
    Resolve(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No final reply in time (RFC 3261 §17.1.2.2: Timer F, here the caller's timeout).
    #[error("no final reply within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Only datagrams that were no usable SIP reply came back.
    #[error("no usable reply: {0}")]
    BadReply(String),
}

/// The health rule: alive when a final reply below 500 came (404/403 still mean the script
/// ran; 5xx means the service is failing).
pub fn is_healthy(code: u16) -> bool {
    (200..500).contains(&code)
}

/// Parses "HOST[:PORT]" or "sip:HOST[:PORT]" (default port 5060; IPv6 in brackets, or bare
/// without a port), resolving names.
///
/// # Errors
/// [`PingError::Resolve`] for text that is no such target or a name that does not resolve.
pub fn parse_target(s: &str) -> Result<SocketAddr, PingError> {
    let text = s.trim();
    let bad = |why: &str| PingError::Resolve(format!("{text:?}: {why}"));
    let hostport = match text.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sip:") => &text[4..],
        _ => text,
    };
    if let Ok(ip) = hostport.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let (host, port) = split_host_port(hostport).ok_or_else(|| bad("not HOST[:PORT] or sip:HOST[:PORT]"))?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is not 1-65535"))?,
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip = inner.parse::<Ipv6Addr>().map_err(|_| bad("not an IPv6 address in brackets"))?;
        return Ok(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SocketAddr::new(IpAddr::V4(ip), port));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(bad("not a host name"));
    }
    let mut found = (host, port).to_socket_addrs().map_err(|e| bad(&format!("does not resolve: {e}")))?;
    found.next().ok_or_else(|| bad("resolves to no address"))
}

/// `host[:port]` split at the port's colon; `[v6]` keeps its brackets. `None` for an empty
/// host or text after `]` that is no `:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    (!host.is_empty()).then_some((host, port))
}

/// An IP as a URI host: IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`).
fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// What makes one ping's request its own: the Via branch (RFC 3261 §8.1.1.7, with the
/// magic cookie), the From tag and the Call-ID; replies are matched on branch and Call-ID.
#[derive(Debug, Clone)]
struct Ids {
    branch: String,
    tag: String,
    call_id: String,
}

impl Ids {
    fn fresh(local: SocketAddr) -> Ids {
        Ids {
            branch: format!("z9hG4bK-ping-{:016x}", fastrand::u64(..)),
            tag: format!("{:08x}", fastrand::u32(..)),
            call_id: format!("{:016x}@{}", fastrand::u64(..), uri_host(local.ip())),
        }
    }
}

/// The OPTIONS of RFC 3261 §11.1 from `local` to `target`: Request-URI `sip:HOST:PORT`,
/// `rport` (RFC 3581) so the reply comes back to the socket it left from, and
/// `Accept: application/sdp` as §11.1 suggests.
fn options_request(target: SocketAddr, local: SocketAddr, ids: &Ids) -> Vec<u8> {
    let me = uri_host(local.ip());
    let ruri = format!("sip:{}:{}", uri_host(target.ip()), target.port());
    let via = format!("SIP/2.0/UDP {me}:{};branch={};rport", local.port(), ids.branch);
    let from = format!("<sip:ping@{me}>;tag={}", ids.tag);
    let to = format!("<{ruri}>");
    let extra = format!("Contact: <sip:ping@{me}:{}>\r\nAccept: application/sdp\r\n", local.port());
    build_request(&NewRequest {
        method: "OPTIONS",
        ruri: &ruri,
        via: &via,
        max_forwards: 70,
        route: &[],
        from: &from,
        to: &to,
        call_id: &ids.call_id,
        cseq: 1,
        extra_headers: &extra,
    })
}

/// What one datagram says about the ping.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// The final reply to this ping: (code, reason).
    Final(u16, String),
    /// A provisional reply, or someone else's reply: keep waiting.
    Ignored,
    /// Not a SIP reply at all: keep waiting, and say so if nothing better comes.
    Garbage(String),
}

/// Reads one datagram as a reply to the ping `ids`: the first final reply whose top Via
/// branch and Call-ID are ours ends the transaction (RFC 3261 §17.1.3 matching, with the
/// Call-ID as a further check on a stray datagram).
fn hear(datagram: &[u8], ids: &Ids) -> Heard {
    let msg = match SipMsg::parse(Bytes::copy_from_slice(datagram)) {
        Ok(m) => m,
        Err(e) => return Heard::Garbage(format!("unparsable datagram: {e}")),
    };
    let Some(code) = msg.status() else { return Heard::Garbage("a request, not a reply".into()) };
    let ours = msg.top_via().and_then(|(_, v)| v.branch()) == Some(ids.branch.as_str()) && msg.call_id() == ids.call_id;
    if !ours || code < 200 {
        return Heard::Ignored;
    }
    Heard::Final(code, msg.reason().to_string())
}

/// The address the Via names: `from` when given, else the source address the kernel would
/// pick towards `target` (a UDP connect sends nothing; it only chooses the route).
fn local_ip(target: SocketAddr, from: Option<IpAddr>) -> std::io::Result<IpAddr> {
    if let Some(ip) = from {
        return Ok(ip);
    }
    let probe = std::net::UdpSocket::bind(unspecified_like(target))?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}

/// Port 0 on the unspecified address of `target`'s family.
fn unspecified_like(target: SocketAddr) -> SocketAddr {
    let ip = match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// One OPTIONS over UDP from an ephemeral socket (bound to `from` when given) to `target`;
/// retransmitted per RFC 3261 §17.1.2.2 timer E (T1=500ms doubling, capped by T2=4s) until
/// `timeout`; the first final reply (>=200) whose Via branch and Call-ID match is returned;
/// provisional replies are ignored.
///
/// # Errors
/// [`PingError::Io`] when the socket cannot be bound or a send fails; [`PingError::Timeout`]
/// when no final reply came; [`PingError::BadReply`] when only non-SIP datagrams did.
pub async fn ping(target: SocketAddr, from: Option<IpAddr>, timeout: Duration) -> Result<PingReply, PingError> {
    let bind = from.map_or_else(|| unspecified_like(target), |ip| SocketAddr::new(ip, 0));
    let sock = UdpSocket::bind(bind).await?;
    let local = SocketAddr::new(local_ip(target, from)?, sock.local_addr()?.port());
    let ids = Ids::fresh(local);
    let request = options_request(target, local, &ids);
    let start = Instant::now();
    let deadline = start + timeout;
    sock.send_to(&request, target).await?;
    let mut every = T1;
    let mut resend_at = start + every;
    let mut garbage = None;
    let mut buf = vec![0u8; 65_535];
    loop {
        tokio::select! {
            got = sock.recv_from(&mut buf) => {
                let (n, peer) = got?;
                match hear(&buf[..n], &ids) {
                    Heard::Final(code, reason) => {
                        return Ok(PingReply { code, reason, rtt: start.elapsed(), from: peer });
                    }
                    Heard::Garbage(why) => garbage = Some(format!("{why} (from {peer})")),
                    Heard::Ignored => {}
                }
            }
            _ = tokio::time::sleep_until(resend_at.min(deadline)) => {
                if Instant::now() >= deadline {
                    return Err(garbage.map_or(PingError::Timeout(timeout), PingError::BadReply));
                }
                sock.send_to(&request, target).await?;
                every = (every * 2).min(T2);
                resend_at = Instant::now() + every;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Ids {
        Ids { branch: "z9hG4bK-ping-1".into(), tag: "t1".into(), call_id: "c1@10.0.0.2".into() }
    }

    #[test]
    fn targets_parse() {
        let v4 = |s: &str| parse_target(s).expect(s);
        assert_eq!(v4("10.0.0.1"), "10.0.0.1:5060".parse().expect("addr"));
        assert_eq!(v4("10.0.0.1:5070"), "10.0.0.1:5070".parse().expect("addr"));
        assert_eq!(v4(" sip:10.0.0.1:5080 "), "10.0.0.1:5080".parse().expect("addr"));
        assert_eq!(v4("SIP:10.0.0.1"), "10.0.0.1:5060".parse().expect("addr"));
        assert_eq!(v4("[2001:db8::1]:5062"), "[2001:db8::1]:5062".parse().expect("addr"));
        assert_eq!(v4("sip:[2001:db8::1]"), "[2001:db8::1]:5060".parse().expect("addr"));
        assert_eq!(v4("::1"), "[::1]:5060".parse().expect("addr"));
        assert_eq!(v4("localhost:5090").port(), 5090);
        assert!(v4("localhost").ip().is_loopback());
        for bad in [
            "",
            "sip:",
            ":5060",
            "10.0.0.1:0",
            "10.0.0.1:70000",
            "10.0.0.1:x",
            "[2001:db8::1",
            "[x]:5060",
            "[::1]5060",
            "sip:bob@10.0.0.1",
            "10.0.0.1;transport=tcp",
            "sips:10.0.0.1",
        ] {
            assert!(matches!(parse_target(bad), Err(PingError::Resolve(_))), "{bad:?} was taken");
        }
    }

    #[test]
    fn health_rule() {
        assert!(is_healthy(200) && is_healthy(404) && is_healthy(403) && is_healthy(302));
        assert!(!is_healthy(500) && !is_healthy(503) && !is_healthy(600) && !is_healthy(180));
    }

    #[test]
    fn the_options_request() {
        let local: SocketAddr = "10.0.0.2:40000".parse().expect("addr");
        let target: SocketAddr = "10.0.0.1:5060".parse().expect("addr");
        let text = String::from_utf8(options_request(target, local, &ids())).expect("utf8");
        assert_eq!(
            text,
            "OPTIONS sip:10.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.2:40000;branch=z9hG4bK-ping-1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:ping@10.0.0.2>;tag=t1\r\n\
             To: <sip:10.0.0.1:5060>\r\n\
             Call-ID: c1@10.0.0.2\r\n\
             CSeq: 1 OPTIONS\r\n\
             Contact: <sip:ping@10.0.0.2:40000>\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let m = SipMsg::parse(Bytes::from(text)).expect("parses");
        assert_eq!(m.check_request(), Ok(()));

        let v6: SocketAddr = "[2001:db8::2]:40000".parse().expect("addr");
        let text =
            String::from_utf8(options_request("[2001:db8::1]:5060".parse().expect("addr"), v6, &ids())).expect("utf8");
        assert!(text.starts_with("OPTIONS sip:[2001:db8::1]:5060 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::2]:40000;"));
    }

    #[test]
    fn replies_are_matched() {
        let reply = |code: &str, branch: &str, callid: &str| {
            format!(
                "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP 10.0.0.2:40000;branch={branch};rport=40000\r\n\
                 From: <sip:ping@10.0.0.2>;tag=t1\r\nTo: <sip:10.0.0.1:5060>;tag=x\r\nCall-ID: {callid}\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let ids = ids();
        let hear_text = |t: String| hear(t.as_bytes(), &ids);
        assert_eq!(hear_text(reply("200 OK", "z9hG4bK-ping-1", "c1@10.0.0.2")), Heard::Final(200, "OK".into()));
        assert_eq!(
            hear_text(reply("503 Service Unavailable", "z9hG4bK-ping-1", "c1@10.0.0.2")),
            Heard::Final(503, "Service Unavailable".into())
        );
        assert_eq!(hear_text(reply("100 Trying", "z9hG4bK-ping-1", "c1@10.0.0.2")), Heard::Ignored);
        assert_eq!(hear_text(reply("200 OK", "z9hG4bK-other", "c1@10.0.0.2")), Heard::Ignored);
        assert_eq!(hear_text(reply("200 OK", "z9hG4bK-ping-1", "other")), Heard::Ignored);
        assert!(matches!(hear(b"\r\n\r\n", &ids), Heard::Garbage(_)));
    }

    /// Against a socket that answers 100 then 200 to the second transmission: the
    /// retransmission goes after T1, the 100 is skipped, the 200 returned.
    #[tokio::test]
    async fn retransmits_and_skips_provisionals() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = server.local_addr().expect("addr");
        let answer = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (_, peer) = server.recv_from(&mut buf).await.expect("first");
            let (n, _) = server.recv_from(&mut buf).await.expect("retransmission");
            let req = SipMsg::parse(Bytes::copy_from_slice(&buf[..n])).expect("parses");
            let via = req.value(&crate::message::HeaderName::Via).unwrap_or_default().to_string();
            let head = |status: &str| {
                format!(
                    "SIP/2.0 {status}\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=t\r\nTo: <sip:c@d>\r\nCall-ID: {}\r\n\
                     CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    req.call_id()
                )
            };
            for status in ["100 Trying", "200 OK"] {
                server.send_to(head(status).as_bytes(), peer).await.expect("answer");
            }
        });
        let started = std::time::Instant::now();
        let reply = ping(target, None, Duration::from_secs(3)).await.expect("answered");
        assert_eq!((reply.code, reply.reason.as_str(), reply.from), (200, "OK", target));
        assert!(started.elapsed() >= T1, "answered before the retransmission: {:?}", started.elapsed());
        answer.await.expect("server");
    }

    #[tokio::test]
    async fn silence_times_out() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = server.local_addr().expect("addr");
        let e = ping(target, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), Duration::from_millis(300)).await;
        assert!(matches!(e, Err(PingError::Timeout(d)) if d == Duration::from_millis(300)), "{e:?}");
    }
}
