//! Rhai bindings of the registrar (docs/registrar.md): `save`, `lookup`, `is_registered`,
//! `is_contact_registered`, `remove`, `remove_ip_port`. `save` and `lookup` return
//! OpenSIPS's codes (`$retcode`); the `is_*` predicates return bool.

use super::{contact_line, ContactIn, Contacts, PathMode, Refusal, Registrar, SaveFlags, SaveRequest};
use crate::message::{HeaderName, NameAddr, SipMsg, Uri};
use crate::modules::usrloc::{self, method_bit, Contact};
use crate::script::api::{as_int, as_text, with_ctx, with_ctx_code, BranchSpec, Ctx, FnResult};
use rhai::{Dynamic, Engine};
use std::sync::Arc;

/// `"rcv"` or OpenSIPS's modparam form `"$avp(rcv)"` → `rcv`.
fn avp_name(spec: &str) -> &str {
    let s = spec.trim();
    s.strip_prefix("$avp(").and_then(|r| r.strip_suffix(')')).unwrap_or(s)
}

/// `user` and `host` of an AoR argument: a SIP URI, `user@host` or `user`.
fn split_aor(text: &str) -> (String, String) {
    let t = text.trim().trim_start_matches('<').trim_end_matches('>');
    if let Some(u) = Uri::parse(t).filter(|u| u.is_sip()) {
        return (u.user().to_string(), u.host().to_string());
    }
    match t.split_once('@') {
        Some((u, h)) => (u.to_string(), h.to_string()),
        None => (t.to_string(), String::new()),
    }
}

/// The AoR of the URI in header `name` of `msg` (To for REGISTER, From otherwise).
fn header_aor(reg: &Registrar, msg: &SipMsg, name: HeaderName) -> Option<String> {
    let na = match name {
        HeaderName::To => msg.to(),
        _ => msg.from(),
    }?;
    let u = Uri::parse(na.uri)?;
    Some(reg.aor(u.user(), u.host()))
}

fn aor_arg(reg: &Registrar, text: &str) -> String {
    let (user, host) = split_aor(text);
    reg.aor(&user, &host)
}

/// A malformed REGISTER: the 400 that says what is wrong with it.
fn bad(reason: &'static str) -> Refusal {
    Refusal { code: 400, reason, retry_after: None }
}

/// The Contact headers of a REGISTER (RFC 3261 §10.2, §10.3 step 6).
fn read_contacts(msg: &SipMsg) -> Result<Contacts, Refusal> {
    let values = msg.values(&HeaderName::Contact);
    if values.is_empty() {
        return Ok(Contacts::None);
    }
    if values.iter().any(|(_, v)| v.trim() == "*") {
        return if values.len() == 1 { Ok(Contacts::Star) } else { Err(bad("Invalid Contact: * with other contacts")) };
    }
    let mut list = Vec::with_capacity(values.len());
    for (_, v) in values {
        let na = NameAddr::parse(v).ok_or_else(|| bad("Bad Contact header"))?;
        let expires = match na.param("expires") {
            Some(Some(e)) => Some(e.trim().parse::<u32>().map_err(|_| bad("Invalid expires param in contact"))?),
            Some(None) => return Err(bad("Invalid expires param in contact")),
            None => None,
        };
        let q = match na.param("q") {
            Some(Some(q)) => Some(super::parse_q(q).ok_or_else(|| bad("Invalid q value"))?),
            Some(None) => return Err(bad("Invalid q value")),
            None => None,
        };
        let instance =
            na.param("+sip.instance").flatten().map(|i| i.trim_matches('"').trim_matches(['<', '>']).to_string());
        let reg_id = na.param("reg-id").flatten().and_then(|r| r.trim().parse().ok()).unwrap_or(0);
        list.push(ContactIn { uri: na.uri.to_string(), expires, q, instance, reg_id });
    }
    Ok(Contacts::List(list))
}

