//! GET requests with retries, and the walk back through a venue's pages to the last seen
//! trade. Shared by the poll driver and the stream driver's backfill.

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Cursor, ExchangeContext, ExchangeStats, HttpRequest, HttpResponse};
use super::{PollRequest, PollVenue};
use crate::error::ExchangeError;
use crate::model::{Symbol, Timestamp, Trade};
use crate::writer::ErrorChain;

/// The longest `Retry-After` honoured as given; longer asks are capped so that a typo on the
/// venue's side cannot park the feed for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long a batch may still take to enter the pipeline once shutdown began.
const SEND_GRACE: Duration = Duration::from_secs(2);

/// What a fetch came to.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The trades newer than the cursor, ascending, without repeats (possibly none).
    Trades(Vec<Trade>),
    /// Nothing usable this time (the failure was logged and counted).
    Skipped,
    /// Shutdown began.
    Cancelled,
}

/// An HTTP answer with a 2xx status.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

enum Got {
    Answer(Answer),
    Skipped,
    Cancelled,
}

/// Makes a venue's requests: per-request timeout, retries of 429/5xx/transport failures with
/// backoff (or the venue's `Retry-After`), and shutdown at every wait.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    /// The exchange's registry name, for logs.
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) client: reqwest::Client,
    /// A fresh copy is used for every request, so one bad request does not slow the next.
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Duration,
    /// Tries per request, the first included.
    pub(crate) attempts: usize,
}

/// The client used when the caller gave none: rustls, certificates verified.
pub(crate) fn default_client() -> Result<reqwest::Client, ExchangeError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("crypto-feeder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ExchangeError::Other {
            context: "building the HTTP client".into(),
            source: Box::new(e),
        })
}

/// Waits `delay` unless shutdown begins first; false when it did.
pub(crate) async fn sleep_or_cancel(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Sends a batch into the pipeline. If shutdown begins while the pipeline is full, the batch
/// still gets a short grace to go in, so trades already read are not thrown away.
pub(crate) async fn send_batch(
    ctx: &ExchangeContext,
    name: &str,
    trades: Vec<Trade>,
) -> Result<(), ExchangeError> {
    if trades.is_empty() {
        return Ok(());
    }
    let send = ctx.sink.send(trades);
    tokio::pin!(send);
    tokio::select! {
        r = &mut send => r,
        _ = ctx.shutdown.cancelled() => match tokio::time::timeout(SEND_GRACE, send).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(exchange = name, "pipeline full at shutdown: dropped a batch");
                Ok(())
            }
        },
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

impl Fetcher {
    /// GETs `req`, retrying what can be retried.
    async fn get(&self, req: &HttpRequest, ctx: &ExchangeContext) -> Got {
        let name = &*self.name;
        let url = req.url.as_str();
        let mut backoff = self.backoff.clone();
        let attempts = self.attempts.max(1);
        for attempt in 1..=attempts {
            let mut builder = self.client.get(req.url.clone()).timeout(self.timeout);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            let call = async {
                let resp = builder.send().await?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            };
            let result = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Got::Cancelled,
                r = call => r,
            };
            let delay = match result {
                Ok((status, headers, body)) if (200..300).contains(&status) => {
                    return Got::Answer(Answer {
                        status,
                        headers,
                        body,
                    });
                }
                Ok((status, headers, _)) if status == 429 || status >= 500 => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    let asked = retry_after(&headers);
                    let wait = asked.unwrap_or_else(|| backoff.next_delay());
                    let err = ExchangeError::Status {
                        status,
                        url: url.to_owned(),
                        retry_after: asked,
                    };
                    tracing::warn!(exchange = name, error = %err, attempt, ?wait, "request failed, will retry");
                    wait
                }
                Ok((status, headers, _)) => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    let err = ExchangeError::Status {
                        status,
                        url: url.to_owned(),
                        retry_after: retry_after(&headers),
                    };
                    tracing::warn!(exchange = name, error = %err, "request refused, skipped");
                    return Got::Skipped;
                }
                Err(source) => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    let wait = backoff.next_delay();
                    let err = ExchangeError::Http {
                        url: url.to_owned(),
                        source,
                    };
                    tracing::warn!(
                        exchange = name,
                        error = %ErrorChain(&err),
                        attempt,
                        ?wait,
                        "request failed, will retry"
                    );
                    wait
                }
            };
            if attempt == attempts {
                break;
            }
            if !sleep_or_cancel(delay, &ctx.shutdown).await {
                return Got::Cancelled;
            }
        }
        tracing::warn!(
            exchange = name,
            url,
            attempts,
            "request still failing, skipped"
        );
        Got::Skipped
    }

    /// The trades of `symbol` newer than `cursor`, ascending and without repeats.
    ///
    /// Without a cursor only the newest page is read. With one, older pages are read while a
    /// whole page is newer than the cursor, up to the venue's `max_pages`; what was collected
    /// is returned even when the walk stops early (a warning says a gap may remain).
    pub(crate) async fn fetch_since<P: PollVenue + ?Sized>(
        &self,
        venue: &P,
        symbol: &Symbol,
        cursor: Option<&Cursor>,
        ctx: &ExchangeContext,
    ) -> Result<Fetched, ExchangeError> {
        let name = &*self.name;
        let mut collected: Vec<Trade> = Vec::new();
        let mut page: Option<String> = None;
        let mut pages = 0usize;
        let max_pages = venue.max_pages().max(1);
        loop {
            pages += 1;
            let req = match venue.trades_request(
                symbol,
                PollRequest {
                    last_seen: cursor,
                    page: page.as_deref(),
                },
            ) {
                Ok(r) => r,
                Err(e) if e.is_terminal() => return Err(e),
                Err(e) => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    tracing::warn!(exchange = name, %symbol, error = %e, "could not build a request");
                    return Ok(partial(collected, pages));
                }
            };
            let answer = match self.get(&req, ctx).await {
                Got::Answer(a) => a,
                Got::Cancelled => return Ok(Fetched::Cancelled),
                Got::Skipped if pages == 1 => return Ok(Fetched::Skipped),
                Got::Skipped => return Ok(partial(collected, pages)),
            };
            let resp = HttpResponse {
                status: answer.status,
                headers: &answer.headers,
                body: &answer.body,
            };
            let start = collected.len();
            let parsed = venue.parse_trades(symbol, &resp, Timestamp::now(), &mut collected);
            let next = match parsed {
                Ok(p) => p,
                Err(e) => {
                    ctx.parse_error(name, &e, &answer.body);
                    collected.truncate(start);
                    if pages == 1 {
                        return Ok(Fetched::Skipped);
                    }
                    return Ok(partial(collected, pages));
                }
            };
            let on_page = collected.len() - start;
            if let Some(c) = cursor {
                let mut i = start;
                // Keep only what is newer than the cursor, in place.
                collected.retain(|t| {
                    let keep = i < start || c.is_older_than(t);
                    i += 1;
                    keep
                });
            }
            let all_newer = collected.len() - start == on_page;
            let Some(older) = next.older else { break };
            if cursor.is_none() || !all_newer || on_page == 0 {
                break;
            }
            if pages >= max_pages {
                tracing::warn!(
                    exchange = name,
                    %symbol,
                    pages,
                    "last seen trade not reached within max_pages: a gap may remain"
                );
                break;
            }
            page = Some(older);
        }
        Ok(Fetched::Trades(sort_unique(collected)))
    }
}

