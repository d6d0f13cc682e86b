//! Counters of the transaction layer (OpenSIPS's `tm:` statistics), and the small lock-free
//! counter types the proxy's own statistics reuse.
//!
//! Every counter is a plain atomic bumped with `Relaxed` ordering: the hot path pays one
//! uncontended add, and readers (the management interface) only need eventually exact
//! numbers, not a consistent snapshot across counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// One resettable counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Status classes of a [`ByClass`] table, in index order.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Counts per status class 1xx..6xx.
#[derive(Default, Debug)]
pub struct ByClass([Counter; 6]);

impl ByClass {
    /// Counts `code` in its class; codes outside 100..=699 are not counted.
    #[inline]
    pub fn inc(&self, code: u16) {
        if let Some(c) = Self::slot(code).and_then(|i| self.0.get(i)) {
            c.inc();
        }
    }
    /// The index of `code`'s class in [`STATUS_CLASSES`].
    pub fn slot(code: u16) -> Option<usize> {
        (100..700).contains(&code).then(|| (code / 100 - 1) as usize)
    }
    /// The counter of class index `i` (0 = 1xx).
    pub fn class(&self, i: usize) -> Option<&Counter> {
        self.0.get(i)
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
    pub fn reset(&self) {
        self.0.iter().for_each(Counter::reset);
    }
}

/// The transaction layer's counters (`tm:` group of `get_statistics`).
#[derive(Default, Debug)]
pub struct TmStats {
    /// Cells created for received requests (OpenSIPS `UAS_transactions`).
    pub uas_transactions: Counter,
    /// Transactions for requests this proxy originates itself (OpenSIPS `UAC_transactions`):
    /// the dispatcher's probes.
    pub uac_transactions: Counter,
    /// Cells by the class of the first final reply sent upstream (`2xx_transactions` …).
    pub completed: ByClass,
    /// Replies matched to a cell (`received_replies`).
    pub received_replies: Counter,
    /// Replies received on a branch and relayed upstream, by class (`relayed_replies`).
    pub relayed: ByClass,
    /// Replies built here and sent upstream (t_reply, 100 Trying, 408, 477 …), by class
    /// (`local_replies`).
    pub local: ByClass,
    /// Branches sent downstream (siprox's own `relayed_requests`).
    pub relayed_requests: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_code() {
        let b = ByClass::default();
        for code in [100, 180, 199, 200, 302, 404, 486, 503, 603, 699, 99, 700, 0] {
            b.inc(code);
        }
        let counts: Vec<u64> = (0..6).map(|i| b.class(i).map(Counter::get).unwrap_or(99)).collect();
        assert_eq!(counts, vec![3, 1, 1, 2, 1, 2]);
        assert_eq!(b.total(), 10);
        b.reset();
        assert_eq!(b.total(), 0);
    }
}
