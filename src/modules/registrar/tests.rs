use super::*;
use crate::config::{RegistrarConfig, UsrlocConfig};

fn registrar(max_contacts: u32) -> Registrar {
    let cfg = RegistrarConfig { max_contacts, ..RegistrarConfig::default() };
    Registrar::new(&cfg, Arc::new(Usrloc::new(&UsrlocConfig::default())))
}

fn contact(uri: &str) -> ContactIn {
    ContactIn { uri: uri.into(), ..ContactIn::default() }
}

fn request(contacts: Contacts, expires: Option<u32>, cseq: u32, now: i64) -> SaveRequest {
    SaveRequest {
        aor: "alice".into(),
        contacts,
        expires,
        callid: "call-1".into(),
        cseq,
        received: None,
        path: Vec::new(),
        path_supported: false,
        socket: Some("udp:127.0.0.1:5060".into()),
        bflags: 0,
        user_agent: "ua".into(),
        methods: None,
        now,
    }
}

fn uris(s: &Saved) -> Vec<&str> {
    s.bindings.iter().map(|c| c.uri.as_str()).collect()
}

#[test]
fn flags_parse_3x_names_and_refuse_letters() {
    let f = SaveFlags::parse("memory-only, max-contacts=2,path-strict, min-expires=30").expect("valid");
    assert!(f.memory_only);
    assert_eq!(f.max_contacts, Some(2));
    assert_eq!(f.path, PathMode::Strict);
    assert_eq!(f.min_expires, Some(30));
    assert!(SaveFlags::parse("fc2").is_err());
    assert!(SaveFlags::parse("max-contacts=x").is_err());
}

#[test]
fn q_values_round_trip() {
    assert_eq!(parse_q("0.5"), Some(500));
    assert_eq!(parse_q("1"), Some(1000));
    assert_eq!(parse_q("1.000"), Some(1000));
    assert_eq!(parse_q("0.125"), Some(125));
    assert_eq!(parse_q("1.5"), None);
    assert_eq!(parse_q("0.1234"), None);
    assert_eq!(format_q(500), "0.5");
    assert_eq!(format_q(1000), "1");
    assert_eq!(format_q(0), "0");
    assert_eq!(format_q(125), "0.125");
}

#[test]
fn expiry_limits() {
    let r = registrar(0);
    let f = SaveFlags::default();
    let c = ContactIn { expires: Some(10), ..contact("sip:a@h") };
    assert_eq!(r.expiry(&c, Some(7200), &f), 60, "below min_expires is raised, not refused");
    assert_eq!(r.expiry(&contact("sip:a@h"), Some(7200), &f), 7200, "the header applies without a param");
    assert_eq!(r.expiry(&contact("sip:a@h"), None, &f), 3600, "default_expires");
    let f = SaveFlags { max_expires: Some(300), ..SaveFlags::default() };
    assert_eq!(r.expiry(&contact("sip:a@h"), Some(7200), &f), 300);
    assert_eq!(r.expiry(&ContactIn { expires: Some(0), ..contact("sip:a@h") }, Some(7200), &f), 0);
}

#[test]
fn add_refresh_remove_and_star() {
    let r = registrar(0);
    let f = SaveFlags::default();
    let two = Contacts::List(vec![
        ContactIn { q: Some(500), ..contact("sip:a@1.2.3.4") },
        ContactIn { q: Some(1000), ..contact("sip:a@5.6.7.8") },
    ]);
    let s = r.save("location", &request(two, Some(600), 1, 1000), &f).expect("saved");
    assert_eq!(uris(&s), ["sip:a@5.6.7.8", "sip:a@1.2.3.4"], "ordered by q");
    let id = s.bindings[0].id;
    let refresh = Contacts::List(vec![contact("sip:a@5.6.7.8")]);
    let s = r.save("location", &request(refresh, Some(900), 2, 1010), &f).expect("refreshed");
    let refreshed = s.bindings.iter().find(|c| c.uri == "sip:a@5.6.7.8").expect("still there");
    assert_eq!((refreshed.id, refreshed.expires), (id, 1910), "same binding, new expiry");
    let gone = Contacts::List(vec![ContactIn { expires: Some(0), ..contact("sip:a@1.2.3.4") }]);
    let s = r.save("location", &request(gone, None, 3, 1020), &f).expect("removed one");
    assert_eq!(uris(&s), ["sip:a@5.6.7.8"]);
    let q = r.save("location", &request(Contacts::None, None, 4, 1030), &f).expect("query");
    assert_eq!(uris(&q), ["sip:a@5.6.7.8"]);
    let bad = r.save("location", &request(Contacts::Star, Some(60), 5, 1040), &f);
    assert_eq!(bad.map_err(|e| e.code), Err(400), "* needs Expires: 0");
    let s = r.save("location", &request(Contacts::Star, Some(0), 6, 1050), &f).expect("all removed");
    assert!(s.bindings.is_empty());
    assert!(r.ul.lookup("location", "alice", 1050).is_empty());
}

