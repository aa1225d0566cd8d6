//! [`Future`]: asyncio's `Future` — a result that will be set later, with
//! done callbacks, and awaitable from tasks.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::runtime::event_loop::EventLoop;

/// Identifies a done callback, for [`Future::remove_done_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

enum State<T> {
    Pending,
    /// The result, or the exception set with `set_exception`.
    Done(Result<T>),
    Cancelled,
    /// A by-value awaiter moved the result out.
    Taken,
}

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

/// Someone to tell when the future completes, in the order they asked (as
/// asyncio, where an awaiting task's wake-up is one more done callback).
pub(crate) enum Waiter<T> {
    /// A done callback: scheduled with `call_soon`.
    Callback(CallbackId, DoneCallback<T>),
    /// An awaiting task: woken.
    Wake(Waker),
}

pub(crate) struct FutureInner<T> {
    pub(crate) event_loop: EventLoop,
    state: RefCell<State<T>>,
    /// One list for callbacks and wakers keeps the future small (a task's
    /// result future is allocated with every task).
    waiters: RefCell<Vec<Waiter<T>>>,
    next_callback: Cell<u64>,
    /// Whether someone looked at the outcome; an exception nobody retrieved
    /// is reported when the future is dropped, as asyncio does.
    retrieved: Cell<bool>,
}

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
/// exception handler when its last handle is dropped.
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
/// assert_eq!(lp.run_until_complete(fut)??, 42);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Future<T> {
    pub(crate) inner: Rc<FutureInner<T>>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future { inner: self.inner.clone() }
    }
}

impl EventLoop {
    /// Creates a pending [`Future`] attached to this loop (asyncio's
    /// `loop.create_future`).
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::new(self.clone())
    }
}

impl<T: 'static> Future<T> {
    pub(crate) fn new(event_loop: EventLoop) -> Future<T> {
        Future {
            inner: Rc::new(FutureInner {
                event_loop,
                state: RefCell::new(State::Pending),
                waiters: RefCell::new(Vec::new()),
                next_callback: Cell::new(0),
                retrieved: Cell::new(false),
            }),
        }
    }

    /// The loop this future belongs to.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.event_loop.clone()
    }

    /// Whether the future has a result, an exception, or was cancelled.
    pub fn done(&self) -> bool {
        !matches!(*self.inner.state.borrow(), State::Pending)
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Cancelled)
    }

    /// Cancels the future if it is pending: its done callbacks are scheduled
    /// and awaiters get [`Error::Cancelled`]. Returns false if it was
    /// already done.
    pub fn cancel(&self) -> bool {
        self.complete(State::Cancelled).is_ok()
    }

    /// Sets the result and schedules the done callbacks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the future is already done; the value is
    /// dropped.
    pub fn set_result(&self, value: T) -> Result<()> {
        self.complete(State::Done(Ok(value)))
    }

    /// Completes the future with an error (asyncio's `set_exception`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the future is already done.
    pub fn set_exception(&self, error: impl Into<Error>) -> Result<()> {
        self.complete(State::Done(Err(error.into())))
    }

    fn complete(&self, outcome: State<T>) -> Result<()> {
        {
            let mut state = self.inner.state.borrow_mut();
            if !matches!(*state, State::Pending) {
                return Err(Error::InvalidState("the future is already done"));
            }
            *state = outcome;
        }
        self.schedule_callbacks();
        Ok(())
    }

    /// Schedules every done callback with `call_soon` and wakes every
    /// awaiter, in the order they were added; no borrow is held while either
    /// runs user code.
    fn schedule_callbacks(&self) {
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        if waiters.is_empty() {
            return;
        }
        let lp = &self.inner.event_loop;
        let open = !lp.is_closed();
        for waiter in waiters {
            match waiter {
                // On a closed loop the callbacks cannot be scheduled; they
                // are dropped unrun, like the rest of the loop's pending work.
                Waiter::Callback(_, callback) => {
                    if open {
                        let fut = self.clone();
                        lp.call_soon(move || callback(&fut));
                    }
                }
                Waiter::Wake(waker) => waker.wake(),
            }
        }
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
        self.inner.retrieved.set(true);
        match &*self.inner.state.borrow() {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Done(outcome) => outcome.clone(),
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
        self.inner.retrieved.set(true);
        match &*self.inner.state.borrow() {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Done(Err(e)) => Ok(Some(e.clone())),
            State::Done(Ok(_)) | State::Taken => Ok(None),
            State::Cancelled => Err(Error::Cancelled),
        }
    }

    /// Moves the outcome out (for by-value awaiters and
    /// `run_until_complete`); `None` while pending.
    pub(crate) fn take_outcome(&self) -> Option<Result<T>> {
        self.inner.retrieved.set(true);
        let mut state = self.inner.state.borrow_mut();
        match &*state {
            State::Pending => None,
            State::Cancelled => Some(Err(Error::Cancelled)),
            State::Taken => Some(Err(Error::InvalidState("the result was taken by another awaiter"))),
            State::Done(_) => match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => Some(outcome),
                _ => unreachable!("matched Done above"),
            },
        }
    }

    /// Adds `f` to be called (through `call_soon`) with this future once it
    /// is done; if it is done already, `f` is scheduled now.
    ///
    /// # Panics
    ///
    /// If the future is done and its loop is closed ("event loop is closed").
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        let id = CallbackId(self.inner.next_callback.get());
        self.inner.next_callback.set(id.0 + 1);
        if self.done() {
            let fut = self.clone();
            self.inner.event_loop.call_soon(move || f(&fut));
        } else {
            self.inner.waiters.borrow_mut().push(Waiter::Callback(id, Box::new(f)));
        }
        id
    }

    /// Removes a done callback that has not been scheduled yet; returns
    /// whether it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = {
            let mut waiters = self.inner.waiters.borrow_mut();
            let pos = waiters.iter().position(|w| matches!(w, Waiter::Callback(cid, _) if *cid == id));
            pos.map(|i| waiters.remove(i))
        };
        removed.is_some()
    }

    /// Registers `waker` to be woken on completion (once per task).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut waiters = self.inner.waiters.borrow_mut();
        if !waiters.iter().any(|w| matches!(w, Waiter::Wake(w) if w.will_wake(waker))) {
            waiters.push(Waiter::Wake(waker.clone()));
        }
    }

    /// Takes callbacks and wakers out without running them (loop close);
    /// the caller drops them outside its borrows.
    pub(crate) fn abandon(&self) -> Vec<Waiter<T>> {
        std::mem::take(&mut *self.inner.waiters.borrow_mut())
    }
}

impl<T> Drop for FutureInner<T> {
    fn drop(&mut self) {
        if self.retrieved.get() {
            return;
        }
        let State::Done(Err(error)) = self.state.get_mut() else { return };
        let ctx = ExceptionContext::new("future exception was never retrieved").with_error(error.clone());
        // Report from the loop, not from inside whatever is dropping us.
        let lp = &self.event_loop;
        if lp.is_closed() || lp.inner.ready.try_borrow_mut().is_err() {
            lp.default_exception_handler(&ctx);
        } else {
            let reporter = lp.clone();
            lp.call_soon(move || reporter.call_exception_handler(&ctx));
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.state.borrow() {
            State::Pending => "pending",
            State::Done(Ok(_)) | State::Taken => "finished",
            State::Done(Err(_)) => "failed",
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

impl<T: 'static> FutureOwned<T> {
    /// Makes dropping this awaiter leave the future alone.
    pub(crate) fn disarm(&mut self) {
        self.fut = None;
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
