//! `siprox ctl dispatcher add|rm|list|reload`: the dispatcher table in the database of
//! `[db] url`, then `ds_reload` on the running proxy (what `opensipsctl dispatcher addgw`
//! and `dispatcher reload` did; docs/database.md).
//!
//! ```text
//! siprox ctl [-c siprox.toml] dispatcher add SETID URI [weight=W] [priority=P] [socket=S]
//!                                           [attrs=A] [description=D] [state=N] [probe_mode=N]
//! siprox ctl [-c siprox.toml] dispatcher rm SETID URI      (or: rm id=ID)
//! siprox ctl [-c siprox.toml] dispatcher list [SETID]
//! siprox ctl [-c siprox.toml] dispatcher reload
//! ```
//!
//! Every verb also takes `table=NAME` (default `dispatcher`). Exit status: 0 done (also when
//! no proxy runs: the change is read at its next start), 1 the database or the proxy
//! refused, 2 a usage error.

use super::ctl::{self, CtlArgs};
use crate::config::Config;
use crate::db::{Db, DbError, DbOptions};
use crate::modules::dispatcher::store::{self, DEFAULT_TABLE};
use crate::modules::dispatcher::DsRow;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: siprox ctl dispatcher add SETID URI [weight=W] [priority=P] [socket=S] [attrs=A] \
[description=D] [state=N] [probe_mode=N] | rm SETID URI | rm id=ID | list [SETID] | reload  (each: [table=NAME])";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Add(DsRow),
    RmDestination { setid: i64, uri: String },
    RmId(i64),
    List(Option<i64>),
    Reload,
}

/// The named options a verb accepts; anything else with `=` is a positional value (a SIP
/// URI with `;transport=tcp`).
const OPTIONS: [&str; 9] =
    ["weight", "priority", "socket", "attrs", "description", "state", "probe_mode", "table", "id"];

fn option(arg: &str) -> Option<(&str, &str)> {
    let (k, v) = arg.split_once('=')?;
    OPTIONS.contains(&k).then_some((k, v))
}

fn int(what: &str, v: &str) -> Result<i64, String> {
    v.trim().parse().map_err(|_| format!("{what} must be a number, not {v:?}"))
}

fn limited(what: &str, v: &str, max: usize) -> Result<String, String> {
    if v.len() > max {
        return Err(format!("{what} is longer than the column's {max} characters"));
    }
    Ok(v.to_string())
}

