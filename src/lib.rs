//! # siprox
//!
//! A SIP proxy whose routing logic is a Rhai script written like opensips.cfg.
//!
//! ## Layout (design.md §2): one folder per concern, imports point up this list only
//!
//! | room | owns |
//! |---|---|
//! | [`message`] | pure SIP: zero-copy index, typed headers on demand, byte-preserving edits |
//! | [`transport`] | UDP/TCP sockets, stream framing, connection reuse, advertised address |
//! | [`transaction`] | RFC 3261 §17 cells, timers, CANCEL, reply selection |
//! | [`script`] | the Rhai engine, pseudo-variables, hooks, the script↔core contract |
//! | [`modules`] | maxfwd, rr, sl, tm script surfaces (OpenSIPS module anatomy) |
//! | [`db`] | sqlx pools (SQLite, PostgreSQL, MySQL), embedded migrations, health, retries |
//! | [`proxy`] | the pipeline: hooks in, decisions carried out |
//! | [`ha`] | the virtual IP of an active/standby pair: election, heartbeats, takeover |
//! | [`mi`] | management interface: JSON-RPC commands, statistics, Prometheus metrics |
//! | [`app`], [`cli`] | wiring and the command line |
//!
//! Glossary: *cell* a proxy transaction (server side + branches); *branch* one forwarded
//! copy of a request; *lump* a deferred edit ([`message::Edits`]); *hook* a script route.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod dialog;
pub mod ha;
pub mod message;
pub mod mi;
pub mod modules;
pub mod proxy;
pub mod script;
pub mod transaction;
pub mod transport;
