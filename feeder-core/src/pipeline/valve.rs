//! The dedup valve.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::model::{Symbol, Timestamp, Trade, TradeId};

use super::validate::{IdJumpLimit, IdLine, LogGate};
use super::Streams;

/// Passes each trade, keyed by (exchange, symbol, trade id), only once, in bounded memory, and
/// drops a trade as a repeat only when its key was really seen.
///
/// Venues resend trades: on reconnect, in a REST page that overlaps the previous one, in a
/// backfill after a gap. The valve remembers, per stream (exchange and symbol):
///
/// - **numeric ids** (all digits; compared by value, as the resume cursors do, so `007` and
///   `7` are the same id): every admitted id, as ranges of consecutive ids (`[1000..=1999,
///   2001..=5000]`), at most `window` ranges. A venue whose ids go up by one needs one range
///   however long it runs, plus one per id it never sent; a venue whose ids skip (one global
///   counter across symbols) needs one range per id, so there the ranges cover the `window`
///   most recent ids. When there are more, the lowest range is forgotten;
/// - the stream's **newest** numeric id, not counting quarantined ones;
/// - **text ids**: the `window` most recently admitted;
/// - the price and amount of recently admitted trades (the text ids in the window, and up to
///   1024 numeric ids, by id), to tell a repeat from a **conflict**.
///
/// A numeric id is decided by these rules, in order:
/// 1. far above the newest ([`IdJumpLimit`], with its confirmation rule): **quarantined**:
///    dropped, counted, logged; it moves nothing;
/// 2. above the newest: **new**;
/// 3. in a remembered range: a **duplicate**, or a **conflict** when its price or amount
///    differs from the admitted copy's (still dropped: the first copy stays, but the repeat is
///    counted and logged as a conflict, not as a duplicate);
/// 4. at or below the end of a forgotten range: **unverified**: passed, counted. The valve
///    cannot tell whether it saw it, and a trade is never dropped on a guess; a writer that
///    resumes from its store skips what it holds, and consumers dedup on the key;
/// 5. otherwise: **new** (a late arrival, or a trade in a gap a backfill filled).
///
/// A text id is a duplicate (or a conflict) while it is in the window; once it has left, it
/// passes again if the venue resends it.
///
/// A `window` of 0 remembers nothing: every trade passes (out-of-line ids are still
/// quarantined).
///
/// Memory per stream: at most `window` ranges of 32 bytes (the buffer holding them at most
/// twice that), 1024 price/amount slots of 48 bytes (48 KiB, made at the first numeric id),
/// and `window` text ids with their price and amount. Ids of up to 24 bytes and all numeric ids
/// are stored without allocating. With consecutive ids, the common case (an id one above the
/// newest) extends the last range in place: no allocation, no hashing.
#[derive(Debug)]
pub struct Valve {
    window: usize,
    id_jump: Option<IdJumpLimit>,
    streams: Streams<StreamIds>,
}

/// What the valve decided about one trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Not seen before: passed.
    New,
    /// Older than what the valve remembers of its stream: passed, since it cannot be shown to
    /// be a repeat (see [`Valve`], rule 4).
    Unverified,
    /// A repeat of an admitted trade: dropped.
    Duplicate,
    /// A repeat of an admitted id with another price or amount: dropped, logged.
    Conflict,
    /// A numeric id far above its stream's newest ([`IdJumpLimit`]): dropped, logged.
    Quarantined,
}

impl Verdict {
    /// Whether the trade goes on.
    pub const fn passes(self) -> bool {
        matches!(self, Verdict::New | Verdict::Unverified)
    }
}

/// What the valve counted: the trades it dropped, by reason, and those it let through
/// unverified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValveCounts {
    /// Repeats dropped.
    pub duplicates: u64,
    /// Repeats with another price or amount, dropped.
    pub conflicts: u64,
    /// Out-of-line ids, dropped.
    pub quarantined: u64,
    /// Trades passed that were older than what the valve remembers.
    pub unverified: u64,
    /// Warnings that a stream delivered nothing but repeats for over a minute (logged at
    /// most once a minute per stream): a venue that restarted its ids, or replays old trades.
    pub repeat_only: u64,
}

impl ValveCounts {
    /// All trades dropped: duplicates, conflicts and quarantined.
    pub fn dropped(&self) -> u64 {
        self.duplicates + self.conflicts + self.quarantined
    }

    fn add(&mut self, other: &ValveCounts) {
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.quarantined += other.quarantined;
        self.unverified += other.unverified;
        self.repeat_only += other.repeat_only;
    }

    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::New => {}
            Verdict::Unverified => self.unverified += 1,
            Verdict::Duplicate => self.duplicates += 1,
            Verdict::Conflict => self.conflicts += 1,
            Verdict::Quarantined => self.quarantined += 1,
        }
    }
}

/// Price and amount slots kept per stream for numeric ids (a power of two).
const RECENT_SLOTS: usize = 1024;

