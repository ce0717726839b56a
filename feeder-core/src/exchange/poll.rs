//! The REST poll driver.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::MissedTickBehavior;

use super::capture::{self, Capture};
use super::rest::{default_client, Fetcher, Filled};
use super::{Backoff, Completeness, Exchange, ExchangeContext, PollVenue};
use crate::error::ExchangeError;
use crate::model::Timestamp;
use crate::observe::Link;

/// Tries per request by default (the first included) before a symbol is skipped for a tick.
pub(crate) const DEFAULT_ATTEMPTS: usize = 5;

/// Runs a [`PollVenue`]: polls every symbol at a fixed interval, walks back through pages to
/// the last seen trade (or forward from it, where the venue can), retries rate limits and
/// server errors, and sends only new trades.
///
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # use feeder_core::exchange::{PollExchange, PollVenue};
/// # fn demo<V: PollVenue>(venue: V) {
/// let exchange = PollExchange::new("myvenue", Arc::new(venue), Duration::from_secs(10))
///     .with_timeout(Duration::from_secs(5));
/// # let _ = exchange; }
/// ```
pub struct PollExchange<V> {
    name: Arc<str>,
    venue: Arc<V>,
    interval: Duration,
    timeout: Duration,
    backoff: Backoff,
    attempts: usize,
    client: Option<reqwest::Client>,
    capture: Option<Capture>,
}

impl<V: PollVenue> PollExchange<V> {
    /// Polls `venue` every `interval`, reporting trades as exchange `name`.
    pub fn new(name: &str, venue: Arc<V>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            venue,
            interval,
            timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            attempts: DEFAULT_ATTEMPTS,
            client: None,
            capture: None,
        }
    }

    /// Records every request and answer into `capture`.
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    /// The timeout of each HTTP request (10 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The backoff between retries of a failed request (used when the venue gives no
    /// `Retry-After`).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How many times a request is tried (the first included) before its symbol is skipped
    /// until the next tick; 5 by default, at least 1.
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The HTTP client to use (shared connection pool, proxy, ...). By default one with
    /// rustls and verified certificates is built for each run.
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
            timeout: self.timeout,
            attempts: self.attempts,
            capture: self.capture.clone(),
        })
    }
}

#[async_trait]
impl<V: PollVenue> Exchange for PollExchange<V> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let ctx = capture::attach(ctx, self.capture.as_ref());
        let name = &*self.name;
        if self.interval.is_zero() {
            return Err(ExchangeError::Config(format!(
                "{name}: the poll interval must be above zero"
            )));
        }
        let fetcher = self.fetcher()?;
        let mut ticks = tokio::time::interval(self.interval);
        // After a slow poll, wait a whole interval again rather than firing a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::info!(exchange = name, interval = ?self.interval, symbols = ctx.symbols.len(), "polling");
        // Fresh while polls are answered: a few intervals, plus the time one request may take.
        ctx.stats
            .link
            .set_fresh_within(self.interval * 3 + self.timeout);
        ctx.stats.link.set(Link::Connecting);
        // A polled stream is complete only up to its last answered poll.
        for symbol in &ctx.symbols {
            ctx.sink
                .progress(&self.name, symbol, Completeness::Behind)
                .await?;
        }
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            for symbol in &ctx.symbols {
                let cursor = ctx.cursors.get(symbol);
                let asked = Timestamp::now();
                let filled = fetcher
                    .fill(&*self.venue, symbol, cursor.as_ref(), None, &ctx)
                    .await?;
                match filled {
                    Filled::Cancelled => return Ok(()),
                    // The next tick goes on from the cursor, which never passes a trade that
                    // was not delivered.
                    Filled::Stopped { .. } => {}
                    Filled::Done { delivered } => {
                        ctx.stats.link.alive(Timestamp::now());
                        tracing::debug!(exchange = name, %symbol, n = delivered, "polled");
                        let upto = Completeness::UpTo(asked);
                        ctx.sink.progress(&self.name, symbol, upto).await?;
                    }
                }
                if ctx.shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }
}
