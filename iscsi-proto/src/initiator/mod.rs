//! The initiator side of the protocol: the session state machine and the
//! pieces it is built from.
//!
//! - [`session`]: [`Session`], the sans-IO state machine (see its
//!   documentation for the A-D method groups and the drain order, and the
//!   module documentation for an example loop). It holds what RFC 7143
//!   keeps per session.
//! - [`connection`]: [`Connection`], what is kept per connection (CID,
//!   StatSN, login, digests, MaxRecvDataSegmentLength, transmit queues,
//!   keepalive).
//! - [`types`]: configuration, commands, events and outcomes.
//! - [`window`]: the CmdSN window; [`stat_sn`]: ExpStatSN tracking;
//!   [`timer`]: the session's deadlines; [`tasks`]: the task-tag slab.
//! - [`driver_support`]: request/reply pieces shared by the drivers;
//!   [`coalesce`]: receive coalescing (fewer wakeups per I/O).

pub mod coalesce;
pub mod connection;
pub mod driver_support;
pub mod session;
pub mod stat_sn;
pub mod tasks;
pub mod timer;
pub mod types;
pub mod window;

pub use coalesce::{Coalesce, LowWater};
pub use connection::Connection;
pub use driver_support::{open_session, Action, Completed, ReadData, RecvBuffer, TxQueue};
pub use session::{Session, SessionState};
pub use stat_sn::{StatSnAck, StatSnTracker, STAT_SN_AHEAD};
pub use tasks::TaskTable;
pub use timer::{Timer, TimerTable};
pub use types::{
    AsyncNotice, Auth, ErrorRecovery, Event, ExpectedInput, Keepalive, LogoutMode, LogoutResult,
    NetworkPortal, Recovery, Reissue, ScsiCommand, ScsiResult, SessionConfig, Spread, TargetRecord,
    TaskId, TaskOutcome, DEFAULT_MAX_OUTSTANDING_R2T, DEFAULT_PORT, MAX_FAILOVER_PORTALS,
};
pub use window::{CmdWindow, WindowUpdate};
