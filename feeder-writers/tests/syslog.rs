//! The `syslog` writer against a real rsyslog. Each test starts its own unprivileged
//! `rsyslogd` on a free loopback port, with its own config, pid file, work directory and
//! output file (every raw message, one per line), so that it can stop and restart it; the
//! machine's own syslog is never touched. `.ci/services` installs rsyslog (and its TLS
//! driver); without it the tests are skipped with a note, unless `CI` is set.
//!
//! Also here: servers written for the test that misbehave as real ones can (accept and drop,
//! never close), which rsyslog cannot be made to do.

mod conformance_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conformance_support::missing;
use feeder_core::config::Config;
use feeder_core::feeder::Registry;
use feeder_core::model::Event;
use feeder_core::testing::{
    event_key, run_conformance, sample_events, BoxError, ConformanceTarget, Outcome,
};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::syslog::{Facility, Protocol};
use feeder_writers::{SyslogOptions, SyslogWriter};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// How long rsyslog may take to start, to stop, or to get messages into its file.
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `done` every 20 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rsyslogd binary, or `None` (after the skip note) when it is not installed.
fn rsyslogd() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"] {
        let p = Path::new(dir).join("rsyslogd");
        if p.exists() {
            return Some(p);
        }
    }
    missing("rsyslog", "rsyslogd is not installed");
    None
}

/// A free loopback port (TCP and UDP are checked together, as rsyslog listens on both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for both TCP and UDP");
}

/// Certificate files for rsyslog's TLS listener.
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// One rsyslogd of a test, listening on 127.0.0.1:`port` (TCP or TLS, and UDP for plain
/// TCP), writing every raw message to `out`. Killed when dropped.
struct Rsyslog {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts a plain (TCP and UDP) or TLS rsyslogd, or returns `None` when rsyslog is not
    /// installed.
    async fn start(tls: Option<&TlsFiles>) -> Option<Rsyslog> {
        let bin = rsyslogd()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let out = dir.path().join("out.log");
        let mut conf = String::new();
        match tls {
            None => {
                conf.push_str(&format!(
                    "global(workDirectory=\"{}\" maxMessageSize=\"64k\")\n\
                     module(load=\"imtcp\")\nmodule(load=\"imudp\")\n",
                    work.display()
                ));
            }
            Some(t) => {
                conf.push_str(&format!(
                    "global(workDirectory=\"{}\" maxMessageSize=\"64k\"\n\
                     defaultNetstreamDriver=\"gtls\"\n\
                     defaultNetstreamDriverCAFile=\"{}\"\n\
                     defaultNetstreamDriverCertFile=\"{}\"\n\
                     defaultNetstreamDriverKeyFile=\"{}\")\n\
                     module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"anon\")\n",
                    work.display(),
                    t.ca.display(),
                    t.cert.display(),
                    t.key.display()
                ));
            }
        }
        // Only what arrives on the test's inputs reaches the file, raw: rsyslog's own
        // messages go to the default ruleset, which has no action.
        conf.push_str(&format!(
            "template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"feeder\") {{\n\
             action(type=\"omfile\" file=\"{}\" template=\"raw\")\n}}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"feeder\")\n",
            out.display()
        ));
        if tls.is_none() {
            conf.push_str(&format!(
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"feeder\")\n"
            ));
        }
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let mut rs = Rsyslog {
            bin,
            dir,
            port,
            tls: tls.is_some(),
            child: None,
        };
        rs.launch().await;
        Some(rs)
    }

