//! The server side of a cell: replies going upstream (relayed or built here), their
//! retransmission over UDP (Timer G/H, RFC 3261 §17.2.1) and the cell's end.

use super::{Cell, Tm};
use crate::message::{build_reply, split_commas, Edits, HeaderName, Method, ReplyOpts, SipMsg, Span};
use crate::transport::Proto;
use bytes::Bytes;
use std::sync::Arc;
use tokio::time::{sleep, Instant};

/// The bytes to delete so the topmost Via value (ours) disappears (RFC 3261 §16.7 step 3).
pub fn top_via_removal(reply: &SipMsg) -> Option<Span> {
    let h = reply.first(&HeaderName::Via)?;
    let mut parts = split_commas(reply.slice(h.value));
    let first = parts.next()?;
    Some(match parts.next() {
        None => h.line,
        Some(second) => Span::new(h.value.start as usize + first.start, h.value.start as usize + second.start),
    })
}

impl Tm {
    /// Sends a reply built here upstream (t_reply, 100 Trying, local 408/487/5xx).
    /// Returns false when the cell already answered finally.
    pub fn reply(&self, cell: &Arc<Cell>, code: u16, reason: &str, extra: &str, body: &[u8]) -> bool {
        let opts =
            ReplyOpts { to_tag: Some(&cell.to_tag), top_via: cell.top_via.as_deref(), extra_headers: extra, body };
        let bytes = build_reply(&cell.request, code, reason, &opts);
        let sent = self.send_upstream(cell, code, Bytes::from(bytes));
        if sent {
            self.stats.local.inc(code);
        }
        sent
    }

    /// Relays a reply received on a branch with our Via removed and `edits` applied.
    pub(crate) fn relay_reply(&self, cell: &Arc<Cell>, reply: &SipMsg, edits: &Edits) -> bool {
        let mut e = edits.clone();
        if let Some(span) = top_via_removal(reply) {
            e.delete(span);
        }
        let code = reply.status().unwrap_or(500);
        let sent = self.send_upstream(cell, code, Bytes::from(Edits::render(reply, &[&e])));
        if sent {
            self.stats.relayed.inc(code);
        }
        sent
    }

    fn send_upstream(&self, cell: &Arc<Cell>, code: u16, bytes: Bytes) -> bool {
        let first_final;
        {
            let mut st = cell.lock();
            let again_2xx =
                cell.method == Method::Invite && (200..300).contains(&code) && (200..300).contains(&st.uas_status);
            if st.uas_status >= 200 && !again_2xx {
                return false;
            }
            first_final = code >= 200 && st.uas_status < 200;
            st.uas_status = code;
            st.uas_last = Some(bytes.clone());
        }
        let up = cell.upstream;
        if let Err(e) = self.tp.send(up.proto, up.listener, up.addr, bytes) {
            tracing::warn!(error = %e, code, "reply upstream not sent");
        }
        if first_final {
            self.stats.completed.inc(code);
            self.spawn_server_timer(cell.clone(), code);
            if let Some(h) = self.hooks.get() {
                h.on_final(cell, code);
            }
        }
        true
    }

    /// Re-sends the last reply upstream: the answer to a retransmitted request
    /// (RFC 3261 §17.2.1 Proceeding/Completed, §17.2.2).
    pub fn retransmit_reply(&self, cell: &Cell) {
        let last = cell.lock().uas_last.clone();
        if let Some(b) = last {
            let up = cell.upstream;
            let _ = self.tp.send(up.proto, up.listener, up.addr, b);
        }
    }

    /// The ACK of a negative final (RFC 3261 §17.2.1 Completed → Confirmed).
    pub fn absorb_ack(&self, cell: &Cell) {
        cell.lock().acked = true;
    }

    fn spawn_server_timer(self: &Tm, cell: Arc<Cell>, code: u16) {
        let Some(tm) = self.self_arc(&cell) else { return };
        tokio::spawn(async move {
            let t = tm.timers.clone();
            // Timer G/H: a negative final to an INVITE over UDP repeats until its ACK.
            if cell.method == Method::Invite && code >= 300 && cell.upstream.proto == Proto::Udp {
                let give_up = Instant::now() + t.t1 * 64;
                let mut interval = t.t1;
                loop {
                    sleep(interval).await;
                    if cell.lock().acked || Instant::now() >= give_up {
                        break;
                    }
                    tm.retransmit_reply(&cell);
                    interval = (interval * 2).min(t.t2);
                }
            }
            // Linger to absorb retransmissions, and until the other branches are done
            // (a late 487 must not reach the caller as a stray reply).
            let started = Instant::now();
            loop {
                sleep(t.wait).await;
                let done = cell.lock().branches.iter().all(|b| b.is_final);
                if done || started.elapsed() > t.fr_inv + t.wait {
                    break;
                }
            }
            cell.lock().finished = true;
            tm.forget(&cell);
        });
    }

    /// The `Arc<Tm>` a spawned timer holds (the cell keeps the table alive only through it).
    pub(crate) fn self_arc(&self, cell: &Cell) -> Option<Arc<Tm>> {
        let _ = cell;
        self.me.get().and_then(|w| w.upgrade())
    }
}
