//! Databases for the tests that run on every backend: SQLite always (a temp file),
//! PostgreSQL (`SIPROX_TEST_PG`) and MySQL/MariaDB (`SIPROX_TEST_MYSQL`) when set, else a loud
//! SKIPPED banner. Each server test creates a database of its own
//! (`siprox_t_<pid>_<n>`) and drops it at the end, so tests in parallel never meet.

use super::TempDir;
use siprox::db::{Backend, Db};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub struct TestDb {
    pub url: String,
    dir: TempDir,
    /// Server databases: the URL to administer the server with, the database's name.
    server: Option<(Backend, String, String)>,
}

impl TestDb {
    pub fn sqlite(label: &str) -> TestDb {
        let dir = TempDir::new(label);
        let url = format!("sqlite://{}", dir.join("siprox.db").display());
        TestDb { url, dir, server: None }
    }

    pub fn server(backend: Backend, label: &str) -> Option<TestDb> {
        let var = if backend == Backend::Postgres { "SIPROX_TEST_PG" } else { "SIPROX_TEST_MYSQL" };
        let admin = match std::env::var(var) {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n**************************************************************\n\
                     SKIPPED: {var} not set: {label} did not run on {}\n\
                     (.ci/run exports it; e.g. {var}={})\n\
                     **************************************************************\n",
                    backend.name(),
                    match backend {
                        Backend::Postgres => "postgres://postgres@127.0.0.1:5432/test",
                        _ => "mysql://root@127.0.0.1:3306/test",
                    }
                );
                return None;
            }
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("siprox_t_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let (scheme, rest) = admin.split_once("://").expect("a URL with ://");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
        let url = format!("{scheme}://{}/{name}{query}", &rest[..end]);
        rt().block_on(admin_exec(backend, &admin, &format!("CREATE DATABASE {name}")))
            .unwrap_or_else(|e| panic!("{var}={admin}: cannot create database {name}: {e}"));
        Some(TestDb { url, dir: TempDir::new(label), server: Some((backend, admin, name)) })
    }

    pub fn backend(&self) -> Backend {
        self.server.as_ref().map_or(Backend::Sqlite, |(b, _, _)| *b)
    }

    /// A temp dir of this test's own (the SQLite file's), for configs and scripts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database, opened but not migrated.
    pub async fn connect(&self) -> Db {
        Db::open(&self.url).await.unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// The database, opened and migrated.
    pub async fn open(&self) -> Arc<Db> {
        let db = self.connect().await;
        db.migrate().await.unwrap_or_else(|e| panic!("migrate {}: {e}", self.url));
        Arc::new(db)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((backend, admin, name)) = self.server.clone() else { return };
        let dropped = std::thread::spawn(move || {
            let sql = match backend {
                Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            rt().block_on(admin_exec(backend, &admin, &sql))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.url);
        }
    }
}

async fn admin_exec(backend: Backend, admin: &str, sql: &str) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        let pool = sqlx::PgPool::connect(admin).await?;
        sqlx::query(sql).execute(&pool).await?;
        pool.close().await;
    } else {
        let pool = sqlx::MySqlPool::connect(admin).await?;
        sqlx::query(sql).execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}
