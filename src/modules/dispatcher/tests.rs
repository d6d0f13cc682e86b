//! Unit tests of the dispatcher logic (selection, state, probing, reload).

use super::*;

fn row(id: i64, setid: i64, uri: &str, weight: &str, priority: i64) -> DsRow {
    DsRow { id, weight: weight.into(), priority, ..DsRow::new(setid, uri) }
}

fn ds_with(cfg: DispatcherConfig, rows: Vec<DsRow>) -> Dispatcher {
    let ds = Dispatcher::new(&cfg);
    ds.replace(rows, false);
    ds
}

/// Set 1: three destinations a, b, c (weights 1, 1, 1).
fn three() -> Dispatcher {
    ds_with(
        DispatcherConfig::default(),
        vec![
            row(1, 1, "sip:10.0.0.1:5060", "1", 0),
            row(2, 1, "sip:10.0.0.2:5060", "1", 0),
            row(3, 1, "sip:10.0.0.3:5060", "1", 0),
        ],
    )
}

fn call(id: &str) -> SelectInput<'_> {
    SelectInput { call_id: Some(id), ..Default::default() }
}

fn pick(ds: &Dispatcher, alg: i64, input: &SelectInput<'_>, flags: &str) -> Option<String> {
    ds.select(1, alg, input, Flags::parse(flags), None).ok().map(|s| s.dst.uri)
}

fn counts(ds: &Dispatcher, alg: i64, n: usize, flags: &str) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for i in 0..n {
        let id = format!("call-{i}@host");
        if let Some(u) = pick(ds, alg, &call(&id), flags) {
            *m.entry(u).or_default() += 1;
        }
    }
    m
}

#[test]
fn hash_on_call_id_is_sticky_and_spreads() {
    let ds = three();
    for i in 0..50 {
        let id = format!("sticky-{i}");
        let first = pick(&ds, 0, &call(&id), "").unwrap();
        for _ in 0..3 {
            assert_eq!(pick(&ds, 0, &call(&id), "").unwrap(), first);
        }
    }
    let c = counts(&ds, 0, 3000, "");
    assert_eq!(c.len(), 3);
    for n in c.values() {
        assert!((800..1200).contains(n), "{c:?}");
    }
    // No Call-ID, nothing to hash.
    assert!(ds.select(1, 0, &SelectInput::default(), Flags::default(), None).is_err());
}

#[test]
fn hash_on_uris_with_user_only_flag() {
    let ds = three();
    let a = SelectInput { from_uri: Some("sip:alice@example.com"), ..Default::default() };
    let a_port = SelectInput { from_uri: Some("sip:alice@example.com:5060;transport=udp"), ..Default::default() };
    assert_eq!(pick(&ds, 1, &a, ""), pick(&ds, 1, &a_port, ""), "the default port is left out of the key");
    assert_eq!(uri_hash_key("sip:alice@Example.com:5080", false).unwrap(), "alice@example.com:5080");
    assert_eq!(uri_hash_key("sips:alice@example.com:5061", false).unwrap(), "alice@example.com");
    assert_eq!(uri_hash_key("sip:alice@example.com:5080", true).unwrap(), "alice");
    // With `u`, every domain of one user goes to the same place.
    for i in 0..20 {
        let f1 = format!("sip:user{i}@a.example.com");
        let f2 = format!("sip:user{i}@b.example.com");
        let x = SelectInput { to_uri: Some(&f1), ruri: Some(&f1), ..Default::default() };
        let y = SelectInput { to_uri: Some(&f2), ruri: Some(&f2), ..Default::default() };
        assert_eq!(pick(&ds, 2, &x, "u"), pick(&ds, 2, &y, "u"));
        assert_eq!(pick(&ds, 3, &x, "u"), pick(&ds, 3, &y, "u"));
    }
    assert!(ds.select(1, 1, &SelectInput::default(), Flags::default(), None).is_err(), "no From");
    let bad = SelectInput { ruri: Some("not a uri"), ..Default::default() };
    assert!(ds.select(1, 3, &bad, Flags::default(), None).is_err());
}

