//! RFC 3261 §17 transactions as a stateful proxy keeps them (§16): one cell per received
//! request holds the server transaction towards the caller and a client transaction per
//! branch towards the callees.
//!
//! Owns: matching requests and replies to cells (§17.2.3 by branch, RFC 2543 fallback),
//! timers A–K from `[tm]`, retransmission absorption, 100 Trying, hop-by-hop ACK of
//! negative finals, CANCEL on branches that had a reply, local 408, reply selection, and
//! the upstream reply (relayed or local). Does not own: the script. It asks the proxy
//! through [`TmHooks`] what to do with a reply and when every branch failed.
//!
//! Time goes through tokio, so tests pause it and step through the timers.

mod client;
mod key;
mod local;
pub mod select;
mod server;
pub mod stats;

pub use key::request_key;
pub use local::{InDialog, LocalOutcome, LocalRequest};
pub use server::top_via_removal;
pub use stats::{ByClass, Counter, TmStats, STATUS_CLASSES};

use crate::config::TmConfig;
use crate::message::{Method, SipMsg};
use crate::transport::{Proto, Transport};
use bytes::Bytes;
use dashmap::DashMap;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum TmError {
    #[error("a transaction for this request exists already")]
    Exists,
    #[error("transaction already answered or cancelled")]
    Closed,
    #[error("send failed: {0}")]
    Send(String),
}

/// Timer values, from `[tm]` (RFC 3261 §17 and Table 4).
#[derive(Clone, Debug)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Final-response timer before any reply (OpenSIPS fr_timeout; RFC Timer B/F = 64*T1).
    pub fr: Duration,
    /// INVITE final-response timer once a provisional arrived (Timer C, > 3 min in the RFC).
    pub fr_inv: Duration,
    /// How long a finished cell lingers to absorb retransmissions (Timer J/K/I-ish).
    pub wait: Duration,
    pub auto_100: bool,
    pub restart_fr_on_each_reply: bool,
    pub block_6xx: bool,
}

impl Timers {
    pub fn from_config(c: &TmConfig) -> Timers {
        Timers {
            t1: Duration::from_millis(c.T1_timer.max(1)),
            t2: Duration::from_millis(c.T2_timer.max(1)),
            t4: Duration::from_millis(c.T4_timer.max(1)),
            fr: Duration::from_secs(c.fr_timeout.max(1)),
            fr_inv: Duration::from_secs(c.fr_inv_timeout.max(1)),
            wait: Duration::from_secs(c.wt_timer.max(1)),
            auto_100: c.auto_100trying,
            restart_fr_on_each_reply: c.restart_fr_on_each_reply,
            block_6xx: !c.disable_6xx_block,
        }
    }
}

/// Where and how something is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// The listener to send from (`None`: the first that fits).
    pub listener: Option<usize>,
}

/// What the proxy says about a reply after its onreply route ran.
#[derive(Debug, Default)]
pub struct ReplyVerdict {
    /// Do not relay (only honoured for provisional replies, as in OpenSIPS).
    pub drop: bool,
    /// Edits to apply to the reply before relaying it (lumps from the onreply route).
    pub edits: crate::message::Edits,
}

/// The reply that goes upstream when every branch failed.
#[derive(Debug, Clone)]
pub struct Winner {
    pub branch: usize,
    pub code: u16,
    /// `None` for a local 408 (no reply at all on that branch).
    pub reply: Option<SipMsg>,
}

/// The proxy's side of the contract: run script hooks for replies and failures.
/// Called without any cell lock held; may call back into [`Tm`].
pub trait TmHooks: Send + Sync + 'static {
    /// Every reply matched to a branch (onreply routes).
    /// `src` is where the reply came from (`$si`/`$sp` of the reply route).
    fn on_reply(&self, cell: &Arc<Cell>, branch: usize, reply: &SipMsg, src: std::net::SocketAddr) -> ReplyVerdict;
    /// Every branch of the current generation ended negative (failure_route). New
    /// branches added or a reply sent from here stop the winner from being relayed.
    fn on_failure(&self, cell: &Arc<Cell>, winner: &Winner);
    /// A reply matched no cell: the proxy forwards it statelessly (RFC 3261 §16.7 end).
    fn on_stray_reply(&self, reply: SipMsg, src: SocketAddr, proto: Proto);
    /// The transaction's first final reply went upstream (relayed or local): the dialog of
    /// a failed INVITE ends here, after any failure_route had its chance.
    fn on_final(&self, cell: &Arc<Cell>, code: u16) {
        let _ = (cell, code);
    }
}

