//! registrar (spec §8.2–8.3, RFC 3261 §10.3): `save` turns a REGISTER into bindings of the
//! location table and answers it; `lookup` turns an AoR back into the destination set.
//!
//! The REGISTER is read into a [`SaveRequest`] by the script binding, so the rules here
//! (expiry, q, ordering, limits) are plain functions over data and unit-tested as such.

pub mod script;
#[cfg(test)]
mod tests;

use crate::config::RegistrarConfig;
use crate::modules::usrloc::{Contact, Record, Usrloc, Q_UNSPECIFIED};
use std::sync::Arc;
use thiserror::Error;

/// usrloc `flags` bit: the binding is never written to the database (`memory-only`).
pub const FL_MEM: u32 = 1;

/// How Path headers of a REGISTER are used (RFC 3327).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathMode {
    /// Not stored.
    #[default]
    Off,
    /// Stored, whether the UA said `Supported: path` or not.
    Lazy,
    /// Stored; a REGISTER with Path from a UA without `Supported: path` is refused (420).
    Strict,
}

/// `save()`'s flags (3.x names, spec §8.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveFlags {
    pub memory_only: bool,
    pub no_reply: bool,
    pub max_contacts: Option<u32>,
    pub force_registration: bool,
    pub matching_mode: Option<u8>,
    pub path: PathMode,
    pub path_received: bool,
    pub socket_header: bool,
    pub min_expires: Option<u32>,
    pub max_expires: Option<u32>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown flag {0:?}")]
pub struct FlagError(pub String);

fn number(name: &str, v: Option<&str>) -> Result<u32, FlagError> {
    v.and_then(|v| v.trim().parse().ok()).ok_or_else(|| FlagError(name.to_string()))
}

impl SaveFlags {
    /// `"memory-only, max-contacts=2"`. Old letter flags (1.x–2.x) are refused as 3.x does;
    /// `siprox port` translates them.
    pub fn parse(text: &str) -> Result<SaveFlags, FlagError> {
        let mut f = SaveFlags::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v)),
                None => (word, None),
            };
            match name {
                "memory-only" => f.memory_only = true,
                "no-reply" => f.no_reply = true,
                "max-contacts" => f.max_contacts = Some(number(word, value)?),
                "force-registration" => f.force_registration = true,
                "matching-mode" => f.matching_mode = Some(number(word, value)?.min(1) as u8),
                "path-off" => f.path = PathMode::Off,
                "path-lazy" => f.path = PathMode::Lazy,
                "path-strict" => f.path = PathMode::Strict,
                "path-received" => f.path_received = true,
                "socket-header" => f.socket_header = true,
                "min-expires" => f.min_expires = Some(number(word, value)?),
                "max-expires" => f.max_expires = Some(number(word, value)?),
                _ => return Err(FlagError(word.to_string())),
            }
        }
        Ok(f)
    }
}

/// One Contact of the REGISTER.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactIn {
    pub uri: String,
    /// The `expires` parameter, when present (RFC 3261 §10.2.1.1).
    pub expires: Option<u32>,
    /// The `q` parameter in thousandths.
    pub q: Option<i32>,
    pub instance: Option<String>,
    pub reg_id: u32,
}

/// What the Contact headers of a REGISTER say (RFC 3261 §10.2).
#[derive(Clone, Debug, PartialEq)]
pub enum Contacts {
    /// No Contact: a query (§10.2.3).
    None,
    /// `Contact: *` (§10.2.2).
    Star,
    List(Vec<ContactIn>),
}

/// A REGISTER as `save` needs it.
#[derive(Clone, Debug)]
pub struct SaveRequest {
    pub aor: String,
    pub contacts: Contacts,
    /// The Expires header.
    pub expires: Option<u32>,
    pub callid: String,
    pub cseq: u32,
    /// `fix_nated_register()`'s address (the received AVP).
    pub received: Option<String>,
    /// Path header values, in order (RFC 3327 §5.3).
    pub path: Vec<String>,
    /// The UA said `Supported: path`.
    pub path_supported: bool,
    pub socket: Option<String>,
    pub bflags: u64,
    pub user_agent: String,
    pub methods: Option<u32>,
    pub now: i64,
}

/// Why a REGISTER was refused: the reply that says so.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{code} {reason}")]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    /// `Retry-After` seconds for a 503.
    pub retry_after: Option<u32>,
}

