//! Watching a running feeder: a [`Monitor`] that any part of a program can ask for a
//! [`Status`] (each stream's state, rate, lag and counters, each writer's queue and errors,
//! the process's memory and CPU), whether the feeder is ready, and the recent candles.
//!
//! With the `observe` feature, the same status is served over HTTP: Prometheus metrics at
//! `/metrics`, health at `/health/live` and `/health/ready`, and a status page at `/`
//! ([`serve`]).
//!
//! Counting costs the tasks a few relaxed atomic additions per batch: the counters live in
//! [`ExchangeStats`], [`StreamStats`] and [`WriterStats`], and are only read when a status is
//! asked for.
//!
//! ```no_run
//! # async fn demo(config: feeder_core::config::Config, registry: &feeder_core::feeder::Registry)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use feeder_core::feeder::Feeder;
//! use tokio_util::sync::CancellationToken;
//!
//! let feeder = Feeder::from_config(config, registry).await?;
//! let monitor = feeder.monitor();
//! let shutdown = CancellationToken::new();
//! let run = tokio::spawn(feeder.run(shutdown.clone()));
//! // Any time later, from anywhere:
//! let status = monitor.status();
//! for s in &status.streams {
//!     println!("{} {}: {} ({:.0} trades/s)", s.exchange, s.symbol, s.state, s.trades_per_second);
//! }
//! println!("ready: {}", status.ready);
//! # shutdown.cancel(); run.await?; Ok(()) }
//! ```

mod page;
mod process;
mod stats;

#[cfg(feature = "observe")]
mod metrics;
#[cfg(feature = "observe")]
mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exchange::ExchangeStats;
use crate::model::{Candle, Symbol, Timestamp};
use crate::writer::{QueueGauges, WriterHandle, WriterStats};

pub use page::render_page;
pub use process::ProcessStatus;
pub use stats::{
    HistogramSnapshot, LatencyHistogram, Link, LinkStats, Progress, StreamStats, StreamTable,
    LATENCY_BUCKETS, RECENT_CANDLES,
};

#[cfg(feature = "observe")]
pub use metrics::{encode_metrics, MetricsCollector};
#[cfg(feature = "observe")]
pub use server::{serve, ServeError, Server};

/// Watches one feeder. Cheap to clone; every clone sees the same feeder.
///
/// Get it from [`Feeder::monitor`](crate::feeder::Feeder::monitor) before
/// [`run`](crate::feeder::Feeder::run): its exchanges are known at once, its writers from the
/// moment the run starts them.
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    exchanges: Mutex<Vec<(Arc<str>, Arc<ExchangeStats>)>>,
    writers: Mutex<Vec<WriterProbe>>,
    phase: AtomicU8,
    started: Mutex<Option<(Instant, Timestamp)>>,
    rates: Mutex<HashMap<String, Rate>>,
}

#[derive(Debug)]
struct WriterProbe {
    name: Arc<str>,
    stats: Arc<WriterStats>,
    gauges: QueueGauges,
    retry_delay: Duration,
}

/// A rate measured between two looks at a counter at least a second apart.
#[derive(Debug, Clone, Copy)]
struct Rate {
    at: Instant,
    count: u64,
    per_second: f64,
}

/// Where a feeder is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Built, not running yet.
    Starting,
    /// Running.
    Running,
    /// Shutting down (or done).
    Stopping,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        })
    }
}

/// The state of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Not started yet.
    Starting,
    /// Connecting, or connected and waiting for the venue's first message.
    Connecting,
    /// Connected, caught up and fresh: the one ready state.
    Live,
    /// Connected, filling a hole over REST (or a hole it could not fill is still open).
    Behind,
    /// Connected, but the venue has said nothing for longer than the stale timeout.
    Stale,
    /// The connection was lost; waiting to reconnect.
    Disconnected,
    /// The feeder is shutting down.
    Stopped,
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamState::Starting => "starting",
            StreamState::Connecting => "connecting",
            StreamState::Live => "live",
            StreamState::Behind => "behind",
            StreamState::Stale => "stale",
            StreamState::Disconnected => "disconnected",
            StreamState::Stopped => "stopped",
        })
    }
}

