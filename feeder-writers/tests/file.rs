//! The `file` writer through its public API: layout, formats, restarts, repairs, retries and
//! configuration errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use feeder_core::config::{Config, ConfigError, WriterConfig};
use feeder_core::feeder::{Registry, WriterFactory};
use feeder_core::model::{Candle, Event, Interval, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use feeder_writers::{FileFormat, FileOptions, FileWriter, FileWriterFactory};

/// 2024-01-02T00:00:00Z.
const DAY2: i64 = 1_704_153_600;

fn trade(exchange: &str, symbol: &str, id: u64, secs: i64) -> Event {
    Event::Trade(Trade {
        exchange: Arc::from(exchange),
        symbol: Symbol::parse(symbol).unwrap(),
        trade_id: TradeId::from_u64(id),
        price: format!("43210.{id}").parse().unwrap(),
        amount: "0.05".parse().unwrap(),
        side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
        timestamp: Timestamp::from_unix_micros(secs * 1_000_000 + 123_456),
        received_at: Timestamp::from_unix_nanos(secs * 1_000_000_000 + 130_201_000, 9),
    })
}

fn candle(exchange: &str, symbol: &str, open_secs: i64, revision: u32) -> Event {
    Event::Candle(Candle {
        exchange: Arc::from(exchange),
        symbol: Symbol::parse(symbol).unwrap(),
        interval: Interval::M30,
        open_time: Timestamp::from_unix_secs(open_secs),
        close_time: Timestamp::from_unix_secs(open_secs + 1_800),
        open: "43200".parse().unwrap(),
        high: "43250.5".parse().unwrap(),
        low: "43190".parse().unwrap(),
        close: "43210.12".parse().unwrap(),
        volume: "12.5".parse().unwrap(),
        trades: 431,
        revision,
        complete: true,
    })
}

fn file(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_lines(text: &str) -> Vec<Event> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn open(root: &Path, format: FileFormat) -> FileWriter {
    FileWriter::open(FileOptions::new(root).with_format(format)).unwrap()
}

#[tokio::test]
async fn n_events_in_give_n_json_lines_that_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    let batch: Vec<Event> = (0..500)
        .map(|i| trade("bitstamp", "BTC-USD", i, DAY2 + i as i64))
        .collect();
    for part in batch.chunks(128) {
        w.write(part).await.unwrap();
    }
    w.close().await.unwrap();
    let text = read(&file(
        dir.path(),
        "trades/bitstamp/BTC-USD/2024-01-02.jsonl",
    ));
    assert_eq!(parse_lines(&text), batch);
    // Byte for byte the contract form.
    let first = text.lines().next().unwrap();
    assert_eq!(first, serde_json::to_string(&batch[0]).unwrap());
}

#[tokio::test]
async fn n_events_in_give_a_header_and_n_csv_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Csv);
    let trades: Vec<Event> = (0..20)
        .map(|i| trade("bitstamp", "BTC-USD", i, DAY2 + 60 * i as i64))
        .collect();
    w.write(&trades).await.unwrap();
    let mut incomplete = candle("bitstamp", "BTC-USD", DAY2, 2);
    if let Event::Candle(c) = &mut incomplete {
        c.complete = false;
    }
    w.write(&[candle("bitstamp", "BTC-USD", DAY2, 0), incomplete])
        .await
        .unwrap();
    w.close().await.unwrap();

    let text = read(&file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.csv"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21);
    assert_eq!(
        lines[0],
        "exchange,symbol,trade_id,price,amount,side,timestamp,received_at"
    );
    assert_eq!(
        lines[1],
        "bitstamp,BTC-USD,0,43210.0,0.05,buy,2024-01-02T00:00:00.123456Z,2024-01-02T00:00:00.130201000Z"
    );
    for (i, line) in lines[1..].iter().enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 8, "{line}");
        assert_eq!(cols[2], i.to_string());
        assert_eq!(cols[5], if i % 2 == 0 { "buy" } else { "sell" });
    }

    let text = read(&file(dir.path(), "candles/bitstamp/BTC-USD/2024-01-02.csv"));
    assert_eq!(
        text,
        "exchange,symbol,interval,open_time,close_time,open,high,low,close,volume,trades,revision,complete\n\
         bitstamp,BTC-USD,30m,2024-01-02T00:00:00Z,2024-01-02T00:30:00Z,43200,43250.5,43190,43210.12,12.5,431,0,true\n\
         bitstamp,BTC-USD,30m,2024-01-02T00:00:00Z,2024-01-02T00:30:00Z,43200,43250.5,43190,43210.12,12.5,431,2,false\n"
    );
}

