//! Huobi (HTX) market messages as they are on the wire (after gzip), borrowed from the
//! decompressed payload.
//!
//! Numbers are kept as raw JSON text: Huobi writes prices and amounts as JSON numbers,
//! sometimes in capital-E exponent form (`9.2E-7`), and its legacy trade `id` is longer than
//! 64 bits (and at times written as a float). All are read exactly from their text.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{raw_json, raw_json_opt, Uint};
use crate::scan::{self, Scanner};

/// Any message of the market WebSocket: a server `ping`, a subscription answer, an error, or
/// channel data.
///
/// ```json
/// {"ping":1492420473027}
/// {"id":"crypto-feeder","status":"ok","subbed":"market.btcusdt.trade.detail","ts":1489474081631}
/// {"id":"crypto-feeder","status":"error","err-code":"bad-request","err-msg":"invalid topic market.xyzabc.trade.detail","ts":1494301904959}
/// {"ch":"market.btcusdt.trade.detail","ts":1630994963175,"tick":{"id":137005445109,"ts":1630994963173,"data":[{"id":137005445109359286410323766,"ts":1630994963173,"tradeId":102523573486,"amount":0.006754,"price":52648.62,"direction":"buy"}]}}
/// ```
/// Source: Huobi (HTX) spot API v1, "Websocket Market Data" (introduction: gzip, heartbeat
/// and subscription; "Trade Detail": `market.$symbol.trade.detail`),
/// <https://huobiapi.github.io/docs/spot/v1/en/#websocket-market-data>. `direction` is the
/// taker's side; `tradeId` is the unique trade id, `id` the legacy one.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// The server's heartbeat, to echo back as `pong`.
    #[serde(borrow, default)]
    pub ping: Option<&'a RawValue>,
    /// The channel of a data message.
    #[serde(borrow, default)]
    pub ch: Option<&'a str>,
    /// The data of a channel message, kept raw until the channel says what it is.
    #[serde(borrow, default)]
    pub tick: Option<&'a RawValue>,
    /// `ok` or `error` (answers to requests).
    #[serde(borrow, default)]
    pub status: Option<&'a str>,
    /// The topic of a successful `sub`.
    #[serde(borrow, default)]
    pub subbed: Option<&'a str>,
    /// The topic of a successful `unsub`.
    #[serde(borrow, default)]
    pub unsubbed: Option<&'a str>,
    /// The error code of a refused request.
    #[serde(rename = "err-code", borrow, default)]
    pub err_code: Option<Cow<'a, str>>,
    /// The error message of a refused request.
    #[serde(rename = "err-msg", borrow, default)]
    pub err_msg: Option<Cow<'a, str>>,
}

/// The `tick` of `market.$symbol.trade.detail`: the trades of one match, oldest first.
#[derive(Debug, Deserialize)]
pub(crate) struct Tick<'a> {
    /// The trades.
    #[serde(borrow)]
    pub data: Vec<TradeItem<'a>>,
}

/// One trade, on the WebSocket (`tradeId`) and over REST (`trade-id`).
///
/// ```json
/// {"id":137005445109359286410323766,"ts":1630994963173,"tradeId":102523573486,"amount":0.006754,"price":52648.62,"direction":"buy"}
/// {"id":10001234567890123456789,"ts":1630994963173,"trade-id":102523573486,"amount":0.006754,"price":9.2E-7,"direction":"sell"}
/// ```
/// Source: Huobi (HTX) spot API v1, "Trade Detail" (WebSocket) and "Get the Most Recent
/// Trades" (`GET /market/history/trade`),
/// <https://huobiapi.github.io/docs/spot/v1/en/#get-the-most-recent-trades>.
#[derive(Debug, Deserialize)]
pub(crate) struct TradeItem<'a> {
    /// The legacy id: over 64 bits, raw JSON text.
    #[serde(borrow, default, deserialize_with = "raw_json_opt")]
    pub id: Option<&'a str>,
    /// The unique trade id, a number (or a string of digits).
    #[serde(rename = "tradeId", alias = "trade-id", default)]
    pub trade_id: Option<Uint>,
    /// Trade time in milliseconds, a number (or a string of digits).
    pub ts: Uint,
    /// Amount of the base asset, raw JSON number.
    #[serde(borrow, deserialize_with = "raw_json")]
    pub amount: &'a str,
    /// Price, raw JSON number.
    #[serde(borrow, deserialize_with = "raw_json")]
    pub price: &'a str,
    /// The taker's side: `buy` or `sell`.
    #[serde(borrow)]
    pub direction: &'a str,
}

