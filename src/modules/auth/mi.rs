//! The auth module's MI command: `auth_reload` (siprox's own; OpenSIPS reads the subscriber
//! table on every request and so has none).

use super::{Auth, SubscriberLoader};
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::json;
use std::sync::Arc;

/// Registers `auth_reload` into `mi`: reads every table of `[auth] tables` with `loader` and
/// swaps them in; a failed load keeps the subscribers in use and answers an error.
pub fn install(mi: &Arc<Mi>, auth: Arc<Auth>, loader: SubscriberLoader) {
    mi.commands.register(Command::new("auth_reload", &[&[]], move |_p: Params| {
        let (auth, loader) = (auth.clone(), loader.clone());
        async move {
            match auth.reload(&loader).await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => {
                    Err(MiError::internal(format!("auth_reload failed, the loaded subscribers stay in use: {e}")))
                }
            }
        }
    }));
}
