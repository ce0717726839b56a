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
    /// Holes recorded as `gap` events: trades the venue published that may be missing.
    pub gaps: u64,
    /// Messages of a shape the venue's parser does not know.
    pub unrecognized: u64,
    /// Trades read but dropped because the pipeline stayed full after shutdown began.
    pub dropped: u64,
    /// WebSocket connections opened and REST requests answered: 0 means the exchange was
    /// never reached.
    pub contacts: u64,
    /// Times a stream was found delivering nothing but trades already stored for over a
    /// minute (a venue that restarted its ids, or replays).
    pub repeat_only: u64,
    /// The latest connection-level failure, with its causes: why an exchange that was never
    /// reached was not.
    pub last_error: Option<String>,
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
    /// Events the store refused one by one (a value it cannot hold) while it stored the rest
    /// of their batch.
    pub rejected: u64,
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
    /// Why the run ended before it started, naming the writer at fault (a writer that could
    /// not say where its store left off).
    pub failures: Vec<String>,
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
                gaps: get(&s.gaps),
                unrecognized: get(&s.unrecognized),
                dropped: get(&s.dropped),
                contacts: get(&s.contacts),
                repeat_only: counts.repeat_only,
                last_error: s.last_error(),
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
                rejected: get(&s.rejected),
                already_stored: get(&s.already_stored),
                spilled: get(&s.spilled),
            });
        }
        out
    }

    /// Events the writers did not store: dropped (a full queue under `drop`, a batch
    /// refused whole, the shutdown deadline) or rejected by their store one by one. An event
    /// lost by two writers counts twice.
    pub fn lost(&self) -> u64 {
        let writers: u64 = self.writers.iter().map(|w| w.dropped + w.rejected).sum();
        writers + self.exchanges.iter().map(|e| e.dropped).sum::<u64>()
    }

    /// The exchanges that were never reached: no connection opened, no request answered, no
    /// trade delivered. (The bundled drivers count contacts; an exchange of another crate that
    /// delivered trades is taken as reached.)
    pub fn never_connected(&self) -> Vec<&str> {
        self.exchanges
            .iter()
            .filter(|e| e.contacts == 0 && e.trades == 0)
            .map(|e| e.name.as_str())
            .collect()
    }

    /// The error that ends a run whose exchanges were never reached, naming each with its
    /// latest failure (each cause once); `None` when every exchange was reached.
    ///
    /// `these exchanges were never reached (no connection opened, no request answered):
    /// coinbase (websocket connection failed: IO error: ...)`
    pub fn never_connected_error(&self) -> Option<String> {
        let never: Vec<String> = self
            .exchanges
            .iter()
            .filter(|e| e.contacts == 0 && e.trades == 0)
            .map(|e| match &e.last_error {
                Some(why) => format!("{} ({why})", e.name),
                None => format!("{} (no error seen)", e.name),
            })
            .collect();
        (!never.is_empty()).then(|| {
            format!(
                "these exchanges were never reached (no connection opened, no request answered): {}",
                never.join("; ")
            )
        })
    }

    /// What the data itself records as not exact, one line each: holes (`gap` events),
    /// trades turned away as impossible or hostile, and messages not understood. None of it
    /// is lost silently, but a run with any of it is not clean.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.exchanges {
            for (n, what) in [
                (e.gaps, "gaps recorded (trades that may be missing)"),
                (e.rejected, "trades rejected as impossible"),
                (e.quarantined, "trades quarantined (ids far out of line)"),
                (e.conflicts, "repeats with other content"),
                (e.unrecognized, "messages not understood"),
                (
                    e.repeat_only,
                    "warnings that a stream sent only trades already stored for over a minute",
                ),
            ] {
                if n > 0 {
                    out.push(format!("{}: {n} {what}", e.name));
                }
            }
        }
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

    /// True when a writer dropped or rejected any event: the run lost data, and a program
    /// should end with a failure status.
    pub fn lost_anything(&self) -> bool {
        self.lost() > 0
    }

    /// True when the run started, every exchange was reached, nothing was lost (see
    /// [`lost_anything`](Self::lost_anything)), every task finished in time and the data
    /// records no exception (see [`warnings`](Self::warnings)).
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
            && self.stragglers.is_empty()
            && !self.lost_anything()
            && self.never_connected().is_empty()
            && self.warnings().is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.exchanges {
            writeln!(
                f,
                "exchange {:<12} trades={} duplicates={} conflicts={} rejected={} quarantined={} unverified={} parse_errors={} unrecognized={} errors={} reconnects={} backfilled={} gaps={} dropped={} restarts={}",
                e.name, e.trades, e.duplicates, e.conflicts, e.rejected, e.quarantined, e.unverified, e.parse_errors, e.unrecognized, e.errors, e.reconnects, e.backfilled, e.gaps, e.dropped, e.restarts
            )?;
        }
        for failure in &self.failures {
            writeln!(f, "failed   {failure}")?;
        }
        for w in &self.writers {
            writeln!(
                f,
                "writer   {:<12} events={} batches={} errors={} retries={} dropped={} rejected={} already_stored={} spilled={}",
                w.name, w.events, w.batches, w.errors, w.retries, w.dropped, w.rejected, w.already_stored, w.spilled
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
    fn never_connected_error_names_each_exchange_with_its_last_error() {
        let reached = ExchangeSummary {
            name: "kraken".into(),
            contacts: 3,
            last_error: Some("connection stale".into()),
            ..ExchangeSummary::default()
        };
        let mut s = Summary {
            exchanges: vec![reached],
            ..Summary::default()
        };
        assert_eq!(s.never_connected_error(), None);
        s.exchanges.push(ExchangeSummary {
            name: "coinbase".into(),
            last_error: Some("websocket connection failed: IO error: refused".into()),
            ..ExchangeSummary::default()
        });
        s.exchanges.push(ExchangeSummary {
            name: "okx".into(),
            ..ExchangeSummary::default()
        });
        let line = s.never_connected_error().unwrap();
        assert!(
            line.ends_with(
                ": coinbase (websocket connection failed: IO error: refused); okx (no error seen)"
            ),
            "{line}"
        );
        assert!(!line.contains("kraken"), "{line}");
        assert_eq!(s.never_connected(), ["coinbase", "okx"]);
    }

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
        assert!(!s.lost_anything(), "nothing was lost");
        assert!(!s.is_clean(), "but the candles say they are not exact");
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
