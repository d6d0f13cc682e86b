//! Unit tests: round trips and the edge cases of the index, typed access, edits, framing and
//! the messages built here. The RFC 4475 corpus has its own module (torture_tests.rs).

use super::*;
use bytes::Bytes;

const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKdef , SIP/2.0/UDP h3;branch=z9hG4bK3\r\n\
Max-Forwards: 70\r\n\
f: \"Alice, A\" <sip:alice@example.com>;tag=1928\r\n\
To: <sip:bob@example.com>\r\n\
i: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
X-Folded: one,\r\n two\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\nEXTRA";

/// INVITE's bytes without the datagram's trailing octets past Content-Length.
fn invite_kept() -> &'static [u8] {
    &INVITE[..INVITE.len() - b"EXTRA".len()]
}

fn msg(b: &'static [u8]) -> SipMsg {
    SipMsg::parse(Bytes::from_static(b)).expect("parses")
}

fn msg_owned(b: impl Into<Vec<u8>>) -> SipMsg {
    SipMsg::parse(Bytes::from(b.into())).expect("parses")
}

fn render(m: &SipMsg, layers: &[&Edits]) -> String {
    String::from_utf8(Edits::render(m, layers)).expect("utf8")
}

/// A minimal valid request with `extra` header lines (each ending in CRLF) before the empty line.
fn request_with(extra: &str) -> String {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

// ---- indexing and typed access ----

#[test]
fn indexes_request_and_compact_forms() {
    let m = msg(INVITE);
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.ruri(), "sip:bob@example.com");
    assert_eq!(m.call_id(), "a84b4c76e66710");
    assert_eq!(m.cseq().map(|c| c.number), Some(314159));
    assert_eq!(m.from().and_then(|f| f.tag()), Some("1928"));
    assert_eq!(m.from().map(|f| f.display), Some("Alice, A"));
    assert!(!m.has_to_tag());
    assert_eq!(m.via_count(), 3);
    let (_, v) = m.top_via().expect("via");
    assert_eq!((v.host, v.port, v.branch()), ("10.0.0.1", Some(5060), Some("z9hG4bKabc")));
    assert_eq!(v.rport(), Some(None));
    let vias = m.values(&HeaderName::Via);
    let second = Via::parse(vias[1].1).expect("v6 via");
    assert_eq!((second.host, second.port, second.transport), ("[2001:db8::1]", Some(5070), "TCP"));
    assert_eq!(m.body(), b"v=0\n", "bytes past Content-Length are dropped");
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    let folded = m.headers_by_text("x-folded").next().expect("folded header");
    assert_eq!(m.text(folded.value), "one,\r\n two");
    assert_eq!(m.check_request(), Ok(()));
}

#[test]
fn every_compact_form_in_any_case() {
    let raw = "MESSAGE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
F: <sip:alice@example.com>;tag=a\r\n\
t: <sip:bob@example.com>\r\n\
I: call-1\r\n\
CSeq: 2 MESSAGE\r\n\
m: <sip:alice@192.0.2.1>\r\n\
C: text/plain\r\n\
k: path, gruu\r\n\
L: 5\r\n\
\r\nhello";
    let m = msg_owned(raw);
    let names: Vec<HeaderName> = m.headers().iter().map(|h| h.name).collect();
    use HeaderName::*;
    assert_eq!(names, [Via, From, To, CallId, CSeq, Contact, ContentType, Supported, ContentLength]);
    assert_eq!(m.from().and_then(|f| f.tag()), Some("a"));
    assert_eq!(m.to().map(|t| t.uri), Some("sip:bob@example.com"));
    assert_eq!(m.call_id(), "call-1");
    assert_eq!(m.value(&ContentType), Some("text/plain"));
    assert_eq!(m.values(&Supported).into_iter().map(|(_, v)| v).collect::<Vec<_>>(), ["path", "gruu"]);
    assert_eq!(m.content_length(), Some(5));
    assert_eq!(m.body(), b"hello");
    assert_eq!(m.check_request(), Ok(()));
    // The compact names are printed back as written.
    assert_eq!(render(&m, &[]), raw);
    // Single letters that are no compact form the proxy knows stay unknown.
    assert_eq!(HeaderName::from_bytes(b"s"), HeaderName::Other);
    assert_eq!(HeaderName::from_bytes(b"x"), HeaderName::Other);
}

#[test]
fn header_names_in_any_case() {
    let raw = "OPTIONS sip:bob@example.com SIP/2.0\r\nvIA: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFROM: <sip:a@b>;tag=1\r\n\
tO: <sip:c@d>\r\nCALL-id: x\r\ncSeQ: 1 OPTIONS\r\nmax-FORWARDS: 5\r\nCONTENT-length: 0\r\nrEcOrD-rOuTe: <sip:p;lr>\r\n\r\n";
    let m = msg_owned(raw);
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(m.max_forwards(), Some(Ok(5)));
    assert_eq!(m.values(&HeaderName::RecordRoute).len(), 1);
    assert_eq!(m.headers_by_text("Record-Route").count(), 1);
    assert_eq!(m.headers_by_text("CSEQ").count(), 1);
    assert_eq!(m.text(m.first(&HeaderName::CSeq).expect("cseq").name_span), "cSeQ");
    assert_eq!(render(&m, &[]), raw);
}

