//! The orchestrator: builds exchanges and writers from a [`Config`] through a [`Registry`],
//! runs every task, supervises them and shuts them down in two phases.
//!
//! ```text
//! exchange tasks ─bounded mpsc─▶ valve ─▶ aggregator ─▶ fan-out ─▶ queue per writer ─▶ writer task
//! ```
//! - An exchange that fails is restarted with exponential backoff and jitter; the others keep
//!   running.
//! - Each writer has its own bounded queue and retry loop, so one failing writer does not
//!   stall the others until its queue is full (then its `when_full` policy applies).
//! - Shutdown cancels the exchanges only. Their senders drop, the pipeline drains, each
//!   writer's queue closes, each writer writes what it has and closes. Everything is awaited
//!   with a deadline; past it, the writers give up what they still hold or receive, counting
//!   each event as dropped, and stragglers are named in the [`Summary`].
//! - Every event a writer does not store is counted, as dropped or as rejected by its store:
//!   [`Summary::lost_anything`] says whether the run lost data.

mod dead_letter;
mod registry;
mod resync;
mod stage;
mod summary;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::config::{Config, ConfigError, ExchangeConfig, PipelineConfig};
use crate::error::WriteError;
use crate::exchange::{
    Backoff, Cursor, Cursors, Exchange, ExchangeContext, ExchangeStats, TradeSink, Transport,
};
use crate::model::{Event, Symbol};
use crate::observe::Monitor;
use crate::pipeline::TradeRules;
use crate::writer::{
    resume_points, ErrorChain, ResumeError, ResumePoints, RunnerSettings, Writer, WriterRunner,
    WriterStats,
};

pub use registry::{AnyWriterFactory, ExchangeFactory, PreparedWriter, Registry, WriterFactory};
pub use summary::{ExchangeSummary, Summary, WriterSummary};

/// Why a feeder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A writer could not be opened (bad URL, bad credentials, unwritable directory).
    #[error("cannot open writer {name:?}")]
    Writer {
        /// The writer's name.
        name: String,
        /// The cause.
        #[source]
        source: WriteError,
    },
    /// A writer could not say where its store left off, even after retries.
    #[error(transparent)]
    Resume(#[from] ResumeError),
}

/// A config's exchanges, built, and its writers, ready to open.
struct Prepared<'a> {
    exchanges: Vec<(Arc<dyn Exchange>, Vec<Symbol>)>,
    writers: Vec<(PreparedWriter, &'a crate::config::WriterConfig)>,
}

/// Refuses options set on `ex` that none of the transports its venue offers reads: a
/// `rest_url` on a WebSocket-only venue would otherwise be silently ignored, and the reader
/// of the config would believe it in effect.
fn refuse_unused_options(ex: &ExchangeConfig, offered: &[Transport]) -> Result<(), ConfigError> {
    let ws = offered.contains(&Transport::Websocket);
    let rest = offered.contains(&Transport::Rest);
    let unused: &[&str] = match (ws, rest) {
        // Without REST there is nothing to poll and nothing to backfill from; the request
        // timeout is only ever the timeout of a REST request.
        (true, false) => &["rest_url", "poll_interval", "request_timeout", "backfill"],
        (false, true) => &["ws_url", "stale_timeout", "backfill"],
        _ => &[],
    };
    if let Some(key) = unused.iter().find(|k| ex.is_set(k)) {
        let only = offered
            .iter()
            .map(Transport::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ex.invalid(
            key,
            format!("{} offers only {only}, which does not use {key}", ex.name),
        ));
    }
    Ok(())
}

/// How long past the shutdown deadline the writers have to give up what they hold (counting
/// it), and the pipeline to drain into them, before they are aborted.
const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// Rejected trades waiting to be appended to the dead-letter file; beyond it they are only
/// counted (a slow disk never holds up the trades).
const DEAD_LETTER_CAPACITY: usize = 4096;

struct ExchangeSlot {
    exchange: Arc<dyn Exchange>,
    symbols: Vec<Symbol>,
    cursors: Cursors,
    stats: Arc<ExchangeStats>,
}

struct WriterSlot {
    writer: Box<dyn Writer>,
    settings: RunnerSettings,
    /// Where the store left off, once asked (by `from_config`, else at the start of `run`).
    resume: Option<ResumePoints>,
}

