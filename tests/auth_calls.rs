//! auth / auth_db end to end: a proxy whose script challenges REGISTERs
//! (`www_authorize` / `www_challenge`), subscribers in its database (SQLite always;
//! PostgreSQL and MySQL when `SIPROX_TEST_PG` / `SIPROX_TEST_MYSQL` are set).
//!
//! - SIPp registers with the right password (401, then 200) and with a wrong one (401,
//!   then 401 again: the script re-challenges on -2).
//! - A raw UDP client registers, then sends the very same authorized bytes again: the
//!   replay is refused (401 with `stale=true`, the nonce count did not grow).
//! - With `nonce_expire = 1`, credentials answering a nonce two seconds old get
//!   `stale=true`, and the fresh nonce works.
//! - `siprox ctl subscriber add` provisions a user the proxy then authorizes; `rm` takes it
//!   away; a row written by another node shows up after `reload_interval`.

mod support;

use siprox::db::Db;
use siprox::modules::auth::digest::{self, Algorithm, Challenge, Qop};
use siprox::modules::auth::{store, Subscriber};
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// REGISTERs are authorized against `subscriber`, realm "" (the To domain); the 200 says
/// who was authorized (`$au`, `$ar`) and the AVP `load_credentials` filled.
const SCRIPT: &str = r#"// tests/auth_calls.rs
fn route() {
    if is_method("REGISTER") {
        if www_authorize("", "subscriber") < 0 {
            xlog("L_INFO", "www_authorize: $retcode\n");
            www_challenge("", "auth");
            exit();
        }
        consume_credentials();
        append_to_reply("X-Auth: $au@$ar rpid=$avp(rpid)\r\n");
        sl_send_reply(200, "OK");
        exit();
    }
    sl_send_reply(404, "Not Here");
}
"#;

fn start(label: &str, db_url: &str, auth_toml: &str) -> Proxy {
    let toml = format!("\n[db]\nurl = \"{db_url}\"\n\n[auth]\n{auth_toml}\n");
    Proxy::start_with(label, SCRIPT, &toml)
}

/// Adds `subs` to the database at `url` (the proxy migrated it) and reloads them.
fn provision(proxy: &Proxy, url: &str, subs: &[Subscriber]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db = Db::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        for s in subs {
            store::insert(&db, store::DEFAULT_TABLE, s).await.expect("insert a subscriber");
        }
        db.close().await;
    });
    assert_eq!(ctl_json(proxy, &["auth_reload"]), "OK");
}

fn sipp_register(proxy: &Proxy, name: &str, scenario: &str, user: &str, password: &str) -> RunningSipp {
    Sipp::uac(name, scenario, proxy, Proto::Udp)
        .arg("-s")
        .arg(user)
        .arg("-au")
        .arg(user)
        .arg("-ap")
        .arg(password)
        .timeout_s(15)
        .message_log()
        .spawn(&proxy.dir)
}

// ------------------------------------------------------------ a raw UDP UAC

/// A UA on its own UDP socket: builds REGISTERs, answers challenges, and can send any
/// bytes again.
struct Uac {
    sock: UdpSocket,
    proxy: SocketAddr,
    user: String,
    call_id: String,
    cseq: u32,
}

/// The parameters of a `WWW-Authenticate` line that the tests read.
#[derive(Debug)]
struct Offered {
    nonce: String,
    realm: String,
    stale: bool,
}

impl Uac {
    fn new(proxy: &Proxy, user: &str) -> Uac {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let call_id = format!("auth-{}-{}@test", std::process::id(), sock.local_addr().unwrap().port());
        Uac { sock, proxy: proxy.addr(), user: user.to_string(), call_id, cseq: 0 }
    }

