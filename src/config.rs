//! The TOML configuration (design.md §1): `[core]`, `[db]`, `[mi]`, and one table per module
//! keyed by its OpenSIPS modparam names. Every field has a default, so an empty file — or no
//! file at all — is the embedded default setup.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub core: CoreConfig,
    pub db: DbConfig,
    pub mi: MiConfig,
    pub tm: TmConfig,
    pub rr: RrConfig,
    pub maxfwd: MaxfwdConfig,
    pub dispatcher: DispatcherConfig,
    pub dialog: DialogConfig,
    pub load_balancer: LoadBalancerConfig,
    pub usrloc: UsrlocConfig,
    pub registrar: RegistrarConfig,
    pub nathelper: NathelperConfig,
    pub auth: AuthConfig,
    pub ha: HaConfig,
    /// Where the file was read from; relative paths in it (the script) resolve against it.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// SHA-256 of the file's settings (comments, layout and `[ha] node` left out), which
    /// the HA heartbeats carry so a pair notices when its nodes run different files.
    #[serde(skip)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// `proto:ip:port` sockets, OpenSIPS `socket=` style.
    pub listen: Vec<String>,
    /// Address (`host` or `host:port`) written into Via and Record-Route instead of the
    /// socket address (OpenSIPS `advertised_address`), e.g. the virtual IP.
    pub advertise: Option<String>,
    /// The route script; relative to the config file.
    pub script: PathBuf,
    /// UDP receive tasks per UDP socket (0 = one per CPU).
    pub workers: usize,
    /// `error`, `warn`, `info`, `debug`, `trace`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// Kernel receive buffer asked for on each UDP socket, bytes.
    pub udp_rcvbuf: usize,
    /// Further names (hosts or IPs) that mean "this proxy" to `is_myself` and `loose_route`
    /// (OpenSIPS `alias=`).
    pub alias: Vec<String>,
    /// Overload protection: a UDP datagram that waited longer than this in the kernel's
    /// queue means the proxy is behind; new requests then get 503 and retransmissions are
    /// dropped, while replies and in-dialog requests still go through (0 = never shed).
    pub shed_delay_ms: u64,
    /// Rhai operation budget of one hook call (a runaway loop ends with a 500).
    pub max_operations: u64,
    /// Rhai call depth limit.
    pub max_call_levels: usize,
    /// Longest string a script may build, bytes.
    pub max_string_size: usize,
    /// Most elements of an array / a map a script may build.
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Reload the script when it (or a module it imports) changes on disk.
    pub script_watch: bool,
    /// Quiet time after the last change on disk before reloading, milliseconds (at most 10 s).
    pub script_debounce_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            advertise: None,
            script: PathBuf::from("scripts/default.rhai"),
            workers: 0,
            log_level: "info".into(),
            udp_rcvbuf: 8 * 1024 * 1024,
            alias: Vec::new(),
            shed_delay_ms: 100,
            max_operations: 200_000,
            max_call_levels: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            script_watch: true,
            script_debounce_ms: 100,
        }
    }
}

/// The database (docs/database.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `sqlite://FILE` (relative to the working directory; created and migrated on start),
    /// `postgres://user:pass@host:port/db` or `mysql://user:pass@host:port/db`.
    pub url: String,
    /// Longest wait for one database operation, connecting included, milliseconds.
    pub timeout_ms: u64,
    /// Connections in the pool (SQLite: readers share them; one writer at a time).
    pub max_connections: u32,
}
impl DbConfig {
    /// The URL with a relative SQLite file resolved against `base` (the config file's
    /// folder), as the script path is: the proxy and `siprox ctl -c` then open the same file
    /// whatever their working directory. Without a config file, relative stays relative to
    /// the working directory (the embedded default `./siprox.db`).
    pub fn resolved_url(&self, base: Option<&Path>) -> String {
        let Some(base) = base.filter(|b| !b.as_os_str().is_empty()) else { return self.url.clone() };
        let Some(rest) = self.url.strip_prefix("sqlite://").or_else(|| self.url.strip_prefix("sqlite:")) else {
            return self.url.clone();
        };
        let (file, query) = rest.split_once('?').map_or((rest, None), |(f, q)| (f, Some(q)));
        if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() {
            return self.url.clone();
        }
        let joined = base.join(file);
        match query {
            Some(q) => format!("sqlite://{}?{q}", joined.display()),
            None => format!("sqlite://{}", joined.display()),
        }
    }
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig { url: "sqlite://siprox.db".into(), timeout_ms: 5000, max_connections: 4 }
    }
}

