//! The queues between tasks: [`Queue`] (FIFO), [`LifoQueue`] and
//! [`PriorityQueue`], one engine with three item orders.
//!
//! Invariants: a getter is woken for each item put and a putter for each
//! item taken, and a woken waiter that is dropped passes its turn on, so
//! no item waits while a getter sleeps. After [`shutdown`](Queue::shutdown)
//! (asyncio 3.13) every waiter is woken to re-check: puts fail, gets drain
//! what is left and then fail.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::rc::Rc;

use super::event::Event;
use super::{WaitQueue, pass_on};
use crate::error::{Error, Result};

/// The order a queue hands its items out in.
trait Store<T>: Default {
    fn push(&mut self, item: T);
    fn pop(&mut self) -> Option<T>;
    fn len(&self) -> usize;
}

impl<T> Store<T> for VecDeque<T> {
    fn push(&mut self, item: T) {
        self.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.pop_front()
    }
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
}

/// Last in, first out.
struct Stack<T>(Vec<T>);

impl<T> Default for Stack<T> {
    fn default() -> Self {
        Stack(Vec::new())
    }
}

impl<T> Store<T> for Stack<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A heap entry: the smallest item first, and among equal items the one
/// put first (the sequence number breaks ties).
struct Ranked<T> {
    item: T,
    seq: u64,
}

impl<T: Ord> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord> Eq for Ranked<T> {}

impl<T: Ord> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord> Ord for Ranked<T> {
    // `BinaryHeap` pops the greatest: reverse both keys.
    fn cmp(&self, other: &Self) -> Ordering {
        other.item.cmp(&self.item).then_with(|| other.seq.cmp(&self.seq))
    }
}

struct Heap<T> {
    heap: BinaryHeap<Ranked<T>>,
    next_seq: u64,
}

impl<T: Ord> Default for Heap<T> {
    fn default() -> Self {
        Heap { heap: BinaryHeap::new(), next_seq: 0 }
    }
}

impl<T: Ord> Store<T> for Heap<T> {
    fn push(&mut self, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Ranked { item, seq });
    }
    fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|r| r.item)
    }
    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// The queue engine shared by the three public queue types.
struct Core<T, S> {
    items: RefCell<S>,
    maxsize: usize,
    getters: WaitQueue,
    putters: WaitQueue,
    unfinished: Cell<usize>,
    all_done: Event,
    shut_down: Cell<bool>,
    _item: std::marker::PhantomData<T>,
}

impl<T, S: Store<T>> Core<T, S> {
    fn new(maxsize: usize) -> Rc<Core<T, S>> {
        let all_done = Event::new();
        all_done.set();
        Rc::new(Core {
            items: RefCell::new(S::default()),
            maxsize,
            getters: WaitQueue::default(),
            putters: WaitQueue::default(),
            unfinished: Cell::new(0),
            all_done,
            shut_down: Cell::new(false),
            _item: std::marker::PhantomData,
        })
    }

    fn qsize(&self) -> usize {
        self.items.borrow().len()
    }

    fn full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    fn put_nowait(&self, item: T) -> std::result::Result<(), T> {
        if self.shut_down.get() || self.full() {
            return Err(item);
        }
        self.items.borrow_mut().push(item);
        self.unfinished.set(self.unfinished.get() + 1);
        self.all_done.clear();
        self.getters.grant_one();
        Ok(())
    }

    fn get_nowait(&self) -> Option<T> {
        let item = self.items.borrow_mut().pop();
        if item.is_some() {
            self.putters.grant_one();
        }
        item
    }

    async fn put(&self, item: T) -> std::result::Result<(), T> {
        let mut item = item;
        loop {
            match self.put_nowait(item) {
                Ok(()) => return Ok(()),
                Err(back) if self.shut_down.get() => return Err(back),
                Err(back) => item = back,
            }
            // A putter that was woken but dropped passes the turn on.
            self.putters.wait(pass_on).await;
        }
    }

    async fn get(&self) -> Result<T> {
        loop {
            if let Some(item) = self.get_nowait() {
                return Ok(item);
            }
            if self.shut_down.get() {
                return Err(Error::QueueShutDown);
            }
            self.getters.wait(pass_on).await;
        }
    }

    fn task_done(&self) -> Result<()> {
        let n = self.unfinished.get();
        if n == 0 {
            return Err(Error::InvalidState("task_done() called too many times"));
        }
        self.unfinished.set(n - 1);
        if n == 1 {
            self.all_done.set();
        }
        Ok(())
    }

    fn shutdown(&self, immediate: bool) {
        self.shut_down.set(true);
        if immediate {
            let dropped = std::mem::take(&mut *self.items.borrow_mut());
            let n = dropped.len();
            self.unfinished.set(self.unfinished.get().saturating_sub(n));
            if self.unfinished.get() == 0 {
                self.all_done.set();
            }
            // The items' destructors are user code: no borrow is alive.
            drop(dropped);
        }
        self.getters.grant_all();
        self.putters.grant_all();
    }
}

