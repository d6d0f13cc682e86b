//! RFC 4475 golden tests: the 49 torture messages (testdata/torture/, bytes as in the RFC's
//! archive; ../shared/torture/README.md next to the repository tells where they come from)
//! and what this layer does with each. manifest.tsv (copied from there) gives each its class.
//!
//! * `valid` (§3.1.1): parses, passes `check_request`/`check_reply`, and prints back byte for
//!   byte (up to the end of the body: dblreq's trailing octets are not part of the message).
//! * `invalid-must-reject` (§3.1.2): fails `SipMsg::parse` or the check with the error named
//!   below, so the proxy answers 400 (505 for badvers) or drops a reply.
//! * `semantic` (§3.2–3.4): this layer decides insuf (400, missing headers), multi01 (400,
//!   duplicates) and mcl01 (400, two Content-Lengths); everything else in that class parses,
//!   passes the checks, prints back unchanged and exposes the value a later layer decides on
//!   (asserted in the per-message tests below). Decided by later layers:
//!   - transaction layer: badbranch (branch `z9hG4bK` without an id: RFC 2543 matching or
//!     400), inv2543 (no branch: RFC 2543 matching);
//!   - proxy core: unkscm and novelsc (416 for a Request-URI scheme it cannot route), bext01
//!     (420 listing the Proxy-Require tokens), zeromf (483, or 200 to an OPTIONS for itself),
//!     bcast (never send a reply to a broadcast Via, drop);
//!   - script / modules (registrar, auth, UAS behind the proxy): unksm2 (a registrar would
//!     400 the non-SIP URIs), invut (415 at the UAS), regaut01 (401 from a registrar),
//!     cparam01/cparam02/regescrt (what a registrar stores), sdp01 (406 at the UAS).
//!     The proxy relays all of these unchanged.

use super::*;
use bytes::Bytes;

macro_rules! corpus {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), include_bytes!(concat!("testdata/torture/", stringify!($name), ".dat")) as &[u8])),*]
    };
}

/// Every message of the corpus, by name.
const CORPUS: &[(&str, &[u8])] = corpus![
    wsinv, intmeth, esc01, escnull, esc02, lwsdisp, longreq, dblreq, semiuri, transports, mpart01, unreason, noreason,
    badinv01, clerr, ncl, scalar02, scalarlg, quotbal, ltgtruri, lwsruri, lwsstart, trws, escruri, baddate, regbadct,
    badaspec, baddn, badvers, mismatch01, mismatch02, bigcode, badbranch, insuf, unkscm, novelsc, unksm2, bext01,
    invut, regaut01, multi01, mcl01, bcast, zeromf, cparam01, cparam02, regescrt, sdp01, inv2543,
];

const MANIFEST: &str = include_str!("testdata/torture/manifest.tsv");

fn raw(name: &str) -> &'static [u8] {
    CORPUS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).unwrap_or_else(|| panic!("no torture message {name}"))
}

