//! Binance's spot symbols: `GET /api/v3/exchangeInfo`
//! (<https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-endpoints#exchange-information>).
//!
//! ```json
//! {"timezone":"UTC","serverTime":1727791043385,"rateLimits":[],"exchangeFilters":[],
//!  "symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT"}]}
//! ```
//! A symbol trades when its `status` is `TRADING` (not `BREAK`, `HALT` or `END_OF_DAY`).
//! Errors come as `{"code":-1121,"msg":"Invalid symbol."}`.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// Binance's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct BinanceInstruments {
    rest_url: Url,
}

impl BinanceInstruments {
    /// The list at `cfg`'s `rest_url`, or Binance's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct ExchangeInfo<'a> {
    #[serde(borrow, default)]
    symbols: Option<Vec<SymbolInfo<'a>>>,
    #[serde(borrow, default)]
    msg: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SymbolInfo<'a> {
    status: &'a str,
    base_asset: &'a str,
    quote_asset: &'a str,
}

impl InstrumentsVenue for BinanceInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(&self.rest_url, &["api", "v3", "exchangeInfo"], &[])
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let info: ExchangeInfo<'_> = common::from_json(body)?;
        let Some(symbols) = info.symbols else {
            let msg = info.msg.unwrap_or("no symbols in the answer");
            return Err(ParseError::Venue(common::truncate(msg).to_owned()));
        };
        out.extend(
            symbols
                .iter()
                .filter(|s| s.status == "TRADING")
                .filter_map(|s| common::listed(s.base_asset, s.quote_asset)),
        );
        Ok(())
    }
}
