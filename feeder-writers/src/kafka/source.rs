//! The `kafka` source: a sink worker's input. It reads the trades topic the `kafka` writer of
//! the feeders fills, as a member of a consumer group, and sends its trades and gaps into the
//! pipeline like any exchange, so that the valve removes what redundant feeders both
//! published and the writers store the merged stream.
//!
//! # Guarantees
//! - **Commit after acknowledgement.** Offsets are committed only once every writer has
//!   stored everything up to them (a [`Checkpoint`](feeder_core::exchange::Checkpoint) sent
//!   after the records, every `commit_interval`). A crash replays from the last commit; it
//!   never skips. A writer that ever gives an event up (a full queue under `when_full: drop`,
//!   a batch refused for good, the shutdown deadline) fails every later checkpoint: the source
//!   stops and starts again from the last commit, and says so.
//! - **Rebalances.** Partitions move between the members of the group (eager protocol: every
//!   rebalance takes all partitions back and hands them out again). On a revocation the
//!   source stops delivering at once and throws away what it read but did not deliver; what
//!   was delivered and not yet committed is read again by the next owner. On an assignment
//!   it asks the pipeline to start again from the stores ([`Resync`]): the valve and every
//!   writer's skip list are seeded from where each store left off, and the open candles are
//!   rebuilt from the store, so a trade already stored is not stored again and a candle a
//!   stream's previous owner left open is completed with its earlier trades.
//! - Candles close by the trades' own times only (every stream is marked behind): the wall
//!   clock of a worker catching up must not close a candle whose trades are still on their
//!   way.
//!
//! The bus is at least once (a rebalance or crash replays what was not committed); stores
//! that write idempotently (PostgreSQL's `ON CONFLICT`, the file writer's resume) end up
//! with each trade exactly once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    CheckpointWait, Completeness, Exchange, ExchangeContext, ExchangeStats, Transport,
};
use feeder_core::feeder::ExchangeFactory;
use feeder_core::model::{serde_duration, Event, Symbol, Trade};
use feeder_core::observe::Link;
use feeder_core::pipeline::TradeRules;
use feeder_core::ExchangeError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::client::{client_config, FeederContext};
use super::config::{brokers, scalar_map, KafkaOptions, SaslOptions, SecurityProtocol, SslOptions};

/// Most trades sent into the pipeline in one batch.
const BATCH: usize = 2_000;

/// Records read ahead of the pipeline.
const READ_AHEAD: usize = 8_192;

/// How long the poll of the consumer waits for a record before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// How long the last checkpoint may take at shutdown before what it covers is left for the
/// next start to read again.
const LAST_CHECKPOINT: Duration = Duration::from_secs(10);

/// Checkpoints waited on at once; beyond it the source waits for the oldest.
const CHECKPOINTS_IN_FLIGHT: usize = 16;

/// Options of the `kafka` source, under `options:` of its `exchanges` entry:
///
/// ```yaml
/// exchanges:
///   - name: kafka
///     symbols: [BTC-USD, ETH-USD]       # the symbols of the streams to take
///     options:
///       brokers: [kafka-1:9093]         # required
///       topic: trades                   # the feeders' trades topic (default trades)
///       group_id: crypto-sink           # required: the consumer group of the sink workers
///       venues: [bitstamp, coinbase]    # required: the venues of the streams to take
///       commit_interval: 1s             # how often a checkpoint is sent and offsets committed
///       security_protocol: sasl_ssl     # as the kafka writer's
///       sasl: { mechanism: SCRAM-SHA-512, username: sink, password_env: KAFKA_PASSWORD }
///       ssl: { ca_file: /etc/kafka/ca.pem }
///       librdkafka_options:             # any other librdkafka consumer setting
///         session.timeout.ms: 10000
/// ```
///
/// The streams taken are every venue with every symbol; records of other streams are
/// counted and skipped. `transport`, `ws_url`, `rest_url` and the other venue keys do not
/// apply.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KafkaSourceOptions {
    /// Bootstrap brokers, `host:port`.
    #[serde(deserialize_with = "brokers")]
    pub brokers: Vec<String>,
    /// The trades topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The consumer group.
    pub group_id: String,
    /// The venues (exchange names in the trades) of the streams taken.
    pub venues: Vec<String>,
    /// How often a checkpoint goes down the pipeline, and offsets are committed once every
    /// writer stored what it covers.
    #[serde(default = "default_commit_interval", with = "serde_duration")]
    pub commit_interval: Duration,
    /// How the connection to the brokers is secured.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL authentication, as the writer's.
    #[serde(default)]
    pub sasl: Option<SaslOptions>,
    /// TLS files, as the writer's.
    #[serde(default)]
    pub ssl: Option<SslOptions>,
    /// Any other librdkafka setting. The settings the source owns (group, offsets, commits)
    /// are refused.
    #[serde(default, deserialize_with = "scalar_map")]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_topic() -> String {
    "trades".into()
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

