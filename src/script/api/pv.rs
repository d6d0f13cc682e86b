//! Pseudo-variables, spelled as in opensips.cfg: `$ru`, `$du = "sip:…"`, `$var(x)`,
//! `$avp(x)`, `$hdr(Max-Forwards)`. A Rhai custom syntax starting with `$` reads them, and
//! `$name = expr` / `$name(arg) = expr` writes them. Unknown names fail at compile time.

use super::{as_int, as_text, script_error, with_ctx, Ctx, FnResult, RouteKind};
use crate::message::{DigestCredentials, HeaderName, NameAddr, Uri};
use rhai::{Dynamic, Engine, ImmutableString, LexError, ParseError, ParseErrorType, Position};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// `$var(x)`: per worker thread, never reset between messages (spec §1.3).
    static VARS: RefCell<HashMap<String, Dynamic>> = RefCell::new(HashMap::new());
}

/// Every pseudo-variable name; those in `WITH_ARG` take `(name)`.
pub const NAMES: &[&str] = &[
    "ru",
    "rU",
    "rd",
    "rp",
    "ou",
    "du",
    "si",
    "sp",
    "Ri",
    "Rp",
    "pr",
    "proto",
    "fu",
    "fU",
    "fd",
    "fn",
    "ft",
    "tu",
    "tU",
    "td",
    "tn",
    "tt",
    "ci",
    "cs",
    "rm",
    "rs",
    "rr",
    "rb",
    "ct",
    "ua",
    "fs",
    "mf",
    "retcode",
    "T_reply_code",
    "T_branch_idx",
    "var",
    "avp",
    "hdr",
    "param",
    "DLG_status",
    "DLG_count",
    "DLG_lifetime",
    "DLG_timeout",
    "DLG_did",
    "DLG_dir",
    "dlg_val",
    "au",
    "ar",
];
pub const WITH_ARG: &[&str] = &["var", "avp", "hdr", "param", "dlg_val"];
/// Names that are Rhai keywords, taken as the literal symbol after `$`.
const KEYWORD_NAMES: &[&str] = &["var", "fn"];
/// Names that may be assigned.
pub const WRITABLE: &[&str] = &["ru", "rU", "rd", "rp", "du", "fs", "var", "avp", "DLG_timeout", "dlg_val"];

fn perr(msg: String) -> ParseError {
    ParseError(Box::new(ParseErrorType::BadInput(LexError::ImproperSymbol("$".into(), msg))), Position::NONE)
}

