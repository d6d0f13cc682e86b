//! Nonces the proxy can verify without remembering what it sent (RFC 7616 §3.3 leaves
//! the nonce's content to the server), plus a bounded table that stops replays.
//!
//! A nonce is 48 hex digits: the expiry (unix seconds, 8), an index (8), and the first 16
//! bytes of SHA-256 over the secret, the expiry and the index (32). The MAC proves the proxy
//! issued it and nobody moved its expiry; the index names a slot of the replay table.
//!
//! The replay table has a fixed number of slots (a power of two, sized from
//! `nonce_expire` × [`RATE`]); index `i` lives in slot `i mod size`, which holds the full
//! `(index, expiry)` of the nonce that owns it and the highest `nc` seen with it. A new
//! nonce takes over its slot, so a nonce whose slot was taken is refused as stale (the UA
//! retries with a fresh one). Memory stays `16 bytes × slots` whatever the traffic.

use super::digest::hex;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Challenges per second the replay table is sized for: at a higher sustained rate, slots
/// are taken over before their nonce expires and those nonces come back stale.
pub const RATE: u64 = 2000;
const MIN_SLOTS: u64 = 1024;
const MAX_SLOTS: u64 = 1 << 22;

/// Why a nonce was refused; every case makes the credentials stale (-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not one of ours: bad shape or MAC (another node's secret, a previous run's).
    #[error("nonce not issued by this proxy")]
    Foreign,
    #[error("nonce expired")]
    Expired,
    /// Its replay slot was taken by a newer nonce.
    #[error("nonce evicted from the replay table")]
    Evicted,
    /// `nc` not above the highest seen, or a qop-less nonce used twice (RFC 7616 §3.4: the
    /// server "MUST" detect a repeated nc for the same nonce when it keeps state).
    #[error("nonce count not increasing (replay)")]
    Replayed,
}

/// One replay slot: `(index << 32) | expiry` of its owner, and the highest `nc` seen.
#[derive(Default)]
struct Slot {
    owner: AtomicU64,
    nc: AtomicU32,
}

/// Issues and checks nonces.
pub struct Nonces {
    secret: Vec<u8>,
    /// Seconds a nonce is valid (`[auth] nonce_expire`).
    expire: u32,
    next: AtomicU32,
    slots: Box<[Slot]>,
}

impl Nonces {
    /// `secret` empty: a random one (nonces then do not survive a restart, and each node
    /// of a pair has its own).
    pub fn new(secret: &str, expire_s: u64) -> Nonces {
        let secret = if secret.is_empty() { random_secret() } else { secret.as_bytes().to_vec() };
        let size = (expire_s.max(1).saturating_mul(RATE)).clamp(MIN_SLOTS, MAX_SLOTS).next_power_of_two();
        Nonces {
            secret,
            expire: u32::try_from(expire_s).unwrap_or(u32::MAX),
            // A random start: a nonce from a previous run (same configured secret) does
            // not meet a slot that happens to be owned by the same index.
            next: AtomicU32::new(fastrand::u32(..)),
            slots: (0..size).map(|_| Slot::default()).collect(),
        }
    }

    /// Number of replay slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// A fresh nonce, valid for `nonce_expire` seconds from `now` (unix seconds).
    pub fn issue(&self, now: u64) -> String {
        let expiry = u32::try_from(now).unwrap_or(u32::MAX).saturating_add(self.expire);
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(index);
        slot.nc.store(0, Ordering::Relaxed);
        slot.owner.store(owner(index, expiry), Ordering::Release);
        format!("{expiry:08x}{index:08x}{}", self.mac(expiry, index))
    }

