//! The `file` writer: JSON lines or CSV files under a directory, one file per stream and UTC
//! day.
//!
//! ```text
//! {path}/trades/{exchange}/{symbol}/{YYYY-MM-DD}.{jsonl|csv}
//! {path}/candles/{exchange}/{symbol}/{YYYY-MM-DD}.{jsonl|csv}
//! ```
//!
//! Trades are filed under the UTC day of their trade time, candles under that of their open
//! time. JSON lines are exactly the project's contract. CSV files start with a header line;
//! trades have the columns `exchange,symbol,trade_id,price,amount,side,timestamp,received_at`
//! and candles `exchange,symbol,interval,open_time,close_time,open,high,low,close,volume,
//! trades,revision,complete`; a field is quoted (RFC 4180) only when it holds a comma, a quote or a
//! line break, and lines end with `\n`.
//!
//! Parquet (`format: parquet`, feature `parquet`) writes
//! `{YYYY-MM-DD}.part-NNNN.parquet` files, each finished after `roll_interval` (default 5
//! minutes) or `roll_rows` rows, at a new UTC day and at shutdown; see
//! [`parquet`](mod@parquet) for how batches stay durable until then.

mod config;
pub(crate) mod encode;
pub(crate) mod files;
#[cfg(feature = "parquet")]
pub mod parquet;
mod replay;
mod resume;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{FileFormat, FileOptions, DEFAULT_ROLL_INTERVAL, DEFAULT_ROLL_ROWS};
pub use writer::FileWriter;

/// Builds [`FileWriter`]s from config entries of type `file`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileWriterFactory;

#[async_trait]
impl WriterFactory for FileWriterFactory {
    type Options = FileOptions;

    fn check(&self, options: &FileOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options.check(config)
    }

    fn directories(&self, options: &FileOptions) -> Vec<(&'static str, std::path::PathBuf)> {
        vec![("path", options.path.clone())]
    }

    async fn open(
        &self,
        options: FileOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        let writer = tokio::task::spawn_blocking(move || FileWriter::open(options))
            .await
            .map_err(|e| WriteError::terminal("opening the file writer failed", e))??;
        Ok(Box::new(writer))
    }
}
