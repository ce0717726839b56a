//! `format: parquet` of the `file` writer: exact columns, parts finished at rotation and
//! close, never overwritten, and journals left by a crash finished at the next start.

mod conformance_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    // The new day finished the old day's part.
    assert_eq!(
        files(&stream_dir(dir.path())),
        [
            "2024-01-01.part-0001.parquet",
            "2024-01-02.part-0001.parquet.wal"
        ]
    );
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

/// Other readers open the files without options, where Python's pyarrow is installed
/// (skipped with a note otherwise, unless `CI` is set).
#[tokio::test]
async fn pyarrow_reads_the_files() {
    let has = std::process::Command::new("python3")
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        conformance_support::missing("python3 with pyarrow", "import pyarrow failed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path());
    w.write(&[trade(7, DAY2, "43210.12")]).await.unwrap();
    w.close().await.unwrap();
    let file = stream_dir(dir.path()).join("2024-01-02.part-0001.parquet");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
             print(t.num_rows, t.column('price')[0], t.column('trade_id')[0], t.schema.field('timestamp').type)",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.trim(),
        "1 43210.120000000000000000 7 timestamp[us, tz=UTC]"
    );
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
    assert_eq!(groups, 2);
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
