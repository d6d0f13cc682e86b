//! The script lifecycle without a network: versions and hashes, refused reloads that leave
//! the running bundle alone, imports of stdlib modules from disk (and their reload), the
//! file watcher, limits, and `siprox check` for every kind of error.

mod support;

use siprox::config::Config;
use siprox::script::{Limits, Reloaded, ScriptError, ScriptHost};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{siprox_bin, TempDir};

fn load(path: &Path) -> Result<ScriptHost, ScriptError> {
    ScriptHost::load(Some(path), Limits::default(), siprox::modules::Modules::new(&Config::default()).registrar())
}

const GOOD: &str = "fn route() {\n    sl_send_reply(200, \"OK\");\n}\n";

#[test]
fn a_reload_bumps_the_version_only_when_the_content_changed() {
    let dir = TempDir::new("reload-version");
    let path = dir.join("route.rhai");
    fs::write(&path, GOOD).unwrap();
    let host = load(&path).expect("loads");
    let first = host.status();
    assert_eq!(first.version, 1);
    assert_eq!(first.hash.len(), 64, "a SHA-256 in hex");

    assert_eq!(host.reload("test").expect("same file reloads"), Reloaded::Unchanged { version: 1 });
    fs::write(&path, GOOD.replace("200", "202")).unwrap();
    let Reloaded::Swapped { version, hash } = host.reload("test").expect("new file reloads") else {
        panic!("a changed file must swap")
    };
    assert_eq!(version, 2);
    assert_ne!(hash, first.hash);
    let st = host.status();
    assert_eq!((st.version, st.reloads, st.reload_failures, st.last_attempt_failed), (2, 1, 0, false));
}

#[test]
fn a_refused_reload_leaves_the_running_bundle_and_is_reported() {
    let dir = TempDir::new("reload-refused");
    let path = dir.join("route.rhai");
    fs::write(&path, GOOD).unwrap();
    let host = load(&path).expect("loads");
    let before = host.bundle();

    fs::write(&path, "fn route() {\n    sl_send_reply(200);\n}\n").unwrap();
    let err = host.reload("test").expect_err("bad arity is refused");
    let text = err.to_string();
    assert!(text.contains("route.rhai:2:5:") && text.contains("sl_send_reply"), "{text}");
    assert!(Arc::ptr_eq(&before, &host.bundle()), "the running bundle stays");
    let st = host.status();
    assert_eq!((st.version, st.reload_failures, st.last_attempt_failed), (1, 1, true));
    assert_eq!(st.last_error.as_ref().map(|e| e.message.as_str()), Some(text.as_str()));

    // The next good save loads normally; the last error stays on record with its time.
    fs::write(&path, GOOD.replace("OK", "Fine")).unwrap();
    assert!(matches!(host.reload("test"), Ok(Reloaded::Swapped { version: 2, .. })));
    let st = host.status();
    assert!(!st.last_attempt_failed);
    assert!(st.last_error.is_some());
}

#[test]
fn stdlib_modules_are_imported_from_disk_and_reload_with_the_script() {
    let dir = TempDir::new("reload-import");
    fs::create_dir_all(dir.join("stdlib")).unwrap();
    let module = dir.join("stdlib").join("nat.rhai");
    fs::write(&module, "fn answer() { sl_send_reply(200, \"v1\"); }\n").unwrap();
    let path = dir.join("route.rhai");
    fs::write(&path, "import \"nat\" as nat;\nfn route() {\n    nat::answer();\n}\n").unwrap();
    let host = load(&path).expect("loads with its module");
    let st = host.status();
    assert!(st.sources.iter().any(|s| s.ends_with("stdlib/nat.rhai")), "{:?}", st.sources);

    // Editing only the module changes the bundle's hash, so the reload swaps.
    fs::write(&module, "fn answer() { sl_send_reply(200, \"v2\"); }\n").unwrap();
    assert!(matches!(host.reload("test"), Ok(Reloaded::Swapped { version: 2, .. })));

    // A module that no longer has the function the script calls is refused.
    fs::write(&module, "fn other() { }\n").unwrap();
    let err = host.reload("test").expect_err("missing module function");
    assert!(err.to_string().contains("unknown function `nat::answer`"), "{err}");
}