/// What the valve remembers of one stream.
#[derive(Debug, Default)]
struct StreamIds {
    /// Greatest numeric id admitted or seeded; never moved by a quarantined id.
    newest: Option<u128>,
    /// Admitted and seeded numeric ids.
    numbers: Ranges,
    /// Price and amount of recently admitted numeric ids, in slot `id % len`; empty until the
    /// first numeric id, then `min(window, 1024)` rounded up to a power of two.
    recent: Vec<Recent>,
    /// Admitted text ids, oldest first; never longer than the window.
    texts: VecDeque<TradeId>,
    /// The ids of `texts`, with the admitted copy's price and amount (`None` when seeded).
    text_content: HashMap<TradeId, Option<Content>>,
    /// Confirmation state of the id check.
    line: IdLine,
    /// What was dropped or passed unverified on this stream.
    counts: ValveCounts,
    /// Rate limits of the conflict and quarantine warnings.
    conflict_log: LogGate,
    quarantine_log: LogGate,
    /// Receive time of the first repeat since the last trade that passed: the start of a run
    /// of nothing but repeats.
    repeats_since: Option<Timestamp>,
    /// Repeats in that run, with the first and last id.
    repeats: u64,
    repeat_ids: Option<(TradeId, TradeId)>,
    repeat_log: LogGate,
}

/// What tells two copies of a trade apart: price and amount, by value (`100` and `100.000` are
/// the same; venues write decimals differently over WebSocket and REST). Times and sides are
/// left out: their precision and convention may differ between a venue's two APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Content {
    price: Decimal,
    amount: Decimal,
}

impl Content {
    fn of(t: &Trade) -> Self {
        Self {
            price: t.price,
            amount: t.amount,
        }
    }
}

/// A slot of [`StreamIds::recent`].
#[derive(Clone, Copy, Debug)]
struct Recent {
    /// The id whose content this is, or [`EMPTY`] (no numeric id reaches it: at most 38
    /// digits).
    id: u128,
    content: Content,
}

const EMPTY: u128 = u128::MAX;

/// Numeric ids as disjoint ranges, ascending, never touching (`1..=3` and `4..=9` are one).
#[derive(Debug, Default)]
struct Ranges {
    runs: VecDeque<(u128, u128)>,
    /// The greatest end of a range forgotten to keep within the window: an id at or below it
    /// that is in no range may or may not have been seen.
    forgotten: Option<u128>,
}

impl Ranges {
    /// Whether `n` is in a range.
    fn contains(&self, n: u128) -> bool {
        let i = self.runs.partition_point(|&(_, end)| end < n);
        self.runs.get(i).is_some_and(|&(start, _)| start <= n)
    }

    fn is_forgotten(&self, n: u128) -> bool {
        self.forgotten.is_some_and(|f| n <= f)
    }

    /// Adds `n`, which is in no range, then forgets the lowest ranges beyond `cap`.
    fn insert(&mut self, n: u128, cap: usize) {
        match self.runs.back_mut() {
            // The common case: the next id of an increasing stream.
            Some(last) if last.1.checked_add(1) == Some(n) => last.1 = n,
            Some(last) if n > last.1 => self.push_back((n, n), cap),
            None => self.push_back((n, n), cap),
            Some(_) => {
                // Below the last range and in none: `runs[i]` is the first range above `n`.
                let i = self.runs.partition_point(|&(_, end)| end < n);
                let joins_prev = i > 0 && self.runs[i - 1].1 + 1 == n;
                let joins_next = self.runs[i].0 == n + 1;
                match (joins_prev, joins_next) {
                    (true, true) => {
                        self.runs[i - 1].1 = self.runs[i].1;
                        self.runs.remove(i);
                    }
                    (true, false) => self.runs[i - 1].1 = n,
                    (false, true) => self.runs[i].0 = n,
                    (false, false) => self.runs.insert(i, (n, n)),
                }
            }
        }
        self.forget_beyond(cap);
    }

    /// Marks every id up to `n` as seen.
    fn seed(&mut self, n: u128, cap: usize) {
        // The ranges that start at or below `n + 1` merge into `0..=n`.
        let i = self
            .runs
            .partition_point(|&(start, _)| start <= n.saturating_add(1));
        let end = match i {
            0 => n,
            _ => self.runs[i - 1].1.max(n),
        };
        self.runs.drain(..i);
        self.runs.push_front((0, end));
        self.forget_beyond(cap);
    }

    fn push_back(&mut self, run: (u128, u128), cap: usize) {
        if self.runs.len() == self.runs.capacity() {
            // Grow by doubling, but never past what the cap can use (the cap plus the one
            // range about to be forgotten).
            let want = (self.runs.len() * 2).max(4).min(cap.max(1) + 1);
            self.runs
                .reserve_exact(want.saturating_sub(self.runs.len()).max(1));
        }
        self.runs.push_back(run);
    }

    fn forget_beyond(&mut self, cap: usize) {
        while self.runs.len() > cap {
            let Some((_, end)) = self.runs.pop_front() else {
                break;
            };
            self.forgotten = Some(self.forgotten.map_or(end, |f| f.max(end)));
        }
    }
}

