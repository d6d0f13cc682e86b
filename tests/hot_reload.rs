//! Hot reload under load (issue 3): the script is rewritten dozens of times while SIPp
//! places calls through the proxy, alternating rename-over and in-place writes, good
//! versions and broken ones. No call may fail; every good version must reach the backend
//! within a second of its save and older versions must stop by then; broken versions never
//! load and are reported with `file:line:col`. And a transaction keeps the script version
//! that routed it: its failure_route runs the old code after a reload.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use support::*;

/// Calls per second during the reload storm.
const RATE: u32 = 300;
/// Script writes during the storm, and the time between two.
const SAVES: usize = 24;
const SAVE_EVERY: Duration = Duration::from_millis(600);

/// A good version `v`: relays to `backend` and stamps the INVITE with its version.
fn good(v: usize, backend: u16) -> String {
    format!(
        r#"// hot reload test, version {v}
fn route() {{
{ROUTE_HEAD}    record_route();
    append_hf("X-Script-Version: {v}\r\n");
    $du = "sip:127.0.0.1:{backend}";
    t_on_failure("next");
    if t_relay() < 0 {{ sl_reply_error(); }}
}}

fn failure_route_next() {{
    if t_was_cancelled() {{ exit(); }}
}}
"#
    )
}

/// The kinds of broken script a reload must refuse, each on its own marked line.
const BROKEN: [&str; 4] = [
    "    let x = ;",                     // syntax error
    "    no_such_function_in_siprox();", // unknown function
    "    has_totag(1, 2);",              // wrong number of arguments
    "    t_on_branch(\"not_defined\");", // a route that does not exist
];

/// Version `v` made broken by `BROKEN[kind]` as the first line of `route()`; returns the
/// text and that line's number.
fn broken(v: usize, kind: usize, backend: u16) -> (String, usize) {
    let text = good(v, backend);
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("fn route()")).expect("route line") + 1;
    lines.insert(at, BROKEN[kind]);
    (lines.join("\n") + "\n", at + 1)
}

/// Saves like an editor that writes a temp file and renames it over the script.
fn save_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".route.rhai.swp");
    fs::write(&tmp, text).expect("write temp script");
    fs::rename(&tmp, path).expect("rename over script");
}

/// Saves in place (truncate and write the same inode).
fn save_in_place(path: &Path, text: &str) {
    fs::write(path, text).expect("write script in place");
}

fn version_of(invite: &str) -> Option<usize> {
    header_values(invite, "X-Script-Version").first().and_then(|v| v.parse().ok())
}

#[test]
fn reload_storm_under_load_loses_no_call() {
    let backend = free_port();
    let proxy = Proxy::start("hot-reload", &good(0, backend));
    let script = proxy.dir.join("route.rhai");
    let total_calls = RATE * (SAVE_EVERY.as_millis() as u32 * SAVES as u32 / 1000 + 4);

    let mut uas = Sipp::uas("uas", "uas-call.xml", backend, Proto::Udp)
        .calls(total_calls)
        .timeout_s(60)
        .message_log()
        .spawn(&proxy.dir);
    let mut uac = Sipp::uac("uac", "uac-call.xml", &proxy, Proto::Udp)
        .calls(total_calls)
        .timeout_s(60)
        .arg("-r")
        .arg(&RATE.to_string())
        .arg("-l")
        .arg("200")
        .spawn(&proxy.dir);
    thread::sleep(Duration::from_secs(1));

    // (version, saved at) of every good save; (version, line) of every broken one.
    let mut good_saves: Vec<(usize, SystemTime)> = Vec::new();
    let mut broken_saves: Vec<(usize, usize)> = Vec::new();
    for i in 0..SAVES {
        let v = i + 1;
        // Two good saves, then a broken one, cycling through the broken kinds.
        let (text, bad_line) = if i % 3 == 2 {
            let (t, line) = broken(v, (i / 3) % BROKEN.len(), backend);
            (t, Some(line))
        } else {
            (good(v, backend), None)
        };
        let saved_at = SystemTime::now();
        if i % 2 == 0 {
            save_rename(&script, &text);
        } else {
            save_in_place(&script, &text);
        }
        match bad_line {
            Some(line) => broken_saves.push((v, line)),
            None => good_saves.push((v, saved_at)),
        }
        thread::sleep(SAVE_EVERY);
    }

    uac.assert_success();
    uas.assert_success();
    let log = proxy.log_text();

    // Every INVITE the backend got, with when it got it.
    let invites: Vec<(SystemTime, usize)> = logged_messages_at(&uas.message_log_text(), "received")
        .into_iter()
        .filter(|(_, m)| m.starts_with("INVITE "))
        .map(|(t, m)| (t, version_of(&m).unwrap_or_else(|| panic!("INVITE without X-Script-Version:\n{m}"))))
        .collect();
    assert!(invites.len() as u32 >= total_calls, "backend saw {} INVITEs of {total_calls}", invites.len());

    let second = Duration::from_secs(1);
    for &(v, saved) in &good_saves {
        let first_seen = invites.iter().find(|(_, ver)| *ver == v).map(|(t, _)| *t);
        let first_seen = first_seen.unwrap_or_else(|| panic!("version {v} never reached the backend\n{log}"));
        let delay = first_seen.duration_since(saved).unwrap_or_default();
        assert!(delay <= second, "version {v} reached the backend {delay:?} after its save (limit 1 s)");
        let stale = invites.iter().find(|(t, ver)| *ver < v && t.duration_since(saved).is_ok_and(|d| d > second));
        assert!(stale.is_none(), "an older version ({stale:?}) still routed more than 1 s after version {v} was saved");
    }
    for &(v, line) in &broken_saves {
        assert!(!invites.iter().any(|(_, ver)| *ver == v), "broken version {v} was loaded");
        let at = format!("route.rhai:{line}:");
        assert!(
            log.lines().any(|l| l.contains("script reload refused") && l.contains(&at)),
            "broken version {v} not reported at {at}\n{log}"
        );
    }

    // The management interface tells the same story.
    let out = Command::new(siprox_bin())
        .args(["ctl", "--json", "-c"])
        .arg(proxy.config_path())
        .arg("script_status")
        .output()
        .expect("run siprox ctl");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ctl --json: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(status["Version"], good_saves.len() as u64 + 1, "{status}");
    assert!(status["Reload failures"].as_u64().unwrap_or(0) >= broken_saves.len() as u64, "{status}");
    let last = status["Last error"]["Message"].as_str().unwrap_or("");
    assert!(last.contains("route.rhai:3:"), "{status}");
    proxy.stop();
}

