//! Who holds the VIP: a pure state machine, fed heartbeats, clock ticks and the results of
//! the work it asks for (fencing, health checks), and answering with [`Action`]s. No
//! sockets, no clock of its own: the runtime beside it (ha/node.rs) does the I/O, and the
//! tests here drive it with made-up instants.
//!
//! The rules, as Heartbeat's ha.cf states them and an operator expects:
//! * a peer is alive while any path delivered one of its heartbeats within `deadtime`;
//! * a standby takes the VIP when no alive peer holds it and it is the best candidate: a
//!   node asked to take over (`ha_takeover`) or named by the releasing holder first, then
//!   the highest priority, then the lowest name;
//! * before taking the VIP from a peer that went silent while holding it (or that was
//!   never heard), the fencing command must succeed; a peer that announced it was leaving
//!   or standing by needs none;
//! * the holder gives the VIP up on shutdown, on `ha_release`, when its health check
//!   fails, when another holder outranks it (a healed split), when a peer asks for it
//!   (`ha_takeover`), and with `auto_failback` when a node of higher priority returns.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a node says it is doing, in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    Active,
    /// Shutting down: it holds nothing and needs no fencing.
    Leaving,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Active => "active",
            Role::Leaving => "leaving",
        }
    }
}

/// The election's part of a heartbeat: what one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub role: Role,
    pub priority: u16,
    /// Healthy, not in maintenance, not held off: it may take the VIP.
    pub eligible: bool,
    /// `ha_takeover` was asked of it: the holder should hand the VIP over.
    pub claim: bool,
    /// The node the sender just handed the VIP to.
    pub yield_to: Option<String>,
}

/// What the runtime is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the VIP (reload shared state, add the address, announce it).
    Acquire { reason: String },
    /// Give it up (remove the address).
    Release { reason: String },
    /// Run the fencing command against `peer`, then report with [`Election::fenced`].
    Fence { peer: String },
    /// Send a heartbeat now, not at the next keepalive: the others should know at once.
    SendNow,
    /// A peer was silent for `warntime` (logged, counted).
    Late { peer: String, silent: Duration },
    /// A peer was silent on every path for `deadtime`.
    PeerDead { peer: String },
    /// A peer is heard again (or for the first time).
    PeerUp { peer: String },
}

/// The timings and this node's place in the pair.
#[derive(Debug, Clone)]
pub struct Params {
    pub me: String,
    pub priority: u16,
    /// The other nodes and their configured priorities.
    pub peers: Vec<(String, u16)>,
    /// How many heartbeat paths there are (for per-path liveness).
    pub paths: usize,
    pub warntime: Duration,
    pub deadtime: Duration,
    pub initdead: Duration,
    pub auto_failback: bool,
    /// Whether a fencing command is configured.
    pub fencing: bool,
    pub fence_retry: Duration,
    pub health_holdoff: Duration,
    /// The health check asks the VIP: a standby cannot ask it, so after giving the VIP up
    /// for a failed check the node counts as healthy again once `health_holdoff` passed.
    pub health_on_vip: bool,
}

/// How a peer looks from here.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub priority: u16,
    /// Per path: when it last delivered a heartbeat of this peer.
    pub heard: Vec<Option<Instant>>,
    /// The last thing it said; `None` before the first heartbeat.
    pub said: Option<Announce>,
    alive: bool,
    warned: bool,
    /// Fenced since it went silent: no need to fence it again before taking over.
    fenced: bool,
    /// It came back (first heard, back from the dead, eligible again): `auto_failback`
    /// looks at this once.
    returned: bool,
}

impl PeerView {
    fn last_heard(&self) -> Option<Instant> {
        self.heard.iter().flatten().max().copied()
    }

    /// Heard on some path within `deadtime` of `now`.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    fn role(&self) -> Option<Role> {
        self.said.as_ref().map(|a| a.role)
    }
}

