//! Rhai bindings of dispatcher (docs/script-api.md §4.13).

use super::{Chosen, Dispatcher, DsState, Flags, SelectInput, Selected};
use crate::message::{HeaderName, Uri};
use crate::script::api::{as_int, as_text, core_fns, pv, with_ctx, with_ctx_code, Ctx, FnResult};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, NativeCallContext};
use std::sync::Arc;

/// Only the default partition exists.
fn partition_ok(fname: &str, p: &str) -> bool {
    let ok = p.is_empty() || p == "default";
    if !ok {
        tracing::error!(target: "script", "{fname}: partition {p:?} does not exist (only \"default\")");
    }
    ok
}

/// Records `code` as the primitive's result (outside a message it is just returned).
fn code(c: i64) -> FnResult<i64> {
    with_ctx_code(|_| c).or(Ok(c))
}

/// `username="…"` of a Digest credentials header value.
fn digest_username(v: &str) -> Option<&str> {
    let rest = v.trim_start();
    let rest = rest.get(..6).filter(|s| s.eq_ignore_ascii_case("digest")).map(|_| &rest[6..]).unwrap_or(rest);
    rest.split(',').find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("username").then(|| val.trim().trim_matches('"'))
    })
}

/// `$var(x)` / `$avp(x)` → (`var`|`avp`, `x`).
fn pv_ref(spec: &str) -> Option<(&'static str, String)> {
    let s = spec.trim();
    let (kind, rest) = if let Some(r) = s.strip_prefix("$var(") {
        ("var", r)
    } else if let Some(r) = s.strip_prefix("$avp(") {
        ("avp", r)
    } else {
        return None;
    };
    let name = rest.strip_suffix(')')?.trim().trim_matches('"');
    (!name.is_empty()).then(|| (kind, name.to_string()))
}

/// The R-URI with its host and port replaced by `hostport`.
fn with_hostport(ruri: &str, hostport: &str) -> Option<String> {
    let no_port = Uri::parse(ruri)?.with_port(None);
    Some(Uri::parse(&no_port)?.with_host(hostport))
}

/// Sends the request to `dst`: `$du`, or the R-URI's host and port with `domain`; `$fs`
/// when the destination names a socket of ours.
fn apply_target(ctx: &mut Ctx, uri: &str, hostport: &str, socket: Option<&str>, domain: bool) -> bool {
    if domain {
        match with_hostport(ctx.ruri(), hostport) {
            Some(u) => ctx.new_ruri = Some(u),
            None => {
                tracing::error!(target: "script", "ds_select_domain: cannot rewrite R-URI {:?}", ctx.ruri());
                return false;
            }
        }
    } else {
        ctx.du = Some(uri.to_string());
    }
    // Each destination brings its own socket, or none: a previous pick's must not stay. A
    // socket that is not ours changes nothing (it is warned about once).
    match socket.filter(|s| !s.is_empty()) {
        None => ctx.send_socket = None,
        Some(s) if ctx.core.has_socket(s) => ctx.send_socket = Some(s.to_string()),
        Some(_) => {}
    }
    true
}

fn warn_socket(c: &Chosen, ctx: &Ctx) {
    if let Some(s) = &c.socket {
        if !ctx.core.has_socket(s) && c.first_bad_socket() {
            tracing::warn!(uri = %c.uri, socket = %s, "dispatcher: the destination's socket is not one of ours; ignored");
        }
    }
}

/// Writes a selection into the context: target, `$fs`, AVPs (spec §6.2, §6.3).
fn apply_selection(ds: &Dispatcher, ctx: &mut Ctx, sel: Selected, flags: Flags, domain: bool) -> i64 {
    let p = ds.params();
    warn_socket(&sel.dst, ctx);
    if !apply_target(ctx, &sel.dst.uri, &sel.dst.hostport, sel.dst.socket.as_deref(), domain) {
        return -1;
    }
    let avps = &mut ctx.avps;
    let mut cnt = 0i64;
    if flags.failover {
        if !flags.append {
            for name in [&p.dst_avp, &p.grp_avp, &p.cnt_avp, &p.sock_avp].into_iter().chain(p.attrs_avp.as_ref()) {
                avps.list.retain(|(n, _)| n != name);
            }
        }
        // AVPs are a stack: push the list backwards so the selected one ends on top.
        for c in sel.failover.iter().rev() {
            avps.push(&p.sock_avp, Dynamic::from(c.socket.clone().unwrap_or_default()));
            avps.push(&p.dst_avp, Dynamic::from(c.uri.clone()));
            if let Some(a) = &p.attrs_avp {
                avps.push(a, Dynamic::from(c.attrs.clone().unwrap_or_default()));
            }
            cnt += 1;
        }
        avps.push(&p.dst_avp, Dynamic::from(sel.dst.uri.clone()));
        cnt += 1;
    }
    if let Some(a) = &p.attrs_avp {
        avps.push(a, Dynamic::from(sel.dst.attrs.clone().unwrap_or_default()));
    }
    avps.push(&p.grp_avp, Dynamic::from(sel.setid));
    avps.push(&p.cnt_avp, Dynamic::from(cnt));
    1
}

