//! Bitstamp's messages as they are on the wire, borrowed from the payload.
//!
//! Fields Bitstamp adds later are ignored; fields we need that are missing or malformed are
//! errors. Numbers that Bitstamp writes sometimes as strings are read with [`Uint`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::Uint;
use crate::scan;

/// Every WebSocket v2 message: an event name, a channel and a `data` whose shape depends on
/// the event, kept raw until the event is known.
///
/// ```json
/// {"data":{"id":359839513,"timestamp":"1727791043","amount":0.0001,"amount_str":"0.00010000","price":60944,"price_str":"60944","type":1,"microtimestamp":"1727791043385000","buy_order_id":1795483484868608,"sell_order_id":1795483485413376},"channel":"live_trades_btcusd","event":"trade"}
/// ```
/// Source: Bitstamp WebSocket API v2, <https://www.bitstamp.net/websocket/v2/>.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// `trade`, `bts:subscription_succeeded`, `bts:heartbeat`, `bts:request_reconnect`,
    /// `bts:error`, ...
    #[serde(borrow)]
    pub event: &'a str,
    /// `live_trades_btcusd`; empty for connection-level events.
    #[serde(borrow, default)]
    pub channel: &'a str,
    /// The event's payload.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// The trade of a `trade` message, when the fast path read it ([`scan_trade`]).
    #[serde(skip)]
    pub trade: Option<WsTrade<'a>>,
}

/// The `data` of a `trade` event on a `live_trades_[pair]` channel.
///
/// ```json
/// {"id":359839513,"timestamp":"1727791043","amount":0.0001,"amount_str":"0.00010000","price":60944,"price_str":"60944","type":1,"microtimestamp":"1727791043385000","buy_order_id":1795483484868608,"sell_order_id":1795483485413376}
/// ```
/// Source: Bitstamp WebSocket API v2, channel "Live ticker" (`live_trades_[currency_pair]`),
/// <https://www.bitstamp.net/websocket/v2/>. `amount` and `price` are JSON numbers and would
/// go through floating point; the exact `_str` forms are used instead.
#[derive(Debug, Deserialize)]
pub(crate) struct WsTrade<'a> {
    /// Trade id.
    pub id: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price_str: &'a str,
    /// Amount of the base asset, exact text.
    #[serde(borrow)]
    pub amount_str: &'a str,
    /// Taker side: 0 buy, 1 sell.
    #[serde(rename = "type")]
    pub side: Uint,
    /// Trade time in seconds.
    pub timestamp: Uint,
    /// Trade time in microseconds (more precise; present on current feeds).
    #[serde(default)]
    pub microtimestamp: Option<Uint>,
}

/// The `data` of `bts:error`.
///
/// ```json
/// {"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}
/// ```
/// Source: Bitstamp WebSocket API v2, "Subscriptions" (invalid messages get an error
/// response), <https://www.bitstamp.net/websocket/v2/>.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WsError<'a> {
    /// What went wrong.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// One transaction of `GET /api/v2/transactions/{currency_pair}/`.
///
/// ```json
/// {"date":"1727791043","tid":"359839513","amount":"0.00010000","type":"1","price":"60944"}
/// ```
/// Source: Bitstamp HTTP API v2, "Transactions" (`GET /api/v2/transactions/{currency_pair}/`,
/// query `time` = `minute` | `hour` | `day`), <https://www.bitstamp.net/api/>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestTransaction<'a> {
    /// Unix time in seconds.
    pub date: Uint,
    /// Transaction id (the same id as `id` on the WebSocket).
    pub tid: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Amount of the base asset, exact text.
    #[serde(borrow)]
    pub amount: &'a str,
    /// Taker side: `"0"` buy, `"1"` sell.
    #[serde(rename = "type")]
    pub side: Uint,
}

/// The object the REST API answers instead of a list when a request is refused.
///
/// ```json
/// {"status":"error","reason":"Invalid currency pair.","code":"API0005"}
/// ```
/// Source: Bitstamp HTTP API v2, error responses, <https://www.bitstamp.net/api/>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestError<'a> {
    /// The reason, on most endpoints: a string, or an object of messages per field.
    #[serde(borrow, default)]
    pub reason: Option<&'a RawValue>,
    /// The message, on some older endpoints.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// The fast path for `trade` messages of the public trade channels (see [`crate::scan`]):
/// the envelope's channel and the trade. `None` leaves the message to serde.
pub(crate) fn scan_trade(text: &str) -> Option<(&str, WsTrade<'_>)> {
    let (mut event, mut channel, mut data) = (None, None, None);
    let mut t = WsTrade {
        id: Uint(0),
        price_str: "",
        amount_str: "",
        side: Uint(0),
        timestamp: Uint(0),
        microtimestamp: None,
    };
    let (mut id, mut price, mut amount, mut side, mut timestamp) = (None, None, None, None, None);
    scan::members_nested(
        text,
        "data",
        &mut |key, value| match key {
            "id" => scan::once(&mut id, value.uint()),
            "price_str" => scan::once(&mut price, value.str()),
            "amount_str" => scan::once(&mut amount, value.str()),
            "type" => scan::once(&mut side, value.uint()),
            "timestamp" => scan::once(&mut timestamp, value.uint()),
            "microtimestamp" => scan::once(&mut t.microtimestamp, value.uint().map(Uint)),
            _ => Some(()),
        },
        &mut |key, value| match key {
            "event" => scan::once(&mut event, value.str()),
            "channel" => scan::once(&mut channel, value.str()),
            "data" => scan::once(&mut data, value.object()),
            _ => Some(()),
        },
    )?;
    if event? != "trade" {
        return None;
    }
    // Read above, in the same pass.
    data?;
    t.id = Uint(id?);
    t.price_str = price?;
    t.amount_str = amount?;
    t.side = Uint(side?);
    t.timestamp = Uint(timestamp?);
    Some((channel?, t))
}