/// The management interface (JSON-RPC `POST /mi`, `GET /metrics`; docs/mi.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiConfig {
    /// `IP:PORT` of the HTTP server; `""` disables the management interface.
    pub listen: String,
    /// Bearer token both paths then require (`Authorization: Bearer <token>`); mandatory
    /// when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl MiConfig {
    /// The address to serve on, `None` when disabled.
    ///
    /// # Errors
    /// Not `IP:PORT`, or reachable beyond this host without a token.
    pub fn addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "[mi] listen = {listen:?}: want IP:PORT (e.g. 127.0.0.1:8888), or \"\" to disable the management interface"
            ))
        })?;
        let has_token = self.token.as_deref().is_some_and(|t| !t.trim().is_empty());
        if !addr.ip().is_loopback() && !has_token {
            return Err(ConfigError::Invalid(format!(
                "[mi] listen = {listen:?} is reachable from other hosts: set [mi] token (clients send \
                 Authorization: Bearer <token>), or listen on 127.0.0.1"
            )));
        }
        Ok(Some(addr))
    }
}
impl Default for MiConfig {
    fn default() -> Self {
        MiConfig { listen: "127.0.0.1:8888".into(), token: None }
    }
}

/// tm modparams (OpenSIPS names and units).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct TmConfig {
    /// RFC 3261 T1, milliseconds.
    pub T1_timer: u64,
    /// RFC 3261 T2, milliseconds.
    pub T2_timer: u64,
    /// RFC 3261 T4, milliseconds.
    pub T4_timer: u64,
    /// Final-response timer before any reply, seconds.
    pub fr_timeout: u64,
    /// INVITE final-response timer once a provisional arrived, seconds.
    pub fr_inv_timeout: u64,
    /// How long a completed transaction lingers to absorb retransmissions, seconds.
    pub wt_timer: u64,
    pub auto_100trying: bool,
    pub restart_fr_on_each_reply: bool,
    /// 1: a 6xx cancels nothing and blocks nothing (OpenSIPS `disable_6xx_block`).
    pub disable_6xx_block: bool,
}
impl Default for TmConfig {
    fn default() -> Self {
        TmConfig {
            T1_timer: 500,
            T2_timer: 4000,
            T4_timer: 5000,
            fr_timeout: 30,
            fr_inv_timeout: 120,
            wt_timer: 5,
            auto_100trying: true,
            restart_fr_on_each_reply: true,
            disable_6xx_block: false,
        }
    }
}

/// rr modparams.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RrConfig {
    pub append_fromtag: bool,
    pub enable_double_rr: bool,
}
impl Default for RrConfig {
    fn default() -> Self {
        RrConfig { append_fromtag: true, enable_double_rr: true }
    }
}

/// maxfwd modparams.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxfwdConfig {
    pub max_limit: u32,
}
impl Default for MaxfwdConfig {
    fn default() -> Self {
        MaxfwdConfig { max_limit: 256 }
    }
}

/// dispatcher modparams (OpenSIPS names, units and defaults; docs in
/// `modules::dispatcher`). Only the default partition exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Table the sets are loaded from.
    pub table_name: String,
    /// Seconds between two probing rounds; 0 disables probing (OpenSIPS's default).
    pub ds_ping_interval: u64,
    pub ds_ping_method: String,
    /// From URI of the probes.
    pub ds_ping_from: String,
    /// Max-Forwards of the probes (unset: the transaction layer's default).
    pub ds_ping_maxfwd: Option<u32>,
    /// Failed probes (or `ds_mark_dst("p")` calls) before an active destination goes to probing.
    pub ds_probing_threshold: u32,
    /// 0: probe only destinations in probing state (and rows with `probe_mode` 1);
    /// 1: probe every destination that is not inactive.
    pub ds_probing_mode: u8,
    /// Reply codes that also count as a good probe reply besides 200 (`[501, 403]` or `"501, 403"`).
    #[serde(deserialize_with = "int_list")]
    pub options_reply_codes: Vec<i64>,
    /// Only these sets are probed (empty: every set); `[1, 2]` or `"1,2"`.
    #[serde(deserialize_with = "int_list")]
    pub ds_probing_list: Vec<i64>,
    /// Socket (`proto:ip:port`) probes leave from when the destination names none.
    pub ds_probing_sock: Option<String>,
    /// Text with pseudo-variables hashed by algorithm 7 (e.g. `"$fU@$ci"`).
    pub hash_pvar: Option<String>,
    /// Pseudo-variable pattern read as the load of each destination by algorithm 9
    /// (`%u` = the destination URI, `%i` = the set id).
    pub pvar_algo_pattern: Option<String>,
    /// Name of the script route scoring each destination for algorithm 10
    /// (`fn route_<name>(dst_uri, attrs, script_attrs)`).
    pub algo_route: Option<String>,
    /// Where `ds_is_in_list` without a set stores the matching set id (`$var(x)` / `$avp(x)`).
    pub setid_pvar: Option<String>,
    /// Failover AVPs (`$avp(name)` or the bare name).
    pub dst_avp: String,
    pub grp_avp: String,
    pub cnt_avp: String,
    pub sock_avp: String,
    /// AVP receiving the `attrs` of the selected destination (unset: none, as in OpenSIPS).
    pub attrs_avp: Option<String>,
    /// Start each row in its `state` column, and write every state change back to it (OpenSIPS
    /// `persistent_state`): a restart, or the other node of a pair, starts from it.
    #[serde(deserialize_with = "bool_or_int")]
    pub persistent_state: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            table_name: "dispatcher".into(),
            ds_ping_interval: 0,
            ds_ping_method: "OPTIONS".into(),
            ds_ping_from: "sip:dispatcher@localhost".into(),
            ds_ping_maxfwd: None,
            ds_probing_threshold: 3,
            ds_probing_mode: 0,
            options_reply_codes: Vec::new(),
            ds_probing_list: Vec::new(),
            ds_probing_sock: None,
            hash_pvar: None,
            pvar_algo_pattern: None,
            algo_route: None,
            setid_pvar: None,
            dst_avp: "ds_dst_failover".into(),
            grp_avp: "ds_grp_failover".into(),
            cnt_avp: "ds_cnt_failover".into(),
            sock_avp: "ds_sock_failover".into(),
            attrs_avp: None,
            persistent_state: true,
        }
    }
}