/// Ranks for algorithms 9 and 10, read before the selection (they run script code).
fn ranks(
    ds: &Dispatcher,
    call: &NativeCallContext,
    setid: i64,
    alg: i64,
) -> FnResult<Result<Option<Vec<Option<i64>>>, ()>> {
    let p = ds.params();
    let Some(dests) = ds.set_uris(setid) else { return Ok(Ok(None)) };
    if alg == 9 {
        let Some(pattern) = &p.pvar_algo_pattern else { return Ok(Ok(None)) };
        let loads = dests
            .iter()
            .map(|(uri, _)| {
                let text = core_fns::expand(&pattern.replace("%u", uri).replace("%i", &setid.to_string()));
                text.trim().parse::<i64>().ok()
            })
            .collect();
        return Ok(Ok(Some(loads)));
    }
    let Some(route) = &p.algo_route else { return Ok(Ok(None)) };
    let name = if route.starts_with("route_") { route.clone() } else { format!("route_{route}") };
    let mut out = Vec::with_capacity(dests.len());
    for (uri, attrs) in dests {
        match call.call_fn::<Dynamic>(&name, (uri, attrs.unwrap_or_default(), String::new())) {
            Ok(v) => out.push(as_int(&v)),
            Err(e) if matches!(*e, EvalAltResult::ErrorTerminated(..)) => return Err(e),
            Err(e) => {
                tracing::error!(target: "script", "ds_select_dst: algo_route {name}(): {e}");
                return Ok(Err(()));
            }
        }
    }
    Ok(Ok(Some(out)))
}

struct SelectArgs<'a> {
    set: &'a Dynamic,
    alg: &'a Dynamic,
    flags: &'a str,
    partition: &'a str,
    max_results: Option<&'a Dynamic>,
    domain: bool,
}

/// A selection that failed before reaching the sets: counted, -1.
fn select_failed(ds: &Dispatcher) -> FnResult<i64> {
    ds.stats.select_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    code(-1)
}

fn select(ds: &Dispatcher, call: &NativeCallContext, a: SelectArgs<'_>) -> FnResult<i64> {
    let fname = if a.domain { "ds_select_domain" } else { "ds_select_dst" };
    if !partition_ok(fname, a.partition) {
        return select_failed(ds);
    }
    let (Some(setid), Some(alg)) = (as_int(a.set), as_int(a.alg)) else {
        tracing::error!(target: "script", "{fname}: set and algorithm must be integers, got {:?} and {:?}", as_text(a.set), as_text(a.alg));
        return select_failed(ds);
    };
    let flags = Flags::parse(a.flags);
    let max_results = a.max_results.and_then(as_int).filter(|&m| m > 0).map(|m| m as usize);
    let p = ds.params();
    if (alg == 7 && p.hash_pvar.is_none()) || (alg == 10 && p.algo_route.is_none()) {
        let param = if alg == 7 { "hash_pvar" } else { "algo_route" };
        tracing::error!(target: "script", "{fname}: algorithm {alg} needs [dispatcher] {param}");
    }
    let pvar = if alg == 7 { p.hash_pvar.as_deref().map(core_fns::expand) } else { None };
    let ranks = if alg == 9 || alg == 10 {
        match ranks(ds, call, setid, alg)? {
            Ok(r) => r,
            Err(()) => return select_failed(ds),
        }
    } else {
        None
    };
    with_ctx_code(|ctx| {
        let result = {
            // Only what the algorithm hashes is read from the message.
            let m = &ctx.msg;
            let mut input = SelectInput { pvar: pvar.as_deref(), ranks: ranks.as_deref(), ..Default::default() };
            match alg {
                0 => input.call_id = Some(m.call_id()).filter(|c| !c.is_empty()),
                1 => input.from_uri = m.from().map(|f| f.uri),
                2 => input.to_uri = m.to().map(|t| t.uri),
                3 => input.ruri = Some(ctx.ruri()).filter(|r| !r.is_empty()),
                5 => {
                    input.auth_user = m
                        .value(&HeaderName::ProxyAuthorization)
                        .and_then(digest_username)
                        .or_else(|| m.value(&HeaderName::Authorization).and_then(digest_username))
                }
                _ => {}
            }
            ds.select(setid, alg, &input, flags, max_results)
        };
        match result {
            Ok(sel) => apply_selection(ds, ctx, sel, flags, a.domain),
            Err(reason) => {
                tracing::debug!(target: "script", "{fname}({setid}, {alg}): {reason}");
                -1
            }
        }
    })
}

