//! `siprox test FILE…`: unit tests for routing scripts, with no network.
//!
//! A test file (TOML, docs/script-tests.md) names a script, optionally a config, and lists
//! cases: a SIP message, where it came from, preset state, and what must happen. Each case
//! runs the real compiled script (the engine the proxy builds, same modules and limits)
//! on the proxy's dry run ([`crate::proxy::dry_run`]), which records replies and relayed
//! requests with their exact bytes instead of sending them. This file loads the test files,
//! runs the cases and prints `ok`/`FAIL` per case, then `N passed, M failed`.

mod expect;
mod spec;
#[cfg(test)]
mod tests;

pub use spec::normalise_message;

use crate::app;
use crate::config::Config;
use crate::message::SipMsg;
use crate::proxy::dry_run::{DryRun, HookEnd, ReplyKind, Step};
use crate::script::{build_engine, compile_checked, Source};
use spec::{prepare, Case, Expect, TestFile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Runs every case of every file, printing to `out` one line per case (with the reasons
/// and what happened under a failure), then `N passed, M failed`. A file that cannot be
/// used (unreadable, bad TOML, script that does not compile) counts as one failure.
///
/// # Errors
/// Only writing to `out`.
pub fn run(files: &[PathBuf], out: &mut dyn Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    for path in files {
        run_file(path, out, &mut summary)?;
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// A test file ready to run its cases.
struct Loaded {
    path: String,
    text: String,
    dir: PathBuf,
    file: TestFile,
    dry: DryRun,
}

impl Loaded {
    /// `path:line:col` of a byte offset of the test file.
    fn at(&self, offset: usize) -> String {
        let (line, col) = line_col(&self.text, offset);
        format!("{}:{line}:{col}", self.path)
    }
}

/// 1-based line and column (in characters) of `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn run_file(path: &Path, out: &mut dyn Write, summary: &mut Summary) -> std::io::Result<()> {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(problems) => {
            summary.failed += 1;
            for p in problems {
                writeln!(out, "FAIL {p}")?;
            }
            return Ok(());
        }
    };
    for case in &loaded.file.cases {
        let problems = run_case(&loaded, case);
        let name = case.name.get_ref();
        match problems {
            Ok(()) => {
                summary.passed += 1;
                writeln!(out, "ok   {}: {name}", loaded.path)?;
            }
            Err(text) => {
                summary.failed += 1;
                writeln!(out, "FAIL {}: {name}", loaded.path)?;
                for line in text.lines() {
                    writeln!(out, "     {line}")?;
                }
            }
        }
    }
    Ok(())
}

/// Reads the test file, its config and its script. Every problem is a
/// `file:line:col: message` line.
fn load(path: &Path) -> Result<Loaded, Vec<String>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let at = |offset: usize, message: &str| {
        let (line, col) = line_col(&text, offset);
        vec![format!("{shown}:{line}:{col}: {message}")]
    };
    let file: TestFile = toml::from_str(&text).map_err(|e| at(e.span().map(|s| s.start).unwrap_or(0), e.message()))?;
    if file.cases.is_empty() {
        return Err(at(0, "no [[case]] in this file"));
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let cfg = match &file.config {
        Some(c) => Config::load(&dir.join(c.get_ref())).map_err(|e| at(c.span().start, &format!("config: {e}")))?,
        None => Config::default(),
    };
    let script = match (&file.script, &file.config) {
        (Some(s), _) => dir.join(s.get_ref()),
        (None, Some(_)) => cfg.script_path(),
        (None, None) => return Err(at(0, "no `script` (and no `config` naming one)")),
    };
    if !script.is_file() {
        let offset = file.script.as_ref().map(|s| s.span().start).unwrap_or(0);
        return Err(at(offset, &format!("{}: no such file", script.display())));
    }
    // The same compile and validation as startup and reload.
    let modules = crate::modules::Modules::new(&cfg);
    let engine = build_engine(app::script_limits(&cfg), &*modules.registrar());
    let bundle = compile_checked(engine, Source::File(&script))
        .map_err(|e| e.to_string().lines().map(String::from).collect::<Vec<_>>())?;
    let dry = DryRun::new(&cfg, Arc::new(bundle), &modules).map_err(|e| vec![format!("{shown}: config: {e}")])?;
    Ok(Loaded { path: shown, text, dir, file, dry })
}

/// Runs one case; `Err` holds what to print under its FAIL line.
fn run_case(loaded: &Loaded, case: &Case) -> Result<(), String> {
    require_expectations(loaded, &case.expect, "[case.expect]")?;
    if let Some(t) = &case.then {
        require_expectations(loaded, &t.expect, "[case.then.expect]")?;
    }
    let prepared =
        prepare(case, &loaded.dir, loaded.dry.sockets()).map_err(|e| format!("{}: {}", loaded.at(e.at), e.message))?;
    let run = loaded
        .dry
        .run(prepared.request, &prepared.preset, prepared.then.as_ref())
        .map_err(|e| format!("{}: {e}", loaded.at(case.name.span().start)))?;
    let request = SipMsg::parse(run.route.incoming.clone()).map_err(|e| format!("the message does not parse: {e}"))?;
    let mut problems = expect::check(case.expect.get_ref(), &run.route, &request);
    if let (Some(t), Some(step)) = (&case.then, &run.then) {
        problems.extend(expect::check(t.expect.get_ref(), step, &request).into_iter().map(|p| format!("then: {p}")));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut text = problems.join("\n");
    text.push('\n');
    text.push_str(&describe(&run.route, "route"));
    if let Some(step) = &run.then {
        text.push_str(&describe(step, "then"));
    }
    Err(text)
}

/// A case whose expectations are empty would pass whatever the script does.
fn require_expectations(loaded: &Loaded, e: &Spanned<Expect>, table: &str) -> Result<(), String> {
    if e.get_ref().is_empty() {
        return Err(format!("{}: {table} expects nothing; add at least one key", loaded.at(e.span().start)));
    }
    Ok(())
}

/// What a step did, for the reader of a failure: hooks, replies and requests with their
/// bytes, armed routes, log lines.
fn describe(step: &Step, title: &str) -> String {
    let mut s = format!("--- {title} ---\n");
    for h in &step.hooks {
        let end = match &h.end {
            HookEnd::Done => "ended".to_string(),
            HookEnd::Exit => "exit()".to_string(),
            HookEnd::Drop => "drop()".to_string(),
            HookEnd::Error(e) => format!("script error: {e}"),
        };
        s.push_str(&format!("{}: {end}\n", h.name));
    }
    for r in &step.sent.replies {
        let kind = match r.kind {
            ReplyKind::Stateless => "stateless",
            ReplyKind::Stateful => "stateful",
            ReplyKind::Relayed => "relayed",
        };
        s.push_str(&format!("reply {} {} ({kind}):\n", r.code, r.reason));
        push_message(&mut s, &r.bytes);
    }
    for (i, r) in step.sent.requests.iter().enumerate() {
        let how = if r.stateful { "t_relay" } else { "stateless" };
        s.push_str(&format!("relay #{i} ({how}) {} -> {} from {}:\n", r.next_hop, r.dest, r.socket));
        push_message(&mut s, &r.bytes);
    }
    if step.sent.replies.is_empty() && step.sent.requests.is_empty() {
        s.push_str("nothing sent\n");
    }
    if step.sent.cancelled_invite {
        s.push_str("the INVITE transaction was cancelled\n");
    }
    if step.sent.absorbed {
        s.push_str("absorbed by its transaction\n");
    }
    let a = &step.armed;
    for (name, v) in [("failure_route", &a.failure), ("onreply_route", &a.reply), ("branch_route", &a.branch)] {
        if let Some(v) = v {
            s.push_str(&format!("armed {name} {v:?}\n"));
        }
    }
    for l in &step.logs {
        s.push_str(&format!("log [{}] {}\n", l.level, l.text));
    }
    s
}

/// The message, one `  | ` line per line; the empty line before a body shows, the one that
/// ends a message without a body does not.
fn push_message(s: &mut String, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        s.push_str("  | ");
        s.push_str(line);
        s.push('\n');
    }
}
