//! Compares what a step did with what the case expects. Each mismatch is one line naming
//! the key, what was expected and what happened.

use super::spec::{to_crlf, Expect};
use crate::message::SipMsg;
use crate::proxy::dry_run::{HookEnd, ReplyKind, SentReply, Step};
use bytes::Bytes;

/// Every way `step` differs from `e`; empty when it matches. `request` is the request the
/// case routed (what headers added or removed are counted against).
pub fn check(e: &Expect, step: &Step, request: &SipMsg) -> Vec<String> {
    let mut out = Vec::new();
    check_replies(e, step, &mut out);
    check_relay(e, step, &mut out);
    check_headers(e, step, request, &mut out);
    check_routes(e, step, &mut out);
    check_flow(e, step, &mut out);
    out
}

/// The reply a case is about: the last one sent upstream that is not a `100 Trying`.
pub fn final_reply(step: &Step) -> Option<&SentReply> {
    step.sent.replies.iter().rev().find(|r| r.code != 100)
}

fn describe_reply(r: Option<&SentReply>) -> String {
    r.map(|r| format!("{} {}", r.code, r.reason)).unwrap_or_else(|| "no reply".into())
}

fn check_replies(e: &Expect, step: &Step, out: &mut Vec<String>) {
    let last = final_reply(step);
    if let Some(code) = e.reply {
        if last.map(|r| r.code) != Some(code) {
            out.push(format!("reply: expected {code}, got {}", describe_reply(last)));
        }
    }
    if let Some(reason) = &e.reason {
        if last.map(|r| r.reason.as_str()) != Some(reason.as_str()) {
            out.push(format!("reason: expected {reason:?}, got {}", describe_reply(last)));
        }
    }
    if let Some(codes) = &e.replies {
        let got: Vec<u16> = step.sent.replies.iter().map(|r| r.code).collect();
        if got != *codes {
            out.push(format!("replies: expected {codes:?}, got {got:?}"));
        }
    }
    match (e.no_reply, last) {
        (Some(true), Some(r)) => out.push(format!("no_reply: expected no reply, got {} {}", r.code, r.reason)),
        (Some(false), None) => out.push("no_reply = false: expected a reply, got none".into()),
        _ => {}
    }
}

/// Compares one value, `""` standing for "none".
fn same_or_none(key: &str, want: &str, got: Option<&str>, out: &mut Vec<String>) {
    let got_text = got.unwrap_or("");
    if want != got_text {
        let shown = if got_text.is_empty() { "none".to_string() } else { format!("{got_text:?}") };
        out.push(format!("{key}: expected {want:?}, got {shown}"));
    }
}

fn check_relay(e: &Expect, step: &Step, out: &mut Vec<String>) {
    let requests = &step.sent.requests;
    let first = requests.first();
    if let Some(want) = &e.relay {
        match first {
            Some(r) if r.next_hop == *want => {}
            Some(r) => out.push(format!("relay: expected {want:?}, got {:?}", r.next_hop)),
            None => out.push(format!("relay: expected {want:?}, got no relay")),
        }
    }
    if let Some(want) = &e.ruri {
        let got = first.map(|r| r.ruri.clone()).or_else(|| step.ruri.clone());
        same_or_none("ruri", want, got.as_deref(), out);
    }
    if let Some(want) = &e.du {
        let got = match first {
            Some(r) => r.du.clone(),
            None => step.du.clone(),
        };
        same_or_none("du", want, got.as_deref(), out);
    }
    if let Some(want) = &e.dest {
        same_or_none("dest", want, first.map(|r| r.dest.as_str()), out);
    }
    if let Some(want) = &e.branches {
        let got: Vec<&str> = requests.iter().map(|r| r.next_hop.as_str()).collect();
        if got != *want {
            out.push(format!("branches: expected {want:?}, got {got:?}"));
        }
    }
    match (e.no_relay, first) {
        (Some(true), Some(r)) => out.push(format!("no_relay: expected no relay, got one to {:?}", r.next_hop)),
        (Some(false), None) => out.push("no_relay = false: expected a relay, got none".into()),
        _ => {}
    }
}

/// The message a step sent that header expectations look at, and the one it came from:
/// the first request relayed (from the routed request), else the reply (a relayed reply
/// from the one received downstream, a generated one from the routed request).
fn outgoing(step: &Step, request: &SipMsg) -> Option<(Bytes, SipMsg)> {
    if let Some(r) = step.sent.requests.first() {
        return Some((r.bytes.clone(), request.clone()));
    }
    let reply = final_reply(step)?;
    let base = match reply.kind {
        ReplyKind::Relayed => SipMsg::parse(step.incoming.clone()).ok()?,
        _ => request.clone(),
    };
    Some((reply.bytes.clone(), base))
}

