//! A mock Gemini: WebSocket market data v2 (`subscribe` to `l2`, a first `l2_updates` with
//! the book and the latest trades, then a book update and a `trade` per trade, `heartbeat`,
//! `error`) and REST `GET /v1/trades/{symbol}` with `limit_trades` and `since_tid`, the
//! symbol list `GET /v1/symbols` and each symbol's `GET /v1/symbols/details/{symbol}`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Symbol, Timestamp};
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id; Gemini's ids are one sequence across all markets.
const FIRST_ID: u64 = 2_840_140_800_042_677;
/// Trades in the first `l2_updates` of a subscription.
const INITIAL_TRADES: usize = 50;
/// Gemini's default and largest page.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// How far back the public trades endpoint reaches: seven days.
const SERVED_NANOS: i64 = 7 * 24 * 3_600 * 1_000_000_000;

/// Gemini's name of a market: `BTC-USD` is `BTCUSD`.
pub fn market(symbol: &Symbol) -> String {
    format!("{}{}", symbol.base(), symbol.quote())
}

/// A mock Gemini on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing, faults and
/// ground truth. Trade times are whole milliseconds, as on Gemini; every fifth trade id is
/// written as a string, as Gemini does on some feeds.
#[derive(Debug)]
pub struct MockGemini {
    venue: MockVenue,
}

impl Deref for MockGemini {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockGemini {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, false);
        let venue = MockVenue::start(shared, Arc::new(GeminiWire), rest)?;
        Ok(Self { venue })
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

#[derive(Deserialize)]
struct Subscription {
    name: String,
    #[serde(default)]
    symbols: Vec<String>,
}

fn error_frame(reason: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "failed": true, "reason": reason, "message": message})
        .to_string()
}

fn millis(t: &MockTrade) -> i64 {
    t.time.unix_nanos() / 1_000_000
}

/// The trade id as Gemini writes it: usually a number, sometimes a string.
fn tid(t: &MockTrade) -> String {
    if t.trade_id % 5 == 0 {
        format!("\"{}\"", t.trade_id)
    } else {
        t.trade_id.to_string()
    }
}

/// A `trade` object; `event_key` is `event_id` in `trade` messages and `eventid` inside
/// `l2_updates`, as on the venue.
fn trade_object(t: &MockTrade, event_key: &str) -> String {
    format!(
        r#"{{"type":"trade","symbol":"{sym}","{event_key}":{event},"timestamp":{ms},"price":"{price}","quantity":"{qty}","side":"{side}","tid":{tid}}}"#,
        sym = market(&t.symbol),
        event = t.trade_id * 3,
        ms = millis(t),
        price = t.price,
        qty = t.amount_text,
        side = t.side.as_str(),
        tid = tid(t),
    )
}

/// A book level near the trade's price, so that book updates look like the venue's.
fn book_update(t: &MockTrade) -> String {
    format!(
        r#"{{"type":"l2_updates","symbol":"{}","changes":[["{}","{}","{}"]]}}"#,
        market(&t.symbol),
        t.side.opposite().as_str(),
        t.price,
        t.amount,
    )
}

struct GeminiWire;

impl Wire for GeminiWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply
                .frames
                .push(error_frame("InvalidJson", "Failed to parse the request"));
            return reply;
        };
        let subscribe = match msg.kind.as_str() {
            "subscribe" => true,
            "unsubscribe" => false,
            other => {
                reply.frames.push(error_frame(
                    "InvalidRequestType",
                    &format!("{other} is not a valid type"),
                ));
                return reply;
            }
        };
        // Check everything before changing anything.
        let mut wanted = Vec::new();
        for s in &msg.subscriptions {
            if s.name != "l2" {
                reply.frames.push(error_frame(
                    "InvalidSubscription",
                    &format!("{} is not supported here", s.name),
                ));
                return reply;
            }
            for name in &s.symbols {
                match shared.symbol(name, market) {
                    Some(sym) => wanted.push(sym),
                    None => {
                        reply.frames.push(error_frame(
                            "InvalidSymbol",
                            &format!("{name} is not a valid symbol"),
                        ));
                        return reply;
                    }
                }
            }
        }
        for sym in wanted {
            if !subscribe {
                subs.trades.remove(&sym);
                continue;
            }
            if !subs.trades.insert(sym.clone()) {
                continue;
            }
            reply.subscribed = true;
            let recent: Vec<String> = shared.with_history(|h| {
                h.iter()
                    .rev()
                    .filter(|e| !e.silent && e.trade.symbol == sym)
                    .take(INITIAL_TRADES)
                    .map(|e| trade_object(&e.trade, "eventid"))
                    .collect()
            });
            let mid = match sym.base() {
                "BTC" => "60000.00",
                "ETH" => "2600.00",
                _ => "100.00",
            };
            reply.frames.push(format!(
                r#"{{"type":"l2_updates","symbol":"{}","changes":[["buy","{mid}","1.5"],["sell","{mid}1","0.25"]],"trades":[{}]}}"#,
                market(&sym),
                recent.join(","),
            ));
        }
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        trade_object(t, "event_id")
    }

    fn trade_frames(&self, shared: &Shared, _subs: &Subs, t: &MockTrade) -> Vec<String> {
        // The book moves with every trade; the client must skip that update.
        vec![book_update(t), self.trade_frame(shared, t)]
    }

    fn malformed_frame(&self) -> String {
        r#"{"type":"trade","symbol":"BTCUSD","tid":28"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, subs: &Subs, _upto: usize) -> Vec<String> {
        if subs.trades.is_empty() {
            return Vec::new();
        }
        vec![format!(
            r#"{{"type":"heartbeat","timestamp":{}}}"#,
            Timestamp::now().unix_nanos() / 1_000_000
        )]
    }

    fn reconnect_frame(&self) -> Option<String> {
        None
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }
}

