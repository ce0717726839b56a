//! Sources of trades: the [`Exchange`] trait, the helper traits for WebSocket and REST venues,
//! and the drivers that run them.
//!
//! A venue usually implements only [`StreamVenue`] (a URL, subscribe messages and a pure parse
//! function) and/or [`PollVenue`] (a request builder and a pure parse function). The drivers
//! [`StreamExchange`] and [`PollExchange`] turn those into an [`Exchange`] that connects,
//! subscribes, answers pings, detects stale connections, reconnects with backoff, backfills
//! gaps over REST and paginates. An exchange defined in another crate uses exactly this API.

mod backoff;
pub mod capture;
mod checkpoint;
mod context;
mod instruments;
mod poll;
mod rest;
mod session;
mod stream;

use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use crate::error::{ExchangeError, ParseError};
use crate::model::{Symbol, Timestamp, Trade};

pub use backoff::Backoff;
pub use capture::{Capture, ReplayExchange, ReplaySource, Speed};
pub use checkpoint::{Checkpoint, CheckpointWait, Resync};
pub use context::{
    Completeness, Cursor, Cursors, ExchangeContext, ExchangeStats, Input, TradeSink,
};
pub use instruments::{
    fetch_instruments, InstrumentsVenue, DETAIL_CONCURRENCY, MAX_DETAIL_REQUESTS,
};
pub use poll::PollExchange;
pub use stream::StreamExchange;

/// Waits `delay` unless shutdown begins first; false when it did.
pub(crate) async fn sleep_or_cancel(
    delay: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// A source of trades, run by the orchestrator in a task of its own.
///
/// `run` sends trades through `ctx.sink` until `ctx.shutdown` is cancelled, then returns
/// `Ok(())`. It returns `Err` for a failure: the supervisor restarts it with exponential
/// backoff unless [`ExchangeError::is_terminal`] says not to. `run` may be called again after
/// it returned, with a fresh context that carries the cursors of the previous run.
#[async_trait]
pub trait Exchange: Send + Sync + 'static {
    /// The registry name (`bitstamp`), used in every trade and in logs.
    fn name(&self) -> &str;

    /// Streams trades until shutdown or failure.
    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError>;

    /// The streams whose trades this exchange sends for `symbols`, each as (exchange name in
    /// its trades, symbol): where the stores are asked to resume from, and what the valve
    /// and candles are seeded with. By default its own name with each symbol; a source that
    /// relays the trades of other venues (the `kafka` source) names theirs.
    fn streams(&self, symbols: &[Symbol]) -> Vec<(std::sync::Arc<str>, Symbol)> {
        let name: std::sync::Arc<str> = std::sync::Arc::from(self.name());
        symbols.iter().map(|s| (name.clone(), s.clone())).collect()
    }
}

/// The transports a venue offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A WebSocket stream.
    Websocket,
    /// REST polling.
    Rest,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Websocket => "websocket",
            Transport::Rest => "rest",
        })
    }
}

/// A WebSocket message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsMessage {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A protocol-level ping with this payload.
    Ping(Vec<u8>),
}

/// What a frame was, besides any trades it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Market data; its trades (possibly none) were appended to `out`.
    Data,
    /// A subscription acknowledgement or other control answer.
    Ack,
    /// A heartbeat: proof of life, nothing else.
    Heartbeat,
    /// An application-level ping: send this reply.
    Reply(WsMessage),
    /// The venue asks the client to reconnect (for example Bitstamp's `bts:request_reconnect`).
    Reconnect,
    /// The venue says trades up to `last_trade_id` exist for `symbol` (for example Coinbase's
    /// `heartbeat`). If that is newer than the last trade seen, the driver backfills the gap
    /// over REST without reconnecting.
    Gap {
        /// The stream.
        symbol: Symbol,
        /// The newest trade id the venue reports.
        last_trade_id: crate::model::TradeId,
    },
    /// A message the venue sends that carries nothing the feeder needs (a ticker, an info
    /// event), skipped.
    Ignored,
    /// A message of a shape the parser does not know: counted, and logged with a sample
    /// (at most once a minute), so that a venue's format change is seen and not ignored.
    Unrecognized,
}

