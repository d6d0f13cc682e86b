//! The SDP side of nathelper: the `private-sdp` test and `fix_nated_sdp` (RFC 4566).
//!
//! The body is read as lines, never re-printed: every change is a lump on the address it
//! replaces or a line inserted whole, and Content-Length is brought in line afterwards
//! ([`Edits::sync_content_length`]), so what is not fixed leaves byte for byte.

use super::{parse_names, NatError};
use crate::message::{Edits, HeaderName, SipMsg, Span};
use std::net::IpAddr;

/// The operations of `fix_nated_sdp`, as the old bit mask (spec §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SdpFlags(pub u32);

impl SdpFlags {
    pub const ADD_DIR_ACTIVE: u32 = 1;
    pub const REWRITE_MEDIA_IP: u32 = 2;
    pub const ADD_NO_RTPPROXY: u32 = 4;
    pub const REWRITE_ORIGIN_IP: u32 = 8;
    pub const REWRITE_NULL_IPS: u32 = 16;

    const NAMES: [(&'static str, u32); 5] = [
        ("add-dir-active", SdpFlags::ADD_DIR_ACTIVE),
        ("rewrite-media-ip", SdpFlags::REWRITE_MEDIA_IP),
        ("add-no-rtpproxy", SdpFlags::ADD_NO_RTPPROXY),
        ("rewrite-origin-ip", SdpFlags::REWRITE_ORIGIN_IP),
        ("rewrite-null-ips", SdpFlags::REWRITE_NULL_IPS),
    ];

    /// Reads 3.x names (`"rewrite-media-ip,add-no-rtpproxy"`) or an old mask as text (`"6"`).
    ///
    /// # Errors
    /// An unknown name, or a mask with bits above 16.
    pub fn parse(spec: &str) -> Result<SdpFlags, NatError> {
        let spec = spec.trim();
        if let Ok(n) = spec.parse::<i64>() {
            return SdpFlags::from_mask(n);
        }
        parse_names(spec, &SdpFlags::NAMES, NatError::UnknownFlag).map(SdpFlags)
    }

    /// # Errors
    /// A mask below 0 or with bits above 16.
    pub fn from_mask(n: i64) -> Result<SdpFlags, NatError> {
        u32::try_from(n).ok().filter(|m| *m < 32).map(SdpFlags).ok_or(NatError::BadMask(n))
    }

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Module parameters `fix_nated_sdp` reads.
#[derive(Clone, Debug)]
pub struct SdpOptions {
    /// `oldip_skip`: no `a=oldcip:` / `a=oldoip:` lines.
    pub oldip_skip: bool,
    /// `nortpproxy_str`: the line `add-no-rtpproxy` adds.
    pub nortpproxy: String,
}

impl Default for SdpOptions {
    fn default() -> Self {
        SdpOptions { oldip_skip: false, nortpproxy: "a=nortpproxy:yes".into() }
    }
}

/// One line of the body: offsets in the message buffer.
#[derive(Clone, Copy, Debug)]
struct Line {
    /// First byte (`v`, `o`, `c`, …).
    start: usize,
    /// End of the content, line break excluded.
    end: usize,
}

/// An address field of a `c=` or `o=` line: the span from `<addrtype>` to the end of the
/// address (a multicast `/ttl` suffix excluded), and the address as written.
#[derive(Clone, Debug)]
struct AddrField {
    span: Span,
    addr: String,
}

/// The body's SDP view: lines, where the session part ends, and where each media part ends.
struct Sdp<'a> {
    body: &'a [u8],
    base: usize,
    lines: Vec<Line>,
    /// Index in `lines` of each `m=` line.
    media: Vec<usize>,
    /// The body's line break (RFC 4566 §5 says CRLF; bare LF is accepted and then kept).
    eol: &'static str,
}

impl<'a> Sdp<'a> {
    /// The SDP body of `msg`: a body whose Content-Type is `application/sdp`, or with no
    /// Content-Type, one that starts with `v=` (RFC 4566 §5: the first line).
    fn of(msg: &'a SipMsg) -> Option<Sdp<'a>> {
        let body = msg.body();
        if body.is_empty() {
            return None;
        }
        match msg.value(&HeaderName::ContentType) {
            Some(ct) => {
                let mime = ct.split(';').next().unwrap_or("").trim();
                if !mime.eq_ignore_ascii_case("application/sdp") {
                    return None;
                }
            }
            None if !body.starts_with(b"v=") => return None,
            None => {}
        }
        let base = msg.body_span().start as usize;
        let mut lines = Vec::new();
        let mut media = Vec::new();
        let mut pos = 0;
        while pos < body.len() {
            let nl = body[pos..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| pos + i);
            let next = (nl + 1).min(body.len());
            let end = if nl > pos && body[nl - 1] == b'\r' { nl - 1 } else { nl };
            if end > pos {
                if body[pos..].starts_with(b"m=") {
                    media.push(lines.len());
                }
                lines.push(Line { start: base + pos, end: base + end });
            }
            pos = next.max(nl + 1);
        }
        let eol = if body.windows(2).any(|w| w == b"\r\n") || !body.contains(&b'\n') { "\r\n" } else { "\n" };
        Some(Sdp { body, base, lines, media, eol })
    }

    fn text(&self, l: &Line) -> &'a str {
        std::str::from_utf8(&self.body[l.start - self.base..l.end - self.base]).unwrap_or("")
    }

