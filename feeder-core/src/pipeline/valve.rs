//! The dedup valve.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::model::{Symbol, Trade, TradeId};

use super::Streams;

/// Passes each trade, keyed by (exchange, symbol, trade id), only once, in bounded memory.
///
/// Venues resend trades: on reconnect, in a REST page that overlaps the previous one, in a
/// backfill after a gap. The valve remembers, per stream (exchange and symbol), enough to
/// recognise those repeats without growing with time:
///
/// - a window of the `window` most recently admitted ids (a ring buffer; while its ids are
///   numeric and increasing they are looked up by binary search, else through a set);
/// - for numeric ids (all digits; compared by value, as the resume cursors do, so `007` and `7`
///   are the same id), the high-water mark (the greatest id admitted) and the floor (the
///   greatest id that has left the window).
///
/// A numeric id is decided by these rules, in order:
/// 1. greater than the high-water mark: new;
/// 2. in the window: duplicate;
/// 3. at or below the floor: treated as a duplicate. It is older than what the window can
///    check, and on an increasing venue it would have been seen; this is also what guarantees
///    that a numeric id, once admitted, is never admitted again however long ago that was;
/// 4. otherwise (between the floor and the high-water mark, not in the window): new, an
///    out-of-order arrival.
///
/// The price of rule 3: a trade that arrives after more than `window` newer trades of its stream
/// were admitted is dropped as if it were a repeat.
///
/// A non-numeric id is checked against the window only: an id that has left the window passes
/// again if the venue resends it.
///
/// A `window` of 0 remembers nothing: numeric ids then pass only above the high-water mark, and
/// non-numeric ids always pass.
///
/// Memory: at most `window` ids per stream ([`remembered`](Valve::remembered)). Ids of up to 24
/// bytes, and all numeric ids, are stored without allocating.
#[derive(Debug)]
pub struct Valve {
    window: usize,
    streams: Streams<StreamIds>,
}

/// Windows up to this many ids get a ring of exactly their size.
const EXACT_RING: usize = 1 << 16;

/// What the valve remembers of one stream.
#[derive(Debug, Default)]
struct StreamIds {
    /// Admitted ids, oldest first; never longer than the valve's window.
    ring: VecDeque<IdKey>,
    /// The same ids as `ring`, for lookup, while the ring is not [`sorted`](Self::breaks);
    /// empty otherwise.
    set: HashSet<IdKey>,
    /// Positions in `ring` that keep it from being numeric and strictly increasing: a text id,
    /// or a numeric id not greater than the one before it. At 0 (what every venue with
    /// increasing ids gives) ids are looked up by binary search in `ring` and `set` is not
    /// kept, so admitting an id costs no hashing.
    breaks: usize,
    /// Greatest numeric id admitted or seeded.
    high: Option<u128>,
    /// Greatest numeric id that left the window, or was seeded: this one and all below it are
    /// treated as seen.
    floor: Option<u128>,
    /// Repeats dropped on this stream.
    duplicates: u64,
}

/// An id as remembered: numeric ids by value (16 bytes, no allocation), others as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum IdKey {
    Num(u128),
    Text(TradeId),
}

impl IdKey {
    fn of(id: &TradeId) -> Self {
        match id.as_number() {
            Some(n) => IdKey::Num(n),
            None => IdKey::Text(id.clone()),
        }
    }
}

impl StreamIds {
    /// Decides and, when new, remembers.
    fn admit(&mut self, id: &TradeId, window: usize) -> bool {
        let key = match id.as_number() {
            Some(n) => {
                let above_high = self.high.is_none_or(|h| n > h);
                if !above_high {
                    let key = IdKey::Num(n);
                    if self.floor.is_some_and(|f| n <= f) || self.contains(&key) {
                        return false;
                    }
                }
                self.high = Some(self.high.map_or(n, |h| h.max(n)));
                IdKey::Num(n)
            }
            None => {
                // Ids of up to 24 bytes are inline, so this clone does not allocate; longer
                // ids (UUIDs) cost an allocation.
                let key = IdKey::Text(id.clone());
                if self.contains(&key) {
                    return false;
                }
                key
            }
        };
        self.remember(key, window);
        true
    }

