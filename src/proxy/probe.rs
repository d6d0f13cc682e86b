//! The network side of probing (spec §6.4, §7): every interval a request (OPTIONS by
//! default) to each destination a module wants probed; the outcome goes back to the module,
//! and a state change is logged and raised as an event route when the script defines it.
//! The dispatcher and the load balancer share the loop, the one-probe-at-a-time rule and
//! the request building through [`Probed`]; each keeps its own state machine.
//!
//! A probe that gets no final reply within the ping interval (or `fr_timeout`, when shorter)
//! counts as a 408: a stopped backend is then found within interval × threshold, plus the
//! interval, rather than after OpenSIPS's `fr_timeout` per probe.
//!
//! A probe this host could not send records nothing: the packet never left, so it says
//! nothing about the destination. That is every probe of an HA standby, whose sockets are
//! bound (IP_FREEBIND) to the virtual IP it does not hold; counting them as 408 would mark
//! every destination inactive just before it takes over.

use super::util::local_dest;
use super::Proxy;
use crate::message::SipMsg;
use crate::modules::dispatcher::{self, Dispatcher, StateChange};
use crate::modules::load_balancer::{self, LoadBalancer, StatusChange};
use crate::script::api::{Ctx, RouteKind};
use crate::script::Outcome;
use crate::transaction::{LocalOutcome, LocalRequest};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The event route a dispatcher state change raises (OpenSIPS `E_DISPATCHER_STATUS`).
const EVENT_ROUTE: &str = "event_route_E_DISPATCHER_STATUS";
/// The event route a load-balancer status change raises (`E_LOAD_BALANCER_STATUS`).
const LB_EVENT_ROUTE: &str = "event_route_E_LOAD_BALANCER_STATUS";

/// One probe to send: where, from which socket, and what.
#[derive(Clone, Debug)]
pub struct Ping {
    pub uri: String,
    /// Socket to send from (`proto:ip:port`), when the module names one.
    pub socket: Option<String>,
    pub method: String,
    pub from: String,
    pub max_forwards: u32,
}

/// A module whose destinations are probed: what to probe each round, and where outcomes go.
pub trait Probed: Send + Sync + 'static {
    type Target: Send + 'static;
    /// Time between rounds; `None` = no probing.
    fn interval(&self) -> Option<Duration>;
    /// The destinations to probe this round.
    fn targets(&self) -> Vec<Self::Target>;
    /// Names a destination: one probe at a time per key.
    fn key(target: &Self::Target) -> String;
    fn ping(&self, target: &Self::Target) -> Ping;
    /// The final reply's code, `None` when none came (counted as 408 by the module).
    fn result(&self, target: &Self::Target, code: Option<u16>);
    /// The probe could not be sent from this host; the destination's state stays as it is.
    fn not_sent(&self, _target: &Self::Target) {}
}

impl Probed for Dispatcher {
    type Target = dispatcher::ProbeTarget;
    fn interval(&self) -> Option<Duration> {
        self.ping_interval()
    }
    fn targets(&self) -> Vec<Self::Target> {
        self.probe_targets()
    }
    fn key(t: &Self::Target) -> String {
        format!("{} {}", t.setid, t.uri)
    }
    fn ping(&self, t: &Self::Target) -> Ping {
        Ping {
            uri: t.uri.clone(),
            socket: t.socket.clone(),
            method: self.ping_method().to_string(),
            from: self.ping_from().to_string(),
            max_forwards: self.ping_maxfwd().unwrap_or(70),
        }
    }
    fn result(&self, t: &Self::Target, code: Option<u16>) {
        // A state change reaches the dispatcher's listeners (the log, the event route).
        let _ = self.probe_result(t, code);
    }
    fn not_sent(&self, _t: &Self::Target) {
        self.probe_not_sent();
    }
}

