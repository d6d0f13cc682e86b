//! Pure SIP: a zero-copy index over the bytes of one received message, typed values decoded on
//! demand, and byte-preserving edits spliced in when the message is printed.
//!
//! Owns: framing a datagram or a stream chunk into one message, the start line, header lines
//! (compact forms, folding, any case, unknown names), the body by Content-Length, and building
//! replies, CANCEL and ACK from a request. Does not own: sockets, clocks, transactions.
//!
//! Nothing here allocates per header: the index is a vector of byte ranges into the original
//! buffer. A header is decoded (Via, From, CSeq, …) only when somebody asks for it, and what
//! the proxy did not edit leaves byte for byte as it came (RFC 3261 §16.6 asks a proxy to
//! change only what it must).
//!
//! rsip sits behind [`rsip_bridge`] for full typed values, decoded on demand and never on the
//! relay path. The RFC 4475 torture corpus (testdata/torture/) is the golden test of all this.

mod build;
mod digest;
mod edit;
mod error;
mod header;
mod method;
mod parse;
pub mod rsip_bridge;
mod typed;
mod uri;

pub use build::{build_ack_for_reply, build_cancel, build_reply, build_request, NewRequest, ReplyOpts};
pub use digest::{CredentialsError, DigestCredentials};
pub use edit::{Edit, Edits};
pub use error::ParseError;
pub use header::HeaderName;
pub use method::{Method, METHOD_SLOTS, METHOD_SLOT_NAMES};
pub use parse::{frame_stream, MAX_MESSAGE};
pub use typed::{split_commas, CSeq, NameAddr, Via};
pub use uri::{unescape, Host, Uri};

use bytes::Bytes;

/// A half-open byte range `[start, end)` into a message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The first line of a message.
#[derive(Clone, Debug)]
pub enum StartLine {
    Request { method: Method, method_span: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// One header line of the received message, folded continuation lines included.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub name: HeaderName,
    /// The name as it was written (case and compact form preserved).
    pub name_span: Span,
    /// The value, leading and trailing white space trimmed; may span folded lines.
    pub value: Span,
    /// The whole line, from the first byte of the name to the end of its CRLF.
    pub line: Span,
}

/// An indexed SIP message. Cheap to clone (the bytes are shared).
#[derive(Clone, Debug)]
pub struct SipMsg {
    buf: Bytes,
    start: StartLine,
    start_line: Span,
    headers: Vec<Header>,
    /// Offset of the empty line that ends the header section.
    headers_end: u32,
    body: Span,
}

impl SipMsg {
    /// Parses one whole message (a datagram, or a frame cut by [`frame_stream`]).
    ///
    /// # Errors
    /// [`ParseError`] when the start line, a header line or Content-Length is unusable.
    pub fn parse(buf: Bytes) -> Result<SipMsg, ParseError> {
        parse::parse(buf)
    }

