//! rsip 0.4 behind message/: typed values (URIs, name-addrs, auth headers) decoded on demand
//! from the raw index, for code that wants a full structure rather than the borrowed views of
//! [`NameAddr`] and [`Uri`].
//!
//! Nothing on the relay path calls into this file. rsip 0.4 rejects what a proxy must relay
//! (unknown methods, folded lines, `Via :`, non-UTF-8 bytes, `tel:` URIs; design.md §2) and
//! rewrites header-name case, so it is never the gate a message passes: a decode that rsip
//! refuses is `None` here and the message goes on through message/'s own index.
//!
//! message/'s own reading stays the reference: a value it rejects is not handed to rsip, and
//! a decode that disagrees with it (rsip 0.4 reads the user part of `sip:user;par=x@host` as
//! the host, and drops a `;  tag = x` with white space) is `None` rather than a wrong value.
//! Other limits of rsip 0.4 to know: no IPv6 literal in a URI decodes, and its typed header
//! lookups on a whole [`rsip::SipMessage`] miss compact forms (`i:`, `v:`, …), so read those
//! headers through message/.
//! Other rooms name rsip only through this module (`message::rsip_bridge::rsip`), so it can
//! be patched or replaced in one place.

pub use rsip;

use super::{split_commas, HeaderName, NameAddr, SipMsg, StartLine, Uri};
use rsip::headers::untyped::{ToTypedHeader, UntypedHeader};

/// Runs a decoder, turning an error or a panic inside rsip into `None`: decoding is optional
/// and must never take the caller down.
fn guarded<T>(decode: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).ok().flatten()
}

/// Whether rsip's reading of a SIP/SIPS URI has the user, host and port of ours.
fn agrees(ours: &Uri<'_>, theirs: &rsip::Uri) -> bool {
    let strip = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    strip(ours.host()) == strip(&theirs.host().to_string())
        && ours.user() == theirs.user().unwrap_or("")
        && ours.port().map(|p| p.to_string()) == theirs.port().map(|p| p.to_string())
}

/// A URI as rsip reads it; `None` when rsip refuses it or, for SIP/SIPS, reads its user, host
/// or port differently from [`Uri::parse`].
pub fn typed_uri(text: &str) -> Option<rsip::Uri> {
    let theirs = guarded(|| rsip::Uri::try_from(text).ok())?;
    match Uri::parse(text) {
        Some(ours) if ours.is_sip() => agrees(&ours, &theirs).then_some(theirs),
        Some(_) => Some(theirs),
        None => None,
    }
}

/// The Request-URI of a request, decoded.
pub fn typed_ruri(msg: &SipMsg) -> Option<rsip::Uri> {
    msg.ruri_span().and_then(|s| typed_uri(msg.text(s)))
}

/// Whether rsip's reading of a name-addr has our URI (user, host, port) and tag.
fn name_addr_agrees(ours: &NameAddr<'_>, uri: &rsip::Uri, tag: Option<String>) -> bool {
    let uri_ok = match Uri::parse(ours.uri) {
        Some(u) if u.is_sip() => agrees(&u, uri),
        _ => true,
    };
    uri_ok && ours.tag().map(str::to_string) == tag
}

/// The first From header, decoded (display name, URI, parameters).
pub fn typed_from(msg: &SipMsg) -> Option<rsip::typed::From> {
    let ours = msg.from()?;
    let v = msg.value(&HeaderName::From)?;
    let theirs = guarded(|| rsip::headers::From::new(v).typed().ok())?;
    let tag = theirs.tag().map(|t| t.to_string());
    name_addr_agrees(&ours, &theirs.uri, tag).then_some(theirs)
}

/// The first To header, decoded.
pub fn typed_to(msg: &SipMsg) -> Option<rsip::typed::To> {
    let ours = msg.to()?;
    let v = msg.value(&HeaderName::To)?;
    let theirs = guarded(|| rsip::headers::To::new(v).typed().ok())?;
    let tag = theirs.tag().map(|t| t.to_string());
    name_addr_agrees(&ours, &theirs.uri, tag).then_some(theirs)
}

/// Every Contact value (across lines and commas), decoded; `None` when one of them does not
/// decode or decodes differently (a `*` Contact has no typed form either).
pub fn typed_contacts(msg: &SipMsg) -> Option<Vec<rsip::typed::Contact>> {
    let mut out = Vec::new();
    for h in msg.headers_named(&HeaderName::Contact) {
        let value = msg.slice(h.value);
        for part in split_commas(value) {
            let text = std::str::from_utf8(&value[part]).ok()?;
            let ours = NameAddr::parse(text)?;
            let theirs = guarded(|| rsip::headers::Contact::new(text).typed().ok())?;
            if !name_addr_agrees(&ours, &theirs.uri, ours.tag().map(str::to_string)) {
                return None;
            }
            out.push(theirs);
        }
    }
    Some(out)
}

