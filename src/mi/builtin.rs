//! The core's MI commands (`which`, `version`, `uptime`, `get_statistics`,
//! `reset_statistics`, `reload_routes`, `script_status`), its statistics (`core:`, `tm:`,
//! `sl:`, `script:`) and its `/metrics` families. docs/mi.md describes each.

use super::metrics::{Exposition, Kind};
use super::{Command, Mi, MiError, Statistics};
use crate::message::{METHOD_SLOTS, METHOD_SLOT_NAMES};
use crate::proxy::Proxy;
use crate::script::{ScriptHost, ScriptStatus, LATENCY_BUCKETS_US};
use crate::transaction::{ByClass, Counter, Tm, STATUS_CLASSES};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the core commands work on.
#[derive(Clone)]
pub struct Core {
    pub proxy: Arc<Proxy>,
    pub tm: Arc<Tm>,
    /// When the proxy started (`uptime`).
    pub started: SystemTime,
}

impl Core {
    fn script(&self) -> &Arc<ScriptHost> {
        self.proxy.script()
    }
}

/// Registers the core's statistics, metric families and commands into `mi`.
pub fn install(mi: &Arc<Mi>, core: Core) {
    register_statistics(&mi.statistics, &core);
    let c = core.clone();
    mi.metrics.register(move |e| collect(&c, e));
    register_commands(mi, core);
}

/// `Server` of `version`: name, version, target.
pub fn server_string() -> String {
    format!("siprox {} ({}/{})", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH, std::env::consts::OS)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

// ------------------------------------------------------------------ commands

fn register_commands(mi: &Arc<Mi>, core: Core) {
    let reg = &mi.commands;
    let weak = Arc::downgrade(mi);
    reg.register(Command::immediate("which", &[&[], &["command"]], move |p| which(&weak, p.str("command")?)));
    reg.register(Command::immediate("version", &[&[]], |_| Ok(json!({ "Server": server_string() }))));
    let started = core.started;
    reg.register(Command::immediate("uptime", &[&[]], move |_| Ok(uptime(started, SystemTime::now()))));
    let weak = Arc::downgrade(mi);
    reg.register(
        Command::immediate("get_statistics", &[&["statistics"]], move |p| {
            let mi = alive(&weak)?;
            let wanted = p.list("statistics")?.unwrap_or_default();
            mi.statistics.select(&wanted).map(Value::Object)
        })
        .gather_positional(),
    );
    let weak = Arc::downgrade(mi);
    reg.register(
        Command::immediate("reset_statistics", &[&[], &["statistics"]], move |p| {
            let mi = alive(&weak)?;
            let wanted = p.list("statistics")?.unwrap_or_else(|| vec!["all".to_string()]);
            mi.statistics.reset(&wanted).map(|_| json!("OK"))
        })
        .gather_positional(),
    );
    let host = core.script().clone();
    reg.register(Command::new("reload_routes", &[&[]], move |_| reload_routes(host.clone())));
    let host = core.script().clone();
    reg.register(Command::new("script_status", &[&[]], move |_| script_status(host.clone())));
}

/// The registry the commands were registered into (it outlives them but for shutdown).
fn alive(weak: &Weak<Mi>) -> Result<Arc<Mi>, MiError> {
    weak.upgrade().ok_or_else(|| MiError::internal("the management interface is shutting down"))
}

/// Every command name, or the parameter lists one command accepts.
fn which(weak: &Weak<Mi>, command: Option<String>) -> Result<Value, MiError> {
    let mi = alive(weak)?;
    match command {
        None => Ok(json!(mi.commands.names())),
        Some(name) => match mi.commands.get(&name) {
            Some(cmd) => Ok(json!(cmd.recipes())),
            None => Err(MiError::not_found(format!("no such command: {name}"))),
        },
    }
}

fn uptime(started: SystemTime, now: SystemTime) -> Value {
    let up = now.duration_since(started).map(|d| d.as_secs()).unwrap_or(0);
    json!({ "Now": rfc3339(now), "Up since": rfc3339(started), "Up time": format!("{up} [sec]") })
}

/// Recompiles the script off the async workers; the running one stays when it is refused.
async fn reload_routes(host: Arc<ScriptHost>) -> Result<Value, MiError> {
    let outcome = tokio::task::spawn_blocking(move || host.reload("MI reload_routes"))
        .await
        .map_err(|e| MiError::internal(format!("reload failed: {e}")))?;
    match outcome {
        Ok(_) => Ok(json!("OK")),
        Err(e) => {
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().collect();
            Err(MiError::internal(text.clone()).with_data(json!(lines)))
        }
    }
}

async fn script_status(host: Arc<ScriptHost>) -> Result<Value, MiError> {
    // status() waits for a reload in progress: off the async workers.
    let st = tokio::task::spawn_blocking(move || host.status())
        .await
        .map_err(|e| MiError::internal(format!("script_status failed: {e}")))?;
    Ok(status_json(&st))
}

fn status_json(st: &ScriptStatus) -> Value {
    let path = st.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| st.name.clone());
    let last_error = st.last_error.as_ref().map(|e| json!({ "At": rfc3339(e.at), "Message": e.message }));
    let sources: Vec<String> = st.sources.iter().map(|p| p.display().to_string()).collect();
    json!({
        "Version": st.version,
        "Hash": st.hash,
        "Path": path,
        "Loaded at": rfc3339(st.loaded_at),
        "Reloads": st.reloads,
        "Reload failures": st.reload_failures,
        "Last error": last_error,
        "Last attempt failed": st.last_attempt_failed,
        "Sources": sources,
    })
}

