//! load_balancer: calls go to the destination of a group with the most free capacity for
//! the resources they need (spec §7, docs/load_balancer.md).
//!
//! # Data
//!
//! Rows of the `load_balancer` table ([`LbRow`]: `id`, `group_id`, `dst_uri`, `resources`
//! such as `pstn=32;transc=10`, `probe_mode`, `attrs`, `description`) become destinations in
//! id order, their URIs parsed once. They sit behind an [`ArcSwap`]: routing reads them
//! without a lock, and [`LoadBalancer::replace`] builds the new table completely before
//! swapping it in (`lb_reload` is atomic; a failed load keeps the old table). A destination
//! whose `(id, dst_uri)` survives a reload keeps its enabled/disabled status.
//!
//! # Load
//!
//! The load balancer keeps no counter of its own. Every resource name gets a dialog
//! profile with value, `lbX<resource>`, declared at load; a call routed to destination `id`
//! puts its dialog in `lbX<resource>` with value `id` for each resource it asked for. The
//! load of a resource is that profile's size, so it drops when the dialog ends (BYE,
//! lifetime, failed call), and comes back with dialogs restored from the database.
//!
//! What one call chose (group, resources, flags, the destinations tried) is the session,
//! attached to its dialog ([`crate::dialog::Dialog::set_ext`], key `"lb"`) for `lb_next`,
//! `lb_reset` and `lb_disable_dst`; it lives in memory only.
//!
//! # Parameters (`[load_balancer]`, OpenSIPS modparam names and defaults)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `table_name` | `"load_balancer"` | table the destinations are loaded from |
//! | `probing_interval` | `30` | seconds between probing rounds; 0 = no probing |
//! | `probing_method` | `"OPTIONS"` | method of the probes |
//! | `probing_from` | `"sip:prober@localhost"` | From URI of the probes |
//! | `probing_reply_codes` | `[]` | replies that count as good besides 200 |
//! | `probing_verbose` | `false` | log every probe outcome, not only status changes |
//!
//! # Script functions (script.rs; docs/load_balancer.md has the return codes)
//!
//! `lb_start(grp, resources[, flags])`, `lb_next()`, `lb_start_or_next(grp, resources[, flags])`,
//! `load_balance(grp, resources[, flags|alg])`, `lb_reset()`, `lb_is_started()`,
//! `lb_disable_dst()` (and 1.x `lb_disable()`), `lb_is_destination(ip, port[, grp[, active]])`,
//! `lb_count_call(ip, port, grp, resources[, undo])`.
//!
//! # MI commands (mi.rs)
//!
//! `lb_list`, `lb_reload`, `lb_resize destination_id res_name new_capacity`,
//! `lb_status destination_id [new_status]`.
//!
//! # Probing
//!
//! The module holds the status, not the network: every `probing_interval` the proxy sends
//! `probing_method` to each of [`LoadBalancer::probe_targets`] (rows with `probe_mode` 2,
//! and rows with `probe_mode` 1 while disabled) and reports the outcome to
//! [`LoadBalancer::probe_result`] (`None` = no reply, counted as 408). A good reply (200 or
//! one of `probing_reply_codes`) enables the destination, unless the operator disabled it
//! with `lb_status`; a reply of 400 or more disables it. Every change goes to the listeners
//! of [`LoadBalancer::on_status_change`] (the proxy raises `event_route_E_LOAD_BALANCER_STATUS`).

pub mod mi;
pub mod script;
mod select;
pub mod store;

pub use select::{availability, Candidate, Flags, NoPick};

use crate::config::LoadBalancerConfig;
use crate::dialog::{Dialog, Dialogs};
use crate::message::Uri;
use arc_swap::ArcSwap;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The key of the session on a dialog.
const EXT_KEY: &str = "lb";

/// One row of the `load_balancer` table, as OpenSIPS defines it (spec §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbRow {
    pub id: i64,
    pub group_id: i64,
    /// A SIP URI.
    pub dst_uri: String,
    /// `name=max` pairs separated by `;`.
    pub resources: String,
    /// 0 never probe, 1 probe only while disabled, 2 always probe.
    pub probe_mode: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
}

