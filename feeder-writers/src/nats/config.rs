//! Options of the `nats` writer.

use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::Deserialize;

use super::subject::Template;

/// Options of the `nats` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: nats
///     url: nats://127.0.0.1:4222        # default; tls://host:4222 also means TLS
///     stream: CRYPTO_FEEDER             # the JetStream stream; must cover the subjects
///     subject: trades.{exchange}.{symbol}           # default
///     candles_subject: candles.{exchange}.{symbol}  # default; {interval} also allowed
///     gaps_subject: gaps.{exchange}.{symbol}        # default
///     user: feeder                      # with password_env
///     password_env: NATS_PASSWORD       # the variable holding the password
///     token_env: NATS_TOKEN             # or: the variable holding a token
///     tls: false                        # true: TLS required, server certificate verified
///     ca_file: /etc/ssl/nats-ca.pem     # extra root certificate for TLS
///     connect_timeout: 10s
///     ack_timeout: 10s                  # longest wait for a batch's acknowledgements
///     create_stream:                    # absent: a missing stream stops the start
///       duplicate_window: 2m
///       storage: file                   # file | memory
///       replicas: 1
///       max_age: 0s                     # 0: kept until max_bytes
///       max_bytes: -1                   # -1: unlimited
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsOptions {
    /// Server URL (`nats://host:port`, or `tls://host:port` for TLS). Credentials in the
    /// URL are accepted but never logged; prefer `user` with `password_env`, or `token_env`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The JetStream stream the events are stored in.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject of trades; `{exchange}` and `{symbol}` are replaced by the event's.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Subject of candles; `{exchange}`, `{symbol}` and `{interval}` are replaced.
    #[serde(default = "default_candles_subject")]
    pub candles_subject: String,
    /// Subject of gaps; `{exchange}` and `{symbol}` are replaced.
    #[serde(default = "default_gaps_subject")]
    pub gaps_subject: String,
    /// User name, with the password in the variable `password_env`.
    #[serde(default)]
    pub user: Option<String>,
    /// Name of the environment variable that holds the password of `user`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Name of the environment variable that holds an authentication token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Requires TLS; the server's certificate is always verified (system roots plus
    /// `ca_file`).
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of root certificates to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for the connection and each start-up request.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for every acknowledgement of a batch; past it the batch fails and is
    /// retried (safe: the stream drops the copies it already holds).
    #[serde(default = "default_ack_timeout", with = "serde_duration")]
    pub ack_timeout: Duration,
    /// Creates the stream when it does not exist. Without it a missing stream stops the
    /// start.
    #[serde(default)]
    pub create_stream: Option<CreateStream>,
}

/// How the writer creates a missing stream (`create_stream:`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateStream {
    /// How long the stream remembers message ids to drop duplicates.
    #[serde(default = "default_duplicate_window", with = "serde_duration")]
    pub duplicate_window: Duration,
    /// Where the stream keeps messages.
    #[serde(default)]
    pub storage: Storage,
    /// Copies of each message in a cluster.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Age after which messages are removed; zero keeps them.
    #[serde(default, with = "serde_duration")]
    pub max_age: Duration,
    /// Size after which the oldest messages are removed; -1 for no limit.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: i64,
}

impl Default for CreateStream {
    fn default() -> Self {
        Self {
            duplicate_window: default_duplicate_window(),
            storage: Storage::default(),
            replicas: default_replicas(),
            max_age: Duration::ZERO,
            max_bytes: default_max_bytes(),
        }
    }
}

/// Storage of a stream the writer creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (the default).
    #[default]
    File,
    /// In memory only: lost when the server stops.
    Memory,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_stream() -> String {
    "CRYPTO_FEEDER".into()
}
fn default_subject() -> String {
    "trades.{exchange}.{symbol}".into()
}
fn default_candles_subject() -> String {
    "candles.{exchange}.{symbol}".into()
}
fn default_gaps_subject() -> String {
    "gaps.{exchange}.{symbol}".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_replicas() -> usize {
    1
}
fn default_max_bytes() -> i64 {
    -1
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("candles_subject", &self.candles_subject)
            .field("gaps_subject", &self.gaps_subject)
            .field("user", &self.user)
            // Variable names only; their values are secrets.
            .field("password_env", &self.password_env)
            .field("token_env", &self.token_env)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("ack_timeout", &self.ack_timeout)
            .field("create_stream", &self.create_stream)
            .finish()
    }
}

/// The URL with any user information replaced, for logs and errors.
pub(super) fn redact_url(url: &str) -> String {
    crate::secret::redact_userinfo(url)
}

/// The three subject templates, parsed.
#[derive(Clone, Debug)]
pub(super) struct Subjects {
    pub trades: Template,
    pub candles: Template,
    pub gaps: Template,
}

