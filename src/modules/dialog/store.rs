//! The `dialog` table's SQL: OpenSIPS 3.x columns (spec §10, table version 12), one dialect
//! per backend (`?` placeholders for SQLite and MySQL, `$n` for PostgreSQL).
//!
//! siprox writes the columns a [`DialogRecord`] has; the others (`mangled_*`, `*_ping_cseq`,
//! `rt_on_*`) keep their defaults. `script_flags` is text in OpenSIPS 3.x (flag names);
//! siprox writes its bit mask there in decimal and reads a name list as 0. Every function
//! runs through [`Db::run`] (bounded, counted, named errors); callers that must not give up
//! retry. The table name comes from configuration and is spliced into the SQL, so it is
//! checked to be a plain identifier first.

use crate::db::{
    delete_by_key, fetch_all, mysql_int, sql_name, write_batch, Batch, Db, DbError, Pool, RowBinders, RowDecoders,
};
use crate::dialog::DialogRecord;
use sqlx::Row;

/// OpenSIPS's default `table_name`.
pub const DEFAULT_TABLE: &str = "dialog";

/// The columns siprox reads and writes, in bind order.
const COLUMNS: [&str; 22] = [
    "dlg_id",
    "callid",
    "from_uri",
    "from_tag",
    "to_uri",
    "to_tag",
    "caller_cseq",
    "callee_cseq",
    "caller_route_set",
    "callee_route_set",
    "caller_contact",
    "callee_contact",
    "caller_sock",
    "callee_sock",
    "state",
    "start_time",
    "timeout",
    "vars",
    "profiles",
    "script_flags",
    "module_flags",
    "flags",
];

/// Binds every column of `$rec` to `$q`, in [`COLUMNS`] order.
macro_rules! bind_record {
    ($q:expr, $rec:expr) => {{
        let r: &DialogRecord = $rec;
        $q.bind(r.dlg_id)
            .bind(&r.callid)
            .bind(&r.from_uri)
            .bind(&r.from_tag)
            .bind(&r.to_uri)
            .bind(&r.to_tag)
            .bind(&r.caller_cseq)
            .bind(&r.callee_cseq)
            .bind(&r.caller_route_set)
            .bind(&r.callee_route_set)
            .bind(&r.caller_contact)
            .bind(&r.callee_contact)
            .bind(&r.caller_sock)
            .bind(&r.callee_sock)
            .bind(r.state)
            .bind(r.start_time)
            .bind(r.timeout)
            .bind(&r.vars)
            .bind(&r.profiles)
            .bind(r.script_flags.to_string())
            .bind(r.module_flags)
            .bind(r.flags)
    }};
}

/// `INSERT … or update` of one row, in the dialect of `pool`.
fn upsert_sql(pool: &Pool, t: &str) -> String {
    let cols = COLUMNS.join(", ");
    let rest = &COLUMNS[1..];
    match pool {
        Pool::Postgres(_) => {
            let marks: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("${i}")).collect();
            let set: Vec<String> = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
            format!(
                "INSERT INTO {t} ({cols}) VALUES ({}) ON CONFLICT (dlg_id) DO UPDATE SET {}",
                marks.join(", "),
                set.join(", ")
            )
        }
        Pool::Sqlite(_) => {
            let set: Vec<String> = rest.iter().map(|c| format!("{c} = excluded.{c}")).collect();
            format!(
                "INSERT INTO {t} ({cols}) VALUES ({}) ON CONFLICT (dlg_id) DO UPDATE SET {}",
                vec!["?"; COLUMNS.len()].join(", "),
                set.join(", ")
            )
        }
        Pool::MySql(_) => {
            // VALUES(col): MariaDB knows no row alias, and MySQL 8 still accepts this form.
            let set: Vec<String> = rest.iter().map(|c| format!("{c} = VALUES({c})")).collect();
            format!(
                "INSERT INTO {t} ({cols}) VALUES ({}) ON DUPLICATE KEY UPDATE {}",
                vec!["?"; COLUMNS.len()].join(", "),
                set.join(", ")
            )
        }
    }
}

