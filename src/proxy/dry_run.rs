//! The dry run behind `siprox test`: a request goes through the proxy's pipeline, script and
//! core decisions (the functions of `core_ops.rs` and `relay.rs`), but nothing is sent. A
//! recorder stands where the sockets and the transaction table are and keeps what the proxy
//! would have sent: each reply with its bytes, and each branch's request with the bytes the
//! real relay renders (our Via, Record-Route, Max-Forwards, the script's lumps, the R-URI).
//! A reply can then be played back on the first branch, which runs the transaction's
//! onreply and failure routes on its saved state as the proxy does.
//!
//! The order of hooks around a message (sanity check and `error_route`, `route`, the 500 after
//! an error, reply and failure routes) mirrors `proxy/mod.rs`, `hooks.rs` and the
//! transaction layer's failure decision: change them together.
//!
//! Where it differs from the proxy, on purpose: host names are not resolved (a test has no
//! network, see [`Resolve::Never`]); branch parameters and To-tags are fixed
//! (`z9hG4bKdryrun.<n>`, `dryrun-<hash>`) so outputs compare; no timer runs; each case runs
//! on a thread of its own, so `$var` starts empty.
//!
//! Preset state (`[case.state.<table>]`) is loaded through [`PRESET_TABLES`]: a module that
//! keeps a table the script reads (usrloc's `location`, `dispatcher`, …) adds its loader
//! there, and a field to [`Preset`] for what it loads.

