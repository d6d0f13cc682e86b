//! Shared harness of the end-to-end tests: temp dirs, free ports, the real
//! `siprox` binary started on a per-test config and script, SIPp peers, and
//! small raw-socket helpers.
//!
//! Everything a test starts is owned by a guard that stops it on drop (by
//! PID: SIGTERM, a bounded wait, then SIGKILL), so a failing or panicking test
//! leaves nothing running. When a test panics, the guards print what they
//! know (the proxy's log, SIPp's error and message files) and the temp dir is
//! kept for inspection.
#![allow(dead_code)]

pub mod netns;
pub mod recording;
pub mod testdb;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub const LOCALHOST: &str = "127.0.0.1";

// ---------------------------------------------------------------- temp dirs

/// A fresh directory under the system temp dir, removed on drop unless the
/// test is panicking (then its path is printed and it stays).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("siprox-test-{label}-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// -------------------------------------------------------------------- ports

/// A port on 127.0.0.1 that is free for both UDP and TCP right now, never
/// handed out twice by this process. Taken below the kernel's ephemeral range
/// (32768+) so outgoing connections of the proxy or of SIPp can't grab it
/// between this check and the bind of whoever uses it.
pub fn free_port() -> u16 {
    static TAKEN: OnceLock<Mutex<(u16, HashSet<u16>)>> = OnceLock::new();
    const LOW: u16 = 20000;
    const SPAN: u16 = 12000;
    let m = TAKEN.get_or_init(|| {
        // start somewhere different in every test binary / run
        let seed = (std::process::id() as u64).wrapping_mul(2654435761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        Mutex::new(((seed % SPAN as u64) as u16, HashSet::new()))
    });
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..SPAN {
        g.0 = (g.0 + 7) % SPAN;
        let port = LOW + g.0;
        if g.1.contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind((LOCALHOST, port));
        let tcp = TcpListener::bind((LOCALHOST, port));
        if udp.is_ok() && tcp.is_ok() {
            g.1.insert(port);
            return port;
        }
    }
    panic!("no free UDP+TCP port on {LOCALHOST} in {LOW}..{}", LOW + SPAN);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// Whether something listens on 127.0.0.x:port (TCP: in LISTEN state), read
/// from /proc/net so nothing is sent to the peer being waited for.
pub fn is_bound(port: u16, proto: Proto) -> bool {
    let file = match proto {
        Proto::Udp => "/proc/net/udp",
        Proto::Tcp => "/proc/net/tcp",
    };
    let Ok(text) = fs::read_to_string(file) else {
        return false;
    };
    // 127.0.0.x (the kernel writes the address little-endian: 127.0.0.2 is 0200007F) or any.
    let want_loopback = format!("00007F:{port:04X}");
    let want_any = format!("00000000:{port:04X}");
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && ((f[1].len() == 13 && f[1].ends_with(&want_loopback)) || f[1] == want_any)
            && (proto == Proto::Udp || f[3] == "0A")
    })
}

pub fn wait_bound(port: u16, proto: Proto, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if is_bound(port, proto) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing bound {proto:?} {LOCALHOST}:{port} within {within:?}");
}

// ------------------------------------------------------------------ children

