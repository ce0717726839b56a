//! One measured run, in this process: a venue server child, then either the real pipeline
//! (venue driver, valve, candles, a writer) or a bare WebSocket client that only counts frames.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use feeder_core::config::{ExchangeConfig, PipelineConfig, WriterConfig};

use feeder_core::feeder::{Feeder, Registry, Summary};
use feeder_core::model::{Interval, Symbol, Timestamp};
use feeder_core::writer::{RunnerSettings, Writer};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::probe::{Counting, NullWriter, Progress};
use crate::process::{self, ChildProc};
use crate::wire::Venue;

/// No acknowledged trade for this long means the run stalled.
const STALL: Duration = Duration::from_secs(20);
/// How long the feeder may take to shut down after the last trade.
const SHUTDOWN: Duration = Duration::from_secs(30);

/// What consumes the trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// No pipeline: a WebSocket client that reads and counts frames (the I/O limit).
    Bare,
    /// No pipeline: a WebSocket client that reads the frames and parses each with serde into
    /// a plain struct of the venue's fields (see [`crate::bare`]): what the pipeline's
    /// throughput is compared with.
    #[serde(rename = "bare-serde")]
    BareSerde,
    /// The pipeline into a writer that keeps nothing.
    Null,
    /// The pipeline into the `file` writer, JSON lines.
    Jsonl,
    /// The pipeline into the `file` writer, CSV.
    Csv,
    /// The pipeline into the `file` writer, Parquet (when the build has it).
    Parquet,
}

impl Sink {
    /// The name used on the command line and in the table.
    pub const fn name(self) -> &'static str {
        match self {
            Sink::Bare => "bare",
            Sink::BareSerde => "bare-serde",
            Sink::Null => "null",
            Sink::Jsonl => "jsonl",
            Sink::Csv => "csv",
            Sink::Parquet => "parquet",
        }
    }

    /// The sink called `name`.
    pub fn parse(name: &str) -> anyhow::Result<Sink> {
        [
            Sink::Bare,
            Sink::BareSerde,
            Sink::Null,
            Sink::Jsonl,
            Sink::Csv,
            Sink::Parquet,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            anyhow!("unknown writer {name:?} (known: bare, bare-serde, null, jsonl, csv, parquet)")
        })
    }

    /// Whether this is a bare client rather than the pipeline.
    pub const fn is_bare(self) -> bool {
        matches!(self, Sink::Bare | Sink::BareSerde)
    }

    /// The `file` writer format, for the sinks that are one.
    const fn file_format(self) -> Option<&'static str> {
        match self {
            Sink::Jsonl => Some("jsonl"),
            Sink::Csv => Some("csv"),
            Sink::Parquet => Some("parquet"),
            Sink::Bare | Sink::BareSerde | Sink::Null => None,
        }
    }
}

/// Everything a scenario needs to know.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// The venue served and parsed.
    pub venue: Venue,
    /// What consumes the trades.
    pub sink: Sink,
    /// Trades in the run.
    pub trades: u64,
    /// Offered trades per second; 0 for as fast as possible.
    pub rate: u64,
    /// Symbols, round-robin.
    pub symbols: usize,
    /// Events per writer batch; `None` keeps the writer default.
    pub batch_size: Option<usize>,
}

/// What a scenario measured; printed by the child as one `RESULT {json}` line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Trades acknowledged (or frames read, for the bare client).
    pub trades: u64,
    /// Seconds from the first frame read to the last trade acknowledged.
    pub seconds: f64,
    /// CPU seconds (user + system) of this process over the run.
    pub cpu_seconds: f64,
    /// Peak resident memory of this process, KiB.
    pub peak_rss_kib: u64,
    /// Latency percentiles in µs (frame read to the writer's acknowledgement), when measured.
    pub latency_us: Option<(f64, f64, f64)>,
    /// Candles the writer acknowledged.
    pub candles: u64,
    /// Problems the run counted (parse errors, duplicates, reconnects), for the report.
    pub notes: Vec<String>,
}

impl ScenarioResult {
    /// Trades per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.trades as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The registry with every bundled venue and writer.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    feeder_exchanges::register(&mut r);
    feeder_writers::register(&mut r);
    r
}

/// Why this build cannot run `venue` with `sink`, if it cannot.
pub fn unavailable(registry: &Registry, venue: Venue, sink: Sink) -> Option<String> {
    if registry.exchange(venue.name()).is_none() {
        return Some(format!("venue {venue} is not in this build"));
    }
    let format = sink.file_format()?;
    let Some(factory) = registry.writer("file") else {
        return Some("the file writer is not in this build".into());
    };
    let cfg = file_config(std::path::Path::new("/nonexistent"), format);
    factory.validate(&cfg).err().map(|e| format!("{e}"))
}

