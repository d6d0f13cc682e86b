//! What script functions ask of the core ([`CoreOps`]): replies, t_relay and friends,
//! carried out at once and answered with OpenSIPS's return codes (spec §3, §4).
//!
//! The decisions (which code, when TM answers itself, what a CANCEL or an ACK does, when a
//! reply is stateful) are written once, as the functions below over a [`Backend`]: the live
//! transaction layer and sockets for the proxy, a recorder for the dry run of `siprox test`.
//! Both implement [`CoreOps`] through [`core_ops_by_backend!`], so a script under test meets
//! exactly the core it meets in production.

use super::hooks::TxData;
use super::util::{reply_dest, stamp_top_via, DestError};
use super::{Origin, Proxy};
use crate::message::{HeaderName, Method, SipMsg};
use crate::script::api::{Ctx, LastError, RouteKind};
use crate::transaction::Cell;
use crate::transport::{Proto, Sockets};
use std::sync::Arc;

pub(super) fn proto_of(ctx: &Ctx) -> Proto {
    Proto::parse(ctx.proto).unwrap_or(Proto::Udp)
}

fn origin(ctx: &Ctx) -> Origin {
    Origin { src: ctx.src, proto: proto_of(ctx), listener: ctx.listener, force_rport: ctx.force_rport }
}

/// A transaction as the core calls see it.
pub(super) trait TxView {
    fn was_cancelled(&self) -> bool;
    fn branch_count(&self) -> usize;
    /// False once a final reply went upstream or a 6xx blocked forking.
    fn can_fork(&self) -> bool;
    /// The last status sent upstream (0: none yet).
    fn uas_status(&self) -> u16;
}

/// Where the core calls land. Each method does one thing; the OpenSIPS logic around them is
/// in this file's free functions.
pub(super) trait Backend {
    type Tx: TxView;
    fn sockets(&self) -> &Sockets;
    /// The transaction this hook works on, if any.
    fn cell_of(&self, ctx: &Ctx) -> Option<Self::Tx>;
    /// Creates the transaction for the request in `ctx` (t_newtran / t_relay / t_reply) and
    /// freezes the script's choices into it. `None` when the request belongs to one already:
    /// a retransmission, answered with that transaction's last reply (spec §4.2–4.3).
    fn create_cell(&self, ctx: &mut Ctx) -> Option<Self::Tx>;
    /// The script's current choices become the transaction's (flags, AVPs, armed routes,
    /// lumps), as t_relay freezes them in OpenSIPS.
    fn freeze_into(&self, ctx: &Ctx, cell: &Self::Tx);
    /// The transaction a request belongs to (a retransmission, or the INVITE an ACK acknowledges).
    fn lookup(&self, msg: &SipMsg) -> Option<Self::Tx>;
    /// The INVITE transaction a CANCEL refers to.
    fn lookup_invite_for_cancel(&self, msg: &SipMsg) -> Option<Self::Tx>;
    fn retransmit_reply(&self, cell: &Self::Tx);
    /// The ACK of a negative final reply reached its transaction.
    fn absorb_ack(&self, cell: &Self::Tx);
    /// The caller cancelled `invite`: CANCEL its branches.
    fn cancel(&self, invite: &Self::Tx, reason: Option<String>);
    /// A stateful reply; false when the transaction already answered finally.
    fn reply(&self, cell: &Self::Tx, code: u16, reason: &str, extra: &str) -> bool;
    /// A stateless reply to the request in `ctx`.
    fn reply_stateless(&self, ctx: &Ctx, code: u16, reason: &str, extra: &str);
    /// Sends every branch of the destination set on `cell`.
    fn relay_branches(&self, ctx: &mut Ctx, cell: &Self::Tx, outbound: Option<&str>) -> Result<usize, DestError>;
    /// The dialog table, where there is one.
    fn dialogs(&self) -> Option<Arc<crate::dialog::Dialogs>> {
        None
    }
    /// `forward()`: returns t_relay-style codes.
    fn forward_stateless(&self, ctx: &mut Ctx, dest: Option<&str>, outbound: Option<&str>) -> i64;
}

