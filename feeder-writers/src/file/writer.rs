//! The `file` writer: encoding on the async side; file I/O on a blocking thread, or on the
//! writer's task for small writes to the page cache.

use std::path::Path;
use std::sync::{Arc, Mutex};
#[cfg(feature = "parquet")]
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::exchange::Cursor;
use feeder_core::model::{Event, Symbol, Timestamp};
use feeder_core::writer::Writer;
#[cfg(feature = "parquet")]
use feeder_core::Rejection;
use feeder_core::WriteError;
#[cfg(feature = "parquet")]
use tracing::Instrument;

use super::config::{FileFormat, FileOptions};
use super::encode::{group, Chunk};
use super::files::Files;
#[cfg(feature = "parquet")]
use super::parquet::{check_event, ParquetFiles, Roll, Sealed};

/// How many spare encode buffers are kept between batches.
const POOL_SIZE: usize = 8;

/// Most events of a batch written without a blocking thread (see `FileWriter::writes_inline`).
const INLINE_EVENTS: usize = 256;

/// Events read back (`replay`) that the reading thread hands over at a time, and how many
/// such handfuls may wait: what bounds the memory of a replay, whatever the size of a day.
const REPLAY_BATCH: usize = 1024;
const REPLAY_BATCHES: usize = 4;

/// Writes events to JSON lines or CSV files under a directory, one file per stream and UTC
/// day: `{path}/{trades|candles}/{exchange}/{symbol}/{YYYY-MM-DD}.{jsonl|csv}`.
///
/// Restarting on the same directory appends; nothing is ever truncated except an incomplete
/// last line left by a crash mid-write, which was never acknowledged. A batch is written with
/// one write per file and counts as written once it is flushed to the operating system (and
/// synced to disk with `fsync`); a batch that fails is cut back off the files it touched, so
/// retrying it does not duplicate lines.
pub struct FileWriter {
    options: FileOptions,
    /// The open files. Shared with the blocking thread that does the I/O, so that a write
    /// whose future is dropped midway still leaves them consistent for the next one.
    files: Arc<Mutex<Backend>>,
    /// Chunks of the batch being written; kept to reuse their buffers.
    chunks: Vec<Chunk>,
    /// Spare buffers for chunks.
    pool: Vec<Vec<u8>>,
    /// Parquet: the task that finishes parts. Started by the first write (parts are opened
    /// only by writes); stopped at close, after the conversion it has under way, and
    /// aborted when the writer is dropped.
    #[cfg(feature = "parquet")]
    roller: Option<Roller>,
}

/// The task that finishes Parquet parts: it seals those open for `roll_interval` (also
/// while their streams are quiet), and converts sealed parts outside the lock, so that a
/// batch never waits for a conversion.
#[cfg(feature = "parquet")]
struct Roller {
    task: tokio::task::JoinHandle<()>,
    /// Wakes it when a write sealed parts (full, or of a finished day).
    wake: Arc<tokio::sync::Notify>,
    /// Tells it to stop once its conversion under way is done.
    stop: tokio::sync::watch::Sender<bool>,
}

