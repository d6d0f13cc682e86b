//! `working_mode_preset`: the location table written behind the memory copy, read back at
//! start, and (`sql-only`) kept in step with the other nodes sharing it (docs/usrloc.md).
//!
//! ```text
//! Usrloc ─ Change::{Saved, Removed} ─▶ writer task ─ pending (latest per binding) ─▶ store.rs
//!   write-through, sql-only: written as soon as they come (what piled up: one transaction)
//!   write-back:              every timer_interval, and at shutdown (Writer::flush)
//!   sql-only:                every sync_interval_ms the rows other nodes wrote are read
//!                            back (apply_remote), and every few seconds the ids compared
//!   every mode with a DB:    on request (UsrlocStore::refresh, `ul_refresh`) both at once,
//!                            e.g. by a standby taking over from the node that wrote them
//! ```
//!
//! The routing path only puts a change on an unbounded channel. One task owns the channel,
//! the pending set and the reads of the shared table, so a read never races a write of its
//! own node: a binding with a change pending is never overwritten by an older row. Failed
//! writes stay pending and are tried again with a growing pause (transient errors) or
//! dropped with an error in the log (retrying cannot help). Bindings saved `memory-only`
//! ([`FL_MEM`]) never reach the table.

use super::store::{self, DEFAULT_TABLE};
use super::{now, Change, Contact, Usrloc, WorkingMode, FL_MEM};
use crate::config::UsrlocConfig;
use crate::db::wait::{next_tick, recv, sleep_until};
use crate::db::{Db, DbError, RetryPolicy};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// First pause after a failed write; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// How far back (ms) each `sql-only` read looks before the newest stamp it saw: a row is
/// stamped when its statement runs but seen only once its transaction commits, so a slow
/// commit can land behind a read. Reading it again is harmless (an upsert in memory).
const STAMP_MARGIN_MS: i64 = 5_000;

/// How often (`sql-only`) the ids of memory and table are compared: deletions leave no
/// stamped row to read, so this is how another node's removals are seen.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// One binding's row: which table, which `contact_id`.
type Key = (Arc<str>, i64);

/// What is to be done to one binding's row.
#[derive(Clone, Debug)]
// Removals are the rare entry, and boxing every save would cost an allocation per change.
#[allow(clippy::large_enum_variant)]
enum Op {
    Save(Contact),
    Remove,
}

/// What the management interface and shutdown ask of the writer task.
enum Request {
    /// Write everything pending now (`ul_flush`, shutdown).
    Flush(oneshot::Sender<Result<usize, DbError>>),
    /// Make the table hold exactly the memory copy (`ul_sync`).
    Sync(String, oneshot::Sender<Result<usize, DbError>>),
    /// Make the memory copy hold exactly the table's live rows (`ul_refresh`).
    Refresh(oneshot::Sender<Result<usize, DbError>>),
}

/// What the management interface holds of the writer: its mode and a way to ask it.
#[derive(Clone)]
pub struct UsrlocStore {
    mode: WorkingMode,
    requests: Option<mpsc::UnboundedSender<Request>>,
}

impl UsrlocStore {
    /// A store that writes nothing (`single-instance-no-db`).
    pub fn memory_only() -> UsrlocStore {
        UsrlocStore { mode: WorkingMode::NoDb, requests: None }
    }

    pub fn mode(&self) -> WorkingMode {
        self.mode
    }

    /// Writes what is pending now; how many rows were written or removed (0 with no
    /// database).
    ///
    /// # Errors
    /// A write failed (what failed stays pending), or the writer stopped.
    pub async fn flush(&self) -> Result<usize, DbError> {
        match &self.requests {
            Some(tx) => ask(tx, Request::Flush).await,
            None => Ok(0),
        }
    }

    /// Makes `table` hold exactly its memory-kept bindings (`ul_sync`); how many rows it
    /// holds now.
    ///
    /// # Errors
    /// No database, `sql-only` (the table is the shared copy, not this node's), or the
    /// write failed.
    pub async fn sync(&self, table: &str) -> Result<usize, DbError> {
        match (&self.requests, self.mode) {
            (_, WorkingMode::SqlOnly) => {
                Err(DbError::Invalid("ul_sync: the table is shared in sql-only; nothing to sync".into()))
            }
            (Some(tx), _) => {
                let table = table.to_string();
                ask(tx, |reply| Request::Sync(table, reply)).await
            }
            (None, _) => Err(DbError::Invalid("ul_sync: usrloc keeps no database (single-instance-no-db)".into())),
        }
    }

