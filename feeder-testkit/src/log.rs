//! A shared, append-only record that tests can wait on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// A bounded wait ran out before the expected number of events happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How many were expected.
    pub wanted: usize,
    /// How many there were when the wait gave up.
    pub got: usize,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out waiting for {} events, saw {}",
            self.wanted, self.got
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// Entries in arrival order, plus a watch of their count so waiting needs no polling.
#[derive(Debug)]
pub(crate) struct Log<T> {
    entries: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // Entries are only ever pushed whole, so a poisoned lock still holds a valid list.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, entry: T) {
        let n = {
            let mut entries = self.lock();
            entries.push(entry);
            entries.len()
        };
        self.count.send_replace(n);
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }

    /// Waits until at least `n` entries exist, at most `timeout`.
    pub(crate) async fn wait(&self, n: usize, timeout: Duration) -> Result<Vec<T>, WaitTimeout> {
        self.wait_counted(n, |_| true, timeout).await
    }

    /// Waits until at least `n` entries match `pred`, at most `timeout`; returns the matching
    /// entries.
    pub(crate) async fn wait_counted(
        &self,
        n: usize,
        pred: impl Fn(&T) -> bool,
        timeout: Duration,
    ) -> Result<Vec<T>, WaitTimeout> {
        let count = |log: &Self| log.lock().iter().filter(|e| pred(e)).count();
        let mut rx = self.count.subscribe();
        // Reduced to a bool at once so the watch's read guard is not kept alive.
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|_| count(self) >= n)).await,
            Ok(Ok(_))
        );
        if reached {
            Ok(self.lock().iter().filter(|e| pred(e)).cloned().collect())
        } else {
            Err(WaitTimeout {
                wanted: n,
                got: count(self),
            })
        }
    }
}
