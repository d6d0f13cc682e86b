//! What `siprox ctl dispatcher …` and `siprox ctl lb …` share: a table of destinations in
//! the database of `[db] url`, changed with `add`/`rm`, shown with `list`, and read again by
//! the running proxy through its reload command (`ds_reload`, `lb_reload`) after a change.
//!
//! A table is a [`Table`]: its names, its `add` row and its store functions. This module
//! parses the words (`key=value` options vs positional values), opens the config, runtime
//! and database, runs the verb, prints the rows and asks for the reload. Exit status: 0 done
//! (also when no proxy runs: the change is read at its next start), 1 the database or the
//! proxy refused, 2 a usage error.

use super::ctl::{self, CtlArgs};
use crate::config::Config;
use crate::db::{Db, DbError, DbOptions};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// What to do; `R` is the table's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verb<R> {
    Add(R),
    RmDestination { group: i64, uri: String },
    RmId(i64),
    List(Option<i64>),
    Reload,
}

/// One table that `siprox ctl NAME add|rm|list|reload` manages.
pub(super) trait Table {
    type Row;
    /// The word after `ctl`.
    const NAME: &'static str;
    const USAGE: &'static str;
    /// The table without `table=NAME`.
    const DEFAULT_TABLE: &'static str;
    /// The MI command that makes the running proxy read the table again.
    const RELOAD: &'static str;
    /// The group column in usage messages (`SETID`) and in sentences (`set`).
    const GROUP_ARG: &'static str;
    const GROUP_WORD: &'static str;
    /// The positional values of `add`, the group and the URI first.
    const ADD_ARGS: &'static [&'static str];
    /// The named options of `add`; anything else with `=` is a positional value (a SIP URI
    /// with `;transport=tcp`, `pstn=32;transc=10`).
    const ADD_OPTIONS: &'static [&'static str];
    /// The headers of `list`.
    const COLUMNS: &'static [&'static str];

    /// The row of `add GROUP URI …`: `extra` are the positional values after the URI.
    fn row(group: i64, uri: &str, extra: &[&str], options: Vec<(String, String)>) -> Result<Self::Row, String>;
    fn group(row: &Self::Row) -> i64;
    /// What `add` prints after `added id N: `.
    fn added(row: &Self::Row) -> String;
    /// A row for `--json … list`, an object with (at least) the [`Table::COLUMNS`].
    fn json(row: &Self::Row) -> Value;

    // The table's store: [`store_fns!`] writes these.
    async fn load(db: &Db, table: &str) -> Result<Vec<Self::Row>, DbError>;
    async fn insert(db: &Db, table: &str, row: &Self::Row) -> Result<i64, DbError>;
    async fn delete(db: &Db, table: &str, group: i64, uri: &str) -> Result<u64, DbError>;
    async fn delete_id(db: &Db, table: &str, id: i64) -> Result<u64, DbError>;
}

/// The store functions of a [`Table`] impl, from a module with the same four functions
/// (`store_fns!(store, DsRow);` for modules/dispatcher/store.rs).
macro_rules! store_fns {
    ($store:ident, $row:ty) => {
        async fn load(db: &$crate::db::Db, table: &str) -> Result<Vec<$row>, $crate::db::DbError> {
            $store::load(db, table).await
        }
        async fn insert(db: &$crate::db::Db, table: &str, row: &$row) -> Result<i64, $crate::db::DbError> {
            $store::insert(db, table, row).await
        }
        async fn delete(db: &$crate::db::Db, table: &str, group: i64, uri: &str) -> Result<u64, $crate::db::DbError> {
            $store::delete(db, table, group, uri).await
        }
        async fn delete_id(db: &$crate::db::Db, table: &str, id: i64) -> Result<u64, $crate::db::DbError> {
            $store::delete_id(db, table, id).await
        }
    };
}
pub(super) use store_fns;

pub(super) fn int(what: &str, v: &str) -> Result<i64, String> {
    v.trim().parse().map_err(|_| format!("{what} must be a number, not {v:?}"))
}

pub(super) fn limited(what: &str, v: &str, max: usize) -> Result<String, String> {
    if v.len() > max {
        return Err(format!("{what} is longer than the column's {max} characters"));
    }
    Ok(v.to_string())
}

/// A `sip:` or `sips:` URI that fits a column of `max` characters.
pub(super) fn sip_uri(uri: &str, max: usize) -> Result<String, String> {
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || uri.len() <= 4 {
        return Err(format!("URI must be a SIP URI (sip:host[:port]), not {uri:?}"));
    }
    limited("URI", uri, max)
}

