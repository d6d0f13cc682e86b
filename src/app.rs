//! The composition root: builds every room from the configuration and wires them together.

use crate::config::Config;
use crate::mi::{self, Mi};
use crate::modules::{dispatcher, Modules};
use crate::proxy::Proxy;
use crate::script::{self, Limits, Reloaded, ScriptError, ScriptHost};
use crate::transaction::{Timers, Tm};
use crate::transport::{TpError, Transport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error(transparent)]
    Transport(#[from] TpError),
    #[error(transparent)]
    Mi(#[from] mi::ServerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The script a configuration names: the file when one is configured or present, else the
/// built-in default (`None`).
pub fn script_path(cfg: &Config, from_file: bool) -> Option<PathBuf> {
    let p = cfg.script_path();
    if from_file || p.exists() {
        Some(p)
    } else {
        None
    }
}

pub fn script_limits(cfg: &Config) -> Limits {
    Limits {
        max_operations: cfg.core.max_operations,
        max_call_levels: cfg.core.max_call_levels,
        max_string_size: cfg.core.max_string_size,
        max_array_size: cfg.core.max_array_size,
        max_map_size: cfg.core.max_map_size,
    }
}

/// A running proxy: its parts, for tests and the CLI.
pub struct Running {
    pub transport: Arc<Transport>,
    pub tm: Arc<Tm>,
    pub proxy: Arc<Proxy>,
    /// The management interface's commands, statistics and metric collectors (the core's
    /// are in; modules add theirs).
    pub mi: Arc<Mi>,
    /// Its HTTP server, once [`start`] or [`serve_mi`] started it.
    pub mi_server: Option<mi::Server>,
    /// The modules the script's functions are bound to (the dispatcher's sets, …).
    pub modules: Modules,
}

/// Binds the sockets (SIP and management interface) and starts serving. Must run inside a
/// tokio runtime.
///
/// # Errors
/// The script does not compile or a socket cannot be bound.
pub fn start(cfg: &Config, from_file: bool) -> Result<Running, AppError> {
    // The management port first: a taken port stops start-up before any SIP socket is open.
    let mi_listener = cfg.mi.addr()?.map(mi::bind).transpose()?;
    let path = script_path(cfg, from_file);
    let modules = Modules::new(cfg);
    let host = ScriptHost::load(path.as_deref(), script_limits(cfg), modules.registrar())?;
    let mut running = start_with(cfg, host, modules)?;
    if let Some(listener) = mi_listener {
        serve_mi_on(cfg, &mut running, listener)?;
    }
    tracing::info!(script = %path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in default".into()), "siprox ready");
    Ok(running)
}

/// Starts serving with a script host built by the caller (embedding, examples, tests);
/// `modules` must be those whose [`Modules::registrar`] the host was built with.
///
/// # Errors
/// A socket cannot be bound.
pub fn start_with(cfg: &Config, host: ScriptHost, modules: Modules) -> Result<Running, AppError> {
    let workers = match cfg.core.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };
    let (transport, bound) = Transport::bind(cfg, workers)?;
    let tm = Tm::new(Timers::from_config(&cfg.tm), transport.clone());
    let proxy = Proxy::new(cfg, transport.clone(), tm.clone(), Arc::new(host));
    let mi = Arc::new(Mi::new());
    let core = mi::builtin::Core { proxy: proxy.clone(), tm: tm.clone(), started: std::time::SystemTime::now() };
    mi::builtin::install(&mi, core);
    dispatcher::mi::install(&mi, modules.dispatcher.clone(), dispatcher_loader(cfg));
    transport.start(bound, proxy.clone());
    for l in transport.listeners() {
        tracing::info!(proto = l.proto.as_str(), addr = %l.addr, advertised = %l.advertised, "listening");
    }
    proxy.startup();
    Ok(Running { transport, tm, proxy, mi, mi_server: None, modules })
}

/// What `ds_reload` reads the `dispatcher` table with.
// The database room and modules::dispatcher::store (the table's SQL) plug in here; until
// they do, there is no table to read and a reload fails, leaving the sets as they are.
fn dispatcher_loader(cfg: &Config) -> dispatcher::DsLoader {
    let table = cfg.dispatcher.table_name.clone();
    std::sync::Arc::new(move || {
        let table = table.clone();
        Box::pin(async move { Err(format!("no database store to read the {table:?} table from")) })
    })
}

/// Starts the management interface of a proxy started with [`start_with`] on `[mi] listen`
/// (nothing when it is `""`); returns the address bound.
///
/// # Errors
/// `[mi] listen` is invalid or cannot be bound.
pub fn serve_mi(cfg: &Config, running: &mut Running) -> Result<Option<std::net::SocketAddr>, AppError> {
    let Some(addr) = cfg.mi.addr()? else { return Ok(None) };
    serve_mi_on(cfg, running, mi::bind(addr)?)
}

fn serve_mi_on(
    cfg: &Config,
    running: &mut Running,
    listener: std::net::TcpListener,
) -> Result<Option<std::net::SocketAddr>, AppError> {
    let server = mi::serve(listener, running.mi.clone(), cfg.mi.token.clone())?;
    let addr = server.local_addr();
    tracing::info!(%addr, token = cfg.mi.token.is_some(), "management interface: POST /mi, GET /metrics");
    running.mi_server = Some(server);
    Ok(Some(addr))
}

/// Reloads the script off the async workers (the host logs and records the outcome).
pub async fn reload_script(host: Arc<ScriptHost>, trigger: &'static str) -> Result<Reloaded, ScriptError> {
    tokio::task::spawn_blocking(move || host.reload(trigger))
        .await
        .unwrap_or_else(|e| Err(ScriptError::Other(format!("reload task failed: {e}"))))
}

/// Runs until SIGINT/SIGTERM. The script reloads on save and on SIGHUP (the old one stays
/// when the new one is refused).
///
/// # Errors
/// As [`start`].
pub async fn run(cfg: Config, from_file: bool) -> Result<(), AppError> {
    let running = start(&cfg, from_file)?;
    let host = running.proxy.script().clone();
    let _watch = if cfg.core.script_watch && host.path().is_some() {
        match script::watch(host.clone(), Duration::from_millis(cfg.core.script_debounce_ms)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "script not watched; reload with SIGHUP or `siprox ctl reload_routes`");
                None
            }
        }
    } else {
        None
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = reload_script(host.clone(), "SIGHUP").await;
            }
        }
    }
    tracing::info!("siprox stopping");
    Ok(())
}
