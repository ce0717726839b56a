//! The `nats` writer against a NATS server with JetStream (`FEEDER_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`), through a cuttable proxy for the outage check. Each test uses
//! a stream and subjects of its own and deletes the stream at the end. Skipped with a note
//! when the server is not reachable, unless `CI` is set.

mod conformance_support;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::model::Event;
use feeder_core::testing::{event_key, run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::nats::{message_id, CreateStream};
use feeder_writers::{NatsOptions, NatsWriter};
use futures::StreamExt;

/// The server's URL, or `None` (after the skip note) when it is not reachable.
async fn server() -> Option<String> {
    let url = env_or("FEEDER_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let host_port = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_string();
    match resolve(&host_port).await {
        Some(a) if reachable(a).await => Some(url),
        _ => {
            missing("NATS", &format!("nothing answers at {host_port}"));
            None
        }
    }
}

async fn context(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

/// A stream name and subject prefix of one test (`_` rather than `-`: both are fine in
/// stream names and subject tokens, and `_` reads apart from the symbols' `-`).
fn names(what: &str) -> (String, String) {
    let id = unique(what).replace('-', "_");
    (id.to_uppercase(), id)
}

/// The options of a test: subjects under `prefix`, short timeouts.
fn options(url: &str, stream: &str, prefix: &str) -> NatsOptions {
    NatsOptions::new(url)
        .with_stream(stream)
        .with_subjects(
            format!("{prefix}.trades.{{exchange}}.{{symbol}}"),
            format!("{prefix}.candles.{{exchange}}.{{symbol}}.{{interval}}"),
            format!("{prefix}.gaps.{{exchange}}.{{symbol}}"),
        )
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(3))
}

/// Every message of `stream`, with its subject and message id, through an ordered consumer.
async fn messages(js: &jetstream::Context, stream: &str) -> Vec<(String, String, Event)> {
    let mut s = js.get_stream(stream).await.expect("the stream");
    let total = s.info().await.expect("stream info").state.messages as usize;
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut stream_of = consumer.messages().await.expect("messages");
    let mut out = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < total {
        let m = tokio::time::timeout_at(deadline, stream_of.next())
            .await
            .unwrap_or_else(|_| panic!("read {} of {total} messages within 30s", out.len()))
            .expect("the consumer ended")
            .expect("a message");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string())
            .expect("every message has a Nats-Msg-Id");
        let event: Event = serde_json::from_slice(&m.payload).expect("a JSON event");
        out.push((m.subject.to_string(), id, event));
    }
    out
}

struct NatsTarget {
    proxy: TcpProxy,
    stream: String,
    prefix: String,
    js: jetstream::Context,
}

impl NatsTarget {
    fn proxied(&self) -> String {
        format!("nats://{}", self.proxy.addr())
    }
}

#[async_trait]
impl ConformanceTarget for NatsTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        // The first build creates the stream; later ones find it.
        let o = options(&self.proxied(), &self.stream, &self.prefix)
            .with_create_stream(CreateStream::default());
        Ok(Box::new(NatsWriter::connect(o).await?))
    }

    /// What a consumer of the stream sees, keeping of each candle its highest revision (each
    /// revision is a message of its own): every copy of that revision, so that a duplicate
    /// still shows.
    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let mut id = String::new();
        let mut out = Vec::new();
        let mut candles: BTreeMap<String, (u32, Vec<Event>)> = BTreeMap::new();
        for (subject, msg_id, event) in messages(&self.js, &self.stream).await {
            message_id(&event, &mut id);
            assert_eq!(msg_id, id, "the message id is the event's identity");
            let kind = match &event {
                Event::Trade(_) => "trades",
                Event::Candle(_) => "candles",
                Event::Gap(_) => "gaps",
            };
            let want = format!(
                "{}.{kind}.{}.{}",
                self.prefix,
                event.exchange(),
                event.symbol()
            );
            assert!(subject.starts_with(&want), "{subject} for a {kind} event");
            match event {
                Event::Candle(c) => {
                    let slot = candles
                        .entry(event_key(&Event::Candle(c.clone())))
                        .or_insert((c.revision, Vec::new()));
                    if c.revision > slot.0 {
                        *slot = (c.revision, Vec::new());
                    }
                    if c.revision == slot.0 {
                        slot.1.push(Event::Candle(c));
                    }
                }
                other => out.push(other),
            }
        }
        out.extend(candles.into_values().flat_map(|(_, v)| v));
        Ok(out)
    }

    fn keyed(&self) -> bool {
        true
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Hold the outage until the client has tried to reconnect and been refused
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
        let o = options(
            &format!("nats://127.0.0.1:{port}"),
            &self.stream,
            &self.prefix,
        );
        Some(
            NatsWriter::connect(o)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

#[tokio::test]
async fn the_nats_writer_conforms_and_rides_out_an_outage() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(url) = server().await else {
        return;
    };
    let upstream = resolve(url.split_once("://").map_or(url.as_str(), |(_, r)| r))
        .await
        .unwrap();
    let (stream, prefix) = names("conformance");
    let target = NatsTarget {
        proxy: TcpProxy::start(upstream).await.unwrap(),
        js: context(&url).await,
        stream,
        prefix,
    };
    let result = run_conformance(&target).await;
    let _ = target.js.delete_stream(&target.stream).await;
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.proxy.refused() > 0);
}