/// version `v` of the failure-route test: the call goes to `a` (which answers 503), and the
/// failure route relays it to `b` marked with the version that ran it.
fn failover(v: usize, a: u16, b: u16) -> String {
    format!(
        r#"// failure_route pinning test, version {v}
fn route() {{
{ROUTE_HEAD}    record_route();
    $du = "sip:127.0.0.1:{a}";
    t_on_failure("next");
    if t_relay() < 0 {{ sl_reply_error(); }}
}}

fn failure_route_next() {{
    if t_was_cancelled() {{ exit(); }}
    append_hf("X-Failure-Version: {v}\r\n");
    $du = "sip:127.0.0.1:{b}";
    t_relay();
}}
"#
    )
}

/// Waits until the proxy's log reports script version `v` loaded.
fn wait_for_version(proxy: &Proxy, v: usize, within: Duration) {
    let end = Instant::now() + within;
    let needle = format!("version={v}");
    while !proxy.log_text().lines().any(|l| l.contains("script reloaded") && l.contains(&needle)) {
        assert!(Instant::now() < end, "version {v} not loaded within {within:?}:\n{}", proxy.log_text());
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failure_route_runs_the_version_that_routed_the_invite() {
    let (a, b) = (free_port(), free_port());
    let proxy = Proxy::start("pinned-failure", &failover(1, a, b));
    let script = proxy.dir.join("route.rhai");
    // A answers 503 1.5 s after the INVITE: the reload lands while the call waits.
    let mut uas_a = Sipp::uas("uas-a", "uas-503.xml", a, Proto::Udp).calls(2).arg("-d").arg("1500").spawn(&proxy.dir);
    let mut uas_b = Sipp::uas("uas-b", "uas-call.xml", b, Proto::Udp).calls(2).message_log().spawn(&proxy.dir);

    let mut first = Sipp::uac("uac-1", "uac-call.xml", &proxy, Proto::Udp).calls(1).spawn(&proxy.dir);
    thread::sleep(Duration::from_millis(200));
    save_rename(&script, &failover(2, a, b));
    wait_for_version(&proxy, 2, Duration::from_millis(1200));
    first.assert_success();

    // A call that starts after the reload runs the new failure route.
    let mut second = Sipp::uac("uac-2", "uac-call.xml", &proxy, Proto::Udp).calls(1).spawn(&proxy.dir);
    second.assert_success();
    uas_a.assert_success();
    uas_b.assert_success();

    let versions: Vec<String> = logged_messages(&uas_b.message_log_text(), "received")
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .map(|m| header_values(m, "X-Failure-Version").join(","))
        .collect();
    assert_eq!(versions, ["1", "2"], "failure_route versions seen by backend B");
    proxy.stop();
}

/// A hook that runs away is stopped by the operation limit: the request gets a 500, the
/// log names the script and the hook, and the next request is served as usual.
#[test]
fn a_runaway_hook_gets_500_and_the_proxy_carries_on() {
    let script = r#"fn route() {
    if is_method("OPTIONS") {
        let i = 0;
        loop { i += 1; }
    }
    sl_send_reply(200, "OK");
}
"#;
    let proxy = Proxy::start("runaway", script);
    let options = Req::new("OPTIONS", proxy.addr(), Proto::Udp);
    let got = udp_exchange_until(proxy.addr(), |l| options.build(l), Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.iter().flat_map(|r| status_codes(r)).collect::<Vec<_>>(), [500]);
    // The log reaches its file through a pipe: give it a moment.
    let end = Instant::now() + Duration::from_secs(3);
    while !proxy.log_text().contains("route.rhai:1:1: in fn route(): Too many operations") {
        assert!(Instant::now() < end, "the limit error was not logged:\n{}", proxy.log_text());
        thread::sleep(Duration::from_millis(20));
    }

    let message = Req::new("MESSAGE", proxy.addr(), Proto::Udp);
    let got = udp_exchange_until(proxy.addr(), |l| message.build(l), Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.iter().flat_map(|r| status_codes(r)).collect::<Vec<_>>(), [200]);
    proxy.stop();
}
