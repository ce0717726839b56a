//! Kraken's asset pairs: `GET /0/public/AssetPairs`
//! (<https://docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs>).
//!
//! ```json
//! {"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","aclass_base":"currency",
//!  "base":"XXBT","aclass_quote":"currency","quote":"ZUSD","lot":"unit","status":"online"}}}
//! ```
//! The `wsname` names both assets by Kraken's short names (`XBT`, `XDG`), turned back into the
//! usual codes here. Only pairs whose `status` is `online` trade fully (the others are
//! `cancel_only`, `post_only`, `limit_only` or `reduce_only`); a pair without a status, as
//! before Kraken added it, is taken as online.

use std::collections::HashMap;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use crate::common::{self, truncate, KRAKEN_ASSETS};

/// Kraken's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct KrakenInstruments {
    rest_url: Url,
}

impl KrakenInstruments {
    /// The list at `cfg`'s `rest_url`, or Kraken's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    error: Vec<&'a str>,
    #[serde(borrow, default)]
    result: HashMap<&'a str, Pair<'a>>,
}

#[derive(Deserialize)]
struct Pair<'a> {
    /// Absent for the old dark-pool pairs, which have no stream either.
    #[serde(borrow, default)]
    wsname: Option<&'a str>,
    #[serde(borrow, default)]
    status: Option<&'a str>,
}

impl InstrumentsVenue for KrakenInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(&self.rest_url, &["0", "public", "AssetPairs"], &[])
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let answer: Answer<'_> = common::from_json(body)?;
        if let Some(e) = answer.error.first() {
            return Err(ParseError::Venue(truncate(e).to_owned()));
        }
        let online = answer
            .result
            .values()
            .filter(|p| p.status.is_none_or(|s| s == "online"));
        out.extend(
            online
                .filter_map(|p| p.wsname?.split_once('/'))
                .filter_map(|(b, q)| {
                    common::listed(KRAKEN_ASSETS.code_of(b), KRAKEN_ASSETS.code_of(q))
                }),
        );
        Ok(())
    }
}
