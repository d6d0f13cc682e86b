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
}

impl ParseError {
    /// The reason phrase of the 400 sent back for a request that failed this way.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Incomplete | ParseError::BodyTruncated => "Bad Request - Message Truncated",
            ParseError::StartLine => "Bad Request - Bad Request Line",
            ParseError::Version => "Bad Request - Version Not Supported",
            ParseError::Status => "Bad Request - Bad Status",
            ParseError::HeaderLine(_) => "Bad Request - Bad Header",
            ParseError::ContentLength => "Bad Request - Bad Content-Length",
            ParseError::TooLarge => "Message Too Large",
            ParseError::Missing("Via") => "Bad Request - Missing Via",
            ParseError::Missing("From") => "Bad Request - Missing From",
            ParseError::Missing("To") => "Bad Request - Missing To",
            ParseError::Missing("Call-ID") => "Bad Request - Missing Call-ID",
            ParseError::Missing(_) => "Bad Request - Bad CSeq",
        }
    }
}
