//! What the converter knows about siprox's script surface: the functions the engine really
//! has (read from its signatures, so the converter never maps to a function that does not
//! exist), the pseudo-variables, and the OpenSIPS spellings that changed over the years.

use crate::script::api::pv;
use std::collections::HashMap;

/// A parameter type as the engine declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Any,
}

/// What a function gives back, which decides how it reads in a condition (spec §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// A predicate: straight into `if`.
    Bool,
    /// An OpenSIPS return code: `> 0` is true.
    Code,
    /// A value (`fetch_dlg_value`).
    Value,
    /// Nothing (`xlog`, `exit`).
    Unit,
}

#[derive(Debug, Clone)]
pub struct Sig {
    pub params: Vec<Ty>,
    pub ret: Ret,
}

/// The engine's functions by name, each with its overloads.
pub struct Catalog {
    fns: HashMap<String, Vec<Sig>>,
}

impl Catalog {
    /// Reads signatures as Rhai prints them: `name(_: string, _: Dynamic) -> Result<i64, …>`.
    pub fn from_signatures(signatures: &[String]) -> Catalog {
        let mut fns: HashMap<String, Vec<Sig>> = HashMap::new();
        for sig in signatures {
            let Some(open) = sig.find('(') else { continue };
            let name = sig[..open].trim();
            if name.contains("::") || !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
                continue;
            }
            let Some(close) = sig.find(')') else { continue };
            let params = sig[open + 1..close]
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| match p.rsplit(':').next().unwrap_or("").trim() {
                    "string" | "&str" | "ImmutableString" => Ty::Str,
                    "i64" | "INT" => Ty::Int,
                    _ => Ty::Any,
                })
                .collect();
            let ret_text = sig[close + 1..].trim().trim_start_matches("->").trim();
            let ret = if ret_text.is_empty() || ret_text == "()" || ret_text.starts_with("core::result::Result<()") {
                Ret::Unit
            } else if ret_text.contains("bool") {
                Ret::Bool
            } else if ret_text.contains("i64") {
                Ret::Code
            } else {
                Ret::Value
            };
            fns.entry(name.to_string()).or_default().push(Sig { params, ret });
        }
        Catalog { fns }
    }

    /// The overload taking `arity` arguments.
    pub fn sig(&self, name: &str, arity: usize) -> Option<&Sig> {
        self.fns.get(name)?.iter().find(|s| s.params.len() == arity)
    }

    /// Every arity `name` is registered with (empty: no such function).
    pub fn arities(&self, name: &str) -> Vec<usize> {
        let mut a: Vec<usize> =
            self.fns.get(name).map(|v| v.iter().map(|s| s.params.len()).collect()).unwrap_or_default();
        a.sort_unstable();
        a.dedup();
        a
    }
}

/// Arguments where OpenSIPS configs quote a number (`sl_send_reply("404", …)`,
/// `ds_select_dst("1", "0")`): written back as integers.
const NUMERIC_ARGS: &[(&str, &[usize])] = &[
    ("sl_send_reply", &[0]),
    ("send_reply", &[0]),
    ("t_reply", &[0]),
    ("ds_select_dst", &[0, 1, 4]),
    ("ds_select_domain", &[0, 1, 4]),
    ("ds_is_in_list", &[1, 2]),
    ("ds_count", &[0]),
    ("ds_mark_dst", &[]),
    ("mf_process_maxfwd_header", &[0]),
    ("is_maxfwd_lt", &[0]),
    ("lb_start", &[0]),
    ("lb_start_or_next", &[0]),
    ("load_balance", &[0]),
    ("lb_is_destination", &[1, 2]),
    ("lb_count_call", &[1, 2]),
    ("setport", &[0]),
    ("setflag", &[0]),
    ("resetflag", &[0]),
    ("isflagset", &[0]),
    ("setbflag", &[0]),
    ("resetbflag", &[0]),
    ("isbflagset", &[0]),
    ("add_rcv_param", &[0]),
    ("www_challenge", &[1]),
    ("proxy_challenge", &[1]),
];

pub fn numeric_arg(name: &str, index: usize) -> bool {
    NUMERIC_ARGS.iter().any(|(n, idx)| *n == name && idx.contains(&index))
}

