//! The shipped examples/ end to end: each seed deployment's own `siprox.toml`, `route.rhai`
//! and `seed.sql`, run with SIPp peers standing in for the phones and the FreeSWITCH farm.
//!
//! A test changes only what it must in a shipped config, by parsing the TOML and setting
//! keys: `[core] listen` (127.0.0.1 and a free port), `[core] script` (the same file, by its
//! absolute path), `[db] url` (a temp SQLite file, or a database of its own on the
//! PostgreSQL / MySQL server of `SIPROX_TEST_PG` / `SIPROX_TEST_MYSQL`), `[mi] listen`, and
//! it removes `[ha]` (moving a VIP needs root and network namespaces: tests/ha.rs). It then
//! asserts every other key is what the file says. The database is set up as each README
//! says: `siprox migrate -c`, then seed.sql as shipped; the only change to the seeded rows
//! is the media servers' addresses, moved to the SIPp backends' loopback ports with UPDATEs.
//!
//! - enterprise-lb (seed 000): REGISTERs spread over dispatcher set 1, calls balanced by
//!   relative load over load_balancer group 1 (12 held calls land 4/4/2/2 on 60/60/30/30
//!   channels) and complete, their dialogs written to the database while they last; a host
//!   that stops answering OPTIONS is disabled by probing and no call or REGISTER goes to it.
//! - federated-registrar (seed 001): a phone registered with node Y; the media server asks
//!   node X first (404), then Y, and the phone answers; a method the phone does not allow
//!   gets 405.
//! - nat-partitioned (seed 002): a client's REGISTER reaches a set-1 backend with a Path
//!   carrying its NAT address; 3000 goes to the conference machine, 1000 to the shared farm,
//!   a tenant domain to its machine and, once that is down, to the spare; the farm calls the
//!   client back through the Path's received address, and the client's reply Contact is fixed.
//! - active-standby-registrar (seeds 003/004): both nodes on one database; a phone behind NAT
//!   logs in and registers through node 1, and node 2 routes an authenticated call to it.

mod support;

use serde_json::Value;
use siprox::db::{Backend, Db, Pool};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;
use support::testdb::{rt, TestDb};
use support::*;

// ------------------------------------------------------------------ the examples' files

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn read_toml(path: &Path) -> toml::Table {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys a test rewrites in a shipped config (besides removing `[ha]`).
const REWRITTEN: &[(&str, &str)] = &[("core", "listen"), ("core", "script"), ("db", "url"), ("mi", "listen")];

/// `t` without the rewritten keys, without `[ha]`, and without tables left empty.
fn untouched(t: &toml::Table) -> toml::Table {
    let mut t = t.clone();
    t.remove("ha");
    for (section, key) in REWRITTEN {
        if let Some(toml::Value::Table(s)) = t.get_mut(*section) {
            s.remove(*key);
        }
    }
    t.retain(|_, v| !matches!(v, toml::Value::Table(x) if x.is_empty()));
    t
}

/// Sets `[section] key = value`, creating the table if needed.
fn set(t: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = t.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(s) => {
            s.insert(key.to_string(), value);
        }
        other => panic!("[{section}] is not a table: {other:?}"),
    }
}

/// A shipped config made runnable here: the file as parsed, the rewritten one, the ports.
struct Node {
    original: toml::Table,
    text: String,
    port: u16,
    mi_port: u16,
    dir: TempDir,
}

