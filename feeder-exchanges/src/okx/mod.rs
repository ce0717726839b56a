//! OKX v5 spot: the `trades` channel over WebSocket, trades and trade history over REST.
//!
//! - Stream: `wss://ws.okx.com:8443/ws/v5/public`, one
//!   `{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},..]}` for all
//!   symbols, each channel acknowledged with an `event: subscribe`. OKX closes connections
//!   that stay silent for 30 s: the client sends the bare text `ping` every 20 s and the bare
//!   text `pong` (not JSON) comes back as a heartbeat. One push may carry several trades.
//!   `event: notice` (code 64008) announces a service upgrade: the client reconnects at once.
//! - Poll and backfill: `GET /api/v5/market/trades?instId=BTC-USDT&limit=100`, newest first,
//!   when nothing was seen yet. From a trade seen, forward through the last three months of
//!   history: `GET /api/v5/market/history-trades?instId=..&type=1&before=<id>&after=<id + 101>`
//!   (type 1 pages by trade id; `before` keeps the trades newer than an id, `after` those
//!   older than one). `before` alone would give the newest trades, not the ones right after
//!   the id, so the page is bounded on both sides: OKX numbers an instrument's trades one by
//!   one (the `trades` channel's `count` says how many ids one push covers), and a window of
//!   100 ids holds exactly the next page, whatever order OKX lists it in. Older pages, for a
//!   cursor that is not an OKX id, use `after=<tradeId>` alone (trades older than it).
//! - Rate limit: history-trades takes 20 requests per 2 seconds from an IP; the pages of one
//!   fill are spaced by [`REQUEST_SPACING`].
//!
//! Ids and times are strings of digits; written as JSON numbers they are read the same.
//! Side: `side` is the taker's side. Symbols: OKX's instrument ids are already `BASE-QUOTE`;
//! only configured ones are accepted.

mod instruments;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, Ping, PollRequest,
    PollVenue, StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Symbol, Timestamp, Trade};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, SymbolTable};

pub use instruments::OkxInstruments;

/// The registry name.
pub const NAME: &str = "okx";
/// The production WebSocket endpoint (public channels).
pub const DEFAULT_WS_URL: &str = "wss://ws.okx.com:8443/ws/v5/public";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://www.okx.com";
/// Trades per REST page (the largest history-trades gives).
pub const PAGE_LIMIT: u32 = 100;
/// The least time between two pages of one fill: history-trades takes 20 requests per
/// 2 seconds from an IP (OKX API v5, "Get trades history").
pub const REQUEST_SPACING: Duration = Duration::from_millis(100);
/// The keep-alive, sent as bare text.
pub const PING: &str = "ping";
/// The answer to [`PING`], bare text.
pub const PONG: &str = "pong";
/// The notice code OKX sends before closing connections for a service upgrade.
pub const UPGRADE_NOTICE: &str = "64008";

/// OKX's instrument id for a normalized symbol (they are spelled the same).
pub fn to_venue(symbol: &Symbol) -> &str {
    symbol.as_str()
}

/// The OKX venue: endpoints and instrument ids for one configured exchange.
#[derive(Clone, Debug)]
pub struct OkxVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    symbols: SymbolTable,
}

impl OkxVenue {
    /// A venue for `cfg`: its name, symbols and endpoint overrides (production endpoints
    /// otherwise).
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        common::require_symbols(cfg)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint(DEFAULT_WS_URL)?,
            rest_url: cfg.rest_endpoint(DEFAULT_REST_URL)?,
            symbols: SymbolTable::new(cfg, |s| vec![to_venue(s).to_owned()])?,
        })
    }

    /// The exchange name written into every trade.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn trade(
        &self,
        symbol: Symbol,
        t: &wire::Trade<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol,
            trade_id: t.trade_id.trade_id("tradeId")?,
            price: decimal("px", t.px)?,
            amount: decimal("sz", t.sz)?,
            side: common::side_word("side", t.side)?,
            timestamp: common::unix_millis("ts", t.ts.0)?,
            received_at,
        })
    }

    fn push(
        &self,
        data: Option<&serde_json::value::RawValue>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<(), ParseError> {
        let data = data.ok_or_else(|| missing("data"))?;
        let trades: Vec<wire::Trade<'_>> = serde_json::from_str(data.get())?;
        out.reserve(trades.len());
        for t in &trades {
            let symbol = self.symbols.resolve(t.inst_id)?;
            out.push(self.trade(symbol, t, received_at)?);
        }
        Ok(())
    }
}

fn venue_error(code: Option<&str>, msg: Option<&str>) -> ParseError {
    ParseError::Venue(format!(
        "{}: {}",
        code.map(truncate).unwrap_or("?"),
        msg.map(truncate).unwrap_or("no message")
    ))
}

