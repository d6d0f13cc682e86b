//! Rhai bindings of tm.

use crate::script::api::{as_int, as_text, script_error, with_ctx, with_ctx_code, FnResult};
use rhai::{Dynamic, Engine};

fn arm(slot: fn(&mut crate::script::api::Ctx) -> &mut Option<String>, name: &str) -> FnResult<i64> {
    let name = name.to_string();
    with_ctx_code(move |ctx| {
        *slot(ctx) = if name.is_empty() { None } else { Some(name) };
        1
    })
}

fn relay(flags: &str, proxy: Option<&str>) -> FnResult<i64> {
    with_ctx_code(|ctx| {
        let core = ctx.core.clone();
        core.t_relay(ctx, flags, proxy)
    })
}

pub fn register(engine: &mut Engine) {
    engine.register_fn("t_relay", || relay("", None));
    engine.register_fn("t_relay", |flags: &str| relay(flags, None));
    engine.register_fn("t_relay", |flags: &str, proxy: &str| relay(flags, Some(proxy)));
    engine.register_fn("t_newtran", || {
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.t_newtran(ctx)
        })
    });
    engine.register_fn("t_check_trans", || {
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.t_check_trans(ctx)
        })
    });
    engine.register_fn("t_reply", |code: Dynamic, reason: Dynamic| {
        let code = as_int(&code).filter(|c| (100..=699).contains(c)).unwrap_or(500) as u16;
        let reason = as_text(&reason);
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.t_reply(ctx, code, &reason)
        })
    });
    engine.register_fn("t_on_failure", |name: &str| arm(|c| &mut c.on_failure, name));
    engine.register_fn("t_on_reply", |name: &str| arm(|c| &mut c.on_reply, name));
    engine.register_fn("t_on_branch", |name: &str| arm(|c| &mut c.on_branch, name));
    // Unanchored POSIX-style match against the reply code in scope (spec §4.4).
    engine.register_fn("t_check_status", |re: &str| -> FnResult<bool> {
        let re = regex::Regex::new(re).map_err(|e| script_error(format!("t_check_status: {e}")))?;
        with_ctx(|ctx| {
            let code = match ctx.reply.as_ref().and_then(|r| r.status()).unwrap_or(ctx.reply_code) {
                0 => ctx.core.t_last_code(ctx),
                c => c,
            };
            code != 0 && re.is_match(&code.to_string())
        })
    });
    engine.register_fn("t_was_cancelled", || -> FnResult<bool> { with_ctx(|ctx| ctx.core.t_was_cancelled(ctx)) });
    engine.register_fn("forward", || {
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.forward(ctx, None)
        })
    });
    engine.register_fn("forward", |dest: &str| {
        let dest = dest.to_string();
        with_ctx_code(move |ctx| {
            let core = ctx.core.clone();
            core.forward(ctx, Some(&dest))
        })
    });
}
