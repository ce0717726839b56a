//! Bitfinex: the public `trades` channel of WebSocket v2, public trade history over REST v2.
//!
//! - Stream: `wss://api-pub.bitfinex.com/ws/2`, one `subscribe` to `trades` per symbol. The
//!   `subscribed` answer names the channel id that every later data array of that symbol
//!   starts with; ids are per connection, so the map is cleared whenever a new connection
//!   subscribes. A snapshot of recent trades comes first, then a `te` (trade executed) and a
//!   `tu` (trade execution update) for every trade, and `hb` heartbeats on quiet channels.
//!   An `info` event with code 20051 (server restart) or 20061 (maintenance over, resubscribe
//!   advised) asks for a new connection.
//! - Poll: `GET /v2/trades/{symbol}/hist?limit=1000&sort=-1`, newest first, bounded below by
//!   `start` (the last trade seen) and paged to older trades with `end` (milliseconds,
//!   inclusive).
//! - Fill from a trade seen: forward by time, oldest first,
//!   `GET /v2/trades/{symbol}/hist?limit=10000&sort=1&start=<its millisecond>`, page after
//!   page to the newest trade, however long the outage. `start` is inclusive and several
//!   trades share a millisecond, so each page starts again at the millisecond of the last
//!   trade delivered: the rest of that millisecond comes with it, and the trades of it
//!   already had are dropped by id. A single millisecond with more than a page of trades
//!   could not be paged through by time.
//! - Rate limit: the trades endpoint takes 15 requests a minute, so the pages of one fill are
//!   [`REQUEST_SPACING`] apart.
//!
//! `te` and `tu` carry the same trade with the same id on the public channel. Only `te` is
//! used: it is sent at execution, while `tu` follows once the trade is written and can lag
//! by seconds under load. Taking one of the two keeps every trade once in the output.
//!
//! Symbols: Bitfinex names some assets its own way (Tether is `UST`): `BTC-USDT` is
//! subscribed as `tBTCUST` and its trades are written as `BTC-USDT` (see [`to_venue`]).
//! Side: the sign of the amount says what the taker did (positive: bought). The amount
//! written is its absolute value. Ids and times are JSON numbers; strings of digits are read
//! the same.

mod instruments;
mod symbols;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, Ping, PollRequest,
    PollVenue, StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use url::Url;

use crate::common::{self, decimal, truncate, SymbolTable, BITFINEX_ASSETS};

pub use instruments::BitfinexInstruments;

pub use symbols::to_venue;

/// The registry name.
pub const NAME: &str = "bitfinex";
/// The production WebSocket endpoint for public channels.
pub const DEFAULT_WS_URL: &str = "wss://api-pub.bitfinex.com/ws/2";
/// The production REST endpoint for public data.
pub const DEFAULT_REST_URL: &str = "https://api-pub.bitfinex.com";
/// Trades per REST page (Bitfinex allows up to 10000; the default is 125).
pub const PAGE_LIMIT: usize = 1_000;
/// Trades per page when filling forward from a trade: Bitfinex's largest, since its pages
/// are few and far between.
pub const FORWARD_PAGE_LIMIT: usize = 10_000;
/// The least time between two pages of one fill: the trades endpoint takes 15 requests a
/// minute (Bitfinex API v2, "Trades").
pub const REQUEST_SPACING: Duration = Duration::from_secs(4);

/// Info code: the server is restarting, reconnect.
pub const INFO_RECONNECT: i64 = 20051;
/// Info code: maintenance begins; pause until 20061.
pub const INFO_MAINTENANCE_START: i64 = 20060;
/// Info code: maintenance ended; resubscribing is advised.
pub const INFO_MAINTENANCE_END: i64 = 20061;

const PING: &str = r#"{"event":"ping","cid":1}"#;

/// The Bitfinex venue: endpoints, symbol names and the channel ids of the current
/// connection.
#[derive(Debug)]
pub struct BitfinexVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    /// The configured symbols by Bitfinex's pair names (`tBTCUST` for `BTC-USDT`).
    symbols: SymbolTable,
    /// Channel id to symbol, from the `subscribed` answers of the current connection.
    /// Cleared by [`StreamVenue::subscribe`], which the driver calls once per new connection;
    /// filled by `parse` (hence the lock: parsing takes `&self`). Never contended: one
    /// connection's frames are parsed one at a time.
    channels: Mutex<HashMap<u64, Symbol>>,
}

