//! Header names: the ones the proxy reads get an identity, compact forms included
//! (RFC 3261 §7.3.3); everything else is `Other` and compared by text.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Route,
    RecordRoute,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Expires,
    Authorization,
    ProxyAuthorization,
    Supported,
    Require,
    ProxyRequire,
    Reason,
    Path,
    UserAgent,
    Other,
}

impl HeaderName {
    /// Header names are case-insensitive (RFC 3261 §7.3.1).
    pub fn from_bytes(b: &[u8]) -> HeaderName {
        if b.len() == 1 {
            return match b[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                _ => HeaderName::Other,
            };
        }
        const KNOWN: &[(&[u8], HeaderName)] = &[
            (b"via", HeaderName::Via),
            (b"from", HeaderName::From),
            (b"to", HeaderName::To),
            (b"call-id", HeaderName::CallId),
            (b"cseq", HeaderName::CSeq),
            (b"route", HeaderName::Route),
            (b"record-route", HeaderName::RecordRoute),
            (b"contact", HeaderName::Contact),
            (b"max-forwards", HeaderName::MaxForwards),
            (b"content-length", HeaderName::ContentLength),
            (b"content-type", HeaderName::ContentType),
            (b"expires", HeaderName::Expires),
            (b"authorization", HeaderName::Authorization),
            (b"proxy-authorization", HeaderName::ProxyAuthorization),
            (b"supported", HeaderName::Supported),
            (b"require", HeaderName::Require),
            (b"proxy-require", HeaderName::ProxyRequire),
            (b"reason", HeaderName::Reason),
            (b"path", HeaderName::Path),
            (b"user-agent", HeaderName::UserAgent),
        ];
        for (name, id) in KNOWN {
            if name.eq_ignore_ascii_case(b) {
                return *id;
            }
        }
        HeaderName::Other
    }
}
