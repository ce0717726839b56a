//! `format: parquet` of the `file` writer: exact columns, parts finished at rotation and
//! close, never overwritten, and journals left by a crash finished at the next start.

mod conformance_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Candle, Event, Interval, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::{RunnerSettings, Writer, WriterRunner};
use feeder_core::WriteError;
use feeder_writers::file::parquet::{encode_parquet, read_parquet, trades_schema};
use feeder_writers::{FileFormat, FileOptions, FileWriter};

/// 2024-01-02T00:00:00Z.
const DAY2: i64 = 1_704_153_600;

fn trade(id: u64, secs: i64, price: &str) -> Event {
    Event::Trade(Trade {
        exchange: Arc::from("kraken"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: price.parse().unwrap(),
        amount: "0.000000000000000001".parse().unwrap(),
        side: Side::Buy,
        timestamp: Timestamp::from_unix_nanos(secs * 1_000_000_000 + 123_456_789, 9),
        received_at: Timestamp::from_unix_nanos(secs * 1_000_000_000 + 999_999_999, 9),
    })
}

fn open(root: &Path) -> FileWriter {
    FileWriter::open(FileOptions::new(root).with_format(FileFormat::Parquet)).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn stream_dir(root: &Path) -> PathBuf {
    root.join("trades/kraken/BTC-USD")
}

#[tokio::test]
async fn parts_are_finished_at_rotation_and_close_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    let day1 = vec![
        trade(1, DAY2 - 5, "43210.123456789012345678"),
        trade(2, DAY2 - 1, "1"),
    ];
    w.write(&day1).await.unwrap();
    // Only the journal exists while the part is open.
    assert_eq!(
        files(&stream_dir(dir.path())),
        ["2024-01-01.part-0001.parquet.wal"]
    );
    let day2 = vec![trade(3, DAY2 + 1, "99999999999999999999.5")];
    w.write(&day2).await.unwrap();
    // The new day finished the old day's part (converted by the writer's task, not by the
    // write that sealed it).
    until("the old day's part is finished", || {
        files(&stream_dir(dir.path()))
            == [
                "2024-01-01.part-0001.parquet",
                "2024-01-02.part-0001.parquet.wal",
            ]
    })
    .await;
    w.close().await.unwrap();
    let s = stream_dir(dir.path());
    assert_eq!(
        read_parquet(&s.join("2024-01-01.part-0001.parquet")).unwrap(),
        day1
    );
    let back = read_parquet(&s.join("2024-01-02.part-0001.parquet")).unwrap();
    assert_eq!(back, day2);
    // Nanoseconds are kept.
    assert_eq!(back[0].time().unix_nanos() % 1_000_000_000, 123_456_789);
}

#[tokio::test]
async fn a_restart_starts_a_new_part_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..3u64 {
        let mut w = open(dir.path());
        w.write(&[trade(run, DAY2, "1")]).await.unwrap();
        w.close().await.unwrap();
    }
    let s = stream_dir(dir.path());
    assert_eq!(
        files(&s),
        [
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0002.parquet",
            "2024-01-02.part-0003.parquet"
        ]
    );
    for (i, f) in files(&s).iter().enumerate() {
        assert_eq!(
            read_parquet(&s.join(f)).unwrap(),
            [trade(i as u64, DAY2, "1")]
        );
    }
}

#[tokio::test]
async fn a_journal_left_by_a_crash_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<Event> = (0..50).map(|i| trade(i, DAY2 + i as i64, "2.5")).collect();
    {
        let mut w = open(dir.path());
        w.write(&batch).await.unwrap();
        // Dropped without close, as a crash would leave it.
    }
    let wal = stream_dir(dir.path()).join("2024-01-02.part-0001.parquet.wal");
    // A torn line from a write that was never acknowledged.
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(b"{\"type\":\"trade\",\"exch");
    std::fs::write(&wal, bytes).unwrap();
    let mut w = open(dir.path());
    assert_eq!(
        files(&stream_dir(dir.path())),
        ["2024-01-02.part-0001.parquet"]
    );
    let recovered = read_parquet(&stream_dir(dir.path()).join("2024-01-02.part-0001.parquet"));
    assert_eq!(recovered.unwrap(), batch);
    // The next batch goes to a new part.
    w.write(&[trade(99, DAY2, "1")]).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(
        files(&stream_dir(dir.path())),
        [
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0002.parquet"
        ]
    );
}

#[tokio::test]
async fn decimals_that_do_not_fit_exactly_are_refused_not_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    let mut bad = trade(1, DAY2, "1");
    if let Event::Trade(t) = &mut bad {
        t.amount = "0.0000000000000000001".parse().unwrap();
    }
    let good = [
        trade(0, DAY2, "1"),
        trade(2, DAY2, "99999999999999999999.12345678"),
    ];
    let err = w
        .write(&[good[0].clone(), bad, good[1].clone()])
        .await
        .unwrap_err();
    assert!(!err.is_retriable());
    let WriteError::Rejected(rejected) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 1);
    assert_eq!(
        rejected[0].reason.to_string(),
        "amount 0.0000000000000000001 does not fit Decimal128(38, 18) exactly"
    );
    // The events that fit were stored; the other was not rounded into the file.
    w.close().await.unwrap();
    assert_eq!(conformance_support::read_tree(dir.path()), good);
}

