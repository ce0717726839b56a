//! The replay check every writer passes: a durable store hands back exactly what it holds of
//! one stream, from a time on up to a trade, and the gaps that overlap that span; a store
//! that cannot read back keeps no resume point either.

use std::sync::Arc;

use feeder_core::exchange::Cursor;
use feeder_core::model::{
    Candle, Event, Gap, GapReason, Interval, Side, Symbol, Timestamp, Trade, TradeId,
};
use feeder_core::testing::ConformanceTarget;
use feeder_core::writer::Writer;

/// The exchange of the data set.
pub const EXCHANGE: &str = "replayx";

/// Trades per stream and UTC day, one every half hour from midnight.
const PER_DAY: i64 = 40;

/// The first day of the data set: 2024-03-01, in seconds since the epoch.
const DAY1: i64 = 1_709_251_200;

fn at(day: i64, secs: i64, millis: i64) -> Timestamp {
    Timestamp::from_unix_millis((DAY1 + day * 86_400 + secs) * 1000 + millis)
}

/// The stream read back.
pub fn btc() -> Symbol {
    Symbol::parse("BTC-USD").unwrap()
}

/// The other stream, which must not show up.
pub fn eth() -> Symbol {
    Symbol::parse("ETH-USD").unwrap()
}

/// A trade of the data set: ids of equal length that grow with time, so that the order of
/// writing, of time and of id agree (a store keeps either).
pub fn trade(symbol: &Symbol, day: i64, k: i64) -> Trade {
    let base = if *symbol == btc() {
        1_000_000
    } else {
        2_000_000
    };
    let timestamp = at(day, k * 1800, 123);
    Trade {
        exchange: Arc::from(EXCHANGE),
        symbol: symbol.clone(),
        trade_id: TradeId::from_u64((base + day * PER_DAY + k) as u64),
        price: format!("{}.{}", 100 + k, day + 1).parse().unwrap(),
        amount: format!("0.00{}", k + 1).parse().unwrap(),
        side: if k % 2 == 0 { Side::Buy } else { Side::Sell },
        timestamp,
        received_at: Timestamp::from_unix_micros(timestamp.unix_nanos() / 1000 + 250_000),
    }
}

fn candle(symbol: &Symbol, day: i64, hour: i64) -> Candle {
    Candle {
        exchange: Arc::from(EXCHANGE),
        symbol: symbol.clone(),
        interval: Interval::parse("1h").unwrap(),
        open_time: at(day, hour * 3600, 0),
        close_time: at(day, (hour + 1) * 3600, 0),
        open: "100".parse().unwrap(),
        high: "101".parse().unwrap(),
        low: "99".parse().unwrap(),
        close: "100.5".parse().unwrap(),
        volume: "0.003".parse().unwrap(),
        trades: 2,
        revision: 0,
        complete: true,
    }
}

fn gap(symbol: &Symbol, after: &str, from: Timestamp, to: Option<Timestamp>) -> Gap {
    Gap {
        exchange: Arc::from(EXCHANGE),
        symbol: symbol.clone(),
        after_trade_id: TradeId::new(after),
        before_trade_id: to.map(|_| TradeId::new(&format!("{after}-next"))),
        from,
        to,
        reason: GapReason::BackfillFailed,
    }
}

/// What is written, as two runs of a writer, and what a replay must hand back.
pub struct Dataset {
    /// The batches of the first run: day 1 and the first half of day 2.
    pub first_run: Vec<Vec<Event>>,
    /// The batches of the second run: the rest of day 2 and day 3 (for Parquet, a second
    /// part of day 2 and a part of day 3 still being written).
    pub second_run: Vec<Vec<Event>>,
    /// Where the replay starts: day 2 at 06:00, the time of a trade.
    pub from: Timestamp,
    /// Where it ends: a trade of day 3 at 10:00, not the newest.
    pub upto: Cursor,
    /// The trades of BTC-USD a replay hands back, in the order written.
    pub trades: Vec<Trade>,
    /// The gaps of BTC-USD it hands back, by start.
    pub gaps: Vec<Gap>,
    /// The candles of BTC-USD it hands back (those opening at or after `from`), by open.
    pub candles: Vec<Candle>,
}

