//! The `s3` writer: JSON lines or Parquet objects in an S3 bucket or an S3-compatible
//! store, spooled on local disk until uploaded.
//!
//! ```text
//! {prefix}/trades/{exchange}/{symbol}/{YYYY-MM-DD}/{part}.{jsonl|parquet}
//! {prefix}/candles/{exchange}/{symbol}/{YYYY-MM-DD}/{part}.{jsonl|parquet}
//! ```
//!
//! See [`S3Writer`] for when a batch counts as written (on local disk) and when it reaches
//! the bucket, and for where a restart resumes.

mod config;
mod resume;
mod spool;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{S3Format, S3Options};
pub use writer::S3Writer;

/// Builds [`S3Writer`]s from config entries of type `s3`.
#[derive(Clone, Copy, Debug, Default)]
pub struct S3WriterFactory;

#[async_trait]
impl WriterFactory for S3WriterFactory {
    type Options = S3Options;

    fn check(&self, options: &S3Options, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    fn directories(&self, options: &S3Options) -> Vec<(&'static str, std::path::PathBuf)> {
        vec![("spool_dir", options.spool())]
    }

    async fn open(
        &self,
        options: S3Options,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(S3Writer::connect(options).await?))
    }
}
