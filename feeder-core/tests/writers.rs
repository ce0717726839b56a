//! What the feeder reports about each writer: its configured name, where it left off, and
//! every event it did not store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::{Config, ConfigError, ExchangeConfig, PipelineConfig, WriterConfig};
use feeder_core::exchange::{Backoff, Cursor, Exchange, ExchangeContext, Transport};
use feeder_core::feeder::{ExchangeFactory, Feeder, Registry, WriterFactory};
use feeder_core::model::{parse_decimal, Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::{RunnerSettings, Writer, RESUME_ATTEMPTS};
use feeder_core::{ExchangeError, Rejection, WriteError};
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

fn ids(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => t.trade_id.as_str().parse().ok(),
            _ => None,
        })
        .collect()
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

fn settings(name: &str) -> RunnerSettings {
    RunnerSettings {
        name: Some(name.into()),
        batch_size: 100,
        retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)).without_jitter(),
        ..RunnerSettings::default()
    }
}

fn no_candles() -> PipelineConfig {
    PipelineConfig {
        candles: Vec::new(),
        ..PipelineConfig::default()
    }
}

fn btc() -> Vec<Symbol> {
    vec![Symbol::parse("BTC-USD").unwrap()]
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

/// Builds stores whose resume point fails this many times first.
struct StoreFactory {
    resume_failures: u32,
}

/// The memory store has no options of its own.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

#[async_trait]
impl WriterFactory for StoreFactory {
    type Options = NoOptions;
    async fn open(
        &self,
        _options: NoOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(Store::new(None, self.resume_failures).0))
    }
}

fn registry(sent: &Arc<Notify>, resume_failures: u32) -> Registry {
    let mut registry = Registry::new();
    registry
        .register_exchange("x", ReplayFactory(sent.clone()))
        .register_writer("memory", StoreFactory { resume_failures });
    registry
}

const CONFIG: &str = "exchanges:\n  - name: x\n    symbols: [BTC-USD]\npipeline:\n  candles: []\nwriters:\n  - type: memory\n    name: parquet\n  - type: memory\n";

#[tokio::test]
async fn the_configured_name_of_a_writer_is_the_one_in_the_summary() {
    let sent = Arc::new(Notify::new());
    let config = Config::from_yaml_str_with_env(CONFIG, &|_| None).unwrap();
    let feeder = Feeder::from_config(config, &registry(&sent, 0))
        .await
        .unwrap();
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

#[tokio::test(start_paused = true)]
async fn a_resume_point_that_fails_at_first_is_asked_again_and_nothing_is_written_twice() {
    let sent = Arc::new(Notify::new());
    // The store holds 0..=4; it cannot tell so the first three times it is asked.
    let (store, events) = Store::new(Some(4), 3);
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Replay {
                to: 10,
                sent: sent.clone(),
            }),
            btc(),
        )
        .writer(Box::new(store), settings("store"))
        .build();
    let shutdown = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    // Asked again after 100, 200 and 400 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(ids(&events.lock().unwrap()), [5, 6, 7, 8, 9]);
    assert_eq!(summary.writers[0].events, 5);
    assert!(summary.is_clean(), "{summary}");
}

#[tokio::test(start_paused = true)]
async fn a_writer_that_never_says_where_it_left_off_ends_the_run_naming_it() {
    let sent = Arc::new(Notify::new());
    let (broken, broken_events) = Store::new(Some(4), u32::MAX);
    let (fine, fine_events) = Store::new(None, 0);
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Replay {
                to: 10,
                sent: sent.clone(),
            }),
            btc(),
        )
        .writer(Box::new(fine), settings("fine"))
        .writer(Box::new(broken), settings("parquet"))
        .build();
    // Never cancelled: the run ends by itself.
    let summary = tokio::time::timeout(
        Duration::from_secs(600),
        feeder.run(CancellationToken::new()),
    )
    .await
    .expect("the run ends");
    assert!(!summary.is_clean());
    assert_eq!(
        summary.failures,
        [format!(
            "writer parquet cannot read where its store left off on x BTC-USD \
             ({RESUME_ATTEMPTS} attempts): i/o error: Is a directory"
        )]
    );
    assert!(
        summary.to_string().contains("failed   writer parquet"),
        "{summary}"
    );
    assert!(broken_events.lock().unwrap().is_empty());
    assert!(fine_events.lock().unwrap().is_empty(), "nothing ran");
}

