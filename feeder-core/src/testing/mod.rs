//! The conformance suite every [`Writer`] must pass (feature `testing`).
//!
//! A store's test describes its store once, as a [`ConformanceTarget`]: how to build a
//! writer on it, how to read back what it holds, whether it keeps one copy per key, and
//! optionally how to take it down and bring it back. [`run_conformance`] then checks the
//! [`Writer`] contract against the real store:
//!
//! - **count**: N events in give the same N events out.
//! - **replay**: writing a batch again (what the runner does after an error) stores each
//!   event once in a keyed store, and exactly twice in an append-only one.
//! - **revisions**: a keyed store keeps the highest revision of a candle, whatever the order
//!   revisions arrive in (an append-only store keeps them all).
//! - **runner**: events fed through the real [`WriterRunner`] are all stored once its input
//!   ends, even when no batch filled up (the flush at shutdown).
//! - **outage**: when the store goes away and comes back, the runner retries and catches up,
//!   and nothing is lost.
//! - **bad target**: a bad address or bad credentials fail at build, quickly, with a terminal
//!   error.
//!
//! Every check files its events under an exchange name of its own (`cf-count`, `cf-replay`,
//! ...), so one store can serve the whole suite and [`ConformanceTarget::read_back`] may
//! return everything the store holds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::WriteError;
use crate::exchange::Backoff;
use crate::model::{Candle, Event, Interval, Side, Symbol, Timestamp, Trade, TradeId};
use crate::writer::{ErrorChain, RunnerSettings, WhenFull, Writer, WriterRunner, WriterStats};

/// An error from a store's read-back.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A store under test.
#[async_trait]
pub trait ConformanceTarget: Send + Sync {
    /// Builds a new writer on the store. Called once per check; writers of earlier checks
    /// have been closed by then.
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError>;

    /// Every event the store holds, in any order. Called only after the writers were
    /// closed.
    async fn read_back(&self) -> Result<Vec<Event>, BoxError>;

    /// True when the store keeps one copy per key (trade: exchange, symbol, trade id;
    /// candle: exchange, symbol, interval, open time, at its highest revision); false when
    /// it appends everything it is given (files, logs, topics).
    fn keyed(&self) -> bool;

    /// Makes the store unreachable (for example by cutting a
    /// `feeder_testkit::proxy::TcpProxy`). Returns false when the target cannot, and the
    /// outage check is skipped.
    async fn outage(&self) -> bool {
        false
    }

    /// Makes the store reachable again after [`outage`](Self::outage).
    async fn restore(&self) {}

    /// Builds a writer with a bad address or bad credentials, or `None` when the store has
    /// no such thing.
    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        None
    }
}

/// Settings of a conformance run.
#[derive(Clone, Debug)]
pub struct ConformanceSettings {
    /// Events per check (trades; a tenth as many candles are added).
    pub events: usize,
    /// The longest any single step may take before the check fails as hung.
    pub step_timeout: Duration,
    /// How long the outage check waits, with the store down, for the writer to report an
    /// error (or to have buffered everything durably) before bringing the store back.
    pub outage_timeout: Duration,
}

impl Default for ConformanceSettings {
    fn default() -> Self {
        Self {
            events: 300,
            step_timeout: Duration::from_secs(60),
            outage_timeout: Duration::from_secs(60),
        }
    }
}

/// What became of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check ran and passed.
    Passed,
    /// The check does not apply to the target; the reason says why.
    Skipped(&'static str),
}

/// The outcome of every check, in the order they ran.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Check name and outcome.
    pub checks: Vec<(&'static str, Outcome)>,
    /// Errors the runner saw during the outage check (0 when skipped or when the writer
    /// buffered through the outage).
    pub outage_errors: u64,
}

impl Report {
    /// The names of the checks that passed.
    pub fn passed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, o)| *o == Outcome::Passed)
            .map(|(n, _)| *n)
            .collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, outcome) in &self.checks {
            match outcome {
                Outcome::Passed => writeln!(f, "{name}: passed")?,
                Outcome::Skipped(why) => writeln!(f, "{name}: skipped ({why})")?,
            }
        }
        Ok(())
    }
}

