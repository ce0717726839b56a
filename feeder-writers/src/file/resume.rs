//! Where a directory of files left off: the newest trade of a stream, read from the tail of
//! its newest file, so that a restarted feeder neither re-writes nor misses trades.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use feeder_core::exchange::Cursor;
use feeder_core::model::{Event, Symbol, Timestamp, TradeId};

use super::config::FileFormat;
use super::files::path_component;

/// How much of a file's end is read to find its last line; lines are far shorter.
const TAIL: u64 = 64 << 10;

/// The newest trade of (`exchange`, `symbol`) stored under `root`, from the last complete
/// line of the newest day file that has one. Files whose last line cannot be read count as
/// holding nothing (logged), so the feeder falls back on the valve rather than failing.
pub(super) fn last_trade(
    root: &Path,
    format: FileFormat,
    exchange: &str,
    symbol: &Symbol,
) -> io::Result<Option<Cursor>> {
    let dir = root
        .join("trades")
        .join(&*path_component(exchange))
        .join(symbol.as_str());
    if !matches!(format, FileFormat::Jsonl | FileFormat::Csv) {
        // Parquet files are finished only at rotation; their resume point is not read back.
        return Ok(None);
    }
    let mut days: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == format.extension()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // `YYYY-MM-DD` names sort by day.
    days.sort();
    for path in days.iter().rev() {
        let lines = tail_lines(path)?;
        // The newest trade of the tail, not merely its last line: a backfilled gap is
        // written after the newer trades that streamed in meanwhile.
        let newest = lines
            .iter()
            .filter_map(|l| parse(l, format))
            .max_by(|a, b| {
                a.trade_id
                    .cmp_numeric(&b.trade_id)
                    .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
            });
        match newest {
            Some(cursor) => return Ok(Some(cursor)),
            None if lines.iter().all(|l| l.starts_with("exchange,")) => continue,
            None => {
                tracing::warn!(path = %path.display(), "cannot read the last trades of this file; not resuming from it");
                return Ok(None);
            }
        }
    }
    Ok(None)
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

    #[test]
    fn csv_fields_follow_rfc_4180() {
        assert_eq!(csv_fields(r#"a,"b,c","d""e",f"#), ["a", "b,c", "d\"e", "f"]);
        assert_eq!(csv_fields(""), [""]);
    }
}
