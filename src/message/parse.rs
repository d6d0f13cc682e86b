//! Building the index: start line, header lines, body by Content-Length (RFC 3261 §7, §18.3).

use super::{Header, HeaderName, Method, ParseError, SipMsg, Span, StartLine};
use bytes::Bytes;

/// The largest message accepted on any transport (UDP datagrams are smaller anyway).
pub const MAX_MESSAGE: usize = 65_535;

/// Finds the end of the header section: the offset of the empty line's first byte and the
/// offset just after it. Tolerates bare LF line ends.
fn find_headers_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // A line end followed by another line end is the empty line.
            let next = i + 1;
            if buf.get(next) == Some(&b'\n') {
                return Some((next, next + 1));
            }
            if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
                return Some((next, next + 2));
            }
        }
        i += 1;
    }
    None
}

/// End of the line starting at `from`: (offset of CR or LF, offset after the line end).
fn line_end(buf: &[u8], from: usize, limit: usize) -> (usize, usize) {
    let mut i = from;
    while i < limit {
        if buf[i] == b'\n' {
            let end = if i > from && buf[i - 1] == b'\r' { i - 1 } else { i };
            return (end, i + 1);
        }
        i += 1;
    }
    (limit, limit)
}

/// One logical header line starting at `from`, folded continuation lines (starting with SP
/// or HT, RFC 3261 §7.3.1) included: (offset of its last line end, offset of the next line).
fn header_line_end(buf: &[u8], from: usize, hend: usize, limit: usize) -> (usize, usize) {
    let (mut end, mut next) = line_end(buf, from, limit);
    while next < hend && matches!(buf[next], b' ' | b'\t') {
        (end, next) = line_end(buf, next, limit);
    }
    (end, next)
}

fn trim(buf: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && matches!(buf[s], b' ' | b'\t' | b'\r' | b'\n') {
        s += 1;
    }
    while e > s && matches!(buf[e - 1], b' ' | b'\t' | b'\r' | b'\n') {
        e -= 1;
    }
    (s, e)
}

/// `1*DIGIT` as a number: no sign, no white space, `None` on overflow (RFC 4475 §3.1.2.4:
/// overlarge values must not wrap around).
pub(crate) fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// A Content-Length value (RFC 3261 §20.14: `1*DIGIT`); a sign or an overflow is an error
/// (RFC 4475 §3.1.2.3 ncl).
fn content_length_value(v: &[u8]) -> Result<u64, ParseError> {
    parse_digits(v).ok_or(ParseError::ContentLength)
}

/// Cuts one message off the front of a stream buffer (RFC 3261 §18.3: on a stream the
/// Content-Length header tells where the message ends). Leading CRLFs (keep-alives, RFC 5626
/// §3.5.1) must already be skipped by the caller.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some(len))` for a whole message.
///
/// # Errors
/// `TooLarge` past [`MAX_MESSAGE`], `ContentLength` for an unreadable length or two
/// Content-Length headers that disagree.
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((hend, body_start)) = find_headers_end(buf, 0) else {
        return if buf.len() > MAX_MESSAGE { Err(ParseError::TooLarge) } else { Ok(None) };
    };
    if body_start > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let mut cl: Option<u64> = None;
    // The start line holds no header; skip it.
    let (_, mut pos) = line_end(buf, 0, hend);
    while pos < hend {
        let (end, next) = header_line_end(buf, pos, hend, body_start);
        let line = &buf[pos..end];
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (ns, ne) = trim(line, 0, colon);
            if HeaderName::from_bytes(&line[ns..ne]) == HeaderName::ContentLength {
                let (vs, ve) = trim(line, colon + 1, line.len());
                let n = content_length_value(&line[vs..ve])?;
                if cl.is_some_and(|prev| prev != n) {
                    return Err(ParseError::ContentLength);
                }
                cl = Some(n);
            }
        }
        pos = next;
    }
    let total = (body_start as u64).saturating_add(cl.unwrap_or(0));
    if total > MAX_MESSAGE as u64 {
        return Err(ParseError::TooLarge);
    }
    let total = total as usize;
    Ok(if buf.len() >= total { Some(total) } else { None })
}

