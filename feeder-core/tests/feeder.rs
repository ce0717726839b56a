//! The orchestrator end to end, with in-memory exchanges and writers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::PipelineConfig;
use feeder_core::exchange::{Backoff, Completeness, Exchange, ExchangeContext};
use feeder_core::feeder::Feeder;
use feeder_core::model::{
    parse_decimal, Candle, Event, Gap, GapReason, Interval, Side, Symbol, Timestamp, Trade, TradeId,
};
use feeder_core::writer::{RunnerSettings, Writer};
use feeder_core::{ExchangeError, WriteError};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

fn trade(exchange: &str, id: u64) -> Trade {
    Trade {
        exchange: Arc::from(exchange),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: parse_decimal("43210.12").unwrap(),
        amount: parse_decimal("0.00000001").unwrap(),
        side: Side::Buy,
        timestamp: Timestamp::from_unix_micros(1_704_164_645_000_000 + id as i64),
        received_at: Timestamp::from_unix_micros(1_704_164_645_000_000 + id as i64),
    }
}

fn no_candles() -> PipelineConfig {
    PipelineConfig {
        candles: Vec::new(),
        ..PipelineConfig::default()
    }
}

/// Sends `n` trades in batches of `batch`, says so, then waits for shutdown.
struct Burst {
    name: &'static str,
    n: u64,
    batch: u64,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Burst {
    fn name(&self) -> &str {
        self.name
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let mut id = 0;
        while id < self.n {
            let end = (id + self.batch).min(self.n);
            ctx.sink
                .send((id..end).map(|i| trade(self.name, i)).collect())
                .await?;
            id = end;
        }
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// Keeps what it is given; reports the count on a watch channel.
struct Memory {
    name: String,
    events: Arc<Mutex<Vec<Event>>>,
    count: watch::Sender<usize>,
    /// While set, every write fails with a retriable error.
    failing: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl Memory {
    fn new(name: &str) -> (Self, Arc<Mutex<Vec<Event>>>, watch::Receiver<usize>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = watch::channel(0);
        let w = Memory {
            name: name.into(),
            events: events.clone(),
            count: tx,
            failing: Arc::new(AtomicBool::new(false)),
            closed: Arc::new(AtomicBool::new(false)),
        };
        (w, events, rx)
    }
}

#[async_trait]
impl Writer for Memory {
    fn name(&self) -> &str {
        &self.name
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(WriteError::retriable(
                "store unavailable",
                std::io::Error::other("connection refused"),
            ));
        }
        let mut v = self.events.lock().unwrap();
        v.extend_from_slice(batch);
        self.count.send_replace(v.len());
        Ok(())
    }
    async fn close(&mut self) -> Result<(), WriteError> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn settings(batch_size: usize) -> RunnerSettings {
    RunnerSettings {
        batch_size,
        batch_delay: Duration::from_millis(5),
        retry: Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
        ..RunnerSettings::default()
    }
}

fn trade_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(t.trade_id.to_string()),
            Event::Candle(_) | Event::Gap(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn n_trades_in_give_n_events_out_after_a_graceful_shutdown() {
    let sent = Arc::new(Notify::new());
    let (mem, events, _) = Memory::new("memory");
    let closed = mem.closed.clone();
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Burst {
                name: "x",
                n: 10_007,
                batch: 333,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(mem), settings(1000))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    let got = trade_ids(&events.lock().unwrap());
    let want: Vec<String> = (0..10_007).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every trade exactly once, in order");
    assert!(closed.load(Ordering::SeqCst), "writer closed at shutdown");
    assert_eq!(summary.exchanges[0].trades, 10_007);
    assert_eq!(summary.writers[0].events, 10_007);
    assert!(summary.is_clean(), "{summary}");
}

/// Sends one batch, says so, then waits for shutdown.
struct Once {
    batch: Vec<Trade>,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Once {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        ctx.sink.send(self.batch.clone()).await?;
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test]
async fn bad_and_hostile_trades_are_not_stored_and_are_counted_under_their_reasons() {
    let mut ahead = trade("x", 3);
    ahead.timestamp = ahead
        .received_at
        .saturating_add(Duration::from_secs(2 * 3_600));
    let mut negative = trade("x", 3);
    negative.price = -negative.price;
    let mut takes_the_id = trade("x", 4);
    takes_the_id.price = parse_decimal("1").unwrap();
    let batch = vec![
        trade("x", 1),
        trade("x", 2),
        trade("x", u64::MAX),
        ahead,
        negative,
        trade("x", 3),
        takes_the_id,
        trade("x", 4),
        trade("x", 2),
        trade("x", 5),
    ];
    let sent = Arc::new(Notify::new());
    let (mem, events, _) = Memory::new("memory");
    let dir = tempfile::tempdir().unwrap();
    let dead_letters = dir.path().join("rejected.jsonl");
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            // Two hours ahead passes the default day, not this.
            max_clock_skew: Duration::from_secs(3_600),
            rejected: Some(dead_letters.clone()),
            ..no_candles()
        })
        .exchange(
            Arc::new(Once {
                batch: batch.clone(),
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(mem), settings(100))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    let events = events.lock().unwrap();
    assert_eq!(trade_ids(&events), ["1", "2", "3", "4", "5"]);
    let Some(Event::Trade(four)) = events.get(3) else {
        panic!("not a trade")
    };
    assert_eq!(
        four.price,
        parse_decimal("1").unwrap(),
        "the first copy stays"
    );
    let e = &summary.exchanges[0];
    assert_eq!(
        (
            e.trades,
            e.duplicates,
            e.conflicts,
            e.rejected,
            e.quarantined
        ),
        (7, 1, 1, 2, 1),
        "{summary}"
    );
    assert_eq!(
        batch.len() as u64,
        summary.writers[0].events + e.duplicates + e.conflicts + e.rejected + e.quarantined
    );
    let line = summary.to_string();
    assert!(
        line.contains("duplicates=1 conflicts=1 rejected=2 quarantined=1 unverified=0"),
        "{line}"
    );
    // What the sink turned away is in the dead-letter file, each with its reason.
    let text = std::fs::read_to_string(&dead_letters).unwrap();
    let mut reasons: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = v["trade"]["trade_id"].as_str().unwrap().to_owned();
            (v["reason"].as_str().unwrap().to_owned(), id)
        })
        .collect();
    reasons.sort();
    let want = [
        ("id_out_of_line", u64::MAX.to_string()),
        ("non_positive_price", "3".to_owned()),
        ("time_out_of_window", "3".to_owned()),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(r, i)| (r.to_string(), i.clone()))
        .collect();
    assert_eq!(reasons, want);
    assert!(!summary.is_clean(), "rejected trades are worth a warning");
}

/// Fails every run, recording when it was started.
struct Flaky {
    starts: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

#[async_trait]
impl Exchange for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn run(&self, _ctx: ExchangeContext) -> Result<(), ExchangeError> {
        self.starts
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        Err(ExchangeError::Closed(Some("connection reset".into())))
    }
}

/// One trade per second until shutdown.
struct Ticker;

#[async_trait]
impl Exchange for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let mut id = 0;
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = ctx.shutdown.cancelled() => return Ok(()),
            }
            ctx.sink.send(vec![trade("ticker", id)]).await?;
            id += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_exchange_is_restarted_with_growing_backoff_while_another_delivers() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let (mem, events, _) = Memory::new("memory");
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .restart_backoff(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(16)).without_jitter(),
        )
        .exchange(
            Arc::new(Flaky {
                starts: starts.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .exchange(Arc::new(Ticker), vec![Symbol::parse("BTC-USD").unwrap()])
        .writer(Box::new(mem), settings(1))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    shutdown.cancel();
    let summary = run.await.unwrap();

    let starts = starts.lock().unwrap().clone();
    let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(
        &gaps[..5],
        &[1, 2, 4, 8, 16],
        "doubling to the cap: {gaps:?}"
    );
    assert!(gaps[5..].iter().all(|g| *g == 16), "{gaps:?}");
    let flaky = &summary.exchanges[0];
    assert_eq!(flaky.restarts as usize, starts.len() - 1);
    // The healthy exchange kept delivering the whole time: one trade per virtual second.
    let delivered = trade_ids(&events.lock().unwrap()).len();
    assert!((59..=61).contains(&delivered), "{delivered}");
    assert_eq!(summary.exchanges[1].restarts, 0);
}

#[tokio::test]
async fn a_writer_that_fails_then_recovers_gets_every_batch_and_does_not_slow_another() {
    let sent = Arc::new(Notify::new());
    let (slow, slow_events, mut slow_count) = Memory::new("slow");
    let failing = slow.failing.clone();
    failing.store(true, Ordering::SeqCst);
    let (fast, fast_events, mut fast_count) = Memory::new("fast");
    let n = 5_000;
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Burst {
                name: "x",
                n,
                batch: 100,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(slow), settings(500))
        .writer(Box::new(fast), settings(500))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));

    // The healthy writer gets everything while the other is still failing.
    tokio::time::timeout(
        Duration::from_secs(10),
        fast_count.wait_for(|c| *c == n as usize),
    )
    .await
    .expect("fast writer was held up by the failing one")
    .unwrap();
    assert_eq!(*slow_count.borrow(), 0);

    failing.store(false, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(10),
        slow_count.wait_for(|c| *c == n as usize),
    )
    .await
    .expect("recovered writer did not catch up")
    .unwrap();
    shutdown.cancel();
    let summary = run.await.unwrap();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(trade_ids(&slow_events.lock().unwrap()), want);
    assert_eq!(trade_ids(&fast_events.lock().unwrap()), want);
    let slow = &summary.writers[0];
    assert!(slow.errors > 0 && slow.retries > 0, "{summary}");
    assert_eq!(slow.dropped, 0);
    assert!(summary.is_clean(), "{summary}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_names_a_writer_that_never_recovers() {
    let sent = Arc::new(Notify::new());
    let (stuck, _, _) = Memory::new("stuck");
    stuck.failing.store(true, Ordering::SeqCst);
    let (ok, _, _) = Memory::new("ok");
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .shutdown_timeout(Duration::from_secs(5))
        .exchange(
            Arc::new(Burst {
                name: "x",
                n: 10,
                batch: 10,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(stuck), settings(10))
        .writer(Box::new(ok), settings(10))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.stragglers, vec!["writer stuck".to_owned()]);
    assert_eq!(summary.writers[1].events, 10);
    assert!(!summary.is_clean());
}

/// Fails with a configuration error: must not be restarted.
struct Misconfigured(Arc<AtomicUsize>);

#[async_trait]
impl Exchange for Misconfigured {
    fn name(&self) -> &str {
        "misconfigured"
    }
    async fn run(&self, _ctx: ExchangeContext) -> Result<(), ExchangeError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(ExchangeError::Config("no such symbol".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_terminal_exchange_error_is_not_retried() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mem, _, _) = Memory::new("memory");
    let feeder = Feeder::builder()
        .exchange(
            Arc::new(Misconfigured(runs.clone())),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(mem), settings(10))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(120)).await;
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(summary.exchanges[0].errors, 1);
    assert_eq!(summary.exchanges[0].restarts, 0);
}

/// One trade stamped with the current wall-clock time, then silence.
struct Quiet {
    sent: Arc<Mutex<Option<Trade>>>,
}

#[async_trait]
impl Exchange for Quiet {
    fn name(&self) -> &str {
        "quiet"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let mut t = trade("quiet", 1);
        t.timestamp = Timestamp::now();
        t.received_at = t.timestamp;
        *self.sent.lock().unwrap() = Some(t.clone());
        ctx.sink.send(vec![t]).await?;
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_market_gets_its_candle_at_close_plus_grace() {
    let sent = Arc::new(Mutex::new(None));
    let (mem, events, mut count) = Memory::new("memory");
    let grace = Duration::from_secs(2);
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            candles: vec![feeder_core::model::Interval::parse("1m").unwrap()],
            candle_grace: grace,
            ..PipelineConfig::default()
        })
        .exchange(
            Arc::new(Quiet { sent: sent.clone() }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(mem), settings(1))
        .build();
    let started = tokio::time::Instant::now();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(300), count.wait_for(|c| *c == 2))
        .await
        .expect("no candle within five minutes")
        .unwrap();
    let elapsed = started.elapsed();
    let trade = sent.lock().unwrap().clone().unwrap();
    let ts = trade.timestamp.unix_nanos();
    let close = (ts.div_euclid(60_000_000_000) + 1) * 60_000_000_000;
    let expected = Duration::from_nanos((close - ts) as u64) + grace;
    let diff = elapsed.abs_diff(expected);
    assert!(
        diff < Duration::from_millis(50),
        "emitted after {elapsed:?}, expected {expected:?}"
    );

    let Event::Candle(c) = events.lock().unwrap()[1].clone() else {
        panic!("second event is not a candle")
    };
    assert_eq!(c.close_time.unix_nanos(), close);
    assert_eq!(c.open_time.unix_nanos(), close - 60_000_000_000);
    assert_eq!(
        (c.open, c.high, c.low, c.close),
        (trade.price, trade.price, trade.price, trade.price)
    );
    assert_eq!((c.volume, c.trades), (trade.amount, 1));
    shutdown.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.candles, 1);
}

/// Keeps what it is given, and says it already held trades of BTC-USD up to `held`.
struct Durable {
    inner: Memory,
    held: u64,
}

#[async_trait]
impl Writer for Durable {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        self.inner.write(batch).await
    }
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<feeder_core::exchange::Cursor>, WriteError> {
        let t = trade(exchange, self.held);
        Ok(
            (symbol == &t.symbol).then_some(feeder_core::exchange::Cursor {
                trade_id: t.trade_id,
                timestamp: t.timestamp,
            }),
        )
    }
}

/// Reports the cursor it started from, then replays trades 0..100 as an overlapping
/// backfill would.
struct Replay {
    started_from: Arc<Mutex<Option<String>>>,
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
            .map(|c| c.trade_id.to_string());
        *self.started_from.lock().unwrap() = from;
        ctx.sink
            .send((0..100).map(|i| trade("x", i)).collect())
            .await?;
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_restart_resumes_after_what_each_durable_store_holds() {
    let sent = Arc::new(Notify::new());
    let started_from = Arc::new(Mutex::new(None));
    let (a, a_events, _) = Memory::new("a");
    let (b, b_events, _) = Memory::new("b");
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Replay {
                started_from: started_from.clone(),
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(Durable { inner: a, held: 49 }), settings(10))
        .writer(Box::new(Durable { inner: b, held: 69 }), settings(10))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    let summary = run.await.unwrap();

    // The exchange resumes from the oldest point any store holds.
    assert_eq!(started_from.lock().unwrap().as_deref(), Some("49"));
    // Each store gets exactly what it lacked.
    let want = |from: u64| (from..100).map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(trade_ids(&a_events.lock().unwrap()), want(50));
    assert_eq!(trade_ids(&b_events.lock().unwrap()), want(70));
    assert_eq!(summary.exchanges[0].duplicates, 50, "the valve knew 0..=49");
    assert_eq!(summary.writers[1].already_stored, 20);
}

#[tokio::test]
async fn a_down_store_spills_to_disk_while_others_go_on_then_catches_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sent = Arc::new(Notify::new());
    let (down, down_events, mut down_count) = Memory::new("down");
    let failing = down.failing.clone();
    failing.store(true, Ordering::SeqCst);
    let (fast, fast_events, mut fast_count) = Memory::new("fast");
    let n = 20_000;
    let spill_path = dir.path().join("down.spill");
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .exchange(
            Arc::new(Burst {
                name: "x",
                n,
                batch: 100,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(
            Box::new(down),
            RunnerSettings {
                queue_capacity: 2,
                spill: Some(feeder_core::writer::SpillSettings {
                    path: spill_path.clone(),
                    max_bytes: 64 << 20,
                }),
                ..settings(500)
            },
        )
        .writer(
            Box::new(fast),
            RunnerSettings {
                queue_capacity: 2,
                ..settings(500)
            },
        )
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));

    // The queue in front of the down store holds 2 batches: the rest waits on disk, and the
    // healthy writer is not held up.
    tokio::time::timeout(
        Duration::from_secs(10),
        fast_count.wait_for(|c| *c == n as usize),
    )
    .await
    .expect("the healthy writer was held up")
    .unwrap();
    assert_eq!(*down_count.borrow(), 0);
    assert!(
        std::fs::metadata(&spill_path).unwrap().len() > 0,
        "nothing was spilled"
    );

    failing.store(false, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(10),
        down_count.wait_for(|c| *c == n as usize),
    )
    .await
    .expect("the store did not catch up from the spill")
    .unwrap();
    shutdown.cancel();
    let summary = run.await.unwrap();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(
        trade_ids(&down_events.lock().unwrap()),
        want,
        "in order, once each"
    );
    assert_eq!(trade_ids(&fast_events.lock().unwrap()), want);
    let down = &summary.writers[0];
    assert!(down.spilled > 0 && down.dropped == 0, "{summary}");
    assert_eq!(
        std::fs::metadata(&spill_path).unwrap().len(),
        0,
        "spill emptied"
    );
}

#[tokio::test]
async fn a_full_spill_applies_the_drop_policy_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let sent = Arc::new(Notify::new());
    let (down, _, _) = Memory::new("down");
    down.failing.store(true, Ordering::SeqCst);
    let (fast, _, mut fast_count) = Memory::new("fast");
    let n = 5_000;
    let feeder = Feeder::builder()
        .pipeline(no_candles())
        .shutdown_timeout(Duration::from_millis(500))
        .exchange(
            Arc::new(Burst {
                name: "x",
                n,
                batch: 100,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(
            Box::new(down),
            RunnerSettings {
                queue_capacity: 1,
                when_full: feeder_core::writer::WhenFull::Drop,
                spill: Some(feeder_core::writer::SpillSettings {
                    path: dir.path().join("down.spill"),
                    max_bytes: 50_000,
                }),
                ..settings(100)
            },
        )
        .writer(Box::new(fast), settings(100))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tokio::time::timeout(
        Duration::from_secs(10),
        fast_count.wait_for(|c| *c == n as usize),
    )
    .await
    .unwrap()
    .unwrap();
    shutdown.cancel();
    let summary = run.await.unwrap();
    let down = &summary.writers[0];
    assert!(down.spilled > 0, "{summary}");
    assert!(down.dropped > 0, "{summary}");
    assert_eq!(summary.writers[1].events, n);
}

// ---- Candles by the completeness watermark ---------------------------------------------------

/// 2021-03-01T00:00:00Z, in microseconds.
const MARCH_1_2021: i64 = 1_614_556_800_000_000;

/// A recorded day of one stream: 2021-03-01, a few thousand trades, busy and quiet hours.
fn recorded_day(exchange: &str) -> Vec<Trade> {
    let mut rng = fastrand::Rng::with_seed(20210301);
    let mut micros = MARCH_1_2021 + rng.i64(0..5_000_000);
    let mut out = Vec::new();
    let mut id = 1_000u64;
    let end = MARCH_1_2021 + 86_400_000_000;
    while micros < end && out.len() < 20_000 {
        let mut t = trade(exchange, id);
        t.price = rust_decimal::Decimal::new(4_500_000 + rng.i64(-20_000..20_000), 2);
        t.amount = rust_decimal::Decimal::new(rng.i64(1..500_000_000), 8);
        t.side = if rng.bool() { Side::Buy } else { Side::Sell };
        t.timestamp = Timestamp::from_unix_micros(micros);
        t.received_at = Timestamp::from_unix_micros(micros + rng.i64(1_000..90_000));
        out.push(t);
        id += 1;
        // Mostly seconds apart, sometimes several at once, and now and then an hour of
        // silence (an interval with no trade emits no candle).
        micros += match rng.u32(0..2_000) {
            0..=199 => 0,
            200..=1_998 => rng.i64(1..16_000_000),
            _ => rng.i64(3_600_000_000..7_200_000_000),
        };
    }
    out
}

/// Replays a recorded day at full speed, as a venue and its driver would deliver it: live;
/// then the connection drops and stays down for hours of wall time; a backfill brings the
/// missed trades in pages (the first overlapping what was already sent), ten minutes of wall
/// time apart; then live again to the end of the day.
struct Replay2021 {
    day: Vec<Trade>,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Replay2021 {
    fn name(&self) -> &str {
        "replay"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let name: Arc<str> = Arc::from("replay");
        let symbol = &ctx.symbols[0];
        let third = self.day.len() / 3;
        let (before, rest) = self.day.split_at(third);
        let (missed, after) = rest.split_at(third);
        ctx.sink.progress(&name, symbol, Completeness::Live).await?;
        for batch in before.chunks(100) {
            ctx.sink.send(batch.to_vec()).await?;
        }
        ctx.sink
            .progress(&name, symbol, Completeness::Behind)
            .await?;
        // The wall clock runs on while the stream is behind: under paused time, it just
        // moves.
        tokio::time::sleep(Duration::from_secs(3 * 3_600)).await;
        let overlap = &before[before.len() - 5..];
        let pages: Vec<Trade> = overlap.iter().chain(missed).cloned().collect();
        for page in pages.chunks(250) {
            ctx.sink.send(page.to_vec()).await?;
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        ctx.sink.progress(&name, symbol, Completeness::Live).await?;
        for batch in after.chunks(100) {
            ctx.sink.send(batch.to_vec()).await?;
        }
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

type CandleKey = (Interval, i64);

/// Candles recomputed from `trades` (in arrival order), the brute-force way.
fn recompute_candles(trades: &[Trade], intervals: &[Interval]) -> BTreeMap<CandleKey, Candle> {
    let mut groups: BTreeMap<CandleKey, Vec<(usize, &Trade)>> = BTreeMap::new();
    for (arrival, t) in trades.iter().enumerate() {
        for &iv in intervals {
            let open = t.timestamp.unix_nanos().div_euclid(iv.nanos()) * iv.nanos();
            groups.entry((iv, open)).or_default().push((arrival, t));
        }
    }
    groups
        .into_iter()
        .map(|((iv, open), trades)| {
            let order = |&&(arrival, t): &&(usize, &Trade)| (t.timestamp, arrival);
            let first = trades.iter().min_by_key(order).unwrap().1;
            let last = trades.iter().max_by_key(order).unwrap().1;
            let c = Candle {
                exchange: first.exchange.clone(),
                symbol: first.symbol.clone(),
                interval: iv,
                open_time: Timestamp::from_unix_nanos(open, 0),
                close_time: Timestamp::from_unix_nanos(open + iv.nanos(), 0),
                open: first.price,
                high: trades.iter().map(|(_, t)| t.price).max().unwrap(),
                low: trades.iter().map(|(_, t)| t.price).min().unwrap(),
                close: last.price,
                volume: trades.iter().map(|(_, t)| t.amount).sum(),
                trades: trades.len() as u64,
                revision: 0,
                complete: true,
            };
            ((iv, open), c)
        })
        .collect()
}

fn candles_of(events: &[Event]) -> Vec<Candle> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Candle(c) => Some(c.clone()),
            Event::Trade(_) | Event::Gap(_) => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_recorded_day_of_2021_replayed_through_a_drop_and_a_backfill_gets_every_candle_exact() {
    let day = recorded_day("replay");
    assert!(day.len() > 5_000, "{} trades", day.len());
    let intervals = [Interval::parse("1m").unwrap(), Interval::M30, Interval::H1];
    let want = recompute_candles(&day, &intervals);
    let sent = Arc::new(Notify::new());
    let (mem, events, mut count) = Memory::new("memory");
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            candles: intervals.to_vec(),
            ..PipelineConfig::default()
        })
        .exchange(
            Arc::new(Replay2021 {
                day: day.clone(),
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(Box::new(mem), settings(500))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    // The day's last candles close as a quiet live market's do, by the wall time elapsed
    // since the last trade: well within two hours.
    let all = day.len() + want.len();
    tokio::time::timeout(
        Duration::from_secs(2 * 3_600),
        count.wait_for(|c| *c >= all),
    )
    .await
    .expect("the day's last candles never closed")
    .unwrap();
    shutdown.cancel();
    let summary = run.await.unwrap();

    let events = events.lock().unwrap();
    let want_ids: Vec<String> = day.iter().map(|t| t.trade_id.to_string()).collect();
    assert_eq!(trade_ids(&events), want_ids, "every trade once, in order");
    let got = candles_of(&events);
    assert_eq!(got.len(), want.len());
    let got: BTreeMap<CandleKey, Candle> = got
        .into_iter()
        .map(|c| ((c.interval, c.open_time.unix_nanos()), c))
        .collect();
    for (key, c) in &want {
        assert_eq!(
            got.get(key),
            Some(c),
            "candle {key:?} differs from its trades"
        );
    }
    assert_eq!(
        summary.exchanges[0].duplicates, 5,
        "the overlap of the backfill"
    );
    assert_eq!(
        (summary.late_trades, summary.incomplete_candles),
        (0, 0),
        "{summary}"
    );
    assert!(summary.warnings().is_empty(), "{:?}", summary.warnings());
    assert_eq!(summary.candles as usize, want.len());
}

/// Sends trades 0..100 of one minute, then waits for shutdown.
struct Minute {
    gap: Option<Gap>,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Minute {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        if let Some(gap) = &self.gap {
            ctx.sink.send_gap(gap.clone()).await?;
        }
        ctx.sink
            .send((0..100).map(|i| trade("x", i)).collect())
            .await?;
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// Runs `exchange` with 1m candles into a store that resumes after trade `held` (if any)
/// until the candle of the minute is stored; returns it and the summary.
async fn one_minute_candle(
    exchange: Minute,
    held: Option<u64>,
) -> (Candle, feeder_core::feeder::Summary) {
    let sent = exchange.sent.clone();
    let (mem, events, mut count) = Memory::new("memory");
    let writer: Box<dyn Writer> = match held {
        Some(held) => Box::new(Durable { inner: mem, held }),
        None => Box::new(mem),
    };
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            candles: vec![Interval::parse("1m").unwrap()],
            ..PipelineConfig::default()
        })
        .exchange(Arc::new(exchange), vec![Symbol::parse("BTC-USD").unwrap()])
        .writer(writer, settings(10))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    let has_candle =
        |events: &Arc<Mutex<Vec<Event>>>| !candles_of(&events.lock().unwrap()).is_empty();
    tokio::time::timeout(
        Duration::from_secs(120),
        count.wait_for(|_| has_candle(&events)),
    )
    .await
    .expect("no candle within two minutes")
    .unwrap();
    shutdown.cancel();
    let summary = run.await.unwrap();
    let candles = candles_of(&events.lock().unwrap());
    assert_eq!(candles.len(), 1, "{candles:?}");
    (candles[0].clone(), summary)
}

#[tokio::test(start_paused = true)]
async fn a_restart_marks_the_candle_its_resume_point_falls_in_incomplete() {
    let sent = Arc::new(Notify::new());
    let (c, summary) = one_minute_candle(Minute { gap: None, sent }, Some(49)).await;
    // Trades 0..=49 went into the earlier run's candle; this one holds 50..100.
    assert_eq!((c.trades, c.complete), (50, false));
    assert_eq!(summary.incomplete_candles, 1);
    assert!(!summary.lost_anything(), "nothing was lost: {summary}");
    assert_eq!(summary.warnings().len(), 1, "{:?}", summary.warnings());

    let sent = Arc::new(Notify::new());
    let (c, summary) = one_minute_candle(Minute { gap: None, sent }, None).await;
    assert_eq!((c.trades, c.complete), (100, true));
    assert!(summary.warnings().is_empty(), "{:?}", summary.warnings());
}

#[tokio::test(start_paused = true)]
async fn a_gap_marks_the_candle_it_cuts_incomplete() {
    let gap = Gap {
        exchange: Arc::from("x"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        after_trade_id: TradeId::from_u64(0),
        before_trade_id: None,
        from: trade("x", 0).timestamp,
        to: None,
        reason: GapReason::NoBackfill,
    };
    let sent = Arc::new(Notify::new());
    let (c, summary) = one_minute_candle(
        Minute {
            gap: Some(gap),
            sent,
        },
        None,
    )
    .await;
    assert_eq!((c.trades, c.complete), (100, false));
    assert_eq!(summary.incomplete_candles, 1);
}

/// 2024-01-02T10:00:00Z: the start of a minute.
const T10: i64 = 1_704_189_600;

/// Trade `id` of BTC-USD at `T10 + id` seconds, at a price of `100 + id`.
fn timed(id: u64) -> Trade {
    let at = Timestamp::from_unix_secs(T10 + id as i64);
    Trade {
        price: parse_decimal(&(100 + id).to_string()).unwrap(),
        timestamp: at,
        received_at: at,
        ..trade("x", id)
    }
}

/// A store kept across runs: answers where it left off and, when `reads_back`, replays.
struct Shelf {
    events: Arc<Mutex<Vec<Event>>>,
    reads_back: bool,
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
    ) -> Result<Option<feeder_core::exchange::Cursor>, WriteError> {
        let events = self.events.lock().unwrap();
        Ok(events.iter().rev().find_map(|e| match e {
            Event::Trade(t) if &*t.exchange == exchange && t.symbol == *symbol => {
                Some(feeder_core::exchange::Cursor {
                    trade_id: t.trade_id.clone(),
                    timestamp: t.timestamp,
                })
            }
            _ => None,
        }))
    }
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &feeder_core::exchange::Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        if !self.reads_back {
            return Ok(false);
        }
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

/// Publishes `ids` (as [`timed`] trades), leaving out those its cursor already covers, as a
/// venue's backfill and live feed would; says so, then waits for shutdown.
struct Venue {
    ids: std::ops::RangeInclusive<u64>,
    sent: Arc<Notify>,
}

#[async_trait]
impl Exchange for Venue {
    fn name(&self) -> &str {
        "x"
    }
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let symbol = ctx.symbols[0].clone();
        let cursor = ctx.cursors.get(&symbol);
        let trades: Vec<Trade> = self
            .ids
            .clone()
            .map(timed)
            .filter(|t| cursor.as_ref().is_none_or(|c| !c.covers(t)))
            .collect();
        ctx.sink.send(trades).await?;
        self.sent.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// One run of a feeder with 1 m candles over `ids`, into `shelf`; returns once its events
/// are stored and the run has ended.
async fn run_over(
    ids: std::ops::RangeInclusive<u64>,
    events: &Arc<Mutex<Vec<Event>>>,
    reads_back: bool,
) -> feeder_core::feeder::Summary {
    let sent = Arc::new(Notify::new());
    let feeder = Feeder::builder()
        .pipeline(PipelineConfig {
            candles: vec![Interval::parse("1m").unwrap()],
            candle_grace: Duration::from_secs(1),
            ..PipelineConfig::default()
        })
        .exchange(
            Arc::new(Venue {
                ids,
                sent: sent.clone(),
            }),
            vec![Symbol::parse("BTC-USD").unwrap()],
        )
        .writer(
            Box::new(Shelf {
                events: events.clone(),
                reads_back,
            }),
            settings(10),
        )
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    sent.notified().await;
    shutdown.cancel();
    run.await.unwrap()
}

/// The candle of the minute from `open`, recomputed from the trades stored in it.
fn recomputed(
    events: &[Event],
    open: i64,
) -> (
    usize,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
) {
    let ts: Vec<&Trade> = events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) if (open..open + 60).contains(&t.timestamp.unix_secs()) => Some(t),
            _ => None,
        })
        .collect();
    let prices = ts.iter().map(|t| t.price);
    (
        ts.len(),
        ts[0].price,
        prices.clone().max().unwrap(),
        prices.min().unwrap(),
        ts[ts.len() - 1].price,
    )
}

/// Stopped 40 s into a minute and started again: the minute's candle holds the trades of both
/// runs, read back from the store for the first part, and equals its stored trades.
#[tokio::test]
async fn a_restart_in_the_middle_of_a_candle_rebuilds_it_from_the_store() {
    for reads_back in [true, false] {
        let events = Arc::new(Mutex::new(Vec::new()));
        let first = run_over(1..=40, &events, reads_back).await;
        assert_eq!(first.candles, 0, "the minute was still open");
        let second = run_over(1..=100, &events, reads_back).await;

        let stored = events.lock().unwrap().clone();
        assert_eq!(
            trade_ids(&stored),
            (1..=100).map(|i| i.to_string()).collect::<Vec<_>>(),
            "every trade stored once"
        );
        let candles = candles_of(&stored);
        assert_eq!(candles.len(), 1, "{candles:?}");
        let c = &candles[0];
        assert_eq!(c.open_time.unix_secs(), T10);
        if reads_back {
            let (n, open, high, low, close) = recomputed(&stored, T10);
            assert_eq!(c.trades as usize, n);
            assert_eq!(n, 59);
            assert_eq!((c.open, c.high, c.low, c.close), (open, high, low, close));
            assert_eq!(c.volume, parse_decimal("0.00000059").unwrap());
            assert!(c.complete, "{c:?}");
            assert_eq!(second.incomplete_candles, 0);
        } else {
            // Only the second run's part of the minute, and said so.
            assert_eq!(c.trades, 19);
            assert!(!c.complete, "{c:?}");
            assert_eq!(second.incomplete_candles, 1);
        }
    }
}
