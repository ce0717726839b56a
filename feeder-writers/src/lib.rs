//! # feeder-writers
//!
//! The stores bundled with crypto-feeder, one folder each, each behind a cargo feature of the
//! same name (all on by default):
//! - [`file`](mod@file): JSON lines or CSV files under a directory, one file per stream
//!   (trades or candles of one exchange and symbol) and UTC day.
//! - [`log`]: every event as a `tracing` event (target `feeder::events`).
//! - [`stdout`]: JSON lines on standard output, for piping into other tools.
//!
//! [`register`] adds them to a [`Registry`] under the config types `file`, `log` and
//! `stdout`. Each writer can also be built directly, without a registry or a config file
//! (for example [`file::FileWriter::open`]).
//!
//! What is not here: batching, retries and queues. Those belong to the runner in
//! `feeder-core` that drives every [`Writer`](feeder_core::writer::Writer); a writer here only
//! knows its store and its format.
#![deny(missing_docs)]

use feeder_core::feeder::Registry;

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "stdout")]
pub mod stdout;

#[cfg(feature = "file")]
pub use file::{FileFormat, FileOptions, FileWriter, FileWriterFactory};
#[cfg(feature = "log")]
pub use log::{LogOptions, LogWriter, LogWriterFactory};
#[cfg(feature = "stdout")]
pub use stdout::{StdoutOptions, StdoutWriter, StdoutWriterFactory};

/// Registers the writers enabled by cargo features under their config types: `file`, `log`,
/// `stdout`.
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "file")]
    registry.register_writer("file", FileWriterFactory);
    #[cfg(feature = "log")]
    registry.register_writer("log", LogWriterFactory);
    #[cfg(feature = "stdout")]
    registry.register_writer("stdout", StdoutWriterFactory);
    // Without any writer feature the registry is left as it was.
    let _ = registry;
}
