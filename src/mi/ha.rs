//! The HA node on the management interface: `ha_status`, `ha_takeover`, `ha_release`, the
//! `ha:` statistics and the `siprox_ha_*` metric families (docs/ha.md, docs/mi.md).

use super::metrics::{Exposition, Kind};
use super::{Command, Mi, MiError};
use crate::ha::{Ha, HaStats, Status};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Registers the commands, statistics and metrics of `ha`.
pub fn install(mi: &Arc<Mi>, ha: Arc<Ha>) {
    let h = ha.clone();
    mi.commands.register(Command::immediate("ha_status", &[&[]], move |_| Ok(status_json(&h.status()))));
    let h = ha.clone();
    mi.commands.register(Command::new("ha_takeover", &[&[]], move |_| {
        let h = h.clone();
        async move {
            h.takeover().await.map_err(|e| MiError::internal(e.to_string()))?;
            Ok(json!("OK"))
        }
    }));
    let h = ha.clone();
    mi.commands.register(Command::new("ha_release", &[&[]], move |_| {
        let h = h.clone();
        async move {
            h.release().await.map_err(|e| MiError::internal(e.to_string()))?;
            Ok(json!("OK"))
        }
    }));
    install_statistics(mi, &ha.stats);
    let h = ha.clone();
    mi.metrics.register(move |e| collect(&h.status(), &h.stats, e));
}

type Pick = fn(&HaStats) -> &AtomicU64;

const COUNTERS: [(&str, Pick); 13] = [
    ("transitions", |s| &s.transitions),
    ("takeovers", |s| &s.takeovers),
    ("heartbeats_sent", |s| &s.heartbeats_sent),
    ("heartbeats_received", |s| &s.heartbeats_received),
    ("heartbeats_late", |s| &s.heartbeats_late),
    ("heartbeats_forged", |s| &s.heartbeats_forged),
    ("heartbeats_replayed", |s| &s.heartbeats_replayed),
    ("heartbeats_stale", |s| &s.heartbeats_stale),
    ("heartbeats_malformed", |s| &s.heartbeats_malformed),
    ("peer_deaths", |s| &s.peer_deaths),
    ("fence_runs", |s| &s.fence_runs),
    ("fence_failures", |s| &s.fence_failures),
    ("health_failures", |s| &s.health_failures),
];

fn install_statistics(mi: &Arc<Mi>, stats: &Arc<HaStats>) {
    let st = &mi.statistics;
    for (name, pick) in COUNTERS {
        let (r, w) = (stats.clone(), stats.clone());
        st.counter("ha", name, move || pick(&r).load(Ordering::Relaxed), move || pick(&w).store(0, Ordering::Relaxed));
    }
    let s = stats.clone();
    st.gauge("ha", "active", move || s.active.load(Ordering::Relaxed));
    let s = stats.clone();
    st.gauge("ha", "files_mismatch", move || s.files_mismatch.load(Ordering::Relaxed));
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn status_json(st: &Status) -> Value {
    let peers: Vec<Value> = st
        .peers
        .iter()
        .map(|p| {
            let paths: Vec<Value> = p
                .paths
                .iter()
                .map(|x| {
                    json!({
                        "Path": x.path,
                        "Alive": x.alive,
                        "Silent ms": x.silent.map(|d| d.as_millis() as u64),
                    })
                })
                .collect();
            json!({
                "Node": p.name,
                "Alive": p.alive,
                "Role": p.role,
                "Priority": p.priority,
                "Eligible": p.eligible,
                "Paths": paths,
                "Same config": p.same_config,
                "Same script": p.same_script,
            })
        })
        .collect();
    json!({
        "Node": st.node,
        "Role": st.role,
        "VIP": st.vip,
        "Holds VIP": st.holds_vip,
        "Priority": st.priority,
        "Maintenance": st.maintenance,
        "Healthy": st.healthy,
        "Auto failback": st.auto_failback,
        "Last transition": st.last.as_ref().map(|t| json!({
            "From": t.from, "To": t.to, "Reason": t.reason, "At": rfc3339(t.at),
        })),
        "Fencing": st.fencing.as_ref().map(|(peer, running)| json!({
            "Peer": peer, "State": if *running { "running" } else { "failed, will retry" },
        })),
        "Config hash": st.config_hash,
        "Script hash": st.script_hash,
        "Peers": peers,
    })
}

fn collect(st: &Status, stats: &HaStats, e: &mut Exposition) {
    e.single("siprox_ha_active", Kind::Gauge, "1 while this node holds the VIP.", stats.active.load(Ordering::Relaxed));
    e.single(
        "siprox_ha_transitions_total",
        Kind::Counter,
        "Changes of role (takeovers and releases).",
        stats.transitions.load(Ordering::Relaxed),
    );
    let name = "siprox_ha_heartbeats_dropped_total";
    e.family(name, Kind::Counter, "Heartbeats refused, by reason.");
    for (reason, c) in [
        ("forged", &stats.heartbeats_forged),
        ("replayed", &stats.heartbeats_replayed),
        ("stale", &stats.heartbeats_stale),
        ("malformed", &stats.heartbeats_malformed),
    ] {
        e.sample(name, &[("reason", reason)], c.load(Ordering::Relaxed));
    }
    e.single(
        "siprox_ha_heartbeats_late_total",
        Kind::Counter,
        "Times a peer was silent for warntime.",
        stats.heartbeats_late.load(Ordering::Relaxed),
    );
    let name = "siprox_ha_peer_alive";
    e.family(name, Kind::Gauge, "1 while the peer is heard on some path.");
    for p in &st.peers {
        e.sample(name, &[("peer", p.name.as_str())], u8::from(p.alive));
    }
    let name = "siprox_ha_path_alive";
    e.family(name, Kind::Gauge, "1 while the path delivers the peer's heartbeats.");
    for p in &st.peers {
        for x in &p.paths {
            e.sample(name, &[("peer", p.name.as_str()), ("path", x.path.as_str())], u8::from(x.alive));
        }
    }
    e.single(
        "siprox_ha_files_mismatch",
        Kind::Gauge,
        "1 while a peer runs other config settings or another script than this node.",
        stats.files_mismatch.load(Ordering::Relaxed),
    );
}
