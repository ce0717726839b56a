//! What a trade must be to enter the pipeline: the bound on id jumps and the id check's state.

use crate::model::Timestamp;

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

    const NOW: i64 = 1_700_000_000;

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
}
