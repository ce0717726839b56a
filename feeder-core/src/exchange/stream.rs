//! The WebSocket session driver.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::rest::{default_client, send_batch, sleep_or_cancel, Fetched, Fetcher};
use super::WsMessage;
use super::{Backoff, Exchange, ExchangeContext, ExchangeStats, Frame, PollVenue, StreamVenue};
use crate::error::ExchangeError;
use crate::model::{Symbol, Timestamp, Trade};
use crate::writer::ErrorChain;

/// The largest message or frame accepted; venues' snapshots stay far below it, and a bound
/// keeps a broken peer from exhausting memory.
const MAX_MESSAGE: usize = 16 << 20;

/// How long a send to the venue may take before the connection is declared dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a close frame may take to leave at shutdown or on a requested reconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Tries per backfill request (the first included): backfill runs between frames, so it
/// must not retry for long.
const BACKFILL_ATTEMPTS: usize = 3;

/// Most frames read back to back into one batch, so that keep-alives and shutdown are never
/// starved by a firehose.
const MAX_FRAMES_PER_BATCH: usize = 1024;

/// Most trades in one batch.
const MAX_BATCH: usize = 4096;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Symbols whose backfill failed, with the cursor it must start from.
type Gaps = std::collections::HashMap<Symbol, super::Cursor>;

/// How often a failed backfill is tried again while the stream runs.
const GAP_RETRY: Duration = Duration::from_secs(2);

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
}

/// How a session ended.
enum End {
    /// Shutdown began.
    Shutdown,
    /// The venue asked for a new connection.
    Reconnect { delivered: bool },
    /// The connection failed; retried with backoff.
    Failed(ExchangeError),
    /// Retrying cannot help.
    Fatal(ExchangeError),
}

