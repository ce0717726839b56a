//! Parquet: the column layout of trades and candles, encoding and decoding, and the part
//! files of the `file` writer's `format: parquet`.
//!
//! A Parquet file is readable only once its footer is written, and cannot be appended to
//! afterwards. So the writer does not stream batches into an open Parquet file: each batch
//! is appended to a journal of JSON lines next to the part (`{date}.part-0001.parquet.wal`),
//! which is as durable as a `jsonl` file. A part is sealed (its stream's next batch opens
//! the next part) once it holds `roll_rows` rows, once it has been open for
//! `roll_interval` (checked by a task of the writer's, so also when its stream goes quiet),
//! when its stream moves to a new UTC day, and at shutdown; then that task converts the
//! journal into `{date}.part-0001.parquet` (written to a temporary name, then renamed) and
//! removes it, outside the lock the writes take. A journal left by a crash is converted
//! when the writer next opens the directory, so an acknowledged batch is always in a
//! finished part or in a journal, and never lost.
//!
//! Part numbers only grow within a stream's day: a new part takes one more than the
//! highest number on disk (finished or journal), so names sort in the order the parts were
//! written, across restarts too, and no part is ever overwritten. Where a stream left off
//! is read back from the last row group of its newest part (its `trade_id` and
//! `timestamp_ns` columns only), or from the journal of the part still being written.
//!
//! Columns: decimals are `Decimal128(38, 18)`, exact: a value with more than 18 fractional
//! digits (after dropping trailing zeros) or more than 20 integer digits is refused rather
//! than rounded. The writer checks each event when it is written, before it reaches the
//! journal, and refuses those alone (`WriteError::Rejected`), so that the batch's other
//! events are stored and the journal always converts.
//!
//! Times are `Timestamp(Microsecond, "UTC")`, the unit every common engine reads (Spark
//! refuses nanosecond timestamps), rounded down to the microsecond. The exact nanoseconds
//! of trade and gap times are kept beside them in `Int64` columns named after the time with
//! `_ns` added (`timestamp_ns`, `received_at_ns`, `from_ns`, `to_ns`), and reading back uses
//! those. Candle times are the bounds of their interval (whole seconds), exact in
//! microseconds, so candles have no `_ns` columns; a candle whose times are not whole
//! microseconds is refused like an unfit decimal. Files of the first layout, whose times
//! were `Timestamp(Nanosecond, "UTC")` without `_ns` columns, are still read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use feeder_core::exchange::Cursor;
use feeder_core::model::{
    utc_date, Candle, Event, Gap, Interval, Side, Symbol, Timestamp, Trade, TradeId,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use rust_decimal::Decimal;
use tokio::time::Instant;

use super::encode::{Chunk, FileKey, Kind, StreamKey};
use super::files::{path_component, repair_tail};

/// Digits after the point of every decimal column.
pub const DECIMAL_SCALE: i8 = 18;
/// Total digits of every decimal column.
pub const DECIMAL_PRECISION: u8 = 38;
/// Rows per row group. The Parquet writer holds a whole row group, encoded, until it is
/// full, so this bounds the memory of converting a part: with 64 Ki rows the peak resident
/// memory of one stream into Parquet was about 7 MiB higher than with 16 Ki.
const ROWS_PER_GROUP: usize = 16 * 1024;

/// Events decoded from a journal and handed to the Parquet writer at a time. The writer keeps
/// the row group's columns encoded until the group is full, so decoded events need only be
/// held a few thousand at a time.
const EVENTS_PER_CHUNK: usize = 4096;

/// Why events could not be turned into Parquet, or Parquet into events.
#[derive(Debug, thiserror::Error)]
pub enum ParquetCodecError {
    /// A decimal does not fit `Decimal128(38, 18)` exactly.
    #[error("{field} {value} does not fit Decimal128(38, 18) exactly")]
    Decimal {
        /// The column.
        field: &'static str,
        /// The value.
        value: Decimal,
    },
    /// An event of a kind that has no Parquet layout (a gap): Parquet files hold trades or
    /// candles.
    #[error("a {0} has no Parquet layout; Parquet files hold trades and candles")]
    NoLayout(&'static str),
    /// A candle time that is not a whole microsecond, which its column cannot hold.
    #[error("{field} {nanos} ns since the epoch is not a whole microsecond")]
    Time {
        /// The column.
        field: &'static str,
        /// The time, in nanoseconds since the Unix epoch.
        nanos: i64,
    },
    /// Trades and candles were mixed in one file.
    #[error("a Parquet file holds trades or candles, not both")]
    MixedKinds,
    /// The file does not have the columns this crate writes.
    #[error("unexpected Parquet layout: {0}")]
    Layout(String),
    /// Arrow refused the data.
    #[error("arrow")]
    Arrow(#[from] ArrowError),
    /// The Parquet library failed.
    #[error("parquet")]
    Parquet(#[from] ParquetError),
    /// Reading or writing the file failed.
    #[error("i/o")]
    Io(#[from] io::Error),
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The microsecond of a time, rounded down (towards the past, before 1970 too).
fn micros(t: Timestamp) -> i64 {
    t.unix_nanos().div_euclid(1_000)
}

fn dec_type() -> DataType {
    DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
}

/// The columns of a trades file.
pub fn trades_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("exchange", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("trade_id", DataType::Utf8, false),
        Field::new("price", dec_type(), false),
        Field::new("amount", dec_type(), false),
        Field::new("side", DataType::Utf8, false),
        Field::new("timestamp", ts_type(), false),
        Field::new("received_at", ts_type(), false),
        Field::new("timestamp_ns", DataType::Int64, false),
        Field::new("received_at_ns", DataType::Int64, false),
    ]))
}

/// The columns of a candles file.
pub fn candles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("exchange", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("interval", DataType::Utf8, false),
        Field::new("open_time", ts_type(), false),
        Field::new("close_time", ts_type(), false),
        Field::new("open", dec_type(), false),
        Field::new("high", dec_type(), false),
        Field::new("low", dec_type(), false),
        Field::new("close", dec_type(), false),
        Field::new("volume", dec_type(), false),
        Field::new("trades", DataType::UInt64, false),
        Field::new("revision", DataType::UInt32, false),
        Field::new("complete", DataType::Boolean, false),
    ]))
}

