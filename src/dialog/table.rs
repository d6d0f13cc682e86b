//! The dialog table: creation, matching, the state machine, lifetime and profiles.

use super::{flags, unix_now, Dialog, DialogRecord, DlgData, DlgState, Profiles};
use crate::message::{HeaderName, Method, NameAddr, SipMsg};
use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// `dlg_match_mode` (spec §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMode {
    /// 0: only by the `did` of our Route entry.
    DidOnly,
    /// 1: by `did`, else by Call-ID and tags (the default).
    DidThenSip,
    /// 2: only by Call-ID and tags.
    SipOnly,
}

impl MatchMode {
    pub fn from_number(n: u8) -> MatchMode {
        match n {
            0 => MatchMode::DidOnly,
            2 => MatchMode::SipOnly,
            _ => MatchMode::DidThenSip,
        }
    }
}

/// What the table needs from the configuration (`[dialog]`).
#[derive(Clone, Debug)]
pub struct DialogParams {
    /// Lifetime of a dialog from its 2xx, seconds (`default_timeout`, 43200).
    pub default_timeout: u32,
    pub match_mode: MatchMode,
    /// How often the lifetime sweep runs.
    pub sweep_every: Duration,
}

impl Default for DialogParams {
    fn default() -> Self {
        DialogParams { default_timeout: 43200, match_mode: MatchMode::DidThenSip, sweep_every: Duration::from_secs(1) }
    }
}

/// A side of a dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Caller,
    Callee,
}

/// What the table asks of the network: the proxy sends in-dialog requests for it.
pub trait DialogActions: Send + Sync {
    /// Sends a BYE to `side` of `dlg` (lifetime expiry with flag `B`, MI `dlg_end_dlg`).
    fn send_bye(&self, dlg: &Arc<Dialog>, side: Side);
}

/// What a store writes behind the table.
#[derive(Clone, Debug)]
pub enum Change {
    /// A confirmed dialog was created or changed: upsert its row.
    Saved(Arc<Dialog>),
    /// The dialog ended: delete its row.
    Removed(u64),
}

/// OpenSIPS's `dialog:` statistics.
#[derive(Default, Debug)]
pub struct DialogStats {
    /// Confirmed dialogs now (`active_dialogs`).
    pub active: AtomicI64,
    /// Dialogs with a provisional reply and no final yet (`early_dialogs`).
    pub early: AtomicI64,
    /// Dialogs that were confirmed and ended (`processed_dialogs`).
    pub processed: AtomicU64,
    /// Dialogs ended by their lifetime (`expired_dialogs`).
    pub expired: AtomicU64,
    /// Dialogs that ended before a 2xx (`failed_dialogs`).
    pub failed: AtomicU64,
}

/// Every dialog this node knows.
pub struct Dialogs {
    params: DialogParams,
    by_id: DashMap<u64, Arc<Dialog>>,
    by_callid: DashMap<String, Vec<u64>>,
    pub profiles: Profiles,
    pub stats: DialogStats,
    /// The store's end of the change stream; read on every change, so no lock.
    changes: ArcSwapOption<mpsc::UnboundedSender<Change>>,
    actions: RwLock<Option<Weak<dyn DialogActions>>>,
}

/// Record-Route (or Route) values of a message, in order.
fn route_values(msg: &SipMsg, name: HeaderName) -> Vec<String> {
    msg.values(&name).into_iter().map(|(_, t)| t.trim().to_string()).collect()
}

fn contact_of(msg: &SipMsg) -> String {
    msg.value(&HeaderName::Contact).and_then(NameAddr::parse).map(|n| n.uri.to_string()).unwrap_or_default()
}

impl Dialogs {
    pub fn new(params: DialogParams) -> Arc<Dialogs> {
        Arc::new(Dialogs {
            params,
            by_id: DashMap::new(),
            by_callid: DashMap::new(),
            profiles: Profiles::default(),
            stats: DialogStats::default(),
            changes: ArcSwapOption::empty(),
            actions: RwLock::new(None),
        })
    }

    pub fn params(&self) -> &DialogParams {
        &self.params
    }

    /// Who sends BYEs for the table (the proxy).
    pub fn set_actions(&self, actions: Weak<dyn DialogActions>) {
        *self.actions.write().unwrap_or_else(|p| p.into_inner()) = Some(actions);
    }

