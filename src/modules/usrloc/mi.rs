//! usrloc's MI commands (`ul_dump`, `ul_show_contact`, `ul_rm`, `ul_rm_contact`, `ul_add`,
//! `ul_flush`, `ul_sync`, siprox's `ul_refresh`) and its `usrloc:` statistics (docs/mi.md). Parameter names and
//! reply fields are OpenSIPS 3.x's, so opensips-cli and control panels read them unchanged.

use super::persist::UsrlocStore;
use super::store::cflags_text;
use super::{now, Contact, Usrloc, WorkingMode, FL_MEM, Q_UNSPECIFIED};
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The Call-ID and User-Agent of bindings made with `ul_add` (there is no REGISTER).
const MI_CALLID: &str = "siprox-mi-ul_add";
const MI_USER_AGENT: &str = "siprox MI";

/// Registers the commands and statistics of `ul` into `mi`; `store` is the writer
/// (`UsrlocStore::memory_only()` with no database).
pub fn install(mi: &Arc<Mi>, ul: Arc<Usrloc>, store: UsrlocStore) {
    register_views(mi, &ul);
    register_edits(mi, &ul);
    register_db(mi, store);
    register_statistics(mi, &ul);
}

/// q in thousandths as OpenSIPS prints it (`"0.5"`, `"1"`); unspecified: `""`.
fn q_text(q: i32) -> String {
    if q == Q_UNSPECIFIED {
        return String::new();
    }
    let digits = format!("{:03}", q.clamp(0, 1000) % 1000);
    match (q >= 1000, digits.trim_end_matches('0')) {
        (true, _) => "1".into(),
        (false, "") => "0".into(),
        (false, frac) => format!("0.{frac}"),
    }
}

/// `"0.5"` → 500; `None` for text that is no q in 0..1.
fn q_parse(text: &str) -> Option<i32> {
    let v: f64 = text.trim().parse().ok()?;
    (0.0..=1.0).contains(&v).then(|| (v * 1000.0).round() as i32)
}

/// One binding as `ul_dump` and `ul_show_contact` show it; optional fields only when set.
pub fn contact_json(ul: &Usrloc, c: &Contact, now: i64) -> Value {
    let expires = if c.expires == 0 {
        json!("permanent")
    } else if c.is_live(now) {
        json!(c.remaining(now))
    } else {
        json!("expired")
    };
    let state = if ul.mode() == WorkingMode::NoDb || c.flags & FL_MEM != 0 { "CS_NEW" } else { "CS_SYNC" };
    let mut m = Map::new();
    m.insert("Contact".into(), json!(c.uri));
    m.insert("ContactID".into(), json!(c.id.to_string()));
    m.insert("Expires".into(), expires);
    m.insert("Q".into(), json!(q_text(c.q)));
    m.insert("Callid".into(), json!(c.callid));
    m.insert("Cseq".into(), json!(c.cseq));
    if !c.user_agent.is_empty() {
        m.insert("User-agent".into(), json!(c.user_agent));
    }
    if let Some(r) = &c.received {
        m.insert("Received".into(), json!(r));
    }
    if let Some(p) = &c.path {
        m.insert("Path".into(), json!(p));
    }
    m.insert("State".into(), json!(state));
    m.insert("Flags".into(), json!(c.flags));
    m.insert("Cflags".into(), json!(cflags_text(c.cflags).unwrap_or_default()));
    if let Some(s) = &c.socket {
        m.insert("Socket".into(), json!(s));
    }
    if let Some(methods) = c.methods {
        m.insert("Methods".into(), json!(methods));
    }
    if let Some(i) = &c.instance {
        m.insert("SIP_instance".into(), json!(i));
    }
    if let Some(a) = &c.attr {
        m.insert("Attr".into(), json!(a));
    }
    Value::Object(m)
}

