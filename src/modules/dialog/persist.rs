//! `db_mode`: the dialog table written behind the in-memory one, and read back at start
//! (spec §10, docs/dialog.md "Persistence").
//!
//! ```text
//! Dialogs ─ Change::{Saved, Removed} ─▶ writer task ─ pending (latest per dialog) ─▶ store.rs
//!   db_mode 1: written as soon as they come      db_mode 2: every db_update_period
//!   db_mode 3: nothing until Writer::flush (shutdown): the table := the live dialogs
//! ```
//!
//! The routing path only puts a change on an unbounded channel. One task owns the
//! channel and the pending set, so changes are written in order and a dialog that changed
//! several times while the database was slow or away is written once, in its latest state;
//! a dialog that ended before its row was written leaves no row. Failed writes stay pending
//! and are tried again with a growing pause (transient errors) or dropped with an error in
//! the log (a bad table name, bad SQL: retrying cannot help).

use super::store;
use crate::config::DialogConfig;
use crate::db::wait::{next_tick, recv, sleep_until};
use crate::db::{Db, DbError};
use crate::dialog::{Change, Dialog, DialogRecord, Dialogs, DlgState};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// First pause after a failed write; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// What is to be done to one dialog's row.
#[derive(Clone)]
enum Op {
    /// Write the dialog's state as it is when the write happens.
    Save(Arc<Dialog>),
    Remove,
}

/// What the management interface and shutdown ask of the writer task.
enum Request {
    /// Write everything pending now.
    Flush(oneshot::Sender<Result<usize, DbError>>),
    /// Make the table hold exactly the live dialogs (`dlg_db_sync`).
    Sync(oneshot::Sender<Result<usize, DbError>>),
}

/// What the writer, `dlg_db_sync` and `dlg_restore_db` share: the database, the table and
/// the dialogs. Cheap to clone; it does not own the writer task.
#[derive(Clone)]
pub struct DialogStore {
    db: Arc<Db>,
    dialogs: Arc<Dialogs>,
    table: String,
    /// The writer task (db_mode 1 and 2), which must do whole-table writes too so they
    /// are ordered with its own.
    requests: Option<mpsc::UnboundedSender<Request>>,
    /// Whole-table writes without a task (db_mode 0 and 3), one at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The table was read into memory. Until then a whole-table write would delete rows
    /// no one has loaded (the database was down at start), so with `restore_first` (db_mode
    /// 1-3, where start-up reads the table) it restores first. With db_mode 0 nothing is
    /// read at start, and `dlg_db_sync` means "the table := memory" as it says.
    restored: Arc<AtomicBool>,
    restore_first: bool,
    /// Dialogs known to have a row (written here, or read at restore): only their end
    /// needs a DELETE, not the end of every call that failed before it was answered.
    rows: Arc<Mutex<HashSet<u64>>>,
}