/// Allow (RFC 3261 §20.5) as the `methods` bit mask; `None` without the header.
fn read_methods(msg: &SipMsg) -> Option<u32> {
    let allow: Vec<&str> = msg.headers_by_text("Allow").map(|h| msg.text(h.value)).collect();
    if allow.is_empty() {
        return None;
    }
    Some(allow.iter().flat_map(|v| v.split(',')).map(|m| method_bit(m.trim())).fold(0, |a, b| a | b))
}

fn header_has_token(msg: &SipMsg, name: &HeaderName, token: &str) -> bool {
    msg.values(name).iter().any(|(_, v)| v.trim().eq_ignore_ascii_case(token))
}

/// The REGISTER in `ctx` as `save` needs it.
fn save_request(reg: &Registrar, ctx: &Ctx, flags: &SaveFlags, aor: Option<&str>) -> Result<SaveRequest, Refusal> {
    let msg = &ctx.msg;
    let aor = match aor {
        Some(a) => aor_arg(reg, a),
        None => header_aor(reg, msg, HeaderName::To).ok_or_else(|| bad("Bad To header"))?,
    };
    if aor.is_empty() || aor.starts_with('@') {
        return Err(bad("Bad address of record"));
    }
    let cseq = msg.cseq().map(|c| c.number).ok_or_else(|| bad("Bad CSeq header"))?;
    let expires = match msg.first(&HeaderName::Expires) {
        Some(_) => Some(msg.expires().ok_or_else(|| bad("Invalid Expires header"))?),
        None => None,
    };
    let socket = flags
        .socket_header
        .then_some(reg.cfg.sock_hdr_name.as_deref())
        .flatten()
        .and_then(|h| msg.headers_by_text(h).next().map(|x| msg.text(x.value).trim().to_string()))
        .or_else(|| Some(format!("{}:{}", ctx.proto, ctx.local)));
    Ok(SaveRequest {
        aor,
        contacts: read_contacts(msg)?,
        expires,
        callid: msg.call_id().to_string(),
        cseq,
        received: ctx.avps.get(avp_name(&reg.cfg.received_avp)).map(as_text).filter(|r| !r.is_empty()),
        path: msg.values(&HeaderName::Path).into_iter().map(|(_, v)| v.trim().to_string()).collect(),
        path_supported: header_has_token(msg, &HeaderName::Supported, "path"),
        socket,
        bflags: ctx.bflags,
        user_agent: msg.value(&HeaderName::UserAgent).unwrap_or("").trim().to_string(),
        methods: read_methods(msg),
        now: usrloc::now(),
    })
}

/// The header lines of the 200 OK of a REGISTER (RFC 3261 §10.3 step 8, RFC 3327 §5.3).
fn ok_headers(reg: &Registrar, req: &SaveRequest, bindings: &[Contact], flags: &SaveFlags) -> String {
    let mut h = String::with_capacity(64 * (bindings.len() + 2));
    for c in bindings {
        h.push_str("Contact: ");
        h.push_str(&contact_line(c, req.now, &reg.cfg.received_param));
        h.push_str("\r\n");
    }
    if flags.path != PathMode::Off {
        for p in &req.path {
            h.push_str(&format!("Path: {p}\r\n"));
        }
    }
    h.push_str(&format!("Date: {}\r\n", httpdate::fmt_http_date(std::time::SystemTime::now())));
    h
}

fn save(reg: &Registrar, table: &str, flags: &Dynamic, aor: Option<&Dynamic>) -> FnResult<i64> {
    let parsed = SaveFlags::parse(&as_text(flags));
    let aor = aor.map(as_text);
    with_ctx_code(|ctx| {
        let flags = match parsed {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(target: "script", "save: {e} (memory-only, no-reply, max-contacts=N, force-registration, matching-mode=N, path-off|lazy|strict, path-received, socket-header, min-expires=N, max-expires=N)");
                return -1;
            }
        };
        let outcome = save_request(reg, ctx, &flags, aor.as_deref()).and_then(|req| {
            let saved = reg.save(table, &req, &flags)?;
            Ok((req, saved))
        });
        match outcome {
            Ok((req, saved)) => {
                if !flags.no_reply {
                    let headers = ok_headers(reg, &req, &saved.bindings, &flags);
                    ctx.send_reply_with(200, "OK", &headers);
                }
                1
            }
            Err(r) => {
                tracing::info!(target: "script", "save: {} refused: {r}", ctx.msg.call_id());
                if !flags.no_reply {
                    let extra = r.retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                    ctx.send_reply_with(r.code, r.reason, &extra);
                }
                -1
            }
        }
    })
}

