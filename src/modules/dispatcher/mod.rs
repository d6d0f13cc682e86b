//! dispatcher: destination sets loaded from the `dispatcher` table, selected by
//! `ds_select_dst` and friends with OpenSIPS 3.x semantics (spec §6), probed with OPTIONS.
//!
//! # Data
//!
//! Rows ([`DsRow`]: `setid`, `destination`, `socket`, `state`, `probe_mode`, `weight`,
//! `priority`, `attrs`, `description`) become sets ordered by priority (higher first, table
//! order within one priority). Each URI is parsed once, at load. The sets sit behind an
//! [`ArcSwap`]: routing reads them without a lock, and [`Dispatcher::replace`] builds the
//! new sets completely before swapping them in (so `ds_reload` is atomic, and a failed load
//! leaves the old sets serving). A destination's runtime state (active / inactive /
//! probing, failure counter, last probe reply, round-robin turn, `first_hit_counter`) is a
//! handful of atomics; with `inherit_state` (the default of `ds_reload`) a URI that is still
//! in its set keeps them.
//!
//! Only the default partition exists: a `partition` argument must be `""` or `"default"`.
//!
//! # Parameters (`[dispatcher]`, OpenSIPS modparam names and defaults)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `table_name` | `"dispatcher"` | table the sets are loaded from |
//! | `ds_ping_interval` | `0` | seconds between probing rounds; 0 = no probing |
//! | `ds_ping_method` | `"OPTIONS"` | method of the probes |
//! | `ds_ping_from` | `"sip:dispatcher@localhost"` | From URI of the probes |
//! | `ds_ping_maxfwd` | unset | Max-Forwards of the probes |
//! | `ds_probing_threshold` | `3` | failures before an active destination goes to probing |
//! | `ds_probing_mode` | `0` | 0: probe destinations in probing state (and rows with `probe_mode` 1); 1: every destination not inactive |
//! | `options_reply_codes` | `[]` | replies that count as good besides 200 (`[501, 403]` or `"501, 403"`) |
//! | `ds_probing_list` | `[]` | only these sets are probed (empty: all) |
//! | `ds_probing_sock` | unset | socket probes leave from when the row names none |
//! | `hash_pvar` | unset | text with pseudo-variables hashed by algorithm 7 |
//! | `pvar_algo_pattern` | unset | pseudo-variable read as each destination's load by algorithm 9 (`%u` URI, `%i` set id) |
//! | `algo_route` | unset | algorithm 10: `fn route_<name>(dst_uri, attrs, script_attrs)` returns a score |
//! | `setid_pvar` | unset | `$var(x)` / `$avp(x)` receiving the set `ds_is_in_list` matched (when called without a set) |
//! | `dst_avp`, `grp_avp`, `cnt_avp`, `sock_avp` | `ds_dst_failover`, `ds_grp_failover`, `ds_cnt_failover`, `ds_sock_failover` | failover AVPs (`$avp(name)` or the bare name) |
//! | `attrs_avp` | unset | AVP receiving the selected destination's `attrs` |
//! | `persistent_state` | `true` | start each row in its `state` column (else all active) |
//!
//! # Script functions (script.rs; docs/script-api.md §4.13 has the return codes)
//!
//! `ds_select_dst(set, alg[, flags[, partition[, max_results]]])`, `ds_select_domain(…)`,
//! `ds_next_dst([partition])`, `ds_next_domain([partition])`, `ds_mark_dst([state[, partition]])`,
//! `ds_is_in_list(ip, port[, set[, partition[, active_only]]])`, `ds_count(set, filter[, var[, partition]])`.
//!
//! # MI commands (mi.rs; docs/mi.md)
//!
//! `ds_list [full]`, `ds_reload [partition] [inherit_state]`, `ds_set_state state group address [partition]`;
//! statistics in the `dispatcher:` group and `siprox_dispatcher_*` metrics.
//!
//! # Probing
//!
//! The module holds the state machine, not the network: every `ping_interval()` the proxy
//! sends `ping_method()` to each of [`Dispatcher::probe_targets`] and reports each outcome to
//! [`Dispatcher::probe_result`] (`None` = no reply, counted as 408). A good reply (200 or one
//! of `options_reply_codes`) makes the destination active and resets its failure counter;
//! a bad one, when the destination is probed while active (`ds_probing_mode` 1 or its row's
//! `probe_mode` 1), counts towards `ds_probing_threshold`, and at the threshold it goes to
//! probing. An inactive destination is never probed and stays down until `ds_set_state`,
//! `ds_mark_dst("a")` or a reload without `inherit_state`. Every change is logged, counted
//! and passed to the listeners of [`Dispatcher::on_state_change`] (the proxy raises
//! `event_route_E_DISPATCHER_STATUS` from there).

