//! A mock Kraken spot: WebSocket v2 (`status` on connect, `subscribe` acknowledged per
//! symbol, a `snapshot` of recent trades then `update`s, `heartbeat` every
//! `heartbeat_every`, `ping` / `pong`) and `GET /0/public/Trades?pair=&since=&count=` over REST,
//! keyed by canonical pair names (`XXBTZUSD`) with times as JSON numbers in seconds.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Side, Symbol, Timestamp};
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id of each pair (plus a per-pair offset).
const FIRST_ID: u64 = 74_500_000;
/// Trades in a snapshot.
const SNAPSHOT: usize = 50;
/// Trades per REST answer: Kraken's default and largest `count`.
const PAGE: usize = 1_000;
/// Trades per update, at most.
const MAX_BATCH: usize = 5;

fn ws_asset(a: &str) -> &str {
    match a {
        "XBT" => "BTC",
        "XDG" => "DOGE",
        other => other,
    }
}

fn rest_asset(a: &str) -> &str {
    match a {
        "BTC" => "XBT",
        "DOGE" => "XDG",
        other => other,
    }
}

/// `BTC/USD`.
fn ws_name(s: &Symbol) -> String {
    format!("{}/{}", ws_asset(s.base()), ws_asset(s.quote()))
}

/// `XBTUSD`, the name requests use.
fn rest_name(s: &Symbol) -> String {
    format!("{}{}", rest_asset(s.base()), rest_asset(s.quote()))
}

/// The canonical name answers use: `XXBTZUSD` for pairs of pre-2018 assets, else as asked
/// (`XDGUSD`: dogecoin's asset is `XXDG`, but its pairs came later and have no prefixes).
fn canonical_name(s: &Symbol) -> String {
    let legacy = |a: &str| -> String {
        match a {
            "XBT" | "ETH" | "LTC" | "XRP" | "XLM" | "XMR" | "ETC" | "ZEC" => {
                format!("X{a}")
            }
            "USD" | "EUR" | "GBP" | "JPY" | "CAD" | "AUD" => format!("Z{a}"),
            other => other.to_owned(),
        }
    };
    let (b, q) = (rest_asset(s.base()), rest_asset(s.quote()));
    let (lb, lq) = (legacy(b), legacy(q));
    // Kraken uses the four-letter forms only when both assets have one.
    if lb.len() == 4 && lq.len() == 4 && lb != b && lq != q {
        format!("{lb}{lq}")
    } else {
        format!("{b}{q}")
    }
}

/// The REST API: the asset pairs and the trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/0/public/AssetPairs" {
        asset_pairs(shared)
    } else {
        trades(shared, req)
    }
}

/// `GET /0/public/AssetPairs`: every pair by its canonical name, with its `altname`, its
/// `wsname` in Kraken's asset names (`XBT/USD`) and its `status`; [`super::HALTED`] is
/// `cancel_only`.
fn asset_pairs(shared: &Shared) -> Response {
    let entry = |s: &Symbol, status: &str| {
        let (b, q) = (rest_asset(s.base()), rest_asset(s.quote()));
        format!(
            r#""{}":{{"altname":"{}","wsname":"{b}/{q}","aclass_base":"currency","base":"{b}","aclass_quote":"currency","quote":"{q}","lot":"unit","cost_decimals":5,"pair_decimals":2,"lot_decimals":8,"lot_multiplier":1,"leverage_buy":[],"leverage_sell":[],"fees":[[0,0.4]],"fees_maker":[[0,0.25]],"fee_volume_currency":"ZUSD","margin_call":80,"margin_stop":40,"ordermin":"0.0001","costmin":"0.5","tick_size":"0.01","status":"{status}"}}"#,
            canonical_name(s),
            rest_name(s),
        )
    };
    let mut pairs: Vec<String> = shared.listed().iter().map(|s| entry(s, "online")).collect();
    if let Ok(halted) = Symbol::parse(super::HALTED) {
        pairs.push(entry(&halted, "cancel_only"));
    }
    Response::json(format!(
        r#"{{"error":[],"result":{{{}}}}}"#,
        pairs.join(",")
    ))
}

/// Seconds with the microseconds of the trade, trailing zeros dropped, as Kraken prints them.
fn secs_text(t: Timestamp) -> String {
    let micros = t.unix_nanos().div_euclid(1_000);
    let text = format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    );
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A mock Kraken spot venue on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing,
/// faults and ground truth. Each `subscribe` request with at least one acknowledged symbol
/// counts as one subscription.
#[derive(Debug)]
pub struct MockKraken {
    venue: MockVenue,
}

