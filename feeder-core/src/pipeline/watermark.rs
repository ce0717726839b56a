//! How far one stream is known complete: the time its candles close by.

use crate::exchange::Completeness;

/// The completeness watermark of one stream: every trade of the stream up to this time is
/// taken to have arrived. Pure: times are passed in, in nanoseconds since the epoch; `now` is
/// the wall clock when the call is made.
///
/// - It never goes back.
/// - A trade takes it to at least the trade's time, whatever the stream's state: drivers
///   deliver each stream's trades in order (a backfill walks forward from the cursor).
/// - While the stream is [`Live`](Completeness::Live), it also runs on with the wall clock:
///   the newest trade taken in while live, plus the wall time elapsed since it was taken in.
///   The venue's clock runs on at the wall clock's pace between trades, so a quiet live
///   market still closes its candles on time, and a replay of old trades at full speed closes
///   them by its own times, never by today's date.
/// - Running on starts only from a trade taken in while live, and stops at any
///   [`Behind`](Completeness::Behind) or [`UpTo`](Completeness::UpTo). After a hole the
///   stream waits for its first live trade: a reconnect without backfill reports its hole
///   with that trade, so candles in the hole stay open until they can be marked.
/// - [`UpTo(t)`](Completeness::UpTo) takes it to at least `t`, and otherwise is `Behind`.
/// - A stream that never said anything is live.
///
/// A stream said to be live that has in fact stopped (a hung connection not yet noticed)
/// runs on until the driver says it is behind; the driver's stale timeout bounds that.
#[derive(Clone, Debug)]
pub(crate) struct Watermark {
    /// The greatest value observed so far; `None` until a trade or an `UpTo`.
    mark: Option<i64>,
    /// Whether the stream last said it was live (or said nothing yet).
    live: bool,
    /// Where running on starts: the newest trade taken in since the stream last turned
    /// live, and the wall time it was taken in. Cleared whenever the stream is not live.
    anchor: Option<(i64, i64)>,
}

impl Default for Watermark {
    fn default() -> Self {
        Self {
            mark: None,
            live: true,
            anchor: None,
        }
    }
}

impl Watermark {
    /// Where it stands at wall time `now`, without recording it.
    pub(crate) fn at(&self, now: i64) -> Option<i64> {
        let running = self
            .anchor
            .map(|(ts, at)| ts.saturating_add(now.saturating_sub(at).max(0)));
        match (self.mark, running) {
            (Some(m), Some(r)) => Some(m.max(r)),
            (m, r) => m.or(r),
        }
    }

    /// Where it stands at `now`, recorded so that it never goes back from there.
    pub(crate) fn advance(&mut self, now: i64) -> Option<i64> {
        self.mark = self.at(now);
        self.mark
    }

    /// A trade with time `ts` was taken in at `now`.
    pub(crate) fn on_trade(&mut self, ts: i64, now: i64) {
        self.mark = Some(self.at(now).map_or(ts, |m| m.max(ts)));
        if self.live && self.anchor.is_none_or(|(newest, _)| ts >= newest) {
            self.anchor = Some((ts, now));
        }
    }

    /// The stream says how far it is complete.
    pub(crate) fn set(&mut self, completeness: Completeness) {
        match completeness {
            Completeness::Live => self.live = true,
            Completeness::Behind => {
                self.live = false;
                self.anchor = None;
            }
            Completeness::UpTo(t) => {
                let t = t.unix_nanos();
                self.mark = Some(self.mark.map_or(t, |m| m.max(t)));
                self.live = false;
                self.anchor = None;
            }
        }
    }

    /// Known complete up to `t` (if that is further), whatever the stream's state.
    pub(crate) fn raise(&mut self, t: i64) {
        self.mark = Some(self.mark.map_or(t, |m| m.max(t)));
    }

