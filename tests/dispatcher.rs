//! The dispatcher module through the real script engine (as tests/script_api.rs runs the
//! core primitives: `build_engine` with the modules' registrar, `compile`, `run_hook` on an
//! `api::Ctx`, a recording `CoreOps`), and its MI commands called in-process on a `Mi`
//! registry.

mod support;

use serde_json::{json, Value};
use siprox::config::{Config, DispatcherConfig};
use siprox::mi::Mi;
use siprox::modules::dispatcher::{self, DsLoader, DsRow, DsState};
use siprox::modules::Modules;
use siprox::script::api::{Ctx, RouteKind};
use siprox::script::{build_engine, check_script, Bundle, Outcome, Source};
use std::sync::Arc;
use support::recording::{avp, compile_script, limits, run_on, Core};

// ------------------------------------------------------------------ helpers

const INVITE: &str = "INVITE sip:bob@example.com:5070;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-s1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=ft1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn row(id: i64, setid: i64, uri: &str) -> DsRow {
    DsRow { id, ..DsRow::new(setid, uri) }
}

/// Set 1: a (socket ours, attrs "a=1"), b (socket not ours), c; set 2: the caller 192.0.2.10.
fn rows() -> Vec<DsRow> {
    let mut a = row(1, 1, "sip:10.0.1.1:5060");
    a.socket = Some("udp:10.0.0.1:5060".into());
    a.attrs = Some("a=1".into());
    let mut b = row(2, 1, "sip:10.0.1.2:5080");
    b.socket = Some("udp:10.9.9.9:5060".into());
    b.attrs = Some("b=2".into());
    let c = row(3, 1, "sip:10.0.1.3");
    let mut caller = row(4, 2, "sip:192.0.2.10:5060");
    caller.attrs = Some("caller".into());
    vec![a, b, c, caller]
}

struct Fixture {
    modules: Modules,
    bundle: Bundle,
}

fn fixture(src: &str, ds_cfg: DispatcherConfig) -> Fixture {
    let cfg = Config { dispatcher: ds_cfg, ..Config::default() };
    let modules = Modules::new(&cfg);
    modules.dispatcher.replace(rows(), false);
    let bundle = compile_script(&modules, src, "ds.rhai");
    Fixture { modules, bundle }
}

impl Fixture {
    fn run(&self) -> (Ctx, Outcome, Arc<Core>) {
        self.run_on(INVITE)
    }
    fn run_on(&self, text: &str) -> (Ctx, Outcome, Arc<Core>) {
        run_on(&self.bundle, "route", RouteKind::Request, text, None)
    }
}

fn avps(ctx: &Ctx, name: &str) -> Vec<String> {
    ctx.avps.all(name).iter().map(|d| d.to_string()).collect()
}

fn assert_done(out: &Outcome) {
    assert!(matches!(out, Outcome::Done), "expected Done, got {out:?}");
}

fn state_of(m: &Modules, uri: &str) -> DsState {
    m.dispatcher.destinations().into_iter().find(|d| d.uri == uri).map(|d| d.state).expect("destination")
}

// ------------------------------------------------------------------ script functions

#[test]
fn select_dst_sets_du_fs_and_avps() {
    let f = fixture(
        r#"fn route() { $var(rc) = ds_select_dst(1, 8); $avp(rc) = retcode(); }"#,
        DispatcherConfig { attrs_avp: Some("$avp(ds_attrs)".into()), ..Default::default() },
    );
    let (ctx, out, _) = f.run();
    assert_done(&out);
    assert_eq!(ctx.du.as_deref(), Some("sip:10.0.1.1:5060"));
    assert_eq!(ctx.send_socket.as_deref(), Some("udp:10.0.0.1:5060"), "the row's socket is ours: $fs");
    assert_eq!(avp(&ctx, "rc"), "1");
    assert_eq!(avp(&ctx, "ds_attrs"), "a=1");
    assert_eq!(avp(&ctx, "ds_grp_failover"), "1");
    assert_eq!(avp(&ctx, "ds_cnt_failover"), "0");
    assert_eq!(avp(&ctx, "ds_dst_failover"), "<none>", "no failover list without f");
    assert_eq!(ctx.new_ruri, None, "ds_select_dst leaves the R-URI alone");
    let d = &f.modules.dispatcher.destinations()[0];
    assert_eq!(d.first_hit_counter, 1);
}

