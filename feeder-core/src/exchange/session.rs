//! One WebSocket connection of the stream driver, from subscribe to its end.
//!
//! A [`Session`] owns the socket and the state of one connection. Each step (`subscribe`,
//! `on_burst`, `backfill`, `send`, `flush`) returns `Result<_, End>`, where [`End`] says how the
//! connection ends, so that `?` carries an ending out of any depth of the loop.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::capture::Capture;
use super::rest::{Fetcher, Filled};
use super::StreamVenue;
use super::WsMessage;
use super::{Backoff, Completeness, Cursor, ExchangeContext, ExchangeStats, Frame, PollVenue};
use crate::error::{truncate_for_log, ExchangeError};
use crate::model::{Gap, GapReason, Symbol, Timestamp, Trade, TradeId};
use crate::observe::Link;
use crate::pipeline::{IdJumpLimit, LogGate};

/// The socket of one connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a send to the venue may take before the connection is declared dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a close frame may take to leave at shutdown or on a requested reconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Most frames read back to back into one batch, so that keep-alives and shutdown are never
/// starved by a firehose.
const MAX_FRAMES_PER_BATCH: usize = 1024;

/// Most trades in one batch.
const MAX_BATCH: usize = 4096;

/// How often a failed backfill is tried again while the stream runs.
const GAP_RETRY: Duration = Duration::from_secs(2);

/// Symbols whose backfill has not completed, with the cursor it must start from. Lives
/// across the connections of one run: a hole found on one connection is filled on a later one
/// if need be.
pub(crate) type Gaps = HashMap<Symbol, Cursor>;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Shutdown began.
    Shutdown,
    /// The venue asked for a new connection.
    Reconnect,
    /// The connection failed; retried with backoff.
    Failed(ExchangeError),
    /// Retrying cannot help (the pipeline is gone, or a terminal error).
    Fatal(ExchangeError),
}

/// What a session is given by its driver, and keeps across connections.
pub(crate) struct Setup<'a, V> {
    pub(crate) name: &'a Arc<str>,
    pub(crate) venue: &'a V,
    pub(crate) rest: Option<(&'a dyn PollVenue, &'a Fetcher)>,
    pub(crate) stale: Duration,
    pub(crate) ctx: &'a ExchangeContext,
    /// Reset once the connection delivers data.
    pub(crate) backoff: &'a mut Backoff,
    pub(crate) gaps: &'a mut Gaps,
    /// The capture and this connection's number in it, when the traffic is recorded.
    pub(crate) capture: Option<(&'a Capture, u64)>,
}

/// One connection: the socket, its keep-alive and liveness, and the trades read but not yet
/// sent on.
pub(crate) struct Session<'a, V> {
    setup: Setup<'a, V>,
    ws: Ws,
    keepalive: KeepAlive,
    liveness: Liveness,
    /// Trades of the frames read back to back, sent on as one batch: one channel hop per burst
    /// rather than per frame.
    batch: Vec<Trade>,
    /// For venues with consecutive ids: the newest trade read per symbol, to spot a jump.
    last_seen: LastSeen,
    /// Whether this connection has delivered trades (its first delivery resets the backoff).
    delivered: bool,
    /// Without backfill, after a reconnect: per symbol, the last trade before the connection
    /// was lost, until this connection's first newer trade of that symbol bounds the hole.
    unfilled: HashMap<Symbol, Cursor>,
    /// Rate limit of the log of unrecognized messages.
    unknown_log: LogGate,
}

impl<'a, V: StreamVenue> Session<'a, V> {
    /// A session over a freshly opened socket.
    pub(crate) fn new(setup: Setup<'a, V>, ws: Ws) -> Self {
        // Connected, but up only once the venue's application speaks.
        setup.ctx.stats.link.set(Link::Connecting);
        setup.ctx.stats.link.set_fresh_within(setup.stale);
        let keepalive = KeepAlive::new(setup.venue.ping(), setup.stale);
        let liveness = Liveness::new(setup.stale, setup.venue.pong_is_proof_of_life());
        let last_seen = setup
            .ctx
            .symbols
            .iter()
            .filter_map(|s| {
                let c = setup.ctx.cursors.get(s)?;
                let id = c.trade_id.as_number().unwrap_or(0);
                Some((s.clone(), (c, id)))
            })
            .collect();
        Self {
            setup,
            ws,
            keepalive,
            liveness,
            batch: Vec::new(),
            last_seen,
            delivered: false,
            unfilled: HashMap::new(),
            unknown_log: LogGate::default(),
        }
    }

