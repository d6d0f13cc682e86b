//! The digest computation (RFC 2617 §3.2.2, RFC 7616 §3.4.1–3.4.3, RFC 3261 §22.4): HA1,
//! HA2 and the expected `response`, for every algorithm SIP UAs send. Pure functions of
//! their inputs; which HA1 to start from (a stored hash or a password) is the caller's.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

/// The `algorithm` of a challenge or of credentials (RFC 7616 §3.3; RFC 8760 for SIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512t256,
    Sha512t256Sess,
}

impl Algorithm {
    /// Every algorithm, in the order a challenge offers them when asked for all.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512t256,
        Algorithm::Sha512t256Sess,
    ];

    /// The token as written in headers (case-insensitive when read: RFC 7616 §3.3).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512t256 => "SHA-512-256",
            Algorithm::Sha512t256Sess => "SHA-512-256-sess",
        }
    }

    /// `None` for a token we do not know. Credentials without `algorithm` mean MD5
    /// (RFC 2617 §3.2.1); the caller maps the absent parameter to [`Algorithm::Md5`].
    pub fn parse(token: &str) -> Option<Algorithm> {
        let t = token.trim();
        Algorithm::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(t))
    }

    /// `-sess` variants hash the nonce and cnonce into HA1 (RFC 7616 §3.4.2).
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512t256Sess)
    }

    /// The algorithm without `-sess`: the one the stored HA1 was made with.
    pub fn base(self) -> Algorithm {
        match self {
            Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256Sess => Algorithm::Sha256,
            Algorithm::Sha512t256Sess => Algorithm::Sha512t256,
            other => other,
        }
    }

    /// Length of a hash in hex digits.
    pub fn hex_len(self) -> usize {
        match self.base() {
            Algorithm::Md5 => 32,
            _ => 64,
        }
    }

    /// `H(p1 ":" p2 ":" …)` in lower-case hex (RFC 7616 §3.4: "KD" and "H" both are this).
    pub fn hash(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize())
        }
        match self.base() {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
            _ => run::<Sha512_256>(parts),
        }
    }
}

/// The `qop` the credentials were computed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    /// RFC 2069 compatibility: no qop, no cnonce, no nc.
    None,
    Auth,
    /// `auth-int`: HA2 covers the body too (RFC 7616 §3.4.3).
    AuthInt,
}

impl Qop {
    /// `None` for a value we do not offer.
    pub fn parse(v: Option<&str>) -> Option<Qop> {
        match v.map(str::trim) {
            None => Some(Qop::None),
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Qop::None => "",
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// HA1 from the password: `H(username ":" realm ":" password)` (RFC 7616 §3.4.2), the value
/// the subscriber table's `ha1` / `ha1_sha256` / `ha1_sha512t256` columns hold.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.base().hash(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// What the response is computed over besides HA1.
#[derive(Clone, Copy, Debug)]
pub struct Challenge<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    pub cnonce: &'a str,
    pub nc: &'a str,
    pub qop: Qop,
    /// The message body (`auth-int` only).
    pub body: &'a [u8],
}

/// The `response` a UA knowing `base_ha1` (HA1 of the base algorithm, as stored) must send.
pub fn response(alg: Algorithm, base_ha1: &str, c: &Challenge<'_>) -> String {
    // RFC 7616 §3.4.2: for -sess, HA1 = H(H(user:realm:pass) ":" nonce ":" cnonce).
    let ha1 = if alg.is_sess() {
        alg.hash(&[base_ha1.as_bytes(), c.nonce.as_bytes(), c.cnonce.as_bytes()])
    } else {
        base_ha1.to_string()
    };
    // RFC 7616 §3.4.3: HA2 = H(method ":" uri), with ":" H(body) for auth-int.
    let ha2 = match c.qop {
        Qop::AuthInt => {
            let body_hash = alg.hash(&[c.body]);
            alg.hash(&[c.method.as_bytes(), c.uri.as_bytes(), body_hash.as_bytes()])
        }
        _ => alg.hash(&[c.method.as_bytes(), c.uri.as_bytes()]),
    };
    match c.qop {
        // RFC 2617 §3.2.2.1 (RFC 2069 form).
        Qop::None => alg.hash(&[ha1.as_bytes(), c.nonce.as_bytes(), ha2.as_bytes()]),
        q => alg.hash(&[
            ha1.as_bytes(),
            c.nonce.as_bytes(),
            c.nc.as_bytes(),
            c.cnonce.as_bytes(),
            q.as_str().as_bytes(),
            ha2.as_bytes(),
        ]),
    }
}

/// Compares two hex strings without returning early on the first difference (a response
/// must not leak, through timing, how much of it was right), ignoring ASCII case.
pub fn same_hex(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_section_3_5() {
        let ha1 = ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        let c = Challenge {
            method: "GET",
            uri: "/dir/index.html",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            cnonce: "0a4f113b",
            nc: "00000001",
            qop: Qop::Auth,
            body: b"",
        };
        assert_eq!(response(Algorithm::Md5, &ha1, &c), "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc_7616_section_3_9_1() {
        let c = Challenge {
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: "00000001",
            qop: Qop::Auth,
            body: b"",
        };
        let (user, realm, pass) = ("Mufasa", "http-auth@example.org", "Circle of Life");
        let md5 = ha1(Algorithm::Md5, user, realm, pass);
        assert_eq!(response(Algorithm::Md5, &md5, &c), "8ca523f5e9506fed4657c9700eebdbec");
        let sha = ha1(Algorithm::Sha256, user, realm, pass);
        assert_eq!(
            response(Algorithm::Sha256, &sha, &c),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sess_and_auth_int_follow_the_formulas() {
        let base = ha1(Algorithm::Sha256, "u", "r", "p");
        let c = Challenge {
            method: "INVITE",
            uri: "sip:b@r",
            nonce: "n",
            cnonce: "c",
            nc: "00000002",
            qop: Qop::AuthInt,
            body: b"v=0\r\n",
        };
        let sess_ha1 = Algorithm::Sha256.hash(&[base.as_bytes(), b"n", b"c"]);
        let ha2 = Algorithm::Sha256.hash(&[b"INVITE", b"sip:b@r", Algorithm::Sha256.hash(&[b"v=0\r\n"]).as_bytes()]);
        let want = Algorithm::Sha256.hash(&[sess_ha1.as_bytes(), b"n", b"00000002", b"c", b"auth-int", ha2.as_bytes()]);
        assert_eq!(response(Algorithm::Sha256Sess, &base, &c), want);
        let none = Challenge { qop: Qop::None, ..c };
        let md5 = ha1(Algorithm::Md5, "u", "r", "p");
        let ha2 = Algorithm::Md5.hash(&[b"INVITE", b"sip:b@r"]);
        assert_eq!(response(Algorithm::Md5, &md5, &none), Algorithm::Md5.hash(&[md5.as_bytes(), b"n", ha2.as_bytes()]));
        assert_eq!(ha1(Algorithm::Sha512t256Sess, "u", "r", "p").len(), 64);
    }

    #[test]
    fn tokens() {
        assert_eq!(Algorithm::parse("md5-SESS"), Some(Algorithm::Md5Sess));
        assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("SHA-1"), None);
        assert_eq!(Qop::parse(None), Some(Qop::None));
        assert_eq!(Qop::parse(Some("AUTH")), Some(Qop::Auth));
        assert_eq!(Qop::parse(Some("auth,auth-int")), None);
        assert!(same_hex("ABcd", "abCD"));
        assert!(!same_hex("abcd", "abce"));
        assert!(!same_hex("abc", "abcd"));
    }
}
