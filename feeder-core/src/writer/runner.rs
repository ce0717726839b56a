//! The runner around one writer: its own bounded queue, batching by count and by delay,
//! retries with backoff, and a flush at shutdown.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::spill::{Pushed, Spill, SpillSettings};
use super::Writer;
use crate::budget::{batch_bytes, ByteBudget, Held};
use crate::config::WriterConfig;
use crate::error::{ErrorChain, Rejection, WriteError};
use crate::exchange::{Backoff, Checkpoint, Cursor};
use crate::model::{Event, Symbol, Timestamp};
use crate::observe::LatencyHistogram;
use crate::writer::resume::{resume_points, ResumeError, ResumePoints};

pub use crate::config::WhenFullPolicy as WhenFull;

/// How the runner feeds its writer.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// The writer's name in logs and the summary: the config's `name`, else its type. `None`
    /// uses the writer's own [`Writer::name`].
    pub name: Option<String>,
    /// Most events per `write` call.
    pub batch_size: usize,
    /// Longest time a partial batch waits for more events when the queue is empty. Zero
    /// writes as soon as nothing more is queued: the lowest latency, with batches that grow
    /// by themselves under load.
    pub batch_delay: Duration,
    /// Capacity of the queue in front of the writer, in batches.
    pub queue_capacity: usize,
    /// Most bytes of events in the queue in front of the writer (estimated, see
    /// [`batch_bytes`]); the queue is full when either bound is reached.
    pub queue_bytes: u64,
    /// What the queue does when full.
    pub when_full: WhenFull,
    /// Backoff between retries of a failing batch.
    pub retry: Backoff,
    /// An on-disk spill buffer used when the queue is full (see [`SpillSettings`]).
    pub spill: Option<SpillSettings>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        // The writer's own name, rather than that of a placeholder config.
        let mut settings = Self::from(&WriterConfig::new("default"));
        settings.name = None;
        settings
    }
}

impl From<&WriterConfig> for RunnerSettings {
    fn from(c: &WriterConfig) -> Self {
        Self {
            name: Some(c.display_name().to_owned()),
            batch_size: c.batch_size.max(1),
            batch_delay: c.batch_delay,
            queue_capacity: c.queue_capacity.max(1),
            queue_bytes: c.queue_bytes.bytes(),
            when_full: c.when_full,
            retry: Backoff::new(
                Duration::from_millis(100).min(c.retry_max_delay),
                c.retry_max_delay,
            ),
            spill: c.spill.as_ref().map(|s| SpillSettings {
                path: s.path.join(format!("{}.spill", c.display_name())),
                max_bytes: s.max_bytes,
            }),
        }
    }
}

/// Counters of one writer.
#[derive(Debug)]
pub struct WriterStats {
    /// Events stored (acknowledged by `write`).
    pub events: AtomicU64,
    /// Successful `write` calls.
    pub batches: AtomicU64,
    /// Failed `write`, `flush` or `close` calls.
    pub errors: AtomicU64,
    /// Retries of a failed batch.
    pub retries: AtomicU64,
    /// Events given up on: dropped by a full queue under the `drop` policy, or in a batch the
    /// writer refused with a terminal error.
    pub dropped: AtomicU64,
    /// Events the store refused one by one while it stored the rest of their batch (see
    /// [`WriteError::Rejected`]).
    pub rejected: AtomicU64,
    /// Trades skipped because the store already held them at start-up (see
    /// [`Writer::resume_point`]).
    pub already_stored: AtomicU64,
    /// Events that went through the spill file because the queue was full.
    pub spilled: AtomicU64,
    /// Events in the queue now, waiting for the runner.
    pub queued: AtomicU64,
    /// How long each `write` that stored its batch took.
    pub write_latency: LatencyHistogram,
    /// Since when the store fails: the Unix nanoseconds of the first error after the last
    /// stored batch, or `i64::MIN` while it does not.
    failing_since: AtomicI64,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            events: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            already_stored: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            write_latency: LatencyHistogram::default(),
            failing_since: AtomicI64::new(i64::MIN),
        }
    }
}

