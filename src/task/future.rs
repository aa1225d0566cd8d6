//! [`Future`]: asyncio's `Future` — a result that will be set later, with
//! done callbacks, and awaitable from tasks.
//!
//! A `Future<T>` is a handle on a [`FutureState<T>`]: either a plain
//! future's own allocation or the state embedded in a task's block, so a
//! task's result future costs no allocation of its own. Only the task may
//! complete its embedded state; through a handle, `set_result` and
//! `set_exception` are refused and `cancel` is `Task::cancel`. The state
//! holds its loop weakly: futures never keep a loop alive.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::runtime::event_loop::{EventLoop, WeakLoop};
use crate::task::task::TaskControl;

/// Identifies a done callback, for [`Future::remove_done_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

enum State<T> {
    Pending,
    Value(T),
    /// The exception set with `set_exception`, boxed: failures are rare
    /// and every task carries a `State`.
    Failed(Box<Error>),
    Cancelled,
    /// A by-value awaiter moved the result out.
    Taken,
}

impl<T> State<T> {
    fn done(outcome: Result<T>) -> State<T> {
        match outcome {
            Ok(v) => State::Value(v),
            Err(e) => State::Failed(Box::new(e)),
        }
    }
}

/// `FutureState::flags`: whether someone looked at the outcome (an
/// exception nobody retrieved is reported when the future is dropped, as
/// asyncio does).
const RETRIEVED: u8 = 1;
/// Task bits, kept here so a task's block needs no field of its own for
/// them: the task is on the ready queue.
pub(crate) const SCHEDULED: u8 = 2;
/// Task bit: `Task::cancel` was called.
pub(crate) const CANCEL_REQUESTED: u8 = 4;
/// The state is a task's result: only the task completes it.
pub(crate) const IS_TASK: u8 = 8;

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

/// Someone to tell when the future completes, in the order they asked (as
/// asyncio, where an awaiting task's wake-up is one more done callback).
pub(crate) enum Waiter<T: 'static> {
    /// A done callback: scheduled with `call_soon`.
    Callback(CallbackId, DoneCallback<T>),
    /// An awaiting task: woken.
    Wake(Waker),
}

/// Who waits on a future, in order: the first waiter inline, so the
/// common single awaiter costs one small allocation, and a future nobody
/// waits on none (the list is boxed: 8 bytes in every task block).
pub(crate) struct WaiterList<T: 'static> {
    first: Waiter<T>,
    rest: Vec<Waiter<T>>,
}

impl<T: 'static> WaiterList<T> {
    fn push(list: &mut Option<Box<WaiterList<T>>>, waiter: Waiter<T>) {
        match list {
            Some(list) => list.rest.push(waiter),
            None => *list = Some(Box::new(WaiterList { first: waiter, rest: Vec::new() })),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Waiter<T>> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    /// Removes the done callback `id`, keeping the others' order.
    fn remove_callback(list: &mut Option<Box<WaiterList<T>>>, id: CallbackId) -> Option<Waiter<T>> {
        let is_id = |w: &Waiter<T>| matches!(w, Waiter::Callback(cid, _) if *cid == id);
        let this = list.as_mut()?;
        if is_id(&this.first) {
            if this.rest.is_empty() {
                return list.take().map(|l| l.first);
            }
            let next = this.rest.remove(0);
            return Some(std::mem::replace(&mut this.first, next));
        }
        let pos = this.rest.iter().position(is_id)?;
        Some(this.rest.remove(pos))
    }
}

impl<T: 'static> IntoIterator for WaiterList<T> {
    type Item = Waiter<T>;
    type IntoIter = std::iter::Chain<std::iter::Once<Waiter<T>>, std::vec::IntoIter<Waiter<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.rest)
    }
}

/// The state of one future: outcome, waiters, and whether anyone looked.
pub(crate) struct FutureState<T: 'static> {
    event_loop: WeakLoop,
    state: RefCell<State<T>>,
    /// One list for callbacks and wakers keeps the state small (every task
    /// carries one). A `Cell`: taken out, changed, put back.
    waiters: Cell<Option<Box<WaiterList<T>>>>,
    next_callback: Cell<u32>,
    flags: Cell<u8>,
    /// Task only, in what would be padding: the loop's wake-table slot,
    /// so a step makes its waker without reaching for the loop.
    pub(crate) waker_slot: Cell<u16>,
}

/// What a [`Future`] handle points at: the state first, at a fixed place
/// (no virtual call to reach it), then the rest of the block — nothing for
/// a plain future, the task for a task's result.
pub(crate) struct Shared<T: 'static, X: ?Sized + TaskPart<T> = dyn TaskPart<T>> {
    pub(crate) state: FutureState<T>,
    pub(crate) rest: X,
}

