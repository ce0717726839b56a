//! Options of the `kafka` writer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::{Deserialize, Deserializer};

/// Options of the `kafka` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: kafka
///     brokers: [kafka-1:9093, kafka-2:9093]   # required; a list or "a:9093,b:9093"
///     topic: trades                           # default trades
///     candles_topic: candles                  # default candles
///     compression: lz4                        # none | gzip | snappy | lz4 (default)
///     delivery_timeout: 30s                   # message.timeout.ms
///     connect_timeout: 10s                    # start-up check of the brokers and topics
///     resume_scan_records: 1000000            # newest records per partition searched at start
///     create_topics:                          # create missing topics (default: refuse to start)
///       partitions: 6
///       replication_factor: 3
///     security_protocol: sasl_ssl             # plaintext (default) | ssl | sasl_plaintext | sasl_ssl
///     sasl:
///       mechanism: SCRAM-SHA-512              # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
///       username: feeder
///       password_env: KAFKA_PASSWORD          # the variable that holds the password
///     ssl:
///       ca_file: /etc/kafka/ca.pem            # default: the system's trusted CAs
///       certificate_file: /etc/kafka/client.pem   # client certificate (mutual TLS)
///       key_file: /etc/kafka/client.key
///       key_password_env: KAFKA_KEY_PASSWORD  # when the key is encrypted
///     librdkafka_options:                     # any other librdkafka setting
///       linger.ms: 20
///       client.id: feeder-eu-1
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
    /// How long each start-up step (the brokers' answer, the creation of missing topics)
    /// may take; also the longest wait for each answer while the trades topic is read back
    /// for resume points.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// How many of the newest records of each partition of the trades topic are read, at
    /// most, to find where a stream left off. A stream with no trade among them is taken
    /// as new (with a warning) and starts from the live feed. Reading a million records
    /// takes a few seconds.
    #[serde(default = "default_resume_scan_records")]
    pub resume_scan_records: u64,
    /// Creates the topics that do not exist at start-up. Without it a missing topic stops
    /// the writer from starting.
    #[serde(default)]
    pub create_topics: Option<CreateTopics>,
    /// How the connection to the brokers is secured.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL authentication; required with `sasl_plaintext` and `sasl_ssl`, refused otherwise.
    #[serde(default)]
    pub sasl: Option<SaslOptions>,
    /// TLS files; only with `ssl` and `sasl_ssl`.
    #[serde(default)]
    pub ssl: Option<SslOptions>,
    /// Any other librdkafka setting, checked by librdkafka itself at start (an unknown key is
    /// an error). Settings that have an option above, and those that would weaken the
    /// writer's guarantees (idempotence, `acks=all`, certificate verification), are refused.
    /// Values are never logged.
    #[serde(default, deserialize_with = "scalar_map")]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// Topic creation at start-up (the `create_topics` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopics {
    /// Partitions of each created topic.
    pub partitions: i32,
    /// Replicas of each partition.
    pub replication_factor: i32,
}

/// How the connection to the brokers is secured (librdkafka's `security.protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// Neither TLS nor authentication.
    #[default]
    Plaintext,
    /// TLS, with the brokers' certificates verified.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is inside TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// SASL authentication (the `sasl` option).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslOptions {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The environment variable that holds the password (the password itself never sits in
    /// the config).
    pub password_env: String,
}

/// A SASL mechanism. PLAIN and SCRAM are built into librdkafka (SCRAM through OpenSSL), so
/// none of them needs Cyrus SASL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// User name and password as they are; use it inside TLS only.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS files (the `ssl` option). The brokers' certificates are always verified, host name
/// included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslOptions {
    /// PEM file of the CA certificates that sign the brokers' certificates; without it the
    /// system's trusted CAs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate, for brokers that require one.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The environment variable that holds the private key's password, when it has one.
    #[serde(default)]
    pub key_password_env: Option<String>,
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

pub(super) fn brokers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

