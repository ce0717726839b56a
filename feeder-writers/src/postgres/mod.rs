//! The `postgres` writer: trades and candles in PostgreSQL tables, created if absent.
//!
//! ```sql
//! trades  (exchange, symbol, trade_id, price numeric, amount numeric, side, ts timestamptz,
//!          received_at timestamptz, timestamp_ns bigint,
//!          PRIMARY KEY (exchange, symbol, trade_id))
//! candles (exchange, symbol, "interval", open_time timestamptz, close_time timestamptz,
//!          open, high, low, close, volume numeric, trades bigint, revision integer,
//!          complete boolean, PRIMARY KEY (exchange, symbol, "interval", open_time))
//! ```
//!
//! Decimals are stored exactly (`numeric`). `timestamptz` has microsecond precision, so a
//! venue's nanosecond trade time is also kept whole in `timestamp_ns`; `received_at` is
//! stored to the microsecond. Connections are plain TCP or the server's Unix socket, or TLS
//! through rustls with libpq's `sslmode` meanings ([`SslMode`]).

mod config;
mod tls;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{PostgresOptions, SslMode};
pub use writer::PostgresWriter;

/// Builds [`PostgresWriter`]s from config entries of type `postgres`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresWriterFactory;

#[async_trait]
impl WriterFactory for PostgresWriterFactory {
    type Options = PostgresOptions;

    fn check(&self, options: &PostgresOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: PostgresOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(PostgresWriter::connect(options).await?))
    }
}
