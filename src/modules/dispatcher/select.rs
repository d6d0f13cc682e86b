//! Choosing a destination in a set: the OpenSIPS 3.x algorithms (spec §6.2), the `d`
//! default entry, and the failover list the `f` flag keeps.
//!
//! Pure over a set and what the message offers ([`SelectInput`]); the script bindings read
//! the message and write `$du`, `$fs` and the AVPs.

use super::set::DsSet;
use crate::message::Uri;
use std::sync::atomic::Ordering;

/// `ds_select_dst` flags: `f` failover list, `u` hash the user part only, `d` the last
/// entry is the default, `a` append to the failover list. `s` (forced destination, older
/// OpenSIPS) is accepted and means nothing: the destination is always overwritten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub failover: bool,
    pub user_only: bool,
    pub use_default: bool,
    pub append: bool,
}

impl Flags {
    pub fn parse(s: &str) -> Flags {
        let mut f = Flags::default();
        for c in s.chars() {
            match c.to_ascii_lowercase() {
                'f' => f.failover = true,
                'u' => f.user_only = true,
                'd' => f.use_default = true,
                'a' => f.append = true,
                _ => {}
            }
        }
        f
    }
}

/// What the message offers to the algorithms; `None` where the message has no such part.
#[derive(Clone, Debug, Default)]
pub struct SelectInput<'a> {
    /// Algorithm 0.
    pub call_id: Option<&'a str>,
    /// Algorithms 1, 2, 3: the From, To and Request URIs.
    pub from_uri: Option<&'a str>,
    pub to_uri: Option<&'a str>,
    pub ruri: Option<&'a str>,
    /// Algorithm 5: the digest user name of (Proxy-)Authorization.
    pub auth_user: Option<&'a str>,
    /// Algorithm 7: `hash_pvar` with its pseudo-variables expanded.
    pub pvar: Option<&'a str>,
    /// Algorithms 9 and 10: one rank per destination of the set, in set order (the load read
    /// through `pvar_algo_pattern`, or the score of `algo_route`); lower goes first, `None`
    /// or a negative rank leaves the destination out. `None` for algorithm 9 means "no
    /// pattern": it behaves as algorithm 8.
    pub ranks: Option<&'a [Option<i64>]>,
}

/// The outcome of a selection: indexes into the set's destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub index: usize,
    /// The failover list after the selected one (flag `f`): the following active entries
    /// in set order (cyclic), at most `max_results - 1` of them, then the default entry.
    pub failover: Vec<usize>,
}

