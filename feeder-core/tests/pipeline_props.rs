//! Properties of the valve and the aggregator together: on a random multi-stream feed with
//! repeats and bounded out-of-order arrival, the candles emitted are exactly those recomputed
//! by brute force from the unique trades.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::LateTradePolicy;
use feeder_core::model::Interval;
use feeder_core::pipeline::{Aggregator, Valve, ValveCounts, Verdict};
use feeder_core::{Candle, Side, Symbol, Timestamp, Trade, TradeId};
use proptest::prelude::*;
use rust_decimal::Decimal;

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
        let mut watermarks: HashMap<(Arc<str>, Symbol), Timestamp> = HashMap::new();
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
                agg.on_trade(t, &mut candles);
                let w = watermarks.entry(stream_key(t)).or_insert(t.timestamp);
                *w = (*w).max(t.timestamp);
            }
            passed.extend(batch);
            // A wall clock that never runs ahead of any stream emits nothing early.
            if let Some(now) = watermarks.values().min() {
                agg.on_tick(*now, &mut candles);
            }
        }

        // The valve passed each key exactly once, in arrival order, and dropped only repeats.
        prop_assert_eq!(&passed, &unique);
        prop_assert_eq!(
            valve.totals(),
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
}