/// Registers the `$…` syntax on an engine.
pub fn register(engine: &mut Engine) {
    // Parse state: [name, arg, "=" when assigning]. Symbols arrive one at a time; the
    // look-ahead token decides whether an argument or an assignment follows.
    engine.register_custom_syntax_with_state_raw(
        "$",
        |symbols, look_ahead, state| {
            let n = symbols.len();
            let in_arg = symbols.iter().any(|s| s == "(") && !symbols.iter().any(|s| s == ")");
            if n == 1 {
                // Checked here, while the name is the look-ahead, so the error points at it.
                if !NAMES.contains(&look_ahead) {
                    return Err(perr(format!("unknown pseudo-variable ${look_ahead}")));
                }
                // Reserved words (`var`, `fn`) are accepted as names.
                return Ok(Some(if KEYWORD_NAMES.contains(&look_ahead) {
                    look_ahead.into()
                } else {
                    "$ident$".into()
                }));
            }
            if n == 2 {
                let name = symbols[1].to_string();
                if !NAMES.contains(&name.as_str()) {
                    return Err(perr(format!("unknown pseudo-variable ${name}")));
                }
                *state = Dynamic::from_array(vec![Dynamic::from(name.clone()), Dynamic::from(String::new())]);
                if WITH_ARG.contains(&name.as_str()) {
                    if look_ahead != "(" {
                        return Err(perr(format!("${name} needs a name in parentheses, e.g. ${name}(x)")));
                    }
                    return Ok(Some("(".into()));
                }
                return Ok(assign_next(look_ahead, &name));
            }
            let last = symbols[n - 1].as_str();
            if in_arg {
                if last == "(" || last == "-" || last == "." {
                    if last != "(" {
                        append_arg(state, last);
                    }
                    // An argument token: a name (`Max-Forwards` comes as Max, -, Forwards).
                    return Ok(Some(if look_ahead.starts_with('"') { "$string$".into() } else { "$ident$".into() }));
                }
                append_arg(state, last);
                return Ok(Some(match look_ahead {
                    ")" => ")".into(),
                    "-" => "-".into(),
                    "." => ".".into(),
                    other => return Err(perr(format!("unexpected {other:?} in pseudo-variable argument"))),
                }));
            }
            if last == ")" {
                let name = symbols[1].to_string();
                return Ok(assign_next(look_ahead, &name));
            }
            if last == "=" {
                set_assign(state);
                return Ok(Some("$expr$".into()));
            }
            Ok(None)
        },
        false,
        |ctx, inputs, state| {
            let arr = state.clone().into_array().map_err(|_| script_error("bad pseudo-variable state"))?;
            let name = arr.first().map(as_text).unwrap_or_default();
            let arg = arr.get(1).map(as_text).unwrap_or_default();
            let assign = arr.len() > 2;
            if assign {
                let expr = inputs.last().ok_or_else(|| script_error("missing value"))?;
                let value = ctx.eval_expression_tree(expr)?;
                set(&name, &arg, value)?;
                Ok(Dynamic::UNIT)
            } else {
                get(&name, &arg)
            }
        },
    );
}

fn assign_next(look_ahead: &str, name: &str) -> Option<ImmutableString> {
    (look_ahead == "=" && WRITABLE.contains(&name)).then(|| "=".into())
}

fn append_arg(state: &mut Dynamic, tok: &str) {
    if let Ok(mut arr) = state.clone().into_array() {
        let tok = tok.trim_matches('"');
        let cur = arr.get(1).map(as_text).unwrap_or_default();
        if arr.len() > 1 {
            arr[1] = Dynamic::from(format!("{cur}{tok}"));
        }
        *state = Dynamic::from_array(arr);
    }
}

fn set_assign(state: &mut Dynamic) {
    if let Ok(mut arr) = state.clone().into_array() {
        arr.push(Dynamic::from("="));
        *state = Dynamic::from_array(arr);
    }
}

fn s(v: &str) -> Dynamic {
    Dynamic::from(v.to_string())
}

fn uri_part(ctx: &Ctx, part: &str) -> Dynamic {
    let ruri = ctx.ruri().to_string();
    let Some(u) = Uri::parse(&ruri) else { return s("") };
    match part {
        "user" => s(u.user()),
        "host" => s(u.host()),
        _ => s(u.port_text()),
    }
}

fn addr_part(na: Option<NameAddr<'_>>, part: &str) -> Dynamic {
    let Some(na) = na else { return Dynamic::UNIT };
    match part {
        "uri" => s(na.uri),
        "user" => s(Uri::parse(na.uri).map(|u| u.user()).unwrap_or("")),
        "host" => s(Uri::parse(na.uri).map(|u| u.host()).unwrap_or("")),
        "display" => s(na.display),
        _ => na.tag().map(s).unwrap_or(Dynamic::UNIT),
    }
}

