//! Typed views of the headers the proxy reads, decoded on demand from the raw value.

use super::parse::{is_token_byte, parse_digits};
use super::Method;

/// The first `sep` at or after `from` that is outside a quoted string (and, when
/// `angle_aware`, outside `<…>`), or the end of `v`.
fn top_level(v: &[u8], from: usize, sep: u8, angle_aware: bool) -> usize {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for (i, &c) in v.iter().enumerate().skip(from) {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                quoted = false;
            }
            continue;
        }
        match c {
            b'"' => quoted = true,
            b'<' if angle_aware => angle = true,
            b'>' if angle_aware => angle = false,
            c if c == sep && !angle => return i,
            _ => {}
        }
    }
    v.len()
}

/// Splits a header value at top-level commas (not inside quotes or `<…>`), yielding trimmed
/// byte ranges relative to `v` (RFC 3261 §7.3.1: a comma-separated list is equivalent to
/// several header lines).
pub fn split_commas(v: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < v.len() {
            let start = pos;
            let i = top_level(v, pos, b',', true);
            pos = i + 1;
            let (mut s, mut e) = (start, i);
            while s < e && v[s].is_ascii_whitespace() {
                s += 1;
            }
            while e > s && v[e - 1].is_ascii_whitespace() {
                e -= 1;
            }
            if s < e {
                return Some(s..e);
            }
        }
        None
    })
}

/// The `;a=b;c` parameters of a list starting at its first `;`, split at `;` outside quoted
/// strings (a quoted value may hold `;`), as trimmed `(name, value)` pairs; `None` for a flag.
pub(crate) fn params_iter(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
    let b = params.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < b.len() {
            let start = pos;
            let i = top_level(b, pos, b';', false);
            pos = i + 1;
            let p = params[start..i].trim();
            if p.is_empty() {
                continue;
            }
            return Some(match p.find('=') {
                Some(e) => (p[..e].trim(), Some(p[e + 1..].trim())),
                None => (p, None),
            });
        }
        None
    })
}

/// Looks up `name` in a `;a=b;c` parameter list. `Some(None)` for a flag parameter.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    params_iter(params).find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// One Via value (RFC 3261 §20.42).
#[derive(Clone, Debug)]
pub struct Via<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    /// Everything after the sent-by, starting at the first `;` (may be empty).
    pub params: &'a str,
}

impl<'a> Via<'a> {
    pub fn parse(v: &'a str) -> Option<Via<'a>> {
        // sent-protocol = name SLASH version SLASH transport, LWS allowed around the slashes.
        let mut parts = v.splitn(3, '/');
        let name = parts.next()?.trim();
        let version = parts.next()?.trim();
        let rest = parts.next()?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        let tend = rest.find(|c: char| c.is_ascii_whitespace())?;
        let transport = &rest[..tend];
        let rest = rest[tend..].trim_start();
        let pstart = rest.find(';').unwrap_or(rest.len());
        let sent_by = rest[..pstart].trim();
        let params = &rest[pstart..];
        let (host, port) = split_host_port(sent_by)?;
        if host.is_empty() || transport.is_empty() || host.contains(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        Some(Via { transport, host, port, params })
    }
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }
    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }
    pub fn received(&self) -> Option<&'a str> {
        self.param("received").flatten()
    }
    /// `Some(None)` for a bare `;rport` (RFC 3581 §3), `Some(Some(p))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }
    /// The port a reply goes to when no `rport` applies (RFC 3261 §18.2.2: the default
    /// port of the transport).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.transport.eq_ignore_ascii_case("TLS") { 5061 } else { 5060 })
    }
}

/// Splits `host[:port]`, with `[v6]` literals.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &s[..close + 2];
        let after = rest[close + 1..].trim_start();
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.trim().parse().ok()?))),
            None if after.trim().is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rfind(':') {
        Some(i) => Some((s[..i].trim(), Some(s[i + 1..].trim().parse().ok()?))),
        None => Some((s, None)),
    }
}

