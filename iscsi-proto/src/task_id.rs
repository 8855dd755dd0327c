//! [`TaskId`]: one opaque handle for a task, in both roles.

use crate::prelude::*;
/// A task's handle, in both roles: what [`initiator::Session`](crate::initiator::Session)
/// returns for every command, TMF, text and logout request, and what
/// [`target::Session`](crate::target::Session) reports with each command.
///
/// Opaque: compare it, hash it, keep it as a map key. Its bit layout is the
/// core's business (drivers key their own tables with
/// [`TaskMap`], which the core provides, never by masking bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl TaskId {
    /// An initiator task: its Initiator Task Tag.
    pub(crate) const fn from_itt(itt: u32) -> TaskId {
        TaskId(itt as u64)
    }

    /// A target task: a per-session sequence number beside the ITT the
    /// initiator chose (so ITT reuse after the task ended gives a new id).
    pub(crate) const fn target(sequence: u32, itt: u32) -> TaskId {
        TaskId(((sequence as u64) << 32) | itt as u64)
    }

    /// The Initiator Task Tag of the task on the wire (RFC 7143 section
    /// 11.2.1.8), for logs and packet captures. Not unique over time: a
    /// tag is reused once its task has ended.
    pub const fn itt(self) -> u32 {
        self.0 as u32
    }

    /// A dense index for tables of initiator tasks in flight (the core's
    /// task slab keeps the index in the low 16 bits of the ITT).
    pub(crate) const fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

impl core::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.0 >> 32) as u32 {
            0 => write!(f, "TaskId(itt {:#x})", self.itt()),
            seq => write!(f, "TaskId({seq}, itt {:#x})", self.itt()),
        }
    }
}

impl core::fmt::Display for TaskId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#010x}", self.itt())
    }
}

/// A table of values keyed by initiator [`TaskId`]s in flight: constant
/// time, no hashing, grows to the number of task slots the session uses.
/// What drivers use to keep per-task state (read data, wakers, results).
#[derive(Debug, Clone)]
pub struct TaskMap<T> {
    slots: Vec<Option<(TaskId, T)>>,
    len: usize,
}

impl<T> Default for TaskMap<T> {
    fn default() -> Self {
        TaskMap::new()
    }
}

impl<T> TaskMap<T> {
    /// An empty map.
    pub const fn new() -> TaskMap<T> {
        TaskMap {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value` for `task`; returns the value another task held in
    /// the same slot (one that ended and was not removed), if any.
    pub fn insert(&mut self, task: TaskId, value: T) -> Option<(TaskId, T)> {
        let i = task.slot();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots.get_mut(i).and_then(|s| s.replace((task, value)));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value of `task`.
    pub fn get(&self, task: TaskId) -> Option<&T> {
        match self.slots.get(task.slot()) {
            Some(Some((t, v))) if *t == task => Some(v),
            _ => None,
        }
    }

    /// The value of `task`, mutably.
    pub fn get_mut(&mut self, task: TaskId) -> Option<&mut T> {
        match self.slots.get_mut(task.slot()) {
            Some(Some((t, v))) if *t == task => Some(v),
            _ => None,
        }
    }

    /// Removes and returns the value of `task`.
    pub fn remove(&mut self, task: TaskId) -> Option<T> {
        let slot = self.slots.get_mut(task.slot())?;
        match slot {
            Some((t, _)) if *t == task => {
                self.len -= 1;
                slot.take().map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// How many tasks have a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every entry, in slot order.
    pub fn drain(&mut self) -> impl Iterator<Item = (TaskId, T)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(Option::take)
    }
}