// ---------------------------------------------------------------- statistics

/// A counter reached through `owner` (`pick` gets the slot `i`, for tables).
fn counter<T: Send + Sync + 'static>(
    st: &Statistics,
    group: &str,
    name: &str,
    owner: &Arc<T>,
    i: usize,
    pick: Pick<T>,
) {
    let (r, w) = (owner.clone(), owner.clone());
    st.counter(
        group,
        name,
        move || pick(&r, i).map_or(0, Counter::get),
        move || pick(&w, i).map_or((), Counter::reset),
    );
}

/// A sum over some classes of a [`ByClass`] table; resetting it zeroes those classes.
fn class_sum<T: Send + Sync + 'static>(
    st: &Statistics,
    group: &str,
    name: &str,
    owner: &Arc<T>,
    classes: std::ops::Range<usize>,
    pick: fn(&T) -> &ByClass,
) {
    let (r, w, c2) = (owner.clone(), owner.clone(), classes.clone());
    st.counter(
        group,
        name,
        move || classes.clone().filter_map(|i| pick(&r).class(i)).map(Counter::get).sum(),
        move || c2.clone().filter_map(|i| pick(&w).class(i)).for_each(Counter::reset),
    );
}

fn register_statistics(st: &Statistics, core: &Core) {
    register_core(st, &core.proxy);
    register_sl(st, &core.proxy);
    register_tm(st, &core.tm);
    register_script(st, core.script());
}

/// Picks a counter out of its owner (slot `usize` of a table, ignored for plain counters).
type Pick<T> = fn(&T, usize) -> Option<&Counter>;

fn register_core(st: &Statistics, p: &Arc<Proxy>) {
    let plain: [(&str, Pick<Proxy>); 9] = [
        ("rcv_requests", |p, _| Some(&p.stats.rcv_requests)),
        ("rcv_replies", |p, _| Some(&p.stats.rcv_replies)),
        ("fwd_requests", |p, _| Some(&p.stats.fwd_requests)),
        ("fwd_replies", |p, _| Some(&p.stats.fwd_replies)),
        ("drop_requests", |p, _| Some(&p.stats.drop_requests)),
        ("drop_replies", |p, _| Some(&p.stats.drop_replies)),
        ("err_requests", |p, _| Some(&p.stats.err_requests)),
        ("err_replies", |p, _| Some(&p.stats.err_replies)),
        ("shed_requests", |p, _| Some(&p.stats.shed_requests)),
    ];
    for (name, pick) in plain {
        counter(st, "core", name, p, 0, pick);
    }
    for (i, method) in METHOD_SLOT_NAMES.iter().enumerate() {
        let name = format!("rcv_requests_{}", method.to_ascii_lowercase());
        counter(st, "core", &name, p, i, |p, i| p.stats.rcv_requests_by_method.get(i));
    }
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        counter(st, "core", &format!("rcv_replies_{class}"), p, i, |p, i| p.stats.rcv_replies_by_class.class(i));
    }
}

