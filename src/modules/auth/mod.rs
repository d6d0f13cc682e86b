//! auth + auth_db: SIP digest authentication against the `subscriber` table (spec §15,
//! docs/auth.md; RFC 3261 §22, RFC 2617, RFC 7616).
//!
//! # Data
//!
//! The rows of every table in `[auth] tables` ([`Subscriber`]) are held in memory, behind an
//! [`ArcSwap`]: a script never waits on the database. They are loaded at start, again by the
//! MI command `auth_reload` (siprox's own: OpenSIPS reads the table per request), and every
//! `reload_interval` seconds, so a subscriber added through one node's `siprox ctl subscriber`
//! is seen by every node sharing the database. A failed load keeps the rows in use.
//!
//! # Nonces
//!
//! Stateless and verifiable (nonce.rs): expiry, index and a MAC keyed by `[auth] secret`;
//! a bounded table keyed by the index stops replays (nc must grow; a nonce without qop is
//! good once).
//!
//! # Parameters (`[auth]`, OpenSIPS auth / auth_db modparam names where one exists)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `secret` | random per start | key of the nonce MAC; set the same on nodes that share nonces |
//! | `nonce_expire` | `30` | seconds a nonce is valid |
//! | `calculate_ha1` | `false` | `true`: the `password` column holds the plaintext password |
//! | `use_domain` | `false` | match the subscriber's `domain` too |
//! | `load_credentials` | `["rpid"]` | columns copied into AVPs on success (`col` or `$avp(name)=col`) |
//! | `tables` | `["subscriber"]` | tables loaded into memory (siprox only) |
//! | `reload_interval` | `10` | seconds between reloads of the tables; 0 = only at start and on `auth_reload` |
//!
//! # Script functions (script.rs)
//!
//! `www_authorize(realm, table)`, `proxy_authorize(realm, table)`,
//! `www_challenge(realm[, qop[, algorithms]])`, `proxy_challenge(…)`, `consume_credentials()`,
//! `db_does_uri_exist([uri[, table]])`, `db_is_to_authorized([table])`,
//! `db_is_from_authorized([table])`, `is_from_local()`, `is_uri_host_local()`.
//!
//! # MI commands (mi.rs)
//!
//! `auth_reload`.

pub mod digest;
pub mod mi;
pub mod nonce;
pub mod script;
pub mod store;

use crate::config::AuthConfig;
use crate::message::{DigestCredentials, HeaderName, SipMsg};
use crate::script::api::AuthorizedCreds;
use arc_swap::ArcSwap;
use digest::{Algorithm, Challenge, Qop};
use nonce::{NonceError, Nonces};
use std::collections::HashMap;
use std::sync::Arc;

/// One row of a subscriber table (OpenSIPS auth_db schema, table version 8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriber {
    pub id: i64,
    pub username: String,
    pub domain: String,
    /// Plaintext, used with `calculate_ha1 = true` only; often empty.
    pub password: String,
    pub email_address: String,
    /// MD5(username:domain:password).
    pub ha1: String,
    pub ha1_sha256: String,
    pub ha1_sha512t256: String,
    pub rpid: Option<String>,
}

impl Subscriber {
    /// A row for `username@domain` with every hash computed from `password`, the domain
    /// as realm (what `siprox ctl subscriber add` writes, and what OpenSIPS's tools write).
    pub fn with_password(username: &str, domain: &str, password: &str) -> Subscriber {
        Subscriber {
            id: 0,
            username: username.to_string(),
            domain: domain.to_string(),
            password: password.to_string(),
            email_address: String::new(),
            ha1: digest::ha1(Algorithm::Md5, username, domain, password),
            ha1_sha256: digest::ha1(Algorithm::Sha256, username, domain, password),
            ha1_sha512t256: digest::ha1(Algorithm::Sha512t256, username, domain, password),
            rpid: None,
        }
    }

