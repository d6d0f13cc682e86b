//! Global parameters, `loadmodule` and `modparam` → siprox.toml (design.md §1: `[core]`,
//! `[db]`, one table per module with OpenSIPS's parameter names as keys).

use super::parse::{Item, Value};
use crate::config::USRLOC_PRESETS;

/// The TOML type a key wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum K {
    Bool,
    Int,
    Str,
}

/// (OpenSIPS module, parameter, siprox table, key, type). Old names map to today's keys
/// (`fr_timer` → `fr_timeout`). `tests` in this file check every key against the real
/// config structs.
pub const MODPARAMS: &[(&str, &str, &str, &str, K)] = &[
    ("tm", "fr_timeout", "tm", "fr_timeout", K::Int),
    ("tm", "fr_inv_timeout", "tm", "fr_inv_timeout", K::Int),
    ("tm", "fr_timer", "tm", "fr_timeout", K::Int),
    ("tm", "fr_inv_timer", "tm", "fr_inv_timeout", K::Int),
    ("tm", "wt_timer", "tm", "wt_timer", K::Int),
    ("tm", "T1_timer", "tm", "T1_timer", K::Int),
    ("tm", "T2_timer", "tm", "T2_timer", K::Int),
    ("tm", "restart_fr_on_each_reply", "tm", "restart_fr_on_each_reply", K::Bool),
    ("tm", "disable_6xx_block", "tm", "disable_6xx_block", K::Bool),
    ("rr", "append_fromtag", "rr", "append_fromtag", K::Bool),
    ("rr", "enable_double_rr", "rr", "enable_double_rr", K::Bool),
    ("maxfwd", "max_limit", "maxfwd", "max_limit", K::Int),
    ("dispatcher", "table_name", "dispatcher", "table_name", K::Str),
    ("dispatcher", "ds_ping_interval", "dispatcher", "ds_ping_interval", K::Int),
    ("dispatcher", "ds_ping_method", "dispatcher", "ds_ping_method", K::Str),
    ("dispatcher", "ds_ping_from", "dispatcher", "ds_ping_from", K::Str),
    ("dispatcher", "ds_ping_maxfwd", "dispatcher", "ds_ping_maxfwd", K::Int),
    ("dispatcher", "ds_probing_threshold", "dispatcher", "ds_probing_threshold", K::Int),
    ("dispatcher", "ds_probing_threshhold", "dispatcher", "ds_probing_threshold", K::Int),
    ("dispatcher", "ds_probing_mode", "dispatcher", "ds_probing_mode", K::Int),
    ("dispatcher", "options_reply_codes", "dispatcher", "options_reply_codes", K::Str),
    ("dispatcher", "ds_probing_list", "dispatcher", "ds_probing_list", K::Str),
    ("dispatcher", "ds_probing_sock", "dispatcher", "ds_probing_sock", K::Str),
    ("dispatcher", "hash_pvar", "dispatcher", "hash_pvar", K::Str),
    ("dispatcher", "pvar_algo_pattern", "dispatcher", "pvar_algo_pattern", K::Str),
    ("dispatcher", "algo_route", "dispatcher", "algo_route", K::Str),
    ("dispatcher", "setid_pvar", "dispatcher", "setid_pvar", K::Str),
    ("dispatcher", "dst_avp", "dispatcher", "dst_avp", K::Str),
    ("dispatcher", "grp_avp", "dispatcher", "grp_avp", K::Str),
    ("dispatcher", "cnt_avp", "dispatcher", "cnt_avp", K::Str),
    ("dispatcher", "sock_avp", "dispatcher", "sock_avp", K::Str),
    ("dispatcher", "attrs_avp", "dispatcher", "attrs_avp", K::Str),
    ("dispatcher", "persistent_state", "dispatcher", "persistent_state", K::Bool),
    ("load_balancer", "probing_interval", "load_balancer", "probing_interval", K::Int),
    ("load_balancer", "probing_method", "load_balancer", "probing_method", K::Str),
    ("load_balancer", "probing_from", "load_balancer", "probing_from", K::Str),
    ("load_balancer", "probing_reply_codes", "load_balancer", "probing_reply_codes", K::Str),
    ("load_balancer", "probing_verbose", "load_balancer", "probing_verbose", K::Bool),
    ("dialog", "default_timeout", "dialog", "default_timeout", K::Int),
    ("dialog", "dlg_match_mode", "dialog", "dlg_match_mode", K::Int),
    ("dialog", "db_mode", "dialog", "db_mode", K::Int),
    ("dialog", "db_update_period", "dialog", "db_update_period", K::Int),
    ("dialog", "table_name", "dialog", "table_name", K::Str),
    ("dialog", "profiles_with_value", "dialog", "profiles_with_value", K::Str),
    ("dialog", "profiles_no_value", "dialog", "profiles_no_value", K::Str),
    ("usrloc", "working_mode_preset", "usrloc", "working_mode_preset", K::Str),
    ("usrloc", "db_mode", "usrloc", "db_mode", K::Int),
    ("usrloc", "timer_interval", "usrloc", "timer_interval", K::Int),
    ("usrloc", "use_domain", "usrloc", "use_domain", K::Bool),
    ("usrloc", "desc_time_order", "usrloc", "desc_time_order", K::Bool),
    ("usrloc", "matching_mode", "usrloc", "matching_mode", K::Int),
    ("usrloc", "cseq_delay", "usrloc", "cseq_delay", K::Int),
    ("usrloc", "nat_bflag", "usrloc", "nat_bflag", K::Str),
    ("registrar", "default_expires", "registrar", "default_expires", K::Int),
    ("registrar", "min_expires", "registrar", "min_expires", K::Int),
    ("registrar", "max_expires", "registrar", "max_expires", K::Int),
    ("registrar", "default_q", "registrar", "default_q", K::Int),
    ("registrar", "max_contacts", "registrar", "max_contacts", K::Int),
    ("registrar", "retry_after", "registrar", "retry_after", K::Int),
    ("registrar", "received_avp", "registrar", "received_avp", K::Str),
    ("registrar", "received_param", "registrar", "received_param", K::Str),
    ("registrar", "case_sensitive", "registrar", "case_sensitive", K::Bool),
    ("registrar", "realm_prefix", "registrar", "realm_prefix", K::Str),
    ("registrar", "sock_hdr_name", "registrar", "sock_hdr_name", K::Str),
    ("nathelper", "received_avp", "nathelper", "received_avp", K::Str),
    ("nathelper", "oldip_skip", "nathelper", "oldip_skip", K::Bool),
    ("nathelper", "nortpproxy_str", "nathelper", "nortpproxy_str", K::Str),
    ("nathelper", "natping_interval", "nathelper", "natping_interval", K::Int),
    ("nathelper", "ping_nated_only", "nathelper", "ping_nated_only", K::Bool),
    ("nathelper", "sipping_bflag", "nathelper", "sipping_bflag", K::Str),
    ("nathelper", "sipping_method", "nathelper", "sipping_method", K::Str),
    ("nathelper", "sipping_from", "nathelper", "sipping_from", K::Str),
    ("nathelper", "natping_tcp", "nathelper", "natping_tcp", K::Bool),
    ("nathelper", "max_pings_lost", "nathelper", "max_pings_lost", K::Int),
    ("nathelper", "remove_on_timeout_bflag", "nathelper", "remove_on_timeout_bflag", K::Str),
    ("nathelper", "ping_threshold", "nathelper", "ping_threshold", K::Int),
    ("auth", "secret", "auth", "secret", K::Str),
    ("auth", "nonce_expire", "auth", "nonce_expire", K::Int),
    ("auth_db", "calculate_ha1", "auth", "calculate_ha1", K::Bool),
    ("auth_db", "use_domain", "auth", "use_domain", K::Bool),
    ("auth_db", "load_credentials", "auth", "load_credentials", K::Str),
];