#[tokio::test]
async fn csv_quotes_odd_exchange_names_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Csv);
    let Event::Trade(mut t) = trade("odd", "BTC-USD", 1, DAY2) else {
        unreachable!()
    };
    t.trade_id = TradeId::new("a,\"b\"");
    w.write(&[Event::Trade(t)]).await.unwrap();
    let text = read(&file(dir.path(), "trades/odd/BTC-USD/2024-01-02.csv"));
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.starts_with("odd,BTC-USD,\"a,\"\"b\"\"\",43210.1,"),
        "{row}"
    );
}

#[tokio::test]
async fn files_split_by_day_kind_exchange_and_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    let before_midnight = DAY2 - 1;
    let batch = vec![
        trade("bitstamp", "BTC-USD", 1, before_midnight),
        trade("bitstamp", "BTC-USD", 2, DAY2),
        trade("coinbase", "BTC-USD", 3, DAY2),
        trade("bitstamp", "ETH-USD", 4, DAY2),
        candle("bitstamp", "BTC-USD", DAY2 - 1_800, 0),
        trade("bitstamp", "BTC-USD", 5, DAY2 + 1),
        candle("bitstamp", "BTC-USD", DAY2, 0),
    ];
    w.write(&batch).await.unwrap();
    w.close().await.unwrap();
    let expect = [
        ("trades/bitstamp/BTC-USD/2024-01-01.jsonl", vec![&batch[0]]),
        (
            "trades/bitstamp/BTC-USD/2024-01-02.jsonl",
            vec![&batch[1], &batch[5]],
        ),
        ("trades/coinbase/BTC-USD/2024-01-02.jsonl", vec![&batch[2]]),
        ("trades/bitstamp/ETH-USD/2024-01-02.jsonl", vec![&batch[3]]),
        ("candles/bitstamp/BTC-USD/2024-01-01.jsonl", vec![&batch[4]]),
        ("candles/bitstamp/BTC-USD/2024-01-02.jsonl", vec![&batch[6]]),
    ];
    for (rel, events) in expect {
        let got = parse_lines(&read(&file(dir.path(), rel)));
        let want: Vec<Event> = events.into_iter().cloned().collect();
        assert_eq!(got, want, "{rel}");
    }
    // Nothing else was written.
    let mut count = 0;
    let mut stack = vec![dir.path().to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                count += 1;
            }
        }
    }
    assert_eq!(count, 6);
}

#[tokio::test]
async fn a_late_event_for_an_earlier_day_still_lands_in_that_days_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    w.write(&[trade("b", "BTC-USD", 1, DAY2 - 10)])
        .await
        .unwrap();
    w.write(&[trade("b", "BTC-USD", 2, DAY2 + 10)])
        .await
        .unwrap();
    // After rotation moved on to the new day, a late trade for the old one.
    w.write(&[trade("b", "BTC-USD", 3, DAY2 - 5)])
        .await
        .unwrap();
    w.write(&[trade("b", "BTC-USD", 4, DAY2 + 20)])
        .await
        .unwrap();
    w.close().await.unwrap();
    let old = parse_lines(&read(&file(
        dir.path(),
        "trades/b/BTC-USD/2024-01-01.jsonl",
    )));
    let new = parse_lines(&read(&file(
        dir.path(),
        "trades/b/BTC-USD/2024-01-02.jsonl",
    )));
    assert_eq!(
        old,
        vec![
            trade("b", "BTC-USD", 1, DAY2 - 10),
            trade("b", "BTC-USD", 3, DAY2 - 5)
        ]
    );
    assert_eq!(
        new,
        vec![
            trade("b", "BTC-USD", 2, DAY2 + 10),
            trade("b", "BTC-USD", 4, DAY2 + 20)
        ]
    );
}

