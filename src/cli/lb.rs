//! `siprox ctl lb add|rm|list|reload`: the load_balancer table in the database of
//! `[db] url`, then `lb_reload` on the running proxy (docs/load_balancer.md,
//! docs/database.md).
//!
//! ```text
//! siprox ctl [-c siprox.toml] lb add GROUP URI RESOURCES [probe_mode=N] [attrs=A] [description=D]
//! siprox ctl [-c siprox.toml] lb rm GROUP URI      (or: rm id=ID)
//! siprox ctl [-c siprox.toml] lb list [GROUP]
//! siprox ctl [-c siprox.toml] lb reload
//! ```
//!
//! Every verb also takes `table=NAME` (default `load_balancer`). Exit status as
//! `siprox ctl dispatcher` (cli/table.rs does both): 0 done, 1 the database or the proxy
//! refused, 2 a usage error.

use super::table::{self, limited, probe_mode, sip_uri, Table};
use crate::message::Uri;
use crate::modules::load_balancer::store::{self, DEFAULT_TABLE};
use crate::modules::load_balancer::{parse_resources, LbRow};
use serde_json::{json, Value};

/// The `load_balancer` table.
pub(super) struct LoadBalancer;

impl Table for LoadBalancer {
    type Row = LbRow;
    const NAME: &'static str = "lb";
    const USAGE: &'static str =
        "usage: siprox ctl lb add GROUP URI RESOURCES [probe_mode=N] [attrs=A] [description=D] \
| rm GROUP URI | rm id=ID | list [GROUP] | reload  (each: [table=NAME]; RESOURCES: name=capacity[;name=capacity…])";
    const DEFAULT_TABLE: &'static str = DEFAULT_TABLE;
    const RELOAD: &'static str = "lb_reload";
    const GROUP_ARG: &'static str = "GROUP";
    const GROUP_WORD: &'static str = "group";
    const ADD_ARGS: &'static [&'static str] = &["GROUP", "URI", "RESOURCES"];
    const ADD_OPTIONS: &'static [&'static str] = &["probe_mode", "attrs", "description"];
    /// OpenSIPS's column names.
    const COLUMNS: &'static [&'static str] =
        &["id", "group_id", "dst_uri", "resources", "probe_mode", "attrs", "description"];

    fn row(group: i64, uri: &str, extra: &[&str], options: Vec<(String, String)>) -> Result<LbRow, String> {
        let uri = sip_uri(uri, 128)?;
        if Uri::parse(&uri).filter(|u| u.is_sip()).is_none() {
            return Err(format!("URI {uri:?} does not parse as a SIP URI"));
        }
        let mut row = LbRow::new(group, &uri, &resources(extra.first().copied().unwrap_or_default())?);
        for (k, v) in options {
            match k.as_str() {
                "probe_mode" => {
                    row.probe_mode = probe_mode(&v, &["never probe", "probe only while disabled", "always"])?
                }
                "attrs" => row.attrs = Some(limited("attrs", &v, 255)?),
                _ => row.description = Some(limited("description", &v, 128)?),
            }
        }
        Ok(row)
    }

    fn group(row: &LbRow) -> i64 {
        row.group_id
    }

    fn added(r: &LbRow) -> String {
        format!("group {} {} ({}, probe_mode {})", r.group_id, r.dst_uri, r.resources, r.probe_mode)
    }

    fn json(r: &LbRow) -> Value {
        json!({
            "id": r.id, "group_id": r.group_id, "dst_uri": r.dst_uri, "resources": r.resources,
            "probe_mode": r.probe_mode, "attrs": r.attrs, "description": r.description,
        })
    }

    table::store_fns!(store, LbRow);
}