    /// Whether `key` is in the window.
    fn contains(&self, key: &IdKey) -> bool {
        if self.breaks > 0 {
            return self.set.contains(key);
        }
        // Sorted and all numeric: a text key cannot be there.
        let IdKey::Num(n) = key else { return false };
        self.ring
            .binary_search_by(|k| match k {
                IdKey::Num(m) => m.cmp(n),
                IdKey::Text(_) => std::cmp::Ordering::Less,
            })
            .is_ok()
    }

    /// Whether `key` appended after `prev` would be a break (see [`StreamIds::breaks`]).
    fn is_break(prev: Option<&IdKey>, key: &IdKey) -> bool {
        match (prev, key) {
            (_, IdKey::Text(_)) | (Some(IdKey::Text(_)), _) => true,
            (Some(IdKey::Num(p)), IdKey::Num(n)) => n <= p,
            (None, IdKey::Num(_)) => false,
        }
    }

    /// Adds `key` to the window, evicting the oldest id when it is full. The caller has checked
    /// that `key` is not in the window.
    fn remember(&mut self, key: IdKey, window: usize) {
        if window == 0 {
            if let IdKey::Num(n) = key {
                self.raise_floor(n);
            }
            return;
        }
        if self.ring.capacity() < window.min(EXACT_RING) {
            // The ring is full most of its life: sized once, exactly, rather than doubled past
            // the window (a ring buffer touches all of its capacity as it turns).
            self.ring
                .reserve_exact(window.min(EXACT_RING) - self.ring.len());
        }
        while self.ring.len() >= window {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            // `old` was at position 0, and the new front moves there: neither is compared
            // with a predecessor any more.
            if matches!(old, IdKey::Text(_)) {
                self.breaks -= 1;
            }
            if let Some(front) = self.ring.front() {
                if Self::is_break(Some(&old), front) && !matches!(front, IdKey::Text(_)) {
                    self.breaks -= 1;
                }
            }
            if self.breaks > 0 || !self.set.is_empty() {
                self.set.remove(&old);
            }
            if let IdKey::Num(n) = old {
                self.raise_floor(n);
            }
        }
        if Self::is_break(self.ring.back(), &key) {
            if self.breaks == 0 {
                // Leaving the sorted state: index what the window holds.
                self.set.extend(self.ring.iter().cloned());
            }
            self.breaks += 1;
        }
        if self.breaks > 0 {
            self.set.insert(key.clone());
        } else if !self.set.is_empty() {
            // Sorted again: the binary search takes over from the set.
            self.set = HashSet::new();
        }
        self.ring.push_back(key);
    }

    fn raise_floor(&mut self, n: u128) {
        self.floor = Some(self.floor.map_or(n, |f| f.max(n)));
    }
}

impl Valve {
    /// A valve that remembers, per stream, the `window` most recent ids (config
    /// `pipeline.dedup_window`, 10 000 by default).
    pub fn new(window: usize) -> Self {
        Self {
            window,
            streams: Streams::default(),
        }
    }

    /// True the first time a key is seen (see the rules on [`Valve`]); false for a repeat,
    /// which is counted in [`duplicates`](Valve::duplicates).
    pub fn admit(&mut self, trade: &Trade) -> bool {
        let window = self.window;
        let Some(stream) =
            self.streams
                .get_or_insert_with(&trade.exchange, &trade.symbol, StreamIds::default)
        else {
            // Not reachable: the entry was just found or made. Passing keeps the trade.
            return true;
        };
        let new = stream.state.admit(&trade.trade_id, window);
        if !new {
            stream.state.duplicates += 1;
        }
        new
    }

    /// Keeps only first-seen trades in `trades`, in place and in order; returns how many were
    /// dropped.
    pub fn filter(&mut self, trades: &mut Vec<Trade>) -> usize {
        let before = trades.len();
        trades.retain(|t| self.admit(t));
        before - trades.len()
    }

