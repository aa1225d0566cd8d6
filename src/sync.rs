//! asyncio's synchronization primitives for tasks on one loop: [`Event`],
//! [`Lock`], [`Semaphore`] and [`Queue`].
//!
//! They are single-threaded (`!Send`) and fair: waiters are served first in,
//! first out. A waiter that is dropped (its task cancelled) leaves the queue,
//! and anything it was handed is passed on to the next waiter.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

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
}

fn grant(waiter: &Waiter) {
    waiter.granted.set(true);
    let waker = waiter.waker.borrow_mut().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

// ------------------------------------------------------------------ Event

/// A flag tasks can wait for (asyncio's `Event`).
///
/// # Examples
///
/// ```
/// use evloop::sync::Event;
/// evloop::run(async {
///     let event = Event::new();
///     let setter = event.clone();
///     evloop::spawn(async move { setter.set() });
///     event.wait().await;
///     assert!(event.is_set());
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventInner>,
}

#[derive(Default)]
struct EventInner {
    set: Cell<bool>,
    waiters: WaitQueue,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.inner.set.set(true);
        self.inner.waiters.grant_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.inner.set.set(false);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Waits until the flag is set (returns at once if it is).
    pub async fn wait(&self) {
        if self.is_set() {
            return;
        }
        let waiter = self.inner.waiters.push();
        WaitGranted { queue: &self.inner.waiters, waiter: Some(waiter), on_abandon: |_| {} }.await;
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
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

// ------------------------------------------------------------------- Lock

/// A mutual-exclusion lock for tasks (asyncio's `Lock`). Waiters acquire
/// it in FIFO order: `release` hands the lock straight to the first waiter.
///
/// # Examples
///
/// ```
/// use evloop::sync::Lock;
/// evloop::run(async {
///     let lock = Lock::new();
///     let guard = lock.acquire().await;
///     assert!(lock.locked());
///     drop(guard);
///     assert!(!lock.locked());
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Lock {
    inner: Rc<LockInner>,
}

#[derive(Default)]
struct LockInner {
    locked: Cell<bool>,
    waiters: WaitQueue,
}

impl LockInner {
    /// Passes the lock to the next waiter, or unlocks it.
    fn release(&self) {
        if !self.waiters.grant_one() {
            self.locked.set(false);
        }
    }
}

/// Holds a [`Lock`]; dropping it releases the lock.
pub struct LockGuard {
    lock: Rc<LockInner>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock::default()
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// Takes the lock now if it is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<LockGuard> {
        if self.inner.locked.get() || !self.inner.waiters.is_empty() {
            return None;
        }
        self.inner.locked.set(true);
        Some(LockGuard { lock: self.inner.clone() })
    }

    /// Waits for the lock; waiters get it in the order they asked.
    pub async fn acquire(&self) -> LockGuard {
        if let Some(guard) = self.try_acquire() {
            return guard;
        }
        let waiter = self.inner.waiters.push();
        let lock = self.inner.clone();
        // A waiter dropped after being handed the lock passes it on.
        WaitGranted { queue: &self.inner.waiters, waiter: Some(waiter), on_abandon: move |_| lock.release() }
            .await;
        LockGuard { lock: self.inner.clone() }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).finish()
    }
}

// -------------------------------------------------------------- Semaphore

/// A counter of permits (asyncio's `Semaphore`): `acquire` waits while none
/// is left; waiters are served FIFO.
///
/// # Examples
///
/// ```
/// use evloop::sync::Semaphore;
/// evloop::run(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await;
///     let _b = sem.acquire().await;
///     assert!(sem.locked());
///     drop(a);
///     assert_eq!(sem.available(), 1);
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemaphoreInner>,
}

struct SemaphoreInner {
    permits: Cell<usize>,
    waiters: WaitQueue,
}

impl SemaphoreInner {
    fn release(&self) {
        if !self.waiters.grant_one() {
            self.permits.set(self.permits.get() + 1);
        }
    }
}

/// One permit of a [`Semaphore`], returned when dropped.
pub struct SemaphorePermit {
    sem: Option<Rc<SemaphoreInner>>,
}

impl SemaphorePermit {
    /// Keeps the permit: it is not returned to the semaphore.
    pub fn forget(mut self) {
        self.sem = None;
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            sem.release();
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphorePermit")
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            inner: Rc::new(SemaphoreInner { permits: Cell::new(permits), waiters: WaitQueue::default() }),
        }
    }

    /// Permits available now.
    pub fn available(&self) -> usize {
        self.inner.permits.get()
    }

    /// Whether `acquire` would wait.
    pub fn locked(&self) -> bool {
        self.inner.permits.get() == 0 || !self.inner.waiters.is_empty()
    }

    /// Adds a permit (asyncio's `release()` without a matching acquire),
    /// serving the first waiter if there is one.
    pub fn release(&self) {
        self.inner.release();
    }

    /// Takes a permit now if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        if self.locked() {
            return None;
        }
        self.inner.permits.set(self.inner.permits.get() - 1);
        Some(SemaphorePermit { sem: Some(self.inner.clone()) })
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> SemaphorePermit {
        if let Some(permit) = self.try_acquire() {
            return permit;
        }
        let waiter = self.inner.waiters.push();
        let sem = self.inner.clone();
        WaitGranted { queue: &self.inner.waiters, waiter: Some(waiter), on_abandon: move |_| sem.release() }
            .await;
        SemaphorePermit { sem: Some(self.inner.clone()) }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("available", &self.available()).finish()
    }
}