use super::core_ops::{core_ops_by_backend, Backend, TxView};
use super::hooks::TxData;
use super::relay::{relay_branches_with, stateless_request, BranchRouteEnv, Outgoing, RelayEnv};
use super::util::{stamp_top_via, stateless_reply, stateless_tag, DestError, Resolve};
use crate::config::{Config, RrConfig};
use crate::dialog::Dialogs;
use crate::message::{build_reply, Edits, HeaderName, Method, ParseError, ReplyOpts, SipMsg, Span};
use crate::modules::dispatcher::{Dispatcher, DsRow};
use crate::modules::load_balancer::{LbRow, LoadBalancer};
use crate::modules::usrloc::{self, Contact, Usrloc};
use crate::modules::Modules;
use crate::script::api::capture::{capture_logs, LogLine};
use crate::script::api::flag_bit_of;
use crate::script::api::{CoreOps, Ctx, LastError, RouteKind};
use crate::script::{run_hook, Bundle, Outcome};
use crate::transaction::{top_via_removal, Winner};
use crate::transport::{Proto, Sockets, TpError};
use bytes::Bytes;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DryRunError {
    #[error("the message does not parse: {0}")]
    Parse(#[from] ParseError),
    #[error("the message is a reply; a case routes a request (replies come back with [case.then])")]
    NotARequest,
    #[error(transparent)]
    Sockets(#[from] TpError),
    #[error("no reply can come back: the route relayed nothing statefully (t_relay)")]
    NothingRelayed,
    #[error("no reply can come back: the transaction already answered {0} upstream")]
    AlreadyAnswered(u16),
    #[error("the case stopped with a panic: {0}")]
    Panicked(String),
    #[error("preset state: {0}")]
    Preset(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PresetError {
    #[error("unknown state table `{table}` (known: {known})")]
    Unknown { table: String, known: String },
    #[error("`{table}` cannot be preset yet: the {module} module is not built")]
    NotBuilt { table: String, module: &'static str },
    #[error("`{table}`: {message}")]
    Invalid { table: String, message: String },
}

/// A request as it arrives.
#[derive(Clone, Debug)]
pub struct Request {
    pub bytes: Bytes,
    pub src: SocketAddr,
    pub proto: Proto,
    /// Index of the listener (socket) it arrives on.
    pub listener: usize,
}

/// A reply played back on the first branch (`[case.then]`).
#[derive(Clone, Debug)]
pub struct PlayReply {
    pub code: u16,
    pub reason: String,
    /// The caller cancelled the transaction before this reply (`t_was_cancelled()`).
    pub cancelled: bool,
}

/// State a case starts with, one field per table that can be preset.
#[derive(Clone, Debug, Default)]
pub struct Preset {
    pub tm: Option<TmPreset>,
    /// `[[case.state.dispatcher]]`: the rows of the `dispatcher` table.
    pub dispatcher: Option<Vec<DsRow>>,
    /// `[[case.state.load_balancer]]`: the rows of the `load_balancer` table, each with the
    /// calls it carries already.
    pub load_balancer: Option<Vec<(LbRow, u32)>>,
    /// `[[case.state.location]]`: registered contacts of the `location` table.
    pub location: Option<Vec<Contact>>,
}

/// `[case.state.tm]`: the request belongs to a transaction the proxy already has: the
/// original of a retransmission, the INVITE a CANCEL cancels, or the INVITE an ACK
/// acknowledges.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmPreset {
    /// The last reply that transaction sent upstream (0: none yet). An ACK matches it as
    /// the hop-by-hop ACK of a negative reply when this is 300 or more.
    #[serde(default)]
    pub last_reply: u16,
}

/// Reads one `[case.state.<table>]` into a [`Preset`].
pub type PresetLoader = fn(&toml::Value, &mut Preset) -> Result<(), String>;

/// A table a case may preset, and the module that owns it.
pub struct PresetTable {
    pub table: &'static str,
    pub module: &'static str,
    /// `None` until the module exists: the table is known, and refused with a clear message.
    pub load: Option<PresetLoader>,
}

/// Every table `[case.state]` knows. A module that keeps state the script reads adds its
/// loader here when it lands.
pub const PRESET_TABLES: &[PresetTable] = &[
    PresetTable { table: "tm", module: "tm", load: Some(load_tm) },
    PresetTable { table: "location", module: "usrloc", load: Some(load_location) },
    PresetTable { table: "dispatcher", module: "dispatcher", load: Some(load_dispatcher) },
    PresetTable { table: "load_balancer", module: "load_balancer", load: Some(load_lb) },
    PresetTable { table: "dialog", module: "dialog", load: None },
];

fn load_tm(value: &toml::Value, into: &mut Preset) -> Result<(), String> {
    into.tm = Some(value.clone().try_into::<TmPreset>().map_err(|e| e.message().to_string())?);
    Ok(())
}

/// One row of `[[case.state.dispatcher]]`: the table's columns, with its defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DsPresetRow {
    setid: i64,
    destination: String,
    #[serde(default)]
    socket: Option<String>,
    #[serde(default)]
    state: i64,
    #[serde(default)]
    probe_mode: i64,
    #[serde(default)]
    weight: Option<toml::Value>,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    attrs: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

fn load_dispatcher(value: &toml::Value, into: &mut Preset) -> Result<(), String> {
    let rows: Vec<DsPresetRow> = value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| format!("want [[case.state.dispatcher]] rows: {}", e.message()))?;
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| DsRow {
            id: i as i64 + 1,
            setid: r.setid,
            destination: r.destination,
            socket: r.socket,
            state: r.state,
            probe_mode: r.probe_mode,
            weight: match r.weight {
                Some(toml::Value::String(w)) => w,
                Some(w) => w.to_string(),
                None => "1".into(),
            },
            priority: r.priority,
            attrs: r.attrs,
            description: r.description,
        })
        .collect();
    into.dispatcher = Some(rows);
    Ok(())
}

/// One row of `[[case.state.load_balancer]]`: the table's columns, with its defaults, and
/// `calls`: how many calls the destination carries when the case starts (counted against
/// every resource of the row, as calls `lb_start` placed there).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LbPresetRow {
    group_id: i64,
    dst_uri: String,
    resources: String,
    #[serde(default)]
    probe_mode: i64,
    #[serde(default)]
    attrs: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    calls: u32,
}

fn load_lb(value: &toml::Value, into: &mut Preset) -> Result<(), String> {
    let rows: Vec<LbPresetRow> = value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| format!("want [[case.state.load_balancer]] rows: {}", e.message()))?;
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = LbRow::new(r.group_id, &r.dst_uri, &r.resources);
            row.id = i as i64 + 1;
            row.probe_mode = r.probe_mode;
            row.attrs = r.attrs;
            row.description = r.description;
            (row, r.calls)
        })
        .collect();
    into.load_balancer = Some(rows);
    Ok(())
}

/// One row of `[[case.state.location]]`: a binding as `save` stores it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationPresetRow {
    /// The AoR: `user`, or `user@domain` with `[usrloc] use_domain`.
    aor: String,
    contact: String,
    #[serde(default)]
    received: Option<String>,
    #[serde(default)]
    path: Option<String>,
    /// Seconds left (default 3600).
    #[serde(default = "default_preset_expires")]
    expires: i64,
    /// q as a number (`0.5`); none: unspecified.
    #[serde(default)]
    q: Option<f64>,
    /// Branch flags saved with it, by name (`["NAT"]`).
    #[serde(default)]
    cflags: Vec<String>,
    #[serde(default)]
    socket: Option<String>,
    /// Allow of the REGISTER (`"INVITE, ACK, BYE"`); none: every method.
    #[serde(default)]
    methods: Option<String>,
    #[serde(default)]
    user_agent: String,
}

