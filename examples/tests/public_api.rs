//! A venue and a writer built from the public API only (`feeder_core::prelude`), configured
//! in YAML like bundled ones, against a local WebSocket and HTTP server: `request_timeout`,
//! `stale_timeout` and `backfill` each take effect.
//!
//! The run: the first connection sends trades 1 to 3 and goes silent; the stale timeout
//! reconnects; the second connection sends trade 7. Trades 4 to 6 exist only in the REST
//! history, whose first answer comes after a minute. Every wait is on an event (a trade
//! stored, a connection, the end of the run), bounded far below that minute: a trade from
//! REST within the bound proves the slow request was cut by `request_timeout` and retried.

use std::collections::BTreeSet;
use std::path::Path;

use feeder_core::prelude::*;
use feeder_examples::append_log::AppendLogFactory;
use feeder_examples::toy;
use feeder_testkit::http::{HttpServer, Response};
use feeder_testkit::ws::{Step, WsServer};
use serde::Deserialize;
use tokio::sync::mpsc;

/// How long any one event may take: below the defaults the test overrides (a 10s request
/// timeout, the venue's 30s stale timeout) and the REST server's minute, so that an event
/// within it is the configured value at work.
const BOUND: Duration = Duration::from_secs(8);
/// How long the first REST answer takes.
const SLOW: Duration = Duration::from_secs(60);

/// Trade `id` as the toy venue writes it, `id` milliseconds after `start_ms` (trades far
/// from the present are refused before the pipeline).
fn trade_json(id: u64, start_ms: u64) -> String {
    format!(
        r#"{{"s":"BTC-USD","id":{id},"p":"100.{id}","q":"1","taker":"b","t":{}}}"#,
        start_ms + id
    )
}

fn ws_trade(id: u64, start_ms: u64) -> Step {
    Step::Send(format!(
        r#"{{"ch":"trade",{}"#,
        &trade_json(id, start_ms)[1..]
    ))
}

/// A writer that reports the id of every trade it stores: the test's view of the run.
struct Tap(mpsc::UnboundedSender<u64>);

#[async_trait]
impl Writer for Tap {
    fn name(&self) -> &str {
        "tap"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        for e in batch {
            if let Event::Trade(t) = e {
                let id = t.trade_id.as_number().unwrap_or_default() as u64;
                // The test may have stopped listening; the trade is stored regardless.
                let _ = self.0.send(id);
            }
        }
        Ok(())
    }
}

/// The tap has no options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TapOptions {}

struct TapFactory(mpsc::UnboundedSender<u64>);

#[async_trait]
impl WriterFactory for TapFactory {
    type Options = TapOptions;

    async fn open(
        &self,
        _options: TapOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(Tap(self.0.clone())))
    }
}

const CONFIG: &str = "
exchanges:
  - name: toy
    symbols: [BTC-USD]
    ws_url: ${WS}
    rest_url: ${REST}
    request_timeout: 300ms
    stale_timeout: 500ms
    backfill: ${BACKFILL}
pipeline:
  candles: []
writers:
  - type: tap
  - type: append_log
    path: ${LOG}
";

struct Run {
    ws: WsServer,
    http: HttpServer,
    stored: mpsc::UnboundedReceiver<u64>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Summary>,
}

