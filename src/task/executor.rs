//! The loop's thread pool for blocking work: `run_in_executor`,
//! [`to_thread`], `set_default_executor` and `shutdown_default_executor`.
//!
//! Created on first use, at most [`MAX_WORKERS`] threads (or the size given
//! to `set_default_executor`), each started only when a job finds no idle
//! worker. Results come back through the loop's cross-thread queue and
//! resolve a [`Future`] on the loop thread; the futures waiting for results
//! stay with the loop (`pending`) even when the pool is replaced, so every
//! submitted job's future is resolved. `close` tells the workers to exit
//! once their current job is done and drops the jobs that have not started
//! (asyncio's `shutdown(wait=False)`); `shutdown_default_executor` lets
//! them finish the queue and waits for the threads (`shutdown(wait=True)`).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use slotmap::{Key, KeyData, SlotMap};

use crate::error::{Error, Result, panic_message};
use crate::runtime::event_loop::{EventLoop, get_running_loop, running_loop};
use crate::runtime::remote::RemoteLoop;
use crate::task::future::{Future, FutureOwned};

/// Worker threads per loop unless `set_default_executor` says otherwise.
pub const MAX_WORKERS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

slotmap::new_key_type! {
    struct JobKey;
}

struct PoolState {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
    /// Exit now (loop closed): queued jobs are dropped.
    shutdown: bool,
    /// Exit once the queue is empty (`shutdown_default_executor`, or the
    /// pool was replaced).
    draining: bool,
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
            if state.draining {
                break;
            }
            state.idle += 1;
            state = self.work_ready.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
        state.workers -= 1;
    }

    /// Lets the workers finish the queue, then exit.
    fn drain(&self) {
        self.lock().draining = true;
        self.work_ready.notify_all();
    }
}

/// The pool plus the futures waiting for its results.
pub(crate) struct Executor {
    pool: Arc<Pool>,
    max_workers: usize,
    /// The worker threads started so far, this pool's and those of pools
    /// it replaced: `shutdown_default_executor` waits for them all.
    threads: Vec<JoinHandle<()>>,
    /// `shutdown_default_executor` was called: later jobs are refused.
    shut_down: bool,
    /// Replaced by `set_default_executor`: dropping it lets its workers
    /// finish the queue instead of stopping them.
    retired: bool,
    /// Futures of submitted jobs, type-erased (`Future<T>` as `Box<dyn Any>`).
    pending: SlotMap<JobKey, Box<dyn Any>>,
}

impl Executor {
    fn new(max_workers: usize) -> Executor {
        let state =
            PoolState { jobs: VecDeque::new(), workers: 0, idle: 0, shutdown: false, draining: false };
        Executor {
            pool: Arc::new(Pool { state: Mutex::new(state), work_ready: Condvar::new() }),
            max_workers,
            threads: Vec::new(),
            shut_down: false,
            retired: false,
            pending: SlotMap::with_key(),
        }
    }

    fn submit(&mut self, job: Job) -> std::io::Result<()> {
        let mut state = self.pool.lock();
        state.jobs.push_back(job);
        if state.idle == 0 && state.workers < self.max_workers {
            let pool = self.pool.clone();
            let handle =
                std::thread::Builder::new().name("evloop-executor".into()).spawn(move || pool.worker())?;
            state.workers += 1;
            drop(state);
            self.threads.retain(|t| !t.is_finished());
            self.threads.push(handle);
        } else {
            self.pool.work_ready.notify_one();
        }
        Ok(())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
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
    /// [`MAX_WORKERS`](crate::task::executor::MAX_WORKERS) threads (see
    /// [`set_default_executor`](EventLoop::set_default_executor)), and is
    /// shut down by [`close`](EventLoop::close): running jobs finish,
    /// queued ones are dropped.
    ///
    /// After [`shutdown_default_executor`](EventLoop::shutdown_default_executor)
    /// the job is refused: the future fails with [`Error::InvalidState`]
    /// (asyncio raises `RuntimeError`).
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
        let executor = slot.get_or_insert_with(|| Executor::new(MAX_WORKERS));
        if executor.shut_down {
            drop(slot);
            let _ = fut.set_exception(Error::InvalidState("the default executor was shut down"));
            return fut;
        }
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

    /// Replaces the default executor with a pool of at most `max_workers`
    /// threads (asyncio's `set_default_executor(ThreadPoolExecutor(n))`:
    /// evloop's pool is its own, so it takes the size, not an executor
    /// object). Jobs already given to the old pool still run there and
    /// still resolve their futures; its threads exit once its queue is
    /// empty. A pool that was shut down is replaced by a working one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if `max_workers` is 0 (asyncio's
    /// `ValueError`); nothing changes.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// lp.set_default_executor(2)?;
    /// let fut = lp.run_in_executor(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(lp.run_until_complete(fut)??.as_deref(), Some("evloop-executor"));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn set_default_executor(&self, max_workers: usize) -> Result<()> {
        self.check_open();
        if max_workers == 0 {
            return Err(Error::InvalidState("an executor needs at least one worker"));
        }
        let mut new = Executor::new(max_workers);
        let mut old = self.inner.executor.borrow_mut().take();
        if let Some(old) = &mut old {
            old.pool.drain();
            old.retired = true;
            new.pending = std::mem::take(&mut old.pending);
            new.threads = std::mem::take(&mut old.threads);
        }
        *self.inner.executor.borrow_mut() = Some(new);
        drop(old);
        Ok(())
    }

