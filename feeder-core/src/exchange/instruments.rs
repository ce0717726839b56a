//! A venue's list of tradeable instruments, for `crypto-feeder symbols` and
//! `crypto-feeder validate --online`: a check made once, before any trade is collected, that
//! the configured symbols exist.

use std::time::Duration;

use super::rest::default_client;
use super::HttpRequest;
use crate::error::{ExchangeError, ParseError};
use crate::model::Symbol;

/// What a venue says about its instruments: one GET and a pure parse.
///
/// Optional: a venue without it is simply not checked online. The parse appends the spot
/// instruments that trade now (not halted, delisted or pre-listed) in normalized form, with
/// the venue's own asset names turned back into the usual codes (`UST` to `USDT`), so that
/// the list compares with the configured symbols as they are written. Instruments whose
/// names make no normalized symbol are left out: they cannot be configured either.
pub trait InstrumentsVenue: Send + Sync + 'static {
    /// The request for the venue's instrument list.
    fn instruments_request(&self) -> HttpRequest;

    /// Parses the list, appending the instruments that trade to `out` in any order.
    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError>;
}

/// Fetches and parses `venue`'s instrument list with the same client as the drivers (rustls,
/// verified certificates) and a `timeout` for the whole request. Sorted, each symbol once.
/// Nothing is retried: the caller is a person at a terminal or a check before start-up, and
/// an answer now is worth more than one in a minute.
pub async fn fetch_instruments(
    venue: &dyn InstrumentsVenue,
    timeout: Duration,
) -> Result<Vec<Symbol>, ExchangeError> {
    let req = venue.instruments_request();
    let url = req.url.as_str().to_owned();
    let mut builder = default_client()?.get(req.url.clone()).timeout(timeout);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let http = |source| ExchangeError::Http {
        url: url.clone(),
        source,
    };
    let resp = builder.send().await.map_err(http)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(ExchangeError::Status {
            status,
            url,
            retry_after: None,
        });
    }
    let body = resp.bytes().await.map_err(http)?;
    let mut out = Vec::new();
    venue
        .parse_instruments(&body, &mut out)
        .map_err(|e| ExchangeError::Other {
            context: format!("reading the instrument list from {url}"),
            source: Box::new(e),
        })?;
    out.sort();
    out.dedup();
    Ok(out)
}
