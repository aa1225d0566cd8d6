//! Behaviour of `evloop::sync`: Event, Lock, Condition, Semaphore,
//! BoundedSemaphore, Barrier and the queues.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::Error;
use evloop::sync::{
    Barrier, BoundedSemaphore, Condition, Event, LifoQueue, Lock, PriorityQueue, Queue, Semaphore,
};
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
            q.put(i).await.unwrap();
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
            let item = q.get().await.unwrap();
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
        lp.create_task(async move { g.push((id, q.get().await.unwrap())) });
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
            lp.create_task(async move { g.push((id, q.get().await.unwrap())) })
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

// -------------------------------------------------------------- Condition

#[test]
fn condition_wait_for_wakes_only_when_the_predicate_holds() {
    let lp = manual_loop();
    let cond = Condition::new();
    let value = Rc::new(Cell::new(0));
    let checks = Rc::new(Cell::new(0));
    let (c, v, n) = (cond.clone(), value.clone(), checks.clone());
    let waiter = lp.create_task(async move {
        let guard = c.acquire().await;
        let guard = c
            .wait_for(guard, || {
                n.set(n.get() + 1);
                v.get() >= 3
            })
            .await;
        assert!(c.locked(), "wait_for returns with the lock held");
        drop(guard);
        v.get()
    });
    lp.run_until_idle().unwrap();
    assert_eq!(checks.get(), 1, "checked once before waiting");
    assert_eq!(cond.waiters(), 1);
    assert!(!cond.locked(), "the lock is released while waiting");

    for i in 1..=3 {
        let (c, v) = (cond.clone(), value.clone());
        lp.create_task(async move {
            let _guard = c.acquire().await;
            v.set(i);
            c.notify_all().unwrap();
        });
        lp.run_until_idle().unwrap();
        assert_eq!(checks.get(), 1 + i, "re-checked after each notify");
        assert_eq!(waiter.done(), i == 3, "woken for good only once the predicate holds");
    }
    assert_eq!(waiter.result().unwrap(), 3);
}