#[tokio::test]
async fn a_restart_appends_and_never_truncates() {
    for format in [FileFormat::Jsonl, FileFormat::Csv] {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<Event> = (0..30)
            .map(|i| trade("bitstamp", "BTC-USD", i, DAY2 + i as i64))
            .collect();
        let mut w = open(dir.path(), format);
        w.write(&all[..10]).await.unwrap();
        w.close().await.unwrap();
        drop(w);
        let mut w = open(dir.path(), format);
        w.write(&all[10..20]).await.unwrap();
        // Dropped without close: every acknowledged batch is already in the file.
        drop(w);
        let mut w = open(dir.path(), format);
        w.write(&all[20..]).await.unwrap();
        w.close().await.unwrap();

        let path = file(
            dir.path(),
            &format!("trades/bitstamp/BTC-USD/2024-01-02.{}", format.extension()),
        );
        let text = read(&path);
        match format {
            FileFormat::Jsonl => assert_eq!(parse_lines(&text), all),
            _ => {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), 31, "one header, then every row");
                assert_eq!(
                    text.matches("exchange,symbol").count(),
                    1,
                    "header only once"
                );
                for (i, line) in lines[1..].iter().enumerate() {
                    assert_eq!(line.split(',').nth(2), Some(i.to_string().as_str()));
                }
            }
        }
    }
}

#[tokio::test]
async fn a_torn_last_line_is_cut_then_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let first = trade("bitstamp", "BTC-USD", 1, DAY2);
    let second = trade("bitstamp", "BTC-USD", 2, DAY2 + 1);
    let mut w = open(dir.path(), FileFormat::Jsonl);
    w.write(std::slice::from_ref(&first)).await.unwrap();
    drop(w);
    // A crash in the middle of writing the next line.
    let path = file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.jsonl");
    let line = serde_json::to_string(&second).unwrap();
    let mut text = read(&path);
    text.push_str(&line[..line.len() / 2]);
    std::fs::write(&path, &text).unwrap();

    let mut w = open(dir.path(), FileFormat::Jsonl);
    w.write(std::slice::from_ref(&second)).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(parse_lines(&read(&path)), vec![first, second]);
}

#[tokio::test]
async fn a_torn_csv_header_is_cut_and_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.csv");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "exchange,sym").unwrap();
    let mut w = open(dir.path(), FileFormat::Csv);
    w.write(&[trade("bitstamp", "BTC-USD", 7, DAY2)])
        .await
        .unwrap();
    let text = read(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        lines[0],
        "exchange,symbol,trade_id,price,amount,side,timestamp,received_at"
    );
    assert!(lines[1].starts_with("bitstamp,BTC-USD,7,"));
}

