//! The composition root: builds every room from the configuration and wires them together.

use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::mi::{self, Mi};
use crate::modules::{auth, dialog, dispatcher, load_balancer, usrloc, Modules};
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
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error(transparent)]
    Ha(#[from] crate::ha::HaError),
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
    /// The database of `[db] url`: migrated, or (PostgreSQL/MySQL down at start) being
    /// migrated in the background ([`Db::wait_ready`]).
    pub db: Arc<Db>,
    /// That background migration, stopped with the proxy.
    db_migration: Option<tokio::task::JoinHandle<()>>,
    /// The modules the script's functions are bound to (the dispatcher's sets, …).
    pub modules: Modules,
    /// `[dialog] db_mode` 1–3: writes the dialogs behind the table. [`run`] flushes it
    /// before stopping (db_mode 2's last period, db_mode 3's only write).
    pub dialog_writer: Option<dialog::persist::Writer>,
    /// The dialog lifetime sweep, and (db_mode 1–3) the load of the table at start;
    /// stopped with the proxy.
    dialog_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The subscribers' load at start and their periodic reload; stopped with the proxy.
    auth_task: Option<tokio::task::JoinHandle<()>>,
    /// `[usrloc]` modes with a database: keeps the location table behind memory (loads it,
    /// writes changes, reads other nodes' in `sql-only`). [`run`] flushes it before stopping.
    pub usrloc_writer: Option<usrloc::persist::Writer>,
    /// The expiry sweep of the registrations; stopped with the proxy.
    usrloc_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `[ha]`: this node of the active/standby pair; [`run`] hands the VIP over before
    /// stopping.
    pub ha: Option<Arc<crate::ha::Ha>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.auth_task.take() {
            task.abort();
        }
        if let Some(task) = self.db_migration.take() {
            task.abort();
        }
        for task in self.dialog_tasks.drain(..).chain(self.usrloc_tasks.drain(..)) {
            task.abort();
        }
    }
}

/// Opens `[db] url` and migrates it as start-up does (docs/database.md): SQLite at once,
/// fatal on error; PostgreSQL/MySQL that cannot be reached are migrated in the background
/// (the task is returned) while SIP starts.
///
/// # Errors
/// A bad URL, a SQLite file that cannot be opened, a migration that fails.
pub async fn open_db(cfg: &Config) -> Result<(Arc<Db>, Option<tokio::task::JoinHandle<()>>), AppError> {
    let db = Arc::new(Db::open_config(&cfg.db).await?);
    tracing::info!(url = %db.url(), backend = db.backend().name(), "database");
    let task = db::migrate_on_start(&db).await?;
    Ok((db, task))
}

