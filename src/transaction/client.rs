//! The client side of a cell: branches going downstream, their retransmissions (Timer A/E),
//! final-response timers (B/F, fr_timeout, fr_inv_timeout), replies coming back, CANCEL
//! (RFC 3261 §9.1, §16.10) and the decision once every branch failed (§16.7 step 6).

use super::{select, Branch, BranchOut, CancelState, Cell, Tm, TmError, Winner};
use crate::message::{build_ack_for_reply, build_cancel, Edits, Method, SipMsg};
use crate::transport::Proto;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::{sleep_until, Duration, Instant};

/// What a spawned branch timer must send once the cell lock is released.
#[derive(Default)]
struct Sends {
    out: Vec<(super::Dest, Bytes)>,
    /// A branch timer must re-read its deadlines.
    wake: bool,
}

impl Tm {
    /// Marks the start of branch building (t_relay): no failure decision meanwhile.
    pub fn begin_branches(&self, cell: &Cell) {
        cell.lock().building += 1;
    }
    /// Ends [`Tm::begin_branches`]; takes the failure decision if it became due.
    pub fn end_branches(&self, cell: &Arc<Cell>) {
        {
            let mut st = cell.lock();
            st.building = st.building.saturating_sub(1);
        }
        self.check_complete(cell);
    }

    /// Sends a branch built by the proxy and arms its timers.
    ///
    /// # Errors
    /// [`TmError::Closed`] when the cell already answered or a 6xx blocked forking;
    /// [`TmError::Send`] when the transport refused the message.
    pub fn add_branch(&self, cell: &Arc<Cell>, n: u32, out: BranchOut) -> Result<(), TmError> {
        let now = Instant::now();
        let t = &self.timers;
        let unreliable = out.dest.proto == Proto::Udp;
        let (dest, bytes) = (out.dest, out.bytes.clone());
        {
            let mut st = cell.lock();
            if st.uas_status >= 200 || st.blocked {
                return Err(TmError::Closed);
            }
            // The branch exists before its request leaves: a reply can come back sooner
            // than this thread runs again, and must find it.
            let cancel = if st.cancelled { CancelState::Pending } else { CancelState::None };
            st.branches.push(Branch {
                n,
                uri: out.uri,
                dest: out.dest,
                sent: out.bytes,
                status: 0,
                final_reply: None,
                is_final: false,
                local_timeout: false,
                cancel,
                pending_reason: None,
                cancel_bytes: None,
                cancel_next: None,
                cancel_interval: t.t1,
                cancel_deadline: None,
                fr_deadline: now + t.fr,
                // Timer A / E start at T1 on unreliable transports only (§17.1.1.2, §17.1.2.2).
                next_retrans: unreliable.then_some(now + t.t1),
                retrans_interval: t.t1,
                reply_edits: Edits::new(),
            });
        }
        if let Err(e) = self.tp.send(dest.proto, dest.listener, dest.addr, bytes) {
            cell.lock().branches.retain(|b| b.n != n);
            return Err(TmError::Send(e.to_string()));
        }
        self.stats.relayed_requests.inc();
        if let Some(tm) = self.self_arc(cell) {
            tokio::spawn(branch_timer(tm, cell.clone(), n));
        }
        Ok(())
    }

    /// The caller cancelled (t_relay of a matching CANCEL): CANCEL every branch that has
    /// had a provisional reply, the others as soon as they get one (§9.1, §16.10).
    pub fn cancel(&self, cell: &Arc<Cell>, reason: Option<String>) {
        let mut sends = Sends::default();
        {
            let mut st = cell.lock();
            st.cancelled = true;
            st.cancel_reason = reason;
            let reason = st.cancel_reason.clone();
            for b in st.branches.iter_mut() {
                self.cancel_branch(b, reason.as_deref(), &mut sends);
            }
        }
        self.flush(cell, sends);
    }

