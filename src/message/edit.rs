//! Deferred edits ("lumps" in OpenSIPS): byte ranges of the received message to replace,
//! delete or insert into, applied only when the message is printed for sending. Reads made
//! after an edit still see the received message, as OpenSIPS scripts expect.

use super::{SipMsg, Span};

/// The header line [`Edits::sync_content_length`] adds when a message has none.
const CL_INSERT: &str = "Content-Length: ";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub start: u32,
    pub end: u32,
    pub text: String,
}

impl Edit {
    fn is_insert(&self) -> bool {
        self.start == self.end
    }
}

/// An ordered set of edits against one received message.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    ops: Vec<Edit>,
}

impl Edits {
    pub fn new() -> Edits {
        Edits { ops: Vec::new() }
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn ops(&self) -> &[Edit] {
        &self.ops
    }
    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.ops.push(Edit { start: at as u32, end: at as u32, text: text.into() });
    }
    pub fn replace(&mut self, span: Span, text: impl Into<String>) {
        self.ops.push(Edit { start: span.start, end: span.end, text: text.into() });
    }
    pub fn delete(&mut self, span: Span) {
        self.replace(span, String::new());
    }
    /// Whether some edit already deletes or replaces exactly this range.
    pub fn touches(&self, span: Span) -> bool {
        self.ops.iter().any(|e| e.start == span.start && e.end == span.end)
    }
    pub fn extend(&mut self, other: &Edits) {
        self.ops.extend(other.ops.iter().cloned());
    }
    /// Removes every edit whose text satisfies `pred` (used to drop a pending insert).
    pub fn retain(&mut self, mut keep: impl FnMut(&Edit) -> bool) {
        self.ops.retain(|e| keep(e));
    }

    /// Makes Content-Length agree with the body these edits produce (RFC 3261 §20.14: it
    /// counts the body's octets, and on a stream it is what frames the message, §18.3).
    ///
    /// Body edits stay small lumps (one address, one inserted line), so several functions
    /// can edit one body; each of them calls this afterwards, and the one Content-Length
    /// edit it keeps is replaced by the new total every time. A message without the header
    /// gets one after its last header. Edits that overlap in the body are counted as if all
    /// were applied, so body editors must not overlap (rendering skips the later one).
    pub fn sync_content_length(&mut self, msg: &SipMsg) {
        let body = msg.body_span();
        let cl = msg.first(&super::HeaderName::ContentLength).map(|h| h.value);
        let at_end = msg.headers_end() as u32;
        self.ops.retain(|e| match cl {
            Some(v) => !(e.start == v.start && e.end == v.end),
            None => !(e.is_insert() && e.start == at_end && e.text.starts_with(CL_INSERT)),
        });
        let mut len = body.len() as i64;
        for e in &self.ops {
            if e.start >= body.start && e.end <= body.end {
                len += e.text.len() as i64 - i64::from(e.end - e.start);
            }
        }
        let len = len.max(0);
        match cl {
            Some(v) => self.replace(v, len.to_string()),
            None => self.insert(at_end as usize, format!("{CL_INSERT}{len}\r\n")),
        }
    }

    /// Prints `msg` with the edits of every layer applied, in layer order for edits at the
    /// same position. An edit that falls inside a range another edit already replaced is
    /// skipped (a header both rewritten and removed ends up removed).
    ///
    /// What is printed is the message the index covers: from its start line to the end of
    /// its body. CRLFs before the start line and bytes past Content-Length in a datagram
    /// (RFC 3261 §18.3, RFC 4475 §3.1.1.8) are not part of it and are not sent on; edits
    /// outside that range are ignored.
    pub fn render(msg: &SipMsg, layers: &[&Edits]) -> Vec<u8> {
        let src = &msg.bytes()[..];
        let first = msg.start_line_span().start as usize;
        let last = msg.body_span().end as usize;
        let mut all: Vec<(usize, &Edit)> = Vec::with_capacity(layers.iter().map(|l| l.ops.len()).sum());
        for layer in layers {
            for e in &layer.ops {
                all.push((all.len(), e));
            }
        }
        // Insertions go before a replacement starting at the same byte, then by order added.
        all.sort_by_key(|(seq, e)| (e.start, !e.is_insert(), *seq));
        let extra: usize = all.iter().map(|(_, e)| e.text.len()).sum();
        let mut out = Vec::with_capacity(last - first + extra);
        let mut cursor = first;
        for (_, e) in all {
            let (s, t) = (e.start as usize, e.end as usize);
            if s < cursor || t < s || t > last {
                continue;
            }
            out.extend_from_slice(&src[cursor..s]);
            out.extend_from_slice(e.text.as_bytes());
            cursor = t;
        }
        out.extend_from_slice(&src[cursor..last]);
        out
    }
}
