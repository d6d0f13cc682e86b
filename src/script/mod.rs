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
mod bundle;
mod check;
mod host;
mod watch;

pub use bundle::{compile, Bundle, Source};
pub use check::{check_bundle, check_script, compile_checked, Diagnostic};
pub use host::{
    LatencyHistogram, LatencySnapshot, ReloadFailure, Reloaded, ScriptHost, ScriptStats, ScriptStatus,
    LATENCY_BUCKETS_US,
};
pub use watch::{watch, WatchError, Watcher};

use rhai::{CallFnOptions, Engine, EvalAltResult, Position, Scope};
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
    /// Compiled, but calls that cannot work (unknown function, wrong arity, a route armed
    /// that does not exist): every diagnostic, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
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
pub(crate) fn innermost(err: &EvalAltResult) -> (&EvalAltResult, Option<Position>) {
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

/// Limits of one hook call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rhai operations one hook may run (a runaway loop ends with a 500).
    pub max_operations: u64,
    pub max_call_levels: usize,
    /// Longest string a script may build, bytes.
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000,
            max_call_levels: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
        }
    }
}

/// A new engine with limits, the `$` syntax, core functions and `register`'s additions.
pub fn build_engine(limits: Limits, register: &dyn Fn(&mut Engine)) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(64, 64);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    // No file access: imports are resolved by `compile` from the script's folders and the
    // built-in stdlib, never at run time (Rhai's default resolver would read any path).
    // `eval` would hide code from validation and compile on the hot path.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
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
        Err(e) => classify(bundle, name, &e),
    };
    (ctx, outcome)
}

fn classify(bundle: &Bundle, hook: &str, e: &EvalAltResult) -> Outcome {
    let (inner, pos) = innermost(e);
    if let EvalAltResult::ErrorTerminated(v, _) = inner {
        let marker = api::as_text(v);
        if marker == api::EXIT {
            return Outcome::Exit;
        }
        if marker == api::DROP {
            return Outcome::Drop;
        }
    }
    if pos.is_none_or(|p| p.is_none()) && inner.is_system_exception() {
        // A limit was hit: Rhai keeps no position for those, so name the hook.
        return Outcome::Error(ScriptError::At {
            file: bundle.path.clone(),
            line: bundle.fn_line(hook).unwrap_or(0),
            col: 1,
            message: format!("in fn {hook}(): {inner}"),
        });
    }
    Outcome::Error(ScriptError::from_rhai(&bundle.path, e))
}
