//! [`ErasedEntry`]: a [`ForeignEntry`] of any type stored in two inline
//! words, with a per-type function table: what lets an embedder's object
//! (a Python handle, a raw task pointer) *be* the ready-queue element, so
//! queueing it allocates nothing beyond the object itself.
//!
//! Invariant: `data` holds exactly one initialised `E` (the type the table
//! was made for) from `new::<E>` until the entry is consumed by `run` or
//! `into_inner`, or dropped; each of those moves the `E` out (or drops it)
//! exactly once and forgets the storage.

use std::any::TypeId;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::Location;

use crate::runtime::handle::ForeignEntry;

/// The inline storage: two machine words, word-aligned.
type Slot = MaybeUninit<[usize; 2]>;

/// What the loop needs to do with an `E` it cannot name.
struct EntryTable {
    /// Moves the `E` out of the slot and runs it.
    run: unsafe fn(*mut Slot),
    /// Drops the `E` in the slot.
    drop: unsafe fn(*mut Slot),
    cancelled: unsafe fn(*const Slot) -> bool,
    location: unsafe fn(*const Slot) -> Option<&'static Location<'static>>,
    type_id: fn() -> TypeId,
}

/// A [`ForeignEntry`] with its type erased. Three words: the two inline
/// words and the function table.
pub(crate) struct ErasedEntry {
    data: Slot,
    table: &'static EntryTable,
}

const _: () = assert!(size_of::<ErasedEntry>() == 3 * size_of::<usize>());

fn table<E: ForeignEntry>() -> &'static EntryTable {
    // Promoted to a static per `E`: only fn items and a fn pointer.
    &EntryTable {
        run: run::<E>,
        drop: drop_in_place::<E>,
        cancelled: cancelled::<E>,
        location: location::<E>,
        type_id: TypeId::of::<E>,
    }
}

/// # Safety
///
/// `slot` holds an initialised `E`, which the caller must not use again.
unsafe fn run<E: ForeignEntry>(slot: *mut Slot) {
    // SAFETY: the caller guarantees an initialised `E` that it gives up;
    // `new` checked that `E` fits the slot's size and alignment.
    let entry = unsafe { slot.cast::<E>().read() };
    entry.run();
}

/// # Safety
///
/// `slot` holds an initialised `E`, which the caller must not use again.
unsafe fn drop_in_place<E: ForeignEntry>(slot: *mut Slot) {
    // SAFETY: as `run`: an initialised, suitably aligned `E`, given up.
    unsafe { slot.cast::<E>().drop_in_place() }
}

/// # Safety
///
/// `slot` holds an initialised `E`.
unsafe fn cancelled<E: ForeignEntry>(slot: *const Slot) -> bool {
    // SAFETY: an initialised, suitably aligned `E`, borrowed for the call.
    unsafe { &*slot.cast::<E>() }.cancelled()
}

/// # Safety
///
/// `slot` holds an initialised `E`.
unsafe fn location<E: ForeignEntry>(slot: *const Slot) -> Option<&'static Location<'static>> {
    // SAFETY: an initialised, suitably aligned `E`, borrowed for the call.
    unsafe { &*slot.cast::<E>() }.location()
}

impl ErasedEntry {
    /// Stores `entry` inline.
    ///
    /// Fails to compile for an `E` larger than two words or aligned more
    /// strictly than a word.
    #[inline]
    pub(crate) fn new<E: ForeignEntry>(entry: E) -> ErasedEntry {
        const {
            assert!(size_of::<E>() <= size_of::<Slot>(), "a ForeignEntry is at most two words");
            assert!(align_of::<E>() <= align_of::<Slot>(), "a ForeignEntry is at most word-aligned");
        }
        let mut data = Slot::uninit();
        // SAFETY: the asserts above: `E` fits in `data` and its alignment
        // divides the slot's. `data` is owned and uninitialised; writing
        // does not drop anything.
        unsafe { data.as_mut_ptr().cast::<E>().write(entry) };
        ErasedEntry { data, table: table::<E>() }
    }

