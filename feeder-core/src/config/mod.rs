//! The YAML configuration: what to collect, how to process it, where to store it.
//!
//! Loading is three pure steps, none of which touches the network: `${VAR}` interpolation
//! from the environment, parsing (unknown keys are errors that name the key and its line),
//! and validation. Checking exchange names and writer options against a
//! [`Registry`](crate::feeder::Registry) is [`Feeder::validate`](crate::feeder::Feeder::validate).

mod capture;
mod env;
mod locate;
mod paths;
mod shard;
mod size;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::exchange::Transport;
use crate::model::{serde_duration, Interval, Symbol};

pub use capture::{CaptureCompression, CaptureConfig};
pub use env::{interpolate, MAX_CONFIG_BYTES, MAX_VALUE_BYTES};
pub use paths::check_directory;
pub use shard::{fnv1a64, shard_of, ShardConfig};
pub use size::ByteSize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key or a bad value; the message has the line.
    /// (The parser's error is the message itself, not a separate cause, so that a cause
    /// chain does not print it twice.)
    #[error("invalid config: {0}")]
    Yaml(serde_yaml_ng::Error),
    /// A `${VAR}` names a variable that is not set.
    #[error("environment variable {name} is not set (line {line})")]
    MissingEnv {
        /// The variable.
        name: String,
        /// The line of the reference.
        line: usize,
    },
    /// A `${NAME}` whose value is larger than [`MAX_VALUE_BYTES`].
    #[error("environment variable {name} is {len} bytes, more than the {limit} a value may have (line {line})")]
    ValueTooLarge {
        /// The variable.
        name: String,
        /// The size of its value.
        len: usize,
        /// The largest size allowed.
        limit: usize,
        /// The line of the reference.
        line: usize,
    },
    /// The config is larger than [`MAX_CONFIG_BYTES`] (after interpolation).
    #[error("the config is larger than {limit} bytes after interpolation (line {line})")]
    TooLarge {
        /// The largest size allowed.
        limit: usize,
        /// The line at which it passed the limit.
        line: usize,
    },
    /// A `${...}` that cannot be read.
    #[error("bad interpolation on line {line}: {reason}")]
    Interpolation {
        /// The line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value is invalid in context (duplicate symbol, zero batch size, ...).
    #[error("{path}: {reason}")]
    Invalid {
        /// Where, as `exchanges[0].symbols`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An option of a writer is unknown or has a bad value.
    #[error("writers[{index}] ({name}){}: {message}{}", key.as_ref().map(|k| format!(".{k}")).unwrap_or_default(), line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    WriterOption {
        /// Position in the `writers` list.
        index: usize,
        /// The writer's name (its type unless it has a `name`).
        name: String,
        /// The option, when known.
        key: Option<String>,
        /// The parser's message.
        message: String,
        /// The line of the offending key, when it can be found.
        line: Option<usize>,
    },
}

impl From<serde_yaml_ng::Error> for ConfigError {
    fn from(e: serde_yaml_ng::Error) -> Self {
        ConfigError::Yaml(e)
    }
}

impl ConfigError {
    /// An [`Invalid`](ConfigError::Invalid) error.
    pub fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The venues to collect from.
    pub exchanges: Vec<ExchangeConfig>,
    /// Processing between exchanges and writers.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Where events are stored.
    pub writers: Vec<WriterConfig>,
    /// How long a graceful shutdown may take before stragglers are named and abandoned.
    #[serde(default = "default_shutdown_timeout", with = "serde_duration")]
    pub shutdown_timeout: Duration,
    /// The HTTP listener of Prometheus metrics, health checks and the status page; none
    /// unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// How often the command line logs a one-line status when its stderr is not a terminal
    /// (default 1m).
    #[serde(default = "default_status_interval", with = "serde_duration")]
    pub status_interval: Duration,
    /// This feeder's share of the streams, when several feeders divide them; it follows only
    /// those (see [`ShardConfig`] and [`Config::owned_exchanges`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardConfig>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_status_interval() -> Duration {
    Duration::from_secs(60)
}

/// Where metrics, health and the status page are served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The address to listen on, as `127.0.0.1:9898`. An address other than loopback makes
    /// the page and the metrics reachable from other machines: there is no authentication.
    pub listen: std::net::SocketAddr,
}

