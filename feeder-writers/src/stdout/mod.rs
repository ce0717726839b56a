//! The `stdout` writer: JSON lines on standard output, so that
//! `crypto-feeder run --config F | jq` works.
//!
//! Each batch goes out as one write of all its lines and a flush, from a blocking thread so
//! that a slow reader does not stall the async runtime. When the reader goes away (a broken
//! pipe) the writer stops with a terminal error; there is nobody left to retry for.

use std::io::{self, Write};

use async_trait::async_trait;
use feeder_core::config::WriterConfig;
use feeder_core::feeder::WriterFactory;
use feeder_core::model::{write_json_line, Event};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use serde::Deserialize;

/// The `stdout` writer has no options; any key is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StdoutOptions {}

type Output = Box<dyn Write + Send>;

/// Writes events as JSON lines to standard output.
pub struct StdoutWriter {
    /// Where lines go; `None` only while a write is in flight on the blocking thread, or
    /// after a write's future was dropped midway (the next write then fails cleanly).
    out: Option<Output>,
    /// The encoded batch; kept to reuse its capacity.
    buf: Vec<u8>,
}

impl std::fmt::Debug for StdoutWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutWriter").finish_non_exhaustive()
    }
}

impl Default for StdoutWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutWriter {
    /// A writer to the process's standard output.
    pub fn new() -> Self {
        Self::to_output(Box::new(io::stdout()))
    }

    /// A writer to any byte sink, with the same batching and error handling.
    fn to_output(out: Output) -> Self {
        Self {
            out: Some(out),
            buf: Vec::new(),
        }
    }
}

/// Writes one batch's bytes and flushes. `Stdout` takes its lock once for a `write_all`.
fn write_batch(out: &mut dyn Write, bytes: &[u8]) -> Result<(), WriteError> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => {
                WriteError::terminal("standard output was closed by its reader", e)
            }
            _ => WriteError::Io(e),
        })
}

#[async_trait]
impl Writer for StdoutWriter {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let Some(mut out) = self.out.take() else {
            return Err(WriteError::terminal(
                "standard output writer is unusable",
                "an earlier write was abandoned midway",
            ));
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for event in batch {
            write_json_line(event, &mut buf);
        }
        let (out, buf, result) = tokio::task::spawn_blocking(move || {
            let result = write_batch(&mut out, &buf);
            (out, buf, result)
        })
        .await
        .map_err(|e| WriteError::terminal("standard output task failed", e))?;
        self.out = Some(out);
        self.buf = buf;
        result
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        // Every batch is flushed as it is written.
        Ok(())
    }
}

/// Builds [`StdoutWriter`]s from config entries of type `stdout`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutWriterFactory;

#[async_trait]
impl WriterFactory for StdoutWriterFactory {
    type Options = StdoutOptions;

    async fn open(
        &self,
        _options: StdoutOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(StdoutWriter::new()))
    }
}

#[cfg(test)]
mod tests;
