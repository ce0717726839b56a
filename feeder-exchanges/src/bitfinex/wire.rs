//! Bitfinex v2 messages as they are on the wire, borrowed from the payload.
//!
//! Channel data are JSON arrays whose length may grow ("new fields may be appended at the
//! end of a message without changing version"), so the array readers take the leading
//! elements they know and skip the rest. Numbers are kept as their raw JSON text and parsed
//! exactly: Bitfinex writes them as JavaScript floats (`0.005`, `-2.5e-05`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::Uint;
use crate::scan::{self, Scanner};

/// An event object: the connection's `info`, the `subscribed` acknowledgement, `pong`,
/// `error`, ...
///
/// ```json
/// {"event":"subscribed","channel":"trades","chanId":19111,"symbol":"tBTCUSD","pair":"BTCUSD"}
/// ```
/// Source: Bitfinex WebSocket v2, "Trades" (public channel),
/// <https://docs.bitfinex.com/reference/ws-public-trades>.
///
/// ```json
/// {"event":"info","version":2,"serverId":"6bd5c9e1-3d9a-4e5f-8a41-0d5f6f1b7e2c","platform":{"status":1}}
/// {"event":"info","code":20051,"msg":"Stop/Restart Websocket Server (please reconnect)"}
/// {"event":"error","msg":"symbol: invalid","code":10300,"channel":"trades","symbol":"tXYZABC"}
/// ```
/// Source: Bitfinex WebSocket v2, "General" (info messages and error codes),
/// <https://docs.bitfinex.com/docs/ws-general>.
#[derive(Debug, Deserialize)]
pub(crate) struct Event<'a> {
    /// `info`, `subscribed`, `unsubscribed`, `pong`, `conf`, `error`.
    #[serde(borrow)]
    pub event: &'a str,
    /// The channel's name (`subscribed`).
    #[serde(borrow, default)]
    pub channel: Option<&'a str>,
    /// The channel id that data arrays of this subscription start with (`subscribed`).
    #[serde(rename = "chanId", default)]
    pub chan_id: Option<u64>,
    /// The subscribed symbol (`subscribed`).
    #[serde(borrow, default)]
    pub symbol: Option<&'a str>,
    /// An info or error code.
    #[serde(default)]
    pub code: Option<i64>,
    /// What the code means.
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
}

/// A channel message: `[CHANNEL_ID, BODY, TRADE?, ...]`.
///
/// ```json
/// [17470,[[401597393,1574694475039,0.005,7244.9],[401597392,1574694470503,-0.01,7245.3]]]
/// [17470,"te",[401597395,1574694478808,0.005,7245.3]]
/// [17470,"tu",[401597395,1574694478808,0.005,7245.3]]
/// [17470,"hb"]
/// ```
/// Source: Bitfinex WebSocket v2, "Trades" (snapshot, updates) and "General" (heartbeats),
/// <https://docs.bitfinex.com/reference/ws-public-trades>. `BODY` is a snapshot array or a
/// message type; the trade follows the `te` / `tu` type.
#[derive(Debug)]
pub(crate) struct ChannelMessage<'a> {
    /// The channel id from the `subscribed` acknowledgement.
    pub chan_id: u64,
    /// The snapshot array, or the message type as a JSON string.
    pub body: &'a RawValue,
    /// The trade after a `te` / `tu` type.
    pub trade: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ChannelMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ChannelMessage<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[CHANNEL_ID, BODY, ...]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let chan_id = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let body = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let trade = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ChannelMessage {
                    chan_id,
                    body,
                    trade,
                })
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// One trade of a trading pair: `[ID, MTS, AMOUNT, PRICE, ...]`, on the WebSocket and over
/// REST alike.
///
/// ```json
/// [401597395,1574694478808,0.005,7245.3]
/// ```
/// Source: Bitfinex WebSocket v2, "Trades", <https://docs.bitfinex.com/reference/ws-public-trades>,
/// and REST v2, "Trades", <https://docs.bitfinex.com/reference/rest-public-trades>. `AMOUNT`
/// is positive when the taker bought and negative when the taker sold; `MTS` is in
/// milliseconds.
#[derive(Debug)]
pub(crate) struct TradeRow<'a> {
    /// Trade id, a number (or a string of digits).
    pub id: Uint,
    /// Trade time, milliseconds since the epoch, a number (or a string of digits).
    pub mts: Uint,
    /// Signed amount, raw JSON text (a number, or a string when decimals-as-strings is on).
    pub amount: &'a str,
    /// Price, raw JSON text.
    pub price: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for TradeRow<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TradeRow<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[ID, MTS, AMOUNT, PRICE]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let id = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let mts = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let amount = seq
                    .next_element::<&RawValue>()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?
                    .get();
                let price = seq
                    .next_element::<&RawValue>()?
                    .ok_or_else(|| de::Error::invalid_length(3, &self))?
                    .get();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TradeRow {
                    id,
                    mts,
                    amount,
                    price,
                })
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// The object the REST API answers when it refuses a request.
///
/// ```json
/// {"error":"ERR_RATE_LIMIT"}
/// ```
/// Source: Bitfinex REST v2, "Requirements" (rate limits),
/// <https://docs.bitfinex.com/docs/requirements-and-limitations>. Other errors come as an
/// array, `["error", 10020, "limit: invalid"]`
/// (<https://docs.bitfinex.com/docs/abbreviations-glossary>, "Error codes").
#[derive(Debug, Deserialize)]
pub(crate) struct RestErrorObject<'a> {
    /// What went wrong.
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
    /// What went wrong, on some gateways.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// The fast path for `te` messages, `[CHANNEL_ID,"te",[ID,MTS,AMOUNT,PRICE,...],...]` (see
/// [`crate::scan`]): the channel id and the trade, in the one pass that checks the whole
/// message. `None` leaves the message to serde: any other message, an element of an unexpected
/// JSON type, an escape.
pub(crate) fn scan_te(text: &str) -> Option<(u64, TradeRow<'_>)> {
    let (mut chan_id, mut row) = (None, None);
    let mut at = 0;
    scan::document(text, |s| {
        s.walk_array(|s| {
            let read = match at {
                0 => scan::once(&mut chan_id, s.any()?.u64()),
                1 => (s.any()?.str()? == "te").then_some(()),
                2 => scan::once(&mut row, scan_row(s)),
                // Elements Bitfinex may append later.
                _ => s.any().map(drop),
            };
            at += 1;
            read
        })
    })?;
    Some((chan_id?, row?))
}

/// A trade row, the cursor on its array.
fn scan_row<'a>(s: &mut Scanner<'a>) -> Option<TradeRow<'a>> {
    let (mut id, mut mts, mut amount, mut price) = (None, None, None, None);
    let mut at = 0;
    s.walk_array(|s| {
        let read = match at {
            0 => scan::once(&mut id, s.any()?.uint().map(Uint)),
            1 => scan::once(&mut mts, s.any()?.uint().map(Uint)),
            2 => scan::once(&mut amount, s.number_or_string()),
            3 => scan::once(&mut price, s.number_or_string()),
            // Fields Bitfinex may append later.
            _ => s.any().map(drop),
        };
        at += 1;
        read
    })?;
    Some(TradeRow {
        id: id?,
        mts: mts?,
        amount: amount?,
        price: price?,
    })
}
