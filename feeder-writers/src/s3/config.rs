//! Options of the `s3` writer.

use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::{Deserialize, Deserializer};

/// Options of the `s3` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: s3
///     bucket: market-data                 # required
///     prefix: crypto-feeder               # optional
///     region: eu-west-1                   # default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
///     endpoint: http://127.0.0.1:9000     # optional, for S3-compatible stores
///     format: jsonl                       # jsonl (default) | parquet
///     max_object_size: 67108864           # bytes of JSON lines per object (default 64 MiB)
///     max_object_age: 10m                 # longest an object stays open
///     spool_dir: /var/spool/crypto-feeder # default: a directory under the system temp dir
/// ```
///
/// Credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, container or instance credentials), never from the
/// config file, and are never logged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct S3Options {
    /// The bucket; must exist.
    pub bucket: String,
    /// Key prefix of every object (no leading or trailing `/` needed).
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region.
    #[serde(default)]
    pub region: Option<String>,
    /// URL of an S3-compatible server. Plain `http://` is allowed only on the loopback
    /// interface (`127.0.0.1`, `localhost`, `[::1]`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Format of the objects.
    #[serde(default)]
    pub format: S3Format,
    /// Size, in bytes of JSON lines, at which an object is completed and uploaded.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: u64,
    /// Age at which an object is completed and uploaded even if small.
    #[serde(default = "default_max_object_age", with = "serde_duration")]
    pub max_object_age: Duration,
    /// Where batches wait, durably, for their upload. Leftovers of an earlier run are
    /// uploaded at start-up.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Longest wait for the start-up check of the bucket.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
}

/// Format of the uploaded objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3Format {
    /// JSON lines, the project's contract (`.jsonl`).
    #[default]
    Jsonl,
    /// Apache Parquet (`.parquet`), same columns as the `file` writer's.
    #[cfg(feature = "parquet")]
    Parquet,
}

impl S3Format {
    /// The object name extension.
    pub fn extension(self) -> &'static str {
        match self {
            S3Format::Jsonl => "jsonl",
            #[cfg(feature = "parquet")]
            S3Format::Parquet => "parquet",
        }
    }
}

impl<'de> Deserialize<'de> for S3Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match &*s {
            "jsonl" => Ok(S3Format::Jsonl),
            #[cfg(feature = "parquet")]
            "parquet" => Ok(S3Format::Parquet),
            other => Err(serde::de::Error::custom(format!(
                "format: unknown or unsupported format {other:?} (supported: jsonl{})",
                if cfg!(feature = "parquet") {
                    ", parquet"
                } else {
                    ""
                }
            ))),
        }
    }
}

fn default_max_object_size() -> u64 {
    64 * 1024 * 1024
}
fn default_max_object_age() -> Duration {
    Duration::from_secs(600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl S3Options {
    /// Options for `bucket` with the defaults.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            format: S3Format::default(),
            max_object_size: default_max_object_size(),
            max_object_age: default_max_object_age(),
            spool_dir: None,
            connect_timeout: default_connect_timeout(),
        }
    }

    /// The same options with an S3-compatible endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The same options with a key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The same options with a spool directory.
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// The same options with other object bounds.
    pub fn with_object_bounds(mut self, max_size: u64, max_age: Duration) -> Self {
        self.max_object_size = max_size;
        self.max_object_age = max_age;
        self
    }

    /// The same options with another format.
    pub fn with_format(mut self, format: S3Format) -> Self {
        self.format = format;
        self
    }

    /// Reads and checks the options of an `s3` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: S3Options = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(("bucket", "must be a bucket name".into()));
        }
        if let Some(e) = &self.endpoint {
            self.allow_http(e)?;
        }
        if self.max_object_size == 0 {
            return Err(("max_object_size", "must be more than 0".into()));
        }
        if self.max_object_age.is_zero() {
            return Err(("max_object_age", "must be more than 0".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        Ok(())
    }

    /// Whether the endpoint is plain HTTP (allowed on loopback only).
    pub(super) fn allow_http(&self, endpoint: &str) -> Result<bool, (&'static str, String)> {
        let url =
            url::Url::parse(endpoint).map_err(|e| ("endpoint", format!("not a URL ({e})")))?;
        match url.scheme() {
            "https" => Ok(false),
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if loopback {
                    Ok(true)
                } else {
                    Err((
                        "endpoint",
                        "plain http:// is allowed only on the loopback interface; use https://"
                            .into(),
                    ))
                }
            }
            other => Err(("endpoint", format!("unsupported scheme {other:?}"))),
        }
    }

    /// The spool directory: the option, or one per bucket and prefix under the temp dir.
    pub(super) fn spool(&self) -> PathBuf {
        match &self.spool_dir {
            Some(d) => d.clone(),
            None => {
                let mut name = format!("{}-{}", self.bucket, self.prefix);
                name.retain(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                std::env::temp_dir().join("crypto-feeder-s3").join(name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        let o = S3Options::new("b");
        for ok in [
            "http://127.0.0.1:5000",
            "http://localhost:9000",
            "http://[::1]:1",
            "https://s3.example.com",
        ] {
            assert!(o.allow_http(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:9000",
            "http://minio.internal",
            "ftp://127.0.0.1",
            "nope",
        ] {
            assert_eq!(o.allow_http(bad).unwrap_err().0, "endpoint", "{bad}");
        }
    }

    #[test]
    fn bad_options_name_their_key() {
        assert_eq!(S3Options::new("").check().unwrap_err().0, "bucket");
        assert_eq!(
            S3Options::new("b")
                .with_object_bounds(0, Duration::from_secs(1))
                .check()
                .unwrap_err()
                .0,
            "max_object_size"
        );
        assert!(S3Options::new("b").check().is_ok());
    }
}