#[test]
fn condition_notify_wakes_n_waiters_in_order_and_needs_the_lock() {
    let lp = manual_loop();
    let cond = Condition::new();
    assert!(matches!(cond.notify(1), Err(Error::InvalidState(_))), "notify without the lock");
    let woken = Recorder::<u32>::new();
    for id in 0..4 {
        let (c, w) = (cond.clone(), woken.clone());
        lp.create_task(async move {
            let guard = c.acquire().await;
            let _guard = c.wait(guard).await;
            w.push(id);
        });
    }
    lp.run_until_idle().unwrap();
    assert_eq!(cond.waiters(), 4);
    let c = cond.clone();
    lp.create_task(async move {
        let _guard = c.acquire().await;
        c.notify(2).unwrap();
    });
    lp.run_until_idle().unwrap();
    assert_eq!(woken.get(), [0, 1]);
    let c = cond.clone();
    lp.create_task(async move {
        let _guard = c.acquire().await;
        c.notify_all().unwrap();
    });
    lp.run_until_idle().unwrap();
    assert_eq!(woken.get(), [0, 1, 2, 3]);
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn condition_shares_the_lock_it_is_given() {
    let lp = manual_loop();
    let lock = Lock::new();
    let cond = Condition::with_lock(lock.clone());
    let held = lp.run_until_complete(async move {
        let guard = cond.acquire().await;
        let shared = lock.locked();
        cond.release(guard);
        (shared, lock.locked())
    });
    assert_eq!(held.unwrap(), (true, false));
}

#[test]
fn a_notified_waiter_that_is_cancelled_passes_the_notification_on() {
    let lp = manual_loop();
    let cond = Condition::new();
    let woken = Recorder::<u32>::new();
    let dropped = DropCounter::new();
    let tasks: Vec<_> = (0..2)
        .map(|id| {
            let (c, w, token) = (cond.clone(), woken.clone(), DropCounter::token(&dropped));
            lp.create_task(async move {
                let _token = token;
                let guard = c.acquire().await;
                let _guard = c.wait(guard).await;
                w.push(id);
            })
        })
        .collect();
    lp.run_until_idle().unwrap();
    let c = cond.clone();
    let t0 = tasks[0].clone();
    lp.create_task(async move {
        let _guard = c.acquire().await;
        c.notify(1).unwrap();
        // Notified, then cancelled before it runs.
        t0.cancel();
    });
    lp.run_until_idle().unwrap();
    assert!(tasks[0].cancelled());
    assert_eq!(woken.get(), [1], "the second waiter got the notification");
    assert_eq!(dropped.get(), 2);
    assert!(!cond.locked());
    assert_eq!(cond.waiters(), 0);
}

// ---------------------------------------------------------------- Barrier

#[test]
fn barrier_of_three_releases_all_with_their_indexes_and_is_reusable() {
    let lp = manual_loop();
    let barrier = Barrier::new(3);
    for round in 0..2 {
        let got = Recorder::<(u32, usize)>::new();
        for id in 0..3 {
            let (b, g) = (barrier.clone(), got.clone());
            lp.create_task(async move { g.push((id, b.wait().await.unwrap())) });
            lp.run_until_idle().unwrap();
            if id < 2 {
                assert!(got.is_empty(), "round {round}: nobody passes before the third");
                assert_eq!(barrier.n_waiting(), id as usize + 1);
            }
        }
        lp.run_until_idle().unwrap();
        let mut seen = got.get();
        seen.sort();
        assert_eq!(seen, [(0, 0), (1, 1), (2, 2)], "round {round}: index = arrival order");
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
    }
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn barrier_of_three_breaks_when_a_waiter_is_cancelled() {
    let lp = manual_loop();
    let barrier = Barrier::new(3);
    let dropped = DropCounter::new();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (b, token) = (barrier.clone(), DropCounter::token(&dropped));
            lp.create_task(async move {
                let _token = token;
                b.wait().await
            })
        })
        .collect();
    lp.run_until_idle().unwrap();
    assert_eq!(barrier.n_waiting(), 2);
    tasks[1].cancel();
    lp.run_until_idle().unwrap();
    assert!(tasks[1].cancelled());
    assert!(barrier.broken());
    assert!(matches!(tasks[0].result().unwrap(), Err(Error::BrokenBarrier)));
    assert_eq!(dropped.get(), 2, "both waiters are freed");

    // Broken until reset: a newcomer fails at once.
    let b = barrier.clone();
    let late = lp.run_until_complete(async move { b.wait().await }).unwrap();
    assert!(matches!(late, Err(Error::BrokenBarrier)));
    barrier.reset();
    assert!(!barrier.broken());
    let b = barrier.clone();
    let one = lp.create_task(async move { b.wait().await });
    lp.run_until_idle().unwrap();
    assert_eq!(barrier.n_waiting(), 1, "usable again after reset");
    drop(one);
}

#[test]
fn barrier_abort_and_reset_fail_the_waiters() {
    let lp = manual_loop();
    let barrier = Barrier::new(3);
    let spawn_two = |lp: &evloop::EventLoop| -> Vec<_> {
        (0..2)
            .map(|_| {
                let b = barrier.clone();
                lp.create_task(async move { b.wait().await })
            })
            .collect()
    };
    let waiting = spawn_two(&lp);
    lp.run_until_idle().unwrap();
    barrier.abort();
    lp.run_until_idle().unwrap();
    for t in &waiting {
        assert!(matches!(t.result().unwrap(), Err(Error::BrokenBarrier)));
    }
    barrier.reset();
    let waiting = spawn_two(&lp);
    lp.run_until_idle().unwrap();
    barrier.reset();
    lp.run_until_idle().unwrap();
    for t in &waiting {
        assert!(matches!(t.result().unwrap(), Err(Error::BrokenBarrier)), "reset fails the waiters");
    }
    assert!(!barrier.broken(), "reset leaves it usable");
    assert_eq!(barrier.parties(), 3);
}

// ------------------------------------------------------- BoundedSemaphore

#[test]
fn bounded_semaphore_release_above_the_initial_value_is_an_error() {
    let lp = manual_loop();
    let sem = BoundedSemaphore::new(2);
    assert!(matches!(sem.release(), Err(Error::InvalidState(_))));
    assert_eq!(sem.available(), 2, "a refused release changes nothing");
    let s = sem.clone();
    lp.run_until_complete(async move {
        let a = s.acquire().await;
        s.acquire().await.forget();
        assert!(s.locked());
        drop(a);
        s.release().unwrap();
        assert_eq!(s.available(), 2);
        assert!(s.release().is_err());
    })
    .unwrap();
    // A release with a waiter hands the permit over.
    sem.try_acquire().unwrap().forget();
    sem.try_acquire().unwrap().forget();
    let s = sem.clone();
    let waiter = lp.create_task(async move { s.acquire().await.forget() });
    lp.run_until_idle().unwrap();
    sem.release().unwrap();
    lp.run_until_idle().unwrap();
    assert!(waiter.done());
    assert_eq!(sem.available(), 0);
}

