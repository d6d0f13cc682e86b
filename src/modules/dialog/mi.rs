//! MI commands of dialog.

use super::persist::DialogStore;
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::json;
use std::sync::Arc;

/// Registers the commands that move dialogs between memory and the `dialog` table:
/// `dlg_db_sync` (the table := the confirmed dialogs in memory) and `dlg_restore_db`
/// (dialogs of the table not in memory are loaded). They work in every `db_mode`: with 0
/// they are the only way the table is written or read.
pub fn install_db(mi: &Arc<Mi>, store: DialogStore) {
    let s = store.clone();
    mi.commands.register(Command::new("dlg_db_sync", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.sync().await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("dlg_db_sync: the {} table was not written: {e}", s.table()))),
            }
        }
    }));
    let s = store;
    mi.commands.register(Command::new("dlg_restore_db", &[&[]], move |_p: Params| {
        let s = s.clone();
        async move {
            match s.restore().await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("dlg_restore_db: the {} table was not read: {e}", s.table()))),
            }
        }
    }));
}
