//! The open files of a `file` writer and the blocking I/O on them.
//!
//! Everything here runs on a blocking thread. The invariants that make the writer safe to
//! retry and to restart:
//! - A file only ever grows by whole lines: each batch's bytes for a file go out in one
//!   `write_all`, and a batch that fails is cut back off every file it touched, so a retry
//!   of the same batch does not duplicate lines.
//! - A file found at open with an incomplete last line (a crash in the middle of a write that
//!   was therefore never acknowledged) has that tail cut before anything is appended.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use feeder_core::model::{utc_date, Timestamp};

use super::config::{FileFormat, FileOptions};
use super::encode::{Chunk, FileKey, StreamKey};

/// How far back a torn tail is searched for the last complete line, per read.
const TAIL_BLOCK: u64 = 8 * 1024;

/// An I/O error with the file it happened on, kept as the source of an [`io::Error`] of the
/// same kind so that callers still see an I/O error.
#[derive(Debug)]
struct FileIoError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl std::fmt::Display for FileIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} {}", self.action, self.path.display())
    }
}

impl std::error::Error for FileIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Adds the action and the path to an I/O error, as its source, keeping its kind.
pub(super) fn with_path<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |source| {
        io::Error::new(
            source.kind(),
            FileIoError {
                action,
                path: path.to_owned(),
                source,
            },
        )
    }
}

/// A file open for appending.
struct OpenFile {
    file: File,
    path: PathBuf,
    /// Length of the file's acknowledged content: what a failed batch is cut back to.
    len: u64,
    /// A CSV file that is empty and needs its header before the first line.
    needs_header: bool,
}

/// The open files of one writer.
pub(super) struct Files {
    root: PathBuf,
    format: FileFormat,
    fsync: bool,
    /// Open files. One per stream normally; a late event for an earlier day opens that day's
    /// file again, and the file is closed after its batch.
    open: HashMap<FileKey, OpenFile>,
    /// The newest day written per stream; files of older days are closed (rotation).
    newest: HashMap<StreamKey, i64>,
}

impl Files {
    pub(super) fn new(options: &FileOptions) -> Self {
        Self {
            root: options.path.clone(),
            format: options.format,
            fsync: options.fsync,
            open: HashMap::new(),
            newest: HashMap::new(),
        }
    }

    /// Appends every chunk to its file. On error, every file the batch touched is cut back to
    /// where it was, so the batch is stored not at all and can be retried.
    pub(super) fn write(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        // Where each touched file stood before this batch.
        let mut touched: Vec<(&FileKey, u64)> = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            if chunk.bytes.is_empty() {
                continue;
            }
            if let Err(e) = self.append(chunk, &mut touched) {
                self.roll_back(&touched);
                return Err(e);
            }
        }
        self.rotate(chunks);
        Ok(())
    }

    fn append<'a>(
        &mut self,
        chunk: &'a Chunk,
        touched: &mut Vec<(&'a FileKey, u64)>,
    ) -> io::Result<()> {
        if !self.open.contains_key(&chunk.key) {
            let file = self.open_file(&chunk.key)?;
            self.open.insert(chunk.key.clone(), file);
        }
        let Some(f) = self.open.get_mut(&chunk.key) else {
            return Err(io::Error::other("file handle vanished"));
        };
        touched.push((&chunk.key, f.len));
        let header = if f.needs_header {
            chunk.key.stream.kind.csv_header()
        } else {
            b""
        };
        let written = if header.is_empty() {
            f.file.write_all(&chunk.bytes)
        } else {
            // Once per file: the header goes out in the same write as the first lines.
            let mut bytes = Vec::with_capacity(header.len() + chunk.bytes.len());
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&chunk.bytes);
            f.file.write_all(&bytes)
        };
        written
            .and_then(|()| f.file.flush())
            .map_err(with_path("write", &f.path))?;
        if self.fsync {
            f.file.sync_data().map_err(with_path("sync", &f.path))?;
        }
        f.len += (header.len() + chunk.bytes.len()) as u64;
        f.needs_header = false;
        Ok(())
    }

    /// Cuts every touched file back to its length before the batch.
    fn roll_back(&mut self, touched: &[(&FileKey, u64)]) {
        let csv = self.format == FileFormat::Csv;
        for &(key, len) in touched {
            let Some(f) = self.open.get_mut(key) else {
                continue;
            };
            match f.file.set_len(len) {
                Ok(()) => {
                    f.len = len;
                    f.needs_header = csv && len == 0;
                }
                Err(e) => {
                    // Closing the file at least lets the next open cut a torn line; whole
                    // lines of the failed batch stay and will be written again by the retry.
                    tracing::error!(
                        path = %f.path.display(),
                        error = %e,
                        "cannot undo a failed batch; its lines may be duplicated by the retry"
                    );
                    self.open.remove(key);
                }
            }
        }
    }

    /// Closes files of days older than the newest day seen on their stream.
    fn rotate(&mut self, chunks: &[Chunk]) {
        let mut advanced = false;
        for chunk in chunks {
            let newest = self
                .newest
                .entry(chunk.key.stream.clone())
                .or_insert(chunk.key.day);
            if chunk.key.day > *newest {
                *newest = chunk.key.day;
                advanced = true;
            }
        }
        let newest = &self.newest;
        let is_current = |key: &FileKey| newest.get(&key.stream).is_none_or(|&day| key.day >= day);
        if advanced {
            self.open.retain(|key, _| is_current(key));
        } else {
            // A late event reopened an old day's file: close it again.
            for chunk in chunks {
                if !is_current(&chunk.key) {
                    self.open.remove(&chunk.key);
                }
            }
        }
    }

    /// Closes every file.
    pub(super) fn close_all(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for (_, f) in self.open.drain() {
            if self.fsync {
                if let Err(e) = f.file.sync_all().map_err(with_path("sync", &f.path)) {
                    result = Err(e);
                }
            }
        }
        self.newest.clear();
        result
    }

    /// The path of a file: `{root}/{kind}/{exchange}/{symbol}/{YYYY-MM-DD}.{ext}`.
    fn path_of(&self, key: &FileKey) -> PathBuf {
        let mut path = self.root.join(key.stream.kind.dir());
        path.push(&*path_component(&key.stream.exchange));
        path.push(key.stream.symbol.as_str());
        let date = utc_date(Timestamp::from_unix_secs(key.day.saturating_mul(86_400)));
        path.push(format!("{date}.{}", self.format.extension()));
        path
    }

    fn open_file(&self, key: &FileKey) -> io::Result<OpenFile> {
        let path = self.path_of(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(with_path("create directory", dir))?;
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let (mut file, created) = match options.clone().create_new(true).open(&path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                options.open(&path).map_err(with_path("open", &path))?,
                false,
            ),
            Err(e) => return Err(with_path("create", &path)(e)),
        };
        if created && self.fsync {
            // A new file survives a power loss only once the directories naming it do.
            sync_dirs(dir, &self.root)?;
        }
        let mut len = file.metadata().map_err(with_path("inspect", &path))?.len();
        if len > 0 {
            len = repair_tail(&mut file, &path, len)?;
            if self.fsync {
                file.sync_data().map_err(with_path("sync", &path))?;
            }
        }
        Ok(OpenFile {
            file,
            len,
            needs_header: self.format == FileFormat::Csv && len == 0,
            path,
        })
    }
}