/// One outgoing branch as the proxy built it.
#[derive(Debug, Clone)]
pub struct BranchOut {
    pub uri: String,
    pub dest: Dest,
    /// The request as it goes on the wire (our Via on top).
    pub bytes: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// The caller cancelled; send CANCEL as soon as this branch has a provisional reply
    /// (RFC 3261 §9.1: never CANCEL a branch that has not answered).
    Pending,
    Sent,
    Done,
}

#[derive(Debug)]
pub(crate) struct Branch {
    /// The number in this branch's Via branch parameter.
    pub n: u32,
    pub uri: String,
    pub dest: Dest,
    pub sent: Bytes,
    /// Highest status seen (0 = nothing yet).
    pub status: u16,
    pub final_reply: Option<SipMsg>,
    pub is_final: bool,
    pub local_timeout: bool,
    cancel: CancelState,
    /// The Reason of a CANCEL deferred until this branch's first provisional reply
    /// (`None`: the caller's, from the cell).
    pending_reason: Option<String>,
    cancel_bytes: Option<Bytes>,
    cancel_next: Option<Instant>,
    cancel_interval: Duration,
    cancel_deadline: Option<Instant>,
    fr_deadline: Instant,
    next_retrans: Option<Instant>,
    retrans_interval: Duration,
    /// Edits the onreply route made to this branch's final reply (applied if it wins).
    reply_edits: crate::message::Edits,
}

#[derive(Debug, Default)]
pub(crate) struct CellState {
    pub branches: Vec<Branch>,
    /// Index of the first branch of the current generation (failure_route starts a new one).
    pub generation: usize,
    /// Status of the last reply sent upstream (0 = none).
    pub uas_status: u16,
    pub uas_last: Option<Bytes>,
    pub cancelled: bool,
    pub cancel_reason: Option<String>,
    pub blocked: bool,
    /// Every branch failed and the failure decision is being taken or was taken.
    pub deciding: bool,
    pub acked: bool,
    pub finished: bool,
    /// Branches being prepared by t_relay right now: no failure decision until done.
    pub building: u32,
}

/// A transaction cell: the received request, its server side and its branches.
pub struct Cell {
    pub id: u64,
    key: String,
    pub method: Method,
    /// The request as received.
    pub request: SipMsg,
    /// Where replies go (the top Via, RFC 3261 §18.2.2 / RFC 3581 §4).
    pub upstream: Dest,
    /// The top Via value as replies must carry it (received/rport filled in), if changed.
    pub top_via: Option<String>,
    /// To-tag of replies this proxy builds itself.
    pub to_tag: String,
    state: Mutex<CellState>,
    next_branch: std::sync::atomic::AtomicU32,
    /// Wakes the branch timers when a branch's deadlines change (final reply, CANCEL).
    wake: tokio::sync::Notify,
    /// The proxy's per-transaction data (armed routes, flags, AVPs, lumps).
    pub user: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Cell {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CellState> {
        // A poisoned lock means a panic elsewhere already; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn was_cancelled(&self) -> bool {
        self.lock().cancelled
    }
    /// Status of the last reply sent upstream (0 = none yet).
    pub fn uas_status(&self) -> u16 {
        self.lock().uas_status
    }
    pub fn branch_count(&self) -> usize {
        self.lock().branches.len()
    }
    /// The request as sent on a branch.
    pub fn branch_request(&self, idx: usize) -> Option<Bytes> {
        self.lock().branches.get(idx).map(|b| b.sent.clone())
    }
    pub fn branch_uri(&self, idx: usize) -> Option<String> {
        self.lock().branches.get(idx).map(|b| b.uri.clone())
    }
    /// Where branch `idx` was sent, and from which listener.
    pub fn branch_dest(&self, idx: usize) -> Option<Dest> {
        self.lock().branches.get(idx).map(|b| b.dest)
    }
    /// Whether new branches may still be added (not answered, not blocked by a 6xx).
    pub fn can_fork(&self) -> bool {
        let st = self.lock();
        st.uas_status < 200 && !st.blocked && !(st.cancelled && st.branches.is_empty())
    }
}

/// The transaction table.
pub struct Tm {
    pub timers: Timers,
    tp: Arc<Transport>,
    by_key: DashMap<String, Arc<Cell>>,
    by_id: DashMap<u64, Arc<Cell>>,
    hooks: OnceLock<Arc<dyn TmHooks>>,
    next_id: AtomicU64,
    /// Prefix of every branch this proxy generates: magic cookie (RFC 3261 §8.1.1.7) and a
    /// per-process salt so two proxies never mistake each other's branches.
    branch_prefix: String,
    me: OnceLock<std::sync::Weak<Tm>>,
    /// `tm:` statistics.
    pub stats: TmStats,
    /// Requests this proxy originated, waiting for their final reply, by branch.
    local: DashMap<String, tokio::sync::oneshot::Sender<u16>>,
    next_local: AtomicU64,
}

impl Tm {
    pub fn new(timers: Timers, tp: Arc<Transport>) -> Arc<Tm> {
        let tm = Arc::new(Tm {
            me: OnceLock::new(),
            timers,
            tp,
            by_key: DashMap::with_shard_amount(64),
            by_id: DashMap::with_shard_amount(64),
            hooks: OnceLock::new(),
            next_id: AtomicU64::new(1),
            branch_prefix: format!("z9hG4bK{:08x}", fastrand::u32(..)),
            stats: TmStats::default(),
            local: DashMap::new(),
            next_local: AtomicU64::new(1),
        });
        let _ = tm.me.set(Arc::downgrade(&tm));
        tm
    }
    pub fn set_hooks(&self, hooks: Arc<dyn TmHooks>) {
        let _ = self.hooks.set(hooks);
    }
    pub fn transport(&self) -> &Arc<Transport> {
        &self.tp
    }
    /// Cells in the table (`tm:inuse_transactions`); walks the shards, so not for the hot path.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A fresh branch parameter for a new branch of `cell` (decoded again in
    /// [`Tm::on_reply`]) and its number, to hand back to [`Tm::add_branch`].
    pub fn new_branch_param(&self, cell: &Cell) -> (u32, String) {
        let n = cell.next_branch.fetch_add(1, Ordering::Relaxed);
        (n, format!("{}.{:x}.{}", self.branch_prefix, cell.id, n))
    }