impl WriterStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Since when the store has been failing (every `write`, `flush` or `close` since then
    /// failed), or `None` while the last one succeeded.
    pub fn failing_since(&self) -> Option<Timestamp> {
        match self.failing_since.load(Ordering::Relaxed) {
            i64::MIN => None,
            ns => Some(Timestamp::from_unix_nanos(ns, 9)),
        }
    }

    fn failed(&self) {
        let now = Timestamp::now().unix_nanos();
        let _ = self.failing_since.compare_exchange(
            i64::MIN,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn succeeded(&self) {
        self.failing_since.store(i64::MIN, Ordering::Relaxed);
    }
}

/// A batch in a writer's queue, with the bytes it holds of the queue's budget: they go back
/// when the runner has taken the batch. A control item has no events.
#[derive(Debug)]
struct Queued {
    events: Arc<Vec<Event>>,
    _held: Held,
    /// Something to do once everything queued before is written; `None` for every batch.
    /// Boxed, so that a batch in the queue stays two words and a pointer.
    control: Option<Box<Control>>,
}

/// What the runner does, in order with the batches, once everything queued before it is
/// written (its pending batch, and its spill file if one is in use).
#[derive(Debug)]
enum Control {
    /// Confirms the checkpoint, unless this writer ever gave an event up.
    Checkpoint(Checkpoint),
    /// Asks the store where it left off for each stream, and skips from then on what it
    /// holds, as at start-up.
    Resume {
        streams: Vec<(Arc<str>, Symbol)>,
        reply: oneshot::Sender<Result<ResumePoints, ResumeError>>,
    },
    /// Reads back what the store holds of a stream ([`Writer::replay`]).
    Replay {
        exchange: Arc<str>,
        symbol: Symbol,
        from: Timestamp,
        upto: Cursor,
        reply: oneshot::Sender<Result<Option<Vec<Event>>, WriteError>>,
    },
}

/// The sending side of a writer's queue, held by the fan-out.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Queued>,
    /// The queue's bound in bytes, shared with the runner's task.
    budget: ByteBudget,
    when_full: WhenFull,
    stats: Arc<WriterStats>,
    spill: Option<Arc<Spill>>,
    /// The shutdown deadline: a sender stops waiting for room then.
    abort: CancellationToken,
}

impl WriterHandle {
    /// The writer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Gauges of the queue, to read without holding the queue open (a [`WriterHandle`]
    /// kept elsewhere would keep the writer from ever seeing the end of its input).
    pub fn gauges(&self) -> QueueGauges {
        QueueGauges {
            budget: self.budget.clone(),
            spill: self.spill.clone(),
        }
    }

    /// Queues a batch, following the writer's full-policy. Returns false when the writer's
    /// task is gone (its events are counted as dropped).
    pub async fn send(&self, batch: Arc<Vec<Event>>) -> bool {
        let n = batch.len() as u64;
        if let Some(spill) = &self.spill {
            return self.send_or_spill(spill, batch).await;
        }
        self.send_by_policy(batch, n).await
    }

    /// With a spill buffer: the queue while it has room and nothing is spilled, else the
    /// spill; when that is full too, the `when_full` policy.
    async fn send_or_spill(&self, spill: &Spill, mut batch: Arc<Vec<Event>>) -> bool {
        let n = batch.len() as u64;
        loop {
            if !spill.is_active() {
                if let Some(held) = self.budget.try_acquire(batch_bytes(batch.len())) {
                    match self.tx.try_send(Queued {
                        events: batch,
                        _held: held,
                        control: None,
                    }) {
                        Ok(()) => {
                            WriterStats::add(&self.stats.queued, n);
                            return true;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            WriterStats::add(&self.stats.dropped, n);
                            return false;
                        }
                        Err(mpsc::error::TrySendError::Full(q)) => batch = q.events,
                    }
                }
            }
            // Registered before trying, so that space freed meanwhile is not missed.
            let freed = spill.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match spill.push(&batch) {
                Ok(Pushed::Spilled) => {
                    WriterStats::add(&self.stats.spilled, n);
                    return true;
                }
                Ok(Pushed::Full) if self.when_full == WhenFull::Block => {
                    tracing::warn!(writer = %self.name, path = %spill.path().display(), "spill file full: waiting for the store");
                    // Past the shutdown deadline the runner no longer replays the spill.
                    tokio::select! {
                        () = freed => {}
                        () = self.abort.cancelled() => {
                            WriterStats::add(&self.stats.dropped, n);
                            tracing::error!(writer = %self.name, events = n, "shutdown deadline: spill file still full, batch DROPPED");
                            return true;
                        }
                    }
                }
                Ok(Pushed::Full) => {
                    WriterStats::add(&self.stats.dropped, n);
                    tracing::error!(writer = %self.name, events = n, "queue and spill file full: batch DROPPED (when_full: drop)");
                    return true;
                }
                Err(e) => {
                    tracing::error!(writer = %self.name, path = %spill.path().display(), error = %e, "cannot spill; falling back to the queue");
                    return self.send_by_policy(batch, n).await;
                }
            }
        }
    }

    async fn send_by_policy(&self, batch: Arc<Vec<Event>>, n: u64) -> bool {
        let bytes = batch_bytes(batch.len());
        match self.when_full {
            WhenFull::Block => {
                // A runner that is gone dropped its queue, and with it every byte held, so
                // this wait ends; the send then fails.
                let held = self.budget.acquire(bytes).await;
                let queued = Queued {
                    events: batch,
                    _held: held,
                    control: None,
                };
                if self.tx.send(queued).await.is_err() {
                    WriterStats::add(&self.stats.dropped, n);
                    return false;
                }
                WriterStats::add(&self.stats.queued, n);
                true
            }
            WhenFull::Drop => match self.budget.try_acquire(bytes).map(|held| {
                self.tx.try_send(Queued {
                    events: batch,
                    _held: held,
                    control: None,
                })
            }) {
                Some(Ok(())) => {
                    WriterStats::add(&self.stats.queued, n);
                    true
                }
                None | Some(Err(mpsc::error::TrySendError::Full(_))) => {
                    WriterStats::add(&self.stats.dropped, n);
                    tracing::error!(
                        writer = %self.name,
                        events = n,
                        "writer queue full: batch DROPPED (when_full: drop)"
                    );
                    true
                }
                Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                    WriterStats::add(&self.stats.dropped, n);
                    false
                }
            },
        }
    }
}

