//! Rhai bindings of rr.

use super::{is_downstream, loose_route, remove_values};
use crate::config::RrConfig;
use crate::dialog::Dialogs;
use crate::message::HeaderName;
use crate::script::api::{script_error, with_ctx, with_ctx_code, FnResult, RrRequest};
use rhai::Engine;
use std::sync::Arc;

fn normalise_params(p: &str) -> String {
    let p = p.trim();
    if p.is_empty() || p.starts_with(';') {
        p.to_string()
    } else {
        format!(";{p}")
    }
}

/// `dialogs`: the table `loose_route` matches in-dialog requests in (spec §10: sequential
/// requests are matched there, by the `did` of our Route entry or by Call-ID and tags).
pub fn register(engine: &mut Engine, _cfg: &RrConfig, dialogs: &Arc<Dialogs>) {
    let dialogs = dialogs.clone();
    engine.register_fn("record_route", || {
        with_ctx_code(|ctx| {
            let params = std::mem::take(&mut ctx.rr_params);
            ctx.rr = Some(RrRequest { preset: None, params });
            1
        })
    });
    engine.register_fn("record_route", |params: &str| {
        let extra = normalise_params(params);
        with_ctx_code(move |ctx| {
            let mut params = std::mem::take(&mut ctx.rr_params);
            params.push_str(&extra);
            ctx.rr = Some(RrRequest { preset: None, params });
            1
        })
    });
    engine.register_fn("record_route_preset", |uri: &str| {
        let uri = crate::script::api::core_fns::expand(uri);
        with_ctx_code(move |ctx| {
            let params = std::mem::take(&mut ctx.rr_params);
            ctx.rr = Some(RrRequest { preset: Some((uri, None)), params });
            1
        })
    });
    engine.register_fn("record_route_preset", |uri: &str, uri2: &str| {
        let (uri, uri2) = (crate::script::api::core_fns::expand(uri), crate::script::api::core_fns::expand(uri2));
        with_ctx_code(move |ctx| {
            let params = std::mem::take(&mut ctx.rr_params);
            ctx.rr = Some(RrRequest { preset: Some((uri, Some(uri2))), params });
            1
        })
    });
    engine.register_fn("add_rr_param", |p: &str| {
        let p = normalise_params(p);
        with_ctx_code(move |ctx| {
            match ctx.rr.as_mut() {
                Some(rr) => rr.params.push_str(&p),
                None => ctx.rr_params.push_str(&p),
            }
            1
        })
    });
    engine.register_fn("loose_route", move || {
        with_ctx_code(|ctx| {
            let core = ctx.core.clone();
            let ruri = ctx.ruri().to_string();
            let r = loose_route(&ctx.msg, &ruri, &|h, p| core.is_myself(h, p));
            if !r.remove.is_empty() {
                remove_values(&ctx.msg, &mut ctx.edits, HeaderName::Route, &r.remove);
            }
            if let Some(route) = &r.append_route {
                let at = ctx
                    .msg
                    .headers_named(&HeaderName::Route)
                    .last()
                    .map(|h| h.line.end as usize)
                    .unwrap_or(ctx.msg.headers_end());
                ctx.edits.insert(at, format!("Route: <{route}>\r\n"));
            }
            if let Some(u) = r.new_ruri {
                ctx.new_ruri = Some(u);
            }
            if let Some(du) = r.du {
                ctx.du = Some(du);
            }
            if let Some((proto, host, port)) = r.send_socket {
                let spec = format!("{proto}:{host}:{port}");
                if core.has_socket(&spec) {
                    ctx.send_socket = Some(spec);
                }
            } else if r.same_socket && r.code == 1 {
                let spec = format!("{}:{}", ctx.proto, ctx.local);
                ctx.send_socket = Some(spec);
            }
            ctx.route_params = r.our_params;
            crate::modules::dialog::match_request(&dialogs, ctx);
            r.code
        })
    });
    engine.register_fn("check_route_param", |re: &str| -> FnResult<bool> {
        let re = regex::Regex::new(re).map_err(|e| script_error(format!("check_route_param: {e}")))?;
        with_ctx(|ctx| re.is_match(&ctx.route_params))
    });
    engine.register_fn("is_direction", |dir: &str| -> FnResult<bool> {
        let down = dir.eq_ignore_ascii_case("downstream");
        with_ctx(|ctx| is_downstream(&ctx.msg, &ctx.route_params) == down)
    });
}