/// A keep-alive the driver sends on a timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// How often.
    pub every: Duration,
    /// What to send.
    pub message: WsMessage,
}

/// What a WebSocket venue says. The core's [`StreamExchange`] driver does the rest.
///
/// Parsing is pure: bytes in, trades out, no I/O, no clock (the receive time is passed in).
pub trait StreamVenue: Send + Sync + 'static {
    /// The endpoint to connect to for these symbols.
    fn url(&self, symbols: &[Symbol]) -> Result<Url, ExchangeError>;

    /// The messages to send after connecting (one per channel, or one for all).
    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage>;

    /// Parses one frame (text or binary payload), appending its trades to `out`.
    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError>;

    /// A keep-alive sent on a timer; by default a protocol ping every 15 s.
    fn ping(&self) -> Option<Ping> {
        Some(Ping {
            every: Duration::from_secs(15),
            message: WsMessage::Ping(Vec::new()),
        })
    }

    /// Reconnect when nothing arrived for this long.
    fn stale_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Whether a Pong (the answer to our protocol ping) proves the feed alive. False by
    /// default: a WebSocket library answers pings while the application behind it is hung,
    /// so only the venue's own messages (data, heartbeats, answers) prove life, and a feed
    /// silent for the [`stale_timeout`](Self::stale_timeout) is reconnected and backfilled.
    /// Protocol Pings from the server never prove life. A venue whose quiet symbols send
    /// nothing for long stretches and which has no heartbeat of its own either says true here
    /// (and accepts that a hung feed is not detected) or sets a stale timeout longer than its
    /// quietest symbol's silences.
    fn pong_is_proof_of_life(&self) -> bool {
        false
    }

    /// Whether a symbol's trade ids are consecutive integers (Coinbase's are). The driver then
    /// treats a jump in ids as missed trades and backfills them over REST at once.
    fn ids_are_consecutive(&self) -> bool {
        false
    }
}

/// A GET request a [`PollVenue`] wants made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Full URL, query included.
    pub url: Url,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// A plain GET of `url`.
    pub fn get(url: Url) -> Self {
        Self {
            url,
            headers: Vec::new(),
        }
    }
}

/// An HTTP answer handed to [`PollVenue::parse_trades`].
#[derive(Clone, Copy, Debug)]
pub struct HttpResponse<'a> {
    /// Status code (always 2xx here: the driver handles the others).
    pub status: u16,
    /// Response headers (pagination cursors live here for some venues).
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Where a poll starts from.
#[derive(Clone, Copy, Debug, Default)]
pub struct PollRequest<'a> {
    /// The newest trade already seen for this symbol, if any.
    pub last_seen: Option<&'a Cursor>,
    /// A venue cursor for an older page, returned by the previous page's [`Page::older`].
    pub page: Option<&'a str>,
}

/// What a parsed page says about the pages beyond it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The cursor of the next older page, when the venue paginates and there is one.
    pub older: Option<String>,
}

/// What a REST venue says. The core's [`PollExchange`] driver (and the backfill of
/// [`StreamExchange`]) does timing, paging, rate limits and retries.
pub trait PollVenue: Send + Sync + 'static {
    /// The request for the latest trades of `symbol` (or the older page named in `req.page`).
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError>;

    /// Parses a page of trades, appending them to `out` in any order.
    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError>;

    /// The request for the page of `symbol`'s trades that follows `after`: the oldest trades
    /// newer than it, in any order. `None` (the default) when the venue cannot page forward
    /// from a trade.
    ///
    /// A venue that can (Coinbase's `before`, Binance's `fromId`, ...) is filled from the last
    /// trade seen to its newest, page by page, however long the outage was. One that cannot
    /// is walked back from its newest trades, up to [`max_pages`](Self::max_pages), and
    /// whatever it cannot reach is reported as a gap.
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let _ = (symbol, after);
        None
    }

    /// How many pages one poll may walk back to reach the last seen trade (venues without
    /// [`forward_request`](Self::forward_request)).
    fn max_pages(&self) -> usize {
        10
    }

    /// The least time between two requests of one walk through pages, from the venue's
    /// documented rate limit; none by default. `429` answers and `Retry-After` are honoured
    /// in any case.
    fn request_spacing(&self) -> Duration {
        Duration::ZERO
    }
}
