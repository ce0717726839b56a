//! Options of the `postgres` writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::Deserialize;

use super::tls::{Roots, TlsSettings, Verify};

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
///     sslmode: verify-full     # disable | prefer | require | verify-ca | verify-full
///     sslrootcert: /etc/feeder/pg-ca.crt   # or `system`; default: the Mozilla roots
///     sslcert: /etc/feeder/client.crt      # optional client certificate ...
///     sslkey: /etc/feeder/client.key       # ... and its key
/// ```
///
/// The four TLS settings may also be written in the URL
/// (`?sslmode=verify-full&sslrootcert=/path`); a setting given both ways must say the same
/// in both, or the options are refused.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connection URL (`postgres://user:password@host:port/database?options`) or key=value
    /// connection string. Put the password in the environment with `${VAR}`; it is never
    /// logged. May carry `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as the options
    /// below.
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
    /// TLS, with libpq's meanings. Without it (here and in the URL): `verify-full` when
    /// `sslrootcert` or `sslcert` is given, otherwise `disable` (no TLS).
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// PEM file of the CA certificates the server's chain must lead to, or `system` for the
    /// operating system's store. Without it, the Mozilla roots compiled in. With `require` or
    /// `prefer` it makes them check the chain (as `verify-ca`), as libpq does.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// PEM file of a client certificate (and its chain) shown to a server that asks for
    /// one; needs `sslkey`.
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// PEM file of the private key of `sslcert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
}

/// How a connection uses TLS, as libpq's `sslmode` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked (only
    /// its chain, when `sslrootcert` is given). Guards against eavesdropping only.
    Prefer,
    /// TLS or no connection; the certificate is not checked (only its chain, when
    /// `sslrootcert` is given).
    Require,
    /// TLS, with a certificate whose chain leads to a trusted root; any host name.
    VerifyCa,
    /// TLS, with a certificate whose chain leads to a trusted root and that names the host.
    VerifyFull,
}

impl SslMode {
    /// The mode as written in a URL or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode of a URL's `sslmode` value.
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported; use disable, prefer, require, \
                            verify-ca or verify-full"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode {other:?} is none of disable, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
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
            sslmode: None,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }

    /// The same options with a TLS mode.
    pub fn with_sslmode(mut self, mode: SslMode) -> Self {
        self.sslmode = Some(mode);
        self
    }

    /// The same options with a file of trusted CA certificates (or `system`).
    pub fn with_sslrootcert(mut self, path: impl Into<PathBuf>) -> Self {
        self.sslrootcert = Some(path.into());
        self
    }

    /// The same options with a client certificate and its key.
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.sslcert = Some(cert.into());
        self.sslkey = Some(key.into());
        self
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

    /// The parsed connection settings and their TLS side (`None` for no TLS). Reads no file:
    /// the TLS files are read when the writer connects.
    pub(super) fn connection_config(
        &self,
    ) -> Result<(tokio_postgres::Config, Option<TlsSettings>), (&'static str, String)> {
        let (rest, in_url) = split_tls_params(&self.url)?;
        // The parser's messages do not repeat the input, so they cannot leak a password.
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
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
        let mode = merge("sslmode", in_url.sslmode, self.sslmode, |m| m.to_string())?;
        let path = |p: &PathBuf| p.display().to_string();
        let rootcert = merge(
            "sslrootcert",
            in_url.sslrootcert,
            self.sslrootcert.clone(),
            path,
        )?;
        let cert = merge("sslcert", in_url.sslcert, self.sslcert.clone(), path)?;
        let key = merge("sslkey", in_url.sslkey, self.sslkey.clone(), path)?;
        let (mode, tls) = tls_settings(mode, rootcert, cert, key)?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            // Never plain: a server without TLS is refused.
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("crypto-feeder");
        }
        Ok((config, tls))
    }

    /// Whether the connection is plain TCP to a host off this machine: its traffic, password
    /// included, crosses a network in clear.
    pub(super) fn plain_over_network(&self) -> bool {
        let Ok((config, None)) = self.connection_config() else {
            return false;
        };
        let local_name = |host: &tokio_postgres::config::Host| match host {
            tokio_postgres::config::Host::Unix(_) => true,
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        };
        // `hostaddr`, when given, is where the connection goes.
        let local = if config.get_hostaddrs().is_empty() {
            config.get_hosts().iter().all(local_name)
        } else {
            config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
        };
        !local
    }

    /// The URL with its password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// The TLS settings of a URL, taken out of it (tokio-postgres knows only some of them).
#[derive(Debug, Default, PartialEq, Eq)]
struct UrlTls {
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    sslcert: Option<PathBuf>,
    sslkey: Option<PathBuf>,
}

