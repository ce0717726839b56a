//! GET requests with retries, and the walks through a venue's pages that fill a symbol from
//! its last seen trade. Shared by the poll driver and the stream driver's backfill.

use std::time::Duration;

use bytes::Bytes;

use super::HttpResponse;
use super::{sleep_or_cancel, Backoff, Cursor, ExchangeContext, ExchangeStats, HttpRequest};
use super::{PollRequest, PollVenue};
use crate::error::ErrorChain;
use crate::error::ExchangeError;
use crate::model::{Gap, GapReason, Symbol, Timestamp, Trade, TradeId};

/// The longest `Retry-After` honoured as given; longer asks are capped so that a typo on the
/// venue's side cannot park the feed for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What a fill came to.
#[derive(Debug)]
pub(crate) enum Filled {
    /// Caught up, after delivering this many trades.
    Done { delivered: u64 },
    /// A request kept failing: trades up to `resume` were delivered, and the rest must be
    /// fetched from there later (`None`: there was no starting point).
    Stopped {
        delivered: u64,
        resume: Option<Cursor>,
    },
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

/// What one attempt of a request came to.
enum Judged {
    Done(Got),
    Retry(Duration),
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
    /// Where requests and answers are recorded, if anywhere.
    pub(crate) capture: Option<super::Capture>,
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
        let mut backoff = self.backoff.clone();
        let attempts = self.attempts.max(1);
        for attempt in 1..=attempts {
            let result = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Got::Cancelled,
                r = self.call(req) => r,
            };
            let delay = match self.judge(req, result, attempt, &mut backoff, ctx) {
                Judged::Done(got) => return got,
                Judged::Retry(delay) => delay,
            };
            if attempt == attempts {
                break;
            }
            if !sleep_or_cancel(delay, &ctx.shutdown).await {
                return Got::Cancelled;
            }
        }
        tracing::warn!(
            exchange = &*self.name,
            url = req.url.as_str(),
            attempts,
            "request still failing, skipped"
        );
        Got::Skipped
    }

    /// One GET: status, headers and body.
    async fn call(
        &self,
        req: &HttpRequest,
    ) -> Result<(u16, http::HeaderMap, Bytes), reqwest::Error> {
        let mut builder = self.client.get(req.url.clone()).timeout(self.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let resp = builder.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok((status, headers, body))
    }

    /// What an attempt came to: an answer, a refusal (skipped), or a wait before the next
    /// try (429, 5xx and transport failures), each failure counted and logged.
    fn judge(
        &self,
        req: &HttpRequest,
        result: Result<(u16, http::HeaderMap, Bytes), reqwest::Error>,
        attempt: usize,
        backoff: &mut Backoff,
        ctx: &ExchangeContext,
    ) -> Judged {
        let name = &*self.name;
        let url = req.url.as_str();
        let (status, headers, body) = match result {
            Ok(r) => r,
            Err(source) => {
                let wait = backoff.next_delay();
                let err = ExchangeError::Http {
                    url: url.to_owned(),
                    source,
                };
                ctx.stats.failed(&err);
                tracing::warn!(exchange = name, error = %ErrorChain(&err), attempt, ?wait, "request failed, will retry");
                return Judged::Retry(wait);
            }
        };
        if (200..300).contains(&status) {
            ExchangeStats::incr(&ctx.stats.contacts);
            return Judged::Done(Got::Answer(Answer {
                status,
                headers,
                body,
            }));
        }
        let asked = retry_after(&headers);
        let err = ExchangeError::Status {
            status,
            url: url.to_owned(),
            retry_after: asked,
        };
        ctx.stats.failed(&err);
        if status == 429 || status >= 500 {
            let wait = asked.unwrap_or_else(|| backoff.next_delay());
            tracing::warn!(exchange = name, error = %err, attempt, ?wait, "request failed, will retry");
            Judged::Retry(wait)
        } else {
            tracing::warn!(exchange = name, error = %err, "request refused, skipped");
            Judged::Done(Got::Skipped)
        }
    }

    /// Delivers every trade of `symbol` newer than `from` into the pipeline, oldest first,
    /// until the venue's newest trade or `until` is reached.
    ///
    /// Where the venue pages forward ([`PollVenue::forward_request`]), pages are walked from
    /// `from` and each is delivered as it arrives: no page limit, memory bounded by one page,
    /// and the cursor (and so a restart) never passes a trade not yet delivered. Otherwise
    /// the venue's newest pages are walked back towards `from` (up to
    /// [`PollVenue::max_pages`]); a hole it cannot reach is counted and reported as a gap.
    /// Without `from`, only the newest page is read.
    pub(crate) async fn fill<P: PollVenue + ?Sized>(
        &self,
        venue: &P,
        symbol: &Symbol,
        from: Option<&Cursor>,
        until: Option<&TradeId>,
        ctx: &ExchangeContext,
    ) -> Result<Filled, ExchangeError> {
        match from {
            Some(from) if venue.forward_request(symbol, from).is_some() => {
                self.walk_forward(venue, symbol, from, until, ctx).await
            }
            _ => self.walk_back(venue, symbol, from, ctx).await,
        }
    }

    async fn walk_forward<P: PollVenue + ?Sized>(
        &self,
        venue: &P,
        symbol: &Symbol,
        from: &Cursor,
        until: Option<&TradeId>,
        ctx: &ExchangeContext,
    ) -> Result<Filled, ExchangeError> {
        let mut cursor = from.clone();
        let mut delivered = 0u64;
        let stopped = |delivered, resume: &Cursor| Filled::Stopped {
            delivered,
            resume: Some(resume.clone()),
        };
        for n in 0.. {
            if n > 0 && !sleep_or_cancel(venue.request_spacing(), &ctx.shutdown).await {
                return Ok(Filled::Cancelled);
            }
            let req = venue
                .forward_request(symbol, &cursor)
                .unwrap_or_else(|| Err(ExchangeError::Config("forward paging ended".into())));
            let mut trades = match self.page(venue, symbol, req, ctx).await? {
                Paged::Trades { trades, .. } => trades,
                Paged::Failed => return Ok(stopped(delivered, &cursor)),
                Paged::Cancelled => return Ok(Filled::Cancelled),
            };
            trades.retain(|t| cursor.is_older_than(t) && t.trade_id != cursor.trade_id);
            let trades = sort_unique(trades);
            let Some(last) = trades.last() else {
                return Ok(Filled::Done { delivered });
            };
            let reached =
                until.is_some_and(|u| last.trade_id.cmp_numeric(u).is_some_and(|o| o.is_ge()));
            cursor = Cursor {
                trade_id: last.trade_id.clone(),
                timestamp: last.timestamp,
            };
            delivered += trades.len() as u64;
            ctx.backfilled(symbol, trades.len() as u64);
            ctx.deliver(&self.name, trades).await?;
            if reached || ctx.shutdown.is_cancelled() {
                break;
            }
        }
        Ok(Filled::Done { delivered })
    }

    /// Walks back from the newest page towards `from`, then delivers what it collected.
    async fn walk_back<P: PollVenue + ?Sized>(
        &self,
        venue: &P,
        symbol: &Symbol,
        from: Option<&Cursor>,
        ctx: &ExchangeContext,
    ) -> Result<Filled, ExchangeError> {
        let name = &*self.name;
        let mut collected: Vec<Trade> = Vec::new();
        let mut page: Option<String> = None;
        let max_pages = venue.max_pages().max(1);
        let mut reached = from.is_none();
        for pages in 1..=max_pages {
            if pages > 1 && !sleep_or_cancel(venue.request_spacing(), &ctx.shutdown).await {
                return Ok(Filled::Cancelled);
            }
            let req = venue.trades_request(
                symbol,
                PollRequest {
                    last_seen: from,
                    page: page.as_deref(),
                },
            );
            let start = collected.len();
            let older = match self.page(venue, symbol, req, ctx).await? {
                Paged::Trades { trades, older } => {
                    collected.extend(trades);
                    older
                }
                Paged::Cancelled => return Ok(Filled::Cancelled),
                Paged::Failed if pages == 1 => {
                    return Ok(Filled::Stopped {
                        delivered: 0,
                        resume: from.cloned(),
                    })
                }
                Paged::Failed => break,
            };
            let on_page = collected.len() - start;
            if let Some(c) = from {
                let mut i = start;
                // Keep only what is newer than the cursor, in place.
                collected.retain(|t| {
                    let keep = i < start || c.is_older_than(t);
                    i += 1;
                    keep
                });
            }
            // A page that reaches the cursor (or an empty one) ends the walk.
            if collected.len() - start < on_page || on_page == 0 {
                reached = true;
            }
            match older {
                Some(older) if !reached => page = Some(older),
                _ => break,
            }
        }
        let trades = sort_unique(collected);
        if let (Some(from), Some(first), false) = (from, trades.first(), reached) {
            ctx.sink.send_gap(unreached(symbol, from, first)).await?;
        }
        let delivered = trades.len() as u64;
        if from.is_some() {
            ctx.backfilled(symbol, delivered);
        }
        ctx.deliver(name, trades).await?;
        Ok(Filled::Done { delivered })
    }

    /// Gets and parses one page.
    async fn page<P: PollVenue + ?Sized>(
        &self,
        venue: &P,
        symbol: &Symbol,
        req: Result<HttpRequest, ExchangeError>,
        ctx: &ExchangeContext,
    ) -> Result<Paged, ExchangeError> {
        let name = &*self.name;
        let req = match req {
            Ok(r) => r,
            Err(e) if e.is_terminal() => return Err(e),
            Err(e) => {
                ctx.stats.failed(&e);
                tracing::warn!(exchange = name, %symbol, error = %ErrorChain(&e), "could not build a request");
                return Ok(Paged::Failed);
            }
        };
        let conn = self.capture.as_ref().map(|c| c.request(symbol, &req.url));
        let answer = match self.get(&req, ctx).await {
            Got::Answer(a) => a,
            Got::Cancelled => return Ok(Paged::Cancelled),
            Got::Skipped => return Ok(Paged::Failed),
        };
        let now = Timestamp::now();
        if let (Some(c), Some(conn)) = (&self.capture, conn) {
            c.response(
                conn,
                symbol,
                answer.status,
                &answer.headers,
                &answer.body,
                now,
            );
        }
        let resp = HttpResponse {
            status: answer.status,
            headers: &answer.headers,
            body: &answer.body,
        };
        let mut trades = Vec::new();
        match venue.parse_trades(symbol, &resp, now, &mut trades) {
            Ok(p) => Ok(Paged::Trades {
                trades,
                older: p.older,
            }),
            Err(e) => {
                ctx.parse_error(name, &e, &answer.body);
                Ok(Paged::Failed)
            }
        }
    }
}

/// The hole between the last trade seen and the oldest one a walk back reached.
fn unreached(symbol: &Symbol, from: &Cursor, first: &Trade) -> Gap {
    Gap {
        exchange: first.exchange.clone(),
        symbol: symbol.clone(),
        after_trade_id: from.trade_id.clone(),
        before_trade_id: Some(first.trade_id.clone()),
        from: from.timestamp,
        to: Some(first.timestamp),
        reason: GapReason::VenueLimit,
    }
}

/// One page, parsed.
enum Paged {
    Trades {
        trades: Vec<Trade>,
        older: Option<String>,
    },
    /// Nothing usable (the failure was logged and counted).
    Failed,
    Cancelled,
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