#[cfg(feature = "parquet")]
impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(roller) = self.roller.take() {
            roller.task.abort();
        }
    }
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl FileWriter {
    /// Creates the directory if needed, checks that files can be created in it, and returns
    /// a writer. Blocking (directory creation), but quick; no async runtime needed.
    pub fn open(options: FileOptions) -> Result<Self, WriteError> {
        let root = &options.path;
        std::fs::create_dir_all(root).map_err(|e| {
            WriteError::terminal(format!("cannot create directory {}", root.display()), e)
        })?;
        // Fail now, not on the first batch, when the directory is not writable.
        let probe = root.join(".crypto-feeder-write-check");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                WriteError::terminal(
                    format!("cannot create files in directory {}", root.display()),
                    e,
                )
            })?;
        let backend = match options.format {
            #[cfg(feature = "parquet")]
            FileFormat::Parquet => {
                let roll = Roll {
                    rows: options.roll_rows.max(1),
                    interval: options.roll_interval,
                };
                let mut parts = ParquetFiles::new(root, options.fsync, roll);
                // Parts left open by a crash hold acknowledged batches: finish them first.
                parts.recover().map_err(|e| {
                    WriteError::terminal(
                        format!(
                            "cannot finish the Parquet parts left under {}",
                            root.display()
                        ),
                        e,
                    )
                })?;
                Backend::Parquet(parts)
            }
            _ => Backend::Lines(Files::new(&options)),
        };
        Ok(Self {
            files: Arc::new(Mutex::new(backend)),
            options,
            chunks: Vec::new(),
            pool: Vec::new(),
            #[cfg(feature = "parquet")]
            roller: None,
        })
    }

    /// Starts the task that finishes Parquet parts by age, once.
    #[cfg(feature = "parquet")]
    fn start_roller(&mut self) {
        if self.roller.is_some() || self.options.format != FileFormat::Parquet {
            return;
        }
        // Checked a few times per interval: a part is finished at most a quarter of an
        // interval (5 s at most) late.
        let tick = (self.options.roll_interval / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        let files = Arc::clone(&self.files);
        let wake = Arc::new(tokio::sync::Notify::new());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // What it logs belongs to this writer's span (its name) too.
        let task = roll_parts(files, tick, Arc::clone(&wake), stopped)
            .instrument(tracing::Span::current());
        self.roller = Some(Roller {
            task: tokio::spawn(task),
            wake,
            stop,
        });
    }

    /// The directory written under.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// The file format.
    pub fn format(&self) -> FileFormat {
        self.options.format
    }

    /// Parquet: how many parts could not be finished and wait to be tried again (their
    /// journals hold their events, and the log says why). Always 0 for other formats.
    pub async fn failing_parts(&self) -> Result<usize, WriteError> {
        self.with_files(|files| match files {
            Backend::Lines(_) => 0,
            #[cfg(feature = "parquet")]
            Backend::Parquet(p) => p.failing(),
        })
        .await
    }

    /// Whether a batch is encoded and written on the calling task rather than on a blocking
    /// thread: line files without `fsync`, batches of up to [`INLINE_EVENTS`] events. Such a
    /// write only copies a few kilobytes into the operating system's page cache, which takes
    /// less time than handing the batch to another thread and waking the task again.
    fn writes_inline(&self, batch: &[Event]) -> bool {
        !self.options.fsync
            && matches!(self.options.format, FileFormat::Jsonl | FileFormat::Csv)
            && batch.len() <= INLINE_EVENTS
    }

    fn lock_files(&self) -> Result<std::sync::MutexGuard<'_, Backend>, WriteError> {
        // A poisoned lock means a panic in the middle of file I/O: the bookkeeping of lengths
        // may be wrong, so the writer stops rather than risk corrupting files.
        self.files.lock().map_err(|_| {
            WriteError::terminal(
                "file writer state is unusable after an internal failure",
                "poisoned lock",
            )
        })
    }

    /// Runs `f` on the files on a blocking thread.
    async fn with_files<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Backend) -> T + Send + 'static,
    ) -> Result<T, WriteError> {
        let files = Arc::clone(&self.files);
        // What the blocking thread logs belongs to this writer's span (its name) too.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            // See `lock_files`.
            let mut files = files.lock().map_err(|_| {
                WriteError::terminal(
                    "file writer state is unusable after an internal failure",
                    "poisoned lock",
                )
            })?;
            Ok(f(&mut files))
        })
        .await
        .map_err(|e| WriteError::terminal("file writer task failed", e))?
    }

    /// Writes a batch whose events the format can all hold.
    async fn write_lines(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut chunks = std::mem::take(&mut self.chunks);
        let format = self.options.format;
        if self.writes_inline(batch) {
            group(batch, format, &mut chunks, &mut self.pool);
            let result = self
                .lock_files()
                .and_then(|mut files| files.write(&chunks).map_err(WriteError::Io));
            self.recycle(chunks);
            return result;
        }
        // Encoded on the blocking thread too: the encoding of a large batch then runs beside
        // the tasks that read and parse the next one, rather than on their worker thread.
        let events = batch.to_vec();
        let mut pool = std::mem::take(&mut self.pool);
        let (chunks, pool, result, sealed) = self
            .with_files(move |files| {
                group(&events, format, &mut chunks, &mut pool);
                let result = files.write(&chunks);
                (chunks, pool, result, files.has_sealed())
            })
            .await?;
        #[cfg(feature = "parquet")]
        if sealed {
            if let Some(roller) = &self.roller {
                roller.wake.notify_one();
            }
        }
        #[cfg(not(feature = "parquet"))]
        let _ = sealed;
        self.pool = pool;
        self.recycle(chunks);
        result.map_err(WriteError::Io)
    }

    fn recycle(&mut self, mut chunks: Vec<Chunk>) {
        for chunk in chunks.drain(..) {
            if self.pool.len() < POOL_SIZE {
                let mut bytes = chunk.bytes;
                bytes.clear();
                self.pool.push(bytes);
            }
        }
        self.chunks = chunks;
    }
}

