//! Unit tests of the load balancer over a real dialog table: load counted in the
//! `lbX<resource>` profiles, sessions, failover, status, probing, reload.

use super::*;
use crate::dialog::DialogParams;
use crate::message::SipMsg;
use bytes::Bytes;

fn row(id: i64, group: i64, uri: &str, res: &str) -> LbRow {
    LbRow { id, ..LbRow::new(group, uri, res) }
}

fn lb_with(cfg: LoadBalancerConfig, rows: Vec<LbRow>) -> (LoadBalancer, Arc<Dialogs>) {
    let dialogs = Dialogs::new(DialogParams::default());
    let lb = LoadBalancer::new(&cfg, dialogs.clone());
    let report = lb.replace(rows);
    assert!(report.skipped.is_empty(), "{report:?}");
    (lb, dialogs)
}

/// Group 1: a (pstn 10), b (pstn 20, transc 5); group 2: c (vm 3).
fn abc() -> (LoadBalancer, Arc<Dialogs>) {
    lb_with(
        LoadBalancerConfig::default(),
        vec![
            row(1, 1, "sip:10.0.0.1:5060", "pstn=10"),
            row(2, 1, "sip:10.0.0.2", "pstn=20;transc=5"),
            row(3, 2, "sip:gw.example.com:5070", "vm=3"),
        ],
    )
}

fn dialog(dialogs: &Dialogs, n: usize) -> Arc<Dialog> {
    let text = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{n}\r\n\
From: <sip:alice@example.com>;tag=f{n}\r\nTo: <sip:bob@example.com>\r\nCall-ID: c{n}\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let msg = SipMsg::parse(Bytes::from(text)).expect("parses");
    dialogs.create(&msg, "udp:127.0.0.1:5060".into(), 0)
}

fn res(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn start(lb: &LoadBalancer, d: &Arc<Dialog>, group: i64, r: &[&str], flags: &str) -> Result<i64, i64> {
    lb.start(d, group, res(r), Flags::parse(flags).unwrap()).map(|c| c.id).map_err(|e| e.code())
}

#[test]
fn rows_load_and_profiles_are_declared() {
    let (lb, dialogs) = abc();
    let names: Vec<String> = dialogs.profiles.names().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["lbXpstn", "lbXtransc", "lbXvm"]);
    assert_eq!(dialogs.profiles.kind("lbXpstn"), Some(true), "with value (the destination id)");
    let d = lb.destinations();
    assert_eq!(d.len(), 3);
    assert_eq!(d[1].resources, vec![("pstn".to_string(), 20, 0), ("transc".to_string(), 5, 0)]);
    // Bad rows are skipped and reported; good ones stay.
    let report = lb.replace(vec![
        row(1, 1, "sip:10.0.0.1", "pstn=10"),
        row(2, 1, "mailto:x@y", "pstn=10"),
        row(3, 1, "sip:10.0.0.3", "pstn=fs://u:p@10.0.0.3:8021"),
        row(4, 1, "sip:10.0.0.4", ""),
        row(5, 1, "sip:10.0.0.5", "pstn=1;pstn=2"),
    ]);
    assert_eq!(report.destinations, 1);
    assert_eq!(report.skipped.len(), 4, "{report:?}");
}

#[test]
fn absolute_mode_counts_free_channels_in_the_profiles() {
    let (lb, dialogs) = abc();
    // Both empty: b has 20 free, a 10.
    let d1 = dialog(&dialogs, 1);
    assert_eq!(start(&lb, &d1, 1, &["pstn"], ""), Ok(2));
    assert_eq!(lb.load("pstn", 2), 1);
    assert!(dialogs.in_profile(&d1, "lbXpstn", Some("2")));
    // Ten more: b keeps winning until it has 10 free like a (tie: a, first by id).
    let mut picks = Vec::new();
    for n in 2..=12 {
        picks.push(start(&lb, &dialog(&dialogs, n), 1, &["pstn"], "").unwrap());
    }
    assert_eq!(&picks[..9], &[2; 9]);
    assert_eq!(picks[9], 1, "10 free each: the first by id");
    assert_eq!(picks[10], 2, "a has 9 free, b 10");
    assert_eq!((lb.load("pstn", 1), lb.load("pstn", 2)), (1, 11));
    // The load is the profile: ending a dialog frees its channel.
    dialogs.end(&d1, "bye");
    assert_eq!(lb.load("pstn", 2), 10);
}