impl Dataset {
    /// Three UTC days of two streams, a trade every half hour of the first twenty hours,
    /// with hourly candles and gaps before, across, inside and after the replayed span.
    pub fn new() -> Self {
        let (btc, eth) = (btc(), eth());
        let from = at(1, 6 * 3600, 123);
        let upto_trade = trade(&btc, 2, 20);
        let upto = Cursor {
            trade_id: upto_trade.trade_id.clone(),
            timestamp: upto_trade.timestamp,
        };
        let hour = |d: i64, h: i64| at(d, h * 3600, 0);
        let gaps = [
            // Over before the span.
            gap(&btc, "g-before", hour(0, 3), Some(hour(0, 4))),
            // From the evening of day 1 into the span: filed under day 1.
            gap(
                &btc,
                "g-across",
                at(0, 19 * 3600 + 2700, 0),
                Some(hour(1, 7)),
            ),
            // Inside.
            gap(&btc, "g-inside", hour(1, 9), Some(at(1, 9 * 3600 + 600, 0))),
            // Without an end: it may reach anywhere after its start.
            gap(&btc, "g-open", hour(1, 15), None),
            // After `upto`.
            gap(&btc, "g-after", hour(2, 18), Some(hour(2, 19))),
            // Another stream's.
            gap(&eth, "g-eth", hour(1, 10), Some(hour(1, 11))),
        ];
        let mut first_run = Vec::new();
        let mut second_run = Vec::new();
        let mut trades = Vec::new();
        let mut candles = Vec::new();
        for day in 0..3 {
            for k in 0..PER_DAY {
                let run = if day == 0 || (day == 1 && k < PER_DAY / 2) {
                    &mut first_run
                } else {
                    &mut second_run
                };
                let b = trade(&btc, day, k);
                let mut batch = vec![Event::Trade(b.clone()), Event::Trade(trade(&eth, day, k))];
                // A gap goes where the run that met it wrote it: after the trade it follows.
                batch.extend(
                    gaps.iter()
                        .filter(|g| {
                            g.from >= at(day, k * 1800, 0) && g.from < at(day, (k + 1) * 1800, 0)
                        })
                        .map(|g| Event::Gap(g.clone())),
                );
                if k % 4 == 3 {
                    let c = candle(&btc, day, k / 2);
                    if c.open_time >= from {
                        candles.push(c.clone());
                    }
                    batch.push(Event::Candle(c));
                    batch.push(Event::Candle(candle(&eth, day, k / 2)));
                }
                run.push(batch);
                if b.timestamp >= from && upto.covers(&b) {
                    trades.push(b);
                }
            }
        }
        let gaps = ["g-across", "g-inside", "g-open"]
            .iter()
            .filter_map(|id| gaps.iter().find(|g| g.after_trade_id.as_str() == *id))
            .cloned()
            .collect();
        Self {
            first_run,
            second_run,
            from,
            upto,
            trades,
            gaps,
            candles,
        }
    }

    /// Every event of both runs.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.first_run.iter().chain(&self.second_run).flatten()
    }
}

impl Default for Dataset {
    fn default() -> Self {
        Self::new()
    }
}

/// What a replay of BTC-USD over the data set's span handed back: `None` when the writer
/// cannot read back.
pub async fn replay(writer: &mut dyn Writer, data: &Dataset) -> Result<Option<Vec<Event>>, String> {
    let mut events = Vec::new();
    let read = writer
        .replay(EXCHANGE, &btc(), data.from, &data.upto, &mut |e| {
            events.push(e)
        })
        .await
        .map_err(|e| format!("replay: {}", feeder_core::writer::ErrorChain(&e)))?;
    Ok(read.then_some(events))
}

