//! A mock Bitfinex: WebSocket v2 (`info` on connect, `subscribe` / `subscribed` with a channel
//! id per connection, a snapshot, `te` then `tu` for every trade, `hb`, `ping` / `pong`,
//! `error`, the 20051 reconnect `info`) and REST v2 `GET /v2/trades/{symbol}/hist` with
//! `limit`, `sort`, `start` and `end`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Side, Symbol, Timestamp};
use serde::Deserialize;

use super::conn::{Reply, Subs, Wire};
use super::{Control, MockConfig, MockTrade, MockVenue, Shared};
use crate::http::{Request, Response};

/// First trade id; Bitfinex's ids are one sequence across all pairs.
const FIRST_ID: u64 = 401_597_393;
/// Channel ids are this plus a counter, so that each subscription on each connection gets
/// its own (a client must not carry them over to a new connection).
const FIRST_CHANNEL: u64 = 17_000;
/// Trades in the snapshot that follows a subscription.
const SNAPSHOT: usize = 30;
/// Bitfinex's default and largest page.
const DEFAULT_LIMIT: usize = 125;
const MAX_LIMIT: usize = 10_000;

/// Bitfinex's own name of an asset where it is not the usual code: Tether is `UST`, USD Coin
/// `UDC`, Dash `DSH`.
fn asset(code: &str) -> &str {
    match code {
        "USDT" => "UST",
        "USDC" => "UDC",
        "DASH" => "DSH",
        other => other,
    }
}

/// Bitfinex's name of a trading pair, in its asset names: `tBTCUSD`, `tBTCUST` for
/// BTC-USDT, or `tLINK:UST` when a name is not three letters long. Only these names are
/// listed: a client asking for `tBTC:USDT` gets Bitfinex's `symbol: invalid`.
pub fn pair(symbol: &Symbol) -> String {
    let (b, q) = (asset(symbol.base()), asset(symbol.quote()));
    if b.len() == 3 && q.len() == 3 {
        format!("t{b}{q}")
    } else {
        format!("t{b}:{q}")
    }
}

/// A mock Bitfinex on `127.0.0.1:0`. Dereferences to [`MockVenue`] for publishing, faults and
/// ground truth. Trade times are whole milliseconds, as on Bitfinex.
#[derive(Debug)]
pub struct MockBitfinex {
    venue: MockVenue,
}

impl Deref for MockBitfinex {
    type Target = MockVenue;
    fn deref(&self) -> &MockVenue {
        &self.venue
    }
}

impl MockBitfinex {
    /// Starts a mock listing BTC-USD and ETH-USD.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings.
    pub async fn start_with(cfg: MockConfig) -> std::io::Result<Self> {
        let shared = Shared::new_millis(cfg, FIRST_ID, false);
        let venue = MockVenue::start(shared, Arc::new(BitfinexWire), rest)?;
        Ok(Self { venue })
    }

    /// Sends the `info` event with code 20051 (server restart: reconnect) on every live
    /// connection now.
    pub fn request_reconnect(&self) {
        self.venue.shared.control(Control::RequestReconnect);
    }

