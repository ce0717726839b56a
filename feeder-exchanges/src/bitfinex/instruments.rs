//! Bitfinex's exchange pairs: `GET /v2/conf/pub:list:pair:exchange`
//! (<https://docs.bitfinex.com/reference/rest-public-conf>).
//!
//! One list inside a list, the pairs without the `t` and in Bitfinex's asset names:
//! `[["BTCUSD","BTCUST","ETHBTC","LINK:UST","TESTBTC:TESTUSD"]]`. Only pairs open for
//! trading are listed. A colon separates base and quote when either is not three letters
//! long; otherwise each is three.

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use url::Url;

use crate::common::{self, BITFINEX_ASSETS};

/// Bitfinex's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct BitfinexInstruments {
    rest_url: Url,
}

impl BitfinexInstruments {
    /// The list at `cfg`'s `rest_url`, or Bitfinex's own.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
        })
    }
}

/// `BTCUST` is `BTC-USDT`, `LINK:UST` is `LINK-USDT`.
fn normalized(pair: &str) -> Option<Symbol> {
    let (base, quote) = match pair.split_once(':') {
        Some(parts) => parts,
        None if pair.len() == 6 && pair.is_ascii() => pair.split_at(3),
        None => return None,
    };
    common::listed(
        BITFINEX_ASSETS.code_of(base),
        BITFINEX_ASSETS.code_of(quote),
    )
}

impl InstrumentsVenue for BitfinexInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(
            &self.rest_url,
            &["v2", "conf", "pub:list:pair:exchange"],
            &[],
        )
    }

    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let lists: Vec<Vec<&str>> = common::from_json(body)?;
        let pairs = lists.first().ok_or_else(|| common::missing("pairs"))?;
        out.extend(pairs.iter().filter_map(|p| normalized(p)));
        Ok(())
    }
}
