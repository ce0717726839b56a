//! A mock Bybit v5 spot: the public stream's `subscribe` (acknowledged with `success`), the
//! app-level `ping` / `pong`, `publicTrade.{symbol}` pushes batching consecutive trades, and
//! `GET /v5/market/recent-trade` and `GET /v5/market/instruments-info?category=spot` over
//! REST (errors as HTTP 200 with a `retCode`). Trade ids
//! are 19-digit strings and times milliseconds, as on Bybit spot.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Side, Symbol, Timestamp};
use serde::Deserialize;

use super::binance::default_symbols;
use super::conn::{Reply, Subs, Wire};
use super::{MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id of each symbol (plus a per-symbol offset): 19 digits, as on Bybit spot.
const FIRST_ID: u64 = 2_290_000_000_412_000_000;
/// Bybit's spot maximum page.
const MAX_LIMIT: usize = 60;
/// Trades per push, at most.
const MAX_BATCH: usize = 4;
const TOPIC_PREFIX: &str = "publicTrade.";
const CONN_ID: &str = "5d4b2a4e-8f1c-4a8e-9a55-6f1c2e3d4b5a";

/// Bybit's name of a symbol: `BTC-USDT` is `BTCUSDT`.
fn venue_symbol(symbol: &Symbol) -> String {
    format!("{}{}", symbol.base(), symbol.quote())
}

/// A mock Bybit v5 spot venue on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing,
/// faults and ground truth. Each acknowledged `subscribe` request counts as one subscription.
#[derive(Debug)]
pub struct MockBybit {
    venue: MockVenue,
}

impl Deref for MockBybit {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockBybit {
    /// Starts a mock listing BTC-USDT and ETH-USDT.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::with_symbols(&default_symbols())).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, true);
        let venue = MockVenue::start(shared, Arc::new(BybitWire), rest)?;
        Ok(Self { venue })
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    op: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    req_id: Option<String>,
}

fn answer(op: &str, success: bool, ret_msg: &str, req_id: &str) -> String {
    serde_json::json!({
        "success": success,
        "ret_msg": ret_msg,
        "conn_id": CONN_ID,
        "req_id": req_id,
        "op": op,
    })
    .to_string()
}

fn trade_json(t: &MockTrade, seq: u64) -> String {
    format!(
        r#"{{"i":"{id}","T":{time},"p":"{price}","v":"{size}","S":"{side}","s":"{symbol}","BT":false,"seq":{seq}}}"#,
        id = t.trade_id,
        time = t.time.unix_nanos() / 1_000_000,
        price = t.price,
        size = t.amount_text,
        side = side(t.side),
        symbol = venue_symbol(&t.symbol),
    )
}

fn side(s: Side) -> &'static str {
    if s == Side::Sell {
        "Sell"
    } else {
        "Buy"
    }
}

struct BybitWire;

impl Wire for BybitWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply
                .frames
                .push(answer("", false, "error:request not json", ""));
            return reply;
        };
        let req_id = msg.req_id.as_deref().unwrap_or("");
        let subscribe = match msg.op.as_str() {
            "ping" => {
                reply.frames.push(answer("ping", true, "pong", req_id));
                return reply;
            }
            "subscribe" => true,
            "unsubscribe" => false,
            other => {
                reply.frames.push(answer(
                    other,
                    false,
                    &format!("error:unknown op {other}"),
                    req_id,
                ));
                return reply;
            }
        };
        // The request is refused whole when one topic is unknown.
        let mut symbols = Vec::with_capacity(msg.args.len());
        for topic in &msg.args {
            match topic
                .strip_prefix(TOPIC_PREFIX)
                .and_then(|name| shared.symbol(name, venue_symbol))
            {
                Some(s) => symbols.push(s),
                None => {
                    reply.frames.push(answer(
                        &msg.op,
                        false,
                        &format!("error:handler not found,topic:{topic}"),
                        req_id,
                    ));
                    return reply;
                }
            }
        }
        for s in symbols {
            if subscribe {
                subs.trades.insert(s);
            } else {
                subs.trades.remove(&s);
            }
        }
        reply.subscribed = subscribe;
        reply.frames.push(answer(&msg.op, true, &msg.op, req_id));
        reply
    }

    fn trade_frame(&self, shared: &Shared, t: &MockTrade) -> String {
        self.batch_frame(shared, std::slice::from_ref(t))
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn batch_frame(&self, shared: &Shared, trades: &[MockTrade]) -> String {
        let Some(first) = trades.first() else {
            return String::new();
        };
        let data: Vec<String> = trades
            .iter()
            .map(|t| trade_json(t, shared.next_sequence()))
            .collect();
        let ts = Timestamp::now().unix_nanos() / 1_000_000;
        format!(
            r#"{{"topic":"{TOPIC_PREFIX}{symbol}","ts":{ts},"type":"snapshot","data":[{data}]}}"#,
            symbol = venue_symbol(&first.symbol),
            data = data.join(","),
        )
    }

    fn malformed_frame(&self) -> String {
        r#"{"topic":"publicTrade.BTCUSDT","ts":17277910"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, _subs: &Subs, _upto: usize) -> Vec<String> {
        Vec::new()
    }

    fn reconnect_frame(&self) -> Option<String> {
        None
    }

    fn heartbeat_every(&self, _shared: &Shared) -> Option<Duration> {
        // Bybit only answers the client's pings.
        None
    }
}

