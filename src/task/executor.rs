//! The loop's thread pool for blocking work: `run_in_executor`.
//!
//! Created on first use, at most [`MAX_WORKERS`] threads, each started only
//! when a job finds no idle worker. Results come back through the loop's
//! cross-thread queue and resolve a [`Future`] on the loop thread. `close`
//! tells the workers to exit once their current job is done and drops the
//! jobs that have not started (asyncio's `shutdown(wait=False)`).

use std::any::Any;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use slotmap::{Key, KeyData, SlotMap};

use crate::error::{Error, panic_message};
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use crate::runtime::remote::RemoteLoop;
use crate::task::future::Future;

/// Upper bound on worker threads per loop.
pub const MAX_WORKERS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

slotmap::new_key_type! {
    struct JobKey;
}

struct PoolState {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
    shutdown: bool,
}

struct Pool {
    state: Mutex<PoolState>,
    work_ready: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(self: Arc<Pool>) {
        let mut state = self.lock();
        loop {
            if state.shutdown {
                break;
            }
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            state = self.work_ready.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
        state.workers -= 1;
    }
}

/// The pool plus the futures waiting for its results.
pub(crate) struct Executor {
    pool: Arc<Pool>,
    /// Futures of submitted jobs, type-erased (`Future<T>` as `Box<dyn Any>`).
    pending: SlotMap<JobKey, Box<dyn Any>>,
}

impl Executor {
    fn new() -> Executor {
        let state = PoolState { jobs: VecDeque::new(), workers: 0, idle: 0, shutdown: false };
        Executor {
            pool: Arc::new(Pool { state: Mutex::new(state), work_ready: Condvar::new() }),
            pending: SlotMap::with_key(),
        }
    }

    fn submit(&self, job: Job) -> std::io::Result<()> {
        let mut state = self.pool.lock();
        state.jobs.push_back(job);
        if state.idle == 0 && state.workers < MAX_WORKERS {
            let pool = self.pool.clone();
            std::thread::Builder::new().name("evloop-executor".into()).spawn(move || pool.worker())?;
            state.workers += 1;
        } else {
            self.pool.work_ready.notify_one();
        }
        Ok(())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let unstarted = {
            let mut state = self.pool.lock();
            state.shutdown = true;
            std::mem::take(&mut state.jobs)
        };
        self.pool.work_ready.notify_all();
        drop(unstarted);
    }
}

impl EventLoop {
    /// Runs `f` on the loop's thread pool and returns a [`Future`] that
    /// resolves on the loop thread with its return value (asyncio's
    /// `run_in_executor` with the default executor). A panic in `f` sets
    /// the future's exception to [`Error::Panicked`].
    ///
    /// The pool starts with the first call, grows to at most
    /// [`MAX_WORKERS`](crate::task::executor::MAX_WORKERS) threads, and is shut
    /// down by [`close`](EventLoop::close): running jobs finish, queued
    /// ones are dropped.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let sum = lp.run_in_executor(|| (1..=100u64).sum::<u64>());
    /// assert_eq!(lp.run_until_complete(sum)??, 5050);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn run_in_executor<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Future<T> {
        self.check_open();
        let fut = self.create_future::<T>();
        let mut slot = self.inner.executor.borrow_mut();
        let executor = slot.get_or_insert_with(Executor::new);
        let key = executor.pending.insert(Box::new(fut.clone())).data().as_ffi();
        let remote: RemoteLoop = self.remote();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
            let outcome = outcome.map_err(|payload| panic_message(&*payload));
            // Fails only if the loop was closed meanwhile: nobody is waiting.
            let _ = remote.call_soon_threadsafe(move || deliver::<T>(key, outcome));
        });
        if let Err(e) = executor.submit(job) {
            let removed = executor.pending.remove(JobKey::from(KeyData::from_ffi(key)));
            drop(slot);
            drop(removed);
            let _ = fut.set_exception(e);
        }
        fut
    }
}

/// On the loop thread: resolves the future of job `key`.
fn deliver<T: 'static>(key: u64, outcome: std::result::Result<T, String>) {
    let Ok(lp) = get_running_loop() else { return };
    let fut = {
        let mut slot = lp.inner.executor.borrow_mut();
        slot.as_mut().and_then(|e| e.pending.remove(JobKey::from(KeyData::from_ffi(key))))
    };
    let Some(fut) = fut.and_then(|f| f.downcast::<Future<T>>().ok()) else { return };
    let _ = match outcome {
        Ok(value) => fut.set_result(value),
        Err(message) => fut.set_exception(Error::Panicked(message)),
    };
}
