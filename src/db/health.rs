//! How the database is doing: counters every operation bumps, the last error, and a
//! snapshot ([`DbStatus`]) the management interface shows. Plain atomics on the success
//! path; a mutex only around the last error's text.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counters and the last outcome of the database operations of one [`super::Db`].
#[derive(Debug, Default)]
pub struct Health {
    ok: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    /// 0 nothing tried yet, 1 the last operation succeeded, 2 it failed.
    last: AtomicU8,
    /// Unix time in milliseconds of the last success (0 = never).
    last_ok_ms: AtomicU64,
    last_error: Mutex<Option<LastError>>,
}

/// The most recent failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub message: String,
    pub at: SystemTime,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Health {
    /// One operation succeeded.
    pub fn record_ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.last.store(1, Ordering::Relaxed);
    }

    /// One operation failed with `message`.
    pub fn record_failure(&self, message: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(LastError { message: message.to_string(), at: SystemTime::now() });
        self.last.store(2, Ordering::Relaxed);
    }

    /// A failed attempt that [`super::retry_with_backoff`] is going to repeat.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queries_ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    pub fn queries_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// `Some(true)` when the last operation succeeded, `Some(false)` when it failed, `None`
    /// before the first one.
    pub fn up(&self) -> Option<bool> {
        match self.last.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    pub fn last_ok_at(&self) -> Option<SystemTime> {
        match self.last_ok_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Zeroes the counters (`reset_statistics`); the last outcome and error stay.
    pub fn reset_counters(&self) {
        self.ok.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.retries.store(0, Ordering::Relaxed);
    }
}

/// A snapshot of the database's state for the management interface (`db_status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStatus {
    /// `sqlite`, `postgres` or `mysql`.
    pub backend: &'static str,
    /// `[db] url` with the password replaced by `***`.
    pub url: String,
    /// The migrations have been applied by this process (the tables are there).
    pub ready: bool,
    /// Whether the last operation succeeded (`None`: none tried yet).
    pub up: Option<bool>,
    pub queries_ok: u64,
    pub queries_failed: u64,
    /// Failed attempts that were tried again after a pause.
    pub retries: u64,
    pub last_ok_at: Option<SystemTime>,
    pub last_error: Option<LastError>,
    /// Connections open now, and how many of them are idle.
    pub pool_size: u32,
    pub pool_idle: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_last_outcome() {
        let h = Health::default();
        assert_eq!(h.up(), None);
        assert!(h.last_ok_at().is_none() && h.last_error().is_none());
        h.record_ok();
        assert_eq!(h.up(), Some(true));
        assert!(h.last_ok_at().is_some());
        h.record_failure("connection refused");
        h.record_retry();
        assert_eq!(h.up(), Some(false));
        assert_eq!(h.last_error().unwrap().message, "connection refused");
        assert_eq!((h.queries_ok(), h.queries_failed(), h.retries()), (1, 1, 1));
        h.reset_counters();
        assert_eq!((h.queries_ok(), h.queries_failed(), h.retries()), (0, 0, 0));
        assert_eq!(h.up(), Some(false), "the last outcome survives a reset");
    }
}
