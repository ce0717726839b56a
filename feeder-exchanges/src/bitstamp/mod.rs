//! Bitstamp: live trades over WebSocket API v2, recent transactions over HTTP API v2.
//!
//! - Stream: `wss://ws.bitstamp.net`, one `bts:subscribe` to `live_trades_[pair]` per symbol.
//!   Bitstamp closes idle connections, so the client sends the app-level `bts:heartbeat`
//!   every 15 s; Bitstamp asks for a reconnect with `bts:request_reconnect` before
//!   maintenance.
//! - Poll and backfill: `GET /api/v2/transactions/{pair}/?time=minute|hour|day`, the smallest
//!   window that reaches back to the last trade seen. There is no pagination and no forward
//!   cursor: `time` names a window back from now, not a point to start from, so a fill cannot
//!   page on from a trade ([`PollVenue::forward_request`] stays unset). What lies beyond the
//!   day the largest window covers cannot be recovered, and the backfill records it as a
//!   `gap` event (after the last trade seen, before the oldest one recovered).
//!
//! Side: `type` 0 is a buy and 1 a sell by the taker.

mod instruments;
mod symbols;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, Ping, PollRequest, PollVenue, StreamVenue,
    WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use serde_json::value::RawValue;
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, Uint};

pub use instruments::BitstampInstruments;

pub use symbols::{to_venue, SymbolMap};

/// The registry name.
pub const NAME: &str = "bitstamp";
/// The production WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://ws.bitstamp.net";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://www.bitstamp.net";

const CHANNEL_PREFIX: &str = "live_trades_";
const HEARTBEAT: &str = r#"{"event":"bts:heartbeat"}"#;
/// Margin added to the time since the last trade before choosing a window, for clock skew
/// between us and Bitstamp and for the time the request takes.
const WINDOW_SLACK_SECS: i64 = 10;

/// The span of `GET /api/v2/transactions/{pair}/?time=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last minute.
    Minute,
    /// The last hour.
    Hour,
    /// The last day.
    Day,
}

impl Window {
    /// The query value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// The smallest window that reaches back to `last_seen` at time `now`.
    ///
    /// Without a last trade only the latest trades matter (the feed starts now), so a minute
    /// is enough. When the last trade is more than a day old, a day is all Bitstamp offers.
    pub fn covering(last_seen: Option<&Cursor>, now: Timestamp) -> Window {
        let Some(c) = last_seen else {
            return Window::Minute;
        };
        let elapsed = now
            .unix_secs()
            .saturating_sub(c.timestamp.unix_secs())
            .saturating_add(WINDOW_SLACK_SECS);
        if elapsed <= 60 {
            Window::Minute
        } else if elapsed <= 3_600 {
            Window::Hour
        } else {
            Window::Day
        }
    }
}

/// The Bitstamp venue: endpoints and symbol names for one configured exchange.
#[derive(Clone, Debug)]
pub struct BitstampVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    symbols: SymbolMap,
}

impl BitstampVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise).
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols: SymbolMap::new(&cfg.symbols)?,
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The transactions request for `symbol` at time `now` (the clock is a parameter so that
    /// the window choice can be tested).
    pub fn transactions_request(
        &self,
        symbol: &Symbol,
        last_seen: Option<&Cursor>,
        now: Timestamp,
    ) -> HttpRequest {
        let pair = to_venue(symbol);
        let mut url = common::join_path(&self.rest_url, &["api", "v2", "transactions", &pair, ""]);
        url.query_pairs_mut()
            .append_pair("time", Window::covering(last_seen, now).as_str());
        HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }
    }

    fn ws_trade(
        &self,
        symbol: &Symbol,
        t: &wire::WsTrade<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        let timestamp = match t.microtimestamp {
            Some(Uint(us)) => common::unix_micros("microtimestamp", us)?,
            None => common::unix_secs("timestamp", t.timestamp.0)?,
        };
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(t.id.0),
            price: decimal("price_str", t.price_str)?,
            amount: decimal("amount_str", t.amount_str)?,
            side: taker_side("type", t.side)?,
            timestamp,
            received_at,
        })
    }

    fn rest_trade(
        &self,
        symbol: &Symbol,
        t: &wire::RestTransaction<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(t.tid.0),
            price: decimal("price", t.price)?,
            amount: decimal("amount", t.amount)?,
            side: taker_side("type", t.side)?,
            timestamp: common::unix_secs("date", t.date.0)?,
            received_at,
        })
    }
}

