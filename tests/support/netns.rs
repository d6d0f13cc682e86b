//! Linux network namespaces for the tests that need more than loopback (the
//! high-availability tests: two siprox nodes sharing a virtual IP, a client, a
//! backend): a [`Lab`] of namespaces wired by veth pairs and bridges, a SIP
//! [`Prober`] that times when an address answers, and an [`NsRelay`] that lets
//! processes inside a namespace reach a database listening on 127.0.0.1 of the
//! root namespace.
//!
//! Needs root (and `ip netns`): tests check [`available`] first and print a
//! loud SKIPPED banner when it is false.
//!
//! Only spawned threads ever enter a namespace (`setns` changes the namespace
//! of the calling thread only, for the rest of its life); the test's own
//! threads stay in the root namespace.

use super::Proto;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where `ip netns add` keeps its namespaces (iproute2's NETNS_RUN_DIR).
const NETNS_DIR: &str = "/var/run/netns";

/// Interface names are at most 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Whether namespace tests can run here: root, and `ip netns` can add and
/// delete a (throwaway) namespace. Checked once per process.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let name = format!("spx{}probe", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let added = ok(&["netns", "add", &name]);
        let deleted = added && ok(&["netns", "del", &name]);
        added && deleted
    })
}

/// Prints the loud banner of a test that did not run; `available()` false.
pub fn skipped(test: &str) {
    let _ = writeln!(
        io::stderr(),
        "\n**************************************************************\n\
         SKIPPED: {test} needs root and `ip netns` (network namespaces)\n\
         **************************************************************\n"
    );
}