/// The columns of a gaps file.
pub fn gaps_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("exchange", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("after_trade_id", DataType::Utf8, false),
        Field::new("before_trade_id", DataType::Utf8, true),
        Field::new("from", ts_type(), false),
        Field::new("to", ts_type(), true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("from_ns", DataType::Int64, false),
        Field::new("to_ns", DataType::Int64, true),
    ]))
}

/// The columns of a file of `kind`.
fn schema_of(kind: Kind) -> SchemaRef {
    match kind {
        Kind::Trades => trades_schema(),
        Kind::Candles => candles_schema(),
        Kind::Gaps => gaps_schema(),
    }
}

/// A decimal as the integer of `Decimal128(38, 18)`, or `None` when it does not fit exactly.
fn to_i128(d: Decimal) -> Option<i128> {
    let d = if d.scale() > DECIMAL_SCALE as u32 {
        d.normalize()
    } else {
        d
    };
    let shift = (DECIMAL_SCALE as u32).checked_sub(d.scale())?;
    let v = d.mantissa().checked_mul(10i128.checked_pow(shift)?)?;
    (v.unsigned_abs() < 10u128.pow(u32::from(DECIMAL_PRECISION))).then_some(v)
}

/// The decimal of a `Decimal128(38, 18)` integer, with trailing zeros dropped (so that it
/// fits `Decimal`'s 96-bit mantissa whenever the value can).
fn from_i128(mut v: i128) -> Option<Decimal> {
    let mut scale = DECIMAL_SCALE as u32;
    while scale > 0 && v % 10 == 0 {
        v /= 10;
        scale -= 1;
    }
    Decimal::try_from_i128_with_scale(v, scale).ok()
}

fn dec(field: &'static str, value: Decimal) -> Result<i128, ParquetCodecError> {
    to_i128(value).ok_or(ParquetCodecError::Decimal { field, value })
}

/// Checks that an event can be written to Parquet exactly.
pub(crate) fn check_event(event: &Event) -> Result<(), ParquetCodecError> {
    match event {
        Event::Trade(t) => {
            dec("price", t.price)?;
            dec("amount", t.amount)?;
        }
        Event::Candle(c) => {
            for (f, v) in [
                ("open", c.open),
                ("high", c.high),
                ("low", c.low),
                ("close", c.close),
                ("volume", c.volume),
            ] {
                dec(f, v)?;
            }
            for (field, t) in [("open_time", c.open_time), ("close_time", c.close_time)] {
                let nanos = t.unix_nanos();
                if nanos.rem_euclid(1_000) != 0 {
                    return Err(ParquetCodecError::Time { field, nanos });
                }
            }
        }
        // Accepted into a journal, it would fail the whole part at its conversion.
        Event::Gap(_) => {}
    }
    Ok(())
}

fn decimal_builder(n: usize) -> Result<Decimal128Builder, ArrowError> {
    Decimal128Builder::with_capacity(n).with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
}

fn ts_builder(n: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC")
}

fn trades_batch(trades: &[&Trade]) -> Result<RecordBatch, ParquetCodecError> {
    let n = trades.len();
    let (mut ex, mut sym, mut id, mut side) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut price, mut amount) = (decimal_builder(n)?, decimal_builder(n)?);
    let (mut ts, mut rx) = (ts_builder(n), ts_builder(n));
    let (mut ts_ns, mut rx_ns) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    for t in trades {
        ex.append_value(&*t.exchange);
        sym.append_value(t.symbol.as_str());
        id.append_value(t.trade_id.as_str());
        price.append_value(dec("price", t.price)?);
        amount.append_value(dec("amount", t.amount)?);
        side.append_value(t.side.as_str());
        ts.append_value(micros(t.timestamp));
        rx.append_value(micros(t.received_at));
        ts_ns.append_value(t.timestamp.unix_nanos());
        rx_ns.append_value(t.received_at.unix_nanos());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ex.finish()),
        Arc::new(sym.finish()),
        Arc::new(id.finish()),
        Arc::new(price.finish()),
        Arc::new(amount.finish()),
        Arc::new(side.finish()),
        Arc::new(ts.finish()),
        Arc::new(rx.finish()),
        Arc::new(ts_ns.finish()),
        Arc::new(rx_ns.finish()),
    ];
    Ok(RecordBatch::try_new(trades_schema(), columns)?)
}