    /// The wall time at which it reaches `t`: `Some(i64::MIN)` when it already has, `None`
    /// when it does not run on (behind, or live without a live trade yet).
    pub(crate) fn reaches(&self, t: i64) -> Option<i64> {
        if self.mark.is_some_and(|m| m >= t) {
            return Some(i64::MIN);
        }
        self.anchor
            .map(|(ts, at)| at.saturating_add(t.saturating_sub(ts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    const S: i64 = 1_000_000_000;
    /// 2021-03-01T00:00:00Z, in seconds.
    const T2021: i64 = 1_614_556_800;
    /// 2024-01-02T10:00:00Z, in seconds: the wall clock, years after the trades.
    const W2024: i64 = 1_704_189_600;

    fn trade(wm: &mut Watermark, ts_secs: i64, now_secs: i64) {
        wm.on_trade(ts_secs * S, now_secs * S);
    }

    #[test]
    fn nothing_is_known_before_a_trade() {
        let mut wm = Watermark::default();
        assert_eq!(wm.at(W2024 * S), None);
        assert_eq!(wm.advance(W2024 * S), None);
        assert_eq!(wm.reaches(0), None);
    }

    #[test]
    fn live_it_runs_on_from_the_newest_trade_at_the_wall_clocks_pace() {
        let mut wm = Watermark::default();
        trade(&mut wm, T2021, W2024);
        assert_eq!(wm.at(W2024 * S), Some(T2021 * S));
        assert_eq!(wm.at((W2024 + 90) * S), Some((T2021 + 90) * S));
        // Years between the trade time and the wall clock do not count; only the elapsed.
        assert_eq!(wm.reaches((T2021 + 65) * S), Some((W2024 + 65) * S));
        // A newer trade moves the start.
        trade(&mut wm, T2021 + 500, W2024 + 10);
        assert_eq!(wm.at((W2024 + 10) * S), Some((T2021 + 500) * S));
        assert_eq!(wm.at((W2024 + 12) * S), Some((T2021 + 502) * S));
    }

    #[test]
    fn it_never_goes_back() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 0);
        assert_eq!(wm.advance(300 * S), Some(1_300 * S));
        // A trade older than where it ran to (a venue a little behind the wall clock).
        trade(&mut wm, 1_100, 300);
        assert_eq!(wm.at(300 * S), Some(1_300 * S));
        assert_eq!(wm.at(310 * S), Some(1_300 * S));
        assert_eq!(wm.at(600 * S), Some(1_400 * S));
        // Behind keeps what was reached.
        wm.set(Completeness::Behind);
        assert_eq!(wm.at(10_000 * S), Some(1_300 * S));
    }

    #[test]
    fn behind_it_is_frozen_at_the_newest_trade_and_trades_in_order_move_it() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 0);
        wm.set(Completeness::Behind);
        assert_eq!(
            wm.at(1_000_000 * S),
            Some(1_000 * S),
            "the wall clock is not used"
        );
        assert_eq!(wm.reaches(1_001 * S), None);
        trade(&mut wm, 1_200, 5);
        trade(&mut wm, 1_250, 5);
        assert_eq!(wm.at(1_000_000 * S), Some(1_250 * S));
        assert_eq!(wm.reaches(1_251 * S), None);
    }

    #[test]
    fn up_to_raises_it_and_otherwise_is_behind() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 0);
        wm.set(Completeness::UpTo(Timestamp::from_unix_secs(1_500)));
        assert_eq!(wm.at(1_000_000 * S), Some(1_500 * S));
        // Never lowers it.
        wm.set(Completeness::UpTo(Timestamp::from_unix_secs(1_200)));
        assert_eq!(wm.at(0), Some(1_500 * S));
        trade(&mut wm, 1_600, 10);
        assert_eq!(wm.at(1_000_000 * S), Some(1_600 * S), "no running on");
        assert_eq!(wm.reaches(2_000 * S), None);
        assert_eq!(wm.reaches(1_550 * S), Some(i64::MIN), "already there");

        // Before any trade.
        let mut wm = Watermark::default();
        wm.set(Completeness::UpTo(Timestamp::from_unix_secs(7)));
        assert_eq!(wm.at(0), Some(7 * S));
    }

    #[test]
    fn live_again_runs_on_only_from_the_next_trade() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 0);
        wm.set(Completeness::Behind);
        // Backfilled trades, in order, while behind.
        trade(&mut wm, 1_100, 50);
        wm.set(Completeness::Live);
        assert_eq!(wm.at(5_000 * S), Some(1_100 * S), "waits for a live trade");
        assert_eq!(wm.reaches(1_200 * S), None);
        trade(&mut wm, 1_150, 60);
        assert_eq!(wm.at(70 * S), Some(1_160 * S));
    }

    #[test]
    fn live_said_again_while_live_keeps_running_on() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 0);
        wm.set(Completeness::Live);
        assert_eq!(wm.at(30 * S), Some(1_030 * S));
    }

    #[test]
    fn a_wall_clock_that_goes_back_does_not_move_it_back() {
        let mut wm = Watermark::default();
        trade(&mut wm, 1_000, 100);
        assert_eq!(wm.at(50 * S), Some(1_000 * S));
    }
}
