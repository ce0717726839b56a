//! A source that takes a stream over in the middle of a run (a consumer group member given a
//! partition another member wrote meanwhile) asks the pipeline to start again from the
//! stores: the valve then drops what the store already holds, and the open candle is
//! completed with the trades the other member stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::PipelineConfig;
use feeder_core::exchange::{Backoff, Cursor, Exchange, ExchangeContext};
use feeder_core::feeder::Feeder;
use feeder_core::model::{
    parse_decimal, Candle, Event, Interval, Side, Symbol, Timestamp, Trade, TradeId,
};
use feeder_core::writer::{RunnerSettings, Writer};
use feeder_core::{ExchangeError, WriteError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// 2024-01-02T10:00:00Z: the start of a minute.
const T10: i64 = 1_704_189_600;

/// Trade `id` of x BTC-USD at `T10 + id` seconds, at a price of `100 + id`.
fn timed(id: u64) -> Trade {
    let at = Timestamp::from_unix_secs(T10 + id as i64);
    Trade {
        exchange: Arc::from("x"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: parse_decimal(&(100 + id).to_string()).unwrap(),
        amount: parse_decimal("0.00000001").unwrap(),
        side: Side::Buy,
        timestamp: at,
        received_at: at,
    }
}

/// A store that appends whatever it is given (so a repeat shows), answers where it left off
/// and reads back.
struct Shelf {
    events: Arc<Mutex<Vec<Event>>>,
}

#[async_trait]
impl Writer for Shelf {
    fn name(&self) -> &str {
        "shelf"
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        self.events.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let events = self.events.lock().unwrap();
        Ok(events
            .iter()
            .filter_map(|e| match e {
                Event::Trade(t) if &*t.exchange == exchange && t.symbol == *symbol => Some(t),
                _ => None,
            })
            .max_by_key(|t| t.timestamp)
            .map(|t| Cursor {
                trade_id: t.trade_id.clone(),
                timestamp: t.timestamp,
            }))
    }
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        let held: Vec<Event> = self.events.lock().unwrap().clone();
        for e in held {
            let wanted = match &e {
                Event::Trade(t) => {
                    &*t.exchange == exchange
                        && t.symbol == *symbol
                        && t.timestamp >= from
                        && upto.covers(t)
                }
                Event::Candle(c) => {
                    &*c.exchange == exchange && c.symbol == *symbol && c.open_time >= from
                }
                Event::Gap(_) => false,
            };
            if wanted {
                out(e);
            }
        }
        Ok(true)
    }
}

/// Sends trades 1..=20; once they are stored, "another member" stores 21..=40 behind its
/// back; then it is given the stream again, and reads from 30 on (what was not committed is
/// read again), to 100.
struct TakesOver {
    store: Arc<Mutex<Vec<Event>>>,
    resync: bool,
    done: Arc<Notify>,
}

#[async_trait]
impl Exchange for TakesOver {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        ctx.sink.send((1..=20).map(timed).collect()).await?;
        assert!(ctx.sink.checkpoint().await?.await, "stored");
        self.store
            .lock()
            .unwrap()
            .extend((21..=40).map(|i| Event::Trade(timed(i))));
        if self.resync {
            let streams = vec![(Arc::from("x"), Symbol::parse("BTC-USD").unwrap())];
            assert!(ctx.sink.resync(streams).await?.await, "started again");
        }
        ctx.sink.send((30..=100).map(timed).collect()).await?;
        assert!(ctx.sink.checkpoint().await?.await, "stored");
        self.done.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

async fn run(resync: bool) -> Vec<Event> {
    let store = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Notify::new());
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            candles: vec![Interval::parse("1m").unwrap()],
            candle_grace: Duration::from_secs(1),
            ..PipelineConfig::default()
        })
        .exchange(
            Arc::new(TakesOver {
                store: store.clone(),
                resync,
                done: done.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(
            Box::new(Shelf {
                events: store.clone(),
            }),
            RunnerSettings {
                batch_size: 10,
                batch_delay: Duration::from_millis(5),
                retry: Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
                ..RunnerSettings::default()
            },
        )
        .build();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(feeder.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), done.notified())
        .await
        .expect("the source finished");
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the run ended")
        .unwrap();
    assert!(!summary.lost_anything());
    let events = store.lock().unwrap().clone();
    events
}

fn ids(events: &[Event]) -> Vec<u64> {
    let mut ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => t.trade_id.as_number().map(|n| n as u64),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn first_minute(events: &[Event]) -> Candle {
    let candles: Vec<&Candle> = events
        .iter()
        .filter_map(|e| match e {
            Event::Candle(c) if c.open_time.unix_secs() == T10 => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(candles.len(), 1, "{candles:?}");
    candles[0].clone()
}

#[tokio::test]
async fn a_stream_taken_over_mid_candle_is_started_again_from_the_store() {
    let events = run(true).await;
    assert_eq!(
        ids(&events),
        (1..=100).collect::<Vec<_>>(),
        "each trade once"
    );
    let c = first_minute(&events);
    // Trades 1 to 59: the first 20 from this run, 21..=40 from the store, the rest replayed.
    assert_eq!(c.trades, 59);
    assert_eq!(c.open, parse_decimal("101").unwrap());
    assert_eq!(c.close, parse_decimal("159").unwrap());
    assert_eq!(c.low, parse_decimal("101").unwrap());
    assert_eq!(c.high, parse_decimal("159").unwrap());
    assert_eq!(c.volume, parse_decimal("0.00000059").unwrap());
}

/// What the resync prevents: without it the valve passes the replayed trades the store
/// already holds, and the candle misses what the other member stored.
#[tokio::test]
async fn without_a_resync_the_takeover_repeats_trades_and_spoils_the_candle() {
    let events = run(false).await;
    let ids = ids(&events);
    assert!(ids.len() > 100, "repeats: {}", ids.len());
    let c = first_minute(&events);
    assert_ne!(c.trades, 59);
}
