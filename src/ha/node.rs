//! The HA runtime: one task owns the [`Election`] and does what it asks: sends and reads
//! heartbeats on every path, runs the fencing command and the health check, moves the VIP.
//! `ha_status` reads a snapshot it refreshes after every event.

use super::election::{Action, Election, Params, Role};
use super::heartbeat::{self, Beat, Rejected, ReplayGuard};
use super::path::{self, Path, PathSpec};
use super::vip::{self, Vip};
use super::{fence, health};
use crate::config::HaConfig;
use crate::script::ScriptHost;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Work run before the VIP is added (reloading registrations and dialogs).
pub type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long a takeover waits for its [`Hook`] before adding the VIP anyway (the reload goes
/// on behind): a slow database must not keep the address dark.
const HOOK_WAIT: Duration = Duration::from_millis(500);

/// When the gratuitous ARPs are sent again after a takeover: a switch or host that missed
/// the first learns from a later one.
const ANNOUNCE_AGAIN: [Duration; 3] = [Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(2)];

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("[ha] {0}")]
    Config(String),
    #[error("[ha] key_file {path}: {why}")]
    Key { path: String, why: String },
    #[error(transparent)]
    Path(#[from] path::PathError),
    #[error(transparent)]
    Vip(#[from] vip::VipError),
    #[error("ha: the node has stopped")]
    Stopped,
}

/// Counters and levels for `get_statistics ha:` and /metrics.
#[derive(Debug, Default)]
pub struct HaStats {
    /// 1 while this node holds the VIP (the health check and `Ha::is_active` read it too).
    pub active: AtomicU64,
    pub transitions: AtomicU64,
    pub takeovers: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_received: AtomicU64,
    /// A peer silent for `warntime`.
    pub heartbeats_late: AtomicU64,
    pub heartbeats_forged: AtomicU64,
    pub heartbeats_replayed: AtomicU64,
    pub heartbeats_stale: AtomicU64,
    pub heartbeats_malformed: AtomicU64,
    pub peer_deaths: AtomicU64,
    pub fence_runs: AtomicU64,
    pub fence_failures: AtomicU64,
    pub health_failures: AtomicU64,
    /// 1 while a peer announces other config settings or another script than ours.
    pub files_mismatch: AtomicU64,
}

/// One path as seen for one peer.
#[derive(Debug, Clone)]
pub struct PathStatus {
    pub path: String,
    pub alive: bool,
    /// Since its last heartbeat of this peer.
    pub silent: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub name: String,
    pub alive: bool,
    /// What it said last ("active", "standby", "leaving"); `None` before it was heard.
    pub role: Option<&'static str>,
    pub priority: u16,
    pub eligible: bool,
    pub paths: Vec<PathStatus>,
    /// Whether its config settings / script match ours (`None` before it was heard).
    pub same_config: Option<bool>,
    pub same_script: Option<bool>,
}

/// The last change of role, in wall-clock time.
#[derive(Debug, Clone)]
pub struct TransitionStatus {
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
    pub at: SystemTime,
}

/// What `ha_status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub node: String,
    pub role: &'static str,
    pub vip: String,
    pub holds_vip: bool,
    pub priority: u16,
    pub maintenance: bool,
    pub healthy: bool,
    pub auto_failback: bool,
    pub last: Option<TransitionStatus>,
    pub peers: Vec<PeerStatus>,
    /// The peer being fenced (`true`) or whose fencing failed (`false`).
    pub fencing: Option<(String, bool)>,
    pub config_hash: String,
    pub script_hash: String,
}

enum Command {
    Takeover(oneshot::Sender<()>),
    Release(oneshot::Sender<()>),
    Leave(oneshot::Sender<()>),
}

/// A running HA node.
pub struct Ha {
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<Status>>,
    pub stats: Arc<HaStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Ha {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads the shared key: the file must be readable by its owner only (as Heartbeat
/// insists for authkeys), and hold at least 16 characters.
///
/// # Errors
/// Missing, unreadable, open to others, or too short.
pub fn load_key(path: &std::path::Path) -> Result<Vec<u8>, HaError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |why: String| HaError::Key { path: path.display().to_string(), why };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!("mode {:o} lets others read it; chmod 600", meta.permissions().mode() & 0o777)));
    }
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let key = text.trim_ascii().to_vec();
    if key.len() < 16 {
        return Err(err("the key must be at least 16 characters".into()));
    }
    Ok(key)
}

