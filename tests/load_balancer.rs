//! The load_balancer module in-process: its script functions through the real engine (as
//! tests/dispatcher.rs runs the dispatcher's), its MI commands on a `Mi` registry, and its
//! table loaded from SQLite (always) and from PostgreSQL (`SIPROX_TEST_PG`) and
//! MySQL/MariaDB (`SIPROX_TEST_MYSQL`) when those are set: lb_reload, lb_resize, lb_status.

mod support;

use serde_json::{json, Value};
use siprox::config::Config;
use siprox::db::Backend;
use siprox::mi::Mi;
use siprox::modules::load_balancer::{self, store, LbLoader, LbRow, LoadBalancer, Status};
use siprox::modules::Modules;
use siprox::script::api::{Ctx, RouteKind};
use siprox::script::{build_engine, check_script, Bundle, Outcome, Source};
use std::sync::Arc;
use support::recording::{avp, compile_script, limits, run_on, Core};
use support::testdb::{rt, TestDb};

// ------------------------------------------------------------------ fixtures

fn invite(n: usize) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-lb{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=ft{n}\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: lb-call-{n}@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn row(id: i64, group: i64, uri: &str, res: &str) -> LbRow {
    LbRow { id, ..LbRow::new(group, uri, res) }
}

/// Group 1: gw-a (pstn 1), gw-b (pstn 2); group 2: media (transc 4).
fn rows() -> Vec<LbRow> {
    vec![
        row(1, 1, "sip:10.0.1.1:5060", "pstn=1"),
        row(2, 1, "sip:10.0.1.2:5060", "pstn=2"),
        row(3, 2, "sip:10.0.2.1", "transc=4"),
    ]
}

struct Fixture {
    modules: Modules,
    bundle: Bundle,
}

fn fixture(src: &str) -> Fixture {
    let modules = Modules::new(&Config::default());
    modules.load_balancer.replace(rows());
    let bundle = compile_script(&modules, src, "lb.rhai");
    Fixture { modules, bundle }
}

impl Fixture {
    fn run(
        &self,
        hook: &str,
        n: usize,
        kind: RouteKind,
        dlg: Option<Arc<siprox::dialog::Dialog>>,
    ) -> (Ctx, Outcome, Arc<Core>) {
        run_on(&self.bundle, hook, kind, &invite(n), dlg)
    }
    fn route(&self, n: usize) -> (Ctx, Outcome, Arc<Core>) {
        self.run("route", n, RouteKind::Request, None)
    }
    fn load(&self, id: i64) -> u64 {
        self.modules.load_balancer.load("pstn", id)
    }
}

const ROUTE: &str = r#"
fn route() {
    record_route();
    $avp(rc) = load_balance("1", "pstn", "1");
    $avp(retcode) = retcode();
    $avp(started) = lb_is_started();
    if $avp(rc) < 0 {
        send_reply(503, "Service Unavailable");
        exit();
    }
    t_on_failure("lb");
    t_relay();
}
fn failure_route_lb() {
    $avp(next) = lb_next();
    if $avp(next) == 1 { t_relay(); } else { send_reply(503, "Service Unavailable"); }
}
"#;

// ------------------------------------------------------------------ script functions

#[test]
fn load_balance_picks_sets_du_and_counts_in_the_dialog() {
    let f = fixture(ROUTE);
    let (ctx, out, core) = f.route(1);
    assert!(matches!(out, Outcome::Done), "{out:?}");
    assert_eq!((avp(&ctx, "rc"), avp(&ctx, "retcode"), avp(&ctx, "started")), ("1".into(), "1".into(), "true".into()));
    // Relative (the 1.x "1"): both 100 % free, the first by id.
    assert_eq!(ctx.du.as_deref(), Some("sip:10.0.1.1:5060"));
    assert_eq!(ctx.new_ruri, None, "the R-URI stays");
    let dlg = ctx.dlg.clone().expect("lb_start created the dialog");
    let rr = ctx.rr.as_ref().map(|r| r.params.clone()).unwrap_or_default() + ctx.rr_params.as_str();
    assert!(rr.contains(&format!(";did={}", dlg.did())), "the did goes into our Record-Route: {rr:?}");
    assert_eq!(f.load(1), 1);
    assert_eq!(core.calls.lock().unwrap().clone(), ["t_relay du=Some(\"sip:10.0.1.1:5060\") ruri=sip:bob@example.com"]);

    // Second call: a 0 % free, b 100 %: b. Third: b 50 %. Fourth: nothing left, 503.
    assert_eq!(f.route(2).0.du.as_deref(), Some("sip:10.0.1.2:5060"));
    assert_eq!(f.route(3).0.du.as_deref(), Some("sip:10.0.1.2:5060"));
    let (ctx, out, core) = f.route(4);
    assert!(matches!(out, Outcome::Exit), "{out:?}");
    assert_eq!(avp(&ctx, "rc"), "-2");
    assert_eq!(avp(&ctx, "started"), "false");
    assert_eq!(core.calls.lock().unwrap().clone(), ["sl_send_reply 503 Service Unavailable"]);
    assert_eq!((f.load(1), f.load(2)), (1, 2));
    // The refused call's dialog is in no LB profile.
    assert!(ctx.dlg.as_ref().is_none_or(|d| d.data().profiles.is_empty()));
}

#[test]
fn lb_next_in_failure_route_moves_the_call() {
    let f = fixture(ROUTE);
    let (ctx, _, _) = f.route(1);
    let dlg = ctx.dlg.clone().expect("dialog");
    assert_eq!(f.load(1), 1);
    let (ctx, out, core) = f.run("failure_route_lb", 1, RouteKind::Failure, Some(dlg.clone()));
    assert!(matches!(out, Outcome::Done), "{out:?}");
    assert_eq!(avp(&ctx, "next"), "1");
    assert_eq!(ctx.du.as_deref(), Some("sip:10.0.1.2:5060"));
    assert_eq!((f.load(1), f.load(2)), (0, 1), "the dialog left a's profile for b's");
    assert!(core.calls.lock().unwrap()[0].starts_with("t_relay"));
    // Both tried: -3, 503.
    let (ctx, _, core) = f.run("failure_route_lb", 1, RouteKind::Failure, Some(dlg));
    assert_eq!(avp(&ctx, "next"), "-3");
    assert_eq!(core.calls.lock().unwrap().clone(), ["sl_send_reply 503 Service Unavailable"]);
    assert_eq!((f.load(1), f.load(2)), (0, 0));
}

#[test]
fn codes_flags_and_helpers() {
    let f = fixture(
        r#"fn route() {
    $avp(unknown) = lb_start(1, "fax");
    $avp(nodst) = lb_start(2, "pstn");
    $avp(badflag) = lb_start(1, "pstn", "q");
    $avp(badgrp) = lb_start("one", "pstn");
    $avp(next_nosession) = lb_next();
    $avp(reset_none) = lb_reset();
    $avp(start) = lb_start(2, "transc", "rs");
    $avp(du1) = $du;
    $avp(son) = lb_start_or_next(2, "transc");
    $avp(reset) = lb_reset();
    $avp(after_reset) = lb_is_started();
    $avp(again) = lb_start(1, "pstn");
    $avp(disable) = lb_disable_dst();
    $avp(isdst) = lb_is_destination("10.0.1.1", 5060);
    $avp(isdst_grp) = lb_is_destination("10.0.1.1", 5060, 2);
    $avp(isdst_active) = lb_is_destination("10.0.1.1", 5060, 1, 1);
    $avp(isdst_anyport) = lb_is_destination("10.0.2.1", 0, -1, 0);
    $avp(count) = lb_count_call("10.0.2.1", 5060, 2, "transc");
    $avp(count_bad) = lb_count_call("10.9.9.9", 5060, 2, "transc");
}"#,
    );
    let (ctx, out, _) = f.route(1);
    assert!(matches!(out, Outcome::Done), "{out:?}");
    let want = [
        ("unknown", "-4"),
        ("nodst", "-3"),
        ("badflag", "-1"),
        ("badgrp", "-1"),
        ("next_nosession", "-1"),
        ("reset_none", "-1"),
        ("start", "1"),
        ("du1", "sip:10.0.2.1"),
        ("son", "-3"),
        ("reset", "1"),
        ("after_reset", "false"),
        ("again", "1"),
        ("disable", "1"),
        ("isdst", "true"),
        ("isdst_grp", "false"),
        ("isdst_active", "true"),
        ("isdst_anyport", "true"),
        ("count", "1"),
        ("count_bad", "-1"),
    ];
    for (name, v) in want {
        assert_eq!(avp(&ctx, name), v, "{name}");
    }
    let lb = &f.modules.load_balancer;
    // Absolute: gw-b (2 free) beat gw-a (1 free), and lb_disable_dst disabled it.
    assert_eq!(lb.status(2), Some(Status::Disabled));
    assert_eq!(lb.status(1), Some(Status::Enabled));
    assert_eq!(lb.load("transc", 3), 1, "lb_count_call counted the call");
    assert_eq!(lb.load("pstn", 2), 1);
}