#[test]
fn all_resources_must_be_offered_and_the_scarcest_counts() {
    let (lb, dialogs) = abc();
    // Only b offers transc.
    assert_eq!(start(&lb, &dialog(&dialogs, 1), 1, &["pstn", "transc"], ""), Ok(2));
    for n in 2..=5 {
        assert_eq!(start(&lb, &dialog(&dialogs, n), 1, &["pstn", "transc"], ""), Ok(2));
    }
    assert_eq!(lb.load("transc", 2), 5);
    assert_eq!(start(&lb, &dialog(&dialogs, 6), 1, &["pstn", "transc"], ""), Err(-2), "transc is full");
    assert_eq!(start(&lb, &dialog(&dialogs, 7), 1, &["pstn", "transc"], "n"), Ok(2), "n: overload allowed");
    assert_eq!(start(&lb, &dialog(&dialogs, 8), 2, &["pstn"], ""), Err(-3), "group 2 has no pstn");
    assert_eq!(start(&lb, &dialog(&dialogs, 9), 9, &["pstn"], ""), Err(-3), "no group 9");
    assert_eq!(start(&lb, &dialog(&dialogs, 10), 1, &["vm"], ""), Err(-3), "vm only in group 2");
    assert_eq!(start(&lb, &dialog(&dialogs, 11), 1, &["pstn", "fax"], ""), Err(-4), "nobody offers fax");
    assert_eq!(start(&lb, &dialog(&dialogs, 12), 1, &[], ""), Err(-1));
    // A failed start leaves the dialog in no profile and without a session.
    let d = dialog(&dialogs, 13);
    assert_eq!(start(&lb, &d, 1, &["pstn", "transc"], ""), Err(-2));
    assert!(d.data().profiles.is_empty());
    assert!(LoadBalancer::session_of(&d).is_none());
}

#[test]
fn relative_mode_and_random_ties() {
    let (lb, dialogs) = abc();
    // a 10, b 20: relative spreads 1:2.
    let mut n = [0usize; 2];
    for i in 0..30 {
        let id = start(&lb, &dialog(&dialogs, i), 1, &["pstn"], "r").unwrap();
        n[(id - 1) as usize] += 1;
    }
    assert_eq!(n, [10, 20]);
    assert_eq!(start(&lb, &dialog(&dialogs, 99), 1, &["pstn"], "r"), Err(-2));

    // s: equal availability goes either way, and both are used.
    let (lb, dialogs) = lb_with(
        LoadBalancerConfig::default(),
        vec![row(1, 1, "sip:10.0.0.1", "pstn=1000"), row(2, 1, "sip:10.0.0.2", "pstn=1000")],
    );
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let d = dialog(&dialogs, i);
        seen.insert(start(&lb, &d, 1, &["pstn"], "s").unwrap());
        dialogs.end(&d, "bye");
    }
    assert_eq!(seen.len(), 2, "random tie-break never chose one of them");
    for i in 0..5 {
        let d = dialog(&dialogs, 100 + i);
        assert_eq!(start(&lb, &d, 1, &["pstn"], ""), Ok(1), "without s: the first");
        dialogs.end(&d, "bye");
    }
}

#[test]
fn next_moves_the_call_and_skips_tried_destinations() {
    let (lb, dialogs) = lb_with(
        LoadBalancerConfig::default(),
        vec![
            row(1, 1, "sip:10.0.0.1", "pstn=10"),
            row(2, 1, "sip:10.0.0.2", "pstn=30"),
            row(3, 1, "sip:10.0.0.3", "pstn=20"),
        ],
    );
    let d = dialog(&dialogs, 1);
    assert_eq!(start(&lb, &d, 1, &["pstn"], ""), Ok(2));
    assert_eq!(lb.next(&d).map(|c| c.uri), Ok("sip:10.0.0.3".to_string()));
    assert_eq!((lb.load("pstn", 2), lb.load("pstn", 3)), (0, 1), "re-profiled");
    assert_eq!(lb.next(&d).map(|c| c.id), Ok(1));
    assert_eq!(lb.next(&d).map_err(|e| e.code()), Err(-3), "all tried");
    assert_eq!((lb.load("pstn", 1), lb.load("pstn", 2), lb.load("pstn", 3)), (0, 0, 0));
    let s = LoadBalancer::session_of(&d).unwrap();
    assert_eq!((s.tried, s.current), (vec![2, 3, 1], None));
    // No session: -1.
    assert_eq!(lb.next(&dialog(&dialogs, 2)).map_err(|e| e.code()), Err(-1));
}

