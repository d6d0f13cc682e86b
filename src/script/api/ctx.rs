//! The per-message context a hook works on, and the contract with the core.
//!
//! Scripts decide, the core acts: script functions read and edit the [`Ctx`]; the few that
//! must reach the network or the transaction table (replies, t_relay, CANCEL matching) go
//! through [`CoreOps`], which the proxy implements. Nothing here waits on I/O.

use crate::message::{Edits, SipMsg, Span};
use rhai::Dynamic;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which kind of route the hook is (OpenSIPS route types, spec §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Request,
    Branch,
    Failure,
    OnReply,
    Local,
    Error,
    Startup,
    /// `event_route_<name>`: an event with parameters (`$param(x)`), no SIP message.
    Event,
}

impl RouteKind {
    pub fn is_request(self) -> bool {
        matches!(
            self,
            RouteKind::Request | RouteKind::Branch | RouteKind::Failure | RouteKind::Local | RouteKind::Error
        )
    }
}

/// An extra branch (`append_branch`), OpenSIPS's destination set.
#[derive(Clone, Debug, Default)]
pub struct BranchSpec {
    pub uri: String,
    pub du: Option<String>,
    pub q: Option<String>,
    pub bflags: u64,
    /// The Path this contact registered with (`lookup`): sent as Route headers.
    pub path: Option<String>,
    /// The socket the contact registered through (`lookup`), `proto:ip:port`.
    pub socket: Option<String>,
}

/// What `record_route*` asked for; the header is written per branch at send time because
/// its address depends on the outgoing socket (RFC 3261 §16.6 step 4).
#[derive(Clone, Debug, Default)]
pub struct RrRequest {
    /// `record_route_preset(outbound[, inbound])`.
    pub preset: Option<(String, Option<String>)>,
    /// Extra `;name=value` parameters (`record_route(";p=1")`, `add_rr_param`).
    pub params: String,
}

/// AVPs: per name, a stack of values, newest last (spec §1.3).
#[derive(Clone, Debug, Default)]
pub struct Avps {
    pub list: Vec<(String, Dynamic)>,
}

impl Avps {
    pub fn get(&self, name: &str) -> Option<&Dynamic> {
        self.list.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    pub fn all(&self, name: &str) -> Vec<Dynamic> {
        self.list.iter().rev().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }
    pub fn push(&mut self, name: &str, v: Dynamic) {
        self.list.push((name.to_string(), v));
    }
    /// `$avp(x) = NULL`: deletes the newest value.
    pub fn pop(&mut self, name: &str) {
        if let Some(i) = self.list.iter().rposition(|(n, _)| n == name) {
            let _ = self.list.remove(i);
        }
    }
    /// `$avp(x) := v`: replaces every value.
    pub fn replace(&mut self, name: &str, v: Dynamic) {
        self.list.retain(|(n, _)| n != name);
        self.push(name, v);
    }
}

/// The last internal error, for `sl_reply_error` (OpenSIPS `ser_error`).
#[derive(Clone, Debug)]
pub struct LastError {
    pub code: u16,
    pub reason: String,
}

/// Credentials `www_authorize` / `proxy_authorize` accepted (docs/auth.md).
#[derive(Clone, Debug)]
pub struct AuthorizedCreds {
    /// The digest `username` as sent (may be `user@domain`).
    pub username: String,
    pub realm: String,
    /// The `Authorization` / `Proxy-Authorization` line they came in (`consume_credentials`).
    pub line: Span,
}

/// What the auth functions learned about this request.
#[derive(Clone, Debug, Default)]
pub struct AuthState {
    pub authorized: Option<AuthorizedCreds>,
    /// The last check found a stale nonce with a right response: the next challenge says
    /// `stale=true` (RFC 7616 §3.3).
    pub stale: bool,
}

/// Everything a hook reads and changes.
pub struct Ctx {
    pub kind: RouteKind,
    /// The message being routed: a request, or the reply in onreply routes.
    pub msg: SipMsg,
    /// In reply and failure routes: the reply (the winning one in failure_route).
    pub reply: Option<SipMsg>,
    pub src: SocketAddr,
    pub proto: &'static str,
    pub local: SocketAddr,
    /// Index of the socket the message arrived on (the core's listener table).
    pub listener: usize,
    /// Header edits (lumps) against `msg`.
    pub edits: Edits,
    /// The Request-URI after rewrites (`None`: as received).
    pub new_ruri: Option<String>,
    pub du: Option<String>,
    /// The Path of the R-URI's contact (`lookup`, RFC 3327 §5.3): written as Route headers
    /// above the request's own when it is relayed; `$du` holds its first URI.
    pub path: Option<String>,
    pub flags: u64,
    pub bflags: u64,
    pub branches: Vec<BranchSpec>,
    pub force_rport: bool,
    /// `force_send_socket` / `$fs`: `proto:ip:port`.
    pub send_socket: Option<String>,
    pub avps: Avps,
    pub rr: Option<RrRequest>,
    /// Parameters `add_rr_param` collected before `record_route` was called.
    pub rr_params: String,
    /// Parameters of our own Route entry found by `loose_route` (`check_route_param`).
    pub route_params: String,
    pub on_failure: Option<String>,
    pub on_reply: Option<String>,
    pub on_branch: Option<String>,
    pub retcode: i64,
    /// `$T_reply_code`: the reply being handled, or the winner in failure_route.
    pub reply_code: u16,
    /// The proxy's transaction handle, when one exists.
    pub tsx: Option<Arc<dyn Any + Send + Sync>>,
    /// `$T_branch_idx` in branch routes.
    pub branch_idx: i64,
    pub last_error: Option<LastError>,
    /// Set when the script called `drop()`.
    pub dropped: bool,
    /// Header lines `append_to_reply` added to every reply this script sends.
    pub reply_headers: String,
    /// A reply was sent or the request relayed (so a late script error sends no 500).
    pub answered: bool,
    /// The script version this message is routed by; a transaction keeps it, so the routes
    /// it arms run on the same version even after a reload.
    pub bundle: Option<Arc<crate::script::Bundle>>,
    /// The event's parameters in an `event_route` (`$param(name)`).
    pub params: Vec<(String, String)>,
    /// The dialog of this message: created by `create_dialog` (or `lb_start`), matched by
    /// `loose_route`/`match_dialog`, or the one of the transaction a reply or failure
    /// route runs for.
    pub dlg: Option<Arc<crate::dialog::Dialog>>,
    pub core: Arc<dyn CoreOps>,
    /// Set by the auth module's functions (`$au`, `$ar`, `consume_credentials`, challenges).
    pub auth: AuthState,
}

impl Ctx {
    pub fn new(
        kind: RouteKind,
        msg: SipMsg,
        src: SocketAddr,
        proto: &'static str,
        local: SocketAddr,
        core: Arc<dyn CoreOps>,
    ) -> Ctx {
        Ctx {
            kind,
            msg,
            reply: None,
            src,
            proto,
            local,
            listener: 0,
            edits: Edits::new(),
            new_ruri: None,
            du: None,
            path: None,
            flags: 0,
            bflags: 0,
            branches: Vec::new(),
            force_rport: false,
            send_socket: None,
            avps: Avps::default(),
            rr: None,
            rr_params: String::new(),
            route_params: String::new(),
            on_failure: None,
            on_reply: None,
            on_branch: None,
            retcode: 1,
            reply_code: 0,
            tsx: None,
            branch_idx: 0,
            last_error: None,
            dropped: false,
            reply_headers: String::new(),
            answered: false,
            bundle: None,
            params: Vec::new(),
            dlg: None,
            core,
            auth: AuthState::default(),
        }
    }

