//! Stores: the [`Writer`] trait and the runner that feeds one writer from its own queue.

mod resume;
mod runner;
mod spill;

use async_trait::async_trait;

use crate::error::WriteError;
use crate::exchange::Cursor;
use crate::model::{Event, Symbol, Timestamp};

pub use crate::error::ErrorChain;
pub(crate) use resume::resume_points;
pub use resume::{ResumeError, ResumePoints, RESUME_ATTEMPTS};
pub use runner::{QueueGauges, RunnerSettings, WhenFull, WriterHandle, WriterRunner, WriterStats};
pub use spill::SpillSettings;

/// A store of events.
///
/// The runner around a writer owns the queue, batching, retries and shutdown; a writer owns
/// only its connection and format. Contract:
/// - `write` returns `Ok` only once the batch is durable in the store (written and flushed as
///   far as the store allows). On `Err` the runner may call `write` again with the same batch,
///   so a writer either stores nothing of a failed batch or stores it idempotently.
/// - A store that cannot hold some events of a batch (a value it cannot represent) refuses
///   those alone: it makes every other event of the batch durable, then returns
///   [`WriteError::Rejected`] listing the refused events by position, each with its reason.
///   The runner does not retry such a batch; it counts the refused events as rejected (in
///   the summary, apart from the dropped ones), logs a sample, and the others as stored. A
///   writer checks what its store can hold before writing, so that one bad event never
///   costs the good ones.
/// - `flush` pushes anything buffered; `close` is called once at shutdown, after the last
///   `write`.
#[async_trait]
pub trait Writer: Send + 'static {
    /// A short name for logs and the summary (`file`, `postgres`, ...).
    fn name(&self) -> &str;

    /// Stores a batch of events.
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError>;

    /// Pushes buffered data to the store.
    async fn flush(&mut self) -> Result<(), WriteError> {
        Ok(())
    }

    /// Flushes and releases the store at shutdown.
    async fn close(&mut self) -> Result<(), WriteError> {
        self.flush().await
    }

    /// For a durable store: the newest trade of (`exchange`, `symbol`) it already holds,
    /// asked once at start-up. The feeder resumes after it: it backfills from the oldest of
    /// these over REST, and this writer skips what it already has, so a restart (even after a
    /// crash) neither leaves a gap nor writes a trade twice. `None` (the default) when the
    /// store holds nothing of that stream or does not keep track.
    ///
    /// An `Err` means "cannot tell", never "nothing": the feeder asks again with backoff
    /// (a retriable error) and, if the store still cannot tell, does not run at all rather
    /// than run this writer without it and write again what the store holds. A store that
    /// meets a record it cannot read where it left off fails here too.
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let _ = (exchange, symbol);
        Ok(None)
    }

    /// For a durable store that can read back what it holds: hands `out` the events of
    /// (`exchange`, `symbol`) it holds from `from` on, up to the trade `upto`, and returns
    /// `true`. That is, in any order:
    /// - every trade with a time at or after `from` that `upto` covers ([`Cursor::covers`]),
    ///   in the order the store keeps them;
    /// - every gap whose span reaches `from` or later (or has no end) and starts no later
    ///   than `upto`'s time;
    /// - every candle whose open time is at or after `from` (each revision, or the newest).
    ///
    /// Asked once per resumed stream at start-up, after [`resume_point`](Self::resume_point),
    /// with `upto` at or before the point this store gave: the aggregator rebuilds from these
    /// the candles a restart interrupted, so that the first candles after a restart hold the
    /// trades of the earlier run too, and does not send again the candles the store holds.
    /// Nothing handed back is written again.
    ///
    /// `Ok(false)` (the default) when the store cannot read back; those candles are then
    /// emitted with `complete: false`. An `Err` is treated the same way, and logged.
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        let _ = (exchange, symbol, from, upto, out);
        Ok(false)
    }
}

#[async_trait]
impl<W: Writer + ?Sized> Writer for Box<W> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        (**self).write(batch).await
    }
    async fn flush(&mut self) -> Result<(), WriteError> {
        (**self).flush().await
    }
    async fn close(&mut self) -> Result<(), WriteError> {
        (**self).close().await
    }
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        (**self).resume_point(exchange, symbol).await
    }
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        (**self).replay(exchange, symbol, from, upto, out).await
    }
}
