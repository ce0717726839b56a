//! Properties of the valve and the aggregator together: on a random multi-stream feed with
//! repeats and bounded out-of-order arrival, the candles emitted are exactly those recomputed
//! by brute force from the unique trades. And of the way in (the trade sink's checks, then the
//! valve) under hostile input: no real trade is lost unless a hostile copy took its key first,
//! and every trade published is either stored or counted under its reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::LateTradePolicy;
use feeder_core::exchange::{Cursor, Cursors, ExchangeStats, Input, TradeSink};
use feeder_core::model::Interval;
use feeder_core::pipeline::{
    Aggregator, IdJumpLimit, RejectReason, Rejected, TradeRules, Valve, ValveCounts, Verdict,
};
use feeder_core::{Candle, Side, Symbol, Timestamp, Trade, TradeId};
use proptest::prelude::*;
use rust_decimal::Decimal;
use tokio::sync::mpsc;

/// (exchange, symbol); exchange `a` has numeric ids, `b` text ids.
const STREAMS: [(&str, &str); 4] = [
    ("a", "BTC-USD"),
    ("a", "ETH-USD"),
    ("b", "BTC-USD"),
    ("b", "ETH-USD"),
];

/// One trade of a stream: time step from the previous trade, price and amount as
/// (mantissa, scale), and how far (in trades of its stream) it may arrive late.
type TradeSpec = (u64, (i64, u32), (i64, u32), usize);

fn trade_spec() -> impl Strategy<Value = TradeSpec> {
    (
        prop_oneof![1 => Just(0u64), 4 => 0u64..400_000],
        (1i64..1_000_000, 0u32..5),
        (1i64..1_000_000, 0u32..9),
        0usize..=4,
    )
}

#[derive(Debug, Clone)]
struct Scenario {
    streams: Vec<Vec<TradeSpec>>,
    interleave: Vec<u8>,
    /// (which arrival to resend, how many arrivals later).
    resends: Vec<(prop::sample::Index, usize)>,
    batches: Vec<usize>,
    intervals: Vec<Interval>,
    window: usize,
    extra_grace_ms: u64,
    base_ms: i64,
    policy: LateTradePolicy,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let intervals = vec![
        Interval::from_secs(60).unwrap(),
        Interval::from_secs(300).unwrap(),
        Interval::M30,
        Interval::H1,
    ];
    (
        prop::collection::vec(prop::collection::vec(trade_spec(), 0..80), 1..=4),
        prop::collection::vec(any::<u8>(), 0..400),
        prop::collection::vec((any::<prop::sample::Index>(), 1usize..=8), 0..40),
        prop::collection::vec(1usize..=10, 1..40),
        prop::sample::subsequence(intervals, 1..=4),
        16usize..64,
        0u64..10_000,
        1_600_000_000_000i64..1_800_000_000_000,
        prop_oneof![Just(LateTradePolicy::Drop), Just(LateTradePolicy::Revise)],
    )
        .prop_map(
            |(
                streams,
                interleave,
                resends,
                batches,
                intervals,
                window,
                extra_grace_ms,
                base_ms,
                policy,
            )| Scenario {
                streams,
                interleave,
                resends,
                batches,
                intervals,
                window,
                extra_grace_ms,
                base_ms,
                policy,
            },
        )
}

/// The unique trades of each stream in trade order.
fn build_streams(s: &Scenario) -> Vec<Vec<Trade>> {
    s.streams
        .iter()
        .enumerate()
        .map(|(k, specs)| {
            let (exchange, symbol) = STREAMS[k];
            let exchange: Arc<str> = Arc::from(exchange);
            let symbol = Symbol::parse(symbol).unwrap();
            let mut ms = s.base_ms;
            specs
                .iter()
                .enumerate()
                .map(|(i, &(step, (pm, ps), (am, as_), _))| {
                    ms += step as i64;
                    let trade_id = if &*exchange == "a" {
                        TradeId::from_u64(1_000_000 + i as u64)
                    } else {
                        TradeId::new(&format!("t{i}-{k}"))
                    };
                    Trade {
                        exchange: exchange.clone(),
                        symbol: symbol.clone(),
                        trade_id,
                        price: Decimal::new(pm, ps),
                        amount: Decimal::new(am, as_),
                        side: Side::Buy,
                        timestamp: Timestamp::from_unix_millis(ms),
                        received_at: Timestamp::from_unix_millis(ms),
                    }
                })
                .collect()
        })
        .collect()
}

