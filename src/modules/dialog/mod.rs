//! dialog: the script's and the operator's side of dialog tracking (spec §10,
//! docs/dialog.md). The table itself, its matching and its state machine are the `dialog`
//! room ([`crate::dialog`]); this module binds it to the script, to the management
//! interface, and (store.rs) to the `dialog` table of the database.
//!
//! Parameters (`[dialog]`): `default_timeout`, `dlg_match_mode`, `db_mode`,
//! `db_update_period`, `table_name`, `profiles_with_value`, `profiles_no_value`.
//!
//! Script functions: `create_dialog([flags])`, `match_dialog()`, `set_dlg_profile(p[, v])`,
//! `unset_dlg_profile(p[, v])`, `is_in_profile(p[, v])`, `get_profile_size(p[, v])`,
//! `store_dlg_value(n, v)`, `fetch_dlg_value(n)`; variables `$DLG_status`, `$DLG_count`,
//! `$DLG_lifetime`, `$DLG_timeout`, `$DLG_did`, `$dlg_val(name)`.
//!
//! MI: `dlg_list [callid [from_tag]]`, `dlg_end_dlg dialog_id`, `profile_get_size profile
//! [value]`, `profile_list_dlgs profile [value]`, `list_all_profiles`, `dlg_db_sync`,
//! `dlg_restore_db` (persist.rs writes the table behind memory as `db_mode` says).

pub mod mi;
pub mod persist;
pub mod script;
pub mod store;

use crate::config::DialogConfig;
use crate::dialog::{flags, Dialog, DialogParams, Dialogs, MatchMode};
use crate::message::Method;
use crate::script::api::Ctx;
use std::sync::Arc;
use std::time::Duration;

/// The dialog table built from `[dialog]`, its profiles declared.
pub fn table(cfg: &DialogConfig) -> Arc<Dialogs> {
    let dialogs = Dialogs::new(DialogParams {
        default_timeout: cfg.default_timeout,
        match_mode: MatchMode::from_number(cfg.dlg_match_mode),
        sweep_every: Duration::from_secs(1),
    });
    for p in &cfg.profiles_with_value {
        dialogs.profiles.declare(p, true);
    }
    for p in &cfg.profiles_no_value {
        dialogs.profiles.declare(p, false);
    }
    dialogs
}

/// Why a dialog could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CreateError {
    #[error("create_dialog: only an initial INVITE starts a dialog")]
    NotInitialInvite,
    #[error("create_dialog: unknown flag {0:?}")]
    BadFlag(char),
}

/// `create_dialog(flags)` on the message of `ctx` (also what `lb_start` does first): the
/// dialog of the message when it has one, else a new one, whose `did` goes into our
/// Record-Route (spec §10: `record_route()` must be called too).
pub fn create_for(dialogs: &Dialogs, ctx: &mut Ctx, flag_text: &str) -> Result<Arc<Dialog>, CreateError> {
    let f = flags::parse(flag_text).map_err(CreateError::BadFlag)?;
    if let Some(d) = &ctx.dlg {
        if !d.is_ended() {
            return Ok(d.clone());
        }
    }
    if ctx.msg.method() != Method::Invite || ctx.msg.has_to_tag() || !ctx.kind.is_request() {
        return Err(CreateError::NotInitialInvite);
    }
    let sock = format!("{}:{}", ctx.proto, ctx.local);
    let dlg = dialogs.create(&ctx.msg, sock, f);
    let did = format!(";did={}", dlg.did());
    match ctx.rr.as_mut() {
        Some(rr) => rr.params.push_str(&did),
        None => ctx.rr_params.push_str(&did),
    }
    ctx.dlg = Some(dlg.clone());
    Ok(dlg)
}

/// Matches the in-dialog request of `ctx` to its dialog (after `loose_route` found our
/// Route parameters) and moves the dialog on (ACK confirms, BYE ends). Returns it.
pub fn match_request(dialogs: &Dialogs, ctx: &mut Ctx) -> Option<Arc<Dialog>> {
    if !ctx.msg.has_to_tag() || !ctx.msg.is_request() {
        return None;
    }
    if let Some(d) = &ctx.dlg {
        return Some(d.clone());
    }
    let dlg = dialogs.match_request(&ctx.msg, &ctx.route_params)?;
    dialogs.on_request(&dlg, &ctx.msg);
    ctx.dlg = Some(dlg.clone());
    Some(dlg)
}
