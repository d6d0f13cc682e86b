//! `siprox port IN.cfg [-o OUT_DIR]`: an opensips.cfg becomes `siprox.toml` and `route.rhai`
//! (design.md §1, §3). What maps mechanically is converted; what does not stays in the
//! output as `TODO(port)` comment lines, and `port-report.txt` lists each with its reason.
//! The output always passes `siprox check`: TODO lines are comments, never broken code.
//!
//! The pieces: [`preproc`] applies `#!define`/`#!ifdef`, [`lex`] and [`parse`] read the
//! grammar, [`catalog`] knows siprox's functions (from the engine itself) and the old
//! OpenSIPS spellings, [`emit`] writes the routes and [`settings`] the config.

mod catalog;
mod emit;
mod lex;
mod parse;
mod preproc;
mod settings;

use crate::config::Config;
use crate::script::build_engine;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub const SCRIPT_FILE: &str = "route.rhai";
pub const CONFIG_FILE: &str = "siprox.toml";
pub const REPORT_FILE: &str = "port-report.txt";

/// One line of the report: where in the input, what it says, and why.
#[derive(Debug, Clone)]
pub struct Entry {
    pub line: usize,
    pub end_line: usize,
    pub text: String,
    pub reason: String,
    /// Where it went in the output (`route.rhai:40`), if anywhere.
    pub output: Option<String>,
}

/// What a conversion did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub input: String,
    pub converted: usize,
    pub not_converted: Vec<Entry>,
    pub left_out: Vec<Entry>,
    pub notes: Vec<Entry>,
    /// `siprox check` of the written config and script: empty when clean.
    pub check: Vec<String>,
}

/// The files a conversion writes.
pub struct Output {
    pub script: String,
    pub config: String,
    pub report: Report,
}

/// Converts opensips.cfg text (`input_name` only labels the output).
pub fn convert(src: &str, input_name: &str) -> Output {
    let pre = preproc::preprocess(src);
    let items = parse::parse(&pre.text, lex::tokenize(&pre.text));
    let cfg = Config::default();
    let registrar = crate::modules::Modules::new(&cfg).registrar();
    let engine = build_engine(crate::app::script_limits(&cfg), &*registrar);
    let cat = catalog::Catalog::from_signatures(&engine.gen_fn_signatures(false));
    let script = emit::convert(&items, src, &cat, input_name);
    let settings = settings::convert(&items, src, input_name, SCRIPT_FILE);

    let lines: Vec<&str> = src.lines().collect();
    let text_of = |a: usize, b: usize| -> String {
        let first = lines.get(a.max(1) - 1).map_or("", |l| l.trim()).to_string();
        if b > a {
            format!("{first} … (to line {b})")
        } else {
            first
        }
    };
    let mut report = Report { input: input_name.to_string(), converted: script.converted, ..Report::default() };
    for t in &script.todos {
        report.not_converted.push(Entry {
            line: t.line,
            end_line: t.end_line,
            text: text_of(t.line, t.end_line),
            reason: t.reason.clone(),
            output: Some(format!("{SCRIPT_FILE}:{}", t.out_line)),
        });
    }
    for (line, end_line, fate) in &settings.fates {
        let entry = |reason: &str, output: Option<String>| Entry {
            line: *line,
            end_line: *end_line,
            text: text_of(*line, *end_line),
            reason: reason.to_string(),
            output,
        };
        match fate {
            settings::Fate::Converted => report.converted += 1,
            settings::Fate::NotNeeded(r) => report.left_out.push(entry(r, None)),
            settings::Fate::Todo(r) => report.not_converted.push(entry(r, Some(CONFIG_FILE.to_string()))),
        }
    }
    for (line, note) in script.notes.iter().chain(&pre.notes) {
        report.notes.push(Entry { line: *line, end_line: *line, text: text_of(*line, *line), reason: note.clone(), output: None });
    }
    report.not_converted.sort_by_key(|e| e.line);
    report.left_out.sort_by_key(|e| e.line);
    report.notes.sort_by_key(|e| e.line);
    Output { script: script.text, config: settings.text, report }
}

impl Report {
    /// The report as `port-report.txt` holds it (stable: no paths, no dates).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "siprox port: {} -> {CONFIG_FILE}, {SCRIPT_FILE}", self.input);
        let _ = writeln!(
            out,
            "converted {}, left out on purpose {}, not converted {}",
            self.converted,
            self.left_out.len(),
            self.not_converted.len()
        );
        let mut section = |title: &str, entries: &[Entry]| {
            if entries.is_empty() {
                return;
            }
            let _ = writeln!(out, "\n{title}");
            for e in entries {
                let _ = writeln!(out, "  line {:<5} {}", e.line, e.text);
                let whence = e.output.as_ref().map(|o| format!(" [{o}]")).unwrap_or_default();
                let _ = writeln!(out, "             {}{whence}", e.reason);
            }
        };
        section("Not converted: marked TODO(port) in the output, port these by hand:", &self.not_converted);
        section("Left out on purpose (siprox needs no equivalent):", &self.left_out);
        section("Notes:", &self.notes);
        if self.check.is_empty() {
            let _ = writeln!(out, "\nsiprox check {CONFIG_FILE}: ok");
        } else {
            let _ = writeln!(out, "\nsiprox check {CONFIG_FILE}: FAILED (a bug of siprox port, please report it)");
            for d in &self.check {
                let _ = writeln!(out, "  {d}");
            }
        }
        out
    }
}

/// Converts `input` into `out_dir` and checks the result as `siprox check` would.
///
/// # Errors
/// The input cannot be read or the output cannot be written.
pub fn port(input: &Path, out_dir: &Path) -> Result<Report, String> {
    let bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let src = String::from_utf8_lossy(&bytes);
    let name = input.file_name().map_or_else(|| input.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut out = convert(&src, &name);
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let write = |file: &str, text: &str| {
        let p = out_dir.join(file);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(SCRIPT_FILE, &out.script)?;
    write(CONFIG_FILE, &out.config)?;
    out.report.check = match super::check(&out_dir.join(CONFIG_FILE)) {
        Ok(diags) => diags.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e],
    };
    write(REPORT_FILE, &out.report.render())?;
    Ok(out.report)
}

/// `siprox port`: exit 0 when the output was written and passes the check (TODO lines or
/// not), 1 when the check fails, 2 when a file cannot be read or written.
pub fn main(input: &Path, out_dir: &Path) -> ExitCode {
    match port(input, out_dir) {
        Ok(report) => {
            print!("{}", report.render());
            println!("written: {}, {}, {}", out_dir.join(CONFIG_FILE).display(), out_dir.join(SCRIPT_FILE).display(), out_dir.join(REPORT_FILE).display());
            if report.check.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("siprox port: {e}");
            ExitCode::from(2)
        }
    }
}