/// The arrival order: each stream locally shuffled (a trade moves back by at most 4 of its
/// stream), streams interleaved at random, and resends inserted a few arrivals after the
/// original. Returns the arrivals and the number of resends.
fn arrivals(s: &Scenario, streams: &[Vec<Trade>]) -> (Vec<Trade>, usize) {
    let mut queues: Vec<std::collections::VecDeque<Trade>> = streams
        .iter()
        .zip(&s.streams)
        .map(|(trades, specs)| {
            let mut keyed: Vec<(usize, usize, &Trade)> = trades
                .iter()
                .enumerate()
                .map(|(i, t)| (i + specs[i].3, i, t))
                .collect();
            keyed.sort_by_key(|&(k, i, _)| (k, i));
            keyed.into_iter().map(|(_, _, t)| t.clone()).collect()
        })
        .collect();
    let mut merged = Vec::new();
    let mut picks = s.interleave.iter().copied().cycle();
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len())
            .filter(|&i| !queues[i].is_empty())
            .collect();
        let pick = picks.next().map_or(0, usize::from) % live.len();
        merged.push(queues[live[pick]].pop_front().unwrap());
    }
    if merged.is_empty() {
        return (merged, 0);
    }
    let mut resend_at: BTreeMap<usize, Vec<Trade>> = BTreeMap::new();
    for (index, later) in &s.resends {
        let p = index.index(merged.len());
        let mut again = merged[p].clone();
        // Only the key matters, not when the copy was read.
        again.received_at =
            Timestamp::from_unix_millis(again.received_at.unix_nanos() / 1_000_000 + 1);
        resend_at.entry(p + later).or_default().push(again);
    }
    let resends = s.resends.len();
    let mut out = Vec::with_capacity(merged.len() + resends);
    for (p, t) in merged.into_iter().enumerate() {
        out.push(t);
        if let Some(copies) = resend_at.remove(&p) {
            out.extend(copies);
        }
    }
    out.extend(resend_at.into_values().flatten());
    (out, resends)
}

fn stream_key(t: &Trade) -> (Arc<str>, Symbol) {
    (t.exchange.clone(), t.symbol.clone())
}

/// The smallest grace that keeps every out-of-order arrival in its candle: the furthest a trade
/// arrives behind its stream's watermark, plus one nanosecond.
fn needed_grace(unique: &[Trade]) -> Duration {
    let mut watermark: HashMap<(Arc<str>, Symbol), i64> = HashMap::new();
    let mut behind = 0i64;
    for t in unique {
        let ts = t.timestamp.unix_nanos();
        let w = watermark.entry(stream_key(t)).or_insert(ts);
        behind = behind.max(*w - ts + 1);
        *w = (*w).max(ts);
    }
    Duration::from_nanos(behind as u64)
}

type CandleKey = (Arc<str>, Symbol, Interval, i64);