/// The REST API: the symbol list, each symbol's details, and the trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/v1/symbols" {
        symbols(shared)
    } else if let Some(name) = req.path.strip_prefix("/v1/symbols/details/") {
        symbol_details(shared, name)
    } else {
        trades(shared, req)
    }
}

/// A perpetual Gemini lists among its symbols: open, but not spot, so never listed as a
/// spot symbol that trades.
const PERPETUAL: &str = "btcgusdperp";

/// `GET /v1/symbols`: every symbol's name in lower case (`btcusd`), perpetuals included.
fn symbols(shared: &Shared) -> Response {
    let mut names: Vec<String> = shared
        .listing()
        .iter()
        .map(|(s, _)| format!("\"{}\"", market(s).to_ascii_lowercase()))
        .collect();
    names.push(format!("\"{PERPETUAL}\""));
    Response::json(format!("[{}]", names.join(",")))
}

/// `GET /v1/symbols/details/{symbol}` (any case): the symbol's currencies, `status` and
/// `product_type`; [`super::HALTED`] is `closed`, [`PERPETUAL`] a `swap`.
fn symbol_details(shared: &Shared, name: &str) -> Response {
    let details = |symbol: &str, b: &str, q: &str, status: &str, product: &str, contract: &str| {
        Response::json(format!(
            r#"{{"symbol":"{symbol}","base_currency":"{b}","quote_currency":"{q}","tick_size":1E-8,"quote_increment":0.01,"min_order_size":"0.00001","status":"{status}","wrap_enabled":false,"product_type":"{product}","contract_type":"{contract}","contract_price_currency":"{q}"}}"#
        ))
    };
    if name.eq_ignore_ascii_case(PERPETUAL) {
        return details("BTCGUSDPERP", "BTC", "GUSD", "open", "swap", "linear");
    }
    let upper = name.to_ascii_uppercase();
    let listing = shared.listing();
    let Some((s, trading)) = listing.iter().find(|(s, _)| market(s) == upper) else {
        return Response::status(400)
            .with_header("content-type", "application/json")
            .with_body(
                serde_json::json!({"result": "error", "reason": "InvalidSymbol", "message": format!("Supplied value '{name}' is not a valid symbol")})
                    .to_string()
                    .into_bytes(),
            );
    };
    let status = if *trading { "open" } else { "closed" };
    details(&upper, s.base(), s.quote(), status, "spot", "vanilla")
}

/// `GET /v1/trades/{symbol}?limit_trades=N&since_tid=T`: newest first; with `since_tid`, the
/// `N` trades right after `T` (so that a client can walk forward from it). As on Gemini, only
/// the last seven days are served: a `since_tid` older than that starts at the oldest trade
/// still within them.
fn trades(shared: &Shared, req: &Request) -> Response {
    let error = |status: u16, reason: &str, message: &str| {
        Response::status(status)
            .with_header("content-type", "application/json")
            .with_body(
                serde_json::json!({"result": "error", "reason": reason, "message": message})
                    .to_string()
                    .into_bytes(),
            )
    };
    let Some(name) = req.path.strip_prefix("/v1/trades/") else {
        return error(404, "EndpointNotFound", "API entry point not found");
    };
    let Some(symbol) = shared.symbol(&name.to_ascii_uppercase(), market) else {
        return error(
            400,
            "InvalidSymbol",
            &format!("Supplied value '{name}' is not a valid symbol"),
        );
    };
    let limit = match req.query_param("limit_trades").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return error(400, "InvalidParameter", "limit_trades is out of range"),
    };
    let since = match req.query_param("since_tid").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(400, "InvalidParameter", "since_tid is not a number"),
    };
    let week_ago = feeder_core::model::Timestamp::now().unix_nanos() - SERVED_NANOS;
    let mut page: Vec<MockTrade> = shared.with_history(|h| {
        let of_symbol = h
            .iter()
            .map(|e| &e.trade)
            .filter(|t| t.symbol == symbol && t.time.unix_nanos() >= week_ago);
        match since {
            Some(tid) => of_symbol
                .filter(|t| t.trade_id > tid)
                .take(limit)
                .cloned()
                .collect(),
            None => {
                let mut v: Vec<MockTrade> = of_symbol.rev().take(limit).cloned().collect();
                v.reverse();
                v
            }
        }
    });
    page.reverse();
    let rows: Vec<String> = page
        .iter()
        .map(|t| {
            format!(
                r#"{{"timestamp":{},"timestampms":{},"tid":{},"price":"{}","amount":"{}","exchange":"gemini","type":"{}"}}"#,
                millis(t) / 1_000,
                millis(t),
                t.trade_id,
                t.price,
                t.amount_text,
                t.side.as_str(),
            )
        })
        .collect();
    Response::json(format!("[{}]", rows.join(",")))
}
