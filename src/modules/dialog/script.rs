//! Rhai bindings of dialog (docs/dialog.md).

use super::{create_for, match_request};
use crate::dialog::Dialogs;
use crate::script::api::{as_text, script_error, with_ctx, with_ctx_code, FnResult};
use rhai::{Dynamic, Engine};
use std::sync::Arc;

/// A profile value as the script wrote it (strings, numbers).
fn value_text(v: &Dynamic) -> String {
    as_text(v)
}

pub fn register(engine: &mut Engine, dialogs: &Arc<Dialogs>) {
    let t = dialogs.clone();
    engine.register_fn("create_dialog", move || create(&t, ""));
    let t = dialogs.clone();
    engine.register_fn("create_dialog", move |f: &str| create(&t, f));

    // `match_dialog()`: 1 when the in-dialog request belongs to a known dialog, -1 not.
    let t = dialogs.clone();
    engine.register_fn("match_dialog", move || {
        with_ctx_code(|ctx| if match_request(&t, ctx).is_some() { 1 } else { -1 })
    });

    let t = dialogs.clone();
    engine.register_fn("set_dlg_profile", move |p: &str| set_profile(&t, p, None));
    let t = dialogs.clone();
    engine.register_fn("set_dlg_profile", move |p: &str, v: Dynamic| set_profile(&t, p, Some(value_text(&v))));
    let t = dialogs.clone();
    engine.register_fn("unset_dlg_profile", move |p: &str| unset_profile(&t, p, None));
    let t = dialogs.clone();
    engine.register_fn("unset_dlg_profile", move |p: &str, v: Dynamic| unset_profile(&t, p, Some(value_text(&v))));
    let t = dialogs.clone();
    engine.register_fn("is_in_profile", move |p: &str| in_profile(&t, p, None));
    let t = dialogs.clone();
    engine.register_fn("is_in_profile", move |p: &str, v: Dynamic| in_profile(&t, p, Some(value_text(&v))));
    // OpenSIPS writes the size into a variable; here it is the function's value.
    let t = dialogs.clone();
    engine.register_fn("get_profile_size", move |p: &str| profile_size(&t, p, None));
    let t = dialogs.clone();
    engine.register_fn("get_profile_size", move |p: &str, v: Dynamic| profile_size(&t, p, Some(value_text(&v))));

    let t = dialogs.clone();
    engine.register_fn("store_dlg_value", move |name: &str, v: Dynamic| -> FnResult<i64> {
        let value = value_text(&v);
        let name = name.to_string();
        let t = t.clone();
        with_ctx_code(move |ctx| match ctx.dlg.as_ref() {
            Some(d) => {
                t.set_value(d, &name, Some(value));
                1
            }
            None => -1,
        })
    });
    engine.register_fn("fetch_dlg_value", |name: &str| -> FnResult<Dynamic> {
        let name = name.to_string();
        with_ctx(move |ctx| ctx.dlg.as_ref().and_then(|d| d.value(&name)).map(Dynamic::from).unwrap_or(Dynamic::UNIT))
    });
    // `is_known_dlg()`: the message belongs to a dialog (created or matched).
    engine.register_fn("is_known_dlg", || -> FnResult<bool> {
        with_ctx(|ctx| ctx.dlg.as_ref().is_some_and(|d| !d.is_ended()))
    });
}

fn create(t: &Dialogs, f: &str) -> FnResult<bool> {
    let f = f.to_string();
    let res = with_ctx(move |ctx| create_for(t, ctx, &f).map(|_| ()))?;
    match res {
        Ok(()) => Ok(true),
        // A bad flag is a script mistake; a non-INVITE is OpenSIPS's false.
        Err(super::CreateError::BadFlag(c)) => Err(script_error(format!("create_dialog: unknown flag {c:?}"))),
        Err(e) => {
            tracing::debug!(target: "script", "{e}");
            Ok(false)
        }
    }
}

fn set_profile(t: &Dialogs, p: &str, v: Option<String>) -> FnResult<i64> {
    let res = with_ctx(|ctx| match ctx.dlg.as_ref() {
        Some(d) => t.set_profile(d, p, v.as_deref()).map(|_| 1),
        None => Ok(-1),
    })?;
    match res {
        Ok(code) => with_ctx_code(|_| code),
        Err(e) => Err(script_error(format!("set_dlg_profile: {e}"))),
    }
}

fn unset_profile(t: &Dialogs, p: &str, v: Option<String>) -> FnResult<i64> {
    with_ctx_code(|ctx| match ctx.dlg.as_ref() {
        Some(d) if t.unset_profile(d, p, v.as_deref()) => 1,
        _ => -1,
    })
}

fn in_profile(t: &Dialogs, p: &str, v: Option<String>) -> FnResult<bool> {
    with_ctx(|ctx| ctx.dlg.as_ref().is_some_and(|d| t.in_profile(d, p, v.as_deref())))
}

fn profile_size(t: &Dialogs, p: &str, v: Option<String>) -> FnResult<i64> {
    if t.profiles.kind(p).is_none() {
        return Err(script_error(format!("get_profile_size: no dialog profile {p:?} is declared")));
    }
    Ok(t.profiles.size(p, v.as_deref()) as i64)
}
