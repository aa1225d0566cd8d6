//! Behaviour of `evloop::sync`: Event, Lock, Semaphore and Queue.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::Error;
use evloop::sync::{Event, Lock, Queue, Semaphore};
use util::{DropCounter, Recorder, manual_loop};

// ------------------------------------------------------------------ Queue

#[test]
fn bounded_queue_blocks_the_producer_and_delivers_everything_in_order() {
    const ITEMS: u32 = 20;
    let lp = manual_loop();
    let queue = Queue::<u32>::new(3);
    let puts = Recorder::<u32>::new();

    let (q, p) = (queue.clone(), puts.clone());
    let producer = lp.create_task(async move {
        for i in 0..ITEMS {
            q.put(i).await;
            p.push(i);
        }
    });
    let q = queue.clone();
    let joiner = lp.create_task(async move { q.join().await });
    lp.run_until_idle().unwrap();

    // Nobody consumes yet: the producer stopped at the fourth put.
    assert_eq!(puts.get(), [0, 1, 2]);
    assert_eq!(queue.qsize(), 3);
    assert!(queue.full());
    assert!(!producer.done());
    assert!(!joiner.done(), "join waits for unfinished items");

    let received = Recorder::<u32>::new();
    let max_seen = Rc::new(Cell::new(0));
    let last_done = Event::new();
    let (q, r, m, last) = (queue.clone(), received.clone(), max_seen.clone(), last_done.clone());
    let consumer = lp.create_task(async move {
        for n in 0..ITEMS {
            m.set(m.get().max(q.qsize()));
            assert!(q.qsize() <= 3, "the queue never holds more than maxsize");
            let item = q.get().await;
            r.push(item);
            evloop::yield_now().await;
            if n + 1 == ITEMS {
                // Hold back the last task_done until the test says so.
                last.wait().await;
            }
            q.task_done().unwrap();
        }
    });
    lp.run_until_idle().unwrap();
    assert!(producer.done());
    assert_eq!(received.get(), (0..ITEMS).collect::<Vec<_>>());
    assert_eq!(max_seen.get(), 3);
    assert!(queue.empty());
    assert!(!consumer.done());
    assert!(!joiner.done(), "one item is not marked done yet");

    last_done.set();
    lp.run_until_idle().unwrap();
    assert!(consumer.done());
    assert!(joiner.done());
    consumer.result().unwrap();
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn waiting_getters_are_served_in_order() {
    let lp = manual_loop();
    let queue = Queue::<&'static str>::unbounded();
    let got = Recorder::<(u32, &'static str)>::new();
    for id in 0..3 {
        let (q, g) = (queue.clone(), got.clone());
        lp.create_task(async move { g.push((id, q.get().await)) });
    }
    lp.run_until_idle().unwrap();
    assert!(got.is_empty());
    for item in ["a", "b", "c"] {
        queue.put_nowait(item).unwrap();
    }
    lp.run_until_idle().unwrap();
    assert_eq!(got.get(), [(0, "a"), (1, "b"), (2, "c")]);
}

#[test]
fn queue_nowait_operations_and_task_done_accounting() {
    let queue = Queue::<Box<u32>>::new(2);
    assert_eq!(queue.maxsize(), 2);
    assert!(queue.get_nowait().is_none(), "get_nowait on an empty queue");
    queue.put_nowait(Box::new(1)).unwrap();
    queue.put_nowait(Box::new(2)).unwrap();
    assert!(queue.full());
    let rejected = Box::new(3);
    let address = &*rejected as *const u32;
    let back = queue.put_nowait(rejected).unwrap_err();
    assert_eq!(*back, 3);
    assert_eq!(&*back as *const u32, address, "the very item is handed back");
    assert_eq!(queue.qsize(), 2);

    assert_eq!(*queue.get_nowait().unwrap(), 1);
    assert_eq!(*queue.get_nowait().unwrap(), 2);
    assert!(queue.get_nowait().is_none());
    queue.task_done().unwrap();
    queue.task_done().unwrap();
    assert!(matches!(queue.task_done(), Err(Error::InvalidState(_))), "more task_done than puts");

    let unbounded = Queue::<u32>::unbounded();
    for i in 0..1000 {
        unbounded.put_nowait(i).unwrap();
    }
    assert!(!unbounded.full());
    assert_eq!(unbounded.qsize(), 1000);
}

#[test]
fn a_cancelled_getter_gives_its_item_to_the_next() {
    let lp = manual_loop();
    let queue = Queue::<u32>::unbounded();
    let got = Recorder::<(u32, u32)>::new();
    let tasks: Vec<_> = (0..2)
        .map(|id| {
            let (q, g) = (queue.clone(), got.clone());
            lp.create_task(async move { g.push((id, q.get().await)) })
        })
        .collect();
    lp.run_until_idle().unwrap();
    // The first getter is woken, then cancelled before it runs: the item
    // stays in the queue and the turn passes on.
    queue.put_nowait(7).unwrap();
    tasks[0].cancel();
    lp.run_until_idle().unwrap();
    assert!(tasks[0].cancelled());
    assert_eq!(got.get(), [(1, 7)]);
}

// ------------------------------------------------------------------- Lock

/// Spawns `n` tasks that each take `lock`, record their id, hold it across
/// a yield (checking nobody else holds it) and release it.
fn contenders(lp: &evloop::EventLoop, lock: &Lock, n: u32, order: &Recorder<u32>) -> Vec<evloop::Task<()>> {
    let holders = Rc::new(Cell::new(0));
    (0..n)
        .map(|id| {
            let (lock, order, holders) = (lock.clone(), order.clone(), holders.clone());
            lp.create_task(async move {
                let guard = lock.acquire().await;
                holders.set(holders.get() + 1);
                assert_eq!(holders.get(), 1, "mutual exclusion");
                order.push(id);
                evloop::yield_now().await;
                holders.set(holders.get() - 1);
                drop(guard);
            })
        })
        .collect()
}

#[test]
fn lock_is_granted_in_request_order() {
    let lp = manual_loop();
    let lock = Lock::new();
    let held = lock.try_acquire().expect("a free lock");
    assert!(lock.locked());
    assert!(lock.try_acquire().is_none());
    let order = Recorder::new();
    let tasks = contenders(&lp, &lock, 5, &order);
    lp.run_until_idle().unwrap();
    assert!(order.is_empty(), "everyone waits while the lock is held");

    drop(held);
    assert!(lock.locked(), "release hands the lock straight to the first waiter");
    assert!(lock.try_acquire().is_none(), "no barging past the waiters");
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 1, 2, 3, 4]);
    assert!(tasks.iter().all(|t| t.done()));
    assert!(!lock.locked());
}

