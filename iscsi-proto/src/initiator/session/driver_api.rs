//! What a driver needs of the session beyond the sans-IO calls.

use super::Session;
use crate::time::Instant;

impl Session {
    /// The latest `now` the session was given (its clock only moves
    /// forward): the instant for a call a driver makes from an event
    /// handler that has no fresh `now` of its own (e.g. opening the
    /// connections MaxConnections allows once `Event::LoggedIn` came).
    pub fn last_now(&self) -> Instant {
        self.clock
    }
}