    /// Runs the connection until it ends; returns how, and whether it delivered anything.
    pub(crate) async fn run(mut self, backfill_due: bool) -> (End, bool) {
        let end = match self.drive(backfill_due).await {
            Ok(never) => match never {},
            Err(end) => end,
        };
        // Whatever was read before the end still goes on (with its holes filled, unless
        // shutdown began).
        let flushed = match end {
            End::Shutdown | End::Fatal(_) => self.flush().await,
            _ => self.flush_checking_ids().await,
        };
        let end = match (end, flushed) {
            (End::Fatal(e), _) | (_, Err(End::Fatal(e))) => End::Fatal(e),
            (end, _) => end,
        };
        if matches!(end, End::Shutdown | End::Reconnect) {
            let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(None)).await;
        }
        (end, self.delivered)
    }

    async fn drive(&mut self, backfill_due: bool) -> Result<std::convert::Infallible, End> {
        self.subscribe().await?;
        if backfill_due && self.setup.rest.is_none() {
            let ctx = self.setup.ctx;
            self.unfilled = (ctx.symbols.iter())
                .filter_map(|s| Some((s.clone(), ctx.cursors.get(s)?)))
                .collect();
        }
        // Subscribed first, so that nothing falls between the REST answer and the stream.
        let symbols = self.setup.ctx.symbols.clone();
        if backfill_due && self.setup.rest.is_some() {
            self.backfill(&symbols, None).await?;
        } else {
            // Nothing to fill (a first connection), or nothing to fill it with (a hole is
            // recorded as a gap instead): the stream is live.
            for symbol in &symbols {
                self.progress(symbol, Completeness::Live).await?;
            }
        }
        let mut gap_timer = tokio::time::interval_at(Instant::now() + GAP_RETRY, GAP_RETRY);
        gap_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let retry_gaps = !self.setup.gaps.is_empty() && self.setup.rest.is_some();
            tokio::select! {
                _ = self.setup.ctx.shutdown.cancelled() => return Err(End::Shutdown),
                _ = self.liveness.expired() => {
                    return Err(End::Failed(ExchangeError::Stale(self.setup.stale)))
                }
                _ = gap_timer.tick(), if retry_gaps => {
                    let symbols: Vec<Symbol> = self.setup.gaps.keys().cloned().collect();
                    self.backfill(&symbols, None).await?;
                }
                msg = self.keepalive.due() => self.send(msg).await?,
                msg = self.ws.next() => self.on_burst(msg).await?,
            }
        }
    }

    async fn subscribe(&mut self) -> Result<(), End> {
        for msg in self.setup.venue.subscribe(&self.setup.ctx.symbols) {
            self.send(msg).await?;
        }
        Ok(())
    }

    /// Handles `first` and every message already waiting behind it, then sends their trades
    /// on as one batch.
    ///
    /// The clock is read once per burst: the messages behind the first were already read off
    /// the socket when it woke this task, so they share its receive time.
    async fn on_burst(
        &mut self,
        first: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), End> {
        let mut next = first;
        let received_at = Timestamp::now();
        for read in 1.. {
            let msg = match next {
                None => return Err(End::Failed(ExchangeError::Closed(None))),
                Some(Err(e)) => return Err(End::Failed(e.into())),
                Some(Ok(m)) => m,
            };
            self.on_message(msg, received_at).await?;
            if read >= MAX_FRAMES_PER_BATCH || self.batch.len() >= MAX_BATCH {
                break;
            }
            // More frames already read off the socket? Take them without waiting.
            match self.ws.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        // Once per burst rather than per frame: resetting a timer is not free.
        if self.liveness.settle() {
            self.setup.ctx.stats.link.alive(received_at);
        }
        self.flush_checking_ids().await
    }

    /// Handles one message: its trades go into the batch, its control meaning is acted on.
    async fn on_message(&mut self, msg: Message, received_at: Timestamp) -> Result<(), End> {
        if let Some((c, conn)) = self.setup.capture {
            c.ws_in(conn, &msg, received_at);
        }
        self.liveness.note(&msg);
        let frame = match &msg {
            Message::Text(t) => self.parse(t.as_str().as_bytes(), received_at),
            Message::Binary(b) => self.parse(b, received_at),
            Message::Ping(_) => {
                // The library queued the pong; flush so it leaves now, not with the next
                // write (which may be many seconds away).
                return with_timeout(self.ws.flush(), self.setup.ctx).await;
            }
            Message::Close(frame) => {
                let reason = frame.as_ref().map(|f| format!("{} {}", f.code, f.reason));
                return Err(End::Failed(ExchangeError::Closed(reason)));
            }
            Message::Pong(_) | Message::Frame(_) => None,
        };
        let name: &str = self.setup.name;
        match frame {
            None | Some(Frame::Data) => Ok(()),
            Some(Frame::Reply(reply)) => self.send(reply).await,
            Some(Frame::Reconnect) => Err(End::Reconnect),
            Some(Frame::Gap {
                symbol,
                last_trade_id,
            }) => self.on_reported_gap(symbol, last_trade_id).await,
            Some(Frame::Unrecognized) => {
                self.unrecognized(&msg);
                Ok(())
            }
            Some(f @ (Frame::Ack | Frame::Heartbeat | Frame::Ignored)) => {
                tracing::debug!(exchange = name, frame = ?f, "control frame");
                Ok(())
            }
        }
    }

    /// The venue says trades up to `last_trade_id` exist. Everything it sent before this
    /// message has been read, so the report is compared with what this connection has read
    /// (not with a clock or a count of its own): a feeder behind its socket sees the report
    /// only once it has caught up to it.
    async fn on_reported_gap(&mut self, symbol: Symbol, last_trade_id: TradeId) -> Result<(), End> {
        self.flush_checking_ids().await?;
        let name: &str = self.setup.name;
        // Everything read before the report was just delivered, so the cursor is what this
        // connection has read.
        let read = self.setup.ctx.cursors.get(&symbol);
        let behind = read.is_some_and(|c| {
            c.trade_id
                .cmp_numeric(&last_trade_id)
                .is_some_and(|o| o.is_lt())
        });
        if behind && self.setup.rest.is_some() {
            self.progress(&symbol, Completeness::Behind).await?;
            tracing::info!(exchange = name, %symbol, %last_trade_id, "the venue reports trades not received, backfilling");
            self.backfill(std::slice::from_ref(&symbol), Some(&last_trade_id))
                .await?;
        } else {
            tracing::debug!(exchange = name, %symbol, %last_trade_id, behind, "gap report");
        }
        Ok(())
    }

    /// Sends the batch on. For venues with consecutive ids, a jump in a symbol's ids is a hole:
    /// the trades before the first jump go on, the hole is filled over REST, then the rest
    /// follows, so that each symbol's trades reach the pipeline in order.
    async fn flush_checking_ids(&mut self) -> Result<(), End> {
        if !self.setup.venue.ids_are_consecutive() || self.setup.rest.is_none() {
            return self.flush().await;
        }
        let jumps = find_jumps(&self.batch, &mut self.last_seen);
        let Some(first) = jumps.iter().map(|j| j.at).min() else {
            return self.flush().await;
        };
        let rest = self.batch.split_off(first);
        self.flush().await?;
        for jump in jumps {
            self.setup
                .gaps
                .entry(jump.symbol.clone())
                .or_insert(jump.after);
            self.progress(&jump.symbol, Completeness::Behind).await?;
            tracing::info!(exchange = &**self.setup.name, symbol = %jump.symbol, until = %jump.until, "trade ids jumped, backfilling");
            self.backfill(std::slice::from_ref(&jump.symbol), Some(&jump.until))
                .await?;
        }
        self.batch = rest;
        self.flush().await
    }

    /// Sends what the batch holds into the pipeline.
    async fn flush(&mut self) -> Result<(), End> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.delivered {
            // This connection works: the next failure starts again from a short wait.
            self.delivered = true;
            self.setup.backoff.reset();
        }
        if !self.unfilled.is_empty() {
            self.record_unfilled().await?;
        }
        // The next batch starts with room for as many trades as this one: a burst is
        // usually like the one before, and growing a vector of trades copies them.
        let room = self.batch.len();
        let trades = std::mem::replace(&mut self.batch, Vec::with_capacity(room));
        self.setup
            .ctx
            .deliver(self.setup.name, trades)
            .await
            .map_err(End::Fatal)
    }

    /// Without backfill, a reconnect may have lost trades: the first newer trade of each
    /// symbol bounds the hole, recorded as a gap unless ids show nothing was missed.
    async fn record_unfilled(&mut self) -> Result<(), End> {
        let consecutive = self.setup.venue.ids_are_consecutive();
        let mut found = Vec::new();
        for t in &self.batch {
            let Some(after) = self.unfilled.get(&t.symbol) else {
                continue;
            };
            if !after.is_older_than(t) || after.trade_id == t.trade_id {
                continue;
            }
            let next = after.trade_id.as_number().map(|n| n + 1);
            let missed = !(consecutive && t.trade_id.as_number() == next);
            if missed {
                found.push(Gap {
                    exchange: t.exchange.clone(),
                    symbol: t.symbol.clone(),
                    after_trade_id: after.trade_id.clone(),
                    before_trade_id: Some(t.trade_id.clone()),
                    from: after.timestamp,
                    to: Some(t.timestamp),
                    reason: GapReason::NoBackfill,
                });
            }
            self.unfilled.remove(&t.symbol);
        }
        for gap in found {
            self.setup
                .ctx
                .sink
                .send_gap(gap)
                .await
                .map_err(End::Fatal)?;
        }
        Ok(())
    }

    /// Fills `symbols` over REST from where each was left (an unfinished backfill, or the
    /// cursor), up to `until` or the venue's newest trade. A backfill that stops early is
    /// kept in the gaps and tried again while the stream runs.
    async fn backfill(&mut self, symbols: &[Symbol], until: Option<&TradeId>) -> Result<(), End> {
        let Some((venue, fetcher)) = self.setup.rest else {
            return Ok(());
        };
        let ctx = self.setup.ctx;
        let name: &str = self.setup.name;
        for symbol in symbols {
            let from = self
                .setup
                .gaps
                .get(symbol)
                .cloned()
                .or_else(|| ctx.cursors.get(symbol));
            let filled = fetcher
                .fill(venue, symbol, from.as_ref(), until, ctx)
                .await
                .map_err(End::Fatal)?;
            let start = from
                .as_ref()
                .map(|c| c.trade_id.to_string())
                .unwrap_or_else(|| "latest".into());
            match filled {
                Filled::Cancelled => return Err(End::Shutdown),
                Filled::Done { delivered } => {
                    self.setup.gaps.remove(symbol);
                    tracing::info!(exchange = name, %symbol, from = %start, n = delivered, "backfilled");
                    self.progress(symbol, Completeness::Live).await?;
                }
                Filled::Stopped {
                    delivered,
                    resume: Some(resume),
                } => {
                    tracing::warn!(exchange = name, %symbol, from = %start, n = delivered, resume = %resume.trade_id, "backfill stopped early; will go on from where it stopped while streaming");
                    self.setup.gaps.insert(symbol.clone(), resume);
                }
                Filled::Stopped { resume: None, .. } => {
                    tracing::warn!(exchange = name, %symbol, "could not read the newest trades");
                }
            }
        }
        // What was backfilled is what the stream's next trade follows.
        for symbol in symbols {
            if let Some(c) = ctx.cursors.get(symbol) {
                let id = c.trade_id.as_number().unwrap_or(0);
                let newer = self
                    .last_seen
                    .get(symbol)
                    .is_none_or(|(_, seen)| *seen < id);
                if newer {
                    self.last_seen.insert(symbol.clone(), (c, id));
                }
            }
        }
        // Frames waited while the REST calls ran; not a sign of a dead connection.
        self.liveness.alive();
        Ok(())
    }

    /// Counts a message the parser does not know, and logs a sample at most once a minute.
    fn unrecognized(&mut self, msg: &Message) {
        let stats = &self.setup.ctx.stats;
        ExchangeStats::incr(&stats.unrecognized);
        if let Some(held) = self.unknown_log.pass(Timestamp::now()) {
            let payload: &[u8] = match msg {
                Message::Text(t) => t.as_str().as_bytes(),
                Message::Binary(b) => b,
                _ => &[],
            };
            tracing::warn!(
                exchange = &**self.setup.name,
                sample = %truncate_for_log(payload, 256),
                not_logged_since_last = held,
                total = ExchangeStats::get(&stats.unrecognized),
                "a message of a shape the parser does not know"
            );
        }
    }

    /// Says how far a stream is complete.
    async fn progress(&self, symbol: &Symbol, completeness: Completeness) -> Result<(), End> {
        self.setup
            .ctx
            .sink
            .progress(self.setup.name, symbol, completeness)
            .await
            .map_err(End::Fatal)
    }

    /// Sends one message to the venue.
    async fn send(&mut self, msg: WsMessage) -> Result<(), End> {
        let msg = match msg {
            WsMessage::Text(t) => Message::text(t),
            WsMessage::Binary(b) => Message::binary(b),
            WsMessage::Ping(p) => Message::Ping(p.into()),
        };
        if let Some((c, conn)) = self.setup.capture {
            c.ws_out(conn, &msg);
        }
        with_timeout(self.ws.send(msg), self.setup.ctx).await
    }

    /// Parses one payload into the batch; `None` when it could not be parsed (counted, logged,
    /// and whatever it appended removed).
    fn parse(&mut self, payload: &[u8], received_at: Timestamp) -> Option<Frame> {
        let before = self.batch.len();
        match self
            .setup
            .venue
            .parse(payload, received_at, &mut self.batch)
        {
            Ok(frame) => Some(frame),
            Err(e) => {
                self.setup.ctx.parse_error(self.setup.name, &e, payload);
                self.batch.truncate(before);
                None
            }
        }
    }
}