impl Refusal {
    fn new(code: u16, reason: &'static str) -> Refusal {
        Refusal { code, reason, retry_after: None }
    }
}

/// What `save` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    /// Every binding of the AoR after the change, as the 200 OK lists them.
    pub bindings: Vec<Contact>,
}

/// Parses a q value (`0.5`, `1`, `0.125`; RFC 3261 §25.1 qvalue) into thousandths.
pub fn parse_q(text: &str) -> Option<i32> {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut f = 0;
    for (i, b) in frac.bytes().enumerate() {
        f += i32::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + f;
    (q <= 1000).then_some(q)
}

/// `500` → `"0.5"`, `1000` → `"1"`, `0` → `"0"`.
pub fn format_q(q: i32) -> String {
    if q >= 1000 {
        return "1".into();
    }
    let digits = format!("{:03}", q.max(0));
    match digits.trim_end_matches('0') {
        "" => "0".into(),
        frac => format!("0.{frac}"),
    }
}

/// The registrar of one proxy.
pub struct Registrar {
    pub cfg: RegistrarConfig,
    pub ul: Arc<Usrloc>,
}

impl Registrar {
    pub fn new(cfg: &RegistrarConfig, ul: Arc<Usrloc>) -> Registrar {
        Registrar { cfg: cfg.clone(), ul }
    }

    /// The AoR of a URI's user and host: `user` or `user@host` (`use_domain`), lower-cased
    /// unless `case_sensitive`, `realm_prefix` taken off the host.
    pub fn aor(&self, user: &str, host: &str) -> String {
        let host = host
            .strip_prefix(self.cfg.realm_prefix.as_str())
            .filter(|_| !self.cfg.realm_prefix.is_empty())
            .unwrap_or(host);
        let aor = if self.ul.use_domain { format!("{user}@{host}") } else { user.to_string() };
        if self.cfg.case_sensitive {
            aor
        } else {
            aor.to_ascii_lowercase()
        }
    }

    /// The expiry a Contact asks for, after the limits (spec §8.2 step 3): its own
    /// parameter, else the Expires header, else `default_expires`; a non-zero value below
    /// the minimum is raised to it, one above the maximum lowered.
    pub fn expiry(&self, c: &ContactIn, header: Option<u32>, flags: &SaveFlags) -> u32 {
        let asked = c.expires.or(header).unwrap_or(self.cfg.default_expires);
        if asked == 0 {
            return 0;
        }
        let min = flags.min_expires.unwrap_or(self.cfg.min_expires);
        let max = flags.max_expires.unwrap_or(self.cfg.max_expires);
        let e = asked.max(min);
        if max > 0 {
            e.min(max)
        } else {
            e
        }
    }

    /// `save()`: applies the REGISTER to the bindings of its AoR (spec §8.2).
    ///
    /// # Errors
    /// The reply that refuses it: 400 for `*` with other contacts or a non-zero expiry and
    /// for an out-of-order CSeq, 420 for Path without `Supported: path` in strict mode, 503
    /// when the contacts would pass the limit.
    pub fn save(&self, table: &str, req: &SaveRequest, flags: &SaveFlags) -> Result<Saved, Refusal> {
        if flags.path == PathMode::Strict && !req.path.is_empty() && !req.path_supported {
            return Err(Refusal::new(420, "Path header not supported by UA"));
        }
        let list = match &req.contacts {
            Contacts::None => return Ok(Saved { bindings: self.ul.lookup(table, &req.aor, req.now) }),
            Contacts::Star => {
                // RFC 3261 §10.3 step 6: `*` only with Expires: 0 and alone.
                if req.expires != Some(0) {
                    return Err(Refusal::new(400, "Invalid expires value for Contact *"));
                }
                return self.ul.update(table, &req.aor, |rec| {
                    // §10.3 step 6: a binding of this Call-ID goes only for a higher CSeq;
                    // otherwise the whole request fails.
                    if rec.contacts().iter().any(|b| b.callid == req.callid && req.cseq <= b.cseq) {
                        return Err(Refusal::new(400, "Invalid CSeq number"));
                    }
                    rec.remove_where(|_| true);
                    Ok(Saved { bindings: Vec::new() })
                });
            }
            Contacts::List(l) => last_of_each(l),
        };
        let matching = flags.matching_mode.unwrap_or(self.ul.matching_mode);
        let limit = flags.max_contacts.unwrap_or(self.cfg.max_contacts);
        let retry_after = (self.cfg.retry_after > 0).then_some(self.cfg.retry_after);
        self.ul.update(table, &req.aor, |rec| {
            // Refusals come before any change, so a refused REGISTER changes nothing.
            let plan = self.plan(rec, req, &list, flags, matching)?;
            let after = rec.contacts().iter().filter(|c| c.is_live(req.now)).count() as i64
                + plan.iter().map(|p| p.delta()).sum::<i64>();
            let mut evict = 0;
            if limit > 0 && after > i64::from(limit) {
                if !flags.force_registration {
                    return Err(Refusal { code: 503, reason: "Too Many Registered Contacts", retry_after });
                }
                evict = (after - i64::from(limit)) as usize;
            }
            for step in plan {
                step.apply(rec);
            }
            evict_oldest(rec, evict, req.now);
            let mut bindings: Vec<Contact> = rec.contacts().iter().filter(|c| c.is_live(req.now)).cloned().collect();
            self.ul.sort(&mut bindings);
            Ok(Saved { bindings })
        })
    }

    /// What each Contact of the REGISTER does to the record, or why none may.
    fn plan(
        &self,
        rec: &Record<'_>,
        req: &SaveRequest,
        list: &[ContactIn],
        flags: &SaveFlags,
        matching: u8,
    ) -> Result<Vec<Step>, Refusal> {
        let mut steps = Vec::with_capacity(list.len());
        for c in list {
            let expires = self.expiry(c, req.expires, flags);
            let existing = rec.contacts().iter().find(|b| same_binding(b, c, &req.callid, matching));
            match existing {
                Some(b) => {
                    if b.callid == req.callid && req.cseq <= b.cseq {
                        let dup = req.cseq == b.cseq && self.cfg.allow_dup_cseq;
                        // RFC 3261 §10.3 step 7: an old CSeq of the same Call-ID is out of
                        // order, unless it is a retransmission within `cseq_delay`.
                        if !dup {
                            let retrans = req.cseq == b.cseq && req.now - b.last_modified <= self.ul.cseq_delay as i64;
                            if retrans {
                                continue;
                            }
                            return Err(Refusal::new(400, "Invalid CSeq number"));
                        }
                    }
                    if expires == 0 {
                        steps.push(Step::Remove(b.id, b.is_live(req.now)));
                    } else {
                        steps.push(Step::Update(self.binding(Some(b), c, req, flags, expires), b.is_live(req.now)));
                    }
                }
                None if expires == 0 => {}
                None => steps.push(Step::Insert(self.binding(None, c, req, flags, expires))),
            }
        }
        Ok(steps)
    }

    /// The stored form of Contact `c` (a refresh keeps the binding's id).
    fn binding(
        &self,
        old: Option<&Contact>,
        c: &ContactIn,
        req: &SaveRequest,
        flags: &SaveFlags,
        expires: u32,
    ) -> Contact {
        let path = if flags.path == PathMode::Off || req.path.is_empty() { None } else { Some(req.path.join(",")) };
        let mut received = req.received.clone();
        let mut cflags = req.bflags;
        if flags.path_received {
            if let Some(r) = req.path.first().and_then(|p| path_received(p)) {
                received = Some(r);
                cflags |= self.nat_bit();
            }
        }
        Contact {
            id: old.map_or_else(Contact::new_id, |o| o.id),
            aor: req.aor.clone(),
            uri: c.uri.clone(),
            received,
            path,
            expires: req.now + i64::from(expires),
            q: c.q.unwrap_or(self.cfg.default_q),
            callid: req.callid.clone(),
            cseq: req.cseq,
            last_modified: req.now,
            flags: if flags.memory_only { FL_MEM } else { 0 },
            cflags,
            user_agent: req.user_agent.clone(),
            socket: req.socket.clone(),
            methods: req.methods,
            instance: c.instance.clone(),
            reg_id: c.reg_id,
            attr: old.and_then(|o| o.attr.clone()),
            pings_lost: 0,
        }
    }

    /// The bit of `[usrloc] nat_bflag` (0 when unset).
    pub fn nat_bit(&self) -> u64 {
        self.ul.nat_bflag.as_deref().and_then(crate::script::api::flag_bit_of).map_or(0, |b| 1u64 << b)
    }
}

/// One change `save` makes; `bool` = the binding was live (it counts against the limit).
enum Step {
    Insert(Contact),
    Update(Contact, bool),
    Remove(i64, bool),
}

impl Step {
    /// How the number of live bindings moves.
    fn delta(&self) -> i64 {
        match self {
            Step::Insert(_) => 1,
            Step::Update(_, live) => i64::from(!*live),
            Step::Remove(_, live) => -i64::from(*live),
        }
    }

    fn apply(self, rec: &mut Record<'_>) {
        match self {
            Step::Insert(c) | Step::Update(c, _) => rec.put(c),
            Step::Remove(id, _) => {
                rec.remove_where(|c| c.id == id);
            }
        }
    }
}

/// The Contacts of a REGISTER with each binding named once: the contacts apply in order
/// (RFC 3261 §10.3 step 7), so a later Contact for the same binding replaces an earlier one.
fn last_of_each(list: &[ContactIn]) -> Vec<ContactIn> {
    let mut out: Vec<ContactIn> = Vec::with_capacity(list.len());
    for c in list {
        out.retain(|p| match (&p.instance, &c.instance) {
            (Some(a), Some(b)) => !(a == b && p.reg_id == c.reg_id),
            _ => !uri_eq(&p.uri, &c.uri),
        });
        out.push(c.clone());
    }
    out
}

/// Whether stored binding `b` is the one Contact `c` names: the same `+sip.instance` and
/// reg-id (RFC 5626 §6), else the same URI (RFC 3261 §10.3 step 7), and the same Call-ID
/// in matching mode 1.
fn same_binding(b: &Contact, c: &ContactIn, callid: &str, matching: u8) -> bool {
    if let (Some(bi), Some(ci)) = (&b.instance, &c.instance) {
        return bi == ci && b.reg_id == c.reg_id;
    }
    uri_eq(&b.uri, &c.uri) && (matching == 0 || b.callid == callid)
}

/// URI equality as far as bindings need it: scheme and host compare case-insensitively
/// (RFC 3261 §19.1.4), the rest exactly.
pub fn uri_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (crate::message::Uri::parse(a), crate::message::Uri::parse(b)) {
        (Some(x), Some(y)) => {
            x.user() == y.user()
                && x.host().eq_ignore_ascii_case(y.host())
                && x.port() == y.port()
                && x.params().eq_ignore_ascii_case(y.params())
                && a.split(':').next().map(str::to_ascii_lowercase) == b.split(':').next().map(str::to_ascii_lowercase)
        }
        _ => false,
    }
}

