//! Options of the `kafka` writer.

use std::collections::BTreeMap;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::{Deserialize, Deserializer};

/// Options of the `kafka` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: kafka
///     brokers: [kafka-1:9092, kafka-2:9092]   # required; a list or "a:9092,b:9092"
///     topic: trades                           # default trades
///     candles_topic: candles                  # default candles
///     compression: lz4                        # none | gzip | snappy | lz4 (default)
///     delivery_timeout: 30s                   # message.timeout.ms
///     connect_timeout: 10s                    # start-up check of the brokers
///     properties:                             # any other librdkafka setting
///       linger.ms: "5"
///       security.protocol: SASL_PLAINTEXT
///       sasl.mechanism: PLAIN
///       sasl.username: feeder
///       sasl.password: ${KAFKA_PASSWORD}
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port`.
    #[serde(deserialize_with = "brokers")]
    pub brokers: Vec<String>,
    /// Topic of trades.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Topic of candles.
    #[serde(default = "default_candles_topic")]
    pub candles_topic: String,
    /// Compression of message batches.
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka keeps trying to deliver a message before the batch fails (and the
    /// runner retries it).
    #[serde(default = "default_delivery_timeout", with = "serde_duration")]
    pub delivery_timeout: Duration,
    /// How long the start-up check waits for the brokers to answer.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Extra librdkafka properties, applied last (they may override the settings above,
    /// except that idempotence and `acks=all` are what make retries safe). Values are never
    /// logged.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Compression of Kafka message batches (the codecs built into the bundled librdkafka).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: fast, and the default.
    #[default]
    Lz4,
}

impl Compression {
    /// The librdkafka name.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

fn brokers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let list = match OneOrMany::deserialize(d)
        .map_err(|_| serde::de::Error::custom("brokers: expected host:port or a list of them"))?
    {
        OneOrMany::One(s) => s.split(',').map(|b| b.trim().to_string()).collect(),
        OneOrMany::Many(v) => v.into_iter().map(|b| b.trim().to_string()).collect(),
    };
    Ok(list)
}

fn default_topic() -> String {
    "trades".into()
}
fn default_candles_topic() -> String {
    "candles".into()
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("candles_topic", &self.candles_topic)
            .field("compression", &self.compression)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("connect_timeout", &self.connect_timeout)
            // Keys only: values may hold credentials.
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaOptions {
    /// Options for `brokers` (`host:port`, comma-separated) with the defaults.
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.split(',').map(|b| b.trim().to_string()).collect(),
            topic: default_topic(),
            candles_topic: default_candles_topic(),
            compression: Compression::default(),
            delivery_timeout: default_delivery_timeout(),
            connect_timeout: default_connect_timeout(),
            properties: BTreeMap::new(),
        }
    }

    /// The same options with other topics.
    pub fn with_topics(mut self, trades: impl Into<String>, candles: impl Into<String>) -> Self {
        self.topic = trades.into();
        self.candles_topic = candles.into();
        self
    }

    /// The same options with another delivery timeout.
    pub fn with_delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// The same options with another start-up timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same options with one more librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Reads and checks the options of a `kafka` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: KafkaOptions = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.brokers.is_empty() || self.brokers.iter().any(String::is_empty) {
            return Err(("brokers", "must list at least one host:port".into()));
        }
        for b in &self.brokers {
            let port_ok = b
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(("brokers", format!("{b:?} is not host:port")));
            }
        }
        for (key, topic) in [
            ("topic", &self.topic),
            ("candles_topic", &self.candles_topic),
        ] {
            let valid = !topic.is_empty()
                && topic.len() <= 249
                && topic != "."
                && topic != ".."
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err((
                    key,
                    format!("{topic:?} is not a Kafka topic name (letters, digits, . _ -)"),
                ));
            }
        }
        if self.delivery_timeout.is_zero() {
            return Err(("delivery_timeout", "must be more than 0".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_their_key() {
        let bad = [
            (KafkaOptions::new(""), "brokers"),
            (KafkaOptions::new("localhost"), "brokers"),
            (KafkaOptions::new("h:1").with_topics("a b", "c"), "topic"),
            (
                KafkaOptions::new("h:1").with_topics("a", ""),
                "candles_topic",
            ),
            (
                KafkaOptions::new("h:1").with_delivery_timeout(Duration::ZERO),
                "delivery_timeout",
            ),
        ];
        for (o, key) in bad {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        let ok = KafkaOptions::new("a:9092, b:9093");
        assert_eq!(ok.brokers, ["a:9092", "b:9093"]);
        assert!(ok.check().is_ok());
    }

    #[test]
    fn property_values_never_show() {
        let o = KafkaOptions::new("h:1").with_property("sasl.password", "s3cret");
        assert!(!format!("{o:?}").contains("s3cret"));
    }
}
