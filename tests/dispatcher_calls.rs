//! The dispatcher end to end (issue 4): destinations provisioned in the proxy's own SQLite
//! database with `siprox ctl dispatcher add`, loaded with `ds_reload`, SIPp backends that
//! answer calls and OPTIONS probes.
//!
//! - Distribution: weighted round robin is exact, Call-ID hashing uses every backend.
//! - Probing: a backend stopped mid-run leaves the set within interval × threshold plus a
//!   second, calls carry on through failover, and it comes back when it answers again.
//! - `ds_reload` under load: a fourth backend starts taking calls, none fails.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// State of every destination (`URI` → `state`) from `ds_list`.
fn states(proxy: &Proxy) -> HashMap<String, String> {
    let v: Value = serde_json::from_str(&ctl(proxy, &["--json", "ds_list"])).expect("ds_list --json");
    let mut out = HashMap::new();
    for part in v["PARTITIONS"].as_array().into_iter().flatten() {
        for set in part["SETS"].as_array().into_iter().flatten() {
            for d in set["Destinations"].as_array().into_iter().flatten() {
                out.insert(d["URI"].as_str().unwrap_or("").to_string(), d["state"].as_str().unwrap_or("").to_string());
            }
        }
    }
    out
}

/// Waits until the `state` column of `uri`'s row (`siprox ctl dispatcher list`) is `state`.
fn wait_table_state(proxy: &Proxy, uri: &str, state: i64) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Value = serde_json::from_str(&ctl(proxy, &["--json", "dispatcher", "list"])).expect("list --json");
        let rows: Vec<&Value> = match &v {
            Value::Array(a) => a.iter().collect(),
            other => other["rows"].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
        };
        let now = rows.iter().find(|r| r["destination"] == uri).and_then(|r| r["state"].as_i64());
        if now == Some(state) {
            return;
        }
        assert!(Instant::now() < end, "state column of {uri} is {now:?}, not {state}: {v}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn uri(port: u16) -> String {
    format!("sip:127.0.0.1:{port}")
}

/// A route that picks from set `set` with algorithm `alg` and logs the pick.
fn picking(set: u32, alg: u32, version: u32) -> String {
    format!(
        r#"// dispatcher test route, version {version}
fn route() {{
{ROUTE_HEAD}    record_route();
    if ds_select_dst({set}, {alg}) != 1 {{
        send_reply(503, "No destination");
        exit();
    }}
    xlog("L_INFO", "DS-PICK v{version} $du\n");
    if t_relay() < 0 {{ sl_reply_error(); }}
}}
"#
    )
}

/// How often each destination was picked by route version `version`.
fn picks(proxy: &Proxy, version: u32) -> HashMap<String, usize> {
    let marker = format!("DS-PICK v{version} ");
    let mut out = HashMap::new();
    for line in proxy.log_text().lines() {
        if let Some(rest) = line.split(&marker).nth(1) {
            let du = rest.split_whitespace().next().unwrap_or("").to_string();
            *out.entry(du).or_insert(0) += 1;
        }
    }
    out
}

/// Rewrites the route script and waits until the proxy runs it.
fn load_script(proxy: &Proxy, text: &str) {
    let before = proxy.log_text().matches("script reloaded").count();
    fs::write(proxy.dir.join("route.rhai"), text).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while proxy.log_text().matches("script reloaded").count() == before {
        assert!(Instant::now() < end, "the new script was not loaded:\n{}", proxy.log_text());
        thread::sleep(Duration::from_millis(20));
    }
}

fn backends(proxy: &Proxy, n: usize) -> (Vec<u16>, Vec<RunningSipp>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let running = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            Sipp::uas(&format!("uas-{i}"), "uas-ds.xml", p, Proto::Udp)
                .calls(1_000_000)
                .timeout_s(120)
                .spawn(&proxy.dir)
        })
        .collect();
    (ports, running)
}

fn calls(proxy: &Proxy, name: &str, n: u32, rate: u32) -> RunningSipp {
    Sipp::uac(name, "uac-call.xml", proxy, Proto::Udp)
        .calls(n)
        .timeout_s(60)
        .arg("-r")
        .arg(&rate.to_string())
        .spawn(&proxy.dir)
}