#[test]
fn select_dst_skips_a_socket_that_is_not_ours() {
    let f = fixture(
        r#"fn route() { ds_set_state_helper(); }
fn ds_set_state_helper() { ds_select_dst("1", "8", "", "default"); }"#,
        DispatcherConfig::default(),
    );
    f.modules.dispatcher.set_state(1, "sip:10.0.1.1:5060", DsState::Inactive).unwrap();
    let (ctx, out, _) = f.run();
    assert_done(&out);
    assert_eq!(ctx.du.as_deref(), Some("sip:10.0.1.2:5080"));
    assert_eq!(ctx.send_socket, None);
}

#[test]
fn failover_walk_mark_and_exhaustion() {
    let f = fixture(
        r#"fn route() {
    if ds_select_dst(1, 8, "f") != 1 { exit(); }
    $avp(first) = $du;
    $avp(cnt) = $avp(ds_cnt_failover);
    $avp(n1) = ds_next_dst();
    $avp(second) = $du;
    $avp(fs2) = $fs;
    $avp(mark) = ds_mark_dst();
    $avp(n2) = ds_next_dst();
    $avp(third) = $du;
    $avp(mark_p) = ds_mark_dst("p");
    $avp(n3) = ds_next_dst();
    $avp(rc3) = retcode();
}"#,
        DispatcherConfig { attrs_avp: Some("ds_attrs".into()), ..Default::default() },
    );
    let (ctx, out, _) = f.run();
    assert_done(&out);
    assert_eq!(avp(&ctx, "first"), "sip:10.0.1.1:5060");
    assert_eq!(avp(&ctx, "cnt"), "3");
    assert_eq!(avp(&ctx, "n1"), "1");
    assert_eq!(avp(&ctx, "second"), "sip:10.0.1.2:5080");
    assert_eq!(avp(&ctx, "fs2"), "udp:10.0.0.1:5060", "b's socket is not ours: $fs stays");
    assert_eq!(avp(&ctx, "mark"), "1");
    assert_eq!(avp(&ctx, "n2"), "1");
    assert_eq!(avp(&ctx, "third"), "sip:10.0.1.3");
    assert_eq!(avp(&ctx, "mark_p"), "1", "probing counts towards the threshold");
    assert_eq!(avp(&ctx, "n3"), "-1", "the list is exhausted");
    assert_eq!(avp(&ctx, "rc3"), "-1");
    assert_eq!(ctx.du.as_deref(), Some("sip:10.0.1.3"), "the last destination stays in $du");
    assert_eq!(avp(&ctx, "ds_attrs"), "<none>", "attrs popped with their destinations");
    assert_eq!(state_of(&f.modules, "sip:10.0.1.2:5080"), DsState::Inactive, "ds_mark_dst marked the head");
    assert_eq!(state_of(&f.modules, "sip:10.0.1.3"), DsState::Active, "one call of three");
}