#[tokio::test]
async fn a_failed_batch_is_stored_not_at_all_so_its_retry_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    let before = trade("bitstamp", "BTC-USD", 1, DAY2);
    w.write(std::slice::from_ref(&before)).await.unwrap();
    // The candles tree cannot be created: a file stands where its directory should be.
    let blocker = dir.path().join("candles");
    std::fs::write(&blocker, "not a directory").unwrap();
    let batch = vec![
        trade("bitstamp", "BTC-USD", 2, DAY2 + 1),
        candle("bitstamp", "BTC-USD", DAY2, 0),
        trade("bitstamp", "BTC-USD", 3, DAY2 + 2),
    ];
    let err = w.write(&batch).await.unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    let chain = format!("{:?}", err);
    assert!(
        chain.contains("candles"),
        "the error names the path: {chain}"
    );
    let trades_path = file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.jsonl");
    assert_eq!(
        parse_lines(&read(&trades_path)),
        vec![before.clone()],
        "the trades written before the failure were undone"
    );

    std::fs::remove_file(&blocker).unwrap();
    w.write(&batch).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(
        parse_lines(&read(&trades_path)),
        vec![before, batch[0].clone(), batch[2].clone()]
    );
    let candles = parse_lines(&read(&file(
        dir.path(),
        "candles/bitstamp/BTC-USD/2024-01-02.jsonl",
    )));
    assert_eq!(candles, vec![batch[1].clone()]);
}

#[tokio::test]
async fn exchange_names_stay_inside_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let mut w = open(&root, FileFormat::Jsonl);
    w.write(&[trade("../../escape", "BTC-USD", 1, DAY2)])
        .await
        .unwrap();
    w.close().await.unwrap();
    assert!(root
        .join("trades/.._.._escape/BTC-USD/2024-01-02.jsonl")
        .is_file());
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test]
async fn fsync_mode_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = FileWriter::open(FileOptions::new(dir.path()).with_fsync(true)).unwrap();
    let batch: Vec<Event> = (0..5)
        .map(|i| trade("bitstamp", "BTC-USD", i, DAY2))
        .collect();
    w.write(&batch).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(
        parse_lines(&read(&file(
            dir.path(),
            "trades/bitstamp/BTC-USD/2024-01-02.jsonl"
        ))),
        batch
    );
}

/// Small batches are written on the writer's task, large ones on a blocking thread: both
/// append in order, whichever way each batch went.
#[tokio::test]
async fn small_and_large_batches_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    let mut all = Vec::new();
    let mut id = 0;
    for size in [3, 5_000, 1, 2_000, 7] {
        let batch: Vec<Event> = (id..id + size)
            .map(|i| trade("bitstamp", "BTC-USD", i, DAY2))
            .collect();
        id += size;
        w.write(&batch).await.unwrap();
        all.extend(batch);
    }
    w.close().await.unwrap();
    let text = read(&file(
        dir.path(),
        "trades/bitstamp/BTC-USD/2024-01-02.jsonl",
    ));
    // The large batches are over the size written inline.
    assert!(text.len() > 5_000 * 100);
    assert_eq!(parse_lines(&text), all);
}

#[tokio::test]
async fn a_directory_that_cannot_be_created_fails_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let target = not_a_dir.join("out");

    let err = FileWriter::open(FileOptions::new(&target)).unwrap_err();
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("cannot create directory"), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");

    let config = WriterConfig::new("file").with_option("path", target.to_str().unwrap());
    FileWriterFactory.validate(&config).unwrap();
    let Err(err) = FileWriterFactory.build(&config).await else {
        panic!("built a writer under a plain file")
    };
    assert!(err.to_string().contains("cannot create directory"), "{err}");
    // A path that is itself a file is refused too.
    let err = FileWriter::open(FileOptions::new(&not_a_dir)).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[tokio::test]
