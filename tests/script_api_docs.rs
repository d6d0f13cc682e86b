//! docs/script-api.md is the reference of the script surface (design.md §3): every function
//! the proxy registers on its Rhai engine and every pseudo-variable must have a row in its
//! tables. This test builds the engine exactly as the proxy does and fails naming whatever
//! the doc misses.
//!
//! A function counts as documented when the first cell of some table row holds `` `name(``
//! or `` `name` ``; a pseudo-variable when the first cell of some row holds `` `$name``
//! (not followed by more name characters, so `$proto` does not stand in for `$pr`). A
//! mention in passing elsewhere in the text does not count.

use std::collections::BTreeSet;

const DOC: &str = include_str!("../docs/script-api.md");

/// The engine of a running proxy: core functions, pseudo-variables and every module,
/// configured from the default config (app::start does the same with the real one).
fn engine() -> rhai::Engine {
    let cfg = siprox::config::Config::default();
    let limits = siprox::app::script_limits(&cfg);
    siprox::script::build_engine(limits, &*siprox::modules::Modules::new(&cfg).registrar())
}

/// Names of the functions siprox registers (not those of Rhai's standard packages).
fn registered_functions() -> BTreeSet<String> {
    engine()
        .gen_fn_signatures(false)
        .iter()
        .filter_map(|sig| sig.find('(').map(|open| sig[..open].trim().to_string()))
        .filter(|name| !name.is_empty())
        .collect()
}

/// The first cell of every Markdown table row (`\|` inside a cell is not a separator).
fn first_cells(doc: &str) -> Vec<&str> {
    doc.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix('|')?;
            let bytes = rest.as_bytes();
            let mut end = rest.len();
            for i in 0..bytes.len() {
                if bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
                    end = i;
                    break;
                }
            }
            Some(&rest[..end])
        })
        .collect()
}

/// Whether `needle` occurs in `hay` and is not just the start of a longer identifier.
fn mentions(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(at, _)| {
        let next = hay[at + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[test]
fn every_registered_function_has_a_row() {
    let names = registered_functions();
    // The engine must really carry the module functions, not only the core ones.
    for expected in ["t_relay", "loose_route", "mf_process_maxfwd_header", "sl_send_reply", "is_method", "exit"] {
        assert!(
            names.contains(expected),
            "{expected} is not registered; the engine is not built like the proxy's: {names:?}"
        );
    }
    let cells = first_cells(DOC);
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            let (call, bare) = (format!("`{n}("), format!("`{n}`"));
            !cells.iter().any(|c| c.contains(&call) || c.contains(&bare))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/script-api.md has no table row for these registered functions (first cell `name(args)`): {}",
        missing.join(", ")
    );
}

#[test]
fn every_pseudo_variable_has_a_row() {
    let cells = first_cells(DOC);
    let missing: Vec<String> = siprox::script::api::pv::NAMES
        .iter()
        .filter(|n| {
            let needle = format!("`${n}");
            !cells.iter().any(|c| mentions(c, &needle))
        })
        .map(|n| format!("${n}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/script-api.md has no table row for these pseudo-variables (first cell `$name`): {}",
        missing.join(", ")
    );
}

#[test]
fn every_hook_is_described() {
    let hooks = [
        "route",
        "onreply_route",
        "onreply_route_",
        "failure_route_",
        "branch_route_",
        "local_route",
        "error_route",
        "startup_route",
    ];
    let missing: Vec<&str> = hooks.iter().copied().filter(|h| !DOC.contains(&format!("`fn {h}"))).collect();
    assert!(
        missing.is_empty(),
        "docs/script-api.md does not describe these hooks (`fn name()`): {}",
        missing.join(", ")
    );
}
