//! Rhai bindings of maxfwd.

use super::{process, MfAction};
use crate::config::MaxfwdConfig;
use crate::message::HeaderName;
use crate::script::api::{as_int, with_ctx_code};
use rhai::{Dynamic, Engine};

pub fn register(engine: &mut Engine, cfg: &MaxfwdConfig) {
    let limit = cfg.max_limit.clamp(1, 256);
    engine.register_fn("mf_process_maxfwd_header", move |max: Dynamic| {
        let max = as_int(&max).unwrap_or(70).clamp(0, 256) as u32;
        with_ctx_code(|ctx| match process(ctx.msg.max_forwards(), max, limit) {
            MfAction::Insert(v) => {
                let at = ctx.msg.headers().first().map(|h| h.line.start as usize).unwrap_or(ctx.msg.headers_end());
                ctx.edits.insert(at, format!("Max-Forwards: {v}\r\n"));
                2
            }
            MfAction::Set(v) => {
                if let Some(h) = ctx.msg.first(&HeaderName::MaxForwards) {
                    let span = h.value;
                    ctx.edits.replace(span, v.to_string());
                }
                1
            }
            MfAction::Zero => -1,
            MfAction::Bad => -2,
        })
    });
    engine.register_fn("is_maxfwd_lt", |n: Dynamic| {
        let n = as_int(&n).unwrap_or(0);
        with_ctx_code(|ctx| match ctx.msg.max_forwards() {
            None => -2,
            Some(Err(())) => -3,
            Some(Ok(v)) if (v as i64) < n => 1,
            Some(Ok(_)) => -1,
        })
    });
}