#[test]
fn check_knows_the_arities() {
    let modules = Modules::new(&Config::default());
    let check = |src: &str| {
        let engine = build_engine(limits(), &*modules.registrar());
        check_script(engine, Source::Text { text: src, name: "t.rhai" })
    };
    let ok = r#"fn route() {
    lb_start(1, "pstn"); lb_start(1, "pstn", "r"); lb_start_or_next(1, "pstn"); lb_start_or_next(1, "pstn", "n");
    load_balance("1", "pstn"); load_balance("1", "pstn", "1"); lb_next(); lb_reset(); lb_is_started();
    lb_disable_dst(); lb_disable(); lb_is_destination($si, $sp); lb_is_destination($si, $sp, 1);
    lb_is_destination($si, $sp, 1, 1); lb_count_call($si, $sp, 1, "pstn"); lb_count_call($si, $sp, 1, "pstn", 1);
}"#;
    assert_eq!(check(ok), vec![]);
    let d = check("fn route() {\n    lb_start(1);\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
}

// ------------------------------------------------------------------ MI

fn loader_of(result: Result<Vec<LbRow>, String>) -> LbLoader {
    Arc::new(move || {
        let r = result.clone();
        Box::pin(async move { r })
    })
}

fn mi_with(lb: Arc<LoadBalancer>, loader: LbLoader) -> Arc<Mi> {
    let mi = Arc::new(Mi::new());
    load_balancer::mi::install(&mi, lb, loader);
    mi
}