    /// A column by its name, for `load_credentials` (`None`: NULL or unknown).
    fn column(&self, name: &str) -> Option<&str> {
        match name {
            "username" => Some(&self.username),
            "domain" => Some(&self.domain),
            "email_address" => Some(&self.email_address),
            "rpid" => self.rpid.as_deref(),
            _ => None,
        }
    }

    /// The stored HA1 for `alg`'s base algorithm (empty when the column is).
    fn stored_ha1(&self, alg: Algorithm) -> &str {
        match alg.base() {
            Algorithm::Md5 => &self.ha1,
            Algorithm::Sha256 => &self.ha1_sha256,
            _ => &self.ha1_sha512t256,
        }
    }
}

/// Columns `load_credentials` may name (the rest hold secrets or keys).
pub const LOADABLE_COLUMNS: [&str; 4] = ["rpid", "email_address", "username", "domain"];

/// Reads every table of `[auth] tables` (supplied by the wiring from store.rs).
pub type SubscriberLoader =
    Arc<dyn Fn() -> crate::mi::BoxFuture<Result<Vec<(String, Vec<Subscriber>)>, String>> + Send + Sync>;

/// Why credentials were not accepted; [`AuthError::code`] is what the script sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for {0:?}")]
    WrongPassword(String),
    #[error("stale credentials: {0}")]
    Stale(NonceError),
    #[error("no credentials for realm {0:?}")]
    NoCredentials(String),
    #[error("{0}")]
    Internal(String),
    /// Credentials that cannot be checked: the caller answers 400 (RFC 3261 §21.4.1).
    #[error("malformed credentials: {0}")]
    Malformed(String),
}

impl AuthError {
    /// OpenSIPS's codes (spec §15): -1 unknown user, -2 wrong password, -3 stale nonce,
    /// -4 no credentials for the realm, -5 error, 0 a reply (400) was sent.
    pub fn code(&self) -> i64 {
        match self {
            AuthError::UnknownUser(_) => -1,
            AuthError::WrongPassword(_) => -2,
            AuthError::Stale(_) => -3,
            AuthError::NoCredentials(_) => -4,
            AuthError::Internal(_) => -5,
            AuthError::Malformed(_) => 0,
        }
    }
}

/// Accepted credentials and the AVPs `load_credentials` asks for.
#[derive(Clone, Debug)]
pub struct Authorized {
    pub creds: AuthorizedCreds,
    pub avps: Vec<(String, String)>,
}

/// What one authorization check is about.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub msg: &'a SipMsg,
    pub realm: &'a str,
    pub table: &'a str,
    /// `Proxy-Authorization` (proxy_authorize) rather than `Authorization`.
    pub proxy: bool,
}

/// The tables in memory: per table, the rows by username.
#[derive(Default)]
struct Snapshot {
    tables: HashMap<String, HashMap<String, Vec<Subscriber>>>,
}

/// The auth module's state: settings, nonces, and the subscribers.
pub struct Auth {
    calculate_ha1: bool,
    use_domain: bool,
    /// `(avp name, column)`.
    load_credentials: Vec<(String, String)>,
    tables: Vec<String>,
    reload_interval: u64,
    nonces: Nonces,
    snapshot: ArcSwap<Snapshot>,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Auth {
        let mut load = Vec::new();
        for entry in &cfg.load_credentials {
            match parse_load_credential(entry) {
                Some(pair) => load.push(pair),
                None => tracing::warn!(
                    entry = %entry,
                    "auth: load_credentials entry ignored (want COLUMN or $avp(NAME)=COLUMN, COLUMN one of {:?})",
                    LOADABLE_COLUMNS
                ),
            }
        }
        Auth {
            calculate_ha1: cfg.calculate_ha1,
            use_domain: cfg.use_domain,
            load_credentials: load,
            tables: cfg.tables.clone(),
            reload_interval: cfg.reload_interval,
            nonces: Nonces::new(&cfg.secret, cfg.nonce_expire),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
        }
    }

    /// The tables `[auth] tables` names, to be loaded.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Seconds between periodic reloads (0: none).
    pub fn reload_interval(&self) -> u64 {
        self.reload_interval
    }

