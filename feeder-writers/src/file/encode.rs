//! Turning a batch into one buffer of bytes per destination file.

use std::io::Write as _;
use std::sync::Arc;

use feeder_core::model::{write_json_line, Candle, Event, Gap, Symbol, Trade};

use super::config::FileFormat;

/// Seconds in a UTC day: files are split on these boundaries.
const SECS_PER_DAY: i64 = 86_400;

/// Trades, candles and gaps are kept in separate trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Trades,
    Candles,
    Gaps,
}

impl Kind {
    pub(crate) fn of(event: &Event) -> Self {
        match event {
            Event::Trade(_) => Kind::Trades,
            Event::Candle(_) => Kind::Candles,
            Event::Gap(_) => Kind::Gaps,
        }
    }

    /// The top-level directory of this kind.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Kind::Trades => "trades",
            Kind::Candles => "candles",
            Kind::Gaps => "gaps",
        }
    }

    /// The CSV header line of this kind.
    pub(super) fn csv_header(self) -> &'static [u8] {
        match self {
            Kind::Trades => {
                b"exchange,symbol,trade_id,price,amount,side,timestamp,received_at\n"
            }
            Kind::Candles => b"exchange,symbol,interval,open_time,close_time,open,high,low,close,volume,trades,revision,complete\n",
            Kind::Gaps => {
                b"exchange,symbol,after_trade_id,before_trade_id,from,to,reason\n"
            }
        }
    }
}

/// One stream: the events of one kind, exchange and symbol. Files rotate per stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    pub(crate) kind: Kind,
    pub(crate) exchange: Arc<str>,
    pub(crate) symbol: Symbol,
}

/// One file: a stream on one UTC day (days since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub(crate) stream: StreamKey,
    pub(crate) day: i64,
}

impl FileKey {
    fn is_for(&self, event: &Event, kind: Kind, day: i64) -> bool {
        self.day == day
            && self.stream.kind == kind
            && *self.stream.exchange == *event.exchange()
            && self.stream.symbol == *event.symbol()
    }
}

/// The encoded lines of one batch bound for one file.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) key: FileKey,
    pub(crate) bytes: Vec<u8>,
}

/// The UTC day an event is filed under: that of the trade time or the candle's open time.
fn day_of(event: &Event) -> i64 {
    event.time().unix_secs().div_euclid(SECS_PER_DAY)
}

/// Groups `batch` by destination file and encodes it, keeping the order of events within
/// each file. Buffers for new chunks come from `pool` so their capacity is reused across
/// batches.
pub(crate) fn group(
    batch: &[Event],
    format: FileFormat,
    chunks: &mut Vec<Chunk>,
    pool: &mut Vec<Vec<u8>>,
) {
    // A batch mostly holds one stream, so the chunk of the previous event is tried first;
    // otherwise the few chunks of the batch are searched in turn.
    let mut last = 0;
    for event in batch {
        let kind = Kind::of(event);
        let day = day_of(event);
        let found = match chunks.get(last) {
            Some(c) if c.key.is_for(event, kind, day) => Some(last),
            _ => chunks.iter().position(|c| c.key.is_for(event, kind, day)),
        };
        let index = match found {
            Some(i) => i,
            None => {
                chunks.push(Chunk {
                    key: FileKey {
                        stream: StreamKey {
                            kind,
                            exchange: exchange_arc(event),
                            symbol: event.symbol().clone(),
                        },
                        day,
                    },
                    bytes: pool.pop().unwrap_or_default(),
                });
                chunks.len() - 1
            }
        };
        last = index;
        if let Some(chunk) = chunks.get_mut(index) {
            encode(event, format, &mut chunk.bytes);
        }
    }
}

fn exchange_arc(event: &Event) -> Arc<str> {
    match event {
        Event::Trade(t) => Arc::clone(&t.exchange),
        Event::Candle(c) => Arc::clone(&c.exchange),
        Event::Gap(g) => Arc::clone(&g.exchange),
    }
}

/// Appends one event as a line of `format`.
pub(super) fn encode(event: &Event, format: FileFormat, out: &mut Vec<u8>) {
    match format {
        // Parquet parts are journaled as JSON lines until they are finished.
        FileFormat::Jsonl => write_json_line(event, out),
        #[cfg(feature = "parquet")]
        FileFormat::Parquet => write_json_line(event, out),
        FileFormat::Csv => match event {
            Event::Trade(t) => csv_trade(t, out),
            Event::Candle(c) => csv_candle(c, out),
            Event::Gap(g) => csv_gap(g, out),
        },
    }
}

fn csv_gap(g: &Gap, out: &mut Vec<u8>) {
    csv_field(&g.exchange, out);
    out.push(b',');
    csv_field(g.symbol.as_str(), out);
    out.push(b',');
    csv_field(g.after_trade_id.as_str(), out);
    out.push(b',');
    if let Some(id) = &g.before_trade_id {
        csv_field(id.as_str(), out);
    }
    let _ = write!(out, ",{},", g.from);
    if let Some(to) = g.to {
        let _ = write!(out, "{to}");
    }
    let _ = writeln!(out, ",{}", g.reason);
}

fn csv_trade(t: &Trade, out: &mut Vec<u8>) {
    csv_field(&t.exchange, out);
    out.push(b',');
    csv_field(t.symbol.as_str(), out);
    out.push(b',');
    csv_field(t.trade_id.as_str(), out);
    // Decimals, sides and timestamps never hold a comma, quote or newline.
    let _ = writeln!(
        out,
        ",{},{},{},{},{}",
        t.price, t.amount, t.side, t.timestamp, t.received_at
    );
}

fn csv_candle(c: &Candle, out: &mut Vec<u8>) {
    csv_field(&c.exchange, out);
    out.push(b',');
    csv_field(c.symbol.as_str(), out);
    let _ = writeln!(
        out,
        ",{},{},{},{},{},{},{},{},{},{},{}",
        c.interval,
        c.open_time,
        c.close_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.trades,
        c.revision,
        c.complete
    );
}

/// Writes a CSV field, quoted (RFC 4180: in double quotes, quotes doubled) only when it holds
/// a comma, a quote or a line break.
fn csv_field(s: &str, out: &mut Vec<u8>) {
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for part in s.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> String {
        let mut out = Vec::new();
        csv_field(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(field("bitstamp"), "bitstamp");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("\""), "\"\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field("semi;colon 'single'"), "semi;colon 'single'");
    }
}
