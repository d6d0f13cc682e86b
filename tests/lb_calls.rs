//! The load balancer end to end: destinations provisioned in the proxy's own SQLite database
//! and loaded with `lb_reload`, SIPp backends holding calls, a SIPp caller placing them.
//!
//! - Relative mode (`load_balance("1", "pstn", "1")`, seed 000) spreads held calls 1:2 over
//!   capacities 10 and 20; a call beyond the total gets 503; after the BYEs `lb_list` shows
//!   no load.
//! - Absolute mode fills the destination with the most free channels first.
//! - A first choice that does not answer fails over with `lb_next` in a failure_route; a
//!   backend that stops answering OPTIONS is disabled by probing (and raises
//!   `event_route_E_LOAD_BALANCER_STATUS`), then enabled again when it answers.

mod support;

use serde_json::Value;
use siprox::db::Db;
use siprox::modules::load_balancer::{store, LbRow};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Adds `rows` to the proxy's database (its `siprox.db`) and reloads them.
fn provision(proxy: &Proxy, rows: &[LbRow]) {
    provision_at(proxy, &format!("sqlite://{}", proxy.dir.join("siprox.db").display()), rows);
}

/// Adds `rows` to the database at `url` (the proxy's) and reloads them.
fn provision_at(proxy: &Proxy, url: &str, rows: &[LbRow]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db = Db::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        // The proxy migrated it at start (this pool only writes rows).
        for r in rows {
            store::insert(&db, store::DEFAULT_TABLE, r).await.expect("insert a load_balancer row");
        }
        db.close().await;
    });
    assert_eq!(ctl_json(proxy, &["lb_reload"]), "OK");
}

fn row(group: i64, port: u16, resources: &str, probe_mode: i64) -> LbRow {
    LbRow { probe_mode, ..LbRow::new(group, &udp_uri(port), resources) }
}

/// `(resource, max, load)` of one destination.
type Resources = Vec<(String, i64, i64)>;

