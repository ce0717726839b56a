//! Where a directory of files left off: the newest trade of a stream, read from the tail of
//! its newest file, so that a restarted feeder neither re-writes nor misses trades. Files
//! and trades dated in the future are outliers and do not count.
//!
//! The tail of a JSON lines or CSV day file is its last lines. Parquet keeps a day in parts
//! written one after the other (`{date}.part-NNNN.parquet`, the one being written still a
//! journal of JSON lines, `….parquet.wal`): the tail of a day is the last row group of its
//! newest part, or the last lines of its journal.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use feeder_core::exchange::Cursor;
use feeder_core::model::{Event, Symbol, Timestamp, TradeId};

use super::config::FileFormat;
use super::files::{path_component, with_path};

/// How much of a file's end is read to find its last line; lines are far shorter.
const TAIL: u64 = 64 << 10;

/// How far past now a stored trade time may lie and still count for the resume point. The
/// same bound as the pipeline's default check of trade times against receive times: a
/// trade further ahead is an outlier (a venue's bad clock, a garbled field), and resuming
/// after it would skip or rewrite everything between the real newest trade and it.
pub(super) const FUTURE_TOLERANCE: Duration = Duration::from_secs(86_400);

/// The newest trade of (`exchange`, `symbol`) stored under `root` that is not in the
/// future (later than `now` plus [`FUTURE_TOLERANCE`]): read from the tail of the newest
/// file not in the future that holds such a trade (a day file of lines; for Parquet, a part
/// or the journal of the part being written, newest part first).
///
/// Fails when the files cannot be listed or read, or when a file's tail is not trades: the
/// writer must not start without knowing where it left off, or it would write again what
/// it already holds.
pub(super) fn last_trade(
    root: &Path,
    format: FileFormat,
    exchange: &str,
    symbol: &Symbol,
    now: Timestamp,
) -> io::Result<Option<Cursor>> {
    let dir = root
        .join("trades")
        .join(&*path_component(exchange))
        .join(symbol.as_str());
    let horizon = now.saturating_add(FUTURE_TOLERANCE);
    let mut files = stored_files(&dir, format)?;
    files.retain(|(stored, path)| {
        let future = stored.day > horizon;
        if future {
            tracing::warn!(path = %path.display(), "a file dated in the future; not resuming from it");
        }
        !future
    });
    for (stored, path) in files.iter().rev() {
        let cursors = stored.tail.cursors(path, format)?;
        if let Some(cursor) = newest(&cursors, horizon) {
            return Ok(Some(cursor.clone()));
        }
        // Nothing but a header, an empty part, or only trades dated in the future: the file
        // before decides.
    }
    Ok(None)
}

/// The files of one stream's directory (`{kind}/{exchange}/{symbol}`) in `format`, in the
/// order they were written: by day, then part. Other files are left out; a directory that
/// does not exist holds none.
pub(super) fn stored_files(dir: &Path, format: FileFormat) -> io::Result<Vec<(Stored, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(with_path("list", dir)(e)),
    };
    let mut files: Vec<(Stored, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(with_path("list", dir))?.path();
        if let Some(stored) = Stored::of(&path, format) {
            files.push((stored, path));
        }
    }
    files.sort();
    Ok(files)
}

/// The newest of the trades of a file's tail not later than `horizon`: by id when both ids
/// are numbers, else by time. Not merely the last one written: a backfilled gap is written
/// after the newer trades that streamed in meanwhile.
fn newest(cursors: &[Cursor], horizon: Timestamp) -> Option<&Cursor> {
    cursors
        .iter()
        .filter(|c| c.timestamp <= horizon)
        .max_by(|a, b| {
            a.trade_id
                .cmp_numeric(&b.trade_id)
                .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
        })
}

