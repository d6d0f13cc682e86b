//! usrloc persistence (`[usrloc] working_mode_preset`) against real databases: the
//! `location` table's store, the writer in write-through and write-back, the load at start,
//! a proxy whose write-back registrations survive a crash once flushed, and two proxies
//! sharing one PostgreSQL in `sql-only`. SQLite always (a temp file); PostgreSQL
//! (`SIPROX_TEST_PG`) and MySQL/MariaDB (`SIPROX_TEST_MYSQL`) when set, else a loud SKIPPED
//! banner.

mod support;

use serde_json::{json, Value};
use siprox::config::UsrlocConfig;
use siprox::db::{Backend, Db};
use siprox::modules::usrloc::persist::start_writer;
use siprox::modules::usrloc::store::{self, DEFAULT_TABLE};
use siprox::modules::usrloc::{self, Contact, Usrloc, FL_MEM};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::testdb::{rt, TestDb};
use support::Proxy;

const SCRIPT: &str = r#"
fn route() {
    if is_method("REGISTER") {
        save("location");
        exit();
    }
    if lookup("location") == 1 {
        t_relay();
    } else {
        sl_send_reply(404, "Not Found");
    }
}
"#;

// ------------------------------------------------------------------ helpers

fn contact(id: i64, aor: &str, flags: u32) -> Contact {
    let now = usrloc::now();
    Contact {
        id,
        aor: aor.into(),
        uri: format!("sip:{}@10.0.0.1:5062", aor.split('@').next().unwrap_or(aor)),
        received: Some("sip:192.0.2.1:4000".into()),
        path: Some("<sip:edge.example;lr>".into()),
        expires: now + 3600,
        q: 500,
        callid: format!("cid-{id}"),
        cseq: 7,
        last_modified: now,
        flags,
        cflags: 0,
        user_agent: "test UA".into(),
        socket: Some("udp:127.0.0.1:5060".into()),
        methods: Some(0x1f),
        instance: Some("urn:uuid:00000000-0000-0000-0000-000000000001".into()),
        reg_id: 1,
        attr: None,
        pings_lost: 0,
    }
}

fn ul(preset: &str, use_domain: bool) -> Arc<Usrloc> {
    Arc::new(Usrloc::new(&cfg(preset, use_domain)))
}

fn cfg(preset: &str, use_domain: bool) -> UsrlocConfig {
    UsrlocConfig { working_mode_preset: preset.into(), use_domain, timer_interval: 3600, ..Default::default() }
}

async fn ids(db: &Db) -> Vec<i64> {
    store::ids(db, DEFAULT_TABLE, None).await.expect("ids")
}

/// Waits up to 5 s for the table's ids to be `want`.
async fn wait_ids(db: &Db, what: &str, want: &[i64]) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let got = ids(db).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < until, "{what}: table has {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ the cases

/// Every field round-trips on this backend; an upsert replaces; the stamp moves on;
/// expired rows go; one transaction of saves and removes; replace_all.
async fn store_case(db: &Db) {
    let mut c = contact(1_234_567_890_123, "alice@example.com", 0);
    store::upsert(db, DEFAULT_TABLE, &c).await.expect("upsert");
    let first = store::load(db, DEFAULT_TABLE, true).await.expect("load");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].contact, c);
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.cseq = 8;
    c.q = usrloc::Q_UNSPECIFIED;
    c.methods = None;
    store::upsert(db, DEFAULT_TABLE, &c).await.expect("upsert again");
    let second = store::load(db, DEFAULT_TABLE, true).await.expect("load");
    assert_eq!(second[0].contact, c);
    assert!(second[0].stamp > first[0].stamp, "{} then {}", first[0].stamp, second[0].stamp);
    assert_eq!(store::load(db, DEFAULT_TABLE, false).await.expect("load")[0].contact.aor, "alice");
    let since = store::changed_since(db, DEFAULT_TABLE, second[0].stamp + 1, true).await.expect("since");
    assert!(since.is_empty());
    assert_eq!(store::changed_since(db, DEFAULT_TABLE, second[0].stamp, true).await.expect("since").len(), 1);

    let mut old = contact(5, "bob", 0);
    old.expires = usrloc::now() - 10;
    store::apply(db, DEFAULT_TABLE, &[old, contact(6, "carol", 0)], &[c.id]).await.expect("apply");
    assert_eq!(ids(db).await, vec![5, 6]);
    assert_eq!(store::ids(db, DEFAULT_TABLE, Some(usrloc::now())).await.expect("live"), vec![6]);
    assert_eq!(store::delete_expired(db, DEFAULT_TABLE, usrloc::now()).await.expect("expired"), 1);
    store::replace_all(db, DEFAULT_TABLE, &[contact(7, "dave", 0)]).await.expect("replace");
    assert_eq!(ids(db).await, vec![7]);
    assert_eq!(store::delete(db, DEFAULT_TABLE, 7).await.expect("delete"), 1);
    assert!(ids(db).await.is_empty());
}

