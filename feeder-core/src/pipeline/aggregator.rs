//! The candle aggregator.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::config::LateTradePolicy;
use crate::exchange::Completeness;
use crate::model::{Candle, Gap, Interval, Symbol, Timestamp, Trade};

use super::watermark::Watermark;
use super::Streams;

/// Holes kept per stream at most. Holes no candle can overlap any more are dropped anyway;
/// past this many, the oldest goes too (it could then only fail to mark a candle that a very
/// late trade opens for an interval long past).
const MAX_HOLES: usize = 256;

/// Builds OHLCV candles from unique trades and emits each one once its stream is known
/// complete past its interval.
///
/// Candles are kept per stream (exchange, symbol) and per interval; each interval is handled
/// independently of the others. Time is only ever passed in (trade timestamps, and the wall
/// clock `now` of each call); the aggregator reads no clock.
///
/// # What a candle holds
/// - A trade goes into the candle of its own timestamp, aligned to UTC boundaries:
///   `open_time = floor(ts / interval) * interval`, `close_time = open_time + interval`, both
///   written with no fractional digits.
/// - `open` and `close` are the prices of the earliest and the latest trade, ordered by
///   timestamp and, for equal timestamps, by arrival order (the first to arrive opens, the last
///   to arrive closes). `high` and `low` are the extreme prices, `volume` the exact sum of the
///   amounts (decimal scale kept: 0.1 + 0.2 is 0.3), `trades` the count, `revision` 0.
///
/// # When a candle is emitted
/// When its stream's completeness watermark reaches `close_time + grace`. The watermark says
/// how far the stream is known complete, from its trades and from what its exchange says
/// about it ([`on_progress`](Aggregator::on_progress), see
/// [`Completeness`]):
/// - a trade takes it to at least the trade's time (each stream's trades arrive in order);
/// - while the stream is live, it also runs on at the wall clock's pace from the newest trade
///   taken in while live (that trade's time plus the wall time elapsed since). A quiet live
///   market still gets its candles on time ([`on_tick`](Aggregator::on_tick), when
///   [`next_deadline`](Aggregator::next_deadline) says), and a replay of old trades at full
///   speed closes its candles by its own times, not by today's date;
/// - while the stream is behind (a hole is open: connection lost, backfill running or given
///   up) only its trades move it: the wall clock never closes a candle of a stream that is
///   behind;
/// - `UpTo(t)` takes it to at least `t`, and otherwise counts as behind.
///
/// A stream that has said nothing is live. A stream that turns live again runs on only from
/// its next trade: a reconnect without backfill reports its hole with that trade, and the
/// candles in the hole must still be open to be marked. The watermark never goes back.
///
/// The grace also lets a trade that arrives out of order, but within the grace period, land
/// in its own candle. An interval with no trades emits nothing. Nothing flushes open candles
/// at shutdown: they are incomplete, and emitting them as closed would be wrong; the caller
/// just drops the aggregator.
///
/// # Complete or not
/// Each emission says whether the candle can be exact. It is `complete: false` when, at that
/// emission:
/// - a gap recorded for its stream ([`on_gap`](Aggregator::on_gap)) overlaps its interval. The
///   hole spans `from` to `to`, both included; a gap whose `to` is not known is open up to the
///   stream's next trade;
/// - or the stream resumed in this run after a trade an earlier run took in
///   ([`resume`](Aggregator::resume)) and the interval starts at or before that trade: the
///   earlier part of the interval went into the earlier run's candle, which was never emitted.
///
/// A gap recorded after a candle was emitted leaves that emission as it was (the watermark
/// had declared it complete), but a later revision of the candle is judged again. A stream's
/// first candle in a run that did not resume holds the trades since the run began, which are
/// also all its store holds: it is complete.
///
/// # Late trades
/// A trade whose candle was already emitted is late: it is counted in
/// [`late_trades`](Aggregator::late_trades), and
/// - under [`LateTradePolicy::Drop`] the candle is left as emitted;
/// - under [`LateTradePolicy::Revise`] the candle is emitted again including the trade, with
///   `revision` one more than the previous emission.
///
/// Only the last emitted candle of each stream and interval is kept (so memory stays bounded).
/// A trade for any older interval, whether or not that interval had a candle, is counted late
/// and dropped under either policy. A trade for an interval with no candle whose deadline has
/// already passed by the watermark (and that is newer than the last emitted candle) opens a
/// candle that is emitted at once, with revision 0: it was never emitted before.
///
/// # Cost
/// A trade is a map lookup (cached for runs of one stream) and, per interval, a search among
/// the few open candles of its stream; it allocates nothing once its candles are open. A tick
/// and [`next_deadline`](Aggregator::next_deadline) look at each stream once.
#[derive(Debug)]
pub struct Aggregator {
    /// Sorted, without repeats; `StreamCandles::series` follows the same order.
    intervals: Vec<Interval>,
    grace: i64,
    late: LateTradePolicy,
    streams: Streams<StreamCandles>,
    late_trades: u64,
    incomplete_candles: u64,
    open_candles: usize,
    /// What a rebuild in progress read back, until [`rebuilt`](Aggregator::rebuilt).
    rebuilding: Rebuilding,
}

/// What the store read back for the stream being rebuilt.
#[derive(Debug, Default)]
struct Rebuilding {
    /// Its trades' times, to end the gaps read back without an end.
    times: Vec<i64>,
    gaps: Vec<Gap>,
    /// The candles the earlier run emitted: interval, open time, revision.
    candles: Vec<(Interval, i64, u32)>,
}

/// The candles of one stream.
#[derive(Debug)]
struct StreamCandles {
    /// How far the stream is known complete.
    watermark: Watermark,
    /// Deadline (close time + grace) of the stream's earliest open candle, `None` when none
    /// is open; brought up to date after every change to `series`.
    next_close: Option<i64>,
    /// One per interval of the aggregator, in the same order.
    series: Vec<Series>,
    marks: Marks,
}

/// What makes a stream's candles incomplete.
#[derive(Debug, Default)]
struct Marks {
    /// Holes recorded by gaps, in arrival order; dropped once no emission can overlap them.
    holes: Vec<Hole>,
    /// True while a hole of unknown end waits for the stream's next trade to end it.
    open_ended: bool,
    /// Time of the trade the stream resumed after, when this run resumed it from a store.
    resumed_after: Option<i64>,
}

/// A span of a stream where trades may be missing, in nanoseconds, both ends included.
#[derive(Clone, Copy, Debug)]
struct Hole {
    from: i64,
    /// `None` until the stream's next trade.
    to: Option<i64>,
}

