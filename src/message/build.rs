//! Messages the proxy writes itself: replies to a request (RFC 3261 §8.2.6), CANCEL
//! (§9.1) and the ACK of a negative final reply (§17.1.1.3). Header lines are copied from
//! the request byte for byte, so what the caller sent is what it gets back. Requests it
//! originates (probes, keep-alives, a dialog's BYE, `siprox ping`) are written from their
//! parts ([`build_request`]).

use super::{HeaderName, SipMsg, Span};

/// What a locally built reply carries besides the copied headers.
#[derive(Default, Clone, Debug)]
pub struct ReplyOpts<'a> {
    /// To-tag to add when the request's To has none (§8.2.6.2). Ignored for 100.
    pub to_tag: Option<&'a str>,
    /// The top Via value to write instead of the received one (received/rport filled in).
    pub top_via: Option<&'a str>,
    /// Extra header lines, each ending in CRLF.
    pub extra_headers: &'a str,
    pub body: &'a [u8],
}

fn push_line(out: &mut Vec<u8>, msg: &SipMsg, line: Span) {
    out.extend_from_slice(msg.slice(line));
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

/// Builds a reply to `req`.
pub fn build_reply(req: &SipMsg, code: u16, reason: &str, opts: &ReplyOpts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + opts.body.len());
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
    let top = req.top_via().map(|(s, _)| s);
    let mut first_via = true;
    for h in req.headers() {
        match h.name {
            HeaderName::Via => {
                // §8.2.6.2: the Via values are copied in order; only the top one may change.
                match (first_via, top, opts.top_via) {
                    (true, Some(tv), Some(new)) => {
                        out.extend_from_slice(&req.bytes()[h.line.start as usize..tv.start as usize]);
                        out.extend_from_slice(new.as_bytes());
                        out.extend_from_slice(&req.bytes()[tv.end as usize..h.line.end as usize]);
                        if !out.ends_with(b"\n") {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    _ => push_line(&mut out, req, h.line),
                }
                first_via = false;
            }
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => push_line(&mut out, req, h.line),
            // §8.2.6.1: a 100 (Trying) carries the request's Timestamp.
            HeaderName::Other if code == 100 && req.slice(h.name_span).eq_ignore_ascii_case(b"timestamp") => {
                push_line(&mut out, req, h.line)
            }
            HeaderName::To => {
                let has_tag = req.to().and_then(|t| t.tag()).is_some();
                match opts.to_tag {
                    Some(tag) if !has_tag && code > 100 => {
                        out.extend_from_slice(&req.bytes()[h.line.start as usize..h.value.end as usize]);
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    _ => push_line(&mut out, req, h.line),
                }
            }
            _ => {}
        }
    }
    out.extend_from_slice(opts.extra_headers.as_bytes());
    out.extend_from_slice(b"Server: siprox\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", opts.body.len()).as_bytes());
    out.extend_from_slice(opts.body);
    out
}

/// Copies the request line and the headers CANCEL and ACK share with the INVITE they
/// refer to: top Via only, From, Call-ID, Route (RFC 3261 §9.1, §17.1.1.3).
fn build_invite_sibling(invite: &SipMsg, method: &str, to_line: Option<&[u8]>, extra: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(invite.bytes().len());
    out.extend_from_slice(format!("{method} {} SIP/2.0\r\n", invite.ruri()).as_bytes());
    if let Some((span, _)) = invite.top_via() {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(invite.slice(span));
        out.extend_from_slice(b"\r\n");
    }
    for h in invite.headers() {
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => push_line(&mut out, invite, h.line),
            HeaderName::To => match to_line {
                Some(line) => out.extend_from_slice(line),
                None => push_line(&mut out, invite, h.line),
            },
            _ => {}
        }
    }
    let n = invite.cseq().map(|c| c.number).unwrap_or(1);
    out.extend_from_slice(format!("CSeq: {n} {method}\r\nMax-Forwards: 70\r\n").as_bytes());
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

/// CANCEL for an INVITE exactly as it was sent on a branch (RFC 3261 §9.1).
/// `reason` is a whole `Reason:` header line without CRLF, or empty.
pub fn build_cancel(invite_sent: &SipMsg, reason: &str) -> Vec<u8> {
    let extra = if reason.is_empty() { String::new() } else { format!("{reason}\r\n") };
    build_invite_sibling(invite_sent, "CANCEL", None, &extra)
}

/// ACK for a non-2xx final reply to an INVITE sent on a branch (RFC 3261 §17.1.1.3): the To
/// of the reply (with its tag), everything else from the INVITE.
pub fn build_ack_for_reply(invite_sent: &SipMsg, reply: &SipMsg) -> Vec<u8> {
    let to = reply.first(&HeaderName::To).map(|h| {
        let mut l = reply.slice(h.line).to_vec();
        if !l.ends_with(b"\n") {
            l.extend_from_slice(b"\r\n");
        }
        l
    });
    build_invite_sibling(invite_sent, "ACK", to.as_deref(), "")
}

/// A request this node originates, by its parts: the headers RFC 3261 §8.1.1 makes
/// mandatory, in the order they are written.
#[derive(Clone, Debug, Default)]
pub struct NewRequest<'a> {
    pub method: &'a str,
    pub ruri: &'a str,
    /// The whole Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK…;rport`.
    pub via: &'a str,
    pub max_forwards: u32,
    /// Route values (`<uri>`), nearest first: a request inside a dialog (§12.2.1.1).
    pub route: &'a [String],
    /// Whole From and To values, tags included.
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    /// More header lines (Contact, Accept …), each ending in CRLF.
    pub extra_headers: &'a str,
}

/// Writes `req` with no body (`Content-Length: 0`).
pub fn build_request(req: &NewRequest<'_>) -> Vec<u8> {
    let mut out = format!(
        "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: {mf}\r\n",
        method = req.method,
        ruri = req.ruri,
        via = req.via,
        mf = req.max_forwards,
    );
    for r in req.route {
        out.push_str("Route: ");
        out.push_str(r);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        from = req.from,
        to = req.to,
        cid = req.call_id,
        cseq = req.cseq,
        method = req.method,
        extra = req.extra_headers,
    ));
    out.into_bytes()
}
