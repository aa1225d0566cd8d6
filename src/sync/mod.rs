//! asyncio's synchronization primitives for tasks on one loop: [`Event`],
//! [`Lock`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Barrier`], and the queues [`Queue`], [`LifoQueue`] and
//! [`PriorityQueue`].
//!
//! They are single-threaded (`!Send`) and fair: waiters are served first in,
//! first out. A waiter that is dropped (its task cancelled) leaves the queue,
//! and anything it was handed is passed on to the next waiter. Every
//! primitive is built on one kit, the `WaitQueue` here: a FIFO of
//! waiters, each granted at most once, woken with no borrow held.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

mod barrier;
mod condition;
mod event;
mod lock;
mod queue;
mod semaphore;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use queue::{LifoQueue, PriorityQueue, Queue};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphorePermit};

/// One task waiting in a [`WaitQueue`].
#[derive(Default)]
struct Waiter {
    /// Set when the waiter is served (given the lock, a permit, a wake-up).
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Waiter {
    fn poll_granted(&self, cx: &Context<'_>) -> bool {
        if self.granted.get() {
            return true;
        }
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        false
    }
}

/// A FIFO of waiting tasks.
#[derive(Default)]
struct WaitQueue {
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl WaitQueue {
    fn push(&self) -> Rc<Waiter> {
        let waiter = Rc::new(Waiter::default());
        self.waiters.borrow_mut().push_back(waiter.clone());
        waiter
    }

    fn is_empty(&self) -> bool {
        self.waiters.borrow().is_empty()
    }

    fn len(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Serves the first waiter; false if there is none.
    fn grant_one(&self) -> bool {
        let first = self.waiters.borrow_mut().pop_front();
        match first {
            Some(waiter) => {
                grant(&waiter);
                true
            }
            None => false,
        }
    }

    /// Serves up to `n` waiters; returns how many were served.
    fn grant_many(&self, n: usize) -> usize {
        let mut served = 0;
        while served < n && self.grant_one() {
            served += 1;
        }
        served
    }

    fn grant_all(&self) {
        let all = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in all {
            grant(&waiter);
        }
    }

    /// Removes a waiter that gave up; returns whether it was still queued
    /// (false: it had already been served).
    fn remove(&self, waiter: &Rc<Waiter>) -> bool {
        let mut waiters = self.waiters.borrow_mut();
        match waiters.iter().position(|w| Rc::ptr_eq(w, waiter)) {
            Some(i) => {
                waiters.remove(i);
                true
            }
            None => false,
        }
    }

    /// Waits for one grant from this queue; see [`WaitGranted`].
    fn wait<F: Fn(&WaitQueue) + Unpin>(&self, on_abandon: F) -> WaitGranted<'_, F> {
        WaitGranted { queue: self, waiter: Some(self.push()), on_abandon }
    }
}

fn grant(waiter: &Waiter) {
    waiter.granted.set(true);
    let waker = waiter.waker.borrow_mut().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Waits for `waiter` to be granted. If dropped first, it leaves the queue;
/// if it was granted but never saw it, `on_abandon` passes the grant on.
struct WaitGranted<'a, F: Fn(&WaitQueue)> {
    queue: &'a WaitQueue,
    waiter: Option<Rc<Waiter>>,
    on_abandon: F,
}

impl<F: Fn(&WaitQueue) + Unpin> std::future::Future for WaitGranted<'_, F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waiter = self.waiter.as_ref().expect("polled after completion");
        if waiter.poll_granted(cx) {
            self.waiter = None;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<F: Fn(&WaitQueue)> Drop for WaitGranted<'_, F> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take()
            && !self.queue.remove(&waiter)
        {
            (self.on_abandon)(self.queue);
        }
    }
}

/// An `on_abandon` for waiters of a broadcast (every waiter re-checks its
/// condition): a missed wake-up needs no passing on.
fn ignore_abandon(_: &WaitQueue) {}

/// An `on_abandon` that passes a missed turn to the next waiter.
fn pass_on(queue: &WaitQueue) {
    queue.grant_one();
}
