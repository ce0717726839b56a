//! Options of the `postgres` writer.

use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::Deserialize;

/// Options of the `postgres` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: postgres
///     url: postgres://feeder:${PG_PASSWORD}@db.internal:5432/market   # required
///     table: trades            # default trades
///     candles_table: candles   # default candles
///     gaps_table: gaps         # default gaps
///     schema: public           # optional; created if missing
///     connect_timeout: 10s
///     write_timeout: 30s
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connection URL (`postgres://user:password@host:port/database?options`) or key=value
    /// connection string. Put the password in the environment with `${VAR}`; it is never
    /// logged. TLS is not supported: `sslmode=require` is rejected, other modes connect
    /// without TLS.
    pub url: String,
    /// Table of trades; created if absent.
    #[serde(default = "default_table")]
    pub table: String,
    /// Table of candles; created if absent.
    #[serde(default = "default_candles_table")]
    pub candles_table: String,
    /// Table of gaps (holes in a stream the feeder could not fill); created if absent.
    #[serde(default = "default_gaps_table")]
    pub gaps_table: String,
    /// Schema of the tables; created if absent. Without it the server's search path
    /// decides (normally `public`).
    #[serde(default)]
    pub schema: Option<String>,
    /// Longest wait for a connection (and its set-up) at start-up and at each reconnect.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for one batch to be stored; past it the connection is dropped and the
    /// batch retried (safe: inserts are idempotent).
    #[serde(default = "default_write_timeout", with = "serde_duration")]
    pub write_timeout: Duration,
}

fn default_table() -> String {
    "trades".into()
}
fn default_candles_table() -> String {
    "candles".into()
}
fn default_gaps_table() -> String {
    "gaps".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("table", &self.table)
            .field("candles_table", &self.candles_table)
            .field("gaps_table", &self.gaps_table)
            .field("schema", &self.schema)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for `url` with the default tables and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table: default_table(),
            candles_table: default_candles_table(),
            gaps_table: default_gaps_table(),
            schema: None,
            connect_timeout: default_connect_timeout(),
            write_timeout: default_write_timeout(),
        }
    }

    /// The same options with other table names; gaps go to `<trades>_gaps`.
    pub fn with_tables(mut self, trades: impl Into<String>, candles: impl Into<String>) -> Self {
        self.table = trades.into();
        self.candles_table = candles.into();
        self.gaps_table = format!("{}_gaps", self.table);
        self
    }

    /// The same options with a schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The same options with other timeouts.
    pub fn with_timeouts(mut self, connect: Duration, write: Duration) -> Self {
        self.connect_timeout = connect;
        self.write_timeout = write;
        self
    }

    /// Reads and checks the options of a `postgres` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: PostgresOptions = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        self.connection_config()?;
        check_ident("table", &self.table)?;
        check_ident("candles_table", &self.candles_table)?;
        check_ident("gaps_table", &self.gaps_table)?;
        if let Some(schema) = &self.schema {
            check_ident("schema", schema)?;
        }
        if self.table == self.candles_table {
            return Err(("candles_table", "must differ from table".into()));
        }
        if self.gaps_table == self.table || self.gaps_table == self.candles_table {
            return Err((
                "gaps_table",
                "must differ from table and candles_table".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        if self.write_timeout.is_zero() {
            return Err(("write_timeout", "must be more than 0".into()));
        }
        Ok(())
    }

    /// The parsed connection settings.
    pub(super) fn connection_config(
        &self,
    ) -> Result<tokio_postgres::Config, (&'static str, String)> {
        // The parser's messages do not repeat the input, so they cannot leak a password.
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| {
            (
                "url",
                format!(
                    "not a PostgreSQL connection URL ({e}); expected \
                     postgres://user:password@host:port/database"
                ),
            )
        })?;
        if config.get_hosts().is_empty() {
            return Err(("url", "names no host".into()));
        }
        if matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        ) {
            return Err((
                "url",
                "sslmode=require: TLS connections are not supported by this writer; connect \
                 over a trusted network or through a local TLS tunnel"
                    .into(),
            ));
        }
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("crypto-feeder");
        }
        Ok(config)
    }

    /// The URL with its password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// A table or schema name: quoted in SQL, so any text is allowed except what Postgres
/// cannot hold in a name.
fn check_ident(key: &'static str, name: &str) -> Result<(), (&'static str, String)> {
    if name.is_empty() {
        return Err((key, "must not be empty".into()));
    }
    if name.len() > 63 {
        return Err((
            key,
            "longer than PostgreSQL's 63-byte limit on names".into(),
        ));
    }
    if name.contains('\0') {
        return Err((key, "must not contain a NUL character".into()));
    }
    Ok(())
}

/// A connection URL with the password hidden; a key=value connection string is hidden
/// whole except for its host.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if matches!(u.scheme(), "postgres" | "postgresql") => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "***".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        _ => "<connection string>".into(),
    }
}

/// Quotes a name for SQL: in double quotes, with quotes doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let o = PostgresOptions::new("postgres://u:s3cret@h:5432/db?password=other&x=1");
        let shown = format!("{o:?} {}", o.redacted_url());
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert!(shown.contains("u:***@h:5432/db"), "{shown}");
        let kv = PostgresOptions::new("host=h user=u password=s3cret");
        assert!(!format!("{kv:?}").contains("s3cret"));
    }

    #[test]
    fn bad_options_name_their_key() {
        let bad = [
            (PostgresOptions::new("http://"), "url"),
            (
                PostgresOptions::new("postgres://h/db?sslmode=require"),
                "url",
            ),
            (
                PostgresOptions::new("postgres://h/db").with_tables("", "c"),
                "table",
            ),
            (
                PostgresOptions::new("postgres://h/db").with_tables("t", "t"),
                "candles_table",
            ),
            (
                PostgresOptions::new("postgres://h/db").with_schema("x".repeat(64)),
                "schema",
            ),
        ];
        for (o, key) in bad {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        assert!(PostgresOptions::new("postgres://u@127.0.0.1/test")
            .check()
            .is_ok());
        assert!(PostgresOptions::new("host=127.0.0.1 user=u dbname=test")
            .check()
            .is_ok());
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote_ident("trades"), "\"trades\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