    /// Duplicates dropped so far, per exchange, in order of first appearance.
    pub fn duplicates(&self) -> Vec<(Arc<str>, u64)> {
        let mut out: Vec<(Arc<str>, u64)> = Vec::new();
        for s in self.streams.iter() {
            match out.iter_mut().find(|(e, _)| *e == s.exchange) {
                Some((_, n)) => *n += s.state.duplicates,
                None => out.push((s.exchange.clone(), s.state.duplicates)),
            }
        }
        out
    }

    /// Duplicates dropped so far, all exchanges together.
    pub fn duplicates_total(&self) -> u64 {
        self.streams.iter().map(|s| s.state.duplicates).sum()
    }

    /// Marks `trade`'s key as seen, to seed the valve after a restart (from a durable cursor).
    /// Same as [`seed_id`](Valve::seed_id) with the trade's exchange, symbol and id.
    pub fn seed(&mut self, trade: &Trade) {
        self.seed_id(&trade.exchange, &trade.symbol, &trade.trade_id);
    }

    /// Marks an id as seen. A numeric id `n` is taken as a cursor: every id up to and including
    /// `n` is from then on treated as seen (the store says it has everything up to there). A
    /// non-numeric id is added to the window, like an admitted one. Seeding counts nothing.
    pub fn seed_id(&mut self, exchange: &Arc<str>, symbol: &Symbol, id: &TradeId) {
        let window = self.window;
        let Some(stream) = self
            .streams
            .get_or_insert_with(exchange, symbol, StreamIds::default)
        else {
            return;
        };
        let st = &mut stream.state;
        match IdKey::of(id) {
            IdKey::Num(n) => {
                st.raise_floor(n);
                st.high = Some(st.high.map_or(n, |h| h.max(n)));
            }
            key @ IdKey::Text(_) => {
                if !st.contains(&key) {
                    st.remember(key, window);
                }
            }
        }
    }

    /// Number of ids remembered across all streams; never more than streams × window.
    pub fn remembered(&self) -> usize {
        self.streams.iter().map(|s| s.state.ring.len()).sum()
    }

    /// Duplicates dropped so far per stream (exchange, symbol), for finer metrics.
    pub fn duplicates_by_stream(&self) -> HashMap<(Arc<str>, Symbol), u64> {
        self.streams
            .iter()
            .map(|s| ((s.exchange.clone(), s.symbol.clone()), s.state.duplicates))
            .collect()
    }
}

#[cfg(test)]
mod tests {
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
    fn numeric_ids_above_the_high_water_mark_pass_and_old_ones_never_pass_again() {
        let mut v = Valve::new(3);
        for id in 1..=100 {
            assert!(v.admit(&num(id)), "{id}");
        }
        assert_eq!(v.remembered(), 3);
        // Everything at or below the floor (97 left the window last) is a repeat, however old.
        for id in [1, 50, 97] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        // Still in the window.
        for id in [98, 99, 100] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        assert!(v.admit(&num(101)));
        assert_eq!(v.duplicates_total(), 6);
    }

    #[test]
    fn numeric_out_of_order_arrivals_inside_the_window_pass_once() {
        let mut v = Valve::new(4);
        for id in [10, 12, 11, 14, 13] {
            assert!(v.admit(&num(id)), "{id}");
        }
        for id in [10, 11, 12, 13, 14] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        // A gap between the floor and the high-water mark that was never seen: new.
        assert!(v.admit(&num(20)));
        assert!(v.admit(&num(16)));
        assert!(!v.admit(&num(16)));
    }