#[tokio::test]
async fn a_replayed_batch_is_not_stored_twice_even_by_a_new_connection() {
    let Some(url) = server().await else {
        return;
    };
    let js = context(&url).await;
    let (stream, prefix) = names("replay");
    let o = options(&url, &stream, &prefix).with_create_stream(CreateStream::default());
    // An exchange name with a dot: it must stay inside its subject token.
    let events = feeder_core::testing::sample_events("cf.dot", 60);
    let mut first = NatsWriter::connect(o.clone()).await.unwrap();
    first.write(&events).await.unwrap();
    first.close().await.unwrap();
    // A new writer, as after a restart, sends the same batch again, then half of it.
    let mut second = NatsWriter::connect(o).await.unwrap();
    second.write(&events).await.unwrap();
    second.write(&events[..30]).await.unwrap();
    second.close().await.unwrap();

    let got = messages(&js, &stream).await;
    let _ = js.delete_stream(&stream).await;
    assert_eq!(got.len(), events.len(), "each event stored once");
    let mut want: Vec<String> = events.iter().map(event_key).collect();
    let mut have: Vec<String> = got.iter().map(|(_, _, e)| event_key(e)).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    let trade_subject = format!("{prefix}.trades.cf%2Edot.BTC-USD");
    assert!(
        got.iter().any(|(s, _, _)| *s == trade_subject),
        "no message on {trade_subject}"
    );
}

#[tokio::test]
async fn a_missing_stream_without_create_stream_is_refused_naming_it() {
    let Some(url) = server().await else {
        return;
    };
    let (stream, prefix) = names("missing");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        NatsWriter::connect(options(&url, &stream, &prefix)),
    )
    .await
    .expect("refused, not hung")
    .expect_err("a writer without its stream");
    let message = ErrorChain(&err).to_string();
    assert!(!err.is_retriable(), "{message}");
    assert!(message.contains(&stream), "{message}");
    assert!(message.contains("create_stream"), "{message}");
    // Nothing was created behind the user's back.
    let js = context(&url).await;
    assert!(js.get_stream(&stream).await.is_err());
}

#[tokio::test]
async fn a_stream_that_does_not_cover_the_subjects_is_refused() {
    let Some(url) = server().await else {
        return;
    };
    let js = context(&url).await;
    let (stream, prefix) = names("narrow");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.trades.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let result = NatsWriter::connect(options(&url, &stream, &prefix)).await;
    let _ = js.delete_stream(&stream).await;
    let err = result.expect_err("candles and gaps have no stream");
    let message = ErrorChain(&err).to_string();
    assert!(!err.is_retriable(), "{message}");
    assert!(message.contains(&stream), "{message}");
    assert!(
        message.contains(&format!("{prefix}.candles.*.*.*")),
        "{message}"
    );
}

