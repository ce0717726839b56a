//! Kraken spot: the WebSocket v2 `trade` channel, the REST `Trades` endpoint.
//!
//! - Stream: `wss://ws.kraken.com/v2`, one
//!   `{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD",..],"snapshot":true}}`,
//!   acknowledged per symbol. A `snapshot` of recent trades comes first, then `update`s; both
//!   may carry several trades. Kraken sends a `heartbeat` every second while subscribed; the
//!   client also sends `{"method":"ping"}` every 20 s (answered by `pong`). WebSocket v1 is
//!   not used: its trades carry no trade id, so they could not be deduplicated.
//! - Poll and backfill: `GET /0/public/Trades?pair=XBTUSD[&since=<ns>]`, up to 1000 trades
//!   OLDEST first, starting after `since` (nanoseconds since the epoch), and a `last` cursor
//!   for the trades after them. Kraken pages forwards, not backwards, and keeps the whole
//!   history there, so:
//!   - without a last seen trade, the request has no `since` and returns the newest 1000;
//!   - from a trade seen, the fill walks forward page by page ([`PollVenue::forward_request`],
//!     `&count=1000`) to the newest trade, however long the outage. `since` is the trade's
//!     time less one microsecond ([`since_before`]): Kraken's `since` keeps only later
//!     trades, the fills of one taker order share one time, and the stream writes times to
//!     the microsecond while REST has a tenth of one, so a margin of a microsecond keeps the
//!     rest of the cursor's instant in the page; its trades already seen are dropped by id.
//!     A single instant with more than a page of fills could not be paged through by time;
//!   - a full page (1000 trades) of a poll returns `last` as [`Page::older`]: the driver
//!     walks on with `since=last` within [`PollVenue::max_pages`] pages.
//! - Rate limit: Kraken throttles its public endpoints per IP and pair past about one call a
//!   second, so the pages of one fill are [`REQUEST_SPACING`] apart.
//!
//!   REST times are seconds with up to 7 fractional digits (`1688669597.8277369`), a JSON
//!   number that `f64` would round; it is read exactly from its text. Trade ids and REST
//!   times are read as JSON numbers or strings alike.
//!
//! Side: `side` (`buy` / `sell`, REST `b` / `s`) is the taker's side.
//! Symbols: see [`symbols`] (`BTC-USD` is `BTC/USD` on the stream, `XBTUSD` in requests and
//! `XXBTZUSD` in REST answers; trades are always written as `BTC-USD`).

mod instruments;
pub mod symbols;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, Ping, PollRequest,
    PollVenue, StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, SymbolTable, KRAKEN_ASSETS};

pub use instruments::KrakenInstruments;

/// The registry name.
pub const NAME: &str = "kraken";
/// The production WebSocket endpoint (v2, public).
pub const DEFAULT_WS_URL: &str = "wss://ws.kraken.com/v2";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.kraken.com";
/// Trades per REST answer (Kraken's default and largest).
pub const PAGE_LIMIT: usize = 1_000;
/// The least time between two pages of one fill: Kraken says public calls stay within its
/// limits at one a second or less (Kraken support, "What are the API rate limits?").
pub const REQUEST_SPACING: Duration = Duration::from_secs(1);
/// The app-level keep-alive.
pub const PING: &str = r#"{"method":"ping"}"#;

/// The Kraken spot venue: endpoints and pair names for one configured exchange.
#[derive(Clone, Debug)]
pub struct KrakenVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    /// Configured symbols by WebSocket name (`BTC/USD`).
    ws_symbols: SymbolTable,
    /// Configured symbols by REST answer key (`XXBTZUSD`, `XBTUSD`).
    rest_symbols: SymbolTable,
}

impl KrakenVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise). Symbols use the usual codes (`BTC-USD`, not Kraken's `XBT-USD`).
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        KRAKEN_ASSETS.check(cfg)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            ws_symbols: SymbolTable::new(cfg, symbols::ws_names)?,
            rest_symbols: SymbolTable::new(cfg, symbols::rest_names)?,
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Trades request for `symbol`: the newest trades, or those after `since`
    /// (nanoseconds since the epoch, Kraken's cursor), `count` of them (Kraken's default
    /// 1000 when not given).
    pub fn trades_since(
        &self,
        symbol: &Symbol,
        since: Option<&str>,
        count: Option<usize>,
    ) -> HttpRequest {
        let mut url = common::join_path(&self.rest_url, &["0", "public", "Trades"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("pair", &symbols::to_rest(symbol));
            if let Some(s) = since {
                q.append_pair("since", s);
            }
            if let Some(n) = count {
                q.append_pair("count", &n.to_string());
            }
        }
        HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }
    }

    fn push(
        &self,
        data: Option<&serde_json::value::RawValue>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<(), ParseError> {
        let data = data.ok_or_else(|| missing("data"))?;
        let trades: Vec<wire::WsTrade<'_>> = serde_json::from_str(data.get())?;
        out.reserve(trades.len());
        for t in &trades {
            out.push(self.ws_trade(t, received_at)?);
        }
        Ok(())
    }

    fn ws_trade(&self, t: &wire::WsTrade<'_>, received_at: Timestamp) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: self.ws_symbols.resolve(t.symbol)?,
            trade_id: TradeId::from_u64(t.trade_id.0),
            price: decimal("price", t.price)?,
            amount: decimal("qty", t.qty)?,
            side: common::side_word("side", t.side)?,
            timestamp: common::rfc3339("timestamp", t.timestamp)?,
            received_at,
        })
    }

    /// The fast path for `trade` pushes (see [`wire::scan_push`]): their trades appended to
    /// `out`; `None`, with `out` as it was, leaves the frame to serde, which then decides
    /// (also on a trade this would refuse: serde's path gives the error).
    fn fast_push(&self, frame: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(frame, out, |text, out| {
            wire::scan_push(text, |t| {
                out.push(self.ws_trade(&t, received_at).ok()?);
                Some(())
            })
        })
    }

    fn rest_trade(
        &self,
        symbol: &Symbol,
        t: &wire::RestTrade<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(t.trade_id.0),
            price: decimal("price", t.price)?,
            amount: decimal("volume", t.volume)?,
            side: match t.side {
                "b" => Side::Buy,
                "s" => Side::Sell,
                other => {
                    return Err(ParseError::field(
                        "side",
                        format_args!("expected b or s, got {:?}", truncate(other)),
                    ))
                }
            },
            timestamp: rest_time(t.time.get())?,
            received_at,
        })
    }
}

