//! The `log` writer: every event as a `tracing` event.
//!
//! Each event is logged at info level with target `feeder::events` and the fields `exchange`,
//! `symbol`, `type` (`trade` or `candle`) and `json` (the event's JSON line), so a log
//! pipeline can filter on the fields and still get the whole event. It stores nothing
//! itself: durability is that of the subscriber the program installed.

use async_trait::async_trait;
use feeder_core::config::WriterConfig;
use feeder_core::feeder::WriterFactory;
use feeder_core::model::{write_json_line, Event};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use serde::Deserialize;

/// The `log` writer has no options; any key is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogOptions {}

/// Logs every event through `tracing` (target `feeder::events`, info level).
#[derive(Debug, Default)]
pub struct LogWriter {
    /// Reused for each event's JSON line.
    line: Vec<u8>,
}

impl LogWriter {
    /// A log writer.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Writer for LogWriter {
    fn name(&self) -> &str {
        "log"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        for event in batch {
            self.line.clear();
            write_json_line(event, &mut self.line);
            let bytes = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let json = std::str::from_utf8(bytes).map_err(|e| WriteError::Encode(Box::new(e)))?;
            tracing::info!(
                target: "feeder::events",
                exchange = event.exchange(),
                symbol = event.symbol().as_str(),
                r#type = event.kind(),
                json,
                "event"
            );
        }
        Ok(())
    }
}

/// Builds [`LogWriter`]s from config entries of type `log`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriterFactory;

#[async_trait]
impl WriterFactory for LogWriterFactory {
    type Options = LogOptions;

    async fn open(
        &self,
        _options: LogOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(LogWriter::new()))
    }
}