/// The last change of role, for `ha_status`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Role,
    pub to: Role,
    pub reason: String,
    pub at: Instant,
}

/// Fencing in progress or failed: which peer, and when the next try may run.
#[derive(Debug, Clone)]
enum Fencing {
    Idle,
    Running(String),
    Failed { peer: String, retry_at: Instant },
}

pub struct Election {
    p: Params,
    started: Instant,
    role: Role,
    peers: BTreeMap<String, PeerView>,
    maintenance: bool,
    claim: bool,
    leaving: bool,
    healthy: bool,
    holdoff_until: Option<Instant>,
    yield_to: Option<String>,
    fencing: Fencing,
    last: Option<Transition>,
}

/// Ordering of candidates: higher priority first, then the lower name.
fn rank(priority: u16, name: &str) -> (u16, Reverse<&str>) {
    (priority, Reverse(name))
}

impl Election {
    pub fn new(p: Params, now: Instant) -> Election {
        let peers = p
            .peers
            .iter()
            .map(|(name, priority)| {
                let view = PeerView {
                    priority: *priority,
                    heard: vec![None; p.paths],
                    said: None,
                    alive: false,
                    warned: false,
                    fenced: false,
                    returned: false,
                };
                (name.clone(), view)
            })
            .collect();
        Election {
            p,
            started: now,
            role: Role::Standby,
            peers,
            maintenance: false,
            claim: false,
            leaving: false,
            healthy: true,
            holdoff_until: None,
            yield_to: None,
            fencing: Fencing::Idle,
            last: None,
        }
    }

    pub fn role(&self) -> Role {
        if self.leaving && self.role != Role::Active {
            Role::Leaving
        } else {
            self.role
        }
    }

    pub fn is_active(&self) -> bool {
        self.role == Role::Active
    }

    pub fn peers(&self) -> &BTreeMap<String, PeerView> {
        &self.peers
    }

