//! The migrations of each backend, built into the binary from migrations/{sqlite,postgres,mysql}/.
//!
//! Files are named `<VERSION>_<DESCRIPTION>.sql` (sqlx's convention) and applied in version
//! order; sqlx records each in `_sqlx_migrations` with a checksum, so a migration runs once
//! and an applied one must never be edited (add a new file instead). Each file is listed
//! below with `include_str!` (no proc-macro: the build stays light); tests/db.rs fails when
//! a file of a folder is missing from its list.

use super::Backend;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;

/// One migration file: its name and its SQL.
pub type EmbeddedFile = (&'static str, &'static str);

macro_rules! embed {
    ($backend:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../migrations/", $backend, "/", $file)))),*]
    };
}

const SQLITE: &[EmbeddedFile] = embed!("sqlite": "0001_version_dispatcher.sql", "0002_dialog.sql", "0003_load_balancer.sql",
    "0004_location.sql", "0005_subscriber.sql");
const POSTGRES: &[EmbeddedFile] = embed!("postgres": "0001_version_dispatcher.sql", "0002_dialog.sql", "0003_load_balancer.sql",
    "0004_location.sql", "0005_subscriber.sql");
const MYSQL: &[EmbeddedFile] = embed!("mysql": "0001_version_dispatcher.sql", "0002_dialog.sql", "0003_load_balancer.sql",
    "0004_location.sql", "0005_subscriber.sql");

/// The files built in for `backend`, in the order of their names.
pub fn embedded(backend: Backend) -> &'static [EmbeddedFile] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
        Backend::MySql => MYSQL,
    }
}

/// The folder under migrations/ that holds `backend`'s files.
pub fn folder(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::MySql => "mysql",
    }
}

/// A migration as sqlx sees it, from its file name (`0001_version_dispatcher.sql` ->
/// version 1, "version dispatcher").
fn parse(name: &'static str, sql: &'static str) -> Result<Migration, String> {
    let stem = name.strip_suffix(".sql").ok_or_else(|| format!("{name}: not a .sql file"))?;
    let (version, description) = stem.split_once('_').ok_or_else(|| format!("{name}: want <VERSION>_<NAME>.sql"))?;
    let version: i64 = version.parse().map_err(|_| format!("{name}: the version is not a number"))?;
    if version <= 0 {
        return Err(format!("{name}: the version must be positive"));
    }
    let no_tx = sql.trim_start().starts_with("-- no-transaction");
    Ok(Migration::new(
        version,
        Cow::Owned(description.replace('_', " ")),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        no_tx,
    ))
}

/// The embedded files of one backend as a sqlx migration source.
#[derive(Debug)]
struct Embedded(&'static [EmbeddedFile]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_core_compat::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(self.0.len());
            for (name, sql) in self.0 {
                out.push(parse(name, sql)?);
            }
            out.sort_by_key(|m| m.version);
            Ok(out)
        })
    }
}

/// Boxed futures as sqlx's trait spells them (`futures_core::future::BoxFuture`).
mod futures_core_compat {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// The migrator of `backend`. An applied migration this binary does not know (a newer node
/// migrated the shared database) is tolerated, so an older node of a pair still starts.
pub async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    let mut m = Migrator::new(Embedded(embedded(backend))).await?;
    m.set_ignore_missing(true);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let m = parse("0001_version_dispatcher.sql", "CREATE TABLE x (a INT);").unwrap();
        assert_eq!((m.version, m.description.as_ref(), m.no_tx), (1, "version dispatcher", false));
        assert!(parse("x.sql", "").is_err());
        assert!(parse("abc_x.sql", "").is_err());
        assert!(parse("0000_x.sql", "").is_err());
        assert!(parse("0002_x.sql", "-- no-transaction\nCREATE INDEX …").unwrap().no_tx);
    }

    #[tokio::test]
    async fn every_backend_resolves() {
        for b in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
            let m = migrator(b).await.unwrap();
            assert_eq!(m.iter().count(), embedded(b).len(), "{b:?}");
        }
    }
}
