//! Memory bounds in bytes for the queues between the tasks.
//!
//! Every queue is also bounded in batches, but a batch holds anything from one trade to
//! thousands, so only a bound in bytes keeps memory flat under a flood. A sender takes its
//! batch's size from a [`ByteBudget`] before it queues the batch, and the size comes back
//! when the consumer is done with it. Sizes are estimates ([`batch_bytes`]): the length of the
//! batch times a fixed size per event, so measuring costs nothing on the hot path.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::model::Event;

/// Estimated bytes of one queued trade or event: the value itself plus its typical heap
/// (symbol and exchange names are shared, ids and decimals inline), with room for the
/// allocator's own overhead.
pub const EVENT_BYTES: usize = std::mem::size_of::<Event>() + 32;

/// Estimated bytes of a batch of `len` trades or events.
pub fn batch_bytes(len: usize) -> usize {
    len.saturating_mul(EVENT_BYTES)
}

/// A budget of bytes shared by the senders and the consumer of one queue.
///
/// Counted in KiB (a tokio semaphore's permits), rounded up, so that a 32 MiB budget is
/// 32768 permits. A batch larger than the whole budget takes all of it and so passes alone:
/// it never waits forever.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// Bytes taken from a [`ByteBudget`]; they go back when this is dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(u32::MAX));
        let total_kib = u32::try_from(kib.min(Semaphore::MAX_PERMITS as u64)).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total_kib) * 1024
    }

    /// What is not taken now, in bytes.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * 1024
    }

    fn kib(&self, bytes: usize) -> u32 {
        let kib = (bytes as u64).div_ceil(1024).max(1);
        kib.min(u64::from(self.total_kib)) as u32
    }

    /// Takes `bytes`, waiting until that much is free. Waiters are served in order, so a large
    /// batch is not starved by small ones.
    pub async fn acquire(&self, bytes: usize) -> Held {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.kib(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        Held { _permit: permit }
    }

    /// Takes `bytes` if that much is free now.
    pub fn try_acquire(&self, bytes: usize) -> Option<Held> {
        self.permits
            .clone()
            .try_acquire_many_owned(self.kib(bytes))
            .ok()
            .map(|permit| Held { _permit: permit })
    }

    /// Keeps what `held` took taken after it is dropped, for a consumer that cannot be handed
    /// the guard; that consumer gives it back with [`release`](Self::release) and the same
    /// `bytes`.
    pub fn keep(&self, held: Held) {
        held._permit.forget();
    }

    /// Gives back what a [`keep`](Self::keep) of `bytes` held.
    pub fn release(&self, bytes: usize) {
        self.permits.add_permits(self.kib(bytes) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_holds_the_sender_until_bytes_come_back() {
        let budget = ByteBudget::new(10 * 1024);
        let first = budget.acquire(6 * 1024).await;
        assert!(budget.try_acquire(6 * 1024).is_none());
        let second = budget.acquire(4 * 1024).await;
        assert_eq!(budget.available(), 0);
        drop(first);
        assert!(budget.try_acquire(6 * 1024).is_some());
        drop(second);
        assert_eq!(budget.available(), budget.total());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_passes_alone() {
        let budget = ByteBudget::new(4 * 1024);
        let huge = budget.acquire(1 << 30).await;
        assert!(budget.try_acquire(1).is_none());
        drop(huge);
        let _huge = budget
            .try_acquire(usize::MAX)
            .expect("the whole budget is free");
    }

    #[tokio::test]
    async fn kept_bytes_come_back_by_release() {
        let budget = ByteBudget::new(8 * 1024);
        let held = budget.acquire(batch_bytes(10)).await;
        budget.keep(held);
        assert!(budget.available() < budget.total());
        budget.release(batch_bytes(10));
        assert_eq!(budget.available(), budget.total());
    }
}
