//! Feature modules in OpenSIPS's anatomy: each folder has `mod.rs` (its parameters, script
//! functions and MI commands), its pure logic, and `script.rs` (the Rhai bindings).
//! A module never reaches into the proxy: what needs the network goes through
//! [`crate::script::api::CoreOps`].
//!
//! [`Modules`] holds the modules that keep state (the dispatcher's sets), built once from
//! the configuration; its [`Modules::registrar`] registers every module's script functions
//! on each engine the script host builds (start-up and every reload), all bound to that
//! same state.

pub mod auth;
pub mod dialog;
pub mod dispatcher;
pub mod load_balancer;
pub mod maxfwd;
pub mod nathelper;
pub mod registrar;
pub mod rr;
pub mod sl;
pub mod tm;
pub mod usrloc;

use crate::config::{Config, MaxfwdConfig, NathelperConfig, RrConfig};
use rhai::Engine;
use std::sync::Arc;

/// What the script host calls on each engine it builds.
pub type Registrar = Arc<dyn Fn(&mut Engine) + Send + Sync>;

/// The modules of one proxy, configured from its `Config`.
#[derive(Clone)]
pub struct Modules {
    /// Destination sets, empty until loaded (`Dispatcher::replace`, `ds_reload`).
    pub dispatcher: Arc<dispatcher::Dispatcher>,
    /// Every dialog this node tracks (created by `create_dialog`, restored from the table).
    pub dialogs: Arc<crate::dialog::Dialogs>,
    /// Load-balancing destinations, empty until loaded (`LoadBalancer::replace`,
    /// `lb_reload`); their load is counted in `dialogs`' profiles.
    pub load_balancer: Arc<load_balancer::LoadBalancer>,
    /// Registered contacts (`save`/`lookup`), kept as `[usrloc] working_mode_preset` says.
    pub usrloc: Arc<usrloc::Usrloc>,
    /// `save`/`lookup` over `usrloc`.
    pub registrar: Arc<registrar::Registrar>,
    /// Subscribers and nonces of auth / auth_db, the subscribers empty until loaded
    /// (`Auth::replace`, `auth_reload`).
    pub auth: Arc<auth::Auth>,
    maxfwd: MaxfwdConfig,
    rr: RrConfig,
    nathelper: NathelperConfig,
}

impl Modules {
    pub fn new(cfg: &Config) -> Modules {
        let dialogs = dialog::table(&cfg.dialog);
        let usrloc = Arc::new(usrloc::Usrloc::new(&cfg.usrloc));
        Modules {
            dispatcher: Arc::new(dispatcher::Dispatcher::new(&cfg.dispatcher)),
            load_balancer: Arc::new(load_balancer::LoadBalancer::new(&cfg.load_balancer, dialogs.clone())),
            dialogs,
            usrloc: usrloc.clone(),
            registrar: Arc::new(registrar::Registrar::new(&cfg.registrar, usrloc)),
            auth: Arc::new(auth::Auth::new(&cfg.auth)),
            maxfwd: cfg.maxfwd.clone(),
            rr: cfg.rr.clone(),
            nathelper: cfg.nathelper.clone(),
        }
    }

    /// Every module's script functions as one registration function.
    pub fn registrar(&self) -> Registrar {
        let m = self.clone();
        Arc::new(move |engine: &mut Engine| {
            maxfwd::script::register(engine, &m.maxfwd);
            rr::script::register(engine, &m.rr, &m.dialogs);
            dialog::script::register(engine, &m.dialogs);
            sl::script::register(engine);
            tm::script::register(engine);
            dispatcher::script::register(engine, &m.dispatcher);
            load_balancer::script::register(engine, &m.load_balancer, &m.dialogs);
            registrar::script::register(engine, &m.registrar);
            nathelper::script::register(engine, &m.nathelper);
            auth::script::register(engine, &m.auth);
        })
    }
}
