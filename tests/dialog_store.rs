//! Dialog persistence (`[dialog] db_mode`) against real databases: the `dialog` table's
//! store (upsert, load, delete, replace_all), the writer in db_mode 1, 2 and 3, and the
//! restore at start. SQLite always (a temp file); PostgreSQL (`SIPROX_TEST_PG`) and
//! MySQL/MariaDB (`SIPROX_TEST_MYSQL`) when set, else a loud SKIPPED banner.
//!
//! Each server test creates a database of its own (`siprox_dlg_<pid>_<n>`) and drops it at
//! the end, so runs in parallel (and tests/db.rs) never meet.

mod support;

use bytes::Bytes;
use siprox::config::DialogConfig;
use siprox::db::{Backend, Db, DbError};
use siprox::dialog::{DialogParams, DialogRecord, Dialogs};
use siprox::message::SipMsg;
use siprox::modules::dialog::persist::{self, start_writer};
use siprox::modules::dialog::store::{self, DEFAULT_TABLE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::testdb::{rt, TestDb};
use support::{free_port, Proxy, TempDir};

// ------------------------------------------------------------ SIP and dialogs

fn msg(s: &str) -> SipMsg {
    SipMsg::parse(Bytes::from(s.replace('\n', "\r\n"))).expect("parses")
}

fn invite(callid: &str) -> SipMsg {
    msg(&format!("INVITE sip:bob@b.example SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:alice@a.example>;tag=ft\nTo: <sip:bob@b.example>\nCall-ID: {callid}\nCSeq: 7 INVITE\nContact: <sip:alice@10.0.0.1>\nRecord-Route: <sip:p1.example;lr>\nContent-Length: 0\n\n"))
}

fn ok(callid: &str, did: &str) -> SipMsg {
    msg(&format!("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:alice@a.example>;tag=ft\nTo: <sip:bob@b.example>;tag=tt\nCall-ID: {callid}\nCSeq: 7 INVITE\nContact: <sip:bob@10.0.0.9>\nRecord-Route: <sip:p3.example;lr>, <sip:us;lr;did={did}>, <sip:p1.example;lr>\nContent-Length: 0\n\n"))
}

fn bye(callid: &str) -> SipMsg {
    msg(&format!("BYE sip:alice@10.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\nFrom: <sip:bob@b.example>;tag=tt\nTo: <sip:alice@a.example>;tag=ft\nCall-ID: {callid}\nCSeq: 1 BYE\n\n"))
}

fn table() -> Arc<Dialogs> {
    let t = Dialogs::new(DialogParams::default());
    t.profiles.declare("caller", true);
    t
}

/// A confirmed dialog of `callid` in `t`, in profile caller/alice with a value set.
fn confirmed(t: &Dialogs, callid: &str) -> Arc<siprox::dialog::Dialog> {
    let dlg = t.create(&invite(callid), "udp:127.0.0.1:5060".into(), 0);
    t.set_profile(&dlg, "caller", Some("alice")).expect("declared");
    t.set_value(&dlg, "x", Some("1".into()));
    t.on_reply(&dlg, &ok(callid, &dlg.did()), Some("udp:127.0.0.1:5060".into()));
    dlg
}

async fn rows(db: &Db) -> Vec<DialogRecord> {
    store::load(db, DEFAULT_TABLE).await.expect("load")
}

/// Waits up to 5 s for the table to satisfy `ok`.
async fn wait_rows(db: &Db, what: &str, ok: impl Fn(&[DialogRecord]) -> bool) -> Vec<DialogRecord> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(db).await;
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < until, "{what}: table is {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cfg(mode: u8, period: u64) -> DialogConfig {
    DialogConfig { db_mode: mode, db_update_period: period, ..Default::default() }
}

// ------------------------------------------------------------------ the cases

