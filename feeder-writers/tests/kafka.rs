//! The `kafka` writer against tansu, a Kafka-compatible broker that does not create topics
//! on its own.
//!
//! The conformance run starts its own broker (the `tansu` binary) on a free port, behind a
//! cuttable proxy that the broker advertises as its address, so that every connection of
//! the client goes through the proxy and the outage check can cut it; the writer creates its
//! topics there (`create_topics`). The other tests use the shared broker at
//! `FEEDER_TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`), among them the resume tests, which
//! read back what they wrote there. Each is skipped with a note when its broker is missing,
//! unless `CI` is set.

mod conformance_support;
mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conformance_support::{env_or, unique};
use feeder_core::config::Config;
use feeder_core::feeder::WriterFactory;
use feeder_core::model::{Event, Gap, GapReason, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_writers::{KafkaOptions, KafkaWriter, KafkaWriterFactory};
use kafka_support::{chain, client, consume, shared_broker_up, topic_names, Broker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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

/// A trade of `symbol` on exchange `resume`, id `id`, `id` milliseconds into 2024-03-01.
fn trade(symbol: &str, id: u64) -> Event {
    let at = Timestamp::from_unix_nanos(1_709_251_200_000_000_000 + id as i64 * 1_000_000, 9);
    Event::Trade(Trade {
        exchange: Arc::from("resume"),
        symbol: Symbol::parse(symbol).unwrap(),
        trade_id: TradeId::from_u64(id),
        price: "100.5".parse().unwrap(),
        amount: "0.25".parse().unwrap(),
        side: Side::Sell,
        timestamp: at,
        received_at: at,
    })
}

fn gap(symbol: &str, after: u64) -> Event {
    let Event::Trade(t) = trade(symbol, after) else {
        unreachable!()
    };
    Event::Gap(Gap {
        exchange: t.exchange,
        symbol: t.symbol,
        after_trade_id: t.trade_id,
        before_trade_id: None,
        from: t.timestamp,
        to: None,
        reason: GapReason::NoBackfill,
    })
}

async fn point(w: &mut KafkaWriter, symbol: &str) -> Option<String> {
    w.resume_point("resume", &Symbol::parse(symbol).unwrap())
        .await
        .unwrap()
        .map(|c| c.trade_id.as_str().to_string())
}

/// Options of a writer on `trades`; the first writer creates the topics with `partitions`.
fn resume_options(brokers: &str, trades: &str, candles: &str, partitions: i32) -> KafkaOptions {
    KafkaOptions::new(brokers)
        .with_topics(trades, candles)
        .with_connect_timeout(Duration::from_secs(10))
        .with_create_topics(partitions, 1)
}

/// More than one chunk (10 000 records) of stream A after stream B's last trade.
const A_TRADES: u64 = 12_500;

#[tokio::test]
async fn a_fresh_writer_resumes_each_stream_from_its_newest_trade_on_the_topic() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !shared_broker_up("Kafka", &brokers).await {
        return;
    }
    let (trades, candles) = (unique("resume-trades"), unique("resume-candles"));
    // One partition: both streams share it, so B's last trade lies behind A's chunks.
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 1))
        .await
        .unwrap();
    // B's newest trade (40) is not its last record: an older one and a gap follow it.
    let b: Vec<Event> = (1..=40)
        .map(|id| trade("ETH-USDT", id))
        .chain([trade("ETH-USDT", 39), gap("ETH-USDT", 40)])
        .collect();
    w.write(&b).await.unwrap();
    let a: Vec<Event> = (1..=A_TRADES).map(|id| trade("BTC-USD", id)).collect();
    for batch in a.chunks(2_500) {
        w.write(batch).await.unwrap();
    }
    // A backfilled trade of A after its newest, and a gap.
    w.write(&[trade("BTC-USD", 17), gap("BTC-USD", A_TRADES)])
        .await
        .unwrap();
    w.close().await.unwrap();
    drop(w);

    let started = Instant::now();
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 1))
        .await
        .unwrap();
    assert_eq!(point(&mut w, "BTC-USD").await, Some(A_TRADES.to_string()));
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("40"));
    assert_eq!(point(&mut w, "SOL-USD").await, None);
    eprintln!(
        "three resume points over {} records in {:?}",
        A_TRADES + 44,
        started.elapsed()
    );
    // Asked in the other order, by a writer that learnt nothing yet.
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 1))
        .await
        .unwrap();
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("40"));
    assert_eq!(point(&mut w, "BTC-USD").await, Some(A_TRADES.to_string()));

    // B lies beyond the bound: taken as new. A is within it.
    let mut w = KafkaWriter::connect(
        resume_options(&brokers, &trades, &candles, 1).with_resume_scan_records(1_000),
    )
    .await
    .unwrap();
    assert_eq!(point(&mut w, "ETH-USDT").await, None);
    assert_eq!(point(&mut w, "BTC-USD").await, Some(A_TRADES.to_string()));
}

#[tokio::test]
async fn resume_points_span_partitions_and_stop_at_an_unreadable_record() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !shared_broker_up("Kafka", &brokers).await {
        return;
    }
    let (trades, candles) = (unique("resume-parts"), unique("resume-candles"));
    let symbols = ["BTC-USD", "ETH-USDT", "SOL-USD", "XRP-USD", "ADA-USD"];
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 3))
        .await
        .unwrap();
    // The empty topic knows no stream.
    assert_eq!(point(&mut w, "BTC-USD").await, None);
    let events: Vec<Event> = (0..symbols.len() as u64 * 20)
        .map(|i| trade(symbols[(i % 5) as usize], 1_000 + i))
        .collect();
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    drop(w);
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 3))
        .await
        .unwrap();
    for (k, s) in symbols.iter().enumerate() {
        assert_eq!(
            point(&mut w, s).await,
            Some((1_000 + 95 + k as u64).to_string()),
            "{s}"
        );
    }
    assert_eq!(point(&mut w, "DOT-USD").await, None);

    // A record of a stream that is not an event: where it left off cannot be told.
    let producer: BaseProducer = client(&brokers, &[]).create().unwrap();
    producer
        .send(
            BaseRecord::to(&trades)
                .key("resume:BTC-USD")
                .payload("{\"type\":\"trade\",\"price\":"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
        .await
        .unwrap();
    flushed.unwrap();
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles, 3))
        .await
        .unwrap();
    let err = w
        .resume_point("resume", &Symbol::parse("BTC-USD").unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(
        chain.contains(&trades) && chain.contains("offset"),
        "{chain}"
    );
    // The other streams are not concerned.
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("1096"));
}
