//! The `location` table's SQL: OpenSIPS 3.x columns (table version 1013) plus siprox's
//! `reg_id` and `siprox_stamp`, one dialect per backend (`?` placeholders for SQLite and
//! MySQL, `$n` for PostgreSQL).
//!
//! How a [`Contact`] maps onto a row:
//!
//! | field | column | note |
//! |---|---|---|
//! | `aor` | `username`, `domain` | split at the last `@`; no `@` (use_domain = 0): domain NULL |
//! | `q` | `q` | thousandths → a float; unspecified (-1) is written -1 and read back as unspecified |
//! | `last_modified` | `last_modified` | Unix seconds ↔ DATETIME (UTC) in SQL, so no date crate is needed |
//! | `cflags` | `cflags` | branch flag names, comma-separated; a bit without a name as its number |
//! | `instance` | `sip_instance` | |
//! | — | `siprox_stamp` | set by the database's own clock (milliseconds) on every write |
//!
//! `kv_store` is left as it is (siprox has no key-value store per contact). The table name
//! comes from the script (`save("location")`) and is spliced into the SQL, so it is checked
//! to be a plain identifier first. Every function runs through [`Db::run`].

use super::{Contact, Q_UNSPECIFIED};
use crate::db::{
    delete_by_key, fetch_all, mysql_int, sql_name, write_batch, Batch, Db, DbError, Pool, RowBinders, RowDecoders,
};
use sqlx::Row as _;

/// OpenSIPS's usrloc domain of `save("location")`.
pub const DEFAULT_TABLE: &str = "location";

/// One row as read: the binding and when it was last written (`siprox_stamp`, ms of the
/// database clock; 0 for rows another tool wrote).
#[derive(Clone, Debug, PartialEq)]
pub struct LocationRow {
    pub contact: Contact,
    pub stamp: i64,
}

/// The columns siprox writes, in bind order (`siprox_stamp` comes last, from SQL).
const COLUMNS: [&str; 19] = [
    "contact_id",
    "username",
    "domain",
    "contact",
    "received",
    "path",
    "expires",
    "q",
    "callid",
    "cseq",
    "last_modified",
    "flags",
    "cflags",
    "user_agent",
    "socket",
    "methods",
    "sip_instance",
    "attr",
    "reg_id",
];

/// The database's clock in milliseconds, as SQL of `pool`'s dialect. One clock for every
/// node that shares the database, so `sql-only` readers compare stamps of one clock.
fn stamp_sql(pool: &Pool) -> &'static str {
    match pool {
        Pool::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Pool::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Pool::MySql(_) => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
    }
}

/// The placeholder of bind `i` (1-based) and of `last_modified` (Unix seconds → DATETIME).
fn placeholder(pool: &Pool, i: usize, col: &str) -> String {
    let mark = match pool {
        Pool::Postgres(_) => format!("${i}"),
        _ => "?".to_string(),
    };
    if col != "last_modified" {
        return mark;
    }
    match pool {
        Pool::Sqlite(_) => format!("datetime({mark}, 'unixepoch')"),
        Pool::Postgres(_) => format!("(to_timestamp({mark}) AT TIME ZONE 'UTC')"),
        Pool::MySql(_) => format!("FROM_UNIXTIME({mark})"),
    }
}

/// The SELECT list: every column, `last_modified` as Unix seconds.
fn select_list(pool: &Pool) -> String {
    let lm = match pool {
        Pool::Sqlite(_) => "CAST(strftime('%s', last_modified) AS INTEGER)",
        Pool::Postgres(_) => "CAST(EXTRACT(EPOCH FROM (last_modified AT TIME ZONE 'UTC')) AS BIGINT)",
        Pool::MySql(_) => "CAST(UNIX_TIMESTAMP(last_modified) AS SIGNED)",
    };
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| if *c == "last_modified" { format!("{lm} AS last_modified") } else { (*c).to_string() })
        .collect();
    format!("{}, siprox_stamp", cols.join(", "))
}