#[tokio::test]
async fn one_unencodable_price_costs_only_its_own_event() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path());
    // 300 trades of three symbols; one price has 21 integer digits, one more than
    // Decimal128(38, 18) holds.
    let batch: Vec<Event> = (0..300u64)
        .map(|i| {
            let price = if i == 150 {
                "123456789012345678901"
            } else {
                "43210.5"
            };
            let mut e = trade(i, DAY2 + i as i64, price);
            if let Event::Trade(t) = &mut e {
                t.symbol =
                    Symbol::parse(["BTC-USD", "ETH-USD", "SOL-USD"][i as usize % 3]).unwrap();
            }
            e
        })
        .collect();
    let (handle, task) = WriterRunner::spawn(
        Box::new(writer),
        RunnerSettings::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    assert!(handle.send(Arc::new(batch.clone())).await);
    let stats = handle.stats().clone();
    drop(handle);
    task.await.unwrap();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&stats.events), 299);
    assert_eq!(get(&stats.rejected), 1);
    assert_eq!(get(&stats.dropped), 0);

    let mut stored = conformance_support::read_tree(dir.path());
    stored.sort_by_key(|e| match e {
        Event::Trade(t) => t.trade_id.as_str().parse::<u64>().unwrap(),
        _ => unreachable!(),
    });
    let mut want = batch;
    want.remove(150);
    assert_eq!(stored, want);
}

#[test]
fn the_columns_are_typed_for_analytics() {
    let schema = trades_schema();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "exchange:Utf8",
            "symbol:Utf8",
            "trade_id:Utf8",
            "price:Decimal128(38, 18)",
            "amount:Decimal128(38, 18)",
            "side:Utf8",
            "timestamp:Timestamp(µs, \"UTC\")",
            "received_at:Timestamp(µs, \"UTC\")",
            "timestamp_ns:Int64",
            "received_at_ns:Int64"
        ]
    );
}

/// Runs a Python script with `args`, where python3 can import `module`; `None` (after a
/// note, or a failure under `CI`) where it cannot. Fails the test when the script fails.
fn python(module: &str, script: &str, args: &[&Path]) -> Option<serde_json::Value> {
    let has = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        conformance_support::missing(
            &format!("python3 with {module}"),
            &format!("import {module} failed"),
        );
        return None;
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Trades whose times carry nanoseconds (and, for some, only micro- or milliseconds), over
/// two symbols, and a gap: written alike by a Parquet and a JSON lines writer.
fn mixed_events() -> Vec<Event> {
    let mut events: Vec<Event> = (0..40u64)
        .map(|i| {
            let mut e = trade(i, DAY2 + i as i64, "43210.12");
            if let Event::Trade(t) = &mut e {
                let ns = t.timestamp.unix_nanos() + i as i64 * 1_001;
                t.timestamp = match i % 3 {
                    0 => Timestamp::from_unix_nanos(ns, 9),
                    1 => Timestamp::from_unix_micros(ns / 1_000),
                    _ => Timestamp::from_unix_millis(ns / 1_000_000),
                };
                t.received_at = Timestamp::from_unix_nanos(ns + 987_654_321, 9);
                if i % 2 == 1 {
                    t.symbol = Symbol::parse("ETH-USD").unwrap();
                }
            }
            e
        })
        .collect();
    events.push(Event::Gap(feeder_core::model::Gap {
        exchange: Arc::from("kraken"),
        symbol: btc(),
        after_trade_id: TradeId::from_u64(1004),
        before_trade_id: Some(TradeId::from_u64(1006)),
        from: Timestamp::from_unix_nanos(DAY2 * 1_000_000_000 + 4_000_000_777, 9),
        to: Some(Timestamp::from_unix_nanos(
            DAY2 * 1_000_000_000 + 6_000_000_999,
            9,
        )),
        reason: feeder_core::model::GapReason::VenueLimit,
    }));
    events
}

/// Writes [`mixed_events`] with a Parquet writer under `parquet` and a JSON lines writer
/// under `jsonl`, both closed.
async fn write_beside_jsonl(parquet: &Path, jsonl: &Path) {
    let events = mixed_events();
    let mut p = open(parquet);
    let mut j = FileWriter::open(FileOptions::new(jsonl)).unwrap();
    for batch in events.chunks(7) {
        p.write(batch).await.unwrap();
        j.write(batch).await.unwrap();
    }
    p.close().await.unwrap();
    j.close().await.unwrap();
}

/// The times of the JSON lines under `root`, in nanoseconds since the epoch, read from
/// their text: trade id to `[timestamp, received_at]`, and a gap's `after_trade_id` to
/// `[from, to]`.
fn json_line_times(root: &Path) -> std::collections::BTreeMap<String, [i64; 2]> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let ns = |key: &str| {
                    Timestamp::parse_rfc3339(v[key].as_str().unwrap())
                        .unwrap()
                        .unix_nanos()
                };
                let (id, times) = match v["type"].as_str().unwrap() {
                    "trade" => (&v["trade_id"], [ns("timestamp"), ns("received_at")]),
                    "gap" => (&v["after_trade_id"], [ns("from"), ns("to")]),
                    other => panic!("{other}"),
                };
                out.insert(id.as_str().unwrap().to_owned(), times);
            }
        }
    }
    out
}

