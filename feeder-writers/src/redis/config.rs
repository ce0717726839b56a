//! Options of the `redis` writer.

use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::Deserialize;

use super::keys::KeyTemplate;

/// Options of the `redis` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: redis
///     url: redis://127.0.0.1:6379        # default; rediss:// for TLS; /N picks database N
///     key: trades:{exchange}:{symbol}              # default
///     candles_key: candles:{exchange}:{symbol}     # default; {interval} also allowed
///     gaps_key: gaps:{exchange}:{symbol}           # default
///     maxlen: 1000000                    # XADD MAXLEN ~ per stream; 0: never trimmed
///     dedup_window: 100000               # ids remembered per stream to drop replays
///     username: feeder                   # optional ACL user
///     password_env: REDIS_PASSWORD       # the variable holding the password
///     ca_file: /etc/ssl/redis-ca.pem     # root certificate for rediss://
///     connect_timeout: 10s
///     write_timeout: 30s
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Server URL: `redis://host:port/db`, or `rediss://` for TLS (the server's certificate
    /// is always verified). A password in the URL is accepted but never logged; prefer
    /// `password_env`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Stream key of trades; `{exchange}` and `{symbol}` are replaced by the event's.
    #[serde(default = "default_key")]
    pub key: String,
    /// Stream key of candles; `{exchange}`, `{symbol}` and `{interval}` are replaced.
    #[serde(default = "default_candles_key")]
    pub candles_key: String,
    /// Stream key of gaps; `{exchange}` and `{symbol}` are replaced.
    #[serde(default = "default_gaps_key")]
    pub gaps_key: String,
    /// Each `XADD` trims its stream to about this many entries (`MAXLEN ~`); 0 never trims.
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// How many event ids each stream remembers to drop replayed events (at least 1).
    #[serde(default = "default_dedup_window")]
    pub dedup_window: u64,
    /// ACL user name (Redis 6 and later); without it the `default` user.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A PEM root certificate to verify the server with (`rediss://` only), instead of the
    /// system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for a connection, at start and at each reconnect.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for a batch's reply; past it the connection is dropped and the batch
    /// retried (safe: replays are dropped by the dedup ids).
    #[serde(default = "default_write_timeout", with = "serde_duration")]
    pub write_timeout: Duration,
}

fn default_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn default_key() -> String {
    "trades:{exchange}:{symbol}".into()
}
fn default_candles_key() -> String {
    "candles:{exchange}:{symbol}".into()
}
fn default_gaps_key() -> String {
    "gaps:{exchange}:{symbol}".into()
}
fn default_maxlen() -> u64 {
    1_000_000
}
fn default_dedup_window() -> u64 {
    100_000
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("key", &self.key)
            .field("candles_key", &self.candles_key)
            .field("gaps_key", &self.gaps_key)
            .field("maxlen", &self.maxlen)
            .field("dedup_window", &self.dedup_window)
            .field("username", &self.username)
            // The variable's name only; its value is a secret.
            .field("password_env", &self.password_env)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

/// The URL with any user information replaced, for logs and errors.
pub(super) fn redact_url(url: &str) -> String {
    crate::secret::redact_userinfo(url)
}

/// The three key templates, parsed.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub trades: KeyTemplate,
    pub candles: KeyTemplate,
    pub gaps: KeyTemplate,
}

impl RedisOptions {
    /// Options for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: default_key(),
            candles_key: default_candles_key(),
            gaps_key: default_gaps_key(),
            maxlen: default_maxlen(),
            dedup_window: default_dedup_window(),
            username: None,
            password_env: None,
            ca_file: None,
            connect_timeout: default_connect_timeout(),
            write_timeout: default_write_timeout(),
        }
    }

    /// The same options with other key templates (trades, candles, gaps).
    pub fn with_keys(
        mut self,
        trades: impl Into<String>,
        candles: impl Into<String>,
        gaps: impl Into<String>,
    ) -> Self {
        self.key = trades.into();
        self.candles_key = candles.into();
        self.gaps_key = gaps.into();
        self
    }

    /// The same options with other stream bounds.
    pub fn with_limits(mut self, maxlen: u64, dedup_window: u64) -> Self {
        self.maxlen = maxlen;
        self.dedup_window = dedup_window;
        self
    }

    /// The same options with a password read from the variable `password_env`.
    pub fn with_password_env(mut self, password_env: impl Into<String>) -> Self {
        self.password_env = Some(password_env.into());
        self
    }

    /// The same options with other timeouts.
    pub fn with_timeouts(mut self, connect: Duration, write: Duration) -> Self {
        self.connect_timeout = connect;
        self.write_timeout = write;
        self
    }

    /// Reads and checks the options of a `redis` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: RedisOptions = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        let keys = self.keys()?;
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err((
                "url",
                format!(
                    "{:?} is not a redis:// or rediss:// URL",
                    redact_url(&self.url)
                ),
            ));
        }
        let patterns = [
            keys.trades.pattern(),
            keys.candles.pattern(),
            keys.gaps.pattern(),
        ];
        if patterns[0] == patterns[1] || patterns[0] == patterns[2] || patterns[1] == patterns[2] {
            return Err((
                "key",
                "key, candles_key and gaps_key must give different keys".into(),
            ));
        }
        if self.dedup_window == 0 {
            return Err((
                "dedup_window",
                "must be at least 1: it is what drops replayed batches".into(),
            ));
        }
        if self.password_env.as_deref().is_some_and(str::is_empty) {
            return Err(("password_env", "must name an environment variable".into()));
        }
        if self.username.is_some() && self.password_env.is_none() {
            return Err(("password_env", "is needed with username".into()));
        }
        if self.ca_file.is_some() && scheme != Some("rediss") {
            return Err(("ca_file", "needs a rediss:// URL".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        if self.write_timeout.is_zero() {
            return Err(("write_timeout", "must be more than 0".into()));
        }
        Ok(())
    }

    /// The parsed key templates.
    pub(super) fn keys(&self) -> Result<Keys, (&'static str, String)> {
        let parse = |key: &'static str, text: &str, allowed: &[&str]| {
            KeyTemplate::parse(text, allowed).map_err(|e| (key, e))
        };
        Ok(Keys {
            trades: parse("key", &self.key, &["exchange", "symbol"])?,
            candles: parse(
                "candles_key",
                &self.candles_key,
                &["exchange", "symbol", "interval"],
            )?,
            gaps: parse("gaps_key", &self.gaps_key, &["exchange", "symbol"])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_their_key() {
        let base = || RedisOptions::new(default_url());
        let mut cases = vec![
            (RedisOptions::new("http://x:1"), "url"),
            (base().with_keys("t:{nope}", "c", "g"), "key"),
            (base().with_keys("t", "c:{x", "g"), "candles_key"),
            (base().with_keys("t", "c", ""), "gaps_key"),
            (base().with_keys("same", "same", "g"), "key"),
            (base().with_limits(10, 0), "dedup_window"),
            (
                base().with_timeouts(Duration::ZERO, Duration::from_secs(1)),
                "connect_timeout",
            ),
        ];
        let mut user = base();
        user.username = Some("u".into());
        cases.push((user, "password_env"));
        let mut ca = base();
        ca.ca_file = Some("/ca.pem".into());
        cases.push((ca, "ca_file"));
        for (o, key) in cases {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        assert!(base().check().is_ok());
        assert!(RedisOptions::new("rediss://h:6380/2").check().is_ok());
    }

    #[test]
    fn credentials_never_show() {
        let o = RedisOptions::new("redis://user:s3cret@host:6379/0").with_password_env("RP");
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://***@host:6379/0"), "{shown}");
    }
}