/// Reads examples/`example`/`file`, rewrites the keys of [`REWRITTEN`] (every `listen`
/// entry to 127.0.0.1:one free port, keeping its transport; the script to the shipped
/// file's absolute path), removes `[ha]`, and asserts that everything else is unchanged.
fn prepare(example: &str, file: &str, db_url: &str, label: &str) -> Node {
    let folder = example_dir(example);
    let path = folder.join(file);
    let original = read_toml(&path);
    let mut t = original.clone();
    let (port, mi_port) = (free_port(), free_port());

    let listen: Vec<toml::Value> = original
        .get("core")
        .and_then(|c| c.get("listen"))
        .and_then(|l| l.as_array())
        .unwrap_or_else(|| panic!("{}: no [core] listen", path.display()))
        .iter()
        .map(|entry| {
            let s = entry.as_str().unwrap_or_else(|| panic!("{}: listen entry {entry:?}", path.display()));
            let (proto, _) = s.split_once(':').unwrap_or_else(|| panic!("{}: listen {s:?}", path.display()));
            toml::Value::String(format!("{proto}:{LOCALHOST}:{port}"))
        })
        .collect();
    assert!(!listen.is_empty(), "{}: [core] listen is empty", path.display());
    set(&mut t, "core", "listen", toml::Value::Array(listen));

    let script = original
        .get("core")
        .and_then(|c| c.get("script"))
        .and_then(|s| s.as_str())
        .unwrap_or_else(|| panic!("{}: no [core] script", path.display()));
    assert_eq!(script, "route.rhai", "{}: the example's script is route.rhai beside it", path.display());
    let script = folder.join(script);
    assert!(script.exists(), "{} is missing", script.display());
    set(&mut t, "core", "script", toml::Value::String(script.display().to_string()));
    set(&mut t, "db", "url", toml::Value::String(db_url.to_string()));
    set(&mut t, "mi", "listen", toml::Value::String(format!("{LOCALHOST}:{mi_port}")));
    t.remove("ha");

    assert_eq!(untouched(&original), untouched(&t), "{}: only the rewritten keys may differ", path.display());
    let text = format!(
        "# {} as shipped, with listen, script, db url and mi listen rewritten and [ha] removed\n{}",
        path.display(),
        toml::to_string(&t).expect("the rewritten config prints")
    );
    let dir = TempDir::new(label);
    fs::write(dir.join("siprox.toml"), &text).expect("write the config");
    Node { original, text, port, mi_port, dir }
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("siprox.toml")
    }

    /// `siprox migrate -c siprox.toml`, as the README says.
    fn migrate(&self) {
        let out = Command::new(siprox_bin())
            .args(["migrate", "-c"])
            .arg(self.config_path())
            .output()
            .expect("run siprox migrate");
        assert!(
            out.status.success(),
            "siprox migrate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(self) -> Proxy {
        Proxy::start_config(self.dir, &self.text, self.port, self.mi_port)
    }
}

// ----------------------------------------------------------------------- the database

/// A database on the first server of `prefer` whose variable is set; else SQLite, with a
/// banner saying the shared-database part of `what` did not run.
fn shared_db(what: &str, label: &str, prefer: &[Backend]) -> TestDb {
    for backend in prefer {
        let var = if *backend == Backend::Postgres { "SIPROX_TEST_PG" } else { "SIPROX_TEST_MYSQL" };
        if std::env::var(var).is_ok_and(|v| !v.trim().is_empty()) {
            return TestDb::server(*backend, label).expect("the variable is set");
        }
    }
    // Straight to stderr: the test harness captures eprintln!, and this must show.
    let _ = writeln!(
        std::io::stderr(),
        "\n**************************************************************\n\
         SHARED DATABASE SKIPPED: neither SIPROX_TEST_MYSQL nor SIPROX_TEST_PG is set:\n\
         {what} ran on SQLite instead of the shared database of its example\n\
         (.ci/run exports both; e.g. SIPROX_TEST_PG=postgres://postgres@127.0.0.1:5432/test)\n\
         **************************************************************\n"
    );
    TestDb::sqlite(label)
}

/// Runs each statement on `url`; rows affected, in order.
fn exec_sql(url: &str, statements: &[String]) -> Vec<u64> {
    rt().block_on(async {
        let db = Db::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        let mut out = Vec::new();
        for s in statements {
            let done = match db.pool() {
                Pool::Sqlite(p) => sqlx::query(s).execute(p).await.map(|r| r.rows_affected()),
                Pool::Postgres(p) => sqlx::query(s).execute(p).await.map(|r| r.rows_affected()),
                Pool::MySql(p) => sqlx::query(s).execute(p).await.map(|r| r.rows_affected()),
            };
            out.push(done.unwrap_or_else(|e| panic!("{url}: {s}: {e}")));
        }
        db.close().await;
        out
    })
}