/// The AoR as the table keys it: without its domain when `use_domain` is off (OpenSIPS
/// takes `user@domain` there too).
fn fix_aor(ul: &Usrloc, aor: &str) -> Result<String, MiError> {
    let aor = aor.trim();
    let aor = if ul.use_domain { aor } else { aor.split_once('@').map_or(aor, |(u, _)| u) };
    if aor.is_empty() {
        return Err(MiError::invalid_params("empty AoR"));
    }
    Ok(aor.to_string())
}

/// A table the script (or the database) has named, else 404.
fn known_table(ul: &Usrloc, name: &str) -> Result<(), MiError> {
    if ul.table_names().iter().any(|t| t == name) {
        Ok(())
    } else {
        Err(MiError::not_found(format!("Table not found: {name}")))
    }
}

/// The bindings of `aor` in `table` (as given, then lower-cased: the registrar lower-cases
/// AoRs unless `case_sensitive`), and the key they were found under.
fn find(ul: &Usrloc, table: &str, aor: &str) -> Result<(String, Vec<Contact>), MiError> {
    known_table(ul, table)?;
    let aor = fix_aor(ul, aor)?;
    let now = now();
    for key in [aor.clone(), aor.to_ascii_lowercase()] {
        let cs = ul.lookup(table, &key, now);
        if !cs.is_empty() {
            return Ok((key, cs));
        }
    }
    Err(MiError::not_found("AOR not found"))
}

fn register_views(mi: &Arc<Mi>, ul: &Arc<Usrloc>) {
    let u = ul.clone();
    mi.commands.register(Command::immediate("ul_dump", &[&[], &["brief"]], move |p: Params| {
        let brief = p.str("brief")?.is_some_and(|b| !matches!(b.trim(), "" | "0"));
        let now = now();
        let domains: Vec<Value> = u
            .table_names()
            .into_iter()
            .map(|table| {
                let aors: Vec<Value> = u
                    .dump(&table)
                    .into_iter()
                    .map(|(aor, cs)| {
                        let contacts: Vec<Value> = cs
                            .iter()
                            .map(|c| {
                                if brief {
                                    json!({ "Contact": c.uri, "Expires": c.remaining(now) })
                                } else {
                                    contact_json(&u, c, now)
                                }
                            })
                            .collect();
                        json!({ "AOR": aor, "Contacts": contacts })
                    })
                    .collect();
                json!({ "name": table, "AORs": aors })
            })
            .collect();
        Ok(json!({ "Domains": domains }))
    }));
    let u = ul.clone();
    mi.commands.register(Command::immediate("ul_show_contact", &[&["table_name", "aor"]], move |p: Params| {
        let (table, aor) = (p.required_str("table_name")?, p.required_str("aor")?);
        let (_, cs) = find(&u, &table, &aor)?;
        let now = now();
        Ok(json!({ "Contacts": cs.iter().map(|c| contact_json(&u, c, now)).collect::<Vec<_>>() }))
    }));
}

fn register_edits(mi: &Arc<Mi>, ul: &Arc<Usrloc>) {
    let u = ul.clone();
    mi.commands.register(Command::immediate("ul_rm", &[&["table_name", "aor"]], move |p: Params| {
        let (table, aor) = (p.required_str("table_name")?, p.required_str("aor")?);
        let (key, _) = find(&u, &table, &aor)?;
        u.remove_aor(&table, &key);
        Ok(json!("OK"))
    }));
    let u = ul.clone();
    mi.commands.register(Command::immediate(
        "ul_rm_contact",
        &[&["table_name", "aor", "contact"]],
        move |p: Params| {
            let (table, aor, contact) =
                (p.required_str("table_name")?, p.required_str("aor")?, p.required_str("contact")?);
            let (key, _) = find(&u, &table, &aor)?;
            let contact = contact.trim().to_string();
            match u.update(&table, &key, |r| r.remove_where(|c| c.uri == contact)) {
                0 => Err(MiError::not_found("Contact not found")),
                _ => Ok(json!("OK")),
            }
        },
    ));
    let u = ul.clone();
    mi.commands.register(Command::immediate(
        "ul_add",
        &[
            &["table_name", "aor", "contact", "expires", "q"],
            &["table_name", "aor", "contact", "expires", "q", "path", "flags", "cflags", "methods"],
            &["table_name", "aor", "contact", "expires", "q", "unused", "flags", "cflags", "methods"],
        ],
        move |p: Params| ul_add(&u, &p),
    ));
}