/// `force-registration`: the oldest bindings make room for the new ones.
fn evict_oldest(rec: &mut Record<'_>, n: usize, now: i64) {
    for _ in 0..n {
        let oldest = rec
            .contacts()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_live(now))
            .min_by_key(|(_, c)| c.last_modified)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                rec.remove(i);
            }
            None => return,
        }
    }
}

/// The `received` parameter of a Path entry (`add_path_received`), unquoted.
pub fn path_received(path: &str) -> Option<String> {
    let na = crate::message::NameAddr::parse(path.split(',').next()?.trim())?;
    let uri = crate::message::Uri::parse(na.uri)?;
    let v = uri.param("received").flatten()?;
    let v = crate::message::unescape(v.trim_matches('"'));
    Some(String::from_utf8_lossy(&v).into_owned())
}

/// The value of `Contact:` for one binding in the 200 OK (RFC 3261 §10.3 step 8): its URI,
/// the seconds left, its q, and a stored NAT address in `received_param`.
pub fn contact_line(c: &Contact, now: i64, received_param: &str) -> String {
    let mut s = format!("<{}>;expires={}", c.uri, c.remaining(now));
    if c.q != Q_UNSPECIFIED {
        s.push_str(";q=");
        s.push_str(&format_q(c.q));
    }
    if let Some(i) = &c.instance {
        s.push_str(&format!(";+sip.instance=\"{i}\""));
        if c.reg_id > 0 {
            s.push_str(&format!(";reg-id={}", c.reg_id));
        }
    }
    if let (Some(r), false) = (&c.received, received_param.is_empty()) {
        s.push_str(&format!(";{received_param}=\"{r}\""));
    }
    s
}