fn candles_batch(candles: &[&Candle]) -> Result<RecordBatch, ParquetCodecError> {
    let n = candles.len();
    let (mut ex, mut sym, mut iv) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut open_t, mut close_t) = (ts_builder(n), ts_builder(n));
    let mut prices = [
        decimal_builder(n)?,
        decimal_builder(n)?,
        decimal_builder(n)?,
        decimal_builder(n)?,
        decimal_builder(n)?,
    ];
    let mut trades = UInt64Builder::with_capacity(n);
    let mut rev = UInt32Builder::with_capacity(n);
    let mut complete = BooleanBuilder::with_capacity(n);
    for c in candles {
        ex.append_value(&*c.exchange);
        sym.append_value(c.symbol.as_str());
        iv.append_value(c.interval.to_string());
        // Whole microseconds: `check_event` refuses other candles before they are stored.
        open_t.append_value(micros(c.open_time));
        close_t.append_value(micros(c.close_time));
        for (b, (f, v)) in prices.iter_mut().zip([
            ("open", c.open),
            ("high", c.high),
            ("low", c.low),
            ("close", c.close),
            ("volume", c.volume),
        ]) {
            b.append_value(dec(f, v)?);
        }
        trades.append_value(c.trades);
        rev.append_value(c.revision);
        complete.append_value(c.complete);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(ex.finish()),
        Arc::new(sym.finish()),
        Arc::new(iv.finish()),
        Arc::new(open_t.finish()),
        Arc::new(close_t.finish()),
    ];
    for mut b in prices {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(trades.finish()));
    columns.push(Arc::new(rev.finish()));
    columns.push(Arc::new(complete.finish()));
    Ok(RecordBatch::try_new(candles_schema(), columns)?)
}

fn gaps_batch(gaps: &[&Gap]) -> Result<RecordBatch, ParquetCodecError> {
    let n = gaps.len();
    let mut text: [StringBuilder; 5] = std::array::from_fn(|_| StringBuilder::new());
    let (mut from, mut to) = (ts_builder(n), ts_builder(n));
    let (mut from_ns, mut to_ns) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    for g in gaps {
        let [ex, sym, after, before, reason] = &mut text;
        ex.append_value(&*g.exchange);
        sym.append_value(g.symbol.as_str());
        after.append_value(g.after_trade_id.as_str());
        before.append_option(g.before_trade_id.as_ref().map(|id| id.as_str()));
        from.append_value(micros(g.from));
        to.append_option(g.to.map(micros));
        from_ns.append_value(g.from.unix_nanos());
        to_ns.append_option(g.to.map(|t| t.unix_nanos()));
        reason.append_value(g.reason.as_str());
    }
    let [mut ex, mut sym, mut after, mut before, mut reason] = text;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ex.finish()),
        Arc::new(sym.finish()),
        Arc::new(after.finish()),
        Arc::new(before.finish()),
        Arc::new(from.finish()),
        Arc::new(to.finish()),
        Arc::new(reason.finish()),
        Arc::new(from_ns.finish()),
        Arc::new(to_ns.finish()),
    ];
    Ok(RecordBatch::try_new(gaps_schema(), columns)?)
}

/// One record batch of events that are all trades or all candles.
fn record_batch(events: &[Event]) -> Result<RecordBatch, ParquetCodecError> {
    match events.first() {
        None | Some(Event::Trade(_)) => {
            let trades = events
                .iter()
                .map(|e| match e {
                    Event::Trade(t) => Ok(t),
                    _ => Err(ParquetCodecError::MixedKinds),
                })
                .collect::<Result<Vec<_>, _>>()?;
            trades_batch(&trades)
        }
        Some(Event::Candle(_)) => {
            let candles = events
                .iter()
                .map(|e| match e {
                    Event::Candle(c) => Ok(c),
                    _ => Err(ParquetCodecError::MixedKinds),
                })
                .collect::<Result<Vec<_>, _>>()?;
            candles_batch(&candles)
        }
        Some(Event::Gap(_)) => {
            let gaps = events
                .iter()
                .map(|e| match e {
                    Event::Gap(g) => Ok(g),
                    _ => Err(ParquetCodecError::MixedKinds),
                })
                .collect::<Result<Vec<_>, _>>()?;
            gaps_batch(&gaps)
        }
    }
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build()
}

/// Writes events of one kind as a Parquet file into `out`, a row group per
/// [`ROWS_PER_GROUP`] events at most, pulling events from `next` (a chunk at a time) so that memory stays
/// bounded. `kind` decides the columns when there are no events.
fn write_parquet<W: Write + Send>(
    out: W,
    kind: Kind,
    mut next: impl FnMut(&mut Vec<Event>) -> Result<bool, ParquetCodecError>,
) -> Result<W, ParquetCodecError> {
    let mut writer = ArrowWriter::try_new(out, schema_of(kind), Some(writer_properties()))?;
    let mut chunk = Vec::with_capacity(EVENTS_PER_CHUNK);
    loop {
        chunk.clear();
        let more = next(&mut chunk)?;
        if !chunk.is_empty() {
            writer.write(&record_batch(&chunk)?)?;
        }
        if !more {
            break;
        }
    }
    Ok(writer.into_inner()?)
}

