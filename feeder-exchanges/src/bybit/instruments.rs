//! Bybit's spot instruments: `GET /v5/market/instruments-info?category=spot`
//! (<https://bybit-exchange.github.io/docs/v5/market/instrument>).
//!
//! ```json
//! {"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT",
//!  "baseCoin":"BTC","quoteCoin":"USDT","innovation":"0","status":"Trading"}]},
//!  "retExtInfo":{},"time":1727791043385}
//! ```
//! Spot answers in one page. An instrument trades when its `status` is `Trading`; a
//! `retCode` other than 0 is an error.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// Bybit's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct BybitInstruments {
    rest_url: Url,
}

impl BybitInstruments {
    /// The list at `cfg`'s `rest_url`, or Bybit's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    ret_code: i64,
    #[serde(borrow, default)]
    ret_msg: Option<&'a str>,
    #[serde(borrow, default)]
    result: Option<List<'a>>,
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow, default)]
    list: Vec<Instrument<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instrument<'a> {
    base_coin: &'a str,
    quote_coin: &'a str,
    status: &'a str,
}

impl InstrumentsVenue for BybitInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(
            &self.rest_url,
            &["v5", "market", "instruments-info"],
            &[("category", "spot")],
        )
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let answer: Answer<'_> = common::from_json(body)?;
        if answer.ret_code != 0 {
            let msg = answer.ret_msg.unwrap_or("error without a message");
            return Err(ParseError::Venue(format!(
                "{}: {}",
                answer.ret_code,
                common::truncate(msg)
            )));
        }
        let list = answer.result.ok_or_else(|| common::missing("result"))?.list;
        out.extend(
            list.iter()
                .filter(|i| i.status == "Trading")
                .filter_map(|i| common::listed(i.base_coin, i.quote_coin)),
        );
        Ok(())
    }
}
