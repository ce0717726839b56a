//! Binance spot messages as they are on the wire, borrowed from the payload.
//!
//! Fields Binance adds later are ignored; fields we need that are missing or malformed are
//! errors.

use std::borrow::Cow;

use serde::Deserialize;

use crate::common::Uint;
use crate::scan;
use serde_json::value::RawValue;

/// Every frame of a combined-stream connection: an event wrapped with its stream name, or the
/// answer to a request sent on the connection (`SUBSCRIBE`, ...), or an error.
///
/// A wrapped trade:
/// ```json
/// {"stream":"btcusdt@trade","data":{"e":"trade","E":1727791043386,"s":"BTCUSDT","t":3866013812,"p":"60944.01000000","q":"0.00010000","T":1727791043385,"m":true,"M":true}}
/// ```
/// Source: Binance spot WebSocket streams, "General WSS information" (combined streams are
/// wrapped as `{"stream":"<streamName>","data":<rawPayload>}`),
/// <https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>.
///
/// The answer to a request, and an error:
/// ```json
/// {"result":null,"id":1}
/// {"code":2,"msg":"Invalid request: unknown variant `SUBSCRIB`","id":1}
/// ```
/// Source: same page, "Live Subscribing/Unsubscribing to streams" and "Error Messages".
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// `btcusdt@trade`.
    #[serde(borrow, default)]
    pub stream: Option<&'a str>,
    /// The event, kept raw until its type is known.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// The id of the request this answers.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// An error code (errors only).
    #[serde(default)]
    pub code: Option<i64>,
    /// An error message (errors only).
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
    /// The event type of a raw (unwrapped) payload, as sent on `/ws/<stream>` connections.
    #[serde(rename = "e", borrow, default)]
    pub event: Option<&'a str>,
    /// A connection event, such as the notice sent before Binance shuts a server down:
    /// `{"event":{"e":"serverShutdown","E":1770123456789}}` (Binance spot WebSocket API,
    /// "Connection events",
    /// <https://developers.binance.com/docs/binance-spot-api-docs/websocket-api/connection-events>).
    #[serde(rename = "event", borrow, default)]
    pub connection_event: Option<&'a RawValue>,
}

/// Just the event type of a payload, read before the payload itself.
#[derive(Debug, Deserialize)]
pub(crate) struct EventType<'a> {
    /// `trade`, `aggTrade`, ...
    #[serde(rename = "e", borrow)]
    pub event: &'a str,
}

/// A `<symbol>@trade` event.
///
/// ```json
/// {"e":"trade","E":1727791043386,"s":"BTCUSDT","t":3866013812,"p":"60944.01000000","q":"0.00010000","T":1727791043385,"m":true,"M":true}
/// ```
/// Source: Binance spot WebSocket streams, "Trade Streams",
/// <https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>.
/// `m` is true when the buyer was the maker, that is when the taker sold. The buyer and
/// seller order ids (`b`, `a`) were removed from this stream in June 2024.
#[derive(Debug, Deserialize)]
pub(crate) struct WsTrade<'a> {
    /// Symbol, `BTCUSDT`.
    #[serde(rename = "s", borrow)]
    pub symbol: &'a str,
    /// Trade id, increasing per symbol (a number; a string of digits is read too).
    #[serde(rename = "t")]
    pub id: Uint,
    /// Price, exact text.
    #[serde(rename = "p", borrow)]
    pub price: &'a str,
    /// Quantity of the base asset, exact text.
    #[serde(rename = "q", borrow)]
    pub qty: &'a str,
    /// Trade time, milliseconds (a number; a string of digits is read too).
    #[serde(rename = "T")]
    pub time: Uint,
    /// The buyer was the maker (the taker sold).
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// One trade of `GET /api/v3/trades` and `GET /api/v3/historicalTrades`, oldest first.
///
/// ```json
/// {"id":3866013812,"price":"60944.01000000","qty":"0.00010000","quoteQty":"6.09440100","time":1727791043385,"isBuyerMaker":true,"isBestMatch":true}
/// ```
/// Source: Binance spot REST API, "Market Data endpoints", "Recent trades list" and "Old
/// trade lookup", <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestTrade<'a> {
    /// Trade id (the same id as `t` on the stream), a number or a string of digits.
    pub id: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Quantity of the base asset, exact text.
    #[serde(borrow)]
    pub qty: &'a str,
    /// Trade time, milliseconds, a number or a string of digits.
    pub time: Uint,
    /// The buyer was the maker (the taker sold).
    #[serde(rename = "isBuyerMaker")]
    pub buyer_is_maker: bool,
}

/// The object the REST API answers with an error status or instead of a list.
///
/// ```json
/// {"code":-1121,"msg":"Invalid symbol."}
/// ```
/// Source: Binance spot REST API, "Error codes",
/// <https://developers.binance.com/docs/binance-spot-api-docs/errors>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestError<'a> {
    /// Binance's error code.
    #[serde(default)]
    pub code: Option<i64>,
    /// What went wrong.
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
}

impl<'a> WsTrade<'a> {
    /// The fast path for trade events, in a combined-stream envelope or raw (see
    /// [`crate::scan`]), in one pass. `None` leaves the message to serde: any other event, an
    /// envelope with other known fields, a field of an unexpected JSON type or named twice, an
    /// escape.
    pub(crate) fn scan(text: &'a str) -> Option<Self> {
        let mut nested = Fields::default();
        // The top level's own trade fields, for a raw event.
        let mut raw = Fields::default();
        let mut data = None;
        // Top-level fields of the envelope that send a message down another path.
        let mut other = false;
        scan::members_nested(
            text,
            "data",
            &mut |key, value| nested.take(key, value),
            &mut |key, value| {
                match key {
                    "data" => scan::once(&mut data, value.object())?,
                    "stream" => {
                        value.str()?;
                    }
                    "id" | "code" | "msg" | "event" => other = true,
                    _ => raw.take(key, value)?,
                }
                Some(())
            },
        )?;
        if other {
            return None;
        }
        match data {
            // In an envelope, a top-level `e` is for serde.
            Some(_) if raw.event.is_some() => None,
            Some(_) => nested.trade(),
            None => raw.trade(),
        }
    }
}

/// The fields of a trade event, as the fast path finds them.
#[derive(Default)]
struct Fields<'a> {
    event: Option<&'a str>,
    symbol: Option<&'a str>,
    id: Option<Uint>,
    price: Option<&'a str>,
    qty: Option<&'a str>,
    time: Option<Uint>,
    maker: Option<bool>,
}

impl<'a> Fields<'a> {
    fn take(&mut self, key: &str, value: scan::Raw<'a>) -> Option<()> {
        match key {
            "e" => scan::once(&mut self.event, value.str()),
            "s" => scan::once(&mut self.symbol, value.str()),
            "t" => scan::once(&mut self.id, value.uint().map(Uint)),
            "p" => scan::once(&mut self.price, value.str()),
            "q" => scan::once(&mut self.qty, value.str()),
            "T" => scan::once(&mut self.time, value.uint().map(Uint)),
            "m" => scan::once(&mut self.maker, value.bool()),
            _ => Some(()),
        }
    }

    fn trade(self) -> Option<WsTrade<'a>> {
        (self.event? == "trade").then_some(())?;
        Some(WsTrade {
            symbol: self.symbol?,
            id: self.id?,
            price: self.price?,
            qty: self.qty?,
            time: self.time?,
            buyer_is_maker: self.maker?,
        })
    }
}
