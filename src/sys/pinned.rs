//! Pinning for a task's inline future: [`Pinned`], a block whose `rest`
//! is structurally pinned, and [`PinCell`], a cell that polls and drops a
//! future in place through a shared pinned reference.
//!
//! A task's future lives inside the task's `Rc` block, which `Future`
//! handles, the loop's task map and the ready queue all share; each holds
//! it as `Pin<Rc<_>>`, so nothing can move it, and only a `Pin<&_>` of the
//! block reaches its future. Invariant: a value that was ever reached
//! through `Pin<&PinCell<F>>` is dropped where it lies, never moved, and at
//! most one `&mut F` exists at a time (the cell's busy flag; a re-entrant
//! `poll` or `clear` is refused, not run).
//!
//! Why this is sound with safe code around it (the pin-project rules):
//! the fields are private to this module; `rest` is reached only as `&R`
//! or, from a pinned block, as `Pin<&R>`; neither type gives out `&mut`
//! access to what it pins; `Pinned` and `PinCell` are `Unpin` exactly when
//! what they pin is (the explicit impls below make any other `Unpin` impl
//! a compile error); `Pinned`'s one `Drop` impl (here, so no other can
//! exist) gives the head only `&R`.

use std::cell::{Cell, UnsafeCell};
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a [`Pinned`] block's head does just before the block is dropped
/// (the future's "exception was never retrieved" report needs the task
/// part to name the task).
pub(crate) trait PinnedHead<R: ?Sized> {
    /// Called once, from the block's destructor, before either field is
    /// dropped.
    fn before_drop(&mut self, _rest: &R) {}
}

/// A head `H` and a structurally pinned `rest` (`R` may be unsized:
/// `Pin<Rc<Pinned<H, R>>>` coerces to `Pin<Rc<Pinned<H, dyn Trait>>>`).
pub(crate) struct Pinned<H: PinnedHead<R>, R: ?Sized> {
    head: H,
    rest: R,
}

// Pinning a block pins only its `rest`; any other `Unpin` impl for
// `Pinned` would overlap this one and fail to compile.
impl<H: PinnedHead<R>, R: ?Sized + Unpin> Unpin for Pinned<H, R> {}

impl<H: PinnedHead<R>, R> Pinned<H, R> {
    /// A block, not yet pinned: it starts being pinned once it is put in a
    /// `Pin` (`Rc::pin`), or inside a pinned block's `rest`.
    #[inline]
    pub(crate) fn new(head: H, rest: R) -> Pinned<H, R> {
        Pinned { head, rest }
    }
}

impl<H: PinnedHead<R>, R: ?Sized> Pinned<H, R> {
    /// The head, which is not pinned.
    #[inline]
    pub(crate) fn head(&self) -> &H {
        &self.head
    }

    /// The rest, for reading.
    #[inline]
    pub(crate) fn rest(&self) -> &R {
        &self.rest
    }

    /// The rest, still pinned.
    #[inline]
    pub(crate) fn rest_pinned(self: Pin<&Self>) -> Pin<&R> {
        // SAFETY: structural pinning of `rest`: this module never moves it
        // out of a block or hands out `&mut R` (no method takes `&mut self`
        // besides `Drop`, which gives the head only `&R`), and the block is
        // `Unpin` only if `R` is. So once the block is pinned, `rest` stays
        // where it is until it is dropped in place with the block.
        unsafe { self.map_unchecked(|block| &block.rest) }
    }
}

impl<H: PinnedHead<R>, R: ?Sized> Drop for Pinned<H, R> {
    fn drop(&mut self) {
        self.head.before_drop(&self.rest);
    }
}

/// An `Option<F>` polled and dropped in place through `Pin<&Self>`: a
/// pinned future that many `Rc` holders share.
pub(crate) struct PinCell<F> {
    /// An `&mut F` is alive (a `poll` or `clear` is running).
    busy: Cell<bool>,
    value: UnsafeCell<Option<F>>,
}

// Moving a cell moves its future: the cell is `Unpin` only if `F` is. Any
// other `Unpin` impl for `PinCell` would overlap this one.
impl<F: Unpin> Unpin for PinCell<F> {}

