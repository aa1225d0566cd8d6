//! [`Event`]: a flag that wakes every waiter when set.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::{WaitQueue, ignore_abandon};

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
        self.inner.waiters.wait(ignore_abandon).await;
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
