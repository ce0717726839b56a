//! The `kafka` writer against tansu, a Kafka-compatible broker that does not create topics
//! on its own.
//!
//! The conformance run starts its own broker (the `tansu` binary) on a free port, behind a
//! cuttable proxy that the broker advertises as its address, so that every connection of
//! the client goes through the proxy and the outage check can cut it; the writer creates its
//! topics there (`create_topics`). The other tests use the shared broker at
//! `FEEDER_TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`). Each is skipped with a note when
//! its broker is missing, unless `CI` is set.

mod conformance_support;
mod kafka_support;

use std::time::Duration;

use async_trait::async_trait;
use conformance_support::{env_or, unique};
use feeder_core::config::Config;
use feeder_core::feeder::WriterFactory;
use feeder_core::model::Event;
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_writers::{KafkaOptions, KafkaWriter, KafkaWriterFactory};
use kafka_support::{chain, client, consume, shared_broker_up, topic_names, Broker};

struct KafkaTarget {
    broker: Broker,
    trades: String,
    candles: String,
}

impl KafkaTarget {
    fn brokers(&self) -> String {
        self.broker.brokers()
    }
}

#[async_trait]
impl ConformanceTarget for KafkaTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let options = KafkaOptions::new(&self.brokers())
            .with_topics(&self.trades, &self.candles)
            .with_delivery_timeout(Duration::from_secs(3))
            .with_connect_timeout(Duration::from_secs(10))
            .with_create_topics(2, 1)
            .with_librdkafka_option("reconnect.backoff.max.ms", "500");
        Ok(Box::new(KafkaWriter::connect(options).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let brokers = self.brokers();
        let topics = vec![self.trades.clone(), self.candles.clone()];
        let (trades, candles) = (self.trades.clone(), self.candles.clone());
        let messages =
            tokio::task::spawn_blocking(move || consume(client(&brokers, &[]), &topics)).await?;
        let mut out = Vec::new();
        for (topic, key, event) in messages {
            assert_eq!(key, format!("{}:{}", event.exchange(), event.symbol()));
            let want = match event {
                Event::Trade(_) | Event::Gap(_) => &trades,
                Event::Candle(_) => &candles,
            };
            assert_eq!(&topic, want);
            out.push(event);
        }
        Ok(out)
    }

    fn keyed(&self) -> bool {
        false
    }

    async fn outage(&self) -> bool {
        self.broker.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Hold the outage until the writer has tried to reconnect and been refused
        // (bounded), so that the catch-up after it is a real reconnect.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.broker.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.broker.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let options = KafkaOptions::new(&format!("127.0.0.1:{port}"))
            .with_connect_timeout(Duration::from_secs(2));
        Some(
            KafkaWriter::connect(options)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

#[tokio::test]
async fn the_kafka_writer_conforms_and_rides_out_an_outage() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(broker) = Broker::start(&[]).await else {
        return;
    };
    // The topics do not exist: the first writer creates them.
    let target = KafkaTarget {
        broker,
        trades: unique("trades"),
        candles: unique("candles"),
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.broker.proxy.refused() > 0);
}

#[tokio::test]
async fn messages_on_the_shared_broker_are_keyed_json_lines() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !shared_broker_up("Kafka", &brokers).await {
        return;
    }
    let (trades, candles) = (unique("trades"), unique("candles"));
    let options = KafkaOptions::new(&brokers)
        .with_topics(&trades, &candles)
        .with_create_topics(2, 1);
    let mut w = KafkaWriter::connect(options).await.unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 20);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    let topics = vec![trades.clone(), candles.clone()];
    let got = tokio::task::spawn_blocking(move || consume(client(&brokers, &[]), &topics))
        .await
        .unwrap();
    assert_eq!(got.len(), events.len());
    for (topic, key, event) in &got {
        assert!(
            key == "bitstamp:BTC-USD" || key == "bitstamp:ETH-USDT",
            "{key}"
        );
        assert_eq!(topic == &trades, matches!(event, Event::Trade(_)));
        assert!(events.contains(event));
    }
}

/// A `kafka` writer entry of a config file, built the way the feeder builds it.
async fn build_from_yaml(options: &str) -> Result<Box<dyn Writer>, WriteError> {
    let text = format!(
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: kafka\n{options}"
    );
    let config = Config::from_yaml_str_with_env(&text, &|_| None).unwrap();
    KafkaWriterFactory.build(&config.writers[0]).await
}

#[tokio::test]
async fn a_missing_topic_without_create_topics_stops_the_writer_naming_topic_and_option() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !shared_broker_up("Kafka", &brokers).await {
        return;
    }
    let (trades, candles) = (unique("absent-trades"), unique("absent-candles"));
    let options = format!(
        "    brokers: {brokers}\n    topic: {trades}\n    candles_topic: {candles}\n    connect_timeout: 5s\n"
    );
    // Bounded, so that a hang fails the test rather than stalling it.
    let started = tokio::time::timeout(Duration::from_secs(60), build_from_yaml(&options))
        .await
        .expect("the writer neither started nor refused within 60s");
    let Err(e) = started else {
        panic!("the writer started on missing topics");
    };
    assert!(!e.is_retriable(), "{e:?}");
    let text = chain(&e);
    assert!(text.contains(&trades), "{text}");
    assert!(text.contains("create_topics"), "{text}");
    // The refusal created nothing.
    let listed = tokio::task::spawn_blocking(move || topic_names(&client(&brokers, &[])))
        .await
        .unwrap();
    assert!(!listed.contains(&trades) && !listed.contains(&candles));
}

#[tokio::test]
async fn create_topics_makes_the_missing_topics_with_their_partitions() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !shared_broker_up("Kafka", &brokers).await {
        return;
    }
    let (trades, candles) = (unique("made-trades"), unique("made-candles"));
    let options = format!(
        "    brokers: {brokers}\n    topic: {trades}\n    candles_topic: {candles}\n    create_topics: {{ partitions: 3, replication_factor: 1 }}\n"
    );
    let mut w = build_from_yaml(&options).await.unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 10);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    // A second writer finds them there and starts without creating anything.
    let mut again = build_from_yaml(&options).await.unwrap();
    again.close().await.unwrap();
    let b = brokers.clone();
    let (t, c) = (trades.clone(), candles.clone());
    let partitions = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = client(&b, &[]).create().unwrap();
        [t, c].map(|topic| {
            let md = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .unwrap();
            md.topics()[0].partitions().len()
        })
    })
    .await
    .unwrap();
    assert_eq!(partitions, [3, 3]);
    let topics = vec![trades, candles];
    let got = tokio::task::spawn_blocking(move || consume(client(&brokers, &[]), &topics))
        .await
        .unwrap();
    assert_eq!(got.len(), events.len());
}
