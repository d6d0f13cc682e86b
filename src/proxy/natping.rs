//! NAT keep-alive (nathelper's pinging, spec §9): registered contacts behind NAT are pinged
//! every `natping_interval` seconds, from the socket they registered through, so their
//! NAT binding stays open and the proxy can reach them for calls.
//!
//! The contacts are split into slices by id and one slice goes per tick, so a round of
//! pings is spread over the interval instead of leaving in one burst. A contact with
//! `sipping_bflag` gets a SIP request (`sipping_method`, default OPTIONS) and must answer:
//! one that leaves `max_pings_lost` in a row unanswered (each waited for `ping_threshold`
//! seconds) is removed. Others get the 4-byte all-zero UDP keep-alive, which needs no answer.

use super::util::local_dest;
use super::Proxy;
use crate::config::{NathelperConfig, UsrlocConfig};
use crate::modules::usrloc::{self, Contact, Usrloc};
use crate::script::api::flag_bit_of;
use crate::transaction::{LocalOutcome, LocalRequest};
use crate::transport::Proto;
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many ticks one round of pings is spread over.
const SLICES: u64 = 10;

/// The UDP keep-alive of contacts without `sipping_bflag`: four zero bytes, which a SIP
/// stack ignores and a NAT counts as traffic.
const NULL_KEEPALIVE: &[u8] = &[0, 0, 0, 0];

/// The pinging parameters, resolved from `[nathelper]` and `[usrloc]`.
#[derive(Clone, Debug)]
pub struct NatPingParams {
    pub interval: Duration,
    /// Only contacts carrying `nat_bit`.
    pub nated_only: bool,
    pub nat_bit: u64,
    /// Contacts carrying this bit get SIP pings (0: none do).
    pub sipping_bit: u64,
    pub method: String,
    pub from: String,
    pub tcp: bool,
    pub max_lost: u32,
    /// Contacts carrying this bit are removed when they stop answering (0: every
    /// SIP-pinged contact is).
    pub remove_bit: u64,
    pub threshold: Duration,
}

fn bit_of(name: Option<&str>) -> u64 {
    name.and_then(flag_bit_of).map_or(0, |b| 1u64 << b)
}

impl NatPingParams {
    /// `None` when pinging is off (`natping_interval = 0`).
    pub fn from_config(nh: &NathelperConfig, ul: &UsrlocConfig) -> Option<NatPingParams> {
        if nh.natping_interval == 0 {
            return None;
        }
        let method = if nh.sipping_method.trim().is_empty() { "OPTIONS".into() } else { nh.sipping_method.clone() };
        Some(NatPingParams {
            interval: Duration::from_secs(nh.natping_interval),
            nated_only: nh.ping_nated_only,
            nat_bit: bit_of(ul.nat_bflag.as_deref()),
            sipping_bit: bit_of(nh.sipping_bflag.as_deref()),
            method,
            from: nh.sipping_from.clone().unwrap_or_else(|| "sip:pinger@localhost".into()),
            tcp: nh.natping_tcp,
            max_lost: nh.max_pings_lost,
            remove_bit: bit_of(nh.remove_on_timeout_bflag.as_deref()),
            threshold: Duration::from_secs(u64::from(nh.ping_threshold.max(1))),
        })
    }

    fn wanted(&self, c: &Contact) -> bool {
        !self.nated_only || (self.nat_bit != 0 && c.cflags & self.nat_bit != 0)
    }

    fn sip_ping(&self, c: &Contact) -> bool {
        self.sipping_bit != 0 && c.cflags & self.sipping_bit != 0
    }

    fn removable(&self, c: &Contact) -> bool {
        self.max_lost > 0 && (self.remove_bit == 0 || c.cflags & self.remove_bit != 0)
    }
}

/// `nathelper:` statistics.
#[derive(Default, Debug)]
pub struct NatPingStats {
    pub sent: AtomicU64,
    pub lost: AtomicU64,
    pub removed: AtomicU64,
}

/// Which counter of [`NatPingStats`] a statistic reads.
type Pick = fn(&NatPingStats) -> &AtomicU64;