/// Every field round-trips through upsert/load; an upsert replaces; delete; replace_all;
/// a row with only its id (another provisioning tool) reads with defaults.
async fn store_case(db: &Db) {
    let full = DialogRecord {
        dlg_id: i64::MAX - 5,
        callid: "a84b4c76e66710@pc33.example — ü".into(),
        from_uri: "sip:alice@a.example".into(),
        from_tag: "1928301774".into(),
        to_uri: "sip:bob@b.example".into(),
        to_tag: "a6c85cf".into(),
        caller_cseq: "314159".into(),
        callee_cseq: "2".into(),
        caller_route_set: "<sip:p1.example;lr>,<sip:p2.example;lr;x=\"q\">".into(),
        callee_route_set: "<sip:p3.example;lr>".into(),
        caller_contact: "sip:alice@10.0.0.1:5062;transport=tcp".into(),
        callee_contact: "sip:bob@10.0.0.9".into(),
        caller_sock: "udp:127.0.0.1:5060".into(),
        callee_sock: "tcp:127.0.0.1:5060".into(),
        state: 4,
        start_time: 1_700_000_000,
        timeout: 1_700_043_200,
        vars: r#"[["x","it's \"1\""]]"#.into(),
        profiles: r#"[["caller","alice"],["trunk",""]]"#.into(),
        script_flags: 5,
        module_flags: 0,
        flags: 33,
    };
    store::upsert(db, DEFAULT_TABLE, &full).await.expect("upsert");
    assert_eq!(rows(db).await, vec![full.clone()], "every column round-trips");

    let mut changed = full.clone();
    changed.state = 3;
    changed.callee_cseq = "9".into();
    changed.timeout += 60;
    changed.vars = "[]".into();
    store::upsert(db, DEFAULT_TABLE, &changed).await.expect("update");
    assert_eq!(rows(db).await, vec![changed.clone()], "the row is replaced, not added");

    let other = DialogRecord { dlg_id: 1, callid: "c2".into(), state: 4, ..Default::default() };
    store::upsert(db, DEFAULT_TABLE, &other).await.expect("upsert");
    assert_eq!(rows(db).await.len(), 2);
    assert_eq!(store::delete(db, DEFAULT_TABLE, 1).await.expect("delete"), 1);
    assert_eq!(store::delete(db, DEFAULT_TABLE, 1).await.expect("delete"), 0);
    assert_eq!(rows(db).await, vec![changed.clone()]);

    let a = DialogRecord { dlg_id: 10, callid: "a".into(), state: 4, ..Default::default() };
    let b = DialogRecord { dlg_id: 11, callid: "b".into(), state: 3, ..Default::default() };
    store::replace_all(db, DEFAULT_TABLE, &[a.clone(), b.clone()]).await.expect("replace_all");
    assert_eq!(rows(db).await, vec![a.clone(), b.clone()]);
    store::replace_all(db, DEFAULT_TABLE, &[]).await.expect("replace_all");
    assert!(rows(db).await.is_empty());

    // A row another tool wrote with only its id: every other column has a default.
    let sql = "INSERT INTO dialog (dlg_id) VALUES (42)";
    match db.pool() {
        siprox::db::Pool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
        siprox::db::Pool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        siprox::db::Pool::MySql(p) => sqlx::query(sql).execute(p).await.map(drop),
    }
    .expect("a row with only its id");
    let r = rows(db).await;
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].dlg_id, r[0].state, r[0].caller_cseq.as_str(), r[0].vars.as_str()), (42, 0, "0", ""));
    store::replace_all(db, DEFAULT_TABLE, &[]).await.expect("clean");

    assert!(matches!(store::load(db, "dialog; DROP TABLE version").await, Err(DbError::InvalidName(_))));
    assert!(matches!(store::upsert(db, "a b", &a).await, Err(DbError::InvalidName(_))));
}

