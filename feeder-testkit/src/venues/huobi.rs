//! A mock Huobi (HTX): the market WebSocket with every frame gzip-compressed (`sub` /
//! `subbed`, `market.$symbol.trade.detail`, a server `ping` the client must answer with
//! `pong`, errors) and REST `GET /market/history/trade?symbol=..&size=..` and the symbol
//! list `GET /v1/common/symbols`.

use std::io::Write;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Symbol, Timestamp};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::conn::{Encoded, Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id (`tradeId`); one sequence across all symbols.
const FIRST_ID: u64 = 102_523_573_486;
/// Huobi's largest REST answer.
const MAX_SIZE: usize = 2_000;

/// Huobi's name of a symbol: `BTC-USDT` is `btcusdt`.
pub fn symbol_name(symbol: &Symbol) -> String {
    format!("{}{}", symbol.base(), symbol.quote()).to_ascii_lowercase()
}

/// Gzip, as every frame of Huobi's market WebSocket.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// A mock Huobi on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing, faults and
/// ground truth. Trade times are whole milliseconds; its `ping` goes out every
/// `heartbeat_every` of the [`MockConfig`]. What clients answered can be read from
/// [`MockVenue::ws_server`].
#[derive(Debug)]
pub struct MockHuobi {
    venue: MockVenue,
}

impl Deref for MockHuobi {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockHuobi {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, false);
        let venue = MockVenue::start(shared, Arc::new(HuobiWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends a `ping` on every live connection now.
    pub fn ping(&self) {
        self.venue.shared.control(Control::Heartbeat);
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    unsub: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    pong: Option<serde_json::Value>,
}

fn now_ms() -> i64 {
    Timestamp::now().unix_nanos() / 1_000_000
}

fn error_frame(id: Option<&str>, code: &str, msg: &str) -> String {
    serde_json::json!({"id": id, "status": "error", "err-code": code, "err-msg": msg, "ts": now_ms()})
        .to_string()
}

/// A price in Huobi's capital-E exponent form, exactly: `6000012E-2`.
fn exponent_form(d: Decimal) -> String {
    format!("{}E-{}", d.mantissa(), d.scale())
}

/// One trade as Huobi writes it; `id_key` is `tradeId` on the WebSocket and `trade-id` over
/// REST. The legacy `id` is longer than 64 bits.
fn trade_item(t: &MockTrade, id_key: &str) -> String {
    let price = if t.trade_id % 3 == 0 {
        exponent_form(t.price)
    } else {
        t.price.normalize().to_string()
    };
    format!(
        r#"{{"id":{legacy}{suffix:015},"ts":{ms},"{id_key}":{id},"amount":{amount},"price":{price},"direction":"{side}"}}"#,
        legacy = t.trade_id,
        suffix = t.trade_id % 1_000 * 7_919,
        ms = t.time.unix_nanos() / 1_000_000,
        id = t.trade_id,
        amount = t.amount_text,
        side = t.side.as_str(),
    )
}

struct HuobiWire;

impl Wire for HuobiWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply
                .frames
                .push(error_frame(None, "bad-request", "invalid json"));
            return reply;
        };
        if msg.pong.is_some() {
            // The answer to our ping: the connection stays.
            return reply;
        }
        let id = msg.id.as_deref();
        let (topic, subscribe) = match (&msg.sub, &msg.unsub) {
            (Some(t), _) => (t.as_str(), true),
            (None, Some(t)) => (t.as_str(), false),
            (None, None) => {
                reply
                    .frames
                    .push(error_frame(id, "bad-request", "unsupported request"));
                return reply;
            }
        };
        let symbol = topic
            .strip_prefix("market.")
            .and_then(|r| r.strip_suffix(".trade.detail"))
            .and_then(|name| shared.symbol(name, symbol_name));
        let Some(symbol) = symbol else {
            reply.frames.push(error_frame(
                id,
                "bad-request",
                &format!("invalid topic {topic}"),
            ));
            return reply;
        };
        let key = if subscribe { "subbed" } else { "unsubbed" };
        if subscribe {
            subs.trades.insert(symbol);
            reply.subscribed = true;
        } else {
            subs.trades.remove(&symbol);
        }
        reply.frames.push(
            serde_json::json!({"id": id, "status": "ok", key: topic, "ts": now_ms()}).to_string(),
        );
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        let ms = t.time.unix_nanos() / 1_000_000;
        format!(
            r#"{{"ch":"market.{}.trade.detail","ts":{},"tick":{{"id":{},"ts":{ms},"data":[{}]}}}}"#,
            symbol_name(&t.symbol),
            ms + 2,
            t.trade_id,
            trade_item(t, "tradeId"),
        )
    }

    fn malformed_frame(&self) -> String {
        r#"{"ch":"market.btcusdt.trade.detail","ts":16309949"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, _subs: &Subs, _upto: usize) -> Vec<String> {
        vec![format!(r#"{{"ping":{}}}"#, now_ms())]
    }

    fn reconnect_frame(&self) -> Option<String> {
        None
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }

    fn encode(&self, frame: String) -> Encoded {
        Encoded::Binary(gzip(frame.as_bytes()))
    }
}

/// The REST API: the symbols and their recent trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/v1/common/symbols" {
        common_symbols(shared)
    } else {
        history_trade(shared, req)
    }
}

/// `GET /v1/common/symbols`: every symbol as `btcusdt` with its currencies in lower case and
/// its `state`; [`super::HALTED`] is `offline`.
fn common_symbols(shared: &Shared) -> Response {
    let info = |(s, trading): &(Symbol, bool)| {
        let (state, api) = if *trading {
            ("online", "enabled")
        } else {
            ("offline", "disabled")
        };
        format!(
            r#"{{"base-currency":"{b}","quote-currency":"{q}","price-precision":2,"amount-precision":6,"symbol-partition":"main","symbol":"{name}","state":"{state}","value-precision":8,"min-order-amt":0.0001,"max-order-amt":1000,"min-order-value":5,"limit-order-min-order-amt":0.0001,"limit-order-max-order-amt":1000,"limit-order-max-buy-amt":1000,"limit-order-max-sell-amt":1000,"buy-limit-must-less-than":1.1,"sell-limit-must-greater-than":0.9,"sell-market-min-order-amt":0.0001,"sell-market-max-order-amt":100,"buy-market-max-order-value":1000000,"market-sell-order-rate-must-less-than":0.1,"market-buy-order-rate-must-less-than":0.1,"api-trading":"{api}","tags":""}}"#,
            b = s.base().to_ascii_lowercase(),
            q = s.quote().to_ascii_lowercase(),
            name = symbol_name(s),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(info).collect();
    Response::json(format!(r#"{{"status":"ok","data":[{}]}}"#, all.join(",")))
}

/// `GET /market/history/trade?symbol=btcusdt&size=N`: the `N` most recent trades, newest
/// first, grouped by millisecond as Huobi groups the trades of one match.
fn history_trade(shared: &Shared, req: &Request) -> Response {
    let error = |code: &str, msg: &str| {
        Response::json(
            serde_json::json!({"status": "error", "err-code": code, "err-msg": msg, "data": null})
                .to_string(),
        )
    };
    if req.path != "/market/history/trade" {
        return Response::status(404).with_body(b"not found".to_vec());
    }
    let Some(symbol) = req
        .query_param("symbol")
        .and_then(|n| shared.symbol(n, symbol_name))
    else {
        return error("invalid-parameter", "invalid symbol");
    };
    let size = match req.query_param("size").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if (1..=MAX_SIZE).contains(&n) => n,
        Some(_) => return error("invalid-parameter", "invalid size, valid range: [1, 2000]"),
    };
    let trades: Vec<MockTrade> = shared.with_history(|h| {
        h.iter()
            .rev()
            .map(|e| &e.trade)
            .filter(|t| t.symbol == symbol)
            .take(size)
            .cloned()
            .collect()
    });
    let mut groups: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(first) = trades.get(i) {
        let ms = first.time.unix_nanos() / 1_000_000;
        let same: Vec<&MockTrade> = trades[i..]
            .iter()
            .take_while(|t| t.time.unix_nanos() / 1_000_000 == ms)
            .collect();
        i += same.len();
        let items: Vec<String> = same.iter().map(|t| trade_item(t, "trade-id")).collect();
        groups.push(format!(
            r#"{{"id":{},"ts":{ms},"data":[{}]}}"#,
            first.trade_id,
            items.join(",")
        ));
    }
    Response::json(format!(
        r#"{{"ch":"market.{}.trade.detail","status":"ok","ts":{},"data":[{}]}}"#,
        symbol_name(&symbol),
        now_ms(),
        groups.join(",")
    ))
}
