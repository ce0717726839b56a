//! Options of the `http` writer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::Deserialize;
use url::Url;

/// Options of the `http` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: http
///     url: https://es.internal:9200/_bulk    # required; every batch is POSTed here
///     preset: elasticsearch                   # ndjson (default) | elasticsearch | loki
///     index: crypto-trades                    # elasticsearch: index of trades
///     candles_index: crypto-candles           # elasticsearch: index of candles
///     gaps_index: crypto-gaps                 # elasticsearch: index of gaps
///     gzip: true                              # Content-Encoding: gzip (default false)
///     headers:                                # sent with every request
///       X-Scope-OrgID: market
///     bearer_token_env: ES_TOKEN              # Authorization: Bearer $ES_TOKEN
///     ca_file: /etc/ssl/private-ca.pem        # extra trusted CA certificates (PEM)
///     timeout: 30s                            # per request
///     max_retries: 3                          # retries of a request before the batch fails
///     retry_delay: 500ms                      # first backoff step, doubling
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Where every batch is POSTed: the full URL, path included (`…/_bulk`,
    /// `…/loki/api/v1/push`). `http` or `https`.
    pub url: Url,
    /// The body format and how answers are read.
    #[serde(default)]
    pub preset: Preset,
    /// `elasticsearch`: the index of trades (default `crypto-trades`).
    #[serde(default)]
    pub index: Option<String>,
    /// `elasticsearch`: the index of candles (default `crypto-candles`).
    #[serde(default)]
    pub candles_index: Option<String>,
    /// `elasticsearch`: the index of gaps (default `crypto-gaps`).
    #[serde(default)]
    pub gaps_index: Option<String>,
    /// Compresses each body with gzip (`Content-Encoding: gzip`).
    #[serde(default)]
    pub gzip: bool,
    /// Headers sent with every request. Values may hold credentials (through `${VAR}`): they
    /// are never logged nor shown by `Debug`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The name of an environment variable holding a bearer token, sent as
    /// `Authorization: Bearer …`. Read at start-up; a variable that is not set is a
    /// configuration error. The token is never logged nor shown by `Debug`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// A PEM file of CA certificates trusted besides the built-in roots (a private CA).
    /// Certificates are always verified.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The longest one request may take, connection and answer included.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// How many times the writer itself sends a request again after a 408, 429, 5xx or a
    /// connection failure, before it hands the batch back to the runner as a retriable error.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The first wait between two tries of a request (doubling, with jitter, up to
    /// [`MAX_RETRY_DELAY`]); a `Retry-After` from the server replaces it.
    #[serde(default = "default_retry_delay", with = "serde_duration")]
    pub retry_delay: Duration,
}

/// The longest wait between two tries of a request, whether from the backoff or from a
/// server's `Retry-After`: past it, waiting is the runner's business.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What a batch becomes on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// JSON lines (`application/x-ndjson`), the same lines the `file` writer writes: for
    /// Vector, Fluent Bit, custom services. Written means any 2xx answer.
    #[default]
    Ndjson,
    /// The Elasticsearch (or OpenSearch) `_bulk` API: one `index` action per event, with a
    /// stable `_id`, so that a batch sent again overwrites instead of duplicating.
    Elasticsearch,
    /// The Grafana Loki push API (`/loki/api/v1/push`), JSON: one stream per exchange,
    /// symbol and kind of event.
    Loki,
}

impl Preset {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Ndjson => "ndjson",
            Preset::Elasticsearch => "elasticsearch",
            Preset::Loki => "loki",
        }
    }

    /// The `Content-Type` of its bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Preset::Ndjson | Preset::Elasticsearch => "application/x-ndjson",
            Preset::Loki => "application/json",
        }
    }
}

/// Headers the writer sets itself, which `headers` may not override.
const OWN_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
];

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_delay() -> Duration {
    Duration::from_millis(500)
}