#[tokio::test(start_paused = true)]
async fn a_configured_feeder_is_not_built_when_a_writer_cannot_say_where_it_left_off() {
    let sent = Arc::new(Notify::new());
    let config = Config::from_yaml_str_with_env(CONFIG, &|_| None).unwrap();
    let err = Feeder::from_config(config, &registry(&sent, u32::MAX))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "writer parquet cannot read where its store left off on x BTC-USD \
             ({RESUME_ATTEMPTS} attempts)"
        )
    );

    // Two failures are within the retries.
    let config = Config::from_yaml_str_with_env(CONFIG, &|_| None).unwrap();
    Feeder::from_config(config, &registry(&sent, 2))
        .await
        .unwrap();
}

/// Refuses trades whose id ends in 3, naming them twice and naming a position past the
/// batch as well (a careless writer), and keeps the others.
struct Picky {
    events: Arc<Mutex<Vec<Event>>>,
}

#[async_trait]
impl Writer for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        let refused: Vec<usize> = (0..batch.len())
            .filter(|&i| ids(&batch[i..=i])[0] % 10 == 3)
            .collect();
        let mut events = self.events.lock().unwrap();
        events.extend(
            (0..batch.len())
                .filter(|i| !refused.contains(i))
                .map(|i| batch[i].clone()),
        );
        if refused.is_empty() {
            return Ok(());
        }
        let mut rejected: Vec<Rejection> = refused
            .iter()
            .flat_map(|&i| [i, i])
            .map(|i| Rejection::new(i, "price does not fit"))
            .collect();
        rejected.push(Rejection::new(batch.len(), "not in the batch"));
        Err(WriteError::Rejected(rejected))
    }
}

#[tokio::test]
async fn rejected_events_are_counted_apart_from_the_stored_and_the_dropped() {
    let sent = Arc::new(Notify::new());
    let events = Arc::new(Mutex::new(Vec::new()));
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Replay {
                to: 30,
                sent: sent.clone(),
            }),
            btc(),
        )
        .writer(
            Box::new(Picky {
                events: events.clone(),
            }),
            settings("picky"),
        )
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(events.lock().unwrap().len(), 27);
    let w = &summary.writers[0];
    assert_eq!((w.events, w.rejected, w.dropped, w.errors), (27, 3, 0, 0));
    assert!(
        summary.to_string().contains("dropped=0 rejected=3 "),
        "{summary}"
    );
    assert!(!summary.is_clean());
}

/// A store that never takes a batch: each write fails (`hang: false`) or never returns.
struct Down {
    hang: bool,
    /// Told of each failure.
    failed: Arc<Notify>,
}

impl Down {
    fn new(hang: bool) -> Self {
        Down {
            hang,
            failed: Arc::new(Notify::new()),
        }
    }
}

