//! `siprox check`: compile a script and report what would only fail at run time in Rhai —
//! calls to functions that do not exist or with the wrong number of arguments, and a
//! missing `route` — as `file:line:col: message` diagnostics.

use super::{compile, ScriptError};
use rhai::{ASTNode, Engine, Expr, Stmt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

/// Names the Rhai parser handles itself.
const SPECIAL: &[&str] =
    &["print", "debug", "type_of", "eval", "Fn", "call", "curry", "is_def_var", "is_def_fn", "is_shared"];

/// Arity of every function the engine knows, from its signatures (`name(a: T, b: U) -> R`).
fn known_functions(engine: &Engine) -> HashMap<String, HashSet<usize>> {
    let mut out: HashMap<String, HashSet<usize>> = HashMap::new();
    for sig in engine.gen_fn_signatures(true) {
        let Some(open) = sig.find('(') else { continue };
        let name = sig[..open].trim().to_string();
        let mut depth = 0i32;
        let mut commas = 0;
        let mut empty = true;
        for c in sig[open + 1..].chars() {
            match c {
                '(' | '<' | '[' => depth += 1,
                ')' if depth == 0 => break,
                ')' | '>' | ']' => depth -= 1,
                ',' if depth == 0 => commas += 1,
                c if !c.is_whitespace() => empty = false,
                _ => {}
            }
        }
        let arity = if empty { 0 } else { commas + 1 };
        out.entry(name).or_default().insert(arity);
    }
    out
}

/// Checks `source`; an empty list means clean.
pub fn check_script(engine: Arc<Engine>, source: &str, path: &str) -> Vec<Diagnostic> {
    let bundle = match compile(engine.clone(), source, path) {
        Ok(b) => b,
        Err(ScriptError::At { file, line, col, message }) => return vec![Diagnostic { file, line, col, message }],
        Err(ScriptError::Other(m)) => return vec![Diagnostic { file: path.into(), line: 1, col: 1, message: m }],
    };
    let mut known = known_functions(&engine);
    for f in bundle.ast.iter_functions() {
        known.entry(f.name.to_string()).or_default().insert(f.params.len());
    }
    let mut diags = Vec::new();
    bundle.ast.walk(&mut |nodes: &[ASTNode]| {
        let call = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos))) | Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => {
                Some((call, pos))
            }
            _ => None,
        };
        if let Some((call, pos)) = call {
            let name = call.name.as_str();
            let is_word = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_');
            if is_word && call.namespace.is_empty() && !SPECIAL.contains(&name) {
                let n = call.args.len();
                let message = match known.get(name) {
                    None => Some(format!("unknown function `{name}`")),
                    Some(arities) if !arities.contains(&n) => {
                        let mut a: Vec<_> = arities.iter().copied().collect();
                        a.sort_unstable();
                        let want = a.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ");
                        Some(format!("`{name}` takes {want} argument(s), not {n}"))
                    }
                    _ => None,
                };
                if let Some(message) = message {
                    diags.push(Diagnostic {
                        file: path.into(),
                        line: pos.line().unwrap_or(0),
                        col: pos.position().unwrap_or(0),
                        message,
                    });
                }
            }
        }
        true
    });
    diags.sort_by_key(|d| (d.line, d.col));
    diags
}