/// A `probe_mode`: the index of one of `modes` (their meanings, 0 first).
pub(super) fn probe_mode(v: &str, modes: &[&str]) -> Result<i64, String> {
    if let Some(n) = (0..modes.len()).find(|n| v == n.to_string()) {
        return Ok(n as i64);
    }
    let mut listed: Vec<String> = modes.iter().enumerate().map(|(i, m)| format!("{i} ({m})")).collect();
    let last = listed.pop().unwrap_or_default();
    Err(format!("probe_mode must be {} or {last}, not {v:?}", listed.join(", ")))
}

/// Parses the words after the table's name: the verb and the table.
pub(super) fn parse<T: Table>(args: &[String]) -> Result<(Verb<T::Row>, String), String> {
    let (verb, rest) = args.split_first().ok_or("which one?")?;
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for a in rest {
        let known = |k: &&str| ["table", "id"].contains(k) || T::ADD_OPTIONS.contains(k);
        match a.split_once('=').filter(|(k, _)| known(k)) {
            Some(kv) => named.push(kv),
            None => positional.push(a.as_str()),
        }
    }
    let mut table = T::DEFAULT_TABLE.to_string();
    let mut take = |keys: &[&str]| -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for (k, v) in &named {
            if *k == "table" {
                table = v.to_string();
            } else if keys.contains(k) {
                out.push((k.to_string(), v.to_string()));
            } else {
                return Err(format!("`{verb}` takes no {k}="));
            }
        }
        Ok(out)
    };
    let group = |v: &str| int(T::GROUP_ARG, v);
    let verb = match verb.as_str() {
        "add" => {
            let opts = take(T::ADD_OPTIONS)?;
            if positional.len() != T::ADD_ARGS.len() {
                return Err(format!("add wants {}", T::ADD_ARGS.join(" ")));
            }
            Verb::Add(T::row(group(positional[0])?, positional[1], &positional[2..], opts)?)
        }
        "rm" | "remove" | "del" => {
            let opts = take(&["id"])?;
            match (&opts[..], &positional[..]) {
                ([(_, id)], []) => Verb::RmId(int("id", id)?),
                ([], [g, uri]) => Verb::RmDestination { group: group(g)?, uri: uri.to_string() },
                _ => return Err(format!("rm wants {} URI, or id=ID", T::GROUP_ARG)),
            }
        }
        "list" | "ls" | "show" => {
            take(&[])?;
            match positional[..] {
                [] => Verb::List(None),
                [g] => Verb::List(Some(group(g)?)),
                _ => return Err(format!("list wants at most a {}", T::GROUP_ARG)),
            }
        }
        "reload" => {
            take(&[])?;
            if !positional.is_empty() {
                return Err("reload takes no arguments".into());
            }
            Verb::Reload
        }
        other => return Err(format!("unknown verb {other:?}")),
    };
    Ok((verb, table))
}

/// Runs `siprox ctl … NAME …`.
/// The config `ctl` edits tables of (`-c`, else the defaults) and a runtime to do it on;
/// the exit code to end with when either is not to be had.
pub(super) fn config_and_runtime(args: &CtlArgs) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| {
            eprintln!("siprox ctl: {e}");
            ExitCode::from(2)
        })?,
        None => Config::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("siprox ctl: cannot start runtime: {e}");
        ExitCode::from(2)
    })?;
    Ok((cfg, rt))
}

pub(super) fn main<T: Table>(args: &CtlArgs) -> ExitCode {
    let (verb, table) = match parse::<T>(&args.args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("siprox ctl {}: {e}\n{}", T::NAME, T::USAGE);
            return ExitCode::from(2);
        }
    };
    let (cfg, rt) = match config_and_runtime(args) {
        Ok(v) => v,
        Err(code) => return code,
    };
    rt.block_on(run::<T>(args, &cfg, verb, &table))
}

