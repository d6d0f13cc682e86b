//! The database: one sqlx pool for the backend `[db] url` names, the migrations built into
//! the binary, and how the database is doing (docs/database.md).
//!
//! ```text
//! [db] url ─ Db::open ─ Pool::{Sqlite, Postgres, MySql}
//!                 │         └─ modules/*/store.rs run their SQL on it through Db::run
//!                 ├─ Db::migrate          migrations/<backend>/*.sql, embedded
//!                 ├─ retry_with_backoff   loads, reloads, writes: failures logged, counted, retried
//!                 └─ Db::status           DbStatus for the management interface (db_status)
//! ```
//!
//! Owns: connecting (SQLite creates its file; PostgreSQL and MySQL connect lazily, so a
//! database that is down never stops start-up), migrations, timeouts, the health counters,
//! the retry helper. Does not own any table's SQL: each module's `store.rs` holds its own.
//! Nothing here is on the routing path: script hooks read memory, and every database
//! operation runs in an async task beside the traffic.

mod error;
mod health;
pub mod migrate;
mod retry;
pub mod wait;

pub use error::DbError;
pub use health::{DbStatus, Health, LastError};
pub use retry::{retry_with_backoff, RetryPolicy};

use crate::config::DbConfig;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use std::collections::BTreeSet;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Which database server a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// `sqlite`, `postgres`, `mysql` (also the migrations/ folder names).
    pub fn name(self) -> &'static str {
        migrate::folder(self)
    }

    /// The backend a URL's scheme names: `sqlite:`, `postgres://` / `postgresql://`,
    /// `mysql://` / `mariadb://`.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::MySql),
            _ => None,
        }
    }
}

/// The connection pool, per backend. A store matches on it to run its SQL in the dialect
/// of that backend.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$p` bound to whichever pool `$pool` holds.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
            Pool::MySql($p) => $body,
        }
    };
}

/// How to open a [`Db`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// Longest wait for a connection, and again for an operation to finish.
    pub timeout: Duration,
    /// Connections in the pool (at least 1).
    pub max_connections: u32,
    /// SQLite: create the file when it does not exist (`siprox run`, `siprox migrate`).
    /// Off for `siprox ctl`, which should not leave an empty database where it was run.
    pub create: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { timeout: Duration::from_secs(5), max_connections: 4, create: true }
    }
}

impl DbOptions {
    /// `[db] timeout_ms` and `max_connections`.
    pub fn from_config(cfg: &DbConfig) -> DbOptions {
        DbOptions {
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            max_connections: cfg.max_connections.max(1),
            create: true,
        }
    }
}

/// A migration this process applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
}

