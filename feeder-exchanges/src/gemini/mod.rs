//! Gemini: trades from the `l2` subscription of WebSocket market data v2, trades over REST v1.
//!
//! - Stream: `wss://api.gemini.com/v2/marketdata`, one `subscribe` to `l2` for all symbols.
//!   There is no separate acknowledgement: the first `l2_updates` of each symbol carries the
//!   book and the latest trades (`trades`), then every trade comes as a `trade` message. Book
//!   updates are skipped without reading their levels. A protocol ping keeps the connection
//!   alive; `heartbeat` messages are taken as proof of life.
//! - Poll and backfill: `GET /v1/trades/{symbol}?limit_trades=500`, newest first, when nothing
//!   was seen yet. From a trade seen, the fill walks forward
//!   ([`PollVenue::forward_request`]): `since_tid=<id>` gives the (at most 500) trades right
//!   after that id, page after page to the newest trade. Gemini serves seven calendar days of
//!   trades this way; an outage longer than that loses what is older. A poll's full page
//!   hands on its newest id the same way (the driver's "older page" cursor is only a cursor
//!   here).
//! - Rate limit: Gemini takes 120 public requests a minute and asks for no more than one a
//!   second, so the pages of one fill are [`REQUEST_SPACING`] apart.
//!
//! Ids and times are read as numbers or strings of digits; a `trade` without `tid` takes
//! its id from `event_id`.
//! Side: `side` (stream) and `type` (REST) are the taker's side. Auction and block trades
//! have no taker and are written as `unknown`.
//! Symbols: `BTC-USD` is `BTCUSD` on the stream and `btcusd` in REST paths.

mod instruments;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, PollRequest, PollVenue, StreamVenue,
    WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, Uint};

pub use instruments::GeminiInstruments;

/// The registry name.
pub const NAME: &str = "gemini";
/// The production WebSocket endpoint of market data v2.
pub const DEFAULT_WS_URL: &str = "wss://api.gemini.com/v2/marketdata";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.gemini.com";
/// Trades per REST page: Gemini's largest.
pub const PAGE_LIMIT: usize = 500;
/// The least time between two pages of one fill: Gemini limits public calls to 120 a
/// minute and recommends no more than one a second (Gemini REST API, "Rate Limits").
pub const REQUEST_SPACING: std::time::Duration = std::time::Duration::from_secs(1);

/// Gemini's name for a normalized symbol: `BTC-USD` is `BTCUSD`.
pub fn to_venue(symbol: &Symbol) -> String {
    let mut s = String::with_capacity(symbol.base().len() + symbol.quote().len());
    s.push_str(symbol.base());
    s.push_str(symbol.quote());
    s
}

/// The Gemini venue: endpoints and symbol names for one configured exchange.
#[derive(Clone, Debug)]
pub struct GeminiVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    /// The configured symbols by Gemini's name; built from the config because `BTCUSD`
    /// alone does not say where the base ends.
    symbols: HashMap<Box<str>, Symbol>,
}

impl GeminiVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise). Two symbols with the same Gemini name (`AB-CD` and `ABC-D`) are an error.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        let mut symbols: HashMap<Box<str>, Symbol> = HashMap::with_capacity(cfg.symbols.len());
        for s in &cfg.symbols {
            let name = to_venue(s);
            if let Some(prev) = symbols.get(name.as_str()) {
                if prev != s {
                    return Err(cfg.invalid(
                        "symbols",
                        format!("{prev} and {s} are both called {name:?} on Gemini"),
                    ));
                }
                continue;
            }
            symbols.insert(name.into_boxed_str(), s.clone());
        }
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols,
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn symbol(&self, name: &str) -> Result<&Symbol, ParseError> {
        self.symbols
            .get(name)
            .ok_or_else(|| ParseError::UnknownSymbol(truncate(name).to_owned()))
    }

    #[allow(clippy::too_many_arguments)]
    fn trade(
        &self,
        symbol: &Symbol,
        tid: Uint,
        ms: Uint,
        price: &str,
        amount: &str,
        side: &str,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(tid.0),
            price: decimal("price", price)?,
            amount: decimal("quantity", amount)?,
            side: taker_side(side)?,
            timestamp: millis("timestamp", ms.0)?,
            received_at,
        })
    }
}

/// The id of a trade on the stream: `tid`, or `event_id` when a `trade` comes without it.
fn trade_id(tid: Option<Uint>, event_id: Option<Uint>) -> Result<Uint, ParseError> {
    tid.or(event_id).ok_or_else(|| missing("tid"))
}

/// The taker's side as Gemini writes it; trades without a taker are `unknown`.
fn taker_side(s: &str) -> Result<Side, ParseError> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        "auction" | "block" => Ok(Side::Unknown),
        other => Err(ParseError::field(
            "side",
            format_args!(
                "expected buy, sell, auction or block, got {:?}",
                truncate(other)
            ),
        )),
    }
}

/// Milliseconds since the epoch as a timestamp, rejecting values that do not fit.
fn millis(field: &'static str, ms: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(ms)
        .ok()
        .filter(|m| m.checked_mul(1_000_000).is_some())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| ParseError::field(field, format_args!("{ms} is out of range")))
}