impl std::fmt::Debug for KafkaSourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceOptions")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("venues", &self.venues)
            .field("commit_interval", &self.commit_interval)
            .field("security_protocol", &self.security_protocol)
            .finish_non_exhaustive()
    }
}

/// librdkafka settings the source sets itself: how it joins its group and commits.
const SOURCE_SETTINGS: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "group.protocol",
    "isolation.level",
];

/// Producer settings the writer's client settings carry and a consumer has no use for.
const PRODUCER_SETTINGS: &[&str] = &[
    "compression.type",
    "message.timeout.ms",
    "linger.ms",
    "enable.idempotence",
    "acks",
];

impl KafkaSourceOptions {
    /// The connection settings, as the writer's options (which checks them the same way).
    fn connection(&self) -> KafkaOptions {
        let mut o = KafkaOptions::new(&self.brokers.join(","));
        o.brokers.clone_from(&self.brokers);
        o.topic.clone_from(&self.topic);
        o.security_protocol = self.security_protocol;
        o.sasl.clone_from(&self.sasl);
        o.ssl.clone_from(&self.ssl);
        o.librdkafka_options.clone_from(&self.librdkafka_options);
        o
    }

    /// Checks the options without any I/O; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.group_id.trim().is_empty() {
            return Err(("group_id", "must not be empty".into()));
        }
        if self.venues.is_empty() || self.venues.iter().any(|v| v.trim().is_empty()) {
            return Err(("venues", "must list at least one venue".into()));
        }
        if self.commit_interval.is_zero() {
            return Err(("commit_interval", "must be more than 0".into()));
        }
        for key in self.librdkafka_options.keys() {
            if SOURCE_SETTINGS.contains(&key.as_str()) {
                return Err((
                    "librdkafka_options",
                    format!("{key:?} is set by the kafka source itself"),
                ));
            }
        }
        self.connection().check()
    }

    /// The consumer's librdkafka settings, secrets read through `env`.
    fn client_config(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, (&'static str, String)> {
        let mut c = client_config(&self.connection(), env)?;
        for key in PRODUCER_SETTINGS {
            c.remove(key);
        }
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager: every rebalance takes every partition back, which the source answers by
            // starting the pipeline's state again from the stores.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("client.id", "crypto-feeder-sink");
        Ok(c)
    }
}

/// Builds [`KafkaSource`]s from `exchanges` entries named `kafka`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KafkaSourceFactory;

impl ExchangeFactory for KafkaSourceFactory {
    fn transports(&self) -> Vec<Transport> {
        // A stream of records; the venue keys of either transport do not apply.
        vec![Transport::Websocket]
    }

    fn takes_options(&self) -> bool {
        true
    }

    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError> {
        for key in ["ws_url", "stale_timeout"] {
            if config.is_set(key) {
                return Err(config.invalid(key, "does not apply to the kafka source"));
            }
        }
        let Some(options) = config.read_options::<KafkaSourceOptions>()? else {
            return Err(config.invalid(
                "options",
                "the kafka source needs options: brokers, group_id, venues",
            ));
        };
        options
            .check()
            .map_err(|(key, message)| config.invalid(&format!("options.{key}"), message))?;
        Ok(Arc::new(KafkaSource::new(options, config.symbols.clone())))
    }
}