#[test]
fn weights_are_proportional() {
    let ds = ds_with(
        DispatcherConfig::default(),
        vec![row(1, 1, "sip:10.0.0.1", "1", 0), row(2, 1, "sip:10.0.0.2", "2", 0), row(3, 1, "sip:10.0.0.3", "3", 0)],
    );
    let c = counts(&ds, 0, 6000, "");
    let get = |u: &str| *c.get(u).unwrap_or(&0) as f64;
    let (a, b, cc) = (get("sip:10.0.0.1"), get("sip:10.0.0.2"), get("sip:10.0.0.3"));
    assert!((850.0..1150.0).contains(&a), "{c:?}");
    assert!((1750.0..2250.0).contains(&b), "{c:?}");
    assert!((2700.0..3300.0).contains(&cc), "{c:?}");
    // Random (6) is weighted too.
    let c = counts(&ds, 6, 6000, "");
    assert!(c["sip:10.0.0.3"] > c["sip:10.0.0.1"] * 2, "{c:?}");
}

#[test]
fn weight_zero_everywhere_is_plain_modulo() {
    let ds = ds_with(
        DispatcherConfig::default(),
        vec![row(1, 1, "sip:10.0.0.1", "0", 0), row(2, 1, "sip:10.0.0.2", "0", 0)],
    );
    assert_eq!(counts(&ds, 0, 1000, "").len(), 2);
}

#[test]
fn inactive_entries_are_skipped_and_hash_redistributes() {
    let ds = three();
    let before: Vec<String> = (0..600).map(|i| pick(&ds, 0, &call(&format!("c{i}")), "").unwrap()).collect();
    ds.set_state(1, "sip:10.0.0.2:5060", DsState::Inactive).unwrap();
    let mut moved = std::collections::BTreeMap::new();
    for (i, was) in before.iter().enumerate() {
        let now = pick(&ds, 0, &call(&format!("c{i}")), "").unwrap();
        assert_ne!(now, "sip:10.0.0.2:5060");
        if was != "sip:10.0.0.2:5060" {
            assert_eq!(&now, was, "calls of live destinations stay where they were");
        } else {
            *moved.entry(now).or_insert(0) += 1;
        }
    }
    // The dead node's calls spread over both survivors.
    assert_eq!(moved.len(), 2, "{moved:?}");
    // Probing counts as not active either.
    ds.set_state(1, "sip:10.0.0.1:5060", DsState::Probing).unwrap();
    assert_eq!(counts(&ds, 0, 100, "").keys().collect::<Vec<_>>(), vec!["sip:10.0.0.3:5060"]);
    ds.set_state(1, "sip:10.0.0.3:5060", DsState::Inactive).unwrap();
    let e = ds.select(1, 0, &call("x"), Flags::default(), None).unwrap_err();
    assert!(e.contains("no active"), "{e}");
}