pub(crate) fn is_token_byte(b: u8) -> bool {
    // RFC 3261 §25.1 token characters.
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The shape every Request-URI has (RFC 3261 §25.1 `Request-URI = SIP-URI / SIPS-URI /
/// absoluteURI`): a scheme, a colon, then no white space or control bytes, no `<>` (RFC
/// 4475 §3.1.2.7) and no quotes. Bytes past ASCII are let through (seen in the wild, and the
/// proxy only relays them). Which schemes the proxy can route is decided later (416).
fn request_uri_ok(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &uri[..colon];
    !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && uri.iter().all(|&b| b > b' ' && b != 0x7f && !b"<>\"".contains(&b))
}

fn parse_start_line(buf: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
    let line = &buf[s..e];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        if line.len() < 8 || !line[..8].eq_ignore_ascii_case(b"SIP/2.0 ") {
            return Err(ParseError::Version);
        }
        let rest = &line[8..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) || (rest.len() > 3 && rest[3] != b' ') {
            return Err(ParseError::Status);
        }
        let code = (rest[0] - b'0') as u16 * 100 + (rest[1] - b'0') as u16 * 10 + (rest[2] - b'0') as u16;
        if !(100..=699).contains(&code) {
            return Err(ParseError::Status);
        }
        let rs = (s + 8 + 4).min(e);
        return Ok(StartLine::Response { code, reason: Span::new(rs, e) });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, §7.1).
    let sp1 = line.iter().position(|&b| b == b' ').ok_or(ParseError::StartLine)?;
    let sp2 = line.iter().rposition(|&b| b == b' ').ok_or(ParseError::StartLine)?;
    if sp2 <= sp1 + 1 {
        return Err(ParseError::StartLine);
    }
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(ParseError::StartLine);
    }
    // White space inside the Request-URI (RFC 4475 §3.1.2.8 lwsruri), extra spaces between
    // the elements (§3.1.2.9 lwsstart, §3.1.2.10 trws) and `<…>` (§3.1.2.7) all land here.
    if !request_uri_ok(&line[sp1 + 1..sp2]) {
        return Err(ParseError::StartLine);
    }
    let version = &line[sp2 + 1..];
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        // Another SIP version gets a 505 (RFC 4475 §3.1.2.16); anything else is a bad line.
        let looks_like_version = version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/");
        return Err(if looks_like_version { ParseError::Version } else { ParseError::StartLine });
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(s, s + sp1),
        uri: Span::new(s + sp1 + 1, s + sp2),
    })
}

pub(super) fn parse(buf: Bytes) -> Result<SipMsg, ParseError> {
    if buf.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let b = &buf[..];
    let mut pos = 0;
    while pos < b.len() && (b[pos] == b'\r' || b[pos] == b'\n') {
        pos += 1;
    }
    let (hend, body_start) = find_headers_end(b, pos).ok_or(ParseError::Incomplete)?;
    let (sl_end, mut pos_h) = line_end(b, pos, hend);
    let start = parse_start_line(b, pos, sl_end)?;
    let start_line = Span::new(pos, sl_end);

    let mut headers: Vec<Header> = Vec::with_capacity(16);
    while pos_h < hend {
        let line_start = pos_h;
        let (end, next) = header_line_end(b, pos_h, hend, body_start);
        let line = &b[line_start..end];
        let colon = line.iter().position(|&c| c == b':').ok_or(ParseError::HeaderLine(line_start))?;
        let (ns, ne) = trim(b, line_start, line_start + colon);
        // The name starts the line: a line starting with white space right after the start
        // line is a fold of nothing.
        if ns != line_start || ns == ne || !b[ns..ne].iter().all(|&c| is_token_byte(c)) {
            return Err(ParseError::HeaderLine(line_start));
        }
        let (vs, ve) = trim(b, line_start + colon + 1, end);
        headers.push(Header {
            name: HeaderName::from_bytes(&b[ns..ne]),
            name_span: Span::new(ns, ne),
            value: Span::new(vs, ve),
            line: Span::new(line_start, next.min(hend)),
        });
        pos_h = next;
    }

    // RFC 3261 §18.3: a datagram's body ends at Content-Length; bytes beyond it are dropped,
    // fewer bytes than announced make the message unusable. Two Content-Length headers that
    // disagree make it unusable too (RFC 4475 §3.3.9).
    let rest = b.len() - body_start;
    let mut cl: Option<u64> = None;
    for h in headers.iter().filter(|h| h.name == HeaderName::ContentLength) {
        let n = content_length_value(&b[h.value.range()])?;
        if cl.is_some_and(|prev| prev != n) {
            return Err(ParseError::ContentLength);
        }
        cl = Some(n);
    }
    let body_len = match cl {
        Some(n) if n > rest as u64 => return Err(ParseError::BodyTruncated),
        Some(n) => n as usize,
        None => rest,
    };
    Ok(SipMsg {
        start,
        start_line,
        headers,
        headers_end: hend as u32,
        body: Span::new(body_start, body_start + body_len),
        buf,
    })
}