#[test]
fn a_waiter_cancelled_while_queued_is_skipped() {
    let lp = manual_loop();
    let lock = Lock::new();
    let held = lock.try_acquire().unwrap();
    let order = Recorder::new();
    let tasks = contenders(&lp, &lock, 4, &order);
    lp.run_until_idle().unwrap();
    tasks[1].cancel();
    lp.run_until_idle().unwrap();
    assert!(tasks[1].cancelled());
    drop(held);
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 2, 3]);
    assert!(!lock.locked());
}

#[test]
fn a_waiter_cancelled_right_after_being_granted_passes_the_lock_on() {
    let lp = manual_loop();
    let lock = Lock::new();
    let held = lock.try_acquire().unwrap();
    let order = Recorder::new();
    let tasks = contenders(&lp, &lock, 3, &order);
    lp.run_until_idle().unwrap();

    // Grant the lock to task 0, then cancel it before it gets to run.
    drop(held);
    assert!(lock.locked());
    tasks[0].cancel();
    lp.run_until_idle().unwrap();
    assert!(tasks[0].cancelled());
    assert_eq!(order.get(), [1, 2]);
    assert!(!lock.locked(), "the lock was not leaked by the cancelled waiter");
}

// -------------------------------------------------------------- Semaphore

#[test]
fn semaphore_counts_permits_and_serves_waiters_in_order() {
    let lp = manual_loop();
    let sem = Semaphore::new(2);
    assert_eq!(sem.available(), 2);
    let order = Recorder::<u32>::new();
    let releases: Vec<Event> = (0..5).map(|_| Event::new()).collect();
    let holding = Rc::new(Cell::new(0));
    let max_holding = Rc::new(Cell::new(0));
    for id in 0..5u32 {
        let (sem, order, release) = (sem.clone(), order.clone(), releases[id as usize].clone());
        let (holding, max_holding) = (holding.clone(), max_holding.clone());
        lp.create_task(async move {
            let permit = sem.acquire().await;
            holding.set(holding.get() + 1);
            max_holding.set(max_holding.get().max(holding.get()));
            order.push(id);
            release.wait().await;
            holding.set(holding.get() - 1);
            drop(permit);
        });
    }
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 1]);
    assert_eq!(sem.available(), 0);
    assert!(sem.locked());
    assert!(sem.try_acquire().is_none());

    // Release out of order: the freed permit goes to the first waiter.
    releases[1].set();
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 1, 2]);
    releases[0].set();
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 1, 2, 3]);
    for r in &releases {
        r.set();
    }
    lp.run_until_idle().unwrap();
    assert_eq!(order.get(), [0, 1, 2, 3, 4]);
    assert_eq!(max_holding.get(), 2, "never more holders than permits");
    assert_eq!(sem.available(), 2, "every permit came back");
    assert!(!sem.locked());
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn semaphore_release_forget_and_try_acquire() {
    let sem = Semaphore::new(1);
    let permit = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_none());
    permit.forget();
    assert_eq!(sem.available(), 0, "a forgotten permit is not returned");
    sem.release();
    assert_eq!(sem.available(), 1);
    sem.release();
    assert_eq!(sem.available(), 2, "release without acquire adds a permit");
    let a = sem.try_acquire().unwrap();
    let b = sem.try_acquire().unwrap();
    assert!(sem.locked());
    drop((a, b));
    assert_eq!(sem.available(), 2);
}