/// Encodes events of one kind (all trades, all candles or all gaps) as a whole Parquet file.
pub fn encode_parquet(events: &[Event]) -> Result<Vec<u8>, ParquetCodecError> {
    let kind = events.first().map_or(Kind::Trades, Kind::of);
    let mut chunks = events.chunks(ROWS_PER_GROUP);
    write_parquet(Vec::new(), kind, |out| {
        if let Some(c) = chunks.next() {
            out.extend_from_slice(c);
        }
        Ok(chunks.len() > 0)
    })
}

/// Reads the events of a Parquet file written by this crate.
pub fn read_parquet(path: &Path) -> Result<Vec<Event>, ParquetCodecError> {
    decode_parquet(File::open(path)?)
}

/// Reads the events of a Parquet file written by this crate, from any source the Parquet
/// reader takes (a `File`, or `bytes::Bytes` held in memory).
pub fn decode_parquet<R: parquet::file::reader::ChunkReader + 'static>(
    source: R,
) -> Result<Vec<Event>, ParquetCodecError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(source)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        decode_batch(&batch?, &mut out)?;
    }
    Ok(out)
}

/// Decodes a record batch of trades, gaps or candles, told apart by their columns.
fn decode_batch(batch: &RecordBatch, out: &mut Vec<Event>) -> Result<(), ParquetCodecError> {
    if batch.schema().column_with_name("trade_id").is_some() {
        decode_trades(batch, out)
    } else if batch.schema().column_with_name("after_trade_id").is_some() {
        decode_gaps(batch, out)
    } else {
        decode_candles(batch, out)
    }
}

/// Hands the events of a Parquet file written by this crate to `each`, with their row
/// numbers (from 0), one record batch at a time, so that memory holds a batch and not the
/// file; stops early when `each` returns `false`. On failure, says from which row on the
/// file could not be read.
pub(crate) fn stream_parquet(
    path: &Path,
    mut each: impl FnMut(u64, Event) -> bool,
) -> Result<(), (u64, ParquetCodecError)> {
    let open = || -> Result<_, ParquetCodecError> {
        Ok(ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?)
    };
    let reader = open().map_err(|e| (0, e))?;
    let mut row = 0u64;
    let mut events = Vec::new();
    for batch in reader {
        let decoded = batch.map_err(ParquetCodecError::from).and_then(|batch| {
            events.clear();
            decode_batch(&batch, &mut events)?;
            Ok(batch.num_rows())
        });
        let rows = decoded.map_err(|e| (row, e))?;
        for (i, event) in events.drain(..).enumerate() {
            if !each(row + i as u64, event) {
                return Ok(());
            }
        }
        row += rows as u64;
    }
    Ok(())
}

/// The trade id and trade time of every trade in the last row group of a trades part, in
/// the order written: where the part left off. Only that row group's `trade_id` and
/// `timestamp_ns` columns are read (besides the footer; `timestamp` in a part of the first
/// layout, which has no `timestamp_ns`), whatever the size of the part; a part without rows
/// gives none.
pub(crate) fn last_row_group_cursors(path: &Path) -> Result<Vec<Cursor>, ParquetCodecError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let schema = builder.schema();
    if schema.column_with_name("trade_id").is_none() {
        return Err(layout("no trade_id column: not a trades part"));
    }
    let time = ["timestamp_ns", "timestamp"]
        .into_iter()
        .find(|name| schema.column_with_name(name).is_some())
        .ok_or_else(|| layout("no timestamp column: not a trades part"))?;
    let Some(last) = builder.metadata().num_row_groups().checked_sub(1) else {
        return Ok(Vec::new());
    };
    let columns = ProjectionMask::columns(builder.parquet_schema(), ["trade_id", time]);
    let reader = builder
        .with_row_groups(vec![last])
        .with_projection(columns)
        .build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let (ids, ts) = (strings(&batch, "trade_id")?, times(&batch, "timestamp")?);
        out.extend((0..batch.num_rows()).map(|i| Cursor {
            trade_id: TradeId::new(ids.value(i)),
            timestamp: ts.at(i),
        }));
    }
    Ok(out)
}

fn layout(what: impl Into<String>) -> ParquetCodecError {
    ParquetCodecError::Layout(what.into())
}

fn strings<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::StringArray, ParquetCodecError> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| layout(format!("{name} is not a string column")))
}

/// A time column as read back: the exact nanoseconds of `{name}_ns` where the file has
/// that column, else the timestamp column `{name}` in the unit it was written in
/// (nanoseconds in files of the first layout, microseconds for candle times).
enum Times<'a> {
    Nanos(&'a arrow_array::PrimitiveArray<Int64Type>),
    Timestamp(&'a dyn Array, TimeUnit),
}

impl Times<'_> {
    fn is_null(&self, i: usize) -> bool {
        match self {
            Times::Nanos(a) => a.is_null(i),
            Times::Timestamp(a, _) => a.is_null(i),
        }
    }

    /// The time of row `i` (of a row that is not null).
    fn at(&self, i: usize) -> Timestamp {
        let nanos = match *self {
            Times::Nanos(a) => a.value(i),
            Times::Timestamp(a, TimeUnit::Nanosecond) => {
                a.as_primitive::<TimestampNanosecondType>().value(i)
            }
            Times::Timestamp(a, TimeUnit::Microsecond) => a
                .as_primitive::<TimestampMicrosecondType>()
                .value(i)
                .saturating_mul(1_000),
            Times::Timestamp(a, TimeUnit::Millisecond) => a
                .as_primitive::<TimestampMillisecondType>()
                .value(i)
                .saturating_mul(1_000_000),
            Times::Timestamp(a, TimeUnit::Second) => a
                .as_primitive::<TimestampSecondType>()
                .value(i)
                .saturating_mul(1_000_000_000),
        };
        Timestamp::from_unix_nanos(nanos, 9)
    }
}

