//! Digest credentials (`Authorization` / `Proxy-Authorization`, RFC 3261 §22.4, §25.1;
//! RFC 7616 §3.4): the parameters of one header value, read without copying.
//!
//! Owns the grammar only: which parameters there are and their unquoted values. Checking
//! them (nonce, response, realm) is the auth module's work (modules/auth/).

use std::borrow::Cow;

/// One `Digest` credentials value. Quoted values are returned without their quotes; a
/// quoted value holding a `\` escape is unescaped into an owned string (RFC 3261 §25.1
/// `quoted-pair`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    pub username: Option<Cow<'a, str>>,
    pub realm: Option<Cow<'a, str>>,
    pub nonce: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
    pub response: Option<Cow<'a, str>>,
    pub algorithm: Option<Cow<'a, str>>,
    pub cnonce: Option<Cow<'a, str>>,
    pub opaque: Option<Cow<'a, str>>,
    pub qop: Option<Cow<'a, str>>,
    /// `nc`: eight hex digits as sent (RFC 2617 §3.2.2).
    pub nc: Option<Cow<'a, str>>,
}

/// Why a credentials value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Another scheme than `Digest` (e.g. `Basic`, which SIP forbids: RFC 3261 §22.4).
    #[error("not Digest credentials")]
    NotDigest,
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("a parameter without a name or '='")]
    BadParameter,
    #[error("parameter {0} given twice")]
    Duplicate(&'static str),
}

impl<'a> DigestCredentials<'a> {
    /// Parses `Digest name=value, name="value", …`. Unknown parameters are ignored
    /// (RFC 7616 §3.4: `auth-param`), the scheme name is case-insensitive (RFC 3261 §22.4).
    ///
    /// # Errors
    /// Another scheme, an unterminated quoted string, a parameter with no `=`, or one of the
    /// known parameters twice.
    pub fn parse(value: &'a str) -> Result<DigestCredentials<'a>, CredentialsError> {
        let v = value.trim_start();
        let scheme_end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
        if !v[..scheme_end].eq_ignore_ascii_case("digest") {
            return Err(CredentialsError::NotDigest);
        }
        let mut out = DigestCredentials::default();
        let mut rest = &v[scheme_end..];
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
            if rest.is_empty() {
                return Ok(out);
            }
            let eq = rest.find('=').ok_or(CredentialsError::BadParameter)?;
            let name = rest[..eq].trim();
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace() || c == ',') {
                return Err(CredentialsError::BadParameter);
            }
            let after = rest[eq + 1..].trim_start();
            let (val, next) = if let Some(q) = after.strip_prefix('"') {
                let (val, used) = quoted(q)?;
                (val, &q[used..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (Cow::Borrowed(after[..end].trim_end()), &after[end..])
            };
            rest = next;
            let slot = match name.to_ascii_lowercase().as_str() {
                "username" => (&mut out.username, "username"),
                "realm" => (&mut out.realm, "realm"),
                "nonce" => (&mut out.nonce, "nonce"),
                "uri" => (&mut out.uri, "uri"),
                "response" => (&mut out.response, "response"),
                "algorithm" => (&mut out.algorithm, "algorithm"),
                "cnonce" => (&mut out.cnonce, "cnonce"),
                "opaque" => (&mut out.opaque, "opaque"),
                "qop" => (&mut out.qop, "qop"),
                "nc" => (&mut out.nc, "nc"),
                _ => continue,
            };
            if slot.0.is_some() {
                return Err(CredentialsError::Duplicate(slot.1));
            }
            *slot.0 = Some(val);
        }
    }

    /// The user part of `username` (before an `@`), what `$au` shows.
    pub fn user(&self) -> &str {
        let u = self.username.as_deref().unwrap_or("");
        u.split_once('@').map_or(u, |(user, _)| user)
    }

    /// The domain part of `username` when it has one (`alice@example.com`).
    pub fn user_domain(&self) -> Option<&str> {
        self.username.as_deref().and_then(|u| u.split_once('@')).map(|(_, d)| d)
    }
}

/// The content of a quoted string whose opening `"` was just consumed: the value and how
/// many bytes of `q` it used (closing quote included).
fn quoted(q: &str) -> Result<(Cow<'_, str>, usize), CredentialsError> {
    let b = q.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let val = match owned {
                    Some(s) => Cow::Owned(s),
                    None => Cow::Borrowed(&q[..i]),
                };
                return Ok((val, i + 1));
            }
            b'\\' if i + 1 < b.len() => {
                let s = owned.get_or_insert_with(|| q[..i].to_string());
                // The escaped character may be multi-byte UTF-8: copy the whole char.
                let ch = q[i + 1..].chars().next().ok_or(CredentialsError::Unterminated)?;
                s.push(ch);
                i += 1 + ch.len_utf8();
                continue;
            }
            _ => {}
        }
        let ch = q[i..].chars().next().ok_or(CredentialsError::Unterminated)?;
        if let Some(s) = owned.as_mut() {
            s.push(ch);
        }
        i += ch.len_utf8();
    }
    Err(CredentialsError::Unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example() {
        // RFC 2617 §3.5, as a SIP UA sends it.
        let v = r#"Digest username="Mufasa", realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
            nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
            opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = DigestCredentials::parse(v).unwrap();
        assert_eq!(c.username.as_deref(), Some("Mufasa"));
        assert_eq!(c.realm.as_deref(), Some("testrealm@host.com"));
        assert_eq!(c.uri.as_deref(), Some("/dir/index.html"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(c.response.as_deref(), Some("6629fae49393a05397450978507c4ef1"));
        assert_eq!(c.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
        assert_eq!(c.algorithm, None);
    }

    #[test]
    fn forms() {
        let c = DigestCredentials::parse(
            r#"digest USERNAME = "alice@example.com" ,realm="a\"b",algorithm=SHA-256,x="y,z",nonce=abc"#,
        )
        .unwrap();
        assert_eq!((c.user(), c.user_domain()), ("alice", Some("example.com")));
        assert_eq!(c.realm.as_deref(), Some("a\"b"));
        assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(c.nonce.as_deref(), Some("abc"));
        assert_eq!(DigestCredentials::parse("Basic QWxhZGRpbjpvcGVu"), Err(CredentialsError::NotDigest));
        assert_eq!(DigestCredentials::parse(r#"Digest username="x"#), Err(CredentialsError::Unterminated));
        assert_eq!(DigestCredentials::parse("Digest username"), Err(CredentialsError::BadParameter));
        assert_eq!(
            DigestCredentials::parse(r#"Digest nonce="a", nonce="b""#),
            Err(CredentialsError::Duplicate("nonce"))
        );
        assert_eq!(DigestCredentials::parse("Digest").unwrap(), DigestCredentials::default());
        assert_eq!(DigestCredentials::parse(r#"Digest username="ü\é""#).unwrap().user(), "üé");
    }
}