pub mod mi;
pub mod script;
mod select;
mod set;

pub use select::{hash32, uri_hash_key, Flags, SelectInput};

use crate::config::DispatcherConfig;
use arc_swap::ArcSwap;
use set::{Dest, DsSet, Runtime, Sets};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod store;

/// One row of the `dispatcher` table, as OpenSIPS defines it (spec §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsRow {
    pub id: i64,
    pub setid: i64,
    /// A SIP URI.
    pub destination: String,
    /// Local socket to send from (`proto:ip:port`), when set.
    pub socket: Option<String>,
    /// 0 active, 1 inactive, 2 probing.
    pub state: i64,
    /// 0 probe only when probing, 1 always probe.
    pub probe_mode: i64,
    /// An integer as text (default "1").
    pub weight: String,
    pub priority: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
}

impl DsRow {
    /// A row with the table's column defaults (active, weight 1, priority 0, no socket).
    pub fn new(setid: i64, destination: &str) -> DsRow {
        DsRow {
            id: 0,
            setid,
            destination: destination.to_string(),
            socket: None,
            state: 0,
            probe_mode: 0,
            weight: "1".to_string(),
            priority: 0,
            attrs: None,
            description: None,
        }
    }
}

/// State of a destination. The discriminants are the `state` column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DsState {
    Active = 0,
    Inactive = 1,
    Probing = 2,
}

impl DsState {
    fn from_u8(v: u8) -> DsState {
        match v {
            1 => DsState::Inactive,
            2 => DsState::Probing,
            _ => DsState::Active,
        }
    }

    /// The value of the `state` column for this state.
    pub fn to_db(self) -> i64 {
        match self {
            DsState::Active => 0,
            DsState::Inactive => 1,
            DsState::Probing => 2,
        }
    }

    /// The `state` column: 0 active, 1 inactive, 2 probing (anything else: active).
    pub fn from_db(v: i64) -> DsState {
        match v {
            1 => DsState::Inactive,
            2 => DsState::Probing,
            _ => DsState::Active,
        }
    }

    /// What `ds_mark_dst`, `ds_set_state` and `ds_count` take: `a`/`A`/`1` active,
    /// `i`/`I`/`0` inactive, `p`/`P`/`2` probing (note: not the `state` column's numbers).
    pub fn from_flag(s: &str) -> Option<DsState> {
        match s.trim() {
            "a" | "A" | "1" => Some(DsState::Active),
            "i" | "I" | "0" => Some(DsState::Inactive),
            "p" | "P" | "2" => Some(DsState::Probing),
            _ => None,
        }
    }

    /// As `ds_list` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DsState::Active => "Active",
            DsState::Inactive => "Inactive",
            DsState::Probing => "Probing",
        }
    }

    /// Lower case, as metrics labels and `E_DISPATCHER_STATUS` `status` write it.
    pub fn as_lower(self) -> &'static str {
        match self {
            DsState::Active => "active",
            DsState::Inactive => "inactive",
            DsState::Probing => "probing",
        }
    }
}

/// A destination changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub setid: i64,
    pub uri: String,
    pub old: DsState,
    pub new: DsState,
}

/// A destination to probe now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub setid: i64,
    pub uri: String,
    /// Socket to send from (`proto:ip:port`): the row's, else `ds_probing_sock`.
    pub socket: Option<String>,
}

/// What a load produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub sets: usize,
    pub destinations: usize,
    /// Rows left out, with the reason (a destination that is not a SIP URI).
    pub skipped: Vec<String>,
}

/// Reads the `dispatcher` table (supplied by the wiring from the database store).
pub type DsLoader = Arc<dyn Fn() -> crate::mi::BoxFuture<Result<Vec<DsRow>, String>> + Send + Sync>;

/// Called on every state change; must not block (queue the work).
pub type StateListener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Why a state could not be set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DsError {
    #[error("destination set {0} not found")]
    NoSet(i64),
    #[error("destination {1} not found in set {0}")]
    NoDestination(i64, String),
}