impl StreamVenue for GeminiVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let mut msg =
            String::from(r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["#);
        for (i, s) in symbols.iter().enumerate() {
            if i > 0 {
                msg.push(',');
            }
            // Upper-case letters and digits only: nothing to escape.
            msg.push('"');
            msg.push_str(&to_venue(s));
            msg.push('"');
        }
        msg.push_str("]}]}");
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
}

impl GeminiVenue {
    /// A `trade` message's trade.
    fn ws_trade(&self, m: &wire::WsMessage<'_>, received_at: Timestamp) -> Result<Trade, ParseError> {
        let symbol = self.symbol(m.symbol.ok_or_else(|| missing("symbol"))?)?;
        self.trade(
            symbol,
            trade_id(m.tid, m.event_id)?,
            m.timestamp.ok_or_else(|| missing("timestamp"))?,
            m.price.ok_or_else(|| missing("price"))?,
            m.quantity.ok_or_else(|| missing("quantity"))?,
            m.side.ok_or_else(|| missing("side"))?,
            received_at,
        )
    }

    /// The fast path for `trade` messages (see [`wire::WsMessage::scan`]): the trade appended
    /// to `out`; `None`, with `out` as it was, leaves the frame to serde, which then decides
    /// (also on a trade this would refuse: serde's path gives the error).
    fn fast_push(&self, frame: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(frame, out, |text, out| {
            let m = wire::WsMessage::scan(text)?;
            out.push(self.ws_trade(&m, received_at).ok()?);
            Some(())
        })
    }

    /// [`StreamVenue::parse`] without its fast path: every frame read with serde. The
    /// reference the fast path is checked against, and the baseline of the parser benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let m: wire::WsMessage<'_> = common::from_json(frame)?;
        match m.kind {
            "trade" => {
                out.push(self.ws_trade(&m, received_at)?);
                Ok(Frame::Data)
            }
            "l2_updates" => {
                let Some(trades) = m.trades else {
                    // A book update: nothing of ours.
                    return Ok(Frame::Ignored);
                };
                let outer = m.symbol;
                let start = out.len();
                out.reserve(trades.len());
                for t in &trades {
                    let parsed = t
                        .symbol
                        .or(outer)
                        .ok_or_else(|| missing("symbol"))
                        .and_then(|name| self.symbol(name))
                        .and_then(|symbol| {
                            self.trade(
                                symbol,
                                trade_id(t.tid, t.event_id)?,
                                t.timestamp,
                                t.price,
                                t.quantity,
                                t.side,
                                received_at,
                            )
                        });
                    match parsed {
                        Ok(trade) => out.push(trade),
                        Err(e) => {
                            out.truncate(start);
                            return Err(e);
                        }
                    }
                }
                Ok(Frame::Data)
            }
            "heartbeat" => Ok(Frame::Heartbeat),
            "error" => {
                let mut text = m
                    .reason
                    .as_deref()
                    .map(truncate)
                    .unwrap_or("error without a reason")
                    .to_owned();
                if let Some(msg) = m.message.as_deref() {
                    text.push_str(": ");
                    text.push_str(truncate(msg));
                }
                Err(ParseError::Venue(text))
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl GeminiVenue {
    /// `GET /v1/trades/{symbol}?limit_trades=500[&since_tid=ID]`.
    fn trades_since(&self, symbol: &Symbol, since_tid: Option<&str>) -> HttpRequest {
        let name = to_venue(symbol).to_ascii_lowercase();
        let mut url = common::join_path(&self.rest_url, &["v1", "trades", &name]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit_trades", &PAGE_LIMIT.to_string());
            if let Some(tid) = since_tid {
                q.append_pair("since_tid", tid);
            }
        }
        HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }
    }
}

impl PollVenue for GeminiVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        // The next page after a full one, else the trades after the last one seen.
        let since = req
            .page
            .or_else(|| req.last_seen.map(|c| c.trade_id.as_str()));
        Ok(self.trades_since(symbol, since))
    }

    /// `since_tid` is exclusive and its pages run from the oldest trade after it. A cursor
    /// that is not a Gemini trade id cannot name one, so none is made.
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let tid = after.trade_id.as_number()?;
        Some(Ok(self.trades_since(symbol, Some(&tid.to_string()))))
    }

    fn request_spacing(&self) -> std::time::Duration {
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
            let mut text = e
                .reason
                .as_deref()
                .map(truncate)
                .unwrap_or("an object instead of a list of trades")
                .to_owned();
            if let Some(m) = e.message.as_deref() {
                text.push_str(": ");
                text.push_str(truncate(m));
            }
            return Err(ParseError::Venue(text));
        }
        let trades: Vec<wire::RestTrade<'_>> = common::from_json(body)?;
        // All or nothing: a page is either understood or reported, never half-appended.
        append_all(out, trades.iter().filter(|t| !t.broken), |t| {
            self.trade(
                symbol,
                t.tid,
                t.timestampms,
                t.price,
                t.amount,
                t.kind,
                received_at,
            )
        })?;
        let older = (trades.len() >= PAGE_LIMIT)
            .then(|| trades.iter().map(|t| t.tid.0).max())
            .flatten()
            .map(|tid| tid.to_string());
        Ok(Page { older })
    }
}

/// Gemini as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<GeminiVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: GeminiVenue::new,
    instruments: Some(|cfg| Ok(Box::new(GeminiInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Gemini without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const GeminiFactory: VenueFactory<GeminiVenue> = VenueFactory::new(VENUE);
