//! The request pipeline: every message from the transport goes through here.
//!
//! ```text
//! datagram/frame ─ parse ─┬─ request ─ sanity (400) ─ route hook ─ CoreOps calls ─ send
//!                         └─ reply ─── onreply_route ─ transaction match ─┬─ relay upstream
//!                                                                         └─ stray: by Via
//! ```
//!
//! Owns: turning a parsed message into a hook call, carrying out what the script asked for
//! (replies, relays, branches with Via / Record-Route / R-URI edits), and the hooks the
//! transaction layer calls back (onreply routes, failure_route). Does not own: SIP parsing,
//! sockets, timers, or the script language.

mod core_ops;
mod dialog;
pub mod dry_run;
mod hooks;
pub mod natping;
pub mod probe;
mod relay;
mod util;

use crate::config::{Config, RrConfig};
use crate::message::{SipMsg, METHOD_SLOTS};
use crate::script::api::{CoreOps, Ctx, RouteKind};
use crate::script::{Outcome, ScriptHost};
use crate::transaction::{ByClass, Counter, Tm};
use crate::transport::{Handler, Inbound, Proto, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

pub use util::{reply_dest, stamp_top_via};

/// The proxy's counters: OpenSIPS's `core:` and `sl:` statistics, read by the management
/// interface (`get_statistics`, `/metrics`). Plain atomics bumped with Relaxed ordering, so
/// the hot path pays one atomic add per event and never takes a lock.
#[derive(Default, Debug)]
pub struct Stats {
    /// Requests that parsed (`core:rcv_requests`), overload-shed ones included.
    pub rcv_requests: Counter,
    /// The same by [`crate::message::Method::index`] (`core:rcv_requests_invite` …).
    pub rcv_requests_by_method: [Counter; METHOD_SLOTS],
    /// Replies that parsed (`core:rcv_replies`).
    pub rcv_replies: Counter,
    /// The same by status class (`core:rcv_replies_2xx` …).
    pub rcv_replies_by_class: ByClass,
    /// Requests forwarded statelessly: `forward()`, the ACK of a 2xx (`core:fwd_requests`).
    pub fwd_requests: Counter,
    /// Replies that matched no transaction, forwarded statelessly (`core:fwd_replies`).
    pub fwd_replies: Counter,
    /// Requests dropped without an answer: `drop()` in the request or error route, and
    /// retransmissions dropped under overload (`core:drop_requests`).
    pub drop_requests: Counter,
    /// Replies dropped: `drop()` in an onreply route, and stray replies not for us
    /// (`core:drop_replies`).
    pub drop_replies: Counter,
    /// Requests that did not parse or failed RFC 3261 §16.3, and request routes that ended
    /// in a script error (`core:err_requests`).
    pub err_requests: Counter,
    /// Replies that did not parse or failed §18.1.2 checks (`core:err_replies`).
    pub err_replies: Counter,
    /// New requests refused (503) or retransmissions dropped by overload protection
    /// (`core:shed_requests`, siprox's own).
    pub shed_requests: Counter,
    /// Replies this proxy built and sent statelessly, by class (`sl:1xx_replies` …).
    pub sl_replies: ByClass,
}

impl Stats {
    /// Every received message is counted here, before anything else looks at it.
    #[inline]
    fn received(&self, msg: &SipMsg) {
        if msg.is_request() {
            self.rcv_requests.inc();
            if let Some(c) = self.rcv_requests_by_method.get(msg.method().index()) {
                c.inc();
            }
        } else {
            self.rcv_replies.inc();
            self.rcv_replies_by_class.inc(msg.status().unwrap_or(0));
        }
    }
}

/// Where a request came from, as far as answering it is concerned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub src: SocketAddr,
    pub proto: Proto,
    pub listener: usize,
    /// `force_rport()` was called: answer to the source port whatever the Via says.
    pub force_rport: bool,
}

pub struct Proxy {
    tp: Arc<Transport>,
    tm: Arc<Tm>,
    script: Arc<ScriptHost>,
    /// The dialogs the script creates; replies and BYEs move them on.
    dialogs: Arc<crate::dialog::Dialogs>,
    rr: RrConfig,
    shed_after: Option<std::time::Duration>,
    last_shed_log: std::sync::Mutex<Option<std::time::Instant>>,
    me: Weak<Proxy>,
    pub stats: Stats,
}