impl LbRow {
    /// A row with the table's column defaults (`probe_mode` 0, no attrs).
    pub fn new(group_id: i64, dst_uri: &str, resources: &str) -> LbRow {
        LbRow {
            id: 0,
            group_id,
            dst_uri: dst_uri.to_string(),
            resources: resources.to_string(),
            probe_mode: 0,
            attrs: None,
            description: None,
        }
    }
}

/// The dialog profile that counts `resource`'s calls (value: destination id).
pub fn profile_name(resource: &str) -> String {
    format!("lbX{resource}")
}

/// Whether a destination takes calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Enabled = 0,
    /// By probing or `lb_disable_dst`: a good probe enables it again.
    Disabled = 1,
    /// By the operator (`lb_status id 0`): only `lb_status id 1` or a reload without it
    /// enables it again.
    DisabledByMi = 2,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            1 => Status::Disabled,
            2 => Status::DisabledByMi,
            _ => Status::Enabled,
        }
    }
    pub fn is_enabled(self) -> bool {
        self == Status::Enabled
    }
    /// `status` of `E_LOAD_BALANCER_STATUS`.
    pub fn as_event(self) -> &'static str {
        if self.is_enabled() {
            "enabled"
        } else {
            "disabled"
        }
    }
}

/// A destination's status changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub id: i64,
    pub group: i64,
    pub uri: String,
    pub old: Status,
    pub new: Status,
}

/// A destination to probe now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub id: i64,
    pub uri: String,
}

/// What a load produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub destinations: usize,
    pub groups: usize,
    /// Resource names, sorted.
    pub resources: Vec<String>,
    /// Rows (or resources of a row) left out, with the reason.
    pub skipped: Vec<String>,
}

/// Reads the `load_balancer` table (supplied by the wiring from the database store).
pub type LbLoader = Arc<dyn Fn() -> crate::mi::BoxFuture<Result<Vec<LbRow>, String>> + Send + Sync>;

/// Called on every status change; must not block (queue the work).
pub type StatusListener = Arc<dyn Fn(&StatusChange) + Send + Sync>;

/// Why a selection or a session operation failed; [`LbError::code`] is the script's code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    #[error("{0}")]
    Internal(String),
    #[error("no destination of group {0} has capacity left")]
    NoCapacity(i64),
    #[error("no enabled destination of group {0} offers every requested resource")]
    NoDestination(i64),
    #[error("unknown resource {0:?} (no destination offers it)")]
    UnknownResource(String),
}

impl LbError {
    /// `-1` internal error, `-2` no capacity, `-3` no destination, `-4` unknown resource.
    pub fn code(&self) -> i64 {
        match self {
            LbError::Internal(_) => -1,
            LbError::NoCapacity(_) => -2,
            LbError::NoDestination(_) => -3,
            LbError::UnknownResource(_) => -4,
        }
    }
}

/// Why an MI change could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MiChangeError {
    #[error("destination {0} not found")]
    NoDestination(i64),
    #[error("destination {0} has no resource {1:?}")]
    NoResource(i64, String),
}

/// One resource of a destination; `lb_resize` changes its capacity in place.
#[derive(Debug)]
pub(crate) struct Resource {
    pub name: String,
    pub max: AtomicI64,
}

/// One destination, as loaded.
#[derive(Debug)]
pub(crate) struct Dst {
    pub id: i64,
    pub group: i64,
    pub uri: String,
    /// Host, lower case, IPv6 without brackets, and as an address when it is one.
    pub host: String,
    pub ip: Option<IpAddr>,
    /// 0 when the URI has none (matches any port).
    pub port: u16,
    pub resources: Vec<Resource>,
    pub probe_mode: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
    /// Shared with the table that replaces this one when `(id, uri)` survives a reload.
    pub status: Arc<AtomicU8>,
}

impl Dst {
    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed))
    }
    fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// Every destination, in id order (the "DB order" ties go to).
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub dsts: Vec<Dst>,
    /// Every resource name any destination offers.
    pub names: BTreeSet<String>,
}

impl Table {
    fn get(&self, id: i64) -> Option<&Dst> {
        self.dsts.binary_search_by_key(&id, |d| d.id).ok().map(|i| &self.dsts[i])
    }
}

