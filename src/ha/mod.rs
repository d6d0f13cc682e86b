//! High availability (design.md §5): which node of an active/standby pair holds the
//! virtual IP. docs/ha.md is the operator's guide.
//!
//! ```text
//! paths (UDP, one per link) ─ heartbeat::decode + ReplayGuard ─▶ Election::heard ─┐
//! clock ─ keepalive / next_deadline ─▶ Election::tick ─────────────────────────────┤
//! fence command, health check, ha_takeover/ha_release, shutdown ─▶ Election::… ─────┤
//!                                         Action::{Acquire, Release, Fence, …} ◀──┘
//!   Acquire: reload shared state (usrloc, dialogs) → vip::add → vip::announce
//!   Release: vip::remove
//! ```
//! The SIP sockets are bound to the VIP from the start (IP_FREEBIND, transport/), so a
//! takeover only moves the address: nothing restarts.

pub mod election;
pub mod fence;
pub mod health;
pub mod heartbeat;
pub mod node;
pub mod path;
pub mod vip;

pub use election::Role;
pub use node::{Ha, HaError, HaStats, Hook, PeerStatus, Status};