/// Binds the sockets (SIP and management interface), opens and migrates the database, and
/// starts serving. Must run inside a tokio runtime.
///
/// # Errors
/// The script does not compile, a socket cannot be bound, or the database cannot be used
/// (see [`open_db`]).
pub async fn start(cfg: &Config, from_file: bool) -> Result<Running, AppError> {
    // The management port first: a taken port stops start-up before any SIP socket is open.
    let mi_listener = cfg.mi.addr()?.map(mi::bind).transpose()?;
    let path = script_path(cfg, from_file);
    let modules = Modules::new(cfg);
    let host = ScriptHost::load(path.as_deref(), script_limits(cfg), modules.registrar())?;
    let (db, db_migration) = open_db(cfg).await?;
    let mut running = start_with(cfg, host, db, modules)?;
    running.db_migration = db_migration;
    if let Some(listener) = mi_listener {
        serve_mi_on(cfg, &mut running, listener)?;
    }
    tracing::info!(script = %path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in default".into()), "siprox ready");
    Ok(running)
}

/// Starts serving with a script host and a database opened by the caller (embedding,
/// examples, tests; `Db::open("sqlite::memory:")` when nothing is kept); `modules` must be
/// those whose [`Modules::registrar`] the host was built with.
///
/// # Errors
/// A socket cannot be bound.
pub fn start_with(cfg: &Config, host: ScriptHost, db: Arc<Db>, modules: Modules) -> Result<Running, AppError> {
    let workers = match cfg.core.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };
    let (transport, bound) = Transport::bind(cfg, workers)?;
    let tm = Tm::new(Timers::from_config(&cfg.tm), transport.clone());
    let proxy = Proxy::new(cfg, transport.clone(), tm.clone(), Arc::new(host), modules.dialogs.clone());
    let mi = Arc::new(Mi::new());
    let core = mi::builtin::Core { proxy: proxy.clone(), tm: tm.clone(), started: std::time::SystemTime::now() };
    mi::builtin::install(&mi, core);
    mi::db::install(&mi, db.clone());
    crate::modules::dialog::mi::install(&mi, modules.dialogs.clone());
    let ds = modules.dispatcher.clone();
    let ds_loader = dispatcher_loader(cfg, db.clone());
    dispatcher::mi::install(&mi, ds.clone(), ds_loader.clone());
    announce_state_changes(&ds, &proxy);
    persist_state_changes(&ds, db.clone());
    let lb = modules.load_balancer.clone();
    let lb_loader = load_balancer_loader(cfg, db.clone());
    load_balancer::mi::install(&mi, lb.clone(), lb_loader.clone());
    announce_lb_changes(&lb, &proxy);
    let auth_loader = auth_loader(&modules.auth, db.clone());
    auth::mi::install(&mi, modules.auth.clone(), auth_loader.clone());
    transport.start(bound, proxy.clone());
    for l in transport.listeners() {
        tracing::info!(proto = l.proto.as_str(), addr = %l.addr, advertised = %l.advertised, "listening");
    }
    proxy.startup();
    tokio::spawn(load_dispatcher(ds.clone(), ds_loader));
    crate::proxy::probe::start(proxy.clone(), ds, Duration::from_secs(cfg.tm.fr_timeout));
    tokio::spawn(load_lb(lb.clone(), lb_loader));
    crate::proxy::probe::start(proxy.clone(), lb, Duration::from_secs(cfg.tm.fr_timeout));
    let nat_stats = Arc::new(crate::proxy::natping::NatPingStats::default());
    nat_stats.install(&mi.statistics);
    let nat_params = crate::proxy::natping::NatPingParams::from_config(&cfg.nathelper, &cfg.usrloc);
    crate::proxy::natping::start(proxy.clone(), modules.usrloc.clone(), nat_params, nat_stats);
    let auth_task = Some(tokio::spawn(load_auth(modules.auth.clone(), auth_loader)));
    let (dialog_writer, dialog_tasks) = start_dialogs(cfg, &mi, &db, &modules);
    let (usrloc_writer, usrloc_tasks) = start_usrloc(cfg, &mi, &db, &modules);
    let ha = match cfg.ha.enabled() {
        true => {
            let hook =
                takeover_hook(usrloc_writer.as_ref().map(|w| w.store()), dialog_writer.as_ref().map(|w| w.store()));
            let ha = Arc::new(crate::ha::Ha::start(
                &cfg.ha,
                cfg.fingerprint.as_deref(),
                proxy.script().clone(),
                Some(hook),
            )?);
            mi::ha::install(&mi, ha.clone());
            Some(ha)
        }
        false => None,
    };
    Ok(Running {
        transport,
        tm,
        proxy,
        mi,
        mi_server: None,
        db,
        db_migration: None,
        modules,
        dialog_writer,
        dialog_tasks,
        auth_task,
        usrloc_writer,
        usrloc_tasks,
        ha,
    })
}

/// What a node taking the VIP over reloads first (design.md §4): the registrations and the
/// dialogs (with their profiles, the load balancer's counts) that the other node wrote.
fn takeover_hook(
    ul: Option<usrloc::persist::UsrlocStore>,
    dlg: Option<dialog::persist::DialogStore>,
) -> crate::ha::Hook {
    Arc::new(move || {
        let (ul, dlg) = (ul.clone(), dlg.clone());
        Box::pin(async move {
            let registrations = async {
                if let Some(s) = &ul {
                    match s.refresh().await {
                        Ok(n) => tracing::info!(changed = n, "ha: registrations reloaded from the database"),
                        Err(e) => tracing::error!(error = %e, "ha: registrations not reloaded"),
                    }
                }
            };
            let dialogs = async {
                if let Some(s) = &dlg {
                    match s.resync().await {
                        Ok((restored, forgotten)) => {
                            tracing::info!(restored, forgotten, "ha: dialogs reloaded from the database")
                        }
                        Err(e) => tracing::error!(error = %e, "ha: dialogs not reloaded"),
                    }
                }
            };
            tokio::join!(registrations, dialogs);
        })
    })
}

