//! The `http` writer: each batch POSTed to a URL, as JSON lines, as an Elasticsearch (or
//! OpenSearch) `_bulk` request, or as a Grafana Loki push.
//!
//! - `ndjson`: the JSON lines of the `file` writer, `application/x-ndjson`. Any 2xx stores
//!   the batch. For Vector, Fluent Bit, or a service of your own.
//! - `elasticsearch`: one `index` action per event, into `index` (trades), `candles_index`
//!   and `gaps_index`, with a stable `_id`, so that a batch sent again overwrites rather than
//!   duplicates; candles are versioned by revision, so the newest revision stays. A 200
//!   whose items partly failed is read item by item: items the server could not take now
//!   are sent again, items it refused for their content are reported as rejected.
//! - `loki`: the push API's JSON, one stream per exchange, symbol and kind (and interval,
//!   for candles), each line an event's JSON.
//!
//! Who retries what: the writer sends a request again after a 408, 429, 5xx or a failure to
//! get an answer, up to `max_retries` times, waiting as `Retry-After` says (seconds or an
//! HTTP date) or with exponential backoff and jitter. That short loop honours what the
//! server asked and, for `_bulk`, resends only the failed items. When it gives up, the
//! batch fails with a retriable error, and the runner's own retry (unbounded, with its
//! backoff up to `retry_max_delay`), queue and spill file take over, as for every writer.

mod bulk;
mod config;
mod encode;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{
    HttpOptions, Preset, DEFAULT_CANDLES_INDEX, DEFAULT_GAPS_INDEX, DEFAULT_INDEX, MAX_RETRY_DELAY,
};
pub use writer::{HttpError, HttpStats, HttpWriter};

/// Builds [`HttpWriter`]s from config entries of type `http`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpWriterFactory;

#[async_trait]
impl WriterFactory for HttpWriterFactory {
    type Options = HttpOptions;

    fn check(&self, options: &HttpOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            // A token variable that is not set is a configuration error, found before start.
            .and_then(|()| options.bearer_token().map(drop))
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: HttpOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(HttpWriter::connect(options).await?))
    }
}
