//! What script functions ask of the core ([`CoreOps`]): replies, t_relay and friends,
//! carried out at once and answered with OpenSIPS's return codes (spec §3, §4).

use super::hooks::TxData;
use super::util::{reply_dest, socket_listener, stamp_top_via};
use super::{Origin, Proxy};
use crate::message::{HeaderName, Method};
use crate::script::api::{CoreOps, Ctx, LastError, RouteKind};
use crate::transaction::Cell;
use crate::transport::Proto;
use std::sync::Arc;

fn proto_of(ctx: &Ctx) -> Proto {
    Proto::parse(ctx.proto).unwrap_or(Proto::Udp)
}

fn origin(ctx: &Ctx) -> Origin {
    Origin { src: ctx.src, proto: proto_of(ctx), listener: ctx.listener, force_rport: ctx.force_rport }
}

impl Proxy {
    /// The transaction this hook works on, if any.
    fn cell_of(&self, ctx: &Ctx) -> Option<Arc<Cell>> {
        ctx.tsx.clone().and_then(|t| t.downcast::<Cell>().ok())
    }

    /// Creates the transaction for the request in `ctx` (t_newtran / t_relay / t_reply).
    /// `None` when the request belongs to a cell already: a retransmission, answered here
    /// with the cell's last reply (spec §4.2–4.3).
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

    /// Counts a stateless forward that went out (`core:fwd_requests`); passes the code on.
    fn count_forward(&self, code: i64) -> i64 {
        if code == 1 {
            self.stats.fwd_requests.inc();
        }
        code
    }

    /// The script's current choices become the transaction's (flags, AVPs, armed routes,
    /// lumps), as t_relay freezes them in OpenSIPS.
    fn freeze_into(&self, ctx: &Ctx, cell: &Cell) {
        *cell.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(TxData::from_ctx(ctx)));
    }
}

impl CoreOps for Proxy {
    fn sl_send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        // SL never answers an ACK (spec §3).
        if ctx.msg.method() == Method::Ack || !ctx.msg.is_request() {
            return 1;
        }
        if ctx.kind == RouteKind::Failure && self.cell_of(ctx).is_some() {
            // In failure_route the transaction is the one answering, or the winner would
            // still be relayed after this reply.
            return self.t_reply(ctx, code, reason);
        }
        self.reply_stateless_with(&ctx.msg, origin(ctx), code, reason, &ctx.reply_headers);
        ctx.answered = true;
        1
    }

    fn send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        if self.cell_of(ctx).is_some() {
            self.t_reply(ctx, code, reason)
        } else {
            self.sl_send_reply(ctx, code, reason)
        }
    }

    fn t_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        if ctx.msg.method() == Method::Ack || !ctx.msg.is_request() {
            return -1;
        }
        let cell = match self.cell_of(ctx) {
            Some(c) => c,
            None => match self.create_cell(ctx) {
                Some(c) => c,
                None => return -1,
            },
        };
        ctx.answered = true;
        if self.tm.reply(&cell, code, reason, &ctx.reply_headers, b"") {
            1
        } else {
            -1
        }
    }

    fn t_relay(&self, ctx: &mut Ctx, flags: &str, outbound: Option<&str>) -> i64 {
        // t_relay belongs to request and failure routes (spec §4.3).
        if !matches!(ctx.kind, RouteKind::Request | RouteKind::Failure) {
            tracing::error!(route = ?ctx.kind, "t_relay is not allowed in this route");
            return -1;
        }
        let method = ctx.msg.method();
        if method == Method::Ack {
            // The ACK of a negative final is hop-by-hop: the cell absorbs it (§17.2.1).
            if let Some(cell) = self.tm.lookup(&ctx.msg) {
                self.tm.absorb_ack(&cell);
                return 1;
            }
            // A 2xx ACK belongs to no transaction: forwarded statelessly (§16.7 / §13.2.2.4).
            let code = self.forward_stateless(ctx, None, outbound);
            return self.count_forward(code);
        }
        if method == Method::Cancel {
            if let Some(invite) = self.tm.lookup_invite_for_cancel(&ctx.msg) {
                // §16.10: answer the CANCEL ourselves, then cancel the branches.
                self.reply_stateless(&ctx.msg, origin(ctx), 200, "canceling");
                let reason = flags
                    .contains("pass-reason-hdr")
                    .then(|| ctx.msg.first(&HeaderName::Reason).map(|h| ctx.msg.text(h.line).trim_end().to_string()))
                    .flatten();
                self.tm.cancel(&invite, reason);
                ctx.answered = true;
                return 1;
            }
        }
        let (cell, created) = match self.cell_of(ctx) {
            Some(c) => (c, false),
            None => match self.create_cell(ctx) {
                Some(c) => (c, true),
                // A retransmission, absorbed (spec §4.3).
                None => return 1,
            },
        };
        if !created {
            // t_newtran earlier, or a failure route: what the script chose since then counts.
            self.freeze_into(ctx, &cell);
        }
        if cell.was_cancelled() && cell.branch_count() == 0 {
            // The CANCEL overtook the INVITE (spec §4.6 point 6).
            self.tm.reply(&cell, 487, "Request Terminated", "", b"");
            ctx.answered = true;
            return -3;
        }
        if !cell.can_fork() {
            return -3;
        }
        match self.relay_branches(ctx, &cell, outbound) {
            Ok(_) => {
                ctx.answered = true;
                1
            }
            Err(e) => {
                let (code, reason) = e.reply();
                if created && !flags.contains("no-auto-477") {
                    // TM answers itself when nothing could be sent, and t_relay says 1
                    // so `if (!t_relay()) sl_reply_error();` does not answer twice.
                    self.tm.reply(&cell, code, reason, "", b"");
                    ctx.answered = true;
                    return 1;
                }
                ctx.last_error = Some(LastError { code, reason: reason.to_string() });
                e.code()
            }
        }
    }

    fn t_newtran(&self, ctx: &mut Ctx) -> i64 {
        if self.cell_of(ctx).is_some() {
            return 1;
        }
        match self.create_cell(ctx) {
            Some(_) => 1,
            // A retransmission: answered, and the script ends (spec §4.2).
            None => 0,
        }
    }

    fn t_check_trans(&self, ctx: &mut Ctx) -> i64 {
        match ctx.msg.method() {
            Method::Cancel => {
                if self.tm.lookup_invite_for_cancel(&ctx.msg).is_some() {
                    1
                } else {
                    -1
                }
            }
            Method::Ack => match self.tm.lookup(&ctx.msg) {
                Some(cell) if cell.uas_status() >= 300 => 1,
                Some(_) => -2,
                None => -1,
            },
            _ => match self.tm.lookup(&ctx.msg) {
                Some(cell) => {
                    self.tm.retransmit_reply(&cell);
                    0
                }
                None => -1,
            },
        }
    }

    fn t_was_cancelled(&self, ctx: &Ctx) -> bool {
        self.cell_of(ctx).is_some_and(|c| c.was_cancelled())
    }

    fn t_last_code(&self, ctx: &Ctx) -> u16 {
        self.cell_of(ctx).map(|c| c.uas_status()).unwrap_or(0)
    }

    fn forward(&self, ctx: &mut Ctx, dest: Option<&str>) -> i64 {
        let code = self.forward_stateless(ctx, dest, None);
        self.count_forward(code)
    }

    fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        self.tp.is_myself(host, port)
    }

    fn has_socket(&self, spec: &str) -> bool {
        socket_listener(&self.tp, spec).is_some()
    }
}
