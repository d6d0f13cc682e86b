//! The `subscriber` table's SQL: OpenSIPS 3.x auth_db columns (table version 8), one
//! dialect per backend (`?` placeholders for SQLite and MySQL, `$n` for PostgreSQL).
//!
//! Every function runs through [`Db::run`] (bounded by `[db] timeout_ms`, counted in the
//! database's health). Table names come from configuration or the command line and are
//! checked with [`sql_name`] before they are spliced into SQL.

use super::Subscriber;
use crate::db::{fetch_all, mysql_int, pg_int, sql_name, Db, DbError, Pool};
use sqlx::Row;

/// OpenSIPS's default table.
pub const DEFAULT_TABLE: &str = "subscriber";

const COLUMNS: &str = "id, username, domain, password, email_address, ha1, ha1_sha256, ha1_sha512t256, rpid";

/// Every row of `table`, in id order.
///
/// # Errors
/// An invalid table name, or the query failed (see [`Db::run`]).
pub async fn load(db: &Db, table: &str) -> Result<Vec<Subscriber>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY id", sql_name(table)?);
    let decode = crate::db::RowDecoders { sqlite: sqlite_row, postgres: pg_row, mysql: mysql_row };
    fetch_all(db, &format!("loading {table}"), &sql, &decode).await
}

/// Adds `s` (its `id` is ignored) and returns the new id.
///
/// # Errors
/// An invalid table name, a duplicate (username, domain), or the query failed.
pub async fn insert(db: &Db, table: &str, s: &Subscriber) -> Result<i64, DbError> {
    let t = sql_name(table)?;
    let cols = "username, domain, password, email_address, ha1, ha1_sha256, ha1_sha512t256, rpid";
    let what = format!("adding {}@{} to {table}", s.username, s.domain);
    macro_rules! bind_all {
        ($q:expr) => {
            $q.bind(&s.username)
                .bind(&s.domain)
                .bind(&s.password)
                .bind(&s.email_address)
                .bind(&s.ha1)
                .bind(&s.ha1_sha256)
                .bind(&s.ha1_sha512t256)
                .bind(&s.rpid)
        };
    }
    db.run(&what, async {
        match db.pool() {
            Pool::Sqlite(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id");
                bind_all!(sqlx::query(&sql)).fetch_one(p).await?.try_get::<i64, _>(0)
            }
            Pool::Postgres(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id");
                let r = bind_all!(sqlx::query(&sql)).fetch_one(p).await?;
                pg_int(&r, "id")
            }
            Pool::MySql(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
                let done = bind_all!(sqlx::query(&sql)).execute(p).await?;
                i64::try_from(done.last_insert_id()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }
        }
    })
    .await
}

/// Removes `username@domain`; returns how many rows went (0 or 1).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete(db: &Db, table: &str, username: &str, domain: &str) -> Result<u64, DbError> {
    let t = sql_name(table)?;
    let what = format!("removing {username}@{domain} from {table}");
    db.run(&what, async {
        Ok(match db.pool() {
            Pool::Sqlite(p) => {
                let sql = format!("DELETE FROM {t} WHERE username = ? AND domain = ?");
                sqlx::query(&sql).bind(username).bind(domain).execute(p).await?.rows_affected()
            }
            Pool::Postgres(p) => {
                let sql = format!("DELETE FROM {t} WHERE username = $1 AND domain = $2");
                sqlx::query(&sql).bind(username).bind(domain).execute(p).await?.rows_affected()
            }
            Pool::MySql(p) => {
                let sql = format!("DELETE FROM {t} WHERE username = ? AND domain = ?");
                sqlx::query(&sql).bind(username).bind(domain).execute(p).await?.rows_affected()
            }
        })
    })
    .await
}

// ---------------------------------------------------------------- row decoding

/// The columns every backend decodes the same way (text; `email_address` and `rpid` may
/// be NULL in tables made by OpenSIPS's own scripts).
macro_rules! text_columns {
    ($r:expr, $id:expr) => {
        Subscriber {
            id: $id,
            username: $r.try_get("username")?,
            domain: $r.try_get("domain")?,
            password: $r.try_get::<Option<String>, _>("password")?.unwrap_or_default(),
            email_address: $r.try_get::<Option<String>, _>("email_address")?.unwrap_or_default(),
            ha1: $r.try_get::<Option<String>, _>("ha1")?.unwrap_or_default(),
            ha1_sha256: $r.try_get::<Option<String>, _>("ha1_sha256")?.unwrap_or_default(),
            ha1_sha512t256: $r.try_get::<Option<String>, _>("ha1_sha512t256")?.unwrap_or_default(),
            rpid: $r.try_get("rpid")?,
        }
    };
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<Subscriber, sqlx::Error> {
    Ok(text_columns!(r, r.try_get("id")?))
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<Subscriber, sqlx::Error> {
    Ok(text_columns!(r, pg_int(r, "id")?))
}

fn mysql_row(r: &sqlx::mysql::MySqlRow) -> Result<Subscriber, sqlx::Error> {
    Ok(text_columns!(r, mysql_int(r, "id")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_round_trip() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let mut a = Subscriber::with_password("alice", "example.com", "secret");
        a.rpid = Some("<sip:+1555@example.com>".into());
        let id = insert(&db, DEFAULT_TABLE, &a).await.unwrap();
        let rows = load(&db, DEFAULT_TABLE).await.unwrap();
        assert_eq!(rows, vec![Subscriber { id, ..a.clone() }]);
        assert!(insert(&db, DEFAULT_TABLE, &a).await.is_err(), "unique (username, domain)");
        let other = Subscriber::with_password("alice", "example.org", "x");
        insert(&db, DEFAULT_TABLE, &other).await.unwrap();
        assert_eq!(delete(&db, DEFAULT_TABLE, "alice", "example.com").await.unwrap(), 1);
        assert_eq!(delete(&db, DEFAULT_TABLE, "alice", "example.com").await.unwrap(), 0);
        assert_eq!(load(&db, DEFAULT_TABLE).await.unwrap().len(), 1);
        assert!(matches!(load(&db, "x; drop").await, Err(DbError::InvalidName(_))));
    }
}