async fn start(backfill: bool, log: &Path) -> Run {
    let start_ms = u64::try_from(Timestamp::now().unix_nanos() / 1_000_000).expect("after 1970");
    let subscribed = |first: u64, last: u64| {
        let mut s = vec![Step::Expect(1), Step::Send(r#"{"ch":"ack"}"#.into())];
        s.extend((first..=last).map(|id| ws_trade(id, start_ms)));
        // Then silent, with the socket open: only the stale timeout ends it.
        s.push(Step::Stall);
        s
    };
    let ws = WsServer::scripted_per_connection(vec![subscribed(1, 3), subscribed(7, 7)])
        .expect("a WebSocket server");
    let history = format!(
        "[{}]",
        (1..=6)
            .map(|id| trade_json(id, start_ms))
            .collect::<Vec<_>>()
            .join(",")
    );
    let http = HttpServer::scripted([(
        "/trades",
        vec![
            Response::json(history.clone()).delayed(SLOW),
            Response::json(history),
        ],
    )])
    .expect("an HTTP server");

    let (tx, stored) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry
        .register_venue(toy::VENUE)
        .register_writer("tap", TapFactory(tx))
        .register_writer("append_log", AppendLogFactory);
    let vars = [
        ("WS", ws.url().to_string()),
        ("REST", http.url().to_string()),
        ("BACKFILL", backfill.to_string()),
        ("LOG", log.display().to_string()),
    ];
    let config = Config::from_yaml_str_with_env(CONFIG, &|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("a valid config");
    let feeder = Feeder::from_config(config, &registry)
        .await
        .expect("a feeder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(feeder.run(shutdown.clone()));
    Run {
        ws,
        http,
        stored,
        shutdown,
        task,
    }
}

impl Run {
    /// Waits until every id of `want` was stored; returns every id stored meanwhile.
    async fn until_stored(&mut self, want: &[u64], seen: &mut BTreeSet<u64>) {
        let wait = async {
            while !want.iter().all(|id| seen.contains(id)) {
                match self.stored.recv().await {
                    Some(id) => {
                        seen.insert(id);
                    }
                    None => break,
                }
            }
        };
        tokio::time::timeout(BOUND, wait)
            .await
            .unwrap_or_else(|_| panic!("stored {seen:?}, waiting for {want:?}"));
    }

    async fn stop(self) -> (WsServer, HttpServer, Summary) {
        self.shutdown.cancel();
        let summary = tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the run ends")
            .expect("the run does not panic");
        (self.ws, self.http, summary)
    }
}

/// The trade ids in the append-only log, in order.
fn logged_ids(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .expect("the log")
        .lines()
        .filter_map(|l| {
            let start = l.find("\"trade_id\":\"")? + 12;
            l[start..].split('"').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_timeout_reconnects_and_backfill_fetches_the_missed_trades_past_a_slow_request() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("trades.jsonl");
    let mut run = start(true, &log).await;
    let mut seen = BTreeSet::new();
    run.until_stored(&[1, 2, 3], &mut seen).await;
    // Silent after trade 3: the 500ms stale timeout (not the venue's 30s) reconnects, and
    // the backfill fetches 4 to 6 from REST. Its first request would answer after a minute;
    // only a 300ms request timeout and a retry bring them within the bound.
    run.until_stored(&[4, 5, 6, 7], &mut seen).await;
    let (ws, http, summary) = run.stop().await;
    assert!(ws.connections() >= 2, "{} connections", ws.connections());
    assert!(
        http.requests().len() >= 2,
        "the slow request was retried: {} requests",
        http.requests().len()
    );
    assert!(!summary.lost_anything(), "{summary}");
    assert_eq!(logged_ids(&log), [1, 2, 3, 4, 5, 6, 7], "each trade once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backfill_the_missed_trades_are_not_fetched() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("trades.jsonl");
    let mut run = start(false, &log).await;
    let mut seen = BTreeSet::new();
    // Trade 7 comes on the second connection, after the stale timeout reconnected.
    run.until_stored(&[1, 2, 3, 7], &mut seen).await;
    let (ws, http, _summary) = run.stop().await;
    assert!(ws.connections() >= 2, "{} connections", ws.connections());
    assert!(http.requests().is_empty(), "{:?}", http.requests());
    assert_eq!(logged_ids(&log), [1, 2, 3, 7]);
}

/// Options the toy venue's transports do not read are refused, naming the entry and key;
/// a writer's bad option names the writer and key.
#[test]
fn validate_names_the_entry_and_key_of_a_bad_option() {
    let mut registry = Registry::new();
    registry
        .register_venue(toy::VENUE)
        .register_venue(feeder_examples::random_walk::VENUE)
        .register_writer("append_log", AppendLogFactory);
    let check = |yaml: &str| {
        let config = Config::from_yaml_str_with_env(yaml, &|_| None).expect("parses");
        Feeder::validate(&config, &registry)
            .expect_err("refused")
            .to_string()
    };
    let e = check(
        "exchanges:\n  - name: toy\n    symbols: [BTC-USD]\n  - name: random-walk\n    symbols: [BTC-USD]\n    transport: rest\n    ws_url: ws://127.0.0.1:1\nwriters:\n  - type: append_log\n    path: /tmp/x\n",
    );
    assert!(e.starts_with("exchanges[1] (random-walk).ws_url: "), "{e}");
    let e = check(
        "exchanges:\n  - name: toy\n    symbols: [BTC-USD]\nwriters:\n  - type: append_log\n    name: audit\n    path: \"\"\n",
    );
    assert!(e.starts_with("writers[0] (audit).path: "), "{e}");
}