impl NatsOptions {
    /// Options with every default: `nats://127.0.0.1:4222`, stream `CRYPTO_FEEDER`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: default_stream(),
            subject: default_subject(),
            candles_subject: default_candles_subject(),
            gaps_subject: default_gaps_subject(),
            user: None,
            password_env: None,
            token_env: None,
            tls: false,
            ca_file: None,
            connect_timeout: default_connect_timeout(),
            ack_timeout: default_ack_timeout(),
            create_stream: None,
        }
    }

    /// The same options with another stream.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// The same options with other subject templates (trades, candles, gaps).
    pub fn with_subjects(
        mut self,
        trades: impl Into<String>,
        candles: impl Into<String>,
        gaps: impl Into<String>,
    ) -> Self {
        self.subject = trades.into();
        self.candles_subject = candles.into();
        self.gaps_subject = gaps.into();
        self
    }

    /// The same options, creating the stream when it is missing.
    pub fn with_create_stream(mut self, create: CreateStream) -> Self {
        self.create_stream = Some(create);
        self
    }

    /// The same options with other timeouts.
    pub fn with_timeouts(mut self, connect: Duration, ack: Duration) -> Self {
        self.connect_timeout = connect;
        self.ack_timeout = ack;
        self
    }

    /// The same options with a user whose password is in the variable `password_env`.
    pub fn with_user(mut self, user: impl Into<String>, password_env: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password_env = Some(password_env.into());
        self
    }

    /// The same options with a token read from the variable `token_env`.
    pub fn with_token_env(mut self, token_env: impl Into<String>) -> Self {
        self.token_env = Some(token_env.into());
        self
    }

    /// Reads and checks the options of a `nats` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: NatsOptions = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        self.subjects()?;
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("nats" | "tls")) {
            return Err((
                "url",
                format!("{:?} is not a nats:// or tls:// URL", redact_url(&self.url)),
            ));
        }
        let name_ok = !self.stream.is_empty()
            && self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !name_ok {
            return Err((
                "stream",
                format!(
                    "{:?} is not a stream name (letters, digits, _ and -)",
                    self.stream
                ),
            ));
        }
        match (&self.user, &self.password_env, &self.token_env) {
            (Some(_), None, _) => {
                return Err(("password_env", "is needed with user".into()));
            }
            (None, Some(_), _) => return Err(("user", "is needed with password_env".into())),
            (Some(_), Some(_), Some(_)) => {
                return Err((
                    "token_env",
                    "cannot be used together with user and password_env".into(),
                ))
            }
            _ => {}
        }
        for (key, var) in [
            ("password_env", &self.password_env),
            ("token_env", &self.token_env),
        ] {
            if var.as_deref().is_some_and(str::is_empty) {
                return Err((key, "must name an environment variable".into()));
            }
        }
        if self.ca_file.is_some() && !self.tls && scheme != Some("tls") {
            return Err(("ca_file", "needs tls: true (or a tls:// URL)".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        if self.ack_timeout.is_zero() {
            return Err(("ack_timeout", "must be more than 0".into()));
        }
        if let Some(c) = &self.create_stream {
            if c.duplicate_window.is_zero() {
                return Err((
                    "create_stream",
                    "duplicate_window must be more than 0: it is what drops replayed batches"
                        .into(),
                ));
            }
            if c.replicas == 0 || c.replicas > 5 {
                return Err(("create_stream", "replicas must be 1 to 5".into()));
            }
            if c.max_bytes == 0 || c.max_bytes < -1 {
                return Err((
                    "create_stream",
                    "max_bytes must be -1 or more than 0".into(),
                ));
            }
        }
        Ok(())
    }

    /// The parsed subject templates.
    pub(super) fn subjects(&self) -> Result<Subjects, (&'static str, String)> {
        let parse = |key: &'static str, text: &str, allowed: &[&str]| {
            Template::parse(text, allowed).map_err(|e| (key, e))
        };
        Ok(Subjects {
            trades: parse("subject", &self.subject, &["exchange", "symbol"])?,
            candles: parse(
                "candles_subject",
                &self.candles_subject,
                &["exchange", "symbol", "interval"],
            )?,
            gaps: parse("gaps_subject", &self.gaps_subject, &["exchange", "symbol"])?,
        })
    }

    /// Whether the connection must use TLS.
    pub(super) fn wants_tls(&self) -> bool {
        self.tls || self.url.starts_with("tls://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_their_key() {
        let base = || NatsOptions::new(default_url());
        let mut cases = vec![
            (NatsOptions::new("http://x:1"), "url"),
            (base().with_stream("a.b"), "stream"),
            (base().with_subjects("t.{nope}", "c", "g"), "subject"),
            (base().with_subjects("t", "c..x", "g"), "candles_subject"),
            (base().with_subjects("t", "c", "g.>"), "gaps_subject"),
            (
                base().with_timeouts(Duration::ZERO, Duration::from_secs(1)),
                "connect_timeout",
            ),
            (
                base().with_create_stream(CreateStream {
                    duplicate_window: Duration::ZERO,
                    ..CreateStream::default()
                }),
                "create_stream",
            ),
        ];
        let mut only_user = base();
        only_user.user = Some("u".into());
        cases.push((only_user, "password_env"));
        let mut ca = base();
        ca.ca_file = Some("/x.pem".into());
        cases.push((ca, "ca_file"));
        for (o, key) in cases {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        assert!(base().check().is_ok());
        assert!(base().with_user("u", "P").check().is_ok());
    }

    #[test]
    fn credentials_never_show() {
        let o = NatsOptions::new("nats://me:s3cret@host:4222").with_user("me", "NATS_PASS");
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***@host:4222"), "{shown}");
    }

    #[test]
    fn options_read_from_yaml() {
        let o: NatsOptions = serde_yaml_like(
            r#"{"stream":"S1","create_stream":{"duplicate_window":"5m","storage":"memory"}}"#,
        );
        assert_eq!(o.stream, "S1");
        let c = o.create_stream.unwrap();
        assert_eq!(c.duplicate_window, Duration::from_secs(300));
        assert_eq!(c.storage, Storage::Memory);
        assert_eq!(o.subject, "trades.{exchange}.{symbol}");
    }

    fn serde_yaml_like(json: &str) -> NatsOptions {
        serde_json::from_str(json).unwrap()
    }
}
