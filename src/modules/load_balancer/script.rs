//! Rhai bindings of load_balancer (docs/load_balancer.md). Functions that scripts switch on
//! return OpenSIPS's codes through `with_ctx_code` (`$retcode`); predicates return bool.

use super::{Chosen, Flags, LbError, LoadBalancer};
use crate::dialog::Dialogs;
use crate::modules::dialog::create_for;
use crate::script::api::{as_int, as_text, with_ctx, with_ctx_code, Ctx, FnResult};
use rhai::{Dynamic, Engine};
use std::sync::Arc;

/// `"pstn;transc"` → `["pstn", "transc"]`.
fn resource_list(text: &str) -> Vec<String> {
    text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The group, the resources and the flags as the script wrote them (strings or integers).
fn parse_args(fname: &str, grp: &Dynamic, res: &Dynamic, flags: &Dynamic) -> Result<(i64, Vec<String>, Flags), ()> {
    let Some(group) = as_int(grp) else {
        tracing::error!(target: "script", "{fname}: the group must be an integer, got {:?}", as_text(grp));
        return Err(());
    };
    let resources = resource_list(&as_text(res));
    if resources.is_empty() {
        tracing::error!(target: "script", "{fname}: no resource named");
        return Err(());
    }
    match Flags::parse(&as_text(flags)) {
        Ok(f) => Ok((group, resources, f)),
        Err(c) => {
            tracing::error!(target: "script", "{fname}: unknown flag {c:?} (r, n, s; or 0/1 as the 1.x algorithm)");
            Err(())
        }
    }
}

/// The outcome of a selection written into the context: `$du` (the R-URI stays).
fn apply(fname: &str, ctx: &mut Ctx, result: Result<Chosen, LbError>) -> i64 {
    match result {
        Ok(c) => {
            ctx.du = Some(c.uri);
            1
        }
        Err(e) => {
            match &e {
                LbError::Internal(_) | LbError::UnknownResource(_) => tracing::error!(target: "script", "{fname}: {e}"),
                _ => tracing::debug!(target: "script", "{fname}: {e}"),
            }
            e.code()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Start,
    StartOrNext,
}

fn start(lb: &LoadBalancer, dialogs: &Dialogs, fname: &'static str, mode: Mode, a: [&Dynamic; 3]) -> FnResult<i64> {
    let parsed = parse_args(fname, a[0], a[1], a[2]);
    with_ctx_code(|ctx| {
        let Ok((group, resources, flags)) = parsed else { return -1 };
        if mode == Mode::StartOrNext {
            if let Some(dlg) = ctx.dlg.clone().filter(|d| LoadBalancer::session_of(d).is_some()) {
                return apply(fname, ctx, lb.next(&dlg));
            }
        }
        let dlg = match create_for(dialogs, ctx, "") {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: "script", "{fname}: no dialog to count the call in: {e}");
                return -1;
            }
        };
        apply(fname, ctx, lb.start(&dlg, group, resources, flags))
    })
}

fn next(lb: &LoadBalancer) -> FnResult<i64> {
    with_ctx_code(|ctx| match ctx.dlg.clone() {
        Some(dlg) => apply("lb_next", ctx, lb.next(&dlg)),
        None => {
            tracing::error!(target: "script", "lb_next: the message has no dialog (lb_start first)");
            -1
        }
    })
}

fn disable(lb: &LoadBalancer, fname: &str) -> FnResult<i64> {
    with_ctx_code(|ctx| {
        let Some(dlg) = ctx.dlg.clone() else { return -1 };
        match lb.disable_last(&dlg) {
            Ok(_) => 1,
            Err(e) => {
                tracing::error!(target: "script", "{fname}: {e}");
                -1
            }
        }
    })
}

fn port_of(v: &Dynamic) -> u16 {
    as_int(v).and_then(|p| u16::try_from(p).ok()).unwrap_or(0)
}

fn truthy(v: &Dynamic) -> bool {
    v.as_bool().unwrap_or_else(|_| as_int(v).unwrap_or(0) != 0)
}

fn is_destination(lb: &LoadBalancer, ip: &Dynamic, port: &Dynamic, grp: Option<&Dynamic>, active: Option<&Dynamic>) -> bool {
    let group = grp.and_then(as_int).filter(|&g| g >= 0);
    lb.find(&as_text(ip), port_of(port), group, active.is_some_and(truthy)).is_some()
}

struct CountArgs<'a> {
    ip: &'a Dynamic,
    port: &'a Dynamic,
    grp: &'a Dynamic,
    res: &'a Dynamic,
    undo: bool,
}

