//! Huobi (HTX): trade detail over the market WebSocket, recent trades over REST.
//!
//! - Stream: `wss://api.huobi.pro/ws`, one `sub` to `market.{symbol}.trade.detail` per
//!   symbol, acknowledged with `subbed`. Every server frame is gzip-compressed binary; it is
//!   inflated inside `parse`, to at most [`MAX_INFLATED`] bytes. The server sends
//!   `{"ping":n}` every 5 s and drops a client that does not answer `{"pong":n}` twice; the
//!   answer is a [`Frame::Reply`].
//! - Poll and backfill: `GET /market/history/trade?symbol={symbol}&size=2000`, the most recent
//!   trades, newest first. There is no paging and no cursor to page on from a trade, so a
//!   fill cannot walk forward ([`PollVenue::forward_request`] stays unset): a gap longer than
//!   2000 trades cannot be recovered, and the backfill records what it could not reach as a
//!   `gap` event (after the last trade seen, before the oldest one recovered).
//!
//! Trade ids: `tradeId` (`trade-id` over REST) is Huobi's unique, increasing trade id and
//! fits 64 bits; it is the id used. The legacy `id` is longer than 64 bits and is at times
//! written as a float, so it is only a fallback for a trade without `tradeId`, kept as its
//! exact text (digits only). Ids and times are JSON numbers; strings of digits are read the
//! same.
//! Side: `direction` is the taker's side.
//! Symbols: `BTC-USDT` is `btcusdt`.

mod instruments;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Frame, HttpRequest, HttpResponse, Page, PollRequest, PollVenue,
    StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, decimal, truncate};

pub use instruments::HuobiInstruments;

/// The registry name.
pub const NAME: &str = "huobi";
/// The production WebSocket endpoint of market data.
pub const DEFAULT_WS_URL: &str = "wss://api.huobi.pro/ws";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.huobi.pro";
/// Trades per REST request: Huobi's largest.
pub const PAGE_SIZE: usize = 2_000;
/// The largest inflated frame accepted: a bound against gzip bombs, far above any real
/// message.
pub const MAX_INFLATED: usize = 16 << 20;

const TOPIC_PREFIX: &str = "market.";
const TOPIC_SUFFIX: &str = ".trade.detail";

/// Huobi's name for a normalized symbol: `BTC-USDT` is `btcusdt`.
pub fn to_venue(symbol: &Symbol) -> String {
    let mut s = String::with_capacity(symbol.base().len() + symbol.quote().len());
    s.push_str(symbol.base());
    s.push_str(symbol.quote());
    s.make_ascii_lowercase();
    s
}

/// The Huobi venue: endpoints, symbol names, and a buffer to inflate frames into.
#[derive(Debug)]
pub struct HuobiVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    /// The configured symbols by Huobi's name; built from the config because `btcusdt`
    /// alone does not say where the base ends.
    symbols: HashMap<Box<str>, Symbol>,
    /// Reused by every `parse` (which takes `&self`) so that inflating does not allocate per
    /// frame; cleared before each use. Frames of one connection are parsed one at a time, so
    /// the lock is not contended.
    inflated: Mutex<Vec<u8>>,
}