fn default_preset_expires() -> i64 {
    3600
}

fn load_location(value: &toml::Value, into: &mut Preset) -> Result<(), String> {
    let rows: Vec<LocationPresetRow> = value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| format!("want [[case.state.location]] rows: {}", e.message()))?;
    let now = usrloc::now();
    let mut contacts = Vec::with_capacity(rows.len());
    for (i, r) in rows.into_iter().enumerate() {
        let mut cflags = 0u64;
        for name in &r.cflags {
            let bit =
                flag_bit_of(name).ok_or_else(|| format!("location row {}: flag {name:?}: too many flags", i + 1))?;
            cflags |= 1 << bit;
        }
        contacts.push(Contact {
            id: i as i64 + 1,
            aor: r.aor,
            uri: r.contact,
            received: r.received,
            path: r.path,
            expires: now + r.expires,
            q: r.q.map_or(usrloc::Q_UNSPECIFIED, |q| (q * 1000.0).round() as i32),
            callid: format!("preset-{}", i + 1),
            cseq: 1,
            last_modified: now - i as i64,
            flags: 0,
            cflags,
            user_agent: r.user_agent,
            socket: r.socket,
            methods: r.methods.map(|m| m.split(',').map(|x| usrloc::method_bit(x.trim())).fold(0, |a, b| a | b)),
            instance: None,
            reg_id: 0,
            attr: None,
            pings_lost: 0,
        });
    }
    into.location = Some(contacts);
    Ok(())
}

/// Loads `[case.state.<table>]` through [`PRESET_TABLES`].
///
/// # Errors
/// An unknown table, one whose module is not built yet, or content its loader refuses.
pub fn load_preset(table: &str, value: &toml::Value, into: &mut Preset) -> Result<(), PresetError> {
    let Some(t) = PRESET_TABLES.iter().find(|t| t.table == table) else {
        let known = PRESET_TABLES.iter().map(|t| t.table).collect::<Vec<_>>().join(", ");
        return Err(PresetError::Unknown { table: table.into(), known });
    };
    let Some(load) = t.load else {
        return Err(PresetError::NotBuilt { table: table.into(), module: t.module });
    };
    load(value, into).map_err(|message| PresetError::Invalid { table: table.into(), message })
}

// ------------------------------------------------------------------ what is recorded

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// Sent by SL (no transaction).
    Stateless,
    /// Sent by the transaction (t_reply, 100 Trying, TM's own 477 …).
    Stateful,
    /// Received from downstream (a played-back reply) and relayed upstream.
    Relayed,
}

/// A reply that went upstream.
#[derive(Clone, Debug)]
pub struct SentReply {
    pub code: u16,
    pub reason: String,
    pub kind: ReplyKind,
    pub bytes: Bytes,
}

/// A request that went downstream.
#[derive(Clone, Debug)]
pub struct SentRequest {
    pub ruri: String,
    pub du: Option<String>,
    /// Where the destination came from: `$du`, else the outbound proxy, else the R-URI.
    pub next_hop: String,
    /// `proto:host:port` it was sent to (a host name stays unresolved).
    pub dest: String,
    /// `proto:ip:port` of the socket it left on.
    pub socket: String,
    /// Part of a transaction (t_relay), or forwarded statelessly (forward, 2xx ACK).
    pub stateful: bool,
    pub bytes: Bytes,
}

/// Everything the core did in one step.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub replies: Vec<SentReply>,
    pub requests: Vec<SentRequest>,
    /// A CANCEL cancelled its INVITE transaction.
    pub cancelled_invite: bool,
    /// The Reason passed on with that CANCEL (`pass-reason-hdr`).
    pub cancel_reason: Option<String>,
    /// The request was absorbed by the transaction it belongs to (a retransmission, whose
    /// last reply is sent again, or the ACK of a negative reply).
    pub absorbed: bool,
}

/// How one hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookEnd {
    Done,
    Exit,
    Drop,
    Error(String),
}

#[derive(Clone, Debug)]
pub struct HookRun {
    /// The Rhai function: `route`, `error_route`, `failure_route_x`, `onreply_route_x` …
    pub name: String,
    pub end: HookEnd,
}

/// Routes armed on the transaction (or, without one, by the script).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Armed {
    pub failure: Option<String>,
    pub reply: Option<String>,
    pub branch: Option<String>,
}