/// A member of a consumer group on the feeders' trades topic (see the module's docs).
#[derive(Debug)]
pub struct KafkaSource {
    options: KafkaSourceOptions,
    /// Every stream taken: each venue with each symbol.
    streams: Vec<(Arc<str>, Symbol)>,
    /// Records skipped because their stream is not taken, or they are not a trade or gap.
    skipped: Arc<AtomicU64>,
}

impl KafkaSource {
    /// A source of the streams of `venues` × `symbols` on `options.topic`.
    pub fn new(options: KafkaSourceOptions, symbols: Vec<Symbol>) -> Self {
        let streams = options
            .venues
            .iter()
            .flat_map(|v| {
                let v: Arc<str> = Arc::from(v.as_str());
                symbols.iter().map(move |s| (v.clone(), s.clone()))
            })
            .collect();
        Self {
            options,
            streams,
            skipped: Arc::default(),
        }
    }

    /// Records skipped so far: not a trade or gap, not a taken stream, or not an event.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// What the consumer's thread passes to the source's task, in the order it happened.
enum Item {
    /// A record, decoded.
    Record {
        partition: i32,
        offset: i64,
        event: Result<Event, String>,
    },
    /// The group took the partitions back.
    Revoked,
    /// The group handed out partitions.
    Assigned(Vec<i32>),
}

/// The consumer's context: librdkafka's reports go where the writer's go, and rebalances
/// are passed on in order with the records.
struct SourceContext {
    inner: FeederContext,
    items: mpsc::Sender<Item>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.inner.log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            tracing::info!("kafka source: partitions revoked");
            // On the consumer's own thread; the source's task may be gone at shutdown.
            let _ = self.items.blocking_send(Item::Revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "kafka source: partitions assigned");
                let _ = self.items.blocking_send(Item::Assigned(partitions));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka source: rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            // The next commit covers the same records; a rebalance may also have made these
            // partitions another member's.
            tracing::warn!(error = %e, "kafka source: an offset commit failed");
        }
    }
}

type SourceConsumer = BaseConsumer<SourceContext>;

/// Polls the consumer on its own thread until `stop`, decoding each record and passing it
/// on; rebalances are passed on from inside the poll, in order.
fn poll_loop(consumer: Arc<SourceConsumer>, items: mpsc::Sender<Item>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "kafka source: consumer error"),
            Some(Ok(m)) => {
                let event = match m.payload() {
                    Some(p) => serde_json::from_slice::<Event>(p).map_err(|e| e.to_string()),
                    None => Err("a record without a value".into()),
                };
                let item = Item::Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    event,
                };
                if items.blocking_send(item).is_err() {
                    return;
                }
            }
        }
    }
}

/// What one run of the source has delivered and waits to commit.
struct Progress {
    /// Per partition, the offset after the newest record delivered (handed to the pipeline,
    /// or skipped).
    delivered: HashMap<i32, i64>,
    /// The same for the records of the batch not yet sent.
    batched: HashMap<i32, i64>,
    /// Checkpoints sent, oldest first, each with the offsets it covers.
    in_flight: VecDeque<(CheckpointWait, Vec<(i32, i64)>)>,
    /// Whether `delivered` moved since the last checkpoint.
    moved: bool,
}

impl KafkaSource {
    fn stream_of(&self, exchange: &str, symbol: &Symbol) -> Option<&Arc<str>> {
        self.streams
            .iter()
            .find(|(e, s)| **e == *exchange && s == symbol)
            .map(|(e, _)| e)
    }

    fn skip(&self, why: &str, partition: i32, offset: i64) {
        let n = self.skipped.fetch_add(1, Ordering::Relaxed);
        // The first few, then every thousandth: a topic full of other streams does not
        // flood the log.
        if n < 5 || n % 1_000 == 0 {
            tracing::warn!(
                partition,
                offset,
                skipped = n + 1,
                "kafka source: skipped a record ({why})"
            );
        }
    }