#[test]
fn folded_lines() {
    let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP\r\n 192.0.2.1\r\n\t;branch=z9hG4bK1\r\n\
From:\r\n <sip:alice@example.com>\r\n ;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c\r\n\
CSeq: 1\r\n INVITE\r\n\
Content-Length:\r\n 2\r\n\
\r\nok";
    let m = msg_owned(raw);
    assert_eq!(m.headers().len(), 6, "continuation lines belong to their header");
    let (_, via) = m.top_via().expect("via");
    assert_eq!((via.host, via.branch()), ("192.0.2.1", Some("z9hG4bK1")));
    assert_eq!(m.from().and_then(|f| f.tag()), Some("a"));
    assert_eq!(m.cseq().map(|c| c.method), Some(Method::Invite));
    assert_eq!(m.body(), b"ok");
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(render(&m, &[]), raw);
    // The header's line covers the continuation lines: deleting it deletes them all.
    let mut e = Edits::new();
    e.delete(m.first(&HeaderName::From).expect("from").line);
    assert!(!render(&m, &[&e]).contains("tag=a"));
    // Stream framing reads a folded Content-Length the same way.
    assert_eq!(frame_stream(raw.as_bytes()), Ok(Some(raw.len())));
    // A line starting with white space right after the start line folds onto nothing.
    let bad = "OPTIONS sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n";
    assert!(matches!(SipMsg::parse(Bytes::from(bad)), Err(ParseError::HeaderLine(_))));
}

#[test]
fn bare_lf_line_ends_are_tolerated() {
    let raw = "OPTIONS sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\n\
To: <sip:c@d>\nCall-ID: x\nCSeq: 1 OPTIONS\nContent-Length: 2\n\nhi";
    let m = msg_owned(raw);
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(m.call_id(), "x");
    assert_eq!(m.body(), b"hi");
    assert_eq!(render(&m, &[]), raw);
    assert_eq!(frame_stream(raw.as_bytes()), Ok(Some(raw.len())));
}