fn times<'a>(b: &'a RecordBatch, name: &str) -> Result<Times<'a>, ParquetCodecError> {
    if let Some(c) = b.column_by_name(&format!("{name}_ns")) {
        return c
            .as_primitive_opt::<Int64Type>()
            .map(Times::Nanos)
            .ok_or_else(|| layout(format!("{name}_ns is not an Int64 column")));
    }
    match b.column_by_name(name).map(|c| (c, c.data_type())) {
        Some((c, DataType::Timestamp(unit, _))) => Ok(Times::Timestamp(c.as_ref(), *unit)),
        _ => Err(layout(format!("{name} is not a timestamp column"))),
    }
}

fn decimals<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::PrimitiveArray<Decimal128Type>, ParquetCodecError> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
        .filter(|a| a.scale() == DECIMAL_SCALE)
        .ok_or_else(|| layout(format!("{name} is not a Decimal128(_, 18) column")))
}

fn decimal_at(
    a: &arrow_array::PrimitiveArray<Decimal128Type>,
    i: usize,
) -> Result<Decimal, ParquetCodecError> {
    from_i128(a.value(i)).ok_or_else(|| layout("decimal out of range"))
}

fn decode_trades(b: &RecordBatch, out: &mut Vec<Event>) -> Result<(), ParquetCodecError> {
    let (ex, sym, id, side) = (
        strings(b, "exchange")?,
        strings(b, "symbol")?,
        strings(b, "trade_id")?,
        strings(b, "side")?,
    );
    let (price, amount) = (decimals(b, "price")?, decimals(b, "amount")?);
    let (ts, rx) = (times(b, "timestamp")?, times(b, "received_at")?);
    for i in 0..b.num_rows() {
        out.push(Event::Trade(Trade {
            exchange: Arc::from(ex.value(i)),
            symbol: Symbol::parse(sym.value(i)).map_err(|e| layout(e.to_string()))?,
            trade_id: TradeId::new(id.value(i)),
            price: decimal_at(price, i)?,
            amount: decimal_at(amount, i)?,
            side: match side.value(i) {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => Side::Unknown,
            },
            timestamp: ts.at(i),
            received_at: rx.at(i),
        }));
    }
    Ok(())
}

fn decode_candles(b: &RecordBatch, out: &mut Vec<Event>) -> Result<(), ParquetCodecError> {
    let (ex, sym, iv) = (
        strings(b, "exchange")?,
        strings(b, "symbol")?,
        strings(b, "interval")?,
    );
    let (open_t, close_t) = (times(b, "open_time")?, times(b, "close_time")?);
    let p = [
        decimals(b, "open")?,
        decimals(b, "high")?,
        decimals(b, "low")?,
        decimals(b, "close")?,
        decimals(b, "volume")?,
    ];
    let trades = b
        .column_by_name("trades")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| layout("trades is not a UInt64 column"))?;
    let rev = b
        .column_by_name("revision")
        .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        .ok_or_else(|| layout("revision is not a UInt32 column"))?;
    // Files written before candles said whether they are complete have no such column.
    let complete = match b.column_by_name("complete") {
        None => None,
        Some(c) => Some(
            c.as_boolean_opt()
                .ok_or_else(|| layout("complete is not a Boolean column"))?,
        ),
    };
    for i in 0..b.num_rows() {
        let [open, high, low, close, volume] = p;
        out.push(Event::Candle(Candle {
            exchange: Arc::from(ex.value(i)),
            symbol: Symbol::parse(sym.value(i)).map_err(|e| layout(e.to_string()))?,
            interval: Interval::parse(iv.value(i)).map_err(|e| layout(e.to_string()))?,
            open_time: open_t.at(i),
            close_time: close_t.at(i),
            open: decimal_at(open, i)?,
            high: decimal_at(high, i)?,
            low: decimal_at(low, i)?,
            close: decimal_at(close, i)?,
            volume: decimal_at(volume, i)?,
            trades: trades.value(i),
            revision: rev.value(i),
            complete: complete.is_none_or(|c| c.value(i)),
        }));
    }
    Ok(())
}