/// Reads a pseudo-variable of the current message.
///
/// # Errors
/// No message in this route, or an unknown name.
pub fn get(name: &str, arg: &str) -> FnResult<Dynamic> {
    if name == "var" {
        return Ok(VARS.with(|v| v.borrow().get(arg).cloned()).unwrap_or(Dynamic::UNIT));
    }
    with_ctx(|ctx| {
        let m = &ctx.msg;
        Ok(match name {
            "ru" => s(if ctx.kind == RouteKind::OnReply { "" } else { ctx.ruri() }),
            "rU" => uri_part(ctx, "user"),
            "rd" => uri_part(ctx, "host"),
            "rp" => uri_part(ctx, "port"),
            "ou" => s(m.ruri()),
            "du" => ctx.du.as_deref().map(s).unwrap_or(Dynamic::UNIT),
            "si" => s(&ctx.src.ip().to_string()),
            "sp" => Dynamic::from(ctx.src.port() as i64),
            "Ri" => s(&ctx.local.ip().to_string()),
            "Rp" => Dynamic::from(ctx.local.port() as i64),
            "pr" | "proto" => s(ctx.proto),
            "fu" => addr_part(m.from(), "uri"),
            "fU" => addr_part(m.from(), "user"),
            "fd" => addr_part(m.from(), "host"),
            "fn" => addr_part(m.from(), "display"),
            "ft" => addr_part(m.from(), "tag"),
            "tu" => addr_part(m.to(), "uri"),
            "tU" => addr_part(m.to(), "user"),
            "td" => addr_part(m.to(), "host"),
            "tn" => addr_part(m.to(), "display"),
            "tt" => addr_part(m.to(), "tag"),
            "ci" => s(m.call_id()),
            "cs" => Dynamic::from(m.cseq().map(|c| c.number as i64).unwrap_or(0)),
            "rm" => s(m.method_text()),
            "rs" => match ctx.reply.as_ref().or(Some(m)).and_then(|r| r.status()) {
                Some(c) => Dynamic::from(c as i64),
                None if ctx.reply_code > 0 => Dynamic::from(ctx.reply_code as i64),
                None => Dynamic::UNIT,
            },
            "rr" => s(ctx.reply.as_ref().or(Some(m)).map(|r| r.reason()).unwrap_or("")),
            "rb" => s(&String::from_utf8_lossy(m.body())),
            "ct" => m.value(&HeaderName::Contact).map(s).unwrap_or(Dynamic::UNIT),
            "ua" => m.value(&HeaderName::UserAgent).map(s).unwrap_or(Dynamic::UNIT),
            "fs" => ctx.send_socket.as_deref().map(s).unwrap_or(Dynamic::UNIT),
            "mf" => Dynamic::from(ctx.flags as i64),
            "retcode" => Dynamic::from(ctx.retcode),
            "T_reply_code" => Dynamic::from(match ctx.reply_code {
                0 => ctx.core.t_last_code(ctx),
                c => c,
            } as i64),
            "T_branch_idx" => Dynamic::from(ctx.branch_idx),
            "avp" => ctx.avps.get(arg).cloned().unwrap_or(Dynamic::UNIT),
            "hdr" => m.headers_by_text(arg).next().map(|h| s(m.text(h.value))).unwrap_or(Dynamic::UNIT),
            "param" => ctx.params.iter().find(|(k, _)| k == arg).map(|(_, v)| s(v)).unwrap_or(Dynamic::UNIT),
            "au" | "ar" => auth_pv(ctx, name == "ar"),
            "DLG_count" => Dynamic::from(ctx.core.dialogs().map(|d| d.len() as i64).unwrap_or(0)),
            "DLG_status" | "DLG_lifetime" | "DLG_timeout" | "DLG_did" | "DLG_dir" | "dlg_val" => {
                dialog_pv(ctx, name, arg)
            }
            other => return Err(script_error(format!("unknown pseudo-variable ${other}"))),
        })
    })?
}