/// db_mode 1: a confirmed dialog's row appears at once and goes when the dialog ends;
/// restore into a fresh table brings the dialog and its profile count back.
async fn realtime_case(db: &Arc<Db>) {
    let t = table();
    let writer = start_writer(db.clone(), t.clone(), &cfg(1, 60)).expect("db_mode 1 writes");
    let dlg = confirmed(&t, "rt-1");
    let want = DialogRecord::of(&dlg);
    let got = wait_rows(db, "written at once", |r| r.len() == 1).await;
    assert_eq!(got[0], want);
    assert_eq!(got[0].profiles, r#"[["caller","alice"]]"#);

    // A later change rewrites the row.
    t.set_value(&dlg, "y", Some("2".into()));
    wait_rows(db, "rewritten", |r| r.first().is_some_and(|r| r.vars.contains("\"y\""))).await;

    // Restart: a fresh table restores the dialog, its values and profile counts.
    let fresh = table();
    assert_eq!(persist::restore(db, &fresh, DEFAULT_TABLE).await.expect("restore"), 1);
    let back = fresh.get(dlg.id).expect("restored");
    assert_eq!(DialogRecord::of(&back), DialogRecord::of(&dlg));
    assert_eq!(fresh.profiles.size("caller", Some("alice")), 1);
    assert_eq!(back.value("y").as_deref(), Some("2"));
    assert_eq!(persist::restore(db, &fresh, DEFAULT_TABLE).await.expect("restore"), 0, "known ids are skipped");

    // A call that fails before its 2xx never has a row; the ended one's row goes.
    let failed = t.create(&invite("rt-2"), String::new(), 0);
    t.on_final(&failed, 486);
    t.on_request(&dlg, &bye("rt-1"));
    assert!(dlg.is_ended());
    wait_rows(db, "removed at its end", |r| r.is_empty()).await;
    assert_eq!(writer.flush().await.expect("flush"), 0, "nothing left pending");
}

/// db_mode 2: nothing is written before the period; then the latest state; a dialog that
/// began and ended within one period leaves no row.
async fn delayed_case(db: &Arc<Db>) {
    let t = table();
    let writer = start_writer(db.clone(), t.clone(), &cfg(2, 2)).expect("db_mode 2 writes");
    let started = Instant::now();
    let dlg = confirmed(&t, "dl-1");
    let brief = confirmed(&t, "dl-2");
    t.on_request(&brief, &bye("dl-2"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rows(db).await.is_empty(), "written before the period");
    t.set_value(&dlg, "late", Some("yes".into()));
    let got = wait_rows(db, "written after the period", |r| !r.is_empty()).await;
    assert!(started.elapsed() >= Duration::from_millis(1500), "written after {:?}", started.elapsed());
    assert_eq!(got, vec![DialogRecord::of(&dlg)], "the latest state, and nothing of the brief dialog");

    // Writer::flush writes what is pending without waiting for the period.
    t.on_request(&dlg, &bye("dl-1"));
    assert_eq!(writer.flush().await.expect("flush"), 1);
    assert!(rows(db).await.is_empty());
}

/// db_mode 3: nothing until flush, which makes the table the live confirmed dialogs.
async fn shutdown_case(db: &Arc<Db>) {
    let t = table();
    let writer = start_writer(db.clone(), t.clone(), &cfg(3, 60)).expect("db_mode 3 writes");
    // A row of an earlier run that was never loaded must survive the shutdown write.
    let old = DialogRecord {
        dlg_id: 99,
        callid: "old".into(),
        caller_cseq: "0".into(),
        callee_cseq: "0".into(),
        state: 4,
        start_time: 1_900_000_000,
        timeout: 2_000_000_000,
        vars: "[]".into(),
        profiles: "[]".into(),
        ..Default::default()
    };
    store::upsert(db, DEFAULT_TABLE, &old).await.expect("upsert");
    let dlg = confirmed(&t, "sd-1");
    let _early = t.create(&invite("sd-2"), String::new(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(db).await, vec![old.clone()], "nothing written before shutdown");
    assert_eq!(writer.flush().await.expect("flush"), 2);
    let mut want = vec![old.clone(), DialogRecord::of(&dlg)];
    want.sort_by_key(|r| r.dlg_id);
    let got = rows(db).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got, want, "the unconfirmed dialog is not written");

    t.on_request(&dlg, &bye("sd-1"));
    let old_dlg = t.get(99).expect("the old row was loaded first");
    t.end(&old_dlg, "mi");
    assert_eq!(writer.flush().await.expect("flush"), 0);
    assert!(rows(db).await.is_empty());
}

fn run_all(t: &TestDb) {
    rt().block_on(async {
        let db = t.open().await;
        store_case(&db).await;
        realtime_case(&db).await;
        delayed_case(&db).await;
        shutdown_case(&db).await;
        db.close().await;
    });
}

/// The proxy with db_mode 3 restores the table's dialogs at start (profiles counted
/// again); `dlg_db_sync` writes memory to the table and `dlg_restore_db` reads back what
/// memory lacks.
#[test]
fn proxy_restores_at_start_and_mi_syncs() {
    let t = TestDb::sqlite("proxy_restores_at_start");
    rt().block_on(async {
        let db = t.open().await;
        // A previous run's dialog.
        let before = table();
        let dlg = confirmed(&before, "app-1");
        store::upsert(&db, DEFAULT_TABLE, &DialogRecord::of(&dlg)).await.expect("upsert");

        let mut cfg = siprox::config::Config::default();
        cfg.core.listen = vec![format!("udp:127.0.0.1:{}", free_port())];
        cfg.dialog.db_mode = 3;
        cfg.dialog.profiles_with_value = vec!["caller".into()];
        let modules = siprox::modules::Modules::new(&cfg);
        let host = siprox::script::ScriptHost::from_source(
            "fn route() { exit(); }",
            "dlg.rhai",
            siprox::app::script_limits(&cfg),
            modules.registrar(),
        )
        .expect("script");
        let running = siprox::app::start_with(&cfg, host, db.clone(), modules).expect("start");
        let dialogs = running.modules.dialogs.clone();
        let until = Instant::now() + Duration::from_secs(5);
        while dialogs.get(dlg.id).is_none() {
            assert!(Instant::now() < until, "the dialog was not restored at start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dialogs.profiles.size("caller", Some("alice")), 1, "its profile counts again");
        assert!(running.dialog_writer.as_ref().is_some_and(|w| w.db_mode() == 3));

        // A dialog of this run: in the table only after dlg_db_sync.
        let now = confirmed(&dialogs, "app-2");
        assert_eq!(rows(&db).await.len(), 1);
        let ok = running.mi.commands.call("dlg_db_sync", None).await.expect("dlg_db_sync");
        assert_eq!(ok, serde_json::json!("OK"));
        let ids: Vec<i64> = rows(&db).await.iter().map(|r| r.dlg_id).collect();
        let mut want = vec![dlg.id as i64, now.id as i64];
        want.sort();
        assert_eq!(ids, want);

        // Another node's dialog appears in the table: dlg_restore_db picks it up.
        let elsewhere = confirmed(&table(), "app-3");
        store::upsert(&db, DEFAULT_TABLE, &DialogRecord::of(&elsewhere)).await.expect("upsert");
        running.mi.commands.call("dlg_restore_db", None).await.expect("dlg_restore_db");
        assert!(dialogs.get(elsewhere.id).is_some());
        assert_eq!(dialogs.profiles.size("caller", Some("alice")), 3);

        // Shutdown (app::run's flush): the table holds the live dialogs.
        dialogs.terminate(&now, "mi");
        let writer = running.dialog_writer.as_ref().expect("writer");
        assert_eq!(writer.flush().await.expect("flush"), 2);
        assert_eq!(rows(&db).await.len(), 2);
        drop(running);
    });
}

/// One node of a pair sharing `t`'s database, in process: `app::start_with` with dialog
/// db_mode 1 and the profile `caller` (with value); returns once its start-up restore ran.
async fn node(t: &TestDb) -> siprox::app::Running {
    let mut cfg = siprox::config::Config::default();
    cfg.core.listen = vec![format!("udp:127.0.0.1:{}", free_port())];
    cfg.dialog.db_mode = 1;
    cfg.dialog.profiles_with_value = vec!["caller".into()];
    let modules = siprox::modules::Modules::new(&cfg);
    let host = siprox::script::ScriptHost::from_source(
        "fn route() { exit(); }",
        "pair.rhai",
        siprox::app::script_limits(&cfg),
        modules.registrar(),
    )
    .expect("script");
    let running = siprox::app::start_with(&cfg, host, t.open().await, modules).expect("start");
    let store = running.dialog_writer.as_ref().expect("db_mode 1 writes").store();
    let until = Instant::now() + Duration::from_secs(5);
    while !store.is_restored() {
        assert!(Instant::now() < until, "the table was not read at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
}

/// `name` of `get_statistics dialog:` on `node`.
async fn dialog_stat(node: &siprox::app::Running, name: &str) -> serde_json::Value {
    let all = node.mi.commands.call("get_statistics", Some(serde_json::json!([["dialog:"]]))).await.expect("stats");
    all[format!("dialog:{name}")].clone()
}

async fn resync(node: &siprox::app::Running) -> serde_json::Value {
    node.mi.commands.call("dlg_resync", None).await.expect("dlg_resync")
}

/// An active/standby pair on one table (db_mode 1): a call confirmed through A reaches B at
/// `dlg_resync` (profile counted, `dlg_list` shows it); once its BYE went through A, B's next
/// `dlg_resync` forgets it: nothing listed, nothing counted, and not counted as ended on B.
async fn resync_case(t: &TestDb) {
    let (a, b) = (node(t).await, node(t).await);
    let db = t.open().await;
    let call = confirmed(&a.modules.dialogs, "pair-1");
    wait_rows(&db, "A writes the call", |r| r.len() == 1).await;
    assert!(b.modules.dialogs.is_empty(), "B reads the table only when asked");

    assert_eq!(resync(&b).await, serde_json::json!({"Restored": 1, "Forgotten": 0}));
    let listed = b.mi.commands.call("dlg_list", None).await.expect("dlg_list");
    assert_eq!(listed["Dialogs"][0]["callid"], "pair-1", "{listed}");
    assert_eq!(b.modules.dialogs.profiles.size("caller", Some("alice")), 1);
    assert_eq!(dialog_stat(&b, "active_dialogs").await, 1);

    a.modules.dialogs.on_request(&call, &bye("pair-1"));
    wait_rows(&db, "A deletes the ended call's row", |r| r.is_empty()).await;
    assert_eq!(resync(&b).await, serde_json::json!({"Restored": 0, "Forgotten": 1}));
    let listed = b.mi.commands.call("dlg_list", None).await.expect("dlg_list");
    assert_eq!(listed["Dialogs"], serde_json::json!([]), "{listed}");
    assert_eq!(b.modules.dialogs.profiles.size("caller", Some("alice")), 0);
    assert_eq!(dialog_stat(&b, "active_dialogs").await, 0);
    assert_eq!(dialog_stat(&b, "processed_dialogs").await, 0, "it did not end on B");
    // B's writer saw no change: the table stays as A left it.
    assert_eq!(b.dialog_writer.as_ref().expect("writer").flush().await.expect("flush"), 0);
    assert!(rows(&db).await.is_empty());
    drop((a, b));
    db.close().await;
}

#[test]
fn sqlite_pair_resyncs_dialogs() {
    let t = TestDb::sqlite("sqlite_dlg_resync");
    rt().block_on(resync_case(&t));
}

#[test]
fn postgres_pair_resyncs_dialogs() {
    if let Some(t) = TestDb::server(Backend::Postgres, "postgres_dlg_resync") {
        rt().block_on(resync_case(&t));
    }
}

#[test]
fn mysql_pair_resyncs_dialogs() {
    if let Some(t) = TestDb::server(Backend::MySql, "mysql_dlg_resync") {
        rt().block_on(resync_case(&t));
    }
}

/// Runs `f` on the (migrated) database at `url`, then closes it.
fn on_db<T>(url: &str, f: impl AsyncFnOnce(&Db) -> T) -> T {
    rt().block_on(async {
        let db = Db::open(url).await.expect("open");
        db.migrate().await.expect("migrate");
        let out = f(&db).await;
        db.close().await;
        out
    })
}

/// `siprox run` with db_mode 3: the table's dialog is restored at start, and SIGTERM
/// writes memory back as the whole table (a row added behind its back goes).
#[test]
fn siprox_run_restores_and_writes_at_shutdown() {
    let dir = TempDir::new("dlg_run_db");
    let url = format!("sqlite://{}", dir.join("dialogs.db").display());
    let kept = {
        let t = table();
        DialogRecord::of(&confirmed(&t, "run-1"))
    };
    let stranger = DialogRecord { dlg_id: 5, callid: "run-2".into(), state: 4, ..kept.clone() };
    on_db(&url, async |db| store::upsert(db, DEFAULT_TABLE, &kept).await.expect("upsert"));

    let toml = format!("[db]\nurl = \"{url}\"\n\n[dialog]\ndb_mode = 3\nprofiles_with_value = [\"caller\"]\n");
    let proxy = Proxy::start_with("dlg_run", "fn route() { exit(); }", &toml);
    let until = Instant::now() + Duration::from_secs(10);
    while !proxy.log_text().contains("dialogs restored from the database") {
        assert!(Instant::now() < until, "no restore at start:\n{}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    on_db(&url, async |db| store::upsert(db, DEFAULT_TABLE, &stranger).await.expect("upsert"));
    let log = proxy.log_text();
    assert!(log.contains("restored=1"), "{log}");
    proxy.stop();

    let got = on_db(&url, async |db| rows(db).await);
    assert_eq!(got, vec![kept], "the table is what memory held at SIGTERM");
}

#[test]
fn sqlite_dialog_store() {
    run_all(&TestDb::sqlite("sqlite_dialog_store"));
}

#[test]
fn postgres_dialog_store() {
    if let Some(t) = TestDb::server(Backend::Postgres, "postgres_dialog_store") {
        run_all(&t);
    }
}

#[test]
fn mysql_dialog_store() {
    if let Some(t) = TestDb::server(Backend::MySql, "mysql_dialog_store") {
        run_all(&t);
    }
}