    /// Checks `nonce` at `now`: ours, not expired, still owning its slot, and `nc` above the
    /// highest seen (`None`: no qop, the nonce is good once). Records `nc` when it passes;
    /// call it only for credentials whose response was right, so a wrong guess burns nothing.
    ///
    /// # Errors
    /// [`NonceError`]: the credentials are stale.
    pub fn check(&self, nonce: &str, nc: Option<u32>, now: u64) -> Result<(), NonceError> {
        let (expiry, index) = self.verify(nonce)?;
        if now > u64::from(expiry) {
            return Err(NonceError::Expired);
        }
        let slot = self.slot(index);
        let me = owner(index, expiry);
        if slot.owner.load(Ordering::Acquire) != me {
            return Err(NonceError::Evicted);
        }
        // RFC 2617 §3.2.2: nc counts requests sent with this nonce, starting at 1.
        let nc = nc.unwrap_or(1).max(1);
        let seen = slot.nc.fetch_max(nc, Ordering::AcqRel);
        if seen >= nc {
            return Err(NonceError::Replayed);
        }
        // Taken over while we counted: the count went to the new owner, which then needs
        // an nc above ours; refuse ours rather than let it pass on a slot it lost.
        if slot.owner.load(Ordering::Acquire) != me {
            return Err(NonceError::Evicted);
        }
        Ok(())
    }

    /// The expiry and index of a nonce with a valid MAC.
    fn verify(&self, nonce: &str) -> Result<(u32, u32), NonceError> {
        if nonce.len() != 48 || !nonce.is_ascii() {
            return Err(NonceError::Foreign);
        }
        let expiry = u32::from_str_radix(&nonce[..8], 16).map_err(|_| NonceError::Foreign)?;
        let index = u32::from_str_radix(&nonce[8..16], 16).map_err(|_| NonceError::Foreign)?;
        if !super::digest::same_hex(&nonce[16..], &self.mac(expiry, index)) {
            return Err(NonceError::Foreign);
        }
        Ok((expiry, index))
    }

    fn mac(&self, expiry: u32, index: u32) -> String {
        let mut h = Sha256::new();
        h.update(&self.secret);
        h.update(expiry.to_be_bytes());
        h.update(index.to_be_bytes());
        h.update(&self.secret);
        hex(&h.finalize()[..16])
    }

    fn slot(&self, index: u32) -> &Slot {
        &self.slots[(index as usize) & (self.slots.len() - 1)]
    }
}

fn owner(index: u32, expiry: u32) -> u64 {
    (u64::from(index) << 32) | u64::from(expiry)
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// 32 bytes from the kernel's generator; the time and a PRNG if it cannot be read.
fn random_secret() -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        tracing::warn!("auth: /dev/urandom unreadable; the nonce secret comes from a weaker generator");
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        fastrand::seed(t as u64 ^ u64::from(std::process::id()));
        buf.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let n = Nonces::new("s3cret", 30);
        assert_eq!(n.capacity(), 65536);
        let nonce = n.issue(1000);
        assert_eq!(nonce.len(), 48);
        assert_eq!(n.check(&nonce, Some(1), 1010), Ok(()));
        assert_eq!(n.check(&nonce, Some(1), 1010), Err(NonceError::Replayed));
        assert_eq!(n.check(&nonce, Some(3), 1010), Ok(()), "nc may skip");
        assert_eq!(n.check(&nonce, Some(2), 1010), Err(NonceError::Replayed));
        assert_eq!(n.check(&nonce, Some(4), 1031), Err(NonceError::Expired));
        let once = n.issue(1000);
        assert_eq!(n.check(&once, None, 1001), Ok(()));
        assert_eq!(n.check(&once, None, 1001), Err(NonceError::Replayed), "qop-less: once");
    }

    #[test]
    fn foreign_and_tampered() {
        let a = Nonces::new("a", 30);
        let b = Nonces::new("b", 30);
        let nonce = a.issue(1000);
        assert_eq!(b.check(&nonce, Some(1), 1000), Err(NonceError::Foreign));
        // A later expiry with the old MAC.
        let moved = format!("{:08x}{}", 2000, &nonce[8..]);
        assert_eq!(a.check(&moved, Some(1), 1000), Err(NonceError::Foreign));
        for bad in ["", "xyz", &"g".repeat(48), "é"] {
            assert_eq!(a.check(bad, None, 1000), Err(NonceError::Foreign));
        }
        assert_ne!(Nonces::new("", 30).issue(1), Nonces::new("", 30).issue(1), "random secrets differ");
    }

    #[test]
    fn a_taken_slot_evicts_its_old_nonce() {
        let n = Nonces::new("s", 0);
        let first = n.issue(1000);
        for _ in 0..n.capacity() {
            n.issue(1000);
        }
        assert_eq!(n.check(&first, Some(1), 1000), Err(NonceError::Evicted));
    }
}