    /// Sends `[CHANNEL_ID,"hb"]` for every subscribed channel on every live connection now.
    pub fn heartbeat(&self) {
        self.venue.shared.control(Control::Heartbeat);
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    cid: Option<i64>,
    #[serde(rename = "chanId", default)]
    chan_id: Option<u64>,
}

fn error_frame(code: u32, msg: &str, extra: &[(&str, &str)]) -> String {
    let mut v = serde_json::json!({"event": "error", "msg": msg, "code": code});
    if let Some(obj) = v.as_object_mut() {
        for (k, x) in extra {
            obj.insert((*k).to_owned(), serde_json::Value::from(*x));
        }
    }
    v.to_string()
}

/// `[ID,MTS,AMOUNT,PRICE]`: the amount's sign is the taker's side.
fn trade_row(t: &MockTrade) -> String {
    let sign = if t.side == Side::Sell { "-" } else { "" };
    format!(
        "[{},{},{sign}{},{}]",
        t.trade_id,
        t.time.unix_nanos() / 1_000_000,
        t.amount_text,
        // Bitfinex writes JavaScript numbers: no trailing zeros.
        t.price.normalize(),
    )
}

fn now_ms() -> i64 {
    Timestamp::now().unix_nanos() / 1_000_000
}

struct BitfinexWire;

impl Wire for BitfinexWire {
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply {
        let mut reply = Reply::default();
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            reply.frames.push(error_frame(10000, "Unknown event", &[]));
            return reply;
        };
        match msg.event.as_str() {
            "ping" => {
                let cid = msg.cid.unwrap_or(0);
                reply.frames.push(format!(
                    r#"{{"event":"pong","ts":{},"cid":{cid}}}"#,
                    now_ms()
                ));
            }
            "subscribe" => {
                let name = msg.symbol.unwrap_or_default();
                if msg.channel.as_deref() != Some("trades") {
                    reply.frames.push(error_frame(
                        10300,
                        "Subscription failed (generic)",
                        &[("symbol", &name)],
                    ));
                    return reply;
                }
                let Some(symbol) = shared.symbol(&name, pair) else {
                    reply.frames.push(error_frame(
                        10300,
                        "symbol: invalid",
                        &[("channel", "trades"), ("symbol", &name)],
                    ));
                    return reply;
                };
                if subs.channels.contains_key(&symbol) {
                    reply.frames.push(error_frame(
                        10301,
                        "subscribe: dup",
                        &[("channel", "trades"), ("symbol", &name)],
                    ));
                    return reply;
                }
                let chan_id = FIRST_CHANNEL + shared.next_sequence();
                subs.channels.insert(symbol.clone(), chan_id);
                subs.trades.insert(symbol.clone());
                reply.subscribed = true;
                let bare = name.strip_prefix('t').unwrap_or(&name);
                reply.frames.push(format!(
                    r#"{{"event":"subscribed","channel":"trades","chanId":{chan_id},"symbol":"{name}","pair":"{bare}"}}"#
                ));
                // The most recent trades, newest first.
                let rows: Vec<String> = shared.with_history(|h| {
                    h.iter()
                        .rev()
                        .filter(|e| !e.silent && e.trade.symbol == symbol)
                        .take(SNAPSHOT)
                        .map(|e| trade_row(&e.trade))
                        .collect()
                });
                reply
                    .frames
                    .push(format!("[{chan_id},[{}]]", rows.join(",")));
            }
            "unsubscribe" => {
                let found = subs
                    .channels
                    .iter()
                    .find(|(_, id)| Some(**id) == msg.chan_id)
                    .map(|(s, id)| (s.clone(), *id));
                match found {
                    Some((s, id)) => {
                        subs.channels.remove(&s);
                        subs.trades.remove(&s);
                        reply.frames.push(format!(
                            r#"{{"event":"unsubscribed","status":"OK","chanId":{id}}}"#
                        ));
                    }
                    None => reply.frames.push(error_frame(
                        10400,
                        "Unsubscription failed (generic)",
                        &[],
                    )),
                }
            }
            _ => reply.frames.push(error_frame(10000, "Unknown event", &[])),
        }
        reply
    }

    fn trade_frame(&self, _shared: &Shared, t: &MockTrade) -> String {
        // Only reached through `trade_frames`, which knows the channel.
        format!("[0,\"te\",{}]", trade_row(t))
    }

    fn trade_frames(&self, _shared: &Shared, subs: &Subs, t: &MockTrade) -> Vec<String> {
        let Some(chan_id) = subs.channels.get(&t.symbol) else {
            return Vec::new();
        };
        let row = trade_row(t);
        // The execution, then its update once written: the same trade twice.
        vec![
            format!("[{chan_id},\"te\",{row}]"),
            format!("[{chan_id},\"tu\",{row}]"),
        ]
    }

    fn malformed_frame(&self) -> String {
        r#"[17001,"te",[4015973"#.to_owned()
    }