/// A child process stopped on drop: SIGTERM, up to 3 s, then SIGKILL.
pub struct ChildGuard {
    pub name: String,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(name: &str, child: Child) -> ChildGuard {
        ChildGuard { name: name.to_string(), child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// None while running.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `within`; None if it was still running (it is then killed).
    pub fn wait_timeout(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= end {
                self.stop();
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then waits up to `grace`; returns the exit status if it ended
    /// by itself in that time, None if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        // SAFETY: plain kill(2) on the PID of a child we own and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn stop(&mut self) {
        self.terminate(Duration::from_secs(3));
    }

    /// SIGKILL and reap.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return format!("({} unreadable)", path.display());
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

// --------------------------------------------------------------------- proxy

pub fn siprox_bin() -> &'static str {
    env!("CARGO_BIN_EXE_siprox")
}

/// `siprox ctl -c <proxy config> ARGS…`, which must succeed; its stdout.
pub fn ctl(proxy: &Proxy, args: &[&str]) -> String {
    let out = Command::new(siprox_bin())
        .arg("ctl")
        .arg("-c")
        .arg(proxy.config_path())
        .args(args)
        .output()
        .expect("run siprox ctl");
    assert!(
        out.status.success(),
        "siprox ctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `siprox ctl -c <proxy config> --json ARGS…`, parsed.
pub fn ctl_json(proxy: &Proxy, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(proxy, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("siprox ctl {args:?}: not JSON ({e}): {out}"))
}

/// The route script of the call tests (opensips.cfg style): Max-Forwards,
/// in-dialog by loose_route, CANCEL by t_check_trans, record_route, relay to
/// `du`, and a failure_route that relays a 503 to `fail_du`.
pub fn relay_script(du: &str, fail_du: &str) -> String {
    format!(
        r#"// siprox end-to-end test script (tests/support/mod.rs)
fn route() {{
{head}    record_route();
    $du = "{du}";
    t_on_failure("next");
    if t_relay() < 0 {{ sl_reply_error(); }}
}}

fn failure_route_next() {{
    if t_was_cancelled() {{ exit(); }}
    if t_check_status("503") {{ $du = "{fail_du}"; t_relay(); }}
}}
"#,
        head = ROUTE_HEAD
    )
}

/// The start of every test route (opensips.cfg's default): Max-Forwards, in-dialog
/// requests by loose_route, the ACK of a negative reply, CANCEL by t_check_trans.
pub const ROUTE_HEAD: &str = r#"    if mf_process_maxfwd_header(10) == -1 { sl_send_reply(483, "Too Many Hops"); exit(); }
    if has_totag() {
        if loose_route() == 1 { if t_relay() < 0 { sl_reply_error(); } exit(); }
        if is_method("ACK") { if t_check_trans() == 1 { t_relay(); } exit(); }
        sl_send_reply(404, "Not here"); exit();
    }
    if is_method("CANCEL") { if t_check_trans() == 1 { t_relay(); } exit(); }
"#;

pub fn udp_uri(port: u16) -> String {
    format!("sip:{LOCALHOST}:{port}")
}

pub fn tcp_uri(port: u16) -> String {
    format!("sip:{LOCALHOST}:{port};transport=tcp")
}

/// A running `siprox run -c <dir>/siprox.toml`, UDP and TCP on one port.
pub struct Proxy {
    pub port: u16,
    pub mi_port: u16,
    pub dir: TempDir,
    log: PathBuf,
    child: ChildGuard,
}

impl Proxy {
    /// Writes siprox.toml + route.rhai into a fresh temp dir and starts the
    /// binary there (cwd = that dir, so a default SQLite file lands there too);
    /// returns once it printed `siprox ready`, panics with its log otherwise.
    pub fn start(label: &str, script: &str) -> Proxy {
        Self::start_with(label, script, "")
    }

    /// Like `start`, with extra TOML appended to the config. The text lands
    /// right after `[mi] listen`, so bare keys there (`token = "…"`) belong to
    /// `[mi]`; start other tables with their header.
    pub fn start_with(label: &str, script: &str, extra_toml: &str) -> Proxy {
        Self::start_with_core(label, script, "", extra_toml)
    }

    /// Like `start_with`, with `core_toml` as more `[core]` keys
    /// (e.g. `script_watch = false`).
    pub fn start_with_core(label: &str, script: &str, core_toml: &str, extra_toml: &str) -> Proxy {
        let dir = TempDir::new(label);
        fs::write(dir.join("route.rhai"), script).unwrap();
        Self::launch(dir, "route.rhai", None, core_toml, extra_toml)
    }

    /// Like `start_with`, with `listen` as the `[core] listen` entries (e.g.
    /// `udp:192.0.2.1:5060`, an address this host does not hold: every socket is bound
    /// with IP_FREEBIND, so it binds and every send from it fails) instead of UDP and TCP on
    /// 127.0.0.1. `port` is then only reserved, nothing listens on it.
    pub fn start_listening(label: &str, script: &str, listen: &[&str], extra_toml: &str) -> Proxy {
        let dir = TempDir::new(label);
        fs::write(dir.join("route.rhai"), script).unwrap();
        Self::launch(dir, "route.rhai", Some(listen), "", extra_toml)
    }

    /// Like `start_with`, but `[core] script` names an existing script file
    /// (e.g. the repository's `scripts/default.rhai`) by its absolute path;
    /// nothing is copied.
    pub fn start_script_file(label: &str, script: &Path, extra_toml: &str) -> Proxy {
        Self::start_script_file_with_core(label, script, "", extra_toml)
    }

    /// Like `start_script_file`, with `core_toml` as more `[core]` keys (e.g. `alias`).
    pub fn start_script_file_with_core(label: &str, script: &Path, core_toml: &str, extra_toml: &str) -> Proxy {
        assert!(script.is_absolute() && script.exists(), "script file {} must exist and be absolute", script.display());
        let dir = TempDir::new(label);
        let path = script.to_str().expect("script path is UTF-8");
        Self::launch(dir, path, None, core_toml, extra_toml)
    }

    /// Writes siprox.toml (with `script` as `[core] script`, as a TOML basic
    /// string, `listen` or else UDP and TCP on 127.0.0.1:port as `[core] listen`, and
    /// the management interface on a port of its own) into `dir` and starts the
    /// binary there.
    fn launch(dir: TempDir, script: &str, listen: Option<&[&str]>, core_toml: &str, extra_toml: &str) -> Proxy {
        let port = free_port();
        let mi_port = free_port();
        let script_toml = script.replace('\\', "\\\\").replace('"', "\\\"");
        let listen = match listen {
            Some(l) => l.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", "),
            None => format!("\"udp:{LOCALHOST}:{port}\", \"tcp:{LOCALHOST}:{port}\""),
        };
        let config = format!(
            r#"# siprox end-to-end test config (tests/support/mod.rs)
[core]
listen = [{listen}]
script = "{script_toml}"
{core_toml}

[tm]
fr_timeout = 2
fr_inv_timeout = 4
T1_timer = 500

[mi]
listen = "{LOCALHOST}:{mi_port}"
{extra_toml}
"#
        );
        fs::write(dir.join("siprox.toml"), config).unwrap();
        let log = dir.join("siprox.log");
        let child = spawn_ready(&dir, &log);
        Proxy { port, mi_port, dir, log, child }
    }

    /// Starts `siprox run -c <dir>/siprox.toml` on `config`, a whole config the test wrote
    /// itself (e.g. a shipped example's, rewritten to loopback ports), listening on
    /// 127.0.0.1:`port` (UDP and TCP) with its management interface on `mi_port`.
    pub fn start_config(dir: TempDir, config: &str, port: u16, mi_port: u16) -> Proxy {
        fs::write(dir.join("siprox.toml"), config).unwrap();
        let log = dir.join("siprox.log");
        let child = spawn_ready(&dir, &log);
        Proxy { port, mi_port, dir, log, child }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The management interface's JSON-RPC URL.
    pub fn mi_url(&self) -> String {
        format!("http://{LOCALHOST}:{}/mi", self.mi_port)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("siprox.toml")
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Panics if the proxy died.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait() {
            thread::sleep(Duration::from_millis(100));
            panic!("siprox died ({st}); its stderr:\n{}", tail(&self.log, 80));
        }
    }

    /// Kills the proxy at once (SIGKILL: no shutdown work, as in a crash or a power cut)
    /// and starts it again on the same config, ports and database.
    pub fn crash_and_restart(&mut self) {
        self.assert_alive();
        self.child.kill_now();
        self.child = spawn_ready(&self.dir, &self.log);
    }

    /// Asserts it is still running, sends SIGTERM, and asserts it exits by
    /// itself within 10 s.
    pub fn stop(mut self) {
        self.assert_alive();
        let st = self.child.terminate(Duration::from_secs(10));
        assert!(st.is_some(), "siprox did not exit within 10 s of SIGTERM; its stderr:\n{}", tail(&self.log, 40));
    }
}

/// Starts `siprox run -c <dir>/siprox.toml` in `dir`, its stderr appended to `log`, and
/// returns once it printed `siprox ready` (panics with its log otherwise).
fn spawn_ready(dir: &TempDir, log: &Path) -> ChildGuard {
    let child = Command::new(siprox_bin())
        .arg("run")
        .arg("-c")
        .arg(dir.join("siprox.toml"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(fs::File::create(dir.join("siprox.stdout")).unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", siprox_bin()));
    let mut child = ChildGuard::new("siprox", child);
    let stderr = child.child.as_mut().unwrap().stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let log_path = log.to_path_buf();
    // Drains stderr for the proxy's whole life (so it never blocks on a
    // full pipe), copies it to siprox.log, and reports the ready line.
    thread::spawn(move || {
        // Appended: a restarted proxy adds to the same log.
        let mut out = fs::OpenOptions::new().create(true).append(true).open(&log_path).ok();
        let mut r = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut told = false;
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Some(f) = out.as_mut() {
                        let _ = f.write_all(&line);
                    }
                    if !told && String::from_utf8_lossy(&line).contains("siprox ready") {
                        told = true;
                        let _ = tx.send(());
                    }
                }
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => break,
            Err(e) => {
                if child.try_wait().is_some() {
                    thread::sleep(Duration::from_millis(100)); // let the reader copy the rest
                    panic!("siprox exited at startup ({:?}); its stderr:\n{}", child.try_wait(), tail(log, 80));
                }
                if Instant::now() > end {
                    panic!("siprox did not print `siprox ready` within 20 s; its stderr:\n{}", tail(log, 80));
                }
                if e == mpsc::RecvTimeoutError::Disconnected {
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    child
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if thread::panicking() {
            self.child.stop();
            eprintln!("---- siprox stderr (last 150 lines of {}):\n{}", self.log.display(), tail(&self.log, 150));
        }
    }
}

// ---------------------------------------------------------------------- SIPp

/// Path of SIPp; panics (never skips) when it is missing.
pub fn sipp_bin() -> &'static str {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let ok = *FOUND
        .get_or_init(|| Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    assert!(ok, "sipp not installed: apt-get install -y sip-tester");
    "sipp"
}

pub fn scenario(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("sipp").join(name);
    assert!(p.exists(), "missing scenario {}", p.display());
    p
}

/// One SIPp process to be started: a UAC (calls the proxy) or a UAS
/// (a backend listening on its own port).
pub struct Sipp {
    name: String,
    scenario: PathBuf,
    proto: Proto,
    port: u16,
    remote: Option<SocketAddr>,
    calls: u32,
    timeout_s: u32,
    msg_log: bool,
    extra: Vec<String>,
    /// (namespace's real name, local IP): run in a network namespace
    netns: Option<(String, String)>,
}

impl Sipp {
    pub fn uac(name: &str, scenario_file: &str, proxy: &Proxy, proto: Proto) -> Sipp {
        Sipp::new(name, scenario_file, proto, free_port(), Some(proxy.addr()))
    }

    /// A UAC whose scenario addresses `target` ([remote_ip]:[remote_port] in
    /// its Request-URI, e.g. a backend) while every packet goes to the proxy
    /// (SIPp's -rsa): for routes that relay by Request-URI.
    pub fn uac_to(name: &str, scenario_file: &str, proxy: &Proxy, proto: Proto, target: SocketAddr) -> Sipp {
        Sipp::new(name, scenario_file, proto, free_port(), Some(target)).arg("-rsa").arg(&proxy.addr().to_string())
    }

    /// A UAC that sends to `remote`, any address (e.g. a virtual IP inside a
    /// namespace lab, with `in_netns`), not a `Proxy`.
    pub fn uac_addr(name: &str, scenario_file: &str, proto: Proto, remote: SocketAddr) -> Sipp {
        Sipp::new(name, scenario_file, proto, free_port(), Some(remote))
    }

    pub fn uas(name: &str, scenario_file: &str, port: u16, proto: Proto) -> Sipp {
        Sipp::new(name, scenario_file, proto, port, None)
    }

    fn new(name: &str, scenario_file: &str, proto: Proto, port: u16, remote: Option<SocketAddr>) -> Sipp {
        Sipp {
            name: name.to_string(),
            scenario: scenario(scenario_file),
            proto,
            port,
            remote,
            calls: 1,
            timeout_s: 30,
            msg_log: false,
            extra: Vec::new(),
            netns: None,
        }
    }

    /// -m: calls to place (UAC) or to take before exiting (UAS).
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// -p: this local port instead of a free one, for a UAC that must come from a known
    /// address (a peer the proxy recognises by its source, a phone that registered from it).
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.port = port;
        self
    }

    /// Global -timeout (with -timeout_error: reaching it fails the run).
    pub fn timeout_s(mut self, s: u32) -> Sipp {
        self.timeout_s = s;
        self
    }

    /// Log every message sent and received (-trace_msg) to a file.
    pub fn message_log(mut self) -> Sipp {
        self.msg_log = true;
        self
    }

    /// Runs SIPp inside network namespace `ns_real` (a real name, see
    /// `netns::Lab::ns_name`) as `ip netns exec NS sipp …`, bound to
    /// `local_ip` (-i) instead of 127.0.0.1. A UAS is then waited for (until
    /// it listens) inside that namespace.
    pub fn in_netns(mut self, ns_real: &str, local_ip: &str) -> Sipp {
        self.netns = Some((ns_real.to_string(), local_ip.to_string()));
        self
    }

    pub fn args(mut self, list: &[&str]) -> Sipp {
        for a in list {
            self = self.arg(a);
        }
        self
    }

    pub fn arg(mut self, a: &str) -> Sipp {
        self.extra.push(a.to_string());
        self
    }

    pub fn spawn(self, dir: &TempDir) -> RunningSipp {
        let bin = sipp_bin();
        let out = dir.join(&format!("{}.out", self.name));
        let err = dir.join(&format!("{}.err", self.name));
        let msg = dir.join(&format!("{}.msg", self.name));
        // `ip netns exec` execs sipp in its own process: the child's PID is sipp's.
        let mut cmd = match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let local_ip = self.netns.as_ref().map(|(_, ip)| ip.clone()).unwrap_or_else(|| LOCALHOST.to_string());
        if let Some(r) = self.remote {
            cmd.arg(r.to_string());
        }
        cmd.arg("-sf").arg(&self.scenario);
        cmd.args(["-t", if self.proto == Proto::Tcp { "t1" } else { "u1" }]);
        cmd.args(["-i", &local_ip, "-p", &self.port.to_string()]);
        cmd.args(["-m", &self.calls.to_string()]);
        cmd.args(["-timeout", &format!("{}s", self.timeout_s), "-timeout_error"]);
        cmd.args(["-nostdin", "-trace_err", "-error_file"]).arg(&err);
        if self.msg_log {
            cmd.args(["-trace_msg", "-message_file"]).arg(&msg);
        }
        cmd.args(&self.extra);
        cmd.current_dir(dir.path());
        // Message-log timestamps in UTC, so tests can compare them with SystemTime.
        cmd.env("TZ", "UTC");
        cmd.stdin(Stdio::null());
        let outf = fs::File::create(&out).unwrap();
        cmd.stdout(Stdio::from(outf.try_clone().unwrap()));
        cmd.stderr(Stdio::from(outf));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start sipp: {e}"));
        let mut running = RunningSipp {
            name: self.name,
            child: ChildGuard::new("sipp", child),
            out,
            err,
            msg,
            timeout: Duration::from_secs(self.timeout_s as u64 + 15),
            done: None,
        };
        if self.remote.is_none() {
            // a backend: wait until it listens before anyone sends to it
            let end = Instant::now() + Duration::from_secs(10);
            let bound = || match &self.netns {
                Some((ns, ip)) => netns::is_bound_in(ns, ip, self.port, self.proto),
                None => is_bound(self.port, self.proto),
            };
            while !bound() {
                if running.child.try_wait().is_some() || Instant::now() > end {
                    panic!("sipp {} did not start listening:\n{}", running.name, running.report());
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        running
    }
}

pub struct RunningSipp {
    pub name: String,
    child: ChildGuard,
    out: PathBuf,
    err: PathBuf,
    msg: PathBuf,
    timeout: Duration,
    done: Option<Option<i32>>,
}

impl RunningSipp {
    /// Waits for SIPp to end by itself (bounded by its -timeout plus a margin)
    /// and returns its exit code (None: had to be killed, or killed by a signal).
    pub fn wait(&mut self) -> Option<i32> {
        if let Some(d) = self.done {
            return d;
        }
        let code = self.child.wait_timeout(self.timeout).and_then(|s| s.code());
        self.done = Some(code);
        code
    }

    /// Waits and asserts exit code 0 (every call succeeded).
    pub fn assert_success(&mut self) {
        let code = self.wait();
        assert_eq!(code, Some(0), "sipp {} failed (exit {code:?}):\n{}", self.name, self.report());
    }

    pub fn message_log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.msg).unwrap_or_default()).into_owned()
    }

    /// Requests of `method` this SIPp received, from its -trace_msg log.
    pub fn received_requests(&self, method: &str) -> usize {
        count_logged(&self.message_log_text(), "received", method)
    }

    /// Requests of `method` this SIPp sent, from its -trace_msg log.
    pub fn sent_requests(&self, method: &str) -> usize {
        count_logged(&self.message_log_text(), "sent", method)
    }

    /// Every message this SIPp received (`dir` = "received") or sent
    /// ("sent"), in order, as text with CRLF turned into LF; from its
    /// -trace_msg log (see `message_log`).
    pub fn logged_messages(&self, dir: &str) -> Vec<String> {
        logged_messages(&self.message_log_text(), dir)
    }

    /// The received messages whose first line starts with `start`
    /// (e.g. "INVITE ", "SIP/2.0 486 ").
    pub fn received_starting(&self, start: &str) -> Vec<String> {
        self.logged_messages("received").into_iter().filter(|m| m.starts_with(start)).collect()
    }

    /// The sent messages whose first line starts with `start`.
    pub fn sent_starting(&self, start: &str) -> Vec<String> {
        self.logged_messages("sent").into_iter().filter(|m| m.starts_with(start)).collect()
    }

    /// Stops it now (SIGTERM, then SIGKILL): a backend that dies mid-run.
    pub fn kill(&mut self) {
        self.child.stop();
        self.done = Some(None);
    }

    /// SIPp's cumulative `Failed call` count from its final statistics screen.
    pub fn failed_calls(&self) -> Option<u64> {
        let out = fs::read_to_string(&self.out).ok()?;
        let line = out.lines().rev().find(|l| l.trim_start().starts_with("Failed call"))?;
        line.split('|').nth(2)?.trim().parse().ok()
    }

    pub fn report(&self) -> String {
        let mut s =
            format!("== sipp {} output (tail of {}):\n{}\n", self.name, self.out.display(), tail(&self.out, 60));
        if self.err.exists() {
            s += &format!("== sipp {} errors ({}):\n{}\n", self.name, self.err.display(), tail(&self.err, 60));
        }
        if self.msg.exists() {
            s += &format!(
                "== sipp {} messages (tail of {}):\n{}\n",
                self.name,
                self.msg.display(),
                tail(&self.msg, 120)
            );
        }
        s
    }
}

impl Drop for RunningSipp {
    fn drop(&mut self) {
        if thread::panicking() {
            self.child.stop();
            eprintln!("{}", self.report());
        }
    }
}

/// The messages of a SIPp -trace_msg log in one direction ("received" or
/// "sent"). Each entry is a "-----… timestamp" line, a line such as
/// "UDP message received [N] bytes :" or "TCP message sent (N bytes):", an
/// empty line, then the message; CRs are removed and the text is trimmed.
pub fn logged_messages(log: &str, dir: &str) -> Vec<String> {
    let marker = format!(" message {dir} ");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for l in log.lines() {
        let l = l.trim_end_matches('\r');
        if l.starts_with("----------") {
            if let Some(m) = cur.take() {
                out.push(m.trim().to_string());
            }
            continue;
        }
        if l.contains(" message ") && (l.contains(" received ") || l.contains(" sent ")) && cur.is_none() {
            if l.contains(&marker) {
                cur = Some(String::new());
            }
            continue;
        }
        if let Some(m) = cur.as_mut() {
            m.push_str(l);
            m.push('\n');
        }
    }
    if let Some(m) = cur.take() {
        out.push(m.trim().to_string());
    }
    out
}

/// Values of every header line `name:` (case-insensitive; long names only,
/// no compact forms, no folded lines) of a message as `logged_messages`
/// returns it, trimmed, in order.
pub fn header_values(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\n\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

/// Counts the SIPp -trace_msg entries ("UDP message received [N] bytes :",
/// "UDP message sent (N bytes):") whose first line starts with `method `.
fn count_logged(log: &str, dir: &str, method: &str) -> usize {
    let marker = format!(" message {dir} ");
    let mut n = 0;
    let mut lines = log.lines().peekable();
    while let Some(l) = lines.next() {
        if l.contains(&marker) {
            // the message starts after one empty line
            for m in lines.by_ref() {
                if m.trim().is_empty() {
                    continue;
                }
                if m.starts_with(&format!("{method} ")) {
                    n += 1;
                }
                break;
            }
        }
    }
    n
}

// ------------------------------------------------------------- raw sockets

/// A backend that never answers: a bound UDP socket whose datagrams are
/// counted (and kept) by a thread until the value is dropped.
pub struct SilentUdp {
    pub port: u16,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SilentUdp {
    pub fn start() -> SilentUdp {
        let port = free_port();
        let sock = UdpSocket::bind((LOCALHOST, port)).expect("bind silent backend");
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 70000];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        SilentUdp { port, got, stop }
    }

    pub fn received(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().clone()
    }

    /// How many received messages start with `prefix` (e.g. "INVITE ").
    pub fn count_starting(&self, prefix: &str) -> usize {
        self.received().iter().filter(|m| m.starts_with(prefix.as_bytes())).count()
    }
}

impl Drop for SilentUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP backend that accepts connections and reads, but never answers.
pub struct SilentTcp {
    pub port: u16,
    got: Arc<Mutex<Vec<u8>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SilentTcp {
    pub fn start() -> SilentTcp {
        let port = free_port();
        let l = TcpListener::bind((LOCALHOST, port)).expect("bind silent TCP backend");
        l.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        thread::spawn(move || {
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::SeqCst) {
                if let Ok((c, _)) = l.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push(c);
                }
                for c in conns.iter_mut() {
                    if let Ok(n) = c.read(&mut buf) {
                        g.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        SilentTcp { port, got, stop }
    }

    pub fn count_starting(&self, prefix: &str) -> usize {
        let data = self.got.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&data);
        text.split("\r\n").filter(|l| l.starts_with(prefix)).count()
    }
}

impl Drop for SilentTcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Status codes of every SIP status line in `data`.
pub fn status_codes(data: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(data)
        .split('\n')
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let rest = l.strip_prefix("SIP/2.0 ")?;
            rest.get(..3)?.parse().ok()
        })
        .collect()
}

/// Sends one datagram from a fresh socket and collects replies for `wait`.
/// `build` gets the local address (for a Via sent-by that reaches us back).
pub fn udp_exchange(dst: SocketAddr, build: impl FnOnce(SocketAddr) -> Vec<u8>, wait: Duration) -> Vec<Vec<u8>> {
    udp_exchange_until(dst, build, wait, |_| false)
}

/// Like `udp_exchange`, but stops as soon as `until` is true of the replies so far.
pub fn udp_exchange_until(
    dst: SocketAddr,
    build: impl FnOnce(SocketAddr) -> Vec<u8>,
    wait: Duration,
    until: impl Fn(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let local = s.local_addr().unwrap();
    let msg = build(local);
    s.send_to(&msg, dst).unwrap_or_else(|e| panic!("send {} bytes: {e}", msg.len()));
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70000];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                got.push(buf[..n].to_vec());
                if until(&got) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

/// What came back on a TCP connection.
#[derive(Debug, Default)]
pub struct TcpOutcome {
    pub data: Vec<u8>,
    /// the proxy closed (or reset) the connection
    pub closed: bool,
}

/// Connects, sends `build(local)`, reads for `wait` (stops early once
/// `until` says the data is enough, or on close).
pub fn tcp_exchange(
    dst: SocketAddr,
    build: impl FnOnce(SocketAddr) -> Vec<u8>,
    wait: Duration,
    until: impl Fn(&[u8]) -> bool,
) -> TcpOutcome {
    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("TCP connect to {dst}: {e}"));
    let local = s.local_addr().unwrap();
    let msg = build(local);
    let mut out = TcpOutcome::default();
    if s.write_all(&msg).is_err() {
        // the proxy may close mid-way through a huge message
        out.closed = true;
    }
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while !out.closed {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => out.closed = true,
            Ok(n) => {
                out.data.extend_from_slice(&buf[..n]);
                if until(&out.data) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(_) => out.closed = true,
        }
    }
    out
}

fn rand_token() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:x}{:x}{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos)
}

/// A SIP request from `local` (Via sent-by = `local`, with rport, so any
/// reply reaches the sending socket), addressed to `target`. `extra` is
/// inserted as header lines (each ending in \r\n); Content-Length is the
/// body's length unless `content_length` overrides the header's value.
pub struct Req<'a> {
    pub method: &'a str,
    pub ruri: String,
    pub proto: &'a str,
    pub max_forwards: u32,
    pub extra: String,
    pub body: Vec<u8>,
    pub content_length: Option<String>,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, target: SocketAddr, proto: Proto) -> Req<'a> {
        Req {
            method,
            ruri: format!("sip:{}:{}", target.ip(), target.port()),
            proto: if proto == Proto::Tcp { "TCP" } else { "UDP" },
            max_forwards: 70,
            extra: String::new(),
            body: Vec::new(),
            content_length: None,
        }
    }

    pub fn build(&self, local: SocketAddr) -> Vec<u8> {
        let t = rand_token();
        let cl = self.content_length.clone().unwrap_or_else(|| self.body.len().to_string());
        let mut m = format!(
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/{proto} {local};rport;branch=z9hG4bK-test-{t}\r\n\
             Max-Forwards: {mf}\r\n\
             From: <sip:tester@{local}>;tag=t{t}\r\n\
             To: <{ruri}>\r\n\
             Call-ID: {t}@test.invalid\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:tester@{local}>\r\n\
             {extra}Content-Length: {cl}\r\n\r\n",
            method = self.method,
            ruri = self.ruri,
            proto = self.proto,
            mf = self.max_forwards,
            extra = self.extra,
        )
        .into_bytes();
        m.extend_from_slice(&self.body);
        m
    }
}

/// Like [`logged_messages`], with the time SIPp logged each message (its
/// `---- YYYY-MM-DD HH:MM:SS.ffffff` separator line, UTC: SIPp runs with TZ=UTC).
pub fn logged_messages_at(log: &str, dir: &str) -> Vec<(std::time::SystemTime, String)> {
    let mut out = Vec::new();
    let mut stamp = None;
    let mut chunk = String::new();
    let flush = |stamp: Option<std::time::SystemTime>, chunk: &str, out: &mut Vec<_>| {
        if let Some(t) = stamp {
            for m in logged_messages(chunk, dir) {
                out.push((t, m));
            }
        }
    };
    for l in log.lines() {
        if let Some(rest) = l.strip_prefix("----------") {
            flush(stamp, &chunk, &mut out);
            chunk.clear();
            stamp = parse_utc(rest.trim_start_matches('-').trim());
        }
        chunk.push_str(l);
        chunk.push('\n');
    }
    flush(stamp, &chunk, &mut out);
    out
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) as a SystemTime.
fn parse_utc(s: &str) -> Option<std::time::SystemTime> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days since 1970-01-01 of a civil date (proleptic Gregorian).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let micros: u64 = format!("{frac:0<6}")[..6].parse().ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_micros(micros))
}

/// Calls `probe` every 100 ms until `ok` holds for its value, and returns it; fails the
/// test with the last value after `within`.
pub fn wait_until<T: std::fmt::Debug>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let end = Instant::now() + within;
    loop {
        let v = probe();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < end, "{what}: still {v:?} after {within:?}");
        thread::sleep(Duration::from_millis(100));
    }
}