/// One step of a case: the request through `route`, or a reply played back.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// The message the step started from: the request routed, or the reply played back.
    pub incoming: Bytes,
    /// The hooks that ran, in order (branch routes run inside t_relay and are not listed).
    pub hooks: Vec<HookRun>,
    pub logs: Vec<LogLine>,
    pub sent: Sent,
    /// `$ru` and `$du` when the last request hook of the step ended (`None`: none ran).
    pub ruri: Option<String>,
    pub du: Option<String>,
    pub armed: Armed,
    /// A transaction exists for the request.
    pub transaction: bool,
}

/// What a case did.
#[derive(Clone, Debug)]
pub struct CaseRun {
    pub route: Step,
    /// The played-back reply, when the case has one.
    pub then: Option<Step>,
}

// ------------------------------------------------------------------ the runner

/// A dry-run proxy: one config and one compiled script, for any number of cases.
pub struct DryRun {
    sockets: Sockets,
    rr: RrConfig,
    auto_100: bool,
    block_6xx: bool,
    bundle: Arc<Bundle>,
    /// The dispatcher the script's functions are bound to; each case sets its rows.
    dispatcher: Arc<Dispatcher>,
    /// The load balancer, likewise.
    load_balancer: Arc<LoadBalancer>,
    /// The dialog table those functions use; emptied before each case.
    dialogs: Arc<Dialogs>,
    /// The location table `save`/`lookup` use; each case sets its contacts.
    usrloc: Arc<Usrloc>,
}

impl DryRun {
    /// The proxy `cfg` describes, running `bundle`, with its sockets as configured (unbound).
    ///
    /// # Errors
    /// A bad `[core] listen` entry.
    pub fn new(cfg: &Config, bundle: Arc<Bundle>, modules: &Modules) -> Result<DryRun, DryRunError> {
        Ok(DryRun {
            dispatcher: modules.dispatcher.clone(),
            load_balancer: modules.load_balancer.clone(),
            dialogs: modules.dialogs.clone(),
            usrloc: modules.usrloc.clone(),
            sockets: Sockets::from_config(cfg)?,
            rr: cfg.rr.clone(),
            auto_100: cfg.tm.auto_100trying,
            block_6xx: !cfg.tm.disable_6xx_block,
            bundle,
        })
    }

    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    /// Routes `req` from `preset` state, then plays `then` back if given. Runs on a thread
    /// of its own so per-thread script state (`$var`, log capture) starts empty.
    ///
    /// # Errors
    /// The message is not a request that parses, or `then` has no branch to come back on.
    pub fn run(&self, req: Request, preset: &Preset, then: Option<&PlayReply>) -> Result<CaseRun, DryRunError> {
        std::thread::scope(|s| s.spawn(|| self.run_here(req, preset, then)).join())
            .unwrap_or_else(|p| Err(DryRunError::Panicked(panic_text(p.as_ref()))))
    }

    fn run_here(&self, req: Request, preset: &Preset, then: Option<&PlayReply>) -> Result<CaseRun, DryRunError> {
        let msg = SipMsg::parse(req.bytes.clone())?;
        if !msg.is_request() {
            return Err(DryRunError::NotARequest);
        }
        // Every case starts from its own dispatcher and load_balancer rows (none when it
        // presets none), and no dialog but the calls its load_balancer rows carry.
        self.dispatcher.replace(preset.dispatcher.clone().unwrap_or_default(), false);
        self.preset_load_balancer(preset.load_balancer.as_deref().unwrap_or_default())?;
        self.usrloc.clear();
        for c in preset.location.iter().flatten() {
            self.usrloc.apply_remote("location", c.clone());
        }
        let core = DryCore::new(self, preset, &msg);
        let route = self.route_step(&core, msg, &req);
        let then = match then {
            Some(play) => Some(self.reply_step(&core, play)?),
            None => None,
        };
        Ok(CaseRun { route, then })
    }

    fn preset_load_balancer(&self, rows: &[(LbRow, u32)]) -> Result<(), DryRunError> {
        for d in self.dialogs.list() {
            self.dialogs.end(&d, "dry run");
        }
        self.load_balancer.replace(rows.iter().map(|(r, _)| r.clone()).collect());
        for (row, calls) in rows {
            let resources: Vec<String> = row
                .resources
                .split(';')
                .filter_map(|r| r.split_once('=').map(|(name, _)| name.trim().to_string()))
                .collect();
            for n in 0..*calls {
                let invite = format!(
                    "INVITE {uri} SIP/2.0\r\nCall-ID: preset-{id}-{n}\r\nFrom: <sip:preset@invalid>;tag=p{n}\r\n\
                     To: <{uri}>\r\nCSeq: 1 INVITE\r\n\r\n",
                    uri = row.dst_uri,
                    id = row.id,
                );
                let msg = SipMsg::parse(bytes::Bytes::from(invite))?;
                let dlg = self.dialogs.create(&msg, String::new(), 0);
                self.load_balancer
                    .count_call(&dlg, row.id, &resources, false)
                    .map_err(|e| DryRunError::Preset(format!("load_balancer row {}: {e}", row.id)))?;
            }
        }
        Ok(())
    }