/// One venue and the symbols to collect from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Registry name (`bitstamp`, `coinbase`, ...).
    pub name: String,
    /// Normalized symbols (`BTC-USD`).
    pub symbols: Vec<Symbol>,
    /// `websocket` (default) or `rest`.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// How often to poll over REST.
    #[serde(default = "default_poll_interval", with = "serde_duration")]
    pub poll_interval: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout", with = "serde_duration")]
    pub request_timeout: Duration,
    /// Override of the REST base URL (proxies, mirrors, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<Url>,
    /// Override of the WebSocket URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<Url>,
    /// After a WebSocket reconnect, fetch the missed trades over REST (where the venue allows).
    #[serde(default = "default_true")]
    pub backfill: bool,
    /// Reconnect a WebSocket that received nothing for this long (default: the venue's own,
    /// usually 30s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub stale_timeout: Option<Duration>,
    /// Record the venue's raw traffic into files, for replay (off when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureConfig>,
    /// The source's own settings, for a source that has some (the `kafka` source: its
    /// brokers, topic, group, ...), read and checked by its factory. Venues take none: they
    /// refuse the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_yaml_ng::Mapping>,
    /// Position in the `exchanges` list, for error messages.
    #[serde(skip)]
    index: usize,
    /// The keys written in the file for this entry, with their lines: which options were
    /// set, not left at their default.
    #[serde(skip)]
    key_lines: HashMap<String, usize>,
}

/// Serde adapter for `Option<Duration>` written as text.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::model::serde_duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Read through `serde_duration` inside the visit of the value, so that an error names
    /// the key and the line of the value.
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Text(#[serde(with = "crate::model::serde_duration")] Duration);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(<Option<Text>>::deserialize(d)?.map(|t| t.0))
    }
}

impl ExchangeConfig {
    /// An entry for venue `name` streaming `symbols`, every other setting at its default
    /// (for configuration built in code; prefer it to a struct literal, which breaks when a
    /// setting is added).
    pub fn new(name: impl Into<String>, symbols: Vec<Symbol>) -> Self {
        Self {
            name: name.into(),
            symbols,
            transport: default_transport(),
            poll_interval: default_poll_interval(),
            request_timeout: default_request_timeout(),
            rest_url: None,
            ws_url: None,
            backfill: true,
            stale_timeout: None,
            capture: None,
            options: None,
            index: 0,
            key_lines: HashMap::new(),
        }
    }

    /// Where option `key` of this entry is, for error messages: `exchanges[2] (acme).ws_url`.
    pub fn at(&self, key: &str) -> String {
        format!("exchanges[{}] ({}).{key}", self.index, self.name)
    }

    /// A [`ConfigError::Invalid`] about option `key` of this entry, with the key's line
    /// when the entry was read from a file.
    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.at(key), with_line(reason.into(), &self.key_lines, key))
    }

    /// Whether option `key` was given: written in the file, or (for entries built in code)
    /// set to something other than its default.
    pub fn is_set(&self, key: &str) -> bool {
        self.key_lines.contains_key(key)
            || match key {
                "transport" => self.transport != default_transport(),
                "poll_interval" => self.poll_interval != default_poll_interval(),
                "request_timeout" => self.request_timeout != default_request_timeout(),
                "rest_url" => self.rest_url.is_some(),
                "ws_url" => self.ws_url.is_some(),
                "backfill" => !self.backfill,
                "stale_timeout" => self.stale_timeout.is_some(),
                "options" => self.options.is_some(),
                _ => false,
            }
    }

    /// The WebSocket endpoint: `ws_url` when set, else `default`; `ws://` or `wss://` with a
    /// host (plain `ws://` is for mocks and proxies).
    pub fn ws_endpoint(&self, default: &str) -> Result<Url, ConfigError> {
        self.endpoint("ws_url", self.ws_url.as_ref(), default, &["wss", "ws"])
    }

    /// The REST base URL: `rest_url` when set, else `default`; `http://` or `https://` with a
    /// host.
    pub fn rest_endpoint(&self, default: &str) -> Result<Url, ConfigError> {
        self.endpoint(
            "rest_url",
            self.rest_url.as_ref(),
            default,
            &["https", "http"],
        )
    }

    fn endpoint(
        &self,
        key: &str,
        configured: Option<&Url>,
        default: &str,
        schemes: &[&str],
    ) -> Result<Url, ConfigError> {
        let url = match configured {
            Some(u) => u.clone(),
            None => Url::parse(default).map_err(|e| self.invalid(key, e.to_string()))?,
        };
        if !schemes.contains(&url.scheme()) {
            return Err(self.invalid(
                key,
                format!(
                    "unsupported scheme {:?} in {url}; expected one of {}",
                    url.scheme(),
                    schemes.join(", ")
                ),
            ));
        }
        if url.cannot_be_a_base() || url.host_str().is_none() {
            return Err(self.invalid(key, format!("{url} has no host")));
        }
        Ok(url)
    }

    /// This entry as the `index`th of its list (its position names it in errors).
    /// Reads the entry's `options` map into `T` (declare it `#[serde(deny_unknown_fields)]`);
    /// `None` when the entry has none. Errors name the entry and the `options` key's line.
    pub fn read_options<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, ConfigError> {
        let Some(map) = &self.options else {
            return Ok(None);
        };
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map.clone()))
            .map(Some)
            .map_err(|e| self.invalid("options", e.to_string()))
    }

    pub(crate) fn numbered(mut self, index: usize) -> Self {
        self.index = index;
        self
    }
}