/// Every row of `table`, by `dlg_id`.
///
/// # Errors
/// An invalid table name, a row that cannot be read, or the query failed (see [`Db::run`]).
pub async fn load(db: &Db, table: &str) -> Result<Vec<DialogRecord>, DbError> {
    let sql = format!("SELECT {} FROM {} ORDER BY dlg_id", COLUMNS.join(", "), sql_name(table)?);
    let decode = RowDecoders { sqlite: sqlite_row, postgres: pg_row, mysql: mysql_row };
    fetch_all(db, &format!("loading {table}"), &sql, &decode).await
}

/// Writes `rec`: a new row, or every column of the row with its `dlg_id` replaced.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or the query failed.
pub async fn upsert(db: &Db, table: &str, rec: &DialogRecord) -> Result<(), DbError> {
    let t = sql_name(table)?;
    let sql = upsert_sql(db.pool(), t);
    let what = format!("saving dialog {:x} in {table}", rec.dlg_id);
    db.run(&what, async {
        match db.pool() {
            Pool::Sqlite(p) => bind_record!(sqlx::query(&sql), rec).execute(p).await.map(drop),
            Pool::Postgres(p) => bind_record!(sqlx::query(&sql), rec).execute(p).await.map(drop),
            Pool::MySql(p) => bind_record!(sqlx::query(&sql), rec).execute(p).await.map(drop),
        }
    })
    .await
}

/// Removes the row of dialog `id`; returns how many rows went (0 or 1).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete(db: &Db, table: &str, id: i64) -> Result<u64, DbError> {
    delete_by_key(db, table, "dlg_id", id, &format!("removing dialog {id:x} from {table}")).await
}

const BIND: RowBinders<DialogRecord> = RowBinders {
    sqlite: |q, r| bind_record!(q, r),
    postgres: |q, r| bind_record!(q, r),
    mysql: |q, r| bind_record!(q, r),
};

/// Runs `batch` in one transaction (see [`write_batch`]).
async fn write_tx(db: &Db, table: &str, what: &str, batch: Batch<'_, DialogRecord>) -> Result<(), DbError> {
    let upsert = upsert_sql(db.pool(), sql_name(table)?);
    write_batch(db, table, "dlg_id", &upsert, what, batch, &BIND).await
}

/// Writes a batch in one transaction: `saves` upserted, the rows of `removes` deleted.
/// What the writer does when several changes wait (one commit instead of one per row).
///
/// # Errors
/// An invalid table name, or the transaction failed (nothing of it is kept).
pub async fn apply(db: &Db, table: &str, saves: &[DialogRecord], removes: &[i64]) -> Result<(), DbError> {
    let what = format!("writing {} dialogs to {table} and removing {}", saves.len(), removes.len());
    write_tx(db, table, &what, Batch { clear: false, saves, removes }).await
}

/// Makes `table` hold exactly `rows` (db_mode 3 at shutdown, `dlg_db_sync`): every row
/// deleted, then `rows` written, in one transaction, so a reader (the other node of a
/// pair) sees the old set or the new one, never an empty table.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or a query failed (the
/// transaction is then rolled back and the table left as it was).
pub async fn replace_all(db: &Db, table: &str, rows: &[DialogRecord]) -> Result<(), DbError> {
    let what = format!("rewriting {table} ({} dialogs)", rows.len());
    write_tx(db, table, &what, Batch { clear: true, saves: rows, removes: &[] }).await
}

// ---------------------------------------------------------------- row decoding