/// A file of a stream's directory that holds trades. Ordered as written: by day, then part.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stored {
    /// The UTC day it holds, as the time the day starts.
    pub(super) day: Timestamp,
    /// The part number of a Parquet part or journal; 0 for a day file of lines.
    pub(super) part: u32,
    /// What it is. A journal sorts after the part of the same number: one left next to
    /// its finished part (a crash between the two) holds the same trades, and is read
    /// first.
    pub(super) tail: Tail,
}

/// What kind of file holds a stream's trades, which says how the trades at its end are
/// read.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Tail {
    /// JSON lines or CSV, in the writer's format: `{YYYY-MM-DD}.{jsonl|csv}`.
    Lines,
    /// A finished Parquet part: `{YYYY-MM-DD}.part-NNNN.parquet`.
    #[cfg(feature = "parquet")]
    Part,
    /// The JSON lines journal of a Parquet part: `{YYYY-MM-DD}.part-NNNN.parquet.wal`.
    #[cfg(feature = "parquet")]
    Journal,
}

impl Stored {
    /// What `path` is in a directory of `format` files; `None` for any other name.
    fn of(path: &Path, format: FileFormat) -> Option<Stored> {
        let name = path.file_name()?.to_str()?;
        let (date, part, tail) = match format {
            #[cfg(feature = "parquet")]
            FileFormat::Parquet => {
                let (part, tail) = match name.strip_suffix(".wal") {
                    Some(part) => (part, Tail::Journal),
                    None => (name, Tail::Part),
                };
                let (date, number) = part.strip_suffix(".parquet")?.split_once(".part-")?;
                let number = (number.len() == 4)
                    .then(|| number.parse::<u32>().ok())
                    .flatten()?;
                (date, number, tail)
            }
            _ => (
                name.strip_suffix(format.extension())?.strip_suffix('.')?,
                0,
                Tail::Lines,
            ),
        };
        if date.len() != 10 {
            return None;
        }
        let day = Timestamp::parse_rfc3339(&format!("{date}T00:00:00Z")).ok()?;
        Some(Stored { day, part, tail })
    }
}

impl Tail {
    /// The trades at the end of the file at `path`.
    fn cursors(&self, path: &Path, format: FileFormat) -> io::Result<Vec<Cursor>> {
        match self {
            Tail::Lines => line_cursors(path, format),
            // Journals are JSON lines whatever the format of the part. One that the writer
            // finished since the files were listed is gone, and its part holds its trades.
            #[cfg(feature = "parquet")]
            Tail::Journal => match line_cursors(path, FileFormat::Jsonl) {
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound && path.with_extension("").exists() =>
                {
                    part_cursors(&path.with_extension(""))
                }
                cursors => cursors,
            },
            #[cfg(feature = "parquet")]
            Tail::Part => part_cursors(path),
        }
    }
}

/// The trades of the last complete lines of a file. Fails when those lines are neither
/// trades nor a CSV header.
fn line_cursors(path: &Path, format: FileFormat) -> io::Result<Vec<Cursor>> {
    let lines = tail_lines(path).map_err(with_path("read", path))?;
    let cursors: Vec<Cursor> = lines.iter().filter_map(|l| parse(l, format)).collect();
    let only_headers = lines.iter().all(|l| l.starts_with("exchange,"));
    if !only_headers && cursors.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the last lines of {} are not trades; move the file away to resume \
                 from the one before it",
                path.display()
            ),
        ));
    }
    Ok(cursors)
}

/// The trades of the last row group of a Parquet part. A part that cannot be opened is an
/// I/O error of its kind; one that cannot be decoded is `InvalidData`.
#[cfg(feature = "parquet")]
fn part_cursors(path: &Path) -> io::Result<Vec<Cursor>> {
    use super::parquet::{last_row_group_cursors, ParquetCodecError};
    last_row_group_cursors(path).map_err(|e| match e {
        ParquetCodecError::Io(e) => with_path("read", path)(e),
        e => io::Error::new(
            io::ErrorKind::InvalidData,
            UnreadablePart {
                path: path.to_owned(),
                source: e,
            },
        ),
    })
}