/// One stream at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct StreamStatus {
    /// The exchange's name.
    pub exchange: Arc<str>,
    /// The symbol.
    pub symbol: Symbol,
    /// Its state.
    pub state: StreamState,
    /// Whether it counts as ready: [`StreamState::Live`].
    pub ready: bool,
    /// Unique trades passed on to the writers.
    pub trades: u64,
    /// Trades per second passed on, over the last second or more.
    pub trades_per_second: f64,
    /// Trades dropped as duplicates.
    pub duplicates: u64,
    /// Trades recovered over REST.
    pub backfilled: u64,
    /// Holes recorded.
    pub gaps: u64,
    /// Venue time of the newest trade passed on.
    pub last_trade: Option<Timestamp>,
    /// Seconds since then.
    pub last_trade_age_seconds: Option<f64>,
    /// Seconds the completeness watermark is behind the wall clock (while candles are built).
    pub watermark_lag_seconds: Option<f64>,
    /// Seconds since the venue last showed life on this stream's connection.
    pub silent_seconds: Option<f64>,
    /// How long the connection may stay silent and count as fresh, in seconds.
    pub stale_timeout_seconds: f64,
    /// The newest candles of the smallest interval, oldest first.
    #[serde(skip)]
    pub candles: Vec<Candle>,
}

/// Counters of one exchange that no single symbol owns.
#[derive(Clone, Debug, Serialize)]
pub struct ExchangeStatus {
    /// The exchange's name.
    pub name: Arc<str>,
    /// Trades received (before dedup).
    pub received: u64,
    /// Payloads that could not be parsed.
    pub parse_errors: u64,
    /// Messages of a shape the parser does not know.
    pub unrecognized: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Connection-level failures.
    pub errors: u64,
    /// Restarts by the supervisor.
    pub restarts: u64,
    /// Trades turned away as impossible.
    pub rejected: u64,
    /// Trades quarantined for an id out of line.
    pub quarantined: u64,
}

/// The state of one writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriterState {
    /// Its last write succeeded (or none was needed).
    Ok,
    /// Failing, for less than its retry delay.
    Retrying,
    /// Failing for longer than its retry delay.
    Failing,
}

impl std::fmt::Display for WriterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterState::Ok => "ok",
            WriterState::Retrying => "retrying",
            WriterState::Failing => "failing",
        })
    }
}

/// One writer at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct WriterStatus {
    /// The writer's name.
    pub name: Arc<str>,
    /// Its state.
    pub state: WriterState,
    /// Whether it counts as ready: not failing for longer than its retry delay.
    pub ready: bool,
    /// Events stored.
    pub events: u64,
    /// Events stored per second, over the last second or more.
    pub events_per_second: f64,
    /// Batches stored.
    pub batches: u64,
    /// Failed writes, flushes and closes.
    pub errors: u64,
    /// Retries of failed batches.
    pub retries: u64,
    /// Events given up on.
    pub dropped: u64,
    /// Events the store refused one by one.
    pub rejected: u64,
    /// Events in its queue.
    pub queued_events: u64,
    /// Bytes of events in its queue (estimated).
    pub queued_bytes: u64,
    /// Bytes in its spill file not yet replayed.
    pub spill_bytes: u64,
    /// Seconds it has been failing, if it is.
    pub failing_seconds: Option<f64>,
    /// How long it may fail and still count as ready, in seconds.
    pub retry_delay_seconds: f64,
    /// Durations of its stored writes.
    pub write_latency: HistogramSnapshot,
}

/// A feeder at one moment: what [`Monitor::status`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// When this was taken.
    pub time: Timestamp,
    /// Where the feeder is in its life.
    pub phase: Phase,
    /// Seconds since it started running.
    pub uptime_seconds: f64,
    /// Running, every stream [`Live`](StreamState::Live), no writer failing for longer than
    /// its retry delay.
    pub ready: bool,
    /// Every stream, by exchange in the order of the configuration.
    pub streams: Vec<StreamStatus>,
    /// Every exchange.
    pub exchanges: Vec<ExchangeStatus>,
    /// Every writer.
    pub writers: Vec<WriterStatus>,
    /// The process.
    pub process: ProcessStatus,
}

impl Status {
    /// Trades per second over every stream.
    pub fn trades_per_second(&self) -> f64 {
        self.streams.iter().map(|s| s.trades_per_second).sum()
    }

    /// One line: phase, readiness, rates and the streams and writers that are not well.
    pub fn summary_line(&self) -> String {
        use std::fmt::Write as _;
        let live = self.streams.iter().filter(|s| s.ready).count();
        let trades: u64 = self.streams.iter().map(|s| s.trades).sum();
        let mut line = format!(
            "status: {} {}, streams {live}/{} live, trades {trades} ({:.1}/s)",
            self.phase,
            if self.ready { "ready" } else { "not ready" },
            self.streams.len(),
            self.trades_per_second(),
        );
        for s in self.streams.iter().filter(|s| !s.ready) {
            let _ = write!(line, ", {} {} {}", s.exchange, s.symbol, s.state);
        }
        for w in &self.writers {
            let _ = write!(
                line,
                ", writer {} {} queue={} errors={} dropped={}",
                w.name, w.state, w.queued_events, w.errors, w.dropped
            );
        }
        line
    }
}