/// Compares the rows a reader returned (`[id, micros, micros, nanos, nanos]`) with the
/// JSON lines: the `_ns` columns hold their times exactly, and the timestamp columns the
/// same times rounded down to the microsecond.
fn check_rows(reader: &str, rows: &serde_json::Value, json: &BTreeMap<String, [i64; 2]>) {
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), json.len(), "{reader}: every event once");
    let mut sub_micro = 0;
    for row in rows {
        let id = row[0].as_str().unwrap();
        let [us_a, us_b, ns_a, ns_b] = [1, 2, 3, 4].map(|i| row[i].as_i64().unwrap());
        let want = json[id];
        assert_eq!([ns_a, ns_b], want, "{reader}: _ns columns of {id}");
        assert_eq!(
            [us_a, us_b],
            want.map(|ns| ns.div_euclid(1_000)),
            "{reader}: microsecond columns of {id}"
        );
        sub_micro += want.iter().filter(|ns| *ns % 1_000 != 0).count();
    }
    assert!(
        sub_micro > 10,
        "{reader}: the data holds nanoseconds to lose"
    );
}

/// pyarrow opens the parts without options: their time columns are Parquet
/// `TIMESTAMP(MICROS, isAdjustedToUTC=true)` (no nanosecond timestamps, which Spark
/// refuses), and the `_ns` columns equal the JSON lines written for the same events.
#[tokio::test]
async fn pyarrow_reads_the_files() {
    let (parquet, jsonl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_beside_jsonl(parquet.path(), jsonl.path()).await;
    let script = r#"
import glob, json, sys
import pyarrow as pa, pyarrow.parquet as pq
out = {"logical": {}, "arrow": {}, "rows": [], "price": None}
for kind, cols in [("trades", ["trade_id", "timestamp", "received_at", "timestamp_ns", "received_at_ns"]),
                   ("gaps", ["after_trade_id", "from", "to", "from_ns", "to_ns"])]:
    for f in sorted(glob.glob(sys.argv[1] + "/" + kind + "/*/*/*.parquet")):
        pf = pq.ParquetFile(f)
        for i in range(len(pf.schema)):
            c = pf.schema.column(i)
            out["logical"][kind + "." + c.name] = [c.physical_type, json.loads(c.logical_type.to_json())]
        t = pf.read()
        for field in t.schema:
            out["arrow"][kind + "." + field.name] = str(field.type)
        if kind == "trades" and out["price"] is None:
            out["price"] = str(t.column("price")[0])
        columns = [t.column(cols[0]).to_pylist()] + [t.column(c).cast(pa.int64()).to_pylist() for c in cols[1:]]
        out["rows"] += [list(r) for r in zip(*columns)]
print(json.dumps(out))
"#;
    let Some(out) = python("pyarrow.parquet", script, &[parquet.path()]) else {
        return;
    };
    for col in [
        "trades.timestamp",
        "trades.received_at",
        "gaps.from",
        "gaps.to",
    ] {
        assert_eq!(out["arrow"][col], "timestamp[us, tz=UTC]", "{col}");
        assert_eq!(out["logical"][col][0], "INT64", "{col}");
        let logical = &out["logical"][col][1];
        assert_eq!(logical["Type"], "Timestamp", "{col}: {logical}");
        assert_eq!(logical["timeUnit"], "microseconds", "{col}: {logical}");
        assert_eq!(logical["isAdjustedToUTC"], true, "{col}: {logical}");
    }
    for col in [
        "trades.timestamp_ns",
        "trades.received_at_ns",
        "gaps.from_ns",
        "gaps.to_ns",
    ] {
        assert_eq!(out["arrow"][col], "int64", "{col}");
    }
    let nanos = out["logical"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v[1]["timeUnit"] == "nanoseconds")
        .count();
    assert_eq!(nanos, 0, "no nanosecond timestamps: {}", out["logical"]);
    assert_eq!(out["price"], "43210.120000000000000000");
    check_rows("pyarrow", &out["rows"], &json_line_times(jsonl.path()));
}

/// DuckDB opens the parts without options, as `TIMESTAMP WITH TIME ZONE` columns, and its
/// `_ns` columns equal the JSON lines written for the same events.
#[tokio::test]
async fn duckdb_reads_the_files() {
    let (parquet, jsonl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_beside_jsonl(parquet.path(), jsonl.path()).await;
    let script = r#"
import json, sys
import duckdb
con = duckdb.connect()
trades = sys.argv[1] + "/trades/*/*/*.parquet"
gaps = sys.argv[1] + "/gaps/*/*/*.parquet"
out = {"types": {}, "rows": []}
for kind, glob in [("trades", trades), ("gaps", gaps)]:
    for name, type_, *_ in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [glob]).fetchall():
        out["types"][kind + "." + name] = type_
out["rows"] += con.execute(
    "SELECT trade_id, epoch_us(timestamp), epoch_us(received_at), timestamp_ns, received_at_ns "
    "FROM read_parquet(?) ORDER BY trade_id", [trades]).fetchall()
out["rows"] += con.execute(
    'SELECT after_trade_id, epoch_us("from"), epoch_us("to"), from_ns, to_ns FROM read_parquet(?)',
    [gaps]).fetchall()
out["sum"] = str(con.execute("SELECT sum(price) FROM read_parquet(?)", [trades]).fetchone()[0])
print(json.dumps(out))
"#;
    let Some(out) = python("duckdb", script, &[parquet.path()]) else {
        return;
    };
    for col in [
        "trades.timestamp",
        "trades.received_at",
        "gaps.from",
        "gaps.to",
    ] {
        assert_eq!(out["types"][col], "TIMESTAMP WITH TIME ZONE", "{col}");
    }
    for col in [
        "trades.timestamp_ns",
        "trades.received_at_ns",
        "gaps.from_ns",
        "gaps.to_ns",
    ] {
        assert_eq!(out["types"][col], "BIGINT", "{col}");
    }
    assert_eq!(out["types"]["trades.price"], "DECIMAL(38,18)");
    // 40 prices of 43210.12, summed exactly.
    assert_eq!(out["sum"], "1728404.800000000000000000");
    check_rows("duckdb", &out["rows"], &json_line_times(jsonl.path()));
}

#[tokio::test]
async fn gaps_are_stored_in_parquet_files_of_their_own_and_read_back_exactly() {
    use feeder_core::model::{Gap, GapReason};
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    let gap = |after: u64, before: Option<u64>| {
        Event::Gap(Gap {
            exchange: Arc::from("kraken"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            after_trade_id: TradeId::from_u64(after),
            before_trade_id: before.map(TradeId::from_u64),
            from: Timestamp::from_unix_secs(DAY2),
            to: before.map(|_| Timestamp::from_unix_secs(DAY2 + 60)),
            reason: GapReason::VenueLimit,
        })
    };
    let (closed, open_ended) = (gap(1, Some(9)), gap(12, None));
    let good = trade(9, DAY2 + 60, "1");
    w.write(&[closed.clone(), good.clone(), open_ended.clone()])
        .await
        .unwrap();
    w.close().await.unwrap();
    let mut got = conformance_support::read_tree(dir.path());
    got.sort_by_key(|e| e.kind());
    assert_eq!(got, [closed, open_ended, good]);
    assert!(dir.path().join("gaps").is_dir());
    // Nothing is left that the next start could not finish.
    open(dir.path());
}

fn btc() -> Symbol {
    Symbol::parse("BTC-USD").unwrap()
}

/// The trade id of `w`'s resume point for kraken BTC-USD.
async fn resume_id(w: &mut FileWriter) -> Option<String> {
    w.resume_point("kraken", &btc())
        .await
        .unwrap()
        .map(|c| c.trade_id.to_string())
}

#[tokio::test]
async fn the_resume_point_is_the_newest_trade_of_the_last_row_group_of_the_newest_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    assert_eq!(resume_id(&mut w).await, None, "empty store");
    w.write(&[trade(7, DAY2 - 10, "1"), trade(8, DAY2 - 5, "1")])
        .await
        .unwrap();
    w.close().await.unwrap();
    assert_eq!(resume_id(&mut open(dir.path())).await.as_deref(), Some("8"));

    // More than a row group in the newest day's second part; the newest trade of its last
    // group was written before a backfilled older one, and is still the one resumed after.
    let mut w = open(dir.path());
    let mut batch: Vec<Event> = (100..100 + 70_000)
        .map(|i| trade(i, DAY2 + 1, "1"))
        .collect();
    batch.push(trade(99, DAY2, "1"));
    w.write(&batch).await.unwrap();
    w.close().await.unwrap();
    let part = stream_dir(dir.path()).join("2024-01-02.part-0001.parquet");
    let groups = parquet::file::reader::FileReader::metadata(
        &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&part).unwrap())
            .unwrap(),
    )
    .num_row_groups();
    assert!(groups >= 2, "{groups} row groups");
    let mut w = open(dir.path());
    let at = w.resume_point("kraken", &btc()).await.unwrap().unwrap();
    assert_eq!(at.trade_id.as_str(), "70099");
    assert_eq!(
        at.timestamp,
        Timestamp::from_unix_nanos((DAY2 + 1) * 1_000_000_000 + 123_456_789, 9)
    );
    assert_eq!(
        w.resume_point("kraken", &Symbol::parse("ETH-USD").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(w.resume_point("coinbase", &btc()).await.unwrap(), None);
}

#[tokio::test]
async fn the_resume_point_of_a_part_being_written_is_read_from_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    w.write(&[
        trade(3, DAY2, "1"),
        trade(5, DAY2 + 2, "1"),
        trade(4, DAY2 + 1, "1"),
    ])
    .await
    .unwrap();
    assert_eq!(
        files(&stream_dir(dir.path())),
        ["2024-01-02.part-0001.parquet.wal"]
    );
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("5"));

    // Dropped without close, as a crash leaves it: the next start finishes the journal
    // before it is asked where the store left off, and finds the same trade.
    drop(w);
    let mut w = open(dir.path());
    assert_eq!(
        files(&stream_dir(dir.path())),
        ["2024-01-02.part-0001.parquet"]
    );
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("5"));
}

