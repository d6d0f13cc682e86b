//! Building what goes downstream: one request per branch with our Via on top (RFC 3261
//! §16.6 step 8), the R-URI of the branch (step 2 / 6), Record-Route for the outgoing
//! socket (step 4, double when the socket changes), the script's lumps, and a
//! Content-Length where a stream needs one (§18.3).
//!
//! The building is free functions over a [`RelayEnv`], so the proxy (which sends) and the
//! dry run of `siprox test` (which records) produce the same bytes.

use super::util::{socket_listener, stamp_top_via, stateless_tag, uri_dest, DestError, Hop, Resolve};
use super::Proxy;
use crate::config::RrConfig;
use crate::message::{Edits, SipMsg};
use crate::modules::rr::{format_rr, format_rr_preset, rr_insert_point};
use crate::script::api::{CoreOps, Ctx, RouteKind, RrRequest};
use crate::script::{Bundle, Outcome, ScriptHost};
use crate::transaction::{BranchOut, Cell, Dest};
use crate::transport::{Listener, Sockets};
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
    path: Option<String>,
    socket: Option<String>,
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
    /// The contact's Path (`lookup`), written as Route headers (RFC 3327 §5.3).
    pub path: Option<&'a str>,
}

/// What building a request for downstream needs around it, whoever sends it (the proxy, or
/// the dry run of `siprox test`, which records instead): the socket table, the rr settings,
/// how names resolve, and for a branch_route the script and the core its functions call.
pub(super) struct RelayEnv<'a> {
    pub sockets: &'a Sockets,
    pub rr: &'a RrConfig,
    pub resolve: Resolve,
    /// Only when a branch_route is armed (taken once for all branches).
    pub branch_route: Option<BranchRouteEnv>,
}

/// The script and the core a branch_route runs with.
pub(super) struct BranchRouteEnv {
    /// The version that routed the request.
    pub bundle: Arc<Bundle>,
    pub core: Arc<dyn CoreOps>,
    /// The proxy's script host, which times and counts the hook (none in a dry run).
    pub host: Option<Arc<ScriptHost>>,
}

/// One request ready for downstream.
pub(super) struct Outgoing {
    /// The branch number the caller's `next_param` gave it (0 for a stateless forward).
    pub n: u32,
    pub ruri: String,
    pub du: Option<String>,
    /// The URI the destination came from when it is not the R-URI: `$du`, else the
    /// outbound proxy (kept apart so the proxy's path copies no URI for it).
    pub next_hop: Option<String>,
    pub hop: Hop,
    pub out: Listener,
    pub bytes: Bytes,
}

impl Outgoing {
    /// The transaction layer's view of it.
    pub(super) fn into_branch_out(self) -> BranchOut {
        let dest = Dest { proto: self.hop.proto, addr: self.hop.addr, listener: Some(self.out.id) };
        BranchOut { uri: self.ruri, dest, bytes: self.bytes }
    }
}

/// The bytes of one outgoing request: our Via on top (RFC 3261 §16.6 step 8), the R-URI of
/// the branch (steps 2 and 6), Record-Route for the outgoing socket (step 4), the script's
/// lumps, and a Content-Length where a stream needs one (§18.3).
pub(super) fn render(s: &Shape<'_>, rr_cfg: &RrConfig) -> Bytes {
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
        let ftag = if rr_cfg.append_fromtag { msg.from().and_then(|f| f.tag()) } else { None };
        match &rr.preset {
            Some((outbound, inbound)) => {
                e.insert(at, format_rr_preset(outbound, ftag, &rr.params));
                if let Some(i) = inbound {
                    e.insert(at, format_rr_preset(i, ftag, &rr.params));
                }
            }
            None => match s.inbound.filter(|i| rr_cfg.enable_double_rr && i.id != s.out.id) {
                // spec §5: leaving on another socket, both sockets go in, with r2=on.
                Some(inb) => {
                    e.insert(at, format_rr(&s.out.advertised, s.out.proto.as_str(), true, ftag, &rr.params));
                    e.insert(at, format_rr(&inb.advertised, inb.proto.as_str(), true, ftag, &rr.params));
                }
                None => e.insert(at, format_rr(&s.out.advertised, s.out.proto.as_str(), false, ftag, &rr.params)),
            },
        }
    }
    if let Some(path) = s.path {
        // RFC 3327 §5.3: the Path becomes the Route set, ahead of any Route already there.
        let at = msg.first(&crate::message::HeaderName::Route).map_or(msg.headers_end(), |h| h.line.start as usize);
        e.insert(at, format!("Route: {path}\r\n"));
    }
    // A body edit (fix_nated_sdp) already added one with the edited length.
    let cl_added = [s.base, s.branch].iter().any(|l| {
        l.ops()
            .iter()
            .any(|e| e.start == e.end && e.start as usize == msg.headers_end() && e.text.starts_with("Content-Length:"))
    });
    if s.out.proto.is_stream() && msg.content_length().is_none() && !cl_added {
        e.insert(msg.headers_end(), format!("Content-Length: {}\r\n", msg.body().len()));
    }
    Bytes::from(Edits::render(msg, &[&via, s.base, s.branch, &e]))
}