/// The counters behind the `dispatcher:` statistics and the `siprox_dispatcher_*` metrics.
#[derive(Debug, Default)]
pub struct DsStats {
    /// Probes handed out by `probe_targets`.
    pub probes_sent: AtomicU64,
    /// Probe results that were good / bad (timeouts included).
    pub probe_ok: AtomicU64,
    pub probe_failed: AtomicU64,
    /// Probes this host could not send (a standby's sockets): no result was recorded.
    pub probe_not_sent: AtomicU64,
    /// State changes, by new state.
    pub to_active: AtomicU64,
    pub to_inactive: AtomicU64,
    pub to_probing: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// `ds_select_*` calls that selected something / returned -1.
    pub selected: AtomicU64,
    pub select_failed: AtomicU64,
}

/// The configuration, normalised once.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub table_name: String,
    pub ping_interval: Option<Duration>,
    pub ping_method: String,
    pub ping_from: String,
    pub ping_maxfwd: Option<u32>,
    pub threshold: u32,
    pub probing_mode: u8,
    pub reply_codes: Vec<i64>,
    pub probing_list: Vec<i64>,
    pub probing_sock: Option<String>,
    pub hash_pvar: Option<String>,
    pub pvar_algo_pattern: Option<String>,
    pub algo_route: Option<String>,
    pub setid_pvar: Option<String>,
    pub dst_avp: String,
    pub grp_avp: String,
    pub cnt_avp: String,
    pub sock_avp: String,
    pub attrs_avp: Option<String>,
    pub persistent_state: bool,
}

/// `$avp(name)` or `name` → `name`.
fn avp_name(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix("$avp(").and_then(|r| r.strip_suffix(')')).unwrap_or(s).trim_matches('"').to_string()
}

impl Params {
    fn from_config(c: &DispatcherConfig) -> Params {
        let nonempty = |o: &Option<String>| o.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Params {
            table_name: c.table_name.clone(),
            ping_interval: (c.ds_ping_interval > 0).then(|| Duration::from_secs(c.ds_ping_interval)),
            ping_method: c.ds_ping_method.clone(),
            ping_from: c.ds_ping_from.clone(),
            ping_maxfwd: c.ds_ping_maxfwd,
            threshold: c.ds_probing_threshold.max(1),
            probing_mode: c.ds_probing_mode,
            reply_codes: c.options_reply_codes.clone(),
            probing_list: c.ds_probing_list.clone(),
            probing_sock: c.ds_probing_sock.as_deref().and_then(set::normalize_socket),
            hash_pvar: nonempty(&c.hash_pvar),
            pvar_algo_pattern: nonempty(&c.pvar_algo_pattern),
            algo_route: nonempty(&c.algo_route),
            setid_pvar: nonempty(&c.setid_pvar),
            dst_avp: avp_name(&c.dst_avp),
            grp_avp: avp_name(&c.grp_avp),
            cnt_avp: avp_name(&c.cnt_avp),
            sock_avp: avp_name(&c.sock_avp),
            attrs_avp: nonempty(&c.attrs_avp).map(|a| avp_name(&a)),
            persistent_state: c.persistent_state,
        }
    }
}

/// A destination as a selection hands it to the script.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub uri: String,
    /// `host[:port]` of the URI, for `ds_select_domain`.
    pub hostport: String,
    pub socket: Option<String>,
    pub attrs: Option<String>,
    rt: Arc<Runtime>,
}

impl Chosen {
    fn of(d: &Dest) -> Chosen {
        Chosen {
            uri: d.uri.clone(),
            hostport: d.hostport.clone(),
            socket: d.socket.clone(),
            attrs: d.attrs.clone(),
            rt: d.rt.clone(),
        }
    }

    /// True the first time it is called for this destination: its socket is not one of
    /// ours, and the warning should be logged once.
    pub fn first_bad_socket(&self) -> bool {
        !self.rt.socket_warned.swap(true, Ordering::Relaxed)
    }
}

/// A successful selection.
#[derive(Clone, Debug)]
pub struct Selected {
    pub setid: i64,
    pub dst: Chosen,
    /// The failover list after `dst` (flag `f`), in the order `ds_next_dst` walks it.
    pub failover: Vec<Chosen>,
}

/// A destination as `ds_list` and the accessors show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestInfo {
    pub setid: i64,
    /// The row's `id`.
    pub id: i64,
    pub uri: String,
    pub state: DsState,
    pub weight: u32,
    pub priority: i64,
    pub socket: Option<String>,
    pub attrs: Option<String>,
    pub description: Option<String>,
    pub probe_mode: i64,
    pub first_hit_counter: u64,
    pub failures: u32,
    /// Status of the last probe reply (408 for a timeout), when probed.
    pub last_probe_code: Option<u16>,
    /// When that reply came.
    pub last_probe: Option<SystemTime>,
}

