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

fn msg(b: &'static [u8]) -> SipMsg {
    SipMsg::parse(Bytes::from_static(b)).expect("parses")
}

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
}

#[test]
fn unedited_message_prints_byte_for_byte() {
    let m = msg(INVITE);
    assert_eq!(Edits::render(&m, &[]), &INVITE[..INVITE.len()]);
}

#[test]
fn edits_splice_into_original_bytes() {
    let m = msg(INVITE);
    let mut e = Edits::new();
    e.replace(m.ruri_span().expect("request"), "sip:bob@10.0.0.9:5080");
    let mf = m.first(&HeaderName::MaxForwards).expect("mf");
    e.replace(mf.value, "69");
    e.insert(m.headers()[0].line.start as usize, "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n");
    let out = String::from_utf8(Edits::render(&m, &[&e])).expect("utf8");
    assert!(out.starts_with("INVITE sip:bob@10.0.0.9:5080 SIP/2.0\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 10.0.0.1"));
    assert!(out.contains("Max-Forwards: 69\r\n"));
    assert!(out.contains("X-Folded: one,\r\n two\r\n"));
}

#[test]
fn unknown_method_and_header_case_are_kept() {
    let raw: &[u8] = b"NEWMETHOD sip:x@y SIP/2.0\r\nvIa: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTO: <sip:x@y>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 NEWMETHOD\r\n\r\n";
    let m = msg(raw);
    assert_eq!(m.method(), Method::Other("NEWMETHOD".into()));
    assert!(m.top_via().is_some());
    assert!(m.to().is_some());
    assert_eq!(Edits::render(&m, &[]), raw);
}

#[test]
fn content_length_larger_than_body_is_an_error() {
    let raw: &[u8] = b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 50\r\n\r\nshort";
    assert_eq!(SipMsg::parse(Bytes::from_static(raw)).err(), Some(ParseError::BodyTruncated));
}

#[test]
fn stream_framing_by_content_length() {
    let raw = b"MESSAGE sip:x@y SIP/2.0\r\nl: 5\r\n\r\nhelloOPTIONS";
    assert_eq!(frame_stream(raw), Ok(Some(raw.len() - 7)));
    assert_eq!(frame_stream(&raw[..20]), Ok(None));
    assert_eq!(frame_stream(b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: x\r\n\r\n"), Err(ParseError::ContentLength));
}

#[test]
fn uri_parts() {
    let u = Uri::parse("sip:alice:secret@[::1]:5070;transport=tcp;lr?subject=x").expect("uri");
    assert_eq!((u.user(), u.host(), u.port()), ("alice", "[::1]", Some(5070)));
    assert_eq!(u.transport(), "tcp");
    assert!(u.is_loose());
    assert_eq!(u.with_user("bob"), "sip:bob:secret@[::1]:5070;transport=tcp;lr?subject=x");
    assert_eq!(u.with_port(None), "sip:alice:secret@[::1];transport=tcp;lr?subject=x");
    let tel = Uri::parse("tel:+1-201-555-0123").expect("tel");
    assert_eq!(tel.user(), "+1-201-555-0123");
}

#[test]
fn reply_copies_headers_and_adds_tag() {
    let m = msg(INVITE);
    let out = build_reply(&m, 404, "Not Here", &ReplyOpts { to_tag: Some("xyz"), ..Default::default() });
    let r = SipMsg::parse(Bytes::from(out)).expect("reply parses");
    assert_eq!(r.status(), Some(404));
    assert_eq!(r.to().and_then(|t| t.tag()), Some("xyz"));
    assert_eq!(r.via_count(), 3);
    assert_eq!(r.cseq().map(|c| c.method), Some(Method::Invite));
}