    fn cancel_branch(&self, b: &mut Branch, reason: Option<&str>, sends: &mut Sends) {
        if b.is_final || matches!(b.cancel, CancelState::Sent | CancelState::Done) {
            return;
        }
        if b.status < 100 {
            b.cancel = CancelState::Pending;
            b.pending_reason = reason.map(str::to_string);
            return;
        }
        let Ok(invite) = SipMsg::parse(b.sent.clone()) else { return };
        let reason = reason.unwrap_or("Reason: SIP;cause=487;text=\"ORIGINATOR_CANCEL\"");
        let bytes = Bytes::from(build_cancel(&invite, reason));
        let now = Instant::now();
        b.cancel = CancelState::Sent;
        b.cancel_bytes = Some(bytes.clone());
        if b.dest.proto == Proto::Udp {
            b.cancel_next = Some(now + self.timers.t1);
        }
        b.cancel_deadline = Some(now + self.timers.t1 * 64);
        // §9.1: a branch that stays silent after CANCEL ends after 64*T1.
        b.fr_deadline = b.fr_deadline.min(now + self.timers.t1 * 64);
        sends.out.push((b.dest, bytes));
        sends.wake = true;
    }

    fn flush(&self, cell: &Cell, sends: Sends) {
        if sends.wake {
            cell.wake.notify_waiters();
        }
        for (d, bytes) in sends.out {
            if let Err(e) = self.tp.send(d.proto, d.listener, d.addr, bytes) {
                tracing::warn!(error = %e, "send on branch failed");
            }
        }
    }

    /// A reply arrived from downstream. Replies that match no cell go to
    /// [`super::TmHooks::on_stray_reply`].
    pub fn on_reply(&self, reply: SipMsg, src: SocketAddr, proto: Proto) {
        let Some(hooks) = self.hooks.get().cloned() else { return };
        if reply.top_via().and_then(|(_, v)| v.branch().map(|b| self.on_local_reply(b, &reply))) == Some(true) {
            return;
        }
        let found = reply
            .top_via()
            .and_then(|(_, v)| v.branch().and_then(|b| self.parse_branch(b)))
            .and_then(|(id, n)| self.by_id.get(&id).map(|c| (c.clone(), n)));
        let Some((cell, n)) = found else {
            hooks.on_stray_reply(reply, src, proto);
            return;
        };
        self.stats.received_replies.inc();
        let code = reply.status().unwrap_or(500);
        if reply.cseq().map(|c| c.method) == Some(Method::Cancel) {
            // The answer to our CANCEL ends its retransmissions; it goes nowhere else.
            let mut st = cell.lock();
            if let Some(b) = st.branches.iter_mut().find(|b| b.n == n) {
                if code >= 200 {
                    b.cancel = CancelState::Done;
                    b.cancel_next = None;
                }
            }
            drop(st);
            cell.wake.notify_waiters();
            return;
        }
        let invite = cell.method == Method::Invite;
        let mut sends = Sends::default();
        let idx;
        {
            let mut st = cell.lock();
            let reason = st.cancel_reason.clone();
            let Some(i) = st.branches.iter().position(|b| b.n == n) else { return };
            idx = i;
            let t = &self.timers;
            let b = &mut st.branches[i];
            if b.is_final {
                // A retransmitted final. 2xx to INVITE go up again (the UAS retransmits
                // them until the ACK, §13.3.1.4); negative ones get our ACK again.
                drop(st);
                if invite && (200..300).contains(&code) {
                    self.relay_reply(&cell, &reply, &Edits::new());
                } else if invite && code >= 300 {
                    self.send_ack(&cell, idx, &reply);
                }
                return;
            }
            if code < 200 {
                let first = b.status < 100;
                b.status = b.status.max(code);
                if invite {
                    // Timer A stops with any provisional (§17.1.1.2); Timer C takes over.
                    b.next_retrans = None;
                    if first || t.restart_fr_on_each_reply {
                        b.fr_deadline = Instant::now() + t.fr_inv;
                    }
                } else if b.next_retrans.is_some() {
                    // Timer E keeps firing, every T2, in Proceeding (§17.1.2.2).
                    b.retrans_interval = t.t2;
                }
                if b.cancel == CancelState::Pending {
                    let r = b.pending_reason.take().or(reason);
                    self.cancel_branch(b, r.as_deref(), &mut sends);
                }
            } else {
                b.is_final = true;
                b.status = code;
                b.next_retrans = None;
                if code >= 300 {
                    b.final_reply = Some(reply.clone());
                }
            }
        }
        self.flush(&cell, sends);
        if code >= 200 {
            cell.wake.notify_waiters();
        }
        if code >= 300 && invite {
            // §17.1.1.3: the client transaction itself ACKs a negative final.
            self.send_ack(&cell, idx, &reply);
        }
        let verdict = hooks.on_reply(&cell, idx, &reply, src);
        if code < 200 {
            // 100 is hop-by-hop and never relayed (§16.7 step 5).
            if code > 100 && !verdict.drop {
                self.relay_reply(&cell, &reply, &verdict.edits);
            }
            return;
        }
        if code < 300 {
            self.relay_reply(&cell, &reply, &verdict.edits);
            if invite {
                // §16.7 step 10: a 2xx ends the other branches.
                self.cancel_others(&cell, idx, code, reply.reason());
            }
            return;
        }
        {
            let mut st = cell.lock();
            if let Some(b) = st.branches.get_mut(idx) {
                b.reply_edits = verdict.edits;
            }
            if (600..700).contains(&code) && invite && self.timers.block_6xx {
                // §16.7 step 5: a 6xx ends forking; the others get CANCEL.
                st.blocked = true;
            }
        }
        if (600..700).contains(&code) && invite && self.timers.block_6xx {
            self.cancel_others(&cell, idx, code, reply.reason());
        }
        self.check_complete(&cell);
    }

