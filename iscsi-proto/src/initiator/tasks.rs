//! Initiator Task Tag allocation: a slab whose tags are never 0xffffffff and
//! never reused while a task is in flight.
//!
//! RFC 7143 section 11.1 (Initiator Task Tag): "The initiator assigns a
//! task tag to each iSCSI task it issues. While a task exists, this tag MUST
//! uniquely identify the task session-wide." and 0xffffffff is reserved
//! (sections 11.18/11.19: NOP-Out/NOP-In without a task).
//!
//! A tag is `generation << INDEX_BITS | index`: lookup is O(1) by index, and
//! the generation makes a stale tag (a late PDU for a finished task) miss
//! instead of hitting the slot's next occupant.

use crate::prelude::*;
/// The reserved Initiator Task Tag (RFC 7143 sections 11.18, 11.19).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// The largest number of tasks in flight at once.
pub const MAX_TASKS: usize = 1 << INDEX_BITS;

struct Slot<T> {
    generation: u16,
    value: Option<T>,
}

/// A slab of in-flight tasks keyed by their Initiator Task Tag.
pub struct TaskTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for TaskTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TaskTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        TaskTable {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of tasks in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tag_of(index: u32, generation: u16) -> u32 {
        (u32::from(generation) << INDEX_BITS) | index
    }

    /// Inserts a task and returns its tag, or `None` when [`MAX_TASKS`] are
    /// in flight.
    pub fn insert(&mut self, value: T) -> Option<u32> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= MAX_TASKS {
                    return None;
                }
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        // Free-list indices and the one just pushed are all below
        // `slots.len()`, and `slots` never shrinks: this cannot panic.
        #[allow(clippy::indexing_slicing)]
        let slot = &mut self.slots[index as usize];
        // Never hand out the reserved tag: skip the one generation that
        // would produce it for the last index.
        if Self::tag_of(index, slot.generation) == RESERVED_TAG {
            slot.generation = slot.generation.wrapping_add(1);
        }
        slot.value = Some(value);
        self.len += 1;
        Some(Self::tag_of(index, slot.generation))
    }

    fn slot_index(&self, tag: u32) -> Option<usize> {
        if tag == RESERVED_TAG {
            return None;
        }
        let index = (tag & INDEX_MASK) as usize;
        let generation = (tag >> INDEX_BITS) as u16;
        match self.slots.get(index) {
            Some(s) if s.generation == generation && s.value.is_some() => Some(index),
            _ => None,
        }
    }

    /// The task with this tag, if it is in flight.
    pub fn get(&self, tag: u32) -> Option<&T> {
        let i = self.slot_index(tag)?;
        self.slots.get(i)?.value.as_ref()
    }

    /// The task with this tag, mutably, if it is in flight.
    pub fn get_mut(&mut self, tag: u32) -> Option<&mut T> {
        let i = self.slot_index(tag)?;
        self.slots.get_mut(i)?.value.as_mut()
    }

    /// Removes a task; its tag is not handed out again until the slot's
    /// generation wraps (65536 reuses of the same slot later).
    pub fn remove(&mut self, tag: u32) -> Option<T> {
        let i = self.slot_index(tag)?;
        let slot = self.slots.get_mut(i)?;
        let value = slot.value.take();
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(i as u32);
        self.len -= 1;
        value
    }

    /// Tags and tasks in flight, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .as_ref()
                .map(|v| (Self::tag_of(i as u32, s.generation), v))
        })
    }

    /// Tags and tasks in flight, mutably, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value
                .as_mut()
                .map(move |v| (Self::tag_of(i as u32, generation), v))
        })
    }

    /// Tags of all tasks in flight.
    pub fn tags(&self) -> Vec<u32> {
        self.iter().map(|(t, _)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn stale_tag_misses() {
        let mut t = TaskTable::new();
        let a = t.insert("a").unwrap();
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b").unwrap();
        assert_ne!(a, b, "a tag is not reused right away");
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert_eq!(t.remove(a), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn reserved_tag_never_issued() {
        let mut t = TaskTable::new();
        // Fill every slot so the last index exists, then cycle it through
        // every generation.
        let mut tags = Vec::new();
        for i in 0..MAX_TASKS {
            tags.push(t.insert(i).unwrap());
        }
        assert_eq!(t.insert(0), None, "table is bounded");
        let last = *tags.last().unwrap();
        t.remove(last);
        let mut tag = t.insert(0).unwrap();
        for _ in 0..70_000u32 {
            assert_ne!(tag, RESERVED_TAG);
            t.remove(tag);
            tag = t.insert(0).unwrap();
        }
        assert_eq!(t.get(RESERVED_TAG), None);
    }

    proptest! {
        /// Tags of tasks in flight are unique and never the reserved value.
        #[test]
        fn unique_while_in_flight(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..500)) {
            let mut t = TaskTable::new();
            let mut live: Vec<u32> = Vec::new();
            for (insert, pick) in ops {
                if insert || live.is_empty() {
                    let tag = t.insert(()).unwrap();
                    prop_assert_ne!(tag, RESERVED_TAG);
                    prop_assert!(!live.contains(&tag));
                    live.push(tag);
                } else {
                    let tag = live.swap_remove(pick as usize % live.len());
                    prop_assert!(t.remove(tag).is_some());
                }
                prop_assert_eq!(t.len(), live.len());
                let set: HashSet<u32> = t.tags().into_iter().collect();
                prop_assert_eq!(set.len(), live.len());
            }
        }
    }
}