/// The database of this process: its pool, its URL (password hidden) and its health.
pub struct Db {
    pool: Pool,
    backend: Backend,
    url: String,
    timeout: Duration,
    health: Health,
    ready: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).field("url", &self.url).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens `url` with the default options (5 s timeout, 4 connections, SQLite file
    /// created). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// See [`Db::open_with`].
    pub async fn open(url: &str) -> Result<Db, DbError> {
        Db::open_with(url, &DbOptions::default()).await
    }

    /// Opens `[db]` of a configuration.
    ///
    /// # Errors
    /// See [`Db::open_with`].
    pub async fn open_config(cfg: &DbConfig) -> Result<Db, DbError> {
        Db::open_with(&cfg.url, &DbOptions::from_config(cfg)).await
    }

    /// Opens `url`. SQLite (`sqlite://FILE`, relative to the working directory;
    /// `sqlite::memory:`) opens its file at once, creating it when `opts.create`.
    /// PostgreSQL and MySQL only check the URL: they connect on first use, so a server that
    /// is down does not stop the caller.
    ///
    /// # Errors
    /// An unknown scheme or options the driver refuses ([`DbError::BadUrl`]); a SQLite file
    /// that cannot be opened ([`DbError::Unavailable`]).
    pub async fn open_with(url: &str, opts: &DbOptions) -> Result<Db, DbError> {
        let shown = redact_url(url);
        let bad = |reason: String| DbError::BadUrl { url: shown.clone(), reason };
        let backend = Backend::from_url(url).ok_or_else(|| {
            bad("unknown database; want sqlite://FILE, postgres://USER@HOST/DB or mysql://USER@HOST/DB".into())
        })?;
        let max = opts.max_connections.max(1);
        let pool = match backend {
            Backend::Sqlite => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let mut o = SqliteConnectOptions::from_str(url)
                    .map_err(|e| bad(e.to_string()))?
                    .create_if_missing(opts.create)
                    .busy_timeout(opts.timeout)
                    .foreign_keys(true);
                let mut p = SqlitePoolOptions::new().acquire_timeout(opts.timeout);
                if memory {
                    // One database per pool: it lives as long as a connection does.
                    p = p.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
                } else {
                    // WAL with synchronous=NORMAL: a commit is safe from a crash of the
                    // process (the dialog writer's case) without an fsync per commit; only a
                    // power cut can lose the last commits.
                    o = o.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
                    p = p.max_connections(max);
                }
                let pool = p.connect_with(o).await.map_err(|e| DbError::Unavailable {
                    url: shown.clone(),
                    reason: sqlite_open_reason(&e, opts.create),
                })?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let o = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?.application_name("siprox");
                Pool::Postgres(
                    PgPoolOptions::new().max_connections(max).acquire_timeout(opts.timeout).connect_lazy_with(o),
                )
            }
            Backend::MySql => {
                let o = MySqlConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
                Pool::MySql(
                    MySqlPoolOptions::new().max_connections(max).acquire_timeout(opts.timeout).connect_lazy_with(o),
                )
            }
        };
        let (ready, _) = tokio::sync::watch::channel(false);
        Ok(Db { pool, backend, url: shown, timeout: opts.timeout, health: Health::default(), ready })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for a store's SQL (run it through [`Db::run`] so it is timed and counted).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The URL with its password replaced by `***`, for logs and the management interface.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// True once this process applied (or found applied) the migrations.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until [`Db::is_ready`]: a loader that starts with the proxy waits here while
    /// the migrations are retried in the background (a PostgreSQL or MySQL that was down).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Marks the tables as there (for a caller that knows better, e.g. tests).
    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// A snapshot for the management interface.
    pub fn status(&self) -> DbStatus {
        let h = &self.health;
        let (pool_size, pool_idle) = with_pool!(&self.pool, p => (p.size(), p.num_idle()));
        DbStatus {
            backend: self.backend.name(),
            url: self.url.clone(),
            ready: self.is_ready(),
            up: h.up(),
            queries_ok: h.queries_ok(),
            queries_failed: h.queries_failed(),
            retries: h.retries(),
            last_ok_at: h.last_ok_at(),
            last_error: h.last_error(),
            pool_size,
            pool_idle,
        }
    }

    /// Runs one database operation (`fut`, built on [`Db::pool`]): bounded by twice the
    /// timeout (a connection, then the query), counted in [`Db::health`], its error
    /// named after `what`.
    ///
    /// # Errors
    /// [`DbError::Unavailable`] when no connection could be had (with the reason a direct
    /// connection attempt gives), [`DbError::Timeout`], or [`DbError::Query`].
    pub async fn run<T, Fut>(&self, what: &str, fut: Fut) -> Result<T, DbError>
    where
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let limit = self.timeout.saturating_mul(2);
        let result = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(what, e).await),
            Err(_) => Err(DbError::Timeout { what: what.to_string(), after: limit }),
        };
        self.account(&result);
        result
    }

    /// [`retry_with_backoff`] counting into this database's health.
    ///
    /// # Errors
    /// The last attempt's error when the policy gives up.
    pub async fn retry<T, F, Fut>(&self, what: &str, policy: &RetryPolicy, op: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        retry_with_backoff(what, policy, &self.health, op).await
    }

    /// Applies the migrations of this backend that the database lacks; returns those it
    /// applied (none when it was up to date). Marks the database ready on success.
    ///
    /// # Errors
    /// [`DbError::Unavailable`] when the server cannot be reached; [`DbError::Migrate`]
    /// when a migration fails (bad SQL, an applied migration that was edited, a dirty one).
    pub async fn migrate(&self) -> Result<Vec<Applied>, DbError> {
        let result = self.migrate_inner().await;
        self.account(&result);
        if result.is_ok() {
            self.ready.send_replace(true);
        }
        result
    }

    async fn migrate_inner(&self) -> Result<Vec<Applied>, DbError> {
        let migrator = migrate::migrator(self.backend).await.map_err(DbError::Migrate)?;
        let before = with_pool!(&self.pool, p => applied_versions(p).await);
        let before = self.migrate_error(before).await?;
        let run = with_pool!(&self.pool, p => migrator.run(p).await);
        self.migrate_error(run).await?;
        Ok(migrator
            .iter()
            .filter(|m| !before.contains(&m.version))
            .map(|m| Applied { version: m.version, description: m.description.to_string() })
            .collect())
    }

    /// A migration error, with "no connection" told apart (it is worth waiting for).
    async fn migrate_error<T>(&self, r: Result<T, sqlx::migrate::MigrateError>) -> Result<T, DbError> {
        match r {
            Ok(v) => Ok(v),
            Err(sqlx::migrate::MigrateError::Execute(e)) if is_connect_error(&e) => {
                Err(self.classify("migrations", e).await)
            }
            Err(e) => Err(DbError::Migrate(e)),
        }
    }

    /// Closes every connection (SQLite folds its write-ahead log back into the file).
    pub async fn close(&self) {
        with_pool!(&self.pool, p => p.close().await);
    }

    fn account<T>(&self, result: &Result<T, DbError>) {
        match result {
            Ok(_) => self.health.record_ok(),
            Err(e) => self.health.record_failure(&e.to_string()),
        }
    }

    async fn classify(&self, what: &str, e: sqlx::Error) -> DbError {
        if matches!(e, sqlx::Error::PoolTimedOut) {
            return DbError::Unavailable { url: self.url.clone(), reason: self.why_unavailable().await };
        }
        if is_connect_error(&e) {
            return DbError::Unavailable { url: self.url.clone(), reason: e.to_string() };
        }
        DbError::Query { what: what.to_string(), source: e }
    }

    /// The pool only says "timed out" when the server refuses connections; one direct
    /// attempt tells why (refused, unknown host, wrong password…).
    async fn why_unavailable(&self) -> String {
        let probe = async {
            match &self.pool {
                Pool::Sqlite(p) => p.connect_options().connect().await.map(drop),
                Pool::Postgres(p) => p.connect_options().connect().await.map(drop),
                Pool::MySql(p) => p.connect_options().connect().await.map(drop),
            }
        };
        let wait = self.timeout.min(Duration::from_secs(2));
        match tokio::time::timeout(wait, probe).await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => format!("no free connection within {:?} (pool busy)", self.timeout),
            Err(_) => format!("no connection within {:?}", self.timeout),
        }
    }
}

