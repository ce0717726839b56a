//! What an exchange task is given: where to send trades, when to stop, and where it left off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, CheckpointWait, Resync};
use crate::budget::{batch_bytes, ByteBudget};
use crate::error::{truncate_for_log, ExchangeError, ParseError};

/// How long a batch may still take to enter the pipeline once shutdown began.
const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
use crate::model::{Gap, Symbol, Timestamp, Trade, TradeId};
use crate::observe::{LinkStats, StreamTable};
use crate::pipeline::{Rejected, Screen, TradeRules};

/// The newest trade seen for one symbol: where to resume and backfill from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The venue's id of that trade.
    pub trade_id: TradeId,
    /// Its trade time.
    pub timestamp: Timestamp,
}

impl Cursor {
    /// True when `trade` is newer than this cursor: a greater id when both ids are numbers,
    /// otherwise a later or equal time (the valve drops the equal-time repeats).
    pub fn is_older_than(&self, trade: &Trade) -> bool {
        match trade.trade_id.cmp_numeric(&self.trade_id) {
            Some(ord) => ord.is_gt(),
            None => trade.timestamp >= self.timestamp,
        }
    }

    /// True when `trade` is this cursor's trade or older: what a store that resumed from
    /// this cursor already holds, and what a backfill from it does not bring again.
    pub fn covers(&self, trade: &Trade) -> bool {
        !self.is_older_than(trade) || trade.trade_id == self.trade_id
    }
}

/// The newest trade seen per symbol of one exchange, shared between its runs so a restarted
/// exchange knows where it left off.
#[derive(Clone, Debug, Default)]
pub struct Cursors {
    inner: Arc<Mutex<HashMap<Symbol, Cursor>>>,
}

impl Cursors {
    /// The cursor of `symbol`, if a trade was seen.
    pub fn get(&self, symbol: &Symbol) -> Option<Cursor> {
        self.lock().get(symbol).cloned()
    }

    /// Moves the cursors forward over `trades` (never backwards).
    ///
    /// Venues deliver a symbol's trades in order and backfills are sorted, so the newest
    /// trade of a symbol in a batch is its last one: only that one is compared, which keeps
    /// this off the per-trade hot path.
    pub fn advance(&self, trades: &[Trade]) {
        let Some(last) = trades.last() else { return };
        let mut map = self.lock();
        advance_one(&mut map, last);
        if trades.iter().all(|t| t.symbol == last.symbol) {
            return;
        }
        let mut done: Vec<&Symbol> = vec![&last.symbol];
        for t in trades.iter().rev() {
            if !done.contains(&&t.symbol) {
                done.push(&t.symbol);
                advance_one(&mut map, t);
            }
        }
    }