/// The location table's background work: the expiry sweep, and with a
/// `[usrloc] working_mode_preset` that keeps a database the writer (which loads the table
/// once the migrations ran, writes changes behind, and in `sql-only` reads the other nodes'
/// changes back). The MI commands work in every mode.
fn start_usrloc(
    cfg: &Config,
    mi: &Arc<Mi>,
    db: &Arc<Db>,
    modules: &Modules,
) -> (Option<usrloc::persist::Writer>, Vec<tokio::task::JoinHandle<()>>) {
    let ul = modules.usrloc.clone();
    let tasks = vec![ul.start_sweeper()];
    let writer = usrloc::persist::start_writer(db.clone(), ul.clone(), &cfg.usrloc);
    let store = writer.as_ref().map_or_else(usrloc::persist::UsrlocStore::memory_only, |w| w.store());
    usrloc::mi::install(mi, ul, store);
    (writer, tasks)
}

/// The dialog table's background work: the lifetime sweep, and with `[dialog] db_mode`
/// 1–3 the load of the `dialog` table (once the migrations ran) and the writer. The MI
/// commands `dlg_db_sync` / `dlg_restore_db` work in every mode.
fn start_dialogs(
    cfg: &Config,
    mi: &Arc<Mi>,
    db: &Arc<Db>,
    modules: &Modules,
) -> (Option<dialog::persist::Writer>, Vec<tokio::task::JoinHandle<()>>) {
    let dialogs = modules.dialogs.clone();
    let mut tasks = vec![dialogs.start_sweeper()];
    let writer = dialog::persist::start_writer(db.clone(), dialogs.clone(), &cfg.dialog);
    let store = match &writer {
        Some(w) => w.store(),
        None => dialog::persist::DialogStore::new(db.clone(), dialogs, &cfg.dialog.table_name),
    };
    dialog::mi::install_db(mi, store.clone());
    if writer.is_some() {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            // In-dialog requests that come before this finishes are routed by their Route
            // set as usual; only the dialog's own bookkeeping (profiles, lifetime) waits.
            db.wait_ready().await;
            let policy = crate::db::RetryPolicy { stop_on_permanent: true, ..Default::default() };
            if let Err(e) = db.retry("restoring dialogs", &policy, || store.restore()).await {
                tracing::error!(error = %e, "dialogs not restored from the database");
            }
        }));
    }
    (writer, tasks)
}

/// Every dispatcher state change (probe, `ds_mark_dst`, `ds_set_state`) is logged and raises
/// `event_route_E_DISPATCHER_STATUS`, on a task of its own: the change may come from inside
/// a script function, and a hook is not run from inside another.
fn announce_state_changes(ds: &dispatcher::Dispatcher, proxy: &Arc<Proxy>) {
    let proxy = Arc::downgrade(proxy);
    ds.on_state_change(move |change| {
        let (Some(proxy), Ok(rt)) = (proxy.upgrade(), tokio::runtime::Handle::try_current()) else { return };
        let change = change.clone();
        rt.spawn(async move { crate::proxy::probe::announce(&proxy, &change) });
    });
}

/// Every load-balancer status change (probe, `lb_disable_dst`, `lb_status`) raises
/// `event_route_E_LOAD_BALANCER_STATUS`, on a task of its own for the same reason as the
/// dispatcher's (the change may come from inside a script function).
fn announce_lb_changes(lb: &load_balancer::LoadBalancer, proxy: &Arc<Proxy>) {
    let proxy = Arc::downgrade(proxy);
    lb.on_status_change(move |change| {
        let (Some(proxy), Ok(rt)) = (proxy.upgrade(), tokio::runtime::Handle::try_current()) else { return };
        let change = change.clone();
        rt.spawn(async move { crate::proxy::probe::announce_lb(&proxy, &change) });
    });
}