    pub fn last_transition(&self) -> Option<&Transition> {
        self.last.as_ref()
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// The peer being fenced, or whose fencing failed.
    pub fn fencing(&self) -> Option<(&str, bool)> {
        match &self.fencing {
            Fencing::Idle => None,
            Fencing::Running(p) => Some((p, true)),
            Fencing::Failed { peer, .. } => Some((peer, false)),
        }
    }

    fn eligible(&self, now: Instant) -> bool {
        !self.maintenance && !self.leaving && self.healthy && self.holdoff_until.is_none_or(|t| now >= t)
    }

    /// What this node says in its next heartbeat.
    pub fn announce(&self, now: Instant) -> Announce {
        Announce {
            role: self.role(),
            priority: self.p.priority,
            eligible: self.eligible(now),
            claim: self.claim,
            yield_to: self.yield_to.clone(),
        }
    }

    /// A heartbeat of `peer` arrived on path `path` (already authenticated and fresh).
    pub fn heard(&mut self, peer: &str, path: usize, said: Announce, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(view) = self.peers.get_mut(peer) else { return out };
        if let Some(slot) = view.heard.get_mut(path) {
            *slot = Some(now);
        }
        let was_eligible = view.said.as_ref().is_some_and(|a| a.eligible);
        if !view.alive {
            view.alive = true;
            view.fenced = false;
            view.returned = true;
            out.push(Action::PeerUp { peer: peer.to_string() });
            if matches!(&self.fencing, Fencing::Running(p) | Fencing::Failed { peer: p, .. } if p == peer) {
                // Heard again: whatever the fencing does now, the peer is not to be taken from.
                self.fencing = Fencing::Idle;
            }
        } else if said.eligible && !was_eligible {
            view.returned = true;
        }
        view.warned = false;
        if self.yield_to.as_deref() == Some(peer) && said.role == Role::Active {
            // The hand-over is done.
            self.yield_to = None;
        }
        view.said = Some(said);
        out.extend(self.decide(now));
        out
    }

    /// Time passed: silences, start-up wait, retries.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for (name, view) in self.peers.iter_mut() {
            let Some(last) = view.last_heard() else { continue };
            let silent = now.saturating_duration_since(last);
            if view.alive && silent >= self.p.deadtime {
                view.alive = false;
                view.returned = false;
                out.push(Action::PeerDead { peer: name.clone() });
            } else if view.alive && !view.warned && silent >= self.p.warntime {
                view.warned = true;
                out.push(Action::Late { peer: name.clone(), silent });
            }
        }
        out.extend(self.decide(now));
        out
    }

    /// The earliest instant at which [`Election::tick`] has something to notice.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut times = Vec::new();
        for view in self.peers.values().filter(|v| v.alive) {
            if let Some(last) = view.last_heard() {
                times.push(last + self.p.deadtime);
                if !view.warned {
                    times.push(last + self.p.warntime);
                }
            }
        }
        let init_end = self.started + self.p.initdead;
        if now < init_end {
            times.push(init_end);
        }
        if let Fencing::Failed { retry_at, .. } = &self.fencing {
            times.push(*retry_at);
        }
        if let Some(t) = self.holdoff_until {
            if now < t {
                times.push(t);
            }
        }
        times.into_iter().filter(|t| *t > now).min()
    }

    /// The fencing of `peer` ended.
    pub fn fenced(&mut self, peer: &str, ok: bool, now: Instant) -> Vec<Action> {
        if !matches!(&self.fencing, Fencing::Running(p) if p == peer) {
            // Cancelled meanwhile (the peer was heard again): the result means nothing now.
            return Vec::new();
        }
        if ok {
            self.fencing = Fencing::Idle;
            if let Some(v) = self.peers.get_mut(peer) {
                v.fenced = true;
            }
        } else {
            self.fencing = Fencing::Failed { peer: peer.to_string(), retry_at: now + self.p.fence_retry };
        }
        self.decide(now)
    }

    /// The health check's verdict (after its allowed failures in a row).
    pub fn health(&mut self, ok: bool, now: Instant) -> Vec<Action> {
        let was = self.healthy;
        self.healthy = ok;
        let mut out = Vec::new();
        if !ok && self.role == Role::Active {
            self.holdoff_until = Some(now + self.p.health_holdoff);
            out.extend(self.step_down("health check failed", now));
            if self.p.health_on_vip {
                // Nobody can ask the VIP of a standby: the hold-off stands in for checks.
                self.healthy = true;
            }
        }
        if was != self.healthy {
            out.push(Action::SendNow);
        }
        out.extend(self.decide(now));
        out
    }

    /// The VIP could not be added after [`Action::Acquire`]: stand by again, held off for
    /// `health_holdoff` so a peer that can hold it takes it (health is not touched: the
    /// SIP service may be fine).
    pub fn acquire_failed(&mut self, now: Instant) -> Vec<Action> {
        self.holdoff_until = Some(now + self.p.health_holdoff);
        let mut out = self.step_down("the VIP could not be added", now);
        out.extend(self.decide(now));
        out
    }

    /// `ha_takeover`: leave maintenance and take the VIP, from its holder if need be.
    pub fn takeover(&mut self, now: Instant) -> Vec<Action> {
        self.maintenance = false;
        self.holdoff_until = None;
        if self.role != Role::Active {
            self.claim = true;
        }
        let mut out = vec![Action::SendNow];
        out.extend(self.decide(now));
        out
    }

    /// `ha_release`: maintenance; give the VIP up and do not take it until `ha_takeover`.
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        self.maintenance = true;
        self.claim = false;
        let mut out = self.step_down("maintenance (ha_release)", now);
        out.push(Action::SendNow);
        out
    }

    /// Graceful shutdown: give the VIP up at once and say so.
    pub fn leave(&mut self, now: Instant) -> Vec<Action> {
        self.leaving = true;
        self.claim = false;
        let mut out = self.step_down("shutdown", now);
        out.push(Action::SendNow);
        out
    }

    fn transition(&mut self, to: Role, reason: &str, now: Instant) {
        self.last = Some(Transition { from: self.role, to, reason: reason.to_string(), at: now });
        self.role = to;
    }

    fn step_down(&mut self, reason: &str, now: Instant) -> Vec<Action> {
        if self.role != Role::Active {
            return Vec::new();
        }
        self.transition(Role::Standby, reason, now);
        vec![Action::Release { reason: reason.to_string() }, Action::SendNow]
    }

    fn hand_over(&mut self, to: &str, reason: String, now: Instant) -> Vec<Action> {
        let out = self.step_down(&reason, now);
        self.yield_to = Some(to.to_string());
        out
    }

    fn decide(&mut self, now: Instant) -> Vec<Action> {
        if self.role == Role::Active {
            self.decide_active(now)
        } else {
            self.decide_standby(now)
        }
    }

    fn decide_active(&mut self, now: Instant) -> Vec<Action> {
        let me = rank(self.p.priority, &self.p.me);
        let alive = || self.peers.iter().filter(|(_, v)| v.alive);
        // A healed split: two holders; the lower ranked one gives way.
        let outranking_holder = alive()
            .filter(|(_, v)| v.role() == Some(Role::Active))
            .find(|(n, v)| rank(v.said.as_ref().map_or(v.priority, |a| a.priority), n) > me)
            .map(|(n, _)| n.clone());
        if let Some(peer) = outranking_holder {
            return self.hand_over(&peer, format!("{peer} holds the VIP too and outranks this node"), now);
        }
        let claimant = alive()
            .filter(|(_, v)| v.said.as_ref().is_some_and(|a| a.claim && a.eligible && a.role == Role::Standby))
            .map(|(n, _)| n.clone())
            .next();
        if let Some(peer) = claimant {
            return self.hand_over(&peer, format!("{peer} asked for the VIP (ha_takeover)"), now);
        }
        if self.p.auto_failback {
            let preferred = alive()
                .filter(|(_, v)| v.returned && v.said.as_ref().is_some_and(|a| a.eligible && a.role == Role::Standby))
                .filter(|(n, v)| rank(v.said.as_ref().map_or(v.priority, |a| a.priority), n) > me)
                .map(|(n, _)| n.clone())
                .next();
            self.clear_returned();
            if let Some(peer) = preferred {
                return self.hand_over(&peer, format!("auto_failback: {peer} is back and preferred"), now);
            }
        } else {
            self.clear_returned();
        }
        Vec::new()
    }

    fn clear_returned(&mut self) {
        for v in self.peers.values_mut() {
            v.returned = false;
        }
    }

    fn decide_standby(&mut self, now: Instant) -> Vec<Action> {
        if !self.eligible(now) {
            return Vec::new();
        }
        // Once this node stood by while a peer held the VIP, auto_failback's "return" of
        // that peer means nothing to it.
        self.clear_returned();
        let initializing = now < self.started + self.p.initdead;
        if initializing && self.peers.values().any(|v| v.said.is_none()) {
            // ha.cf initdead: the peers may still be booting; wait to hear them.
            return Vec::new();
        }
        if self.peers.values().any(|v| v.alive && v.role() == Some(Role::Active)) {
            return Vec::new();
        }
        if self.best_candidate() != self.p.me {
            return Vec::new();
        }
        // Peers that may still hold the VIP without answering: fence them first.
        let unfenced: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, v)| !v.alive && !v.fenced && matches!(v.role(), None | Some(Role::Active)))
            .map(|(n, _)| n.clone())
            .collect();
        if self.p.fencing {
            if let Some(peer) = unfenced.first() {
                return self.fence(peer, now);
            }
        }
        let reason = self.takeover_reason(&unfenced);
        self.claim = false;
        self.yield_to = None;
        self.fencing = Fencing::Idle;
        self.transition(Role::Active, &reason, now);
        vec![Action::Acquire { reason }, Action::SendNow]
    }

    fn fence(&mut self, peer: &str, now: Instant) -> Vec<Action> {
        match &self.fencing {
            Fencing::Running(_) => Vec::new(),
            Fencing::Failed { retry_at, .. } if now < *retry_at => Vec::new(),
            _ => {
                self.fencing = Fencing::Running(peer.to_string());
                vec![Action::Fence { peer: peer.to_string() }]
            }
        }
    }

    /// Why this node takes the VIP now, for the log and `ha_status`.
    fn takeover_reason(&self, silent: &[String]) -> String {
        if self.claim {
            return "ha_takeover".into();
        }
        if let Some(from) =
            self.peers.iter().find(|(_, v)| v.said.as_ref().and_then(|a| a.yield_to.as_deref()) == Some(&self.p.me))
        {
            return format!("{} handed the VIP over", from.0);
        }
        if let Some(peer) = silent.first() {
            let view = &self.peers[peer];
            return match view.said {
                None => format!("{peer} not heard within initdead ({:?})", self.p.initdead),
                Some(_) => format!("{peer} silent on every path for deadtime ({:?})", self.p.deadtime),
            };
        }
        if let Some((peer, _)) = self.peers.iter().find(|(_, v)| v.role() == Some(Role::Leaving)) {
            return format!("{peer} is shutting down");
        }
        "no node holds the VIP".into()
    }

    /// Among this node and the alive eligible standbys: the one asked to take over or
    /// handed the VIP, else the highest ranked.
    fn best_candidate(&self) -> String {
        let mut cands: Vec<(&str, u16, bool)> = vec![(&self.p.me, self.p.priority, self.claim)];
        let mut named: Option<&str> = None;
        for (name, v) in &self.peers {
            let Some(a) = v.said.as_ref() else { continue };
            if !v.alive {
                continue;
            }
            if let Some(to) = a.yield_to.as_deref() {
                named = Some(to);
            }
            if a.eligible && a.role == Role::Standby {
                cands.push((name, a.priority, a.claim));
            }
        }
        if let Some((n, _, _)) = cands.iter().filter(|c| c.2).max_by_key(|c| rank(c.1, c.0)) {
            return n.to_string();
        }
        if let Some(n) = named.filter(|n| cands.iter().any(|c| c.0 == *n)) {
            return n.to_string();
        }
        cands.iter().max_by_key(|c| rank(c.1, c.0)).map(|c| c.0.to_string()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(me: &str, prio: u16, peer: &str, peer_prio: u16) -> Params {
        Params {
            me: me.into(),
            priority: prio,
            peers: vec![(peer.into(), peer_prio)],
            paths: 2,
            warntime: 300 * MS,
            deadtime: 500 * MS,
            initdead: 3000 * MS,
            auto_failback: false,
            fencing: false,
            fence_retry: 1000 * MS,
            health_holdoff: 5000 * MS,
            health_on_vip: false,
        }
    }

    fn says(role: Role, priority: u16) -> Announce {
        Announce { role, priority, eligible: true, claim: false, yield_to: None }
    }

    fn acquires(a: &[Action]) -> bool {
        a.iter().any(|x| matches!(x, Action::Acquire { .. }))
    }

    /// Nothing about the VIP: no acquire, release or fencing (peer up/down notes allowed).
    fn quiet(a: &[Action]) -> bool {
        a.iter().all(|x| !matches!(x, Action::Acquire { .. } | Action::Release { .. } | Action::Fence { .. }))
    }

    fn releases(a: &[Action]) -> bool {
        a.iter().any(|x| matches!(x, Action::Release { .. }))
    }

    /// lb1 (priority 100) active with lb2 standing by, both heard at `t`.
    fn active_pair(p: Params, t0: Instant) -> Election {
        let mut e = Election::new(p, t0);
        let a = e.heard("lb2", 0, says(Role::Standby, 50), t0 + MS);
        assert!(acquires(&a), "{a:?}");
        e
    }

    #[test]
    fn initdead_waits_for_an_unheard_peer_then_takes_over_alone() {
        let t0 = Instant::now();
        let mut e = Election::new(params("lb1", 100, "lb2", 50), t0);
        assert!(quiet(&e.tick(t0 + 1000 * MS)));
        assert_eq!(e.next_deadline(t0 + 1000 * MS), Some(t0 + 3000 * MS));
        let a = e.tick(t0 + 3000 * MS);
        assert!(acquires(&a), "{a:?}");
        assert!(e.last_transition().unwrap().reason.contains("initdead"));
    }

    #[test]
    fn the_higher_priority_standby_wins_a_cold_start_and_the_other_waits() {
        let t0 = Instant::now();
        let mut lb1 = Election::new(params("lb1", 100, "lb2", 50), t0);
        let mut lb2 = Election::new(params("lb2", 50, "lb1", 100), t0);
        assert!(quiet(&lb2.heard("lb1", 0, lb1.announce(t0), t0)));
        assert!(acquires(&lb1.heard("lb2", 0, lb2.announce(t0), t0)));
        assert!(quiet(&lb2.heard("lb1", 1, lb1.announce(t0), t0 + MS)));
        // Equal priorities: the lower name.
        let mut a = Election::new(params("a", 1, "b", 1), t0);
        assert!(acquires(&a.heard("b", 0, says(Role::Standby, 1), t0)));
    }

    #[test]
    fn one_path_enough_and_silence_on_all_paths_is_death() {
        let t0 = Instant::now();
        let mut lb2 = Election::new(params("lb2", 50, "lb1", 100), t0);
        lb2.heard("lb1", 0, says(Role::Active, 100), t0);
        lb2.heard("lb1", 1, says(Role::Active, 100), t0);
        // Path 0 goes quiet, path 1 keeps talking: no takeover.
        for i in 1..20 {
            let a = lb2.heard("lb1", 1, says(Role::Active, 100), t0 + i * 100 * MS);
            assert!(!acquires(&a));
            assert!(lb2.tick(t0 + i * 100 * MS + 50 * MS).iter().all(|x| !acquires(std::slice::from_ref(x))));
        }
        let last = t0 + 1900 * MS;
        let late = lb2.tick(last + 300 * MS);
        assert!(late.iter().any(|x| matches!(x, Action::Late { .. })), "{late:?}");
        assert!(!acquires(&late));
        let a = lb2.tick(last + 500 * MS);
        assert!(a.contains(&Action::PeerDead { peer: "lb1".into() }) && acquires(&a), "{a:?}");
        assert!(lb2.last_transition().unwrap().reason.contains("silent"));
    }

    #[test]
    fn fencing_must_succeed_before_taking_from_a_silent_holder() {
        let t0 = Instant::now();
        let mut p = params("lb2", 50, "lb1", 100);
        p.fencing = true;
        let mut lb2 = Election::new(p, t0);
        lb2.heard("lb1", 0, says(Role::Active, 100), t0);
        let a = lb2.tick(t0 + 500 * MS);
        assert!(a.contains(&Action::Fence { peer: "lb1".into() }) && !acquires(&a), "{a:?}");
        assert!(quiet(&lb2.tick(t0 + 600 * MS)), "one fencing at a time");
        let a = lb2.fenced("lb1", false, t0 + 700 * MS);
        assert!(!acquires(&a) && lb2.fencing() == Some(("lb1", false)));
        assert_eq!(lb2.next_deadline(t0 + 700 * MS), Some(t0 + 1700 * MS));
        let a = lb2.tick(t0 + 1700 * MS);
        assert_eq!(a, vec![Action::Fence { peer: "lb1".into() }]);
        let a = lb2.fenced("lb1", true, t0 + 1800 * MS);
        assert!(acquires(&a), "{a:?}");
    }

    #[test]
    fn a_peer_heard_again_cancels_its_fencing() {
        let t0 = Instant::now();
        let mut p = params("lb2", 50, "lb1", 100);
        p.fencing = true;
        let mut lb2 = Election::new(p, t0);
        lb2.heard("lb1", 0, says(Role::Active, 100), t0);
        lb2.tick(t0 + 500 * MS);
        lb2.heard("lb1", 1, says(Role::Active, 100), t0 + 600 * MS);
        assert!(lb2.fencing().is_none());
        assert!(lb2.fenced("lb1", true, t0 + 700 * MS).is_empty());
        assert!(!lb2.is_active());
    }

    #[test]
    fn a_leaving_holder_is_replaced_at_once_without_fencing() {
        let t0 = Instant::now();
        let mut p = params("lb2", 50, "lb1", 100);
        p.fencing = true;
        let mut lb2 = Election::new(p, t0);
        lb2.heard("lb1", 0, says(Role::Active, 100), t0);
        let a = lb2.heard("lb1", 0, says(Role::Leaving, 100), t0 + 10 * MS);
        assert!(acquires(&a), "{a:?}");
        assert!(lb2.last_transition().unwrap().reason.contains("shutting down"));
        // …and its silence afterwards asks for no fencing either.
        assert!(lb2.tick(t0 + 2000 * MS).iter().all(|x| !matches!(x, Action::Fence { .. })));
    }

    #[test]
    fn leave_releases_and_announces_leaving() {
        let t0 = Instant::now();
        let mut e = active_pair(params("lb1", 100, "lb2", 50), t0);
        let a = e.leave(t0 + 10 * MS);
        assert!(releases(&a));
        assert_eq!(e.announce(t0).role, Role::Leaving);
        assert!(!e.announce(t0).eligible);
    }

    #[test]
    fn auto_failback_off_keeps_the_holder() {
        let t0 = Instant::now();
        let mut lb2 = Election::new(params("lb2", 50, "lb1", 100), t0);
        assert!(acquires(&lb2.tick(t0 + 3000 * MS)));
        // lb1, preferred, comes back: it stands by.
        let a = lb2.heard("lb1", 0, says(Role::Standby, 100), t0 + 4000 * MS);
        assert!(a.iter().all(|x| !matches!(x, Action::Release { .. })), "{a:?}");
        let mut lb1 = Election::new(params("lb1", 100, "lb2", 50), t0 + 4000 * MS);
        assert!(quiet(&lb1.heard("lb2", 0, says(Role::Active, 50), t0 + 4001 * MS)));
    }

    #[test]
    fn auto_failback_on_hands_the_vip_back_to_the_returning_preferred_node() {
        let t0 = Instant::now();
        let mut p = params("lb2", 50, "lb1", 100);
        p.auto_failback = true;
        let mut lb2 = Election::new(p, t0);
        assert!(acquires(&lb2.tick(t0 + 3000 * MS)));
        let a = lb2.heard("lb1", 0, says(Role::Standby, 100), t0 + 4000 * MS);
        assert!(releases(&a), "{a:?}");
        assert_eq!(lb2.announce(t0).yield_to.as_deref(), Some("lb1"));
        let mut lb1p = params("lb1", 100, "lb2", 50);
        lb1p.auto_failback = true;
        let mut lb1 = Election::new(lb1p, t0 + 4000 * MS);
        lb1.heard("lb2", 0, says(Role::Active, 50), t0 + 4000 * MS);
        let a = lb1.heard("lb2", 0, lb2.announce(t0 + 4001 * MS), t0 + 4001 * MS);
        assert!(acquires(&a), "{a:?}");
        assert!(lb1.last_transition().unwrap().reason.contains("handed"));
        // A lower-priority node returning changes nothing.
        let mut p = params("lb1", 100, "lb2", 50);
        p.auto_failback = true;
        let mut e = Election::new(p, t0);
        assert!(acquires(&e.tick(t0 + 3000 * MS)));
        assert!(!releases(&e.heard("lb2", 0, says(Role::Standby, 50), t0 + 3100 * MS)));
    }

    #[test]
    fn takeover_and_release_for_maintenance() {
        let t0 = Instant::now();
        let mut lb1 = active_pair(params("lb1", 100, "lb2", 50), t0);
        let mut lb2 = Election::new(params("lb2", 50, "lb1", 100), t0);
        lb2.heard("lb1", 0, lb1.announce(t0), t0);
        // ha_takeover on lb2: it claims; lb1 hands over; lb2 takes.
        let a = lb2.takeover(t0 + 10 * MS);
        assert!(!acquires(&a));
        assert!(releases(&lb1.heard("lb2", 0, lb2.announce(t0), t0 + 11 * MS)));
        assert!(acquires(&lb2.heard("lb1", 0, lb1.announce(t0), t0 + 12 * MS)));
        assert!(!lb2.announce(t0).claim);
        // lb1, though preferred, stays standing by.
        assert!(quiet(&lb1.heard("lb2", 0, lb2.announce(t0), t0 + 13 * MS)));
        // ha_release on lb2: maintenance; lb1 takes; lb2 does not take it back.
        assert!(releases(&lb2.release(t0 + 20 * MS)));
        assert!(acquires(&lb1.heard("lb2", 0, lb2.announce(t0 + 20 * MS), t0 + 21 * MS)));
        assert!(quiet(&lb2.heard("lb1", 0, lb1.announce(t0), t0 + 22 * MS)));
        assert!(quiet(&lb2.tick(t0 + 5000 * MS)), "in maintenance it never takes over");
    }

    #[test]
    fn failed_health_gives_up_and_holds_off() {
        let t0 = Instant::now();
        let mut p = params("lb1", 100, "lb2", 50);
        p.health_on_vip = true;
        let mut lb1 = active_pair(p, t0);
        let a = lb1.health(false, t0 + 10 * MS);
        assert!(releases(&a), "{a:?}");
        assert!(!lb1.announce(t0 + 11 * MS).eligible);
        // lb2 took over; lb2 then dies: lb1 waits for its hold-off first.
        lb1.heard("lb2", 0, says(Role::Active, 50), t0 + 20 * MS);
        assert!(!acquires(&lb1.tick(t0 + 600 * MS)));
        assert!(acquires(&lb1.tick(t0 + 5010 * MS)));
    }

    #[test]
    fn a_vip_that_cannot_be_added_is_given_up_for_a_while() {
        let t0 = Instant::now();
        let mut lb1 = active_pair(params("lb1", 100, "lb2", 50), t0);
        assert!(releases(&lb1.acquire_failed(t0 + 10 * MS)));
        assert!(lb1.is_healthy() && !lb1.announce(t0 + 11 * MS).eligible);
        assert!(quiet(&lb1.heard("lb2", 0, says(Role::Standby, 50), t0 + 20 * MS)));
        assert!(acquires(&lb1.heard("lb2", 0, says(Role::Standby, 50), t0 + 5011 * MS)));
    }

    #[test]
    fn a_healed_split_leaves_one_holder() {
        let t0 = Instant::now();
        let mut lb1 = active_pair(params("lb1", 100, "lb2", 50), t0);
        let mut lb2 = Election::new(params("lb2", 50, "lb1", 100), t0);
        assert!(acquires(&lb2.tick(t0 + 3000 * MS)));
        assert!(!releases(&lb1.heard("lb2", 0, says(Role::Active, 50), t0 + 3100 * MS)));
        assert!(releases(&lb2.heard("lb1", 0, says(Role::Active, 100), t0 + 3100 * MS)));
    }

    #[test]
    fn unknown_peers_are_ignored() {
        let t0 = Instant::now();
        let mut e = Election::new(params("lb1", 100, "lb2", 50), t0);
        assert!(quiet(&e.heard("intruder", 0, says(Role::Active, 999), t0)));
        assert!(acquires(&e.tick(t0 + 3000 * MS)));
    }
}
