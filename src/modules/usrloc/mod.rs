//! usrloc (spec §8.1): the location table — address-of-record → contacts — held in memory,
//! where `lookup` reads it without waiting, and written behind to the `location` table as
//! `working_mode_preset` says (docs/usrloc.md).
//!
//! Every change goes out on one stream ([`Usrloc::subscribe`]) that the writer of
//! [`persist`] turns into SQL; changes read back from a shared table (another node's
//! registrations) come in through [`Usrloc::apply_remote`] and produce no change, so nothing
//! echoes back.

pub mod mi;
pub mod persist;
pub mod store;

use crate::config::UsrlocConfig;
use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;

#[derive(Debug, Error)]
pub enum UsrlocError {
    #[error("unknown working_mode_preset {0:?} (single-instance-no-db, single-instance-sql-write-through, single-instance-sql-write-back, sql-only)")]
    Mode(String),
    #[error("db_mode must be 0–3, got {0}")]
    DbMode(u8),
    #[error("database: {0}")]
    Db(String),
}

/// How the table is kept (OpenSIPS `working_mode_preset`, spec §8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkingMode {
    /// Memory only, lost on restart.
    NoDb,
    /// Every change written at once (behind the memory copy), reloaded on start.
    WriteThrough,
    /// Changes written every `timer_interval`, reloaded on start.
    WriteBack,
    /// One table shared by several nodes: every change written at once, and the other
    /// nodes' changes read back every `sync_interval_ms` (siprox keeps a memory copy so
    /// routing never waits on the database; see docs/usrloc.md).
    SqlOnly,
}

impl WorkingMode {
    /// # Errors
    /// A preset or db_mode OpenSIPS does not have, or a cluster preset siprox does not do.
    pub fn from_config(cfg: &UsrlocConfig) -> Result<WorkingMode, UsrlocError> {
        match cfg.working_mode_preset.trim() {
            "" => match cfg.db_mode.unwrap_or(0) {
                0 => Ok(WorkingMode::NoDb),
                1 => Ok(WorkingMode::WriteThrough),
                2 => Ok(WorkingMode::WriteBack),
                3 => Ok(WorkingMode::SqlOnly),
                n => Err(UsrlocError::DbMode(n)),
            },
            "single-instance-no-db" => Ok(WorkingMode::NoDb),
            "single-instance-sql-write-through" => Ok(WorkingMode::WriteThrough),
            "single-instance-sql-write-back" => Ok(WorkingMode::WriteBack),
            "sql-only" => Ok(WorkingMode::SqlOnly),
            other => Err(UsrlocError::Mode(other.to_string())),
        }
    }

    pub fn uses_db(self) -> bool {
        self != WorkingMode::NoDb
    }

    pub fn name(self) -> &'static str {
        match self {
            WorkingMode::NoDb => "single-instance-no-db",
            WorkingMode::WriteThrough => "single-instance-sql-write-through",
            WorkingMode::WriteBack => "single-instance-sql-write-back",
            WorkingMode::SqlOnly => "sql-only",
        }
    }
}

/// usrloc `flags` bit of a binding kept in memory only (`save(…, "memory-only")`): never
/// written to the database. The same bit as `registrar::FL_MEM`.
pub const FL_MEM: u32 = 1;

/// q as OpenSIPS keeps it: thousandths, -1 when the contact gave none.
pub const Q_UNSPECIFIED: i32 = -1;

