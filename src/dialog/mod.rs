//! Dialogs as a stateful proxy tracks them (RFC 3261 §12; spec §10): identity, state from
//! the INVITE's replies and the in-dialog requests, lifetime, values and profiles.
//!
//! Owns: the dialog table ([`Dialogs`]), matching an in-dialog request to its dialog (the
//! `did` parameter of our Route entry, else Call-ID and tags), the state machine, the
//! lifetime sweep, profile counting, and the stream of [`Change`]s a store writes behind
//! (OpenSIPS `db_mode`). Does not own: SQL (modules/dialog/store.rs), sending BYEs (the
//! proxy, through [`DialogActions`]), the script.

mod profile;
mod record;
mod table;

pub use profile::Profiles;
pub use record::DialogRecord;
pub use table::{Change, DialogActions, DialogParams, DialogStats, Dialogs, MatchMode, Side};

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Dialog states as `$DLG_status` numbers them (spec §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DlgState {
    /// Created, no reply yet.
    Unconfirmed = 1,
    /// A provisional reply came.
    Early = 2,
    /// A 2xx came, its ACK not yet.
    ConfirmedNoAck = 3,
    Confirmed = 4,
    /// Ended (BYE, failure, timeout, MI).
    Deleted = 5,
}

impl DlgState {
    pub fn from_db(n: i64) -> DlgState {
        match n {
            1 => DlgState::Unconfirmed,
            2 => DlgState::Early,
            3 => DlgState::ConfirmedNoAck,
            4 => DlgState::Confirmed,
            _ => DlgState::Deleted,
        }
    }
    pub fn is_confirmed(self) -> bool {
        matches!(self, DlgState::ConfirmedNoAck | DlgState::Confirmed)
    }
}

/// `create_dialog` flags (spec §10).
pub mod flags {
    /// `B`: at lifetime expiry, BYE both sides.
    pub const BYE_ON_TIMEOUT: u32 = 1 << 0;
    /// `P` / `p`: OPTIONS-ping caller / callee (parsed, not acted on yet).
    pub const PING_CALLER: u32 = 1 << 1;
    pub const PING_CALLEE: u32 = 1 << 2;
    /// `R` / `r`: re-INVITE ping (parsed, not acted on yet).
    pub const REINVITE_CALLER: u32 = 1 << 3;
    pub const REINVITE_CALLEE: u32 = 1 << 4;
    /// `E`: end on a SIP race.
    pub const END_ON_RACE: u32 = 1 << 5;

    /// Parses `"B"`, `"Pp"`, …; unknown letters are reported.
    pub fn parse(s: &str) -> Result<u32, char> {
        let mut f = 0;
        for c in s.chars() {
            f |= match c {
                'B' => BYE_ON_TIMEOUT,
                'P' => PING_CALLER,
                'p' => PING_CALLEE,
                'R' => REINVITE_CALLER,
                'r' => REINVITE_CALLEE,
                'E' => END_ON_RACE,
                ' ' | ',' => 0,
                other => return Err(other),
            };
        }
        Ok(f)
    }

    pub fn format(f: u32) -> String {
        [
            (BYE_ON_TIMEOUT, 'B'),
            (PING_CALLER, 'P'),
            (PING_CALLEE, 'p'),
            (REINVITE_CALLER, 'R'),
            (REINVITE_CALLEE, 'r'),
            (END_ON_RACE, 'E'),
        ]
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// What changes over a dialog's life.
#[derive(Clone, Debug)]
pub struct DlgData {
    pub state: DlgState,
    pub to_tag: String,
    pub caller_cseq: u32,
    pub callee_cseq: u32,
    /// Route set towards the caller (the Record-Route entries below ours), `<uri>` values
    /// joined by commas, nearest first.
    pub caller_route_set: String,
    /// Route set towards the callee (the entries above ours in the 2xx), nearest first.
    pub callee_route_set: String,
    pub caller_contact: String,
    pub callee_contact: String,
    /// Our sockets, `proto:ip:port`: the one the INVITE came in on, the one it left on.
    pub caller_sock: String,
    pub callee_sock: String,
    /// Unix seconds of the 2xx (0 before).
    pub start_time: i64,
    /// Lifetime in seconds, counted from the 2xx (`$DLG_timeout`, `default_timeout`).
    pub lifetime: u32,
    /// Unix seconds at which the dialog expires (0 before the 2xx).
    pub deadline: i64,
    /// `$dlg_val(name)`.
    pub vars: Vec<(String, String)>,
    /// Profile memberships: (profile, value; "" for a profile without value).
    pub profiles: Vec<(String, String)>,
    pub script_flags: u64,
    /// `create_dialog` flags ([`flags`]).
    pub flags: u32,
    /// Why it ended ("bye", "timeout", "failed", "mi"), once it did.
    pub end_reason: Option<&'static str>,
}

/// One dialog. The identity is fixed at creation; the rest is behind a mutex held only
/// for the few field updates a message makes.
pub struct Dialog {
    /// `dlg_id`: random, so that two nodes sharing a table never collide; printed in hex
    /// as the `did` Record-Route parameter.
    pub id: u64,
    pub callid: String,
    pub from_uri: String,
    pub from_tag: String,
    pub to_uri: String,
    data: Mutex<DlgData>,
    /// What modules attach to a dialog for its life in this process (the load balancer's
    /// session); not persisted.
    ext: Mutex<HashMap<&'static str, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Dialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialog").field("id", &self.did()).field("callid", &self.callid).finish_non_exhaustive()
    }
}

impl Dialog {
    pub(crate) fn new(
        id: u64,
        callid: String,
        from_uri: String,
        from_tag: String,
        to_uri: String,
        data: DlgData,
    ) -> Dialog {
        Dialog { id, callid, from_uri, from_tag, to_uri, data: Mutex::new(data), ext: Mutex::new(HashMap::new()) }
    }

    /// The `did` as it goes in our Record-Route.
    pub fn did(&self) -> String {
        format!("{:x}", self.id)
    }

    /// The changing part, locked.
    pub fn data(&self) -> MutexGuard<'_, DlgData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> DlgState {
        self.data().state
    }

    pub fn is_ended(&self) -> bool {
        self.state() == DlgState::Deleted
    }

    /// A module's attachment (`key` names the module).
    pub fn ext<T: Any + Send + Sync>(&self, key: &'static str) -> Option<Arc<T>> {
        let map = self.ext.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned().and_then(|a| a.downcast::<T>().ok())
    }

    pub fn set_ext<T: Any + Send + Sync>(&self, key: &'static str, value: Option<Arc<T>>) {
        let mut map = self.ext.lock().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => {
                map.insert(key, v);
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// `$dlg_val(name)`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.data().vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// Seconds since the 2xx (`$DLG_lifetime`), 0 before it.
    pub fn age(&self, now: i64) -> i64 {
        let start = self.data().start_time;
        if start == 0 {
            0
        } else {
            (now - start).max(0)
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
