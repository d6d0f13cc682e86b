//! `siprox port` end to end, with the built binary:
//! * every opensips.cfg of ../shared/corpus (next to the repository, as CI has it) and every
//!   seed's route logic (tests/port/seeds/, cut from ../shared/seeds; seeds 003 and 004 hold
//!   no opensips.cfg text) converts, exit 0, and the output passes `siprox check`;
//! * the report, the script and the config are stable: golden files in tests/port/golden/
//!   (`SIPROX_BLESS=1 cargo test --test port` rewrites them after a deliberate change);
//! * every TODO the report lists points at a `// TODO(port):` line of route.rhai;
//! * the converted corpus default script routes a SIPp call the way scripts/default.rhai
//!   does, on the same config.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    root().join("..").join("shared").join("corpus")
}

/// `(name, input)` of every file to convert: the corpus (if present) and the seed cuts.
fn inputs() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let corpus = corpus_dir();
    if corpus.is_dir() {
        out.extend(cfg_files(&corpus));
    } else {
        eprintln!(
            "\n*** SKIPPED the ../shared/corpus conversions: {} not found next to the repository.\n\
             *** CI has it; a bare clone does not. The seed conversions still run.\n",
            corpus.display()
        );
    }
    out.extend(cfg_files(&root().join("tests").join("port").join("seeds")));
    out
}

fn cfg_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.file_stem().unwrap_or_default().to_string_lossy().into_owned(), p)).collect()
}

fn port(input: &Path, out: &Path) -> std::process::Output {
    Command::new(siprox_bin()).arg("port").arg(input).arg("-o").arg(out).output().expect("run siprox port")
}

const OUTPUTS: [&str; 3] = ["port-report.txt", "route.rhai", "siprox.toml"];