/// `[dialog]`: OpenSIPS dialog modparams (spec §10, docs/dialog.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialogConfig {
    /// Lifetime of a confirmed dialog, seconds.
    pub default_timeout: u32,
    /// 0 DID only, 1 DID then Call-ID/tags, 2 Call-ID/tags only.
    pub dlg_match_mode: u8,
    /// 0 memory only, 1 every change written at once, 2 written every `db_update_period`,
    /// 3 written at shutdown. With 1–3 the table is read back at start.
    pub db_mode: u8,
    /// Seconds between two flushes in `db_mode` 2.
    pub db_update_period: u64,
    pub table_name: String,
    /// Profiles whose members carry a value (`["caller", "trunk"]` or `"caller;trunk"`).
    #[serde(deserialize_with = "name_list")]
    pub profiles_with_value: Vec<String>,
    #[serde(deserialize_with = "name_list")]
    pub profiles_no_value: Vec<String>,
}

impl Default for DialogConfig {
    fn default() -> Self {
        DialogConfig {
            default_timeout: 43200,
            dlg_match_mode: 1,
            db_mode: 0,
            db_update_period: 60,
            table_name: "dialog".into(),
            profiles_with_value: Vec::new(),
            profiles_no_value: Vec::new(),
        }
    }
}

/// `[load_balancer]`: OpenSIPS load_balancer modparams (spec §7, docs/load_balancer.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerConfig {
    pub table_name: String,
    /// Seconds between two probing rounds; 0 disables probing.
    pub probing_interval: u64,
    pub probing_method: String,
    pub probing_from: String,
    /// Codes besides 200 that count as a good probe reply.
    #[serde(deserialize_with = "int_list")]
    pub probing_reply_codes: Vec<i64>,
    /// Log every probe's outcome, not only state changes.
    #[serde(deserialize_with = "bool_or_int")]
    pub probing_verbose: bool,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            table_name: "load_balancer".into(),
            probing_interval: 30,
            probing_method: "OPTIONS".into(),
            probing_from: "sip:prober@localhost".into(),
            probing_reply_codes: Vec::new(),
            probing_verbose: false,
        }
    }
}

/// `[usrloc]`: OpenSIPS usrloc modparams (spec §8.1, docs/registrar.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsrlocConfig {
    /// `single-instance-no-db`, `single-instance-sql-write-through`,
    /// `single-instance-sql-write-back` or `sql-only`.
    pub working_mode_preset: String,
    /// The deprecated numeric form (0–3); used when `working_mode_preset` is not set.
    pub db_mode: Option<u8>,
    /// Seconds between two write-back flushes (and expiry sweeps of the table).
    pub timer_interval: u64,
    /// AoRs are `user@domain` (else `user`).
    #[serde(deserialize_with = "bool_or_int")]
    pub use_domain: bool,
    /// Contacts ordered by last update instead of q.
    #[serde(deserialize_with = "bool_or_int")]
    pub desc_time_order: bool,
    /// 0: a binding is its Contact URI; 1: Contact URI and Call-ID.
    pub matching_mode: u8,
    /// Seconds in which a REGISTER with an old CSeq counts as a retransmission.
    pub cseq_delay: u64,
    /// The branch flag that marks a contact as behind NAT (saved with it, set on lookup).
    pub nat_bflag: Option<String>,
    /// siprox: milliseconds between two reads of the shared table's changes in `sql-only`
    /// (other nodes' registrations show up within this time).
    pub sync_interval_ms: u64,
}

