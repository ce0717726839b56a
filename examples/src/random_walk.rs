//! A custom exchange: a synthetic market whose price walks at random.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{Exchange, ExchangeContext, Transport};
use feeder_core::feeder::ExchangeFactory;
use feeder_core::model::{Side, Timestamp, Trade, TradeId};
use feeder_core::ExchangeError;
use rust_decimal::Decimal;

/// Emits a batch of trades per symbol on every tick, with increasing ids, until shutdown.
#[derive(Debug)]
pub struct RandomWalk {
    name: Arc<str>,
    every: Duration,
    per_tick: u64,
}

impl RandomWalk {
    /// A market named `name` producing `per_tick` trades per symbol every `every`.
    pub fn new(name: &str, every: Duration, per_tick: u64) -> Self {
        Self {
            name: Arc::from(name),
            every,
            per_tick,
        }
    }
}

#[async_trait]
impl Exchange for RandomWalk {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut ticker = tokio::time::interval(self.every);
        // Resume after the newest id a previous run sent, so a restart does not repeat ids.
        let mut next_id: u64 = ctx
            .symbols
            .iter()
            .filter_map(|s| ctx.cursors.get(s)?.trade_id.as_number())
            .max()
            .map_or(1, |n| u64::try_from(n).unwrap_or(u64::MAX - 1) + 1);
        let mut price = Decimal::new(4_321_012, 2);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = ctx.shutdown.cancelled() => return Ok(()),
            }
            for symbol in &ctx.symbols {
                let mut batch = Vec::with_capacity(self.per_tick as usize);
                for _ in 0..self.per_tick {
                    // Cents up or down; amounts in satoshis.
                    price += Decimal::new(rng.i64(-50..=50), 2);
                    let now = Timestamp::now();
                    batch.push(Trade {
                        exchange: self.name.clone(),
                        symbol: symbol.clone(),
                        trade_id: TradeId::from_u64(next_id),
                        price,
                        amount: Decimal::new(rng.i64(1..=10_000_000), 8),
                        side: if rng.bool() { Side::Buy } else { Side::Sell },
                        timestamp: now.with_digits(6),
                        received_at: now,
                    });
                    next_id += 1;
                }
                ctx.sink.send(batch).await?;
            }
        }
    }
}

/// Builds [`RandomWalk`] from a config entry: one trade per symbol every `poll_interval`.
#[derive(Debug, Default)]
pub struct RandomWalkFactory;

impl ExchangeFactory for RandomWalkFactory {
    fn transports(&self) -> Vec<Transport> {
        vec![Transport::Rest]
    }

    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError> {
        Ok(Arc::new(RandomWalk::new(
            &config.name,
            config.poll_interval,
            1,
        )))
    }
}
