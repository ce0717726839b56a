//! A venue written outside the bundled crates ([`feeder_examples::toy`]: a URL, a subscribe
//! message and pure parse functions, described as data), registered and configured like a
//! bundled one. The core's drivers do connecting, keep-alives, stale detection, reconnects
//! and backfill. A local server plays the venue, so this runs offline.
//!
//! cargo run -p feeder-examples --example custom_venue

use std::process::ExitCode;

use feeder_core::prelude::*;
use feeder_examples::summary::SummaryFactory;
use feeder_examples::toy;
use feeder_testkit::ws::{Step, WsServer};

const CONFIG: &str = "
exchanges:
  - name: toy
    symbols: [BTC-USD]
    ws_url: ${TOY_WS}
    backfill: false
pipeline:
  candles: []
writers:
  - type: summary
";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    // The venue: acknowledges the subscription, sends 100 trades, then drops the socket; the
    // second connection gets 100 more. The driver reconnects on its own.
    let now_ms = Timestamp::now().unix_nanos() / 1_000_000;
    let frames = |from: u64| -> Vec<Step> {
        let mut steps = vec![Step::Expect(1), Step::Send(r#"{"ch":"ack"}"#.into())];
        steps.extend((from..from + 100).map(|id| {
            Step::Send(format!(
                r#"{{"ch":"trade","s":"BTC-USD","id":{id},"p":"43210.{id:02}","q":"0.5","taker":"{}","t":{}}}"#,
                if id % 2 == 0 { "b" } else { "s" },
                now_ms + id as i64
            ))
        }));
        steps
    };
    let mut first = frames(1);
    first.push(Step::Drop);
    let server = match WsServer::scripted_per_connection(vec![first, frames(101)]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start the local venue: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut registry = Registry::new();
    registry.register_venue(toy::VENUE);
    let summary = SummaryFactory::default();
    let totals = summary.totals.clone();
    registry.register_writer("summary", summary);
    let ws_url = server.url().to_string();
    let config = match Config::from_yaml_str_with_env(CONFIG, &|name| {
        (name == "TOY_WS").then(|| ws_url.clone())
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
    let run = tokio::spawn(feeder.run(shutdown.clone()));

    // Stop once all 200 trades are in (or after ten seconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = || -> u64 {
        totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|t| t.trades)
            .sum()
    };
    while stored() < 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let summary = match run.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("the feeder task failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("summary:\n{summary}");
    if stored() != 200 || summary.exchanges[0].reconnects == 0 {
        tracing::error!(stored = stored(), "expected 200 trades across a reconnect");
        return ExitCode::FAILURE;
    }
    tracing::info!("200 trades from a custom venue, across a dropped connection");
    ExitCode::SUCCESS
}
