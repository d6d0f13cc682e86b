//! [`ScriptHost`]: the bundle in force, atomic swaps on reload, and what the management
//! interface shows about it (version, hash, reload counts, last error, hook latency).
//!
//! A reload compiles and validates off the hot path and swaps one pointer. Work that took
//! the old bundle (a transaction whose failure_route is armed holds it) finishes on it; the
//! next request gets the new one. A reload that fails changes nothing that is running.

use super::bundle::{Bundle, Source};
use super::check::compile_checked;
use super::{api, build_engine, run_hook, Limits, Outcome, ScriptError, DEFAULT_SCRIPT};
use arc_swap::ArcSwap;
use rhai::Engine;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Upper bounds of the hook latency histogram, microseconds (the last bucket is +Inf).
pub const LATENCY_BUCKETS_US: [u64; 11] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// Hook run times, lock-free (a Prometheus histogram without the dependency on the hot path).
#[derive(Default, Debug)]
pub struct LatencyHistogram {
    /// Per bucket of [`LATENCY_BUCKETS_US`], then +Inf; not cumulative.
    counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// A copy of [`LatencyHistogram`]: cumulative counts per bucket (+Inf last), sum in seconds.
#[derive(Debug, Clone)]
pub struct LatencySnapshot {
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    fn record(&self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros() as u64;
        let i = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        LatencySnapshot { cumulative, sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// Counters of the script room.
#[derive(Default, Debug)]
pub struct ScriptStats {
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Hooks that ended in an error (a 500 for a request route).
    pub errors: AtomicU64,
    pub hook_latency: LatencyHistogram,
}

/// A reload that was refused.
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    pub at: SystemTime,
    /// `file:line:col: message`, one per line.
    pub message: String,
}

/// What `script_status` shows.
#[derive(Debug, Clone)]
pub struct ScriptStatus {
    /// The script file, or `None` for the built-in default / an embedded source.
    pub path: Option<PathBuf>,
    pub name: String,
    pub version: u64,
    pub hash: String,
    pub loaded_at: SystemTime,
    pub reloads: u64,
    pub reload_failures: u64,
    /// The most recent refused reload, kept after later good ones (with its time).
    pub last_error: Option<ReloadFailure>,
    /// Whether the latest attempt was refused (the running bundle is then older than the file).
    pub last_attempt_failed: bool,
    /// The files the bundle was built from (the script and its imported modules on disk).
    pub sources: Vec<PathBuf>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new bundle is in force.
    Swapped { version: u64, hash: String },
    /// The sources hash the same as the running bundle: nothing to do.
    Unchanged { version: u64 },
}

/// Builds engines and holds the current bundle.
pub struct ScriptHost {
    current: ArcSwap<Bundle>,
    register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    limits: Limits,
    path: Option<PathBuf>,
    /// One reload at a time (watcher, SIGHUP and MI may ask together); also guards the
    /// record of the last failure.
    reload_lock: Mutex<ReloadState>,
    pub stats: ScriptStats,
}

#[derive(Default)]
struct ReloadState {
    last_error: Option<ReloadFailure>,
    last_attempt_failed: bool,
}

/// A fresh engine, the script compiled and validated on it.
fn build(
    limits: Limits,
    register: &(dyn Fn(&mut Engine) + Send + Sync),
    source: Source<'_>,
) -> Result<Bundle, ScriptError> {
    compile_checked(build_engine(limits, register), source)
}

impl ScriptHost {
    /// Loads the script at `path` (or the built-in default when `path` is `None`).
    ///
    /// # Errors
    /// The file cannot be read, does not compile or does not validate.
    pub fn load(
        path: Option<&Path>,
        limits: Limits,
        register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    ) -> Result<ScriptHost, ScriptError> {
        let source = match path {
            Some(p) => Source::File(p),
            None => Source::Text { text: DEFAULT_SCRIPT, name: "scripts/default.rhai" },
        };
        let bundle = build(limits, &*register, source)?;
        Ok(ScriptHost::with_bundle(bundle, register, limits, path.map(Path::to_path_buf)))
    }

    /// A host running `source` (named `name` in diagnostics), for embedding and tests.
    ///
    /// # Errors
    /// The source does not compile or does not validate.
    pub fn from_source(
        source: &str,
        name: &str,
        limits: Limits,
        register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
    ) -> Result<ScriptHost, ScriptError> {
        let bundle = build(limits, &*register, Source::Text { text: source, name })?;
        Ok(ScriptHost::with_bundle(bundle, register, limits, None))
    }

    fn with_bundle(
        bundle: Bundle,
        register: Arc<dyn Fn(&mut Engine) + Send + Sync>,
        limits: Limits,
        path: Option<PathBuf>,
    ) -> ScriptHost {
        ScriptHost {
            current: ArcSwap::from_pointee(bundle),
            register,
            limits,
            path,
            reload_lock: Mutex::new(ReloadState::default()),
            stats: ScriptStats::default(),
        }
    }

    /// The script file, when the host runs one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The bundle in force now. Work that starts on it finishes on it.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.current.load_full()
    }

    /// Whether the current bundle defines hook `name` (no reference taken: cheap per message).
    pub fn has_hook(&self, name: &str) -> bool {
        self.current.load().has_hook(name)
    }

    /// Recompiles the script from disk, validates it and swaps it in; on any failure the
    /// running bundle stays, and the failure is counted, logged and kept for
    /// `script_status`. Blocking (file reads, compilation): call it off the async workers.
    ///
    /// # Errors
    /// The script does not read, compile or validate.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, ScriptError> {
        let mut state = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            // The built-in default cannot change.
            return Ok(Reloaded::Unchanged { version: self.current.load().version });
        };
        match build(self.limits, &*self.register, Source::File(path)) {
            Ok(mut bundle) => {
                state.last_attempt_failed = false;
                let old = self.current.load();
                if bundle.hash == old.hash {
                    tracing::debug!(trigger, version = old.version, "script unchanged");
                    return Ok(Reloaded::Unchanged { version: old.version });
                }
                bundle.version = old.version + 1;
                let done = Reloaded::Swapped { version: bundle.version, hash: bundle.hash.clone() };
                tracing::info!(trigger, version = bundle.version, hash = &bundle.hash[..12], "script reloaded");
                self.current.store(Arc::new(bundle));
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(done)
            }
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                let message = e.to_string();
                for line in message.lines() {
                    tracing::error!(trigger, "script reload refused, the running script stays: {line}");
                }
                state.last_error = Some(ReloadFailure { at: SystemTime::now(), message });
                state.last_attempt_failed = true;
                Err(e)
            }
        }
    }

    pub fn status(&self) -> ScriptStatus {
        let b = self.current.load();
        let state = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        ScriptStatus {
            path: self.path.clone(),
            name: b.path.clone(),
            version: b.version,
            hash: b.hash.clone(),
            loaded_at: b.loaded_at,
            reloads: self.stats.reloads.load(Ordering::Relaxed),
            reload_failures: self.stats.reload_failures.load(Ordering::Relaxed),
            last_error: state.last_error.clone(),
            last_attempt_failed: state.last_attempt_failed,
            sources: b.sources.clone(),
        }
    }

    /// Runs hook `name` of the current bundle on `ctx`; the context remembers the bundle,
    /// so routes armed for later (failure, reply, branch) run on this same version.
    pub fn run(&self, name: &str, mut ctx: api::Ctx) -> (api::Ctx, Outcome) {
        // The guard pins the bundle without touching its reference count; the context's
        // copy is the one reference a transaction may keep.
        let bundle = self.current.load();
        ctx.bundle = Some(Arc::clone(&bundle));
        self.run_on(&bundle, name, ctx)
    }

    /// Runs hook `name` of a given bundle (one a transaction holds), timed and counted.
    pub fn run_on(&self, bundle: &Bundle, name: &str, ctx: api::Ctx) -> (api::Ctx, Outcome) {
        let started = Instant::now();
        let (ctx, outcome) = run_hook(bundle, name, ctx);
        self.stats.hook_latency.record(started.elapsed());
        self.count(&outcome);
        (ctx, outcome)
    }

    /// Runs a hook nested in another (a branch_route inside `t_relay`): counted, but not
    /// timed apart, since its time is already inside the outer hook's.
    pub fn run_nested(&self, bundle: &Bundle, name: &str, ctx: api::Ctx) -> (api::Ctx, Outcome) {
        let (ctx, outcome) = run_hook(bundle, name, ctx);
        self.count(&outcome);
        (ctx, outcome)
    }

    fn count(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Error(_)) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
