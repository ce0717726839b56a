//! `crypto-feeder replay`: plays a raw capture back through a configuration's pipeline and
//! writers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use feeder_core::exchange::{ReplaySource, Speed};
use feeder_core::feeder::Feeder;
use feeder_core::model::Timestamp;
use tokio_util::sync::CancellationToken;

/// Plays a capture (see the `capture` option of an exchange) back through the venues'
/// parsers, the pipeline and the writers of a config, then flushes every writer and exits.
///
/// Candles close by the capture's own times; two replays of one capture write the same
/// output. The config's exchanges name the captures to play (files `<name>.*.fcap[.zst]`
/// in the capture directory); their `capture` options are not used.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The directory of the capture files.
    #[arg(long)]
    capture: PathBuf,
    /// The YAML config file: exchanges (names and symbols), pipeline and writers.
    #[arg(short, long, env = "CRYPTO_FEEDER_CONFIG")]
    config: PathBuf,
    /// Only records received at or after this time (RFC 3339, UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<Timestamp>,
    /// Only records received before this time (RFC 3339, UTC).
    #[arg(long, value_parser = parse_time)]
    to: Option<Timestamp>,
    /// `max` (as fast as the writers take it), or a factor of the recorded pace: `1x`,
    /// `10x`.
    #[arg(long, default_value = "max", value_parser = |s: &str| s.parse::<Speed>())]
    speed: Speed,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

/// Runs the replay on a runtime of its own.
pub(crate) fn main(args: Args) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(replay(args))
}

async fn replay(args: Args) -> anyhow::Result<ExitCode> {
    if !args.capture.is_dir() {
        anyhow::bail!("{} is not a directory of captures", args.capture.display());
    }
    let registry = crate::registry();
    let config = crate::load(&args.config, &registry)?;
    let source = ReplaySource::new(&args.capture)
        .window(args.from, args.to)
        .speed(args.speed);
    let exchanges = config.exchanges.len();
    let feeder = Feeder::from_config(config, &registry.replaying(&source))
        .await
        .context("starting the replay")?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tracing::info!(capture = %args.capture.display(), "replaying; SIGINT stops early");
    tokio::select! {
        () = source.wait_finished(exchanges) => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    shutdown.cancel();
    let summary = run.await.context("the feeder task failed")?;
    for line in summary.to_string().lines() {
        tracing::info!("{line}");
    }
    Ok(crate::exit_code(&summary))
}
