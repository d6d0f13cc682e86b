//! Deferred edits ("lumps" in OpenSIPS): byte ranges of the received message to replace,
//! delete or insert into, applied only when the message is printed for sending. Reads made
//! after an edit still see the received message, as OpenSIPS scripts expect.

use super::{SipMsg, Span};

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
