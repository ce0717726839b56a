//! `feeder-bench`: the end-to-end benchmark of crypto-feeder. See the crate docs.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use feeder_bench::memory::{self, MemoryOptions};
use feeder_bench::process;
use feeder_bench::scenario::{self, ScenarioOptions, Sink};
use feeder_bench::server::{self, ServeOptions};
use feeder_bench::suite::{self, SuiteOptions};
use feeder_bench::wire::Venue;

/// End-to-end benchmark of crypto-feeder: a loopback venue, the real pipeline, each writer.
#[derive(Debug, Parser)]
#[command(name = "feeder-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    suite: SuiteArgs,
    /// Runs one further check instead of the suite, with its defaults (`real-load`,
    /// `stores`); `--quick` and `--repeat` apply. Their own options: `real-load --help`,
    /// `stores --help`.
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every scenario and prints the table (the default).
    Run(SuiteArgs),
    /// Runs one scenario in this process and prints a `RESULT {json}` line.
    Scenario(ScenarioArgs),
    /// Serves one venue's trades to one client on 127.0.0.1 (prints `LISTEN addr` first).
    Serve(ServeArgs),
    /// Many streams at a modest rate for a while, sampling resident memory.
    Memory(MemoryArgs),
    /// Nine mock venues at a realistic rate into JSON lines and PostgreSQL: CPU and memory.
    RealLoad(feeder_bench::real_load::RealLoadArgs),
    /// The PostgreSQL, Kafka and S3 writers, each beside a bare client.
    Stores(feeder_bench::stores::StoresArgs),
    /// The feeder process of the real-load check (started by it).
    #[command(hide = true)]
    LoadFeeder(feeder_bench::real_load::LoadFeederArgs),
    /// Capture overhead on the live path (throughput and CPU with and without), and replay
    /// throughput.
    Capture(feeder_bench::capture::CaptureArgs),
    /// Sink workers: a Kafka topic read back into PostgreSQL and files, one worker and two.
    Sink(SinkArgs),
}

#[derive(Debug, Args)]
struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    #[arg(long, default_value_t = 200_000)]
    trades: u64,
    #[arg(long, default_value_t = 24)]
    streams: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// postgres, jsonl.
    #[arg(long, value_delimiter = ',', default_value = "postgres,jsonl")]
    stores: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
}