/// Bitstamp's `type`: 0 when the taker bought, 1 when the taker sold.
fn taker_side(field: &'static str, v: Uint) -> Result<Side, ParseError> {
    match v.0 {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        n => Err(ParseError::field(
            field,
            format_args!("expected 0 (buy) or 1 (sell), got {n}"),
        )),
    }
}

/// A raw JSON value as readable text: the string itself, or the JSON for anything else.
fn raw_text(v: &RawValue) -> String {
    match serde_json::from_str::<std::borrow::Cow<'_, str>>(v.get()) {
        Ok(s) => truncate(&s).to_owned(),
        Err(_) => truncate(v.get()).to_owned(),
    }
}

impl StreamVenue for BitstampVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        symbols
            .iter()
            .map(|s| {
                WsMessage::Text(format!(
                    r#"{{"event":"bts:subscribe","data":{{"channel":"{CHANNEL_PREFIX}{}"}}}}"#,
                    to_venue(s)
                ))
            })
            .collect()
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
        Some(Ping {
            every: Duration::from_secs(15),
            message: WsMessage::Text(HEARTBEAT.to_owned()),
        })
    }
}

impl BitstampVenue {
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
        let scanned = std::str::from_utf8(frame)
            .ok()
            .filter(|_| fast)
            .and_then(wire::scan_trade);
        let env = match scanned {
            Some((channel, trade)) => wire::Envelope {
                event: "trade",
                channel,
                data: None,
                trade: Some(trade),
            },
            None => common::from_json(frame)?,
        };
        match env.event {
            "trade" => {
                // Trades of private channels have the same event name; they are not ours.
                let Some(pair) = env.channel.strip_prefix(CHANNEL_PREFIX) else {
                    return Ok(Frame::Ignored);
                };
                let symbol = self
                    .symbols
                    .from_venue(pair)
                    .ok_or_else(|| ParseError::UnknownSymbol(truncate(pair).to_owned()))?;
                let trade = match env.trade {
                    Some(t) => t,
                    None => {
                        let data = env.data.ok_or_else(|| missing("data"))?;
                        serde_json::from_str(data.get())?
                    }
                };
                out.push(self.ws_trade(symbol, &trade, received_at)?);
                Ok(Frame::Data)
            }
            "bts:subscription_succeeded" | "bts:unsubscription_succeeded" => Ok(Frame::Ack),
            "bts:heartbeat" => Ok(Frame::Heartbeat),
            "bts:request_reconnect" => Ok(Frame::Reconnect),
            "bts:error" => {
                let message = env
                    .data
                    .and_then(|d| serde_json::from_str::<wire::WsError<'_>>(d.get()).ok())
                    .and_then(|e| e.message)
                    .map(|m| truncate(&m).to_owned())
                    .unwrap_or_else(|| "bts:error without a message".to_owned());
                Err(ParseError::Venue(message))
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl PollVenue for BitstampVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        Ok(self.transactions_request(symbol, req.last_seen, Timestamp::now()))
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
            let reason = e
                .reason
                .or(e.error)
                .map(raw_text)
                .unwrap_or_else(|| "an object instead of a list of transactions".to_owned());
            return Err(ParseError::Venue(reason));
        }
        let txs: Vec<wire::RestTransaction<'_>> = common::from_json(body)?;
        // All or nothing: a page is either understood or reported, never half-appended.
        append_all(out, &txs, |t| self.rest_trade(symbol, t, received_at))?;
        Ok(Page::default())
    }

    fn max_pages(&self) -> usize {
        1
    }
}

/// Bitstamp as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<BitstampVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: BitstampVenue::new,
    instruments: Some(|cfg| Ok(Box::new(BitstampInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Bitstamp without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const BitstampFactory: VenueFactory<BitstampVenue> = VenueFactory::new(VENUE);