fn decode_gaps(b: &RecordBatch, out: &mut Vec<Event>) -> Result<(), ParquetCodecError> {
    let (ex, sym, after, before, reason) = (
        strings(b, "exchange")?,
        strings(b, "symbol")?,
        strings(b, "after_trade_id")?,
        strings(b, "before_trade_id")?,
        strings(b, "reason")?,
    );
    let (from, to) = (times(b, "from")?, times(b, "to")?);
    for i in 0..b.num_rows() {
        let reason = serde_json::from_value(serde_json::Value::String(reason.value(i).into()))
            .map_err(|e| layout(format!("gap reason: {e}")))?;
        out.push(Event::Gap(Gap {
            exchange: Arc::from(ex.value(i)),
            symbol: Symbol::parse(sym.value(i)).map_err(|e| layout(e.to_string()))?,
            after_trade_id: TradeId::new(after.value(i)),
            before_trade_id: (!before.is_null(i)).then(|| TradeId::new(before.value(i))),
            from: from.at(i),
            to: (!to.is_null(i)).then(|| to.at(i)),
            reason,
        }));
    }
    Ok(())
}

/// Converts a journal of JSON lines into a finished Parquet file at `target` (through a
/// temporary file and a rename), then removes the journal. Returns the number of events.
pub(crate) fn convert_journal(
    journal: &Path,
    target: &Path,
    kind: Kind,
    fsync: bool,
) -> Result<usize, ParquetCodecError> {
    let tmp = target.with_extension("parquet.tmp");
    let converted = write_part(journal, &tmp, target, kind, fsync);
    if converted.is_err() {
        // The next attempt writes it anew; a crash before then leaves it to be overwritten.
        let _ = std::fs::remove_file(&tmp);
    }
    let count = converted?;
    std::fs::remove_file(journal)?;
    Ok(count)
}

/// Writes the events of `journal` to `tmp`, then renames it to `target`.
fn write_part(
    journal: &Path,
    tmp: &Path,
    target: &Path,
    kind: Kind,
    fsync: bool,
) -> Result<usize, ParquetCodecError> {
    let mut lines = BufReader::new(File::open(journal)?);
    let mut count = 0usize;
    let mut line = Vec::new();
    let out = File::create(tmp)?;
    let out = write_parquet(out, kind, |chunk| {
        while chunk.len() < EVENTS_PER_CHUNK {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                return Ok(false);
            }
            if line.last() != Some(&b'\n') {
                // A torn last line was never acknowledged.
                return Ok(false);
            }
            match serde_json::from_slice::<Event>(&line) {
                Ok(e) => {
                    chunk.push(e);
                    count += 1;
                }
                Err(e) => {
                    // Only this crate writes journals; a bad line means damage on disk.
                    tracing::error!(
                        journal = %journal.display(),
                        error = %e,
                        "skipping an unreadable line of a Parquet journal"
                    );
                }
            }
        }
        Ok(true)
    })?;
    if fsync {
        out.sync_all()?;
    }
    drop(out);
    std::fs::rename(tmp, target)?;
    if fsync {
        if let Some(dir) = target.parent() {
            File::open(dir).and_then(|d| d.sync_all())?;
        }
    }
    Ok(count)
}