    /// Brings memory up to date with the table now, in every mode that keeps one (not only
    /// `sql-only`, which does it on its own): the rows changed since the last read are put
    /// in, bindings whose row is gone are dropped, live rows memory lacks are loaded. A
    /// standby that loaded the table at start and sat idle calls it (`ul_refresh`) as it
    /// takes over, and then holds what the active node wrote. Returns how many bindings
    /// were put in or dropped (0 with no database).
    ///
    /// # Errors
    /// The table could not be read (memory stays as it was), or the writer stopped.
    pub async fn refresh(&self) -> Result<usize, DbError> {
        match &self.requests {
            Some(tx) => ask(tx, Request::Refresh).await,
            None => Ok(0),
        }
    }
}

/// Sends a request to the writer task and waits for its answer.
async fn ask(
    tx: &mpsc::UnboundedSender<Request>,
    make: impl FnOnce(oneshot::Sender<Result<usize, DbError>>) -> Request,
) -> Result<usize, DbError> {
    let stopped = || DbError::Invalid("the usrloc writer has stopped".into());
    let (reply, answer) = oneshot::channel();
    tx.send(make(reply)).map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The task that keeps the table (every mode but no-db). Dropping it stops the task; call
/// [`Writer::flush`] first to write what is pending.
pub struct Writer {
    store: UsrlocStore,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Writer {
    /// The handle the management interface uses.
    pub fn store(&self) -> UsrlocStore {
        self.store.clone()
    }

    /// Writes now what would otherwise be written later (write-back's next period).
    /// Shutdown calls it. Returns how many rows were written or removed.
    ///
    /// # Errors
    /// A write failed; what failed stays pending.
    pub async fn flush(&self) -> Result<usize, DbError> {
        self.store.flush().await
    }
}

/// Starts keeping `ul` in the database as its working mode says; `None` for
/// `single-instance-no-db`. Must run inside a tokio runtime. The table is loaded into
/// memory once the migrations ran ([`Db::wait_ready`]); changes made meanwhile wait.
pub fn start_writer(db: Arc<Db>, ul: Arc<Usrloc>, cfg: &UsrlocConfig) -> Option<Writer> {
    let mode = ul.mode();
    if !mode.uses_db() {
        return None;
    }
    let (tx, requests) = mpsc::unbounded_channel();
    let store = UsrlocStore { mode, requests: Some(tx) };
    let task = Task {
        changes: Some(ul.subscribe()),
        db,
        ul,
        requests,
        pending: BTreeMap::new(),
        mem_only: HashSet::new(),
        period: (mode == WorkingMode::WriteBack).then(|| Duration::from_secs(cfg.timer_interval.max(1))),
        poll: (mode == WorkingMode::SqlOnly).then(|| Duration::from_millis(cfg.sync_interval_ms.max(10))),
        expiry_every: Duration::from_secs(cfg.timer_interval.max(1)),
        pause: None,
        since: HashMap::new(),
        last_reconcile: Instant::now(),
    };
    tracing::info!(mode = mode.name(), "usrloc keeps its contacts in the database");
    Some(Writer { store, task: Some(tokio::spawn(task.run())) })
}

/// The writer task's state.
struct Task {
    db: Arc<Db>,
    ul: Arc<Usrloc>,
    /// `None` once the table stopped sending (dropped, or another subscriber).
    changes: Option<mpsc::UnboundedReceiver<Change>>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// The latest operation of every binding not yet written.
    pending: BTreeMap<Key, Op>,
    /// Bindings seen saved `memory-only`: their removal has no row to delete.
    mem_only: HashSet<Key>,
    /// write-back: the flush period.
    period: Option<Duration>,
    /// sql-only: how often the shared table is read back.
    poll: Option<Duration>,
    /// How often rows that expired (and that no node has in memory to remove) are deleted.
    expiry_every: Duration,
    /// After a failed write: the current pause and when the next attempt is due.
    pause: Option<(Duration, Instant)>,
    /// sql-only: per table, the newest `siprox_stamp` read.
    since: HashMap<String, i64>,
    last_reconcile: Instant,
}

fn interval(every: Option<Duration>) -> Option<tokio::time::Interval> {
    every.map(|p| {
        let mut t = tokio::time::interval_at(Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

impl Task {
    async fn run(mut self) {
        self.until_ready().await;
        self.load().await;
        let mut flush_tick = interval(self.period);
        let mut poll_tick = interval(self.poll);
        let mut expiry_tick = interval(Some(self.expiry_every));
        loop {
            let retry_at = self.pause.map(|(_, at)| at);
            // write-through and sql-only write as soon as something is pending.
            let write_now = flush_tick.is_none() && !self.pending.is_empty() && retry_at.is_none();
            tokio::select! {
                biased;
                req = self.requests.recv() => match req {
                    Some(Request::Flush(reply)) => {
                        self.drain();
                        let r = self.write_pending().await;
                        let _ = reply.send(r);
                    }
                    Some(Request::Sync(table, reply)) => {
                        self.drain();
                        let r = self.sync(&table).await;
                        let _ = reply.send(r);
                    }
                    Some(Request::Refresh(reply)) => {
                        let r = self.refresh().await;
                        let _ = reply.send(r);
                    }
                    None => return,
                },
                _ = std::future::ready(()), if write_now => {
                    self.drain();
                    let _ = self.write_pending().await;
                }
                change = recv(&mut self.changes) => match change {
                    Some(c) => self.queue(c),
                    None => self.changes = None,
                },
                _ = sleep_until(retry_at), if retry_at.is_some() && flush_tick.is_none() => {
                    self.drain();
                    let _ = self.write_pending().await;
                }
                _ = next_tick(&mut flush_tick), if flush_tick.is_some() => {
                    self.drain();
                    let _ = self.write_pending().await;
                }
                _ = next_tick(&mut poll_tick), if poll_tick.is_some() => {
                    self.drain();
                    self.read_back().await;
                }
                _ = next_tick(&mut expiry_tick) => self.delete_expired().await,
            }
        }
    }

    /// Waits for the migrations (PostgreSQL/MySQL down at start: the table may not exist
    /// yet). Changes are coalesced into `pending` meanwhile, and requests are answered at
    /// once instead of hanging.
    async fn until_ready(&mut self) {
        let db = self.db.clone();
        let ready = db.wait_ready();
        tokio::pin!(ready);
        loop {
            tokio::select! {
                biased;
                _ = &mut ready => return,
                req = self.requests.recv() => {
                    let not_ready = || DbError::Unavailable {
                        url: db.url().to_string(),
                        reason: "the migrations have not run yet".into(),
                    };
                    match req {
                        Some(Request::Flush(reply) | Request::Sync(_, reply) | Request::Refresh(reply)) => {
                            let _ = reply.send(Err(not_ready()));
                        }
                        None => return,
                    }
                }
                change = recv(&mut self.changes) => match change {
                    Some(c) => self.queue(c),
                    None => self.changes = None,
                },
            }
        }
    }

    /// The tables to load and read back: `location` and every table the script used.
    fn tables(&self) -> Vec<String> {
        let mut v = self.ul.table_names();
        if !v.iter().any(|t| t == DEFAULT_TABLE) {
            v.push(DEFAULT_TABLE.to_string());
        }
        v
    }

    /// Reads every table into memory (start-up), trying again while the database is away.
    /// A table that cannot be read for good (it does not exist) is logged and skipped.
    async fn load(&mut self) {
        let policy = RetryPolicy { stop_on_permanent: true, ..Default::default() };
        for table in self.tables() {
            let (db, use_domain) = (self.db.clone(), self.ul.use_domain);
            let what = format!("loading the {table} table");
            match db.retry(&what, &policy, || store::load(&db, &table, use_domain)).await {
                Ok(rows) => {
                    self.drain();
                    let n = self.apply_rows(&table, rows);
                    tracing::info!(table, contacts = n, "usrloc contacts loaded from the database");
                }
                Err(e) => tracing::error!(table, error = %e, "usrloc contacts not loaded from the database"),
            }
        }
    }

    /// Puts the live rows into memory (except bindings with a change of this node pending,
    /// which is newer) and notes the newest stamp; how many were put. A change the routing
    /// path makes between the drain before this and the put can still be overwritten by the
    /// older row; its write is queued, so the next read (or the id comparison, for a
    /// removal) puts memory right again.
    fn apply_rows(&mut self, table: &str, rows: Vec<store::LocationRow>) -> usize {
        let now = now();
        let key: Arc<str> = Arc::from(table);
        let mut n = 0;
        let newest = self.since.entry(table.to_string()).or_insert(0);
        for row in rows {
            *newest = (*newest).max(row.stamp);
            if !row.contact.is_live(now) || self.pending.contains_key(&(key.clone(), row.contact.id)) {
                continue;
            }
            self.ul.apply_remote(table, row.contact);
            n += 1;
        }
        n
    }

    /// sql-only: the rows other nodes wrote since the last look, and now and then the
    /// deletions (ids in memory the table no longer has).
    async fn read_back(&mut self) {
        for table in self.tables() {
            if let Err(e) = self.read_changed(&table).await {
                tracing::warn!(table, error = %e, "usrloc: the shared table was not read; trying again");
            }
        }
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.last_reconcile = Instant::now();
            for table in self.tables() {
                if let Err(e) = self.reconcile(&table).await {
                    tracing::warn!(table, error = %e, "usrloc: ids not compared with the shared table");
                }
            }
        }
    }

    /// Puts into memory the rows of `table` stamped since the last read (less the margin);
    /// how many were put.
    async fn read_changed(&mut self, table: &str) -> Result<usize, DbError> {
        let since = self.since.get(table).copied().unwrap_or(0);
        let rows =
            store::changed_since(&self.db, table, since.saturating_sub(STAMP_MARGIN_MS), self.ul.use_domain).await?;
        self.drain();
        Ok(self.apply_rows(table, rows))
    }

    /// `ul_refresh`: for every table, the changed rows and the id comparison at once, in
    /// whatever mode; how many bindings were put in or dropped. The first table that
    /// cannot be read ends it with the error (what was applied before stays: it is newer).
    async fn refresh(&mut self) -> Result<usize, DbError> {
        let mut n = 0;
        for table in self.tables() {
            self.drain();
            n += self.read_changed(&table).await?;
            n += self.reconcile(&table).await?;
        }
        self.last_reconcile = Instant::now();
        tracing::info!(bindings = n, "usrloc refreshed from the database");
        Ok(n)
    }

    /// Drops from memory the bindings whose row is gone (another node removed them) and
    /// loads the live rows memory lacks (a node whose clock stamped them too far back);
    /// how many bindings were dropped or loaded.
    async fn reconcile(&mut self, table: &str) -> Result<usize, DbError> {
        // Memory first: a binding saved locally while the query runs is not a candidate.
        let before: Vec<i64> = self.ul.ids(table);
        let in_table: HashSet<i64> = store::ids(&self.db, table, Some(now())).await?.into_iter().collect();
        self.drain();
        let key: Arc<str> = Arc::from(table);
        let mut gone = 0;
        for id in before {
            let k = (key.clone(), id);
            if !in_table.contains(&id) && !self.pending.contains_key(&k) && !self.mem_only.contains(&k) {
                gone += usize::from(self.ul.remove_remote(table, id));
            }
        }
        let known: HashSet<i64> = self.ul.ids(table).into_iter().collect();
        let mut loaded = 0;
        if in_table.iter().any(|id| !known.contains(id)) {
            let rows = store::load(&self.db, table, self.ul.use_domain).await?;
            self.drain();
            let rows = rows.into_iter().filter(|r| !known.contains(&r.contact.id)).collect();
            loaded = self.apply_rows(table, rows);
        }
        if gone > 0 {
            tracing::debug!(table, gone, "usrloc: contacts removed by other nodes dropped");
        }
        Ok(gone + loaded)
    }

    /// Deletes rows that expired: this node's sweep removes the bindings it has in memory,
    /// this catches the rest (a node that was down when they expired).
    async fn delete_expired(&mut self) {
        // write-back: a refresh still waiting for its flush loses its expired row here and
        // writes it again at the flush.
        for table in self.tables() {
            if let Err(e) = store::delete_expired(&self.db, &table, now()).await {
                tracing::debug!(table, error = %e, "usrloc: expired rows not deleted");
            }
        }
    }

    fn queue(&mut self, change: Change) {
        match change {
            Change::Saved { table, contact } => {
                let key = (table, contact.id);
                if contact.flags & FL_MEM != 0 {
                    // Never written; a row this binding had before it became memory-only
                    // goes, once.
                    // A delete still queued for its old row stays queued: dropping it would
                    // leave that row to come back at the next load.
                    if self.mem_only.insert(key.clone()) {
                        self.pending.insert(key, Op::Remove);
                    }
                } else {
                    self.mem_only.remove(&key);
                    self.pending.insert(key, Op::Save(contact));
                }
            }
            Change::Removed { table, id } => {
                let key = (table, id);
                // Also for a memory-only binding: its old row may still be there (a second
                // delete of a gone row is harmless).
                self.mem_only.remove(&key);
                self.pending.insert(key, Op::Remove);
            }
        }
    }

    /// Everything the table sent so far into `pending` (the latest per binding wins).
    fn drain(&mut self) {
        let mut got = Vec::new();
        let mut closed = false;
        if let Some(rx) = self.changes.as_mut() {
            loop {
                match rx.try_recv() {
                    Ok(c) => got.push(c),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        for c in got {
            self.queue(c);
        }
        if closed {
            self.changes = None;
        }
    }

    /// Writes every pending operation, one transaction per table. A transient failure
    /// keeps everything pending and starts a pause; a batch that fails for good is written
    /// again row by row, to drop (and log) only the rows the table refuses.
    async fn write_pending(&mut self) -> Result<usize, DbError> {
        let mut by_table: BTreeMap<Arc<str>, (Vec<Contact>, Vec<i64>)> = BTreeMap::new();
        for ((table, id), op) in &self.pending {
            let entry = by_table.entry(table.clone()).or_default();
            match op {
                Op::Save(c) => entry.0.push(c.clone()),
                Op::Remove => entry.1.push(*id),
            }
        }
        let mut done = 0;
        let mut first_error = None;
        for (table, (saves, removes)) in by_table {
            let r = if saves.len() + removes.len() == 1 {
                match (saves.first(), removes.first()) {
                    (Some(c), _) => store::upsert(&self.db, &table, c).await,
                    (None, Some(id)) => store::delete(&self.db, &table, *id).await.map(drop),
                    (None, None) => Ok(()),
                }
            } else {
                store::apply(&self.db, &table, &saves, &removes).await
            };
            match r {
                Ok(()) => {
                    done += saves.len() + removes.len();
                    self.pending.retain(|(t, _), _| *t != table);
                }
                Err(e) if e.is_transient() => {
                    self.start_pause(&e);
                    return Err(e);
                }
                Err(e) => {
                    done += self.write_one_by_one(&table).await;
                    first_error.get_or_insert(e);
                }
            }
        }
        self.pause = None;
        match first_error {
            None => Ok(done),
            Some(e) => Err(e),
        }
    }

    /// The pending rows of `table` one at a time; the ones refused for good are dropped.
    async fn write_one_by_one(&mut self, table: &Arc<str>) -> usize {
        let keys: Vec<Key> = self.pending.keys().filter(|(t, _)| t == table).cloned().collect();
        let mut done = 0;
        for key in keys {
            let Some(op) = self.pending.remove(&key) else { continue };
            let r = match &op {
                Op::Save(c) => store::upsert(&self.db, table, c).await,
                Op::Remove => store::delete(&self.db, table, key.1).await.map(drop),
            };
            match r {
                Ok(()) => done += 1,
                Err(e) if e.is_transient() => {
                    // What came in meanwhile is newer than what failed.
                    self.pending.entry(key).or_insert(op);
                    self.start_pause(&e);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, table = %table, contact_id = key.1, "usrloc row not written; dropped (retrying cannot help)");
                }
            }
        }
        done
    }

    /// A transient failure: the pending writes wait, the pause doubling up to `MAX_PAUSE`.
    fn start_pause(&mut self, error: &DbError) {
        let pause = match self.pause {
            None => FIRST_PAUSE,
            Some((p, _)) => (p * 2).min(MAX_PAUSE),
        };
        self.db.health().record_retry();
        tracing::warn!(error = %error, pending = self.pending.len(), retry_in = ?pause, "usrloc rows not written; retrying");
        self.pause = Some((pause, Instant::now() + pause));
    }

    /// `ul_sync`: the table := the bindings of `table` in memory (memory-only ones and
    /// expired ones left out); pending changes of that table are covered by it.
    async fn sync(&mut self, table: &str) -> Result<usize, DbError> {
        let now = now();
        let rows: Vec<Contact> = self
            .ul
            .dump(table)
            .into_iter()
            .flat_map(|(_, cs)| cs)
            .filter(|c| c.flags & FL_MEM == 0 && c.is_live(now))
            .collect();
        store::replace_all(&self.db, table, &rows).await?;
        self.pending.retain(|(t, _), _| &**t != table);
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: i64, aor: &str, flags: u32) -> Contact {
        Contact {
            id,
            aor: aor.into(),
            uri: format!("sip:{aor}@10.0.0.1"),
            received: None,
            path: None,
            expires: now() + 3600,
            q: 1000,
            callid: "c".into(),
            cseq: 1,
            last_modified: now(),
            flags,
            cflags: 0,
            user_agent: String::new(),
            socket: None,
            methods: None,
            instance: None,
            reg_id: 0,
            attr: None,
            pings_lost: 0,
        }
    }

    fn ul(mode: &str) -> Arc<Usrloc> {
        Arc::new(Usrloc::new(&UsrlocConfig { working_mode_preset: mode.into(), ..Default::default() }))
    }

    async fn ids(db: &Db) -> Vec<i64> {
        store::ids(db, DEFAULT_TABLE, None).await.expect("ids")
    }

    #[test]
    fn memory_only_is_the_registrars_flag() {
        assert_eq!(FL_MEM, crate::modules::registrar::FL_MEM);
    }

    #[test]
    fn no_db_starts_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let db = Arc::new(Db::open("sqlite::memory:").await.expect("open"));
            assert!(start_writer(db, ul("single-instance-no-db"), &UsrlocConfig::default()).is_none());
        });
    }

    /// Write-back: nothing until the flush; memory-only bindings never; a removal deletes.
    #[tokio::test]
    async fn write_back_waits_for_the_flush() {
        let db = Arc::new(Db::open("sqlite::memory:").await.expect("open"));
        db.migrate().await.expect("migrate");
        let u = ul("single-instance-sql-write-back");
        let w = start_writer(db.clone(), u.clone(), &UsrlocConfig::default()).expect("a writer");
        w.flush().await.expect("loaded and flushed");
        u.update(DEFAULT_TABLE, "alice", |r| r.put(contact(1, "alice", 0)));
        u.update(DEFAULT_TABLE, "bob", |r| r.put(contact(2, "bob", FL_MEM)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(ids(&db).await.is_empty());
        assert_eq!(w.flush().await.expect("flush"), 2, "one upsert, one delete of bob's possible row");
        assert_eq!(ids(&db).await, vec![1]);
        u.remove_aor(DEFAULT_TABLE, "alice");
        u.remove_aor(DEFAULT_TABLE, "bob");
        w.flush().await.expect("flush");
        assert!(ids(&db).await.is_empty());
    }

    /// The flush before the migrations is answered, not left hanging.
    #[tokio::test]
    async fn flush_before_the_migrations_answers() {
        let db = Arc::new(Db::open("sqlite::memory:").await.expect("open"));
        let w = start_writer(db.clone(), ul("single-instance-sql-write-through"), &UsrlocConfig::default())
            .expect("a writer");
        let e = tokio::time::timeout(Duration::from_secs(2), w.flush()).await.expect("answered");
        assert!(matches!(e, Err(DbError::Unavailable { .. })), "{e:?}");
    }
}
