//! Huobi's (HTX's) spot symbols: `GET /v1/common/symbols`
//! (<https://huobiapi.github.io/docs/spot/v1/en/#get-all-supported-trading-symbol>).
//!
//! ```json
//! {"status":"ok","data":[{"base-currency":"btc","quote-currency":"usdt","symbol":"btcusdt",
//!  "state":"online","api-trading":"enabled","symbol-partition":"main"}]}
//! ```
//! A symbol trades when its `state` is `online` (not `offline`, `suspend` or `pre-online`).
//! Errors come as `{"status":"error","err-code":"...","err-msg":"..."}`.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// Huobi's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct HuobiInstruments {
    rest_url: Url,
}

impl HuobiInstruments {
    /// The list at `cfg`'s `rest_url`, or Huobi's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    status: &'a str,
    #[serde(rename = "err-msg", borrow, default)]
    err_msg: Option<&'a str>,
    #[serde(borrow, default)]
    data: Vec<SymbolInfo<'a>>,
}

#[derive(Deserialize)]
struct SymbolInfo<'a> {
    #[serde(rename = "base-currency")]
    base: &'a str,
    #[serde(rename = "quote-currency")]
    quote: &'a str,
    state: &'a str,
}

impl InstrumentsVenue for HuobiInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(&self.rest_url, &["v1", "common", "symbols"], &[])
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let answer: Answer<'_> = common::from_json(body)?;
        if answer.status != "ok" {
            let msg = answer.err_msg.unwrap_or("error without a message");
            return Err(ParseError::Venue(common::truncate(msg).to_owned()));
        }
        out.extend(
            answer
                .data
                .iter()
                .filter(|s| s.state == "online")
                .filter_map(|s| common::listed(s.base, s.quote)),
        );
        Ok(())
    }
}