/// The index of trades when `index` is not set.
pub const DEFAULT_INDEX: &str = "crypto-trades";
/// The index of candles when `candles_index` is not set.
pub const DEFAULT_CANDLES_INDEX: &str = "crypto-candles";
/// The index of gaps when `gaps_index` is not set.
pub const DEFAULT_GAPS_INDEX: &str = "crypto-gaps";

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("url", &redacted_url(&self.url))
            .field("preset", &self.preset)
            .field("index", &self.index)
            .field("candles_index", &self.candles_index)
            .field("gaps_index", &self.gaps_index)
            .field("gzip", &self.gzip)
            // Names only: values may hold credentials.
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("bearer_token_env", &self.bearer_token_env)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// The URL without a password (a user name alone is kept), for logs and `Debug`.
pub(crate) fn redacted_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        // Only URLs without a host refuse a password, and an accepted URL has one.
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

impl HttpOptions {
    /// Options for `url` with the defaults (`ndjson`, no compression, no extra headers).
    pub fn new(url: Url) -> Self {
        Self {
            url,
            preset: Preset::default(),
            index: None,
            candles_index: None,
            gaps_index: None,
            gzip: false,
            headers: BTreeMap::new(),
            bearer_token_env: None,
            ca_file: None,
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            retry_delay: default_retry_delay(),
        }
    }

    /// The same options with another preset.
    pub fn with_preset(mut self, preset: Preset) -> Self {
        self.preset = preset;
        self
    }

    /// The same options with other `elasticsearch` indexes.
    pub fn with_indexes(
        mut self,
        trades: impl Into<String>,
        candles: impl Into<String>,
        gaps: impl Into<String>,
    ) -> Self {
        self.index = Some(trades.into());
        self.candles_index = Some(candles.into());
        self.gaps_index = Some(gaps.into());
        self
    }

    /// The same options with gzip bodies on or off.
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// The same options with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The same options with a bearer token read from the environment variable `var`.
    pub fn with_bearer_token_env(mut self, var: impl Into<String>) -> Self {
        self.bearer_token_env = Some(var.into());
        self
    }

    /// The same options with extra trusted CA certificates.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The same options with other retry settings.
    pub fn with_retries(mut self, max_retries: u32, retry_delay: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_delay = retry_delay;
        self
    }

    /// The same options with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The index of trades.
    pub fn trades_index(&self) -> &str {
        self.index.as_deref().unwrap_or(DEFAULT_INDEX)
    }

    /// The index of candles.
    pub fn candle_index(&self) -> &str {
        self.candles_index
            .as_deref()
            .unwrap_or(DEFAULT_CANDLES_INDEX)
    }

    /// The index of gaps.
    pub fn gap_index(&self) -> &str {
        self.gaps_index.as_deref().unwrap_or(DEFAULT_GAPS_INDEX)
    }

    /// Reads and checks the options of an `http` writer's config entry, without any I/O
    /// (the bearer token's variable must be set).
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: HttpOptions = config.options()?;
        options
            .check()
            .and_then(|()| options.bearer_token().map(drop))
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err((
                "url",
                format!(
                    "{} is not an http:// or https:// URL",
                    redacted_url(&self.url)
                ),
            ));
        }
        if self.url.host_str().is_none_or(str::is_empty) {
            return Err(("url", "has no host".into()));
        }
        if self.preset != Preset::Elasticsearch {
            for (key, set) in [
                ("index", &self.index),
                ("candles_index", &self.candles_index),
                ("gaps_index", &self.gaps_index),
            ] {
                if set.is_some() {
                    return Err((
                        key,
                        format!(
                            "only the elasticsearch preset has indexes, not {}",
                            self.preset.as_str()
                        ),
                    ));
                }
            }
        }
        for (key, index) in [
            ("index", self.trades_index()),
            ("candles_index", self.candle_index()),
            ("gaps_index", self.gap_index()),
        ] {
            check_index(index).map_err(|m| (key, m))?;
        }
        for (name, value) in &self.headers {
            let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ("headers", format!("{name:?} is not a header name")))?;
            if OWN_HEADERS.contains(&parsed.as_str()) {
                return Err((
                    "headers",
                    format!("{name} is set by the writer itself and cannot be given"),
                ));
            }
            if parsed == reqwest::header::AUTHORIZATION && self.bearer_token_env.is_some() {
                return Err((
                    "headers",
                    "Authorization and bearer_token_env both set the Authorization header: \
                     keep one"
                        .into(),
                ));
            }
            // The value is not repeated: it may be a credential.
            reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                (
                    "headers",
                    format!("the value of {name} holds characters a header cannot"),
                )
            })?;
        }
        if let Some(var) = &self.bearer_token_env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err((
                    "bearer_token_env",
                    format!("{var:?} is not an environment variable name (letters, digits, _)"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than 0".into()));
        }
        if self.retry_delay > MAX_RETRY_DELAY {
            return Err((
                "retry_delay",
                format!("must be at most {}s", MAX_RETRY_DELAY.as_secs()),
            ));
        }
        if self.max_retries > 100 {
            return Err((
                "max_retries",
                "must be at most 100 (the runner retries a failed batch again anyway)".into(),
            ));
        }
        Ok(())
    }

    /// The bearer token, read from the environment; `None` when none is configured.
    pub(super) fn bearer_token(&self) -> Result<Option<Secret>, (&'static str, String)> {
        let Some(var) = &self.bearer_token_env else {
            return Ok(None);
        };
        let token = crate::secret::from_env("bearer_token_env", var)?;
        Ok(Some(Secret(token.trim().to_owned())))
    }

    /// The bearer token as a [`ConfigError`] when it cannot be read.
    pub(super) fn bearer_token_or_config_error(&self) -> Result<Option<Secret>, ConfigError> {
        self.bearer_token()
            .map_err(|(key, message)| ConfigError::invalid(key, message))
    }
}

