//! The `s3` writer: batches go to the local spool (durable on return), completed files are
//! uploaded in the background and at close.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::config::ConfigError;
use feeder_core::exchange::{Backoff, Cursor};
use feeder_core::model::{Event, Symbol, Timestamp};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::config::{S3Format, S3Options};
use super::resume::{day, horizon, newest, newest_of, tail_trades, TAIL};
use super::spool::Spool;
use crate::file::encode::{group, Chunk};
use crate::file::files::path_component;
use crate::file::FileFormat;

/// Upload attempts of the final upload at close before the rest is left for the next start.
const CLOSE_ATTEMPTS: usize = 4;

/// Writes events as objects in an S3 bucket (or an S3-compatible store).
///
/// Objects are laid out as
/// `{prefix}/{trades|candles}/{exchange}/{symbol}/{YYYY-MM-DD}/{part}.{jsonl|parquet}`,
/// where `part` is the time the object was started (nanoseconds since the epoch) and a
/// sequence number, so objects sort by time and are never overwritten by a later run.
///
/// `write` appends the batch to a local spool file and returns once it is there (durable on
/// local disk, like the `file` writer), not once it is in S3. A spool file is completed when
/// it reaches `max_object_size` or `max_object_age`, when its stream moves to a new UTC
/// day, and at close; completed files are uploaded by a background task that retries with
/// backoff until they are stored, and removed from the spool only then. Close uploads
/// everything that is left; what cannot be uploaded stays in the spool and is uploaded at
/// the next start. Uploading the same spool file twice writes the same object again, so
/// nothing is duplicated.
///
/// Where a stream left off is the newest trade in its spool files or in its newest object
/// (see [`resume_point`](Writer::resume_point)), so a restart stores nothing again.
pub struct S3Writer {
    options: S3Options,
    uploader: Uploader,
    chunks: Vec<Chunk>,
    pool: Vec<Vec<u8>>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Writer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// What the upload task and `close` share.
#[derive(Clone)]
struct Uploader {
    store: Arc<dyn ObjectStore>,
    spool: Arc<Mutex<Spool>>,
    prefix: String,
    format: S3Format,
    bucket: String,
}

impl S3Writer {
    /// Builds the client, checks that the bucket answers within `connect_timeout`, opens
    /// the spool (queueing what an earlier run left) and starts the upload task. A bad
    /// endpoint, a missing bucket or refused credentials fail here with a terminal error.
    pub async fn connect(options: S3Options) -> Result<Self, WriteError> {
        options
            .check()
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&options.bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &options.endpoint {
            let http = options
                .allow_http(endpoint)
                .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
            builder = builder.with_endpoint(endpoint).with_allow_http(http);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| WriteError::terminal("cannot set up the S3 client", e))?,
        );
        let prefix = options.prefix.trim_matches('/').to_string();
        let probe = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
        let where_ = format!("s3://{}/{prefix}", options.bucket);
        match tokio::time::timeout(
            options.connect_timeout,
            store.list_with_delimiter(probe.as_ref()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(WriteError::terminal(
                    format!("cannot list {where_} (check the bucket, endpoint and credentials)"),
                    e,
                ))
            }
            Err(_) => {
                return Err(WriteError::terminal(
                    format!(
                        "{where_} did not answer within {:?}",
                        options.connect_timeout
                    ),
                    "timeout",
                ))
            }
        }
        let dir = options.spool();
        let (max_size, max_age) = (options.max_object_size, options.max_object_age);
        let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max_size, max_age))
            .await
            .map_err(|e| WriteError::terminal("opening the S3 spool failed", e))?
            .map_err(|e| {
                WriteError::terminal(
                    format!(
                        "cannot open the spool directory {}",
                        options.spool().display()
                    ),
                    e,
                )
            })?;
        let uploader = Uploader {
            store,
            spool: Arc::new(Mutex::new(spool)),
            prefix,
            format: options.format,
            bucket: options.bucket.clone(),
        };
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let tick =
            (options.max_object_age / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let task = tokio::spawn(upload_loop(
            uploader.clone(),
            Arc::clone(&wake),
            stopped,
            tick,
        ));
        // Leftovers of an earlier run go first.
        wake.notify_one();
        tracing::info!(bucket = %options.bucket, prefix = %uploader.prefix, spool = %options.spool().display(), "s3 writer ready");
        Ok(Self {
            options,
            uploader,
            chunks: Vec::new(),
            pool: Vec::new(),
            wake,
            stop,
            task: Some(task),
        })
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &S3Options {
        &self.options
    }
}