/// `pstn=32;transc=10` → `[("pstn", 32), ("transc", 10)]`; a pair that is not `name=int`
/// (OpenSIPS's `fs://` URLs included, which siprox does not fetch) is an error.
pub fn parse_resources(text: &str) -> Result<Vec<(String, i64)>, String> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, max) = part.split_once('=').ok_or_else(|| format!("resource {part:?} is not name=capacity"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("resource name {name:?} is not a plain word"));
        }
        let max: i64 =
            max.trim().parse().map_err(|_| format!("capacity of {name:?} is not an integer: {:?}", max.trim()))?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("resource {name:?} appears twice"));
        }
        out.push((name.to_string(), max));
    }
    if out.is_empty() {
        return Err("no resources".into());
    }
    Ok(out)
}

/// Builds a table from rows. A destination whose `(id, URI)` is in `old` keeps its status.
fn build(mut rows: Vec<LbRow>, old: Option<&Table>) -> (Table, LoadReport) {
    let mut kept: HashMap<(i64, String), Arc<AtomicU8>> = HashMap::new();
    if let Some(old) = old {
        for d in &old.dsts {
            kept.insert((d.id, d.uri.to_ascii_lowercase()), d.status.clone());
        }
    }
    rows.sort_by_key(|r| r.id);
    let mut report = LoadReport::default();
    let mut table = Table::default();
    let mut groups = BTreeSet::new();
    for row in rows {
        let uri = row.dst_uri.trim().to_string();
        let skip = |why: String| format!("id {} ({uri}): {why}", row.id);
        if table.dsts.last().is_some_and(|d| d.id == row.id) {
            report.skipped.push(skip("duplicate id".into()));
            continue;
        }
        let parsed = match Uri::parse(&uri).filter(|u| u.is_sip()) {
            Some(u) => u,
            None => {
                report.skipped.push(skip("not a SIP URI".into()));
                continue;
            }
        };
        let resources = match parse_resources(&row.resources) {
            Ok(r) => r,
            Err(e) => {
                report.skipped.push(skip(e));
                continue;
            }
        };
        let host = parsed.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let status = kept.remove(&(row.id, uri.to_ascii_lowercase())).unwrap_or_default();
        for (name, _) in &resources {
            table.names.insert(name.clone());
        }
        groups.insert(row.group_id);
        table.dsts.push(Dst {
            id: row.id,
            group: row.group_id,
            ip: host.parse().ok(),
            host,
            port: parsed.port().unwrap_or(0),
            resources: resources.into_iter().map(|(name, max)| Resource { name, max: AtomicI64::new(max) }).collect(),
            probe_mode: row.probe_mode,
            attrs: row.attrs.filter(|a| !a.is_empty()),
            description: row.description.filter(|d| !d.is_empty()),
            status,
            uri,
        });
    }
    report.destinations = table.dsts.len();
    report.groups = groups.len();
    report.resources = table.names.iter().cloned().collect();
    (table, report)
}

/// The normalised configuration.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub table_name: String,
    pub interval: Option<Duration>,
    pub method: String,
    pub from: String,
    pub reply_codes: Vec<i64>,
    pub verbose: bool,
}

/// What one call chose: kept on its dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub group: i64,
    pub resources: Vec<String>,
    pub flags: Flags,
    /// Every destination used so far, the current one last.
    pub tried: Vec<i64>,
    /// The destination whose profiles the dialog is in (`None` after a failed `lb_next`).
    pub current: Option<i64>,
}

/// The session cell attached to a dialog.
type SessionCell = Mutex<Session>;

/// A destination a selection chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub id: i64,
    pub uri: String,
    pub attrs: Option<String>,
}

/// A destination as `lb_list` and the accessors show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstInfo {
    pub id: i64,
    pub group: i64,
    pub uri: String,
    pub status: Status,
    pub probe_mode: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
    /// `(name, max, load)` in row order.
    pub resources: Vec<(String, i64, u64)>,
}

