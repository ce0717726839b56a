//! A mock Coinbase Exchange: the WebSocket feed's `matches` and `heartbeat` channels
//! (`subscriptions`, `last_match`, `match`, `heartbeat`, `error`) and
//! `GET /products/{id}/trades` paginated with `after`/`before` and the `cb-after`/`cb-before`
//! headers, and the product list `GET /products`.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::Symbol;
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id of each product (plus a per-product offset).
const FIRST_ID: u64 = 658_000_000;
/// Coinbase's default and largest page.
const MAX_LIMIT: usize = 1_000;

/// A mock Coinbase Exchange on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing,
/// faults and ground truth.
#[derive(Debug)]
pub struct MockCoinbase {
    venue: MockVenue,
}

impl Deref for MockCoinbase {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockCoinbase {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new(cfg, FIRST_ID, true);
        let venue = MockVenue::start(shared, Arc::new(CoinbaseWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends a `heartbeat` for every subscribed product on every live connection now; its
    /// `last_trade_id` is the newest trade published, so trades the stream left out show as
    /// a gap.
    pub fn heartbeat(&self) {
        self.venue.shared.control(Control::Heartbeat);
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channels: Vec<ChannelSpec>,
}

/// A channel by name alone, or with its own products.
#[derive(Deserialize)]
#[serde(untagged)]
enum ChannelSpec {
    Name(String),
    WithProducts {
        name: String,
        #[serde(default)]
        product_ids: Vec<String>,
    },
}

fn error_frame(message: &str, reason: &str) -> String {
    serde_json::json!({"type": "error", "message": message, "reason": reason}).to_string()
}

fn match_frame(kind: &str, sequence: u64, t: &MockTrade) -> String {
    // Coinbase reports the maker's side: the opposite of the taker's.
    let maker_side = t.side.opposite();
    format!(
        concat!(
            r#"{{"type":"{kind}","trade_id":{id},"maker_order_id":"{maker}","taker_order_id":"{taker}","#,
            r#""side":"{side}","size":"{size}","price":"{price}","product_id":"{product}","#,
            r#""sequence":{seq},"time":"{time}"}}"#
        ),
        kind = kind,
        id = t.trade_id,
        maker = order_id(t.trade_id, 1),
        taker = order_id(t.trade_id, 2),
        side = maker_side.as_str(),
        size = t.amount_text,
        price = t.price,
        product = t.symbol,
        seq = sequence,
        time = t.time,
    )
}

/// A deterministic UUID-shaped order id.
fn order_id(trade_id: u64, role: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", role, trade_id)
}

struct CoinbaseWire;

impl Wire for CoinbaseWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply
                .frames
                .push(error_frame("Failed to subscribe", "malformed JSON"));
            return reply;
        };
        let subscribe = match msg.kind.as_str() {
            "subscribe" => true,
            "unsubscribe" => false,
            other => {
                reply.frames.push(error_frame(
                    "Failed to subscribe",
                    &format!("{other} is not a valid type"),
                ));
                return reply;
            }
        };
        let mut requested: Vec<(String, Vec<String>)> = Vec::new();
        for c in msg.channels {
            match c {
                ChannelSpec::Name(name) => requested.push((name, msg.product_ids.clone())),
                ChannelSpec::WithProducts { name, product_ids } => {
                    let mut ids = msg.product_ids.clone();
                    ids.extend(product_ids);
                    requested.push((name, ids));
                }
            }
        }
        // Check everything before changing anything, as the venue rejects the message whole.
        let mut resolved = Vec::with_capacity(requested.len());
        for (name, ids) in &requested {
            if name != "matches" && name != "heartbeat" {
                reply.frames.push(error_frame(
                    "Failed to subscribe",
                    &format!("{name} is not a valid channel"),
                ));
                return reply;
            }
            let mut symbols = Vec::with_capacity(ids.len());
            for id in ids {
                match shared.symbol(id, |s| s.to_string()) {
                    Some(s) => symbols.push(s),
                    None => {
                        reply.frames.push(error_frame(
                            "Failed to subscribe",
                            &format!("{id} is not a valid product"),
                        ));
                        return reply;
                    }
                }
            }
            resolved.push((name.as_str(), symbols));
        }
        let mut new_matches = Vec::new();
        for (name, symbols) in resolved {
            let set = if name == "matches" {
                &mut subs.trades
            } else {
                &mut subs.heartbeats
            };
            for s in symbols {
                if subscribe {
                    if set.insert(s.clone()) && name == "matches" {
                        new_matches.push(s);
                    }
                } else {
                    set.remove(&s);
                }
            }
        }
        let mut channels: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, set) in [("heartbeat", &subs.heartbeats), ("matches", &subs.trades)] {
            if !set.is_empty() {
                let mut ids: Vec<String> = set.iter().map(Symbol::to_string).collect();
                ids.sort();
                channels.insert(name, ids);
            }
        }
        let channels: Vec<_> = channels
            .into_iter()
            .map(|(name, ids)| serde_json::json!({"name": name, "product_ids": ids, "account_ids": null}))
            .collect();
        reply
            .frames
            .push(serde_json::json!({"type": "subscriptions", "channels": channels}).to_string());
        if subscribe {
            reply.subscribed = true;
            // Like the venue, start each newly subscribed product with its latest trade.
            for s in new_matches {
                if let Some(t) = shared.last_trade(&s) {
                    reply
                        .frames
                        .push(match_frame("last_match", shared.next_sequence(), &t));
                }
            }
        }
        reply
    }

