//! The `http` writer against a server on 127.0.0.1 written here: it reads each preset's body
//! as Elasticsearch, Loki or a JSON lines receiver would, keeps `_bulk` documents by `_id`
//! (with external versions, as Elasticsearch does), and fails on purpose when told to. No
//! server needs installing, so these tests never skip.

mod conformance_support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use feeder_core::config::{Config, WriterConfig};
use feeder_core::feeder::{Registry, WriterFactory};
use feeder_core::model::{write_json_line, Event};
use feeder_core::testing::{run_conformance, sample_events, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_testkit::http::{HttpServer, Request, Response};
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::http::{HttpOptions, HttpWriter, HttpWriterFactory, Preset};
use serde_json::{json, Value};

const BULK: &str = "/_bulk";
const LOKI: &str = "/loki/api/v1/push";
const INGEST: &str = "/ingest";

/// A document as the fake Elasticsearch keeps it.
#[derive(Clone, Debug)]
struct Doc {
    version: Option<u64>,
    event: Event,
}

/// An item-level failure the server plays for one `_id`.
#[derive(Clone, Debug)]
struct ItemFault {
    status: u16,
    kind: &'static str,
    /// How many more times it fails; `None`: always.
    times: Option<u32>,
}

/// What the server holds and what it is told to do.
#[derive(Default)]
struct State {
    /// `_bulk`: documents by (index, _id).
    docs: BTreeMap<(String, String), Doc>,
    /// JSON lines and Loki lines, appended as they come.
    lines: Vec<Event>,
    /// Loki entries: stream labels, timestamp, line.
    loki: Vec<(BTreeMap<String, String>, String, Event)>,
    /// Each request body after decompression, with its path.
    bodies: Vec<(String, Vec<u8>)>,
    /// Whole-request answers played before anything is read, one per request.
    faults: VecDeque<Response>,
    /// `_bulk` item failures by `_id`.
    item_faults: HashMap<String, ItemFault>,
    /// The bearer token every request must carry, if any.
    token: Option<String>,
}

/// The fake server: one state, every path.
struct Fake {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn start() -> Fake {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let server = HttpServer::start(move |req| {
            let answer = handle(&shared, req);
            async move { answer }
        })
        .unwrap();
        Fake { server, state }
    }

    fn url(&self, path: &str) -> url::Url {
        self.server.url().join(path).unwrap()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn posts(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

fn handle(state: &Mutex<State>, req: Request) -> Response {
    let mut st = state.lock().unwrap();
    if let Some(token) = &st.token {
        if req.header("authorization") != Some(&format!("Bearer {token}")) {
            return Response::status(401);
        }
    }
    if req.method == "HEAD" {
        return Response::status(405);
    }
    if let Some(fault) = st.faults.pop_front() {
        return fault;
    }
    let body = if req.header("content-encoding") == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&req.body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Response::status(400).with_body("bad gzip");
        }
        out
    } else {
        req.body.clone()
    };
    st.bodies.push((req.path.clone(), body.clone()));
    match req.path.as_str() {
        BULK => bulk(&mut st, &body),
        LOKI => loki(&mut st, &body),
        INGEST => {
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice(line) {
                    Ok(e) => st.lines.push(e),
                    Err(e) => return Response::status(400).with_body(e.to_string()),
                }
            }
            Response::status(200)
        }
        _ => Response::status(404),
    }
}

/// `_bulk` as Elasticsearch does it: pairs of lines, documents kept by id, external versions
/// (`external_gte`: an older version is a 409 conflict), item failures as told.
fn bulk(st: &mut State, body: &[u8]) -> Response {
    if body.last() != Some(&b'\n') {
        return Response::status(400).with_body("the bulk request must end with a newline");
    }
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() % 2 != 0 {
        return Response::status(400).with_body("odd number of lines");
    }
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_slice(pair[0]).unwrap();
        let meta = &action["index"];
        let index = meta["_index"].as_str().unwrap().to_string();
        let id = meta["_id"].as_str().unwrap().to_string();
        let version = meta["version"].as_u64();
        if version.is_some() {
            assert_eq!(meta["version_type"], "external_gte");
        }
        let fault = st
            .item_faults
            .get_mut(&id)
            .and_then(|f| match &mut f.times {
                None => Some(f.clone()),
                Some(0) => None,
                Some(n) => {
                    *n -= 1;
                    Some(f.clone())
                }
            });
        let (status, error) = if let Some(f) = fault {
            (f.status, Some(f.kind))
        } else {
            match serde_json::from_slice::<Event>(pair[1]) {
                Err(_) => (400, Some("document_parsing_exception")),
                Ok(event) => {
                    let key = (index.clone(), id.clone());
                    match st.docs.get(&key) {
                        Some(old) if old.version.zip(version).is_some_and(|(o, n)| n < o) => {
                            (409, Some("version_conflict_engine_exception"))
                        }
                        old => {
                            let status = if old.is_some() { 200 } else { 201 };
                            st.docs.insert(key, Doc { version, event });
                            (status, None)
                        }
                    }
                }
            }
        };
        let mut item = json!({"_index": index, "_id": id, "status": status});
        if let Some(kind) = error {
            errors = true;
            item["error"] = json!({"type": kind, "reason": format!("{kind} on {id}")});
        }
        items.push(json!({ "index": item }));
    }
    Response::json(json!({"took": 1, "errors": errors, "items": items}).to_string())
}

