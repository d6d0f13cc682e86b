//! tm: the script face of the transaction layer (spec §4). The work is done by
//! `crate::transaction` through the proxy's [`crate::script::api::CoreOps`].
//!
//! Parameters (`[tm]`): `T1_timer`, `T2_timer`, `T4_timer` (ms), `fr_timeout`,
//! `fr_inv_timeout`, `wt_timer` (s), `auto_100trying`, `restart_fr_on_each_reply`,
//! `disable_6xx_block`.
//!
//! Script functions: `t_relay([flags[, outbound_proxy]])`, `t_newtran()`, `t_check_trans()`,
//! `t_reply(code, reason)`, `t_on_failure(name)`, `t_on_reply(name)`, `t_on_branch(name)`,
//! `t_check_status(re)`, `t_was_cancelled()`, `forward([dest])`.

pub mod script;