impl UrlTls {
    /// Takes one parameter if it is a TLS one; `false` when it is not.
    fn take(&mut self, key: &str, value: String) -> Result<bool, (&'static str, String)> {
        let path = Some(PathBuf::from(&value));
        let (slot, name): (&mut Option<PathBuf>, &'static str) = match key {
            "sslmode" => {
                let mode = SslMode::parse(&value).map_err(|m| ("url", m))?;
                return match self.sslmode.replace(mode) {
                    Some(_) => Err(("url", "gives sslmode twice".into())),
                    None => Ok(true),
                };
            }
            "sslrootcert" => (&mut self.sslrootcert, "sslrootcert"),
            "sslcert" => (&mut self.sslcert, "sslcert"),
            "sslkey" => (&mut self.sslkey, "sslkey"),
            _ => return Ok(false),
        };
        if slot.is_some() {
            return Err(("url", format!("gives {name} twice")));
        }
        *slot = path;
        Ok(true)
    }
}

/// Splits the TLS settings out of a connection URL or key=value string; the rest is left
/// as it was written, for tokio-postgres to parse.
fn split_tls_params(url: &str) -> Result<(String, UrlTls), (&'static str, String)> {
    let mut tls = UrlTls::default();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), tls));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| ("url", "a parameter is not UTF-8 once decoded".to_owned()))
            };
            if !tls.take(&decode(key)?, decode(value)?)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    let mut params = KeyValues { s: url, at: 0 };
    while let Some((key, value, raw)) = params.next_param()? {
        if !tls.take(key, value)? {
            kept.push(raw);
        }
    }
    Ok((kept.join(" "), tls))
}

/// The parameters of a key=value connection string, read as tokio-postgres reads them:
/// `key = value`, values bare up to a space or in single quotes, `\` escaping a character.
struct KeyValues<'a> {
    s: &'a str,
    /// Byte offset of the next character to read.
    at: usize,
}

