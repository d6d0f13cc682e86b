//! nathelper: detecting user agents behind NAT and fixing what they wrote about themselves
//! (spec §9, docs/nathelper.md).
//!
//! A UA behind a NAT writes its private address into Via, Contact and SDP. The proxy sees
//! the NAT's public binding as the source of the packet, so the tests here compare what the
//! message says with where it came from, and the fixes write the source address in (as
//! lumps: later reads still see the received values, spec §1.6).
//!
//! Owns: the NAT tests, the Contact / SDP / Path rewrites, the received URI. Does not own:
//! keep-alive pinging and the registrar (they read [`crate::config::NathelperConfig`] too).
//!
//! # Parameters (`[nathelper]`, OpenSIPS modparam names)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `received_avp` | `"rcv"` | AVP `fix_nated_register` stores the received URI in (`"$avp(rcv)"` also accepted) |
//! | `oldip_skip` | `false` | `fix_nated_sdp` writes no `a=oldcip:` / `a=oldoip:` lines |
//! | `nortpproxy_str` | `"a=nortpproxy:yes"` | the line `add-no-rtpproxy` adds |
//! | `natping_interval` | `0` | keep-alive period, seconds; 0 = no pings |
//! | `ping_nated_only` | `true` | ping only contacts with the NAT branch flag |
//! | `sipping_bflag` | none | contacts with this branch flag get SIP pings, the others a 4-byte UDP keep-alive |
//! | `sipping_method` | `"OPTIONS"` | method of SIP pings |
//! | `sipping_from` | none | From URI of SIP pings (required for SIP pings) |
//! | `natping_tcp` | `false` | also ping TCP contacts |
//! | `max_pings_lost` | `3` | unanswered SIP pings before a contact counts as dead |
//! | `remove_on_timeout_bflag` | none | contacts with this branch flag are removed once dead |
//! | `ping_threshold` | `3` | seconds a SIP ping waits for its reply |
//!
//! # Script functions (script.rs)
//!
//! `nat_uac_test(tests)` → bool; `fix_nated_contact([uri_params])`, `fix_nated_register()`,
//! `add_rcv_param([flag])`, `fix_nated_sdp(flags[, ip])`, `add_path([user])`,
//! `add_path_received([user])` → 1 / -1.
//!
//! # Deliberate differences
//!
//! `nat_uac_test` and `fix_nated_sdp` take the old numeric masks (`19`, `"19"`) beside the
//! 3.x names; OpenSIPS 3.x refuses numbers at start-up, siprox keeps old scripts working.

pub mod script;
mod sdp;
#[cfg(test)]
mod tests;

pub use sdp::{fix_sdp, sdp_has_private, SdpFlags, SdpOptions};

use crate::message::{Edits, HeaderName, Host, NameAddr, SipMsg, Span, Uri};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What the nathelper functions refuse: bad arguments (a script error) and messages that
/// have nothing to fix (the function returns -1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    #[error("unknown test {0:?}")]
    UnknownTest(String),
    #[error("unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("mask {0} out of range")]
    BadMask(i64),
    #[error("{0:?} is not an IP address")]
    BadIp(String),
    #[error("no Contact URI")]
    NoContact,
    #[error("the Contact URI is not a SIP URI")]
    BadContact,
    #[error("not a REGISTER")]
    NotRegister,
    #[error("no SDP body")]
    NoSdp,
}

/// The tests of `nat_uac_test`, as the old bit mask (spec §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tests(pub u32);

impl Tests {
    pub const PRIVATE_CONTACT: u32 = 1;
    pub const DIFF_IP_SRC_VIA: u32 = 2;
    pub const PRIVATE_VIA: u32 = 4;
    pub const PRIVATE_SDP: u32 = 8;
    pub const DIFF_PORT_SRC_VIA: u32 = 16;
    pub const DIFF_IP_SRC_CONTACT: u32 = 32;
    pub const DIFF_PORT_SRC_CONTACT: u32 = 64;
    pub const CARRIER_GRADE_NAT: u32 = 128;

