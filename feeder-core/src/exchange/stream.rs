//! The WebSocket stream driver: connects, hands each connection to a [`Session`], and
//! reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::capture::{self, Capture};
use super::rest::{default_client, Fetcher};
use super::session::{End, Gaps, Session, Setup, Ws};
use super::PollVenue;
use super::StreamVenue;
use super::{sleep_or_cancel, Backoff, Completeness, Exchange, ExchangeContext, ExchangeStats};
use crate::error::{ErrorChain, ExchangeError};
use crate::model::{Gap, GapReason};
use crate::observe::Link;

/// The largest message or frame accepted; venues' snapshots stay far below it, and a bound
/// keeps a broken peer from exhausting memory.
const MAX_MESSAGE: usize = 16 << 20;

/// Tries per backfill request (the first included): backfill runs between frames, so it
/// must not retry for long.
const BACKFILL_ATTEMPTS: usize = 3;

/// Runs a [`StreamVenue`]: connects, subscribes, answers pings, sends keep-alives, detects
/// stale connections, reconnects with backoff and, given a [`PollVenue`], backfills over REST
/// what was missed while disconnected.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use feeder_core::exchange::{PollVenue, StreamExchange, StreamVenue};
/// # fn demo<V: StreamVenue, R: PollVenue>(venue: V, rest: R) {
/// let exchange = StreamExchange::new("myvenue", Arc::new(venue)).with_backfill(Arc::new(rest));
/// # let _ = exchange; }
/// ```
pub struct StreamExchange<V> {
    name: Arc<str>,
    venue: Arc<V>,
    backfill: Option<Arc<dyn PollVenue>>,
    backoff: Backoff,
    connect_timeout: Duration,
    request_timeout: Duration,
    client: Option<reqwest::Client>,
    /// Overrides the venue's stale timeout when set (from the exchange's config).
    stale_timeout: Option<Duration>,
    capture: Option<Capture>,
}

impl<V: StreamVenue> StreamExchange<V> {
    /// Streams from `venue`, reporting trades as exchange `name`.
    pub fn new(name: &str, venue: Arc<V>) -> Self {
        Self {
            name: name.into(),
            venue,
            backfill: None,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            client: None,
            stale_timeout: None,
            capture: None,
        }
    }

    /// Records the raw traffic (frames, backfill requests and answers) into `capture`.
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Overrides the venue's stale timeout: reconnect when nothing arrived for this long.
    /// `None` keeps the venue's own.
    pub fn with_stale_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stale_timeout = timeout;
        self
    }

    fn stale_timeout(&self) -> Duration {
        self.stale_timeout
            .unwrap_or_else(|| self.venue.stale_timeout())
    }

    /// Backfills over this venue's REST API after every reconnect, and when a venue reports a
    /// trade-id gap ([`Frame::Gap`](super::Frame::Gap)).
    pub fn with_backfill(mut self, venue: Arc<dyn PollVenue>) -> Self {
        self.backfill = Some(venue);
        self
    }

    /// The backoff between connection attempts (and between retries of backfill requests).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long connecting (TCP, TLS and WebSocket handshake) may take; 10 s by default.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The timeout of each backfill HTTP request; 10 s by default.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The HTTP client for backfill requests. By default one with rustls and verified
    /// certificates is built for each run.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    fn fetcher(&self) -> Result<Fetcher, ExchangeError> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => default_client()?,
        };
        Ok(Fetcher {
            name: self.name.clone(),
            client,
            backoff: self.backoff.clone(),
            timeout: self.request_timeout,
            attempts: BACKFILL_ATTEMPTS,
            capture: self.capture.clone(),
        })
    }

    /// Opens a connection; `Ok(None)` when shutdown began first.
    async fn connect(
        &self,
        url: &Url,
        shutdown: &CancellationToken,
    ) -> Result<Option<Ws>, ExchangeError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connect = tokio::time::timeout(
            self.connect_timeout,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = connect => r,
        };
        match result {
            Ok(Ok((ws, _))) => Ok(Some(ws)),
            Ok(Err(e)) => Err(e.into()),
            Err(elapsed) => Err(ExchangeError::Other {
                context: format!("connecting to {url} took over {:?}", self.connect_timeout),
                source: Box::new(elapsed),
            }),
        }
    }
}