#[tokio::test]
async fn a_journal_newer_than_the_finished_parts_gives_the_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    w.write(&[trade(10, DAY2 - 1, "1"), trade(11, DAY2, "1")])
        .await
        .unwrap();
    w.close().await.unwrap();

    let mut w = open(dir.path());
    w.write(&[trade(12, DAY2 + 1, "1"), trade(13, DAY2 + 2, "1")])
        .await
        .unwrap();
    assert_eq!(
        files(&stream_dir(dir.path())),
        [
            "2024-01-01.part-0001.parquet",
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0002.parquet.wal"
        ]
    );
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("13"));

    // A journal holding nothing acknowledged (a torn line only): the part before decides.
    let journal = stream_dir(dir.path()).join("2024-01-02.part-0003.parquet.wal");
    std::fs::write(&journal, b"{\"type\":\"trade\",\"exch").unwrap();
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("13"));
    std::fs::remove_file(&journal).unwrap();
    drop(w);
    assert_eq!(
        resume_id(&mut open(dir.path())).await.as_deref(),
        Some("13")
    );
}

/// 2226-12-04T00:00:00Z: a trade time no venue can mean.
const YEAR_2226: i64 = 8_107_689_600;

#[tokio::test]
async fn a_part_dated_in_the_future_does_not_move_the_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    let stored: Vec<Event> = (1..=10)
        .map(|i| {
            let secs = if i == 5 { YEAR_2226 } else { DAY2 + i as i64 };
            trade(i, secs, "1")
        })
        .collect();
    w.write(&stored).await.unwrap();
    w.close().await.unwrap();
    assert!(stream_dir(dir.path())
        .join("2226-12-04.part-0001.parquet")
        .exists());
    assert_eq!(
        resume_id(&mut open(dir.path())).await.as_deref(),
        Some("10"),
        "the newest trade not in the future"
    );

    // After a restart the venue replays 1..=12; the store takes 11 and 12 only.
    let mut w = open(dir.path());
    let resume = w
        .resume_point("kraken", &btc())
        .await
        .unwrap()
        .map(|c| vec![(Arc::from("kraken"), btc(), c)])
        .unwrap_or_default();
    let (handle, task) = WriterRunner::spawn_resuming(
        Box::new(w),
        RunnerSettings::default(),
        tokio_util::sync::CancellationToken::new(),
        resume,
    );
    let replayed: Vec<Event> = (1..=12).map(|i| trade(i, DAY2 + i as i64, "1")).collect();
    assert!(handle.send(Arc::new(replayed)).await);
    let stats = handle.stats().clone();
    drop(handle);
    task.await.unwrap();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&stats.already_stored), 10);
    assert_eq!(get(&stats.events), 2);
    let mut ids: Vec<u64> = conformance_support::read_tree(dir.path())
        .iter()
        .filter(|e| e.time().unix_nanos() < YEAR_2226 * 1_000_000_000)
        .map(|e| match e {
            Event::Trade(t) => t.trade_id.as_str().parse().unwrap(),
            _ => unreachable!("trades only"),
        })
        .collect();
    ids.sort_unstable();
    let want: Vec<u64> = (1..=12).filter(|&i| i != 5).collect();
    assert_eq!(ids, want, "every trade exactly once");
}