/// The Loki push API's JSON.
fn loki(st: &mut State, body: &[u8]) -> Response {
    let push: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Response::status(400).with_body(e.to_string()),
    };
    for stream in push["streams"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = stream["stream"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        for value in stream["values"].as_array().unwrap() {
            let pair = value.as_array().unwrap();
            assert_eq!(pair.len(), 2, "{value}");
            let ts = pair[0].as_str().expect("a timestamp string").to_string();
            let event: Event = serde_json::from_str(pair[1].as_str().unwrap()).unwrap();
            st.lines.push(event.clone());
            st.loki.push((labels.clone(), ts, event));
        }
    }
    Response::status(204)
}

fn options(fake: &Fake, path: &str, preset: Preset) -> HttpOptions {
    HttpOptions::new(fake.url(path))
        .with_preset(preset)
        .with_retries(3, Duration::from_millis(10))
        .with_timeout(Duration::from_secs(10))
}

/// JSON lines of `events`, as the `file` writer writes them.
fn jsonl(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        write_json_line(e, &mut out);
    }
    out
}

/// An environment variable of this test run holding `value`.
fn token_var(value: &str) -> String {
    let var = conformance_support::unique("FEEDER_HTTP_TEST_TOKEN").replace('-', "_");
    // Each test sets a variable of its own name, read only by that test.
    std::env::set_var(&var, value);
    var
}

