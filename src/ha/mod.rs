//! High availability (design.md §5): which node of an active/standby pair holds the
//! virtual IP. docs/ha.md is the operator's guide.

pub mod health;
pub mod vip;
