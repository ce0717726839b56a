//! The `kafka` writer against tansu, a Kafka-compatible broker.
//!
//! The conformance run starts its own broker (the `tansu` binary) on a free port, behind a
//! cuttable proxy that the broker advertises as its address, so that every connection of
//! the client goes through the proxy and the outage check can cut it. The layout test uses
//! the shared broker at `FEEDER_TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`). Each is
//! skipped with a note when its broker is missing, unless `CI` is set. So are the resume
//! tests, which read back what they wrote on the shared broker.

mod conformance_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, resolve, unique};
use std::sync::Arc;

use feeder_core::model::{Event, Gap, GapReason, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::{KafkaOptions, KafkaWriter};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn tansu_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        p.is_file().then_some(p)
    })
}

/// A tansu broker of this test, killed when dropped, reached through `proxy`.
struct Broker {
    proxy: TcpProxy,
    _child: tokio::process::Child,
}

impl Broker {
    async fn start() -> Option<Broker> {
        let Some(bin) = tansu_binary() else {
            missing(
                "the tansu broker",
                "no tansu binary on PATH or in ~/.cargo/bin",
            );
            return None;
        };
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = TcpProxy::start(upstream).await.unwrap();
        let child = tokio::process::Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{}", proxy.addr()),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reachable(upstream).await {
            assert!(Instant::now() < deadline, "tansu did not listen within 30s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Broker {
            proxy,
            _child: child,
        })
    }
}

async fn create_topics(brokers: &str, topics: &[&str]) {
    create_topics_with(brokers, topics, 2).await;
}

async fn create_topics_with(brokers: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Every message of `topics` from the beginning, as (topic, key, event). Called once every
/// write was acknowledged, so everything is on the broker: reading stops when a poll finds
/// nothing more for a while. (tansu's high watermarks count record batches rather than
/// records, so they cannot say where the end is.)
fn consume(brokers: &str, topics: &[String]) -> Vec<(String, String, Event)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout).unwrap();
        for p in md.topics()[0].partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(1_500)) else {
            break;
        };
        let m = m.unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let event: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
        out.push((m.topic().to_string(), key, event));
    }
    out
}

struct KafkaTarget {
    broker: Broker,
    trades: String,
    candles: String,
}

impl KafkaTarget {
    fn brokers(&self) -> String {
        self.broker.proxy.addr().to_string()
    }
}

#[async_trait]
impl ConformanceTarget for KafkaTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let options = KafkaOptions::new(&self.brokers())
            .with_topics(&self.trades, &self.candles)
            .with_delivery_timeout(Duration::from_secs(3))
            .with_connect_timeout(Duration::from_secs(10))
            .with_property("reconnect.backoff.max.ms", "500");
        Ok(Box::new(KafkaWriter::connect(options).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let brokers = self.brokers();
        let topics = vec![self.trades.clone(), self.candles.clone()];
        let (trades, candles) = (self.trades.clone(), self.candles.clone());
        let messages = tokio::task::spawn_blocking(move || consume(&brokers, &topics)).await?;
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
    let Some(broker) = Broker::start().await else {
        return;
    };
    let target = KafkaTarget {
        broker,
        trades: unique("trades"),
        candles: unique("candles"),
    };
    create_topics(&target.brokers(), &[&target.trades, &target.candles]).await;
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
    let first = brokers.split(',').next().unwrap_or_default().to_string();
    match resolve(&first).await {
        Some(a) if reachable(a).await => {}
        _ => {
            missing("Kafka", &format!("nothing answers at {first}"));
            return;
        }
    }
    let (trades, candles) = (unique("trades"), unique("candles"));
    create_topics(&brokers, &[&trades, &candles]).await;
    let options = KafkaOptions::new(&brokers).with_topics(&trades, &candles);
    let mut w = KafkaWriter::connect(options).await.unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 20);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    let topics = vec![trades.clone(), candles.clone()];
    let got = tokio::task::spawn_blocking(move || consume(&brokers, &topics))
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

/// The shared broker's address, or `None` (after the skip note) when nothing answers there.
async fn shared_broker() -> Option<String> {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    let first = brokers.split(',').next().unwrap_or_default().to_string();
    match resolve(&first).await {
        Some(a) if reachable(a).await => Some(brokers),
        _ => {
            missing("Kafka", &format!("nothing answers at {first}"));
            None
        }
    }
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

fn resume_options(brokers: &str, trades: &str, candles: &str) -> KafkaOptions {
    KafkaOptions::new(brokers)
        .with_topics(trades, candles)
        .with_connect_timeout(Duration::from_secs(10))
}

/// More than one chunk (10 000 records) of stream A after stream B's last trade.
const A_TRADES: u64 = 12_500;

#[tokio::test]
async fn a_fresh_writer_resumes_each_stream_from_its_newest_trade_on_the_topic() {
    let Some(brokers) = shared_broker().await else {
        return;
    };
    let (trades, candles) = (unique("resume-trades"), unique("resume-candles"));
    // One partition: both streams share it, so B's last trade lies behind A's chunks.
    create_topics_with(&brokers, &[&trades, &candles], 1).await;
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
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
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
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
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
        .await
        .unwrap();
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("40"));
    assert_eq!(point(&mut w, "BTC-USD").await, Some(A_TRADES.to_string()));

    // B lies beyond the bound: taken as new. A is within it.
    let mut w = KafkaWriter::connect(
        resume_options(&brokers, &trades, &candles).with_resume_scan_records(1_000),
    )
    .await
    .unwrap();
    assert_eq!(point(&mut w, "ETH-USDT").await, None);
    assert_eq!(point(&mut w, "BTC-USD").await, Some(A_TRADES.to_string()));
}

#[tokio::test]
async fn resume_points_span_partitions_and_stop_at_an_unreadable_record() {
    let Some(brokers) = shared_broker().await else {
        return;
    };
    let (trades, candles) = (unique("resume-parts"), unique("resume-candles"));
    create_topics_with(&brokers, &[&trades, &candles], 3).await;
    let symbols = ["BTC-USD", "ETH-USDT", "SOL-USD", "XRP-USD", "ADA-USD"];
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
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
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
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

    // A topic that does not exist holds nothing.
    let mut missing_topic =
        KafkaWriter::connect(resume_options(&brokers, &unique("no-such-topic"), &candles))
            .await
            .unwrap();
    assert_eq!(point(&mut missing_topic, "BTC-USD").await, None);

    // A record of a stream that is not an event: where it left off cannot be told.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
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
    let mut w = KafkaWriter::connect(resume_options(&brokers, &trades, &candles))
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