impl<'a> KeyValues<'a> {
    /// The next parameter: its key, its value unescaped, and its text as written.
    #[allow(clippy::type_complexity)]
    fn next_param(&mut self) -> Result<Option<(&'a str, String, &'a str)>, (&'static str, String)> {
        let bad = |what: &str| {
            (
                "url",
                format!("not a valid key=value connection string ({what})"),
            )
        };
        self.skip_ws();
        let start = self.at;
        let key = self.take_while(|c| !c.is_whitespace() && c != '=');
        if key.is_empty() {
            return if self.at == self.s.len() {
                Ok(None)
            } else {
                Err(bad("a parameter without a name"))
            };
        }
        self.skip_ws();
        if !self.eat('=') {
            return Err(bad("expected `=` after a name"));
        }
        self.skip_ws();
        let mut value = String::new();
        if self.eat('\'') {
            loop {
                match self.next_char() {
                    None => return Err(bad("a quoted value is not closed")),
                    Some('\'') => break,
                    Some('\\') => value.extend(self.next_char()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = self.peek() {
                if c.is_whitespace() {
                    break;
                }
                self.next_char();
                if c == '\\' {
                    value.extend(self.next_char());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(bad("a parameter without a value"));
            }
        }
        Ok(Some((key, value, &self.s[start..self.at])))
    }

    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, want: char) -> bool {
        let yes = self.peek() == Some(want);
        if yes {
            self.at += want.len_utf8();
        }
        yes
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(&f) {
            self.next_char();
        }
        &self.s[start..self.at]
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }
}

/// A setting given in the URL, as an option, or both: both must say the same.
fn merge<T: PartialEq>(
    key: &'static str,
    in_url: Option<T>,
    option: Option<T>,
    show: impl Fn(&T) -> String,
) -> Result<Option<T>, (&'static str, String)> {
    match (in_url, option) {
        (Some(u), Some(o)) if u != o => Err((
            key,
            format!(
                "given in the url ({}) and as an option ({}); give it once",
                show(&u),
                show(&o)
            ),
        )),
        (u, o) => Ok(o.or(u)),
    }
}

/// The mode in force and the TLS side of the connection (`None` for no TLS).
fn tls_settings(
    mode: Option<SslMode>,
    rootcert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(SslMode, Option<TlsSettings>), (&'static str, String)> {
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(("sslkey", "sslcert is given without its key".into())),
        (None, Some(_)) => return Err(("sslcert", "sslkey is given without sslcert".into())),
    };
    for (name, path) in [
        ("sslrootcert", rootcert.as_deref()),
        ("sslcert", client.as_ref().map(|c| c.0.as_path())),
        ("sslkey", client.as_ref().map(|c| c.1.as_path())),
    ] {
        if path.is_some_and(|p| p.as_os_str().is_empty()) {
            return Err((name, "must not be empty".into()));
        }
    }
    let asked_tls = rootcert.is_some() || client.is_some();
    // A root certificate or a client certificate says TLS is wanted: checked fully unless the
    // mode says otherwise.
    let mode = match mode {
        Some(m) => m,
        None if asked_tls => SslMode::VerifyFull,
        None => SslMode::Disable,
    };
    let verify = match mode {
        SslMode::Disable if asked_tls => {
            return Err((
                "sslmode",
                "is disable, but sslrootcert or sslcert is given: drop them or choose a mode \
                 with TLS"
                    .into(),
            ))
        }
        SslMode::Disable => return Ok((mode, None)),
        SslMode::VerifyFull => Verify::Full,
        SslMode::VerifyCa => Verify::Chain,
        SslMode::Require | SslMode::Prefer if rootcert.is_some() => Verify::Chain,
        SslMode::Require | SslMode::Prefer => Verify::Nothing,
    };
    let roots = match rootcert {
        None => Roots::Webpki,
        Some(p) if p == Path::new("system") => Roots::System,
        Some(p) => Roots::File(p),
    };
    Ok((
        mode,
        Some(TlsSettings {
            verify,
            roots,
            client,
        }),
    ))
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
                    // `password`, and any other `...password` (libpq's `sslpassword`).
                    let v = if k.to_ascii_lowercase().ends_with("password") {
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
            (PostgresOptions::new("postgres://h/db?sslmode=allow"), "url"),
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

    fn tls_of(o: &PostgresOptions) -> Option<TlsSettings> {
        o.connection_config().unwrap().1
    }

    fn mode_of(o: &PostgresOptions) -> tokio_postgres::config::SslMode {
        o.connection_config().unwrap().0.get_ssl_mode()
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read_from_the_url() {
        use tokio_postgres::config::SslMode as Wire;
        let full = PostgresOptions::new(
            "postgres://u:pw@db.example:5433/market?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&application_name=x",
        );
        assert_eq!(
            tls_of(&full),
            Some(TlsSettings {
                verify: Verify::Full,
                roots: Roots::File("/etc/ca.crt".into()),
                client: None,
            })
        );
        assert_eq!(mode_of(&full), Wire::Require);
        let (config, _) = full.connection_config().unwrap();
        // What is not TLS still reaches the driver.
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_password(), Some(&b"pw"[..]));

        let table = [
            ("postgres://h/db", None, Wire::Disable),
            ("postgres://h/db?sslmode=disable", None, Wire::Disable),
            (
                "postgres://h/db?sslmode=prefer",
                Some(Verify::Nothing),
                Wire::Prefer,
            ),
            (
                "postgres://h/db?sslmode=require",
                Some(Verify::Nothing),
                Wire::Require,
            ),
            // libpq: a root certificate makes require check the chain.
            (
                "postgres://h/db?sslmode=require&sslrootcert=/ca",
                Some(Verify::Chain),
                Wire::Require,
            ),
            (
                "postgres://h/db?sslmode=prefer&sslrootcert=/ca",
                Some(Verify::Chain),
                Wire::Prefer,
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                Some(Verify::Chain),
                Wire::Require,
            ),
            (
                "postgres://h/db?sslmode=verify-full",
                Some(Verify::Full),
                Wire::Require,
            ),
            // A root certificate alone asks for the strictest mode.
            (
                "postgres://h/db?sslrootcert=/ca",
                Some(Verify::Full),
                Wire::Require,
            ),
            ("host=h dbname=db", None, Wire::Disable),
            (
                "host=h sslmode=verify-ca dbname=db",
                Some(Verify::Chain),
                Wire::Require,
            ),
            (
                "host=h sslmode = 'verify-full' sslrootcert='/my certs/ca.crt' dbname=db",
                Some(Verify::Full),
                Wire::Require,
            ),
        ];
        for (url, verify, wire) in table {
            let o = PostgresOptions::new(url);
            assert_eq!(tls_of(&o).map(|t| t.verify), verify, "{url}");
            assert_eq!(mode_of(&o), wire, "{url}");
        }
        let quoted = PostgresOptions::new(
            "host=h sslmode=verify-full sslrootcert='/my certs/it\\'s.crt' user=u",
        );
        assert_eq!(
            tls_of(&quoted).unwrap().roots,
            Roots::File("/my certs/it's.crt".into())
        );
        assert_eq!(quoted.connection_config().unwrap().0.get_user(), Some("u"));
        let system = PostgresOptions::new("postgres://h/db?sslrootcert=system");
        assert_eq!(tls_of(&system).unwrap().roots, Roots::System);
        let webpki = PostgresOptions::new("postgres://h/db?sslmode=verify-full");
        assert_eq!(tls_of(&webpki).unwrap().roots, Roots::Webpki);
    }

    #[test]
    fn tls_options_join_the_url_and_a_conflict_is_refused() {
        let o = PostgresOptions::new("postgres://h/db")
            .with_sslmode(SslMode::VerifyCa)
            .with_sslrootcert("/ca.crt")
            .with_client_cert("/c.crt", "/c.key");
        assert_eq!(
            tls_of(&o),
            Some(TlsSettings {
                verify: Verify::Chain,
                roots: Roots::File("/ca.crt".into()),
                client: Some(("/c.crt".into(), "/c.key".into())),
            })
        );
        // The same setting both ways is fine; the URL and the options add up.
        let same = PostgresOptions::new("postgres://h/db?sslmode=verify-full")
            .with_sslmode(SslMode::VerifyFull)
            .with_sslrootcert("/ca.crt");
        assert_eq!(tls_of(&same).unwrap().verify, Verify::Full);
        assert_eq!(tls_of(&same).unwrap().roots, Roots::File("/ca.crt".into()));
        let conflicts = [
            (
                PostgresOptions::new("postgres://h/db?sslmode=verify-full")
                    .with_sslmode(SslMode::Require),
                "sslmode",
            ),
            (
                PostgresOptions::new("host=h sslmode=disable").with_sslmode(SslMode::VerifyFull),
                "sslmode",
            ),
            (
                PostgresOptions::new("postgres://h/db?sslrootcert=/a").with_sslrootcert("/b"),
                "sslrootcert",
            ),
            (
                PostgresOptions::new("postgres://h/db?sslmode=require&sslmode=verify-full"),
                "url",
            ),
            (
                PostgresOptions::new("postgres://h/db?sslmode=verify_full"),
                "url",
            ),
            (
                PostgresOptions::new("postgres://h/db?sslcert=/c.crt"),
                "sslkey",
            ),
            (
                PostgresOptions::new("postgres://h/db").with_sslrootcert(""),
                "sslrootcert",
            ),
            (
                PostgresOptions::new("postgres://h/db?sslmode=disable&sslrootcert=/ca"),
                "sslmode",
            ),
            (PostgresOptions::new("host=h sslmode='verify-full"), "url"),
        ];
        for (o, key) in conflicts {
            let (k, message) = o.check().unwrap_err();
            assert_eq!(k, key, "{o:?}: {message}");
        }
        let (_, message) = PostgresOptions::new("postgres://h/db?sslmode=verify-full")
            .with_sslmode(SslMode::Require)
            .check()
            .unwrap_err();
        assert!(
            message.contains("verify-full") && message.contains("require"),
            "{message}"
        );
    }

    #[test]
    fn tls_options_come_from_yaml() {
        let config = feeder_core::config::Config::from_yaml_str(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: postgres\n    url: postgres://h/db\n    sslmode: verify-ca\n    sslrootcert: /ca.crt\n",
        )
        .unwrap();
        let o = PostgresOptions::from_config(&config.writers[0]).unwrap();
        assert_eq!(o.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(tls_of(&o).unwrap().verify, Verify::Chain);
        let bad = feeder_core::config::Config::from_yaml_str(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: postgres\n    url: postgres://h/db\n    sslmode: verify-everything\n",
        )
        .unwrap();
        let err = PostgresOptions::from_config(&bad.writers[0]).unwrap_err();
        assert!(err.to_string().contains("verify-everything"), "{err}");
    }

    #[test]
    fn tls_settings_keep_passwords_hidden() {
        let o = PostgresOptions::new(
            "postgres://u:s3cret@h/db?sslmode=verify-full&sslrootcert=/ca.crt&password=other&sslpassword=other",
        )
        .with_client_cert("/c.crt", "/c.key");
        let shown = format!("{o:?} {}", o.redacted_url());
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        // The TLS settings show: they are paths, not secrets.
        assert!(
            shown.contains("verify-full") && shown.contains("/c.key"),
            "{shown}"
        );
        // A conflict's message names the settings, never the password.
        let (_, message) = o
            .clone()
            .with_sslmode(SslMode::Require)
            .check()
            .unwrap_err();
        assert!(!message.contains("s3cret"), "{message}");
        let kv = PostgresOptions::new("host=h password=s3cret sslmode=verify-full");
        let (_, message) = kv.with_sslmode(SslMode::Prefer).check().unwrap_err();
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn only_plain_connections_off_this_machine_are_flagged() {
        for (url, flagged) in [
            ("postgres://u@127.0.0.1/test", false),
            ("postgres://u@localhost/test", false),
            ("postgres://u@[::1]/test", false),
            ("host=/var/run/postgresql dbname=test", false),
            ("postgres://u@db.example/test", true),
            ("postgres://u@10.1.2.3/test", true),
            ("postgres://u@db.example/test?hostaddr=127.0.0.1", false),
            ("postgres://u@db.example/test?sslmode=verify-full", false),
            ("postgres://u@db.example/test?sslmode=prefer", false),
        ] {
            assert_eq!(
                PostgresOptions::new(url).plain_over_network(),
                flagged,
                "{url}"
            );
        }
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote_ident("trades"), "\"trades\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