impl Proxy {
    pub fn new(
        cfg: &Config,
        tp: Arc<Transport>,
        tm: Arc<Tm>,
        script: Arc<ScriptHost>,
        dialogs: Arc<crate::dialog::Dialogs>,
    ) -> Arc<Proxy> {
        let proxy = Arc::new_cyclic(|me| Proxy {
            tp,
            tm: tm.clone(),
            script,
            dialogs: dialogs.clone(),
            rr: cfg.rr.clone(),
            shed_after: (cfg.core.shed_delay_ms > 0).then(|| std::time::Duration::from_millis(cfg.core.shed_delay_ms)),
            last_shed_log: std::sync::Mutex::new(None),
            me: me.clone(),
            stats: Stats::default(),
        });
        tm.set_hooks(proxy.clone());
        let actions: Weak<dyn crate::dialog::DialogActions> = Arc::downgrade(&proxy) as Weak<Proxy>;
        dialogs.set_actions(actions);
        proxy
    }

    fn core(&self) -> Arc<dyn CoreOps> {
        match self.me.upgrade() {
            Some(p) => p,
            // The proxy is dropped only at shutdown, after the sockets stop delivering.
            None => unreachable!("proxy used after drop"),
        }
    }

    /// Runs `startup_route` once, if the script has one (spec §1.1).
    pub fn startup(&self) {
        let bundle = self.script.bundle();
        if !bundle.has_hook("startup_route") {
            return;
        }
        let ctx = Ctx::new(
            RouteKind::Startup,
            SipMsg::empty(),
            SocketAddr::from(([0, 0, 0, 0], 0)),
            "udp",
            SocketAddr::from(([0, 0, 0, 0], 0)),
            self.core(),
        );
        let (_, outcome) = self.script.run_on(&bundle, "startup_route", ctx);
        if let Outcome::Error(e) = outcome {
            tracing::error!(error = %e, "startup_route failed");
        }
    }

    pub fn script(&self) -> &Arc<ScriptHost> {
        &self.script
    }