#[tokio::test]
async fn mi_lb_list_shape_and_reload_failure() {
    let f = fixture(ROUTE);
    f.route(1);
    let mi = mi_with(f.modules.load_balancer.clone(), loader_of(Err("connection refused".into())));
    let v = mi.commands.call("lb_list", None).await.unwrap();
    assert_eq!(
        v["Destinations"][0],
        json!({"id": 1, "group": 1, "uri": "sip:10.0.1.1:5060", "enabled": "yes", "auto-re": "off", "probe_mode": 0,
               "Resources": [{"name": "pstn", "max": 1, "load": 1}]})
    );
    assert_eq!(v["Destinations"].as_array().map(Vec::len), Some(3));
    let e = mi.commands.call("lb_reload", None).await.unwrap_err();
    assert_eq!(e.code, 500);
    assert!(e.message.contains("connection refused"), "{}", e.message);
    assert_eq!(f.modules.load_balancer.destinations().len(), 3, "the old table stays");
    let names = mi.commands.names();
    for c in ["lb_list", "lb_reload", "lb_resize", "lb_status"] {
        assert!(names.iter().any(|n| n == c), "{c} not registered");
    }
}

// ------------------------------------------------------------------ databases

/// The table through the store: load (id order), lb_reload picking up new rows and keeping
/// status, lb_resize, lb_status, errors.
fn table_case(backend: Backend) {
    let t = match backend {
        Backend::Sqlite => TestDb::sqlite("lb-db"),
        _ => match TestDb::server(backend, "load_balancer table test") {
            Some(t) => t,
            None => return,
        },
    };
    rt().block_on(async {
        let db = t.open().await;
        let table = store::DEFAULT_TABLE;
        let mut a = LbRow::new(1, "sip:10.0.1.1:5060", "pstn=32;transc=10");
        a.probe_mode = 1;
        a.description = Some("gw a".into());
        let ia = store::insert(&db, table, &a).await.unwrap();
        let ib = store::insert(&db, table, &LbRow::new(1, "sip:10.0.1.2", "pstn=16")).await.unwrap();
        let rows = store::load(&db, table).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [ia, ib]);
        assert_eq!(rows[0], LbRow { id: ia, ..a.clone() });

        let modules = Modules::new(&Config::default());
        let lb = modules.load_balancer.clone();
        let loader: LbLoader = {
            let db = db.clone();
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { store::load(&db, table).await.map_err(|e| e.to_string()) })
            })
        };
        let mi = mi_with(lb.clone(), loader);
        assert_eq!(mi.commands.call("lb_reload", None).await.unwrap(), json!("OK"));
        let list = mi.commands.call("lb_list", None).await.unwrap();
        let d0 = &list["Destinations"][0];
        assert_eq!(
            (d0["id"].as_i64(), d0["auto-re"].as_str(), d0["description"].as_str()),
            (Some(ia), Some("on"), Some("gw a"))
        );
        assert_eq!(
            d0["Resources"],
            json!([{"name": "pstn", "max": 32, "load": 0}, {"name": "transc", "max": 10, "load": 0}])
        );

        // lb_status: off by MI (auto-re off), on again; queried.
        let ok = mi.commands.call("lb_status", Some(json!([ia.to_string(), "0"]))).await.unwrap();
        assert_eq!(ok, json!("OK"));
        assert_eq!(lb.status(ia), Some(Status::DisabledByMi));
        let list = mi.commands.call("lb_list", None).await.unwrap();
        assert_eq!(
            (list["Destinations"][0]["enabled"].as_str(), list["Destinations"][0]["auto-re"].as_str()),
            (Some("no"), Some("off"))
        );
        let q = mi.commands.call("lb_status", Some(json!({"destination_id": ia}))).await.unwrap();
        assert_eq!(q, json!({"enabled": "no"}));

        // lb_resize.
        let r = mi.commands.call("lb_resize", Some(json!([ib.to_string(), "pstn", "40"]))).await.unwrap();
        assert_eq!(r, json!("OK"));
        let list = mi.commands.call("lb_list", None).await.unwrap();
        assert_eq!(list["Destinations"][1]["Resources"][0]["max"], json!(40));

        // A new row and a reload: the new one appears, the MI-disabled one stays disabled,
        // the resize is replaced by the table's value.
        let ic = store::insert(&db, table, &LbRow::new(2, "sip:10.0.2.1", "vm=5")).await.unwrap();
        assert_eq!(mi.commands.call("lb_reload", Some(json!({}))).await.unwrap(), json!("OK"));
        let list = mi.commands.call("lb_list", None).await.unwrap();
        let ds = list["Destinations"].as_array().cloned().unwrap_or_default();
        assert_eq!(ds.iter().map(|d| d["id"].as_i64().unwrap_or(0)).collect::<Vec<_>>(), [ia, ib, ic]);
        assert_eq!(ds[0]["enabled"], json!("no"));
        assert_eq!(ds[1]["Resources"][0]["max"], json!(16));
        assert!(modules.dialogs.profiles.kind("lbXvm").is_some(), "the new resource's profile is declared");
        assert_eq!(mi.commands.call("lb_status", Some(json!([ia.to_string(), "1"]))).await.unwrap(), json!("OK"));
        assert_eq!(lb.status(ia), Some(Status::Enabled));

        // Errors.
        let err = |v: Value, cmd: &'static str| {
            let mi = mi.clone();
            async move { mi.commands.call(cmd, Some(v)).await.unwrap_err().code }
        };
        assert_eq!(err(json!(["999", "1"]), "lb_status").await, 404);
        assert_eq!(err(json!([ia.to_string(), "2"]), "lb_status").await, -32602);
        assert_eq!(err(json!(["x", "1"]), "lb_status").await, -32602);
        assert_eq!(err(json!([ia.to_string(), "fax", "3"]), "lb_resize").await, 404);
        assert_eq!(err(json!([ia.to_string(), "pstn", "-3"]), "lb_resize").await, -32602);
        assert_eq!(err(json!([ia.to_string(), "pstn"]), "lb_resize").await, -32602);
        db.close().await;
    });
}

#[test]
fn sqlite_table_reload_resize_status() {
    table_case(Backend::Sqlite);
}

#[test]
fn postgres_table_reload_resize_status() {
    table_case(Backend::Postgres);
}

#[test]
fn mysql_table_reload_resize_status() {
    table_case(Backend::MySql);
}
