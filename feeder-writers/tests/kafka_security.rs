//! The `kafka` writer over TLS and with SASL, against tansu.
//!
//! TLS: `.ci/services.d/kafka-tls.sh` runs stunnel on 127.0.0.1:9094 with a certificate of a
//! test CA, in front of a second tansu broker (127.0.0.1:9095) that advertises 127.0.0.1:9094,
//! so that a client stays on TLS after it reads the brokers' addresses from the metadata.
//! The CA is read from `FEEDER_TEST_KAFKA_TLS_DIR` (default
//! `/tmp/crypto-feeder-services/kafka-tls`), the address from `FEEDER_TEST_KAFKA_TLS_BROKERS`
//! (default `127.0.0.1:9094`).
//!
//! SASL: each test starts its own tansu broker with `--authentication`. That broker (0.6, in
//! memory) offers SCRAM-SHA-256 and SCRAM-SHA-512 but keeps no SCRAM credentials in memory,
//! and does not offer PLAIN, so no login can succeed there: the tests check what it can
//! show (a client that does not log in is shut out; the SCRAM handshake runs, and a refused
//! login stops the writer at start with the reason).
//!
//! Each test is skipped with a note when its broker is missing, unless `CI` is set.

mod conformance_support;
mod kafka_support;

use std::path::PathBuf;
use std::time::Duration;

use conformance_support::{env_or, missing, unique};
use feeder_core::model::Event;
use feeder_core::writer::Writer;
use feeder_writers::kafka::{SaslMechanism, SecurityProtocol, SslOptions};
use feeder_writers::{KafkaOptions, KafkaWriter};
use kafka_support::{chain, client, consume, shared_broker_up, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The TLS broker's address and the directory of the test CA, or `None` (after the note)
/// when they are not there.
async fn tls_broker() -> Option<(String, PathBuf)> {
    let dir = PathBuf::from(env_or(
        "FEEDER_TEST_KAFKA_TLS_DIR",
        "/tmp/crypto-feeder-services/kafka-tls",
    ));
    if !dir.join("ca.pem").is_file() || !dir.join("other-ca.pem").is_file() {
        missing(
            "Kafka over TLS",
            &format!("there is no test CA in {}", dir.display()),
        );
        return None;
    }
    let brokers = env_or("FEEDER_TEST_KAFKA_TLS_BROKERS", "127.0.0.1:9094");
    shared_broker_up("Kafka over TLS", &brokers)
        .await
        .then_some((brokers, dir))
}

fn tls_options(brokers: &str, ca_file: Option<PathBuf>) -> KafkaOptions {
    KafkaOptions::new(brokers)
        .with_security_protocol(SecurityProtocol::Ssl)
        .with_ssl(SslOptions {
            ca_file,
            ..SslOptions::default()
        })
}

#[tokio::test]
async fn events_go_over_tls_and_come_back() {
    let Some((brokers, dir)) = tls_broker().await else {
        return;
    };
    let ca = dir.join("ca.pem");
    let (trades, candles) = (unique("tls-trades"), unique("tls-candles"));
    let options = tls_options(&brokers, Some(ca.clone()))
        .with_topics(&trades, &candles)
        .with_create_topics(2, 1);
    let mut w = KafkaWriter::connect(options).await.unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 30);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();

    let ca = ca.to_string_lossy().into_owned();
    let tls = move |brokers: &str| {
        client(
            brokers,
            &[("security.protocol", "ssl"), ("ssl.ca.location", &ca)],
        )
    };
    let topics = vec![trades.clone(), candles];
    let (b, reader) = (brokers.clone(), tls.clone());
    let got = tokio::task::spawn_blocking(move || consume(reader(&b), &topics))
        .await
        .unwrap();
    assert_eq!(got.len(), events.len());
    for (topic, _, event) in &got {
        assert!(events.contains(event));
        assert_eq!(topic == &trades, matches!(event, Event::Trade(_)));
    }

    // Every broker the metadata names is the TLS address: no connection of a client leaves
    // TLS after bootstrapping.
    let b = brokers.clone();
    let advertised = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = tls(&b).create().unwrap();
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        md.brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host(), b.port()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(!advertised.is_empty());
    assert!(advertised.iter().all(|a| *a == brokers), "{advertised:?}");

    // The resume point is read back over TLS too.
    let mut again = KafkaWriter::connect(
        tls_options(&brokers, Some(dir.join("ca.pem"))).with_topics(&trades, &trades),
    )
    .await
    .unwrap();
    let symbol = feeder_core::model::Symbol::parse("BTC-USD").unwrap();
    assert!(again
        .resume_point("bitstamp", &symbol)
        .await
        .unwrap()
        .is_some());
    again.close().await.unwrap();

    // And the TLS address does not speak plaintext Kafka.
    let plain = KafkaOptions::new(&brokers)
        .with_topics(&trades, &trades)
        .with_connect_timeout(Duration::from_secs(3));
    assert!(KafkaWriter::connect(plain).await.is_err());
}

