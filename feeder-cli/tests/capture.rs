//! Raw capture and replay, end to end with the real binary: a live session against a mock
//! venue, with a reconnect and a backfill in the middle, is captured; replaying the capture
//! gives exactly the trades and candles of the live run, byte for byte the same output on
//! every replay; a capture that runs out of room stops loudly while the feed goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feeder_core::exchange::capture::{capture_files, Kind, Reader};
use feeder_core::model::{Candle, Event, Timestamp, Trade};
use feeder_testkit::venues::{MockCoinbase, MockConfig, MockVenue};

const WAIT: Duration = Duration::from_secs(30);

/// A `crypto-feeder` process; killed if a test fails before it exits.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn start(args: &[&str], config: &Path, log: PathBuf) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,feeder_core=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn crypto-feeder");
        Process {
            child: Some(child),
            log,
        }
    }

    /// `crypto-feeder run`, once it runs.
    fn run(config: &Path, log: PathBuf) -> Process {
        let p = Process::start(&["run", "--quiet"], config, log);
        let deadline = Instant::now() + WAIT;
        while !p.log().contains("running; send SIGINT or SIGTERM to stop") {
            assert!(Instant::now() < deadline, "did not start:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("crypto-feeder did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.wait()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A config for the mock coinbase writing JSON lines into `out`, with `capture` (YAML
/// flow mapping) when given.
fn config(mock: &MockVenue, out: &Path, capture: Option<String>) -> String {
    let capture = capture
        .map(|c| format!("    capture: {c}\n"))
        .unwrap_or_default();
    format!(
        "exchanges:
  - name: coinbase
    symbols: [BTC-USD, ETH-USD]
    transport: websocket
    ws_url: {ws}
    rest_url: {rest}
    request_timeout: 2s
    stale_timeout: 2s
{capture}pipeline:
  candles: [1m, 5m]
  max_clock_skew: 2d
writers:
  - type: file
    path: {out}
    format: jsonl
    batch_delay: 10ms
shutdown_timeout: 10s
",
        ws = mock.ws_url(),
        rest = mock.rest_url(),
        out = out.display(),
    )
}

/// Every file under `dir`, at any depth, with its path relative to `dir`, sorted.
fn files_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
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
                files.push((p.strip_prefix(dir).unwrap().to_path_buf(), p));
            }
        }
    }
    files.sort();
    files
}

fn read_events(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    for (_, p) in files_under(dir) {
        if p.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&p).unwrap();
            for line in text.lines() {
                events.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    events
}

/// The trades and the candles of `events`, each sorted.
fn trades_and_candles(events: &[Event]) -> (Vec<Trade>, Vec<Candle>) {
    let mut trades = Vec::new();
    let mut candles = Vec::new();
    for e in events {
        match e {
            Event::Trade(t) => trades.push(t.clone()),
            Event::Candle(c) => candles.push(c.clone()),
            Event::Gap(_) => {}
        }
    }
    trades.sort_by(|a, b| {
        (a.symbol.as_str(), a.timestamp, a.trade_id.as_str()).cmp(&(
            b.symbol.as_str(),
            b.timestamp,
            b.trade_id.as_str(),
        ))
    });
    candles.sort_by(|a, b| {
        (a.symbol.as_str(), a.interval, a.open_time).cmp(&(
            b.symbol.as_str(),
            b.interval,
            b.open_time,
        ))
    });
    (trades, candles)
}

async fn wait_for_trades(dir: &Path, n: usize, p: &Process) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = trades_and_candles(&read_events(dir)).0.len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} trades stored:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Simulated trade times 20 s apart from a whole hour a day ahead: candles close by the
/// trades' own times, and 101 trades end 20 s into a minute for one symbol and on the minute
/// for the other, so that no candle is due within seconds of the end of the run.
fn simulated() -> MockConfig {
    let hour = 3_600_000_000_000;
    let start = Timestamp::now().unix_nanos().div_euclid(hour) * hour + 24 * hour;
    MockConfig {
        simulated_time: Some((
            Timestamp::from_unix_micros(start / 1_000),
            Duration::from_secs(20),
        )),
        ..MockConfig::default()
    }
}