/// The load balancer: its destinations, their status, and the dialog table whose profiles
/// hold the load.
pub struct LoadBalancer {
    params: Params,
    table: ArcSwap<Table>,
    dialogs: Arc<Dialogs>,
    /// Serialises [`LoadBalancer::replace`] (the build reads the table it replaces).
    replace_lock: Mutex<()>,
    /// Held from reading the loads to adding the dialog to the chosen destination's
    /// profiles: two calls selecting at once must not both take a destination's last channel.
    select_lock: Mutex<()>,
    listeners: RwLock<Vec<StatusListener>>,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer").field("destinations", &self.table.load().dsts.len()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LoadBalancer {
    /// A load balancer with no destinations yet (fill it with [`LoadBalancer::replace`]),
    /// counting load in `dialogs`' profiles.
    pub fn new(cfg: &LoadBalancerConfig, dialogs: Arc<Dialogs>) -> LoadBalancer {
        LoadBalancer {
            params: Params {
                table_name: cfg.table_name.clone(),
                interval: (cfg.probing_interval > 0).then(|| Duration::from_secs(cfg.probing_interval)),
                method: cfg.probing_method.clone(),
                from: cfg.probing_from.clone(),
                reply_codes: cfg.probing_reply_codes.clone(),
                verbose: cfg.probing_verbose,
            },
            table: ArcSwap::from_pointee(Table::default()),
            dialogs,
            replace_lock: Mutex::new(()),
            select_lock: Mutex::new(()),
            listeners: RwLock::new(Vec::new()),
        }
    }

    /// The table the destinations come from (`[load_balancer] table_name`).
    pub fn table_name(&self) -> &str {
        &self.params.table_name
    }

    /// Replaces every destination with those built from `rows`, atomically, and declares
    /// the `lbX<resource>` profiles. A destination whose `(id, dst_uri)` was loaded before
    /// keeps its status. Unusable rows are left out (logged, and listed in the report).
    pub fn replace(&self, rows: Vec<LbRow>) -> LoadReport {
        let _guard = lock(&self.replace_lock);
        let old = self.table.load_full();
        let (table, report) = build(rows, Some(&old));
        // Declared before the swap: a selection on the new table must find its profiles.
        for name in &table.names {
            self.dialogs.profiles.declare(&profile_name(name), true);
        }
        self.table.store(Arc::new(table));
        for s in &report.skipped {
            tracing::error!("load_balancer: row skipped: {s}");
        }
        tracing::info!(
            destinations = report.destinations,
            groups = report.groups,
            resources = %report.resources.join(","),
            skipped = report.skipped.len(),
            "load_balancer: destinations loaded"
        );
        report
    }

    /// Loads the table through `loader` and [`replace`](LoadBalancer::replace)s the
    /// destinations; on failure the old ones stay.
    ///
    /// # Errors
    /// The loader's error.
    pub async fn reload(&self, loader: &LbLoader) -> Result<LoadReport, String> {
        match loader().await {
            Ok(rows) => Ok(self.replace(rows)),
            Err(e) => {
                tracing::error!(error = %e, "load_balancer: reload failed; the loaded destinations stay in use");
                Err(e)
            }
        }
    }