/// The first `Authorization` (or, with `proxy`, `Proxy-Authorization`) header, decoded;
/// `None` for a scheme rsip does not know (RFC 4475 §3.3.7).
pub fn typed_authorization(msg: &SipMsg, proxy: bool) -> Option<rsip::typed::Authorization> {
    if proxy {
        let v = msg.value(&HeaderName::ProxyAuthorization)?;
        guarded(|| rsip::headers::ProxyAuthorization::new(v).typed().ok().map(|p| p.0))
    } else {
        let v = msg.value(&HeaderName::Authorization)?;
        guarded(|| rsip::headers::Authorization::new(v).typed().ok())
    }
}

/// The whole message as rsip reads it: the bytes the index covers (start line to the end of
/// the body, so a datagram's trailing octets are left out). `None` when rsip refuses it, or
/// reads another method, status, Request-URI, number of header lines or body than ours.
pub fn to_rsip(msg: &SipMsg) -> Option<rsip::SipMessage> {
    use rsip::message::HasHeaders;
    let bytes = &msg.bytes()[msg.start_line_span().start as usize..msg.body_span().end as usize];
    let theirs = guarded(|| rsip::SipMessage::try_from(bytes).ok())?;
    let start_ok = match (msg.start(), &theirs) {
        (StartLine::Request { .. }, rsip::SipMessage::Request(r)) => {
            r.method.to_string() == msg.method_text()
                && match Uri::parse(msg.ruri()) {
                    Some(u) if u.is_sip() => agrees(&u, &r.uri),
                    _ => true,
                }
        }
        (StartLine::Response { code, .. }, rsip::SipMessage::Response(r)) => r.status_code.code() == *code,
        _ => false,
    };
    let same = start_ok && theirs.headers().iter().count() == msg.headers().len() && theirs.body()[..] == *msg.body();
    same.then_some(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Edits, ParseError};
    use bytes::Bytes;
    use rsip::message::HeadersExt;

    macro_rules! corpus {
        ($($name:ident),* $(,)?) => {
            &[$((stringify!($name), include_bytes!(concat!("testdata/torture/", stringify!($name), ".dat")) as &[u8])),*]
        };
    }

    /// The messages a proxy relays: RFC 4475's valid ones and the semantic ones this layer
    /// accepts.
    const RELAYED: &[(&str, &[u8])] = corpus![
        wsinv, intmeth, esc01, escnull, esc02, lwsdisp, longreq, dblreq, semiuri, transports, mpart01, unreason,
        noreason, badbranch, unkscm, novelsc, unksm2, bext01, invut, regaut01, bcast, zeromf, cparam01, cparam02,
        regescrt, sdp01, inv2543,
    ];

    /// What rsip 0.4 does not decode as a whole message, and why.
    const RSIP_REFUSES: &[&str] = &[
        "wsinv",   // folded lines, `Via  :`, LWS around '/'
        "intmeth", // extension method, '?' in the user part
        "esc01",   // folded Contact
        "esc02",   // extension method RE%47IST%45R
        "longreq", // `V :` with space before the colon
        "semiuri", // ';' in the user part read as host, then the line fails
        "unkscm",  // Request-URI of an unknown scheme
    ];

    fn parse(bytes: &'static [u8]) -> SipMsg {
        SipMsg::parse(Bytes::from_static(bytes)).expect("parses")
    }

    #[test]
    fn decodes_the_relayed_messages_it_can() {
        let mut refused = Vec::new();
        for (name, bytes) in RELAYED {
            let m = parse(bytes);
            match to_rsip(&m) {
                None => refused.push(*name),
                Some(r) => {
                    // What rsip read agrees with the index.
                    assert_eq!(r.body()[..], *m.body(), "{name}");
                    // rsip's typed lookups do not know the compact forms (dblreq's `I:`);
                    // where it finds the header, it agrees.
                    if let Ok(c) = r.call_id_header() {
                        assert_eq!(c.value(), m.call_id(), "{name}");
                    }
                    if let Some(ours) = Uri::parse(m.ruri()).filter(|u| u.is_sip()) {
                        assert_eq!(
                            typed_ruri(&m).map(|u| u.host().to_string()).as_deref(),
                            Some(ours.host()),
                            "{name}"
                        );
                    }
                    if let (Some(f), Some(ours)) = (typed_from(&m), m.from()) {
                        assert_eq!(f.tag().map(|t| t.to_string()).as_deref(), ours.tag(), "{name}");
                    }
                }
            }
        }
        assert_eq!(
            refused, RSIP_REFUSES,
            "rsip's limits changed: update the list (and design.md if it now decodes them)"
        );
        assert!(RELAYED.len() - refused.len() >= 20);
    }

    #[test]
    fn the_relay_path_does_not_need_rsip() {
        // Every message rsip refuses is still indexed, checked, edited and printed by message/.
        for name in RSIP_REFUSES {
            let (_, bytes) = RELAYED.iter().find(|(n, _)| n == name).expect("in corpus");
            let m = parse(bytes);
            assert!(to_rsip(&m).is_none(), "{name}");
            assert_eq!(m.check_request(), Ok(()), "{name}");
            assert_eq!(Edits::render(&m, &[]), *bytes, "{name} prints back unchanged");
            // What the proxy does to it: a Via on top, Max-Forwards down by one.
            let mut e = Edits::new();
            e.insert(m.headers()[0].line.start as usize, "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKrelay\r\n");
            if let Some(h) = m.first(&HeaderName::MaxForwards) {
                e.replace(h.value, "9");
            }
            let out = SipMsg::parse(Bytes::from(Edits::render(&m, &[&e]))).expect("relayed copy parses");
            assert_eq!(out.check_request(), Ok(()), "{name}");
            assert_eq!(out.via_count(), m.via_count() + 1, "{name}");
            assert_eq!(out.top_via().and_then(|(_, v)| v.branch()), Some("z9hG4bKrelay"));
            assert_eq!(out.body(), m.body(), "{name}");
        }
    }

    #[test]
    fn wrong_decodes_become_none() {
        // rsip reads the user part of these URIs as the host; message/ knows better.
        for (text, user, host) in [
            ("sip:user;par=u%40example.net@example.com", "user;par=u%40example.net", "example.com"),
            ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com", "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", "example.com"),
        ] {
            let raw = rsip::Uri::try_from(text).expect("rsip decodes it…");
            assert_ne!(raw.host().to_string(), host, "…wrongly");
            assert!(typed_uri(text).is_none(), "{text}");
            let ours = Uri::parse(text).expect("ours");
            assert_eq!((ours.user(), ours.host()), (user, host));
        }
        // wsinv's To: rsip loses the tag written with spaces around '='.
        let (_, bytes) = RELAYED.iter().find(|(n, _)| *n == "wsinv").expect("wsinv");
        let m = parse(bytes);
        let raw = rsip::headers::To::new(m.value(&HeaderName::To).expect("to")).typed().expect("rsip decodes it");
        assert!(raw.tag().is_none());
        assert_eq!(m.to().and_then(|t| t.tag()), Some("1918181833n"));
        assert!(typed_to(&m).is_none());
        // A value message/ rejects is not handed to rsip (quotbal's unterminated quote).
        let quotbal = parse(include_bytes!("testdata/torture/quotbal.dat"));
        assert!(rsip::headers::To::new(quotbal.value(&HeaderName::To).expect("to")).typed().is_ok());
        assert!(typed_to(&quotbal).is_none());
        assert_eq!(quotbal.check_request(), Err(ParseError::BadHeader("To")));
    }

    #[test]
    fn typed_values_on_demand() {
        let u = typed_uri("sip:alice@example.com:5070;transport=tcp").expect("uri");
        assert_eq!(
            (u.user(), u.host().to_string(), u.port().map(|p| p.to_string())),
            (Some("alice"), "example.com".to_string(), Some("5070".to_string()))
        );
        assert_eq!(u.transport(), Some(&rsip::Transport::Tcp));
        // rsip 0.4 reads no IPv6 literal at all; message/'s Uri does.
        assert!(typed_uri("sip:bob@[2001:db8::1]:5060").is_none());
        assert_eq!(
            Uri::parse("sip:bob@[2001:db8::1]:5060").map(|u| (u.host(), u.port())),
            Some(("[2001:db8::1]", Some(5060)))
        );
        assert!(typed_uri("sip:bob@").is_none());

        let raw: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKr1\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n\
Contact: <sip:alice@192.0.2.4>;expires=60, <sip:alice@198.51.100.4;transport=tcp>\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"abc\", uri=\"sip:example.com\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n\
Content-Length: 0\r\n\r\n";
        let m = parse(raw);
        let from = typed_from(&m).expect("from");
        assert_eq!(from.display_name.as_deref(), Some("\"Alice\""));
        assert_eq!(from.tag().map(|t| t.to_string()), Some("a1".to_string()));
        assert!(typed_to(&m).expect("to").tag().is_none());
        let contacts = typed_contacts(&m).expect("contacts");
        assert_eq!(contacts.len(), 2);
        assert_eq!(contacts[0].expires().map(|e| e.to_string()), Some("60".to_string()));
        let auth = typed_authorization(&m, false).expect("digest");
        assert_eq!((auth.username.as_str(), auth.realm.as_str(), auth.nonce.as_str()), ("alice", "example.com", "abc"));
        assert!(typed_authorization(&m, true).is_none(), "no Proxy-Authorization");
        let r = to_rsip(&m).expect("whole message");
        assert!(r.is_request());
        // RFC 4475 §3.3.7: an unknown scheme does not decode; the header is still relayed.
        let regaut = parse(include_bytes!("testdata/torture/regaut01.dat"));
        assert!(typed_authorization(&regaut, false).is_none());
        assert_eq!(regaut.value(&HeaderName::Authorization), Some("NoOneKnowsThisScheme opaque-data=here"));
        // A `*` Contact has no typed form.
        let star =
            parse(b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContact: *\r\n\r\n");
        assert!(typed_contacts(&star).is_none());
    }
}