#[async_trait]
impl<V: StreamVenue> Exchange for StreamExchange<V> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let ctx = capture::attach(ctx, self.capture.as_ref());
        let url = self.checked_url(&ctx)?;
        let fetcher = match self.backfill {
            Some(_) => Some(self.fetcher()?),
            None => None,
        };
        let mut between = Between {
            backoff: self.backoff.clone(),
            gaps: Gaps::new(),
            // A restarted run resumes where the previous one stopped.
            backfill_due: ctx.symbols.iter().any(|s| ctx.cursors.get(s).is_some()),
            asked_without_data: false,
        };
        loop {
            let Some(ws) = self
                .connect_retrying(&url, &ctx, &mut between.backoff)
                .await
            else {
                return Ok(());
            };
            let tap = self.capture.as_ref().map(|c| (c, c.connected(&url)));
            let setup = Setup {
                name: &self.name,
                venue: &*self.venue,
                rest: self.backfill.as_deref().zip(fetcher.as_ref()),
                stale: self.stale_timeout(),
                ctx: &ctx,
                backoff: &mut between.backoff,
                gaps: &mut between.gaps,
                capture: tap,
            };
            let (end, delivered) = Session::new(setup, ws).run(between.backfill_due).await;
            if let Some((c, conn)) = tap {
                c.disconnected(conn, &capture::ending(&end));
            }
            ctx.stats.link.set(Link::Down);
            let wait = match end {
                End::Shutdown => return record_unfilled(&ctx, &self.name, between.gaps).await,
                End::Fatal(e) => {
                    let _ = record_unfilled(&ctx, &self.name, between.gaps).await;
                    return Err(e);
                }
                End::Reconnect => between.after_reconnect_request(&self.name, &ctx, delivered),
                End::Failed(e) => Some(between.after_failure(&self.name, &ctx, &e)),
            };
            // Until the next connection has filled the hole, the streams are behind.
            for symbol in &ctx.symbols {
                ctx.sink
                    .progress(&self.name, symbol, Completeness::Behind)
                    .await?;
            }
            if let Some(wait) = wait {
                if !sleep_or_cancel(wait, &ctx.shutdown).await {
                    return Ok(());
                }
            }
            between.backfill_due = true;
        }
    }
}

/// What a run keeps between its connections.
struct Between {
    backoff: Backoff,
    /// Backfills that have not completed, by symbol, with where they must start; tried again
    /// while streaming until they do.
    gaps: Gaps,
    /// Whether the next connection backfills before it streams.
    backfill_due: bool,
    /// A venue that asks to reconnect again and again without sending data gets backoff.
    asked_without_data: bool,
}

impl Between {
    /// The wait before reconnecting, when the venue asked for a new connection.
    fn after_reconnect_request(
        &mut self,
        name: &str,
        ctx: &ExchangeContext,
        delivered: bool,
    ) -> Option<Duration> {
        ExchangeStats::incr(&ctx.stats.reconnects);
        tracing::info!(exchange = name, "the venue asked to reconnect");
        let again = !delivered && self.asked_without_data;
        self.asked_without_data = !delivered;
        again.then(|| self.backoff.next_delay())
    }

    /// The wait before reconnecting after a failed connection.
    fn after_failure(&mut self, name: &str, ctx: &ExchangeContext, e: &ExchangeError) -> Duration {
        ctx.stats.failed(e);
        ExchangeStats::incr(&ctx.stats.reconnects);
        self.asked_without_data = false;
        let wait = self.backoff.next_delay();
        tracing::warn!(exchange = name, error = %ErrorChain(e), ?wait, "connection lost, reconnecting");
        wait
    }
}

impl<V: StreamVenue> StreamExchange<V> {
    /// Connects, retrying with backoff; `None` when shutdown began first.
    async fn connect_retrying(
        &self,
        url: &Url,
        ctx: &ExchangeContext,
        backoff: &mut Backoff,
    ) -> Option<Ws> {
        let name = &*self.name;
        loop {
            ctx.stats.link.set(Link::Connecting);
            match self.connect(url, &ctx.shutdown).await {
                Ok(Some(ws)) => {
                    tracing::info!(exchange = name, %url, "connected");
                    ExchangeStats::incr(&ctx.stats.contacts);
                    return Some(ws);
                }
                Ok(None) => return None,
                Err(e) => {
                    ctx.stats.failed(&e);
                    ctx.stats.link.set(Link::Down);
                    let wait = backoff.next_delay();
                    tracing::warn!(exchange = name, %url, error = %ErrorChain(&e), ?wait, "connect failed");
                    if !sleep_or_cancel(wait, &ctx.shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The venue's URL for these symbols, once the settings are known to make sense.
    fn checked_url(&self, ctx: &ExchangeContext) -> Result<Url, ExchangeError> {
        let name = &*self.name;
        let url = self.venue.url(&ctx.symbols)?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(ExchangeError::Config(format!(
                "{name}: not a WebSocket URL: {url}"
            )));
        }
        if self.stale_timeout().is_zero() || self.venue.ping().is_some_and(|p| p.every.is_zero()) {
            return Err(ExchangeError::Config(format!(
                "{name}: the stale timeout and the keep-alive period must be above zero"
            )));
        }
        Ok(url)
    }
}

/// How long the gaps left at the end of a run may take to enter the pipeline.
const GAP_GRACE: Duration = Duration::from_secs(2);

/// Records as gaps the backfills that never completed: the stream went on past them, so a
/// restart would not fill them either.
async fn record_unfilled(
    ctx: &ExchangeContext,
    exchange: &Arc<str>,
    gaps: Gaps,
) -> Result<(), ExchangeError> {
    for (symbol, after) in gaps {
        let exchange = exchange.clone();
        let gap = Gap {
            exchange,
            symbol,
            after_trade_id: after.trade_id,
            before_trade_id: None,
            from: after.timestamp,
            to: None,
            reason: GapReason::BackfillFailed,
        };
        match tokio::time::timeout(GAP_GRACE, ctx.sink.send_gap(gap)).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::error!("pipeline full at the end of the run: a gap could not be recorded")
            }
        }
    }
    Ok(())
}
