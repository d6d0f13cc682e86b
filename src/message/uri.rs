//! SIP/SIPS URIs (RFC 3261 §19.1) and any other scheme (tel:, urn:, …) as opaque text.
//! Parts are kept as ranges so a rewrite of one part leaves the rest as written.

use super::typed::find_param;
use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;

#[derive(Clone, Debug)]
pub struct Uri<'a> {
    pub text: &'a str,
    pub scheme: &'a str,
    user: Option<Range<usize>>,
    host: Range<usize>,
    port: Option<Range<usize>>,
    /// `;a=b` parameters, starting at the first `;` (may be empty).
    params: Range<usize>,
    /// `?h=v` headers, starting at `?` (may be empty).
    headers: Range<usize>,
}

/// A host that is an IP literal or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

impl<'a> Host<'a> {
    pub fn parse(h: &'a str) -> Host<'a> {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(h),
        }
    }
}

impl<'a> Uri<'a> {
    /// Parses a URI. Schemes other than sip/sips parse with the whole rest as "user"
    /// (a tel: number) and an empty host.
    pub fn parse(text: &'a str) -> Option<Uri<'a>> {
        let colon = text.find(':')?;
        let scheme = &text[..colon];
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return None;
        }
        let rest_start = colon + 1;
        let is_sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
        if !is_sip {
            let end = text[rest_start..].find(';').map(|i| i + rest_start).unwrap_or(text.len());
            return Some(Uri {
                text,
                scheme,
                user: Some(rest_start..end),
                host: end..end,
                port: None,
                params: end..text.len(),
                headers: text.len()..text.len(),
            });
        }
        // userinfo ends at the first '@': '@' appears nowhere else in a SIP URI (RFC 3261
        // §25.1: not in user, password, params or headers), while the user part may hold
        // unescaped ';', '?', '/' and ',' (RFC 4475 §3.1.1.2 intmeth, §3.1.1.9 semiuri).
        let at = text[rest_start..].find('@').map(|i| i + rest_start);
        let (user, hostport_start) = match at {
            Some(at) => (Some(rest_start..at), at + 1),
            None => (None, rest_start),
        };
        let hdr_start = text[hostport_start..].find('?').map(|i| i + hostport_start).unwrap_or(text.len());
        let params_start = text[hostport_start..hdr_start].find(';').map(|i| i + hostport_start).unwrap_or(hdr_start);
        let hp = &text[hostport_start..params_start];
        let (host, port) = if hp.starts_with('[') {
            let close = hp.find(']')? + hostport_start;
            let port = text[close + 1..params_start].strip_prefix(':').map(|_| close + 2..params_start);
            (hostport_start..close + 1, port)
        } else {
            match hp.rfind(':') {
                Some(i) => (hostport_start..hostport_start + i, Some(hostport_start + i + 1..params_start)),
                None => (hostport_start..params_start, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        if let Some(p) = &port {
            text[p.clone()].parse::<u16>().ok()?;
        }
        Some(Uri { text, scheme, user, host, port, params: params_start..hdr_start, headers: hdr_start..text.len() })
    }

    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }
    /// The user part, password excluded.
    pub fn user(&self) -> &'a str {
        match &self.user {
            Some(r) => {
                let u = &self.text[r.clone()];
                if self.is_sip() {
                    u.split(':').next().unwrap_or(u)
                } else {
                    u
                }
            }
            None => "",
        }
    }
    pub fn host(&self) -> &'a str {
        &self.text[self.host.clone()]
    }
    pub fn port(&self) -> Option<u16> {
        self.port.as_ref().and_then(|p| self.text[p.clone()].parse().ok())
    }
    pub fn port_text(&self) -> &'a str {
        self.port.as_ref().map(|p| &self.text[p.clone()]).unwrap_or("")
    }
    pub fn params(&self) -> &'a str {
        &self.text[self.params.clone()]
    }
    pub fn headers(&self) -> &'a str {
        &self.text[self.headers.clone()]
    }
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params(), name)
    }
    /// The `transport` parameter, lower case (`udp` when absent, RFC 3261 §19.1.1).
    pub fn transport(&self) -> String {
        match self.param("transport").flatten() {
            Some(t) => t.to_ascii_lowercase(),
            None if self.scheme.eq_ignore_ascii_case("sips") => "tls".into(),
            None => "udp".into(),
        }
    }
    /// Whether this URI says `;lr` (a loose router, RFC 3261 §19.1.1).
    pub fn is_loose(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The URI with its user part replaced (`""` removes it).
    pub fn with_user(&self, user: &str) -> String {
        let t = self.text;
        let start = self.scheme.len() + 1;
        let host_start = self.host.start;
        let mut s = String::with_capacity(t.len() + user.len());
        s.push_str(&t[..start]);
        if !user.is_empty() {
            s.push_str(user);
            // Keep a password if one was there.
            if let Some(r) = &self.user {
                if let Some(i) = t[r.clone()].find(':') {
                    s.push_str(&t[r.start + i..r.end]);
                }
            }
            s.push('@');
        }
        s.push_str(&t[host_start..]);
        s
    }
    pub fn with_host(&self, host: &str) -> String {
        let t = self.text;
        format!("{}{}{}", &t[..self.host.start], host, &t[self.host.end..])
    }
    /// The URI with its port replaced (`None` removes it).
    pub fn with_port(&self, port: Option<u16>) -> String {
        let t = self.text;
        let tail_start = self.port.as_ref().map(|p| p.end).unwrap_or(self.host.end);
        let mut s = String::with_capacity(t.len() + 6);
        s.push_str(&t[..self.host.end]);
        if let Some(p) = port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s.push_str(&t[tail_start..]);
        s
    }
    /// Host and port as `host:port` (port only when present).
    pub fn hostport(&self) -> &'a str {
        let end = self.port.as_ref().map(|p| p.end).unwrap_or(self.host.end);
        &self.text[self.host.start..end]
    }
}

/// Undoes `%XX` escapes (RFC 3261 §19.1.2), for comparing URI parts (§19.1.4): what is
/// relayed keeps the escapes as written. A `%` not followed by two hex digits stays as it is
/// (RFC 4475 §3.1.1.5). Borrows when there is nothing to undo.
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}