/// Errors that mean the connection itself failed (not the statement).
fn is_connect_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_))
}

/// What to say when a SQLite file cannot be opened.
fn sqlite_open_reason(e: &sqlx::Error, create: bool) -> String {
    let s = e.to_string();
    if !create && s.contains("unable to open database file") {
        format!("{s} (no such database file: start the proxy or run `siprox migrate` first)")
    } else {
        s
    }
}

async fn applied_versions<DB>(pool: &sqlx::Pool<DB>) -> Result<BTreeSet<i64>, sqlx::migrate::MigrateError>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate;
    let mut conn = pool.acquire().await?;
    // Under the migrator's own lock: two nodes of a pair starting together against an
    // empty database would otherwise both create the table (PostgreSQL refuses the second
    // CREATE TABLE IF NOT EXISTS with a duplicate-key error).
    conn.lock().await?;
    let listed = async {
        conn.ensure_migrations_table().await?;
        conn.list_applied_migrations().await
    }
    .await;
    conn.unlock().await?;
    Ok(listed?.into_iter().map(|m| m.version).collect())
}

/// Migrates at start-up, as `siprox run` does. SQLite: now, and any error is fatal.
/// PostgreSQL / MySQL: one attempt bounded by twice `[db] timeout_ms`; when the server
/// cannot be reached (or does not answer in time) start-up goes on and the migrations are
/// retried in a background task (1 s doubling to 30 s) whose handle is returned. A
/// migration that fails on a reachable server (bad SQL, an edited migration) is fatal.
///
/// # Errors
/// The migration error that should stop start-up.
pub async fn migrate_on_start(db: &Arc<Db>) -> Result<Option<tokio::task::JoinHandle<()>>, DbError> {
    let first = if db.backend == Backend::Sqlite {
        db.migrate().await
    } else {
        let limit = db.timeout.saturating_mul(2);
        match tokio::time::timeout(limit, db.migrate()).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Timeout { what: "migrations".into(), after: limit }),
        }
    };
    match first {
        Ok(applied) => {
            log_applied(db, &applied);
            Ok(None)
        }
        Err(e) if db.backend != Backend::Sqlite && e.is_transient() => {
            tracing::warn!(url = %db.url, error = %e, "database not reachable at start-up; SIP starts now, the migrations are retried in the background");
            let db = db.clone();
            Ok(Some(tokio::spawn(async move {
                let policy = RetryPolicy {
                    initial: Duration::from_secs(1),
                    max_delay: Duration::from_secs(30),
                    max_attempts: None,
                    stop_on_permanent: true,
                };
                match db.retry("migrations", &policy, || db.migrate()).await {
                    Ok(applied) => log_applied(&db, &applied),
                    Err(e) => {
                        tracing::error!(url = %db.url, error = %e, "migrations failed: the database stays unused until this is fixed (`siprox migrate` shows it)")
                    }
                }
            })))
        }
        Err(e) => Err(e),
    }
}

