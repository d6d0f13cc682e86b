//! The optional waits of a write-behind loop (the dialog and location writers): each is a
//! `select!` branch that never fires when its source is absent, so one loop serves every
//! mode (a flush timer only in write-back, a poll only in sql-only, no stream after shutdown).

use std::future::pending;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};

/// The next change, or never once the stream is gone.
pub async fn recv<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}

/// `at`, or never.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}

/// The interval's next tick, or never.
pub async fn next_tick(tick: &mut Option<Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => pending().await,
    }
}