#[test]
fn every_corpus_file_and_seed_route_converts_checks_and_matches_its_golden_files() {
    let bless = std::env::var_os("SIPROX_BLESS").is_some();
    let tmp = TempDir::new("port-golden");
    let mut problems = Vec::new();
    let list = inputs();
    assert!(list.len() >= 6, "too few inputs: {list:?}");
    for (name, input) in &list {
        let out = tmp.join(name);
        let run = port(input, &out);
        if !run.status.success() {
            problems.push(format!(
                "{name}: siprox port exited {:?}\n{}{}",
                run.status.code(),
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        let check =
            Command::new(siprox_bin()).arg("check").arg(out.join("siprox.toml")).output().expect("run siprox check");
        if !check.status.success() {
            problems.push(format!("{name}: siprox check failed:\n{}", String::from_utf8_lossy(&check.stderr)));
        }
        let golden = root().join("tests").join("port").join("golden").join(name);
        for file in OUTPUTS {
            let got = std::fs::read_to_string(out.join(file)).unwrap_or_default();
            let want_path = golden.join(file);
            if bless {
                std::fs::create_dir_all(&golden).expect("golden dir");
                std::fs::write(&want_path, &got).expect("write golden");
                continue;
            }
            let want =
                std::fs::read_to_string(&want_path).unwrap_or_else(|_| format!("<missing {}>", want_path.display()));
            if got != want {
                let first = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.lines().count().min(want.lines().count()));
                problems.push(format!(
                    "{name}/{file} differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\n(SIPROX_BLESS=1 rewrites the golden files after a deliberate change)",
                    want_path.display(),
                    first + 1,
                    got.lines().nth(first).unwrap_or("<end>"),
                    want.lines().nth(first).unwrap_or("<end>")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The report's `[route.rhai:N]` of each entry is the first of that entry's TODO lines,
/// and every TODO line of the script is accounted for by the report.
#[test]
fn every_reported_todo_points_at_its_todo_lines() {
    let tmp = TempDir::new("port-todo");
    for (name, input) in inputs() {
        let out = tmp.join(&name);
        assert!(port(&input, &out).status.success(), "{name}");
        let report = std::fs::read_to_string(out.join("port-report.txt")).expect("report");
        let script = std::fs::read_to_string(out.join("route.rhai")).expect("script");
        let lines: Vec<&str> = script.lines().collect();
        let mut cited = 0;
        for cite in report.split("[route.rhai:").skip(1) {
            let n: usize = cite.split(']').next().and_then(|n| n.parse().ok()).expect("line number");
            let line = lines.get(n - 1).copied().unwrap_or("");
            assert!(
                line.trim_start().starts_with("// TODO(port): "),
                "{name}: report cites route.rhai:{n}, which is {line:?}"
            );
            cited += 1;
        }
        let blocks = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                l.trim_start().starts_with("// TODO(port): ")
                    && (*i == 0 || !lines[i - 1].trim_start().starts_with("// TODO(port): "))
            })
            .count();
        assert!(blocks <= cited, "{name}: {blocks} TODO blocks in route.rhai but the report cites {cited}:\n{report}");
        let count_line = report.lines().nth(1).unwrap_or("");
        assert!(count_line.starts_with("converted "), "{name}: {count_line}");
    }
}

/// Converts the corpus default script and returns (its folder, the config tables to run it
/// with: everything the conversion wrote but [core], which the test harness sets).
fn converted_default(tmp: &TempDir) -> Option<(PathBuf, String)> {
    let input = corpus_dir().join("opensips34-default.cfg");
    if !input.exists() {
        eprintln!("\n*** SKIPPED: {} not found (CI has ../shared/corpus).\n", input.display());
        return None;
    }
    let out = tmp.join("converted");
    assert!(port(&input, &out).status.success());
    let toml_text = std::fs::read_to_string(out.join("siprox.toml")).expect("siprox.toml");
    let mut table: toml::Table = toml_text.parse().expect("converted siprox.toml is TOML");
    table.remove("core");
    // The harness writes [tm] (short timers) itself.
    table.remove("tm");
    Some((out, toml::to_string(&table).expect("toml")))
}

/// What the backend got for one call through `script`.
struct CallSeen {
    invite: String,
    ack: String,
    bye: String,
    proxy_hp: String,
    backend: u16,
}

fn call_through(label: &str, script: &Path, extra_toml: &str) -> CallSeen {
    let backend = free_port();
    let proxy = Proxy::start_script_file_with_core(label, script, "alias = [\"siprox.test\"]", extra_toml);
    let mut uas = Sipp::uas("uas", "uas-call.xml", backend, Proto::Udp).message_log().spawn(&proxy.dir);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], backend));
    let mut uac =
        Sipp::uac_to("uac", "uac-call-domain.xml", &proxy, Proto::Udp, target).message_log().spawn(&proxy.dir);
    uac.assert_success();
    uas.assert_success();
    let one = |start: &str| {
        let all = uas.received_starting(start);
        assert_eq!(all.len(), 1, "{label}: the backend got {} `{start}`:\n{}", all.len(), uas.report());
        all.into_iter().next().unwrap_or_default()
    };
    let seen = CallSeen {
        invite: one("INVITE "),
        ack: one("ACK "),
        bye: one("BYE "),
        proxy_hp: format!("127.0.0.1:{}", proxy.port),
        backend,
    };
    proxy.stop();
    seen
}

fn header_names(msg: &str) -> Vec<String> {
    let mut names: Vec<String> = msg
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_ascii_lowercase()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// OpenSIPS's default residential opensips.cfg, converted, and the hand-written
/// scripts/default.rhai route the same call the same way on the same config: the INVITE
/// reaches the callee through the proxy (its Via on top, one Record-Route to it,
/// Max-Forwards 69), and ACK and BYE follow the Route set through the proxy, which removes
/// its own entry. The only difference the callee sees is the converted script's
/// `P-hint: outbound` header (`append_hf` in the original).
#[test]
fn converted_default_script_routes_a_call_like_scripts_default() {
    let tmp = TempDir::new("port-call");
    let Some((converted, extra)) = converted_default(&tmp) else { return };
    let hand = root().join("scripts").join("default.rhai");
    let ported = converted.join("route.rhai");
    let a = call_through("port-call-default", &hand, &extra);
    let b = call_through("port-call-converted", &ported, &extra);
    for (who, seen) in [("scripts/default.rhai", &a), ("converted opensips34-default.cfg", &b)] {
        let vias = header_values(&seen.invite, "Via");
        assert_eq!(vias.len(), 2, "{who}: {}", seen.invite);
        assert!(vias[0].contains(&seen.proxy_hp), "{who}: the proxy's Via is not on top:\n{}", seen.invite);
        let rr = header_values(&seen.invite, "Record-Route");
        assert!(rr.len() == 1 && rr[0].starts_with(&format!("<sip:{};lr", seen.proxy_hp)), "{who}: {rr:?}");
        assert_eq!(header_values(&seen.invite, "Max-Forwards"), vec!["69"], "{who}");
        for msg in [&seen.ack, &seen.bye] {
            let vias = header_values(msg, "Via");
            assert!(vias.len() == 2 && vias[0].contains(&seen.proxy_hp), "{who}: not through the proxy:\n{msg}");
            assert!(header_values(msg, "Route").is_empty(), "{who}: the proxy left its Route:\n{msg}");
        }
        let ruri = format!("INVITE sip:service@127.0.0.1:{} SIP/2.0", seen.backend);
        assert!(seen.invite.starts_with(&ruri), "{who}: the Request-URI changed:\n{}", seen.invite);
    }
    let (ha, hb) = (header_names(&a.invite), header_names(&b.invite));
    let extra_in_b: Vec<&String> = hb.iter().filter(|h| !ha.contains(h)).collect();
    let missing_in_b: Vec<&String> = ha.iter().filter(|h| !hb.contains(h)).collect();
    assert_eq!(extra_in_b, vec!["p-hint"], "headers only the converted script adds");
    assert!(missing_in_b.is_empty(), "headers the converted script lost: {missing_in_b:?}");
    assert_eq!(header_values(&b.invite, "P-hint"), vec!["outbound"]);
}

/// A call the residential script must refuse (neither the caller's nor the callee's domain
/// is ours) gets its 403, as in OpenSIPS; scripts/default.rhai, a plain relay, would pass it.
#[test]
fn converted_default_script_refuses_relaying_between_foreign_domains() {
    let tmp = TempDir::new("port-relay");
    let Some((converted, extra)) = converted_default(&tmp) else { return };
    let proxy = Proxy::start_script_file("port-relay", &converted.join("route.rhai"), &extra);
    let backend = free_port();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], backend));
    let mut uac = Sipp::uac_to("uac", "uac-reject.xml", &proxy, Proto::Udp, target).message_log().spawn(&proxy.dir);
    uac.wait();
    let got = uac.received_starting("SIP/2.0 ");
    assert!(
        got.iter().any(|m| m.starts_with("SIP/2.0 403 Relay Forbidden")),
        "expected 403 Relay Forbidden:\n{}",
        uac.report()
    );
    proxy.stop();
}