fn file_config(dir: &std::path::Path, format: &str) -> WriterConfig {
    WriterConfig::new("file")
        .with_option("path", dir.to_string_lossy().into_owned())
        .with_option("format", format)
}

/// The config entry for `venue` streaming `symbols` from `ws_url`, backfill off.
pub fn exchange_config(venue: Venue, symbols: Vec<Symbol>, ws_url: Url) -> ExchangeConfig {
    let mut cfg = ExchangeConfig::new(venue.name(), symbols);
    cfg.ws_url = Some(ws_url);
    cfg.backfill = false;
    cfg
}

/// The pipeline every scenario uses: dedup on, 30m and 1h candles.
pub fn pipeline_config() -> PipelineConfig {
    PipelineConfig {
        dedup: true,
        candles: vec![Interval::M30, Interval::H1],
        ..PipelineConfig::default()
    }
}

/// Microseconds of trade time between consecutive trades: wall-clock pace when paced, 1 ms
/// otherwise (so a run of millions of trades crosses a few candle boundaries).
pub fn step_micros(rate: u64) -> i64 {
    match 1_000_000u64.checked_div(rate) {
        None => 1_000,
        Some(step) => i64::try_from(step).unwrap_or(1).max(1),
    }
}

/// Starts the venue server process and returns it with its WebSocket URL.
pub fn start_server(
    venue: Venue,
    trades: u64,
    rate: u64,
    symbols: usize,
) -> anyhow::Result<(ChildProc, Url)> {
    let args = [
        "serve".to_owned(),
        format!("--venue={venue}"),
        format!("--trades={trades}"),
        format!("--rate={rate}"),
        format!("--symbols={symbols}"),
        format!("--step-micros={}", step_micros(rate)),
    ];
    let mut child = ChildProc::spawn("venue server", &args)?;
    let addr = child.expect_line("LISTEN ", Duration::from_secs(30))?;
    let url = Url::parse(&format!("ws://{addr}/")).context("server address")?;
    Ok((child, url))
}

/// The writer for `sink`, opened under `dir` for file formats.
pub async fn open_writer(
    registry: &Registry,
    sink: Sink,
    dir: &std::path::Path,
    batch_size: Option<usize>,
) -> anyhow::Result<(Box<dyn Writer>, RunnerSettings)> {
    let with_batch = |mut cfg: WriterConfig| {
        if let Some(n) = batch_size {
            cfg.batch_size = n.max(1);
        }
        cfg
    };
    match sink.file_format() {
        None => Ok((
            Box::new(NullWriter),
            RunnerSettings::from(&with_batch(WriterConfig::new("null"))),
        )),
        Some(format) => {
            let cfg = with_batch(file_config(dir, format));
            let factory = registry
                .writer("file")
                .context("the file writer is not in this build")?;
            factory.validate(&cfg)?;
            let w = factory.build(&cfg).await?;
            Ok((w, RunnerSettings::from(&cfg)))
        }
    }
}

/// Runs one scenario to completion (or a clear failure).
pub async fn run(opts: &ScenarioOptions) -> anyhow::Result<ScenarioResult> {
    let (server, url) = start_server(opts.venue, opts.trades, opts.rate, opts.symbols)?;
    let deadline = overall_deadline(opts);
    let result = match opts.sink {
        Sink::Bare | Sink::BareSerde => bare(opts, &url, deadline).await,
        _ => pipeline(opts, &url, deadline).await,
    };
    drop(server);
    result
}

/// A generous bound on the whole run, so nothing can wait forever.
fn overall_deadline(opts: &ScenarioOptions) -> Duration {
    let expected = if opts.rate > 0 {
        opts.trades as f64 / opts.rate as f64
    } else {
        // Far below any rate worth measuring.
        opts.trades as f64 / 10_000.0
    };
    Duration::from_secs_f64(60.0 + 3.0 * expected)
}

