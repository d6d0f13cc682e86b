//! Core, sipmsgops and textops functions every opensips.cfg uses (spec §1.4–1.7):
//! method and dialog tests, flags, header edits, R-URI edits, branches, logging, exit/drop.

use super::pv;
use super::{as_int, as_text, drop_error, exit_error, script_error, with_ctx, with_ctx_code, BranchSpec, FnResult};
use crate::message::{HeaderName, Uri};
use rhai::{Dynamic, Engine};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Named flags map to bit numbers on first use (OpenSIPS 3.x named flags).
fn flag_bit(v: &Dynamic) -> FnResult<u32> {
    if let Some(i) = as_int(v) {
        if (0..64).contains(&i) {
            return Ok(i as u32);
        }
        return Err(script_error(format!("flag {i} out of range 0..63")));
    }
    flag_bit_of(&as_text(v)).ok_or_else(|| script_error("more than 64 named flags"))
}

fn flag_names() -> std::sync::MutexGuard<'static, HashMap<String, u32>> {
    static NAMES: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// The bit of flag `name` (a number, or a name given the next free bit on first use, as
/// scripts and modparams like `nat_bflag` share one name space); `None` past 64 names or
/// for a number out of 0..63.
pub fn flag_bit_of(name: &str) -> Option<u32> {
    let name = name.trim();
    if let Ok(i) = name.parse::<i64>() {
        return (0..64).contains(&i).then_some(i as u32);
    }
    let mut map = flag_names();
    let next = map.len() as u32;
    if next >= 64 && !map.contains_key(name) {
        return None;
    }
    Some(*map.entry(name.to_string()).or_insert(next))
}

/// The name that holds bit `bit`, if one does (the `cflags` column stores names).
pub fn flag_name_of(bit: u32) -> Option<String> {
    flag_names().iter().find(|(_, b)| **b == bit).map(|(n, _)| n.clone())
}