async fn run<T: Table>(args: &CtlArgs, cfg: &Config, verb: Verb<T::Row>, table: &str) -> ExitCode {
    if matches!(verb, Verb::Reload) {
        return reload(args, T::RELOAD).await;
    }
    let opts = DbOptions { create: false, ..DbOptions::from_config(&cfg.db) };
    let db = match Db::open_with(&cfg.db.url, &opts).await {
        Ok(db) => db,
        Err(e) => return db_failed::<T>(&e),
    };
    let (what, word) = (T::NAME, T::GROUP_WORD);
    let changed = match verb {
        Verb::Add(row) => match T::insert(&db, table, &row).await {
            Ok(id) => {
                println!("added id {id}: {}", T::added(&row));
                true
            }
            Err(e) => return db_failed::<T>(&e),
        },
        Verb::RmDestination { group, uri } => match T::delete(&db, table, group, &uri).await {
            Ok(0) => return nothing_removed(what, &format!("{uri} in {word} {group}")),
            Ok(n) => {
                println!("removed {n} row(s): {word} {group} {uri}");
                true
            }
            Err(e) => return db_failed::<T>(&e),
        },
        Verb::RmId(id) => match T::delete_id(&db, table, id).await {
            Ok(0) => return nothing_removed(what, &format!("id {id}")),
            Ok(n) => {
                println!("removed {n} row(s): id {id}");
                true
            }
            Err(e) => return db_failed::<T>(&e),
        },
        Verb::List(group) => match T::load(&db, table).await {
            Ok(rows) => {
                let rows: Vec<T::Row> = rows.into_iter().filter(|r| group.is_none_or(|g| T::group(r) == g)).collect();
                if args.json {
                    let v: Vec<Value> = rows.iter().map(T::json).collect();
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print!("{}", render::<T>(&rows));
                }
                false
            }
            Err(e) => return db_failed::<T>(&e),
        },
        Verb::Reload => unreachable!("handled above"),
    };
    db.close().await;
    if changed {
        reload(args, T::RELOAD).await
    } else {
        ExitCode::SUCCESS
    }
}

fn nothing_removed(name: &str, what: &str) -> ExitCode {
    eprintln!("siprox ctl {name}: no such destination: {what}");
    ExitCode::from(1)
}

fn db_failed<T: Table>(e: &DbError) -> ExitCode {
    let text = e.to_string();
    eprintln!("siprox ctl {}: {text}", T::NAME);
    let missing = ["no such table", "does not exist", "doesn't exist"].iter().any(|m| text.contains(m));
    if missing {
        eprintln!("  the tables are created by `siprox run` and `siprox migrate -c <config>`");
    }
    ExitCode::from(1)
}

/// Asks the running proxy to reload the table (`method`: `ds_reload`, `lb_reload`,
/// `auth_reload`). A proxy
/// that does not run, or does not know the command yet, is a note, not a failure: the table
/// is read at start.
pub(super) async fn reload(args: &CtlArgs, method: &str) -> ExitCode {
    let (url, token) = match ctl::target(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("note: the table changed, but no proxy was asked to reload it: {e}");
            return ExitCode::SUCCESS;
        }
    };
    let wait = Duration::from_secs(args.timeout.max(1));
    match ctl::call(&url, token.as_deref(), method, json!({}), wait).await {
        Err(e) => {
            eprintln!("note: no proxy answered {method} ({e}); it reads the table when it starts");
            ExitCode::SUCCESS
        }
        Ok(answer) => match answer.get("error") {
            Some(err) if err.get("code").and_then(Value::as_i64) == Some(-32601) => {
                eprintln!("note: the proxy at {url} has no {method} command; it reads the table when it starts");
                ExitCode::SUCCESS
            }
            Some(err) => {
                eprint!("{method} failed: ");
                ctl::print_error(err);
                ExitCode::from(1)
            }
            None => {
                println!("{method}: {}", answer.get("result").map(short).unwrap_or_default());
                ExitCode::SUCCESS
            }
        },
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows as aligned columns under [`Table::COLUMNS`]: their [`Table::json`] values,
/// strings bare and null as `-`.
pub(super) fn render<T: Table>(rows: &[T::Row]) -> String {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut cells: Vec<Vec<String>> = vec![T::COLUMNS.iter().map(|s| s.to_string()).collect()];
    cells.extend(rows.iter().map(|r| {
        let j = T::json(r);
        T::COLUMNS.iter().map(|c| cell(&j[*c])).collect()
    }));
    columns(&cells, "(no destinations)")
}

/// `cells` (the header row first) as left-aligned columns two spaces apart; `empty`
/// below the header when there is no other row.
pub(super) fn columns<R: AsRef<[String]>>(cells: &[R], empty: &str) -> String {
    let width = cells.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> =
        (0..width).map(|c| cells.iter().map(|row| row.as_ref()[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in cells {
        let line: Vec<String> = row.as_ref().iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if cells.len() <= 1 {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

/// [`parse`] of string literals, for the tables' tests.
#[cfg(test)]
pub(super) fn parse_strs<T: Table>(args: &[&str]) -> Result<(Verb<T::Row>, String), String> {
    parse::<T>(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}