/// `reason`, followed by ` at line N` when the line of `key` (or of its top key, for a
/// nested `spill.path`) is known.
fn with_line(reason: String, lines: &HashMap<String, usize>, key: &str) -> String {
    let top = key.split('.').next().unwrap_or(key);
    match lines.get(key).or_else(|| lines.get(top)) {
        Some(line) => format!("{reason} at line {line}"),
        None => reason,
    }
}

fn default_transport() -> Transport {
    Transport::Websocket
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}

/// What to do with a trade that arrives after its candle was emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LateTradePolicy {
    /// Count it (the trade itself still goes to the writers) and leave the candle as it was.
    #[default]
    Drop,
    /// Emit the candle again including the trade, with `revision` increased.
    Revise,
}

/// Processing between exchanges and writers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pass each (exchange, symbol, trade_id) only once.
    #[serde(default = "default_true")]
    pub dedup: bool,
    /// Per stream, how many recent ids the valve remembers for venues whose ids do not
    /// increase.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// Candle intervals (`[]` for none).
    #[serde(default = "default_candles")]
    pub candles: Vec<Interval>,
    /// How far past an interval's close its stream must be known complete (its completeness
    /// watermark) before the candle is emitted: room for trades that arrive out of order.
    #[serde(default = "default_candle_grace", with = "serde_duration")]
    pub candle_grace: Duration,
    /// What to do with a trade older than an emitted candle.
    #[serde(default)]
    pub late_trades: LateTradePolicy,
    /// Capacity, in batches, of the channel from the exchanges into the pipeline.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Most bytes of trades waiting in the channel from the exchanges into the pipeline
    /// (`32MiB` by default, at least `64KiB`). When it is full an exchange waits before it
    /// reads on, so that a slow store holds the venue's socket back instead of growing memory.
    /// Sizes are estimated from the number of trades
    /// ([`EVENT_BYTES`](crate::budget::EVENT_BYTES) each).
    #[serde(default = "default_buffer")]
    pub buffer: ByteSize,
    /// How far, either way, a trade's time may be from the time it was received (`1d` by
    /// default, at least `1s`). A trade outside is rejected before the pipeline: counted,
    /// logged, never stored. Raise it to backfill trades older than this after a long outage.
    #[serde(default = "default_max_clock_skew", with = "serde_duration")]
    pub max_clock_skew: Duration,
    /// A JSON-lines file that receives every trade turned away before the pipeline (rejected
    /// or quarantined), with the reason: the dead-letter output. Unset by default (such trades
    /// are then only counted and logged).
    #[serde(default)]
    pub rejected: Option<std::path::PathBuf>,
}

