//! What a database operation can fail with, and whether trying again can help.

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    /// `[db] url` names no backend siprox knows, or the driver refuses its options.
    #[error("[db] url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// No connection could be had: the server is down, unreachable or refuses us.
    #[error("database unavailable ({url}): {reason}")]
    Unavailable { url: String, reason: String },
    /// The operation took longer than `[db] timeout_ms`.
    #[error("{what}: no answer from the database within {after:?}")]
    Timeout { what: String, after: Duration },
    /// A table or column name that is not a plain SQL identifier (they are spliced into SQL).
    #[error("invalid SQL name {0:?}: want letters, digits and _ (optionally schema.table)")]
    InvalidName(String),
    /// A value the table cannot hold, or a row the code cannot read.
    #[error("{0}")]
    Invalid(String),
    /// The query failed.
    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    /// The migrations could not be applied.
    #[error("migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl DbError {
    /// True when the same operation may succeed later without anyone changing the
    /// configuration or the SQL: the server is down, restarting, overloaded, or a lock or
    /// deadlock got in the way.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unavailable { .. } | DbError::Timeout { .. } => true,
            DbError::Query { source, .. } => sqlx_transient(source),
            DbError::Migrate(m) => match m {
                sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                    sqlx_transient(e)
                }
                _ => false,
            },
            DbError::BadUrl { .. } | DbError::InvalidName(_) | DbError::Invalid(_) => false,
        }
    }
}

/// Connection trouble, or a server error code that means "try again".
pub(crate) fn sqlx_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_transient(my.number());
            }
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                pg_transient(&code)
            } else {
                sqlite_transient(&code)
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATE: connection exceptions (08…), shutting down or starting up
/// (57P01-57P03), too many connections, serialization failure, deadlock.
fn pg_transient(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
}

/// MySQL/MariaDB error numbers: too many connections, server shutdown, lock wait timeout,
/// deadlock, query interrupted, server gone away / lost connection.
fn mysql_transient(number: u16) -> bool {
    matches!(number, 1040 | 1053 | 1205 | 1213 | 1317 | 2006 | 2013)
}

/// SQLite result codes: SQLITE_BUSY and SQLITE_LOCKED with their extended forms.
fn sqlite_transient(code: &str) -> bool {
    matches!(code, "5" | "261" | "517" | "773" | "6" | "262" | "518")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(["08006", "57P03", "53300", "40P01"].iter().all(|c| pg_transient(c)));
        assert!(!["42P01", "42601", "23505", "3D000", "28P01"].iter().any(|c| pg_transient(c)));
        assert!([1040, 1205, 1213, 2006].iter().all(|&n| mysql_transient(n)));
        assert!(![1045, 1049, 1064, 1146].iter().any(|&n| mysql_transient(n)));
        assert!(["5", "517", "6", "262"].iter().all(|c| sqlite_transient(c)));
        assert!(!["1", "19", "2067", "14"].iter().any(|c| sqlite_transient(c)));
    }

    #[test]
    fn transient_kinds() {
        let down = DbError::Unavailable { url: "postgres://x".into(), reason: "refused".into() };
        assert!(down.is_transient());
        assert!(!DbError::InvalidName("a b".into()).is_transient());
        let q = DbError::Query { what: "load".into(), source: sqlx::Error::RowNotFound };
        assert!(!q.is_transient());
        let q = DbError::Query { what: "load".into(), source: sqlx::Error::PoolTimedOut };
        assert!(q.is_transient());
    }
}