/// Where the health check asks, and whether that is the VIP.
fn health_target(cfg: &HaConfig, vip: &Vip) -> Result<Option<(SocketAddr, bool)>, HaError> {
    if cfg.health_check.trim().is_empty() {
        return Ok(None);
    }
    let target = health::parse_target(cfg.health_check.trim())
        .map_err(|e| HaError::Config(format!("health_check {:?}: {e}", cfg.health_check)))?;
    Ok(Some((target, target.ip() == vip.addr)))
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Ha {
    /// Opens the paths and starts the node as standby. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// A bad VIP, path or key file.
    pub fn start(
        cfg: &HaConfig,
        fingerprint: Option<&str>,
        script: Arc<ScriptHost>,
        on_takeover: Option<Hook>,
    ) -> Result<Ha, HaError> {
        let vip = Vip::parse(&cfg.vip, &cfg.interface)?;
        let key = load_key(&cfg.key_file)?;
        let me = cfg.node_name();
        if !cfg.nodes.iter().any(|n| n.name == me) {
            return Err(HaError::Config(format!(
                "this node is {me:?}, which is not among nodes (set [ha] node, or $SIPROX_HA_NODE)"
            )));
        }
        let priority = cfg.nodes.iter().find(|n| n.name == me).map_or(0, |n| n.priority);
        let peers: Vec<(String, u16)> =
            cfg.nodes.iter().filter(|n| n.name != me).map(|n| (n.name.clone(), n.priority)).collect();
        let specs: Vec<PathSpec> = cfg.paths.iter().map(|l| PathSpec::parse(l)).collect::<Result<_, _>>()?;
        let paths: Vec<Arc<Path>> =
            specs.iter().map(|s| path::open(s, cfg.udpport).map(Arc::new)).collect::<Result<_, _>>()?;
        let health = health_target(cfg, &vip)?;
        let params = Params {
            me: me.clone(),
            priority,
            peers,
            paths: paths.len(),
            warntime: cfg.warntime,
            deadtime: cfg.deadtime,
            initdead: cfg.initdead,
            auto_failback: cfg.auto_failback,
            fencing: !cfg.fence_command.trim().is_empty(),
            fence_retry: cfg.fence_retry,
            health_holdoff: cfg.health_holdoff,
            health_on_vip: health.is_some_and(|(_, on_vip)| on_vip),
        };
        let config_hash = heartbeat::short_hash(fingerprint.unwrap_or(""));
        let now = Instant::now();
        let election = Election::new(params, now.into_std());
        let stats = Arc::new(HaStats::default());
        let status = Arc::new(Mutex::new(Status {
            node: me.clone(),
            role: Role::Standby.as_str(),
            vip: vip.to_string(),
            holds_vip: false,
            priority,
            maintenance: false,
            healthy: true,
            auto_failback: cfg.auto_failback,
            last: None,
            peers: Vec::new(),
            fencing: None,
            config_hash: heartbeat::hex(&config_hash),
            script_hash: String::new(),
        }));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (datagrams, datagram_rx) = mpsc::channel(1024);
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        let mut tasks: Vec<tokio::task::JoinHandle<()>> =
            paths.iter().enumerate().map(|(i, p)| tokio::spawn(receive(i, p.clone(), datagrams.clone()))).collect();
        if let Some((target, on_vip)) = health {
            let check = HealthCheck {
                target,
                on_vip,
                every: cfg.health_interval,
                timeout: cfg.health_timeout,
                failures: cfg.health_failures.max(1),
                stats: stats.clone(),
            };
            tasks.push(tokio::spawn(check.run(health_tx)));
        }
        let (fence_tx, fence_rx) = mpsc::unbounded_channel();
        let node = Node {
            cfg: cfg.clone(),
            me,
            key,
            vip,
            paths,
            election,
            guard: ReplayGuard::default(),
            generation: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(1),
            seq: 0,
            config_hash,
            script,
            peer_files: Default::default(),
            on_takeover,
            stats: stats.clone(),
            status: status.clone(),
            fence_tx,
        };
        tasks.push(tokio::spawn(node.run(command_rx, datagram_rx, health_rx, fence_rx)));
        tracing::info!(node = %status.lock().unwrap_or_else(|p| p.into_inner()).node, vip = %cfg.vip, paths = cfg.paths.len(), "ha: standing by");
        Ok(Ha { commands, status, stats, tasks })
    }

    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_active(&self) -> bool {
        self.stats.active.load(Ordering::Acquire) == 1
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) -> Result<(), HaError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| HaError::Stopped)?;
        rx.await.map_err(|_| HaError::Stopped)
    }

    /// `ha_takeover`: leave maintenance and take the VIP (from its holder, who hands it over).
    ///
    /// # Errors
    /// The node stopped.
    pub async fn takeover(&self) -> Result<(), HaError> {
        self.ask(Command::Takeover).await
    }

    /// `ha_release`: give the VIP up and stay out until `ha_takeover`.
    ///
    /// # Errors
    /// The node stopped.
    pub async fn release(&self) -> Result<(), HaError> {
        self.ask(Command::Release).await
    }

    /// Graceful shutdown: release the VIP, tell the peers at once.
    ///
    /// # Errors
    /// The node stopped.
    pub async fn leave(&self) -> Result<(), HaError> {
        self.ask(Command::Leave).await
    }
}