/// Checks a replay's events against the data set: the stored trades of BTC-USD in the span,
/// in the order written; its gaps that overlap the span; its candles that open in or after
/// it; nothing else.
pub fn check_events(events: &[Event], data: &Dataset) -> Result<(), String> {
    let mut trades = Vec::new();
    let mut gaps = Vec::new();
    let mut candles = Vec::new();
    for e in events {
        if e.exchange() != EXCHANGE || *e.symbol() != btc() {
            return Err(format!("an event of another stream: {e:?}"));
        }
        match e {
            Event::Trade(t) => trades.push(t.clone()),
            Event::Gap(g) => gaps.push(g.clone()),
            Event::Candle(c) => candles.push(c.clone()),
        }
    }
    if trades != data.trades {
        let ids = |ts: &[Trade]| {
            ts.iter()
                .map(|t| t.trade_id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        return Err(format!(
            "trades {:?}, expected {:?}",
            ids(&trades),
            ids(&data.trades)
        ));
    }
    gaps.sort_by(|a, b| {
        (a.from, a.after_trade_id.as_str()).cmp(&(b.from, b.after_trade_id.as_str()))
    });
    if gaps != data.gaps {
        return Err(format!("gaps {gaps:?}, expected {:?}", data.gaps));
    }
    candles.sort_by_key(|c| c.open_time);
    if candles != data.candles {
        let opens = |cs: &[Candle]| cs.iter().map(|c| c.open_time).collect::<Vec<_>>();
        return Err(format!(
            "candles opening at {:?}, expected {:?}",
            opens(&candles),
            opens(&data.candles)
        ));
    }
    Ok(())
}

/// Whether the check writes the data set: `false` for a writer whose output only clutters
/// the test's (stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Write both runs.
    Data,
    /// Write nothing.
    Nothing,
}

/// The replay check. Writes the data set in two runs of the writer; replays BTC-USD from
/// day 2 at 06:00 up to a trade of day 3 that is not the newest, once on the second run's
/// writer (for Parquet: parts and a journal still being written) and once on a writer built
/// after it closed (after its resume point was asked, as at start-up). A writer that reads
/// back must hand back exactly the data set's trades and gaps of that span; one that cannot
/// must have no resume point for the stream.
pub async fn check_replay(target: &dyn ConformanceTarget, feed: Feed) -> Result<(), String> {
    let data = Dataset::new();
    let build = || async { target.build().await.map_err(|e| format!("build: {e}")) };
    let mut w = build().await?;
    if feed == Feed::Data {
        for batch in &data.first_run {
            w.write(batch).await.map_err(|e| format!("write: {e}"))?;
        }
        w.close().await.map_err(|e| format!("close: {e}"))?;
        w = build().await?;
        for batch in &data.second_run {
            w.write(batch).await.map_err(|e| format!("write: {e}"))?;
        }
    }
    if let Some(events) = replay(&mut *w, &data).await? {
        check_events(&events, &data).map_err(|e| format!("on the writer that wrote: {e}"))?;
    }
    w.close().await.map_err(|e| format!("close: {e}"))?;
    let mut w = build().await?;
    let resumed = w
        .resume_point(EXCHANGE, &btc())
        .await
        .map_err(|e| format!("resume_point: {e}"))?;
    let replayed = replay(&mut *w, &data).await?;
    w.close().await.map_err(|e| format!("close: {e}"))?;
    match (resumed, replayed) {
        (None, None) => Ok(()),
        (Some(_), Some(events)) => {
            check_events(&events, &data).map_err(|e| format!("after a restart: {e}"))
        }
        (Some(at), None) => Err(format!(
            "resumes at {} but cannot read back what it holds",
            at.trade_id.as_str()
        )),
        (None, Some(_)) => Err("reads back a stream it has no resume point for".into()),
    }
}