/// `INSERT … or update` of one row, in the dialect of `pool`.
fn upsert_sql(pool: &Pool, t: &str) -> String {
    let cols = format!("{}, siprox_stamp", COLUMNS.join(", "));
    let mut values: Vec<String> = COLUMNS.iter().enumerate().map(|(i, c)| placeholder(pool, i + 1, c)).collect();
    values.push(stamp_sql(pool).to_string());
    let rest = COLUMNS[1..].iter().chain(std::iter::once(&"siprox_stamp"));
    match pool {
        Pool::Postgres(_) | Pool::Sqlite(_) => {
            let set: Vec<String> = rest.map(|c| format!("{c} = excluded.{c}")).collect();
            format!(
                "INSERT INTO {t} ({cols}) VALUES ({}) ON CONFLICT (contact_id) DO UPDATE SET {}",
                values.join(", "),
                set.join(", ")
            )
        }
        Pool::MySql(_) => {
            // VALUES(col): MariaDB knows no row alias, and MySQL 8 still accepts this form.
            let set: Vec<String> = rest.map(|c| format!("{c} = VALUES({c})")).collect();
            format!(
                "INSERT INTO {t} ({cols}) VALUES ({}) ON DUPLICATE KEY UPDATE {}",
                values.join(", "),
                set.join(", ")
            )
        }
    }
}

/// `user@domain` → (`user`, Some(`domain`)); `user` → (`user`, None).
pub fn split_aor(aor: &str) -> (&str, Option<&str>) {
    match aor.rsplit_once('@') {
        Some((u, d)) => (u, Some(d)),
        None => (aor, None),
    }
}

/// The branch flags as the `cflags` column holds them: names, comma-separated.
pub fn cflags_text(bits: u64) -> Option<String> {
    if bits == 0 {
        return None;
    }
    let names: Vec<String> = (0..64u32)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| crate::script::api::flag_name_of(b).unwrap_or_else(|| b.to_string()))
        .collect();
    Some(names.join(","))
}

/// The `cflags` column back to bits: each name takes the bit the script's flags give it.
pub fn cflags_bits(text: Option<&str>) -> u64 {
    text.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter_map(crate::script::api::flag_bit_of)
        .fold(0, |acc, b| acc | (1u64 << b))
}

/// q in thousandths as the float column holds it.
fn q_value(q: i32) -> f64 {
    if q == Q_UNSPECIFIED {
        -1.0
    } else {
        f64::from(q) / 1000.0
    }
}

fn q_of(v: f64) -> i32 {
    if v < 0.0 {
        Q_UNSPECIFIED
    } else {
        (v * 1000.0).round().clamp(0.0, 1000.0) as i32
    }
}

/// Binds every column of `$c` to `$q`, in [`COLUMNS`] order.
macro_rules! bind_contact {
    ($q:expr, $c:expr) => {{
        let c: &Contact = $c;
        let (user, domain) = split_aor(&c.aor);
        $q.bind(c.id)
            .bind(user.to_string())
            .bind(domain.map(str::to_string))
            .bind(&c.uri)
            .bind(&c.received)
            .bind(&c.path)
            .bind(c.expires)
            .bind(q_value(c.q))
            .bind(&c.callid)
            .bind(i64::from(c.cseq))
            .bind(c.last_modified)
            .bind(i64::from(c.flags))
            .bind(cflags_text(c.cflags))
            .bind(&c.user_agent)
            .bind(&c.socket)
            .bind(c.methods.map(i64::from))
            .bind(&c.instance)
            .bind(&c.attr)
            .bind(i64::from(c.reg_id))
    }};
}

fn decoders(use_domain: bool) -> RowDecoders<LocationRow> {
    // A row of another node (or OpenSIPS with use_domain = 1) read by a node with
    // use_domain = 0 keeps only its user part: the AoR this node looks up.
    if use_domain {
        RowDecoders { sqlite: |r| sqlite_row(r, true), postgres: |r| pg_row(r, true), mysql: |r| mysql_row(r, true) }
    } else {
        RowDecoders { sqlite: |r| sqlite_row(r, false), postgres: |r| pg_row(r, false), mysql: |r| mysql_row(r, false) }
    }
}

/// Every row of `table`, by `contact_id`; AoRs as `use_domain` says.
///
/// # Errors
/// An invalid table name, a row that cannot be read, or the query failed (see [`Db::run`]).
pub async fn load(db: &Db, table: &str, use_domain: bool) -> Result<Vec<LocationRow>, DbError> {
    let sql = format!("SELECT {} FROM {} ORDER BY contact_id", select_list(db.pool()), sql_name(table)?);
    fetch_all(db, &format!("loading {table}"), &sql, &decoders(use_domain)).await
}

/// The rows written at `since` (ms of the database clock) or later.
///
/// # Errors
/// As [`load`].
pub async fn changed_since(db: &Db, table: &str, since: i64, use_domain: bool) -> Result<Vec<LocationRow>, DbError> {
    // The bound is spliced as a number (it is one), so one text serves every dialect.
    let sql = format!(
        "SELECT {} FROM {} WHERE siprox_stamp >= {since} ORDER BY siprox_stamp",
        select_list(db.pool()),
        sql_name(table)?
    );
    fetch_all(db, &format!("reading the changes of {table}"), &sql, &decoders(use_domain)).await
}

