//! Building what goes downstream: one request per branch with our Via on top (RFC 3261
//! §16.6 step 8), the R-URI of the branch (step 2 / 6), Record-Route for the outgoing
//! socket (step 4, double when the socket changes), the script's lumps, and a
//! Content-Length where a stream needs one (§18.3).

use super::util::{socket_listener, uri_dest, DestError};
use super::Proxy;
use crate::message::{Edits, SipMsg};
use crate::modules::rr::{format_rr, format_rr_preset, rr_insert_point};
use crate::script::api::{Ctx, RouteKind, RrRequest};
use crate::script::Outcome;
use crate::transaction::{BranchOut, Cell, Dest};
use crate::transport::{Listener, Proto};
use bytes::Bytes;
use std::sync::Arc;

/// `[proto:]host[:port]` (t_relay's outbound proxy, `forward()`'s destination) or a SIP
/// URI, as a URI.
pub(super) fn outbound_uri(spec: &str) -> String {
    let spec = spec.trim();
    if spec.starts_with("sip:") || spec.starts_with("sips:") {
        return spec.to_string();
    }
    match spec.split_once(':') {
        Some((proto, rest)) if crate::transport::Proto::parse(proto).is_some() => {
            format!("sip:{rest};transport={}", proto.to_ascii_lowercase())
        }
        _ => format!("sip:{spec}"),
    }
}

/// One destination of the destination set.
struct Target {
    ruri: String,
    du: Option<String>,
    bflags: u64,
}

/// Everything that shapes the bytes of one outgoing request.
pub(super) struct Shape<'a> {
    pub msg: &'a SipMsg,
    pub base: &'a Edits,
    pub branch: &'a Edits,
    pub ruri: &'a str,
    pub out: &'a Listener,
    pub inbound: Option<&'a Listener>,
    pub branch_param: &'a str,
    pub rr: Option<&'a RrRequest>,
    pub top_via: Option<&'a str>,
}

impl Proxy {
    pub(super) fn render(&self, s: &Shape<'_>) -> Bytes {
        let msg = s.msg;
        let top = msg.headers().first().map(|h| h.line.start as usize).unwrap_or(msg.headers_end());
        // Our Via goes first of all, in a layer of its own, so no other insert at the same
        // byte (a Max-Forwards added by the script) can land above it.
        let mut via = Edits::new();
        via.insert(
            top,
            format!("Via: SIP/2.0/{} {};branch={}\r\n", s.out.proto.via_token(), s.out.advertised, s.branch_param),
        );
        let mut e = Edits::new();
        if let Some(span) = msg.ruri_span() {
            if s.ruri != msg.ruri() {
                e.replace(span, s.ruri.to_string());
            }
        }
        if let (Some(stamped), Some((span, _))) = (s.top_via, msg.top_via()) {
            e.replace(span, stamped.to_string());
        }
        if let Some(rr) = s.rr {
            let at = rr_insert_point(msg);
            let ftag = if self.rr.append_fromtag { msg.from().and_then(|f| f.tag()) } else { None };
            match &rr.preset {
                Some((outbound, inbound)) => {
                    e.insert(at, format_rr_preset(outbound, ftag, &rr.params));
                    if let Some(i) = inbound {
                        e.insert(at, format_rr_preset(i, ftag, &rr.params));
                    }
                }
                None => match s.inbound.filter(|i| self.rr.enable_double_rr && i.id != s.out.id) {
                    // spec §5: leaving on another socket, both sockets go in, with r2=on.
                    Some(inb) => {
                        e.insert(at, format_rr(&s.out.advertised, s.out.proto.as_str(), true, ftag, &rr.params));
                        e.insert(at, format_rr(&inb.advertised, inb.proto.as_str(), true, ftag, &rr.params));
                    }
                    None => e.insert(at, format_rr(&s.out.advertised, s.out.proto.as_str(), false, ftag, &rr.params)),
                },
            }
        }
        if s.out.proto.is_stream() && msg.content_length().is_none() {
            e.insert(msg.headers_end(), format!("Content-Length: {}\r\n", msg.body().len()));
        }
        Bytes::from(Edits::render(msg, &[&via, s.base, s.branch, &e]))
    }

    /// The socket a request to `addr` over `proto` leaves on: a forced one when it fits,
    /// else the one it came in on when it fits, else the first that does.
    pub(super) fn out_listener(&self, ctx: &Ctx, proto: Proto, addr: &std::net::SocketAddr) -> Option<&Listener> {
        if let Some(id) = ctx.send_socket.as_deref().and_then(|s| socket_listener(&self.tp, s)) {
            if self.tp.listener(id).is_some_and(|l| l.proto == proto) {
                return self.tp.listener(id);
            }
        }
        self.tp.pick_listener(proto, addr, Some(ctx.listener)).and_then(|id| self.tp.listener(id))
    }

