//! What raw capture costs the live path, and how fast a capture replays.
//!
//! One loopback venue server per run blasts the same trades; the feeder side is the real
//! venue driver, valve, candles and a writer that keeps nothing, first without capture, then
//! with a zstd capture of every frame. The capture so made is then replayed through the same
//! venue parser and pipeline at full speed. Throughput and CPU time (user + system, of this
//! process: the capture's writer thread included) are printed for each run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use feeder_core::config::{CaptureCompression, CaptureConfig};
use feeder_core::exchange::capture::{capture_files, Reader};
use feeder_core::exchange::{Exchange, ReplaySource};
use feeder_core::feeder::Feeder;
use feeder_core::writer::{RunnerSettings, Writer};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::probe::{Counting, NullWriter, Progress};
use crate::process;
use crate::scenario::{exchange_config, pipeline_config, registry, start_server};
use crate::wire::Venue;

/// Options of `feeder-bench capture`.
#[derive(Clone, Debug, clap::Args)]
pub struct CaptureArgs {
    /// The venue served and parsed (coinbase, bitstamp, binance).
    #[arg(long, default_value = "coinbase")]
    pub venue: String,
    /// Trades per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub trades: u64,
    /// Runs of each mode; the median run is printed.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// A smoke run with few trades, for CI.
    #[arg(long)]
    pub quick: bool,
}

/// One measured run.
#[derive(Clone, Copy, Debug)]
struct Measured {
    trades: u64,
    seconds: f64,
    cpu_seconds: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.trades as f64 / self.seconds.max(1e-9)
    }

    fn cpu_micros_per_trade(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.trades.max(1) as f64
    }
}

/// Runs the benchmark and prints its table.
pub fn main(args: CaptureArgs) -> anyhow::Result<()> {
    let venue = Venue::parse(&args.venue)?;
    let trades = if args.quick {
        args.trades.min(20_000)
    } else {
        args.trades
    };
    let repeat = if args.quick { 1 } else { args.repeat.max(1) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut replayed = Vec::new();
    let mut sizes = (0u64, 0u64);
    for _ in 0..repeat {
        off.push(rt.block_on(live(venue, trades, None))?);
        let dir = tempfile::Builder::new()
            .prefix("feeder-bench-capture-")
            .tempdir()
            .context("creating a temporary directory")?;
        on.push(rt.block_on(live(venue, trades, Some(dir.path())))?);
        sizes = capture_size(dir.path(), venue)?;
        replayed.push(rt.block_on(replay(venue, trades, dir.path()))?);
    }
    let median = |mut v: Vec<Measured>| {
        v.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        v[v.len() / 2]
    };
    let (off, on, replayed) = (median(off), median(on), median(replayed));
    let mut out = String::new();
    out.push_str(&format!(
        "capture and replay: {venue}, {trades} trades, null writer, median of {repeat}\n"
    ));
    out.push_str(&format!(
        "{:<22} {:>12} {:>10} {:>14}\n",
        "run", "trades/s", "cpu s", "cpu µs/trade"
    ));
    for (name, m) in [
        ("live, no capture", off),
        ("live, capture zstd", on),
        ("replay, max speed", replayed),
    ] {
        out.push_str(&format!(
            "{name:<22} {:>12.0} {:>10.2} {:>14.2}\n",
            m.rate(),
            m.cpu_seconds,
            m.cpu_micros_per_trade()
        ));
    }
    out.push_str(&format!(
        "capture: throughput {:+.1}%, cpu {:+.1}%; {} records, {} bytes on disk ({:.1} bytes/trade)\n",
        (on.rate() / off.rate() - 1.0) * 100.0,
        (on.cpu_seconds / off.cpu_seconds.max(1e-9) - 1.0) * 100.0,
        sizes.0,
        sizes.1,
        sizes.1 as f64 / trades.max(1) as f64,
    ));
    use std::io::Write as _;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

/// Records and bytes of the capture in `dir`.
fn capture_size(dir: &std::path::Path, venue: Venue) -> anyhow::Result<(u64, u64)> {
    let mut records = 0;
    let mut bytes = 0;
    for f in capture_files(dir, venue.name())? {
        bytes += f.metadata()?.len();
        for r in Reader::open(&f)? {
            r?;
            records += 1;
        }
    }
    Ok((records, bytes))
}

/// A live run from a fresh venue server, capturing into `capture` when given.
async fn live(
    venue: Venue,
    trades: u64,
    capture: Option<&std::path::Path>,
) -> anyhow::Result<Measured> {
    let (server, url) = start_server(venue, trades, 0, 1)?;
    let registry = registry();
    let symbols = venue.symbols(1)?;
    let mut cfg = exchange_config(venue, symbols.clone(), url);
    cfg.capture = capture.map(|dir| {
        let mut c = CaptureConfig::new(dir);
        c.compression = CaptureCompression::Zstd;
        c
    });
    let exchange = registry
        .exchange(venue.name())
        .context("venue not registered")?
        .build(&cfg)?;
    let m = measure(exchange, symbols, trades, true).await;
    drop(server);
    m
}

/// Replays the capture in `dir` at full speed.
async fn replay(venue: Venue, trades: u64, dir: &std::path::Path) -> anyhow::Result<Measured> {
    let registry = registry();
    let symbols = venue.symbols(1)?;
    let cfg = exchange_config(
        venue,
        symbols.clone(),
        url::Url::parse("ws://127.0.0.1:1/")?,
    );
    let source = ReplaySource::new(dir);
    let exchange = registry
        .exchange(venue.name())
        .context("venue not registered")?
        .replay(&cfg, &source)
        .context("the venue cannot be replayed")??;
    measure(exchange, symbols, trades, false).await
}

/// Runs `exchange` through the pipeline into a null writer until `trades` are acknowledged.
/// The time is counted from the first frame read when `from_first_frame` (a live run, as the
/// suite counts), else from the start (a replay, whose receive times are the capture's).
async fn measure(
    exchange: Arc<dyn Exchange>,
    symbols: Vec<feeder_core::model::Symbol>,
    trades: u64,
    from_first_frame: bool,
) -> anyhow::Result<Measured> {
    let progress = Progress::new(trades, false)?;
    let writer: Box<dyn Writer> = Box::new(Counting::new(NullWriter, progress.clone()));
    let settings = RunnerSettings::from(&feeder_core::config::WriterConfig::new("null"));
    let feeder = Feeder::builder()
        .exchange(exchange, symbols)
        .writer(writer, settings)
        .pipeline(pipeline_config())
        .shutdown_timeout(Duration::from_secs(30))
        .build();
    let cpu_start = process::cpu_seconds()?;
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    let deadline = started + Duration::from_secs(60) + Duration::from_micros(trades * 100);
    while !progress.wait_done(Duration::from_millis(200)).await {
        if run.is_finished() || Instant::now() > deadline {
            shutdown.cancel();
            bail!("{} of {trades} trades acknowledged", progress.trades());
        }
    }
    let mut seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(40), run).await;
    // The capture's thread ends with the exchange: its last block is counted too.
    let cpu_seconds = process::cpu_seconds()? - cpu_start;
    if from_first_frame {
        let (Some(first), Some(done)) = (progress.first_received(), progress.done_at()) else {
            bail!("the run ended without its timestamps");
        };
        seconds = (done.unix_nanos() - first.unix_nanos()) as f64 / 1e9;
    }
    Ok(Measured {
        trades: progress.trades(),
        seconds,
        cpu_seconds,
    })
}
