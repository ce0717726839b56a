//! Reading a stream back out of its files, for `Writer::replay`: the trades of one
//! (exchange, symbol) from a time on, up to a trade, the gaps that overlap them, and the
//! candles that open from that time on.
//!
//! Everything here is blocking I/O, run on a blocking thread. Events are handed on one at a
//! time as they are read, so memory holds a line (or one Parquet record batch), never a
//! day's file.
//!
//! Trades are filed under the UTC day of their trade time, so only the day files from the
//! day of `from` to the day of `upto` are opened. The whole of the day of `upto` is read,
//! not just up to the line of `upto`: a backfilled hole is written after the newer trades
//! that streamed in meanwhile, so trades that `upto` covers can follow it in the file.
//! Gaps are filed under the day they start, and a hole can start days before `from` and
//! still reach it, so every gaps file of the stream up to the day of `upto` is read; gaps
//! are few, and only those that overlap are kept.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use feeder_core::exchange::Cursor;
use feeder_core::model::{parse_decimal, Candle, Event, Gap, Symbol, Timestamp, Trade, TradeId};

use super::config::FileFormat;
use super::encode::Kind;
use super::files::{path_component, with_path};
use super::resume::{csv_fields, stored_files, Stored, Tail};

/// Seconds in a UTC day: files are split on these boundaries.
const SECS_PER_DAY: i64 = 86_400;

/// The longest line read back. The writer's lines are a few hundred bytes; a longer run of
/// bytes without a line break is damage, and is not read into memory whole.
const MAX_LINE: u64 = 1 << 20;

/// What is read back: the trades of one stream with a time at or after `from` that `upto`
/// covers, and the gaps of that stream that overlap them.
pub(super) struct Range<'a> {
    pub(super) exchange: &'a str,
    pub(super) symbol: &'a Symbol,
    pub(super) from: Timestamp,
    pub(super) upto: &'a Cursor,
}

impl Range<'_> {
    /// A hole overlaps when its span reaches `from` or later and starts no later than
    /// `upto`. One without an end (left open by the run that recorded it) may reach
    /// anywhere past its start, so it counts: a candle then says it may be incomplete
    /// rather than claim trades it may lack.
    fn overlaps(&self, gap: &Gap) -> bool {
        gap.from <= self.upto.timestamp && gap.to.is_none_or(|to| to >= self.from)
    }

    fn wants(&self, trade: &Trade) -> bool {
        trade.timestamp >= self.from && self.upto.covers(trade)
    }
}

/// A line or row of a stored file that cannot be read back as the event its file holds.
#[derive(Debug, thiserror::Error)]
#[error("{at} of {} cannot be read back", path.display())]
struct Unreadable {
    path: PathBuf,
    /// `line N` or `row N`, counted from 1.
    at: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn unreadable(
    path: &Path,
    at: String,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        Unreadable {
            path: path.to_owned(),
            at,
            source: source.into(),
        },
    )
}

/// Hands `emit` the events of `range` stored under `root` in `format`: its trades in the
/// order they were written, each gap just before the first trade later than the gap's
/// start (where the run that recorded it met it), gaps that start after every such trade
/// at the end. Stops early, without error, when `emit` returns `false`.
///
/// Fails with `InvalidData`, naming the file and line (or row), when a line or row cannot be
/// read back; a torn last line, never acknowledged, is not read. Other errors are the I/O
/// errors of their kind.
pub(super) fn replay(
    root: &Path,
    format: FileFormat,
    range: &Range<'_>,
    emit: &mut dyn FnMut(Event) -> bool,
) -> io::Result<()> {
    let first_day = day_of(range.from);
    let last_day = day_of(range.upto.timestamp);
    let mut gaps = Vec::new();
    for (stored, path) in stream_files(root, Kind::Gaps, format, range)? {
        if stored.day > last_day {
            break;
        }
        read_file(&path, &stored.tail, format, Kind::Gaps, &mut |event| {
            if let Event::Gap(g) = event {
                if range.overlaps(&g) {
                    gaps.push(g);
                }
            }
            true
        })?;
    }
    // Stable: gaps of one start stay in the order written.
    gaps.sort_by_key(|g| g.from);
    let mut gaps = VecDeque::from(gaps);
    for (stored, path) in stream_files(root, Kind::Trades, format, range)? {
        if stored.day < first_day {
            continue;
        }
        if stored.day > last_day {
            break;
        }
        let more = read_file(&path, &stored.tail, format, Kind::Trades, &mut |event| {
            let Event::Trade(t) = &event else {
                return true;
            };
            if !range.wants(t) {
                return true;
            }
            while gaps.front().is_some_and(|g| g.from < t.timestamp) {
                if let Some(gap) = gaps.pop_front() {
                    if !emit(Event::Gap(gap)) {
                        return false;
                    }
                }
            }
            emit(event)
        })?;
        if !more {
            return Ok(());
        }
    }
    for gap in gaps {
        if !emit(Event::Gap(gap)) {
            return Ok(());
        }
    }
    // The candles the store holds from `from` on, filed under the day they open: the
    // aggregator does not send them again.
    for (stored, path) in stream_files(root, Kind::Candles, format, range)? {
        if stored.day < first_day {
            continue;
        }
        let more = read_file(
            &path,
            &stored.tail,
            format,
            Kind::Candles,
            &mut |event| match &event {
                Event::Candle(c) if c.open_time >= range.from => emit(event),
                _ => true,
            },
        )?;
        if !more {
            break;
        }
    }
    Ok(())
}

