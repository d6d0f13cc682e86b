//! `siprox ctl subscriber add|rm|list|reload`: the subscriber table (auth_db) in the database
//! of `[db] url`, then `auth_reload` on the running proxy (docs/auth.md, docs/database.md).
//!
//! ```text
//! siprox ctl [-c siprox.toml] subscriber add USER@DOMAIN PASSWORD [--email E] [rpid=R]
//! siprox ctl [-c siprox.toml] subscriber rm USER@DOMAIN
//! siprox ctl [-c siprox.toml] subscriber list
//! siprox ctl [-c siprox.toml] subscriber reload
//! ```
//!
//! `add` stores the password and its HA1 for every algorithm (`ha1`, `ha1_sha256`,
//! `ha1_sha512t256`), with the domain as realm, as OpenSIPS's own tools do. Every verb takes
//! `table=NAME` (default `subscriber`). Exit status as the other table verbs: 0 done (also
//! when no proxy runs: it reads the table at start), 1 the database or the proxy refused,
//! 2 a usage error.

use super::ctl::CtlArgs;
use super::table;
use crate::config::Config;
use crate::db::{Db, DbError, DbOptions};
use crate::modules::auth::store::{self, DEFAULT_TABLE};
use crate::modules::auth::Subscriber;
use serde_json::{json, Value};
use std::process::ExitCode;

const USAGE: &str = "usage: siprox ctl subscriber add USER@DOMAIN PASSWORD [--email E] [rpid=R] \
| rm USER@DOMAIN | list | reload  (each: [table=NAME])";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Add(Subscriber),
    Rm { username: String, domain: String },
    List,
    Reload,
}

/// `user@domain`, each part non-empty and within its 64-character column.
fn account(v: &str) -> Result<(String, String), String> {
    match v.split_once('@') {
        Some((u, d)) if !u.is_empty() && !d.is_empty() && !d.contains('@') => {
            Ok((table::limited("USER", u, 64)?, table::limited("DOMAIN", d, 64)?))
        }
        _ => Err(format!("want USER@DOMAIN, not {v:?}")),
    }
}

fn parse(args: &[String]) -> Result<(Verb, String), String> {
    let (verb, rest) = args.split_first().ok_or("which one?")?;
    let mut table = DEFAULT_TABLE.to_string();
    let (mut email, mut rpid) = (None, None);
    let mut positional = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--email" {
            email = Some(it.next().ok_or("--email wants an address")?.clone());
        } else if let Some(e) = a.strip_prefix("--email=") {
            email = Some(e.to_string());
        } else if let Some(t) = a.strip_prefix("table=") {
            table = t.to_string();
        } else if let Some(e) = a.strip_prefix("email=") {
            email = Some(e.to_string());
        } else if let Some(r) = a.strip_prefix("rpid=") {
            rpid = Some(r.to_string());
        } else {
            positional.push(a.as_str());
        }
    }
    let only_add = |what: &str| format!("`{verb}` takes no {what}");
    if verb != "add" && email.is_some() {
        return Err(only_add("--email"));
    }
    if verb != "add" && rpid.is_some() {
        return Err(only_add("rpid="));
    }
    let verb = match (verb.as_str(), &positional[..]) {
        ("add", [acct, password]) => {
            let (username, domain) = account(acct)?;
            if password.is_empty() {
                return Err("the password is empty".into());
            }
            let mut s = Subscriber::with_password(&username, &domain, &table::limited("PASSWORD", password, 25)?);
            s.email_address = table::limited("email", email.as_deref().unwrap_or(""), 64)?;
            s.rpid = rpid.map(|r| table::limited("rpid", &r, 255)).transpose()?;
            Verb::Add(s)
        }
        ("add", _) => return Err("add wants USER@DOMAIN PASSWORD".into()),
        ("rm" | "remove" | "del", [acct]) => {
            let (username, domain) = account(acct)?;
            Verb::Rm { username, domain }
        }
        ("rm" | "remove" | "del", _) => return Err("rm wants USER@DOMAIN".into()),
        ("list" | "ls" | "show", []) => Verb::List,
        ("reload", []) => Verb::Reload,
        ("list" | "ls" | "show" | "reload", _) => return Err(format!("{verb} takes no arguments")),
        (other, _) => return Err(format!("unknown verb {other:?}")),
    };
    Ok((verb, table))
}