/// Modules siprox has built in (their `loadmodule` lines need nothing).
const BUILT_IN: &[&str] = &[
    "sl",
    "tm",
    "rr",
    "maxfwd",
    "signaling",
    "sipmsgops",
    "textops",
    "dispatcher",
    "load_balancer",
    "dialog",
    "usrloc",
    "registrar",
    "nathelper",
    "auth",
    "auth_db",
    "path",
    "regex",
    "uri",
    "db_mysql",
    "db_postgres",
    "db_sqlite",
    "proto_udp",
    "proto_tcp",
    "mi_fifo",
    "mi_http",
    "mi_json",
    "mi_datagram",
    "httpd",
    "domain",
];

/// Global parameters that siprox does not need, and why.
const NOT_NEEDED: &[(&[&str], &str)] = &[
    (
        &[
            "log_stderror",
            "log_stderr",
            "stderror_enabled",
            "log_facility",
            "syslog_facility",
            "syslog_enabled",
            "syslog_name",
            "xlog_level",
            "debug_mode",
            "memlog",
            "memdump",
            "log_name",
            "log_prefix",
        ],
        "siprox logs to stderr through tracing; the level is [core] log_level or RUST_LOG",
    ),
    (&["mpath"], "siprox's modules are built in"),
    (&["check_via"], "siprox matches replies to transactions by the Via branch; there is no sender check to turn on"),
    (
        &["mhomed", "disable_tcp"],
        "siprox listens on exactly the [core] listen sockets and picks the outgoing one per destination",
    ),
    (
        &[
            "fork",
            "tcp_children",
            "tcp_workers",
            "tcp_max_connections",
            "open_files_limit",
            "shm_hash_split_percentage",
            "pkg_mem",
            "shm_mem",
            "tcp_connection_lifetime",
        ],
        "siprox is one process of async tasks: no per-protocol worker pools or memory pools to size",
    ),
    (
        &[
            "dns",
            "rev_dns",
            "dns_try_ipv6",
            "dns_use_search_list",
            "disable_dns_blacklist",
            "dns_retr_time",
            "dns_retr_no",
            "dns_servers_no",
            "dns_try_naptr",
            "disable_dns_failover",
        ],
        "siprox resolves names with the system resolver (docs/script-api.md §7, DNS)",
    ),
    (&["auto_aliases"], "siprox's `is_myself` knows its sockets and [core] alias; no reverse lookups"),
    (&["server_header", "user_agent_header", "server_signature"], "siprox writes `Server: siprox` on its own replies"),
];

