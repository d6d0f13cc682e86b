//! sl and signaling: replies without (or with) a transaction.
//!
//! Script functions:
//! - `sl_send_reply(code, reason)` → 1 sent, -1 failed; never replies to ACK.
//! - `sl_reply_error()` → replies with the last internal error (default 500).
//! - `send_reply(code, reason)` → statefully when a transaction exists, else statelessly.
//! - `append_to_reply(txt)` → adds header lines to the replies the script sends.

pub mod script;