/// Implements [`crate::script::api::CoreOps`] for a [`Backend`] by the functions of this file.
macro_rules! core_ops_by_backend {
    ($t:ty) => {
        impl $crate::script::api::CoreOps for $t {
            fn sl_send_reply(&self, ctx: &mut $crate::script::api::Ctx, code: u16, reason: &str) -> i64 {
                $crate::proxy::core_ops::sl_send_reply(self, ctx, code, reason)
            }
            fn send_reply(&self, ctx: &mut $crate::script::api::Ctx, code: u16, reason: &str) -> i64 {
                $crate::proxy::core_ops::send_reply(self, ctx, code, reason)
            }
            fn t_reply(&self, ctx: &mut $crate::script::api::Ctx, code: u16, reason: &str) -> i64 {
                $crate::proxy::core_ops::t_reply(self, ctx, code, reason)
            }
            fn t_relay(&self, ctx: &mut $crate::script::api::Ctx, flags: &str, outbound: Option<&str>) -> i64 {
                $crate::proxy::core_ops::t_relay(self, ctx, flags, outbound)
            }
            fn t_newtran(&self, ctx: &mut $crate::script::api::Ctx) -> i64 {
                $crate::proxy::core_ops::t_newtran(self, ctx)
            }
            fn t_check_trans(&self, ctx: &mut $crate::script::api::Ctx) -> i64 {
                $crate::proxy::core_ops::t_check_trans(self, ctx)
            }
            fn t_was_cancelled(&self, ctx: &$crate::script::api::Ctx) -> bool {
                use $crate::proxy::core_ops::{Backend, TxView};
                self.cell_of(ctx).is_some_and(|c| c.was_cancelled())
            }
            fn t_last_code(&self, ctx: &$crate::script::api::Ctx) -> u16 {
                use $crate::proxy::core_ops::{Backend, TxView};
                self.cell_of(ctx).map(|c| c.uas_status()).unwrap_or(0)
            }
            fn forward(&self, ctx: &mut $crate::script::api::Ctx, dest: Option<&str>) -> i64 {
                $crate::proxy::core_ops::Backend::forward_stateless(self, ctx, dest, None)
            }
            fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
                $crate::proxy::core_ops::Backend::sockets(self).is_myself(host, port)
            }
            fn has_socket(&self, spec: &str) -> bool {
                $crate::proxy::util::socket_listener($crate::proxy::core_ops::Backend::sockets(self), spec).is_some()
            }
            fn dialogs(&self) -> Option<std::sync::Arc<$crate::dialog::Dialogs>> {
                $crate::proxy::core_ops::Backend::dialogs(self)
            }
        }
    };
}
pub(super) use core_ops_by_backend;

pub(super) fn sl_send_reply<B: Backend>(b: &B, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
    // SL never answers an ACK (spec §3).
    if ctx.msg.method() == Method::Ack || !ctx.msg.is_request() {
        return 1;
    }
    if ctx.kind == RouteKind::Failure && b.cell_of(ctx).is_some() {
        // In failure_route the transaction is the one answering, or the winner would
        // still be relayed after this reply.
        return t_reply(b, ctx, code, reason);
    }
    b.reply_stateless(ctx, code, reason, &ctx.reply_headers);
    ctx.answered = true;
    1
}

pub(super) fn send_reply<B: Backend>(b: &B, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
    if b.cell_of(ctx).is_some() {
        t_reply(b, ctx, code, reason)
    } else {
        sl_send_reply(b, ctx, code, reason)
    }
}

pub(super) fn t_reply<B: Backend>(b: &B, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
    if ctx.msg.method() == Method::Ack || !ctx.msg.is_request() {
        return -1;
    }
    let Some(cell) = b.cell_of(ctx).or_else(|| b.create_cell(ctx)) else { return -1 };
    ctx.answered = true;
    if b.reply(&cell, code, reason, &ctx.reply_headers) {
        1
    } else {
        -1
    }
}

pub(super) fn t_relay<B: Backend>(b: &B, ctx: &mut Ctx, flags: &str, outbound: Option<&str>) -> i64 {
    // t_relay belongs to request and failure routes (spec §4.3).
    if !matches!(ctx.kind, RouteKind::Request | RouteKind::Failure) {
        tracing::error!(route = ?ctx.kind, "t_relay is not allowed in this route");
        return -1;
    }
    let method = ctx.msg.method();
    if method == Method::Ack {
        // The ACK of a negative final is hop-by-hop: the cell absorbs it (§17.2.1).
        if let Some(cell) = b.lookup(&ctx.msg) {
            b.absorb_ack(&cell);
            return 1;
        }
        // A 2xx ACK belongs to no transaction: forwarded statelessly (§16.7 / §13.2.2.4).
        return b.forward_stateless(ctx, None, outbound);
    }
    if method == Method::Cancel {
        if let Some(invite) = b.lookup_invite_for_cancel(&ctx.msg) {
            // §16.10: answer the CANCEL ourselves, then cancel the branches.
            b.reply_stateless(ctx, 200, "canceling", "");
            let reason = flags
                .contains("pass-reason-hdr")
                .then(|| ctx.msg.first(&HeaderName::Reason).map(|h| ctx.msg.text(h.line).trim_end().to_string()))
                .flatten();
            b.cancel(&invite, reason);
            ctx.answered = true;
            return 1;
        }
    }
    let (cell, created) = match b.cell_of(ctx) {
        Some(c) => (c, false),
        None => match b.create_cell(ctx) {
            Some(c) => (c, true),
            // A retransmission, absorbed (spec §4.3).
            None => return 1,
        },
    };
    if !created {
        // t_newtran earlier, or a failure route: what the script chose since then counts.
        b.freeze_into(ctx, &cell);
    }
    if cell.was_cancelled() && cell.branch_count() == 0 {
        // The CANCEL overtook the INVITE (spec §4.6 point 6).
        b.reply(&cell, 487, "Request Terminated", "");
        ctx.answered = true;
        return -3;
    }
    if !cell.can_fork() {
        return -3;
    }
    match b.relay_branches(ctx, &cell, outbound) {
        Ok(_) => {
            ctx.answered = true;
            1
        }
        Err(e) => {
            let (code, reason) = e.reply();
            if created && !flags.contains("no-auto-477") {
                // TM answers itself when nothing could be sent, and t_relay says 1
                // so `if (!t_relay()) sl_reply_error();` does not answer twice.
                b.reply(&cell, code, reason, "");
                ctx.answered = true;
                return 1;
            }
            ctx.last_error = Some(LastError { code, reason: reason.to_string() });
            e.code()
        }
    }
}