    /// `send_reply` with `extra` header lines on this reply only, on top of the script's
    /// `append_to_reply` lines, which stay as they were for later replies (a challenge, the
    /// 200 of a REGISTER).
    pub fn send_reply_with(&mut self, code: u16, reason: &str, extra: &str) -> i64 {
        let len = self.reply_headers.len();
        self.reply_headers.push_str(extra);
        let core = self.core.clone();
        let rc = core.send_reply(self, code, reason);
        self.reply_headers.truncate(len);
        rc
    }

    /// The Request-URI as it stands now.
    pub fn ruri(&self) -> &str {
        self.new_ruri.as_deref().unwrap_or_else(|| self.msg.ruri())
    }
}

/// What the core does for the script. Implemented by the proxy; every method returns the
/// OpenSIPS return code of the primitive it backs.
pub trait CoreOps: Send + Sync {
    /// Stateless reply (`sl_send_reply`).
    fn sl_send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64;
    /// Stateful if a transaction exists, else stateless (`send_reply`).
    fn send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64;
    /// Stateful reply, creating the transaction if needed (`t_reply`).
    fn t_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64;
    /// `t_relay([flags][, outbound_proxy])`.
    fn t_relay(&self, ctx: &mut Ctx, flags: &str, outbound: Option<&str>) -> i64;
    fn t_newtran(&self, ctx: &mut Ctx) -> i64;
    fn t_check_trans(&self, ctx: &mut Ctx) -> i64;
    fn t_was_cancelled(&self, ctx: &Ctx) -> bool;
    /// Status of the last reply the transaction sent upstream (0: none, or no transaction);
    /// what `t_check_status` and `$T_reply_code` see in request routes.
    fn t_last_code(&self, ctx: &Ctx) -> u16 {
        let _ = ctx;
        0
    }
    /// Stateless forward (`forward()`).
    fn forward(&self, ctx: &mut Ctx, dest: Option<&str>) -> i64;
    /// Whether `host[:port]` is this proxy (`myself`).
    fn is_myself(&self, host: &str, port: Option<u16>) -> bool;
    /// Whether `proto:ip:port` is one of our sockets.
    fn has_socket(&self, spec: &str) -> bool;
    /// The dialog table (`$DLG_count`); `None` where there is none (a dry run).
    fn dialogs(&self) -> Option<Arc<crate::dialog::Dialogs>> {
        None
    }
}
