//! Running in production: the real `crypto-feeder` binary against a mock venue, watched the
//! way an operator would watch it. A real Prometheus scrapes its metrics, a stalled venue
//! turns `/health/ready` to 503 and back, tmux reads the live view, and headless Chromium
//! loads the status page.
//!
//! Prometheus, Chromium and tmux come from `.ci/services.d/`; without one (and without `CI`
//! set) its test says so and skips.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feeder_core::model::Timestamp;
use feeder_testkit::venues::{MockBitstamp, MockConfig, MockVenue, WsFault};

const WAIT: Duration = Duration::from_secs(60);

const BIN: &str = env!("CARGO_BIN_EXE_crypto-feeder");

/// True (after saying so) when `program` is not installed and the test may skip; with `CI`
/// set, a missing program fails the test.
fn missing(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is not installed (run .ci/services)"
    );
    eprintln!("SKIPPED: {program} is not installed (run .ci/services)");
    true
}

/// Prints what the test made for a person to look at (shown with `--nocapture`).
#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The feeder, running with its stderr in a file.
struct Feeder {
    proc: Option<Proc>,
    log: PathBuf,
}

impl Feeder {
    fn start(dir: &Path, config: &str, args: &[&str]) -> Feeder {
        let path = dir.join("feeder.yaml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("feeder.log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn crypto-feeder");
        let feeder = Feeder {
            proc: Some(Proc(child)),
            log,
        };
        feeder.wait_log("running; send SIGINT or SIGTERM to stop");
        feeder
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the status listener listens, from its log line.
    fn listen_addr(&self) -> SocketAddr {
        self.wait_log("serving /metrics");
        let log = self.log();
        let at = log.find("addr=").expect("the listener logs its address") + 5;
        let addr: String = log[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        addr.parse()
            .unwrap_or_else(|_| panic!("bad address {addr:?}"))
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn stop(&mut self) {
        let mut proc = self.proc.take().expect("running");
        let pid = proc.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = proc.0.try_wait().unwrap() {
                assert!(status.success(), "exit {status:?}:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "no exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A config with one writer of JSON lines files in `out`, the listener on a free port, and
/// `extra` at the top level.
fn config(mock: &MockVenue, out: &Path, extra: &str) -> String {
    format!(
        "exchanges:
  - name: bitstamp
    symbols: [BTC-USD, ETH-USD]
    transport: websocket
    ws_url: {ws}
    rest_url: {rest}
    request_timeout: 2s
    stale_timeout: 2s
pipeline:
  candles: [1m]
writers:
  - type: file
    path: {out}
    format: jsonl
    batch_delay: 10ms
    retry_max_delay: 1s
shutdown_timeout: 10s
metrics:
  listen: 127.0.0.1:0
{extra}",
        ws = mock.ws_url(),
        rest = mock.rest_url(),
        out = out.display(),
    )
}

/// `GET path` over HTTP/1.1: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Polls `f` every 20 ms until it returns `Some`, for at most [`WAIT`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Trades in the JSON lines files under `dir` (complete lines only).
fn trades_written(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let done = text.rfind('\n').map_or("", |end| &text[..end]);
                n += done
                    .lines()
                    .filter(|l| l.starts_with("{\"type\":\"trade\""))
                    .count();
            }
        }
    }
    n
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of a Prometheus instant query with one result, once it has one.
fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let path = format!(
        "/api/v1/query?query={}",
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let (code, body) = get(prom, &path);
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_every_trade_the_files_hold() {
    if missing("prometheus") {
        return;
    }
    let mock = MockBitstamp::start_with(MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(dir.path(), &config(&mock, &out, ""), &["--quiet"]);
    let metrics = feeder.listen_addr();
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    mock.publish(120);
    poll("the trades in the files", || {
        (trades_written(&out) == 120).then_some(())
    });

    // Prometheus, on a port of its own, scraping the feeder every second.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: crypto-feeder\n    static_configs:\n\
             \x20     - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prom_dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("spawn prometheus"),
    );
    let written = trades_written(&out) as f64;
    let counted = poll("Prometheus to hold the trade counter", || {
        TcpStream::connect(prom).ok()?;
        query(prom, "sum(crypto_feeder_trades_total)").filter(|&v| v == written)
    });
    assert_eq!(counted, 120.0);
    // The writer stored each of them (and the candles and gaps, if any).
    let stored = poll("the writer's events", || {
        query(prom, "sum(crypto_feeder_writer_events_total)").filter(|&v| v >= written)
    });
    assert!(stored >= 120.0, "{stored}");
    assert_eq!(query(prom, "crypto_feeder_ready"), Some(1.0));
    assert_eq!(
        query(prom, "sum(crypto_feeder_duplicates_total)"),
        Some(0.0)
    );
    let rss = query(prom, "process_resident_memory_bytes{job=\"crypto-feeder\"}").unwrap();
    assert!(rss > 1e6, "resident memory {rss}");
    feeder.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_503_while_the_venue_stalls_and_200_once_it_recovers() {
    let mock = MockBitstamp::start_with(MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(dir.path(), &config(&mock, &out, ""), &["--quiet"]);
    let addr = feeder.listen_addr();
    assert_eq!(get(addr, "/health/live").0, 200);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    mock.publish(10);
    poll("ready", || {
        (get(addr, "/health/ready").0 == 200).then_some(())
    });
    poll("the first trades", || {
        (trades_written(&out) == 10).then_some(())
    });

    // The venue hangs: its application answers nothing (its WebSocket library still pings),
    // and its REST API fails, so the hole cannot be filled for a while.
    mock.fault_next_connection(WsFault::HangAfter {
        after: 0,
        ping_every: Duration::from_millis(500),
    });
    mock.fail_rest(6, 503);
    mock.drop_connections();
    let body = poll("503", || {
        let (code, body) = get(addr, "/health/ready");
        (code == 503).then_some(body)
    });
    let status: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(status["ready"], false);
    let streams = status["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{body}");
    assert!(
        streams
            .iter()
            .all(|s| s["ready"] == false && s["state"] != "live"),
        "{body}"
    );
    assert_eq!(status["writers"][0]["state"], "ok", "{body}");
    mock.publish(10);

    // The stale timeout gives up the hung connection; REST answers again; the hole fills.
    let body = poll("200 again", || {
        let (code, body) = get(addr, "/health/ready");
        (code == 200).then_some(body)
    });
    assert!(body.contains("\"state\": \"live\""), "{body}");
    poll("every trade", || (trades_written(&out) == 20).then_some(()));
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains("crypto_feeder_reconnects_total{exchange=\"bitstamp\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("crypto_feeder_reconnects_total{exchange=\"bitstamp\"} 0\n"));
    feeder.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_line_is_logged_every_interval_off_a_terminal_and_never_when_quiet() {
    let mock = MockBitstamp::start_with(MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cfg = config(&mock, &out, "status_interval: 1s\n");
    let mut feeder = Feeder::start(dir.path(), &cfg, &[]);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    mock.publish(6);
    poll("the trades", || (trades_written(&out) == 6).then_some(()));
    feeder.wait_log("status: running ready, streams 2/2 live, trades 6");
    let log = feeder.log();
    let line = log
        .lines()
        .find(|l| l.contains("status: running ready, streams 2/2 live, trades 6"))
        .unwrap();
    assert!(
        line.contains("writer file ok queue=0 errors=0 dropped=0"),
        "{line}"
    );
    assert!(
        !log.contains("\x1b["),
        "no terminal control codes off a terminal"
    );
    feeder.stop();

    // Quiet: the same run logs no status line, however long it runs.
    let quiet_dir = dir.path().join("quiet");
    std::fs::create_dir_all(&quiet_dir).unwrap();
    let mut quiet = Feeder::start(&quiet_dir, &cfg, &["--quiet"]);
    let addr = quiet.listen_addr();
    poll("three intervals of uptime", || {
        let (_, body) = get(addr, "/health/ready");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["uptime_seconds"].as_f64()? > 3.0).then_some(())
    });
    assert!(!quiet.log().contains("status: "), "{}", quiet.log());
    quiet.stop();
}

/// tmux on a server socket of its own, killed at the end.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_view_shows_each_stream_and_writer_in_a_terminal() {
    if missing("tmux") {
        return;
    }
    let mock = MockBitstamp::start_with(MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("feeder.yaml");
    std::fs::write(&path, config(&mock, &out, "")).unwrap();
    let tmux = Tmux {
        socket: format!("crypto-feeder-test-{}", std::process::id()),
    };
    let cmd = format!("{BIN} run --config {}", path.display());
    let started = Command::new("tmux")
        .args([
            "-L",
            &tmux.socket,
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            &cmd,
        ])
        .status()
        .expect("run tmux");
    assert!(started.success(), "tmux new-session: {started:?}");
    if mock.wait_subscriptions(2, WAIT).await.is_err() {
        panic!(
            "no subscription; screen:\n{}",
            tmux.run(&["capture-pane", "-p"])
        );
    }
    mock.publish(8);
    poll("the trades", || (trades_written(&out) == 8).then_some(()));
    let screen = poll("the live view", || {
        let screen = tmux.run(&["capture-pane", "-p"]);
        let ready = screen.contains("crypto-feeder running READY");
        let live = screen.matches(" live ").count() == 2;
        (ready && live && screen.contains("queue      0")).then_some(screen)
    });
    let line = |needle: &str| {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} on screen:\n{screen}"))
            .to_owned()
    };
    assert!(
        line("── crypto-feeder running READY").contains("trades/s"),
        "{screen}"
    );
    for sym in ["BTC-USD", "ETH-USD"] {
        let l = line(&format!("bitstamp   {sym}"));
        assert!(
            l.contains("live") && l.contains("/s") && l.contains("lag"),
            "{l}"
        );
    }
    let w = line("writer file");
    assert!(
        w.contains("ok") && w.contains("errors 0") && w.contains("dropped 0"),
        "{w}"
    );
    // The block is redrawn in place: one head line however long it runs.
    assert_eq!(screen.matches("── crypto-feeder").count(), 1, "{screen}");
    // Log lines stay above the block.
    let log_at = screen
        .find("running; send SIGINT")
        .expect("the log is on screen");
    assert!(
        log_at < screen.find("── crypto-feeder").unwrap(),
        "{screen}"
    );
    tmux.run(&["send-keys", "C-c"]);
    poll("the summary", || {
        let screen = tmux.run(&["capture-pane", "-p", "-S", "-100"]);
        (screen.contains("exchange bitstamp") || screen.is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_chromium_shows_every_stream_on_the_status_page() {
    if missing("chromium") {
        return;
    }
    // Trades ten simulated seconds apart, an hour ago: a few minutes of candles at once.
    let an_hour_ago = Timestamp::from_unix_secs(Timestamp::now().unix_secs() / 60 * 60 - 3600);
    let mock = MockBitstamp::start_with(MockConfig {
        simulated_time: Some((an_hour_ago, Duration::from_secs(5))),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(dir.path(), &config(&mock, &out, ""), &["--quiet"]);
    let addr = feeder.listen_addr();
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    mock.publish(200);
    poll("the trades", || (trades_written(&out) == 200).then_some(()));
    poll("ready", || {
        (get(addr, "/health/ready").0 == 200).then_some(())
    });

    let url = format!("http://{addr}/");
    let profile = dir.path().join("chromium");
    let chromium = |extra: &[String]| {
        let out = dir.path().join("chromium.out");
        let mut child = Proc(
            Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--disable-dev-shm-usage",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(&url)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromium"),
        );
        let status = poll("chromium", || child.0.try_wait().unwrap());
        assert!(status.success(), "chromium: {status:?}");
        std::fs::read_to_string(&out).unwrap()
    };
    let dom = chromium(&["--dump-dom".to_owned()]);
    assert!(dom.contains("<title>crypto-feeder status</title>"), "{dom}");
    for sym in ["BTC-USD", "ETH-USD"] {
        assert!(
            dom.contains(&format!("data-exchange=\"bitstamp\" data-symbol=\"{sym}\"")),
            "{sym} is not listed:\n{dom}"
        );
    }
    assert!(dom.contains(">live<"), "{dom}");
    assert!(
        dom.contains("class=\"candle\""),
        "candles are drawn:\n{dom}"
    );
    assert!(
        dom.contains("<td>file</td>"),
        "the writer is listed:\n{dom}"
    );

    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in target/<profile>/");
    let shot = target.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,900".to_owned(),
    ]);
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    say(&format!("status page screenshot: {}", shot.display()));
    feeder.stop();
}