/// `SELECT COUNT(*) …` on `url`.
fn count(url: &str, sql: &str) -> i64 {
    rt().block_on(async {
        let db = Db::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        let n = match db.pool() {
            Pool::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Pool::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Pool::MySql(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        };
        db.close().await;
        n.unwrap_or_else(|e| panic!("{url}: {sql}: {e}"))
    })
}

/// examples/`example`/seed.sql as shipped, loaded into `url`: its statements (comment lines
/// dropped, split at `;`), each of which must insert a row.
fn load_seed(example: &str, url: &str) -> usize {
    let path = example_dir(example).join("seed.sql");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let statements: Vec<String> =
        code.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    assert!(!statements.is_empty(), "{}: no statement", path.display());
    let rows = exec_sql(url, &statements);
    assert!(rows.iter().all(|n| *n == 1), "{}: every INSERT adds a row: {rows:?}", path.display());
    statements.len()
}

/// Moves a seeded destination to a SIPp peer's address: `UPDATE table SET column = new
/// WHERE column = old`, which must match at least one row.
fn remap(url: &str, table: &str, column: &str, old: &str, new: &str) {
    let n = exec_sql(url, &[format!("UPDATE {table} SET {column} = '{new}' WHERE {column} = '{old}'")])[0];
    assert!(n > 0, "seed.sql has no {table} row with {column} = {old}");
}

// --------------------------------------------------------------------------- helpers

/// Requests of `method` a SIPp peer received, once its message log stops growing.
fn settled(uas: &RunningSipp, method: &str) -> usize {
    let mut last = usize::MAX;
    for _ in 0..30 {
        let n = uas.received_requests(method);
        if n == last {
            return n;
        }
        last = n;
        thread::sleep(Duration::from_millis(100));
    }
    last
}

/// A FreeSWITCH stand-in (tests/sipp/uas-fs.xml) on `port`: probes, REGISTERs and calls.
fn fs_backend(dir: &TempDir, name: &str, port: u16) -> RunningSipp {
    Sipp::uas(name, "uas-fs.xml", port, Proto::Udp).calls(1_000_000).timeout_s(90).message_log().spawn(dir)
}

/// `(uri, enabled, pstn load)` of each load_balancer destination, in id order.
fn lb_state(proxy: &Proxy) -> Vec<(String, String, i64)> {
    let v = ctl_json(proxy, &["lb_list"]);
    v["Destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let load = d["Resources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == "pstn")
                .and_then(|r| r["load"].as_i64())
                .unwrap_or(-1);
            (d["uri"].as_str().unwrap_or("").to_string(), d["enabled"].as_str().unwrap_or("").to_string(), load)
        })
        .collect()
}

/// The `state` (`Active`, `Probing`, `Inactive`) of dispatcher destination `uri`.
fn ds_state(proxy: &Proxy, uri: &str) -> String {
    let v: Value = ctl_json(proxy, &["ds_list"]);
    for part in v["PARTITIONS"].as_array().into_iter().flatten() {
        for set in part["SETS"].as_array().into_iter().flatten() {
            for d in set["Destinations"].as_array().into_iter().flatten() {
                if d["URI"] == uri {
                    return d["state"].as_str().unwrap_or("").to_string();
                }
            }
        }
    }
    String::new()
}

/// `n` calls (tests/sipp/uac-call.xml) at 100/s, each held `hold_ms` before its BYE.
fn calls(proxy: &Proxy, name: &str, n: u32, hold_ms: u32) -> RunningSipp {
    Sipp::uac(name, "uac-call.xml", proxy, Proto::Udp)
        .calls(n)
        .timeout_s(30)
        .args(&["-r", "100", "-l", &n.to_string(), "-d", &hold_ms.to_string()])
        .spawn(&proxy.dir)
}

/// `n` REGISTERs (each its own Call-ID) of a contact, at 50/s.
fn registers(proxy: &Proxy, name: &str, n: u32) -> RunningSipp {
    Sipp::uac(name, "uac-register-contact.xml", proxy, Proto::Udp)
        .calls(n)
        .timeout_s(20)
        .args(&["-r", "50", "-s", "alice", "-key", "contact", "sip:alice@192.0.2.10:5060"])
        .spawn(&proxy.dir)
}

