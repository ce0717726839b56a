//! A venue written outside the bundled crates, with only `feeder_core::prelude`: a made-up
//! exchange with a WebSocket feed and a REST trade history, described as data
//! ([`VENUE`]) and built by the generic factory, so that every exchange option
//! (`request_timeout`, `backfill`, `stale_timeout`, ...) applies to it as to a bundled venue.
//!
//! The wire protocol:
//! - subscribe: `{"op":"sub","streams":["BTC-USD"]}`, answered by `{"ch":"ack"}`;
//! - a trade: `{"ch":"trade","s":"BTC-USD","id":7,"p":"43210.12","q":"0.5","taker":"b","t":1704164645123}`
//!   (`t` in milliseconds, `taker` `b` or `s`);
//! - REST: `GET {rest_url}/trades?symbol=BTC-USD` answers the newest trades as a JSON list of
//!   the same objects, without `ch`.

use feeder_core::prelude::*;
use serde::Deserialize;

/// The registry name.
pub const NAME: &str = "toy";

/// The toy venue as data: the registry builds it with the generic factory.
pub const VENUE: VenueSpec<ToyVenue> = VenueSpec {
    name: NAME,
    transports: Transports::websocket_and_rest("wss://toy.invalid/ws", "https://toy.invalid"),
    new: ToyVenue::new,
    instruments: None,
};

/// One configured toy exchange: its name, endpoints and symbols.
#[derive(Debug)]
pub struct ToyVenue {
    name: Arc<str>,
    ws_url: Url,
    rest_url: Url,
    symbols: SymbolTable,
}

impl ToyVenue {
    /// The venue of a config entry; its endpoints come resolved from the generic factory.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            ws_url: cfg.ws_endpoint("wss://toy.invalid/ws")?,
            rest_url: cfg.rest_endpoint("https://toy.invalid")?,
            // The toy venue spells symbols as they are configured.
            symbols: SymbolTable::new(cfg, |s| vec![s.as_str().to_owned()])?,
        })
    }

    fn trade(&self, w: &WireTrade<'_>, received_at: Timestamp) -> Result<Trade, ParseError> {
        Ok(Trade {
            // The entry's name, as every trade of this exchange must carry.
            exchange: self.name.clone(),
            symbol: self.symbols.resolve(w.s)?,
            trade_id: TradeId::from_u64(w.id.0),
            price: read::decimal("p", w.p)?,
            amount: read::decimal("q", w.q)?,
            side: match w.taker {
                "b" => Side::Buy,
                "s" => Side::Sell,
                _ => Side::Unknown,
            },
            timestamp: read::unix_millis("t", w.t.0)?,
            received_at,
        })
    }
}

/// A trade as the toy venue writes it, borrowed from the payload.
#[derive(Deserialize)]
struct WireTrade<'a> {
    s: &'a str,
    id: Uint,
    p: &'a str,
    q: &'a str,
    #[serde(default)]
    taker: &'a str,
    t: Uint,
}

/// A WebSocket message: its channel, and the fields of a trade when it is one.
#[derive(Deserialize)]
struct WireMessage<'a> {
    ch: &'a str,
    #[serde(default)]
    s: &'a str,
    id: Option<Uint>,
    #[serde(default)]
    p: &'a str,
    #[serde(default)]
    q: &'a str,
    #[serde(default)]
    taker: &'a str,
    t: Option<Uint>,
}

impl StreamVenue for ToyVenue {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws_url.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let streams: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
        vec![WsMessage::Text(format!(
            r#"{{"op":"sub","streams":[{}]}}"#,
            streams.join(",")
        ))]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let m: WireMessage<'_> = read::from_json(frame)?;
        match m.ch {
            "ack" => Ok(Frame::Ack),
            "trade" => {
                let t = WireTrade {
                    s: m.s,
                    id: m.id.ok_or_else(|| read::missing("id"))?,
                    p: m.p,
                    q: m.q,
                    taker: m.taker,
                    t: m.t.ok_or_else(|| read::missing("t"))?,
                };
                out.push(self.trade(&t, received_at)?);
                Ok(Frame::Data)
            }
            _ => Ok(Frame::Unrecognized),
        }
    }
}

impl PollVenue for ToyVenue {
    fn trades_request(
        &self,
        symbol: &Symbol,
        _req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let mut url = read::join_path(&self.rest_url, &["trades"]);
        url.query_pairs_mut().append_pair("symbol", symbol.as_str());
        Ok(HttpRequest::get(url))
    }

    fn parse_trades(
        &self,
        _symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let page: Vec<WireTrade<'_>> = read::from_json(resp.body)?;
        read::append_all(out, &page, |t| self.trade(t, received_at))?;
        Ok(Page::default())
    }

    fn max_pages(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue() -> ToyVenue {
        ToyVenue::new(&ExchangeConfig::new(
            NAME,
            vec![Symbol::parse("BTC-USD").expect("a symbol")],
        ))
        .expect("a venue")
    }

    #[test]
    fn a_trade_frame_reads_exactly() {
        let frame = br#"{"ch":"trade","s":"BTC-USD","id":"7","p":"43210.12","q":"1e-8","taker":"s","t":1704164645123}"#;
        let mut out = Vec::new();
        let received = Timestamp::from_unix_millis(1_704_164_645_200);
        let r = venue().parse(frame, received, &mut out);
        assert!(matches!(r, Ok(Frame::Data)), "{r:?}");
        let t = &out[0];
        assert_eq!(t.trade_id.as_str(), "7");
        assert_eq!(t.price.to_string(), "43210.12");
        assert_eq!(t.amount.to_string(), "0.00000001");
        assert_eq!(t.side, Side::Sell);
        assert_eq!(t.timestamp.digits(), 3);
    }

    #[test]
    fn a_symbol_not_configured_is_an_error_not_a_trade() {
        let frame = br#"{"ch":"trade","s":"ETH-USD","id":1,"p":"1","q":"1","t":1}"#;
        let mut out = Vec::new();
        let r = venue().parse(frame, Timestamp::from_unix_millis(1), &mut out);
        assert!(matches!(r, Err(ParseError::UnknownSymbol(_))), "{r:?}");
        assert!(out.is_empty());
    }
}