    /// Sends the batch, and moves what it covers to the delivered offsets.
    async fn flush(
        &self,
        ctx: &ExchangeContext,
        batch: &mut Vec<Trade>,
        p: &mut Progress,
    ) -> Result<(), ExchangeError> {
        if !batch.is_empty() {
            ctx.deliver(self.name(), std::mem::take(batch)).await?;
        }
        if !p.batched.is_empty() {
            p.delivered.extend(p.batched.drain());
            p.moved = true;
        }
        Ok(())
    }

    /// Sends a checkpoint covering what was delivered, if anything moved.
    async fn checkpoint(
        &self,
        ctx: &ExchangeContext,
        p: &mut Progress,
    ) -> Result<(), ExchangeError> {
        if !p.moved {
            return Ok(());
        }
        let wait = ctx.sink.checkpoint().await?;
        let offsets = p.delivered.iter().map(|(k, v)| (*k, *v)).collect();
        p.in_flight.push_back((wait, offsets));
        p.moved = false;
        Ok(())
    }

    fn commit(&self, consumer: &SourceConsumer, offsets: &[(i32, i64)], mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for (partition, next) in offsets {
            if list
                .add_partition_offset(&self.options.topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                return;
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(e) = consumer.commit(&list, mode) {
            tracing::warn!(error = %e, "kafka source: an offset commit failed");
        }
    }

    /// Takes one record in: a trade of a taken stream goes into the batch, a gap goes on
    /// after the batch; anything else is skipped.
    async fn take(
        &self,
        ctx: &ExchangeContext,
        partition: i32,
        offset: i64,
        event: Result<Event, String>,
        batch: &mut Vec<Trade>,
        p: &mut Progress,
    ) -> Result<(), ExchangeError> {
        match event {
            Ok(Event::Trade(mut t)) => match self.stream_of(&t.exchange, &t.symbol) {
                Some(name) => {
                    // One shared name per stream, as a venue's own trades have.
                    t.exchange = name.clone();
                    batch.push(t);
                }
                None => self.skip("not a stream this source takes", partition, offset),
            },
            Ok(Event::Gap(mut g)) => match self.stream_of(&g.exchange, &g.symbol) {
                Some(name) => {
                    g.exchange = name.clone();
                    self.flush(ctx, batch, p).await?;
                    ctx.sink.send_gap(g).await?;
                }
                None => self.skip("not a stream this source takes", partition, offset),
            },
            Ok(Event::Candle(_)) => self.skip("a candle on the trades topic", partition, offset),
            Err(e) => {
                ExchangeStats::incr(&ctx.stats.parse_errors);
                self.skip(&format!("not an event: {e}"), partition, offset);
            }
        }
        p.batched.insert(partition, offset + 1);
        Ok(())
    }

    /// The loop of one run, until shutdown or a failure.
    async fn consume(
        &self,
        ctx: &ExchangeContext,
        items: &mut mpsc::Receiver<Item>,
        consumer: &SourceConsumer,
    ) -> Result<(), ExchangeError> {
        let mut p = Progress {
            delivered: HashMap::new(),
            batched: HashMap::new(),
            in_flight: VecDeque::new(),
            moved: false,
        };
        let mut batch: Vec<Trade> = Vec::with_capacity(BATCH);
        let mut assigned = false;
        let mut next_checkpoint = tokio::time::Instant::now() + self.options.commit_interval;
        loop {
            let item = tokio::select! {
                biased;
                () = ctx.shutdown.cancelled() => break,
                ok = oldest(&mut p.in_flight) => {
                    if let Some((_, offsets)) = p.in_flight.pop_front() {
                        if !ok {
                            return Err(not_stored());
                        }
                        self.commit(consumer, &offsets, CommitMode::Async);
                    }
                    continue;
                }
                () = tokio::time::sleep_until(next_checkpoint) => {
                    if assigned {
                        // The consumer answers: the status page and health count on it.
                        ctx.stats.link.alive(feeder_core::model::Timestamp::now());
                    }
                    self.flush(ctx, &mut batch, &mut p).await?;
                    if p.in_flight.len() < CHECKPOINTS_IN_FLIGHT {
                        self.checkpoint(ctx, &mut p).await?;
                    }
                    next_checkpoint = tokio::time::Instant::now() + self.options.commit_interval;
                    continue;
                }
                item = items.recv() => item,
            };
            match item {
                None => {
                    return Err(ExchangeError::Closed(Some(
                        "the kafka consumer stopped".into(),
                    )))
                }
                Some(Item::Revoked) => {
                    // Read but not delivered: the partitions' next owner reads it again.
                    batch.clear();
                    p.batched.clear();
                    p.delivered.clear();
                    p.moved = false;
                    assigned = false;
                    ctx.stats.link.set(Link::Connecting);
                }
                Some(Item::Assigned(partitions)) => {
                    assigned = true;
                    if partitions.is_empty() {
                        continue;
                    }
                    let done = ctx.sink.resync(self.streams.clone()).await?;
                    if !done.await {
                        return Err(ExchangeError::Other {
                            context: "kafka source: the stores could not say where they left off"
                                .into(),
                            source: "resync failed".into(),
                        });
                    }
                    for (exchange, symbol) in &self.streams {
                        ctx.sink
                            .progress(exchange, symbol, Completeness::Behind)
                            .await?;
                    }
                    // For the status page and health: the worker consumes. (The pipeline
                    // keeps the streams behind, for its candles.)
                    ctx.stats.link.set(Link::Up);
                    ctx.stats.link.alive(feeder_core::model::Timestamp::now());
                    for (_, stats) in ctx.stats.streams.iter() {
                        stats.set_progress(Completeness::Live);
                    }
                }
                Some(Item::Record {
                    partition,
                    offset,
                    event,
                }) => {
                    if !assigned {
                        continue;
                    }
                    self.take(ctx, partition, offset, event, &mut batch, &mut p)
                        .await?;
                    if batch.len() >= BATCH || items.is_empty() {
                        self.flush(ctx, &mut batch, &mut p).await?;
                    }
                }
            }
        }
        // Shutdown: what was delivered is committed once stored, within a bound.
        self.flush(ctx, &mut batch, &mut p).await?;
        self.checkpoint(ctx, &mut p).await?;
        let mut last = None;
        let deadline = tokio::time::Instant::now() + LAST_CHECKPOINT;
        while let Some((wait, offsets)) = p.in_flight.pop_front() {
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(true) => last = Some(offsets),
                Ok(false) => return Err(not_stored()),
                Err(_) => {
                    tracing::warn!("kafka source: the writers did not store everything in time; the rest is read again at the next start");
                    break;
                }
            }
        }
        if let Some(offsets) = last {
            self.commit(consumer, &offsets, CommitMode::Sync);
        }
        Ok(())
    }
}

fn not_stored() -> ExchangeError {
    ExchangeError::Other {
        context: "kafka source: a writer did not store everything a checkpoint covers; \
                  starting again from the last commit"
            .into(),
        source: "checkpoint failed".into(),
    }
}

/// The outcome of the oldest checkpoint in flight; pending while there is none.
async fn oldest(in_flight: &mut VecDeque<(CheckpointWait, Vec<(i32, i64)>)>) -> bool {
    match in_flight.front_mut() {
        Some((wait, _)) => wait.await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Exchange for KafkaSource {
    fn name(&self) -> &str {
        "kafka"
    }

    fn streams(&self, _symbols: &[Symbol]) -> Vec<(Arc<str>, Symbol)> {
        self.streams.clone()
    }

    async fn run(&self, mut ctx: ExchangeContext) -> Result<(), ExchangeError> {
        // The feeders checked every trade where it came in. The sink's own id check keys a
        // stream by its symbol alone, which across the venues this source relays would hold
        // one venue's ids against another's; the valve still checks ids per stream.
        ctx.sink = ctx.sink.clone().with_rules(TradeRules {
            max_clock_skew: None,
            id_jump: None,
        });
        let config = self
            .options
            .client_config(&|var| std::env::var(var).ok())
            .map_err(|(key, message)| ExchangeError::Config(format!("options.{key}: {message}")))?;
        let (tx, mut items) = mpsc::channel(READ_AHEAD);
        let context = SourceContext {
            inner: FeederContext::default(),
            items: tx.clone(),
        };
        let consumer: SourceConsumer = config
            .create_with_context(context)
            .map_err(|e| ExchangeError::Config(super::config::refused_setting(&e)))?;
        consumer
            .subscribe(&[self.options.topic.as_str()])
            .map_err(|e| ExchangeError::Other {
                context: format!("kafka source: cannot subscribe to {}", self.options.topic),
                source: Box::new(e),
            })?;
        tracing::info!(
            brokers = %self.options.brokers.join(","),
            topic = %self.options.topic,
            group_id = %self.options.group_id,
            streams = self.streams.len(),
            "kafka source joining its group"
        );
        let consumer = Arc::new(consumer);
        ctx.stats.link.set(Link::Connecting);
        // Alive at every commit tick while partitions are assigned.
        ctx.stats
            .link
            .set_fresh_within(self.options.commit_interval * 3 + Duration::from_secs(5));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            tokio::task::spawn_blocking(move || poll_loop(consumer, tx, stop))
        };
        let result = self.consume(&ctx, &mut items, &consumer).await;
        ctx.stats.link.set(Link::Down);
        stop.store(true, Ordering::Relaxed);
        // The poller may wait for room; closing the channel frees it.
        drop(items);
        let _ = poller.await;
        // Leaving the group blocks while librdkafka says goodbye.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeder_core::config::Config;
    use feeder_core::feeder::Registry;

    fn config(options: &str) -> Config {
        Config::from_yaml_str(&format!(
            "exchanges:\n  - name: kafka\n    symbols: [BTC-USD, ETH-USD]\n{options}writers:\n  - type: log\n"
        ))
        .unwrap()
    }

    fn build(options: &str) -> Result<Arc<dyn Exchange>, ConfigError> {
        KafkaSourceFactory.build(&config(options).exchanges[0])
    }

    const GOOD: &str = "    options:\n      brokers: 127.0.0.1:9092\n      group_id: sink\n      venues: [coinbase, bitstamp]\n";

    #[test]
    fn the_streams_are_every_venue_with_every_symbol_under_their_own_names() {
        let source = build(GOOD).unwrap();
        let streams: Vec<String> = source
            .streams(&[])
            .iter()
            .map(|(e, s)| format!("{e}:{s}"))
            .collect();
        assert_eq!(
            streams,
            [
                "coinbase:BTC-USD",
                "coinbase:ETH-USD",
                "bitstamp:BTC-USD",
                "bitstamp:ETH-USD"
            ]
        );
        assert_eq!(source.name(), "kafka");
    }

    #[test]
    fn bad_options_are_refused_naming_the_key() {
        for (options, key) in [
            ("", "options"),
            ("    options:\n      brokers: h:1\n      venues: [a]\n", "group_id"),
            ("    options:\n      brokers: h:1\n      group_id: g\n      venues: []\n", "options.venues"),
            ("    options:\n      brokers: nohost\n      group_id: g\n      venues: [a]\n", "options.brokers"),
            (
                "    options:\n      brokers: h:1\n      group_id: g\n      venues: [a]\n      librdkafka_options: { enable.auto.commit: true }\n",
                "options.librdkafka_options",
            ),
            (
                "    options:\n      brokers: h:1\n      group_id: g\n      venues: [a]\n      commit_every: 1s\n",
                "options",
            ),
            (&format!("    ws_url: ws://127.0.0.1:1/\n{GOOD}"), "ws_url"),
        ] {
            let err = match build(options) {
                Ok(_) => panic!("accepted {options:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_consumer_commits_by_hand_and_carries_no_producer_settings() {
        let options = match build(GOOD) {
            Ok(_) => config(GOOD).exchanges[0]
                .read_options::<KafkaSourceOptions>()
                .unwrap()
                .unwrap(),
            Err(e) => panic!("{e}"),
        };
        let c = options.client_config(&|_| None).unwrap();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("sink"));
        assert_eq!(c.get("acks"), None);
        assert_eq!(c.get("enable.idempotence"), None);
        c.create_native_config().unwrap();
    }

    #[test]
    fn the_registry_has_the_kafka_source_which_takes_options() {
        let mut registry = Registry::new();
        crate::register(&mut registry);
        assert!(registry
            .exchange("kafka")
            .is_some_and(|f| f.takes_options()));
    }
}
