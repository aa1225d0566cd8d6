//! hyper's runtime pieces on the loop: an executor and a timer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::sys::owner::ThreadBound;

/// hyper's [`Executor`](hyper::rt::Executor): spawns each future as a task
/// on the loop running on the calling thread. The futures need not be
/// `Send` (hyper's server and client builders ask nothing more of an
/// executor than `Executor<F>` and `Clone`), so HTTP/2 streams run as
/// ordinary loop tasks.
///
/// hyper calls it from inside the connection futures it drives, so on the
/// loop's thread with the loop running.
///
/// # Panics
///
/// `execute` panics if no loop is running on the calling thread, as
/// [`spawn`](crate::spawn) does.
///
/// # Examples
///
/// ```
/// let builder = hyper::server::conn::http2::Builder::new(evloop::compat::LoopExecutor);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopExecutor;

impl<F> hyper::rt::Executor<F> for LoopExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // Detached: dropping a task handle does not stop the task.
        drop(crate::spawn(async move {
            fut.await;
        }));
    }
}

/// hyper's [`Timer`](hyper::rt::Timer) on the loop's timers: its sleeps are
/// [`SendSleep`]s and [`now`](hyper::rt::Timer::now) is the running loop's
/// [`time`](crate::EventLoop::time), so hyper's timeouts follow a manual
/// clock in tests. Off a loop thread `now` is `Instant::now()`.
///
/// hyper's builders want the timer `Send + Sync`; it is (it holds
/// nothing), and each sleep belongs to the thread that asked for it.
///
/// # Examples
///
/// ```
/// let mut builder = hyper::server::conn::http1::Builder::new();
/// builder.timer(evloop::compat::LoopTimer).header_read_timeout(std::time::Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopTimer;

impl hyper::rt::Timer for LoopTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(sleep_until(deadline))
    }

    fn now(&self) -> Instant {
        crate::get_running_loop().map_or_else(|_| Instant::now(), |lp| lp.time())
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<SendSleep>() {
            Some(ours) => ours.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

const OFF_THREAD: &str = "evloop::compat::SendSleep used on a thread other than the one that created it \
     (it wraps that thread's loop timer; create and await it on the loop's thread)";

/// A [`Sleep`](crate::task::Sleep) that is `Send + Sync`, for the APIs that
/// demand it: hyper's [`Timer`](hyper::rt::Timer) and axum handlers (their
/// futures must be `Send`, and a future holding an `evloop::Sleep` across an
/// `.await` is not).
///
/// It is `Send` by being thread-checked, not by being thread-safe: it may be
/// moved between threads, but only the thread that created it may poll or
/// reset it. A single-threaded loop never moves its tasks, so a handler
/// future that merely has to be `Send` on paper never trips the check.
///
/// Like [`crate::sleep`] it schedules its timer at the first poll and
/// cancels it when dropped. Dropped on another thread, it cannot reach the
/// loop's `!Send` timer: the timer is leaked and fires into nothing.
///
/// # Panics
///
/// Polling or [`reset`](SendSleep::reset)ting it on a thread other than the
/// one that created it panics with "evloop::compat::SendSleep used on a
/// thread other than the one that created it"; polling it on its thread
/// with no loop running panics as [`crate::sleep`] does.
pub struct SendSleep {
    inner: ThreadBound<crate::task::Sleep>,
}

/// Completes after `d` of loop time: [`crate::sleep`] as a [`SendSleep`].
///
/// # Panics
///
/// See [`SendSleep`].
///
/// # Examples
///
/// An axum handler (whose future must be `Send`) that waits on the loop:
///
/// ```
/// use std::time::Duration;
/// async fn slow() -> &'static str {
///     evloop::compat::sleep(Duration::from_millis(5)).await;
///     "done"
/// }
/// let app: axum::Router = axum::Router::new().route("/slow", axum::routing::get(slow));
/// # drop(app);
/// ```
pub fn sleep(d: Duration) -> SendSleep {
    SendSleep { inner: ThreadBound::new(crate::sleep(d)) }
}

/// Completes when the loop's clock reaches `when`: [`crate::sleep_until`]
/// as a [`SendSleep`].
///
/// # Panics
///
/// See [`SendSleep`].
pub fn sleep_until(when: Instant) -> SendSleep {
    SendSleep { inner: ThreadBound::new(crate::sleep_until(when)) }
}

impl SendSleep {
    fn sleep_mut(&mut self) -> &mut crate::task::Sleep {
        self.inner.get_mut().unwrap_or_else(|| panic!("{OFF_THREAD}"))
    }

    /// Moves the deadline to `when` (the old timer is cancelled; the new
    /// one is scheduled at the next poll).
    ///
    /// # Panics
    ///
    /// On a thread other than the one that created it.
    pub fn reset(self: Pin<&mut Self>, when: Instant) {
        *self.get_mut().sleep_mut() = crate::sleep_until(when);
    }

    /// Whether the calling thread is the one that may poll it.
    pub fn is_owner_thread(&self) -> bool {
        self.inner.is_owner_thread()
    }
}

impl Future for SendSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(self.get_mut().sleep_mut()).poll(cx)
    }
}

impl hyper::rt::Sleep for SendSleep {}

impl fmt::Debug for SendSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.get() {
            Some(sleep) => f.debug_tuple("SendSleep").field(sleep).finish(),
            None => f.write_str("SendSleep(<other thread>)"),
        }
    }
}