/// The socket a request to `hop` leaves on: a forced one when it fits, else the one it
/// came in on when it fits, else the first that does.
fn out_listener<'a>(sockets: &'a Sockets, ctx: &Ctx, forced: Option<&str>, hop: &Hop) -> Option<&'a Listener> {
    if let Some(id) = forced.or(ctx.send_socket.as_deref()).and_then(|s| socket_listener(sockets, s)) {
        if sockets.listener(id).is_some_and(|l| l.proto == hop.proto) {
            return sockets.listener(id);
        }
    }
    sockets.pick_listener(hop.proto, &hop.addr, Some(ctx.listener)).and_then(|id| sockets.listener(id))
}

/// A branch's R-URI, `$du` and edits after its branch_route; `None` when the route dropped it.
fn run_branch_route(env: &RelayEnv<'_>, ctx: &Ctx, idx: usize, t: Target) -> Option<(String, Option<String>, Edits)> {
    let (Some(name), Some(br)) = (ctx.on_branch.as_deref(), env.branch_route.as_ref()) else {
        return Some((t.ruri, t.du, Edits::new()));
    };
    let mut b = Ctx::new(RouteKind::Branch, ctx.msg.clone(), ctx.src, ctx.proto, ctx.local, br.core.clone());
    b.listener = ctx.listener;
    b.new_ruri = Some(t.ruri);
    b.du = t.du;
    b.flags = ctx.flags;
    b.bflags = t.bflags;
    b.avps = ctx.avps.clone();
    b.tsx = ctx.tsx.clone();
    b.branch_idx = idx as i64;
    b.send_socket = ctx.send_socket.clone();
    b.bundle = Some(br.bundle.clone());
    let hook = format!("branch_route_{name}");
    let (b, outcome) = match &br.host {
        Some(host) => host.run_nested(&br.bundle, &hook, b),
        None => crate::script::run_hook(&br.bundle, &hook, b),
    };
    match outcome {
        Outcome::Drop => return None,
        Outcome::Error(e) => tracing::error!(error = %e, "branch_route failed"),
        _ => {}
    }
    if b.dropped {
        return None;
    }
    Some((b.ruri().to_string(), b.du.clone(), b.edits))
}

/// t_relay's work on the destination set of `ctx` (the R-URI, then the appended branches,
/// which it uses up): per branch the branch_route (its `drop()` skips the branch), the next
/// hop (`$du`, else the outbound proxy, else the R-URI), the outgoing socket, a branch
/// parameter from `next_param`, the bytes, and `send`. Returns how many `send` accepted,
/// or the reason none went.
pub(super) fn relay_branches_with(
    env: &RelayEnv<'_>,
    ctx: &mut Ctx,
    outbound: Option<&str>,
    top_via: Option<&str>,
    mut next_param: impl FnMut() -> (u32, String),
    mut send: impl FnMut(Outgoing) -> Result<(), DestError>,
) -> Result<usize, DestError> {
    let mut targets = vec![Target {
        ruri: ctx.ruri().to_string(),
        du: ctx.du.clone(),
        bflags: ctx.bflags,
        path: ctx.path.clone(),
        socket: None,
    }];
    targets.extend(ctx.branches.drain(..).map(|b| Target {
        ruri: b.uri,
        du: b.du,
        bflags: b.bflags,
        path: b.path,
        socket: b.socket,
    }));
    let inbound = env.sockets.listener(ctx.listener);
    let mut sent = 0;
    let mut last_err = DestError::NoSocket;
    for (idx, t) in targets.into_iter().enumerate() {
        let (path, socket) = (t.path.clone(), t.socket.clone());
        let Some((ruri, du, branch_edits)) = run_branch_route(env, ctx, idx, t) else { continue };
        let next_hop = du.clone().or_else(|| outbound.map(outbound_uri));
        let hop = match uri_dest(env.sockets, next_hop.as_deref().unwrap_or(&ruri), env.resolve) {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(uri = %ruri, error = ?e, "branch destination unusable");
                last_err = e;
                continue;
            }
        };
        let Some(out) = out_listener(env.sockets, ctx, socket.as_deref(), &hop).cloned() else {
            last_err = DestError::NoSocket;
            continue;
        };
        let (n, param) = next_param();
        let bytes = render(
            &Shape {
                msg: &ctx.msg,
                base: &ctx.edits,
                branch: &branch_edits,
                ruri: &ruri,
                out: &out,
                inbound,
                branch_param: &param,
                rr: ctx.rr.as_ref(),
                top_via,
                path: path.as_deref(),
            },
            env.rr,
        );
        match send(Outgoing { n, ruri, du, next_hop, hop, out, bytes }) {
            Ok(()) => sent += 1,
            Err(e) => last_err = e,
        }
    }
    if sent == 0 {
        Err(last_err)
    } else {
        Ok(sent)
    }
}

