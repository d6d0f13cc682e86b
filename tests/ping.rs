//! `siprox ping`, the SIP health check, against the real binary: a proxy running the
//! shipped `scripts/default.rhai` answers the OPTIONS addressed to it with 200 (exit 0); a
//! script answering 503 makes it exit 1 with the reply printed; a port where nothing listens
//! exits 1 once the timeout is over; a target that is no address exits 2, as clap does for a
//! bad argument.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{free_port, siprox_bin, Proxy, LOCALHOST};

/// What one `siprox ping ARGS…` did: exit code, stdout, stderr, and how long it took.
struct Ran {
    code: Option<i32>,
    out: String,
    err: String,
    took: Duration,
}

fn siprox_ping(args: &[&str]) -> Ran {
    let start = Instant::now();
    let out = Command::new(siprox_bin()).arg("ping").args(args).output().expect("run siprox ping");
    Ran {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

#[test]
fn the_default_script_answers_200_and_ping_exits_0() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join("default.rhai");
    let proxy = Proxy::start_script_file("ping_default", &script, "");
    let target = format!("{LOCALHOST}:{}", proxy.port);
    for args in [vec![target.as_str()], vec!["--from", LOCALHOST, "--timeout-ms", "1500", &target]] {
        let r = siprox_ping(&args);
        assert_eq!(r.code, Some(0), "{args:?}: {}{}", r.out, r.err);
        let want = format!("200 OK from {target} in ");
        assert!(r.out.starts_with(&want) && r.out.trim_end().ends_with(" ms"), "{args:?}: {}", r.out);
    }
    let sip_uri = format!("sip:{target}");
    assert_eq!(siprox_ping(&[&sip_uri]).code, Some(0), "the sip: form");
    proxy.stop();
}

#[test]
fn a_503_is_printed_and_ping_exits_1() {
    let script = r#"fn route() {
    if is_method("OPTIONS") { sl_send_reply(503, "Service Unavailable"); }
    exit();
}
"#;
    let proxy = Proxy::start("ping_503", script);
    let target = format!("{LOCALHOST}:{}", proxy.port);
    let r = siprox_ping(&[&target]);
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert!(r.out.starts_with(&format!("503 Service Unavailable from {target} in ")), "{}", r.out);
    proxy.stop();
}

#[test]
fn nobody_listening_exits_1_once_the_timeout_is_over() {
    let target = format!("{LOCALHOST}:{}", free_port());
    let r = siprox_ping(&["--timeout-ms", "700", &target]);
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert!(r.err.contains("no final reply within 700 ms"), "{}", r.err);
    assert!(r.took >= Duration::from_millis(700), "gave up early: {:?}", r.took);
    assert!(r.took < Duration::from_millis(2500), "took {:?}", r.took);
}

#[test]
fn a_bad_target_or_option_exits_2() {
    for args in [vec!["10.0.0.1:0"], vec!["sip:bob@10.0.0.1"], vec!["--timeout-ms", "soon", "127.0.0.1"]] {
        let r = siprox_ping(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}{}", r.out, r.err);
    }
}
