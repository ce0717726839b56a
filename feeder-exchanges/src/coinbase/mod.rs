//! Coinbase Exchange: the `matches` channel of the WebSocket feed, product trades over REST.
//!
//! - Stream: `wss://ws-feed.exchange.coinbase.com`, one `subscribe` to the `matches` and
//!   `heartbeat` channels for all symbols. A `last_match` comes first, then every `match`.
//!   The per-second `heartbeat` carries the product's `last_trade_id`, which lets the driver
//!   notice trades the stream skipped and backfill them without reconnecting.
//! - Poll and backfill: `GET /products/{id}/trades?limit=100`, newest first; older pages via
//!   `&after={cursor}` with the cursor from the `cb-after` response header.
//!
//! Side: Coinbase reports the MAKER's side on both APIs; the taker's is the opposite.
//! Symbols: Coinbase's product ids are already `BASE-QUOTE` in upper case.

mod instruments;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, PollRequest,
    PollVenue, StreamVenue, WsMessage,
};
use feeder_core::venue::{Transports, VenueFactory, VenueSpec};
use feeder_core::model::{Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use url::Url;

use crate::common::{self, append_all, decimal, missing, truncate, SymbolTable};

pub use instruments::CoinbaseInstruments;

/// The registry name.
pub const NAME: &str = "coinbase";
/// The production WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://ws-feed.exchange.coinbase.com";
/// The production REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://api.exchange.coinbase.com";
/// Trades per REST page.
pub const PAGE_LIMIT: u32 = 100;
/// Trades per REST page when filling forward from a trade: Coinbase's largest page, since
/// an outage may need thousands of them.
pub const FORWARD_PAGE_LIMIT: u32 = 1_000;
/// Coinbase's public REST limit is 10 requests per second per IP.
pub const REQUEST_SPACING: Duration = Duration::from_millis(100);
/// The response header that names the next older page.
pub const CURSOR_HEADER: &str = "cb-after";

/// Coinbase's product id for a normalized symbol (they are spelled the same).
pub fn to_venue(symbol: &Symbol) -> &str {
    symbol.as_str()
}

/// The Coinbase Exchange venue: endpoints and symbols for one configured exchange.
#[derive(Clone, Debug)]
pub struct CoinbaseVenue {
    /// The exchange name written into every trade.
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    /// The configured symbols by product id, so a trade's symbol is a shared clone rather
    /// than a fresh allocation.
    symbols: SymbolTable,
}

impl CoinbaseVenue {
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

    /// The symbol of a product id: the configured one, or (for a product the feed sends
    /// unasked) the id itself when it is a valid symbol.
    fn symbol(&self, product_id: &str) -> Result<Symbol, ParseError> {
        if let Some(s) = self.symbols.get(product_id) {
            return Ok(s.clone());
        }
        Symbol::parse(product_id)
            .map_err(|_| ParseError::UnknownSymbol(truncate(product_id).into()))
    }

    fn ws_trade(
        &self,
        m: &wire::WsMessage<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        let product_id = m.product_id.ok_or_else(|| missing("product_id"))?;
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: self.symbol(product_id)?,
            trade_id: TradeId::from_u64(m.trade_id.ok_or_else(|| missing("trade_id"))?.0),
            price: decimal("price", m.price.ok_or_else(|| missing("price"))?)?,
            amount: decimal("size", m.size.ok_or_else(|| missing("size"))?)?,
            side: common::side_word("side", m.side.ok_or_else(|| missing("side"))?)?.opposite(),
            timestamp: common::rfc3339("time", m.time.ok_or_else(|| missing("time"))?)?,
            received_at,
        })
    }

    fn rest_trade(
        &self,
        symbol: &Symbol,
        t: &wire::RestTrade<'_>,
        received_at: Timestamp,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.name.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(t.trade_id.0),
            price: decimal("price", t.price)?,
            amount: decimal("size", t.size)?,
            // The maker's side on the wire; the taker did the opposite.
            side: common::side_word("side", t.side)?.opposite(),
            timestamp: common::rfc3339("time", t.time)?,
            received_at,
        })
    }
}

