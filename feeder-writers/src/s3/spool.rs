//! The local spool of the `s3` writer: one growing JSON lines file per stream and day under
//! `active/`, moved under `ready/` (same relative path) when it is complete, and removed once
//! uploaded. All blocking I/O; the writer runs it on a blocking thread.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use feeder_core::exchange::Cursor;
use feeder_core::model::{utc_date, Symbol, Timestamp};

use crate::file::encode::{Chunk, FileKey, StreamKey};
use crate::file::files::{path_component, repair_tail};

use super::resume::{day, horizon, newest, tail_trades, TAIL};

/// Makes part names unique within a process even when opened in the same nanosecond.
static PART_SEQ: AtomicU64 = AtomicU64::new(0);

struct Active {
    file: File,
    /// Path relative to `active/` (and later `ready/`): `{kind}/{exchange}/{symbol}/{date}/{part}.jsonl`.
    rel: PathBuf,
    /// Acknowledged length: what a failed batch is cut back to.
    len: u64,
    opened: Instant,
}

pub(super) struct Spool {
    root: PathBuf,
    max_size: u64,
    max_age: Duration,
    open: HashMap<FileKey, Active>,
    newest: HashMap<StreamKey, i64>,
}

impl Spool {
    /// Opens the spool, moving whatever an earlier run left under `active/` to `ready/`
    /// (cutting a torn last line first).
    pub(super) fn open(root: &Path, max_size: u64, max_age: Duration) -> io::Result<Self> {
        let spool = Self {
            root: root.to_owned(),
            max_size,
            max_age,
            open: HashMap::new(),
            newest: HashMap::new(),
        };
        std::fs::create_dir_all(spool.root.join("active"))?;
        std::fs::create_dir_all(spool.root.join("ready"))?;
        for rel in list(&spool.root.join("active"))? {
            let path = spool.root.join("active").join(&rel);
            let mut f = OpenOptions::new().read(true).write(true).open(&path)?;
            let len = f.metadata()?.len();
            let kept = repair_tail(&mut f, &path, len)?;
            drop(f);
            if kept == 0 {
                std::fs::remove_file(&path)?;
            } else {
                spool.move_to_ready(&rel)?;
            }
        }
        Ok(spool)
    }