// ---------------------------------------------------- Priority/Lifo queues

/// A job ordered by its priority alone: equal priorities compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job(u32, &'static str);

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[test]
fn priority_queue_serves_the_smallest_first_and_equal_priorities_fifo() {
    let lp = manual_loop();
    let queue = PriorityQueue::<Job>::unbounded();
    for job in [Job(2, "a"), Job(1, "b"), Job(3, "c"), Job(1, "d"), Job(2, "e"), Job(1, "f")] {
        queue.put_nowait(job).unwrap();
    }
    let q = queue.clone();
    let order = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            while !q.empty() {
                out.push(q.get().await.unwrap().1);
            }
            out
        })
        .unwrap();
    assert_eq!(order, ["b", "d", "f", "a", "e", "c"]);
}

#[test]
fn lifo_queue_serves_the_last_put_first_and_blocks_when_full() {
    let lp = manual_loop();
    let queue = LifoQueue::<u32>::new(2);
    let q = queue.clone();
    let producer = lp.create_task(async move {
        for i in 0..3 {
            q.put(i).await.unwrap();
        }
    });
    lp.run_until_idle().unwrap();
    assert!(!producer.done(), "the third put waits");
    assert_eq!(queue.get_nowait(), Some(1));
    lp.run_until_idle().unwrap();
    assert!(producer.done());
    assert_eq!([queue.get_nowait(), queue.get_nowait(), queue.get_nowait()], [Some(2), Some(0), None]);
}

// --------------------------------------------------------- Queue::shutdown

#[test]
fn queue_shutdown_refuses_puts_and_lets_gets_drain_then_fail() {
    let lp = manual_loop();
    let queue = Queue::<u32>::new(2);
    let q = queue.clone();
    let blocked_putter = lp.create_task(async move {
        q.put(1).await.unwrap();
        q.put(2).await.unwrap();
        q.put(3).await
    });
    lp.run_until_idle().unwrap();
    assert!(!blocked_putter.done());
    queue.shutdown(false);
    lp.run_until_idle().unwrap();
    assert_eq!(blocked_putter.result().unwrap(), Err(3), "the waiting putter gets its item back");
    assert_eq!(queue.put_nowait(4), Err(4));
    assert!(queue.is_shut_down());

    let q = queue.clone();
    let drained = lp
        .run_until_complete(async move {
            let mut got = Vec::new();
            loop {
                match q.get().await {
                    Ok(item) => got.push(item),
                    Err(e) => return (got, e),
                }
            }
        })
        .unwrap();
    assert_eq!(drained.0, [1, 2]);
    assert!(matches!(drained.1, Error::QueueShutDown));
}

#[test]
fn queue_shutdown_wakes_waiting_getters_with_queue_shut_down() {
    let lp = manual_loop();
    let queue = Queue::<u32>::unbounded();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let q = queue.clone();
            lp.create_task(async move { q.get().await })
        })
        .collect();
    lp.run_until_idle().unwrap();
    queue.shutdown(false);
    lp.run_until_idle().unwrap();
    for g in getters {
        assert!(matches!(g.result().unwrap(), Err(Error::QueueShutDown)));
    }
}

#[test]
fn immediate_shutdown_drops_the_items_and_wakes_join() {
    let lp = manual_loop();
    let dropped = DropCounter::new();
    let queue = Queue::unbounded();
    for _ in 0..3 {
        queue.put_nowait(DropCounter::token(&dropped)).unwrap();
    }
    let q = queue.clone();
    let joiner = lp.create_task(async move { q.join().await });
    lp.run_until_idle().unwrap();
    assert!(!joiner.done());
    queue.shutdown(true);
    assert_eq!(dropped.get(), 3, "the items are dropped at once");
    assert_eq!(queue.qsize(), 0);
    lp.run_until_idle().unwrap();
    assert!(joiner.done(), "dropped items count as done");
    let q = queue.clone();
    let got = lp.run_until_complete(async move { q.get().await.map(|_| ()) }).unwrap();
    assert!(matches!(got, Err(Error::QueueShutDown)));
}
