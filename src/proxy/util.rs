//! Small pieces of RFC 3261 §18 the pipeline needs: where replies go, what the top Via says
//! about the sender, where a URI points, and a stable To-tag for stateless replies.

use crate::message::{build_reply, HeaderName, ReplyOpts, SipMsg, Uri};
use crate::transaction::Dest;
use crate::transport::{Proto, Sockets};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The top Via as replies and the forwarded request must carry it: `received` when the
/// sender's address differs from sent-by (RFC 3261 §18.2.1), `received` and `rport` filled
/// in when rport was asked for or forced (RFC 3581 §4). `None` when nothing changes.
pub fn stamp_top_via(msg: &SipMsg, src: SocketAddr, force_rport: bool) -> Option<String> {
    let (span, via) = msg.top_via()?;
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_host = host.parse::<IpAddr>().ok() == Some(src.ip());
    let rport = force_rport || via.rport().is_some();
    if same_host && !rport {
        return None;
    }
    let text = msg.text(span);
    let params_at = text.len() - via.params.len();
    let mut out = String::with_capacity(text.len() + 40);
    out.push_str(&text[..params_at]);
    for p in via.params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        out.push(';');
        out.push_str(p);
    }
    out.push_str(";received=");
    out.push_str(&src.ip().to_string());
    if rport {
        out.push_str(";rport=");
        out.push_str(&src.port().to_string());
    }
    Some(out)
}

/// Where a reply to `req` goes (RFC 3261 §18.2.2, RFC 3581 §4): back over the connection
/// for streams; for UDP to the source address, on the source port if rport applies, else
/// on the Via port.
pub fn reply_dest(req: &SipMsg, src: SocketAddr, proto: Proto, listener: usize, force_rport: bool) -> Dest {
    if proto.is_stream() {
        return Dest { proto, addr: src, listener: Some(listener) };
    }
    let port = match req.top_via() {
        Some((_, v)) if !(force_rport || v.rport().is_some()) => v.port_or_default(),
        _ => src.port(),
    };
    Dest { proto, addr: SocketAddr::new(src.ip(), port), listener: Some(listener) }
}

/// A To-tag that is the same for retransmissions of one request (spec §3: SL tags are
/// stable so the UAC can match them).
pub fn stateless_tag(req: &SipMsg) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(req.call_id());
    eat(req.from().and_then(|f| f.tag()).unwrap_or(""));
    eat(&req.cseq().map(|c| c.number).unwrap_or(0).to_string());
    eat(req.top_via().and_then(|(_, v)| v.branch()).unwrap_or(""));
    format!("sl{h:016x}")
}

/// The header section of a message whose body framing is broken (Content-Length wrong),
/// re-indexed without its Content-Length lines, so a 400 can still be addressed.
pub fn salvage_headers(data: &Bytes) -> Option<SipMsg> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut out = Vec::with_capacity(end);
    for line in data[..end - 2].split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        let name = name.trim_ascii();
        if HeaderName::from_bytes(name) == HeaderName::ContentLength {
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\r\n");
    SipMsg::parse(Bytes::from(out)).ok()
}

/// Why a destination could not be used (becomes t_relay's code and the auto reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestError {
    BadUri,
    Unresolvable,
    NoSocket,
}

impl DestError {
    pub fn code(self) -> i64 {
        match self {
            DestError::BadUri => -2,
            DestError::Unresolvable => -4,
            DestError::NoSocket => -6,
        }
    }
    /// The reply TM sends itself when no branch could be sent (spec §4.3).
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            DestError::BadUri => (400, "Bad Request URI"),
            DestError::Unresolvable => (476, "Unresolvable destination (476/TM)"),
            DestError::NoSocket => (477, "Send failed (477/TM)"),
        }
    }
}

/// How a host name in a next-hop URI becomes an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// The system resolver (A/AAAA), as the proxy does before sending.
    System,
    /// No lookup: a dry run (`siprox test`) has no network. A name keeps its text in
    /// [`Hop::host`] and counts as IPv4 when the outgoing socket is chosen.
    Never,
}