/// Moves the calling thread into namespace `ns_real` (a name under
/// /var/run/netns) for the rest of its life. Only ever call it on a thread
/// spawned for that purpose.
pub fn enter(ns_real: &str) -> io::Result<()> {
    let path = format!("{NETNS_DIR}/{ns_real}");
    let f = fs::File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
    // SAFETY: setns(2) on an fd we own and keep open for the call; it only
    // changes the network namespace of the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {path}: {e}")));
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns_real` and returns its
/// result (a panic in `f` is resumed here). Sockets `f` creates belong to that
/// namespace, and keep working after `f` returns.
pub fn run_in<T: Send>(ns_real: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        let h = s.spawn(|| {
            enter(ns_real).unwrap_or_else(|e| panic!("{e}"));
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Whether the calling thread is in another network namespace than the
/// process's main thread (i.e. it called setns).
fn thread_moved() -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| fs::metadata(p).map(|m| m.ino()).ok();
    match (ino("/proc/thread-self/ns/net"), ino("/proc/self/ns/net")) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// Runs `ip ARGS…` and waits; panics with its stderr when it fails.
fn ip(context: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{context}: cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{context}: ip {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether something listens on `ip:port` (or on the any-address, port) in
/// namespace `ns_real`, from that namespace's /proc/net/{udp,tcp}[6] (TCP: in
/// LISTEN state). An IPv6 `ip` is matched by port only.
pub fn is_bound_in(ns_real: &str, ip: &str, port: u16, proto: Proto) -> bool {
    let v6 = ip.parse::<IpAddr>().map(|a| a.is_ipv6()).unwrap_or(false);
    let file = match (proto, v6) {
        (Proto::Udp, false) => "/proc/net/udp",
        (Proto::Tcp, false) => "/proc/net/tcp",
        (Proto::Udp, true) => "/proc/net/udp6",
        (Proto::Tcp, true) => "/proc/net/tcp6",
    };
    let Ok(out) = Command::new("ip").args(["netns", "exec", ns_real, "cat", file]).stdin(Stdio::null()).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let want_port = format!("{port:04X}");
    // the kernel writes an IPv4 address as a little-endian u32: 10.1.2.3 is 0302010A
    let want_addr = ip.parse::<Ipv4Addr>().ok().map(|a| {
        let o = a.octets();
        format!("{:02X}{:02X}{:02X}{:02X}", o[3], o[2], o[1], o[0])
    });
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() <= 3 || (proto == Proto::Tcp && f[3] != "0A") {
            return false;
        }
        let Some((addr, p)) = f[1].split_once(':') else {
            return false;
        };
        if p != want_port {
            return false;
        }
        match &want_addr {
            Some(w) => addr == w || addr == "00000000",
            None => true,
        }
    })
}

// ---------------------------------------------------------------------- lab

/// A set of network namespaces, bridges and veth links, all removed on drop.
///
/// Namespaces have logical names ("lb1", "fs1", …) and real names unique per
/// process and lab (`spx<pid%100000><n>-lb1`); every device lives inside a
/// namespace of the lab (bridges in its switch namespace "sw"), so device
/// names only need to be unique within the lab and nothing is added to the
/// root namespace.
pub struct Lab {
    tag: String,
    prefix: String,
    /// (logical, real), in creation order
    namespaces: Vec<(String, String)>,
    /// (logical, device), in the switch namespace
    bridges: Vec<(String, String)>,
    /// switch-side veth ends made so far (names p<k><ns>)
    ports: u32,
}

impl Lab {
    /// An empty lab; `tag` only appears in error messages.
    pub fn new(tag: &str) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id() % 100_000;
        // A stale lab of a killed earlier process may hold the same prefix
        // (its Drop never ran): pick one no namespace uses yet. `ip netns add`
        // fails on an existing name, so a race can't make two labs share one.
        let existing: Vec<String> = fs::read_dir(NETNS_DIR)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let prefix = loop {
            let p = format!("spx{pid:05}{}", N.fetch_add(1, Ordering::SeqCst));
            if !existing.iter().any(|e| e.starts_with(&format!("{p}-"))) {
                break p;
            }
        };
        Lab { tag: tag.to_string(), prefix, namespaces: Vec::new(), bridges: Vec::new(), ports: 0 }
    }

    fn ctx(&self) -> String {
        format!("lab {} ({})", self.tag, self.prefix)
    }

    /// Creates namespace `name` (logical) with `lo` up; returns its real name.
    pub fn ns(&mut self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{}: namespace name {name:?}: use letters, digits, _",
            self.ctx()
        );
        assert!(self.find_ns(name).is_none(), "{}: namespace {name} exists already", self.ctx());
        let real = format!("{}-{name}", self.prefix);
        ip(&self.ctx(), &["netns", "add", &real]);
        self.namespaces.push((name.to_string(), real.clone()));
        ip(&self.ctx(), &["-n", &real, "link", "set", "lo", "up"]);
        real
    }

    fn find_ns(&self, name: &str) -> Option<&str> {
        self.namespaces.iter().find(|(l, _)| l == name).map(|(_, r)| r.as_str())
    }

    /// The real name of namespace `name` (logical); panics if the lab has none.
    pub fn ns_name(&self, name: &str) -> &str {
        self.find_ns(name).unwrap_or_else(|| panic!("{}: no namespace {name}", self.ctx()))
    }

    /// Every namespace of the lab as (logical, real) names.
    pub fn namespaces(&self) -> Vec<(String, String)> {
        self.namespaces.clone()
    }

    fn switch(&mut self) -> String {
        match self.find_ns("sw") {
            Some(r) => r.to_string(),
            None => self.ns("sw"),
        }
    }

    /// Creates bridge `name` (logical) in the lab's switch namespace ("sw",
    /// made on first use), up; returns its device name (`br-<name>`). A dumb
    /// switch: no STP (ports forward at once), no multicast snooping (so
    /// multicast reaches every port).
    pub fn bridge(&mut self, name: &str) -> String {
        assert!(self.find_bridge(name).is_none(), "{}: bridge {name} exists already", self.ctx());
        let dev = format!("br-{name}");
        assert!(dev.len() <= IFNAME_MAX, "{}: bridge name {name:?} too long (device {dev})", self.ctx());
        let sw = self.switch();
        let ctx = self.ctx();
        ip(&ctx, &["-n", &sw, "link", "add", &dev, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"]);
        ip(&ctx, &["-n", &sw, "link", "set", &dev, "up"]);
        self.bridges.push((name.to_string(), dev.clone()));
        dev
    }

    fn find_bridge(&self, name: &str) -> Option<&str> {
        self.bridges.iter().find(|(l, d)| l == name || d == name).map(|(_, d)| d.as_str())
    }

    /// A veth pair from namespace `ns` (logical) to bridge `bridge` (logical
    /// or device name): the end `ifname` in `ns` gets `addr_cidr`
    /// (e.g. "10.77.1.11/24") and is up; the other end is a port of the
    /// bridge, up.
    pub fn link_to_bridge(&mut self, ns: &str, ifname: &str, bridge: &str, addr_cidr: &str) {
        check_ifname(ifname);
        let real = self.ns_name(ns).to_string();
        let dev = self.find_bridge(bridge).unwrap_or_else(|| panic!("{}: no bridge {bridge}", self.ctx())).to_string();
        let sw = self.switch();
        self.ports += 1;
        let mut port = format!("p{}{ns}", self.ports);
        port.truncate(IFNAME_MAX);
        let ctx = self.ctx();
        ip(&ctx, &["-n", &real, "link", "add", ifname, "type", "veth", "peer", "name", &port, "netns", &sw]);
        ip(&ctx, &["-n", &sw, "link", "set", &port, "master", &dev]);
        ip(&ctx, &["-n", &sw, "link", "set", &port, "up"]);
        ip(&ctx, &["-n", &real, "addr", "add", addr_cidr, "dev", ifname]);
        ip(&ctx, &["-n", &real, "link", "set", ifname, "up"]);
    }

    /// A direct veth pair (a crossover cable) between namespaces `a` and `b`
    /// (logical): `a_if` with `a_addr` in `a`, `b_if` with `b_addr` in `b`,
    /// both up.
    pub fn link(&mut self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        check_ifname(a_if);
        check_ifname(b_if);
        let (ra, rb) = (self.ns_name(a).to_string(), self.ns_name(b).to_string());
        let ctx = self.ctx();
        ip(&ctx, &["-n", &ra, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &rb]);
        ip(&ctx, &["-n", &ra, "addr", "add", a_addr, "dev", a_if]);
        ip(&ctx, &["-n", &rb, "addr", "add", b_addr, "dev", b_if]);
        ip(&ctx, &["-n", &ra, "link", "set", a_if, "up"]);
        ip(&ctx, &["-n", &rb, "link", "set", b_if, "up"]);
    }

    /// `ip link set IFNAME up|down` in namespace `ns` (logical): e.g. cuts a
    /// link (the peer end then has no carrier).
    pub fn set_link(&self, ns: &str, ifname: &str, up: bool) {
        let real = self.ns_name(ns);
        ip(&self.ctx(), &["-n", real, "link", "set", ifname, if up { "up" } else { "down" }]);
    }

    /// Runs `ip netns exec NS ARGS…` (ns logical) and waits for it.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.ns_name(ns)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: cannot run ip netns exec {ns} {args:?}: {e}", self.ctx()))
    }

    /// A Command for `ip netns exec NS PROGRAM` (ns logical), for the caller
    /// to add args, env, cwd and stdio and to spawn.
    ///
    /// `ip netns exec` switches namespace and then exec(3)s PROGRAM in the
    /// same process (it only forks in batch mode), so the child's PID is
    /// PROGRAM's own: a ChildGuard's SIGTERM/SIGKILL reaches the program
    /// itself (checked by tests/netns_support.rs).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns_name(ns), program]);
        c
    }

    /// Whether namespace `ns` (logical) reaches `ip`: `ping -c 1 -W 1` when
    /// ping is installed, else a TCP connect to port 9 (a refusal counts as
    /// reachable; no route or no answer within 1 s does not).
    pub fn reachable(&self, ns: &str, ip: IpAddr) -> bool {
        if on_path("ping") {
            return self.exec(ns, &["ping", "-n", "-q", "-c", "1", "-W", "1", &ip.to_string()]).status.success();
        }
        run_in(self.ns_name(ns), || match TcpStream::connect_timeout(&SocketAddr::new(ip, 9), Duration::from_secs(1)) {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        })
    }
}

fn check_ifname(name: &str) {
    assert!(
        !name.is_empty() && name.len() <= IFNAME_MAX && !name.contains(['/', ' ', ':']),
        "interface name {name:?}: 1 to {IFNAME_MAX} bytes, no '/', ' ', ':'"
    );
}

impl Drop for Lab {
    fn drop(&mut self) {
        let me = std::process::id();
        for (_, real) in self.namespaces.iter().rev() {
            // Safety net: processes still running inside (their ChildGuards
            // normally stopped them already). Never this test process.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", real]).stdin(Stdio::null()).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<u32>().ok())
                {
                    if pid != me && pid > 1 {
                        // SAFETY: plain kill(2) of a process inside a namespace this lab made.
                        unsafe {
                            libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        }
                    }
                }
            }
        }
        for (_, real) in self.namespaces.iter().rev() {
            // also removes the veths inside (and so their peers) and the bridges
            let ok = Command::new("ip")
                .args(["netns", "del", real])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("{}: could not delete namespace {real}", self.ctx());
            }
        }
    }
}

// ------------------------------------------------------------------- prober

/// One reply to a probe.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// when its probe was sent
    pub sent: Instant,
    /// when the reply came in
    pub received: Instant,
    pub code: u16,
}

#[derive(Default)]
struct ProbeLog {
    sent: Vec<Instant>,
    answers: Vec<Answer>,
}

/// Sends a SIP OPTIONS to a target every `every`, from a UDP socket inside a
/// namespace, and records which probes were answered, when, and how.
pub struct Prober {
    /// The socket's address inside the namespace (any-address, real port).
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ProbeLog>>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `target` from namespace `ns_real` (a real name, e.g.
    /// `lab.ns_name("client")`); returns once the socket is bound.
    pub fn start(ns_real: &str, target: SocketAddr, every: Duration) -> Prober {
        assert!(!every.is_zero(), "Prober: every must be > 0");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<SocketAddr, String>>(1);
        let ns = ns_real.to_string();
        let (st, lg) = (stop.clone(), log.clone());
        let thread = thread::Builder::new()
            .name(format!("prober-{ns}"))
            .spawn(move || {
                let sock = enter(&ns)
                    .and_then(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
                    .and_then(|s| s.local_addr().map(|a| (s, a)));
                match sock {
                    Ok((s, a)) => {
                        let _ = ready_tx.send(Ok(a));
                        probe_loop(s, target, every, &st, &lg);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("prober in {ns}: {e}")));
                    }
                }
            })
            .expect("spawn prober thread");
        let local = match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("prober in {ns_real} did not start: {e}"),
        };
        Prober { local, stop, log, thread: Some(thread) }
    }

    /// Replies received after `t`, in order, as (receive time, status code).
    pub fn answers_since(&self, t: Instant) -> Vec<(Instant, u16)> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.answers.iter().filter(|a| a.received > t).map(|a| (a.received, a.code)).collect()
    }

    /// Every reply so far, in the order received.
    pub fn answers(&self) -> Vec<Answer> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).answers.clone()
    }

    /// How many probes were sent after `t`.
    pub fn sent_since(&self, t: Instant) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).sent.iter().filter(|s| **s > t).count()
    }

    /// Waits (from now) up to `within` for a reply to a probe sent after `t`;
    /// returns the time from `t` to when that reply came in. A late reply to a
    /// probe sent before `t` does not count.
    pub fn first_answer_after(&self, t: Instant, within: Duration) -> Option<Duration> {
        let end = Instant::now() + within;
        loop {
            {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(a) = log.answers.iter().find(|a| a.received > t && a.sent > t) {
                    return Some(a.received - t);
                }
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops probing (the thread ends within ~20 ms).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

fn token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:x}{:x}{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos)
}

/// The source address the kernel would use towards `target` (from a
/// throwaway socket: connect on UDP sends nothing); None without a route.
fn source_ip(target: SocketAddr) -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(target).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

fn options_request(target: SocketAddr, local: SocketAddr, branch: &str, tok: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:prober@{local}>;tag=p{tok}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {tok}@prober.invalid\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Status code and top Via branch of a SIP response.
fn parse_reply(data: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let code: u16 = lines.next()?.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    for l in lines {
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else { continue };
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")) {
            continue;
        }
        let first = value.split(',').next().unwrap_or("");
        let branch = first.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("branch").then(|| v.trim().to_string())
        })?;
        return Some((code, branch));
    }
    None
}

fn probe_loop(sock: UdpSocket, target: SocketAddr, every: Duration, stop: &AtomicBool, log: &Mutex<ProbeLog>) {
    let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let tok = token();
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut next = Instant::now();
    let mut n: u64 = 0;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next {
            if let Some(src) = source_ip(target) {
                ip = src;
            }
            n += 1;
            let id = format!("{tok}-{n}");
            let branch = format!("z9hG4bK-spxprobe-{id}");
            let msg = options_request(target, SocketAddr::new(ip, port), &branch, &id);
            let sent = Instant::now();
            // no route / link down: the probe is lost, as on a real network
            let _ = sock.send_to(msg.as_bytes(), target);
            pending.insert(branch, sent);
            log.lock().unwrap_or_else(|e| e.into_inner()).sent.push(sent);
            // a probe unanswered for 32 s (64*T1) never will be
            pending.retain(|_, s| sent.duration_since(*s) < Duration::from_secs(32));
            next += every;
            if next <= now {
                next = now + every;
            }
        }
        let wait =
            next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), Duration::from_millis(20));
        let _ = sock.set_read_timeout(Some(wait));
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            let received = Instant::now();
            if let Some((code, branch)) = parse_reply(&buf[..len]) {
                if let Some(&sent) = pending.get(&branch) {
                    if code >= 200 {
                        pending.remove(&branch);
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).answers.push(Answer { sent, received, code });
                }
            }
        }
    }
}

// -------------------------------------------------------------------- relay

type Conns = Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>;

/// A TCP relay from an address inside a namespace to an address of the root
/// namespace (e.g. a database on 127.0.0.1), so processes in the namespace can
/// reach it.
pub struct NsRelay {
    /// Where it listens, inside the namespace.
    pub listen: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Conns,
    accepted: Arc<AtomicU32>,
    threads: Vec<JoinHandle<()>>,
}

impl NsRelay {
    /// Listens on `listen` inside namespace `ns_real` (an address of that
    /// namespace, e.g. 10.77.1.30:5432, or port 0 for any) and relays each
    /// connection to `upstream` in the root namespace. Returns once it
    /// listens. Call it from a thread in the root namespace (the test's).
    pub fn start(ns_real: &str, listen: SocketAddr, upstream: SocketAddr) -> NsRelay {
        assert!(!thread_moved(), "NsRelay::start must be called from a thread in the root namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Conns = Arc::new(Mutex::new(HashMap::new()));
        let accepted = Arc::new(AtomicU32::new(0));
        let (tx, rx) = mpsc::channel::<TcpStream>();
        // The upstream side: a thread that never calls setns (spawned from
        // this root-namespace thread, so it is in the root namespace too)
        // makes every upstream connection and starts the pumps.
        let connector = {
            let (stop, conns) = (stop.clone(), conns.clone());
            thread::Builder::new()
                .name("nsrelay-up".into())
                .spawn(move || {
                    let mut id = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        match rx.recv_timeout(Duration::from_millis(10)) {
                            Ok(down) => {
                                id += 1;
                                connect_and_pump(id, down, upstream, &conns);
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    }
                })
                .expect("spawn relay connector")
        };
        // The namespace side: this thread enters the namespace and only
        // listens and accepts there.
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<SocketAddr, String>>(1);
        let ns = ns_real.to_string();
        let listener = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            thread::Builder::new()
                .name(format!("nsrelay-{ns}"))
                .spawn(move || {
                    let l = enter(&ns).and_then(|_| TcpListener::bind(listen)).and_then(|l| {
                        l.set_nonblocking(true)?;
                        Ok(l)
                    });
                    let l = match l.and_then(|l| l.local_addr().map(|a| (l, a))) {
                        Ok((l, a)) => {
                            let _ = ready_tx.send(Ok(a));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("relay in {ns} on {listen}: {e}")));
                            return;
                        }
                    };
                    while !stop.load(Ordering::SeqCst) {
                        match l.accept() {
                            Ok((s, _)) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                if s.set_nonblocking(false).is_err() || tx.send(s).is_err() {
                                    continue;
                                }
                            }
                            Err(_) => thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
                .expect("spawn relay listener")
        };
        let mut relay = NsRelay { listen, stop, conns, accepted, threads: vec![connector, listener] };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(a)) => relay.listen = a,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("relay in {ns_real} did not start: {e}"),
        }
        relay
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Cuts every open connection (both sides see it closed); keeps listening.
    pub fn cut(&self) {
        cut_all(&self.conns);
    }
}

fn cut_all(conns: &Conns) {
    let all: Vec<(TcpStream, TcpStream)> =
        conns.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, c)| c).collect();
    for (a, b) in all {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
}

fn connect_and_pump(id: u64, down: TcpStream, upstream: SocketAddr, conns: &Conns) {
    let up = match TcpStream::connect_timeout(&upstream, Duration::from_secs(3)) {
        Ok(u) => u,
        Err(_) => {
            let _ = down.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    let clones =
        (|| Some((down.try_clone().ok()?, up.try_clone().ok()?, down.try_clone().ok()?, up.try_clone().ok()?)))();
    let Some((down2, up2, down_reg, up_reg)) = clones else {
        let _ = down.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
        return;
    };
    conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (down_reg, up_reg));
    let done = Arc::new(AtomicU8::new(0));
    for (from, to) in [(down, up), (up2, down2)] {
        let (done, conns) = (done.clone(), conns.clone());
        thread::spawn(move || pump(id, from, to, &done, &conns));
    }
}

/// Copies `from` to `to` until end of stream, then half-closes `to`; on an
/// error closes both. The second pump of a connection to finish forgets it.
fn pump(id: u64, mut from: TcpStream, mut to: TcpStream, done: &AtomicU8, conns: &Conns) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
    if done.fetch_add(1, Ordering::SeqCst) == 1 {
        conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

impl Drop for NsRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        cut_all(&self.conns);
    }
}
