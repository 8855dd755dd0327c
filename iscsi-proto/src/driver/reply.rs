//! How a task ended, as every driver hands it to the application: the
//! core's [`TaskOutcome`] with the task's read data, or the [`Error`] that
//! ended the session first; and the conversions of a reply to the result
//! of each kind of task.

use crate::prelude::*;
use bytes::Bytes;

use super::Error;
use crate::initiator::{Completed, LogoutResult, TargetRecord, TaskOutcome};
use crate::wire::pdu::TmfResponse;

/// How a task ended: its outcome and its read data (empty but for reads).
pub type Reply = Result<(TaskOutcome, Bytes), Error>;

fn unexpected(outcome: TaskOutcome) -> Error {
    match outcome {
        TaskOutcome::Failed(e) => Error::Task(e),
        other => Error::Unexpected(format!("{other:?}")),
    }
}

/// A SCSI command's reply: its status and data (any status).
pub fn scsi(reply: Reply) -> Result<Completed, Error> {
    match reply? {
        (TaskOutcome::Scsi(result), data) => Ok(Completed { result, data }),
        (other, _) => Err(unexpected(other)),
    }
}

/// A task management function's reply.
pub fn task_management(reply: Reply) -> Result<TmfResponse, Error> {
    match reply? {
        (TaskOutcome::TaskManagement(r), _) => Ok(r),
        (other, _) => Err(unexpected(other)),
    }
}

/// A NOP-Out ping's reply: the echoed data.
pub fn pong(reply: Reply) -> Result<Bytes, Error> {
    match reply? {
        (TaskOutcome::Pong(d), _) => Ok(d),
        (other, _) => Err(unexpected(other)),
    }
}

/// A SendTargets reply.
pub fn targets(reply: Reply) -> Result<Vec<TargetRecord>, Error> {
    match reply? {
        (TaskOutcome::Targets(t), _) => Ok(t),
        (other, _) => Err(unexpected(other)),
    }
}

/// A logout's reply.
pub fn logged_out(reply: Reply) -> Result<LogoutResult, Error> {
    match reply? {
        (TaskOutcome::LoggedOut(r), _) => Ok(r),
        (other, _) => Err(unexpected(other)),
    }
}

/// A READ or WRITE helper's command: an error unless the status is GOOD.
pub fn good(done: Completed) -> Result<Completed, Error> {
    if done.result.is_good() {
        Ok(done)
    } else {
        Err(Error::Status(Box::new(done.result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TaskError;

    #[test]
    fn failed_outcomes_become_task_errors_and_others_unexpected() {
        let r: Reply = Ok((TaskOutcome::Failed(TaskError::OutcomeUnknown), Bytes::new()));
        assert!(matches!(
            scsi(r),
            Err(Error::Task(TaskError::OutcomeUnknown))
        ));
        let r: Reply = Ok((TaskOutcome::Pong(Bytes::from_static(b"x")), Bytes::new()));
        assert_eq!(&pong(r).unwrap()[..], b"x");
        let r: Reply = Ok((TaskOutcome::Negotiated, Bytes::new()));
        assert!(matches!(targets(r), Err(Error::Unexpected(_))));
        let r: Reply = Err(Error::Closed(None));
        assert!(matches!(logged_out(r), Err(Error::Closed(None))));
    }
}