impl BitfinexVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise). Symbols are normalized (`BTC-USDT`, not Bitfinex's `BTC-UST`).
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        BITFINEX_ASSETS.check(cfg)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols: SymbolTable::new(cfg, |s| vec![to_venue(s)])?,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<u64, Symbol>> {
        // The map is valid after any panic in between: a poisoned lock is still usable.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn trade(
        &self,
        symbol: &Symbol,
        row: &wire::TradeRow<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        let (side, amount) = signed_amount(number_text("AMOUNT", row.amount)?)?;
        let price = decimal("PRICE", number_text("PRICE", row.price)?)?;
        if price.is_sign_negative() {
            return Err(ParseError::field("PRICE", "negative"));
        }
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(row.id.0),
            price,
            amount,
            side,
            timestamp: millis("MTS", row.mts.0)?,
            received_at,
        })
    }

    fn event(&self, e: &wire::Event<'_>) -> Result<Frame, ParseError> {
        match e.event {
            "subscribed" => {
                if e.channel != Some("trades") {
                    return Ok(Frame::Ignored);
                }
                let chan_id = e.chan_id.ok_or_else(|| common::missing("chanId"))?;
                let name = e.symbol.ok_or_else(|| common::missing("symbol"))?;
                let symbol = self.symbols.resolve(name)?;
                self.channels().insert(chan_id, symbol);
                Ok(Frame::Ack)
            }
            "unsubscribed" => {
                if let Some(id) = e.chan_id {
                    self.channels().remove(&id);
                }
                Ok(Frame::Ack)
            }
            "info" => match e.code {
                Some(INFO_RECONNECT | INFO_MAINTENANCE_END) => Ok(Frame::Reconnect),
                // Maintenance: the channels go quiet until 20061; nothing to do meanwhile.
                Some(INFO_MAINTENANCE_START) => Ok(Frame::Ignored),
                Some(_) => Ok(Frame::Unrecognized),
                // The greeting on connect: version and platform status.
                None => Ok(Frame::Ack),
            },
            "conf" => Ok(Frame::Ack),
            "pong" => Ok(Frame::Heartbeat),
            "error" => {
                let msg = e
                    .msg
                    .as_deref()
                    .map(truncate)
                    .unwrap_or("error without a message");
                Err(ParseError::Venue(match e.code {
                    Some(code) => format!("{code}: {msg}"),
                    None => msg.to_owned(),
                }))
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

/// The text of a JSON number token, or of a string (when Bitfinex is asked to send decimals
/// as strings). Never through floating point.
fn number_text<'a>(field: &'static str, t: &'a str) -> Result<&'a str, ParseError> {
    match t.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<&str>(t).map_err(|e| ParseError::field(field, e)),
        Some(b'-' | b'0'..=b'9') => Ok(t),
        _ => Err(ParseError::field(
            field,
            format_args!("expected a number, got {}", truncate(t)),
        )),
    }
}

/// Bitfinex's signed amount: the sign is the taker's side, the magnitude the amount.
fn signed_amount(text: &str) -> Result<(Side, Decimal), ParseError> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let amount = decimal("AMOUNT", magnitude)?;
    if amount.is_sign_negative() {
        return Err(ParseError::field("AMOUNT", "two signs"));
    }
    let side = if amount.is_zero() {
        Side::Unknown
    } else if negative {
        Side::Sell
    } else {
        Side::Buy
    };
    Ok((side, amount))
}

/// Milliseconds since the epoch as a timestamp, rejecting values that do not fit.
fn millis(field: &'static str, ms: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(ms)
        .ok()
        .filter(|m| m.checked_mul(1_000_000).is_some())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| ParseError::field(field, format_args!("{ms} is out of range")))
}