/// Parses the words after `dispatcher`: the verb and the table.
fn parse(args: &[String]) -> Result<(Verb, String), String> {
    let (verb, rest) = args.split_first().ok_or("which one?")?;
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for a in rest {
        match option(a) {
            Some(kv) => named.push(kv),
            None => positional.push(a.as_str()),
        }
    }
    let mut table = DEFAULT_TABLE.to_string();
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
    let verb = match verb.as_str() {
        "add" => {
            let opts = take(&["weight", "priority", "socket", "attrs", "description", "state", "probe_mode"])?;
            let [setid, uri] = positional[..] else { return Err("add wants SETID URI".into()) };
            let mut row = DsRow::new(int("SETID", setid)?, &destination(uri)?);
            for (k, v) in opts {
                match k.as_str() {
                    "weight" => row.weight = weight(&v)?,
                    "priority" => row.priority = int("priority", &v)?,
                    "socket" => row.socket = Some(limited("socket", &v, 128)?),
                    "attrs" => row.attrs = Some(limited("attrs", &v, 128)?),
                    "description" => row.description = Some(limited("description", &v, 64)?),
                    "state" => row.state = state(&v)?,
                    _ => row.probe_mode = probe_mode(&v)?,
                }
            }
            Verb::Add(row)
        }
        "rm" | "remove" | "del" => {
            let opts = take(&["id"])?;
            match (&opts[..], &positional[..]) {
                ([(_, id)], []) => Verb::RmId(int("id", id)?),
                ([], [setid, uri]) => Verb::RmDestination { setid: int("SETID", setid)?, uri: uri.to_string() },
                _ => return Err("rm wants SETID URI, or id=ID".into()),
            }
        }
        "list" | "ls" | "show" => {
            take(&[])?;
            match positional[..] {
                [] => Verb::List(None),
                [setid] => Verb::List(Some(int("SETID", setid)?)),
                _ => return Err("list wants at most a SETID".into()),
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

fn destination(uri: &str) -> Result<String, String> {
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || uri.len() <= 4 {
        return Err(format!("URI must be a SIP URI (sip:host[:port]), not {uri:?}"));
    }
    limited("URI", uri, 192)
}

/// An integer, or an `fs://` URL (FreeSWITCH-reported weight, spec §6.1).
fn weight(v: &str) -> Result<String, String> {
    let ok = v.parse::<u32>().is_ok() || v.starts_with("fs://");
    if !ok {
        return Err(format!("weight must be a number (or an fs:// URL), not {v:?}"));
    }
    limited("weight", v, 64)
}

fn state(v: &str) -> Result<i64, String> {
    match v {
        "0" | "a" | "active" => Ok(0),
        "1" | "i" | "inactive" => Ok(1),
        "2" | "p" | "probing" => Ok(2),
        _ => Err(format!("state must be 0 (active), 1 (inactive) or 2 (probing), not {v:?}")),
    }
}

fn probe_mode(v: &str) -> Result<i64, String> {
    match v {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("probe_mode must be 0 (probe only when probing) or 1 (always), not {v:?}")),
    }
}

/// Runs `siprox ctl … dispatcher …`.
pub fn main(args: &CtlArgs) -> ExitCode {
    let (verb, table) = match parse(&args.args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("siprox ctl dispatcher: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("siprox ctl: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siprox ctl: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(run(args, &cfg, verb, &table))
}

async fn run(args: &CtlArgs, cfg: &Config, verb: Verb, table: &str) -> ExitCode {
    if verb == Verb::Reload {
        return reload(args).await;
    }
    let opts = DbOptions { create: false, ..DbOptions::from_config(&cfg.db) };
    let db = match Db::open_with(&cfg.db.url, &opts).await {
        Ok(db) => db,
        Err(e) => return db_failed(&e),
    };
    let changed = match verb {
        Verb::Add(row) => match store::insert(&db, table, &row).await {
            Ok(id) => {
                println!(
                    "added id {id}: set {} {} (weight {}, priority {}, state {})",
                    row.setid, row.destination, row.weight, row.priority, row.state
                );
                true
            }
            Err(e) => return db_failed(&e),
        },
        Verb::RmDestination { setid, uri } => match store::delete(&db, table, setid, &uri).await {
            Ok(0) => return nothing_removed(&format!("{uri} in set {setid}")),
            Ok(n) => {
                println!("removed {n} row(s): set {setid} {uri}");
                true
            }
            Err(e) => return db_failed(&e),
        },
        Verb::RmId(id) => match store::delete_id(&db, table, id).await {
            Ok(0) => return nothing_removed(&format!("id {id}")),
            Ok(n) => {
                println!("removed {n} row(s): id {id}");
                true
            }
            Err(e) => return db_failed(&e),
        },
        Verb::List(setid) => match store::load(&db, table).await {
            Ok(rows) => {
                let rows: Vec<DsRow> = rows.into_iter().filter(|r| setid.is_none_or(|s| r.setid == s)).collect();
                if args.json {
                    let v: Vec<Value> = rows.iter().map(row_json).collect();
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    print!("{}", render_table(&rows));
                }
                false
            }
            Err(e) => return db_failed(&e),
        },
        Verb::Reload => unreachable!("handled above"),
    };
    db.close().await;
    if changed {
        reload(args).await
    } else {
        ExitCode::SUCCESS
    }
}

fn nothing_removed(what: &str) -> ExitCode {
    eprintln!("siprox ctl dispatcher: no such destination: {what}");
    ExitCode::from(1)
}

fn db_failed(e: &DbError) -> ExitCode {
    let text = e.to_string();
    eprintln!("siprox ctl dispatcher: {text}");
    let missing = ["no such table", "does not exist", "doesn't exist"].iter().any(|m| text.contains(m));
    if missing {
        eprintln!("  the tables are created by `siprox run` and `siprox migrate -c <config>`");
    }
    ExitCode::from(1)
}

/// Asks the running proxy to reload the table (`ds_reload`). A proxy that does not run, or
/// does not know the command yet, is a note, not a failure: the table is read at start.
async fn reload(args: &CtlArgs) -> ExitCode {
    let (url, token) = match ctl::target(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("note: the table changed, but no proxy was asked to reload it: {e}");
            return ExitCode::SUCCESS;
        }
    };
    let wait = Duration::from_secs(args.timeout.max(1));
    match ctl::call(&url, token.as_deref(), "ds_reload", json!({}), wait).await {
        Err(e) => {
            eprintln!("note: no proxy answered ds_reload ({e}); it reads the table when it starts");
            ExitCode::SUCCESS
        }
        Ok(answer) => match answer.get("error") {
            Some(err) if err.get("code").and_then(Value::as_i64) == Some(-32601) => {
                eprintln!("note: the proxy at {url} has no ds_reload command; it reads the table when it starts");
                ExitCode::SUCCESS
            }
            Some(err) => {
                eprint!("ds_reload failed: ");
                ctl::print_error(err);
                ExitCode::from(1)
            }
            None => {
                println!("ds_reload: {}", answer.get("result").map(short).unwrap_or_default());
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

fn row_json(r: &DsRow) -> Value {
    json!({
        "id": r.id, "setid": r.setid, "destination": r.destination, "socket": r.socket,
        "state": r.state, "probe_mode": r.probe_mode, "weight": r.weight, "priority": r.priority,
        "attrs": r.attrs, "description": r.description,
    })
}

/// The rows as aligned columns, OpenSIPS's column names as headers.
fn render_table(rows: &[DsRow]) -> String {
    let head =
        ["id", "setid", "destination", "state", "probe_mode", "weight", "priority", "socket", "attrs", "description"];
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.id.to_string(),
            r.setid.to_string(),
            r.destination.clone(),
            r.state.to_string(),
            r.probe_mode.to_string(),
            r.weight.clone(),
            r.priority.to_string(),
            opt(&r.socket),
            opt(&r.attrs),
            opt(&r.description),
        ]);
    }
    let widths: Vec<usize> =
        (0..head.len()).map(|c| cells.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no destinations)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<(Verb, String), String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn add_with_options() {
        let (v, t) =
            p(&["add", "2", "sip:10.0.0.1:5060;transport=tcp", "weight=5", "priority=3", "attrs=a=b"]).unwrap();
        assert_eq!(t, "dispatcher");
        let Verb::Add(row) = v else { panic!("{v:?}") };
        assert_eq!(row.destination, "sip:10.0.0.1:5060;transport=tcp");
        assert_eq!((row.setid, row.weight.as_str(), row.priority), (2, "5", 3));
        assert_eq!(row.attrs.as_deref(), Some("a=b"));
        let (_, t) = p(&["add", "1", "sip:x", "table=ds2", "description=gw one"]).unwrap();
        assert_eq!(t, "ds2");
        assert!(p(&["add", "x", "sip:a"]).unwrap_err().contains("SETID"));
        assert!(p(&["add", "1", "10.0.0.1"]).unwrap_err().contains("SIP URI"));
        assert!(p(&["add", "1", "sip:a", "weight=heavy"]).is_err());
        assert!(p(&["add", "1", "sip:a", "state=9"]).is_err());
        assert!(p(&["add", "1", "sip:a", "id=3"]).is_err());
        assert!(p(&["add", "1"]).is_err());
    }

    #[test]
    fn rm_list_reload() {
        assert_eq!(p(&["rm", "1", "sip:a"]).unwrap().0, Verb::RmDestination { setid: 1, uri: "sip:a".into() });
        assert_eq!(p(&["rm", "id=7"]).unwrap().0, Verb::RmId(7));
        assert!(p(&["rm", "id=7", "1", "sip:a"]).is_err());
        assert_eq!(p(&["list"]).unwrap().0, Verb::List(None));
        assert_eq!(p(&["list", "3"]).unwrap().0, Verb::List(Some(3)));
        assert_eq!(p(&["reload"]).unwrap().0, Verb::Reload);
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&[]).is_err());
    }

    #[test]
    fn table_rendering() {
        let mut r = DsRow::new(1, "sip:a");
        r.id = 4;
        let text = render_table(&[r]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("id  setid  destination"), "{text}");
        assert!(lines[1].starts_with("4   1      sip:a"), "{text}");
        assert!(render_table(&[]).contains("(no destinations)"));
    }
}
