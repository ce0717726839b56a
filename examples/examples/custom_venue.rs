//! A WebSocket venue written outside the bundled crates, in a few lines: a URL, a subscribe
//! message and a pure parse function. The core's driver does connecting, keep-alives, stale
//! detection and reconnects. A local server plays the venue, so this runs offline.
//!
//! cargo run -p feeder-examples --example custom_venue

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::{Frame, StreamExchange, StreamVenue, WsMessage};
use feeder_core::feeder::Feeder;
use feeder_core::model::{parse_decimal, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::RunnerSettings;
use feeder_core::{ExchangeError, ParseError};
use feeder_examples::summary::{SharedTotals, SummaryWriter};
use feeder_testkit::ws::{Step, WsServer};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use url::Url;

/// A made-up venue: `{"op":"sub","streams":["BTC-USD"]}` subscribes; trades arrive as
/// `{"ch":"trade","s":"BTC-USD","id":7,"p":"43210.12","q":"0.5","taker":"b","t":1704164645123}`.
struct ToyVenue {
    name: Arc<str>,
    url: Url,
}

/// The wire form of a toy message, borrowed from the frame.
#[derive(Deserialize)]
struct Wire<'a> {
    ch: &'a str,
    #[serde(default)]
    s: &'a str,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    p: &'a str,
    #[serde(default)]
    q: &'a str,
    #[serde(default)]
    taker: &'a str,
    #[serde(default)]
    t: i64,
}

impl StreamVenue for ToyVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let streams: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
        vec![WsMessage::Text(format!(
            r#"{{"op":"sub","streams":{}}}"#,
            serde_json_string_list(&streams)
        ))]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let w: Wire<'_> = serde_json::from_slice(frame)?;
        match w.ch {
            "ack" => Ok(Frame::Ack),
            "trade" => {
                out.push(Trade {
                    exchange: self.name.clone(),
                    symbol: Symbol::parse(w.s).map_err(|e| ParseError::field("s", e))?,
                    trade_id: TradeId::from_u64(w.id),
                    price: parse_decimal(w.p).map_err(|e| ParseError::field("p", e))?,
                    amount: parse_decimal(w.q).map_err(|e| ParseError::field("q", e))?,
                    side: match w.taker {
                        "b" => Side::Buy,
                        "s" => Side::Sell,
                        _ => Side::Unknown,
                    },
                    timestamp: Timestamp::from_unix_millis(w.t),
                    received_at,
                });
                Ok(Frame::Data)
            }
            _ => Ok(Frame::Ignored),
        }
    }
}

fn serde_json_string_list(items: &[&str]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

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

    let venue = Arc::new(ToyVenue {
        name: Arc::from("toyx"),
        url: server.url(),
    });
    let totals = SharedTotals::default();
    let feeder = Feeder::builder()
        .exchange(
            Arc::new(StreamExchange::new("toyx", venue)),
            vec![Symbol::parse("BTC-USD").expect("valid symbol")],
        )
        .writer(
            Box::new(SummaryWriter::new("summary", totals.clone())),
            RunnerSettings::default(),
        )
        .build();
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