impl Uploader {
    async fn with_spool<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, WriteError> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().map_err(|_| {
                WriteError::terminal(
                    "the S3 spool is unusable after an internal failure",
                    "poisoned lock",
                )
            })?;
            f(&mut s).map_err(WriteError::Io)
        })
        .await
        .map_err(|e| WriteError::terminal("the S3 spool task failed", e))?
    }

    /// The object key of a spool file.
    fn key(&self, rel: &Path) -> ObjectPath {
        let mut key = self.prefix.clone();
        for part in rel.with_extension(self.format.extension()).iter() {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&part.to_string_lossy());
        }
        ObjectPath::from(key)
    }

    /// The key prefix of a stream's trades: `{prefix}/trades/{exchange}/{symbol}`, as
    /// [`key`](Self::key) names its objects.
    fn trades_prefix(&self, exchange: &str, symbol: &Symbol) -> ObjectPath {
        let mut key = self.prefix.clone();
        for part in ["trades", &path_component(exchange), symbol.as_str()] {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
        }
        ObjectPath::from(key)
    }

    /// The newest trade of a stream in the bucket, not later than `horizon`: from the
    /// newest object (by day, then part) that holds such a trade. Listing failures are
    /// retriable; an object that cannot be read as events is a terminal error naming it.
    async fn newest_object_trade(
        &self,
        exchange: &str,
        symbol: &Symbol,
        horizon: Timestamp,
    ) -> Result<Option<Cursor>, WriteError> {
        let stream = self.trades_prefix(exchange, symbol);
        let listing = self
            .store
            .list_with_delimiter(Some(&stream))
            .await
            .map_err(|e| self.list_error(&stream, e))?;
        let mut days: Vec<(Timestamp, ObjectPath)> = listing
            .common_prefixes
            .into_iter()
            .filter_map(|p| {
                let d = day(p.filename()?)?;
                (d <= horizon).then_some((d, p))
            })
            .collect();
        days.sort();
        let extension = format!(".{}", self.format.extension());
        for (_, dir) in days.iter().rev() {
            let listing = self
                .store
                .list_with_delimiter(Some(dir))
                .await
                .map_err(|e| self.list_error(dir, e))?;
            let mut objects: Vec<_> = listing
                .objects
                .into_iter()
                .filter(|o| {
                    o.location
                        .filename()
                        .is_some_and(|n| n.ends_with(&extension))
                })
                .collect();
            // Part names start with the time the part was started, at a fixed width.
            objects.sort_by(|a, b| a.location.filename().cmp(&b.location.filename()));
            for object in objects.iter().rev() {
                if let Some(c) = newest(self.object_trades(object).await?, horizon) {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// The trades at the end of an object: the last lines of JSON lines, every trade of a
    /// Parquet object.
    async fn object_trades(
        &self,
        object: &object_store::ObjectMeta,
    ) -> Result<Vec<Cursor>, WriteError> {
        let key = &object.location;
        let unreadable = |e: Box<dyn std::error::Error + Send + Sync>| {
            WriteError::terminal(
                format!(
                    "cannot read where s3://{}/{key} left off; move the object away to resume \
                     from the one before it",
                    self.bucket
                ),
                e,
            )
        };
        match self.format {
            S3Format::Jsonl => {
                let start = object.size.saturating_sub(TAIL);
                let tail = self
                    .store
                    .get_range(key, start..object.size)
                    .await
                    .map_err(|e| self.get_error(key, e))?;
                tail_trades(&tail, start == 0).map_err(|e| unreadable(Box::new(e)))
            }
            #[cfg(feature = "parquet")]
            S3Format::Parquet => {
                let bytes = self
                    .store
                    .get(key)
                    .await
                    .map_err(|e| self.get_error(key, e))?
                    .bytes()
                    .await
                    .map_err(|e| self.get_error(key, e))?;
                super::resume::parquet_trades(bytes).map_err(|e| unreadable(Box::new(e)))
            }
        }
    }

    fn list_error(&self, prefix: &ObjectPath, e: object_store::Error) -> WriteError {
        WriteError::retriable(format!("cannot list s3://{}/{prefix}/", self.bucket), e)
    }

    fn get_error(&self, key: &ObjectPath, e: object_store::Error) -> WriteError {
        WriteError::retriable(format!("cannot download s3://{}/{key}", self.bucket), e)
    }

    /// Uploads every ready file, oldest first; stops at the first failure.
    async fn upload_ready(&self) -> Result<usize, WriteError> {
        let ready: Vec<(PathBuf, PathBuf)> = self
            .with_spool(|s| {
                Ok(s.ready()?
                    .into_iter()
                    .map(|rel| {
                        let abs = s.ready_path(&rel);
                        (rel, abs)
                    })
                    .collect())
            })
            .await?;
        let mut done = 0;
        for (rel, abs) in ready {
            let bytes = tokio::fs::read(&abs).await?;
            if !bytes.is_empty() {
                let body = self.encode(bytes)?;
                let key = self.key(&rel);
                let size = body.len();
                self.store
                    .put(&key, PutPayload::from(body))
                    .await
                    .map_err(|e| {
                        WriteError::retriable(
                            format!("uploading s3://{}/{key} failed", self.bucket),
                            e,
                        )
                    })?;
                tracing::debug!(key = %key, bytes = size, "uploaded to s3");
            }
            tokio::fs::remove_file(&abs).await?;
            done += 1;
        }
        Ok(done)
    }

    fn encode(&self, jsonl: Vec<u8>) -> Result<Vec<u8>, WriteError> {
        match self.format {
            S3Format::Jsonl => Ok(jsonl),
            #[cfg(feature = "parquet")]
            S3Format::Parquet => {
                let mut events = Vec::new();
                for line in jsonl.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    match serde_json::from_slice::<Event>(line) {
                        Ok(e) => events.push(e),
                        Err(e) => tracing::error!(error = %e, "skipping an unreadable spool line"),
                    }
                }
                crate::file::parquet::encode_parquet(&events)
                    .map_err(|e| WriteError::Encode(Box::new(e)))
            }
        }
    }
}

async fn upload_loop(
    up: Uploader,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    tick: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        if let Err(e) = up.with_spool(|s| s.complete(false)).await {
            tracing::error!(error = %feeder_core::writer::ErrorChain(&e), "cannot complete s3 spool files");
        }
        loop {
            let result = tokio::select! {
                r = up.upload_ready() => r,
                _ = stop.changed() => return,
            };
            match result {
                Ok(_) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %feeder_core::writer::ErrorChain(&e), retry_in = ?delay, "s3 upload failed; the files stay in the spool");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Writer for S3Writer {
    fn name(&self) -> &str {
        "s3"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "parquet")]
        if self.options.format == S3Format::Parquet {
            for event in batch {
                crate::file::parquet::check_event(event)
                    .map_err(|e| WriteError::Encode(Box::new(e)))?;
            }
        }
        let mut chunks = std::mem::take(&mut self.chunks);
        group(batch, FileFormat::Jsonl, &mut chunks, &mut self.pool);
        let spool = Arc::clone(&self.uploader.spool);
        let (mut chunks, result) = tokio::task::spawn_blocking(move || {
            let r = match spool.lock() {
                Ok(mut s) => s.write(&chunks).map_err(WriteError::Io),
                Err(_) => Err(WriteError::terminal(
                    "the S3 spool is unusable after an internal failure",
                    "poisoned lock",
                )),
            };
            (chunks, r)
        })
        .await
        .map_err(|e| WriteError::terminal("the S3 spool task failed", e))?;
        for c in chunks.drain(..) {
            if self.pool.len() < 8 {
                let mut b = c.bytes;
                b.clear();
                self.pool.push(b);
            }
        }
        self.chunks = chunks;
        if result? {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The newer of the newest trade in the stream's spool files and that in its newest
    /// object (see [`S3Writer`]); trades and days more than a day past now do not count.
    /// The spool is read first: a file uploaded meanwhile leaves the spool only once it is
    /// an object, so the listing after it finds it.
    ///
    /// A spool that cannot be read and a bucket that cannot be listed or downloaded from
    /// are retriable errors; a spool file or newest object whose end is not events is
    /// terminal, naming it.
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        let now = Timestamp::now();
        let (ex, sym) = (exchange.to_owned(), symbol.clone());
        let spooled = self
            .uploader
            .with_spool(move |s| s.newest_trade(&ex, &sym, now))
            .await
            .map_err(|e| match e {
                WriteError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    WriteError::terminal("cannot read where the s3 spool left off", e)
                }
                WriteError::Io(e) => WriteError::retriable(
                    format!(
                        "cannot read the s3 spool under {}",
                        self.options.spool().display()
                    ),
                    e,
                ),
                e => e,
            })?;
        let stored = self
            .uploader
            .newest_object_trade(exchange, symbol, horizon(now))
            .await?;
        Ok(newest_of(spooled, stored))
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.uploader.with_spool(|s| s.complete(true)).await?;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut last = None;
        for _ in 0..CLOSE_ATTEMPTS {
            match self.uploader.upload_ready().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %feeder_core::writer::ErrorChain(&e), "s3 upload at close failed");
                    last = Some(e);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        let left = self.uploader.with_spool(|s| s.ready()).await?.len();
        Err(WriteError::retriable(
            format!(
                "{left} spool files under {} were not uploaded; they will be at the next start",
                self.options.spool().display()
            ),
            last.map_or_else(
                || "upload failed".into(),
                |e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>,
            ),
        ))
    }
}