#[test]
fn the_registry_knows_nats_and_its_options_come_from_yaml() {
    let mut registry = feeder_core::feeder::Registry::new();
    feeder_writers::register(&mut registry);
    let yaml = |writer: &str| {
        feeder_core::config::Config::from_yaml_str(&format!(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: nats\n{writer}"
        ))
        .unwrap()
    };
    let config = yaml(
        "    stream: MARKET\n    candles_subject: c.{exchange}.{symbol}.{interval}\n    create_stream:\n      duplicate_window: 10m\n",
    );
    let w = &config.writers[0];
    registry.writer("nats").unwrap().validate(w).unwrap();
    let o = NatsOptions::from_config(w).unwrap();
    assert_eq!(o.stream, "MARKET");
    assert_eq!(o.url, "nats://127.0.0.1:4222");
    assert_eq!(
        o.create_stream.map(|c| c.duplicate_window),
        Some(Duration::from_secs(600))
    );
    for (bad, key) in [
        ("    subjet: t.{symbol}\n", "subjet"),
        ("    subject: t.*.{symbol}\n", "subject"),
        ("    user: feeder\n", "password_env"),
    ] {
        let err = registry
            .writer("nats")
            .unwrap()
            .validate(&yaml(bad).writers[0])
            .unwrap_err();
        assert!(err.to_string().contains(key), "{bad}: {err}");
    }
}

/// `name` on the PATH or in /usr/sbin.
fn binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn a_password_comes_from_the_environment_and_never_shows() {
    let Some(bin) = binary("nats-server") else {
        missing(
            "nats-server",
            "no nats-server binary on PATH or in /usr/sbin",
        );
        return;
    };
    // A server of this test's own, which wants a password.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let store = tempfile::tempdir().unwrap();
    let secret = "s3cret-9f2c";
    let _server = tokio::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .args(["--user", "feeder", "--pass", secret])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nats-server");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !reachable(addr).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("nats://{addr}");
    std::env::set_var("CF_TEST_NATS_PASSWORD", secret);
    std::env::set_var("CF_TEST_NATS_WRONG", "not-the-password");
    let (stream, prefix) = names("auth");
    let good = options(&url, &stream, &prefix)
        .with_user("feeder", "CF_TEST_NATS_PASSWORD")
        .with_create_stream(CreateStream::default());
    let mut w = NatsWriter::connect(good.clone()).await.unwrap();
    w.write(&feeder_core::testing::sample_events("auth", 10))
        .await
        .unwrap();
    assert!(!format!("{w:?}").contains(secret));

    let wrong = options(&url, &stream, &prefix).with_user("feeder", "CF_TEST_NATS_WRONG");
    let err = NatsWriter::connect(wrong)
        .await
        .expect_err("a wrong password");
    let shown = format!("{} {err:?}", ErrorChain(&err));
    assert!(!err.is_retriable(), "{shown}");
    assert!(
        !shown.contains("not-the-password") && !shown.contains(secret),
        "{shown}"
    );

    let unset = options(&url, &stream, &prefix).with_user("feeder", "CF_TEST_NATS_UNSET");
    let err = NatsWriter::connect(unset).await.expect_err("no password");
    assert!(ErrorChain(&err).to_string().contains("CF_TEST_NATS_UNSET"));
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
    let Some(bin) = binary("nats-server") else {
        missing(
            "nats-server",
            "no nats-server binary on PATH or in /usr/sbin",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(dir.path()) else {
        return;
    };
    let port = free_port();
    let _server = tokio::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path().join("store"))
        .arg("--tls")
        .arg("--tlscert")
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nats-server");
    wait_listening(port, "nats-server").await;
    let (stream, prefix) = names("tls");
    let mut o = options(&format!("tls://127.0.0.1:{port}"), &stream, &prefix)
        .with_create_stream(CreateStream::default());
    let err = NatsWriter::connect(o.clone())
        .await
        .expect_err("a certificate no trusted root signed");
    assert!(!err.is_retriable(), "{}", ErrorChain(&err));
    o.ca_file = Some(ca);
    let mut w = NatsWriter::connect(o).await.unwrap();
    w.write(&feeder_core::testing::sample_events("tls", 10))
        .await
        .unwrap();
}