/// Kraken's `since` for the trades from `time` on: a microsecond earlier, in nanoseconds.
/// The stream's times are whole microseconds, rounded either way from REST's tenths of one,
/// so the margin keeps every trade at the instant of `time` in the answer.
pub fn since_before(time: Timestamp) -> String {
    time.unix_nanos().saturating_sub(1_000).max(0).to_string()
}

/// A REST trade time, seconds as a JSON number (`1688669597.8277369`), read exactly.
pub fn rest_time(raw: &str) -> Result<Timestamp, ParseError> {
    // Tolerate the number quoted as a string.
    let text = raw
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(raw);
    Timestamp::parse_unix_secs_decimal(text).map_err(|e| ParseError::field("time", e))
}

impl StreamVenue for KrakenVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let mut msg =
            String::from(r#"{"method":"subscribe","params":{"channel":"trade","symbol":["#);
        for (i, s) in symbols.iter().enumerate() {
            if i > 0 {
                msg.push(',');
            }
            // Upper-case letters, digits and one slash: nothing to escape.
            msg.push('"');
            msg.push_str(&symbols::to_ws(s));
            msg.push('"');
        }
        msg.push_str(r#"],"snapshot":true}}"#);
        vec![WsMessage::Text(msg)]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        if self.fast_push(frame, received_at, out).is_some() {
            return Ok(Frame::Data);
        }
        self.parse_with_serde(frame, received_at, out)
    }

    fn ping(&self) -> Option<Ping> {
        Some(Ping {
            every: Duration::from_secs(20),
            message: WsMessage::Text(PING.to_owned()),
        })
    }
}

impl KrakenVenue {
    /// [`StreamVenue::parse`] without its fast path: every frame read with serde. The
    /// reference the fast path is checked against, and the baseline of the parser benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let m: wire::WsMessage<'_> = common::from_json(frame)?;
        if let Some(method) = m.method {
            if m.success == Some(false) || m.error.is_some() {
                let error = m.error.as_deref().map(truncate).unwrap_or("no message");
                return Err(ParseError::Venue(format!(
                    "{} failed: {error}",
                    truncate(method)
                )));
            }
            return Ok(match method {
                "subscribe" | "unsubscribe" => Frame::Ack,
                "pong" => Frame::Heartbeat,
                _ => Frame::Unrecognized,
            });
        }
        match m.channel {
            Some("trade") => {
                // All or nothing: a push is either understood or reported, never
                // half-appended.
                let start = out.len();
                match self.push(m.data, received_at, out) {
                    Ok(()) => Ok(Frame::Data),
                    Err(e) => {
                        out.truncate(start);
                        Err(e)
                    }
                }
            }
            Some("heartbeat") => Ok(Frame::Heartbeat),
            // The connection's status, sent at connect and on changes: nothing of ours.
            Some("status") => Ok(Frame::Ignored),
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl PollVenue for KrakenVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let since = match (req.page, req.last_seen) {
            (Some(page), _) => Some(page.to_owned()),
            (None, Some(c)) => Some(since_before(c.timestamp)),
            (None, None) => None,
        };
        Ok(self.trades_since(symbol, since.as_deref(), None))
    }

    /// The page from the instant of trade `after` on (see [`since_before`]).
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let since = since_before(after.timestamp);
        Some(Ok(self.trades_since(
            symbol,
            Some(&since),
            Some(PAGE_LIMIT),
        )))
    }

    fn request_spacing(&self) -> Duration {
        REQUEST_SPACING
    }

    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let answer: wire::RestAnswer<'_> = common::from_json(resp.body)?;
        if let Some(first) = answer.error.first() {
            return Err(ParseError::Venue(truncate(first).to_owned()));
        }
        let result = answer.result.ok_or_else(|| missing("result"))?;
        if let Some(pair) = result.pair {
            // The answer names the pair its own way (`XXBTZUSD`): it must be the one asked.
            let named = self.rest_symbols.resolve(pair)?;
            if &named != symbol {
                return Err(ParseError::UnknownSymbol(truncate(pair).to_owned()));
            }
        }
        // All or nothing: a page is either understood or reported, never half-appended.
        let start = out.len();
        append_all(out, &result.trades, |t| {
            self.rest_trade(symbol, t, received_at)
        })?;
        // A full page may have more after it: `last` is where they start.
        let older = match result.last {
            Some(last) if result.trades.len() >= PAGE_LIMIT => {
                if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
                    out.truncate(start);
                    return Err(ParseError::field("last", "not a nanosecond cursor"));
                }
                Some(last.into_owned())
            }
            _ => None,
        };
        Ok(Page { older })
    }
}

/// Kraken as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<KrakenVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: KrakenVenue::new,
    instruments: Some(|cfg| Ok(Box::new(KrakenInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Kraken without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const KrakenFactory: VenueFactory<KrakenVenue> = VenueFactory::new(VENUE);