fn log_applied(db: &Db, applied: &[Applied]) {
    if applied.is_empty() {
        tracing::info!(url = %db.url, "database ready, schema up to date");
    }
    for m in applied {
        tracing::info!(url = %db.url, version = m.version, migration = %m.description, "migration applied");
    }
}

/// `scheme://user:***@host/db?password=***`: the URL without its secrets.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `name` when it is safe to splice into SQL as a table or column name: letters, digits
/// and `_`, not starting with a digit, optionally `schema.table`.
///
/// # Errors
/// [`DbError::InvalidName`].
pub fn sql_name(name: &str) -> Result<&str, DbError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| part_ok(p)) {
        Ok(name)
    } else {
        Err(DbError::InvalidName(name.to_string()))
    }
}

/// How a store reads one of its rows on each backend.
pub struct RowDecoders<T> {
    pub sqlite: fn(&sqlx::sqlite::SqliteRow) -> Result<T, sqlx::Error>,
    pub postgres: fn(&sqlx::postgres::PgRow) -> Result<T, sqlx::Error>,
    pub mysql: fn(&sqlx::mysql::MySqlRow) -> Result<T, sqlx::Error>,
}

/// A query being built for each backend, as [`RowBinders`] bind a row into it.
pub type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
pub type MySqlQuery<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;

/// How a store binds one of its rows into its upsert on each backend.
pub struct RowBinders<T> {
    pub sqlite: for<'q> fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
    pub postgres: for<'q> fn(PgQuery<'q>, &'q T) -> PgQuery<'q>,
    pub mysql: for<'q> fn(MySqlQuery<'q>, &'q T) -> MySqlQuery<'q>,
}

/// What one write-behind transaction does to a table, in this order.
pub struct Batch<'a, T> {
    /// Delete every row first (a `replace_all`: `dlg_db_sync`, `ul_sync`).
    pub clear: bool,
    /// Rows upserted with the store's `upsert` statement.
    pub saves: &'a [T],
    /// Keys of the rows deleted.
    pub removes: &'a [i64],
}

/// Runs `batch` on `table` in one transaction: `upsert` (the store's statement for this
/// backend) bound by `bind` for each save, `DELETE … WHERE key = ?` for each remove.
/// Dropping an uncommitted transaction rolls it back (an error, or [`Db::run`]'s timeout), so
/// the table is left as it was on any failure; a reader (the other node of a pair) sees the
/// old rows or the new ones, never half of them.
///
/// # Errors
/// An invalid table or key name, a value the columns cannot hold, or a query failed.
pub async fn write_batch<T>(
    db: &Db,
    table: &str,
    key: &str,
    upsert: &str,
    what: &str,
    batch: Batch<'_, T>,
    bind: &RowBinders<T>,
) -> Result<(), DbError> {
    let (t, k) = (sql_name(table)?, sql_name(key)?);
    let clear = format!("DELETE FROM {t}");
    let delete = match db.pool() {
        Pool::Postgres(_) => format!("DELETE FROM {t} WHERE {k} = $1"),
        _ => format!("DELETE FROM {t} WHERE {k} = ?"),
    };
    macro_rules! in_tx {
        ($p:expr, $bind:expr) => {{
            let mut tx = $p.begin().await?;
            if batch.clear {
                sqlx::query(&clear).execute(&mut *tx).await?;
            }
            for row in batch.saves {
                ($bind)(sqlx::query(upsert), row).execute(&mut *tx).await?;
            }
            for id in batch.removes {
                sqlx::query(&delete).bind(*id).execute(&mut *tx).await?;
            }
            tx.commit().await
        }};
    }
    db.run(what, async {
        match db.pool() {
            Pool::Sqlite(p) => in_tx!(p, bind.sqlite),
            Pool::Postgres(p) => in_tx!(p, bind.postgres),
            Pool::MySql(p) => in_tx!(p, bind.mysql),
        }
    })
    .await
}