    fn heartbeat_frames(&self, _shared: &Shared, subs: &Subs, _upto: usize) -> Vec<String> {
        let mut ids: Vec<u64> = subs.channels.values().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| format!("[{id},\"hb\"]")).collect()
    }

    fn reconnect_frame(&self) -> Option<String> {
        Some(
            r#"{"event":"info","code":20051,"msg":"Stop/Restart Websocket Server (please reconnect)"}"#
                .to_owned(),
        )
    }

    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration> {
        Some(shared.cfg.heartbeat_every)
    }

    fn greeting(&self, _shared: &Shared) -> Vec<String> {
        vec![
            r#"{"event":"info","version":2,"serverId":"2f3c9a4e-6d1b-4c7e-9a55-0b8d1e2f3a4b","platform":{"status":1}}"#
                .to_owned(),
        ]
    }
}

/// The REST API: the pair list and the trades.
fn rest(shared: &Shared, req: &Request) -> Response {
    if req.path == "/v2/conf/pub:list:pair:exchange"
        || req.path == "/v2/conf/pub%3Alist%3Apair%3Aexchange"
    {
        pair_list(shared)
    } else {
        trades_hist(shared, req)
    }
}

/// `GET /v2/conf/pub:list:pair:exchange`: `[["BTCUSD","BTCUST","LINK:UST"]]`, the pair
/// names without the `t`. Bitfinex lists only pairs open for trading.
fn pair_list(shared: &Shared) -> Response {
    let names: Vec<String> = shared
        .listed()
        .iter()
        .map(|s| format!("\"{}\"", &pair(s)[1..]))
        .collect();
    Response::json(format!("[[{}]]", names.join(",")))
}

/// `GET /v2/trades/{symbol}/hist?limit=N&sort=-1|1&start=MS&end=MS`: the symbol's trades
/// with `start <= MTS <= end`, newest first unless `sort=1`, at most `limit`.
fn trades_hist(shared: &Shared, req: &Request) -> Response {
    let error = |status: u16, code: u32, msg: &str| {
        Response::status(status)
            .with_header("content-type", "application/json")
            .with_body(format!(r#"["error",{code},"{msg}"]"#).into_bytes())
    };
    let Some(name) = req
        .path
        .strip_prefix("/v2/trades/")
        .and_then(|rest| rest.strip_suffix("/hist"))
    else {
        return error(404, 10000, "not found");
    };
    let name = name.replace("%3A", ":").replace("%3a", ":");
    let Some(symbol) = shared.symbol(&name, pair) else {
        return error(500, 10020, "symbol: invalid");
    };
    let num = |key: &str| req.query_param(key).map(str::parse::<i64>);
    let limit = match num("limit") {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(_) => return error(500, 10020, "limit: invalid"),
    };
    let ascending = match num("sort") {
        None | Some(Ok(-1)) | Some(Ok(0)) => false,
        Some(Ok(1)) => true,
        Some(_) => return error(500, 10020, "sort: invalid"),
    };
    let (start, end) = match (num("start"), num("end")) {
        (Some(Err(_)), _) => return error(500, 10020, "start: invalid"),
        (_, Some(Err(_))) => return error(500, 10020, "end: invalid"),
        (s, e) => (
            s.and_then(Result::ok).unwrap_or(i64::MIN),
            e.and_then(Result::ok).unwrap_or(i64::MAX),
        ),
    };
    let rows: Vec<String> = shared.with_history(|h| {
        let matching = |t: &&MockTrade| {
            let ms = t.time.unix_nanos() / 1_000_000;
            t.symbol == symbol && ms >= start && ms <= end
        };
        let trades = h.iter().map(|e| &e.trade);
        if ascending {
            trades.filter(matching).take(limit).map(trade_row).collect()
        } else {
            trades
                .rev()
                .filter(matching)
                .take(limit)
                .map(trade_row)
                .collect()
        }
    });
    Response::json(format!("[{}]", rows.join(",")))
}