fn secs_between(later: Timestamp, earlier: Timestamp) -> f64 {
    (later.unix_nanos().saturating_sub(earlier.unix_nanos())) as f64 / 1e9
}

impl Monitor {
    /// A monitor that watches nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches an exchange's counters (the feeder does this for each of its exchanges).
    pub fn watch_exchange(&self, name: &str, stats: Arc<ExchangeStats>) {
        lock(&self.inner.exchanges).push((Arc::from(name), stats));
    }

    /// Watches a writer through its handle, without holding its queue open. `retry_delay` is
    /// how long it may fail before it makes the feeder not ready.
    pub fn watch_writer(&self, handle: &WriterHandle, retry_delay: Duration) {
        lock(&self.inner.writers).push(WriterProbe {
            name: Arc::from(handle.name()),
            stats: handle.stats().clone(),
            gauges: handle.gauges(),
            retry_delay,
        });
    }

    /// The feeder started running.
    pub fn running(&self) {
        *lock(&self.inner.started) = Some((Instant::now(), Timestamp::now()));
        self.inner
            .phase
            .store(Phase::Running as u8, Ordering::Relaxed);
    }

    /// The feeder began to shut down: it is no longer ready.
    pub fn stopping(&self) {
        self.inner
            .phase
            .store(Phase::Stopping as u8, Ordering::Relaxed);
    }