/// What happened to one line of the settings part.
#[derive(Debug, Clone)]
pub enum Fate {
    Converted,
    NotNeeded(String),
    Todo(String),
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: toml::Value,
    origins: Vec<(usize, String)>,
    comments: Vec<String>,
}

pub struct SettingsOut {
    pub text: String,
    /// (line, end line, fate) of every setting, module and parameter line.
    pub fates: Vec<(usize, usize, Fate)>,
}

#[derive(Default)]
struct Tables {
    tables: Vec<(String, Vec<Entry>)>,
}

impl Tables {
    /// Sets `table.key` (a list key appends).
    fn set(&mut self, table: &str, key: &str, value: toml::Value, origin: (usize, String), comments: Vec<String>) {
        let pos = match self.tables.iter().position(|(t, _)| t == table) {
            Some(p) => p,
            None => {
                self.tables.push((table.to_string(), Vec::new()));
                self.tables.len() - 1
            }
        };
        let entries = &mut self.tables[pos].1;
        match entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                match (&mut e.value, value) {
                    (toml::Value::Array(a), toml::Value::Array(mut b)) => a.append(&mut b),
                    (slot, v) => *slot = v,
                }
                e.origins.push(origin);
                e.comments.extend(comments);
            }
            None => entries.push(Entry { key: key.into(), value, origins: vec![origin], comments }),
        }
    }

    fn has(&self, table: &str, key: &str) -> bool {
        self.tables.iter().any(|(t, e)| t == table && e.iter().any(|e| e.key == key))
    }
}