    /// A REGISTER with the next CSeq (and `auth`, a whole header line, when given).
    fn register(&mut self, auth: &str) -> Vec<u8> {
        self.cseq += 1;
        let local = self.sock.local_addr().unwrap();
        let (user, cseq, call_id) = (&self.user, self.cseq, &self.call_id);
        format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-auth-{cseq}-{}\r\n\
             From: <sip:{user}@example.com>;tag=t{cseq}\r\n\
             To: <sip:{user}@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             Max-Forwards: 70\r\n\
             Expires: 60\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            local.port()
        )
        .into_bytes()
    }

    /// Sends `bytes` and returns the first final reply (within 3 s).
    fn exchange(&self, bytes: &[u8]) -> String {
        self.sock.send_to(bytes, self.proxy).expect("send");
        let end = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 65536];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else { break };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status_codes(text.as_bytes()).first().is_some_and(|c| *c >= 200) {
                return text;
            }
        }
        panic!("no final reply to:\n{}", String::from_utf8_lossy(bytes));
    }

    /// The Authorization line answering `offered` with `password` (qop auth, nc as given).
    fn credentials(&self, offered: &Offered, password: &str, nc: u32) -> String {
        let ha1 = digest::ha1(Algorithm::Md5, &self.user, &offered.realm, password);
        let nc = format!("{nc:08x}");
        let c = Challenge {
            method: "REGISTER",
            uri: "sip:example.com",
            nonce: &offered.nonce,
            cnonce: "0a4f113b",
            nc: &nc,
            qop: Qop::Auth,
            body: b"",
        };
        let response = digest::response(Algorithm::Md5, &ha1, &c);
        format!(
            "Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"sip:example.com\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\"\r\n",
            self.user, offered.realm, offered.nonce
        )
    }
}

fn code(reply: &str) -> u16 {
    status_codes(reply.as_bytes()).first().copied().unwrap_or(0)
}

