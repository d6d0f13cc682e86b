//! The management interface end to end: the real binary (tests/support) with its MI on a
//! port of its own, spoken to over plain HTTP/1.1 from the test and through `siprox ctl`.
//! SIP traffic is sent with raw UDP sockets, so the statistics have something to count.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// OPTIONS: 200 statelessly (sl); MESSAGE: 202 from a transaction (tm); INFO: a script
/// error (500); anything else 404.
fn script(options_reason: &str) -> String {
    format!(
        r#"fn route() {{
    if is_method("OPTIONS") {{ sl_send_reply(200, "{options_reason}"); exit(); }}
    if is_method("MESSAGE") {{ t_reply(202, "Accepted"); exit(); }}
    if is_method("INFO") {{ throw "deliberate failure"; }}
    sl_send_reply(404, "Not here");
}}
"#
    )
}

fn start(label: &str) -> Proxy {
    // No file watch: reloads happen only when a test asks, so their counts are exact.
    Proxy::start_with_core(label, &script("OK"), "script_watch = false", "")
}

// ------------------------------------------------------------------ HTTP

struct HttpReply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`, read to the end).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpReply {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the MI");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8(raw).expect("the answer is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("status in {head:?}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "unexpected chunked answer: {head}");
    HttpReply { status, head: head.to_string(), body: body.to_string() }
}

/// POSTs a raw body to /mi and returns the JSON answer (asserting HTTP 200).
fn post_raw(port: u16, body: &str, headers: &[(&str, &str)]) -> Value {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let r = http(port, "POST", "/mi", &h, body);
    assert_eq!(r.status, 200, "MI answers are HTTP 200 (body {body}): {}\n{}", r.head, r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("answer to {body} is not JSON ({e}): {}", r.body))
}

fn call(port: u16, method: &str, params: Value) -> Value {
    post_raw(port, &json!({"jsonrpc": "2.0", "method": method, "params": params, "id": "1"}).to_string(), &[])
}

/// The result of a call that must succeed.
fn result(port: u16, method: &str, params: Value) -> Value {
    let answer = call(port, method, params.clone());
    assert!(answer.get("error").is_none(), "{method} {params} failed: {answer}");
    answer["result"].clone()
}

fn stat(stats: &Value, name: &str) -> u64 {
    stats.get(name).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Polls `get_statistics all` until `ok` holds (counters move right after a reply is sent,
/// so a client can be a hair faster than the count); panics with the last values.
fn stats_until(port: u16, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = result(port, "get_statistics", json!([["all"]]));
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "statistics never showed {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------- SIP

/// Sends one request and waits for its final reply; returns the status line.
fn sip(proxy: &Proxy, method: &str) -> String {
    let req = Req::new(method, proxy.addr(), support::Proto::Udp);
    let got = udp_exchange_until(
        proxy.addr(),
        |l| req.build(l),
        Duration::from_secs(3),
        |g| g.iter().any(|m| status_codes(m).iter().any(|&c| c >= 200)),
    );
    let text: Vec<String> = got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    text.iter()
        .filter_map(|m| m.lines().next().map(str::to_string))
        .find(|l| status_codes(l.as_bytes()).iter().any(|&c| c >= 200))
        .unwrap_or_else(|| panic!("no final reply to {method}: {text:?}"))
}

// ------------------------------------------------------------------- ctl

fn ctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(siprox_bin());
    cmd.arg("ctl").args(args).env_remove("SIPROX_MI_TOKEN").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run siprox ctl")
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ----------------------------------------------------------------- tests

#[test]
fn core_commands_answer() {
    let proxy = start("mi-commands");
    let port = proxy.mi_port;

    let names = result(port, "which", json!({}));
    for c in ["which", "version", "uptime", "get_statistics", "reset_statistics", "reload_routes", "script_status"] {
        assert!(names.as_array().unwrap().contains(&json!(c)), "which lacks {c}: {names}");
    }
    assert_eq!(result(port, "which", json!({"command": "get_statistics"})), json!([["statistics"]]));
    assert_eq!(result(port, "which", json!(["reset_statistics"])), json!([[], ["statistics"]]));
    assert_eq!(call(port, "which", json!({"command": "nope"}))["error"]["code"], json!(404));

    let v = result(port, "version", json!({}));
    assert!(v["Server"].as_str().unwrap().starts_with("siprox 0."), "{v}");

    let up = result(port, "uptime", json!([]));
    assert!(up["Up time"].as_str().unwrap().ends_with(" [sec]"), "{up}");
    for k in ["Now", "Up since"] {
        let t = up[k].as_str().unwrap_or_else(|| panic!("{k} in {up}"));
        assert!(t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{k} is RFC 3339: {t}");
    }
    proxy.stop();
}

#[test]
fn statistics_count_traffic_and_reset() {
    let proxy = start("mi-stats");
    let port = proxy.mi_port;
    for _ in 0..3 {
        assert!(sip(&proxy, "OPTIONS").starts_with("SIP/2.0 200 "));
    }
    assert!(sip(&proxy, "MESSAGE").starts_with("SIP/2.0 202 "));
    assert!(sip(&proxy, "INFO").starts_with("SIP/2.0 500 "));

    let s = stats_until(port, "the five requests and their replies", |s| {
        stat(s, "core:rcv_requests") >= 5 && stat(s, "sl:2xx_replies") >= 3 && stat(s, "sl:5xx_replies") >= 1
    });
    assert_eq!(stat(&s, "core:rcv_requests_options"), 3, "{s:#}");
    assert_eq!(stat(&s, "core:rcv_requests_message"), 1, "{s:#}");
    assert_eq!(stat(&s, "core:rcv_requests_invite"), 0, "{s:#}");
    assert_eq!(stat(&s, "core:rcv_replies"), 0, "{s:#}");
    assert_eq!(stat(&s, "core:err_requests"), 1, "the INFO route failed: {s:#}");
    assert_eq!(stat(&s, "script:errors"), 1, "{s:#}");
    assert_eq!(stat(&s, "tm:UAS_transactions"), 1, "{s:#}");
    assert_eq!(stat(&s, "tm:2xx_transactions"), 1, "{s:#}");
    assert_eq!(stat(&s, "tm:local_replies"), 1, "{s:#}");
    assert_eq!(stat(&s, "sl:sent_replies"), 4, "{s:#}");
    assert_eq!(stat(&s, "sl:sent_err_replies"), 1, "{s:#}");
    assert_eq!(stat(&s, "script:version"), 1, "{s:#}");
    assert!(s.get("tm:inuse_transactions").is_some(), "{s:#}");

    // Selection: groups, full names, bare names, the named form.
    let core_tm = result(port, "get_statistics", json!([["core:", "tm:"]]));
    let keys: Vec<&String> = core_tm.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| k.starts_with("core:") || k.starts_with("tm:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("tm:")) && keys.iter().any(|k| k.starts_with("core:")));
    let one = result(port, "get_statistics", json!({"statistics": ["core:rcv_requests"]}));
    assert_eq!(one.as_object().unwrap().len(), 1, "{one}");
    let bare = result(port, "get_statistics", json!(["UAS_transactions"]));
    assert_eq!(bare, json!({"tm:UAS_transactions": 1}));
    assert_eq!(call(port, "get_statistics", json!([["no_such_stat"]]))["error"]["code"], json!(404));

    // Resetting a group leaves the others; a bare reset zeroes every counter.
    assert_eq!(result(port, "reset_statistics", json!([["core:"]])), json!("OK"));
    let s = result(port, "get_statistics", json!([["core:rcv_requests", "sl:2xx_replies"]]));
    assert_eq!(stat(&s, "core:rcv_requests"), 0, "{s}");
    assert_eq!(stat(&s, "sl:2xx_replies"), 3, "{s}");
    assert_eq!(result(port, "reset_statistics", json!({})), json!("OK"));
    let s = result(port, "get_statistics", json!(["all"]));
    assert_eq!(stat(&s, "sl:2xx_replies"), 0, "{s:#}");
    assert_eq!(stat(&s, "tm:UAS_transactions"), 0, "{s:#}");
    assert_eq!(stat(&s, "script:version"), 1, "a gauge is not reset: {s:#}");

    // Counting starts again from zero.
    assert!(sip(&proxy, "OPTIONS").starts_with("SIP/2.0 200 "));
    stats_until(port, "one OPTIONS after the reset", |s| {
        stat(s, "core:rcv_requests") == 1 && stat(s, "sl:2xx_replies") == 1
    });
    proxy.stop();
}

#[test]
fn json_rpc_errors_and_ids() {
    let proxy = start("mi-rpc");
    let port = proxy.mi_port;
    let unknown = post_raw(port, r#"{"jsonrpc":"2.0","method":"no_such_command","params":{},"id":"abc"}"#, &[]);
    assert_eq!(unknown["error"]["code"], json!(-32601), "{unknown}");
    assert_eq!(unknown["id"], json!("abc"), "a string id stays a string: {unknown}");
    let bad = post_raw(port, r#"{"jsonrpc":"2.0","method":"uptime","#, &[]);
    assert_eq!(bad["error"]["code"], json!(-32700), "{bad}");
    assert_eq!(bad["id"], Value::Null);
    let arity = post_raw(port, r#"{"jsonrpc":"2.0","method":"uptime","params":["x"],"id":7}"#, &[]);
    assert_eq!(arity["error"]["code"], json!(-32602), "{arity}");
    assert_eq!(arity["error"]["message"], json!("Invalid params"));
    assert!(arity["error"]["data"].as_str().is_some_and(|d| !d.is_empty()), "data says why: {arity}");
    assert_eq!(arity["id"], json!(7));
    let names = post_raw(port, r#"{"jsonrpc":"2.0","method":"which","params":{"bogus":"1"},"id":8}"#, &[]);
    assert_eq!(names["error"]["code"], json!(-32602), "{names}");
    let not_rpc = post_raw(port, r#"{"method":"uptime","id":9}"#, &[]);
    assert_eq!(not_rpc["error"]["code"], json!(-32600), "{not_rpc}");
    let ok = post_raw(port, r#"{"jsonrpc":"2.0","method":"uptime","params":{},"id":"42"}"#, &[]);
    assert_eq!(ok["id"], json!("42"), "{ok}");
    assert_eq!(ok["jsonrpc"], json!("2.0"));

    // A bare connect+close, half a request, and garbage do not hurt the server.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    drop(TcpStream::connect(addr).expect("connect"));
    let mut half = TcpStream::connect(addr).expect("connect");
    half.write_all(b"POST /mi HTTP/1.1\r\nContent-Le").unwrap();
    drop(half);
    let mut junk = TcpStream::connect(addr).expect("connect");
    junk.write_all(b"\x00\x01 hello\r\n\r\n").unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = junk.read_to_end(&mut sink);
    assert_eq!(result(port, "version", json!({}))["Server"].as_str().map(|s| s.starts_with("siprox")), Some(true));

    // Other paths and methods are HTTP-level answers; browsers are kept out.
    assert_eq!(http(port, "GET", "/mi", &[], "").status, 405);
    assert_eq!(http(port, "GET", "/nope", &[], "").status, 404);
    let body = r#"{"jsonrpc":"2.0","method":"reload_routes","id":1}"#;
    let refused = post_raw(port, body, &[("Origin", "http://example.com")]);
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    assert_eq!(http(port, "GET", "/metrics", &[("Origin", "http://example.com")], "").status, 403);
    proxy.stop();
}

#[test]
fn metrics_exposition() {
    let proxy = start("mi-metrics");
    let port = proxy.mi_port;
    assert!(sip(&proxy, "OPTIONS").starts_with("SIP/2.0 200 "));
    assert!(sip(&proxy, "MESSAGE").starts_with("SIP/2.0 202 "));
    stats_until(port, "two requests", |s| stat(s, "core:rcv_requests") >= 2 && stat(s, "sl:2xx_replies") >= 1);

    let r = http(port, "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{}", r.head);
    let line_re = regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (\S+)$"#)
        .expect("regex");
    let mut samples = std::collections::HashMap::new();
    for line in r.body.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "comment line: {line}");
            continue;
        }
        let caps = line_re.captures(line).unwrap_or_else(|| panic!("not `name{{labels}} value`: {line:?}"));
        let value = &caps[4];
        assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "value of {line:?}");
        samples.insert(line.rsplit_once(' ').unwrap().0.to_string(), value.parse::<f64>().unwrap_or(f64::INFINITY));
    }
    for family in [
        "siprox_requests_received_total counter",
        "siprox_replies_received_total counter",
        "siprox_replies_sent_total counter",
        "siprox_transactions_total counter",
        "siprox_transactions_completed_total counter",
        "siprox_transactions_active gauge",
        "siprox_script_reloads_total counter",
        "siprox_script_reload_failures_total counter",
        "siprox_script_errors_total counter",
        "siprox_script_version gauge",
        "siprox_script_hook_duration_seconds histogram",
    ] {
        assert!(r.body.contains(&format!("# TYPE {family}\n")), "no `# TYPE {family}` in:\n{}", r.body);
    }
    let get = |k: &str| *samples.get(k).unwrap_or_else(|| panic!("no sample {k} in:\n{}", r.body));
    assert_eq!(get(r#"siprox_requests_received_total{method="OPTIONS"}"#), 1.0);
    assert_eq!(get(r#"siprox_requests_received_total{method="MESSAGE"}"#), 1.0);
    assert_eq!(get(r#"siprox_replies_sent_total{origin="sl",class="2xx"}"#), 1.0);
    assert_eq!(get(r#"siprox_replies_sent_total{origin="tm",class="2xx"}"#), 1.0);
    assert_eq!(get(r#"siprox_transactions_total{side="uas"}"#), 1.0);
    assert_eq!(get(r#"siprox_transactions_completed_total{class="2xx"}"#), 1.0);
    assert_eq!(get("siprox_script_version"), 1.0);
    // Every routed request ran the route hook once.
    let hooks = get("siprox_script_hook_duration_seconds_count");
    assert!(hooks >= 2.0, "hook count {hooks}");
    assert_eq!(get(r#"siprox_script_hook_duration_seconds_bucket{le="+Inf"}"#), hooks);
    assert!(get("siprox_transactions_active") >= 0.0);
    proxy.stop();
}

#[test]
fn reload_routes_and_script_status() {
    let proxy = start("mi-reload");
    let port = proxy.mi_port;
    let st = result(port, "script_status", json!({}));
    assert_eq!(st["Version"], json!(1), "{st:#}");
    assert_eq!(st["Last error"], Value::Null, "{st:#}");
    assert_eq!(st["Last attempt failed"], json!(false), "{st:#}");
    assert!(st["Path"].as_str().unwrap().ends_with("route.rhai"), "{st:#}");
    assert_eq!(st["Hash"].as_str().map(str::len), Some(64), "{st:#}");
    assert!(st["Loaded at"].as_str().is_some_and(|t| t.ends_with('Z')), "{st:#}");

    // A good script: swapped in, version 2, and it is the one answering.
    std::fs::write(proxy.dir.join("route.rhai"), script("OK v2")).unwrap();
    assert_eq!(result(port, "reload_routes", json!({})), json!("OK"));
    assert_eq!(sip(&proxy, "OPTIONS"), "SIP/2.0 200 OK v2");
    let st = result(port, "script_status", json!({}));
    assert_eq!((st["Version"].clone(), st["Reloads"].clone()), (json!(2), json!(1)), "{st:#}");
    assert_ne!(st["Hash"], json!(""), "{st:#}");

    // A broken one: refused with file:line:col, shown by script_status, the old one runs on.
    let broken = "fn route() {\n    sl_send_reply(200, \"broken\");\n    if (\n}\n";
    std::fs::write(proxy.dir.join("route.rhai"), broken).unwrap();
    let answer = call(port, "reload_routes", json!({}));
    let err = &answer["error"];
    assert_eq!(err["code"], json!(500), "{answer}");
    let diag = regex::Regex::new(r"route\.rhai:\d+:\d+: \S").unwrap();
    let message = err["message"].as_str().unwrap_or_default();
    assert!(diag.is_match(message), "diagnostic file:line:col: in {message:?}");
    let st = result(port, "script_status", json!({}));
    assert_eq!(st["Version"], json!(2), "{st:#}");
    assert_eq!(st["Last attempt failed"], json!(true), "{st:#}");
    assert_eq!(st["Reload failures"], json!(1), "{st:#}");
    assert!(diag.is_match(st["Last error"]["Message"].as_str().unwrap_or_default()), "{st:#}");
    assert!(st["Last error"]["At"].is_string(), "{st:#}");
    assert_eq!(sip(&proxy, "OPTIONS"), "SIP/2.0 200 OK v2", "the running script stays");

    // A script that compiles but calls what does not exist is refused too.
    std::fs::write(proxy.dir.join("route.rhai"), "fn route() {\n    no_such_function(1);\n}\n").unwrap();
    let answer = call(port, "reload_routes", json!({}));
    assert_eq!(answer["error"]["code"], json!(500), "{answer}");
    assert!(diag.is_match(answer["error"]["message"].as_str().unwrap_or_default()), "{answer}");
    let s = result(port, "get_statistics", json!(["script:"]));
    assert_eq!((stat(&s, "script:reloads"), stat(&s, "script:reload_failures")), (1, 2), "{s}");
    assert_eq!(sip(&proxy, "OPTIONS"), "SIP/2.0 200 OK v2");
    proxy.stop();
}

#[test]
fn token_is_enforced() {
    let token = "s3cret-Token";
    // Bare keys after the harness's `[mi] listen` line belong to [mi].
    let proxy = Proxy::start_with("mi-token", &script("OK"), &format!("token = \"{token}\""));
    let port = proxy.mi_port;
    let body = r#"{"jsonrpc":"2.0","method":"uptime","params":{},"id":1}"#;
    let bearer = format!("Bearer {token}");

    let none = post_raw(port, body, &[]);
    assert_eq!(none["error"]["code"], json!(401), "no token: {none}");
    assert!(none.get("result").is_none());
    let wrong = post_raw(port, body, &[("Authorization", "Bearer not-it")]);
    assert_eq!(wrong["error"]["code"], json!(401), "wrong token: {wrong}");
    let basic = post_raw(port, body, &[("Authorization", format!("Basic {token}").as_str())]);
    assert_eq!(basic["error"]["code"], json!(401), "wrong scheme: {basic}");
    let right = post_raw(port, body, &[("Authorization", bearer.as_str())]);
    assert!(right["result"]["Up time"].is_string(), "right token: {right}");

    let scrape = http(port, "GET", "/metrics", &[], "");
    assert_eq!(scrape.status, 401, "{}", scrape.head);
    assert!(scrape.head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{}", scrape.head);
    assert_eq!(http(port, "GET", "/metrics", &[("Authorization", "Bearer nope")], "").status, 401);
    let scrape = http(port, "GET", "/metrics", &[("Authorization", bearer.as_str())], "");
    assert_eq!(scrape.status, 200);
    assert!(scrape.body.contains("siprox_transactions_active"));

    // siprox ctl: refused without the token; the flag, the environment or the config give it.
    let url = proxy.mi_url();
    let o = ctl(&["--url", &url, "uptime"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"), "{}", out(&o));
    let o = ctl(&["--url", &url, "--token", token, "uptime"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = ctl(&["--url", &url, "uptime"], &[("SIPROX_MI_TOKEN", token)]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let cfg = proxy.config_path();
    let o = ctl(&["-c", cfg.to_str().unwrap(), "uptime"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    proxy.stop();
}

#[test]
fn ctl_prints_readable_and_json() {
    let proxy = start("mi-ctl");
    let url = proxy.mi_url();
    let o = ctl(&["--url", &url, "which"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
    assert!(lines.contains(&"get_statistics".to_string()) && lines.contains(&"reload_routes".to_string()), "{lines:?}");

    let o = ctl(&["--url", &url, "script_status"], &[]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("Version: 1\n") && text.contains("Last error: none\n"), "{}", out(&o));

    let o = ctl(&["--url", &url, "get_statistics", "core:", "tm:"], &[]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("core:rcv_requests: ") && text.contains("tm:inuse_transactions: "), "{}", out(&o));
    assert!(!text.contains("sl:"), "only the groups asked for: {text}");

    let o = ctl(&["--url", &url, "--json", "get_statistics", "statistics=core:rcv_requests"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("--json prints JSON ({e}): {}", out(&o)));
    assert_eq!(v, json!({"core:rcv_requests": 0}));

    let o = ctl(&["--url", &url, "which", "command=uptime"], &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "- []\n", "{}", out(&o));

    let o = ctl(&["--url", &url, "no_such_command"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error -32601: Method not found"), "{}", out(&o));
    let o = ctl(&["--url", &url, "uptime", "a=1", "b"], &[]);
    assert_eq!(o.status.code(), Some(2), "mixed argument kinds: {}", out(&o));

    // Nothing listening: a clear failure, not a hang.
    let closed = format!("http://127.0.0.1:{}/mi", free_port());
    let o = ctl(&["--url", &closed, "uptime"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach"), "{}", out(&o));
    proxy.stop();
}

/// Writes a config with `mi` as its `[mi]` table and runs `siprox run` on it; it must exit
/// by itself (non-zero) within 10 s. Returns its stderr.
fn run_must_fail(label: &str, mi: &str) -> String {
    let dir = TempDir::new(label);
    let port = free_port();
    std::fs::write(dir.join("route.rhai"), script("OK")).unwrap();
    let cfg = format!(
        "[core]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\nscript = \"route.rhai\"\n\n[mi]\n{mi}\n"
    );
    std::fs::write(dir.join("siprox.toml"), cfg).unwrap();
    let child = Command::new(siprox_bin())
        .args(["run", "-c"])
        .arg(dir.join("siprox.toml"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("start siprox");
    let mut guard = ChildGuard::new("siprox", child);
    let status = guard.wait_timeout(Duration::from_secs(10)).expect("siprox must refuse to start, not run");
    assert!(!status.success(), "siprox started with [mi] {mi}");
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

#[test]
fn start_refuses_an_open_interface_without_token_and_a_taken_port() {
    let err = run_must_fail("mi-open", "listen = \"0.0.0.0:18888\"");
    assert!(err.contains("[mi] token"), "the error names the fix: {err}");

    let taken = free_port();
    let _holder = TcpListener::bind(("127.0.0.1", taken)).expect("hold the port");
    let err = run_must_fail("mi-taken", &format!("listen = \"127.0.0.1:{taken}\""));
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{taken}")), "{err}");
}
