//! Gemini's symbols: `GET /v1/symbols`, then `GET /v1/symbols/details/{symbol}` for each
//! (<https://docs.gemini.com/rest/market-data#list-symbols>,
//! <https://docs.gemini.com/rest/market-data#get-symbol-details>).
//!
//! The list names every symbol in lower case, spot and perpetual alike, without saying where
//! the base ends or whether it trades:
//! ```json
//! ["btcusd","ethbtc","ethusd","btcgusdperp","gusdusd"]
//! ```
//! so each one's details are asked:
//! ```json
//! {"symbol":"BTCUSD","base_currency":"BTC","quote_currency":"USD","tick_size":1E-8,
//!  "quote_increment":0.01,"min_order_size":"0.00001","status":"open","wrap_enabled":false,
//!  "product_type":"spot","contract_type":"vanilla","contract_price_currency":"USD"}
//! ```
//! A symbol trades when its `status` is `open` (not `closed`, `cancel_only`, `post_only` or
//! `limit_only`) and it is spot (`product_type` absent or `spot`, not `swap`). Errors come as
//! `{"result":"error","reason":"InvalidSymbol","message":"..."}`.
//!
//! Gemini takes 120 public requests a minute, and a full list is one request per symbol, so
//! for a config with symbols only the configured ones' details are asked: a symbol absent
//! from the list is not listed whatever its details would say.

use std::borrow::Cow;
use std::collections::HashSet;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::{ParseError, Symbol};
use serde::Deserialize;
use url::Url;

use super::wire::RestError;
use crate::common::{self, missing, truncate};

/// Gemini's instrument list, at the configured REST endpoint.
#[derive(Clone, Debug)]
pub struct GeminiInstruments {
    rest_url: Url,
    /// The configured symbols by Gemini's name in lower case (`btcusd`), the only ones whose
    /// details are asked; empty to ask about every listed symbol.
    wanted: HashSet<String>,
}

impl GeminiInstruments {
    /// The list at `cfg`'s `rest_url`, or Gemini's own; details are asked for `cfg`'s
    /// symbols only, or for every symbol when it has none.
    pub fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            rest_url: common::rest_endpoint(cfg, super::DEFAULT_REST_URL)?,
            wanted: cfg
                .symbols
                .iter()
                .map(|s| super::to_venue(s).to_ascii_lowercase())
                .collect(),
        })
    }
}

/// One symbol's details, or an error object (`result` is `error`, the rest absent).
#[derive(Deserialize)]
struct Details<'a> {
    #[serde(borrow, default)]
    result: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    base_currency: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quote_currency: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    /// Absent before Gemini listed perpetuals, when every symbol was spot.
    #[serde(borrow, default)]
    product_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Gemini's error object as a venue error: `InvalidSymbol: Supplied value ...`.
fn venue_error(reason: Option<&str>, message: Option<&str>) -> ParseError {
    let mut text = reason
        .map(truncate)
        .unwrap_or("error without a reason")
        .to_owned();
    if let Some(m) = message {
        text.push_str(": ");
        text.push_str(truncate(m));
    }
    ParseError::Venue(text)
}

/// The names in the list, or the error the answer holds instead.
fn names(body: &[u8]) -> Result<Vec<Cow<'_, str>>, ParseError> {
    if body.trim_ascii_start().first() == Some(&b'{') {
        let e: RestError<'_> = common::from_json(body)?;
        return Err(venue_error(e.reason.as_deref(), e.message.as_deref()));
    }
    Ok(common::from_json(body)?)
}

impl InstrumentsVenue for GeminiInstruments {
    fn instruments_request(&self) -> HttpRequest {
        common::list_request(&self.rest_url, &["v1", "symbols"], &[])
    }

    /// The list says nothing that trades; it is only checked to be a list.
    fn parse_instruments(&self, body: &[u8], _out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        names(body).map(drop)
    }

    fn detail_requests(&self, body: &[u8]) -> Result<Vec<HttpRequest>, ParseError> {
        // A name listed twice is asked about once.
        let mut seen = HashSet::new();
        Ok(names(body)?
            .into_iter()
            .filter(|n| {
                let lower = n.to_ascii_lowercase();
                (self.wanted.is_empty() || self.wanted.contains(&lower)) && seen.insert(lower)
            })
            .map(|n| common::list_request(&self.rest_url, &["v1", "symbols", "details", &n], &[]))
            .collect())
    }

    fn parse_detail(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let d: Details<'_> = common::from_json(body)?;
        if d.result.as_deref() == Some("error") {
            return Err(venue_error(d.reason.as_deref(), d.message.as_deref()));
        }
        let status = d.status.ok_or_else(|| missing("status"))?;
        let base = d.base_currency.ok_or_else(|| missing("base_currency"))?;
        let quote = d.quote_currency.ok_or_else(|| missing("quote_currency"))?;
        let spot = d.product_type.as_deref().is_none_or(|p| p == "spot");
        if spot && status == "open" {
            out.extend(common::listed(&base, &quote));
        }
        Ok(())
    }
}
