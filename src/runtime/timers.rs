//! The timer heap: a min-heap ordered by (deadline, scheduling order), with
//! lazy deletion of cancelled timers and compaction that bounds its memory.
//!
//! A loop-made timer is an `Rc` whose own state says whether it was
//! cancelled; a foreign timer ([`ForeignEntry`]) lives in a slot map and
//! the heap holds its [`TimerKey`]: cancelling removes the slot (dropping
//! the entry at once), so a key missing from the map is a cancelled entry.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slotmap::SlotMap;

use crate::runtime::handle::{ForeignEntry, Ready, TimerKey, TimerRunnable};
use crate::sys::entry::ErasedEntry;

/// Compaction runs only above this many entries (asyncio's
/// `_MIN_SCHEDULED_TIMER_HANDLES`)...
const MIN_ENTRIES_TO_COMPACT: usize = 100;

/// One heap entry: 32 bytes, so a million pending timers stay small.
struct Entry {
    /// Deadline in nanoseconds relative to the heap's epoch; negative for
    /// deadlines before the loop was created (`call_at` in the past).
    when: i64,
    /// Scheduling order: equal deadlines fire first-in, first-out.
    seq: u64,
    timer: Timer,
}

const _: () = assert!(size_of::<Entry>() == 32);

/// What a heap entry runs.
enum Timer {
    Core(Rc<dyn TimerRunnable>),
    /// A slot in [`TimerHeap::foreign`]; gone from there once cancelled.
    Foreign(TimerKey),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

/// Pending timers. Cancelled entries stay until they reach the top or the
/// heap is compacted.
pub(crate) struct TimerHeap {
    epoch: Instant,
    heap: BinaryHeap<Entry>,
    next_seq: u64,
    /// Entries in `heap` whose timer was cancelled.
    cancelled: usize,
    /// The foreign timers not yet run nor cancelled.
    foreign: SlotMap<TimerKey, ErasedEntry>,
}

impl TimerHeap {
    pub(crate) fn new(epoch: Instant) -> TimerHeap {
        TimerHeap { epoch, heap: BinaryHeap::new(), next_seq: 0, cancelled: 0, foreign: SlotMap::with_key() }
    }

    fn to_offset(&self, when: Instant) -> i64 {
        fn nanos(d: Duration) -> i64 {
            i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
        }
        match when.checked_duration_since(self.epoch) {
            Some(d) => nanos(d),
            None => -nanos(self.epoch - when),
        }
    }

    fn to_instant(&self, offset: i64) -> Instant {
        if offset >= 0 {
            self.epoch + Duration::from_nanos(offset as u64)
        } else {
            self.epoch.checked_sub(Duration::from_nanos(offset.unsigned_abs())).unwrap_or(self.epoch)
        }
    }

    pub(crate) fn push(&mut self, when: Instant, timer: Rc<dyn TimerRunnable>) {
        self.push_timer(when, Timer::Core(timer));
    }

    /// Queues a foreign timer; its key cancels it.
    pub(crate) fn push_foreign<E: ForeignEntry>(&mut self, when: Instant, entry: E) -> TimerKey {
        let key = self.foreign.insert(ErasedEntry::new(entry));
        self.push_timer(when, Timer::Foreign(key));
        key
    }

    fn push_timer(&mut self, when: Instant, timer: Timer) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let when = self.to_offset(when);
        self.heap.push(Entry { when, seq, timer });
    }

    /// Takes a foreign timer out (cancelling it), for the caller to drop
    /// with no borrow alive. `None` if it already ran or was cancelled.
    pub(crate) fn cancel_foreign(&mut self, key: TimerKey) -> Option<ErasedEntry> {
        let entry = self.foreign.remove(key)?;
        self.note_cancelled();
        Some(entry)
    }

    /// A foreign timer still in the heap, as the `E` it was queued as.
    pub(crate) fn foreign_mut<E: ForeignEntry>(&mut self, key: TimerKey) -> Option<&mut E> {
        self.foreign.get_mut(key)?.downcast_mut::<E>()
    }