/// `ul_add`: adds the binding, or refreshes the AoR's binding of that Contact URI.
/// `expires` is in seconds from now (0: permanent, as OpenSIPS keeps MI-added contacts).
fn ul_add(ul: &Usrloc, p: &Params) -> Result<Value, MiError> {
    let table = p.required_str("table_name")?;
    let aor = fix_aor(ul, &p.required_str("aor")?)?;
    let uri = p.required_str("contact")?.trim().to_string();
    if uri.is_empty() {
        return Err(MiError::invalid_params("empty contact"));
    }
    let expires = p.int("expires")?.ok_or_else(|| MiError::invalid_params("missing parameter \"expires\""))?;
    if expires < 0 {
        return Err(MiError::invalid_params("expires: want seconds, 0 for a permanent contact"));
    }
    let q_raw = p.required_str("q")?;
    let q = q_parse(&q_raw).ok_or_else(|| MiError::invalid_params(format!("q: want 0 to 1, got {q_raw:?}")))?;
    let path = p.str("path")?.map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "0");
    let flags = p.int("flags")?.unwrap_or(0);
    let flags = u32::try_from(flags).map_err(|_| MiError::invalid_params(format!("flags: out of range: {flags}")))?;
    let cflags = match p.str("cflags")? {
        // A bit mask, or flag names as the `cflags` column holds them.
        Some(s) => s.trim().parse::<u64>().unwrap_or_else(|_| super::store::cflags_bits(Some(&s))),
        None => 0,
    };
    let methods = match p.int("methods")? {
        Some(m) => Some(u32::try_from(m).map_err(|_| MiError::invalid_params(format!("methods: out of range: {m}")))?),
        None => None,
    };
    let now = now();
    ul.update(&table, &aor, |r| {
        let old = r.contacts().iter().find(|c| c.uri == uri).cloned();
        let c = Contact {
            id: old.as_ref().map_or_else(Contact::new_id, |o| o.id),
            aor: aor.clone(),
            uri: uri.clone(),
            received: old.as_ref().and_then(|o| o.received.clone()),
            path,
            expires: if expires == 0 { 0 } else { now.saturating_add(expires) },
            q,
            callid: MI_CALLID.into(),
            cseq: old.as_ref().map_or(1, |o| o.cseq.saturating_add(1)),
            last_modified: now,
            flags,
            cflags,
            user_agent: MI_USER_AGENT.into(),
            socket: old.as_ref().and_then(|o| o.socket.clone()),
            methods,
            instance: None,
            reg_id: 0,
            attr: None,
            pings_lost: 0,
        };
        r.put(c);
    });
    Ok(json!("OK"))
}

fn register_db(mi: &Arc<Mi>, store: UsrlocStore) {
    let s = store.clone();
    mi.commands.register(Command::new("ul_flush", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.flush().await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("ul_flush: not written: {e}"))),
            }
        }
    }));
    let s = store.clone();
    mi.commands.register(Command::new("ul_sync", &[&[], &["table_name"]], move |p: Params| {
        let s = s.clone();
        async move {
            let table = p.str("table_name")?.unwrap_or_else(|| super::store::DEFAULT_TABLE.to_string());
            if !s.mode().uses_db() {
                return Err(MiError::new(400, "ul_sync: usrloc keeps no database (single-instance-no-db)"));
            }
            if s.mode() == WorkingMode::SqlOnly {
                return Err(MiError::new(400, "ul_sync: not in sql-only (the table is the shared copy)"));
            }
            match s.sync(&table).await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("ul_sync: the {table} table was not written: {e}"))),
            }
        }
    }));
    // siprox's own: the reverse of ul_sync, for a standby taking over (docs/usrloc.md).
    let s = store;
    mi.commands.register(Command::new("ul_refresh", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.refresh().await {
                Ok(n) => Ok(json!({ "Applied": n })),
                Err(e) => Err(MiError::internal(format!("ul_refresh: the table was not read: {e}"))),
            }
        }
    }));
}