    /// The stream of changes a store writes behind; one subscriber (a later call replaces it).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.changes.store(Some(Arc::new(tx)));
        rx
    }

    fn emit(&self, change: Change) {
        if let Some(tx) = self.changes.load().as_ref() {
            let _ = tx.send(change);
        }
    }

    /// A confirmed dialog changed: its row is rewritten.
    pub fn save(&self, dlg: &Arc<Dialog>) {
        if dlg.state().is_confirmed() {
            self.emit(Change::Saved(dlg.clone()));
        }
    }

    /// Dialogs in the table (every state but ended).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every dialog, oldest id order not guaranteed.
    pub fn list(&self) -> Vec<Arc<Dialog>> {
        self.by_id.iter().map(|e| e.value().clone()).collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Dialog>> {
        self.by_id.get(&id).map(|e| e.value().clone())
    }

    /// The dialog whose `did` is `did` (hex).
    pub fn by_did(&self, did: &str) -> Option<Arc<Dialog>> {
        u64::from_str_radix(did.trim(), 16).ok().and_then(|id| self.get(id))
    }

    /// Dialogs of a Call-ID.
    pub fn by_callid(&self, callid: &str) -> Vec<Arc<Dialog>> {
        let ids = self.by_callid.get(callid).map(|e| e.value().clone()).unwrap_or_default();
        ids.into_iter().filter_map(|id| self.get(id)).collect()
    }

    fn insert(&self, dlg: Arc<Dialog>) {
        self.by_callid.entry(dlg.callid.clone()).or_default().push(dlg.id);
        self.by_id.insert(dlg.id, dlg);
    }

    fn remove(&self, dlg: &Dialog) {
        self.by_id.remove(&dlg.id);
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.by_callid.entry(dlg.callid.clone()) {
            e.get_mut().retain(|id| *id != dlg.id);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// `create_dialog` on an initial INVITE that came in on `caller_sock`.
    pub fn create(&self, msg: &SipMsg, caller_sock: String, dlg_flags: u32) -> Arc<Dialog> {
        let from = msg.from();
        let to = msg.to();
        let data = DlgData {
            state: DlgState::Unconfirmed,
            to_tag: String::new(),
            caller_cseq: msg.cseq().map(|c| c.number).unwrap_or(0),
            callee_cseq: 0,
            // RFC 3261 §12.1.1: the Record-Route of the request, as received, is the route
            // back towards the caller (every entry there is below ours).
            caller_route_set: route_values(msg, HeaderName::RecordRoute).join(","),
            callee_route_set: String::new(),
            caller_contact: contact_of(msg),
            callee_contact: String::new(),
            caller_sock,
            callee_sock: String::new(),
            start_time: 0,
            lifetime: self.params.default_timeout,
            deadline: 0,
            vars: Vec::new(),
            profiles: Vec::new(),
            script_flags: 0,
            flags: dlg_flags,
            end_reason: None,
        };
        let mut id = fastrand::u64(1..i64::MAX as u64);
        while self.by_id.contains_key(&id) {
            id = fastrand::u64(1..i64::MAX as u64);
        }
        let dlg = Arc::new(Dialog::new(
            id,
            msg.call_id().to_string(),
            from.as_ref().map(|f| f.uri.to_string()).unwrap_or_default(),
            from.as_ref().and_then(|f| f.tag()).unwrap_or("").to_string(),
            to.as_ref().map(|t| t.uri.to_string()).unwrap_or_default(),
            data,
        ));
        self.insert(dlg.clone());
        dlg
    }

    /// Puts a dialog read from the table back (start-up, `dlg_restore_db`). Its profiles
    /// count again; a profile unknown here is declared (the load balancer's come later).
    /// `None` when a dialog with that id is known already.
    pub fn restore(&self, rec: &DialogRecord) -> Option<Arc<Dialog>> {
        if self.by_id.contains_key(&(rec.dlg_id as u64)) {
            return None;
        }
        let dlg = Arc::new(rec.to_dialog());
        if dlg.is_ended() {
            return None;
        }
        for (name, value) in &dlg.data().profiles {
            if self.profiles.kind(name).is_none() {
                self.profiles.declare(name, !value.is_empty());
            }
            self.profiles.add(name, value);
        }
        if dlg.state().is_confirmed() {
            self.stats.active.fetch_add(1, Ordering::Relaxed);
        }
        self.insert(dlg.clone());
        Some(dlg)
    }

    /// The dialog an in-dialog request belongs to, by `dlg_match_mode`: the `did` among
    /// `route_params` (our Route entry's parameters, from `loose_route`), else Call-ID and
    /// tags in either direction.
    pub fn match_request(&self, msg: &SipMsg, route_params: &str) -> Option<Arc<Dialog>> {
        let mode = self.params.match_mode;
        if mode != MatchMode::SipOnly {
            let did = route_params.split(';').find_map(|p| p.trim().strip_prefix("did="));
            if let Some(dlg) = did.and_then(|d| self.by_did(d)) {
                if dlg.callid == msg.call_id() {
                    return Some(dlg);
                }
            }
            if mode == MatchMode::DidOnly {
                return None;
            }
        }
        let (from, to) = (msg.from(), msg.to());
        let ftag = from.as_ref().and_then(|f| f.tag()).unwrap_or("");
        let ttag = to.as_ref().and_then(|t| t.tag()).unwrap_or("");
        let ids = self.by_callid.get(msg.call_id())?;
        ids.iter().filter_map(|id| self.get(*id)).find(|d| {
            let data = d.data();
            let to_tag = data.to_tag.as_str();
            (d.from_tag == ftag && (to_tag == ttag || to_tag.is_empty())) || (d.from_tag == ttag && to_tag == ftag)
        })
    }

    /// An in-dialog request routed through `dlg`: the ACK confirms, a BYE ends it, any
    /// other request moves its side's CSeq on.
    pub fn on_request(&self, dlg: &Arc<Dialog>, msg: &SipMsg) {
        match msg.method() {
            Method::Ack => {
                let mut d = dlg.data();
                if d.state == DlgState::ConfirmedNoAck {
                    d.state = DlgState::Confirmed;
                    drop(d);
                    self.save(dlg);
                }
            }
            Method::Bye => {
                self.end(dlg, "bye");
            }
            _ => {
                let cseq = msg.cseq().map(|c| c.number).unwrap_or(0);
                let from_caller = msg.from().and_then(|f| f.tag().map(|t| t == dlg.from_tag)).unwrap_or(true);
                let mut d = dlg.data();
                let slot = if from_caller { &mut d.caller_cseq } else { &mut d.callee_cseq };
                if cseq > *slot {
                    *slot = cseq;
                    drop(d);
                    self.save(dlg);
                }
            }
        }
    }

    /// A reply to the dialog's INVITE (RFC 3261 §12.1.2): a provisional one makes it early,
    /// a 2xx confirms it and starts its lifetime. `callee_sock` is the socket the branch
    /// left on.
    pub fn on_reply(&self, dlg: &Arc<Dialog>, reply: &SipMsg, callee_sock: Option<String>) {
        let code = reply.status().unwrap_or(0);
        let mut d = dlg.data();
        if d.state >= DlgState::ConfirmedNoAck {
            return;
        }
        if (101..200).contains(&code) {
            if d.state == DlgState::Unconfirmed {
                d.state = DlgState::Early;
                self.stats.early.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if !(200..300).contains(&code) {
            return;
        }
        if d.state == DlgState::Early {
            self.stats.early.fetch_sub(1, Ordering::Relaxed);
        }
        let now = unix_now();
        d.state = DlgState::ConfirmedNoAck;
        d.to_tag = reply.to().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
        d.callee_contact = contact_of(reply);
        d.callee_route_set = callee_routes(reply, &dlg.did(), &d.caller_route_set);
        if let Some(s) = callee_sock {
            d.callee_sock = s;
        }
        d.start_time = now;
        d.deadline = now + i64::from(d.lifetime);
        drop(d);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        self.save(dlg);
    }

    /// The INVITE's final reply went upstream: a failure ends a dialog that was never
    /// confirmed.
    pub fn on_final(&self, dlg: &Arc<Dialog>, code: u16) {
        if code >= 300 && !dlg.state().is_confirmed() {
            self.end(dlg, "failed");
        }
    }

    /// `$DLG_timeout = secs`: the lifetime from now on a confirmed dialog, from the 2xx on
    /// one still being set up.
    pub fn set_timeout(&self, dlg: &Arc<Dialog>, secs: u32) {
        let mut d = dlg.data();
        d.lifetime = secs;
        if d.state.is_confirmed() {
            d.deadline = unix_now() + i64::from(secs);
            drop(d);
            self.save(dlg);
        }
    }

    /// `$dlg_val(name) = value` (`None` deletes).
    pub fn set_value(&self, dlg: &Arc<Dialog>, name: &str, value: Option<String>) {
        let mut d = dlg.data();
        d.vars.retain(|(n, _)| n != name);
        if let Some(v) = value {
            d.vars.push((name.to_string(), v));
        }
        drop(d);
        self.save(dlg);
    }

    /// `set_dlg_profile(name[, value])`. Errors name an undeclared profile or a value given
    /// to a profile without one (or missing for one with).
    pub fn set_profile(&self, dlg: &Arc<Dialog>, name: &str, value: Option<&str>) -> Result<(), String> {
        let value = self.check_profile(name, value)?;
        let mut d = dlg.data();
        if d.state == DlgState::Deleted {
            return Err("the dialog has ended".into());
        }
        if d.profiles.iter().any(|(n, v)| n == name && *v == value) {
            return Ok(());
        }
        d.profiles.push((name.to_string(), value.clone()));
        drop(d);
        self.profiles.add(name, &value);
        self.save(dlg);
        Ok(())
    }

    fn check_profile(&self, name: &str, value: Option<&str>) -> Result<String, String> {
        match (self.profiles.kind(name), value) {
            (None, _) => Err(format!("no dialog profile {name:?} is declared")),
            (Some(true), Some(v)) => Ok(v.to_string()),
            (Some(true), None) => Err(format!("dialog profile {name:?} takes a value")),
            (Some(false), None) => Ok(String::new()),
            (Some(false), Some(_)) => Err(format!("dialog profile {name:?} has no value")),
        }
    }

    /// `unset_dlg_profile(name[, value])`: true when the dialog was in it.
    pub fn unset_profile(&self, dlg: &Arc<Dialog>, name: &str, value: Option<&str>) -> bool {
        let mut d = dlg.data();
        let Some(i) = d.profiles.iter().position(|(n, v)| n == name && value.is_none_or(|x| x == v)) else {
            return false;
        };
        let (n, v) = d.profiles.remove(i);
        drop(d);
        self.profiles.remove(&n, &v);
        self.save(dlg);
        true
    }

    /// `is_in_profile(name[, value])`.
    pub fn in_profile(&self, dlg: &Dialog, name: &str, value: Option<&str>) -> bool {
        dlg.data().profiles.iter().any(|(n, v)| n == name && value.is_none_or(|x| x == v))
    }

    /// Ends `dlg`: its profiles stop counting it, the store deletes its row. False when it
    /// had ended already.
    pub fn end(&self, dlg: &Arc<Dialog>, reason: &'static str) -> bool {
        let Some(was) = self.retire(dlg, reason) else { return false };
        match was {
            DlgState::ConfirmedNoAck | DlgState::Confirmed => {
                self.stats.processed.fetch_add(1, Ordering::Relaxed);
                if reason == "timeout" {
                    self.stats.expired.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.emit(Change::Removed(dlg.id));
        tracing::debug!(did = %dlg.did(), callid = %dlg.callid, reason, "dialog ended");
        true
    }

    /// Drops `dlg` from memory as if it had never been here: no BYE, no `Change::Removed`
    /// (its row belongs to the node that wrote it last, which ended it or will), and its
    /// profiles stop counting it. `active_dialogs`/`early_dialogs` fall as in
    /// [`Dialogs::end`], but it is not counted as processed, failed or expired: it did not
    /// end here. For a node catching up with a table another node keeps (`dlg_resync`).
    /// False when it had ended already.
    pub fn forget(&self, dlg: &Arc<Dialog>) -> bool {
        if self.retire(dlg, "forgotten").is_none() {
            return false;
        }
        tracing::debug!(did = %dlg.did(), callid = %dlg.callid, "dialog forgotten (it ended elsewhere)");
        true
    }

    /// What ending and forgetting share: `dlg` is marked ended (so a transaction still
    /// holding it neither saves nor ends it again), its profile counts drop, it leaves the
    /// table, and the live gauges fall. The state it had, or `None` when it had ended
    /// already.
    fn retire(&self, dlg: &Arc<Dialog>, reason: &'static str) -> Option<DlgState> {
        let was = {
            let mut d = dlg.data();
            if d.state == DlgState::Deleted {
                return None;
            }
            let was = d.state;
            d.state = DlgState::Deleted;
            d.end_reason = Some(reason);
            // The counts drop; the memberships stay readable on the ended dialog (MI, logs).
            // Lock order everywhere: the dialog's data, then the profile counts.
            for (n, v) in &d.profiles {
                self.profiles.remove(n, v);
            }
            was
        };
        self.remove(dlg);
        match was {
            DlgState::ConfirmedNoAck | DlgState::Confirmed => {
                self.stats.active.fetch_sub(1, Ordering::Relaxed);
            }
            DlgState::Early => {
                self.stats.early.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Some(was)
    }

    /// Ends a confirmed dialog from here: BYE to both sides, then [`Dialogs::end`]
    /// (lifetime expiry with flag `B`, MI `dlg_end_dlg`).
    pub fn terminate(&self, dlg: &Arc<Dialog>, reason: &'static str) -> bool {
        if dlg.state().is_confirmed() {
            let actions = self.actions.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(a) = actions.and_then(|w| w.upgrade()) {
                a.send_bye(dlg, Side::Callee);
                a.send_bye(dlg, Side::Caller);
            }
        }
        self.end(dlg, reason)
    }

    /// Ends every confirmed dialog whose lifetime is over at `now`; returns how many.
    pub fn sweep(&self, now: i64) -> usize {
        let due: Vec<Arc<Dialog>> = self
            .by_id
            .iter()
            .filter(|e| {
                let d = e.value().data();
                d.state.is_confirmed() && d.deadline > 0 && d.deadline <= now
            })
            .map(|e| e.value().clone())
            .collect();
        for dlg in &due {
            let bye = dlg.data().flags & flags::BYE_ON_TIMEOUT != 0;
            tracing::info!(did = %dlg.did(), callid = %dlg.callid, bye, "dialog lifetime over");
            if bye {
                self.terminate(dlg, "timeout");
            } else {
                self.end(dlg, "timeout");
            }
        }
        due.len()
    }

    /// Runs [`Dialogs::sweep`] every `sweep_every` until the table is dropped.
    pub fn start_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.params.sweep_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(table) = weak.upgrade() else { return };
                table.sweep(unix_now());
            }
        })
    }
}

/// The route set towards the callee from a 2xx (RFC 3261 §12.1.2): the Record-Route entries
/// above ours (found by our `did`), nearest to us first. Without our entry, what the
/// request did not already carry.
fn callee_routes(reply: &SipMsg, did: &str, caller_routes: &str) -> String {
    let all = route_values(reply, HeaderName::RecordRoute);
    let marker = format!("did={did}");
    let ours = all.iter().position(|v| v.contains(&marker));
    let above: Vec<String> = match ours {
        Some(i) => all[..i].to_vec(),
        None => {
            let below = if caller_routes.is_empty() { 0 } else { caller_routes.split(',').count() };
            all[..all.len().saturating_sub(below)].to_vec()
        }
    };
    above.into_iter().rev().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> SipMsg {
        SipMsg::parse(Bytes::from(s.replace('\n', "\r\n"))).expect("parses")
    }

    fn invite() -> SipMsg {
        msg("INVITE sip:bob@b.example SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:alice@a.example>;tag=ft\nTo: <sip:bob@b.example>\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:alice@10.0.0.1>\nRecord-Route: <sip:p1.example;lr>\nContent-Length: 0\n\n")
    }

    fn ok(did: &str) -> SipMsg {
        msg(&format!("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: <sip:alice@a.example>;tag=ft\nTo: <sip:bob@b.example>;tag=tt\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:bob@10.0.0.9>\nRecord-Route: <sip:p3.example;lr>, <sip:us;lr;did={did}>, <sip:p1.example;lr>\nContent-Length: 0\n\n"))
    }

    fn table() -> Arc<Dialogs> {
        let t = Dialogs::new(DialogParams::default());
        t.profiles.declare("caller", true);
        t
    }

    #[test]
    fn lifecycle_and_profiles() {
        let t = table();
        let mut changes = t.subscribe();
        let dlg = t.create(&invite(), "udp:127.0.0.1:5060".into(), 0);
        assert_eq!(dlg.state(), DlgState::Unconfirmed);
        assert_eq!(dlg.data().caller_route_set, "<sip:p1.example;lr>");
        t.set_profile(&dlg, "caller", Some("alice")).expect("declared");
        assert!(t.set_profile(&dlg, "nope", None).is_err());
        assert_eq!(t.profiles.size("caller", Some("alice")), 1);
        t.on_reply(&dlg, &msg("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\nFrom: <sip:a@a>;tag=ft\nTo: <sip:b@b>;tag=tt\nCall-ID: c1\nCSeq: 7 INVITE\n\n"), None);
        assert_eq!(dlg.state(), DlgState::Early);
        t.on_reply(&dlg, &ok(&dlg.did()), Some("udp:127.0.0.1:5060".into()));
        assert_eq!(dlg.state(), DlgState::ConfirmedNoAck);
        let d = dlg.data().clone();
        assert_eq!(d.to_tag, "tt");
        assert_eq!(d.callee_contact, "sip:bob@10.0.0.9");
        assert_eq!(d.callee_route_set, "<sip:p3.example;lr>");
        assert!(d.deadline >= d.start_time + 43200);
        assert!(matches!(changes.try_recv(), Ok(Change::Saved(_))));
        assert_eq!(t.stats.active.load(Ordering::Relaxed), 1);

        // The BYE from the callee matches by tags (swapped) and by did.
        let bye = msg("BYE sip:alice@10.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\nFrom: <sip:bob@b.example>;tag=tt\nTo: <sip:alice@a.example>;tag=ft\nCall-ID: c1\nCSeq: 1 BYE\n\n");
        assert!(t.match_request(&bye, "").is_some_and(|d| d.id == dlg.id));
        assert!(t.match_request(&bye, &format!(";lr;did={}", dlg.did())).is_some());
        t.on_request(&dlg, &bye);
        assert_eq!(dlg.state(), DlgState::Deleted);
        assert_eq!(t.profiles.size("caller", None), 0);
        assert!(t.is_empty());
        assert_eq!(t.stats.processed.load(Ordering::Relaxed), 1);
        assert!(matches!(changes.try_recv(), Ok(Change::Removed(id)) if id == dlg.id));
    }

    #[test]
    fn failure_ends_unconfirmed_and_sweep_expires() {
        let t = table();
        let dlg = t.create(&invite(), String::new(), 0);
        t.on_final(&dlg, 486);
        assert!(dlg.is_ended());
        assert_eq!(t.stats.failed.load(Ordering::Relaxed), 1);

        let dlg = t.create(&invite(), String::new(), 0);
        t.on_reply(&dlg, &ok(&dlg.did()), None);
        t.set_timeout(&dlg, 5);
        let deadline = dlg.data().deadline;
        assert_eq!(t.sweep(deadline - 1), 0);
        assert_eq!(t.sweep(deadline), 1);
        assert!(dlg.is_ended());
        assert_eq!(t.stats.expired.load(Ordering::Relaxed), 1);
    }

    /// `forget` drops the dialog and its profile counts without a row change or an end
    /// counted; a second forget (or end) finds nothing to do.
    #[test]
    fn forget_drops_without_a_trace() {
        let t = table();
        let mut changes = t.subscribe();
        let dlg = t.create(&invite(), String::new(), 0);
        t.set_profile(&dlg, "caller", Some("alice")).expect("declared");
        t.on_reply(&dlg, &ok(&dlg.did()), None);
        while changes.try_recv().is_ok() {}
        assert!(t.forget(&dlg));
        assert!(t.is_empty());
        assert!(dlg.is_ended());
        assert_eq!(t.profiles.size("caller", Some("alice")), 0);
        assert_eq!(t.stats.active.load(Ordering::Relaxed), 0);
        let ended = t.stats.processed.load(Ordering::Relaxed) + t.stats.failed.load(Ordering::Relaxed);
        assert_eq!(ended, 0, "not counted as ended here");
        assert!(changes.try_recv().is_err(), "no row change: the row is not ours");
        assert!(!t.forget(&dlg));
        assert!(!t.end(&dlg, "bye"));
    }

    #[test]
    fn record_round_trip_restores_profiles() {
        let t = table();
        let dlg = t.create(&invite(), "udp:1.2.3.4:5060".into(), flags::BYE_ON_TIMEOUT);
        t.set_profile(&dlg, "caller", Some("alice")).expect("declared");
        t.set_value(&dlg, "x", Some("1".into()));
        t.on_reply(&dlg, &ok(&dlg.did()), None);
        let rec = DialogRecord::of(&dlg);
        let other = table();
        let back = other.restore(&rec).expect("restored");
        assert_eq!(DialogRecord::of(&back), rec);
        assert_eq!(other.profiles.size("caller", Some("alice")), 1);
        assert_eq!(back.value("x").as_deref(), Some("1"));
        assert!(other.restore(&rec).is_none(), "a known id is not restored twice");
    }
}