fn count_call(lb: &LoadBalancer, dialogs: &Dialogs, a: CountArgs<'_>) -> FnResult<i64> {
    let (ip, port, group, resources) = (as_text(a.ip), port_of(a.port), as_int(a.grp), resource_list(&as_text(a.res)));
    with_ctx_code(|ctx| {
        let Some(dst) = lb.find(&ip, port, group.filter(|&g| g >= 0), false) else {
            tracing::debug!(target: "script", "lb_count_call: {ip}:{port} is no destination of group {group:?}");
            return -1;
        };
        let dlg = if a.undo {
            match ctx.dlg.clone() {
                Some(d) => d,
                None => return -1,
            }
        } else {
            match create_for(dialogs, ctx, "") {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(target: "script", "lb_count_call: no dialog to count the call in: {e}");
                    return -1;
                }
            }
        };
        match lb.count_call(&dlg, dst.id, &resources, a.undo) {
            Ok(()) => 1,
            Err(e) => {
                tracing::error!(target: "script", "lb_count_call: {e}");
                e.code()
            }
        }
    })
}

/// Registers the load_balancer functions, bound to `lb` and the dialog table it counts in.
pub fn register(engine: &mut Engine, lb: &Arc<LoadBalancer>, dialogs: &Arc<Dialogs>) {
    let none = Dynamic::from(String::new());
    for (name, mode) in
        [("lb_start", Mode::Start), ("lb_start_or_next", Mode::StartOrNext), ("load_balance", Mode::StartOrNext)]
    {
        let (l, d, n) = (lb.clone(), dialogs.clone(), none.clone());
        engine.register_fn(name, move |grp: Dynamic, res: Dynamic| start(&l, &d, name, mode, [&grp, &res, &n]));
        let (l, d) = (lb.clone(), dialogs.clone());
        engine.register_fn(name, move |grp: Dynamic, res: Dynamic, flags: Dynamic| {
            start(&l, &d, name, mode, [&grp, &res, &flags])
        });
    }
    let l = lb.clone();
    engine.register_fn("lb_next", move || next(&l));
    let l = lb.clone();
    engine.register_fn("lb_reset", move || -> FnResult<i64> {
        with_ctx_code(|ctx| match ctx.dlg.clone() {
            Some(dlg) if l.reset(&dlg) => 1,
            _ => -1,
        })
    });
    engine.register_fn("lb_is_started", || -> FnResult<bool> {
        with_ctx(|ctx| ctx.dlg.as_ref().is_some_and(|d| LoadBalancer::session_of(d).is_some()))
    });
    for name in ["lb_disable_dst", "lb_disable"] {
        let l = lb.clone();
        engine.register_fn(name, move || disable(&l, name));
    }

    let l = lb.clone();
    engine.register_fn("lb_is_destination", move |ip: Dynamic, port: Dynamic| is_destination(&l, &ip, &port, None, None));
    let l = lb.clone();
    engine.register_fn("lb_is_destination", move |ip: Dynamic, port: Dynamic, grp: Dynamic| {
        is_destination(&l, &ip, &port, Some(&grp), None)
    });
    let l = lb.clone();
    engine.register_fn("lb_is_destination", move |ip: Dynamic, port: Dynamic, grp: Dynamic, active: Dynamic| {
        is_destination(&l, &ip, &port, Some(&grp), Some(&active))
    });

    let (l, d) = (lb.clone(), dialogs.clone());
    engine.register_fn("lb_count_call", move |ip: Dynamic, port: Dynamic, grp: Dynamic, res: Dynamic| {
        count_call(&l, &d, CountArgs { ip: &ip, port: &port, grp: &grp, res: &res, undo: false })
    });
    let (l, d) = (lb.clone(), dialogs.clone());
    engine.register_fn(
        "lb_count_call",
        move |ip: Dynamic, port: Dynamic, grp: Dynamic, res: Dynamic, undo: Dynamic| {
            count_call(&l, &d, CountArgs { ip: &ip, port: &port, grp: &grp, res: &res, undo: truthy(&undo) })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        assert_eq!(resource_list(" pstn ; transc;"), ["pstn", "transc"]);
        let (g, r, f) = parse_args("t", &Dynamic::from("1"), &Dynamic::from("pstn"), &Dynamic::from("1")).unwrap();
        assert_eq!((g, r, f.relative), (1, vec!["pstn".to_string()], true));
        let (g, _, f) = parse_args("t", &Dynamic::from(2_i64), &Dynamic::from("pstn"), &Dynamic::from(0_i64)).unwrap();
        assert_eq!((g, f), (2, Flags::default()));
        assert!(parse_args("t", &Dynamic::from("x"), &Dynamic::from("pstn"), &Dynamic::from("")).is_err());
        assert!(parse_args("t", &Dynamic::from(1_i64), &Dynamic::from(" ; "), &Dynamic::from("")).is_err());
        assert!(parse_args("t", &Dynamic::from(1_i64), &Dynamic::from("pstn"), &Dynamic::from("q")).is_err());
    }
}
