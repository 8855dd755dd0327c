//! The portal's deadline index: [`Portal::poll_timeout`](super::Portal::poll_timeout)
//! in O(log n + d) and [`Portal::handle_timeout`](super::Portal::handle_timeout)
//! touching only the sessions that are due, instead of walking every
//! session (issue 17 item 6: one portal holding thousands of sessions).
//!
//! Every mutable access to a session goes through
//! [`Portal::sess_mut`](super::Portal) (or marks its slot otherwise), which
//! marks the slot *dirty*: its cached deadline may be stale. The index
//! holds the deadlines of the clean slots; [`Deadlines::earliest`] combines
//! the first clean entry with the live deadlines of the (few) dirty slots,
//! so the answer is always the minimum over every session's
//! `Session::poll_timeout`, and [`Deadlines::settle`] re-indexes the dirty
//! slots at the start of the portal's next input.

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::BTreeSet;

use crate::target::Session;

/// Deadlines of the session slots, ordered.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// `(deadline, slot)` of every clean slot with a deadline.
    index: BTreeSet<(Instant, usize)>,
    /// The deadline each slot has in `index` (by slot).
    indexed: Vec<Option<Instant>>,
    /// Slots whose session may have changed since they were indexed.
    dirty: Vec<usize>,
    /// `is_dirty[slot]`: the slot is in `dirty`.
    is_dirty: Vec<bool>,
}

impl Deadlines {
    /// The session in `slot` may have changed (or appeared, or gone).
    pub(super) fn mark(&mut self, slot: usize) {
        if self.is_dirty.len() <= slot {
            self.is_dirty.resize(slot + 1, false);
        }
        if let Some(d) = self.is_dirty.get_mut(slot) {
            if !*d {
                *d = true;
                self.dirty.push(slot);
            }
        }
    }

    fn dirty(&self, slot: usize) -> bool {
        self.is_dirty.get(slot).copied().unwrap_or(false)
    }

    /// Re-indexes the dirty slots from their sessions' cached deadlines
    /// (`Session::poll_timeout` is O(1)): O(d log n).
    pub(super) fn settle(&mut self, sessions: &[Option<Session>]) {
        for slot in core::mem::take(&mut self.dirty) {
            if let Some(d) = self.is_dirty.get_mut(slot) {
                *d = false;
            }
            let now = sessions
                .get(slot)
                .and_then(Option::as_ref)
                .and_then(Session::poll_timeout);
            if self.indexed.len() <= slot {
                self.indexed.resize(slot + 1, None);
            }
            let Some(entry) = self.indexed.get_mut(slot) else {
                continue;
            };
            if *entry == now {
                continue;
            }
            if let Some(old) = entry.take() {
                self.index.remove(&(old, slot));
            }
            if let Some(t) = now {
                self.index.insert((t, slot));
                *entry = Some(t);
            }
        }
    }

    /// The earliest deadline of every session: the first clean entry of
    /// the index (dirty slots' stale entries skipped) and the live
    /// deadlines of the dirty slots.
    pub(super) fn earliest(&self, sessions: &[Option<Session>]) -> Option<Instant> {
        let clean = self
            .index
            .iter()
            .find(|(_, slot)| !self.dirty(*slot))
            .map(|(t, _)| *t);
        self.dirty
            .iter()
            .filter_map(|&slot| {
                sessions
                    .get(slot)
                    .and_then(Option::as_ref)
                    .and_then(Session::poll_timeout)
            })
            .chain(clean)
            .min()
    }

    /// The slots whose deadline is at or before `now`, in slot order
    /// (call [`settle`](Self::settle) first).
    pub(super) fn due(&self, now: Instant) -> Vec<usize> {
        let mut due: Vec<usize> = self
            .index
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, slot)| *slot)
            .collect();
        due.sort_unstable();
        due
    }
}
