//! dispatcher: destination sets loaded from the `dispatcher` table, selected by
//! `ds_select_dst` and friends with OpenSIPS 3.x semantics (spec §6), probed with OPTIONS.
//!
//! (Being built: issue 4. This file fixes the shapes other parts depend on.)

pub mod store;

/// One row of the `dispatcher` table, as OpenSIPS defines it (spec §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsRow {
    pub id: i64,
    pub setid: i64,
    /// A SIP URI.
    pub destination: String,
    /// Local socket to send from (`proto:ip:port`), when set.
    pub socket: Option<String>,
    /// 0 active, 1 inactive, 2 probing.
    pub state: i64,
    /// 0 probe only when probing, 1 always probe.
    pub probe_mode: i64,
    /// An integer as text (default "1").
    pub weight: String,
    pub priority: i64,
    pub attrs: Option<String>,
    pub description: Option<String>,
}
