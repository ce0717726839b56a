//! The `redis` writer: every event as an entry of a Redis stream (`XADD`).
//!
//! Stream keys come from templates (`trades:{exchange}:{symbol}`,
//! `candles:{exchange}:{symbol}`, `gaps:{exchange}:{symbol}` by default). Each entry holds
//! the event's JSON line in the field `event`, under an id the server gives at arrival, so
//! a stream is in arrival order and an older trade that arrives late is stored like any
//! other. A server-side script stores each batch in one call and one round trip: it skips
//! the events its stream remembers (a bounded window of ids per stream), so a retried batch
//! stores nothing twice, keeps one entry per candle at its highest revision, and trims each
//! stream with `MAXLEN ~`.

mod config;
mod keys;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::RedisOptions;
pub use writer::RedisWriter;

/// Builds [`RedisWriter`]s from config entries of type `redis`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisWriterFactory;

#[async_trait]
impl WriterFactory for RedisWriterFactory {
    type Options = RedisOptions;

    fn check(&self, options: &RedisOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: RedisOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(RedisWriter::connect(options).await?))
    }
}
