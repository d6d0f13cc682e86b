//! The dialog module's MI commands (`dlg_list`, `dlg_end_dlg`, `profile_get_size`,
//! `profile_list_dlgs`, `list_all_profiles`, `dlg_db_sync`, `dlg_restore_db`, siprox's
//! `dlg_resync`) and its
//! `dialog:` statistics (docs/mi.md).

use super::persist::DialogStore;
use crate::dialog::{flags, unix_now, Dialog, Dialogs};
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Registers the commands and statistics of `dialogs` into `mi`.
pub fn install(mi: &Arc<Mi>, dialogs: Arc<Dialogs>) {
    register_commands(mi, &dialogs);
    register_statistics(mi, &dialogs);
}

/// One dialog as `dlg_list` shows it (OpenSIPS's field names).
pub fn dialog_json(d: &Dialog) -> Value {
    let data = d.data().clone();
    let now = unix_now();
    let values: Map<String, Value> = data.vars.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let profiles: Vec<Value> = data.profiles.iter().map(|(n, v)| json!({ n.clone(): v })).collect();
    json!({
        "ID": d.did(),
        "db_id": d.id.to_string(),
        "state": data.state as i64,
        "user_flags": data.script_flags,
        "dlg_flags": flags::format(data.flags),
        "timestart": data.start_time,
        "timeout": if data.deadline > 0 { (data.deadline - now).max(0) } else { 0 },
        "callid": d.callid,
        "from_uri": d.from_uri,
        "to_uri": d.to_uri,
        "caller_tag": d.from_tag,
        "caller_contact": data.caller_contact,
        "caller_cseq": data.caller_cseq.to_string(),
        "caller_route_set": data.caller_route_set,
        "caller_bind_addr": data.caller_sock,
        "callee_tag": data.to_tag,
        "callee_contact": data.callee_contact,
        "callee_cseq": data.callee_cseq.to_string(),
        "callee_route_set": data.callee_route_set,
        "callee_bind_addr": data.callee_sock,
        "values": values,
        "profiles": profiles,
    })
}

/// A dialog named by its `ID` (hex `did`, as `dlg_list` shows it) or its decimal `db_id`.
fn find(dialogs: &Dialogs, id: &str) -> Option<Arc<Dialog>> {
    let id = id.trim();
    dialogs.by_did(id).or_else(|| id.parse::<u64>().ok().and_then(|n| dialogs.get(n)))
}

fn register_commands(mi: &Arc<Mi>, dialogs: &Arc<Dialogs>) {
    let t = dialogs.clone();
    mi.commands.register(Command::immediate(
        "dlg_list",
        &[&[], &["callid"], &["callid", "from_tag"]],
        move |p: Params| {
            let callid = p.str("callid")?;
            let from_tag = p.str("from_tag")?;
            let mut list = match &callid {
                Some(c) => t.by_callid(c),
                None => t.list(),
            };
            if let Some(ft) = &from_tag {
                list.retain(|d| &d.from_tag == ft);
            }
            list.sort_by_key(|d| (d.data().start_time, d.id));
            Ok(json!({ "Dialogs": list.iter().map(|d| dialog_json(d)).collect::<Vec<_>>() }))
        },
    ));
    let t = dialogs.clone();
    mi.commands.register(Command::immediate(
        "dlg_end_dlg",
        &[&["dialog_id"], &["dialog_id", "extra_hdrs"]],
        move |p: Params| {
            let id = p.required_str("dialog_id")?;
            let dlg = find(&t, &id).ok_or_else(|| MiError::not_found("Requested Dialog not found"))?;
            if !dlg.state().is_confirmed() {
                return Err(MiError::new(404, "Dialog is not confirmed"));
            }
            t.terminate(&dlg, "mi");
            Ok(json!("OK"))
        },
    ));
    let t = dialogs.clone();
    mi.commands.register(Command::immediate(
        "profile_get_size",
        &[&["profile"], &["profile", "value"]],
        move |p: Params| {
            let name = p.required_str("profile")?;
            let value = p.str("value")?;
            known(&t, &name)?;
            let count = t.profiles.size(&name, value.as_deref());
            Ok(json!({ "Profile": { "name": name, "value": value.unwrap_or_default(), "count": count } }))
        },
    ));
    let t = dialogs.clone();
    mi.commands.register(Command::immediate(
        "profile_list_dlgs",
        &[&["profile"], &["profile", "value"]],
        move |p: Params| {
            let name = p.required_str("profile")?;
            let value = p.str("value")?;
            known(&t, &name)?;
            let mut list: Vec<Arc<Dialog>> =
                t.list().into_iter().filter(|d| t.in_profile(d, &name, value.as_deref())).collect();
            list.sort_by_key(|d| d.id);
            Ok(json!({ "Dialogs": list.iter().map(|d| dialog_json(d)).collect::<Vec<_>>() }))
        },
    ));
    let t = dialogs.clone();
    mi.commands.register(Command::immediate("list_all_profiles", &[&[]], move |_p: Params| {
        let all: Vec<Value> = t
            .profiles
            .names()
            .into_iter()
            .map(|(name, with_value)| {
                json!({ "name": name, "has_value": with_value, "count": t.profiles.size(&name, None) })
            })
            .collect();
        Ok(json!({ "Profiles": all }))
    }));
}