fn register_statistics(mi: &Arc<Mi>, ul: &Arc<Usrloc>) {
    let st = &mi.statistics;
    let u = ul.clone();
    st.gauge("usrloc", "registered_users", move || u.counts().0 as u64);
    let u = ul.clone();
    st.gauge("usrloc", "registered_contacts", move || u.counts().1 as u64);
    let (r, w) = (ul.clone(), ul.clone());
    st.counter(
        "usrloc",
        "expires",
        move || r.stats.expired.load(Ordering::Relaxed),
        move || w.stats.expired.store(0, Ordering::Relaxed),
    );
    // OpenSIPS's per-domain statistics, for the table every script uses.
    let u = ul.clone();
    st.gauge("usrloc", "location-users", move || u.table(super::store::DEFAULT_TABLE).aors() as u64);
    let u = ul.clone();
    st.gauge("usrloc", "location-contacts", move || u.table(super::store::DEFAULT_TABLE).contacts() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UsrlocConfig;

    #[test]
    fn q_both_ways() {
        assert_eq!(q_text(1000), "1");
        assert_eq!(q_text(500), "0.5");
        assert_eq!(q_text(0), "0");
        assert_eq!(q_text(Q_UNSPECIFIED), "");
        assert_eq!(q_parse("0.5"), Some(500));
        assert_eq!(q_parse("1"), Some(1000));
        assert_eq!(q_parse("2"), None);
        assert_eq!(q_parse("x"), None);
    }

    #[tokio::test]
    async fn add_show_remove() {
        let mi = Arc::new(Mi::new());
        let ul = Arc::new(Usrloc::new(&UsrlocConfig::default()));
        install(&mi, ul.clone(), UsrlocStore::memory_only());
        let call = |m: &'static str, v: Value| {
            let mi = mi.clone();
            async move { mi.commands.call(m, Some(v)).await }
        };
        assert_eq!(call("ul_show_contact", json!(["location", "alice"])).await.unwrap_err().code, 404);
        let ok = call("ul_add", json!(["location", "alice@example.com", "sip:alice@10.0.0.1", "3600", "0.5"])).await;
        assert_eq!(ok, Ok(json!("OK")));
        let shown = call("ul_show_contact", json!({"table_name": "location", "aor": "alice"})).await.expect("shown");
        let c = &shown["Contacts"][0];
        assert_eq!(c["Contact"], "sip:alice@10.0.0.1");
        assert_eq!(c["Q"], "0.5");
        assert_eq!(c["State"], "CS_NEW");
        let dump = call("ul_dump", json!([])).await.expect("dump");
        assert_eq!(dump["Domains"][0]["AORs"][0]["AOR"], "alice");
        assert_eq!(call("ul_rm_contact", json!(["location", "alice", "sip:x@y"])).await.unwrap_err().code, 404);
        assert_eq!(call("ul_rm_contact", json!(["location", "alice", "sip:alice@10.0.0.1"])).await, Ok(json!("OK")));
        assert!(ul.lookup("location", "alice", now()).is_empty());
        call("ul_add", json!(["location", "bob", "sip:bob@10.0.0.2", "0", "1"])).await.expect("permanent");
        assert_eq!(call("ul_rm", json!(["location", "bob"])).await, Ok(json!("OK")));
        assert_eq!(call("ul_flush", json!([])).await, Ok(json!("OK")));
        assert_eq!(call("ul_sync", json!([])).await.unwrap_err().code, 400);
        assert_eq!(call("ul_refresh", json!([])).await, Ok(json!({ "Applied": 0 })), "no database: nothing to read");
        let stats = mi.statistics.select(&["usrloc:".to_string()]).expect("stats");
        assert_eq!(stats["usrloc:registered_users"], 0);
    }
}
