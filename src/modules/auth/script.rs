//! Rhai bindings of auth / auth_db (docs/auth.md). `www_authorize` / `proxy_authorize`
//! return OpenSIPS's codes through `with_ctx_code` (`$retcode`; 0 ends the script after a
//! 400); the challenges return 1 when the reply went out; the checks are predicates.

use super::digest::{Algorithm, Qop};
use super::nonce::unix_now;
use super::store::DEFAULT_TABLE;
use super::{Auth, AuthError, Request};
use crate::message::Uri;
use crate::script::api::{as_int, as_text, script_error, with_ctx, with_ctx_code, Ctx, FnResult};
use rhai::{Dynamic, Engine};
use std::sync::Arc;

/// The realm `""` stands for: the To domain of a REGISTER challenged by `www_*` (the
/// address being registered), else the From domain (spec §15).
fn realm_for(ctx: &Ctx, given: &str, www: bool) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    let register = ctx.msg.method_text().eq_ignore_ascii_case("REGISTER");
    let addr = if www && register { ctx.msg.to() } else { ctx.msg.from() };
    addr.and_then(|a| Uri::parse(a.uri).map(|u| u.host().to_string())).unwrap_or_default()
}

fn table_of(v: Option<&Dynamic>) -> String {
    let t = v.map(as_text).unwrap_or_default();
    if t.is_empty() {
        DEFAULT_TABLE.to_string()
    } else {
        t
    }
}

fn authorize(auth: &Auth, fname: &'static str, realm: &Dynamic, table: &Dynamic, proxy: bool) -> FnResult<i64> {
    let (given, table) = (as_text(realm), table_of(Some(table)));
    with_ctx_code(|ctx| {
        let realm = realm_for(ctx, &given, !proxy);
        let req = Request { msg: &ctx.msg, realm: &realm, table: &table, proxy };
        match auth.authorize(&req, unix_now()) {
            Ok(ok) => {
                for (name, value) in ok.avps {
                    ctx.avps.push(&name, Dynamic::from(value));
                }
                ctx.auth.authorized = Some(ok.creds);
                ctx.auth.stale = false;
                1
            }
            Err(e) => {
                ctx.auth.stale = matches!(e, AuthError::Stale(_));
                match &e {
                    AuthError::Internal(_) => tracing::error!(target: "script", "{fname}: {e}"),
                    _ => tracing::debug!(target: "script", "{fname}: {e}"),
                }
                if let AuthError::Malformed(why) = &e {
                    // RFC 3261 §21.4.1: the request could not be understood.
                    let core = ctx.core.clone();
                    let reason = format!("Bad Request ({why})");
                    if core.send_reply(ctx, 400, &reason) <= 0 {
                        return -5;
                    }
                }
                e.code()
            }
        }
    })
}

/// `"auth"`, `"auth-int"`, `"auth,auth-int"`, `""` (none); 2.x integers 0 (none), 1 (auth),
/// 2 (auth-int).
fn parse_qops(v: &Dynamic) -> Result<Vec<Qop>, String> {
    if let Some(i) = as_int(v) {
        return match i {
            0 => Ok(Vec::new()),
            1 => Ok(vec![Qop::Auth]),
            2 => Ok(vec![Qop::AuthInt]),
            _ => Err(format!("qop {i}: want \"auth\", \"auth-int\", both, or \"\"")),
        };
    }
    let text = as_text(v);
    text.split(',')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| match Qop::parse(Some(q)) {
            Some(Qop::None) | None => Err(format!("qop {q:?}: want \"auth\" or \"auth-int\"")),
            Some(q) => Ok(q),
        })
        .collect()
}

/// `"MD5,SHA-256"` → both; `""` → MD5.
fn parse_algorithms(v: &Dynamic) -> Result<Vec<Algorithm>, String> {
    let text = as_text(v);
    let algs: Vec<Algorithm> = text
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| Algorithm::parse(a).ok_or_else(|| format!("unknown algorithm {a:?}")))
        .collect::<Result<_, _>>()?;
    Ok(if algs.is_empty() { vec![Algorithm::Md5] } else { algs })
}

fn challenge(
    auth: &Auth,
    fname: &'static str,
    proxy: bool,
    realm: &Dynamic,
    qop: Option<&Dynamic>,
    algs: Option<&Dynamic>,
) -> FnResult<i64> {
    // qop "auth" when not given: siprox's choice, so nc-based replay protection applies.
    let qops = match qop {
        Some(q) => parse_qops(q).map_err(|e| script_error(format!("{fname}: {e}")))?,
        None => vec![Qop::Auth],
    };
    let algs = match algs {
        Some(a) => parse_algorithms(a).map_err(|e| script_error(format!("{fname}: {e}")))?,
        None => vec![Algorithm::Md5],
    };
    let given = as_text(realm);
    with_ctx_code(|ctx| {
        let realm = realm_for(ctx, &given, !proxy);
        let lines = auth.challenge(proxy, &realm, &qops, &algs, ctx.auth.stale, unix_now());
        // The challenge headers go on this reply only.
        let sent = if proxy {
            ctx.send_reply_with(407, "Proxy Authentication Required", &lines)
        } else {
            ctx.send_reply_with(401, "Unauthorized", &lines)
        };
        if sent > 0 {
            1
        } else {
            tracing::error!(target: "script", "{fname}: the challenge could not be sent");
            -1
        }
    })
}

fn consume_credentials() -> FnResult<i64> {
    with_ctx_code(|ctx| match ctx.auth.authorized.as_ref().map(|a| a.line) {
        Some(line) => {
            if !ctx.edits.touches(line) {
                ctx.edits.delete(line);
            }
            1
        }
        None => {
            tracing::debug!(target: "script", "consume_credentials: no authorized credentials");
            -1
        }
    })
}

