//! The initiator side of the protocol: the session state machine and the
//! pieces it is built from.
//!
//! - [`session`]: [`Session`], the sans-IO state machine (see its module
//!   documentation for the drain order and an example loop).
//! - [`types`]: configuration, commands, events and outcomes.
//! - [`window`]: the CmdSN window; [`tasks`]: the task-tag slab.
//! - [`driver_support`]: request/reply pieces shared by the drivers;
//!   [`coalesce`]: receive coalescing (fewer wakeups per I/O).

pub mod coalesce;
pub mod driver_support;
pub mod session;
pub mod tasks;
pub mod types;
pub mod window;

pub use coalesce::{Coalesce, LowWater};
pub use driver_support::{open_session, Action, Completed, ReadData, RecvBuffer, TxQueue};
pub use session::{Session, SessionState};
pub use tasks::TaskTable;
pub use types::{
    AsyncNotice, Auth, Event, ExpectedInput, Keepalive, LogoutMode, LogoutResult, NetworkPortal,
    Recovery, Reissue, ScsiCommand, ScsiResult, SessionConfig, TargetRecord, TaskId, TaskOutcome,
    DEFAULT_PORT,
};
pub use window::{CmdWindow, WindowUpdate};
