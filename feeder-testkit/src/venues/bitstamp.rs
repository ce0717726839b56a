//! A mock Bitstamp: WebSocket API v2 (`live_trades_[pair]`, `bts:heartbeat`,
//! `bts:request_reconnect`, `bts:error`) and HTTP API v2 transactions with the
//! `minute` / `hour` / `day` windows, and the pair list `GET /api/v2/trading-pairs-info/`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Side, Symbol, Timestamp};
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id; Bitstamp's ids are one sequence across all pairs.
const FIRST_ID: u64 = 359_839_513;
const CHANNEL_PREFIX: &str = "live_trades_";

/// Bitstamp's name of a pair: `BTC-USD` is `btcusd`.
fn pair(symbol: &Symbol) -> String {
    format!("{}{}", symbol.base(), symbol.quote()).to_ascii_lowercase()
}

/// A mock Bitstamp on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing, faults and
/// ground truth.
#[derive(Debug)]
pub struct MockBitstamp {
    venue: MockVenue,
}

impl Deref for MockBitstamp {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockBitstamp {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new(cfg, FIRST_ID, false);
        let venue = MockVenue::start(shared, Arc::new(BitstampWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends `bts:request_reconnect` on every live connection now.
    pub fn request_reconnect(&self) {
        self.venue.shared.control(Control::RequestReconnect);
    }
}

#[derive(Deserialize)]
struct ClientMessage<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    data: Option<ClientData>,
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(default)]
    channel: Option<String>,
}

fn error_frame(message: &str) -> String {
    serde_json::json!({"event": "bts:error", "channel": "", "data": {"code": null, "message": message}})
        .to_string()
}

struct BitstampWire;

impl Wire for BitstampWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage<'_>>(text) else {
            reply.frames.push(error_frame("Incorrect JSON format."));
            return reply;
        };
        let channel = msg.data.and_then(|d| d.channel).unwrap_or_default();
        let symbol = channel
            .strip_prefix(CHANNEL_PREFIX)
            .and_then(|p| shared.symbol(p, pair));
        match (msg.event, symbol) {
            ("bts:heartbeat", _) => reply.frames.push(
                r#"{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}"#.to_owned(),
            ),
            ("bts:subscribe", Some(s)) => {
                subs.trades.insert(s);
                reply.subscribed = true;
                reply.frames.push(format!(
                    r#"{{"event":"bts:subscription_succeeded","channel":"{channel}","data":{{}}}}"#
                ));
            }
            ("bts:unsubscribe", Some(s)) => {
                subs.trades.remove(&s);
                reply.frames.push(format!(
                    r#"{{"event":"bts:unsubscription_succeeded","channel":"{channel}","data":{{}}}}"#
                ));
            }
            ("bts:subscribe" | "bts:unsubscribe", None) => {
                reply.frames.push(error_frame("Bad subscription string."));
            }
            _ => reply.frames.push(error_frame("Incorrect JSON format.")),
        }
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        let micros = t.micros();
        let (ty, buy_order, sell_order) = match t.side {
            // The taker's order is the newer one.
            Side::Sell => (1, t.trade_id * 8 + 1, t.trade_id * 8 + 2),
            _ => (0, t.trade_id * 8 + 2, t.trade_id * 8 + 1),
        };
        format!(
            concat!(
                r#"{{"data":{{"id":{id},"timestamp":"{secs}","amount":{amount},"amount_str":"{amount_str}","#,
                r#""price":{price},"price_str":"{price}","type":{ty},"microtimestamp":"{micros}","#,
                r#""buy_order_id":{buy},"sell_order_id":{sell}}},"channel":"live_trades_{pair}","event":"trade"}}"#
            ),
            id = t.trade_id,
            secs = micros.div_euclid(1_000_000),
            amount = t.amount,
            amount_str = t.amount_text,
            price = t.price,
            ty = ty,
            micros = micros,
            buy = buy_order,
            sell = sell_order,
            pair = pair(&t.symbol),
        )
    }

    fn malformed_frame(&self) -> String {
        r#"{"data":{"id":1,"timestamp":"17277910"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, _subs: &Subs, _upto: usize) -> Vec<String> {
        Vec::new()
    }

    fn reconnect_frame(&self) -> Option<String> {
        Some(r#"{"event":"bts:request_reconnect","channel":"","data":""}"#.to_owned())
    }

    fn heartbeat_every(&self, _shared: &Shared) -> Option<Duration> {
        // Bitstamp only answers the client's heartbeats.
        None
    }
}

/// The REST API: the trading pairs and their transactions.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/api/v2/trading-pairs-info/" {
        trading_pairs_info(shared)
    } else {
        transactions(shared, req)
    }
}

/// `GET /api/v2/trading-pairs-info/`: every pair as `BTC/USD` with its `url_symbol`;
/// [`super::HALTED`] has trading `Disabled`.
fn trading_pairs_info(shared: &Shared) -> Response {
    let info = |(s, trading): &(Symbol, bool)| {
        let enabled = if *trading { "Enabled" } else { "Disabled" };
        format!(
            r#"{{"name":"{b}/{q}","url_symbol":"{url}","base_decimals":8,"counter_decimals":2,"instant_order_counter_decimals":2,"minimum_order":"10.00 {q}","trading":"{enabled}","instant_and_market_orders":"{enabled}","description":"{b} / {q}"}}"#,
            b = s.base(),
            q = s.quote(),
            url = pair(s),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(info).collect();
    Response::json(format!("[{}]", all.join(",")))
}

/// `GET /api/v2/transactions/{pair}/?time=minute|hour|day`: the pair's trades within the
/// window, newest first, in Bitstamp's all-strings format.
fn transactions(shared: &Shared, req: &Request) -> Response {
    let not_found = || {
        Response::status(404)
            .with_header("content-type", "application/json")
            .with_body(
                br#"{"status":"error","reason":"Invalid currency pair.","code":"API0005"}"#
                    .to_vec(),
            )
    };
    let Some(p) = req
        .path
        .strip_prefix("/api/v2/transactions/")
        .and_then(|rest| rest.strip_suffix('/'))
    else {
        return not_found();
    };
    let Some(symbol) = shared.symbol(p, pair) else {
        return not_found();
    };
    let window_secs = match req.query_param("time").unwrap_or("hour") {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => {
            return Response::status(400)
                .with_header("content-type", "application/json")
                .with_body(
                    br#"{"status":"error","reason":{"time":["Select a valid choice."]},"code":"API0004"}"#
                        .to_vec(),
                )
        }
    };
    let since = Timestamp::now().unix_secs() - window_secs;
    let rows: Vec<String> = shared.with_history(|h| {
        h.iter()
            .rev()
            .map(|e| &e.trade)
            .filter(|t| t.symbol == symbol && t.time.unix_secs() >= since)
            .map(|t| {
                format!(
                    r#"{{"date": "{}", "tid": "{}", "amount": "{}", "type": "{}", "price": "{}"}}"#,
                    t.time.unix_secs(),
                    t.trade_id,
                    t.amount_text,
                    if t.side == Side::Sell { 1 } else { 0 },
                    t.price,
                )
            })
            .collect()
    });
    Response::json(format!("[{}]", rows.join(", ")))
}