fn default_dedup_window() -> usize {
    10_000
}
fn default_candles() -> Vec<Interval> {
    vec![Interval::M30, Interval::H1]
}
fn default_candle_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_channel_capacity() -> usize {
    1024
}
fn default_buffer() -> ByteSize {
    ByteSize::mib(32)
}
/// The smallest byte bound a queue may have.
const MIN_QUEUE_BYTES: ByteSize = ByteSize(64 << 10);
fn default_max_clock_skew() -> Duration {
    Duration::from_secs(86_400)
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            dedup: true,
            dedup_window: default_dedup_window(),
            candles: default_candles(),
            candle_grace: default_candle_grace(),
            late_trades: LateTradePolicy::default(),
            channel_capacity: default_channel_capacity(),
            buffer: default_buffer(),
            max_clock_skew: default_max_clock_skew(),
            rejected: None,
        }
    }
}

/// What a writer's queue does when it is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFullPolicy {
    /// Wait: nothing is lost, and the pipeline slows to this writer's pace once its queue is
    /// full.
    #[default]
    Block,
    /// Drop the new batch, count it and log loudly: the other writers go on at full speed.
    Drop,
}

/// A writer's spill buffer: where undelivered batches wait on disk while its store is down.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpillConfig {
    /// Directory of the spill file (`{path}/{writer name}.spill`).
    pub path: PathBuf,
    /// Largest size of the spill file; beyond it `when_full` applies.
    #[serde(default = "default_spill_max_bytes")]
    pub max_bytes: u64,
}

fn default_spill_max_bytes() -> u64 {
    1 << 30
}

/// One writer: the settings every writer has, plus its own options.
///
/// Written in YAML as one map: `type`, the common keys below, and the writer's own keys
/// (`path`, `format`, ...), which its factory reads with [`WriterConfig::options`].
#[derive(Clone, Debug, Serialize)]
pub struct WriterConfig {
    /// Registry type (`file`, `log`, `stdout`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// A name for logs and the summary; defaults to the type.
    pub name: Option<String>,
    /// Write at most this many events per batch.
    pub batch_size: usize,
    /// How long a partial batch may wait for more events when nothing more is queued
    /// (default `0ms`: write at once; under load batches fill up by themselves). Raise it for
    /// stores where each write costs a round trip.
    #[serde(with = "serde_duration")]
    pub batch_delay: Duration,
    /// Capacity of the writer's queue, in batches.
    pub queue_capacity: usize,
    /// Most bytes of events in the writer's queue (`32MiB` by default, at least `64KiB`):
    /// the queue is full when either bound is reached. Sizes are estimated from the number of
    /// events ([`EVENT_BYTES`](crate::budget::EVENT_BYTES) each).
    pub queue_bytes: ByteSize,
    /// What the queue does when full.
    pub when_full: WhenFullPolicy,
    /// Longest wait between retries of a failing batch.
    #[serde(with = "serde_duration")]
    pub retry_max_delay: Duration,
    /// An on-disk buffer for when the queue is full (a store down for a while).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spill: Option<SpillConfig>,
    /// The writer's own keys.
    #[serde(flatten)]
    pub options: serde_yaml_ng::Mapping,
    /// Line of each of this writer's keys in the file, for error messages.
    #[serde(skip)]
    key_lines: HashMap<String, usize>,
    /// Position in the `writers` list.
    #[serde(skip)]
    index: usize,
}

impl WriterConfig {
    /// A writer of `kind` with default settings and no options (for programs that build their
    /// configuration in code).
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: None,
            batch_size: 1000,
            batch_delay: Duration::ZERO,
            queue_capacity: 1024,
            queue_bytes: ByteSize::mib(32),
            when_full: WhenFullPolicy::Block,
            retry_max_delay: Duration::from_secs(30),
            spill: None,
            options: serde_yaml_ng::Mapping::new(),
            key_lines: HashMap::new(),
            index: 0,
        }
    }

    /// Sets one option (for configuration built in code).
    pub fn with_option(mut self, key: &str, value: impl Into<serde_yaml_ng::Value>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// The name used in logs and the summary.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.kind)
    }

    /// Reads the writer's own options into `T` (declare it `#[serde(deny_unknown_fields)]`).
    /// Errors name the writer, the key and, where it can be found, the line.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(self.options.clone())).map_err(
            |e| {
                let message = e.to_string();
                let line = message
                    .split('`')
                    .nth(1)
                    .and_then(|key| self.key_lines.get(key).copied())
                    .or_else(|| {
                        // A bad value: place it on the first option the message names.
                        self.options.keys().find_map(|k| {
                            let k = k.as_str()?;
                            message
                                .contains(k)
                                .then(|| self.key_lines.get(k).copied())?
                        })
                    });
                ConfigError::WriterOption {
                    index: self.index,
                    name: self.display_name().to_owned(),
                    key: None,
                    message,
                    line,
                }
            },
        )
    }

    /// Where option `key` of this writer is, for error messages: `writers[1] (name).path`.
    pub fn at(&self, key: &str) -> String {
        format!("writers[{}] ({}).{key}", self.index, self.display_name())
    }

    /// A [`ConfigError::WriterOption`] for this writer about option `key` (a nested one is
    /// written `spill.path`, and placed on the line of its top key).
    pub fn option_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let top = key.split('.').next().unwrap_or(key);
        ConfigError::WriterOption {
            index: self.index,
            name: self.display_name().to_owned(),
            key: Some(key.to_owned()),
            message: message.into(),
            line: self
                .key_lines
                .get(key)
                .or_else(|| self.key_lines.get(top))
                .copied(),
        }
    }
}