impl StreamIds {
    fn decide(&mut self, t: &Trade, window: usize, id_jump: Option<&IdJumpLimit>) -> Verdict {
        match t.trade_id.as_number() {
            Some(n) => self.decide_number(n, t, window, id_jump),
            None => self.decide_text(t, window),
        }
    }

    fn decide_number(
        &mut self,
        n: u128,
        t: &Trade,
        window: usize,
        id_jump: Option<&IdJumpLimit>,
    ) -> Verdict {
        if let Some(limit) = id_jump {
            if !self.line.admits(limit, self.newest, n) {
                return Verdict::Quarantined;
            }
        }
        let verdict = if self.newest.is_none_or(|h| n > h) {
            self.newest = Some(n);
            Verdict::New
        } else if self.numbers.contains(n) {
            return match self.recent_content(n) {
                Some(c) if c != Content::of(t) => Verdict::Conflict,
                _ => Verdict::Duplicate,
            };
        } else if self.numbers.is_forgotten(n) {
            Verdict::Unverified
        } else {
            Verdict::New
        };
        if window > 0 {
            self.numbers.insert(n, window);
            self.remember_content(n, t, window);
        }
        verdict
    }

    fn decide_text(&mut self, t: &Trade, window: usize) -> Verdict {
        if let Some(kept) = self.text_content.get(&t.trade_id) {
            return match kept {
                Some(c) if *c != Content::of(t) => Verdict::Conflict,
                _ => Verdict::Duplicate,
            };
        }
        self.remember_text(t.trade_id.clone(), Some(Content::of(t)), window);
        Verdict::New
    }

    /// Adds a text id to the window, evicting the oldest when it is full. The caller has
    /// checked that `id` is not in the window.
    fn remember_text(&mut self, id: TradeId, content: Option<Content>, window: usize) {
        if window == 0 {
            return;
        }
        if self.texts.len() >= window {
            if let Some(old) = self.texts.pop_front() {
                self.text_content.remove(&old);
            }
        }
        // Ids of up to 24 bytes are inline, so these clones do not allocate; longer ids
        // (UUIDs) cost an allocation.
        self.text_content.insert(id.clone(), content);
        self.texts.push_back(id);
    }

    fn slot(&self, n: u128) -> Option<usize> {
        // `recent.len()` is a power of two: the low bits of the id pick the slot.
        (!self.recent.is_empty()).then(|| (n as usize) & (self.recent.len() - 1))
    }

    fn remember_content(&mut self, n: u128, t: &Trade, window: usize) {
        if self.recent.is_empty() {
            let slots = window.min(RECENT_SLOTS).next_power_of_two();
            self.recent = vec![
                Recent {
                    id: EMPTY,
                    content: Content::of(t),
                };
                slots
            ];
        }
        if let Some(i) = self.slot(n) {
            self.recent[i] = Recent {
                id: n,
                content: Content::of(t),
            };
        }
    }

    /// The admitted copy's content of `n`, if still kept.
    fn recent_content(&self, n: u128) -> Option<Content> {
        let r = self.recent.get(self.slot(n)?)?;
        (r.id == n).then_some(r.content)
    }

    /// The admitted copy's content of `t`'s id, if still kept (for the conflict warning).
    fn kept_content(&self, t: &Trade) -> Option<Content> {
        match t.trade_id.as_number() {
            Some(n) => self.recent_content(n),
            None => self.text_content.get(&t.trade_id).copied().flatten(),
        }
    }
}

/// How long a stream may deliver nothing but repeats before the valve says so.
const REPEATS_ONLY_NANOS: i64 = 60 * 1_000_000_000;

impl StreamIds {
    /// A repeat: when the stream has delivered nothing else for over a minute, warn loudly
    /// (once a minute) with where the store stands and the ids seen.
    fn note_repeat(&mut self, trade: &Trade, exchange: &Arc<str>, symbol: &Symbol) {
        let since = *self.repeats_since.get_or_insert(trade.received_at);
        self.repeats += 1;
        match &mut self.repeat_ids {
            Some((_, last)) => *last = trade.trade_id.clone(),
            None => self.repeat_ids = Some((trade.trade_id.clone(), trade.trade_id.clone())),
        }
        let long = trade.received_at.unix_nanos() - since.unix_nanos() > REPEATS_ONLY_NANOS;
        if !long {
            return;
        }
        if let Some(held_back) = self.repeat_log.pass(trade.received_at) {
            self.counts.repeat_only += 1;
            let (first, last) = self.repeat_ids.clone().unzip();
            tracing::warn!(
                %exchange,
                %symbol,
                since = %since,
                repeats = self.repeats,
                first_id = ?first.as_ref().map(TradeId::as_str),
                last_id = ?last.as_ref().map(TradeId::as_str),
                stored_up_to = ?self.newest,
                held_back,
                "for over a minute every trade of this stream was one already stored: the venue may have restarted its ids or be replaying old trades, and nothing new is being stored"
            );
        }
    }
}

