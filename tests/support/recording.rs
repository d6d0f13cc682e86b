//! The in-process script harness of the module tests (tests/dispatcher.rs,
//! tests/load_balancer.rs): a recording [`CoreOps`] standing in for the proxy, and a
//! script compiled with the modules' registrar and run on one request.

use bytes::Bytes;
use siprox::dialog::Dialog;
use siprox::message::SipMsg;
use siprox::modules::Modules;
use siprox::script::api::{CoreOps, Ctx, RouteKind};
use siprox::script::{build_engine, compile, run_hook, Bundle, Limits, Outcome, Source};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The proxy as the script sees it: replies and relays are recorded in `calls`
/// (`sl_send_reply <code> <reason>`, `t_relay du=<du> ruri=<ruri>`); it is 10.0.0.1:5060
/// with UDP and TCP sockets there.
#[derive(Default)]
pub struct Core {
    pub calls: Mutex<Vec<String>>,
}

impl CoreOps for Core {
    fn sl_send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        ctx.answered = true;
        self.calls.lock().unwrap().push(format!("sl_send_reply {code} {reason}"));
        1
    }
    fn send_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        self.sl_send_reply(ctx, code, reason)
    }
    fn t_reply(&self, ctx: &mut Ctx, code: u16, reason: &str) -> i64 {
        self.sl_send_reply(ctx, code, reason)
    }
    fn t_relay(&self, ctx: &mut Ctx, _flags: &str, _outbound: Option<&str>) -> i64 {
        self.calls.lock().unwrap().push(format!("t_relay du={:?} ruri={}", ctx.du, ctx.ruri()));
        1
    }
    fn t_newtran(&self, _ctx: &mut Ctx) -> i64 {
        1
    }
    fn t_check_trans(&self, _ctx: &mut Ctx) -> i64 {
        -1
    }
    fn t_was_cancelled(&self, _ctx: &Ctx) -> bool {
        false
    }
    fn forward(&self, _ctx: &mut Ctx, _dest: Option<&str>) -> i64 {
        1
    }
    fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        host == "10.0.0.1" && port.unwrap_or(5060) == 5060
    }
    fn has_socket(&self, spec: &str) -> bool {
        spec == "udp:10.0.0.1:5060" || spec == "tcp:10.0.0.1:5060"
    }
}

pub fn limits() -> Limits {
    Limits { max_operations: 100_000, ..Limits::default() }
}

/// `src` compiled with the script functions of `modules`.
pub fn compile_script(modules: &Modules, src: &str, name: &str) -> Bundle {
    let engine = build_engine(limits(), &*modules.registrar());
    compile(engine, Source::Text { text: src, name }).unwrap_or_else(|e| panic!("compile: {e}"))
}

/// Runs `hook` of `bundle` on the message `text`, received over UDP from 192.0.2.10:5060 on
/// 10.0.0.1:5060, in dialog `dlg`; returns the context, the outcome and what the core saw.
pub fn run_on(
    bundle: &Bundle,
    hook: &str,
    kind: RouteKind,
    text: &str,
    dlg: Option<Arc<Dialog>>,
) -> (Ctx, Outcome, Arc<Core>) {
    let core = Arc::new(Core::default());
    let msg = SipMsg::parse(Bytes::from(text.to_string())).expect("parses");
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let local: SocketAddr = "10.0.0.1:5060".parse().unwrap();
    let mut ctx = Ctx::new(kind, msg, src, "udp", local, core.clone());
    ctx.dlg = dlg;
    let (ctx, out) = run_hook(bundle, hook, ctx);
    (ctx, out, core)
}

/// The value of `$avp(name)` as text, `<none>` when unset.
pub fn avp(ctx: &Ctx, name: &str) -> String {
    ctx.avps.get(name).map(|d| d.to_string()).unwrap_or_else(|| "<none>".into())
}