/// Runs a write with the send timeout, giving way to shutdown.
async fn with_timeout<F>(fut: F, ctx: &ExchangeContext) -> Result<(), End>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Err(End::Shutdown),
        r = tokio::time::timeout(SEND_TIMEOUT, fut) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Failed(e.into())),
            Err(elapsed) => Err(End::Failed(ExchangeError::Other {
                context: format!("sending to the venue took over {SEND_TIMEOUT:?}"),
                source: Box::new(elapsed),
            })),
        },
    }
}

/// The keep-alive the venue asks for, sent on a timer.
struct KeepAlive {
    timer: Option<(Interval, WsMessage)>,
}

impl KeepAlive {
    /// A quiet but healthy connection must answer a keep-alive before it counts as stale, so
    /// keep-alives go at least twice per stale timeout.
    fn new(ping: Option<super::Ping>, stale: Duration) -> Self {
        let timer = ping.map(|p| {
            let every = p.every.min(stale / 2);
            let mut t = tokio::time::interval_at(Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            (t, p.message)
        });
        Self { timer }
    }

    /// The next keep-alive, when it is due; never, for a venue without one.
    async fn due(&mut self) -> WsMessage {
        match &mut self.timer {
            Some((t, msg)) => {
                t.tick().await;
                msg.clone()
            }
            None => std::future::pending().await,
        }
    }
}

/// Whether the venue's application is still talking to us.
///
/// Only what the venue's application sends proves the feed alive: data, its heartbeats, its
/// answers. A WebSocket server's own protocol Pings never do (servers send them from their
/// library while the application is hung), and a Pong to our ping does only where the venue
/// says so ([`StreamVenue::pong_is_proof_of_life`]). With nothing of that for the stale
/// timeout, the connection is given up and the stream reconnects and backfills.
struct Liveness {
    stale: Duration,
    deadline: Pin<Box<Sleep>>,
    pong_proves: bool,
    /// Whether the burst being read held a message that proves life.
    proven: bool,
}

impl Liveness {
    fn new(stale: Duration, pong_proves: bool) -> Self {
        Self {
            stale,
            deadline: Box::pin(tokio::time::sleep(stale)),
            pong_proves,
            proven: false,
        }
    }