pub fn convert(items: &[Item], src: &str, input_name: &str, script_name: &str) -> SettingsOut {
    let lines: Vec<&str> = src.lines().collect();
    let text_of = |a: usize, b: usize| -> String {
        (a..=b).filter_map(|n| lines.get(n - 1)).map(|l| l.trim()).collect::<Vec<_>>().join(" ")
    };
    let mut t = Tables::default();
    let mut fates = Vec::new();
    let mut todo_lines: Vec<String> = Vec::new();
    let mut pending_comments: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            // A trailing comment is part of the origin line each key shows.
            Item::Comment { trailing: true, .. } => {}
            Item::Comment { text, .. } => {
                if super::parse::comment_is_setting(items, i) {
                    pending_comments.extend(text.lines().map(|l| l.trim_end().to_string()));
                }
            }
            Item::Global { name, value, line } => {
                let fate =
                    global(&mut t, name, value, (*line, text_of(*line, *line)), std::mem::take(&mut pending_comments));
                if let Fate::Todo(r) = &fate {
                    todo_lines.push(format!("# TODO(port): line {line}: {} ({r})", text_of(*line, *line)));
                }
                fates.push((*line, *line, fate));
            }
            Item::LoadModule { name, line } => {
                pending_comments.clear();
                let module = name.trim_end_matches(".so").rsplit('/').next().unwrap_or(name).to_string();
                let fate = if BUILT_IN.contains(&module.as_str()) {
                    Fate::Converted
                } else {
                    Fate::NotNeeded(format!(
                        "module {module} is not in siprox; its functions and parameters are marked TODO where used"
                    ))
                };
                fates.push((*line, *line, fate));
            }
            Item::Modparam { module, param, value, line, end_line } => {
                let origin = (*line, text_of(*line, *end_line));
                let fate = modparam(&mut t, module, param, value, origin, std::mem::take(&mut pending_comments));
                if let Fate::Todo(r) = &fate {
                    todo_lines.push(format!("# TODO(port): line {line}: {} ({r})", text_of(*line, *end_line)));
                }
                fates.push((*line, *end_line, fate));
            }
            Item::Route { .. } | Item::Unparsed { .. } => pending_comments.clear(),
        }
    }
    t.set("core", "script", toml::Value::String(script_name.into()), (0, String::new()), Vec::new());
    // [core] and [db] first, then the modules in the order the file sets them.
    t.tables.sort_by_key(|(name, _)| match name.as_str() {
        "core" => 0,
        "db" => 1,
        _ => 2,
    });
    let mut out = String::new();
    out.push_str(&format!("# siprox.toml: converted by `siprox port` from {input_name}.\n"));
    out.push_str(
        "# Each key names the opensips.cfg line it comes from; port-report.txt lists what was not converted.\n",
    );
    if !t.has("core", "listen") {
        out.push_str(
            "# opensips.cfg has no listen/socket line: siprox listens on its default, udp and tcp 127.0.0.1:5060.\n",
        );
    }
    for (table, entries) in &t.tables {
        out.push_str(&format!("\n[{table}]\n"));
        for e in entries {
            for c in &e.comments {
                out.push_str(&format!("#{}{c}\n", if c.starts_with(' ') || c.is_empty() { "" } else { " " }));
            }
            for (line, text) in e.origins.iter().filter(|(l, _)| *l > 0) {
                out.push_str(&format!("# opensips.cfg:{line}: {text}\n"));
            }
            out.push_str(&format!("{} = {}\n", e.key, e.value));
        }
    }
    if !todo_lines.is_empty() {
        out.push_str("\n# Not converted: siprox has no such setting (port by hand or drop).\n");
        for l in todo_lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    SettingsOut { text: out, fates }
}

