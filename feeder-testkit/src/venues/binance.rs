//! A mock Binance spot: combined trade streams named in the URL
//! (`/stream?streams=btcusdt@trade/...`, events wrapped as `{"stream":..,"data":..}`), live
//! `SUBSCRIBE` requests, protocol pings from the server, `serverShutdown`, and
//! `GET /api/v3/trades` / `GET /api/v3/historicalTrades?fromId=` over REST, with the symbol
//! list `GET /api/v3/exchangeInfo`. Times are in milliseconds, as Binance reports them.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Side, Symbol, Timestamp};
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id of each symbol (plus a per-symbol offset).
const FIRST_ID: u64 = 3_866_000_000;
/// Binance's default and largest page.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 1_000;

/// Binance's name of a symbol: `BTC-USDT` is `BTCUSDT`.
fn venue_symbol(symbol: &Symbol) -> String {
    format!("{}{}", symbol.base(), symbol.quote())
}

/// The trade stream of a symbol: `btcusdt@trade`.
fn stream(symbol: &Symbol) -> String {
    format!("{}@trade", venue_symbol(symbol).to_ascii_lowercase())
}

/// A mock Binance spot venue on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing,
/// faults and ground truth.
///
/// Each connection counts as one acknowledged subscription once its URL names at least one
/// listed symbol's stream (Binance sends nothing to confirm), and each `SUBSCRIBE` request
/// that adds a stream counts as another.
#[derive(Debug)]
pub struct MockBinance {
    venue: MockVenue,
}

impl Deref for MockBinance {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockBinance {
    /// Starts a mock listing BTC-USDT and ETH-USDT.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::with_symbols(&default_symbols())).await
    }

    /// Starts a mock with these settings (`heartbeat_every` is the period of its protocol
    /// pings).
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, true);
        let venue = MockVenue::start(shared, Arc::new(BinanceWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends a `serverShutdown` event on every live connection now.
    pub fn server_shutdown(&self) {
        self.venue.shared.control(Control::RequestReconnect);
    }

    /// Sends a protocol ping on every live connection now.
    pub fn ping(&self) {
        self.venue.shared.control(Control::Heartbeat);
    }
}

/// BTC-USDT and ETH-USDT.
pub(crate) fn default_symbols() -> Vec<Symbol> {
    ["BTC-USDT", "ETH-USDT"]
        .iter()
        .filter_map(|s| Symbol::parse(s).ok())
        .collect()
}

#[derive(Deserialize)]
struct ClientRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    #[serde(default)]
    id: serde_json::Value,
}

fn error_frame(code: i64, msg: &str, id: &serde_json::Value) -> String {
    serde_json::json!({"code": code, "msg": msg, "id": id}).to_string()
}

struct BinanceWire;

