//! Bitstamp's trading pairs: `GET /api/v2/trading-pairs-info/`
//! (<https://www.bitstamp.net/api/#tag/Market-info/operation/GetTradingPairsInfo>).
//!
//! ```json
//! [{"name":"BTC/USD","url_symbol":"btcusd","base_decimals":8,"counter_decimals":0,
//!   "instant_order_counter_decimals":2,"minimum_order":"10 USD","trading":"Enabled",
//!   "instant_and_market_orders":"Enabled","description":"Bitcoin / U.S. dollar"}]
//! ```
//! A pair trades when `trading` is `Enabled`.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// Bitstamp's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct BitstampInstruments {
    rest_url: Url,
}

impl BitstampInstruments {
    /// The list at `cfg`'s `rest_url`, or Bitstamp's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct PairInfo<'a> {
    name: &'a str,
    trading: &'a str,
}

impl InstrumentsVenue for BitstampInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(
            &self.rest_url,
            &["api", "v2", "trading-pairs-info", ""],
            &[],
        )
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let pairs: Vec<PairInfo<'_>> = common::from_json(body)?;
        out.extend(
            pairs
                .iter()
                .filter(|p| p.trading == "Enabled")
                .filter_map(|p| p.name.split_once('/'))
                .filter_map(|(b, q)| common::listed(b, q)),
        );
        Ok(())
    }
}