    /// Where the feeder is in its life.
    pub fn phase(&self) -> Phase {
        match self.inner.phase.load(Ordering::Relaxed) {
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }

    /// Whether the feeder is ready (see [`Status::ready`]).
    pub fn ready(&self) -> bool {
        self.status().ready
    }

    /// The feeder now.
    pub fn status(&self) -> Status {
        let now = Timestamp::now();
        let mono = Instant::now();
        let phase = self.phase();
        let exchanges: Vec<(Arc<str>, Arc<ExchangeStats>)> = lock(&self.inner.exchanges).clone();
        let mut rates = lock(&self.inner.rates);
        let mut streams = Vec::new();
        let mut ex_status = Vec::new();
        for (name, stats) in &exchanges {
            let link = &stats.link;
            for (symbol, s) in stats.streams.iter() {
                let state = stream_state(phase, link, s.progress(), now);
                let trades = s.trades.load(Ordering::Relaxed);
                let last_trade = s.last_trade();
                let key = format!("s/{name}/{symbol}");
                streams.push(StreamStatus {
                    exchange: name.clone(),
                    symbol: symbol.clone(),
                    state,
                    ready: state == StreamState::Live,
                    trades,
                    trades_per_second: rate(&mut rates, key, trades, mono),
                    duplicates: s.duplicates.load(Ordering::Relaxed),
                    backfilled: s.backfilled.load(Ordering::Relaxed),
                    gaps: s.gaps.load(Ordering::Relaxed),
                    last_trade,
                    last_trade_age_seconds: last_trade.map(|t| secs_between(now, t).max(0.0)),
                    watermark_lag_seconds: s.watermark().map(|w| secs_between(now, w).max(0.0)),
                    silent_seconds: link.alive_at().map(|t| secs_between(now, t).max(0.0)),
                    stale_timeout_seconds: link.fresh_within().as_secs_f64(),
                    candles: s.candles(),
                });
            }
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            ex_status.push(ExchangeStatus {
                name: name.clone(),
                received: get(&stats.trades),
                parse_errors: get(&stats.parse_errors),
                unrecognized: get(&stats.unrecognized),
                reconnects: get(&stats.reconnects),
                errors: get(&stats.errors),
                restarts: get(&stats.restarts),
                rejected: get(&stats.rejected),
                quarantined: get(&stats.quarantined),
            });
        }
        let mut writers = Vec::new();
        for w in lock(&self.inner.writers).iter() {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            let failing = w
                .stats
                .failing_since()
                .map(|t| secs_between(now, t).max(0.0));
            let state = match failing {
                None => WriterState::Ok,
                Some(f) if f <= w.retry_delay.as_secs_f64() => WriterState::Retrying,
                Some(_) => WriterState::Failing,
            };
            let events = get(&w.stats.events);
            writers.push(WriterStatus {
                name: w.name.clone(),
                state,
                ready: state != WriterState::Failing,
                events,
                events_per_second: rate(&mut rates, format!("w/{}", w.name), events, mono),
                batches: get(&w.stats.batches),
                errors: get(&w.stats.errors),
                retries: get(&w.stats.retries),
                dropped: get(&w.stats.dropped),
                rejected: get(&w.stats.rejected),
                queued_events: get(&w.stats.queued),
                queued_bytes: w.gauges.queued_bytes(),
                spill_bytes: w.gauges.spill_bytes(),
                failing_seconds: failing,
                retry_delay_seconds: w.retry_delay.as_secs_f64(),
                write_latency: w.stats.write_latency.snapshot(),
            });
        }
        drop(rates);
        let uptime = lock(&self.inner.started)
            .map(|(at, _)| mono.duration_since(at).as_secs_f64())
            .unwrap_or(0.0);
        let ready = phase == Phase::Running
            && !streams.is_empty()
            && streams.iter().all(|s| s.ready)
            && writers.iter().all(|w| w.ready);
        Status {
            time: now,
            phase,
            uptime_seconds: uptime,
            ready,
            streams,
            exchanges: ex_status,
            writers,
            process: ProcessStatus::read(),
        }
    }
}

/// A stream's state from its link and what its exchange last reported.
fn stream_state(phase: Phase, link: &LinkStats, progress: Progress, now: Timestamp) -> StreamState {
    match phase {
        Phase::Starting => return StreamState::Starting,
        Phase::Stopping => return StreamState::Stopped,
        Phase::Running => {}
    }
    match link.state() {
        Link::Idle => StreamState::Starting,
        Link::Connecting => StreamState::Connecting,
        Link::Down => StreamState::Disconnected,
        Link::Up => {
            let silent = link
                .alive_at()
                .map_or(f64::INFINITY, |t| secs_between(now, t));
            if silent > link.fresh_within().as_secs_f64() {
                StreamState::Stale
            } else {
                match progress {
                    Progress::Live | Progress::Polled => StreamState::Live,
                    Progress::Behind => StreamState::Behind,
                    Progress::Unknown => StreamState::Connecting,
                }
            }
        }
    }
}

/// The rate of `count` under `key`, measured anew once a second has passed since the last
/// measure.
fn rate(rates: &mut HashMap<String, Rate>, key: String, count: u64, now: Instant) -> f64 {
    let r = rates.entry(key).or_insert(Rate {
        at: now,
        count,
        per_second: 0.0,
    });
    let dt = now.duration_since(r.at).as_secs_f64();
    if dt >= 1.0 {
        r.per_second = count.saturating_sub(r.count) as f64 / dt;
        r.at = now;
        r.count = count;
    }
    r.per_second
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor_of(symbols: &[&str]) -> (Monitor, Arc<ExchangeStats>) {
        let symbols: Vec<Symbol> = symbols.iter().map(|s| Symbol::parse(s).unwrap()).collect();
        let stats = Arc::new(ExchangeStats::for_symbols(&symbols));
        let m = Monitor::new();
        m.watch_exchange("x", stats.clone());
        (m, stats)
    }

    #[test]
    fn a_stream_is_ready_only_while_up_fresh_and_caught_up() {
        let (m, stats) = monitor_of(&["BTC-USD"]);
        let stream = stats.streams.iter().next().unwrap().1.clone();
        assert_eq!(m.status().streams[0].state, StreamState::Starting);
        assert!(!m.ready(), "not running yet");
        m.running();
        stats.link.set(Link::Connecting);
        assert_eq!(m.status().streams[0].state, StreamState::Connecting);
        stats.link.set_fresh_within(Duration::from_secs(5));
        stats.link.alive(Timestamp::now());
        stream.set_progress(crate::exchange::Completeness::Behind);
        assert_eq!(m.status().streams[0].state, StreamState::Behind);
        stream.set_progress(crate::exchange::Completeness::Live);
        assert!(m.ready());
        // Silent for longer than the stale timeout.
        let long_ago = Timestamp::from_unix_secs(Timestamp::now().unix_secs() - 60);
        stats.link.alive(long_ago);
        let status = m.status();
        assert_eq!(status.streams[0].state, StreamState::Stale);
        assert!(!status.ready);
        stats.link.set(Link::Down);
        assert_eq!(m.status().streams[0].state, StreamState::Disconnected);
        stats.link.alive(Timestamp::now());
        assert!(m.ready());
        m.stopping();
        assert!(!m.ready());
        assert_eq!(m.status().streams[0].state, StreamState::Stopped);
    }

    #[test]
    fn the_summary_line_names_what_is_not_well() {
        let (m, stats) = monitor_of(&["BTC-USD", "ETH-USD"]);
        m.running();
        stats.link.alive(Timestamp::now());
        let mut streams = stats.streams.iter();
        let (_, btc) = streams.next().unwrap();
        btc.set_progress(crate::exchange::Completeness::Live);
        btc.passed(3, Timestamp::now());
        let line = m.status().summary_line();
        assert!(line.contains("not ready"), "{line}");
        assert!(line.contains("streams 1/2 live"), "{line}");
        assert!(line.contains("trades 3"), "{line}");
        assert!(line.contains("x ETH-USD connecting"), "{line}");
        assert!(!line.contains("BTC-USD"), "{line}");
    }
}
