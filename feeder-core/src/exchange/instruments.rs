//! A venue's list of tradeable instruments, for `crypto-feeder symbols` and
//! `crypto-feeder validate --online`: a check made once, before any trade is collected, that
//! the configured symbols exist.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use super::rest::default_client;
use super::HttpRequest;
use crate::error::{ExchangeError, ParseError};
use crate::model::Symbol;

/// How many detail requests ([`InstrumentsVenue::detail_requests`]) are in flight at once: a
/// few, so that a list of a hundred names is read in seconds without a burst that a venue's
/// public rate limit (Gemini: 120 a minute) would refuse.
pub const DETAIL_CONCURRENCY: usize = 4;

/// The most detail requests one listing makes. A venue names a few hundred instruments; an
/// answer naming more is refused rather than turned into that many requests.
pub const MAX_DETAIL_REQUESTS: usize = 2_000;

/// What a venue says about its instruments: one GET and a pure parse, and, for a venue whose
/// list says too little, one more GET per instrument.
///
/// Optional: a venue without it is simply not checked online. The parse appends the spot
/// instruments that trade now (not halted, delisted or pre-listed) in normalized form, with
/// the venue's own asset names turned back into the usual codes (`UST` to `USDT`), so that
/// the list compares with the configured symbols as they are written. Instruments whose
/// names make no normalized symbol are left out: they cannot be configured either.
///
/// Most venues say everything in the list. A venue whose list only names its instruments
/// (Gemini's `btcusd` does not say where the base ends, nor whether it trades) also returns
/// [`detail_requests`](Self::detail_requests) from the list's answer;
/// [`fetch_instruments`] sends them, a few at a time, and hands each answer to
/// [`parse_detail`](Self::parse_detail). Both are defaulted to nothing, so a venue whose list
/// is complete implements neither.
pub trait InstrumentsVenue: Send + Sync + 'static {
    /// The request for the venue's instrument list.
    fn instruments_request(&self) -> HttpRequest;

    /// Parses the list, appending the instruments that trade to `out` in any order. A venue
    /// that reads its instruments from detail answers appends nothing here, but still
    /// reports an error answer as an error.
    fn parse_instruments(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError>;

    /// The follow-up requests for the instruments the list's answer `body` names, one per
    /// instrument, in any order; none (the default) when the list says all. An answer that
    /// cannot be read is an error.
    fn detail_requests(&self, body: &[u8]) -> Result<Vec<HttpRequest>, ParseError> {
        let _ = body;
        Ok(Vec::new())
    }

    /// Parses the answer to one detail request, appending its instrument to `out` when it
    /// trades. The default appends nothing.
    fn parse_detail(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let _ = (body, out);
        Ok(())
    }
}

/// Fetches and parses `venue`'s instrument list, then its detail requests if it has any
/// ([`DETAIL_CONCURRENCY`] at a time), with the same client as the drivers (rustls, verified
/// certificates) and a `timeout` for each whole request. Sorted, each symbol once. A failure
/// of any request, or an answer that cannot be read, is an error naming its URL; the requests
/// still in flight are then dropped.
///
/// Nothing is retried: the caller is a person at a terminal or a check before start-up, and
/// an answer now is worth more than one in a minute.
pub async fn fetch_instruments(
    venue: &dyn InstrumentsVenue,
    timeout: Duration,
) -> Result<Vec<Symbol>, ExchangeError> {
    let client = default_client()?;
    let req = venue.instruments_request();
    let url = req.url.as_str().to_owned();
    let body = get(&client, req, timeout).await?;
    let reading = |source: ParseError| ExchangeError::Other {
        context: format!("reading the instrument list from {url}"),
        source: Box::new(source),
    };
    let mut out = Vec::new();
    venue.parse_instruments(&body, &mut out).map_err(reading)?;
    let details = venue.detail_requests(&body).map_err(reading)?;
    if details.len() > MAX_DETAIL_REQUESTS {
        return Err(reading(ParseError::Other(format!(
            "{} instruments to ask about, more than the {MAX_DETAIL_REQUESTS} allowed",
            details.len()
        ))));
    }
    let client = &client;
    let mut answers = futures::stream::iter(details)
        .map(|req| async move {
            let url = req.url.as_str().to_owned();
            let body = get(client, req, timeout).await?;
            let mut found = Vec::new();
            venue
                .parse_detail(&body, &mut found)
                .map_err(|e| ExchangeError::Other {
                    context: format!("reading the instrument details from {url}"),
                    source: Box::new(e),
                })?;
            Ok::<_, ExchangeError>(found)
        })
        .buffer_unordered(DETAIL_CONCURRENCY);
    // One answer per request: as many turns as requests, at most.
    while let Some(found) = answers.try_next().await? {
        out.extend(found);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One GET of `req` with `client`: the body of a 2xx answer, or an error naming the URL.
async fn get(
    client: &reqwest::Client,
    req: HttpRequest,
    timeout: Duration,
) -> Result<bytes::Bytes, ExchangeError> {
    let url = req.url.as_str().to_owned();
    let mut builder = client.get(req.url).timeout(timeout);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let resp = match builder.send().await {
        Ok(resp) => resp,
        Err(source) => return Err(ExchangeError::Http { url, source }),
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(ExchangeError::Status {
            status,
            url,
            retry_after: None,
        });
    }
    resp.bytes()
        .await
        .map_err(|source| ExchangeError::Http { url, source })
}
