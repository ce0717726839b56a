//! The pipeline task: valve, aggregator and fan-out to the writers' queues.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::budget::{batch_bytes, ByteBudget};
use crate::config::PipelineConfig;
use crate::exchange::{Completeness, Cursor, Input};
use crate::model::{Candle, Event, Gap, Interval, Symbol, Timestamp, Trade};
use crate::observe::StreamStats;
use crate::pipeline::{Aggregator, Valve, ValveCounts};
use crate::writer::WriterHandle;

/// Valve and aggregator over one batch at a time.
pub(crate) struct Stages {
    valve: Option<Valve>,
    aggregator: Option<Aggregator>,
    candles: Vec<Candle>,
    /// The settings, to start again on a [`Resync`](crate::exchange::Resync).
    cfg: PipelineConfig,
}

/// What the pipeline task counted, for the summary.
#[derive(Debug, Default, Clone)]
pub(crate) struct StageTotals {
    pub valve: Vec<(Arc<str>, ValveCounts)>,
    pub candles: u64,
    pub late_trades: u64,
    pub incomplete_candles: u64,
}

impl Stages {
    /// Stages for `cfg`; the valve starts knowing the trades up to each `seeds` cursor, and
    /// the aggregator knows that each seeded stream resumes after its cursor.
    pub(crate) fn new(cfg: &PipelineConfig, seeds: &[(Arc<str>, Symbol, Cursor)]) -> Self {
        let valve = cfg.dedup.then(|| {
            let mut v = Valve::new(cfg.dedup_window);
            for (ex, sym, c) in seeds {
                v.seed_id(ex, sym, &c.trade_id);
            }
            v
        });
        let aggregator = (!cfg.candles.is_empty()).then(|| {
            let mut a = Aggregator::new(&cfg.candles, cfg.candle_grace, cfg.late_trades);
            for (ex, sym, c) in seeds {
                a.resume(ex, sym, c.timestamp);
            }
            a
        });
        Self {
            valve,
            aggregator,
            candles: Vec::new(),
            cfg: cfg.clone(),
        }
    }

    /// Starts again, as [`new`](Self::new) with the same settings and these `seeds`: every
    /// stream's valve and candle state is dropped (open candles unsent).
    pub(crate) fn restart(&mut self, seeds: &[(Arc<str>, Symbol, Cursor)]) {
        *self = Self::new(&self.cfg.clone(), seeds);
    }

    /// The candles closed outside of [`process`](Self::process) (by a rebuild), to fan out.
    pub(crate) fn take_candles(&mut self, totals: &mut StageTotals) -> Vec<Event> {
        totals.candles += self.candles.len() as u64;
        self.candles.drain(..).map(Event::Candle).collect()
    }

    /// Where a rebuild of the candles of a stream resumed after a trade at `after` starts;
    /// `None` when no candles are built.
    pub(crate) fn rebuild_from(&self, after: Timestamp) -> Option<Timestamp> {
        self.aggregator.as_ref().map(|a| a.rebuild_from(after))
    }

    /// An event a store read back for the rebuild of (`exchange`, `symbol`): trades go into
    /// their candles, gaps mark them, stored candles are not sent again; nothing is sent on.
    /// Returns whether it was a trade.
    pub(crate) fn rebuild(&mut self, exchange: &str, symbol: &Symbol, event: &Event) -> bool {
        let Some(a) = &mut self.aggregator else {
            return false;
        };
        match event {
            Event::Trade(t) if &*t.exchange == exchange && t.symbol == *symbol => {
                a.rebuild_trade(t);
                true
            }
            Event::Gap(g) if &*g.exchange == exchange && g.symbol == *symbol => {
                a.rebuild_gap(g);
                false
            }
            Event::Candle(c) if &*c.exchange == exchange && c.symbol == *symbol => {
                a.rebuild_candle(c);
                false
            }
            _ => false,
        }
    }

    /// The rebuild of (`exchange`, `symbol`) from `from` to its trade at `after` is whole
    /// (`ok`), or it failed part way and is dropped.
    pub(crate) fn rebuilt(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        from: Timestamp,
        after: Timestamp,
        ok: bool,
    ) {
        if let Some(a) = &mut self.aggregator {
            if ok {
                a.rebuilt(exchange, symbol, from, after, &mut self.candles);
            } else {
                a.abandon_rebuild(exchange, symbol, after);
            }
        }
    }

    /// Dedups `trades`, taken in at wall time `now`, feeds the aggregator, and returns the
    /// events to fan out (trades, then any candles they closed).
    pub(crate) fn process(
        &mut self,
        mut trades: Vec<Trade>,
        now: Timestamp,
        totals: &mut StageTotals,
    ) -> Vec<Event> {
        if let Some(v) = &mut self.valve {
            v.filter(&mut trades);
        }
        if let Some(a) = &mut self.aggregator {
            for t in &trades {
                a.on_trade(t, now, &mut self.candles);
            }
        }
        let mut events = Vec::with_capacity(trades.len() + self.candles.len());
        events.extend(trades.into_iter().map(Event::Trade));
        totals.candles += self.candles.len() as u64;
        events.extend(self.candles.drain(..).map(Event::Candle));
        events
    }