fn parsed(name: &str) -> SipMsg {
    SipMsg::parse(Bytes::from_static(raw(name))).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// Both checks: a message that passes is one the proxy goes on with.
fn check(m: &SipMsg) -> Result<(), ParseError> {
    m.check_request()?;
    m.check_reply()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Parses, passes the checks, prints back byte for byte.
    Accept,
    /// `SipMsg::parse` fails with this error.
    ParseFails(ParseError),
    /// Parses and prints back, but the check fails with this error.
    CheckFails(ParseError),
}
use Outcome::*;

/// What this layer does with each message (the class comes from manifest.tsv).
const EXPECTED: &[(&str, Outcome)] = &[
    // 3.1.1 valid
    ("wsinv", Accept),
    ("intmeth", Accept),
    ("esc01", Accept),
    ("escnull", Accept),
    ("esc02", Accept),
    ("lwsdisp", Accept),
    ("longreq", Accept),
    ("dblreq", Accept),
    ("semiuri", Accept),
    ("transports", Accept),
    ("mpart01", Accept),
    ("unreason", Accept),
    ("noreason", Accept),
    // 3.1.2 invalid-must-reject
    ("badinv01", CheckFails(ParseError::BadHeader("Via"))),
    ("clerr", ParseFails(ParseError::BodyTruncated)),
    ("ncl", ParseFails(ParseError::ContentLength)),
    ("scalar02", CheckFails(ParseError::BadHeader("CSeq"))),
    ("scalarlg", CheckFails(ParseError::BadHeader("CSeq"))),
    ("quotbal", CheckFails(ParseError::BadHeader("To"))),
    ("ltgtruri", ParseFails(ParseError::StartLine)),
    ("lwsruri", ParseFails(ParseError::StartLine)),
    ("lwsstart", ParseFails(ParseError::StartLine)),
    ("trws", ParseFails(ParseError::StartLine)),
    ("escruri", CheckFails(ParseError::StartLine)),
    ("baddate", CheckFails(ParseError::BadHeader("Date"))),
    ("regbadct", CheckFails(ParseError::BadHeader("Contact"))),
    ("badaspec", CheckFails(ParseError::BadHeader("To"))),
    // The archive copy has no empty line ending the headers; `baddn_display_names` checks
    // the display names with the header section closed.
    ("baddn", ParseFails(ParseError::Incomplete)),
    ("badvers", ParseFails(ParseError::Version)),
    ("mismatch01", CheckFails(ParseError::BadHeader("CSeq"))),
    ("mismatch02", CheckFails(ParseError::BadHeader("CSeq"))),
    ("bigcode", ParseFails(ParseError::Status)),
    // 3.2–3.4 semantic
    ("badbranch", Accept),
    ("insuf", CheckFails(ParseError::Missing("From"))),
    ("unkscm", Accept),
    ("novelsc", Accept),
    ("unksm2", Accept),
    ("bext01", Accept),
    ("invut", Accept),
    ("regaut01", Accept),
    ("multi01", CheckFails(ParseError::Duplicate("CSeq"))),
    ("mcl01", ParseFails(ParseError::ContentLength)),
    ("bcast", Accept),
    ("zeromf", Accept),
    ("cparam01", Accept),
    ("cparam02", Accept),
    ("regescrt", Accept),
    ("sdp01", Accept),
    ("inv2543", Accept),
];

fn manifest() -> Vec<(&'static str, &'static str, &'static str)> {
    MANIFEST
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 6, "manifest row {l:?}");
            (f[0], f[3], f[5])
        })
        .collect()
}

#[test]
fn corpus_manifest_and_expectations_agree() {
    let rows = manifest();
    assert_eq!(rows.len(), 49);
    assert_eq!(CORPUS.len(), 49);
    assert_eq!(EXPECTED.len(), 49);
    // Every .dat on disk is in the table (a file added later gets a test or fails here).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/message/testdata/torture");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("testdata dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut named: Vec<String> = CORPUS.iter().map(|(n, _)| n.to_string()).collect();
    named.sort();
    assert_eq!(on_disk, named);
    for (name, class, _) in &rows {
        let (_, outcome) =
            EXPECTED.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} has no expectation"));
        match *class {
            "valid" => assert_eq!(*outcome, Accept, "{name}: a valid message must be accepted"),
            "invalid-must-reject" => assert_ne!(*outcome, Accept, "{name}: must be rejected"),
            "semantic" => {}
            other => panic!("{name}: unknown class {other}"),
        }
    }
    // Semantic messages this layer rejects are exactly those whose manifest answer is a 400.
    for (name, class, expect) in &rows {
        let (_, outcome) = EXPECTED.iter().find(|(n, _)| n == name).expect("expectation");
        if *class == "semantic" {
            assert_eq!(*outcome != Accept, *expect == "400", "{name}: manifest expects {expect}");
        }
    }
}

/// The bytes a datagram parser keeps: everything up to the end of the body.
fn kept(m: &SipMsg) -> &[u8] {
    &m.bytes()[m.start_line_span().start as usize..m.body_span().end as usize]
}

