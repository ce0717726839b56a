//! Options of the `file` writer.

use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::{de, Deserialize, Deserializer};

/// Options of the `file` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: file
///     path: /var/lib/crypto-feeder   # required
///     format: jsonl                  # jsonl (default) | csv | parquet
///     fsync: false                   # true: survive power loss, at a cost per batch
///     roll_rows: 1000000             # parquet: a part is finished at this many rows
///     roll_interval: 5m              # parquet: ... and once it has been open this long
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileOptions {
    /// The directory files are written under; created at start-up if missing. Files are laid
    /// out as `{path}/{trades|candles|gaps}/{exchange}/{symbol}/{YYYY-MM-DD}.{jsonl|csv}`, or
    /// `{YYYY-MM-DD}.part-NNNN.parquet` for Parquet.
    #[serde(deserialize_with = "path")]
    pub path: PathBuf,
    /// The file format.
    #[serde(default)]
    pub format: FileFormat,
    /// Whether each batch is synced to disk before it counts as written. Without it a batch
    /// survives a crash of the process (it is in the operating system's hands); with it, it
    /// also survives a power loss or a kernel crash, at the cost of one disk sync per file
    /// per batch.
    #[serde(default, deserialize_with = "fsync")]
    pub fsync: bool,
    /// Parquet only: a part is finished (and a new one started) once it holds at least this
    /// many rows. A batch is never split across parts, so a part can exceed it by less than
    /// one batch. Ignored by `jsonl` and `csv`, whose files are readable while written.
    #[serde(default = "default_roll_rows", deserialize_with = "roll_rows")]
    pub roll_rows: u64,
    /// Parquet only: a part is finished once it has been open this long, even if small, so
    /// that finished parts appear all day rather than at the end of a UTC day. Ignored by
    /// `jsonl` and `csv`.
    #[serde(default = "default_roll_interval", deserialize_with = "roll_interval")]
    pub roll_interval: Duration,
}

/// Rows per Parquet part, by default: about 50 MB of journal, a few seconds to convert.
pub const DEFAULT_ROLL_ROWS: u64 = 1_000_000;
/// How long a Parquet part stays open, by default.
pub const DEFAULT_ROLL_INTERVAL: Duration = Duration::from_secs(300);
/// The shortest `roll_interval` accepted: parts are numbered up to 9999 per stream and day.
const MIN_ROLL_INTERVAL: Duration = Duration::from_secs(1);

fn default_roll_rows() -> u64 {
    DEFAULT_ROLL_ROWS
}

fn default_roll_interval() -> Duration {
    DEFAULT_ROLL_INTERVAL
}

// A bad value's message from the YAML parser does not say which key held it; these add the
// key, which also lets the config error point at its line.
fn keyed<'de, T: Deserialize<'de>, D: Deserializer<'de>>(key: &str, d: D) -> Result<T, D::Error> {
    T::deserialize(d).map_err(|e| de::Error::custom(format!("{key}: {e}")))
}

fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    keyed("path", d)
}

fn fsync<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    keyed("fsync", d)
}

fn roll_rows<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    keyed("roll_rows", d)
}

fn roll_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    serde_duration::deserialize(d).map_err(|e| de::Error::custom(format!("roll_interval: {e}")))
}

impl FileOptions {
    /// Options for writing JSON lines under `path`, without fsync.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: FileFormat::default(),
            fsync: false,
            roll_rows: DEFAULT_ROLL_ROWS,
            roll_interval: DEFAULT_ROLL_INTERVAL,
        }
    }

    /// The same options with other bounds of a Parquet part: finished at `rows` rows, or
    /// once open for `interval`.
    pub fn with_roll(mut self, rows: u64, interval: Duration) -> Self {
        self.roll_rows = rows;
        self.roll_interval = interval;
        self
    }

    /// The same options with another format.
    pub fn with_format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// The same options with fsync on or off.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Reads and checks the options of a `file` writer's config entry, without any I/O.
    /// Errors name the writer, the key and, where known, its line.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: FileOptions = config.options()?;
        options.check(config)?;
        Ok(options)
    }

    /// Checks what the types cannot say, naming the option of `config` that is wrong.
    pub(crate) fn check(&self, config: &WriterConfig) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(config.option_error("path", "must not be empty"));
        }
        if self.roll_rows == 0 {
            return Err(config.option_error("roll_rows", "must be more than 0"));
        }
        if self.roll_interval < MIN_ROLL_INTERVAL {
            return Err(config.option_error("roll_interval", "must be at least 1s"));
        }
        Ok(())
    }
}

/// How events are written to files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// One JSON object per line, exactly the project's JSON lines contract.
    #[default]
    Jsonl,
    /// Comma-separated values with a header line; trades and candles have their own columns.
    Csv,
    /// Apache Parquet, part files per stream and UTC day, each finished after
    /// [`FileOptions::roll_interval`] or [`FileOptions::roll_rows`], at a new day and at
    /// shutdown (see [`parquet`](super::parquet)).
    #[cfg(feature = "parquet")]
    Parquet,
}

impl FileFormat {
    /// The file name extension: `jsonl`, `csv` or `parquet`.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Csv => "csv",
            #[cfg(feature = "parquet")]
            FileFormat::Parquet => "parquet",
        }
    }
}

#[cfg(feature = "parquet")]
const SUPPORTED: &str = "jsonl, csv, parquet";
#[cfg(not(feature = "parquet"))]
const SUPPORTED: &str = "jsonl, csv";

impl<'de> Deserialize<'de> for FileFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // The messages name the `format` key so that the config error can point at its line.
        match &*s {
            "jsonl" => Ok(FileFormat::Jsonl),
            "csv" => Ok(FileFormat::Csv),
            #[cfg(feature = "parquet")]
            "parquet" => Ok(FileFormat::Parquet),
            #[cfg(not(feature = "parquet"))]
            "parquet" => Err(de::Error::custom(
                "format parquet is not supported in this build: enable the `parquet` feature \
                 of feeder-writers (supported: jsonl, csv)",
            )),
            other => Err(de::Error::custom(format!(
                "unknown format {other:?} (supported: {SUPPORTED})"
            ))),
        }
    }
}
