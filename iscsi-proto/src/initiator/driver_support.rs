//! Pieces every driver needs to offer request/reply calls on top of the
//! session's event stream, with no I/O: one [`Action`] type with its
//! dispatch onto the [`Session`], the [`Completed`] result of a SCSI
//! command, and [`ReadData`], which gathers a task's `Event::DataIn` slices.

use std::time::Instant;

use bytes::Bytes;

use super::session::Session;
use super::types::{LogoutMode, ScsiCommand, ScsiResult, TaskId};
use crate::error::UsageError;
use crate::wire::pdu::TmfFunction;

/// Work a driver can start on a session (a request from its API).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Action {
    /// A SCSI command.
    Scsi(ScsiCommand),
    /// A task management function on a LUN.
    TaskManagement {
        /// The LUN field (wire encoding).
        lun: u64,
        /// The function.
        function: TmfFunction,
    },
    /// ABORT TASK for a task of this session.
    Abort(TaskId),
    /// A NOP-Out ping with this data.
    Ping(Bytes),
    /// SendTargets=All (discovery sessions).
    SendTargets,
    /// Logout.
    Logout(LogoutMode),
}

impl Session {
    /// Starts an [`Action`] with the matching app call (`submit`,
    /// `task_management`, `abort_task`, `nop_ping`, `send_targets`,
    /// `logout`).
    pub fn start(&mut self, now: Instant, action: Action) -> Result<TaskId, UsageError> {
        match action {
            Action::Scsi(cmd) => self.submit(now, cmd),
            Action::TaskManagement { lun, function } => self.task_management(now, lun, function),
            Action::Abort(task) => self.abort_task(now, task),
            Action::Ping(data) => self.nop_ping(now, data),
            Action::SendTargets => self.send_targets(now),
            Action::Logout(mode) => self.logout(now, mode),
        }
    }
}

/// A completed SCSI command with its read data.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Status, sense and residuals.
    pub result: ScsiResult,
    /// The bytes read (empty for writes).
    pub data: Bytes,
}

/// A task's read data as it arrives: the `(offset, bytes)` slices of its
/// `Event::DataIn`s. The first slice is kept inline, so a read whose data
/// comes in one Data-In (every read up to the negotiated
/// MaxRecvDataSegmentLength) costs no allocation.
#[derive(Debug, Default, Clone)]
pub struct ReadData {
    first: Option<(u32, Bytes)>,
    rest: Vec<(u32, Bytes)>,
}

impl ReadData {
    /// Records one `Event::DataIn`.
    pub fn push(&mut self, offset: u32, data: Bytes) {
        if self.first.is_none() {
            self.first = Some((offset, data));
        } else {
            self.rest.push((offset, data));
        }
    }

    /// Bytes recorded so far (repeats after a recovery count again).
    pub fn len(&self) -> usize {
        self.parts().map(|(_, b)| b.len()).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn parts(&self) -> impl Iterator<Item = &(u32, Bytes)> {
        self.first.iter().chain(self.rest.iter())
    }

    /// The data as one buffer: the received slice itself (no copy) when
    /// it came in one piece at offset 0, else a buffer assembled by offset.
    /// After a session recovery a reissued read delivers its data again
    /// from offset 0, which simply overwrites the same range.
    pub fn into_bytes(self) -> Bytes {
        if self.rest.is_empty() {
            match self.first {
                Some((0, b)) => return b,
                None => return Bytes::new(),
                Some(_) => {}
            }
        }
        let len = self
            .parts()
            .map(|(o, b)| *o as usize + b.len())
            .max()
            .unwrap_or(0);
        let mut out = vec![0u8; len];
        for (o, b) in self.parts() {
            if let Some(dst) = out.get_mut(*o as usize..*o as usize + b.len()) {
                dst.copy_from_slice(b);
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_part_at_zero_is_not_copied() {
        let data = Bytes::from(vec![7u8; 100]);
        let mut r = ReadData::default();
        r.push(0, data.clone());
        let out = r.into_bytes();
        assert_eq!(out.as_ptr(), data.as_ptr());
    }

    #[test]
    fn parts_out_of_order_and_repeated_are_assembled_by_offset() {
        let mut r = ReadData::default();
        r.push(4, Bytes::from_static(b"efgh"));
        r.push(0, Bytes::from_static(b"abcd"));
        r.push(0, Bytes::from_static(b"ABCD"));
        assert_eq!(&r.into_bytes()[..], b"ABCDefgh");
        assert!(ReadData::default().into_bytes().is_empty());
        let mut r = ReadData::default();
        r.push(2, Bytes::from_static(b"cd"));
        assert_eq!(r.len(), 2);
        assert_eq!(&r.into_bytes()[..], b"\0\0cd");
    }
}