impl Valve {
    /// A valve that remembers, per stream, up to `window` ranges of numeric ids and the
    /// `window` most recent text ids (config `pipeline.dedup_window`, 10 000 by default), and
    /// quarantines ids beyond [`IdJumpLimit::DEFAULT`].
    pub fn new(window: usize) -> Self {
        Self {
            window,
            id_jump: Some(IdJumpLimit::DEFAULT),
            streams: Streams::default(),
        }
    }

    /// Sets the bound on upward id jumps; `None` quarantines nothing.
    pub fn with_id_jump(mut self, id_jump: Option<IdJumpLimit>) -> Self {
        self.id_jump = id_jump;
        self
    }

    /// Decides about a trade (see the rules on [`Valve`]), remembers it when it passes, and
    /// counts it when it does not (or passes unverified). Conflicts and quarantines are logged
    /// at warn level, once per minute of receive time per stream and kind, with a sample.
    pub fn decide(&mut self, trade: &Trade) -> Verdict {
        let window = self.window;
        let id_jump = self.id_jump;
        let Some(stream) =
            self.streams
                .get_or_insert_with(&trade.exchange, &trade.symbol, StreamIds::default)
        else {
            // Not reachable: the entry was just found or made. Passing keeps the trade.
            return Verdict::New;
        };
        let st = &mut stream.state;
        let verdict = st.decide(trade, window, id_jump.as_ref());
        st.counts.count(verdict);
        match verdict {
            Verdict::Conflict => {
                if let Some(held_back) = st.conflict_log.pass(trade.received_at) {
                    let kept = st.kept_content(trade);
                    tracing::warn!(
                        exchange = %stream.exchange,
                        symbol = %stream.symbol,
                        trade_id = %trade.trade_id,
                        kept_price = ?kept.map(|c| c.price),
                        kept_amount = ?kept.map(|c| c.amount),
                        price = %trade.price,
                        amount = %trade.amount,
                        conflicts = st.counts.conflicts,
                        held_back,
                        "dropped a trade whose id was taken by another price or amount"
                    );
                }
            }
            Verdict::Quarantined => {
                if let Some(held_back) = st.quarantine_log.pass(trade.received_at) {
                    tracing::warn!(
                        exchange = %stream.exchange,
                        symbol = %stream.symbol,
                        trade_id = %trade.trade_id,
                        newest = ?st.newest,
                        price = %trade.price,
                        amount = %trade.amount,
                        time = %trade.timestamp,
                        quarantined = st.counts.quarantined,
                        held_back,
                        "quarantined a trade whose id is far above its stream's"
                    );
                }
            }
            Verdict::New | Verdict::Unverified => {
                st.repeats_since = None;
                st.repeats = 0;
                st.repeat_ids = None;
            }
            Verdict::Duplicate => st.note_repeat(trade, &stream.exchange, &stream.symbol),
        }
        verdict
    }

    /// True when the trade passes (see [`decide`](Valve::decide)).
    pub fn admit(&mut self, trade: &Trade) -> bool {
        self.decide(trade).passes()
    }

    /// Keeps only the trades that pass in `trades`, in place and in order; returns how many
    /// were dropped.
    pub fn filter(&mut self, trades: &mut Vec<Trade>) -> usize {
        let before = trades.len();
        trades.retain(|t| self.admit(t));
        before - trades.len()
    }

    /// What was counted so far, per exchange, in order of first appearance.
    pub fn counts(&self) -> Vec<(Arc<str>, ValveCounts)> {
        let mut out: Vec<(Arc<str>, ValveCounts)> = Vec::new();
        for s in self.streams.iter() {
            match out.iter_mut().find(|(e, _)| *e == s.exchange) {
                Some((_, c)) => c.add(&s.state.counts),
                None => out.push((s.exchange.clone(), s.state.counts)),
            }
        }
        out
    }

    /// What was counted so far, all exchanges together.
    pub fn totals(&self) -> ValveCounts {
        let mut total = ValveCounts::default();
        for s in self.streams.iter() {
            total.add(&s.state.counts);
        }
        total
    }

    /// Duplicates dropped so far, per exchange, in order of first appearance (conflicts and
    /// quarantines are counted apart: see [`counts`](Valve::counts)).
    pub fn duplicates(&self) -> Vec<(Arc<str>, u64)> {
        self.counts()
            .into_iter()
            .map(|(e, c)| (e, c.duplicates))
            .collect()
    }

    /// Duplicates dropped so far, all exchanges together.
    pub fn duplicates_total(&self) -> u64 {
        self.totals().duplicates
    }

    /// Marks `trade`'s key as seen, to seed the valve after a restart (from a durable cursor).
    /// Same as [`seed_id`](Valve::seed_id) with the trade's exchange, symbol and id.
    pub fn seed(&mut self, trade: &Trade) {
        self.seed_id(&trade.exchange, &trade.symbol, &trade.trade_id);
    }

