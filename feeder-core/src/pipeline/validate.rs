//! What a trade must be to enter the pipeline: the rules, the reasons a trade is turned away,
//! and the id check's state (see [`TradeRules`]).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::config::PipelineConfig;
use crate::model::{Symbol, Timestamp, Trade};

/// Why a trade was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The price is zero or negative.
    NonPositivePrice,
    /// The amount is zero or negative.
    NonPositiveAmount,
    /// The trade time is further from the receive time than the rules allow.
    TimeOutOfWindow,
    /// The numeric id is far above the stream's newest id: quarantined rather than rejected,
    /// since it may be a real trade of a venue that changed its ids (see [`IdJumpLimit`]).
    IdOutOfLine,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::NonPositivePrice,
        RejectReason::NonPositiveAmount,
        RejectReason::TimeOutOfWindow,
        RejectReason::IdOutOfLine,
    ];

    /// A short name for logs: `non_positive_price`, `non_positive_amount`,
    /// `time_out_of_window`, `id_out_of_line`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::NonPositivePrice => "non_positive_price",
            RejectReason::NonPositiveAmount => "non_positive_amount",
            RejectReason::TimeOutOfWindow => "time_out_of_window",
            RejectReason::IdOutOfLine => "id_out_of_line",
        }
    }

    /// True for a quarantine (the id), false for a rejection (the content).
    pub const fn is_quarantine(self) -> bool {
        matches!(self, RejectReason::IdOutOfLine)
    }

    /// Position in [`ALL`](Self::ALL).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trade turned away, and why: what a dead-letter channel receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The trade as the venue's parser made it.
    pub trade: Trade,
    /// Why it was turned away.
    pub reason: RejectReason,
}

/// How far above a stream's newest numeric id the next one may be.
///
/// An id is out of line when it is more than `factor` times the newest id **and** more than
/// `slack` above it. Ids of real venues grow by the number of trades in between (or with the
/// clock): doubling takes them years once they are past the slack, while a corrupt or
/// hostile id (`18446744073709551615` on a stream at `600000000`) is many orders of magnitude
/// away. The slack covers young streams, whose ids are small.
///
/// A venue may still change its ids for good. [`CONFIRMATIONS`] out-of-line ids in a row, each
/// greater than the one before and all in line with each other, with no in-line id between,
/// show that the stream has moved: the last of them is taken and becomes the stream's newest;
/// the ones before it stay quarantined (counted and logged). A single stray id, or one sent
/// again and again, never confirms itself.
///
/// Only upward jumps are judged: an id below the newest is an old trade or a late one, and the
/// valve decides about it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdJumpLimit {
    /// How many times the newest id an id may be (within `slack`, always).
    pub factor: u32,
    /// How far above the newest id an id may always be.
    pub slack: u64,
}

/// See [`IdJumpLimit`]: how many out-of-line ids in a row move a stream.
pub const CONFIRMATIONS: u32 = 3;

impl IdJumpLimit {
    /// Twice the newest id, and always 10 million above it: a week of the busiest stream of
    /// any venue with per-symbol counters.
    pub const DEFAULT: IdJumpLimit = IdJumpLimit {
        factor: 2,
        slack: 10_000_000,
    };

    /// The greatest id in line with a stream whose newest id is `newest`.
    pub fn ceiling(&self, newest: u128) -> u128 {
        newest
            .saturating_mul(u128::from(self.factor))
            .max(newest.saturating_add(u128::from(self.slack)))
    }

    /// Whether `id` is in line with a stream whose newest id is `newest`.
    pub fn allows(&self, newest: u128, id: u128) -> bool {
        id <= newest || id <= self.ceiling(newest)
    }
}

impl Default for IdJumpLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a trade must be to be taken in.
///
/// The checks run where an exchange hands its trades over
/// ([`TradeSink::send`](crate::exchange::TradeSink::send)), before the resume cursors, the valve
/// or any store has seen them, so that a trade turned away leaves no trace but a count, a log
/// line and, if asked for, a copy on a dead-letter channel. Two kinds are turned away:
///
/// - **rejected**: not a trade that can have happened: a price or an amount that is not
///   positive, or a trade time further than `max_clock_skew` from the time it was received;
/// - **quarantined**: a numeric id far above the newest id of its stream ([`IdJumpLimit`]).
///   Taken in, such an id would become the stream's resume point, and the ids that really come
///   next would all look old.
///
/// The [`Valve`](super::Valve) applies the same id check on its own, for trades that reach it
/// by another path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRules {
    /// Greatest distance, either way, between a trade's time and the time it was received;
    /// `None` checks no time (for replaying recorded sessions).
    pub max_clock_skew: Option<Duration>,
    /// The bound on upward id jumps; `None` quarantines nothing.
    pub id_jump: Option<IdJumpLimit>,
}