#[derive(Debug, Clone, Args)]
struct SuiteArgs {
    /// Trades per throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    trades: u64,
    /// Offered rate of the latency runs, trades per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Length of each latency run, seconds.
    #[arg(long, default_value_t = 10.0)]
    latency_seconds: f64,
    /// Venues (coinbase, bitstamp, binance); a venue missing from this build is skipped.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "coinbase,bitstamp,binance"
    )]
    venues: Vec<String>,
    /// Writers (null, jsonl, csv, parquet); a format missing from this build is skipped.
    #[arg(long, value_delimiter = ',', default_value = "null,jsonl,parquet")]
    writers: Vec<String>,
    /// Symbols per venue, round-robin.
    #[arg(long, default_value_t = 1)]
    symbols: usize,
    /// Events per writer batch (default: the writer default, 1000). The writer waits up to
    /// its batch delay for a batch to fill, which dominates latency at modest rates.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Runs of each scenario; the table shows the median run (this machine's figures vary
    /// from run to run).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run with few trades, for CI (well under 30 s; no timing assertions).
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, Args)]
struct ScenarioArgs {
    #[arg(long)]
    venue: String,
    /// bare (read and count), bare-serde (read and parse with serde), null, jsonl, csv or
    /// parquet.
    #[arg(long)]
    writer: String,
    #[arg(long)]
    trades: u64,
    /// Trades per second; 0 for as fast as possible (latency is measured when above 0).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    symbols: usize,
    /// Events per writer batch (default: the writer default).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Exit when stdin closes (set by the parent process).
    #[arg(long)]
    watch_parent: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[arg(long)]
    venue: String,
    #[arg(long)]
    trades: u64,
    /// Trades per second; 0 for as fast as the client reads.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    symbols: usize,
    /// Trade time between consecutive trades, µs.
    #[arg(long, default_value_t = 1_000)]
    step_micros: i64,
    /// Exit when stdin closes (set by the parent process).
    #[arg(long)]
    watch_parent: bool,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    #[arg(long, default_value = "coinbase")]
    venue: String,
    /// Streams (symbols) on the one server.
    #[arg(long, default_value_t = 50)]
    streams: usize,
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// Trades per second over all streams.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// null, jsonl, csv or parquet.
    #[arg(long, default_value = "jsonl")]
    writer: String,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None if cli.scenario.is_some() => feeder_bench::real_load::run_named(
            cli.scenario.as_deref().unwrap_or_default(),
            cli.suite.quick,
            cli.suite.repeat,
        ),
        None => run_suite(cli.suite),
        Some(Command::Run(args)) => run_suite(args),
        Some(Command::Scenario(args)) => run_scenario(args),
        Some(Command::Serve(args)) => run_server(args),
        Some(Command::Memory(args)) => run_memory(args),
        Some(Command::RealLoad(args)) => feeder_bench::real_load::run(&args),
        Some(Command::Stores(args)) => feeder_bench::stores::run(&args),
        Some(Command::LoadFeeder(args)) => feeder_bench::real_load::run_feeder_child(&args),
        Some(Command::Capture(args)) => feeder_bench::capture::main(args),
        Some(Command::Sink(a)) => {
            let opts = feeder_bench::sink::SinkOptions {
                brokers: a.brokers,
                pg_url: a.pg_url,
                trades: a.trades,
                streams: a.streams.max(1),
                partitions: a.partitions.max(1),
                stores: a.stores,
                workers: a.workers,
                timeout: std::time::Duration::from_secs(600),
            };
            let results = runtime()?.block_on(feeder_bench::sink::run(&opts))?;
            let mut out = std::io::stdout().lock();
            write!(out, "{}", feeder_bench::sink::table(&results))?;
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn run_suite(args: SuiteArgs) -> anyhow::Result<()> {
    let mut opts = SuiteOptions {
        trades: args.trades,
        rate: args.rate,
        latency_seconds: args.latency_seconds,
        venues: args
            .venues
            .iter()
            .map(|v| Venue::parse(v))
            .collect::<anyhow::Result<_>>()?,
        sinks: args
            .writers
            .iter()
            .map(|w| Sink::parse(w))
            .collect::<anyhow::Result<_>>()?,
        symbols: args.symbols.max(1),
        batch_size: args.batch_size,
        repeat: args.repeat.max(1),
    };
    if args.quick {
        opts.trades = opts.trades.min(50_000);
        opts.rate = opts.rate.min(20_000);
        opts.latency_seconds = opts.latency_seconds.min(1.0);
        opts.repeat = 1;
    }
    suite::run(&opts)
}

fn run_scenario(args: ScenarioArgs) -> anyhow::Result<()> {
    if args.watch_parent {
        process::exit_with_parent();
    }
    let opts = ScenarioOptions {
        venue: Venue::parse(&args.venue)?,
        sink: Sink::parse(&args.writer)?,
        trades: args.trades.max(1),
        rate: args.rate,
        symbols: args.symbols.max(1),
        batch_size: args.batch_size,
    };
    let result = runtime()?.block_on(scenario::run(&opts))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "RESULT {}", serde_json::to_string(&result)?)?;
    out.flush()?;
    Ok(())
}

fn run_server(args: ServeArgs) -> anyhow::Result<()> {
    if args.watch_parent {
        process::exit_with_parent();
    }
    let opts = ServeOptions {
        venue: Venue::parse(&args.venue)?,
        trades: args.trades,
        rate: args.rate,
        symbols: args.symbols.max(1),
        step_micros: args.step_micros,
    };
    server::serve(&opts, |addr| {
        let mut out = std::io::stdout().lock();
        // The parent waits for this line; if it cannot be written nobody is listening.
        let _ = writeln!(out, "LISTEN {addr}");
        let _ = out.flush();
    })
}

fn run_memory(args: MemoryArgs) -> anyhow::Result<()> {
    let opts = MemoryOptions {
        venue: Venue::parse(&args.venue)?,
        streams: args.streams.max(1),
        seconds: args.seconds,
        rate: args.rate,
        sink: Sink::parse(&args.writer)?,
        sample_every: args.sample_every,
    };
    runtime()?.block_on(memory::run(&opts))
}
