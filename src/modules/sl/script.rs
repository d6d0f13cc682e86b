//! Rhai bindings of sl / signaling.

use crate::script::api::{as_int, as_text, with_ctx_code};
use rhai::{Dynamic, Engine};

fn code_of(v: &Dynamic) -> u16 {
    as_int(v).filter(|c| (100..=699).contains(c)).unwrap_or(500) as u16
}

pub fn register(engine: &mut Engine) {
    engine.register_fn("sl_send_reply", |code: Dynamic, reason: Dynamic| {
        let (code, reason) = (code_of(&code), as_text(&reason));
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.sl_send_reply(ctx, code, &reason)
        })
    });
    engine.register_fn("send_reply", |code: Dynamic, reason: Dynamic| {
        let (code, reason) = (code_of(&code), as_text(&reason));
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            core.send_reply(ctx, code, &reason)
        })
    });
    // Header lines for the replies this script sends (OpenSIPS sipmsgops append_to_reply).
    engine.register_fn("append_to_reply", |txt: &str| {
        let mut line = crate::script::api::core_fns::expand(txt);
        if !line.ends_with('\n') {
            line.push_str("\r\n");
        }
        with_ctx_code(move |ctx| {
            ctx.reply_headers.push_str(&line);
            1
        })
    });
    engine.register_fn("sl_reply_error", || {
        with_ctx_code(|ctx| {
            let (code, reason) = match &ctx.last_error {
                Some(e) => (e.code, e.reason.clone()),
                None => (500, "Server Internal Error".to_string()),
            };
            let core = ctx.core.clone();
            core.sl_send_reply(ctx, code, &reason)
        })
    });
}