#[test]
fn round_robin_even_and_weighted() {
    let ds = three();
    let c = counts(&ds, 4, 300, "");
    assert!(c.values().all(|&n| n == 100), "{c:?}");
    // In order, one after the other.
    let seq: Vec<String> = (0..6).map(|_| pick(&ds, 4, &call("x"), "").unwrap()).collect();
    assert_eq!(seq[0..3].iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    assert_eq!(seq[0..3], seq[3..6]);

    let ds = ds_with(
        DispatcherConfig::default(),
        vec![row(1, 1, "sip:a.example.com", "2", 0), row(2, 1, "sip:b.example.com", "1", 0)],
    );
    let seq: Vec<String> = (0..6).map(|_| pick(&ds, 4, &call("x"), "").unwrap()).collect();
    let a = "sip:a.example.com".to_string();
    let b = "sip:b.example.com".to_string();
    assert_eq!(seq, vec![a.clone(), a.clone(), b.clone(), a.clone(), a, b]);
    // An inactive entry is stepped over.
    ds.set_state(1, "sip:a.example.com", DsState::Inactive).unwrap();
    assert!((0..4).all(|_| pick(&ds, 4, &call("x"), "").unwrap() == "sip:b.example.com"));
}

#[test]
fn auth_user_hash_falls_back_to_round_robin() {
    let ds = three();
    let alice = SelectInput { auth_user: Some("alice"), ..Default::default() };
    let first = pick(&ds, 5, &alice, "").unwrap();
    assert!((0..5).all(|_| pick(&ds, 5, &alice, "").unwrap() == first));
    let none = SelectInput::default();
    let seq: std::collections::BTreeSet<String> = (0..3).map(|_| pick(&ds, 5, &none, "").unwrap()).collect();
    assert_eq!(seq.len(), 3, "no credentials: round robin");
}

#[test]
fn random_covers_all() {
    let ds = three();
    assert_eq!(counts(&ds, 6, 300, "").len(), 3);
}

#[test]
fn pvar_hash_needs_text() {
    let ds = three();
    let a = SelectInput { pvar: Some("alice@example.com"), ..Default::default() };
    let first = pick(&ds, 7, &a, "").unwrap();
    assert!((0..5).all(|_| pick(&ds, 7, &a, "").unwrap() == first));
    assert!(ds.select(1, 7, &SelectInput { pvar: Some("  "), ..Default::default() }, Flags::default(), None).is_err());
    assert!(ds.select(1, 7, &SelectInput::default(), Flags::default(), None).is_err());
}

#[test]
fn first_by_priority() {
    let ds = ds_with(
        DispatcherConfig::default(),
        vec![
            row(1, 1, "sip:low.example.com", "1", 1),
            row(2, 1, "sip:high.example.com", "1", 10),
            row(3, 1, "sip:mid1.example.com", "1", 5),
            row(4, 1, "sip:mid2.example.com", "1", 5),
        ],
    );
    let order: Vec<String> = ds.destinations().into_iter().map(|d| d.uri).collect();
    assert_eq!(order, ["sip:high.example.com", "sip:mid1.example.com", "sip:mid2.example.com", "sip:low.example.com"]);
    assert_eq!(pick(&ds, 8, &call("x"), "").unwrap(), "sip:high.example.com");
    // Unknown algorithms take the first entry too.
    assert_eq!(pick(&ds, 42, &call("x"), "").unwrap(), "sip:high.example.com");
    ds.set_state(1, "sip:high.example.com", DsState::Inactive).unwrap();
    assert_eq!(pick(&ds, 8, &call("x"), "").unwrap(), "sip:mid1.example.com");
    // Algorithm 9 with no pattern is algorithm 8.
    assert_eq!(pick(&ds, 9, &call("x"), "").unwrap(), "sip:mid1.example.com");
}

#[test]
fn ranked_algorithms() {
    let ds = three();
    let ranks = [Some(30), Some(10), Some(20)];
    let input = SelectInput { ranks: Some(&ranks), ..Default::default() };
    let s = ds.select(1, 9, &input, Flags::parse("f"), None).unwrap();
    assert_eq!(s.dst.uri, "sip:10.0.0.2:5060");
    let list: Vec<&str> = s.failover.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(list, ["sip:10.0.0.3:5060", "sip:10.0.0.1:5060"]);
    // A negative or missing score leaves the destination out.
    let ranks = [Some(-1), None, Some(5)];
    let input = SelectInput { ranks: Some(&ranks), ..Default::default() };
    let s = ds.select(1, 10, &input, Flags::parse("f"), None).unwrap();
    assert_eq!(s.dst.uri, "sip:10.0.0.3:5060");
    assert!(s.failover.is_empty());
    let ranks = [None, None, None];
    let input = SelectInput { ranks: Some(&ranks), ..Default::default() };
    assert!(ds.select(1, 10, &input, Flags::default(), None).is_err());
    assert!(ds.select(1, 10, &SelectInput::default(), Flags::default(), None).is_err(), "no algo_route");
}

#[test]
fn default_entry_is_the_last_resort() {
    let ds = three();
    // With `d`, sip:10.0.0.3 (last) is never chosen while another is active.
    let c = counts(&ds, 0, 500, "d");
    assert!(!c.contains_key("sip:10.0.0.3:5060"), "{c:?}");
    assert_eq!(c.len(), 2);
    let c = counts(&ds, 4, 10, "d");
    assert!(!c.contains_key("sip:10.0.0.3:5060"), "{c:?}");
    ds.set_state(1, "sip:10.0.0.1:5060", DsState::Inactive).unwrap();
    ds.set_state(1, "sip:10.0.0.2:5060", DsState::Inactive).unwrap();
    assert_eq!(pick(&ds, 0, &call("x"), "d").unwrap(), "sip:10.0.0.3:5060");
    assert_eq!(pick(&ds, 4, &call("x"), "d").unwrap(), "sip:10.0.0.3:5060");
    ds.set_state(1, "sip:10.0.0.3:5060", DsState::Inactive).unwrap();
    assert!(pick(&ds, 0, &call("x"), "d").is_none());
}

#[test]
fn failover_list_order_default_and_max_results() {
    let ds =
        ds_with(DispatcherConfig::default(), (1..=5).map(|i| row(i, 1, &format!("sip:10.0.0.{i}"), "1", 0)).collect());
    // Algorithm 8 picks the first; the list follows in set order.
    let s = ds.select(1, 8, &call("x"), Flags::parse("f"), None).unwrap();
    let uris = |s: &Selected| s.failover.iter().map(|c| c.uri.clone()).collect::<Vec<_>>();
    assert_eq!(s.dst.uri, "sip:10.0.0.1");
    assert_eq!(uris(&s), ["sip:10.0.0.2", "sip:10.0.0.3", "sip:10.0.0.4", "sip:10.0.0.5"]);
    // Cyclic from the selected one, inactive ones left out.
    ds.set_state(1, "sip:10.0.0.1", DsState::Inactive).unwrap();
    ds.set_state(1, "sip:10.0.0.4", DsState::Probing).unwrap();
    let s = ds.select(1, 8, &call("x"), Flags::parse("f"), None).unwrap();
    assert_eq!(s.dst.uri, "sip:10.0.0.2");
    assert_eq!(uris(&s), ["sip:10.0.0.3", "sip:10.0.0.5"]);
    // `d`: the default (last) entry goes last, whatever its state.
    let s = ds.select(1, 8, &call("x"), Flags::parse("fd"), None).unwrap();
    assert_eq!(uris(&s), ["sip:10.0.0.3", "sip:10.0.0.5"]);
    ds.set_state(1, "sip:10.0.0.1", DsState::Active).unwrap();
    ds.set_state(1, "sip:10.0.0.4", DsState::Active).unwrap();
    let s = ds.select(1, 8, &call("x"), Flags::parse("fd"), None).unwrap();
    assert_eq!(uris(&s), ["sip:10.0.0.2", "sip:10.0.0.3", "sip:10.0.0.4", "sip:10.0.0.5"]);
    // max_results counts the selected one, not the default.
    let s = ds.select(1, 8, &call("x"), Flags::parse("fd"), Some(2)).unwrap();
    assert_eq!(uris(&s), ["sip:10.0.0.2", "sip:10.0.0.5"]);
    let s = ds.select(1, 8, &call("x"), Flags::parse("f"), Some(1)).unwrap();
    assert!(s.failover.is_empty());
    // Without `f`, no list.
    assert!(ds.select(1, 8, &call("x"), Flags::default(), None).unwrap().failover.is_empty());
}

#[test]
fn unknown_or_empty_set() {
    let ds = three();
    assert!(ds.select(7, 0, &call("x"), Flags::default(), None).unwrap_err().contains("not found"));
    assert_eq!(ds.stats.select_failed.load(Ordering::Relaxed), 1);
    assert_eq!(Dispatcher::new(&DispatcherConfig::default()).destinations().len(), 0);
}

#[test]
fn mark_dst_states_and_threshold() {
    let ds = three();
    let u = "sip:10.0.0.1:5060";
    assert_eq!(ds.mark(1, u, DsState::Probing).unwrap(), None);
    assert_eq!(ds.mark(1, u, DsState::Probing).unwrap(), None);
    let ch = ds.mark(1, u, DsState::Probing).unwrap().expect("third call reaches the threshold");
    assert_eq!((ch.old, ch.new), (DsState::Active, DsState::Probing));
    assert_eq!(ds.mark(1, u, DsState::Active).unwrap().unwrap().new, DsState::Active);
    assert_eq!(ds.destinations()[0].failures, 0, "active resets the counter");
    assert_eq!(ds.mark(1, u, DsState::Inactive).unwrap().unwrap().new, DsState::Inactive);
    // Probing is refused for an inactive destination.
    for _ in 0..5 {
        assert_eq!(ds.mark(1, u, DsState::Probing).unwrap(), None);
    }
    assert_eq!(ds.destinations()[0].state, DsState::Inactive);
    assert_eq!(ds.mark(1, "SIP:10.0.0.1:5060", DsState::Inactive).unwrap(), None, "case-insensitive, unchanged");
    assert_eq!(ds.mark(1, "sip:nope", DsState::Inactive), Err(DsError::NoDestination(1, "sip:nope".into())));
    assert_eq!(ds.mark(9, u, DsState::Inactive), Err(DsError::NoSet(9)));
    assert_eq!(DsState::from_flag("0"), Some(DsState::Inactive));
    assert_eq!(DsState::from_flag("1"), Some(DsState::Active));
    assert_eq!(DsState::from_flag("P"), Some(DsState::Probing));
    assert_eq!(DsState::from_flag("x"), None);
}

#[test]
fn count_filters() {
    let ds = three();
    ds.set_state(1, "sip:10.0.0.1:5060", DsState::Inactive).unwrap();
    ds.set_state(1, "sip:10.0.0.2:5060", DsState::Probing).unwrap();
    assert_eq!(ds.count(1, "a"), Some(1));
    assert_eq!(ds.count(1, "i"), Some(1));
    assert_eq!(ds.count(1, "p"), Some(1));
    assert_eq!(ds.count(1, "ip"), Some(2));
    assert_eq!(ds.count(1, "1i"), Some(2));
    assert_eq!(ds.count(1, ""), Some(3));
    assert_eq!(ds.count(2, "a"), None);
}

#[test]
fn is_in_list_ports_sets_and_active_only() {
    let ds = ds_with(
        DispatcherConfig::default(),
        vec![
            row(1, 1, "sip:10.0.0.1:5080", "1", 0),
            row(2, 2, "sip:10.0.0.2", "1", 0),
            row(3, 2, "sip:[2001:db8::1]:5060", "1", 0),
            row(4, 3, "sip:gw.example.com:5060;transport=tcp", "1", 0),
        ],
    );
    assert_eq!(ds.is_in_list("10.0.0.1", 5080, None, false).map(|r| r.0), Some(1));
    assert_eq!(ds.is_in_list("10.0.0.1", 5060, None, false), None);
    assert_eq!(ds.is_in_list("10.0.0.1", 0, None, false).map(|r| r.0), Some(1), "port 0 matches any");
    assert_eq!(ds.is_in_list("10.0.0.2", 7777, None, false).map(|r| r.0), Some(2), "no port in the URI: any");
    assert_eq!(ds.is_in_list("10.0.0.2", 5060, Some(1), false), None);
    assert_eq!(ds.is_in_list("10.0.0.2", 5060, Some(2), false).map(|r| r.0), Some(2));
    assert_eq!(ds.is_in_list("2001:db8::1", 5060, None, false).map(|r| r.0), Some(2));
    assert_eq!(ds.is_in_list("[2001:0db8::1]", 5060, None, false).map(|r| r.0), Some(2));
    assert_eq!(ds.is_in_list("GW.example.com", 5060, None, false).map(|r| r.0), Some(3));
    ds.set_state(2, "sip:10.0.0.2", DsState::Probing).unwrap();
    assert_eq!(ds.is_in_list("10.0.0.2", 5060, None, true), None);
    assert!(ds.is_in_list("10.0.0.2", 5060, None, false).is_some());
    assert_eq!(ds.is_in_list("10.9.9.9", 0, None, false), None);
}

fn target(setid: i64, uri: &str) -> ProbeTarget {
    ProbeTarget { setid, uri: uri.into(), socket: None }
}

#[test]
fn probing_targets_by_mode_state_and_list() {
    let mut rows = vec![
        row(1, 1, "sip:10.0.0.1", "1", 0),
        row(2, 1, "sip:10.0.0.2", "1", 0),
        row(3, 2, "sip:10.0.0.3", "1", 0),
        row(4, 2, "sip:10.0.0.4", "1", 0),
    ];
    rows[1].state = 2; // probing
    rows[2].state = 1; // inactive
    rows[3].probe_mode = 1;
    rows[3].socket = Some("udp:192.0.2.1:5060".into());
    let cfg = DispatcherConfig { ds_probing_sock: Some("udp:192.0.2.9".into()), ..Default::default() };
    let ds = ds_with(cfg.clone(), rows.clone());
    let t = ds.probe_targets();
    assert_eq!(
        t,
        vec![
            ProbeTarget { setid: 1, uri: "sip:10.0.0.2".into(), socket: Some("udp:192.0.2.9:5060".into()) },
            ProbeTarget { setid: 2, uri: "sip:10.0.0.4".into(), socket: Some("udp:192.0.2.1:5060".into()) },
        ]
    );
    assert_eq!(ds.stats.probes_sent.load(Ordering::Relaxed), 2);
    // Mode 1: every destination but the inactive one.
    let ds = ds_with(DispatcherConfig { ds_probing_mode: 1, ..cfg.clone() }, rows.clone());
    let uris: Vec<String> = ds.probe_targets().into_iter().map(|t| t.uri).collect();
    assert_eq!(uris, ["sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.4"]);
    // ds_probing_list limits the sets.
    let ds = ds_with(DispatcherConfig { ds_probing_mode: 1, ds_probing_list: vec![2], ..cfg }, rows.clone());
    let uris: Vec<String> = ds.probe_targets().into_iter().map(|t| t.uri).collect();
    assert_eq!(uris, ["sip:10.0.0.4"]);
    // persistent_state = false: the state column is not loaded.
    let ds = ds_with(DispatcherConfig { persistent_state: false, ..Default::default() }, rows);
    assert!(ds.destinations().iter().all(|d| d.state == DsState::Active));
    assert_eq!(ds.probe_targets().len(), 1, "only the probe_mode 1 row");
}

#[test]
fn probing_state_machine() {
    let cfg = DispatcherConfig { ds_probing_mode: 1, options_reply_codes: vec![404], ..Default::default() };
    let ds = ds_with(cfg, vec![row(1, 1, "sip:10.0.0.1", "1", 0)]);
    let t = target(1, "sip:10.0.0.1");
    let changes = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    ds.on_state_change(move |c| seen.lock().unwrap().push(c.clone()));
    assert_eq!(ds.probe_result(&t, None), None);
    assert_eq!(ds.probe_result(&t, Some(503)), None);
    assert_eq!(ds.destinations()[0].failures, 2);
    let ch = ds.probe_result(&t, Some(408)).expect("threshold 3");
    assert_eq!(ch, StateChange { setid: 1, uri: "sip:10.0.0.1".into(), old: DsState::Active, new: DsState::Probing });
    assert_eq!(ds.probe_result(&t, None), None, "already probing");
    let info = &ds.destinations()[0];
    assert_eq!(info.last_probe_code, Some(408));
    assert!(info.last_probe.is_some());
    // options_reply_codes count as good.
    let ch = ds.probe_result(&t, Some(404)).expect("back up");
    assert_eq!((ch.old, ch.new), (DsState::Probing, DsState::Active));
    assert_eq!(ds.destinations()[0].failures, 0);
    assert_eq!(ds.probe_result(&t, Some(200)), None, "already active");
    // A failure streak is broken by a good reply.
    ds.probe_result(&t, None);
    ds.probe_result(&t, None);
    ds.probe_result(&t, Some(200));
    ds.probe_result(&t, None);
    assert_eq!(ds.destinations()[0].state, DsState::Active);
    // Inactive is never revived by a probe.
    ds.set_state(1, "sip:10.0.0.1", DsState::Inactive).unwrap();
    assert_eq!(ds.probe_result(&t, Some(200)), None);
    assert_eq!(ds.destinations()[0].state, DsState::Inactive);
    // Gone from the sets: ignored.
    assert_eq!(ds.probe_result(&target(1, "sip:gone"), Some(200)), None);
    let log = changes.lock().unwrap();
    let news: Vec<DsState> = log.iter().map(|c| c.new).collect();
    assert_eq!(news, [DsState::Probing, DsState::Active, DsState::Inactive]);
    assert_eq!(ds.stats.to_probing.load(Ordering::Relaxed), 1);
    assert!(ds.stats.probe_failed.load(Ordering::Relaxed) >= 6);
}

#[test]
fn probing_mode_zero_only_revives() {
    let ds = ds_with(DispatcherConfig::default(), vec![row(1, 1, "sip:10.0.0.1", "1", 0)]);
    let t = target(1, "sip:10.0.0.1");
    for _ in 0..5 {
        assert_eq!(ds.probe_result(&t, None), None, "mode 0: an active destination is not failed by probes");
    }
    ds.set_state(1, "sip:10.0.0.1", DsState::Probing).unwrap();
    assert_eq!(ds.probe_result(&t, Some(500)), None);
    assert_eq!(ds.probe_result(&t, Some(200)).unwrap().new, DsState::Active);
    assert!(!ds.is_good_reply(404));
    assert_eq!(ds.ping_interval(), None);
    assert_eq!(ds.ping_method(), "OPTIONS");
    assert_eq!(ds.ping_from(), "sip:dispatcher@localhost");
    assert_eq!(ds.ping_maxfwd(), None);
    let ds = Dispatcher::new(&DispatcherConfig { ds_ping_interval: 10, ds_ping_maxfwd: Some(2), ..Default::default() });
    assert_eq!(ds.ping_interval(), Some(Duration::from_secs(10)));
    assert_eq!(ds.ping_maxfwd(), Some(2));
}

#[test]
fn replace_is_atomic_and_inherits_state() {
    let ds = three();
    ds.set_state(1, "sip:10.0.0.2:5060", DsState::Inactive).unwrap();
    let old = ds.sets();
    // A reload keeping 10.0.0.2, dropping 10.0.0.3, adding 10.0.0.4 (table state: active).
    let rows = vec![
        row(1, 1, "sip:10.0.0.1:5060", "1", 0),
        row(2, 1, "sip:10.0.0.2:5060", "1", 0),
        row(4, 1, "sip:10.0.0.4:5060", "1", 0),
        row(5, 1, "bogus", "1", 0),
    ];
    let report = ds.replace(rows.clone(), true);
    assert_eq!((report.sets, report.destinations, report.skipped.len()), (1, 3, 1));
    // Whoever still holds the old sets keeps a complete, unchanged view.
    assert_eq!(old.get(1).unwrap().dests.len(), 3);
    let states: Vec<(String, DsState)> = ds.destinations().into_iter().map(|d| (d.uri, d.state)).collect();
    assert_eq!(
        states,
        vec![
            ("sip:10.0.0.1:5060".to_string(), DsState::Active),
            ("sip:10.0.0.2:5060".to_string(), DsState::Inactive),
            ("sip:10.0.0.4:5060".to_string(), DsState::Active),
        ]
    );
    // A change made through the old view after the swap still reaches the new one.
    old.get(1).unwrap().dests[0].rt.set_state(DsState::Probing);
    assert_eq!(ds.destinations()[0].state, DsState::Probing);
    // Without inheritance the table's state wins.
    ds.replace(rows, false);
    assert!(ds.destinations().iter().all(|d| d.state == DsState::Active));
}

#[tokio::test]
async fn reload_failure_keeps_the_old_sets() {
    let ds = three();
    let failing: DsLoader = Arc::new(|| Box::pin(async { Err("database down".to_string()) }));
    assert_eq!(ds.reload(&failing, true).await.unwrap_err(), "database down");
    assert_eq!(ds.destinations().len(), 3);
    assert_eq!(ds.stats.reload_failures.load(Ordering::Relaxed), 1);
    let good: DsLoader = Arc::new(|| Box::pin(async { Ok(vec![row(9, 5, "sip:10.9.9.9", "1", 0)]) }));
    let r = ds.reload(&good, true).await.unwrap();
    assert_eq!((r.sets, r.destinations), (1, 1));
    assert_eq!(ds.destinations()[0].setid, 5);
    assert_eq!(ds.stats.reloads.load(Ordering::Relaxed), 1);
}

#[test]
fn rows_are_parsed_once() {
    let mut r = row(1, 1, " sip:GW.Example.com:5070;transport=tcp ", "", 0);
    r.socket = Some("tcp:10.0.0.1".into());
    r.attrs = Some(String::new());
    let ds = ds_with(DispatcherConfig::default(), vec![r, row(2, 1, "sip:10.0.0.2", "fs://x", 0)]);
    let sets = ds.sets();
    let d = &sets.get(1).unwrap().dests[0];
    assert_eq!(d.uri, "sip:GW.Example.com:5070;transport=tcp");
    assert_eq!((d.host.as_str(), d.port, d.hostport.as_str()), ("gw.example.com", 5070, "GW.Example.com:5070"));
    assert_eq!(d.socket.as_deref(), Some("tcp:10.0.0.1:5060"));
    assert_eq!(d.weight, 1, "empty weight is 1");
    assert_eq!(d.attrs, None);
    assert_eq!(sets.get(1).unwrap().dests[1].weight, 1, "non-numeric weight is 1");
    assert_eq!(DsState::from_db(2), DsState::Probing);
    assert_eq!(hash32("abc"), hash32(" abc "));
}