fn global(t: &mut Tables, name: &str, value: &str, origin: (usize, String), comments: Vec<String>) -> Fate {
    let unquoted = value.trim().trim_matches('"').trim();
    if let Some(reason) = super::catalog::placeholder(value) {
        return Fate::Todo(reason);
    }
    match name {
        "listen" | "socket" => match listen(unquoted) {
            Ok((sock, advertise)) => {
                t.set("core", "listen", toml::Value::Array(vec![toml::Value::String(sock)]), origin.clone(), comments);
                if let Some(a) = advertise {
                    t.set("core", "advertise", toml::Value::String(a), origin, Vec::new());
                }
                Fate::Converted
            }
            Err(r) => Fate::Todo(r),
        },
        "children" | "udp_workers" => match unquoted.parse::<i64>() {
            Ok(n) => {
                t.set("core", "workers", toml::Value::Integer(n), origin, comments);
                Fate::Converted
            }
            Err(_) => Fate::Todo("not a number".into()),
        },
        "debug" | "log_level" => match unquoted.parse::<i64>() {
            Ok(n) => {
                let level = match n {
                    i64::MIN..=-1 => "error",
                    0 | 1 => "warn",
                    2 | 3 => "info",
                    _ => "debug",
                };
                t.set("core", "log_level", toml::Value::String(level.into()), origin, comments);
                Fate::Converted
            }
            Err(_) => Fate::Todo("not a number".into()),
        },
        "alias" => {
            let host = unquoted
                .split_once(':')
                .filter(|(p, _)| matches!(*p, "udp" | "tcp" | "tls" | "sctp" | "ws" | "wss"))
                .map_or(unquoted, |(_, rest)| rest);
            t.set("core", "alias", toml::Value::Array(vec![toml::Value::String(host.to_string())]), origin, comments);
            Fate::Converted
        }
        "advertised_address" => {
            t.set("core", "advertise", toml::Value::String(unquoted.to_string()), origin, comments);
            Fate::Converted
        }
        _ => match NOT_NEEDED.iter().find(|(names, _)| names.contains(&name)) {
            Some((_, why)) => Fate::NotNeeded((*why).to_string()),
            None => Fate::Todo(format!("global parameter `{name}` is not in siprox")),
        },
    }
}