/// `name=capacity` pairs, as the proxy loads them (cli never writes a row it would leave
/// out), every capacity above 0.
fn resources(v: &str) -> Result<String, String> {
    let pairs = parse_resources(v).map_err(|e| format!("RESOURCES {v:?}: {e}"))?;
    if let Some((name, max)) = pairs.iter().find(|(_, max)| *max <= 0) {
        return Err(format!("RESOURCES {v:?}: capacity of {name:?} must be above 0, not {max}"));
    }
    limited("RESOURCES", v, 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    use table::Verb;

    fn p(a: &[&str]) -> Result<(Verb<LbRow>, String), String> {
        table::parse_strs::<LoadBalancer>(a)
    }

    #[test]
    fn add_with_options() {
        let (v, t) =
            p(&["add", "2", "sip:10.0.0.1:5060;transport=tcp", "pstn=32;transc=10", "probe_mode=2", "attrs=a=b"])
                .unwrap();
        assert_eq!(t, "load_balancer");
        let Verb::Add(row) = v else { panic!("{v:?}") };
        let mut want = LbRow::new(2, "sip:10.0.0.1:5060;transport=tcp", "pstn=32;transc=10");
        want.probe_mode = 2;
        want.attrs = Some("a=b".into());
        assert_eq!(row, want);
        let (v, t) = p(&["add", "1", "sip:x", "pstn=1", "table=lb2", "description=gw one"]).unwrap();
        assert_eq!(t, "lb2");
        let Verb::Add(row) = v else { panic!("{v:?}") };
        assert_eq!((row.description.as_deref(), row.probe_mode), (Some("gw one"), 0));
    }

    #[test]
    fn bad_add() {
        let err = |a: &[&str]| p(a).unwrap_err();
        assert!(err(&["add", "x", "sip:a", "pstn=1"]).contains("GROUP"));
        assert!(err(&["add", "1", "10.0.0.1", "pstn=1"]).contains("SIP URI"));
        assert!(err(&["add", "1", "sip:[::1", "pstn=1"]).contains("SIP URI"));
        assert!(err(&["add", "1", "sip:a"]).contains("GROUP URI RESOURCES"));
        assert!(err(&["add", "1", "sip:a", "pstn=1", "extra"]).contains("GROUP URI RESOURCES"));
        for bad in ["pstn", "pstn=x", "pstn=0", "pstn=-3", "pstn=1;pstn=2", "a b=1", ";", "pstn=fs://x"] {
            assert!(err(&["add", "1", "sip:a", bad]).contains("RESOURCES"), "{bad}");
        }
        assert!(err(&["add", "1", "sip:a", "pstn=1", "probe_mode=3"]).contains("probe_mode"));
        assert!(err(&["add", "1", "sip:a", "pstn=1", "weight=3"]).contains("RESOURCES"), "not an option here");
        assert!(err(&["add", "1", "sip:a", "pstn=1", "id=3"]).contains("no id="));
        let long = format!("description={}", "d".repeat(129));
        assert!(err(&["add", "1", "sip:a", "pstn=1", &long]).contains("128"));
    }

    #[test]
    fn rm_list_reload() {
        assert_eq!(p(&["rm", "1", "sip:a"]).unwrap().0, Verb::RmDestination { group: 1, uri: "sip:a".into() });
        assert_eq!(p(&["rm", "id=7", "table=lb2"]).unwrap(), (Verb::RmId(7), "lb2".into()));
        assert!(p(&["rm", "id=7", "1", "sip:a"]).unwrap_err().contains("GROUP URI, or id=ID"));
        assert_eq!(p(&["list"]).unwrap().0, Verb::List(None));
        assert_eq!(p(&["list", "3"]).unwrap().0, Verb::List(Some(3)));
        assert!(p(&["list", "3", "4"]).is_err());
        assert_eq!(p(&["reload"]).unwrap().0, Verb::Reload);
        assert!(p(&["reload", "now"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
    }

    #[test]
    fn table_rendering() {
        let mut r = LbRow::new(1, "sip:a", "pstn=3");
        r.id = 4;
        let text = table::render::<LoadBalancer>(&[r.clone()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id  group_id  dst_uri  resources  probe_mode  attrs  description", "{text}");
        assert_eq!(lines[1], "4   1         sip:a    pstn=3     0           -      -", "{text}");
        assert!(table::render::<LoadBalancer>(&[]).contains("(no destinations)"));
        let j = LoadBalancer::json(&r);
        assert_eq!(
            (j["group_id"].as_i64(), j["resources"].as_str(), &j["attrs"]),
            (Some(1), Some("pstn=3"), &Value::Null)
        );
    }
}