/// Reads one path's datagrams into the node's queue.
async fn receive(index: usize, path: Arc<Path>, to: mpsc::Sender<(usize, Vec<u8>)>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match path.socket.recv_from(&mut buf).await {
            Ok((n, _)) => {
                if to.send((index, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(path = %path.spec.line, error = %e, "ha: receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The periodic OPTIONS to this node's own SIP service.
struct HealthCheck {
    target: SocketAddr,
    on_vip: bool,
    every: Duration,
    timeout: Duration,
    failures: u32,
    stats: Arc<HaStats>,
}

impl HealthCheck {
    /// Sends a verdict when it changes: unhealthy after `failures` in a row, healthy at
    /// the first success.
    async fn run(self, verdicts: mpsc::UnboundedSender<bool>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut failed, mut healthy) = (0u32, true);
        loop {
            tick.tick().await;
            if self.on_vip && self.stats.active.load(Ordering::Acquire) == 0 {
                // A standby does not hold the VIP: asking it would ask the other node.
                (failed, healthy) = (0, true);
                continue;
            }
            let ok = match health::ping(self.target, None, self.timeout).await {
                Ok(r) => health::is_healthy(r.code),
                Err(e) => {
                    tracing::debug!(target = %self.target, error = %e, "ha: health check got no answer");
                    false
                }
            };
            if ok {
                failed = 0;
            } else {
                failed += 1;
                self.stats.health_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %self.target, failed, of = self.failures, "ha: health check failed");
            }
            let now_healthy = failed < self.failures;
            if now_healthy != healthy {
                healthy = now_healthy;
                if verdicts.send(healthy).is_err() {
                    return;
                }
                if !healthy {
                    failed = 0;
                }
            }
        }
    }
}

/// The task's state.
struct Node {
    cfg: HaConfig,
    me: String,
    key: Vec<u8>,
    vip: Vip,
    paths: Vec<Arc<Path>>,
    election: Election,
    guard: ReplayGuard,
    generation: u64,
    seq: u64,
    config_hash: [u8; 8],
    script: Arc<ScriptHost>,
    /// Per peer: (same config, same script) as last announced.
    peer_files: std::collections::HashMap<String, (bool, bool)>,
    on_takeover: Option<Hook>,
    stats: Arc<HaStats>,
    status: Arc<Mutex<Status>>,
    fence_tx: mpsc::UnboundedSender<(String, bool)>,
}

impl Node {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut datagrams: mpsc::Receiver<(usize, Vec<u8>)>,
        mut health: mpsc::UnboundedReceiver<bool>,
        mut fenced: mpsc::UnboundedReceiver<(String, bool)>,
    ) {
        // A VIP left behind by an earlier run of this node (killed before it could
        // release) is not ours until the election says so.
        if let Ok(true) = vip::is_present(&self.vip).await {
            tracing::warn!(vip = %self.vip, "ha: the VIP was still on this node at start; removing it");
            let _ = vip::remove(&self.vip).await;
        }
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            let deadline = self.election.next_deadline(now.into_std()).map(Instant::from_std);
            let wake = deadline.map_or(next_send, |d| d.min(next_send));
            let actions = tokio::select! {
                Some((path, data)) = datagrams.recv() => self.on_datagram(path, &data),
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => return,
                },
                Some(ok) = health.recv() => self.election.health(ok, Instant::now().into_std()),
                Some((peer, ok)) = fenced.recv() => {
                    if !ok {
                        self.stats.fence_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    self.election.fenced(&peer, ok, Instant::now().into_std())
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_send {
                        self.send_beats().await;
                        next_send = Instant::now() + self.cfg.keepalive;
                    }
                    self.election.tick(Instant::now().into_std())
                }
            };
            self.perform(actions).await;
            self.refresh_status();
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Vec<Action> {
        let now = Instant::now().into_std();
        match cmd {
            Command::Takeover(done) => {
                tracing::info!("ha: takeover asked (ha_takeover)");
                let a = self.election.takeover(now);
                let _ = done.send(());
                a
            }
            Command::Release(done) => {
                tracing::info!("ha: release asked (ha_release): maintenance");
                let a = self.election.release(now);
                self.perform(a).await;
                let _ = done.send(());
                Vec::new()
            }
            Command::Leave(done) => {
                let a = self.election.leave(now);
                self.perform(a).await;
                // A heartbeat can be lost; the peers should not have to wait for deadtime.
                for _ in 0..2 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    self.send_beats().await;
                }
                let _ = done.send(());
                Vec::new()
            }
        }
    }

    fn on_datagram(&mut self, path: usize, data: &[u8]) -> Vec<Action> {
        let beat = match heartbeat::decode(data, &self.key) {
            Ok(b) if b.node == self.me => return Vec::new(),
            Ok(b) => b,
            Err(r) => {
                self.rejected(path, r, None);
                return Vec::new();
            }
        };
        if !self.election.peers().contains_key(&beat.node) {
            tracing::warn!(node = %beat.node, path = %self.paths[path].spec.line, "ha: heartbeat of a node not in [ha] nodes (same key?)");
            return Vec::new();
        }
        if let Err(r) = self.guard.check(path, &beat, unix_ms(), self.cfg.max_age) {
            self.rejected(path, r, Some(&beat.node));
            return Vec::new();
        }
        self.stats.heartbeats_received.fetch_add(1, Ordering::Relaxed);
        self.compare_files(&beat);
        self.election.heard(&beat.node, path, beat.announce, Instant::now().into_std())
    }

    fn rejected(&self, path: usize, why: Rejected, node: Option<&str>) {
        let counter = match why {
            Rejected::Forged => &self.stats.heartbeats_forged,
            Rejected::Replayed => &self.stats.heartbeats_replayed,
            Rejected::Stale => &self.stats.heartbeats_stale,
            Rejected::Malformed | Rejected::Own => &self.stats.heartbeats_malformed,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        // The first and then every 100th: a flood must not flood the log too.
        if n % 100 == 0 {
            tracing::warn!(path = %self.paths[path].spec.line, node = node.unwrap_or("?"), reason = why.as_str(), dropped = n + 1, "ha: heartbeat dropped");
        }
    }

    fn script_hash(&self) -> [u8; 8] {
        heartbeat::short_hash(&self.script.bundle().hash)
    }

    /// Logs and flags a peer running other files than this node (the seeds insist on
    /// identical files on both nodes).
    fn compare_files(&mut self, beat: &Beat) {
        let now = (beat.config == self.config_hash, beat.script == self.script_hash());
        let before = self.peer_files.insert(beat.node.clone(), now);
        if before != Some(now) && now != (true, true) {
            tracing::warn!(peer = %beat.node, same_config = now.0, same_script = now.1, "ha: the peer runs other files than this node");
        } else if before.is_some_and(|b| b != (true, true)) && now == (true, true) {
            tracing::info!(peer = %beat.node, "ha: the peer runs the same files again");
        }
        let mismatch = self.peer_files.values().any(|f| *f != (true, true));
        self.stats.files_mismatch.store(u64::from(mismatch), Ordering::Relaxed);
    }

    async fn send_beats(&mut self) {
        self.seq += 1;
        let beat = Beat {
            node: self.me.clone(),
            announce: self.election.announce(Instant::now().into_std()),
            generation: self.generation,
            seq: self.seq,
            sent_ms: unix_ms(),
            config: self.config_hash,
            script: self.script_hash(),
        };
        let data = heartbeat::encode(&beat, &self.key);
        for p in &self.paths {
            for to in &p.targets {
                match p.socket.send_to(&data, to).await {
                    Ok(_) => {
                        self.stats.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    // A link that is down fails here; the other paths carry on.
                    Err(e) => tracing::trace!(path = %p.spec.line, %to, error = %e, "ha: heartbeat not sent"),
                }
            }
        }
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        let mut send_now = false;
        for a in actions {
            match a {
                Action::Acquire { reason } => self.acquire(&reason).await,
                Action::Release { reason } => self.release(&reason).await,
                Action::Fence { peer } => self.fence(peer),
                Action::SendNow => send_now = true,
                Action::Late { peer, silent } => {
                    self.stats.heartbeats_late.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer, ?silent, warntime = ?self.cfg.warntime, "ha: late heartbeat");
                }
                Action::PeerDead { peer } => {
                    self.stats.peer_deaths.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer, deadtime = ?self.cfg.deadtime, "ha: peer silent on every path: dead");
                }
                Action::PeerUp { peer } => tracing::info!(peer, "ha: peer heard"),
            }
        }
        if send_now {
            self.send_beats().await;
        }
    }

    async fn acquire(&mut self, reason: &str) {
        let t0 = Instant::now();
        tracing::warn!(vip = %self.vip, reason, "ha: taking over the VIP");
        if let Some(hook) = &self.on_takeover {
            let mut reload = tokio::spawn(hook());
            if tokio::time::timeout(HOOK_WAIT, &mut reload).await.is_err() {
                tracing::warn!(waited = ?HOOK_WAIT, "ha: shared state still loading; the VIP goes up meanwhile");
            }
        }
        if let Err(e) = vip::add(&self.vip).await {
            tracing::error!(vip = %self.vip, error = %e, "ha: the VIP could not be added; giving it up");
            let actions = self.election.acquire_failed(Instant::now().into_std());
            // The election steps down (Release) and holds off; carry that out.
            Box::pin(self.perform(actions)).await;
            return;
        }
        self.stats.active.store(1, Ordering::Release);
        self.stats.transitions.fetch_add(1, Ordering::Relaxed);
        self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = vip::announce(&self.vip) {
            tracing::warn!(vip = %self.vip, error = %e, "ha: gratuitous ARP not sent");
        }
        let v = self.vip.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            for at in ANNOUNCE_AGAIN {
                tokio::time::sleep_until(start + at).await;
                let _ = vip::announce(&v);
            }
        });
        tracing::warn!(vip = %self.vip, took = ?t0.elapsed(), "ha: active, answering on the VIP");
    }

    async fn release(&mut self, reason: &str) {
        self.stats.active.store(0, Ordering::Release);
        self.stats.transitions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = vip::remove(&self.vip).await {
            tracing::error!(vip = %self.vip, error = %e, "ha: the VIP could not be removed");
        }
        tracing::warn!(vip = %self.vip, reason, "ha: VIP released, standing by");
    }

    fn fence(&self, peer: String) {
        self.stats.fence_runs.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer, command = %self.cfg.fence_command, "ha: fencing the silent peer before taking over");
        let (cmd, me, vip, timeout) =
            (self.cfg.fence_command.clone(), self.me.clone(), self.cfg.vip.clone(), self.cfg.fence_timeout);
        let tx = self.fence_tx.clone();
        tokio::spawn(async move {
            let ok = fence::run(&cmd, &peer, &me, &vip, timeout).await;
            let _ = tx.send((peer, ok));
        });
    }

    fn refresh_status(&self) {
        let now = Instant::now().into_std();
        let e = &self.election;
        let peers = e
            .peers()
            .iter()
            .map(|(name, v)| {
                let paths = self
                    .paths
                    .iter()
                    .zip(&v.heard)
                    .map(|(p, h)| {
                        let silent = h.map(|t| now.saturating_duration_since(t));
                        PathStatus {
                            path: p.spec.line.clone(),
                            alive: silent.is_some_and(|s| s < self.cfg.deadtime),
                            silent,
                        }
                    })
                    .collect();
                let files = self.peer_files.get(name);
                PeerStatus {
                    name: name.clone(),
                    alive: v.is_alive(),
                    role: v.said.as_ref().map(|a| a.role.as_str()),
                    priority: v.said.as_ref().map_or(v.priority, |a| a.priority),
                    eligible: v.said.as_ref().is_some_and(|a| a.eligible),
                    paths,
                    same_config: files.map(|f| f.0),
                    same_script: files.map(|f| f.1),
                }
            })
            .collect();
        let wall = |at: std::time::Instant| SystemTime::now() - now.saturating_duration_since(at);
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.role = e.role().as_str();
        st.holds_vip = self.stats.active.load(Ordering::Relaxed) == 1;
        st.maintenance = e.in_maintenance();
        st.healthy = e.is_healthy();
        st.last = e.last_transition().map(|t| TransitionStatus {
            from: t.from.as_str(),
            to: t.to.as_str(),
            reason: t.reason.clone(),
            at: wall(t.at),
        });
        st.peers = peers;
        st.fencing = e.fencing().map(|(p, running)| (p.to_string(), running));
        st.script_hash = heartbeat::hex(&self.script_hash());
    }
}