/// The part of a future's block after its state.
pub(crate) trait TaskPart<T: 'static>: 'static {
    /// The task this is the result of, if any.
    fn as_task(&self) -> Option<&dyn TaskControl<T>> {
        None
    }
}

impl<T: 'static> TaskPart<T> for () {}

/// A value that will be available later (asyncio's `Future`).
///
/// Create one with [`EventLoop::create_future`]. `Future<T>` is a cheap
/// handle: clones share one state. Completing it with
/// [`set_result`](Future::set_result), [`set_exception`](Future::set_exception)
/// or [`cancel`](Future::cancel) schedules its done callbacks with
/// `call_soon` and wakes every task awaiting it, all in the order they were
/// added (as in asyncio, where an awaiting task is one more done callback).
/// Done callbacks never run inline.
///
/// Awaiting gives `Result<T>`: `Ok` with the result, or the exception, or
/// [`Error::Cancelled`].
/// - `fut.await` (by value) moves the result out, so `T` need not be
///   `Clone` (a socket, say) when there is one awaiter. If the awaiting code
///   is dropped before the future completes (its task was cancelled, a
///   timeout fired), the future is cancelled, as asyncio cancels the future a
///   cancelled task was waiting on.
/// - `(&fut).await` clones the result (`T: Clone`) and never cancels.
///
/// A future whose exception nobody retrieved is reported to the loop's
/// exception handler ("Future exception was never retrieved") when its last
/// handle is dropped.
///
/// A future does not keep its loop alive: once the last [`EventLoop`]
/// handle is gone, completing it drops its callbacks unrun.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::EventLoop::new()?;
/// let fut = lp.create_future::<u32>();
/// fut.add_done_callback(|f| println!("Future is done! Result: {}", f.result().unwrap()));
/// let setter = fut.clone();
/// lp.call_later(Duration::from_millis(1), move || setter.set_result(42).unwrap());
/// assert_eq!(lp.run_until_complete(fut.clone())??, 42);
/// assert_eq!(fut.result()?, 42, "run_until_complete leaves the result in place");
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Future<T: 'static> {
    pub(crate) inner: Rc<Shared<T>>,
}

impl<T: 'static> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future { inner: self.inner.clone() }
    }
}

impl EventLoop {
    /// Creates a pending [`Future`] attached to this loop (asyncio's
    /// `loop.create_future`).
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        let block: Rc<Shared<T, ()>> =
            Rc::new(Shared { state: FutureState::new(self.downgrade()), rest: () });
        Future { inner: block }
    }
}

