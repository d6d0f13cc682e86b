//! Server transaction keys (RFC 3261 §17.2.3): the branch of the top Via when it carries
//! the magic cookie, with sent-by and method; otherwise the RFC 2543 fields.

use crate::message::{Method, SipMsg};

/// The key of a request's server transaction. ACK maps to INVITE (it belongs to the INVITE
/// transaction it acknowledges, for negative finals); `as_method` overrides the method
/// (CANCEL looking for its INVITE).
pub fn request_key(req: &SipMsg, as_method: Option<&Method>) -> Option<String> {
    let (_, via) = req.top_via()?;
    let method = match (as_method, req.method()) {
        (Some(m), _) => m.clone(),
        (None, Method::Ack) => Method::Invite,
        (None, m) => m,
    };
    match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => {
            Some(format!("{}|{}:{}|{}", b, via.host, via.port_or_default(), method.as_str()))
        }
        _ => {
            // RFC 2543 matching (§17.2.3 last paragraphs): Request-URI, To tag, From tag,
            // Call-ID, CSeq number and top Via. An ACK's To carries the tag of our reply,
            // so it is left out for INVITE/ACK; the CANCEL/INVITE pair matches the same way.
            let from_tag = req.from().and_then(|f| f.tag()).unwrap_or("");
            let cseq = req.cseq().map(|c| c.number).unwrap_or(0);
            Some(format!(
                "2543|{}|{}|{}|{}|{}:{}|{}",
                req.ruri(),
                from_tag,
                req.call_id(),
                cseq,
                via.host,
                via.port_or_default(),
                method.as_str()
            ))
        }
    }
}
