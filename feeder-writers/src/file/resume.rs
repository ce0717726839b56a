//! Where a directory of files left off: the newest trade of a stream, read from the tail of
//! its newest file, so that a restarted feeder neither re-writes nor misses trades. Files
//! and trades dated in the future are outliers and do not count.

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
/// future (later than `now` plus [`FUTURE_TOLERANCE`]): read from the last complete lines
/// of the newest day file not in the future that holds such a trade.
///
/// Fails when the files cannot be listed or read, or when a file's last lines are not
/// trades: the writer must not start without knowing where it left off, or it would write
/// again what it already holds.
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
    if !matches!(format, FileFormat::Jsonl | FileFormat::Csv) {
        // Parquet files are finished only at rotation; their resume point is not read back.
        return Ok(None);
    }
    let horizon = now.saturating_add(FUTURE_TOLERANCE);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(with_path("list", &dir)(e)),
    };
    let mut days: Vec<(Timestamp, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(with_path("list", &dir))?.path();
        let Some(day) = day_of(&path, format) else {
            continue;
        };
        if day > horizon {
            tracing::warn!(path = %path.display(), "a file dated in the future; not resuming from it");
            continue;
        }
        days.push((day, path));
    }
    days.sort();
    for (_, path) in days.iter().rev() {
        let lines = tail_lines(path).map_err(with_path("read", path))?;
        let cursors: Vec<Cursor> = lines.iter().filter_map(|l| parse(l, format)).collect();
        // The newest trade of the tail, not merely its last line: a backfilled gap is
        // written after the newer trades that streamed in meanwhile.
        let newest = cursors
            .iter()
            .filter(|c| c.timestamp <= horizon)
            .max_by(|a, b| {
                a.trade_id
                    .cmp_numeric(&b.trade_id)
                    .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
            });
        if let Some(cursor) = newest {
            return Ok(Some(cursor.clone()));
        }
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
        // Only a header, or only trades dated in the future: the day before decides.
    }
    Ok(None)
}

/// The UTC day a file `{YYYY-MM-DD}.{ext}` holds, as the time it starts; `None` for any
/// other name.
fn day_of(path: &Path, format: FileFormat) -> Option<Timestamp> {
    let name = path.file_name()?.to_str()?;
    let date = name.strip_suffix(format.extension())?.strip_suffix('.')?;
    if date.len() != 10 {
        return None;
    }
    Timestamp::parse_rfc3339(&format!("{date}T00:00:00Z")).ok()
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
fn csv_fields(line: &str) -> Vec<String> {
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