    /// Sends every branch of the destination set on `cell` (t_relay). Returns how many
    /// went out, or the reason none did.
    pub(super) fn relay_branches(
        &self,
        ctx: &mut Ctx,
        cell: &Arc<Cell>,
        outbound: Option<&str>,
    ) -> Result<usize, DestError> {
        let mut targets = vec![Target { ruri: ctx.ruri().to_string(), du: ctx.du.clone(), bflags: ctx.bflags }];
        targets.extend(ctx.branches.drain(..).map(|b| Target { ruri: b.uri, du: b.du, bflags: b.bflags }));
        let inbound = self.tp.listener(ctx.listener).cloned();
        // Only a branch route needs the script here: the version that routed the request.
        let bundle = ctx.on_branch.is_some().then(|| ctx.bundle.clone().unwrap_or_else(|| self.script.bundle()));
        let mut sent = 0;
        let mut last_err = DestError::NoSocket;
        self.tm.begin_branches(cell);
        for (idx, t) in targets.into_iter().enumerate() {
            let mut ruri = t.ruri;
            let mut du = t.du;
            let mut branch_edits = Edits::new();
            // branch_route: runs per branch right before it is sent; drop() skips it.
            if let (Some(name), Some(bundle)) = (ctx.on_branch.clone(), bundle.as_ref()) {
                let mut b = Ctx::new(RouteKind::Branch, ctx.msg.clone(), ctx.src, ctx.proto, ctx.local, self.core());
                b.listener = ctx.listener;
                b.new_ruri = Some(ruri.clone());
                b.du = du.clone();
                b.flags = ctx.flags;
                b.bflags = t.bflags;
                b.avps = ctx.avps.clone();
                b.tsx = ctx.tsx.clone();
                b.branch_idx = idx as i64;
                b.send_socket = ctx.send_socket.clone();
                b.bundle = Some(bundle.clone());
                let (b, outcome) = self.script.run_on(bundle, &format!("branch_route_{name}"), b);
                match outcome {
                    Outcome::Drop => continue,
                    Outcome::Error(e) => tracing::error!(error = %e, "branch_route failed"),
                    _ => {}
                }
                if b.dropped {
                    continue;
                }
                ruri = b.ruri().to_string();
                du = b.du.clone();
                branch_edits = b.edits;
            }
            let next_hop = du.clone().or_else(|| outbound.map(outbound_uri));
            let (proto, addr) = match uri_dest(&self.tp, next_hop.as_deref().unwrap_or(&ruri)) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(uri = %ruri, error = ?e, "branch destination unusable");
                    last_err = e;
                    continue;
                }
            };
            let Some(out) = self.out_listener(ctx, proto, &addr).cloned() else {
                last_err = DestError::NoSocket;
                continue;
            };
            let (n, param) = self.tm.new_branch_param(cell);
            let bytes = self.render(&Shape {
                msg: &ctx.msg,
                base: &ctx.edits,
                branch: &branch_edits,
                ruri: &ruri,
                out: &out,
                inbound: inbound.as_ref(),
                branch_param: &param,
                rr: ctx.rr.as_ref(),
                top_via: cell.top_via.as_deref(),
            });
            let dest = Dest { proto, addr, listener: Some(out.id) };
            match self.tm.add_branch(cell, n, BranchOut { uri: ruri, dest, bytes }) {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(error = %e, %addr, "branch not sent");
                    last_err = DestError::NoSocket;
                }
            }
        }
        self.tm.end_branches(cell);
        if sent == 0 {
            Err(last_err)
        } else {
            Ok(sent)
        }
    }

    /// Stateless forwarding (`forward()`, ACK of a 2xx): RFC 3261 §16.11 wants the same
    /// branch for a retransmission, so it is derived from the received top Via.
    /// `dest` is an explicit destination (`forward(dest)`), `outbound` a fallback used only
    /// when `$du` is unset (t_relay's outbound proxy).
    pub(super) fn forward_stateless(&self, ctx: &mut Ctx, dest: Option<&str>, outbound: Option<&str>) -> i64 {
        let ruri = ctx.ruri().to_string();
        let hop = dest
            .map(outbound_uri)
            .or_else(|| ctx.du.clone())
            .or_else(|| outbound.map(outbound_uri))
            .unwrap_or_else(|| ruri.clone());
        let (proto, addr) = match uri_dest(&self.tp, &hop) {
            Ok(d) => d,
            Err(e) => return e.code(),
        };
        let Some(out) = self.out_listener(ctx, proto, &addr).cloned() else { return -6 };
        let inbound = self.tp.listener(ctx.listener).cloned();
        let param = format!("z9hG4bKsl{}", super::util::stateless_tag(&ctx.msg).trim_start_matches("sl"));
        let stamped = super::stamp_top_via(&ctx.msg, ctx.src, ctx.force_rport);
        let bytes = self.render(&Shape {
            msg: &ctx.msg,
            base: &ctx.edits,
            branch: &Edits::new(),
            ruri: &ruri,
            out: &out,
            inbound: inbound.as_ref(),
            branch_param: &param,
            rr: ctx.rr.as_ref(),
            top_via: stamped.as_deref(),
        });
        match self.tp.send(proto, Some(out.id), addr, bytes) {
            Ok(()) => {
                ctx.answered = true;
                1
            }
            Err(e) => {
                tracing::warn!(error = %e, "stateless forward failed");
                -6
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::outbound_uri;

    #[test]
    fn outbound_proxy_forms() {
        assert_eq!(outbound_uri("tcp:10.0.0.2:5060"), "sip:10.0.0.2:5060;transport=tcp");
        assert_eq!(outbound_uri("udp:1.2.3.4"), "sip:1.2.3.4;transport=udp");
        assert_eq!(outbound_uri("10.0.0.2:5070"), "sip:10.0.0.2:5070");
        assert_eq!(outbound_uri("sipserver.example.com"), "sip:sipserver.example.com");
        assert_eq!(outbound_uri("sip:10.0.0.2;transport=tcp"), "sip:10.0.0.2;transport=tcp");
    }
}