    /// Shuts the default executor down and waits for its threads
    /// (asyncio's `shutdown_default_executor`): queued and running jobs
    /// finish (their futures are resolved), then the threads exit. The wait
    /// happens on a helper thread, so the loop keeps running meanwhile.
    /// Later [`run_in_executor`](EventLoop::run_in_executor) calls fail
    /// with [`Error::InvalidState`], until
    /// [`set_default_executor`](EventLoop::set_default_executor) installs
    /// a new pool. [`Runner::close`](crate::Runner::close) (and so
    /// [`run`](crate::run)) calls it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the helper thread cannot be started (the threads
    /// are then not waited for); [`Error::Closed`] if the loop is closed
    /// before the threads have exited.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let job = lp.run_in_executor(|| 7);
    /// lp.run_until_complete(lp.shutdown_default_executor())??;
    /// assert_eq!(job.result()?, 7, "queued jobs finish first");
    /// assert!(lp.run_until_complete(lp.run_in_executor(|| 8))?.is_err());
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn shutdown_default_executor(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let lp = self.clone();
        async move {
            if lp.is_closed() {
                return Err(Error::Closed);
            }
            let done = lp.create_future::<()>();
            let threads = {
                let mut slot = lp.inner.executor.borrow_mut();
                let executor = slot.get_or_insert_with(|| Executor::new(MAX_WORKERS));
                executor.shut_down = true;
                executor.pool.drain();
                let threads = std::mem::take(&mut executor.threads);
                if threads.is_empty() {
                    return Ok(());
                }
                let key = executor.pending.insert(Box::new(done.clone())).data().as_ffi();
                (threads, key)
            };
            let (threads, key) = threads;
            let remote = lp.remote();
            let joiner =
                std::thread::Builder::new().name("evloop-executor-shutdown".into()).spawn(move || {
                    for t in threads {
                        let _ = t.join();
                    }
                    let _ = remote.call_soon_threadsafe(move || deliver::<()>(key, Ok(())));
                });
            if let Err(e) = joiner {
                let removed = lp
                    .inner
                    .executor
                    .borrow_mut()
                    .as_mut()
                    .and_then(|ex| ex.pending.remove(JobKey::from(KeyData::from_ffi(key))));
                drop(removed);
                return Err(Error::from(e));
            }
            done.await.map_err(|e| if matches!(e, Error::Cancelled) { Error::Closed } else { e })
        }
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

/// The future of [`to_thread`].
pub struct ToThread<F, T: 'static> {
    f: Option<F>,
    result: Option<FutureOwned<T>>,
}

/// Runs `f` on the running loop's default executor and gives its return
/// value (asyncio's `asyncio.to_thread`). The job is submitted when the
/// future is first polled. Dropping the future does not stop the thread
/// (nothing can); its result is then dropped on the loop thread.
///
/// # Errors
///
/// [`Error::Panicked`] if `f` panicked; [`Error::InvalidState`] after
/// [`shutdown_default_executor`](EventLoop::shutdown_default_executor).
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// let n = evloop::run(evloop::to_thread(|| (1..=10u32).product::<u32>()))?;
/// assert_eq!(n?, 3_628_800);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn to_thread<T, F>(f: F) -> ToThread<F, T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    ToThread { f: Some(f), result: None }
}

impl<F, T: 'static> Unpin for ToThread<F, T> {}

impl<T, F> std::future::Future for ToThread<F, T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(f) = self.f.take() {
            let fut = running_loop("to_thread").run_in_executor(f);
            self.result = Some(std::future::IntoFuture::into_future(fut));
        }
        let result = self.result.as_mut().expect("ToThread polled after completion");
        Pin::new(result).poll(cx)
    }
}

impl<F, T: 'static> fmt::Debug for ToThread<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToThread").field("started", &self.f.is_none()).finish()
    }
}