/// The `working_mode_preset` values siprox runs (OpenSIPS's cluster presets are not among them).
pub const USRLOC_PRESETS: [&str; 4] =
    ["single-instance-no-db", "single-instance-sql-write-through", "single-instance-sql-write-back", "sql-only"];

impl UsrlocConfig {
    /// # Errors
    /// A preset siprox does not run, or a `db_mode` above 3.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let preset = self.working_mode_preset.trim();
        if !preset.is_empty() && !USRLOC_PRESETS.contains(&preset) {
            return Err(ConfigError::Invalid(format!(
                "[usrloc] working_mode_preset {preset:?} is not one of {}",
                USRLOC_PRESETS.join(", ")
            )));
        }
        if self.db_mode.is_some_and(|m| m > 3) {
            return Err(ConfigError::Invalid("[usrloc] db_mode must be 0–3".into()));
        }
        Ok(())
    }
}

impl Default for UsrlocConfig {
    fn default() -> Self {
        UsrlocConfig {
            working_mode_preset: String::new(),
            db_mode: None,
            timer_interval: 60,
            use_domain: false,
            desc_time_order: false,
            matching_mode: 0,
            cseq_delay: 20,
            nat_bflag: None,
            sync_interval_ms: 500,
        }
    }
}

/// `[auth]`: OpenSIPS auth / auth_db modparams (spec §15, docs/auth.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Key of the nonce MAC; empty: random at every start.
    pub secret: String,
    /// Seconds a nonce stays valid.
    pub nonce_expire: u64,
    /// `true`: HA1 is computed from the plaintext `password` column; `false`: read from
    /// `ha1` / `ha1_sha256` / `ha1_sha512t256`.
    #[serde(deserialize_with = "bool_or_int")]
    pub calculate_ha1: bool,
    /// Match the subscriber's `domain` column too.
    #[serde(deserialize_with = "bool_or_int")]
    pub use_domain: bool,
    /// Columns copied into AVPs on success: `col` or `$avp(name)=col`.
    #[serde(deserialize_with = "name_list")]
    pub load_credentials: Vec<String>,
    /// Subscriber tables held in memory (siprox only: scripts name one of them).
    #[serde(deserialize_with = "name_list")]
    pub tables: Vec<String>,
    /// Seconds between reloads of the tables (0: at start and on `auth_reload` only).
    pub reload_interval: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret: String::new(),
            nonce_expire: 30,
            calculate_ha1: false,
            use_domain: false,
            load_credentials: vec!["rpid".into()],
            tables: vec!["subscriber".into()],
            reload_interval: 10,
        }
    }
}

/// `[registrar]`: OpenSIPS registrar modparams (spec §8.2–8.3, docs/registrar.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Expiry when neither the Contact nor the request says one (seconds).
    pub default_expires: u32,
    /// Non-zero expiries below this are raised to it.
    pub min_expires: u32,
    /// Expiries above this are lowered to it (0: no limit).
    pub max_expires: u32,
    /// q of a contact without one, in thousandths as OpenSIPS writes it (1000 = q 1.0;
    /// -1: unspecified, sorted after every explicit q).
    pub default_q: i32,
    /// Contacts per AoR (0: no limit).
    pub max_contacts: u32,
    /// Retry-After of the 503 sent when `max_contacts` is exceeded (0: none).
    pub retry_after: u32,
    /// The AVP `fix_nated_register()` leaves the NAT address in.
    pub received_avp: String,
    /// The Contact parameter the 200 OK shows a stored received address in.
    pub received_param: String,
    /// AoRs keep their case.
    #[serde(deserialize_with = "bool_or_int")]
    pub case_sensitive: bool,
    /// Stripped from the domain of AoRs (`realm_prefix`).
    pub realm_prefix: String,
    /// Header naming the socket to save instead of the receiving one (`sock_hdr_name`).
    pub sock_hdr_name: Option<String>,
    /// REGISTERs with the same Call-ID and CSeq are accepted as refreshes.
    #[serde(deserialize_with = "bool_or_int")]
    pub allow_dup_cseq: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 0,
            default_q: -1,
            max_contacts: 0,
            retry_after: 0,
            received_avp: "rcv".into(),
            received_param: "received".into(),
            case_sensitive: false,
            realm_prefix: String::new(),
            sock_hdr_name: None,
            allow_dup_cseq: false,
        }
    }
}