/// The public methods, the same on the three queue types.
macro_rules! queue_methods {
    ($name:ident, $store:ty, $($bound:tt)*) => {
        impl<T $($bound)*> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name { core: self.core.clone() }
            }
        }

        impl<T $($bound)*> $name<T> {
            /// A queue holding at most `maxsize` items; 0 means unbounded.
            pub fn new(maxsize: usize) -> $name<T> {
                $name { core: Core::<T, $store>::new(maxsize) }
            }

            /// An unbounded queue.
            pub fn unbounded() -> $name<T> {
                $name::new(0)
            }

            /// Items in the queue.
            pub fn qsize(&self) -> usize {
                self.core.qsize()
            }

            /// The bound given to `new` (0: unbounded).
            pub fn maxsize(&self) -> usize {
                self.core.maxsize
            }

            /// Whether the queue is empty.
            pub fn empty(&self) -> bool {
                self.qsize() == 0
            }

            /// Whether the queue is full (never, if unbounded).
            pub fn full(&self) -> bool {
                self.core.full()
            }

            /// Adds `item` if there is room (asyncio's `put_nowait`).
            ///
            /// # Errors
            ///
            /// `Err(item)`, the item handed back, when the queue is full
            /// (asyncio's `QueueFull`) or shut down (`QueueShutDown`;
            /// [`is_shut_down`](Self::is_shut_down) tells which).
            pub fn put_nowait(&self, item: T) -> std::result::Result<(), T> {
                self.core.put_nowait(item)
            }

            /// Takes the next item if there is one (asyncio's `get_nowait`;
            /// `None` where asyncio raises `QueueEmpty`, or `QueueShutDown`
            /// for a shut-down queue that is empty).
            pub fn get_nowait(&self) -> Option<T> {
                self.core.get_nowait()
            }

            /// Adds `item`, waiting while the queue is full.
            ///
            /// # Errors
            ///
            /// `Err(item)`, the item handed back, if the queue is or
            /// gets shut down before there is room (asyncio's
            /// `QueueShutDown`).
            pub async fn put(&self, item: T) -> std::result::Result<(), T> {
                self.core.put(item).await
            }

            /// Takes the next item, waiting while the queue is empty. After
            /// a [`shutdown`](Self::shutdown) the items left are still
            /// handed out; then it fails.
            ///
            /// # Errors
            ///
            /// [`Error::QueueShutDown`] once the queue is shut down and
            /// empty.
            pub async fn get(&self) -> Result<T> {
                self.core.get().await
            }

            /// Marks one item taken with `get` as processed.
            ///
            /// # Errors
            ///
            /// [`Error::InvalidState`] if called more times than items were
            /// put.
            pub fn task_done(&self) -> Result<()> {
                self.core.task_done()
            }

            /// Waits until every item put has been marked done (or dropped
            /// by an immediate shutdown).
            pub async fn join(&self) {
                self.core.all_done.wait().await;
            }

            /// Shuts the queue down (asyncio 3.13's `shutdown`): later puts
            /// fail and give their item back, waiting putters and getters
            /// are woken; getters take what is left, then get
            /// [`Error::QueueShutDown`]. With `immediate`, the items left
            /// are dropped at once (each counts as done, so `join` wakes)
            /// and every get fails.
            pub fn shutdown(&self, immediate: bool) {
                self.core.shutdown(immediate);
            }

            /// Whether [`shutdown`](Self::shutdown) was called.
            pub fn is_shut_down(&self) -> bool {
                self.core.shut_down.get()
            }
        }

        impl<T $($bound)*> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("qsize", &self.qsize())
                    .field("maxsize", &self.core.maxsize)
                    .field("shut_down", &self.is_shut_down())
                    .finish()
            }
        }
    };
}

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
///             producer.put(i).await.unwrap();
///         }
///         producer.shutdown(false);
///     });
///     let mut total = 0;
///     while let Ok(item) = queue.get().await {
///         total += item;
///         queue.task_done().unwrap();
///     }
///     queue.join().await;
///     total
/// })?;
/// assert_eq!(total, 55);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Queue<T> {
    core: Rc<Core<T, VecDeque<T>>>,
}

queue_methods!(Queue, VecDeque<T>,);

/// A queue that hands out the item put last first (asyncio's
/// `LifoQueue`); otherwise as [`Queue`].
///
/// # Examples
///
/// ```
/// use evloop::sync::LifoQueue;
/// let queue = LifoQueue::unbounded();
/// for i in 1..=3 {
///     queue.put_nowait(i).unwrap();
/// }
/// assert_eq!([queue.get_nowait(), queue.get_nowait()], [Some(3), Some(2)]);
/// ```
pub struct LifoQueue<T> {
    core: Rc<Core<T, Stack<T>>>,
}

queue_methods!(LifoQueue, Stack<T>,);

/// A queue that hands out its smallest item first (asyncio's
/// `PriorityQueue`); otherwise as [`Queue`].
///
/// Items that compare equal come out in the order they were put: asyncio
/// keeps `heapq` order, where equal `(priority, data)` tuples fall back to
/// comparing `data`; evloop numbers each put instead, so equal priorities
/// are FIFO and the data need not be comparable. To order by a key alone,
/// give the item type an `Ord` on that key (or put `(priority, seq)`
/// pairs); for the largest first, wrap items in [`std::cmp::Reverse`].
///
/// # Examples
///
/// ```
/// use evloop::sync::PriorityQueue;
/// let queue = PriorityQueue::unbounded();
/// for job in [(2, 'a'), (1, 'b'), (2, 'c'), (1, 'd')] {
///     queue.put_nowait(job).unwrap();
/// }
/// let order: Vec<_> = std::iter::from_fn(|| queue.get_nowait()).collect();
/// assert_eq!(order, [(1, 'b'), (1, 'd'), (2, 'a'), (2, 'c')]);
/// ```
pub struct PriorityQueue<T: Ord> {
    core: Rc<Core<T, Heap<T>>>,
}

queue_methods!(PriorityQueue, Heap<T>, : Ord);