/// The challenge of a 401 (panics without one).
fn offered(reply: &str) -> Offered {
    let line = header_values(reply, "WWW-Authenticate")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no WWW-Authenticate in:\n{reply}"));
    let param = |name: &str| {
        let at = line.find(&format!("{name}=")).map(|i| i + name.len() + 1)?;
        let rest = line[at..].trim_start_matches('"');
        Some(rest[..rest.find(['"', ',']).unwrap_or(rest.len())].to_string())
    };
    Offered {
        nonce: param("nonce").expect("a nonce"),
        realm: param("realm").expect("a realm"),
        stale: param("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    }
}

/// REGISTER, 401, REGISTER with credentials: the last reply and the bytes that drew it.
fn register_with(uac: &mut Uac, password: &str) -> (String, Vec<u8>) {
    let first = uac.register("");
    let challenge = uac.exchange(&first);
    assert_eq!(code(&challenge), 401, "{challenge}");
    let o = offered(&challenge);
    assert_eq!((o.realm.as_str(), o.stale), ("example.com", false), "{challenge}");
    assert!(challenge.contains("qop=\"auth\"") && challenge.contains("algorithm=MD5"), "{challenge}");
    let creds = uac.credentials(&o, password, 1);
    let second = uac.register(&creds);
    (uac.exchange(&second), second)
}

// ---------------------------------------------------------------- the cases

fn register_case(db: &testdb::TestDb, label: &str) {
    let mut proxy = start(label, &db.url, "reload_interval = 0");
    let mut alice = Subscriber::with_password("alice", "example.com", "secret");
    alice.rpid = Some("<sip:+15550001@example.com>".into());
    provision(&proxy, &db.url, &[alice]);

    sipp_register(&proxy, "sipp-ok", "uac-register-auth.xml", "alice", "secret").assert_success();
    let mut refused = sipp_register(&proxy, "sipp-wrong", "uac-register-auth-refused.xml", "alice", "nope");
    refused.assert_success();
    let again = refused.received_starting("SIP/2.0 401");
    assert_eq!(again.len(), 2, "challenged, then challenged again: {again:?}");
    assert!(!again[1].contains("stale=true"), "a wrong password is not stale: {}", again[1]);

    // The right password from a raw socket, then the same bytes once more.
    let mut uac = Uac::new(&proxy, "alice");
    let (ok, bytes) = register_with(&mut uac, "secret");
    assert_eq!(code(&ok), 200, "{ok}");
    assert_eq!(
        header_values(&ok, "X-Auth"),
        ["alice@example.com rpid=<sip:+15550001@example.com>"],
        "$au, $ar and load_credentials: {ok}"
    );
    let replayed = uac.exchange(&bytes);
    assert_eq!(code(&replayed), 401, "a replay is refused: {replayed}");
    assert!(offered(&replayed).stale, "and told stale (the UA retries with a fresh nonce): {replayed}");

    // An unknown user is challenged, not told anything else.
    let mut bob = Uac::new(&proxy, "bob");
    let (no, _) = register_with(&mut bob, "secret");
    assert_eq!(code(&no), 401, "{no}");
    // The log line is written by the proxy's logger thread: give it a moment.
    let seen = (0..40).any(|_| {
        if proxy.log_text().contains("www_authorize: -1") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(seen, "the script saw -1 for an unknown user\n{}", proxy.log_text());
    proxy.assert_alive();
    proxy.stop();
}

#[test]
fn register_sqlite() {
    register_case(&testdb::TestDb::sqlite("auth-sqlite"), "auth-sqlite");
}

#[test]
fn register_postgres() {
    if let Some(db) = testdb::TestDb::server(siprox::db::Backend::Postgres, "auth REGISTER") {
        register_case(&db, "auth-pg");
    }
}

#[test]
fn register_mysql() {
    if let Some(db) = testdb::TestDb::server(siprox::db::Backend::MySql, "auth REGISTER") {
        register_case(&db, "auth-mysql");
    }
}

#[test]
fn stale_nonce() {
    let db = testdb::TestDb::sqlite("auth-stale");
    let mut proxy = start("auth-stale", &db.url, "nonce_expire = 1\nreload_interval = 0");
    provision(&proxy, &db.url, &[Subscriber::with_password("alice", "example.com", "secret")]);
    let mut uac = Uac::new(&proxy, "alice");
    let first = uac.register("");
    let challenge = uac.exchange(&first);
    let old = offered(&challenge);
    thread::sleep(Duration::from_millis(2100));
    let creds = uac.credentials(&old, "secret", 1);
    let second = uac.register(&creds);
    let late = uac.exchange(&second);
    assert_eq!(code(&late), 401, "{late}");
    let fresh = offered(&late);
    assert!(fresh.stale, "an expired nonce with the right password is stale: {late}");
    assert_ne!(fresh.nonce, old.nonce);
    let creds = uac.credentials(&fresh, "secret", 1);
    let third = uac.register(&creds);
    let ok = uac.exchange(&third);
    assert_eq!(code(&ok), 200, "the fresh nonce works: {ok}");
    assert!(proxy.log_text().contains("www_authorize: -3"), "the script saw -3");
    proxy.assert_alive();
    proxy.stop();
}

#[test]
fn ctl_subscriber_and_periodic_reload() {
    let db = testdb::TestDb::sqlite("auth-ctl");
    let mut proxy = start("auth-ctl", &db.url, "reload_interval = 1");
    let out = ctl(&proxy, &["subscriber", "add", "carol@example.com", "pw0rd", "--email", "carol@example.com"]);
    assert!(out.contains("added id") && out.contains("auth_reload: OK"), "{out}");
    let list = ctl_json(&proxy, &["subscriber", "list"]);
    assert_eq!(list[0]["username"], "carol");
    assert_eq!(list[0]["email_address"], "carol@example.com");
    assert!(list[0].get("ha1").is_none(), "list shows no hashes: {list}");

    let mut carol = Uac::new(&proxy, "carol");
    let (ok, _) = register_with(&mut carol, "pw0rd");
    assert_eq!(code(&ok), 200, "{ok}");

    let out = ctl(&proxy, &["subscriber", "rm", "carol@example.com"]);
    assert!(out.contains("removed 1"), "{out}");
    let (gone, _) = register_with(&mut carol, "pw0rd");
    assert_eq!(code(&gone), 401, "removed: {gone}");

    // Another node writes the table (no auth_reload here): the periodic reload finds it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db = Db::open(&db.url).await.expect("open");
        store::insert(&db, store::DEFAULT_TABLE, &Subscriber::with_password("dave", "example.com", "x"))
            .await
            .expect("insert");
        db.close().await;
    });
    let mut dave = Uac::new(&proxy, "dave");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (r, _) = register_with(&mut dave, "x");
        if code(&r) == 200 {
            break;
        }
        assert!(Instant::now() < end, "dave never authorized: {r}");
        thread::sleep(Duration::from_millis(300));
    }
    proxy.assert_alive();
    proxy.stop();
}
