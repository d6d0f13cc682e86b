//! The network side of dispatcher probing (spec §6.4): every `ds_ping_interval` an OPTIONS
//! (`ds_ping_method`) to each destination the dispatcher wants probed, from the socket its set
//! uses; the outcome goes back to the dispatcher, and a state change is logged and raised
//! as `event_route_E_DISPATCHER_STATUS` when the script defines it.
//!
//! A probe that gets no final reply within the ping interval (or `fr_timeout`, when shorter)
//! counts as a 408: a stopped backend is then found within interval × threshold, plus the
//! interval, rather than after OpenSIPS's `fr_timeout` per probe.

use super::util::{socket_listener, uri_dest, Resolve};
use super::Proxy;
use crate::message::SipMsg;
use crate::modules::dispatcher::{Dispatcher, ProbeTarget, StateChange};
use crate::script::api::{Ctx, RouteKind};
use crate::script::Outcome;
use crate::transaction::{Dest, LocalRequest};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The event route a state change raises (OpenSIPS `E_DISPATCHER_STATUS`).
const EVENT_ROUTE: &str = "event_route_E_DISPATCHER_STATUS";

/// Starts the probe loop when `ds_ping_interval` is set; it ends with the runtime.
pub fn start(proxy: Arc<Proxy>, ds: Arc<Dispatcher>, fr_timeout: Duration) -> Option<tokio::task::JoinHandle<()>> {
    let every = ds.ping_interval()?;
    let timeout = every.min(fr_timeout).max(Duration::from_millis(100));
    // Destinations whose probe is still out: never two at once for one (their results
    // could arrive out of order), and a stalled resolver cannot pile probes up.
    let busy: Arc<Mutex<HashSet<(i64, String)>>> = Arc::default();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            for target in ds.probe_targets() {
                let key = (target.setid, target.uri.clone());
                if !busy.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
                    continue;
                }
                let (proxy, ds, busy) = (proxy.clone(), ds.clone(), busy.clone());
                tokio::spawn(async move {
                    probe_one(proxy, ds, target, timeout).await;
                    busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                });
            }
        }
    }))
}

async fn probe_one(proxy: Arc<Proxy>, ds: Arc<Dispatcher>, target: ProbeTarget, timeout: Duration) {
    let code = match local_request(&proxy, &ds, &target).await {
        Some(req) => proxy.tm.request_local(req, timeout).await,
        None => None,
    };
    // A state change reaches the dispatcher's listeners (the log, the event route).
    let _ = ds.probe_result(&target, code);
}

/// The probe for `target`: where to send it and from which socket.
async fn local_request(proxy: &Proxy, ds: &Dispatcher, target: &ProbeTarget) -> Option<LocalRequest> {
    let tp = proxy.tp.clone();
    let uri = target.uri.clone();
    // A host name is looked up with the system resolver, which blocks: off the workers.
    let hop = tokio::task::spawn_blocking(move || uri_dest(tp.sockets(), &uri, Resolve::System)).await.ok();
    let hop = match hop {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            tracing::debug!(uri = %target.uri, error = ?e, "destination not probed");
            return None;
        }
        None => return None,
    };
    let sockets = proxy.tp.sockets();
    let listener = target
        .socket
        .as_deref()
        .and_then(|s| socket_listener(sockets, s))
        .filter(|&id| sockets.listener(id).is_some_and(|l| l.proto == hop.proto))
        .or_else(|| sockets.pick_listener(hop.proto, &hop.addr, None))?;
    let out = sockets.listener(listener)?;
    Some(LocalRequest {
        method: ds.ping_method().to_string(),
        ruri: target.uri.clone(),
        from: ds.ping_from().to_string(),
        max_forwards: ds.ping_maxfwd().unwrap_or(70),
        dest: Dest { proto: hop.proto, addr: hop.addr, listener: Some(listener) },
        via_addr: out.advertised.clone(),
        dialog: None,
    })
}

/// Logs a state change (from a probe, `ds_mark_dst` or `ds_set_state`) and runs the event
/// route with OpenSIPS's parameters (`group`, `address`, `status`, `partition`).
pub fn announce(proxy: &Proxy, change: &StateChange) {
    tracing::info!(
        set = change.setid,
        uri = %change.uri,
        from = change.old.as_str(),
        to = change.new.as_str(),
        "dispatcher destination state changed"
    );
    if !proxy.script.has_hook(EVENT_ROUTE) {
        return;
    }
    let none = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut ctx = Ctx::new(RouteKind::Event, SipMsg::empty(), none, "udp", none, proxy.core());
    ctx.params = vec![
        ("group".into(), change.setid.to_string()),
        ("address".into(), change.uri.clone()),
        ("status".into(), change.new.as_lower().to_string()),
        ("partition".into(), "default".into()),
    ];
    let (_, outcome) = proxy.script.run(EVENT_ROUTE, ctx);
    if let Outcome::Error(e) = outcome {
        tracing::error!(error = %e, "event_route_E_DISPATCHER_STATUS failed");
    }
}
