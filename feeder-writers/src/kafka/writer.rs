//! The `kafka` writer: an idempotent librdkafka producer; a batch counts as written when
//! every message of it is acknowledged by all in-sync replicas.

use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::ConfigError;
use feeder_core::exchange::Cursor;
use feeder_core::model::{write_json_line, Event, Symbol};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::client::{check_files, client_config, create, FeederContext};
use super::config::{KafkaOptions, SaslMechanism, SecurityProtocol};
use super::resume::Scanner;
use super::topics;

/// How many times a full local queue is waited on before the batch fails.
const QUEUE_FULL_WAITS: usize = 1_000;

/// Sends trades and candles to Kafka topics.
///
/// Each event is one message: the key is `exchange:symbol` (so a stream stays in one
/// partition, in order), the value its JSON line without the newline. The producer is
/// idempotent with `acks=all`; `write` returns `Ok` once every message of the batch has been
/// acknowledged, and fails (retriably) if any is not within `delivery_timeout`. A retried
/// batch may be stored again in part: Kafka topics are at-least-once here, so consumers
/// should deduplicate on (exchange, symbol, trade_id).
///
/// Where a stream left off is read back from the trades topic: the newest trade keyed with
/// the stream among the newest `resume_scan_records` records of each partition, found by
/// reading back from the end in chunks (see [`resume_point`](Writer::resume_point)). So a
/// restart publishes nothing again that the topic already holds; a stream whose last trade
/// is further back than that is taken as new.
pub struct KafkaWriter {
    options: KafkaOptions,
    /// The producer's settings, secrets included (never logged: `Debug` leaves it out).
    config: ClientConfig,
    /// Shared by every producer of the writer.
    context: FeederContext,
    /// Replaced after a fatal producer error or a fencing (the idempotent producer cannot
    /// go on).
    producer: FutureProducer<FeederContext>,
    /// Set when the producer must be replaced before the next batch.
    renew: bool,
    /// The encoded value of the current event; kept to reuse its capacity.
    buf: Vec<u8>,
    key: String,
    /// What reading back the trades topic learnt at start-up, kept across the resume
    /// questions of one start; dropped at the first write, after which it is stale.
    scanner: Option<Scanner>,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KafkaWriter {
    /// Creates the producer, checks that the brokers answer and that the topics exist
    /// (creating them with `create_topics`), each within `connect_timeout`. Bad options,
    /// a missing secret, silent brokers, a refused TLS handshake or authentication, and a
    /// missing topic fail here with a terminal error: the writer never starts and then
    /// fails every batch.
    pub async fn connect(options: KafkaOptions) -> Result<Self, WriteError> {
        options
            .check()
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        let config = client_config(&options, &|var| std::env::var(var).ok())
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        check_files(&options)?;
        let context = FeederContext::default();
        let producer: FutureProducer<FeederContext> = create(&config, &context)?;
        topics::ensure(&producer, &context, &config, &options).await?;
        let brokers = options.brokers.join(",");
        tracing::info!(
            brokers = %brokers,
            topic = %options.topic,
            candles_topic = %options.candles_topic,
            security_protocol = options.security_protocol.as_str(),
            "kafka writer connected"
        );
        if options.security_protocol == SecurityProtocol::SaslPlaintext
            && options.sasl.as_ref().map(|s| s.mechanism) == Some(SaslMechanism::Plain)
        {
            tracing::warn!(brokers = %brokers, "kafka SASL PLAIN without TLS sends the password unencrypted; use sasl_ssl or SCRAM");
        }
        Ok(Self {
            options,
            config,
            context,
            producer,
            renew: false,
            buf: Vec::new(),
            key: String::new(),
            scanner: None,
        })
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// Drops what the start-up read-back learnt: the consumer closes on a blocking thread.
    async fn drop_scanner(&mut self) {
        if let Some(scanner) = self.scanner.take() {
            let _ = tokio::task::spawn_blocking(move || drop(scanner)).await;
        }
    }

    /// Queues one event; waits for earlier deliveries when the local queue is full.
    async fn enqueue(
        &mut self,
        event: &Event,
        pending: &mut std::collections::VecDeque<DeliveryFuture>,
        first_error: &mut Failure,
    ) -> Result<(), WriteError> {
        let topic = match event {
            // A gap goes with its stream's trades, under the same key, so that a consumer
            // reads it in order with them.
            Event::Trade(_) | Event::Gap(_) => &self.options.topic,
            Event::Candle(_) => &self.options.candles_topic,
        };
        self.key.clear();
        self.key.push_str(event.exchange());
        self.key.push(':');
        self.key.push_str(event.symbol().as_str());
        self.buf.clear();
        write_json_line(event, &mut self.buf);
        let value = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        for _ in 0..QUEUE_FULL_WAITS {
            let record = FutureRecord::to(topic)
                .key(self.key.as_str())
                .payload(value);
            match self.producer.send_result(record) {
                Ok(f) => {
                    pending.push_back(f);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(f) => note(first_error, delivered(f.await)),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(classify(e, "queueing a message")),
            }
        }
        Err(WriteError::retriable(
            "the kafka producer queue stayed full",
            "queue full",
        ))
    }
}

/// The first error of a batch, and whether any error means the producer must be replaced.
#[derive(Default)]
struct Failure {
    first: Option<WriteError>,
    renew: bool,
}

fn note(failure: &mut Failure, r: Result<(), (WriteError, bool)>) {
    if let Err((e, renew)) = r {
        failure.renew |= renew;
        failure.first.get_or_insert(e);
    }
}

/// Errors after which the idempotent producer's id or epoch is no longer accepted: a new
/// producer (with a new id) is the way out.
fn needs_new_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// The outcome of one delivery report (`Err(_)` outside: the producer dropped it).
fn delivered<C>(
    r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, C>,
) -> Result<(), (WriteError, bool)> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => {
            let renew = needs_new_producer(&e);
            Err((classify(e, "a message was not delivered"), renew))
        }
        Err(_) => Err((
            WriteError::retriable("the kafka producer dropped a delivery report", "canceled"),
            false,
        )),
    }
}

/// Message-level problems that a retry cannot fix; anything else (brokers down, timeouts,
/// leader changes) is retried.
pub(super) fn classify(e: KafkaError, context: &str) -> WriteError {
    let terminal = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidConfig
        )
    );
    if terminal {
        WriteError::terminal(context.to_string(), e)
    } else {
        WriteError::retriable(context.to_string(), e)
    }
}

