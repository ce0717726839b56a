//! One run of the real `crypto-feeder` binary with four writers at once: JSON lines files,
//! syslog over TCP to an rsyslogd the test starts on a free loopback port, NATS JetStream
//! (`FEEDER_TEST_NATS_URL`, default `nats://127.0.0.1:4222`) and Redis
//! (`FEEDER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). After SIGTERM every store is
//! read back and must hold the same events as the files, each exactly once (candles at their
//! highest revision). NATS and Redis are written under names unique to the run, deleted at
//! the end. Skipped with a note when a server or rsyslogd is missing, unless `CI` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use feeder_core::model::{Event, Interval, Timestamp};
use feeder_testkit::venues::{MockCoinbase, MockConfig, MockTrade, MockVenue};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;

mod support;
use support::{answers, env_or, missing};

/// Longest wait for any one thing: a start, a store catching up, an exit.
const WAIT: Duration = Duration::from_secs(30);

/// Trades published: 20 s apart in simulated time, round-robin over two symbols, so a
/// little over two hours of 5m, 30m and 1h candles.
const TRADES: usize = 400;

/// The candle intervals of the run.
const INTERVALS: &[&str] = &["5m", "30m", "1h"];

// ---------------------------------------------------------------------------------------
// Skipping

/// `host:port` of a URL like `scheme://user:pass@host:port/db`.
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit('@').next().unwrap_or_default();
    let rest = rest.split('/').next().unwrap_or_default();
    if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:{default_port}")
    }
}

/// A name unique to this run.
fn unique(prefix: &str) -> String {
    let t = Timestamp::now().unix_nanos() % 1_000_000_000_000;
    format!("{prefix}_{}_{t}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// rsyslogd

/// The rsyslogd binary, if installed.
fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join("rsyslogd"))
        .find(|p| p.exists())
}