#[test]
fn module_bodies_are_validated_and_imports_in_functions_work() {
    let dir = TempDir::new("reload-module-check");
    let module = dir.join("nat.rhai");
    fs::write(&module, "import \"helpers\" as h;\nfn fix() {\n    h::mark();\n    fix_nated_contct();\n}\n").unwrap();
    fs::write(dir.join("helpers.rhai"), "fn mark() { setflag(3); }\n").unwrap();
    let path = dir.join("route.rhai");
    fs::write(&path, "fn route() {\n    import \"nat\" as n;\n    n::fix();\n}\n").unwrap();
    let err = load(&path).err().expect("a typo inside a module refuses the script");
    let text = err.to_string();
    assert!(text.contains("nat.rhai:4:5: unknown function `fix_nated_contct`"), "{text}");
    assert_eq!(text.lines().count(), 1, "the import in a function and the module's own import are fine: {text}");

    fs::write(&module, "import \"helpers\" as h;\nfn fix() {\n    h::mark();\n}\n").unwrap();
    load(&path).expect("an import inside a function, and a module importing another, load");
}

#[test]
fn the_builtin_common_module_imports_without_a_file() {
    let dir = TempDir::new("reload-builtin");
    let path = dir.join("route.rhai");
    fs::write(&path, "import \"common\" as c;\nfn route() {\n    c::maxfwd(10);\n}\n").unwrap();
    let host = load(&path).expect("the built-in module resolves");
    assert_eq!(host.status().sources.len(), 1, "only the script itself was read from disk");
}

#[test]
fn imports_cannot_reach_outside_the_search_folders() {
    let dir = TempDir::new("reload-escape");
    fs::write(dir.join("secret.rhai"), "fn x() { }\n").unwrap();
    let sub = dir.join("scripts");
    fs::create_dir_all(&sub).unwrap();
    let path = sub.join("route.rhai");
    fs::write(&path, "import \"../secret\" as s;\nfn route() { }\n").unwrap();
    let err = load(&path).err().expect("a path is not a module name");
    assert!(err.to_string().contains("module \"../secret\" not found"), "{err}");

    fs::write(&path, "fn route() {\n    let m = \"common\";\n    import m as c;\n}\n").unwrap();
    let err = load(&path).err().expect("computed import paths are refused");
    assert!(err.to_string().contains("string literal"), "{err}");

    fs::write(&path, "fn route() {\n    eval(\"1\");\n}\n").unwrap();
    assert!(load(&path).is_err(), "eval is disabled");
}

#[test]
fn import_cycles_are_reported() {
    let dir = TempDir::new("reload-cycle");
    fs::write(dir.join("a.rhai"), "import \"b\" as b;\nfn f() { }\n").unwrap();
    fs::write(dir.join("b.rhai"), "import \"a\" as a;\nfn g() { }\n").unwrap();
    let path = dir.join("route.rhai");
    fs::write(&path, "import \"a\" as a;\nfn route() { a::f(); }\n").unwrap();
    let err = load(&path).err().expect("a cycle is refused");
    assert!(err.to_string().contains("import cycle: a -> b -> a"), "{err}");
}