impl TradeRules {
    /// Positive price and amount, ids in line, no time window: what a sink applies when it is
    /// not given the configuration's rules. A context made without a configuration (tests,
    /// programs replaying recorded sessions) has no receive clock to hold times to.
    pub const BASIC: TradeRules = TradeRules {
        max_clock_skew: None,
        id_jump: Some(IdJumpLimit::DEFAULT),
    };

    /// The rules of a feeder run with `pipeline`.
    pub fn from_pipeline(pipeline: &PipelineConfig) -> Self {
        Self {
            max_clock_skew: Some(pipeline.max_clock_skew),
            ..Self::BASIC
        }
    }

    /// Checks what a trade says (not its id, which needs the stream: see [`IdJumpLimit`]).
    /// Branch-light, allocation-free: it runs on every trade.
    pub fn check(&self, t: &Trade) -> Result<(), RejectReason> {
        if !t.price.is_sign_positive() || t.price.is_zero() {
            return Err(RejectReason::NonPositivePrice);
        }
        if !t.amount.is_sign_positive() || t.amount.is_zero() {
            return Err(RejectReason::NonPositiveAmount);
        }
        if let Some(skew) = self.max_clock_skew {
            let apart = t
                .timestamp
                .unix_nanos()
                .abs_diff(t.received_at.unix_nanos());
            if u128::from(apart) > skew.as_nanos() {
                return Err(RejectReason::TimeOutOfWindow);
            }
        }
        Ok(())
    }
}

/// What a trade sink keeps between batches to check them: per symbol, the newest numeric id
/// it let through and the id check's confirmation state; a log gate per reason.
#[derive(Debug, Default)]
pub(crate) struct Screen {
    /// An entry starts from the symbol's resume cursor when the symbol is first seen.
    lines: HashMap<Symbol, SymbolLine>,
    /// By [`RejectReason::index`].
    logs: [LogGate; RejectReason::ALL.len()],
}

#[derive(Debug, Default)]
struct SymbolLine {
    newest: Option<u128>,
    line: IdLine,
}

impl Screen {
    /// Checks every trade once, in order, with `rules`; takes those that fail out of `trades`
    /// (the rest keep their order), logs them at warn level (once per minute of receive time
    /// per reason, with how many were held back) and returns them. `resume_point` gives a
    /// symbol's newest id the first time it is seen. Allocates nothing when all pass.
    pub(crate) fn screen(
        &mut self,
        rules: &TradeRules,
        trades: &mut Vec<Trade>,
        resume_point: impl Fn(&Symbol) -> Option<u128>,
    ) -> Vec<Rejected> {
        let mut failed: Vec<(usize, RejectReason)> = Vec::new();
        let mut current: Option<(&Symbol, &mut SymbolLine)> = None;
        for (i, t) in trades.iter().enumerate() {
            if let Err(reason) = rules.check(t) {
                failed.push((i, reason));
                continue;
            }
            let (Some(limit), Some(n)) = (&rules.id_jump, t.trade_id.as_number()) else {
                continue;
            };
            // Batches are mostly of one symbol: look it up only when it changes.
            let state = match current {
                Some((symbol, ref mut state)) if *symbol == t.symbol => state,
                _ => {
                    current = None;
                    let state = self
                        .lines
                        .entry(t.symbol.clone())
                        .or_insert_with(|| SymbolLine {
                            newest: resume_point(&t.symbol),
                            line: IdLine::default(),
                        });
                    &mut current.insert((&t.symbol, state)).1
                }
            };
            if state.line.admits(limit, state.newest, n) {
                state.newest = Some(state.newest.map_or(n, |h| h.max(n)));
            } else {
                failed.push((i, RejectReason::IdOutOfLine));
            }
        }
        if failed.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(failed.len());
        let mut kept = Vec::with_capacity(trades.len() - failed.len());
        let mut failed = failed.into_iter().peekable();
        for (i, trade) in trades.drain(..).enumerate() {
            match failed.next_if(|&(j, _)| j == i) {
                Some((_, reason)) => out.push(Rejected { trade, reason }),
                None => kept.push(trade),
            }
        }
        *trades = kept;
        for r in &out {
            let t = &r.trade;
            if let Some(held_back) = self.logs[r.reason.index()].pass(t.received_at) {
                tracing::warn!(
                    exchange = %t.exchange,
                    symbol = %t.symbol,
                    trade_id = %t.trade_id,
                    reason = %r.reason,
                    price = %t.price,
                    amount = %t.amount,
                    time = %t.timestamp,
                    received_at = %t.received_at,
                    held_back,
                    "turned a trade away before the pipeline"
                );
            }
        }
        out
    }
}

