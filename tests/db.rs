//! The database layer against real servers: the same migration, dispatcher-store, CLI
//! (`siprox ctl dispatcher`, `siprox ctl lb`) and start-up tests on SQLite (always, a temp
//! file), PostgreSQL (`SIPROX_TEST_PG`) and MySQL/MariaDB (`SIPROX_TEST_MYSQL`). `.ci/run`
//! exports both URLs; without one, the tests of that backend print a loud SKIPPED banner
//! and pass.
//!
//! Each PostgreSQL/MariaDB test creates a database of its own (`siprox_t_<pid>_<n>`, see
//! tests/support/testdb.rs) next to the one the URL names and drops it at the end, so
//! parallel runs never meet.

mod support;

use serde_json::Value;
use siprox::db::{migrate, migrate_on_start, Backend, Db, DbError, DbOptions, Pool, RetryPolicy};
use siprox::modules::dispatcher::store::{self, DEFAULT_TABLE};
use siprox::modules::dispatcher::DsRow;
use siprox::modules::load_balancer::store as lb_store;
use siprox::modules::load_balancer::LbRow;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::testdb::{rt, TestDb};
use support::{free_port, siprox_bin, Proxy, TempDir};

/// One integer a query returns (first column of the first row).
async fn scalar(db: &Db, sql: &str) -> i64 {
    use sqlx::Row;
    let r = match db.pool() {
        Pool::Sqlite(p) => sqlx::query(sql).fetch_one(p).await.map(|r| r.get::<i64, _>(0)),
        Pool::Postgres(p) => sqlx::query(sql)
            .fetch_one(p)
            .await
            .map(|r| r.try_get::<i64, _>(0).unwrap_or_else(|_| r.get::<i32, _>(0).into())),
        Pool::MySql(p) => sqlx::query(sql).fetch_one(p).await.map(|r| r.get::<i64, _>(0)),
    };
    r.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn exec(db: &Db, sql: &str) {
    let r = match db.pool() {
        Pool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
        Pool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        Pool::MySql(p) => sqlx::query(sql).execute(p).await.map(drop),
    };
    r.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

// ------------------------------------------------------------------ the cases

/// Migrations: applied once, a second run applies nothing, `version` says dispatcher 9, every
/// OpenSIPS column is there with OpenSIPS's defaults (NULL where OpenSIPS has NULL).
fn migrations_case(t: &TestDb) {
    rt().block_on(async {
        let db = t.connect().await;
        let applied = db.migrate().await.unwrap_or_else(|e| panic!("{}: {e}", t.url));
        assert_eq!(
            applied.iter().map(|a| (a.version, a.description.as_str())).collect::<Vec<_>>(),
            [(1, "version dispatcher"), (2, "dialog"), (3, "load balancer"), (4, "location"), (5, "subscriber")]
        );
        assert!(db.is_ready());
        // Idempotent, also from a second pool (another node, or `siprox migrate` beside the proxy).
        assert!(db.migrate().await.unwrap().is_empty());
        let again = t.connect().await;
        assert!(again.migrate().await.unwrap().is_empty());
        again.close().await;

        assert_eq!(scalar(&db, "SELECT table_version FROM version WHERE table_name = 'dispatcher'").await, 9);
        assert_eq!(scalar(&db, "SELECT table_version FROM version WHERE table_name = 'dialog'").await, 12);
        assert_eq!(scalar(&db, "SELECT table_version FROM version WHERE table_name = 'load_balancer'").await, 3);
        assert_eq!(scalar(&db, "SELECT table_version FROM version WHERE table_name = 'location'").await, 1013);
        assert_eq!(scalar(&db, "SELECT table_version FROM version WHERE table_name = 'subscriber'").await, 8);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM version").await, 5);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM _sqlx_migrations").await, 5);
        exec(&db, "SELECT id, username, domain, password, email_address, ha1, ha1_sha256, ha1_sha512t256, rpid FROM subscriber WHERE 1 = 0").await;
        exec(&db, "SELECT id, group_id, dst_uri, resources, probe_mode, attrs, description FROM load_balancer WHERE 1 = 0").await;
        exec(&db, "SELECT id, setid, destination, socket, state, probe_mode, weight, priority, attrs, description FROM dispatcher WHERE 1 = 0").await;

        // Column defaults: a row given only its destination.
        exec(&db, "INSERT INTO dispatcher (destination) VALUES ('sip:defaults.example')").await;
        let rows = store::load(&db, DEFAULT_TABLE).await.unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.setid, r.state, r.probe_mode, r.weight.as_str(), r.priority), (0, 0, 0, "1", 0), "{r:?}");
        assert_eq!((&r.socket, &r.attrs, &r.description), (&None, &None, &None), "{r:?}");
        assert!(r.id > 0);
        let st = db.status();
        assert_eq!((st.backend, st.ready, st.up), (t.backend().name(), true, Some(true)));
        assert_eq!(st.queries_failed, 0);
        db.close().await;
    });
}