    /// CANCELs every branch but `except` (a 2xx or a 6xx arrived there). The Reason tells
    /// the callee why (RFC 3326): "completed elsewhere" keeps a 2xx race out of missed-call
    /// lists; a 6xx passes its own cause on.
    fn cancel_others(&self, cell: &Arc<Cell>, except: usize, code: u16, reason_phrase: &str) {
        let reason = if (200..300).contains(&code) {
            "Reason: SIP;cause=200;text=\"Call completed elsewhere\"".to_string()
        } else {
            format!("Reason: SIP;cause={code};text=\"{}\"", reason_phrase.replace('"', ""))
        };
        let mut sends = Sends::default();
        {
            let mut st = cell.lock();
            for (i, b) in st.branches.iter_mut().enumerate() {
                if i != except {
                    self.cancel_branch(b, Some(&reason), &mut sends);
                }
            }
        }
        self.flush(cell, sends);
    }

    fn send_ack(&self, cell: &Cell, idx: usize, reply: &SipMsg) {
        let Some((sent, dest)) = cell.lock().branches.get(idx).map(|b| (b.sent.clone(), b.dest)) else { return };
        if let Ok(invite) = SipMsg::parse(sent) {
            let ack = Bytes::from(build_ack_for_reply(&invite, reply));
            let _ = self.tp.send(dest.proto, dest.listener, dest.addr, ack);
        }
    }