    /// Replaces every table with `loaded`; returns the number of rows.
    pub fn replace(&self, loaded: Vec<(String, Vec<Subscriber>)>) -> usize {
        let mut snap = Snapshot::default();
        let mut rows = 0;
        for (table, subs) in loaded {
            let by_user = snap.tables.entry(table).or_default();
            for s in subs {
                rows += 1;
                by_user.entry(s.username.clone()).or_default().push(s);
            }
        }
        self.snapshot.store(Arc::new(snap));
        rows
    }

    /// Reads the tables with `loader` and swaps them in; on failure the rows in use stay.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn reload(&self, loader: &SubscriberLoader) -> Result<usize, String> {
        let loaded = loader().await?;
        Ok(self.replace(loaded))
    }

    /// Number of subscribers held, over every table.
    pub fn len(&self) -> usize {
        self.snapshot.load().tables.values().flat_map(|t| t.values()).map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of `user` (in `domain` when `use_domain`), if `table` is loaded and has it.
    ///
    /// # Errors
    /// `table` is not one of `[auth] tables`.
    pub fn find(&self, table: &str, user: &str, domain: &str) -> Result<Option<Subscriber>, AuthError> {
        let snap = self.snapshot.load();
        let Some(t) = snap.tables.get(table) else {
            return Err(AuthError::Internal(format!("table {table:?} is not loaded (add it to [auth] tables)")));
        };
        let rows = t.get(user).map(Vec::as_slice).unwrap_or_default();
        Ok(rows.iter().find(|s| !self.use_domain || s.domain.eq_ignore_ascii_case(domain)).cloned())
    }

    /// Whether `use_domain` is on (domains compared by `db_is_*_authorized`).
    pub fn use_domain(&self) -> bool {
        self.use_domain
    }

    /// Checks the request's credentials for `realm` (`www_authorize` / `proxy_authorize`).
    ///
    /// Order (RFC 2617 §3.2.1, `stale`): the user, then the response, and only then the
    /// nonce, so `stale=true` is said only to a UA that knows the password, and a wrong
    /// response does not use up a nonce count.
    ///
    /// # Errors
    /// [`AuthError`], whose [`AuthError::code`] is the script's return code.
    pub fn authorize(&self, req: &Request<'_>, now: u64) -> Result<Authorized, AuthError> {
        let (line, c, alg) = find_credentials(req)?;
        let missing = |what: &str| AuthError::Malformed(format!("no {what}"));
        let username = c.username.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| missing("username"))?;
        let nonce = c.nonce.as_deref().ok_or_else(|| missing("nonce"))?;
        let uri = c.uri.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| missing("uri"))?;
        let response = c.response.as_deref().ok_or_else(|| missing("response"))?;
        let qop = Qop::parse(c.qop.as_deref())
            .ok_or_else(|| AuthError::Malformed(format!("qop {:?} not offered", c.qop.as_deref().unwrap_or(""))))?;
        // RFC 7616 §3.4: with qop, cnonce and nc are required; nc is 8 hex digits.
        let (cnonce, nc_text, nc) = if qop == Qop::None {
            ("", "", None)
        } else {
            let cnonce = c.cnonce.as_deref().ok_or_else(|| missing("cnonce"))?;
            let nc_text = c.nc.as_deref().ok_or_else(|| missing("nc"))?;
            let nc = (nc_text.len() == 8).then(|| u32::from_str_radix(nc_text, 16).ok()).flatten();
            let nc = nc.ok_or_else(|| AuthError::Malformed(format!("nc {nc_text:?} is not 8 hex digits")))?;
            (cnonce, nc_text, Some(nc))
        };

        // auth_db: the user part of the username; its domain, else the realm.
        let user = c.user();
        let domain = c.user_domain().unwrap_or(req.realm);
        let sub = self.find(req.table, user, domain)?.ok_or_else(|| AuthError::UnknownUser(username.to_string()))?;
        let ha1 = if self.calculate_ha1 {
            digest::ha1(alg, username, req.realm, &sub.password)
        } else {
            let stored = sub.stored_ha1(alg);
            if stored.is_empty() {
                return Err(AuthError::Internal(format!(
                    "{username}: no stored HA1 for {} (its column is empty)",
                    alg.base().as_str()
                )));
            }
            stored.to_string()
        };
        let challenge =
            Challenge { method: req.msg.method_text(), uri, nonce, cnonce, nc: nc_text, qop, body: req.msg.body() };
        if !digest::same_hex(&digest::response(alg, &ha1, &challenge), response) {
            return Err(AuthError::WrongPassword(username.to_string()));
        }
        self.nonces.check(nonce, nc, now).map_err(AuthError::Stale)?;
        let avps = self
            .load_credentials
            .iter()
            .filter_map(|(avp, col)| sub.column(col).map(|v| (avp.clone(), v.to_string())))
            .collect();
        Ok(Authorized {
            creds: AuthorizedCreds { username: username.to_string(), realm: req.realm.to_string(), line },
            avps,
        })
    }

    /// The `WWW-Authenticate` (or, with `proxy`, `Proxy-Authenticate`) lines of a challenge:
    /// one per algorithm (RFC 8760 §2.4: the preferred one first), CRLF-terminated, sharing
    /// one fresh nonce.
    pub fn challenge(
        &self,
        proxy: bool,
        realm: &str,
        qops: &[Qop],
        algs: &[Algorithm],
        stale: bool,
        now: u64,
    ) -> String {
        let name = if proxy { "Proxy-Authenticate" } else { "WWW-Authenticate" };
        let nonce = self.nonces.issue(now);
        let realm = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        for alg in algs {
            out.push_str(&format!("{name}: Digest realm=\"{realm}\", nonce=\"{nonce}\""));
            let offered: Vec<&str> = qops.iter().filter(|q| **q != Qop::None).map(|q| q.as_str()).collect();
            if !offered.is_empty() {
                out.push_str(&format!(", qop=\"{}\"", offered.join(",")));
            }
            out.push_str(&format!(", algorithm={}", alg.as_str()));
            if stale {
                out.push_str(", stale=true");
            }
            out.push_str("\r\n");
        }
        out
    }
}