/// Builds a [`DialogRecord`] from a row of any backend, `$int` reading its integers.
/// Text columns that OpenSIPS leaves NULL read as "", and a BLOB `vars` (OpenSIPS's MySQL
/// and SQLite schema) as its bytes taken for UTF-8.
macro_rules! record_from {
    ($r:expr, $int:expr) => {{
        let r = $r;
        let text = |col: &str| -> Result<String, sqlx::Error> {
            match r.try_get::<Option<String>, _>(col) {
                Ok(v) => Ok(v.unwrap_or_default()),
                Err(e) => match r.try_get::<Option<Vec<u8>>, _>(col) {
                    Ok(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()),
                    Err(_) => Err(e),
                },
            }
        };
        let script_flags = match r.try_get::<Option<String>, _>("script_flags") {
            Ok(s) => script_flags_of(s.as_deref()),
            // An older OpenSIPS schema (table version 10) has an integer column.
            Err(e) => $int(r, "script_flags").map_err(|_| e)?,
        };
        Ok(DialogRecord {
            dlg_id: $int(r, "dlg_id")?,
            callid: text("callid")?,
            from_uri: text("from_uri")?,
            from_tag: text("from_tag")?,
            to_uri: text("to_uri")?,
            to_tag: text("to_tag")?,
            caller_cseq: text("caller_cseq")?,
            callee_cseq: text("callee_cseq")?,
            caller_route_set: text("caller_route_set")?,
            callee_route_set: text("callee_route_set")?,
            caller_contact: text("caller_contact")?,
            callee_contact: text("callee_contact")?,
            caller_sock: text("caller_sock")?,
            callee_sock: text("callee_sock")?,
            state: $int(r, "state")?,
            start_time: $int(r, "start_time")?,
            timeout: $int(r, "timeout")?,
            vars: text("vars")?,
            profiles: text("profiles")?,
            script_flags,
            module_flags: $int(r, "module_flags")?,
            flags: $int(r, "flags")?,
        })
    }};
}

/// `script_flags` as siprox writes it (a decimal bit mask). OpenSIPS 3.x writes flag names
/// there, which siprox has no bits for: such a row starts with no script flags.
fn script_flags_of(text: Option<&str>) -> i64 {
    let t = text.unwrap_or("").trim();
    if t.is_empty() {
        return 0;
    }
    t.parse().unwrap_or_else(|_| {
        tracing::warn!(script_flags = t, "dialog row: script flag names are not kept; the dialog has none");
        0
    })
}

fn sqlite_int(r: &sqlx::sqlite::SqliteRow, col: &str) -> Result<i64, sqlx::Error> {
    r.try_get::<i64, _>(col)
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<DialogRecord, sqlx::Error> {
    record_from!(r, sqlite_int)
}

/// PostgreSQL's INTEGER is 32 bits; BIGINT (dlg_id) and SMALLINT are read too.
fn pg_int(r: &sqlx::postgres::PgRow, col: &str) -> Result<i64, sqlx::Error> {
    crate::db::pg_int(r, col).or_else(|_| r.try_get::<i16, _>(col).map(i64::from))
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<DialogRecord, sqlx::Error> {
    record_from!(r, pg_int)
}

fn mysql_row(r: &sqlx::mysql::MySqlRow) -> Result<DialogRecord, sqlx::Error> {
    record_from!(r, mysql_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_flags_read_as_numbers_only() {
        assert_eq!(script_flags_of(Some("12")), 12);
        assert_eq!(script_flags_of(Some(" ")), 0);
        assert_eq!(script_flags_of(None), 0);
        assert_eq!(script_flags_of(Some("NAT,ACC")), 0);
    }

    #[tokio::test]
    async fn sqlite_upsert_load_delete() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let mut rec = DialogRecord { dlg_id: 77, callid: "c".into(), state: 4, script_flags: 5, ..Default::default() };
        upsert(&db, DEFAULT_TABLE, &rec).await.unwrap();
        rec.state = 3;
        upsert(&db, DEFAULT_TABLE, &rec).await.unwrap();
        assert_eq!(load(&db, DEFAULT_TABLE).await.unwrap(), vec![rec.clone()]);
        replace_all(&db, DEFAULT_TABLE, &[]).await.unwrap();
        assert!(load(&db, DEFAULT_TABLE).await.unwrap().is_empty());
        assert_eq!(delete(&db, DEFAULT_TABLE, 77).await.unwrap(), 0);
        assert!(matches!(load(&db, "x; drop").await, Err(DbError::InvalidName(_))));
    }
}
