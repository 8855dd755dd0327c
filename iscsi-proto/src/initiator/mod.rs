//! The initiator side of the protocol: the session state machine and the
//! pieces it is built from.

pub mod tasks;
pub mod window;

pub use tasks::TaskTable;
pub use window::{CmdWindow, WindowUpdate};