/// A check that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {message}")]
pub struct ConformanceError {
    /// The check.
    pub check: &'static str,
    /// What went wrong.
    pub message: String,
}

fn fail(check: &'static str, message: impl Into<String>) -> ConformanceError {
    ConformanceError {
        check,
        message: message.into(),
    }
}

/// Runs every check with default settings.
pub async fn run_conformance(target: &dyn ConformanceTarget) -> Result<Report, ConformanceError> {
    run_conformance_with(target, &ConformanceSettings::default()).await
}

/// Runs every check.
pub async fn run_conformance_with(
    target: &dyn ConformanceTarget,
    settings: &ConformanceSettings,
) -> Result<Report, ConformanceError> {
    let mut report = Report::default();
    check_count(target, settings).await?;
    report.checks.push(("count", Outcome::Passed));
    check_replay(target, settings).await?;
    report.checks.push(("replay", Outcome::Passed));
    check_revisions(target, settings).await?;
    report.checks.push(("revisions", Outcome::Passed));
    check_runner(target, settings).await?;
    report.checks.push(("runner", Outcome::Passed));
    match check_outage(target, settings).await? {
        Some(errors) => {
            report.outage_errors = errors;
            report.checks.push(("outage", Outcome::Passed));
        }
        None => report.checks.push((
            "outage",
            Outcome::Skipped("the target cannot take its store down"),
        )),
    }
    let bad = if check_bad_target(target, settings).await? {
        Outcome::Passed
    } else {
        Outcome::Skipped("the store has no address or credentials to get wrong")
    };
    report.checks.push(("bad target", bad));
    Ok(report)
}

/// 2024-01-02T00:00:00Z, the day sample events fall on.
const DAY: i64 = 1_704_153_600;

/// `n` trades over two symbols of `exchange`, with distinct ids, varied decimals (up to 10
/// fractional digits) and microsecond times within one UTC day, followed by `n / 10` candles
/// at revision 0 (every third one marked incomplete) and `n / 50` gaps (with and without an
/// upper bound). Times have microsecond precision so that stores that keep no more
/// (PostgreSQL) give back equal events.
pub fn sample_events(exchange: &str, n: usize) -> Vec<Event> {
    let exchange: Arc<str> = Arc::from(exchange);
    let symbols = sample_symbols();
    let mut out = Vec::with_capacity(n + n / 10);
    if symbols.is_empty() {
        return out;
    }
    for i in 0..n {
        let i64_i = i as i64;
        let micros = (DAY + i64_i * 7) * 1_000_000 + (i64_i * 7_919) % 1_000_000;
        out.push(Event::Trade(Trade {
            exchange: Arc::clone(&exchange),
            symbol: symbols[i % symbols.len()].clone(),
            trade_id: TradeId::from_u64(1_000_000 + i as u64),
            price: rust_decimal::Decimal::new(4_321_012 + i64_i, 2),
            amount: rust_decimal::Decimal::new(1 + i64_i * 37, 10),
            side: match i % 3 {
                0 => Side::Buy,
                1 => Side::Sell,
                _ => Side::Unknown,
            },
            timestamp: Timestamp::from_unix_micros(micros),
            received_at: Timestamp::from_unix_micros(micros + 1_234),
        }));
    }
    for j in 0..n / 10 {
        out.push(candle(&exchange, &symbols[j % symbols.len()], j as i64, 0));
    }
    for k in 0..n / 50 {
        out.push(gap(&exchange, &symbols[k % symbols.len()], k as i64));
    }
    out
}

/// A gap of the sample day: every other one without its upper bound.
fn gap(exchange: &Arc<str>, symbol: &Symbol, k: i64) -> Event {
    let after = 2_000_000 + 10 * k as u64;
    let from = Timestamp::from_unix_micros((DAY + 600 * k) * 1_000_000 + 123_456);
    let closed = k % 2 == 0;
    Event::Gap(crate::model::Gap {
        exchange: Arc::clone(exchange),
        symbol: symbol.clone(),
        after_trade_id: TradeId::from_u64(after),
        before_trade_id: closed.then(|| TradeId::from_u64(after + 5)),
        from,
        to: closed.then(|| Timestamp::from_unix_micros(from.unix_nanos() / 1_000 + 90_000_000)),
        reason: match k % 3 {
            0 => crate::model::GapReason::VenueLimit,
            1 => crate::model::GapReason::BackfillFailed,
            _ => crate::model::GapReason::NoBackfill,
        },
    })
}

