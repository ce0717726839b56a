//! Binance spot: the `<symbol>@trade` streams over WebSocket, recent and older trades over
//! REST.
//!
//! - Stream: one combined-stream connection for all symbols,
//!   `wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade`; nothing is
//!   sent to subscribe. Each event comes wrapped as `{"stream":..,"data":{..}}`. Binance sends
//!   a protocol ping every 20 s and drops connections that do not answer within a minute: the
//!   WebSocket library answers, the driver flushes the pong at once. The client sends no
//!   keep-alive of its own; a connection that stays silent for [`STALE_TIMEOUT`] (more than
//!   two of Binance's pings) is stale.
//! - Poll and backfill: `GET /api/v3/trades?symbol=BTCUSDT&limit=1000` for the newest trades
//!   when nothing was seen yet. From a trade seen, forward:
//!   `GET /api/v3/historicalTrades?symbol=..&limit=1000&fromId=<id + 1>` (`fromId` is
//!   inclusive, pages are oldest first), page after page to the newest trade, however long
//!   the outage: Binance keeps the whole history of a symbol there. `historicalTrades` is
//!   chosen over `aggTrades` because it pages through the same trade ids as the stream
//!   (aggregate trades have ids of their own and merge fills, so they could not be
//!   deduplicated against streamed trades). Binance's market-data documentation lists it as a
//!   public endpoint; should a deployment refuse it, the poll keeps the newest page and logs
//!   that a gap may remain. The same endpoint pages back (a page's length below its oldest
//!   id) for a cursor that is not a Binance id.
//! - Rate limit: each `historicalTrades` request weighs 25 of the 6000 an IP may spend a
//!   minute, so the pages of one fill are spaced by [`REQUEST_SPACING`].
//!
//! Side: `m` / `isBuyerMaker` true means the buyer was the maker, so the taker SOLD.
//! Symbols: Binance writes `BTCUSDT`, which cannot be split by rule; names are mapped only
//! from the configured normalized symbols (`BTC-USDT` <-> `BTCUSDT`).

mod instruments;
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

use crate::common::{self, decimal, truncate, SymbolTable};

pub use instruments::BinanceInstruments;

/// The registry name.
pub const NAME: &str = "binance";
/// The production WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://stream.binance.com:9443";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.binance.com";
/// Trades per REST page (Binance's largest).
pub const PAGE_LIMIT: u64 = 1_000;
/// The least time between two pages of one fill: `historicalTrades` weighs 25 and an IP may
/// spend 6000 a minute (Binance spot REST API, "LIMITS" and "Old trade lookup"), that is 240
/// requests a minute.
pub const REQUEST_SPACING: Duration = Duration::from_millis(250);
/// Reconnect when nothing, not even one of Binance's 20-second pings, arrived for this long.
pub const STALE_TIMEOUT: Duration = Duration::from_secs(50);

/// Binance's name for a normalized symbol: `BTC-USDT` is `BTCUSDT`.
pub fn to_venue(symbol: &Symbol) -> String {
    let mut s = String::with_capacity(symbol.base().len() + symbol.quote().len());
    s.push_str(symbol.base());
    s.push_str(symbol.quote());
    s
}

/// The stream of a symbol's trades: `btcusdt@trade`.
pub fn stream_name(symbol: &Symbol) -> String {
    let mut s = to_venue(symbol);
    s.make_ascii_lowercase();
    s.push_str("@trade");
    s
}

/// The Binance spot venue: endpoints and symbol names for one configured exchange.
#[derive(Clone, Debug)]
pub struct BinanceVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    symbols: SymbolTable,
}

impl BinanceVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise).
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols: SymbolTable::new(cfg, |s| vec![to_venue(s)])?,
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn trade(
        &self,
        symbol: Symbol,
        f: Fill<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol,
            trade_id: TradeId::from_u64(f.id),
            price: decimal("price", f.price)?,
            amount: decimal("qty", f.qty)?,
            side: taker_side(f.buyer_is_maker),
            timestamp: common::unix_millis("time", f.time)?,
            received_at,
        })
    }

    fn ws_event(
        &self,
        payload: &str,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let kind: wire::EventType<'_> = serde_json::from_str(payload)?;
        match kind.event {
            "trade" => {
                let t: wire::WsTrade<'_> = serde_json::from_str(payload)?;
                self.push_trade(&t, received_at, out)
            }
            // Sent before Binance closes the connection for maintenance: reconnect now, to
            // another server, rather than lose the trades in between.
            "serverShutdown" => Ok(Frame::Reconnect),
            _ => Ok(Frame::Unrecognized),
        }
    }

    fn push_trade(
        &self,
        t: &wire::WsTrade<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let symbol = self.symbols.resolve(t.symbol)?;
        let fill = Fill {
            id: t.id.0,
            price: t.price,
            qty: t.qty,
            time: t.time.0,
            buyer_is_maker: t.buyer_is_maker,
        };
        out.push(self.trade(symbol, fill, received_at)?);
        Ok(Frame::Data)
    }
}

/// The fields the stream and the REST API share, under either's names.
struct Fill<'a> {
    id: u64,
    price: &'a str,
    qty: &'a str,
    time: u64,
    buyer_is_maker: bool,
}