impl HuobiVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise). Two symbols with the same Huobi name (`AB-CD` and `ABC-D`) are an error.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        let mut symbols: HashMap<Box<str>, Symbol> = HashMap::with_capacity(cfg.symbols.len());
        for s in &cfg.symbols {
            let name = to_venue(s);
            if let Some(prev) = symbols.get(name.as_str()) {
                if prev != s {
                    return Err(cfg.invalid(
                        "symbols",
                        format!("{prev} and {s} are both called {name:?} on Huobi"),
                    ));
                }
                continue;
            }
            symbols.insert(name.into_boxed_str(), s.clone());
        }
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols,
            inflated: Mutex::new(Vec::new()),
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn trade(
        &self,
        symbol: &Symbol,
        t: &wire::TradeItem<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        let trade_id = match (t.trade_id, t.id) {
            (Some(id), _) => TradeId::from_u64(id.0),
            (None, Some(raw)) => legacy_id(raw)?,
            (None, None) => return Err(common::missing("tradeId")),
        };
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id,
            price: decimal("price", number_text("price", t.price)?)?,
            amount: decimal("amount", number_text("amount", t.amount)?)?,
            side: common::side_word("direction", t.direction)?,
            timestamp: millis("ts", t.ts.0)?,
            received_at,
        })
    }

    /// Appends the trades of `ticks`, all or nothing.
    fn push_all<'a>(
        &self,
        symbol: &Symbol,
        ticks: impl IntoIterator<Item = &'a wire::Tick<'a>>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<(), ParseError> {
        let start = out.len();
        for tick in ticks {
            out.reserve(tick.data.len());
            for t in &tick.data {
                match self.trade(symbol, t, received_at) {
                    Ok(trade) => out.push(trade),
                    Err(e) => {
                        out.truncate(start);
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The symbol of a trade detail channel, `market.btcusdt.trade.detail`; `Ok(None)` for
    /// another channel.
    fn channel_symbol(&self, ch: &str) -> Result<Option<&Symbol>, ParseError> {
        let Some(name) = ch
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|r| r.strip_suffix(TOPIC_SUFFIX))
        else {
            return Ok(None);
        };
        self.symbols
            .get(name)
            .map(Some)
            .ok_or_else(|| ParseError::UnknownSymbol(truncate(name).to_owned()))
    }

    /// The fast path for trade detail pushes (see [`wire::scan_push`]): their trades
    /// appended to `out`; `None`, with `out` as it was, leaves the inflated frame to serde,
    /// which then decides (also on a trade this would refuse: serde's path gives the error).
    fn fast_push(&self, json: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(json, out, |text, out| {
            wire::scan_push(
                text,
                |ch| self.channel_symbol(ch).ok().flatten(),
                |symbol, t| {
                    out.push(self.trade(symbol, &t, received_at).ok()?);
                    Some(())
                },
            )
        })
    }

    fn parse_json(
        &self,
        json: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        if self.fast_push(json, received_at, out).is_some() {
            return Ok(Frame::Data);
        }
        self.parse_json_with_serde(json, received_at, out)
    }

    fn parse_json_with_serde(
        &self,
        json: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let m: wire::WsMessage<'_> = common::from_json(json)?;
        if let Some(ping) = m.ping {
            let n = ping.get();
            if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::field(
                    "ping",
                    format_args!("not an integer: {}", truncate(n)),
                ));
            }
            return Ok(Frame::Reply(WsMessage::Text(format!(r#"{{"pong":{n}}}"#))));
        }
        if let Some(ch) = m.ch {
            let Some(tick) = m.tick else {
                return Ok(Frame::Ignored);
            };
            let Some(symbol) = self.channel_symbol(ch)? else {
                // Another channel: not ours.
                return Ok(Frame::Ignored);
            };
            let tick: wire::Tick<'_> = serde_json::from_str(tick.get())?;
            self.push_all(symbol, [&tick], received_at, out)?;
            return Ok(Frame::Data);
        }
        match m.status {
            Some("ok") if m.subbed.is_some() || m.unsubbed.is_some() => Ok(Frame::Ack),
            Some("error") => Err(venue_error(m.err_code.as_deref(), m.err_msg.as_deref())),
            _ => Ok(Frame::Unrecognized),
        }
    }
}

/// A legacy trade id: its exact digits, never through a float.
fn legacy_id(t: &str) -> Result<TradeId, ParseError> {
    let t = t
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(t);
    if t.is_empty() || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::field(
            "id",
            format_args!("expected the digits of an id, got {}", truncate(t)),
        ));
    }
    Ok(TradeId::new(t))
}

/// The text of a JSON number token (or of a string holding one).
fn number_text<'a>(field: &'static str, t: &'a str) -> Result<&'a str, ParseError> {
    match t.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<&str>(t).map_err(|e| ParseError::field(field, e)),
        Some(b'0'..=b'9') => Ok(t),
        _ => Err(ParseError::field(
            field,
            format_args!("expected a non-negative number, got {}", truncate(t)),
        )),
    }
}

fn venue_error(code: Option<&str>, msg: Option<&str>) -> ParseError {
    let mut text = code.map(truncate).unwrap_or("error").to_owned();
    if let Some(m) = msg {
        text.push_str(": ");
        text.push_str(truncate(m));
    }
    ParseError::Venue(text)
}

/// Milliseconds since the epoch as a timestamp, rejecting values that do not fit.
fn millis(field: &'static str, ms: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(ms)
        .ok()
        .filter(|m| m.checked_mul(1_000_000).is_some())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| ParseError::field(field, format_args!("{ms} is out of range")))
}

/// Inflates a gzip frame into `buf`, refusing output above `limit` bytes.
pub(crate) fn gunzip_into(frame: &[u8], limit: usize, buf: &mut Vec<u8>) -> Result<(), ParseError> {
    buf.clear();
    let mut reader = flate2::read::GzDecoder::new(frame).take(limit as u64 + 1);
    reader
        .read_to_end(buf)
        .map_err(|e| ParseError::Other(format!("gzip: {e}")))?;
    if buf.len() > limit {
        buf.clear();
        return Err(ParseError::Other(format!(
            "gzip: the frame inflates to over {limit} bytes"
        )));
    }
    Ok(())
}

impl StreamVenue for HuobiVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        symbols
            .iter()
            .map(|s| {
                let name = to_venue(s);
                WsMessage::Text(format!(
                    r#"{{"sub":"{TOPIC_PREFIX}{name}{TOPIC_SUFFIX}","id":"{name}"}}"#
                ))
            })
            .collect()
    }

    /// Parses a gzip frame, as Huobi sends them. A frame that is plain JSON (starting with
    /// `{`) is read as it is, for proxies that inflate on the way.
    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.inflated(frame, |json| self.parse_json(json, received_at, out))
    }
}

