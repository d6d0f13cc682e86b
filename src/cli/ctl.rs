//! `siprox ctl CMD [name=value …]`: the management interface's client (docs/mi.md).
//!
//! One JSON-RPC call to `POST /mi`; the result is printed as an indented `key: value` tree,
//! or as JSON with `--json`. Exit status: 0 answered, 1 the command failed (the MI error's
//! code and message are printed), 2 it could not be asked (no server, HTTP error, bad URL).
//!
//! `siprox ctl dispatcher …` and `siprox ctl lb …` are answered here first: they change the
//! dispatcher or load_balancer table in the database of `[db] url`, then ask for
//! `ds_reload` or `lb_reload` (cli/dispatcher.rs, cli/lb.rs, both through cli/table.rs).
//! `siprox ctl subscriber …` does the same for the subscriber table and `auth_reload`
//! (cli/subscriber.rs).

use crate::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the management interface is when nothing says otherwise (design.md §1).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8888/mi";

#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// Config file whose [mi] listen and token to use.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// URL of the management interface [default: from -c, else http://127.0.0.1:8888/mi].
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token [default: $SIPROX_MI_TOKEN, else [mi] token of -c].
    #[arg(long)]
    pub token: Option<String>,
    /// Print the result as JSON instead of a key: value tree.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The command (`siprox ctl which` lists them), or `dispatcher` followed by
    /// `add SETID URI [weight=W …]`, `rm SETID URI`, `rm id=ID`, `list [SETID]` or `reload`,
    /// or `lb` followed by `add GROUP URI RESOURCES [probe_mode=N …]`, `rm GROUP URI`,
    /// `rm id=ID`, `list [GROUP]` or `reload`, or `subscriber` followed by
    /// `add USER@DOMAIN PASSWORD [--email E]`, `rm USER@DOMAIN`, `list` or `reload`.
    pub command: String,
    /// Arguments: `name=value` (named) or `value` (positional), not both kinds at once.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The URL from `[mi] listen`: a wildcard address is reached on loopback.
fn url_from_config(cfg: &Config) -> Result<String, String> {
    let addr =
        cfg.mi.addr().map_err(|e| e.to_string())?.ok_or("the management interface is disabled in that config")?;
    let host = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!("http://{host}:{}/mi", addr.port()))
}

/// A URL naming only the server (`http://host:8888`) means its `/mi`.
fn mi_path(url: String) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) if u.path() == "/" && u.query().is_none() => format!("{}/mi", url.trim_end_matches('/')),
        _ => url,
    }
}

/// `name=value` is named when `name` is an identifier; anything else (a SIP URI with
/// `;param=x`) is a positional value.
fn as_named(arg: &str) -> Option<(&str, &str)> {
    let (name, value) = arg.split_once('=')?;
    let ident = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ident.then_some((name, value))
}

/// The JSON-RPC `params`: `{}` for none, an object of strings, or an array of strings.
///
/// # Errors
/// Named and positional arguments mixed.
pub fn build_params(args: &[String]) -> Result<Value, String> {
    if args.is_empty() {
        return Ok(json!({}));
    }
    let named: Vec<Option<(&str, &str)>> = args.iter().map(|a| as_named(a)).collect();
    if named.iter().all(Option::is_some) {
        let map: Map<String, Value> =
            named.into_iter().flatten().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        return Ok(Value::Object(map));
    }
    if named.iter().all(Option::is_none) {
        return Ok(Value::Array(args.iter().map(|a| Value::String(a.clone())).collect()));
    }
    Err("give every argument as name=value, or none of them".into())
}

/// A scalar as shown: strings bare, null as `none`.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("none".into()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

/// An array of scalars on one line, comma-separated.
fn flat_list(v: &Value) -> Option<String> {
    let items = v.as_array()?;
    items.iter().map(scalar).collect::<Option<Vec<_>>>().map(|s| s.join(", "))
}

