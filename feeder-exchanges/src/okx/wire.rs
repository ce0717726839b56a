//! OKX v5 messages as they are on the wire, borrowed from the payload.
//!
//! Fields OKX adds later are ignored; fields we need that are missing or malformed are
//! errors. The keep-alive answer is the bare text `pong`, not JSON, and is handled before
//! these structs are used.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{TextId, Uint};
use crate::scan::{self, Scanner};

/// Every JSON message of the public WebSocket: a push (`arg` and `data`) or an event
/// (`subscribe`, `error`, `notice`).
///
/// A `trades` push (one message may carry several trades):
/// ```json
/// {"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234}]}
/// ```
/// Source: OKX API v5, WebSocket public channel "Trades channel",
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel>.
///
/// The subscribe acknowledgement, an error, and the notice sent before a service upgrade:
/// ```json
/// {"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"accb8e21"}
/// {"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\", \"argss\":[{ \"channel\" : \"trades\", \"instId\" : \"BTC-USDT\"}]}","connId":"a4d3ae55"}
/// {"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}
/// ```
/// Source: OKX API v5, "WebSocket" overview (subscribe, error messages, notifications),
/// <https://www.okx.com/docs-v5/en/#overview-websocket>.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// `subscribe`, `unsubscribe`, `error`, `notice`, ... on events.
    #[serde(borrow, default)]
    pub event: Option<&'a str>,
    /// The channel a push or acknowledgement is about.
    #[serde(borrow, default)]
    pub arg: Option<Arg<'a>>,
    /// A push's payload, kept raw until the channel is known.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// Error or notice code.
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    /// Error or notice text.
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
}

/// The channel of a push or acknowledgement.
#[derive(Debug, Deserialize)]
pub(crate) struct Arg<'a> {
    /// `trades`, `books`, ... (`instId` is read from each trade instead).
    #[serde(borrow)]
    pub channel: &'a str,
}

/// One trade: of a `trades` push, of `GET /api/v5/market/trades` or of
/// `GET /api/v5/market/history-trades` (the same fields on all three).
///
/// ```json
/// {"instId":"BTC-USDT","side":"sell","sz":"0.00001","px":"29963.2","tradeId":"242720720","ts":"1654161646974","source":"0"}
/// ```
/// Source: OKX API v5, REST "Get trades" and "Get trades history",
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-trades>. `side` is
/// the taker's side.
#[derive(Debug, Deserialize)]
pub(crate) struct Trade<'a> {
    /// `BTC-USDT`.
    #[serde(rename = "instId", borrow)]
    pub inst_id: &'a str,
    /// Trade id, digits in a string (or a number).
    #[serde(rename = "tradeId", borrow)]
    pub trade_id: TextId<'a>,
    /// Price, exact text.
    #[serde(borrow)]
    pub px: &'a str,
    /// Size of the base asset (spot), exact text.
    #[serde(borrow)]
    pub sz: &'a str,
    /// The taker's side, `buy` or `sell`.
    #[serde(borrow)]
    pub side: &'a str,
    /// Trade time, milliseconds, as a string (or a number).
    pub ts: Uint,
}

/// Every REST answer: a code (`"0"` on success), a message and the data.
///
/// ```json
/// {"code":"51001","msg":"Instrument ID does not exist","data":[]}
/// ```
/// Source: OKX API v5, "REST API" overview and error codes,
/// <https://www.okx.com/docs-v5/en/#error-code-rest-api-public>.
#[derive(Debug, Deserialize)]
pub(crate) struct RestAnswer<'a> {
    /// `"0"` on success.
    #[serde(borrow)]
    pub code: Cow<'a, str>,
    /// What went wrong.
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
    /// The trades, newest first.
    #[serde(borrow, default)]
    pub data: Vec<Trade<'a>>,
}

/// The fast path for `trades` pushes (see [`crate::scan`]): calls `each` with every trade of
/// the push, in order, in the one pass that checks the whole message. `None` leaves the
/// message to serde: an event, another channel, `data` before `arg` (OKX sends `arg` first),
/// a field of an unexpected JSON type or named twice, an escape; and whatever `each` refuses.
pub(crate) fn scan_push<'a>(
    text: &'a str,
    mut each: impl FnMut(Trade<'a>) -> Option<()>,
) -> Option<()> {
    let mut channel = None;
    let mut data = false;
    scan::document(text, |s| {
        s.walk_object(|s, key| match key {
            "arg" => {
                let mut name = None;
                s.walk_object(|s, key| match key {
                    "channel" => scan::once(&mut name, s.any()?.str()),
                    _ => s.any().map(drop),
                })?;
                scan::once(&mut channel, name)
            }
            "data" if !data && matches!(channel, Some("trades" | "trades-all")) => {
                data = true;
                s.walk_array(|s| each(scan_trade(s)?))
            }
            // `data` twice or too early; the fields of events.
            "data" | "event" | "code" | "msg" => None,
            _ => s.any().map(drop),
        })
    })?;
    data.then_some(())
}

/// One trade of a push, the cursor on its object.
fn scan_trade<'a>(s: &mut Scanner<'a>) -> Option<Trade<'a>> {
    let (mut inst_id, mut trade_id, mut px, mut sz, mut side, mut ts) =
        (None, None, None, None, None, None);
    s.walk_object(|s, key| match key {
        "instId" => scan::once(&mut inst_id, s.any()?.str()),
        "tradeId" => scan::once(&mut trade_id, s.any()?.text_id()),
        "px" => scan::once(&mut px, s.any()?.str()),
        "sz" => scan::once(&mut sz, s.any()?.str()),
        "side" => scan::once(&mut side, s.any()?.str()),
        "ts" => scan::once(&mut ts, s.any()?.uint().map(Uint)),
        _ => s.any().map(drop),
    })?;
    Some(Trade {
        inst_id: inst_id?,
        trade_id: trade_id?,
        px: px?,
        sz: sz?,
        side: side?,
        ts: ts?,
    })
}