/// Why a send did not happen.
enum SendFail {
    Cancelled,
    Error(ExchangeError),
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
        }
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
    /// trade-id gap ([`Frame::Gap`]).
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

    /// Backfills `symbols` from their cursors. `Ok(false)` when shutdown began.
    async fn backfill<'a>(
        &self,
        fetcher: &Fetcher,
        ctx: &ExchangeContext,
        symbols: impl IntoIterator<Item = &'a Symbol>,
        gaps: &mut Gaps,
    ) -> Result<bool, ExchangeError> {
        let Some(venue) = self.backfill.as_deref() else {
            return Ok(true);
        };
        let name = &*self.name;
        for symbol in symbols {
            // An earlier backfill that failed left an older starting point: start there.
            let from = gaps
                .get(symbol)
                .cloned()
                .or_else(|| ctx.cursors.get(symbol));
            match fetcher
                .fetch_since(venue, symbol, from.as_ref(), ctx)
                .await?
            {
                Fetched::Cancelled => return Ok(false),
                Fetched::Skipped => {
                    tracing::warn!(exchange = name, %symbol, "backfill failed; will try again while streaming");
                    if let Some(from) = from {
                        gaps.entry(symbol.clone()).or_insert(from);
                    }
                }
                Fetched::Trades(trades) => {
                    gaps.remove(symbol);
                    let n = trades.len() as u64;
                    let from = from
                        .map(|c| c.trade_id.to_string())
                        .unwrap_or_else(|| "latest".into());
                    tracing::info!(exchange = name, %symbol, %from, n, "backfilled");
                    send_batch(ctx, name, trades).await?;
                    ctx.stats
                        .backfilled
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(!ctx.shutdown.is_cancelled())
    }

    /// Runs one connection until it ends.
    // `flush!` records the first delivery even just before a return, where nothing reads it.
    #[allow(unused_assignments)]
    async fn session(
        &self,
        mut ws: Ws,
        ctx: &ExchangeContext,
        backoff: &mut Backoff,
        backfill_due: bool,
        fetcher: Option<&Fetcher>,
        gaps: &mut Gaps,
    ) -> End {
        let name = &*self.name;
        for msg in self.venue.subscribe(&ctx.symbols) {
            match send(&mut ws, msg, &ctx.shutdown).await {
                Ok(()) => {}
                Err(SendFail::Cancelled) => return close(ws).await,
                Err(SendFail::Error(e)) => return End::Failed(e),
            }
        }
        // Subscribed first, so that nothing falls between the REST answer and the stream.
        if let (true, Some(f)) = (backfill_due, fetcher) {
            match self.backfill(f, ctx, &ctx.symbols, gaps).await {
                Ok(true) => {}
                Ok(false) => return close(ws).await,
                Err(e) => return End::Fatal(e),
            }
        }

        let stale = self.stale_timeout();
        // A quiet but healthy connection must answer a keep-alive before it counts as stale.
        let keepalive = self.venue.ping().map(|mut p| {
            p.every = p.every.min(stale / 2);
            p
        });
        let mut ping_timer = keepalive.as_ref().map(|p| {
            let mut t = tokio::time::interval_at(Instant::now() + p.every, p.every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let deadline = tokio::time::sleep(stale);
        tokio::pin!(deadline);
        let mut delivered = false;
        // Trades of the frames read back to back, sent on as one batch: one channel hop per
        // burst rather than per frame.
        let mut batch: Vec<Trade> = Vec::new();
        // For venues with consecutive ids: the last trade seen per symbol, to spot a jump.
        let consecutive = self.venue.ids_are_consecutive();
        let mut last_seen: LastSeen = ctx
            .symbols
            .iter()
            .filter_map(|s| {
                let c = ctx.cursors.get(s)?;
                let id = c.trade_id.as_number().unwrap_or(0);
                Some((s.clone(), (c, id)))
            })
            .collect();

        // Sends what `batch` holds; on the first data of a connection, resets the backoff.
        macro_rules! flush {
            () => {
                if !batch.is_empty() {
                    if !delivered {
                        // This connection works: the next failure starts again from a
                        // short wait.
                        delivered = true;
                        backoff.reset();
                    }
                    if let Err(e) = send_batch(ctx, name, std::mem::take(&mut batch)).await {
                        return End::Fatal(e);
                    }
                }
            };
        }

        let mut gap_timer = tokio::time::interval_at(Instant::now() + GAP_RETRY, GAP_RETRY);
        gap_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut next = tokio::select! {
                _ = ctx.shutdown.cancelled() => return close(ws).await,
                _ = &mut deadline => return End::Failed(ExchangeError::Stale(stale)),
                _ = gap_timer.tick(), if !gaps.is_empty() && fetcher.is_some() => {
                    let symbols: Vec<Symbol> = gaps.keys().cloned().collect();
                    if let Some(f) = fetcher {
                        match self.backfill(f, ctx, &symbols, gaps).await {
                            Ok(true) => {}
                            Ok(false) => return close(ws).await,
                            Err(e) => return End::Fatal(e),
                        }
                    }
                    // Frames waited while the REST calls ran; not a sign of a dead connection.
                    deadline.as_mut().reset(Instant::now() + stale);
                    continue;
                }
                _ = tick(&mut ping_timer) => {
                    if let Some(p) = &keepalive {
                        match send(&mut ws, p.message.clone(), &ctx.shutdown).await {
                            Ok(()) => {}
                            Err(SendFail::Cancelled) => return close(ws).await,
                            Err(SendFail::Error(e)) => return End::Failed(e),
                        }
                    }
                    continue;
                }
                msg = ws.next() => msg,
            };
            let mut budget = MAX_FRAMES_PER_BATCH;
            // Whether anything read in this round proves the feed alive.
            let mut alive = false;
            loop {
                let msg = match next {
                    None => {
                        flush!();
                        return End::Failed(ExchangeError::Closed(None));
                    }
                    Some(Err(e)) => {
                        flush!();
                        return End::Failed(e.into());
                    }
                    Some(Ok(m)) => m,
                };
                alive |= match &msg {
                    Message::Pong(_) => self.venue.pong_is_proof_of_life(),
                    Message::Frame(_) => false,
                    _ => true,
                };
                let frame = match &msg {
                    Message::Text(t) => self.parse(ctx, t.as_str().as_bytes(), &mut batch),
                    Message::Binary(b) => self.parse(ctx, b, &mut batch),
                    Message::Ping(_) => {
                        // The library queued the pong; flush so it leaves now, not with the
                        // next write (which may be many seconds away).
                        match with_timeout(ws.flush(), &ctx.shutdown).await {
                            Ok(()) => {}
                            Err(SendFail::Cancelled) => return close(ws).await,
                            Err(SendFail::Error(e)) => return End::Failed(e),
                        }
                        None
                    }
                    Message::Close(frame) => {
                        flush!();
                        let reason = frame.as_ref().map(|f| format!("{} {}", f.code, f.reason));
                        return End::Failed(ExchangeError::Closed(reason));
                    }
                    Message::Pong(_) | Message::Frame(_) => None,
                };
                match frame {
                    None | Some(Frame::Data) => {}
                    Some(Frame::Reply(reply)) => match send(&mut ws, reply, &ctx.shutdown).await {
                        Ok(()) => {}
                        Err(SendFail::Cancelled) => {
                            flush!();
                            return close(ws).await;
                        }
                        Err(SendFail::Error(e)) => {
                            flush!();
                            return End::Failed(e);
                        }
                    },
                    Some(Frame::Reconnect) => {
                        flush!();
                        let _ = close(ws).await;
                        return End::Reconnect { delivered };
                    }
                    Some(Frame::Gap {
                        symbol,
                        last_trade_id,
                    }) => {
                        flush!();
                        let behind = ctx.cursors.get(&symbol).is_some_and(|c| {
                            c.trade_id.cmp_numeric(&last_trade_id) == Some(Ordering::Less)
                        });
                        match fetcher {
                            Some(f) if behind => {
                                tracing::info!(exchange = name, %symbol, %last_trade_id, "gap reported, backfilling");
                                match self.backfill(f, ctx, [&symbol], gaps).await {
                                    Ok(true) => {}
                                    Ok(false) => return close(ws).await,
                                    Err(e) => return End::Fatal(e),
                                }
                            }
                            _ => {
                                tracing::debug!(exchange = name, %symbol, %last_trade_id, behind, "gap report")
                            }
                        }
                    }
                    Some(f @ (Frame::Ack | Frame::Heartbeat | Frame::Ignored)) => {
                        tracing::debug!(exchange = name, frame = ?f, "control frame");
                    }
                }
                budget -= 1;
                if budget == 0 || batch.len() >= MAX_BATCH {
                    break;
                }
                // More frames already read off the socket? Take them without waiting.
                match ws.next().now_or_never() {
                    Some(n) => next = n,
                    None => break,
                }
            }
            // Something arrived (and any backfill above has finished): the connection lives.
            if alive {
                deadline.as_mut().reset(Instant::now() + stale);
            }
            let jumped = consecutive && find_jumps(&batch, &mut last_seen, gaps);
            flush!();
            if let (true, Some(f)) = (jumped, fetcher) {
                let symbols: Vec<Symbol> = gaps.keys().cloned().collect();
                tracing::info!(exchange = name, ?symbols, "trade ids jumped, backfilling");
                match self.backfill(f, ctx, &symbols, gaps).await {
                    Ok(true) => {}
                    Ok(false) => return close(ws).await,
                    Err(e) => return End::Fatal(e),
                }
                deadline.as_mut().reset(Instant::now() + stale);
            }
        }
    }

    /// Parses one payload, appending its trades to `out`; `None` when it could not be parsed
    /// (counted, logged, and whatever it appended removed).
    fn parse(&self, ctx: &ExchangeContext, payload: &[u8], out: &mut Vec<Trade>) -> Option<Frame> {
        let before = out.len();
        match self.venue.parse(payload, Timestamp::now(), out) {
            Ok(frame) => Some(frame),
            Err(e) => {
                ctx.parse_error(&self.name, &e, payload);
                out.truncate(before);
                None
            }
        }
    }
}

#[async_trait]
impl<V: StreamVenue> Exchange for StreamExchange<V> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let name = &*self.name;
        let url = self.venue.url(&ctx.symbols)?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(ExchangeError::Config(format!(
                "{name}: not a WebSocket URL: {url}"
            )));
        }
        let stale = self.stale_timeout();
        if stale.is_zero() || self.venue.ping().is_some_and(|p| p.every.is_zero()) {
            return Err(ExchangeError::Config(format!(
                "{name}: the stale timeout and the keep-alive period must be above zero"
            )));
        }
        let fetcher = match self.backfill {
            Some(_) => Some(self.fetcher()?),
            None => None,
        };
        let mut backoff = self.backoff.clone();
        // Backfills that failed, by symbol, with where they must start; retried while
        // streaming until they succeed.
        let mut gaps = Gaps::new();
        // A restarted run resumes where the previous one stopped.
        let mut backfill_due = ctx.symbols.iter().any(|s| ctx.cursors.get(s).is_some());
        // A venue that asks to reconnect again and again without sending data gets backoff.
        let mut asked_without_data = false;
        loop {
            let ws = match self.connect(&url, &ctx.shutdown).await {
                Ok(Some(ws)) => ws,
                Ok(None) => return Ok(()),
                Err(e) => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    let wait = backoff.next_delay();
                    tracing::warn!(exchange = name, %url, error = %ErrorChain(&e), ?wait, "connect failed");
                    if !sleep_or_cancel(wait, &ctx.shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            tracing::info!(exchange = name, %url, "connected");
            let end = self
                .session(
                    ws,
                    &ctx,
                    &mut backoff,
                    backfill_due,
                    fetcher.as_ref(),
                    &mut gaps,
                )
                .await;
            match end {
                End::Shutdown => return Ok(()),
                End::Fatal(e) => return Err(e),
                End::Reconnect { delivered } => {
                    ExchangeStats::incr(&ctx.stats.reconnects);
                    tracing::info!(exchange = name, "the venue asked to reconnect");
                    if !delivered && asked_without_data {
                        let wait = backoff.next_delay();
                        if !sleep_or_cancel(wait, &ctx.shutdown).await {
                            return Ok(());
                        }
                    }
                    asked_without_data = !delivered;
                }
                End::Failed(e) => {
                    ExchangeStats::incr(&ctx.stats.errors);
                    ExchangeStats::incr(&ctx.stats.reconnects);
                    asked_without_data = false;
                    let wait = backoff.next_delay();
                    tracing::warn!(exchange = name, error = %ErrorChain(&e), ?wait, "connection lost, reconnecting");
                    if !sleep_or_cancel(wait, &ctx.shutdown).await {
                        return Ok(());
                    }
                }
            }
            backfill_due = true;
        }
    }
}

/// Per symbol, the last trade seen and its id as a number.
type LastSeen = std::collections::HashMap<Symbol, (super::Cursor, u128)>;

/// Records in `gaps` every symbol whose ids jump over missing trades in `batch` (from the
/// trade before the jump), and moves `last_seen` on. True when a new gap was found.
fn find_jumps(batch: &[Trade], last_seen: &mut LastSeen, gaps: &mut Gaps) -> bool {
    let mut found = false;
    // The entry of the symbol looked up last: a batch is mostly one symbol's run of trades.
    let mut current: Option<(&Symbol, &mut (super::Cursor, u128))> = None;
    for t in batch {
        let Some(id) = t.trade_id.as_number() else {
            continue;
        };
        if current.as_ref().is_none_or(|(s, _)| **s != t.symbol) {
            current = None;
            if !last_seen.contains_key(&t.symbol) {
                let cursor = super::Cursor {
                    trade_id: t.trade_id.clone(),
                    timestamp: t.timestamp,
                };
                last_seen.insert(t.symbol.clone(), (cursor, id));
                continue;
            }
            current = last_seen.get_mut(&t.symbol).map(|e| (&t.symbol, e));
        }
        let Some((_, (prev, prev_id))) = current.as_mut() else {
            continue;
        };
        if id > *prev_id + 1 && !gaps.contains_key(&t.symbol) {
            gaps.insert(t.symbol.clone(), prev.clone());
            found = true;
        }
        if id > *prev_id {
            prev.trade_id = t.trade_id.clone();
            prev.timestamp = t.timestamp;
            *prev_id = id;
        }
    }
    found
}

/// Waits for the next keep-alive tick, or forever when the venue has none.
async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Runs a write with the send timeout, giving way to shutdown.
async fn with_timeout<F>(fut: F, shutdown: &CancellationToken) -> Result<(), SendFail>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    tokio::select! {
        _ = shutdown.cancelled() => Err(SendFail::Cancelled),
        r = tokio::time::timeout(SEND_TIMEOUT, fut) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendFail::Error(e.into())),
            Err(elapsed) => Err(SendFail::Error(ExchangeError::Other {
                context: format!("sending to the venue took over {SEND_TIMEOUT:?}"),
                source: Box::new(elapsed),
            })),
        },
    }
}