fn register_sl(st: &Statistics, p: &Arc<Proxy>) {
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        counter(st, "sl", &format!("{class}_replies"), p, i, |p, i| p.stats.sl_replies.class(i));
    }
    class_sum(st, "sl", "sent_replies", p, 0..6, |p| &p.stats.sl_replies);
    class_sum(st, "sl", "sent_err_replies", p, 2..6, |p| &p.stats.sl_replies);
}

fn register_tm(st: &Statistics, tm: &Arc<Tm>) {
    counter(st, "tm", "UAS_transactions", tm, 0, |t, _| Some(&t.stats.uas_transactions));
    counter(st, "tm", "UAC_transactions", tm, 0, |t, _| Some(&t.stats.uac_transactions));
    for (i, class) in STATUS_CLASSES.iter().enumerate().skip(1) {
        counter(st, "tm", &format!("{class}_transactions"), tm, i, |t, i| t.stats.completed.class(i));
    }
    let t = tm.clone();
    st.gauge("tm", "inuse_transactions", move || t.len() as u64);
    counter(st, "tm", "received_replies", tm, 0, |t, _| Some(&t.stats.received_replies));
    class_sum(st, "tm", "relayed_replies", tm, 0..6, |t| &t.stats.relayed);
    class_sum(st, "tm", "local_replies", tm, 0..6, |t| &t.stats.local);
    counter(st, "tm", "relayed_requests", tm, 0, |t, _| Some(&t.stats.relayed_requests));
}

fn register_script(st: &Statistics, host: &Arc<ScriptHost>) {
    type PickAtomic = fn(&ScriptHost) -> &AtomicU64;
    let pairs: [(&str, PickAtomic); 3] = [
        ("reloads", |h| &h.stats.reloads),
        ("reload_failures", |h| &h.stats.reload_failures),
        ("errors", |h| &h.stats.errors),
    ];
    for (name, pick) in pairs {
        let (r, w) = (host.clone(), host.clone());
        st.counter(
            "script",
            name,
            move || pick(&r).load(Ordering::Relaxed),
            move || pick(&w).store(0, Ordering::Relaxed),
        );
    }
    let h = host.clone();
    st.gauge("script", "version", move || h.bundle().version);
}

// ------------------------------------------------------------------- metrics

fn collect(core: &Core, e: &mut Exposition) {
    collect_process(core, e);
    collect_messages(&core.proxy, &core.tm, e);
    collect_transactions(&core.tm, e);
    collect_script(core.script(), e);
}