#[tokio::test]
async fn a_broker_certificate_of_an_untrusted_ca_is_refused() {
    let Some((brokers, dir)) = tls_broker().await else {
        return;
    };
    // An unrelated CA, and the system's CAs (which do not hold the test CA).
    for ca_file in [Some(dir.join("other-ca.pem")), None] {
        let options = tls_options(&brokers, ca_file.clone())
            .with_create_topics(1, 1)
            .with_connect_timeout(Duration::from_secs(5));
        let e = KafkaWriter::connect(options)
            .await
            .expect_err("connected to a broker whose certificate it cannot verify");
        assert!(!e.is_retriable(), "{e:?}");
        let text = chain(&e);
        assert!(text.contains(&brokers), "{ca_file:?}: {text}");
        assert!(
            text.to_lowercase().contains("certificate verify failed"),
            "{ca_file:?}: {text}"
        );
    }
}

fn sasl_options(
    broker: &Broker,
    mechanism: SaslMechanism,
    username: &str,
    password_env: &str,
) -> KafkaOptions {
    KafkaOptions::new(&broker.brokers())
        .with_security_protocol(SecurityProtocol::SaslPlaintext)
        .with_sasl(mechanism, username, password_env)
        .with_create_topics(1, 1)
        .with_connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_broker_that_requires_sasl_shuts_out_a_writer_that_does_not_log_in() {
    let Some(broker) = Broker::start(&["--authentication"]).await else {
        return;
    };
    let anonymous = KafkaOptions::new(&broker.brokers())
        .with_create_topics(1, 1)
        .with_connect_timeout(Duration::from_secs(3));
    let e = KafkaWriter::connect(anonymous)
        .await
        .expect_err("started without logging in");
    assert!(!e.is_retriable(), "{e:?}");
}

#[tokio::test]
async fn a_refused_sasl_login_stops_the_writer_at_start_and_says_why() {
    let Some(broker) = Broker::start(&["--authentication"]).await else {
        return;
    };
    let password_env = "FEEDER_TEST_KAFKA_SASL_PASSWORD";
    std::env::set_var(password_env, "sasl-secret");
    // SCRAM: the handshake runs and the broker, which does not know the user, refuses the
    // login. PLAIN: this broker does not offer it.
    for (mechanism, says) in [
        (SaslMechanism::ScramSha256, "SCRAM authentication failed"),
        (SaslMechanism::ScramSha512, "SCRAM authentication failed"),
        (SaslMechanism::Plain, "PLAIN"),
    ] {
        let options = sasl_options(&broker, mechanism, "nobody", password_env);
        let e = tokio::time::timeout(Duration::from_secs(60), KafkaWriter::connect(options))
            .await
            .expect("neither started nor refused within 60s")
            .expect_err("a login the broker cannot check was accepted");
        assert!(!e.is_retriable(), "{e:?}");
        let text = chain(&e);
        assert!(text.contains(says), "{mechanism:?}: {text}");
        assert!(!text.contains("sasl-secret"), "{text}");
    }
}