impl<T: 'static> FutureState<T> {
    pub(crate) fn new(event_loop: WeakLoop) -> FutureState<T> {
        FutureState {
            event_loop,
            state: RefCell::new(State::Pending),
            waiters: Cell::new(None),
            next_callback: Cell::new(0),
            flags: Cell::new(0),
            waker_slot: Cell::new(u16::MAX),
        }
    }

    #[inline]
    pub(crate) fn flag(&self, bit: u8) -> bool {
        self.flags.get() & bit != 0
    }

    /// Sets or clears `bit`; returns whether it was set before.
    #[inline]
    pub(crate) fn set_flag(&self, bit: u8, on: bool) -> bool {
        let old = self.flags.get();
        self.flags.set(if on { old | bit } else { old & !bit });
        old & bit != 0
    }

    pub(crate) fn weak_loop(&self) -> &WeakLoop {
        &self.event_loop
    }

    pub(crate) fn done(&self) -> bool {
        !matches!(*self.state.borrow(), State::Pending)
    }

    pub(crate) fn cancelled(&self) -> bool {
        matches!(*self.state.borrow(), State::Cancelled)
    }

    /// Completes the state with a task's outcome ([`Error::Cancelled`]
    /// means cancelled); `handle` is what done callbacks receive.
    pub(crate) fn finish(&self, outcome: Result<T>, handle: &Future<T>) -> Result<()> {
        let state = match outcome {
            Err(Error::Cancelled) => State::Cancelled,
            outcome => State::done(outcome),
        };
        self.complete(state, handle)
    }

    /// [`finish`](Self::finish) when the loop is gone: the outcome is
    /// recorded, waiters are dropped (nothing could run them).
    pub(crate) fn finish_unscheduled(&self, outcome: Result<T>) {
        let state = match outcome {
            Err(Error::Cancelled) => State::Cancelled,
            outcome => State::done(outcome),
        };
        {
            let mut current = self.state.borrow_mut();
            if !matches!(*current, State::Pending) {
                return;
            }
            *current = state;
        }
        let _ = crate::runtime::guard::drop_user(self.waiters.take());
    }

    fn complete(&self, outcome: State<T>, handle: &Future<T>) -> Result<()> {
        {
            let mut state = self.state.borrow_mut();
            if !matches!(*state, State::Pending) {
                return Err(Error::InvalidState("the future is already done"));
            }
            *state = outcome;
        }
        self.schedule_callbacks(handle);
        Ok(())
    }

    /// Schedules every done callback with `call_soon` and wakes every
    /// awaiter, in the order they were added; no borrow is held while either
    /// runs user code.
    fn schedule_callbacks(&self, handle: &Future<T>) {
        let Some(waiters) = self.waiters.take() else { return };
        let WaiterList { first, rest } = *waiters;
        if rest.is_empty()
            && let Waiter::Wake(waker) = first
        {
            // The common case: one awaiting task.
            waker.wake();
            return;
        }
        // A closed or dropped loop cannot run callbacks: they are dropped
        // unrun, like the rest of the loop's pending work. Wakers need no
        // loop handle: look it up only for the first callback.
        let mut lp: Option<Option<EventLoop>> = None;
        for waiter in std::iter::once(first).chain(rest) {
            match waiter {
                Waiter::Callback(_, callback) => {
                    let lp = lp.get_or_insert_with(|| self.event_loop.upgrade().filter(|lp| !lp.is_closed()));
                    if let Some(lp) = lp {
                        let fut = handle.clone();
                        lp.call_soon(move || callback(&fut));
                    } else {
                        let _ = crate::runtime::guard::drop_user(callback);
                    }
                }
                Waiter::Wake(waker) => waker.wake(),
            }
        }
    }

    /// Moves the outcome out (for by-value awaiters); `None` while pending.
    pub(crate) fn take_outcome(&self) -> Option<Result<T>> {
        self.set_flag(RETRIEVED, true);
        let mut state = self.state.borrow_mut();
        match &*state {
            State::Pending => None,
            State::Cancelled => Some(Err(Error::Cancelled)),
            State::Taken => Some(Err(Error::InvalidState("the result was taken by another awaiter"))),
            State::Value(_) | State::Failed(_) => match std::mem::replace(&mut *state, State::Taken) {
                State::Value(v) => Some(Ok(v)),
                State::Failed(e) => Some(Err(*e)),
                _ => unreachable!("matched Value or Failed above"),
            },
        }
    }

    /// Registers `waker` to be woken on completion (once per task).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut waiters = self.waiters.take();
        let known = waiters
            .as_ref()
            .is_some_and(|list| list.iter().any(|w| matches!(w, Waiter::Wake(w) if w.will_wake(waker))));
        if !known {
            WaiterList::push(&mut waiters, Waiter::Wake(waker.clone()));
        }
        self.waiters.set(waiters);
    }

    /// Takes callbacks and wakers out without running them (loop close or
    /// drop); the caller drops them outside its borrows.
    pub(crate) fn abandon(&self) -> Option<Box<WaiterList<T>>> {
        self.waiters.take()
    }

    /// The error nobody retrieved, if the future failed and nobody looked;
    /// marks it retrieved so it is reported once.
    pub(crate) fn unretrieved_error(&mut self) -> Option<Error> {
        if self.set_flag(RETRIEVED, true) {
            return None;
        }
        match self.state.get_mut() {
            State::Failed(error) => Some((**error).clone()),
            _ => None,
        }
    }
}

/// Reports an exception nobody retrieved: from the loop (through its
/// handler, in a later callback) if it can, else with the default handler.
pub(crate) fn report_unretrieved(event_loop: &WeakLoop, ctx: ExceptionContext) {
    match event_loop.upgrade() {
        // Report from the loop, not from inside whatever is dropping us.
        Some(lp) if !lp.is_closed() && lp.inner.ready.try_borrow_mut().is_ok() => {
            let reporter = lp.clone();
            lp.call_soon(move || reporter.call_exception_handler(&ctx));
        }
        Some(lp) => lp.default_exception_handler(&ctx),
        None => crate::exception::report(log::Level::Error, format_args!("{ctx}")),
    }
}