/// An Elasticsearch index name: lower case, none of the characters the server refuses.
fn check_index(index: &str) -> Result<(), String> {
    let valid = !index.is_empty()
        && index.len() <= 255
        && index != "."
        && index != ".."
        && !index.starts_with(['-', '_', '+'])
        && index
            .chars()
            .all(|c| !c.is_uppercase() && !c.is_whitespace() && !r#"\/*?"<>|,#:"#.contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{index:?} is not an Elasticsearch index name (lower case, no \\ / * ? \" < > | , # : \
             or spaces, not starting with - _ +)"
        ))
    }
}

/// A credential: shown as `***`.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn bad_options_name_their_key() {
        let base = || HttpOptions::new(url("http://127.0.0.1:9200/_bulk"));
        let bad = [
            (HttpOptions::new(url("ftp://h/x")), "url"),
            (base().with_indexes("Trades", "c", "g"), "index"),
            (
                base()
                    .with_preset(Preset::Elasticsearch)
                    .with_indexes("t", "c,d", "g"),
                "candles_index",
            ),
            (base().with_indexes("t", "c", "g"), "index"),
            (base().with_header("Content-Type", "text/plain"), "headers"),
            (base().with_header("bad name", "x"), "headers"),
            (base().with_header("X-A", "line\nbreak"), "headers"),
            (
                base()
                    .with_header("Authorization", "Basic x")
                    .with_bearer_token_env("T"),
                "headers",
            ),
            (base().with_bearer_token_env("1X"), "bearer_token_env"),
            (base().with_timeout(Duration::ZERO), "timeout"),
            (
                base().with_retries(3, Duration::from_secs(600)),
                "retry_delay",
            ),
            (base().with_retries(1000, Duration::ZERO), "max_retries"),
        ];
        for (o, key) in bad {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        let ok = base()
            .with_preset(Preset::Elasticsearch)
            .with_indexes("market-trades", "market-candles", "market-gaps")
            .with_header("X-Scope-OrgID", "t1");
        assert!(ok.check().is_ok());
        assert_eq!(ok.candle_index(), "market-candles");
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let o = HttpOptions::new(url("https://user:pa55word@es.example/_bulk"))
            .with_header("Authorization", "Basic c2VjcmV0");
        let shown = format!("{o:?}");
        assert!(!shown.contains("pa55word"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert_eq!(format!("{:?}", Secret("tok".into())), "***");
    }

    #[test]
    fn a_missing_token_variable_is_an_error_naming_it() {
        let o = HttpOptions::new(url("http://h/x"))
            .with_bearer_token_env("CRYPTO_FEEDER_SURELY_UNSET_TOKEN_VAR");
        let (key, message) = o.bearer_token().unwrap_err();
        assert_eq!(key, "bearer_token_env");
        assert!(message.contains("CRYPTO_FEEDER_SURELY_UNSET_TOKEN_VAR"));
    }
}