/// The confirmation state of the id check for one stream (see [`IdJumpLimit`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdLine {
    /// The out-of-line ids seen in a row, no in-line id between: (lowest, highest, how many
    /// increases). Cleared by every in-line id.
    run: Option<(u128, u128, u32)>,
}

impl IdLine {
    /// Whether `id` may join a stream whose newest id is `newest` (none yet: anything may).
    /// A confirmed move (see [`IdJumpLimit`]) answers true; the caller then takes `id` as the
    /// newest, as for any in-line id.
    pub(crate) fn admits(&mut self, limit: &IdJumpLimit, newest: Option<u128>, id: u128) -> bool {
        if newest.is_none_or(|h| limit.allows(h, id)) {
            self.run = None;
            return true;
        }
        let run = match self.run {
            Some((lo, hi, n)) if id > hi && limit.allows(lo, id) => (lo, id, n + 1),
            // A repeat, or an earlier id, inside the run: it neither confirms nor breaks it.
            Some(run @ (lo, hi, _)) if (lo..=hi).contains(&id) => run,
            _ => (id, id, 1),
        };
        if run.2 >= CONFIRMATIONS {
            self.run = None;
            true
        } else {
            self.run = Some(run);
            false
        }
    }
}

/// Lets one log line through per minute of receive time, and says how many it held back
/// since the last one.
///
/// The clock is the receive time of the trades being logged, so the gate needs no clock of its
/// own and follows tokio's paused time in tests like everything else.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogGate {
    /// Receive time (ns) before which nothing more is logged; `None` until the first line.
    next: Option<i64>,
    /// Lines held back since the last one let through.
    held: u64,
}

/// The period of a [`LogGate`].
const LOG_PERIOD_NANOS: i64 = 60 * 1_000_000_000;