/// The first credentials of the request for `req.realm` whose algorithm we know: the
/// header line, the parsed value, the algorithm.
fn find_credentials<'m>(
    req: &Request<'m>,
) -> Result<(crate::message::Span, DigestCredentials<'m>, Algorithm), AuthError> {
    let name = if req.proxy { HeaderName::ProxyAuthorization } else { HeaderName::Authorization };
    for h in req.msg.headers_named(&name) {
        let c = match DigestCredentials::parse(req.msg.text(h.value)) {
            Ok(c) => c,
            // Another scheme is for somebody else (RFC 3261 §22.4 allows only Digest).
            Err(crate::message::CredentialsError::NotDigest) => continue,
            Err(e) => return Err(AuthError::Malformed(e.to_string())),
        };
        if c.realm.as_deref() != Some(req.realm) {
            continue;
        }
        let alg = match c.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(alg) => alg,
                None => {
                    tracing::debug!(target: "script", algorithm = a, "auth: credentials with an unknown algorithm skipped");
                    continue;
                }
            },
        };
        return Ok((h.line, c, alg));
    }
    Err(AuthError::NoCredentials(req.realm.to_string()))
}

/// `rpid` → `("rpid", "rpid")`; `$avp(x)=rpid` → `("x", "rpid")`.
fn parse_load_credential(entry: &str) -> Option<(String, String)> {
    let entry = entry.trim();
    let (avp, col) = match entry.split_once('=') {
        Some((lhs, col)) => {
            let name = lhs.trim().strip_prefix("$avp(")?.strip_suffix(')')?;
            (name.trim().to_string(), col.trim().to_string())
        }
        None => (entry.to_string(), entry.to_string()),
    };
    (!avp.is_empty() && LOADABLE_COLUMNS.contains(&col.as_str())).then_some((avp, col))
}

#[cfg(test)]
mod tests;