impl WriterSlot {
    /// The name in logs and the summary.
    fn name(&self) -> &str {
        self.settings
            .name
            .as_deref()
            .unwrap_or_else(|| self.writer.name())
    }
}

/// A configured feeder, ready to [`run`](Feeder::run).
pub struct Feeder {
    exchanges: Vec<ExchangeSlot>,
    writers: Vec<WriterSlot>,
    pipeline: PipelineConfig,
    shutdown_timeout: Duration,
    restart: Backoff,
    monitor: Monitor,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field(
                "exchanges",
                &self
                    .exchanges
                    .iter()
                    .map(|e| e.exchange.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "writers",
                &self
                    .writers
                    .iter()
                    .map(WriterSlot::name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Feeder {
    /// An empty feeder to fill in code, for programs that do not use a config file.
    pub fn builder() -> FeederBuilder {
        FeederBuilder {
            feeder: Feeder {
                exchanges: Vec::new(),
                writers: Vec::new(),
                pipeline: PipelineConfig::default(),
                shutdown_timeout: Duration::from_secs(30),
                restart: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                monitor: Monitor::new(),
            },
        }
    }

    /// Checks a configuration against a registry without any I/O: every exchange name is
    /// registered, offers the transport asked for, sets no option its transports do not use
    /// and accepts its settings; every writer type is registered and accepts its options.
    pub fn validate(config: &Config, registry: &Registry) -> Result<(), ConfigError> {
        Self::prepare(config, registry).map(drop)
    }

    /// Checks on this machine, without connecting anywhere, what [`validate`](Self::validate)
    /// cannot: that every directory the run would create exists or can be created: each
    /// writer's own (the ones its factory names, such as the `file` writer's `path`), each
    /// `spill.path`, the directory of `pipeline.rejected` and each exchange's `capture.path`.
    /// Each is probed by creating and removing an empty directory where its path stops
    /// existing (see [`check_directory`](crate::config::check_directory)). Errors name the
    /// writer or exchange, the key and its line.
    pub fn check_directories(config: &Config, registry: &Registry) -> Result<(), ConfigError> {
        use crate::config::check_directory;
        let prepared = Self::prepare(config, registry)?;
        for (writer, w) in &prepared.writers {
            for (key, dir) in writer.directories() {
                check_directory(dir).map_err(|why| w.option_error(key, why))?;
            }
            if let Some(spill) = &w.spill {
                check_directory(&spill.path).map_err(|why| w.option_error("spill.path", why))?;
            }
        }
        if let Some(file) = &config.pipeline.rejected {
            let dir = file.parent().unwrap_or(std::path::Path::new("."));
            check_directory(dir).map_err(|why| ConfigError::invalid("pipeline.rejected", why))?;
        }
        for ex in &config.exchanges {
            if let Some(c) = &ex.capture {
                check_directory(&c.path).map_err(|why| ex.invalid("capture.path", why))?;
            }
        }
        Ok(())
    }

    /// Validates `config` and builds its exchanges, and reads and checks each writer's
    /// options (once), without any I/O.
    fn prepare<'a>(config: &'a Config, registry: &Registry) -> Result<Prepared<'a>, ConfigError> {
        config.validate()?;
        let mut exchanges = Vec::with_capacity(config.exchanges.len());
        for (i, ex) in config.exchanges.iter().enumerate() {
            let mut ex = ex.clone().numbered(i);
            let factory = registry.exchange(&ex.name).ok_or_else(|| {
                ConfigError::invalid(
                    format!("exchanges[{i}].name"),
                    format!(
                        "unknown exchange {:?}; known: {}",
                        ex.name,
                        registry
                            .exchanges()
                            .map(|(n, _)| n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let offered = factory.transports();
            if !offered.contains(&ex.transport) {
                return Err(ex.invalid(
                    "transport",
                    format!("{} does not offer {}", ex.name, ex.transport),
                ));
            }
            refuse_unused_options(&ex, &offered)?;
            if ex.capture.is_some() && !factory.records_capture() {
                return Err(ex.invalid(
                    "capture",
                    format!(
                        "{} does not pass its traffic through the drivers that record a capture",
                        ex.name
                    ),
                ));
            }
            if ex.is_set("options") && !factory.takes_options() {
                return Err(ex.invalid(
                    "options",
                    format!(
                        "{} takes no options (only sources such as kafka do)",
                        ex.name
                    ),
                ));
            }
            // Every entry is checked, whichever shard owns its streams; only the owned ones
            // are built.
            if let Some(shard) = config.shard {
                factory.build(&ex)?;
                let name = ex.name.clone();
                ex.symbols.retain(|s| shard.owns(&name, s));
                if ex.symbols.is_empty() {
                    continue;
                }
            }
            exchanges.push((factory.build(&ex)?, ex.symbols.clone()));
        }
        if let (true, Some(shard)) = (exchanges.is_empty(), config.shard) {
            return Err(ConfigError::invalid(
                "shard",
                format!(
                    "shard {} of {} owns none of the configured streams",
                    shard.index, shard.count
                ),
            ));
        }
        let mut writers = Vec::with_capacity(config.writers.len());
        for (i, w) in config.writers.iter().enumerate() {
            let factory = registry.writer(&w.kind).ok_or_else(|| {
                ConfigError::invalid(
                    format!("writers[{i}].type"),
                    format!(
                        "unknown writer type {:?}; known: {}",
                        w.kind,
                        registry.writer_kinds().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            writers.push((factory.prepare(w)?, w));
        }
        Ok(Prepared { exchanges, writers })
    }

    /// Validates `config`, builds every exchange, opens every writer and asks each where its
    /// store left off (retrying with backoff; see [`Writer::resume_point`]).
    pub async fn from_config(config: Config, registry: &Registry) -> Result<Feeder, BuildError> {
        let prepared = Self::prepare(&config, registry)?;
        let mut b = Feeder::builder()
            .pipeline(config.pipeline.clone())
            .shutdown_timeout(config.shutdown_timeout);
        for (exchange, symbols) in prepared.exchanges {
            b = b.exchange(exchange, symbols);
        }
        for (writer, w) in prepared.writers {
            let writer = writer.open().await.map_err(|source| BuildError::Writer {
                name: w.display_name().to_owned(),
                source,
            })?;
            b = b.writer(writer, RunnerSettings::from(w));
        }
        let mut feeder = b.build();
        feeder.ask_resume_points(&CancellationToken::new()).await?;
        Ok(feeder)
    }

    /// A [`Monitor`] of this feeder, to ask for its status while it runs (from another task,
    /// an HTTP handler, a terminal view). Take it before [`run`](Self::run).
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Every stream: each exchange's (see [`Exchange::streams`]).
    fn streams(&self) -> Vec<(Arc<str>, Symbol)> {
        self.exchanges
            .iter()
            .flat_map(|e| e.exchange.streams(&e.symbols))
            .collect()
    }

    /// Asks each writer not yet asked where its store left off.
    async fn ask_resume_points(&mut self, stop: &CancellationToken) -> Result<(), ResumeError> {
        let streams = self.streams();
        for slot in &mut self.writers {
            if slot.resume.is_some() {
                continue;
            }
            let name = slot.name().to_owned();
            let retry = slot.settings.retry.clone();
            let points = resume_points(&name, slot.writer.as_mut(), &streams, retry, stop).await?;
            slot.resume = Some(points);
        }
        Ok(())
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully and returns what
    /// happened.
    ///
    /// The run ends by itself, before anything starts, when a writer cannot say where its
    /// store left off: the summary then names it in [`Summary::failures`].
    pub async fn run(mut self, shutdown: CancellationToken) -> Summary {
        if let Err(e) = self.ask_resume_points(&shutdown).await {
            return Summary {
                failures: vec![ErrorChain(&e).to_string()],
                ..Summary::default()
            };
        }
        let streams = self.streams();
        let Feeder {
            exchanges,
            mut writers,
            pipeline,
            shutdown_timeout,
            restart,
            monitor,
        } = self;
        let clock = stage::Clock::start();
        // Fired at the deadline: abandons retries and stragglers.
        let abort = CancellationToken::new();
        let stop_exchanges = shutdown.child_token();

        // Where the durable stores left off: each writer skips what it already holds, and the
        // exchanges resume (backfill) from the oldest of those points.
        let resume_points: Vec<ResumePoints> = writers
            .iter_mut()
            .map(|slot| slot.resume.take().unwrap_or_default())
            .collect();
        let mut seeds: Vec<(Arc<str>, Symbol, Cursor)> = Vec::new();
        for (ex, sym) in &streams {
            let oldest = resume_points
                .iter()
                .flatten()
                .filter(|(e, s, _)| e == ex && s == sym)
                .map(|(_, _, c)| c)
                .min_by(|a, b| cursor_order(a, b));
            if let Some(c) = oldest {
                seeds.push((ex.clone(), sym.clone(), c.clone()));
            }
        }
        for slot in &exchanges {
            for (ex, sym, c) in &seeds {
                if **ex == *slot.exchange.name() && slot.cursors.get(sym).is_none() {
                    tracing::info!(exchange = %ex, symbol = %sym, trade_id = %c.trade_id, "resuming after the stored trades");
                    slot.cursors.set(sym.clone(), c.clone());
                }
            }
        }

        let mut stages = stage::Stages::new(&pipeline, &seeds);
        rebuild_candles(&mut stages, &mut writers, &resume_points, &seeds, &shutdown).await;

        let mut writer_tasks = Vec::new();
        let mut handles = Vec::new();
        for (slot, resume) in writers.into_iter().zip(resume_points) {
            let retry_delay = slot.settings.retry.max_delay();
            let (handle, task) =
                WriterRunner::spawn_resuming(slot.writer, slot.settings, abort.clone(), resume);
            monitor.watch_writer(&handle, retry_delay);
            writer_tasks.push((handle.name().to_owned(), handle.stats().clone(), task));
            handles.push(handle);
        }

        let (tx, rx) = mpsc::channel(pipeline.channel_capacity.max(1));
        let budget = ByteBudget::new(pipeline.buffer.bytes());
        let watch = stage::Watch::new(
            exchanges.iter().flat_map(|e| {
                let name: Arc<str> = Arc::from(e.exchange.name());
                e.stats
                    .streams
                    .iter()
                    .map(move |(sym, st)| (name.clone(), sym.clone(), st.clone()))
            }),
            pipeline.candles.iter().min().copied(),
        );
        let stage_task = tokio::spawn(stage::run(
            rx,
            budget.clone(),
            stages,
            handles,
            clock,
            watch,
        ));

        let rules = TradeRules::from_pipeline(&pipeline);
        let (dead_letters, dead_letter_task) = match pipeline.rejected.clone() {
            Some(path) => {
                let (tx, rx) = mpsc::channel(DEAD_LETTER_CAPACITY);
                (Some(tx), Some(tokio::spawn(dead_letter::run(rx, path))))
            }
            None => (None, None),
        };
        let mut exchange_tasks = Vec::new();
        for slot in exchanges {
            let name = slot.exchange.name().to_owned();
            let stats = slot.stats.clone();
            let task = tokio::spawn(supervise(
                slot,
                tx.clone(),
                budget.clone(),
                rules,
                dead_letters.clone(),
                stop_exchanges.clone(),
                restart.clone(),
            ));
            exchange_tasks.push((name, stats, task));
        }
        // Only the exchanges hold senders now: when they are all gone, the pipeline drains.
        drop(tx);
        drop(dead_letters);
        monitor.running();

        shutdown.cancelled().await;
        monitor.stopping();
        tracing::info!("shutting down: stopping exchanges, then draining writers");
        let deadline = Instant::now() + shutdown_timeout;
        let mut stage_task = stage_task;
        let (totals, stragglers) = drain(
            deadline,
            &abort,
            &mut exchange_tasks,
            &mut stage_task,
            &mut writer_tasks,
        )
        .await;
        abort.cancel();
        if let Some(task) = dead_letter_task {
            // Its senders went with the exchanges; what is left is a short append.
            match tokio::time::timeout(ABANDON_GRACE, task).await {
                Ok(Ok(n)) if n > 0 => tracing::warn!(
                    trades = n,
                    "rejected trades were written to the dead-letter file"
                ),
                Ok(_) => {}
                Err(_) => tracing::error!("the dead-letter file was not finished in time"),
            }
        }
        if !stragglers.is_empty() {
            tracing::error!(
                ?stragglers,
                "shutdown deadline passed; these tasks were abandoned"
            );
        }

        Summary::collect(
            exchange_tasks
                .iter()
                .map(|(n, s, _)| (n.as_str(), s.as_ref())),
            writer_tasks
                .iter()
                .map(|(n, s, _)| (n.as_str(), s.as_ref())),
            totals.valve,
            totals.candles,
            totals.incomplete_candles,
            totals.late_trades,
            stragglers,
        )
    }
}

type Tasks<S> = [(String, Arc<S>, JoinHandle<()>)];

/// Waits for every task until `deadline`. Past it, fires `abort`: the writers give up what
/// they hold, counting each event as dropped, which also frees a pipeline or an exchange
/// waiting on a full queue. What still runs [`ABANDON_GRACE`] later is aborted. Returns the
/// pipeline's totals and the tasks that missed the deadline.
async fn drain(
    deadline: Instant,
    abort: &CancellationToken,
    exchanges: &mut Tasks<ExchangeStats>,
    stage: &mut JoinHandle<stage::StageTotals>,
    writers: &mut Tasks<WriterStats>,
) -> (stage::StageTotals, Vec<String>) {
    let mut late_exchanges = Vec::new();
    for (name, _, task) in exchanges.iter_mut() {
        if !wait_by(task, deadline).await {
            late_exchanges.push((name, task));
        }
    }
    let mut stage_done = tokio::time::timeout_at(deadline, &mut *stage).await.ok();
    let stage_late = stage_done.is_none();
    let mut late_writers = Vec::new();
    for (name, _, task) in writers.iter_mut() {
        if !wait_by(task, deadline).await {
            late_writers.push((name, task));
        }
    }
    let mut stragglers = Vec::new();
    if stage_late || !late_exchanges.is_empty() || !late_writers.is_empty() {
        abort.cancel();
        let grace = Instant::now() + ABANDON_GRACE;
        for (name, task) in late_exchanges {
            stragglers.push(format!("exchange {name}"));
            join_by(task, grace).await;
        }
        if stage_late {
            stragglers.push("pipeline".to_owned());
            stage_done = tokio::time::timeout_at(grace, &mut *stage).await.ok();
            if stage_done.is_none() {
                stage.abort();
            }
        }
        for (name, task) in late_writers {
            stragglers.push(format!("writer {name}"));
            if !join_by(task, grace).await {
                tracing::error!(writer = %name, "the writer did not give up in time: what it still held is lost and NOT counted");
            }
        }
    }
    let totals = match stage_done {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::error!(error = %e, "pipeline task failed");
            if !stage_late {
                stragglers.push("pipeline".to_owned());
            }
            stage::StageTotals::default()
        }
        None => stage::StageTotals::default(),
    };
    (totals, stragglers)
}

/// Older first: by id where both are numbers, else by time.
/// Rebuilds the candles a restart interrupted: for each resumed stream, a store that holds
/// it reads back its trades from the open of those candles up to the resume point, and they
/// go into the aggregator only. The stores are asked in the order of their resume points,
/// oldest first (the one the stream resumes from holds exactly what is needed); the first
/// that can read back does it. Without one, the candles stay marked incomplete.
async fn rebuild_candles(
    stages: &mut stage::Stages,
    writers: &mut [WriterSlot],
    resume_points: &[ResumePoints],
    seeds: &[(Arc<str>, Symbol, Cursor)],
    stop: &CancellationToken,
) {
    for (ex, sym, upto) in seeds {
        let Some(from) = stages.rebuild_from(upto.timestamp) else {
            return;
        };
        let mut order: Vec<(usize, &Cursor)> = resume_points
            .iter()
            .enumerate()
            .filter_map(|(i, points)| {
                let (_, _, c) = points.iter().find(|(e, s, _)| e == ex && s == sym)?;
                Some((i, c))
            })
            .collect();
        order.sort_by(|a, b| cursor_order(a.1, b.1));
        let mut rebuilt = false;
        for (i, _) in order {
            let slot = &mut writers[i];
            let name = slot.name().to_owned();
            let mut trades = 0u64;
            let mut feed = |event: Event| {
                trades += u64::from(stages.rebuild(ex, sym, &event));
            };
            let replay = slot.writer.replay(ex, sym, from, upto, &mut feed);
            let answer = tokio::select! {
                r = replay => r,
                () = stop.cancelled() => Ok(false),
            };
            match answer {
                Ok(false) => {
                    stages.rebuilt(ex, sym, from, upto.timestamp, false);
                    continue;
                }
                Ok(true) => {
                    tracing::info!(
                        exchange = %ex, symbol = %sym, writer = name, from = %from, trades,
                        "rebuilt the open candles from the store"
                    );
                    stages.rebuilt(ex, sym, from, upto.timestamp, true);
                    rebuilt = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        exchange = %ex, symbol = %sym, writer = name, error = %ErrorChain(&e),
                        "cannot read the stored trades back; the interrupted candles are marked incomplete"
                    );
                    stages.rebuilt(ex, sym, from, upto.timestamp, false);
                }
            }
        }
        if !rebuilt {
            tracing::info!(
                exchange = %ex, symbol = %sym,
                "no store reads back; the candles this restart interrupted are marked incomplete"
            );
        }
    }
}

fn cursor_order(a: &Cursor, b: &Cursor) -> std::cmp::Ordering {
    a.trade_id
        .cmp_numeric(&b.trade_id)
        .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
}

/// Waits for a task until `deadline`; returns false if it is still running.
async fn wait_by(task: &mut JoinHandle<()>, deadline: Instant) -> bool {
    match tokio::time::timeout_at(deadline, &mut *task).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "task panicked");
            true
        }
        Err(_) => false,
    }
}

/// Waits for a task until `deadline`; aborts it and returns false if it is still running.
async fn join_by(task: &mut JoinHandle<()>, deadline: Instant) -> bool {
    let done = wait_by(task, deadline).await;
    if !done {
        task.abort();
    }
    done
}

/// Runs one exchange, restarting it with backoff after a failure, until shutdown.
async fn supervise(
    slot: ExchangeSlot,
    tx: mpsc::Sender<crate::exchange::Input>,
    budget: ByteBudget,
    rules: TradeRules,
    dead_letters: Option<mpsc::Sender<crate::pipeline::Rejected>>,
    shutdown: CancellationToken,
    mut backoff: Backoff,
) {
    let name = slot.exchange.name().to_owned();
    loop {
        let mut sink = TradeSink::new(tx.clone(), slot.cursors.clone(), slot.stats.clone())
            .with_rules(rules)
            .with_budget(budget.clone());
        if let Some(dl) = &dead_letters {
            sink = sink.with_rejected(dl.clone());
        }
        let ctx = ExchangeContext {
            symbols: slot.symbols.clone(),
            sink,
            shutdown: shutdown.clone(),
            cursors: slot.cursors.clone(),
            stats: slot.stats.clone(),
        };
        let started = Instant::now();
        let result = slot.exchange.run(ctx).await;
        if shutdown.is_cancelled() {
            if let Err(e) = result {
                tracing::debug!(exchange = %name, error = %ErrorChain(&e), "exchange ended during shutdown");
            }
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!(exchange = %name, "exchange finished");
                return;
            }
            Err(e) if e.is_terminal() => {
                slot.stats.failed(&e);
                tracing::error!(exchange = %name, error = %ErrorChain(&e), "exchange failed permanently; not restarting");
                return;
            }
            Err(e) => {
                slot.stats.failed(&e);
                // A run that lasted a while was healthy: start the backoff again.
                if started.elapsed() > Duration::from_secs(60) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(exchange = %name, error = %ErrorChain(&e), restart_in = ?delay, "exchange failed; restarting");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                ExchangeStats::incr(&slot.stats.restarts);
            }
        }
    }
}

/// Builds a [`Feeder`] in code.
pub struct FeederBuilder {
    feeder: Feeder,
}

impl std::fmt::Debug for FeederBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.feeder.fmt(f)
    }
}

impl FeederBuilder {
    /// Adds an exchange streaming `symbols`.
    pub fn exchange(mut self, exchange: Arc<dyn Exchange>, symbols: Vec<Symbol>) -> Self {
        let stats = Arc::new(ExchangeStats::for_symbols(&symbols));
        self.feeder
            .monitor
            .watch_exchange(exchange.name(), stats.clone());
        self.feeder.exchanges.push(ExchangeSlot {
            exchange,
            symbols,
            cursors: Cursors::default(),
            stats,
        });
        self
    }

    /// Adds a writer with its runner settings.
    pub fn writer(mut self, writer: Box<dyn Writer>, settings: RunnerSettings) -> Self {
        self.feeder.writers.push(WriterSlot {
            writer,
            settings,
            resume: None,
        });
        self
    }

    /// Sets the pipeline settings (dedup, candles).
    pub fn pipeline(mut self, pipeline: PipelineConfig) -> Self {
        self.feeder.pipeline = pipeline;
        self
    }

    /// Sets how long a shutdown may take.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.feeder.shutdown_timeout = timeout;
        self
    }

    /// Sets the backoff between restarts of a failed exchange.
    pub fn restart_backoff(mut self, backoff: Backoff) -> Self {
        self.feeder.restart = backoff;
        self
    }

    /// The feeder.
    pub fn build(self) -> Feeder {
        self.feeder
    }
}
