//! The capture of one exchange: a handle the drivers record into without waiting, and the
//! thread that writes, compresses and rotates the files.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{encode_header, encode_http, Compression, Direction, Kind, Record};
use crate::config::{CaptureCompression, CaptureConfig};
use crate::exchange::Completeness;
use crate::model::{Gap, Symbol, Timestamp};

/// Records are written in blocks (one zstd frame each) of about this many bytes, or every
/// [`FLUSH_EVERY`], whichever comes first: what a crash can lose.
const BLOCK_BYTES: usize = 1 << 20;

/// The longest a record waits in memory before it is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The zstd level: fast enough to keep up with a firehose on one core.
const ZSTD_LEVEL: i32 = 1;

/// Least time between two errors logged for a full queue.
const FULL_LOG_EVERY_SECS: i64 = 10;

/// What a capture has done so far.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Records written to the files.
    pub records: AtomicU64,
    /// Bytes written to the files (compressed, headers included).
    pub bytes: AtomicU64,
    /// Records lost: the queue was full, or the capture had stopped.
    pub dropped: AtomicU64,
    /// Set when the capture stopped for good (a full disk, the size limit, a write error).
    pub stopped: AtomicBool,
}

/// The raw capture of one exchange (see [`CaptureConfig`]).
///
/// Recording never waits: a record is handed to a writer thread through a bounded queue. When
/// the queue is full, or the capture has stopped (the disk is full, the size limit is
/// reached), the record is dropped and counted in [`CaptureStats::dropped`], an error is
/// logged (at most every few seconds), and the feed goes on untouched.
///
/// Cheap to clone; the writer thread starts with the first record and ends, after writing
/// what it holds, when the last clone is dropped.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("exchange", &self.inner.exchange)
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    exchange: Arc<str>,
    config: CaptureConfig,
    /// The queue into the writer thread, made with the first record (`None` if the thread
    /// could not start).
    tx: OnceLock<Option<SyncSender<Record>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_conn: AtomicU64,
    stats: Arc<CaptureStats>,
    /// Unix seconds of the last error logged for a full queue.
    full_logged: AtomicI64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the thread write its last block and end.
        drop(self.tx.take());
        let thread = self.thread.get_mut().map(Option::take).unwrap_or(None);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Capture {
    /// A capture of exchange `exchange` as `config` says. Nothing is opened until the first
    /// record.
    pub fn new(exchange: &str, config: CaptureConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                exchange: Arc::from(exchange),
                config,
                tx: OnceLock::new(),
                thread: Mutex::new(None),
                next_conn: AtomicU64::new(1),
                stats: Arc::default(),
                full_logged: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> Arc<CaptureStats> {
        self.inner.stats.clone()
    }

    /// A new connection (or request) number.
    pub fn next_conn(&self) -> u64 {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a record to the writer thread, or drops and counts it (see the type's doc).
    pub fn record(&self, record: Record) {
        let inner = &*self.inner;
        let stats = &inner.stats;
        if stats.stopped.load(Ordering::Relaxed) {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(tx) = inner.tx.get_or_init(|| self.start()) else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let total = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let now = Timestamp::now().unix_secs();
                let last = inner.full_logged.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= FULL_LOG_EVERY_SECS
                    && inner
                        .full_logged
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::error!(
                        exchange = &*inner.exchange,
                        dropped_total = total,
                        "capture queue full: the disk is slower than the feed, raw records are being dropped (the feed goes on)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn start(&self) -> Option<SyncSender<Record>> {
        let inner = &*self.inner;
        let (tx, rx) = mpsc::sync_channel(inner.config.queue.max(1));
        let mut files = Files {
            exchange: inner.exchange.clone(),
            dir: inner.config.path.clone(),
            rotate: inner.config.rotate,
            compression: match inner.config.compression {
                CaptureCompression::Zstd => Compression::Zstd,
                CaptureCompression::None => Compression::None,
            },
            max_size: inner.config.max_size.map(|s| s.bytes()),
            stats: inner.stats.clone(),
            open: None,
            block: Vec::with_capacity(BLOCK_BYTES + (64 << 10)),
            block_records: 0,
            written: 0,
            seq: 0,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("capture-{}", inner.exchange))
            .spawn(move || files.run(rx));
        match spawned {
            Ok(handle) => {
                *inner.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                Some(tx)
            }
            Err(e) => {
                inner.stats.stopped.store(true, Ordering::Relaxed);
                tracing::error!(exchange = &*inner.exchange, error = %e, "capture could not start its writer thread: nothing will be captured (the feed goes on)");
                None
            }
        }
    }

    /// Records a WebSocket message received on connection `conn` at `time`.
    pub(crate) fn ws_in(&self, conn: u64, msg: &tungstenite::Message, time: Timestamp) {
        if let Some((kind, payload)) = ws_parts(msg) {
            self.record(local_record(
                kind,
                Direction::In,
                conn,
                time,
                Bytes::new(),
                payload,
            ));
        }
    }

    /// Records a WebSocket message sent on connection `conn`.
    pub(crate) fn ws_out(&self, conn: u64, msg: &tungstenite::Message) {
        if let Some((kind, payload)) = ws_parts(msg) {
            let now = Timestamp::now();
            self.record(local_record(
                kind,
                Direction::Out,
                conn,
                now,
                Bytes::new(),
                payload,
            ));
        }
    }

    /// Records a WebSocket connection opened to `url`; returns its number.
    pub(crate) fn connected(&self, url: &url::Url) -> u64 {
        let conn = self.next_conn();
        let tag = Bytes::copy_from_slice(url.as_str().as_bytes());
        let now = Timestamp::now();
        self.record(local_record(
            Kind::Connect,
            Direction::Out,
            conn,
            now,
            tag,
            Bytes::new(),
        ));
        conn
    }

    /// Records the end of connection `conn`, and why.
    pub(crate) fn disconnected(&self, conn: u64, why: &str) {
        let tag = Bytes::copy_from_slice(why.as_bytes());
        let now = Timestamp::now();
        self.record(local_record(
            Kind::Disconnect,
            Direction::Local,
            conn,
            now,
            tag,
            Bytes::new(),
        ));
    }

    /// Records a REST request for `symbol`; returns its number.
    pub(crate) fn request(&self, symbol: &Symbol, url: &url::Url) -> u64 {
        let conn = self.next_conn();
        let tag = Bytes::copy_from_slice(symbol.as_str().as_bytes());
        let payload = Bytes::copy_from_slice(url.as_str().as_bytes());
        let now = Timestamp::now();
        self.record(local_record(
            Kind::HttpRequest,
            Direction::Out,
            conn,
            now,
            tag,
            payload,
        ));
        conn
    }

    /// Records the answer to request `conn`, parsed as received at `time`.
    pub(crate) fn response(
        &self,
        conn: u64,
        symbol: &Symbol,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
        time: Timestamp,
    ) {
        let tag = Bytes::copy_from_slice(symbol.as_str().as_bytes());
        let payload = Bytes::from(encode_http(status, headers, body));
        self.record(local_record(
            Kind::HttpResponse,
            Direction::In,
            conn,
            time,
            tag,
            payload,
        ));
    }

    /// Records what a driver said of a stream's completeness.
    pub(crate) fn progress(&self, symbol: &Symbol, completeness: Completeness) {
        let mut payload = Vec::with_capacity(9);
        match completeness {
            Completeness::Live => payload.push(0),
            Completeness::Behind => payload.push(1),
            Completeness::UpTo(t) => {
                payload.push(2);
                payload.extend_from_slice(&t.unix_nanos().to_le_bytes());
            }
        }
        let tag = Bytes::copy_from_slice(symbol.as_str().as_bytes());
        let now = Timestamp::now();
        self.record(local_record(
            Kind::Progress,
            Direction::Local,
            0,
            now,
            tag,
            payload.into(),
        ));
    }

    /// Records a gap a driver sent on.
    pub(crate) fn gap(&self, gap: &Gap) {
        let Ok(json) = serde_json::to_vec(gap) else {
            return;
        };
        let tag = Bytes::copy_from_slice(gap.symbol.as_str().as_bytes());
        let now = Timestamp::now();
        self.record(local_record(
            Kind::Gap,
            Direction::Local,
            0,
            now,
            tag,
            json.into(),
        ));
    }
}

fn local_record(
    kind: Kind,
    direction: Direction,
    conn: u64,
    time: Timestamp,
    tag: Bytes,
    payload: Bytes,
) -> Record {
    Record {
        kind,
        direction,
        conn,
        time,
        tag,
        payload,
    }
}

/// The kind and payload of a WebSocket message; the payload is shared, not copied.
fn ws_parts(msg: &tungstenite::Message) -> Option<(Kind, Bytes)> {
    use tungstenite::Message;
    Some(match msg {
        Message::Text(t) => (Kind::WsText, Bytes::from(t.clone())),
        Message::Binary(b) => (Kind::WsBinary, b.clone()),
        Message::Ping(b) => (Kind::WsPing, b.clone()),
        Message::Pong(b) => (Kind::WsPong, b.clone()),
        Message::Close(frame) => {
            let mut p = Vec::new();
            if let Some(f) = frame {
                p.extend_from_slice(&u16::from(f.code).to_le_bytes());
                p.extend_from_slice(f.reason.as_bytes());
            }
            (Kind::WsClose, Bytes::from(p))
        }
        Message::Frame(_) => return None,
    })
}

use tokio_tungstenite::tungstenite;

/// The files of one capture, owned by its writer thread.
struct Files {
    exchange: Arc<str>,
    dir: PathBuf,
    rotate: Duration,
    compression: Compression,
    max_size: Option<u64>,
    stats: Arc<CaptureStats>,
    /// The file being written, with the receive time of its first record.
    open: Option<(std::fs::File, PathBuf, Timestamp)>,
    /// Encoded records not yet written.
    block: Vec<u8>,
    block_records: u64,
    /// Bytes written by this run, for the size limit.
    written: u64,
    /// Files opened by this run.
    seq: u64,
}

/// Why the capture stopped.
#[derive(Debug)]
enum Stop {
    Io(std::io::Error),
    Limit(u64),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Io(e) => write!(f, "{e}"),
            Stop::Limit(n) => write!(f, "the size limit of {n} bytes is reached"),
        }
    }
}

impl Files {
    fn run(&mut self, rx: mpsc::Receiver<Record>) {
        let mut since = Instant::now();
        loop {
            let got = if self.block.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(FLUSH_EVERY.saturating_sub(since.elapsed()))
            };
            let result = match got {
                Ok(record) => {
                    if self.block.is_empty() {
                        since = Instant::now();
                    }
                    self.add(record)
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
                Err(RecvTimeoutError::Disconnected) => {
                    let r = self.flush();
                    if let Err(stop) = r {
                        self.stop(&stop);
                    }
                    break;
                }
            };
            if let Err(stop) = result {
                self.stop(&stop);
                // Whatever still comes is counted as dropped by the handle.
                for _ in rx.iter() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        let records = self.stats.records.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(
                exchange = &*self.exchange,
                records,
                dropped,
                "capture ended with raw records lost"
            );
        } else {
            tracing::info!(
                exchange = &*self.exchange,
                records,
                bytes = self.written,
                "capture ended"
            );
        }
    }

    fn stop(&mut self, why: &Stop) {
        self.stats.stopped.store(true, Ordering::Relaxed);
        self.stats
            .dropped
            .fetch_add(self.block_records, Ordering::Relaxed);
        self.block.clear();
        self.block_records = 0;
        self.open = None;
        tracing::error!(
            exchange = &*self.exchange,
            dir = %self.dir.display(),
            error = %why,
            "capture stopped: raw records are no longer kept (the feed goes on)"
        );
    }

    fn add(&mut self, record: Record) -> Result<(), Stop> {
        let due = match &self.open {
            None => true,
            Some((_, _, started)) => {
                let age = record
                    .time
                    .unix_nanos()
                    .saturating_sub(started.unix_nanos());
                age >= self.rotate.as_nanos().min(i64::MAX as u128) as i64
            }
        };
        if due {
            self.flush()?;
            self.open_file(record.time)?;
        }
        record.encode(&mut self.block);
        self.block_records += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn open_file(&mut self, at: Timestamp) -> Result<(), Stop> {
        std::fs::create_dir_all(&self.dir).map_err(Stop::Io)?;
        self.seq += 1;
        let name = file_name(&self.exchange, at, self.seq, self.compression);
        let path = self.dir.join(name);
        let meta = serde_json::json!({
            "exchange": &*self.exchange,
            "started_at_ns": at.unix_nanos(),
            "writer": concat!("crypto-feeder ", env!("CARGO_PKG_VERSION")),
        });
        let header = encode_header(self.compression, meta.to_string().as_bytes());
        self.reserve(header.len())?;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(Stop::Io)?;
        file.write_all(&header).map_err(Stop::Io)?;
        self.count(header.len());
        tracing::info!(exchange = &*self.exchange, file = %path.display(), "capture file started");
        self.open = Some((file, path, at));
        Ok(())
    }

    fn reserve(&self, n: usize) -> Result<(), Stop> {
        match self.max_size {
            Some(max) if self.written + n as u64 > max => Err(Stop::Limit(max)),
            _ => Ok(()),
        }
    }

    fn count(&mut self, n: usize) {
        self.written += n as u64;
        self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Writes the block as one unit: a zstd frame, or the plain records.
    fn flush(&mut self) -> Result<(), Stop> {
        if self.block.is_empty() {
            return Ok(());
        }
        let out = match self.compression {
            Compression::Zstd => compress(&self.block).map_err(Stop::Io)?,
            Compression::None => std::mem::take(&mut self.block),
        };
        self.reserve(out.len())?;
        let Some((file, _, _)) = &mut self.open else {
            return Err(Stop::Io(std::io::Error::other("no capture file open")));
        };
        file.write_all(&out).map_err(Stop::Io)?;
        file.flush().map_err(Stop::Io)?;
        self.count(out.len());
        self.stats
            .records
            .fetch_add(self.block_records, Ordering::Relaxed);
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }
}

/// One zstd frame with its content checksum, so damage inside it is found when reading.
fn compress(block: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    c.include_checksum(true)?;
    c.compress(block)
}

/// `<exchange>.<UTC start, to the nanosecond>.<n>.fcap[.zst]`: names sort by start time.
pub(crate) fn file_name(exchange: &str, at: Timestamp, seq: u64, c: Compression) -> String {
    let ns = at.unix_nanos();
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let civil = jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y%m%dT%H%M%S").to_string())
        .unwrap_or_else(|_| format!("{secs}"));
    let ext = match c {
        Compression::Zstd => "fcap.zst",
        Compression::None => "fcap",
    };
    format!("{exchange}.{civil}{frac:09}Z.{seq:04}.{ext}")
}

/// The capture files of `exchange` in `dir`, oldest first.
pub fn capture_files(dir: &std::path::Path, exchange: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{exchange}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                    && (n.ends_with(".fcap") || n.ends_with(".fcap.zst"))
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::format::Reader;
    use super::*;

    fn text(i: u64) -> tungstenite::Message {
        tungstenite::Message::text(format!("{{\"trade\":{i}}}"))
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn records_reach_the_files_in_order_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [CaptureCompression::Zstd, CaptureCompression::None] {
            let sub = dir.path().join(format!("{compression:?}"));
            let mut cfg = CaptureConfig::new(&sub);
            cfg.compression = compression;
            cfg.rotate = Duration::from_secs(10);
            let capture = Capture::new("acme", cfg);
            let conn = capture.connected(&url::Url::parse("wss://acme.invalid/ws").unwrap());
            let t0 = Timestamp::now().unix_nanos();
            for i in 0..30u64 {
                // Three seconds apart: a new file every four records.
                let at = Timestamp::from_unix_nanos(t0 + i as i64 * 3_000_000_000, 9);
                capture.ws_in(conn, &text(i), at);
            }
            let stats = capture.stats();
            drop(capture);
            assert_eq!(stats.records.load(Ordering::Relaxed), 31);
            assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
            let files = capture_files(&sub, "acme").unwrap();
            assert!(files.len() >= 8, "{files:?}");
            let mut texts = Vec::new();
            for f in &files {
                for r in Reader::open(f).unwrap() {
                    let r = r.unwrap();
                    if r.kind == Kind::WsText {
                        assert_eq!(r.conn, conn);
                        texts.push(String::from_utf8(r.payload.to_vec()).unwrap());
                    }
                }
            }
            let want: Vec<String> = (0..30).map(|i| format!("{{\"trade\":{i}}}")).collect();
            assert_eq!(texts, want);
        }
    }

    #[test]
    fn past_the_size_limit_the_capture_stops_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CaptureConfig::new(dir.path());
        cfg.compression = CaptureCompression::None;
        cfg.max_size = Some(crate::config::ByteSize(4096));
        let capture = Capture::new("acme", cfg);
        let stats = capture.stats();
        for i in 0..2_000u64 {
            capture.ws_in(1, &text(i), Timestamp::now());
            if i == 999 {
                // Past the first block's flush, the limit is met.
                wait_for("the capture to stop", || {
                    stats.stopped.load(Ordering::Relaxed)
                });
            }
        }
        drop(capture);
        let written = stats.records.load(Ordering::Relaxed);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert!(stats.stopped.load(Ordering::Relaxed));
        assert_eq!(written + dropped, 2_000, "every record written or counted");
        assert!(stats.bytes.load(Ordering::Relaxed) <= 4096);
        // What was written before the stop reads back whole.
        let files = capture_files(dir.path(), "acme").unwrap();
        let read: usize = files
            .iter()
            .map(|f| Reader::open(f).unwrap().filter(|r| r.is_ok()).count())
            .sum();
        assert_eq!(read as u64, written);
    }

    /// A tmpfs of 64 KiB, unmounted on drop; `None` where mounting is not allowed (not root,
    /// or no such capability in a container).
    struct SmallDisk(std::path::PathBuf);

    impl SmallDisk {
        fn mount(dir: &std::path::Path) -> Option<SmallDisk> {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| SmallDisk(dir.to_path_buf()))
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    #[test]
    fn a_full_disk_stops_the_capture_and_what_was_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_disk) = SmallDisk::mount(dir.path()) else {
            eprintln!("skipped: cannot mount a tmpfs here (the size-limit test covers the stop)");
            return;
        };
        let mut cfg = CaptureConfig::new(dir.path());
        cfg.compression = CaptureCompression::None;
        let capture = Capture::new("acme", cfg);
        let stats = capture.stats();
        let big = tungstenite::Message::text("x".repeat(2_000));
        // Far more than 64 KiB: the disk fills, in blocks written every second or MiB.
        for i in 0..400u64 {
            capture.ws_in(1, &big, Timestamp::now());
            if i == 199 {
                wait_for("the disk to fill", || stats.stopped.load(Ordering::Relaxed));
            }
        }
        drop(capture);
        let written = stats.records.load(Ordering::Relaxed);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert!(stats.stopped.load(Ordering::Relaxed));
        assert_eq!(written + dropped, 400);
        assert!(dropped >= 200, "{dropped}");
        // The file holds what fitted (the records of the block the disk cut are counted as
        // dropped, though some whole ones may be on disk); the cut record ends the reading.
        let files = capture_files(dir.path(), "acme").unwrap();
        let mut reader = Reader::open(&files[0]).unwrap();
        let read = reader.by_ref().map_while(Result::ok).count() as u64;
        assert!(
            read >= written && read < 400,
            "{read} read, {written} written"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CaptureConfig::new(dir.path());
        cfg.queue = 1;
        let capture = Capture::new("acme", cfg);
        for i in 0..20_000u64 {
            capture.ws_in(1, &text(i), Timestamp::now());
        }
        let stats = capture.stats();
        drop(capture);
        let written = stats.records.load(Ordering::Relaxed);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert_eq!(written + dropped, 20_000);
        assert!(!stats.stopped.load(Ordering::Relaxed));
    }

    #[test]
    fn file_names_sort_by_time_and_belong_to_their_exchange() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: i64| Timestamp::from_unix_nanos(s * 1_000_000_000 + 5, 9);
        for (ex, at, seq) in [
            ("acme", t(200), 2),
            ("acme", t(100), 1),
            ("acme2", t(50), 1),
        ] {
            let name = file_name(ex, at, seq, Compression::Zstd);
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::write(dir.path().join("acme.notes.txt"), b"").unwrap();
        let files = capture_files(dir.path(), "acme").unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "acme.19700101T000140000000005Z.0001.fcap.zst",
                "acme.19700101T000320000000005Z.0002.fcap.zst"
            ]
        );
    }
}