/// The watcher reloads on a rename-over save and on an in-place write, and again when a
/// module the script imports changes.
#[test]
fn the_watcher_reloads_on_every_kind_of_save() {
    let dir = TempDir::new("reload-watch");
    let path = dir.join("route.rhai");
    let module = dir.join("helpers.rhai");
    fs::write(&module, "fn code() { 200 }\n").unwrap();
    fs::write(&path, "import \"helpers\" as h;\nfn route() { sl_send_reply(h::code(), \"a\"); }\n").unwrap();
    let host = Arc::new(load(&path).expect("loads"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _watch = rt.block_on(async { siprox::script::watch(host.clone(), Duration::from_millis(50)) }).expect("watch");

    let wait_version = |v: u64| {
        let end = Instant::now() + Duration::from_secs(5);
        while host.status().version != v {
            assert!(Instant::now() < end, "version {v} not loaded: {:?}", host.status());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let tmp = dir.join(".route.rhai.tmp");
    fs::write(&tmp, "import \"helpers\" as h;\nfn route() { sl_send_reply(h::code(), \"b\"); }\n").unwrap();
    fs::rename(&tmp, &path).unwrap();
    wait_version(2);
    fs::write(&path, "import \"helpers\" as h;\nfn route() { sl_send_reply(h::code(), \"c\"); }\n").unwrap();
    wait_version(3);
    fs::write(&module, "fn code() { 202 }\n").unwrap();
    wait_version(4);
    // A broken save is refused and counted; the version stays.
    fs::write(&path, "fn route( {\n").unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while host.status().reload_failures == 0 {
        assert!(Instant::now() < end, "the broken save was not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(host.status().version, 4);
}

// ------------------------------------------------------------ siprox check

fn check(dir: &TempDir, script: &str) -> (i32, String) {
    let path = dir.join("route.rhai");
    fs::write(&path, script).unwrap();
    let out = Command::new(siprox_bin()).arg("check").arg(&path).output().expect("run siprox check");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_reports_each_kind_of_error_as_file_line_col() {
    let dir = TempDir::new("check-kinds");
    let cases: [(&str, &str); 7] = [
        ("fn route() {\n    let x = ;\n}\n", "route.rhai:2:13:"),
        ("fn route() {\n    no_such_thing();\n}\n", "route.rhai:2:5: unknown function `no_such_thing`"),
        ("fn route() {\n    has_totag(1);\n}\n", "route.rhai:2:5: `has_totag` takes 0 argument(s), not 1"),
        ("fn main() {\n}\n", "route.rhai:1:1: the script has no `fn route()`"),
        ("fn route() {\n    t_on_failure(\"gone\");\n}\n", "route.rhai:2:5: `t_on_failure(\"gone\")` arms a route"),
        ("fn route() {\n    t_on_reply(\"r\");\n}\n", "no `fn onreply_route_r()`"),
        ("fn route() {\n    nat::fix();\n}\n", "route.rhai:2:10: unknown module `nat`"),
    ];
    for (script, want) in cases {
        let (code, err) = check(&dir, script);
        assert_eq!(code, 1, "exit code for {script:?}: {err}");
        assert!(err.contains(want), "for {script:?} want {want:?}, got:\n{err}");
    }
    let (code, err) = check(&dir, "fn route() {\n    t_on_branch(\"b\");\n}\nfn branch_route_b() { }\n");
    assert_eq!(code, 0, "a clean script passes: {err}");
}

// ------------------------------------------------------------ limits

#[test]
fn a_hook_that_outgrows_the_string_limit_is_stopped_and_located() {
    use siprox::script::{Outcome, Source};
    let limits = Limits { max_string_size: 1024, ..Limits::default() };
    let engine = siprox::script::build_engine(limits, &*siprox::modules::Modules::new(&Config::default()).registrar());
    let src = "fn route() {\n    let s = \"x\";\n    loop {\n        s += s;\n    }\n}\n";
    let bundle = siprox::script::compile(engine, Source::Text { text: src, name: "big.rhai" }).expect("compiles");
    let ctx = siprox::script::api::Ctx::new(
        siprox::script::api::RouteKind::Startup,
        siprox::message::SipMsg::empty(),
        "127.0.0.1:1".parse().unwrap(),
        "udp",
        "127.0.0.1:2".parse().unwrap(),
        Arc::new(NoCore),
    );
    let (_, out) = siprox::script::run_hook(&bundle, "route", ctx);
    match out {
        Outcome::Error(e) => {
            let t = e.to_string();
            // Rhai drops the position of limit errors; the hook's line is reported.
            assert!(t.starts_with("big.rhai:1:1: in fn route(): ") && t.contains("Length of string"), "{t}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
}

/// A core for hooks that never reach it.
struct NoCore;
impl siprox::script::api::CoreOps for NoCore {
    fn sl_send_reply(&self, _: &mut siprox::script::api::Ctx, _: u16, _: &str) -> i64 {
        -1
    }
    fn send_reply(&self, _: &mut siprox::script::api::Ctx, _: u16, _: &str) -> i64 {
        -1
    }
    fn t_reply(&self, _: &mut siprox::script::api::Ctx, _: u16, _: &str) -> i64 {
        -1
    }
    fn t_relay(&self, _: &mut siprox::script::api::Ctx, _: &str, _: Option<&str>) -> i64 {
        -1
    }
    fn t_newtran(&self, _: &mut siprox::script::api::Ctx) -> i64 {
        -1
    }
    fn t_check_trans(&self, _: &mut siprox::script::api::Ctx) -> i64 {
        -1
    }
    fn t_was_cancelled(&self, _: &siprox::script::api::Ctx) -> bool {
        false
    }
    fn forward(&self, _: &mut siprox::script::api::Ctx, _: Option<&str>) -> i64 {
        -1
    }
    fn is_myself(&self, _: &str, _: Option<u16>) -> bool {
        false
    }
    fn has_socket(&self, _: &str) -> bool {
        false
    }
}
