//! Gemini's messages as they are on the wire, borrowed from the payload.
//!
//! Market data v2 messages are flat objects tagged by `type`; one struct with optional
//! fields reads every one of them in a pass. The order book `changes` of `l2_updates` are
//! not declared, so serde skips them without building anything. Ids are read as numbers or
//! digit strings alike.

use std::borrow::Cow;

use serde::Deserialize;

use crate::common::Uint;
use crate::scan;

/// Any market data v2 message.
///
/// The first answer to an `l2` subscription, with the book and the latest trades:
/// ```json
/// {"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","9122.04","0.00121425"],["sell","9122.07","0.98942292"]],"trades":[{"type":"trade","symbol":"BTCUSD","eventid":169841458,"timestamp":1560976400428,"price":"9122.04","quantity":"0.0073173","side":"sell","tid":2840140800042677}]}
/// ```
/// A trade after that, and a book update (ignored):
/// ```json
/// {"type":"trade","symbol":"BTCUSD","event_id":3575573053,"timestamp":1560976400428,"price":"9004.21000000","quantity":"0.09110000","side":"buy","tid":2840140800042678}
/// {"type":"l2_updates","symbol":"BTCUSD","changes":[["sell","9160.20","0.1921229751"]]}
/// ```
/// Source: Gemini WebSocket market data v2, "Level 2 Data",
/// <https://docs.gemini.com/websocket/market-data/v2/level-2-data>. `side` is the taker's
/// side; `timestamp` is in milliseconds. Servers have sent `trade` messages with only
/// `event_id`, carrying the trade's id, and no `tid`: the id is then read from there.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// `l2_updates`, `trade`, `heartbeat`, `candles_1m_updates`, `error`, ...
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
    /// The market, `BTCUSD`.
    #[serde(borrow, default)]
    pub symbol: Option<&'a str>,
    /// Trade id (`trade`).
    #[serde(default)]
    pub tid: Option<Uint>,
    /// The event's id (`trade`): the trade id of a `trade` sent without `tid`.
    #[serde(default)]
    pub event_id: Option<Uint>,
    /// Trade time in milliseconds (`trade`, `heartbeat`).
    #[serde(default)]
    pub timestamp: Option<Uint>,
    /// Price, exact text (`trade`).
    #[serde(borrow, default)]
    pub price: Option<&'a str>,
    /// Amount of the base asset, exact text (`trade`).
    #[serde(borrow, default)]
    pub quantity: Option<&'a str>,
    /// The taker's side, `buy` or `sell` (`trade`).
    #[serde(borrow, default)]
    pub side: Option<&'a str>,
    /// The latest trades, in the first `l2_updates` of a subscription.
    #[serde(borrow, default)]
    pub trades: Option<Vec<WsTrade<'a>>>,
    /// What went wrong (`error`).
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    /// More on what went wrong (`error`).
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// One entry of the `trades` of an `l2_updates` message: a `trade` message in full.
///
/// ```json
/// {"type":"trade","symbol":"BTCUSD","eventid":169841458,"timestamp":1560976400428,"price":"9122.04","quantity":"0.0073173","side":"sell","tid":2840140800042677}
/// ```
/// Source: as [`WsMessage`].
#[derive(Debug, Deserialize)]
pub(crate) struct WsTrade<'a> {
    /// The market, when given per trade.
    #[serde(borrow, default)]
    pub symbol: Option<&'a str>,
    /// Trade id.
    #[serde(default)]
    pub tid: Option<Uint>,
    /// The event's id, standing in for a missing `tid` as on a `trade` message. Not
    /// `eventid`, which numbers the `l2_updates` event rather than the trade.
    #[serde(default)]
    pub event_id: Option<Uint>,
    /// Trade time in milliseconds.
    pub timestamp: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Amount of the base asset, exact text.
    #[serde(borrow)]
    pub quantity: &'a str,
    /// The taker's side.
    #[serde(borrow)]
    pub side: &'a str,
}

/// One trade of `GET /v1/trades/{symbol}`, newest first.
///
/// ```json
/// {"timestamp":1547146811,"timestampms":1547146811357,"tid":5335307668,"price":"3610.85","amount":"0.27413495","exchange":"gemini","type":"buy"}
/// ```
/// Source: Gemini REST API, "List Trades",
/// <https://developer.gemini.com/trading/rest-api/market-data/list-trades>. `type` is the
/// taker's side (`buy`: an incoming buy order took an ask), or `auction` / `block` for
/// trades without a taker; `broken` marks a reversed trade (only sent when asked for).
#[derive(Debug, Deserialize)]
pub(crate) struct RestTrade<'a> {
    /// Trade time in milliseconds.
    pub timestampms: Uint,
    /// Trade id.
    pub tid: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Amount of the base asset, exact text.
    #[serde(borrow)]
    pub amount: &'a str,
    /// The taker's side, or the kind of trade.
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
    /// True for a reversed trade.
    #[serde(default)]
    pub broken: bool,
}

/// The object the REST API answers when it refuses a request.
///
/// ```json
/// {"result":"error","reason":"InvalidSymbol","message":"Supplied value 'btcxyz' is not a valid symbol"}
/// ```
/// Source: Gemini REST API, "Error Codes" and the `ErrorResponse` schema,
/// <https://docs.gemini.com/rest/~schemas>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestError<'a> {
    /// A short description.
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    /// The detailed message.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

impl<'a> WsMessage<'a> {
    /// The fast path for `trade` messages (see [`crate::scan`]); `None` leaves the message to
    /// serde: any other type, a field of an unexpected JSON type or named twice, an escape.
    pub(crate) fn scan(text: &'a str) -> Option<Self> {
        let mut m = WsMessage {
            kind: "",
            symbol: None,
            tid: None,
            event_id: None,
            timestamp: None,
            price: None,
            quantity: None,
            side: None,
            trades: None,
            reason: None,
            message: None,
        };
        let mut kind = None;
        scan::members(text, |key, value| match key {
            "type" => scan::once(&mut kind, value.str()),
            "symbol" => scan::once(&mut m.symbol, value.str()),
            "tid" => scan::once(&mut m.tid, value.uint().map(Uint)),
            "event_id" => scan::once(&mut m.event_id, value.uint().map(Uint)),
            "timestamp" => scan::once(&mut m.timestamp, value.uint().map(Uint)),
            "price" => scan::once(&mut m.price, value.str()),
            "quantity" => scan::once(&mut m.quantity, value.str()),
            "side" => scan::once(&mut m.side, value.str()),
            // Fields only other types have: not the fast path's business.
            "trades" | "reason" | "message" => None,
            _ => Some(()),
        })?;
        m.kind = kind.filter(|k| *k == "trade")?;
        Some(m)
    }
}
