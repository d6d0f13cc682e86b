//! The heartbeat datagram: who sends it, what it says, and an HMAC-SHA256 over all of it
//! with the pair's shared key, so only a holder of the key can make a node give the VIP up
//! or take it (Heartbeat's authkeys warns that its `crc` method protects nothing).
//!
//! ```text
//! "SPXHB" version(1) | role(1) flags(1) priority(2) | generation(8) seq(8) sent_ms(8)
//! | config(8) script(8) | node_len(1) node | yield_len(1) yield_to | HMAC-SHA256(32)
//! ```
//! Integers are big-endian. `generation` is the sender's start time (µs since the epoch),
//! `seq` counts its heartbeats, `sent_ms` is its wall clock: a receiver drops a datagram
//! whose (generation, seq) it has seen already on that path (a replay) and one whose clock
//! is more than `max_age` away from its own (stale, or replayed after a receiver restart).

use super::election::{Announce, Role};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

const MAGIC: &[u8; 5] = b"SPXHB";
const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
const FLAG_ELIGIBLE: u8 = 1;
const FLAG_CLAIM: u8 = 2;

/// A node name fits one length byte; config.rs allows up to 64 characters.
const MAX_NAME: usize = 255;

type HmacSha256 = Hmac<Sha256>;

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub node: String,
    pub announce: Announce,
    pub generation: u64,
    pub seq: u64,
    /// Sender's wall clock, ms since the epoch.
    pub sent_ms: u64,
    /// The first 8 bytes of the SHA-256 of the sender's config settings and of its
    /// running script: a pair should run the same files.
    pub config: [u8; 8],
    pub script: [u8; 8],
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a heartbeat of this version (short, wrong magic, bad field).
    Malformed,
    /// The HMAC does not match: another key, or altered on the way.
    Forged,
    /// Sent too long ago (or the clocks of the pair disagree by more than `max_age`).
    Stale,
    /// Seen already on this path, or older than one seen.
    Replayed,
    /// This node's own heartbeat (broadcast and multicast come back).
    Own,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::Forged => "forged",
            Rejected::Stale => "stale",
            Rejected::Replayed => "replayed",
            Rejected::Own => "own",
        }
    }
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Standby => 0,
        Role::Active => 1,
        Role::Leaving => 2,
    }
}