fn partial(collected: Vec<Trade>, pages: usize) -> Fetched {
    if !collected.is_empty() {
        tracing::warn!(
            pages,
            "paging stopped early: a gap may remain before these trades"
        );
    }
    Fetched::Trades(sort_unique(collected))
}

/// Orders the trades of one symbol oldest first (by numeric id when every id is a number,
/// else by time then id) and drops repeats.
pub(crate) fn sort_unique(mut trades: Vec<Trade>) -> Vec<Trade> {
    if trades.len() < 2 {
        return trades;
    }
    // One key for the whole batch keeps the order total, which `sort` requires.
    if trades.iter().all(|t| t.trade_id.as_number().is_some()) {
        trades.sort_by_cached_key(|t| t.trade_id.as_number());
    } else {
        trades.sort_by(|a, b| {
            (a.timestamp, a.trade_id.as_str()).cmp(&(b.timestamp, b.trade_id.as_str()))
        });
    }
    trades.dedup_by(|a, b| a.trade_id == b.trade_id);
    trades
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Side;

    fn trade(id: &str, secs: i64) -> Trade {
        Trade {
            exchange: "x".into(),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: id.into(),
            price: 1.into(),
            amount: 1.into(),
            side: Side::Buy,
            timestamp: Timestamp::parse_rfc3339(&format!("2024-01-01T00:00:{secs:02}Z")).unwrap(),
            received_at: Timestamp::parse_rfc3339("2024-01-01T00:01:00Z").unwrap(),
        }
    }

    fn ids(trades: &[Trade]) -> Vec<&str> {
        trades.iter().map(|t| t.trade_id.as_str()).collect()
    }

    #[test]
    fn numeric_ids_sort_by_value_and_repeats_go() {
        let got = sort_unique(vec![
            trade("10", 1),
            trade("9", 2),
            trade("10", 1),
            trade("100", 0),
        ]);
        assert_eq!(ids(&got), ["9", "10", "100"]);
    }

    #[test]
    fn mixed_ids_sort_by_time() {
        let got = sort_unique(vec![
            trade("b", 3),
            trade("7", 1),
            trade("a", 2),
            trade("b", 3),
        ]);
        assert_eq!(ids(&got), ["7", "a", "b"]);
    }

    #[test]
    fn retry_after_reads_seconds_and_caps() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
