//! The counters behind the status: plain atomics, written by the tasks on their way and read
//! by [`Monitor`](super::Monitor) when asked. Nothing here allocates, locks or looks up a name
//! per trade: a driver finds a stream's counters once per batch, the pipeline once per run of
//! one stream's trades.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exchange::Completeness;
use crate::model::{Candle, Symbol, Timestamp};

/// Most candles kept per stream for the status page's chart.
pub const RECENT_CANDLES: usize = 60;

/// No time recorded yet.
const NEVER: i64 = i64::MIN;

/// Counters of one stream (an exchange's symbol).
#[derive(Debug)]
pub struct StreamStats {
    /// Unique trades passed on to the writers (after the dedup valve).
    pub trades: AtomicU64,
    /// Trades the valve dropped as already seen (published by the pipeline about once a
    /// second).
    pub duplicates: AtomicU64,
    /// Trades recovered over REST after a reconnect or a reported hole.
    pub backfilled: AtomicU64,
    /// Holes recorded as gap events.
    pub gaps: AtomicU64,
    /// Venue time of the newest trade passed on, in Unix nanoseconds.
    last_trade: AtomicI64,
    /// The stream's completeness watermark, in Unix nanoseconds (only while candles are
    /// built).
    watermark: AtomicI64,
    /// The last [`Completeness`] the exchange reported, as [`Progress`].
    progress: AtomicU8,
    /// The newest candles of the smallest interval, oldest first.
    candles: Mutex<VecDeque<Candle>>,
}

impl Default for StreamStats {
    fn default() -> Self {
        Self {
            trades: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            backfilled: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            last_trade: AtomicI64::new(NEVER),
            watermark: AtomicI64::new(NEVER),
            progress: AtomicU8::new(Progress::Unknown as u8),
            candles: Mutex::new(VecDeque::new()),
        }
    }
}

/// How far a stream is known complete, as last reported by its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Progress {
    /// Nothing reported yet.
    Unknown = 0,
    /// Caught up ([`Completeness::Live`]).
    Live = 1,
    /// A hole is open or being filled ([`Completeness::Behind`]).
    Behind = 2,
    /// A poll answered up to a time ([`Completeness::UpTo`]).
    Polled = 3,
}

impl StreamStats {
    /// Counts `n` trades passed on, the newest of which has venue time `newest`.
    pub fn passed(&self, n: u64, newest: Timestamp) {
        self.trades.fetch_add(n, Ordering::Relaxed);
        self.last_trade
            .fetch_max(newest.unix_nanos(), Ordering::Relaxed);
    }

    /// Venue time of the newest trade passed on.
    pub fn last_trade(&self) -> Option<Timestamp> {
        match self.last_trade.load(Ordering::Relaxed) {
            NEVER => None,
            ns => Some(Timestamp::from_unix_nanos(ns, 9)),
        }
    }

    /// Records the completeness watermark.
    pub fn set_watermark(&self, at: Option<Timestamp>) {
        let ns = at.map_or(NEVER, Timestamp::unix_nanos);
        self.watermark.store(ns, Ordering::Relaxed);
    }

    /// The completeness watermark, while candles are built.
    pub fn watermark(&self) -> Option<Timestamp> {
        match self.watermark.load(Ordering::Relaxed) {
            NEVER => None,
            ns => Some(Timestamp::from_unix_nanos(ns, 9)),
        }
    }

    /// Records what the exchange says of the stream's completeness.
    pub fn set_progress(&self, c: Completeness) {
        let p = match c {
            Completeness::Live => Progress::Live,
            Completeness::Behind => Progress::Behind,
            Completeness::UpTo(_) => Progress::Polled,
        };
        self.progress.store(p as u8, Ordering::Relaxed);
    }

    /// What the exchange last said of the stream's completeness.
    pub fn progress(&self) -> Progress {
        match self.progress.load(Ordering::Relaxed) {
            1 => Progress::Live,
            2 => Progress::Behind,
            3 => Progress::Polled,
            _ => Progress::Unknown,
        }
    }

    /// Keeps a candle for the chart; a revision replaces the candle it revises.
    pub fn push_candle(&self, candle: &Candle) {
        let mut q = self.candles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = q.iter_mut().rev().find(|c| c.open_time == candle.open_time) {
            *last = candle.clone();
            return;
        }
        if q.len() == RECENT_CANDLES {
            q.pop_front();
        }
        q.push_back(candle.clone());
    }

    /// The candles kept, oldest first.
    pub fn candles(&self) -> Vec<Candle> {
        let q = self.candles.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().cloned().collect()
    }
}

/// The streams of one exchange: its configured symbols, each with its counters, fixed when
/// the exchange is added. Symbols are few; a lookup is a short scan.
#[derive(Clone, Debug, Default)]
pub struct StreamTable {
    entries: Arc<[(Symbol, Arc<StreamStats>)]>,
}

