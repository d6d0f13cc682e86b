//! The dispatcher table's SQL: OpenSIPS 3.x columns (spec §6.1, table version 9), one
//! dialect per backend (`?` placeholders for SQLite and MySQL, `$n` for PostgreSQL).
//!
//! Every function runs through [`Db::run`], so it is bounded by `[db] timeout_ms`, counted
//! in the database's health, and fails with a [`DbError`] naming what it did. Callers that
//! must not give up wrap it in [`Db::retry`]. The table name comes from configuration and is
//! spliced into the SQL, so it is checked to be a plain identifier first.

use super::DsRow;
use crate::db::{delete_by_key, fetch_all, mysql_int, pg_int, sql_name, Db, DbError, Pool, RowDecoders};
use sqlx::Row;

/// OpenSIPS's default `table_name`.
pub const DEFAULT_TABLE: &str = "dispatcher";

const COLUMNS: &str = "id, setid, destination, socket, state, probe_mode, weight, priority, attrs, description";

/// Every row of `table`, by set, then priority (higher first, as OpenSIPS orders a set),
/// then id (the order they were added).
///
/// # Errors
/// An invalid table name, or the query failed (see [`Db::run`]).
pub async fn load(db: &Db, table: &str) -> Result<Vec<DsRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY setid, priority DESC, id", sql_name(table)?);
    let decode = RowDecoders { sqlite: sqlite_row, postgres: pg_row, mysql: mysql_row };
    fetch_all(db, &format!("loading {table}"), &sql, &decode).await
}

/// Adds `row` (its `id` is ignored: the database assigns one) and returns the new id.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or the query failed.
pub async fn insert(db: &Db, table: &str, row: &DsRow) -> Result<i64, DbError> {
    let t = sql_name(table)?;
    let cols = "setid, destination, socket, state, probe_mode, weight, priority, attrs, description";
    let what = format!("adding {} to set {} of {table}", row.destination, row.setid);
    macro_rules! bind_all {
        ($q:expr) => {
            $q.bind(row.setid)
                .bind(&row.destination)
                .bind(&row.socket)
                .bind(row.state)
                .bind(row.probe_mode)
                .bind(&row.weight)
                .bind(row.priority)
                .bind(&row.attrs)
                .bind(&row.description)
        };
    }
    db.run(&what, async {
        match db.pool() {
            Pool::Sqlite(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id");
                bind_all!(sqlx::query(&sql)).fetch_one(p).await?.try_get::<i64, _>(0)
            }
            Pool::Postgres(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id");
                pg_int(&bind_all!(sqlx::query(&sql)).fetch_one(p).await?, "id")
            }
            Pool::MySql(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
                let done = bind_all!(sqlx::query(&sql)).execute(p).await?;
                i64::try_from(done.last_insert_id()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }
        }
    })
    .await
}

/// Removes the destination `destination` from set `setid`; returns how many rows went.
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete(db: &Db, table: &str, setid: i64, destination: &str) -> Result<u64, DbError> {
    let t = sql_name(table)?;
    let what = format!("removing {destination} from set {setid} of {table}");
    let sql = match db.pool() {
        Pool::Postgres(_) => format!("DELETE FROM {t} WHERE setid = $1 AND destination = $2"),
        _ => format!("DELETE FROM {t} WHERE setid = ? AND destination = ?"),
    };
    db.run(&what, async {
        Ok(match db.pool() {
            Pool::Sqlite(p) => sqlx::query(&sql).bind(setid).bind(destination).execute(p).await?.rows_affected(),
            Pool::Postgres(p) => sqlx::query(&sql).bind(setid).bind(destination).execute(p).await?.rows_affected(),
            Pool::MySql(p) => sqlx::query(&sql).bind(setid).bind(destination).execute(p).await?.rows_affected(),
        })
    })
    .await
}

/// Removes the row with this `id`; returns how many rows went (0 or 1).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete_id(db: &Db, table: &str, id: i64) -> Result<u64, DbError> {
    delete_by_key(db, table, "id", id, &format!("removing id {id} from {table}")).await
}