fn role_of(b: u8) -> Option<Role> {
    match b {
        0 => Some(Role::Standby),
        1 => Some(Role::Active),
        2 => Some(Role::Leaving),
        _ => None,
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (RFC 2104 §2): this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// The datagram for `beat`, signed with `key`.
pub fn encode(beat: &Beat, key: &[u8]) -> Vec<u8> {
    let a = &beat.announce;
    let node = &beat.node.as_bytes()[..beat.node.len().min(MAX_NAME)];
    let to = a.yield_to.as_deref().unwrap_or("").as_bytes();
    let to = &to[..to.len().min(MAX_NAME)];
    let mut out = Vec::with_capacity(64 + node.len() + to.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(role_byte(a.role));
    out.push(if a.eligible { FLAG_ELIGIBLE } else { 0 } | if a.claim { FLAG_CLAIM } else { 0 });
    out.extend_from_slice(&a.priority.to_be_bytes());
    out.extend_from_slice(&beat.generation.to_be_bytes());
    out.extend_from_slice(&beat.seq.to_be_bytes());
    out.extend_from_slice(&beat.sent_ms.to_be_bytes());
    out.extend_from_slice(&beat.config);
    out.extend_from_slice(&beat.script);
    out.push(node.len() as u8);
    out.extend_from_slice(node);
    out.push(to.len() as u8);
    out.extend_from_slice(to);
    let mut m = mac(key);
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

/// Reads fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    fn text(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Checks the HMAC of `data` with `key` (in constant time) and reads it.
///
/// # Errors
/// [`Rejected::Malformed`] or [`Rejected::Forged`].
pub fn decode(data: &[u8], key: &[u8]) -> Result<Beat, Rejected> {
    if data.len() < MAGIC.len() + MAC_LEN || !data.starts_with(MAGIC) {
        return Err(Rejected::Malformed);
    }
    let (body, tag) = data.split_at(data.len() - MAC_LEN);
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(tag).map_err(|_| Rejected::Forged)?;
    parse_body(&body[MAGIC.len()..]).ok_or(Rejected::Malformed)
}

fn parse_body(body: &[u8]) -> Option<Beat> {
    let mut r = Reader(body);
    if r.u8()? != VERSION {
        return None;
    }
    let role = role_of(r.u8()?)?;
    let flags = r.u8()?;
    let priority = u16::from_be_bytes(r.array()?);
    let generation = u64::from_be_bytes(r.array()?);
    let seq = u64::from_be_bytes(r.array()?);
    let sent_ms = u64::from_be_bytes(r.array()?);
    let config = r.array()?;
    let script = r.array()?;
    let node = r.text()?;
    let to = r.text()?;
    if node.is_empty() || !r.0.is_empty() {
        return None;
    }
    let announce = Announce {
        role,
        priority,
        eligible: flags & FLAG_ELIGIBLE != 0,
        claim: flags & FLAG_CLAIM != 0,
        yield_to: (!to.is_empty()).then_some(to),
    };
    Some(Beat { node, announce, generation, seq, sent_ms, config, script })
}

/// Per path and peer: the newest (generation, seq) taken.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    newest: std::collections::HashMap<(usize, String), (u64, u64)>,
}

impl ReplayGuard {
    /// Takes `beat` heard on `path` at wall clock `now_ms`, or says why not.
    ///
    /// # Errors
    /// [`Rejected::Stale`] or [`Rejected::Replayed`].
    pub fn check(&mut self, path: usize, beat: &Beat, now_ms: u64, max_age: Duration) -> Result<(), Rejected> {
        let max = max_age.as_millis() as u64;
        if now_ms.abs_diff(beat.sent_ms) > max {
            return Err(Rejected::Stale);
        }
        let id = (beat.generation, beat.seq);
        let slot = self.newest.entry((path, beat.node.clone())).or_insert((0, 0));
        if id <= *slot {
            return Err(Rejected::Replayed);
        }
        *slot = id;
        Ok(())
    }
}

/// The first 8 bytes of the SHA-256 of `text` (a file's settings, a script's source).
pub fn short_hash(text: &str) -> [u8; 8] {
    use sha2::Digest;
    let mut out = [0u8; 8];
    out.copy_from_slice(&Sha256::digest(text.as_bytes())[..8]);
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(seq: u64) -> Beat {
        Beat {
            node: "lb1".into(),
            announce: Announce {
                role: Role::Active,
                priority: 100,
                eligible: true,
                claim: false,
                yield_to: Some("lb2".into()),
            },
            generation: 1_700_000_000_000_000,
            seq,
            sent_ms: 1_700_000_000_000,
            config: [1; 8],
            script: [2; 8],
        }
    }

    #[test]
    fn round_trip() {
        let b = beat(7);
        let d = encode(&b, b"k3y");
        assert_eq!(decode(&d, b"k3y"), Ok(b));
        let mut c = beat(8);
        c.announce = Announce { role: Role::Leaving, priority: 0, eligible: false, claim: true, yield_to: None };
        assert_eq!(decode(&encode(&c, b"k"), b"k"), Ok(c));
    }

    #[test]
    fn another_key_or_a_flipped_bit_is_forged() {
        let d = encode(&beat(1), b"right");
        assert_eq!(decode(&d, b"wrong"), Err(Rejected::Forged));
        for i in 5..d.len() {
            let mut x = d.clone();
            x[i] ^= 0x01;
            assert_eq!(decode(&x, b"right"), Err(Rejected::Forged), "byte {i}");
        }
        assert_eq!(decode(b"SPXHB", b"right"), Err(Rejected::Malformed));
        assert_eq!(decode(&[0u8; 80], b"right"), Err(Rejected::Malformed));
        assert_eq!(decode(&d[..d.len() - 1], b"right"), Err(Rejected::Forged));
    }

    #[test]
    fn a_signed_but_bad_body_is_malformed() {
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&[9, 0, 0]);
        let mut m = mac(b"k");
        m.update(&body);
        body.extend_from_slice(&m.finalize().into_bytes());
        assert_eq!(decode(&body, b"k"), Err(Rejected::Malformed));
    }

    #[test]
    fn replays_and_stale_beats_are_refused_per_path() {
        let mut g = ReplayGuard::default();
        let now = 1_700_000_000_000;
        let age = Duration::from_secs(10);
        assert_eq!(g.check(0, &beat(5), now, age), Ok(()));
        assert_eq!(g.check(0, &beat(5), now, age), Err(Rejected::Replayed));
        assert_eq!(g.check(0, &beat(4), now, age), Err(Rejected::Replayed));
        // The same heartbeat on the other path counts for that path.
        assert_eq!(g.check(1, &beat(5), now, age), Ok(()));
        assert_eq!(g.check(0, &beat(6), now, age), Ok(()));
        // A restarted sender: new generation, seq from 1.
        let mut r = beat(1);
        r.generation += 1;
        assert_eq!(g.check(0, &r, now, age), Ok(()));
        assert_eq!(g.check(0, &beat(7), now, age), Err(Rejected::Replayed), "the old run's beats are old");
        assert_eq!(g.check(0, &beat(9), now + 10_001, age), Err(Rejected::Stale));
        assert_eq!(g.check(0, &beat(9), now - 10_001, age), Err(Rejected::Stale));
    }

    #[test]
    fn short_hashes() {
        assert_eq!(hex(&short_hash("abc")), "ba7816bf8f01cfea");
        assert_ne!(short_hash("fn route() {}"), short_hash("fn route() { }"));
        assert_eq!(hex(&[0xab, 1]), "ab01");
    }
}