    /// The foreign timers not yet run nor cancelled.
    pub(crate) fn foreign_entries(&self) -> impl Iterator<Item = &ErasedEntry> {
        self.foreign.values()
    }

    /// Cancels every foreign timer, returning them for the caller to drop
    /// with no borrow alive.
    pub(crate) fn take_foreign(&mut self) -> Vec<ErasedEntry> {
        let taken: Vec<ErasedEntry> = self.foreign.drain().map(|(_, entry)| entry).collect();
        if !taken.is_empty() {
            self.cancelled += taken.len() - 1;
            self.note_cancelled();
        }
        taken
    }

    fn is_cancelled(&self, timer: &Timer) -> bool {
        match timer {
            Timer::Core(t) => t.cancelled(),
            Timer::Foreign(key) => !self.foreign.contains_key(*key),
        }
    }

    /// A popped entry leaves the heap: loop-made timers stop counting
    /// towards compaction; a live foreign one leaves its slot.
    fn leave_heap(&mut self, timer: Timer) -> Option<Ready> {
        match timer {
            Timer::Core(t) => {
                t.clear_in_heap();
                Some(Ready::Core(t))
            }
            Timer::Foreign(key) => self.foreign.remove(key).map(Ready::Foreign),
        }
    }

    /// Number of entries, cancelled ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Number of timers still due to run.
    pub(crate) fn live(&self) -> usize {
        self.heap.len() - self.cancelled
    }

    /// Records that a timer in the heap was cancelled; compacts when the heap
    /// is mostly dead weight.
    pub(crate) fn note_cancelled(&mut self) {
        self.cancelled += 1;
        if self.heap.len() > MIN_ENTRIES_TO_COMPACT && self.cancelled * 2 > self.heap.len() {
            self.compact();
        }
    }

