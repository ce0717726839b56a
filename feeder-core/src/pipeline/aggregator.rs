//! The candle aggregator.

use std::collections::VecDeque;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::config::LateTradePolicy;
use crate::model::{Candle, Interval, Timestamp, Trade};

use super::Streams;

/// Builds OHLCV candles from unique trades and emits each one once its interval has closed.
///
/// Candles are kept per stream (exchange, symbol) and per interval; each interval is handled
/// independently of the others. Time is only ever passed in (trade timestamps and the `now` of
/// [`on_tick`](Aggregator::on_tick)); the aggregator reads no clock.
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
/// Once its interval has closed and the grace period after it has passed, by either clock:
/// - event time: the stream's watermark (the greatest trade timestamp seen on it) reaches
///   `close_time + grace`, i.e. a later trade arrived ([`on_trade`](Aggregator::on_trade));
/// - wall time: `now` reaches `close_time + grace` ([`on_tick`](Aggregator::on_tick)), which is
///   what closes candles in a quiet market. [`next_deadline`](Aggregator::next_deadline) says
///   when to tick next.
///
/// Using the same grace for both means a trade that arrives out of order, but within the grace
/// period, still lands in its own candle. An interval with no trades emits nothing. Nothing
/// flushes open candles at shutdown: they are incomplete, and emitting them as closed would be
/// wrong; the caller just drops the aggregator.
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
/// the few open candles of its stream; it allocates nothing once its candles are open.
#[derive(Debug)]
pub struct Aggregator {
    /// Sorted, without repeats; `StreamCandles::series` follows the same order.
    intervals: Vec<Interval>,
    grace: i64,
    late: LateTradePolicy,
    streams: Streams<StreamCandles>,
    late_trades: u64,
    open_candles: usize,
    /// Earliest deadline of all open candles; only valid while `earliest_stale` is false.
    earliest: Option<i64>,
    earliest_stale: bool,
}

/// The candles of one stream.
#[derive(Debug)]
struct StreamCandles {
    /// Greatest trade timestamp seen on the stream, in nanoseconds.
    watermark: Option<i64>,
    /// One per interval of the aggregator, in the same order.
    series: Vec<Series>,
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
}

impl Series {
    /// Emits open candles, from the front, while their deadline is at or before `until`.
    /// Returns how many, and whether one of them had the deadline `earliest`.
    fn emit_due(
        &mut self,
        until: i64,
        grace: i64,
        earliest: Option<i64>,
        out: &mut Vec<Candle>,
    ) -> (usize, bool) {
        let mut emitted = 0;
        let mut hit_earliest = false;
        while let Some(front) = self.open.front() {
            let deadline = front.deadline(grace);
            if deadline > until {
                break;
            }
            hit_earliest |= earliest == Some(deadline);
            if let Some(b) = self.open.pop_front() {
                out.push(b.candle.clone());
                self.emitted = Some(b);
                emitted += 1;
            }
        }
        (emitted, hit_earliest)
    }
}

/// Start of the interval that contains `ts`.
fn align(ts: i64, interval: Interval) -> i64 {
    let n = interval.nanos();
    ts.div_euclid(n).saturating_mul(n)
}

impl Aggregator {
    /// An aggregator for `intervals` (repeats ignored), emitting each candle `grace` after its
    /// interval closes, and treating late trades by `late`.
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
            open_candles: 0,
            earliest: None,
            earliest_stale: false,
        }
    }

    /// Adds a (unique) trade; appends to `out` any candles that close because of it (the
    /// stream's watermark passed their deadline), and, under [`LateTradePolicy::Revise`], the
    /// revised candle of a late trade.
    pub fn on_trade(&mut self, trade: &Trade, out: &mut Vec<Candle>) {
        if self.intervals.is_empty() {
            return;
        }
        let ts = trade.timestamp.unix_nanos();
        let grace = self.grace;
        let intervals = &self.intervals;
        let Some(stream) = self
            .streams
            .get_or_insert_with(&trade.exchange, &trade.symbol, || StreamCandles {
                watermark: None,
                series: intervals
                    .iter()
                    .map(|&interval| Series {
                        interval,
                        open: VecDeque::new(),
                        emitted: None,
                    })
                    .collect(),
            })
        else {
            return;
        };
        let st = &mut stream.state;
        let mut late = false;
        for series in &mut st.series {
            let open_time = align(ts, series.interval);
            if let Some(done) = &mut series.emitted {
                let done_open = done.open_time();
                if open_time <= done_open {
                    late = true;
                    if open_time == done_open && self.late == LateTradePolicy::Revise {
                        done.add(trade);
                        done.candle.revision = done.candle.revision.saturating_add(1);
                        out.push(done.candle.clone());
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
                series.open.insert(at, b);
                self.open_candles += 1;
                if !self.earliest_stale {
                    self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
                }
            }
        }
        if late {
            self.late_trades += 1;
        }
        let watermark = st.watermark.map_or(ts, |w| w.max(ts));
        st.watermark = Some(watermark);
        for series in &mut st.series {
            let (n, hit) = series.emit_due(watermark, grace, self.earliest, out);
            self.open_candles = self.open_candles.saturating_sub(n);
            self.earliest_stale |= hit;
        }
        self.refresh_earliest();
    }

    /// Wall-clock tick: appends to `out` the candles of every stream whose
    /// `close_time + grace <= now`.
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Candle>) {
        let now = now.unix_nanos();
        if self.earliest_stale || self.earliest.is_some_and(|e| e <= now) {
            for stream in self.streams.iter_mut() {
                for series in &mut stream.state.series {
                    let (n, _) = series.emit_due(now, self.grace, None, out);
                    self.open_candles = self.open_candles.saturating_sub(n);
                }
            }
            self.earliest_stale = true;
        }
        self.refresh_earliest();
    }

    /// When the next candle would close by the clock: `close_time + grace` of the earliest open
    /// candle, or `None` when no candle is open. Tick at (or after) that time.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.earliest.map(|d| {
            let digits = if d % 1_000_000_000 == 0 { 0 } else { 9 };
            Timestamp::from_unix_nanos(d, digits)
        })
    }

    /// Trades that arrived after their candle was emitted (see the struct's doc); a trade late
    /// for several intervals counts once.
    pub fn late_trades(&self) -> u64 {
        self.late_trades
    }

    /// Candles currently open (not yet emitted).
    pub fn open_candles(&self) -> usize {
        self.open_candles
    }

    /// The intervals, sorted and without repeats.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    fn refresh_earliest(&mut self) {
        if !self.earliest_stale {
            return;
        }
        let grace = self.grace;
        self.earliest = self
            .streams
            .iter()
            .flat_map(|s| s.state.series.iter())
            .filter_map(|series| series.open.front().map(|b| b.deadline(grace)))
            .min();
        self.earliest_stale = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{parse_decimal, Side, Symbol, TradeId};

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
            a.on_trade(t, &mut out);
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
}