/// Every `contact_id` of `table`; with `live_at`, only those of bindings live at that time
/// (Unix seconds).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn ids(db: &Db, table: &str, live_at: Option<i64>) -> Result<Vec<i64>, DbError> {
    let filter = live_at.map(|now| format!(" WHERE expires = 0 OR expires > {now}")).unwrap_or_default();
    let sql = format!("SELECT contact_id FROM {}{filter} ORDER BY contact_id", sql_name(table)?);
    let decode = RowDecoders {
        sqlite: |r: &sqlx::sqlite::SqliteRow| r.try_get::<i64, _>(0),
        postgres: |r: &sqlx::postgres::PgRow| r.try_get::<i64, _>(0),
        mysql: |r: &sqlx::mysql::MySqlRow| mysql_int(r, "contact_id"),
    };
    fetch_all(db, &format!("reading the ids of {table}"), &sql, &decode).await
}

/// Writes `c`: a new row, or every column of the row with its `contact_id` replaced.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or the query failed.
pub async fn upsert(db: &Db, table: &str, c: &Contact) -> Result<(), DbError> {
    let sql = upsert_sql(db.pool(), sql_name(table)?);
    let what = format!("saving contact {} of {} in {table}", c.id, c.aor);
    db.run(&what, async {
        match db.pool() {
            Pool::Sqlite(p) => bind_contact!(sqlx::query(&sql), c).execute(p).await.map(drop),
            Pool::Postgres(p) => bind_contact!(sqlx::query(&sql), c).execute(p).await.map(drop),
            Pool::MySql(p) => bind_contact!(sqlx::query(&sql), c).execute(p).await.map(drop),
        }
    })
    .await
}

/// Removes the row of binding `id`; how many rows went (0 or 1).
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete(db: &Db, table: &str, id: i64) -> Result<u64, DbError> {
    delete_by_key(db, table, "contact_id", id, &format!("removing contact {id} from {table}")).await
}

/// Removes the rows whose binding expired at `now` (Unix seconds; `expires` 0 is
/// permanent); how many went.
///
/// # Errors
/// An invalid table name, or the query failed.
pub async fn delete_expired(db: &Db, table: &str, now: i64) -> Result<u64, DbError> {
    let sql = format!("DELETE FROM {} WHERE expires <> 0 AND expires <= {now}", sql_name(table)?);
    db.run(&format!("removing expired contacts from {table}"), async {
        Ok(match db.pool() {
            Pool::Sqlite(p) => sqlx::query(&sql).execute(p).await?.rows_affected(),
            Pool::Postgres(p) => sqlx::query(&sql).execute(p).await?.rows_affected(),
            Pool::MySql(p) => sqlx::query(&sql).execute(p).await?.rows_affected(),
        })
    })
    .await
}

const BIND: RowBinders<Contact> = RowBinders {
    sqlite: |q, c| bind_contact!(q, c),
    postgres: |q, c| bind_contact!(q, c),
    mysql: |q, c| bind_contact!(q, c),
};

/// Runs `batch` in one transaction (see [`write_batch`]).
async fn write_tx(db: &Db, table: &str, what: &str, batch: Batch<'_, Contact>) -> Result<(), DbError> {
    let upsert = upsert_sql(db.pool(), sql_name(table)?);
    write_batch(db, table, "contact_id", &upsert, what, batch, &BIND).await
}

/// Writes a batch in one transaction: `saves` upserted, the rows of `removes` deleted.
///
/// # Errors
/// An invalid table name, or the transaction failed (nothing of it is kept).
pub async fn apply(db: &Db, table: &str, saves: &[Contact], removes: &[i64]) -> Result<(), DbError> {
    let what = format!("writing {} contacts to {table} and removing {}", saves.len(), removes.len());
    write_tx(db, table, &what, Batch { clear: false, saves, removes }).await
}

/// Makes `table` hold exactly `rows` (`ul_sync`), in one transaction, so a reader sees the
/// old set or the new one, never an empty table.
///
/// # Errors
/// An invalid table name, a value the columns cannot hold, or a query failed (the table is
/// then left as it was).
pub async fn replace_all(db: &Db, table: &str, rows: &[Contact]) -> Result<(), DbError> {
    let what = format!("rewriting {table} ({} contacts)", rows.len());
    write_tx(db, table, &what, Batch { clear: true, saves: rows, removes: &[] }).await
}