    /// Lines of `c=` type (`kind` = `b'c'`) or `o=`, each with the section it is in
    /// (0 = session, k = k-th media section).
    fn lines_of(&self, kind: u8) -> impl Iterator<Item = (usize, &Line)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| {
                let b = &self.body[l.start - self.base..];
                b.len() >= 2 && b[0] == kind && b[1] == b'='
            })
            .map(move |(i, l)| (self.media.iter().take_while(|&&m| m <= i).count(), l))
    }

    /// Where the attributes of section `s` end: the start of the next `m=` line, or the
    /// end of the body. RFC 4566 §5: `a=` lines come last in the session part and in each
    /// media part, so lines added there keep the order the grammar fixes.
    fn section_end(&self, s: usize) -> usize {
        match self.media.get(s) {
            Some(&i) => self.lines[i].start,
            None => self.base + self.body.len(),
        }
    }

    /// The text to insert as a new line at `at`: after a last line with no line break, the
    /// break goes first.
    fn new_line(&self, at: usize, line: &str) -> String {
        let end = self.base + self.body.len();
        if at == end && !self.body.ends_with(b"\n") {
            format!("{}{line}", self.eol)
        } else {
            format!("{line}{}", self.eol)
        }
    }
}

/// The address field of a `c=` (`skip` = 1: after `<nettype>`) or `o=` (`skip` = 4) line.
fn addr_field(sdp: &Sdp<'_>, l: &Line, skip: usize) -> Option<AddrField> {
    let text = sdp.text(l);
    let value = text.get(2..)?;
    // Fields are separated by single spaces (RFC 4566 §5); find the start of each.
    let mut starts = Vec::with_capacity(6);
    let mut prev_space = true;
    for (i, c) in value.char_indices() {
        if c != ' ' && prev_space {
            starts.push(i);
        }
        prev_space = c == ' ';
    }
    let type_at = *starts.get(skip)?;
    let addr_at = *starts.get(skip + 1)?;
    let rest = &value[addr_at..];
    let addr_len = rest.find([' ', '/']).unwrap_or(rest.len());
    let addr = &rest[..addr_len];
    let start = l.start + 2;
    Some(AddrField { span: Span::new(start + type_at, start + addr_at + addr_len), addr: addr.to_string() })
}