/// `[nathelper]`: OpenSIPS nathelper modparams (spec §9, docs/nathelper.md). The script
/// functions read the first three; the keep-alive pinger reads the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NathelperConfig {
    /// AVP `fix_nated_register` stores the received URI in (`"rcv"` or `"$avp(rcv)"`); the
    /// registrar reads the one its own `received_avp` names.
    pub received_avp: String,
    /// `fix_nated_sdp` keeps no `a=oldcip:` / `a=oldoip:` lines.
    #[serde(deserialize_with = "bool_or_int")]
    pub oldip_skip: bool,
    /// The line `fix_nated_sdp("add-no-rtpproxy")` adds.
    pub nortpproxy_str: String,
    /// Seconds between two keep-alive rounds; 0 = no pings.
    pub natping_interval: u64,
    /// Ping only contacts saved with the NAT branch flag.
    #[serde(deserialize_with = "bool_or_int")]
    pub ping_nated_only: bool,
    /// Contacts with this branch flag (name or number) get a SIP request as keep-alive;
    /// the others a 4-byte UDP packet.
    #[serde(deserialize_with = "opt_name")]
    pub sipping_bflag: Option<String>,
    /// Method of the SIP keep-alives.
    pub sipping_method: String,
    /// From URI of the SIP keep-alives (required for them).
    pub sipping_from: Option<String>,
    /// Also ping contacts reached over TCP.
    #[serde(deserialize_with = "bool_or_int")]
    pub natping_tcp: bool,
    /// Unanswered SIP keep-alives before a contact counts as dead.
    pub max_pings_lost: u32,
    /// Dead contacts with this branch flag (name or number) are removed.
    #[serde(deserialize_with = "opt_name")]
    pub remove_on_timeout_bflag: Option<String>,
    /// Seconds a SIP keep-alive waits for its reply before it counts as lost.
    pub ping_threshold: u32,
}

impl Default for NathelperConfig {
    fn default() -> Self {
        NathelperConfig {
            received_avp: "rcv".into(),
            oldip_skip: false,
            nortpproxy_str: "a=nortpproxy:yes".into(),
            natping_interval: 0,
            ping_nated_only: true,
            sipping_bflag: None,
            sipping_method: "OPTIONS".into(),
            sipping_from: None,
            natping_tcp: false,
            max_pings_lost: 3,
            remove_on_timeout_bflag: None,
            ping_threshold: 3,
        }
    }
}

/// A flag written as a name (`"SIP_PING"`) or as OpenSIPS's number (`7`).
fn opt_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Name(String),
        Int(i64),
    }
    Ok(Some(match Form::deserialize(d)? {
        Form::Name(n) => n,
        Form::Int(i) => i.to_string(),
    }))
}

/// Names written as a TOML array or as OpenSIPS's `;`/`,`-separated string.
fn name_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::Text(t) => t.split([';', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
    })
}

/// A list of integers written as a TOML array or as OpenSIPS's comma-separated string.
fn int_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<i64>),
        One(i64),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::List(v) => Ok(v),
        Form::One(i) => Ok(vec![i]),
        Form::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))))
            .collect(),
    }
}

/// `[ha]`: the active/standby pair (design.md §5, docs/ha.md). Off while `vip` is empty.
/// Timings follow Heartbeat's ha.cf: a number is seconds, a string a duration ("100ms").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaConfig {
    /// This node's name; empty: `$SIPROX_HA_NODE`, else the host name (ha.cf `node`
    /// names are `uname -n`). Left out of the files' fingerprint, so the same file can
    /// serve both nodes.
    pub node: String,
    /// The pair (ha.cf `node` lines), each with its priority: with `auto_failback`, the
    /// highest is the preferred holder.
    pub nodes: Vec<HaNode>,
    /// The virtual IP, `address/prefix` (or Heartbeat's `address/netmask`).
    pub vip: String,
    /// The interface the VIP is added to.
    pub interface: String,
    /// Heartbeat paths, as ha.cf lines: `ucast IFACE ADDR…` (a node skips its own
    /// addresses, so one line can list both), `bcast IFACE`, `mcast IFACE GROUP PORT TTL`.
    /// Two paths over different links are what keeps a pair from splitting.
    pub paths: Vec<String>,
    /// UDP port of `ucast` and `bcast` paths.
    pub udpport: u16,
    /// Between two heartbeats.
    #[serde(deserialize_with = "ha_time")]
    pub keepalive: Duration,
    /// Silence after which a late heartbeat is logged and counted.
    #[serde(deserialize_with = "ha_time")]
    pub warntime: Duration,
    /// Silence on every path after which a peer is dead.
    #[serde(deserialize_with = "ha_time")]
    pub deadtime: Duration,
    /// At start, how long to wait to hear the peers before taking the VIP alone.
    #[serde(deserialize_with = "ha_time")]
    pub initdead: Duration,
    /// A returning node of higher priority takes the VIP back (ha.cf `on`/`off`).
    #[serde(deserialize_with = "on_off")]
    pub auto_failback: bool,
    /// The shared key (ha.cf authkeys): a file readable by its owner only; relative to the
    /// config file.
    pub key_file: PathBuf,
    /// Heartbeats older than this (by their sender's clock) are dropped as stale.
    #[serde(deserialize_with = "ha_time")]
    pub max_age: Duration,
    /// Run through `sh -c` before taking the VIP from a peer that went silent (STONITH);
    /// exit 0 means the peer is fenced. `$SIPROX_HA_PEER`, `$SIPROX_HA_NODE` and
    /// `$SIPROX_HA_VIP` are set. Empty: no fencing.
    pub fence_command: String,
    #[serde(deserialize_with = "ha_time")]
    pub fence_timeout: Duration,
    /// After a failed fencing, the pause before the next try.
    #[serde(deserialize_with = "ha_time")]
    pub fence_retry: Duration,
    /// `HOST[:PORT]` of this node's own SIP service, asked with OPTIONS (empty: no check).
    /// When it is the VIP it is asked only while this node holds it.
    pub health_check: String,
    #[serde(deserialize_with = "ha_time")]
    pub health_interval: Duration,
    #[serde(deserialize_with = "ha_time")]
    pub health_timeout: Duration,
    /// Failed checks in a row after which the node gives the VIP up.
    pub health_failures: u32,
    /// After giving the VIP up for a failed check (with the VIP as target, which a standby
    /// cannot ask), how long before the node may take it again.
    #[serde(deserialize_with = "ha_time")]
    pub health_holdoff: Duration,
}

