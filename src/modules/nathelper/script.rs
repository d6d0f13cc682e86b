//! Rhai bindings of nathelper (spec §9). Arguments a script got wrong (an unknown test name,
//! an address that is not one) are script errors; a message with nothing to fix answers -1.

use super::{
    add_path, add_rcv_param, fix_contact, fix_sdp, nat_uac_test, received_uri, NatError, SdpFlags, SdpOptions, Tests,
};
use crate::config::NathelperConfig;
use crate::script::api::{as_int, as_text, script_error, with_ctx, with_ctx_code, FnResult};
use rhai::{Dynamic, Engine};
use std::net::IpAddr;
use std::sync::Arc;

/// The AVP name of a `received_avp` written either way: `rcv` or `$avp(rcv)`.
fn avp_name(spec: &str) -> String {
    let s = spec.trim();
    s.strip_prefix("$avp(").and_then(|r| r.strip_suffix(')')).unwrap_or(s).to_string()
}

/// A mask given as an integer or as text (names, or a number written as a string).
fn flags_of<T>(
    fname: &str,
    v: &Dynamic,
    from_mask: fn(i64) -> Result<T, NatError>,
    parse: fn(&str) -> Result<T, NatError>,
) -> FnResult<T> {
    let r = match v.as_int() {
        Ok(i) => from_mask(i),
        Err(_) => parse(&as_text(v)),
    };
    r.map_err(|e| script_error(format!("{fname}: {e}")))
}

fn code(r: Result<impl Sized, NatError>) -> i64 {
    if r.is_ok() {
        1
    } else {
        -1
    }
}

fn fix_nated_contact(params: String) -> FnResult<i64> {
    with_ctx_code(move |ctx| {
        let src = ctx.src;
        code(fix_contact(&ctx.msg, &mut ctx.edits, src, &params))
    })
}

fn add_rcv(as_uri_param: bool) -> FnResult<i64> {
    with_ctx_code(move |ctx| {
        let (src, proto) = (ctx.src, ctx.proto);
        code(add_rcv_param(&ctx.msg, &mut ctx.edits, src, proto, as_uri_param))
    })
}

fn sdp(flags: SdpFlags, ip: Option<IpAddr>, opts: &SdpOptions) -> FnResult<i64> {
    with_ctx_code(|ctx| {
        let ip = ip.unwrap_or(ctx.src.ip());
        code(fix_sdp(&ctx.msg, &mut ctx.edits, flags, ip, opts))
    })
}

fn path(user: Option<String>, received: bool) -> FnResult<i64> {
    with_ctx_code(move |ctx| {
        let (local, src, proto) = (ctx.local, ctx.src, ctx.proto);
        code(add_path(&ctx.msg, &mut ctx.edits, local, src, proto, user.as_deref(), received))
    })
}

pub fn register(engine: &mut Engine, cfg: &NathelperConfig) {
    engine.register_fn("nat_uac_test", |tests: Dynamic| -> FnResult<bool> {
        let tests = flags_of("nat_uac_test", &tests, Tests::from_mask, Tests::parse)?;
        with_ctx(|ctx| nat_uac_test(&ctx.msg, ctx.src, tests))
    });

    engine.register_fn("fix_nated_contact", || fix_nated_contact(String::new()));
    engine.register_fn("fix_nated_contact", |params: &str| fix_nated_contact(params.to_string()));

    let rcv_avp = avp_name(&cfg.received_avp);
    engine.register_fn("fix_nated_register", move || -> FnResult<i64> {
        let name = rcv_avp.clone();
        with_ctx_code(move |ctx| {
            if !ctx.msg.is_request() || !ctx.msg.method().matches("REGISTER") {
                return -1;
            }
            let uri = received_uri(ctx.src, ctx.proto);
            ctx.avps.push(&name, Dynamic::from(uri));
            1
        })
    });

    engine.register_fn("add_rcv_param", || add_rcv(false));
    engine.register_fn("add_rcv_param", |flag: Dynamic| add_rcv(as_int(&flag).unwrap_or(0) != 0));

    let opts = Arc::new(SdpOptions { oldip_skip: cfg.oldip_skip, nortpproxy: cfg.nortpproxy_str.clone() });
    let o = opts.clone();
    engine.register_fn("fix_nated_sdp", move |flags: Dynamic| -> FnResult<i64> {
        let flags = flags_of("fix_nated_sdp", &flags, SdpFlags::from_mask, SdpFlags::parse)?;
        sdp(flags, None, &o)
    });
    engine.register_fn("fix_nated_sdp", move |flags: Dynamic, ip: &str| -> FnResult<i64> {
        let flags = flags_of("fix_nated_sdp", &flags, SdpFlags::from_mask, SdpFlags::parse)?;
        let ip = match ip.trim() {
            "" => None,
            t => Some(
                t.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| script_error(format!("fix_nated_sdp: {}", NatError::BadIp(t.to_string()))))?,
            ),
        };
        sdp(flags, ip, &opts)
    });

    engine.register_fn("add_path", || path(None, false));
    engine.register_fn("add_path", |user: &str| path(Some(user.to_string()), false));
    engine.register_fn("add_path_received", || path(None, true));
    engine.register_fn("add_path_received", |user: &str| path(Some(user.to_string()), true));
}

#[cfg(test)]
mod tests {
    use super::avp_name;

    #[test]
    fn avp_names() {
        assert_eq!(avp_name("rcv"), "rcv");
        assert_eq!(avp_name("$avp(rcv)"), "rcv");
        assert_eq!(avp_name(" $avp(x) "), "x");
    }
}
