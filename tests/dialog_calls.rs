//! Dialog tracking end to end (issue 5): SIPp callers and backends through a proxy whose
//! script calls `create_dialog`.
//!
//! - Calls held open are listed by `dlg_list` as confirmed and counted in their profile;
//!   their BYEs end them.
//! - A dialog whose lifetime (`$DLG_timeout`) runs out with flag `B` is ended by the proxy,
//!   which sends a BYE to each side.
//! - A failed call leaves no dialog.

mod support;

use serde_json::Value;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// A route that creates a dialog for every INVITE, puts it in profile `calls`, and relays
/// it to `du`; `extra` runs right after `create_dialog`.
fn dialog_script(du: &str, flags: &str, extra: &str) -> String {
    format!(
        r#"// dialog test route
fn route() {{
{ROUTE_HEAD}    record_route();
    if is_method("INVITE") {{
        create_dialog("{flags}");
        set_dlg_profile("calls");
        {extra}
    }}
    $du = "{du}";
    if t_relay() < 0 {{ sl_reply_error(); }}
}}
"#
    )
}

const DIALOG_TOML: &str = "\n[dialog]\nprofiles_no_value = [\"calls\"]\n";

fn dialogs(proxy: &Proxy) -> Vec<Value> {
    ctl_json(proxy, &["dlg_list"])["Dialogs"].as_array().cloned().unwrap_or_default()
}

fn stat(proxy: &Proxy, name: &str) -> i64 {
    let v = ctl_json(proxy, &["get_statistics", name]);
    v[name].as_i64().unwrap_or_else(|| panic!("statistic {name} missing: {v}"))
}

