//! `mock-exchange`: a mock venue (Bitstamp, Coinbase Exchange, Bitfinex, Gemini, Huobi,
//! Binance, Bybit, OKX, Kraken) on the loopback interface, publishing generated trades at a
//! steady rate until it is stopped.
//!
//! ```text
//! mock-exchange --venue coinbase --symbols BTC-USD,ETH-USD --rate 100 [--port-rest P --port-ws P]
//! ```
//! It prints `rest_url=...` and `ws_url=...` on stdout, one line each, once both servers
//! listen; point a feeder's `rest_url` / `ws_url` at them.
// Printing the URLs is this program's interface.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use feeder_core::Symbol;
use feeder_testkit::venues::{MockBinance, MockBybit, MockKraken, MockOkx};
use feeder_testkit::venues::{MockBitfinex, MockGemini, MockHuobi};
use feeder_testkit::venues::{MockBitstamp, MockCoinbase, MockConfig, MockVenue};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Venue {
    Bitstamp,
    Coinbase,
    Bitfinex,
    Gemini,
    Huobi,
    Binance,
    Bybit,
    Okx,
    Kraken,
}

/// A mock exchange (REST and WebSocket) on 127.0.0.1 that publishes generated trades.
#[derive(Debug, Parser)]
#[command(name = "mock-exchange", version)]
struct Args {
    /// The venue to imitate.
    #[arg(long, value_enum)]
    venue: Venue,
    /// Symbols to list and trade, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "BTC-USD,ETH-USD")]
    symbols: Vec<Symbol>,
    /// Trades per second, over all symbols.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Fixed port for the REST API (default: any free port).
    #[arg(long)]
    port_rest: Option<u16>,
    /// Fixed port for the WebSocket API (default: any free port).
    #[arg(long)]
    port_ws: Option<u16>,
    /// Seed of the trade generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

enum Mock {
    Bitstamp(MockBitstamp),
    Coinbase(MockCoinbase),
    Bitfinex(MockBitfinex),
    Gemini(MockGemini),
    Huobi(MockHuobi),
    Binance(MockBinance),
    Bybit(MockBybit),
    Okx(MockOkx),
    Kraken(MockKraken),
}

impl Mock {
    fn venue(&self) -> &MockVenue {
        match self {
            Mock::Bitstamp(m) => m,
            Mock::Coinbase(m) => m,
            Mock::Bitfinex(m) => m,
            Mock::Gemini(m) => m,
            Mock::Huobi(m) => m,
            Mock::Binance(m) => m,
            Mock::Bybit(m) => m,
            Mock::Okx(m) => m,
            Mock::Kraken(m) => m,
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("mock-exchange: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = MockConfig {
        symbols: args.symbols.clone(),
        seed: args.seed,
        ..MockConfig::default()
    };
    let mock = match args.venue {
        Venue::Bitstamp => Mock::Bitstamp(MockBitstamp::start_with(cfg).await?),
        Venue::Coinbase => Mock::Coinbase(MockCoinbase::start_with(cfg).await?),
        Venue::Bitfinex => Mock::Bitfinex(MockBitfinex::start_with(cfg).await?),
        Venue::Gemini => Mock::Gemini(MockGemini::start_with(cfg).await?),
        Venue::Huobi => Mock::Huobi(MockHuobi::start_with(cfg).await?),
        Venue::Binance => Mock::Binance(MockBinance::start_with(cfg).await?),
        Venue::Bybit => Mock::Bybit(MockBybit::start_with(cfg).await?),
        Venue::Okx => Mock::Okx(MockOkx::start_with(cfg).await?),
        Venue::Kraken => Mock::Kraken(MockKraken::start_with(cfg).await?),
    };
    let venue = mock.venue();

    // The servers take any free port; a fixed port is a forwarder in front of them.
    let mut forwarders = JoinSet::new();
    let rest_url = match args.port_rest {
        None => venue.rest_url(),
        Some(p) => {
            let addr = venue.http_server().addr();
            let listener = bind(p).await?;
            forwarders.spawn(forward(listener, addr));
            Url::parse(&format!("http://127.0.0.1:{p}"))?
        }
    };
    let ws_url = match args.port_ws {
        None => venue.ws_url(),
        Some(p) => {
            let addr = venue.ws_server().addr();
            let listener = bind(p).await?;
            forwarders.spawn(forward(listener, addr));
            Url::parse(&format!("ws://127.0.0.1:{p}/"))?
        }
    };

    let mut out = std::io::stdout().lock();
    // The rest URL has no path: print it without the trailing slash `Url` adds.
    writeln!(out, "rest_url={}", rest_url.as_str().trim_end_matches('/'))?;
    writeln!(out, "ws_url={ws_url}")?;
    out.flush()?;
    drop(out);

    venue.generate(args.rate);
    shutdown_signal().await?;
    forwarders.abort_all();
    Ok(())
}

async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))
}

/// Passes every connection on `listener` through to `target`.
async fn forward(listener: TcpListener, target: SocketAddr) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}
