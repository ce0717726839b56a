//! Options of the `syslog` writer.

use std::path::PathBuf;
use std::time::Duration;

use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::model::serde_duration;
use serde::{Deserialize, Deserializer};

/// Options of the `syslog` writer, read from its entry in the config:
///
/// ```yaml
/// writers:
///   - type: syslog
///     address: logs.internal:6514   # required, host:port
///     protocol: tls                 # udp | tcp (default) | tls
///     facility: local0              # default user
///     app_name: crypto-feeder       # APP-NAME, default crypto-feeder
///     hostname: feeder-1            # HOSTNAME, default this machine's host name
///     ca_file: /etc/ssl/logs-ca.pem # tls: trust these roots instead of the built-in ones
///     server_name: logs.internal    # tls: the name to verify, default the address's host
///     connect_timeout: 10s          # connecting, and the TLS handshake
///     write_timeout: 30s            # sending a batch and the server confirming it
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SyslogOptions {
    /// The server, `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
    pub address: String,
    /// How messages travel.
    #[serde(default)]
    pub protocol: Protocol,
    /// The facility of every message (its severity is always informational).
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME of every message.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME of every message; this machine's host name when absent.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `tls`: a PEM file of the certificate authorities to trust, instead of the built-in
    /// (Mozilla) roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls`: the name the server's certificate must carry, when it is not the host of
    /// `address` (for example when `address` is an IP address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// How long connecting (and the TLS handshake) may take.
    #[serde(default = "default_connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// How long sending one batch may take, including the server's close that confirms it
    /// over TCP and TLS.
    #[serde(default = "default_write_timeout", with = "serde_duration")]
    pub write_timeout: Duration,
}

/// How syslog messages travel to the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// One datagram per message (RFC 5426): fire and forget, nothing confirms delivery.
    Udp,
    /// TCP with octet-counting framing (RFC 6587, section 3.4.1).
    #[default]
    Tcp,
    /// TLS with octet-counting framing (RFC 5425), always verified.
    Tls,
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "udp" => Ok(Protocol::Udp),
            "tcp" => Ok(Protocol::Tcp),
            "tls" => Ok(Protocol::Tls),
            // The message names the key: serde's own would name only the value.
            _ => Err(serde::de::Error::custom(format!(
                "protocol must be udp, tcp or tls, not {name:?}"
            ))),
        }
    }
}

impl Protocol {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
        }
    }
}

/// A syslog facility (RFC 5424, section 6.2.1), by its usual name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Facility {
    /// `kern` (0).
    Kern,
    /// `user` (1): the default for programs.
    #[default]
    User,
    /// `mail` (2).
    Mail,
    /// `daemon` (3).
    Daemon,
    /// `auth` (4).
    Auth,
    /// `syslog` (5).
    Syslog,
    /// `lpr` (6).
    Lpr,
    /// `news` (7).
    News,
    /// `uucp` (8).
    Uucp,
    /// `cron` (9).
    Cron,
    /// `authpriv` (10).
    Authpriv,
    /// `ftp` (11).
    Ftp,
    /// `local0` (16) to `local7` (23): the facilities left to local use.
    Local(u8),
}

/// Names and codes of the facilities other than `local0`..`local7`.
const NAMED: [(&str, Facility, u8); 12] = [
    ("kern", Facility::Kern, 0),
    ("user", Facility::User, 1),
    ("mail", Facility::Mail, 2),
    ("daemon", Facility::Daemon, 3),
    ("auth", Facility::Auth, 4),
    ("syslog", Facility::Syslog, 5),
    ("lpr", Facility::Lpr, 6),
    ("news", Facility::News, 7),
    ("uucp", Facility::Uucp, 8),
    ("cron", Facility::Cron, 9),
    ("authpriv", Facility::Authpriv, 10),
    ("ftp", Facility::Ftp, 11),
];

