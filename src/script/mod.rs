//! The Rhai engine and the compiled route script.
//!
//! Owns: building the engine (limits, the `$` pseudo-variable syntax, core functions, and
//! whatever modules register), compiling a script into a [`Bundle`], running a hook on a
//! [`api::Ctx`] and reporting how it ended, and swapping bundles on reload. Does not own:
//! what the proxy does with the result.
//!
//! Hooks keep OpenSIPS's names (design.md §3): `route`, `route_<name>`,
//! `onreply_route[_<name>]`, `failure_route_<name>`, `branch_route_<name>`, `local_route`,
//! `error_route`, `startup_route`.

pub mod api;
mod check;

pub use check::{check_script, Diagnostic};

use arc_swap::ArcSwap;
use rhai::{CallFnOptions, Engine, EvalAltResult, Position, Scope, AST};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The default route script, built into the binary (`siprox run` with no config).
pub const DEFAULT_SCRIPT: &str = include_str!("../../scripts/default.rhai");

/// Rhai modules shipped with the proxy (stdlib/), available to every script as
/// `name::function()`.
pub const STDLIB: &[(&str, &str)] = &[("common", include_str!("../../stdlib/common.rhai"))];

#[derive(Debug, Error, Clone)]
pub enum ScriptError {
    #[error("{file}:{line}:{col}: {message}")]
    At { file: String, line: usize, col: usize, message: String },
    #[error("{0}")]
    Other(String),
}

impl ScriptError {
    fn from_rhai(file: &str, err: &EvalAltResult) -> ScriptError {
        let (inner, pos) = innermost(err);
        let message = match inner {
            EvalAltResult::ErrorRuntime(v, _) => api::as_text(v),
            other => other.to_string(),
        };
        match pos {
            Some(p) if !p.is_none() => ScriptError::At {
                file: file.into(),
                line: p.line().unwrap_or(0),
                col: p.position().unwrap_or(0),
                message,
            },
            _ => ScriptError::Other(format!("{file}: {message}")),
        }
    }
}

/// The error at the bottom of a chain of function calls, with the best position known.
fn innermost(err: &EvalAltResult) -> (&EvalAltResult, Option<Position>) {
    let mut cur = err;
    let mut pos = Some(err.position());
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, p) | EvalAltResult::ErrorInModule(_, inner, p) = cur {
        if !p.is_none() {
            pos = Some(*p);
        }
        cur = inner;
        if !cur.position().is_none() {
            pos = Some(cur.position());
        }
    }
    (cur, pos)
}

/// How a hook ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran to its end (or `return`).
    Done,
    /// `exit()` (or a primitive returning 0).
    Exit,
    /// `drop()`.
    Drop,
    /// The script has no such hook.
    Missing,
    Error(ScriptError),
}

/// A compiled script: engine and AST swapped as one unit on reload.
pub struct Bundle {
    pub engine: Arc<Engine>,
    pub ast: AST,
    pub path: String,
    hooks: HashSet<String>,
}

impl Bundle {
    pub fn has_hook(&self, name: &str) -> bool {
        self.hooks.contains(name)
    }
}

/// Limits of one hook call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
}

/// Builds engines and holds the current bundle.
pub struct ScriptHost {
    current: ArcSwap<Bundle>,
    register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    limits: Limits,
    path: Option<PathBuf>,
}

/// A new engine with limits, the `$` syntax, core functions and `register`'s additions.
pub fn build_engine(limits: Limits, register: &dyn Fn(&mut Engine)) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(64, 64);
    engine.set_max_string_size(64 * 1024);
    engine.set_max_array_size(10_000);
    engine.set_max_map_size(10_000);
    engine.on_print(|s| tracing::info!(target: "script", "{s}"));
    engine.on_debug(|s, _, pos| tracing::debug!(target: "script", "{pos:?}: {s}"));
    api::pv::register(&mut engine);
    api::core_fns::register(&mut engine);
    register(&mut engine);
    for (name, src) in STDLIB {
        // Compiled per engine, so a reload rebuilds them with the engine (no resolver cache).
        let module = engine.compile(src).and_then(|ast| {
            rhai::Module::eval_ast_as_new(Scope::new(), &ast, &engine).map_err(|e| {
                rhai::ParseError(
                    Box::new(rhai::ParseErrorType::BadInput(rhai::LexError::ImproperSymbol(
                        name.to_string(),
                        e.to_string(),
                    ))),
                    Position::NONE,
                )
            })
        });
        match module {
            Ok(m) => {
                engine.register_static_module(*name, m.into());
            }
            Err(e) => tracing::error!(module = name, error = %e, "stdlib module does not compile"),
        }
    }
    engine
}

