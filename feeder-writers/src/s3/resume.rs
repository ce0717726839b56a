//! Where an `s3` writer left off: the newest trade of a stream, from the spool (files not
//! uploaded yet) and from the bucket (the newest object of the stream), the newer of the
//! two.
//!
//! Both are laid out by stream, UTC day and part (`…/{YYYY-MM-DD}/{part}.{ext}`, the part
//! named by the time it was started), so the newest part of the newest day holds where the
//! stream left off: its last lines, for JSON lines, or its trades, for a Parquet object.
//! Days and trades more than a day past now are outliers and do not count, as for the
//! `file` writer.

use std::time::Duration;

use feeder_core::exchange::Cursor;
use feeder_core::model::{Event, Timestamp};

/// How much of a JSON lines file's or object's end is read to find its last trades; lines
/// are far shorter.
pub(super) const TAIL: u64 = 64 << 10;

/// How far past now a stored day or trade time may lie and still count: the `file`
/// writer's bound. Further ahead is an outlier (a venue's bad clock), and resuming after it
/// would skip everything up to it.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(86_400);

/// The latest time that counts for a resume point asked at `now`.
pub(super) fn horizon(now: Timestamp) -> Timestamp {
    now.saturating_add(FUTURE_TOLERANCE)
}

/// The UTC day a directory or key part names (`YYYY-MM-DD`), as the time it starts.
pub(super) fn day(name: &str) -> Option<Timestamp> {
    if name.len() != 10 {
        return None;
    }
    Timestamp::parse_rfc3339(&format!("{name}T00:00:00Z")).ok()
}

/// Whether `a` is newer than `b`: by id when both ids are numbers, else by time.
pub(super) fn newer(a: &Cursor, b: &Cursor) -> bool {
    a.trade_id
        .cmp_numeric(&b.trade_id)
        .unwrap_or_else(|| a.timestamp.cmp(&b.timestamp))
        .is_gt()
}

/// The newer of two resume points.
pub(super) fn newest_of(a: Option<Cursor>, b: Option<Cursor>) -> Option<Cursor> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if newer(&b, &a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The newest trade, not later than `horizon`, among `cursors`. Not merely the last one
/// written: a backfilled range is written after the newer trades that streamed in
/// meanwhile.
pub(super) fn newest(cursors: Vec<Cursor>, horizon: Timestamp) -> Option<Cursor> {
    cursors
        .into_iter()
        .filter(|c| c.timestamp <= horizon)
        .reduce(|a, b| if newer(&b, &a) { b } else { a })
}

/// The trades of the complete lines of `tail`, the end of a JSON lines file or object;
/// `from_start` says whether it is the whole of it (else its first line may be cut and is
/// skipped). Anything after the last newline is a torn write, never acknowledged, and does
/// not count. Other events are skipped; a line that is not an event fails.
pub(super) fn tail_trades(tail: &[u8], from_start: bool) -> Result<Vec<Cursor>, serde_json::Error> {
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        return Ok(Vec::new());
    };
    let mut body = &tail[..end];
    if !from_start {
        let first = body
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| i + 1);
        body = &body[first..];
    }
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Event::Trade(t) = serde_json::from_slice::<Event>(line)? {
            out.push(Cursor {
                trade_id: t.trade_id,
                timestamp: t.timestamp,
            });
        }
    }
    Ok(out)
}

/// The trades of a Parquet object written by this crate.
#[cfg(feature = "parquet")]
pub(super) fn parquet_trades(
    bytes: bytes::Bytes,
) -> Result<Vec<Cursor>, crate::file::parquet::ParquetCodecError> {
    Ok(crate::file::parquet::decode_parquet(bytes)?
        .into_iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(Cursor {
                trade_id: t.trade_id,
                timestamp: t.timestamp,
            }),
            Event::Candle(_) | Event::Gap(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use feeder_core::model::{Side, Symbol, Trade, TradeId};

    fn line(id: &str, at: &str) -> String {
        let t = Event::Trade(Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::new(id),
            price: "1".parse().unwrap(),
            amount: "1".parse().unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::parse_rfc3339(at).unwrap(),
            received_at: Timestamp::parse_rfc3339(at).unwrap(),
        });
        serde_json::to_string(&t).unwrap() + "\n"
    }

    #[test]
    fn a_cut_first_line_and_a_torn_last_line_do_not_count() {
        let whole = [
            line("1", "2024-01-02T00:00:01Z"),
            line("2", "2024-01-02T00:00:02Z"),
            line("3", "2024-01-02T00:00:03Z"),
        ]
        .concat();
        let mut tail = whole.as_bytes()[5..].to_vec();
        tail.extend_from_slice(b"{\"type\":\"tra");
        let ids: Vec<String> = tail_trades(&tail, false)
            .unwrap()
            .iter()
            .map(|c| c.trade_id.as_str().to_string())
            .collect();
        assert_eq!(ids, ["2", "3"]);
        assert_eq!(tail_trades(whole.as_bytes(), true).unwrap().len(), 3);
        // A complete line that is not an event is an error, not "nothing".
        assert!(tail_trades(b"not json\n", true).is_err());
    }

    #[test]
    fn the_newest_is_by_number_else_by_time_and_not_in_the_future() {
        let now = Timestamp::parse_rfc3339("2024-01-02T12:00:00Z").unwrap();
        let c = |id: &str, at: &str| Cursor {
            trade_id: TradeId::new(id),
            timestamp: Timestamp::parse_rfc3339(at).unwrap(),
        };
        // A backfill written after newer trades: 10 is the newest, although 7 came last.
        let got = newest(
            vec![
                c("9", "2024-01-02T10:00:00Z"),
                c("10", "2024-01-02T10:00:01Z"),
                c("7", "2024-01-02T09:00:00Z"),
                c("11", "2024-01-09T00:00:00Z"),
            ],
            horizon(now),
        )
        .unwrap();
        assert_eq!(got.trade_id.as_str(), "10");
        let got = newest(
            vec![
                c("b", "2024-01-02T10:00:01Z"),
                c("a", "2024-01-02T10:00:00Z"),
            ],
            horizon(now),
        )
        .unwrap();
        assert_eq!(got.trade_id.as_str(), "b");
        assert_eq!(
            newest_of(
                Some(c("5", "2024-01-01T00:00:00Z")),
                Some(c("6", "2023-01-01T00:00:00Z"))
            )
            .unwrap()
            .trade_id
            .as_str(),
            "6"
        );
        assert!(day("2024-01-02").is_some());
        assert!(day("notes").is_none());
    }
}