    /// Marks an id as seen. A numeric id `n` is taken as a cursor: every id up to and including
    /// `n` is from then on seen (the store says it has everything up to there), as one range,
    /// and `n` becomes the stream's newest id if it is above it. A non-numeric id is added to
    /// the window, like an admitted one. Seeding counts nothing.
    pub fn seed_id(&mut self, exchange: &Arc<str>, symbol: &Symbol, id: &TradeId) {
        let window = self.window;
        let Some(stream) = self
            .streams
            .get_or_insert_with(exchange, symbol, StreamIds::default)
        else {
            return;
        };
        let st = &mut stream.state;
        match id.as_number() {
            Some(n) => {
                st.numbers.seed(n, window);
                st.newest = Some(st.newest.map_or(n, |h| h.max(n)));
            }
            None => {
                if !st.text_content.contains_key(id) {
                    st.remember_text(id.clone(), None, window);
                }
            }
        }
    }

    /// Number of ranges and text ids remembered across all streams; never more than
    /// streams × window of each.
    pub fn remembered(&self) -> usize {
        self.streams
            .iter()
            .map(|s| s.state.numbers.runs.len() + s.state.texts.len())
            .sum()
    }

    /// Duplicates dropped so far per stream (exchange, symbol), for finer metrics.
    pub fn duplicates_by_stream(&self) -> HashMap<(Arc<str>, Symbol), u64> {
        self.streams
            .iter()
            .map(|s| {
                (
                    (s.exchange.clone(), s.symbol.clone()),
                    s.state.counts.duplicates,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::{parse_decimal, Side, Timestamp};

    fn trade(exchange: &str, symbol: &str, id: &str) -> Trade {
        Trade {
            exchange: Arc::from(exchange),
            symbol: Symbol::parse(symbol).unwrap(),
            trade_id: TradeId::new(id),
            price: parse_decimal("100").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_secs(1_700_000_000),
            received_at: Timestamp::from_unix_secs(1_700_000_000),
        }
    }

    fn num(id: u64) -> Trade {
        trade("x", "BTC-USD", &id.to_string())
    }

    fn priced(id: &str, price: &str) -> Trade {
        Trade {
            price: parse_decimal(price).unwrap(),
            ..trade("x", "BTC-USD", id)
        }
    }

    #[test]
    fn first_sight_passes_and_repeats_are_counted_per_exchange() {
        let mut v = Valve::new(8);
        assert!(v.admit(&trade("a", "BTC-USD", "1")));
        assert!(!v.admit(&trade("a", "BTC-USD", "1")));
        // The same id on another symbol or exchange is another key.
        assert!(v.admit(&trade("a", "ETH-USD", "1")));
        assert!(v.admit(&trade("b", "BTC-USD", "1")));
        assert!(!v.admit(&trade("b", "BTC-USD", "1")));
        assert!(!v.admit(&trade("b", "BTC-USD", "1")));
        assert_eq!(
            v.duplicates(),
            vec![(Arc::from("a"), 1), (Arc::from("b"), 2)]
        );
        assert_eq!(v.duplicates_total(), 3);
        let by_stream = v.duplicates_by_stream();
        assert_eq!(
            by_stream[&(Arc::from("a"), Symbol::parse("ETH-USD").unwrap())],
            0
        );
    }

    #[test]
    fn filter_keeps_order_and_reports_drops() {
        let mut v = Valve::new(8);
        let mut batch: Vec<Trade> = [3, 1, 3, 2, 1, 4].into_iter().map(num).collect();
        assert_eq!(v.filter(&mut batch), 2);
        let ids: Vec<&str> = batch.iter().map(|t| t.trade_id.as_str()).collect();
        assert_eq!(ids, ["3", "1", "2", "4"]);
    }

    #[test]
    fn numeric_repeats_are_caught_from_any_distance_while_their_range_is_remembered() {
        let mut v = Valve::new(3);
        for id in 1..=100 {
            assert_eq!(v.decide(&num(id)), Verdict::New, "{id}");
        }
        // Consecutive ids: one range, however many.
        assert_eq!(v.remembered(), 1);
        for id in [1, 50, 97, 98, 99, 100] {
            assert_eq!(v.decide(&num(id)), Verdict::Duplicate, "{id}");
        }
        assert!(v.admit(&num(101)));
        assert_eq!(v.duplicates_total(), 6);
    }

    /// Today's rule 3 ("at or below the floor: treated as a duplicate") dropped this trade.
    #[test]
    fn a_late_trade_older_than_the_window_that_was_never_seen_passes_once() {
        let mut v = Valve::new(4);
        for id in (1..=100).filter(|&i| i != 50) {
            assert!(v.admit(&num(id)), "{id}");
        }
        assert_eq!(v.remembered(), 2, "1..=49 and 51..=100");
        assert_eq!(v.decide(&num(50)), Verdict::New);
        assert_eq!(v.remembered(), 1, "the hole is filled");
        assert_eq!(v.decide(&num(50)), Verdict::Duplicate);
        assert_eq!(v.decide(&num(49)), Verdict::Duplicate);
        assert_eq!(v.totals().dropped(), 2);
    }

    /// One match with the greatest u64 as its id used to move the valve's floor above every
    /// real id, and the stream was dropped as duplicates from then on, silently.
    #[test]
    fn one_hostile_id_does_not_silence_its_stream() {
        let mut v = Valve::new(16);
        for id in 600_000_001..=600_000_010 {
            assert!(v.admit(&num(id)));
        }
        assert_eq!(v.decide(&num(u64::MAX)), Verdict::Quarantined);
        for id in 600_000_011..=600_001_000 {
            assert_eq!(v.decide(&num(id)), Verdict::New, "{id}");
        }
        let totals = v.totals();
        assert_eq!(
            totals,
            ValveCounts {
                quarantined: 1,
                ..ValveCounts::default()
            }
        );
        // It moved nothing: the next copy is judged the same way.
        assert_eq!(v.decide(&num(u64::MAX)), Verdict::Quarantined);
        assert_eq!(v.remembered(), 1);
    }

    #[test]
    fn without_the_id_check_a_hostile_id_still_drops_nothing_real() {
        let mut v = Valve::new(16).with_id_jump(None);
        for id in 1..=10 {
            assert!(v.admit(&num(id)));
        }
        assert!(v.admit(&num(u64::MAX)));
        // Below the newest, each id is checked exactly: nothing unseen is dropped.
        for id in 11..=1_000 {
            assert_eq!(v.decide(&num(id)), Verdict::New, "{id}");
        }
        assert!(!v.admit(&num(u64::MAX)));
        assert!(!v.admit(&num(500)));
        assert_eq!(v.totals().quarantined, 0);
    }

    #[test]
    fn a_stream_whose_ids_really_moved_is_followed_after_three() {
        let mut v = Valve::new(16);
        for id in 1_000..1_010 {
            assert!(v.admit(&num(id)));
        }
        let moved = 5_000_000_000_000u64;
        assert_eq!(v.decide(&num(moved)), Verdict::Quarantined);
        assert_eq!(v.decide(&num(moved + 1)), Verdict::Quarantined);
        assert_eq!(v.decide(&num(moved + 2)), Verdict::New);
        for id in moved + 3..moved + 100 {
            assert_eq!(v.decide(&num(id)), Verdict::New, "{id}");
        }
        // The two held back are not repeats: they were never admitted.
        assert_eq!(v.decide(&num(moved)), Verdict::New);
        assert_eq!(v.totals().quarantined, 2);
    }

    /// A hostile match that takes the next id with another price wins (it came first), but the
    /// real trade is then counted as a conflict, not as a plain repeat.
    #[test]
    fn a_repeat_with_another_price_or_amount_is_a_conflict() {
        let mut v = Valve::new(16);
        assert!(v.admit(&priced("41", "100")));
        assert!(v.admit(&priced("42", "1")));
        assert_eq!(v.decide(&priced("42", "100.5")), Verdict::Conflict);
        // By value: the same price written another way is a plain repeat.
        assert_eq!(v.decide(&priced("42", "1.000")), Verdict::Duplicate);
        let mut other_amount = priced("41", "100");
        other_amount.amount = parse_decimal("2").unwrap();
        assert_eq!(v.decide(&other_amount), Verdict::Conflict);
        // Text ids too.
        assert!(v.admit(&priced("t-1", "7")));
        assert_eq!(v.decide(&priced("t-1", "8")), Verdict::Conflict);
        assert_eq!(v.decide(&priced("t-1", "7")), Verdict::Duplicate);
        assert_eq!(
            v.totals(),
            ValveCounts {
                duplicates: 2,
                conflicts: 3,
                ..ValveCounts::default()
            }
        );
    }

    #[test]
    fn a_repeat_whose_content_is_no_longer_kept_is_a_plain_duplicate() {
        let mut v = Valve::new(4_096);
        assert!(v.admit(&priced("1", "5")));
        // 1025 lands on slot 1, which now holds 1025's content.
        for id in 2..=1_025 {
            assert!(v.admit(&num(id)));
        }
        assert_eq!(v.decide(&priced("1", "6")), Verdict::Duplicate);
        assert_eq!(v.decide(&priced("1_025", "6")), Verdict::New, "text id");
        assert_eq!(v.decide(&priced("1025", "6")), Verdict::Conflict);
    }

    #[test]
    fn numeric_out_of_order_arrivals_pass_once() {
        let mut v = Valve::new(4);
        for id in [10, 12, 11, 14, 13] {
            assert!(v.admit(&num(id)), "{id}");
        }
        for id in [10, 11, 12, 13, 14] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        // A gap below the newest that was never seen: new.
        assert!(v.admit(&num(20)));
        assert!(v.admit(&num(16)));
        assert!(!v.admit(&num(16)));
        assert!(v.admit(&num(15)));
        assert!(v.admit(&num(17)));
        assert_eq!(v.remembered(), 2, "10..=17 and 20");
    }

    #[test]
    fn numeric_ids_compare_by_value() {
        let mut v = Valve::new(4);
        assert!(v.admit(&trade("x", "BTC-USD", "7")));
        assert!(!v.admit(&trade("x", "BTC-USD", "007")));
    }

    #[test]
    fn sparse_ids_keep_the_window_most_recent_and_older_ones_pass_unverified() {
        // A venue with one counter for all its symbols: every id of a symbol is its own range.
        let mut v = Valve::new(8);
        for id in (0..100u64).map(|i| 1_000 + 10 * i) {
            assert!(v.admit(&num(id)));
            assert!(v.remembered() <= 8);
        }
        // The 8 most recent ids are remembered exactly.
        for id in (92..100u64).map(|i| 1_000 + 10 * i) {
            assert_eq!(v.decide(&num(id)), Verdict::Duplicate, "{id}");
        }
        // Older ones cannot be told apart from never-seen ones: passed, and counted.
        assert_eq!(v.decide(&num(1_000)), Verdict::Unverified);
        assert_eq!(v.decide(&num(1_005)), Verdict::Unverified);
        // Between remembered ids: never seen, certainly.
        assert_eq!(v.decide(&num(1_925)), Verdict::New);
        assert_eq!(
            v.totals(),
            ValveCounts {
                duplicates: 8,
                unverified: 2,
                ..ValveCounts::default()
            }
        );
    }

    #[test]
    fn non_numeric_ids_pass_again_once_evicted_from_the_window() {
        let mut v = Valve::new(2);
        let t = |id: &str| trade("x", "BTC-USD", id);
        assert!(v.admit(&t("a")));
        assert!(v.admit(&t("b")));
        assert!(!v.admit(&t("a")));
        assert!(v.admit(&t("c"))); // evicts "a"
        assert_eq!(v.remembered(), 2);
        assert!(!v.admit(&t("b")));
        assert!(!v.admit(&t("c")));
        assert!(v.admit(&t("a")), "evicted ids are forgotten");
        // Long ids (UUIDs) work the same way.
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert!(v.admit(&t(uuid)));
        assert!(!v.admit(&t(uuid)));
    }

    #[test]
    fn zero_window_remembers_nothing_and_passes_everything_in_line() {
        let mut v = Valve::new(0);
        assert!(v.admit(&num(5)));
        assert!(v.admit(&num(5)));
        assert!(v.admit(&num(4)));
        assert!(v.admit(&num(6)));
        assert!(v.admit(&trade("x", "BTC-USD", "z")));
        assert!(v.admit(&trade("x", "BTC-USD", "z")));
        assert_eq!(v.decide(&num(u64::MAX)), Verdict::Quarantined);
        assert_eq!(v.remembered(), 0);
    }

    #[test]
    fn seeding_a_numeric_cursor_marks_everything_up_to_it_as_seen() {
        let mut v = Valve::new(16);
        assert!(v.admit(&num(1_002)));
        v.seed(&num(1_000));
        for id in [1, 999, 1_000] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        assert!(v.admit(&num(1_001)));
        assert_eq!(v.remembered(), 1, "0..=1002");
        v.seed_id(
            &Arc::from("x"),
            &Symbol::parse("BTC-USD").unwrap(),
            &TradeId::new("abc"),
        );
        assert!(!v.admit(&trade("x", "BTC-USD", "abc")));
        assert_eq!(v.duplicates_total(), 4);
        // A seed is a reference for the id check too.
        let mut fresh = Valve::new(16);
        fresh.seed(&num(600_000_000));
        assert_eq!(fresh.decide(&num(u64::MAX)), Verdict::Quarantined);
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        let mut v = Valve::new(64);
        for id in 0..10_000u64 {
            v.admit(&num(id * 3));
            v.admit(&trade("x", "ETH-USD", &format!("t{id}")));
            assert!(v.remembered() <= 2 * 64);
        }
        assert_eq!(v.remembered(), 128);
        for s in v.streams.iter() {
            assert!(s.state.numbers.runs.capacity() <= 2 * 65);
            assert!(s.state.recent.len() <= RECENT_SLOTS);
        }
    }

    /// The rules of [`Valve`] written as plainly as possible: every admitted numeric id in a
    /// set, its ranges recounted from scratch; text ids in a list searched end to end.
    struct Reference {
        window: usize,
        seen: BTreeSet<u128>,
        forgotten: Option<u128>,
        newest: Option<u128>,
        texts: VecDeque<String>,
    }

    impl Reference {
        fn new(window: usize) -> Self {
            Self {
                window,
                seen: BTreeSet::new(),
                forgotten: None,
                newest: None,
                texts: VecDeque::new(),
            }
        }

        /// The ranges of consecutive ids in `seen`.
        fn runs(&self) -> Vec<(u128, u128)> {
            let mut runs: Vec<(u128, u128)> = Vec::new();
            for &n in &self.seen {
                match runs.last_mut() {
                    Some(last) if last.1 + 1 == n => last.1 = n,
                    _ => runs.push((n, n)),
                }
            }
            runs
        }

        fn decide(&mut self, id: &TradeId) -> Verdict {
            let Some(n) = id.as_number() else {
                if self.texts.iter().any(|t| t == id.as_str()) {
                    return Verdict::Duplicate;
                }
                if self.window > 0 {
                    if self.texts.len() == self.window {
                        self.texts.pop_front();
                    }
                    self.texts.push_back(id.as_str().to_owned());
                }
                return Verdict::New;
            };
            let verdict = if self.newest.is_none_or(|h| n > h) {
                Verdict::New
            } else if self.seen.contains(&n) {
                return Verdict::Duplicate;
            } else if self.forgotten.is_some_and(|f| n <= f) {
                Verdict::Unverified
            } else {
                Verdict::New
            };
            self.newest = Some(self.newest.map_or(n, |h| h.max(n)));
            if self.window > 0 {
                self.seen.insert(n);
            }
            let runs = self.runs();
            for &(start, end) in runs.iter().take(runs.len().saturating_sub(self.window)) {
                self.seen.retain(|&m| m < start || m > end);
                self.forgotten = Some(self.forgotten.map_or(end, |f| f.max(end)));
            }
            verdict
        }
    }

    proptest::proptest! {
        /// Mostly increasing numeric ids with holes, repeats, late arrivals and text ids mixed
        /// in, so that ranges split, merge and are forgotten: the decisions are those of the
        /// plain rules, and the ranges stay sorted, apart and within the window.
        #[test]
        fn ranges_decide_like_the_plain_rules(
            window in 0usize..12,
            steps in proptest::collection::vec((0u8..10, 0u64..6), 1..300),
        ) {
            let mut valve = Valve::new(window);
            let mut reference = Reference::new(window);
            let mut next = 100u64;
            for (kind, delta) in steps {
                let id = match kind {
                    0..=5 => { next += delta; next.to_string() }
                    6 | 7 => next.saturating_sub(delta * 3).to_string(),
                    8 => format!("t{delta}"),
                    _ => format!("00{}", next.saturating_sub(delta)),
                };
                let t = trade("x", "BTC-USD", &id);
                proptest::prop_assert_eq!(valve.decide(&t), reference.decide(&t.trade_id), "id {}", id);
                let st = &valve.streams.iter().next().unwrap().state;
                let runs: Vec<(u128, u128)> = st.numbers.runs.iter().copied().collect();
                proptest::prop_assert_eq!(&runs, &reference.runs());
                proptest::prop_assert!(runs.len() <= window);
                proptest::prop_assert!(runs.windows(2).all(|w| w[0].1 + 1 < w[1].0));
                proptest::prop_assert_eq!(st.texts.len(), st.text_content.len());
            }
        }

        /// Trades resent with their price changed or not: a changed one is a conflict while
        /// the admitted copy's content is kept, a plain duplicate after, never new.
        #[test]
        fn conflicts_are_repeats_whose_content_differs(
            prices in proptest::collection::vec(1i64..4, 1..200),
            resends in proptest::collection::vec((0usize..200, 1i64..4), 0..100),
        ) {
            let mut valve = Valve::new(64);
            let mut admitted: Vec<i64> = Vec::new();
            let mut want = ValveCounts::default();
            for (i, p) in prices.iter().enumerate() {
                let t = priced(&(i + 1).to_string(), &p.to_string());
                proptest::prop_assert_eq!(valve.decide(&t), Verdict::New);
                admitted.push(*p);
                for &(back, q) in resends.iter().filter(|r| r.0 % (i + 1) == i % 7) {
                    let j = back % admitted.len();
                    let again = priced(&(j + 1).to_string(), &q.to_string());
                    let got = valve.decide(&again);
                    // Slots go by id: all 200 ids fit in 64 slots only the last 64.
                    let kept = i - j < 64;
                    let expect = if kept && q != admitted[j] { Verdict::Conflict } else { Verdict::Duplicate };
                    proptest::prop_assert_eq!(got, expect, "id {} price {} then {}", j + 1, admitted[j], q);
                    want.count(expect);
                }
            }
            proptest::prop_assert_eq!(valve.totals(), want);
        }
    }

    #[test]
    fn a_stream_that_sends_only_repeats_for_a_minute_is_reported_once_a_minute() {
        let mut v = Valve::new(1_000);
        let at = |id: u64, secs: i64| {
            let mut t = trade("x", "BTC-USD", &id.to_string());
            t.received_at = Timestamp::from_unix_secs(secs);
            t
        };
        for id in 1..=100 {
            assert!(v.admit(&at(id, 0)));
        }
        // The venue restarted its ids: every trade is one already stored.
        for (i, id) in (1..=100).enumerate() {
            assert!(!v.admit(&at(id, 1 + 2 * i as i64)));
        }
        // Past a minute of nothing but repeats (from 1 s to 199 s): said at 63 s, then once a
        // minute, at 123 s and 183 s.
        assert_eq!(v.totals().repeat_only, 3, "{:?}", v.totals());
        // Something new ends the run; repeats must last a minute again to be reported.
        assert!(v.admit(&at(101, 200)));
        for id in 1..=30 {
            assert!(!v.admit(&at(id, 200 + id as i64)));
        }
        assert_eq!(v.totals().repeat_only, 3);
    }
}
