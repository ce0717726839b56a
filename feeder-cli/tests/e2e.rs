//! End to end: the real `crypto-feeder` binary against each mock venue over each transport,
//! with faults in the middle, stopped by SIGTERM. Every trade the mock published must be in
//! the files exactly once, with exact price and amount, taker side and full-precision time.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feeder_core::exchange::Transport;
use feeder_core::model::{Candle, Event, Timestamp, Trade};
use feeder_testkit::venues::{MockBinance, MockBybit, MockKraken, MockOkx};
use feeder_testkit::venues::{MockBitfinex, MockGemini, MockHuobi};
use feeder_testkit::venues::{
    MockBitstamp, MockCoinbase, MockConfig, MockTrade, MockVenue, WsFault,
};
use feeder_testkit::venues::{ALSO_LISTED, HALTED};
use feeder_writers::file::parquet::read_parquet;

const WAIT: Duration = Duration::from_secs(30);

/// A running mock venue of any kind.
type Mock = Box<dyn Deref<Target = MockVenue> + Send + Sync>;

/// One venue under test: how to start its mock, and what its wire gives.
struct VenueCase {
    name: &'static str,
    /// Subscribe messages acknowledged per connection, for the default two symbols.
    subs_per_connection: usize,
    /// Whether the venue's REST API gives sub-second trade times (Bitstamp's does not).
    rest_has_subsecond_time: bool,
}

const VENUES: &[VenueCase] = &[
    VenueCase {
        name: "bitstamp",
        subs_per_connection: 2,
        rest_has_subsecond_time: false,
    },
    VenueCase {
        name: "coinbase",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "bitfinex",
        subs_per_connection: 2,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "gemini",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "huobi",
        subs_per_connection: 2,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "binance",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "bybit",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "okx",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
    VenueCase {
        name: "kraken",
        subs_per_connection: 1,
        rest_has_subsecond_time: true,
    },
];

async fn start_mock(name: &str, cfg: MockConfig) -> Mock {
    match name {
        "bitstamp" => Box::new(
            MockBitstamp::start_with(cfg)
                .await
                .expect("start mock bitstamp"),
        ),
        "coinbase" => Box::new(
            MockCoinbase::start_with(cfg)
                .await
                .expect("start mock coinbase"),
        ),
        "bitfinex" => Box::new(
            MockBitfinex::start_with(cfg)
                .await
                .expect("start mock bitfinex"),
        ),
        "gemini" => Box::new(
            MockGemini::start_with(cfg)
                .await
                .expect("start mock gemini"),
        ),
        "huobi" => Box::new(MockHuobi::start_with(cfg).await.expect("start mock huobi")),
        "binance" => Box::new(
            MockBinance::start_with(cfg)
                .await
                .expect("start mock binance"),
        ),
        "bybit" => Box::new(MockBybit::start_with(cfg).await.expect("start mock bybit")),
        "okx" => Box::new(MockOkx::start_with(cfg).await.expect("start mock okx")),
        "kraken" => Box::new(
            MockKraken::start_with(cfg)
                .await
                .expect("start mock kraken"),
        ),
        other => panic!("no mock for {other}"),
    }
}

fn case(name: &str) -> &'static VenueCase {
    VENUES
        .iter()
        .find(|v| v.name == name)
        .expect("venue in the table")
}

/// The feeder process; killed if a test fails before it exits.
struct Feeder {
    child: Option<Child>,
    log: PathBuf,
}

impl Feeder {
    fn start(dir: &Path, config: &str) -> Feeder {
        let path = dir.join("feeder.yaml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("feeder.log");
        let child = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info,feeder_core=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn crypto-feeder");
        let feeder = Feeder {
            child: Some(child),
            log,
        };
        // Ready once its signal handlers are in place and it runs.
        let deadline = Instant::now() + WAIT;
        while !feeder
            .log()
            .contains("running; send SIGINT or SIGTERM to stop")
        {
            assert!(
                Instant::now() < deadline,
                "crypto-feeder did not start:\n{}",
                feeder.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        feeder
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("crypto-feeder did not exit after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn config(
    mock: &MockVenue,
    venue: &str,
    transport: Transport,
    out: &Path,
    candles: &str,
) -> String {
    let symbols: Vec<String> = mock.symbols().iter().map(ToString::to_string).collect();
    format!(
        "exchanges:
  - name: {venue}
    symbols: [{symbols}]
    transport: {transport}
    ws_url: {ws}
    rest_url: {rest}
    poll_interval: 200ms
    request_timeout: 2s
    stale_timeout: 1s
pipeline:
  candles: {candles}
writers:
  - type: file
    path: {out}
    format: jsonl
    batch_delay: 10ms
shutdown_timeout: 10s
",
        symbols = symbols.join(", "),
        ws = mock.ws_url(),
        rest = mock.rest_url(),
        out = out.display(),
    )
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// The lines of a file the feeder may still be writing: a last line without its newline is
/// not written yet (or was never acknowledged) and is left out.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.rfind('\n').map_or("", |end| &text[..end]).lines()
}

/// Every event in every JSON lines file under `dir`.
fn read_events(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    for p in files_under(dir) {
        if p.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&p).unwrap();
            for line in complete_lines(&text) {
                events.push(
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", p.display())),
                );
            }
        }
    }
    events
}

/// The gap events among `events`.
fn gaps(events: &[Event]) -> Vec<feeder_core::model::Gap> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Gap(g) => Some(g.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a recorded gap of the stream says this trade may be missing: its id lies strictly
/// between the gap's bounds (an open-ended gap reaches to the end).
fn covered(gaps: &[feeder_core::model::Gap], exchange: &str, symbol: &str, id: u64) -> bool {
    gaps.iter().any(|g| {
        let num = |t: &feeder_core::model::TradeId| t.as_number().unwrap_or(0);
        &*g.exchange == exchange
            && g.symbol.as_str() == symbol
            && u128::from(id) > num(&g.after_trade_id)
            && g.before_trade_id
                .as_ref()
                .is_none_or(|b| u128::from(id) < num(b))
    })
}

fn trades(events: &[Event]) -> Vec<Trade> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(t.clone()),
            Event::Candle(_) | Event::Gap(_) => None,
        })
        .collect()
}

/// Waits until the files hold at least `n` trades.
async fn wait_for_trades(dir: &Path, n: usize, feeder: &Feeder) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = trades(&read_events(dir)).len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} trades reached the files:\n{}",
            feeder.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that every published trade is in the files exactly once, exactly as published.
fn check_exactly_once(published: &[MockTrade], stored: &[Trade], subsecond_everywhere: bool) {
    let mut by_key: HashMap<(String, String), Vec<&Trade>> = HashMap::new();
    for t in stored {
        by_key
            .entry((t.symbol.to_string(), t.trade_id.to_string()))
            .or_default()
            .push(t);
    }
    for p in published {
        let key = (p.symbol.to_string(), p.trade_id.to_string());
        let found = by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "trade {key:?} stored {} times", found.len());
        let t = found[0];
        if subsecond_everywhere || t.timestamp.digits() > 0 {
            assert!(p.matches(t), "stored {t:?}\npublished {p:?}");
        } else {
            // Only a trade recovered over a REST API without sub-second times may lack them.
            assert!(p.matches_to_the_second(t), "stored {t:?}\npublished {p:?}");
        }
    }
    assert_eq!(stored.len(), published.len(), "no extra trades");
}

