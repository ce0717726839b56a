//! Coinbase Exchange messages as they are on the wire, borrowed from the payload.
//!
//! All WebSocket feed messages are flat objects tagged by `type`, so a single struct with
//! optional fields reads every one of them in one pass; which fields are required depends on
//! the type and is checked by the parser. Fields Coinbase adds later are ignored.

use std::borrow::Cow;

use serde::Deserialize;

use crate::common::Uint;
use crate::scan;

/// Any WebSocket feed message.
///
/// A `match` (a `last_match` has the same fields and comes once, right after subscribing):
/// ```json
/// {"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}
/// ```
/// Source: Coinbase Exchange WebSocket channels, "Matches channel",
/// <https://docs.cdp.coinbase.com/exchange/websocket-feed/channels>. `side` is the maker's
/// order side.
///
/// A `heartbeat`:
/// ```json
/// {"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}
/// ```
/// Source: same page, "Heartbeat channel".
///
/// The `subscriptions` acknowledgement and an `error`:
/// ```json
/// {"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}
/// {"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}
/// ```
/// Source: Coinbase Exchange WebSocket overview, "Subscribe" and "Error messages",
/// <https://docs.cdp.coinbase.com/exchange/websocket-feed/overview>.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// `match`, `last_match`, `heartbeat`, `subscriptions`, `error`, ...
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
    /// Trade id (`match`, `last_match`), a number (or a string of digits).
    #[serde(default)]
    pub trade_id: Option<Uint>,
    /// Product (`match`, `last_match`, `heartbeat`).
    #[serde(borrow, default)]
    pub product_id: Option<&'a str>,
    /// Price, exact text.
    #[serde(borrow, default)]
    pub price: Option<&'a str>,
    /// Amount of the base asset, exact text.
    #[serde(borrow, default)]
    pub size: Option<&'a str>,
    /// The maker's side, `buy` or `sell`.
    #[serde(borrow, default)]
    pub side: Option<&'a str>,
    /// RFC 3339 with microseconds.
    #[serde(borrow, default)]
    pub time: Option<&'a str>,
    /// The newest trade of the product (`heartbeat`), a number (or a string of digits).
    #[serde(default)]
    pub last_trade_id: Option<Uint>,
    /// What went wrong (`error`).
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    /// More on what went wrong (`error`).
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
}

impl<'a> WsMessage<'a> {
    /// The fast path for `match` messages (see [`crate::scan`]); `None` leaves the message to
    /// serde: any other type, a field of an unexpected JSON type or named twice, an escape.
    pub(crate) fn scan(text: &'a str) -> Option<Self> {
        let mut m = WsMessage {
            kind: "",
            trade_id: None,
            product_id: None,
            price: None,
            size: None,
            side: None,
            time: None,
            last_trade_id: None,
            message: None,
            reason: None,
        };
        let mut kind = None;
        scan::members(text, |key, value| match key {
            "type" => scan::once(&mut kind, value.str()),
            "trade_id" => scan::once(&mut m.trade_id, value.uint().map(Uint)),
            "product_id" => scan::once(&mut m.product_id, value.str()),
            "price" => scan::once(&mut m.price, value.str()),
            "size" => scan::once(&mut m.size, value.str()),
            "side" => scan::once(&mut m.side, value.str()),
            "time" => scan::once(&mut m.time, value.str()),
            // Fields only other types have: not the fast path's business.
            "last_trade_id" | "message" | "reason" => None,
            _ => Some(()),
        })?;
        m.kind = kind.filter(|k| matches!(*k, "match" | "last_match"))?;
        Some(m)
    }
}

/// One trade of `GET /products/{product_id}/trades`, newest first.
///
/// ```json
/// {"time":"2020-03-20T00:36:59.860Z","trade_id":86327327,"price":"6225.32000000","size":"0.06469797","side":"sell"}
/// ```
/// Source: Coinbase Exchange REST API, "Get product trades",
/// <https://docs.cdp.coinbase.com/api-reference/exchange-api/rest-api/products/get-product-trades>.
/// `side` is the maker's order side; the `cb-after` response header names the cursor of the
/// next older page.
#[derive(Debug, Deserialize)]
pub(crate) struct RestTrade<'a> {
    /// Trade time.
    #[serde(borrow)]
    pub time: &'a str,
    /// Trade id, a number (or a string of digits).
    pub trade_id: Uint,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Amount of the base asset, exact text.
    #[serde(borrow)]
    pub size: &'a str,
    /// The maker's side.
    #[serde(borrow)]
    pub side: &'a str,
}

/// The object the REST API answers with an error status or instead of a list.
///
/// ```json
/// {"message":"NotFound"}
/// ```
/// Source: Coinbase Exchange REST API, "Requests" (errors),
/// <https://docs.cdp.coinbase.com/exchange/rest-api/requests>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestError<'a> {
    /// What went wrong.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}