async fn send(ws: &mut Ws, msg: WsMessage, shutdown: &CancellationToken) -> Result<(), SendFail> {
    let msg = match msg {
        WsMessage::Text(t) => Message::text(t),
        WsMessage::Binary(b) => Message::binary(b),
        WsMessage::Ping(p) => Message::Ping(p.into()),
    };
    with_timeout(ws.send(msg), shutdown).await
}

/// Sends a close frame, best effort and briefly.
async fn close(mut ws: Ws) -> End {
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
    End::Shutdown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::context::tests::trade;

    #[test]
    fn jumps_are_found_per_symbol_in_interleaved_batches() {
        let mut last = LastSeen::new();
        let mut gaps = Gaps::new();
        // First sight of each symbol sets its start; consecutive ids are no jump.
        let b1 = [
            trade("BTC-USD", 10),
            trade("ETH-USD", 50),
            trade("BTC-USD", 11),
        ];
        assert!(!find_jumps(&b1, &mut last, &mut gaps));
        // ETH jumps from 50 to 53; BTC goes on; an older BTC id (a repeat) changes nothing.
        let b2 = [
            trade("BTC-USD", 12),
            trade("ETH-USD", 53),
            trade("BTC-USD", 12),
            trade("BTC-USD", 13),
        ];
        assert!(find_jumps(&b2, &mut last, &mut gaps));
        assert_eq!(gaps.len(), 1);
        let eth = Symbol::parse("ETH-USD").unwrap();
        assert_eq!(gaps[&eth].trade_id.as_str(), "50");
        assert_eq!(last[&eth].1, 53);
        assert_eq!(last[&Symbol::parse("BTC-USD").unwrap()].1, 13);
        // A second jump on a symbol already in `gaps` keeps the older gap start.
        assert!(!find_jumps(&[trade("ETH-USD", 60)], &mut last, &mut gaps));
        assert_eq!(gaps[&eth].trade_id.as_str(), "50");
        // A jump on the other symbol is a new gap.
        assert!(find_jumps(&[trade("BTC-USD", 15)], &mut last, &mut gaps));
        assert_eq!(
            gaps[&Symbol::parse("BTC-USD").unwrap()].trade_id.as_str(),
            "13"
        );
    }
}
