//! Coinbase Exchange's products: `GET /products`
//! (<https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducts>).
//!
//! ```json
//! [{"id":"BTC-USD","base_currency":"BTC","quote_currency":"USD","display_name":"BTC-USD",
//!   "status":"online","trading_disabled":false,"cancel_only":false,"post_only":false}]
//! ```
//! A product trades when its `status` is `online` and `trading_disabled` is false.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// Coinbase's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct CoinbaseInstruments {
    rest_url: Url,
}

impl CoinbaseInstruments {
    /// The list at `cfg`'s `rest_url`, or Coinbase's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct Product<'a> {
    base_currency: &'a str,
    quote_currency: &'a str,
    status: &'a str,
    #[serde(default)]
    trading_disabled: bool,
}

impl InstrumentsVenue for CoinbaseInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(&self.rest_url, &["products"], &[])
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        if body.trim_ascii_start().first() == Some(&b'{') {
            let e: serde_json::Value = common::from_json(body)?;
            let msg = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("an object instead of a list of products");
            return Err(ParseError::Venue(common::truncate(msg).to_owned()));
        }
        let products: Vec<Product<'_>> = common::from_json(body)?;
        out.extend(
            products
                .iter()
                .filter(|p| p.status == "online" && !p.trading_disabled)
                .filter_map(|p| common::listed(p.base_currency, p.quote_currency)),
        );
        Ok(())
    }
}