/// Writes a pseudo-variable.
///
/// # Errors
/// A read-only name, or a value that is not a usable URI part.
pub fn set(name: &str, arg: &str, value: Dynamic) -> FnResult<()> {
    if name == "var" {
        VARS.with(|v| v.borrow_mut().insert(arg.to_string(), value));
        return Ok(());
    }
    with_ctx(|ctx| -> FnResult<()> {
        match name {
            "ru" => ctx.new_ruri = Some(as_text(&value)),
            "rU" | "rd" | "rp" => {
                let cur = ctx.ruri().to_string();
                let u =
                    Uri::parse(&cur).ok_or_else(|| script_error(format!("cannot set ${name}: bad R-URI {cur:?}")))?;
                let text = as_text(&value);
                ctx.new_ruri = Some(match name {
                    "rU" => u.with_user(&text),
                    "rd" => u.with_host(&text),
                    _ => u.with_port(if text.is_empty() { None } else { as_int(&value).map(|p| p as u16) }),
                });
            }
            "du" => ctx.du = if value.is_unit() || as_text(&value).is_empty() { None } else { Some(as_text(&value)) },
            "fs" => ctx.send_socket = if value.is_unit() { None } else { Some(as_text(&value)) },
            "avp" => {
                if value.is_unit() {
                    ctx.avps.pop(arg)
                } else {
                    ctx.avps.push(arg, value)
                }
            }
            "DLG_timeout" | "dlg_val" => set_dialog_pv(ctx, name, arg, &value)?,
            other => return Err(script_error(format!("${other} is read-only"))),
        }
        Ok(())
    })?
}

/// `$au` (the user part of the digest username) and `$ar` (the realm): of the credentials
/// the auth functions accepted, else of the first `Authorization`, else of the first
/// `Proxy-Authorization` header; NULL without credentials.
fn auth_pv(ctx: &Ctx, realm: bool) -> Dynamic {
    if let Some(a) = &ctx.auth.authorized {
        return if realm { s(&a.realm) } else { s(a.username.split_once('@').map_or(a.username.as_str(), |(u, _)| u)) };
    }
    let m = &ctx.msg;
    let value = m.value(&HeaderName::Authorization).or_else(|| m.value(&HeaderName::ProxyAuthorization));
    let Some(c) = value.and_then(|v| DigestCredentials::parse(v).ok()) else { return Dynamic::UNIT };
    match (realm, &c.realm) {
        (true, Some(r)) => s(r),
        (false, Some(_)) | (false, None) if c.username.is_some() => s(c.user()),
        _ => Dynamic::UNIT,
    }
}

/// `$DLG_*` and `$dlg_val(x)` of the message's dialog: NULL without one (spec §10).
fn dialog_pv(ctx: &Ctx, name: &str, arg: &str) -> Dynamic {
    let Some(dlg) = ctx.dlg.as_ref() else { return Dynamic::UNIT };
    match name {
        "DLG_status" => Dynamic::from(dlg.state() as i64),
        "DLG_lifetime" => Dynamic::from(dlg.age(crate::dialog::unix_now())),
        "DLG_timeout" => {
            let d = dlg.data();
            let left =
                if d.deadline > 0 { (d.deadline - crate::dialog::unix_now()).max(0) } else { i64::from(d.lifetime) };
            Dynamic::from(left)
        }
        "DLG_did" => s(&dlg.did()),
        // Whether the message goes from caller to callee.
        "DLG_dir" => {
            let from_caller = ctx.msg.from().and_then(|f| f.tag().map(|t| t == dlg.from_tag)).unwrap_or(true);
            s(if from_caller { "downstream" } else { "upstream" })
        }
        _ => dlg.value(arg).map(|v| s(&v)).unwrap_or(Dynamic::UNIT),
    }
}

fn set_dialog_pv(ctx: &Ctx, name: &str, arg: &str, value: &Dynamic) -> FnResult<()> {
    let (Some(dlg), Some(table)) = (ctx.dlg.as_ref(), ctx.core.dialogs()) else {
        return Err(script_error(format!("${name}: no dialog (call create_dialog() or match it first)")));
    };
    if name == "DLG_timeout" {
        let secs = as_int(value).filter(|n| *n >= 0).ok_or_else(|| script_error("$DLG_timeout wants seconds"))?;
        table.set_timeout(dlg, secs.min(i64::from(u32::MAX)) as u32);
    } else {
        table.set_value(dlg, arg, (!value.is_unit()).then(|| as_text(value)));
    }
    Ok(())
}
