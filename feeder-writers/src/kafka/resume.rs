//! Where the trades topic left off: the newest trade of a stream, read back from the topic.
//!
//! Each partition is read backwards in chunks from its high watermark: a chunk is a run of
//! records ending where the one after it starts, read forwards, and the first chunk (going
//! back) that holds a trade keyed with the stream gives the answer, its newest trade by the
//! [`Cursor`] order. The newest trade is not merely the last record: a backfilled range is
//! published after the newer trades that streamed in meanwhile. The reading stops at a
//! bound per partition, past which a stream is taken as new.
//!
//! Everything here blocks; the writer runs it on a blocking thread. What a scan learns of
//! every key it meets is kept for the next stream asked about in the same start-up, so that
//! asking for many streams reads each chunk once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::Cursor;
use feeder_core::model::Event;
use feeder_core::WriteError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::client::FeederContext;
use super::writer::classify;

/// Records per chunk: enough that a stream trading now is found in the first chunk, few
/// enough that one chunk is read in a fraction of a second.
const CHUNK: u64 = 10_000;

/// Polls allowed beyond the records of a chunk: for the end-of-partition and other
/// events that come with no record.
const POLL_SLACK: u64 = 64;

/// Reads the trades topic back. Lives from the first resume question until the writer
/// first writes: after that the topic has moved on and what it learnt is stale.
pub(super) struct Scanner {
    /// For metadata and watermarks.
    consumer: BaseConsumer<FeederContext>,
    /// The consumer's settings: each read of records gets a consumer of its own.
    config: ClientConfig,
    context: FeederContext,
    topic: String,
    /// Longest wait for any one answer of the brokers.
    timeout: Duration,
    /// The most records read per partition.
    bound: u64,
    /// `None` until the topic's partitions are known; empty when the topic is missing.
    partitions: Option<Vec<PartitionScan>>,
}

/// What has been read of one partition.
struct PartitionScan {
    id: i32,
    /// The end of the partition when the scan began; nothing at or after it is read.
    high: i64,
    /// The oldest offset still in the partition.
    low: i64,
    /// `[next, high)` has been read; the next chunk ends at `next`.
    next: i64,
    /// Per key, what the newest chunk holding a trade or an unreadable record of it held.
    seen: HashMap<Vec<u8>, Seen>,
}

/// What the newest chunk that mentions a key holds of it.
#[derive(Clone)]
enum Seen {
    /// Its newest trade.
    Trade(Cursor),
    /// A record of the key that is not an event (the first met in that chunk).
    Unreadable {
        offset: i64,
        source: Arc<serde_json::Error>,
    },
}

/// How the search of one partition ended.
enum Found {
    Trade(Cursor),
    /// Read to its start without a trade of the key.
    Nothing,
    /// Read `bound` records without a trade of the key.
    Bounded,
}

/// A record keyed with a stream that is not one of the project's events: what the stream
/// left off at cannot be told.
#[derive(Debug, thiserror::Error)]
#[error("the record at offset {offset} of {topic}/{partition}, keyed {key}, is not an event")]
pub(super) struct UnreadableRecord {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    #[source]
    source: Arc<serde_json::Error>,
}

impl Scanner {
    /// A scanner of `topic`, with the writer's client settings (so TLS, SASL and the
    /// `librdkafka_options` apply to it too, less the producer's own), reporting to
    /// `context`. Never commits offsets and joins no group.
    pub(super) fn new(
        writer: &ClientConfig,
        context: &FeederContext,
        topic: String,
        timeout: Duration,
        bound: u64,
    ) -> Result<Self, WriteError> {
        let mut c = writer.clone();
        for producer_only in [
            "enable.idempotence",
            "acks",
            "compression.type",
            "linger.ms",
            "message.timeout.ms",
        ] {
            c.remove(producer_only);
        }
        c.set("client.id", "crypto-feeder-resume")
            // librdkafka refuses to assign partitions without a group ("Unknown group"). The
            // partitions are assigned, never subscribed, so the group is never joined, and
            // nothing is committed to it.
            .set("group.id", "crypto-feeder-resume")
            .set("enable.partition.eof", "true")
            // The end of a partition is noticed sooner than with the default 500 ms.
            .set("fetch.wait.max.ms", "100")
            // A chunk start that retention removed meanwhile is an error to retry, not a
            // silent jump to the other end of the partition.
            .set("auto.offset.reset", "error")
            // After the user's settings: reading back must never move a group's offsets.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: BaseConsumer<FeederContext> =
            c.create_with_context(context.clone()).map_err(|e| {
                WriteError::terminal("cannot create the kafka consumer that reads back trades", e)
            })?;
        Ok(Self {
            consumer,
            config: c,
            context: context.clone(),
            topic,
            timeout,
            bound,
            partitions: None,
        })
    }