#[tokio::test]
async fn a_part_that_cannot_be_read_is_an_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let mut w = open(dir.path());
        w.write(&[trade(run, DAY2, "1")]).await.unwrap();
        w.close().await.unwrap();
    }
    // The newest part lost its footer.
    let newest = stream_dir(dir.path()).join("2024-01-02.part-0002.parquet");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let mut w = open(dir.path());
    let err = w.resume_point("kraken", &btc()).await.unwrap_err();
    assert!(!err.is_retriable(), "asking again cannot help: {err:?}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains("2024-01-02.part-0002.parquet"), "{chain}");

    // A part without rows holds nothing to resume from: the part before decides.
    std::fs::write(&newest, encode_parquet(&[]).unwrap()).unwrap();
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("0"));

    // A part with other columns than trades' where the store left off: an error too.
    let candle = Event::Candle(Candle {
        exchange: Arc::from("kraken"),
        symbol: btc(),
        interval: Interval::parse("1m").unwrap(),
        open_time: Timestamp::from_unix_secs(DAY2),
        close_time: Timestamp::from_unix_secs(DAY2 + 60),
        open: "1".parse().unwrap(),
        high: "1".parse().unwrap(),
        low: "1".parse().unwrap(),
        close: "1".parse().unwrap(),
        volume: "1".parse().unwrap(),
        trades: 1,
        revision: 0,
        complete: true,
    });
    std::fs::write(&newest, encode_parquet(&[candle]).unwrap()).unwrap();
    let err = w.resume_point("kraken", &btc()).await.unwrap_err();
    assert!(!err.is_retriable(), "{err:?}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains("2024-01-02.part-0002.parquet"), "{chain}");
}