fn empty_container(v: &Value) -> Option<&'static str> {
    match v {
        Value::Array(a) if a.is_empty() => Some("[]"),
        Value::Object(m) if m.is_empty() => Some("{}"),
        _ => None,
    }
}

/// Writes `label` and a multi-line text, continuation lines indented under it.
fn push_text(out: &mut String, pad: &str, label: &str, text: &str) {
    let mut lines = text.lines();
    out.push_str(&format!("{pad}{label}{}\n", lines.next().unwrap_or("")));
    for l in lines {
        out.push_str(&format!("{pad}  {l}\n"));
    }
}

/// The result as an indented `key: value` tree.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(&mut out, v, 0);
    out
}

fn render_into(out: &mut String, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                if let Some(s) = scalar(item) {
                    push_text(out, &pad, &format!("{k}: "), &s);
                } else if let Some(e) = empty_container(item) {
                    out.push_str(&format!("{pad}{k}: {e}\n"));
                } else if let Some(list) = flat_list(item) {
                    out.push_str(&format!("{pad}{k}: {list}\n"));
                } else {
                    out.push_str(&format!("{pad}{k}:\n"));
                    render_into(out, item, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Some(s) = scalar(item) {
                    push_text(out, &pad, "", &s);
                } else if let Some(e) = empty_container(item) {
                    out.push_str(&format!("{pad}- {e}\n"));
                } else if let Some(list) = flat_list(item) {
                    out.push_str(&format!("{pad}- {list}\n"));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    render_into(out, item, depth + 1);
                }
            }
        }
        other => push_text(out, &pad, "", &scalar(other).unwrap_or_default()),
    }
}

