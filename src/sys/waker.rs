//! Wakers that are plain bits: no allocation, no reference count, nothing
//! to free, so they are trivially `Send + Sync` and may outlive whatever
//! they name.
//!
//! A [`BitsWaker`] implementation decides what the 64 bits mean and what a
//! wake does with them; the waker itself only copies them around. The data
//! pointer of the `RawWaker` *is* the bits: it is never dereferenced.

use std::task::{RawWaker, RawWakerVTable, Waker};

/// What a bits waker does when woken. `wake` may run on any thread, any
/// number of times, long after the thing the bits name is gone.
pub(crate) trait BitsWaker {
    fn wake(bits: usize);
}

fn vtable<W: BitsWaker>() -> &'static RawWakerVTable {
    // Promoted to a static per `W`: every function here is a plain fn item.
    &RawWakerVTable::new(clone::<W>, wake::<W>, wake::<W>, forget)
}

fn clone<W: BitsWaker>(data: *const ()) -> RawWaker {
    RawWaker::new(data, vtable::<W>())
}

fn wake<W: BitsWaker>(data: *const ()) {
    W::wake(data as usize);
}

fn forget(_: *const ()) {}

/// A waker that calls `W::wake(bits)` when woken.
pub(crate) fn bits_waker<W: BitsWaker>(bits: usize) -> Waker {
    // SAFETY: the `RawWaker` contract asks that clone/wake/wake_by_ref/drop
    // be sound for the data pointer on any thread for as long as the waker
    // lives. Here the pointer is an integer that no vtable function
    // dereferences (clone copies it, wake passes it to `W::wake` by value,
    // drop does nothing), so there is no memory whose lifetime or thread
    // affinity could be violated; `BitsWaker::wake` is safe code that must
    // itself be callable from any thread.
    unsafe { Waker::from_raw(RawWaker::new(bits as *const (), vtable::<W>())) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static LAST: AtomicUsize = AtomicUsize::new(0);
    struct Record;
    impl BitsWaker for Record {
        fn wake(bits: usize) {
            LAST.store(bits, Ordering::SeqCst);
        }
    }

    #[test]
    fn bits_survive_clone_wake_and_threads() {
        let w = bits_waker::<Record>(0xdead_beef);
        let c = w.clone();
        assert!(w.will_wake(&c));
        assert!(!w.will_wake(&bits_waker::<Record>(1)));
        c.wake();
        assert_eq!(LAST.load(Ordering::SeqCst), 0xdead_beef);
        std::thread::spawn(move || w.wake_by_ref()).join().unwrap();
        assert_eq!(LAST.load(Ordering::SeqCst), 0xdead_beef);
    }
}