    const NAMES: [(&'static str, u32); 8] = [
        ("private-contact", Tests::PRIVATE_CONTACT),
        ("diff-ip-src-via", Tests::DIFF_IP_SRC_VIA),
        ("private-via", Tests::PRIVATE_VIA),
        ("private-sdp", Tests::PRIVATE_SDP),
        ("diff-port-src-via", Tests::DIFF_PORT_SRC_VIA),
        ("diff-ip-src-contact", Tests::DIFF_IP_SRC_CONTACT),
        ("diff-port-src-contact", Tests::DIFF_PORT_SRC_CONTACT),
        ("carrier-grade-nat", Tests::CARRIER_GRADE_NAT),
    ];

    /// Reads 3.x names (`"private-contact,diff-port-src-via"`) or an old mask written as
    /// text (`"19"`).
    ///
    /// # Errors
    /// An unknown name, or a mask with bits above 128.
    pub fn parse(spec: &str) -> Result<Tests, NatError> {
        let spec = spec.trim();
        if let Ok(n) = spec.parse::<i64>() {
            return Tests::from_mask(n);
        }
        parse_names(spec, &Tests::NAMES, NatError::UnknownTest).map(Tests)
    }

    /// # Errors
    /// A mask below 0 or with bits above 128.
    pub fn from_mask(n: i64) -> Result<Tests, NatError> {
        u32::try_from(n).ok().filter(|m| *m < 256).map(Tests).ok_or(NatError::BadMask(n))
    }

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// `a,b,c` against a name table, OR-ing the bits.
fn parse_names(spec: &str, table: &[(&str, u32)], unknown: fn(String) -> NatError) -> Result<u32, NatError> {
    let mut bits = 0;
    for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let bit = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, b)| *b);
        bits |= bit.ok_or_else(|| unknown(name.to_string()))?;
    }
    Ok(bits)
}

/// Whether `ip` is an address a NAT hands out: RFC 1918 §3 (10/8, 172.16/12, 192.168/16),
/// RFC 6598 §7 shared address space (100.64/10), and with `cgn` also RFC 6333 §5.7's DS-Lite
/// B4/AFTR range (192.0.0.0/29). IPv6 addresses never count: there is no NAT to detect.
pub fn is_private(ip: IpAddr, cgn: bool) -> bool {
    let IpAddr::V4(v4) = ip.to_canonical() else { return false };
    let in_net = |net: Ipv4Addr, bits: u32| (u32::from(v4) ^ u32::from(net)) >> (32 - bits) == 0;
    in_net(Ipv4Addr::new(10, 0, 0, 0), 8)
        || in_net(Ipv4Addr::new(172, 16, 0, 0), 12)
        || in_net(Ipv4Addr::new(192, 168, 0, 0), 16)
        || in_net(Ipv4Addr::new(100, 64, 0, 0), 10)
        || (cgn && in_net(Ipv4Addr::new(192, 0, 0, 0), 29))
}

/// The IP of a host as written (`[v6]` included); `None` for a name.
fn host_ip(host: &str) -> Option<IpAddr> {
    match Host::parse(host) {
        Host::Ip(ip) => Some(ip.to_canonical()),
        Host::Name(_) => None,
    }
}