/// The candles of one stream and interval.
#[derive(Debug)]
struct Series {
    interval: Interval,
    /// Candles not yet emitted, by open time. All are newer than `emitted`, and they are
    /// emitted from the front (earliest deadline first). Usually one or two long.
    open: VecDeque<Building>,
    /// The last emitted candle, kept to revise it; replaced by each emission.
    emitted: Option<Building>,
}

/// A candle and the timestamps that decide its open and close.
#[derive(Debug)]
struct Building {
    candle: Candle,
    /// Timestamp of the trade that set `open`.
    first_ts: i64,
    /// Timestamp of the trade that set `close`.
    last_ts: i64,
}

impl Building {
    fn new(trade: &Trade, interval: Interval, open_time: i64) -> Self {
        let ts = trade.timestamp.unix_nanos();
        Self {
            candle: Candle {
                exchange: trade.exchange.clone(),
                symbol: trade.symbol.clone(),
                interval,
                open_time: Timestamp::from_unix_nanos(open_time, 0),
                close_time: Timestamp::from_unix_nanos(
                    open_time.saturating_add(interval.nanos()),
                    0,
                ),
                open: trade.price,
                high: trade.price,
                low: trade.price,
                close: trade.price,
                volume: trade.amount,
                trades: 1,
                revision: 0,
                complete: true,
            },
            first_ts: ts,
            last_ts: ts,
        }
    }

    fn add(&mut self, trade: &Trade) {
        let ts = trade.timestamp.unix_nanos();
        let c = &mut self.candle;
        if ts < self.first_ts {
            self.first_ts = ts;
            c.open = trade.price;
        }
        if ts >= self.last_ts {
            self.last_ts = ts;
            c.close = trade.price;
        }
        if trade.price > c.high {
            c.high = trade.price;
        }
        if trade.price < c.low {
            c.low = trade.price;
        }
        c.volume = match c.volume.checked_add(trade.amount) {
            Some(v) => v,
            None => {
                // Beyond 7.9e28: no real market gets here; saturate rather than panic.
                tracing::warn!(
                    exchange = %c.exchange,
                    symbol = %c.symbol,
                    "candle volume overflows a decimal; saturated"
                );
                Decimal::MAX
            }
        };
        c.trades = c.trades.saturating_add(1);
    }

    fn open_time(&self) -> i64 {
        self.candle.open_time.unix_nanos()
    }

    fn deadline(&self, grace: i64) -> i64 {
        self.candle.close_time.unix_nanos().saturating_add(grace)
    }

    /// Appends the candle to `out`, judged complete or not by `marks` as of now. Returns true
    /// when it is incomplete.
    fn emit(&mut self, marks: &Marks, out: &mut Vec<Candle>) -> bool {
        let c = &mut self.candle;
        c.complete = marks.complete(c.open_time.unix_nanos(), c.close_time.unix_nanos());
        out.push(c.clone());
        !c.complete
    }
}

impl Marks {
    /// Whether a candle from `open` (included) to `close` (excluded) can be exact.
    fn complete(&self, open: i64, close: i64) -> bool {
        if self.resumed_after.is_some_and(|r| open <= r) {
            return false;
        }
        !self
            .holes
            .iter()
            .any(|h| h.from < close && h.to.is_none_or(|to| to >= open))
    }

    /// A trade at `ts` ends the holes that waited for the stream's next trade.
    fn end_open_holes(&mut self, ts: i64) {
        if !self.open_ended {
            return;
        }
        for h in &mut self.holes {
            if h.to.is_none() {
                h.to = Some(ts.max(h.from));
            }
        }
        self.open_ended = false;
    }

    fn add_hole(&mut self, hole: Hole, series: &[Series]) {
        self.open_ended |= hole.to.is_none();
        self.holes.push(hole);
        // Whatever is emitted from now on is a candle newer than each series' last emitted
        // one, or a revision of it: a hole that ended before all of them can no longer
        // overlap anything.
        let settled = series
            .iter()
            .map(|s| s.emitted.as_ref().map(Building::open_time))
            .min()
            .flatten();
        if let Some(settled) = settled {
            self.holes.retain(|h| h.to.is_none_or(|to| to >= settled));
        }
        let excess = self.holes.len().saturating_sub(MAX_HOLES);
        if excess > 0 {
            self.holes.drain(..excess);
            self.open_ended = self.holes.iter().any(|h| h.to.is_none());
        }
    }
}

impl Series {
    /// Emits open candles, from the front, while their deadline is at or before `until`.
    /// Returns how many, and how many of them were incomplete.
    fn emit_due(
        &mut self,
        until: i64,
        grace: i64,
        marks: &Marks,
        out: &mut Vec<Candle>,
    ) -> (usize, u64) {
        let (mut emitted, mut incomplete) = (0, 0);
        while let Some(front) = self.open.front() {
            if front.deadline(grace) > until {
                break;
            }
            if let Some(mut b) = self.open.pop_front() {
                incomplete += u64::from(b.emit(marks, out));
                self.emitted = Some(b);
                emitted += 1;
            }
        }
        (emitted, incomplete)
    }
}

impl StreamCandles {
    fn new(intervals: &[Interval]) -> Self {
        Self {
            watermark: Watermark::default(),
            next_close: None,
            series: intervals
                .iter()
                .map(|&interval| Series {
                    interval,
                    open: VecDeque::new(),
                    emitted: None,
                })
                .collect(),
            marks: Marks::default(),
        }
    }

    /// Emits every open candle whose deadline `until` has reached. Returns how many, and how
    /// many of them were incomplete.
    fn close_due(&mut self, until: Option<i64>, grace: i64, out: &mut Vec<Candle>) -> (usize, u64) {
        let mut total = (0, 0);
        if let (Some(until), Some(next)) = (until, self.next_close) {
            if next <= until {
                for series in &mut self.series {
                    let (n, incomplete) = series.emit_due(until, grace, &self.marks, out);
                    total.0 += n;
                    total.1 += incomplete;
                }
            }
        }
        self.next_close = self
            .series
            .iter()
            .filter_map(|s| s.open.front().map(|b| b.deadline(grace)))
            .min();
        total
    }
}

/// What placing a trade in its stream's candles did.
struct Placed {
    /// It fell in an interval whose candle was already emitted.
    late: bool,
    /// Candles it opened.
    opened: usize,
    /// Incomplete revisions it emitted.
    incomplete: u64,
}