fn next(ds: &Dispatcher, partition: &str, domain: bool) -> FnResult<i64> {
    let fname = if domain { "ds_next_domain" } else { "ds_next_dst" };
    if !partition_ok(fname, partition) {
        return code(-1);
    }
    with_ctx_code(|ctx| {
        let p = ds.params();
        if ctx.avps.get(&p.dst_avp).is_none() {
            return -1;
        }
        ctx.avps.pop(&p.dst_avp);
        if let Some(a) = &p.attrs_avp {
            ctx.avps.pop(a);
        }
        let Some(uri) = ctx.avps.get(&p.dst_avp).and_then(|v| v.read_lock::<ImmutableString>().map(|s| s.to_string()))
        else {
            return -1;
        };
        let sock = ctx.avps.get(&p.sock_avp).map(as_text);
        ctx.avps.pop(&p.sock_avp);
        let hostport = Uri::parse(&uri).map(|u| u.hostport().to_string()).unwrap_or_default();
        if apply_target(ctx, &uri, &hostport, sock.as_deref(), domain) {
            1
        } else {
            -1
        }
    })
}

fn mark(ds: &Dispatcher, state: &str, partition: &str) -> FnResult<i64> {
    if !partition_ok("ds_mark_dst", partition) {
        return code(-1);
    }
    let Some(state) = (if state.is_empty() { Some(DsState::Inactive) } else { DsState::from_flag(state) }) else {
        tracing::error!(target: "script", "ds_mark_dst: unknown state {state:?} (a, i or p)");
        return code(-1);
    };
    with_ctx_code(|ctx| {
        let p = ds.params();
        let group = ctx.avps.get(&p.grp_avp).and_then(|v| v.as_int().ok());
        let uri = ctx.avps.get(&p.dst_avp).and_then(|v| v.read_lock::<ImmutableString>().map(|s| s.to_string()));
        match (group, uri) {
            (Some(g), Some(u)) => match ds.mark(g, &u, state) {
                Ok(_) => 1,
                Err(e) => {
                    tracing::debug!(target: "script", "ds_mark_dst: {e}");
                    -1
                }
            },
            _ => -1,
        }
    })
}

fn is_in_list(
    ds: &Dispatcher,
    ip: &Dynamic,
    port: &Dynamic,
    set: Option<&Dynamic>,
    partition: &str,
    active: Option<&Dynamic>,
) -> FnResult<bool> {
    if !partition_ok("ds_is_in_list", partition) {
        return Ok(false);
    }
    let ip = as_text(ip);
    let port = as_int(port).filter(|p| (0..=65535).contains(p)).unwrap_or(0) as u16;
    let set = set.and_then(as_int).filter(|&s| s >= 0);
    let active_only = active.is_some_and(|a| a.as_bool().unwrap_or_else(|_| as_int(a).unwrap_or(0) != 0));
    let Some((setid, attrs)) = ds.is_in_list(&ip, port, set, active_only) else { return Ok(false) };
    let p = ds.params();
    if set.is_none() {
        if let Some((kind, name)) = p.setid_pvar.as_deref().and_then(pv_ref) {
            pv::set(kind, &name, Dynamic::from(setid))?;
        }
    }
    if let Some(a) = &p.attrs_avp {
        let name = a.clone();
        with_ctx(move |ctx| ctx.avps.push(&name, Dynamic::from(attrs.unwrap_or_default())))?;
    }
    Ok(true)
}

fn count_into(ds: &Dispatcher, set: &Dynamic, filter: &str, var: &str, partition: &str) -> FnResult<i64> {
    if !partition_ok("ds_count", partition) {
        return code(-1);
    }
    let Some((kind, name)) = pv_ref(var) else {
        tracing::error!(target: "script", "ds_count: {var:?} is not \"$var(name)\" or \"$avp(name)\"");
        return code(-1);
    };
    match as_int(set).and_then(|s| ds.count(s, filter)) {
        Some(n) => {
            pv::set(kind, &name, Dynamic::from(n as i64))?;
            code(1)
        }
        None => code(-1),
    }
}