impl<T: 'static, X: ?Sized + TaskPart<T>> Drop for Shared<T, X> {
    fn drop(&mut self) {
        // The common case first: nothing failed.
        if !matches!(self.state.state.get_mut(), State::Failed(_)) {
            return;
        }
        let Some(error) = self.state.unretrieved_error() else { return };
        // asyncio's wording for each, a task named with where it was made.
        let ctx = match self.rest.as_task() {
            Some(task) => ExceptionContext::new("Task exception was never retrieved")
                .with_task(task.name())
                .with_location(task.location()),
            None => ExceptionContext::new("Future exception was never retrieved"),
        };
        report_unretrieved(&self.state.event_loop, ctx.with_error(error));
    }
}

impl<T: 'static> Future<T> {
    #[inline]
    fn state(&self) -> &FutureState<T> {
        &self.inner.state
    }

    /// The loop this future belongs to.
    ///
    /// # Panics
    ///
    /// If every handle to the loop was dropped ("the event loop was
    /// dropped"): a future does not keep its loop alive.
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.state().event_loop.get()
    }

    /// Whether the future has a result, an exception, or was cancelled.
    pub fn done(&self) -> bool {
        self.state().done()
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state().cancelled()
    }

    /// Cancels the future if it is pending: its done callbacks are scheduled
    /// and awaiters get [`Error::Cancelled`]. Returns false if it was
    /// already done. On a task's future ([`Task::as_future`](crate::Task::as_future))
    /// this is [`Task::cancel`](crate::Task::cancel): the task is asked to
    /// stop and is done once it has.
    pub fn cancel(&self) -> bool {
        if self.state().flag(IS_TASK)
            && let Some(task) = self.inner.rest.as_task()
        {
            return task.cancel(&self.inner.state);
        }
        self.state().complete(State::Cancelled, self).is_ok()
    }

    /// Sets the result and schedules the done callbacks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the future is already done, or if it is a
    /// task's future (only the task sets its result, as asyncio's
    /// `Task.set_result` raises); the value is dropped.
    pub fn set_result(&self, value: T) -> Result<()> {
        self.set_outcome(Ok(value))
    }

    /// Completes the future with an error (asyncio's `set_exception`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the future is already done or is a task's
    /// future.
    pub fn set_exception(&self, error: impl Into<Error>) -> Result<()> {
        self.set_outcome(Err(error.into()))
    }

    fn set_outcome(&self, outcome: Result<T>) -> Result<()> {
        if self.state().flag(IS_TASK) {
            return Err(Error::InvalidState(
                "a task's result is set by the task; use Task::cancel to end it",
            ));
        }
        self.state().complete(State::done(outcome), self)
    }

    /// The result: a clone of it, the exception, [`Error::Cancelled`], or
    /// [`Error::InvalidState`] if the future is still pending or a
    /// by-value awaiter took the result.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn result(&self) -> Result<T>
    where
        T: Clone,
    {
        let st = self.state();
        st.set_flag(RETRIEVED, true);
        match &*st.state.borrow() {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Value(v) => Ok(v.clone()),
            State::Failed(e) => Err((**e).clone()),
            State::Cancelled => Err(Error::Cancelled),
            State::Taken => Err(Error::InvalidState("the result was taken by an awaiter")),
        }
    }

    /// The exception, if the future failed (asyncio's `exception()`):
    /// `Ok(None)` after a result, `Ok(Some(e))` after `set_exception`.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] if cancelled, [`Error::InvalidState`] if pending.
    pub fn exception(&self) -> Result<Option<Error>> {
        let st = self.state();
        st.set_flag(RETRIEVED, true);
        match &*st.state.borrow() {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Failed(e) => Ok(Some((**e).clone())),
            State::Value(_) | State::Taken => Ok(None),
            State::Cancelled => Err(Error::Cancelled),
        }
    }

    /// Moves the outcome out (for by-value awaiters); `None` while pending.
    pub(crate) fn take_outcome(&self) -> Option<Result<T>> {
        self.state().take_outcome()
    }

    /// Adds `f` to be called (through `call_soon`) with this future once it
    /// is done; if it is done already, `f` is scheduled now.
    ///
    /// # Panics
    ///
    /// If the future is done and its loop is closed ("event loop is closed")
    /// or dropped.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        let st = self.state();
        let next = st.next_callback.get();
        st.next_callback.set(next.wrapping_add(1));
        let id = CallbackId(u64::from(next));
        if self.done() {
            let fut = self.clone();
            self.get_loop().call_soon(move || f(&fut));
        } else {
            let mut waiters = st.waiters.take();
            WaiterList::push(&mut waiters, Waiter::Callback(id, Box::new(f)));
            st.waiters.set(waiters);
        }
        id
    }

    /// Removes a done callback that has not been scheduled yet; returns
    /// whether it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let st = self.state();
        let mut waiters = st.waiters.take();
        let removed = WaiterList::remove_callback(&mut waiters, id);
        st.waiters.set(waiters);
        // Dropped with the list back in place: its destructor is user code.
        removed.is_some()
    }

    /// Registers `waker` to be woken on completion (once per task).
    pub(crate) fn register(&self, waker: &Waker) {
        self.state().register(waker);
    }

    /// Calls `f` with the outcome without taking it (`None` while pending
    /// or after a by-value awaiter took it); marks it retrieved.
    pub(crate) fn with_outcome<R>(&self, f: impl FnOnce(Option<std::result::Result<&T, &Error>>) -> R) -> R {
        let st = self.state();
        st.set_flag(RETRIEVED, true);
        match &*st.state.borrow() {
            State::Pending | State::Taken => f(None),
            State::Value(v) => f(Some(Ok(v))),
            State::Failed(e) => f(Some(Err(&**e))),
            State::Cancelled => f(Some(Err(&Error::Cancelled))),
        }
    }

    /// Whether this future belongs to `lp`.
    pub(crate) fn state_loop_is(&self, lp: &EventLoop) -> bool {
        self.state().event_loop.ptr_eq(lp)
    }
}