/// Polls `done` (up to 1000 times, a short sleep apart) and fails naming `what` if it never
/// holds. Under a paused clock the sleeps take no time unless the writer's blocking work
/// is under way, which tokio waits for in real time.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still not so after 1000 polls");
}

fn open_rolling(root: &Path, rows: u64, interval: Duration) -> FileWriter {
    FileWriter::open(
        FileOptions::new(root)
            .with_format(FileFormat::Parquet)
            .with_roll(rows, interval),
    )
    .unwrap()
}

fn ids(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match e {
            Event::Trade(t) => t.trade_id.as_str().parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn batch(ids: std::ops::Range<u64>) -> Vec<Event> {
    ids.map(|i| trade(i, DAY2 + i as i64, "1")).collect()
}

/// With a one-minute `roll_interval` on a paused clock: parts are finished while the
/// writer runs, by age (with no write to trigger it) and by `roll_rows`, each readable on
/// its own; a crash (the writer dropped without close) and a restart lose and double
/// nothing; and the parts, in name order, hold every row once, in the order written.
#[tokio::test(start_paused = true)]
async fn parts_roll_by_age_and_rows_while_running_and_a_crash_loses_or_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream_dir(dir.path());
    let minute = Duration::from_secs(60);
    let parts = |s: &Path| -> Vec<String> {
        files(s)
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .collect()
    };
    let mut w = open_rolling(dir.path(), 1_000_000, minute);

    // Two parts finished by age, while the writer runs and nothing is written.
    w.write(&batch(0..100)).await.unwrap();
    assert_eq!(files(&s), ["2024-01-02.part-0001.parquet.wal"]);
    tokio::time::advance(minute / 2).await;
    w.write(&batch(100..150)).await.unwrap();
    assert_eq!(
        files(&s),
        ["2024-01-02.part-0001.parquet.wal"],
        "not due yet"
    );
    tokio::time::advance(minute).await;
    until("the first part is finished by age", || parts(&s).len() == 1).await;
    assert_eq!(files(&s), ["2024-01-02.part-0001.parquet"]);
    let first = read_parquet(&s.join("2024-01-02.part-0001.parquet")).unwrap();
    assert_eq!(ids(&first), (0..150).collect::<Vec<_>>());

    w.write(&batch(150..200)).await.unwrap();
    assert_eq!(
        files(&s),
        [
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0002.parquet.wal"
        ]
    );
    tokio::time::advance(minute * 2).await;
    until("the second part is finished by age", || {
        parts(&s).len() == 2
    })
    .await;
    let second = read_parquet(&s.join("2024-01-02.part-0002.parquet")).unwrap();
    assert_eq!(ids(&second), (150..200).collect::<Vec<_>>());

    // A part still open when the writer crashes.
    w.write(&batch(200..230)).await.unwrap();
    drop(w);
    assert!(s.join("2024-01-02.part-0003.parquet.wal").exists());

    // The restart finishes it, and new parts follow it; these roll at 50 rows.
    let mut w = open_rolling(dir.path(), 50, minute);
    assert_eq!(parts(&s).len(), 3);
    assert!(!files(&s).iter().any(|f| f.ends_with(".wal")));
    for start in (230..350).step_by(20) {
        w.write(&batch(start..start + 20)).await.unwrap();
    }
    // 120 rows in batches of 20: parts of 60 and 60 rows, finished as they filled.
    until("the full parts are finished", || parts(&s).len() == 5).await;
    assert_eq!(files(&s).len(), 5, "nothing open: {:?}", files(&s));
    w.write(&batch(350..360)).await.unwrap();
    w.close().await.unwrap();

    let names = files(&s);
    assert_eq!(
        names,
        (1..=6)
            .map(|n| format!("2024-01-02.part-{n:04}.parquet"))
            .collect::<Vec<_>>()
    );
    let mut all = Vec::new();
    for name in &names {
        let rows = read_parquet(&s.join(name)).unwrap();
        assert!(!rows.is_empty(), "{name}");
        all.extend(ids(&rows));
    }
    assert_eq!(
        all,
        (0..360).collect::<Vec<_>>(),
        "every row once, in order"
    );
}

/// A part finished by age while its stream is idle is not followed by empty parts, and
/// the writer's task stops with the writer: nothing appears after close.
#[tokio::test(start_paused = true)]
async fn quiet_streams_make_no_empty_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream_dir(dir.path());
    let mut w = open_rolling(dir.path(), 1_000_000, Duration::from_secs(60));
    w.write(&batch(0..3)).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    until("the part is finished by age", || {
        files(&s) == ["2024-01-02.part-0001.parquet"]
    })
    .await;
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
    }
    w.close().await.unwrap();
    assert_eq!(files(&s), ["2024-01-02.part-0001.parquet"]);
}