/// Waits until `dlg_list` satisfies `ok`; returns the list.
fn wait_dialogs(proxy: &Proxy, within: Duration, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + within;
    loop {
        let list = dialogs(proxy);
        if ok(&list) {
            return list;
        }
        assert!(Instant::now() < end, "{what}: dlg_list is {list:?}\n{}", proxy.log_text());
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn held_calls_are_listed_and_counted_until_their_bye() {
    let uas_port = free_port();
    let mut proxy = Proxy::start_with("dlg-held", &dialog_script(&udp_uri(uas_port), "", ""), DIALOG_TOML);
    let mut uas = Sipp::uas("uas", "uas-call.xml", uas_port, Proto::Udp).calls(5).timeout_s(30).spawn(&proxy.dir);
    // Five calls placed at once, each held 3 s before its BYE.
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, Proto::Udp)
        .calls(5)
        .timeout_s(30)
        .arg("-r")
        .arg("50")
        .arg("-d")
        .arg("3000")
        .spawn(&proxy.dir);

    let up = wait_dialogs(&proxy, Duration::from_secs(10), "five confirmed dialogs", |l| {
        l.len() == 5 && l.iter().all(|d| d["state"] == 4)
    });
    for d in &up {
        assert!(d["callee_contact"].as_str().is_some_and(|c| c.contains(&uas_port.to_string())), "{d}");
        assert!(d["caller_contact"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
        assert_eq!(d["profiles"], serde_json::json!([{ "calls": "" }]), "{d}");
    }
    let size = ctl_json(&proxy, &["profile_get_size", "calls"]);
    assert_eq!(size["Profile"]["count"], 5, "{size}");
    assert_eq!(stat(&proxy, "dialog:active_dialogs"), 5);

    uac.assert_success();
    uas.assert_success();
    wait_dialogs(&proxy, Duration::from_secs(5), "no dialog after the BYEs", |l| l.is_empty());
    assert_eq!(ctl_json(&proxy, &["profile_get_size", "calls"])["Profile"]["count"], 0);
    assert_eq!(stat(&proxy, "dialog:processed_dialogs"), 5);
    assert_eq!(stat(&proxy, "dialog:active_dialogs"), 0);
    proxy.assert_alive();
}

#[test]
fn lifetime_expiry_sends_bye_both_ways() {
    let uas_port = free_port();
    let script = dialog_script(&udp_uri(uas_port), "B", "$DLG_timeout = 2;");
    let mut proxy = Proxy::start_with("dlg-timeout", &script, DIALOG_TOML);
    // Neither side ever hangs up: both wait for the BYE the proxy sends.
    let mut uas = Sipp::uas("uas", "uas-call.xml", uas_port, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    let mut uac =
        Sipp::uac("uac", "uac-call-wait-bye.xml", &proxy, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    let started = Instant::now();
    let up = wait_dialogs(&proxy, Duration::from_secs(5), "the call is up", |l| l.len() == 1);
    let timeout = up[0]["timeout"].as_i64().unwrap_or(-1);
    assert!((0..=2).contains(&timeout), "seconds left {timeout}: {}", up[0]);
    assert_eq!(up[0]["dlg_flags"], "B");

    uac.assert_success();
    uas.assert_success();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "ended after {took:?}, before its lifetime");
    wait_dialogs(&proxy, Duration::from_secs(2), "the dialog ended", |l| l.is_empty());
    assert_eq!(stat(&proxy, "dialog:expired_dialogs"), 1);
    assert!(proxy.log_text().contains("dialog lifetime over"), "{}", proxy.log_text());
    proxy.assert_alive();
}

#[test]
fn failed_call_leaves_no_dialog_and_mi_ends_a_call() {
    // A backend that refuses: the dialog ends with the 486.
    let busy_port = free_port();
    let proxy = Proxy::start_with("dlg-fail", &dialog_script(&udp_uri(busy_port), "", ""), DIALOG_TOML);
    let mut busy = Sipp::uas("busy", "uas-486.xml", busy_port, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-reject.xml", &proxy, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    uac.assert_success();
    busy.assert_success();
    wait_dialogs(&proxy, Duration::from_secs(3), "no dialog after a 486", |l| l.is_empty());
    assert_eq!(stat(&proxy, "dialog:failed_dialogs"), 1);
    assert_eq!(ctl_json(&proxy, &["profile_get_size", "calls"])["Profile"]["count"], 0);
    proxy.stop();

    // dlg_end_dlg: the operator ends a call; both sides get a BYE.
    let uas_port = free_port();
    let proxy = Proxy::start_with("dlg-mi-end", &dialog_script(&udp_uri(uas_port), "", ""), DIALOG_TOML);
    let mut uas = Sipp::uas("uas", "uas-call.xml", uas_port, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    let mut uac =
        Sipp::uac("uac", "uac-call-wait-bye.xml", &proxy, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    let up = wait_dialogs(&proxy, Duration::from_secs(5), "the call is up", |l| l.len() == 1 && l[0]["state"] == 4);
    let id = up[0]["ID"].as_str().unwrap_or_default().to_string();
    assert_eq!(ctl_json(&proxy, &["dlg_end_dlg", &id]), "OK");
    uac.assert_success();
    uas.assert_success();
    wait_dialogs(&proxy, Duration::from_secs(2), "the dialog ended", |l| l.is_empty());
}

#[test]
fn a_call_the_script_answers_itself_leaves_no_dialog() {
    // create_dialog, then the script refuses the call three ways: stateful reply, stateless
    // reply, drop. None may leave a dialog (or its profile count) behind.
    let script = format!(
        r#"fn route() {{
{ROUTE_HEAD}    record_route();
    create_dialog();
    set_dlg_profile("calls");
    if $rU == "stateful" {{ send_reply(503, "No Capacity"); exit(); }}
    if $rU == "stateless" {{ sl_send_reply(486, "Busy"); exit(); }}
    drop();
}}
"#
    );
    let mut proxy = Proxy::start_with("dlg-refused", &script, DIALOG_TOML);
    for (user, want) in [("stateful", Some(503)), ("stateless", Some(486)), ("dropped", None)] {
        let mut req = Req::new("INVITE", proxy.addr(), Proto::Udp);
        req.ruri = format!("sip:{user}@{}", proxy.addr());
        let got = udp_exchange(proxy.addr(), |local| req.build(local), Duration::from_millis(500));
        let codes: Vec<u16> = got.iter().flat_map(|m| status_codes(m)).filter(|c| *c >= 200).collect();
        assert_eq!(codes.first().copied(), want, "{user}: {codes:?}");
    }
    wait_dialogs(&proxy, Duration::from_secs(2), "no dialog left", |l| l.is_empty());
    assert_eq!(ctl_json(&proxy, &["profile_get_size", "calls"])["Profile"]["count"], 0);
    assert_eq!(stat(&proxy, "dialog:failed_dialogs"), 3);
    proxy.assert_alive();
}

#[test]
fn dialogs_written_in_real_time_survive_a_crash() {
    // db_mode 1 (seed 000's setting): every confirmed dialog is in the table as it happens,
    // so a proxy killed outright and started again knows the calls: their profile counts
    // come back, dlg_list shows them, and the BYEs sent after the restart end them.
    let uas_port = free_port();
    let toml = format!("{DIALOG_TOML}db_mode = 1\n");
    let mut proxy = Proxy::start_with("dlg-crash", &dialog_script(&udp_uri(uas_port), "", ""), &toml);
    let mut uas = Sipp::uas("uas", "uas-call.xml", uas_port, Proto::Udp).calls(3).timeout_s(40).spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, Proto::Udp)
        .calls(3)
        .timeout_s(40)
        .arg("-r")
        .arg("50")
        .arg("-d")
        .arg("6000")
        .message_log()
        .spawn(&proxy.dir);
    let before = wait_dialogs(&proxy, Duration::from_secs(5), "three confirmed calls", |l| {
        l.len() == 3 && l.iter().all(|d| d["state"] == 4)
    });
    // The ACK's state change is written too before the crash.
    thread::sleep(Duration::from_millis(300));

    proxy.crash_and_restart();
    let after = wait_dialogs(&proxy, Duration::from_secs(5), "the calls restored", |l| l.len() == 3);
    let ids = |l: &[Value]| {
        let mut v: Vec<String> = l.iter().map(|d| d["ID"].as_str().unwrap_or_default().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&before));
    for d in &after {
        assert_eq!(d["state"], 4, "{d}");
        assert!(d["callee_contact"].as_str().is_some_and(|c| c.contains(&uas_port.to_string())), "{d}");
    }
    assert_eq!(ctl_json(&proxy, &["profile_get_size", "calls"])["Profile"]["count"], 3);
    assert_eq!(stat(&proxy, "dialog:active_dialogs"), 3);

    // The callers hang up after the restart: every BYE reaches the backend and is answered.
    uac.assert_success();
    uas.assert_success();
    assert_eq!(uac.received_starting("SIP/2.0 200").len(), 6, "three 200s to INVITE, three to BYE");
    wait_dialogs(&proxy, Duration::from_secs(3), "the calls ended", |l| l.is_empty());
    assert_eq!(ctl_json(&proxy, &["profile_get_size", "calls"])["Profile"]["count"], 0);
    // And the table is empty again.
    proxy.crash_and_restart();
    thread::sleep(Duration::from_millis(500));
    assert!(dialogs(&proxy).is_empty());
    proxy.assert_alive();
}