/// Appends the trades of `rows`, all or nothing.
fn push_all(
    venue: &BitfinexVenue,
    symbol: &Symbol,
    rows: &[wire::TradeRow<'_>],
    received_at: Timestamp,
    out: &mut Vec<Trade>,
) -> Result<(), ParseError> {
    let start = out.len();
    out.reserve(rows.len());
    for row in rows {
        match venue.trade(symbol, row, received_at) {
            Ok(t) => out.push(t),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

impl StreamVenue for BitfinexVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        // A new connection: the channel ids of the previous one mean nothing now.
        self.channels().clear();
        symbols
            .iter()
            .map(|s| {
                WsMessage::Text(format!(
                    r#"{{"event":"subscribe","channel":"trades","symbol":"{}"}}"#,
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
        if self.fast_te(frame, received_at, out).is_some() {
            return Ok(Frame::Data);
        }
        self.parse_with_serde(frame, received_at, out)
    }

    fn ping(&self) -> Option<Ping> {
        Some(Ping {
            every: Duration::from_secs(15),
            message: WsMessage::Text(PING.to_owned()),
        })
    }
}

impl BitfinexVenue {
    /// The fast path for `te` messages (see [`wire::scan_te`]): the trade appended to `out`;
    /// `None`, with `out` as it was, leaves the frame to serde, which then decides (also on a
    /// trade this would refuse: serde's path gives the error).
    fn fast_te(&self, frame: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(frame, out, |text, out| {
            let (chan_id, row) = wire::scan_te(text)?;
            let symbol = self.channel_symbol(chan_id).ok()?;
            out.push(self.trade(&symbol, &row, received_at).ok()?);
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
        if frame.trim_ascii_start().first() == Some(&b'{') {
            let e: wire::Event<'_> = common::from_json(frame)?;
            return self.event(&e);
        }
        let m: wire::ChannelMessage<'_> = common::from_json(frame)?;
        let body = m.body.get();
        if body.starts_with('"') {
            let kind: &str = serde_json::from_str(body)?;
            return match kind {
                "hb" => Ok(Frame::Heartbeat),
                "te" => {
                    let raw = m.trade.ok_or_else(|| common::missing("trade"))?;
                    let row: wire::TradeRow<'_> = serde_json::from_str(raw.get())?;
                    let symbol = self.channel_symbol(m.chan_id)?;
                    out.push(self.trade(&symbol, &row, received_at)?);
                    Ok(Frame::Data)
                }
                // The same trade as the `te` before it (see the module docs).
                "tu" => Ok(Frame::Ignored),
                // Funding trades, not exchange trades.
                "fte" | "ftu" => Ok(Frame::Ignored),
                _ => Ok(Frame::Unrecognized),
            };
        }
        // The snapshot of recent trades that follows a subscription, newest first.
        let rows: Vec<wire::TradeRow<'_>> = serde_json::from_str(body)?;
        let symbol = self.channel_symbol(m.chan_id)?;
        push_all(self, &symbol, &rows, received_at, out)?;
        Ok(Frame::Data)
    }

    fn channel_symbol(&self, chan_id: u64) -> Result<Symbol, ParseError> {
        self.channels().get(&chan_id).cloned().ok_or_else(|| {
            ParseError::Other(format!(
                "data on channel {chan_id}, which this connection did not subscribe"
            ))
        })
    }
}

impl PollVenue for BitfinexVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let name = to_venue(symbol);
        let mut url = common::join_path(&self.rest_url, &["v2", "trades", &name, "hist"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &PAGE_LIMIT.to_string());
            q.append_pair("sort", "-1");
            if let Some(c) = req.last_seen {
                let ms = c.timestamp.unix_nanos().div_euclid(1_000_000).max(0);
                q.append_pair("start", &ms.to_string());
            }
            if let Some(end) = req.page {
                q.append_pair("end", end);
            }
        }
        Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        })
    }

    /// The trades from the millisecond of `after` on, oldest first.
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let name = to_venue(symbol);
        let mut url = common::join_path(&self.rest_url, &["v2", "trades", &name, "hist"]);
        let ms = after.timestamp.unix_nanos().div_euclid(1_000_000).max(0);
        url.query_pairs_mut()
            .append_pair("limit", &FORWARD_PAGE_LIMIT.to_string())
            .append_pair("sort", "1")
            .append_pair("start", &ms.to_string());
        Some(Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }))
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
            let e: wire::RestErrorObject<'_> = common::from_json(body)?;
            let m = e.error.or(e.message);
            return Err(ParseError::Venue(
                m.as_deref()
                    .map(truncate)
                    .unwrap_or("an object instead of a list of trades")
                    .to_owned(),
            ));
        }
        let error_array = body
            .strip_prefix(b"[")
            .is_some_and(|rest| rest.trim_ascii_start().first() == Some(&b'"'));
        if error_array {
            // ["error", CODE, "message"]
            let parts: Vec<&RawValue> = common::from_json(body)?;
            let text: Vec<&str> = parts.iter().skip(1).map(|p| p.get()).collect();
            return Err(ParseError::Venue(truncate(&text.join(" ")).to_owned()));
        }
        let rows: Vec<wire::TradeRow<'_>> = common::from_json(body)?;
        push_all(self, symbol, &rows, received_at, out)?;
        // A full page may have older neighbours: the next page ends where this one ends
        // (`end` is inclusive; repeats are dropped by the driver). A page all within one
        // millisecond steps one millisecond back, or paging would not move.
        let older = if rows.len() < PAGE_LIMIT {
            None
        } else {
            let oldest = rows.iter().map(|r| r.mts.0).min();
            let newest = rows.iter().map(|r| r.mts.0).max();
            match (oldest, newest) {
                (Some(o), Some(n)) if o == n => o.checked_sub(1),
                (Some(o), _) => Some(o),
                _ => None,
            }
            .map(|ms| ms.to_string())
        };
        Ok(Page { older })
    }
}

/// Bitfinex as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<BitfinexVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: BitfinexVenue::new,
    instruments: Some(|cfg| Ok(Box::new(BitfinexInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Bitfinex without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const BitfinexFactory: VenueFactory<BitfinexVenue> = VenueFactory::new(VENUE);