impl LogGate {
    /// `Some(held back since the last line)` when a line may be logged now.
    pub(crate) fn pass(&mut self, now: Timestamp) -> Option<u64> {
        let t = now.unix_nanos();
        if self.next.is_some_and(|next| t < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(t.saturating_add(LOG_PERIOD_NANOS));
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_decimal, Side, Symbol, TradeId};
    use std::sync::Arc;

    fn trade(price: &str, amount: &str, time_s: i64, received_s: i64) -> Trade {
        Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(1),
            price: parse_decimal(price).unwrap(),
            amount: parse_decimal(amount).unwrap(),
            side: Side::Sell,
            timestamp: Timestamp::from_unix_secs(time_s),
            received_at: Timestamp::from_unix_secs(received_s),
        }
    }

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    #[test]
    fn a_trade_needs_positive_price_and_amount_and_a_time_near_its_receipt() {
        let rules = TradeRules {
            max_clock_skew: Some(Duration::from_secs(DAY as u64)),
            ..TradeRules::BASIC
        };
        let cases = [
            (trade("100", "1", NOW, NOW), Ok(())),
            (trade("0.00000001", "1e-8", NOW, NOW), Ok(())),
            (
                trade("-5", "1", NOW, NOW),
                Err(RejectReason::NonPositivePrice),
            ),
            (
                trade("0", "1", NOW, NOW),
                Err(RejectReason::NonPositivePrice),
            ),
            (
                trade("-0", "1", NOW, NOW),
                Err(RejectReason::NonPositivePrice),
            ),
            (
                trade("1", "0", NOW, NOW),
                Err(RejectReason::NonPositiveAmount),
            ),
            (
                trade("1", "0.000", NOW, NOW),
                Err(RejectReason::NonPositiveAmount),
            ),
            (
                trade("1", "-2", NOW, NOW),
                Err(RejectReason::NonPositiveAmount),
            ),
            // The window is inclusive, either way.
            (trade("1", "1", NOW + DAY, NOW), Ok(())),
            (trade("1", "1", NOW - DAY, NOW), Ok(())),
            (
                trade("1", "1", NOW + DAY + 1, NOW),
                Err(RejectReason::TimeOutOfWindow),
            ),
            (
                trade("1", "1", NOW - DAY - 1, NOW),
                Err(RejectReason::TimeOutOfWindow),
            ),
            // 200 years ahead.
            (
                trade("1", "1", NOW + 200 * 365 * DAY, NOW),
                Err(RejectReason::TimeOutOfWindow),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(
                rules.check(&t),
                want,
                "{} {} {:?}",
                t.price,
                t.amount,
                t.timestamp
            );
        }
        // Without a window, only the time check goes.
        let far = trade("1", "1", NOW + 200 * 365 * DAY, NOW);
        assert_eq!(TradeRules::BASIC.check(&far), Ok(()));
        let extremes = trade("1", "1", i64::MAX / 1_000_000_000, i64::MIN / 1_000_000_000);
        assert_eq!(rules.check(&extremes), Err(RejectReason::TimeOutOfWindow));
    }

    #[test]
    fn the_rules_of_a_pipeline_hold_times_to_its_skew() {
        let p = PipelineConfig {
            max_clock_skew: Duration::from_secs(60),
            ..PipelineConfig::default()
        };
        let rules = TradeRules::from_pipeline(&p);
        assert_eq!(rules.max_clock_skew, Some(Duration::from_secs(60)));
        assert_eq!(rules.id_jump, Some(IdJumpLimit::DEFAULT));
        assert_eq!(
            TradeRules::from_pipeline(&PipelineConfig::default()).max_clock_skew,
            Some(Duration::from_secs(DAY as u64))
        );
    }

    #[test]
    fn an_id_is_out_of_line_only_far_above_the_newest() {
        let l = IdJumpLimit::DEFAULT;
        // A busy stream: up to twice its newest id.
        assert!(l.allows(600_000_000, 1_200_000_000));
        assert!(!l.allows(600_000_000, 1_200_000_001));
        assert!(!l.allows(600_000_000, u128::from(u64::MAX)));
        // A young one: up to 10 million above.
        assert!(l.allows(5, 10_000_005));
        assert!(!l.allows(5, 10_000_006));
        // Below the newest: always (late or old trades are the valve's business).
        assert!(l.allows(600_000_000, 0));
        // No overflow at the top of the range.
        assert!(l.allows(u128::MAX - 1, u128::MAX));
    }

    #[test]
    fn a_stray_id_stays_out_and_a_real_move_is_taken_after_three() {
        let l = IdJumpLimit::DEFAULT;
        let mut line = IdLine::default();
        let mut newest = Some(600_000_000u128);
        let far = u128::from(u64::MAX);
        // A stray, sent again and again: never confirmed by its own copies.
        for _ in 0..10 {
            assert!(!line.admits(&l, newest, far));
        }
        // Two in a row, then an in-line id: the run is broken.
        assert!(!line.admits(&l, newest, far - 10));
        assert!(!line.admits(&l, newest, far - 5));
        assert!(line.admits(&l, newest, 600_000_001));
        assert!(!line.admits(&l, newest, far - 1));
        // Ids not in line with each other do not make a run either.
        assert!(!line.admits(&l, newest, 10_000_000_000));
        assert!(!line.admits(&l, newest, 100_000_000_000));
        assert!(!line.admits(&l, newest, 1_000_000_000_000));
        // A venue that really moved: three increasing ids in line with each other.
        assert!(!line.admits(&l, newest, 5_000_000_000_000));
        assert!(!line.admits(&l, newest, 5_000_000_000_001));
        assert!(line.admits(&l, newest, 5_000_000_000_002));
        newest = Some(5_000_000_000_002);
        assert!(line.admits(&l, newest, 5_000_000_000_003));
        // A stream with no newest id yet takes anything.
        assert!(IdLine::default().admits(&l, None, far));
    }

    #[test]
    fn the_log_gate_lets_one_line_through_per_minute_and_counts_the_rest() {
        let mut g = LogGate::default();
        let at = |s: i64| Timestamp::from_unix_secs(NOW + s);
        assert_eq!(g.pass(at(0)), Some(0));
        assert_eq!(g.pass(at(1)), None);
        assert_eq!(g.pass(at(59)), None);
        assert_eq!(g.pass(at(60)), Some(2));
        assert_eq!(g.pass(at(61)), None);
        // A receive clock that steps back holds lines back rather than letting them through.
        assert_eq!(g.pass(at(-3_600)), None);
        assert_eq!(g.pass(at(3_600)), Some(2));
    }

    #[test]
    fn reasons_have_stable_names_and_kinds() {
        let names: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "non_positive_price",
                "non_positive_amount",
                "time_out_of_window",
                "id_out_of_line"
            ]
        );
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(r.is_quarantine(), *r == RejectReason::IdOutOfLine);
        }
    }
}