    /// The newest trade keyed `key` among the newest `bound` records of each partition; see
    /// the module doc. `None` when the topic is missing or holds no trade of the key.
    pub(super) fn newest_trade(&mut self, key: &str) -> Result<Option<Cursor>, WriteError> {
        if self.partitions.is_none() {
            self.partitions = Some(self.open_partitions()?);
        }
        let Some(partitions) = self.partitions.as_mut() else {
            return Ok(None);
        };
        let mut newest: Option<Cursor> = None;
        let mut bounded = false;
        for p in partitions.iter_mut() {
            let reader = Reader {
                consumer: &self.consumer,
                config: &self.config,
                context: &self.context,
                topic: &self.topic,
                timeout: self.timeout,
            };
            match p.find(key.as_bytes(), &reader, self.bound)? {
                Found::Trade(c) => {
                    if newest.as_ref().is_none_or(|n| newer(&c, n)) {
                        newest = Some(c);
                    }
                }
                Found::Nothing => {}
                Found::Bounded => bounded = true,
            }
        }
        if newest.is_none() && bounded {
            tracing::warn!(
                topic = %self.topic,
                key,
                records = self.bound,
                "stream not found in the newest records of any partition of the trades topic \
                 (resume_scan_records); treated as new"
            );
        }
        Ok(newest)
    }

    /// The partitions of the topic with their watermarks; none when the topic is missing.
    fn open_partitions(&self) -> Result<Vec<PartitionScan>, WriteError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(|e| {
                WriteError::retriable(
                    format!("cannot read the partitions of kafka topic {}", self.topic),
                    e,
                )
            })?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(Vec::new());
        };
        match topic.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(Vec::new()),
            Some(code) => {
                return Err(WriteError::retriable(
                    format!("cannot read the partitions of kafka topic {}", self.topic),
                    KafkaError::MetadataFetch(code),
                ))
            }
        }
        let reader = Reader {
            consumer: &self.consumer,
            config: &self.config,
            context: &self.context,
            topic: &self.topic,
            timeout: self.timeout,
        };
        let mut out = Vec::with_capacity(topic.partitions().len());
        for p in topic.partitions() {
            let (low, high) = reader.end(p.id())?;
            out.push(PartitionScan {
                id: p.id(),
                high,
                low,
                next: high,
                seen: HashMap::new(),
            });
        }
        Ok(out)
    }
}

/// Whether `a` is newer than `b`: by id when both ids are numbers, else by time.
fn newer(a: &Cursor, b: &Cursor) -> bool {
    a.trade_id
        .cmp_numeric(&b.trade_id)
        .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
        .is_gt()
}

impl PartitionScan {
    /// Reads chunks back from where the last search stopped until one holds `key`, the
    /// partition's start, or the bound.
    fn find(&mut self, key: &[u8], reader: &Reader<'_>, bound: u64) -> Result<Found, WriteError> {
        let floor = self.low.max(self.high.saturating_sub(clamp(bound)));
        // One more turn than there are chunks within the bound: the last only answers.
        let turns = bound.div_ceil(CHUNK).saturating_add(1);
        for _ in 0..turns {
            match self.seen.get(key) {
                Some(Seen::Trade(c)) => return Ok(Found::Trade(c.clone())),
                Some(Seen::Unreadable { offset, source }) => {
                    return Err(WriteError::terminal(
                        "cannot read where the kafka topic left off",
                        UnreadableRecord {
                            topic: reader.topic.to_string(),
                            partition: self.id,
                            offset: *offset,
                            key: String::from_utf8_lossy(key).into_owned(),
                            source: Arc::clone(source),
                        },
                    ))
                }
                None => {}
            }
            if self.next <= self.low {
                return Ok(Found::Nothing);
            }
            if self.next <= floor {
                return Ok(Found::Bounded);
            }
            let start = floor.max(self.next.saturating_sub(clamp(CHUNK)));
            let chunk = reader.chunk(self.id, start, self.next)?;
            for (k, seen) in chunk {
                // A newer chunk's word on a key stands.
                self.seen.entry(k).or_insert(seen);
            }
            self.next = start;
        }
        Ok(Found::Bounded)
    }
}

