//! A custom writer: per-symbol totals (trades, volume, VWAP), reported at shutdown.

use std::collections::BTreeMap;
use std::sync::Mutex;

use feeder_core::prelude::*;
use serde::Deserialize;

/// Totals of one (exchange, symbol).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Trades seen.
    pub trades: u64,
    /// Sum of amounts.
    pub volume: Decimal,
    /// Sum of price times amount.
    pub notional: Decimal,
    /// Candles seen.
    pub candles: u64,
    /// Gaps (holes the feeder could not fill) seen.
    pub gaps: u64,
}

impl Totals {
    /// Volume-weighted average price, if any volume traded.
    pub fn vwap(&self) -> Option<Decimal> {
        (!self.volume.is_zero()).then(|| (self.notional / self.volume).round_dp(8))
    }
}

/// Shared view of a [`SummaryWriter`]'s totals, keyed by `exchange:symbol`.
pub type SharedTotals = Arc<Mutex<BTreeMap<String, Totals>>>;

/// Keeps per-symbol totals in memory and logs them when closed.
#[derive(Debug)]
pub struct SummaryWriter {
    name: String,
    totals: SharedTotals,
}

impl SummaryWriter {
    /// A writer named `name` that adds into `totals`.
    pub fn new(name: &str, totals: SharedTotals) -> Self {
        Self {
            name: name.to_owned(),
            totals,
        }
    }
}

#[async_trait]
impl Writer for SummaryWriter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        // Never hold the lock across an await: this block is synchronous.
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for event in batch {
            let t = totals
                .entry(format!("{}:{}", event.exchange(), event.symbol()))
                .or_default();
            match event {
                Event::Trade(trade) => {
                    t.trades += 1;
                    t.volume += trade.amount;
                    t.notional += trade.price * trade.amount;
                }
                Event::Candle(_) => t.candles += 1,
                Event::Gap(_) => t.gaps += 1,
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        let totals = self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (stream, t) in totals {
            tracing::info!(
                writer = %self.name,
                %stream,
                trades = t.trades,
                volume = %t.volume,
                vwap = %t.vwap().unwrap_or_default(),
                candles = t.candles,
                gaps = t.gaps,
                "totals"
            );
        }
        Ok(())
    }
}

/// Options of the `summary` writer: it has none, and refuses any key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryOptions {}

/// Builds [`SummaryWriter`]s that all add into one shared map.
#[derive(Debug, Default, Clone)]
pub struct SummaryFactory {
    /// The totals every writer built by this factory adds into.
    pub totals: SharedTotals,
}

#[async_trait]
impl WriterFactory for SummaryFactory {
    type Options = SummaryOptions;

    async fn open(
        &self,
        _options: SummaryOptions,
        config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(SummaryWriter::new(
            config.display_name(),
            self.totals.clone(),
        )))
    }
}