#[test]
fn unknown_method_and_header_case_are_kept() {
    let raw: &[u8] = b"NEWMETHOD sip:x@y SIP/2.0\r\nvIa: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTO: <sip:x@y>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 NEWMETHOD\r\nX-Custom-THING: Some Value\r\n\r\n";
    let m = msg(raw);
    assert_eq!(m.method(), Method::Other("NEWMETHOD".into()));
    assert!(m.method().matches("newmethod"));
    assert_eq!(m.method_text(), "NEWMETHOD");
    assert!(m.top_via().is_some());
    assert!(m.to().is_some());
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(m.headers_by_text("x-custom-thing").map(|h| m.text(h.value)).collect::<Vec<_>>(), ["Some Value"]);
    assert_eq!(Edits::render(&m, &[]), raw);
    // Methods are case-sensitive: "invite" is an extension method (RFC 3261 §7.1).
    let lower = msg(b"invite sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert_eq!(lower.method(), Method::Other("invite".into()));
    assert_ne!(lower.method(), Method::Invite);
}

#[test]
fn reply_start_lines() {
    let m = msg(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\n\r\n");
    assert_eq!((m.status(), m.reason(), m.method()), (Some(180), "Ringing", Method::Invite));
    assert_eq!(m.method_text(), "INVITE");
    assert!(m.has_to_tag());
    assert_eq!(m.check_reply(), Ok(()));
    assert_eq!(msg(b"SIP/2.0 200\r\n\r\n").reason(), "", "no reason phrase at all");
    assert_eq!(msg(b"sip/2.0 200 OK\r\n\r\n").status(), Some(200), "the version is case-insensitive");
    assert_eq!(SipMsg::parse(Bytes::from_static(b"SIP/3.0 200 OK\r\n\r\n")).err(), Some(ParseError::Version));
    // A reply missing what matching needs is dropped.
    let bare = msg(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert_eq!(bare.check_reply(), Err(ParseError::Missing("From")));
    assert_eq!(bare.check_request(), Ok(()), "check_request leaves replies alone");
}

#[test]
fn start_line_shapes() {
    let bad: &[&[u8]] = &[
        b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b\r\n\r\n",
        b"INVITE <sip:a@b> SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b;x=\"y\" SIP/2.0\r\n\r\n",
        b"INV@TE sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE a@b SIP/2.0\r\n\r\n",
        b"INVITE 1sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a\x01b@c SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b HTTP/1.1\r\n\r\n",
    ];
    for raw in bad {
        assert_eq!(
            SipMsg::parse(Bytes::from_static(raw)).err(),
            Some(ParseError::StartLine),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(SipMsg::parse(Bytes::from_static(b"INVITE sip:a@b SIP/2.1\r\n\r\n")).err(), Some(ParseError::Version));
    assert_eq!(msg(b"INVITE sip:a@b sip/2.0\r\n\r\n").method(), Method::Invite);
    // Keep-alive CRLFs before the start line are skipped and not printed back.
    let m = msg(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(m.method(), Method::Options);
    assert_eq!(Edits::render(&m, &[]), b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn ipv6_via_and_uris() {
    let raw = "OPTIONS sip:bob@[2001:db8::10]:5070;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/TCP [2001:db8::1]:5060;received=[2001:db8::99];rport=40000;branch=z9hG4bK6\r\n\
Via: SIP/2.0/UDP [::1];branch=z9hG4bK5\r\n\
Via: SIP/2.0/UDP [2001:db8::2] : 5062 ;branch=z9hG4bK4\r\n\
From: <sip:alice@[2001:db8::1]>;tag=1\r\nTo: <sips:bob@[2001:db8::10]:5071>\r\nCall-ID: v6\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = msg_owned(raw);
    assert_eq!(m.check_request(), Ok(()));
    let (_, top) = m.top_via().expect("via");
    assert_eq!(
        (top.host, top.port, top.received(), top.rport()),
        ("[2001:db8::1]", Some(5060), Some("[2001:db8::99]"), Some(Some(40000)))
    );
    assert_eq!(Host::parse(top.host), Host::Ip("2001:db8::1".parse().expect("ip")));
    let vias = m.values(&HeaderName::Via);
    let v2 = Via::parse(vias[1].1).expect("via 2");
    assert_eq!((v2.host, v2.port, v2.port_or_default()), ("[::1]", None, 5060));
    let v3 = Via::parse(vias[2].1).expect("via 3: LWS around the colon");
    assert_eq!((v3.host, v3.port), ("[2001:db8::2]", Some(5062)));
    let u = Uri::parse(m.ruri()).expect("ruri");
    assert_eq!((u.user(), u.host(), u.port(), u.transport()), ("bob", "[2001:db8::10]", Some(5070), "tcp".to_string()));
    assert_eq!(u.hostport(), "[2001:db8::10]:5070");
    assert_eq!(u.with_port(None), "sip:bob@[2001:db8::10];transport=tcp");
    assert_eq!(u.with_host("[2001:db8::20]"), "sip:bob@[2001:db8::20]:5070;transport=tcp");
    let to = Uri::parse(m.to().expect("to").uri).expect("to uri");
    assert_eq!((to.scheme, to.port(), to.transport()), ("sips", Some(5071), "tls".to_string()));
    assert!(Uri::parse("sip:[2001:db8::1").is_none(), "unclosed literal");
    assert!(Uri::parse("sip:[::1]:x").is_none(), "bad port");
    assert!(Via::parse("SIP/2.0/UDP [::1]x").is_none());
    assert_eq!(render(&m, &[]), raw);
}

#[test]
fn uri_parts() {
    let u = Uri::parse("sip:alice:secret@[::1]:5070;transport=tcp;lr?subject=x").expect("uri");
    assert_eq!((u.user(), u.host(), u.port()), ("alice", "[::1]", Some(5070)));
    assert_eq!(u.transport(), "tcp");
    assert!(u.is_loose());
    assert_eq!(u.with_user("bob"), "sip:bob:secret@[::1]:5070;transport=tcp;lr?subject=x");
    assert_eq!(u.with_user(""), "sip:[::1]:5070;transport=tcp;lr?subject=x");
    assert_eq!(u.with_port(None), "sip:alice:secret@[::1];transport=tcp;lr?subject=x");
    assert_eq!(u.headers(), "?subject=x");
    let tel = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").expect("tel");
    assert_eq!((tel.user(), tel.host(), tel.is_sip()), ("+1-201-555-0123", "", false));
    assert_eq!(tel.param("phone-context"), Some(Some("example.com")));
    let plain = Uri::parse("sip:example.com").expect("host only");
    assert_eq!(
        (plain.user(), plain.host(), plain.port(), plain.transport()),
        ("", "example.com", None, "udp".to_string())
    );
    assert_eq!(plain.with_user("bob"), "sip:bob@example.com");
    assert_eq!(plain.with_port(Some(5080)), "sip:example.com:5080");
    assert!(Uri::parse("sip:").is_none());
    assert!(Uri::parse("sip:user@").is_none());
    assert!(Uri::parse("no-scheme").is_none());
    // A quoted parameter value may hold ';'.
    let na = NameAddr::parse("<sip:a@b>;x=\"1;2\";tag=t").expect("name-addr");
    assert_eq!((na.param("x"), na.tag()), (Some(Some("\"1;2\"")), Some("t")));
}

#[test]
fn escaped_uris_are_kept_and_compared_unescaped() {
    let raw = "OPTIONS sip:%61lice%40home@example.com;x=%20y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a%2Cb@example.com>;tag=1\r\nTo: <sip:bob@example.com?Subject=hi%20there>\r\nCall-ID: e\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = msg_owned(raw);
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(m.ruri(), "sip:%61lice%40home@example.com;x=%20y");
    let u = Uri::parse(m.ruri()).expect("uri");
    assert_eq!(u.user(), "%61lice%40home");
    assert_eq!(&*unescape(u.user()), b"alice@home");
    assert_eq!(u.param("x"), Some(Some("%20y")));
    assert_eq!(&*unescape("%ZZ%4"), b"%ZZ%4", "what is no escape stays");
    assert_eq!(&*unescape("%e2%82%ac"), "€".as_bytes());
    assert!(matches!(unescape("plain"), std::borrow::Cow::Borrowed(_)));
    // The edits that do not touch the R-URI leave its escapes as they were.
    let mut e = Edits::new();
    e.replace(m.first(&HeaderName::CallId).expect("call-id").value, "e2");
    let out = render(&m, &[&e]);
    assert!(out.starts_with("OPTIONS sip:%61lice%40home@example.com;x=%20y SIP/2.0\r\n"));
    assert!(out.contains("From: <sip:a%2Cb@example.com>;tag=1\r\n"));
}

#[test]
fn comma_separated_values_across_and_within_lines() {
    let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\
Route: <sip:p1;lr>,<sip:p2;lr>\r\n\
Route: <sip:p3;lr>\r\n\
Record-Route: <sip:r1;lr;x=\"a,b\">, <sip:r2;lr>\r\n\
Contact: \"Doe, John\" <sip:j@h1>;expires=60, <sip:j@h2;a=b,c>\r\n\
Contact: sip:j@h3;q=0.5\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    let m = msg_owned(raw);
    assert_eq!(m.check_request(), Ok(()));
    let vals = |n: HeaderName| m.values(&n).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    assert_eq!(
        vals(HeaderName::Via),
        ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    );
    assert_eq!(m.via_count(), 3);
    assert_eq!(vals(HeaderName::Route), ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]);
    assert_eq!(vals(HeaderName::RecordRoute), ["<sip:r1;lr;x=\"a,b\">", "<sip:r2;lr>"]);
    let contacts = vals(HeaderName::Contact);
    assert_eq!(contacts, ["\"Doe, John\" <sip:j@h1>;expires=60", "<sip:j@h2;a=b,c>", "sip:j@h3;q=0.5"]);
    let c0 = NameAddr::parse(contacts[0]).expect("c0");
    assert_eq!((c0.display, c0.param("expires")), ("Doe, John", Some(Some("60"))));
    // Each value's span points at its own bytes, so one value can be removed alone.
    let (span, _) = m.values(&HeaderName::Route)[1];
    assert_eq!(m.text(span), "<sip:p2;lr>");
    let (top_span, _) = m.top_via().expect("top");
    assert_eq!(m.text(top_span), "SIP/2.0/UDP a;branch=z9hG4bK1");
    // split_commas on its own: empty parts are skipped, quotes and <> protect commas.
    let parts: Vec<&str> = split_commas(b" a , ,\"x,y\" ,<u,v>,")
        .map(|r| std::str::from_utf8(&b" a , ,\"x,y\" ,<u,v>,"[r]).expect("utf8"))
        .collect();
    assert_eq!(parts, ["a", "\"x,y\"", "<u,v>"]);
}

#[test]
fn name_addr_forms() {
    let ok = [
        ("<sip:a@b>", "", "sip:a@b", ""),
        ("sip:a@b;tag=1", "", "sip:a@b", ";tag=1"),
        ("Bob <sip:a@b> ;tag=1", "Bob", "sip:a@b", ";tag=1"),
        ("\"Bob \\\"B\\\" Smith\"<sip:a@b>", "Bob \\\"B\\\" Smith", "sip:a@b", ""),
        ("  Mr  Bob   <tel:+1234>", "Mr  Bob", "tel:+1234", ""),
        ("urn:service:sos", "", "urn:service:sos", ""),
    ];
    for (text, display, uri, params) in ok {
        let na = NameAddr::parse(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!((na.display, na.uri, na.params), (display, uri, params), "{text}");
    }
    let bad = [
        "\"unterminated <sip:a@b>",
        "< sip:a@b>",
        "<sip:a@b >",
        "<>",
        "Bell, A <sip:a@b>",
        "sip:a@b?subject=x",
        "<sip:a@b> junk",
        "\"Bob\" sip:a@b",
        ";tag=1",
        "",
        "<sip:a@b",
        "no-scheme",
    ];
    for text in bad {
        assert!(NameAddr::parse(text).is_none(), "{text:?} must not parse");
    }
}

// ---- check_request ----

#[test]
fn check_request_findings() {
    assert_eq!(msg_owned(request_with("")).check_request(), Ok(()));
    assert_eq!(msg_owned(request_with("Contact: *\r\nExpires: 0\r\n")).check_request(), Ok(()));
    assert_eq!(msg_owned(request_with("Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n")).check_request(), Ok(()));
    let cases: &[(&str, ParseError)] = &[
        ("To: <sip:other@example.com>\r\n", ParseError::Duplicate("To")),
        ("From: <sip:x@example.com>;tag=z\r\n", ParseError::Duplicate("From")),
        ("i: c2\r\n", ParseError::Duplicate("Call-ID")),
        ("Max-Forwards: 69\r\n", ParseError::Duplicate("Max-Forwards")),
        ("Contact: Bell, A <sip:a@b>\r\n", ParseError::BadHeader("Contact")),
        ("Contact:\r\n", ParseError::BadHeader("Contact")),
        ("Via: garbage\r\n", ParseError::BadHeader("Via")),
        ("Date: 13 Nov 2010 23:29:00 CET\r\n", ParseError::BadHeader("Date")),
    ];
    for (extra, want) in cases {
        assert_eq!(msg_owned(request_with(extra)).check_request(), Err(*want), "{extra:?}");
    }
    let replace = |from: &str, to: &str| msg_owned(request_with("").replacen(from, to, 1)).check_request();
    assert_eq!(replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), Err(ParseError::BadHeader("CSeq")));
    assert_eq!(replace("CSeq: 1 OPTIONS", "CSeq: +1 OPTIONS"), Err(ParseError::BadHeader("CSeq")));
    assert_eq!(replace("CSeq: 1 OPTIONS", "CSeq: 2147483647 OPTIONS"), Ok(()));
    assert_eq!(replace("CSeq: 1 OPTIONS", "CSeq: 2147483648 OPTIONS"), Err(ParseError::BadHeader("CSeq")));
    assert_eq!(replace("CSeq: 1 OPTIONS\r\n", ""), Err(ParseError::Missing("CSeq")));
    assert_eq!(replace("Max-Forwards: 70", "Max-Forwards: seventy"), Err(ParseError::BadHeader("Max-Forwards")));
    assert_eq!(replace("Max-Forwards: 70", "Max-Forwards: -1"), Err(ParseError::BadHeader("Max-Forwards")));
    assert_eq!(replace("Max-Forwards: 70\r\n", ""), Ok(()), "RFC 2543 requests have none");
    assert_eq!(replace("Call-ID: c1", "Call-ID: c 1"), Err(ParseError::BadHeader("Call-ID")));
    assert_eq!(replace("Call-ID: c1", "Call-ID:"), Err(ParseError::BadHeader("Call-ID")));
    assert_eq!(replace("Call-ID: c1\r\n", ""), Err(ParseError::Missing("Call-ID")));
    assert_eq!(replace("To: <sip:bob@example.com>\r\n", ""), Err(ParseError::Missing("To")));
    assert_eq!(replace("To: <sip:bob@example.com>", "To: < sip:bob@example.com>"), Err(ParseError::BadHeader("To")));
    assert_eq!(
        replace("From: <sip:alice@example.com>;tag=a", "From: \"x <sip:alice@example.com>"),
        Err(ParseError::BadHeader("From"))
    );
    assert_eq!(replace("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n", ""), Err(ParseError::Missing("Via")));
    assert_eq!(replace("sip:bob@example.com SIP", "sip:bob@example.com?Subject=x SIP"), Err(ParseError::StartLine));
    assert_eq!(replace("sip:bob@example.com SIP", "sip:bob@ SIP"), Err(ParseError::StartLine));
    assert_eq!(replace("sip:bob@example.com SIP", "tel:+123 SIP"), Ok(()));
    assert_eq!(replace("sip:bob@example.com SIP", "urn:service:sos SIP"), Ok(()));
    // A non-UTF-8 value where a header the proxy reads must parse is a bad header.
    let mut bytes = request_with("").into_bytes();
    let at = bytes.windows(5).position(|w| w == b"alice").expect("alice");
    bytes[at] = 0xE9;
    assert_eq!(msg_owned(bytes).check_request(), Err(ParseError::BadHeader("From")));
    // … while an unknown header may carry any bytes.
    let mut bytes = request_with("X-Latin1: caf\u{e9}\r\n").into_bytes();
    let at = bytes.windows(2).position(|w| w == "é".as_bytes()).expect("é");
    bytes.splice(at..at + 2, [0xE9]);
    let m = msg_owned(bytes.clone());
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(Edits::render(&m, &[]), bytes);
}

#[test]
fn parse_errors_map_to_replies() {
    assert_eq!(ParseError::Version.status_code(), 505);
    assert_eq!(ParseError::TooLarge.status_code(), 513);
    for e in [
        ParseError::Incomplete,
        ParseError::StartLine,
        ParseError::HeaderLine(3),
        ParseError::ContentLength,
        ParseError::BodyTruncated,
        ParseError::Missing("Via"),
        ParseError::BadHeader("CSeq"),
        ParseError::Duplicate("To"),
    ] {
        assert_eq!(e.status_code(), 400, "{e:?}");
        assert!(e.reason().starts_with("Bad Request"), "{e:?}");
    }
    assert_eq!(ParseError::BadHeader("Via").reason(), "Bad Request - Bad Via");
    assert_eq!(ParseError::Duplicate("To").to_string(), "duplicate To header");
}

// ---- Content-Length and datagram bodies ----

#[test]
fn content_length_missing_extra_and_short() {
    // Missing on a datagram: the body is the rest of it.
    let m = msg(b"MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nwhole rest");
    assert_eq!((m.content_length(), m.body()), (None, &b"whole rest"[..]));
    // Extra bytes past it are dropped (and not printed back).
    let m = msg(b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef");
    assert_eq!(m.body(), b"abc");
    assert_eq!(Edits::render(&m, &[]), b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 3\r\n\r\nabc");
    // Fewer bytes than announced: unusable.
    let short: &[u8] = b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 50\r\n\r\nshort";
    assert_eq!(SipMsg::parse(Bytes::from_static(short)).err(), Some(ParseError::BodyTruncated));
    // Exactly as announced, with white space around the value.
    let m = msg(b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length  :   5  \r\n\r\nhello");
    assert_eq!((m.content_length(), m.body()), (Some(5), &b"hello"[..]));
    // Unreadable values.
    for v in ["-1", "+5", "5x", "", "99999999999999999999999", "0x10"] {
        let raw = format!("MESSAGE sip:x@y SIP/2.0\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(SipMsg::parse(Bytes::from(raw)).err(), Some(ParseError::ContentLength), "{v:?}");
    }
    // A body with CRLF CRLF inside is cut by Content-Length, not by the blank line.
    let m = msg(b"MESSAGE sip:x@y SIP/2.0\r\nl: 8\r\n\r\na\r\n\r\nbcdef");
    assert_eq!(m.body(), b"a\r\n\r\nbcd");
    // No empty line: the header section never ended.
    assert_eq!(
        SipMsg::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n")).err(),
        Some(ParseError::Incomplete)
    );
    assert_eq!(SipMsg::parse(Bytes::new()).err(), Some(ParseError::Incomplete));
    assert_eq!(SipMsg::parse(Bytes::from_static(b"\r\n\r\n")).err(), Some(ParseError::Incomplete));
}

#[test]
fn oversize_messages() {
    let mut big = b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\n".to_vec();
    big.resize(MAX_MESSAGE + 1, b'x');
    assert_eq!(SipMsg::parse(Bytes::from(big.clone())).err(), Some(ParseError::TooLarge));
    // On a stream: a header section that never ends, or a body that would go past the limit.
    let endless = vec![b'a'; MAX_MESSAGE + 1];
    assert_eq!(frame_stream(&endless), Err(ParseError::TooLarge));
    assert_eq!(frame_stream(&endless[..MAX_MESSAGE]), Ok(None));
    let huge = format!("MESSAGE sip:x@y SIP/2.0\r\nContent-Length: {}\r\n\r\n", MAX_MESSAGE);
    assert_eq!(frame_stream(huge.as_bytes()), Err(ParseError::TooLarge));
    let overflow = "MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert_eq!(frame_stream(overflow.as_bytes()), Err(ParseError::TooLarge));
    // Just under the limit is fine.
    let head = "MESSAGE sip:x@y SIP/2.0\r\nContent-Length: ";
    let n = MAX_MESSAGE - head.len() - 5 - 4;
    let mut ok = format!("{head}{n:05}\r\n\r\n").into_bytes();
    ok.resize(MAX_MESSAGE, b'b');
    assert_eq!(frame_stream(&ok), Ok(Some(MAX_MESSAGE)));
    assert_eq!(msg_owned(ok).body().len(), n);
}

// ---- stream framing ----

#[test]
fn stream_framing_by_content_length() {
    let raw = b"MESSAGE sip:x@y SIP/2.0\r\nl: 5\r\n\r\nhelloOPTIONS";
    assert_eq!(frame_stream(raw), Ok(Some(raw.len() - 7)));
    assert_eq!(frame_stream(&raw[..20]), Ok(None));
    assert_eq!(frame_stream(b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: x\r\n\r\n"), Err(ParseError::ContentLength));
    assert_eq!(frame_stream(b"MESSAGE sip:x@y SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab"), Err(ParseError::ContentLength));
    let agree: &[u8] = b"MESSAGE sip:x@y SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(frame_stream(agree), Ok(Some(agree.len())));
    // The request line is no header, even when it has a colon in it.
    assert_eq!(frame_stream(b"Content-Length: 5 sip:x SIP/2.0\r\n\r\n"), Ok(Some(35)));
}

#[test]
fn stream_framing_partial_and_back_to_back() {
    let a: &[u8] = b"MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";
    let b: &[u8] = b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nl: 0\r\n\r\n";
    let c: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK3\r\nContent-Length: 2\r\n\r\nok";
    let stream: Vec<u8> = [a, b"\r\n\r\n", b, c].concat();
    // Fed in chunks of every size, with CRLF keep-alives between messages, the stream cuts
    // into exactly the three messages.
    for chunk in 1..=stream.len() {
        let mut buf: Vec<u8> = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let skip = buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
                buf.drain(..skip);
                match frame_stream(&buf) {
                    Ok(Some(n)) => out.push(buf.drain(..n).collect()),
                    Ok(None) => break,
                    Err(e) => panic!("chunk {chunk}: {e:?}"),
                }
            }
        }
        assert_eq!(out, vec![a.to_vec(), b.to_vec(), c.to_vec()], "chunk size {chunk}");
        assert!(buf.is_empty());
    }
    // Every proper prefix of a message waits for more.
    for cut in 0..a.len() {
        assert_eq!(frame_stream(&a[..cut]), Ok(None), "prefix {cut}");
    }
    for m in [a, b, c] {
        let parsed = msg_owned(m.to_vec());
        assert_eq!(Edits::render(&parsed, &[]), m);
    }
}

// ---- edits ----

#[test]
fn edits_splice_into_original_bytes() {
    let m = msg(INVITE);
    let mut e = Edits::new();
    e.replace(m.ruri_span().expect("request"), "sip:bob@10.0.0.9:5080");
    let mf = m.first(&HeaderName::MaxForwards).expect("mf");
    e.replace(mf.value, "69");
    e.insert(m.headers()[0].line.start as usize, "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n");
    let out = render(&m, &[&e]);
    assert!(out.starts_with(
        "INVITE sip:bob@10.0.0.9:5080 SIP/2.0\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 10.0.0.1"
    ));
    assert!(out.contains("Max-Forwards: 69\r\n"));
    assert!(out.contains("X-Folded: one,\r\n two\r\n"));
    assert!(out.ends_with("\r\n\r\nv=0\n"), "trailing datagram bytes are not sent on");
    // Reads after an edit still see the received message.
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    // The edited message parses.
    let again = msg_owned(out);
    assert_eq!(again.via_count(), 4);
    assert_eq!(again.max_forwards(), Some(Ok(69)));
}

#[test]
fn unedited_message_prints_byte_for_byte() {
    let m = msg(INVITE);
    assert_eq!(Edits::render(&m, &[]), invite_kept());
    assert_eq!(Edits::render(&m, &[&Edits::new(), &Edits::new()]), invite_kept());
}

#[test]
fn insert_and_delete_at_the_same_spot() {
    let m = msg(INVITE);
    let to = m.first(&HeaderName::To).expect("to").line;
    let mut e = Edits::new();
    e.delete(to);
    e.insert(to.start as usize, "To: <sip:carol@example.com>\r\n");
    let out = render(&m, &[&e]);
    assert!(out.contains("tag=1928\r\nTo: <sip:carol@example.com>\r\ni: a84b4c76e66710\r\n"), "{out}");
    assert!(!out.contains("To: <sip:bob@example.com>"));
    // The same with the insert added first, and with the insert at the end of the range.
    let mut e = Edits::new();
    e.insert(to.start as usize, "X-A: 1\r\n");
    e.delete(to);
    e.insert(to.end as usize, "X-B: 2\r\n");
    let out = render(&m, &[&e]);
    assert!(out.contains("tag=1928\r\nX-A: 1\r\nX-B: 2\r\ni: a84b4c76e66710\r\n"), "{out}");
    // Two inserts at one spot keep the order they were added in.
    let mut e = Edits::new();
    e.insert(to.start as usize, "X-1: a\r\n");
    e.insert(to.start as usize, "X-2: b\r\n");
    assert!(render(&m, &[&e]).contains("X-1: a\r\nX-2: b\r\nTo: <sip:bob"));
}

#[test]
fn delete_covering_a_replace() {
    let m = msg(INVITE);
    let to = m.first(&HeaderName::To).expect("to");
    // Replace the value, then remove the whole line: the line is gone (either order).
    for order in [false, true] {
        let mut e = Edits::new();
        if order {
            e.delete(to.line);
            e.replace(to.value, "<sip:x@y>");
        } else {
            e.replace(to.value, "<sip:x@y>");
            e.delete(to.line);
        }
        let out = render(&m, &[&e]);
        assert!(!out.contains("sip:x@y") && !out.contains("To: "), "order {order}: {out}");
    }
    // An insert strictly inside a deleted range goes with it.
    let mut e = Edits::new();
    e.delete(to.line);
    e.insert(to.value.start as usize + 1, "zzz");
    assert!(!render(&m, &[&e]).contains("zzz"));
    assert!(e.touches(to.line));
    assert!(!e.touches(to.value));
}

#[test]
fn edits_in_several_layers() {
    let m = msg(INVITE);
    let first_header = m.headers()[0].line.start as usize;
    let mut script = Edits::new();
    script.insert(first_header, "X-Script: 1\r\n");
    let mut core = Edits::new();
    core.insert(first_header, "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n");
    let mf = m.first(&HeaderName::MaxForwards).expect("mf");
    core.replace(mf.value, "69");
    let mut branch = Edits::new();
    branch.replace(m.ruri_span().expect("ruri"), "sip:bob@192.0.2.50");
    // Same position: layer order decides.
    let out = render(&m, &[&script, &core, &branch]);
    assert!(out.starts_with("INVITE sip:bob@192.0.2.50 SIP/2.0\r\nX-Script: 1\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 10.0.0.1"), "{out}");
    let out2 = render(&m, &[&core, &script]);
    assert!(out2.contains("z9hG4bKp\r\nX-Script: 1\r\nVia: SIP/2.0/UDP 10.0.0.1"), "{out2}");
    // Layers are not changed by rendering; extend merges one into another.
    let mut merged = script.clone();
    merged.extend(&core);
    assert_eq!(merged.ops().len(), 3);
    assert_eq!(render(&m, &[&merged]), render(&m, &[&script, &core]));
    merged.retain(|e| !e.text.starts_with("X-Script"));
    assert_eq!(merged.ops().len(), 2);
    assert!(!render(&m, &[&merged]).contains("X-Script"));
    // Edits outside the message (before the start line, past the body) are ignored.
    let mut outside = Edits::new();
    outside.insert(INVITE.len(), "tail");
    outside.replace(Span::new(INVITE.len() - 3, INVITE.len()), "zz");
    assert_eq!(Edits::render(&m, &[&outside]), invite_kept());
    // Appending to the body is an insert at the body's end.
    let mut body = Edits::new();
    body.insert(m.body_span().end as usize, "a=x\n");
    assert!(render(&m, &[&body]).ends_with("v=0\na=x\n"));
}

// ---- messages built here ----

#[test]
fn request_from_its_parts_parses_back() {
    let route = vec!["<sip:p1.example;lr>".to_string(), "<sip:p2.example;lr>".to_string()];
    let out = build_request(&NewRequest {
        method: "BYE",
        ruri: "sip:bob@10.0.0.9",
        via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-x;rport",
        max_forwards: 70,
        route: &route,
        from: "<sip:alice@a.example>;tag=ft",
        to: "<sip:bob@b.example>;tag=tt",
        call_id: "c1@a.example",
        cseq: 8,
        extra_headers: "Accept: application/sdp\r\n",
    });
    let text = String::from_utf8(out.clone()).expect("utf8");
    assert!(text.starts_with("BYE sip:bob@10.0.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-x;rport\r\nMax-Forwards: 70\r\nRoute: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>\r\nFrom: "), "{text}");
    assert!(text.ends_with("CSeq: 8 BYE\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"), "{text}");
    let m = msg_owned(out);
    assert_eq!(m.check_request(), Ok(()));
    assert_eq!(m.method(), Method::Bye);
    assert_eq!(m.call_id(), "c1@a.example");
    assert_eq!(m.top_via().and_then(|(_, v)| v.branch()), Some("z9hG4bK-x"));
    assert_eq!(m.to().and_then(|t| t.tag()), Some("tt"));
}

#[test]
fn reply_copies_headers_and_adds_tag() {
    let m = msg(INVITE);
    let out = build_reply(&m, 404, "Not Here", &ReplyOpts { to_tag: Some("xyz"), ..Default::default() });
    let r = msg_owned(out);
    assert_eq!(r.status(), Some(404));
    assert_eq!(r.reason(), "Not Here");
    assert_eq!(r.to().and_then(|t| t.tag()), Some("xyz"));
    assert_eq!(r.via_count(), 3);
    assert_eq!(r.cseq().map(|c| (c.number, c.method)), Some((314159, Method::Invite)));
    assert_eq!(r.check_reply(), Ok(()));
    // §8.2.6.2: From, Call-ID, CSeq and the Vias are copied byte for byte, in order.
    let text = String::from_utf8(r.bytes().to_vec()).expect("utf8");
    assert!(text.contains("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\nv: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKdef , SIP/2.0/UDP h3;branch=z9hG4bK3\r\n"));
    assert!(text.contains("f: \"Alice, A\" <sip:alice@example.com>;tag=1928\r\n"));
    assert!(text.contains("i: a84b4c76e66710\r\n"));
    assert!(text.contains("To: <sip:bob@example.com>;tag=xyz\r\n"));
    assert!(!text.contains("Max-Forwards") && !text.contains("X-Folded"), "request-only headers stay out");
    assert_eq!(r.content_length(), Some(0));
}

#[test]
fn reply_details() {
    let raw = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
From: <sip:a@b>;tag=1\r\nt: sip:bob@example.com\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nTimestamp: 54.3 0.2\r\n\r\n";
    let m = msg_owned(raw);
    // 100 Trying: no To tag even when one is offered (§8.2.6.2), Timestamp copied (§8.2.6.1).
    let trying = msg_owned(build_reply(&m, 100, "Trying", &ReplyOpts { to_tag: Some("t"), ..Default::default() }));
    assert!(!trying.has_to_tag());
    assert_eq!(trying.headers_by_text("timestamp").map(|h| trying.text(h.value)).collect::<Vec<_>>(), ["54.3 0.2"]);
    // A final reply: the addr-spec To gets its tag as a header parameter; Timestamp is not copied.
    let busy = msg_owned(build_reply(&m, 486, "Busy Here", &ReplyOpts { to_tag: Some("t9"), ..Default::default() }));
    assert_eq!(busy.to().map(|t| (t.uri, t.tag())), Some(("sip:bob@example.com", Some("t9"))));
    assert_eq!(busy.headers_by_text("timestamp").count(), 0);
    // The top Via value can be replaced (received/rport filled in) without touching the next.
    let opts = ReplyOpts {
        top_via: Some("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=192.0.2.7"),
        extra_headers: "Retry-After: 30\r\n",
        body: b"busy",
        ..Default::default()
    };
    let r = msg_owned(build_reply(&m, 503, "Service Unavailable", &opts));
    let vias = r.values(&HeaderName::Via);
    assert_eq!(vias.len(), 2);
    assert_eq!(Via::parse(vias[0].1).and_then(|v| v.received()), Some("192.0.2.7"));
    assert_eq!(vias[1].1, "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2");
    assert_eq!(r.headers_by_text("Retry-After").count(), 1);
    assert_eq!((r.content_length(), r.body()), (Some(4), &b"busy"[..]));
    assert_eq!(r.check_reply(), Ok(()));
    // A request that already has a To tag keeps it, and gets no second one.
    let in_dialog = msg_owned(raw.replace("t: sip:bob@example.com", "t: <sip:bob@example.com>;tag=old"));
    let r = msg_owned(build_reply(
        &in_dialog,
        481,
        "Call/Transaction Does Not Exist",
        &ReplyOpts { to_tag: Some("new"), ..Default::default() },
    ));
    assert_eq!(r.to().and_then(|t| t.tag()), Some("old"));
    assert_eq!(r.bytes().windows(4).filter(|w| w == b"tag=").count(), 2, "From's and To's");
}

const SENT_INVITE: &[u8] = b"INVITE sip:bob@192.0.2.20:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKuac;received=10.0.0.1\r\n\
Max-Forwards: 69\r\n\
Route: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\r\n\
Record-Route: <sip:192.0.2.1;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn cancel_matches_the_invite() {
    let inv = msg(SENT_INVITE);
    let c = msg_owned(build_cancel(&inv, "Reason: SIP;cause=200;text=\"Call completed elsewhere\""));
    assert_eq!(c.check_request(), Ok(()));
    // §9.1: same Request-URI, Call-ID, To, From and CSeq number; method CANCEL.
    assert_eq!(c.method(), Method::Cancel);
    assert_eq!(c.ruri(), inv.ruri());
    assert_eq!(c.call_id(), inv.call_id());
    assert_eq!(c.value(&HeaderName::From), inv.value(&HeaderName::From));
    assert_eq!(c.value(&HeaderName::To), inv.value(&HeaderName::To));
    assert_eq!(c.cseq().map(|s| (s.number, s.method)), Some((314159, Method::Cancel)));
    // A single Via, equal to the INVITE's top Via (same branch).
    assert_eq!(c.via_count(), 1);
    assert_eq!(c.top_via().map(|(s, _)| c.text(s).to_string()), inv.top_via().map(|(s, _)| inv.text(s).to_string()));
    // The INVITE's Route set, no Record-Route, Contact or body.
    assert_eq!(c.values(&HeaderName::Route).len(), 2);
    assert_eq!(c.values(&HeaderName::RecordRoute).len(), 0);
    assert!(c.first(&HeaderName::Contact).is_none());
    assert_eq!((c.content_length(), c.body()), (Some(0), &b""[..]));
    assert!(c.max_forwards().is_some());
    assert_eq!(c.value(&HeaderName::Reason), Some("SIP;cause=200;text=\"Call completed elsewhere\""));
    assert!(msg_owned(build_cancel(&inv, "")).first(&HeaderName::Reason).is_none());
}

#[test]
fn ack_for_a_negative_reply() {
    let inv = msg(SENT_INVITE);
    let reply = msg(b"SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKuac;received=10.0.0.1\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928\r\n\
To: <sip:bob@example.com>;tag=b0b\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n");
    let a = msg_owned(build_ack_for_reply(&inv, &reply));
    assert_eq!(a.check_request(), Ok(()));
    // §17.1.1.3: Request-URI, Call-ID, From and CSeq number of the INVITE, To of the reply,
    // the INVITE's top Via only, its Route set.
    assert_eq!(a.method(), Method::Ack);
    assert_eq!(a.ruri(), "sip:bob@192.0.2.20:5060");
    assert_eq!(a.call_id(), inv.call_id());
    assert_eq!(a.value(&HeaderName::From), inv.value(&HeaderName::From));
    assert_eq!(a.to().and_then(|t| t.tag()), Some("b0b"));
    assert_eq!(a.cseq().map(|s| (s.number, s.method)), Some((314159, Method::Ack)));
    assert_eq!(a.via_count(), 1);
    assert_eq!(a.top_via().and_then(|(_, v)| v.branch()), Some("z9hG4bKproxy1"));
    assert_eq!(
        a.values(&HeaderName::Route).into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    assert_eq!(a.body(), b"");
}

#[test]
fn empty_placeholder_matches_its_bytes() {
    let e = SipMsg::empty();
    let parsed = SipMsg::parse(e.bytes().clone()).expect("placeholder parses");
    assert_eq!(e.ruri(), parsed.ruri());
    assert_eq!(e.headers_end(), parsed.headers_end());
    assert_eq!(e.body_span(), parsed.body_span());
    assert_eq!(e.start_line_span(), parsed.start_line_span());
}
