//! The dispatcher's MI commands (`ds_list`, `ds_reload`, `ds_set_state`), its `dispatcher:`
//! statistics and its `siprox_dispatcher_*` metrics (docs/mi.md).

use super::{DestInfo, Dispatcher, DsError, DsLoader, DsState};
use crate::mi::metrics::{Exposition, Kind};
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Registers the commands, statistics and metric families of `ds` into `mi`; `loader`
/// reads the table for `ds_reload`.
pub fn install(mi: &Arc<Mi>, ds: Arc<Dispatcher>, loader: DsLoader) {
    register_commands(mi, &ds, loader);
    register_statistics(mi, &ds);
    let d = ds.clone();
    mi.metrics.register(move |e| collect(&d, e));
}

fn partition_ok(p: Option<String>) -> Result<(), MiError> {
    match p.as_deref().map(str::trim) {
        None | Some("") | Some("default") => Ok(()),
        Some(other) => Err(MiError::not_found(format!("partition {other:?} not found (only \"default\")"))),
    }
}

/// `y`/`yes`/`1`/`true` or `n`/`no`/`0`/`false`.
fn yes_no(name: &str, v: Option<String>, default: bool) -> Result<bool, MiError> {
    match v.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) => match s.as_str() {
            "" => Ok(default),
            "y" | "yes" | "1" | "true" | "on" | "full" => Ok(true),
            "n" | "no" | "0" | "false" | "off" => Ok(false),
            _ => Err(MiError::invalid_params(format!("{name}: expected y or n, got {s:?}"))),
        },
    }
}

fn register_commands(mi: &Arc<Mi>, ds: &Arc<Dispatcher>, loader: DsLoader) {
    let d = ds.clone();
    mi.commands.register(Command::immediate("ds_list", &[&[], &["full"]], move |p: Params| {
        let full = yes_no("full", p.str("full")?, false)?;
        Ok(list(&d, full))
    }));
    let d = ds.clone();
    mi.commands.register(Command::new(
        "ds_reload",
        &[&[], &["partition"], &["inherit_state"], &["partition", "inherit_state"]],
        move |p: Params| {
            let (d, loader) = (d.clone(), loader.clone());
            async move {
                partition_ok(p.str("partition")?)?;
                let inherit = yes_no("inherit_state", p.str("inherit_state")?, true)?;
                match d.reload(&loader, inherit).await {
                    Ok(_) => Ok(json!("OK")),
                    Err(e) => Err(MiError::internal(format!("ds_reload failed, the loaded sets stay in use: {e}"))),
                }
            }
        },
    ));
    let d = ds.clone();
    mi.commands.register(Command::immediate(
        "ds_set_state",
        &[&["state", "group", "address"], &["state", "group", "address", "partition"]],
        move |p: Params| {
            let state = p.required_str("state")?;
            let state = DsState::from_flag(&state)
                .ok_or_else(|| MiError::invalid_params(format!("state: expected a, i or p, got {state:?}")))?;
            let group = p.required_str("group")?;
            // `partition:setid` (OpenSIPS) or a separate `partition` parameter.
            let (part, setid) = match group.rsplit_once(':') {
                Some((part, id)) => (Some(part.to_string()), id),
                None => (p.str("partition")?, group.as_str()),
            };
            partition_ok(part)?;
            let setid: i64 = setid
                .trim()
                .parse()
                .map_err(|_| MiError::invalid_params(format!("group: expected a set id, got {group:?}")))?;
            let address = p.required_str("address")?;
            match d.set_state(setid, &address, state) {
                Ok(_) => Ok(json!("OK")),
                Err(e @ (DsError::NoSet(_) | DsError::NoDestination(..))) => Err(MiError::not_found(e.to_string())),
            }
        },
    ));
}

/// `ds_list` in OpenSIPS 3.x's shape; `full` adds weight, priority and description.
/// siprox adds the last probe result (`last_probe_code`, `last_probe`) once a destination
/// was probed, and with `full` its `probe_mode` and `failure_count`.
pub fn list(ds: &Dispatcher, full: bool) -> Value {
    let mut sets: Vec<(i64, Vec<Value>)> = Vec::new();
    for d in ds.destinations() {
        if sets.last().is_none_or(|(id, _)| *id != d.setid) {
            sets.push((d.setid, Vec::new()));
        }
        if let Some((_, dests)) = sets.last_mut() {
            dests.push(dest_json(&d, full));
        }
    }
    let mut part = Map::new();
    part.insert("name".into(), json!("default"));
    if !sets.is_empty() {
        let sets: Vec<Value> = sets.into_iter().map(|(id, dests)| json!({ "id": id, "Destinations": dests })).collect();
        part.insert("SETS".into(), Value::Array(sets));
    }
    json!({ "PARTITIONS": [Value::Object(part)] })
}

