//! Destination sets as loaded from the `dispatcher` table: each URI parsed once, rows
//! grouped by set and ordered by priority, and the runtime state of every destination in
//! atomics the routing path reads without a lock.

use super::{DsRow, DsState, LoadReport};
use crate::message::Uri;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// What changes at run time about one destination. A reload that keeps a URI keeps this
/// very value (shared by the old and the new sets), so an update racing the swap is not lost.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    state: AtomicU8,
    /// Consecutive failures counted towards `ds_probing_threshold`.
    pub failures: AtomicU32,
    /// Status of the last probe reply (408 for a timeout); 0 before any.
    pub last_code: AtomicU32,
    /// When the last probe result came, Unix milliseconds; 0 before any.
    pub last_probe_ms: AtomicU64,
    /// Times it was the first choice of a selection (`first_hit_counter`).
    pub chosen: AtomicU64,
    /// Algorithm 4: selections of this entry in its current turn.
    pub rr_count: AtomicU32,
    /// The `socket` column named no socket of ours (warned once).
    pub socket_warned: AtomicBool,
}

impl Runtime {
    pub(crate) fn new(state: DsState) -> Runtime {
        let rt = Runtime::default();
        rt.set_state(state);
        rt
    }
    pub(crate) fn state(&self) -> DsState {
        DsState::from_u8(self.state.load(Ordering::Relaxed))
    }
    /// Sets the state; returns the previous one.
    pub(crate) fn set_state(&self, s: DsState) -> DsState {
        DsState::from_u8(self.state.swap(s as u8, Ordering::Relaxed))
    }
    /// Moves from `old` to `new` only if the state is still `old`.
    pub(crate) fn transition(&self, old: DsState, new: DsState) -> bool {
        self.state.compare_exchange(old as u8, new as u8, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// One destination of a set.
#[derive(Debug)]
pub(crate) struct Dest {
    pub id: i64,
    /// As written in the table.
    pub uri: String,
    /// Host, lower case, IPv6 without brackets.
    pub host: String,
    /// The host when it is an IP literal.
    pub ip: Option<IpAddr>,
    /// The URI's port; 0 when it has none (matches any port in `ds_is_in_list`).
    pub port: u16,
    /// `host[:port]` as written, for `ds_select_domain`.
    pub hostport: String,
    /// Local socket to send from, `proto:ip:port`.
    pub socket: Option<String>,
    pub weight: u32,
    pub priority: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
    pub probe_mode: i64,
    pub rt: Arc<Runtime>,
}

impl Dest {
    pub(crate) fn state(&self) -> DsState {
        self.rt.state()
    }
    pub(crate) fn is_active(&self) -> bool {
        self.rt.state() == DsState::Active
    }
}

/// One destination set, its entries by priority (higher first, table order within a priority).
#[derive(Debug)]
pub(crate) struct DsSet {
    pub id: i64,
    pub dests: Vec<Dest>,
    /// Index of the last destination used (round robin).
    pub last: AtomicUsize,
}

/// Every set, by id.
#[derive(Debug, Default)]
pub(crate) struct Sets {
    pub list: Vec<Arc<DsSet>>,
}

impl Sets {
    pub(crate) fn get(&self, id: i64) -> Option<&Arc<DsSet>> {
        self.list.binary_search_by_key(&id, |s| s.id).ok().map(|i| &self.list[i])
    }
    pub(crate) fn destinations(&self) -> impl Iterator<Item = (&DsSet, &Dest)> + '_ {
        self.list.iter().flat_map(|s| s.dests.iter().map(move |d| (&**s, d)))
    }
}

/// `udp:10.0.0.1:5060` from what a `socket` column may hold: `[proto:]host[:port]`.
pub(crate) fn normalize_socket(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (proto, rest) = match s.split_once(':') {
        Some((p, rest)) if ["udp", "tcp", "tls", "ws", "wss", "sctp"].contains(&p.to_ascii_lowercase().as_str()) => {
            (p.to_ascii_lowercase(), rest)
        }
        _ => ("udp".to_string(), s),
    };
    let has_port = if rest.starts_with('[') { rest.rfind("]:").is_some() } else { rest.matches(':').count() == 1 };
    if has_port {
        Some(format!("{proto}:{rest}"))
    } else if rest.contains(':') && !rest.starts_with('[') {
        Some(format!("{proto}:[{rest}]:5060"))
    } else {
        Some(format!("{proto}:{rest}:5060"))
    }
}

/// A destination URI checked and split once, at load time.
fn parse_dest(row: &DsRow) -> Result<(String, Option<IpAddr>, u16, String), String> {
    let text = row.destination.trim();
    let uri = Uri::parse(text).ok_or_else(|| format!("set {}: {text:?} is not a URI", row.setid))?;
    if !uri.is_sip() {
        return Err(format!("set {}: {text:?} is not a SIP URI", row.setid));
    }
    let host = uri.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    Ok((host, ip, uri.port().unwrap_or(0), uri.hostport().to_string()))
}

/// `weight`: an integer as text, 1 when empty; anything else (an `fs://` URL) counts as 1.
fn parse_weight(row: &DsRow) -> u32 {
    let w = row.weight.trim();
    if w.is_empty() {
        return 1;
    }
    match w.parse::<i64>() {
        Ok(n) => n.clamp(0, u32::MAX as i64) as u32,
        Err(_) => {
            tracing::warn!(setid = row.setid, uri = %row.destination, weight = w, "dispatcher: weight is not an integer; using 1");
            1
        }
    }
}

/// Builds sets from table rows. With `inherit`, a destination whose `(setid, URI)` exists in
/// `old` keeps its runtime state; otherwise it starts in the row's `state` when `persistent`,
/// else active. Rows that cannot be used are skipped and reported.
pub(crate) fn build(rows: Vec<DsRow>, old: Option<&Sets>, inherit: bool, persistent: bool) -> (Sets, LoadReport) {
    let mut kept: HashMap<(i64, String), Vec<Arc<Runtime>>> = HashMap::new();
    if let (Some(old), true) = (old, inherit) {
        for (set, d) in old.destinations() {
            kept.entry((set.id, d.uri.to_ascii_lowercase())).or_default().push(d.rt.clone());
        }
        for v in kept.values_mut() {
            v.reverse();
        }
    }
    let mut report = LoadReport::default();
    let mut by_set: BTreeMap<i64, Vec<Dest>> = BTreeMap::new();
    for row in rows {
        let (host, ip, port, hostport) = match parse_dest(&row) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(id = row.id, "dispatcher: row skipped: {e}");
                report.skipped.push(e);
                continue;
            }
        };
        let uri = row.destination.trim().to_string();
        let rt = kept.get_mut(&(row.setid, uri.to_ascii_lowercase())).and_then(Vec::pop).unwrap_or_else(|| {
            let state = if persistent { DsState::from_db(row.state) } else { DsState::Active };
            Arc::new(Runtime::new(state))
        });
        let dest = Dest {
            id: row.id,
            host,
            ip,
            port,
            hostport,
            socket: row.socket.as_deref().and_then(normalize_socket),
            weight: parse_weight(&row),
            priority: row.priority,
            attrs: row.attrs.filter(|a| !a.is_empty()),
            description: row.description.filter(|d| !d.is_empty()),
            probe_mode: row.probe_mode,
            uri,
            rt,
        };
        by_set.entry(row.setid).or_default().push(dest);
    }
    let list: Vec<Arc<DsSet>> = by_set
        .into_iter()
        .map(|(id, mut dests)| {
            // Stable: table order stays within one priority.
            dests.sort_by_key(|d| std::cmp::Reverse(d.priority));
            report.destinations += dests.len();
            Arc::new(DsSet { id, dests, last: AtomicUsize::new(0) })
        })
        .collect();
    report.sets = list.len();
    (Sets { list }, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets() {
        assert_eq!(normalize_socket("udp:10.0.0.1:5060").as_deref(), Some("udp:10.0.0.1:5060"));
        assert_eq!(normalize_socket("TCP:10.0.0.1").as_deref(), Some("tcp:10.0.0.1:5060"));
        assert_eq!(normalize_socket("10.0.0.1:5080").as_deref(), Some("udp:10.0.0.1:5080"));
        assert_eq!(normalize_socket("udp:[::1]:5060").as_deref(), Some("udp:[::1]:5060"));
        assert_eq!(normalize_socket("udp:[::1]").as_deref(), Some("udp:[::1]:5060"));
        assert_eq!(normalize_socket(" "), None);
    }
}