/// One node of the pair.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HaNode {
    pub name: String,
    #[serde(default)]
    pub priority: u16,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            node: String::new(),
            nodes: Vec::new(),
            vip: String::new(),
            interface: String::new(),
            paths: Vec::new(),
            udpport: 694,
            keepalive: Duration::from_millis(100),
            warntime: Duration::from_millis(300),
            deadtime: Duration::from_millis(500),
            initdead: Duration::from_secs(3),
            auto_failback: false,
            key_file: PathBuf::new(),
            max_age: Duration::from_secs(10),
            fence_command: String::new(),
            fence_timeout: Duration::from_secs(10),
            fence_retry: Duration::from_secs(2),
            health_check: String::new(),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_millis(500),
            health_failures: 3,
            health_holdoff: Duration::from_secs(30),
        }
    }
}

impl HaConfig {
    pub fn enabled(&self) -> bool {
        !self.vip.trim().is_empty()
    }

    /// # Errors
    /// Timings out of order, no path, no key, or this node not among `nodes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |m: String| Err(ConfigError::Invalid(format!("[ha] {m}")));
        if self.interface.trim().is_empty() {
            return bad("interface is required with vip".into());
        }
        if self.paths.is_empty() {
            return bad("paths: at least one heartbeat path (two on different links avoid split brain)".into());
        }
        if self.key_file.as_os_str().is_empty() {
            return bad("key_file is required: heartbeats are authenticated".into());
        }
        if self.keepalive.is_zero() || self.warntime < self.keepalive || self.deadtime < self.warntime {
            return bad(format!(
                "keepalive ({:?}) <= warntime ({:?}) <= deadtime ({:?}) is required",
                self.keepalive, self.warntime, self.deadtime
            ));
        }
        if self.nodes.len() < 2 {
            return bad("nodes: name both nodes of the pair".into());
        }
        let mut names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) || names.iter().any(|n| n.is_empty() || n.len() > 64) {
            return bad("nodes: names must be distinct, 1 to 64 characters".into());
        }
        // Which node this is (node, $SIPROX_HA_NODE, host name) is checked when the node
        // starts: `siprox ctl` and `siprox check` read the same file from anywhere.
        Ok(())
    }

    /// `node`, else `$SIPROX_HA_NODE`, else the host name.
    pub fn node_name(&self) -> String {
        if !self.node.trim().is_empty() {
            return self.node.trim().to_string();
        }
        if let Ok(n) = std::env::var("SIPROX_HA_NODE") {
            if !n.trim().is_empty() {
                return n.trim().to_string();
            }
        }
        host_name()
    }
}

/// `uname -n`.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // (or truncates, which the search for NUL below tolerates).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A time as ha.cf writes it: a number of seconds (`2`, `0.5`) or a duration (`"100ms"`).
fn ha_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::Int(s) => Ok(Duration::from_secs(s)),
        Form::Float(f) if f.is_finite() && f >= 0.0 => Ok(Duration::from_secs_f64(f)),
        Form::Float(f) => Err(serde::de::Error::custom(format!("{f} is not a time"))),
        Form::Text(t) => match t.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Ok(Duration::from_secs_f64(f)),
            _ => humantime::parse_duration(t.trim())
                .map_err(|e| serde::de::Error::custom(format!("{t:?} is not a time: {e}"))),
        },
    }
}