/// The start of the UTC day of `ts`, as files are dated.
fn day_of(ts: Timestamp) -> Timestamp {
    Timestamp::from_unix_secs(ts.unix_secs().div_euclid(SECS_PER_DAY) * SECS_PER_DAY)
}

/// The files of `kind` of the range's stream, in the order written. A journal left next to
/// its finished part (a crash between the two) holds the same events as the part, and is
/// left out.
fn stream_files(
    root: &Path,
    kind: Kind,
    format: FileFormat,
    range: &Range<'_>,
) -> io::Result<Vec<(Stored, PathBuf)>> {
    let dir = root
        .join(kind.dir())
        .join(&*path_component(range.exchange))
        .join(range.symbol.as_str());
    // Only Parquet has journals to leave out.
    #[cfg_attr(not(feature = "parquet"), allow(unused_mut))]
    let mut files = stored_files(&dir, format)?;
    #[cfg(feature = "parquet")]
    {
        let mut finished: Option<(Timestamp, u32)> = None;
        files.retain(|(stored, _)| match stored.tail {
            Tail::Part => {
                finished = Some((stored.day, stored.part));
                true
            }
            Tail::Journal => finished != Some((stored.day, stored.part)),
            Tail::Lines => true,
        });
    }
    Ok(files)
}

/// Hands `each` the events of one file, in order, until it returns `false`; returns whether
/// it asked for more. Every event must be of `kind`.
fn read_file(
    path: &Path,
    tail: &Tail,
    format: FileFormat,
    kind: Kind,
    each: &mut dyn FnMut(Event) -> bool,
) -> io::Result<bool> {
    match tail {
        Tail::Lines => read_lines(path, format, kind, each),
        // Journals are JSON lines whatever the format of the part. One that the writer
        // finished since the files were listed is gone, and its part holds its events (an
        // open journal is read to its end even if removed meanwhile).
        #[cfg(feature = "parquet")]
        Tail::Journal => match read_lines(path, FileFormat::Jsonl, kind, each) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.with_extension("").exists() => {
                read_part(&path.with_extension(""), kind, each)
            }
            read => read,
        },
        #[cfg(feature = "parquet")]
        Tail::Part => read_part(path, kind, each),
    }
}

/// The events of a file of lines, one line at a time.
fn read_lines(
    path: &Path,
    format: FileFormat,
    kind: Kind,
    each: &mut dyn FnMut(Event) -> bool,
) -> io::Result<bool> {
    let file = File::open(path).map_err(with_path("open", path))?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let header = kind.csv_header().strip_suffix(b"\n").unwrap_or_default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(with_path("read", path))?;
        let Some(text) = line.strip_suffix(b"\n") else {
            if read as u64 == MAX_LINE {
                let at = format!("line {number}");
                return Err(unreadable(path, at, "no line break within 1 MiB"));
            }
            // The end of the file, or a torn last line: a write cut short, never
            // acknowledged.
            return Ok(true);
        };
        if format == FileFormat::Csv && text == header {
            continue;
        }
        let event = parse_line(text, format, kind)
            .map_err(|e| unreadable(path, format!("line {number}"), e))?;
        if !each(event) {
            return Ok(false);
        }
    }
}