/// Part numbers continue after the highest on disk, so that names keep sorting in the
/// order written even when earlier parts were moved away.
#[tokio::test]
async fn a_new_part_follows_the_highest_number_even_when_earlier_parts_were_moved_away() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream_dir(dir.path());
    for run in 0..3u64 {
        let mut w = open(dir.path());
        w.write(&batch(run..run + 1)).await.unwrap();
        w.close().await.unwrap();
    }
    std::fs::remove_file(s.join("2024-01-02.part-0001.parquet")).unwrap();
    std::fs::remove_file(s.join("2024-01-02.part-0002.parquet")).unwrap();
    let mut w = open(dir.path());
    w.write(&batch(3..4)).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(
        files(&s),
        [
            "2024-01-02.part-0003.parquet",
            "2024-01-02.part-0004.parquet"
        ]
    );
}

/// A trades part of the first layout: times as `Timestamp(Nanosecond, "UTC")`, no `_ns`
/// columns.
fn first_layout_part(path: &Path, trades: &[Event]) {
    use arrow_array::builder::{Decimal128Builder, StringBuilder, TimestampNanosecondBuilder};
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let dec = DataType::Decimal128(38, 18);
    let schema = Arc::new(Schema::new(vec![
        Field::new("exchange", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("trade_id", DataType::Utf8, false),
        Field::new("price", dec.clone(), false),
        Field::new("amount", dec, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("timestamp", ts(), false),
        Field::new("received_at", ts(), false),
    ]));
    let mut text: [StringBuilder; 4] = std::array::from_fn(|_| StringBuilder::new());
    let mut decs: [Decimal128Builder; 2] = std::array::from_fn(|_| {
        Decimal128Builder::new()
            .with_precision_and_scale(38, 18)
            .unwrap()
    });
    let mut times: [TimestampNanosecondBuilder; 2] =
        std::array::from_fn(|_| TimestampNanosecondBuilder::new().with_timezone("UTC"));
    for e in trades {
        let Event::Trade(t) = e else { panic!() };
        text[0].append_value(&*t.exchange);
        text[1].append_value(t.symbol.as_str());
        text[2].append_value(t.trade_id.as_str());
        text[3].append_value(t.side.as_str());
        for (b, d) in decs.iter_mut().zip([t.price, t.amount]) {
            // Whole numbers only here: scaled by 10^18.
            let whole: i128 = d.to_string().parse().unwrap();
            b.append_value(whole * 10i128.pow(18));
        }
        times[0].append_value(t.timestamp.unix_nanos());
        times[1].append_value(t.received_at.unix_nanos());
    }
    let [mut ex, mut sym, mut id, mut side] = text;
    let [mut price, mut amount] = decs;
    let [mut t0, mut t1] = times;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ex.finish()),
        Arc::new(sym.finish()),
        Arc::new(id.finish()),
        Arc::new(price.finish()),
        Arc::new(amount.finish()),
        Arc::new(side.finish()),
        Arc::new(t0.finish()),
        Arc::new(t1.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// An upgrade loses no resume point: parts written with nanosecond timestamp columns are
/// still read, to the nanosecond, for the resume point and read back, beside new parts.
#[tokio::test]
async fn parts_of_the_first_layout_still_give_the_resume_point_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream_dir(dir.path());
    // Whole prices and amounts: `first_layout_part` scales them by hand.
    let old: Vec<Event> = (1..=5)
        .map(|i| {
            let mut e = trade(i, DAY2 + i as i64, &i.to_string());
            if let Event::Trade(t) = &mut e {
                t.amount = (i * 2).into();
            }
            e
        })
        .collect();
    first_layout_part(&s.join("2024-01-02.part-0001.parquet"), &old);
    assert_eq!(
        read_parquet(&s.join("2024-01-02.part-0001.parquet")).unwrap(),
        old
    );

    let mut w = open(dir.path());
    let at = w.resume_point("kraken", &btc()).await.unwrap().unwrap();
    assert_eq!(at.trade_id.as_str(), "5");
    assert_eq!(
        at.timestamp.unix_nanos(),
        (DAY2 + 5) * 1_000_000_000 + 123_456_789
    );

    let new = vec![trade(6, DAY2 + 6, "6")];
    w.write(&new).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(
        files(&s),
        [
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0002.parquet"
        ]
    );
    let mut w = open(dir.path());
    let upto = w.resume_point("kraken", &btc()).await.unwrap().unwrap();
    assert_eq!(upto.trade_id.as_str(), "6");
    let mut back = Vec::new();
    let read = w
        .replay(
            "kraken",
            &btc(),
            Timestamp::from_unix_secs(DAY2),
            &upto,
            &mut |e| back.push(e),
        )
        .await
        .unwrap();
    assert!(read);
    let mut want = old;
    want.extend(new);
    assert_eq!(back, want);
    for (b, w) in back.iter().zip(&want) {
        assert_eq!(b.time().unix_nanos(), w.time().unix_nanos());
    }
}

fn roll_config_error(options: &str) -> String {
    use feeder_core::config::Config;
    use feeder_core::feeder::WriterFactory;
    let text = format!(
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: file\n    path: /tmp/x\n    format: parquet\n{options}"
    );
    let config = Config::from_yaml_str_with_env(&text, &|_| None).unwrap();
    match feeder_writers::FileWriterFactory.validate(&config.writers[0]) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn roll_options_are_a_row_count_and_a_duration_checked_before_start() {
    use feeder_core::config::Config;
    let config = Config::from_yaml_str_with_env(
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: file\n    path: /tmp/x\n    format: parquet\n    roll_rows: 5000\n    roll_interval: 30s\n",
        &|_| None,
    )
    .unwrap();
    let options = FileOptions::from_config(&config.writers[0]).unwrap();
    assert_eq!(options.roll_rows, 5000);
    assert_eq!(options.roll_interval, Duration::from_secs(30));

    let defaults = FileOptions::new("/tmp/x");
    assert_eq!(defaults.roll_interval, Duration::from_secs(300));
    assert_eq!(defaults.roll_rows, 1_000_000);

    for (options, want) in [
        (
            "    roll_interval: 500ms\n",
            "roll_interval: must be at least 1s",
        ),
        (
            "    roll_interval: soon\n",
            "roll_interval: invalid duration",
        ),
        ("    roll_rows: 0\n", "roll_rows: must be more than 0"),
        ("    roll_rows: many\n", "roll_rows: invalid type"),
    ] {
        let err = roll_config_error(options);
        assert!(err.contains(want), "{options}: {err}");
        assert!(err.contains("line 8"), "{options}: {err}");
    }
}

/// A part that cannot be finished (here its name is taken by a directory) keeps its
/// journal, the stream goes on in the next part, the resume point still sees its trades,
/// and finishing it is tried again until it works: nothing is lost or doubled.
#[tokio::test(start_paused = true)]
async fn a_part_that_cannot_be_finished_keeps_its_journal_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream_dir(dir.path());
    let minute = Duration::from_secs(60);
    let mut w = open_rolling(dir.path(), 1_000_000, minute);
    w.write(&batch(0..10)).await.unwrap();
    let blocker = s.join("2024-01-02.part-0001.parquet");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"").unwrap();

    tokio::time::advance(minute).await;
    let mut polls = 0;
    while w.failing_parts().await.unwrap() == 0 {
        polls += 1;
        assert!(polls < 1000, "finishing part 1 never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next batch opens part 2 while part 1 stays a journal.
    w.write(&batch(10..20)).await.unwrap();
    assert_eq!(
        files(&s),
        [
            "2024-01-02.part-0001.parquet",
            "2024-01-02.part-0001.parquet.wal",
            "2024-01-02.part-0002.parquet.wal"
        ]
    );
    assert!(blocker.is_dir(), "not replaced");
    assert_eq!(resume_id(&mut w).await.as_deref(), Some("19"));

    std::fs::remove_dir_all(&blocker).unwrap();
    tokio::time::advance(minute * 2).await;
    until("both parts are finished", || {
        files(&s)
            == [
                "2024-01-02.part-0001.parquet",
                "2024-01-02.part-0002.parquet",
            ]
    })
    .await;
    assert_eq!(w.failing_parts().await.unwrap(), 0);
    w.close().await.unwrap();
    let mut all = Vec::new();
    for name in files(&s) {
        all.extend(ids(&read_parquet(&s.join(name)).unwrap()));
    }
    assert_eq!(all, (0..20).collect::<Vec<_>>());
}
