//! The authorization check on whole messages: codes, stale, replay, load_credentials.

use super::digest::{self, Algorithm, Challenge, Qop};
use super::*;
use crate::config::AuthConfig;
use bytes::Bytes;

const REALM: &str = "example.com";

fn auth_with(cfg: AuthConfig) -> Auth {
    let auth = Auth::new(&cfg);
    let mut alice = Subscriber::with_password("alice", REALM, "secret");
    alice.rpid = Some("<sip:+15550001@example.com>".into());
    auth.replace(vec![("subscriber".into(), vec![alice])]);
    auth
}

fn auth() -> Auth {
    auth_with(AuthConfig::default())
}

/// The nonce of the first challenge line.
fn nonce_of(lines: &str) -> String {
    let start = lines.find("nonce=\"").unwrap() + 7;
    lines[start..start + 48].to_string()
}

/// A REGISTER with credentials computed from `password` (qop auth when `nc` is given).
fn register(user: &str, password: &str, nonce: &str, nc: Option<u32>, alg: Algorithm) -> SipMsg {
    let uri = "sip:example.com";
    let (qop, nc_text) = match nc {
        Some(n) => (Qop::Auth, format!("{n:08x}")),
        None => (Qop::None, String::new()),
    };
    let ha1 = digest::ha1(alg, user, REALM, password);
    let c = Challenge { method: "REGISTER", uri, nonce, cnonce: "c0ffee", nc: &nc_text, qop, body: b"" };
    let resp = digest::response(alg, &ha1, &c);
    let qop_part = if nc.is_some() { format!(", qop=auth, nc={nc_text}, cnonce=\"c0ffee\"") } else { String::new() };
    let text = format!(
        "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
         From: <sip:{user}@example.com>;tag=1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: a@b\r\n\
         CSeq: 2 REGISTER\r\nAuthorization: Digest username=\"{user}\", realm=\"{REALM}\", \
         nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}{qop_part}\r\n\
         Content-Length: 0\r\n\r\n",
        alg.as_str()
    );
    SipMsg::parse(Bytes::from(text)).unwrap()
}

fn check(a: &Auth, msg: &SipMsg, now: u64) -> Result<Authorized, AuthError> {
    a.authorize(&Request { msg, realm: REALM, table: "subscriber", proxy: false }, now)
}

#[test]
fn codes() {
    let a = auth();
    let nonce = nonce_of(&a.challenge(false, REALM, &[Qop::Auth], &[Algorithm::Md5], false, 100));
    let ok = check(&a, &register("alice", "secret", &nonce, Some(1), Algorithm::Md5), 100).unwrap();
    assert_eq!((ok.creds.username.as_str(), ok.creds.realm.as_str()), ("alice", REALM));
    assert_eq!(ok.avps, [("rpid".to_string(), "<sip:+15550001@example.com>".to_string())]);
    let replay = check(&a, &register("alice", "secret", &nonce, Some(1), Algorithm::Md5), 100);
    assert_eq!(replay.unwrap_err().code(), -3, "same nc again");
    assert!(check(&a, &register("alice", "secret", &nonce, Some(2), Algorithm::Md5), 100).is_ok());
    assert_eq!(check(&a, &register("alice", "wrong", &nonce, Some(3), Algorithm::Md5), 100).unwrap_err().code(), -2);
    assert_eq!(check(&a, &register("bob", "secret", &nonce, Some(3), Algorithm::Md5), 100).unwrap_err().code(), -1);
    let expired = check(&a, &register("alice", "secret", &nonce, Some(3), Algorithm::Md5), 131).unwrap_err();
    assert_eq!(expired, AuthError::Stale(NonceError::Expired));
    let other_realm = Request {
        msg: &register("alice", "secret", &nonce, Some(3), Algorithm::Md5),
        realm: "x",
        table: "subscriber",
        proxy: false,
    };
    assert_eq!(a.authorize(&other_realm, 100).unwrap_err().code(), -4);
    let proxy = Request { proxy: true, realm: REALM, ..other_realm };
    assert_eq!(a.authorize(&proxy, 100).unwrap_err().code(), -4, "no Proxy-Authorization");
    let unknown_table = Request { table: "nope", proxy: false, ..proxy };
    assert_eq!(a.authorize(&unknown_table, 100).unwrap_err().code(), -5);
}