/// A name safe as one path component: an exchange name comes from code, not from the
/// filesystem, so anything that could climb out of the tree or split the name is replaced.
pub(crate) fn path_component(name: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !name.is_empty() && name != "." && name != ".." && name.bytes().all(safe) {
        return Cow::Borrowed(name);
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && safe(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.bytes().all(|b| b == b'.') {
        out = out.replace('.', "_");
        out.push('_');
    }
    Cow::Owned(out)
}

/// Cuts an incomplete last line off a file of `len` bytes; returns the new length.
pub(crate) fn repair_tail(file: &mut File, path: &Path, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let read = with_path("read", path);
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))
        .and_then(|_| file.read_exact(&mut last))
        .map_err(read)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut end = len;
    let mut keep = 0;
    let mut block = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        block.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut block))
            .map_err(with_path("read", path))?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(
        path = %path.display(),
        removed_bytes = len - keep,
        "cutting an incomplete last line left by an interrupted write; the batch it belonged \
         to was not acknowledged and is written again"
    );
    file.set_len(keep).map_err(with_path("truncate", path))?;
    Ok(keep)
}

/// Syncs `dir` and each parent up to and including `root`, so that newly created entries are
/// durable.
#[cfg(unix)]
fn sync_dirs(dir: &Path, root: &Path) -> io::Result<()> {
    for d in dir.ancestors() {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(with_path("sync directory", d))?;
        if d == root {
            break;
        }
    }
    Ok(())
}

/// Directories cannot be synced this way off Unix; file data is still synced.
#[cfg(not(unix))]
fn sync_dirs(_dir: &Path, _root: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_names_cannot_escape_the_tree() {
        assert_eq!(path_component("bitstamp"), "bitstamp");
        assert_eq!(path_component("gate.io"), "gate.io");
        assert_eq!(path_component("../x"), ".._x");
        assert_eq!(path_component(".."), "___");
        assert_eq!(path_component("."), "__");
        assert_eq!(path_component(""), "_");
        assert_eq!(path_component("a/b\\c d"), "a_b_c_d");
        assert_eq!(path_component("börse"), "b_rse");
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for (content, kept) in [
            (&b"a\nb\npartial"[..], &b"a\nb\n"[..]),
            (b"no newline at all", b""),
            (b"whole\n", b"whole\n"),
        ] {
            std::fs::write(&path, content).unwrap();
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .unwrap();
            let len = repair_tail(&mut f, &path, content.len() as u64).unwrap();
            assert_eq!(len, kept.len() as u64);
            assert_eq!(std::fs::read(&path).unwrap(), kept);
        }
        // A tail longer than one read block.
        let mut long = b"first\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 3 * TAIL_BLOCK as usize + 5));
        std::fs::write(&path, &long).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(repair_tail(&mut f, &path, long.len() as u64).unwrap(), 6);
    }
}
