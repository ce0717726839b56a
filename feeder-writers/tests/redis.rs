//! The `redis` writer against a real Redis (`FEEDER_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), through a cuttable proxy for the outage check. Each test
//! writes under a key prefix of its own and deletes its keys at the end. Skipped with a
//! note when the server is not reachable, unless `CI` is set.

mod conformance_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::model::{parse_decimal, Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::testing::{event_key, run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::{RedisOptions, RedisWriter};
use redis::aio::MultiplexedConnection;

/// The server's URL, or `None` (after the skip note) when it is not reachable.
async fn server() -> Option<url::Url> {
    let raw = env_or("FEEDER_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let url = url::Url::parse(&raw).expect("FEEDER_TEST_REDIS_URL must be a redis:// URL");
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    );
    match resolve(&addr).await {
        Some(a) if reachable(a).await => Some(url),
        _ => {
            missing("Redis", &format!("nothing answers at {addr}"));
            None
        }
    }
}

fn via(url: &url::Url, addr: std::net::SocketAddr) -> String {
    let mut u = url.clone();
    u.set_host(Some(&addr.ip().to_string())).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

async fn connection(url: &url::Url) -> MultiplexedConnection {
    redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Options writing under `prefix`, with short timeouts.
fn options(url: &str, prefix: &str) -> RedisOptions {
    RedisOptions::new(url)
        .with_keys(
            format!("{prefix}:trades:{{exchange}}:{{symbol}}"),
            format!("{prefix}:candles:{{exchange}}:{{symbol}}:{{interval}}"),
            format!("{prefix}:gaps:{{exchange}}:{{symbol}}"),
        )
        .with_timeouts(Duration::from_secs(3), Duration::from_secs(3))
}

/// Every key under `prefix`.
async fn keys(c: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    // Bounded: a prefix of one test holds a few dozen keys.
    for _ in 0..10_000 {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(c)
            .await
            .unwrap();
        out.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// An entry as XRANGE gives it: its id and its field-value pairs.
type Entry = (String, Vec<(String, Vec<u8>)>);

/// The events of one stream, oldest entry first, with XRANGE.
async fn entries(c: &mut MultiplexedConnection, key: &str) -> Vec<Event> {
    let rows: Vec<Entry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(c)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(_, fields)| {
            assert_eq!(fields.len(), 1, "one field per entry");
            assert_eq!(fields[0].0, "event");
            serde_json::from_slice(&fields[0].1).expect("a JSON event")
        })
        .collect()
}

/// Every event under `prefix`, stream by stream.
async fn read_all(url: &url::Url, prefix: &str) -> Vec<Event> {
    let mut c = connection(url).await;
    let mut out = Vec::new();
    for key in keys(&mut c, prefix).await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if kind == "stream" {
            out.extend(entries(&mut c, &key).await);
        }
    }
    out
}

async fn delete_all(url: &url::Url, prefix: &str) {
    let mut c = connection(url).await;
    let all = keys(&mut c, prefix).await;
    if !all.is_empty() {
        let _: u64 = redis::cmd("DEL")
            .arg(&all)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

struct RedisTarget {
    url: url::Url,
    proxy: TcpProxy,
    prefix: String,
}

#[async_trait]
impl ConformanceTarget for RedisTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let o = options(&via(&self.url, self.proxy.addr()), &self.prefix);
        Ok(Box::new(RedisWriter::connect(o).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        Ok(read_all(&self.url, &self.prefix).await)
    }

    fn keyed(&self) -> bool {
        true
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Hold the outage until the writer has tried to reconnect and been refused
        // (bounded), so that the catch-up after it is a real reconnect.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let o = options(&format!("redis://127.0.0.1:{port}"), &self.prefix);
        Some(
            RedisWriter::connect(o)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

#[tokio::test]
async fn the_redis_writer_conforms_and_rides_out_an_outage() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(url) = server().await else {
        return;
    };
    let upstream = resolve(&format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    ))
    .await
    .unwrap();
    let target = RedisTarget {
        proxy: TcpProxy::start(upstream).await.unwrap(),
        prefix: unique("cf-redis"),
        url,
    };
    let result = run_conformance(&target).await;
    delete_all(&target.url, &target.prefix).await;
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.proxy.refused() > 0);
}

fn trade(id: u64, secs: i64) -> Event {
    Event::Trade(Trade {
        exchange: Arc::from("bitstamp"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: parse_decimal("43210.12").unwrap(),
        amount: parse_decimal("0.05").unwrap(),
        side: Side::Buy,
        timestamp: Timestamp::from_unix_secs(secs),
        received_at: Timestamp::from_unix_secs(secs + 1),
    })
}

#[tokio::test]
async fn a_replayed_batch_is_not_stored_twice_even_by_a_new_connection() {
    let Some(url) = server().await else {
        return;
    };
    let prefix = unique("cf-redis-replay");
    let o = options(url.as_str(), &prefix);
    let events = feeder_core::testing::sample_events("bitstamp", 60);
    let mut first = RedisWriter::connect(o.clone()).await.unwrap();
    first.write(&events).await.unwrap();
    first.close().await.unwrap();
    let mut second = RedisWriter::connect(o).await.unwrap();
    second.write(&events).await.unwrap();
    second.write(&events[..30]).await.unwrap();
    second.close().await.unwrap();

    let got = read_all(&url, &prefix).await;
    let mut c = connection(&url).await;
    let streams = keys(&mut c, &prefix).await;
    delete_all(&url, &prefix).await;
    assert_eq!(got.len(), events.len(), "each event stored once");
    let mut want: Vec<String> = events.iter().map(event_key).collect();
    let mut have: Vec<String> = got.iter().map(event_key).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    let trades = format!("{prefix}:trades:bitstamp:BTC-USD");
    assert!(streams.contains(&trades), "{streams:?}");
}

#[tokio::test]
async fn an_older_trade_arriving_after_a_newer_one_is_stored() {
    let Some(url) = server().await else {
        return;
    };
    let prefix = unique("cf-redis-late");
    let mut w = RedisWriter::connect(options(url.as_str(), &prefix))
        .await
        .unwrap();
    let (newer, older) = (trade(1_002, 1_704_153_660), trade(1_001, 1_704_153_600));
    w.write(std::slice::from_ref(&newer)).await.unwrap();
    w.write(std::slice::from_ref(&older)).await.unwrap();
    // And the late one again, as a retry would: still once.
    w.write(std::slice::from_ref(&older)).await.unwrap();
    w.close().await.unwrap();
    let mut c = connection(&url).await;
    let got = entries(&mut c, &format!("{prefix}:trades:bitstamp:BTC-USD")).await;
    delete_all(&url, &prefix).await;
    assert_eq!(got, vec![newer, older], "both, in arrival order");
}

#[tokio::test]
async fn an_id_past_the_dedup_window_is_stored_again() {
    // The documented limit: a stream remembers its last `dedup_window` ids only.
    let Some(url) = server().await else {
        return;
    };
    let prefix = unique("cf-redis-window");
    let mut w = RedisWriter::connect(options(url.as_str(), &prefix).with_limits(0, 5))
        .await
        .unwrap();
    let trades: Vec<Event> = (0..10)
        .map(|i| trade(i, 1_704_153_600 + i as i64))
        .collect();
    w.write(&trades).await.unwrap();
    w.write(&trades[9..]).await.unwrap(); // remembered: dropped
    w.write(&trades[..1]).await.unwrap(); // forgotten: stored again
    w.close().await.unwrap();
    let mut c = connection(&url).await;
    let key = format!("{prefix}:trades:bitstamp:BTC-USD");
    let got = entries(&mut c, &key).await;
    let remembered: u64 = redis::cmd("HLEN")
        .arg(format!("{key}:dedup"))
        .query_async(&mut c)
        .await
        .unwrap();
    delete_all(&url, &prefix).await;
    assert_eq!(got.len(), 11);
    assert_eq!(got[10], trades[0]);
    assert_eq!(remembered, 5);
}

#[tokio::test]
async fn a_key_in_the_way_fails_the_whole_batch_for_good() {
    let Some(url) = server().await else {
        return;
    };
    let prefix = unique("cf-redis-wrongtype");
    let mut c = connection(&url).await;
    let blocked = format!("{prefix}:trades:bitstamp:ETH-USDT");
    let _: () = redis::cmd("SET")
        .arg(&blocked)
        .arg("not a stream")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut w = RedisWriter::connect(options(url.as_str(), &prefix))
        .await
        .unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 20);
    let err = w
        .write(&events)
        .await
        .expect_err("a string where a stream goes");
    let message = ErrorChain(&err).to_string();
    let streams = keys(&mut c, &prefix).await;
    delete_all(&url, &prefix).await;
    assert!(!err.is_retriable(), "{message}");
    assert!(message.contains(&blocked), "{message}");
    assert_eq!(streams, vec![blocked], "nothing of the batch was stored");
}

#[test]
fn the_registry_knows_redis_and_its_options_come_from_yaml() {
    let mut registry = feeder_core::feeder::Registry::new();
    feeder_writers::register(&mut registry);
    let yaml = |writer: &str| {
        feeder_core::config::Config::from_yaml_str(&format!(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: redis\n{writer}"
        ))
        .unwrap()
    };
    let config = yaml("    url: rediss://cache.internal:6380/2\n    maxlen: 5000\n");
    let w = &config.writers[0];
    registry.writer("redis").unwrap().validate(w).unwrap();
    let o = RedisOptions::from_config(w).unwrap();
    assert_eq!((o.maxlen, o.dedup_window), (5000, 100_000));
    assert_eq!(o.key, "trades:{exchange}:{symbol}");
    for (bad, key) in [
        ("    max_len: 10\n", "max_len"),
        ("    key: t:{exchange}:{sym}\n", "key"),
        ("    dedup_window: 0\n", "dedup_window"),
    ] {
        let err = registry
            .writer("redis")
            .unwrap()
            .validate(&yaml(bad).writers[0])
            .unwrap_err();
        assert!(err.to_string().contains(key), "{bad}: {err}");
    }
}

/// `name` on the PATH or in /usr/bin and /usr/sbin.
fn binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(std::path::PathBuf::from))
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn a_password_comes_from_the_environment_and_never_shows() {
    let Some(bin) = binary("redis-server") else {
        missing("redis-server", "no redis-server binary on PATH");
        return;
    };
    // A server of this test's own, which wants a password.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let secret = "s3cret-41d7";
    let _server = tokio::process::Command::new(bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--requirepass", secret, "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !reachable(addr).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("redis://{addr}");
    std::env::set_var("CF_TEST_REDIS_PASSWORD", secret);
    std::env::set_var("CF_TEST_REDIS_WRONG", "not-the-password");
    let prefix = unique("cf-redis-auth");
    let mut w =
        RedisWriter::connect(options(&url, &prefix).with_password_env("CF_TEST_REDIS_PASSWORD"))
            .await
            .unwrap();
    let events = feeder_core::testing::sample_events("auth", 10);
    w.write(&events).await.unwrap();
    assert!(!format!("{w:?}").contains(secret));

    let err = RedisWriter::connect(options(&url, &prefix).with_password_env("CF_TEST_REDIS_WRONG"))
        .await
        .expect_err("a wrong password");
    let shown = format!("{} {err:?}", ErrorChain(&err));
    assert!(!err.is_retriable(), "{shown}");
    assert!(
        !shown.contains("not-the-password") && !shown.contains(secret),
        "{shown}"
    );

    let err = RedisWriter::connect(options(&url, &prefix).with_password_env("CF_TEST_REDIS_UNSET"))
        .await
        .expect_err("no password");
    assert!(ErrorChain(&err).to_string().contains("CF_TEST_REDIS_UNSET"));
    // A password in the URL is not shown either.
    let o = options(&format!("redis://:{secret}@{addr}"), &prefix);
    assert!(!format!("{o:?}").contains(secret));
}

/// A test CA and a certificate it signed for 127.0.0.1, made with the `openssl` command, as
/// (`ca.pem`, `cert.pem`, `key.pem`) in `dir`; `None` (after the skip note) without
/// `openssl`.
fn certificates(
    dir: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let p = |name: &str| dir.join(name);
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let steps: [Vec<std::ffi::OsString>; 3] = [
        args("req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=feeder-test-ca")
            .chain([
                "-keyout".into(),
                p("ca.key").into(),
                "-out".into(),
                p("ca.pem").into(),
            ])
            .collect(),
        args("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1")
            .chain([
                "-keyout".into(),
                p("key.pem").into(),
                "-out".into(),
                p("leaf.csr").into(),
            ])
            .collect(),
        args("x509 -req -days 1 -CAcreateserial")
            .chain([
                "-in".into(),
                p("leaf.csr").into(),
                "-CA".into(),
                p("ca.pem").into(),
                "-CAkey".into(),
                p("ca.key").into(),
                "-extfile".into(),
                p("leaf.ext").into(),
                "-out".into(),
                p("cert.pem").into(),
            ])
            .collect(),
    ];
    for step in steps {
        let made = std::process::Command::new("openssl")
            .args(step)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !matches!(made, Ok(s) if s.success()) {
            missing("openssl", "cannot make test certificates");
            return None;
        }
    }
    Some((p("ca.pem"), p("cert.pem"), p("key.pem")))
}

fn args(line: &str) -> impl Iterator<Item = std::ffi::OsString> + '_ {
    line.split(' ').map(std::ffi::OsString::from)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    free.local_addr().unwrap().port()
}

/// Waits (bounded) until `port` on 127.0.0.1 accepts connections.
async fn wait_listening(port: u16, what: &str) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !reachable(addr).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tls_verifies_the_server_against_ca_file_and_refuses_an_unknown_one() {
    let Some(bin) = binary("redis-server") else {
        missing("redis-server", "no redis-server binary on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(dir.path()) else {
        return;
    };
    let port = free_port();
    let _server = tokio::process::Command::new(bin)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    wait_listening(port, "redis-server").await;
    let prefix = unique("cf-redis-tls");
    let mut o = options(&format!("rediss://127.0.0.1:{port}"), &prefix);
    let err = RedisWriter::connect(o.clone())
        .await
        .expect_err("a certificate no trusted root signed");
    assert!(!err.is_retriable(), "{}", ErrorChain(&err));
    o.ca_file = Some(ca);
    let mut w = RedisWriter::connect(o).await.unwrap();
    w.write(&feeder_core::testing::sample_events("tls", 10))
        .await
        .unwrap();
}