impl Deref for MockKraken {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockKraken {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings (`heartbeat_every` is the period of its
    /// `heartbeat` messages).
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new(cfg, FIRST_ID, true);
        let venue = MockVenue::start(shared, Arc::new(KrakenWire), rest)?;
        Ok(Self { venue })
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    method: String,
    #[serde(default)]
    params: Option<Params>,
    #[serde(default)]
    req_id: Option<u64>,
}

#[derive(Deserialize)]
struct Params {
    channel: String,
    #[serde(default)]
    symbol: Vec<String>,
    #[serde(default = "yes")]
    snapshot: bool,
}

fn yes() -> bool {
    true
}

fn now_text() -> String {
    let now = Timestamp::now();
    Timestamp::from_unix_micros(now.unix_nanos() / 1_000).to_string()
}

fn trade_json(t: &MockTrade) -> String {
    format!(
        r#"{{"symbol":"{symbol}","side":"{side}","price":{price},"qty":{qty},"ord_type":"{ord}","trade_id":{id},"timestamp":"{time}"}}"#,
        symbol = ws_name(&t.symbol),
        side = t.side.as_str(),
        price = t.price,
        qty = t.amount_text,
        ord = if t.side == Side::Buy {
            "market"
        } else {
            "limit"
        },
        id = t.trade_id,
        time = t.time,
    )
}

fn trades_frame(kind: &str, trades: &[MockTrade]) -> String {
    let data: Vec<String> = trades.iter().map(trade_json).collect();
    format!(
        r#"{{"channel":"trade","type":"{kind}","data":[{}]}}"#,
        data.join(",")
    )
}

struct KrakenWire;

impl Wire for KrakenWire {
    fn on_connect(&self, _shared: &Shared, _path: &str, _subs: &mut Subs) -> Reply {
        Reply {
            frames: vec![
                r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":12393906104898154338,"system":"online","version":"2.0.8"}]}"#
                    .to_owned(),
            ],
            subscribed: false,
        }
    }

    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply.frames.push(
                serde_json::json!({"error": "Malformed request", "success": false, "time_in": now_text(), "time_out": now_text()})
                    .to_string(),
            );
            return reply;
        };
        let subscribe = match msg.method.as_str() {
            "ping" => {
                let mut pong = serde_json::json!({"method": "pong", "time_in": now_text(), "time_out": now_text()});
                if let Some(id) = msg.req_id {
                    pong["req_id"] = id.into();
                }
                reply.frames.push(pong.to_string());
                return reply;
            }
            "subscribe" => true,
            "unsubscribe" => false,
            other => {
                reply.frames.push(
                    serde_json::json!({"error": format!("Method not found {other}"), "method": other, "success": false, "time_in": now_text(), "time_out": now_text()})
                        .to_string(),
                );
                return reply;
            }
        };
        let Some(params) = msg.params.filter(|p| p.channel == "trade") else {
            reply.frames.push(
                serde_json::json!({"error": "Channel not supported", "method": msg.method, "success": false, "time_in": now_text(), "time_out": now_text()})
                    .to_string(),
            );
            return reply;
        };
        for name in &params.symbol {
            let Some(s) = shared.symbol(name, ws_name) else {
                reply.frames.push(
                    serde_json::json!({"error": format!("Currency pair not supported {name}"), "method": msg.method, "success": false, "symbol": name, "time_in": now_text(), "time_out": now_text()})
                        .to_string(),
                );
                continue;
            };
            reply.frames.push(
                serde_json::json!({"method": msg.method, "result": {"channel": "trade", "snapshot": params.snapshot, "symbol": name}, "success": true, "time_in": now_text(), "time_out": now_text()})
                    .to_string(),
            );
            if !subscribe {
                subs.trades.remove(&s);
                subs.heartbeats.remove(&s);
                continue;
            }
            reply.subscribed = true;
            subs.heartbeats.insert(s.clone());
            if subs.trades.insert(s.clone()) && params.snapshot {
                let recent: Vec<MockTrade> = shared.with_history(|h| {
                    let mut r: Vec<MockTrade> = h
                        .iter()
                        .rev()
                        .map(|e| &e.trade)
                        .filter(|t| t.symbol == s)
                        .take(SNAPSHOT)
                        .cloned()
                        .collect();
                    r.reverse();
                    r
                });
                reply.frames.push(trades_frame("snapshot", &recent));
            }
        }
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        trades_frame("update", std::slice::from_ref(t))
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn batch_frame(&self, _shared: &Shared, trades: &[MockTrade]) -> String {
        trades_frame("update", trades)
    }