#[test]
fn algorithms_and_plaintext() {
    let a = auth();
    for alg in [Algorithm::Sha256, Algorithm::Md5Sess, Algorithm::Sha256Sess, Algorithm::Sha512t256] {
        let nonce = nonce_of(&a.challenge(false, REALM, &[Qop::Auth], &[alg], false, 100));
        assert!(check(&a, &register("alice", "secret", &nonce, Some(1), alg), 100).is_ok(), "{alg:?}");
    }
    let plain = auth_with(AuthConfig { calculate_ha1: true, load_credentials: vec![], ..AuthConfig::default() });
    let nonce = nonce_of(&plain.challenge(false, REALM, &[], &[Algorithm::Md5], false, 100));
    let ok = check(&plain, &register("alice", "secret", &nonce, None, Algorithm::Md5), 100).unwrap();
    assert!(ok.avps.is_empty());
    let again = check(&plain, &register("alice", "secret", &nonce, None, Algorithm::Md5), 100);
    assert_eq!(again.unwrap_err(), AuthError::Stale(NonceError::Replayed), "no qop: once");
}

#[test]
fn a_foreign_nonce_with_the_right_password_is_stale() {
    let a = auth();
    let b = auth();
    let nonce = nonce_of(&b.challenge(false, REALM, &[Qop::Auth], &[Algorithm::Md5], false, 100));
    assert_eq!(check(&a, &register("alice", "secret", &nonce, Some(1), Algorithm::Md5), 100).unwrap_err().code(), -3);
    assert_eq!(check(&a, &register("alice", "nope", &nonce, Some(1), Algorithm::Md5), 100).unwrap_err().code(), -2);
}

#[test]
fn malformed_credentials() {
    let a = auth();
    let bad = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
        To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\
        Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:example.com\", response=\"r\", qop=auth\r\n\
        Content-Length: 0\r\n\r\n";
    let msg = SipMsg::parse(Bytes::from(bad)).unwrap();
    let e = check(&a, &msg, 100).unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("cnonce")), (0, true), "{e}");
}

#[test]
fn challenge_lines() {
    let a = auth();
    let text = a.challenge(true, "r\"x", &[Qop::Auth, Qop::AuthInt], &[Algorithm::Sha256, Algorithm::Md5], true, 5);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("Proxy-Authenticate: Digest realm=\"r\\\"x\", nonce=\""), "{}", lines[0]);
    assert!(lines[0].ends_with(", qop=\"auth,auth-int\", algorithm=SHA-256, stale=true"), "{}", lines[0]);
    assert!(lines[1].contains("algorithm=MD5"));
    assert_eq!(nonce_of(lines[0]), nonce_of(lines[1]));
    let none = a.challenge(false, "r", &[], &[Algorithm::Md5], false, 5);
    assert!(none.starts_with("WWW-Authenticate: ") && !none.contains("qop") && !none.contains("stale"), "{none}");
}

#[test]
fn load_credentials_entries() {
    assert_eq!(parse_load_credential("rpid"), Some(("rpid".into(), "rpid".into())));
    assert_eq!(parse_load_credential("$avp(caller_rpid) = rpid"), Some(("caller_rpid".into(), "rpid".into())));
    assert_eq!(parse_load_credential("ha1"), None, "a secret");
    assert_eq!(parse_load_credential("$var(x)=rpid"), None);
}

#[test]
fn use_domain_matches_the_domain() {
    let a = auth_with(AuthConfig { use_domain: true, ..AuthConfig::default() });
    assert!(a.find("subscriber", "alice", "EXAMPLE.com").unwrap().is_some());
    assert!(a.find("subscriber", "alice", "example.org").unwrap().is_none());
    let b = auth();
    assert!(b.find("subscriber", "alice", "example.org").unwrap().is_some(), "use_domain off");
    assert_eq!(b.len(), 1);
}