/// The journal of a part: `{part}.parquet.wal`.
fn journal_of(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// The highest part number: four digits, so that names sort in the order written.
const MAX_PART: u32 = 9_999;

/// Parts are finished by size or age only below this number; the numbers above it are kept
/// for restarts and late events of the day, which must open a part of their own. A part
/// that reaches it stays open until its day ends or the writer closes.
const MAX_ROLLED_PART: u32 = 9_900;

/// Longest wait before finishing a part is tried again after it failed.
const RETRY_FINISH: Duration = Duration::from_secs(60);

/// A part that takes no more batches, whose journal waits to be converted: by the writer's
/// task, outside the lock, so that a batch never waits for a conversion. Its journal is on
/// disk, so a crash before the conversion loses nothing (the next start converts it).
pub(super) struct Sealed {
    journal_path: PathBuf,
    target: PathBuf,
    kind: Kind,
    /// Set when converting it failed: no new attempt (but at close) before then.
    retry_at: Option<Instant>,
}

impl Sealed {
    /// Converts the journal into the part. Blocking.
    pub(super) fn finish(&self, fsync: bool) -> io::Result<usize> {
        finish(&self.journal_path, &self.target, self.kind, fsync)
    }

    /// Logs a failed conversion and sets when to try again.
    pub(super) fn failed(&mut self, error: &io::Error, now: Instant, interval: Duration) {
        let retry = interval.min(RETRY_FINISH);
        tracing::error!(
            part = %self.target.display(),
            %error,
            retry_in = ?retry,
            "cannot finish a Parquet part; its journal keeps the events"
        );
        self.retry_at = Some(now + retry);
    }

    /// The part it becomes.
    pub(super) fn target(&self) -> &Path {
        &self.target
    }
}

/// When parts are finished, besides at a new UTC day and at shutdown.
#[derive(Clone, Copy, Debug)]
pub(super) struct Roll {
    /// Rows at which a part is finished.
    pub(super) rows: u64,
    /// Age at which a part is finished.
    pub(super) interval: Duration,
}

/// A part being written: its journal, open for appending.
struct Part {
    journal: File,
    journal_path: PathBuf,
    target: PathBuf,
    /// Its number within its stream's day.
    number: u32,
    /// Length of the acknowledged journal: what a failed batch is cut back to.
    len: u64,
    /// Events in the journal.
    rows: u64,
    kind: Kind,
    /// When it was opened; it is finished `Roll::interval` later.
    opened: Instant,
}

impl Part {
    /// Whether it may be finished by size or age.
    fn may_roll(&self) -> bool {
        self.number < MAX_ROLLED_PART
    }
}

/// The open parts of a `file` writer in Parquet format.
pub(super) struct ParquetFiles {
    root: PathBuf,
    fsync: bool,
    roll: Roll,
    open: HashMap<FileKey, Part>,
    /// The newest day written per stream; parts of older days are finished (rotation).
    newest: HashMap<StreamKey, i64>,
    /// The next part number of a stream's day: read from its directory when the day is
    /// first opened in this run, then counted up. Dropped for days older than the newest of
    /// their stream (a late event reads the directory again).
    next: HashMap<FileKey, u32>,
    /// Parts that take no more batches, waiting for their conversion.
    sealed: Vec<Sealed>,
}

impl ParquetFiles {
    pub(super) fn new(root: &Path, fsync: bool, roll: Roll) -> Self {
        Self {
            root: root.to_owned(),
            fsync,
            roll,
            open: HashMap::new(),
            newest: HashMap::new(),
            next: HashMap::new(),
            sealed: Vec::new(),
        }
    }

    /// Finishes the journals a crash left behind. Returns how many parts were finished.
    pub(super) fn recover(&mut self) -> io::Result<usize> {
        let mut done = 0;
        for kind in [Kind::Trades, Kind::Candles, Kind::Gaps] {
            let mut stack = vec![self.root.join(kind.dir())];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let Some(name) = path.to_str() else { continue };
                    let Some(target) = name.strip_suffix(".wal") else {
                        continue;
                    };
                    if !target.ends_with(".parquet") {
                        continue;
                    }
                    let target = PathBuf::from(target);
                    let n = finish(&path, &target, kind, self.fsync)?;
                    tracing::warn!(
                        part = %target.display(),
                        events = n,
                        "finished a Parquet part left open by an interrupted run"
                    );
                    done += 1;
                }
            }
        }
        Ok(done)
    }

    /// Appends every chunk (JSON lines) to its part's journal. On error, every journal the
    /// batch touched is cut back, so the batch is stored not at all and can be retried.
    /// Once the whole batch is in the journals it is stored; then the parts it filled, and
    /// parts of days older than its newest, are sealed for conversion.
    pub(super) fn write(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        let mut touched: Vec<(&FileKey, u64, u64)> = Vec::with_capacity(chunks.len());
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
        self.roll_full(chunks);
        Ok(())
    }

    fn append<'a>(
        &mut self,
        chunk: &'a Chunk,
        touched: &mut Vec<(&'a FileKey, u64, u64)>,
    ) -> io::Result<()> {
        if !self.open.contains_key(&chunk.key) {
            let part = self.open_part(&chunk.key)?;
            self.open.insert(chunk.key.clone(), part);
        }
        let Some(p) = self.open.get_mut(&chunk.key) else {
            return Err(io::Error::other("part vanished"));
        };
        touched.push((&chunk.key, p.len, p.rows));
        p.journal.write_all(&chunk.bytes)?;
        p.journal.flush()?;
        if self.fsync {
            p.journal.sync_data()?;
        }
        p.len += chunk.bytes.len() as u64;
        // One event per line; JSON strings escape their line breaks.
        p.rows += chunk.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(())
    }

    fn roll_back(&mut self, touched: &[(&FileKey, u64, u64)]) {
        for &(key, len, rows) in touched {
            let Some(p) = self.open.get_mut(key) else {
                continue;
            };
            match p.journal.set_len(len) {
                Ok(()) => {
                    p.len = len;
                    p.rows = rows;
                }
                Err(e) => {
                    tracing::error!(
                        journal = %p.journal_path.display(),
                        error = %e,
                        "cannot undo a failed batch; its events may be duplicated by the retry"
                    );
                    // Its journal is finished at the next start.
                    self.open.remove(key);
                }
            }
        }
    }

    /// Seals the parts of days older than the newest day seen on their stream.
    fn rotate(&mut self, chunks: &[Chunk]) {
        for chunk in chunks {
            let newest = self
                .newest
                .entry(chunk.key.stream.clone())
                .or_insert(chunk.key.day);
            *newest = (*newest).max(chunk.key.day);
        }
        let newest = &self.newest;
        let old = |k: &FileKey| newest.get(&k.stream).is_some_and(|&d| k.day < d);
        self.next.retain(|k, _| !old(k));
        let old: Vec<FileKey> = self.open.keys().filter(|k| old(k)).cloned().collect();
        for key in old {
            self.seal(&key, "its stream moved to a new UTC day");
        }
    }

    /// Seals the parts of the batch that hold `Roll::rows` rows or more.
    fn roll_full(&mut self, chunks: &[Chunk]) {
        for chunk in chunks {
            let full = self
                .open
                .get(&chunk.key)
                .is_some_and(|p| p.rows >= self.roll.rows && p.may_roll());
            if full {
                self.seal(&chunk.key, "it reached roll_rows");
            }
        }
    }

    /// Seals the parts open for `Roll::interval` or longer at `now`.
    pub(super) fn roll_due(&mut self, now: Instant) {
        let interval = self.roll.interval;
        let due: Vec<FileKey> = self
            .open
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.opened) >= interval && p.may_roll())
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.seal(&key, "it reached roll_interval");
        }
    }

    /// Takes the open part of `key` out of use: the next batch of its stream and day opens
    /// the next part.
    fn seal(&mut self, key: &FileKey, why: &str) {
        if let Some(p) = self.open.remove(key) {
            tracing::debug!(part = %p.target.display(), rows = p.rows, reason = why, "sealed a Parquet part");
            self.sealed.push(Sealed {
                journal_path: p.journal_path,
                target: p.target,
                kind: p.kind,
                retry_at: None,
            });
        }
    }

    /// Whether sealed parts wait for their conversion.
    pub(super) fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// Sealed parts whose conversion failed and waits to be tried again.
    pub(super) fn failing(&self) -> usize {
        self.sealed.iter().filter(|s| s.retry_at.is_some()).count()
    }

    /// The sealed parts due for conversion at `now`, handed over to be converted outside
    /// the lock; one that fails comes back through [`Self::put_back`].
    pub(super) fn take_sealed(&mut self, now: Instant) -> Vec<Sealed> {
        let (due, wait) = std::mem::take(&mut self.sealed)
            .into_iter()
            .partition(|s| s.retry_at.is_none_or(|at| now >= at));
        self.sealed = wait;
        due
    }

    /// Takes back a sealed part whose conversion failed, to try again later.
    pub(super) fn put_back(&mut self, sealed: Sealed) {
        self.sealed.push(sealed);
    }

    /// The options parts are rolled by, and whether conversions sync to disk.
    pub(super) fn settings(&self) -> (Roll, bool) {
        (self.roll, self.fsync)
    }

    /// Seals every open part and converts every sealed one. A part that cannot be
    /// converted keeps its journal, which the next start converts; the first such error is
    /// returned.
    pub(super) fn close_all(&mut self) -> io::Result<()> {
        let keys: Vec<FileKey> = self.open.keys().cloned().collect();
        for key in keys {
            self.seal(&key, "the writer closes");
        }
        let mut result = Ok(());
        for sealed in std::mem::take(&mut self.sealed) {
            if let Err(e) = sealed.finish(self.fsync) {
                tracing::error!(
                    part = %sealed.target.display(),
                    error = %e,
                    "cannot finish a Parquet part at close; its journal is finished at the \
                     next start"
                );
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.newest.clear();
        self.next.clear();
        result
    }

    /// Opens the journal of the next part of a stream's day: one past the highest number
    /// on disk (or counted in this run), never reusing a number whose part or journal
    /// exists.
    fn open_part(&mut self, key: &FileKey) -> io::Result<Part> {
        let mut dir = self.root.join(key.stream.kind.dir());
        dir.push(&*path_component(&key.stream.exchange));
        dir.push(key.stream.symbol.as_str());
        std::fs::create_dir_all(&dir)?;
        let date = utc_date(Timestamp::from_unix_secs(key.day.saturating_mul(86_400)));
        let first = match self.next.get(key) {
            Some(&n) => n,
            None => highest_part(&dir, &date)? + 1,
        };
        for number in first..=MAX_PART {
            let target = dir.join(format!("{date}.part-{number:04}.parquet"));
            if target.exists() {
                continue;
            }
            let journal_path = journal_of(&target);
            match OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .open(&journal_path)
            {
                Ok(journal) => {
                    self.next.insert(key.clone(), number + 1);
                    return Ok(Part {
                        journal,
                        journal_path,
                        target,
                        number,
                        len: 0,
                        rows: 0,
                        kind: key.stream.kind,
                        opened: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no part number left for {date} under {} (the last is {MAX_PART}); move the \
             day's parts away or merge them",
            dir.display()
        )))
    }
}

/// The highest part number of `date` in `dir`, finished or journal; 0 when there is none.
fn highest_part(dir: &Path, date: &str) -> io::Result<u32> {
    let prefix = format!("{date}.part-");
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((digits, ext)) = rest.split_at_checked(4) else {
            continue;
        };
        if !matches!(ext, ".parquet" | ".parquet.wal") {
            continue;
        }
        if let Ok(n) = digits.parse::<u32>() {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

/// Cuts a torn tail off a journal and converts it.
fn finish(journal: &Path, target: &Path, kind: Kind, fsync: bool) -> io::Result<usize> {
    {
        let mut f = OpenOptions::new().read(true).write(true).open(journal)?;
        let len = f.metadata()?.len();
        repair_tail(&mut f, journal, len)?;
    }
    convert_journal(journal, target, kind, fsync).map_err(|e| match e {
        ParquetCodecError::Io(io) => io,
        other => io::Error::other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        for s in [
            "0",
            "1",
            "-1",
            "43210.12",
            "0.000000000000000001",
            "99999999999999999999.5",
        ] {
            let d: Decimal = s.parse().unwrap();
            let v = to_i128(d).unwrap();
            assert_eq!(from_i128(v).unwrap(), d, "{s}");
        }
        // Trailing zeros beyond the scale are dropped, not rounded.
        let d: Decimal = "1.5000000000000000000000".parse().unwrap();
        assert_eq!(from_i128(to_i128(d).unwrap()).unwrap(), d);
        for s in ["0.0000000000000000001", "123456789012345678901"] {
            assert!(to_i128(s.parse().unwrap()).is_none(), "{s}");
        }
    }
}