/// Writes the `state` column of `destination` in set `setid` (0 active, 1 inactive,
/// 2 probing), for OpenSIPS's `persistent_state`; returns how many rows changed.
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn set_state(db: &Db, table: &str, setid: i64, destination: &str, state: i64) -> Result<u64, DbError> {
    let t = sql_name(table)?;
    let what = format!("setting the state of {destination} in set {setid} of {table}");
    let sql = match db.pool() {
        Pool::Postgres(_) => format!("UPDATE {t} SET state = $1 WHERE setid = $2 AND destination = $3"),
        _ => format!("UPDATE {t} SET state = ? WHERE setid = ? AND destination = ?"),
    };
    db.run(&what, async {
        Ok(match db.pool() {
            Pool::Sqlite(p) => {
                sqlx::query(&sql).bind(state).bind(setid).bind(destination).execute(p).await?.rows_affected()
            }
            Pool::Postgres(p) => {
                sqlx::query(&sql).bind(state).bind(setid).bind(destination).execute(p).await?.rows_affected()
            }
            Pool::MySql(p) => {
                sqlx::query(&sql).bind(state).bind(setid).bind(destination).execute(p).await?.rows_affected()
            }
        })
    })
    .await
}

// ---------------------------------------------------------------- row decoding

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<DsRow, sqlx::Error> {
    Ok(DsRow {
        id: r.try_get("id")?,
        setid: r.try_get("setid")?,
        destination: r.try_get("destination")?,
        socket: r.try_get("socket")?,
        state: r.try_get("state")?,
        probe_mode: r.try_get("probe_mode")?,
        weight: text_or_int(r.try_get::<Option<String>, _>("weight"), || r.try_get::<i64, _>("weight"))?,
        priority: r.try_get("priority")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<DsRow, sqlx::Error> {
    Ok(DsRow {
        id: pg_int(r, "id")?,
        setid: pg_int(r, "setid")?,
        destination: r.try_get("destination")?,
        socket: r.try_get("socket")?,
        state: pg_int(r, "state")?,
        probe_mode: pg_int(r, "probe_mode")?,
        weight: text_or_int(r.try_get::<Option<String>, _>("weight"), || pg_int(r, "weight"))?,
        priority: pg_int(r, "priority")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

fn mysql_row(r: &sqlx::mysql::MySqlRow) -> Result<DsRow, sqlx::Error> {
    Ok(DsRow {
        id: mysql_int(r, "id")?,
        setid: mysql_int(r, "setid")?,
        destination: r.try_get("destination")?,
        socket: r.try_get("socket")?,
        state: mysql_int(r, "state")?,
        probe_mode: mysql_int(r, "probe_mode")?,
        weight: text_or_int(r.try_get::<Option<String>, _>("weight"), || mysql_int(r, "weight"))?,
        priority: mysql_int(r, "priority")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

/// `weight` is text in OpenSIPS's schema; a table that made it a number is read too, and a
/// NULL weight is OpenSIPS's default "1".
fn text_or_int(
    text: Result<Option<String>, sqlx::Error>,
    int: impl FnOnce() -> Result<i64, sqlx::Error>,
) -> Result<String, sqlx::Error> {
    match text {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Ok("1".to_string()),
        Err(e) => int().map(|n| n.to_string()).map_err(|_| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rows_have_opensips_defaults() {
        let r = DsRow::new(3, "sip:10.0.0.1:5060");
        assert_eq!((r.setid, r.state, r.probe_mode, r.weight.as_str(), r.priority), (3, 0, 0, "1", 0));
        assert!(r.socket.is_none() && r.attrs.is_none() && r.description.is_none());
    }

    #[tokio::test]
    async fn sqlite_round_trip() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let mut low = DsRow::new(1, "sip:a");
        low.priority = 1;
        let mut high = DsRow::new(1, "sip:b");
        high.priority = 5;
        high.attrs = Some("x=1".into());
        let a = insert(&db, DEFAULT_TABLE, &low).await.unwrap();
        let b = insert(&db, DEFAULT_TABLE, &high).await.unwrap();
        assert!(b > a);
        let rows = load(&db, DEFAULT_TABLE).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.destination.as_str()).collect::<Vec<_>>(), ["sip:b", "sip:a"]);
        assert_eq!(rows[0].attrs.as_deref(), Some("x=1"));
        assert_eq!(set_state(&db, DEFAULT_TABLE, 1, "sip:a", 1).await.unwrap(), 1);
        assert_eq!(delete(&db, DEFAULT_TABLE, 1, "sip:b").await.unwrap(), 1);
        assert_eq!(delete_id(&db, DEFAULT_TABLE, a).await.unwrap(), 1);
        assert!(load(&db, DEFAULT_TABLE).await.unwrap().is_empty());
        assert!(matches!(load(&db, "x; drop").await, Err(DbError::InvalidName(_))));
    }
}