impl DialogStore {
    /// A store without a writer task: whole-table writes happen on the caller's task.
    pub fn new(db: Arc<Db>, dialogs: Arc<Dialogs>, table: &str) -> DialogStore {
        DialogStore {
            db,
            dialogs,
            table: table.to_string(),
            requests: None,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            restored: Arc::new(AtomicBool::new(false)),
            restore_first: false,
            rows: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Reads the table and puts back every dialog not known here (start-up,
    /// `dlg_restore_db`); returns how many came back.
    ///
    /// # Errors
    /// The table could not be read.
    pub async fn restore(&self) -> Result<usize, DbError> {
        let n = restore_rows(&self.db, &self.dialogs, &self.table, Some(&self.rows)).await?;
        self.restored.store(true, Ordering::Release);
        Ok(n)
    }

    /// Brings memory in line with the table another node keeps (`dlg_resync`: a standby
    /// taking over): every confirmed dialog known to have had a row that is gone now ended on
    /// the other node and is forgotten ([`Dialogs::forget`]: no BYE, no row change, its
    /// profiles stop counting it); then the rows memory lacks are restored as
    /// [`DialogStore::restore`] does. Returns (restored, forgotten).
    ///
    /// Only dialogs with a row are candidates: one confirmed here whose row is still pending
    /// (db_mode 2, 3, or a write in flight) is this node's own and stays. Which dialogs have
    /// a row is noted before the table is read, so a row written meanwhile is not taken for
    /// gone.
    ///
    /// # Errors
    /// The table could not be read; memory is then left as it was.
    pub async fn resync(&self) -> Result<(usize, usize), DbError> {
        let with_rows: HashSet<u64> = self.rows().clone();
        let rows = store::load(&self.db, &self.table).await?;
        let live: HashSet<u64> =
            rows.iter().filter(|r| DlgState::from_db(r.state) != DlgState::Deleted).map(|r| r.dlg_id as u64).collect();
        let mut forgotten = 0;
        for dlg in self.dialogs.list() {
            let gone = with_rows.contains(&dlg.id) && !live.contains(&dlg.id);
            if gone && dlg.state().is_confirmed() && self.dialogs.forget(&dlg) {
                self.rows().remove(&dlg.id);
                forgotten += 1;
            }
        }
        let restored = put_back(&self.db, &self.dialogs, &self.table, &rows, Some(&self.rows)).await;
        self.restored.store(true, Ordering::Release);
        tracing::info!(table = %self.table, restored, forgotten, "dialogs resynchronised with the database");
        Ok((restored, forgotten))
    }

    /// True once [`DialogStore::restore`] succeeded.
    fn rows(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Makes the table hold exactly the live confirmed dialogs (`dlg_db_sync`, db_mode 3 at
    /// shutdown); returns how many rows it holds now.
    ///
    /// # Errors
    /// The table could not be read (first restore) or written.
    pub async fn sync(&self) -> Result<usize, DbError> {
        match &self.requests {
            Some(tx) => ask(tx, Request::Sync).await,
            None => {
                let _turn = self.turn.lock().await;
                self.sync_now().await
            }
        }
    }

    async fn sync_now(&self) -> Result<usize, DbError> {
        if self.restore_first && !self.is_restored() {
            // Rows of a previous run that were never read in would be lost otherwise.
            self.restore().await?;
        }
        let rows = live_rows(&self.dialogs);
        store::replace_all(&self.db, &self.table, &rows).await?;
        *self.rows() = rows.iter().map(|r| r.dlg_id as u64).collect();
        Ok(rows.len())
    }

    /// Writes what is pending (db_mode 1, 2) or the whole table (db_mode 3); returns how
    /// many rows were written or removed.
    ///
    /// # Errors
    /// A write failed (what failed stays pending).
    async fn flush(&self) -> Result<usize, DbError> {
        match &self.requests {
            Some(tx) => ask(tx, Request::Flush).await,
            None => self.sync().await,
        }
    }
}

/// Sends a request to the writer task and waits for its answer.
async fn ask(
    tx: &mpsc::UnboundedSender<Request>,
    make: impl FnOnce(oneshot::Sender<Result<usize, DbError>>) -> Request,
) -> Result<usize, DbError> {
    let stopped = || DbError::Invalid("the dialog writer has stopped".into());
    let (reply, answer) = oneshot::channel();
    tx.send(make(reply)).map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The rows of the confirmed dialogs in memory (only those are persisted, as OpenSIPS does:
/// a dialog still being set up is not worth resuming).
fn live_rows(dialogs: &Dialogs) -> Vec<DialogRecord> {
    let mut rows: Vec<DialogRecord> =
        dialogs.list().iter().filter(|d| d.state().is_confirmed()).map(|d| DialogRecord::of(d)).collect();
    rows.sort_by_key(|r| r.dlg_id);
    rows
}

/// Reads `table` and puts every dialog not known to `dialogs` back; returns how many.
/// Rows of ended dialogs (state 5, left by another writer) are deleted instead. Dialogs
/// whose lifetime passed while nobody ran are restored too: the sweeper ends them at its
/// next tick, which also removes their rows and counts them as expired.
///
/// # Errors
/// The table could not be read. Deleting an ended row that fails is only logged.
pub async fn restore(db: &Db, dialogs: &Dialogs, table: &str) -> Result<usize, DbError> {
    restore_rows(db, dialogs, table, None).await
}

/// [`restore`], noting in `with_rows` the dialogs that have a row: before the dialog is
/// back in memory, where it may end at once (expired) and its row must then go.
async fn restore_rows(
    db: &Db,
    dialogs: &Dialogs,
    table: &str,
    with_rows: Option<&Mutex<HashSet<u64>>>,
) -> Result<usize, DbError> {
    let rows = store::load(db, table).await?;
    let restored = put_back(db, dialogs, table, &rows, with_rows).await;
    tracing::info!(table, rows = rows.len(), restored, "dialogs restored from the database");
    Ok(restored)
}

/// Puts the dialogs of `rows` (read from `table`) that memory lacks back, deleting the rows
/// of ended dialogs; how many came back. See [`restore_rows`] for `with_rows`.
async fn put_back(
    db: &Db,
    dialogs: &Dialogs,
    table: &str,
    rows: &[DialogRecord],
    with_rows: Option<&Mutex<HashSet<u64>>>,
) -> usize {
    let mut restored = 0;
    for rec in rows {
        if DlgState::from_db(rec.state) == DlgState::Deleted {
            if let Err(e) = store::delete(db, table, rec.dlg_id).await {
                tracing::warn!(error = %e, dlg_id = rec.dlg_id, "row of an ended dialog not removed");
            }
            continue;
        }
        if let Some(set) = with_rows {
            set.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.dlg_id as u64);
        }
        if dialogs.restore(rec).is_some() {
            restored += 1;
        }
    }
    restored
}

/// The task that writes dialogs behind the table (db_mode 1–3). Dropping it stops the
/// task; call [`Writer::flush`] first to write what is pending.
pub struct Writer {
    store: DialogStore,
    mode: u8,
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
    /// The store the writer writes through, for the management interface.
    pub fn store(&self) -> DialogStore {
        self.store.clone()
    }

    pub fn db_mode(&self) -> u8 {
        self.mode
    }

    /// Writes now what would otherwise be written later: the pending changes (db_mode 1,
    /// 2), or the live confirmed dialogs as the whole table (db_mode 3). Shutdown calls it.
    /// Returns how many rows were written or removed.
    ///
    /// # Errors
    /// A write failed; in db_mode 1 and 2 what failed stays pending.
    pub async fn flush(&self) -> Result<usize, DbError> {
        self.store.flush().await
    }
}

/// Starts writing `dialogs` to `[dialog] table_name` as `[dialog] db_mode` says; `None` for
/// db_mode 0. Must run inside a tokio runtime. A mode above 3 is taken as 1 (logged): the
/// safest reading of a typo is to keep the dialogs.
pub fn start_writer(db: Arc<Db>, dialogs: Arc<Dialogs>, cfg: &DialogConfig) -> Option<Writer> {
    let mode = match cfg.db_mode {
        0 => return None,
        m @ 1..=3 => m,
        other => {
            tracing::warn!(db_mode = other, "[dialog] db_mode is 0 to 3; using 1 (realtime)");
            1
        }
    };
    let mut store = DialogStore::new(db, dialogs.clone(), &cfg.table_name);
    store.restore_first = true;
    let task = if mode == 3 {
        // Nothing is written before shutdown, so nothing is subscribed: changes are not
        // even queued.
        None
    } else {
        let (tx, requests) = mpsc::unbounded_channel();
        store.requests = Some(tx);
        let period = match mode {
            2 => Some(Duration::from_secs(cfg.db_update_period.max(1))),
            _ => None,
        };
        let task = Task {
            store: store.clone(),
            changes: Some(dialogs.subscribe()),
            requests,
            pending: BTreeMap::new(),
            period,
            pause: None,
        };
        Some(tokio::spawn(task.run()))
    };
    tracing::info!(db_mode = mode, table = %cfg.table_name, "dialogs are written to the database");
    Some(Writer { store, mode, task })
}

/// The writer task's state (db_mode 1 and 2).
struct Task {
    store: DialogStore,
    /// `None` once the table stopped sending (dropped, or another subscriber).
    changes: Option<mpsc::UnboundedReceiver<Change>>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// The latest operation of every dialog not yet written.
    pending: BTreeMap<u64, Op>,
    /// db_mode 2: the flush period.
    period: Option<Duration>,
    /// After a failed write: the current pause and when the next attempt is due.
    pause: Option<(Duration, Instant)>,
}

impl Task {
    async fn run(mut self) {
        self.until_ready().await;
        let mut tick = self.period.map(|p| {
            let mut t = tokio::time::interval_at(Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let retry_at = self.pause.map(|(_, at)| at);
            // db_mode 1 writes as soon as something is pending and no pause is running.
            let write_now = tick.is_none() && !self.pending.is_empty() && retry_at.is_none();
            tokio::select! {
                biased;
                req = self.requests.recv() => match req {
                    Some(Request::Flush(reply)) => {
                        self.drain();
                        let r = self.write_pending().await;
                        let _ = reply.send(r);
                    }
                    Some(Request::Sync(reply)) => {
                        self.drain();
                        let r = self.sync().await;
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
                _ = sleep_until(retry_at), if retry_at.is_some() && tick.is_none() => {
                    self.drain();
                    let _ = self.write_pending().await;
                }
                _ = next_tick(&mut tick), if tick.is_some() => {
                    self.drain();
                    let _ = self.write_pending().await;
                }
            }
        }
    }

    /// Waits for the migrations (PostgreSQL/MySQL down at start: the table may not exist
    /// yet). Changes are coalesced into `pending` meanwhile, so a long outage costs one
    /// entry per dialog, and requests are answered at once instead of hanging.
    async fn until_ready(&mut self) {
        let db = self.store.db.clone();
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
                        Some(Request::Flush(reply) | Request::Sync(reply)) => {
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

    fn queue(&mut self, change: Change) {
        match change {
            Change::Saved(d) => self.pending.insert(d.id, Op::Save(d)),
            Change::Removed(id) => self.pending.insert(id, Op::Remove),
        };
    }

    /// Everything the table sent so far into `pending` (the latest per dialog wins).
    fn drain(&mut self) {
        let mut closed = false;
        if let Some(rx) = self.changes.as_mut() {
            loop {
                match rx.try_recv() {
                    Ok(Change::Saved(d)) => {
                        self.pending.insert(d.id, Op::Save(d));
                    }
                    Ok(Change::Removed(id)) => {
                        self.pending.insert(id, Op::Remove);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            self.changes = None;
        }
    }

    /// Writes every pending operation in dialog-id order. At the first transient failure
    /// the rest stays pending and a pause starts; an operation that fails for good (a value
    /// the table cannot hold, a bad table name) is dropped and logged, the others go on.
    /// Returns how many rows were written or removed, or the first error.
    async fn write_pending(&mut self) -> Result<usize, DbError> {
        // Several changes waiting (they pile up while a write is out): one transaction. A
        // batch that fails for good is written again row by row below, to drop only the
        // row the table refuses.
        if self.pending.len() > 1 {
            match self.write_batch().await {
                Ok(n) => {
                    self.pending.clear();
                    self.pause = None;
                    return Ok(n);
                }
                Err(e) if e.is_transient() => {
                    self.start_pause(Some(&e));
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let mut work = std::mem::take(&mut self.pending).into_iter();
        let mut done = 0;
        let mut first_error: Option<DbError> = None;
        let mut transient = false;
        for (id, op) in work.by_ref() {
            match self.write_one(id, &op).await {
                Ok(n) => done += n,
                Err(e) if e.is_transient() => {
                    // What came in meanwhile is newer than what failed.
                    self.pending.entry(id).or_insert(op);
                    first_error.get_or_insert(e);
                    transient = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, did = %format!("{id:x}"), "dialog row not written; dropped (retrying cannot help)");
                    first_error.get_or_insert(e);
                }
            }
        }
        for (id, op) in work {
            self.pending.entry(id).or_insert(op);
        }
        if !transient {
            self.pause = None;
        } else {
            self.start_pause(first_error.as_ref());
        }
        match first_error {
            None => Ok(done),
            Some(e) => Err(e),
        }
    }

    /// A transient failure: the pending writes wait, the pause doubling up to `MAX_PAUSE`.
    fn start_pause(&mut self, error: Option<&DbError>) {
        let pause = match self.pause {
            None => FIRST_PAUSE,
            Some((p, _)) => (p * 2).min(MAX_PAUSE),
        };
        self.store.db.health().record_retry();
        tracing::warn!(error = ?error.map(ToString::to_string), pending = self.pending.len(), retry_in = ?pause, "dialog rows not written; retrying");
        self.pause = Some((pause, Instant::now() + pause));
    }

    /// Every pending operation in one transaction; the rows known to exist updated after.
    async fn write_batch(&self) -> Result<usize, DbError> {
        let mut saves = Vec::new();
        let mut save_ids = Vec::new();
        let mut removes = Vec::new();
        {
            let rows = self.store.rows();
            for (id, op) in &self.pending {
                let Ok(row_id) = i64::try_from(*id) else {
                    return Err(DbError::Invalid(format!("dialog id {id:x} does not fit the dlg_id column")));
                };
                match op {
                    Op::Save(d) if d.is_ended() || !d.state().is_confirmed() => {}
                    Op::Save(d) => {
                        saves.push(DialogRecord::of(d));
                        save_ids.push(*id);
                    }
                    Op::Remove if rows.contains(id) => removes.push(row_id),
                    Op::Remove => {}
                }
            }
        }
        if saves.is_empty() && removes.is_empty() {
            return Ok(0);
        }
        store::apply(&self.store.db, &self.store.table, &saves, &removes).await?;
        let mut rows = self.store.rows();
        rows.extend(save_ids);
        for id in &removes {
            rows.remove(&(*id as u64));
        }
        Ok(saves.len() + removes.len())
    }

    async fn write_one(&self, id: u64, op: &Op) -> Result<usize, DbError> {
        let (db, table) = (&self.store.db, self.store.table.as_str());
        let Ok(row_id) = i64::try_from(id) else {
            return Err(DbError::Invalid(format!("dialog id {id:x} does not fit the dlg_id column")));
        };
        match op {
            // An ended dialog's Removed is on its way (end() sends it after the state).
            Op::Save(d) if d.is_ended() || !d.state().is_confirmed() => Ok(0),
            Op::Save(d) => {
                store::upsert(db, table, &DialogRecord::of(d)).await?;
                self.store.rows().insert(id);
                Ok(1)
            }
            // A dialog that never had a row (it failed before its 2xx): nothing to delete.
            Op::Remove if !self.store.rows().contains(&id) => Ok(0),
            Op::Remove => {
                let n = store::delete(db, table, row_id).await?;
                self.store.rows().remove(&id);
                Ok(n as usize)
            }
        }
    }

    /// `dlg_db_sync` from inside the task, so no pending write lands after it: what is
    /// pending is superseded by the whole table.
    async fn sync(&mut self) -> Result<usize, DbError> {
        let r = self.store.sync_now().await;
        if r.is_ok() {
            // The live dialogs are written; ended ones are absent. Pending operations are
            // all covered.
            self.pending.clear();
            self.pause = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbOptions;
    use crate::dialog::DialogParams;
    use crate::message::SipMsg;
    use bytes::Bytes;

    fn msg(s: &str) -> SipMsg {
        SipMsg::parse(Bytes::from(s.replace('\n', "\r\n"))).expect("parses")
    }

    #[test]
    fn mode_zero_starts_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let db = Arc::new(Db::open("sqlite::memory:").await.expect("open"));
            let t = Dialogs::new(DialogParams::default());
            assert!(start_writer(db, t, &DialogConfig::default()).is_none());
        });
    }

    /// The database refuses connections: the routing side goes on (changes queue), the
    /// write stays pending, a pause starts and is counted as a retry.
    #[tokio::test]
    async fn writes_wait_while_the_database_is_away() {
        let opts = DbOptions { timeout: Duration::from_millis(200), max_connections: 1, create: false };
        let db = Arc::new(Db::open_with("postgres://postgres@127.0.0.1:1/none", &opts).await.expect("lazy open"));
        db.set_ready();
        let t = Dialogs::new(DialogParams::default());
        let cfg = DialogConfig { db_mode: 1, ..Default::default() };
        let w = start_writer(db.clone(), t.clone(), &cfg).expect("db_mode 1");
        let dlg = t.create(
            &msg("INVITE sip:b@b SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=ft\nTo: <sip:b@b>\nCall-ID: away\nCSeq: 1 INVITE\n\n"),
            String::new(),
            0,
        );
        t.on_reply(
            &dlg,
            &msg("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=ft\nTo: <sip:b@b>;tag=tt\nCall-ID: away\nCSeq: 1 INVITE\n\n"),
            None,
        );
        let e = w.flush().await.expect_err("nothing to write to");
        assert!(e.is_transient(), "{e}");
        assert!(db.health().retries() >= 1);
        // Still pending: the next flush tries again.
        assert!(w.flush().await.is_err());
    }

    /// Before the migrations ran, a flush is answered (not left hanging) and changes wait.
    #[tokio::test]
    async fn flush_before_the_migrations_answers() {
        let db = Arc::new(Db::open("sqlite::memory:").await.expect("open"));
        let t = Dialogs::new(DialogParams::default());
        let cfg = DialogConfig { db_mode: 2, ..Default::default() };
        let w = start_writer(db.clone(), t, &cfg).expect("db_mode 2");
        let e = tokio::time::timeout(Duration::from_secs(2), w.flush()).await.expect("answered");
        assert!(matches!(e, Err(DbError::Unavailable { .. })), "{e:?}");
        db.migrate().await.expect("migrate");
        let n = tokio::time::timeout(Duration::from_secs(2), w.flush()).await.expect("answered");
        assert_eq!(n.expect("flushed"), 0);
    }
}
