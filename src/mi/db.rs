//! The database's health on the management interface: the `db_status` command, the `db:`
//! statistics and the `siprox_db_*` metric families (docs/mi.md, docs/database.md).

use super::metrics::{Exposition, Kind};
use super::{Command, Mi};
use crate::db::{Db, DbStatus};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Registers `db_status`, the `db:` statistics and the `siprox_db_*` families for `db`.
pub fn install(mi: &Arc<Mi>, db: Arc<Db>) {
    let d = db.clone();
    mi.commands.register(Command::immediate("db_status", &[&[]], move |_| Ok(status_json(&d.status()))));
    let st = &mi.statistics;
    type Read = fn(&Db) -> u64;
    let counters: [(&str, Read); 3] = [
        ("queries_ok", |d| d.health().queries_ok()),
        ("queries_failed", |d| d.health().queries_failed()),
        ("retries", |d| d.health().retries()),
    ];
    for (name, read) in counters {
        let (r, w) = (db.clone(), db.clone());
        st.counter("db", name, move || read(&r), move || w.health().reset_counters());
    }
    let d = db.clone();
    st.gauge("db", "up", move || u64::from(d.health().up().unwrap_or(false)));
    let d = db.clone();
    st.gauge("db", "ready", move || u64::from(d.is_ready()));
    mi.metrics.register(move |e| collect(&db.status(), e));
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn status_json(st: &DbStatus) -> Value {
    let up = match st.up {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    json!({
        "Backend": st.backend,
        "URL": st.url,
        "Ready": st.ready,
        "Up": up,
        "Queries OK": st.queries_ok,
        "Queries failed": st.queries_failed,
        "Retries": st.retries,
        "Last OK": st.last_ok_at.map(rfc3339),
        "Last error": st.last_error.as_ref().map(|e| json!({ "At": rfc3339(e.at), "Message": e.message })),
        "Connections": { "Open": st.pool_size, "Idle": st.pool_idle },
    })
}

fn collect(st: &DbStatus, e: &mut Exposition) {
    let name = "siprox_db_queries_total";
    e.family(name, Kind::Counter, "Database operations, by outcome.");
    e.sample(name, &[("result", "ok")], st.queries_ok);
    e.sample(name, &[("result", "failed")], st.queries_failed);
    e.single(
        "siprox_db_retries_total",
        Kind::Counter,
        "Failed database operations tried again after a pause.",
        st.retries,
    );
    e.single(
        "siprox_db_up",
        Kind::Gauge,
        "1 when the last database operation succeeded.",
        u8::from(st.up == Some(true)),
    );
    e.single("siprox_db_ready", Kind::Gauge, "1 once the migrations are applied.", u8::from(st.ready));
    let last_error =
        st.last_error.as_ref().and_then(|l| l.at.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    e.single(
        "siprox_db_last_error_time_seconds",
        Kind::Gauge,
        "When the last database operation failed, Unix time (0 = never).",
        last_error,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_shape_and_statistics() {
        let db = Arc::new(Db::open("sqlite::memory:").await.unwrap());
        db.migrate().await.unwrap();
        db.health().record_failure("boom");
        let mi = Arc::new(Mi::new());
        install(&mi, db.clone());
        let v = status_json(&db.status());
        assert_eq!(v["Backend"], json!("sqlite"));
        assert_eq!(v["Ready"], json!(true));
        assert_eq!(v["Up"], json!("no"));
        assert_eq!(v["Queries OK"], json!(1));
        assert_eq!(v["Last error"]["Message"], json!("boom"));
        let stats = mi.statistics.select(&["db:".to_string()]).unwrap();
        assert_eq!(stats["db:queries_failed"], json!(1));
        assert_eq!(stats["db:ready"], json!(1));
        mi.statistics.reset(&["db:".to_string()]).unwrap();
        assert_eq!(db.health().queries_failed(), 0);
        let text = mi.metrics.render();
        assert!(text.contains("siprox_db_queries_total{result=\"ok\"} 0"), "{text}");
        assert!(text.contains("# TYPE siprox_db_up gauge"), "{text}");
    }
}