/// Sends one request; the HTTP status and body.
async fn post(url: &str, token: Option<&str>, body: String, wait: Duration) -> Result<(u16, Bytes), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("bad URL {url:?}: only http:// is supported"));
    }
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::post(uri).header(CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("cannot reach {url}: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| format!("reading the answer from {url}: {e}"))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(wait, exchange).await.map_err(|_| format!("no answer from {url} within {wait:?}"))?
}

/// An error and its causes, `a: b: c` (the client's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// Where to send and with which token: flags, then the environment, then the config.
pub(crate) fn target(args: &CtlArgs) -> Result<(String, Option<String>), String> {
    let cfg = match &args.config {
        Some(p) => Some(Config::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let url = match (&args.url, &cfg) {
        (Some(u), _) => mi_path(u.clone()),
        (None, Some(c)) => url_from_config(c)?,
        (None, None) => DEFAULT_URL.to_string(),
    };
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("SIPROX_MI_TOKEN").ok())
        .or_else(|| cfg.and_then(|c| c.mi.token))
        .filter(|t| !t.is_empty());
    Ok((url, token))
}

/// Runs `siprox ctl`.
pub fn main(args: CtlArgs) -> ExitCode {
    match args.command.as_str() {
        "dispatcher" => return super::table::main::<super::dispatcher::Dispatcher>(&args),
        "lb" => return super::table::main::<super::lb::LoadBalancer>(&args),
        "subscriber" => return super::subscriber::main(&args),
        _ => {}
    }
    match ask(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("siprox ctl: {e}");
            ExitCode::from(2)
        }
    }
}

/// Sends one JSON-RPC request to the management interface at `url`; the answer object
/// (`result` or `error` inside).
///
/// # Errors
/// The server cannot be reached, answers no HTTP 200, or no JSON.
pub(crate) async fn call(
    url: &str,
    token: Option<&str>,
    method: &str,
    params: Value,
    wait: Duration,
) -> Result<Value, String> {
    let request = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
    let (status, body) = post(url, token, request.to_string(), wait).await?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 {
        return Err(format!("{url} answered HTTP {status}: {}", text.trim()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} answered no JSON ({e}): {text}"))
}

fn ask(args: &CtlArgs) -> Result<ExitCode, String> {
    let (url, token) = target(args)?;
    let params = build_params(&args.args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let wait = Duration::from_secs(args.timeout.max(1));
    let answer = rt.block_on(call(&url, token.as_deref(), &args.command, params, wait))?;
    if let Some(err) = answer.get("error") {
        print_error(err);
        return Ok(ExitCode::from(1));
    }
    let result = answer.get("result").cloned().unwrap_or(Value::Null);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string()));
    } else {
        print!("{}", render(&result));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_error(err: &Value) {
    let code = err.get("code").map(Value::to_string).unwrap_or_else(|| "?".into());
    let message = err.get("message").and_then(Value::as_str).unwrap_or("(no message)");
    eprintln!("error {code}: {message}");
    match err.get("data") {
        None | Some(Value::Null) => {}
        // reload_routes repeats its diagnostics as a list; the message has them already.
        Some(Value::Array(_)) if code == "500" => {}
        Some(Value::String(s)) => eprintln!("  {s}"),
        Some(other) => eprint!("{}", render(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_from_arguments() {
        assert_eq!(build_params(&[]).unwrap(), json!({}));
        assert_eq!(build_params(&strings(&["command=uptime"])).unwrap(), json!({"command": "uptime"}));
        assert_eq!(build_params(&strings(&["core:", "tm:"])).unwrap(), json!(["core:", "tm:"]));
        assert_eq!(build_params(&strings(&["sip:a@b;x=y", "1"])).unwrap(), json!(["sip:a@b;x=y", "1"]));
        assert_eq!(build_params(&strings(&["uri=sip:a@b;x=y"])).unwrap(), json!({"uri": "sip:a@b;x=y"}));
        assert!(build_params(&strings(&["a=1", "b"])).is_err());
    }

    #[test]
    fn readable_tree() {
        let v = json!({
            "Version": 2,
            "Last error": {"At": "t", "Message": "a.rhai:1:2: bad\na.rhai:3:4: worse"},
            "Sources": ["/x/a.rhai", "/x/b.rhai"],
            "Empty": [],
            "Nothing": null,
        });
        let text = render(&v);
        assert!(text.contains("Version: 2\n"), "{text}");
        assert!(text.contains("Last error:\n  At: t\n  Message: a.rhai:1:2: bad\n    a.rhai:3:4: worse\n"), "{text}");
        assert!(text.contains("Sources: /x/a.rhai, /x/b.rhai\n"), "{text}");
        assert!(text.contains("Empty: []\n") && text.contains("Nothing: none\n"), "{text}");
        assert_eq!(render(&json!(["a", "b"])), "a\nb\n");
        assert_eq!(render(&json!([[], ["partition"]])), "- []\n- partition\n");
        assert_eq!(render(&json!("OK")), "OK\n");
    }

    #[test]
    fn bare_server_url_means_mi() {
        assert_eq!(mi_path("http://10.0.0.1:8888".into()), "http://10.0.0.1:8888/mi");
        assert_eq!(mi_path("http://10.0.0.1:8888/".into()), "http://10.0.0.1:8888/mi");
        assert_eq!(mi_path("http://10.0.0.1:8888/mi".into()), "http://10.0.0.1:8888/mi");
        assert_eq!(mi_path("http://10.0.0.1:8888/other".into()), "http://10.0.0.1:8888/other");
    }

    #[test]
    fn url_from_listen() {
        let mut cfg = Config::default();
        assert_eq!(url_from_config(&cfg).unwrap(), DEFAULT_URL);
        cfg.mi.listen = "0.0.0.0:9999".into();
        cfg.mi.token = Some("t".into());
        assert_eq!(url_from_config(&cfg).unwrap(), "http://127.0.0.1:9999/mi");
        cfg.mi.listen = "[::1]:9999".into();
        assert_eq!(url_from_config(&cfg).unwrap(), "http://[::1]:9999/mi");
        cfg.mi.listen = String::new();
        assert!(url_from_config(&cfg).is_err());
    }
}