fn known(t: &Dialogs, name: &str) -> Result<(), MiError> {
    match t.profiles.kind(name) {
        Some(_) => Ok(()),
        None => Err(MiError::not_found(format!("Profile not found: {name}"))),
    }
}

/// Which counter of the dialog statistics a statistic reads.
type Pick = fn(&Dialogs) -> &std::sync::atomic::AtomicU64;

fn register_statistics(mi: &Arc<Mi>, dialogs: &Arc<Dialogs>) {
    let st = &mi.statistics;
    let t = dialogs.clone();
    st.gauge("dialog", "active_dialogs", move || t.stats.active.load(Ordering::Relaxed).max(0) as u64);
    let t = dialogs.clone();
    st.gauge("dialog", "early_dialogs", move || t.stats.early.load(Ordering::Relaxed).max(0) as u64);
    let counters: [(&str, Pick); 3] = [
        ("processed_dialogs", |d| &d.stats.processed),
        ("expired_dialogs", |d| &d.stats.expired),
        ("failed_dialogs", |d| &d.stats.failed),
    ];
    for (name, pick) in counters {
        let (r, w) = (dialogs.clone(), dialogs.clone());
        st.counter(
            "dialog",
            name,
            move || pick(&r).load(Ordering::Relaxed),
            move || pick(&w).store(0, Ordering::Relaxed),
        );
    }
}

/// Registers the commands that move dialogs between memory and the `dialog` table:
/// `dlg_db_sync` (the table := the confirmed dialogs in memory), `dlg_restore_db`
/// (dialogs of the table not in memory are loaded) and `dlg_resync` (also forgets the
/// dialogs whose row another node deleted). They work in every `db_mode`: with 0 they are
/// the only way the table is written or read.
pub fn install_db(mi: &Arc<Mi>, store: DialogStore) {
    let s = store.clone();
    mi.commands.register(Command::new("dlg_db_sync", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.sync().await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("dlg_db_sync: the {} table was not written: {e}", s.table()))),
            }
        }
    }));
    let s = store.clone();
    mi.commands.register(Command::new("dlg_restore_db", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.restore().await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("dlg_restore_db: the {} table was not read: {e}", s.table()))),
            }
        }
    }));
    let s = store;
    mi.commands.register(Command::new("dlg_resync", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.resync().await {
                Ok((restored, forgotten)) => Ok(json!({ "Restored": restored, "Forgotten": forgotten })),
                Err(e) => Err(MiError::internal(format!("dlg_resync: the {} table was not read: {e}", s.table()))),
            }
        }
    }));
}