impl HuobiVenue {
    /// [`StreamVenue::parse`] without its fast path: every frame inflated and read with
    /// serde. The reference the fast path is checked against, and the baseline of the parser
    /// benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.inflated(frame, |json| {
            self.parse_json_with_serde(json, received_at, out)
        })
    }

    /// Calls `read` with the JSON of `frame`: inflated, or as it is when it is already JSON.
    fn inflated(
        &self,
        frame: &[u8],
        read: impl FnOnce(&[u8]) -> Result<Frame, ParseError>,
    ) -> Result<Frame, ParseError> {
        if frame.first() == Some(&b'{') {
            return read(frame);
        }
        // A poisoned buffer is still a buffer: it is cleared before use.
        let mut buf = self.inflated.lock().unwrap_or_else(|p| p.into_inner());
        gunzip_into(frame, MAX_INFLATED, &mut buf)?;
        let r = read(&buf);
        // Keep a buffer for the next frame, but not a huge one.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        r
    }
}

impl PollVenue for HuobiVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        _req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let mut url = common::join_path(&self.rest_url, &["market", "history", "trade"]);
        url.query_pairs_mut()
            .append_pair("symbol", &to_venue(symbol))
            .append_pair("size", &PAGE_SIZE.to_string());
        Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        })
    }

    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let a: wire::RestAnswer<'_> = common::from_json(resp.body)?;
        if a.status != "ok" {
            return Err(venue_error(a.err_code.as_deref(), a.err_msg.as_deref()));
        }
        let groups = a.data.unwrap_or_default();
        self.push_all(symbol, &groups, received_at, out)?;
        Ok(Page::default())
    }

    fn max_pages(&self) -> usize {
        1
    }
}

/// Huobi as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<HuobiVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: HuobiVenue::new,
    instruments: Some(|cfg| Ok(Box::new(HuobiInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Huobi without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const HuobiFactory: VenueFactory<HuobiVenue> = VenueFactory::new(VENUE);