impl<'de> Deserialize<'de> for WriterConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WriterVisitor)
    }
}

/// Reads a writer's map one key at a time. Each common setting is read by the deserializer
/// itself, inside its visit of the map, so that a bad value is reported with its key path and
/// line (`writers[0].batch_delay ... at line 9`) rather than those of the `writers` list.
struct WriterVisitor;

/// A [`Duration`] written as text, read where it stands in the map (see [`WriterVisitor`]).
#[derive(Deserialize)]
#[serde(transparent)]
struct DurationText(#[serde(with = "serde_duration")] Duration);

impl<'de> serde::de::Visitor<'de> for WriterVisitor {
    type Value = WriterConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a writer: a map with a `type` and its settings")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<WriterConfig, A::Error> {
        use serde::de::Error;
        let mut kind: Option<String> = None;
        let mut cfg = WriterConfig::new(String::new());
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            let name = key
                .as_str()
                .ok_or_else(|| A::Error::custom("writer option keys must be strings"))?
                .to_owned();
            if !seen.insert(name.clone()) {
                return Err(A::Error::custom(format!(
                    "duplicate entry with key {name:?}"
                )));
            }
            match name.as_str() {
                "type" => kind = Some(map.next_value()?),
                "name" => cfg.name = Some(map.next_value()?),
                "batch_size" => cfg.batch_size = map.next_value()?,
                "batch_delay" => cfg.batch_delay = map.next_value::<DurationText>()?.0,
                "queue_capacity" => cfg.queue_capacity = map.next_value()?,
                "queue_bytes" => cfg.queue_bytes = map.next_value()?,
                "when_full" => cfg.when_full = map.next_value()?,
                "retry_max_delay" => {
                    cfg.retry_max_delay = map.next_value::<DurationText>()?.0;
                }
                "spill" => cfg.spill = Some(map.next_value()?),
                _ => {
                    let value: serde_yaml_ng::Value = map.next_value()?;
                    cfg.options.insert(key, value);
                }
            }
        }
        cfg.kind = kind.ok_or_else(|| A::Error::custom("missing field `type` in a writer"))?;
        Ok(cfg)
    }
}

