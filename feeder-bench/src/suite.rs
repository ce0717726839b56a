//! The whole benchmark: every venue with every writer, each scenario in a fresh process, and
//! one table at the end.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::process::ChildProc;
use crate::scenario::{self, ScenarioResult, Sink};
use crate::wire::Venue;

/// What to run.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Trades per throughput run.
    pub trades: u64,
    /// Offered rate of the latency runs, trades per second.
    pub rate: u64,
    /// Length of each latency run.
    pub latency_seconds: f64,
    /// Venues, in table order.
    pub venues: Vec<Venue>,
    /// Writers, in table order (the two bare clients are always run first for each venue).
    pub sinks: Vec<Sink>,
    /// Symbols per venue.
    pub symbols: usize,
    /// Events per writer batch; `None` keeps the writer default.
    pub batch_size: Option<usize>,
    /// Runs of each scenario; the table shows the median one (by trades/s for throughput, by
    /// p99 for latency).
    pub repeat: usize,
}

/// One line of the table.
struct Row {
    venue: Venue,
    sink: Sink,
    throughput: Result<ScenarioResult, String>,
    latency: Option<Result<ScenarioResult, String>>,
}

/// Runs every scenario and prints the table to stdout. Fails (after printing) when any
/// scenario failed.
pub fn run(opts: &SuiteOptions) -> anyhow::Result<()> {
    let registry = scenario::registry();
    let latency_trades = ((opts.rate as f64 * opts.latency_seconds) as u64).max(1);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for &venue in &opts.venues {
        if let Some(why) = scenario::unavailable(&registry, venue, Sink::Null) {
            skipped.push(format!("{venue}: {why}"));
            continue;
        }
        for bare in [Sink::Bare, Sink::BareSerde] {
            rows.push(Row {
                venue,
                sink: bare,
                throughput: median(opts.repeat, by_rate, || {
                    child(opts, venue, bare, opts.trades, 0)
                }),
                latency: None,
            });
        }
        for &sink in opts.sinks.iter().filter(|s| !s.is_bare()) {
            if let Some(why) = scenario::unavailable(&registry, venue, sink) {
                skipped.push(format!("{venue} / {}: {why}", sink.name()));
                continue;
            }
            let throughput = median(opts.repeat, by_rate, || {
                child(opts, venue, sink, opts.trades, 0)
            });
            let latency = median(opts.repeat, by_p99, || {
                child(opts, venue, sink, latency_trades, opts.rate)
            });
            rows.push(Row {
                venue,
                sink,
                throughput,
                latency: Some(latency),
            });
        }
    }
    print_table(opts, latency_trades, &rows, &skipped)?;
    let failed = rows
        .iter()
        .filter(|r| r.throughput.is_err() || matches!(r.latency, Some(Err(_))))
        .count();
    if failed > 0 {
        bail!("{failed} scenario(s) failed");
    }
    if rows.is_empty() {
        bail!("nothing to run");
    }
    Ok(())
}

/// Runs a scenario `times` times and keeps the median run by `key`; the first failure, if any.
fn median(
    times: usize,
    key: fn(&ScenarioResult) -> f64,
    mut run: impl FnMut() -> Result<ScenarioResult, String>,
) -> Result<ScenarioResult, String> {
    let mut results = Vec::with_capacity(times.max(1));
    for _ in 0..times.max(1) {
        results.push(run()?);
    }
    results.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Ok(results.swap_remove(results.len() / 2))
}

fn by_rate(r: &ScenarioResult) -> f64 {
    r.rate()
}

fn by_p99(r: &ScenarioResult) -> f64 {
    r.latency_us.map_or(0.0, |(_, p99, _)| p99)
}

/// Runs one scenario in a fresh process and reads its result line.
fn child(
    opts: &SuiteOptions,
    venue: Venue,
    sink: Sink,
    trades: u64,
    rate: u64,
) -> Result<ScenarioResult, String> {
    let label = format!(
        "{venue} / {} / {trades} trades{}",
        sink.name(),
        if rate > 0 {
            format!(" at {rate}/s")
        } else {
            String::new()
        }
    );
    eprintln!("running {label}");
    let run = || -> anyhow::Result<ScenarioResult> {
        let mut args = vec![
            "scenario".to_owned(),
            format!("--venue={venue}"),
            format!("--writer={}", sink.name()),
            format!("--trades={trades}"),
            format!("--rate={rate}"),
            format!("--symbols={}", opts.symbols),
        ];
        if let Some(n) = opts.batch_size {
            args.push(format!("--batch-size={n}"));
        }
        let expected = if rate > 0 {
            trades as f64 / rate as f64
        } else {
            trades as f64 / 10_000.0
        };
        // Beyond the scenario's own deadline, so that it reports its failure itself.
        let timeout = Duration::from_secs_f64(150.0 + 3.0 * expected);
        let mut p = ChildProc::spawn("scenario", &args)?;
        let line = p.expect_line("RESULT ", timeout)?;
        let result: ScenarioResult =
            serde_json::from_str(&line).context("reading the scenario's result")?;
        p.wait(Duration::from_secs(10))?;
        Ok(result)
    };
    let result = run().map_err(|e| format!("{e:#}"));
    match &result {
        Ok(r) => eprintln!(
            "  {:.0} trades/s, {:.2} CPU s, peak {:.0} MiB{}",
            r.rate(),
            r.cpu_seconds,
            r.peak_rss_kib as f64 / 1024.0,
            if r.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.notes.join(", "))
            }
        ),
        Err(e) => eprintln!("  FAILED: {e}"),
    }
    result
}