impl WriterHandle {
    /// Queues a control item behind everything queued so far. It always waits for room,
    /// whatever the full-policy: it is small, and dropping it would fake or lose an answer.
    /// A runner that is gone drops it (which fails a checkpoint, and closes a reply).
    async fn send_control(&self, control: Control) {
        let held = self.budget.acquire(0).await;
        let _ = self
            .tx
            .send(Queued {
                events: Arc::new(Vec::new()),
                _held: held,
                control: Some(Box::new(control)),
            })
            .await;
    }

    /// Queues `checkpoint` behind everything queued so far: the runner confirms it once all
    /// of that is durable in the store, if this writer never gave an event up; otherwise, or
    /// if the runner is gone, it is dropped unconfirmed (see [`Checkpoint`]). Under
    /// `when_full: drop` a full queue fails it at once rather than hold up the pipeline (and
    /// with it the other writers): such a queue drops events anyway.
    pub async fn checkpoint(&self, checkpoint: Checkpoint) {
        let control = Control::Checkpoint(checkpoint);
        if self.when_full == WhenFull::Block {
            return self.send_control(control).await;
        }
        let Some(held) = self.budget.try_acquire(0) else {
            tracing::warn!(writer = %self.name, "queue full under when_full: drop: checkpoint failed");
            return;
        };
        // A full or closed queue drops the checkpoint with the item: it fails.
        let _ = self.tx.try_send(Queued {
            events: Arc::new(Vec::new()),
            _held: held,
            control: Some(Box::new(control)),
        });
    }

    /// Once everything queued so far is written: where the store left off for each of
    /// `streams` (asked with retries, as at start-up), which this writer also skips from then
    /// on. `None` when the runner is gone.
    pub(crate) async fn resume(
        &self,
        streams: Vec<(Arc<str>, Symbol)>,
    ) -> Option<Result<ResumePoints, ResumeError>> {
        let (reply, rx) = oneshot::channel();
        self.send_control(Control::Resume { streams, reply }).await;
        rx.await.ok()
    }

    /// Once everything queued so far is written: the events the store holds of (`exchange`,
    /// `symbol`) from `from` up to `upto` ([`Writer::replay`]); `Ok(None)` when it cannot
    /// read back. `None` when the runner is gone.
    pub(crate) async fn replay(
        &self,
        exchange: Arc<str>,
        symbol: Symbol,
        from: Timestamp,
        upto: Cursor,
    ) -> Option<Result<Option<Vec<Event>>, WriteError>> {
        let (reply, rx) = oneshot::channel();
        self.send_control(Control::Replay {
            exchange,
            symbol,
            from,
            upto,
            reply,
        })
        .await;
        rx.await.ok()
    }
}

/// What can be read of a writer's queue from outside: its size in bytes and its spill file.
#[derive(Clone, Debug)]
pub struct QueueGauges {
    budget: ByteBudget,
    spill: Option<Arc<Spill>>,
}

impl QueueGauges {
    /// Bytes of events in the queue now (estimated, see [`batch_bytes`]; rounded up to whole
    /// KiB per batch).
    pub fn queued_bytes(&self) -> u64 {
        self.budget.total().saturating_sub(self.budget.available())
    }

    /// Bytes in the spill file not yet replayed into the store (0 without a spill file).
    pub fn spill_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.pending_bytes())
    }
}

/// Spawns and drives one writer.
#[derive(Debug)]
pub struct WriterRunner;

impl WriterRunner {
    /// Starts the runner task for `writer`. The task ends when every [`WriterHandle`] clone
    /// is dropped and the queue is drained: it writes what is pending, then calls `close`.
    /// `abort` is the hard deadline of a shutdown: once it fires, the runner stops writing
    /// and retrying, counts every event it still holds or receives as dropped, and ends when
    /// its queue closes.
    pub fn spawn(
        writer: Box<dyn Writer>,
        settings: RunnerSettings,
        abort: CancellationToken,
    ) -> (WriterHandle, tokio::task::JoinHandle<()>) {
        Self::spawn_resuming(writer, settings, abort, Vec::new())
    }

    /// Like [`spawn`](Self::spawn), for a store that already holds trades up to `resume`
    /// (per exchange and symbol): trades up to those are skipped, once per stream, until the
    /// first newer one passes.
    pub fn spawn_resuming(
        writer: Box<dyn Writer>,
        settings: RunnerSettings,
        abort: CancellationToken,
        resume: Vec<(Arc<str>, Symbol, Cursor)>,
    ) -> (WriterHandle, tokio::task::JoinHandle<()>) {
        let name: Arc<str> = Arc::from(settings.name.as_deref().unwrap_or(writer.name()));
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let budget = ByteBudget::new(settings.queue_bytes);
        let stats = Arc::new(WriterStats::default());
        let spill = settings.spill.as_ref().and_then(|s| match Spill::open(s) {
            Ok(spill) => Some(spill),
            Err(e) => {
                tracing::error!(writer = %name, path = %s.path.display(), error = %e, "cannot open the spill file; running without it");
                None
            }
        });
        let handle = WriterHandle {
            name: name.clone(),
            tx,
            budget,
            when_full: settings.when_full,
            stats: stats.clone(),
            spill: spill.clone(),
            abort: abort.clone(),
        };
        let task = Task {
            name,
            writer,
            resume,
            spill,
            stats,
            retry: settings.retry.clone(),
            settings,
            abort,
            abandoned: 0,
            deferred: Vec::new(),
        };
        // Every line the writer logs from its task carries its name, not only the runner's.
        // At error level so that no log filter drops the name from the lines it keeps.
        let span = tracing::error_span!("writer", writer = %task.name);
        (handle, tokio::spawn(task.run(rx).instrument(span)))
    }
}