async fn the_factory_builds_a_working_writer_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    feeder_writers::register(&mut registry);
    let kinds: Vec<&str> = registry.writer_kinds().collect();
    // Sorted by name; a writer is there exactly when its feature is on in this build.
    let expected: Vec<&str> = [
        ("file", cfg!(feature = "file")),
        ("http", cfg!(feature = "http")),
        ("kafka", cfg!(feature = "kafka")),
        ("log", cfg!(feature = "log")),
        ("nats", cfg!(feature = "nats")),
        ("postgres", cfg!(feature = "postgres")),
        ("redis", cfg!(feature = "redis")),
        ("s3", cfg!(feature = "s3")),
        ("stdout", cfg!(feature = "stdout")),
        ("syslog", cfg!(feature = "syslog")),
    ]
    .into_iter()
    .filter_map(|(kind, on)| on.then_some(kind))
    .collect();
    assert_eq!(kinds, expected);
    let config = WriterConfig::new("file")
        .with_option("path", dir.path().to_str().unwrap())
        .with_option("format", "csv")
        .with_option("fsync", true);
    let factory = registry.writer("file").unwrap();
    factory.validate(&config).unwrap();
    let mut w = factory.build(&config).await.unwrap();
    assert_eq!(w.name(), "file");
    w.write(&[trade("bitstamp", "BTC-USD", 1, DAY2)])
        .await
        .unwrap();
    w.close().await.unwrap();
    assert!(file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.csv").is_file());
}

