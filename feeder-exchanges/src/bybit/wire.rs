//! Bybit v5 messages as they are on the wire, borrowed from the payload.
//!
//! Fields Bybit adds later are ignored; fields we need that are missing or malformed are
//! errors.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{TextId, Uint};
use crate::scan::{self, Scanner};

/// Every message of the public WebSocket: a topic push, or the answer to an operation
/// (`subscribe`, `ping`) the client sent.
///
/// A `publicTrade` push, possibly with several trades:
/// ```json
/// {"topic":"publicTrade.BTCUSDT","ts":1727791043390,"type":"snapshot","data":[{"i":"2290000000412342771","T":1727791043385,"p":"60944.01","v":"0.000100","S":"Sell","s":"BTCUSDT","BT":false,"seq":49617303519}]}
/// ```
/// Source: Bybit v5 WebSocket public stream, "Trade" (`publicTrade.{symbol}`),
/// <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>.
///
/// The answers to `subscribe` and `ping` on the spot stream:
/// ```json
/// {"success":true,"ret_msg":"subscribe","conn_id":"2324d924-aa4d-45b0-a858-7b8be29ab52b","req_id":"10001","op":"subscribe"}
/// {"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}
/// ```
/// Source: Bybit v5 WebSocket, "Connect" (how to subscribe, how to send the heartbeat
/// packet), <https://bybit-exchange.github.io/docs/v5/ws/connect>.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// `publicTrade.BTCUSDT` on pushes.
    #[serde(borrow, default)]
    pub topic: Option<&'a str>,
    /// The push's payload, kept raw until the topic is known.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// The operation answered: `subscribe`, `unsubscribe`, `ping`, `pong`.
    #[serde(borrow, default)]
    pub op: Option<&'a str>,
    /// Whether the operation succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// The answer's message (`pong`, `subscribe`, or what went wrong).
    #[serde(borrow, default)]
    pub ret_msg: Option<Cow<'a, str>>,
}

/// One trade of a `publicTrade` push.
///
/// ```json
/// {"i":"2290000000412342771","T":1727791043385,"p":"60944.01","v":"0.000100","S":"Sell","s":"BTCUSDT","BT":false,"seq":49617303519}
/// ```
/// Source: Bybit v5 WebSocket public stream, "Trade",
/// <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>. `S` is the taker's
/// side; spot trade ids `i` are strings of 19 digits (read as numbers too).
#[derive(Debug, Deserialize)]
pub(crate) struct WsTrade<'a> {
    /// Trade id, a string kept as written (or a number).
    #[serde(rename = "i", borrow)]
    pub id: TextId<'a>,
    /// Trade time, milliseconds, a number or a string of digits.
    #[serde(rename = "T")]
    pub time: Uint,
    /// Price, exact text.
    #[serde(rename = "p", borrow)]
    pub price: &'a str,
    /// Size of the base asset, exact text.
    #[serde(rename = "v", borrow)]
    pub size: &'a str,
    /// The taker's side, `Buy` or `Sell`.
    #[serde(rename = "S", borrow)]
    pub side: &'a str,
    /// Symbol, `BTCUSDT`.
    #[serde(rename = "s", borrow)]
    pub symbol: &'a str,
}

/// The answer of `GET /v5/market/recent-trade`.
///
/// ```json
/// {"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":"2290000000412342771","symbol":"BTCUSDT","price":"60944.01","size":"0.000100","side":"Sell","time":"1727791043385","isBlockTrade":false}]},"retExtInfo":{},"time":1727791100000}
/// ```
/// Source: Bybit v5 REST API, "Get Public Recent Trading History",
/// <https://bybit-exchange.github.io/docs/v5/market/recent-trade>. Errors come with HTTP 200
/// and a non-zero `retCode`.
#[derive(Debug, Deserialize)]
pub(crate) struct RestAnswer<'a> {
    /// 0 on success.
    #[serde(rename = "retCode")]
    pub ret_code: i64,
    /// What went wrong, or `OK`.
    #[serde(rename = "retMsg", borrow, default)]
    pub ret_msg: Option<Cow<'a, str>>,
    /// The trades (absent or empty on errors).
    #[serde(borrow, default)]
    pub result: Option<RestResult<'a>>,
}

/// The `result` of a recent-trade answer.
#[derive(Debug, Deserialize)]
pub(crate) struct RestResult<'a> {
    /// Newest first.
    #[serde(borrow, default)]
    pub list: Vec<RestTrade<'a>>,
}

/// One trade of a recent-trade answer (see [`RestAnswer`]).
#[derive(Debug, Deserialize)]
pub(crate) struct RestTrade<'a> {
    /// Trade id (the same id as `i` on the stream), a string kept as written (or a number).
    #[serde(rename = "execId", borrow)]
    pub exec_id: TextId<'a>,
    /// Price, exact text.
    #[serde(borrow)]
    pub price: &'a str,
    /// Size of the base asset, exact text.
    #[serde(borrow)]
    pub size: &'a str,
    /// The taker's side, `Buy` or `Sell`.
    #[serde(borrow)]
    pub side: &'a str,
    /// Trade time, milliseconds, a string of digits (or a number).
    pub time: Uint,
}

/// The fast path for trade pushes, whose topic starts with `prefix` (see [`crate::scan`]):
/// calls `each` with every trade of the push, in order, in the one pass that checks the whole
/// message. `None` leaves the message to serde: an answer to an operation, another topic,
/// `data` before `topic` (Bybit sends `topic` first), a field of an unexpected JSON type or
/// named twice, an escape; and whatever `each` refuses.
pub(crate) fn scan_push<'a>(
    text: &'a str,
    prefix: &str,
    mut each: impl FnMut(WsTrade<'a>) -> Option<()>,
) -> Option<()> {
    let mut topic = None;
    let mut data = false;
    scan::document(text, |s| {
        s.walk_object(|s, key| match key {
            "topic" => scan::once(&mut topic, s.any()?.str()),
            "data" if !data && topic.is_some_and(|t| t.starts_with(prefix)) => {
                data = true;
                s.walk_array(|s| each(scan_trade(s)?))
            }
            // `data` twice or too early; the fields of answers.
            "data" | "op" | "success" | "ret_msg" => None,
            _ => s.any().map(drop),
        })
    })?;
    data.then_some(())
}

/// One trade of a push, the cursor on its object.
fn scan_trade<'a>(s: &mut Scanner<'a>) -> Option<WsTrade<'a>> {
    let (mut id, mut time, mut price, mut size, mut side, mut symbol) =
        (None, None, None, None, None, None);
    s.walk_object(|s, key| match key {
        "i" => scan::once(&mut id, s.any()?.text_id()),
        "T" => scan::once(&mut time, s.any()?.uint().map(Uint)),
        "p" => scan::once(&mut price, s.any()?.str()),
        "v" => scan::once(&mut size, s.any()?.str()),
        "S" => scan::once(&mut side, s.any()?.str()),
        "s" => scan::once(&mut symbol, s.any()?.str()),
        _ => s.any().map(drop),
    })?;
    Some(WsTrade {
        id: id?,
        time: time?,
        price: price?,
        size: size?,
        side: side?,
        symbol: symbol?,
    })
}