    fn local_addr(&self, listener: usize) -> SocketAddr {
        self.tp.listener(listener).map(|l| l.addr).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn on_request(&self, msg: SipMsg, src: SocketAddr, proto: Proto, listener: usize) {
        // RFC 3261 §16.3: reasonable syntax, else 400 (never for ACK, §17.1.1.3 ACK gets none).
        if let Err(e) = msg.check_request() {
            self.stats.err_requests.inc();
            tracing::info!(%src, error = %e, "bad request");
            let can_answer = msg.method() != crate::message::Method::Ack && msg.top_via().is_some();
            // error_route may answer itself (or drop); otherwise the 400 goes out.
            let bundle = self.script.bundle();
            if bundle.has_hook("error_route") {
                let mut ctx = Ctx::new(
                    RouteKind::Error,
                    msg.clone(),
                    src,
                    proto.as_str(),
                    self.local_addr(listener),
                    self.core(),
                );
                ctx.listener = listener;
                ctx.reply_code = 400;
                ctx.last_error = Some(crate::script::api::LastError { code: 400, reason: e.reason().to_string() });
                let (ctx, outcome) = self.script.run_on(&bundle, "error_route", ctx);
                if let Outcome::Error(err) = &outcome {
                    tracing::error!(error = %err, "error_route failed");
                }
                if (ctx.dropped || matches!(outcome, Outcome::Drop)) && !ctx.answered {
                    self.stats.drop_requests.inc();
                }
                if ctx.answered || ctx.dropped {
                    return;
                }
            }
            if can_answer {
                self.reply_stateless(
                    &msg,
                    Origin { src, proto, listener, force_rport: false },
                    e.status_code(),
                    e.reason(),
                );
            }
            return;
        }
        let mut ctx = Ctx::new(RouteKind::Request, msg, src, proto.as_str(), self.local_addr(listener), self.core());
        ctx.listener = listener;
        let (ctx, outcome) = self.script.run("route", ctx);
        self.settle_dialog(&ctx);
        self.after_hook(ctx, outcome, "route");
    }

    /// A script error answers 500 unless something was already sent (design.md §3).
    fn after_hook(&self, mut ctx: Ctx, outcome: Outcome, hook: &str) {
        match outcome {
            Outcome::Error(e) => {
                self.stats.err_requests.inc();
                tracing::error!(hook, error = %e, call_id = ctx.msg.call_id(), "script error");
                if ctx.kind == RouteKind::Request && !ctx.answered && ctx.msg.method() != crate::message::Method::Ack {
                    let core = self.core();
                    core.send_reply(&mut ctx, 500, "Server Internal Error");
                }
            }
            Outcome::Missing => {
                tracing::error!(hook, "the script has no such route");
            }
            Outcome::Drop if !ctx.answered => self.stats.drop_requests.inc(),
            Outcome::Done | Outcome::Exit | Outcome::Drop => {}
        }
    }

    fn on_reply_msg(&self, msg: SipMsg, src: SocketAddr, proto: Proto, listener: usize) {
        // RFC 3261 §18.1.2: a reply that is not well-formed is silently discarded.
        if let Err(e) = msg.check_reply() {
            self.stats.err_replies.inc();
            tracing::info!(%src, error = %e, "bad reply dropped");
            return;
        }
        // The unnamed onreply_route sees every reply first; drop() there discards it.
        // (A reload between the check and the run is harmless: a version without the route
        // answers `Missing`, and the reply goes on.)
        if self.script.has_hook("onreply_route") {
            let mut ctx =
                Ctx::new(RouteKind::OnReply, msg.clone(), src, proto.as_str(), self.local_addr(listener), self.core());
            ctx.listener = listener;
            ctx.reply_code = msg.status().unwrap_or(0);
            let (ctx, outcome) = self.script.run("onreply_route", ctx);
            if matches!(outcome, Outcome::Drop) || ctx.dropped {
                self.stats.drop_replies.inc();
                return;
            }
            if let Outcome::Error(e) = outcome {
                tracing::error!(error = %e, "onreply_route failed");
            }
        }
        self.tm.on_reply(msg, src, proto);
    }

    /// Sends a reply built from `req` straight back (no transaction).
    fn reply_stateless(&self, req: &SipMsg, from: Origin, code: u16, reason: &str) {
        self.reply_stateless_with(req, from, code, reason, "");
    }

    /// As [`Proxy::reply_stateless`], with extra header lines (`append_to_reply`).
    fn reply_stateless_with(&self, req: &SipMsg, from: Origin, code: u16, reason: &str, extra_headers: &str) {
        let Origin { src, proto, listener, force_rport } = from;
        let bytes = util::stateless_reply(req, src, force_rport, code, reason, extra_headers);
        let dest = reply_dest(req, src, proto, listener, force_rport);
        match self.tp.send(dest.proto, dest.listener, dest.addr, bytes) {
            Ok(()) => self.stats.sl_replies.inc(code),
            Err(e) => tracing::warn!(error = %e, "stateless reply not sent"),
        }
    }

    /// A message that did not parse: 400 when enough of a request survives to answer it,
    /// else a logged drop.
    fn on_unparsable(
        &self,
        data: &Bytes,
        err: crate::message::ParseError,
        src: SocketAddr,
        proto: Proto,
        listener: usize,
    ) {
        // A status line starts with the version (RFC 3261 §7.2); anything else was meant as a request.
        if data.starts_with(b"SIP/") {
            self.stats.err_replies.inc();
        } else {
            self.stats.err_requests.inc();
        }
        tracing::info!(%src, error = %err, len = data.len(), "unparsable message dropped");
        if let Some(req) = util::salvage_headers(data) {
            if req.is_request()
                && req.method() != crate::message::Method::Ack
                && req.top_via().is_some()
                && req.check_request().is_ok()
            {
                self.reply_stateless(
                    &req,
                    Origin { src, proto, listener, force_rport: false },
                    err.status_code(),
                    err.reason(),
                );
            }
        }
    }
}

impl Proxy {
    /// Overload protection (design.md §7): when datagrams wait too long in the kernel queue,
    /// work in progress (replies, in-dialog requests, ACK, CANCEL) still goes through, a
    /// retransmission is dropped (the original is being handled) and a new request gets a
    /// cheap 503 without running the script, so throughput plateaus instead of collapsing
    /// under retransmissions. Returns true when the request was shed.
    fn shed(&self, msg: &SipMsg, m: &Inbound) -> bool {
        let Some(limit) = self.shed_after else { return false };
        if m.queued < limit
            || msg.has_to_tag()
            || matches!(msg.method(), crate::message::Method::Ack | crate::message::Method::Cancel)
        {
            return false;
        }
        self.stats.shed_requests.inc();
        if self.tm.lookup(msg).is_none() && msg.check_request().is_ok() {
            self.reply_stateless(
                msg,
                Origin { src: m.src, proto: m.proto, listener: m.listener, force_rport: false },
                503,
                "Service Unavailable",
            );
        } else {
            self.stats.drop_requests.inc();
        }
        let mut last = self.last_shed_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(1)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(
                queued_ms = m.queued.as_millis() as u64,
                shed = self.stats.shed_requests.get(),
                "overloaded: shedding new requests"
            );
        }
        true
    }
}

impl Handler for Proxy {
    fn on_message(&self, m: Inbound) {
        let parsed = SipMsg::parse(m.data.clone());
        if let Ok(msg) = &parsed {
            self.stats.received(msg);
        }
        match parsed {
            Ok(msg) if msg.is_request() => {
                if !self.shed(&msg, &m) {
                    self.on_request(msg, m.src, m.proto, m.listener)
                }
            }
            Ok(msg) => self.on_reply_msg(msg, m.src, m.proto, m.listener),
            Err(e) => self.on_unparsable(&m.data, e, m.src, m.proto, m.listener),
        }
    }
}
