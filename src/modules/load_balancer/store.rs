//! The `load_balancer` table's SQL: OpenSIPS 3.x columns (spec §7, table version 3), one
//! dialect per backend (`?` placeholders for SQLite and MySQL, `$n` for PostgreSQL).
//!
//! Every function runs through [`Db::run`] (bounded by `[db] timeout_ms`, counted in the
//! database's health, failing with a [`DbError`] naming what it did). The table name comes
//! from configuration and is spliced into the SQL, so it is checked first.

use super::LbRow;
use crate::db::{fetch_all, mysql_int, pg_int, sql_name, Db, DbError, Pool, RowDecoders};
use sqlx::Row;

/// OpenSIPS's default `db_table`.
pub const DEFAULT_TABLE: &str = "load_balancer";

const COLUMNS: &str = "id, group_id, dst_uri, resources, probe_mode, attrs, description";

/// Every row of `table`, in id order (the order ties are broken in).
///
/// # Errors
/// An invalid table name, or the query failed (see [`Db::run`]).
pub async fn load(db: &Db, table: &str) -> Result<Vec<LbRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY id", sql_name(table)?);
    let decode = RowDecoders { sqlite: sqlite_row, postgres: pg_row, mysql: mysql_row };
    fetch_all(db, &format!("loading {table}"), &sql, &decode).await
}

/// Adds `row` (its `id` is ignored: the database assigns one) and returns the new id.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or the query failed.
pub async fn insert(db: &Db, table: &str, row: &LbRow) -> Result<i64, DbError> {
    let t = sql_name(table)?;
    let cols = "group_id, dst_uri, resources, probe_mode, attrs, description";
    let what = format!("adding {} to group {} of {table}", row.dst_uri, row.group_id);
    macro_rules! bind_all {
        ($q:expr) => {
            $q.bind(row.group_id)
                .bind(&row.dst_uri)
                .bind(&row.resources)
                .bind(row.probe_mode)
                .bind(&row.attrs)
                .bind(&row.description)
        };
    }
    db.run(&what, async {
        match db.pool() {
            Pool::Sqlite(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?) RETURNING id");
                bind_all!(sqlx::query(&sql)).fetch_one(p).await?.try_get::<i64, _>(0)
            }
            Pool::Postgres(p) => {
                // The columns are INTEGER (32 bits): bind 32-bit values.
                let sql = format!("INSERT INTO {t} ({cols}) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id");
                let group = i32::try_from(row.group_id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let probe = i32::try_from(row.probe_mode).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let r = sqlx::query(&sql)
                    .bind(group)
                    .bind(&row.dst_uri)
                    .bind(&row.resources)
                    .bind(probe)
                    .bind(&row.attrs)
                    .bind(&row.description)
                    .fetch_one(p)
                    .await?;
                pg_int(&r, "id")
            }
            Pool::MySql(p) => {
                let sql = format!("INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?)");
                let done = bind_all!(sqlx::query(&sql)).execute(p).await?;
                i64::try_from(done.last_insert_id()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }
        }
    })
    .await
}

/// Removes the rows of `group` whose `dst_uri` is `uri`; returns how many went.
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete(db: &Db, table: &str, group: i64, uri: &str) -> Result<u64, DbError> {
    let what = format!("removing {uri} from group {group} of {table}");
    delete_where(db, table, &what, ("group_id", group), Some(("dst_uri", uri))).await
}

/// Removes the row with this `id`; returns how many rows went (0 or 1).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete_id(db: &Db, table: &str, id: i64) -> Result<u64, DbError> {
    let what = format!("removing id {id} from {table}");
    delete_where(db, table, &what, ("id", id), None).await
}

/// `DELETE FROM table WHERE int_col = n [AND text_col = s]`; how many rows went. The
/// integer columns are INTEGER (32 bits) on PostgreSQL: it gets a 32-bit value.
async fn delete_where(
    db: &Db,
    table: &str,
    what: &str,
    (int_col, n): (&str, i64),
    text: Option<(&str, &str)>,
) -> Result<u64, DbError> {
    let t = sql_name(table)?;
    let pg = matches!(db.pool(), Pool::Postgres(_));
    let mut sql = format!("DELETE FROM {t} WHERE {int_col} = {}", if pg { "$1" } else { "?" });
    if let Some((col, _)) = text {
        sql.push_str(&format!(" AND {col} = {}", if pg { "$2" } else { "?" }));
    }
    let s = text.map(|(_, s)| s);
    macro_rules! bind_all {
        ($q:expr) => {{
            let q = $q;
            match s {
                Some(s) => q.bind(s),
                None => q,
            }
        }};
    }
    db.run(what, async {
        Ok(match db.pool() {
            Pool::Sqlite(p) => bind_all!(sqlx::query(&sql).bind(n)).execute(p).await?.rows_affected(),
            Pool::Postgres(p) => {
                let n = i32::try_from(n).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                bind_all!(sqlx::query(&sql).bind(n)).execute(p).await?.rows_affected()
            }
            Pool::MySql(p) => bind_all!(sqlx::query(&sql).bind(n)).execute(p).await?.rows_affected(),
        })
    })
    .await
}

// ---------------------------------------------------------------- row decoding

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<LbRow, sqlx::Error> {
    Ok(LbRow {
        id: r.try_get("id")?,
        group_id: r.try_get("group_id")?,
        dst_uri: r.try_get("dst_uri")?,
        resources: r.try_get("resources")?,
        probe_mode: r.try_get("probe_mode")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<LbRow, sqlx::Error> {
    Ok(LbRow {
        id: pg_int(r, "id")?,
        group_id: pg_int(r, "group_id")?,
        dst_uri: r.try_get("dst_uri")?,
        resources: r.try_get("resources")?,
        probe_mode: pg_int(r, "probe_mode")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

fn mysql_row(r: &sqlx::mysql::MySqlRow) -> Result<LbRow, sqlx::Error> {
    Ok(LbRow {
        id: mysql_int(r, "id")?,
        group_id: mysql_int(r, "group_id")?,
        dst_uri: r.try_get("dst_uri")?,
        resources: r.try_get("resources")?,
        probe_mode: mysql_int(r, "probe_mode")?,
        attrs: r.try_get("attrs")?,
        description: r.try_get("description")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_round_trip() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let mut a = LbRow::new(1, "sip:10.0.0.1", "pstn=32;transc=10");
        a.probe_mode = 2;
        a.attrs = Some("x=1".into());
        let b = LbRow::new(2, "sip:10.0.0.2:5080", "pstn=10");
        let ia = insert(&db, DEFAULT_TABLE, &a).await.unwrap();
        let ib = insert(&db, DEFAULT_TABLE, &b).await.unwrap();
        assert!(ib > ia);
        let rows = load(&db, DEFAULT_TABLE).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], LbRow { id: ia, ..a });
        assert_eq!(rows[1].dst_uri, "sip:10.0.0.2:5080");
        assert_eq!(delete_id(&db, DEFAULT_TABLE, ia).await.unwrap(), 1);
        assert_eq!(load(&db, DEFAULT_TABLE).await.unwrap().len(), 1);
        assert_eq!(delete(&db, DEFAULT_TABLE, 1, "sip:10.0.0.2:5080").await.unwrap(), 0, "another group");
        assert_eq!(delete(&db, DEFAULT_TABLE, 2, "sip:10.0.0.2:5080").await.unwrap(), 1);
        assert!(load(&db, DEFAULT_TABLE).await.unwrap().is_empty());
        assert!(matches!(load(&db, "x; drop").await, Err(DbError::InvalidName(_))));
    }
}