/// Expands `$name` / `$name(arg)` pseudo-variables inside an xlog format string.
pub fn expand(fmt: &str) -> String {
    let mut out = String::with_capacity(fmt.len() + 32);
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &fmt[start..j];
            let mut arg = "";
            let mut end = j;
            if pv::WITH_ARG.contains(&name) && b.get(j) == Some(&b'(') {
                if let Some(close) = fmt[j..].find(')') {
                    arg = &fmt[j + 1..j + close];
                    end = j + close + 1;
                }
            }
            if pv::NAMES.contains(&name) {
                match pv::get(name, arg) {
                    Ok(v) if v.is_unit() => out.push_str("<null>"),
                    Ok(v) => out.push_str(&as_text(&v)),
                    Err(_) => out.push_str("<null>"),
                }
                i = end;
                continue;
            }
        }
        let ch = fmt[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn xlog_at(level: &str, fmt: &str) {
    let text = expand(fmt);
    let text = text.trim_end_matches('\n');
    super::capture::record(level, text);
    match level.trim_start_matches("L_") {
        "ALERT" | "CRIT" | "ERR" => tracing::error!(target: "script", "{text}"),
        "WARN" => tracing::warn!(target: "script", "{text}"),
        "NOTICE" | "INFO" => tracing::info!(target: "script", "{text}"),
        _ => tracing::debug!(target: "script", "{text}"),
    }
}

/// `remove_hf`: every header line with that name goes (a lump: reads still see it).
fn remove_hf(name: &str) -> FnResult<i64> {
    with_ctx_code(|ctx| {
        let lines: Vec<_> = ctx.msg.headers_by_text(name).map(|h| h.line).collect();
        for l in &lines {
            if !ctx.edits.touches(*l) {
                ctx.edits.delete(*l);
            }
        }
        if lines.is_empty() {
            -1
        } else {
            1
        }
    })
}

/// `append_hf(txt[, anchor])`: after the last header, or after the first `anchor` header.
fn append_hf(txt: &str, anchor: Option<&str>) -> FnResult<i64> {
    let mut text = txt.to_string();
    if !text.ends_with('\n') {
        text.push_str("\r\n");
    }
    let text = expand(&text);
    with_ctx_code(|ctx| {
        let at = match anchor {
            Some(a) => match ctx.msg.headers_by_text(a).next() {
                Some(h) => h.line.end as usize,
                None => return -1,
            },
            None => ctx.msg.headers_end(),
        };
        ctx.edits.insert(at, text);
        1
    })
}

fn set_uri_with(f: impl FnOnce(&Uri<'_>) -> String) -> FnResult<i64> {
    with_ctx_code(|ctx| {
        let cur = ctx.ruri().to_string();
        match Uri::parse(&cur) {
            Some(u) => {
                ctx.new_ruri = Some(f(&u));
                1
            }
            None => -1,
        }
    })
}

/// set/reset/test functions over one flag word of the context.
fn register_flag_fns(engine: &mut Engine, names: [&str; 3], word: fn(&mut super::Ctx) -> &mut u64) {
    engine.register_fn(names[0], move |f: Dynamic| -> FnResult<i64> {
        let bit = flag_bit(&f)?;
        with_ctx_code(|ctx| {
            *word(ctx) |= 1 << bit;
            1
        })
    });
    engine.register_fn(names[1], move |f: Dynamic| -> FnResult<i64> {
        let bit = flag_bit(&f)?;
        with_ctx_code(|ctx| {
            *word(ctx) &= !(1 << bit);
            1
        })
    });
    engine.register_fn(names[2], move |f: Dynamic| -> FnResult<bool> {
        let bit = flag_bit(&f)?;
        with_ctx(|ctx| *word(ctx) & (1 << bit) != 0)
    });
}

pub fn register(engine: &mut Engine) {
    // exit/drop end the whole script from any depth (spec §1.2).
    engine.register_fn("exit", || -> FnResult<()> { Err(exit_error()) });
    engine.register_fn("drop", || -> FnResult<()> {
        with_ctx(|ctx| ctx.dropped = true)?;
        Err(drop_error())
    });
    engine.register_fn("retcode", || -> FnResult<i64> { with_ctx(|ctx| ctx.retcode) });

    engine.register_fn("is_method", |list: &str| -> FnResult<bool> {
        with_ctx(|ctx| {
            let m = ctx.msg.method();
            list.split('|').any(|name| m.matches(name.trim()))
        })
    });
    engine.register_fn("has_totag", || -> FnResult<bool> { with_ctx(|ctx| ctx.msg.has_to_tag()) });
    engine.register_fn("is_present_hf", |name: &str| -> FnResult<bool> {
        with_ctx(|ctx| ctx.msg.headers_by_text(name).next().is_some())
    });
    engine.register_fn("append_hf", |txt: &str| append_hf(txt, None));
    engine.register_fn("append_hf", |txt: &str, anchor: &str| append_hf(txt, Some(anchor)));
    engine.register_fn("remove_hf", |name: &str| remove_hf(name));
    engine.register_fn("force_rport", || -> FnResult<i64> {
        with_ctx_code(|ctx| {
            ctx.force_rport = true;
            1
        })
    });
    engine.register_fn("force_send_socket", |spec: &str| -> FnResult<i64> {
        with_ctx_code(|ctx| {
            if ctx.core.has_socket(spec) {
                ctx.send_socket = Some(spec.to_string());
                1
            } else {
                tracing::error!(target: "script", socket = spec, "force_send_socket: not a listening socket; ignored");
                -1
            }
        })
    });

    // Message flags (per transaction) and branch flags (branch 0 here).
    register_flag_fns(engine, ["setflag", "resetflag", "isflagset"], |ctx| &mut ctx.flags);
    register_flag_fns(engine, ["setbflag", "resetbflag", "isbflagset"], |ctx| &mut ctx.bflags);

    // R-URI and destination edits.
    engine.register_fn("seturi", |u: &str| -> FnResult<i64> {
        let u = u.to_string();
        with_ctx_code(move |ctx| {
            ctx.new_ruri = Some(u);
            1
        })
    });
    engine.register_fn("sethost", |h: &str| set_uri_with(|u| u.with_host(h)));
    engine.register_fn("setuser", |v: &str| set_uri_with(|u| u.with_user(v)));
    engine.register_fn("setport", |p: Dynamic| {
        let p = as_int(&p).map(|p| p as u16);
        set_uri_with(move |u| u.with_port(p))
    });
    engine.register_fn("prefix", |p: &str| set_uri_with(|u| u.with_user(&format!("{p}{}", u.user()))));
    engine.register_fn("strip", |n: i64| {
        set_uri_with(move |u| u.with_user(u.user().get(n.max(0) as usize..).unwrap_or("")))
    });
    engine.register_fn("strip_tail", |n: i64| {
        set_uri_with(move |u| {
            let user = u.user();
            u.with_user(&user[..user.len().saturating_sub(n.max(0) as usize)])
        })
    });
    engine.register_fn("revert_uri", || -> FnResult<i64> {
        with_ctx_code(|ctx| {
            ctx.new_ruri = None;
            1
        })
    });
    engine.register_fn("setdsturi", |u: &str| -> FnResult<i64> {
        let u = u.to_string();
        with_ctx_code(move |ctx| {
            ctx.du = Some(u);
            1
        })
    });
    engine.register_fn("resetdsturi", || -> FnResult<i64> {
        with_ctx_code(|ctx| {
            ctx.du = None;
            1
        })
    });
    engine.register_fn("isdsturiset", || -> FnResult<bool> { with_ctx(|ctx| ctx.du.is_some()) });
    engine.register_fn("subst_uri", |expr: &str| -> FnResult<i64> {
        let (re, repl, global) = parse_subst(expr)?;
        with_ctx_code(|ctx| {
            let cur = ctx.ruri().to_string();
            if !re.is_match(&cur) {
                return -1;
            }
            let new = if global { re.replace_all(&cur, repl.as_str()) } else { re.replace(&cur, repl.as_str()) };
            ctx.new_ruri = Some(new.into_owned());
            1
        })
    });
    engine.register_fn("is_myself", |host: &str| -> FnResult<bool> {
        let (h, p) = match Uri::parse(host) {
            Some(u) if u.is_sip() => (u.host().to_string(), u.port()),
            _ => (host.to_string(), None),
        };
        with_ctx(|ctx| ctx.core.is_myself(&h, p))
    });
    engine.register_fn("is_uri_host_local", || -> FnResult<bool> {
        with_ctx(|ctx| {
            let r = ctx.ruri().to_string();
            Uri::parse(&r).map(|u| ctx.core.is_myself(u.host(), u.port())).unwrap_or(false)
        })
    });

    // The destination set (spec §1.5).
    engine.register_fn("append_branch", || -> FnResult<i64> {
        with_ctx_code(|ctx| {
            let b = BranchSpec {
                uri: ctx.ruri().to_string(),
                du: ctx.du.clone(),
                q: None,
                bflags: ctx.bflags,
                path: ctx.path.clone(),
                socket: ctx.send_socket.clone(),
            };
            ctx.branches.push(b);
            1
        })
    });
    engine.register_fn("append_branch", |uri: &str| -> FnResult<i64> {
        let uri = uri.to_string();
        with_ctx_code(move |ctx| {
            ctx.branches.push(BranchSpec { uri, ..BranchSpec::default() });
            1
        })
    });
    engine.register_fn("append_branch", |uri: &str, q: Dynamic| -> FnResult<i64> {
        let uri = uri.to_string();
        let q = as_text(&q);
        with_ctx_code(move |ctx| {
            ctx.branches.push(BranchSpec { uri, q: Some(q), ..BranchSpec::default() });
            1
        })
    });

    engine.register_fn("xlog", |fmt: &str| xlog_at("L_ERR", fmt));
    engine.register_fn("xlog", |level: &str, fmt: &str| xlog_at(level, fmt));
    engine.register_fn("is_header", |name: &str| HeaderName::from_bytes(name.as_bytes()) != HeaderName::Other);
    engine.register_fn("pcre_match", |value: Dynamic, re: &str| pcre_match(&value, re));
    engine.register_fn("has_body", || -> FnResult<bool> { with_ctx(|ctx| !ctx.msg.body().is_empty()) });
    engine.register_fn("has_body", |mime: &str| -> FnResult<bool> {
        with_ctx(|ctx| {
            let body = ctx.msg.body();
            let ctype = ctx.msg.value(&HeaderName::ContentType).unwrap_or("");
            !body.is_empty() && body_has_type(ctype, body, mime)
        })
    });
}

/// `has_body(mime)` (sipmsgops): the message's Content-Type is `mime` (parameters and case
/// aside), or, for a `multipart/*` body, one of its parts' is (RFC 2046 §5.1).
fn body_has_type(ctype: &str, body: &[u8], mime: &str) -> bool {
    let main = ctype.split(';').next().unwrap_or("").trim();
    if main.eq_ignore_ascii_case(mime.trim()) {
        return true;
    }
    if !main.to_ascii_lowercase().starts_with("multipart/") {
        return false;
    }
    String::from_utf8_lossy(body).lines().any(|line| {
        let Some((name, value)) = line.split_once(':') else { return false };
        name.trim().eq_ignore_ascii_case("content-type")
            && value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(mime.trim())
    })
}

/// Compiled patterns of `pcre_match`, per worker thread: scripts match a handful of constant
/// patterns, so compiling each once keeps the regex off the per-packet cost.
const REGEX_CACHE_MAX: usize = 256;
thread_local! {
    static REGEX_CACHE: std::cell::RefCell<HashMap<String, regex::Regex>> = std::cell::RefCell::new(HashMap::new());
}

/// `pcre_match(value, re)` (OpenSIPS regex module; what `siprox port` turns `=~` into): the
/// value as text (`()` never matches) against a Rust regex, unanchored.
fn pcre_match(value: &Dynamic, re: &str) -> FnResult<bool> {
    if value.is_unit() {
        return Ok(false);
    }
    // Strings (the usual case) are matched in place; only other values are printed.
    let printed;
    let borrowed = value.read_lock::<rhai::ImmutableString>();
    let text: &str = match &borrowed {
        Some(s) => s.as_str(),
        None => {
            printed = as_text(value);
            &printed
        }
    };
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(r) = cache.get(re) {
            return Ok(r.is_match(text));
        }
        let r = regex::Regex::new(re).map_err(|e| script_error(format!("pcre_match: {e}")))?;
        let hit = r.is_match(text);
        if cache.len() >= REGEX_CACHE_MAX {
            cache.clear();
        }
        cache.insert(re.to_string(), r);
        Ok(hit)
    })
}