fn replay(capture: &Path, config: &Path, speed: &str, log: PathBuf) -> String {
    let mut p = Process::start(
        &[
            "replay",
            "--capture",
            capture.to_str().unwrap(),
            "--speed",
            speed,
        ],
        config,
        log,
    );
    let status = p.wait();
    let log = p.log();
    assert!(status.success(), "replay exit {status:?}:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_session_replays_to_the_trades_and_candles_of_the_live_run_every_time() {
    let mock = MockCoinbase::start_with(simulated()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let live_out = dir.path().join("live");
    let live_cfg = dir.path().join("live.yaml");
    std::fs::write(
        &live_cfg,
        config(
            &mock,
            &live_out,
            Some(format!("{{ path: {}, rotate: 1s }}", capture.display())),
        ),
    )
    .unwrap();
    let mut feeder = Process::run(&live_cfg, dir.path().join("live.log"));
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(31);
    wait_for_trades(&live_out, 31, &feeder).await;
    // A dropped socket: what is published meanwhile comes back over REST after the
    // reconnect.
    mock.drop_connections();
    mock.publish(20);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    wait_for_trades(&live_out, 51, &feeder).await;
    mock.publish(50);
    wait_for_trades(&live_out, 101, &feeder).await;
    // The venue's heartbeats go on being recorded: a second file follows within a second.
    let deadline = Instant::now() + WAIT;
    while capture_files(&capture, "coinbase")
        .unwrap_or_default()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "the capture did not rotate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = feeder.terminate();
    let log = feeder.log();
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(log.contains("backfilled"), "{log}");

    let live = trades_and_candles(&read_events(&live_out));
    assert_eq!(live.0.len(), 101);
    assert!(live.1.len() >= 40, "candles closed live: {}", live.1.len());

    // The capture holds both connections, the backfill's request and answer, and what the
    // driver said of the streams, in order of receipt; rotation made several files.
    let files = capture_files(&capture, "coinbase").unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = i64::MIN;
    for f in &files {
        for r in Reader::open(f).unwrap() {
            let r = r.unwrap();
            assert!(r.time.unix_nanos() >= last, "records out of order");
            last = r.time.unix_nanos();
            *kinds.entry(format!("{:?}", r.kind)).or_default() += 1;
        }
    }
    for k in [
        Kind::Connect,
        Kind::WsText,
        Kind::HttpRequest,
        Kind::HttpResponse,
        Kind::Progress,
    ] {
        assert!(kinds.contains_key(&format!("{k:?}")), "{kinds:?}");
    }
    assert_eq!(kinds["Connect"], 2, "{kinds:?}");

    // Replayed twice, at full speed and at ten times the recorded pace.
    let mut outs = Vec::new();
    for (i, speed) in ["max", "10x"].into_iter().enumerate() {
        let out = dir.path().join(format!("replay{i}"));
        let cfg = dir.path().join(format!("replay{i}.yaml"));
        std::fs::write(&cfg, config(&mock, &out, None)).unwrap();
        replay(
            &capture,
            &cfg,
            speed,
            dir.path().join(format!("replay{i}.log")),
        );
        let replayed = trades_and_candles(&read_events(&out));
        assert_eq!(
            replayed.0, live.0,
            "the trades of the live run, received_at included"
        );
        assert_eq!(replayed.1, live.1, "the candles of the live run");
        outs.push(out);
    }
    let (a, b) = (files_under(&outs[0]), files_under(&outs[1]));
    assert_eq!(
        a.iter().map(|(rel, _)| rel).collect::<Vec<_>>(),
        b.iter().map(|(rel, _)| rel).collect::<Vec<_>>()
    );
    for ((rel, pa), (_, pb)) in a.iter().zip(&b) {
        let (x, y) = (std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
        assert!(x == y, "{} differs between two replays", rel.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_out_of_room_stops_loudly_and_the_feed_goes_on() {
    let mock = MockCoinbase::start_with(simulated()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let out = dir.path().join("out");
    let cfg = dir.path().join("feeder.yaml");
    // Room for the header and a first block only.
    std::fs::write(
        &cfg,
        config(
            &mock,
            &out,
            Some(format!(
                "{{ path: {}, compression: none, max_size: 3KiB }}",
                capture.display()
            )),
        ),
    )
    .unwrap();
    let mut feeder = Process::run(&cfg, dir.path().join("feeder.log"));
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(100);
    wait_for_trades(&out, 100, &feeder).await;
    let deadline = Instant::now() + WAIT;
    while !feeder.log().contains("capture stopped") {
        assert!(Instant::now() < deadline, "{}", feeder.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The feed goes on past the stop.
    mock.publish(100);
    wait_for_trades(&out, 200, &feeder).await;
    let status = feeder.terminate();
    let log = feeder.log();
    assert!(status.success(), "exit {status:?}:\n{log}");
    let ended = log
        .lines()
        .find(|l| l.contains("capture ended with raw records lost"))
        .unwrap_or_else(|| panic!("the loss is not reported:\n{log}"));
    let dropped: u64 = ended
        .split("dropped=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {ended:?}"));
    assert!(dropped >= 100, "{ended}");
    // What was captured before the stop reads back whole, within the limit.
    let files = capture_files(&capture, "coinbase").unwrap();
    let size: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(size <= 3 * 1024, "{size} bytes");
    for f in &files {
        assert!(Reader::open(f).unwrap().all(|r| r.is_ok()));
    }
}

/// The Python reader of the README's "Capture and replay" section.
fn readme_reader() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = &readme[readme.find("## Capture and replay").expect("the section")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let len = section[start..].find("```\n").expect("the block's end");
    section[start..start + len].to_owned()
}

/// Whether python3 with `zstandard` is here; without it the test fails in CI and is skipped
/// elsewhere (`.ci/services.d/zstandard.sh` installs it).
fn python_with_zstandard() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zstandard"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with zstandard is needed in CI (.ci/services.d/zstandard.sh)"
        );
        eprintln!("skipped: python3 with zstandard not found");
    }
    ok
}

/// What the README's reader prints for each record, as the Rust reader sees it.
fn lines_of(records: &[feeder_core::exchange::capture::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r.kind as u8,
                r.direction as u8,
                r.conn,
                r.time.unix_nanos(),
                r.tag_str(),
                r.payload.len()
            )
        })
        .collect()
}

#[test]
fn the_python_reader_of_the_readme_reads_what_the_feeder_writes_up_to_any_damage() {
    use feeder_core::config::{CaptureCompression, CaptureConfig};
    use feeder_core::exchange::capture::{Capture, Direction, Record};

    if !python_with_zstandard() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("read_capture.py");
    std::fs::write(&script, readme_reader()).unwrap();
    for compression in [CaptureCompression::Zstd, CaptureCompression::None] {
        let sub = dir.path().join(format!("{compression:?}"));
        let mut cfg = CaptureConfig::new(&sub);
        cfg.compression = compression;
        let capture = Capture::new("acme", cfg);
        let t0 = Timestamp::now().unix_nanos();
        for i in 0..3_000u64 {
            let kind = [Kind::WsText, Kind::HttpResponse, Kind::Progress][(i % 3) as usize];
            capture.record(Record {
                kind,
                direction: if i % 3 == 2 {
                    Direction::Local
                } else {
                    Direction::In
                },
                conn: i / 10,
                time: Timestamp::from_unix_nanos(t0 + i as i64, 9),
                tag: if i % 3 == 0 { "" } else { "BTC-USD" }.into(),
                payload: format!(
                    "{{\"i\":{i},\"x\":\"{}\"}}",
                    "ab".repeat((i % 700) as usize)
                )
                .into(),
            });
        }
        drop(capture);
        let files = capture_files(&sub, "acme").unwrap();
        assert_eq!(files.len(), 1);
        let whole = std::fs::read(&files[0]).unwrap();
        // The whole file, then the same cut short in its last quarter.
        for len in [whole.len(), whole.len() * 3 / 4] {
            let path = dir.path().join("cut.fcap");
            std::fs::write(&path, &whole[..len]).unwrap();
            let ours: Vec<_> = Reader::open(&path).unwrap().map_while(Result::ok).collect();
            if len == whole.len() {
                assert_eq!(ours.len(), 3_000);
            } else {
                assert!(ours.len() < 3_000 && ours.len() > 1_000, "{}", ours.len());
            }
            let out = Command::new("python3")
                .arg(&script)
                .arg(&path)
                .output()
                .expect("run python3");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(theirs, lines_of(&ours), "{compression:?}, {len} bytes");
        }
    }
}

#[test]
fn validate_refuses_a_capture_directory_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let cfg = dir.path().join("feeder.yaml");
    std::fs::write(
        &cfg,
        format!(
            "exchanges:
  - name: coinbase
    symbols: [BTC-USD]
    capture: {{ path: {} }}
writers:
  - type: log
",
            blocker.join("capture").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("capture.path"), "{err}");
}