/// One binding of an AoR: a row of the `location` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    /// `contact_id`: random, kept for the binding's life (unique across nodes).
    pub id: i64,
    /// `user` or `user@domain` (`use_domain`).
    pub aor: String,
    /// The Contact URI as registered.
    pub uri: String,
    /// Where the phone really is (`fix_nated_register`): `sip:ip:port[;transport=x]`.
    pub received: Option<String>,
    /// The Path header values of the REGISTER (RFC 3327), comma-joined.
    pub path: Option<String>,
    /// Absolute expiry, Unix seconds; 0 = permanent (`ul_add` with expires 0).
    pub expires: i64,
    /// Thousandths; [`Q_UNSPECIFIED`] when none.
    pub q: i32,
    pub callid: String,
    pub cseq: u32,
    /// Unix seconds of the last change.
    pub last_modified: i64,
    /// usrloc flags (`flags` column).
    pub flags: u32,
    /// Branch flags saved with the binding (the NAT flag), restored by `lookup`.
    pub cflags: u64,
    pub user_agent: String,
    /// The socket the REGISTER came in on, `proto:ip:port`.
    pub socket: Option<String>,
    /// Methods from Allow as OpenSIPS's bit mask; `None`: all.
    pub methods: Option<u32>,
    /// `+sip.instance` (RFC 5626 §4.1), with its angle brackets and quotes removed.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626 §4.2); 0 when none.
    pub reg_id: u32,
    pub attr: Option<String>,
    /// Keep-alive pings sent since the last answer (not stored).
    pub pings_lost: u32,
}

impl Contact {
    /// Still a binding at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires == 0 || self.expires > now
    }

    /// Seconds left at `now` (0 for a permanent contact's "no expiry").
    pub fn remaining(&self, now: i64) -> i64 {
        if self.expires == 0 {
            0
        } else {
            (self.expires - now).max(0)
        }
    }

    /// A fresh random `contact_id`, positive so every backend's BIGINT holds it.
    pub fn new_id() -> i64 {
        (fastrand::u64(1..u64::MAX >> 1)) as i64
    }
}

/// OpenSIPS's method bits (parser/msg_parser.h facts): the `methods` column's encoding.
pub const METHOD_BITS: &[(&str, u32)] = &[
    ("INVITE", 1),
    ("CANCEL", 2),
    ("ACK", 4),
    ("BYE", 8),
    ("INFO", 16),
    ("OPTIONS", 32),
    ("UPDATE", 64),
    ("REGISTER", 128),
    ("MESSAGE", 256),
    ("SUBSCRIBE", 512),
    ("NOTIFY", 1024),
    ("PRACK", 2048),
    ("REFER", 4096),
    ("PUBLISH", 8192),
];

/// The bit of `method`; 0 for a method outside the table (never filtered out).
pub fn method_bit(method: &str) -> u32 {
    METHOD_BITS.iter().find(|(m, _)| m.eq_ignore_ascii_case(method)).map_or(0, |(_, b)| *b)
}

/// What the writer behind the table does.
#[derive(Clone, Debug)]
// Every REGISTER sends a `Saved`: boxing it would add an allocation per binding change on
// the routing path to spare a few bytes on the rarer `Removed`.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Insert or update the row of this binding.
    Saved { table: Arc<str>, contact: Contact },
    /// Delete the row of this binding.
    Removed { table: Arc<str>, id: i64 },
}

/// `usrloc:` statistics.
#[derive(Default, Debug)]
pub struct UlStats {
    pub expired: AtomicU64,
}

/// One usrloc domain (`save("location")`'s first argument): AoR → bindings.
#[derive(Default)]
pub struct Table {
    records: DashMap<String, Vec<Contact>>,
    /// `contact_id` → AoR, for changes that name only the row.
    ids: DashMap<i64, String>,
}

impl Table {
    pub fn aors(&self) -> usize {
        self.records.len()
    }

    pub fn contacts(&self) -> usize {
        self.ids.len()
    }
}

/// The bindings of one AoR while [`Usrloc::update`] holds them; every change made through it
/// is written behind.
pub struct Record<'a> {
    contacts: &'a mut Vec<Contact>,
    changes: Vec<Change>,
    table: &'a Arc<str>,
}

impl Record<'_> {
    pub fn contacts(&self) -> &[Contact] {
        self.contacts
    }

    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    /// Inserts `c`, or replaces the binding with its `id`.
    pub fn put(&mut self, c: Contact) {
        self.changes.push(Change::Saved { table: self.table.clone(), contact: c.clone() });
        match self.contacts.iter_mut().find(|x| x.id == c.id) {
            Some(slot) => *slot = c,
            None => self.contacts.push(c),
        }
    }

    /// Removes the binding at `idx`.
    pub fn remove(&mut self, idx: usize) -> Contact {
        let c = self.contacts.remove(idx);
        self.changes.push(Change::Removed { table: self.table.clone(), id: c.id });
        c
    }

    /// Removes every binding `f` picks; how many went.
    pub fn remove_where(&mut self, mut f: impl FnMut(&Contact) -> bool) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.contacts.len() {
            if f(&self.contacts[i]) {
                self.remove(i);
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }
}

