//! A program that embeds the feeder: its own exchange and writer registered next to the
//! bundled ones, the config from a string, and its own shutdown (a timer here; a signal or an
//! admin endpoint in a real program).
//!
//! cargo run -p feeder-examples --example embedded

use std::process::ExitCode;
use std::time::Duration;

use feeder_core::config::Config;
use feeder_core::feeder::{Feeder, Registry};
use feeder_core::prelude::CancellationToken;
use feeder_examples::summary::SummaryFactory;

const CONFIG: &str = "
exchanges:
  - name: random-walk
    symbols: [BTC-USD, ETH-USD]
    transport: rest
    poll_interval: 100ms
pipeline:
  candles: [1m]
writers:
  - type: summary
  - type: file
    path: ${EXAMPLE_OUT}
";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let out = std::env::temp_dir().join("crypto-feeder-embedded-example");

    let mut registry = Registry::new();
    feeder_exchanges::register(&mut registry);
    feeder_writers::register(&mut registry);
    registry.register_venue(feeder_examples::random_walk::VENUE);
    let summary_factory = SummaryFactory::default();
    let totals = summary_factory.totals.clone();
    registry.register_writer("summary", summary_factory);

    let out_dir = out.display().to_string();
    let config = match Config::from_yaml_str_with_env(CONFIG, &|name| {
        (name == "EXAMPLE_OUT").then(|| out_dir.clone())
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("bad config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let feeder = match Feeder::from_config(config, &registry).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };

    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stopper.cancel();
    });
    let summary = feeder.run(shutdown).await;
    tracing::info!("summary:\n{summary}");

    let stored: u64 = totals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|t| t.trades)
        .sum();
    let produced = summary.exchanges.iter().map(|e| e.trades).sum::<u64>();
    if stored == 0 || stored != produced || !summary.is_clean() {
        tracing::error!(stored, produced, "the example did not store every trade");
        return ExitCode::FAILURE;
    }
    tracing::info!(stored, out = %out.display(), "every trade stored");
    ExitCode::SUCCESS
}
