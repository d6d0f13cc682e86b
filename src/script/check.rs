//! Validation shared by `siprox check`, startup and every reload: compile a script and report
//! what would only fail at run time in Rhai — calls to functions that do not exist or with
//! the wrong number of arguments, a missing `route`, `t_on_failure("x")` and friends naming
//! a route that is not defined — as `file:line:col: message` diagnostics.

use super::{compile, Bundle, ScriptError, Source};
use rhai::{ASTNode, Engine, Expr, Stmt, AST};
use std::collections::{HashMap, HashSet};

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

/// Arity of every function in a list of signatures (`name(a: T, b: U) -> R`).
fn known_functions(signatures: &[String]) -> HashMap<String, HashSet<usize>> {
    let mut out: HashMap<String, HashSet<usize>> = HashMap::new();
    for sig in signatures {
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

/// Compiles `source` on `engine` and checks it; an empty list means clean.
pub fn check_script(engine: Engine, source: Source<'_>) -> Vec<Diagnostic> {
    let name = match &source {
        Source::File(p) => p.display().to_string(),
        Source::Text { name, .. } => name.to_string(),
    };
    match compile_checked(engine, source) {
        Ok(_) => Vec::new(),
        Err(ScriptError::At { file, line, col, message }) => vec![Diagnostic { file, line, col, message }],
        Err(ScriptError::Invalid(d)) => d,
        Err(ScriptError::Other(m)) => vec![Diagnostic { file: name, line: 1, col: 1, message: m }],
    }
}

/// Compiles and validates, as startup, every reload, `siprox check` and `siprox test` do: a
/// script with any diagnostic is refused as a whole.
///
/// # Errors
/// As [`compile`], or [`ScriptError::Invalid`] with every diagnostic.
pub fn compile_checked(engine: Engine, source: Source<'_>) -> Result<Bundle, ScriptError> {
    let bundle = compile(engine, source)?;
    let diags = check_bundle(&bundle);
    if diags.is_empty() {
        Ok(bundle)
    } else {
        Err(ScriptError::Invalid(diags))
    }
}

/// The routes `t_on_*` arm, by the name of the hook function they prefix (spec §4.7).
const ARMING: &[(&str, &str)] =
    &[("t_on_failure", "failure_route_"), ("t_on_reply", "onreply_route_"), ("t_on_branch", "branch_route_")];

/// What Rhai would only find out when the line runs: unknown functions, wrong arity
/// (also of `module::fn()` calls), and `t_on_*("x")` naming a route the script lacks; in the
/// script and in every module it imports.
pub fn check_bundle(bundle: &Bundle) -> Vec<Diagnostic> {
    // Every import alias is a static module of the engine, so its functions are listed here
    // as `alias::name(…)`.
    let engine_fns = known_functions(&bundle.engine.gen_fn_signatures(true));
    let mut diags = check_ast(&bundle.ast, &bundle.path, &engine_fns, bundle);
    for (file, ast) in bundle.module_asts() {
        diags.extend(check_ast(ast, file, &engine_fns, bundle));
    }
    diags
}

/// Checks the calls of one AST (the script's or a module's) against the engine's functions
/// and its own.
fn check_ast(ast: &AST, path: &str, engine_fns: &HashMap<String, HashSet<usize>>, bundle: &Bundle) -> Vec<Diagnostic> {
    let mut known = engine_fns.clone();
    for f in ast.iter_functions() {
        known.entry(f.name.to_string()).or_default().insert(f.params.len());
    }
    let mut diags = Vec::new();
    let mut push = |pos: &rhai::Position, message: String| {
        diags.push(Diagnostic {
            file: path.into(),
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            message,
        })
    };
    ast.walk(&mut |nodes: &[ASTNode]| {
        let (call, pos) = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos))) | Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, pos),
            _ => return true,
        };
        let name = call.name.as_str();
        let is_word = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_');
        if !is_word || SPECIAL.contains(&name) {
            return true;
        }
        let full = if call.namespace.is_empty() { name.to_string() } else { format!("{}::{name}", call.namespace) };
        let n = call.args.len();
        match known.get(&full) {
            None if !call.namespace.is_empty()
                && !known.keys().any(|k| k.starts_with(&format!("{}::", call.namespace))) =>
            {
                push(
                    pos,
                    format!(
                        "unknown module `{}` (import it: `import \"{}\" as {};`)",
                        call.namespace, call.namespace, call.namespace
                    ),
                )
            }
            None => push(pos, format!("unknown function `{full}`")),
            Some(arities) if !arities.contains(&n) => {
                let mut a: Vec<_> = arities.iter().copied().collect();
                a.sort_unstable();
                let want = a.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ");
                push(pos, format!("`{full}` takes {want} argument(s), not {n}"))
            }
            _ => {}
        }
        if let Some((_, prefix)) = ARMING.iter().find(|(f, _)| *f == name) {
            // `""` disarms (docs/script-api.md §4.12): nothing to define.
            if let Some(Expr::StringConstant(route, _)) =
                call.args.first().filter(|a| !matches!(a, Expr::StringConstant(r, _) if r.is_empty()))
            {
                let hook = format!("{prefix}{route}");
                if !bundle.has_hook(&hook) {
                    push(
                        pos,
                        format!("`{name}(\"{route}\")` arms a route the script does not define: no `fn {hook}()`"),
                    );
                }
            }
        }
        true
    });
    diags.sort_by_key(|d| (d.line, d.col));
    diags
}
