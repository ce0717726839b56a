//! A mock OKX v5: the public WebSocket's `subscribe` (one `event: subscribe` per channel),
//! the bare-text `ping` / `pong` keep-alive, `trades` pushes batching a symbol's trades, the
//! service-upgrade `notice`, and `GET /api/v5/market/trades` /
//! `GET /api/v5/market/history-trades?type=1&after=&before=` over REST, with the instrument
//! list `GET /api/v5/public/instruments?instType=SPOT`. Times are milliseconds.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::Symbol;
use serde::Deserialize;

use super::binance::default_symbols;
use super::conn::{Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id of each instrument (plus a per-instrument offset).
const FIRST_ID: u64 = 557_000_000;
/// OKX's largest page (`trades` allows 500, `history-trades` 100).
const MAX_LIMIT: usize = 100;
/// Trades per push, at most.
const MAX_BATCH: usize = 3;
const CONN_ID: &str = "a4d3ae55";

/// A mock OKX venue on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing, faults
/// and ground truth. Each `subscribe` request that is acknowledged counts as one
/// subscription.
#[derive(Debug)]
pub struct MockOkx {
    venue: MockVenue,
}

impl Deref for MockOkx {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockOkx {
    /// Starts a mock listing BTC-USDT and ETH-USDT.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::with_symbols(&default_symbols())).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, true);
        let venue = MockVenue::start(shared, Arc::new(OkxWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends the service-upgrade notice (code 64008) on every live connection now.
    pub fn notice_upgrade(&self) {
        self.venue.shared.control(Control::RequestReconnect);
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    op: String,
    #[serde(default)]
    args: Vec<ClientArg>,
}

#[derive(Deserialize)]
struct ClientArg {
    channel: String,
    #[serde(rename = "instId", default)]
    inst_id: String,
}

fn error_frame(code: &str, msg: &str) -> String {
    serde_json::json!({"event": "error", "code": code, "msg": msg, "connId": CONN_ID}).to_string()
}

fn trade_json(t: &MockTrade, seq: u64) -> String {
    format!(
        r#"{{"instId":"{inst}","tradeId":"{id}","px":"{px}","sz":"{sz}","side":"{side}","ts":"{ts}","count":"1","source":"0","seqId":{seq}}}"#,
        inst = t.symbol,
        id = t.trade_id,
        px = t.price,
        sz = t.amount_text,
        side = t.side.as_str(),
        ts = t.time.unix_nanos() / 1_000_000,
    )
}

struct OkxWire;

impl Wire for OkxWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        if text == "ping" {
            reply.frames.push("pong".to_owned());
            return reply;
        }
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply
                .frames
                .push(error_frame("60012", &format!("Invalid request: {text}")));
            return reply;
        };
        let subscribe = match msg.op.as_str() {
            "subscribe" => true,
            "unsubscribe" => false,
            other => {
                reply.frames.push(error_frame(
                    "60012",
                    &format!("Invalid request: op {other}"),
                ));
                return reply;
            }
        };
        for arg in &msg.args {
            let symbol = (arg.channel == "trades")
                .then(|| shared.symbol(&arg.inst_id, Symbol::to_string))
                .flatten();
            let Some(s) = symbol else {
                reply.frames.push(error_frame(
                    "60018",
                    &format!(
                        "Wrong URL or channel:{},instId:{} doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
                        arg.channel, arg.inst_id
                    ),
                ));
                continue;
            };
            if subscribe {
                subs.trades.insert(s);
                reply.subscribed = true;
            } else {
                subs.trades.remove(&s);
            }
            reply.frames.push(
                serde_json::json!({
                    "event": msg.op,
                    "arg": {"channel": arg.channel, "instId": arg.inst_id},
                    "connId": CONN_ID,
                })
                .to_string(),
            );
        }
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
        format!(
            r#"{{"arg":{{"channel":"trades","instId":"{inst}"}},"data":[{data}]}}"#,
            inst = first.symbol,
            data = data.join(","),
        )
    }

    fn malformed_frame(&self) -> String {
        r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId""#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, _subs: &Subs, _upto: usize) -> Vec<String> {
        Vec::new()
    }

    fn reconnect_frame(&self) -> Option<String> {
        Some(
            serde_json::json!({
                "event": "notice",
                "code": "64008",
                "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                "connId": CONN_ID,
            })
            .to_string(),
        )
    }

    fn heartbeat_every(&self, _shared: &Shared) -> Option<Duration> {
        // OKX only answers the client's pings.
        None
    }
}

fn rest_error(status: u16, code: &str, msg: &str) -> Response {
    Response::status(status)
        .with_header("content-type", "application/json")
        .with_body(
            serde_json::json!({"code": code, "msg": msg, "data": []})
                .to_string()
                .into_bytes(),
        )
}

/// `GET /api/v5/public/instruments?instType=SPOT`: every instrument as `BTC-USDT` with its
/// currencies and `state`; [`super::HALTED`] is `suspend`.
fn instruments(shared: &Shared, req: &Request) -> Response {
    match req.query_param("instType") {
        Some("SPOT") => {}
        Some(_) => return rest_error(400, "51000", "Parameter instType error"),
        None => return rest_error(400, "50014", "Parameter instType can not be empty."),
    }
    let info = |(s, trading): &(Symbol, bool)| {
        let state = if *trading { "live" } else { "suspend" };
        format!(
            r#"{{"alias":"","auctionEndTime":"","baseCcy":"{b}","category":"1","ctMult":"","ctType":"","ctVal":"","ctValCcy":"","expTime":"","instFamily":"","instId":"{s}","instType":"SPOT","lever":"10","listTime":"1606468572000","lotSz":"0.00000001","maxIcebergSz":"9999999999.0000000000000000","maxLmtAmt":"1000000","maxLmtSz":"9999999999","maxMktAmt":"1000000","maxMktSz":"","maxStopSz":"","maxTriggerSz":"9999999999.0000000000000000","maxTwapSz":"9999999999.0000000000000000","minSz":"0.00001","optType":"","quoteCcy":"{q}","ruleType":"normal","settleCcy":"","state":"{state}","stk":"","tickSz":"0.1","uly":""}}"#,
            b = s.base(),
            q = s.quote(),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(info).collect();
    Response::json(format!(
        r#"{{"code":"0","data":[{}],"msg":""}}"#,
        all.join(",")
    ))
}

/// `GET /api/v5/market/trades?instId=&limit=` (the newest, newest first) and
/// `GET /api/v5/market/history-trades?instId=&type=1&after=&before=&limit=`: trades older
/// than `after` and newer than `before`, newest first, at most `limit` from the newest end.
/// As on OKX, `before` alone gives the latest trades, not the ones right after it: only
/// both bounds together name the page that follows an id.
fn rest(shared: &Shared, req: &Request) -> Response {
    let history = match req.path.as_str() {
        "/api/v5/public/instruments" => return instruments(shared, req),
        "/api/v5/market/trades" => false,
        "/api/v5/market/history-trades" => true,
        _ => return rest_error(404, "50000", "Not found"),
    };
    let Some(symbol) = req
        .query_param("instId")
        .and_then(|i| shared.symbol(i, Symbol::to_string))
    else {
        return rest_error(400, "51001", "Instrument ID does not exist");
    };
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => MAX_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return rest_error(400, "51000", "Parameter limit error"),
    };
    let id = |name: &str| req.query_param(name).map(str::parse::<u64>);
    let (after, before) = if history {
        if req.query_param("type").is_some_and(|t| t != "1") {
            return rest_error(400, "51000", "Parameter type error");
        }
        match (id("after"), id("before")) {
            (Some(Err(_)), _) => return rest_error(400, "51000", "Parameter after error"),
            (_, Some(Err(_))) => return rest_error(400, "51000", "Parameter before error"),
            (a, b) => (a.and_then(Result::ok), b.and_then(Result::ok)),
        }
    } else {
        (None, None)
    };
    let rows: Vec<String> = shared.with_history(|h| {
        h.iter()
            .rev()
            .map(|e| &e.trade)
            .filter(|t| {
                t.symbol == symbol
                    && after.is_none_or(|a| t.trade_id < a)
                    && before.is_none_or(|b| t.trade_id > b)
            })
            .take(limit)
            .map(|t| {
                format!(
                    r#"{{"instId":"{}","side":"{}","sz":"{}","px":"{}","tradeId":"{}","ts":"{}","source":"0"}}"#,
                    t.symbol,
                    t.side.as_str(),
                    t.amount_text,
                    t.price,
                    t.trade_id,
                    t.time.unix_nanos() / 1_000_000,
                )
            })
            .collect()
    });
    Response::json(format!(
        r#"{{"code":"0","msg":"","data":[{}]}}"#,
        rows.join(",")
    ))
}