#[test]
fn failover_avps_as_a_stack() {
    let f = fixture(r#"fn route() { ds_select_dst(1, 8, "fd", "", 2); }"#, DispatcherConfig::default());
    let (ctx, out, _) = f.run();
    assert_done(&out);
    // Newest first: the selected one, one more (max_results 2), then the default.
    assert_eq!(avps(&ctx, "ds_dst_failover"), ["sip:10.0.1.1:5060", "sip:10.0.1.2:5080", "sip:10.0.1.3"]);
    assert_eq!(avps(&ctx, "ds_sock_failover"), ["udp:10.9.9.9:5060", ""]);
    assert_eq!(avp(&ctx, "ds_cnt_failover"), "3");
    // Calling again replaces the list; with `a` it is pushed on top of it.
    let f = fixture(
        r#"fn route() { ds_select_dst(1, 8, "f"); ds_select_dst(1, 8, "f"); ds_select_dst(1, 8, "fa"); }"#,
        DispatcherConfig::default(),
    );
    let (ctx, _, _) = f.run();
    assert_eq!(avps(&ctx, "ds_dst_failover").len(), 6);
}

#[test]
fn select_domain_rewrites_the_ruri_host() {
    let f = fixture(
        r#"fn route() { ds_select_domain(1, 8, "f"); $avp(r1) = $ru; ds_next_domain(); }"#,
        DispatcherConfig::default(),
    );
    let (ctx, out, _) = f.run();
    assert_done(&out);
    assert_eq!(avp(&ctx, "r1"), "sip:bob@10.0.1.1:5060;transport=udp");
    assert_eq!(ctx.ruri(), "sip:bob@10.0.1.2:5080;transport=udp");
    assert_eq!(ctx.du, None);
}

#[test]
fn failures_return_minus_one() {
    let f = fixture(
        r#"fn route() {
    $avp(unknown) = ds_select_dst(9, 0);
    $avp(part) = ds_select_dst(1, 0, "", "pstn");
    $avp(bad) = ds_select_dst("x", 0);
    $avp(next) = ds_next_dst();
    $avp(mark) = ds_mark_dst();
    $avp(markx) = ds_mark_dst("z");
    if ds_select_dst(9, 4) == -1 { sl_send_reply(503, "Service Unavailable"); exit(); }
}"#,
        DispatcherConfig::default(),
    );
    let (ctx, out, core) = f.run();
    assert!(matches!(out, Outcome::Exit), "{out:?}");
    for name in ["unknown", "part", "bad", "next", "mark", "markx"] {
        assert_eq!(avp(&ctx, name), "-1", "{name}");
    }
    assert_eq!(ctx.du, None);
    assert_eq!(core.calls.lock().unwrap().clone(), ["sl_send_reply 503 Service Unavailable"]);
    assert_eq!(f.modules.dispatcher.stats.select_failed.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[test]
fn no_active_destination() {
    let f = fixture(r#"fn route() { $avp(rc) = ds_select_dst(1, 0); }"#, DispatcherConfig::default());
    for u in ["sip:10.0.1.1:5060", "sip:10.0.1.2:5080", "sip:10.0.1.3"] {
        f.modules.dispatcher.set_state(1, u, DsState::Inactive).unwrap();
    }
    let (ctx, _, _) = f.run();
    assert_eq!(avp(&ctx, "rc"), "-1");
}

#[test]
fn hash_algorithms_read_the_message() {
    let f = fixture(
        r#"fn route() { ds_select_dst(1, 0); $avp(a0) = $du; ds_select_dst(1, 1); $avp(a1) = $du;
ds_select_dst(1, 2, "u"); $avp(a2) = $du; ds_select_dst(1, 3); $avp(a3) = $du; $avp(a7) = ds_select_dst(1, 7); }"#,
        DispatcherConfig::default(),
    );
    let (ctx, _, _) = f.run();
    let call = siprox::modules::dispatcher::hash32("call-1@192.0.2.10");
    let expected0 = ["sip:10.0.1.1:5060", "sip:10.0.1.2:5080", "sip:10.0.1.3"][(call % 3) as usize];
    assert_eq!(avp(&ctx, "a0"), expected0);
    for a in ["a1", "a2", "a3"] {
        assert!(avp(&ctx, a).starts_with("sip:10.0.1."), "{a}");
    }
    assert_eq!(avp(&ctx, "a7"), "-1", "no hash_pvar configured");
    // Same message, same choices.
    let (again, _, _) = f.run();
    for a in ["a0", "a1", "a2", "a3"] {
        assert_eq!(avp(&ctx, a), avp(&again, a));
    }
}

#[test]
fn auth_username_hash() {
    let f = fixture(r#"fn route() { ds_select_dst(1, 5); }"#, DispatcherConfig::default());
    let with_auth = INVITE.replace(
        "Content-Length: 0",
        "Proxy-Authorization: Digest username=\"carol\", realm=\"x\", nonce=\"n\", uri=\"sip:b\", response=\"r\"\r\nContent-Length: 0",
    );
    let first = f.run_on(&with_auth).0.du;
    for _ in 0..4 {
        assert_eq!(f.run_on(&with_auth).0.du, first, "sticky per user");
    }
}

#[test]
fn hash_pvar_load_pattern_and_algo_route() {
    let f = fixture(
        r#"fn route() {
    ds_select_dst(1, 7); $avp(h) = $du;
    $avp("load_sip:10.0.1.1:5060") = 9;
    $avp("load_sip:10.0.1.2:5080") = 2;
    $avp("load_sip:10.0.1.3") = 5;
    ds_select_dst(1, 9, "f"); $avp(l) = $du; ds_next_dst(); $avp(l2) = $du;
    ds_select_dst(1, 10); $avp(s) = $du;
}
fn route_score(dst_uri, attrs, script_attrs) {
    if dst_uri == "sip:10.0.1.3" { 1 } else if attrs == "a=1" { 2 } else { -1 }
}"#,
        DispatcherConfig {
            hash_pvar: Some("$fU-$ci".into()),
            pvar_algo_pattern: Some("$avp(load_%u)".into()),
            algo_route: Some("score".into()),
            ..Default::default()
        },
    );
    let (ctx, out, _) = f.run();
    assert_done(&out);
    let key = siprox::modules::dispatcher::hash32("alice-call-1@192.0.2.10");
    assert_eq!(avp(&ctx, "h"), ["sip:10.0.1.1:5060", "sip:10.0.1.2:5080", "sip:10.0.1.3"][(key % 3) as usize]);
    assert_eq!(avp(&ctx, "l"), "sip:10.0.1.2:5080", "lowest load");
    assert_eq!(avp(&ctx, "l2"), "sip:10.0.1.3", "then the next lowest");
    assert_eq!(avp(&ctx, "s"), "sip:10.0.1.3", "lowest score of algo_route");
}

#[test]
fn is_in_list_and_count() {
    let f = fixture(
        r#"fn route() {
    $avp(any) = ds_is_in_list($si, $sp);
    $avp(set1) = ds_is_in_list($si, $sp, 1);
    $avp(set2) = ds_is_in_list($si, "5060", 2, "", 1);
    $avp(port) = ds_is_in_list("10.0.1.3", 1234, -1);
    $avp(other) = ds_is_in_list("10.0.1.3", 1234, 1, "other");
    $avp(c_all) = ds_count(1, "");
    $avp(c_a) = ds_count(1, "a");
    $avp(c_ip) = ds_count(1, "ip");
    $avp(c_none) = ds_count(5, "a");
    $avp(c_rc) = ds_count(1, "a", "$var(n)");
    $avp(c_var) = $var(n);
    ds_count(1, "i", "$avp(ni)", "default");
}"#,
        DispatcherConfig {
            setid_pvar: Some("$avp(setid)".into()),
            attrs_avp: Some("ds_attrs".into()),
            ..Default::default()
        },
    );
    f.modules.dispatcher.set_state(1, "sip:10.0.1.2:5080", DsState::Inactive).unwrap();
    let (ctx, out, _) = f.run();
    assert_done(&out);
    assert_eq!(avp(&ctx, "any"), "true");
    // setid_pvar gets the set when none (or -1) was given: 2 for $si, then 1 for 10.0.1.3.
    assert_eq!(avps(&ctx, "setid"), ["1", "2"]);
    // attrs_avp gets the matching destination's attrs.
    assert_eq!(avps(&ctx, "ds_attrs"), ["", "caller", "caller"]);
    assert_eq!(avp(&ctx, "set1"), "false");
    assert_eq!(avp(&ctx, "set2"), "true");
    assert_eq!(avp(&ctx, "port"), "true", "a destination without a port matches any port");
    assert_eq!(avp(&ctx, "other"), "false", "unknown partition");
    assert_eq!(avp(&ctx, "c_all"), "3");
    assert_eq!(avp(&ctx, "c_a"), "2");
    assert_eq!(avp(&ctx, "c_ip"), "1");
    assert_eq!(avp(&ctx, "c_none"), "-1");
    assert_eq!(avp(&ctx, "c_rc"), "1");
    assert_eq!(avp(&ctx, "c_var"), "2");
    assert_eq!(avp(&ctx, "ni"), "1");
}

#[test]
fn check_knows_the_arities() {
    let cfg = Config::default();
    let modules = Modules::new(&cfg);
    let check = |src: &str| {
        let engine = build_engine(limits(), &*modules.registrar());
        check_script(engine, Source::Text { text: src, name: "t.rhai" })
    };
    let ok = r#"fn route() {
    ds_select_dst(1, 0); ds_select_dst(1, 0, "f"); ds_select_dst(1, 0, "f", ""); ds_select_dst(1, 0, "f", "", 2);
    ds_select_domain(1, 0); ds_select_domain(1, 0, "f", "", 2);
    ds_next_dst(); ds_next_dst(""); ds_next_domain(); ds_mark_dst(); ds_mark_dst("p"); ds_mark_dst("p", "");
    ds_is_in_list($si, $sp); ds_is_in_list($si, $sp, 1, "", 1); ds_count(1, "a"); ds_count(1, "a", "$var(x)");
}"#;
    assert_eq!(check(ok), vec![]);
    let d = check("fn route() {\n    ds_select_dst(1);\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("ds_select_dst"), "{}", d[0]);
}

// ------------------------------------------------------------------ MI

fn mi_with(loader: DsLoader) -> (Arc<Mi>, Modules) {
    let modules = Modules::new(&Config::default());
    modules.dispatcher.replace(rows(), false);
    let mi = Arc::new(Mi::new());
    dispatcher::mi::install(&mi, modules.dispatcher.clone(), loader);
    (mi, modules)
}

fn loader_of(result: Result<Vec<DsRow>, String>) -> DsLoader {
    Arc::new(move || {
        let r = result.clone();
        Box::pin(async move { r })
    })
}

#[tokio::test]
async fn mi_ds_list_shape() {
    let (mi, m) = mi_with(loader_of(Ok(vec![])));
    m.dispatcher.set_state(1, "sip:10.0.1.3", DsState::Probing).unwrap();
    let v = mi.commands.call("ds_list", Some(json!({}))).await.unwrap();
    let part = &v["PARTITIONS"][0];
    assert_eq!(part["name"], json!("default"));
    let sets = part["SETS"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["id"], json!(1));
    let d0 = &sets[0]["Destinations"][0];
    assert_eq!(d0["URI"], json!("sip:10.0.1.1:5060"));
    assert_eq!(d0["state"], json!("Active"));
    assert_eq!(d0["first_hit_counter"], json!(0));
    assert_eq!(d0["socket"], json!("udp:10.0.0.1:5060"));
    assert_eq!(d0["attr"], json!("a=1"));
    assert!(d0.get("weight").is_none());
    assert_eq!(sets[0]["Destinations"][2]["state"], json!("Probing"));
    let full = mi.commands.call("ds_list", Some(json!(["1"]))).await.unwrap();
    let d0 = &full["PARTITIONS"][0]["SETS"][0]["Destinations"][0];
    assert_eq!((d0["weight"].clone(), d0["priority"].clone()), (json!(1), json!(0)));
    // A probe result shows.
    let t = dispatcher::ProbeTarget { setid: 1, uri: "sip:10.0.1.3".into(), socket: None };
    m.dispatcher.probe_result(&t, Some(200));
    let v = mi.commands.call("ds_list", None).await.unwrap();
    let d2 = &v["PARTITIONS"][0]["SETS"][0]["Destinations"][2];
    assert_eq!((d2["state"].clone(), d2["last_probe_code"].clone()), (json!("Active"), json!(200)));
    // No sets: no SETS.
    let empty = Arc::new(Mi::new());
    let ds = Arc::new(dispatcher::Dispatcher::new(&DispatcherConfig::default()));
    dispatcher::mi::install(&empty, ds, loader_of(Ok(vec![])));
    assert_eq!(empty.commands.call("ds_list", None).await.unwrap(), json!({"PARTITIONS": [{"name": "default"}]}));
}

#[tokio::test]
async fn mi_ds_set_state() {
    let (mi, m) = mi_with(loader_of(Ok(vec![])));
    let ok = mi.commands.call("ds_set_state", Some(json!(["i", "1", "sip:10.0.1.2:5080"]))).await.unwrap();
    assert_eq!(ok, json!("OK"));
    assert_eq!(state_of(&m, "sip:10.0.1.2:5080"), DsState::Inactive);
    let named = json!({"state": "p", "group": "default:1", "address": "sip:10.0.1.2:5080"});
    assert_eq!(mi.commands.call("ds_set_state", Some(named)).await.unwrap(), json!("OK"));
    assert_eq!(state_of(&m, "sip:10.0.1.2:5080"), DsState::Probing);
    let with_part = json!(["a", "1", "sip:10.0.1.2:5080", "default"]);
    assert_eq!(mi.commands.call("ds_set_state", Some(with_part)).await.unwrap(), json!("OK"));
    assert_eq!(state_of(&m, "sip:10.0.1.2:5080"), DsState::Active);
    let err = |v: Value| {
        let mi = mi.clone();
        async move { mi.commands.call("ds_set_state", Some(v)).await.unwrap_err().code }
    };
    assert_eq!(err(json!(["x", "1", "sip:10.0.1.2:5080"])).await, -32602);
    assert_eq!(err(json!(["a", "one", "sip:10.0.1.2:5080"])).await, -32602);
    assert_eq!(err(json!(["a", "7", "sip:10.0.1.2:5080"])).await, 404);
    assert_eq!(err(json!(["a", "1", "sip:nowhere"])).await, 404);
    assert_eq!(err(json!(["a", "pstn:1", "sip:10.0.1.2:5080"])).await, 404);
    assert_eq!(err(json!(["a", "1"])).await, -32602);
}

#[tokio::test]
async fn mi_ds_reload_atomic_and_inheriting() {
    let mut new_rows = rows();
    new_rows.truncate(2);
    new_rows.push(row(9, 3, "sip:10.0.3.1"));
    let (mi, m) = mi_with(loader_of(Ok(new_rows)));
    m.dispatcher.set_state(1, "sip:10.0.1.2:5080", DsState::Inactive).unwrap();
    assert_eq!(mi.commands.call("ds_reload", None).await.unwrap(), json!("OK"));
    let uris: Vec<(String, DsState)> = m.dispatcher.destinations().into_iter().map(|d| (d.uri, d.state)).collect();
    assert_eq!(
        uris,
        vec![
            ("sip:10.0.1.1:5060".to_string(), DsState::Active),
            ("sip:10.0.1.2:5080".to_string(), DsState::Inactive),
            ("sip:10.0.3.1".to_string(), DsState::Active),
        ]
    );
    m.dispatcher.set_state(1, "sip:10.0.1.2:5080", DsState::Inactive).unwrap();
    let r = mi.commands.call("ds_reload", Some(json!({"inherit_state": "n"}))).await.unwrap();
    assert_eq!(r, json!("OK"));
    assert_eq!(state_of(&m, "sip:10.0.1.2:5080"), DsState::Active, "without inheritance the table state wins");
    assert_eq!(mi.commands.call("ds_reload", Some(json!(["default", "y"]))).await.unwrap(), json!("OK"));
    assert_eq!(mi.commands.call("ds_reload", Some(json!(["pstn"]))).await.unwrap_err().code, 404);
    assert_eq!(mi.commands.call("ds_reload", Some(json!(["", "maybe"]))).await.unwrap_err().code, -32602);
    let stats = mi.statistics.select(&["dispatcher:".to_string()]).unwrap();
    assert_eq!(stats["dispatcher:reloads"], json!(3));
    assert_eq!(stats["dispatcher:destinations"], json!(3));
}

#[tokio::test]
async fn mi_ds_reload_failure_keeps_the_old_sets() {
    let (mi, m) = mi_with(loader_of(Err("connection refused".into())));
    let e = mi.commands.call("ds_reload", None).await.unwrap_err();
    assert_eq!(e.code, 500);
    assert!(e.message.contains("connection refused"), "{}", e.message);
    assert_eq!(m.dispatcher.destinations().len(), 4);
    let stats = mi.statistics.select(&["dispatcher:".to_string()]).unwrap();
    assert_eq!(stats["dispatcher:reload_failures"], json!(1));
    assert_eq!(stats["dispatcher:active_destinations"], json!(4));
    let text = mi.metrics.render();
    assert!(text.contains("siprox_dispatcher_reloads_total{result=\"failed\"} 1"), "{text}");
    assert!(text.contains("siprox_dispatcher_destinations{state=\"active\"} 4"), "{text}");
}