    /// The request through the pipeline, as [`super::Proxy`]'s `on_request` does it: the
    /// basic checks (error_route or a 400), `route`, and a 500 for a script error when
    /// nothing was sent yet (design.md §3).
    fn route_step(&self, core: &Arc<DryCore>, msg: SipMsg, req: &Request) -> Step {
        let local = self.sockets.listener(req.listener).map(|l| l.addr).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let new_ctx = |kind: RouteKind| {
            let mut ctx = Ctx::new(kind, msg.clone(), req.src, req.proto.as_str(), local, core.clone());
            ctx.listener = req.listener;
            ctx
        };
        let ((hooks, ctx), logs) = capture_logs(|| {
            let mut hooks = Vec::new();
            if let Err(e) = msg.check_request() {
                let can_answer = msg.method() != Method::Ack && msg.top_via().is_some();
                let mut ctx = new_ctx(RouteKind::Error);
                ctx.reply_code = 400;
                ctx.last_error = Some(LastError { code: 400, reason: e.reason().to_string() });
                let (ctx, outcome) = run_hook(&self.bundle, "error_route", ctx);
                push_run(&mut hooks, "error_route", &outcome);
                if !(ctx.answered || ctx.dropped) && can_answer {
                    core.reply_stateless(&new_ctx(RouteKind::Error), e.status_code(), e.reason(), "");
                }
                return (hooks, ctx);
            }
            let (mut ctx, outcome) = run_hook(&self.bundle, "route", new_ctx(RouteKind::Request));
            push_run(&mut hooks, "route", &outcome);
            if matches!(outcome, Outcome::Error(_)) && !ctx.answered && ctx.msg.method() != Method::Ack {
                let core: Arc<dyn CoreOps> = core.clone();
                core.send_reply(&mut ctx, 500, "Server Internal Error");
            }
            (hooks, ctx)
        });
        core.finish_step(req.bytes.clone(), hooks, logs, Some(&ctx))
    }

    /// A reply to the first branch, handled as the transaction layer and the proxy's hooks
    /// handle one (hooks.rs, `Tm::check_complete`): the unnamed onreply_route, the armed
    /// onreply_route, then relayed upstream, or for a negative final the failure route on
    /// the transaction's saved state and, if that neither relayed nor answered, the reply
    /// relayed upstream.
    fn reply_step(&self, core: &Arc<DryCore>, play: &PlayReply) -> Result<Step, DryRunError> {
        let cell = core.created().ok_or(DryRunError::NothingRelayed)?;
        let (first, status) = {
            let st = cell.lock();
            (st.branches.first().cloned(), st.status)
        };
        let first = first.ok_or(DryRunError::NothingRelayed)?;
        if status >= 200 {
            return Err(DryRunError::AlreadyAnswered(status));
        }
        if play.cancelled {
            cell.lock().cancelled = true;
        }
        let reply = SipMsg::parse(downstream_reply(&SipMsg::parse(first.bytes.clone())?, play.code, &play.reason))?;
        let ((hooks, ctx), logs) = capture_logs(|| self.play(core, &cell, &first, &reply));
        Ok(core.finish_step(reply.bytes().clone(), hooks, logs, ctx.as_ref()))
    }