/// An address as a URI host: IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`).
pub fn uri_host(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The first Contact value: its span, the span of its URI, and whether the URI sits in
/// `<…>`. `None` for no Contact or `*`.
fn first_contact(msg: &SipMsg) -> Option<(Span, Span, bool)> {
    let (span, text) = msg.values(&HeaderName::Contact).into_iter().next()?;
    contact_spans(span, text)
}

/// Every Contact value's spans (see [`first_contact`]).
fn all_contacts(msg: &SipMsg) -> Vec<(Span, Span, bool)> {
    msg.values(&HeaderName::Contact).into_iter().filter_map(|(s, t)| contact_spans(s, t)).collect()
}

fn contact_spans(span: Span, text: &str) -> Option<(Span, Span, bool)> {
    if text.trim() == "*" {
        return None;
    }
    let na = NameAddr::parse(text)?;
    // The URI is a slice of `text`, so its offset is the distance between the two.
    let off = (na.uri.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let bracketed = off > 0 && text.as_bytes().get(off - 1) == Some(&b'<');
    let start = span.start as usize + off;
    Some((span, Span::new(start, start + na.uri.len()), bracketed))
}

/// Runs the selected tests (spec §9); true when any matches. The Via port defaults to 5060
/// when absent (RFC 3261 §18.1.1), a Contact port to 5060 (5061 for `sips:`, §19.1.2).
pub fn nat_uac_test(msg: &SipMsg, src: SocketAddr, tests: Tests) -> bool {
    let cgn = tests.has(Tests::CARRIER_GRADE_NAT);
    let src_ip = src.ip().to_canonical();
    let via = msg.top_via().map(|(_, v)| (host_ip(v.host), v.port.unwrap_or(5060)));
    let contact = first_contact(msg).and_then(|(_, u, _)| {
        let uri = Uri::parse(msg.text(u)).filter(Uri::is_sip)?;
        let default = if uri.scheme.eq_ignore_ascii_case("sips") { 5061 } else { 5060 };
        Some((host_ip(uri.host()), uri.port().unwrap_or(default)))
    });
    let private = |ip: Option<IpAddr>| ip.is_some_and(|ip| is_private(ip, cgn));
    (tests.has(Tests::PRIVATE_CONTACT) && contact.is_some_and(|(ip, _)| private(ip)))
        // RFC 3581 §4: a sent-by that is not the source address is what `received` marks;
        // a host name never equals an address.
        || (tests.has(Tests::DIFF_IP_SRC_VIA) && via.is_some_and(|(ip, _)| ip != Some(src_ip)))
        || (tests.has(Tests::PRIVATE_VIA) && via.is_some_and(|(ip, _)| private(ip)))
        || (tests.has(Tests::PRIVATE_SDP) && sdp_has_private(msg, cgn))
        || (tests.has(Tests::DIFF_PORT_SRC_VIA) && via.is_some_and(|(_, p)| p != src.port()))
        || (tests.has(Tests::DIFF_IP_SRC_CONTACT) && contact.is_some_and(|(ip, _)| ip != Some(src_ip)))
        || (tests.has(Tests::DIFF_PORT_SRC_CONTACT) && contact.is_some_and(|(_, p)| p != src.port()))
}

/// `;a=b` with its leading `;` (added when missing); `""` stays empty.
fn normalise_params(p: &str) -> String {
    let p = p.trim();
    if p.is_empty() || p.starts_with(';') {
        p.to_string()
    } else {
        format!(";{p}")
    }
}

/// `fix_nated_contact`: the first Contact URI gets the source address as its host:port,
/// and `uri_params` after its own parameters. An addr-spec Contact that gains parameters is
/// put in `<…>`, since parameters after a bare URI belong to the header (RFC 3261 §20.10).
/// A second call replaces the first one's edit.
///
/// # Errors
/// [`NatError::NoContact`] (none, or `*`), [`NatError::BadContact`] (not a SIP URI).
pub fn fix_contact(msg: &SipMsg, edits: &mut Edits, src: SocketAddr, uri_params: &str) -> Result<(), NatError> {
    let (_, uri_span, bracketed) = first_contact(msg).ok_or(NatError::NoContact)?;
    let uri = Uri::parse(msg.text(uri_span)).filter(Uri::is_sip).ok_or(NatError::BadContact)?;
    let hostport = format!("{}:{}", uri_host(src.ip()), src.port());
    let text = uri.text;
    let hp = uri.hostport();
    let hp_off = hp.as_ptr() as usize - text.as_ptr() as usize;
    let tail = &text[hp_off + hp.len()..];
    let params_end = tail.len() - uri.headers().len();
    let extra = normalise_params(uri_params);
    let mut new = String::with_capacity(text.len() + extra.len() + 2);
    let wrap = !bracketed && !extra.is_empty();
    if wrap {
        new.push('<');
    }
    new.push_str(&text[..hp_off]);
    new.push_str(&hostport);
    new.push_str(&tail[..params_end]);
    new.push_str(&extra);
    new.push_str(&tail[params_end..]);
    if wrap {
        new.push('>');
    }
    edits.retain(|e| !(e.start == uri_span.start && e.end == uri_span.end));
    edits.replace(uri_span, new);
    Ok(())
}

/// `sip:<ip>:<port>[;transport=<proto>]`: where the UA is reached through its NAT (the
/// `received` of a registration). The transport is written only when it is not UDP, the
/// default of a SIP URI (RFC 3261 §19.1.2).
pub fn received_uri(src: SocketAddr, proto: &str) -> String {
    let mut s = format!("sip:{}:{}", uri_host(src.ip()), src.port());
    if !proto.eq_ignore_ascii_case("udp") {
        s.push_str(";transport=");
        s.push_str(&proto.to_ascii_lowercase());
    }
    s
}

/// Escapes what may not stand in a URI parameter value (RFC 3261 §25.1 `paramchar`: no
/// `;`, `=`, `?`, `<`, `>`, `"`, space, `%` itself).
fn escape_param(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            ';' | '=' | '?' | '<' | '>' | '"' | ' ' | '%' | ',' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `add_rcv_param`: every Contact gets `;received="<received uri>"` as a header parameter,
/// or with `as_uri_param` the escaped URI as a parameter of the Contact URI (an addr-spec
/// is then put in `<…>`). Returns how many Contacts got one.
///
/// # Errors
/// [`NatError::NoContact`] when no Contact (or only `*`).
pub fn add_rcv_param(
    msg: &SipMsg,
    edits: &mut Edits,
    src: SocketAddr,
    proto: &str,
    as_uri_param: bool,
) -> Result<usize, NatError> {
    let rcv = received_uri(src, proto);
    let contacts = all_contacts(msg);
    if contacts.is_empty() {
        return Err(NatError::NoContact);
    }
    for (value, uri_span, bracketed) in &contacts {
        if !as_uri_param {
            edits.insert(value.end as usize, format!(";received=\"{rcv}\""));
            continue;
        }
        let text = msg.text(*uri_span);
        let hdrs = Uri::parse(text).map_or(0, |u| u.headers().len());
        let at = uri_span.end as usize - hdrs;
        let param = format!(";received={}", escape_param(&rcv));
        if *bracketed {
            edits.insert(at, param);
        } else {
            edits.insert(uri_span.start as usize, "<");
            edits.insert(at, format!("{param}>"));
        }
    }
    Ok(contacts.len())
}

/// The Path header an edge proxy adds to a REGISTER (RFC 3327 §5.1): its own address, `lr`,
/// and with `received` the UA's NAT binding, escaped, for a registrar using `path-received`
/// (spec §8.3). The transport is the one the REGISTER came on, written when not UDP.
pub fn path_line(local: SocketAddr, proto: &str, user: Option<&str>, received: Option<&str>) -> String {
    let mut s = String::from("Path: <sip:");
    if let Some(u) = user.filter(|u| !u.is_empty()) {
        s.push_str(u);
        s.push('@');
    }
    s.push_str(&format!("{}:{}", uri_host(local.ip()), local.port()));
    if !proto.eq_ignore_ascii_case("udp") {
        s.push_str(";transport=");
        s.push_str(&proto.to_ascii_lowercase());
    }
    s.push_str(";lr");
    if let Some(r) = received {
        s.push_str(";received=");
        s.push_str(&escape_param(r));
    }
    s.push_str(">\r\n");
    s
}

/// `add_path` / `add_path_received`: inserts our Path line above any Path received, so ours
/// is the first value (RFC 3327 §5.1).
///
/// # Errors
/// [`NatError::NotRegister`]: Path belongs to registrations only.
pub fn add_path(
    msg: &SipMsg,
    edits: &mut Edits,
    local: SocketAddr,
    src: SocketAddr,
    proto: &str,
    user: Option<&str>,
    with_received: bool,
) -> Result<(), NatError> {
    if !msg.is_request() || !msg.method().matches("REGISTER") {
        return Err(NatError::NotRegister);
    }
    let rcv = with_received.then(|| received_uri(src, proto));
    let at = msg.first(&HeaderName::Path).map_or(msg.headers_end(), |h| h.line.start as usize);
    edits.insert(at, path_line(local, proto, user, rcv.as_deref()));
    Ok(())
}
