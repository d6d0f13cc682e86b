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
        report.notes.push(Entry {
            line: *line,
            end_line: *line,
            text: text_of(*line, *line),
            reason: note.clone(),
            output: None,
        });
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
            println!(
                "written: {}, {}, {}",
                out_dir.join(CONFIG_FILE).display(),
                out_dir.join(SCRIPT_FILE).display(),
                out_dir.join(REPORT_FILE).display()
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{check_script, Source};

    /// Converts a whole file and checks the script compiles and validates.
    fn port_text(src: &str) -> Output {
        let out = convert(src, "t.cfg");
        let cfg = Config::default();
        let registrar = crate::modules::Modules::new(&cfg).registrar();
        let engine = build_engine(crate::app::script_limits(&cfg), &*registrar);
        let diags = check_script(engine, Source::Text { text: &out.script, name: "route.rhai" });
        assert!(diags.is_empty(), "{diags:?}\n{}", out.script);
        out
    }

    /// The code lines of `fn route()` for a route body (comments and blank lines left out).
    fn route(body: &str) -> Vec<String> {
        let out = port_text(&format!("route {{\n{body}\n}}\n"));
        code_of(&out.script, "fn route()")
    }

    fn code_of(script: &str, header: &str) -> Vec<String> {
        script
            .lines()
            .skip_while(|l| !l.starts_with(header))
            .skip(1)
            .take_while(|l| *l != "}")
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(str::to_string)
            .collect()
    }

    fn todos(out: &Output) -> Vec<String> {
        out.report.not_converted.iter().map(|e| e.reason.clone()).collect()
    }

    #[test]
    fn if_else_if_else_and_code_returning_functions() {
        assert_eq!(
            route("if (!mf_process_maxfwd_header(\"10\")) { sl_send_reply(\"483\",\"Too Many Hops\"); exit; }\nif (loose_route()) t_relay(); else if (is_method(\"ACK\")) drop; else { t_reply(404, \"Not here\"); }"),
            [
                "if mf_process_maxfwd_header(10) < 0 {",
                "sl_send_reply(483, \"Too Many Hops\");",
                "exit();",
                "}",
                "if loose_route() > 0 {",
                "t_relay();",
                "} else if is_method(\"ACK\") {",
                "drop();",
                "} else {",
                "t_reply(404, \"Not here\");",
                "}",
            ]
        );
    }

    #[test]
    fn logic_comparisons_null_and_typed_literals() {
        assert_eq!(
            route("if ($rU==NULL || ($du != NULL && $rs == \"200\")) exit;\nif ($rp == 5060 && $si==10.0.1.100) exit;\nif (!($var(a) > 1 || $avp(b))) exit;"),
            [
                "if $rU == \"\" || ($du != () && $rs == 200) {",
                "exit();",
                "}",
                "if $rp == \"5060\" && $si == \"10.0.1.100\" {",
                "exit();",
                "}",
                "if !($var(a) > 1 || $avp(b) != ()) {",
                "exit();",
                "}",
            ]
        );
    }

    #[test]
    fn regex_operators_become_pcre_match() {
        assert_eq!(
            route("if ($ru =~ \"^sip:1[0-9]+@\" && $rU !~ '^\\+') exit;"),
            ["if pcre_match($ru, \"^sip:1[0-9]+@\") && !pcre_match($rU, \"^\\\\+\") {", "exit();", "}"]
        );
    }

    #[test]
    fn legacy_keywords_method_uri_myself_and_src_ip() {
        assert_eq!(
            route("if (method==\"INVITE\" && uri==myself && src_ip!=1.2.3.4 && from_uri=~\"@x\") exit;"),
            [
                "if is_method(\"INVITE\") && is_myself($ru) && $si != \"1.2.3.4\" && pcre_match($fu, \"@x\") {",
                "exit();",
                "}"
            ]
        );
    }

    #[test]
    fn assignments_concatenation_and_avp_replacement() {
        assert_eq!(
            route("$var(n) = 1; $var(n) += 2; $avp(aor) = \"sip:\" + $tU + \"@\" + $td; $avp(x) := \"only\"; $du = NULL; $rU = NULL; $branch = \"sip:a@b\";"),
            [
                "$var(n) = 1;",
                "$var(n) = $var(n) + 2;",
                "$avp(aor) = \"sip:\" + $tU + \"@\" + $td;",
                "while $avp(x) != () { $avp(x) = (); }",
                "$avp(x) = \"only\";",
                "$du = ();",
                "$rU = \"\";",
                "append_branch(\"sip:a@b\");",
            ]
        );
    }

    #[test]
    fn pseudo_variables_in_function_strings_are_expanded_unless_the_function_does_it() {
        assert_eq!(
            route("if (ds_is_in_list(\"$si\", \"$sp\")) exit;\nseturi(\"sip:$rU@10.0.0.1\");\nxlog(\"L_INFO\", \"call $ci to $ru\\n\");"),
            [
                "if ds_is_in_list($si, $sp) {",
                "exit();",
                "}",
                "seturi(\"sip:\" + $rU + \"@10.0.0.1\");",
                "xlog(\"L_INFO\", \"call $ci to $ru\\n\");",
            ]
        );
    }

    #[test]
    fn switch_with_fallthrough_grouped_cases_and_default_last() {
        assert_eq!(
            route("lookup(\"location\");\nswitch ($retcode) {\ndefault:\n xlog(\"other\");\n break;\ncase 1:\n t_relay();\n exit;\ncase -1:\ncase -3:\n sl_send_reply(404, \"Not Found\");\n break;\ncase -2:\n xlog(\"m\");\ncase 2:\n sl_send_reply(405, \"Not Allowed\");\n}"),
            [
                "lookup(\"location\");",
                "switch retcode() {",
                "1 => {",
                "t_relay();",
                "exit();",
                "}",
                "-1 | -3 => {",
                "sl_send_reply(404, \"Not Found\");",
                "}",
                "-2 => {",
                "xlog(\"m\");",
                "sl_send_reply(405, \"Not Allowed\");",
                "}",
                "2 => {",
                "sl_send_reply(405, \"Not Allowed\");",
                "}",
                "_ => {",
                "xlog(\"other\");",
                "}",
                "}",
            ]
        );
    }

    #[test]
    fn while_loops_keep_break_and_for_each_is_a_todo() {
        let out = port_text("route {\n$var(i) = 0;\nwhile ($var(i) < 3) { $var(i) = $var(i) + 1; if ($var(i) == 2) break; }\nfor ($var(c) in $(avp(list)[*])) { xlog(\"$var(c)\"); }\n}\n");
        let code = code_of(&out.script, "fn route()");
        assert_eq!(
            code[..7],
            ["$var(i) = 0;", "while $var(i) < 3 {", "$var(i) = $var(i) + 1;", "if $var(i) == 2 {", "break;", "}", "}"]
        );
        assert!(
            out.script.contains("// TODO(port): for ($var(c) in $(avp(list)[*])) { xlog(\"$var(c)\"); }"),
            "{}",
            out.script
        );
        assert!(todos(&out)[0].contains("for ($var(c) in"), "{:?}", todos(&out));
    }

    #[test]
    fn route_kinds_become_functions_and_sub_routes_take_parameters() {
        let out = port_text(
            "route { route(check, \"a\", 2); route(RELAY); t_on_failure(1); }\nroute[check] { xlog(\"$param(1) $param(2)\"); if ($param(2) == 2) return(-1); }\nroute[RELAY] { t_on_failure(\"1\"); t_on_reply(\"rpl\"); t_on_branch(\"br\"); if (!t_relay()) sl_reply_error(); }\nfailure_route[1] { if (t_check_status(\"408\")) exit; }\nonreply_route[rpl] { return(1); }\nbranch_route[br] { xlog(\"b\"); }\nonreply_route { exit; }\nlocal_route { xlog(\"l\"); }\nstartup_route { xlog(\"s\"); }\nerror_route { sl_reply_error(); }\ntimer_route[gc, 60] { xlog(\"t\"); }\nevent_route[E_DISPATCHER_STATUS] { xlog(\"$param(status)\"); }\n",
        );
        for f in [
            "fn route()",
            "fn route_check(p1, p2)",
            "fn route_RELAY()",
            "fn failure_route_1()",
            "fn onreply_route_rpl()",
            "fn branch_route_br()",
            "fn onreply_route()",
            "fn local_route()",
            "fn startup_route()",
            "fn error_route()",
            "fn timer_route_gc()",
            "fn event_route_E_DISPATCHER_STATUS()",
        ] {
            assert!(out.script.contains(f), "{f} missing:\n{}", out.script);
        }
        assert_eq!(
            code_of(&out.script, "fn route()"),
            ["route_check(\"a\", 2);", "route_RELAY();", "t_on_failure(\"1\");"]
        );
        assert_eq!(
            code_of(&out.script, "fn route_check("),
            ["xlog(\"$param(1) $param(2)\");", "if p2 == 2 {", "return -1;", "}", "return 1;"]
        );
        assert_eq!(code_of(&out.script, "fn onreply_route_rpl()"), ["return;"]);
        let notes: Vec<&str> = out.report.notes.iter().map(|n| n.reason.as_str()).collect();
        assert!(
            notes.iter().any(|n| n.contains("timer_route")) && notes.iter().any(|n| n.contains("local_route")),
            "{notes:?}"
        );
    }

    #[test]
    fn return_zero_exits_and_sub_route_results_can_be_tested() {
        let out = port_text(
            "route { if (route(ok)) xlog(\"yes\"); return(0); }\nroute[ok] { if ($rU == \"a\") return(-1); }\n",
        );
        assert_eq!(code_of(&out.script, "fn route()"), ["if route_ok() > 0 {", "xlog(\"yes\");", "}", "exit();"]);
        assert_eq!(code_of(&out.script, "fn route_ok()"), ["if $rU == \"a\" {", "return -1;", "}", "return 1;"]);
    }

    #[test]
    fn old_spellings_map_to_todays() {
        assert_eq!(
            route("if (nat_uac_test(\"19\")) fix_nated_sdp(\"3\");\nif (registered(\"location\")) exit;\nload_balance(\"1\", \"pstn\", \"1\");\nsave(\"location\", \"c5r\");\nlookup(\"location\", \"m\");\nt_relay(\"0x02\");\nrewritehost(\"10.0.0.1\");\nsetflag(NAT);\nstrip(\"2\");\nt_on_failure(\"0\");"),
            [
                "if nat_uac_test(\"private-contact,diff-ip-src-via,diff-port-src-via\") {",
                "fix_nated_sdp(\"add-dir-active,rewrite-media-ip\");",
                "}",
                "if is_registered(\"location\") {",
                "exit();",
                "}",
                "lb_start_or_next(1, \"pstn\", \"r\");",
                "save(\"location\", \"max-contacts=5,no-reply\");",
                "lookup(\"location\", \"method-filtering\");",
                "t_relay(\"no-auto-477\");",
                "sethost(\"10.0.0.1\");",
                "setflag(\"NAT\");",
                "strip(2);",
                "t_on_failure(\"\");",
            ]
        );
    }

    #[test]
    fn what_cannot_be_mapped_stays_as_todo_comments_in_place() {
        let out = port_text(
            "route {\n    rtpproxy_offer();\n    if (cluster_check_addr(1, \"$si\")) {\n        t_relay();\n    }\n    $avp(h) = $json(doc/home_ip);\n    xlog(\"${ENV_HOST}\");\n    sethost(\"${ENV_HOST}\");\n    lookup(\"location\", \"g\");\n    ifdef(`WITH_NAT', `fix_nated_contact();')\n    t_relay(\"a\", \"b\", \"c\");\n    t_on_failure(\"nowhere\");\n}\n",
        );
        let code = code_of(&out.script, "fn route()");
        assert_eq!(code, ["if false {", "t_relay();", "}"]);
        for line in [
            "rtpproxy_offer();",
            "xlog(\"${ENV_HOST}\");",
            "t_on_failure(\"nowhere\");",
            "if (cluster_check_addr(1, \"$si\")) {",
            "$avp(h) = $json(doc/home_ip);",
            "sethost(\"${ENV_HOST}\");",
            "lookup(\"location\", \"g\");",
            "ifdef(`WITH_NAT', `fix_nated_contact();')",
            "t_relay(\"a\", \"b\", \"c\");",
        ] {
            assert!(
                out.script.contains(&format!("    // TODO(port): {line}")),
                "{line} is not a TODO in place:\n{}",
                out.script
            );
        }
        let reasons = todos(&out).join("\n");
        for why in [
            "module rtpproxy",
            "cluster_check_addr",
            "`$json`",
            "template placeholder",
            "flag `g`",
            "takes 0 or 1 or 2 argument(s), not 3",
            "no failure_route[nowhere]",
        ] {
            assert!(reasons.contains(why), "no reason mentions {why}:\n{reasons}");
        }
        assert_eq!(out.report.not_converted.len(), 9, "{reasons}");
    }

    #[test]
    fn an_m4_template_region_is_one_todo_and_nothing_inside_it_is_applied() {
        let out = port_text(
            "ifelse(USE_DIALOG,`yes',`loadmodule \"dialog.so\"\nmodparam(\"dialog\", \"db_mode\", 2)',`')\nifdef(`X',`modparam(\"tm\", \"fr_timeout\", 9)')\nroute {\n    ifelse(LIMIT,`yes',`\n    set_dlg_profile(\"calls\");\n    ',`')\n    exit;\n}\n",
        );
        assert!(!out.config.contains("db_mode") && !out.config.contains("fr_timeout"), "{}", out.config);
        assert_eq!(code_of(&out.script, "fn route()"), ["exit();"]);
        let lines: Vec<(usize, usize)> = out.report.not_converted.iter().map(|e| (e.line, e.end_line)).collect();
        assert_eq!(lines, [(1, 2), (3, 3), (5, 7)]);
        assert!(
            out.report.not_converted.iter().all(|e| e.reason.contains("m4 macro")),
            "{:?}",
            out.report.not_converted
        );
        assert!(out.script.contains("    // TODO(port): set_dlg_profile(\"calls\");"), "{}", out.script);
    }

    #[test]
    fn comments_of_every_kind_are_kept_in_place() {
        let out = port_text("# top\nroute {\n    # before\n    t_relay(); # after\n    /* block\n       two */\n    // slashes\n    if (is_method(\"INVITE\") /* why */) {\n        sl_send_reply(\"404\" /* code */, \"x\");\n    }\n}\n");
        let script = out.script;
        for want in [
            "// top",
            "    // before",
            "    t_relay(); // after",
            "    // block",
            "    //       two",
            "    // slashes",
            "    // why",
            "        // code",
        ] {
            assert!(script.lines().any(|l| l == want), "{want:?} missing:\n{script}");
        }
    }

    #[test]
    fn preprocessor_lines_are_applied() {
        let out = port_text("#!define WITH_NAT\n#!define NATFLAG 5\nroute {\n#!ifdef WITH_NAT\n    setflag(NATFLAG);\n#!else\n    resetflag(NATFLAG);\n#!endif\n}\n");
        assert_eq!(code_of(&out.script, "fn route()"), ["setflag(5);"]);
        assert!(
            out.script.contains("// #     resetflag(NATFLAG);") || out.script.contains("//     resetflag"),
            "{}",
            out.script
        );
    }

    #[test]
    fn globals_and_modparams_become_config_tables() {
        let out = convert(
            "debug=3\nchildren=8\nlisten=udp:10.0.0.1:5060\nlisten=tcp:10.0.0.1:5060 as 1.2.3.4:5060\nalias=\"sip.example.com\"\nloadmodule \"tm.so\"\nmodparam(\"tm\", \"fr_timer\", 2)\nmodparam(\"tm\", \"fr_inv_timer\", \"40\")\nmodparam(\"rr\", \"enable_double_rr\", 1)\nmodparam(\"dialog\", \"db_url\", \"mysql://u:p@h/db\")\nmodparam(\"dispatcher\", \"db_url\", \"mysql://u:p@h/other\")\nmodparam(\"usrloc\", \"working_mode_preset\", \"sql-only\")\nmodparam(\"acc\", \"early_media\", 0)\nsyslog_facility=LOG_LOCAL0\nroute { exit; }\n",
            "t.cfg",
        );
        let cfg: crate::config::Config = toml::from_str(&out.config).unwrap_or_else(|e| panic!("{e}\n{}", out.config));
        assert_eq!(cfg.core.listen, ["udp:10.0.0.1:5060", "tcp:10.0.0.1:5060"]);
        assert_eq!(cfg.core.advertise.as_deref(), Some("1.2.3.4:5060"));
        assert_eq!((cfg.core.workers, cfg.core.log_level.as_str()), (8, "info"));
        assert_eq!(cfg.core.alias, ["sip.example.com"]);
        assert_eq!((cfg.tm.fr_timeout, cfg.tm.fr_inv_timeout), (2, 40));
        assert!(cfg.rr.enable_double_rr);
        assert_eq!(cfg.db.url, "mysql://u:p@h/db");
        assert_eq!(cfg.usrloc.working_mode_preset, "sql-only");
        assert_eq!(cfg.core.script, std::path::PathBuf::from("route.rhai"));
        assert!(
            out.config.contains("# opensips.cfg:7: modparam(\"tm\", \"fr_timer\", 2)\nfr_timeout = 2"),
            "{}",
            out.config
        );
        assert!(out.config.contains("# TODO(port): line 13: modparam(\"acc\", \"early_media\", 0)"), "{}", out.config);
        let left: Vec<usize> = out.report.left_out.iter().map(|e| e.line).collect();
        assert_eq!(left, [11, 14], "the second db_url and syslog_facility");
    }

    #[test]
    fn a_file_without_a_main_route_gets_one_that_answers_500() {
        let out = port_text("loadmodule \"tm.so\"\nrout {\n    t_relay();\n}\nroute[x] { exit; }\n");
        assert_eq!(code_of(&out.script, "fn route()"), ["sl_send_reply(500, \"Not Ported\");", "exit();"]);
        assert!(
            out.report.not_converted.iter().any(|e| e.reason.contains("no main `route")),
            "{:?}",
            out.report.not_converted
        );
    }

    #[test]
    fn a_file_that_is_not_opensips_cfg_still_gives_a_valid_script() {
        let out = port_text("this is not a config\nroute {\n  if (x( {\n}\n");
        assert!(out.report.not_converted.len() >= 2);
        assert!(out.script.contains("fn route()"));
    }
}
