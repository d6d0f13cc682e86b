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

mod build;
mod edit;
mod error;
mod header;
mod method;
mod parse;
mod typed;
mod uri;

pub use build::{build_ack_for_reply, build_cancel, build_reply, ReplyOpts};
pub use edit::{Edit, Edits};
pub use error::ParseError;
pub use header::HeaderName;
pub use method::Method;
pub use parse::{frame_stream, MAX_MESSAGE};
pub use typed::{split_commas, CSeq, NameAddr, Via};
pub use uri::{Host, Uri};

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
        let name = name.clone();
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
    /// The checks a proxy makes before it routes a request (RFC 3261 §16.3): the mandatory
    /// headers are there and readable, and CSeq names the request's method.
    ///
    /// # Errors
    /// The first problem found, as a [`ParseError`] whose `reason()` fits a 400.
    pub fn check_request(&self) -> Result<(), ParseError> {
        let StartLine::Request { method, .. } = &self.start else {
            return Ok(());
        };
        self.top_via().ok_or(ParseError::Missing("Via"))?;
        self.from().ok_or(ParseError::Missing("From"))?;
        self.to().ok_or(ParseError::Missing("To"))?;
        if self.call_id().is_empty() {
            return Err(ParseError::Missing("Call-ID"));
        }
        let cseq = self.cseq().ok_or(ParseError::Missing("CSeq"))?;
        if cseq.method != *method {
            return Err(ParseError::Missing("CSeq"));
        }
        if let Some(Err(())) = self.max_forwards() {
            return Err(ParseError::HeaderLine(0));
        }
        Ok(())
    }

    /// Whether the To header carries a non-empty tag (an in-dialog request).
    pub fn has_to_tag(&self) -> bool {
        self.to().and_then(|t| t.tag()).map(|t| !t.is_empty()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
