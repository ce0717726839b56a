//! The librdkafka client settings of the writer, and the context its clients report to.

use std::sync::{Arc, Mutex};

use feeder_core::config::ConfigError;
use feeder_core::WriteError;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use super::config::{refused_setting, KafkaOptions};

/// What the writer's librdkafka clients report outside of requests. Their log lines go to
/// `tracing` (target `librdkafka`), and the last client-level error (a refused TLS
/// handshake, a failed authentication, a broker that went away) is kept, so that a
/// start-up check that times out can say why. Clones share the last error, so the writer
/// keeps one while librdkafka owns another.
#[derive(Clone, Debug, Default)]
pub(super) struct FeederContext {
    /// Overwritten by each error librdkafka reports; read when a start-up step fails.
    last_error: Arc<Mutex<Option<String>>>,
}

impl FeederContext {
    /// The last client-level error librdkafka reported, if any.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for FeederContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        // "All brokers are down" follows the error that brought the last one down, and says
        // less than it.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_string());
        }
    }
}

/// The resume scan's consumer assigns its partitions itself: no rebalance to hear of.
impl ConsumerContext for FeederContext {}

/// The librdkafka settings of `o`, with the secrets read from the environment through `env`
/// (a parameter so that tests need not touch the process environment). The error names the
/// option and, for a secret, the variable, never its value.
pub(super) fn client_config(
    o: &KafkaOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, (&'static str, String)> {
    let secret = |option: &'static str, var: &str| match env(var) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err((option, format!("environment variable {var} is empty"))),
        None => Err((option, format!("environment variable {var} is not set"))),
    };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", o.brokers.join(","))
        .set("compression.type", o.compression.as_str())
        .set(
            "message.timeout.ms",
            o.delivery_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "5")
        .set("client.id", "crypto-feeder")
        .set("security.protocol", o.security_protocol.as_str());
    if let (Some(sasl), true) = (&o.sasl, o.security_protocol.sasl()) {
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set(
                "sasl.password",
                secret("sasl.password_env", &sasl.password_env)?,
            );
    }
    if o.security_protocol.tls() {
        // Verification is librdkafka's default already; it is set here so that no other
        // default, now or in a later librdkafka, can turn it off.
        c.set("enable.ssl.certificate.verification", "true")
            .set("ssl.endpoint.identification.algorithm", "https");
        let ssl = o.ssl.clone().unwrap_or_default();
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        if let Some(ca) = &ssl.ca_file {
            c.set("ssl.ca.location", path(ca));
        }
        if let Some(cert) = &ssl.certificate_file {
            c.set("ssl.certificate.location", path(cert));
        }
        if let Some(key) = &ssl.key_file {
            c.set("ssl.key.location", path(key));
        }
        if let Some(var) = &ssl.key_password_env {
            c.set("ssl.key.password", secret("ssl.key_password_env", var)?);
        }
    }
    for (k, v) in &o.librdkafka_options {
        c.set(k, v);
    }
    // Last, so that nothing above can weaken them (the options check refuses such settings
    // already).
    c.set("enable.idempotence", "true").set("acks", "all");
    Ok(c)
}

/// Checks that the TLS files of `o` can be read, so that a wrong path is an error that
/// names the option rather than a failed handshake.
pub(super) fn check_files(o: &KafkaOptions) -> Result<(), WriteError> {
    let Some(ssl) = o.ssl.as_ref().filter(|_| o.security_protocol.tls()) else {
        return Ok(());
    };
    for (option, file) in [
        ("ssl.ca_file", &ssl.ca_file),
        ("ssl.certificate_file", &ssl.certificate_file),
        ("ssl.key_file", &ssl.key_file),
    ] {
        if let Some(path) = file {
            std::fs::File::open(path).map_err(|e| {
                WriteError::terminal(format!("{option}: cannot read {}", path.display()), e)
            })?;
        }
    }
    Ok(())
}