struct Task {
    name: Arc<str>,
    writer: Box<dyn Writer>,
    /// Streams whose older trades the store already holds; an entry goes once a newer trade
    /// of its stream passed, so this is empty (and free) soon after start-up.
    resume: Vec<(Arc<str>, Symbol, Cursor)>,
    spill: Option<Arc<Spill>>,
    settings: RunnerSettings,
    stats: Arc<WriterStats>,
    retry: Backoff,
    /// Fired at the shutdown deadline: from then on everything still held is given up.
    abort: CancellationToken,
    /// Events given up on at the shutdown deadline, for one log line at the end.
    abandoned: u64,
    /// Control items taken off the queue while the spill file was replayed: done once it is.
    deferred: Vec<Control>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued>) {
        let size = self.settings.batch_size;
        let linger = self.settings.batch_delay;
        // Events received but not yet written.
        let mut pending: Vec<Event> = Vec::new();
        // When a partial batch must be written, if `linger` is set.
        let mut deadline: Option<Instant> = None;
        let mut open = true;
        // A spill left by a previous run is older than anything queued now.
        if self.spill.as_ref().is_some_and(|s| s.is_active()) {
            self.replay_spill(&mut rx, &mut pending).await;
        }
        while open {
            let spill = self.spill.clone();
            let next = tokio::select! {
                biased;
                m = rx.recv() => m,
                () = spilled(spill.as_deref()) => {
                    self.replay_spill(&mut rx, &mut pending).await;
                    deadline = None;
                    continue;
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.write_pending(&mut pending).await;
                    deadline = None;
                    continue;
                }
            };
            let Some(batch) = next else { break };
            if let Some(control) = self.take_queued(batch, &mut pending).await {
                self.settle(&mut rx, &mut pending).await;
                self.control(control).await;
                deadline = None;
                continue;
            }
            // Take whatever else is already queued: under load batches grow by themselves,
            // and an idle queue costs no waiting.
            while pending.len() < size {
                match rx.try_recv() {
                    Ok(batch) => {
                        if let Some(control) = self.take_queued(batch, &mut pending).await {
                            self.settle(&mut rx, &mut pending).await;
                            self.control(control).await;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if pending.len() >= size || linger.is_zero() {
                self.write_pending(&mut pending).await;
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(Instant::now() + linger);
            }
        }
        self.write_pending(&mut pending).await;
        if self.spill.as_ref().is_some_and(|s| s.is_active()) {
            self.replay_spill(&mut rx, &mut pending).await;
        }
        if self.abandoned > 0 {
            tracing::error!(
                writer = %self.name,
                events = self.abandoned,
                "shutdown deadline passed while the store was failing: the events this writer \
                 still held were DROPPED"
            );
        }
        let closed = tokio::select! {
            biased;
            r = self.writer.close() => Some(r),
            () = self.abort.cancelled() => None,
        };
        match closed {
            Some(Ok(())) => tracing::debug!(writer = %self.name, "writer closed"),
            Some(Err(e)) => {
                WriterStats::add(&self.stats.errors, 1);
                tracing::error!(writer = %self.name, error = %ErrorChain(&e), "closing the writer failed");
            }
            // What was acknowledged is durable already; only the closing is skipped.
            None => {
                tracing::error!(writer = %self.name, "shutdown deadline: the writer was not closed")
            }
        }
    }

    /// Takes a batch off the queue; its bytes go back to the queue's budget once the batch is
    /// written or copied into `pending` (which holds less than one `batch_size` beyond it).
    /// A control item is handed back, for the caller to do once what is before it is
    /// written.
    async fn take_queued(&mut self, queued: Queued, pending: &mut Vec<Event>) -> Option<Control> {
        let Queued {
            events,
            _held,
            control,
        } = queued;
        if let Some(control) = control {
            return Some(*control);
        }
        self.stats
            .queued
            .fetch_sub(events.len() as u64, Ordering::Relaxed);
        self.take(events, pending).await;
        None
    }

    /// Writes everything taken so far: the pending batch, then the spill file if it is in
    /// use (which also takes what is queued behind it).
    async fn settle(&mut self, rx: &mut mpsc::Receiver<Queued>, pending: &mut Vec<Event>) {
        self.write_pending(pending).await;
        if self.spill.as_ref().is_some_and(|s| s.is_active()) {
            self.replay_spill(rx, pending).await;
        }
    }

    /// Does a control item, everything queued before it being written.
    async fn control(&mut self, control: Control) {
        match control {
            Control::Checkpoint(cp) => {
                let spilled = self.spill.as_ref().is_some_and(|s| s.is_active());
                let lost = self.stats.dropped.load(Ordering::Relaxed);
                // A writer that ever gave an event up cannot vouch for any later position:
                // the source would skip what was lost.
                if lost == 0 && !spilled && !self.abort.is_cancelled() {
                    cp.confirm();
                } else {
                    tracing::warn!(writer = %self.name, dropped = lost, spilled, "checkpoint not confirmed: this writer lost events or still holds some");
                    cp.fail();
                }
            }
            Control::Resume { streams, reply } => {
                let retry = self.settings.retry.clone();
                let points = resume_points(
                    &self.name,
                    self.writer.as_mut(),
                    &streams,
                    retry,
                    &self.abort,
                )
                .await;
                if let Ok(points) = &points {
                    // Streams not asked about keep what they skip.
                    self.resume
                        .retain(|(e, s, _)| !streams.iter().any(|(e2, s2)| e == e2 && s == s2));
                    self.resume.extend(points.iter().cloned());
                }
                let _ = reply.send(points);
            }
            Control::Replay {
                exchange,
                symbol,
                from,
                upto,
                reply,
            } => {
                let mut events = Vec::new();
                let mut out = |e: Event| events.push(e);
                let r = self
                    .writer
                    .replay(&exchange, &symbol, from, &upto, &mut out)
                    .await;
                let _ = reply.send(r.map(|ok| ok.then_some(events)));
            }
        }
    }

    /// Adds a queued batch to `pending`, writing full batches as they form: what is pending is
    /// topped up from the head of the batch and written, then the rest of the batch is written
    /// a full batch at a time straight from its allocation, and only its tail waits in
    /// `pending`. The events of a batch this writer alone holds are moved, not cloned, and
    /// none is copied more than once.
    async fn take(&mut self, batch: Arc<Vec<Event>>, pending: &mut Vec<Event>) {
        let size = self.settings.batch_size;
        let batch = if self.resume.is_empty() {
            batch
        } else {
            let mut events = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
            self.skip_stored(&mut events);
            Arc::new(events)
        };
        let mut batch = Taking::new(batch);
        if !pending.is_empty() {
            batch.move_to(size.saturating_sub(pending.len()), pending);
            if pending.len() < size {
                return;
            }
            self.write_pending(pending).await;
        }
        loop {
            let rest = batch.rest();
            if rest.len() < size {
                break;
            }
            self.write_with_retry(&rest[..size]).await;
            batch.skip(size);
        }
        // The tail may still grow with what is queued behind it.
        batch.move_to(usize::MAX, pending);
    }

    /// Writes, in order, what is queued (older than anything spilled: nothing is queued while
    /// the spill is in use), then every spilled batch, until the spill is empty.
    async fn replay_spill(&mut self, rx: &mut mpsc::Receiver<Queued>, pending: &mut Vec<Event>) {
        let Some(spill) = self.spill.clone() else {
            return;
        };
        while let Ok(batch) = rx.try_recv() {
            if let Some(control) = self.take_queued(batch, pending).await {
                // Newer than anything spilled before it: done once the spill is written.
                self.deferred.push(control);
            }
        }
        self.write_pending(pending).await;
        let mut replayed = 0usize;
        loop {
            match spill.pop() {
                Ok(Some((events, bad))) => {
                    if bad > 0 {
                        WriterStats::add(&self.stats.dropped, bad);
                        tracing::error!(writer = %self.name, events = bad, "undecodable spilled events DROPPED");
                    }
                    replayed += events.len();
                    self.take(Arc::new(events), pending).await;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(writer = %self.name, error = %e, "reading the spill file failed; will retry");
                    if self.abort.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.abort.cancelled() => break,
                    }
                }
            }
            if self.abort.is_cancelled() {
                break;
            }
        }
        self.write_pending(pending).await;
        if replayed > 0 {
            tracing::info!(writer = %self.name, events = replayed, "replayed the spill file");
        }
        for control in std::mem::take(&mut self.deferred) {
            self.control(control).await;
        }
    }

    /// Drops the trades the store held at start-up.
    fn skip_stored(&mut self, events: &mut Vec<Event>) {
        let before = events.len();
        let resume = &mut self.resume;
        events.retain(|e| {
            let Event::Trade(t) = e else { return true };
            let Some(i) = resume
                .iter()
                .position(|(ex, sym, _)| **ex == *t.exchange && *sym == t.symbol)
            else {
                return true;
            };
            if resume[i].2.is_older_than(t) {
                // Past the resume point: everything after this is new to the store.
                resume.swap_remove(i);
                true
            } else {
                false
            }
        });
        WriterStats::add(&self.stats.already_stored, (before - events.len()) as u64);
    }

    async fn write_pending(&mut self, pending: &mut Vec<Event>) {
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::take(pending);
        self.write_with_retry(&batch).await;
        // Keep the allocation for the next batch.
        *pending = batch;
        pending.clear();
    }

    /// Writes one batch, retrying retriable errors with backoff until it is stored or the
    /// runner is aborted.
    async fn write_with_retry(&mut self, batch: &[Event]) {
        let n = batch.len() as u64;
        loop {
            if self.abort.is_cancelled() {
                self.abandon(n);
                return;
            }
            // The deadline also ends a write that never returns (a store that hangs).
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                r = self.writer.write(batch) => r,
                () = self.abort.cancelled() => {
                    self.abandon(n);
                    return;
                }
            };
            match result {
                Ok(()) => {
                    self.stats.write_latency.record(started.elapsed());
                    self.stats.succeeded();
                    WriterStats::add(&self.stats.events, n);
                    WriterStats::add(&self.stats.batches, 1);
                    self.retry.reset();
                    return;
                }
                Err(WriteError::Rejected(rejections)) => {
                    self.stats.write_latency.record(started.elapsed());
                    self.stats.succeeded();
                    self.count_rejected(batch, &rejections);
                    self.retry.reset();
                    return;
                }
                Err(e) if e.is_retriable() => {
                    self.stats.failed();
                    WriterStats::add(&self.stats.errors, 1);
                    let delay = self.retry.next_delay();
                    tracing::warn!(
                        writer = %self.name,
                        error = %ErrorChain(&e),
                        retry_in = ?delay,
                        events = n,
                        "write failed; will retry the batch"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.abort.cancelled() => {
                            self.abandon(n);
                            return;
                        }
                    }
                    WriterStats::add(&self.stats.retries, 1);
                }
                Err(e) => {
                    self.stats.failed();
                    WriterStats::add(&self.stats.errors, 1);
                    WriterStats::add(&self.stats.dropped, n);
                    tracing::error!(
                        writer = %self.name,
                        error = %ErrorChain(&e),
                        events = n,
                        "write failed permanently: batch DROPPED"
                    );
                    return;
                }
            }
        }
    }

    /// Gives up on `n` events at the shutdown deadline: counted as dropped, and logged once
    /// the runner has given up on everything it held.
    fn abandon(&mut self, n: u64) {
        WriterStats::add(&self.stats.dropped, n);
        self.abandoned += n;
    }

    /// Counts a batch the store holds except `rejections`, and logs a sample of those.
    fn count_rejected(&self, batch: &[Event], rejections: &[Rejection]) {
        // Positions the writer named twice or outside the batch count once or not at all.
        let mut refused: Vec<usize> = rejections
            .iter()
            .map(|r| r.index)
            .filter(|&i| i < batch.len())
            .collect();
        refused.sort_unstable();
        refused.dedup();
        let rejected = refused.len() as u64;
        WriterStats::add(&self.stats.events, batch.len() as u64 - rejected);
        WriterStats::add(&self.stats.batches, 1);
        WriterStats::add(&self.stats.rejected, rejected);
        let Some(first) = rejections.iter().find(|r| r.index < batch.len()) else {
            return;
        };
        let event = &batch[first.index];
        tracing::error!(
            writer = %self.name,
            rejected,
            stored = batch.len() as u64 - rejected,
            exchange = event.exchange(),
            symbol = %event.symbol(),
            time = %event.time(),
            reason = %ErrorChain(&*first.reason),
            "the store refused events of a batch it stored otherwise: REJECTED (first shown)"
        );
    }
}

/// A queued batch being taken apart by [`Task::take`]: events are moved out of a batch the
/// runner alone holds (a lone writer's), and cloned out of one shared with other writers.
enum Taking {
    Owned(std::vec::IntoIter<Event>),
    /// The batch and the position of its first event not yet taken.
    Shared(Arc<Vec<Event>>, usize),
}

impl Taking {
    fn new(batch: Arc<Vec<Event>>) -> Self {
        match Arc::try_unwrap(batch) {
            Ok(events) => Taking::Owned(events.into_iter()),
            Err(shared) => Taking::Shared(shared, 0),
        }
    }

    /// The events not yet taken.
    fn rest(&self) -> &[Event] {
        match self {
            Taking::Owned(events) => events.as_slice(),
            Taking::Shared(events, at) => events.get(*at..).unwrap_or_default(),
        }
    }

    /// Moves (or clones) the next `n` events, or as many as are left, to the end of `out`.
    fn move_to(&mut self, n: usize, out: &mut Vec<Event>) {
        match self {
            Taking::Owned(events) => out.extend(events.by_ref().take(n)),
            Taking::Shared(events, at) => {
                let end = at.saturating_add(n).min(events.len());
                out.extend_from_slice(events.get(*at..end).unwrap_or_default());
                *at = end;
            }
        }
    }

    /// Passes over the next `n` events (already written from [`rest`](Self::rest)).
    fn skip(&mut self, n: usize) {
        match self {
            Taking::Owned(events) => {
                if let Some(last) = n.checked_sub(1) {
                    events.nth(last);
                }
            }
            Taking::Shared(events, at) => *at = at.saturating_add(n).min(events.len()),
        }
    }
}

/// Resolves when something was spilled; never without a spill file.
async fn spilled(spill: Option<&Spill>) {
    match spill {
        Some(s) => s.spilled.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Checkpoint;
    use crate::model::{parse_decimal, Side, Timestamp, Trade, TradeId};
    use async_trait::async_trait;
    use futures::FutureExt;
    use tokio::sync::{Notify, Semaphore};

    /// Signals each write it starts and finishes one per permit it is given.
    struct Gated {
        started: Arc<Notify>,
        go: Arc<Semaphore>,
    }

    #[async_trait]
    impl Writer for Gated {
        fn name(&self) -> &str {
            "gated"
        }
        async fn write(&mut self, _batch: &[Event]) -> Result<(), WriteError> {
            self.started.notify_one();
            self.go.acquire().await.expect("open").forget();
            Ok(())
        }
    }

    const EVENTS: usize = 100;

    /// A writer stuck in its first write, behind a queue of 64 KiB and a thousand batches, and
    /// how many more batches the queue takes.
    async fn stuck(when_full: WhenFull) -> (WriterHandle, Arc<Semaphore>, usize) {
        let started = Arc::new(Notify::new());
        let go = Arc::new(Semaphore::new(0));
        let settings = RunnerSettings {
            batch_size: EVENTS,
            queue_capacity: 1000,
            queue_bytes: 64 << 10,
            when_full,
            ..RunnerSettings::default()
        };
        let writer = Gated {
            started: started.clone(),
            go: go.clone(),
        };
        let (handle, _task) =
            WriterRunner::spawn(Box::new(writer), settings, CancellationToken::new());
        let in_write = started.notified();
        assert!(handle.send(batch()).await);
        in_write.await;
        // The batch being written holds its bytes until the write ends.
        let per_batch = batch_bytes(EVENTS).div_ceil(1024);
        (handle, go, 64 / per_batch - 1)
    }

    fn batch() -> Arc<Vec<Event>> {
        let trade = |i: u64| Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(i),
            price: parse_decimal("1").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_secs(i as i64),
            received_at: Timestamp::from_unix_secs(i as i64),
        };
        Arc::new((0..EVENTS as u64).map(|i| Event::Trade(trade(i))).collect())
    }

    /// Records the ids of each batch it writes; each write waits for a permit.
    struct Recording {
        writes: Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
        started: Arc<Notify>,
        go: Arc<Semaphore>,
    }

    #[async_trait]
    impl Writer for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
            self.started.notify_one();
            self.go.acquire().await.expect("open").forget();
            let ids = batch
                .iter()
                .map(|e| match e {
                    Event::Trade(t) => t.trade_id.as_number().expect("numeric id") as u64,
                    _ => u64::MAX,
                })
                .collect();
            self.writes.lock().unwrap().push(ids);
            Ok(())
        }
    }

    fn trades(ids: std::ops::Range<u64>) -> Arc<Vec<Event>> {
        let trade = |i: u64| Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(i),
            price: parse_decimal("1").unwrap(),
            amount: parse_decimal("1").unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_secs(i as i64),
            received_at: Timestamp::from_unix_secs(i as i64),
        };
        Arc::new(ids.map(|i| Event::Trade(trade(i))).collect())
    }

    /// Batches that do not line up with the batch size (as an exchange's bursts never do) are
    /// cut into full batches in order, none lost or repeated, whether the runner alone holds
    /// them (moved) or shares them with another writer (cloned).
    #[tokio::test]
    async fn queued_batches_that_do_not_line_up_are_written_in_full_batches_in_order() {
        for shared in [false, true] {
            let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
            let started = Arc::new(Notify::new());
            let go = Arc::new(Semaphore::new(0));
            let writer = Recording {
                writes: writes.clone(),
                started: started.clone(),
                go: go.clone(),
            };
            let settings = RunnerSettings {
                batch_size: 10,
                queue_capacity: 100,
                queue_bytes: 64 << 20,
                ..RunnerSettings::default()
            };
            let (handle, task) =
                WriterRunner::spawn(Box::new(writer), settings, CancellationToken::new());
            // The first batch is taken alone and its write held, so the others queue.
            let in_write = started.notified();
            assert!(handle.send(trades(0..7)).await);
            in_write.await;
            let mut kept = Vec::new();
            for ids in [7..20, 20..45, 45..49] {
                let batch = trades(ids);
                if shared {
                    kept.push(batch.clone());
                }
                assert!(handle.send(batch).await);
            }
            go.add_permits(100);
            drop(handle);
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the runner ends once its queue closes")
                .unwrap();
            let writes = writes.lock().unwrap();
            let lens: Vec<usize> = writes.iter().map(Vec::len).collect();
            assert_eq!(lens, [7, 10, 10, 10, 10, 2], "shared: {shared}");
            let ids: Vec<u64> = writes.iter().flatten().copied().collect();
            assert_eq!(ids, (0..49).collect::<Vec<u64>>(), "shared: {shared}");
            drop(kept);
        }
    }

    #[tokio::test]
    async fn a_queue_full_in_bytes_drops_and_counts_under_drop() {
        let (handle, go, fits) = stuck(WhenFull::Drop).await;
        assert!((1..10).contains(&fits), "{fits} batches fit");
        for _ in 0..10 {
            assert!(handle.send(batch()).await);
        }
        let dropped = handle.stats().dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, ((10 - fits) * EVENTS) as u64);
        go.add_permits(1 + fits);
    }

    #[tokio::test]
    async fn a_queue_full_in_bytes_holds_the_sender_under_block() {
        let (handle, go, fits) = stuck(WhenFull::Block).await;
        for _ in 0..fits {
            assert!(handle.send(batch()).await);
        }
        let blocked = handle.send(batch());
        tokio::pin!(blocked);
        assert!(
            blocked.as_mut().now_or_never().is_none(),
            "the budget is spent"
        );
        // The first write ends and the runner takes the next batch: room for one more.
        go.add_permits(1);
        assert!(blocked.await);
        assert_eq!(handle.stats().dropped.load(Ordering::Relaxed), 0);
        go.add_permits(1 + fits);
    }

    /// Stores what it is given, after failing its first `fail` writes (retriably), and
    /// waits for a permit before each write when gated.
    struct Flaky {
        fail: usize,
        stored: Arc<AtomicU64>,
        go: Option<Arc<Semaphore>>,
    }

    #[async_trait]
    impl Writer for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
            if let Some(go) = &self.go {
                go.acquire().await.expect("open").forget();
            }
            if self.fail > 0 {
                self.fail -= 1;
                return Err(WriteError::retriable("store down", "refused"));
            }
            self.stored.fetch_add(batch.len() as u64, Ordering::SeqCst);
            Ok(())
        }
    }

    fn quick_retry() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(5))
    }

    #[tokio::test]
    async fn a_checkpoint_waits_for_a_failing_writer_to_recover_and_store_what_is_before_it() {
        let stored = Arc::new(AtomicU64::new(0));
        let writer = Flaky {
            fail: 3,
            stored: stored.clone(),
            go: None,
        };
        let settings = RunnerSettings {
            // A partial batch would wait an hour: the checkpoint must not.
            batch_size: 1000,
            batch_delay: Duration::from_secs(3600),
            retry: quick_retry(),
            ..RunnerSettings::default()
        };
        let (handle, task) =
            WriterRunner::spawn(Box::new(writer), settings, CancellationToken::new());
        assert!(handle.send(batch()).await);
        let (cp, wait) = Checkpoint::new();
        handle.checkpoint(cp).await;
        let ok = tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the checkpoint resolves");
        assert!(ok, "confirmed once stored");
        assert_eq!(stored.load(Ordering::SeqCst), EVENTS as u64);
        assert!(handle.stats().retries.load(Ordering::Relaxed) >= 3);
        drop(handle);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_checkpoint_fails_after_a_full_queue_dropped_events_under_drop() {
        let (handle, go, fits) = stuck(WhenFull::Drop).await;
        for _ in 0..=fits {
            assert!(handle.send(batch()).await);
        }
        assert!(handle.stats().dropped.load(Ordering::Relaxed) > 0);
        // The store is stuck and the queue full: the checkpoint is queued or failed at once,
        // without holding up the sender (the pipeline, and the other writers behind it).
        let (cp, wait) = Checkpoint::new();
        tokio::time::timeout(Duration::from_secs(1), handle.checkpoint(cp))
            .await
            .expect("not held up by a full queue under drop");
        go.add_permits(100);
        let ok = tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the checkpoint resolves");
        assert!(!ok, "a writer that dropped events must not confirm");
        // Later ones neither: they would skip what was dropped.
        let (cp, wait) = Checkpoint::new();
        handle.checkpoint(cp).await;
        assert!(!wait.await);
    }

    #[tokio::test]
    async fn a_checkpoint_behind_spilled_events_waits_until_the_spill_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let stored = Arc::new(AtomicU64::new(0));
        let go = Arc::new(Semaphore::new(0));
        let writer = Flaky {
            fail: 0,
            stored: stored.clone(),
            go: Some(go.clone()),
        };
        let settings = RunnerSettings {
            batch_size: EVENTS,
            queue_capacity: 1,
            queue_bytes: 1 << 30,
            spill: Some(SpillSettings {
                path: dir.path().join("w.spill"),
                max_bytes: 64 << 20,
            }),
            ..RunnerSettings::default()
        };
        let (handle, task) =
            WriterRunner::spawn(Box::new(writer), settings, CancellationToken::new());
        let sent = 8;
        for _ in 0..sent {
            assert!(handle.send(batch()).await);
        }
        assert!(
            handle.stats().spilled.load(Ordering::Relaxed) > 0,
            "the queue of one overflowed into the spill file"
        );
        let (cp, mut wait) = Checkpoint::new();
        let send = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.checkpoint(cp).await })
        };
        // One write at a time: the checkpoint stays open until the last spilled batch is in.
        for _ in 0..sent {
            assert_eq!(wait.try_outcome(), None, "resolved with events unwritten");
            go.add_permits(1);
            let deadline = Instant::now() + Duration::from_secs(10);
            let before = stored.load(Ordering::SeqCst);
            while stored.load(Ordering::SeqCst) == before {
                assert!(Instant::now() < deadline, "a write did not happen");
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        send.await.unwrap();
        let ok = tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the checkpoint resolves");
        assert!(ok);
        assert_eq!(stored.load(Ordering::SeqCst), (sent * EVENTS) as u64);
        go.add_permits(100);
        drop(handle);
        task.await.unwrap();
    }
}