/// `lookup()`'s flags (3.x names, spec §8.3).
#[derive(Default)]
struct LookupFlags {
    no_branches: bool,
    to_branches_only: bool,
    method_filtering: bool,
    ua_filter: Option<regex::Regex>,
}

fn lookup_flags(text: &str) -> Result<LookupFlags, String> {
    let mut f = LookupFlags::default();
    let mut ua: Option<String> = None;
    let mut case_insensitive = false;
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.split_once('=') {
            Some(("ua-filtering", re)) => ua = Some(re.trim().trim_matches('/').to_string()),
            _ => match word {
                "no-branches" => f.no_branches = true,
                "to-branches-only" => f.to_branches_only = true,
                "method-filtering" => f.method_filtering = true,
                "case-insensitive" => case_insensitive = true,
                // Rust's regex is already the extended syntax.
                "extended-regexp" => {}
                _ => return Err(format!("unknown or unsupported flag {word:?}")),
            },
        }
    }
    if let Some(re) = ua {
        let re = if case_insensitive { format!("(?i){re}") } else { re };
        f.ua_filter = Some(regex::Regex::new(&re).map_err(|e| format!("ua-filtering: {e}"))?);
    }
    Ok(f)
}

/// Where a request for contact `c` goes first: its Path's first hop (RFC 3327 §5.3), else
/// the address it registered from (`received`), else its own URI (`None`).
fn next_hop(c: &Contact) -> Option<String> {
    if let Some(p) = &c.path {
        let first = p.split(',').next().unwrap_or("");
        return NameAddr::parse(first).map(|n| n.uri.to_string());
    }
    c.received.clone()
}

fn lookup(reg: &Registrar, table: &str, flags: &Dynamic, aor: Option<&Dynamic>) -> FnResult<i64> {
    let parsed = lookup_flags(&as_text(flags));
    let aor = aor.map(as_text);
    with_ctx_code(|ctx| {
        let flags = match parsed {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(target: "script", "lookup: {e}");
                return -3;
            }
        };
        let aor = match &aor {
            Some(a) => aor_arg(reg, a),
            None => match Uri::parse(ctx.ruri()) {
                Some(u) if !u.user().is_empty() => reg.aor(u.user(), u.host()),
                _ => return -1,
            },
        };
        let mut contacts = reg.ul.lookup(table, &aor, usrloc::now());
        if contacts.is_empty() {
            return -1;
        }
        if let Some(re) = &flags.ua_filter {
            contacts.retain(|c| re.is_match(&c.user_agent));
            if contacts.is_empty() {
                return -1;
            }
        }
        if flags.method_filtering {
            let bit = method_bit(ctx.msg.method_text());
            contacts.retain(|c| bit == 0 || c.methods.is_none_or(|m| m & bit != 0));
            if contacts.is_empty() {
                return -2;
            }
        }
        if flags.no_branches {
            contacts.truncate(1);
        }
        let mut rest = contacts.into_iter();
        if !flags.to_branches_only {
            if let Some(first) = rest.next() {
                ctx.du = next_hop(&first);
                ctx.new_ruri = Some(first.uri);
                ctx.path = first.path;
                ctx.bflags |= first.cflags;
                if let Some(s) = first.socket.filter(|s| ctx.core.has_socket(s)) {
                    ctx.send_socket = Some(s);
                }
            }
        }
        for c in rest {
            let du = next_hop(&c);
            let socket = c.socket.clone().filter(|s| ctx.core.has_socket(s));
            let q = (c.q != usrloc::Q_UNSPECIFIED).then(|| super::format_q(c.q));
            ctx.branches.push(BranchSpec { uri: c.uri, du, q, bflags: c.cflags, path: c.path, socket });
        }
        1
    })
}