/// Compiles `source` (named `path` in diagnostics) on `engine`.
///
/// # Errors
/// A syntax error, or no `route` function.
pub fn compile(engine: Arc<Engine>, source: &str, path: &str) -> Result<Bundle, ScriptError> {
    let mut ast = engine.compile(source).map_err(|e| {
        let p = e.position();
        ScriptError::At {
            file: path.into(),
            line: p.line().unwrap_or(0),
            col: p.position().unwrap_or(0),
            message: e.to_string(),
        }
    })?;
    ast.set_source(path);
    let hooks: HashSet<String> =
        ast.iter_functions().filter(|f| f.params.is_empty()).map(|f| f.name.to_string()).collect();
    if !hooks.contains("route") {
        return Err(ScriptError::At {
            file: path.into(),
            line: 1,
            col: 1,
            message: "the script has no `fn route()`".into(),
        });
    }
    Ok(Bundle { engine, ast, path: path.into(), hooks })
}

impl ScriptHost {
    /// Loads the script at `path` (or the built-in default when `path` is `None`).
    ///
    /// # Errors
    /// The file cannot be read or does not compile.
    pub fn load(
        path: Option<&Path>,
        limits: Limits,
        register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    ) -> Result<ScriptHost, ScriptError> {
        let engine = Arc::new(build_engine(limits, &*register));
        let bundle = match path {
            Some(p) => {
                let src =
                    std::fs::read_to_string(p).map_err(|e| ScriptError::Other(format!("{}: {e}", p.display())))?;
                compile(engine, &src, &p.display().to_string())?
            }
            None => compile(engine, DEFAULT_SCRIPT, "scripts/default.rhai")?,
        };
        Ok(ScriptHost { current: ArcSwap::from_pointee(bundle), register, limits, path: path.map(Path::to_path_buf) })
    }

    /// A host running `source` (named `name` in diagnostics), for embedding and tests.
    ///
    /// # Errors
    /// The source does not compile.
    pub fn from_source(
        source: &str,
        name: &str,
        limits: Limits,
        register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    ) -> Result<ScriptHost, ScriptError> {
        let engine = Arc::new(build_engine(limits, &*register));
        let bundle = compile(engine, source, name)?;
        Ok(ScriptHost { current: ArcSwap::from_pointee(bundle), register, limits, path: None })
    }

    /// The bundle in force now. Work that starts on it finishes on it.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.current.load_full()
    }

    /// Whether the current bundle defines hook `name` (no reference taken: cheap per message).
    pub fn has_hook(&self, name: &str) -> bool {
        self.current.load().has_hook(name)
    }

    /// Recompiles the script from disk and swaps it in; the old one stays on failure.
    ///
    /// # Errors
    /// The new script does not read or compile.
    pub fn reload(&self) -> Result<(), ScriptError> {
        let Some(path) = &self.path else { return Ok(()) };
        let src = std::fs::read_to_string(path).map_err(|e| ScriptError::Other(format!("{}: {e}", path.display())))?;
        let engine = Arc::new(build_engine(self.limits, &*self.register));
        let bundle = compile(engine, &src, &path.display().to_string())?;
        self.current.store(Arc::new(bundle));
        Ok(())
    }

    /// Runs hook `name` of the current bundle on `ctx`.
    pub fn run(&self, name: &str, ctx: api::Ctx) -> (api::Ctx, Outcome) {
        let bundle = self.current.load();
        run_hook(&bundle, name, ctx)
    }
}

/// Runs one hook; the context comes back whatever happened.
pub fn run_hook(bundle: &Bundle, name: &str, ctx: api::Ctx) -> (api::Ctx, Outcome) {
    if !bundle.has_hook(name) {
        return (ctx, Outcome::Missing);
    }
    api::push(ctx);
    let mut scope = Scope::new();
    let opts = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let res = bundle.engine.call_fn_with_options::<rhai::Dynamic>(opts, &mut scope, &bundle.ast, name, ());
    let ctx = match api::pop() {
        Some(c) => c,
        // Only a script function that forgot to push its context back could cause this;
        // they all go through api::with_ctx, which always does.
        None => unreachable!("script context stack emptied during a hook"),
    };
    let outcome = match res {
        Ok(_) => Outcome::Done,
        Err(e) => classify(&bundle.path, &e),
    };
    (ctx, outcome)
}

fn classify(path: &str, e: &EvalAltResult) -> Outcome {
    let (inner, _) = innermost(e);
    if let EvalAltResult::ErrorTerminated(v, _) = inner {
        let marker = api::as_text(v);
        if marker == api::EXIT {
            return Outcome::Exit;
        }
        if marker == api::DROP {
            return Outcome::Drop;
        }
    }
    Outcome::Error(ScriptError::from_rhai(path, e))
}
