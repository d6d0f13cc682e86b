//! The room table of design.md §2, kept by reading the source: every `crate::…` path (in `use`
//! lines and in code), every `super::…` path that climbs out of a room, and every mention of
//! `rhai`, `sqlx` and `tokio` in src/ is checked against who may use what. Comments and string
//! literals are ignored. A failure names the file, the line and the rule.
//!
//! The rooms, in order ("a room imports only rooms above it in this list"):
//! message, transport, transaction, dialog, script, modules, db, proxy, ha, mi, cli/app.rs.
//! Exceptions the design spells out elsewhere:
//! * modules may use message, dialog, db (their store.rs holds their SQL through db's pools),
//!   mi (they register MI commands) and `script::api` (the script<->core contract), and no
//!   other part of script;
//! * db and mi, which modules use, may not use modules back;
//! * proxy may use every room; cli/, app.rs, main.rs and lib.rs anything;
//! * the root files config.rs, error.rs and shutdown.rs may be used by every room but message,
//!   and use no room themselves;
//! * `rhai` is named only in script/, modules/*/script.rs and modules/mod.rs; `sqlx` only in
//!   db/ and modules/*/store.rs; message/ names no `tokio` (it is pure SIP).

use std::path::{Path, PathBuf};

const ROOMS: [&str; 10] =
    ["message", "transport", "transaction", "dialog", "script", "modules", "db", "proxy", "ha", "mi"];
const ROOT_FILES: [&str; 3] = ["config", "error", "shutdown"];

/// Where a file or a path belongs: one of [`ROOMS`], `"app"` (cli/, app.rs, main.rs,
/// lib.rs) or `"root"` (config.rs, error.rs, shutdown.rs).
fn room_of_file(rel: &Path) -> Result<&'static str, String> {
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let first = parts.first().map(String::as_str).unwrap_or("");
    let stem = first.strip_suffix(".rs").unwrap_or(first);
    if let Some(r) = ROOMS.iter().find(|r| **r == stem) {
        return Ok(r);
    }
    if stem == "cli" || stem == "app" || stem == "main" || stem == "lib" {
        return Ok("app");
    }
    if ROOT_FILES.contains(&stem) {
        return Ok("root");
    }
    Err(format!("src/{} is in no room of design.md §2: add the room there and to tests/architecture.rs", rel.display()))
}

/// The room a `crate::` path names by its first segment; `None` for items of lib.rs itself.
fn room_of_path(first: &str) -> Option<&'static str> {
    if let Some(r) = ROOMS.iter().find(|r| **r == first) {
        return Some(r);
    }
    match first {
        "cli" | "app" => Some("app"),
        f if ROOT_FILES.contains(&f) => Some("root"),
        _ => None,
    }
}

/// Which rooms `from` may use besides itself and the root files.
fn allowed(from: &str) -> &'static [&'static str] {
    match from {
        "message" => &[],
        "transport" => &["message"],
        "transaction" => &["message", "transport"],
        "dialog" => &["message", "transport", "transaction"],
        "script" => &["message", "transport", "transaction", "dialog"],
        "modules" => &["message", "dialog", "db", "mi", "script"],
        "db" => &["message", "transport", "transaction", "dialog", "script"],
        "proxy" => &["message", "transport", "transaction", "dialog", "script", "modules", "db", "ha", "mi"],
        "ha" => &["message", "transport", "transaction", "dialog", "script", "modules", "db", "proxy"],
        "mi" => &["message", "transport", "transaction", "dialog", "script", "db", "proxy", "ha"],
        _ => &[],
    }
}