fn brute_force(unique: &[Trade], intervals: &[Interval]) -> BTreeMap<CandleKey, Candle> {
    let mut groups: BTreeMap<CandleKey, Vec<(usize, &Trade)>> = BTreeMap::new();
    for (arrival, t) in unique.iter().enumerate() {
        for &iv in intervals {
            let open = t.timestamp.unix_nanos().div_euclid(iv.nanos()) * iv.nanos();
            groups
                .entry((t.exchange.clone(), t.symbol.clone(), iv, open))
                .or_default()
                .push((arrival, t));
        }
    }
    groups
        .into_iter()
        .map(|(key, trades)| {
            let order = |&&(arrival, t): &&(usize, &Trade)| (t.timestamp.unix_nanos(), arrival);
            let first = trades.iter().min_by_key(order).unwrap().1;
            let last = trades.iter().max_by_key(order).unwrap().1;
            let candle = Candle {
                exchange: key.0.clone(),
                symbol: key.1.clone(),
                interval: key.2,
                open_time: Timestamp::from_unix_nanos(key.3, 0),
                close_time: Timestamp::from_unix_nanos(key.3 + key.2.nanos(), 0),
                open: first.price,
                high: trades.iter().map(|(_, t)| t.price).max().unwrap(),
                low: trades.iter().map(|(_, t)| t.price).min().unwrap(),
                close: last.price,
                volume: trades.iter().map(|(_, t)| t.amount).sum(),
                trades: trades.len() as u64,
                revision: 0,
                complete: true,
            };
            (key, candle)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valve_then_aggregator_equals_brute_force(s in scenario()) {
        let streams = build_streams(&s);
        let (arrivals, resends) = arrivals(&s, &streams);
        let total_unique: usize = streams.iter().map(Vec::len).sum();
        prop_assert_eq!(arrivals.len(), total_unique + resends);

        // The unique trades in arrival order, as the valve should pass them.
        let mut seen = HashSet::new();
        let unique: Vec<Trade> = arrivals
            .iter()
            .filter(|t| seen.insert((stream_key(t), t.trade_id.clone())))
            .cloned()
            .collect();
        prop_assert_eq!(unique.len(), total_unique);
        let grace = needed_grace(&unique) + Duration::from_millis(s.extra_grace_ms);

        let mut valve = Valve::new(s.window);
        let mut agg = Aggregator::new(&s.intervals, grace, s.policy);
        let mut passed = Vec::new();
        let mut candles = Vec::new();
        // Years ahead of every trade.
        let wall = Timestamp::from_unix_secs(1_900_000_000);
        let mut rest = arrivals.as_slice();
        let mut sizes = s.batches.iter().copied().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(1).min(rest.len());
            let mut batch = rest[..n].to_vec();
            rest = &rest[n..];
            let dropped = valve.filter(&mut batch);
            prop_assert_eq!(dropped + batch.len(), n);
            prop_assert!(valve.remembered() <= s.streams.len() * s.window);
            for t in &batch {
                agg.on_trade(t, wall, &mut candles);
            }
            passed.extend(batch);
            // Streams are live, and their watermarks run on from their newest trade by the
            // wall time elapsed: a wall clock that stands still (years ahead of the trades)
            // closes nothing early, however often it ticks.
            agg.on_tick(wall, &mut candles);
        }

        // The valve passed each key exactly once, in arrival order, and dropped only repeats.
        prop_assert_eq!(&passed, &unique);
        // (Whether long runs of repeats were reported depends on the receive times drawn.)
        let totals = ValveCounts { repeat_only: 0, ..valve.totals() };
        prop_assert_eq!(
            totals,
            ValveCounts { duplicates: resends as u64, ..ValveCounts::default() }
        );

        let far = Timestamp::from_unix_secs(4_000_000_000);
        if let Some(d) = agg.next_deadline() {
            prop_assert!(d <= far);
        }
        agg.on_tick(far, &mut candles);
        prop_assert_eq!(agg.open_candles(), 0);
        prop_assert_eq!(agg.next_deadline(), None);
        prop_assert_eq!(agg.late_trades(), 0);

        // Per stream and interval, candles come out once each, in time order.
        let mut last_open: HashMap<(Arc<str>, Symbol, Interval), Timestamp> = HashMap::new();
        for c in &candles {
            prop_assert_eq!(c.revision, 0);
            if let Some(prev) =
                last_open.insert((c.exchange.clone(), c.symbol.clone(), c.interval), c.open_time)
            {
                prop_assert!(prev < c.open_time, "{prev:?} then {:?}", c.open_time);
            }
        }
        let emitted: BTreeMap<CandleKey, Candle> = candles
            .iter()
            .map(|c| {
                let key = (c.exchange.clone(), c.symbol.clone(), c.interval, c.open_time.unix_nanos());
                (key, c.clone())
            })
            .collect();
        prop_assert_eq!(emitted.len(), candles.len());
        prop_assert_eq!(emitted, brute_force(&unique, &s.intervals));
    }

    /// However long the run, the valve never remembers more than `window` ranges per stream;
    /// a numeric repeat is caught from any distance back while its range is among the `window`
    /// most recent, and one older than that passes as unverified, never as new. Ids are drawn
    /// sparse (up to 600 of 5000) or dense (every id of a range but a few holes).
    #[test]
    fn valve_memory_is_bounded_and_remembered_repeats_never_pass(
        window in 1usize..32,
        dense in any::<bool>(),
        ids in prop::collection::vec(0u64..5_000, 1..600),
    ) {
        let mut valve = Valve::new(window);
        let mut increasing: Vec<u64> = if dense {
            let holes: HashSet<u64> = ids.iter().map(|i| i % 700).take(window.saturating_sub(1)).collect();
            (0..700).filter(|i| !holes.contains(i)).chain(ids.iter().take(50).map(|i| i % 700)).collect()
        } else {
            ids.clone()
        };
        increasing.sort_unstable();
        let trade = |id: u64, secs: i64| Trade {
            exchange: Arc::from("a"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(id),
            price: Decimal::ONE,
            amount: Decimal::ONE,
            side: Side::Unknown,
            timestamp: Timestamp::from_unix_secs(secs),
            received_at: Timestamp::from_unix_secs(secs),
        };
        let mut admitted = std::collections::BTreeSet::new();
        for (i, id) in increasing.iter().enumerate() {
            let new = valve.admit(&trade(*id, i as i64));
            prop_assert_eq!(new, admitted.insert(*id), "id {}", id);
            prop_assert!(valve.remembered() <= window);
        }
        // The ranges of what was admitted; the valve keeps the `window` highest.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &n in &admitted {
            match runs.last_mut() {
                Some(last) if last.1 + 1 == n => last.1 = n,
                _ => runs.push((n, n)),
            }
        }
        let kept = &runs[runs.len().saturating_sub(window)..];
        if dense {
            prop_assert!(runs.len() <= window, "{} holes", runs.len() - 1);
        }
        // Replay everything admitted, in any order.
        for id in ids.iter().rev().filter(|id| admitted.contains(id)).chain(&increasing) {
            let verdict = valve.decide(&trade(*id, 0));
            if kept.iter().any(|&(a, b)| (a..=b).contains(id)) {
                prop_assert_eq!(verdict, Verdict::Duplicate, "id {} passed twice", id);
            } else {
                prop_assert_eq!(verdict, Verdict::Unverified, "id {}", id);
            }
        }
    }

    /// A feed of real trades with resends, and hostile or broken trades mixed in, through the
    /// checks of a [`TradeSink`] per exchange and then the valve, as a restarted feeder runs it
    /// (cursors and valve seeded from a store): every real trade is stored once unless a
    /// hostile copy with its key came first; nothing hostile is stored but that copy; every
    /// trade published is stored or counted under its reason; no cursor passes a real id.
    #[test]
    fn hostile_input_loses_no_real_trade_and_every_drop_is_counted(f in hostile_feed()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run_hostile_feed(f))?;
    }
}