/// Every row `sql` (a `SELECT`) returns, each read by `decode`, through [`Db::run`]
/// (`what` names the operation in errors and health).
///
/// # Errors
/// The query failed or a row could not be read (see [`Db::run`]).
pub async fn fetch_all<T>(db: &Db, what: &str, sql: &str, decode: &RowDecoders<T>) -> Result<Vec<T>, DbError> {
    db.run(what, async {
        match db.pool() {
            Pool::Sqlite(p) => sqlx::query(sql).fetch_all(p).await?.iter().map(decode.sqlite).collect(),
            Pool::Postgres(p) => sqlx::query(sql).fetch_all(p).await?.iter().map(decode.postgres).collect(),
            Pool::MySql(p) => sqlx::query(sql).fetch_all(p).await?.iter().map(decode.mysql).collect(),
        }
    })
    .await
}

/// A PostgreSQL integer column as `i64`: INTEGER (32 bits), or BIGINT.
///
/// # Errors
/// The column is missing or of another type.
pub fn pg_int(r: &sqlx::postgres::PgRow, col: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    r.try_get::<i32, _>(col).map(i64::from).or_else(|_| r.try_get::<i64, _>(col))
}

/// A MySQL integer column as `i64`: signed, or UNSIGNED as in OpenSIPS's MySQL schema.
///
/// # Errors
/// The column is missing, of another type, or beyond `i64`.
pub fn mysql_int(r: &sqlx::mysql::MySqlRow, col: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    r.try_get::<i64, _>(col).or_else(|_| {
        let u = r.try_get::<u64, _>(col)?;
        i64::try_from(u).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    })
}

/// Removes the rows of `table` whose integer column `column` is `key` (a primary key, so 0
/// or 1 row); returns how many rows went. `what` names the operation in errors and health.
/// Both names come from configuration or a store and are checked with [`sql_name`].
///
/// # Errors
/// An invalid table or column name, or the query failed (see [`Db::run`]).
pub async fn delete_by_key(db: &Db, table: &str, column: &str, key: i64, what: &str) -> Result<u64, DbError> {
    let (t, c) = (sql_name(table)?, sql_name(column)?);
    let sql = match db.pool() {
        Pool::Postgres(_) => format!("DELETE FROM {t} WHERE {c} = $1"),
        _ => format!("DELETE FROM {t} WHERE {c} = ?"),
    };
    db.run(what, async {
        Ok(with_pool!(db.pool(), p => sqlx::query(&sql).bind(key).execute(p).await?.rows_affected()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite://siprox.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("PostgreSQL://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://root@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::from_url("mariadb://root@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::from_url("redis://h"), None);
        assert_eq!(Backend::from_url("siprox.db"), None);
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(redact_url("postgres://u:s3cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("mysql://root@127.0.0.1/test"), "mysql://root@127.0.0.1/test");
        assert_eq!(redact_url("mysql://a:b:c@h"), "mysql://a:***@h");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("sqlite://siprox.db"), "sqlite://siprox.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn sql_names() {
        for ok in ["dispatcher", "ds_2", "public.dispatcher", "_x"] {
            assert!(sql_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1x", "a b", "a;drop table x", "a.b.c", "x\"", "a-b", "a."] {
            assert!(sql_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn memory_database_migrates_and_counts() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        assert!(!db.is_ready());
        let applied = db.migrate().await.unwrap();
        assert_eq!(applied.first().map(|a| a.version), Some(1));
        assert!(db.is_ready());
        assert!(db.migrate().await.unwrap().is_empty(), "a second run applies nothing");
        let st = db.status();
        assert_eq!((st.backend, st.up, st.queries_ok), ("sqlite", Some(true), 2));
        db.wait_ready().await;
    }

    #[tokio::test]
    async fn delete_by_key_checks_both_names() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        assert_eq!(delete_by_key(&db, "dispatcher", "id", 1, "removing id 1").await.unwrap(), 0);
        let e = delete_by_key(&db, "dispatcher", "id = id OR 1", 1, "x").await.unwrap_err();
        assert!(matches!(e, DbError::InvalidName(ref n) if n == "id = id OR 1"), "{e}");
        let e = delete_by_key(&db, "x; drop", "id", 1, "x").await.unwrap_err();
        assert!(matches!(e, DbError::InvalidName(_)), "{e}");
    }

    #[tokio::test]
    async fn unknown_scheme_is_a_bad_url() {
        let e = Db::open("redis://127.0.0.1").await.unwrap_err();
        assert!(matches!(e, DbError::BadUrl { .. }), "{e}");
    }
}
