//! The memory check: many streams at a modest rate for minutes, sampling resident memory, so
//! that "memory stays flat" can be read off the samples.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use feeder_core::feeder::Feeder;
use tokio_util::sync::CancellationToken;

use crate::probe::{Counting, Progress};
use crate::process;
use crate::scenario::{self, Sink};
use crate::wire::Venue;

/// What to run.
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// The venue format of the one server.
    pub venue: Venue,
    /// Symbols (streams) on the server, round-robin.
    pub streams: usize,
    /// How long to run.
    pub seconds: u64,
    /// Trades per second over all streams.
    pub rate: u64,
    /// The writer.
    pub sink: Sink,
    /// Seconds between samples.
    pub sample_every: u64,
}

/// One sample.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    trades: u64,
    cpu_seconds: f64,
}

/// Runs the check and prints the samples and a summary to stdout.
pub async fn run(opts: &MemoryOptions) -> anyhow::Result<()> {
    if opts.sink.is_bare() {
        bail!("the memory check runs the pipeline: pick a writer (null, jsonl, ...)");
    }
    let registry = scenario::registry();
    if let Some(why) = scenario::unavailable(&registry, opts.venue, opts.sink) {
        bail!("cannot run: {why}");
    }
    // More trades than the run can take, so the server never runs dry.
    let trades = opts.rate.max(1) * (opts.seconds + 60);
    let (server, url) = scenario::start_server(opts.venue, trades, opts.rate.max(1), opts.streams)?;
    let dir = tempfile::Builder::new()
        .prefix("feeder-bench-memory-")
        .tempdir()
        .context("creating a temporary directory")?;
    let (writer, settings) = scenario::open_writer(&registry, opts.sink, dir.path(), None).await?;
    let progress = Progress::new(0, false)?;
    let symbols = opts.venue.symbols(opts.streams)?;
    let exchange = registry
        .exchange(opts.venue.name())
        .context("venue not registered")?
        .build(&scenario::exchange_config(opts.venue, symbols.clone(), url))?;
    let feeder = Feeder::builder()
        .exchange(exchange, symbols)
        .writer(Box::new(Counting::new(writer, progress.clone())), settings)
        .pipeline(scenario::pipeline_config())
        .shutdown_timeout(Duration::from_secs(30))
        .build();

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "memory check: {} x {} streams, {} trades/s in all, {} writer, {} s, a sample every {} s",
        opts.venue,
        opts.streams,
        opts.rate,
        opts.sink.name(),
        opts.seconds,
        opts.sample_every
    )?;
    writeln!(
        out,
        "{:>8} {:>10} {:>12} {:>8}",
        "t (s)", "RSS MiB", "trades", "CPU %"
    )?;

    let shutdown = CancellationToken::new();
    let mut run = tokio::spawn(feeder.run(shutdown.clone()));
    let start = Instant::now();
    let every = Duration::from_secs(opts.sample_every.max(1));
    let total = Duration::from_secs(opts.seconds);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = every;
    while next <= total {
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + next)).await;
        if run.is_finished() {
            break;
        }
        let s = Sample {
            at: start.elapsed(),
            rss_kib: process::rss_kib()?,
            trades: progress.trades(),
            cpu_seconds: process::cpu_seconds()?,
        };
        let cpu_pct = match samples.last() {
            Some(p) => 100.0 * (s.cpu_seconds - p.cpu_seconds) / (s.at - p.at).as_secs_f64(),
            None => 100.0 * s.cpu_seconds / s.at.as_secs_f64(),
        };
        writeln!(
            out,
            "{:>8.0} {:>10.1} {:>12} {:>8.1}",
            s.at.as_secs_f64(),
            mib(s.rss_kib),
            s.trades,
            cpu_pct
        )?;
        out.flush()?;
        samples.push(s);
        next += every;
    }
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(40), &mut run)
        .await
        .context("the feeder did not shut down within 40 s")??;
    drop(server);

    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("the feeder stopped before the first sample");
    };
    let max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let rate = (last.trades - first.trades) as f64 / (last.at - first.at).as_secs_f64().max(1e-9);
    writeln!(
        out,
        "RSS MiB: first {:.1}, last {:.1}, max {:.1}, last - first {:+.1}; {:.0} trades/s acknowledged; peak (VmHWM) {:.1}",
        mib(first.rss_kib),
        mib(last.rss_kib),
        mib(max),
        mib(last.rss_kib) - mib(first.rss_kib),
        rate,
        mib(process::peak_rss_kib()?)
    )?;
    let problems: u64 = summary
        .exchanges
        .iter()
        .map(|e| e.parse_errors + e.errors + e.duplicates)
        .sum();
    writeln!(
        out,
        "trades acknowledged {}, candles {}, parse/connection errors and duplicates {problems}",
        progress.trades(),
        progress.candles()
    )?;
    if progress.trades() == 0 {
        bail!("no trade was acknowledged");
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