impl Config {
    /// Reads and validates a file, interpolating from the process environment. A file
    /// larger than [`MAX_CONFIG_BYTES`] is refused without being read whole.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read as _;
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                limit: MAX_CONFIG_BYTES,
                line: bytes.iter().filter(|&&b| b == b'\n').count() + 1,
            });
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Self::from_yaml_str(&text)
    }

    /// Parses and validates YAML text, interpolating from the process environment.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_yaml_str_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates YAML text, interpolating with `lookup` (pure: for tests and for
    /// programs with their own secret store).
    pub fn from_yaml_str_with_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = interpolate(text, lookup)?;
        let mut config: Config = serde_yaml_ng::from_str(&text)?;
        let lines = locate::item_key_lines(&text, "exchanges");
        for (i, e) in config.exchanges.iter_mut().enumerate() {
            e.index = i;
            if let Some(l) = lines.get(i) {
                e.key_lines = l.clone();
            }
        }
        let lines = locate::item_key_lines(&text, "writers");
        for (i, w) in config.writers.iter_mut().enumerate() {
            w.index = i;
            if let Some(l) = lines.get(i) {
                w.key_lines = l.clone();
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without a registry: non-empty lists, unique symbols and
    /// names, positive sizes and intervals.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(shard) = &self.shard {
            shard.validate()?;
        }
        if self.exchanges.is_empty() {
            return Err(ConfigError::invalid(
                "exchanges",
                "at least one exchange is needed",
            ));
        }
        if self.writers.is_empty() {
            return Err(ConfigError::invalid(
                "writers",
                "at least one writer is needed",
            ));
        }
        for (i, ex) in self.exchanges.iter().enumerate() {
            let at = |field: &str| format!("exchanges[{i}] ({}).{field}", ex.name);
            let invalid = |field: &str, reason: String| {
                ConfigError::invalid(at(field), with_line(reason, &ex.key_lines, field))
            };
            if ex.symbols.is_empty() {
                return Err(invalid("symbols", "at least one symbol is needed".into()));
            }
            let mut seen = HashSet::new();
            for s in &ex.symbols {
                if !seen.insert(s) {
                    return Err(invalid("symbols", format!("{s} is listed twice")));
                }
            }
            if ex.poll_interval < Duration::from_millis(100) {
                return Err(invalid("poll_interval", "must be at least 100ms".into()));
            }
            if ex
                .stale_timeout
                .is_some_and(|d| d < Duration::from_millis(100))
            {
                return Err(invalid("stale_timeout", "must be at least 100ms".into()));
            }
            if ex.request_timeout.is_zero() {
                return Err(invalid("request_timeout", "must be positive".into()));
            }
            if let Some((key, why)) = ex.capture.as_ref().and_then(|c| c.problem()) {
                return Err(ConfigError::invalid(
                    at(key),
                    with_line(why, &ex.key_lines, "capture"),
                ));
            }
            for (field, url) in [("rest_url", &ex.rest_url), ("ws_url", &ex.ws_url)] {
                if let Some(url) = url {
                    let ok = match field {
                        "rest_url" => matches!(url.scheme(), "http" | "https"),
                        _ => matches!(url.scheme(), "ws" | "wss"),
                    };
                    if !ok {
                        return Err(invalid(
                            field,
                            format!("unsupported scheme {:?}", url.scheme()),
                        ));
                    }
                }
            }
        }
        let mut names = HashSet::new();
        for (i, w) in self.writers.iter().enumerate() {
            let at = |field: &str| format!("writers[{i}] ({}).{field}", w.kind);
            let invalid = |field: &str, reason: String| {
                ConfigError::invalid(at(field), with_line(reason, &w.key_lines, field))
            };
            if !names.insert(w.display_name()) {
                return Err(invalid(
                    "name",
                    format!(
                        "two writers are named {:?}; give one a `name`",
                        w.display_name()
                    ),
                ));
            }
            if w.batch_size == 0 {
                return Err(invalid("batch_size", "must be at least 1".into()));
            }
            if w.spill.as_ref().is_some_and(|s| s.max_bytes < 1 << 20) {
                return Err(invalid(
                    "spill.max_bytes",
                    "must be at least 1048576".into(),
                ));
            }
            if w.queue_capacity == 0 {
                return Err(invalid("queue_capacity", "must be at least 1".into()));
            }
            if w.queue_bytes < MIN_QUEUE_BYTES {
                return Err(invalid(
                    "queue_bytes",
                    format!("must be at least {MIN_QUEUE_BYTES}"),
                ));
            }
        }
        if self.status_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "status_interval",
                "must be at least 1s",
            ));
        }
        let p = &self.pipeline;
        if p.channel_capacity == 0 {
            return Err(ConfigError::invalid(
                "pipeline.channel_capacity",
                "must be at least 1",
            ));
        }
        if p.buffer < MIN_QUEUE_BYTES {
            return Err(ConfigError::invalid(
                "pipeline.buffer",
                format!("must be at least {MIN_QUEUE_BYTES}"),
            ));
        }
        if p.max_clock_skew < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "pipeline.max_clock_skew",
                "must be at least 1s",
            ));
        }
        if p.dedup && p.dedup_window == 0 {
            return Err(ConfigError::invalid(
                "pipeline.dedup_window",
                "must be at least 1",
            ));
        }
        let mut seen = HashSet::new();
        for c in &p.candles {
            if !seen.insert(c) {
                return Err(ConfigError::invalid(
                    "pipeline.candles",
                    format!("{c} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