#[async_trait]
impl Writer for FileWriter {
    fn name(&self) -> &str {
        "file"
    }

    /// Events that Parquet cannot hold exactly are refused one by one (see
    /// [`WriteError::Rejected`]); the rest of the batch is written.
    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "parquet")]
        if self.options.format == FileFormat::Parquet {
            self.start_roller();
            // Checked now, while the event can still be refused alone, rather than when the
            // part is finished: by then the whole journal would fail to convert.
            if let Some((fit, rejected)) = refuse_unfit(batch) {
                self.write_lines(&fit).await?;
                return Err(WriteError::Rejected(rejected));
            }
        }
        self.write_lines(batch).await
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        #[cfg(feature = "parquet")]
        if let Some(roller) = self.roller.take() {
            // It stops after the conversion it has under way; `close_all` converts the rest.
            let _ = roller.stop.send(true);
            if let Err(e) = roller.task.await {
                tracing::error!(error = %e, "the task that finishes Parquet parts failed");
            }
        }
        self.with_files(Backend::close_all)
            .await?
            .map_err(WriteError::Io)
    }

    /// The newest trade in the tail of the stream's newest file (for Parquet, the last row
    /// group of the newest part, or the journal of the part being written), ignoring files
    /// and trades dated more than a day past now (outliers that would move the resume
    /// point). Journals left by a crash were already finished into parts by [`Self::open`].
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let (root, format) = (self.options.path.clone(), self.options.format);
        let (exchange, symbol) = (exchange.to_owned(), symbol.clone());
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            super::resume::last_trade(&root, format, &exchange, &symbol, Timestamp::now())
        })
        .await
        .map_err(|e| WriteError::terminal("reading where the files left off failed", e))?
        // A tail that is not trades (lines, or a Parquet part that does not decode) stays
        // so: asking again cannot help.
        .map_err(read_error("cannot read where the files left off"))
    }

    /// Reads the stream's day files from the day of `from` to the day of `upto` (for
    /// Parquet, their parts and the journals of parts still being written) and the gaps
    /// files up to the day of `upto`, on a blocking thread, handing events over as they
    /// are read: memory holds a few thousand events, not a day. A torn last line is not
    /// read; any other line or row that cannot be read fails the replay, naming the file
    /// and line.
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        let (root, format) = (self.options.path.clone(), self.options.format);
        let (exchange, symbol, upto) = (exchange.to_owned(), symbol.clone(), upto.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Event>>(REPLAY_BATCHES);
        let span = tracing::Span::current();
        let reader = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let range = super::replay::Range {
                exchange: &exchange,
                symbol: &symbol,
                from,
                upto: &upto,
            };
            let mut batch = Vec::with_capacity(REPLAY_BATCH);
            // `false` once the receiver is gone (the replay was given up): stop reading.
            let mut emit = |event: Event| {
                batch.push(event);
                batch.len() < REPLAY_BATCH || {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                    tx.blocking_send(full).is_ok()
                }
            };
            super::replay::replay(&root, format, &range, &mut emit)?;
            if !batch.is_empty() {
                // A receiver gone by now wants nothing more anyway.
                let _ = tx.blocking_send(batch);
            }
            Ok(())
        });
        while let Some(batch) = rx.recv().await {
            for event in batch {
                out(event);
            }
        }
        reader
            .await
            .map_err(|e| WriteError::terminal("reading the files back failed", e))?
            .map_err(read_error("cannot read the files back"))?;
        Ok(true)
    }
}