fn collect_process(core: &Core, e: &mut Exposition) {
    e.family("siprox_build_info", Kind::Gauge, "Always 1; the version is in the label.");
    e.sample("siprox_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    let start = core.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    e.single("siprox_start_time_seconds", Kind::Gauge, "When the proxy started, Unix time.", start);
}

fn collect_messages(p: &Proxy, tm: &Tm, e: &mut Exposition) {
    let s = &p.stats;
    let name = "siprox_requests_received_total";
    e.family(name, Kind::Counter, "SIP requests received (parsed), by method.");
    for (method, c) in METHOD_SLOT_NAMES.iter().zip(&s.rcv_requests_by_method).take(METHOD_SLOTS) {
        e.sample(name, &[("method", method)], c.get());
    }
    let name = "siprox_replies_received_total";
    e.family(name, Kind::Counter, "SIP replies received (parsed), by status class.");
    by_class(e, name, &[], &s.rcv_replies_by_class, 0);
    let name = "siprox_requests_forwarded_total";
    e.family(name, Kind::Counter, "Requests sent downstream: stateful branches and stateless forwards.");
    e.sample(name, &[("mode", "stateful")], tm.stats.relayed_requests.get());
    e.sample(name, &[("mode", "stateless")], s.fwd_requests.get());
    let name = "siprox_replies_sent_total";
    e.family(
        name,
        Kind::Counter,
        "Replies sent upstream by status class: built statelessly (sl), built by a transaction (tm), \
         or received and relayed by a transaction (relayed).",
    );
    by_class(e, name, &[("origin", "sl")], &s.sl_replies, 0);
    by_class(e, name, &[("origin", "tm")], &tm.stats.local, 0);
    by_class(e, name, &[("origin", "relayed")], &tm.stats.relayed, 0);
    let singles: [(&str, &str, &Counter); 6] = [
        ("siprox_replies_forwarded_total", "Replies matching no transaction, forwarded statelessly.", &s.fwd_replies),
        ("siprox_requests_dropped_total", "Requests dropped without an answer (drop(), overload).", &s.drop_requests),
        ("siprox_replies_dropped_total", "Replies dropped (drop() in an onreply route, not for us).", &s.drop_replies),
        ("siprox_requests_errors_total", "Requests malformed or whose route failed.", &s.err_requests),
        ("siprox_replies_errors_total", "Replies malformed.", &s.err_replies),
        ("siprox_requests_shed_total", "Requests refused or dropped by overload protection.", &s.shed_requests),
    ];
    for (name, help, c) in singles {
        e.single(name, Kind::Counter, help, c.get());
    }
}

/// One sample per status class of `t` (classes from `from`, 0 = 1xx), with `labels` first.
fn by_class(e: &mut Exposition, name: &str, labels: &[(&str, &str)], t: &ByClass, from: usize) {
    for (i, class) in STATUS_CLASSES.iter().enumerate().skip(from) {
        let mut l = labels.to_vec();
        l.push(("class", class));
        e.sample(name, &l, t.class(i).map_or(0, Counter::get));
    }
}

fn collect_transactions(tm: &Tm, e: &mut Exposition) {
    let name = "siprox_transactions_total";
    e.family(name, Kind::Counter, "Transactions created: for received requests (uas), for local requests (uac).");
    e.sample(name, &[("side", "uas")], tm.stats.uas_transactions.get());
    e.sample(name, &[("side", "uac")], tm.stats.uac_transactions.get());
    let name = "siprox_transactions_completed_total";
    e.family(name, Kind::Counter, "Transactions by the class of the final reply sent upstream.");
    by_class(e, name, &[], &tm.stats.completed, 1);
    e.single("siprox_transactions_active", Kind::Gauge, "Transactions in memory now.", tm.len());
}

fn collect_script(host: &ScriptHost, e: &mut Exposition) {
    let s = &host.stats;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    e.single(
        "siprox_script_reloads_total",
        Kind::Counter,
        "Script reloads that swapped in a new version.",
        load(&s.reloads),
    );
    e.single("siprox_script_reload_failures_total", Kind::Counter, "Script reloads refused.", load(&s.reload_failures));
    e.single("siprox_script_errors_total", Kind::Counter, "Script hooks that ended in an error.", load(&s.errors));
    e.single(
        "siprox_script_version",
        Kind::Gauge,
        "Version of the script in force (1 = as started).",
        host.bundle().version,
    );
    let snap = s.hook_latency.snapshot();
    let bounds: Vec<f64> = LATENCY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
    e.histogram(
        "siprox_script_hook_duration_seconds",
        "Run time of script hooks (a branch_route counts within the hook whose t_relay ran it).",
        &bounds,
        &snap.cumulative,
        snap.sum_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_shape() {
        let start = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let v = uptime(start, start + std::time::Duration::from_secs(75));
        assert_eq!(v["Up time"], json!("75 [sec]"));
        assert_eq!(v["Up since"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(v["Now"], json!("2023-11-14T22:14:35Z"));
    }

    #[test]
    fn server_names_siprox() {
        assert!(server_string().starts_with(&format!("siprox {} (", env!("CARGO_PKG_VERSION"))));
    }
}
