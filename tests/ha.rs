//! High availability end to end (issue: a VIP that moves between two siprox nodes in under
//! a second). Each test builds its own network in namespaces (tests/support/netns.rs):
//!
//! ```text
//!   client 10.70.1.10   fs1 10.70.1.20 (SIPp backend, 5080)   db 10.70.1.30 (relay to the DB)
//!        \                 |                 /
//!         ───────────── bridge br0 (service LAN, VIP 10.70.1.100) ─────────────
//!        /                                   \
//!   lb1 10.70.1.1 ══ hb1 10.70.2.1/.2 ══ lb2 10.70.1.2      (two crossover links carry
//!                 ══ hb2 10.70.3.1/.2 ══                     the heartbeats)
//! ```
//! Both nodes run the same config and script (the node name comes from
//! `$SIPROX_HA_NODE`), share one database (PostgreSQL through a relay when
//! `SIPROX_TEST_PG` is set, else one SQLite file), keep registrations `sql-only` and
//! dialogs in realtime. Needs root; without it every test prints SKIPPED.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::netns::{self, Lab, NsRelay, Prober};
use support::testdb::TestDb;
use support::{siprox_bin, ChildGuard, Proto, Sipp, TempDir};

const VIP: &str = "10.70.1.100";
const CLIENT: &str = "10.70.1.10";
const FS: &str = "10.70.1.20";
const DB_IP: &str = "10.70.1.30";
const NODES: [&str; 2] = ["lb1", "lb2"];

const SCRIPT: &str = r#"fn route() {
    if has_totag() {
        if loose_route() == 1 { t_relay(); exit(); }
        if is_method("ACK") { if t_check_trans() == 1 { t_relay(); } exit(); }
        sl_send_reply(404, "Not here"); exit();
    }
    if is_method("OPTIONS") { sl_send_reply(200, "OK"); exit(); }
    if is_method("CANCEL") { if t_check_trans() == 1 { t_relay(); } exit(); }
    if is_method("REGISTER") { save("location"); exit(); }
    record_route();
    if is_method("INVITE") { create_dialog(); }
    if $rU == "alice" {
        if lookup("location") != 1 { sl_send_reply(404, "Not registered"); exit(); }
    } else {
        $du = "sip:10.70.1.20:5080";
    }
    if t_relay() < 0 { sl_reply_error(); }
}
"#;

/// What differs between the tests' pairs.
#[derive(Clone, Default)]
struct Opts {
    auto_failback: bool,
    /// `[ha] fence_command`.
    fence: Option<String>,
    /// A folder per node (so one script can change alone) and health checks on the VIP.
    health: bool,
}

/// Two siprox nodes, a backend and a client in their own namespaces.
struct Pair {
    lab: Lab,
    dir: TempDir,
    nodes: [Option<ChildGuard>; 2],
    _db: Option<(TestDb, NsRelay)>,
    _sqlite: Option<TestDb>,
    opts: Opts,
    db_url: String,
    _fs: support::RunningSipp,
}

fn db_for(lab: &mut Lab, label: &str) -> (String, Option<(TestDb, NsRelay)>, Option<TestDb>) {
    if let Some(t) = TestDb::server(siprox::db::Backend::Postgres, label) {
        // postgres://user@127.0.0.1:5432/name → the relay's address inside the lab.
        let (scheme, rest) = t.url.split_once("://").expect("URL");
        let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (user, host) = auth.rsplit_once('@').map_or(("", auth), |(u, h)| (u, h));
        let upstream: SocketAddr = if host.contains(':') { host.parse() } else { format!("{host}:5432").parse() }
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let listen: SocketAddr = format!("{DB_IP}:5432").parse().unwrap();
        let relay = NsRelay::start(lab.ns_name("db"), listen, upstream);
        let at = if user.is_empty() { String::new() } else { format!("{user}@") };
        let url = format!("{scheme}://{at}{DB_IP}:5432{path}");
        return (url, Some((t, relay)), None);
    }
    let t = TestDb::sqlite(label);
    (t.url.clone(), None, Some(t))
}