/// A stable 32-bit hash (the same on every node of a cluster, unlike Rust's `RandomState`):
/// FNV-1a, then a finaliser that spreads close keys apart.
pub fn hash32(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.trim().bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// `user@host[:port]` of a URI (port only when it is not the default for its transport),
/// or the user alone with `user_only`.
pub fn uri_hash_key(uri: &str, user_only: bool) -> Option<String> {
    let u = Uri::parse(uri.trim())?;
    if user_only {
        return Some(u.user().to_string());
    }
    let mut key = format!("{}@{}", u.user(), u.host().to_ascii_lowercase());
    if let Some(p) = u.port() {
        let default = if u.transport() == "tls" { 5061 } else { 5060 };
        if p != default {
            key.push(':');
            key.push_str(&p.to_string());
        }
    }
    Some(key)
}

/// How the algorithm proposed its first candidate.
enum Candidate {
    /// A hash: weighted over the entries; an inactive pick is re-hashed over the active ones.
    Hash(u32),
    /// A position: an inactive pick moves on to the next entry.
    Index(usize),
    /// An ordering (algorithms 9 and 10).
    Ranked(Vec<usize>),
}

/// Index of `h` over `idx` (walking running weights; `h mod count` when all weights are 0).
fn weighted(set: &DsSet, h: u32, idx: &[usize]) -> Option<usize> {
    if idx.is_empty() {
        return None;
    }
    let total: u64 = idx.iter().map(|&i| set.dests[i].weight as u64).sum();
    if total == 0 {
        return Some(idx[h as usize % idx.len()]);
    }
    let mut r = h as u64 % total;
    for &i in idx {
        let w = set.dests[i].weight as u64;
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    idx.last().copied()
}

impl DsSet {
    /// Runs algorithm `alg` with `flags`; the reason when nothing can be selected.
    pub(crate) fn select(
        &self,
        alg: i64,
        input: &SelectInput<'_>,
        flags: Flags,
        max_results: Option<usize>,
    ) -> Result<Selection, String> {
        let n = self.dests.len();
        if n == 0 {
            return Err(format!("set {} is empty", self.id));
        }
        if !self.dests.iter().any(|d| d.is_active()) {
            return Err(format!("no active destination in set {}", self.id));
        }
        // With `d`, the last entry is kept out of the choice (unless it is the only one).
        let size = if flags.use_default && n > 1 { n - 1 } else { n };
        let default = flags.use_default.then_some(n - 1);
        let last = self.last.load(Ordering::Relaxed) % size;
        let need = |v: Option<&str>, what: &str| v.map(str::to_string).ok_or_else(|| format!("no {what} to hash"));
        let uri_key = |v: Option<&str>, what: &str| -> Result<u32, String> {
            let uri = need(v, what)?;
            uri_hash_key(&uri, flags.user_only).map(|k| hash32(&k)).ok_or_else(|| format!("bad {what} {uri:?}"))
        };
        let cand = match alg {
            0 => Candidate::Hash(hash32(&need(input.call_id, "Call-ID")?)),
            1 => Candidate::Hash(uri_key(input.from_uri, "From URI")?),
            2 => Candidate::Hash(uri_key(input.to_uri, "To URI")?),
            3 => Candidate::Hash(uri_key(input.ruri, "R-URI")?),
            4 => {
                let d = &self.dests[last];
                if d.rt.rr_count.load(Ordering::Relaxed) < d.weight {
                    Candidate::Index(last)
                } else {
                    d.rt.rr_count.store(0, Ordering::Relaxed);
                    Candidate::Index((last + 1) % size)
                }
            }
            5 => match input.auth_user.map(str::trim).filter(|u| !u.is_empty()) {
                Some(user) => Candidate::Hash(hash32(user)),
                None => Candidate::Index((last + 1) % size),
            },
            6 => Candidate::Hash(fastrand::u32(..)),
            7 => match input.pvar.map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => Candidate::Hash(hash32(p)),
                None => return Err("hash_pvar is not set or expands to nothing".into()),
            },
            9 | 10 => match input.ranks {
                Some(ranks) => {
                    let mut order: Vec<usize> =
                        (0..size).filter(|&i| ranks.get(i).copied().flatten().is_some_and(|r| r >= 0)).collect();
                    order.sort_by_key(|&i| ranks[i]);
                    Candidate::Ranked(order)
                }
                None if alg == 9 => Candidate::Index(0),
                None => return Err("algorithm 10 needs [dispatcher] algo_route".into()),
            },
            _ => Candidate::Index(0),
        };
        let fallback = || match default {
            Some(d) if self.dests[d].is_active() => Ok(d),
            _ => Err(format!("no active destination in set {}", self.id)),
        };
        let (index, ranked) = match cand {
            Candidate::Ranked(order) => match order.iter().copied().find(|&i| self.dests[i].is_active()) {
                Some(i) => (i, Some(order)),
                None => (fallback()?, Some(order)),
            },
            Candidate::Hash(h) => {
                let all: Vec<usize> = (0..size).collect();
                let first = weighted(self, h, &all).unwrap_or(0);
                if self.dests[first].is_active() {
                    (first, None)
                } else {
                    let active: Vec<usize> = all.into_iter().filter(|&i| self.dests[i].is_active()).collect();
                    match weighted(self, h, &active) {
                        Some(i) => (i, None),
                        None => (fallback()?, None),
                    }
                }
            }
            Candidate::Index(start) => {
                let mut i = start;
                loop {
                    if self.dests[i].is_active() {
                        break (i, None);
                    }
                    i = (i + 1) % size;
                    if i == start {
                        break (fallback()?, None);
                    }
                }
            }
        };
        self.last.store(index, Ordering::Relaxed);
        let chosen = &self.dests[index];
        if alg == 4 {
            chosen.rt.rr_count.fetch_add(1, Ordering::Relaxed);
        }
        chosen.rt.chosen.fetch_add(1, Ordering::Relaxed);
        let mut failover = Vec::new();
        if flags.failover {
            let others: Box<dyn Iterator<Item = usize>> = match &ranked {
                Some(order) => Box::new(order.clone().into_iter()),
                None => Box::new((1..n).map(|k| (index + k) % n)),
            };
            let limit = max_results.filter(|&m| m > 0).map_or(usize::MAX, |m| m - 1);
            failover
                .extend(others.filter(|&i| i != index && Some(i) != default && self.dests[i].is_active()).take(limit));
            // The default goes last whatever its state (OpenSIPS does the same).
            if let Some(d) = default.filter(|&d| d != index) {
                failover.push(d);
            }
        }
        Ok(Selection { index, failover })
    }
}