// ---------------------------------------------------------------- row decoding

/// Builds a [`LocationRow`] from a row of any backend: `$int` reads integers, `$float` q.
/// Text columns OpenSIPS leaves NULL read as "" or `None`.
macro_rules! row_from {
    ($r:expr, $use_domain:expr, $int:expr, $opt_int:expr, $float:expr) => {{
        let r = $r;
        let opt = |col: &str| -> Result<Option<String>, sqlx::Error> {
            Ok(r.try_get::<Option<String>, _>(col)?.filter(|s| !s.is_empty()))
        };
        let text = |col: &str| -> Result<String, sqlx::Error> { Ok(opt(col)?.unwrap_or_default()) };
        let user = text("username")?;
        let aor = match opt("domain")? {
            Some(d) if $use_domain => format!("{user}@{d}"),
            _ => user,
        };
        let small = |col: &str| -> Result<u32, sqlx::Error> {
            let v = $int(r, col)?;
            u32::try_from(v).map_err(|e| sqlx::Error::Decode(format!("{col} = {v}: {e}").into()))
        };
        let methods = match $opt_int(r, "methods")? {
            Some(m) => Some(u32::try_from(m).map_err(|e| sqlx::Error::Decode(format!("methods = {m}: {e}").into()))?),
            None => None,
        };
        Ok(LocationRow {
            contact: Contact {
                id: $int(r, "contact_id")?,
                aor,
                uri: text("contact")?,
                received: opt("received")?,
                path: opt("path")?,
                expires: $int(r, "expires")?,
                q: q_of($float(r, "q")?),
                callid: text("callid")?,
                cseq: small("cseq")?,
                // OpenSIPS's default (1900) reads as a negative time, or 0 on MySQL.
                last_modified: $opt_int(r, "last_modified")?.unwrap_or(0).max(0),
                flags: small("flags")?,
                cflags: cflags_bits(opt("cflags")?.as_deref()),
                user_agent: text("user_agent")?,
                socket: opt("socket")?,
                methods,
                instance: opt("sip_instance")?,
                reg_id: $opt_int(r, "reg_id")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                attr: opt("attr")?,
                pings_lost: 0,
            },
            stamp: $opt_int(r, "siprox_stamp")?.unwrap_or(0),
        })
    }};
}

fn sqlite_int(r: &sqlx::sqlite::SqliteRow, col: &str) -> Result<i64, sqlx::Error> {
    r.try_get::<i64, _>(col)
}

fn sqlite_opt_int(r: &sqlx::sqlite::SqliteRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    r.try_get::<Option<i64>, _>(col)
}

fn sqlite_float(r: &sqlx::sqlite::SqliteRow, col: &str) -> Result<f64, sqlx::Error> {
    r.try_get::<f64, _>(col).or_else(|e| r.try_get::<i64, _>(col).map(|i| i as f64).map_err(|_| e))
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow, use_domain: bool) -> Result<LocationRow, sqlx::Error> {
    row_from!(r, use_domain, sqlite_int, sqlite_opt_int, sqlite_float)
}

fn pg_int(r: &sqlx::postgres::PgRow, col: &str) -> Result<i64, sqlx::Error> {
    crate::db::pg_int(r, col)
}

fn pg_opt_int(r: &sqlx::postgres::PgRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    r.try_get::<Option<i32>, _>(col).map(|v| v.map(i64::from)).or_else(|_| r.try_get::<Option<i64>, _>(col))
}

/// REAL (OpenSIPS's schema) or DOUBLE PRECISION.
fn pg_float(r: &sqlx::postgres::PgRow, col: &str) -> Result<f64, sqlx::Error> {
    r.try_get::<f32, _>(col).map(f64::from).or_else(|_| r.try_get::<f64, _>(col))
}

fn pg_row(r: &sqlx::postgres::PgRow, use_domain: bool) -> Result<LocationRow, sqlx::Error> {
    row_from!(r, use_domain, pg_int, pg_opt_int, pg_float)
}

fn mysql_opt_int(r: &sqlx::mysql::MySqlRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    match r.try_get::<Option<i64>, _>(col) {
        Ok(v) => Ok(v),
        Err(e) => match r.try_get::<Option<u64>, _>(col) {
            Ok(v) => v.map(|u| i64::try_from(u).map_err(|e| sqlx::Error::Decode(Box::new(e)))).transpose(),
            Err(_) => Err(e),
        },
    }
}

