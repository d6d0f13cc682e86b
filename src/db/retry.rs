//! Trying a database operation again, with pauses that double up to a cap.
//!
//! Loads, reloads and writes run in tasks of their own, never on the routing path, so a
//! database that is down only delays them: each failure is logged (warn) and counted, the
//! task sleeps, and tries again, up to the policy's attempts, or until the future is dropped
//! (that is how a caller cancels: `tokio::select!` against its shutdown, or
//! `JoinHandle::abort`).

use super::{DbError, Health};
use std::future::Future;
use std::time::Duration;

/// How often and how patiently to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause after the first failure.
    pub initial: Duration,
    /// Longest pause between two attempts.
    pub max_delay: Duration,
    /// Attempts in all, the first included; `None`: until it succeeds or is cancelled.
    pub max_attempts: Option<u32>,
    /// Give up at once when an error is not transient ([`DbError::is_transient`]): bad SQL,
    /// a wrong password, a missing database. Otherwise every error is tried again (a table
    /// that another node is still creating appears later).
    pub stop_on_permanent: bool,
}

impl Default for RetryPolicy {
    /// 200 ms, doubling up to 30 s, until it succeeds; every error retried.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            stop_on_permanent: false,
        }
    }
}

impl RetryPolicy {
    /// The default pauses, at most `n` attempts.
    pub fn attempts(n: u32) -> RetryPolicy {
        RetryPolicy { max_attempts: Some(n.max(1)), ..RetryPolicy::default() }
    }

    /// The pause after `failures` failed attempts (1 = after the first):
    /// `initial · 2^(failures-1)`, at most `max_delay`, before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// [`Self::delay`] spread by ±20 %, so two nodes that lost the database together do not
    /// come back in lockstep.
    fn jittered(&self, failures: u32) -> Duration {
        self.delay(failures).mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

/// Runs `op` until it succeeds, pausing between failures as `policy` says. Each failure is
/// logged as a warning naming `what` and counted in `health` (`retries`, when another
/// attempt follows); the last error is returned when the policy gives up.
///
/// # Errors
/// The last attempt's error, once `policy.max_attempts` is reached or (with
/// `stop_on_permanent`) at the first error that is not transient.
pub async fn retry_with_backoff<T, F, Fut>(
    what: &str,
    policy: &RetryPolicy,
    health: &Health,
    mut op: F,
) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(what, attempts = failures + 1, "database operation succeeded after retrying");
                }
                return Ok(v);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let exhausted = policy.max_attempts.is_some_and(|n| failures >= n);
                let permanent = policy.stop_on_permanent && !e.is_transient();
                if exhausted || permanent {
                    tracing::error!(what, attempts = failures, error = %e, "database operation failed; giving up");
                    return Err(e);
                }
                let pause = policy.jittered(failures);
                health.record_retry();
                tracing::warn!(what, attempt = failures, error = %e, retry_in = ?pause, "database operation failed; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        let ms: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(200), Duration::from_secs(1), "no overflow");
        for n in 1..10 {
            let j = p.jittered(n);
            assert!(j >= p.delay(n).mul_f64(0.79) && j <= p.delay(n).mul_f64(1.21), "{j:?}");
        }
    }

    fn unavailable() -> DbError {
        DbError::Unavailable { url: "postgres://x".into(), reason: "refused".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_attempts_count_and_give_up() {
        let h = Health::default();
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_with_backoff("test", &RetryPolicy::attempts(4), &h, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(unavailable())
        })
        .await;
        assert!(matches!(r, Err(DbError::Unavailable { .. })));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        assert_eq!(h.retries(), 3, "three pauses between four attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_failures() {
        let h = Health::default();
        let calls = AtomicU32::new(0);
        let r = retry_with_backoff("test", &RetryPolicy::default(), &h, || async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0..=2 => Err(unavailable()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(h.retries(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_stop_when_asked() {
        let h = Health::default();
        let calls = AtomicU32::new(0);
        let p = RetryPolicy { stop_on_permanent: true, ..Default::default() };
        let r: Result<(), _> = retry_with_backoff("test", &p, &h, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(DbError::InvalidName("x y".into()))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