#[test]
fn old_cseq_is_refused_but_a_retransmission_is_not() {
    let r = registrar(0);
    let f = SaveFlags::default();
    let one = || Contacts::List(vec![contact("sip:a@1.2.3.4")]);
    r.save("location", &request(one(), Some(600), 5, 1000), &f).expect("saved");
    assert!(r.save("location", &request(one(), Some(600), 5, 1005), &f).is_ok(), "retransmission");
    let old = r.save("location", &request(one(), Some(600), 4, 1006), &f);
    assert_eq!(old.map_err(|e| e.code), Err(400));
    let late = r.save("location", &request(one(), Some(600), 5, 1100), &f);
    assert_eq!(late.map_err(|e| e.code), Err(400), "same CSeq after cseq_delay");
}

#[test]
fn max_contacts_refuses_or_evicts() {
    let r = registrar(1);
    let f = SaveFlags::default();
    r.save("location", &request(Contacts::List(vec![contact("sip:a@1")]), Some(600), 1, 1000), &f).expect("first");
    let second = Contacts::List(vec![contact("sip:a@2")]);
    let refused = r.save("location", &request(second.clone(), Some(600), 2, 1001), &f);
    assert_eq!(refused.map_err(|e| e.code), Err(503));
    let force = SaveFlags { force_registration: true, ..SaveFlags::default() };
    let s = r.save("location", &request(second, Some(600), 3, 1002), &force).expect("evicted the oldest");
    assert_eq!(uris(&s), ["sip:a@2"]);
}

#[test]
fn path_strict_needs_supported_path_and_path_received_sets_received() {
    let r = registrar(0);
    let mut req = request(Contacts::List(vec![contact("sip:a@10.0.0.1")]), Some(600), 1, 1000);
    req.path = vec!["<sip:edge.example.com;lr;received=sip:198.51.100.7:40000>".into()];
    let strict = SaveFlags { path: PathMode::Strict, ..SaveFlags::default() };
    assert_eq!(r.save("location", &req, &strict).map_err(|e| e.code), Err(420));
    req.path_supported = true;
    let f = SaveFlags { path: PathMode::Strict, path_received: true, ..SaveFlags::default() };
    let s = r.save("location", &req, &f).expect("saved");
    assert_eq!(s.bindings[0].received.as_deref(), Some("sip:198.51.100.7:40000"));
    assert!(s.bindings[0].path.as_deref().is_some_and(|p| p.contains("edge.example.com")));
}

#[test]
fn instance_matching_replaces_the_binding_of_a_moved_device() {
    let r = registrar(0);
    let f = SaveFlags::default();
    let at = |uri: &str| ContactIn { instance: Some("urn:uuid:1".into()), reg_id: 1, ..contact(uri) };
    r.save("location", &request(Contacts::List(vec![at("sip:a@1")]), Some(600), 1, 1000), &f).expect("first");
    let mut req = request(Contacts::List(vec![at("sip:a@2")]), Some(600), 1, 1001);
    req.callid = "call-2".into();
    let s = r.save("location", &req, &f).expect("moved");
    assert_eq!(uris(&s), ["sip:a@2"], "RFC 5626 §6: same instance and reg-id is the same binding");
}

#[test]
fn contact_lines_show_expiry_q_and_received() {
    let r = registrar(0);
    let mut req =
        request(Contacts::List(vec![ContactIn { q: Some(700), ..contact("sip:a@10.0.0.1") }]), Some(600), 1, 1000);
    req.received = Some("sip:192.0.2.1:5062".into());
    let s = r.save("location", &req, &SaveFlags::default()).expect("saved");
    assert_eq!(
        contact_line(&s.bindings[0], 1100, "received"),
        "<sip:a@10.0.0.1>;expires=500;q=0.7;received=\"sip:192.0.2.1:5062\""
    );
}

#[test]
fn the_same_contact_twice_is_one_binding_and_the_later_wins() {
    let r = registrar(0);
    let f = SaveFlags::default();
    let twice = Contacts::List(vec![contact("sip:a@1.2.3.4"), contact("sip:a@1.2.3.4")]);
    let s = r.save("location", &request(twice, Some(600), 1, 1000), &f).expect("saved");
    assert_eq!(uris(&s), ["sip:a@1.2.3.4"]);
    let then_gone =
        Contacts::List(vec![contact("sip:a@5.6.7.8"), ContactIn { expires: Some(0), ..contact("sip:a@5.6.7.8") }]);
    let s = r.save("location", &request(then_gone, Some(600), 2, 1001), &f).expect("saved");
    assert_eq!(uris(&s), ["sip:a@1.2.3.4"], "the later Contact (expires=0) wins");
}

#[test]
fn star_needs_a_higher_cseq_for_bindings_of_its_call_id() {
    let r = registrar(0);
    let f = SaveFlags::default();
    r.save("location", &request(Contacts::List(vec![contact("sip:a@1")]), Some(600), 5, 1000), &f).expect("saved");
    let old = r.save("location", &request(Contacts::Star, Some(0), 4, 1001), &f);
    assert_eq!(old.map_err(|e| e.code), Err(400), "RFC 3261 §10.3 step 6");
    assert_eq!(r.ul.lookup("location", "alice", 1001).len(), 1, "nothing removed");
    assert!(r.save("location", &request(Contacts::Star, Some(0), 6, 1002), &f).is_ok());
    assert!(r.ul.lookup("location", "alice", 1002).is_empty());
}