/// `ul_show_contact location AOR` as JSON text; the error text while the AoR has no binding.
fn ul_show_contact(proxy: &Proxy, aor: &str) -> String {
    let out = Command::new(siprox_bin())
        .args(["ctl", "-c"])
        .arg(proxy.config_path())
        .args(["--json", "ul_show_contact", "location", aor])
        .output()
        .expect("run siprox ctl");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ------------------------------------------------------------------- enterprise-lb

/// Seed 000: a VIP pair (here one node, [ha] removed) in front of fs1–fs4, registrations by
/// dispatcher, calls by load_balancer, dialogs in the shared database.
#[test]
fn enterprise_lb_spreads_registers_balances_calls_keeps_dialogs_and_avoids_a_dead_host() {
    let db = shared_db("examples/enterprise-lb", "ex-enterprise-lb-db", &[Backend::MySql, Backend::Postgres]);
    let node = prepare("enterprise-lb", "siprox.toml", &db.url, "ex-enterprise-lb");
    assert!(node.original.contains_key("ha"), "the example ships its [ha] section");
    assert_eq!(node.original["dialog"]["db_mode"].as_integer(), Some(1));
    node.migrate();
    assert_eq!(load_seed("enterprise-lb", &db.url), 8, "4 dispatcher + 4 load_balancer rows");
    // fs1..fs4 (100.100.100.103-106) become four SIPp stand-ins.
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let old = format!("sip:100.100.100.{}", 103 + i);
        let new = udp_uri(*port);
        remap(&db.url, "dispatcher", "destination", &old, &new);
        remap(&db.url, "load_balancer", "dst_uri", &old, &new);
    }
    let backends_dir = TempDir::new("ex-enterprise-lb-fs");
    let mut fs: Vec<RunningSipp> =
        ports.iter().enumerate().map(|(i, p)| fs_backend(&backends_dir, &format!("fs{}", i + 1), *p)).collect();
    let proxy = node.start();
    wait_until(Duration::from_secs(5), "the load_balancer table loaded", || lb_state(&proxy).len(), |n| *n == 4);

    // REGISTERs: the Call-ID hash spreads 40 of them over the four hosts.
    registers(&proxy, "reg", 40).assert_success();
    let got: Vec<usize> = fs.iter().map(|b| settled(b, "REGISTER")).collect();
    assert_eq!(got.iter().sum::<usize>(), 40, "every REGISTER reached one host: {got:?}");
    assert!(got.iter().all(|n| *n > 0), "the hash uses every host of set 1: {got:?}");

    // Calls: 12 held at once land by relative load, 4/4/2/2 on 60/60/30/30 channels, and
    // each is a dialog row while it lasts (db_mode 1).
    let mut uac = calls(&proxy, "calls", 12, 3000);
    let loads = wait_until(
        Duration::from_secs(5),
        "12 calls counted",
        || lb_state(&proxy).iter().map(|d| d.2).collect::<Vec<_>>(),
        |l| l.iter().sum::<i64>() == 12,
    );
    assert_eq!(loads, [4, 4, 2, 2], "relative load over 60/60/30/30 channels");
    wait_until(
        Duration::from_secs(5),
        "12 dialog rows",
        || count(&db.url, "SELECT COUNT(*) FROM dialog"),
        |n| *n == 12,
    );
    uac.assert_success();
    let invites: Vec<usize> = fs.iter().map(|b| settled(b, "INVITE")).collect();
    assert_eq!(invites, [4, 4, 2, 2], "INVITEs each host answered");
    wait_until(
        Duration::from_secs(5),
        "no load after the BYEs",
        || lb_state(&proxy).iter().map(|d| d.2).collect::<Vec<_>>(),
        |l| l.iter().all(|n| *n == 0),
    );
    wait_until(
        Duration::from_secs(5),
        "the dialog rows gone",
        || count(&db.url, "SELECT COUNT(*) FROM dialog"),
        |n| *n == 0,
    );

    // fs4 stops answering: OPTIONS probing (every 5 s; load_balancer at the first miss,
    // dispatcher after ds_probing_threshold = 2) takes it out of both.
    fs[3].kill();
    let fs4 = udp_uri(ports[3]);
    wait_until(
        Duration::from_secs(16),
        "fs4 out of the load balancer and the dispatcher set",
        || (lb_state(&proxy)[3].1.clone(), ds_state(&proxy, &fs4)),
        |(lb, ds)| lb == "no" && ds != "Active",
    );
    // New calls and REGISTERs all succeed, on the three others (one sent to fs4 would time
    // out: the seed's route has no failover).
    let mut uac = calls(&proxy, "calls-after", 6, 0);
    let mut reg = registers(&proxy, "reg-after", 20);
    uac.assert_success();
    reg.assert_success();
    let invites_after: Vec<usize> = fs[..3].iter().map(|b| settled(b, "INVITE")).collect();
    let regs_after: Vec<usize> = fs[..3].iter().map(|b| settled(b, "REGISTER")).collect();
    let before = |v: &[usize]| v[..3].iter().sum::<usize>();
    assert_eq!(invites_after.iter().sum::<usize>() - before(&invites), 6, "{invites_after:?}");
    assert_eq!(regs_after.iter().sum::<usize>() - before(&got), 20, "{regs_after:?}");
    for b in fs.iter_mut() {
        b.kill();
    }
    proxy.stop();
}