/// The answer of `GET /market/history/trade`: groups of trades, newest first.
///
/// ```json
/// {"ch":"market.btcusdt.trade.detail","status":"ok","ts":1630994963190,"data":[{"id":137005445109,"ts":1630994963173,"data":[{"id":137005445109359286410323766,"ts":1630994963173,"trade-id":102523573486,"amount":0.006754,"price":52648.62,"direction":"buy"}]}]}
/// {"status":"error","err-code":"invalid-parameter","err-msg":"invalid symbol","data":null}
/// ```
/// Source: Huobi (HTX) spot API v1, "Get the Most Recent Trades",
/// <https://huobiapi.github.io/docs/spot/v1/en/#get-the-most-recent-trades>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestAnswer<'a> {
    /// `ok` or `error`.
    #[serde(borrow)]
    pub status: &'a str,
    /// The groups (absent or null on errors).
    #[serde(borrow, default)]
    pub data: Option<Vec<Tick<'a>>>,
    /// The error code.
    #[serde(rename = "err-code", borrow, default)]
    pub err_code: Option<Cow<'a, str>>,
    /// The error message.
    #[serde(rename = "err-msg", borrow, default)]
    pub err_msg: Option<Cow<'a, str>>,
}

/// The fast path for trade detail pushes (see [`crate::scan`]): `channel` resolves the
/// push's `ch` (`None` leaves the message to serde), then `each` is called with every trade
/// of its tick, in order, in the one pass that checks the whole message. `None` leaves the
/// message to serde: a ping or an answer, `tick` before `ch` (Huobi sends `ch` first), a
/// trade `id` of `null`, a field of an unexpected JSON
/// type or named twice, an escape; and whatever `channel` or `each` refuses.
pub(crate) fn scan_push<'a, C>(
    text: &'a str,
    channel: impl FnOnce(&'a str) -> Option<C>,
    mut each: impl FnMut(&C, TradeItem<'a>) -> Option<()>,
) -> Option<()> {
    let mut ch = None;
    let mut channel = Some(channel);
    let mut tick = false;
    scan::document(text, |s| {
        s.walk_object(|s, key| match key {
            "ch" => scan::once(&mut ch, s.any()?.str()),
            "tick" if !tick => {
                tick = true;
                let c = channel.take()?(ch?)?;
                let mut data = false;
                s.walk_object(|s, key| match key {
                    "data" if !data => {
                        data = true;
                        s.walk_array(|s| each(&c, scan_trade(s)?))
                    }
                    "data" => None,
                    _ => s.any().map(drop),
                })?;
                data.then_some(())
            }
            // `tick` twice; pings and answers.
            "tick" | "ping" | "status" | "subbed" | "unsubbed" | "err-code" | "err-msg" => None,
            _ => s.any().map(drop),
        })
    })?;
    tick.then_some(())
}

/// One trade of a tick, the cursor on its object.
fn scan_trade<'a>(s: &mut Scanner<'a>) -> Option<TradeItem<'a>> {
    let (mut id, mut trade_id, mut ts, mut amount, mut price, mut direction) =
        (None, None, None, None, None, None);
    s.walk_object(|s, key| match key {
        "id" => scan::once(&mut id, s.number_or_string()),
        // One field under two names: serde refuses both at once.
        "tradeId" | "trade-id" => scan::once(&mut trade_id, s.any()?.uint().map(Uint)),
        "ts" => scan::once(&mut ts, s.any()?.uint().map(Uint)),
        "amount" => scan::once(&mut amount, s.number_or_string()),
        "price" => scan::once(&mut price, s.number_or_string()),
        "direction" => scan::once(&mut direction, s.any()?.str()),
        _ => s.any().map(drop),
    })?;
    Some(TradeItem {
        id,
        trade_id,
        ts: ts?,
        amount: amount?,
        price: price?,
        direction: direction?,
    })
}