fn does_uri_exist(auth: &Auth, uri: Option<&Dynamic>, table: Option<&Dynamic>) -> FnResult<bool> {
    let (uri, table) = (uri.map(as_text), table_of(table));
    with_ctx(|ctx| {
        let text = uri.filter(|u| !u.is_empty()).unwrap_or_else(|| ctx.ruri().to_string());
        let Some(u) = Uri::parse(&text) else {
            tracing::debug!(target: "script", "db_does_uri_exist: {text:?} is not a URI");
            return false;
        };
        match auth.find(&table, u.user(), u.host()) {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::error!(target: "script", "db_does_uri_exist: {e}");
                false
            }
        }
    })
}

/// `db_is_to_authorized` / `db_is_from_authorized`: the user of the To / From URI is the
/// authorized user (and, with `use_domain`, its host the credentials' domain or realm).
fn is_authorized(auth: &Auth, to: bool) -> FnResult<bool> {
    with_ctx(|ctx| {
        let Some(creds) = ctx.auth.authorized.as_ref() else { return false };
        let addr = if to { ctx.msg.to() } else { ctx.msg.from() };
        let Some(u) = addr.and_then(|a| Uri::parse(a.uri)) else { return false };
        let (user, domain) = match creds.username.split_once('@') {
            Some((user, domain)) => (user, domain),
            None => (creds.username.as_str(), creds.realm.as_str()),
        };
        u.user() == user && (!auth.use_domain() || u.host().eq_ignore_ascii_case(domain))
    })
}

/// Whether the host (and port) of `uri` is this proxy: siprox has no domain table, so
/// "local" is what `myself` means (the sockets and `[core] alias`).
fn is_local(ctx: &Ctx, uri: &str) -> bool {
    Uri::parse(uri).is_some_and(|u| ctx.core.is_myself(u.host(), u.port()))
}

/// Registers the auth functions, bound to `auth`.
pub fn register(engine: &mut Engine, auth: &Arc<Auth>) {
    for (name, proxy) in [("www_authorize", false), ("proxy_authorize", true)] {
        let a = auth.clone();
        engine.register_fn(name, move |realm: Dynamic, table: Dynamic| authorize(&a, name, &realm, &table, proxy));
    }
    for (name, proxy) in [("www_challenge", false), ("proxy_challenge", true)] {
        let a = auth.clone();
        engine.register_fn(name, move |realm: Dynamic| challenge(&a, name, proxy, &realm, None, None));
        let a = auth.clone();
        engine.register_fn(name, move |realm: Dynamic, qop: Dynamic| {
            challenge(&a, name, proxy, &realm, Some(&qop), None)
        });
        let a = auth.clone();
        engine.register_fn(name, move |realm: Dynamic, qop: Dynamic, algs: Dynamic| {
            challenge(&a, name, proxy, &realm, Some(&qop), Some(&algs))
        });
    }
    engine.register_fn("consume_credentials", consume_credentials);

    let a = auth.clone();
    engine.register_fn("db_does_uri_exist", move || does_uri_exist(&a, None, None));
    let a = auth.clone();
    engine.register_fn("db_does_uri_exist", move |uri: Dynamic| does_uri_exist(&a, Some(&uri), None));
    let a = auth.clone();
    engine.register_fn("db_does_uri_exist", move |uri: Dynamic, table: Dynamic| {
        does_uri_exist(&a, Some(&uri), Some(&table))
    });
    for (name, to) in [("db_is_to_authorized", true), ("db_is_from_authorized", false)] {
        let a = auth.clone();
        engine.register_fn(name, move || is_authorized(&a, to));
        // The table argument names OpenSIPS's `uri` table (use_uri_table); siprox compares
        // with the credentials only, as OpenSIPS does without it.
        let a = auth.clone();
        engine.register_fn(name, move |_table: Dynamic| is_authorized(&a, to));
    }
    engine.register_fn("is_from_local", || -> FnResult<bool> {
        with_ctx(|ctx| ctx.msg.from().is_some_and(|f| is_local(ctx, f.uri)))
    });
    engine.register_fn("is_uri_host_local", || -> FnResult<bool> {
        with_ctx(|ctx| {
            let ruri = ctx.ruri().to_string();
            is_local(ctx, &ruri)
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qop_and_algorithm_arguments() {
        assert_eq!(parse_qops(&Dynamic::from("auth")).unwrap(), [Qop::Auth]);
        assert_eq!(parse_qops(&Dynamic::from("auth, auth-int")).unwrap(), [Qop::Auth, Qop::AuthInt]);
        assert!(parse_qops(&Dynamic::from("")).unwrap().is_empty());
        assert!(parse_qops(&Dynamic::from(0_i64)).unwrap().is_empty());
        assert_eq!(parse_qops(&Dynamic::from(1_i64)).unwrap(), [Qop::Auth]);
        assert_eq!(parse_qops(&Dynamic::from("1")).unwrap(), [Qop::Auth]);
        assert!(parse_qops(&Dynamic::from("auth-conf")).is_err());
        assert_eq!(parse_algorithms(&Dynamic::from("")).unwrap(), [Algorithm::Md5]);
        assert_eq!(
            parse_algorithms(&Dynamic::from("MD5, sha-256-sess")).unwrap(),
            [Algorithm::Md5, Algorithm::Sha256Sess]
        );
        assert!(parse_algorithms(&Dynamic::from("SHA-1")).is_err());
    }
}