/// The dispatcher: its sets, their state, its parameters and counters.
pub struct Dispatcher {
    params: Params,
    sets: ArcSwap<Sets>,
    /// Serialises [`Dispatcher::replace`] (the build reads the sets it replaces).
    replace_lock: Mutex<()>,
    listeners: RwLock<Vec<StateListener>>,
    pub stats: DsStats,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("sets", &self.sets.load().list.len()).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Dispatcher {
    /// A dispatcher with no sets yet (fill it with [`Dispatcher::replace`]).
    pub fn new(cfg: &DispatcherConfig) -> Dispatcher {
        Dispatcher {
            params: Params::from_config(cfg),
            sets: ArcSwap::from_pointee(Sets::default()),
            replace_lock: Mutex::new(()),
            listeners: RwLock::new(Vec::new()),
            stats: DsStats::default(),
        }
    }

    pub(crate) fn params(&self) -> &Params {
        &self.params
    }

    pub(crate) fn sets(&self) -> Arc<Sets> {
        self.sets.load_full()
    }

    /// The table the sets come from (`[dispatcher] table_name`).
    pub fn table_name(&self) -> &str {
        &self.params.table_name
    }

    /// Whether the `state` column is loaded (`[dispatcher] persistent_state`).
    pub fn persistent_state(&self) -> bool {
        self.params.persistent_state
    }

    /// Replaces every set with those built from `rows`, atomically: routing sees the old
    /// sets until the new ones are complete. With `inherit_state`, a destination whose
    /// `(setid, URI)` was loaded before keeps its runtime state. Rows whose destination is
    /// not a SIP URI are left out (logged, and listed in the report).
    pub fn replace(&self, rows: Vec<DsRow>, inherit_state: bool) -> LoadReport {
        let _guard = self.replace_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.sets.load_full();
        let (sets, report) = set::build(rows, Some(&old), inherit_state, self.params.persistent_state);
        self.sets.store(Arc::new(sets));
        tracing::info!(
            sets = report.sets,
            destinations = report.destinations,
            skipped = report.skipped.len(),
            inherit_state,
            "dispatcher: destination sets loaded"
        );
        report
    }

    /// Loads the table through `loader` and [`replace`](Dispatcher::replace)s the sets; on
    /// failure the old sets stay. Counted in `dispatcher:reloads` / `reload_failures`.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn reload(&self, loader: &DsLoader, inherit_state: bool) -> Result<LoadReport, String> {
        match loader().await {
            Ok(rows) => {
                let report = self.replace(rows, inherit_state);
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            }
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "dispatcher: reload failed; the loaded sets stay in use");
                Err(e)
            }
        }
    }

    /// Registers a listener for every state change (probing, `ds_mark_dst`, `ds_set_state`).
    pub fn on_state_change(&self, f: impl Fn(&StateChange) + Send + Sync + 'static) {
        self.listeners.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(f));
    }

    /// Logs, counts and announces a change.
    fn changed(&self, setid: i64, uri: &str, old: DsState, new: DsState) -> StateChange {
        let counter = match new {
            DsState::Active => &self.stats.to_active,
            DsState::Inactive => &self.stats.to_inactive,
            DsState::Probing => &self.stats.to_probing,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if new == DsState::Active {
            tracing::info!(setid, uri, from = old.as_lower(), "dispatcher: destination is active");
        } else {
            tracing::warn!(setid, uri, from = old.as_lower(), to = new.as_lower(), "dispatcher: destination is down");
        }
        let change = StateChange { setid, uri: uri.to_string(), old, new };
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner()).clone();
        for l in listeners {
            l(&change);
        }
        change
    }

    /// Runs `f` on the first destination of set `setid` whose URI is `uri` (case-insensitive).
    fn with_dest<T>(&self, setid: i64, uri: &str, f: impl FnOnce(&Dest) -> T) -> Result<T, DsError> {
        let sets = self.sets.load();
        let set = sets.get(setid).ok_or(DsError::NoSet(setid))?;
        let uri = uri.trim();
        let d = set
            .dests
            .iter()
            .find(|d| d.uri.eq_ignore_ascii_case(uri))
            .ok_or_else(|| DsError::NoDestination(setid, uri.to_string()))?;
        Ok(f(d))
    }

    /// Sets a destination's state at once (`ds_set_state`); `Active` also resets its
    /// failure counter. `Ok(None)` when it already was in that state.
    ///
    /// # Errors
    /// No such set, or no such URI in it.
    pub fn set_state(&self, setid: i64, uri: &str, state: DsState) -> Result<Option<StateChange>, DsError> {
        self.with_dest(setid, uri, |d| {
            if state == DsState::Active {
                d.rt.failures.store(0, Ordering::Relaxed);
            }
            let old = d.rt.set_state(state);
            (old != state).then(|| self.changed(setid, &d.uri, old, state))
        })
    }

    /// `ds_mark_dst` on one destination: inactive and active at once (active resets the
    /// failure counter); probing only on the `ds_probing_threshold`-th call, and never for
    /// an inactive destination.
    ///
    /// # Errors
    /// No such set, or no such URI in it.
    pub fn mark(&self, setid: i64, uri: &str, state: DsState) -> Result<Option<StateChange>, DsError> {
        if state != DsState::Probing {
            return self.set_state(setid, uri, state);
        }
        self.with_dest(setid, uri, |d| {
            let cur = d.rt.state();
            if cur != DsState::Active {
                return None;
            }
            let n = d.rt.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n < self.params.threshold {
                return None;
            }
            d.rt.failures.store(self.params.threshold, Ordering::Relaxed);
            d.rt.transition(DsState::Active, DsState::Probing)
                .then(|| self.changed(setid, &d.uri, DsState::Active, DsState::Probing))
        })
    }

    /// Selects a destination of set `setid` with algorithm `alg` (spec §6.2).
    ///
    /// # Errors
    /// Why nothing was selected (unknown or empty set, nothing active, hash input missing).
    pub fn select(
        &self,
        setid: i64,
        alg: i64,
        input: &SelectInput<'_>,
        flags: Flags,
        max_results: Option<usize>,
    ) -> Result<Selected, String> {
        let sets = self.sets.load();
        let result = match sets.get(setid) {
            None => Err(format!("destination set {setid} not found")),
            Some(set) => set.select(alg, input, flags, max_results).map(|s| Selected {
                setid,
                dst: Chosen::of(&set.dests[s.index]),
                failover: s.failover.iter().map(|&i| Chosen::of(&set.dests[i])).collect(),
            }),
        };
        let c = if result.is_ok() { &self.stats.selected } else { &self.stats.select_failed };
        c.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// URIs of set `setid` in set order (what algorithms 9 and 10 rank), `None` if unknown.
    pub fn set_uris(&self, setid: i64) -> Option<Vec<(String, Option<String>)>> {
        let sets = self.sets.load();
        sets.get(setid).map(|s| s.dests.iter().map(|d| (d.uri.clone(), d.attrs.clone())).collect())
    }

    /// How many destinations of set `setid` are in the states `filter` names (`ds_count`:
    /// `a`/`A`/`1` active, `i`/`I`/`0` inactive, `p`/`P`/`2` probing, combinable; anything
    /// else, or nothing, counts all). `None` when the set does not exist.
    pub fn count(&self, setid: i64, filter: &str) -> Option<usize> {
        let wanted: Vec<DsState> = filter.chars().filter_map(|c| DsState::from_flag(&c.to_string())).collect();
        let sets = self.sets.load();
        let set = sets.get(setid)?;
        Some(set.dests.iter().filter(|d| wanted.is_empty() || wanted.contains(&d.state())).count())
    }

    /// `ds_is_in_list`: the first destination (of set `setid`, or of any set) whose host is
    /// `ip` and whose port is `port` (0, or a destination written without a port, matches
    /// any port); with `active_only`, active destinations only. Hosts written as names match
    /// `ip` by name (no DNS). Returns its set id and attrs.
    pub fn is_in_list(
        &self,
        ip: &str,
        port: u16,
        setid: Option<i64>,
        active_only: bool,
    ) -> Option<(i64, Option<String>)> {
        let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
        let addr = ip.parse::<IpAddr>().ok();
        let sets = self.sets.load();
        let found = sets.destinations().find(|(s, d)| {
            setid.is_none_or(|id| id == s.id)
                && match (addr, d.ip) {
                    (Some(a), Some(b)) => a == b,
                    (_, None) => d.host.eq_ignore_ascii_case(ip),
                    (None, Some(_)) => false,
                }
                && (port == 0 || d.port == 0 || d.port == port)
                && (!active_only || d.is_active())
        });
        found.map(|(s, d)| (s.id, d.attrs.clone()))
    }

    /// Every destination, set by set.
    pub fn destinations(&self) -> Vec<DestInfo> {
        let sets = self.sets.load();
        sets.destinations().map(|(s, d)| dest_info(s, d)).collect()
    }

    // ------------------------------------------------------------------ probing

    /// Seconds between probing rounds (`ds_ping_interval`); `None` = no probing.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.params.ping_interval
    }
    pub fn ping_method(&self) -> &str {
        &self.params.ping_method
    }
    pub fn ping_from(&self) -> &str {
        &self.params.ping_from
    }
    pub fn ping_maxfwd(&self) -> Option<u32> {
        self.params.ping_maxfwd
    }

    /// The destinations to probe this round: never inactive ones; with `ds_probing_mode` 1
    /// every other one, else those in probing state and those whose row says `probe_mode`
    /// 1; only sets of `ds_probing_list` when it is set. Counted as `dispatcher:probes_sent`.
    pub fn probe_targets(&self) -> Vec<ProbeTarget> {
        let p = &self.params;
        let sets = self.sets.load();
        let out: Vec<ProbeTarget> = sets
            .destinations()
            .filter(|(s, _)| p.probing_list.is_empty() || p.probing_list.contains(&s.id))
            .filter(|(_, d)| {
                let st = d.state();
                st != DsState::Inactive && (p.probing_mode == 1 || d.probe_mode == 1 || st == DsState::Probing)
            })
            .map(|(s, d)| ProbeTarget {
                setid: s.id,
                uri: d.uri.clone(),
                socket: d.socket.clone().or_else(|| p.probing_sock.clone()),
            })
            .collect();
        self.stats.probes_sent.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Whether `code` is a good probe reply: 200 or one of `options_reply_codes`.
    pub fn is_good_reply(&self, code: u16) -> bool {
        code == 200 || self.params.reply_codes.contains(&(code as i64))
    }

    /// A probe that could not leave this host: counted, and nothing else (the destination's
    /// state, failure count and last probe stay as they are).
    pub fn probe_not_sent(&self) {
        self.stats.probe_not_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The outcome of probing `target`: `Some(code)` the final reply, `None` no reply
    /// (counted as 408). Returns the state change it caused, if any. A result for a
    /// destination that is gone (reloaded away) or inactive changes nothing.
    pub fn probe_result(&self, target: &ProbeTarget, code: Option<u16>) -> Option<StateChange> {
        let code = code.unwrap_or(408);
        let good = self.is_good_reply(code);
        let c = if good { &self.stats.probe_ok } else { &self.stats.probe_failed };
        c.fetch_add(1, Ordering::Relaxed);
        let threshold = self.params.threshold;
        let always = self.params.probing_mode == 1;
        self.with_dest(target.setid, &target.uri, |d| {
            d.rt.last_code.store(code as u32, Ordering::Relaxed);
            d.rt.last_probe_ms.store(now_ms(), Ordering::Relaxed);
            let cur = d.rt.state();
            if cur == DsState::Inactive {
                return None;
            }
            if good {
                d.rt.failures.store(0, Ordering::Relaxed);
                return (cur != DsState::Active && d.rt.transition(cur, DsState::Active))
                    .then(|| self.changed(target.setid, &d.uri, cur, DsState::Active));
            }
            if cur != DsState::Active || !(always || d.probe_mode == 1) {
                return None;
            }
            let n = d.rt.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n < threshold {
                return None;
            }
            d.rt.failures.store(threshold, Ordering::Relaxed);
            d.rt.transition(DsState::Active, DsState::Probing)
                .then(|| self.changed(target.setid, &d.uri, DsState::Active, DsState::Probing))
        })
        .ok()
        .flatten()
    }
}

fn dest_info(s: &DsSet, d: &Dest) -> DestInfo {
    let code = d.rt.last_code.load(Ordering::Relaxed);
    let at = d.rt.last_probe_ms.load(Ordering::Relaxed);
    DestInfo {
        setid: s.id,
        id: d.id,
        uri: d.uri.clone(),
        state: d.state(),
        weight: d.weight,
        priority: d.priority,
        socket: d.socket.clone(),
        attrs: d.attrs.clone(),
        description: d.description.clone(),
        probe_mode: d.probe_mode,
        first_hit_counter: d.rt.chosen.load(Ordering::Relaxed),
        failures: d.rt.failures.load(Ordering::Relaxed),
        last_probe_code: (code != 0).then_some(code as u16),
        last_probe: (at != 0).then(|| UNIX_EPOCH + Duration::from_millis(at)),
    }
}

#[cfg(test)]
mod tests;