/// Creates a client of type `T` from `config`, reporting to `context`.
pub(super) fn create<T>(config: &ClientConfig, context: &FeederContext) -> Result<T, WriteError>
where
    T: rdkafka::config::FromClientConfigAndContext<FeederContext>,
{
    config
        .create_with_context(context.clone())
        .map_err(|e| match e {
            // Its text would show the value, which may be a secret.
            KafkaError::ClientConfig(..) => WriteError::Config(ConfigError::invalid(
                "librdkafka_options",
                refused_setting(&e),
            )),
            other => WriteError::terminal("cannot create the kafka client", other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::config::{SaslMechanism, SecurityProtocol, SslOptions};

    fn env(var: &str) -> Option<String> {
        match var {
            "KAFKA_PW" => Some("pw-from-env".into()),
            "KEY_PW" => Some("key-pw-from-env".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn sasl_options_map_to_librdkafka_keys() {
        for (mechanism, name) in [
            (SaslMechanism::Plain, "PLAIN"),
            (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
            (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
        ] {
            let o = KafkaOptions::new("h:1")
                .with_security_protocol(SecurityProtocol::SaslPlaintext)
                .with_sasl(mechanism, "feeder", "KAFKA_PW");
            let c = client_config(&o, &env).unwrap();
            assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
            assert_eq!(c.get("sasl.mechanism"), Some(name));
            assert_eq!(c.get("sasl.username"), Some("feeder"));
            assert_eq!(c.get("sasl.password"), Some("pw-from-env"));
            // No TLS settings on a plaintext connection.
            assert_eq!(c.get("ssl.endpoint.identification.algorithm"), None);
            // librdkafka itself takes the whole set.
            c.create_native_config().unwrap();
        }
    }

    #[test]
    fn ssl_options_map_to_librdkafka_keys_with_verification_on() {
        let ssl = SslOptions {
            ca_file: Some("/etc/kafka/ca.pem".into()),
            certificate_file: Some("/etc/kafka/client.pem".into()),
            key_file: Some("/etc/kafka/client.key".into()),
            key_password_env: Some("KEY_PW".into()),
        };
        let o = KafkaOptions::new("h:1")
            .with_security_protocol(SecurityProtocol::SaslSsl)
            .with_sasl(SaslMechanism::ScramSha512, "feeder", "KAFKA_PW")
            .with_ssl(ssl);
        let c = client_config(&o, &env).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(
            c.get("ssl.certificate.location"),
            Some("/etc/kafka/client.pem")
        );
        assert_eq!(c.get("ssl.key.location"), Some("/etc/kafka/client.key"));
        assert_eq!(c.get("ssl.key.password"), Some("key-pw-from-env"));
        assert_eq!(c.get("enable.ssl.certificate.verification"), Some("true"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        c.create_native_config().unwrap();

        // `ssl` without a section: the system's CAs, still verified.
        let o = KafkaOptions::new("h:1").with_security_protocol(SecurityProtocol::Ssl);
        let c = client_config(&o, &env).unwrap();
        assert_eq!(c.get("ssl.ca.location"), None);
        assert_eq!(c.get("enable.ssl.certificate.verification"), Some("true"));
    }

    #[test]
    fn the_guarantees_and_the_extra_options_are_set() {
        let o = KafkaOptions::new("a:1,b:2").with_librdkafka_option("linger.ms", "50");
        let c = client_config(&o, &env).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
    }

    #[test]
    fn a_missing_secret_names_the_option_and_the_variable() {
        for (var, says) in [("NOT_SET_ANYWHERE", "is not set"), ("EMPTY", "is empty")] {
            let o = KafkaOptions::new("h:1")
                .with_security_protocol(SecurityProtocol::SaslSsl)
                .with_sasl(SaslMechanism::Plain, "u", var);
            let (option, message) = client_config(&o, &env).unwrap_err();
            assert_eq!(option, "sasl.password_env");
            assert!(message.contains(var) && message.contains(says), "{message}");
        }
    }

    #[test]
    fn an_unreadable_tls_file_names_its_option() {
        let o = KafkaOptions::new("h:1")
            .with_security_protocol(SecurityProtocol::Ssl)
            .with_ssl(SslOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..SslOptions::default()
            });
        let e = check_files(&o).unwrap_err().to_string();
        assert!(e.contains("ssl.ca_file"), "{e}");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