async fn websocket_with_faults(venue: &str) {
    let case = case(venue);
    let mock = start_mock(venue, MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(
        dir.path(),
        &config(&mock, venue, Transport::Websocket, &out, "[1m]"),
    );
    let subs = case.subs_per_connection;
    let mut connections = 1;
    mock.wait_subscriptions(subs * connections, WAIT)
        .await
        .unwrap();

    mock.publish(30);
    wait_for_trades(&out, 30, &feeder).await;

    // A dropped socket: what is published meanwhile comes back over REST.
    mock.drop_connections();
    mock.publish(20);
    connections += 1;
    mock.wait_subscriptions(subs * connections, WAIT)
        .await
        .unwrap();
    wait_for_trades(&out, 50, &feeder).await;

    // A connection that goes silent: the stale timeout reconnects and backfills.
    mock.fault_next_connection(WsFault::StallAfter(5));
    mock.drop_connections();
    connections += 1;
    mock.wait_subscriptions(subs * connections, WAIT)
        .await
        .unwrap();
    mock.publish(20);
    connections += 1;
    mock.wait_subscriptions(subs * connections, WAIT)
        .await
        .unwrap();
    wait_for_trades(&out, 70, &feeder).await;

    // A malformed frame is skipped; the stream goes on.
    mock.send_malformed();
    mock.publish(30);
    wait_for_trades(&out, 100, &feeder).await;
    // The trades may all have come over REST while the frame still waited in the socket.
    let deadline = Instant::now() + WAIT;
    while !feeder
        .log()
        .contains("skipped a message that could not be parsed")
    {
        assert!(Instant::now() < deadline, "{}", feeder.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = feeder.terminate();
    let log = feeder.log();
    assert!(status.success(), "exit status {status:?}:\n{log}");
    let published = mock.published();
    assert_eq!(published.len(), 100);
    check_exactly_once(
        &published,
        &trades(&read_events(&out)),
        case.rest_has_subsecond_time,
    );
    assert!(
        log.contains("skipped a message that could not be parsed"),
        "{log}"
    );
}

async fn rest_with_faults(venue: &str) {
    let case = case(venue);
    let mock = start_mock(venue, MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(
        dir.path(),
        &config(&mock, venue, Transport::Rest, &out, "[]"),
    );
    mock.http_server().wait_requests(2, WAIT).await.unwrap();

    mock.publish(40);
    wait_for_trades(&out, 40, &feeder).await;
    // Rate limited, then a server error: the poller backs off and catches up.
    mock.fail_rest(2, 429);
    mock.fail_rest(2, 503);
    mock.publish(60);
    wait_for_trades(&out, 100, &feeder).await;

    let status = feeder.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        feeder.log()
    );
    check_exactly_once(
        &mock.published(),
        &trades(&read_events(&out)),
        case.rest_has_subsecond_time,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("bitstamp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("coinbase").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_rest_polls_everything_through_429_and_503() {
    rest_with_faults("bitstamp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_rest_polls_everything_through_429_and_503() {
    rest_with_faults("coinbase").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("bitfinex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("gemini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huobi_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("huobi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_rest_polls_everything_through_429_and_503() {
    rest_with_faults("bitfinex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_rest_polls_everything_through_429_and_503() {
    rest_with_faults("gemini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huobi_rest_polls_everything_through_429_and_503() {
    rest_with_faults("huobi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("binance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_rest_polls_everything_through_429_and_503() {
    rest_with_faults("binance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("bybit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_rest_polls_everything_through_429_and_503() {
    rest_with_faults("bybit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("okx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_rest_polls_everything_through_429_and_503() {
    rest_with_faults("okx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_websocket_survives_drop_stall_and_malformed_frames() {
    websocket_with_faults("kraken").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_rest_polls_everything_through_429_and_503() {
    rest_with_faults("kraken").await;
}

/// Recomputes a candle from trades, the brute-force way.
fn recompute(trades: &[&Trade], like: &Candle) -> Candle {
    let mut sorted: Vec<&&Trade> = trades.iter().collect();
    sorted.sort_by_key(|t| t.timestamp);
    let first = sorted[0];
    let last = sorted[sorted.len() - 1];
    Candle {
        open: first.price,
        close: last.price,
        high: sorted.iter().map(|t| t.price).max().unwrap(),
        low: sorted.iter().map(|t| t.price).min().unwrap(),
        volume: sorted.iter().map(|t| t.amount).sum(),
        trades: sorted.len() as u64,
        ..like.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_written_match_the_trades_in_the_same_output() {
    // Trades 20 s apart from a whole hour a day ahead: 600 trades cover 3h20m of 30m and 1h
    // candles. Being ahead of the wall clock, candles close by the trades' own times only,
    // and the last ones are still open at shutdown. That is further ahead than the default
    // `max_clock_skew` lets a trade be.
    let hour = 3_600_000_000_000;
    let start = Timestamp::now().unix_nanos().div_euclid(hour) * hour + 24 * hour;
    let start = Timestamp::from_unix_micros(start / 1_000);
    let cfg = MockConfig {
        simulated_time: Some((start, Duration::from_secs(20))),
        ..MockConfig::default()
    };
    let mock = start_mock("coinbase", cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(
        dir.path(),
        &config(&mock, "coinbase", Transport::Websocket, &out, "[30m, 1h]")
            .replace("pipeline:\n", "pipeline:\n  max_clock_skew: 2d\n"),
    );
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(600);
    wait_for_trades(&out, 600, &feeder).await;
    let status = feeder.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        feeder.log()
    );

    let events = read_events(&out);
    let trades = trades(&events);
    check_exactly_once(&mock.published(), &trades, true);
    let candles: Vec<Candle> = events
        .iter()
        .filter_map(|e| match e {
            Event::Candle(c) => Some(c.clone()),
            Event::Trade(_) | Event::Gap(_) => None,
        })
        .collect();
    // Per symbol, the last 30m and 1h intervals are still open at shutdown: not emitted.
    // 3h20m of trades: 6 closed 30m candles and 3 closed 1h candles per symbol.
    let count = |i: &str| {
        candles
            .iter()
            .filter(|c| c.interval.to_string() == i)
            .count()
    };
    assert_eq!((count("30m"), count("1h")), (12, 6), "{candles:#?}");
    for c in &candles {
        let inside: Vec<&Trade> = trades
            .iter()
            .filter(|t| {
                t.symbol == c.symbol && t.timestamp >= c.open_time && t.timestamp < c.close_time
            })
            .collect();
        assert!(!inside.is_empty());
        assert_eq!(c, &recompute(&inside, c), "candle differs from its trades");
        assert_eq!(c.revision, 0);
    }
}

/// Checks that `events` hold each candle once, each equal to the trades of its interval
/// that the same files hold, and complete; returns the count per interval.
fn check_candles(events: &[Event]) -> BTreeMap<String, usize> {
    let trades = trades(events);
    let mut seen = std::collections::BTreeSet::new();
    let mut count = BTreeMap::new();
    for e in events {
        let Event::Candle(c) = e else { continue };
        assert!(
            seen.insert((c.symbol.clone(), c.interval.to_string(), c.open_time)),
            "candle written twice: {c:?}"
        );
        let inside: Vec<&Trade> = trades
            .iter()
            .filter(|t| {
                t.symbol == c.symbol && t.timestamp >= c.open_time && t.timestamp < c.close_time
            })
            .collect();
        assert!(!inside.is_empty());
        assert_eq!(c, &recompute(&inside, c), "candle differs from its trades");
        assert!(c.complete, "{c:?}");
        *count.entry(c.interval.to_string()).or_insert(0) += 1;
    }
    count
}

/// Killed in the middle of a half hour and of an hour, then started again: the candles of
/// those intervals hold the trades of both runs (read back from the files) and equal them,
/// and none is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feeder_killed_mid_interval_restarts_with_candles_that_equal_their_trades() {
    // Trades 20 s apart from a whole hour a day ago (a replay: candles close by the trades'
    // own times), round-robin over two symbols.
    let hour = 3_600_000_000_000;
    let start = Timestamp::now().unix_nanos().div_euclid(hour) * hour - 24 * hour;
    let start = Timestamp::from_unix_micros(start / 1_000);
    let cfg = MockConfig {
        simulated_time: Some((start, Duration::from_secs(20))),
        ..MockConfig::default()
    };
    let mock = start_mock("coinbase", cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = config(&mock, "coinbase", Transport::Websocket, &out, "[30m, 1h]")
        .replace("pipeline:\n", "pipeline:\n  max_clock_skew: 2d\n");
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    // 40 minutes: the first half hour closes, the second and the first hour are open.
    mock.publish(120);
    wait_for_trades(&out, 120, &feeder).await;
    let deadline = Instant::now() + WAIT;
    while check_candles(&read_events(&out)).get("30m") != Some(&2) {
        assert!(Instant::now() < deadline, "{}", feeder.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    feeder.kill();
    let log_before = feeder.log();

    // Published while the feeder is down, then after it is back: up to 1h50m.
    mock.publish(30);
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    mock.publish(180);
    wait_for_trades(&out, 330, &feeder).await;
    let status = feeder.terminate();
    let log = feeder.log();
    assert!(
        status.success(),
        "exit status {status:?}:\n{log_before}\n{log}"
    );
    assert!(
        log.contains("rebuilt the open candles from the store"),
        "{log}"
    );

    let events = read_events(&out);
    check_exactly_once(&mock.published(), &trades(&events), true);
    // 1h50m of trades: three closed half hours and one closed hour per symbol; the rest is
    // open at shutdown.
    let count = check_candles(&events);
    assert_eq!(
        (count.get("30m"), count.get("1h")),
        (Some(&6), Some(&2)),
        "{count:?}"
    );
}

impl Feeder {
    /// Kills the process without warning, as a crash would.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_feeder_restarts_where_the_files_end_with_no_gap_and_no_duplicate() {
    let mock = start_mock("coinbase", MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = config(&mock, "coinbase", Transport::Websocket, &out, "[]");
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(50);
    wait_for_trades(&out, 50, &feeder).await;

    feeder.kill();
    // Published while the feeder is down: only a backfill can bring these.
    mock.publish(30);
    let log_before = feeder.log();
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    wait_for_trades(&out, 80, &feeder).await;
    mock.publish(20);
    wait_for_trades(&out, 100, &feeder).await;
    let status = feeder.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{log_before}\n{}",
        feeder.log()
    );
    check_exactly_once(&mock.published(), &trades(&read_events(&out)), true);
    assert!(
        feeder.log().contains("resuming after the stored trades"),
        "{}",
        feeder.log()
    );
}

/// Every trade in the Parquet parts under `dir` and, with `journals`, in the complete lines
/// of the journals of parts still being written.
fn parquet_trades(dir: &Path, journals: bool) -> Vec<Trade> {
    let mut out = Vec::new();
    for p in files_under(dir) {
        let name = p.to_string_lossy().into_owned();
        if name.ends_with(".parquet") {
            let events = read_parquet(&p).unwrap_or_else(|e| panic!("{}: {e:#?}", p.display()));
            out.extend(trades(&events));
        } else if journals && name.ends_with(".parquet.wal") {
            // Finished into its part and removed meanwhile: the part holds its trades.
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for line in complete_lines(&text) {
                if let Ok(Event::Trade(t)) = serde_json::from_str(line) {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// Waits until every trade `mock` published is in the Parquet parts or journals under `dir`.
async fn wait_for_parquet(dir: &Path, mock: &MockVenue, feeder: &Feeder, earlier_logs: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stored: std::collections::HashSet<(String, String)> = parquet_trades(dir, true)
            .iter()
            .map(|t| (t.symbol.to_string(), t.trade_id.to_string()))
            .collect();
        let missing = mock
            .published()
            .iter()
            .filter(|p| !stored.contains(&(p.symbol.to_string(), p.trade_id.to_string())))
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} published trades not stored:\n{earlier_logs}\n{}",
            feeder.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `format: parquet`, trades published while a killed feeder was down used to be lost:
/// Parquet did not say where it left off, so the restarted feeder began at the live stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feeder_writing_parquet_killed_again_and_again_backfills_every_outage_exactly_once() {
    let mock = start_mock("coinbase", MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let jsonl = config(&mock, "coinbase", Transport::Websocket, &out, "[]");
    let config = jsonl.replace("format: jsonl", "format: parquet");
    assert_ne!(config, jsonl);
    let mut feeder = Feeder::start(dir.path(), &config);
    let mut logs = String::new();
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(40);
    wait_for_parquet(&out, &mock, &feeder, &logs).await;

    // Trades published while the feeder is down, per outage (round-robin over two
    // products); one outage outlasts a page of the venue's REST API (1000 trades).
    let outages = [30, 2_500, 7, 400, 61];
    for (i, down) in outages.into_iter().enumerate() {
        // The process dies while these may still be on their way into the journals.
        mock.publish(25);
        feeder.kill();
        logs.push_str(&feeder.log());
        mock.publish(down);
        feeder = Feeder::start(dir.path(), &config);
        mock.wait_subscriptions(i + 2, WAIT).await.unwrap();
        mock.publish(20);
        wait_for_parquet(&out, &mock, &feeder, &logs).await;
        assert!(
            feeder.log().contains("resuming after the stored trades"),
            "restart {i}:\n{}",
            feeder.log()
        );
    }
    let status = feeder.terminate();
    logs.push_str(&feeder.log());
    assert!(status.success(), "exit status {status:?}:\n{logs}");

    // Every part finished, each kill's journal included.
    let stream = out.join("trades/coinbase");
    let mut journals = Vec::new();
    for product in std::fs::read_dir(&stream).unwrap() {
        for f in std::fs::read_dir(product.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            if !name.ends_with(".parquet") {
                journals.push(name);
            }
        }
    }
    assert!(journals.is_empty(), "left unfinished: {journals:?}");
    check_exactly_once(&mock.published(), &parquet_trades(&out, false), true);
}

/// Waits until every trade the mocks published is in the files; on timeout, names the
/// missing ones and keeps every feeder log in `target/chaos-feeder.log`.
async fn wait_for_all(
    dir: &Path,
    mocks: &[(&str, &MockVenue)],
    feeder: &Feeder,
    earlier_logs: &str,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = read_events(dir);
        let holes = gaps(&events);
        let stored: std::collections::HashSet<(String, String, String)> = trades(&events)
            .into_iter()
            .map(|t| {
                (
                    t.exchange.to_string(),
                    t.symbol.to_string(),
                    t.trade_id.to_string(),
                )
            })
            .collect();
        let missing: Vec<(String, String, String)> = mocks
            .iter()
            .flat_map(|(name, m)| {
                m.published().into_iter().map(move |p| {
                    (
                        name.to_string(),
                        p.symbol.to_string(),
                        p.trade_id.to_string(),
                    )
                })
            })
            .filter(|k| !stored.contains(k))
            .filter(|(e, s, id)| !covered(&holes, e, s, id.parse().unwrap_or(0)))
            .collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let all = format!("{earlier_logs}\n{}", feeder.log());
            let _ = std::fs::write(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chaos-feeder.log"),
                all,
            );
            panic!(
                "{} trades missing, first: {:?}",
                missing.len(),
                &missing[..missing.len().min(20)]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Faults the chaos run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    Drop,
    Stall,
    Malformed,
    VenueAsksReconnect,
    Heartbeat,
    Storm429,
    Storm5xx,
    Sigterm,
    Sigkill,
    StoreOutage,
    /// The venue's application hangs while its WebSocket library keeps pinging.
    HangPinging,
    /// Coinbase hangs while thousands of trades are published.
    LongOutage,
    /// SIGKILL, then more than a thousand trades per venue published before the restart.
    KillLongOutage,
    /// Bybit, whose REST API gives only its newest 60 trades, hangs for longer than that.
    NewestOnlyOutage,
}

/// Whether a run that ended on SIGTERM ended without losing anything: clean (0), or with
/// exceptions the data records itself (5: gaps where a venue cannot reach back).
fn lost_nothing(status: std::process::ExitStatus) -> bool {
    matches!(status.code(), Some(0 | 5))
}

/// The PostgreSQL the chaos run stores into, behind a proxy it can cut; `None` (skipped)
/// only when nothing answers and `CI` is unset.
async fn chaos_postgres() -> Option<(String, feeder_testkit::proxy::TcpProxy)> {
    let raw = std::env::var("FEEDER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut url = url::Url::parse(&raw).expect("FEEDER_TEST_PG_URL is a postgres:// URL");
    let addr: std::net::SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
    .parse()
    .expect("a numeric host:port");
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not reachable at {addr} and CI is set"
        );
        eprintln!("PostgreSQL not reachable at {addr}: the chaos run checks files only");
        return None;
    }
    let proxy = feeder_testkit::proxy::TcpProxy::start(addr).await.unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    Some((url.to_string(), proxy))
}

/// (exchange, symbol, trade_id) of every row of `table`.
async fn postgres_keys(url: &str, table: &str) -> Vec<(String, String, String)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query(
            &format!("SELECT exchange, symbol, trade_id FROM \"{table}\""),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// A bounded chaos run: Bitstamp and Coinbase mocks publish a known sequence while random
/// faults hit the sockets, the REST APIs and the feeder process itself (SIGTERM, SIGKILL and
/// restart). Every published trade must be in the files exactly once. `CHAOS_SEED` and
/// `CHAOS_ROUNDS` change the run; the report goes to stderr and `target/chaos-report.txt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_no_trade_lost_or_duplicated() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0c4a05);
    let rounds: usize = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(18);
    let mut rng = fastrand::Rng::with_seed(seed);

    let bitstamp = MockBitstamp::start().await.unwrap();
    let coinbase = MockCoinbase::start().await.unwrap();
    let bybit = MockBybit::start_with(MockConfig {
        symbols: ["BTC-USDT", "ETH-USDT"]
            .iter()
            .map(|s| feeder_core::model::Symbol::parse(s).unwrap())
            .collect(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let venue = |name: &str, m: &MockVenue| {
        let symbols: Vec<String> = m.symbols().iter().map(ToString::to_string).collect();
        format!(
            "  - name: {name}\n    symbols: [{}]\n    ws_url: {}\n    rest_url: {}\n    request_timeout: 2s\n    stale_timeout: 1s\n",
            symbols.join(", "),
            m.ws_url(),
            m.rest_url()
        )
    };
    let pg = chaos_postgres().await;
    let table = format!("chaos_trades_{}_{}", std::process::id(), seed);
    // The start-up bound covers the tables' set-up too, which can wait for the locks a
    // feeder killed a moment ago still holds until its server process notices; a cut store
    // refuses at once, so a longer bound does not slow the outages.
    let pg_writer = match &pg {
        Some((url, _)) => format!(
            "  - type: postgres\n    url: {url}\n    table: {table}\n    candles_table: {table}_candles\n    gaps_table: {table}_gaps\n    retry_max_delay: 500ms\n    connect_timeout: 15s\n    write_timeout: 3s\n"
        ),
        None => String::new(),
    };
    let config = format!(
        "exchanges:\n{}{}{}pipeline:\n  candles: [1m]\nwriters:\n  - type: file\n    path: {}\n{pg_writer}shutdown_timeout: 10s\n",
        venue("bitstamp", &bitstamp),
        venue("coinbase", &coinbase),
        venue("bybit", &bybit),
        out.display()
    );
    let mut feeder = Feeder::start(dir.path(), &config);
    let mut logs = String::new();
    let mut faults: std::collections::BTreeMap<Fault, usize> = Default::default();
    bitstamp.wait_subscriptions(2, WAIT).await.unwrap();
    coinbase.wait_subscriptions(1, WAIT).await.unwrap();
    bybit
        .wait_subscriptions(case("bybit").subs_per_connection, WAIT)
        .await
        .unwrap();

    let mocks: [&MockVenue; 3] = [&bitstamp, &coinbase, &bybit];
    let named = [
        ("bitstamp", &*bitstamp),
        ("coinbase", &*coinbase),
        ("bybit", &*bybit),
    ];
    // Resuming after a crash starts from what the stores hold: give every stream a first
    // stored trade in every store before the process itself comes under fire.
    for m in mocks {
        m.publish(8);
    }
    wait_for_trades(&out, 24, &feeder).await;
    if let Some((url, _)) = &pg {
        wait_for_rows(url, &table, 24).await;
    }
    for round in 0..rounds {
        for m in mocks {
            m.publish(rng.usize(5..40));
        }
        let m = mocks[rng.usize(0..mocks.len())];
        // An outage lasts one round: the store comes back before the next fault.
        if let Some((_, proxy)) = &pg {
            proxy.restore();
        }
        let fault = match rng.u8(0..14) {
            0 => Fault::Drop,
            1 => Fault::Stall,
            2 => Fault::Malformed,
            3 => Fault::VenueAsksReconnect,
            4 => Fault::Heartbeat,
            5 => Fault::Storm429,
            6 => Fault::Storm5xx,
            7 => Fault::Sigterm,
            8 => Fault::Sigkill,
            9 => Fault::HangPinging,
            10 => Fault::LongOutage,
            11 => Fault::KillLongOutage,
            12 => Fault::NewestOnlyOutage,
            _ => Fault::StoreOutage,
        };
        *faults.entry(fault).or_default() += 1;
        match fault {
            Fault::Drop => m.drop_connections(),
            Fault::Stall => {
                m.fault_next_connection(WsFault::StallAfter(rng.usize(0..5)));
                m.drop_connections();
            }
            Fault::Malformed => m.send_malformed(),
            Fault::HangPinging => {
                m.fault_next_connection(WsFault::HangAfter {
                    after: rng.usize(0..5),
                    ping_every: Duration::from_millis(100),
                });
                m.drop_connections();
            }
            Fault::LongOutage => {
                coinbase.fault_next_connection(WsFault::HangAfter {
                    after: 0,
                    ping_every: Duration::from_millis(100),
                });
                coinbase.drop_connections();
                coinbase.publish(rng.usize(2_500..3_500));
            }
            Fault::NewestOnlyOutage => {
                bybit.fault_next_connection(WsFault::HangAfter {
                    after: rng.usize(0..3),
                    ping_every: Duration::from_millis(100),
                });
                bybit.drop_connections();
                // More per symbol than the 60 Bybit's REST API still serves.
                bybit.publish(rng.usize(130..200));
            }
            Fault::VenueAsksReconnect => bitstamp.request_reconnect(),
            Fault::Heartbeat => {
                // A heartbeat between trades: harmless, but it goes through the gap logic.
                coinbase.heartbeat();
            }
            Fault::Storm429 | Fault::Storm5xx => {
                let status = if fault == Fault::Storm429 { 429 } else { 503 };
                m.fail_rest(rng.usize(1..4), status);
                // A reconnect makes the backfill run into the storm.
                m.drop_connections();
            }
            Fault::StoreOutage => match &pg {
                Some((_, proxy)) => proxy.cut(),
                None => m.drop_connections(),
            },
            Fault::Sigterm | Fault::Sigkill | Fault::KillLongOutage => {
                if fault == Fault::Sigterm {
                    let status = feeder.terminate();
                    assert!(
                        lost_nothing(status),
                        "round {round}: exit {status:?}\n{}",
                        feeder.log()
                    );
                } else {
                    feeder.kill();
                }
                logs.push_str(&feeder.log());
                // Published while the feeder is down.
                let n = if fault == Fault::KillLongOutage {
                    1_200..1_600
                } else {
                    1..20
                };
                for m in mocks {
                    m.publish(rng.usize(n.clone()));
                }
                feeder = Feeder::start(dir.path(), &config);
            }
        }
        if round % 3 == 2 {
            wait_for_all(&out, &named, &feeder, &logs).await;
        }
    }
    if let Some((_, proxy)) = &pg {
        proxy.restore();
    }
    wait_for_all(&out, &named, &feeder, &logs).await;
    let status = feeder.terminate();
    logs.push_str(&feeder.log());
    assert!(lost_nothing(status), "exit {status:?}\n{logs}");

    // Every feeder process's log, for whoever reads a failure.
    let _ = std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chaos-feeder.log"),
        &logs,
    );
    let events = read_events(&out);
    let stored = trades(&events);
    let holes = gaps(&events);
    let mut report = format!(
        "chaos seed={seed} rounds={rounds} faults injected={} {faults:?}\n",
        faults.values().sum::<usize>()
    );
    for (name, m, subsecond) in [
        ("bitstamp", &bitstamp as &MockVenue, false),
        ("coinbase", &coinbase, true),
        ("bybit", &bybit, true),
    ] {
        let published = m.published();
        let mine: Vec<Trade> = stored
            .iter()
            .filter(|t| &*t.exchange == name)
            .cloned()
            .collect();
        let mut seen = std::collections::HashSet::new();
        let duplicated = mine
            .iter()
            .filter(|t| !seen.insert((t.symbol.clone(), t.trade_id.clone())))
            .count();
        let is_stored = |p: &feeder_testkit::venues::MockTrade| {
            mine.iter()
                .any(|t| t.symbol == p.symbol && t.trade_id.as_str() == p.trade_id.to_string())
        };
        // A hole: a run of consecutive published trades of one symbol that were not stored.
        let mut made = 0;
        let mut in_hole: HashMap<String, bool> = HashMap::new();
        let mut missing = Vec::new();
        for p in &published {
            let open = in_hole.entry(p.symbol.to_string()).or_default();
            if is_stored(p) {
                *open = false;
            } else {
                made += usize::from(!*open);
                *open = true;
                missing.push(p.clone());
            }
        }
        // A hole recorded again after a crash keeps its start (`after_trade_id`): count
        // each start once.
        let listed = holes
            .iter()
            .filter(|g| &*g.exchange == name)
            .map(|g| (g.symbol.clone(), g.after_trade_id.clone()))
            .collect::<std::collections::HashSet<_>>()
            .len();
        let outside: Vec<_> = missing
            .iter()
            .filter(|p| !covered(&holes, name, p.symbol.as_str(), p.trade_id))
            .collect();
        report.push_str(&format!(
            "store=files exchange={name} published={} stored={} lost={} duplicated={duplicated} holes_made={made} gaps_listed={listed} missing_inside_gaps={}\n",
            published.len(),
            mine.len(),
            outside.len(),
            missing.len() - outside.len(),
        ));
        assert!(
            outside.is_empty(),
            "{report}lost outside any gap: {outside:?}"
        );
        assert_eq!(duplicated, 0, "{report}");
        assert_eq!(made, listed, "{report}every hole is listed once");
        let kept: Vec<_> = published.into_iter().filter(is_stored).collect();
        check_exactly_once(&kept, &mine, subsecond);
    }
    if let Some((url, _)) = &pg {
        // The table's primary key makes a duplicate impossible; count what is missing.
        let published: std::collections::HashSet<(String, String, String)> = named
            .iter()
            .flat_map(|(name, m)| {
                m.published().into_iter().map(move |p| {
                    (
                        name.to_string(),
                        p.symbol.to_string(),
                        p.trade_id.to_string(),
                    )
                })
            })
            .filter(|(e, s, id)| !covered(&holes, e, s, id.parse().unwrap_or(0)))
            .collect();
        let rows = postgres_keys(url, &table).await;
        let stored: std::collections::HashSet<_> = rows.iter().cloned().collect();
        let lost = published.difference(&stored).count();
        // Trades inside a recorded gap that were stored anyway are not extra.
        let extra = stored
            .difference(&published)
            .filter(|(e, s, id)| !covered(&holes, e, s, id.parse().unwrap_or(0)))
            .count();
        report.push_str(&format!(
            "store=postgres published={} stored={} lost={lost} duplicated={} extra={extra}\n",
            published.len(),
            rows.len(),
            rows.len() - stored.len()
        ));
        assert_eq!((lost, extra), (0, 0), "{report}");
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\", \"{table}_candles\", \"{table}_gaps\""
            ))
            .await;
    }
    eprint!("{report}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chaos-report.txt");
    let _ = std::fs::write(target, &report);
}

/// Waits (bounded) until the PostgreSQL table holds at least `n` trades.
async fn wait_for_rows(url: &str, table: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while postgres_keys(url, table).await.len() < n {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL never held {n} trades"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a local service answers; `false` (skip) only when `CI` is unset.
async fn service(name: &str, addr: &str) -> bool {
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not reachable at {addr} and CI is set"
    );
    eprintln!("{name} not reachable at {addr}: skipped");
    false
}

/// Every message of `topics` from the beginning (the writes were all acknowledged before).
fn kafka_events(brokers: &str, topics: &[String]) -> Vec<(String, Event)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
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
        out.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_postgres_and_kafka_agree_record_for_record() {
    let pg_url = std::env::var("FEEDER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let brokers =
        std::env::var("FEEDER_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    if !service("PostgreSQL", "127.0.0.1:5432").await || !service("Kafka", &brokers).await {
        return;
    }
    let tag = format!(
        "e2e_{}_{}",
        std::process::id(),
        Timestamp::now().unix_nanos()
    );
    let (trades_topic, candles_topic) = (format!("{tag}_trades"), format!("{tag}_candles"));
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let topics = [
            NewTopic::new(&trades_topic, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&candles_topic, 1, TopicReplication::Fixed(1)),
        ];
        for r in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap();
        }
    }

    let mock = start_mock("coinbase", MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stores = format!(
        "  - type: postgres\n    url: {pg_url}\n    table: {tag}_trades\n    candles_table: {tag}_candles\n  - type: kafka\n    brokers: {brokers}\n    topic: {trades_topic}\n    candles_topic: {candles_topic}\n"
    );
    let config = config(&mock, "coinbase", Transport::Websocket, &out, "[]")
        .replace("shutdown_timeout:", &format!("{stores}shutdown_timeout:"));
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(120);
    wait_for_trades(&out, 120, &feeder).await;
    mock.drop_connections();
    mock.publish(80);
    wait_for_trades(&out, 200, &feeder).await;
    let status = feeder.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        feeder.log()
    );

    let files = trades(&read_events(&out));
    check_exactly_once(&mock.published(), &files, true);

    // PostgreSQL: the same trades, field for field.
    let (client, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!(
                "SELECT exchange, symbol, trade_id, price, amount, side, timestamp_ns FROM \"{tag}_trades\""
            ),
            &[],
        )
        .await
        .unwrap();
    let mut pg: HashMap<
        (String, String),
        (rust_decimal::Decimal, rust_decimal::Decimal, String, i64),
    > = HashMap::new();
    for r in &rows {
        let exchange: String = r.get(0);
        assert_eq!(exchange, "coinbase");
        pg.insert(
            (r.get(1), r.get(2)),
            (r.get(3), r.get(4), r.get(5), r.get(6)),
        );
    }
    assert_eq!(rows.len(), files.len());
    for t in &files {
        let key = (t.symbol.to_string(), t.trade_id.to_string());
        let row = pg
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not in PostgreSQL"));
        assert_eq!(
            row,
            &(
                t.price,
                t.amount,
                t.side.to_string(),
                t.timestamp.unix_nanos()
            ),
            "{key:?}"
        );
    }

    // Kafka: the same events, byte for byte in their JSON form, keyed by stream.
    let topics = vec![trades_topic.clone()];
    let messages = tokio::task::spawn_blocking(move || kafka_events(&brokers, &topics))
        .await
        .unwrap();
    let mut kafka: HashMap<(String, String), Trade> = HashMap::new();
    for (key, event) in messages {
        let Event::Trade(t) = event else {
            panic!("a candle in the trades topic")
        };
        assert_eq!(key, format!("coinbase:{}", t.symbol));
        let dup = kafka.insert((t.symbol.to_string(), t.trade_id.to_string()), t);
        assert!(
            dup.is_none(),
            "a repeated message (at-least-once, but not expected here)"
        );
    }
    assert_eq!(kafka.len(), files.len());
    for t in &files {
        let key = (t.symbol.to_string(), t.trade_id.to_string());
        assert_eq!(kafka.get(&key), Some(t), "{key:?}");
    }
    let _ = client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{tag}_trades\", \"{tag}_candles\""
        ))
        .await;
}

#[test]
fn validate_names_the_bad_key_and_its_line_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\n    tranport: rest\nwriters:\n  - type: log\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: loading "), "{stderr}");
    assert!(
        stderr.contains("unknown field `tranport`") && stderr.contains("line 4"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("unknown field").count(),
        1,
        "said once: {stderr}"
    );

    std::fs::write(
        &path,
        "exchanges:\n  - name: nowhere\n    symbols: [BTC-USD]\nwriters:\n  - type: log\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown exchange \"nowhere\""), "{stderr}");
}

/// A bad duration is reported at its own key and line, not at the list item around it (it
/// once said `exchanges[0] ... at line 2`).
#[test]
fn validate_places_a_bad_duration_on_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\n    transport: rest\n    poll_interval: 5x\nwriters:\n  - type: log\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exchanges[0].poll_interval: invalid duration \"5x\""),
        "{stderr}"
    );
    assert!(stderr.contains(" at line 5 column "), "{stderr}");
}

#[test]
fn exchanges_lists_the_nine_venues_with_their_transports() {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .arg("exchanges")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for venue in [
        "binance", "bitfinex", "bitstamp", "bybit", "coinbase", "gemini", "huobi", "kraken", "okx",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(venue))
            .unwrap_or_else(|| panic!("{venue} missing:\n{stdout}"));
        assert!(line.contains("websocket, rest"), "{line}");
    }
}

/// A run whose exchange is never reached (nothing listens at its address) ends with an error
/// line naming it and a status of its own, not a quiet 0.
#[test]
fn a_run_whose_exchange_was_never_reached_names_it_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\n    ws_url: ws://127.0.0.1:{port}/\n    rest_url: http://127.0.0.1:{port}/\nwriters:\n  - type: file\n    path: {}\n",
        dir.path().join("out").display()
    );
    let mut feeder = Feeder::start(dir.path(), &config);
    let deadline = Instant::now() + WAIT;
    while !feeder.log().contains("connect failed") {
        assert!(Instant::now() < deadline, "{}", feeder.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = feeder.terminate();
    let log = feeder.log();
    assert_eq!(status.code(), Some(4), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("never reached"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("coinbase"),
        "{line}"
    );
}

/// Runs the binary with `args` off the runtime's threads, so the mocks keep answering.
async fn crypto_feeder(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// One venue's instrument list as its mock serves it, in the venue's own format.
struct ListingCase {
    venue: &'static str,
    /// The mock's symbols, spelled the usual way (the mock writes them the venue's way:
    /// Bitfinex's `BTCUST`, Kraken's `XBT/USD` and `XDG`, Huobi's `btcusdt`).
    symbols: &'static [&'static str],
    /// What `symbols` prints: the mock's symbols and [`ALSO_LISTED`], sorted.
    listed: &'static [&'static str],
    /// The symbol the venue lists but not as trading ([`HALTED`], in the venue's words),
    /// or `None` where the list names only what trades (Bitfinex).
    not_trading: Option<&'static str>,
    /// The instrument list's path and query, under the REST URL.
    list_path: &'static str,
}

const LISTINGS: &[ListingCase] = &[
    ListingCase {
        venue: "bitstamp",
        symbols: &["BTC-USD", "ETH-EUR"],
        listed: &["BTC-USD", "ETH-EUR", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "api/v2/trading-pairs-info/",
    },
    ListingCase {
        venue: "coinbase",
        symbols: &["BTC-USD", "ETH-USDT"],
        listed: &["BTC-USD", "ETH-USDT", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "products",
    },
    ListingCase {
        venue: "bitfinex",
        symbols: &["BTC-USDT", "LINK-USDT", "ETH-USD"],
        listed: &["BTC-USDT", "ETH-USD", "LINK-USDT", "LTC-BTC", "XMR-USD"],
        not_trading: None,
        list_path: "v2/conf/pub:list:pair:exchange",
    },
    ListingCase {
        venue: "gemini",
        symbols: &["BTC-USD", "ETH-BTC"],
        listed: &["BTC-USD", "ETH-BTC", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "v1/symbols",
    },
    ListingCase {
        venue: "huobi",
        symbols: &["BTC-USDT", "ETH-BTC"],
        listed: &["BTC-USDT", "ETH-BTC", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "v1/common/symbols",
    },
    ListingCase {
        venue: "binance",
        symbols: &["BTC-USDT", "ETH-BTC"],
        listed: &["BTC-USDT", "ETH-BTC", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "api/v3/exchangeInfo",
    },
    ListingCase {
        venue: "bybit",
        symbols: &["BTC-USDT", "ETH-USDC"],
        listed: &["BTC-USDT", "ETH-USDC", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "v5/market/instruments-info?category=spot",
    },
    ListingCase {
        venue: "okx",
        symbols: &["BTC-USDT", "ETH-USDC"],
        listed: &["BTC-USDT", "ETH-USDC", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "api/v5/public/instruments?instType=SPOT",
    },
    ListingCase {
        venue: "kraken",
        symbols: &["BTC-USD", "DOGE-USD"],
        listed: &["BTC-USD", "DOGE-USD", "LTC-BTC", "XMR-USD"],
        not_trading: Some(HALTED),
        list_path: "0/public/AssetPairs",
    },
];

/// A symbol no mock lists at all.
const UNLISTED: &str = "ZZZ-USD";

/// Every venue's mock, started with its listing case's symbols, in [`LISTINGS`] order.
async fn start_listing_mocks() -> Vec<Mock> {
    let mut mocks = Vec::with_capacity(LISTINGS.len());
    for case in LISTINGS {
        let symbols: Vec<_> = case.symbols.iter().map(|s| s.parse().unwrap()).collect();
        mocks.push(start_mock(case.venue, MockConfig::with_symbols(&symbols)).await);
    }
    mocks
}

/// `symbols` prints each venue's list in normalized form, sorted, for all nine venues:
/// Bitfinex's `tBTCUST` is `BTC-USDT`, Kraken's `XBT/USD` is `BTC-USD`, Huobi's `btcusdt` is
/// `BTC-USDT`, Gemini's `ethbtc` is `ETH-BTC` by its details; the pair each venue lists as not
/// trading (Kraken's `cancel_only`, Binance's `BREAK`, Gemini's `closed`, ...) and Gemini's
/// perpetual are left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_lists_a_venues_pairs_normalized_and_sorted() {
    assert_eq!(
        LISTINGS.len(),
        VENUES.len(),
        "every venue has a listing case"
    );
    let mocks = start_listing_mocks().await;
    for (case, mock) in LISTINGS.iter().zip(&mocks) {
        let venue = case.venue;
        let out = crypto_feeder(vec![
            "symbols".into(),
            venue.into(),
            "--rest-url".into(),
            mock.rest_url().to_string(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{venue}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().collect::<Vec<_>>(), case.listed, "{venue}");
        assert!(!stdout.contains(HALTED), "{venue}");
    }

    let out = crypto_feeder(vec!["symbols".into(), "nowhere".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown exchange \"nowhere\""));
}

/// `validate --online` over all nine venues in one config: it accepts symbols the venues
/// list and refuses, naming `exchanges[INDEX] (NAME): SYMBOL` for each and nothing else, one
/// a venue lists as not trading and one it does not list at all; without `--online` the
/// same config passes untouched. A venue whose list answers 500 fails the check with an
/// error naming the exchange and the URL, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_online_refuses_a_symbol_the_venue_does_not_list() {
    let mocks = start_listing_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feeder.yaml");
    let write = |extra: &[&str]| {
        let mut yaml = String::from("exchanges:\n");
        for (case, mock) in LISTINGS.iter().zip(&mocks) {
            let mut symbols: Vec<&str> = case.symbols.to_vec();
            symbols.push(ALSO_LISTED[1]);
            symbols.extend_from_slice(extra);
            yaml.push_str(&format!(
                "  - name: {}\n    symbols: [{}]\n    rest_url: {}\n",
                case.venue,
                symbols.join(", "),
                mock.rest_url()
            ));
        }
        yaml.push_str("writers:\n  - type: log\n");
        std::fs::write(&path, yaml).unwrap();
    };
    let validate = |online: bool| {
        let mut args = vec![
            "validate".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        if online {
            args.push("--online".into());
        }
        crypto_feeder(args)
    };

    write(&[]);
    let out = validate(true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("symbols listed"));

    // Listed but not trading (Bitfinex lists only what trades), and not listed at all.
    write(&[HALTED, UNLISTED]);
    let out = validate(true).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let named: Vec<&str> = stderr
        .trim_end()
        .split_once("symbols the venue does not list as trading: ")
        .map(|(_, list)| list.split("; ").collect())
        .unwrap_or_default();
    let mut want = Vec::new();
    for (i, case) in LISTINGS.iter().enumerate() {
        if let Some(s) = case.not_trading {
            assert!(
                stderr.contains(&format!("exchanges[{i}] ({}): {s}", case.venue)),
                "{}: {stderr}",
                case.venue
            );
        }
        want.push(format!("exchanges[{i}] ({}): {HALTED}", case.venue));
        want.push(format!("exchanges[{i}] ({}): {UNLISTED}", case.venue));
    }
    assert_eq!(named, want, "{stderr}");
    assert!(
        stderr.contains("exchanges[8] (kraken): OLD-USD"),
        "{stderr}"
    );
    assert!(!stderr.contains("BTC-USD;"), "{stderr}");

    let out = validate(false).await;
    assert!(
        out.status.success(),
        "offline: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each venue in turn cannot be listed: the check stops there and says which and where.
    write(&[]);
    for (i, (case, mock)) in LISTINGS.iter().zip(&mocks).enumerate() {
        mock.fail_rest(1, 500);
        let out = validate(true).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.venue);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let url = mock.rest_url().join(case.list_path).unwrap();
        assert!(
            stderr.contains(&format!("exchanges[{i}] ({})", case.venue)),
            "{}: {stderr}",
            case.venue
        );
        assert!(
            stderr.contains(&format!("http 500 from {url}")),
            "{}: {stderr}",
            case.venue
        );
    }
}

/// Rows of `table`.
async fn postgres_count(url: &str, table: &str) -> usize {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0);
    usize::try_from(n).unwrap()
}

/// Resident memory of process `pid`, in KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How far the flood runs ahead of the store, in trades: several times what the byte
/// budgets hold (1 MiB each, some five thousand trades), so they stay full all along.
const FLOOD_AHEAD: usize = 30_000;
/// The flood's length; the feeder's memory is sampled once a second meanwhile.
const FLOOD_SECONDS: usize = 60;
/// Most resident memory the feeder may reach under the flood.
const FLOOD_RSS_LIMIT_KIB: u64 = 96 << 10;
/// Most the feeder's memory may move over the flood's second half.
const FLOOD_RSS_DRIFT_KIB: u64 = 6 << 10;

/// A venue publishing faster than a slow store can take, for a minute, under
/// `when_full: block`: the byte budgets hold the feeder back (it stops reading the venue),
/// so its memory stays flat instead of growing with queues counted in batches, and every
/// published trade ends up stored once. Memory used to grow by ~90 MiB in three minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_into_a_slow_store_keeps_memory_flat_and_stores_every_trade() {
    let Some((url, proxy)) = chaos_postgres().await else {
        return;
    };
    // Every packet to and from the store waits: a store that stays slow all along.
    proxy.set_latency(Duration::from_millis(100));
    let mock = MockCoinbase::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = format!("flood_trades_{}", std::process::id());
    let symbols: Vec<String> = mock.symbols().iter().map(ToString::to_string).collect();
    let config = format!(
        "exchanges:
  - name: coinbase
    symbols: [{symbols}]
    ws_url: {ws}
    rest_url: {rest}
pipeline:
  candles: []
  buffer: 1MiB
writers:
  - type: postgres
    url: {url}
    table: {table}
    candles_table: {table}_candles
    gaps_table: {table}_gaps
    queue_bytes: 1MiB
    when_full: block
shutdown_timeout: 20s
",
        symbols = symbols.join(", "),
        ws = mock.ws_url(),
        rest = mock.rest_url(),
    );
    // The test reads the store around the proxy, at full speed.
    let mut direct = url::Url::parse(&url).unwrap();
    direct.set_port(Some(proxy.upstream().port())).unwrap();
    let direct = direct.to_string();
    let mut feeder = Feeder::start(dir.path(), &config);
    let pid = feeder.child.as_ref().expect("running").id();
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(10);
    wait_for_rows(&direct, &table, 10).await;

    let mut samples = Vec::with_capacity(FLOOD_SECONDS);
    let mut stored = 10;
    for _ in 0..FLOOD_SECONDS {
        let published = mock.published_count();
        if published < stored + FLOOD_AHEAD {
            mock.publish(stored + FLOOD_AHEAD - published);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss_kib(pid));
        stored = postgres_count(&direct, &table).await;
    }
    let published = mock.published_count();
    let half = &samples[samples.len() / 2..];
    let (low, high) = (*half.iter().min().unwrap(), *half.iter().max().unwrap());
    let peak = *samples.iter().max().unwrap();
    eprintln!(
        "flood: {published} trades published, {stored} stored after {FLOOD_SECONDS}s; \
         RSS KiB first {} peak {peak}, second half {low}..{high}; samples {samples:?}",
        samples[0]
    );

    // The flood ends: what the feeder held back reaches the store (bounded).
    let deadline = Instant::now() + Duration::from_secs(40);
    while postgres_count(&direct, &table).await < published {
        assert!(
            Instant::now() < deadline,
            "the store never caught up with the flood:\n{}",
            feeder.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.set_latency(Duration::ZERO);
    let status = feeder.terminate();
    assert_eq!(status.code(), Some(0), "{}", feeder.log());

    let mut keys: Vec<(String, String)> = postgres_keys(&direct, &table)
        .await
        .into_iter()
        .map(|(exchange, symbol, id)| {
            assert_eq!(exchange, "coinbase");
            (symbol, id)
        })
        .collect();
    keys.sort();
    let mut expected: Vec<(String, String)> = mock
        .published()
        .iter()
        .map(|t| (t.symbol.to_string(), t.trade_id.to_string()))
        .collect();
    expected.sort();
    assert!(
        keys == expected,
        "stored {} rows for {} published trades",
        keys.len(),
        expected.len()
    );
    assert!(
        peak < FLOOD_RSS_LIMIT_KIB,
        "RSS reached {peak} KiB: {samples:?}"
    );
    assert!(
        high - low < FLOOD_RSS_DRIFT_KIB,
        "RSS moved {} KiB over the second half: {samples:?}",
        high - low
    );
    assert!(
        published > stored + FLOOD_AHEAD / 2,
        "the store kept up, so this was no flood: {published} published, {stored} stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_parts_are_finished_while_the_feeder_runs() {
    // With `roll_interval: 1s`, each round's trades must show up in finished `.parquet`
    // parts (journals not counted) while the process is still running, not only at
    // shutdown or at a new UTC day.
    let mock = start_mock("coinbase", MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = config(&mock, "coinbase", Transport::Websocket, &out, "[30m]").replace(
        "    format: jsonl\n",
        "    format: parquet\n    roll_interval: 1s\n",
    );
    assert!(config.contains("roll_interval: 1s"), "{config}");
    let mut feeder = Feeder::start(dir.path(), &config);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let parts = |dir: &Path| {
        files_under(dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".parquet"))
            .count()
    };
    let mut finished_before = 0;
    for round in 1..=3 {
        mock.publish(40);
        let deadline = Instant::now() + WAIT;
        loop {
            let stored: std::collections::HashSet<(String, String)> = parquet_trades(&out, false)
                .iter()
                .map(|t| (t.symbol.to_string(), t.trade_id.to_string()))
                .collect();
            let missing = mock
                .published()
                .iter()
                .filter(|p| !stored.contains(&(p.symbol.to_string(), p.trade_id.to_string())))
                .count();
            if missing == 0 {
                break;
            }
            assert!(
                feeder.running(),
                "the feeder exited in round {round}:\n{}",
                feeder.log()
            );
            assert!(
                Instant::now() < deadline,
                "round {round}: {missing} trades not in a finished part while the feeder runs:\n{}",
                feeder.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(feeder.running(), "{}", feeder.log());
        // Each round's trades came in parts finished after the earlier rounds' parts.
        let finished = parts(&out);
        assert!(finished > finished_before, "round {round}: no new part");
        finished_before = finished;
    }
    let status = feeder.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        feeder.log()
    );
    // Nothing doubled across parts, and nothing left in journals after shutdown.
    check_exactly_once(&mock.published(), &parquet_trades(&out, false), true);
    assert_eq!(parquet_trades(&out, true).len(), mock.published().len());
}
