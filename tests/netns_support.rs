//! Self-test of tests/support/netns.rs: a lab of namespaces wired by a bridge
//! and a direct link, a link cut, SIPp and the SIP prober across namespaces,
//! and the TCP relay from a namespace to the root namespace. Needs root; else
//! it prints SKIPPED.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use support::netns::{self, Lab, NsRelay, Prober};
use support::*;

/// A second octet of our own, so two test processes never share a subnet
/// (not that they could meet: every address lives inside a lab's namespaces).
fn net() -> u32 {
    20 + std::process::id() % 200
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lab_links_probes_and_relay() {
    if !netns::available() {
        netns::skipped("netns_support::lab_links_probes_and_relay");
        return;
    }
    let t0 = Instant::now();
    let n = net();
    let (a1, b1, a2, b2) = (format!("10.{n}.1.1"), format!("10.{n}.1.2"), format!("10.{n}.2.1"), format!("10.{n}.2.2"));
    let dir = TempDir::new("netns");
    let mut lab = Lab::new("netns_support");
    let ns_a = lab.ns("a");
    let ns_b = lab.ns("b");
    assert_eq!(lab.ns_name("a"), ns_a);
    let br = lab.bridge("lan");
    assert_eq!(br, "br-lan");
    lab.link_to_bridge("a", "eth0", "lan", &format!("{a1}/24"));
    lab.link_to_bridge("b", "eth0", "lan", &format!("{b1}/24"));
    lab.link("a", "x0", &format!("{a2}/24"), "b", "x0", &format!("{b2}/24"));
    let names: Vec<String> = lab.namespaces().into_iter().map(|(_, r)| r).collect();
    assert_eq!(names.len(), 3, "a, b and the switch: {names:?}");
    let listed = ns_list();
    for r in &names {
        assert!(listed.contains(r.as_str()), "{r} not in `ip netns list`:\n{listed}");
    }

    // both links carry traffic, both ways
    assert!(lab.reachable("a", ip(&b1)), "a -> b over the bridge");
    assert!(lab.reachable("b", ip(&a1)), "b -> a over the bridge");
    assert!(lab.reachable("a", ip(&b2)), "a -> b over the direct link");
    // a cut link carries nothing; the bridge still does
    lab.set_link("a", "x0", false);
    assert!(!lab.reachable("a", ip(&b2)), "a -> b over the cut direct link");
    assert!(lab.reachable("a", ip(&b1)), "a -> b over the bridge with the direct link cut");
    lab.set_link("a", "x0", true);
    assert!(lab.reachable("a", ip(&b2)), "a -> b over the direct link, up again");

    // `ip netns exec` execs the program: the child's PID is the program's
    let mut sleeper = ChildGuard::new("sleep", lab.command("b", "sleep").arg("30").spawn().expect("spawn sleep"));
    let comm = || std::fs::read_to_string(format!("/proc/{}/comm", sleeper.pid())).unwrap_or_default();
    let end = Instant::now() + Duration::from_millis(500);
    // until the exec has happened
    while comm().trim() != "sleep" && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(comm().trim(), "sleep", "the child of `ip netns exec` is the program itself");
    let in_b = lab.exec("b", &["true"]);
    assert!(in_b.status.success());
    let pids = Command::new("ip").args(["netns", "pids", &ns_b]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&pids.stdout).split_whitespace().any(|p| p == sleeper.pid().to_string()),
        "sleep runs in namespace b"
    );
    sleeper.kill_now();

    // a SIPp backend in b answers OPTIONS probes sent from a
    let port = free_port();
    let mut uas =
        Sipp::uas("uas", "uas-ds.xml", port, Proto::Udp).calls(10_000).timeout_s(20).in_netns(&ns_b, &b1).spawn(&dir);
    let uas_pid_ns = Command::new("ip").args(["netns", "pids", &ns_b]).output().unwrap();
    assert!(!String::from_utf8_lossy(&uas_pid_ns.stdout).trim().is_empty(), "sipp runs in namespace b");
    let target = SocketAddr::new(ip(&b1), port);
    let prober = Prober::start(&ns_a, target, Duration::from_millis(50));
    let t = Instant::now();
    let first = prober.first_answer_after(t, Duration::from_secs(3));
    assert!(first.is_some(), "no answer to the probes from a to {target}:\n{}", uas.report());
    let first = first.unwrap();
    assert!(first < Duration::from_secs(1), "first answer after {first:?}");
    thread::sleep(Duration::from_millis(200));
    let got = prober.answers_since(t);
    assert!(got.len() >= 2, "answers: {got:?}");
    assert!(got.iter().all(|(_, code)| *code == 200), "answers: {got:?}");
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "in order: {got:?}");
    assert!(prober.sent_since(t) >= got.len());
    // the backend gone, probes go unanswered
    uas.kill();
    let t2 = Instant::now() + Duration::from_millis(20);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(prober.first_answer_after(t2, Duration::from_millis(300)), None, "answers with the backend gone");
    prober.stop();

    // the relay: from namespace b, over the bridge, to a listener in a, on
    // to an echo server on 127.0.0.1 of the root namespace
    let echo = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let upstream = echo.local_addr().unwrap();
    thread::spawn(move || {
        for mut c in echo.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let relay = NsRelay::start(&ns_a, SocketAddr::new(ip(&a1), 15432), upstream);
    assert_eq!(relay.listen, SocketAddr::new(ip(&a1), 15432));
    let listen = relay.listen;
    let (echoed, conn) = netns::run_in(&ns_b, move || {
        let mut c = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).expect("connect to the relay");
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(b"ping through the relay").unwrap();
        let mut buf = [0u8; 22];
        c.read_exact(&mut buf).expect("echo back");
        (buf.to_vec(), c)
    });
    assert_eq!(echoed, b"ping through the relay");
    assert_eq!(relay.accepted(), 1);
    assert_eq!(relay.open(), 1);
    // cut: the client sees its connection closed
    relay.cut();
    let mut conn = conn;
    let mut buf = [0u8; 16];
    let after_cut = conn.read(&mut buf);
    assert!(matches!(after_cut, Ok(0) | Err(_)), "read after cut: {after_cut:?}");
    // a second connection after the cut works, and dropping the relay cuts it
    let conn2 = netns::run_in(&ns_b, move || {
        let mut c = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).expect("connect again");
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(b"again").unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("echo back again");
        assert_eq!(&buf, b"again");
        c
    });
    drop(relay);
    let mut conn2 = conn2;
    let after_drop = conn2.read(&mut buf);
    assert!(matches!(after_drop, Ok(0) | Err(_)), "read after relay drop: {after_drop:?}");
    // the listener is gone with it
    let refused = netns::run_in(&ns_b, move || TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_err());
    assert!(refused, "relay still listening after drop");

    // the lab's drop removes every namespace (and kills what still runs there)
    let mut stray = lab.command("a", "sleep").arg("30").spawn().expect("spawn a stray sleep");
    drop(lab);
    let st = stray.wait().expect("wait for the stray sleep");
    assert!(!st.success(), "the stray process was killed: {st}");
    let listed = ns_list();
    for r in &names {
        assert!(!listed.contains(r.as_str()), "{r} still in `ip netns list` after drop:\n{listed}");
    }
    let took = t0.elapsed();
    eprintln!("netns self-test took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