impl NatPingStats {
    /// Registers `nathelper:pings_sent`, `pings_lost` and `contacts_removed`.
    pub fn install(self: &Arc<Self>, stats: &crate::mi::stats::Statistics) {
        let counters: [(&str, Pick); 3] =
            [("pings_sent", |s| &s.sent), ("pings_lost", |s| &s.lost), ("contacts_removed", |s| &s.removed)];
        for (name, field) in counters {
            let (r, w) = (self.clone(), self.clone());
            stats.counter(
                "nathelper",
                name,
                move || field(&r).load(Ordering::Relaxed),
                move || field(&w).store(0, Ordering::Relaxed),
            );
        }
    }
}

/// Where the pings of `c` go: its NAT address when it has one, else its own URI.
fn target(c: &Contact) -> &str {
    c.received.as_deref().unwrap_or(&c.uri)
}

/// Starts the pinger; `None` when pinging is off.
pub fn start(
    proxy: Arc<Proxy>,
    ul: Arc<Usrloc>,
    params: Option<NatPingParams>,
    stats: Arc<NatPingStats>,
) -> Option<tokio::task::JoinHandle<()>> {
    let p = Arc::new(params?);
    let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(p.interval / SLICES as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut slice = 0u64;
        loop {
            tick.tick().await;
            slice = (slice + 1) % SLICES;
            let due = ul.live_where(usrloc::now(), |c| c.id.unsigned_abs() % SLICES == slice && p.wanted(c));
            for (table, c) in due {
                if p.sip_ping(&c) {
                    if !busy.lock().unwrap_or_else(|e| e.into_inner()).insert(c.id) {
                        continue;
                    }
                    let (proxy, ul, p, busy, stats) =
                        (proxy.clone(), ul.clone(), p.clone(), busy.clone(), stats.clone());
                    tokio::spawn(async move {
                        sip_ping(&proxy, &ul, &p, &table, &c, &stats).await;
                        busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&c.id);
                    });
                } else {
                    null_ping(&proxy, &p, &c, &stats).await;
                }
            }
        }
    }))
}

/// One SIP ping of `c` and what its answer, or its silence, means.
async fn sip_ping(proxy: &Proxy, ul: &Usrloc, p: &NatPingParams, table: &str, c: &Contact, stats: &NatPingStats) {
    let (dest, via_addr) = match local_dest(&proxy.tp, target(c), c.socket.as_deref()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(contact = %c.uri, error = ?e, "contact not pinged");
            return;
        }
    };
    if dest.proto.is_stream() && !p.tcp {
        return;
    }
    let req = LocalRequest {
        method: p.method.clone(),
        ruri: c.uri.clone(),
        from: p.from.clone(),
        max_forwards: 70,
        dest,
        via_addr,
        dialog: None,
    };
    // Any reply proves the NAT binding works, a 4xx/5xx as much as a 200. A ping that never
    // left this host (a standby's socket) says nothing about the contact: not sent, not lost.
    let answered = match proxy.tm.request_local(req, p.threshold).await {
        LocalOutcome::Final(_) => true,
        LocalOutcome::NoAnswer => false,
        LocalOutcome::NotSent(error) => {
            tracing::debug!(contact = %c.uri, %error, "SIP ping not sent");
            return;
        }
    };
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let lost = ul.ping_result(table, c.id, answered);
    if answered {
        return;
    }
    stats.lost.fetch_add(1, Ordering::Relaxed);
    if lost >= p.max_lost && p.removable(c) && ul.remove_id(table, c.id) {
        stats.removed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(aor = %c.aor, contact = %c.uri, lost, "contact removed: it stopped answering keep-alive pings");
    }
}

/// The keep-alive of `c`: four zero bytes over UDP, a double CRLF over a stream (RFC 5626
/// §3.5.1) when `natping_tcp` is on.
async fn null_ping(proxy: &Proxy, p: &NatPingParams, c: &Contact, stats: &NatPingStats) {
    let Ok((dest, _)) = local_dest(&proxy.tp, target(c), c.socket.as_deref()).await else { return };
    let bytes = match dest.proto {
        Proto::Udp => Bytes::from_static(NULL_KEEPALIVE),
        _ if p.tcp => Bytes::from_static(b"\r\n\r\n"),
        _ => return,
    };
    match proxy.tp.send(dest.proto, dest.listener, dest.addr, bytes) {
        Ok(()) => {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::debug!(contact = %c.uri, error = %e, "keep-alive not sent"),
    }
}
