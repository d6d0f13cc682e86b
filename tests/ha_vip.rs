//! The virtual IP against a real kernel: two network namespaces joined by a veth pair stand for
//! the two hosts of an active/standby pair. Node A takes the VIP (netlink add), B reaches it,
//! B's stale neighbour entry for it is corrected by A's announcement, A gives it back.
//!
//! Needs root and `ip netns`; elsewhere it says so loudly and passes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siprox::ha::vip::{self, Vip};

const MAC_A: &str = "02:53:50:00:00:0a";
const MAC_B: &str = "02:53:50:00:00:0b";
const WRONG_MAC: &str = "02:00:00:00:00:99";
const IF_A: &str = "spxv0";
const IF_B: &str = "spxv1";

fn run(args: &[&str]) -> Output {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(out) => out,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// Runs a command that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success())
}

/// The two namespaces, deleted (with the veth pair in them) however the test ends.
struct Namespaces {
    a: String,
    b: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Waits up to a second for `ip -n B neigh show ADDR` to show `mac`.
fn neighbour_becomes(ns: &str, addr: &str, mac: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let shown = ok(&["ip", "-n", ns, "neigh", "show", addr, "dev", IF_B]);
        if shown.contains(mac) || Instant::now() > deadline {
            return shown;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to two seconds for `IF_B` in `ns` to have its IPv6 link-local address.
fn ipv6_up(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while ok(&["ip", "-n", ns, "-6", "addr", "show", "dev", IF_B, "scope", "link"]).is_empty() {
        assert!(Instant::now() < deadline, "IPv6 never came up on {IF_B} in {ns}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread of its own inside namespace `ns`: setns(2) moves only the calling
/// thread. `ip` children it spawns inherit that namespace, which `-n` and `ip netns exec` then
/// override.
fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: the fd stays open for the whole call; setns changes only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

#[test]
fn vip_moves_between_namespaces() {
    if !can_run() {
        eprintln!("\n*** SKIPPED: needs root and ip netns (ha_vip) ***\n");
        return;
    }
    let pid = std::process::id();
    let x = pid % 250 + 1;
    let ns = Namespaces { a: format!("spxv-a-{pid}"), b: format!("spxv-b-{pid}") };
    ok(&["ip", "netns", "add", &ns.a]);
    ok(&["ip", "netns", "add", &ns.b]);
    for n in [&ns.a, &ns.b] {
        // No Duplicate Address Detection on the test link: its addresses are usable at once.
        ok(&["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    }
    // Made inside A with its peer inside B, so no name ever lands in the host's namespace.
    ok(&[
        "ip", "-n", &ns.a, "link", "add", IF_A, "address", MAC_A, "type", "veth", "peer", "name", IF_B, "address",
        MAC_B, "netns", &ns.b,
    ]);
    ok(&["ip", "-n", &ns.a, "addr", "add", &format!("10.199.{x}.1/24"), "dev", IF_A]);
    ok(&["ip", "-n", &ns.b, "addr", "add", &format!("10.199.{x}.2/24"), "dev", IF_B]);
    ok(&["ip", "-n", &ns.a, "link", "set", IF_A, "up"]);
    ok(&["ip", "-n", &ns.b, "link", "set", IF_B, "up"]);

    let v4 = Vip::parse(&format!("10.199.{x}.100/24"), IF_A).expect("the IPv4 VIP parses");
    let v6 = Vip::parse(&format!("fd99:{x:x}::100/64"), IF_A).expect("the IPv6 VIP parses");
    let v4_addr = v4.addr.to_string();
    let v6_addr = v6.addr.to_string();
    let (a, b) = (ns.a.clone(), ns.b.clone());

    let node_a = in_namespace(&ns.a, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            // IPv4: add, twice; B reaches it (a TCP connect, which needs ARP to resolve the VIP).
            vip::add(&v4).await.expect("add the IPv4 VIP");
            assert!(ok(&["ip", "-n", &a, "addr", "show", "dev", IF_A]).contains(&format!("{v4_addr}/24")));
            assert!(vip::is_present(&v4).await.expect("is_present"));
            vip::add(&v4).await.expect("adding it again is Ok");
            let listener = TcpListener::bind((v4.addr, 5060)).expect("bind the VIP");
            let to = SocketAddr::new(v4.addr, 5060);
            let reached = in_namespace(&b, move || TcpStream::connect_timeout(&to, Duration::from_secs(1)).map(drop));
            match reached.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("B cannot reach the VIP: {e}"),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            drop(listener);

            // B's cache says the VIP is elsewhere (the old active); the announcement corrects it.
            ok(&["ip", "-n", &b, "neigh", "replace", &v4_addr, "lladdr", WRONG_MAC, "dev", IF_B, "nud", "stale"]);
            assert!(neighbour_becomes(&b, &v4_addr, WRONG_MAC).contains(WRONG_MAC));
            vip::announce(&v4).expect("announce the IPv4 VIP");
            let shown = neighbour_becomes(&b, &v4_addr, MAC_A);
            assert!(shown.contains(MAC_A), "B's neighbour entry after the gratuitous ARP: {shown}");

            vip::remove(&v4).await.expect("remove the IPv4 VIP");
            assert!(!ok(&["ip", "-n", &a, "addr", "show", "dev", IF_A]).contains(&v4_addr));
            assert!(!vip::is_present(&v4).await.expect("is_present"));
            vip::remove(&v4).await.expect("removing it again is Ok");

            // IPv6: usable at once (NODAD), and the advertisement corrects B's cache likewise.
            // B acts on neighbour discovery once IPv6 is up on its link, marked by its link-local
            // address, which comes after the kernel's link watcher sees the carrier (up to 1 s).
            ipv6_up(&b);
            vip::add(&v6).await.expect("add the IPv6 VIP");
            assert!(vip::is_present(&v6).await.expect("is_present"));
            let shown = ok(&["ip", "-n", &a, "-6", "addr", "show", "dev", IF_A]);
            assert!(shown.contains(&format!("{v6_addr}/64")) && !shown.contains("tentative"), "{shown}");
            ok(&["ip", "-n", &b, "neigh", "replace", &v6_addr, "lladdr", WRONG_MAC, "dev", IF_B, "nud", "stale"]);
            vip::announce(&v6).expect("announce the IPv6 VIP");
            let shown = neighbour_becomes(&b, &v6_addr, MAC_A);
            assert!(shown.contains(MAC_A), "B's neighbour entry after the advertisement: {shown}");
            vip::remove(&v6).await.expect("remove the IPv6 VIP");
            assert!(!vip::is_present(&v6).await.expect("is_present"));
            vip::remove(&v6).await.expect("removing it again is Ok");

            // An interface this namespace does not have is named in the error.
            let missing = Vip::parse(&v4_addr, "spxv-none").expect("parses");
            match vip::add(&missing).await {
                Err(vip::VipError::NoInterface(message)) => assert!(message.contains("spxv-none"), "{message}"),
                other => panic!("add on a missing interface: {other:?}"),
            }
            match vip::announce(&missing) {
                Err(vip::VipError::NoInterface(message)) => assert!(message.contains("spxv-none"), "{message}"),
                other => panic!("announce on a missing interface: {other:?}"),
            }
        });
    });
    if let Err(panic) = node_a.join() {
        drop(ns);
        std::panic::resume_unwind(panic);
    }
}
