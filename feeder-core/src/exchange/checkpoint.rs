//! Checkpoints: marks a source sends down the pipeline after a batch, resolved once every
//! writer has stored everything sent before them.
//!
//! A source that reads from a log it must acknowledge (a Kafka consumer group that commits
//! offsets) may acknowledge a position only once the events up to it are durable in every
//! store; otherwise a crash after the acknowledgement would skip them. The source sends a
//! [`Checkpoint`] with [`TradeSink::checkpoint`](crate::exchange::TradeSink::checkpoint)
//! after the events it covers. The pipeline task forwards it, in order, into the queue of
//! every writer; each writer's runner confirms its copy once it has written everything queued
//! before it (its pending batch, and its spill file, if one is in use), and only if it never
//! gave any event up (dropped by a full queue under `when_full: drop`, refused terminally,
//! abandoned at the shutdown deadline). The source's [`CheckpointWait`] resolves `true` once
//! every copy was confirmed, and `false` as soon as one was dropped unconfirmed: a writer that
//! lost events, a queue or a pipeline that is gone. Nothing fakes a confirmation: a copy
//! dropped for any reason counts as a failure.
//!
//! Sources that send no checkpoints pay nothing for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::model::Symbol;

/// One holder's share of a checkpoint: confirmed with [`confirm`](Self::confirm), and a
/// failure if dropped without it. Clones are holders of their own (the pipeline makes one per
/// writer).
pub struct Checkpoint {
    shared: Arc<Shared>,
    confirmed: bool,
}

/// What the holders of one checkpoint share; resolves the wait when the last one goes.
struct Shared {
    failed: AtomicBool,
    /// Taken when the last holder goes.
    tx: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let tx = self.tx.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            // The source may have stopped waiting: nothing to tell then.
            let _ = tx.send(!self.failed.load(Ordering::Acquire));
        }
    }
}

impl Checkpoint {
    /// A new checkpoint (one holder) and the wait for its outcome.
    pub fn new() -> (Checkpoint, CheckpointWait) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
        });
        (
            Checkpoint {
                shared,
                confirmed: false,
            },
            CheckpointWait(rx),
        )
    }

    /// This holder has done its part: everything before the checkpoint is durable in its
    /// store.
    pub fn confirm(mut self) {
        self.confirmed = true;
    }

    /// This holder could not do its part; the same as dropping it, said out loud.
    pub fn fail(self) {
        drop(self);
    }

    /// Whether another holder already failed it (the outcome is decided, though the wait
    /// resolves only when every holder is gone).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if !self.confirmed {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

impl Clone for Checkpoint {
    /// Another holder, which must confirm on its own.
    fn clone(&self) -> Self {
        Checkpoint {
            shared: self.shared.clone(),
            confirmed: false,
        }
    }
}

impl PartialEq for Checkpoint {
    /// The same checkpoint (any holder of it).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Checkpoint {}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

/// The outcome of a [`Checkpoint`], for the source that sent it.
#[derive(Debug)]
pub struct CheckpointWait(oneshot::Receiver<bool>);

impl CheckpointWait {
    /// `true` once every holder confirmed; `false` as soon as the last holder is gone and one
    /// of them failed.
    pub async fn wait(self) -> bool {
        self.0.await.unwrap_or(false)
    }

    /// The outcome if it is decided, without waiting: `Some(true)`, `Some(false)`, or `None`
    /// while a holder still has its share.
    pub fn try_outcome(&mut self) -> Option<bool> {
        match self.0.try_recv() {
            Ok(ok) => Some(ok),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(false),
        }
    }
}

impl std::future::Future for CheckpointWait {
    type Output = bool;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(false))
    }
}

/// A request to start the pipeline's state again from the stores, as at start-up: sent by a
/// source whose streams may have been written meanwhile by another process (a consumer group
/// member that was given partitions).
///
/// The pipeline task drops its valve and candle state, asks every writer (after it has
/// written everything queued before) where its store left off for each of `streams`, seeds
/// the valve and each writer's skip list from those points, and rebuilds the open candles
/// from the store that can read them back; then it confirms `done`. Failing (a store that
/// cannot say where it left off) drops `done` unconfirmed: the source must not deliver
/// anything more of those streams, and should start over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resync {
    /// The streams to start again: exchange (as named in its trades) and symbol.
    pub streams: Vec<(Arc<str>, Symbol)>,
    /// Confirmed once the state is rebuilt.
    pub done: Checkpoint,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn resolves_true_only_when_every_holder_confirmed() {
        let (cp, wait) = Checkpoint::new();
        let a = cp.clone();
        let b = cp.clone();
        cp.confirm();
        a.confirm();
        let mut wait = Box::pin(wait);
        assert!(wait.as_mut().now_or_never().is_none(), "b still holds it");
        b.confirm();
        assert!(wait.await);
    }

    #[tokio::test]
    async fn a_holder_dropped_unconfirmed_fails_it() {
        let (cp, wait) = Checkpoint::new();
        let a = cp.clone();
        cp.confirm();
        assert!(!a.failed());
        drop(a);
        assert!(!wait.await);
    }

    #[tokio::test]
    async fn a_failure_stays_when_the_others_confirm() {
        let (cp, mut wait) = Checkpoint::new();
        let a = cp.clone();
        let b = cp.clone();
        a.fail();
        assert!(b.failed());
        assert_eq!(wait.try_outcome(), None);
        b.confirm();
        cp.confirm();
        assert_eq!(wait.try_outcome(), Some(false));
    }
}