    /// Notes a message of the burst being read.
    fn note(&mut self, msg: &Message) {
        self.proven |= self.proves_life(msg);
    }

    /// At the end of a burst: if it proved the feed alive, the stale timeout starts again
    /// and true is returned.
    fn settle(&mut self) -> bool {
        let proven = std::mem::take(&mut self.proven);
        if proven {
            self.alive();
        }
        proven
    }

    fn proves_life(&self, msg: &Message) -> bool {
        match msg {
            Message::Text(_) | Message::Binary(_) => true,
            Message::Pong(_) => self.pong_proves,
            Message::Ping(_) | Message::Close(_) | Message::Frame(_) => false,
        }
    }

    /// The feed showed life: the stale timeout starts again.
    fn alive(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.stale);
    }

    /// Resolves when the feed has been silent for the stale timeout.
    async fn expired(&mut self) {
        self.deadline.as_mut().await;
    }
}

/// Per symbol, the newest trade read and its id as a number.
type LastSeen = HashMap<Symbol, (Cursor, u128)>;

/// A hole in one symbol's consecutive ids.
#[derive(Debug, PartialEq, Eq)]
struct Jump {
    symbol: Symbol,
    /// The trade before the hole.
    after: Cursor,
    /// The first trade after the hole.
    until: TradeId,
    /// Its position in the batch.
    at: usize,
}

