//! The test file (TOML) and what a case turns into before it runs: the message with CRLF
//! line ends and a Content-Length, where it comes from, the socket it arrives on, and the
//! preset state. docs/script-tests.md is the reference of this format.

use crate::message::{HeaderName, SipMsg};
use crate::proxy::dry_run::{load_preset, PlayReply, Preset, Request};
use crate::transport::{Proto, Sockets};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use toml::Spanned;

/// Where a case's message comes from when neither it nor the Via says (TEST-NET-1).
const DEFAULT_SOURCE: &str = "udp:192.0.2.10:5060";

/// A whole test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The route script, relative to the test file; defaults to the config's script.
    pub script: Option<Spanned<String>>,
    /// A siprox config (listen, advertise, modparams), relative to the test file.
    pub config: Option<Spanned<String>>,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Spanned<String>,
    /// The SIP message, inline.
    pub message: Option<Spanned<String>>,
    /// The SIP message, from a file relative to the test file.
    pub message_file: Option<Spanned<String>>,
    /// `proto:ip:port` it comes from.
    pub source: Option<Spanned<String>>,
    /// `proto:ip:port` of the listening socket it arrives on.
    pub socket: Option<Spanned<String>>,
    /// `[case.state.<table>]`: preset state, loaded by the dry run's preset tables.
    #[serde(default)]
    pub state: BTreeMap<String, Spanned<toml::Value>>,
    pub expect: Spanned<Expect>,
    pub then: Option<Then>,
}

/// `[case.then]`: a reply comes back on the first branch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Then {
    pub reply: Spanned<u16>,
    pub reason: Option<String>,
    /// The caller cancelled the transaction before this reply came.
    #[serde(default)]
    pub cancelled: bool,
    pub expect: Spanned<Expect>,
}

/// What a step must have done. Every key is optional; only those given are checked.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub reply: Option<u16>,
    pub reason: Option<String>,
    pub replies: Option<Vec<u16>>,
    pub no_reply: Option<bool>,
    pub relay: Option<String>,
    pub ruri: Option<String>,
    pub du: Option<String>,
    pub dest: Option<String>,
    pub branches: Option<Vec<String>>,
    pub no_relay: Option<bool>,
    #[serde(default)]
    pub headers_added: Vec<String>,
    #[serde(default)]
    pub headers_removed: Vec<String>,
    #[serde(default)]
    pub headers_absent: Vec<String>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    pub message: Option<String>,
    pub failure_route: Option<String>,
    pub onreply_route: Option<String>,
    pub branch_route: Option<String>,
    #[serde(default)]
    pub log: Vec<String>,
    pub dropped: Option<bool>,
    pub error: Option<bool>,
    pub transaction: Option<bool>,
    pub cancel_relayed: Option<bool>,
    pub absorbed: Option<bool>,
}

impl Expect {
    /// Whether nothing at all is expected (a case that could never fail).
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }
}

/// A problem with one case's input, at a byte offset of the test file.
#[derive(Debug)]
pub struct CaseError {
    pub at: usize,
    pub message: String,
}

impl CaseError {
    fn new(at: usize, message: impl Into<String>) -> CaseError {
        CaseError { at, message: message.into() }
    }
}

/// A case ready to run.
pub struct Prepared {
    pub request: Request,
    pub preset: Preset,
    pub then: Option<PlayReply>,
}

/// Message text as written in a test file → the bytes a socket would deliver: every line
/// ends in CRLF, the header section ends with an empty line, and a missing Content-Length
/// is added with the body's length (so a body written inline need not be counted by hand).
/// A Content-Length that is present is left as written.
pub fn normalise_message(text: &str) -> Vec<u8> {
    let crlf = to_crlf(text.trim_start_matches(['\r', '\n']));
    let (head, body) = match crlf.find("\r\n\r\n") {
        Some(i) => (&crlf[..i], &crlf[i + 4..]),
        None => (crlf.trim_end_matches("\r\n"), ""),
    };
    let has_length = head.split("\r\n").skip(1).any(|line| {
        let name = line.split(':').next().unwrap_or("").trim();
        HeaderName::from_bytes(name.as_bytes()) == HeaderName::ContentLength
    });
    let mut out = String::with_capacity(crlf.len() + 24);
    out.push_str(head);
    out.push_str("\r\n");
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Every line ending (LF or CRLF) as CRLF.
pub fn to_crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// `proto:ip:port` (`udp:[::1]:5060` for IPv6).
fn parse_endpoint(spec: &str) -> Result<(Proto, SocketAddr), String> {
    let (proto, addr) = spec.split_once(':').ok_or_else(|| format!("{spec:?}: want proto:ip:port"))?;
    let proto = Proto::parse(proto).ok_or_else(|| format!("{spec:?}: the transport must be udp or tcp"))?;
    let addr = addr.parse().map_err(|_| format!("{spec:?}: want proto:ip:port with an IP address"))?;
    Ok((proto, addr))
}

/// The source a message states itself: its top Via's transport and sent-by, when that is
/// an IP address (so the proxy sees no NAT and adds no `received`).
fn source_from_via(bytes: &[u8]) -> Option<(Proto, SocketAddr)> {
    let msg = SipMsg::parse(Bytes::copy_from_slice(bytes)).ok()?;
    let (_, via) = msg.top_via()?;
    let proto = Proto::parse(via.transport)?;
    let ip: IpAddr = via.host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some((proto, SocketAddr::new(ip, via.port_or_default())))
}

fn read_message(case: &Case, dir: &Path) -> Result<Vec<u8>, CaseError> {
    match (&case.message, &case.message_file) {
        (Some(m), None) => Ok(normalise_message(m.get_ref())),
        (None, Some(f)) => {
            let path = dir.join(f.get_ref());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CaseError::new(f.span().start, format!("{}: {e}", path.display())))?;
            Ok(normalise_message(&text))
        }
        (Some(m), Some(_)) => Err(CaseError::new(m.span().start, "give `message` or `message_file`, not both")),
        (None, None) => Err(CaseError::new(case.name.span().start, "the case has no `message` or `message_file`")),
    }
}