    fn malformed_frame(&self) -> String {
        r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","pri"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, subs: &Subs, _upto: usize) -> Vec<String> {
        if subs.heartbeats.is_empty() {
            Vec::new()
        } else {
            vec![r#"{"channel":"heartbeat"}"#.to_owned()]
        }
    }

    fn reconnect_frame(&self) -> Option<String> {
        // Kraken has no reconnect request; it closes the connection.
        None
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }
}

fn rest_error(msg: &str) -> Response {
    Response::json(serde_json::json!({"error": [msg]}).to_string())
}

/// `GET /0/public/Trades?pair=XBTUSD[&since=NS][&count=N]`: up to `count` (1 to 1000,
/// 1000 by default) trades strictly after `since`, oldest first, or the newest `count`;
/// `last` is the time of the newest returned, in nanoseconds.
fn trades(shared: &Shared, req: &Request) -> Response {
    if req.path != "/0/public/Trades" {
        return Response::status(404);
    }
    let Some(symbol) = req.query_param("pair").and_then(|p| {
        shared
            .symbol(p, rest_name)
            .or_else(|| shared.symbol(p, canonical_name))
    }) else {
        return rest_error("EQuery:Unknown asset pair");
    };
    let since = match req.query_param("since").map(str::parse::<i64>) {
        None => None,
        // Kraken takes seconds too; anything this small is not nanoseconds.
        Some(Ok(n)) if n < 100_000_000_000 => Some(n.saturating_mul(1_000_000_000)),
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return rest_error("EGeneral:Invalid arguments:since"),
    };
    let count = match req.query_param("count").map(str::parse::<usize>) {
        None => PAGE,
        Some(Ok(n)) if (1..=PAGE).contains(&n) => n,
        Some(_) => return rest_error("EGeneral:Invalid arguments:count"),
    };
    let page: Vec<MockTrade> = shared.with_history(|h| {
        let of_pair = h.iter().map(|e| &e.trade).filter(|t| t.symbol == symbol);
        match since {
            Some(s) => of_pair
                .filter(|t| t.time.unix_nanos() > s)
                .take(count)
                .cloned()
                .collect(),
            None => {
                let mut newest: Vec<MockTrade> = of_pair.rev().take(count).cloned().collect();
                newest.reverse();
                newest
            }
        }
    });
    let last = page
        .last()
        .map(|t| t.time.unix_nanos())
        .or(since)
        .unwrap_or_else(|| Timestamp::now().unix_nanos());
    let rows: Vec<String> = page
        .iter()
        .map(|t| {
            format!(
                r#"["{}","{}",{},"{}","{}","",{}]"#,
                t.price,
                t.amount_text,
                secs_text(t.time),
                if t.side == Side::Sell { "s" } else { "b" },
                if t.side == Side::Buy { "m" } else { "l" },
                t.trade_id,
            )
        })
        .collect();
    Response::json(format!(
        r#"{{"error":[],"result":{{"{}":[{}],"last":"{last}"}}}}"#,
        canonical_name(&symbol),
        rows.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_as_kraken_writes_them() {
        let s = |x: &str| Symbol::parse(x).unwrap();
        assert_eq!(canonical_name(&s("BTC-USD")), "XXBTZUSD");
        assert_eq!(canonical_name(&s("ETH-BTC")), "XETHXXBT");
        assert_eq!(canonical_name(&s("SOL-USD")), "SOLUSD");
        assert_eq!(canonical_name(&s("BTC-USDT")), "XBTUSDT");
        assert_eq!(ws_name(&s("BTC-USD")), "BTC/USD");
        assert_eq!(rest_name(&s("BTC-USD")), "XBTUSD");
        assert_eq!(
            secs_text(Timestamp::from_unix_micros(1_688_669_602_698_379)),
            "1688669602.698379"
        );
        assert_eq!(
            secs_text(Timestamp::from_unix_micros(1_688_669_602_500_000)),
            "1688669602.5"
        );
        assert_eq!(
            secs_text(Timestamp::from_unix_micros(1_688_669_602_000_000)),
            "1688669602"
        );
    }
}
