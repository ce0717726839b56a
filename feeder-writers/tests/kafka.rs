//! The `kafka` writer against tansu, a Kafka-compatible broker.
//!
//! The conformance run starts its own broker (the `tansu` binary) on a free port, behind a
//! cuttable proxy that the broker advertises as its address, so that every connection of
//! the client goes through the proxy and the outage check can cut it. The layout test uses
//! the shared broker at `FEEDER_TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`). Each is
//! skipped with a note when its broker is missing, unless `CI` is set.

mod conformance_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::model::Event;
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::{KafkaOptions, KafkaWriter};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
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
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1)))
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
