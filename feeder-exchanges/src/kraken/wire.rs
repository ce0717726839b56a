//! Kraken spot messages as they are on the wire, borrowed from the payload.
//!
//! Kraken writes prices, quantities (WebSocket v2) and REST trade times as JSON numbers. They
//! are read as raw JSON text ([`RawValue`]) and converted exactly, never through `f64`: a
//! REST time such as `1688669597.8277369` has more digits than an `f64` keeps.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{raw_json, Uint};
use crate::scan::{self, Scanner};

/// Every WebSocket v2 message: a channel push (`trade`, `heartbeat`, `status`) or the answer
/// to a method (`subscribe`, `pong`).
///
/// A `trade` push (a `snapshot` of recent trades right after subscribing, then `update`s):
/// ```json
/// {"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":60944.1,"qty":0.00012,"ord_type":"market","trade_id":74506123,"timestamp":"2024-10-01T13:57:23.385123Z"}]}
/// ```
/// Source: Kraken WebSocket v2, "Trade" channel,
/// <https://docs.kraken.com/api/docs/websocket-v2/trade>. `side` is the taker's side.
///
/// The subscribe acknowledgement (one per symbol), a refusal, the answer to `ping`, and the
/// heartbeat:
/// ```json
/// {"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2024-10-01T13:57:20.100000Z","time_out":"2024-10-01T13:57:20.100100Z"}
/// {"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2024-10-01T13:57:20.100000Z","time_out":"2024-10-01T13:57:20.100100Z"}
/// {"method":"pong","req_id":101,"time_in":"2024-10-01T13:57:20.100000Z","time_out":"2024-10-01T13:57:20.100100Z"}
/// {"channel":"heartbeat"}
/// ```
/// Source: Kraken WebSocket v2, "subscribe", "ping" and "heartbeat",
/// <https://docs.kraken.com/api/docs/websocket-v2/ping>.
#[derive(Debug, Deserialize)]
pub(crate) struct WsMessage<'a> {
    /// `trade`, `heartbeat`, `status`, ... on pushes.
    #[serde(borrow, default)]
    pub channel: Option<&'a str>,
    /// A push's payload, kept raw until the channel is known.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// `subscribe`, `unsubscribe`, `pong`, ... on answers.
    #[serde(borrow, default)]
    pub method: Option<&'a str>,
    /// Whether the method succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// What went wrong.
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
}

/// One trade of a WebSocket v2 `trade` push (see [`WsMessage`]).
#[derive(Debug, Deserialize)]
pub(crate) struct WsTrade<'a> {
    /// `BTC/USD`.
    #[serde(borrow)]
    pub symbol: &'a str,
    /// The taker's side, `buy` or `sell`.
    #[serde(borrow)]
    pub side: &'a str,
    /// Price: a JSON number, kept as its text.
    #[serde(borrow, deserialize_with = "raw_json")]
    pub price: &'a str,
    /// Quantity of the base asset: a JSON number, kept as its text.
    #[serde(borrow, deserialize_with = "raw_json")]
    pub qty: &'a str,
    /// Trade id, increasing per pair: a number (or a string of digits).
    pub trade_id: Uint,
    /// RFC 3339 with microseconds.
    #[serde(borrow)]
    pub timestamp: &'a str,
}

/// The answer of `GET /0/public/Trades?pair=XBTUSD&since=...`.
///
/// ```json
/// {"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],["30243.30000","0.00376960",1688669598.2804112,"s","l","",61044953]],"last":"1688671969993150842"}}
/// ```
/// Source: Kraken REST API, "Get Recent Trades",
/// <https://docs.kraken.com/api/docs/rest-api/get-recent-trades>. The result is keyed by
/// the pair's canonical name; `last` is the cursor to pass as `since` for the trades after
/// these; a trade is `[price, volume, time, b|s (taker side), m|l, misc, trade_id]`.
#[derive(Debug, Deserialize)]
pub(crate) struct RestAnswer<'a> {
    /// Error messages; empty on success.
    #[serde(borrow, default)]
    pub error: Vec<Cow<'a, str>>,
    /// The trades, when there was no error.
    #[serde(borrow, default)]
    pub result: Option<RestResult<'a>>,
}

/// The `result` of a Trades answer: one pair's trades, and the `last` cursor.
#[derive(Debug, Default)]
pub(crate) struct RestResult<'a> {
    /// The key the trades came under (`XXBTZUSD`).
    pub pair: Option<&'a str>,
    /// Oldest first.
    pub trades: Vec<RestTrade<'a>>,
    /// The `since` cursor for the trades after these (nanoseconds, as text).
    pub last: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RestResult<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ResultVisitor(std::marker::PhantomData))
    }
}