/// Functions that expand `$pv` inside their string arguments themselves (like OpenSIPS
/// format strings), so those strings stay as they are.
pub fn expands_pvs(name: &str) -> bool {
    matches!(name, "xlog" | "append_hf" | "append_to_reply" | "record_route_preset")
}

/// Arguments that name a variable to write (`ds_count(1, "a", "$var(n)")`): kept as text.
pub fn output_arg(name: &str, index: usize) -> bool {
    matches!((name, index), ("ds_count", 2))
}

/// Which OpenSIPS module a function siprox lacks comes from, for the report.
pub fn module_of(name: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("do_accounting", "acc"),
        ("acc_", "acc"),
        ("rtpproxy_", "rtpproxy: media relay is not in siprox yet"),
        ("rtpengine_", "rtpengine: media relay is not in siprox yet"),
        ("engage_media_proxy", "mediaproxy: media relay is not in siprox yet"),
        ("use_media_proxy", "mediaproxy: media relay is not in siprox yet"),
        ("cluster_", "clusterer"),
        ("cache_", "cachedb"),
        ("avp_", "avpops"),
        ("is_avp_set", "avpops"),
        ("uac_", "uac"),
        ("topology_hiding", "topology_hiding"),
        ("pike_", "pike"),
        ("ratelimit", "ratelimit"),
        ("rl_", "ratelimit"),
        ("validate_dialog", "dialog: siprox's dialog module does not have it yet"),
        ("fix_route_dialog", "dialog: siprox's dialog module does not have it yet"),
        ("get_dialog_info", "dialog: siprox's dialog module does not have it yet"),
        ("alias_db_", "alias_db"),
        ("check_source_address", "permissions"),
        ("allow_", "permissions"),
        ("rest_", "rest_client"),
        ("exec", "exec"),
        ("sanity_check", "sanity"),
        ("b2b_", "b2b_logic"),
        ("dp_translate", "dialplan"),
        ("do_routing", "drouting"),
        ("subst", "textops: not in siprox yet"),
        ("search", "textops: not in siprox yet"),
        ("codec_", "sipmsgops: not in siprox yet"),
    ];
    PREFIXES.iter().find(|(p, _)| name.starts_with(p)).map(|(_, m)| *m)
}

/// Why a text is a template placeholder a generator was meant to fill (shell/env `${…}`,
/// Jinja `{{…}}`, an m4 quote), if it is one.
pub fn placeholder(s: &str) -> Option<String> {
    (s.contains("${") || s.contains("{{") || s.contains('`')).then(|| format!("template placeholder in `{}`", s.trim()))
}

/// A pseudo-variable read or written from Rhai, or why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvMap {
    /// The Rhai spelling: `$ru`, `$avp(x)`, `$hdr("X-1")`.
    Pv(String),
    /// `$retcode`, `$rc`, `$?`: the function `retcode()`.
    Retcode,
    /// `$param(N)` of a route called with arguments: the function's parameter.
    Param(usize),
    /// `$branch`: written as `append_branch(…)`.
    Branch,
}

/// Pseudo-variables that are integers in siprox (spec §2.2: compare with ints).
pub fn int_pv(name: &str) -> bool {
    matches!(
        name,
        "sp" | "Rp"
            | "cs"
            | "rs"
            | "mf"
            | "T_reply_code"
            | "T_branch_idx"
            | "DLG_status"
            | "DLG_count"
            | "DLG_lifetime"
            | "DLG_timeout"
    )
}

/// Splits `$name`, `$name(arg)`; `None` for forms siprox has no reading of
/// (`$(…)` transformations, `[i]` indexes).
pub fn split_pv(text: &str) -> Option<(String, Option<String>)> {
    let body = text.strip_prefix('$')?;
    if body.starts_with('(') || body.starts_with('{') || body.ends_with(']') {
        return None;
    }
    if body == "?" {
        return Some(("?".into(), None));
    }
    match body.find('(') {
        Some(open) if body.ends_with(')') => {
            Some((body[..open].to_string(), Some(body[open + 1..body.len() - 1].to_string())))
        }
        Some(_) => None,
        None => Some((body.to_string(), None)),
    }
}