    /// Registers a listener for every status change (probing, `lb_disable_dst`, `lb_status`).
    pub fn on_status_change(&self, f: impl Fn(&StatusChange) + Send + Sync + 'static) {
        self.listeners.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(f));
    }

    /// Moves `d` to `new` (only from `from`, when given: a probe result must not undo an
    /// operator's change that raced it); logs and announces a change.
    fn set_status(&self, d: &Dst, from: Option<Status>, new: Status) -> Option<StatusChange> {
        let old = match from {
            None => Status::from_u8(d.status.swap(new as u8, Ordering::Relaxed)),
            Some(f) => {
                d.status.compare_exchange(f as u8, new as u8, Ordering::Relaxed, Ordering::Relaxed).ok()?;
                f
            }
        };
        if old == new {
            return None;
        }
        if new.is_enabled() {
            tracing::info!(id = d.id, group = d.group, uri = %d.uri, "load_balancer: destination enabled");
        } else {
            tracing::warn!(id = d.id, group = d.group, uri = %d.uri, by_mi = (new == Status::DisabledByMi), "load_balancer: destination disabled");
        }
        let change = StatusChange { id: d.id, group: d.group, uri: d.uri.clone(), old, new };
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner()).clone();
        for l in listeners {
            l(&change);
        }
        Some(change)
    }

    /// Calls of destination `id` using `resource` (the size of `lbX<resource>` for `id`).
    pub fn load(&self, resource: &str, id: i64) -> u64 {
        self.dialogs.profiles.size(&profile_name(resource), Some(&id.to_string()))
    }

    /// Every destination with its resources' capacity and load, in id order.
    pub fn destinations(&self) -> Vec<DstInfo> {
        let table = self.table.load();
        table
            .dsts
            .iter()
            .map(|d| DstInfo {
                id: d.id,
                group: d.group,
                uri: d.uri.clone(),
                status: d.status(),
                probe_mode: d.probe_mode,
                attrs: d.attrs.clone(),
                description: d.description.clone(),
                resources: d
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), r.max.load(Ordering::Relaxed), self.load(&r.name, d.id)))
                    .collect(),
            })
            .collect()
    }

    /// Whether probing would enable destination `d` again once it answers (`auto-re` of
    /// `lb_list`): it is probed (`probe_mode` ≥ 1, probing on) and not disabled by MI.
    pub fn auto_reenable(&self, d: &DstInfo) -> bool {
        d.probe_mode >= 1 && self.params.interval.is_some() && d.status != Status::DisabledByMi
    }

    // ------------------------------------------------------------------ selection

    /// Checks the resource list: not empty, every name offered by some destination.
    fn check_resources(table: &Table, resources: &[String]) -> Result<(), LbError> {
        if resources.is_empty() {
            return Err(LbError::Internal("no resource requested".into()));
        }
        match resources.iter().find(|r| !table.names.contains(*r)) {
            Some(r) => Err(LbError::UnknownResource(r.clone())),
            None => Ok(()),
        }
    }

    /// Chooses among group `group`, skipping `tried` (the select lock is held).
    fn choose(
        &self,
        table: &Table,
        group: i64,
        resources: &[String],
        flags: Flags,
        tried: &[i64],
    ) -> Result<usize, LbError> {
        let idx: Vec<usize> = (0..table.dsts.len()).filter(|&i| table.dsts[i].group == group).collect();
        let cands: Vec<Candidate> = idx
            .iter()
            .map(|&i| {
                let d = &table.dsts[i];
                let enabled = d.status().is_enabled();
                let tried = tried.contains(&d.id);
                // Loads are read only for destinations that can be chosen.
                let res = if enabled && !tried {
                    resources
                        .iter()
                        .map(|name| d.resource(name).map(|r| (r.max.load(Ordering::Relaxed), self.load(name, d.id))))
                        .collect::<Option<Vec<_>>>()
                } else {
                    None
                };
                Candidate { id: d.id, enabled, tried, resources: res }
            })
            .collect();
        match select::choose(&cands, flags, |n| fastrand::usize(..n)) {
            Ok(i) => Ok(idx[i]),
            Err(NoPick::NoCapacity) => Err(LbError::NoCapacity(group)),
            Err(NoPick::NoDestination) => Err(LbError::NoDestination(group)),
        }
    }

    /// Puts `dlg` into the profiles of `resources` for destination `id`.
    fn join(&self, dlg: &Arc<Dialog>, id: i64, resources: &[String]) -> Result<(), LbError> {
        let value = id.to_string();
        for r in resources {
            if let Err(e) = self.dialogs.set_profile(dlg, &profile_name(r), Some(&value)) {
                self.leave(dlg, id, resources);
                return Err(LbError::Internal(e));
            }
        }
        Ok(())
    }

    /// Takes `dlg` out of the profiles of `resources` for destination `id`.
    fn leave(&self, dlg: &Arc<Dialog>, id: i64, resources: &[String]) {
        let value = id.to_string();
        for r in resources {
            self.dialogs.unset_profile(dlg, &profile_name(r), Some(&value));
        }
    }

    fn session(dlg: &Dialog) -> Option<Arc<SessionCell>> {
        dlg.ext::<SessionCell>(EXT_KEY)
    }

    /// The session of `dlg`, if `lb_start` ran on it.
    pub fn session_of(dlg: &Dialog) -> Option<Session> {
        Self::session(dlg).map(|s| lock(&s).clone())
    }

    /// `lb_start`: the best destination of `group` for `resources`; the dialog joins its
    /// profiles and carries the new session (an earlier session of the dialog is reset
    /// first).
    ///
    /// # Errors
    /// See [`LbError`]; on error the dialog is in no LB profile and has no session.
    pub fn start(
        &self,
        dlg: &Arc<Dialog>,
        group: i64,
        resources: Vec<String>,
        flags: Flags,
    ) -> Result<Chosen, LbError> {
        self.reset(dlg);
        let table = self.table.load();
        Self::check_resources(&table, &resources)?;
        let _sel = lock(&self.select_lock);
        let i = self.choose(&table, group, &resources, flags, &[])?;
        let d = &table.dsts[i];
        self.join(dlg, d.id, &resources)?;
        let session = Session { group, resources, flags, tried: vec![d.id], current: Some(d.id) };
        dlg.set_ext(EXT_KEY, Some(Arc::new(Mutex::new(session))));
        Ok(Chosen { id: d.id, uri: d.uri.clone(), attrs: d.attrs.clone() })
    }

    /// `lb_next`: the dialog leaves its current destination's profiles and joins those of
    /// the next best destination not tried yet.
    ///
    /// # Errors
    /// No session ([`LbError::Internal`]), or see [`LbError`].
    pub fn next(&self, dlg: &Arc<Dialog>) -> Result<Chosen, LbError> {
        let cell =
            Self::session(dlg).ok_or_else(|| LbError::Internal("no load-balancing session (lb_start first)".into()))?;
        let mut s = lock(&cell);
        if let Some(cur) = s.current.take() {
            self.leave(dlg, cur, &s.resources);
        }
        let table = self.table.load();
        let _sel = lock(&self.select_lock);
        let i = self.choose(&table, s.group, &s.resources, s.flags, &s.tried)?;
        let d = &table.dsts[i];
        self.join(dlg, d.id, &s.resources)?;
        s.tried.push(d.id);
        s.current = Some(d.id);
        Ok(Chosen { id: d.id, uri: d.uri.clone(), attrs: d.attrs.clone() })
    }

    /// `lb_reset`: the dialog leaves the profiles of its session's destination and
    /// forgets the session. False when it had none.
    pub fn reset(&self, dlg: &Arc<Dialog>) -> bool {
        let Some(cell) = Self::session(dlg) else { return false };
        let s = lock(&cell).clone();
        if let Some(cur) = s.current {
            self.leave(dlg, cur, &s.resources);
        }
        dlg.set_ext::<SessionCell>(EXT_KEY, None);
        true
    }

    /// `lb_disable_dst`: disables the destination the session used last (probing enables
    /// it again when its `probe_mode` is 1 or 2).
    ///
    /// # Errors
    /// No session, or its destination was reloaded away.
    pub fn disable_last(&self, dlg: &Dialog) -> Result<Option<StatusChange>, LbError> {
        let s = Self::session_of(dlg).ok_or_else(|| LbError::Internal("no load-balancing session".into()))?;
        let id = *s.tried.last().ok_or_else(|| LbError::Internal("the session used no destination".into()))?;
        let table = self.table.load();
        let d = table.get(id).ok_or_else(|| LbError::Internal(format!("destination {id} is gone")))?;
        // An operator's disable stays the operator's.
        Ok(self.set_status(d, Some(Status::Enabled), Status::Disabled))
    }

    /// The first destination (of `group`, or of any group) whose host is `ip` and whose
    /// port is `port` (0, or a URI without a port, matches any); with `active_only`,
    /// enabled ones only. Hosts written as names match `ip` by name (no DNS).
    pub fn find(&self, ip: &str, port: u16, group: Option<i64>, active_only: bool) -> Option<Chosen> {
        let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
        let addr = ip.parse::<IpAddr>().ok();
        let table = self.table.load();
        table
            .dsts
            .iter()
            .find(|d| {
                group.is_none_or(|g| g == d.group)
                    && match (addr, d.ip) {
                        (Some(a), Some(b)) => a == b,
                        (_, None) => d.host.eq_ignore_ascii_case(ip),
                        (None, Some(_)) => false,
                    }
                    && (port == 0 || d.port == 0 || d.port == port)
                    && (!active_only || d.status().is_enabled())
            })
            .map(|d| Chosen { id: d.id, uri: d.uri.clone(), attrs: d.attrs.clone() })
    }

    /// `lb_count_call`: counts `dlg` against destination `id` for `resources` (or, with
    /// `undo`, stops counting it), whatever the destination's status or capacity.
    ///
    /// # Errors
    /// Unknown resource (or one the destination does not offer), or the dialog has ended.
    pub fn count_call(&self, dlg: &Arc<Dialog>, id: i64, resources: &[String], undo: bool) -> Result<(), LbError> {
        let table = self.table.load();
        Self::check_resources(&table, resources)?;
        let d = table.get(id).ok_or_else(|| LbError::Internal(format!("destination {id} is gone")))?;
        if let Some(r) = resources.iter().find(|r| d.resource(r).is_none()) {
            return Err(LbError::Internal(format!("destination {id} does not offer {r:?}")));
        }
        if undo {
            self.leave(dlg, id, resources);
            Ok(())
        } else {
            self.join(dlg, id, resources)
        }
    }

    // ------------------------------------------------------------------ MI

    /// `lb_resize`: the capacity of `resource` at destination `id` becomes `max` (until the
    /// next reload, which reads the table again).
    ///
    /// # Errors
    /// No such destination or resource.
    pub fn resize(&self, id: i64, resource: &str, max: i64) -> Result<(), MiChangeError> {
        let table = self.table.load();
        let d = table.get(id).ok_or(MiChangeError::NoDestination(id))?;
        let r = d.resource(resource).ok_or_else(|| MiChangeError::NoResource(id, resource.to_string()))?;
        r.max.store(max, Ordering::Relaxed);
        tracing::info!(id, resource, max, "load_balancer: capacity changed");
        Ok(())
    }

    /// `lb_status id 0|1`: the operator disables (probing will not enable it again) or
    /// enables destination `id`.
    ///
    /// # Errors
    /// No such destination.
    pub fn set_enabled(&self, id: i64, enabled: bool) -> Result<Option<StatusChange>, MiChangeError> {
        let table = self.table.load();
        let d = table.get(id).ok_or(MiChangeError::NoDestination(id))?;
        Ok(self.set_status(d, None, if enabled { Status::Enabled } else { Status::DisabledByMi }))
    }

    /// The status of destination `id`.
    pub fn status(&self, id: i64) -> Option<Status> {
        self.table.load().get(id).map(Dst::status)
    }

    // ------------------------------------------------------------------ probing

    /// Seconds between probing rounds (`probing_interval`); `None` = no probing.
    pub fn probing_interval(&self) -> Option<Duration> {
        self.params.interval
    }
    pub fn probing_method(&self) -> &str {
        &self.params.method
    }
    pub fn probing_from(&self) -> &str {
        &self.params.from
    }

    /// The destinations to probe this round: `probe_mode` 2 always, `probe_mode` 1 while
    /// disabled by probing or `lb_disable_dst` (not by MI).
    pub fn probe_targets(&self) -> Vec<ProbeTarget> {
        let table = self.table.load();
        table
            .dsts
            .iter()
            .filter(|d| d.probe_mode >= 2 || (d.probe_mode == 1 && d.status() == Status::Disabled))
            .map(|d| ProbeTarget { id: d.id, uri: d.uri.clone() })
            .collect()
    }

    /// Whether `code` is a good probe reply: 200 or one of `probing_reply_codes`.
    pub fn is_good_reply(&self, code: u16) -> bool {
        code == 200 || self.params.reply_codes.contains(&i64::from(code))
    }

    /// The outcome of probing `target`: `Some(code)` the final reply, `None` no reply
    /// (408). A good reply enables the destination unless MI disabled it; 400 or more
    /// disables it. A destination reloaded away (or whose URI changed) changes nothing.
    pub fn probe_result(&self, target: &ProbeTarget, code: Option<u16>) -> Option<StatusChange> {
        let code = code.unwrap_or(408);
        let table = self.table.load();
        let d = table.get(target.id).filter(|d| d.uri == target.uri)?;
        if self.params.verbose {
            tracing::info!(id = d.id, uri = %d.uri, code, "load_balancer: probe reply");
        }
        if self.is_good_reply(code) {
            self.set_status(d, Some(Status::Disabled), Status::Enabled)
        } else if code >= 400 {
            self.set_status(d, Some(Status::Enabled), Status::Disabled)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