impl<T: 'static> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.state.state.borrow() {
            State::Pending => "pending",
            State::Value(_) | State::Taken => "finished",
            State::Failed(_) => "failed",
            State::Cancelled => "cancelled",
        };
        f.debug_struct("Future").field("state", &state).finish()
    }
}

/// The future returned by `Future::into_future` (`fut.await`): moves the
/// result out, and cancels the future if dropped before it completes.
pub struct FutureOwned<T: 'static> {
    fut: Option<Future<T>>,
}

impl<T: 'static> std::future::Future for FutureOwned<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let fut = self.fut.as_ref().expect("FutureOwned polled after completion");
        match fut.take_outcome() {
            Some(outcome) => {
                self.fut = None;
                Poll::Ready(outcome)
            }
            None => {
                fut.register(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> Drop for FutureOwned<T> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            fut.cancel();
        }
    }
}

impl<T: 'static> IntoFuture for Future<T> {
    type Output = Result<T>;
    type IntoFuture = FutureOwned<T>;

    fn into_future(self) -> FutureOwned<T> {
        FutureOwned { fut: Some(self) }
    }
}

/// The future returned by `(&fut).await`: clones the result.
pub struct FutureRef<'a, T: 'static> {
    fut: &'a Future<T>,
}

impl<T: Clone + 'static> std::future::Future for FutureRef<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.fut.done() {
            Poll::Ready(self.fut.result())
        } else {
            self.fut.register(cx.waker());
            Poll::Pending
        }
    }
}

impl<'a, T: Clone + 'static> IntoFuture for &'a Future<T> {
    type Output = Result<T>;
    type IntoFuture = FutureRef<'a, T>;

    fn into_future(self) -> FutureRef<'a, T> {
        FutureRef { fut: self }
    }
}

impl<T: 'static> fmt::Debug for FutureOwned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureOwned").field("future", &self.fut).finish()
    }
}

impl<T: 'static> fmt::Debug for FutureRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureRef").field("future", self.fut).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::EventLoop;

    #[test]
    fn removing_done_callbacks_keeps_the_order_of_the_rest() {
        let lp = EventLoop::builder().manual_clock().build().unwrap();
        let fut = lp.create_future::<u8>();
        let log = Rc::new(RefCell::new(Vec::new()));
        let ids: Vec<_> = (0..5)
            .map(|i| {
                let log = log.clone();
                fut.add_done_callback(move |_| log.borrow_mut().push(i))
            })
            .collect();
        // The inline first waiter, one in the middle, the last.
        assert!(fut.remove_done_callback(ids[0]));
        assert!(fut.remove_done_callback(ids[2]));
        assert!(fut.remove_done_callback(ids[4]));
        assert!(!fut.remove_done_callback(ids[4]), "already removed");
        fut.set_result(1).unwrap();
        lp.run_until_idle().unwrap();
        assert_eq!(*log.borrow(), [1, 3]);

        // Removing the only waiter empties the list; adding works again.
        let fut = lp.create_future::<u8>();
        let only = fut.add_done_callback(|_| unreachable!());
        assert!(fut.remove_done_callback(only));
        let l = log.clone();
        fut.add_done_callback(move |_| l.borrow_mut().push(9));
        fut.set_result(2).unwrap();
        lp.run_until_idle().unwrap();
        assert_eq!(*log.borrow(), [1, 3, 9]);
    }
}