    fn parse_branch(&self, branch: &str) -> Option<(u64, u32)> {
        let rest = branch.strip_prefix(&self.branch_prefix)?.strip_prefix('.')?;
        let (id, idx) = rest.split_once('.')?;
        Some((u64::from_str_radix(id, 16).ok()?, idx.parse().ok()?))
    }

    /// The cell a request belongs to (a retransmission, or the INVITE an ACK acknowledges).
    pub fn lookup(&self, req: &SipMsg) -> Option<Arc<Cell>> {
        let key = request_key(req, None)?;
        self.by_key.get(&key).map(|c| c.clone())
    }
    /// The INVITE cell a CANCEL refers to (RFC 3261 §9.2: same key, method INVITE).
    pub fn lookup_invite_for_cancel(&self, cancel: &SipMsg) -> Option<Arc<Cell>> {
        let key = request_key(cancel, Some(&Method::Invite))?;
        self.by_key.get(&key).map(|c| c.clone())
    }

    /// Creates the cell for a new request; sends 100 Trying for INVITE (RFC 3261 §16.2).
    ///
    /// # Errors
    /// [`TmError::Exists`] with no side effect when the request is a retransmission.
    pub fn create(&self, req: SipMsg, upstream: Dest, top_via: Option<String>) -> Result<Arc<Cell>, TmError> {
        let key = request_key(&req, None).ok_or(TmError::Closed)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let method = req.method();
        let cell = Arc::new(Cell {
            id,
            key: key.clone(),
            method: method.clone(),
            request: req,
            upstream,
            top_via,
            to_tag: format!("{:016x}", fastrand::u64(..)),
            state: Mutex::new(CellState::default()),
            next_branch: std::sync::atomic::AtomicU32::new(0),
            wake: tokio::sync::Notify::new(),
            user: Mutex::new(None),
        });
        match self.by_key.entry(key) {
            dashmap::Entry::Occupied(_) => return Err(TmError::Exists),
            dashmap::Entry::Vacant(v) => {
                v.insert(cell.clone());
            }
        }
        self.by_id.insert(id, cell.clone());
        self.stats.uas_transactions.inc();
        if method == Method::Invite && self.timers.auto_100 {
            self.reply(&cell, 100, "Trying", "", b"");
        }
        Ok(cell)
    }

    /// Removes a cell from the tables (its timers notice and stop).
    fn forget(&self, cell: &Cell) {
        self.by_key.remove_if(&cell.key, |_, c| c.id == cell.id);
        self.by_id.remove(&cell.id);
    }
}