#[async_trait]
impl Writer for KafkaWriter {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.drop_scanner().await;
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(?code, %reason, "kafka producer failed fatally");
            self.renew = true;
        }
        if self.renew {
            // The idempotent producer is unusable (fatal error, or fenced after its
            // messages timed out): start a new one, with a new producer id.
            tracing::warn!("creating a new kafka producer");
            let old = std::mem::replace(&mut self.producer, create(&self.config, &self.context)?);
            self.renew = false;
            // Dropping a producer blocks briefly while it purges its queue.
            let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        }
        let mut pending = std::collections::VecDeque::with_capacity(batch.len());
        let mut failure = Failure::default();
        for event in batch {
            if let Err(e) = self.enqueue(event, &mut pending, &mut failure).await {
                failure.first.get_or_insert(e);
                break;
            }
        }
        // Every report is awaited, so nothing of this batch is still in flight when the
        // runner retries it.
        for f in pending {
            note(&mut failure, delivered(f.await));
        }
        self.renew |= failure.renew;
        match failure.first {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        self.drop_scanner().await;
        self.flush().await
    }

    /// The newest trade keyed `exchange:symbol` on the trades topic: each partition is read
    /// back from its end in chunks of 10 000 records, and the first chunk (going back) that
    /// holds a trade of the stream gives its newest trade (by id when ids are numbers, else
    /// by time); the newest across partitions wins. `None` when the topic is empty, or
    /// holds no trade of the stream; also when none is among the newest
    /// `resume_scan_records` records of any partition, with a warning (the stream is taken
    /// as new). A record of the stream that is not an event is a terminal error naming its
    /// partition and offset. Nothing is committed; what one question reads serves the next
    /// ones until the first write.
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let key = format!("{exchange}:{}", symbol.as_str());
        let scanner = self.scanner.take();
        let (config, context) = (self.config.clone(), self.context.clone());
        let (topic, timeout, bound) = (
            self.options.topic.clone(),
            self.options.connect_timeout,
            self.options.resume_scan_records,
        );
        let span = tracing::Span::current();
        let (scanner, result) = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let mut scanner = match scanner {
                Some(s) => s,
                None => match Scanner::new(&config, &context, topic, timeout, bound) {
                    Ok(s) => s,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = scanner.newest_trade(&key);
            (Some(scanner), result)
        })
        .await
        .map_err(|e| WriteError::terminal("reading back the kafka trades topic failed", e))?;
        self.scanner = scanner;
        result
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        let producer = self.producer.clone();
        let timeout = self.options.delivery_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| WriteError::terminal("the kafka flush failed", e))?
            .map_err(|e| classify(e, "flushing the kafka producer"))
    }
}