/// `lb_list`: (uri, enabled, resources) in id order.
fn lb_list(proxy: &Proxy) -> Vec<(String, String, Resources)> {
    let v = ctl_json(proxy, &["lb_list"]);
    let mut out = Vec::new();
    for d in v["Destinations"].as_array().into_iter().flatten() {
        let res = d["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["max"].as_i64().unwrap_or(-1),
                    r["load"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        out.push((d["uri"].as_str().unwrap_or("").to_string(), d["enabled"].as_str().unwrap_or("").to_string(), res));
    }
    out
}

/// The `pstn` load of each destination, in id order.
fn loads(proxy: &Proxy) -> Vec<i64> {
    lb_list(proxy).iter().map(|(_, _, r)| r.iter().find(|x| x.0 == "pstn").map_or(-1, |x| x.2)).collect()
}

/// INVITEs a backend received, once its message log stops growing.
fn invites(uas: &RunningSipp) -> usize {
    let mut last = usize::MAX;
    for _ in 0..30 {
        let n = uas.received_requests("INVITE");
        if n == last {
            return n;
        }
        last = n;
        thread::sleep(Duration::from_millis(100));
    }
    last
}

/// Route: initial INVITEs through `call` (a load_balance call), 503 when it fails.
fn lb_script(call: &str) -> String {
    format!(
        r#"// load_balancer test route
fn route() {{
{ROUTE_HEAD}    record_route();
    if is_method("INVITE") {{
        if {call} < 0 {{
            xlog("L_INFO", "LB-FULL $retcode\n");
            send_reply(503, "Service Unavailable");
            exit();
        }}
        t_on_failure("lb");
    }}
    if t_relay() < 0 {{ sl_reply_error(); }}
}}

fn failure_route_lb() {{
    if t_was_cancelled() {{ exit(); }}
    if t_check_status("408|5[0-9][0-9]") {{
        if lb_next() == 1 {{
            xlog("L_INFO", "LB-NEXT $du\n");
            t_on_failure("lb");
            t_relay();
            exit();
        }}
        xlog("L_INFO", "LB-NONEXT $retcode\n");
        send_reply(503, "Service Unavailable");
    }}
}}

fn event_route_E_LOAD_BALANCER_STATUS() {{
    xlog("L_INFO", "LB-EVENT $param(group) $param(uri) $param(status)\n");
}}
"#
    )
}

fn backend(proxy: &Proxy, name: &str, port: u16) -> RunningSipp {
    Sipp::uas(name, "uas-ds.xml", port, Proto::Udp).calls(1_000_000).timeout_s(60).message_log().spawn(&proxy.dir)
}

/// `n` calls placed at 100/s, each held `hold_ms` before its BYE.
fn held_calls(proxy: &Proxy, name: &str, n: u32, hold_ms: u32) -> RunningSipp {
    Sipp::uac(name, "uac-call.xml", proxy, Proto::Udp)
        .calls(n)
        .timeout_s(40)
        .arg("-r")
        .arg("100")
        .arg("-l")
        .arg(&n.to_string())
        .arg("-d")
        .arg(&hold_ms.to_string())
        .spawn(&proxy.dir)
}

/// One INVITE straight from a socket; the final status it got (None: none).
fn one_invite(proxy: &Proxy) -> Option<u16> {
    let req = Req::new("INVITE", proxy.addr(), Proto::Udp);
    let got = udp_exchange(proxy.addr(), |local| req.build(local), Duration::from_millis(800));
    got.iter().flat_map(|m| status_codes(m)).find(|c| *c >= 200)
}

#[test]
fn relative_mode_spreads_by_capacity_refuses_overflow_and_load_drops_after_bye() {
    let proxy = Proxy::start_with(
        "lb-relative",
        &lb_script(r#"load_balance("1", "pstn", "1")"#),
        "\n[load_balancer]\nprobing_interval = 0\n",
    );
    let (pa, pb) = (free_port(), free_port());
    let (mut a, mut b) = (backend(&proxy, "uas-a", pa), backend(&proxy, "uas-b", pb));
    provision(&proxy, &[row(1, pa, "pstn=10", 0), row(1, pb, "pstn=20", 0)]);
    assert_eq!(loads(&proxy), [0, 0]);

    // 30 calls, all up at once for 5 s: exactly the capacity.
    let mut uac = held_calls(&proxy, "uac", 30, 5000);
    let up = wait_until(Duration::from_secs(5), "30 calls counted", || loads(&proxy), |l| l.iter().sum::<i64>() == 30);
    assert_eq!(up, [10, 20], "relative mode fills 10 and 20 channels in step");

    // One more while they are held: no capacity anywhere, 503.
    assert_eq!(one_invite(&proxy), Some(503));
    assert!(proxy.log_text().contains("LB-FULL -2"), "load_balance returned -2:\n{}", proxy.log_text());

    uac.assert_success();
    assert_eq!((invites(&a), invites(&b)), (10, 20), "calls each backend received");
    wait_until(Duration::from_secs(5), "no load after the BYEs", || loads(&proxy), |l| l == &[0, 0]);
    let list = lb_list(&proxy);
    assert!(list.iter().all(|(_, en, _)| en == "yes"), "{list:?}");
    a.kill();
    b.kill();
    proxy.stop();
}

#[test]
fn absolute_mode_fills_the_most_free_channels_first() {
    let proxy = Proxy::start_with(
        "lb-absolute",
        &lb_script(r#"lb_start(1, "pstn")"#),
        "\n[load_balancer]\nprobing_interval = 0\n",
    );
    let (pa, pb) = (free_port(), free_port());
    let (mut a, mut b) = (backend(&proxy, "uas-a", pa), backend(&proxy, "uas-b", pb));
    provision(&proxy, &[row(1, pa, "pstn=10", 0), row(1, pb, "pstn=20", 0)]);

    // b has 10 more free channels: it takes the first 10; then they alternate, a first
    // (equal free channels go to the first row): 16 calls = a 3, b 13.
    let mut uac = held_calls(&proxy, "uac", 16, 4000);
    let up = wait_until(Duration::from_secs(5), "16 calls counted", || loads(&proxy), |l| l.iter().sum::<i64>() == 16);
    assert_eq!(up, [3, 13]);
    uac.assert_success();
    assert_eq!((invites(&a), invites(&b)), (3, 13));
    wait_until(Duration::from_secs(5), "no load after the BYEs", || loads(&proxy), |l| l == &[0, 0]);
    a.kill();
    b.kill();
    proxy.stop();
}

#[test]
fn lb_next_fails_over_and_probing_disables_and_enables_a_backend() {
    let probing = "\n[load_balancer]\nprobing_interval = 1\n";
    let proxy = Proxy::start_with("lb-failover", &lb_script(r#"lb_start_or_next(1, "pstn")"#), probing);
    // a never answers (and is never probed); b answers calls and OPTIONS, probed always.
    let silent = SilentUdp::start();
    let pb = free_port();
    let mut b = backend(&proxy, "uas-b", pb);
    provision(&proxy, &[row(1, silent.port, "pstn=20", 0), row(1, pb, "pstn=10", 2)]);

    // a has more free channels: tried first, times out (fr_timeout 2 s), lb_next moves the
    // call to b, which takes it.
    let mut uac = held_calls(&proxy, "uac-failover", 1, 500);
    uac.assert_success();
    assert!(silent.count_starting("INVITE ") >= 1, "a got the INVITE first");
    assert_eq!(invites(&b), 1, "b took the call");
    let log = proxy.log_text();
    assert!(log.contains(&format!("LB-NEXT {}", udp_uri(pb))), "lb_next chose b:\n{log}");
    wait_until(Duration::from_secs(5), "no load after the BYE", || loads(&proxy), |l| l == &[0, 0]);

    // b stops answering: probing disables it within interval + probe timeout (+ slack).
    b.kill();
    let killed = Instant::now();
    let enabled_b = || lb_list(&proxy).get(1).map(|d| d.1.clone()).unwrap_or_default();
    wait_until(Duration::from_secs(4), "b disabled by probing", enabled_b, |e| e == "no");
    let took = killed.elapsed();
    let event = format!("LB-EVENT 1 {} disabled", udp_uri(pb));
    wait_until(Duration::from_secs(2), "the disabled event", || proxy.log_text(), |l| l.contains(&event));

    // Now a call: a (silent) is the only enabled destination; it fails and lb_next has
    // nothing left: 503.
    let mut refused =
        Sipp::uac("uac-refused", "uac-reject.xml", &proxy, Proto::Udp).calls(1).timeout_s(20).spawn(&proxy.dir);
    refused.assert_success();
    assert!(proxy.log_text().contains("LB-NONEXT -3"), "{}", proxy.log_text());

    // b answers again: the next probe enables it.
    let b2 = backend(&proxy, "uas-b-again", pb);
    wait_until(Duration::from_secs(4), "b enabled again", enabled_b, |e| e == "yes");
    let event = format!("LB-EVENT 1 {} enabled", udp_uri(pb));
    wait_until(Duration::from_secs(2), "the enabled event", || proxy.log_text(), |l| l.contains(&event));
    assert!(took < Duration::from_secs(4), "found after {took:?}");
    drop(b2);
    let v: Value = ctl_json(&proxy, &["lb_list"]);
    assert_eq!(v["Destinations"][1]["auto-re"], "on", "{v}");
    proxy.stop();
}

// ------------------------------------------------------------ restart mid-call

/// Seed 000's route (scripts/lb.rhai) on `db` with dialogs written in real time: six held
/// calls spread 2:4 over pstn=10 and pstn=20, the proxy killed and started again while they
/// are up. After the restart `dlg_list` shows the six calls, `lb_list` the same load, and
/// the BYEs the callers send then reach the backend of each call and bring the load to 0.
fn restart_case(db: &testdb::TestDb, label: &str) {
    let toml =
        format!("\n[db]\nurl = \"{}\"\n\n[dialog]\ndb_mode = 1\n\n[load_balancer]\nprobing_interval = 0\n", db.url);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("lb.rhai");
    let mut proxy = Proxy::start_script_file(label, &script, &toml);
    let (pa, pb) = (free_port(), free_port());
    let (mut a, mut b) = (backend(&proxy, "uas-a", pa), backend(&proxy, "uas-b", pb));
    provision_at(&proxy, &db.url, &[row(1, pa, "pstn=10", 0), row(1, pb, "pstn=20", 0)]);

    let mut uac = held_calls(&proxy, "uac", 6, 8000);
    let up = wait_until(Duration::from_secs(5), "six calls counted", || loads(&proxy), |l| l.iter().sum::<i64>() == 6);
    assert_eq!(up, [2, 4], "relative load over 10 and 20 channels");
    let calls_of = |proxy: &Proxy| {
        let v = ctl_json(proxy, &["dlg_list"]);
        let mut ids: Vec<String> =
            v["Dialogs"].as_array().into_iter().flatten().map(|d| format!("{} {}", d["ID"], d["state"])).collect();
        ids.sort();
        ids
    };
    let before = wait_until(
        Duration::from_secs(5),
        "six confirmed dialogs",
        || calls_of(&proxy),
        |l| l.len() == 6 && l.iter().all(|d| d.ends_with(" 4")),
    );
    thread::sleep(Duration::from_millis(300));

    proxy.crash_and_restart();
    let after = wait_until(Duration::from_secs(10), "the calls restored", || calls_of(&proxy), |l| l.len() == 6);
    assert_eq!(after, before, "dlg_list after the restart");
    assert_eq!(wait_until(Duration::from_secs(5), "the load restored", || loads(&proxy), |l| l == &[2, 4]), [2, 4]);

    uac.assert_success();
    assert_eq!((a.received_requests("BYE"), b.received_requests("BYE")), (2, 4), "BYEs reached each call's backend");
    wait_until(Duration::from_secs(5), "no load after the BYEs", || loads(&proxy), |l| l == &[0, 0]);
    assert!(calls_of(&proxy).is_empty());
    a.kill();
    b.kill();
    proxy.stop();
}

#[test]
fn restart_mid_call_sqlite() {
    restart_case(&testdb::TestDb::sqlite("lb-restart-sqlite"), "lb-restart-sqlite");
}

#[test]
fn restart_mid_call_postgres() {
    if let Some(db) = testdb::TestDb::server(siprox::db::Backend::Postgres, "lb restart mid-call") {
        restart_case(&db, "lb-restart-pg");
    }
}

#[test]
fn restart_mid_call_mysql() {
    if let Some(db) = testdb::TestDb::server(siprox::db::Backend::MySql, "lb restart mid-call") {
        restart_case(&db, "lb-restart-mysql");
    }
}