/// The events of a finished Parquet part, one record batch at a time.
#[cfg(feature = "parquet")]
fn read_part(path: &Path, kind: Kind, each: &mut dyn FnMut(Event) -> bool) -> io::Result<bool> {
    use super::parquet::{stream_parquet, ParquetCodecError};
    let mut more = true;
    let mut wrong: Option<(u64, &'static str)> = None;
    stream_parquet(path, |row, event| {
        if Kind::of(&event) != kind {
            wrong = Some((row, event.kind()));
            return false;
        }
        more = each(event);
        more
    })
    .map_err(|(row, e)| match e {
        ParquetCodecError::Io(e) => with_path("read", path)(e),
        e => unreadable(path, format!("row {}", row + 1), e),
    })?;
    if let Some((row, found)) = wrong {
        let at = format!("row {}", row + 1);
        return Err(unreadable(path, at, misfiled(found, kind)));
    }
    Ok(more)
}

fn misfiled(found: &str, kind: Kind) -> String {
    format!("a {found} among the {}", kind.dir())
}

/// One line (without its line break) as an event of `kind`.
fn parse_line(
    text: &[u8],
    format: FileFormat,
    kind: Kind,
) -> Result<Event, Box<dyn std::error::Error + Send + Sync>> {
    let event = match format {
        FileFormat::Csv => {
            let fields = csv_fields(std::str::from_utf8(text)?);
            match kind {
                Kind::Trades => Event::Trade(csv_trade(&fields)?),
                Kind::Gaps => Event::Gap(csv_gap(&fields)?),
                Kind::Candles => Event::Candle(csv_candle(&fields)?),
            }
        }
        _ => serde_json::from_slice::<Event>(text)?,
    };
    if Kind::of(&event) != kind {
        return Err(misfiled(event.kind(), kind).into());
    }
    Ok(event)
}

/// A trade from the CSV fields
/// `exchange,symbol,trade_id,price,amount,side,timestamp,received_at`.
fn csv_trade(fields: &[String]) -> Result<Trade, Box<dyn std::error::Error + Send + Sync>> {
    let [exchange, symbol, id, price, amount, side, ts, received] = fields else {
        return Err(format!("{} fields where a trade has 8", fields.len()).into());
    };
    Ok(Trade {
        exchange: Arc::from(exchange.as_str()),
        symbol: Symbol::parse(symbol)?,
        trade_id: TradeId::new(id),
        price: parse_decimal(price)?,
        amount: parse_decimal(amount)?,
        side: side
            .parse()
            .map_err(|()| format!("side {side:?} is not buy, sell or unknown"))?,
        timestamp: Timestamp::parse_rfc3339(ts)?,
        received_at: Timestamp::parse_rfc3339(received)?,
    })
}

/// A gap from the CSV fields
/// `exchange,symbol,after_trade_id,before_trade_id,from,to,reason`; the optional ones empty
/// when absent.
fn csv_candle(fields: &[String]) -> Result<Candle, Box<dyn std::error::Error + Send + Sync>> {
    let [exchange, symbol, interval, open_time, close_time, open, high, low, close, volume, trades, revision, complete] =
        fields
    else {
        return Err(format!("{} fields where a candle has 13", fields.len()).into());
    };
    Ok(Candle {
        exchange: Arc::from(exchange.as_str()),
        symbol: Symbol::parse(symbol)?,
        interval: interval.parse()?,
        open_time: Timestamp::parse_rfc3339(open_time)?,
        close_time: Timestamp::parse_rfc3339(close_time)?,
        open: parse_decimal(open)?,
        high: parse_decimal(high)?,
        low: parse_decimal(low)?,
        close: parse_decimal(close)?,
        volume: parse_decimal(volume)?,
        trades: trades.parse()?,
        revision: revision.parse()?,
        complete: complete.parse()?,
    })
}

fn csv_gap(fields: &[String]) -> Result<Gap, Box<dyn std::error::Error + Send + Sync>> {
    let [exchange, symbol, after, before, from, to, reason] = fields else {
        return Err(format!("{} fields where a gap has 7", fields.len()).into());
    };
    Ok(Gap {
        exchange: Arc::from(exchange.as_str()),
        symbol: Symbol::parse(symbol)?,
        after_trade_id: TradeId::new(after),
        before_trade_id: (!before.is_empty()).then(|| TradeId::new(before)),
        from: Timestamp::parse_rfc3339(from)?,
        to: match to.as_str() {
            "" => None,
            to => Some(Timestamp::parse_rfc3339(to)?),
        },
        reason: serde_json::from_value(serde_json::Value::String(reason.clone()))?,
    })
}

#[cfg(all(test, feature = "parquet"))]
mod tests {
    use super::*;

    use feeder_core::model::Side;

    #[test]
    fn a_journal_finished_since_it_was_listed_is_read_from_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let trade = Event::Trade(Trade {
            exchange: Arc::from("x"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::from_u64(7),
            price: "1.5".parse().unwrap(),
            amount: "2".parse().unwrap(),
            side: Side::Sell,
            timestamp: Timestamp::from_unix_nanos(1_704_153_600_123_456_789, 9),
            received_at: Timestamp::from_unix_nanos(1_704_153_600_223_456_789, 9),
        });
        let part = dir.path().join("2024-01-02.part-0001.parquet");
        let bytes = super::super::parquet::encode_parquet(std::slice::from_ref(&trade)).unwrap();
        std::fs::write(&part, bytes).unwrap();
        let journal = dir.path().join("2024-01-02.part-0001.parquet.wal");
        let mut got = Vec::new();
        let more = read_file(
            &journal,
            &Tail::Journal,
            FileFormat::Parquet,
            Kind::Trades,
            &mut |e| {
                got.push(e);
                true
            },
        )
        .unwrap();
        assert!(more);
        assert_eq!(got, [trade]);

        // Neither journal nor part: the journal's own error.
        std::fs::remove_file(&part).unwrap();
        let err = read_file(
            &journal,
            &Tail::Journal,
            FileFormat::Parquet,
            Kind::Trades,
            &mut |_| true,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
