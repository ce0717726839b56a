//! What the feeder reports about each writer: its configured name, where it left off, and
//! every event it did not store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use feeder_core::config::{Config, ConfigError, ExchangeConfig, WriterConfig};
use feeder_core::exchange::{Cursor, Exchange, ExchangeContext, Transport};
use feeder_core::feeder::{ExchangeFactory, Feeder, Registry, WriterFactory};
use feeder_core::model::{parse_decimal, Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use feeder_core::{ExchangeError, WriteError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn trade(id: u64) -> Trade {
    Trade {
        exchange: Arc::from("x"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: parse_decimal("43210.12").unwrap(),
        amount: parse_decimal("0.5").unwrap(),
        side: Side::Buy,
        timestamp: Timestamp::from_unix_micros(1_704_164_645_000_000 + id as i64),
        received_at: Timestamp::from_unix_micros(1_704_164_645_000_000 + id as i64),
    }
}

/// Sends trades `from..to` from where the feeder's cursor says it left off (as a backfill
/// would), says so, then waits for shutdown.
struct Replay {
    to: u64,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Replay {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let from = ctx
            .cursors
            .get(&ctx.symbols[0])
            .and_then(|c| c.trade_id.as_str().parse::<u64>().ok())
            .map_or(0, |id| id + 1);
        ctx.sink.send((from..self.to).map(trade).collect()).await?;
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// Keeps what it is given. `held` is the newest id the store holds at start-up; asking for
/// it fails `resume_failures` times first.
struct Store {
    events: Arc<Mutex<Vec<Event>>>,
    held: Option<u64>,
    resume_failures: Arc<AtomicU32>,
}

impl Store {
    fn new(held: Option<u64>, resume_failures: u32) -> (Self, Arc<Mutex<Vec<Event>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let store = Store {
            events: events.clone(),
            held,
            resume_failures: Arc::new(AtomicU32::new(resume_failures)),
        };
        (store, events)
    }
}

#[async_trait]
impl Writer for Store {
    fn name(&self) -> &str {
        "memory"
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        self.events.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
    async fn resume_point(
        &mut self,
        _exchange: &str,
        _symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let left = self.resume_failures.load(Ordering::SeqCst);
        if left > 0 {
            self.resume_failures.store(left - 1, Ordering::SeqCst);
            return Err(WriteError::Io(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "Is a directory",
            )));
        }
        Ok(self.held.map(|id| Cursor {
            trade_id: TradeId::from_u64(id),
            timestamp: trade(id).timestamp,
        }))
    }
}

/// Builds `Replay` and `Store` from a config, as the command line does.
struct ReplayFactory(Arc<Notify>);

impl ExchangeFactory for ReplayFactory {
    fn transports(&self) -> Vec<Transport> {
        vec![Transport::Websocket]
    }
    fn build(&self, _config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError> {
        Ok(Arc::new(Replay {
            to: 10,
            sent: self.0.clone(),
        }))
    }
}

struct StoreFactory;

#[async_trait]
impl WriterFactory for StoreFactory {
    fn validate(&self, _config: &WriterConfig) -> Result<(), ConfigError> {
        Ok(())
    }
    async fn build(&self, _config: &WriterConfig) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(Store::new(None, 0).0))
    }
}

#[tokio::test]
async fn the_configured_name_of_a_writer_is_the_one_in_the_summary() {
    let sent = Arc::new(Notify::new());
    let mut registry = Registry::new();
    registry
        .register_exchange("x", ReplayFactory(sent.clone()))
        .register_writer("memory", StoreFactory);
    let config = Config::from_yaml_str_with_env(
        "exchanges:\n  - name: x\n    symbols: [BTC-USD]\npipeline:\n  candles: []\nwriters:\n  - type: memory\n    name: parquet\n  - type: memory\n",
        &|_| None,
    )
    .unwrap();
    let feeder = Feeder::from_config(config, &registry).await.unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    let names: Vec<&str> = summary.writers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["parquet", "memory"]);
    let text = summary.to_string();
    assert!(text.contains("writer   parquet      events=10 "), "{text}");
}