fn dest_json(d: &DestInfo, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("URI".into(), json!(d.uri));
    o.insert("state".into(), json!(d.state.as_str()));
    o.insert("first_hit_counter".into(), json!(d.first_hit_counter));
    if let Some(s) = &d.socket {
        o.insert("socket".into(), json!(s));
    }
    if let Some(a) = &d.attrs {
        o.insert("attr".into(), json!(a));
    }
    if full {
        o.insert("weight".into(), json!(d.weight));
        o.insert("priority".into(), json!(d.priority));
        if let Some(desc) = &d.description {
            o.insert("description".into(), json!(desc));
        }
        o.insert("probe_mode".into(), json!(d.probe_mode));
        o.insert("failure_count".into(), json!(d.failures));
    }
    if let Some(code) = d.last_probe_code {
        o.insert("last_probe_code".into(), json!(code));
    }
    if let Some(at) = d.last_probe {
        o.insert("last_probe".into(), json!(humantime::format_rfc3339_seconds(at).to_string()));
    }
    Value::Object(o)
}

// ---------------------------------------------------------------- statistics

type PickAtomic = fn(&Dispatcher) -> &AtomicU64;

const COUNTERS: [(&str, PickAtomic); 11] = [
    ("probes_sent", |d| &d.stats.probes_sent),
    ("probes_ok", |d| &d.stats.probe_ok),
    ("probes_failed", |d| &d.stats.probe_failed),
    ("probes_not_sent", |d| &d.stats.probe_not_sent),
    ("became_active", |d| &d.stats.to_active),
    ("became_inactive", |d| &d.stats.to_inactive),
    ("became_probing", |d| &d.stats.to_probing),
    ("reloads", |d| &d.stats.reloads),
    ("reload_failures", |d| &d.stats.reload_failures),
    ("selections", |d| &d.stats.selected),
    ("selection_failures", |d| &d.stats.select_failed),
];

fn by_state(ds: &Dispatcher) -> [u64; 3] {
    let mut n = [0u64; 3];
    for d in ds.destinations() {
        n[d.state as usize] += 1;
    }
    n
}

fn register_statistics(mi: &Arc<Mi>, ds: &Arc<Dispatcher>) {
    let st = &mi.statistics;
    for (name, pick) in COUNTERS {
        let (r, w) = (ds.clone(), ds.clone());
        st.counter(
            "dispatcher",
            name,
            move || pick(&r).load(Ordering::Relaxed),
            move || pick(&w).store(0, Ordering::Relaxed),
        );
    }
    let d = ds.clone();
    st.gauge("dispatcher", "sets", move || d.sets().list.len() as u64);
    let d = ds.clone();
    st.gauge("dispatcher", "destinations", move || d.sets().destinations().count() as u64);
    for (i, name) in ["active_destinations", "inactive_destinations", "probing_destinations"].into_iter().enumerate() {
        let d = ds.clone();
        st.gauge("dispatcher", name, move || by_state(&d)[i]);
    }
}

// ------------------------------------------------------------------- metrics

fn collect(ds: &Dispatcher, e: &mut Exposition) {
    let s = &ds.stats;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let name = "siprox_dispatcher_destinations";
    e.family(name, Kind::Gauge, "Dispatcher destinations by state.");
    let n = by_state(ds);
    for st in [DsState::Active, DsState::Inactive, DsState::Probing] {
        e.sample(name, &[("state", st.as_lower())], n[st as usize]);
    }
    e.single(
        "siprox_dispatcher_probes_sent_total",
        Kind::Counter,
        "Probes handed to the proxy to send.",
        load(&s.probes_sent),
    );
    let name = "siprox_dispatcher_probe_results_total";
    e.family(
        name,
        Kind::Counter,
        "Probe outcomes: a good reply (ok), a bad reply or timeout (failed), not sent from this host (not_sent).",
    );
    e.sample(name, &[("result", "ok")], load(&s.probe_ok));
    e.sample(name, &[("result", "failed")], load(&s.probe_failed));
    e.sample(name, &[("result", "not_sent")], load(&s.probe_not_sent));
    let name = "siprox_dispatcher_state_changes_total";
    e.family(name, Kind::Counter, "Destination state changes, by the new state.");
    e.sample(name, &[("to", "active")], load(&s.to_active));
    e.sample(name, &[("to", "inactive")], load(&s.to_inactive));
    e.sample(name, &[("to", "probing")], load(&s.to_probing));
    let name = "siprox_dispatcher_reloads_total";
    e.family(name, Kind::Counter, "Reloads of the dispatcher table (failed ones keep the old sets).");
    e.sample(name, &[("result", "ok")], load(&s.reloads));
    e.sample(name, &[("result", "failed")], load(&s.reload_failures));
    let name = "siprox_dispatcher_selections_total";
    e.family(name, Kind::Counter, "ds_select_dst / ds_select_domain calls: a destination chosen (ok) or -1 (failed).");
    e.sample(name, &[("result", "ok")], load(&s.selected));
    e.sample(name, &[("result", "failed")], load(&s.select_failed));
}