    fn trade_frame(&self, shared: &Shared, t: &MockTrade) -> String {
        match_frame("match", shared.next_sequence(), t)
    }

    fn malformed_frame(&self) -> String {
        r#"{"type":"match","trade_id":1,"side":"#.to_owned()
    }

    fn heartbeat_frames(&self, shared: &Shared, subs: &Subs, upto: usize) -> Vec<String> {
        let mut symbols: Vec<&Symbol> = subs.heartbeats.iter().collect();
        symbols.sort();
        let now = feeder_core::model::Timestamp::now();
        let now = feeder_core::model::Timestamp::from_unix_micros(now.unix_nanos() / 1_000);
        symbols
            .into_iter()
            .map(|s| {
                let last = shared.last_trade_before(s, upto).map(|t| t.trade_id).unwrap_or(0);
                format!(
                    r#"{{"type":"heartbeat","last_trade_id":{last},"product_id":"{s}","sequence":{seq},"time":"{now}"}}"#,
                    seq = shared.next_sequence(),
                )
            })
            .collect()
    }

    fn reconnect_frame(&self) -> Option<String> {
        None
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }
}

/// The REST API: the products and their trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/products" {
        products(shared)
    } else {
        product_trades(shared, req)
    }
}

/// `GET /products`: every product by its id (`BTC-USD`); [`super::HALTED`] is `delisted`
/// with trading disabled.
fn products(shared: &Shared) -> Response {
    let product = |(s, trading): &(Symbol, bool)| {
        let (status, disabled) = if *trading {
            ("online", false)
        } else {
            ("delisted", true)
        };
        format!(
            r#"{{"id":"{s}","base_currency":"{b}","quote_currency":"{q}","quote_increment":"0.01","base_increment":"0.00000001","display_name":"{b}/{q}","min_market_funds":"1","margin_enabled":false,"post_only":false,"limit_only":false,"cancel_only":false,"status":"{status}","status_message":"","trading_disabled":{disabled},"fx_stablecoin":false,"max_slippage_percentage":"0.02000000","auction_mode":false,"high_bid_limit_percentage":""}}"#,
            b = s.base(),
            q = s.quote(),
        )
    };
    let all: Vec<String> = shared.listing().iter().map(product).collect();
    Response::json(format!("[{}]", all.join(",")))
}

/// `GET /products/{id}/trades?limit=N&after=ID&before=ID`: newest first; `after` pages to
/// older trades (ids below it), `before` to the newer page right after an id (ids above it). `cb-before` and `cb-after` name the newest and oldest id of the page.
fn product_trades(shared: &Shared, req: &Request) -> Response {
    let not_found = || {
        Response::status(404)
            .with_header("content-type", "application/json")
            .with_body(br#"{"message":"NotFound"}"#.to_vec())
    };
    let bad = |m: &str| {
        Response::status(400)
            .with_header("content-type", "application/json")
            .with_body(serde_json::json!({ "message": m }).to_string().into_bytes())
    };
    let Some(product) = req
        .path
        .strip_prefix("/products/")
        .and_then(|rest| rest.strip_suffix("/trades"))
    else {
        return not_found();
    };
    let Some(symbol) = shared.symbol(product, |s| s.to_string()) else {
        return not_found();
    };
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => MAX_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return bad("Invalid limit"),
    };
    let after = match req.query_param("after").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad("Invalid after"),
    };
    let before = match req.query_param("before").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad("Invalid before"),
    };
    let page: Vec<MockTrade> = shared.with_history(|h| {
        let of_product = h.iter().map(|e| &e.trade).filter(|t| t.symbol == symbol);
        match before {
            // The page right after `before` (the oldest trades newer than it), newest first
            // as every page is.
            Some(b) => {
                let mut page: Vec<MockTrade> = of_product
                    .filter(|t| t.trade_id > b && after.is_none_or(|a| t.trade_id < a))
                    .take(limit)
                    .cloned()
                    .collect();
                page.reverse();
                page
            }
            None => {
                let mut page: Vec<MockTrade> = of_product
                    .filter(|t| after.is_none_or(|a| t.trade_id < a))
                    .cloned()
                    .collect();
                page.reverse();
                page.truncate(limit);
                page
            }
        }
    });
    let body: Vec<String> = page
        .iter()
        .map(|t| {
            format!(
                r#"{{"trade_id":{},"side":"{}","size":"{}","price":"{}","time":"{}"}}"#,
                t.trade_id,
                t.side.opposite().as_str(),
                t.amount_text,
                t.price,
                t.time,
            )
        })
        .collect();
    let mut resp = Response::json(format!("[{}]", body.join(",")));
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        resp = resp
            .with_header("cb-before", first.trade_id.to_string())
            .with_header("cb-after", last.trade_id.to_string());
    }
    resp
}