    /// Once every branch of the current generation ended negative: failure_route, then
    /// (unless it forked again or replied) the best reply goes upstream.
    pub(crate) fn check_complete(&self, cell: &Arc<Cell>) {
        let Some(hooks) = self.hooks.get().cloned() else { return };
        let (winner, before) = {
            let mut st = cell.lock();
            let gen = st.generation.min(st.branches.len());
            if st.deciding || st.uas_status >= 200 || st.building > 0 || st.branches.len() == gen {
                return;
            }
            if !st.branches[gen..].iter().all(|b| b.is_final) {
                return;
            }
            let cancelled = st.cancelled;
            let codes =
                st.branches[gen..].iter().enumerate().map(|(i, b)| (gen + i, b.status)).filter(|&(_, c)| c >= 300);
            let Some((bi, code)) = select::pick(codes, cancelled) else { return };
            st.deciding = true;
            let b = &st.branches[bi];
            (Winner { branch: bi, code, reply: b.final_reply.clone() }, st.branches.len())
        };
        hooks.on_failure(cell, &winner);
        let (forked, replied, edits) = {
            let mut st = cell.lock();
            let forked = st.branches.len() > before || st.building > 0;
            if forked {
                st.generation = before;
                st.deciding = false;
            }
            let edits = st.branches.get(winner.branch).map(|b| b.reply_edits.clone()).unwrap_or_default();
            (forked, st.uas_status >= 200, edits)
        };
        if forked {
            self.check_complete(cell);
            return;
        }
        if replied {
            return;
        }
        match &winner.reply {
            Some(r) => {
                self.relay_reply(cell, r, &edits);
            }
            None => {
                self.reply(cell, 408, "Request Timeout", "", b"");
            }
        }
    }
}

async fn branch_timer(tm: Arc<Tm>, cell: Arc<Cell>, n: u32) {
    let far = Duration::from_secs(3600);
    loop {
        // Armed before the state is read, so a change made meanwhile is not missed: a final
        // reply ends this task at once instead of at the old deadline (which can be
        // fr_inv_timeout away, holding the whole cell).
        let changed = cell.wake.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let wake = {
            let st = cell.lock();
            if st.finished {
                return;
            }
            let Some(b) = st.branches.iter().find(|b| b.n == n) else { return };
            let cancel_active = b.cancel == CancelState::Sent && b.cancel_next.is_some();
            if b.is_final && !cancel_active {
                return;
            }
            let mut w = if b.is_final { Instant::now() + far } else { b.fr_deadline };
            if let Some(r) = b.next_retrans {
                w = w.min(r);
            }
            if let Some(r) = b.cancel_next.filter(|_| cancel_active) {
                w = w.min(r);
            }
            w
        };
        tokio::select! {
            _ = sleep_until(wake) => {}
            _ = &mut changed => {}
        }
        let now = Instant::now();
        let mut sends = Sends::default();
        let mut timed_out = false;
        {
            let mut st = cell.lock();
            let invite = cell.method == Method::Invite;
            let reason = "Reason: SIP;cause=480;text=\"NO_ANSWER\"";
            let Some(b) = st.branches.iter_mut().find(|b| b.n == n) else { return };
            if !b.is_final && now >= b.fr_deadline {
                // Timer B/F/C fired: a local 408 on this branch (§16.8); an INVITE branch
                // that rang gets a CANCEL, a silent one never does (§9.1).
                let rang = b.status >= 100;
                b.next_retrans = None;
                if invite && rang && b.cancel == CancelState::None {
                    tm.cancel_branch(b, Some(reason), &mut sends);
                }
                b.is_final = true;
                b.local_timeout = true;
                b.status = 408;
                timed_out = true;
            } else if !b.is_final {
                if let Some(r) = b.next_retrans {
                    if now >= r {
                        sends.out.push((b.dest, b.sent.clone()));
                        // Timer A doubles without bound; Timer E caps at T2 (§17.1.1.2, §17.1.2.2).
                        b.retrans_interval =
                            if invite { b.retrans_interval * 2 } else { (b.retrans_interval * 2).min(tm.timers.t2) };
                        b.next_retrans = Some(now + b.retrans_interval);
                    }
                }
            }
            if b.cancel == CancelState::Sent {
                if let (Some(next), Some(bytes)) = (b.cancel_next, b.cancel_bytes.clone()) {
                    if b.cancel_deadline.is_some_and(|d| now >= d) {
                        b.cancel = CancelState::Done;
                        b.cancel_next = None;
                    } else if now >= next {
                        sends.out.push((b.dest, bytes));
                        b.cancel_interval = (b.cancel_interval * 2).min(tm.timers.t2);
                        b.cancel_next = Some(now + b.cancel_interval);
                    }
                }
            }
        }
        tm.flush(&cell, sends);
        if timed_out {
            tm.check_complete(&cell);
        }
    }
}