async fn pipeline(
    opts: &ScenarioOptions,
    url: &Url,
    deadline: Duration,
) -> anyhow::Result<ScenarioResult> {
    let registry = registry();
    if let Some(why) = unavailable(&registry, opts.venue, opts.sink) {
        bail!("cannot run: {why}");
    }
    let dir = tempfile::Builder::new()
        .prefix("feeder-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let (writer, settings) = open_writer(&registry, opts.sink, dir.path(), opts.batch_size).await?;
    let progress = Progress::new(opts.trades, opts.rate > 0)?;
    let symbols = opts.venue.symbols(opts.symbols)?;
    let factory = registry
        .exchange(opts.venue.name())
        .context("venue not registered")?;
    let exchange = factory.build(&exchange_config(opts.venue, symbols.clone(), url.clone()))?;
    let feeder = Feeder::builder()
        .exchange(exchange, symbols)
        .writer(Box::new(Counting::new(writer, progress.clone())), settings)
        .pipeline(pipeline_config())
        .shutdown_timeout(SHUTDOWN)
        .build();

    let cpu_start = process::cpu_seconds()?;
    let shutdown = CancellationToken::new();
    let mut run = tokio::spawn(feeder.run(shutdown.clone()));
    let waited = wait_for(&progress, deadline, &mut run).await;
    let cpu_end = process::cpu_seconds()?;
    shutdown.cancel();
    let summary = match tokio::time::timeout(SHUTDOWN + Duration::from_secs(5), &mut run).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => bail!("the feeder task failed: {e}"),
        Err(_) => {
            run.abort();
            None
        }
    };
    let notes = summary.as_ref().map(notes).unwrap_or_default();
    if let Err(e) = waited {
        bail!("{e:#}; {}", notes.join(", "));
    }
    let (Some(first), Some(done)) = (progress.first_received(), progress.done_at()) else {
        bail!("the run ended without its timestamps");
    };
    Ok(ScenarioResult {
        trades: progress.trades(),
        seconds: seconds_between(first, done),
        cpu_seconds: cpu_end - cpu_start,
        peak_rss_kib: process::peak_rss_kib()?,
        latency_us: progress.latency_micros(),
        candles: progress.candles(),
        notes,
    })
}

/// Waits for the target, failing on a stall, on the overall deadline, or when the feeder
/// stopped by itself.
async fn wait_for(
    progress: &Progress,
    deadline: Duration,
    run: &mut tokio::task::JoinHandle<Summary>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        if progress.wait_done(Duration::from_millis(500)).await {
            return Ok(());
        }
        if run.is_finished() {
            bail!("the feeder stopped after {} trades", progress.trades());
        }
        let n = progress.trades();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!(
                "stalled: {n} of {} trades acknowledged, none for {STALL:?}",
                progress.target()
            );
        }
        if started.elapsed() > deadline {
            bail!(
                "took over {deadline:?}: {n} of {} trades acknowledged",
                progress.target()
            );
        }
    }
}

fn notes(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for e in &s.exchanges {
        for (what, n) in [
            ("parse errors", e.parse_errors),
            ("duplicates", e.duplicates),
            ("connection errors", e.errors),
            ("reconnects", e.reconnects),
        ] {
            if n > 0 {
                out.push(format!("{}: {n} {what}", e.name));
            }
        }
    }
    for w in &s.writers {
        if w.errors > 0 || w.dropped > 0 {
            out.push(format!(
                "writer {}: {} errors, {} dropped",
                w.name, w.errors, w.dropped
            ));
        }
    }
    if !s.stragglers.is_empty() {
        out.push(format!("stragglers: {}", s.stragglers.join(", ")));
    }
    out
}

fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.unix_nanos() - a.unix_nanos()) as f64 / 1e9
}

/// The same server and frames read by a plain client: one that only counts them (the I/O
/// limit), or one that parses each with serde ([`Sink::BareSerde`]).
async fn bare(
    opts: &ScenarioOptions,
    url: &Url,
    deadline: Duration,
) -> anyhow::Result<ScenarioResult> {
    // The same limits as the venue driver uses.
    let config = WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    let cpu_start = process::cpu_seconds()?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
    )
    .await
    .context("connecting took over 10 s")??;
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut frames = 0u64;
    let mut unparsed = 0u64;
    let parse = opts.sink == Sink::BareSerde;
    while frames < opts.trades {
        if started.elapsed() > deadline {
            bail!("took over {deadline:?}: {frames} of {} frames", opts.trades);
        }
        let msg = match tokio::time::timeout(STALL, ws.next()).await {
            Err(_) => bail!("stalled: {frames} of {} frames read", opts.trades),
            Ok(None) => bail!("the server closed after {frames} frames"),
            Ok(Some(m)) => m?,
        };
        let payload: &[u8] = match &msg {
            Message::Text(t) => t.as_str().as_bytes(),
            Message::Binary(b) => b,
            _ => continue,
        };
        first.get_or_insert_with(Instant::now);
        frames += 1;
        if parse && !crate::bare::parse_trade(opts.venue, payload) {
            unparsed += 1;
        }
    }
    let end = Instant::now();
    let cpu_end = process::cpu_seconds()?;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(ScenarioResult {
        trades: frames,
        seconds: first.map_or(0.0, |f| (end - f).as_secs_f64()),
        cpu_seconds: cpu_end - cpu_start,
        peak_rss_kib: process::peak_rss_kib()?,
        latency_us: None,
        candles: 0,
        notes: if unparsed > 0 {
            vec![format!("{unparsed} frames were not trades to serde")]
        } else {
            Vec::new()
        },
    })
}
