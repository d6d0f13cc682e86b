//! Feature modules in OpenSIPS's anatomy: each folder has `mod.rs` (its parameters, script
//! functions and, later, MI commands), its pure logic, and `script.rs` (the Rhai bindings).
//! A module never reaches into the proxy: what needs the network goes through
//! [`crate::script::api::CoreOps`].

pub mod dispatcher;
pub mod maxfwd;
pub mod rr;
pub mod sl;
pub mod tm;

use crate::config::Config;
use rhai::Engine;
use std::sync::Arc;

/// Every module's script functions, configured from `cfg`, as one registration function
/// the script host calls on each engine it builds (start-up and every reload).
pub fn registrar(cfg: &Config) -> Arc<dyn Fn(&mut Engine) + Send + Sync> {
    let maxfwd = cfg.maxfwd.clone();
    let rr = cfg.rr.clone();
    Arc::new(move |engine: &mut Engine| {
        maxfwd::script::register(engine, &maxfwd);
        rr::script::register(engine, &rr);
        sl::script::register(engine);
        tm::script::register(engine);
    })
}
