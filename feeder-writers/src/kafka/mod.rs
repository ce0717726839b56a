//! The `kafka` writer: trades and candles as JSON messages on Kafka topics, through
//! librdkafka (built from source with the `rdkafka` crate, TLS and SCRAM through the
//! system OpenSSL).
//!
//! One message per event, keyed `exchange:symbol`, valued with the event's JSON line
//! (without the newline). The producer is idempotent with `acks=all`, and a batch counts as
//! written only when every message of it is acknowledged. At start-up the topics must exist,
//! or be created with `create_topics`; otherwise the writer does not start. Where each stream
//! left off is read back from the trades topic at start-up (see [`KafkaWriter`]).
//!
//! The `kafka` source ([`KafkaSource`]) reads that trades topic back as a member of a
//! consumer group: the input of the sink workers that store what several feeders publish.

mod client;
mod config;
mod resume;
mod source;
mod topics;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{
    Compression, CreateTopics, KafkaOptions, SaslMechanism, SaslOptions, SecurityProtocol,
    SslOptions,
};
pub use source::{KafkaSource, KafkaSourceFactory, KafkaSourceOptions};
pub use topics::MissingTopic;
pub use writer::KafkaWriter;

/// Builds [`KafkaWriter`]s from config entries of type `kafka`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KafkaWriterFactory;

#[async_trait]
impl WriterFactory for KafkaWriterFactory {
    type Options = KafkaOptions;

    fn check(&self, options: &KafkaOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: KafkaOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(KafkaWriter::connect(options).await?))
    }
}