/// The listener a message from `proto` arrives on: the one named, else the first of that
/// transport.
fn arrival_socket(case: &Case, sockets: &Sockets, proto: Proto) -> Result<usize, CaseError> {
    let Some(spec) = &case.socket else {
        return sockets.listeners().iter().find(|l| l.proto == proto).map(|l| l.id).ok_or_else(|| {
            CaseError::new(case.name.span().start, format!("no {} socket in [core] listen", proto.as_str()))
        });
    };
    let at = spec.span().start;
    let (sproto, addr) = parse_endpoint(spec.get_ref()).map_err(|m| CaseError::new(at, format!("socket {m}")))?;
    if sproto != proto {
        return Err(CaseError::new(
            at,
            format!("the socket is {} but the source is {}", sproto.as_str(), proto.as_str()),
        ));
    }
    sockets.listeners().iter().find(|l| l.proto == sproto && l.addr == addr).map(|l| l.id).ok_or_else(|| {
        let known = sockets.listeners().iter().map(|l| format!("{}:{}", l.proto.as_str(), l.addr)).collect::<Vec<_>>();
        CaseError::new(at, format!("socket {:?} is not in [core] listen ({})", spec.get_ref(), known.join(", ")))
    })
}

/// Turns a case into what the dry run needs.
///
/// # Errors
/// A missing or unreadable message, a bad source or socket, or state that cannot be preset.
pub fn prepare(case: &Case, dir: &Path, sockets: &Sockets) -> Result<Prepared, CaseError> {
    let bytes = read_message(case, dir)?;
    let (proto, src) = match &case.source {
        Some(s) => parse_endpoint(s.get_ref()).map_err(|m| CaseError::new(s.span().start, format!("source {m}")))?,
        None => match source_from_via(&bytes) {
            Some(v) => v,
            None => parse_endpoint(DEFAULT_SOURCE).map_err(|m| CaseError::new(case.name.span().start, m))?,
        },
    };
    let listener = arrival_socket(case, sockets, proto)?;
    let mut preset = Preset::default();
    for (table, value) in &case.state {
        load_preset(table, value.get_ref(), &mut preset)
            .map_err(|e| CaseError::new(value.span().start, format!("[case.state.{table}]: {e}")))?;
    }
    let then = case.then.as_ref().map(|t| PlayReply {
        code: *t.reply.get_ref(),
        reason: t.reason.clone().unwrap_or_else(|| default_reason(*t.reply.get_ref()).to_string()),
        cancelled: t.cancelled,
    });
    if let Some(t) = &case.then {
        if !(100..=699).contains(t.reply.get_ref()) {
            return Err(CaseError::new(t.reply.span().start, "a reply code is 100 to 699"));
        }
    }
    Ok(Prepared { request: Request { bytes: Bytes::from(bytes), src, proto, listener }, preset, then })
}

/// Reason phrases of RFC 3261 §21 (and RFC 3265/3262 codes scripts meet).
const REASONS: &[(u16, &str)] = &[
    (180, "Ringing"),
    (181, "Call Is Being Forwarded"),
    (182, "Queued"),
    (183, "Session Progress"),
    (200, "OK"),
    (202, "Accepted"),
    (301, "Moved Permanently"),
    (302, "Moved Temporarily"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (407, "Proxy Authentication Required"),
    (408, "Request Timeout"),
    (480, "Temporarily Unavailable"),
    (481, "Call/Transaction Does Not Exist"),
    (484, "Address Incomplete"),
    (486, "Busy Here"),
    (487, "Request Terminated"),
    (488, "Not Acceptable Here"),
    (500, "Server Internal Error"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Server Time-out"),
    (600, "Busy Everywhere"),
    (603, "Decline"),
    (604, "Does Not Exist Anywhere"),
    (606, "Not Acceptable"),
];

/// The reason phrase for `[case.then]` without `reason`: RFC 3261's, else its class's.
pub fn default_reason(code: u16) -> &'static str {
    if let Some((_, r)) = REASONS.iter().find(|(c, _)| *c == code) {
        return r;
    }
    match code / 100 {
        1 => "Session Progress",
        2 => "OK",
        3 => "Redirect",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    }
}
