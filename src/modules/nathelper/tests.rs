//! Unit tests of nathelper on real message bytes: every `nat_uac_test` test, every fix, the
//! SDP rewrites and the Content-Length they leave.

use super::*;
use bytes::Bytes;

fn msg(s: &str) -> SipMsg {
    SipMsg::parse(Bytes::from(s.to_string())).expect("test message parses")
}

fn render(m: &SipMsg, e: &Edits) -> String {
    String::from_utf8(Edits::render(m, &[e])).expect("utf8")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A NAT-ed UA at 192.168.1.20:5060 seen from 203.0.113.7:40123.
const NAT_SRC: &str = "203.0.113.7:40123";

fn invite(via: &str, contact: &str, sdp: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {via};branch=z9hG4bK-n1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: nat-1@192.168.1.20\r\n\
CSeq: 1 INVITE\r\n\
Contact: {contact}\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\n\
s=-\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn nat_invite() -> SipMsg {
    msg(&invite("192.168.1.20:5060", "<sip:alice@192.168.1.20:5060;ob>", SDP))
}

fn t(mask: u32) -> Tests {
    Tests(mask)
}

/// The body and the Content-Length of a rendered message agree.
fn assert_length_right(out: &str) {
    let (head, body) = out.split_once("\r\n\r\n").expect("header end");
    let cl: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(cl, body.len(), "Content-Length vs body in:\n{out}");
    msg(out);
}

// ------------------------------------------------------------------ addresses and flags

#[test]
fn private_ranges() {
    let p = |s: &str, cgn| is_private(s.parse().expect("ip"), cgn);
    for a in ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1", "100.127.255.254"] {
        assert!(p(a, false), "{a}");
    }
    for a in ["172.15.0.1", "172.32.0.1", "100.63.255.255", "100.128.0.1", "203.0.113.7", "192.0.0.1", "::1"] {
        assert!(!p(a, false), "{a}");
    }
    // RFC 6333 only with carrier-grade-nat: 192.0.0.0/29.
    assert!(p("192.0.0.1", true) && p("192.0.0.7", true));
    assert!(!p("192.0.0.8", true));
    assert!(p("::ffff:10.0.0.1", false), "an IPv4-mapped address is its IPv4 address");
}

#[test]
fn test_names_and_masks() {
    assert_eq!(Tests::parse("private-contact,diff-port-src-via"), Ok(t(17)));
    assert_eq!(Tests::parse(" diff-ip-src-via , private-sdp "), Ok(t(10)));
    assert_eq!(Tests::parse("19"), Ok(t(19)), "old numeric masks are accepted (unlike 3.x)");
    assert_eq!(Tests::from_mask(127), Ok(t(127)));
    assert_eq!(Tests::parse("carrier-grade-nat"), Ok(t(128)));
    assert_eq!(Tests::parse("private-contacts"), Err(NatError::UnknownTest("private-contacts".into())));
    assert_eq!(Tests::from_mask(256), Err(NatError::BadMask(256)));
    assert_eq!(Tests::from_mask(-1), Err(NatError::BadMask(-1)));
    assert_eq!(SdpFlags::parse("rewrite-media-ip,add-no-rtpproxy"), Ok(SdpFlags(6)));
    assert_eq!(SdpFlags::parse("10"), Ok(SdpFlags(10)));
    assert_eq!(SdpFlags::parse("rewrite-ip"), Err(NatError::UnknownFlag("rewrite-ip".into())));
    assert_eq!(SdpFlags::from_mask(32), Err(NatError::BadMask(32)));
}

// ------------------------------------------------------------------ nat_uac_test

#[test]
fn each_test_on_a_natted_invite() {
    let m = nat_invite();
    let src = addr(NAT_SRC);
    for bit in [1, 2, 4, 8, 16, 32, 64] {
        assert!(nat_uac_test(&m, src, t(bit)), "bit {bit} should match");
    }
    assert!(nat_uac_test(&m, src, t(19)));
    assert!(!nat_uac_test(&m, src, t(0)));
    assert!(!nat_uac_test(&m, src, t(128)), "carrier-grade-nat alone tests nothing");
}

#[test]
fn each_test_on_a_public_ua() {
    let m =
        msg(&invite("203.0.113.7:40123", "<sip:alice@203.0.113.7:40123>", &SDP.replace("192.168.1.20", "203.0.113.7")));
    let src = addr(NAT_SRC);
    for bit in [1, 2, 4, 8, 16, 32, 64, 127, 255] {
        assert!(!nat_uac_test(&m, src, t(bit)), "bit {bit} should not match");
    }
}

#[test]
fn default_ports_and_host_names() {
    // No port in Via or Contact means 5060; a source on 5060 then matches.
    let m = msg(&invite("203.0.113.7", "<sip:alice@203.0.113.7>", SDP));
    assert!(!nat_uac_test(&m, addr("203.0.113.7:5060"), t(16 | 64)));
    assert!(nat_uac_test(&m, addr("203.0.113.7:5062"), t(16)));
    assert!(nat_uac_test(&m, addr("203.0.113.7:5062"), t(64)));
    // A sips: Contact defaults to 5061.
    let s = msg(&invite("203.0.113.7", "<sips:alice@203.0.113.7>", SDP));
    assert!(!nat_uac_test(&s, addr("203.0.113.7:5061"), t(64)));
    // A host name never equals the source address, and is not private.
    let h = msg(&invite("ua.example.com:5060", "<sip:alice@ua.example.com>", SDP));
    assert!(nat_uac_test(&h, addr("203.0.113.7:5060"), t(2)));
    assert!(nat_uac_test(&h, addr("203.0.113.7:5060"), t(32)));
    assert!(!nat_uac_test(&h, addr("203.0.113.7:5060"), t(1 | 4)));
}

#[test]
fn carrier_grade_nat_widens_private() {
    let m = msg(&invite("192.0.0.2:5060", "<sip:alice@192.0.0.2:5060>", &SDP.replace("192.168.1.20", "192.0.0.2")));
    let src = addr(NAT_SRC);
    for bit in [1, 4, 8] {
        assert!(!nat_uac_test(&m, src, t(bit)), "bit {bit} without cgn");
        assert!(nat_uac_test(&m, src, t(bit | 128)), "bit {bit} with cgn");
    }
    // RFC 6598 space counts without the modifier.
    let shared = msg(&invite("100.64.3.4:5060", "<sip:a@100.64.3.4>", SDP));
    assert!(nat_uac_test(&shared, src, t(1 | 4)));
}

#[test]
fn tests_without_contact_or_sdp() {
    let reg = msg("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: *\r\nContent-Length: 0\r\n\r\n");
    let src = addr(NAT_SRC);
    assert!(!nat_uac_test(&reg, src, t(1 | 8 | 32 | 64)));
    assert!(nat_uac_test(&reg, src, t(4)));
    // An addr-spec Contact with header parameters.
    let bare = msg(&invite("203.0.113.7:40123", "sip:alice@10.0.0.9;expires=60", ""));
    assert!(nat_uac_test(&bare, src, t(1)));
    assert!(!nat_uac_test(&bare, src, t(8)), "no SDP, nothing private in it");
}

// ------------------------------------------------------------------ fix_nated_contact

#[test]
fn fix_contact_rewrites_host_and_port() {
    let m = nat_invite();
    let mut e = Edits::new();
    fix_contact(&m, &mut e, addr(NAT_SRC), "").expect("fixed");
    let out = render(&m, &e);
    assert!(out.contains("\r\nContact: <sip:alice@203.0.113.7:40123;ob>\r\n"), "{out}");
    // A lump: the message read still shows the old Contact.
    assert!(m.value(&HeaderName::Contact).is_some_and(|c| c.contains("192.168.1.20")));
}

#[test]
fn fix_contact_params_port_added_and_ipv6() {
    let m = msg(&invite("192.168.1.20", "\"A\" <sip:alice@192.168.1.20?Subject=x>;expires=30", ""));
    let mut e = Edits::new();
    fix_contact(&m, &mut e, addr("[2001:db8::7]:5070"), "nat=yes").expect("fixed");
    let out = render(&m, &e);
    assert!(out.contains("Contact: \"A\" <sip:alice@[2001:db8::7]:5070;nat=yes?Subject=x>;expires=30\r\n"), "{out}");
    // A second call replaces the first edit instead of stacking a second one.
    fix_contact(&m, &mut e, addr(NAT_SRC), "").expect("fixed");
    assert!(render(&m, &e).contains("Contact: \"A\" <sip:alice@203.0.113.7:40123?Subject=x>;expires=30\r\n"));
}

#[test]
fn fix_contact_addr_spec_is_bracketed_for_params() {
    let m = msg(&invite("192.168.1.20", "sip:alice@192.168.1.20;expires=60", ""));
    let mut e = Edits::new();
    fix_contact(&m, &mut e, addr(NAT_SRC), ";nat=yes").expect("fixed");
    assert!(render(&m, &e).contains("Contact: <sip:alice@203.0.113.7:40123;nat=yes>;expires=60\r\n"));
    let mut plain = Edits::new();
    fix_contact(&m, &mut plain, addr(NAT_SRC), "").expect("fixed");
    assert!(render(&m, &plain).contains("Contact: sip:alice@203.0.113.7:40123;expires=60\r\n"));
}

#[test]
fn fix_contact_on_a_reply_and_refusals() {
    let reply = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nm: <sip:bob@10.1.1.1:5062;transport=tcp>, <sip:bob@10.1.1.2>\r\nContent-Length: 0\r\n\r\n");
    let mut e = Edits::new();
    fix_contact(&reply, &mut e, addr("198.51.100.4:61000"), "").expect("fixed");
    let out = render(&reply, &e);
    assert!(
        out.contains("m: <sip:bob@198.51.100.4:61000;transport=tcp>, <sip:bob@10.1.1.2>\r\n"),
        "only the first: {out}"
    );

    let star = msg("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\n\r\n");
    assert_eq!(fix_contact(&star, &mut Edits::new(), addr(NAT_SRC), ""), Err(NatError::NoContact));
    let tel = msg(&invite("h", "<tel:+15551234>", ""));
    assert_eq!(fix_contact(&tel, &mut Edits::new(), addr(NAT_SRC), ""), Err(NatError::BadContact));
}

// ------------------------------------------------------------------ received URI, add_rcv_param, Path

#[test]
fn received_uris() {
    assert_eq!(received_uri(addr(NAT_SRC), "udp"), "sip:203.0.113.7:40123");
    assert_eq!(received_uri(addr(NAT_SRC), "TCP"), "sip:203.0.113.7:40123;transport=tcp");
    assert_eq!(received_uri(addr("[2001:db8::1]:5060"), "udp"), "sip:[2001:db8::1]:5060");
}

fn register_msg(contacts: &str) -> SipMsg {
    msg(&format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.168.1.20:5060;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n{contacts}Content-Length: 0\r\n\r\n"))
}

#[test]
fn rcv_param_as_header_param_on_every_contact() {
    let m = register_msg("Contact: <sip:a@192.168.1.20:5060>;expires=60, sip:a@192.168.1.20:5070\r\n");
    let mut e = Edits::new();
    assert_eq!(add_rcv_param(&m, &mut e, addr(NAT_SRC), "tcp", false), Ok(2));
    let out = render(&m, &e);
    assert!(
        out.contains("Contact: <sip:a@192.168.1.20:5060>;expires=60;received=\"sip:203.0.113.7:40123;transport=tcp\", sip:a@192.168.1.20:5070;received=\"sip:203.0.113.7:40123;transport=tcp\"\r\n"),
        "{out}"
    );
}

#[test]
fn rcv_param_as_uri_param() {
    let m = register_msg("Contact: <sip:a@192.168.1.20:5060;ob>;expires=60\r\nContact: sip:a@192.168.1.20\r\n");
    let mut e = Edits::new();
    assert_eq!(add_rcv_param(&m, &mut e, addr(NAT_SRC), "tcp", true), Ok(2));
    let out = render(&m, &e);
    assert!(
        out.contains(
            "Contact: <sip:a@192.168.1.20:5060;ob;received=sip:203.0.113.7:40123%3Btransport%3Dtcp>;expires=60\r\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Contact: <sip:a@192.168.1.20;received=sip:203.0.113.7:40123%3Btransport%3Dtcp>\r\n"),
        "{out}"
    );
    assert_eq!(
        add_rcv_param(&register_msg(""), &mut Edits::new(), addr(NAT_SRC), "udp", false),
        Err(NatError::NoContact)
    );
}

#[test]
fn path_lines() {
    let m = register_msg("Contact: <sip:a@192.168.1.20>\r\n");
    let local = addr("10.0.0.1:5060");
    let mut e = Edits::new();
    add_path(&m, &mut e, local, addr(NAT_SRC), "udp", None, true).expect("added");
    let out = render(&m, &e);
    assert!(out.contains("CSeq: 1 REGISTER\r\nContact: <sip:a@192.168.1.20>\r\nContent-Length: 0\r\nPath: <sip:10.0.0.1:5060;lr;received=sip:203.0.113.7:40123>\r\n\r\n"), "{out}");
    // Above a Path already there, with a user and a transport.
    let m2 = register_msg("Path: <sip:edge2.example.com;lr>\r\n");
    let mut e2 = Edits::new();
    add_path(&m2, &mut e2, local, addr(NAT_SRC), "tcp", Some("u1"), true).expect("added");
    assert!(render(&m2, &e2).contains(
        "Path: <sip:u1@10.0.0.1:5060;transport=tcp;lr;received=sip:203.0.113.7:40123%3Btransport%3Dtcp>\r\nPath: <sip:edge2.example.com;lr>\r\n"
    ));
    let mut e3 = Edits::new();
    add_path(&m2, &mut e3, local, addr(NAT_SRC), "udp", None, false).expect("added");
    assert!(render(&m2, &e3).contains("Path: <sip:10.0.0.1:5060;lr>\r\nPath: <sip:edge2"));
    assert_eq!(
        add_path(&nat_invite(), &mut Edits::new(), local, addr(NAT_SRC), "udp", None, false),
        Err(NatError::NotRegister)
    );
}

// ------------------------------------------------------------------ fix_nated_sdp

fn fix(m: &SipMsg, flags: u32, ip: &str, opts: &SdpOptions) -> (Result<usize, NatError>, String) {
    let mut e = Edits::new();
    let r = fix_sdp(m, &mut e, SdpFlags(flags), ip.parse().expect("ip"), opts);
    (r, render(m, &e))
}

#[test]
fn sdp_media_ip_rewritten_with_old_ip_kept() {
    let m = nat_invite();
    let (r, out) = fix(&m, SdpFlags::REWRITE_MEDIA_IP, "203.0.113.7", &SdpOptions::default());
    assert_eq!(r, Ok(2));
    let body = out.split_once("\r\n\r\n").expect("body").1;
    assert_eq!(
        body,
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\na=oldcip:192.168.1.20\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    assert_length_right(&out);
    assert!(!out.contains(&format!("Content-Length: {}\r\n", SDP.len())));
}

#[test]
fn sdp_origin_media_level_and_oldip_skip() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.9\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 10.0.0.9\r\na=sendrecv\r\n";
    let m = msg(&invite("10.0.0.9", "<sip:a@10.0.0.9>", sdp));
    let (r, out) =
        fix(&m, SdpFlags::REWRITE_MEDIA_IP | SdpFlags::REWRITE_ORIGIN_IP, "198.51.100.1", &SdpOptions::default());
    assert_eq!(r, Ok(6));
    let body = out.split_once("\r\n\r\n").expect("body").1;
    assert_eq!(
        body,
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\na=oldoip:10.0.0.9\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.1\r\na=oldcip:10.0.0.9\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 198.51.100.1\r\na=sendrecv\r\na=oldcip:10.0.0.9\r\n"
    );
    assert_length_right(&out);

    let skip = SdpOptions { oldip_skip: true, ..SdpOptions::default() };
    let (r, out) = fix(&m, SdpFlags::REWRITE_MEDIA_IP | SdpFlags::REWRITE_ORIGIN_IP, "198.51.100.1", &skip);
    assert_eq!(r, Ok(3));
    assert!(!out.contains("a=old"));
    assert_length_right(&out);
}

#[test]
fn sdp_null_ips_kept_unless_asked() {
    let m = msg(&invite("10.0.0.9", "<sip:a@10.0.0.9>", &SDP.replace("c=IN IP4 192.168.1.20", "c=IN IP4 0.0.0.0")));
    let (r, out) = fix(&m, SdpFlags::REWRITE_MEDIA_IP, "203.0.113.7", &SdpOptions::default());
    assert_eq!(r, Ok(0), "hold (RFC 3264 §8.4) stays");
    assert!(out.contains("c=IN IP4 0.0.0.0\r\n"));
    let (r, out) =
        fix(&m, SdpFlags::REWRITE_MEDIA_IP | SdpFlags::REWRITE_NULL_IPS, "203.0.113.7", &SdpOptions::default());
    assert_eq!(r, Ok(2));
    assert!(out.contains("c=IN IP4 203.0.113.7\r\n") && out.contains("a=oldcip:0.0.0.0\r\n"));
    assert_length_right(&out);
}

#[test]
fn sdp_added_lines_once_and_ipv6() {
    let m = nat_invite();
    let flags = SdpFlags::ADD_DIR_ACTIVE | SdpFlags::ADD_NO_RTPPROXY;
    let (r, out) = fix(&m, flags, "203.0.113.7", &SdpOptions::default());
    assert_eq!(r, Ok(2));
    assert!(out.contains("t=0 0\r\na=direction:active\r\na=nortpproxy:yes\r\nm=audio"), "{out}");
    assert_length_right(&out);
    // Already marked: nothing to add.
    let marked = msg(&invite("h", "<sip:a@h>", &format!("{SDP}a=nortpproxy:yes\r\n")));
    assert_eq!(fix(&marked, SdpFlags::ADD_NO_RTPPROXY, "203.0.113.7", &SdpOptions::default()).0, Ok(0));
    // An IPv6 address changes the address type too (RFC 4566 §5.7).
    let (r, out) = fix(&m, SdpFlags::REWRITE_MEDIA_IP, "2001:db8::5", &SdpOptions::default());
    assert_eq!(r, Ok(2));
    assert!(out.contains("c=IN IP6 2001:db8::5\r\n"), "{out}");
    assert_length_right(&out);
}

#[test]
fn sdp_with_lf_lines_no_final_break_and_no_content_length() {
    // A UDP message may omit Content-Length (RFC 3261 §18.3): one is added.
    let raw = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0";
    let m = msg(raw);
    let (r, out) =
        fix(&m, SdpFlags::REWRITE_MEDIA_IP | SdpFlags::ADD_NO_RTPPROXY, "203.0.113.7", &SdpOptions::default());
    assert_eq!(r, Ok(3));
    let body = out.split_once("\r\n\r\n").expect("body").1;
    assert_eq!(
        body,
        "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 203.0.113.7\nt=0 0\na=oldcip:10.0.0.9\na=nortpproxy:yes"
    );
    assert_length_right(&out);
}

#[test]
fn sdp_repeated_calls_keep_one_content_length() {
    let m = nat_invite();
    let mut e = Edits::new();
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    let o = SdpOptions::default();
    assert_eq!(fix_sdp(&m, &mut e, SdpFlags(SdpFlags::REWRITE_MEDIA_IP), ip, &o), Ok(2));
    assert_eq!(fix_sdp(&m, &mut e, SdpFlags(SdpFlags::REWRITE_MEDIA_IP), ip, &o), Ok(0), "already rewritten");
    assert_eq!(fix_sdp(&m, &mut e, SdpFlags(SdpFlags::ADD_NO_RTPPROXY | SdpFlags::REWRITE_ORIGIN_IP), ip, &o), Ok(3));
    let out = render(&m, &e);
    assert_eq!(out.matches("Content-Length:").count(), 1);
    assert_eq!(out.matches("a=oldcip:").count(), 1);
    assert_length_right(&out);
}

#[test]
fn sdp_refusals_and_private_test() {
    let none = msg(&invite("h", "<sip:a@h>", ""));
    assert_eq!(fix(&none, 2, "203.0.113.7", &SdpOptions::default()).0, Err(NatError::NoSdp));
    let other = msg(&invite("h", "<sip:a@h>", SDP).replace("application/sdp", "text/plain"));
    assert_eq!(fix(&other, 2, "203.0.113.7", &SdpOptions::default()).0, Err(NatError::NoSdp));
    assert!(!sdp_has_private(&other, false), "only an SDP body is read");
    assert!(sdp_has_private(&nat_invite(), false));
    let held = msg(&invite("h", "<sip:a@h>", &SDP.replace("c=IN IP4 192.168.1.20", "c=IN IP4 0.0.0.0")));
    assert!(!sdp_has_private(&held, false));
}