/// Clears `busy` when dropped, also while unwinding out of `F`'s code.
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<F> PinCell<F> {
    /// A cell holding `value`.
    #[inline]
    pub(crate) fn new(value: F) -> PinCell<F> {
        PinCell { busy: Cell::new(false), value: UnsafeCell::new(Some(value)) }
    }

    /// Marks the cell busy; `None` if it already was.
    #[inline]
    fn enter(&self) -> Option<Busy<'_>> {
        // Lazily: a guard made for a refused call would clear the flag of
        // the call that holds it when dropped.
        (!self.busy.replace(true)).then(|| Busy(&self.busy))
    }

    /// Whether the cell holds no future (cleared). A busy cell holds one.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        let Some(_busy) = self.enter() else { return false };
        // SAFETY: not busy, so no `&mut` into `value` exists; this shared
        // borrow ends before `_busy` is released.
        unsafe { (*self.value.get()).is_none() }
    }

    /// Drops the future where it lies (also if its destructor panics: the
    /// cell is empty afterwards either way). Returns false if the cell was
    /// empty or busy (a `poll` of this future is running: nothing is done).
    pub(crate) fn clear(self: Pin<&Self>) -> bool {
        let Some(_busy) = self.enter() else { return false };
        let slot = self.value.get();
        // SAFETY: not busy before `enter`, so this is the only reference
        // into `value` until `_busy` is dropped.
        if unsafe { (*slot).is_none() } {
            return false;
        }
        /// Leaves `None` behind even if `F`'s destructor unwinds.
        struct Empty<F>(*mut Option<F>);
        impl<F> Drop for Empty<F> {
            fn drop(&mut self) {
                // SAFETY: the `Some(F)` at `self.0` was just dropped in
                // place (or its drop unwound, which also ends it): writing
                // without dropping is the only valid thing left.
                unsafe { self.0.write(None) }
            }
        }
        let empty = Empty(slot);
        // SAFETY: the only reference into `value` (see above); the value is
        // dropped in place, never moved, as its pin requires, and `empty`
        // overwrites it so it is never dropped twice.
        unsafe { std::ptr::drop_in_place(slot) };
        drop(empty);
        true
    }
}

impl<F: std::future::Future> PinCell<F> {
    /// Polls the future once. `None` if the cell is empty or busy (called
    /// from inside its own future's `poll`). A finished future stays in
    /// the cell until [`clear`](Self::clear).
    pub(crate) fn poll(self: Pin<&Self>, cx: &mut Context<'_>) -> Option<Poll<F::Output>> {
        let _busy = self.enter()?;
        // SAFETY: `enter` succeeded, so this is the only reference into
        // `value` until `_busy` is dropped, which outlives the borrow.
        let slot = unsafe { &mut *self.value.get() };
        let fut = slot.as_mut()?;
        // SAFETY: `self` is pinned, and this cell never moves its value:
        // it is only polled here and dropped in place by `clear` or by the
        // cell's own drop glue.
        let fut = unsafe { Pin::new_unchecked(fut) };
        Some(fut.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::task::Waker;

    struct NoHead;
    impl<R: ?Sized> PinnedHead<R> for NoHead {}

    #[test]
    fn polls_and_clears_in_place() {
        let block = Rc::pin(Pinned::new(NoHead, PinCell::new(async { 7 })));
        let cell = block.as_ref().rest_pinned();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(cell.poll(&mut cx), Some(Poll::Ready(7)));
        assert!(!cell.is_empty());
        assert!(cell.clear());
        assert!(cell.is_empty());
        assert_eq!(cell.poll(&mut cx), None);
        assert!(!cell.clear());
    }

    #[test]
    fn a_panicking_destructor_still_empties_the_cell() {
        struct Loud;
        impl Drop for Loud {
            fn drop(&mut self) {
                panic!("loud");
            }
        }
        let loud = Loud;
        let block = Rc::pin(Pinned::new(
            NoHead,
            PinCell::new(async move {
                let _keep = &loud;
            }),
        ));
        let cell = block.as_ref().rest_pinned();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cell.clear()));
        assert!(caught.is_err());
        assert!(cell.is_empty());
        assert!(!cell.busy.get());
    }

    #[test]
    fn a_poll_or_clear_from_inside_the_futures_own_poll_is_refused() {
        type Probe = Box<dyn Fn() -> (bool, bool)>;
        thread_local! {
            static PROBE: std::cell::RefCell<Option<Probe>> = const { std::cell::RefCell::new(None) };
        }
        struct Reenter;
        impl std::future::Future for Reenter {
            type Output = (bool, bool);
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<(bool, bool)> {
                let probe = PROBE.with(|p| p.borrow_mut().take()).expect("probe set");
                Poll::Ready(probe())
            }
        }
        let block = Rc::pin(Pinned::new(NoHead, PinCell::new(Reenter)));
        let again = block.clone();
        PROBE.with(|p| {
            *p.borrow_mut() = Some(Box::new(move || {
                let cell = again.as_ref().rest_pinned();
                let mut cx = Context::from_waker(Waker::noop());
                (cell.poll(&mut cx).is_none(), !cell.clear())
            }))
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(block.as_ref().rest_pinned().poll(&mut cx), Some(Poll::Ready((true, true))));
        assert!(block.as_ref().rest_pinned().clear(), "not busy once the poll returned");
    }
}