// ------------------------------------------------------------- federated-registrar

/// Seed 001's serialized failover: nodes X and Y, each with its own location table and its
/// own database; the media server tries X, gets 404, and tries Y.
#[test]
fn federated_registrar_the_media_server_gets_404_from_x_then_reaches_the_phone_through_y() {
    let (ms_port, other_ms_port) = (free_port(), free_port());
    let dbs = (TestDb::sqlite("ex-federated-x-db"), TestDb::sqlite("ex-federated-y-db"));
    let x = prepare("federated-registrar", "siprox.toml", &dbs.0.url, "ex-federated-x");
    let y = prepare("federated-registrar", "node-y.toml", &dbs.1.url, "ex-federated-y");
    // The two files differ in the node's address and database only.
    let mut same = (x.original.clone(), y.original.clone());
    for t in [&mut same.0, &mut same.1] {
        for (section, key) in [("core", "listen"), ("db", "url")] {
            if let Some(toml::Value::Table(s)) = t.get_mut(section) {
                s.remove(key);
            }
        }
    }
    assert_eq!(same.0, same.1, "siprox.toml (X) and node-y.toml (Y) differ only in listen and db url");

    for (node, db) in [(&x, &dbs.0), (&y, &dbs.1)] {
        node.migrate();
        assert_eq!(load_seed("federated-registrar", &db.url), 2);
        remap(&db.url, "dispatcher", "destination", "sip:10.0.1.100", &udp_uri(ms_port));
        remap(&db.url, "dispatcher", "destination", "sip:10.0.2.100", &udp_uri(other_ms_port));
    }
    let (x, y) = (x.start(), y.start());

    // The phone registers with Y (a third-party REGISTER of the SIPp UAS that answers).
    let phone_port = free_port();
    Sipp::uac("phone-reg", "uac-register-contact.xml", &y, Proto::Udp)
        .timeout_s(10)
        .args(&["-s", "alice", "-key", "contact", &format!("sip:alice@{LOCALHOST}:{phone_port}")])
        .spawn(&y.dir)
        .assert_success();
    let mut phone =
        Sipp::uas("phone", "uas-call.xml", phone_port, Proto::Udp).calls(1).timeout_s(20).message_log().spawn(&y.dir);

    // The media server's bridge: X first …
    let mut to_x = Sipp::uac("ms-to-x", "uac-reject.xml", &x, Proto::Udp)
        .local_port(ms_port)
        .timeout_s(10)
        .args(&["-s", "alice"])
        .message_log()
        .spawn(&x.dir);
    to_x.assert_success();
    let log = to_x.message_log_text();
    assert!(log.contains("SIP/2.0 404 Not Found"), "X answered 404:\n{log}");
    // … then Y, where the phone is registered: it answers, and the call ends with its BYE.
    let mut to_y = Sipp::uac("ms-to-y", "uac-call.xml", &y, Proto::Udp)
        .local_port(ms_port)
        .timeout_s(10)
        .args(&["-s", "alice"])
        .spawn(&y.dir);
    to_y.assert_success();
    phone.assert_success();
    let invite = phone.received_starting("INVITE ");
    assert_eq!(invite.len(), 1, "{invite:?}");
    assert!(
        header_values(&invite[0], "Record-Route").iter().any(|r| r.contains(&format!("{LOCALHOST}:{}", y.port))),
        "Y record-routes the call: {}",
        invite[0]
    );
    assert!(!x.log_text().contains("LOCAL CONTACT FOUND"), "X never had the phone");
    assert!(y.log_text().contains("RELAY TO CONTACT SUCCESSFUL"), "{}", y.log_text());

    // method-filtering: a phone that allows only calls gets no MESSAGE (405).
    let bob = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let reg = format!(
        "REGISTER sip:{y} SIP/2.0\r\nVia: SIP/2.0/UDP {b};branch=z9hG4bK-bob-1\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@{y}>;tag=b1\r\nTo: <sip:bob@{y}>\r\nCall-ID: bob-1@test\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{b}>\r\nAllow: INVITE, ACK, BYE, CANCEL\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        y = y.addr(),
        b = bob.local_addr().expect("bound"),
    );
    bob.send_to(reg.as_bytes(), y.addr()).expect("send REGISTER");
    bob.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 4096];
    let (n, _) = bob.recv_from(&mut buf).expect("a reply to bob's REGISTER");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"), "bob registered: {}", String::from_utf8_lossy(&buf[..n]));
    let ms = std::net::UdpSocket::bind((LOCALHOST, ms_port)).expect("bind the media server's port");
    let message = format!(
        "MESSAGE sip:bob@{y} SIP/2.0\r\nVia: SIP/2.0/UDP {m};branch=z9hG4bK-msg-1\r\nMax-Forwards: 70\r\n\
         From: <sip:fs@{m}>;tag=m1\r\nTo: <sip:bob@{y}>\r\nCall-ID: msg-1@test\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        y = y.addr(),
        m = ms.local_addr().expect("bound"),
    );
    ms.send_to(message.as_bytes(), y.addr()).expect("send MESSAGE");
    ms.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let (n, _) = ms.recv_from(&mut buf).expect("a reply to the MESSAGE");
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("SIP/2.0 405 Not Allowed"), "{reply}");
    x.stop();
    y.stop();
}