pub(super) fn t_newtran<B: Backend>(b: &B, ctx: &mut Ctx) -> i64 {
    if b.cell_of(ctx).is_some() {
        return 1;
    }
    match b.create_cell(ctx) {
        Some(_) => 1,
        // A retransmission: answered, and the script ends (spec §4.2).
        None => 0,
    }
}

pub(super) fn t_check_trans<B: Backend>(b: &B, ctx: &mut Ctx) -> i64 {
    match ctx.msg.method() {
        Method::Cancel => {
            if b.lookup_invite_for_cancel(&ctx.msg).is_some() {
                1
            } else {
                -1
            }
        }
        Method::Ack => match b.lookup(&ctx.msg) {
            Some(cell) if cell.uas_status() >= 300 => 1,
            Some(_) => -2,
            None => -1,
        },
        _ => match b.lookup(&ctx.msg) {
            Some(cell) => {
                b.retransmit_reply(&cell);
                0
            }
            None => -1,
        },
    }
}

impl TxView for Arc<Cell> {
    fn was_cancelled(&self) -> bool {
        Cell::was_cancelled(self)
    }
    fn branch_count(&self) -> usize {
        Cell::branch_count(self)
    }
    fn can_fork(&self) -> bool {
        Cell::can_fork(self)
    }
    fn uas_status(&self) -> u16 {
        Cell::uas_status(self)
    }
}

impl Backend for Proxy {
    type Tx = Arc<Cell>;

    fn sockets(&self) -> &Sockets {
        self.tp.sockets()
    }

    fn dialogs(&self) -> Option<Arc<crate::dialog::Dialogs>> {
        Some(self.dialogs.clone())
    }

    fn cell_of(&self, ctx: &Ctx) -> Option<Arc<Cell>> {
        ctx.tsx.clone().and_then(|t| t.downcast::<Cell>().ok())
    }

    fn create_cell(&self, ctx: &mut Ctx) -> Option<Arc<Cell>> {
        let up = reply_dest(&ctx.msg, ctx.src, proto_of(ctx), ctx.listener, ctx.force_rport);
        let via = stamp_top_via(&ctx.msg, ctx.src, ctx.force_rport);
        match self.tm.create(ctx.msg.clone(), up, via) {
            Ok(cell) => {
                self.freeze_into(ctx, &cell);
                ctx.tsx = Some(cell.clone());
                Some(cell)
            }
            Err(_) => {
                if let Some(existing) = self.tm.lookup(&ctx.msg) {
                    self.tm.retransmit_reply(&existing);
                }
                None
            }
        }
    }

    fn freeze_into(&self, ctx: &Ctx, cell: &Arc<Cell>) {
        *cell.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(TxData::from_ctx(ctx)));
    }

    fn lookup(&self, msg: &SipMsg) -> Option<Arc<Cell>> {
        self.tm.lookup(msg)
    }

    fn lookup_invite_for_cancel(&self, msg: &SipMsg) -> Option<Arc<Cell>> {
        self.tm.lookup_invite_for_cancel(msg)
    }

    fn retransmit_reply(&self, cell: &Arc<Cell>) {
        self.tm.retransmit_reply(cell);
    }

    fn absorb_ack(&self, cell: &Arc<Cell>) {
        self.tm.absorb_ack(cell);
    }

    fn cancel(&self, invite: &Arc<Cell>, reason: Option<String>) {
        self.tm.cancel(invite, reason);
    }

    fn reply(&self, cell: &Arc<Cell>, code: u16, reason: &str, extra: &str) -> bool {
        self.tm.reply(cell, code, reason, extra, b"")
    }

    fn reply_stateless(&self, ctx: &Ctx, code: u16, reason: &str, extra: &str) {
        self.reply_stateless_with(&ctx.msg, origin(ctx), code, reason, extra);
    }

    fn relay_branches(&self, ctx: &mut Ctx, cell: &Arc<Cell>, outbound: Option<&str>) -> Result<usize, DestError> {
        Proxy::relay_branches(self, ctx, cell, outbound)
    }

    fn forward_stateless(&self, ctx: &mut Ctx, dest: Option<&str>, outbound: Option<&str>) -> i64 {
        let code = Proxy::forward_stateless(self, ctx, dest, outbound);
        if code == 1 {
            // `core:fwd_requests` counts stateless forwarding, as in OpenSIPS.
            self.stats.fwd_requests.inc();
        }
        code
    }
}

core_ops_by_backend!(Proxy);
