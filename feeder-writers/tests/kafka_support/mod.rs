//! What the Kafka tests share: a private tansu broker (a Kafka-compatible broker) started
//! per test, the shared brokers' addresses, and reading topics back.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use feeder_core::model::Event;
use feeder_testkit::proxy::TcpProxy;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::conformance_support::{missing, reachable, unique};

/// The tansu binary, on PATH or in ~/.cargo/bin.
pub fn tansu_binary() -> Option<PathBuf> {
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

/// A tansu broker of one test, in memory, killed when dropped, reached through `proxy`
/// (which it advertises as its address, so that every connection of a client goes through
/// the proxy and a test can cut it).
pub struct Broker {
    pub proxy: TcpProxy,
    _child: tokio::process::Child,
}

impl Broker {
    /// Starts a broker with `extra` arguments (such as `--authentication`); `None` (after
    /// the skip note) when there is no tansu binary and `CI` is unset.
    pub async fn start(extra: &[&str]) -> Option<Broker> {
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
            .args(extra)
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

    /// The address clients bootstrap at.
    pub fn brokers(&self) -> String {
        self.proxy.addr().to_string()
    }
}

/// Whether the first of `brokers` answers; otherwise the skip-or-fail note for `what`.
pub async fn shared_broker_up(what: &str, brokers: &str) -> bool {
    let first = brokers.split(',').next().unwrap_or_default().to_string();
    match crate::conformance_support::resolve(&first).await {
        Some(a) if reachable(a).await => true,
        _ => {
            missing(what, &format!("nothing answers at {first}"));
            false
        }
    }
}

/// A client config for `brokers` with `settings` (security and the like) added.
pub fn client(brokers: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in settings {
        c.set(*k, *v);
    }
    c
}

/// Every message of `topics` from the beginning, as (topic, key, event), read with
/// `config`. Called once every write was acknowledged, so everything is on the broker:
/// reading stops when a poll finds nothing more for a while. (tansu's high watermarks count
/// record batches rather than records, so they cannot say where the end is.)
pub fn consume(mut config: ClientConfig, topics: &[String]) -> Vec<(String, String, Event)> {
    let consumer: BaseConsumer = config
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

/// The topics a broker lists, read with `config`.
pub fn topic_names(config: &ClientConfig) -> Vec<String> {
    let consumer: BaseConsumer = config.create().unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

/// The whole cause chain of an error, one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
