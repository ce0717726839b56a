//! Plumbing shared by the driver tests: the mock venues by name, an exchange run in a task
//! against one, its trades collected by id until every expected one arrived or a deadline
//! passed.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod mock;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::Transport;
use feeder_core::exchange::{Completeness, Exchange, ExchangeContext, ExchangeStats, Input};
use feeder_core::feeder::ExchangeFactory;
use feeder_core::model::{Gap, Trade};
use feeder_testkit::venues::{MockTrade, MockVenue, WsFault};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any one wait of a driver test may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A trade's identity: (symbol, trade id).
pub type Key = (String, String);

/// The identity of a published trade.
pub fn key(t: &MockTrade) -> Key {
    (t.symbol.to_string(), t.trade_id.to_string())
}

/// An exchange running in a task, with the receiving end of its sink.
pub struct Running {
    rx: mpsc::Receiver<Input>,
    ctx: ExchangeContext,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), feeder_core::ExchangeError>>,
    /// Every trade received, by (symbol, id); later copies replace earlier ones.
    seen: HashMap<Key, Trade>,
    /// Every gap recorded, in arrival order.
    pub gaps: Vec<Gap>,
    /// How many times a stream was reported caught up (live), all symbols together: once per
    /// symbol on a first connection, and once more after each backfill that completed.
    lives: usize,
    /// How many trades arrived in all, repeats included.
    received: usize,
    /// Whether a repeat must carry the same price, amount, side and time as the first copy.
    /// Off where a copy recovered over REST is legitimately coarser than the streamed one.
    same_repeats: bool,
}

impl Running {
    /// Runs `exchange` on the symbols of `mock`.
    pub fn start(exchange: Arc<dyn Exchange>, mock: &MockVenue) -> Self {
        let (tx, rx) = mpsc::channel(1_024);
        let shutdown = CancellationToken::new();
        let ctx = ExchangeContext::new(mock.symbols().to_vec(), tx, shutdown.clone());
        let task = tokio::spawn({
            let ctx = ctx.clone();
            async move { exchange.run(ctx).await }
        });
        Self {
            rx,
            ctx,
            shutdown,
            task,
            seen: HashMap::new(),
            gaps: Vec::new(),
            lives: 0,
            received: 0,
            same_repeats: false,
        }
    }

    /// [`Running::start`], with every repeat of a trade checked to equal its first copy.
    pub fn start_with_same_repeats(exchange: Arc<dyn Exchange>, mock: &MockVenue) -> Self {
        Self {
            same_repeats: true,
            ..Self::start(exchange, mock)
        }
    }

    /// Receives until every trade of `want` was seen, or panics at the deadline.
    pub async fn until_all(&mut self, want: &[MockTrade]) {
        let what = format!("{} trades", want.len());
        self.receive_until(&what, |run| {
            want.iter()
                .filter(|p| !run.seen.contains_key(&key(p)))
                .count()
        })
        .await;
    }

    /// Receives until streams were reported caught up `n` times in all, or panics at the
    /// deadline: after a reconnect, the backfill has ended once its symbol is live again.
    pub async fn until_live(&mut self, n: usize) {
        self.receive_until("live reports", |run| n.saturating_sub(run.lives))
            .await;
    }

