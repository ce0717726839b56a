//! OKX's spot instruments: `GET /api/v5/public/instruments?instType=SPOT`
//! (<https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments>).
//!
//! ```json
//! {"code":"0","msg":"","data":[{"instType":"SPOT","instId":"BTC-USDT","baseCcy":"BTC",
//!  "quoteCcy":"USDT","state":"live"}]}
//! ```
//! An instrument trades when its `state` is `live` (not `suspend`, `preopen` or `test`); a
//! `code` other than `"0"` is an error.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common;

/// OKX's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct OkxInstruments {
    rest_url: Url,
}

impl OkxInstruments {
    /// The list at `cfg`'s `rest_url`, or OKX's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    code: &'a str,
    #[serde(borrow, default)]
    msg: Option<&'a str>,
    #[serde(borrow, default)]
    data: Vec<Instrument<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instrument<'a> {
    base_ccy: &'a str,
    quote_ccy: &'a str,
    state: &'a str,
}

impl InstrumentsVenue for OkxInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(
            &self.rest_url,
            &["api", "v5", "public", "instruments"],
            &[("instType", "SPOT")],
        )
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let answer: Answer<'_> = common::from_json(body)?;
        if answer.code != "0" {
            let msg = answer.msg.unwrap_or("error without a message");
            return Err(ParseError::Venue(format!(
                "{}: {}",
                common::truncate(answer.code),
                common::truncate(msg)
            )));
        }
        out.extend(
            answer
                .data
                .iter()
                .filter(|i| i.state == "live")
                .filter_map(|i| common::listed(i.base_ccy, i.quote_ccy)),
        );
        Ok(())
    }
}
