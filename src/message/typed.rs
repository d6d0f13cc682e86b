//! Typed views of the headers the proxy reads, decoded on demand from the raw value.

use super::Method;

/// Splits a header value at top-level commas (not inside quotes or `<…>`), yielding trimmed
/// byte ranges relative to `v` (RFC 3261 §7.3.1: a comma-separated list is equivalent to
/// several header lines).
pub fn split_commas(v: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < v.len() {
            let start = pos;
            let (mut quoted, mut angle, mut escaped) = (false, false, false);
            let mut i = pos;
            while i < v.len() {
                let c = v[i];
                if quoted {
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == b'"' {
                        quoted = false;
                    }
                } else {
                    match c {
                        b'"' => quoted = true,
                        b'<' => angle = true,
                        b'>' => angle = false,
                        b',' if !angle => break,
                        _ => {}
                    }
                }
                i += 1;
            }
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

/// Looks up `name` in a `;a=b;c` parameter list. `Some(None)` for a flag parameter.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    for p in params.split(';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, v) = match p.find('=') {
            Some(i) => (p[..i].trim(), Some(p[i + 1..].trim())),
            None => (p, None),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
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
        if host.is_empty() || transport.is_empty() {
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
        let after = &rest[close + 1..];
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
    pub fn parse(v: &'a str) -> Option<NameAddr<'a>> {
        let v = v.trim();
        if let Some(lt) = find_unquoted(v, b'<') {
            let gt = lt + v[lt..].find('>')?;
            let display = v[..lt].trim().trim_matches('"');
            return Some(NameAddr { display, uri: v[lt + 1..gt].trim(), params: v[gt + 1..].trim() });
        }
        // addr-spec form: parameters after the URI belong to the header (RFC 3261 §20.10).
        let semi = v.find(';').unwrap_or(v.len());
        if semi == 0 {
            return None;
        }
        Some(NameAddr { display: "", uri: v[..semi].trim(), params: &v[semi..] })
    }
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

fn find_unquoted(v: &str, what: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &c) in v.as_bytes().iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                quoted = false;
            }
        } else if c == b'"' {
            quoted = true;
        } else if c == what {
            return Some(i);
        }
    }
    None
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
        let number = it.next()?.parse::<u32>().ok()?;
        let method_text = it.next()?;
        if it.next().is_some() {
            return None;
        }
        Some(CSeq { number, method: Method::from_bytes(method_text.as_bytes()), method_text })
    }
}