/// `is_registered(domain[, aor])`: the AoR (To of a REGISTER, else From) has a live binding.
fn is_registered(reg: &Registrar, table: &str, aor: Option<&Dynamic>) -> FnResult<bool> {
    let aor = aor.map(as_text);
    with_ctx(|ctx| {
        let aor = match &aor {
            Some(a) => Some(aor_arg(reg, a)),
            None => {
                let h = if ctx.msg.method_text().eq_ignore_ascii_case("REGISTER") {
                    HeaderName::To
                } else {
                    HeaderName::From
                };
                header_aor(reg, &ctx.msg, h)
            }
        };
        aor.is_some_and(|a| !reg.ul.lookup(table, &a, usrloc::now()).is_empty())
    })
}

/// `is_contact_registered(domain[, aor[, contact[, callid]]])`.
fn is_contact_registered(reg: &Registrar, table: &str, args: &[Dynamic]) -> FnResult<bool> {
    let args: Vec<String> = args.iter().map(as_text).collect();
    with_ctx(|ctx| {
        let aor = match args.first().filter(|a| !a.is_empty()) {
            Some(a) => Some(aor_arg(reg, a)),
            None => header_aor(reg, &ctx.msg, HeaderName::To),
        };
        let Some(aor) = aor else { return false };
        let contact = match args.get(1).filter(|c| !c.is_empty()) {
            Some(c) => Some(c.trim_matches(['<', '>']).to_string()),
            None => ctx.msg.value(&HeaderName::Contact).and_then(NameAddr::parse).map(|n| n.uri.to_string()),
        };
        let callid = args.get(2).filter(|c| !c.is_empty());
        reg.ul.lookup(table, &aor, usrloc::now()).iter().any(|c| {
            contact.as_deref().is_none_or(|u| super::uri_eq(&c.uri, u)) && callid.is_none_or(|id| &c.callid == id)
        })
    })
}

/// Whether binding `c` is reached at `host:port` (its NAT address, else its URI).
fn reached_at(c: &Contact, ip: &str, port: Option<u16>) -> bool {
    let target = c.received.as_deref().unwrap_or(&c.uri);
    Uri::parse(target)
        .is_some_and(|u| u.host().eq_ignore_ascii_case(ip) && port.is_none_or(|p| u.port().unwrap_or(5060) == p))
}

/// `remove(domain, aor[, contact[, next_hop[, sip_instance]]])`: 1 when a binding went, -1
/// when none matched.
fn remove(reg: &Registrar, table: &str, aor: &str, args: &[Dynamic]) -> FnResult<i64> {
    let aor = aor_arg(reg, aor);
    let args: Vec<String> = args.iter().map(as_text).collect();
    let contact = args.first().filter(|c| !c.is_empty()).map(|c| c.trim_matches(['<', '>']).to_string());
    let hop = args.get(1).filter(|h| !h.is_empty()).map(|h| {
        let (host, port) =
            h.trim_start_matches("sip:").rsplit_once(':').map_or((h.as_str(), None), |(a, p)| (a, p.parse().ok()));
        (host.to_string(), port)
    });
    let instance = args.get(2).filter(|i| !i.is_empty()).map(|i| i.trim_matches(['"', '<', '>']).to_string());
    with_ctx_code(|_| {
        let n = reg.ul.update(table, &aor, |r| {
            r.remove_where(|c| {
                contact.as_deref().is_none_or(|u| super::uri_eq(&c.uri, u))
                    && hop.as_ref().is_none_or(|(h, p)| reached_at(c, h, *p))
                    && instance.as_ref().is_none_or(|i| c.instance.as_ref() == Some(i))
            })
        });
        if n > 0 {
            1
        } else {
            -1
        }
    })
}