/// librdkafka takes every value as a string; YAML users write `linger.ms: 20` and
/// `enable.gapless.guarantee: true`, so numbers and booleans are taken as their text.
pub(super) fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i64),
        Float(f64),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "librdkafka_options: expected a map of librdkafka keys to strings, numbers or booleans",
        )
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                // Only a setting's text, never an amount.
                Scalar::Float(f) => f.to_string(),
            };
            (k, v)
        })
        .collect())
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
fn default_resume_scan_records() -> u64 {
    1_000_000
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
            .field("resume_scan_records", &self.resume_scan_records)
            .field("create_topics", &self.create_topics)
            .field("security_protocol", &self.security_protocol)
            // Only the names of the variables that hold secrets are here.
            .field("sasl", &self.sasl)
            .field("ssl", &self.ssl)
            // Keys only: values may hold credentials (ssl.key.pem, OAuth secrets).
            .field(
                "librdkafka_options",
                &self.librdkafka_options.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Settings that have an option of their own: (librdkafka key, option).
const OWN_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
    ("security.protocol", "security_protocol"),
    ("sasl.mechanism", "sasl.mechanism"),
    ("sasl.mechanisms", "sasl.mechanism"),
    ("sasl.username", "sasl.username"),
    ("sasl.password", "sasl.password_env"),
    ("ssl.ca.location", "ssl.ca_file"),
    ("ssl.certificate.location", "ssl.certificate_file"),
    ("ssl.key.location", "ssl.key_file"),
    ("ssl.key.password", "ssl.key_password_env"),
];

/// Settings the writer's guarantees rest on: (librdkafka key, the only values accepted, why).
const GUARANTEES: &[(&str, &[&str], &str)] = &[
    (
        "enable.idempotence",
        &["true"],
        "the producer is always idempotent, so that a retried batch is neither duplicated by the producer nor reordered",
    ),
    (
        "acks",
        &["all", "-1"],
        "a batch counts as written only once every in-sync replica has it",
    ),
    (
        "request.required.acks",
        &["all", "-1"],
        "a batch counts as written only once every in-sync replica has it",
    ),
    (
        "enable.ssl.certificate.verification",
        &["true"],
        "the brokers' certificates are always verified",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        &["https"],
        "the brokers' certificates are always checked against their host names",
    ),
    (
        "transactional.id",
        &[],
        "the writer does not use transactions; its producer is idempotent instead",
    ),
];

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
            resume_scan_records: default_resume_scan_records(),
            create_topics: None,
            security_protocol: SecurityProtocol::default(),
            sasl: None,
            ssl: None,
            librdkafka_options: BTreeMap::new(),
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

    /// The same options with another bound on the records read per partition to find
    /// where a stream left off.
    pub fn with_resume_scan_records(mut self, records: u64) -> Self {
        self.resume_scan_records = records;
        self
    }

    /// The same options, creating missing topics with `partitions` partitions of
    /// `replication_factor` replicas each.
    pub fn with_create_topics(mut self, partitions: i32, replication_factor: i32) -> Self {
        self.create_topics = Some(CreateTopics {
            partitions,
            replication_factor,
        });
        self
    }

    /// The same options with another security protocol.
    pub fn with_security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.security_protocol = protocol;
        self
    }

    /// The same options with SASL authentication; the password is read from the
    /// environment variable `password_env` when the writer connects.
    pub fn with_sasl(
        mut self,
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password_env: impl Into<String>,
    ) -> Self {
        self.sasl = Some(SaslOptions {
            mechanism,
            username: username.into(),
            password_env: password_env.into(),
        });
        self
    }

    /// The same options with TLS files.
    pub fn with_ssl(mut self, ssl: SslOptions) -> Self {
        self.ssl = Some(ssl);
        self
    }

    /// The same options with one more librdkafka setting.
    pub fn with_librdkafka_option(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.librdkafka_options.insert(key.into(), value.into());
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

    /// Checks the options without any I/O (librdkafka reads each `librdkafka_options` key
    /// into a configuration of its own, which touches nothing outside); the error names the
    /// key.
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
        if self.resume_scan_records == 0 {
            return Err(("resume_scan_records", "must be more than 0".into()));
        }
        if let Some(c) = &self.create_topics {
            if c.partitions < 1 {
                return Err(("create_topics", "partitions must be at least 1".into()));
            }
            if c.replication_factor < 1 {
                return Err((
                    "create_topics",
                    "replication_factor must be at least 1".into(),
                ));
            }
        }
        self.check_security()?;
        self.check_librdkafka_options()
            .map_err(|m| ("librdkafka_options", m))
    }

    fn check_security(&self) -> Result<(), (&'static str, String)> {
        let protocol = self.security_protocol;
        match (&self.sasl, protocol.sasl()) {
            (None, true) => {
                return Err((
                    "sasl",
                    format!(
                        "security_protocol {} needs sasl: {{ mechanism, username, password_env }}",
                        protocol.as_str()
                    ),
                ))
            }
            (Some(_), false) => {
                return Err((
                    "sasl",
                    format!(
                        "is only used with security_protocol sasl_plaintext or sasl_ssl, not {}",
                        protocol.as_str()
                    ),
                ))
            }
            (Some(s), true) => {
                if s.username.is_empty() {
                    return Err(("sasl", "username must not be empty".into()));
                }
                if !is_env_name(&s.password_env) {
                    return Err((
                        "sasl",
                        format!(
                            "password_env {:?} is not an environment variable name",
                            s.password_env
                        ),
                    ));
                }
            }
            (None, false) => {}
        }
        if let Some(ssl) = &self.ssl {
            if !protocol.tls() {
                return Err((
                    "ssl",
                    format!(
                        "is only used with security_protocol ssl or sasl_ssl, not {}",
                        protocol.as_str()
                    ),
                ));
            }
            if ssl.certificate_file.is_some() != ssl.key_file.is_some() {
                return Err((
                    "ssl",
                    "certificate_file and key_file go together (a client certificate and its key)"
                        .into(),
                ));
            }
            if let Some(var) = &ssl.key_password_env {
                if ssl.key_file.is_none() {
                    return Err(("ssl", "key_password_env needs key_file".into()));
                }
                if !is_env_name(var) {
                    return Err((
                        "ssl",
                        format!("key_password_env {var:?} is not an environment variable name"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses the settings the writer owns, then lets librdkafka read the others, so that
    /// a misspelt key or a bad value is an error that names the key.
    fn check_librdkafka_options(&self) -> Result<(), String> {
        for (key, value) in &self.librdkafka_options {
            // librdkafka also takes topic settings with a `topic.` prefix.
            let bare = key.strip_prefix("topic.").unwrap_or(key);
            if let Some((_, option)) = OWN_OPTIONS.iter().find(|(k, _)| *k == bare) {
                return Err(format!("{key:?} is set by the option {option}; use that"));
            }
            if let Some((_, allowed, why)) = GUARANTEES.iter().find(|(k, _, _)| *k == bare) {
                if !allowed.contains(&value.as_str()) {
                    return Err(format!("{key:?} cannot be changed: {why}"));
                }
            }
        }
        let mut config = rdkafka::ClientConfig::new();
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
            .create_native_config()
            .map(drop)
            .map_err(|e| refused_setting(&e))
    }
}

/// librdkafka's message about a setting it refused, without the value (which may be a
/// secret): its own error text repeats the value.
pub(super) fn refused_setting(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description.clone()
            } else {
                description.replace(value.as_str(), "<value hidden>")
            };
            format!("librdkafka refuses {key:?}: {description}")
        }
        other => format!("librdkafka refuses the settings: {other}"),
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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
            (
                KafkaOptions::new("h:1").with_resume_scan_records(0),
                "resume_scan_records",
            ),
            (
                KafkaOptions::new("h:1").with_create_topics(0, 1),
                "create_topics",
            ),
            (
                KafkaOptions::new("h:1").with_create_topics(3, 0),
                "create_topics",
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
    fn security_settings_must_agree_with_the_protocol() {
        let sasl = |p| {
            KafkaOptions::new("h:1")
                .with_security_protocol(p)
                .with_sasl(SaslMechanism::Plain, "u", "PW")
        };
        assert!(sasl(SecurityProtocol::SaslSsl).check().is_ok());
        assert!(sasl(SecurityProtocol::SaslPlaintext).check().is_ok());
        assert_eq!(sasl(SecurityProtocol::Ssl).check().unwrap_err().0, "sasl");
        assert_eq!(
            KafkaOptions::new("h:1")
                .with_security_protocol(SecurityProtocol::SaslSsl)
                .check()
                .unwrap_err()
                .0,
            "sasl"
        );
        assert_eq!(
            KafkaOptions::new("h:1")
                .with_security_protocol(SecurityProtocol::SaslSsl)
                .with_sasl(SaslMechanism::Plain, "u", "not a name")
                .check()
                .unwrap_err()
                .0,
            "sasl"
        );
        let ssl = |p, s: SslOptions| {
            KafkaOptions::new("h:1")
                .with_security_protocol(p)
                .with_ssl(s)
        };
        assert_eq!(
            ssl(SecurityProtocol::Plaintext, SslOptions::default())
                .check()
                .unwrap_err()
                .0,
            "ssl"
        );
        let half = SslOptions {
            certificate_file: Some("c.pem".into()),
            ..SslOptions::default()
        };
        assert_eq!(
            ssl(SecurityProtocol::Ssl, half).check().unwrap_err().0,
            "ssl"
        );
        let password_without_key = SslOptions {
            key_password_env: Some("KEY_PW".into()),
            ..SslOptions::default()
        };
        assert_eq!(
            ssl(SecurityProtocol::Ssl, password_without_key)
                .check()
                .unwrap_err()
                .0,
            "ssl"
        );
        assert!(ssl(SecurityProtocol::Ssl, SslOptions::default())
            .check()
            .is_ok());
    }

    #[test]
    fn a_misspelt_librdkafka_option_is_an_error_naming_it() {
        let o = KafkaOptions::new("h:1").with_librdkafka_option("linger.msec", "5");
        let (key, message) = o.check().unwrap_err();
        assert_eq!(key, "librdkafka_options");
        assert!(message.contains("linger.msec"), "{message}");
        let fine = KafkaOptions::new("h:1")
            .with_librdkafka_option("linger.ms", "20")
            .with_librdkafka_option("client.id", "feeder-1");
        assert!(fine.check().is_ok());
    }

    #[test]
    fn a_bad_librdkafka_value_is_refused_without_showing_it() {
        let o = KafkaOptions::new("h:1").with_librdkafka_option("linger.ms", "hunter2");
        let (key, message) = o.check().unwrap_err();
        assert_eq!(key, "librdkafka_options");
        assert!(message.contains("linger.ms"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn the_writers_guarantees_cannot_be_overridden() {
        for (key, value, says) in [
            ("enable.idempotence", "false", "idempotent"),
            ("acks", "1", "in-sync replica"),
            ("request.required.acks", "0", "in-sync replica"),
            ("topic.acks", "1", "in-sync replica"),
            ("enable.ssl.certificate.verification", "false", "verified"),
            (
                "ssl.endpoint.identification.algorithm",
                "none",
                "host names",
            ),
            ("transactional.id", "t1", "transactions"),
            ("sasl.password", "x", "sasl.password_env"),
            ("security.protocol", "ssl", "security_protocol"),
            ("bootstrap.servers", "h:2", "brokers"),
            ("compression.codec", "zstd", "compression"),
        ] {
            let o = KafkaOptions::new("h:1").with_librdkafka_option(key, value);
            let (at, message) = o.check().unwrap_err();
            assert_eq!(at, "librdkafka_options");
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.contains(says), "{key}: {message}");
        }
        // Restating a guarantee is harmless.
        let o = KafkaOptions::new("h:1")
            .with_librdkafka_option("acks", "all")
            .with_librdkafka_option("enable.idempotence", "true");
        assert!(o.check().is_ok());
    }

    fn from_yaml(options: &str) -> Result<KafkaOptions, ConfigError> {
        let text = format!(
            "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: kafka\n{options}"
        );
        let config = feeder_core::config::Config::from_yaml_str_with_env(&text, &|_| None)?;
        KafkaOptions::from_config(&config.writers[0])
    }

    #[test]
    fn yaml_options_are_read_with_their_types() {
        let o = from_yaml(
            "    brokers: a:9093
    create_topics: { partitions: 3, replication_factor: 1 }
    security_protocol: sasl_ssl
    sasl: { mechanism: SCRAM-SHA-512, username: feeder, password_env: KAFKA_PASSWORD }
    ssl: { ca_file: /etc/ca.pem }
    librdkafka_options:
      linger.ms: 20
      enable.gapless.guarantee: true
      client.id: feeder-1
",
        )
        .unwrap();
        assert_eq!(o.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            o.sasl.as_ref().unwrap().mechanism,
            SaslMechanism::ScramSha512
        );
        assert_eq!(o.create_topics.unwrap().partitions, 3);
        assert_eq!(o.librdkafka_options["linger.ms"], "20");
        assert_eq!(o.librdkafka_options["enable.gapless.guarantee"], "true");
        let gssapi = from_yaml(
            "    brokers: a:1\n    security_protocol: sasl_ssl\n    sasl: { mechanism: GSSAPI, username: u, password_env: P }\n",
        );
        assert!(gssapi.unwrap_err().to_string().contains("GSSAPI"));
        let typo = from_yaml(
            "    brokers: a:1\n    librdkafka_options: { queue.buffering.max.msgs: 10 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(typo.contains("librdkafka_options"), "{typo}");
        assert!(typo.contains("queue.buffering.max.msgs"), "{typo}");
    }

    #[test]
    fn option_values_never_show() {
        let o = KafkaOptions::new("h:1")
            .with_librdkafka_option("ssl.key.pem", "s3cret")
            .with_security_protocol(SecurityProtocol::SaslSsl)
            .with_sasl(SaslMechanism::ScramSha256, "u", "KAFKA_PW");
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("KAFKA_PW"), "{shown}");
    }
}