#[tokio::test]
async fn ndjson_is_the_file_writers_lines_gzipped_with_headers_and_token() {
    let fake = Fake::start();
    let var = token_var("t0ken-sekret");
    fake.state().token = Some("t0ken-sekret".into());
    let mut w = HttpWriter::connect(
        options(&fake, INGEST, Preset::Ndjson)
            .with_gzip(true)
            .with_header("X-Scope-OrgID", "market")
            .with_bearer_token_env(&var),
    )
    .await
    .unwrap();
    assert!(!format!("{w:?}").contains("t0ken-sekret"));
    let events = sample_events("wire-ndjson", 40);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    let posts = fake.posts();
    assert_eq!(posts.len(), 1);
    let p = &posts[0];
    assert_eq!(p.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(p.header("content-encoding"), Some("gzip"));
    assert_eq!(p.header("authorization"), Some("Bearer t0ken-sekret"));
    assert_eq!(p.header("x-scope-orgid"), Some("market"));
    // The body on the wire is gzip, and inside it are exactly the file writer's lines.
    assert_eq!(&p.body[..2], &[0x1f, 0x8b]);
    let st = fake.state();
    assert_eq!(st.bodies[0].1, jsonl(&events));
    assert_eq!(st.lines, events);
}

#[tokio::test]
async fn bulk_pairs_name_index_and_stable_id_so_a_replay_overwrites() {
    let fake = Fake::start();
    let mut w = HttpWriter::connect(
        options(&fake, BULK, Preset::Elasticsearch).with_indexes("t-idx", "c-idx", "g-idx"),
    )
    .await
    .unwrap();
    let events = sample_events("wire-es", 50);
    w.write(&events).await.unwrap();
    w.write(&events).await.unwrap();
    let st = fake.state();
    let (path, body) = &st.bodies[0];
    assert_eq!(path, BULK);
    assert_eq!(body.last(), Some(&b'\n'));
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 2 * events.len());
    for (pair, event) in lines.chunks(2).zip(&events) {
        let action: Value = serde_json::from_slice(pair[0]).unwrap();
        let meta = action["index"].as_object().unwrap();
        let (index, id) = match event {
            Event::Trade(t) => (
                "t-idx",
                format!("{}:{}:{}", t.exchange, t.symbol, t.trade_id),
            ),
            Event::Candle(c) => (
                "c-idx",
                format!("{}:{}:{}:{}", c.exchange, c.symbol, c.interval, c.open_time),
            ),
            Event::Gap(g) => (
                "g-idx",
                format!("{}:{}:gap:{}", g.exchange, g.symbol, g.after_trade_id),
            ),
        };
        assert_eq!(meta["_index"], index, "{action}");
        assert_eq!(meta["_id"], id.as_str(), "{action}");
        if let Event::Candle(c) = event {
            assert_eq!(meta["version"], u64::from(c.revision));
        } else {
            assert!(meta.get("version").is_none(), "{action}");
        }
        // The source is the event's JSON line, byte for byte.
        let mut line = jsonl(std::slice::from_ref(event));
        line.pop();
        assert_eq!(pair[1], &line[..]);
    }
    // Sent twice, held once.
    assert_eq!(st.bodies.len(), 2);
    assert_eq!(st.docs.len(), events.len());
    assert_eq!(fake.server.requests()[0].method, "HEAD");
}

#[tokio::test]
async fn loki_streams_carry_few_labels_and_each_event_once_at_its_time() {
    let fake = Fake::start();
    let mut w = HttpWriter::connect(options(&fake, LOKI, Preset::Loki))
        .await
        .unwrap();
    let events = sample_events("wire-loki", 100);
    w.write(&events).await.unwrap();
    assert_eq!(
        fake.posts()[0].header("content-type"),
        Some("application/json")
    );
    let st = fake.state();
    assert_eq!(st.loki.len(), events.len());
    let mut streams = std::collections::BTreeSet::new();
    for (labels, ts, event) in &st.loki {
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        match event {
            Event::Candle(c) => {
                assert_eq!(keys, ["exchange", "interval", "kind", "symbol"]);
                assert_eq!(labels["interval"], c.interval.to_string());
            }
            _ => assert_eq!(keys, ["exchange", "kind", "symbol"]),
        }
        assert_eq!(labels["exchange"], event.exchange());
        assert_eq!(labels["symbol"], event.symbol().as_str());
        assert_eq!(labels["kind"], event.kind());
        assert_eq!(*ts, event.time().unix_nanos().to_string());
        streams.insert(labels.clone());
    }
    // Two symbols, trades, one candle interval and gaps: six streams, whatever the batch size.
    assert_eq!(streams.len(), 6, "{streams:?}");
    let mut got = st.lines.clone();
    let mut want = events.clone();
    let key = |e: &Event| feeder_core::testing::event_key(e);
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
    // Within a stream, values are oldest first.
    let body: Value = serde_json::from_slice(&st.bodies[0].1).unwrap();
    for s in body["streams"].as_array().unwrap() {
        let ts: Vec<i64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[0].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_and_a_503_are_retried_and_the_batch_arrives() {
    let fake = Fake::start();
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
    fake.state().faults.extend([
        Response::status(429).with_header("retry-after", "1"),
        Response::status(503).with_header("retry-after", past),
    ]);
    let mut w = HttpWriter::connect(options(&fake, BULK, Preset::Elasticsearch))
        .await
        .unwrap();
    let stats = w.stats();
    let events = sample_events("retry-es", 30);
    w.write(&events).await.unwrap();
    assert_eq!(stats.requests.load(Ordering::SeqCst), 3);
    assert_eq!(stats.retries.load(Ordering::SeqCst), 2);
    assert_eq!(fake.posts().len(), 3);
    assert_eq!(fake.state().docs.len(), events.len());
}

#[tokio::test]
async fn bulk_item_errors_resend_only_the_failed_items_and_reject_the_refused() {
    let fake = Fake::start();
    let events = sample_events("items-es", 20);
    let id = |e: &Event| {
        let Event::Trade(t) = e else {
            panic!("not a trade")
        };
        format!("{}:{}:{}", t.exchange, t.symbol, t.trade_id)
    };
    {
        let mut st = fake.state();
        st.item_faults.insert(
            id(&events[3]),
            ItemFault {
                status: 429,
                kind: "es_rejected_execution_exception",
                times: Some(2),
            },
        );
        st.item_faults.insert(
            id(&events[7]),
            ItemFault {
                status: 400,
                kind: "document_parsing_exception",
                times: None,
            },
        );
    }
    let mut w = HttpWriter::connect(options(&fake, BULK, Preset::Elasticsearch))
        .await
        .unwrap();
    let stats = w.stats();
    let err = w.write(&events).await.unwrap_err();
    let WriteError::Rejected(rejections) = &err else {
        panic!("expected a rejection, got {}", ErrorChain(&err))
    };
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].index, 7);
    assert!(
        rejections[0]
            .reason
            .to_string()
            .contains("document_parsing_exception"),
        "{}",
        rejections[0].reason
    );
    // One whole request, then the busy item alone, twice.
    let st = fake.state();
    let pairs: Vec<usize> = st
        .bodies
        .iter()
        .map(|(_, b)| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count() / 2)
        .collect();
    assert_eq!(pairs, [events.len(), 1, 1]);
    assert_eq!(stats.retries.load(Ordering::SeqCst), 2);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 1);
    assert_eq!(st.docs.len(), events.len() - 1);
    assert!(!st.docs.keys().any(|(_, i)| *i == id(&events[7])));
}

