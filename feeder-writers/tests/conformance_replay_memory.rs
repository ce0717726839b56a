//! A replay reads in bounded memory: a day of 200,000 trades is handed back, every one of
//! them, while the process's peak resident memory grows by far less than the day would
//! take if it were collected first; in every file format and in PostgreSQL.
//!
//! Measured with Linux's peak resident set (`VmHWM`, reset through `/proc/self/clear_refs`);
//! this binary holds this one test, so nothing else runs meanwhile. The measurement proves
//! it can see such a collection: a consumer that keeps every event must grow past the
//! bound, or the test fails rather than pass unseen.

mod conformance_support;

use std::sync::Arc;

use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::exchange::Cursor;
use feeder_core::model::{Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use feeder_writers::{FileFormat, FileOptions, FileWriter, PostgresOptions, PostgresWriter};

/// Trades in the day.
const TRADES: u64 = 200_000;

/// The most a replay may add to the peak resident memory. The day held as events takes
/// some 40 MB.
const BOUND: u64 = 16 << 20;

/// 2024-03-02T00:00:00Z.
const DAY: i64 = 1_709_337_600;

fn trade(n: u64) -> Event {
    // Spread over the day, 432 ms apart.
    let timestamp = Timestamp::from_unix_millis(DAY * 1000 + n as i64 * 432);
    Event::Trade(Trade {
        exchange: Arc::from("bigday"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(n + 1),
        price: "43210.12".parse().unwrap(),
        amount: "0.005".parse().unwrap(),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        timestamp,
        received_at: timestamp,
    })
}

/// Writes the day a thousand trades at a time, so that writing it never holds it whole.
async fn write_day(w: &mut dyn Writer) {
    let mut batch = Vec::with_capacity(1000);
    for n in 0..TRADES {
        batch.push(trade(n));
        if batch.len() == 1000 {
            w.write(&batch).await.unwrap();
            batch.clear();
        }
    }
    w.write(&batch).await.unwrap();
}

/// A field of `/proc/self/status`, in bytes.
fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kb * 1024
}

/// How much a replay of the whole day adds to the peak resident memory, and how many
/// trades it handed over; `keep` collects them, as a reader that is not bounded would.
async fn replay_growth(w: &mut dyn Writer, keep: bool) -> (u64, u64) {
    let last = trade(TRADES - 1);
    let upto = Cursor {
        trade_id: TradeId::from_u64(TRADES),
        timestamp: last.time(),
    };
    let symbol = Symbol::parse("BTC-USD").unwrap();
    // Writing "5" resets the peak to the present resident set.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status("VmRSS");
    let (mut handed, mut kept) = (0u64, Vec::new());
    let read = w
        .replay(
            "bigday",
            &symbol,
            Timestamp::from_unix_secs(DAY),
            &upto,
            &mut |e| {
                assert!(matches!(e, Event::Trade(_)));
                handed += 1;
                if keep {
                    kept.push(e);
                }
            },
        )
        .await
        .unwrap();
    assert!(read);
    let growth = status("VmHWM").saturating_sub(before);
    drop(kept);
    (growth, handed)
}

/// Replays the day on `w` and checks that every trade came and the peak stayed within
/// [`BOUND`]; with `control`, also that keeping the trades shows up past it.
async fn check(name: &str, w: &mut dyn Writer, control: bool) {
    let (growth, handed) = replay_growth(w, false).await;
    assert_eq!(handed, TRADES, "{name}");
    assert!(
        growth < BOUND,
        "{name}: a replay of the day grew the peak memory by {} MB",
        growth >> 20
    );
    eprintln!(
        "{name}: replaying {TRADES} trades grew the peak by {} kB",
        growth >> 10
    );
    if control {
        let (kept, handed) = replay_growth(w, true).await;
        assert_eq!(handed, TRADES, "{name}");
        assert!(
            kept > BOUND,
            "{name}: keeping the day grew the peak memory by only {} MB; the measurement \
             cannot tell",
            kept >> 20
        );
        eprintln!("{name}: keeping them grew it by {} MB", kept >> 20);
    }
}

#[tokio::test]
async fn a_large_day_is_replayed_in_bounded_memory() {
    if std::fs::metadata("/proc/self/clear_refs").is_err() {
        eprintln!("SKIPPED: no /proc/self/clear_refs to measure peak memory with");
        return;
    }
    for format in [FileFormat::Jsonl, FileFormat::Csv, FileFormat::Parquet] {
        let dir = tempfile::tempdir().unwrap();
        let options = FileOptions::new(dir.path()).with_format(format);
        let mut w = FileWriter::open(options.clone()).unwrap();
        write_day(&mut w).await;
        w.close().await.unwrap();
        let mut w = FileWriter::open(options).unwrap();
        // One store is enough to show that the measurement sees a collected day.
        let control = format == FileFormat::Jsonl;
        check(&format!("{format:?}"), &mut w, control).await;
    }

    let url = env_or(
        "FEEDER_TEST_PG_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let parsed = url::Url::parse(&url).expect("FEEDER_TEST_PG_URL must be a postgres:// URL");
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    );
    match resolve(&addr).await {
        Some(a) if reachable(a).await => {}
        _ => {
            missing("PostgreSQL", &format!("nothing answers at {addr}"));
            return;
        }
    }
    let (trades, candles) = (
        unique("bigday_trades").replace('-', "_"),
        unique("bigday_candles").replace('-', "_"),
    );
    let options = PostgresOptions::new(&url).with_tables(&trades, &candles);
    let mut w = PostgresWriter::connect(options).await.unwrap();
    write_day(&mut w).await;
    check("postgres", &mut w, false).await;
    w.close().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    for t in [&trades, &candles, &format!("{trades}_gaps")] {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\""))
            .await
            .unwrap();
    }
    drop(client);
    driver.await.unwrap().unwrap();
}