/// The request `forward()` (and the ACK of a 2xx) sends statelessly: RFC 3261 §16.11 wants
/// the same branch for a retransmission, so it is derived from the received top Via.
/// `dest` is an explicit destination (`forward(dest)`), `outbound` a fallback used only when
/// `$du` is unset (t_relay's outbound proxy).
pub(super) fn stateless_request(
    env: &RelayEnv<'_>,
    ctx: &Ctx,
    dest: Option<&str>,
    outbound: Option<&str>,
) -> Result<Outgoing, DestError> {
    let ruri = ctx.ruri().to_string();
    let next_hop = dest.map(outbound_uri).or_else(|| ctx.du.clone()).or_else(|| outbound.map(outbound_uri));
    let hop = uri_dest(env.sockets, next_hop.as_deref().unwrap_or(&ruri), env.resolve)?;
    let out = out_listener(env.sockets, ctx, None, &hop).cloned().ok_or(DestError::NoSocket)?;
    let param = format!("z9hG4bKsl{}", stateless_tag(&ctx.msg).trim_start_matches("sl"));
    let stamped = stamp_top_via(&ctx.msg, ctx.src, ctx.force_rport);
    let bytes = render(
        &Shape {
            msg: &ctx.msg,
            base: &ctx.edits,
            branch: &Edits::new(),
            ruri: &ruri,
            out: &out,
            inbound: env.sockets.listener(ctx.listener),
            branch_param: &param,
            rr: ctx.rr.as_ref(),
            top_via: stamped.as_deref(),
            path: ctx.path.as_deref(),
        },
        env.rr,
    );
    Ok(Outgoing { n: 0, ruri, du: ctx.du.clone(), next_hop, hop, out, bytes })
}

impl Proxy {
    fn relay_env(&self, ctx: &Ctx) -> RelayEnv<'_> {
        RelayEnv {
            sockets: self.tp.sockets(),
            rr: &self.rr,
            resolve: Resolve::System,
            branch_route: ctx.on_branch.is_some().then(|| BranchRouteEnv {
                bundle: ctx.bundle.clone().unwrap_or_else(|| self.script.bundle()),
                core: self.core(),
                host: Some(self.script.clone()),
            }),
        }
    }

    /// Sends every branch of the destination set on `cell` (t_relay). Returns how many
    /// went out, or the reason none did.
    pub(super) fn relay_branches(
        &self,
        ctx: &mut Ctx,
        cell: &Arc<Cell>,
        outbound: Option<&str>,
    ) -> Result<usize, DestError> {
        let env = self.relay_env(ctx);
        self.tm.begin_branches(cell);
        let result = relay_branches_with(
            &env,
            ctx,
            outbound,
            cell.top_via.as_deref(),
            || self.tm.new_branch_param(cell),
            |o| {
                let (n, addr) = (o.n, o.hop.addr);
                self.tm.add_branch(cell, n, o.into_branch_out()).map_err(|e| {
                    tracing::warn!(error = %e, %addr, "branch not sent");
                    DestError::NoSocket
                })
            },
        );
        self.tm.end_branches(cell);
        result
    }

    /// Stateless forwarding (`forward()`, ACK of a 2xx); see [`stateless_request`].
    pub(super) fn forward_stateless(&self, ctx: &mut Ctx, dest: Option<&str>, outbound: Option<&str>) -> i64 {
        let o = match stateless_request(&self.relay_env(ctx), ctx, dest, outbound) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        match self.tp.send(o.hop.proto, Some(o.out.id), o.hop.addr, o.bytes) {
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