#[test]
fn a_semaphore_waiter_cancelled_after_being_granted_passes_the_permit_on() {
    let lp = manual_loop();
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let order = Recorder::<u32>::new();
    let drops = DropCounter::new();
    let tasks: Vec<_> = (0..2u32)
        .map(|id| {
            let (sem, order, token) = (sem.clone(), order.clone(), DropCounter::token(&drops));
            lp.create_task(async move {
                let _token = token;
                let _permit = sem.acquire().await;
                order.push(id);
            })
        })
        .collect();
    lp.run_until_idle().unwrap();
    drop(held);
    tasks[0].cancel();
    lp.run_until_idle().unwrap();
    assert!(tasks[0].cancelled());
    assert_eq!(order.get(), [1]);
    assert_eq!(drops.get(), 2);
    assert_eq!(sem.available(), 1);
}

// ------------------------------------------------------------------ Event

#[test]
fn event_set_wakes_every_waiter() {
    let lp = manual_loop();
    let event = Event::new();
    let woke = Recorder::<u32>::new();
    let tasks: Vec<_> = (0..3u32)
        .map(|id| {
            let (event, woke) = (event.clone(), woke.clone());
            lp.create_task(async move {
                event.wait().await;
                woke.push(id);
            })
        })
        .collect();
    lp.run_until_idle().unwrap();
    assert!(woke.is_empty());
    assert!(!event.is_set());

    let setter = event.clone();
    lp.call_later(Duration::from_secs(1), move || setter.set());
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert!(event.is_set());
    assert_eq!(woke.get(), [0, 1, 2]);
    assert!(tasks.iter().all(|t| t.done()));

    // Set: wait returns at once. Cleared: a new waiter blocks again.
    let e = event.clone();
    let immediate = lp.create_task(async move { e.wait().await });
    lp.run_until_idle().unwrap();
    assert!(immediate.done());
    event.clear();
    assert!(!event.is_set());
    let e = event.clone();
    let blocked = lp.create_task(async move { e.wait().await });
    lp.run_until_idle().unwrap();
    assert!(!blocked.done());
    event.set();
    lp.run_until_idle().unwrap();
    assert!(blocked.done());
}