/// `proto:host[:port] [as host[:port]]` → (siprox socket, advertised address).
fn listen(value: &str) -> Result<(String, Option<String>), String> {
    let mut parts = value.split_whitespace();
    let sock = parts.next().ok_or("empty listen")?;
    let advertise = match (parts.next(), parts.next()) {
        (Some("as"), Some(a)) => Some(a.to_string()),
        _ => None,
    };
    let (proto, rest) = match sock.split_once(':') {
        Some((p, r)) if p.chars().all(|c| c.is_ascii_alphabetic()) && !r.is_empty() => (p.to_ascii_lowercase(), r),
        _ => ("udp".to_string(), sock),
    };
    if !matches!(proto.as_str(), "udp" | "tcp") {
        return Err(format!("siprox listens on udp and tcp; {proto} is not there yet"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => (h, p),
        _ => (rest, "5060"),
    };
    let host = if host == "*" { "0.0.0.0" } else { host };
    if host.parse::<std::net::IpAddr>().is_err() && host.trim_matches(['[', ']']).parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(format!("`{host}` is not an IP address (siprox binds addresses, not interface or host names)"));
    }
    Ok((format!("{proto}:{host}:{port}"), advertise))
}

fn modparam(
    t: &mut Tables,
    module: &str,
    param: &str,
    value: &Value,
    origin: (usize, String),
    comments: Vec<String>,
) -> Fate {
    if let Value::Str(s) = value {
        if let Some(reason) = super::catalog::placeholder(s) {
            return Fate::Todo(reason);
        }
    }
    if param == "db_url" {
        let Value::Str(url) = value else { return Fate::Todo("db_url must be a string".into()) };
        let url = url.replacen("postgresql://", "postgres://", 1);
        if !(url.starts_with("mysql://") || url.starts_with("postgres://") || url.starts_with("sqlite://")) {
            return Fate::Todo(format!("siprox's [db] is SQLite, PostgreSQL or MySQL; not {url}"));
        }
        if t.has("db", "url") {
            return Fate::NotNeeded(
                "siprox has one database for every module ([db] url): the first db_url is used".into(),
            );
        }
        t.set("db", "url", toml::Value::String(url), origin, comments);
        return Fate::Converted;
    }
    match (module, param) {
        ("mi_fifo" | "mi_http" | "mi_datagram" | "httpd", _) => {
            return Fate::NotNeeded(
                "siprox's management interface is JSON-RPC over HTTP at [mi] listen (docs/mi.md)".into(),
            )
        }
        ("tm", "onreply_avp_mode") => {
            return Fate::Todo("siprox reply routes always start without AVPs (mode 0)".into())
        }
        ("usrloc", "working_mode_preset") => {
            let Value::Str(p) = value else { return Fate::Todo("not a preset name".into()) };
            if !USRLOC_PRESETS.contains(&p.as_str()) {
                return Fate::Todo(format!(
                    "usrloc preset `{p}` is not in siprox (it has {})",
                    USRLOC_PRESETS.join(", ")
                ));
            }
        }
        _ => {}
    }
    let module_key = if module == "auth" && param != "secret" && param != "nonce_expire" { "auth_db" } else { module };
    let Some((_, _, table, key, kind)) =
        MODPARAMS.iter().find(|(m, p, ..)| (*m == module || *m == module_key) && *p == param)
    else {
        return Fate::Todo(format!("modparam `{param}` of {module} is not in siprox"));
    };
    match typed(value, *kind) {
        Some(v) => {
            t.set(table, key, v, origin, comments);
            Fate::Converted
        }
        None => Fate::Todo(format!("value of {param} is not a {kind:?}")),
    }
}

fn typed(value: &Value, kind: K) -> Option<toml::Value> {
    Some(match (kind, value) {
        (K::Int, Value::Int(i)) => toml::Value::Integer(*i),
        (K::Int, Value::Str(s)) => toml::Value::Integer(s.trim().parse().ok()?),
        (K::Bool, Value::Int(i)) => toml::Value::Boolean(*i != 0),
        (K::Bool, Value::Str(s)) => toml::Value::Boolean(match s.trim().to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" => true,
            "0" | "no" | "off" | "false" => false,
            _ => return None,
        }),
        (K::Str, Value::Str(s)) => toml::Value::String(s.clone()),
        (K::Str, Value::Int(i)) => toml::Value::String(i.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the converter writes is one the config accepts, with that type.
    #[test]
    fn every_mapped_key_exists_in_the_config_structs() {
        for (module, param, table, key, kind) in MODPARAMS {
            let sample = match kind {
                K::Bool => "true".to_string(),
                K::Int => "1".to_string(),
                K::Str => match *key {
                    "options_reply_codes" | "ds_probing_list" | "probing_reply_codes" => "\"404,501\"".into(),
                    _ => "\"x\"".into(),
                },
            };
            let text = format!("[{table}]\n{key} = {sample}\n");
            let parsed: Result<crate::config::Config, _> = toml::from_str(&text);
            assert!(parsed.is_ok(), "{module}/{param} → [{table}] {key}: {:?}", parsed.err());
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(listen("udp:127.0.0.1:5060"), Ok(("udp:127.0.0.1:5060".into(), None)));
        assert_eq!(listen("udp:*:5060"), Ok(("udp:0.0.0.0:5060".into(), None)));
        assert_eq!(listen("tcp:10.0.0.1"), Ok(("tcp:10.0.0.1:5060".into(), None)));
        assert_eq!(
            listen("udp:10.0.0.1:5060 as 1.2.3.4:5060"),
            Ok(("udp:10.0.0.1:5060".into(), Some("1.2.3.4:5060".into())))
        );
        assert!(listen("tls:10.0.0.1:5061").is_err());
        assert!(listen("udp:eth0:5060").is_err());
    }
}