/// write-through: rows follow memory promptly; memory-only bindings never get one.
async fn write_through_case(db: &Arc<Db>) {
    let u = ul("single-instance-sql-write-through", true);
    let w = start_writer(db.clone(), u.clone(), &cfg("single-instance-sql-write-through", true)).expect("a writer");
    u.update(DEFAULT_TABLE, "alice@a.example", |r| r.put(contact(11, "alice@a.example", 0)));
    u.update(DEFAULT_TABLE, "mem@a.example", |r| r.put(contact(12, "mem@a.example", FL_MEM)));
    wait_ids(db, "written through", &[11]).await;
    u.update(DEFAULT_TABLE, "alice@a.example", |r| {
        let mut c = r.contacts()[0].clone();
        c.cseq = 99;
        r.put(c);
    });
    let until = Instant::now() + Duration::from_secs(5);
    while store::load(db, DEFAULT_TABLE, true).await.expect("load")[0].contact.cseq != 99 {
        assert!(Instant::now() < until, "refresh not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    u.remove_aor(DEFAULT_TABLE, "alice@a.example");
    wait_ids(db, "removal written", &[]).await;
    w.flush().await.expect("flush");
    assert!(ids(db).await.is_empty(), "the memory-only binding never reaches the table");
}

/// write-back: nothing before the flush; then the latest state. A fresh node loads it
/// (expired rows left out).
async fn write_back_case(db: &Arc<Db>) {
    let u = ul("single-instance-sql-write-back", false);
    let w = start_writer(db.clone(), u.clone(), &cfg("single-instance-sql-write-back", false)).expect("a writer");
    w.flush().await.expect("ready");
    u.update(DEFAULT_TABLE, "bob", |r| r.put(contact(21, "bob", 0)));
    u.update(DEFAULT_TABLE, "carl", |r| r.put(contact(22, "carl", 0)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ids(db).await.is_empty(), "written before the flush");
    assert_eq!(w.flush().await.expect("flush"), 2);
    assert_eq!(ids(db).await, vec![21, 22]);
    drop(w);

    let mut gone = contact(23, "dora", 0);
    gone.expires = usrloc::now() - 1;
    store::upsert(db, DEFAULT_TABLE, &gone).await.expect("upsert");
    let fresh = ul("single-instance-sql-write-back", false);
    let w = start_writer(db.clone(), fresh.clone(), &cfg("single-instance-sql-write-back", false)).expect("a writer");
    w.flush().await.expect("loaded");
    let now = usrloc::now();
    assert_eq!(fresh.lookup(DEFAULT_TABLE, "bob", now), vec![contact_like(&u, "bob")]);
    assert_eq!(fresh.lookup(DEFAULT_TABLE, "carl", now).len(), 1);
    assert!(fresh.lookup(DEFAULT_TABLE, "dora", now).is_empty(), "expired rows are not loaded");
    store::replace_all(db, DEFAULT_TABLE, &[]).await.expect("clean");
}

fn contact_like(u: &Usrloc, aor: &str) -> Contact {
    u.lookup(DEFAULT_TABLE, aor, usrloc::now()).remove(0)
}

fn run_all(t: &TestDb) {
    rt().block_on(async {
        let db = t.open().await;
        store_case(&db).await;
        write_through_case(&db).await;
        write_back_case(&db).await;
        db.close().await;
    });
}

#[test]
fn sqlite_usrloc_store() {
    run_all(&TestDb::sqlite("sqlite_usrloc_store"));
}

#[test]
fn postgres_usrloc_store() {
    if let Some(t) = TestDb::server(Backend::Postgres, "postgres_usrloc_store") {
        run_all(&t);
    }
}

#[test]
fn mysql_usrloc_store() {
    if let Some(t) = TestDb::server(Backend::MySql, "mysql_usrloc_store") {
        run_all(&t);
    }
}

// ------------------------------------------------------------------ proxies

/// One JSON-RPC call to the proxy's management interface: the result, or the error object.
fn mi(proxy: &Proxy, method: &str, params: Value) -> Result<Value, Value> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", proxy.mi_port)).expect("MI connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        s,
        "POST /mi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("MI send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("MI read");
    let json_start = out.find("\r\n\r\n").map_or(0, |i| i + 4);
    let v: Value =
        serde_json::from_str(&out[json_start..]).unwrap_or_else(|e| panic!("MI answer not JSON ({e}): {out}"));
    match v.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(v["result"].clone()),
    }
}

/// Sends a REGISTER of `user` (Contact `sip:USER@127.0.0.1:40000`, so a later one with
/// Expires: 0 removes it) with `expires` through `proxy` and waits for its final answer.
fn register(proxy: &Proxy, user: &str, expires: u32, cseq: u32) -> String {
    register_at(proxy, user, expires, cseq, 40000)
}

/// Like [`register`], with the Contact on `contact_port`.
fn register_at(proxy: &Proxy, user: &str, expires: u32, cseq: u32, contact_port: u16) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let msg = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-ul-{user}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=t{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: ul-{user}@test\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{contact_port}>\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), proxy.addr()).expect("send");
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer to the REGISTER");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            assert!(text.starts_with("SIP/2.0 200"), "REGISTER answered {text}");
            return text;
        }
    }
}