    fn play(
        &self,
        core: &Arc<DryCore>,
        cell: &Arc<DryCell>,
        branch: &BranchSent,
        reply: &SipMsg,
    ) -> (Vec<HookRun>, Option<Ctx>) {
        let mut hooks = Vec::new();
        let code = reply.status().unwrap_or(500);
        // The unnamed onreply_route sees every reply first; drop() there discards it.
        if self.bundle.has_hook("onreply_route") {
            let mut ctx = Ctx::new(
                RouteKind::OnReply,
                reply.clone(),
                branch.addr,
                branch.proto.as_str(),
                branch.local,
                core.clone(),
            );
            ctx.listener = branch.listener;
            ctx.reply_code = code;
            let (ctx, outcome) = run_hook(&self.bundle, "onreply_route", ctx);
            push_run(&mut hooks, "onreply_route", &outcome);
            if matches!(outcome, Outcome::Drop) || ctx.dropped {
                return (hooks, None);
            }
        }
        let mut edits = Edits::new();
        let mut dropped = false;
        if let Some((name, mut ctx)) =
            cell.with_data(|d| d.on_reply.clone().map(|n| (n, d.reply_ctx(reply, branch.addr, core.clone())))).flatten()
        {
            ctx.tsx = Some(cell.clone());
            let hook = format!("onreply_route_{name}");
            let (ctx, outcome) = run_hook(&self.bundle, &hook, ctx);
            push_run(&mut hooks, &hook, &outcome);
            dropped = matches!(outcome, Outcome::Drop) || ctx.dropped;
            edits = ctx.edits;
        }
        if code < 300 {
            // 1xx but 100 are relayed unless dropped; 2xx always (spec §4.4).
            if code >= 200 || (code > 100 && !dropped) {
                core.relay_reply(cell, reply, &edits);
            }
            return (hooks, None);
        }
        if self.block_6xx && code >= 600 {
            cell.lock().blocked = true;
        }
        let before = cell.lock().branches.len();
        let winner = Winner { branch: 0, code, reply: Some(reply.clone()) };
        let mut last = None;
        // The failure route is disarmed before it runs (spec §4.7); it re-arms itself.
        if let Some((name, mut ctx)) = cell
            .with_data(|d| {
                let name = d.on_failure.take()?;
                Some((name, d.failure_ctx(&cell.request, &winner, core.clone())))
            })
            .flatten()
        {
            ctx.tsx = Some(cell.clone());
            let hook = format!("failure_route_{name}");
            let (ctx, outcome) = run_hook(&self.bundle, &hook, ctx);
            push_run(&mut hooks, &hook, &outcome);
            cell.with_data(|d| d.write_back(&ctx));
            last = Some(ctx);
        }
        let (forked, replied) = {
            let st = cell.lock();
            (st.branches.len() > before, st.status >= 200)
        };
        if !forked && !replied {
            core.relay_reply(cell, reply, &edits);
        }
        (hooks, last)
    }
}

