//! The script↔core contract: the [`Ctx`] a hook works on, [`CoreOps`] the proxy implements,
//! and the helpers script functions use to reach the current context.
//!
//! A hook runs on one thread from start to end, so the context of the message being routed
//! sits in a thread-local stack: a hook pushes it, script functions borrow the top, and a
//! nested hook (a branch_route run from inside `t_relay`) pushes its own above it.

pub mod capture;
pub mod core_fns;
mod ctx;
pub mod pv;

pub use core_fns::{flag_bit_of, flag_name_of};
pub use ctx::{AuthState, AuthorizedCreds, Avps, BranchSpec, CoreOps, Ctx, LastError, RouteKind, RrRequest};

use rhai::{Dynamic, EvalAltResult, Position};
use std::cell::RefCell;

thread_local! {
    static STACK: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
}

/// Marker carried by the error that ends a script early.
pub const EXIT: &str = "__siprox_exit__";
pub const DROP: &str = "__siprox_drop__";

pub type FnResult<T> = Result<T, Box<EvalAltResult>>;

/// Pushes `ctx` for the duration of a hook; [`pop`] takes it back.
pub(crate) fn push(ctx: Ctx) {
    STACK.with(|s| s.borrow_mut().push(ctx));
}
pub(crate) fn pop() -> Option<Ctx> {
    STACK.with(|s| s.borrow_mut().pop())
}

/// Runs `f` on the context of the hook being executed.
///
/// The context is taken out of the stack while `f` runs, so `f` may run a nested hook.
///
/// # Errors
/// A script error when no hook is running (a function called from `siprox check` or a
/// startup route with no message).
pub fn with_ctx<T>(f: impl FnOnce(&mut Ctx) -> T) -> FnResult<T> {
    let Some(mut ctx) = pop() else {
        return Err(script_error("this function needs a SIP message (not available in this route)"));
    };
    let out = f(&mut ctx);
    push(ctx);
    Ok(out)
}

/// Like [`with_ctx`], for functions that return an OpenSIPS code: records it as
/// `$retcode`, and a code of 0 ends the script as OpenSIPS does (spec §1.2).
pub fn with_ctx_code(f: impl FnOnce(&mut Ctx) -> i64) -> FnResult<i64> {
    let code = with_ctx(|ctx| {
        let c = f(ctx);
        ctx.retcode = c;
        c
    })?;
    if code == 0 {
        return Err(exit_error());
    }
    Ok(code)
}

pub fn script_error(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE))
}

pub fn exit_error() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(Dynamic::from(EXIT), Position::NONE))
}
pub fn drop_error() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(Dynamic::from(DROP), Position::NONE))
}

/// Reads a Rhai value as text: strings as they are, numbers printed.
pub fn as_text(v: &Dynamic) -> String {
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return s.to_string();
    }
    if v.is_unit() {
        return String::new();
    }
    v.to_string()
}

/// Reads a Rhai value as an integer (OpenSIPS accepts `"10"` where 3.x wants `10`).
pub fn as_int(v: &Dynamic) -> Option<i64> {
    if let Ok(i) = v.as_int() {
        return Some(i);
    }
    v.read_lock::<rhai::ImmutableString>().and_then(|s| s.trim().parse().ok())
}