#[test]
fn reset_and_restart() {
    let (lb, dialogs) = abc();
    let d = dialog(&dialogs, 1);
    assert_eq!(start(&lb, &d, 1, &["pstn", "transc"], ""), Ok(2));
    assert!(lb.reset(&d));
    assert!(!lb.reset(&d), "nothing left to reset");
    assert_eq!((lb.load("pstn", 2), lb.load("transc", 2)), (0, 0));
    // A second lb_start replaces the first session: the call counts once.
    assert_eq!(start(&lb, &d, 1, &["pstn"], ""), Ok(2));
    assert_eq!(start(&lb, &d, 1, &["pstn"], ""), Ok(2));
    assert_eq!(lb.load("pstn", 2), 1);
}

#[test]
fn disable_status_and_events() {
    let (lb, dialogs) = abc();
    let seen: Arc<Mutex<Vec<(i64, &'static str)>>> = Arc::default();
    let s = seen.clone();
    lb.on_status_change(move |c| s.lock().unwrap().push((c.id, c.new.as_event())));
    let d = dialog(&dialogs, 1);
    assert_eq!(start(&lb, &d, 1, &["pstn"], ""), Ok(2));
    assert!(lb.disable_last(&d).unwrap().is_some());
    assert_eq!(lb.status(2), Some(Status::Disabled));
    assert_eq!(start(&lb, &dialog(&dialogs, 2), 1, &["pstn"], ""), Ok(1), "disabled b is skipped");
    assert_eq!(start(&lb, &dialog(&dialogs, 3), 1, &["pstn", "transc"], ""), Err(-3));
    // MI: disable a; enable b.
    assert!(lb.set_enabled(1, false).unwrap().is_some());
    assert_eq!(start(&lb, &dialog(&dialogs, 4), 1, &["pstn"], ""), Err(-3));
    lb.set_enabled(2, true).unwrap();
    assert_eq!(lb.set_enabled(9, true), Err(MiChangeError::NoDestination(9)));
    assert_eq!(*seen.lock().unwrap(), [(2, "disabled"), (1, "disabled"), (2, "enabled")]);
}

#[test]
fn resize_changes_capacity_until_reload() {
    let (lb, dialogs) = abc();
    lb.resize(1, "pstn", 50).unwrap();
    assert_eq!(start(&lb, &dialog(&dialogs, 1), 1, &["pstn"], ""), Ok(1));
    assert_eq!(lb.resize(1, "fax", 1), Err(MiChangeError::NoResource(1, "fax".into())));
    assert_eq!(lb.resize(7, "pstn", 1), Err(MiChangeError::NoDestination(7)));
    lb.resize(1, "pstn", 0).unwrap();
    lb.resize(2, "pstn", 0).unwrap();
    assert_eq!(start(&lb, &dialog(&dialogs, 2), 1, &["pstn"], ""), Err(-2));
}

#[test]
fn reload_keeps_status_and_load() {
    let (lb, dialogs) = abc();
    let d = dialog(&dialogs, 1);
    start(&lb, &d, 1, &["pstn"], "").unwrap();
    lb.set_enabled(1, false).unwrap();
    lb.replace(vec![
        row(1, 1, "sip:10.0.0.1:5060", "pstn=10"),
        row(2, 1, "sip:10.0.0.2", "pstn=40"),
        row(4, 1, "sip:10.0.0.4", "pstn=5"),
    ]);
    assert_eq!(lb.status(1), Some(Status::DisabledByMi), "kept across the reload");
    assert_eq!(lb.status(4), Some(Status::Enabled));
    let b = lb.destinations().into_iter().find(|x| x.id == 2).unwrap();
    assert_eq!(b.resources, vec![("pstn".to_string(), 40, 1)], "new capacity, same load");
    // A changed URI is a new destination.
    lb.replace(vec![row(1, 1, "sip:10.9.9.9", "pstn=10")]);
    assert_eq!(lb.status(1), Some(Status::Enabled));
}

#[test]
fn probing_targets_and_results() {
    let cfg = LoadBalancerConfig { probing_reply_codes: vec![404], ..Default::default() };
    let (lb, _dialogs) = lb_with(
        cfg,
        vec![
            LbRow { probe_mode: 0, ..row(1, 1, "sip:10.0.0.1", "pstn=1") },
            LbRow { probe_mode: 1, ..row(2, 1, "sip:10.0.0.2", "pstn=1") },
            LbRow { probe_mode: 2, ..row(3, 1, "sip:10.0.0.3", "pstn=1") },
        ],
    );
    let ids = |lb: &LoadBalancer| lb.probe_targets().into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(&lb), [3], "mode 2 always, mode 1 only while disabled");
    let t3 = ProbeTarget { id: 3, uri: "sip:10.0.0.3".into() };
    assert!(lb.probe_result(&t3, None).is_some(), "no reply disables");
    assert_eq!(lb.status(3), Some(Status::Disabled));
    assert!(lb.probe_result(&t3, Some(503)).is_none(), "already disabled");
    assert!(lb.probe_result(&t3, Some(404)).is_some(), "an accepted code enables");
    assert!(lb.probe_result(&t3, Some(302)).is_none(), "below 400 changes nothing");
    // Mode 1: probed once disabled by a call, brought back by a 200.
    lb.set_enabled(2, true).unwrap();
    let t2 = ProbeTarget { id: 2, uri: "sip:10.0.0.2".into() };
    let d = lb.table.load();
    lb.set_status(d.get(2).unwrap(), None, Status::Disabled);
    assert_eq!(ids(&lb), [2, 3]);
    lb.probe_result(&t2, Some(200));
    assert_eq!(lb.status(2), Some(Status::Enabled));
    // Disabled by MI: not probed (mode 1), and a good reply does not enable it (mode 2).
    lb.set_enabled(2, false).unwrap();
    lb.set_enabled(3, false).unwrap();
    assert_eq!(ids(&lb), [3]);
    assert!(lb.probe_result(&t3, Some(200)).is_none());
    assert_eq!(lb.status(3), Some(Status::DisabledByMi));
    // A result for a destination reloaded away changes nothing.
    let gone = ProbeTarget { id: 3, uri: "sip:elsewhere".into() };
    lb.set_enabled(3, true).unwrap();
    assert!(lb.probe_result(&gone, None).is_none());
}