/// ha.cf's `on`/`off`, or a boolean, or `1`/`0`.
fn on_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Bool(bool),
        Int(i64),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::Bool(b) => Ok(b),
        Form::Int(i) => Ok(i != 0),
        Form::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => Ok(true),
            "off" | "no" | "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!("{other:?}: want on or off"))),
        },
    }
}

/// SHA-256 (hex) of a config text's settings: parsed and printed back, so comments and
/// layout do not count, with `[ha] node` left out (the one key that differs by node).
pub fn fingerprint(text: &str) -> Option<String> {
    use sha2::Digest;
    let mut value: toml::Table = toml::from_str(text).ok()?;
    if let Some(toml::Value::Table(ha)) = value.get_mut("ha") {
        ha.remove("node");
    }
    let canonical = toml::to_string(&value).ok()?;
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// A boolean written as `true`/`false` or as OpenSIPS's `1`/`0`.
fn bool_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Bool(bool),
        Int(i64),
    }
    Ok(match Form::deserialize(d)? {
        Form::Bool(b) => b,
        Form::Int(i) => i != 0,
    })
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML of this shape, or names an unusable socket.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })?;
        cfg.base_dir = path.parent().map(Path::to_path_buf);
        cfg.db.url = cfg.db.resolved_url(cfg.base_dir.as_deref());
        cfg.fingerprint = fingerprint(&text);
        if let (Some(dir), true) = (&cfg.base_dir, cfg.ha.key_file.is_relative()) {
            if !cfg.ha.key_file.as_os_str().is_empty() {
                cfg.ha.key_file = dir.join(&cfg.ha.key_file);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// # Errors
    /// A listen entry that is not `udp|tcp:IP:PORT`; an `[mi] listen` that is not `IP:PORT`
    /// or is reachable beyond loopback without a token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for l in &self.core.listen {
            parse_listen(l)?;
        }
        if self.core.listen.is_empty() {
            return Err(ConfigError::Invalid("[core] listen is empty".into()));
        }
        self.mi.addr()?;
        self.usrloc.validate()?;
        self.ha.validate()?;
        if self.dispatcher.ds_probing_mode > 1 {
            return Err(ConfigError::Invalid("[dispatcher] ds_probing_mode must be 0 or 1".into()));
        }
        Ok(())
    }

    /// The script path, resolved against the config file's folder.
    pub fn script_path(&self) -> PathBuf {
        match &self.base_dir {
            // Relative to the config file, as documented: a file of the same name in the
            // working directory must not win (two ported configs side by side, say).
            Some(dir) if self.core.script.is_relative() => dir.join(&self.core.script),
            _ => self.core.script.clone(),
        }
    }
}