    /// Removes every cancelled entry and rebuilds the heap in O(n). The
    /// entries are dropped in place: a cancelled timer let go of its closure
    /// when it was cancelled, so no user code runs here.
    fn compact(&mut self) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|e| {
            let keep = !self.is_cancelled(&e.timer);
            if !keep && let Timer::Core(t) = &e.timer {
                t.clear_in_heap();
            }
            keep
        });
        // Give memory back after a mass cancel, but keep room for the usual
        // churn: freeing and regrowing the buffer every compaction is slow.
        let floor = entries.len().max(MIN_ENTRIES_TO_COMPACT);
        if entries.capacity() > 4 * floor {
            entries.shrink_to(2 * floor);
        }
        self.heap = BinaryHeap::from(entries);
        self.cancelled = 0;
    }

    /// Drops cancelled entries off the top, then returns the deadline of the
    /// earliest live timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if self.is_cancelled(&top.timer) {
                let e = self.heap.pop().expect("peeked");
                self.leave_heap(e.timer);
                self.cancelled -= 1;
                continue;
            }
            return Some(self.to_instant(top.when));
        }
        None
    }

    /// Pops the earliest timer if it is due at `now`, skipping cancelled
    /// ones. Equal deadlines come out in scheduling order.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Ready> {
        let now = self.to_offset(now);
        while let Some(top) = self.heap.peek() {
            let cancelled = self.is_cancelled(&top.timer);
            if !cancelled && top.when > now {
                return None;
            }
            let e = self.heap.pop().expect("peeked");
            let ready = self.leave_heap(e.timer);
            if cancelled {
                self.cancelled -= 1;
                continue;
            }
            return ready;
        }
        None
    }

    /// Empties the heap (on `close`, or a GC clearing the loop); the caller
    /// cancels and drops the returned timers with no borrow alive.
    pub(crate) fn take_all(&mut self) -> Vec<Ready> {
        self.cancelled = 0;
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut taken: Vec<Ready> = entries
            .into_iter()
            .filter_map(|e| match e.timer {
                Timer::Core(t) => Some(Ready::Core(t)),
                Timer::Foreign(_) => None,
            })
            .collect();
        taken.extend(self.foreign.drain().map(|(_, entry)| Ready::Foreign(entry)));
        taken
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.heap.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::handle::{CallbackCell, IN_HEAP};
    use std::cell::RefCell;
    use std::panic::Location;

    fn timer(log: &Rc<RefCell<Vec<u32>>>, id: u32) -> Rc<dyn TimerRunnable> {
        let log = log.clone();
        CallbackCell::new(move || log.borrow_mut().push(id), Location::caller(), IN_HEAP)
    }

    #[test]
    fn pops_by_deadline_then_fifo() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        heap.push(t0 + Duration::from_secs(2), timer(&log, 1));
        heap.push(t0 + Duration::from_secs(1), timer(&log, 2));
        heap.push(t0 + Duration::from_secs(2), timer(&log, 3));
        heap.push(t0 + Duration::from_secs(1), timer(&log, 4));
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(heap.pop_due(t0).is_none(), "nothing is due early");
        while let Some(t) = heap.pop_due(t0 + Duration::from_secs(2)) {
            t.run();
        }
        assert_eq!(*log.borrow(), vec![2, 4, 1, 3]);
    }

    #[test]
    fn deadlines_before_the_epoch_keep_their_order() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        if let (Some(a), Some(b)) =
            (t0.checked_sub(Duration::from_millis(5)), t0.checked_sub(Duration::from_millis(10)))
        {
            heap.push(a, timer(&log, 1));
            heap.push(b, timer(&log, 2));
            assert_eq!(heap.next_deadline(), Some(b));
            while let Some(t) = heap.pop_due(t0) {
                t.run();
            }
            assert_eq!(*log.borrow(), vec![2, 1]);
        }
    }

    #[test]
    fn compaction_bounds_the_heap() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..10_000 {
            let t = timer(&log, i);
            heap.push(t0 + Duration::from_secs(1), t.clone());
            handles.push(t);
        }
        for t in handles.drain(..) {
            assert!(t.cancel());
            heap.note_cancelled();
        }
        assert!(heap.len() <= MIN_ENTRIES_TO_COMPACT + 1, "len {}", heap.len());
        assert!(heap.capacity() < 1000, "capacity {}", heap.capacity());
        assert_eq!(heap.live(), 0);
        assert!(heap.next_deadline().is_none());
        assert_eq!(heap.len(), 0);
    }

    struct Push(Rc<RefCell<Vec<u32>>>, u32);
    impl ForeignEntry for Push {
        fn run(self) {
            self.0.borrow_mut().push(self.1);
        }
    }

    #[test]
    fn foreign_timers_interleave_and_cancel_by_key() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        let a = heap.push_foreign(t0 + Duration::from_secs(1), Push(log.clone(), 1));
        heap.push(t0 + Duration::from_secs(1), timer(&log, 2));
        let c = heap.push_foreign(t0 + Duration::from_secs(1), Push(log.clone(), 3));
        assert!(heap.cancel_foreign(a).is_some());
        assert!(heap.cancel_foreign(a).is_none());
        assert_eq!(heap.live(), 2);
        while let Some(t) = heap.pop_due(t0 + Duration::from_secs(1)) {
            t.run();
        }
        assert_eq!(*log.borrow(), vec![2, 3]);
        assert!(heap.cancel_foreign(c).is_none(), "a run timer's key is spent");
        assert_eq!((heap.len(), heap.live()), (0, 0));
    }

    #[test]
    fn clearing_foreign_timers_counts_them_cancelled() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        for i in 0..300 {
            heap.push_foreign(t0 + Duration::from_secs(1), Push(log.clone(), i));
        }
        heap.push(t0, timer(&log, 999));
        assert_eq!(heap.take_foreign().len(), 300);
        assert_eq!(heap.live(), 1);
        assert!(heap.len() <= MIN_ENTRIES_TO_COMPACT, "compacted: {}", heap.len());
        assert_eq!(Rc::strong_count(&log), 2, "only the loop-made timer is left");
    }
}
