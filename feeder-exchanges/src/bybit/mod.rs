//! Bybit v5 spot: `publicTrade` topics over WebSocket, recent trades over REST.
//!
//! - Stream: `wss://stream.bybit.com/v5/public/spot`, `{"op":"subscribe","args":[..]}` with
//!   up to [`ARGS_PER_REQUEST`] topics `publicTrade.BTCUSDT` per request, each request
//!   acknowledged with `success`. Bybit drops connections that stay silent: the client sends
//!   the app-level `{"op":"ping"}` every 20 s and the `pong` answer counts as a heartbeat.
//!   One push may carry several trades.
//! - Poll and backfill: `GET /v5/market/recent-trade?category=spot&symbol=BTCUSDT&limit=60`,
//!   the newest 60 trades (Bybit's spot maximum). There is no older page and no cursor to
//!   page on from a trade, so a fill cannot walk forward ([`PollVenue::forward_request`]
//!   stays unset): a gap of more than 60 trades of one symbol cannot be recovered, and the
//!   backfill records what it could not reach as a `gap` event (after the last trade seen,
//!   before the oldest one recovered).
//!
//! Side: `S` / `side` is the taker's side. Trade ids are strings (19 digits on spot), kept
//! as written; an id or a time written as a JSON number is read the same. Symbols: `BTCUSDT`
//! is mapped only from the configured symbols.

mod instruments;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Frame, HttpRequest, HttpResponse, Page, Ping, PollRequest,
    PollVenue, StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Side, Symbol, Timestamp, Trade};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, SymbolTable};

pub use instruments::BybitInstruments;

/// The registry name.
pub const NAME: &str = "bybit";
/// The production WebSocket endpoint (public spot stream).
pub const DEFAULT_WS_URL: &str = "wss://stream.bybit.com/v5/public/spot";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.bybit.com";
/// Trades per REST answer (Bybit's spot maximum).
pub const PAGE_LIMIT: u32 = 60;
/// Topics per subscribe request (Bybit's spot limit).
pub const ARGS_PER_REQUEST: usize = 10;
/// The app-level keep-alive.
pub const PING: &str = r#"{"op":"ping"}"#;
const TOPIC_PREFIX: &str = "publicTrade.";

/// Bybit's name for a normalized symbol: `BTC-USDT` is `BTCUSDT`.
pub fn to_venue(symbol: &Symbol) -> String {
    let mut s = String::with_capacity(symbol.base().len() + symbol.quote().len());
    s.push_str(symbol.base());
    s.push_str(symbol.quote());
    s
}

/// Bybit's `Buy` / `Sell`, the taker's side.
fn taker_side(field: &'static str, s: &str) -> Result<Side, ParseError> {
    match s {
        "Buy" => Ok(Side::Buy),
        "Sell" => Ok(Side::Sell),
        other => Err(ParseError::field(
            field,
            format_args!("expected Buy or Sell, got {:?}", truncate(other)),
        )),
    }
}

/// The Bybit v5 spot venue: endpoints and symbol names for one configured exchange.
#[derive(Clone, Debug)]
pub struct BybitVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    symbols: SymbolTable,
}

impl BybitVenue {
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

    fn rest_trade(
        &self,
        symbol: &Symbol,
        t: &wire::RestTrade<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: t.exec_id.trade_id("execId")?,
            price: decimal("price", t.price)?,
            amount: decimal("size", t.size)?,
            side: taker_side("side", t.side)?,
            timestamp: common::unix_millis("time", t.time.0)?,
            received_at,
        })
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
            symbol: self.symbols.resolve(t.symbol)?,
            trade_id: t.id.trade_id("i")?,
            price: decimal("p", t.price)?,
            amount: decimal("v", t.size)?,
            side: taker_side("S", t.side)?,
            timestamp: common::unix_millis("T", t.time.0)?,
            received_at,
        })
    }

    /// The fast path for `publicTrade` pushes (see [`wire::scan_push`]): their trades
    /// appended to `out`; `None`, with `out` as it was, leaves the frame to serde, which then
    /// decides (also on a trade this would refuse: serde's path gives the error).
    fn fast_push(&self, frame: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(frame, out, |text, out| {
            wire::scan_push(text, TOPIC_PREFIX, |t| {
                out.push(self.ws_trade(&t, received_at).ok()?);
                Some(())
            })
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
        if let Some(topic) = m.topic {
            if !topic.starts_with(TOPIC_PREFIX) {
                return Ok(Frame::Ignored);
            }
            // All or nothing: a push is either understood or reported, never half-appended.
            let start = out.len();
            return match self.push(m.data, received_at, out) {
                Ok(()) => Ok(Frame::Data),
                Err(e) => {
                    out.truncate(start);
                    Err(e)
                }
            };
        }
        let Some(op) = m.op else {
            return Ok(Frame::Unrecognized);
        };
        if m.success == Some(false) {
            let msg = m.ret_msg.as_deref().map(truncate).unwrap_or("no message");
            return Err(ParseError::Venue(format!("{} failed: {msg}", truncate(op))));
        }
        match op {
            "subscribe" | "unsubscribe" => Ok(Frame::Ack),
            // Spot answers a ping with `op: ping, ret_msg: pong`; other streams with
            // `op: pong`.
            "ping" | "pong" => Ok(Frame::Heartbeat),
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl StreamVenue for BybitVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        symbols
            .chunks(ARGS_PER_REQUEST)
            .map(|chunk| {
                let mut msg = String::from(r#"{"op":"subscribe","args":["#);
                for (i, s) in chunk.iter().enumerate() {
                    if i > 0 {
                        msg.push(',');
                    }
                    // Upper-case letters and digits: nothing to escape.
                    msg.push('"');
                    msg.push_str(TOPIC_PREFIX);
                    msg.push_str(&to_venue(s));
                    msg.push('"');
                }
                msg.push_str("]}");
                WsMessage::Text(msg)
            })
            .collect()
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

impl PollVenue for BybitVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        _req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let mut url = common::join_path(&self.rest_url, &["v5", "market", "recent-trade"]);
        url.query_pairs_mut()
            .append_pair("category", "spot")
            .append_pair("symbol", &to_venue(symbol))
            .append_pair("limit", &PAGE_LIMIT.to_string());
        Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        })
    }

    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let answer: wire::RestAnswer<'_> = common::from_json(resp.body)?;
        if answer.ret_code != 0 {
            let msg = answer
                .ret_msg
                .as_deref()
                .map(truncate)
                .unwrap_or("no message");
            return Err(ParseError::Venue(format!("{}: {msg}", answer.ret_code)));
        }
        let list = answer.result.map(|r| r.list).unwrap_or_default();
        // All or nothing: a page is either understood or reported, never half-appended.
        append_all(out, &list, |t| self.rest_trade(symbol, t, received_at))?;
        Ok(Page::default())
    }

    fn max_pages(&self) -> usize {
        1
    }
}

/// Bybit as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<BybitVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: BybitVenue::new,
    instruments: Some(|cfg| Ok(Box::new(BybitInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Bybit without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const BybitFactory: VenueFactory<BybitVenue> = VenueFactory::new(VENUE);
