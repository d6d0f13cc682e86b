//! A proxy embedded in a program, with its route written inline.
//!
//! `cargo run --example minimal_proxy` listens on udp/tcp 127.0.0.1:5070, answers OPTIONS
//! itself and relays everything else statefully to its Request-URI. Stop it with Ctrl-C.

use siprox::config::Config;
use siprox::script::ScriptHost;

const ROUTE: &str = r#"
fn route() {
    common::maxfwd(10);
    common::in_dialog();
    common::cancel();
    if is_method("OPTIONS") && is_myself($ru) {
        sl_send_reply(200, "OK");
        exit();
    }
    record_route();
    xlog("L_INFO", "relaying $rm from $si to $ru\n");
    common::relay();
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = Config::default();
    cfg.core.listen = vec!["udp:127.0.0.1:5070".into(), "tcp:127.0.0.1:5070".into()];
    tracing_subscriber::fmt().with_env_filter("info").init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let modules = siprox::modules::Modules::new(&cfg);
        let host = ScriptHost::from_source(
            ROUTE,
            "minimal_proxy.rhai",
            siprox::app::script_limits(&cfg),
            modules.registrar(),
        )?;
        // Nothing to keep between runs: an in-memory database.
        let db = siprox::db::Db::open("sqlite::memory:").await?;
        db.migrate().await?;
        let _running = siprox::app::start_with(&cfg, host, std::sync::Arc::new(db), modules)?;
        tracing::info!("minimal_proxy ready on 127.0.0.1:5070");
        tokio::signal::ctrl_c().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