/// Parses `/re/repl/flags` (sed style, any delimiter); `\1` back-references become `${1}`.
///
/// # Errors
/// A malformed expression or a bad regular expression.
pub fn parse_subst(expr: &str) -> FnResult<(regex::Regex, String, bool)> {
    let mut chars = expr.chars();
    let delim = chars.next().ok_or_else(|| script_error("empty subst expression"))?;
    let parts: Vec<&str> = expr[delim.len_utf8()..].split(delim).collect();
    if parts.len() < 2 {
        return Err(script_error(format!("bad subst expression {expr:?}")));
    }
    let flags = parts.get(2).copied().unwrap_or("");
    let mut re = String::new();
    if flags.contains('i') {
        re.push_str("(?i)");
    }
    re.push_str(parts[0]);
    let re = regex::Regex::new(&re).map_err(|e| script_error(format!("subst regex: {e}")))?;
    let mut repl = String::new();
    let mut it = parts[1].chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(d) = it.peek().copied().filter(char::is_ascii_digit) {
                it.next();
                repl.push_str(&format!("${{{d}}}"));
                continue;
            }
        }
        if c == '$' {
            repl.push_str("$$");
            continue;
        }
        repl.push(c);
    }
    Ok((re, repl, flags.contains('g')))
}

#[cfg(test)]
mod body_type_tests {
    use super::body_has_type;

    #[test]
    fn content_type_and_multipart_parts() {
        assert!(body_has_type("application/SDP; charset=x", b"v=0", "application/sdp"));
        assert!(!body_has_type("text/plain", b"hi", "application/sdp"));
        let multi = b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--\r\n";
        assert!(body_has_type("multipart/mixed;boundary=b", multi, "application/sdp"));
        assert!(!body_has_type("multipart/mixed;boundary=b", multi, "application/isup"));
    }
}
