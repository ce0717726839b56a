//! What a run did, returned by [`Feeder::run`](super::Feeder::run).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::exchange::ExchangeStats;
use crate::pipeline::ValveCounts;
use crate::writer::WriterStats;

/// Counters of one exchange over the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeSummary {
    /// Registry name.
    pub name: String,
    /// Trades sent into the pipeline (before dedup; not counting those rejected or
    /// quarantined on the way in).
    pub trades: u64,
    /// Duplicates the valve dropped.
    pub duplicates: u64,
    /// Repeats of an id with another price or amount, dropped by the valve (the first copy
    /// was kept).
    pub conflicts: u64,
    /// Trades rejected before the pipeline: a price or amount that is not positive, or a
    /// time too far from the receive time.
    pub rejected: u64,
    /// Trades whose id was far above their stream's, quarantined on the way in or by the
    /// valve.
    pub quarantined: u64,
    /// Trades the valve passed although it could not tell whether it had seen them: older
    /// than the ranges of ids it remembers.
    pub unverified: u64,
    /// Messages that could not be parsed.
    pub parse_errors: u64,
    /// Connection and request failures.
    pub errors: u64,
    /// WebSocket reconnects.
    pub reconnects: u64,
    /// Trades recovered over REST after a gap.
    pub backfilled: u64,
    /// Restarts by the supervisor.
    pub restarts: u64,
}

/// Counters of one writer over the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriterSummary {
    /// Writer name.
    pub name: String,
    /// Events stored.
    pub events: u64,
    /// Batches stored.
    pub batches: u64,
    /// Failed calls.
    pub errors: u64,
    /// Retries of failed batches.
    pub retries: u64,
    /// Events given up on (full queue under `drop`, terminal errors, shutdown deadline).
    pub dropped: u64,
    /// Trades skipped because the store already held them at start-up.
    pub already_stored: u64,
    /// Events that waited in the spill file while the queue was full.
    pub spilled: u64,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Per exchange.
    pub exchanges: Vec<ExchangeSummary>,
    /// Per writer.
    pub writers: Vec<WriterSummary>,
    /// Candles emitted (revisions included).
    pub candles: u64,
    /// Of those, the ones emitted with `complete: false`: a recorded gap overlaps them, or
    /// they began before the point their stream resumed from.
    pub incomplete_candles: u64,
    /// Trades that arrived after their candle was emitted.
    pub late_trades: u64,
    /// Tasks still running at the shutdown deadline, abandoned.
    pub stragglers: Vec<String>,
}

impl Summary {
    pub(crate) fn collect<'a>(
        exchanges: impl Iterator<Item = (&'a str, &'a ExchangeStats)>,
        writers: impl Iterator<Item = (&'a str, &'a WriterStats)>,
        valve: Vec<(Arc<str>, ValveCounts)>,
        candles: u64,
        incomplete_candles: u64,
        late_trades: u64,
        stragglers: Vec<String>,
    ) -> Summary {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Summary {
            candles,
            incomplete_candles,
            late_trades,
            stragglers,
            ..Summary::default()
        };
        for (name, s) in exchanges {
            // The valve counts by venue name, and the same venue may be configured twice: its
            // counts go to the first entry.
            let counts = if out.exchanges.iter().any(|e| e.name == name) {
                ValveCounts::default()
            } else {
                valve
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, c)| *c)
                    .unwrap_or_default()
            };
            out.exchanges.push(ExchangeSummary {
                name: name.to_owned(),
                trades: get(&s.trades),
                duplicates: counts.duplicates,
                conflicts: counts.conflicts,
                rejected: get(&s.rejected),
                quarantined: get(&s.quarantined) + counts.quarantined,
                unverified: counts.unverified,
                parse_errors: get(&s.parse_errors),
                errors: get(&s.errors),
                reconnects: get(&s.reconnects),
                backfilled: get(&s.backfilled),
                restarts: get(&s.restarts),
            });
        }
        for (name, s) in writers {
            out.writers.push(WriterSummary {
                name: name.to_owned(),
                events: get(&s.events),
                batches: get(&s.batches),
                errors: get(&s.errors),
                retries: get(&s.retries),
                dropped: get(&s.dropped),
                already_stored: get(&s.already_stored),
                spilled: get(&s.spilled),
            });
        }
        out
    }

    /// True when nothing was dropped and every task finished in time. Says nothing of the
    /// candles: see [`warnings`](Summary::warnings).
    pub fn is_clean(&self) -> bool {
        self.stragglers.is_empty() && self.writers.iter().all(|w| w.dropped == 0)
    }

    /// What the run stored that is worth a warning although nothing was lost: candles
    /// emitted incomplete, and trades that came after their candle was emitted (dropped from
    /// it, or sent as a revision). Empty when every candle equals its trades.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.incomplete_candles > 0 {
            out.push(format!(
                "{} candles were emitted incomplete (a gap or a restart cut their interval)",
                self.incomplete_candles
            ));
        }
        if self.late_trades > 0 {
            out.push(format!(
                "{} trades arrived after their candle was emitted",
                self.late_trades
            ));
        }
        out
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.exchanges {
            writeln!(
                f,
                "exchange {:<12} trades={} duplicates={} conflicts={} rejected={} quarantined={} unverified={} parse_errors={} errors={} reconnects={} backfilled={} restarts={}",
                e.name, e.trades, e.duplicates, e.conflicts, e.rejected, e.quarantined, e.unverified, e.parse_errors, e.errors, e.reconnects, e.backfilled, e.restarts
            )?;
        }
        for w in &self.writers {
            writeln!(
                f,
                "writer   {:<12} events={} batches={} errors={} retries={} dropped={} already_stored={} spilled={}",
                w.name, w.events, w.batches, w.errors, w.retries, w.dropped, w.already_stored, w.spilled
            )?;
        }
        write!(
            f,
            "candles={} incomplete_candles={} late_trades={}",
            self.candles, self.incomplete_candles, self.late_trades
        )?;
        if !self.stragglers.is_empty() {
            write!(f, " stragglers={}", self.stragglers.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_candles_and_late_trades_are_warnings_not_failures() {
        let mut s = Summary {
            candles: 10,
            ..Summary::default()
        };
        assert!(s.is_clean());
        assert!(s.warnings().is_empty());
        s.incomplete_candles = 2;
        s.late_trades = 3;
        assert!(s.is_clean(), "nothing was lost");
        let w = s.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("2 candles"), "{w:?}");
        assert!(w[1].starts_with("3 trades"), "{w:?}");
        assert_eq!(
            s.to_string(),
            "candles=10 incomplete_candles=2 late_trades=3"
        );
    }
}