/// Maps an error of reading the files back: a line or row that cannot be read stays
/// unreadable however often it is asked; other I/O may pass.
fn read_error(context: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
    move |e| match e.kind() {
        std::io::ErrorKind::InvalidData => WriteError::terminal(context, e),
        _ => WriteError::Io(e),
    }
}

/// The events of `batch` that Parquet holds exactly, and the refusals of the others; `None`
/// when every event fits.
#[cfg(feature = "parquet")]
fn refuse_unfit(batch: &[Event]) -> Option<(Vec<Event>, Vec<Rejection>)> {
    let rejected: Vec<Rejection> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, e)| check_event(e).err().map(|e| Rejection::new(i, e)))
        .collect();
    if rejected.is_empty() {
        return None;
    }
    let mut refused = rejected.iter().map(|r| r.index).peekable();
    let fit = batch
        .iter()
        .enumerate()
        .filter(|&(i, _)| refused.next_if_eq(&i).is_none())
        .map(|(_, e)| e.clone())
        .collect();
    Some((fit, rejected))
}

/// The loop of [`Roller`]: every `tick`, and when woken, seals the parts that are due and
/// converts the sealed ones; returns when told to stop.
#[cfg(feature = "parquet")]
async fn roll_parts(
    files: Arc<Mutex<Backend>>,
    tick: Duration,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = wake.notified() => {}
            _ = ticks.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let files = Arc::clone(&files);
        let span = tracing::Span::current();
        let rolled = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            roll_and_convert(&files, now)
        })
        .await;
        if !matches!(rolled, Ok(true)) {
            tracing::error!(
                "Parquet parts are no longer finished while the writer runs: its state is \
                 unusable after an internal failure; they are finished at the next start"
            );
            return;
        }
    }
}

/// Seals the parts due at `now` and converts the sealed ones, holding the lock only to
/// take them and to give back those that failed. Blocking. `false` when the lock is
/// poisoned (see `FileWriter::lock_files`; the next write reports it).
#[cfg(feature = "parquet")]
fn roll_and_convert(files: &Mutex<Backend>, now: tokio::time::Instant) -> bool {
    let (due, roll, fsync): (Vec<Sealed>, Roll, bool) = {
        let Ok(mut backend) = files.lock() else {
            return false;
        };
        let Backend::Parquet(parts) = &mut *backend else {
            return true;
        };
        parts.roll_due(now);
        let (roll, fsync) = parts.settings();
        (parts.take_sealed(now), roll, fsync)
    };
    for mut sealed in due {
        match sealed.finish(fsync) {
            Ok(rows) => {
                tracing::debug!(part = %sealed.target().display(), rows, "finished a Parquet part")
            }
            Err(e) => {
                sealed.failed(&e, now, roll.interval);
                let Ok(mut backend) = files.lock() else {
                    return false;
                };
                if let Backend::Parquet(parts) = &mut *backend {
                    parts.put_back(sealed);
                }
            }
        }
    }
    true
}

/// Where the bytes of a batch go: appended to line files, or to the journals of Parquet
/// parts.
pub(super) enum Backend {
    Lines(Files),
    #[cfg(feature = "parquet")]
    Parquet(ParquetFiles),
}

impl Backend {
    fn write(&mut self, chunks: &[Chunk]) -> std::io::Result<()> {
        match self {
            Backend::Lines(f) => f.write(chunks),
            #[cfg(feature = "parquet")]
            Backend::Parquet(p) => p.write(chunks),
        }
    }

    /// Whether Parquet parts wait to be converted.
    fn has_sealed(&self) -> bool {
        match self {
            Backend::Lines(_) => false,
            #[cfg(feature = "parquet")]
            Backend::Parquet(p) => p.has_sealed(),
        }
    }

    fn close_all(&mut self) -> std::io::Result<()> {
        match self {
            Backend::Lines(f) => f.close_all(),
            #[cfg(feature = "parquet")]
            Backend::Parquet(p) => p.close_all(),
        }
    }
}
