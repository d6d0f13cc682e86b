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
//! refused, 2 a usage error. The verbs themselves are cli/table.rs, shared with `siprox ctl lb`.

use super::table::{self, int, limited, probe_mode, sip_uri, Table};
use crate::modules::dispatcher::store::{self, DEFAULT_TABLE};
use crate::modules::dispatcher::DsRow;
use serde_json::{json, Value};

/// The `dispatcher` table.
pub(super) struct Dispatcher;

impl Table for Dispatcher {
    type Row = DsRow;
    const NAME: &'static str = "dispatcher";
    const USAGE: &'static str =
        "usage: siprox ctl dispatcher add SETID URI [weight=W] [priority=P] [socket=S] [attrs=A] \
[description=D] [state=N] [probe_mode=N] | rm SETID URI | rm id=ID | list [SETID] | reload  (each: [table=NAME])";
    const DEFAULT_TABLE: &'static str = DEFAULT_TABLE;
    const RELOAD: &'static str = "ds_reload";
    const GROUP_ARG: &'static str = "SETID";
    const GROUP_WORD: &'static str = "set";
    const ADD_ARGS: &'static [&'static str] = &["SETID", "URI"];
    const ADD_OPTIONS: &'static [&'static str] =
        &["weight", "priority", "socket", "attrs", "description", "state", "probe_mode"];
    /// OpenSIPS's column names.
    const COLUMNS: &'static [&'static str] =
        &["id", "setid", "destination", "state", "probe_mode", "weight", "priority", "socket", "attrs", "description"];

    fn row(setid: i64, uri: &str, _extra: &[&str], options: Vec<(String, String)>) -> Result<DsRow, String> {
        let mut row = DsRow::new(setid, &sip_uri(uri, 192)?);
        for (k, v) in options {
            match k.as_str() {
                "weight" => row.weight = weight(&v)?,
                "priority" => row.priority = int("priority", &v)?,
                "socket" => row.socket = Some(limited("socket", &v, 128)?),
                "attrs" => row.attrs = Some(limited("attrs", &v, 128)?),
                "description" => row.description = Some(limited("description", &v, 64)?),
                "state" => row.state = state(&v)?,
                _ => row.probe_mode = probe_mode(&v, &["probe only when probing", "always"])?,
            }
        }
        Ok(row)
    }

    fn group(row: &DsRow) -> i64 {
        row.setid
    }

    fn added(r: &DsRow) -> String {
        format!("set {} {} (weight {}, priority {}, state {})", r.setid, r.destination, r.weight, r.priority, r.state)
    }

    fn json(r: &DsRow) -> Value {
        json!({
            "id": r.id, "setid": r.setid, "destination": r.destination, "socket": r.socket,
            "state": r.state, "probe_mode": r.probe_mode, "weight": r.weight, "priority": r.priority,
            "attrs": r.attrs, "description": r.description,
        })
    }

    table::store_fns!(store, DsRow);
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

#[cfg(test)]
mod tests {
    use super::*;

    use table::Verb;

    fn p(a: &[&str]) -> Result<(Verb<DsRow>, String), String> {
        table::parse_strs::<Dispatcher>(a)
    }

    fn render_table(rows: &[DsRow]) -> String {
        table::render::<Dispatcher>(rows)
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
        assert_eq!(p(&["rm", "1", "sip:a"]).unwrap().0, Verb::RmDestination { group: 1, uri: "sip:a".into() });
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