/// `[dispatcher] persistent_state`: a destination's new state is written to the table's
/// `state` column (OpenSIPS flushes it the same way), so a restart or the other node of a
/// pair starts from it. Off the routing path, retried while the database is away; the task
/// writes, one at a time, the state the destination has when it runs, so changes that come
/// close together still leave the latest one.
fn persist_state_changes(ds: &Arc<dispatcher::Dispatcher>, db: Arc<Db>) {
    if !ds.persistent_state() {
        return;
    }
    let weak = Arc::downgrade(ds);
    let table = ds.table_name().to_string();
    // One write at a time: each reads the state it writes while holding the lock, so the
    // last write is of the latest state even when changes come close together.
    let writing = Arc::new(tokio::sync::Mutex::new(()));
    ds.on_state_change(move |change| {
        let (Some(ds), Ok(rt)) = (weak.upgrade(), tokio::runtime::Handle::try_current()) else { return };
        let (db, table, setid, uri) = (db.clone(), table.clone(), change.setid, change.uri.clone());
        let writing = writing.clone();
        rt.spawn(async move {
            let _turn = writing.lock().await;
            let policy = crate::db::RetryPolicy {
                initial: Duration::from_secs(1),
                max_delay: Duration::from_secs(30),
                max_attempts: Some(10),
                stop_on_permanent: true,
            };
            let what = format!("saving the state of {uri} (set {setid})");
            let res = db
                .retry(&what, &policy, || {
                    let now = ds.destinations().into_iter().find(|d| d.setid == setid && d.uri == uri).map(|d| d.state);
                    let (db, table, uri) = (db.clone(), table.clone(), uri.clone());
                    async move {
                        let Some(state) = now else { return Ok(0) };
                        dispatcher::store::set_state(&db, &table, setid, &uri, state.to_db()).await
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "dispatcher state not saved");
            }
        });
    });
}

/// The first load of the dispatcher sets: retried with backoff while the database is
/// unreachable (routing meanwhile finds the sets empty, and `ds_select_dst` answers -1).
async fn load_dispatcher(ds: Arc<dispatcher::Dispatcher>, loader: dispatcher::DsLoader) {
    load_with_backoff(
        "dispatcher sets",
        || ds.reload(&loader, false),
        |r| tracing::info!(sets = r.sets, destinations = r.destinations, "dispatcher sets loaded"),
    )
    .await;
}

/// What `ds_reload` (and the load at start) reads the `dispatcher` table with: the store's
/// SQL on the configured database, once it is migrated.
fn dispatcher_loader(cfg: &Config, db: Arc<Db>) -> dispatcher::DsLoader {
    table_loader(db, cfg.dispatcher.table_name.clone(), |db, table| async move {
        dispatcher::store::load(&db, &table).await
    })
}

/// The first load of the load-balancing destinations, retried with backoff like the
/// dispatcher's (meanwhile `lb_start` finds no resource and answers -4).
async fn load_lb(lb: Arc<load_balancer::LoadBalancer>, loader: load_balancer::LbLoader) {
    load_with_backoff(
        "load_balancer destinations",
        || lb.reload(&loader),
        |r| tracing::info!(destinations = r.destinations, groups = r.groups, "load_balancer destinations loaded"),
    )
    .await;
}

/// What `lb_reload` (and the load at start) reads the `load_balancer` table with.
fn load_balancer_loader(cfg: &Config, db: Arc<Db>) -> load_balancer::LbLoader {
    table_loader(db, cfg.load_balancer.table_name.clone(), |db, table| async move {
        load_balancer::store::load(&db, &table).await
    })
}

/// The subscribers: loaded at start (retried with backoff like the dispatcher's; meanwhile
/// `www_authorize` finds no user and answers -1), then read again every `[auth]
/// reload_interval` seconds so rows another node added are seen here. A failed reload keeps
/// the subscribers in use.
async fn load_auth(auth: Arc<auth::Auth>, loader: auth::SubscriberLoader) {
    load_with_backoff(
        "subscribers",
        || auth.reload(&loader),
        |n| tracing::info!(subscribers = n, tables = ?auth.tables(), "subscribers loaded"),
    )
    .await;
    let every = auth.reload_interval();
    if every == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match auth.reload(&loader).await {
            Ok(n) => tracing::debug!(subscribers = n, "subscribers reloaded"),
            Err(e) => tracing::warn!(error = %e, "subscribers not reloaded; the loaded ones stay in use"),
        }
    }
}