/// The dispatcher store: insert, load in OpenSIPS's order, NULLs and odd text kept,
/// set_state, delete by destination and by id, table names checked.
fn store_case(t: &TestDb) {
    rt().block_on(async {
        let db = t.connect().await;
        db.migrate().await.unwrap();
        let mut c = DsRow::new(2, "sip:c.example:5060");
        c.priority = 0;
        let mut a = DsRow::new(1, "sip:a.example:5060;transport=tcp");
        a.priority = 1;
        let mut b = DsRow::new(1, "sip:b.example");
        b.priority = 5;
        b.weight = "10".into();
        b.socket = Some("udp:127.0.0.1:5060".into());
        b.attrs = Some("maxload=10;it's \"quoted\"".into());
        b.description = Some("gw b — ü".into());
        b.probe_mode = 1;
        let mut d = DsRow::new(1, "sip:d.example");
        d.priority = 5;
        let mut ids = Vec::new();
        for row in [&c, &a, &b, &d] {
            ids.push(store::insert(&db, DEFAULT_TABLE, row).await.unwrap_or_else(|e| panic!("{}: {e}", t.url)));
        }
        assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids grow: {ids:?}");

        let rows = store::load(&db, DEFAULT_TABLE).await.unwrap();
        let order: Vec<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        // Set 1 first; inside it priority 5 (b before d: added first), then 1; then set 2.
        assert_eq!(order, ["sip:b.example", "sip:d.example", "sip:a.example:5060;transport=tcp", "sip:c.example:5060"]);
        let got_b = &rows[0];
        assert_eq!(got_b.id, ids[2]);
        let want_b = siprox::modules::dispatcher::DsRow { id: ids[2], ..b.clone() };
        assert_eq!(got_b, &want_b, "every column round-trips");
        assert_eq!(rows[1].attrs, None, "NULL stays NULL");
        assert_eq!(rows[1].description, None);

        assert_eq!(store::set_state(&db, DEFAULT_TABLE, 1, "sip:d.example", 1).await.unwrap(), 1);
        assert_eq!(store::set_state(&db, DEFAULT_TABLE, 9, "sip:d.example", 1).await.unwrap(), 0);
        assert_eq!(store::delete(&db, DEFAULT_TABLE, 1, "sip:b.example").await.unwrap(), 1);
        assert_eq!(store::delete(&db, DEFAULT_TABLE, 1, "sip:nobody").await.unwrap(), 0);
        assert_eq!(store::delete_id(&db, DEFAULT_TABLE, ids[0]).await.unwrap(), 1);
        assert_eq!(store::delete_id(&db, DEFAULT_TABLE, ids[0]).await.unwrap(), 0);
        let rows = store::load(&db, DEFAULT_TABLE).await.unwrap();
        let left: Vec<(&str, i64)> = rows.iter().map(|r| (r.destination.as_str(), r.state)).collect();
        assert_eq!(left, [("sip:d.example", 1), ("sip:a.example:5060;transport=tcp", 0)]);

        assert!(matches!(store::load(&db, "dispatcher; DROP TABLE version").await, Err(DbError::InvalidName(_))));
        let e = store::load(&db, "no_such_table").await.unwrap_err();
        assert!(matches!(e, DbError::Query { .. }) && !e.is_transient(), "{e}");
        assert_eq!(db.health().queries_failed(), 1, "the invalid name never reached the database");
        db.close().await;
    });
}

