//! A custom exchange: a synthetic market whose price walks at random. It needs no network,
//! so it is its own [`Exchange`] rather than a stream or poll venue, and it is registered as
//! data like any venue ([`VENUE`]).

use feeder_core::prelude::*;

/// The registry name.
pub const NAME: &str = "random-walk";

/// The random walk as data: polled like a REST venue, one trade per symbol every
/// `poll_interval`.
pub const VENUE: VenueSpec<RandomWalk> = VenueSpec {
    name: NAME,
    transports: Transports::itself(&[Transport::Rest]),
    new: RandomWalk::from_config,
    instruments: None,
};

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

    /// One trade per symbol every `poll_interval` of the entry.
    pub fn from_config(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(&cfg.name, cfg.poll_interval, 1))
    }
}

/// A small xorshift generator: a synthetic market needs no better randomness, and no
/// dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.abs_diff(lo) + 1;
        lo + (self.next() % span) as i64
    }
}

#[async_trait]
impl Exchange for RandomWalk {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
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
                    price += Decimal::new(rng.between(-50, 50), 2);
                    let now = Timestamp::now();
                    batch.push(Trade {
                        exchange: self.name.clone(),
                        symbol: symbol.clone(),
                        trade_id: TradeId::from_u64(next_id),
                        price,
                        amount: Decimal::new(rng.between(1, 10_000_000), 8),
                        side: if rng.next() & 1 == 0 {
                            Side::Buy
                        } else {
                            Side::Sell
                        },
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