/// Binance says whether the BUYER was the maker; the taker is then the seller.
pub fn taker_side(buyer_is_maker: bool) -> Side {
    if buyer_is_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

impl StreamVenue for BinanceVenue {
    fn url(&self, symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        let mut url = common::join_path(&self.ws_url, &["stream"]);
        let mut query = String::from("streams=");
        for (i, s) in symbols.iter().enumerate() {
            if i > 0 {
                query.push('/');
            }
            // Upper-case letters and digits, lower-cased: nothing to escape.
            query.push_str(&stream_name(s));
        }
        url.set_query(Some(&query));
        Ok(url)
    }

    fn subscribe(&self, _symbols: &[Symbol]) -> Vec<WsMessage> {
        // The streams are named in the URL.
        Vec::new()
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.read(frame, received_at, out, true)
    }

    fn ping(&self) -> Option<Ping> {
        // Binance pings; the client only answers.
        None
    }

    fn stale_timeout(&self) -> Duration {
        STALE_TIMEOUT
    }
}

impl BinanceVenue {
    /// [`StreamVenue::parse`] without its fast path: every frame read with serde. The
    /// reference the fast path is checked against, and the baseline of the parser benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.read(frame, received_at, out, false)
    }

    /// A frame, through the fast path first when `fast` (see [`crate::scan`]).
    fn read(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
        fast: bool,
    ) -> Result<Frame, ParseError> {
        if let Some(t) = std::str::from_utf8(frame)
            .ok()
            .filter(|_| fast)
            .and_then(wire::WsTrade::scan)
        {
            return self.push_trade(&t, received_at, out);
        }
        let env: wire::Envelope<'_> = common::from_json(frame)?;
        if let Some(data) = env.data {
            return self.ws_event(data.get(), received_at, out);
        }
        if let Some(event) = env.connection_event {
            return self.ws_event(event.get(), received_at, out);
        }
        if let Some(code) = env.code {
            let msg = env.msg.as_deref().map(truncate).unwrap_or("no message");
            return Err(ParseError::Venue(format!("{code}: {msg}")));
        }
        if env.event.is_some() {
            // A raw payload, as on a `/ws/<stream>` URL someone configured.
            let text = std::str::from_utf8(frame)
                .map_err(|_| ParseError::Other("frame is not UTF-8".into()))?;
            return self.ws_event(text, received_at, out);
        }
        if env.id.is_some() && env.stream.is_none() {
            return Ok(Frame::Ack);
        }
        Ok(Frame::Unrecognized)
    }

    fn trades_url(&self, endpoint: &str, symbol: &Symbol, from_id: Option<&str>) -> HttpRequest {
        let mut url = common::join_path(&self.rest_url, &["api", "v3", endpoint]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("symbol", &to_venue(symbol));
            q.append_pair("limit", &PAGE_LIMIT.to_string());
            if let Some(from) = from_id {
                q.append_pair("fromId", from);
            }
        }
        HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }
    }
}

impl PollVenue for BinanceVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        Ok(match req.page {
            Some(from) => self.trades_url("historicalTrades", symbol, Some(from)),
            None => self.trades_url("trades", symbol, None),
        })
    }

    /// `fromId` is inclusive: the page after trade `ID` starts at `ID + 1`. A cursor that is
    /// not a Binance id (seeded from elsewhere) cannot say where to start, so none is made.
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let from = after.trade_id.as_number()?.checked_add(1)?;
        Some(Ok(self.trades_url(
            "historicalTrades",
            symbol,
            Some(&from.to_string()),
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
        let body = resp.body.trim_ascii_start();
        if body.first() == Some(&b'{') {
            let e: wire::RestError<'_> = common::from_json(body)?;
            let msg = e
                .msg
                .as_deref()
                .map(truncate)
                .unwrap_or("an object instead of a list of trades");
            return Err(ParseError::Venue(match e.code {
                Some(c) => format!("{c}: {msg}"),
                None => msg.to_owned(),
            }));
        }
        let trades: Vec<wire::RestTrade<'_>> = common::from_json(body)?;
        // All or nothing: a page is either understood or reported, never half-appended.
        let start = out.len();
        out.reserve(trades.len());
        let mut oldest: Option<u64> = None;
        for t in &trades {
            let fill = Fill {
                id: t.id.0,
                price: t.price,
                qty: t.qty,
                time: t.time.0,
                buyer_is_maker: t.buyer_is_maker,
            };
            match self.trade(symbol.clone(), fill, received_at) {
                Ok(trade) => out.push(trade),
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
            oldest = Some(oldest.map_or(t.id.0, |o| o.min(t.id.0)));
        }
        // Ids are consecutive per symbol: the page before starts a page's length earlier.
        let older = match oldest {
            Some(id) if id > 0 => Some(id.saturating_sub(PAGE_LIMIT).to_string()),
            _ => None,
        };
        Ok(Page { older })
    }
}

/// Binance as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<BinanceVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: BinanceVenue::new,
    instruments: Some(|cfg| Ok(Box::new(BinanceInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Binance without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const BinanceFactory: VenueFactory<BinanceVenue> = VenueFactory::new(VENUE);