/// A count of records as an offset distance.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Adds what the record at `offset`, keyed `key` and valued `payload`, says of its key to
/// what a chunk holds: its newest trade, or the first record of it that is not an event.
fn note(chunk: &mut HashMap<Vec<u8>, Seen>, key: &[u8], offset: i64, payload: &[u8]) {
    let seen = match serde_json::from_slice::<Event>(payload) {
        Ok(Event::Trade(t)) => Seen::Trade(Cursor {
            trade_id: t.trade_id,
            timestamp: t.timestamp,
        }),
        // Gaps share the topic; they say nothing of where the trades are.
        Ok(Event::Gap(_) | Event::Candle(_)) => return,
        Err(e) => Seen::Unreadable {
            offset,
            source: Arc::new(e),
        },
    };
    match chunk.get_mut(key) {
        None => {
            chunk.insert(key.to_vec(), seen);
        }
        Some(current) => {
            let replace = match (&*current, &seen) {
                // One unreadable record of the key is enough to stop.
                (Seen::Unreadable { .. }, _) => false,
                (Seen::Trade(_), Seen::Unreadable { .. }) => true,
                (Seen::Trade(old), Seen::Trade(new)) => newer(new, old),
            };
            if replace {
                *current = seen;
            }
        }
    }
}

/// Reads one partition at a time, each read with a consumer of its own.
struct Reader<'a> {
    /// For watermarks.
    consumer: &'a BaseConsumer<FeederContext>,
    config: &'a ClientConfig,
    context: &'a FeederContext,
    topic: &'a str,
    timeout: Duration,
}