fn config_error(options: &str) -> String {
    let text = format!(
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: file\n{options}"
    );
    let config = Config::from_yaml_str_with_env(&text, &|_| None).unwrap();
    let err = FileWriterFactory.validate(&config.writers[0]).unwrap_err();
    assert!(matches!(err, ConfigError::WriterOption { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn options_errors_name_the_key_and_its_line() {
    let err = config_error("    path: /tmp/x\n    compression: gzip\n");
    assert!(
        err.contains("compression") && err.contains("line 7"),
        "{err}"
    );

    // Parquet is a format of this build (feature `parquet`).
    let config = Config::from_yaml_str_with_env(
        "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: file\n    path: /tmp/x\n    format: parquet\n",
        &|_| None,
    )
    .unwrap();
    let options = FileOptions::from_config(&config.writers[0]).unwrap();
    assert_eq!(options.format, FileFormat::Parquet);

    let err = config_error("    path: /tmp/x\n    format: xml\n");
    assert!(
        err.contains("unknown format \"xml\"") && err.contains("jsonl, csv, parquet"),
        "{err}"
    );
    assert!(err.contains("line 7"), "{err}");

    let err = config_error("    format: csv\n");
    assert!(err.contains("missing field `path`"), "{err}");

    let err = config_error("    path: \"\"\n");
    assert!(
        err.contains("path: must not be empty") && err.contains("line 6"),
        "{err}"
    );

    let err = config_error("    path: /tmp/x\n    fsync: sometimes\n");
    assert!(
        err.contains("fsync: invalid type") && err.contains("line 7"),
        "{err}"
    );

    let err = config_error("    path: [a, b]\n");
    assert!(
        err.contains("path: invalid type") && err.contains("line 6"),
        "{err}"
    );
}

#[test]
fn options_built_in_code_are_checked_the_same_way() {
    let err = FileWriterFactory
        .validate(
            &WriterConfig::new("file")
                .with_option("path", "/tmp/x")
                .with_option("colour", "red"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
    let ok = FileOptions::from_config(
        &WriterConfig::new("file")
            .with_option("path", "/tmp/x")
            .with_option("format", "csv"),
    )
    .unwrap();
    assert_eq!(ok, FileOptions::new("/tmp/x").with_format(FileFormat::Csv));
    assert!(!ok.fsync);
}

#[tokio::test]
async fn the_resume_point_is_the_last_trade_of_the_newest_day_in_either_format() {
    let btc = Symbol::parse("BTC-USD").unwrap();
    for format in [FileFormat::Jsonl, FileFormat::Csv] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = open(dir.path(), format);
        assert_eq!(
            w.resume_point("bitstamp", &btc).await.unwrap(),
            None,
            "empty store"
        );
        w.write(&[
            trade("bitstamp", "BTC-USD", 7, DAY2 - 10),
            trade("bitstamp", "BTC-USD", 8, DAY2 + 5),
            trade("bitstamp", "BTC-USD", 9, DAY2 + 6),
            candle("bitstamp", "BTC-USD", DAY2 + 1_800, 0),
            trade("bitstamp", "ETH-USD", 100, DAY2 + 7),
        ])
        .await
        .unwrap();
        w.close().await.unwrap();

        // A crash left half a line behind: it was never acknowledged, so it does not count.
        let path = file(
            dir.path(),
            &format!("trades/bitstamp/BTC-USD/2024-01-02.{}", format.extension()),
        );
        let mut text = read(&path);
        text.push_str("bitstamp,BTC-USD,10,4321");
        std::fs::write(&path, text).unwrap();

        let mut w = open(dir.path(), format);
        let at = w
            .resume_point("bitstamp", &btc)
            .await
            .unwrap()
            .expect("a resume point");
        assert_eq!(at.trade_id.as_str(), "9", "{format:?}");
        assert_eq!(
            at.timestamp,
            Timestamp::from_unix_micros((DAY2 + 6) * 1_000_000 + 123_456)
        );
        let eth = Symbol::parse("ETH-USD").unwrap();
        assert_eq!(
            w.resume_point("bitstamp", &eth)
                .await
                .unwrap()
                .unwrap()
                .trade_id
                .as_str(),
            "100"
        );
        assert_eq!(w.resume_point("coinbase", &btc).await.unwrap(), None);

        // A backfilled gap lands after newer trades: the newest still wins.
        w.write(&[
            trade("bitstamp", "BTC-USD", 12, DAY2 + 9),
            trade("bitstamp", "BTC-USD", 10, DAY2 + 7),
        ])
        .await
        .unwrap();
        let at = w.resume_point("bitstamp", &btc).await.unwrap().unwrap();
        assert_eq!(at.trade_id.as_str(), "12", "{format:?}");
    }
}

/// 2226-12-04T00:00:00Z: a trade time no venue can mean.
const YEAR_2226: i64 = 8_107_689_600;

/// Feeds `replayed` through a runner that resumes where `w` says the store left off, as a
/// restarted feeder does; returns the runner's counters.
async fn restart_with(
    mut w: FileWriter,
    symbol: &str,
    replayed: Vec<Event>,
) -> Arc<feeder_core::writer::WriterStats> {
    use feeder_core::writer::{RunnerSettings, WriterRunner};
    let sym = Symbol::parse(symbol).unwrap();
    let resume = w
        .resume_point("bitstamp", &sym)
        .await
        .unwrap()
        .map(|c| vec![(Arc::from("bitstamp"), sym, c)])
        .unwrap_or_default();
    let (handle, task) = WriterRunner::spawn_resuming(
        Box::new(w),
        RunnerSettings::default(),
        tokio_util::sync::CancellationToken::new(),
        resume,
    );
    assert!(handle.send(Arc::new(replayed)).await);
    let stats = handle.stats().clone();
    drop(handle);
    task.await.unwrap();
    stats
}

fn trade_ids_in(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join("trades/bitstamp/BTC-USD"))
        .unwrap()
        .flat_map(|e| parse_lines(&read(&e.unwrap().path())))
        .map(|e| match e {
            Event::Trade(t) => t.trade_id.to_string(),
            _ => unreachable!("trades tree"),
        })
        .collect();
    ids.sort_by_key(|id| id.parse::<u64>().unwrap());
    ids
}

#[tokio::test]
async fn a_trade_stamped_far_in_the_future_does_not_move_the_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    // Trade 5 came with a time in 2226: it is filed under 2226-12-04, the newest file.
    let stored: Vec<Event> = (1..=10)
        .map(|i| {
            let secs = if i == 5 { YEAR_2226 } else { DAY2 + i as i64 };
            trade("bitstamp", "BTC-USD", i, secs)
        })
        .collect();
    w.write(&stored).await.unwrap();
    w.close().await.unwrap();
    assert!(file(dir.path(), "trades/bitstamp/BTC-USD/2226-12-04.jsonl").exists());

    let w = open(dir.path(), FileFormat::Jsonl);
    let at = open(dir.path(), FileFormat::Jsonl)
        .resume_point("bitstamp", &Symbol::parse("BTC-USD").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        at.trade_id.as_str(),
        "10",
        "the newest trade not in the future"
    );

    // After a restart the venue replays 1..=12; the store takes 11 and 12 only.
    let replayed = (1..=12)
        .map(|i| trade("bitstamp", "BTC-USD", i, DAY2 + i as i64))
        .collect();
    let stats = restart_with(w, "BTC-USD", replayed).await;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&stats.already_stored), 10);
    assert_eq!(get(&stats.events), 2);
    let want: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    assert_eq!(trade_ids_in(dir.path()), want, "every trade exactly once");
}

/// One captured log line: its message, its fields and those of the spans around it.
#[derive(Debug, Default)]
struct LogLine {
    fields: std::collections::BTreeMap<String, String>,
    spans: Vec<std::collections::BTreeMap<String, String>>,
}

#[derive(Default)]
struct Fields(std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every line logged in this process, from any thread (the file writer logs from
/// blocking threads too), and wakes a waiter on each.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<std::sync::Mutex<Vec<LogLine>>>,
    logged: Arc<tokio::sync::Notify>,
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .into_iter()
            .flatten()
            .filter_map(|s| s.extensions().get::<Fields>().map(|f| f.0.clone()))
            .collect();
        self.lines.lock().unwrap().push(LogLine {
            fields: fields.0,
            spans,
        });
        self.logged.notify_one();
    }
}

fn capture_logs() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
}

