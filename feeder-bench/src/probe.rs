//! Writers that measure: a null store, and a wrapper that counts the trades a writer
//! acknowledged, records their latency and says when the last one arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use feeder_core::model::{Event, Timestamp};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// A store that accepts every batch and keeps nothing: the pipeline's cost without a store's.
#[derive(Debug, Default)]
pub struct NullWriter;

#[async_trait]
impl Writer for NullWriter {
    fn name(&self) -> &str {
        "null"
    }

    async fn write(&mut self, _batch: &[Event]) -> Result<(), WriteError> {
        Ok(())
    }
}

/// What the measuring wrapper saw, shared with the code that waits for the run to finish.
#[derive(Debug)]
pub struct Progress {
    /// Trades to wait for; 0 for no target.
    target: u64,
    trades: AtomicU64,
    candles: AtomicU64,
    /// `received_at` of the earliest trade of the first acknowledged batch: when the driver
    /// read the first frame.
    first_received: OnceLock<Timestamp>,
    /// When the write that reached the target returned.
    done_at: OnceLock<Timestamp>,
    done: Notify,
    /// Frame-read to write-acknowledged latency of every trade, in nanoseconds; `None` when not
    /// measured.
    latency: Option<Mutex<Histogram<u64>>>,
}

impl Progress {
    /// Progress towards `target` trades, recording latencies when `latency` is set.
    pub fn new(target: u64, latency: bool) -> anyhow::Result<Arc<Progress>> {
        let latency = if latency {
            // 1 ns to 10 minutes, three significant digits.
            Some(Mutex::new(Histogram::new_with_bounds(
                1,
                600_000_000_000,
                3,
            )?))
        } else {
            None
        };
        Ok(Arc::new(Progress {
            target,
            trades: AtomicU64::new(0),
            candles: AtomicU64::new(0),
            first_received: OnceLock::new(),
            done_at: OnceLock::new(),
            done: Notify::new(),
            latency,
        }))
    }

    /// Trades to wait for; 0 for no target.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Trades acknowledged so far.
    pub fn trades(&self) -> u64 {
        self.trades.load(Ordering::Relaxed)
    }

    /// Candles acknowledged so far.
    pub fn candles(&self) -> u64 {
        self.candles.load(Ordering::Relaxed)
    }

    /// When the first frame was read, once a trade was acknowledged.
    pub fn first_received(&self) -> Option<Timestamp> {
        self.first_received.get().copied()
    }

    /// When the target was reached, if it was.
    pub fn done_at(&self) -> Option<Timestamp> {
        self.done_at.get().copied()
    }

    /// Waits until the target is reached or `timeout` passes; true when reached.
    pub async fn wait_done(&self, timeout: std::time::Duration) -> bool {
        let notified = self.done.notified();
        if self.done_at.get().is_some() {
            return true;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        self.done_at.get().is_some()
    }

    /// Latency percentiles in microseconds: p50, p99, max. `None` when not measured or empty.
    pub fn latency_micros(&self) -> Option<(f64, f64, f64)> {
        let h = self
            .latency
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some((
            us(h.value_at_quantile(0.50)),
            us(h.value_at_quantile(0.99)),
            us(h.max()),
        ))
    }

    fn record(&self, batch: &[Event], acked: Timestamp) -> u64 {
        let mut trades = 0;
        let mut earliest: Option<Timestamp> = None;
        let mut hist = self
            .latency
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()));
        for e in batch {
            if let Event::Trade(t) = e {
                trades += 1;
                if earliest.is_none_or(|e| t.received_at < e) {
                    earliest = Some(t.received_at);
                }
                if let Some(h) = hist.as_mut() {
                    let ns = acked
                        .unix_nanos()
                        .saturating_sub(t.received_at.unix_nanos());
                    h.saturating_record(u64::try_from(ns).unwrap_or(0).max(1));
                }
            }
        }
        if let Some(first) = earliest {
            let _ = self.first_received.set(first);
        }
        trades
    }
}

/// Wraps a writer: once the inner writer acknowledged a batch, records the latency of its
/// trades, counts its trades and candles and signals when the target is reached.
pub struct Counting<W> {
    inner: W,
    progress: Arc<Progress>,
}

impl<W> std::fmt::Debug for Counting<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl<W: Writer> Counting<W> {
    /// Measures `inner` into `progress`.
    pub fn new(inner: W, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

#[async_trait]
impl<W: Writer> Writer for Counting<W> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        self.inner.write(batch).await?;
        // Latency runs to the writer's acknowledgement: the batch is stored when it returns.
        let trades = self.progress.record(batch, Timestamp::now());
        let candles = batch.len() as u64 - trades;
        self.progress.candles.fetch_add(candles, Ordering::Relaxed);
        let total = self.progress.trades.fetch_add(trades, Ordering::Relaxed) + trades;
        if self.progress.target > 0
            && total >= self.progress.target
            && self.progress.done_at.set(Timestamp::now()).is_ok()
        {
            self.progress.done.notify_one();
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        self.inner.flush().await
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use feeder_core::model::{parse_decimal, Side, Symbol, Trade, TradeId};

    use super::*;

    fn trade(id: u64, received_ns: i64) -> Event {
        Event::Trade(Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(id),
            price: parse_decimal("1").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::EPOCH,
            received_at: Timestamp::from_unix_nanos(received_ns, 9),
        })
    }

    #[tokio::test]
    async fn signals_once_the_target_is_acknowledged() {
        let progress = Progress::new(3, true).unwrap();
        let mut w = Counting::new(NullWriter, progress.clone());
        w.write(&[trade(1, 50), trade(2, 10)]).await.unwrap();
        assert!(!progress.wait_done(Duration::from_millis(1)).await);
        assert_eq!(progress.first_received().unwrap().unix_nanos(), 10);
        w.write(&[trade(3, 70)]).await.unwrap();
        assert!(progress.wait_done(Duration::from_secs(5)).await);
        assert_eq!(progress.trades(), 3);
        let (p50, _, max) = progress.latency_micros().unwrap();
        assert!(p50 > 0.0 && max >= p50);
    }
}
