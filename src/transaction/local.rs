//! Requests the proxy originates itself (OpenSIPS `t_request` / `t_uac`): the dispatcher's
//! OPTIONS probes, later keepalives. A non-INVITE client transaction (RFC 3261 §17.1.2)
//! reduced to what a prober needs: send, retransmit over UDP (Timer E: T1 doubling up to
//! T2), and the status of the first final reply ([`LocalOutcome`]).

use super::{Dest, Tm};
use crate::message::{build_request, NewRequest, SipMsg};
use crate::transport::Proto;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

/// What to send.
#[derive(Debug, Clone)]
pub struct LocalRequest {
    /// `OPTIONS`, or `ds_ping_method`.
    pub method: String,
    /// Request-URI (the destination probed).
    pub ruri: String,
    /// The From URI (`ds_ping_from`).
    pub from: String,
    pub max_forwards: u32,
    pub dest: Dest,
    /// `host:port` for our Via (the sending socket's advertised address).
    pub via_addr: String,
    /// For a request inside a dialog (a BYE ending it): its identity instead of fresh tags.
    pub dialog: Option<InDialog>,
}

/// How a locally originated request ended. Not sent and not answered are kept apart: a
/// packet that never left this host (a standby's socket, bound with IP_FREEBIND to an address
/// it does not hold, fails every send at once: EINVAL or ENETUNREACH) says nothing about the
/// destination, while silence after a send does (RFC 3261 §17.1.2.2: Timer F fired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    /// The status of the first final reply.
    Final(u16),
    /// Sent, and no final reply came in time.
    NoAnswer,
    /// The first send failed locally (the error, for the log).
    NotSent(String),
}

/// The headers that place a request in an existing dialog (RFC 3261 §12.2.1.1).
#[derive(Debug, Clone)]
pub struct InDialog {
    pub call_id: String,
    /// Whole From and To values, tags included.
    pub from: String,
    pub to: String,
    pub cseq: u32,
    /// Route values (`<uri>`), nearest first.
    pub route: Vec<String>,
}

impl Tm {
    /// Sends `req` and waits for its final reply, at most `timeout`. Provisional replies
    /// are ignored; a reply arrives through [`Tm::on_reply`] like any other.
    pub async fn request_local(&self, req: LocalRequest, timeout: Duration) -> LocalOutcome {
        let n = self.next_local.fetch_add(1, Ordering::Relaxed);
        let branch = format!("{}.L{n:x}", self.branch_prefix);
        let bytes = Bytes::from(render(&req, &branch, n));
        let (tx, mut rx) = oneshot::channel();
        self.local.insert(branch.clone(), tx);
        // The entry goes whatever ends the wait, a dropped (aborted) future included.
        let _entry = LocalEntry { tm: self, branch: &branch };
        self.stats.uac_transactions.inc();
        let d = req.dest;
        let sent = self.tp.send(d.proto, d.listener, d.addr, bytes.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut every = self.timers.t1;
        let answer = match sent {
            Err(e) => {
                tracing::debug!(uri = %req.ruri, error = %e, "local request not sent");
                LocalOutcome::NotSent(e.to_string())
            }
            Ok(()) => loop {
                let wake = (tokio::time::Instant::now() + every).min(deadline);
                tokio::select! {
                    code = &mut rx => break code.map_or(LocalOutcome::NoAnswer, LocalOutcome::Final),
                    _ = tokio::time::sleep_until(wake) => {
                        if tokio::time::Instant::now() >= deadline {
                            break LocalOutcome::NoAnswer;
                        }
                        // Timer E (§17.1.2.2): only unreliable transports retransmit.
                        if d.proto == Proto::Udp {
                            let _ = self.tp.send(d.proto, d.listener, d.addr, bytes.clone());
                        }
                        every = (every * 2).min(self.timers.t2);
                    }
                }
            },
        };
        answer
    }

    /// A reply to one of our own requests: hands its status to the waiting request (a
    /// final one) and says it was ours. Called before cell matching.
    pub(super) fn on_local_reply(&self, branch: &str, reply: &SipMsg) -> bool {
        let Some(rest) = branch.strip_prefix(self.branch_prefix.as_str()) else { return false };
        if !rest.starts_with(".L") {
            return false;
        }
        let code = reply.status().unwrap_or(0);
        if code >= 200 {
            if let Some((_, tx)) = self.local.remove(branch) {
                let _ = tx.send(code);
            }
        }
        true
    }
}

/// Removes a waiting request's entry when the wait ends.
struct LocalEntry<'a> {
    tm: &'a Tm,
    branch: &'a str,
}

impl Drop for LocalEntry<'_> {
    fn drop(&mut self) {
        self.tm.local.remove(self.branch);
    }
}

/// The request as sent: RFC 3261 §8.1.1 mandatory headers, no body. A fresh request gets
/// a From tag and a Call-ID of its own; one inside a dialog (§12.2.1.1) carries the
/// dialog's Call-ID, tags and route set.
fn render(req: &LocalRequest, branch: &str, n: u64) -> Vec<u8> {
    let via = format!("SIP/2.0/{} {};branch={branch};rport", req.dest.proto.via_token(), req.via_addr);
    let head = NewRequest {
        method: &req.method,
        ruri: &req.ruri,
        via: &via,
        max_forwards: req.max_forwards,
        ..Default::default()
    };
    if let Some(d) = &req.dialog {
        return build_request(&NewRequest {
            route: &d.route,
            from: &d.from,
            to: &d.to,
            call_id: &d.call_id,
            cseq: d.cseq,
            ..head
        });
    }
    let tag = format!("{:08x}", fastrand::u32(..));
    let via_host = req.via_addr.rsplit_once(':').map_or(req.via_addr.as_str(), |(h, _)| h);
    let from = format!("<{}>;tag={tag}", req.from);
    let to = format!("<{}>", req.ruri);
    let call_id = format!("{tag}-{n:x}@{via_host}");
    build_request(&NewRequest { from: &from, to: &to, call_id: &call_id, cseq: 1, ..head })
}