// ----------------------------------------------------------------- nat-partitioned

/// Seed 002: clients behind NAT, a farm partitioned by conference and by tenant domain.
#[test]
fn nat_partitioned_registers_with_path_partitions_calls_fails_over_to_the_spare_and_calls_back_through_the_nat() {
    let db = TestDb::sqlite("ex-nat-db");
    let node = prepare("nat-partitioned", "siprox.toml", &db.url, "ex-nat");
    node.migrate();
    assert_eq!(load_seed("nat-partitioned", &db.url), 8);
    let [fs1, fs2, conf1, tenant_a, tenant_b, spare]: [u16; 6] = std::array::from_fn(|_| free_port());
    for (old, port) in [
        ("sip:10.0.0.11:5060", fs1),
        ("sip:10.0.0.12:5060", fs2),
        ("sip:10.0.0.21:5060", conf1),
        ("sip:10.0.0.31:5060", tenant_a),
        ("sip:10.0.0.32:5060", tenant_b), // nothing listens: tenant-b is not called here
        ("sip:10.0.0.39:5060", spare),
    ] {
        remap(&db.url, "dispatcher", "destination", old, &udp_uri(port));
    }
    let farm = TempDir::new("ex-nat-farm");
    let mut b_fs1 = fs_backend(&farm, "fs1", fs1);
    let b_fs2 = fs_backend(&farm, "fs2", fs2);
    let b_conf1 = fs_backend(&farm, "conf1", conf1);
    let mut b_tenant_a = fs_backend(&farm, "tenant-a", tenant_a);
    let b_spare = fs_backend(&farm, "spare", spare);
    let proxy = node.start();

    // A client behind NAT (its Contact a private address) registers: the REGISTER reaches a
    // set-1 backend, the registrar, with our Path carrying the address it came from.
    let client_port = free_port();
    Sipp::uac("client-reg", "uac-register-contact.xml", &proxy, Proto::Udp)
        .local_port(client_port)
        .timeout_s(10)
        .args(&["-s", "carol", "-key", "contact", "sip:carol@192.168.1.50:5060"])
        .spawn(&proxy.dir)
        .assert_success();
    let regs: Vec<String> = [&b_fs1, &b_fs2].iter().flat_map(|b| b.received_starting("REGISTER ")).collect();
    assert_eq!(regs.len(), 1, "one set-1 backend got the REGISTER: {regs:?}");
    let path = header_values(&regs[0], "Path");
    let want = format!("<sip:{LOCALHOST}:{};lr;received=sip:{LOCALHOST}:{client_port}>", proxy.port);
    assert_eq!(path, [want.clone()], "{}", regs[0]);
    assert_eq!(
        header_values(&regs[0], "Contact"),
        ["<sip:carol@192.168.1.50:5060>"],
        "the registrar gets the Contact as sent"
    );

    // 1000: the shared farm (set 1); 3000: the conference machine (set 2).
    let call = |name: &str, user: &str| {
        Sipp::uac(name, "uac-call.xml", &proxy, Proto::Udp).timeout_s(10).args(&["-s", user]).spawn(&proxy.dir)
    };
    call("call-1000", "1000").assert_success();
    assert_eq!(settled(&b_fs1, "INVITE") + settled(&b_fs2, "INVITE"), 1, "1000 reached the shared farm");
    call("call-3000", "3000").assert_success();
    assert_eq!(settled(&b_conf1, "INVITE"), 1, "3000 reached the conference machine");
    assert_eq!(settled(&b_fs1, "INVITE") + settled(&b_fs2, "INVITE"), 1);

    // A tenant domain goes to its own machine; once that is down, to the spare.
    let tenant_call = |name: &str| {
        Sipp::uac(name, "uac-call-ruri.xml", &proxy, Proto::Udp)
            .timeout_s(15)
            .args(&["-key", "ruri", "sip:2000@tenant-a.example.com"])
            .spawn(&proxy.dir)
    };
    tenant_call("tenant-a-1").assert_success();
    assert_eq!(settled(&b_tenant_a, "INVITE"), 1, "tenant-a.example.com reached its machine");
    b_tenant_a.kill();
    tenant_call("tenant-a-2").assert_success();
    assert_eq!(settled(&b_spare, "INVITE"), 1, "the spare took tenant-a's call");
    assert!(
        proxy.log_text().contains("takes over from a failed backend for tenant-a.example.com"),
        "{}",
        proxy.log_text()
    );

    // The farm calls the client back: from a backend's address, to the Contact it
    // registered (a private address), with the Path as its Route. The proxy sends it to the
    // Path's received address; the client answers with a private Contact, which the proxy
    // fixes, so the backend's ACK and BYE reach it.
    b_fs1.kill();
    let mut client = Sipp::uas("client", "uas-nat-answer.xml", client_port, Proto::Udp)
        .calls(1)
        .timeout_s(20)
        .args(&["-s", "carol"])
        .message_log()
        .spawn(&proxy.dir);
    let mut backend_call = Sipp::uac("fs1-calls-client", "uac-call-route.xml", &proxy, Proto::Udp)
        .local_port(fs1)
        .timeout_s(15)
        .args(&["-key", "ruri", "sip:carol@192.168.1.50:5060", "-key", "route", &want])
        .message_log()
        .spawn(&proxy.dir);
    backend_call.assert_success();
    client.assert_success();
    let invite = client.received_starting("INVITE ");
    assert_eq!(invite.len(), 1);
    assert!(invite[0].starts_with("INVITE sip:carol@192.168.1.50:5060 SIP/2.0"), "{}", invite[0]);
    assert!(header_values(&invite[0], "Route").is_empty(), "our Path entry was consumed: {}", invite[0]);
    let ok =
        backend_call.logged_messages("received").into_iter().find(|m| m.starts_with("SIP/2.0 200")).unwrap_or_default();
    assert_eq!(header_values(&ok, "Contact"), [format!("<sip:carol@{LOCALHOST}:{client_port}>")], "{ok}");
    assert_eq!(client.received_requests("BYE"), 1);
    drop((b_fs2, b_conf1, b_spare));
    proxy.stop();
}

