//! The virtual-time loop's bookkeeping: the deadlines of live timers, so
//! that an idle loop on the manual clock can jump to the next one.
//! CORE-NEED(next-timer): the core's own heap knows this; CORE-NEEDS.md §9.
//!
//! Invariant: every timer scheduled on a virtual-time core has an entry
//! here whose `live` flag is cleared when the timer runs or is cancelled;
//! dead entries are dropped lazily from the top of the heap.

use std::cell::{Cell, RefCell};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct Entry {
    when: Instant,
    seq: u64,
    live: Rc<Cell<bool>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

/// Settings and state of a virtual-time core.
pub(crate) struct VirtualTime {
    deadlines: RefCell<BinaryHeap<Reverse<Entry>>>,
    next_seq: Cell<u64>,
    /// How long (real time) an idle loop waits for I/O before it jumps
    /// the clock to the next timer (trio's `autojump_threshold`).
    pub(crate) autojump_after: Option<Duration>,
    /// `run_until_idle`: return instead of jumping or blocking.
    pub(crate) idle_mode: Cell<bool>,
}

impl VirtualTime {
    pub(crate) fn new(autojump_after: Option<Duration>) -> VirtualTime {
        VirtualTime {
            deadlines: RefCell::new(BinaryHeap::new()),
            next_seq: Cell::new(0),
            autojump_after,
            idle_mode: Cell::new(false),
        }
    }

    /// Records a timer due at `when`; clear the returned flag when it runs
    /// or is cancelled.
    pub(crate) fn push(&self, when: Instant) -> Rc<Cell<bool>> {
        let live = Rc::new(Cell::new(true));
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.deadlines.borrow_mut().push(Reverse(Entry { when, seq, live: live.clone() }));
        live
    }

    /// The earliest deadline of a timer that has neither run nor been
    /// cancelled.
    pub(crate) fn next_live(&self) -> Option<Instant> {
        let mut heap = self.deadlines.borrow_mut();
        while let Some(Reverse(top)) = heap.peek() {
            if top.live.get() {
                return Some(top.when);
            }
            heap.pop();
        }
        None
    }

    /// Forgets every deadline (the loop was closed).
    pub(crate) fn clear(&self) {
        self.deadlines.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_live_skips_dead_entries_in_deadline_order() {
        let vt = VirtualTime::new(None);
        let t0 = Instant::now();
        let late = vt.push(t0 + Duration::from_secs(3));
        let early = vt.push(t0 + Duration::from_secs(1));
        let _mid = vt.push(t0 + Duration::from_secs(2));
        assert_eq!(vt.next_live(), Some(t0 + Duration::from_secs(1)));
        early.set(false);
        assert_eq!(vt.next_live(), Some(t0 + Duration::from_secs(2)));
        late.set(false);
        vt.clear();
        assert_eq!(vt.next_live(), None);
    }
}