    /// A stream's completeness changed; returns the candles that closed because of it.
    pub(crate) fn progress(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        completeness: Completeness,
        now: Timestamp,
        totals: &mut StageTotals,
    ) -> Vec<Event> {
        if let Some(a) = &mut self.aggregator {
            a.on_progress(exchange, symbol, completeness, now, &mut self.candles);
        }
        totals.candles += self.candles.len() as u64;
        self.candles.drain(..).map(Event::Candle).collect()
    }

    /// A hole on record: the candles it overlaps are emitted incomplete. Returns the gap
    /// event to fan out.
    pub(crate) fn gap(&mut self, gap: Gap) -> Vec<Event> {
        if let Some(a) = &mut self.aggregator {
            a.on_gap(&gap);
        }
        vec![Event::Gap(gap)]
    }

    /// Candles closed by the clock: live streams' watermarks run on with it.
    pub(crate) fn tick(&mut self, now: Timestamp, totals: &mut StageTotals) -> Vec<Event> {
        if let Some(a) = &mut self.aggregator {
            a.on_tick(now, &mut self.candles);
        }
        totals.candles += self.candles.len() as u64;
        self.candles.drain(..).map(Event::Candle).collect()
    }

    /// The wall time at which a live stream's watermark closes the next candle.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.aggregator.as_ref().and_then(Aggregator::next_deadline)
    }

    /// Publishes what only the pipeline knows of each watched stream: its duplicates and its
    /// completeness watermark.
    pub(crate) fn publish(&self, watch: &Watch, now: Timestamp) {
        let dups = self.valve.as_ref().map(Valve::duplicates_by_stream);
        for (ex, sym, stats) in &watch.streams {
            if let Some(d) = dups
                .as_ref()
                .and_then(|d| d.get(&(ex.clone(), sym.clone())))
            {
                stats
                    .duplicates
                    .store(*d, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(a) = &self.aggregator {
                stats.set_watermark(a.watermark(ex, sym, now));
            }
        }
    }

    pub(crate) fn finish(&self, totals: &mut StageTotals) {
        if let Some(v) = &self.valve {
            totals.valve = v.counts();
        }
        if let Some(a) = &self.aggregator {
            totals.late_trades = a.late_trades();
            totals.incomplete_candles = a.incomplete_candles();
        }
    }
}

/// A wall clock that follows tokio's clock, so that paused-time tests move it too.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    wall: Timestamp,
    at: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self {
            wall: Timestamp::now(),
            at: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.wall.saturating_add(self.at.elapsed())
    }

    /// The tokio instant at which the wall clock reads `ts`.
    pub(crate) fn instant_of(&self, ts: Timestamp) -> Instant {
        let ahead = ts
            .unix_nanos()
            .saturating_sub(self.now().unix_nanos())
            .max(0);
        Instant::now() + std::time::Duration::from_nanos(ahead as u64)
    }
}

/// How often the pipeline publishes the duplicates and watermarks of the watched streams.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The counters of the streams the pipeline passes trades of, found once per run of one
/// stream's trades in a batch.
pub(crate) struct Watch {
    streams: Vec<(Arc<str>, Symbol, Arc<StreamStats>)>,
    /// The interval whose candles the status page draws: the smallest built.
    chart: Option<Interval>,
}

impl Watch {
    pub(crate) fn new(
        streams: impl IntoIterator<Item = (Arc<str>, Symbol, Arc<StreamStats>)>,
        chart: Option<Interval>,
    ) -> Self {
        Self {
            streams: streams.into_iter().collect(),
            chart,
        }
    }

    fn find(&self, exchange: &str, symbol: &Symbol) -> Option<&StreamStats> {
        self.streams
            .iter()
            .find(|(e, s, _)| **e == *exchange && s == symbol)
            .map(|(_, _, st)| &**st)
    }

    /// Counts the trades of `events` per stream and keeps their candles for the chart.
    fn note(&self, events: &[Event]) {
        // The current run of one stream's trades: its first trade, its length, its newest time.
        let mut run: Option<(&Trade, u64, Timestamp)> = None;
        let flush = |run: Option<(&Trade, u64, Timestamp)>| {
            if let Some((first, n, newest)) = run {
                if let Some(st) = self.find(&first.exchange, &first.symbol) {
                    st.passed(n, newest);
                }
            }
        };
        for e in events {
            match e {
                Event::Trade(t) => match &mut run {
                    Some((first, n, newest))
                        if Arc::ptr_eq(&first.exchange, &t.exchange)
                            && first.symbol == t.symbol =>
                    {
                        *n += 1;
                        *newest = (*newest).max(t.timestamp);
                    }
                    _ => {
                        flush(run.take());
                        run = Some((t, 1, t.timestamp));
                    }
                },
                Event::Candle(c) if Some(c.interval) == self.chart => {
                    if let Some(st) = self.find(&c.exchange, &c.symbol) {
                        st.push_candle(c);
                    }
                }
                _ => {}
            }
        }
        flush(run);
    }
}