/// The first jump of each symbol whose ids skip trades in `batch`, and moves `last_seen` on.
fn find_jumps(batch: &[Trade], last_seen: &mut LastSeen) -> Vec<Jump> {
    let mut jumps: Vec<Jump> = Vec::new();
    // The entry of the symbol looked up last: a batch is mostly one symbol's run of trades.
    let mut current: Option<(&Symbol, &mut (Cursor, u128))> = None;
    for (at, t) in batch.iter().enumerate() {
        let Some(id) = t.trade_id.as_number() else {
            continue;
        };
        if current.as_ref().is_none_or(|(s, _)| **s != t.symbol) {
            current = None;
            if !last_seen.contains_key(&t.symbol) {
                let cursor = Cursor {
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
        // An id far out of line is not a hole to fill: the sink quarantines it.
        if !IdJumpLimit::DEFAULT.allows(*prev_id, id) {
            continue;
        }
        if id > *prev_id + 1 && !jumps.iter().any(|j| j.symbol == t.symbol) {
            jumps.push(Jump {
                symbol: t.symbol.clone(),
                after: prev.clone(),
                until: t.trade_id.clone(),
                at,
            });
        }
        if id > *prev_id {
            prev.trade_id = t.trade_id.clone();
            prev.timestamp = t.timestamp;
            *prev_id = id;
        }
    }
    jumps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::context::tests::trade;

    #[test]
    fn jumps_are_found_per_symbol_in_interleaved_batches() {
        let mut last = LastSeen::new();
        // First sight of each symbol sets its start; consecutive ids are no jump.
        let b1 = [
            trade("BTC-USD", 10),
            trade("ETH-USD", 50),
            trade("BTC-USD", 11),
        ];
        assert!(find_jumps(&b1, &mut last).is_empty());
        // ETH jumps from 50 to 53; BTC goes on; an older BTC id (a repeat) changes nothing.
        let b2 = [
            trade("BTC-USD", 12),
            trade("ETH-USD", 53),
            trade("BTC-USD", 12),
            trade("BTC-USD", 13),
            trade("ETH-USD", 60),
        ];
        let jumps = find_jumps(&b2, &mut last);
        let eth = Symbol::parse("ETH-USD").unwrap();
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        assert_eq!(jumps[0].symbol, eth);
        assert_eq!(jumps[0].after.trade_id.as_str(), "50");
        assert_eq!(jumps[0].until.as_str(), "53");
        assert_eq!(jumps[0].at, 1);
        assert_eq!(last[&eth].1, 60);
        assert_eq!(last[&Symbol::parse("BTC-USD").unwrap()].1, 13);
        // A jump on the other symbol is found, at its own position.
        let jumps = find_jumps(&[trade("ETH-USD", 61), trade("BTC-USD", 15)], &mut last);
        assert_eq!(jumps.len(), 1);
        assert_eq!(jumps[0].after.trade_id.as_str(), "13");
        assert_eq!(jumps[0].at, 1);
        // A hostile id far out of line is no hole and does not become the last seen.
        let hostile = trade("BTC-USD", u64::MAX);
        assert!(find_jumps(&[hostile, trade("BTC-USD", 17)], &mut last)[0].at == 1);
        assert_eq!(last[&Symbol::parse("BTC-USD").unwrap()].1, 17);
    }

    #[tokio::test]
    async fn only_the_applications_messages_prove_the_feed_alive() {
        let strict = Liveness::new(Duration::from_secs(1), false);
        assert!(strict.proves_life(&Message::text("{}")));
        assert!(strict.proves_life(&Message::binary(vec![1])));
        assert!(!strict.proves_life(&Message::Ping(Vec::new().into())));
        assert!(!strict.proves_life(&Message::Pong(Vec::new().into())));
        let trusting = Liveness::new(Duration::from_secs(1), true);
        assert!(trusting.proves_life(&Message::Pong(Vec::new().into())));
        assert!(!trusting.proves_life(&Message::Ping(Vec::new().into())));
    }
}