impl StreamVenue for OkxVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let mut msg = String::from(r#"{"op":"subscribe","args":["#);
        for (i, s) in symbols.iter().enumerate() {
            if i > 0 {
                msg.push(',');
            }
            // Upper-case letters, digits and one dash: nothing to escape.
            msg.push_str(r#"{"channel":"trades","instId":""#);
            msg.push_str(to_venue(s));
            msg.push_str(r#""}"#);
        }
        msg.push_str("]}");
        vec![WsMessage::Text(msg)]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        if self.fast_push(frame, received_at, out).is_some() {
            return Ok(Frame::Data);
        }
        self.parse_with_serde(frame, received_at, out)
    }

    fn ping(&self) -> Option<Ping> {
        Some(Ping {
            every: Duration::from_secs(20),
            message: WsMessage::Text(PING.to_owned()),
        })
    }
}

impl OkxVenue {
    /// The fast path for `trades` pushes (see [`wire::scan_push`]): their trades appended to
    /// `out`; `None`, with `out` as it was, leaves the frame to serde, which then decides
    /// (also on a trade this would refuse: serde's path gives the error).
    fn fast_push(&self, frame: &[u8], received_at: Timestamp, out: &mut Vec<Trade>) -> Option<()> {
        common::fast_path(frame, out, |text, out| {
            wire::scan_push(text, |t| {
                let symbol = self.symbols.resolve(t.inst_id).ok()?;
                out.push(self.trade(symbol, &t, received_at).ok()?);
                Some(())
            })
        })
    }

    /// [`StreamVenue::parse`] without its fast path: every frame read with serde. The
    /// reference the fast path is checked against, and the baseline of the parser benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        if frame.trim_ascii() == PONG.as_bytes() {
            return Ok(Frame::Heartbeat);
        }
        let m: wire::WsMessage<'_> = common::from_json(frame)?;
        match m.event {
            None => {}
            Some("subscribe" | "unsubscribe") => return Ok(Frame::Ack),
            Some("error") => return Err(venue_error(m.code.as_deref(), m.msg.as_deref())),
            Some("notice") if m.code.as_deref() == Some(UPGRADE_NOTICE) => {
                return Ok(Frame::Reconnect)
            }
            // How many connections the account holds: nothing of ours.
            Some("channel-conn-count") => return Ok(Frame::Ignored),
            Some(_) => return Ok(Frame::Unrecognized),
        }
        match m.arg {
            Some(arg) if arg.channel == "trades" || arg.channel == "trades-all" => {
                // All or nothing: a push is either understood or reported, never
                // half-appended.
                let start = out.len();
                match self.push(m.data, received_at, out) {
                    Ok(()) => Ok(Frame::Data),
                    Err(e) => {
                        out.truncate(start);
                        Err(e)
                    }
                }
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl PollVenue for OkxVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let endpoint = if req.page.is_some() {
            "history-trades"
        } else {
            "trades"
        };
        let mut url = common::join_path(&self.rest_url, &["api", "v5", "market", endpoint]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("instId", to_venue(symbol));
            if let Some(after) = req.page {
                // Type 1: page by trade id.
                q.append_pair("type", "1");
                q.append_pair("after", after);
            }
            q.append_pair("limit", &PAGE_LIMIT.to_string());
        }
        Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        })
    }

    /// The trades with ids in `(id, id + 101)`: exactly the page after trade `id`. A cursor
    /// that is not an OKX id cannot bound a window, so none is made.
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let id = after.trade_id.as_number()?;
        let end = id.checked_add(u128::from(PAGE_LIMIT) + 1)?;
        let mut url = common::join_path(&self.rest_url, &["api", "v5", "market", "history-trades"]);
        url.query_pairs_mut()
            .append_pair("instId", to_venue(symbol))
            .append_pair("type", "1")
            .append_pair("before", &id.to_string())
            .append_pair("after", &end.to_string())
            .append_pair("limit", &PAGE_LIMIT.to_string());
        Some(Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        }))
    }

    fn request_spacing(&self) -> Duration {
        REQUEST_SPACING
    }

    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let answer: wire::RestAnswer<'_> = common::from_json(resp.body)?;
        if answer.code != "0" {
            return Err(venue_error(Some(&answer.code), answer.msg.as_deref()));
        }
        // All or nothing: a page is either understood or reported, never half-appended.
        let start = out.len();
        append_all(out, &answer.data, |t| {
            if t.inst_id == to_venue(symbol) {
                self.trade(symbol.clone(), t, received_at)
            } else {
                Err(ParseError::UnknownSymbol(truncate(t.inst_id).to_owned()))
            }
        })?;
        // The next older page starts below the smallest trade id of this one.
        let older = out
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.trade_id.as_number())
            .min()
            .map(|id| id.to_string());
        Ok(Page { older })
    }
}

/// OKX as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<OkxVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: OkxVenue::new,
    instruments: Some(|cfg| Ok(Box::new(OkxInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds OKX without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const OkxFactory: VenueFactory<OkxVenue> = VenueFactory::new(VENUE);