impl StreamVenue for CoinbaseVenue {
    /// A product's trade ids count up by one, so a jump means trades were missed.
    fn ids_are_consecutive(&self) -> bool {
        true
    }

    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let mut msg = String::from(r#"{"type":"subscribe","product_ids":["#);
        for (i, s) in symbols.iter().enumerate() {
            if i > 0 {
                msg.push(',');
            }
            // Symbols are upper-case letters, digits and one dash: nothing to escape.
            msg.push('"');
            msg.push_str(to_venue(s));
            msg.push('"');
        }
        msg.push_str(r#"],"channels":["matches","heartbeat"]}"#);
        vec![WsMessage::Text(msg)]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.read(frame, received_at, out, true)
    }
}

impl CoinbaseVenue {
    /// [`StreamVenue::parse`] without its fast path: every frame read with serde. The
    /// reference the fast path is checked against, and the baseline of the parser benchmarks.
    pub fn parse_with_serde(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        self.read(frame, received_at, out, false)
    }

    /// A frame, through the fast path first when `fast` (see [`crate::scan`]).
    fn read(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
        fast: bool,
    ) -> Result<Frame, ParseError> {
        let scanned = std::str::from_utf8(frame)
            .ok()
            .filter(|_| fast)
            .and_then(wire::WsMessage::scan);
        let m = match scanned {
            Some(m) => m,
            None => common::from_json(frame)?,
        };
        match m.kind {
            "match" | "last_match" => {
                out.push(self.ws_trade(&m, received_at)?);
                Ok(Frame::Data)
            }
            "heartbeat" => match (m.product_id, m.last_trade_id) {
                (Some(product_id), Some(id)) => Ok(Frame::Gap {
                    symbol: self.symbol(product_id)?,
                    last_trade_id: TradeId::from_u64(id.0),
                }),
                _ => Ok(Frame::Heartbeat),
            },
            "subscriptions" => Ok(Frame::Ack),
            "error" => {
                let mut text = m
                    .message
                    .as_deref()
                    .map(truncate)
                    .unwrap_or("error without a message")
                    .to_owned();
                if let Some(reason) = m.reason.as_deref() {
                    text.push_str(": ");
                    text.push_str(truncate(reason));
                }
                Err(ParseError::Venue(text))
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl PollVenue for CoinbaseVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let mut url = common::join_path(&self.rest_url, &["products", to_venue(symbol), "trades"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &PAGE_LIMIT.to_string());
            if let Some(cursor) = req.page {
                q.append_pair("after", cursor);
            }
        }
        Ok(HttpRequest {
            url,
            headers: vec![("User-Agent".to_owned(), common::USER_AGENT.to_owned())],
        })
    }

    /// `before=ID` asks for the page right after trade `ID` (Coinbase's "newer" page).
    fn forward_request(
        &self,
        symbol: &Symbol,
        after: &Cursor,
    ) -> Option<Result<HttpRequest, ExchangeError>> {
        let mut url = common::join_path(&self.rest_url, &["products", to_venue(symbol), "trades"]);
        url.query_pairs_mut()
            .append_pair("limit", &FORWARD_PAGE_LIMIT.to_string())
            .append_pair("before", after.trade_id.as_str());
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
        let body = resp.body.trim_ascii_start();
        if body.first() == Some(&b'{') {
            let e: wire::RestError<'_> = common::from_json(body)?;
            return Err(ParseError::Venue(
                e.message
                    .as_deref()
                    .map(truncate)
                    .unwrap_or("an object instead of a list of trades")
                    .to_owned(),
            ));
        }
        let trades: Vec<wire::RestTrade<'_>> = common::from_json(body)?;
        // All or nothing: a page is either understood or reported, never half-appended.
        append_all(out, &trades, |t| self.rest_trade(symbol, t, received_at))?;
        // An empty page is the end of the history, whatever the header says.
        let older = if trades.is_empty() {
            None
        } else {
            match resp.headers.get(CURSOR_HEADER) {
                None => None,
                Some(v) => {
                    let v = v
                        .to_str()
                        .map_err(|_| ParseError::field(CURSOR_HEADER, "not visible ASCII"))?;
                    (!v.is_empty()).then(|| v.to_owned())
                }
            }
        };
        Ok(Page { older })
    }
}

/// Coinbase as data: the registry builds it with the generic
/// [`VenueFactory`].
pub const VENUE: VenueSpec<CoinbaseVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest(DEFAULT_WS_URL, DEFAULT_REST_URL),
    new: CoinbaseVenue::new,
    instruments: Some(|cfg| Ok(Box::new(CoinbaseInstruments::new(cfg)?))),
};

/// The factory of [`VENUE`], for code that builds Coinbase without a registry.
#[allow(non_upper_case_globals)] // Named as the type it replaced, so callers keep working.
pub const CoinbaseFactory: VenueFactory<CoinbaseVenue> = VenueFactory::new(VENUE);