// -------------------------------------------------------- active-standby-registrar

/// Seeds 003/004: both nodes of the pair on one database (in production only the VIP
/// holder gets traffic; here each node has an address of its own). A phone behind NAT logs
/// in and registers through node 1; node 2 finds it in the shared table and carries an
/// authenticated call to it.
#[test]
fn active_standby_registrar_a_phone_registered_through_node_1_is_called_through_node_2() {
    let db = shared_db("examples/active-standby-registrar", "ex-as-db", &[Backend::Postgres, Backend::MySql]);
    let one = prepare("active-standby-registrar", "siprox.toml", &db.url, "ex-as-node1");
    let two = prepare("active-standby-registrar", "node2.toml", &db.url, "ex-as-node2");
    // The two files differ in the node's name only.
    let (mut a, mut b) = (one.original.clone(), two.original.clone());
    for t in [&mut a, &mut b] {
        if let Some(toml::Value::Table(ha)) = t.get_mut("ha") {
            ha.remove("node");
        }
    }
    assert_eq!(a, b, "siprox.toml and node2.toml differ only in [ha] node");
    assert_eq!(one.original["usrloc"]["working_mode_preset"].as_str(), Some("sql-only"));
    one.migrate();
    assert_eq!(load_seed("active-standby-registrar", &db.url), 2, "two subscribers");
    let (one, two) = (one.start(), two.start());

    // bob's phone, behind NAT (127.0.0.2, a private Contact), logs in through node 1.
    let phone_port = free_port();
    Sipp::uac("bob-reg", "uac-register-nat.xml", &one, Proto::Udp)
        .timeout_s(10)
        .args(&["-i", "127.0.0.2", "-p", &phone_port.to_string(), "-s", "bob", "-au", "bob", "-ap", "bob-secret"])
        .spawn(&one.dir)
        .assert_success();
    wait_until(
        Duration::from_secs(3),
        "the binding in the shared table",
        || count(&db.url, "SELECT COUNT(*) FROM location"),
        |n| *n == 1,
    );
    let seen = wait_until(
        Duration::from_secs(3),
        "node 2 has bob's binding",
        || ul_show_contact(&two, "bob"),
        |out| out.contains("192.168.1.20"),
    );
    assert!(seen.contains("127.0.0.2"), "with its NAT address: {seen}");

    // alice calls bob through node 2: challenged, authenticated, bob's phone rings at its
    // NAT address, and the call is record-routed through node 2.
    let mut phone = Sipp::uas("bob", "uas-nat-answer.xml", phone_port, Proto::Udp)
        .calls(1)
        .timeout_s(20)
        .args(&["-i", "127.0.0.2"])
        .message_log()
        .spawn(&two.dir);
    Sipp::uac("alice", "uac-call-auth.xml", &two, Proto::Udp)
        .timeout_s(15)
        .args(&["-s", "bob", "-au", "alice", "-ap", "alice-secret"])
        .spawn(&two.dir)
        .assert_success();
    phone.assert_success();
    let invite = phone.received_starting("INVITE ");
    assert_eq!(invite.len(), 1);
    assert!(invite[0].starts_with("INVITE sip:bob@192.168.1.20:5060 SIP/2.0"), "{}", invite[0]);
    assert!(
        header_values(&invite[0], "Record-Route").iter().any(|r| r.contains(&format!("{LOCALHOST}:{}", two.port))),
        "{}",
        invite[0]
    );
    one.stop();
    two.stop();
}