fn print_table(
    opts: &SuiteOptions,
    latency_trades: u64,
    rows: &[Row],
    skipped: &[String],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nthroughput: {} trades per run, {} symbol(s); latency: {} trades offered at {}/s (frame read -> write acknowledged); writer batch size {}; median of {} run(s) each",
        opts.trades,
        opts.symbols,
        latency_trades,
        opts.rate,
        opts.batch_size
            .map_or_else(|| "default (1000, written as soon as the queue is empty)".to_owned(), |n| n.to_string()),
        opts.repeat
    )?;
    let header = format!(
        "{:<9} {:<10} {:>11} {:>8} {:>8} {:>11} {:>9} {:>9} {:>10} {:>9}",
        "venue",
        "writer",
        "trades/s",
        "% bare",
        "x serde",
        "CPU s/1M",
        "p50 µs",
        "p99 µs",
        "max µs",
        "RSS MiB"
    );
    writeln!(out, "{header}")?;
    writeln!(out, "{}", "-".repeat(header.chars().count()))?;
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for r in rows {
        let rate_of = |sink: Sink| {
            rows.iter()
                .find(|b| b.venue == r.venue && b.sink == sink)
                .and_then(|b| b.throughput.as_ref().ok())
                .map(ScenarioResult::rate)
        };
        let bare = rate_of(Sink::Bare);
        let serde = rate_of(Sink::BareSerde);
        let writer = match r.sink {
            Sink::Bare => "bare I/O".to_owned(),
            Sink::BareSerde => "bare serde".to_owned(),
            other => other.name().to_owned(),
        };
        let t = match &r.throughput {
            Ok(t) => t,
            Err(e) => {
                writeln!(
                    out,
                    "{:<9} {:<10} FAILED (see below)",
                    r.venue.name(),
                    writer
                )?;
                failures.push(format!("{} / {}: {e}", r.venue, r.sink.name()));
                continue;
            }
        };
        let pct = match bare {
            Some(b) if b > 0.0 => format!("{:.0}%", 100.0 * t.rate() / b),
            _ => "-".to_owned(),
        };
        let ratio = match serde {
            Some(b) if b > 0.0 => format!("{:.2}", t.rate() / b),
            _ => "-".to_owned(),
        };
        let cpu = if t.trades > 0 {
            format!("{:.2}", t.cpu_seconds * 1e6 / t.trades as f64)
        } else {
            "-".to_owned()
        };
        let mut peak = t.peak_rss_kib;
        let lat = match &r.latency {
            None => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
            Some(Err(e)) => {
                failures.push(format!("{} / {} latency: {e}", r.venue, r.sink.name()));
                ["FAIL".to_owned(), "FAIL".to_owned(), "FAIL".to_owned()]
            }
            Some(Ok(l)) => {
                peak = peak.max(l.peak_rss_kib);
                let achieved = l.rate();
                if achieved < 0.95 * opts.rate as f64 {
                    notes.push(format!(
                        "{} / {}: the latency run reached only {achieved:.0} of {} trades/s offered",
                        r.venue,
                        r.sink.name(),
                        opts.rate
                    ));
                }
                match l.latency_us {
                    Some((p50, p99, max)) => [
                        format!("{p50:.0}"),
                        format!("{p99:.0}"),
                        format!("{max:.0}"),
                    ],
                    None => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
                }
            }
        };
        for n in t
            .notes
            .iter()
            .chain(r.latency.iter().flatten().flat_map(|l| l.notes.iter()))
        {
            notes.push(format!("{} / {}: {n}", r.venue, r.sink.name()));
        }
        writeln!(
            out,
            "{:<9} {:<10} {:>11.0} {:>8} {:>8} {:>11} {:>9} {:>9} {:>10} {:>9.1}",
            r.venue.name(),
            writer,
            t.rate(),
            pct,
            ratio,
            cpu,
            lat[0],
            lat[1],
            lat[2],
            peak as f64 / 1024.0
        )?;
    }
    for s in skipped {
        writeln!(out, "skipped: {s}")?;
    }
    for n in &notes {
        writeln!(out, "note: {n}")?;
    }
    for f in &failures {
        writeln!(out, "FAILED: {f}")?;
    }
    Ok(())
}