    #[test]
    fn numeric_ids_compare_by_value() {
        let mut v = Valve::new(4);
        assert!(v.admit(&trade("x", "BTC-USD", "7")));
        assert!(!v.admit(&trade("x", "BTC-USD", "007")));
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
    fn zero_window_keeps_only_the_high_water_mark() {
        let mut v = Valve::new(0);
        assert!(v.admit(&num(5)));
        assert!(!v.admit(&num(5)));
        assert!(!v.admit(&num(4)));
        assert!(v.admit(&num(6)));
        assert!(v.admit(&trade("x", "BTC-USD", "z")));
        assert!(v.admit(&trade("x", "BTC-USD", "z")));
        assert_eq!(v.remembered(), 0);
    }

    #[test]
    fn seeding_a_numeric_cursor_marks_everything_up_to_it_as_seen() {
        let mut v = Valve::new(16);
        v.seed(&num(1_000));
        for id in [1, 999, 1_000] {
            assert!(!v.admit(&num(id)), "{id}");
        }
        assert!(v.admit(&num(1_001)));
        v.seed_id(
            &Arc::from("x"),
            &Symbol::parse("BTC-USD").unwrap(),
            &TradeId::new("abc"),
        );
        assert!(!v.admit(&trade("x", "BTC-USD", "abc")));
        assert_eq!(v.duplicates_total(), 4);
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        let mut v = Valve::new(64);
        for id in 0..10_000u64 {
            v.admit(&num(id));
            v.admit(&trade("x", "ETH-USD", &format!("t{id}")));
            assert!(v.remembered() <= 2 * 64);
        }
        assert_eq!(v.remembered(), 128);
    }

    /// The rules of [`Valve`] written as plainly as possible: a list searched end to end.
    struct Reference {
        window: usize,
        ring: VecDeque<IdKey>,
        high: Option<u128>,
        floor: Option<u128>,
    }

    impl Reference {
        fn admit(&mut self, id: &TradeId) -> bool {
            let key = IdKey::of(id);
            if let IdKey::Num(n) = key {
                if self.high.is_some_and(|h| n <= h)
                    && (self.ring.contains(&key) || self.floor.is_some_and(|f| n <= f))
                {
                    return false;
                }
                self.high = Some(self.high.map_or(n, |h| h.max(n)));
            } else if self.ring.contains(&key) {
                return false;
            }
            if self.window == 0 {
                if let IdKey::Num(n) = key {
                    self.floor = Some(self.floor.map_or(n, |f| f.max(n)));
                }
                return true;
            }
            if self.ring.len() >= self.window {
                if let Some(IdKey::Num(n)) = self.ring.pop_front() {
                    self.floor = Some(self.floor.map_or(n, |f| f.max(n)));
                }
            }
            self.ring.push_back(key);
            true
        }
    }

    fn recount_breaks(ids: &StreamIds) -> usize {
        let mut prev = None;
        let mut n = 0;
        for k in &ids.ring {
            n += usize::from(StreamIds::is_break(prev, k));
            prev = Some(k);
        }
        n
    }

    proptest::proptest! {
        /// Mostly increasing numeric ids with repeats, late arrivals and text ids mixed in, so
        /// that each stream goes in and out of the sorted state: the decisions are those of the
        /// plain rules, and the count of breaks stays exact.
        #[test]
        fn sorted_lookup_decides_like_the_plain_rules(
            window in 0usize..12,
            steps in proptest::collection::vec((0u8..10, 0u64..6), 1..300),
        ) {
            let mut valve = Valve::new(window);
            let mut reference = Reference { window, ring: VecDeque::new(), high: None, floor: None };
            let mut next = 100u64;
            for (kind, delta) in steps {
                let id = match kind {
                    0..=5 => { next += delta; next.to_string() }
                    6 | 7 => next.saturating_sub(delta * 2).to_string(),
                    8 => format!("t{delta}"),
                    _ => format!("00{}", next.saturating_sub(delta)),
                };
                let t = trade("x", "BTC-USD", &id);
                proptest::prop_assert_eq!(valve.admit(&t), reference.admit(&t.trade_id), "id {}", id);
                let st = &valve.streams.iter().next().unwrap().state;
                proptest::prop_assert_eq!(st.breaks, recount_breaks(st));
                proptest::prop_assert!(st.breaks > 0 || st.set.is_empty());
                if st.breaks > 0 {
                    proptest::prop_assert_eq!(st.set.len(), st.ring.len());
                }
            }
        }
    }
}
