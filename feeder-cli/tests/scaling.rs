//! Scaling out, end to end, with the real `crypto-feeder` binary: two redundant feeders on
//! one mock venue publish to a fresh Kafka topic of 3 partitions (tansu,
//! `FEEDER_TEST_KAFKA_BROKERS`, default `127.0.0.1:9092`); two sink workers, one consumer
//! group, read it back with the `kafka` source and write to PostgreSQL
//! (`FEEDER_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`), in a schema of
//! their own. Midway one feeder and one worker are killed with SIGKILL; the worker is later
//! started again. At the end every published trade is in PostgreSQL exactly once, and every
//! candle equals the trades stored in its interval.
//!
//! Also: two shards of one config, as `crypto-feeder validate` prints them, cover each
//! stream exactly once.
//!
//! Skipped with a note when Kafka or PostgreSQL is missing, unless `CI` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feeder_core::model::{Interval, Timestamp};
use feeder_testkit::venues::{MockCoinbase, MockConfig, MockTrade, MockVenue};
use rust_decimal::Decimal;

mod support;
use support::{answers, env_or, missing};

/// Longest wait for any one thing: a start, a store catching up, a takeover, an exit.
const WAIT: Duration = Duration::from_secs(60);

/// Trades published in each of the three phases (before the kills, between the kills and
/// the restart, after the restart).
const PHASE: usize = 240;

/// The candle intervals of the sink workers.
const INTERVALS: &[&str] = &["5m", "30m"];