fn push_run(hooks: &mut Vec<HookRun>, name: &str, outcome: &Outcome) {
    let end = match outcome {
        Outcome::Missing => return,
        Outcome::Done => HookEnd::Done,
        Outcome::Exit => HookEnd::Exit,
        Outcome::Drop => HookEnd::Drop,
        Outcome::Error(e) => HookEnd::Error(e.to_string()),
    };
    hooks.push(HookRun { name: name.to_string(), end });
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The reply a downstream UAS sends to `req` (a branch as we sent it): its Via, From, To
/// (tagged), Call-ID and CSeq, no body.
fn downstream_reply(req: &SipMsg, code: u16, reason: &str) -> Bytes {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
    for h in req.headers() {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.extend_from_slice(req.slice(h.line));
            }
            HeaderName::To => {
                out.extend_from_slice(req.slice(Span::new(h.line.start as usize, h.value.end as usize)));
                if req.to().and_then(|t| t.tag()).is_none() {
                    out.extend_from_slice(b";tag=dryrun-uas");
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

// ------------------------------------------------------------------ the recording core

/// A branch as it went out, enough to play a reply back on it.
#[derive(Clone, Debug)]
struct BranchSent {
    bytes: Bytes,
    addr: SocketAddr,
    proto: Proto,
    listener: usize,
    local: SocketAddr,
}

#[derive(Default)]
struct CellState {
    data: Option<TxData>,
    status: u16,
    cancelled: bool,
    blocked: bool,
    branches: Vec<BranchSent>,
}

/// The dry run's transaction.
pub(super) struct DryCell {
    request: SipMsg,
    top_via: Option<String>,
    to_tag: String,
    method: Method,
    state: Mutex<CellState>,
}

impl DryCell {
    fn new(request: SipMsg, top_via: Option<String>, status: u16) -> DryCell {
        let to_tag = format!("dryrun-{}", stateless_tag(&request).trim_start_matches("sl"));
        let method = request.method();
        let state = Mutex::new(CellState { status, ..Default::default() });
        DryCell { request, top_via, to_tag, method, state }
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_data<T>(&self, f: impl FnOnce(&mut TxData) -> T) -> Option<T> {
        self.lock().data.as_mut().map(f)
    }
}

impl TxView for Arc<DryCell> {
    fn was_cancelled(&self) -> bool {
        self.lock().cancelled
    }
    fn branch_count(&self) -> usize {
        self.lock().branches.len()
    }
    fn can_fork(&self) -> bool {
        let st = self.lock();
        st.status < 200 && !st.blocked && !(st.cancelled && st.branches.is_empty())
    }
    fn uas_status(&self) -> u16 {
        self.lock().status
    }
}

/// The [`Backend`] that records.
pub(super) struct DryCore {
    sockets: Sockets,
    rr: RrConfig,
    auto_100: bool,
    bundle: Arc<Bundle>,
    dialogs: Arc<Dialogs>,
    /// The transaction the request belongs to already (`[case.state.tm]`).
    preset: Option<Arc<DryCell>>,
    /// The transaction the script created.
    created: Mutex<Option<Arc<DryCell>>>,
    sent: Mutex<Sent>,
    me: Weak<DryCore>,
}

impl DryCore {
    fn new(run: &DryRun, preset: &Preset, msg: &SipMsg) -> Arc<DryCore> {
        let existing = preset.tm.as_ref().map(|t| Arc::new(DryCell::new(msg.clone(), None, t.last_reply)));
        Arc::new_cyclic(|me| DryCore {
            sockets: run.sockets.clone(),
            rr: run.rr.clone(),
            auto_100: run.auto_100,
            bundle: run.bundle.clone(),
            dialogs: run.dialogs.clone(),
            preset: existing,
            created: Mutex::new(None),
            sent: Mutex::new(Sent::default()),
            me: me.clone(),
        })
    }

    fn core(&self) -> Arc<dyn CoreOps> {
        match self.me.upgrade() {
            Some(c) => c,
            // The case holds the core for as long as its hooks run.
            None => unreachable!("dry-run core used after its case ended"),
        }
    }

    fn created(&self) -> Option<Arc<DryCell>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, f: impl FnOnce(&mut Sent)) {
        f(&mut self.sent.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn record_reply(&self, code: u16, reason: &str, kind: ReplyKind, bytes: Bytes) {
        self.record(|s| s.replies.push(SentReply { code, reason: reason.to_string(), kind, bytes }));
    }

    fn record_request(&self, o: &Outgoing, stateful: bool) {
        let req = SentRequest {
            ruri: o.ruri.clone(),
            du: o.du.clone(),
            next_hop: o.next_hop.clone().unwrap_or_else(|| o.ruri.clone()),
            dest: o.hop.to_string(),
            socket: format!("{}:{}", o.out.proto.as_str(), o.out.addr),
            stateful,
            bytes: o.bytes.clone(),
        };
        self.record(|s| s.requests.push(req));
    }

    fn relay_env(&self, ctx: &Ctx) -> RelayEnv<'_> {
        RelayEnv {
            sockets: &self.sockets,
            rr: &self.rr,
            resolve: Resolve::Never,
            branch_route: ctx.on_branch.is_some().then(|| BranchRouteEnv {
                bundle: self.bundle.clone(),
                core: self.core(),
                host: None,
            }),
        }
    }

    /// A branch joins the transaction, as `Tm::add_branch` takes it.
    fn add_branch(&self, cell: &DryCell, o: Outgoing) -> Result<(), DestError> {
        {
            let mut st = cell.lock();
            if st.status >= 200 || st.blocked {
                return Err(DestError::NoSocket);
            }
            let local = o.out.addr;
            st.branches.push(BranchSent {
                bytes: o.bytes.clone(),
                addr: o.hop.addr,
                proto: o.hop.proto,
                listener: o.out.id,
                local,
            });
        }
        self.record_request(&o, true);
        Ok(())
    }

    /// A reply from downstream goes upstream without our Via, with the reply route's edits
    /// (`Tm::relay_reply`).
    fn relay_reply(&self, cell: &DryCell, reply: &SipMsg, edits: &Edits) {
        let code = reply.status().unwrap_or(500);
        {
            let mut st = cell.lock();
            let again_2xx =
                cell.method == Method::Invite && (200..300).contains(&code) && (200..300).contains(&st.status);
            if st.status >= 200 && !again_2xx {
                return;
            }
            st.status = code;
        }
        let mut e = edits.clone();
        if let Some(span) = top_via_removal(reply) {
            e.delete(span);
        }
        let bytes = Bytes::from(Edits::render(reply, &[&e]));
        self.record_reply(code, reply.reason(), ReplyKind::Relayed, bytes);
    }

    /// Ends a step: what was sent since the last one, and the state the case is in.
    fn finish_step(&self, incoming: Bytes, hooks: Vec<HookRun>, logs: Vec<LogLine>, ctx: Option<&Ctx>) -> Step {
        let sent = std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()));
        let cell = self.created();
        let armed = match (&cell, ctx) {
            (Some(c), _) => c.lock().data.as_ref().map(armed_of_data).unwrap_or_default(),
            (None, Some(ctx)) => {
                Armed { failure: ctx.on_failure.clone(), reply: ctx.on_reply.clone(), branch: ctx.on_branch.clone() }
            }
            (None, None) => Armed::default(),
        };
        let request_hook = ctx.filter(|c| c.kind.is_request());
        Step {
            incoming,
            hooks,
            logs,
            sent,
            ruri: request_hook.map(|c| c.ruri().to_string()),
            du: request_hook.and_then(|c| c.du.clone()),
            armed,
            transaction: cell.is_some(),
        }
    }
}

fn armed_of_data(d: &TxData) -> Armed {
    Armed { failure: d.on_failure.clone(), reply: d.on_reply.clone(), branch: d.on_branch.clone() }
}

impl Backend for DryCore {
    type Tx = Arc<DryCell>;

    fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    fn dialogs(&self) -> Option<Arc<Dialogs>> {
        Some(self.dialogs.clone())
    }

    fn cell_of(&self, ctx: &Ctx) -> Option<Arc<DryCell>> {
        ctx.tsx.clone().and_then(|t| t.downcast::<DryCell>().ok())
    }

    fn create_cell(&self, ctx: &mut Ctx) -> Option<Arc<DryCell>> {
        if let Some(existing) = self.lookup(&ctx.msg) {
            self.retransmit_reply(&existing);
            return None;
        }
        let via = stamp_top_via(&ctx.msg, ctx.src, ctx.force_rport);
        let cell = Arc::new(DryCell::new(ctx.msg.clone(), via, 0));
        self.freeze_into(ctx, &cell);
        ctx.tsx = Some(cell.clone());
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = Some(cell.clone());
        if cell.method == Method::Invite && self.auto_100 {
            self.reply(&cell, 100, "Trying", "");
        }
        Some(cell)
    }

    fn freeze_into(&self, ctx: &Ctx, cell: &Arc<DryCell>) {
        cell.lock().data = Some(TxData::from_ctx(ctx));
    }

    fn lookup(&self, msg: &SipMsg) -> Option<Arc<DryCell>> {
        self.preset.clone().filter(|_| msg.method() != Method::Cancel)
    }

    fn lookup_invite_for_cancel(&self, msg: &SipMsg) -> Option<Arc<DryCell>> {
        self.preset.clone().filter(|_| msg.method() == Method::Cancel)
    }

    fn retransmit_reply(&self, _cell: &Arc<DryCell>) {
        self.record(|s| s.absorbed = true);
    }

    fn absorb_ack(&self, _cell: &Arc<DryCell>) {
        self.record(|s| s.absorbed = true);
    }

    fn cancel(&self, invite: &Arc<DryCell>, reason: Option<String>) {
        invite.lock().cancelled = true;
        self.record(|s| {
            s.cancelled_invite = true;
            s.cancel_reason = reason;
        });
    }

    fn reply(&self, cell: &Arc<DryCell>, code: u16, reason: &str, extra: &str) -> bool {
        {
            let mut st = cell.lock();
            let again_2xx =
                cell.method == Method::Invite && (200..300).contains(&code) && (200..300).contains(&st.status);
            if st.status >= 200 && !again_2xx {
                return false;
            }
            st.status = code;
        }
        let opts =
            ReplyOpts { to_tag: Some(&cell.to_tag), top_via: cell.top_via.as_deref(), extra_headers: extra, body: b"" };
        self.record_reply(
            code,
            reason,
            ReplyKind::Stateful,
            Bytes::from(build_reply(&cell.request, code, reason, &opts)),
        );
        true
    }

    fn reply_stateless(&self, ctx: &Ctx, code: u16, reason: &str, extra: &str) {
        let bytes = stateless_reply(&ctx.msg, ctx.src, ctx.force_rport, code, reason, extra);
        self.record_reply(code, reason, ReplyKind::Stateless, bytes);
    }

    fn relay_branches(&self, ctx: &mut Ctx, cell: &Arc<DryCell>, outbound: Option<&str>) -> Result<usize, DestError> {
        let env = self.relay_env(ctx);
        // Branch numbers go on across failure-route generations, as the proxy's do.
        let mut n = cell.lock().branches.len() as u32;
        let next_param = || {
            let k = n;
            n += 1;
            (k, format!("z9hG4bKdryrun.{k}"))
        };
        relay_branches_with(&env, ctx, outbound, cell.top_via.as_deref(), next_param, |o| self.add_branch(cell, o))
    }

    fn forward_stateless(&self, ctx: &mut Ctx, dest: Option<&str>, outbound: Option<&str>) -> i64 {
        match stateless_request(&self.relay_env(ctx), ctx, dest, outbound) {
            Ok(o) => {
                self.record_request(&o, false);
                ctx.answered = true;
                1
            }
            Err(e) => e.code(),
        }
    }
}

core_ops_by_backend!(DryCore);