/// Checks one reference from a file in `from` to the crate path `path`; the rule broken, if any.
fn check_path(from: &str, path: &[String]) -> Option<String> {
    let to = room_of_path(path.first()?)?;
    if to == from || from == "app" {
        return None;
    }
    let shown = format!("crate::{}", path.join("::"));
    if from == "root" {
        return (to != "root")
            .then(|| format!("{shown}: the root files (config.rs, error.rs, shutdown.rs) use no room"));
    }
    if from == "message" {
        return Some(format!("{shown}: message is pure SIP and uses no other room, root files included"));
    }
    if to == "root" {
        return None;
    }
    if to == "app" {
        return Some(format!("{shown}: no room uses cli/ or app.rs (they wire the rooms together)"));
    }
    if !allowed(from).contains(&to) {
        let may = allowed(from).join(", ");
        return Some(format!("{shown}: {from} may use only {may} and the root files (design.md §2 room order)"));
    }
    if from == "modules" && to == "script" && path.get(1).map(String::as_str) != Some("api") {
        return Some(format!("{shown}: modules use script only through script::api (the script<->core contract)"));
    }
    None
}

/// Blanks comments, string and char literals (keeping every byte offset and newline), so that
/// what is left is code.
fn code_only(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let blank =
        |out: &mut Vec<u8>, bytes: &[u8]| out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        let prev_ident = i > 0 && ident(src[i - 1]);
        if c == b'/' && src.get(i + 1) == Some(&b'/') {
            let end = src[i..].iter().position(|&c| c == b'\n').map_or(src.len(), |p| i + p);
            blank(&mut out, &src[i..end]);
            i = end;
        } else if c == b'/' && src.get(i + 1) == Some(&b'*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < src.len() && depth > 0 {
                if src[j] == b'/' && src.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if src[j] == b'*' && src.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            let j = j.min(src.len());
            blank(&mut out, &src[i..j]);
            i = j;
        } else if !prev_ident && (c == b'r' || c == b'b') && raw_string_end(src, i).is_some() {
            let j = raw_string_end(src, i).unwrap_or(src.len());
            blank(&mut out, &src[i..j]);
            i = j;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < src.len() && src[j] != b'"' {
                j += if src[j] == b'\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(src.len());
            blank(&mut out, &src[i..j]);
            i = j;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é') or a lifetime ('a).
            let end = if src.get(i + 1) == Some(&b'\\') {
                src[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p + 1)
            } else {
                let len = std::str::from_utf8(&src[i + 1..(i + 5).min(src.len())])
                    .or_else(|e| std::str::from_utf8(&src[i + 1..i + 1 + e.valid_up_to()]))
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (src.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match end {
                Some(j) => {
                    blank(&mut out, &src[i..j]);
                    i = j;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// End of a raw (byte) string literal starting at `i` (`r"…"`, `r#"…"#`, `br"…"`), if one does.
fn raw_string_end(src: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if src.get(j) == Some(&b'b') {
        j += 1;
    }
    if src.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = src[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if src.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    while j < src.len() {
        if src[j] == b'"' && src.len() >= j + 1 + hashes && src[j + 1..j + 1 + hashes].iter().all(|&c| c == b'#') {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(src.len())
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn eat(&mut self, tok: &[u8]) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }
    /// A use tree (or an expression path) after `crate::`: every path it names.
    fn tree(&mut self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.eat(b"{") {
            loop {
                if self.eat(b"}") {
                    return;
                }
                let depth = prefix.len();
                self.tree(prefix, out);
                prefix.truncate(depth);
                if !self.eat(b",") {
                    self.eat(b"}");
                    return;
                }
            }
        }
        if self.eat(b"*") {
            out.push(prefix.clone());
            return;
        }
        let Some(id) = self.ident() else {
            out.push(prefix.clone());
            return;
        };
        prefix.push(id);
        let save = self.pos;
        if self.eat(b"::") {
            self.skip_ws();
            if self.s.get(self.pos) == Some(&b'<') {
                // `path::<T>`: a turbofish ends the path.
                self.pos = save;
                out.push(prefix.clone());
                return;
            }
            self.tree(prefix, out);
        } else {
            out.push(prefix.clone());
        }
    }
}

/// The module path of a file under src/ (`modules/rr/script.rs` -> [modules, rr, script]).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem);
        }
    }
    parts
}

fn word_at(code: &[u8], i: usize, word: &[u8]) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    code[i..].starts_with(word)
        && (i == 0 || (!ident(code[i - 1]) && code[i - 1] != b'$'))
        && code.get(i + word.len()).is_none_or(|&c| !ident(c))
}

/// Every rule `source` (the text of src/`rel`) breaks, as `src/<file>:<line>: <rule>`.
fn violations(rel: &Path, source: &str) -> Vec<String> {
    let room = match room_of_file(rel) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let code = code_only(source.as_bytes());
    let line_of = |i: usize| code[..i].iter().filter(|&&c| c == b'\n').count() + 1;
    let rel_s = rel.to_string_lossy().replace('\\', "/");
    let here = module_path(rel);
    let mut found = Vec::new();
    let mut report = |i: usize, rule: String| found.push(format!("src/{rel_s}:{}: {rule}", line_of(i)));

    let is_script_file = rel_s.starts_with("script/")
        || rel_s == "modules/mod.rs"
        || (rel_s.starts_with("modules/") && rel_s.ends_with("/script.rs") && rel_s.matches('/').count() == 2);
    let is_store_file = rel_s.starts_with("db/")
        || (rel_s.starts_with("modules/") && rel_s.ends_with("/store.rs") && rel_s.matches('/').count() == 2);

    let mut i = 0;
    while i < code.len() {
        let rest_is_path = |n: usize| {
            let mut j = i + n;
            while j < code.len() && code[j].is_ascii_whitespace() {
                j += 1;
            }
            code[j..].starts_with(b"::")
        };
        let after_use = || {
            let before = String::from_utf8_lossy(&code[..i]);
            let t = before.trim_end();
            t.ends_with("use") && !t[..t.len() - 3].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        };
        if word_at(&code, i, b"crate") && rest_is_path(5) {
            let mut sc = Scanner { s: &code, pos: i + 5 };
            sc.eat(b"::");
            let mut paths = Vec::new();
            sc.tree(&mut Vec::new(), &mut paths);
            for p in paths {
                if let Some(rule) = check_path(room, &p) {
                    report(i, rule);
                }
            }
            i = sc.pos.max(i + 1);
            continue;
        }
        if word_at(&code, i, b"super") && rest_is_path(5) && !(i >= 2 && &code[i - 2..i] == b"::") {
            let mut sc = Scanner { s: &code, pos: i };
            let mut base = here.clone();
            while sc.eat(b"super") && sc.eat(b"::") {
                base.pop();
            }
            let mut paths = Vec::new();
            sc.tree(&mut base.clone(), &mut paths);
            for p in paths {
                if let Some(rule) = check_path(room, &p) {
                    report(i, rule.replacen("crate::", "super:: -> crate::", 1));
                }
            }
            i = sc.pos.max(i + 1);
            continue;
        }
        for (krate, ok, rule) in [
            (
                &b"rhai"[..],
                is_script_file,
                "rhai is named only in script/, modules/*/script.rs and modules/mod.rs (design.md §2)",
            ),
            (&b"sqlx"[..], is_store_file, "sqlx is named only in db/ and modules/*/store.rs (design.md §2)"),
            (&b"tokio"[..], room != "message", "message/ is pure SIP and names no tokio (design.md §2)"),
        ] {
            if word_at(&code, i, krate) && (rest_is_path(krate.len()) || after_use()) && !ok {
                report(i, rule.to_string());
            }
        }
        i += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("readable src/").filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn rooms_import_only_what_design_md_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.iter().any(|f| f.ends_with("message/mod.rs")), "no src/message/mod.rs under {}", src.display());
    let mut all = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src/");
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        all.extend(violations(rel, &text));
    }
    assert!(all.is_empty(), "{} room rule(s) broken:\n{}", all.len(), all.join("\n"));
}

// ---- the checker itself ----

fn check(path: &str, text: &str) -> Vec<String> {
    violations(Path::new(path), text)
}

#[test]
fn checker_finds_what_it_must() {
    let v = check("message/parse.rs", "use std::fmt;\nuse crate::transport::Proto;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/message/parse.rs:2: crate::transport::Proto: message is pure SIP"), "{v:?}");
    // Grouped and nested use trees, and paths in code.
    let v = check(
        "transport/udp.rs",
        "use crate::{message::{SipMsg, Edits}, proxy::Handler};\nfn f() { crate::dialog::x(); }\n",
    );
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains(":1: crate::proxy::Handler: transport may use only message and the root files"), "{v:?}");
    assert!(v[1].contains(":2: crate::dialog::x"), "{v:?}");
    // modules: script::api only; db, mi, dialog fine; transport not.
    assert!(check(
        "modules/rr/mod.rs",
        "use crate::script::api::Ctx;\nuse crate::{db::Pool, mi::Registry, dialog::D, config::Cfg};\n"
    )
    .is_empty());
    let v = check("modules/rr/mod.rs", "use crate::script::{api::Ctx, ScriptHost};\nuse crate::transport::Proto;\n");
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("crate::script::ScriptHost: modules use script only through script::api"), "{v:?}");
    // Nobody but app uses cli/app; db and mi do not use modules back.
    assert_eq!(check("proxy/mod.rs", "use crate::app::App;\n").len(), 1);
    assert_eq!(check("db/mod.rs", "use crate::modules::usrloc;\n").len(), 1);
    assert_eq!(check("mi/mod.rs", "use crate::modules::usrloc;\n").len(), 1);
    assert!(check("proxy/mod.rs", "use crate::{mi::X, ha::Y, modules::rr, db::Z, config::C, error::E};\n").is_empty());
    assert!(check("app.rs", "use crate::{cli, proxy, mi, ha};\n").is_empty());
    // Root files: usable by all but message, and use no room.
    assert!(check("transport/mod.rs", "use crate::config::Config;\nuse crate::shutdown::Signal;\n").is_empty());
    assert_eq!(check("message/mod.rs", "use crate::config::Config;\n").len(), 1);
    assert_eq!(check("config.rs", "use crate::message::Uri;\n").len(), 1);
    assert!(check("config.rs", "use crate::error::Error;\n").is_empty());
    // super:: that climbs out of the room counts too.
    let v = check("transport/tcp.rs", "use super::super::proxy::Handler;\nuse super::Proto;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains(":1: super:: -> crate::proxy::Handler"), "{v:?}");
    // rhai, sqlx, tokio.
    assert!(check("script/mod.rs", "use rhai::Engine;\n").is_empty());
    assert!(check("modules/rr/script.rs", "fn f(e: &mut rhai::Engine) {}\n").is_empty());
    assert!(check("modules/mod.rs", "use rhai::Engine;\n").is_empty());
    assert_eq!(check("modules/rr/mod.rs", "use rhai::Engine;\n").len(), 1);
    assert_eq!(check("proxy/mod.rs", "fn f() -> rhai::Dynamic { todo!() }\n").len(), 1);
    assert!(check("db/pool.rs", "use sqlx::SqlitePool;\n").is_empty());
    assert!(check("modules/usrloc/store.rs", "use sqlx::Row;\n").is_empty());
    assert_eq!(check("modules/usrloc/mod.rs", "use sqlx::Row;\n").len(), 1);
    assert_eq!(check("message/parse.rs", "#[tokio::test]\nasync fn t() {}\n").len(), 1);
    assert_eq!(check("message/parse.rs", "use tokio;\n").len(), 1);
    // An unknown top-level file or folder is in no room.
    assert!(check("misc/x.rs", "")[0].contains("in no room"));
}

#[test]
fn checker_ignores_comments_strings_and_lookalikes() {
    let text = r####"//! Talks about `crate::proxy` and rhai::Engine in docs.
/* crate::transport::x; /* nested crate::proxy */ rhai::Engine */
const S: &str = "use crate::proxy::X; rhai::Engine";
const R: &str = r#"crate::proxy "quoted" rhai::x"#;
const B: &[u8] = br"crate::proxy";
const C: char = '"';
fn f<'a>(x: &'a str) -> &'a str { let _q = '\''; x }
macro_rules! m { () => { $crate::proxy::X } }
mod tests { use super::*; }
let tokioish = 1; let my_crate = 2; let rhai_like = 3;
"####;
    let v = check("message/x.rs", text);
    assert!(v.is_empty(), "{v:?}");
    // …while code after all of that is still seen, on the right line.
    let v = check("message/x.rs", &format!("{text}use crate::proxy::Y;\n"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/message/x.rs:11:"), "{v:?}");
}
