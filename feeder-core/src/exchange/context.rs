//! What an exchange task is given: where to send trades, when to stop, and where it left off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{truncate_for_log, ExchangeError, ParseError};

/// How long a batch may still take to enter the pipeline once shutdown began.
const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
use crate::model::{Gap, Symbol, Timestamp, Trade, TradeId};

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
}

impl ExchangeStats {
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
            Input::Gap(_) | Input::Progress { .. } => &[],
        }
    }
}

/// Where an exchange sends its trades: a bounded channel of batches into the pipeline.
///
/// Sending waits when the pipeline is behind (backpressure), and fails only when the
/// pipeline is gone.
#[derive(Clone, Debug)]
pub struct TradeSink {
    tx: mpsc::Sender<Input>,
    cursors: Cursors,
    stats: Arc<ExchangeStats>,
}

impl TradeSink {
    /// A sink over `tx` that advances `cursors` and counts into `stats`.
    pub fn new(tx: mpsc::Sender<Input>, cursors: Cursors, stats: Arc<ExchangeStats>) -> Self {
        Self { tx, cursors, stats }
    }

    /// Sends a batch (an empty one is skipped).
    pub async fn send(&self, trades: Vec<Trade>) -> Result<(), ExchangeError> {
        if trades.is_empty() {
            return Ok(());
        }
        self.cursors.advance(&trades);
        let n = trades.len() as u64;
        self.tx
            .send(Input::Trades(trades))
            .await
            .map_err(|_| ExchangeError::PipelineClosed)?;
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
        let stats = Arc::new(ExchangeStats::default());
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
}