fn contacts_of(proxy: &Proxy, aor: &str) -> Option<Vec<Value>> {
    match mi(proxy, "ul_show_contact", json!(["location", aor])) {
        Ok(v) => Some(v["Contacts"].as_array().cloned().unwrap_or_default()),
        Err(e) if e["code"] == 404 => None,
        Err(e) => panic!("ul_show_contact {aor}: {e}"),
    }
}

fn dumped_aors(proxy: &Proxy) -> Vec<String> {
    let dump = mi(proxy, "ul_dump", json!([])).expect("ul_dump");
    let mut out = Vec::new();
    for d in dump["Domains"].as_array().cloned().unwrap_or_default() {
        for a in d["AORs"].as_array().cloned().unwrap_or_default() {
            out.push(a["AOR"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

fn db_ids(url: &str) -> Vec<i64> {
    rt().block_on(async {
        let db = Db::open(url).await.expect("open");
        let v = store::ids(&db, DEFAULT_TABLE, None).await.expect("ids");
        db.close().await;
        v
    })
}

/// write-back through a real proxy: the REGISTER's binding reaches the table only at
/// `ul_flush`, and after a crash the restarted proxy loads it (`ul_dump` shows it).
#[test]
fn write_back_survives_a_restart() {
    let t = TestDb::sqlite("ul_write_back_restart");
    let toml = format!(
        "\n[db]\nurl = \"{}\"\n\n[usrloc]\nworking_mode_preset = \"single-instance-sql-write-back\"\ntimer_interval = 3600\n",
        t.url
    );
    let mut proxy = Proxy::start_with("ul_wb", SCRIPT, &toml);
    register(&proxy, "alice", 3600, 1);
    assert_eq!(contacts_of(&proxy, "alice").map(|c| c.len()), Some(1));
    assert!(db_ids(&t.url).is_empty(), "written before the flush");
    assert_eq!(mi(&proxy, "ul_flush", json!([])), Ok(json!("OK")));
    assert_eq!(db_ids(&t.url).len(), 1);

    proxy.crash_and_restart();
    // The table is read beside the traffic, just after start.
    let until = Instant::now() + Duration::from_secs(5);
    while dumped_aors(&proxy).is_empty() {
        assert!(Instant::now() < until, "not loaded after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dumped_aors(&proxy), vec!["alice".to_string()]);
    let c = contacts_of(&proxy, "alice").expect("loaded at start");
    assert_eq!(c[0]["Callid"], "ul-alice@test");
    assert_eq!(c[0]["State"], "CS_SYNC");

    // A binding not yet flushed is written at a clean stop, and the next run has it.
    register(&proxy, "bob", 3600, 1);
    assert_eq!(db_ids(&t.url).len(), 1, "bob is not written before the stop");
    proxy.stop();
    assert_eq!(db_ids(&t.url).len(), 2, "written at shutdown");
    let again = Proxy::start_with("ul_wb_again", SCRIPT, &toml);
    let until = Instant::now() + Duration::from_secs(5);
    while dumped_aors(&again).len() < 2 {
        assert!(Instant::now() < until, "not loaded: {:?}", dumped_aors(&again));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dumped_aors(&again), vec!["alice".to_string(), "bob".to_string()]);
    again.stop();
}

/// write-through through a real proxy: the row is there without a flush; Expires: 0
/// removes it.
#[test]
fn write_through_proxy() {
    let t = TestDb::sqlite("ul_write_through_proxy");
    let toml = format!(
        "\n[db]\nurl = \"{}\"\n\n[usrloc]\nworking_mode_preset = \"single-instance-sql-write-through\"\n",
        t.url
    );
    let proxy = Proxy::start_with("ul_wt", SCRIPT, &toml);
    register(&proxy, "bob", 3600, 1);
    let until = Instant::now() + Duration::from_secs(5);
    while db_ids(&t.url).len() != 1 {
        assert!(Instant::now() < until, "not written through");
        std::thread::sleep(Duration::from_millis(50));
    }
    register(&proxy, "bob", 0, 2);
    while !db_ids(&t.url).is_empty() {
        assert!(Instant::now() < until, "removal not written through");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = mi(&proxy, "get_statistics", json!([["usrloc:"]])).expect("stats");
    assert_eq!(stats["usrloc:registered_contacts"], 0, "{stats}");
    proxy.stop();
}

/// Two proxies on one PostgreSQL in sql-only: a REGISTER through A is found through B
/// within about a second; its removal through A disappears on B too.
#[test]
fn two_proxies_share_postgres_in_sql_only() {
    if let Some(t) = TestDb::server(Backend::Postgres, "ul_sql_only_pair_pg") {
        pair_case(&t);
    }
}

/// The same on MySQL/MariaDB.
#[test]
fn two_proxies_share_mysql_in_sql_only() {
    if let Some(t) = TestDb::server(Backend::MySql, "ul_sql_only_pair_my") {
        pair_case(&t);
    }
}

fn pair_case(t: &TestDb) {
    let toml = format!(
        "\n[db]\nurl = \"{}\"\n\n[usrloc]\nworking_mode_preset = \"sql-only\"\nsync_interval_ms = 200\n",
        t.url
    );
    let a = Proxy::start_with("ul_pair_a", SCRIPT, &toml);
    let b = Proxy::start_with("ul_pair_b", SCRIPT, &toml);
    register(&a, "carol", 3600, 1);
    let registered = Instant::now();
    let seen = loop {
        if let Some(c) = contacts_of(&b, "carol") {
            break c;
        }
        assert!(registered.elapsed() < Duration::from_secs(5), "B never saw carol's binding");
        std::thread::sleep(Duration::from_millis(25));
    };
    let took = registered.elapsed();
    assert!(took <= Duration::from_millis(1500), "B saw it after {took:?}");
    assert_eq!(seen.len(), 1);
    assert!(seen[0]["Contact"].as_str().unwrap_or_default().starts_with("sip:carol@127.0.0.1:"), "{seen:?}");

    // Expires: 0 through A: the row goes, and B drops the binding when its ids compare.
    register(&a, "carol", 0, 2);
    let removed = Instant::now();
    while contacts_of(&b, "carol").is_some() {
        assert!(removed.elapsed() < Duration::from_secs(6), "B still has carol's binding");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(contacts_of(&a, "carol").is_none());

    // A phone registered through A is called through B.
    let phone = UdpSocket::bind("127.0.0.1:0").expect("bind the phone");
    let phone_port = phone.local_addr().expect("addr").port();
    register_at(&a, "dave", 3600, 1, phone_port);
    let start = Instant::now();
    while contacts_of(&b, "dave").is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "B never saw dave's binding");
        std::thread::sleep(Duration::from_millis(25));
    }
    let caller = UdpSocket::bind("127.0.0.1:0").expect("bind the caller");
    let c = caller.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:dave@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-pair-1\r\nMax-Forwards: 70\r\n\
         From: <sip:x@example.com>;tag=p1\r\nTo: <sip:dave@example.com>\r\nCall-ID: pair-1@test\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:x@{c}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), b.addr()).expect("send the INVITE to B");
    phone.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let mut buf = [0u8; 4096];
    let (n, _) = phone.recv_from(&mut buf).expect("the INVITE reaches the phone through B");
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with(&format!("INVITE sip:dave@127.0.0.1:{phone_port} ")), "{got}");
    a.stop();
    b.stop();
}

/// Waits up to 5 s for the table at `url` to hold `n` rows.
fn wait_db_rows(url: &str, what: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while db_ids(url).len() != n {
        assert!(Instant::now() < until, "{what}: the table has {:?}", db_ids(url));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A standby taking over, in write-through on a shared table: B loaded the (empty) table at
/// start and reads nothing after, so A's registration is unknown to it until `ul_refresh`;
/// a removal through A is dropped from B by the next `ul_refresh`.
fn standby_refresh_case(t: &TestDb) {
    let toml = format!(
        "\n[db]\nurl = \"{}\"\n\n[usrloc]\nworking_mode_preset = \"single-instance-sql-write-through\"\n",
        t.url
    );
    let b = Proxy::start_with("ul_refresh_b", SCRIPT, &toml);
    let until = Instant::now() + Duration::from_secs(10);
    while !b.log_text().contains("usrloc contacts loaded from the database") {
        assert!(Instant::now() < until, "B never loaded the table:\n{}", b.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = Proxy::start_with("ul_refresh_a", SCRIPT, &toml);
    register(&a, "erin", 3600, 1);
    wait_db_rows(&t.url, "written through A", 1);
    assert!(contacts_of(&b, "erin").is_none(), "B reads the table only at start and on ul_refresh");
    assert_eq!(mi(&b, "ul_refresh", json!([])), Ok(json!({"Applied": 1})));
    let seen = contacts_of(&b, "erin").expect("B holds erin's binding after ul_refresh");
    assert_eq!(seen[0]["Callid"], "ul-erin@test");

    register(&a, "erin", 0, 2);
    wait_db_rows(&t.url, "removal written through A", 0);
    assert!(contacts_of(&b, "erin").is_some(), "B has not looked yet");
    assert_eq!(mi(&b, "ul_refresh", json!([])), Ok(json!({"Applied": 1})));
    assert!(contacts_of(&b, "erin").is_none(), "the removal through A reached B");
    assert!(dumped_aors(&b).is_empty(), "B holds exactly the table: {:?}", dumped_aors(&b));
    a.stop();
    b.stop();
}

#[test]
fn sqlite_standby_refreshes_from_the_shared_table() {
    standby_refresh_case(&TestDb::sqlite("ul_refresh_sqlite"));
}

#[test]
fn postgres_standby_refreshes_from_the_shared_table() {
    if let Some(t) = TestDb::server(Backend::Postgres, "ul_refresh_pg") {
        standby_refresh_case(&t);
    }
}

#[test]
fn mysql_standby_refreshes_from_the_shared_table() {
    if let Some(t) = TestDb::server(Backend::MySql, "ul_refresh_my") {
        standby_refresh_case(&t);
    }
}