    /// Sets a cursor (used to seed from a durable store).
    pub fn set(&self, symbol: Symbol, cursor: Cursor) {
        self.lock().insert(symbol, cursor);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Symbol, Cursor>> {
        // A panic while holding this lock cannot leave the map half-updated in a harmful way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn advance_one(map: &mut HashMap<Symbol, Cursor>, t: &Trade) {
    let cursor = Cursor {
        trade_id: t.trade_id.clone(),
        timestamp: t.timestamp,
    };
    match map.get_mut(&t.symbol) {
        Some(c) if c.is_older_than(t) => *c = cursor,
        Some(_) => {}
        None => {
            map.insert(t.symbol.clone(), cursor);
        }
    }
}

/// Counters of one exchange, read by the orchestrator for its summary.
#[derive(Debug, Default)]
pub struct ExchangeStats {
    /// Trades sent into the pipeline.
    pub trades: AtomicU64,
    /// Payloads that could not be parsed.
    pub parse_errors: AtomicU64,
    /// Connection-level failures (dropped socket, HTTP error, stale connection).
    pub errors: AtomicU64,
    /// WebSocket reconnects.
    pub reconnects: AtomicU64,
    /// Trades recovered over REST after a reconnect.
    pub backfilled: AtomicU64,
    /// Restarts by the supervisor.
    pub restarts: AtomicU64,
    /// Trades read but dropped, because the pipeline stayed full after shutdown began.
    pub dropped: AtomicU64,
    /// Holes the venue could not fill (it cannot reach back that far, or a backfill was
    /// given up).
    pub gaps: AtomicU64,
    /// Messages of a shape the venue's parser does not know ([`Frame::Unrecognized`]).
    ///
    /// [`Frame::Unrecognized`]: crate::exchange::Frame::Unrecognized
    pub unrecognized: AtomicU64,
    /// WebSocket connections opened and REST requests answered.
    pub contacts: AtomicU64,
    /// Trades rejected before the pipeline: a price or amount that is not positive, or a time
    /// too far from the receive time ([`TradeRules`]).
    pub rejected: AtomicU64,
    /// Trades quarantined before the pipeline: an id far above its stream's newest
    /// ([`IdJumpLimit`](crate::pipeline::IdJumpLimit)).
    pub quarantined: AtomicU64,
    /// Rejected or quarantined trades whose copy could not be put on the dead-letter channel
    /// (full or closed). They are counted above all the same.
    pub dead_letters_dropped: AtomicU64,
    /// Counters per configured symbol (empty unless made with
    /// [`for_symbols`](Self::for_symbols)).
    pub streams: StreamTable,
    /// Whether the venue answers, written by the driver.
    pub link: LinkStats,
    /// The latest connection-level failure with its causes, for the summary of a run that
    /// never reached the venue. Written by [`failed`](Self::failed).
    pub last_error: Mutex<Option<String>>,
}

impl ExchangeStats {
    /// Counters with a [`StreamStats`](crate::observe::StreamStats) for each of `symbols`.
    pub fn for_symbols(symbols: &[Symbol]) -> Self {
        Self {
            streams: StreamTable::new(symbols),
            ..Self::default()
        }
    }

    /// Adds one to a counter.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a connection-level failure in [`errors`](Self::errors) and keeps its text,
    /// with every cause once, as the [`last_error`](Self::last_error).
    pub fn failed(&self, error: &(dyn std::error::Error + 'static)) {
        Self::incr(&self.errors);
        let text = crate::error::ErrorChain(error).to_string();
        // A poisoned lock only means another thread panicked while writing a string.
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(text);
    }

    /// The latest failure [`failed`](Self::failed) recorded.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What an exchange sends into the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Trades, each symbol's in the order the venue published them where the exchange can
    /// keep it.
    Trades(Vec<Trade>),
    /// A hole the exchange could not fill, written to every writer as a `gap` event.
    Gap(Gap),
    /// How far a stream is known complete, which decides when its candles close.
    Progress {
        /// The exchange's name, as in its trades.
        exchange: Arc<str>,
        /// The stream.
        symbol: Symbol,
        /// Where it stands.
        completeness: Completeness,
    },
    /// A mark after the inputs before it: resolved once every writer stored them (see
    /// [`Checkpoint`]). Sent by sources that must acknowledge what they read.
    Checkpoint(Checkpoint),
    /// Start the state of some streams again from the stores (see [`Resync`]).
    Resync(Resync),
}

/// How far a stream is known complete: its completeness watermark.
///
/// A stream's trades reach the pipeline in order (the drivers keep each symbol's order, and
/// backfill walks forward from the cursor), so a stream is complete up to its newest trade
/// unless a hole is open. Its candles close when the watermark passes their close time plus
/// the grace; the wall clock alone never closes a candle of a stream that is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// Connected and caught up: complete up to the newest trade, and between trades the
    /// venue's clock is taken to run on at the wall clock's pace, so that a quiet market
    /// still gets its candles on time.
    Live,
    /// A hole is open (the connection was lost, a backfill runs or failed): complete only up
    /// to the newest trade before the hole and the backfilled trades that follow it in order.
    Behind,
    /// Complete up to this time (a poll answered with every trade until then). The stream is
    /// otherwise treated as [`Behind`](Completeness::Behind).
    UpTo(Timestamp),
}

impl Input {
    /// The trades, if this is a batch of trades.
    pub fn trades(&self) -> &[Trade] {
        match self {
            Input::Trades(t) => t,
            Input::Gap(_) | Input::Progress { .. } | Input::Checkpoint(_) | Input::Resync(_) => &[],
        }
    }
}

/// Where an exchange sends its trades: a bounded channel of batches into the pipeline.
///
/// Sending waits when the pipeline is behind (backpressure), and fails only when the
/// pipeline is gone. The channel is bounded in batches and, given a [`ByteBudget`]
/// ([`with_budget`](Self::with_budget)), in bytes: a batch takes its estimated size from the
/// budget before it is queued, and the pipeline gives it back when it receives the batch.
///
/// Every trade is checked first, once ([`TradeRules`]): one that is not positive in price and
/// amount, too far in time from its receipt, or whose numeric id is far above its symbol's
/// newest, is turned away. It is counted (in [`ExchangeStats::rejected`] or
/// [`ExchangeStats::quarantined`]), logged at warn level with the trade (once per minute of
/// receive time per reason, with how many were held back), put on the dead-letter channel if
/// there is one, and goes no further: it does not move the resume cursors and never reaches
/// the valve or a store.
#[derive(Clone, Debug)]
pub struct TradeSink {
    tx: mpsc::Sender<Input>,
    cursors: Cursors,
    stats: Arc<ExchangeStats>,
    rules: TradeRules,
    /// Shared by the clones of this sink, made new with it: the id check's state per symbol
    /// (which starts again from the cursors each run) and the log gates. Locked only while a
    /// batch is checked, never across an await.
    screen: Arc<Mutex<Screen>>,
    /// The dead-letter channel, if any.
    rejected: Option<mpsc::Sender<Rejected>>,
    /// The channel's bound in bytes, if any; the receiver releases what each batch of trades
    /// took ([`ByteBudget::release`] with [`batch_bytes`] of its length).
    budget: Option<ByteBudget>,
    /// The exchange's raw capture, if any: what the driver reports of completeness and
    /// holes is recorded with the traffic, for replay.
    capture: Option<super::Capture>,
}

impl TradeSink {
    /// A sink over `tx` that advances `cursors` and counts into `stats`, checking trades with
    /// [`TradeRules::BASIC`] (no time window) until given other rules.
    pub fn new(tx: mpsc::Sender<Input>, cursors: Cursors, stats: Arc<ExchangeStats>) -> Self {
        Self {
            tx,
            cursors,
            stats,
            rules: TradeRules::BASIC,
            screen: Arc::default(),
            rejected: None,
            budget: None,
            capture: None,
        }
    }

    /// Records the completeness and the gaps sent through this sink into `capture` too.
    pub fn with_capture(mut self, capture: super::Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Bounds the channel in bytes too: a batch of trades waits for its size in `budget`
    /// before it is queued. The receiver must give back what each batch of trades took, with
    /// [`ByteBudget::release`] of [`batch_bytes`] of its length, once it has received it.
    pub fn with_budget(mut self, budget: ByteBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Checks trades with `rules` (the orchestrator passes the configuration's).
    pub fn with_rules(mut self, rules: TradeRules) -> Self {
        self.rules = rules;
        self
    }

    /// Puts a copy of each turned-away trade, with why, on `dead_letters`. When the channel is
    /// full or closed the copy is dropped and counted in [`ExchangeStats::dead_letters_dropped`]:
    /// a slow reader of rejects never holds up the trades.
    pub fn with_rejected(mut self, dead_letters: mpsc::Sender<Rejected>) -> Self {
        self.rejected = Some(dead_letters);
        self
    }

    /// Checks a batch, then sends what passed (an empty batch is skipped).
    pub async fn send(&self, mut trades: Vec<Trade>) -> Result<(), ExchangeError> {
        if trades.is_empty() {
            return Ok(());
        }
        let turned_away = self
            .screen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .screen(&self.rules, &mut trades, |symbol| {
                self.cursors
                    .get(symbol)
                    .and_then(|c| c.trade_id.as_number())
            });
        if !turned_away.is_empty() {
            self.turn_away(turned_away);
            if trades.is_empty() {
                return Ok(());
            }
        }
        self.cursors.advance(&trades);
        let n = trades.len() as u64;
        // Taken before the batch is queued and held until it is: a send given up on (the
        // future dropped, the pipeline gone) gives its bytes back as the guard drops.
        let held = match &self.budget {
            Some(budget) => Some(budget.acquire(batch_bytes(trades.len())).await),
            None => None,
        };
        self.tx
            .send(Input::Trades(trades))
            .await
            .map_err(|_| ExchangeError::PipelineClosed)?;
        if let (Some(budget), Some(held)) = (&self.budget, held) {
            budget.keep(held);
        }
        self.stats.trades.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Says how far the stream of `symbol` is complete.
    pub async fn progress(
        &self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        completeness: Completeness,
    ) -> Result<(), ExchangeError> {
        if let Some(stream) = self.stats.streams.get(symbol) {
            stream.set_progress(completeness);
        }
        if let Some(c) = &self.capture {
            c.progress(symbol, completeness);
        }
        self.tx
            .send(Input::Progress {
                exchange: exchange.clone(),
                symbol: symbol.clone(),
                completeness,
            })
            .await
            .map_err(|_| ExchangeError::PipelineClosed)
    }

    /// Records a hole that could not be filled: counted, logged, and sent on to every writer.
    pub async fn send_gap(&self, gap: Gap) -> Result<(), ExchangeError> {
        ExchangeStats::incr(&self.stats.gaps);
        if let Some(c) = &self.capture {
            c.gap(&gap);
        }
        if let Some(stream) = self.stats.streams.get(&gap.symbol) {
            ExchangeStats::incr(&stream.gaps);
        }
        tracing::warn!(
            exchange = %gap.exchange,
            symbol = %gap.symbol,
            after_trade_id = %gap.after_trade_id,
            before_trade_id = gap.before_trade_id.as_ref().map(|id| id.as_str()),
            from = %gap.from,
            reason = %gap.reason,
            "trades may be missing: a gap is recorded"
        );
        self.tx
            .send(Input::Gap(gap))
            .await
            .map_err(|_| ExchangeError::PipelineClosed)
    }

    /// Sends a [`Checkpoint`] after everything sent so far; the wait resolves `true` once
    /// every writer has stored all of it. Fails only when the pipeline is gone.
    pub async fn checkpoint(&self) -> Result<CheckpointWait, ExchangeError> {
        let (cp, wait) = Checkpoint::new();
        self.tx
            .send(Input::Checkpoint(cp))
            .await
            .map_err(|_| ExchangeError::PipelineClosed)?;
        Ok(wait)
    }

    /// Asks the pipeline to start the state of `streams` again from the stores (see
    /// [`Resync`]); the wait resolves `true` once it did, `false` if a store could not say
    /// where it left off. Fails only when the pipeline is gone.
    pub async fn resync(
        &self,
        streams: Vec<(Arc<str>, Symbol)>,
    ) -> Result<CheckpointWait, ExchangeError> {
        let (done, wait) = Checkpoint::new();
        self.tx
            .send(Input::Resync(Resync { streams, done }))
            .await
            .map_err(|_| ExchangeError::PipelineClosed)?;
        Ok(wait)
    }

    /// Counts turned-away trades and hands them to the dead-letter channel.
    fn turn_away(&self, turned_away: Vec<Rejected>) {
        for r in turned_away {
            let counter = if r.reason.is_quarantine() {
                &self.stats.quarantined
            } else {
                &self.stats.rejected
            };
            ExchangeStats::incr(counter);
            if let Some(tx) = &self.rejected {
                if tx.try_send(r).is_err() {
                    ExchangeStats::incr(&self.stats.dead_letters_dropped);
                }
            }
        }
    }
}

/// Everything an exchange task is given for one run.
#[derive(Clone, Debug)]
pub struct ExchangeContext {
    /// The symbols to stream, normalized.
    pub symbols: Vec<Symbol>,
    /// Where trades go.
    pub sink: TradeSink,
    /// Cancelled at shutdown; `run` returns `Ok(())` soon after.
    pub shutdown: CancellationToken,
    /// The newest trade seen per symbol, across runs.
    pub cursors: Cursors,
    /// Counters.
    pub stats: Arc<ExchangeStats>,
}

impl ExchangeContext {
    /// A context whose sink feeds `tx`; for tests and for programs that drive an exchange
    /// without the orchestrator.
    pub fn new(symbols: Vec<Symbol>, tx: mpsc::Sender<Input>, shutdown: CancellationToken) -> Self {
        let cursors = Cursors::default();
        let stats = Arc::new(ExchangeStats::for_symbols(&symbols));
        Self {
            symbols,
            sink: TradeSink::new(tx, cursors.clone(), stats.clone()),
            shutdown,
            cursors,
            stats,
        }
    }

    /// Sends a batch into the pipeline, for exchange `name`. If shutdown begins while the
    /// pipeline is full, the batch still gets a short grace to go in, so that trades already
    /// read are not thrown away; one that cannot go in even then is counted as dropped.
    pub async fn deliver(&self, name: &str, trades: Vec<Trade>) -> Result<(), ExchangeError> {
        if trades.is_empty() {
            return Ok(());
        }
        let n = trades.len() as u64;
        let send = self.sink.send(trades);
        tokio::pin!(send);
        tokio::select! {
            r = &mut send => r,
            _ = self.shutdown.cancelled() => match tokio::time::timeout(SEND_GRACE, send).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::error!(exchange = name, trades = n, "pipeline full at shutdown: dropped a batch");
                    Ok(())
                }
            },
        }
    }

    /// Counts `n` trades of `symbol` recovered over REST.
    pub fn backfilled(&self, symbol: &Symbol, n: u64) {
        ExchangeStats::add(&self.stats.backfilled, n);
        if let Some(stream) = self.stats.streams.get(symbol) {
            ExchangeStats::add(&stream.backfilled, n);
        }
    }

    /// Counts and logs a payload that could not be parsed, with the payload truncated.
    pub fn parse_error(&self, exchange: &str, err: &ParseError, payload: &[u8]) {
        ExchangeStats::incr(&self.stats.parse_errors);
        tracing::warn!(
            exchange,
            error = %err,
            payload = %truncate_for_log(payload, 256),
            "skipped a message that could not be parsed"
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{parse_decimal, Side};
    use crate::pipeline::{IdJumpLimit, RejectReason};
    use rust_decimal::Decimal;
    use std::time::Duration;

    /// A trade of exchange `x` with id `id`, at `id` seconds.
    pub(crate) fn trade(symbol: &str, id: u64) -> Trade {
        Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse(symbol).unwrap(),
            trade_id: TradeId::from_u64(id),
            price: parse_decimal("1").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_secs(id as i64),
            received_at: Timestamp::from_unix_secs(id as i64),
        }
    }

    #[test]
    fn cursors_follow_each_symbol_and_never_move_back() {
        let c = Cursors::default();
        let btc = Symbol::parse("BTC-USD").unwrap();
        let eth = Symbol::parse("ETH-USD").unwrap();
        c.advance(&[
            trade("BTC-USD", 5),
            trade("ETH-USD", 7),
            trade("BTC-USD", 6),
        ]);
        assert_eq!(c.get(&btc).unwrap().trade_id.as_str(), "6");
        assert_eq!(c.get(&eth).unwrap().trade_id.as_str(), "7");
        // An older batch (a late backfill) leaves them alone.
        c.advance(&[trade("BTC-USD", 2), trade("ETH-USD", 3)]);
        assert_eq!(c.get(&btc).unwrap().trade_id.as_str(), "6");
        assert_eq!(c.get(&eth).unwrap().trade_id.as_str(), "7");
        c.advance(&[trade("ETH-USD", 9)]);
        assert_eq!(c.get(&eth).unwrap().trade_id.as_str(), "9");
        assert_eq!(c.get(&Symbol::parse("SOL-USD").unwrap()), None);
    }

    fn sink(
        capacity: usize,
    ) -> (
        TradeSink,
        mpsc::Receiver<Input>,
        Cursors,
        Arc<ExchangeStats>,
    ) {
        let (tx, rx) = mpsc::channel(capacity);
        let cursors = Cursors::default();
        let stats = Arc::new(ExchangeStats::default());
        let sink = TradeSink::new(tx, cursors.clone(), stats.clone());
        (sink, rx, cursors, stats)
    }

    fn ids(input: &Input) -> Vec<&str> {
        input.trades().iter().map(|t| t.trade_id.as_str()).collect()
    }

    fn btc() -> Symbol {
        Symbol::parse("BTC-USD").unwrap()
    }

    /// The sink used to advance the resume cursor over any id, so a single hostile one moved
    /// the point a restarted exchange backfills from beyond every real trade.
    #[tokio::test]
    async fn a_hostile_id_moves_no_cursor_and_does_not_reach_the_pipeline() {
        let (sink, mut rx, cursors, stats) = sink(8);
        sink.send(vec![trade("BTC-USD", 600_000_000)])
            .await
            .unwrap();
        sink.send(vec![
            trade("BTC-USD", 600_000_001),
            trade("BTC-USD", u64::MAX),
        ])
        .await
        .unwrap();
        sink.send(vec![trade("BTC-USD", u64::MAX)]).await.unwrap();
        assert_eq!(cursors.get(&btc()).unwrap().trade_id.as_str(), "600000001");
        assert_eq!(ids(&rx.try_recv().unwrap()), ["600000000"]);
        assert_eq!(ids(&rx.try_recv().unwrap()), ["600000001"]);
        assert!(rx.try_recv().is_err(), "the all-hostile batch is not sent");
        sink.send(vec![trade("BTC-USD", 600_000_002)])
            .await
            .unwrap();
        assert_eq!(ids(&rx.try_recv().unwrap()), ["600000002"]);
        assert_eq!(ExchangeStats::get(&stats.quarantined), 2);
        assert_eq!(ExchangeStats::get(&stats.rejected), 0);
        assert_eq!(ExchangeStats::get(&stats.trades), 3);
    }

    #[tokio::test]
    async fn a_new_run_judges_ids_from_the_cursor_the_last_one_left() {
        let (_, _, cursors, stats) = sink(1);
        cursors.set(
            btc(),
            Cursor {
                trade_id: TradeId::from_u64(600_000_000),
                timestamp: Timestamp::EPOCH,
            },
        );
        let (tx, mut rx) = mpsc::channel(4);
        let sink = TradeSink::new(tx, cursors.clone(), stats.clone());
        sink.send(vec![trade("BTC-USD", u64::MAX), trade("ETH-USD", u64::MAX)])
            .await
            .unwrap();
        // BTC has a reference, ETH has none yet: its first id cannot be judged.
        assert_eq!(ids(&rx.try_recv().unwrap()), ["18446744073709551615"]);
        assert_eq!(rx.try_recv().unwrap_err(), mpsc::error::TryRecvError::Empty);
        assert_eq!(ExchangeStats::get(&stats.quarantined), 1);
        assert_eq!(cursors.get(&btc()).unwrap().trade_id.as_str(), "600000000");
    }

    #[tokio::test]
    async fn a_stream_whose_ids_really_moved_is_followed_after_three() {
        let (sink, mut rx, cursors, stats) = sink(8);
        sink.send(vec![trade("BTC-USD", 1_000)]).await.unwrap();
        let moved = 5_000_000_000_000u64;
        sink.send((moved..moved + 5).map(|i| trade("BTC-USD", i)).collect())
            .await
            .unwrap();
        rx.try_recv().unwrap();
        let moved_on = rx.try_recv().unwrap();
        let moved_on = moved_on.trades();
        assert_eq!(moved_on.len(), 3);
        assert_eq!(moved_on[0].trade_id, TradeId::from_u64(moved + 2));
        assert_eq!(
            cursors.get(&btc()).unwrap().trade_id,
            TradeId::from_u64(moved + 4)
        );
        assert_eq!(ExchangeStats::get(&stats.quarantined), 2);
    }

    /// A negative price, a zero amount and a time 200 years ahead were once written as trades.
    #[tokio::test]
    async fn trades_that_cannot_have_happened_are_counted_sent_nowhere_and_move_no_cursor() {
        let (sink, mut rx, cursors, stats) = sink(8);
        let sink = sink.with_rules(TradeRules {
            max_clock_skew: Some(Duration::from_secs(86_400)),
            id_jump: Some(IdJumpLimit::DEFAULT),
        });
        let mut negative = trade("BTC-USD", 2);
        negative.price = -negative.price;
        let mut zero = trade("BTC-USD", 3);
        zero.amount = Decimal::ZERO;
        let mut ahead = trade("BTC-USD", 4);
        ahead.timestamp = Timestamp::from_unix_secs(4 + 200 * 365 * 86_400);
        sink.send(vec![
            trade("BTC-USD", 1),
            negative,
            zero,
            trade("ETH-USD", 5),
            ahead,
        ])
        .await
        .unwrap();
        assert_eq!(ids(&rx.try_recv().unwrap()), ["1", "5"]);
        assert_eq!(cursors.get(&btc()).unwrap().trade_id.as_str(), "1");
        assert_eq!(ExchangeStats::get(&stats.rejected), 3);
        assert_eq!(ExchangeStats::get(&stats.trades), 2);
        // Without the configuration's rules, times are not held to a window.
        let (bare, mut rx, _, _) = self::sink(1);
        let mut far = trade("BTC-USD", 4);
        far.timestamp = Timestamp::from_unix_secs(200 * 365 * 86_400);
        bare.send(vec![far]).await.unwrap();
        assert_eq!(rx.try_recv().unwrap().trades().len(), 1);
    }

    #[tokio::test]
    async fn turned_away_trades_reach_the_dead_letter_channel_with_their_reason() {
        let (sink, _rx, _, stats) = sink(8);
        let (dead_tx, mut dead_rx) = mpsc::channel(2);
        let sink = sink.with_rejected(dead_tx);
        let mut negative = trade("BTC-USD", 2);
        negative.price = -negative.price;
        let mut zero = trade("BTC-USD", 3);
        zero.amount = Decimal::ZERO;
        sink.send(vec![
            trade("BTC-USD", 1),
            trade("BTC-USD", u64::MAX),
            negative.clone(),
            zero,
        ])
        .await
        .unwrap();
        let first = dead_rx.try_recv().unwrap();
        assert_eq!(first.reason, RejectReason::IdOutOfLine);
        assert_eq!(first.trade.trade_id.as_str(), "18446744073709551615");
        let second = dead_rx.try_recv().unwrap();
        assert_eq!(
            second,
            Rejected {
                trade: negative,
                reason: RejectReason::NonPositivePrice
            }
        );
        // The channel held two: the third copy was dropped, and counted; its trade is counted
        // as rejected all the same.
        assert!(dead_rx.try_recv().is_err());
        assert_eq!(ExchangeStats::get(&stats.dead_letters_dropped), 1);
        assert_eq!(ExchangeStats::get(&stats.rejected), 2);
        assert_eq!(ExchangeStats::get(&stats.quarantined), 1);
    }

    #[tokio::test]
    async fn a_valid_batch_goes_through_as_it_came() {
        let (sink, mut rx, _, stats) = sink(1);
        let batch: Vec<Trade> = (1..=100).map(|i| trade("BTC-USD", i)).collect();
        let at = batch.as_ptr();
        sink.send(batch).await.unwrap();
        let got = rx.try_recv().unwrap();
        let got = got.trades();
        assert_eq!(got.as_ptr(), at, "not copied");
        assert_eq!(got.len(), 100);
        assert_eq!(ExchangeStats::get(&stats.rejected), 0);
        assert_eq!(ExchangeStats::get(&stats.quarantined), 0);
    }
}