#[async_trait]
impl Writer for Down {
    fn name(&self) -> &str {
        "down"
    }
    async fn write(&mut self, _batch: &[Event]) -> Result<(), WriteError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.failed.notify_one();
        Err(WriteError::retriable(
            "store unavailable",
            std::io::Error::other("connection refused"),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn what_writers_still_hold_at_the_shutdown_deadline_is_counted_as_dropped() {
    let sent = Arc::new(Notify::new());
    let (store, events) = Store::new(None, 0);
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .shutdown_timeout(Duration::from_secs(5))
        .exchange(
            Arc::new(Replay {
                to: 250,
                sent: sent.clone(),
            }),
            btc(),
        )
        .writer(Box::new(Down::new(false)), settings("failing"))
        .writer(Box::new(Down::new(true)), settings("hung"))
        .writer(Box::new(store), settings("fine"))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(events.lock().unwrap().len(), 250);
    let counts: Vec<(&str, u64, u64)> = summary
        .writers
        .iter()
        .map(|w| (w.name.as_str(), w.events, w.dropped))
        .collect();
    assert_eq!(
        counts,
        [("failing", 0, 250), ("hung", 0, 250), ("fine", 250, 0)],
        "{summary}"
    );
    assert_eq!(summary.stragglers, ["writer failing", "writer hung"]);
    assert!(summary.lost_anything());
    assert_eq!(summary.lost(), 500);
    assert!(!summary.is_clean());
}

#[tokio::test]
async fn a_run_that_stored_everything_lost_nothing() {
    let sent = Arc::new(Notify::new());
    let (store, _) = Store::new(None, 0);
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Replay {
                to: 250,
                sent: sent.clone(),
            }),
            btc(),
        )
        .writer(Box::new(store), settings("fine"))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.writers[0].events, 250);
    assert!(!summary.lost_anything());
    assert_eq!(summary.lost(), 0);
    assert!(summary.is_clean());
}

/// Sends `batches` batches of `per` trades, one at a time, then waits for shutdown.
struct Trickle {
    batches: u64,
    per: u64,
}

#[async_trait]
impl Exchange for Trickle {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        for b in 0..self.batches {
            let from = b * self.per;
            ctx.sink
                .send((from..from + self.per).map(trade).collect())
                .await?;
        }
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_blocked_pipeline_drains_at_the_deadline_and_every_event_is_counted() {
    let stuck = Down::new(false);
    let failed = stuck.failed.clone();
    let (store, events) = Store::new(None, 0);
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            channel_capacity: 1,
            ..no_candles()
        })
        .shutdown_timeout(Duration::from_secs(5))
        .exchange(
            Arc::new(Trickle {
                batches: 20,
                per: 50,
            }),
            btc(),
        )
        // Its queue fills, then the pipeline waits on it, then the exchange on the pipeline.
        .writer(
            Box::new(stuck),
            RunnerSettings {
                queue_capacity: 1,
                ..settings("stuck")
            },
        )
        .writer(Box::new(store), settings("fine"))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    failed.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    // Past the deadline every writer gives up what it still holds or receives, and the
    // pipeline drains into them: each event is either stored or counted, by each writer.
    let stuck = &summary.writers[0];
    assert_eq!((stuck.events, stuck.dropped), (0, 1000), "{summary}");
    let fine = &summary.writers[1];
    assert_eq!(fine.events + fine.dropped, 1000, "{summary}");
    assert_eq!(
        ids(&events.lock().unwrap()),
        (0..fine.events).collect::<Vec<_>>()
    );
    assert_eq!(summary.lost(), 2000 - fine.events);
    assert!(
        summary.stragglers.contains(&"writer stuck".to_owned()),
        "{summary}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sender_waiting_on_a_full_spill_gives_up_at_the_deadline_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = Down::new(false);
    let failed = stuck.failed.clone();
    let (store, _) = Store::new(None, 0);
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            channel_capacity: 1,
            ..no_candles()
        })
        .shutdown_timeout(Duration::from_secs(5))
        .exchange(
            Arc::new(Trickle {
                batches: 20,
                per: 50,
            }),
            btc(),
        )
        .writer(
            Box::new(stuck),
            RunnerSettings {
                queue_capacity: 1,
                spill: Some(feeder_core::writer::SpillSettings {
                    path: dir.path().join("stuck.spill"),
                    max_bytes: 20_000,
                }),
                ..settings("stuck")
            },
        )
        .writer(Box::new(store), settings("fine"))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    failed.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    // Nothing stayed blocked: the exchange sent everything, and each event is stored,
    // counted as dropped, or kept in the spill file for the next run.
    assert_eq!(summary.exchanges[0].trades, 1000, "{summary}");
    let stuck = &summary.writers[0];
    assert!(stuck.spilled > 0, "{summary}");
    assert!(stuck.dropped + stuck.spilled >= 1000, "{summary}");
    let fine = &summary.writers[1];
    assert_eq!(fine.events + fine.dropped, 1000, "{summary}");
}