/// A Parquet part whose last row group cannot be read as trades.
#[cfg(feature = "parquet")]
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the trades at the end of {}; move the part away to resume from the one \
     before it",
    path.display()
)]
struct UnreadablePart {
    path: PathBuf,
    #[source]
    source: super::parquet::ParquetCodecError,
}

/// The complete (newline-terminated) lines at the end of a file, within the tail window.
fn tail_lines(path: &Path) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail)?;
    // Anything after the last newline is a torn tail, never acknowledged.
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        return Ok(Vec::new());
    };
    let mut body = &tail[..end];
    if start > 0 {
        // The window may begin mid-line: drop that partial first line.
        let first = body
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| i + 1);
        body = &body[first.min(body.len())..];
    }
    Ok(body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect())
}

fn parse(line: &str, format: FileFormat) -> Option<Cursor> {
    match format {
        FileFormat::Jsonl => match serde_json::from_str::<Event>(line).ok()? {
            Event::Trade(t) => Some(Cursor {
                trade_id: t.trade_id,
                timestamp: t.timestamp,
            }),
            Event::Candle(_) | Event::Gap(_) => None,
        },
        FileFormat::Csv => {
            // exchange,symbol,trade_id,price,amount,side,timestamp,received_at
            let fields = csv_fields(line);
            let id = fields.get(2)?;
            let ts = Timestamp::parse_rfc3339(fields.get(6)?).ok()?;
            Some(Cursor {
                trade_id: TradeId::new(id),
                timestamp: ts,
            })
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Splits one CSV line (RFC 4180 quoting).
pub(super) fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use feeder_core::model::{Side, Trade};

    fn line(id: u64, at: &str) -> String {
        let t = Event::Trade(Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(id),
            price: "1".parse().unwrap(),
            amount: "1".parse().unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::parse_rfc3339(at).unwrap(),
            received_at: Timestamp::parse_rfc3339(at).unwrap(),
        });
        serde_json::to_string(&t).unwrap() + "\n"
    }

    #[test]
    fn trades_and_files_past_now_plus_a_day_do_not_count() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("trades/x/BTC-USD");
        std::fs::create_dir_all(&dir).unwrap();
        let now = Timestamp::parse_rfc3339("2024-01-02T12:00:00Z").unwrap();
        let files = [
            ("2024-01-02.jsonl", vec![line(6, "2024-01-02T10:00:00Z")]),
            // Tomorrow's file is within reach of a fast clock; its last trade is not.
            (
                "2024-01-03.jsonl",
                vec![
                    line(8, "2024-01-03T06:00:00Z"),
                    line(9, "2024-01-03T18:00:00Z"),
                ],
            ),
            ("2024-01-05.jsonl", vec![line(10, "2024-01-05T00:00:00Z")]),
            ("2226-12-04.jsonl", vec![line(7, "2226-12-04T00:00:00Z")]),
            ("notes.jsonl", vec!["not ours\n".into()]),
        ];
        for (name, lines) in &files {
            std::fs::write(dir.join(name), lines.concat()).unwrap();
        }
        let sym = Symbol::parse("BTC-USD").unwrap();
        let at = last_trade(root.path(), FileFormat::Jsonl, "x", &sym, now)
            .unwrap()
            .unwrap();
        assert_eq!(at.trade_id.as_str(), "8");

        // Only future trades in tomorrow's file: the day before decides.
        std::fs::write(
            dir.join("2024-01-03.jsonl"),
            line(9, "2024-01-03T18:00:00Z"),
        )
        .unwrap();
        let at = last_trade(root.path(), FileFormat::Jsonl, "x", &sym, now)
            .unwrap()
            .unwrap();
        assert_eq!(at.trade_id.as_str(), "6");
    }

    #[test]
    fn csv_fields_follow_rfc_4180() {
        assert_eq!(csv_fields(r#"a,"b,c","d""e",f"#), ["a", "b,c", "d\"e", "f"]);
        assert_eq!(csv_fields(""), [""]);
    }
}
