//! A dialog as a row of OpenSIPS's `dialog` table: what a store writes and what a node
//! reads back at start (spec §10 `db_mode`).
//!
//! `vars` and `profiles` are JSON arrays of `[name, value]` pairs (OpenSIPS packs them in
//! a format of its own; the other columns keep its names and meaning). `timeout` is the
//! Unix time of expiry, as in OpenSIPS; `flags` holds the `create_dialog` flags.

use super::{Dialog, DlgData, DlgState};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialogRecord {
    pub dlg_id: i64,
    pub callid: String,
    pub from_uri: String,
    pub from_tag: String,
    pub to_uri: String,
    pub to_tag: String,
    pub caller_cseq: String,
    pub callee_cseq: String,
    pub caller_route_set: String,
    pub callee_route_set: String,
    pub caller_contact: String,
    pub callee_contact: String,
    pub caller_sock: String,
    pub callee_sock: String,
    pub state: i64,
    pub start_time: i64,
    pub timeout: i64,
    pub vars: String,
    pub profiles: String,
    pub script_flags: i64,
    pub module_flags: i64,
    pub flags: i64,
}

fn pairs_to_json(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".into())
}

fn pairs_from_json(s: &str) -> Vec<(String, String)> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(s).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "dialog row: unreadable vars/profiles column ignored");
        Vec::new()
    })
}

impl DialogRecord {
    /// The row of `dlg` as it stands.
    pub fn of(dlg: &Dialog) -> DialogRecord {
        let d = dlg.data();
        DialogRecord {
            dlg_id: dlg.id as i64,
            callid: dlg.callid.clone(),
            from_uri: dlg.from_uri.clone(),
            from_tag: dlg.from_tag.clone(),
            to_uri: dlg.to_uri.clone(),
            to_tag: d.to_tag.clone(),
            caller_cseq: d.caller_cseq.to_string(),
            callee_cseq: d.callee_cseq.to_string(),
            caller_route_set: d.caller_route_set.clone(),
            callee_route_set: d.callee_route_set.clone(),
            caller_contact: d.caller_contact.clone(),
            callee_contact: d.callee_contact.clone(),
            caller_sock: d.caller_sock.clone(),
            callee_sock: d.callee_sock.clone(),
            state: d.state as i64,
            start_time: d.start_time,
            timeout: d.deadline,
            vars: pairs_to_json(&d.vars),
            profiles: pairs_to_json(&d.profiles),
            script_flags: d.script_flags as i64,
            module_flags: 0,
            flags: i64::from(d.flags),
        }
    }

    /// The dialog this row describes. The lifetime is what remained at the time of the row.
    pub fn to_dialog(&self) -> Dialog {
        let data = DlgData {
            state: DlgState::from_db(self.state),
            to_tag: self.to_tag.clone(),
            caller_cseq: self.caller_cseq.trim().parse().unwrap_or(0),
            callee_cseq: self.callee_cseq.trim().parse().unwrap_or(0),
            caller_route_set: self.caller_route_set.clone(),
            callee_route_set: self.callee_route_set.clone(),
            caller_contact: self.caller_contact.clone(),
            callee_contact: self.callee_contact.clone(),
            caller_sock: self.caller_sock.clone(),
            callee_sock: self.callee_sock.clone(),
            start_time: self.start_time,
            lifetime: (self.timeout - self.start_time).clamp(0, i64::from(u32::MAX)) as u32,
            deadline: self.timeout,
            vars: pairs_from_json(&self.vars),
            profiles: pairs_from_json(&self.profiles),
            script_flags: self.script_flags as u64,
            flags: self.flags as u32,
            end_reason: None,
        };
        Dialog::new(
            self.dlg_id as u64,
            self.callid.clone(),
            self.from_uri.clone(),
            self.from_tag.clone(),
            self.to_uri.clone(),
            data,
        )
    }
}