/// The two symbols sample events use.
fn sample_symbols() -> Vec<Symbol> {
    ["BTC-USD", "ETH-USDT"]
        .iter()
        .filter_map(|s| Symbol::parse(s).ok())
        .collect()
}

fn candle(exchange: &Arc<str>, symbol: &Symbol, slot: i64, revision: u32) -> Event {
    let open = DAY + slot * 1_800;
    let r = i64::from(revision);
    Event::Candle(Candle {
        exchange: Arc::clone(exchange),
        symbol: symbol.clone(),
        interval: Interval::M30,
        open_time: Timestamp::from_unix_secs(open),
        close_time: Timestamp::from_unix_secs(open + 1_800),
        open: rust_decimal::Decimal::new(43_200 + slot, 0),
        high: rust_decimal::Decimal::new(4_325_050 + slot + r, 2),
        low: rust_decimal::Decimal::new(43_190, 0),
        close: rust_decimal::Decimal::new(4_321_012 + r, 2),
        volume: rust_decimal::Decimal::new(125 + r, 1),
        trades: 431 + revision as u64,
        revision,
        // Every third slot is incomplete, so a store that loses the flag fails the checks.
        complete: slot % 3 != 1,
    })
}

/// The identity of an event in a keyed store.
pub fn event_key(event: &Event) -> String {
    match event {
        Event::Trade(t) => format!("trade|{}|{}|{}", t.exchange, t.symbol, t.trade_id),
        Event::Candle(c) => format!(
            "candle|{}|{}|{}|{}",
            c.exchange,
            c.symbol,
            c.interval,
            c.open_time.unix_nanos()
        ),
        Event::Gap(g) => format!("gap|{}|{}|{}", g.exchange, g.symbol, g.after_trade_id),
    }
}

async fn within<T>(
    check: &'static str,
    what: &str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, ConformanceError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| fail(check, format!("{what} did not finish within {limit:?}")))
}

async fn build(
    target: &dyn ConformanceTarget,
    check: &'static str,
    s: &ConformanceSettings,
) -> Result<Box<dyn Writer>, ConformanceError> {
    within(check, "building the writer", s.step_timeout, target.build())
        .await?
        .map_err(|e| fail(check, format!("build failed: {}", ErrorChain(&e))))
}

async fn write(
    w: &mut dyn Writer,
    batch: &[Event],
    check: &'static str,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    within(check, "a write", s.step_timeout, w.write(batch))
        .await?
        .map_err(|e| fail(check, format!("write failed: {}", ErrorChain(&e))))
}

async fn close(
    mut w: Box<dyn Writer>,
    check: &'static str,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    within(check, "close", s.step_timeout, w.close())
        .await?
        .map_err(|e| fail(check, format!("close failed: {}", ErrorChain(&e))))
}

/// What the store holds for one check's exchange, by key.
async fn stored(
    target: &dyn ConformanceTarget,
    exchange: &str,
    check: &'static str,
    s: &ConformanceSettings,
) -> Result<BTreeMap<String, Vec<Event>>, ConformanceError> {
    let all = within(check, "read-back", s.step_timeout, target.read_back())
        .await?
        .map_err(|e| fail(check, format!("read-back failed: {}", ErrorChain(&*e))))?;
    let mut by_key: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in all.into_iter().filter(|e| e.exchange() == exchange) {
        by_key.entry(event_key(&e)).or_default().push(e);
    }
    Ok(by_key)
}