/// Seed 000's dispatcher route (scripts/lb.rhai before it moved INVITEs to the load
/// balancer): INVITE and REGISTER by Call-ID hash over set 1 with a failover list, and a
/// failure_route that marks a destination answering 408/5xx for probing and tries the next.
const DS_FAILOVER_ROUTE: &str = r#"fn route() {
    if mf_process_maxfwd_header(10) == -1 {
        sl_send_reply(483, "Too Many Hops");
        exit();
    }

    if has_totag() {
        // Sequential request: obey the recorded route.
        loose_route();
        if t_relay() < 0 {
            sl_reply_error();
        }
        exit();
    }
    // Initial request.
    record_route();

    // CANCEL and retransmissions.
    if is_method("CANCEL") {
        if t_check_trans() == 1 {
            t_relay();
        }
        exit();
    }

    if is_method("INVITE|REGISTER") {
        // Hash on Call-ID; `f` keeps the other active destinations for failover.
        if ds_select_dst(1, 0, "f") != 1 {
            send_reply(503, "Service Unavailable");
            exit();
        }
        t_on_failure("ds_failover");
    } else {
        append_to_reply("Allow: INVITE, ACK, BYE, CANCEL, REGISTER\r\n");
        send_reply(405, "Method Not Allowed");
        exit();
    }

    if t_relay() < 0 {
        sl_reply_error();
    }
}

// The destination did not answer (408) or failed (5xx): the next one of the set.
fn failure_route_ds_failover() {
    if t_was_cancelled() {
        exit();
    }
    if t_check_status("408|5[0-9][0-9]") {
        // Probing decides when it is back (after ds_probing_threshold such calls).
        ds_mark_dst("p");
        if ds_next_dst() == 1 {
            t_on_failure("ds_failover");
            if t_relay() < 0 {
                send_reply(503, "Service Unavailable");
            }
            exit();
        }
        send_reply(503, "Service Unavailable");
    }
}
"#;

#[test]
fn round_robin_is_exact_weights_proportional_and_hashing_uses_every_backend() {
    let proxy = Proxy::start("ds-spread", &picking(1, 4, 1));
    let (ports, _uas) = backends(&proxy, 3);
    for (i, &p) in ports.iter().enumerate() {
        ctl(&proxy, &["dispatcher", "add", "1", &uri(p)]);
        ctl(&proxy, &["dispatcher", "add", "2", &uri(p), &format!("weight={}", i + 1)]);
    }
    ctl(&proxy, &["ds_reload"]);
    assert_eq!(states(&proxy).len(), 3, "three destinations loaded: {:?}", states(&proxy));

    // Algorithm 4 with equal weights: plain round robin, exact.
    calls(&proxy, "uac-rr", 30, 30).assert_success();
    let got = picks(&proxy, 1);
    for &p in &ports {
        assert_eq!(got.get(&uri(p)), Some(&10), "round robin over 3 x 30 calls: {got:?}");
    }

    // Algorithm 4 with weights 1, 2, 3: each entry is kept for `weight` picks.
    load_script(&proxy, &picking(2, 4, 2));
    calls(&proxy, "uac-weights", 60, 40).assert_success();
    let got = picks(&proxy, 2);
    let counts: Vec<usize> = ports.iter().map(|&p| got.get(&uri(p)).copied().unwrap_or(0)).collect();
    assert_eq!(counts, [10, 20, 30], "weights 1:2:3 over 60 calls: {got:?}");

    // Algorithm 0: Call-ID hash; every backend takes a share.
    load_script(&proxy, &picking(1, 0, 3));
    calls(&proxy, "uac-hash", 60, 40).assert_success();
    let got = picks(&proxy, 3);
    for &p in &ports {
        let n = got.get(&uri(p)).copied().unwrap_or(0);
        assert!(n >= 5, "Call-ID hashing left {} nearly unused: {got:?}", uri(p));
    }
    proxy.stop();
}