    /// A placeholder message for hooks that run without one (startup_route): an OPTIONS
    /// with no headers. Functions that need a real message fail on it gracefully.
    pub fn empty() -> SipMsg {
        SipMsg {
            buf: Bytes::from_static(b"OPTIONS sip:localhost SIP/2.0\r\n\r\n"),
            start: StartLine::Request { method: Method::Options, method_span: Span::new(0, 7), uri: Span::new(8, 21) },
            start_line: Span::new(0, 29),
            headers: Vec::new(),
            headers_end: 31,
            body: Span::new(33, 33),
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }
    pub fn slice(&self, span: Span) -> &[u8] {
        &self.buf[span.range()]
    }
    /// The text of a span; `""` when it is not UTF-8 (typed access then fails gracefully).
    pub fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.slice(span)).unwrap_or("")
    }
    pub fn start(&self) -> &StartLine {
        &self.start
    }
    pub fn start_line_span(&self) -> Span {
        self.start_line
    }
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
    pub fn headers_end(&self) -> usize {
        self.headers_end as usize
    }
    pub fn body_span(&self) -> Span {
        self.body
    }
    pub fn body(&self) -> &[u8] {
        self.slice(self.body)
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method; for a reply, the method of its CSeq.
    pub fn method(&self) -> Method {
        match &self.start {
            StartLine::Request { method, .. } => method.clone(),
            StartLine::Response { .. } => self.cseq().map(|c| c.method).unwrap_or(Method::Other(String::new())),
        }
    }
    /// The method as written on the start line (or in CSeq for replies).
    pub fn method_text(&self) -> &str {
        match &self.start {
            StartLine::Request { method_span, .. } => self.text(*method_span),
            StartLine::Response { .. } => self.cseq().map(|c| c.method_text).unwrap_or(""),
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn reason(&self) -> &str {
        match self.start {
            StartLine::Response { reason, .. } => self.text(reason),
            _ => "",
        }
    }
    pub fn ruri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        }
    }
    /// The Request-URI as received.
    pub fn ruri(&self) -> &str {
        self.ruri_span().map(|s| self.text(s)).unwrap_or("")
    }

    /// Every header line with this name, in order.
    pub fn headers_named(&self, name: &HeaderName) -> impl Iterator<Item = &Header> + '_ {
        let name = *name;
        self.headers.iter().filter(move |h| h.name == name)
    }
    /// Header lines whose name matches `name` (any case, compact forms too).
    pub fn headers_by_text<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Header> + 'a {
        let wanted = HeaderName::from_bytes(name.as_bytes());
        let raw = name.to_string();
        self.headers.iter().filter(move |h| match (&wanted, &h.name) {
            (HeaderName::Other, HeaderName::Other) => self.slice(h.name_span).eq_ignore_ascii_case(raw.as_bytes()),
            (w, n) => w == n,
        })
    }
    pub fn first(&self, name: &HeaderName) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == *name)
    }
    /// The value of the first header with this name.
    pub fn value(&self, name: &HeaderName) -> Option<&str> {
        self.first(name).map(|h| self.text(h.value))
    }
    /// Values of a header that may be comma-separated (Via, Route, Contact…), across all its
    /// lines, each with its span in the buffer.
    pub fn values(&self, name: &HeaderName) -> Vec<(Span, &str)> {
        let mut out = Vec::new();
        for h in self.headers_named(name) {
            for part in split_commas(self.slice(h.value)) {
                let s = Span::new(h.value.start as usize + part.start, h.value.start as usize + part.end);
                out.push((s, self.text(s)));
            }
        }
        out
    }

    pub fn call_id(&self) -> &str {
        self.value(&HeaderName::CallId).unwrap_or("")
    }
    pub fn cseq(&self) -> Option<CSeq<'_>> {
        self.value(&HeaderName::CSeq).and_then(CSeq::parse)
    }
    pub fn from(&self) -> Option<NameAddr<'_>> {
        self.value(&HeaderName::From).and_then(NameAddr::parse)
    }
    pub fn to(&self) -> Option<NameAddr<'_>> {
        self.value(&HeaderName::To).and_then(NameAddr::parse)
    }
    /// The topmost Via value, with its span (it may share a line with others).
    pub fn top_via(&self) -> Option<(Span, Via<'_>)> {
        let h = self.first(&HeaderName::Via)?;
        let part = split_commas(self.slice(h.value)).next()?;
        let s = Span::new(h.value.start as usize + part.start, h.value.start as usize + part.end);
        Via::parse(self.text(s)).map(|v| (s, v))
    }
    pub fn via_count(&self) -> usize {
        self.values(&HeaderName::Via).len()
    }
    /// `Max-Forwards` as a number: `None` when absent, `Some(Err)` when unparsable.
    pub fn max_forwards(&self) -> Option<Result<u32, ()>> {
        self.value(&HeaderName::MaxForwards).map(|v| v.trim().parse::<u32>().map_err(|_| ()))
    }
    pub fn content_length(&self) -> Option<usize> {
        self.value(&HeaderName::ContentLength).and_then(|v| v.trim().parse().ok())
    }
    pub fn expires(&self) -> Option<u32> {
        self.value(&HeaderName::Expires).and_then(|v| v.trim().parse().ok())
    }
    /// The checks a proxy makes before it routes a request (RFC 3261 §16.3), all on the
    /// index and without allocating: a SIP/SIPS Request-URI parses and carries no headers
    /// (RFC 4475 §3.1.2.11); Via, From, To, Call-ID and CSeq are there and readable, every Via
    /// value included (§3.1.2.1); From, To, Call-ID, CSeq and Max-Forwards appear once
    /// (§3.3.8); CSeq is below 2**31 and names the request's method (RFC 3261 §8.1.1.5, RFC
    /// 4475 §3.1.2.17–18); Max-Forwards, when present, is a number; every Contact value is
    /// `*` or a name-addr/addr-spec (§3.1.2.13); a Date header is an RFC 1123 date in GMT
    /// (§3.1.2.12). For a reply this returns `Ok(())`; see [`check_reply`](Self::check_reply).
    ///
    /// Not checked here, because later layers decide them: the Request-URI scheme (416), the
    /// Max-Forwards value (483), Proxy-Require (420), branch ids, body types.
    ///
    /// # Errors
    /// The first problem found, as a [`ParseError`] whose `reason()` fits a 400.
    pub fn check_request(&self) -> Result<(), ParseError> {
        let StartLine::Request { method, uri, .. } = &self.start else {
            return Ok(());
        };
        match Uri::parse(self.text(*uri)) {
            Some(u) if !u.is_sip() || u.headers().is_empty() => {}
            _ => return Err(ParseError::StartLine),
        }
        self.check_common(Some(method))
    }

    /// The checks a proxy makes before it relays a reply (RFC 3261 §16.7, §18.1.2): Via,
    /// From, To, Call-ID and CSeq are there, readable and (but Via) single, and the CSeq
    /// number is below 2**31 (RFC 4475 §3.1.2.5). For a request this returns `Ok(())`.
    ///
    /// # Errors
    /// The first problem found; a reply that fails is dropped, never answered.
    pub fn check_reply(&self) -> Result<(), ParseError> {
        if self.is_request() {
            return Ok(());
        }
        self.check_common(None)
    }

    fn check_common(&self, method: Option<&Method>) -> Result<(), ParseError> {
        fn once(seen: &mut bool, name: &'static str) -> Result<(), ParseError> {
            if std::mem::replace(seen, true) {
                return Err(ParseError::Duplicate(name));
            }
            Ok(())
        }
        let (mut via, mut from, mut to, mut call_id, mut cseq, mut mf) = (false, false, false, false, false, false);
        for h in &self.headers {
            // Only the headers checked below are read as text (UTF-8 validated).
            let v = || self.text(h.value);
            match h.name {
                HeaderName::Via => {
                    via = true;
                    let (text, mut n) = (v(), 0);
                    for part in split_commas(self.slice(h.value)) {
                        n += 1;
                        text.get(part).and_then(Via::parse).ok_or(ParseError::BadHeader("Via"))?;
                    }
                    if n == 0 {
                        return Err(ParseError::BadHeader("Via"));
                    }
                }
                HeaderName::From => {
                    once(&mut from, "From")?;
                    NameAddr::parse(v()).ok_or(ParseError::BadHeader("From"))?;
                }
                HeaderName::To => {
                    once(&mut to, "To")?;
                    NameAddr::parse(v()).ok_or(ParseError::BadHeader("To"))?;
                }
                HeaderName::CallId => {
                    once(&mut call_id, "Call-ID")?;
                    let raw = self.slice(h.value);
                    if raw.is_empty() || raw.iter().any(|&c| c <= b' ' || c == 0x7f) {
                        return Err(ParseError::BadHeader("Call-ID"));
                    }
                }
                HeaderName::CSeq => {
                    once(&mut cseq, "CSeq")?;
                    let c = CSeq::parse(v()).ok_or(ParseError::BadHeader("CSeq"))?;
                    if c.number >= 1 << 31 || method.is_some_and(|m| *m != c.method) {
                        return Err(ParseError::BadHeader("CSeq"));
                    }
                }
                HeaderName::MaxForwards if method.is_some() => {
                    once(&mut mf, "Max-Forwards")?;
                    if !matches!(parse::parse_digits(self.slice(h.value)), Some(n) if n <= u64::from(u32::MAX)) {
                        return Err(ParseError::BadHeader("Max-Forwards"));
                    }
                }
                HeaderName::Contact if method.is_some() => {
                    let (text, mut n) = (v(), 0);
                    for part in split_commas(self.slice(h.value)) {
                        n += 1;
                        let c = text.get(part).unwrap_or("");
                        if c != "*" && NameAddr::parse(c).is_none() {
                            return Err(ParseError::BadHeader("Contact"));
                        }
                    }
                    if n == 0 {
                        return Err(ParseError::BadHeader("Contact"));
                    }
                }
                HeaderName::Other
                    if method.is_some()
                        && self.slice(h.name_span).eq_ignore_ascii_case(b"date")
                        && !typed::is_rfc1123_gmt(v()) =>
                {
                    return Err(ParseError::BadHeader("Date"));
                }
                _ => {}
            }
        }
        if !via {
            return Err(ParseError::Missing("Via"));
        }
        if !from {
            return Err(ParseError::Missing("From"));
        }
        if !to {
            return Err(ParseError::Missing("To"));
        }
        if !call_id {
            return Err(ParseError::Missing("Call-ID"));
        }
        if !cseq {
            return Err(ParseError::Missing("CSeq"));
        }
        Ok(())
    }

    /// Whether the To header carries a non-empty tag (an in-dialog request).
    pub fn has_to_tag(&self) -> bool {
        self.to().and_then(|t| t.tag()).map(|t| !t.is_empty()).unwrap_or(false)
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod torture_tests;