/// A trade put into the feed just before a real one (`Index` picks which), or a real one
/// sent again.
#[derive(Clone, Debug)]
enum Injected {
    /// A copy of the real trade with an id far above its stream's (`true`: the greatest u64,
    /// `false`: 10^19; two values, so that they can never confirm a move between them); on
    /// numeric streams only.
    FarId(bool),
    /// A copy with a negative price.
    NegativePrice,
    /// A copy with a zero amount.
    ZeroAmount,
    /// A copy timed 200 years after it was received.
    FarAhead,
    /// A copy with the real trade's id and another price: it takes the key.
    TakesTheId,
    /// The real trade again, after this many more arrivals.
    Resend(usize),
}

#[derive(Clone, Debug)]
struct HostileFeed {
    /// Trades per stream of [`STREAMS`].
    lens: Vec<usize>,
    interleave: Vec<u8>,
    injected: Vec<(prop::sample::Index, Injected)>,
    batches: Vec<usize>,
    window: usize,
}

fn hostile_feed() -> impl Strategy<Value = HostileFeed> {
    let injected = prop_oneof![
        prop::bool::ANY.prop_map(Injected::FarId),
        Just(Injected::NegativePrice),
        Just(Injected::ZeroAmount),
        Just(Injected::FarAhead),
        Just(Injected::TakesTheId),
        (1usize..=8).prop_map(Injected::Resend),
    ];
    (
        prop::collection::vec(0usize..60, 4),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec((any::<prop::sample::Index>(), injected), 0..40),
        prop::collection::vec(1usize..=10, 1..20),
        16usize..64,
    )
        .prop_map(
            |(lens, interleave, injected, batches, window)| HostileFeed {
                lens,
                interleave,
                injected,
                batches,
                window,
            },
        )
}

/// Where the stores left off for numeric streams: the first real id is one above.
const RESUMED_AT: u64 = 599_999_999;
const BASE_MS: i64 = 1_700_000_000_000;

fn real_trade(k: usize, i: usize) -> Trade {
    let (exchange, symbol) = STREAMS[k];
    let ms = BASE_MS + i as i64;
    Trade {
        exchange: Arc::from(exchange),
        symbol: Symbol::parse(symbol).unwrap(),
        trade_id: if exchange == "a" {
            TradeId::from_u64(RESUMED_AT + 1 + i as u64)
        } else {
            TradeId::new(&format!("t{i}-{k}"))
        },
        price: Decimal::new(100 + i as i64, 0),
        amount: Decimal::new(5, 1),
        side: Side::Sell,
        timestamp: Timestamp::from_unix_millis(ms),
        received_at: Timestamp::from_unix_millis(ms),
    }
}