/// A free loopback TCP port.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An unprivileged rsyslogd of this test: TCP on 127.0.0.1:`port`, every raw message of
/// that input one line of `out.log` in its own directory. Killed when dropped.
struct Rsyslog {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    async fn start(bin: &Path) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        // rsyslog's own messages go to the default ruleset, which has no action: only what
        // arrives on the input reaches the file.
        let conf = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
             module(load=\"imtcp\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"fanout\") {{\n\
             action(type=\"omfile\" file=\"{out}\" template=\"raw\")\n}}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"fanout\")\n",
            work = work.display(),
            out = dir.path().join("out.log").display(),
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start rsyslogd");
        let mut rs = Rsyslog {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = rs.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("rsyslogd exited with {status} at start:\n{}", rs.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}:\n{}",
                rs.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rs
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Stops rsyslogd with SIGTERM (it writes out what it holds) and waits for its exit.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rsyslogd did not stop after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events of every complete message line so far. Each message must be RFC 5424
    /// with the event's type as MSGID and the event's JSON as MSG.
    fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default();
        complete_lines(&text)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let parts: Vec<&str> = line.splitn(8, ' ').collect();
                assert_eq!(parts.len(), 8, "not an RFC 5424 message: {line:?}");
                assert!(parts[0].ends_with(">1"), "{line:?}");
                let event: Event = serde_json::from_str(parts[7])
                    .unwrap_or_else(|e| panic!("MSG is not an event ({e}): {line:?}"));
                assert_eq!(parts[5], kind(&event), "MSGID of {line:?}");
                event
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The feeder

/// The feeder process; killed if the test fails before it exits.
struct Feeder {
    child: Option<Child>,
    log: PathBuf,
}

impl Feeder {
    async fn start(dir: &Path, config: &str) -> Feeder {
        let path = dir.join("feeder.yaml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("feeder.log");
        let child = Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn crypto-feeder");
        let mut feeder = Feeder {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + WAIT;
        while !feeder
            .log()
            .contains("running; send SIGINT or SIGTERM to stop")
        {
            if let Some(status) = feeder.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("crypto-feeder exited with {status}:\n{}", feeder.log());
            }
            assert!(
                Instant::now() < deadline,
                "crypto-feeder did not start:\n{}",
                feeder.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        feeder
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
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
                panic!("crypto-feeder did not exit after SIGTERM:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// Where the run writes, besides the files.
struct Stores {
    syslog: String,
    nats_url: String,
    stream: String,
    subjects: String,
    redis_url: String,
    keys: String,
}

fn config(mock: &MockVenue, out: &Path, s: &Stores) -> String {
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
  candles: [{intervals}]
writers:
  - type: file
    path: {out}
    format: jsonl
    batch_delay: 10ms
  - type: syslog
    address: {syslog}
    protocol: tcp
    batch_delay: 10ms
    connect_timeout: 3s
    write_timeout: 5s
  - type: nats
    url: {nats}
    stream: {stream}
    subject: {subjects}.trades.{{exchange}}.{{symbol}}
    candles_subject: {subjects}.candles.{{exchange}}.{{symbol}}.{{interval}}
    gaps_subject: {subjects}.gaps.{{exchange}}.{{symbol}}
    connect_timeout: 5s
    ack_timeout: 5s
    create_stream:
      storage: memory
    batch_delay: 10ms
  - type: redis
    url: {redis}
    key: {keys}:trades:{{exchange}}:{{symbol}}
    candles_key: {keys}:candles:{{exchange}}:{{symbol}}:{{interval}}
    gaps_key: {keys}:gaps:{{exchange}}:{{symbol}}
    connect_timeout: 5s
    write_timeout: 5s
    batch_delay: 10ms
shutdown_timeout: 20s
",
        symbols = symbols.join(", "),
        ws = mock.ws_url(),
        rest = mock.rest_url(),
        intervals = INTERVALS.join(", "),
        out = out.display(),
        syslog = s.syslog,
        nats = s.nats_url,
        stream = s.stream,
        subjects = s.subjects,
        redis = s.redis_url,
        keys = s.keys,
    )
}

// ---------------------------------------------------------------------------------------
// Reading back

/// The lines of a file that may still be written: a last line without its newline is left
/// out.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.rfind('\n').map_or("", |end| &text[..end]).lines()
}

/// Every event of every JSON lines file under `dir`.
fn file_events(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                let text = std::fs::read_to_string(&p).unwrap();
                for line in complete_lines(&text) {
                    events.push(
                        serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", p.display())),
                    );
                }
            }
        }
    }
    events
}

fn kind(e: &Event) -> &'static str {
    match e {
        Event::Trade(_) => "trade",
        Event::Candle(_) => "candle",
        Event::Gap(_) => "gap",
    }
}

/// What identifies an event in a store (a candle without its revision).
fn identity(e: &Event) -> String {
    match e {
        Event::Trade(t) => format!("trade|{}|{}|{}", t.exchange, t.symbol, t.trade_id),
        Event::Candle(c) => format!(
            "candle|{}|{}|{}|{}",
            c.exchange,
            c.symbol,
            c.interval,
            c.open_time.unix_nanos()
        ),
        Event::Gap(g) => format!("gap|{}|{}|{}", g.exchange, g.symbol, g.after_trade_id),
    }
}

/// The multiset a store holds, as canonical JSON lines of the parsed events with how often
/// each occurs; of a candle only its highest revision counts (the earlier ones are
/// superseded).
fn multiset(events: &[Event]) -> BTreeMap<String, usize> {
    let mut highest: BTreeMap<String, u32> = BTreeMap::new();
    for e in events {
        if let Event::Candle(c) = e {
            let r = highest.entry(identity(e)).or_insert(c.revision);
            *r = (*r).max(c.revision);
        }
    }
    let mut out = BTreeMap::new();
    for e in events {
        if let Event::Candle(c) = e {
            if highest[&identity(e)] != c.revision {
                continue;
            }
        }
        *out.entry(serde_json::to_string(e).unwrap()).or_insert(0) += 1;
    }
    out
}

/// Checks that `store` holds exactly the events of the files, each once.
fn check_same(name: &str, store: &[Event], files: &BTreeMap<String, usize>) {
    let got = multiset(store);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{name} holds events more than once: {twice:#?}"
    );
    let missing: Vec<_> = files.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !files.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name} differs from the files:\nmissing {missing:#?}\nextra {extra:#?}"
    );
    assert_eq!(&got, files, "{name}");
}

/// Every message of `stream`, each checked to carry a `Nats-Msg-Id` and a subject under
/// `prefix` of its kind.
async fn nats_events(js: &jetstream::Context, stream: &str, prefix: &str) -> Vec<Event> {
    let mut s = js.get_stream(stream).await.expect("the NATS stream");
    let total = s.info().await.expect("stream info").state.messages as usize;
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::with_capacity(total);
    let mut ids = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < total {
        let m = tokio::time::timeout_at(deadline, messages.next())
            .await
            .unwrap_or_else(|_| panic!("read {} of {total} NATS messages", out.len()))
            .expect("the consumer ended")
            .expect("a message");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string())
            .expect("every message has a Nats-Msg-Id");
        assert!(ids.insert(id.clone()), "message id {id} twice");
        let event: Event = serde_json::from_slice(&m.payload).expect("a JSON event");
        let want = format!("{prefix}.{}s.", kind(&event));
        assert!(m.subject.starts_with(&want), "{} for {event:?}", m.subject);
        out.push(event);
    }
    out
}

async fn redis_connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Every key under `prefix`.
async fn redis_keys(c: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    // Bounded: the run makes a few dozen keys.
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

/// Every event of every stream under `prefix`, each checked to sit in a key of its kind.
async fn redis_events(url: &str, prefix: &str) -> Vec<Event> {
    let mut c = redis_connection(url).await;
    let mut out = Vec::new();
    for key in redis_keys(&mut c, prefix).await {
        let t: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if t != "stream" {
            continue;
        }
        let rows: Vec<Entry> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        for (_, fields) in rows {
            assert_eq!(fields.len(), 1, "one field per entry in {key}");
            assert_eq!(fields[0].0, "event");
            let event: Event = serde_json::from_slice(&fields[0].1).expect("a JSON event");
            let want = format!("{prefix}:{}s:", kind(&event));
            assert!(key.starts_with(&want), "{key} holds {event:?}");
            out.push(event);
        }
    }
    out
}

async fn redis_delete(url: &str, prefix: &str) {
    let mut c = redis_connection(url).await;
    let all = redis_keys(&mut c, prefix).await;
    if !all.is_empty() {
        let _: u64 = redis::cmd("DEL")
            .arg(&all)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// What the run must give

/// Per symbol and interval, the intervals the published trades fall in, but the last (still
/// open at shutdown): the candles that must be written.
fn expected_candles(published: &[MockTrade]) -> BTreeSet<(String, String, i64)> {
    let mut want = BTreeSet::new();
    for i in INTERVALS {
        let interval = Interval::parse(i).unwrap();
        let len = interval.nanos();
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

/// Checks the files: every published trade exactly once and as published, every closed
/// interval's candle once, no gap.
fn check_files(published: &[MockTrade], events: &[Event]) {
    let mut trades: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut candles = BTreeSet::new();
    for e in events {
        match e {
            Event::Trade(t) => {
                *trades
                    .entry((t.symbol.to_string(), t.trade_id.to_string()))
                    .or_insert(0) += 1;
                let p = published
                    .iter()
                    .find(|p| {
                        p.symbol == t.symbol && p.trade_id.to_string() == t.trade_id.to_string()
                    })
                    .unwrap_or_else(|| panic!("a trade never published: {t:?}"));
                assert!(p.matches(t), "stored {t:?}\npublished {p:?}");
            }
            Event::Candle(c) => {
                candles.insert((
                    c.symbol.to_string(),
                    c.interval.to_string(),
                    c.open_time.unix_nanos(),
                ));
            }
            Event::Gap(g) => panic!("a gap in a run without faults: {g:?}"),
        }
    }
    assert_eq!(
        trades.len(),
        published.len(),
        "every published trade in the files"
    );
    assert!(
        trades.values().all(|n| *n == 1),
        "a trade twice in the files"
    );
    assert_eq!(
        candles,
        expected_candles(published),
        "the candles in the files"
    );
}

// ---------------------------------------------------------------------------------------
// The test

/// The servers of the run, or `None` (after the skip note) when one is missing.
async fn servers() -> Option<(PathBuf, String, String)> {
    let Some(bin) = rsyslogd() else {
        missing("rsyslog", "rsyslogd is not installed");
        return None;
    };
    let nats = env_or("FEEDER_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let at = host_port(&nats, 4222);
    if !answers(&at).await {
        missing("NATS", &format!("nothing answers at {at}"));
        return None;
    }
    let redis = env_or("FEEDER_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let at = host_port(&redis, 6379);
    if !answers(&at).await {
        missing("Redis", &format!("nothing answers at {at}"));
        return None;
    }
    Some((bin, nats, redis))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_writers_of_one_run_hold_the_same_events_exactly_once() {
    let Some((bin, nats_url, redis_url)) = servers().await else {
        return;
    };
    let id = unique("fanout");
    let stores = Stores {
        syslog: String::new(),
        nats_url,
        stream: id.to_uppercase(),
        subjects: id.clone(),
        redis_url,
        keys: id,
    };
    let js = jetstream::new(
        async_nats::connect(&stores.nats_url)
            .await
            .expect("connect to NATS"),
    );
    let (stream, redis_url, keys) = (
        stores.stream.clone(),
        stores.redis_url.clone(),
        stores.keys.clone(),
    );
    // The run in a task of its own, so that the stream and keys are deleted even when it
    // fails.
    let run = tokio::spawn(run(bin, stores, js.clone()));
    let result = run.await;
    let _ = js.delete_stream(&stream).await;
    redis_delete(&redis_url, &keys).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    assert!(
        js.get_stream(&stream).await.is_err(),
        "stream {stream} deleted"
    );
    let left = redis_keys(&mut redis_connection(&redis_url).await, &keys).await;
    assert!(left.is_empty(), "keys left in Redis: {left:?}");
}

async fn run(bin: PathBuf, mut stores: Stores, js: jetstream::Context) {
    let mut rsyslog = Rsyslog::start(&bin).await;
    stores.syslog = format!("127.0.0.1:{}", rsyslog.port);

    // Trades 20 s apart from a whole hour a day ahead: candles close by the trades' own
    // times, and the last ones are still open at shutdown.
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
    assert_eq!(mock.symbols().len(), 2, "two symbols");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut feeder = Feeder::start(dir.path(), &config(&mock, &out, &stores)).await;
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    mock.publish(TRADES);
    let published = mock.published();
    assert_eq!(published.len(), TRADES);
    let want_candles = expected_candles(&published).len();

    // Until the files hold every trade and every closed candle.
    let deadline = Instant::now() + WAIT;
    loop {
        let events = file_events(&out);
        let trades = events
            .iter()
            .filter(|e| matches!(e, Event::Trade(_)))
            .count();
        let candles = events
            .iter()
            .filter(|e| matches!(e, Event::Candle(_)))
            .count();
        if trades >= TRADES && candles >= want_candles {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the files hold {trades} of {TRADES} trades and {candles} of {want_candles} \
             candles:\n{}",
            feeder.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = feeder.terminate().await;
    let log = feeder.log();
    assert!(status.success(), "exit status {status:?}:\n{log}");

    let files = file_events(&out);
    check_files(&published, &files);
    let want = multiset(&files);
    assert!(
        want.values().all(|n| *n == 1),
        "an event twice in the files"
    );
    assert_eq!(want.len(), TRADES + want_candles);

    // Every batch the syslog writer counted as written was read by rsyslog; wait (bounded)
    // until its file holds as many events, then stop it so that nothing is still queued.
    let deadline = Instant::now() + WAIT;
    while multiset(&rsyslog.events()).len() < want.len() {
        assert!(
            Instant::now() < deadline,
            "rsyslog's file holds {} of {} events:\n{}",
            multiset(&rsyslog.events()).len(),
            want.len(),
            rsyslog.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rsyslog.stop().await;
    check_same("syslog", &rsyslog.events(), &want);

    let nats = nats_events(&js, &stores.stream, &stores.subjects).await;
    check_same("NATS", &nats, &want);
    let redis = redis_events(&stores.redis_url, &stores.keys).await;
    check_same("Redis", &redis, &want);
    eprintln!(
        "{} events ({TRADES} trades, {want_candles} candles) in files, syslog, NATS and Redis, \
         each once",
        want.len()
    );
}