impl Reader<'_> {
    /// The oldest offset of a partition and its end. The end is where reading the
    /// partition runs out, which is at least the high watermark the brokers report (some
    /// Kafka-compatible brokers report less), found by reading on from just before it.
    fn end(&self, partition: i32) -> Result<(i64, i64), WriteError> {
        let (low, listed) = self
            .consumer
            .fetch_watermarks(self.topic, partition, self.timeout)
            .map_err(|e| {
                WriteError::retriable(
                    format!(
                        "cannot read the watermarks of kafka topic {}/{partition}",
                        self.topic
                    ),
                    e,
                )
            })?;
        if listed <= low {
            return Ok((low, low));
        }
        let mut high = listed;
        self.read(partition, listed - 1, i64::MAX, clamp(CHUNK), |m| {
            high = high.max(m.offset() + 1);
        })?;
        Ok((low, high))
    }

    /// What the records `[start, end)` of a partition hold, per key.
    fn chunk(
        &self,
        partition: i32,
        start: i64,
        end: i64,
    ) -> Result<HashMap<Vec<u8>, Seen>, WriteError> {
        let mut out: HashMap<Vec<u8>, Seen> = HashMap::new();
        self.read(partition, start, end, end - start, |m| {
            if let Some(key) = m.key() {
                note(&mut out, key, m.offset(), m.payload().unwrap_or_default());
            }
        })?;
        Ok(out)
    }

    /// Hands `each` the records of a partition from `start` on, up to (not including)
    /// `end`, to the end of the partition, or after `records` records, whichever is first.
    /// Fails when the partition sends more events without records than a few.
    fn read(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        records: i64,
        mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> Result<(), WriteError> {
        // A consumer of its own: one that read this partition before can still hand out
        // records fetched for that earlier read after the new assignment, and a record of
        // another range would end this one early (seen with a broker that reports a low
        // high watermark, so the end was found by reading).
        let consumer: BaseConsumer<FeederContext> = self
            .config
            .create_with_context(self.context.clone())
            .map_err(|e| self.error("cannot create a consumer to read", partition, e))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(self.topic, partition, Offset::Offset(start))
            .and_then(|()| consumer.assign(&assignment))
            .map_err(|e| self.error("cannot start reading", partition, e))?;
        let mut read = 0;
        let polls = u64::try_from(records)
            .unwrap_or(0)
            .saturating_add(POLL_SLACK);
        let mut done = false;
        for _ in 0..polls {
            match consumer.poll(self.timeout) {
                None => {
                    return Err(WriteError::retriable(
                        format!(
                            "kafka topic {}/{partition} sent nothing within {:?} while being \
                             read back from offset {start}",
                            self.topic, self.timeout
                        ),
                        "timeout",
                    ))
                }
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => {
                    done = true;
                    break;
                }
                // End of another partition, from an earlier assignment.
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(self.error("cannot read", partition, e)),
                Some(Ok(m)) => {
                    if m.partition() != partition || m.offset() < start {
                        continue;
                    }
                    if m.offset() >= end {
                        done = true;
                        break;
                    }
                    each(&m);
                    read += 1;
                    if m.offset() >= end.saturating_sub(1) || read >= records {
                        done = true;
                        break;
                    }
                }
            }
        }
        drop(consumer);
        if done {
            Ok(())
        } else {
            Err(WriteError::retriable(
                format!(
                    "kafka topic {}/{partition} did not come to an end while being read back \
                     from offset {start}",
                    self.topic
                ),
                "too many polls",
            ))
        }
    }

    fn error(&self, what: &str, partition: i32, e: KafkaError) -> WriteError {
        classify(
            e,
            &format!("{what} kafka topic {}/{partition} back", self.topic),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use feeder_core::model::{Gap, GapReason, Side, Symbol, Timestamp, Trade, TradeId};

    fn trade(id: &str, secs: i64) -> Vec<u8> {
        let at = Timestamp::from_unix_secs(1_709_251_200 + secs);
        serde_json::to_vec(&Event::Trade(Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::new(id),
            price: "1".parse().unwrap(),
            amount: "1".parse().unwrap(),
            side: Side::Buy,
            timestamp: at,
            received_at: at,
        }))
        .unwrap()
    }

    fn newest(chunk: &HashMap<Vec<u8>, Seen>, key: &str) -> Option<String> {
        match chunk.get(key.as_bytes())? {
            Seen::Trade(c) => Some(c.trade_id.as_str().to_string()),
            Seen::Unreadable { offset, .. } => Some(format!("unreadable@{offset}")),
        }
    }

    #[test]
    fn a_chunk_keeps_the_newest_trade_per_key_and_any_unreadable_record() {
        let gap = serde_json::to_vec(&Event::Gap(Gap {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            after_trade_id: TradeId::new("99"),
            before_trade_id: None,
            from: Timestamp::from_unix_secs(1_709_251_200),
            to: None,
            reason: GapReason::NoBackfill,
        }))
        .unwrap();
        let mut chunk = HashMap::new();
        // Numeric ids: 10 is newest although 9 (a backfill) came after it.
        note(&mut chunk, b"x:A", 0, &trade("8", 1));
        note(&mut chunk, b"x:A", 1, &trade("10", 3));
        note(&mut chunk, b"x:A", 2, &trade("9", 2));
        note(&mut chunk, b"x:A", 3, &gap);
        // Other ids: by time.
        note(&mut chunk, b"x:B", 4, &trade("b", 5));
        note(&mut chunk, b"x:B", 5, &trade("a", 4));
        // A gap alone says nothing of the key.
        note(&mut chunk, b"x:C", 6, &gap);
        // An unreadable record stands, whatever follows it.
        note(&mut chunk, b"x:D", 7, &trade("1", 1));
        note(&mut chunk, b"x:D", 8, b"{\"type\":\"tra");
        note(&mut chunk, b"x:D", 9, &trade("2", 2));
        assert_eq!(newest(&chunk, "x:A").as_deref(), Some("10"));
        assert_eq!(newest(&chunk, "x:B").as_deref(), Some("b"));
        assert_eq!(newest(&chunk, "x:C"), None);
        assert_eq!(newest(&chunk, "x:D").as_deref(), Some("unreadable@8"));
    }
}