/// A name unique to this run, fit for a topic, a group and a schema.
fn unique(prefix: &str) -> String {
    let t = Timestamp::now().unix_nanos() % 1_000_000_000_000;
    format!("{prefix}_{}_{t}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// Processes

/// One `crypto-feeder run`; killed if the test ends before it exits.
struct Proc {
    name: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Starts of this process so far; each writes a log of its own.
    starts: usize,
}

impl Proc {
    fn new(dir: &Path, name: &str, config: &str) -> Proc {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        Proc {
            name: name.to_owned(),
            config: path,
            log: dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        }
    }

    /// Starts it and waits (bounded) until it runs.
    async fn start(&mut self) {
        self.starts += 1;
        self.log = self
            .log
            .with_file_name(format!("{}-{}.log", self.name, self.starts));
        let child = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("FEEDER_TEST_SCALING_LOG").unwrap_or("info,librdkafka=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .expect("spawn crypto-feeder");
        self.child = Some(child);
        self.wait_log("running; send SIGINT or SIGTERM to stop", 1)
            .await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log holds `text` at least `n` times.
    async fn wait_log(&mut self, text: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(text).count() < n {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {text:?} {n} times:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no flush, no commit, no goodbye to the group.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status (bounded wait).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit after SIGTERM:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn feeder_config(mock: &MockVenue, brokers: &str, topic: &str) -> String {
    let symbols: Vec<String> = mock.symbols().iter().map(ToString::to_string).collect();
    format!(
        "exchanges:
  - name: coinbase
    symbols: [{symbols}]
    transport: websocket
    ws_url: {ws}
    rest_url: {rest}
    poll_interval: 200ms
    request_timeout: 2s
    stale_timeout: 1s
pipeline:
  max_clock_skew: 2d
  candles: []
writers:
  - type: kafka
    brokers: {brokers}
    topic: {topic}
    candles_topic: {topic}_candles
    create_topics: {{ partitions: 3, replication_factor: 1 }}
    batch_delay: 10ms
shutdown_timeout: 20s
",
        symbols = symbols.join(", "),
        ws = mock.ws_url(),
        rest = mock.rest_url(),
    )
}

fn worker_config(
    mock: &MockVenue,
    brokers: &str,
    topic: &str,
    group: &str,
    pg: &str,
    schema: &str,
) -> String {
    let symbols: Vec<String> = mock.symbols().iter().map(ToString::to_string).collect();
    format!(
        "exchanges:
  - name: kafka
    symbols: [{symbols}]
    options:
      brokers: {brokers}
      topic: {topic}
      group_id: {group}
      venues: [coinbase]
      commit_interval: 200ms
      librdkafka_options:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 500
pipeline:
  max_clock_skew: 2d
  candles: [{intervals}]
writers:
  - type: postgres
    url: {pg}
    schema: {schema}
    batch_delay: 10ms
shutdown_timeout: 20s
status_interval: 1s
",
        symbols = symbols.join(", "),
        intervals = INTERVALS.join(", "),
    )
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

async fn stored_trades(c: &tokio_postgres::Client, schema: &str) -> i64 {
    // The table appears with the first worker's start.
    match c
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".trades"), &[])
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 0,
    }
}

/// Waits (bounded) until the trades table holds `n` trades.
async fn wait_trades(c: &tokio_postgres::Client, schema: &str, n: usize, procs: &[&Proc]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = stored_trades(c, schema).await;
        if got >= n as i64 {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {}\n{}", p.name, p.log()))
                .collect();
            panic!("PostgreSQL holds {got} of {n} trades:\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stored trade: id, price, amount, side, nanoseconds.
type Row = (String, Decimal, Decimal, String, i64);

async fn trades_by_symbol(c: &tokio_postgres::Client, schema: &str) -> BTreeMap<String, Vec<Row>> {
    let rows = c
        .query(
            &format!(
                "SELECT symbol, trade_id, price, amount, side, timestamp_ns FROM \"{schema}\".trades \
                 WHERE exchange = 'coinbase' ORDER BY symbol, timestamp_ns, trade_id"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)));
    }
    out
}

/// A stored candle.
#[derive(Debug)]
struct StoredCandle {
    symbol: String,
    interval: String,
    open_ns: i64,
    close_ns: i64,
    ohlc: [Decimal; 4],
    volume: Decimal,
    trades: i64,
    complete: bool,
}

async fn candles(c: &tokio_postgres::Client, schema: &str) -> Vec<StoredCandle> {
    let rows = c
        .query(
            &format!(
                "SELECT symbol, \"interval\", \
                 (extract(epoch from open_time) * 1000000)::int8, \
                 (extract(epoch from close_time) * 1000000)::int8, \
                 open, high, low, close, volume, trades, complete \
                 FROM \"{schema}\".candles WHERE exchange = 'coinbase'"
            ),
            &[],
        )
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| StoredCandle {
            symbol: r.get(0),
            interval: r.get(1),
            open_ns: r.get::<_, i64>(2) * 1_000,
            close_ns: r.get::<_, i64>(3) * 1_000,
            ohlc: [r.get(4), r.get(5), r.get(6), r.get(7)],
            volume: r.get(8),
            trades: r.get(9),
            complete: r.get(10),
        })
        .collect()
}

/// Per symbol and interval, the intervals the published trades fall in, but the last (its
/// candle never closes: no later trade comes).
fn expected_candles(published: &[MockTrade]) -> BTreeSet<(String, String, i64)> {
    let mut want = BTreeSet::new();
    for i in INTERVALS {
        let len = Interval::parse(i).unwrap().nanos();
        let mut by_symbol: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for t in published {
            by_symbol
                .entry(t.symbol.to_string())
                .or_default()
                .insert(t.time.unix_nanos().div_euclid(len) * len);
        }
        for (symbol, mut opens) in by_symbol {
            opens.pop_last();
            for o in opens {
                want.insert((symbol.clone(), i.to_string(), o));
            }
        }
    }
    want
}

async fn wait_candles(
    c: &tokio_postgres::Client,
    schema: &str,
    want: &BTreeSet<(String, String, i64)>,
    procs: &[&Proc],
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: BTreeSet<(String, String, i64)> = candles(c, schema)
            .await
            .into_iter()
            .map(|c| (c.symbol, c.interval, c.open_ns))
            .collect();
        let left: Vec<_> = want.difference(&got).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {}\n{}", p.name, p.log()))
                .collect();
            panic!("candles missing: {left:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that each stored candle is its stored trades: open, high, low, close, volume and
/// count, over [open, close).
fn check_candles(stored: &[StoredCandle], trades: &BTreeMap<String, Vec<Row>>) {
    assert!(!stored.is_empty());
    for c in stored {
        assert!(c.complete, "a candle marked incomplete: {c:?}");
        let inside: Vec<&Row> = trades
            .get(&c.symbol)
            .map(|t| {
                t.iter()
                    .filter(|r| r.4 >= c.open_ns && r.4 < c.close_ns)
                    .collect()
            })
            .unwrap_or_default();
        assert!(!inside.is_empty(), "a candle without trades: {c:?}");
        let open = inside.first().unwrap().1;
        let close = inside.last().unwrap().1;
        let high = inside.iter().map(|r| r.1).max().unwrap();
        let low = inside.iter().map(|r| r.1).min().unwrap();
        let volume: Decimal = inside.iter().map(|r| r.2).sum();
        assert_eq!(
            (c.ohlc, c.volume.normalize(), c.trades),
            (
                [open, high, low, close],
                volume.normalize(),
                inside.len() as i64
            ),
            "candle {} {} at {} differs from its {} stored trades",
            c.symbol,
            c.interval,
            c.open_ns,
            inside.len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_feeders_and_two_sink_workers_survive_kills_with_each_trade_stored_once() {
    let brokers = env_or("FEEDER_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
    if !answers(brokers.split(',').next().unwrap_or_default()).await
        && missing("Kafka", &format!("nothing answers at {brokers}"))
    {
        return;
    }
    let pg_url = env_or(
        "FEEDER_TEST_PG_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    if tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
        .await
        .is_err()
        && missing("PostgreSQL", &format!("cannot connect to {pg_url}"))
    {
        return;
    }
    let schema = unique("scaling");
    let db = pg(&pg_url).await;
    let result = tokio::spawn(run(brokers, pg_url.clone(), schema.clone())).await;
    let _ = db
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn run(brokers: String, pg_url: String, schema: String) {
    let topic = unique("scaling_trades");
    let group = unique("scaling_sink");
    // Trades 20 s apart from a whole hour a day ahead: candles close by the trades' own
    // times.
    let hour = 3_600_000_000_000;
    let start = Timestamp::now().unix_nanos().div_euclid(hour) * hour + 24 * hour;
    let cfg = MockConfig {
        simulated_time: Some((
            Timestamp::from_unix_micros(start / 1_000),
            Duration::from_secs(20),
        )),
        ..MockConfig::default()
    };
    let mock = MockCoinbase::start_with(cfg)
        .await
        .expect("start mock coinbase");
    let dir = tempfile::tempdir().unwrap();
    let feeder = feeder_config(&mock, &brokers, &topic);
    let worker = worker_config(&mock, &brokers, &topic, &group, &pg_url, &schema);
    let mut feeder_a = Proc::new(dir.path(), "feeder-a", &feeder);
    let mut feeder_b = Proc::new(dir.path(), "feeder-b", &feeder);
    let mut worker_1 = Proc::new(dir.path(), "worker-1", &worker);
    let mut worker_2 = Proc::new(dir.path(), "worker-2", &worker);
    const RESYNCED: &str = "started the streams again from the stores";

    // The first feeder creates the topic, with its 3 partitions.
    feeder_a.start().await;
    feeder_b.start().await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    worker_1.start().await;
    worker_1.wait_log(RESYNCED, 1).await;
    worker_2.start().await;
    // The second member makes the group hand out the partitions again: each has some.
    worker_2.wait_log(RESYNCED, 1).await;
    worker_1.wait_log(RESYNCED, 2).await;

    // A worker with partitions counts as ready (health, status page).
    worker_2.wait_log("status: running ready", 1).await;

    mock.publish(PHASE);
    let db = pg(&pg_url).await;
    wait_trades(&db, &schema, PHASE, &[&worker_1, &worker_2]).await;

    // Lose one of each, without any chance to flush or commit. The group notices the dead
    // member when its session times out, and hands the partitions out again. (tansu keeps
    // the dead member as the group's leader and the surviving worker gets its own
    // partitions back only; a Kafka broker gives it all of them. Either way the dead
    // worker's partitions are read again from their last commit once it is back.)
    let resyncs = worker_2.log().matches(RESYNCED).count();
    feeder_a.kill();
    worker_1.kill();
    mock.publish(PHASE);
    worker_2.wait_log(RESYNCED, resyncs + 1).await;

    worker_1.start().await;
    worker_1.wait_log(RESYNCED, 1).await;
    wait_trades(&db, &schema, 2 * PHASE, &[&worker_1, &worker_2, &feeder_b]).await;
    mock.publish(PHASE);
    let published = mock.published();
    assert_eq!(published.len(), 3 * PHASE);
    wait_trades(&db, &schema, 3 * PHASE, &[&worker_1, &worker_2, &feeder_b]).await;
    let want = expected_candles(&published);
    wait_candles(&db, &schema, &want, &[&worker_1, &worker_2]).await;

    for p in [&mut worker_1, &mut worker_2, &mut feeder_b] {
        let status = p.terminate().await;
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            p.name,
            p.log()
        );
    }

    // Every published trade exactly once, as published.
    let stored = trades_by_symbol(&db, &schema).await;
    let count: usize = stored.values().map(Vec::len).sum();
    assert_eq!(count, published.len(), "trades stored");
    for t in &published {
        let rows = &stored[t.symbol.as_str()];
        let id = t.trade_id.to_string();
        let found: Vec<&Row> = rows.iter().filter(|r| r.0 == id).collect();
        assert_eq!(found.len(), 1, "trade {id} of {}", t.symbol);
        let r = found[0];
        assert_eq!(
            (r.1, r.2, r.4),
            (t.price, t.amount, t.time.unix_nanos()),
            "{t:?}"
        );
    }
    // Every candle that closed is there, and equals its trades.
    let stored_candles = candles(&db, &schema).await;
    let got: BTreeSet<(String, String, i64)> = stored_candles
        .iter()
        .map(|c| (c.symbol.clone(), c.interval.clone(), c.open_ns))
        .collect();
    assert!(
        want.is_subset(&got),
        "candles missing: {:?}",
        want.difference(&got)
    );
    check_candles(&stored_candles, &stored);
    eprintln!(
        "{} trades once each and {} candles equal to their trades, after killing a feeder and \
         a worker",
        published.len(),
        stored_candles.len()
    );
}

// ---------------------------------------------------------------------------------------
// Shards

fn validate(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .expect("run crypto-feeder validate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "validate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn two_shards_printed_by_validate_cover_each_stream_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let symbols = "[BTC-USD, ETH-USD, SOL-USD, XRP-USD, LTC-USD, ADA-USD]";
    let mut owners: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for index in 0..2 {
        let path = dir.path().join(format!("shard-{index}.yaml"));
        std::fs::write(
            &path,
            format!(
                "exchanges:\n  - name: coinbase\n    symbols: {symbols}\n  - name: bitstamp\n    symbols: {symbols}\n\
                 writers:\n  - type: log\nshard: {{ index: {index}, count: 2 }}\n"
            ),
        )
        .unwrap();
        let out = validate(&path);
        assert!(out.contains(&format!("shard {index} of 2 owns")), "{out}");
        for line in out.lines().filter(|l| l.starts_with("  ")) {
            owners
                .entry(line.trim().to_owned())
                .or_default()
                .push(index);
        }
    }
    assert_eq!(owners.len(), 12, "{owners:?}");
    for (stream, shards) in &owners {
        assert_eq!(shards.len(), 1, "{stream} in shards {shards:?}");
    }
    // Both shards have some: the hash spreads them.
    let zero = owners.values().filter(|s| s[0] == 0).count();
    assert!((1..12).contains(&zero), "{owners:?}");
}

#[test]
fn a_venue_refuses_the_options_only_sources_take() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("venue.yaml");
    std::fs::write(
        &path,
        "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\n    options:\n      brokers: h:1\n\
         writers:\n  - type: log\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run crypto-feeder validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("takes no options"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}