/// Puts `trade` (of `st`'s stream) into the open candle of each interval, opening it if need
/// be; a trade for an emitted interval is late, and under `Revise` revises it into `out`.
fn place(
    st: &mut StreamCandles,
    trade: &Trade,
    grace: i64,
    policy: LateTradePolicy,
    out: &mut Vec<Candle>,
) -> Placed {
    let ts = trade.timestamp.unix_nanos();
    let mut placed = Placed {
        late: false,
        opened: 0,
        incomplete: 0,
    };
    for series in &mut st.series {
        let open_time = align(ts, series.interval);
        if let Some(done) = &mut series.emitted {
            let done_open = done.open_time();
            if open_time <= done_open {
                placed.late = true;
                if open_time == done_open && policy == LateTradePolicy::Revise {
                    done.add(trade);
                    done.candle.revision = done.candle.revision.saturating_add(1);
                    placed.incomplete += u64::from(done.emit(&st.marks, out));
                }
                continue;
            }
        }
        // Open candles are few and sorted: search from the newest, where trades land.
        let mut at = series.open.len();
        let mut found = false;
        for (i, b) in series.open.iter_mut().enumerate().rev() {
            let o = b.open_time();
            if o == open_time {
                b.add(trade);
                found = true;
                break;
            }
            if o < open_time {
                break;
            }
            at = i;
        }
        if !found {
            let b = Building::new(trade, series.interval, open_time);
            let deadline = b.deadline(grace);
            st.next_close = Some(st.next_close.map_or(deadline, |d| d.min(deadline)));
            series.open.insert(at, b);
            placed.opened += 1;
        }
    }
    placed
}

/// Start of the interval that contains `ts`.
fn align(ts: i64, interval: Interval) -> i64 {
    let n = interval.nanos();
    ts.div_euclid(n).saturating_mul(n)
}

/// The stream's candles, made if it is new.
fn stream_of<'a>(
    streams: &'a mut Streams<StreamCandles>,
    intervals: &[Interval],
    exchange: &Arc<str>,
    symbol: &Symbol,
) -> Option<&'a mut StreamCandles> {
    streams
        .get_or_insert_with(exchange, symbol, || StreamCandles::new(intervals))
        .map(|s| &mut s.state)
}