impl Pair {
    fn new(label: &str, opts: Opts) -> Pair {
        let mut lab = Lab::new(label);
        for ns in ["lb1", "lb2", "client", "fs1", "db"] {
            lab.ns(ns);
        }
        lab.bridge("br0");
        lab.link_to_bridge("lb1", "eth0", "br0", "10.70.1.1/24");
        lab.link_to_bridge("lb2", "eth0", "br0", "10.70.1.2/24");
        lab.link_to_bridge("client", "eth0", "br0", &format!("{CLIENT}/24"));
        lab.link_to_bridge("fs1", "eth0", "br0", &format!("{FS}/24"));
        lab.link_to_bridge("db", "eth0", "br0", &format!("{DB_IP}/24"));
        lab.link("lb1", "hb1", "10.70.2.1/24", "lb2", "hb1", "10.70.2.2/24");
        lab.link("lb1", "hb2", "10.70.3.1/24", "lb2", "hb2", "10.70.3.2/24");
        let dir = TempDir::new(label);
        let (db_url, db, sqlite) = db_for(&mut lab, label);
        let key = dir.join("ha.key");
        std::fs::write(&key, "a shared secret of the pair, 32+ chars\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fs = Sipp::uas("fs1", "uas-call.xml", 5080, Proto::Udp)
            .in_netns(lab.ns_name("fs1"), FS)
            .calls(1_000_000)
            .timeout_s(300)
            .spawn(&dir);
        let pair = Pair { lab, dir, nodes: [None, None], _db: db, _sqlite: sqlite, opts, db_url, _fs: fs };
        for n in NODES {
            pair.write_config(n);
            std::fs::write(pair.script_path(n), SCRIPT).unwrap();
        }
        pair
    }

    /// One file for both nodes; with `health`, each node has a folder of its own holding
    /// a copy of the same files (its script is then changed alone).
    fn config_path(&self, node: &str) -> PathBuf {
        match self.opts.health {
            true => self.dir.join(&format!("{node}/siprox.toml")),
            false => self.dir.join("siprox.toml"),
        }
    }

    fn script_path(&self, node: &str) -> PathBuf {
        self.config_path(node).with_file_name("route.rhai")
    }

    fn write_config(&self, node: &str) {
        let o = &self.opts;
        let path = self.config_path(node);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let key = self.dir.join("ha.key");
        let fence =
            o.fence.as_deref().map(|f| format!("fence_command = {f:?}\nfence_retry = \"500ms\"\n")).unwrap_or_default();
        let health = if o.health {
            format!("health_check = \"{VIP}:5060\"\nhealth_interval = \"200ms\"\nhealth_timeout = \"200ms\"\nhealth_failures = 2\nhealth_holdoff = \"1s\"\n")
        } else {
            String::new()
        };
        let text = format!(
            r#"[core]
listen = ["udp:{VIP}:5060", "tcp:{VIP}:5060"]
script = "route.rhai"
log_level = "info"

[db]
url = "{db}"

[usrloc]
working_mode_preset = "sql-only"

[dialog]
db_mode = 1

[ha]
nodes = [{{ name = "lb1", priority = 100 }}, {{ name = "lb2", priority = 50 }}]
vip = "{VIP}/24"
interface = "eth0"
paths = ["ucast hb1 10.70.2.1 10.70.2.2", "ucast hb2 10.70.3.1 10.70.3.2"]
key_file = "{key}"
keepalive = "100ms"
warntime = "300ms"
deadtime = "500ms"
initdead = "2s"
auto_failback = "{af}"
{fence}{health}"#,
            db = self.db_url,
            af = if o.auto_failback { "on" } else { "off" },
            key = key.display(),
        );
        std::fs::write(&path, text).unwrap();
    }

    fn index(node: &str) -> usize {
        NODES.iter().position(|n| *n == node).expect("lb1 or lb2")
    }

    fn start(&mut self, node: &str) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(&format!("{node}.log"))).unwrap();
        let mut cmd = self.lab.command(node, siprox_bin());
        cmd.arg("run").arg("-c").arg(self.config_path(node));
        cmd.env("SIPROX_HA_NODE", node).env_remove("RUST_LOG").current_dir(self.dir.path());
        // (the fence command finds the peers' pid files in this folder)
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {node}: {e}"));
        std::fs::write(self.dir.join(&format!("{node}.pid")), child.id().to_string()).unwrap();
        self.nodes[Pair::index(node)] = Some(ChildGuard::new(node, child));
    }

    fn kill(&mut self, node: &str) -> Instant {
        let g = self.nodes[Pair::index(node)].as_mut().expect("running");
        let t = Instant::now();
        g.kill_now();
        t
    }

    fn stop(&mut self, node: &str) {
        if let Some(mut g) = self.nodes[Pair::index(node)].take() {
            g.terminate(Duration::from_secs(10));
        }
    }

    fn ctl(&self, node: &str, args: &[&str]) -> Output {
        let cfg = self.config_path(node);
        let mut all = vec![siprox_bin(), "ctl", "-c", cfg.to_str().unwrap(), "--json"];
        all.extend_from_slice(args);
        self.lab.exec(node, &all)
    }

    fn ctl_json(&self, node: &str, args: &[&str]) -> Option<Value> {
        let o = self.ctl(node, args);
        o.status.success().then(|| serde_json::from_slice(&o.stdout).ok()).flatten()
    }

    fn status(&self, node: &str) -> Option<Value> {
        self.ctl_json(node, &["ha_status"])
    }

    fn stat(&self, node: &str, name: &str) -> u64 {
        let v = self.ctl_json(node, &["get_statistics", &format!("ha:{name}")]).unwrap_or_default();
        v[format!("ha:{name}")].as_u64().unwrap_or_else(|| panic!("ha:{name} of {node}: {v}"))
    }

    fn role(&self, node: &str) -> Option<String> {
        self.status(node).and_then(|s| s["Role"].as_str().map(str::to_string))
    }

    /// Waits until `node` reports `role` (and, for a standby, hears its peer).
    fn wait_role(&self, node: &str, role: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let st = self.status(node);
            let ok = st.as_ref().is_some_and(|s| {
                s["Role"] == role && (role == "active" || s["Peers"][0]["Alive"] == Value::Bool(true))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < end, "{node} not {role} within {within:?}: {st:?}\n{}", self.logs());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Both nodes up, lb1 holding the VIP and lb2 standing by.
    fn start_both(&mut self) {
        self.start("lb1");
        // lb1 migrates the (empty) database first: a shared SQLite file has no migration
        // lock between processes.
        let end = Instant::now() + Duration::from_secs(10);
        while self.status("lb1").is_none() {
            assert!(Instant::now() < end, "lb1 did not start\n{}", self.logs());
            thread::sleep(Duration::from_millis(50));
        }
        self.start("lb2");
        self.wait_role("lb1", "active", Duration::from_secs(10));
        self.wait_role("lb2", "standby", Duration::from_secs(10));
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for n in NODES {
            let text = std::fs::read_to_string(self.dir.join(&format!("{n}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s.push_str(&format!("---- {n}.log (last lines)\n"));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    fn vip(&self) -> SocketAddr {
        format!("{VIP}:5060").parse().unwrap()
    }

    fn prober(&self) -> Prober {
        Prober::start(self.lab.ns_name("client"), self.vip(), Duration::from_millis(10))
    }

    /// A SIPp caller in the client namespace, towards the VIP.
    fn uac(&self, name: &str, scenario: &str) -> Sipp {
        Sipp::uac_addr(name, scenario, Proto::Udp, self.vip()).in_netns(self.lab.ns_name("client"), CLIENT)
    }

    fn register_alice(&self) {
        self.uac("reg", "uac-register-contact.xml")
            .args(&["-s", "alice", "-key", "contact", &format!("sip:alice@{FS}:5080")])
            .calls(1)
            .timeout_s(20)
            .spawn(&self.dir)
            .assert_success();
    }
}

fn lab_or_skip(test: &str) -> bool {
    if netns::available() {
        return true;
    }
    netns::skipped(test);
    false
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    format!(
        "min {} / median {} / max {} over {} runs",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

/// Kill -9 the active node under load: the VIP answers from the standby within 1 s, a user
/// registered before the kill is still found, calls established before the kill end with a
/// BYE that reaches the backend, and calls after the takeover succeed.
#[test]
fn kill_active_under_load_keeps_registrations_and_calls() {
    if !lab_or_skip("kill_active_under_load_keeps_registrations_and_calls") {
        return;
    }
    let mut pair = Pair::new("ha-kill", Opts::default());
    pair.start_both();
    pair.register_alice();
    // Established before the kill, hung up after it (BYE 4 s after the ACK).
    let mut long =
        pair.uac("long", "uac-call.xml").calls(5).args(&["-r", "5", "-d", "4000"]).timeout_s(60).spawn(&pair.dir);
    // Load across the kill: 20 calls a second for 6 s.
    let mut load =
        pair.uac("load", "uac-call.xml").calls(120).args(&["-r", "20", "-d", "200"]).timeout_s(90).spawn(&pair.dir);
    let probe = pair.prober();
    thread::sleep(Duration::from_millis(1500));
    let killed = pair.kill("lb1");
    let took = probe
        .first_answer_after(killed, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer on the VIP after the kill\n{}", pair.logs()));
    eprintln!("takeover (kill -9 -> first answer on the VIP): {took:?}");
    assert!(took < Duration::from_secs(1), "takeover took {took:?}\n{}", pair.logs());
    pair.wait_role("lb2", "active", Duration::from_secs(2));
    long.assert_success();
    // Calls after the takeover, and one to the user registered through lb1.
    pair.uac("after", "uac-call.xml")
        .calls(20)
        .args(&["-r", "20", "-d", "100"])
        .timeout_s(30)
        .spawn(&pair.dir)
        .assert_success();
    pair.uac("alice", "uac-call.xml").args(&["-s", "alice"]).calls(1).timeout_s(20).spawn(&pair.dir).assert_success();
    load.wait();
    let failed = load.failed_calls().unwrap_or(0);
    eprintln!("calls across the kill: 120, failed {failed}");
    assert!(failed <= 6, "{failed} of 120 calls failed across the kill\n{}", load.report());
    probe.stop();
}

/// At least ten kills, alternating nodes: kill → first answer on the VIP, each under 1 s.
#[test]
fn takeover_time_over_ten_kills() {
    if !lab_or_skip("takeover_time_over_ten_kills") {
        return;
    }
    let mut pair = Pair::new("ha-time", Opts::default());
    pair.start_both();
    let probe = pair.prober();
    let mut times = Vec::new();
    let mut active = "lb1";
    for _ in 0..10 {
        let standby = if active == "lb1" { "lb2" } else { "lb1" };
        thread::sleep(Duration::from_millis(300));
        let killed = pair.kill(active);
        let took = probe
            .first_answer_after(killed, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer after killing {active}\n{}", pair.logs()));
        times.push(took);
        pair.wait_role(standby, "active", Duration::from_secs(2));
        pair.start(active);
        pair.wait_role(active, "standby", Duration::from_secs(10));
        active = standby;
    }
    probe.stop();
    let line = summary(&mut times);
    eprintln!("takeover (kill -9 -> first answer on the VIP): {line}");
    assert!(times.iter().all(|t| *t < Duration::from_secs(1)), "{line}");
}

/// One heartbeat link cut: the other keeps the pair together. Both cut: the standby takes
/// over only once its fencing command succeeds (here it kills the silent node).
#[test]
fn a_cut_link_changes_nothing_and_fencing_guards_the_takeover() {
    if !lab_or_skip("a_cut_link_changes_nothing_and_fencing_guards_the_takeover") {
        return;
    }
    let dir_probe = TempDir::new("ha-fence-cmd");
    let allow = dir_probe.join("fence-ok");
    // The fence: allowed once the test says so; then it "powers off" the peer.
    let fence = format!("test -e {} && kill -9 $(cat \"$PWD/$SIPROX_HA_PEER.pid\")", allow.display());
    let mut pair = Pair::new("ha-fence", Opts { fence: Some(fence), ..Opts::default() });
    pair.start_both();
    let probe = pair.prober();
    pair.lab.set_link("lb1", "hb1", false);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(pair.role("lb1").as_deref(), Some("active"));
    assert_eq!(pair.role("lb2").as_deref(), Some("standby"));
    let st = pair.status("lb2").unwrap();
    let peer = &st["Peers"][0];
    assert_eq!(peer["Alive"], true, "{st}");
    assert_eq!(peer["Paths"][0]["Alive"], false, "{st}");
    assert_eq!(peer["Paths"][1]["Alive"], true, "{st}");

    pair.lab.set_link("lb1", "hb2", false);
    thread::sleep(Duration::from_millis(2000));
    assert_eq!(pair.role("lb2").as_deref(), Some("standby"), "no takeover while fencing fails\n{}", pair.logs());
    assert!(pair.stat("lb2", "fence_failures") >= 1);
    let st = pair.status("lb2").unwrap();
    assert_eq!(st["Fencing"]["Peer"], "lb1", "{st}");
    let t = Instant::now();
    assert!(probe.first_answer_after(t, Duration::from_secs(1)).is_some(), "lb1 still serves the VIP");

    std::fs::write(&allow, "").unwrap();
    let t = Instant::now();
    pair.wait_role("lb2", "active", Duration::from_secs(3));
    assert!(pair.nodes[0].as_mut().unwrap().wait_timeout(Duration::from_secs(2)).is_some(), "the fence killed lb1");
    let took = probe.first_answer_after(t, Duration::from_secs(3)).expect("lb2 answers on the VIP");
    eprintln!("fenced takeover: VIP answered {took:?} after fencing was allowed");
    probe.stop();
}

/// Forged (wrong key), replayed (old sequence) and stale heartbeats saying "lb1 is
/// leaving" are dropped and counted; nothing changes.
#[test]
fn forged_replayed_and_stale_heartbeats_change_nothing() {
    use siprox::ha::election::{Announce, Role};
    use siprox::ha::heartbeat::{encode, Beat};
    if !lab_or_skip("forged_replayed_and_stale_heartbeats_change_nothing") {
        return;
    }
    let mut pair = Pair::new("ha-forge", Opts::default());
    pair.start_both();
    let key = std::fs::read(pair.dir.join("ha.key")).unwrap();
    let key = key.trim_ascii().to_vec();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let leaving =
        Announce { role: Role::Leaving, priority: 100, eligible: false, claim: false, yield_to: Some("lb2".into()) };
    let beat = |generation, seq, sent_ms| Beat {
        node: "lb1".into(),
        announce: leaving.clone(),
        generation,
        seq,
        sent_ms,
        config: [0; 8],
        script: [0; 8],
    };
    let forged = encode(&beat(u64::MAX, 1, now_ms), b"not the pair's key at all");
    let replayed = encode(&beat(1, 1, now_ms), &key);
    let stale = encode(&beat(u64::MAX, 1, now_ms - 60_000), &key);
    netns::run_in(pair.lab.ns_name("lb1"), || {
        let s = std::net::UdpSocket::bind("10.70.2.1:0").unwrap();
        for _ in 0..3 {
            for d in [&forged, &replayed, &stale] {
                s.send_to(d, "10.70.2.2:694").unwrap();
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(pair.role("lb1").as_deref(), Some("active"));
    assert_eq!(pair.role("lb2").as_deref(), Some("standby"), "{}", pair.logs());
    for (name, n) in [("heartbeats_forged", 3), ("heartbeats_replayed", 3), ("heartbeats_stale", 3)] {
        assert_eq!(pair.stat("lb2", name), n, "ha:{name}");
    }
    assert_eq!(pair.stat("lb2", "takeovers"), 0);
}

/// SIGTERM on the active node while calls flow: the standby takes over at once and no call
/// fails.
#[test]
fn graceful_stop_hands_over_without_a_failed_call() {
    if !lab_or_skip("graceful_stop_hands_over_without_a_failed_call") {
        return;
    }
    let mut pair = Pair::new("ha-stop", Opts::default());
    pair.start_both();
    let probe = pair.prober();
    let mut calls =
        pair.uac("calls", "uac-call.xml").calls(100).args(&["-r", "20", "-d", "500"]).timeout_s(60).spawn(&pair.dir);
    thread::sleep(Duration::from_millis(2000));
    let t = Instant::now();
    pair.stop("lb1");
    let gap = probe.first_answer_after(t, Duration::from_secs(2)).expect("the VIP answers after the hand-over");
    eprintln!("graceful hand-over: VIP answered again {gap:?} after SIGTERM");
    pair.wait_role("lb2", "active", Duration::from_secs(1));
    calls.assert_success();
    let st = pair.status("lb2").unwrap();
    assert!(st["Last transition"]["Reason"].as_str().unwrap_or("").contains("shutting down"), "{st}");
    assert_eq!(pair.stat("lb2", "fence_runs"), 0);
    probe.stop();
}

/// ha.cf's auto_failback: off, the node back from a crash stands by; on, the preferred node
/// (higher priority) takes the VIP back when it returns.
#[test]
fn auto_failback_off_and_on() {
    if !lab_or_skip("auto_failback_off_and_on") {
        return;
    }
    let mut pair = Pair::new("ha-failback", Opts::default());
    pair.start_both();
    pair.kill("lb1");
    pair.wait_role("lb2", "active", Duration::from_secs(2));
    pair.start("lb1");
    pair.wait_role("lb1", "standby", Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(pair.role("lb2").as_deref(), Some("active"), "auto_failback off: lb2 keeps the VIP");

    // auto_failback on: lb2 holds the VIP when lb1 (preferred) comes back.
    pair.stop("lb1");
    pair.stop("lb2");
    pair.opts.auto_failback = true;
    for n in NODES {
        pair.write_config(n);
    }
    pair.start("lb2");
    pair.wait_role("lb2", "active", Duration::from_secs(10));
    let probe = pair.prober();
    pair.start("lb1");
    pair.wait_role("lb1", "active", Duration::from_secs(10));
    pair.wait_role("lb2", "standby", Duration::from_secs(2));
    let st = pair.status("lb2").unwrap();
    assert!(st["Last transition"]["Reason"].as_str().unwrap_or("").contains("auto_failback"), "{st}");
    let t = Instant::now();
    assert!(probe.first_answer_after(t, Duration::from_secs(1)).is_some());
    probe.stop();
}

/// A node whose own SIP service stops answering its health check (an OPTIONS to the VIP)
/// gives the VIP up; the pair notices the scripts differ; ha_takeover and ha_release move
/// the VIP by hand.
#[test]
fn failing_health_check_gives_the_vip_up_and_mi_moves_it() {
    if !lab_or_skip("failing_health_check_gives_the_vip_up_and_mi_moves_it") {
        return;
    }
    let mut pair = Pair::new("ha-health", Opts { health: true, ..Opts::default() });
    pair.start_both();
    assert_eq!(pair.stat("lb2", "files_mismatch"), 0);
    // lb1's script now answers OPTIONS with 503: its health check fails.
    let broken = SCRIPT.replace(r#"sl_send_reply(200, "OK"); exit();"#, r#"sl_send_reply(503, "Down"); exit();"#);
    std::fs::write(pair.script_path("lb1"), broken).unwrap();
    let o = pair.ctl("lb1", &["reload_routes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pair.wait_role("lb2", "active", Duration::from_secs(3));
    let st = pair.status("lb1").unwrap();
    assert_eq!(st["Role"], "standby", "{st}");
    assert!(st["Last transition"]["Reason"].as_str().unwrap_or("").contains("health"), "{st}");
    let st = pair.status("lb2").unwrap();
    assert_eq!(st["Peers"][0]["Same script"], false, "{st}");
    assert_eq!(pair.stat("lb2", "files_mismatch"), 1);

    // Mended: the same script again; after its hold-off lb1 may take the VIP by hand.
    std::fs::write(pair.script_path("lb1"), SCRIPT).unwrap();
    assert!(pair.ctl("lb1", &["reload_routes"]).status.success());
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(pair.stat("lb2", "files_mismatch"), 0);
    assert!(pair.ctl("lb1", &["ha_takeover"]).status.success());
    pair.wait_role("lb1", "active", Duration::from_secs(2));
    pair.wait_role("lb2", "standby", Duration::from_secs(2));
    // Maintenance on lb1: lb2 takes over and lb1 stays out.
    assert!(pair.ctl("lb1", &["ha_release"]).status.success());
    pair.wait_role("lb2", "active", Duration::from_secs(2));
    let st = pair.status("lb1").unwrap();
    assert_eq!((st["Role"].as_str(), st["Maintenance"].as_bool()), (Some("standby"), Some(true)), "{st}");
}
