//! `siprox test` in CI: the built binary runs every `*.test.toml` under scripts/ and
//! examples/ and all their cases must pass; every route script (`*.rhai`) there must have
//! its test file beside it (`X.rhai` → `X.test.toml`); and a wrong expectation must make
//! the command fail, so a passing run means something.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dir` (recursively) whose name ends with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            files_ending(&p, suffix, out);
        } else if p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(suffix)) {
            out.push(p);
        }
    }
}

/// `suffix` files under scripts/ and examples/, relative to the repository root.
fn shipped(suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["scripts", "examples"] {
        files_ending(&root().join(dir), suffix, &mut out);
    }
    out.into_iter().map(|p| p.strip_prefix(root()).map(Path::to_path_buf).unwrap_or(p)).collect()
}

fn siprox_test(files: &[PathBuf], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siprox"))
        .arg("test")
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run siprox: {e}"))
}

#[test]
fn every_route_script_has_a_test_file() {
    let scripts = shipped(".rhai");
    assert!(scripts.iter().any(|p| p.ends_with("scripts/default.rhai")), "no scripts/default.rhai found: {scripts:?}");
    let missing: Vec<String> = scripts
        .iter()
        .filter(|s| {
            let test = s.with_file_name(format!("{}.test.toml", s.file_stem().unwrap_or_default().to_string_lossy()));
            !root().join(test).exists()
        })
        .map(|s| s.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these route scripts have no test file beside them (X.rhai needs X.test.toml, see docs/script-tests.md): {}",
        missing.join(", ")
    );
}

#[test]
fn every_test_file_passes() {
    let files = shipped(".test.toml");
    assert!(!files.is_empty(), "no *.test.toml under scripts/ or examples/");
    let out = siprox_test(&files, &root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "siprox test failed ({}):\n{stdout}\n{stderr}", out.status);
    let passed = stdout.lines().filter(|l| l.starts_with("ok   ")).count();
    assert!(passed > 0, "no case ran:\n{stdout}");
    assert!(stdout.ends_with(&format!("{passed} passed, 0 failed\n")), "unexpected summary:\n{stdout}");
}

#[test]
fn a_wrong_expectation_makes_the_command_fail() {
    let dir = support::TempDir::new("script-tests");
    std::fs::write(dir.join("route.rhai"), "fn route() { sl_send_reply(404, \"Not here\"); }\n").expect("write script");
    let tests = r#"script = "route.rhai"

[[case]]
name = "right"
message = """
OPTIONS sip:127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1
From: <sip:a@example.com>;tag=1
To: <sip:127.0.0.1>
Call-ID: c1
CSeq: 1 OPTIONS
"""
[case.expect]
reply = 404

[[case]]
name = "wrong"
message_file = "options.sip"
[case.expect]
reply = 200
"#;
    std::fs::write(dir.join("route.test.toml"), tests).expect("write tests");
    std::fs::write(
        dir.join("options.sip"),
        "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-2\nFrom: <sip:a@example.com>;tag=2\nTo: <sip:127.0.0.1>\nCall-ID: c2\nCSeq: 1 OPTIONS\n",
    )
    .expect("write message");
    let out = siprox_test(&[PathBuf::from("route.test.toml")], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   route.test.toml: right\n"), "{stdout}");
    assert!(stdout.contains("FAIL route.test.toml: wrong\n     reply: expected 200, got 404 Not here\n"), "{stdout}");
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");
}