impl Wire for BinanceWire {
    fn on_connect(&self, shared: &Shared, path: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Some(query) = path.strip_prefix("/stream?") else {
            return reply;
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k != "streams" {
                continue;
            }
            for name in v.split('/') {
                if let Some(s) = shared.symbol(name, stream) {
                    reply.subscribed |= subs.trades.insert(s);
                }
            }
        }
        reply
    }

    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let req = match serde_json::from_str::<ClientRequest>(text) {
            Ok(r) => r,
            Err(e) => {
                reply.frames.push(error_frame(
                    3,
                    &format!("Invalid JSON: {e}"),
                    &serde_json::Value::Null,
                ));
                return reply;
            }
        };
        let subscribe = match req.method.as_str() {
            "SUBSCRIBE" => true,
            "UNSUBSCRIBE" => false,
            "LIST_SUBSCRIPTIONS" => {
                let mut names: Vec<String> = subs.trades.iter().map(stream).collect();
                names.sort();
                reply
                    .frames
                    .push(serde_json::json!({"result": names, "id": req.id}).to_string());
                return reply;
            }
            other => {
                reply.frames.push(error_frame(
                    2,
                    &format!("Invalid request: unknown variant `{other}`"),
                    &req.id,
                ));
                return reply;
            }
        };
        let mut symbols = Vec::with_capacity(req.params.len());
        for name in &req.params {
            match shared.symbol(name, stream) {
                Some(s) => symbols.push(s),
                None => {
                    reply.frames.push(error_frame(
                        2,
                        &format!("Invalid request: invalid stream name {name}"),
                        &req.id,
                    ));
                    return reply;
                }
            }
        }
        for s in symbols {
            if subscribe {
                reply.subscribed |= subs.trades.insert(s);
            } else {
                subs.trades.remove(&s);
            }
        }
        reply
            .frames
            .push(serde_json::json!({"result": null, "id": req.id}).to_string());
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        let ms = t.time.unix_nanos() / 1_000_000;
        format!(
            concat!(
                r#"{{"stream":"{stream}","data":{{"e":"trade","E":{event},"s":"{symbol}","t":{id},"#,
                r#""p":"{price}","q":"{qty}","T":{time},"m":{maker},"M":true}}}}"#
            ),
            stream = stream(&t.symbol),
            event = ms + 1,
            symbol = venue_symbol(&t.symbol),
            id = t.trade_id,
            price = t.price,
            qty = t.amount_text,
            time = ms,
            // The buyer is the maker when the taker sold.
            maker = t.side == Side::Sell,
        )
    }

    fn malformed_frame(&self) -> String {
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":17277"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, _subs: &Subs, _upto: usize) -> Vec<String> {
        Vec::new()
    }

    fn protocol_ping(&self) -> bool {
        true
    }

    fn reconnect_frame(&self) -> Option<String> {
        let ms = Timestamp::now().unix_nanos() / 1_000_000;
        Some(format!(r#"{{"event":{{"e":"serverShutdown","E":{ms}}}}}"#))
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }
}

fn error_response(status: u16, code: i64, msg: &str) -> Response {
    Response::status(status)
        .with_header("content-type", "application/json")
        .with_body(
            serde_json::json!({"code": code, "msg": msg})
                .to_string()
                .into_bytes(),
        )
}

/// `GET /api/v3/exchangeInfo`: every symbol as `BTCUSDT` with its assets and `status`;
/// [`super::HALTED`] is on `BREAK`.
fn exchange_info(shared: &Shared) -> Response {
    let info = |(s, trading): &(Symbol, bool)| {
        let status = if *trading { "TRADING" } else { "BREAK" };
        format!(
            r#"{{"symbol":"{name}","status":"{status}","baseAsset":"{b}","baseAssetPrecision":8,"quoteAsset":"{q}","quotePrecision":8,"quoteAssetPrecision":8,"baseCommissionPrecision":8,"quoteCommissionPrecision":8,"orderTypes":["LIMIT","LIMIT_MAKER","MARKET","STOP_LOSS_LIMIT","TAKE_PROFIT_LIMIT"],"icebergAllowed":true,"ocoAllowed":true,"otoAllowed":true,"quoteOrderQtyMarketAllowed":true,"allowTrailingStop":true,"cancelReplaceAllowed":true,"isSpotTradingAllowed":true,"isMarginTradingAllowed":false,"filters":[{{"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"}},{{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"}}],"permissions":[],"permissionSets":[["SPOT"]],"defaultSelfTradePreventionMode":"EXPIRE_MAKER","allowedSelfTradePreventionModes":["EXPIRE_TAKER","EXPIRE_MAKER","EXPIRE_BOTH"]}}"#,
            name = venue_symbol(s),
            b = s.base(),
            q = s.quote(),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(info).collect();
    Response::json(format!(
        r#"{{"timezone":"UTC","serverTime":{},"rateLimits":[{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}}],"exchangeFilters":[],"symbols":[{}]}}"#,
        Timestamp::now().unix_nanos() / 1_000_000,
        all.join(",")
    ))
}

/// `GET /api/v3/trades?symbol=&limit=` (the newest, oldest first) and
/// `GET /api/v3/historicalTrades?symbol=&limit=&fromId=` (from that id on, oldest first).
fn rest(shared: &Shared, req: &Request) -> Response {
    let historical = match req.path.as_str() {
        "/api/v3/exchangeInfo" => return exchange_info(shared),
        "/api/v3/trades" => false,
        "/api/v3/historicalTrades" => true,
        _ => return error_response(404, -1000, "Not found."),
    };
    let Some(name) = req.query_param("symbol") else {
        return error_response(
            400,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    let Some(symbol) = shared.symbol(name, venue_symbol) else {
        return error_response(400, -1121, "Invalid symbol.");
    };
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error_response(400, -1100, "Illegal characters found in parameter 'limit'.")
        }
    };
    let from_id = match req.query_param("fromId").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) if historical => Some(n),
        Some(Ok(_)) => None,
        Some(Err(_)) => {
            return error_response(
                400,
                -1100,
                "Illegal characters found in parameter 'fromId'.",
            )
        }
    };
    let page: Vec<MockTrade> = shared.with_history(|h| {
        let of_symbol = h.iter().map(|e| &e.trade).filter(|t| t.symbol == symbol);
        match from_id {
            Some(from) => of_symbol
                .filter(|t| t.trade_id >= from)
                .take(limit)
                .cloned()
                .collect(),
            None => {
                let mut newest: Vec<MockTrade> = of_symbol.rev().take(limit).cloned().collect();
                newest.reverse();
                newest
            }
        }
    });
    let rows: Vec<String> = page
        .iter()
        .map(|t| {
            format!(
                r#"{{"id":{},"price":"{}","qty":"{}","quoteQty":"{}","time":{},"isBuyerMaker":{},"isBestMatch":true}}"#,
                t.trade_id,
                t.price,
                t.amount_text,
                (t.price * t.amount).normalize(),
                t.time.unix_nanos() / 1_000_000,
                t.side == Side::Sell,
            )
        })
        .collect();
    Response::json(format!("[{}]", rows.join(",")))
}