#[test]
fn every_message_gets_its_outcome() {
    let mut wrong = Vec::new();
    for (name, expected) in EXPECTED {
        let bytes = raw(name);
        let got = match SipMsg::parse(Bytes::from_static(bytes)) {
            Err(e) => ParseFails(e),
            Ok(m) => {
                // Whatever the checks say, what parsed prints back unchanged: the proxy never
                // rewrites what it did not touch, even in a message it answers with 400.
                if Edits::render(&m, &[]) != kept(&m) {
                    wrong.push(format!("{name}: render differs from the received bytes"));
                }
                match check(&m) {
                    Ok(()) => Accept,
                    Err(e) => CheckFails(e),
                }
            }
        };
        if got != *expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn valid_messages_print_back_byte_for_byte() {
    for (name, class, _) in manifest() {
        if class != "valid" {
            continue;
        }
        let bytes = raw(name);
        let m = parsed(name);
        let out = Edits::render(&m, &[]);
        if name == "dblreq" {
            // RFC 4475 §3.1.1.8: only the leading REGISTER (Content-Length 0) is the message.
            assert!(bytes.len() > out.len());
            assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
            assert!(bytes[out.len()..].starts_with(b"\r\nINVITE sip:joe@example.com SIP/2.0\r\n"));
            assert_eq!(out, &bytes[..out.len()]);
        } else {
            assert_eq!(out, bytes, "{name} prints back as received");
        }
    }
}

#[test]
fn stream_framing_of_the_corpus() {
    for (name, bytes) in CORPUS {
        let got = frame_stream(bytes);
        match *name {
            // Content-Length 9999 on a stream: wait for more bytes (the transport's limits
            // and timeouts end it).
            "clerr" => assert_eq!(got, Ok(None), "{name}"),
            // No empty line after the headers: wait.
            "baddn" => assert_eq!(got, Ok(None), "{name}"),
            "ncl" | "mcl01" => assert_eq!(got, Err(ParseError::ContentLength), "{name}"),
            // The INVITE has no Content-Length: on a stream that means no body (RFC 3261
            // §18.3 makes the header mandatory there).
            "inv2543" => assert_eq!(got, Ok(Some(bytes.len() - 105)), "{name}"),
            "dblreq" => {
                // Two messages back to back; the second is cut at its own Content-Length.
                let first = got.expect("frames").expect("whole");
                assert!(bytes[first..].starts_with(b"\r\nINVITE"));
                let rest = &bytes[first + 2..];
                let second = frame_stream(rest).expect("frames").expect("whole");
                let m2 = SipMsg::parse(Bytes::copy_from_slice(&rest[..second])).expect("second parses");
                assert_eq!(m2.method(), Method::Invite);
                assert_eq!(m2.body().len(), 150);
            }
            _ => assert_eq!(got, Ok(Some(bytes.len())), "{name}"),
        }
    }
}

// ---- 3.1.1 valid messages: the values a proxy reads come out right ----

#[test]
fn wsinv_short_tortuous_invite() {
    let m = parsed("wsinv");
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.ruri(), "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(m.to().and_then(|t| t.tag()), Some("1918181833n"));
    assert_eq!(m.to().map(|t| t.uri), Some("sip:vivekg@chair-dnrc.example.com"));
    let from = m.from().expect("from");
    assert_eq!(from.display, "J Rosenberg \\\\\\\"");
    assert_eq!(from.uri, "sip:jdrosen@example.com");
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards(), Some(Ok(68)));
    assert_eq!(m.call_id(), "wsinv.ndaksdj@192.0.2.1");
    let cseq = m.cseq().expect("cseq");
    assert_eq!((cseq.number, cseq.method), (9, Method::Invite));
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
    // Three Via values over two header lines, with LWS around every '/'.
    assert_eq!(m.via_count(), 3);
    let (_, top) = m.top_via().expect("top via");
    assert_eq!((top.transport, top.host, top.branch()), ("UDP", "192.0.2.2", Some("390skdjuw")));
    let vias = m.values(&HeaderName::Via);
    let v2 = Via::parse(vias[1].1).expect("second via");
    assert_eq!((v2.transport, v2.host, v2.branch()), ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")));
    let v3 = Via::parse(vias[2].1).expect("third via");
    assert_eq!((v3.transport, v3.host, v3.branch()), ("UDP", "192.168.255.111", Some("z9hG4bK30239")));
    let contact = NameAddr::parse(m.value(&HeaderName::Contact).expect("m:")).expect("contact");
    assert_eq!(contact.display, "Quoted string \\\"\\\"");
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("q"), Some(Some("0.33")));
    let route = NameAddr::parse(m.value(&HeaderName::Route).expect("route")).expect("route value");
    assert!(Uri::parse(route.uri).expect("route uri").is_loose());
    // Unknown and empty headers are indexed with their case and folding untouched.
    let nf = m.headers_by_text("newfangledheader").next().expect("NewFangledHeader");
    assert_eq!(m.text(nf.name_span), "NewFangledHeader");
    assert_eq!(m.text(nf.value), "newfangled value\r\n continued newfangled value");
    let s = m.headers_by_text("s").next().expect("s :");
    assert!(s.value.is_empty());
    assert_eq!(m.text(m.first(&HeaderName::To).expect("to").name_span), "TO");
    assert_eq!(m.text(m.first(&HeaderName::MaxForwards).expect("mf").name_span), "MaX-fOrWaRdS");
}

#[test]
fn intmeth_unknown_method_and_wide_characters() {
    let m = parsed("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Method::Other(method.into()));
    assert_eq!(m.method_text(), method);
    assert_eq!(m.cseq().map(|c| c.method_text), Some(method));
    // The user part holds unescaped '?', ';', '/', ',' and a password (RFC 4475 §3.1.1.2).
    let u = Uri::parse(m.ruri()).expect("R-URI");
    assert_eq!(u.user(), "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert_eq!(u.host(), "example.com");
    assert_eq!((u.params(), u.headers()), ("", ""));
    let to = m.to().expect("to");
    assert_eq!(to.display, "BEL:\\\x07 NUL:\\\0 DEL:\\\x7f");
    assert_eq!(Uri::parse(to.uri).map(|u| u.host()), Some("example.com"));
    let from = m.from().expect("from");
    assert_eq!(from.display, "token1~` token2'+_ token3*%!.-");
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    // The quoted UTF-8 value of a parameter is kept whole.
    assert_eq!(from.param("fromParam''~+*_!.-%"), Some(Some("\"работающий\"")));
    assert_eq!(m.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    let ext = m.headers_by_text("extensionHeader-!.%*+_`'~").next().expect("extension header");
    assert_eq!(m.text(ext.value), "\u{FEFF}大停電");
    assert_eq!(m.max_forwards(), Some(Ok(255)));
}

#[test]
fn esc01_escapes_kept_and_compared_unescaped() {
    let m = parsed("esc01");
    assert_eq!(m.ruri(), "sip:sips%3Auser%40example.com@example.net");
    let u = Uri::parse(m.ruri()).expect("R-URI");
    assert_eq!((u.user(), u.host()), ("sips%3Auser%40example.com", "example.net"));
    assert_eq!(&*unescape(u.user()), b"sips:user@example.com");
    let to = Uri::parse(m.to().expect("to").uri).expect("to uri");
    assert_eq!(to.user(), "%75se%72");
    assert_eq!(&*unescape(to.user()), b"user");
    assert_eq!(&*unescape(Uri::parse(m.from().expect("from").uri).expect("uri").user()), b"I have spaces");
    let c = NameAddr::parse(m.value(&HeaderName::Contact).expect("contact")).expect("contact value");
    let cu = Uri::parse(c.uri).expect("contact uri");
    assert_eq!(cu.params(), ";%6C%72;n%61me=v%61lue%25%34%31");
    assert_eq!(&*unescape(cu.params()), b";lr;name=value%41");
    assert_eq!(m.value(&HeaderName::ContentType), Some("application/sdp"), "compact c: in upper case");
}

#[test]
fn escnull_escaped_nulls_are_not_truncated() {
    let m = parsed("escnull");
    assert_eq!(m.method(), Method::Register);
    assert_eq!(m.to().map(|t| t.uri), Some("sip:null-%00-null@example.com"));
    let contacts = m.values(&HeaderName::Contact);
    assert_eq!(contacts.len(), 2);
    let users: Vec<Vec<u8>> = contacts
        .iter()
        .map(|(_, c)| unescape(Uri::parse(NameAddr::parse(c).expect("contact").uri).expect("uri").user()).into_owned())
        .collect();
    assert_eq!(users, vec![vec![0u8], vec![0u8, 0u8]]);
    assert_eq!(m.content_length(), Some(0), "L:0 is the compact Content-Length");
}

#[test]
fn esc02_percent_in_method_and_header_name() {
    let m = parsed("esc02");
    // RE%47IST%45R is an extension method, not REGISTER.
    assert_eq!(m.method(), Method::Other("RE%47IST%45R".into()));
    assert!(!m.method().matches("REGISTER"));
    // C%6Fntact is an unknown header, not a third Contact.
    let contacts: Vec<&str> = m.values(&HeaderName::Contact).into_iter().map(|(_, v)| v).collect();
    assert_eq!(contacts, vec!["<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>"]);
    assert_eq!(m.headers_by_text("C%6Fntact").count(), 1);
    assert_eq!(m.top_via().and_then(|(_, v)| v.branch()), Some("z9hG4bK209%fzsnel234"));
    assert_eq!(m.to().map(|t| t.display), Some("%Z%45"));
}

#[test]
fn lwsdisp_display_name_without_space() {
    let m = parsed("lwsdisp");
    let from = m.from().expect("from");
    assert_eq!((from.display, from.uri, from.tag()), ("caller", "sip:caller@example.com", Some("323")));
}

#[test]
fn longreq_long_values_are_whole() {
    let m = parsed("longreq");
    assert_eq!(m.via_count(), 34);
    // Via spelled in every case and compact form, with space before the colon.
    for h in m.headers_named(&HeaderName::Via) {
        assert!(m.text(h.name_span).eq_ignore_ascii_case("via") || m.text(h.name_span).eq_ignore_ascii_case("v"));
    }
    let last = m.values(&HeaderName::Via).last().map(|(_, v)| Via::parse(v).expect("via")).expect("vias");
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert!(last.branch().expect("branch").len() > 100);
    let to = m.to().expect("to");
    assert!(to.display.starts_with("I have a user name of extremeextreme"));
    let tu = Uri::parse(to.uri).expect("to uri");
    assert_eq!(tu.port(), Some(6000));
    assert_eq!(tu.param("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename"), Some(Some("shortvalue")));
    assert_eq!(m.call_id(), format!("longreq.one{}longcallid", "really".repeat(20)));
    let unknown =
        m.headers().iter().find(|h| m.text(h.name_span).starts_with("Unknown-LongLong")).expect("long header");
    assert!(unknown.value.len() > 200);
}

#[test]
fn dblreq_only_the_first_message_counts() {
    let m = parsed("dblreq");
    assert_eq!(m.method(), Method::Register);
    assert!(m.body().is_empty());
    assert_eq!(m.call_id(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(m.headers().iter().all(|h| !m.text(h.value).contains("joe@example.com")));
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let m = parsed("semiuri");
    let u = Uri::parse(m.ruri()).expect("R-URI");
    assert_eq!((u.user(), u.host(), u.params()), ("user;par=u%40example.net", "example.com", ""));
    assert_eq!(u.param("par"), None, "par is user data, not a URI parameter");
    let h = m.headers_by_text("accept").next().expect("Accept");
    let accept: Vec<&str> = split_commas(m.slice(h.value)).map(|r| &m.text(h.value)[r]).collect();
    assert_eq!(accept.len(), 6, "a folded comma list: {accept:?}");
}

#[test]
fn transports_unknown_transports_in_lower_vias() {
    let m = parsed("transports");
    let t: Vec<String> =
        m.values(&HeaderName::Via).iter().map(|(_, v)| Via::parse(v).expect("via").transport.to_string()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(m.top_via().map(|(_, v)| v.port_or_default()), Some(5060));
}

#[test]
fn mpart01_binary_body_is_byte_exact() {
    let m = parsed("mpart01");
    assert_eq!(m.method(), Method::Message);
    assert_eq!(m.body().len(), 553);
    assert!(m.body().contains(&0), "binary part with NUL");
    assert!(m.body().starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
}

#[test]
fn unreason_and_noreason_replies() {
    let m = parsed("unreason");
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().starts_with("= 2**3 * 5**2 но сто"));
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.body().len(), 154);
    let m = parsed("noreason");
    assert_eq!((m.status(), m.reason()), (Some(100), ""));
    assert!(!m.is_request());
}

// ---- 3.1.2 invalid messages: the details behind the table ----

#[test]
fn badinv01_extraneous_separators() {
    let m = parsed("badinv01");
    // The top Via value still reads; the ';' values after the commas do not.
    let vias: Vec<&str> = m.values(&HeaderName::Via).into_iter().map(|(_, v)| v).collect();
    assert_eq!(vias, vec!["SIP/2.0/UDP 192.0.2.15;;", ";"], "empty values between commas are skipped");
    assert!(Via::parse(";").is_none());
}

#[test]
fn scalar02_overlarge_values_do_not_wrap() {
    let m = parsed("scalar02");
    assert!(m.cseq().is_none(), "36893488147419103232 is no u32");
    assert_eq!(m.expires(), None, "an overlarge Expires reads as absent (default applies)");
    assert_eq!(m.max_forwards(), Some(Ok(300)));
    // RFC 4475 §3.1.2.4: with only Max-Forwards and the expiry values out of range the
    // request could go on; the CSeq is what makes it a 400.
    let fixed = String::from_utf8(raw("scalar02").to_vec()).expect("ascii").replace("36893488147419103232", "8");
    let f = SipMsg::parse(Bytes::from(fixed)).expect("parses");
    assert_eq!(f.check_request(), Ok(()));
    // A CSeq number of 2**31 or more is out of range too (RFC 3261 §8.1.1.5).
    let big = String::from_utf8(raw("scalar02").to_vec()).expect("ascii").replace("36893488147419103232", "2147483648");
    let b = SipMsg::parse(Bytes::from(big)).expect("parses");
    assert_eq!(b.check_request(), Err(ParseError::BadHeader("CSeq")));
}

#[test]
fn scalarlg_reply_is_dropped() {
    let m = parsed("scalarlg");
    assert_eq!(m.status(), Some(503));
    assert_eq!(m.check_request(), Ok(()), "check_request leaves replies to check_reply");
    assert_eq!(m.check_reply(), Err(ParseError::BadHeader("CSeq")));
}

#[test]
fn baddn_display_names() {
    // With the header section closed, the unquoted "Bell, Alexander" is what fails.
    let mut bytes = raw("baddn").to_vec();
    bytes.extend_from_slice(b"\r\n");
    let m = SipMsg::parse(Bytes::from(bytes)).expect("parses once terminated");
    assert_eq!(m.check_request(), Err(ParseError::BadHeader("From")));
    assert!(NameAddr::parse("Watson, Thomas <sip:t.watson@example.org>").is_none());
    assert!(NameAddr::parse("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").is_some(), "tokens are fine");
}

#[test]
fn badvers_answers_505() {
    let e = SipMsg::parse(Bytes::from_static(raw("badvers"))).expect_err("SIP/7.0");
    assert_eq!((e, e.status_code()), (ParseError::Version, 505));
    for name in ["badinv01", "scalar02", "quotbal", "escruri", "baddate", "regbadct", "badaspec", "mismatch01"] {
        let e = parsed(name).check_request().expect_err(name);
        assert_eq!(e.status_code(), 400, "{name}");
        assert!(e.reason().starts_with("Bad Request"), "{name}: {}", e.reason());
    }
}

#[test]
fn bigcode_is_no_status() {
    assert_eq!(SipMsg::parse(Bytes::from_static(raw("bigcode"))).err(), Some(ParseError::Status));
    // Nor are codes outside 100..=699 or with four digits.
    for line in ["SIP/2.0 099 x", "SIP/2.0 700 x", "SIP/2.0 2000 x", "SIP/2.0 20 x", "SIP/2.0  200 x"] {
        let raw = format!("{line}\r\nVia: SIP/2.0/UDP h\r\n\r\n");
        assert_eq!(SipMsg::parse(Bytes::from(raw)).err(), Some(ParseError::Status), "{line}");
    }
}

#[test]
fn escruri_headers_in_request_uri() {
    let m = parsed("escruri");
    let u = Uri::parse(m.ruri()).expect("uri");
    assert_eq!(u.headers(), "?Route=%3Csip:example.com%3E");
    assert_eq!(m.check_request(), Err(ParseError::StartLine));
    // Headers are fine in a Contact inside <> (regescrt) and in other schemes' URIs.
    assert_eq!(parsed("regescrt").check_request(), Ok(()));
}

// ---- 3.2–3.4 semantic messages: what this layer hands to the later ones ----

#[test]
fn badbranch_branch_without_id_is_left_to_the_transaction_layer() {
    let m = parsed("badbranch");
    assert_eq!(m.top_via().and_then(|(_, v)| v.branch()), Some("z9hG4bK"));
}

#[test]
fn insuf_missing_headers() {
    let m = parsed("insuf");
    assert_eq!(m.check_request(), Err(ParseError::Missing("From")));
    assert!(m.from().is_none() && m.to().is_none() && m.call_id().is_empty() && m.max_forwards().is_none());
}

#[test]
fn unknown_request_uri_schemes_parse_for_the_proxy_to_refuse() {
    let m = parsed("unkscm");
    let u = Uri::parse(m.ruri()).expect("opaque uri");
    assert_eq!(u.scheme, "nobodyKnowsThisScheme");
    assert!(!u.is_sip());
    let m = parsed("novelsc");
    let u = Uri::parse(m.ruri()).expect("opaque uri");
    assert_eq!(u.scheme, "soap.beep");
    assert!(!u.is_sip());
}

#[test]
fn unksm2_unknown_schemes_in_headers() {
    let m = parsed("unksm2");
    assert_eq!(m.to().map(|t| t.uri), Some("isbn:2983792873"));
    assert_eq!(m.from().map(|f| (f.uri, f.tag())), Some(("http://www.example.com", Some("3234233"))));
    let c = m.values(&HeaderName::Contact);
    assert_eq!(NameAddr::parse(c[0].1).map(|c| c.uri), Some("name:John_Smith"));
}

#[test]
fn bext01_proxy_require_tokens_are_readable() {
    let m = parsed("bext01");
    let pr: Vec<&str> = m.values(&HeaderName::ProxyRequire).into_iter().map(|(_, v)| v).collect();
    assert_eq!(pr, vec!["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
    let rq: Vec<&str> = m.values(&HeaderName::Require).into_iter().map(|(_, v)| v).collect();
    assert_eq!(rq, vec!["nothingSupportsThis", "nothingSupportsThisEither"]);
}

#[test]
fn invut_sdp01_regaut01_bodies_and_headers_untouched() {
    let m = parsed("invut");
    assert_eq!(m.value(&HeaderName::ContentType), Some("application/unknownformat"));
    assert_eq!(m.body().len(), 40);
    let m = parsed("sdp01");
    assert_eq!(m.headers_by_text("Accept").next().map(|h| m.text(h.value)), Some("text/nobodyKnowsThis"));
    let m = parsed("regaut01");
    assert_eq!(m.value(&HeaderName::Authorization), Some("NoOneKnowsThisScheme opaque-data=here"));
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn multi01_and_mcl01_duplicates() {
    let m = parsed("multi01");
    assert_eq!(m.check_request(), Err(ParseError::Duplicate("CSeq")));
    assert_eq!(m.headers_named(&HeaderName::CallId).count(), 2);
    // Two Content-Length headers that agree are harmless; that disagree, fatal.
    assert_eq!(SipMsg::parse(Bytes::from_static(raw("mcl01"))).err(), Some(ParseError::ContentLength));
    let same = b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(SipMsg::parse(Bytes::from_static(same)).map(|m| m.body().to_vec()), Ok(b"hi".to_vec()));
}

#[test]
fn bcast_second_via_is_broadcast() {
    let m = parsed("bcast");
    assert_eq!(m.check_reply(), Ok(()));
    let vias = m.values(&HeaderName::Via);
    let next = Via::parse(vias[1].1).expect("via");
    assert_eq!(Host::parse(next.host), Host::Ip(std::net::Ipv4Addr::BROADCAST.into()));
}

#[test]
fn zeromf_max_forwards_zero() {
    assert_eq!(parsed("zeromf").max_forwards(), Some(Ok(0)));
}

#[test]
fn contact_parameters_cparam01_cparam02_regescrt() {
    // addr-spec form: ;unknownparam is a contact parameter.
    let m = parsed("cparam01");
    let c = NameAddr::parse(m.value(&HeaderName::Contact).expect("contact")).expect("value");
    assert_eq!((c.uri, c.params), ("sip:+19725552222@gw1.example.net", ";unknownparam"));
    // name-addr form: it is a URI parameter.
    let m = parsed("cparam02");
    let c = NameAddr::parse(m.value(&HeaderName::Contact).expect("contact")).expect("value");
    assert_eq!(c.params, "");
    assert_eq!(Uri::parse(c.uri).and_then(|u| u.param("unknownparam")), Some(None));
    // An escaped header inside <> stays escaped in the URI.
    let m = parsed("regescrt");
    let c = NameAddr::parse(m.value(&HeaderName::Contact).expect("M:")).expect("value");
    assert_eq!(Uri::parse(c.uri).map(|u| u.headers()), Some("?Route=%3Csip:sip.example.com%3E"));
}

#[test]
fn inv2543_rfc2543_request() {
    let m = parsed("inv2543");
    let (_, via) = m.top_via().expect("via");
    assert_eq!((via.host, via.branch()), ("iftgw.example.com", None));
    assert!(m.max_forwards().is_none());
    assert!(m.content_length().is_none());
    assert_eq!(m.body().len(), 105, "no Content-Length on UDP: the body is the rest of the datagram");
    // In the addr-spec To, ;user=phone is a header parameter (RFC 3261 §20.10).
    assert_eq!(m.to().map(|t| t.params), Some(";user=phone"));
    assert_eq!(m.values(&HeaderName::RecordRoute).len(), 1);
}