    /// Receives until `missing` counts nothing missing, or panics at the deadline.
    async fn receive_until(&mut self, what: &str, missing: impl Fn(&Self) -> usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let missing = missing(self);
            if missing == 0 {
                return;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Input::Gap(g))) => self.gaps.push(g),
                Ok(Some(Input::Progress { completeness, .. })) => {
                    if completeness == Completeness::Live {
                        self.lives += 1;
                    }
                }
                Ok(Some(Input::Trades(batch))) => self.take(batch),
                Ok(Some(Input::Checkpoint(_) | Input::Resync(_))) => {}
                Ok(None) => panic!("the exchange stopped with {missing} of {what} missing"),
                Err(_) => panic!("{missing} of {what} missing after {WAIT:?}"),
            }
        }
    }

    fn take(&mut self, batch: Vec<Trade>) {
        for t in batch {
            self.received += 1;
            let key = (t.symbol.to_string(), t.trade_id.to_string());
            if self.same_repeats {
                if let Some(first) = self.seen.get(&key) {
                    // A repeat is the same trade, not a different one with the same id.
                    assert_eq!(
                        (first.price, first.amount, first.side, first.timestamp),
                        (t.price, t.amount, t.side, t.timestamp),
                        "{key:?}"
                    );
                }
            }
            self.seen.insert(key, t);
        }
    }

    /// The last copy received of `p`.
    pub fn get(&self, p: &MockTrade) -> &Trade {
        &self.seen[&key(p)]
    }

    /// How many distinct trades arrived.
    pub fn seen_count(&self) -> usize {
        self.seen.len()
    }

    /// Checks that what arrived is exactly `published` (after deduplication by id), each
    /// trade equal to its ground truth, and nothing else.
    pub fn assert_exactly(&self, published: &[MockTrade]) {
        self.assert_exactly_to(published, Precision::Exact);
    }

    /// [`Running::assert_exactly`], with times compared to `precision`.
    pub fn assert_exactly_to(&self, published: &[MockTrade], precision: Precision) {
        let want: HashMap<Key, &MockTrade> = published.iter().map(|p| (key(p), p)).collect();
        assert_eq!(want.len(), published.len(), "published ids are unique");
        for p in published {
            let t = &self.seen[&key(p)];
            assert!(precision.matches(p, t), "{t:?} != {p:?}");
        }
        for (k, t) in &self.seen {
            let p = want
                .get(k)
                .unwrap_or_else(|| panic!("{k:?} was never published"));
            assert!(precision.matches(p, t), "{t:?} != {p:?}");
        }
        assert_eq!(
            self.seen.len(),
            want.len(),
            "trades that were never published"
        );
    }

    /// Cancels the run, checks it ended cleanly, and hands back its counters.
    pub async fn stop(self) -> Arc<ExchangeStats> {
        self.shutdown.cancel();
        let r = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run did not return")
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
        self.ctx.stats
    }
}

/// How close a trade received must come to its ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every field, the time to the venue's full precision.
    Exact,
    /// Every field, the time to the second: what a venue whose REST API gives whole seconds
    /// (Bitstamp) recovers.
    Second,
}

impl Precision {
    /// Whether `t` is `p` to this precision.
    pub fn matches(self, p: &MockTrade, t: &Trade) -> bool {
        match self {
            Precision::Exact => p.matches(t),
            Precision::Second => p.matches_to_the_second(t),
        }
    }
}

/// A stream whose venue hangs after `before` trades while its WebSocket library keeps
/// pinging, during which `lost` more trades are published: the feeder must notice the
/// silence within its stale timeout, reconnect, and fill exactly the lost trades over REST
/// (no more: none of those it had is delivered again), then stream on. `mock` must list a
/// single symbol. Returns the run's counters.
pub async fn hang_is_filled_exactly(
    factory: &dyn ExchangeFactory,
    name: &str,
    mock: &MockVenue,
    before: usize,
    lost: usize,
) -> Arc<ExchangeStats> {
    assert_eq!(
        mock.symbols().len(),
        1,
        "one symbol, so that `before` are all its own"
    );
    mock.fault_next_connection(WsFault::HangAfter {
        after: before,
        ping_every: Duration::from_millis(100),
    });
    let mut cfg = mock.exchange_config(name, Transport::Websocket);
    cfg.stale_timeout = Some(Duration::from_secs(1));
    let mut run = Running::start(factory.build(&cfg).unwrap(), mock);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let mut published = mock.publish(before + lost);
    run.until_all(&published).await;
    // The backfill ends with a page that brings nothing new; then the stream is live again.
    run.until_live(2).await;
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly(&mock.published());
    assert!(run.gaps.is_empty(), "{:?}", run.gaps);
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.reconnects), 1, "{stats:?}");
    assert_eq!(
        ExchangeStats::get(&stats.backfilled),
        lost as u64,
        "{stats:?}"
    );
    stats
}