/// `remove_ip_port(ip, port, domain[, aor])`: every binding reached at `ip:port`.
fn remove_ip_port(reg: &Registrar, ip: &str, port: &Dynamic, table: &str, aor: Option<&str>) -> FnResult<i64> {
    let port = as_int(port).and_then(|p| u16::try_from(p).ok());
    let aor = aor.map(|a| aor_arg(reg, a));
    with_ctx_code(|_| {
        let aors: Vec<String> = match &aor {
            Some(a) => vec![a.clone()],
            None => reg.ul.dump(table).into_iter().map(|(a, _)| a).collect(),
        };
        let n: usize =
            aors.iter().map(|a| reg.ul.update(table, a, |r| r.remove_where(|c| reached_at(c, ip, port)))).sum();
        if n > 0 {
            1
        } else {
            -1
        }
    })
}

/// Registers the registrar's functions, bound to `reg`.
pub fn register(engine: &mut Engine, reg: &Arc<Registrar>) {
    let empty = Dynamic::from(String::new());
    let (r, e) = (reg.clone(), empty.clone());
    engine.register_fn("save", move |t: &str| save(&r, t, &e, None));
    let r = reg.clone();
    engine.register_fn("save", move |t: &str, f: Dynamic| save(&r, t, &f, None));
    let r = reg.clone();
    engine.register_fn("save", move |t: &str, f: Dynamic, aor: Dynamic| save(&r, t, &f, Some(&aor)));
    let (r, e) = (reg.clone(), empty);
    engine.register_fn("lookup", move |t: &str| lookup(&r, t, &e, None));
    let r = reg.clone();
    engine.register_fn("lookup", move |t: &str, f: Dynamic| lookup(&r, t, &f, None));
    let r = reg.clone();
    engine.register_fn("lookup", move |t: &str, f: Dynamic, aor: Dynamic| lookup(&r, t, &f, Some(&aor)));
    let r = reg.clone();
    engine.register_fn("is_registered", move |t: &str| is_registered(&r, t, None));
    let r = reg.clone();
    engine.register_fn("is_registered", move |t: &str, aor: Dynamic| is_registered(&r, t, Some(&aor)));
    let r = reg.clone();
    engine.register_fn("is_contact_registered", move |t: &str| is_contact_registered(&r, t, &[]));
    let r = reg.clone();
    engine.register_fn("is_contact_registered", move |t: &str, a: Dynamic| is_contact_registered(&r, t, &[a]));
    let r = reg.clone();
    engine.register_fn("is_contact_registered", move |t: &str, a: Dynamic, c: Dynamic| {
        is_contact_registered(&r, t, &[a, c])
    });
    let r = reg.clone();
    engine.register_fn("is_contact_registered", move |t: &str, a: Dynamic, c: Dynamic, id: Dynamic| {
        is_contact_registered(&r, t, &[a, c, id])
    });
    let r = reg.clone();
    engine.register_fn("remove", move |t: &str, aor: &str| remove(&r, t, aor, &[]));
    let r = reg.clone();
    engine.register_fn("remove", move |t: &str, aor: &str, c: Dynamic| remove(&r, t, aor, &[c]));
    let r = reg.clone();
    engine.register_fn("remove", move |t: &str, aor: &str, c: Dynamic, hop: Dynamic| remove(&r, t, aor, &[c, hop]));
    let r = reg.clone();
    engine.register_fn("remove", move |t: &str, aor: &str, c: Dynamic, hop: Dynamic, inst: Dynamic| {
        remove(&r, t, aor, &[c, hop, inst])
    });
    let r = reg.clone();
    engine
        .register_fn("remove_ip_port", move |ip: &str, port: Dynamic, t: &str| remove_ip_port(&r, ip, &port, t, None));
    let r = reg.clone();
    engine.register_fn("remove_ip_port", move |ip: &str, port: Dynamic, t: &str, aor: &str| {
        remove_ip_port(&r, ip, &port, t, Some(aor))
    });
}