    /// Appends every chunk; on error every touched file is cut back. Then completes the
    /// files that are full, old, or of a past day. Returns true when something is ready.
    pub(super) fn write(&mut self, chunks: &[Chunk]) -> io::Result<bool> {
        let mut touched: Vec<(&FileKey, u64)> = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.bytes.is_empty()) {
            if let Err(e) = self.append(chunk, &mut touched) {
                for &(key, len) in &touched {
                    if let Some(a) = self.open.get_mut(key) {
                        if a.file.set_len(len).is_ok() {
                            a.len = len;
                        } else {
                            // Completed as it is: the retry may duplicate some lines.
                            self.open.remove(key);
                        }
                    }
                }
                return Err(e);
            }
            let newest = self
                .newest
                .entry(chunk.key.stream.clone())
                .or_insert(chunk.key.day);
            *newest = (*newest).max(chunk.key.day);
        }
        self.complete(false)
    }

    fn append<'a>(
        &mut self,
        chunk: &'a Chunk,
        touched: &mut Vec<(&'a FileKey, u64)>,
    ) -> io::Result<()> {
        if !self.open.contains_key(&chunk.key) {
            let a = self.create(&chunk.key)?;
            self.open.insert(chunk.key.clone(), a);
        }
        let Some(a) = self.open.get_mut(&chunk.key) else {
            return Err(io::Error::other("spool file vanished"));
        };
        touched.push((&chunk.key, a.len));
        a.file.write_all(&chunk.bytes)?;
        a.file.flush()?;
        a.len += chunk.bytes.len() as u64;
        Ok(())
    }

    fn create(&self, key: &FileKey) -> io::Result<Active> {
        let date = utc_date(Timestamp::from_unix_secs(key.day.saturating_mul(86_400)));
        let seq = PART_SEQ.fetch_add(1, Ordering::Relaxed);
        // Sortable by opening time, unique across restarts and within the process.
        let part = format!("{:019}-{seq:04}", Timestamp::now().unix_nanos().max(0));
        let mut rel = PathBuf::from(key.stream.kind.dir());
        rel.push(&*path_component(&key.stream.exchange));
        rel.push(key.stream.symbol.as_str());
        rel.push(date);
        rel.push(format!("{part}.jsonl"));
        let path = self.root.join("active").join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        Ok(Active {
            file,
            rel,
            len: 0,
            opened: Instant::now(),
        })
    }

    /// Completes files that are full, too old or of a past day (all of them with `all`).
    /// Returns true when anything is ready to upload.
    pub(super) fn complete(&mut self, all: bool) -> io::Result<bool> {
        let newest = &self.newest;
        let (max_size, max_age) = (self.max_size, self.max_age);
        let done: Vec<FileKey> = self
            .open
            .iter()
            .filter(|(k, a)| {
                all || a.len >= max_size
                    || a.opened.elapsed() >= max_age
                    || newest.get(&k.stream).is_some_and(|&d| k.day < d)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut result = Ok(());
        for key in &done {
            if let Some(a) = self.open.remove(key) {
                drop(a.file);
                if let Err(e) = self.move_to_ready(&a.rel) {
                    result = Err(e);
                }
            }
        }
        if all {
            self.newest.clear();
        }
        result.map(|()| !done.is_empty())
    }

    fn move_to_ready(&self, rel: &Path) -> io::Result<()> {
        let to = self.root.join("ready").join(rel);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(self.root.join("active").join(rel), to)
    }

    /// The files ready to upload, relative to `ready/`, oldest first.
    pub(super) fn ready(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = list(&self.root.join("ready"))?;
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(files)
    }

    /// The newest trade of (`exchange`, `symbol`) in the spool, not later than a day past
    /// `now`: from the last lines of its newest file (by day, then part; `active/` and
    /// `ready/` alike) that holds such a trade. Holding the spool's lock keeps files from
    /// moving between `active/` and `ready/` meanwhile; a file that vanishes was uploaded,
    /// and the bucket holds it.
    ///
    /// A file whose last complete lines are not events fails with `InvalidData`.
    pub(super) fn newest_trade(
        &self,
        exchange: &str,
        symbol: &Symbol,
        now: Timestamp,
    ) -> io::Result<Option<Cursor>> {
        let horizon = horizon(now);
        let mut files: Vec<(Timestamp, std::ffi::OsString, PathBuf)> = Vec::new();
        for state in ["active", "ready"] {
            let stream = self
                .root
                .join(state)
                .join("trades")
                .join(&*path_component(exchange))
                .join(symbol.as_str());
            for rel in list(&stream)? {
                let (Some(date), Some(name)) = (rel.parent(), rel.file_name()) else {
                    continue;
                };
                let Some(day) = date.to_str().and_then(day) else {
                    continue;
                };
                if day <= horizon && rel.extension().is_some_and(|e| e == "jsonl") {
                    files.push((day, name.to_owned(), stream.join(&rel)));
                }
            }
        }
        files.sort();
        for (_, _, path) in files.iter().rev() {
            let tail = match read_tail(path) {
                Ok(tail) => tail,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let cursors = tail_trades(&tail.bytes, tail.whole).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    UnreadableSpoolFile {
                        path: path.clone(),
                        source: e,
                    },
                )
            })?;
            if let Some(c) = newest(cursors, horizon) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The absolute path of a ready file.
    pub(super) fn ready_path(&self, rel: &Path) -> PathBuf {
        self.root.join("ready").join(rel)
    }
}

/// A spool file whose last lines are not events.
#[derive(Debug, thiserror::Error)]
#[error(
    "the last lines of the spool file {} are not events; move it away to resume from the \
     one before it",
    path.display()
)]
struct UnreadableSpoolFile {
    path: PathBuf,
    #[source]
    source: serde_json::Error,
}

/// The end of a file, at most [`TAIL`] bytes.
struct Tail {
    bytes: Vec<u8>,
    /// Whether it is the whole file.
    whole: bool,
}

fn read_tail(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes)?;
    Ok(Tail {
        bytes,
        whole: start == 0,
    })
}

/// Every file under `dir`, relative to it.
fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_owned());
            }
        }
    }
    Ok(out)
}