#[test]
fn a_dead_backend_is_probed_away_calls_fail_over_and_it_comes_back() {
    let script = DS_FAILOVER_ROUTE.to_string()
        + "\nfn event_route_E_DISPATCHER_STATUS() {\n    xlog(\"L_INFO\", \"DS-EVENT $param(group) $param(address) $param(status)\\n\");\n}\n";
    let probing = "\n[dispatcher]\nds_ping_interval = 1\nds_probing_threshold = 2\nds_probing_mode = 1\n";
    let proxy = Proxy::start_with("ds-probe", &script, probing);
    let (ports, mut uas) = backends(&proxy, 3);
    for &p in &ports {
        ctl(&proxy, &["dispatcher", "add", "1", &uri(p)]);
    }
    ctl(&proxy, &["ds_reload"]);
    let all_active = |s: &HashMap<String, String>| ports.iter().all(|&p| s.get(&uri(p)).is_some_and(|x| x == "Active"));
    assert!(all_active(&states(&proxy)), "{:?}", states(&proxy));

    let mut uac = calls(&proxy, "uac", 300, 25);
    thread::sleep(Duration::from_secs(3));
    let dead = uri(ports[1]);
    uas[1].kill();
    let killed = Instant::now();
    // ds_ping_interval x ds_probing_threshold + 1 s (and a little scheduling slack).
    let limit = Duration::from_millis(3500);
    loop {
        let st = states(&proxy);
        if st.get(&dead).is_some_and(|s| s != "Active") {
            break;
        }
        assert!(killed.elapsed() < limit, "{dead} still {:?} after {:?}", st.get(&dead), killed.elapsed());
        thread::sleep(Duration::from_millis(100));
    }
    let found_after = killed.elapsed();
    // persistent_state (on by default): the table's state column follows (2 = probing).
    wait_table_state(&proxy, &dead, 2);

    // It answers again: the next good probe brings it back.
    thread::sleep(Duration::from_secs(2));
    let _again =
        Sipp::uas("uas-1-again", "uas-ds.xml", ports[1], Proto::Udp).calls(1_000_000).timeout_s(120).spawn(&proxy.dir);
    let back = Instant::now();
    while states(&proxy).get(&dead).is_none_or(|s| s != "Active") {
        assert!(back.elapsed() < Duration::from_secs(4), "{dead} not re-enabled: {:?}", states(&proxy));
        thread::sleep(Duration::from_millis(100));
    }

    wait_table_state(&proxy, &dead, 0);

    // Only calls in flight at the kill may fail (their BYE goes to the dead backend).
    let _ = uac.wait();
    let failed = uac.failed_calls().unwrap_or_else(|| panic!("no SIPp statistics:\n{}", uac.report()));
    assert!(failed <= 3, "{failed} calls failed (found dead after {found_after:?}):\n{}", uac.report());
    let log = proxy.log_text();
    assert!(log.contains("dispatcher destination state changed"), "state changes are logged:\n{log}");
    for status in ["probing", "active"] {
        let event = format!("DS-EVENT 1 {dead} {status}");
        assert!(log.contains(&event), "event_route_E_DISPATCHER_STATUS saw no `{event}`:\n{log}");
    }
    proxy.stop();
}

#[test]
fn ds_reload_under_load_brings_in_a_fourth_backend_without_a_failed_call() {
    let proxy = Proxy::start("ds-reload", &picking(1, 4, 1));
    let (ports, _uas) = backends(&proxy, 4);
    for &p in &ports[..3] {
        ctl(&proxy, &["dispatcher", "add", "1", &uri(p)]);
    }
    ctl(&proxy, &["ds_reload"]);
    let mut uac = calls(&proxy, "uac", 200, 40);
    thread::sleep(Duration::from_secs(2));
    ctl(&proxy, &["dispatcher", "add", "1", &uri(ports[3])]);
    ctl(&proxy, &["ds_reload"]);
    uac.assert_success();
    let got = picks(&proxy, 1);
    assert!(got.get(&uri(ports[3])).copied().unwrap_or(0) > 0, "the fourth backend took no call: {got:?}");
    proxy.stop();
}

/// `dispatcher:probes_not_sent` of `proxy`.
fn probes_not_sent(proxy: &Proxy) -> u64 {
    let stats = ctl_json(proxy, &["get_statistics", "dispatcher:"]);
    stats["dispatcher:probes_not_sent"].as_u64().unwrap_or_else(|| panic!("no probes_not_sent: {stats}"))
}

/// A probe that cannot leave this host records nothing. The standby listens only on
/// 192.0.2.1, an address this host does not hold (an HA standby on the virtual IP, bound
/// with IP_FREEBIND): every probe fails to send, and a destination that never answers stays
/// Active through several rounds. The same destination behind a normal proxy is moved to
/// probing at the first unanswered round (the control).
#[test]
fn probes_that_cannot_be_sent_leave_the_destination_alone() {
    let probing = "\n[dispatcher]\nds_ping_interval = 1\nds_probing_threshold = 1\nds_probing_mode = 1\n";
    let script = "fn route() { exit(); }";
    let silent = SilentUdp::start();
    let dest = uri(silent.port);
    let vip = format!("udp:192.0.2.1:{}", free_port());
    let standby = Proxy::start_listening("ds-standby", script, &[&vip], probing);
    let normal = Proxy::start_with("ds-normal", script, probing);
    for p in [&standby, &normal] {
        ctl(p, &["dispatcher", "add", "1", &dest]);
        ctl(p, &["ds_reload"]);
    }

    let start = Instant::now();
    while states(&normal).get(&dest).is_some_and(|s| s == "Active") {
        assert!(start.elapsed() < Duration::from_secs(5), "the control never saw {dest} fail: {:?}", states(&normal));
        thread::sleep(Duration::from_millis(100));
    }
    while probes_not_sent(&standby) < 3 {
        assert!(start.elapsed() < Duration::from_secs(8), "the standby did not try 3 probes:\n{}", standby.log_text());
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(states(&standby).get(&dest).map(String::as_str), Some("Active"), "unsent probes changed the state");
    let from_standby = silent.received().iter().filter(|m| String::from_utf8_lossy(m).contains("192.0.2.1")).count();
    assert_eq!(from_standby, 0, "a probe left the standby");
    assert!(silent.count_starting("OPTIONS ") >= 1, "the control's probes arrived");
    standby.stop();
    normal.stop();
}