/// The arrivals: the streams interleaved, each injected trade before its real one (resends
/// after), and for each arrival whether it is a real trade's first copy.
fn hostile_arrivals(f: &HostileFeed) -> Vec<(Trade, bool)> {
    let mut next = vec![0usize; STREAMS.len()];
    let mut merged = Vec::new();
    let mut picks = f.interleave.iter().copied().cycle();
    loop {
        let live: Vec<usize> = (0..STREAMS.len())
            .filter(|&k| next[k] < f.lens[k])
            .collect();
        if live.is_empty() {
            break;
        }
        let k = live[picks.next().map_or(0, usize::from) % live.len()];
        merged.push(real_trade(k, next[k]));
        next[k] += 1;
    }
    if merged.is_empty() {
        return Vec::new();
    }
    let mut before: BTreeMap<usize, Vec<Trade>> = BTreeMap::new();
    let mut after: BTreeMap<usize, Vec<Trade>> = BTreeMap::new();
    for (index, what) in &f.injected {
        let p = index.index(merged.len());
        let mut t = merged[p].clone();
        match what {
            // A text-id stream has no numeric id to hold a numeric one to.
            Injected::FarId(_) if &*t.exchange != "a" => continue,
            Injected::FarId(top) => {
                t.trade_id = if *top {
                    TradeId::from_u64(u64::MAX)
                } else {
                    TradeId::from_u64(10_000_000_000_000_000_000)
                };
            }
            Injected::NegativePrice => t.price = -t.price,
            Injected::ZeroAmount => t.amount = Decimal::ZERO,
            Injected::FarAhead => {
                t.timestamp =
                    Timestamp::from_unix_secs(t.received_at.unix_secs() + 200 * 365 * 86_400);
            }
            Injected::TakesTheId => t.price += Decimal::new(5, 1),
            Injected::Resend(later) => {
                after.entry(p + later).or_default().push(t);
                continue;
            }
        }
        before.entry(p).or_default().push(t);
    }
    let mut out = Vec::new();
    for (p, t) in merged.into_iter().enumerate() {
        out.extend(before.remove(&p).into_iter().flatten().map(|t| (t, false)));
        out.push((t, true));
        out.extend(after.remove(&p).into_iter().flatten().map(|t| (t, false)));
    }
    out.extend(after.into_values().flatten().map(|t| (t, false)));
    out
}

/// What should happen to each arrival, written plainly: checks first, then the first copy of
/// a key wins, and a later copy is a duplicate or, with another price or amount, a conflict.
#[derive(Default, Debug, PartialEq, Eq)]
struct Expected {
    stored: BTreeMap<(Arc<str>, Symbol), Vec<Trade>>,
    rejected: u64,
    quarantined: u64,
    duplicates: u64,
    conflicts: u64,
}

fn expected(arrivals: &[(Trade, bool)]) -> Expected {
    let mut e = Expected::default();
    let mut first: HashMap<(Arc<str>, Symbol, TradeId), Trade> = HashMap::new();
    for (t, _) in arrivals {
        let ahead = t.timestamp.unix_nanos() - t.received_at.unix_nanos() > 86_400_000_000_000;
        if t.price <= Decimal::ZERO || t.amount <= Decimal::ZERO || ahead {
            e.rejected += 1;
        } else if t
            .trade_id
            .as_number()
            .is_some_and(|n| n >= 10_000_000_000_000_000_000)
        {
            e.quarantined += 1;
        } else {
            match first.get(&(t.exchange.clone(), t.symbol.clone(), t.trade_id.clone())) {
                None => {
                    first.insert(
                        (t.exchange.clone(), t.symbol.clone(), t.trade_id.clone()),
                        t.clone(),
                    );
                    e.stored.entry(stream_key(t)).or_default().push(t.clone());
                }
                Some(f) if f.price == t.price && f.amount == t.amount => e.duplicates += 1,
                Some(_) => e.conflicts += 1,
            }
        }
    }
    e
}