/// `Name` or `Name: text` → the name, and text the value must contain.
fn header_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (spec.trim(), None),
    }
}

/// Header lines named `name` whose value contains `value`.
fn count(msg: &SipMsg, name: &str, value: Option<&str>) -> usize {
    msg.headers_by_text(name).filter(|h| value.is_none_or(|v| msg.text(h.value).contains(v))).count()
}

fn check_headers(e: &Expect, step: &Step, request: &SipMsg, out: &mut Vec<String>) {
    let wants_headers = !(e.headers_added.is_empty()
        && e.headers_removed.is_empty()
        && e.headers_absent.is_empty()
        && e.header.is_empty());
    if !wants_headers && e.message.is_none() {
        return;
    }
    let Some((bytes, base)) = outgoing(step, request) else {
        out.push("headers: nothing was sent to look at".into());
        return;
    };
    if let Some(want) = &e.message {
        check_message(want, &bytes, out);
    }
    if !wants_headers {
        return;
    }
    let sent = match SipMsg::parse(bytes) {
        Ok(m) => m,
        Err(err) => {
            out.push(format!("headers: the message sent does not parse: {err}"));
            return;
        }
    };
    for spec in &e.headers_added {
        let (name, value) = header_spec(spec);
        let (before, after) = (count(&base, name, value), count(&sent, name, value));
        if after <= before {
            out.push(format!("headers_added: {spec:?} was not added ({before} before, {after} after)"));
        }
    }
    for spec in &e.headers_removed {
        let (name, value) = header_spec(spec);
        let (before, after) = (count(&base, name, value), count(&sent, name, value));
        if after >= before {
            out.push(format!("headers_removed: {spec:?} was not removed ({before} before, {after} after)"));
        }
    }
    for spec in &e.headers_absent {
        let (name, value) = header_spec(spec);
        let n = count(&sent, name, value);
        if n > 0 {
            out.push(format!("headers_absent: {spec:?} is there ({n} line(s))"));
        }
    }
    for (name, want) in &e.header {
        match sent.headers_by_text(name).next().map(|h| sent.text(h.value).trim().to_string()) {
            Some(got) if got == *want => {}
            Some(got) => out.push(format!("header {name}: expected {want:?}, got {got:?}")),
            None => out.push(format!("header {name}: expected {want:?}, got no such header")),
        }
    }
}

/// The whole message, byte for byte (line ends of the expectation taken as CRLF).
fn check_message(want: &str, got: &[u8], out: &mut Vec<String>) {
    let want = to_crlf(want.trim_start_matches(['\r', '\n']));
    let got = String::from_utf8_lossy(got);
    if want == got {
        return;
    }
    let (mut w, mut g) = (want.split("\r\n"), got.split("\r\n"));
    for line in 1.. {
        match (w.next(), g.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                out.push(format!(
                    "message: differs at line {line}: expected {:?}, got {:?}",
                    a.unwrap_or("<end>"),
                    b.unwrap_or("<end>")
                ));
                return;
            }
        }
    }
}

fn check_routes(e: &Expect, step: &Step, out: &mut Vec<String>) {
    let armed = &step.armed;
    for (key, want, got) in [
        ("failure_route", &e.failure_route, &armed.failure),
        ("onreply_route", &e.onreply_route, &armed.reply),
        ("branch_route", &e.branch_route, &armed.branch),
    ] {
        if let Some(want) = want {
            same_or_none(key, want, got.as_deref(), out);
        }
    }
}

fn check_flag(key: &str, want: Option<bool>, got: bool, out: &mut Vec<String>) {
    if let Some(want) = want {
        if want != got {
            out.push(format!("{key}: expected {want}, got {got}"));
        }
    }
}

fn check_flow(e: &Expect, step: &Step, out: &mut Vec<String>) {
    for want in &e.log {
        if !step.logs.iter().any(|l| l.text.contains(want.as_str())) {
            out.push(format!("log: no line contains {want:?}"));
        }
    }
    let dropped = step.hooks.iter().any(|h| h.end == HookEnd::Drop);
    check_flag("dropped", e.dropped, dropped, out);
    let error = step.hooks.iter().any(|h| matches!(h.end, HookEnd::Error(_)));
    check_flag("error", e.error, error, out);
    check_flag("transaction", e.transaction, step.transaction, out);
    check_flag("cancel_relayed", e.cancel_relayed, step.sent.cancelled_invite, out);
    check_flag("absorbed", e.absorbed, step.sent.absorbed, out);
}