// ------------------------------------------------------------------ Queue

/// A FIFO queue between tasks (asyncio's `Queue`), bounded (`maxsize > 0`)
/// or unbounded (`maxsize == 0`). `put` waits while the queue is full, `get`
/// while it is empty; `join` waits until every item put has been marked
/// done with `task_done`.
///
/// # Examples
///
/// ```
/// use evloop::sync::Queue;
/// let total = evloop::run(async {
///     let queue = Queue::new(2);
///     let producer = queue.clone();
///     evloop::spawn(async move {
///         for i in 1..=10 {
///             producer.put(i).await;
///         }
///     });
///     let mut total = 0;
///     for _ in 0..10 {
///         total += queue.get().await;
///         queue.task_done().unwrap();
///     }
///     queue.join().await;
///     total
/// })?;
/// assert_eq!(total, 55);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Queue<T> {
    inner: Rc<QueueInner<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { inner: self.inner.clone() }
    }
}

struct QueueInner<T> {
    items: RefCell<VecDeque<T>>,
    maxsize: usize,
    getters: WaitQueue,
    putters: WaitQueue,
    unfinished: Cell<usize>,
    all_done: Event,
}

impl<T> Queue<T> {
    /// A queue holding at most `maxsize` items; 0 means unbounded.
    pub fn new(maxsize: usize) -> Queue<T> {
        let all_done = Event::new();
        all_done.set();
        Queue {
            inner: Rc::new(QueueInner {
                items: RefCell::new(VecDeque::new()),
                maxsize,
                getters: WaitQueue::default(),
                putters: WaitQueue::default(),
                unfinished: Cell::new(0),
                all_done,
            }),
        }
    }

    /// An unbounded queue.
    pub fn unbounded() -> Queue<T> {
        Queue::new(0)
    }

    /// Items in the queue.
    pub fn qsize(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// The bound given to `new` (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue is full (never, if unbounded).
    pub fn full(&self) -> bool {
        self.inner.maxsize > 0 && self.qsize() >= self.inner.maxsize
    }

    /// Adds `item` if there is room (asyncio's `put_nowait`); gives it back
    /// if the queue is full (asyncio raises `QueueFull`).
    ///
    /// # Errors
    ///
    /// `Err(item)` when the queue is full.
    pub fn put_nowait(&self, item: T) -> std::result::Result<(), T> {
        if self.full() {
            return Err(item);
        }
        self.inner.items.borrow_mut().push_back(item);
        self.inner.unfinished.set(self.inner.unfinished.get() + 1);
        self.inner.all_done.clear();
        self.inner.getters.grant_one();
        Ok(())
    }

    /// Takes the first item if there is one (asyncio's `get_nowait`; `None`
    /// where asyncio raises `QueueEmpty`).
    pub fn get_nowait(&self) -> Option<T> {
        let item = self.inner.items.borrow_mut().pop_front();
        if item.is_some() {
            self.inner.putters.grant_one();
        }
        item
    }

    /// Adds `item`, waiting while the queue is full.
    pub async fn put(&self, item: T) {
        let mut item = item;
        loop {
            match self.put_nowait(item) {
                Ok(()) => return,
                Err(back) => item = back,
            }
            let waiter = self.inner.putters.push();
            // A putter that was woken but dropped passes the turn on.
            WaitGranted {
                queue: &self.inner.putters,
                waiter: Some(waiter),
                on_abandon: |q: &WaitQueue| {
                    q.grant_one();
                },
            }
            .await;
        }
    }

    /// Takes the first item, waiting while the queue is empty.
    pub async fn get(&self) -> T {
        loop {
            if let Some(item) = self.get_nowait() {
                return item;
            }
            let waiter = self.inner.getters.push();
            WaitGranted {
                queue: &self.inner.getters,
                waiter: Some(waiter),
                on_abandon: |q: &WaitQueue| {
                    q.grant_one();
                },
            }
            .await;
        }
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        let n = self.inner.unfinished.get();
        if n == 0 {
            return Err(Error::InvalidState("task_done() called too many times"));
        }
        self.inner.unfinished.set(n - 1);
        if n == 1 {
            self.inner.all_done.set();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done.
    pub async fn join(&self) {
        self.inner.all_done.wait().await;
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("qsize", &self.qsize()).field("maxsize", &self.inner.maxsize).finish()
    }
}