impl Facility {
    /// The facility called `name` (`user`, `daemon`, `local0`, ...), case-insensitive.
    pub fn parse(name: &str) -> Option<Facility> {
        let lower = name.trim().to_ascii_lowercase();
        if let Some(n) = lower.strip_prefix("local") {
            // Exactly one digit, 0 to 7: `local01` or `local+1` are not names.
            return match n.as_bytes() {
                [d @ b'0'..=b'7'] => Some(Facility::Local(d - b'0')),
                _ => None,
            };
        }
        NAMED.iter().find(|(k, ..)| *k == lower).map(|(_, f, _)| *f)
    }

    /// The numeric code (0 to 23).
    pub fn code(self) -> u8 {
        match self {
            Facility::Local(n) => 16 + n.min(7),
            other => NAMED
                .iter()
                .find(|(_, f, _)| *f == other)
                .map_or(1, |(_, _, c)| *c),
        }
    }
}

impl<'de> Deserialize<'de> for Facility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Facility::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "facility must be one of kern, user, mail, daemon, auth, syslog, lpr, news, \
                 uucp, cron, authpriv, ftp, local0 to local7, not {name:?}"
            ))
        })
    }
}

fn default_app_name() -> String {
    "crypto-feeder".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The longest HOSTNAME RFC 5424 allows.
const HOSTNAME_MAX: usize = 255;
/// The longest APP-NAME RFC 5424 allows.
const APP_NAME_MAX: usize = 48;

/// Whether `s` is a header field RFC 5424 accepts: 1 to `max` printable US-ASCII characters
/// (no space), and not the NILVALUE `-` alone.
pub(super) fn header_field_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s != "-" && s.bytes().all(|b| (33..=126).contains(&b))
}

impl SyslogOptions {
    /// Options for `address` (`host:port`) over `protocol`, with the defaults.
    pub fn new(address: impl Into<String>, protocol: Protocol) -> Self {
        Self {
            address: address.into(),
            protocol,
            facility: Facility::default(),
            app_name: default_app_name(),
            hostname: None,
            ca_file: None,
            server_name: None,
            connect_timeout: default_connect_timeout(),
            write_timeout: default_write_timeout(),
        }
    }

    /// The same options with another facility.
    pub fn with_facility(mut self, facility: Facility) -> Self {
        self.facility = facility;
        self
    }

    /// The same options with another APP-NAME.
    pub fn with_app_name(mut self, app_name: impl Into<String>) -> Self {
        self.app_name = app_name.into();
        self
    }

    /// The same options with a fixed HOSTNAME.
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The same options trusting the authorities in a PEM file (TLS).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The same options verifying the server's certificate for `name` (TLS).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The same options with other timeouts.
    pub fn with_timeouts(mut self, connect: Duration, write: Duration) -> Self {
        self.connect_timeout = connect;
        self.write_timeout = write;
        self
    }

    /// Reads and checks the options of a `syslog` writer's config entry, without any I/O.
    pub fn from_config(config: &WriterConfig) -> Result<Self, ConfigError> {
        let options: SyslogOptions = config.options()?;
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))?;
        Ok(options)
    }

    /// The host and port of `address`; the host without IPv6 brackets.
    pub(super) fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host,
        };
        (!host.is_empty()).then_some((host, port))
    }

    /// Checks the options without any I/O; the error names the key.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.host_port().is_none() {
            return Err((
                "address",
                format!(
                    "{:?} is not host:port (IPv6 as [addr]:port, port 1 to 65535)",
                    self.address
                ),
            ));
        }
        if !header_field_ok(&self.app_name, APP_NAME_MAX) {
            return Err((
                "app_name",
                format!(
                    "{:?} must be 1 to {APP_NAME_MAX} printable ASCII characters without spaces",
                    self.app_name
                ),
            ));
        }
        if let Some(h) = &self.hostname {
            if !header_field_ok(h, HOSTNAME_MAX) {
                return Err((
                    "hostname",
                    format!(
                        "{h:?} must be 1 to {HOSTNAME_MAX} printable ASCII characters without \
                         spaces"
                    ),
                ));
            }
        }
        if self.protocol != Protocol::Tls {
            if self.ca_file.is_some() {
                return Err(("ca_file", "only applies to protocol tls".into()));
            }
            if self.server_name.is_some() {
                return Err(("server_name", "only applies to protocol tls".into()));
            }
        }
        if let Some(name) = &self.server_name {
            if tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(("server_name", format!("{name:?} is not a DNS name or IP")));
            }
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(("ca_file", "must not be empty".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be more than 0".into()));
        }
        if self.write_timeout.is_zero() {
            return Err(("write_timeout", "must be more than 0".into()));
        }
        Ok(())
    }
}