/// Maps an OpenSIPS pseudo-variable to siprox, or says why not.
pub fn map_pv(text: &str) -> Result<PvMap, String> {
    let Some((name, arg)) = split_pv(text) else {
        return Err(format!("`{text}`: transformations and indexes of pseudo-variables are not in siprox"));
    };
    match (name.as_str(), &arg) {
        ("retcode" | "rc" | "?", None) => return Ok(PvMap::Retcode),
        ("branch", None) => return Ok(PvMap::Branch),
        ("param", Some(n)) if n.trim().parse::<usize>().is_ok() => {
            return Ok(PvMap::Param(n.trim().parse().unwrap_or(1)));
        }
        _ => {}
    }
    let name = match name.as_str() {
        "ruri" => "ru".to_string(),
        "from" => "fu".to_string(),
        "to" => "tu".to_string(),
        _ => name,
    };
    if !pv::NAMES.contains(&name.as_str()) {
        return Err(format!("pseudo-variable `${name}` is not in siprox"));
    }
    let with_arg = pv::WITH_ARG.contains(&name.as_str());
    match (with_arg, arg) {
        (true, Some(a)) => {
            let a = a.trim().trim_matches('"').to_string();
            let plain = !a.is_empty()
                && a.split(['-', '.'])
                    .all(|part| part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
                && a.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !matches!(
                    a.as_str(),
                    "for"
                        | "in"
                        | "if"
                        | "else"
                        | "while"
                        | "loop"
                        | "fn"
                        | "let"
                        | "const"
                        | "return"
                        | "switch"
                        | "do"
                        | "until"
                        | "true"
                        | "false"
                );
            Ok(PvMap::Pv(if plain { format!("${name}({a})") } else { format!("${name}({a:?})") }))
        }
        (false, None) => Ok(PvMap::Pv(format!("${name}"))),
        (true, None) => Err(format!("`${name}` needs a name in brackets")),
        (false, Some(_)) => Err(format!("`{text}` takes no argument in siprox")),
    }
}

/// Whether siprox lets a script write this pseudo-variable.
pub fn writable(rhai_pv: &str) -> bool {
    let name = rhai_pv.trim_start_matches('$');
    let name = name.split('(').next().unwrap_or(name);
    pv::WRITABLE.contains(&name)
}

/// `nat_uac_test` mask bits and their 3.x names (docs/nathelper.md).
pub const NAT_TESTS: &[(i64, &str)] = &[
    (1, "private-contact"),
    (2, "diff-ip-src-via"),
    (4, "private-via"),
    (8, "private-sdp"),
    (16, "diff-port-src-via"),
    (32, "diff-ip-src-contact"),
    (64, "diff-port-src-contact"),
    (128, "carrier-grade-nat"),
];

/// `fix_nated_sdp` flag bits and their 3.x names.
pub const SDP_FLAGS: &[(i64, &str)] = &[
    (1, "add-dir-active"),
    (2, "rewrite-media-ip"),
    (4, "add-no-rtpproxy"),
    (8, "rewrite-origin-ip"),
    (16, "rewrite-null-ips"),
];

/// A numeric mask as a comma list of names; `None` when a bit has no name.
pub fn mask_names(mask: i64, table: &[(i64, &str)]) -> Option<String> {
    let mut left = mask;
    let mut names = Vec::new();
    for (bit, name) in table {
        if mask & bit != 0 {
            names.push(*name);
            left &= !bit;
        }
    }
    (left == 0 && !names.is_empty()).then(|| names.join(","))
}

/// 2.x `save()` letters → 3.x flag names.
pub fn save_letters(flags: &str) -> Result<String, String> {
    letters(flags, |c, num| match c {
        'm' => Ok("memory-only".into()),
        'r' => Ok("no-reply".into()),
        'f' => Ok("force-registration".into()),
        'c' => Ok(format!("max-contacts={num}")),
        'v' => Ok("path-received".into()),
        's' => Ok("socket-header".into()),
        'e' => Ok(format!("min-expires={num}")),
        'E' => Ok(format!("max-expires={num}")),
        'p' => match num.as_str() {
            "0" => Ok("path-lazy".into()),
            "1" => Ok("path-strict".into()),
            "2" => Ok("path-off".into()),
            _ => Err(format!("save flag p{num}")),
        },
        _ => Err(format!("2.x save flag `{c}` has no 3.x name in siprox")),
    })
}

/// 2.x `lookup()` letters → 3.x flag names.
pub fn lookup_letters(flags: &str) -> Result<String, String> {
    letters(flags, |c, _| match c {
        'b' => Ok("no-branches".into()),
        'm' => Ok("method-filtering".into()),
        'r' => Ok("to-branches-only".into()),
        'g' => Err("lookup flag `g` (global lookup in a federated usrloc cluster) is not in siprox".into()),
        _ => Err(format!("2.x lookup flag `{c}` has no 3.x name in siprox")),
    })
}

/// Whether a flags string is the old single-letter form (`"m"`, `"c5r"`), not 3.x names.
pub fn is_letter_flags(flags: &str) -> bool {
    !flags.is_empty()
        && flags.len() <= 8
        && flags.chars().all(|c| c.is_ascii_alphanumeric())
        && !flags.chars().all(|c| c.is_ascii_digit())
}

fn letters(flags: &str, name: impl Fn(char, String) -> Result<String, String>) -> Result<String, String> {
    let mut out = Vec::new();
    let mut chars = flags.chars().peekable();
    while let Some(c) = chars.next() {
        let mut num = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            num.push(d);
            chars.next();
        }
        out.push(name(c, num)?);
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_give_types_and_return_kinds() {
        let c = Catalog::from_signatures(&[
            "is_method(_: string) -> core::result::Result<bool,alloc::boxed::Box<EvalAltResult>>".into(),
            "strip(_: i64) -> core::result::Result<i64,alloc::boxed::Box<EvalAltResult>>".into(),
            "sl_send_reply(_: types::dynamic::Dynamic, _: types::dynamic::Dynamic) -> i64".into(),
            "xlog(_: string)".into(),
            "common::relay()".into(),
        ]);
        assert_eq!(c.sig("is_method", 1).map(|s| (s.params.clone(), s.ret)), Some((vec![Ty::Str], Ret::Bool)));
        assert_eq!(c.sig("strip", 1).map(|s| s.params[0]), Some(Ty::Int));
        assert_eq!(c.sig("sl_send_reply", 2).map(|s| s.ret), Some(Ret::Code));
        assert_eq!(c.sig("xlog", 1).map(|s| s.ret), Some(Ret::Unit));
        assert!(c.sig("is_method", 2).is_none());
        assert!(c.arities("relay").is_empty());
    }

    #[test]
    fn pseudo_variables_map_or_say_why_not() {
        assert_eq!(map_pv("$ru"), Ok(PvMap::Pv("$ru".into())));
        assert_eq!(map_pv("$avp(home_ip)"), Ok(PvMap::Pv("$avp(home_ip)".into())));
        assert_eq!(map_pv("$hdr(X-Custom-1)"), Ok(PvMap::Pv("$hdr(\"X-Custom-1\")".into())));
        assert_eq!(map_pv("$hdr(Max-Forwards)"), Ok(PvMap::Pv("$hdr(Max-Forwards)".into())));
        assert_eq!(map_pv("$?"), Ok(PvMap::Retcode));
        assert_eq!(map_pv("$param(2)"), Ok(PvMap::Param(2)));
        assert!(map_pv("$json(aor_doc/home_ip)").is_err());
        assert!(map_pv("$(avp(x)[0])").is_err());
        assert!(writable("$avp(x)") && !writable("$si"));
    }

    #[test]
    fn old_masks_and_letters_become_names() {
        assert_eq!(mask_names(19, NAT_TESTS).as_deref(), Some("private-contact,diff-ip-src-via,diff-port-src-via"));
        assert_eq!(mask_names(3, SDP_FLAGS).as_deref(), Some("add-dir-active,rewrite-media-ip"));
        assert_eq!(mask_names(256, NAT_TESTS), None);
        assert_eq!(save_letters("c5r").as_deref(), Ok("max-contacts=5,no-reply"));
        assert_eq!(lookup_letters("m").as_deref(), Ok("method-filtering"));
        assert!(lookup_letters("g").is_err());
        assert!(is_letter_flags("m") && !is_letter_flags("method-filtering") && !is_letter_flags("19"));
    }
}