/// What `auth_reload` (and the loads at start and every `reload_interval`) read the
/// subscriber tables with: every table of `[auth] tables`, once the database is migrated.
fn auth_loader(auth: &auth::Auth, db: Arc<Db>) -> auth::SubscriberLoader {
    let tables = auth.tables().to_vec();
    Arc::new(move || {
        let (db, tables) = (db.clone(), tables.clone());
        Box::pin(async move {
            if tokio::time::timeout(db.timeout(), db.wait_ready()).await.is_err() {
                return Err(format!("the database is not ready ({})", db.url()));
            }
            let mut out = Vec::with_capacity(tables.len());
            for table in tables {
                let rows = auth::store::load(&db, &table).await.map_err(|e| e.to_string())?;
                out.push((table, rows));
            }
            Ok(out)
        })
    })
}

/// Runs `load` until it succeeds, pausing 1 s doubling to 30 s after each failure (logged
/// as "`what` not loaded"); `loaded` logs the report of the load that succeeded.
async fn load_with_backoff<R, Fut>(what: &str, mut load: impl FnMut() -> Fut, loaded: impl FnOnce(R))
where
    Fut: std::future::Future<Output = Result<R, String>>,
{
    let mut pause = Duration::from_secs(1);
    loop {
        match load().await {
            Ok(r) => {
                loaded(r);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "{what} not loaded");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A module's table loader (a `DsLoader`, an `LbLoader`): `load(db, table)` once the
/// database is migrated. A database still being migrated (or gone for good) fails the load,
/// which keeps the rows in use, rather than leaving a reload waiting.
fn table_loader<T, F, Fut>(
    db: Arc<Db>,
    table: String,
    load: F,
) -> Arc<dyn Fn() -> mi::BoxFuture<Result<Vec<T>, String>> + Send + Sync>
where
    T: 'static,
    F: Fn(Arc<Db>, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<T>, DbError>> + Send + 'static,
{
    Arc::new(move || {
        let (table, db) = (table.clone(), db.clone());
        let fut = load(db.clone(), table);
        Box::pin(async move {
            if tokio::time::timeout(db.timeout(), db.wait_ready()).await.is_err() {
                return Err(format!("the database is not ready ({})", db.url()));
            }
            fut.await.map_err(|e| e.to_string())
        })
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
    let running = start(&cfg, from_file).await?;
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
    let db = running.db.clone();
    if let Some(writer) = &running.dialog_writer {
        // db_mode 3's only write and db_mode 2's last period; bounded, so a database that
        // is away does not hold the stop up for long.
        let limit = db.timeout().saturating_mul(4).max(Duration::from_secs(10));
        match tokio::time::timeout(limit, writer.flush()).await {
            Ok(Ok(rows)) => tracing::info!(rows, "dialogs written to the database"),
            Ok(Err(e)) => tracing::warn!(error = %e, "dialogs not written to the database at shutdown"),
            Err(_) => {
                tracing::warn!(after = ?limit, "dialogs not written to the database at shutdown: no answer in time")
            }
        }
    }
    if let Some(writer) = &running.usrloc_writer {
        // write-back's last period, and whatever write-through still had queued.
        let limit = db.timeout().saturating_mul(4).max(Duration::from_secs(10));
        match tokio::time::timeout(limit, writer.flush()).await {
            Ok(Ok(rows)) => tracing::info!(rows, "registrations written to the database"),
            Ok(Err(e)) => tracing::warn!(error = %e, "registrations not written to the database at shutdown"),
            Err(_) => {
                tracing::warn!(after = ?limit, "registrations not written to the database at shutdown: no answer in time")
            }
        }
    }
    if let Some(ha) = &running.ha {
        // After the writers: the peer that takes over reads what they wrote.
        match tokio::time::timeout(Duration::from_secs(2), ha.leave()).await {
            Ok(Ok(())) => tracing::info!("ha: VIP handed over"),
            Ok(Err(e)) => tracing::warn!(error = %e, "ha: VIP not handed over"),
            Err(_) => tracing::warn!("ha: VIP hand-over timed out"),
        }
    }
    drop(running);
    // SQLite folds its write-ahead log back into the file; a server gets a clean goodbye.
    let _ = tokio::time::timeout(Duration::from_secs(2), db.close()).await;
    Ok(())
}
