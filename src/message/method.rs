//! SIP request methods. Known ones compare by identity, unknown ones by case-insensitive text.

use std::fmt;

#[derive(Clone, Debug)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token (RFC 3261 §25.1 `extension-method`), kept as written.
    Other(String),
}

/// Slots of a per-method table ([`Method::index`]): the known methods in declaration order,
/// then one shared by every extension method.
pub const METHOD_SLOTS: usize = 15;

/// The name of each slot of a per-method table, in [`Method::index`] order.
pub const METHOD_SLOT_NAMES: [&str; METHOD_SLOTS] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "OTHER",
];

impl Method {
    /// A small dense index (0..[`METHOD_SLOTS`]) for counter tables; every extension method
    /// shares the last slot.
    pub fn index(&self) -> usize {
        match self {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Bye => 2,
            Method::Cancel => 3,
            Method::Register => 4,
            Method::Options => 5,
            Method::Info => 6,
            Method::Update => 7,
            Method::Prack => 8,
            Method::Subscribe => 9,
            Method::Notify => 10,
            Method::Refer => 11,
            Method::Message => 12,
            Method::Publish => 13,
            Method::Other(_) => 14,
        }
    }

    /// Methods are case-sensitive on the wire (RFC 3261 §7.1); an unknown spelling is an
    /// extension method, not an error.
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Script-side comparison (`is_method`): known names by identity, unknown ones ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Method::Other(s) => s.eq_ignore_ascii_case(name),
            m => m.as_str().eq_ignore_ascii_case(name),
        }
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        match (self, other) {
            (Method::Other(a), Method::Other(b)) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}
impl Eq for Method {}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_the_index() {
        for (i, name) in METHOD_SLOT_NAMES.iter().enumerate().take(METHOD_SLOTS - 1) {
            let m = Method::from_bytes(name.as_bytes());
            assert_eq!(m.index(), i, "{name}");
            assert_eq!(m.as_str(), *name);
        }
        assert_eq!(Method::from_bytes(b"FOO").index(), METHOD_SLOTS - 1);
    }
}