    /// Runs the entry, consuming it. A panic in `E::run` unwinds out of
    /// here with the `E` already moved out: it is dropped once, by the
    /// unwinding `run` frame.
    #[inline]
    pub(crate) fn run(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `data` holds the `E` the table was made for (invariant);
        // `this` is never dropped, so the `E` is moved out only here.
        unsafe { (this.table.run)(&mut this.data) }
    }

    /// Whether the entry says it was cancelled.
    #[inline]
    pub(crate) fn cancelled(&self) -> bool {
        // SAFETY: `data` holds the table's `E` (invariant).
        unsafe { (self.table.cancelled)(&self.data) }
    }

    /// Where the entry was made, if it knows.
    pub(crate) fn location(&self) -> Option<&'static Location<'static>> {
        // SAFETY: `data` holds the table's `E` (invariant).
        unsafe { (self.table.location)(&self.data) }
    }

    /// The entry as an `E`, if that is its type.
    pub(crate) fn downcast_ref<E: ForeignEntry>(&self) -> Option<&E> {
        if (self.table.type_id)() != TypeId::of::<E>() {
            return None;
        }
        // SAFETY: the type ids match, so `data` holds an initialised `E`
        // (invariant), borrowed for as long as `self`.
        Some(unsafe { &*self.data.as_ptr().cast::<E>() })
    }

    /// The entry as a mutable `E`, if that is its type.
    pub(crate) fn downcast_mut<E: ForeignEntry>(&mut self) -> Option<&mut E> {
        if (self.table.type_id)() != TypeId::of::<E>() {
            return None;
        }
        // SAFETY: the type ids match, so `data` holds an initialised `E`
        // (invariant), borrowed uniquely for as long as `self`.
        Some(unsafe { &mut *self.data.as_mut_ptr().cast::<E>() })
    }
}

impl Drop for ErasedEntry {
    fn drop(&mut self) {
        // SAFETY: `data` holds the table's `E` (invariant); after `drop`
        // nothing reads it again.
        unsafe { (self.table.drop)(&mut self.data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts its runs and drops in shared cells: one word.
    struct Probe(Rc<(Cell<u32>, Cell<u32>)>);

    impl ForeignEntry for Probe {
        fn run(self) {
            self.0.0.set(self.0.0.get() + 1);
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.1.set(self.0.1.get() + 1);
        }
    }

    /// Two words, with a `cancelled` flag.
    struct Pair(Rc<Cell<u32>>, bool);

    impl ForeignEntry for Pair {
        fn run(self) {
            self.0.set(self.0.get() + 10);
        }
        fn cancelled(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn run_moves_the_entry_out_and_drops_it_once() {
        let counts = Rc::new((Cell::new(0), Cell::new(0)));
        let entry = ErasedEntry::new(Probe(counts.clone()));
        assert!(!entry.cancelled());
        assert!(entry.location().is_none());
        entry.run();
        assert_eq!((counts.0.get(), counts.1.get()), (1, 1));
        assert_eq!(Rc::strong_count(&counts), 1);
    }

    #[test]
    fn dropping_unrun_drops_once() {
        let counts = Rc::new((Cell::new(0), Cell::new(0)));
        drop(ErasedEntry::new(Probe(counts.clone())));
        assert_eq!((counts.0.get(), counts.1.get()), (0, 1));
    }

    #[test]
    fn a_panicking_run_drops_the_entry_once() {
        struct Bomb(Rc<Cell<u32>>);
        impl ForeignEntry for Bomb {
            fn run(self) {
                panic!("entry panics");
            }
        }
        impl Drop for Bomb {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let drops = Rc::new(Cell::new(0));
        let entry = ErasedEntry::new(Bomb(drops.clone()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry.run()));
        assert!(outcome.is_err());
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn two_words_and_downcast() {
        let hits = Rc::new(Cell::new(0));
        let entry = ErasedEntry::new(Pair(hits.clone(), true));
        assert!(entry.cancelled());
        assert!(entry.downcast_ref::<Probe>().is_none());
        assert!(entry.downcast_ref::<Pair>().is_some_and(|p| p.1));
        entry.run();
        assert_eq!(hits.get(), 10);
        assert_eq!(Rc::strong_count(&hits), 1);
    }
}