#[tokio::test]
async fn every_line_a_writer_logs_carries_its_configured_name() {
    use feeder_core::writer::{RunnerSettings, WriterRunner};
    let capture = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    // A torn line to cut (logged by the blocking thread that opens the file), then a batch
    // that keeps failing (logged by the runner): the candles tree is blocked by a file.
    let torn = file(dir.path(), "trades/names/BTC-USD/2024-01-02.jsonl");
    std::fs::create_dir_all(torn.parent().unwrap()).unwrap();
    std::fs::write(&torn, "{\"half a line").unwrap();
    std::fs::write(dir.path().join("candles"), "not a directory").unwrap();
    let mut config = WriterConfig::new("file")
        .with_option("path", dir.path().to_str().unwrap())
        .with_option("fsync", true);
    config.name = Some("parquet".into());
    let writer = FileWriterFactory.build(&config).await.unwrap();
    let settings = RunnerSettings {
        retry: feeder_core::exchange::Backoff::new(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(10),
        ),
        ..RunnerSettings::from(&config)
    };
    let abort = tokio_util::sync::CancellationToken::new();
    let (handle, task) = WriterRunner::spawn(writer, settings, abort.clone());
    assert!(
        handle
            .send(Arc::new(vec![
                trade("names", "BTC-USD", 1, DAY2),
                candle("names", "BTC-USD", DAY2, 0),
            ]))
            .await
    );
    let retried = |lines: &[LogLine]| {
        lines.iter().any(|l| {
            l.fields.get("message").map(String::as_str)
                == Some("write failed; will retry the batch")
                && l.fields.get("writer").map(String::as_str) == Some("parquet")
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let logged = capture.logged.notified();
            if retried(&capture.lines.lock().unwrap()) {
                break;
            }
            logged.await;
        }
    })
    .await
    .expect("the runner logs the failing write");
    abort.cancel();
    drop(handle);
    task.await.unwrap();

    // Lines about this test's files: other tests log too.
    let lines = capture.lines.lock().unwrap();
    let root = dir.path().to_str().unwrap();
    let ours: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.fields.values().any(|v| v.contains(root)))
        .collect();
    assert!(
        ours.iter().any(|l| l
            .fields
            .get("message")
            .is_some_and(|m| m.starts_with("cutting an incomplete last line"))),
        "the torn line was cut: {ours:?}"
    );
    assert!(ours.len() >= 2, "{ours:?}");
    for line in &ours {
        assert!(
            line.spans
                .iter()
                .any(|s| s.get("writer").map(String::as_str) == Some("parquet")),
            "{line:?}"
        );
        assert_ne!(
            line.fields.get("writer").map(String::as_str),
            Some("file"),
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn a_resume_point_that_cannot_be_read_is_an_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let btc = Symbol::parse("BTC-USD").unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    w.write(&[trade("bitstamp", "BTC-USD", 3, DAY2 - 10)])
        .await
        .unwrap();
    w.close().await.unwrap();
    // The newest day's file cannot be read: a directory stands where it should be (a real
    // failure even for root, whom file permissions do not stop).
    let newest = file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.jsonl");
    std::fs::create_dir(&newest).unwrap();
    let err = w.resume_point("bitstamp", &btc).await.unwrap_err();
    assert!(err.is_retriable(), "the disk may come back: {err:?}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains("2024-01-02.jsonl"), "{chain}");

    // Lines that are not trades where the store left off: asking again cannot help.
    std::fs::remove_dir(&newest).unwrap();
    std::fs::write(&newest, "garbage\n").unwrap();
    let err = w.resume_point("bitstamp", &btc).await.unwrap_err();
    assert!(!err.is_retriable(), "{err:?}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains("2024-01-02.jsonl"), "{chain}");
}

/// Sends trades 1..=12 after where the feeder says the stores left off, then waits for
/// shutdown.
struct Replay;

#[async_trait::async_trait]
impl feeder_core::exchange::Exchange for Replay {
    fn name(&self) -> &str {
        "bitstamp"
    }
    async fn run(
        &self,
        ctx: feeder_core::exchange::ExchangeContext,
    ) -> Result<(), feeder_core::ExchangeError> {
        let from = ctx
            .cursors
            .get(&ctx.symbols[0])
            .map_or(1, |c| c.trade_id.as_str().parse::<u64>().unwrap() + 1);
        let trades = (from..=12)
            .map(|i| match trade("bitstamp", "BTC-USD", i, DAY2 + i as i64) {
                Event::Trade(t) => t,
                _ => unreachable!(),
            })
            .collect();
        ctx.sink.send(trades).await?;
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_file_writer_that_cannot_read_where_it_left_off_ends_the_run_naming_it() {
    use feeder_core::feeder::Feeder;
    use feeder_core::writer::RunnerSettings;
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), FileFormat::Jsonl);
    let stored: Vec<Event> = (1..=10)
        .map(|i| trade("bitstamp", "BTC-USD", i, DAY2 + i as i64))
        .collect();
    w.write(&stored).await.unwrap();
    w.close().await.unwrap();
    // A newer day the writer cannot read.
    std::fs::create_dir(file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-03.jsonl")).unwrap();

    let settings = RunnerSettings {
        name: Some("archive".into()),
        ..RunnerSettings::default()
    };
    let feeder = Feeder::builder()
        .exchange(Arc::new(Replay), vec![Symbol::parse("BTC-USD").unwrap()])
        .writer(Box::new(open(dir.path(), FileFormat::Jsonl)), settings)
        .build();
    let summary = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        feeder.run(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the run ends by itself");
    assert!(!summary.is_clean());
    assert_eq!(summary.failures.len(), 1, "{summary}");
    assert!(
        summary.failures[0]
            .starts_with("writer archive cannot read where its store left off on bitstamp BTC-USD"),
        "{summary}"
    );
    let want: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    let path = file(dir.path(), "trades/bitstamp/BTC-USD/2024-01-02.jsonl");
    assert_eq!(
        parse_lines(&read(&path))
            .iter()
            .map(|e| match e {
                Event::Trade(t) => t.trade_id.to_string(),
                _ => unreachable!(),
            })
            .collect::<Vec<_>>(),
        want,
        "nothing written twice"
    );
}