async fn run_hostile_feed(f: HostileFeed) -> Result<(), TestCaseError> {
    let arrivals = hostile_arrivals(&f);
    let want = expected(&arrivals);
    let rules = TradeRules {
        max_clock_skew: Some(Duration::from_secs(86_400)),
        id_jump: Some(IdJumpLimit::DEFAULT),
    };
    let (tx, mut rx) = mpsc::channel(arrivals.len().max(1));
    let (dead_tx, mut dead_rx) = mpsc::channel(arrivals.len().max(1));
    let mut valve = Valve::new(f.window);
    let mut sinks: Vec<(&str, TradeSink, Cursors, Arc<ExchangeStats>)> = Vec::new();
    for exchange in ["a", "b"] {
        let cursors = Cursors::default();
        if exchange == "a" {
            for (_, symbol) in &STREAMS[..2] {
                let symbol = Symbol::parse(symbol).unwrap();
                let resumed = TradeId::from_u64(RESUMED_AT);
                valve.seed_id(&Arc::from(exchange), &symbol, &resumed);
                cursors.set(
                    symbol,
                    Cursor {
                        trade_id: resumed,
                        timestamp: Timestamp::EPOCH,
                    },
                );
            }
        }
        let stats = Arc::new(ExchangeStats::default());
        let sink = TradeSink::new(tx.clone(), cursors.clone(), stats.clone())
            .with_rules(rules)
            .with_rejected(dead_tx.clone());
        sinks.push((exchange, sink, cursors, stats));
    }

    let mut stored: BTreeMap<(Arc<str>, Symbol), Vec<Trade>> = BTreeMap::new();
    let mut rest: &[(Trade, bool)] = &arrivals;
    let mut sizes = f.batches.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        for (exchange, sink, _, _) in &sinks {
            let part: Vec<Trade> = batch
                .iter()
                .filter(|(t, _)| &*t.exchange == *exchange)
                .map(|(t, _)| t.clone())
                .collect();
            sink.send(part)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        while let Ok(input) = rx.try_recv() {
            let Input::Trades(mut trades) = input else {
                continue;
            };
            valve.filter(&mut trades);
            for t in trades {
                stored.entry(stream_key(&t)).or_default().push(t);
            }
        }
    }

    let get = ExchangeStats::get;
    let rejected: u64 = sinks.iter().map(|(_, _, _, s)| get(&s.rejected)).sum();
    let quarantined: u64 = sinks.iter().map(|(_, _, _, s)| get(&s.quarantined)).sum();
    let sent: u64 = sinks.iter().map(|(_, _, _, s)| get(&s.trades)).sum();
    let at_valve = valve.totals();
    let got = Expected {
        stored,
        rejected,
        quarantined: quarantined + at_valve.quarantined,
        duplicates: at_valve.duplicates,
        conflicts: at_valve.conflicts,
    };
    prop_assert_eq!(&got, &want);
    prop_assert_eq!(at_valve.unverified, 0);

    // Published = stored + every drop, under its reason.
    let stored_n: u64 = got.stored.values().map(|v| v.len() as u64).sum();
    prop_assert_eq!(
        arrivals.len() as u64,
        stored_n + got.duplicates + got.conflicts + got.rejected + got.quarantined
    );
    prop_assert_eq!(sent, stored_n + got.duplicates + got.conflicts);

    // Every real trade is stored unless a copy that took its key came first.
    let taken: HashSet<(Arc<str>, Symbol, TradeId)> = want
        .stored
        .values()
        .flatten()
        .map(|t| (t.exchange.clone(), t.symbol.clone(), t.trade_id.clone()))
        .collect();
    for (t, real) in &arrivals {
        if *real {
            let key = (t.exchange.clone(), t.symbol.clone(), t.trade_id.clone());
            prop_assert!(taken.contains(&key), "{:?} lost", key);
            let kept = got.stored[&stream_key(t)]
                .iter()
                .find(|s| s.trade_id == t.trade_id)
                .unwrap();
            prop_assert!(
                kept == t || kept.price != t.price,
                "only a copy with its key may stand in"
            );
        }
    }

    // Every turned-away trade reached the dead-letter channel, with its reason.
    let mut dead = Vec::new();
    while let Ok(r) = dead_rx.try_recv() {
        dead.push(r);
    }
    prop_assert_eq!(dead.len() as u64, rejected + quarantined);
    let far_ids = dead
        .iter()
        .filter(|r: &&Rejected| r.reason == RejectReason::IdOutOfLine)
        .count();
    prop_assert_eq!(far_ids as u64, quarantined);

    // No cursor moved past the real ids.
    let (_, _, cursors, _) = &sinks[0];
    for (k, (_, symbol)) in STREAMS[..2].iter().enumerate() {
        let c = cursors.get(&Symbol::parse(symbol).unwrap()).unwrap();
        let n = c.trade_id.as_number().unwrap();
        prop_assert!(
            n <= u128::from(RESUMED_AT) + f.lens[k] as u128,
            "cursor at {}",
            n
        );
    }
    Ok(())
}