fn rest_error(code: i64, msg: &str) -> Response {
    let time = Timestamp::now().unix_nanos() / 1_000_000;
    Response::json(
        serde_json::json!({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": time})
            .to_string(),
    )
}

/// The REST API: the spot instruments and their recent trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/v5/market/instruments-info" {
        instruments_info(shared, req)
    } else {
        recent_trade(shared, req)
    }
}

/// `GET /v5/market/instruments-info?category=spot`: every instrument as `BTCUSDT` with its
/// coins and `status`; [`super::HALTED`] is `Closed`. Spot answers in one page.
fn instruments_info(shared: &Shared, req: &Request) -> Response {
    if req.query_param("category") != Some("spot") {
        return rest_error(10001, "params error: category invalid");
    }
    let info = |(s, trading): &(Symbol, bool)| {
        let status = if *trading { "Trading" } else { "Closed" };
        format!(
            r#"{{"symbol":"{name}","baseCoin":"{b}","quoteCoin":"{q}","innovation":"0","status":"{status}","marginTrading":"none","stTag":"0","lotSizeFilter":{{"basePrecision":"0.000001","quotePrecision":"0.00000001","minOrderQty":"0.000048","maxOrderQty":"71.73956243","minOrderAmt":"1","maxOrderAmt":"2000000"}},"priceFilter":{{"tickSize":"0.01"}},"riskParameters":{{"priceLimitRatioX":"0.01","priceLimitRatioY":"0.02"}}}}"#,
            name = venue_symbol(s),
            b = s.base(),
            q = s.quote(),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(info).collect();
    Response::json(format!(
        r#"{{"retCode":0,"retMsg":"OK","result":{{"category":"spot","list":[{}]}},"retExtInfo":{{}},"time":{}}}"#,
        all.join(","),
        Timestamp::now().unix_nanos() / 1_000_000
    ))
}

/// `GET /v5/market/recent-trade?category=spot&symbol=&limit=`: the newest trades, newest
/// first.
fn recent_trade(shared: &Shared, req: &Request) -> Response {
    if req.path != "/v5/market/recent-trade" {
        return Response::status(404);
    }
    if req.query_param("category") != Some("spot") {
        return rest_error(10001, "params error: category invalid");
    }
    let Some(symbol) = req
        .query_param("symbol")
        .and_then(|n| shared.symbol(n, venue_symbol))
    else {
        return rest_error(10001, "params error: symbol invalid");
    };
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => MAX_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return rest_error(10001, "params error: limit invalid"),
    };
    let rows: Vec<String> = shared.with_history(|h| {
        h.iter()
            .rev()
            .map(|e| &e.trade)
            .filter(|t| t.symbol == symbol)
            .take(limit)
            .map(|t| {
                format!(
                    r#"{{"execId":"{}","symbol":"{}","price":"{}","size":"{}","side":"{}","time":"{}","isBlockTrade":false,"isRPITrade":false}}"#,
                    t.trade_id,
                    venue_symbol(&t.symbol),
                    t.price,
                    t.amount_text,
                    side(t.side),
                    t.time.unix_nanos() / 1_000_000,
                )
            })
            .collect()
    });
    let time = Timestamp::now().unix_nanos() / 1_000_000;
    Response::json(format!(
        r#"{{"retCode":0,"retMsg":"OK","result":{{"category":"spot","list":[{}]}},"retExtInfo":{{}},"time":{time}}}"#,
        rows.join(",")
    ))
}