/// Checks that every expected event is stored exactly `copies` times (`at_least`: at least
/// once) and nothing else is.
fn expect_stored(
    check: &'static str,
    got: &BTreeMap<String, Vec<Event>>,
    want: &[Event],
    copies: usize,
    at_least: bool,
) -> Result<(), ConformanceError> {
    let mut want_by_key: BTreeMap<String, &Event> = BTreeMap::new();
    for e in want {
        want_by_key.insert(event_key(e), e);
    }
    for (key, expected) in &want_by_key {
        let Some(found) = got.get(key) else {
            return Err(fail(
                check,
                format!(
                    "missing {key} ({} of {} keys stored)",
                    got.len(),
                    want_by_key.len()
                ),
            ));
        };
        let count_ok = if at_least {
            !found.is_empty()
        } else {
            found.len() == copies
        };
        if !count_ok {
            return Err(fail(
                check,
                format!("{key} stored {} times, expected {copies}", found.len()),
            ));
        }
        if let Some(bad) = found.iter().find(|e| *e != *expected) {
            return Err(fail(
                check,
                format!("{key} came back different:\n stored {bad:?}\n wanted {expected:?}"),
            ));
        }
    }
    if let Some(extra) = got.keys().find(|k| !want_by_key.contains_key(*k)) {
        return Err(fail(check, format!("unexpected event stored: {extra}")));
    }
    Ok(())
}

async fn check_count(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    const CHECK: &str = "count";
    let events = sample_events("cf-count", s.events);
    let mut w = build(target, CHECK, s).await?;
    write(&mut *w, &[], CHECK, s).await?;
    for part in events.chunks(97) {
        write(&mut *w, part, CHECK, s).await?;
    }
    close(w, CHECK, s).await?;
    let got = stored(target, "cf-count", CHECK, s).await?;
    expect_stored(CHECK, &got, &events, 1, false)
}

async fn check_replay(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    const CHECK: &str = "replay";
    let events = sample_events("cf-replay", s.events.min(100));
    let mut w = build(target, CHECK, s).await?;
    write(&mut *w, &events, CHECK, s).await?;
    write(&mut *w, &events, CHECK, s).await?;
    close(w, CHECK, s).await?;
    let got = stored(target, "cf-replay", CHECK, s).await?;
    let copies = if target.keyed() { 1 } else { 2 };
    expect_stored(CHECK, &got, &events, copies, false)
}

async fn check_revisions(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    const CHECK: &str = "revisions";
    let ex: Arc<str> = Arc::from("cf-revisions");
    let Some(btc) = sample_symbols().into_iter().next() else {
        return Err(fail(CHECK, "no sample symbol"));
    };
    let (r0, r2, r1) = (
        candle(&ex, &btc, 0, 0),
        candle(&ex, &btc, 0, 2),
        candle(&ex, &btc, 0, 1),
    );
    // Two revisions of another candle in one batch.
    let (s3, s4) = (candle(&ex, &btc, 1, 3), candle(&ex, &btc, 1, 4));
    let mut w = build(target, CHECK, s).await?;
    for batch in [
        vec![r0.clone()],
        vec![r2.clone()],
        vec![r1.clone()],
        vec![s4.clone(), s3.clone()],
    ] {
        write(&mut *w, &batch, CHECK, s).await?;
    }
    close(w, CHECK, s).await?;
    let got = stored(target, "cf-revisions", CHECK, s).await?;
    if target.keyed() {
        expect_stored(CHECK, &got, &[r2, s4], 1, false)
    } else {
        let total: usize = got.values().map(Vec::len).sum();
        if total != 5 {
            return Err(fail(
                CHECK,
                format!("an append-only store should hold all 5 revisions, holds {total}"),
            ));
        }
        Ok(())
    }
}

fn runner_settings(batch_size: usize, batch_delay: Duration) -> RunnerSettings {
    RunnerSettings {
        name: None,
        batch_size,
        batch_delay,
        queue_capacity: 64,
        queue_bytes: 32 << 20,
        when_full: WhenFull::Block,
        retry: Backoff::new(Duration::from_millis(20), Duration::from_millis(300)),
        spill: None,
    }
}