impl Probed for LoadBalancer {
    type Target = load_balancer::ProbeTarget;
    fn interval(&self) -> Option<Duration> {
        self.probing_interval()
    }
    fn targets(&self) -> Vec<Self::Target> {
        self.probe_targets()
    }
    fn key(t: &Self::Target) -> String {
        format!("{} {}", t.id, t.uri)
    }
    fn ping(&self, t: &Self::Target) -> Ping {
        Ping {
            uri: t.uri.clone(),
            socket: None,
            method: self.probing_method().to_string(),
            from: self.probing_from().to_string(),
            max_forwards: 70,
        }
    }
    fn result(&self, t: &Self::Target, code: Option<u16>) {
        // A status change reaches the load balancer's listeners (the event route).
        let _ = self.probe_result(t, code);
    }
}

/// Starts the probe loop of `module` when it has an interval; it ends with the runtime.
pub fn start<P: Probed>(
    proxy: Arc<Proxy>,
    module: Arc<P>,
    fr_timeout: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = module.interval()?;
    let timeout = every.min(fr_timeout).max(Duration::from_millis(100));
    // Destinations whose probe is still out: never two at once for one (their results
    // could arrive out of order), and a stalled resolver cannot pile probes up.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            for target in module.targets() {
                let key = P::key(&target);
                if !busy.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
                    continue;
                }
                let (proxy, module, busy) = (proxy.clone(), module.clone(), busy.clone());
                tokio::spawn(async move {
                    probe_once(&proxy, &*module, target, timeout).await;
                    busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                });
            }
        }
    }))
}

/// Sends one probe to `target` and hands its outcome to `module`. An unresolvable or
/// unroutable destination counts as no answer (it is the destination that is wrong); a send
/// that fails on this host counts as nothing. `target` is taken by value: a module's target
/// need only be `Send`, and a borrow of it would be held across the awaits.
async fn probe_once<P: Probed>(proxy: &Proxy, module: &P, target: P::Target, timeout: Duration) {
    let ping = module.ping(&target);
    let Some(req) = local_request(proxy, &ping).await else {
        module.result(&target, None);
        return;
    };
    match proxy.tm.request_local(req, timeout).await {
        LocalOutcome::Final(code) => module.result(&target, Some(code)),
        LocalOutcome::NoAnswer => module.result(&target, None),
        LocalOutcome::NotSent(error) => {
            tracing::debug!(uri = %ping.uri, %error, "probe not sent from this host; no result recorded");
            module.not_sent(&target);
        }
    }
}

/// The probe `ping`: where to send it and from which socket.
async fn local_request(proxy: &Proxy, ping: &Ping) -> Option<LocalRequest> {
    let (dest, via_addr) = match local_dest(&proxy.tp, &ping.uri, ping.socket.as_deref()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(uri = %ping.uri, error = ?e, "destination not probed");
            return None;
        }
    };
    Some(LocalRequest {
        method: ping.method.clone(),
        ruri: ping.uri.clone(),
        from: ping.from.clone(),
        max_forwards: ping.max_forwards,
        dest,
        via_addr,
        dialog: None,
    })
}

/// Runs event route `route` with `params` (`$param(name)`) when the script defines it.
fn raise_event(proxy: &Proxy, route: &str, params: Vec<(String, String)>) {
    if !proxy.script.has_hook(route) {
        return;
    }
    let none = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut ctx = Ctx::new(RouteKind::Event, SipMsg::empty(), none, "udp", none, proxy.core());
    ctx.params = params;
    let (_, outcome) = proxy.script.run(route, ctx);
    if let Outcome::Error(e) = outcome {
        tracing::error!(error = %e, "{route} failed");
    }
}

/// Raises `event_route_E_LOAD_BALANCER_STATUS` for a load-balancer status change (probe,
/// `lb_disable_dst`, `lb_status`) with OpenSIPS's parameters (`group`, `uri`, `status`).
pub fn announce_lb(proxy: &Proxy, change: &StatusChange) {
    let params = vec![
        ("group".into(), change.group.to_string()),
        ("uri".into(), change.uri.clone()),
        ("status".into(), change.new.as_event().to_string()),
    ];
    raise_event(proxy, LB_EVENT_ROUTE, params);
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
    let params = vec![
        ("group".into(), change.setid.to_string()),
        ("address".into(), change.uri.clone()),
        ("status".into(), change.new.as_lower().to_string()),
        ("partition".into(), "default".into()),
    ];
    raise_event(proxy, EVENT_ROUTE, params);
}
