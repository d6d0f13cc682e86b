//! Parse errors. Allocation-free: they name what was wrong and where, nothing more.

use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed (ordinary on stream transports; never logged as an error).
    #[error("incomplete message")]
    Incomplete,
    #[error("bad start line")]
    StartLine,
    #[error("bad SIP version")]
    Version,
    #[error("bad status code")]
    Status,
    #[error("bad header line at byte {0}")]
    HeaderLine(usize),
    #[error("bad Content-Length")]
    ContentLength,
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    #[error("message too large")]
    TooLarge,
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
    /// A header the proxy needs is there but its value does not parse (or, for CSeq, names
    /// another method than the request line).
    #[error("bad {0} header")]
    BadHeader(&'static str),
    /// A header that may appear only once appears more often (RFC 4475 §3.3.8).
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
}

impl ParseError {
    /// The reason phrase of the 400 (or [`status_code`](Self::status_code)) sent back for a
    /// request that failed this way.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Incomplete | ParseError::BodyTruncated => "Bad Request - Message Truncated",
            ParseError::StartLine => "Bad Request - Bad Request Line",
            ParseError::Version => "Version Not Supported",
            ParseError::Status => "Bad Request - Bad Status",
            ParseError::HeaderLine(_) => "Bad Request - Bad Header",
            ParseError::ContentLength => "Bad Request - Bad Content-Length",
            ParseError::TooLarge => "Message Too Large",
            ParseError::Missing("Via") => "Bad Request - Missing Via",
            ParseError::Missing("From") => "Bad Request - Missing From",
            ParseError::Missing("To") => "Bad Request - Missing To",
            ParseError::Missing("Call-ID") => "Bad Request - Missing Call-ID",
            ParseError::Missing("CSeq") => "Bad Request - Missing CSeq",
            ParseError::Missing(_) => "Bad Request - Missing Header",
            ParseError::BadHeader("Via") => "Bad Request - Bad Via",
            ParseError::BadHeader("From") => "Bad Request - Bad From",
            ParseError::BadHeader("To") => "Bad Request - Bad To",
            ParseError::BadHeader("Call-ID") => "Bad Request - Bad Call-ID",
            ParseError::BadHeader("CSeq") => "Bad Request - Bad CSeq",
            ParseError::BadHeader("Max-Forwards") => "Bad Request - Bad Max-Forwards",
            ParseError::BadHeader("Contact") => "Bad Request - Bad Contact",
            ParseError::BadHeader("Date") => "Bad Request - Bad Date",
            ParseError::BadHeader(_) => "Bad Request - Bad Header",
            ParseError::Duplicate(_) => "Bad Request - Duplicate Header",
        }
    }

    /// The status of the reply a request that failed this way gets: 505 for another SIP
    /// version (RFC 3261 §21.5.6), 513 for an oversize message (§21.5.7), 400 otherwise.
    pub fn status_code(self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}
