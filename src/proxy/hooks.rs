//! The transaction layer's callbacks: onreply routes for replies on a branch,
//! failure_route once every branch failed, stateless forwarding of unmatched replies.

use super::util::{uri_dest, Resolve};
use super::Proxy;
use crate::message::{Edits, SipMsg, Via};
use crate::script::api::{Avps, CoreOps, Ctx, RouteKind, RrRequest};
use crate::script::{Bundle, Outcome};
use crate::transaction::{Cell, ReplyVerdict, TmHooks, Winner};
use crate::transport::Proto;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a transaction remembers of the script that created it (OpenSIPS keeps the same
/// in the transaction cell): armed routes, flags, AVPs, lumps, where the request came from.
pub(super) struct TxData {
    pub on_failure: Option<String>,
    pub on_reply: Option<String>,
    pub on_branch: Option<String>,
    pub flags: u64,
    pub avps: Avps,
    pub base_edits: Edits,
    pub rr: Option<RrRequest>,
    pub src: SocketAddr,
    pub proto: &'static str,
    pub local: SocketAddr,
    pub listener: usize,
    /// The script version that routed the request: its armed routes run on it.
    pub bundle: Option<Arc<Bundle>>,
    /// The dialog this INVITE creates: its replies move it on, a failure ends it.
    pub dlg: Option<Arc<crate::dialog::Dialog>>,
}

impl TxData {
    pub(super) fn from_ctx(ctx: &Ctx) -> TxData {
        TxData {
            on_failure: ctx.on_failure.clone(),
            on_reply: ctx.on_reply.clone(),
            on_branch: ctx.on_branch.clone(),
            flags: ctx.flags,
            avps: ctx.avps.clone(),
            base_edits: ctx.edits.clone(),
            rr: ctx.rr.clone(),
            src: ctx.src,
            proto: ctx.proto,
            local: ctx.local,
            listener: ctx.listener,
            // Kept only when a route is armed: the bundle then stays alive for the
            // transaction's life (wt_timer after its end), which a storm of reloads multiplies.
            bundle: (ctx.on_failure.is_some() || ctx.on_reply.is_some() || ctx.on_branch.is_some())
                .then(|| ctx.bundle.clone())
                .flatten(),
            dlg: ctx
                .dlg
                .clone()
                .filter(|_| ctx.msg.method() == crate::message::Method::Invite && !ctx.msg.has_to_tag()),
        }
    }

    /// The context of `onreply_route_<x>` for a reply on a branch: the reply as the message,
    /// the request's source and socket, the transaction's flags, no AVPs (spec §4.7,
    /// OpenSIPS `onreply_avp_mode=0`).
    /// `src` is the reply's sender (OpenSIPS's `$si` in a reply route), so
    /// `fix_nated_contact()` there writes the callee's NAT address.
    pub(super) fn reply_ctx(&self, reply: &SipMsg, src: SocketAddr, core: Arc<dyn CoreOps>) -> Ctx {
        let mut ctx = Ctx::new(RouteKind::OnReply, reply.clone(), src, self.proto, self.local, core);
        ctx.listener = self.listener;
        ctx.flags = self.flags;
        ctx.reply_code = reply.status().unwrap_or(0);
        ctx.bundle = self.bundle.clone();
        ctx.dlg = self.dlg.clone();
        ctx
    }

    /// The context of `failure_route_<x>`: a clean copy of the received `request` (R-URI as
    /// received, no `$du`, no branch flags) with the transaction's flags, AVPs, lumps, armed
    /// branch and reply routes and Record-Route request (spec §4.7).
    pub(super) fn failure_ctx(&self, request: &SipMsg, winner: &Winner, core: Arc<dyn CoreOps>) -> Ctx {
        let mut ctx = Ctx::new(RouteKind::Failure, request.clone(), self.src, self.proto, self.local, core);
        ctx.listener = self.listener;
        ctx.edits = self.base_edits.clone();
        ctx.flags = self.flags;
        ctx.avps = self.avps.clone();
        ctx.on_branch = self.on_branch.clone();
        ctx.on_reply = self.on_reply.clone();
        ctx.rr = self.rr.clone();
        ctx.reply = winner.reply.clone();
        ctx.reply_code = winner.code;
        ctx.bundle = self.bundle.clone();
        ctx.dlg = self.dlg.clone();
        ctx
    }

    /// What a failure route changed that the transaction keeps (spec §1.4).
    pub(super) fn write_back(&mut self, ctx: &Ctx) {
        self.flags = ctx.flags;
        self.avps = ctx.avps.clone();
    }
}

/// Runs `f` on the cell's [`TxData`], if the proxy stored one.
pub(super) fn with_data<T>(cell: &Cell, f: impl FnOnce(&mut TxData) -> T) -> Option<T> {
    let mut guard = cell.user.lock().unwrap_or_else(|p| p.into_inner());
    guard.as_mut().and_then(|b| b.downcast_mut::<TxData>()).map(f)
}

impl Proxy {
    /// Runs a route a transaction armed, on the script version that armed it (the context
    /// carries it; the current one when the transaction kept none).
    fn run_pinned(&self, hook: &str, ctx: Ctx) -> (Ctx, Outcome) {
        match ctx.bundle.clone() {
            Some(b) => self.script.run_on(&b, hook, ctx),
            None => self.script.run(hook, ctx),
        }
    }
}

impl TmHooks for Proxy {
    fn on_reply(&self, cell: &Arc<Cell>, branch: usize, reply: &SipMsg, src: SocketAddr) -> ReplyVerdict {
        // One look at the cell: its dialog, and its armed reply route.
        let (dlg, armed) =
            with_data(cell, |d| (d.dlg.clone(), d.on_reply.clone().map(|n| (n, d.reply_ctx(reply, src, self.core())))))
                .unwrap_or((None, None));
        if let Some(dlg) = dlg {
            // The socket the callee is reached on matters only once the 2xx confirms.
            let sock = reply
                .status()
                .is_some_and(|c| (200..300).contains(&c))
                .then(|| cell.branch_dest(branch).and_then(|d| d.listener).and_then(|l| self.tp.listener(l)))
                .flatten()
                .map(|l| format!("{}:{}", l.proto.as_str(), l.addr));
            self.dialogs.on_reply(&dlg, reply, sock);
        }
        let Some((name, mut ctx)) = armed else {
            return ReplyVerdict::default();
        };
        ctx.tsx = Some(cell.clone());
        let (ctx, outcome) = self.run_pinned(&format!("onreply_route_{name}"), ctx);
        if let Outcome::Error(e) = &outcome {
            tracing::error!(error = %e, "onreply_route failed");
        }
        let drop = matches!(outcome, Outcome::Drop) || ctx.dropped;
        // Only a provisional reply can be dropped (finals are relayed anyway; a 100 never is).
        if drop && (101..200).contains(&ctx.reply_code) {
            self.stats.drop_replies.inc();
        }
        ReplyVerdict { drop, edits: ctx.edits }
    }

    fn on_failure(&self, cell: &Arc<Cell>, winner: &Winner) {
        // The failure route is disarmed before it runs (spec §4.7); it re-arms itself.
        let Some((name, mut ctx)) = with_data(cell, |d| {
            let name = d.on_failure.take()?;
            Some((name, d.failure_ctx(&cell.request, winner, self.core())))
        })
        .flatten() else {
            return;
        };
        ctx.tsx = Some(cell.clone());
        let (ctx, outcome) = self.run_pinned(&format!("failure_route_{name}"), ctx);
        if let Outcome::Error(e) = &outcome {
            tracing::error!(error = %e, "failure_route failed");
        }
        with_data(cell, |d| d.write_back(&ctx));
    }

    fn on_final(&self, cell: &Arc<Cell>, code: u16) {
        if let Some(dlg) = with_data(cell, |d| d.dlg.clone()).flatten() {
            self.dialogs.on_final(&dlg, code);
        }
    }

    fn on_stray_reply(&self, reply: SipMsg, _src: SocketAddr, _proto: Proto) {
        // RFC 3261 §16.7 / §18.2.2: a reply to something forwarded statelessly: remove our
        // Via and send it where the next Via says.
        let vias = reply.values(&crate::message::HeaderName::Via);
        let Some(ours) = vias.first().and_then(|(_, t)| Via::parse(t)) else { return };
        if !self.tp.is_myself(ours.host, ours.port) {
            self.stats.drop_replies.inc();
            tracing::debug!("reply not addressed to us dropped");
            return;
        }
        let Some(next) = vias.get(1).and_then(|(_, t)| Via::parse(t)) else { return };
        let proto = Proto::parse(next.transport).unwrap_or(Proto::Udp);
        let host = next.received().unwrap_or(next.host);
        let port = match next.rport() {
            Some(Some(p)) => p,
            _ => next.port_or_default(),
        };
        let uri =
            format!("sip:{}:{port};transport={}", host.trim_start_matches('[').trim_end_matches(']'), proto.as_str());
        let uri = if host.contains(':') && !host.starts_with('[') {
            format!("sip:[{host}]:{port};transport={}", proto.as_str())
        } else {
            uri
        };
        let Ok(hop) = uri_dest(self.tp.sockets(), &uri, Resolve::System) else { return };
        let (proto, addr) = (hop.proto, hop.addr);
        let mut e = Edits::new();
        if let Some(span) = crate::transaction::top_via_removal(&reply) {
            e.delete(span);
        }
        let bytes = bytes::Bytes::from(Edits::render(&reply, &[&e]));
        match self.tp.send(proto, None, addr, bytes) {
            Ok(()) => self.stats.fwd_replies.inc(),
            Err(err) => tracing::warn!(error = %err, "stray reply not forwarded"),
        }
    }
}