fn run_siprox(dir: &Path, args: &[&str]) -> Output {
    Command::new(siprox_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SIPROX_MI_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run siprox")
}

fn shown(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config in `t`'s directory naming its database and an MI port nobody listens on.
fn ctl_config(t: &TestDb, name: &str) -> String {
    let cfg = t.dir().join(name);
    std::fs::write(&cfg, format!("[db]\nurl = \"{}\"\n\n[mi]\nlisten = \"127.0.0.1:{}\"\n", t.url, free_port()))
        .unwrap();
    cfg.to_str().unwrap().to_string()
}

/// `siprox ctl -c cfg ARGS` in `t`'s directory, waiting at most 2 s for a proxy.
fn ctl_no_proxy(t: &TestDb, cfg: &str, args: &[&str]) -> Output {
    let mut all = vec!["ctl", "-c", cfg, "--timeout", "2"];
    all.extend_from_slice(args);
    run_siprox(t.dir(), &all)
}

/// Runs each `add` with no proxy running: a row is added, and the `reload` step says no
/// proxy answered.
fn assert_added(ctl: &dyn Fn(&[&str]) -> Output, adds: &[&[&str]], reload: &str) {
    for args in adds {
        let o = ctl(args);
        assert!(o.status.success(), "{args:?}: {}", shown(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("added id "), "{}", shown(&o));
        let note = format!("no proxy answered {reload}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(&note), "{}", shown(&o));
    }
}

/// What a `list` that succeeded printed.
fn listed(o: Output) -> String {
    assert!(o.status.success(), "{}", shown(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The rows a `--json … list` printed.
fn json_rows(o: Output) -> Vec<Value> {
    match serde_json::from_slice(&o.stdout) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("{other:?}: {}", shown(&o)),
    }
}

/// `ctl NAME rm id=ID` of the row whose `column` is `value` removes it; of an id that is
/// not there, exit 1.
fn rm_by_id(ctl: &dyn Fn(&[&str]) -> Output, name: &str, (column, value): (&str, i64)) {
    let all = json_rows(ctl(&["--json", name, "list"]));
    let id = all.iter().find(|r| r[column] == value).unwrap_or_else(|| panic!("{column} {value}: {all:?}"))["id"]
        .to_string();
    let o = ctl(&[name, "rm", &format!("id={id}")]);
    assert!(o.status.success(), "{}", shown(&o));
    let o = ctl(&[name, "rm", "id=999999"]);
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
}

/// `siprox migrate` and `siprox ctl dispatcher add/list/rm` through the binary, with no proxy
/// running (the reload step says so and the command still succeeds).
fn cli_case(t: &TestDb) {
    let dir = t.dir();
    let cfg = ctl_config(t, "cli.toml");
    let cfg = cfg.as_str();
    let o = run_siprox(dir, &["migrate", "-c", cfg]);
    assert!(o.status.success(), "{}", shown(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("applied 0001 version dispatcher"), "{}", shown(&o));
    let o = run_siprox(dir, &["migrate", "-c", cfg]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("up to date"), "{}", shown(&o));

    let ctl = |args: &[&str]| ctl_no_proxy(t, cfg, args);
    assert_added(
        &ctl,
        &[
            &["dispatcher", "add", "1", "sip:10.0.0.1:5060", "weight=2", "priority=1", "description=gw a"][..],
            &["dispatcher", "add", "1", "sip:10.0.0.2:5060", "priority=9", "attrs=maxload=5"],
            &["dispatcher", "add", "2", "sip:10.0.0.3:5060;transport=tcp"],
        ],
        "ds_reload",
    );
    let text = listed(ctl(&["dispatcher", "list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id") && lines[0].contains("destination"), "{text}");
    assert!(lines[1].contains("sip:10.0.0.2:5060") && lines[2].contains("sip:10.0.0.1:5060"), "{text}");
    assert!(lines[3].contains("sip:10.0.0.3:5060;transport=tcp"), "{text}");

    let rows = json_rows(ctl(&["--json", "dispatcher", "list", "1"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["destination"], "sip:10.0.0.2:5060");
    assert_eq!(rows[0]["attrs"], "maxload=5");
    assert_eq!(rows[1]["weight"], "2");
    assert_eq!(rows[1]["description"], "gw a");
    assert_eq!(rows[1]["socket"], Value::Null);

    let o = ctl(&["dispatcher", "rm", "1", "sip:10.0.0.1:5060"]);
    assert!(o.status.success(), "{}", shown(&o));
    rm_by_id(&ctl, "dispatcher", ("setid", 2));
    let o = ctl(&["dispatcher", "add", "one", "sip:x"]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));

    // The table as the store reads it.
    rt().block_on(async {
        let db = t.connect().await;
        let rows = store::load(&db, DEFAULT_TABLE).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.destination.as_str()).collect::<Vec<_>>(), ["sip:10.0.0.2:5060"]);
        db.close().await;
    });
}

/// `siprox run` with the default script on `t`'s database: the proxy, its directory and its
/// config file.
fn db_proxy(t: &TestDb, label: &str) -> (Proxy, std::path::PathBuf, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/default.rhai");
    let proxy = Proxy::start_script_file(label, &script, &format!("\n[db]\nurl = \"{}\"\n", t.url));
    let dir = proxy.config_path().parent().unwrap().to_path_buf();
    let cfg = proxy.config_path().to_str().unwrap().to_string();
    (proxy, dir, cfg)
}

/// `siprox run` on this database: it migrates at start, `db_status` says ready, and
/// `siprox ctl dispatcher add` against the running proxy changes the table.
fn proxy_case(t: &TestDb) {
    let (proxy, dir, cfg) = db_proxy(t, "db-proxy");
    let cfg = cfg.as_str();
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "--json", "db_status"]);
    assert!(o.status.success(), "{}", shown(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["Backend"], t.backend().name());
    assert_eq!(st["Ready"], true, "{st}");
    assert_eq!(st["Up"], "yes", "{st}");
    assert!(proxy.log_text().contains("migration applied"), "{}", proxy.log_text());

    let o = run_siprox(&dir, &["ctl", "-c", cfg, "dispatcher", "add", "7", "sip:192.0.2.7:5060"]);
    assert!(o.status.success(), "{}", shown(&o));
    // The row is in the table and, through ds_reload, in the proxy's sets.
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "--json", "ds_list"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sip:192.0.2.7:5060"), "{}", shown(&o));
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "get_statistics", "db:"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("db:ready: 1"), "{}", shown(&o));
    proxy.stop();
    rt().block_on(async {
        let db = t.connect().await;
        let rows = store::load(&db, DEFAULT_TABLE).await.unwrap();
        assert!(rows.iter().any(|r| r.setid == 7 && r.destination == "sip:192.0.2.7:5060"), "{rows:?}");
        db.close().await;
    });
}

/// `siprox ctl lb add/list/rm` through the binary, with no proxy running (the `lb_reload`
/// step says so and the command still succeeds); bad input is a usage error (exit 2).
fn lb_cli_case(t: &TestDb) {
    let cfg = ctl_config(t, "lb.toml");
    let o = run_siprox(t.dir(), &["migrate", "-c", &cfg]);
    assert!(o.status.success(), "{}", shown(&o));
    let ctl = |args: &[&str]| ctl_no_proxy(t, &cfg, args);
    assert_added(
        &ctl,
        &[
            &["lb", "add", "1", "sip:10.0.0.1:5060", "pstn=32;transc=10", "description=gw a"][..],
            &["lb", "add", "1", "sip:10.0.0.2:5060;transport=tcp", "pstn=10", "probe_mode=2", "attrs=x=1"],
            &["lb", "add", "2", "sip:10.0.0.3:5060", "transc=5", "probe_mode=1"],
        ],
        "lb_reload",
    );
    let text = listed(ctl(&["lb", "list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id") && lines[0].contains("dst_uri") && lines[0].contains("resources"), "{text}");
    assert!(lines[1].contains("sip:10.0.0.1:5060") && lines[1].contains("pstn=32;transc=10"), "{text}");
    assert!(lines[2].contains("sip:10.0.0.2:5060;transport=tcp") && lines[3].contains("transc=5"), "{text}");

    let rows = json_rows(ctl(&["--json", "lb", "list", "1"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["dst_uri"], "sip:10.0.0.1:5060");
    assert_eq!(rows[0]["description"], "gw a");
    assert_eq!(rows[0]["attrs"], Value::Null);
    assert_eq!(
        (&rows[1]["group_id"], &rows[1]["probe_mode"], &rows[1]["attrs"]),
        (&1.into(), &2.into(), &"x=1".into())
    );

    let o = ctl(&["lb", "rm", "1", "sip:10.0.0.1:5060"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("removed 1 row"), "{}", shown(&o));
    let o = ctl(&["lb", "rm", "2", "sip:10.0.0.2:5060;transport=tcp"]);
    assert_eq!(o.status.code(), Some(1), "another group: {}", shown(&o));
    rm_by_id(&ctl, "lb", ("group_id", 2));
    for bad in [
        &["lb", "add", "one", "sip:10.0.0.9", "pstn=1"][..],
        &["lb", "add", "1", "10.0.0.9", "pstn=1"],
        &["lb", "add", "1", "sip:[10.0.0.9", "pstn=1"],
        &["lb", "add", "1", "sip:10.0.0.9", "pstn"],
        &["lb", "add", "1", "sip:10.0.0.9", "pstn=0"],
        &["lb", "add", "1", "sip:10.0.0.9", "pstn=x;transc=2"],
        &["lb", "add", "1", "sip:10.0.0.9"],
        &["lb", "add", "1", "sip:10.0.0.9", "pstn=1", "probe_mode=3"],
        &["lb", "rm", "1"],
    ] {
        let o = ctl(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", shown(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage: siprox ctl lb"), "{}", shown(&o));
    }

    // The table as the store reads it.
    rt().block_on(async {
        let db = t.open().await;
        let rows = lb_store::load(&db, lb_store::DEFAULT_TABLE).await.unwrap();
        let mut want = LbRow::new(1, "sip:10.0.0.2:5060;transport=tcp", "pstn=10");
        (want.probe_mode, want.attrs) = (2, Some("x=1".into()));
        assert_eq!(rows, [LbRow { id: rows[0].id, ..want }]);
        db.close().await;
    });
}

/// `siprox ctl lb add` against a running proxy: `lb_reload` puts the row into `lb_list`,
/// `lb rm` takes it out again, `lb reload` alone asks for `lb_reload`.
fn lb_proxy_case(t: &TestDb) {
    let (proxy, dir, cfg) = db_proxy(t, "db-proxy-lb");
    let ctl = |args: &[&str]| {
        let o = run_siprox(&dir, &[&["ctl", "-c", cfg.as_str()][..], args].concat());
        assert!(o.status.success(), "{args:?}: {}", shown(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = ctl(&["lb", "add", "4", "sip:192.0.2.4:5060", "pstn=3;transc=1", "description=lb ctl"]);
    assert!(out.contains("lb_reload: OK"), "{out}");
    let list: Value = serde_json::from_str(&ctl(&["--json", "lb_list"])).unwrap();
    let dsts = list["Destinations"].as_array().unwrap();
    assert_eq!(dsts.len(), 1, "{list}");
    assert_eq!((&dsts[0]["group"], &dsts[0]["uri"]), (&4.into(), &"sip:192.0.2.4:5060".into()), "{list}");
    assert_eq!(dsts[0]["Resources"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(ctl(&["lb", "reload"]).contains("lb_reload: OK"));
    assert!(ctl(&["lb", "rm", "4", "sip:192.0.2.4:5060"]).contains("lb_reload: OK"));
    let list: Value = serde_json::from_str(&ctl(&["--json", "lb_list"])).unwrap();
    assert_eq!(list["Destinations"], Value::Array(vec![]), "{list}");
    proxy.stop();
}

// ----------------------------------------------------------------- the tests

macro_rules! on_every_backend {
    ($($case:ident: $sqlite:ident, $pg:ident, $mysql:ident;)*) => {$(
        #[test]
        fn $sqlite() {
            $case(&TestDb::sqlite(stringify!($sqlite)));
        }
        #[test]
        fn $pg() {
            if let Some(t) = TestDb::server(Backend::Postgres, stringify!($pg)) {
                $case(&t);
            }
        }
        #[test]
        fn $mysql() {
            if let Some(t) = TestDb::server(Backend::MySql, stringify!($mysql)) {
                $case(&t);
            }
        }
    )*};
}

on_every_backend! {
    migrations_case: sqlite_migrations, postgres_migrations, mysql_migrations;
    store_case: sqlite_dispatcher_store, postgres_dispatcher_store, mysql_dispatcher_store;
    cli_case: sqlite_migrate_and_ctl_dispatcher, postgres_migrate_and_ctl_dispatcher, mysql_migrate_and_ctl_dispatcher;
    proxy_case: sqlite_proxy_migrates_at_start, postgres_proxy_migrates_at_start, mysql_proxy_migrates_at_start;
    lb_cli_case: sqlite_ctl_lb, postgres_ctl_lb, mysql_ctl_lb;
    lb_proxy_case: sqlite_proxy_ctl_lb, postgres_proxy_ctl_lb, mysql_proxy_ctl_lb;
}

/// Every .sql file of migrations/<backend>/ is built into the binary, and the three
/// backends have the same migrations (same versions, same names).
#[test]
fn every_migration_file_is_embedded_and_the_backends_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut names = Vec::new();
    for b in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let folder = root.join(migrate::folder(b));
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = migrate::embedded(b).iter().map(|(n, _)| *n).collect();
        assert_eq!(embedded, files, "migrations/{} and the list in src/db/migrate.rs differ", b.name());
        for (name, sql) in migrate::embedded(b) {
            assert_eq!(*sql, std::fs::read_to_string(folder.join(name)).unwrap(), "{name}");
        }
        names.push(files);
    }
    assert!(names.windows(2).all(|w| w[0] == w[1]), "the backends' migrations differ: {names:?}");
}

/// A closed port on loopback.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A server that is down: opening is immediate, every operation fails within its timeout
/// with the reason, retries are bounded, logged and counted, and start-up goes on with the
/// migrations in the background.
#[test]
fn unreachable_server_fails_fast_and_retries_are_counted() {
    let port = closed_port();
    for url in [
        format!("postgres://postgres:s3cret@127.0.0.1:{port}/test"),
        format!("mysql://root:s3cret@127.0.0.1:{port}/test"),
    ] {
        rt().block_on(async {
            let opts = DbOptions { timeout: Duration::from_millis(300), ..DbOptions::default() };
            let t0 = Instant::now();
            let db = Db::open_with(&url, &opts).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(t0.elapsed() < Duration::from_millis(200), "open waited {:?}", t0.elapsed());
            assert!(!db.url().contains("s3cret") && db.url().contains(":***@"), "{}", db.url());

            let policy = RetryPolicy {
                initial: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
                max_attempts: Some(3),
                stop_on_permanent: false,
            };
            let t1 = Instant::now();
            let e = db.retry("loading dispatcher", &policy, || store::load(&db, DEFAULT_TABLE)).await.unwrap_err();
            assert!(t1.elapsed() < Duration::from_secs(10), "{:?}", t1.elapsed());
            assert!(matches!(e, DbError::Unavailable { .. }) && e.is_transient(), "{e}");
            assert!(e.to_string().contains("refused"), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
            let st = db.status();
            assert_eq!((st.queries_ok, st.queries_failed, st.retries), (0, 3, 2), "{st:?}");
            assert_eq!((st.up, st.ready), (Some(false), false));
            assert!(st.last_error.unwrap().message.contains("refused"));

            // `siprox run` would go on: the migrations continue in the background.
            let db = Arc::new(db);
            let task = migrate_on_start(&db).await.unwrap_or_else(|e| panic!("start-up must not fail: {e}"));
            let task = task.expect("a background migration task");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!task.is_finished());
            task.abort();
            assert!(!db.is_ready());
        });
    }
}

/// `siprox ctl dispatcher` never creates a SQLite database where it runs.
#[test]
fn ctl_without_a_database_says_so() {
    let dir = TempDir::new("db-ctl-missing");
    let o = run_siprox(dir.path(), &["ctl", "dispatcher", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("siprox migrate"), "{}", shown(&o));
    assert!(!dir.join("siprox.db").exists());
}

// ------------------------------------------------- the database stops during traffic

/// A TCP relay between the proxy and the database server, which the test can cut: the
/// database "stops" for the proxy without touching the shared server. The listener stays
/// bound for the relay's whole life (a cut relay accepts and closes at once), so bringing
/// the database back never races another socket for the port.
struct Relay {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        listener.set_nonblocking(true).expect("nonblocking listener");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (ct, st, cs) = (cut.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if ct.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                let mut list = cs.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut r, mut w) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut r, &mut w);
                        let _ = w.shutdown(std::net::Shutdown::Both);
                    });
                }
                list.push(client);
                list.push(server);
            }
        });
        Relay { port, cut, stop, conns, accept: Some(accept) }
    }

    /// Closes every new connection at once and cuts the open ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Relays new connections again.
    fn resume(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// `url` pointing at 127.0.0.1:`port` instead of its own server; its server's `host:port`.
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL with ://");
    let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = auth.rsplit_once('@').map_or(("", auth), |(u, h)| (u, h));
    let default_port = if scheme.starts_with("postgres") { 5432 } else { 3306 };
    let upstream = if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") };
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    (format!("{scheme}://{at}127.0.0.1:{port}{path}"), upstream)
}

const PICKING: &str = r#"fn route() {
    if has_totag() {
        if loose_route() == 1 { t_relay(); exit(); }
        if is_method("ACK") { if t_check_trans() == 1 { t_relay(); } exit(); }
        sl_send_reply(404, "Not here"); exit();
    }
    if is_method("CANCEL") { if t_check_trans() == 1 { t_relay(); } exit(); }
    record_route();
    if ds_select_dst(1, 4) != 1 { send_reply(503, "No destination"); exit(); }
    if t_relay() < 0 { sl_reply_error(); }
}
"#;

/// The database goes away while calls flow: routing goes on from memory, `ds_reload` fails
/// and keeps the sets, `db_status` says why; when it is back, `ds_reload` works again.
fn database_down_case(t: &TestDb) {
    let (_, upstream) = through(&t.url, 0);
    let relay = Relay::start(upstream);
    let (url, _) = through(&t.url, relay.port);
    let proxy = Proxy::start_with("db-down", PICKING, &format!("\n[db]\nurl = \"{url}\"\ntimeout_ms = 1000\n"));
    let dir = proxy.config_path().parent().unwrap().to_path_buf();
    let cfg = proxy.config_path();
    let cfg = cfg.to_str().unwrap();
    let ports = [free_port(), free_port()];
    let _uas: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            support::Sipp::uas(&format!("uas-{i}"), "uas-ds.xml", p, support::Proto::Udp)
                .calls(1_000_000)
                .timeout_s(120)
                .spawn(&proxy.dir)
        })
        .collect();
    for p in ports {
        let o = run_siprox(&dir, &["ctl", "-c", cfg, "dispatcher", "add", "1", &format!("sip:127.0.0.1:{p}")]);
        assert!(o.status.success(), "{}", shown(&o));
    }
    let mut uac = support::Sipp::uac("uac", "uac-call.xml", &proxy, support::Proto::Udp)
        .calls(120)
        .timeout_s(60)
        .arg("-r")
        .arg("30")
        .spawn(&proxy.dir);
    std::thread::sleep(Duration::from_secs(1));
    relay.cut();
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "ds_reload"]);
    assert_eq!(o.status.code(), Some(1), "ds_reload must fail while the database is away: {}", shown(&o));
    uac.assert_success();
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "--json", "db_status"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", shown(&o)));
    assert_eq!(st["Up"], "no", "{st}");
    assert!(st["Last error"]["Message"].is_string(), "{st}");
    let o = run_siprox(&dir, &["ctl", "-c", cfg, "--json", "ds_list"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(ports.iter().all(|p| listed.contains(&format!("sip:127.0.0.1:{p}"))), "the sets stayed: {listed}");

    // Back again: the next reload reads the table.
    relay.resume();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let o = run_siprox(&dir, &["ctl", "-c", cfg, "ds_reload"]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < end, "ds_reload did not recover: {}", shown(&o));
        std::thread::sleep(Duration::from_millis(300));
    }
    proxy.stop();
}

#[test]
fn postgres_down_during_traffic_does_not_stop_routing() {
    if let Some(t) = TestDb::server(Backend::Postgres, "postgres_down_during_traffic") {
        database_down_case(&t);
    }
}

#[test]
fn mysql_down_during_traffic_does_not_stop_routing() {
    if let Some(t) = TestDb::server(Backend::MySql, "mysql_down_during_traffic") {
        database_down_case(&t);
    }
}