/// Registers the dispatcher functions, bound to `ds`.
pub fn register(engine: &mut Engine, ds: &Arc<Dispatcher>) {
    for (name, domain) in [("ds_select_dst", false), ("ds_select_domain", true)] {
        let d = ds.clone();
        engine.register_fn(name, move |c: NativeCallContext, set: Dynamic, alg: Dynamic| {
            select(&d, &c, SelectArgs { set: &set, alg: &alg, flags: "", partition: "", max_results: None, domain })
        });
        let d = ds.clone();
        engine.register_fn(name, move |c: NativeCallContext, set: Dynamic, alg: Dynamic, flags: Dynamic| {
            let flags = as_text(&flags);
            select(&d, &c, SelectArgs { set: &set, alg: &alg, flags: &flags, partition: "", max_results: None, domain })
        });
        let d = ds.clone();
        engine.register_fn(
            name,
            move |c: NativeCallContext, set: Dynamic, alg: Dynamic, flags: Dynamic, part: Dynamic| {
                let (flags, part) = (as_text(&flags), as_text(&part));
                select(
                    &d,
                    &c,
                    SelectArgs { set: &set, alg: &alg, flags: &flags, partition: &part, max_results: None, domain },
                )
            },
        );
        let d = ds.clone();
        engine.register_fn(
            name,
            move |c: NativeCallContext, set: Dynamic, alg: Dynamic, flags: Dynamic, part: Dynamic, max: Dynamic| {
                let (flags, part) = (as_text(&flags), as_text(&part));
                select(
                    &d,
                    &c,
                    SelectArgs {
                        set: &set,
                        alg: &alg,
                        flags: &flags,
                        partition: &part,
                        max_results: Some(&max),
                        domain,
                    },
                )
            },
        );
    }
    for (name, domain) in [("ds_next_dst", false), ("ds_next_domain", true)] {
        let d = ds.clone();
        engine.register_fn(name, move || next(&d, "", domain));
        let d = ds.clone();
        engine.register_fn(name, move |part: &str| next(&d, part, domain));
    }
    let d = ds.clone();
    engine.register_fn("ds_mark_dst", move || mark(&d, "", ""));
    let d = ds.clone();
    engine.register_fn("ds_mark_dst", move |state: Dynamic| mark(&d, &as_text(&state), ""));
    let d = ds.clone();
    engine.register_fn("ds_mark_dst", move |state: Dynamic, part: &str| mark(&d, &as_text(&state), part));

    let d = ds.clone();
    engine.register_fn("ds_is_in_list", move |ip: Dynamic, port: Dynamic| is_in_list(&d, &ip, &port, None, "", None));
    let d = ds.clone();
    engine.register_fn("ds_is_in_list", move |ip: Dynamic, port: Dynamic, set: Dynamic| {
        is_in_list(&d, &ip, &port, Some(&set), "", None)
    });
    let d = ds.clone();
    engine.register_fn("ds_is_in_list", move |ip: Dynamic, port: Dynamic, set: Dynamic, part: &str| {
        is_in_list(&d, &ip, &port, Some(&set), part, None)
    });
    let d = ds.clone();
    engine.register_fn(
        "ds_is_in_list",
        move |ip: Dynamic, port: Dynamic, set: Dynamic, part: &str, active: Dynamic| {
            is_in_list(&d, &ip, &port, Some(&set), part, Some(&active))
        },
    );

    let d = ds.clone();
    engine.register_fn("ds_count", move |set: Dynamic, filter: &str| -> i64 {
        as_int(&set).and_then(|s| d.count(s, filter)).map_or(-1, |n| n as i64)
    });
    let d = ds.clone();
    engine.register_fn("ds_count", move |set: Dynamic, filter: &str, var: &str| count_into(&d, &set, filter, var, ""));
    let d = ds.clone();
    engine.register_fn("ds_count", move |set: Dynamic, filter: &str, var: &str, part: &str| {
        count_into(&d, &set, filter, var, part)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(digest_username(r#"Digest username="alice", realm="x", nonce="n""#), Some("alice"));
        assert_eq!(digest_username(r#"digest realm="x",username=bob"#), Some("bob"));
        assert_eq!(digest_username("Basic abc"), None);
        assert_eq!(pv_ref("$var(n)"), Some(("var", "n".to_string())));
        assert_eq!(pv_ref("$avp(res)"), Some(("avp", "res".to_string())));
        assert_eq!(pv_ref("n"), None);
        assert_eq!(
            with_hostport("sip:bob@example.com:5070;transport=udp", "10.0.0.2").as_deref(),
            Some("sip:bob@10.0.0.2;transport=udp")
        );
        assert_eq!(with_hostport("sip:bob@example.com", "10.0.0.2:5080").as_deref(), Some("sip:bob@10.0.0.2:5080"));
    }
}