struct ResultVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ResultVisitor<'a> {
    type Value = RestResult<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of one pair's trades and `last`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RestResult<'a>, A::Error> {
        let mut out = RestResult::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == "last" {
                out.last = Some(map.next_value::<LastCursor<'a>>()?.0);
            } else if out.pair.is_some() {
                return Err(de::Error::custom(format_args!(
                    "trades of more than one pair ({key})"
                )));
            } else {
                out.pair = Some(key);
                out.trades = map.next_value()?;
            }
        }
        Ok(out)
    }
}

/// `last`, documented as a string but tolerated as a bare integer.
struct LastCursor<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for LastCursor<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        let text = raw.get();
        match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => Ok(LastCursor(Cow::Borrowed(inner))),
            None => Ok(LastCursor(Cow::Borrowed(text))),
        }
    }
}

/// One REST trade, `[price, volume, time, side, order type, misc, trade_id]`. Elements
/// Kraken may append later are ignored.
#[derive(Debug)]
pub(crate) struct RestTrade<'a> {
    /// Price, exact text.
    pub price: &'a str,
    /// Volume of the base asset, exact text.
    pub volume: &'a str,
    /// Seconds since the epoch: a JSON number with up to 7 (or more) fractional digits
    /// (or the same in a string), kept as its text.
    pub time: &'a RawValue,
    /// `b` when the taker bought, `s` when the taker sold.
    pub side: &'a str,
    /// Trade id, increasing per pair: a number (or a string of digits).
    pub trade_id: Uint,
}

impl<'de: 'a, 'a> Deserialize<'de> for RestTrade<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(TradeVisitor(std::marker::PhantomData))
    }
}

struct TradeVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TradeVisitor<'a> {
    type Value = RestTrade<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[price, volume, time, side, type, misc, trade_id]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RestTrade<'a>, A::Error> {
        let missing = |i: usize| de::Error::invalid_length(i, &"7 elements");
        let price: &'de str = seq.next_element()?.ok_or_else(|| missing(0))?;
        let volume: &'de str = seq.next_element()?.ok_or_else(|| missing(1))?;
        let time: &'de RawValue = seq.next_element()?.ok_or_else(|| missing(2))?;
        let side: &'de str = seq.next_element()?.ok_or_else(|| missing(3))?;
        let _order_type: IgnoredAny = seq.next_element()?.ok_or_else(|| missing(4))?;
        let _misc: IgnoredAny = seq.next_element()?.ok_or_else(|| missing(5))?;
        let trade_id: Uint = seq.next_element()?.ok_or_else(|| missing(6))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RestTrade {
            price,
            volume,
            time,
            side,
            trade_id,
        })
    }
}

/// The fast path for `trade` pushes (see [`crate::scan`]): calls `each` with every trade of
/// the push, in order, in the one pass that checks the whole message. `None` leaves the
/// message to serde: an answer to a method, another channel, `data` before `channel` (Kraken
/// sends `channel` first), a price or quantity that is not a number, a field of an
/// unexpected JSON type or named twice, an escape; and whatever `each` refuses.
pub(crate) fn scan_push<'a>(
    text: &'a str,
    mut each: impl FnMut(WsTrade<'a>) -> Option<()>,
) -> Option<()> {
    let mut channel = None;
    let mut data = false;
    scan::document(text, |s| {
        s.walk_object(|s, key| match key {
            "channel" => scan::once(&mut channel, s.any()?.str()),
            "data" if !data && channel == Some("trade") => {
                data = true;
                s.walk_array(|s| each(scan_trade(s)?))
            }
            // `data` twice or too early; the fields of answers.
            "data" | "method" | "success" | "error" => None,
            _ => s.any().map(drop),
        })
    })?;
    data.then_some(())
}

/// One trade of a push, the cursor on its object.
fn scan_trade<'a>(s: &mut Scanner<'a>) -> Option<WsTrade<'a>> {
    let (mut symbol, mut side, mut price, mut qty, mut trade_id, mut timestamp) =
        (None, None, None, None, None, None);
    s.walk_object(|s, key| match key {
        "symbol" => scan::once(&mut symbol, s.any()?.str()),
        "side" => scan::once(&mut side, s.any()?.str()),
        "price" => scan::once(&mut price, s.any()?.num()),
        "qty" => scan::once(&mut qty, s.any()?.num()),
        "trade_id" => scan::once(&mut trade_id, s.any()?.uint().map(Uint)),
        "timestamp" => scan::once(&mut timestamp, s.any()?.str()),
        _ => s.any().map(drop),
    })?;
    Some(WsTrade {
        symbol: symbol?,
        side: side?,
        price: price?,
        qty: qty?,
        trade_id: trade_id?,
        timestamp: timestamp?,
    })
}