/// Polls `done` until it holds or `limit` passes (bounded: one look every 20 ms).
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check_runner(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<(), ConformanceError> {
    const CHECK: &str = "runner";
    let events = sample_events("cf-runner", s.events);
    let w = build(target, CHECK, s).await?;
    // Neither the size nor the delay is ever reached: only the end of input writes.
    let abort = tokio_util::sync::CancellationToken::new();
    let (handle, task) = WriterRunner::spawn(
        w,
        runner_settings(events.len() * 10, Duration::from_secs(3_600)),
        abort.clone(),
    );
    let stats = Arc::clone(handle.stats());
    for part in events.chunks(31) {
        if !handle.send(Arc::new(part.to_vec())).await {
            return Err(fail(CHECK, "the runner stopped taking events"));
        }
    }
    drop(handle);
    let joined = within(CHECK, "the runner's shutdown", s.step_timeout, task).await;
    abort.cancel();
    joined?.map_err(|e| fail(CHECK, format!("the runner task failed: {e}")))?;
    expect_clean(CHECK, &stats, events.len())?;
    let got = stored(target, "cf-runner", CHECK, s).await?;
    expect_stored(CHECK, &got, &events, 1, false)
}

fn expect_clean(
    check: &'static str,
    stats: &WriterStats,
    n: usize,
) -> Result<(), ConformanceError> {
    let stored = stats.events.load(Ordering::SeqCst);
    let dropped = stats.dropped.load(Ordering::SeqCst);
    if stored != n as u64 || dropped != 0 {
        return Err(fail(
            check,
            format!("runner stored {stored} of {n} events and dropped {dropped}"),
        ));
    }
    Ok(())
}

/// Returns the number of errors seen during the outage, or `None` when skipped.
async fn check_outage(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<Option<u64>, ConformanceError> {
    const CHECK: &str = "outage";
    let events = sample_events("cf-outage", s.events);
    let (first, second) = events.split_at(events.len() / 2);
    let w = build(target, CHECK, s).await?;
    let abort = tokio_util::sync::CancellationToken::new();
    let (handle, task) = WriterRunner::spawn(
        w,
        runner_settings(25, Duration::from_millis(5)),
        abort.clone(),
    );
    let stats = Arc::clone(handle.stats());
    let result = async {
        for part in first.chunks(25) {
            if !handle.send(Arc::new(part.to_vec())).await {
                return Err(fail(CHECK, "the runner stopped taking events"));
            }
        }
        let n_first = first.len() as u64;
        if !wait_until(s.step_timeout, || {
            stats.events.load(Ordering::SeqCst) >= n_first
        })
        .await
        {
            return Err(fail(CHECK, "the events before the outage were not stored"));
        }
        if !target.outage().await {
            return Ok(false);
        }
        for part in second.chunks(25) {
            if !handle.send(Arc::new(part.to_vec())).await {
                target.restore().await;
                return Err(fail(CHECK, "the runner stopped taking events"));
            }
        }
        let total = events.len() as u64;
        // The writer either fails (and the runner retries) or buffers durably on its side.
        let reacted = wait_until(s.outage_timeout, || {
            stats.errors.load(Ordering::SeqCst) > 0 || stats.events.load(Ordering::SeqCst) >= total
        })
        .await;
        target.restore().await;
        if !reacted {
            return Err(fail(
                CHECK,
                format!(
                    "with the store down the writer neither failed nor stored the batch within \
                     {:?}: a silent hang",
                    s.outage_timeout
                ),
            ));
        }
        Ok(true)
    }
    .await;
    drop(handle);
    let joined = within(
        CHECK,
        "catching up after the outage",
        s.step_timeout * 2,
        task,
    )
    .await;
    abort.cancel();
    let ran = result?;
    joined?.map_err(|e| fail(CHECK, format!("the runner task failed: {e}")))?;
    if !ran {
        return Ok(None);
    }
    expect_clean(CHECK, &stats, events.len())?;
    let got = stored(target, "cf-outage", CHECK, s).await?;
    // A batch that failed in flight may have reached an append-only store before the error:
    // there the retry can add a copy; a keyed store must hold exactly one.
    expect_stored(CHECK, &got, &events, 1, !target.keyed())?;
    Ok(Some(stats.errors.load(Ordering::SeqCst)))
}

/// Returns false when skipped.
async fn check_bad_target(
    target: &dyn ConformanceTarget,
    s: &ConformanceSettings,
) -> Result<bool, ConformanceError> {
    const CHECK: &str = "bad target";
    let Some(result) = within(
        CHECK,
        "building a broken writer",
        s.step_timeout,
        target.build_broken(),
    )
    .await?
    else {
        return Ok(false);
    };
    match result {
        Ok(_) => Err(fail(
            CHECK,
            "a writer with a bad address or credentials was built",
        )),
        Err(e) if e.is_retriable() => Err(fail(
            CHECK,
            format!(
                "the start-up error should be terminal, not retriable: {}",
                ErrorChain(&e)
            ),
        )),
        Err(e) if e.to_string().trim().is_empty() => {
            Err(fail(CHECK, "the start-up error says nothing"))
        }
        Err(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An in-memory store, keyed or not, that can be taken down.
    #[derive(Default)]
    struct Memory {
        keyed: bool,
        store: Arc<Mutex<Vec<Event>>>,
        down: Arc<std::sync::atomic::AtomicBool>,
        /// Drops every other event: a broken writer the suite must catch.
        lossy: bool,
    }

    struct MemoryWriter {
        keyed: bool,
        lossy: bool,
        store: Arc<Mutex<Vec<Event>>>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl Writer for MemoryWriter {
        fn name(&self) -> &str {
            "memory"
        }
        async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(WriteError::retriable("store down", "connection refused"));
            }
            let mut store = self.store.lock().unwrap();
            for (i, e) in batch.iter().enumerate() {
                if self.lossy && i % 2 == 1 {
                    continue;
                }
                if self.keyed {
                    let key = event_key(e);
                    let rev = |e: &Event| match e {
                        Event::Candle(c) => c.revision,
                        Event::Trade(_) | Event::Gap(_) => 0,
                    };
                    match store.iter_mut().find(|x| event_key(x) == key) {
                        Some(x) if rev(e) > rev(x) => *x = e.clone(),
                        Some(_) => {}
                        None => store.push(e.clone()),
                    }
                } else {
                    store.push(e.clone());
                }
            }
            Ok(())
        }
    }

    #[async_trait]
    impl ConformanceTarget for Memory {
        async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
            Ok(Box::new(MemoryWriter {
                keyed: self.keyed,
                lossy: self.lossy,
                store: Arc::clone(&self.store),
                down: Arc::clone(&self.down),
            }))
        }
        async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
            Ok(self.store.lock().unwrap().clone())
        }
        fn keyed(&self) -> bool {
            self.keyed
        }
        async fn outage(&self) -> bool {
            self.down.store(true, Ordering::SeqCst);
            true
        }
        async fn restore(&self) {
            self.down.store(false, Ordering::SeqCst);
        }
        async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
            Some(Err(WriteError::terminal("bad url", "no such host")))
        }
    }

    fn quick() -> ConformanceSettings {
        ConformanceSettings {
            events: 120,
            step_timeout: Duration::from_secs(10),
            outage_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_correct_store_passes_every_check() {
        for keyed in [true, false] {
            let target = Memory {
                keyed,
                ..Memory::default()
            };
            let report = run_conformance_with(&target, &quick()).await.unwrap();
            assert_eq!(report.passed().len(), 6, "{report}");
            assert!(report.outage_errors > 0);
        }
    }

    #[tokio::test]
    async fn a_lossy_store_fails_the_count_check() {
        let target = Memory {
            lossy: true,
            ..Memory::default()
        };
        let err = run_conformance_with(&target, &quick()).await.unwrap_err();
        assert_eq!(err.check, "count");
        assert!(err.message.contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn a_store_claiming_keys_it_does_not_keep_fails_the_replay_check() {
        // Appends but says it is keyed.
        struct Liar(Memory);
        #[async_trait]
        impl ConformanceTarget for Liar {
            async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
                self.0.build().await
            }
            async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
                self.0.read_back().await
            }
            fn keyed(&self) -> bool {
                true
            }
        }
        let err = run_conformance_with(&Liar(Memory::default()), &quick())
            .await
            .unwrap_err();
        assert_eq!(err.check, "replay");
        assert!(err.message.contains("stored 2 times"), "{err}");
    }

    #[test]
    fn sample_events_have_distinct_keys_and_micro_times() {
        let ev = sample_events("x", 200);
        assert_eq!(ev.len(), 224);
        let keys: std::collections::HashSet<_> = ev.iter().map(event_key).collect();
        assert_eq!(keys.len(), ev.len());
        for e in &ev {
            assert_eq!(e.time().unix_nanos() % 1_000, 0);
        }
    }
}