#[tokio::test]
async fn retries_are_bounded_then_retriable_and_refusals_are_not_retried() {
    let fake = Fake::start();
    fake.state()
        .faults
        .extend((0..10).map(|_| Response::status(503).with_body("overloaded")));
    let mut w = HttpWriter::connect(
        options(&fake, INGEST, Preset::Ndjson).with_retries(2, Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let events = sample_events("bounded", 10);
    let err = w.write(&events).await.unwrap_err();
    assert!(err.is_retriable(), "{}", ErrorChain(&err));
    let shown = ErrorChain(&err).to_string();
    assert!(
        shown.contains("3 tries") && shown.contains("503"),
        "{shown}"
    );
    assert_eq!(fake.posts().len(), 3);
    // A refusal of the body: one request, a terminal error that says so.
    {
        let mut st = fake.state();
        st.faults.clear();
        st.faults
            .push_back(Response::status(413).with_body("too big"));
    }
    let err = w.write(&events).await.unwrap_err();
    assert!(!err.is_retriable(), "{}", ErrorChain(&err));
    let shown = ErrorChain(&err).to_string();
    assert!(
        shown.contains("413") && shown.contains("batch_size"),
        "{shown}"
    );
    assert_eq!(fake.posts().len(), 4);
    // A redirect is not followed (a POST would become a GET elsewhere): it is said.
    fake.state()
        .faults
        .push_back(Response::status(308).with_header("location", "http://127.0.0.1:1/elsewhere"));
    let err = w.write(&events).await.unwrap_err();
    assert!(!err.is_retriable());
    assert!(
        ErrorChain(&err).to_string().contains("redirects"),
        "{}",
        ErrorChain(&err)
    );
    assert_eq!(fake.posts().len(), 5);
}

/// The writer's own tries run out, the runner retries the batch, and it arrives once.
#[tokio::test]
async fn when_the_writers_tries_run_out_the_runner_retries_and_nothing_is_lost() {
    use feeder_core::exchange::Backoff;
    use feeder_core::writer::{RunnerSettings, WriterRunner};
    let fake = Fake::start();
    let events = sample_events("runner-es", 40);
    let busy = {
        let Event::Trade(t) = &events[5] else {
            panic!("not a trade")
        };
        format!("{}:{}:{}", t.exchange, t.symbol, t.trade_id)
    };
    fake.state().item_faults.insert(
        busy.clone(),
        ItemFault {
            status: 503,
            kind: "unavailable_shards_exception",
            times: Some(5),
        },
    );
    let w = HttpWriter::connect(
        options(&fake, BULK, Preset::Elasticsearch).with_retries(1, Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let writer_stats = w.stats();
    let settings = RunnerSettings {
        batch_size: events.len(),
        retry: Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
        ..RunnerSettings::default()
    };
    let abort = tokio_util::sync::CancellationToken::new();
    let (handle, task) = WriterRunner::spawn(Box::new(w), settings, abort.clone());
    let stats = Arc::clone(handle.stats());
    assert!(handle.send(Arc::new(events.clone())).await);
    drop(handle);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the runner ended")
        .unwrap();
    // Five failures of two tries each: the writer gave up twice, then the third batch went.
    assert_eq!(stats.errors.load(Ordering::SeqCst), 2);
    assert_eq!(stats.retries.load(Ordering::SeqCst), 2);
    assert_eq!(stats.events.load(Ordering::SeqCst), events.len() as u64);
    assert_eq!(stats.dropped.load(Ordering::SeqCst), 0);
    assert_eq!(writer_stats.retries.load(Ordering::SeqCst), 3);
    let st = fake.state();
    assert_eq!(st.docs.len(), events.len());
    assert!(st.docs.keys().any(|(_, id)| *id == busy));
}

#[tokio::test]
async fn a_missing_token_or_refused_credentials_fail_at_start_without_showing_the_token() {
    let fake = Fake::start();
    fake.state().token = Some("right-token".into());
    let cfg = |var: &str| {
        WriterConfig::new("http")
            .with_option("url", fake.url(INGEST).to_string())
            .with_option("bearer_token_env", var)
    };
    let unset = "FEEDER_HTTP_TEST_SURELY_UNSET_VAR";
    let err = match HttpWriterFactory.build(&cfg(unset)).await {
        Ok(_) => panic!("built without its token"),
        Err(e) => e,
    };
    assert!(matches!(err, WriteError::Config(_)), "{err:?}");
    assert!(ErrorChain(&err).to_string().contains(unset));
    assert!(HttpWriterFactory.validate(&cfg(unset)).is_err());
    // Nothing was sent without the token.
    assert!(fake.server.requests().is_empty());
    let wrong = token_var("wrong-sekret-token");
    let err = match HttpWriterFactory.build(&cfg(&wrong)).await {
        Ok(_) => panic!("built with refused credentials"),
        Err(e) => e,
    };
    assert!(!err.is_retriable());
    let shown = format!("{} {err:?}", ErrorChain(&err));
    assert!(shown.contains("credentials"), "{shown}");
    assert!(!shown.contains("wrong-sekret-token"), "{shown}");
    let right = token_var("right-token");
    assert!(HttpWriterFactory.build(&cfg(&right)).await.is_ok());
}

#[test]
fn the_registry_knows_http_and_its_options_come_from_yaml() {
    let mut registry = Registry::new();
    feeder_writers::register(&mut registry);
    let yaml = |extra: &str| {
        format!(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: http\n    \
             url: https://es.example:9200/_bulk\n    preset: elasticsearch\n{extra}"
        )
    };
    let config = Config::from_yaml_str(&yaml(
        "    index: market\n    gzip: true\n    timeout: 5s\n",
    ))
    .unwrap();
    let w = &config.writers[0];
    registry.writer("http").unwrap().validate(w).unwrap();
    let o = HttpOptions::from_config(w).unwrap();
    assert_eq!(
        (o.preset, o.trades_index(), o.gzip),
        (Preset::Elasticsearch, "market", true)
    );
    assert_eq!(o.timeout, Duration::from_secs(5));
    for (bad, key) in [
        ("    indx: market\n", "indx"),
        ("    index: Market\n", "index"),
        ("    preset: splunk\n", "preset"),
    ] {
        let config = Config::from_yaml_str(&yaml(bad));
        let err = match config {
            Ok(c) => registry
                .writer("http")
                .unwrap()
                .validate(&c.writers[0])
                .unwrap_err()
                .to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key), "{bad}: {err}");
    }
}

/// The fake server behind a proxy that can be cut, for the conformance suite.
struct Target {
    fake: Fake,
    proxy: TcpProxy,
    path: &'static str,
    preset: Preset,
}

impl Target {
    async fn start(path: &'static str, preset: Preset) -> Target {
        let fake = Fake::start();
        let proxy = TcpProxy::start(fake.server.addr()).await.unwrap();
        Target {
            fake,
            proxy,
            path,
            preset,
        }
    }
}

#[async_trait]
impl ConformanceTarget for Target {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let url = url::Url::parse(&format!("http://{}{}", self.proxy.addr(), self.path)).unwrap();
        let options = HttpOptions::new(url)
            .with_preset(self.preset)
            .with_retries(2, Duration::from_millis(20))
            .with_timeout(Duration::from_secs(5));
        Ok(Box::new(HttpWriter::connect(options).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let st = self.fake.state();
        Ok(match self.preset {
            Preset::Elasticsearch => st.docs.values().map(|d| d.event.clone()).collect(),
            Preset::Ndjson | Preset::Loki => st.lines.clone(),
        })
    }

    fn keyed(&self) -> bool {
        self.preset == Preset::Elasticsearch
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Hold the outage until the writer has come back and been refused (bounded), so
        // that the catch-up is a real reconnection.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        // Nothing listens on a port that was just freed.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}{}", self.path)).unwrap();
        let options = HttpOptions::new(url)
            .with_preset(self.preset)
            .with_timeout(Duration::from_secs(5));
        Some(
            HttpWriter::connect(options)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

async fn conforms(path: &'static str, preset: Preset) {
    let target = Target::start(path, preset).await;
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", preset.as_str()));
    assert_eq!(report.passed().len(), 6, "{report}");
    assert!(report.checks.iter().all(|(_, o)| *o == Outcome::Passed));
    // The outage was real: the writer failed batches, and its reconnections were refused.
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.proxy.refused() > 0);
}

#[tokio::test]
async fn the_elasticsearch_preset_conforms_and_rides_out_an_outage() {
    conforms(BULK, Preset::Elasticsearch).await;
}

#[tokio::test]
async fn the_ndjson_preset_conforms_and_rides_out_an_outage() {
    conforms(INGEST, Preset::Ndjson).await;
}

/// An HTTPS server on 127.0.0.1 whose certificate (for IP 127.0.0.1) is signed by the test
/// CA in `test_data/http/ca.pem`; it answers 200 to everything and counts the POSTs.
async fn tls_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/test_data/http");
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&posts);
    // Ends with the test's runtime.
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                // A client that does not trust the certificate hangs up here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    if req.method() == hyper::Method::POST {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, posts)
}

#[tokio::test]
async fn certificates_are_verified_and_ca_file_adds_a_private_ca() {
    let (addr, posts) = tls_server().await;
    let url = url::Url::parse(&format!("https://{addr}/ingest")).unwrap();
    let base = || HttpOptions::new(url.clone()).with_timeout(Duration::from_secs(10));
    // Unknown issuer: refused at start, for good.
    let err = HttpWriter::connect(base()).await.unwrap_err();
    assert!(!err.is_retriable(), "{}", ErrorChain(&err));
    let shown = ErrorChain(&err).to_string();
    assert!(shown.contains("certificate"), "{shown}");
    // With the private CA, the same server is trusted and takes the batch.
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/test_data/http/ca.pem");
    let mut w = HttpWriter::connect(base().with_ca_file(&ca)).await.unwrap();
    w.write(&sample_events("tls", 10)).await.unwrap();
    assert_eq!(posts.load(Ordering::SeqCst), 1);
    // A CA file that is not one is a configuration error.
    let not_pem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let err = HttpWriter::connect(base().with_ca_file(&not_pem))
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::Config(_)), "{err:?}");
}