/// Runs `siprox ctl subscriber …`.
pub(super) fn main(args: &CtlArgs) -> ExitCode {
    let (verb, table) = match parse(&args.args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("siprox ctl subscriber: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (cfg, rt) = match table::config_and_runtime(args) {
        Ok(v) => v,
        Err(code) => return code,
    };
    rt.block_on(run(args, &cfg, verb, &table))
}

async fn run(args: &CtlArgs, cfg: &Config, verb: Verb, table: &str) -> ExitCode {
    if verb == Verb::Reload {
        return table::reload(args, "auth_reload").await;
    }
    let opts = DbOptions { create: false, ..DbOptions::from_config(&cfg.db) };
    let db = match Db::open_with(&cfg.db.url, &opts).await {
        Ok(db) => db,
        Err(e) => return db_failed(&e),
    };
    let changed = match verb {
        Verb::Add(s) => match store::insert(&db, table, &s).await {
            Ok(id) => {
                println!("added id {id}: {}@{}", s.username, s.domain);
                true
            }
            Err(e) => return db_failed(&e),
        },
        Verb::Rm { username, domain } => match store::delete(&db, table, &username, &domain).await {
            Ok(0) => {
                eprintln!("siprox ctl subscriber: no such subscriber: {username}@{domain}");
                return ExitCode::from(1);
            }
            Ok(n) => {
                println!("removed {n} row(s): {username}@{domain}");
                true
            }
            Err(e) => return db_failed(&e),
        },
        Verb::List => match store::load(&db, table).await {
            Ok(rows) => {
                if args.json {
                    let v: Vec<Value> = rows.iter().map(row_json).collect();
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print!("{}", render(&rows));
                }
                false
            }
            Err(e) => return db_failed(&e),
        },
        Verb::Reload => false,
    };
    db.close().await;
    if changed {
        table::reload(args, "auth_reload").await
    } else {
        ExitCode::SUCCESS
    }
}

/// What `list` shows of a row: no password, no hashes.
fn row_json(s: &Subscriber) -> Value {
    json!({ "id": s.id, "username": s.username, "domain": s.domain, "email_address": s.email_address, "rpid": s.rpid })
}

fn render(rows: &[Subscriber]) -> String {
    let mut cells = vec![["id", "username", "domain", "email_address", "rpid"].map(String::from)];
    for s in rows {
        let dash = |v: &str| if v.is_empty() { "-".to_string() } else { v.to_string() };
        cells.push([
            s.id.to_string(),
            s.username.clone(),
            s.domain.clone(),
            dash(&s.email_address),
            dash(s.rpid.as_deref().unwrap_or("")),
        ]);
    }
    table::columns(&cells, "(no subscribers)")
}

fn db_failed(e: &DbError) -> ExitCode {
    let text = e.to_string();
    eprintln!("siprox ctl subscriber: {text}");
    if ["no such table", "does not exist", "doesn't exist"].iter().any(|m| text.contains(m)) {
        eprintln!("  the tables are created by `siprox run` and `siprox migrate -c <config>`");
    }
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<(Verb, String), String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn add() {
        let (v, t) = p(&["add", "alice@example.com", "s3cret", "--email", "a@example.com"]).unwrap();
        assert_eq!(t, "subscriber");
        let Verb::Add(s) = v else { panic!("{v:?}") };
        assert_eq!(
            (s.username.as_str(), s.domain.as_str(), s.email_address.as_str()),
            ("alice", "example.com", "a@example.com")
        );
        // MD5("alice:example.com:s3cret"), the realm being the domain.
        assert_eq!(s.ha1, crate::modules::auth::digest::Algorithm::Md5.hash(&[b"alice", b"example.com", b"s3cret"]));
        assert_eq!(s.ha1_sha256.len(), 64);
        let (v, t) = p(&["add", "bob@x", "pw", "table=subs", "rpid=<sip:1@x>"]).unwrap();
        assert_eq!(t, "subs");
        let Verb::Add(s) = v else { panic!() };
        assert_eq!(s.rpid.as_deref(), Some("<sip:1@x>"));
    }

    #[test]
    fn bad() {
        let err = |a: &[&str]| p(a).unwrap_err();
        assert!(err(&["add", "alice", "pw"]).contains("USER@DOMAIN"));
        assert!(err(&["add", "@x", "pw"]).contains("USER@DOMAIN"));
        assert!(err(&["add", "a@x"]).contains("PASSWORD"));
        assert!(err(&["add", "a@x", &"p".repeat(26)]).contains("25"));
        assert!(err(&["add", "a@x", "pw", "--email"]).contains("--email"));
        assert!(err(&["rm", "a@x", "--email", "e"]).contains("--email"));
        assert!(err(&["rm"]).contains("USER@DOMAIN"));
        assert!(err(&["list", "x"]).contains("no arguments"));
        assert!(err(&["frob"]).contains("unknown verb"));
        assert_eq!(p(&["rm", "a@x"]).unwrap().0, Verb::Rm { username: "a".into(), domain: "x".into() });
        assert_eq!(p(&["reload"]).unwrap().0, Verb::Reload);
    }
}
