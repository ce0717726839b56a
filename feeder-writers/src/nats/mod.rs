//! The `nats` writer: every event as a message on a NATS JetStream stream.
//!
//! Subjects come from templates (`trades.{exchange}.{symbol}`, `candles.{exchange}.{symbol}`,
//! `gaps.{exchange}.{symbol}` by default). A value put into a subject stays inside its
//! token: any byte other than an ASCII letter, digit, `-` or `_` (a `.`, a `*`, a `/`, ...)
//! is written `%XX`, `%` included. Each message carries the event's JSON
//! line and a `Nats-Msg-Id` header with its identity, so the stream's duplicate window
//! drops the copies a retried batch sends again. A batch counts as written once the stream
//! has acknowledged every message of it.
//!
//! At start the writer checks that the stream exists and covers its subjects, and creates
//! it only with the `create_stream` option; otherwise it refuses to start, naming the
//! stream.

mod config;
mod subject;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{CreateStream, NatsOptions, Storage};
pub use writer::{message_id, NatsWriter};

/// Builds [`NatsWriter`]s from config entries of type `nats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NatsWriterFactory;

#[async_trait]
impl WriterFactory for NatsWriterFactory {
    type Options = NatsOptions;

    fn check(&self, options: &NatsOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: NatsOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(NatsWriter::connect(options).await?))
    }
}