impl StreamTable {
    /// A table with fresh counters for `symbols`.
    pub fn new(symbols: &[Symbol]) -> Self {
        Self {
            entries: symbols
                .iter()
                .map(|s| (s.clone(), Arc::new(StreamStats::default())))
                .collect(),
        }
    }

    /// The counters of `symbol`, if it is configured.
    pub fn get(&self, symbol: &Symbol) -> Option<&Arc<StreamStats>> {
        self.entries
            .iter()
            .find(|(s, _)| s == symbol)
            .map(|(_, c)| c)
    }

    /// Every stream, in the order of the configuration.
    pub fn iter(&self) -> impl Iterator<Item = &(Symbol, Arc<StreamStats>)> {
        self.entries.iter()
    }
}

/// The state of an exchange's link to its venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Link {
    /// Not started.
    Idle = 0,
    /// A connection is being opened, or is open and has not yet shown life.
    Connecting = 1,
    /// The venue answers: a WebSocket that received the venue's messages, or a poll answered.
    Up = 2,
    /// The connection was lost; the driver waits to connect again.
    Down = 3,
}

/// Liveness of an exchange's link, written by its driver.
#[derive(Debug)]
pub struct LinkStats {
    state: AtomicU8,
    /// When the venue last showed life, in Unix nanoseconds.
    alive_at: AtomicI64,
    /// How long the link may stay silent and still count as fresh, in milliseconds (the
    /// stale timeout; for polling, a few intervals).
    fresh_within_ms: AtomicU64,
}

impl Default for LinkStats {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(Link::Idle as u8),
            alive_at: AtomicI64::new(NEVER),
            fresh_within_ms: AtomicU64::new(30_000),
        }
    }
}

impl LinkStats {
    /// Sets the link's state.
    pub fn set(&self, link: Link) {
        self.state.store(link as u8, Ordering::Relaxed);
    }

    /// The link's state.
    pub fn state(&self) -> Link {
        match self.state.load(Ordering::Relaxed) {
            1 => Link::Connecting,
            2 => Link::Up,
            3 => Link::Down,
            _ => Link::Idle,
        }
    }

    /// The venue showed life at `now`: the link is up.
    pub fn alive(&self, now: Timestamp) {
        self.alive_at.store(now.unix_nanos(), Ordering::Relaxed);
        self.state.store(Link::Up as u8, Ordering::Relaxed);
    }

    /// When the venue last showed life.
    pub fn alive_at(&self) -> Option<Timestamp> {
        match self.alive_at.load(Ordering::Relaxed) {
            NEVER => None,
            ns => Some(Timestamp::from_unix_nanos(ns, 9)),
        }
    }

    /// Sets how long the link may stay silent and still count as fresh.
    pub fn set_fresh_within(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.fresh_within_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the link may stay silent and still count as fresh.
    pub fn fresh_within(&self) -> Duration {
        Duration::from_millis(self.fresh_within_ms.load(Ordering::Relaxed))
    }
}

/// Upper bounds, in seconds, of the buckets of [`LatencyHistogram`].
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations in fixed buckets ([`LATENCY_BUCKETS`], plus one above the last),
/// recorded with a few atomic additions.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// The counts of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// Count per bucket (not cumulative), one per bound of [`LATENCY_BUCKETS`] and one above.
    pub buckets: Vec<u64>,
    /// Sum of the durations recorded.
    #[serde(serialize_with = "as_secs")]
    pub sum: Duration,
    /// How many were recorded.
    pub count: u64,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_that_holds_it() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[3], 1, "3 ms is under 5 ms, above 2.5 ms");
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], 1, "above every bound");
        assert_eq!(s.sum, Duration::from_micros(60_003_100));
    }

    #[test]
    fn a_revised_candle_replaces_its_first_version_and_the_chart_keeps_the_newest() {
        let s = StreamStats::default();
        let candle = |open: i64, trades: u64| Candle {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            interval: "1m".parse().unwrap(),
            open_time: Timestamp::from_unix_secs(open * 60),
            close_time: Timestamp::from_unix_secs(open * 60 + 60),
            open: 1.into(),
            high: 1.into(),
            low: 1.into(),
            close: 1.into(),
            volume: 1.into(),
            trades,
            revision: 0,
            complete: true,
        };
        for i in 0..(RECENT_CANDLES as i64 + 5) {
            s.push_candle(&candle(i, 1));
        }
        s.push_candle(&candle(RECENT_CANDLES as i64 + 4, 7));
        let kept = s.candles();
        assert_eq!(kept.len(), RECENT_CANDLES);
        assert_eq!(kept[0].open_time, Timestamp::from_unix_secs(5 * 60));
        assert_eq!(kept.last().unwrap().trades, 7);
    }
}