/// This machine's host name for the HOSTNAME field: the name as the system gives it when it
/// is a valid field, else `-` (the NILVALUE).
pub(super) fn local_hostname() -> String {
    let name = gethostname::gethostname();
    match name.to_str() {
        Some(n) if header_field_ok(n, HOSTNAME_MAX) => n.to_owned(),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_by_name_and_code() {
        let table = [
            ("kern", 0),
            ("user", 1),
            ("USER", 1),
            ("daemon", 3),
            ("authpriv", 10),
            ("local0", 16),
            ("local7", 23),
        ];
        for (name, code) in table {
            assert_eq!(
                Facility::parse(name).map(Facility::code),
                Some(code),
                "{name}"
            );
        }
        for bad in [
            "local8", "local", "local01", "local+1", "", "users", "security",
        ] {
            assert_eq!(Facility::parse(bad), None, "{bad}");
        }
        assert_eq!(Facility::default().code(), 1);
    }

    #[test]
    fn bad_options_name_their_key() {
        let tcp = |a: &str| SyslogOptions::new(a, Protocol::Tcp);
        let bad = [
            (tcp("localhost"), "address"),
            (tcp("localhost:0"), "address"),
            (tcp("localhost:99999"), "address"),
            (tcp(":514"), "address"),
            (tcp("::1:514"), "address"),
            (tcp("h:514").with_app_name("crypto feeder"), "app_name"),
            (tcp("h:514").with_app_name(""), "app_name"),
            (tcp("h:514").with_app_name("x".repeat(49)), "app_name"),
            (tcp("h:514").with_hostname("-"), "hostname"),
            (tcp("h:514").with_hostname("hé"), "hostname"),
            (tcp("h:514").with_ca_file("/ca.pem"), "ca_file"),
            (tcp("h:514").with_server_name("h"), "server_name"),
            (
                SyslogOptions::new("h:6514", Protocol::Tls).with_server_name("not a name"),
                "server_name",
            ),
            (
                tcp("h:514").with_timeouts(Duration::ZERO, Duration::from_secs(1)),
                "connect_timeout",
            ),
            (
                tcp("h:514").with_timeouts(Duration::from_secs(1), Duration::ZERO),
                "write_timeout",
            ),
        ];
        for (o, key) in bad {
            assert_eq!(o.check().unwrap_err().0, key, "{o:?}");
        }
        for ok in [
            "h:514",
            "127.0.0.1:514",
            "[::1]:514",
            "logs.example.com:6514",
        ] {
            assert!(tcp(ok).check().is_ok(), "{ok}");
        }
        assert_eq!(tcp("[::1]:514").host_port(), Some(("::1", 514)));
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg = |key: &str, value: &str| {
            WriterConfig::new("syslog")
                .with_option("address", "127.0.0.1:514")
                .with_option(key, value)
        };
        let err = SyslogOptions::from_config(&cfg("facility", "local9")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("facility"), "{text}");
        assert!(text.contains("local9"), "{text}");
        let err = SyslogOptions::from_config(&cfg("protocol", "sctp")).unwrap_err();
        assert!(err.to_string().contains("protocol"), "{err}");
        let err = SyslogOptions::from_config(&cfg("app_name", "a b")).unwrap_err();
        assert!(err.to_string().contains("app_name"), "{err}");
        let err = SyslogOptions::from_config(&cfg("colour", "blue")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let ok = SyslogOptions::from_config(&cfg("facility", "local3")).unwrap();
        assert_eq!(ok.facility, Facility::Local(3));
        assert_eq!(ok.protocol, Protocol::Tcp);
        assert_eq!(ok.app_name, "crypto-feeder");
    }

    #[test]
    fn the_local_hostname_is_a_valid_field() {
        let h = local_hostname();
        assert!(h == "-" || header_field_ok(&h, HOSTNAME_MAX), "{h}");
    }
}