/// A connection address of "no media here": RFC 3264 §8.4 notes 0.0.0.0 as the old way to
/// put a stream on hold.
fn is_null(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether some `c=` line of the SDP body holds a private address (the `private-sdp`
/// test).
pub fn sdp_has_private(msg: &SipMsg, cgn: bool) -> bool {
    let Some(sdp) = Sdp::of(msg) else { return false };
    let private = sdp
        .lines_of(b'c')
        .filter_map(|(_, l)| addr_field(&sdp, l, 1))
        .any(|f| f.addr.parse::<IpAddr>().is_ok_and(|ip| super::is_private(ip, cgn)));
    private
}

/// `<addrtype> <address>` for an IP (RFC 4566 §5.7).
fn typed_addr(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("IP4 {v4}"),
        IpAddr::V6(v6) => format!("IP6 {v6}"),
    }
}

/// `fix_nated_sdp` on `msg`'s body with `ip` as the address to write; returns how many
/// edits it made (0: nothing needed fixing). Content-Length follows every body edit.
///
/// What goes where: `c=` and `o=` addresses are replaced in place (with their `IP4`/`IP6`,
/// which follows `ip`); `a=oldcip:` goes at the end of the section whose `c=` changed,
/// `a=oldoip:`, `a=direction:active` and the `nortpproxy_str` line at the end of the
/// session part (RFC 4566 §5 orders attributes last). A `c=` of 0.0.0.0 (hold) is left
/// alone unless `rewrite-null-ips`. A line already there is not added twice.
///
/// # Errors
/// [`NatError::NoSdp`]: no body, or not `application/sdp`.
pub fn fix_sdp(
    msg: &SipMsg,
    edits: &mut Edits,
    flags: SdpFlags,
    ip: IpAddr,
    opts: &SdpOptions,
) -> Result<usize, NatError> {
    let sdp = Sdp::of(msg).ok_or(NatError::NoSdp)?;
    let new_addr = typed_addr(ip);
    let new_ip = ip.to_canonical().to_string();
    let body_text = String::from_utf8_lossy(sdp.body);
    let session_end = sdp.section_end(0);
    let mut n = 0;
    let mut rewrite = |edits: &mut Edits, f: &AddrField| -> bool {
        if f.addr == new_ip || (is_null(&f.addr) && !flags.has(SdpFlags::REWRITE_NULL_IPS)) {
            return false;
        }
        // Another fix already replaced this address: the first one stands.
        if edits.touches(f.span) {
            return false;
        }
        edits.replace(f.span, new_addr.clone());
        n += 1;
        true
    };
    let mut inserts: Vec<(usize, String)> = Vec::new();
    if flags.has(SdpFlags::REWRITE_MEDIA_IP) {
        for (section, l) in sdp.lines_of(b'c') {
            let Some(f) = addr_field(&sdp, l, 1) else { continue };
            if rewrite(edits, &f) && !opts.oldip_skip {
                inserts.push((sdp.section_end(section), format!("a=oldcip:{}", f.addr)));
            }
        }
    }
    if flags.has(SdpFlags::REWRITE_ORIGIN_IP) {
        if let Some(f) = sdp.lines_of(b'o').next().and_then(|(_, l)| addr_field(&sdp, l, 4)) {
            if rewrite(edits, &f) && !opts.oldip_skip {
                inserts.push((session_end, format!("a=oldoip:{}", f.addr)));
            }
        }
    }
    if flags.has(SdpFlags::ADD_DIR_ACTIVE) && !body_text.contains("a=direction:active") {
        inserts.push((session_end, "a=direction:active".into()));
    }
    if flags.has(SdpFlags::ADD_NO_RTPPROXY) && !opts.nortpproxy.is_empty() && !body_text.contains(&opts.nortpproxy) {
        inserts.push((session_end, opts.nortpproxy.clone()));
    }
    for (at, line) in inserts {
        let text = sdp.new_line(at, &line);
        if !edits.ops().iter().any(|e| e.start == e.end && e.start as usize == at && e.text == text) {
            edits.insert(at, text);
            n += 1;
        }
    }
    if n > 0 {
        edits.sync_content_length(msg);
    }
    Ok(n)
}