    /// Runs rsyslogd in the foreground of a child process and waits for its TCP port.
    async fn launch(&mut self) {
        let d = self.dir.path();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("stderr.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
        let port = self.port;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("rsyslogd exited with {status} at start:\n{}", self.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rsyslogd did not listen on {port} within {PATIENCE:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops rsyslogd as a service stop does (SIGTERM) and waits for it to exit.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exited = eventually(PATIENCE, || child.try_wait().unwrap().is_some()).await;
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rsyslogd did not stop within {PATIENCE:?}");
        }
    }

    /// Starts rsyslogd again with the same config and port (the output file is appended).
    async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Every raw message in the output file so far (complete lines only: rsyslog may be
    /// writing the next one).
    fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The events of every message so far, and the messages that hold no whole event.
    fn events_and_torn(&self) -> (Vec<Event>, Vec<String>) {
        let (mut events, mut torn) = (Vec::new(), Vec::new());
        for line in self.lines() {
            match parse_line(&line) {
                Some((_, e)) => events.push(e),
                None => torn.push(line),
            }
        }
        (events, torn)
    }

    /// The events of every message so far; every message must hold one.
    fn events(&self) -> Vec<Event> {
        let (events, torn) = self.events_and_torn();
        assert!(torn.is_empty(), "messages without an event: {torn:?}");
        events
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The header fields of a raw message and the event of its MSG, or `None` when it is not
/// an RFC 5424 message whose MSG is an event's JSON.
fn parse_line(line: &str) -> Option<(Vec<&str>, Event)> {
    let parts: Vec<&str> = line.splitn(8, ' ').collect();
    if parts.len() != 8 {
        return None;
    }
    let event = serde_json::from_str(parts[7]).ok()?;
    Some((parts[..7].to_vec(), event))
}

/// How many times each event key occurs.
fn key_counts<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(event_key(e)).or_default() += 1;
    }
    m
}

/// Whether `have` holds every key of `want` at least as many times.
fn covers(have: &BTreeMap<String, usize>, want: &BTreeMap<String, usize>) -> bool {
    want.iter()
        .all(|(k, n)| have.get(k).is_some_and(|h| h >= n))
}

fn tcp_options(address: &str) -> SyslogOptions {
    SyslogOptions::new(address, Protocol::Tcp)
        .with_timeouts(Duration::from_secs(3), Duration::from_secs(5))
}

// ---------------------------------------------------------------------------------------
// Conformance over TCP, through a cuttable proxy

/// A writer that notes the key of every event of each batch it reported written, so that
/// the read-back knows what rsyslog (which files messages asynchronously) must show.
struct Noting {
    inner: SyslogWriter,
    written: Arc<Mutex<BTreeMap<String, usize>>>,
}

#[async_trait]
impl Writer for Noting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        self.inner.write(batch).await?;
        let mut w = self.written.lock().unwrap();
        for e in batch {
            *w.entry(event_key(e)).or_default() += 1;
        }
        Ok(())
    }
    async fn close(&mut self) -> Result<(), WriteError> {
        self.inner.close().await
    }
}

struct SyslogTarget {
    rsyslog: Rsyslog,
    proxy: TcpProxy,
    written: Arc<Mutex<BTreeMap<String, usize>>>,
    /// Messages the read-back found without a whole event.
    torn: Mutex<Vec<String>>,
}

#[async_trait]
impl ConformanceTarget for SyslogTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let inner = SyslogWriter::connect(tcp_options(&self.proxy.addr().to_string())).await?;
        Ok(Box::new(Noting {
            inner,
            written: Arc::clone(&self.written),
        }))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        // Every batch reported written was read by rsyslog; wait for its file to show them.
        let want = self.written.lock().unwrap().clone();
        let arrived = eventually(PATIENCE, || {
            covers(&key_counts(&self.rsyslog.events_and_torn().0), &want)
        })
        .await;
        if !arrived {
            return Err(format!(
                "rsyslog's file does not hold every message written within {PATIENCE:?}"
            )
            .into());
        }
        // A connection cut in the middle of a message leaves that message torn: rsyslog
        // files what it had of it. Its batch failed and was sent again whole.
        let (events, torn) = self.rsyslog.events_and_torn();
        for line in &torn {
            eprintln!("torn message: {line}");
        }
        self.torn.lock().unwrap().extend(torn);
        Ok(events)
    }

    fn keyed(&self) -> bool {
        false
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        // A port nothing listens on.
        let port = free_port();
        Some(
            SyslogWriter::connect(tcp_options(&format!("127.0.0.1:{port}")))
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_tcp_through_a_cuttable_proxy() {
    let Some(rsyslog) = Rsyslog::start(None).await else {
        return;
    };
    let upstream = format!("127.0.0.1:{}", rsyslog.port).parse().unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let target = SyslogTarget {
        rsyslog,
        proxy,
        written: Arc::default(),
        torn: Mutex::default(),
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}outage errors: {}", report.outage_errors);
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    // The proxy refused connections during the outage, and the writer said so.
    assert!(target.proxy.refused() > 0);
    assert!(report.outage_errors > 0, "{report}");
}

// ---------------------------------------------------------------------------------------
// Exactly once across a restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_across_an_rsyslog_restart() {
    let Some(mut rsyslog) = Rsyslog::start(None).await else {
        return;
    };
    let before = sample_events("restart-before", 300);
    let after = sample_events("restart-after", 300);
    let mut w = SyslogWriter::connect(tcp_options(&rsyslog.address()))
        .await
        .unwrap();
    for part in before.chunks(64) {
        w.write(part).await.unwrap();
    }
    rsyslog.stop().await;
    // With the server gone a batch fails, and the runner would send it again.
    let err = w.write(&after[..10]).await.unwrap_err();
    assert!(err.is_retriable(), "{}", ErrorChain(&err));
    assert!(
        ErrorChain(&err).to_string().contains(&rsyslog.address()),
        "{}",
        ErrorChain(&err)
    );
    rsyslog.launch().await;
    for part in after.chunks(64) {
        w.write(part).await.unwrap();
    }
    // Once more, between two batches of one writer, with nothing failing in between.
    let last = sample_events("restart-last", 50);
    rsyslog.restart().await;
    w.write(&last).await.unwrap();
    w.close().await.unwrap();

    let sent: Vec<Event> = before.iter().chain(&after).chain(&last).cloned().collect();
    let want = key_counts(&sent);
    let arrived = eventually(PATIENCE, || rsyslog.lines().len() >= sent.len()).await;
    assert!(
        arrived,
        "{} of {} messages arrived",
        rsyslog.lines().len(),
        sent.len()
    );
    let got = rsyslog.events();
    assert_eq!(key_counts(&got), want, "each event exactly once");
    let by_key: BTreeMap<String, &Event> = sent.iter().map(|e| (event_key(e), e)).collect();
    for e in &got {
        assert_eq!(Some(&e), by_key.get(&event_key(e)), "came back different");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_the_rfc5424_header_fields() {
    let Some(rsyslog) = Rsyslog::start(None).await else {
        return;
    };
    let options = tcp_options(&rsyslog.address())
        .with_facility(Facility::Local(4))
        .with_app_name("feeder-test")
        .with_hostname("feeder-host.example");
    let mut w = SyslogWriter::connect(options).await.unwrap();
    let events = sample_events("header", 50);
    w.write(&events).await.unwrap();
    assert!(eventually(PATIENCE, || rsyslog.lines().len() >= events.len()).await);
    let lines = rsyslog.lines();
    let pid = std::process::id().to_string();
    let mut kinds = BTreeMap::<String, usize>::new();
    for line in &lines {
        let (h, event) = parse_line(line).expect("an RFC 5424 message with an event");
        // local4 (20) * 8 + informational (6)
        assert_eq!(h[0], "<166>1", "{line}");
        assert!(
            feeder_core::model::Timestamp::parse_rfc3339(h[1]).is_ok(),
            "{line}"
        );
        assert_eq!(
            &h[2..5],
            ["feeder-host.example", "feeder-test", pid.as_str()]
        );
        assert_eq!(h[5], event.kind(), "{line}");
        assert_eq!(h[6], "-", "{line}");
        *kinds.entry(h[5].to_owned()).or_default() += 1;
    }
    assert_eq!(kinds.len(), 3, "trades, candles and gaps: {kinds:?}");
}

// ---------------------------------------------------------------------------------------
// TLS

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name`: `{name}.pem` and `{name}.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate for `localhost` and 127.0.0.1 signed by CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) -> TlsFiles {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    TlsFiles {
        ca: dir.join(format!("{ca}.pem")),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

fn tls_options(address: &str, ca: &Path) -> SyslogOptions {
    SyslogOptions::new(address, Protocol::Tls)
        .with_ca_file(ca)
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_delivers_with_the_right_ca_and_refuses_a_wrong_one() {
    if rsyslogd().is_none() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let files = make_server_cert(certs.path(), &{
        make_ca(certs.path(), "test-ca");
        "test-ca".to_owned()
    });
    let other_ca = make_ca(certs.path(), "other-ca");
    let Some(rsyslog) = Rsyslog::start(Some(&files)).await else {
        return;
    };
    assert!(rsyslog.tls);

    // The right CA, the address's IP checked against the certificate.
    let events = sample_events("tls", 200);
    let mut w = SyslogWriter::connect(tls_options(&rsyslog.address(), &files.ca))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", ErrorChain(&e), rsyslog.stderr()));
    for part in events.chunks(50) {
        w.write(part).await.unwrap();
    }
    // A DNS name the certificate carries, through `server_name`.
    let mut by_name = SyslogWriter::connect(
        tls_options(&rsyslog.address(), &files.ca).with_server_name("localhost"),
    )
    .await
    .unwrap();
    let more = sample_events("tls-by-name", 20);
    by_name.write(&more).await.unwrap();
    let want = key_counts(events.iter().chain(&more));
    assert!(eventually(PATIENCE, || key_counts(&rsyslog.events()) == want).await);

    // Another CA: refused at start-up, for good, saying why.
    let err = SyslogWriter::connect(tls_options(&rsyslog.address(), &other_ca))
        .await
        .unwrap_err();
    let text = ErrorChain(&err).to_string();
    assert!(!err.is_retriable(), "{text}");
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // The right CA but a name the certificate does not carry.
    let err = SyslogWriter::connect(
        tls_options(&rsyslog.address(), &files.ca).with_server_name("elsewhere.example"),
    )
    .await
    .unwrap_err();
    let text = ErrorChain(&err).to_string();
    assert!(!err.is_retriable(), "{text}");
    assert!(text.contains("not valid for name"), "{text}");

    // A CA file that holds no certificate.
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = SyslogWriter::connect(tls_options(&rsyslog.address(), &empty))
        .await
        .unwrap_err();
    assert!(
        ErrorChain(&err).to_string().contains("ca_file"),
        "{}",
        ErrorChain(&err)
    );
    // Nothing from the refused writers reached the file.
    assert_eq!(key_counts(&rsyslog.events()), want);
}

// ---------------------------------------------------------------------------------------
// UDP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_delivers_one_datagram_per_event() {
    let Some(rsyslog) = Rsyslog::start(None).await else {
        return;
    };
    let mut w = SyslogWriter::connect(SyslogOptions::new(rsyslog.address(), Protocol::Udp))
        .await
        .unwrap();
    // Small batches: loopback UDP does not drop what rsyslog keeps up with.
    let events = sample_events("udp", 100);
    for part in events.chunks(10) {
        w.write(part).await.unwrap();
    }
    // A message too long for one datagram is refused alone; the others of its batch go.
    let pair = sample_events("udp-pair", 2);
    let Event::Trade(mut huge) = pair[0].clone() else {
        panic!("sample events start with trades");
    };
    huge.exchange = Arc::from("x".repeat(70_000));
    let batch = [pair[0].clone(), Event::Trade(huge), pair[1].clone()];
    match w.write(&batch).await {
        Err(WriteError::Rejected(refused)) => {
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].index, 1);
            assert!(refused[0].reason.to_string().contains("UDP datagram"));
        }
        other => panic!("expected the long message alone refused, got {other:?}"),
    }
    let want = key_counts(events.iter().chain(&pair));
    let arrived = eventually(PATIENCE, || key_counts(&rsyslog.events()) == want).await;
    assert!(
        arrived,
        "{} of {} datagrams arrived",
        rsyslog.lines().len(),
        want.len()
    );
}

// ---------------------------------------------------------------------------------------
// Servers that misbehave

/// A listener that answers the start-up session properly (reads to the end, closes), then
/// hands every later connection to `then`.
async fn misbehaving<F, Fut>(then: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = first.read_to_end(&mut sink).await;
        drop(first);
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(then(conn));
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_drops_the_batch_unread_fails_it_retriably() {
    // Accepts, waits for the batch to arrive, and closes without reading it (a server
    // shutting down, or at its session limit): the kernel then resets the connection.
    let addr = misbehaving(|conn| async move {
        let _ = conn.readable().await;
        drop(conn);
    })
    .await;
    let mut w = SyslogWriter::connect(tcp_options(&addr.to_string()))
        .await
        .unwrap();
    for _ in 0..5 {
        let err = w.write(&sample_events("dropped", 20)).await.unwrap_err();
        assert!(err.is_retriable(), "{}", ErrorChain(&err));
    }
}

#[tokio::test]
async fn a_server_that_never_closes_fails_the_batch_at_the_write_timeout() {
    // Reads everything but never closes its side: the batch is not confirmed.
    let addr = misbehaving(|mut conn| async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                // Keep the connection open after the client's end, without closing.
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    let options = SyslogOptions::new(addr.to_string(), Protocol::Tcp)
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(300));
    let mut w = SyslogWriter::connect(options).await.unwrap();
    let err = w.write(&sample_events("silent", 10)).await.unwrap_err();
    let text = ErrorChain(&err).to_string();
    assert!(err.is_retriable(), "{text}");
    assert!(text.contains("did not confirm"), "{text}");
}

#[tokio::test]
async fn nothing_listening_fails_at_start_up_for_good() {
    let port = free_port();
    let err = SyslogWriter::connect(tcp_options(&format!("127.0.0.1:{port}")))
        .await
        .unwrap_err();
    let text = ErrorChain(&err).to_string();
    assert!(!err.is_retriable(), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

// ---------------------------------------------------------------------------------------
// Registration

#[test]
fn the_registry_knows_syslog_and_names_a_bad_option() {
    let mut registry = Registry::new();
    feeder_writers::register(&mut registry);
    let yaml = |extra: &str| {
        format!(
            "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: syslog\n    \
             address: logs.example:6514\n    protocol: tls\n{extra}"
        )
    };
    let good = Config::from_yaml_str(&yaml("    facility: local0\n")).unwrap();
    let factory = registry.writer("syslog").expect("syslog is registered");
    factory.validate(&good.writers[0]).unwrap();
    for (extra, key) in [
        ("    facility: local8\n", "facility"),
        ("    app_name: two words\n", "app_name"),
        ("    address_typo: x\n", "address_typo"),
    ] {
        let bad = Config::from_yaml_str(&yaml(extra)).unwrap();
        let err = factory.validate(&bad.writers[0]).unwrap_err();
        assert!(err.to_string().contains(key), "{extra}: {err}");
    }
}
