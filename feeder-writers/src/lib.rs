//! # feeder-writers
//!
//! The stores bundled with crypto-feeder, one folder each, each behind a cargo feature of the
//! same name. `file`, `log` and `stdout` are on by default; the others bring heavy
//! dependencies and are opted into one by one, or all at once with `full` (as the
//! `crypto-feeder` command does):
//! - [`file`](mod@file): JSON lines or CSV files under a directory, one file per stream
//!   (trades or candles of one exchange and symbol) and UTC day.
//! - [`log`]: every event as a `tracing` event (target `feeder::events`).
//! - [`stdout`]: JSON lines on standard output, for piping into other tools.
//! - [`postgres`]: PostgreSQL tables with idempotent batched inserts (feature `postgres`).
//! - [`kafka`]: Kafka topics through librdkafka, idempotent producer (feature `kafka`).
//! - [`nats`]: NATS JetStream streams, deduplicated by message id (feature `nats`).
//! - [`redis`]: Redis streams, deduplicated by a server-side script (feature `redis`).
//! - [`s3`]: objects in S3 or an S3-compatible store, spooled on local disk first (feature
//!   `s3`).
//! - [`syslog`](mod@syslog): RFC 5424 messages over UDP, TCP or TLS (feature `syslog`).
//! - [`http`](mod@http): each batch POSTed to a URL as JSON lines, an Elasticsearch `_bulk`
//!   request or a Loki push (feature `http`).
//!
//! The `file` and `s3` writers also write Parquet (`format: parquet`, feature `parquet`).
//!
//! [`register`] adds them to a [`Registry`] under the config types `file`, `log`,
//! `stdout`, `postgres`, `kafka`, `s3`, `http`, `nats`, `redis` and `syslog`. Each writer can also be
//! built directly, without a registry or a config file
//! (for example [`file::FileWriter::open`]).
//!
//! What is not here: batching, retries and queues. Those belong to the runner in
//! `feeder-core` that drives every [`Writer`](feeder_core::writer::Writer); a writer here only
//! knows its store and its format.
#![deny(missing_docs)]

use feeder_core::feeder::Registry;

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(feature = "http", feature = "nats", feature = "redis"))]
mod secret;
#[cfg(feature = "stdout")]
pub mod stdout;
#[cfg(feature = "syslog")]
pub mod syslog;

#[cfg(feature = "file")]
pub use file::{FileFormat, FileOptions, FileWriter, FileWriterFactory};
#[cfg(feature = "http")]
pub use http::{HttpOptions, HttpWriter, HttpWriterFactory};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaOptions, KafkaWriter, KafkaWriterFactory};
#[cfg(feature = "log")]
pub use log::{LogOptions, LogWriter, LogWriterFactory};
#[cfg(feature = "nats")]
pub use nats::{NatsOptions, NatsWriter, NatsWriterFactory};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresWriter, PostgresWriterFactory};
#[cfg(feature = "redis")]
pub use redis::{RedisOptions, RedisWriter, RedisWriterFactory};
#[cfg(feature = "s3")]
pub use s3::{S3Options, S3Writer, S3WriterFactory};
#[cfg(feature = "stdout")]
pub use stdout::{StdoutOptions, StdoutWriter, StdoutWriterFactory};
#[cfg(feature = "syslog")]
pub use syslog::{SyslogOptions, SyslogWriter, SyslogWriterFactory};

/// Registers the writers enabled by cargo features under their config types: `file`, `log`,
/// `stdout`, `postgres`, `kafka`, `s3`, `http`, `nats`, `redis`, `syslog`.
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "file")]
    registry.register_writer("file", FileWriterFactory);
    #[cfg(feature = "log")]
    registry.register_writer("log", LogWriterFactory);
    #[cfg(feature = "stdout")]
    registry.register_writer("stdout", StdoutWriterFactory);
    #[cfg(feature = "postgres")]
    registry.register_writer("postgres", PostgresWriterFactory);
    #[cfg(feature = "kafka")]
    registry.register_writer("kafka", KafkaWriterFactory);
    // The source that reads the feeders' trades topic back (sink workers).
    #[cfg(feature = "kafka")]
    registry.register_exchange("kafka", kafka::KafkaSourceFactory);
    #[cfg(feature = "s3")]
    registry.register_writer("s3", S3WriterFactory);
    #[cfg(feature = "http")]
    registry.register_writer("http", HttpWriterFactory);
    #[cfg(feature = "nats")]
    registry.register_writer("nats", NatsWriterFactory);
    #[cfg(feature = "redis")]
    registry.register_writer("redis", RedisWriterFactory);
    #[cfg(feature = "syslog")]
    registry.register_writer("syslog", SyslogWriterFactory);
    // Without any writer feature the registry is left as it was.
    let _ = registry;
}