/// Every usrloc domain of this node.
pub struct Usrloc {
    mode: WorkingMode,
    pub use_domain: bool,
    pub desc_time_order: bool,
    pub matching_mode: u8,
    pub cseq_delay: u64,
    pub nat_bflag: Option<String>,
    tables: DashMap<Arc<str>, Arc<Table>>,
    changes: ArcSwapOption<mpsc::UnboundedSender<Change>>,
    pub stats: UlStats,
}

/// Unix time in seconds.
pub fn now() -> i64 {
    crate::dialog::unix_now()
}

impl Usrloc {
    /// The table of `cfg`; an unknown preset (which `Config::validate` rejects before this)
    /// falls back to memory only.
    pub fn new(cfg: &UsrlocConfig) -> Usrloc {
        let mode = WorkingMode::from_config(cfg).unwrap_or_else(|e| {
            tracing::error!(error = %e, "usrloc: memory only");
            WorkingMode::NoDb
        });
        let tables = DashMap::new();
        // `location` is there from the start, as every OpenSIPS script names it: `ul_dump`
        // and `ul_show_contact` answer for it before the first REGISTER.
        tables.insert(Arc::from("location"), Arc::default());
        Usrloc {
            mode,
            use_domain: cfg.use_domain,
            desc_time_order: cfg.desc_time_order,
            matching_mode: cfg.matching_mode,
            cseq_delay: cfg.cseq_delay,
            nat_bflag: cfg.nat_bflag.clone(),
            tables,
            changes: ArcSwapOption::empty(),
            stats: UlStats::default(),
        }
    }

    pub fn mode(&self) -> WorkingMode {
        self.mode
    }