/// FLOAT(10,2) (OpenSIPS's schema) or DOUBLE.
fn mysql_float(r: &sqlx::mysql::MySqlRow, col: &str) -> Result<f64, sqlx::Error> {
    r.try_get::<f32, _>(col).map(f64::from).or_else(|_| r.try_get::<f64, _>(col))
}

fn mysql_row(r: &sqlx::mysql::MySqlRow, use_domain: bool) -> Result<LocationRow, sqlx::Error> {
    row_from!(r, use_domain, mysql_int, mysql_opt_int, mysql_float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: i64, aor: &str) -> Contact {
        Contact {
            id,
            aor: aor.into(),
            uri: "sip:a@10.0.0.1:5062".into(),
            received: Some("sip:192.0.2.1:4000".into()),
            path: None,
            expires: 2_000_000_000,
            q: 500,
            callid: "cid".into(),
            cseq: 7,
            last_modified: 1_700_000_000,
            flags: 0,
            cflags: 0,
            user_agent: "ua".into(),
            socket: Some("udp:127.0.0.1:5060".into()),
            methods: Some(0x1f),
            instance: None,
            reg_id: 1,
            attr: None,
            pings_lost: 0,
        }
    }

    #[test]
    fn aor_split_and_q() {
        assert_eq!(split_aor("alice@example.com"), ("alice", Some("example.com")));
        assert_eq!(split_aor("alice"), ("alice", None));
        assert_eq!(q_of(q_value(Q_UNSPECIFIED)), Q_UNSPECIFIED);
        assert_eq!(q_of(q_value(500)), 500);
        assert_eq!(q_of(q_value(1000)), 1000);
        assert_eq!(q_of(0.57), 570);
    }

    #[test]
    fn cflags_as_names() {
        assert_eq!(cflags_text(0), None);
        let bit = crate::script::api::flag_bit_of("UL_STORE_TEST_NAT").expect("a bit");
        let text = cflags_text(1u64 << bit).expect("named");
        assert_eq!(text, "UL_STORE_TEST_NAT");
        assert_eq!(cflags_bits(Some(&text)), 1u64 << bit);
        assert_eq!(cflags_bits(Some("")), 0);
        assert_eq!(cflags_bits(None), 0);
    }

    #[tokio::test]
    async fn sqlite_round_trip() {
        let db = Db::open("sqlite::memory:").await.expect("open");
        db.migrate().await.expect("migrate");
        let mut c = contact(42, "alice@example.com");
        upsert(&db, DEFAULT_TABLE, &c).await.expect("upsert");
        c.cseq = 8;
        upsert(&db, DEFAULT_TABLE, &c).await.expect("upsert again");
        let rows = load(&db, DEFAULT_TABLE, true).await.expect("load");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].contact, c);
        assert!(rows[0].stamp > 1_600_000_000_000, "{}", rows[0].stamp);
        let bare = load(&db, DEFAULT_TABLE, false).await.expect("load");
        assert_eq!(bare[0].contact.aor, "alice");
        assert_eq!(changed_since(&db, DEFAULT_TABLE, rows[0].stamp + 1, true).await.expect("since").len(), 0);
        assert_eq!(changed_since(&db, DEFAULT_TABLE, rows[0].stamp, true).await.expect("since").len(), 1);
        assert_eq!(ids(&db, DEFAULT_TABLE, None).await.expect("ids"), vec![42]);
        assert!(ids(&db, DEFAULT_TABLE, Some(2_000_000_000)).await.expect("ids").is_empty());
        assert_eq!(delete_expired(&db, DEFAULT_TABLE, 1_900_000_000).await.expect("expired"), 0);
        assert_eq!(delete_expired(&db, DEFAULT_TABLE, 2_000_000_000).await.expect("expired"), 1);
        apply(&db, DEFAULT_TABLE, &[contact(1, "a"), contact(2, "b")], &[1]).await.expect("apply");
        assert_eq!(ids(&db, DEFAULT_TABLE, None).await.expect("ids"), vec![2]);
        replace_all(&db, DEFAULT_TABLE, &[contact(3, "c")]).await.expect("replace");
        assert_eq!(ids(&db, DEFAULT_TABLE, None).await.expect("ids"), vec![3]);
        assert_eq!(delete(&db, DEFAULT_TABLE, 3).await.expect("delete"), 1);
        assert!(matches!(load(&db, "x; drop", true).await, Err(DbError::InvalidName(_))));
    }
}
