use super::*;

fn ul() -> Usrloc {
    Usrloc::new(&UsrlocConfig::default())
}

fn contact(aor: &str, uri: &str, q: i32, expires: i64) -> Contact {
    Contact {
        id: Contact::new_id(),
        aor: aor.into(),
        uri: uri.into(),
        received: None,
        path: None,
        expires,
        q,
        callid: "c1".into(),
        cseq: 1,
        last_modified: 100,
        flags: 0,
        cflags: 0,
        user_agent: String::new(),
        socket: None,
        methods: None,
        instance: None,
        reg_id: 0,
        attr: None,
        pings_lost: 0,
    }
}

#[test]
fn presets_and_db_modes() {
    let mut cfg = UsrlocConfig::default();
    assert_eq!(WorkingMode::from_config(&cfg).ok(), Some(WorkingMode::NoDb));
    cfg.db_mode = Some(2);
    assert_eq!(WorkingMode::from_config(&cfg).ok(), Some(WorkingMode::WriteBack));
    cfg.working_mode_preset = "sql-only".into();
    assert_eq!(WorkingMode::from_config(&cfg).ok(), Some(WorkingMode::SqlOnly));
    cfg.working_mode_preset = "full-sharing-cluster".into();
    assert!(WorkingMode::from_config(&cfg).is_err());
}

#[test]
fn lookup_orders_by_q_and_skips_expired() {
    let u = ul();
    u.update("location", "alice", |r| {
        r.put(contact("alice", "sip:a@1", Q_UNSPECIFIED, 1000));
        r.put(contact("alice", "sip:a@2", 500, 1000));
        r.put(contact("alice", "sip:a@3", 1000, 1000));
        r.put(contact("alice", "sip:a@4", 1000, 50));
    });
    let uris: Vec<String> = u.lookup("location", "alice", 60).into_iter().map(|c| c.uri).collect();
    assert_eq!(uris, ["sip:a@3", "sip:a@2", "sip:a@1"]);
    assert!(u.lookup("location", "bob", 60).is_empty());
}

#[test]
fn changes_are_written_behind_but_remote_ones_are_not() {
    let u = ul();
    let mut rx = u.subscribe();
    let c = contact("alice", "sip:a@1", 1000, 0);
    let id = c.id;
    u.update("location", "alice", |r| r.put(c.clone()));
    assert!(matches!(rx.try_recv(), Ok(Change::Saved { contact, .. }) if contact.id == id));
    u.apply_remote("location", contact("bob", "sip:b@1", 1000, 0));
    assert!(rx.try_recv().is_err());
    assert_eq!(u.remove_aor("location", "alice"), 1);
    assert!(matches!(rx.try_recv(), Ok(Change::Removed { id: gone, .. }) if gone == id));
    assert_eq!(u.counts(), (1, 1));
}

#[test]
fn sweep_removes_expired_and_remote_removal_finds_the_aor() {
    let u = ul();
    let keep = contact("alice", "sip:a@1", 1000, 500);
    let keep_id = keep.id;
    u.update("location", "alice", |r| {
        r.put(keep);
        r.put(contact("alice", "sip:a@2", 1000, 100));
    });
    assert_eq!(u.sweep(200), 1);
    assert_eq!(u.counts(), (1, 1));
    assert!(u.remove_remote("location", keep_id));
    assert_eq!(u.counts(), (0, 0));
}

#[test]
fn ping_losses_count_until_an_answer() {
    let u = ul();
    let c = contact("alice", "sip:a@1", 1000, 0);
    let id = c.id;
    u.update("location", "alice", |r| r.put(c));
    assert_eq!(u.ping_result("location", id, false), 1);
    assert_eq!(u.ping_result("location", id, false), 2);
    assert_eq!(u.ping_result("location", id, true), 0);
    assert!(u.remove_id("location", id));
    assert!(u.lookup("location", "alice", 0).is_empty());
}

#[test]
fn a_loaded_row_for_a_binding_memory_has_under_another_id_keeps_the_newer() {
    let u = ul();
    let mut rx = u.subscribe();
    let mut fresh = contact("alice", "sip:a@1", 1000, 0);
    fresh.last_modified = 200;
    let fresh_id = fresh.id;
    u.update("location", "alice", |r| r.put(fresh));
    let _ = rx.try_recv();
    // The table's older row for the same contact: dropped, and its row deleted.
    let old = contact("alice", "sip:a@1", 1000, 0);
    let old_id = old.id;
    u.apply_remote("location", old);
    assert!(matches!(rx.try_recv(), Ok(Change::Removed { id, .. }) if id == old_id));
    assert_eq!(u.ids("location"), [fresh_id]);
    // A newer row from another node replaces the memory copy, whose row goes.
    let mut newer = contact("alice", "sip:a@1", 1000, 0);
    newer.last_modified = 300;
    let newer_id = newer.id;
    u.apply_remote("location", newer);
    assert!(matches!(rx.try_recv(), Ok(Change::Removed { id, .. }) if id == fresh_id));
    assert_eq!(u.ids("location"), [newer_id]);
}
