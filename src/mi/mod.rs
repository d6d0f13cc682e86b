//! The management interface: a command registry, statistics and Prometheus metrics, served
//! over HTTP (design.md §1 "Management interface wire format").
//!
//! ```text
//! POST /mi      JSON-RPC 2.0 ─ rpc::answer ─ Registry::call ─ Command handler (async)
//! GET /metrics  Prometheus text ─ every registered collector
//! ```
//!
//! Owns: the wire format (JSON-RPC envelope, error codes, `id` echoed byte for byte), the
//! normalisation of `params` (empty, positional, named; string values) onto a command's
//! parameter names, the statistics catalogue (`group:name` → a reader over lock-free
//! counters) and the HTTP server with its bearer token. Does not own: what a command does.
//! The core commands live in [`builtin`]; a module registers its own into the same
//! [`Registry`] (`mi.commands.register(Command::new("ds_list", &[&[], &["partition"]], h))`).

pub mod builtin;
pub mod db;
mod error;
pub mod ha;
pub mod metrics;
mod params;
mod registry;
pub mod rpc;
pub mod server;
pub mod stats;

pub use error::{MiError, ServerError};
pub use metrics::Metrics;
pub use params::Params;
pub use registry::{BoxFuture, Command, Handler, Registry};
pub use server::{bind, serve, Server};
pub use stats::Statistics;

/// Everything the management interface serves: commands, statistics, metric collectors.
/// Built once at start-up; modules add to it before the server starts (or later: every
/// table is behind a lock taken only by the management interface, never by SIP traffic).
#[derive(Default)]
pub struct Mi {
    pub commands: Registry,
    pub statistics: Statistics,
    pub metrics: Metrics,
}

impl Mi {
    pub fn new() -> Mi {
        Mi::default()
    }
}