#[test]
fn find_and_count_call() {
    let (lb, dialogs) = abc();
    assert_eq!(lb.find("10.0.0.1", 5060, None, false).map(|c| c.id), Some(1));
    assert_eq!(lb.find("10.0.0.1", 5080, None, false), None);
    assert_eq!(lb.find("10.0.0.2", 5999, Some(1), false).map(|c| c.id), Some(2), "no port in the URI: any");
    assert_eq!(lb.find("10.0.0.2", 0, Some(2), false), None);
    assert_eq!(lb.find("gw.example.com", 5070, None, false).map(|c| c.id), Some(3));
    lb.set_enabled(1, false).unwrap();
    assert_eq!(lb.find("10.0.0.1", 0, None, true), None);
    let d = dialog(&dialogs, 1);
    lb.count_call(&d, 1, &res(&["pstn"]), false).unwrap();
    assert_eq!(lb.load("pstn", 1), 1);
    assert_eq!(
        lb.count_call(&d, 1, &res(&["transc"]), false).map_err(|e| e.code()),
        Err(-1),
        "a does not offer transc"
    );
    assert_eq!(lb.count_call(&d, 1, &res(&["fax"]), false).map_err(|e| e.code()), Err(-4));
    lb.count_call(&d, 1, &res(&["pstn"]), true).unwrap();
    assert_eq!(lb.load("pstn", 1), 0);
}

#[test]
fn restored_dialogs_bring_their_load_back() {
    // A call counted on one node (or before a restart) ...
    let (lb, dialogs) = abc();
    let d = dialog(&dialogs, 1);
    assert_eq!(start(&lb, &d, 1, &["pstn", "transc"], ""), Ok(2));
    let rec = crate::dialog::DialogRecord::of(&d);
    // ... is restored from the dialog table into a fresh process: the load is back
    // before and after the load balancer's own table is loaded.
    let fresh = Dialogs::new(DialogParams::default());
    assert!(fresh.restore(&rec).is_some());
    let lb2 = LoadBalancer::new(&LoadBalancerConfig::default(), fresh.clone());
    assert_eq!(lb2.load("pstn", 2), 1);
    lb2.replace(vec![row(1, 1, "sip:10.0.0.1:5060", "pstn=10"), row(2, 1, "sip:10.0.0.2", "pstn=20;transc=5")]);
    assert_eq!((lb2.load("pstn", 2), lb2.load("transc", 2)), (1, 1));
    assert_eq!(lb2.destinations()[1].resources, vec![("pstn".to_string(), 20, 1), ("transc".to_string(), 5, 1)]);
}