impl Aggregator {
    /// An aggregator for `intervals` (repeats ignored), emitting each candle once its stream
    /// is known complete `grace` past its interval, and treating late trades by `late`.
    pub fn new(intervals: &[Interval], grace: Duration, late: LateTradePolicy) -> Self {
        let mut intervals = intervals.to_vec();
        intervals.sort_unstable();
        intervals.dedup();
        Self {
            intervals,
            grace: i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX),
            late,
            streams: Streams::default(),
            late_trades: 0,
            incomplete_candles: 0,
            open_candles: 0,
            rebuilding: Rebuilding::default(),
        }
    }

    /// Adds a (unique) trade, taken in at wall time `now`; appends to `out` any candles that
    /// close because of it (its stream's watermark passed their deadline), and, under
    /// [`LateTradePolicy::Revise`], the revised candle of a late trade.
    pub fn on_trade(&mut self, trade: &Trade, now: Timestamp, out: &mut Vec<Candle>) {
        if self.intervals.is_empty() {
            return;
        }
        let ts = trade.timestamp.unix_nanos();
        let grace = self.grace;
        let Some(st) = stream_of(
            &mut self.streams,
            &self.intervals,
            &trade.exchange,
            &trade.symbol,
        ) else {
            return;
        };
        st.marks.end_open_holes(ts);
        let placed = place(st, trade, grace, self.late, out);
        self.open_candles += placed.opened;
        self.incomplete_candles += placed.incomplete;
        let late = placed.late;
        if late {
            self.late_trades += 1;
        }
        let now = now.unix_nanos();
        st.watermark.on_trade(ts, now);
        let (n, incomplete) = st.close_due(st.watermark.at(now), grace, out);
        self.open_candles = self.open_candles.saturating_sub(n);
        self.incomplete_candles += incomplete;
    }

    /// The stream says how far it is complete, at wall time `now`; appends to `out` any
    /// candles that close because of it (an `UpTo` past their deadline).
    pub fn on_progress(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        completeness: Completeness,
        now: Timestamp,
        out: &mut Vec<Candle>,
    ) {
        if self.intervals.is_empty() {
            return;
        }
        let grace = self.grace;
        let Some(st) = stream_of(&mut self.streams, &self.intervals, exchange, symbol) else {
            return;
        };
        st.watermark.set(completeness);
        let until = st.watermark.advance(now.unix_nanos());
        let (n, incomplete) = st.close_due(until, grace, out);
        self.open_candles = self.open_candles.saturating_sub(n);
        self.incomplete_candles += incomplete;
    }

    /// Records a hole the stream's exchange could not fill: candles emitted from now on whose
    /// interval it overlaps are incomplete (see the struct's doc).
    pub fn on_gap(&mut self, gap: &Gap) {
        if self.intervals.is_empty() {
            return;
        }
        let Some(st) = stream_of(
            &mut self.streams,
            &self.intervals,
            &gap.exchange,
            &gap.symbol,
        ) else {
            return;
        };
        let hole = Hole {
            from: gap.from.unix_nanos(),
            to: gap.to.map(Timestamp::unix_nanos),
        };
        st.marks.add_hole(hole, &st.series);
    }

    /// Says that this run took the stream up after a trade at `after` that an earlier run
    /// took in (the point a store resumed from): the candles whose interval starts at or
    /// before it are incomplete, since part of their trades went into the earlier run.
    pub fn resume(&mut self, exchange: &Arc<str>, symbol: &Symbol, after: Timestamp) {
        if self.intervals.is_empty() {
            return;
        }
        if let Some(st) = stream_of(&mut self.streams, &self.intervals, exchange, symbol) {
            st.marks.resumed_after = Some(after.unix_nanos());
        }
    }

    /// Where a rebuild of a stream resumed after a trade at `after` starts: the earliest open
    /// time among the candles that `after`'s trade may have left open, that is, for each
    /// interval, the one holding `after - grace`.
    pub fn rebuild_from(&self, after: Timestamp) -> Timestamp {
        let at = after.unix_nanos().saturating_sub(self.grace);
        let from = self
            .intervals
            .iter()
            .map(|&i| align(at, i))
            .min()
            .unwrap_or(at);
        Timestamp::from_unix_nanos(from, 0)
    }

    /// Rebuilding a resumed stream: `trade`, which an earlier run took in and a store holds,
    /// goes into its candles, and nothing closes. One stream is rebuilt at a time; call
    /// [`rebuilt`](Self::rebuilt) after its last trade and gap. Its trades' times are kept
    /// until then (8 bytes each), to end the gaps read back with them.
    pub fn rebuild_trade(&mut self, trade: &Trade) {
        let Some(st) = stream_of(
            &mut self.streams,
            &self.intervals,
            &trade.exchange,
            &trade.symbol,
        ) else {
            return;
        };
        self.rebuilding.times.push(trade.timestamp.unix_nanos());
        let placed = place(
            st,
            trade,
            self.grace,
            LateTradePolicy::Drop,
            &mut Vec::new(),
        );
        self.open_candles += placed.opened;
    }

    /// Rebuilding a resumed stream: a gap a store holds. It marks the candles it overlaps
    /// once the rebuild is [`rebuilt`](Self::rebuilt); a gap whose end was not known then
    /// ends at the first trade read back after it (or, without one, at the stream's next).
    pub fn rebuild_gap(&mut self, gap: &Gap) {
        self.rebuilding.gaps.push(gap.clone());
    }

    /// Rebuilding a resumed stream: a candle a store holds, which the earlier run emitted.
    /// Once [`rebuilt`](Self::rebuilt), it is not sent again: its rebuilt candle is set aside
    /// as emitted, with its revision, and a late trade revises it from there.
    pub fn rebuild_candle(&mut self, candle: &Candle) {
        self.rebuilding.candles.push((
            candle.interval,
            candle.open_time.unix_nanos(),
            candle.revision,
        ));
    }

    /// A rebuild of the stream's candles from a store, from `from` (see
    /// [`rebuild_from`](Self::rebuild_from)) up to its trade at `after`, is complete. The
    /// candles the store held (the earlier run emitted them) are set aside as emitted,
    /// unsent; the others are whole from `from` on and close as usual (one older than a
    /// stored candle is appended to `out` at once), and the stream is known complete up to
    /// `after`. It runs on as the exchange reports its progress. This replaces
    /// [`resume`](Self::resume) for the stream.
    pub fn rebuilt(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        from: Timestamp,
        after: Timestamp,
        out: &mut Vec<Candle>,
    ) {
        let Rebuilding {
            mut times,
            gaps,
            candles,
        } = std::mem::take(&mut self.rebuilding);
        times.sort_unstable();
        for mut gap in gaps {
            if gap.to.is_none() {
                let from = gap.from.unix_nanos();
                let i = times.partition_point(|&t| t <= from);
                gap.to = times.get(i).map(|&t| Timestamp::from_unix_nanos(t, 9));
            }
            self.on_gap(&gap);
        }
        let grace = self.grace;
        let Some(st) = stream_of(&mut self.streams, &self.intervals, exchange, symbol) else {
            return;
        };
        st.marks.resumed_after = Some(from.unix_nanos().saturating_sub(1));
        for series in &mut st.series {
            let interval = series.interval;
            let stored = |b: &Building| {
                candles
                    .iter()
                    .filter(|&&(iv, open, _)| iv == interval && open == b.open_time())
                    .map(|&(_, _, rev)| rev)
                    .max()
            };
            let Some(last) = series.open.iter().rposition(|b| stored(b).is_some()) else {
                continue;
            };
            // Up to the newest candle the store holds, the earlier runs' watermark passed
            // every deadline: a candle among them that the store lacks (a run that could
            // not rebuild it never had its trades) is whole now, and goes out at once.
            for mut b in series.open.drain(..=last) {
                match stored(&b) {
                    Some(revision) => b.candle.revision = revision,
                    None => self.incomplete_candles += u64::from(b.emit(&st.marks, out)),
                }
                series.emitted = Some(b);
            }
            self.open_candles = self.open_candles.saturating_sub(last + 1);
        }
        st.watermark.raise(after.unix_nanos());
        st.close_due(None, grace, &mut Vec::new());
    }

    /// Drops what a rebuild of the stream took in (the store failed part way), and marks the
    /// stream resumed after `after` as [`resume`](Self::resume) does.
    pub fn abandon_rebuild(&mut self, exchange: &Arc<str>, symbol: &Symbol, after: Timestamp) {
        self.rebuilding = Rebuilding::default();
        let intervals = &self.intervals;
        if let Some(st) = stream_of(&mut self.streams, intervals, exchange, symbol) {
            let open: usize = st.series.iter().map(|s| s.open.len()).sum();
            self.open_candles = self.open_candles.saturating_sub(open);
            *st = StreamCandles::new(intervals);
            st.marks.resumed_after = Some(after.unix_nanos());
        }
    }

    /// Wall-clock tick: the watermarks of live streams run on to `now`; appends to `out` the
    /// candles they close.
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Candle>) {
        let now = now.unix_nanos();
        let grace = self.grace;
        for stream in self.streams.iter_mut() {
            let st = &mut stream.state;
            let until = st.watermark.advance(now);
            if st.next_close.is_some_and(|d| until.is_some_and(|u| d <= u)) {
                let (n, incomplete) = st.close_due(until, grace, out);
                self.open_candles = self.open_candles.saturating_sub(n);
                self.incomplete_candles += incomplete;
            }
        }
    }

    /// The wall time at which the next candle closes unless a trade or progress comes first:
    /// when the watermark of a live stream reaches the deadline of its earliest open candle.
    /// `None` when no live stream has an open candle (those of streams that are behind wait
    /// for their trades). Tick at (or after) that time.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.streams
            .iter()
            .filter_map(|s| {
                let st = &s.state;
                st.next_close.and_then(|d| st.watermark.reaches(d))
            })
            .min()
            .map(|d| {
                let digits = if d % 1_000_000_000 == 0 { 0 } else { 9 };
                Timestamp::from_unix_nanos(d, digits)
            })
    }

    /// How far the stream is known complete at wall time `now`, if anything is known of it.
    pub fn watermark(&self, exchange: &str, symbol: &Symbol, now: Timestamp) -> Option<Timestamp> {
        let st = &self.streams.get(exchange, symbol)?.state;
        st.watermark
            .at(now.unix_nanos())
            .map(|w| Timestamp::from_unix_nanos(w, 9))
    }

    /// Trades that arrived after their candle was emitted (see the struct's doc); a trade late
    /// for several intervals counts once.
    pub fn late_trades(&self) -> u64 {
        self.late_trades
    }

    /// Emissions with `complete: false` (revisions included, like every emission).
    pub fn incomplete_candles(&self) -> u64 {
        self.incomplete_candles
    }

    /// Candles currently open (not yet emitted).
    pub fn open_candles(&self) -> usize {
        self.open_candles
    }

    /// The intervals, sorted and without repeats.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{parse_decimal, Side, TradeId};

    /// 2024-01-02T10:00:00Z.
    const T10: i64 = 1_704_189_600;
    const GRACE: Duration = Duration::from_secs(5);

    fn at(secs_after_10: i64) -> Timestamp {
        Timestamp::from_unix_secs(T10 + secs_after_10)
    }

    fn trade(id: u64, ts: Timestamp, price: &str, amount: &str) -> Trade {
        Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(id),
            price: parse_decimal(price).unwrap(),
            amount: parse_decimal(amount).unwrap(),
            side: Side::Sell,
            timestamp: ts,
            received_at: ts,
        }
    }

    fn agg(intervals: &[Interval], late: LateTradePolicy) -> Aggregator {
        Aggregator::new(intervals, GRACE, late)
    }

    fn feed(a: &mut Aggregator, trades: &[Trade]) -> Vec<Candle> {
        let mut out = Vec::new();
        for t in trades {
            a.on_trade(t, t.timestamp, &mut out);
        }
        out
    }

    #[test]
    fn quiet_market_emits_on_tick_exactly_at_close_plus_grace() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        assert_eq!(a.next_deadline(), None);
        let out = feed(
            &mut a,
            &[
                trade(1, at(1), "100", "1"),
                trade(2, at(600), "105", "2"),
                trade(3, at(1_200), "95", "3"),
                trade(4, at(1_799), "101", "4"),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(a.open_candles(), 1);
        assert_eq!(a.next_deadline(), Some(at(1_805)));

        let mut out = Vec::new();
        a.on_tick(
            Timestamp::from_unix_nanos(at(1_805).unix_nanos() - 1, 9),
            &mut out,
        );
        assert!(out.is_empty(), "not before close + grace");
        a.on_tick(at(1_805), &mut out);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!((c.open_time, c.close_time), (at(0), at(1_800)));
        assert_eq!((c.open_time.digits(), c.close_time.digits()), (0, 0));
        assert_eq!(c.interval, Interval::M30);
        assert_eq!(c.open.to_string(), "100");
        assert_eq!(c.high.to_string(), "105");
        assert_eq!(c.low.to_string(), "95");
        assert_eq!(c.close.to_string(), "101");
        assert_eq!(c.volume.to_string(), "10");
        assert_eq!((c.trades, c.revision), (4, 0));
        assert_eq!(a.open_candles(), 0);
        assert_eq!(a.next_deadline(), None);

        // A second tick emits nothing more.
        a.on_tick(at(100_000), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn next_deadline_is_the_earliest_open_candle_across_streams() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let mut other = trade(1, at(1_900), "1", "1");
        other.exchange = Arc::from("y");
        feed(&mut a, &[other, trade(2, at(10), "1", "1")]);
        assert_eq!(a.open_candles(), 2);
        assert_eq!(a.next_deadline(), Some(at(1_805)));
        let mut out = Vec::new();
        a.on_tick(at(1_805), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].exchange, "x");
        assert_eq!(a.next_deadline(), Some(at(3_605)));
    }

    #[test]
    fn a_later_trade_closes_the_candle_once_past_the_grace_period() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let out = feed(
            &mut a,
            &[
                trade(1, at(100), "100", "1"),
                trade(2, at(1_802), "200", "1"),
                // Out of order, inside the grace period: still in the first candle.
                trade(3, at(1_799), "300", "1"),
                trade(4, at(1_804), "200", "1"),
            ],
        );
        assert!(out.is_empty());
        let out = feed(&mut a, &[trade(5, at(1_805), "200", "1")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].open_time, at(0));
        assert_eq!(out[0].close.to_string(), "300");
        assert_eq!(out[0].high.to_string(), "300");
        assert_eq!(out[0].trades, 2);
        assert_eq!(a.late_trades(), 0);
        assert_eq!(a.open_candles(), 1);
        assert_eq!(a.next_deadline(), Some(at(3_605)));
    }

    #[test]
    fn equal_timestamps_open_with_the_first_arrival_and_close_with_the_last() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        feed(
            &mut a,
            &[
                trade(1, at(50), "2", "1"),
                trade(2, at(50), "3", "1"),
                trade(3, at(10), "5", "1"),
                trade(4, at(10), "6", "1"),
                trade(5, at(50), "4", "1"),
            ],
        );
        let mut out = Vec::new();
        a.on_tick(at(10_000), &mut out);
        assert_eq!(out[0].open.to_string(), "5");
        assert_eq!(out[0].close.to_string(), "4");
    }

    #[test]
    fn late_trade_under_drop_is_counted_and_leaves_the_candle() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let out = feed(
            &mut a,
            &[
                trade(1, at(10), "100", "1"),
                trade(2, at(1_810), "100", "1"),
            ],
        );
        assert_eq!(out.len(), 1);
        let out = feed(&mut a, &[trade(3, at(20), "1", "1")]);
        assert!(out.is_empty());
        assert_eq!(a.late_trades(), 1);
        assert_eq!(a.open_candles(), 1);
    }

    #[test]
    fn late_trade_under_revise_emits_the_candle_again_with_the_next_revision() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Revise);
        let mut out = feed(&mut a, &[trade(1, at(10), "100", "1")]);
        a.on_tick(at(1_805), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].revision, 0);

        let out = feed(&mut a, &[trade(2, at(5), "90", "0.5")]);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!(c.revision, 1);
        assert_eq!(c.trades, 2);
        assert_eq!(c.open.to_string(), "90", "the late trade is the earliest");
        assert_eq!(c.close.to_string(), "100");
        assert_eq!(c.low.to_string(), "90");
        assert_eq!(c.volume.to_string(), "1.5");

        let out = feed(&mut a, &[trade(3, at(1_799), "120", "1")]);
        assert_eq!(out[0].revision, 2);
        assert_eq!(out[0].close.to_string(), "120");
        assert_eq!(out[0].trades, 3);
        assert_eq!(a.late_trades(), 2);

        // Once a newer candle is emitted, the older one can no longer be revised.
        let mut out = feed(&mut a, &[trade(4, at(1_900), "1", "1")]);
        a.on_tick(at(3_605), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].open_time, at(1_800));
        let out = feed(&mut a, &[trade(5, at(100), "1", "1")]);
        assert!(out.is_empty());
        assert_eq!(a.late_trades(), 3);
    }

    #[test]
    fn thirty_minutes_and_one_hour_are_independent() {
        let mut a = agg(
            &[Interval::H1, Interval::M30, Interval::H1],
            LateTradePolicy::Drop,
        );
        assert_eq!(a.intervals(), &[Interval::M30, Interval::H1]);
        let mut out = feed(
            &mut a,
            &[
                trade(1, at(100), "10", "1"),
                trade(2, at(1_900), "20", "2"),
                // Closes the 10:00 half hour (deadline 10:30:05), not the hour.
                trade(3, at(1_805), "30", "3"),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].interval, Interval::M30);
        assert_eq!(out[0].trades, 1);
        assert_eq!(a.open_candles(), 2);
        a.on_tick(at(3_605), &mut out);
        assert_eq!(out.len(), 3);
        let h = out.iter().find(|c| c.interval == Interval::H1).unwrap();
        assert_eq!((h.open_time, h.close_time), (at(0), at(3_600)));
        assert_eq!(
            (h.open.to_string(), h.close.to_string()),
            ("10".into(), "20".into())
        );
        assert_eq!((h.trades, h.volume.to_string()), (3, "6".into()));
        let second_half = &out[1];
        assert_eq!(second_half.interval, Interval::M30);
        assert_eq!(second_half.open_time, at(1_800));
        assert_eq!(second_half.open.to_string(), "30");
        assert_eq!(second_half.trades, 2);

        // Late for the half hour only: counted once; the hour is emitted already too.
        let mut a = agg(&[Interval::M30, Interval::H1], LateTradePolicy::Drop);
        let mut out = feed(&mut a, &[trade(1, at(100), "10", "1")]);
        a.on_tick(at(1_805), &mut out);
        let out2 = feed(&mut a, &[trade(2, at(200), "10", "1")]);
        assert!(out2.is_empty());
        assert_eq!(a.late_trades(), 1);
        a.on_tick(at(3_605), &mut out);
        let h = out.iter().find(|c| c.interval == Interval::H1).unwrap();
        assert_eq!(h.trades, 2, "the hour still took the trade");
    }

    #[test]
    fn decimals_keep_their_exact_value_and_scale() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let mut out = feed(
            &mut a,
            &[
                trade(1, at(1), "43210.120", "0.1"),
                trade(2, at(2), "43210.12", "0.2"),
                trade(3, at(3), "0.00000001", "0.00000000000000000001"),
            ],
        );
        a.on_tick(at(1_805), &mut out);
        let c = &out[0];
        assert_eq!(c.open.to_string(), "43210.120");
        assert_eq!(
            c.high.to_string(),
            "43210.120",
            "the first of equal highs is kept"
        );
        assert_eq!(c.low.to_string(), "0.00000001");
        assert_eq!(c.volume.to_string(), "0.30000000000000000001");

        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let mut out = feed(
            &mut a,
            &[trade(1, at(1), "1", "0.1"), trade(2, at(2), "1", "0.2")],
        );
        a.on_tick(at(1_805), &mut out);
        assert_eq!(out[0].volume.to_string(), "0.3");
        let json = serde_json::to_string(&crate::model::Event::Candle(out[0].clone())).unwrap();
        assert!(
            json.contains(r#""open_time":"2024-01-02T10:00:00Z""#),
            "{json}"
        );
        assert!(json.contains(r#""volume":"0.3""#), "{json}");
    }

    #[test]
    fn intervals_without_trades_emit_nothing() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let mut out = feed(
            &mut a,
            &[
                trade(1, at(10), "1", "1"),
                trade(2, at(3 * 3_600 + 10), "1", "1"),
            ],
        );
        a.on_tick(at(100_000), &mut out);
        let opens: Vec<Timestamp> = out.iter().map(|c| c.open_time).collect();
        assert_eq!(opens, [at(0), at(3 * 3_600)]);
    }

    #[test]
    fn a_trade_for_an_empty_interval_behind_the_watermark_is_emitted_at_once() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        let out = feed(
            &mut a,
            &[trade(1, at(10), "1", "1"), trade(2, at(7_200), "2", "1")],
        );
        assert_eq!(out.len(), 1);
        // 10:30 to 11:00 had no candle and its deadline has passed: emitted now, revision 0.
        let out = feed(&mut a, &[trade(3, at(2_000), "3", "1")]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].open_time, out[0].revision), (at(1_800), 0));
        assert_eq!(a.late_trades(), 0);
        assert_eq!(a.open_candles(), 1);
    }

    // ---- The watermark: when candles close ----------------------------------------------

    /// 2021-03-01T00:00:00Z: trade times of a replay.
    const T2021: i64 = 1_614_556_800;

    fn old(secs: i64) -> Timestamp {
        Timestamp::from_unix_secs(T2021 + secs)
    }

    fn on(a: &mut Aggregator, t: &Trade, now: Timestamp) -> Vec<Candle> {
        let mut out = Vec::new();
        a.on_trade(t, now, &mut out);
        out
    }

    fn progress(a: &mut Aggregator, c: Completeness, now: Timestamp) -> Vec<Candle> {
        let mut out = Vec::new();
        let ex: Arc<str> = Arc::from("x");
        a.on_progress(&ex, &Symbol::parse("BTC-USD").unwrap(), c, now, &mut out);
        out
    }

    fn tick(a: &mut Aggregator, now: Timestamp) -> Vec<Candle> {
        let mut out = Vec::new();
        a.on_tick(now, &mut out);
        out
    }

    fn nanos_before(t: Timestamp, n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(t.unix_nanos() - n, 9)
    }

    #[test]
    fn a_quiet_live_market_closes_on_time_by_the_wall_time_elapsed() {
        // The trade is from 2021, the wall clock says 2024: only the time elapsed counts.
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        assert!(on(&mut a, &trade(1, old(100), "1", "1"), at(0)).is_empty());
        // 10:30:05 in trade time is 1_705 s of wall time after the trade was taken in.
        assert_eq!(a.next_deadline(), Some(at(1_705)));
        assert!(tick(&mut a, nanos_before(at(1_705), 1)).is_empty());
        let out = tick(&mut a, at(1_705));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].open_time, old(0));
        assert!(out[0].complete);
        assert_eq!(a.next_deadline(), None);
        let bt = Symbol::parse("BTC-USD").unwrap();
        assert_eq!(a.watermark("x", &bt, at(1_705)), Some(old(1_805)));
        assert_eq!(a.watermark("y", &bt, at(1_705)), None);
    }

    #[test]
    fn a_replay_of_old_trades_closes_by_its_own_times_not_by_todays_date() {
        // A day of 2021 replayed in a minute of 2024: the wall clock is years ahead, and every
        // tick it gives would close every candle at once if it were read as trade time.
        let mut a = agg(&[Interval::M30, Interval::H1], LateTradePolicy::Drop);
        let mut out = Vec::new();
        let trades: Vec<Trade> = (0..288)
            .map(|i| trade(i, old(i as i64 * 300 + 7), "1", "1"))
            .collect();
        for (i, t) in trades.iter().enumerate() {
            let now = Timestamp::from_unix_nanos(at(0).unix_nanos() + i as i64 * 200_000_000, 9);
            a.on_trade(t, now, &mut out);
            a.on_tick(now, &mut out);
            if let Some(d) = a.next_deadline() {
                assert!(d > now, "a deadline already passed was not ticked");
            }
        }
        assert_eq!(a.late_trades(), 0);
        // Every candle but the last of each interval, each with all its trades.
        assert_eq!(out.len(), 47 + 23);
        for c in &out {
            let per = c.interval.secs() as u64 / 300;
            assert_eq!((c.trades, c.complete), (per, true), "{c:?}");
        }
    }

    #[test]
    fn behind_the_wall_clock_closes_nothing_and_trades_in_order_do() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        assert!(progress(&mut a, Completeness::Behind, at(200)).is_empty());
        assert_eq!(a.next_deadline(), None, "nothing to tick for");
        assert!(tick(&mut a, at(1_000_000)).is_empty());
        assert_eq!(a.open_candles(), 1);
        // Backfilled trades, in order, still close candles.
        assert!(on(&mut a, &trade(2, at(1_700), "2", "1"), at(1_000_001)).is_empty());
        let out = on(&mut a, &trade(3, at(1_805), "3", "1"), at(1_000_002));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].trades, out[0].close.to_string()), (2, "2".into()));
        assert!(tick(&mut a, at(2_000_000)).is_empty(), "still behind");
    }

    #[test]
    fn up_to_closes_what_it_covers_and_nothing_more() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        progress(&mut a, Completeness::Behind, at(0));
        on(&mut a, &trade(1, at(100), "1", "1"), at(0));
        on(&mut a, &trade(2, at(1_700), "1", "1"), at(0));
        assert!(progress(&mut a, Completeness::UpTo(at(1_804)), at(0)).is_empty());
        let out = progress(&mut a, Completeness::UpTo(at(1_805)), at(0));
        assert_eq!((out.len(), out[0].trades), (1, 2));
        assert!(
            tick(&mut a, at(1_000_000)).is_empty(),
            "an UpTo does not run on"
        );
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn after_a_reconnect_the_stream_runs_on_only_from_its_next_live_trade() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        progress(&mut a, Completeness::Behind, at(150));
        progress(&mut a, Completeness::Live, at(5_000));
        assert!(tick(&mut a, at(100_000)).is_empty());
        assert_eq!(a.next_deadline(), None);
        let out = on(&mut a, &trade(2, at(500), "2", "1"), at(100_000));
        assert!(out.is_empty());
        assert_eq!(a.next_deadline(), Some(at(100_000 + 1_305)));
        assert_eq!(tick(&mut a, at(100_000 + 1_305)).len(), 1);
    }

    #[test]
    fn without_progress_a_stream_is_live_as_before() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        assert_eq!(a.next_deadline(), Some(at(1_805)));
        assert_eq!(tick(&mut a, at(1_805)).len(), 1);
    }

    // ---- Complete or not ----------------------------------------------------------------

    fn gap(from: Timestamp, to: Option<Timestamp>) -> Gap {
        Gap {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            after_trade_id: crate::model::TradeId::from_u64(1),
            before_trade_id: to.map(|_| crate::model::TradeId::from_u64(2)),
            from,
            to,
            reason: crate::model::GapReason::NoBackfill,
        }
    }

    fn flags(out: &[Candle]) -> Vec<(i64, bool)> {
        out.iter()
            .map(|c| ((c.open_time.unix_secs() - T10) / 60, c.complete))
            .collect()
    }

    #[test]
    fn a_gap_marks_the_candles_it_overlaps_and_no_other() {
        let mut a = agg(&[Interval::M30, Interval::H1], LateTradePolicy::Drop);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        progress(&mut a, Completeness::Behind, at(200));
        progress(&mut a, Completeness::Live, at(9_000));
        // Trades from 10:01:40 to 11:05 may be missing.
        a.on_gap(&gap(at(100), Some(at(3_900))));
        let mut out = on(&mut a, &trade(2, at(3_900), "1", "1"), at(9_000));
        out.extend(on(&mut a, &trade(3, at(5_500), "1", "1"), at(9_000)));
        out.extend(tick(&mut a, at(100_000)));
        // 10:00 and 11:00 half hours and hours: cut; 11:30: whole.
        assert_eq!(
            flags(&out),
            [(0, false), (0, false), (60, false), (90, true), (60, false)]
        );
        assert_eq!(a.incomplete_candles(), 4);

        // Both ends are included: a hole ending exactly at an interval's start cuts it.
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        a.on_gap(&gap(at(1_700), Some(at(1_800))));
        on(&mut a, &trade(1, at(1_800), "1", "1"), at(0));
        on(&mut a, &trade(2, at(3_600), "1", "1"), at(0));
        let out = tick(&mut a, at(10_000));
        assert_eq!(flags(&out), [(30, false), (60, true)]);
    }

    #[test]
    fn a_gap_without_an_end_is_ended_by_the_next_trade() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Drop);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        progress(&mut a, Completeness::Behind, at(200));
        a.on_gap(&gap(at(100), None));
        progress(&mut a, Completeness::Live, at(300));
        let mut out = on(&mut a, &trade(2, at(2_000), "1", "1"), at(400));
        out.extend(on(&mut a, &trade(3, at(3_700), "1", "1"), at(500)));
        out.extend(tick(&mut a, at(100_000)));
        assert_eq!(flags(&out), [(0, false), (30, false), (60, true)]);
    }

    #[test]
    fn a_gap_recorded_after_an_emission_leaves_it_and_a_revision_is_judged_again() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Revise);
        on(&mut a, &trade(1, at(100), "1", "1"), at(100));
        let out = tick(&mut a, at(1_805));
        assert_eq!(flags(&out), [(0, true)]);
        a.on_gap(&gap(at(1_000), Some(at(1_900))));
        let out = on(&mut a, &trade(2, at(1_500), "2", "1"), at(1_806));
        assert_eq!(flags(&out), [(0, false)]);
        assert_eq!((out[0].revision, out[0].trades), (1, 2));
        assert_eq!((a.late_trades(), a.incomplete_candles()), (1, 1));
    }

    #[test]
    fn a_resumed_stream_marks_the_candles_its_resume_point_falls_in_and_no_later_one() {
        let mut a = agg(&[Interval::M30, Interval::H1], LateTradePolicy::Drop);
        let ex: Arc<str> = Arc::from("x");
        a.resume(&ex, &Symbol::parse("BTC-USD").unwrap(), at(1_800));
        let mut out = on(&mut a, &trade(1, at(1_801), "1", "1"), at(1_801));
        out.extend(on(&mut a, &trade(2, at(3_700), "1", "1"), at(3_700)));
        out.extend(tick(&mut a, at(100_000)));
        // The 10:30 half hour starts at the resume point itself: the trade at 10:30:00 went
        // into the earlier run.
        assert_eq!(
            flags(&out),
            [(30, false), (0, false), (60, true), (60, true)]
        );
        assert_eq!(a.incomplete_candles(), 2);
    }

    #[test]
    fn holes_no_emission_can_reach_are_forgotten() {
        let mut a = agg(&[Interval::M30], LateTradePolicy::Revise);
        for i in 0..(MAX_HOLES as i64 * 3) {
            let t = at(i * 1_800 + 1);
            on(&mut a, &trade(i as u64, t, "1", "1"), t);
            tick(&mut a, at(i * 1_800 + 1_805));
            a.on_gap(&gap(t, Some(t)));
        }
        let holes = a
            .streams
            .iter()
            .map(|s| s.state.marks.holes.len())
            .sum::<usize>();
        assert!(holes <= 2, "{holes} holes kept");
    }

    #[test]
    fn without_intervals_nothing_is_built() {
        let mut a = agg(&[], LateTradePolicy::Revise);
        let mut out = feed(&mut a, &[trade(1, at(10), "1", "1")]);
        a.on_tick(at(100_000), &mut out);
        assert!(out.is_empty());
        assert_eq!((a.open_candles(), a.next_deadline()), (0, None));
    }

    #[test]
    fn timestamps_before_the_epoch_align_downwards() {
        let mut a = agg(&[Interval::H1], LateTradePolicy::Drop);
        let mut out = feed(&mut a, &[trade(1, Timestamp::from_unix_secs(-1), "1", "1")]);
        a.on_tick(Timestamp::from_unix_secs(10), &mut out);
        assert_eq!(out[0].open_time, Timestamp::from_unix_secs(-3_600));
        assert_eq!(out[0].close_time, Timestamp::EPOCH);
    }

    /// Rebuilds from trades `ids` (one a second from 10:00, at a price of 100 + id) up to
    /// `after`, with the candles the store held opening at `stored` (1 m).
    fn rebuild(
        a: &mut Aggregator,
        ids: std::ops::RangeInclusive<i64>,
        after: Timestamp,
        stored: &[i64],
    ) {
        let ex: Arc<str> = Arc::from("x");
        let sym = Symbol::parse("BTC-USD").unwrap();
        let from = a.rebuild_from(after);
        for i in ids {
            let t = trade(i as u64, at(i), &format!("{}", 100 + i), "1");
            if t.timestamp >= from {
                a.rebuild_trade(&t);
            }
        }
        for &open in stored {
            let t = trade(0, at(open), "1", "1");
            let c = Building::new(&t, Interval::parse("1m").unwrap(), at(open).unix_nanos());
            a.rebuild_candle(&c.candle);
        }
        a.rebuilt(&ex, &sym, from, after, &mut Vec::new());
    }

    #[test]
    fn a_rebuild_starts_at_the_oldest_candle_the_grace_may_have_left_open() {
        let a = agg(
            &[
                Interval::parse("30m").unwrap(),
                Interval::parse("1h").unwrap(),
            ],
            LateTradePolicy::Drop,
        );
        // 10:40 is in the 10:30 half hour and the 10:00 hour.
        assert_eq!(a.rebuild_from(at(40 * 60)), at(0));
        let a = agg(&[Interval::parse("1m").unwrap()], LateTradePolicy::Drop);
        assert_eq!(
            a.rebuild_from(at(62)),
            at(0),
            "10:01:02 less 5 s grace is in 10:00"
        );
        assert_eq!(a.rebuild_from(at(66)), at(60));
    }

    #[test]
    fn a_rebuilt_candle_holds_the_earlier_runs_trades_and_is_complete() {
        let mut a = agg(&[Interval::parse("1m").unwrap()], LateTradePolicy::Drop);
        rebuild(&mut a, 1..=40, at(40), &[]);
        assert_eq!(a.open_candles(), 1);
        assert!(
            tick(&mut a, at(10_000)).is_empty(),
            "no live trade yet: nothing runs on"
        );
        let mut out = Vec::new();
        for i in 41..=70 {
            out.extend(on(
                &mut a,
                &trade(i as u64, at(i), &format!("{}", 100 + i), "1"),
                at(i),
            ));
        }
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!((c.trades, c.complete), (59, true));
        assert_eq!(c.open, parse_decimal("101").unwrap());
        assert_eq!(c.close, parse_decimal("159").unwrap());
        assert_eq!(c.volume, parse_decimal("59").unwrap());
        assert_eq!(a.incomplete_candles(), 0);
    }

    #[test]
    fn a_candle_the_store_holds_is_not_sent_again_and_one_it_lacks_is() {
        // Up to 10:01:03 with the 10:00 candle stored (a quiet market can close it by the
        // wall clock before its deadline trade): only 10:01 is left to send.
        let mut a = agg(&[Interval::parse("1m").unwrap()], LateTradePolicy::Drop);
        rebuild(&mut a, 1..=63, at(63), &[0]);
        assert_eq!(a.open_candles(), 1, "only 10:01 is open");
        let out = on(&mut a, &trade(200, at(200), "1", "1"), at(200));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].open_time, at(60));
        assert_eq!((out[0].trades, out[0].complete), (4, true));

        // The same, but the store lacks the 10:00 candle (the run ended before it closed):
        // it is sent once the stream passes its deadline, whole.
        let mut a = agg(&[Interval::parse("1m").unwrap()], LateTradePolicy::Drop);
        rebuild(&mut a, 1..=63, at(63), &[]);
        assert_eq!(a.open_candles(), 2);
        let out = on(&mut a, &trade(66, at(66), "1", "1"), at(66));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].open_time, out[0].trades, out[0].complete),
            (at(0), 59, true)
        );
    }

    #[test]
    fn an_abandoned_rebuild_leaves_the_interrupted_candle_incomplete() {
        let ex: Arc<str> = Arc::from("x");
        let sym = Symbol::parse("BTC-USD").unwrap();
        let mut a = agg(&[Interval::parse("1m").unwrap()], LateTradePolicy::Drop);
        for i in 1..=20 {
            a.rebuild_trade(&trade(i, at(i as i64), "1", "1"));
        }
        a.abandon_rebuild(&ex, &sym, at(40));
        assert_eq!(a.open_candles(), 0);
        let mut out = Vec::new();
        for i in 41..=70 {
            out.extend(on(&mut a, &trade(i as u64, at(i), "1", "1"), at(i)));
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].trades, out[0].complete), (19, false));
    }
}