/// A `name-addr` or `addr-spec` with header parameters (From, To, Contact, Route…).
#[derive(Clone, Debug)]
pub struct NameAddr<'a> {
    pub display: &'a str,
    pub uri: &'a str,
    /// Header parameters after the URI (`;tag=…`), starting at `;` (may be empty).
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses `[display-name] <URI> *(;param)` or `URI *(;param)` (RFC 3261 §20.10, §25.1),
    /// rejecting what RFC 4475 §3.1.2 calls malformed: an unterminated quoted string
    /// (§3.1.2.6), white space inside `<…>` (§3.1.2.14), an unquoted display name with
    /// non-token characters (§3.1.2.15), and an addr-spec holding `?` or `,` outside `<…>`
    /// (§3.1.2.13). The URI itself is only checked for its shape (`scheme:` and no white
    /// space): any scheme is accepted here (RFC 4475 §3.3.4).
    pub fn parse(v: &'a str) -> Option<NameAddr<'a>> {
        let v = v.trim();
        let b = v.as_bytes();
        let (display, lt) = if b.first() == Some(&b'"') {
            let close = closing_quote(b)?;
            let after = v[close + 1..].trim_start();
            if !after.starts_with('<') {
                return None;
            }
            (&v[1..close], v.len() - after.len())
        } else if let Some(lt) = v.find('<') {
            let display = v[..lt].trim();
            if !display.split(|c: char| c.is_ascii_whitespace()).all(|w| w.bytes().all(is_token_byte)) {
                return None;
            }
            (display, lt)
        } else {
            // addr-spec form: parameters after the URI belong to the header (RFC 3261 §20.10).
            let semi = v.find(';').unwrap_or(v.len());
            let uri = v[..semi].trim_end();
            if !uri_shape_ok(uri) || uri.contains(['?', ',']) {
                return None;
            }
            return Some(NameAddr { display: "", uri, params: &v[semi..] });
        };
        let gt = lt + v[lt..].find('>')?;
        let uri = &v[lt + 1..gt];
        if !uri_shape_ok(uri) {
            return None;
        }
        let params = v[gt + 1..].trim();
        if !params.is_empty() && !params.starts_with(';') {
            return None;
        }
        Some(NameAddr { display, uri, params })
    }
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

/// Offset of the `"` closing the quoted string that starts at `b[0]`.
fn closing_quote(b: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (i, &c) in b.iter().enumerate().skip(1) {
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            return Some(i);
        }
    }
    None
}

/// `scheme ":" …` with no white space, control bytes, quotes or angle brackets: what any URI
/// looks like, whatever its scheme.
pub(crate) fn uri_shape_ok(u: &str) -> bool {
    let b = u.as_bytes();
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return false;
    };
    colon > 0
        && b[0].is_ascii_alphabetic()
        && b[..colon].iter().all(|&c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        && b.iter().all(|&c| c > b' ' && c != 0x7f && !b"<>\"".contains(&c))
}

/// CSeq (RFC 3261 §20.16).
#[derive(Clone, Debug)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: Method,
    pub method_text: &'a str,
}

impl<'a> CSeq<'a> {
    pub fn parse(v: &'a str) -> Option<CSeq<'a>> {
        let mut it = v.split_ascii_whitespace();
        let number = u32::try_from(parse_digits(it.next()?.as_bytes())?).ok()?;
        let method_text = it.next()?;
        if it.next().is_some() || !method_text.bytes().all(is_token_byte) {
            return None;
        }
        Some(CSeq { number, method: Method::from_bytes(method_text.as_bytes()), method_text })
    }
}

/// Whether `v` is an RFC 1123 date in GMT, as RFC 3261 §20.17 requires of Date (`Sat, 13 Nov
/// 2010 23:29:00 GMT`); white space between the parts may vary (RFC 4475 §3.1.2.12).
pub(crate) fn is_rfc1123_gmt(v: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut it = v.split_ascii_whitespace();
    let (Some(wkday), Some(day), Some(month), Some(year), Some(time), Some(zone), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let mut hms = time.split(':');
    wkday.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(day, 2)
        && MONTHS.contains(&month)
        && digits(year, 4)
        && hms.next().is_some_and(|h| digits(h, 2))
        && hms.next().is_some_and(|m| digits(m, 2))
        && hms.next().is_some_and(|s| digits(s, 2))
        && hms.next().is_none()
        && zone == "GMT"
}