/// Where a request goes next: transport, the address it is sent to, and the host as the
/// URI wrote it (what a dry run reports when the name was not resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub proto: Proto,
    pub addr: SocketAddr,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Hop {
    /// `proto:host:port`, IPv6 in brackets (the `force_send_socket` spelling).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.contains(':') {
            write!(f, "{}:[{host}]:{}", self.proto.as_str(), self.port)
        } else {
            write!(f, "{}:{host}:{}", self.proto.as_str(), self.port)
        }
    }
}

/// Where a URI sends a request: `transport` param, host (or `maddr`), port (5060 by
/// default). With [`Resolve::System`], names are resolved with the system resolver (A/AAAA);
/// RFC 3263 NAPTR/SRV is not done yet.
pub fn uri_dest(sockets: &Sockets, uri: &str, resolve: Resolve) -> Result<Hop, DestError> {
    let u = Uri::parse(uri).ok_or(DestError::BadUri)?;
    if !u.is_sip() {
        return Err(DestError::BadUri);
    }
    let proto = Proto::parse(&u.transport()).ok_or(DestError::NoSocket)?;
    let host = u.param("maddr").flatten().unwrap_or(u.host());
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = u.port().unwrap_or(5060);
    let addr = match (bare.parse::<IpAddr>(), resolve) {
        (Ok(ip), _) => SocketAddr::new(ip, port),
        (Err(_), Resolve::System) => {
            (bare, port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or(DestError::Unresolvable)?
        }
        (Err(_), Resolve::Never) => SocketAddr::from(([0, 0, 0, 0], port)),
    };
    if sockets.pick_listener(proto, &addr, None).is_none() {
        return Err(DestError::NoSocket);
    }
    Ok(Hop { proto, addr, host: bare.to_string(), port })
}

/// `proto:ip:port` (or `proto:[v6]:port`) of one of our sockets → its listener index.
pub fn socket_listener(sockets: &Sockets, spec: &str) -> Option<usize> {
    let (proto, rest) = spec.split_once(':')?;
    let proto = Proto::parse(proto)?;
    let addr: SocketAddr = rest.parse().ok()?;
    sockets
        .listeners()
        .iter()
        .find(|l| {
            l.proto == proto
                && (l.addr == addr || (l.advertised_host == addr.ip().to_string() && l.advertised_port == addr.port()))
        })
        .map(|l| l.id)
}

/// A stateless reply to `req` (sl_send_reply, the 400 of a bad request, 503 when shedding):
/// the top Via stamped with received/rport, a To-tag stable across retransmissions, and
/// the script's `append_to_reply` lines.
pub fn stateless_reply(
    req: &SipMsg,
    src: SocketAddr,
    force_rport: bool,
    code: u16,
    reason: &str,
    extra_headers: &str,
) -> Bytes {
    let top_via = stamp_top_via(req, src, force_rport);
    let tag = stateless_tag(req);
    let opts = ReplyOpts { to_tag: Some(&tag), top_via: top_via.as_deref(), extra_headers, ..Default::default() };
    Bytes::from(build_reply(req, code, reason, &opts))
}

/// Where a request the proxy originates (a probe, a dialog's BYE) goes: `uri` resolved off
/// the async workers (the system resolver blocks), sent from `socket` (`proto:ip:port`)
/// when it is ours and fits the transport, else from the first listener that fits. The
/// destination and our advertised `host:port` for its Via.
///
/// # Errors
/// The URI names no reachable SIP destination, or no socket of ours can send to it.
pub(super) async fn local_dest(
    tp: &std::sync::Arc<crate::transport::Transport>,
    uri: &str,
    socket: Option<&str>,
) -> Result<(Dest, String), DestError> {
    let (t, u) = (tp.clone(), uri.to_string());
    let hop = tokio::task::spawn_blocking(move || uri_dest(t.sockets(), &u, Resolve::System))
        .await
        .map_err(|_| DestError::NoSocket)??;
    let sockets = tp.sockets();
    let listener = socket
        .and_then(|s| socket_listener(sockets, s))
        .filter(|&id| sockets.listener(id).is_some_and(|l| l.proto == hop.proto))
        .or_else(|| sockets.pick_listener(hop.proto, &hop.addr, None))
        .ok_or(DestError::NoSocket)?;
    let out = sockets.listener(listener).ok_or(DestError::NoSocket)?;
    Ok((Dest { proto: hop.proto, addr: hop.addr, listener: Some(listener) }, out.advertised.clone()))
}