/// Splits `udp:127.0.0.1:5060` into the protocol and the socket address.
///
/// # Errors
/// An unknown protocol or an address that is not `IP:PORT`.
pub fn parse_listen(s: &str) -> Result<(String, std::net::SocketAddr), ConfigError> {
    let (proto, addr) =
        s.split_once(':').ok_or_else(|| ConfigError::Invalid(format!("listen {s:?}: want proto:ip:port")))?;
    let proto = proto.to_ascii_lowercase();
    if proto != "udp" && proto != "tcp" {
        return Err(ConfigError::Invalid(format!("listen {s:?}: protocol must be udp or tcp")));
    }
    let addr = addr.parse().map_err(|_| ConfigError::Invalid(format!("listen {s:?}: bad address")))?;
    Ok((proto, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mi(listen: &str, token: Option<&str>) -> MiConfig {
        MiConfig { listen: listen.into(), token: token.map(str::to_string) }
    }

    #[test]
    fn dispatcher_lists_and_flags() {
        let cfg: Config = toml::from_str(
            "[dispatcher]\noptions_reply_codes = \"501, 403\"\nds_probing_list = [1, 2]\npersistent_state = 0\n",
        )
        .unwrap();
        assert_eq!(cfg.dispatcher.options_reply_codes, vec![501, 403]);
        assert_eq!(cfg.dispatcher.ds_probing_list, vec![1, 2]);
        assert!(!cfg.dispatcher.persistent_state);
        assert!(Config::default().dispatcher.persistent_state);
        assert!(toml::from_str::<Config>("[dispatcher]\npartition = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("[dispatcher]\noptions_reply_codes = \"a\"\n").is_err());
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n[core]").expect("README has the config example") + 8;
        let end = start + readme[start..].find("```").expect("closed");
        let cfg: Config = toml::from_str(&readme[start..end]).unwrap_or_else(|e| panic!("README example: {e}"));
        cfg.validate().unwrap();
        assert_eq!(cfg.dispatcher.dst_avp, "$avp(ds_dst_failover)");
    }

    #[test]
    fn nathelper_defaults_and_forms() {
        let d = Config::default().nathelper;
        assert_eq!(
            (d.received_avp.as_str(), d.oldip_skip, d.nortpproxy_str.as_str()),
            ("rcv", false, "a=nortpproxy:yes")
        );
        assert_eq!((d.natping_interval, d.ping_nated_only, d.natping_tcp), (0, true, false));
        assert_eq!((d.max_pings_lost, d.ping_threshold, d.sipping_method.as_str()), (3, 3, "OPTIONS"));
        assert!(d.sipping_bflag.is_none() && d.sipping_from.is_none() && d.remove_on_timeout_bflag.is_none());
        let cfg: Config = toml::from_str(
            "[nathelper]\nsipping_bflag = 7\nremove_on_timeout_bflag = \"DEAD\"\noldip_skip = 1\nping_nated_only = false\n",
        )
        .unwrap();
        assert_eq!(cfg.nathelper.sipping_bflag.as_deref(), Some("7"));
        assert_eq!(cfg.nathelper.remove_on_timeout_bflag.as_deref(), Some("DEAD"));
        assert!(cfg.nathelper.oldip_skip && !cfg.nathelper.ping_nated_only);
        assert!(toml::from_str::<Config>("[nathelper]\nnatping_partitions = 2\n").is_err());
    }

    const HA: &str = "[core]\nlisten = [\"udp:10.0.0.100:5060\"]\n[ha]\nnode = \"lb1\"\nnodes = [{ name = \"lb1\", priority = 100 }, { name = \"lb2\" }]\nvip = \"10.0.0.100/24\"\ninterface = \"eth0\"\npaths = [\"ucast eth1 10.1.0.1 10.1.0.2\"]\nkey_file = \"/etc/siprox/ha.key\"\n";

    #[test]
    fn ha_times_switches_and_rules() {
        let cfg: Config = toml::from_str(HA).unwrap();
        cfg.validate().unwrap();
        let ha = &cfg.ha;
        assert!(ha.enabled() && !Config::default().ha.enabled());
        assert_eq!((ha.keepalive, ha.deadtime), (Duration::from_millis(100), Duration::from_millis(500)));
        assert_eq!(ha.nodes[1], HaNode { name: "lb2".into(), priority: 0 });
        let t: Config = toml::from_str(
            "[ha]\nkeepalive = \"50ms\"\nwarntime = 0.5\ndeadtime = 2\ninitdead = \"1.5\"\nauto_failback = \"on\"\n",
        )
        .unwrap();
        assert_eq!(t.ha.keepalive, Duration::from_millis(50));
        assert_eq!(t.ha.warntime, Duration::from_millis(500));
        assert_eq!(t.ha.deadtime, Duration::from_secs(2));
        assert_eq!(t.ha.initdead, Duration::from_millis(1500));
        assert!(t.ha.auto_failback);
        assert!(toml::from_str::<Config>("[ha]\nauto_failback = \"legacy\"\n").is_err());
        assert!(toml::from_str::<Config>("[ha]\ndeadtime = \"soon\"\n").is_err());
        for (from, to) in [
            ("interface = \"eth0\"", "interface = \"\""),
            ("paths = [\"ucast eth1 10.1.0.1 10.1.0.2\"]", "paths = []"),
            ("key_file = \"/etc/siprox/ha.key\"", "key_file = \"\""),
            ("{ name = \"lb2\" }", "{ name = \"lb1\" }"),
            ("[ha]", "[ha]\ndeadtime = \"50ms\""),
        ] {
            let text = HA.replace(from, to);
            let cfg: Config = toml::from_str(&text).unwrap();
            assert!(cfg.validate().is_err(), "{to}");
        }
    }

    #[test]
    fn fingerprint_ignores_layout_comments_and_the_node_name() {
        let a = fingerprint(HA).unwrap();
        let b = fingerprint(&format!("# lb2's copy\n{}", HA.replace("node = \"lb1\"", "node   = \"lb2\""))).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(&HA.replace("eth1", "eth2")).unwrap());
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn mi_listen_rules() {
        assert_eq!(MiConfig::default().addr().unwrap(), Some("127.0.0.1:8888".parse().unwrap()));
        assert_eq!(mi("", None).addr().unwrap(), None);
        assert!(mi("[::1]:8888", None).addr().unwrap().is_some());
        let e = mi("0.0.0.0:8888", None).addr().unwrap_err().to_string();
        assert!(e.contains("[mi] token"), "{e}");
        assert!(mi("0.0.0.0:8888", Some(" ")).addr().is_err());
        assert!(mi("10.0.0.1:8888", Some("s3cret")).addr().unwrap().is_some());
        let e = mi("localhost:8888", None).addr().unwrap_err().to_string();
        assert!(e.contains("IP:PORT"), "{e}");
    }
}