    /// The stream of changes the writer works from; one subscriber (a later call replaces it).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.changes.store(Some(Arc::new(tx)));
        rx
    }

    fn emit(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(tx) = self.changes.load().as_ref() {
            for c in changes {
                let _ = tx.send(c);
            }
        }
    }

    /// The table named `name`, made on first use as OpenSIPS registers a domain when a
    /// script names it.
    pub fn table(&self, name: &str) -> Arc<Table> {
        if let Some(t) = self.tables.get(name) {
            return t.clone();
        }
        self.tables.entry(Arc::from(name)).or_default().clone()
    }

    fn table_key(&self, name: &str) -> Arc<str> {
        match self.tables.get(name) {
            Some(e) => e.key().clone(),
            None => {
                self.table(name);
                self.tables.get(name).map_or_else(|| Arc::from(name), |e| e.key().clone())
            }
        }
    }

    /// The names of the tables in use.
    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tables.iter().map(|e| e.key().to_string()).collect();
        v.sort();
        v
    }

    /// Live bindings of `aor`, best first: by q (unspecified last), then newest first — or
    /// newest first only with `desc_time_order`.
    pub fn lookup(&self, table: &str, aor: &str, now: i64) -> Vec<Contact> {
        let Some(t) = self.tables.get(table).map(|t| t.clone()) else { return Vec::new() };
        let mut v: Vec<Contact> = match t.records.get(aor) {
            Some(r) => r.iter().filter(|c| c.is_live(now)).cloned().collect(),
            None => return Vec::new(),
        };
        self.sort(&mut v);
        v
    }

    /// Orders bindings as `lookup` returns them.
    pub fn sort(&self, v: &mut [Contact]) {
        if self.desc_time_order {
            v.sort_by_key(|c| std::cmp::Reverse(c.last_modified));
        } else {
            v.sort_by(|a, b| b.q.cmp(&a.q).then(b.last_modified.cmp(&a.last_modified)));
        }
    }

    /// Runs `f` on the bindings of `aor` (empty when none) with the record locked, then
    /// writes its changes behind. No I/O may happen inside `f`.
    pub fn update<T>(&self, table: &str, aor: &str, f: impl FnOnce(&mut Record<'_>) -> T) -> T {
        let key = self.table_key(table);
        let t = self.table(table);
        let (out, changes) = {
            let mut entry = t.records.entry(aor.to_string()).or_default();
            let before: Vec<i64> = entry.iter().map(|c| c.id).collect();
            let mut rec = Record { contacts: entry.value_mut(), changes: Vec::new(), table: &key };
            let out = f(&mut rec);
            let changes = std::mem::take(&mut rec.changes);
            for id in before {
                if !entry.iter().any(|c| c.id == id) {
                    t.ids.remove(&id);
                }
            }
            for c in entry.iter() {
                t.ids.insert(c.id, aor.to_string());
            }
            (out, changes)
        };
        t.records.remove_if(aor, |_, v| v.is_empty());
        self.emit(changes);
        out
    }

    /// `ul_rm`: every binding of `aor`; how many went.
    pub fn remove_aor(&self, table: &str, aor: &str) -> usize {
        if !self.tables.get(table).is_some_and(|t| t.records.contains_key(aor)) {
            return 0;
        }
        self.update(table, aor, |r| r.remove_where(|_| true))
    }

    /// Puts a binding read from the table (a start-up load, another node's change)
    /// without writing it back — except when memory already holds the same binding under
    /// another id (a REGISTER taken before the load finished, or by two nodes before either
    /// read the other's row): the newer of the two stays and the other's row is deleted.
    pub fn apply_remote(&self, table: &str, c: Contact) {
        let t = self.table(table);
        let twin = t.records.get(&c.aor).and_then(|rec| {
            rec.iter().find(|x| x.id != c.id && self.same_binding(x, &c)).map(|x| (x.id, x.last_modified))
        });
        if let Some((twin_id, twin_modified)) = twin {
            let key = self.table_key(table);
            if twin_modified >= c.last_modified {
                self.emit(vec![Change::Removed { table: key, id: c.id }]);
                return;
            }
            self.drop_local(&t, &c.aor, twin_id);
            self.emit(vec![Change::Removed { table: key, id: twin_id }]);
        }
        if let Some(old_aor) = t.ids.get(&c.id).map(|a| a.clone()) {
            if old_aor != c.aor {
                self.drop_local(&t, &old_aor, c.id);
            }
        }
        t.ids.insert(c.id, c.aor.clone());
        let mut rec = t.records.entry(c.aor.clone()).or_default();
        match rec.iter_mut().find(|x| x.id == c.id) {
            Some(slot) => {
                let lost = slot.pings_lost;
                *slot = c;
                slot.pings_lost = lost;
            }
            None => rec.push(c),
        }
    }

    /// Whether `a` and `b` are one binding under two ids: the same `+sip.instance` and reg-id,
    /// else the same Contact URI (and Call-ID in matching mode 1).
    fn same_binding(&self, a: &Contact, b: &Contact) -> bool {
        match (&a.instance, &b.instance) {
            (Some(x), Some(y)) => x == y && a.reg_id == b.reg_id,
            (None, None) => a.uri.eq_ignore_ascii_case(&b.uri) && (self.matching_mode == 0 || a.callid == b.callid),
            _ => false,
        }
    }

    /// Drops the binding `id` that the table no longer has, without writing anything.
    pub fn remove_remote(&self, table: &str, id: i64) -> bool {
        let Some(t) = self.tables.get(table).map(|t| t.clone()) else { return false };
        let Some(aor) = t.ids.get(&id).map(|a| a.clone()) else { return false };
        self.drop_local(&t, &aor, id)
    }

    fn drop_local(&self, t: &Table, aor: &str, id: i64) -> bool {
        let mut gone = false;
        if let Some(mut rec) = t.records.get_mut(aor) {
            let n = rec.len();
            rec.retain(|c| c.id != id);
            gone = rec.len() != n;
        }
        t.records.remove_if(aor, |_, v| v.is_empty());
        t.ids.remove(&id);
        gone
    }

    /// Forgets every binding without writing anything (the dry run's fresh state per case).
    pub fn clear(&self) {
        self.tables.clear();
    }

    /// The ids of every binding of `table` in memory.
    pub fn ids(&self, table: &str) -> Vec<i64> {
        self.tables.get(table).map(|t| t.ids.iter().map(|e| *e.key()).collect()).unwrap_or_default()
    }

    /// Every AoR of `table` with its bindings (`ul_dump`), AoRs sorted.
    pub fn dump(&self, table: &str) -> Vec<(String, Vec<Contact>)> {
        let Some(t) = self.tables.get(table).map(|t| t.clone()) else { return Vec::new() };
        let mut v: Vec<(String, Vec<Contact>)> = t
            .records
            .iter()
            .map(|e| {
                let mut cs = e.value().clone();
                self.sort(&mut cs);
                (e.key().clone(), cs)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The live bindings of every table that `pick` selects (the keep-alive pinger takes a
    /// slice of them per tick; only those are copied).
    pub fn live_where(&self, now: i64, mut pick: impl FnMut(&Contact) -> bool) -> Vec<(Arc<str>, Contact)> {
        let mut out = Vec::new();
        for t in self.tables.iter() {
            for r in t.value().records.iter() {
                out.extend(
                    r.value().iter().filter(|c| c.is_live(now) && pick(c)).map(|c| (t.key().clone(), c.clone())),
                );
            }
        }
        out
    }

    /// Drops expired bindings (and writes their removal behind); how many went.
    ///
    /// In `sql-only` the rows are shared: another node may have refreshed a binding this node
    /// has not read back yet, so the sweep only forgets it here, and the writer's conditional
    /// `DELETE … WHERE expires <= now` clears the table.
    pub fn sweep(&self, now: i64) -> usize {
        let mut expired = Vec::new();
        for t in self.tables.iter() {
            for r in t.value().records.iter() {
                if r.value().iter().any(|c| !c.is_live(now)) {
                    expired.push((t.key().clone(), r.key().clone()));
                }
            }
        }
        let mut n = 0;
        for (table, aor) in expired {
            if self.mode == WorkingMode::SqlOnly {
                let Some(t) = self.tables.get(&table).map(|t| t.clone()) else { continue };
                let gone: Vec<i64> = t
                    .records
                    .get(&aor)
                    .map(|r| r.iter().filter(|c| !c.is_live(now)).map(|c| c.id).collect())
                    .unwrap_or_default();
                n += gone.iter().filter(|id| self.drop_local(&t, &aor, **id)).count();
            } else {
                n += self.update(&table, &aor, |r| r.remove_where(|c| !c.is_live(now)));
            }
        }
        self.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// A keep-alive ping of binding `id` went unanswered (`ok` false) or was answered;
    /// returns the number lost in a row now.
    pub fn ping_result(&self, table: &str, id: i64, ok: bool) -> u32 {
        let Some(t) = self.tables.get(table).map(|t| t.clone()) else { return 0 };
        let Some(aor) = t.ids.get(&id).map(|a| a.clone()) else { return 0 };
        let Some(mut rec) = t.records.get_mut(&aor) else { return 0 };
        match rec.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.pings_lost = if ok { 0 } else { c.pings_lost + 1 };
                c.pings_lost
            }
            None => 0,
        }
    }

    /// Removes binding `id` (a contact that stopped answering pings); written behind.
    pub fn remove_id(&self, table: &str, id: i64) -> bool {
        let Some(aor) = self.tables.get(table).and_then(|t| t.ids.get(&id).map(|a| a.clone())) else { return false };
        self.update(table, &aor, |r| r.remove_where(|c| c.id == id)) > 0
    }

    /// Bindings and AoRs over every table (`usrloc:` statistics).
    pub fn counts(&self) -> (usize, usize) {
        self.tables.iter().fold((0, 0), |(a, c), t| (a + t.aors(), c + t.contacts()))
    }

    /// The sweep of expired bindings, every second.
    pub fn start_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ul = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ul) = ul.upgrade() else { return };
                ul.sweep(now());
            }
        })
    }
}

#[cfg(test)]
mod tests;
