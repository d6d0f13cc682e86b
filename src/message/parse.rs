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

fn trim(buf: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && matches!(buf[s], b' ' | b'\t' | b'\r' | b'\n') {
        s += 1;
    }
    while e > s && matches!(buf[e - 1], b' ' | b'\t' | b'\r' | b'\n') {
        e -= 1;
    }
    (s, e)
}

/// Cuts one message off the front of a stream buffer (RFC 3261 §18.3: on a stream the
/// Content-Length header tells where the message ends). Leading CRLFs (keep-alives, RFC 5626
/// §3.5.1) must already be skipped by the caller.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some(len))` for a whole message.
///
/// # Errors
/// `TooLarge` past [`MAX_MESSAGE`], `ContentLength` for an unreadable length.
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((_, body_start)) = find_headers_end(buf, 0) else {
        return if buf.len() > MAX_MESSAGE { Err(ParseError::TooLarge) } else { Ok(None) };
    };
    let mut cl = 0usize;
    let mut pos = 0;
    while pos < body_start {
        let (end, next) = line_end(buf, pos, body_start);
        let line = &buf[pos..end];
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (ns, ne) = trim(line, 0, colon);
            if HeaderName::from_bytes(&line[ns..ne]) == HeaderName::ContentLength {
                let (vs, ve) = trim(line, colon + 1, line.len());
                let v = std::str::from_utf8(&line[vs..ve]).map_err(|_| ParseError::ContentLength)?;
                cl = v.parse().map_err(|_| ParseError::ContentLength)?;
            }
        }
        pos = next;
    }
    let total = body_start.checked_add(cl).ok_or(ParseError::TooLarge)?;
    if total > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    Ok(if buf.len() >= total { Some(total) } else { None })
}

fn is_token_byte(b: u8) -> bool {
    // RFC 3261 §25.1 token characters.
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_start_line(buf: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
    let line = &buf[s..e];
    if line.starts_with(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let rest = line.strip_prefix(b"SIP/2.0 ").ok_or(ParseError::Version)?;
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
    let uri = &line[sp1 + 1..sp2];
    // White space inside the Request-URI is not allowed (RFC 4475 §3.1.2.3 lwsruri).
    if uri.iter().any(|&b| b == b' ' || b == b'\t') || uri.is_empty() {
        return Err(ParseError::StartLine);
    }
    if !line[sp2 + 1..].eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(ParseError::Version);
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
        let (mut end, mut next) = line_end(b, pos_h, body_start);
        // Folded continuation lines start with white space (RFC 3261 §7.3.1).
        while next < hend && matches!(b[next], b' ' | b'\t') {
            let (e2, n2) = line_end(b, next, body_start);
            end = e2;
            next = n2;
        }
        let line = &b[line_start..end];
        let colon = line.iter().position(|&c| c == b':').ok_or(ParseError::HeaderLine(line_start))?;
        let (ns, ne) = trim(b, line_start, line_start + colon);
        if ns == ne || !b[ns..ne].iter().all(|&c| is_token_byte(c)) {
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
    // fewer bytes than announced make the message unusable.
    let rest = b.len() - body_start;
    let mut body_len = rest;
    let mut cl_seen = false;
    for h in headers.iter().filter(|h| h.name == HeaderName::ContentLength) {
        let v = std::str::from_utf8(&b[h.value.range()]).map_err(|_| ParseError::ContentLength)?;
        let n: usize = v.parse().map_err(|_| ParseError::ContentLength)?;
        if cl_seen && n != body_len {
            return Err(ParseError::ContentLength);
        }
        cl_seen = true;
        if n > rest {
            return Err(ParseError::BodyTruncated);
        }
        body_len = n;
    }
    Ok(SipMsg {
        start,
        start_line,
        headers,
        headers_end: hend as u32,
        body: Span::new(body_start, body_start + body_len),
        buf,
    })
}