/// Runs until every exchange sender is gone, then drops the writer handles so the writers
/// drain and close. Each batch of trades received gives its bytes back to `budget`, the
/// bound of the channel in bytes its senders take from.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<Input>,
    budget: ByteBudget,
    mut stages: Stages,
    writers: Vec<WriterHandle>,
    clock: Clock,
    watch: Watch,
) -> StageTotals {
    let mut totals = StageTotals::default();
    // Checked on every pass rather than only raced in the select: under a steady flow the
    // biased select would always find a batch first.
    let mut publish_at = Instant::now();
    loop {
        if Instant::now() >= publish_at {
            stages.publish(&watch, clock.now());
            publish_at = Instant::now() + PUBLISH_EVERY;
        }
        let wake = stages.next_deadline().map(|d| clock.instant_of(d));
        let events = tokio::select! {
            biased;
            batch = rx.recv() => match batch {
                Some(Input::Trades(trades)) => {
                    budget.release(batch_bytes(trades.len()));
                    stages.process(trades, clock.now(), &mut totals)
                }
                Some(Input::Gap(gap)) => stages.gap(gap),
                Some(Input::Progress { exchange, symbol, completeness }) => {
                    stages.progress(&exchange, &symbol, completeness, clock.now(), &mut totals)
                }
                Some(Input::Checkpoint(cp)) => {
                    // Everything before it is in the writers' queues already.
                    for w in &writers {
                        w.checkpoint(cp.clone()).await;
                    }
                    cp.confirm();
                    continue;
                }
                Some(Input::Resync(resync)) => {
                    super::resync::resync(&mut stages, &writers, resync, &mut totals).await
                }
                None => break,
            },
            () = sleep_until(wake), if wake.is_some() => stages.tick(clock.now(), &mut totals),
            () = tokio::time::sleep_until(publish_at) => continue,
        };
        watch.note(&events);
        fan_out(&writers, events).await;
    }
    stages.publish(&watch, clock.now());
    stages.finish(&mut totals);
    totals
}

async fn fan_out(writers: &[WriterHandle], events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let batch = Arc::new(events);
    if let Some((last, rest)) = writers.split_last() {
        for w in rest {
            w.send(batch.clone()).await;
        }
        // The last writer gets the only reference it can, so a lone writer takes the events
        // without copying them.
        last.send(batch).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_decimal, Side, TradeId};
    use std::sync::atomic::Ordering;

    fn trade(ex: &Arc<str>, sym: &str, id: u64) -> Event {
        Event::Trade(Trade {
            exchange: ex.clone(),
            symbol: Symbol::parse(sym).unwrap(),
            trade_id: TradeId::from_u64(id),
            price: parse_decimal("1").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_secs(id as i64),
            received_at: Timestamp::from_unix_secs(id as i64),
        })
    }

    #[test]
    fn trades_are_counted_per_stream_across_interleaved_runs() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let stats: Vec<Arc<StreamStats>> = (0..3).map(|_| Arc::default()).collect();
        let watch = Watch::new(
            [
                (
                    a.clone(),
                    Symbol::parse("BTC-USD").unwrap(),
                    stats[0].clone(),
                ),
                (
                    a.clone(),
                    Symbol::parse("ETH-USD").unwrap(),
                    stats[1].clone(),
                ),
                (
                    b.clone(),
                    Symbol::parse("BTC-USD").unwrap(),
                    stats[2].clone(),
                ),
            ],
            None,
        );
        // A stream not watched (not configured) is passed over.
        let other: Arc<str> = Arc::from("c");
        watch.note(&[
            trade(&a, "BTC-USD", 1),
            trade(&a, "BTC-USD", 3),
            trade(&a, "ETH-USD", 2),
            trade(&b, "BTC-USD", 9),
            trade(&other, "BTC-USD", 4),
            trade(&a, "BTC-USD", 2),
        ]);
        let n = |i: usize| stats[i].trades.load(Ordering::Relaxed);
        assert_eq!((n(0), n(1), n(2)), (3, 1, 1));
        assert_eq!(stats[0].last_trade(), Some(Timestamp::from_unix_secs(3)));
        assert_eq!(stats[2].last_trade(), Some(Timestamp::from_unix_secs(9)));
    }
}
