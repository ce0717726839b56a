//! The `postgres` writer against a real PostgreSQL (`FEEDER_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), through a cuttable proxy for the outage
//! check. Skipped with a note when the server is not reachable, unless `CI` is set.

mod conformance_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::config::{Config, WriterConfig};
use feeder_core::feeder::{Registry, WriterFactory};
use feeder_core::model::{Candle, Event, Gap, Interval, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::{PostgresOptions, PostgresWriter, PostgresWriterFactory};
use rust_decimal::Decimal;
use tokio_postgres::NoTls;

/// The server's URL, or `None` (after the skip note) when it is not reachable.
async fn server() -> Option<url::Url> {
    let raw = env_or(
        "FEEDER_TEST_PG_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let url = url::Url::parse(&raw).expect("FEEDER_TEST_PG_URL must be a postgres:// URL");
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    match resolve(&addr).await {
        Some(a) if reachable(a).await => Some(url),
        _ => {
            missing("PostgreSQL", &format!("nothing answers at {addr}"));
            None
        }
    }
}

fn via(url: &url::Url, addr: std::net::SocketAddr) -> String {
    let mut u = url.clone();
    u.set_host(Some(&addr.ip().to_string())).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

async fn client(url: &url::Url) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url.as_str(), NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn ts(t: SystemTime) -> Timestamp {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    };
    Timestamp::from_unix_nanos(nanos, 6)
}

struct PgTarget {
    url: url::Url,
    proxy: TcpProxy,
    trades: String,
    candles: String,
}

impl PgTarget {
    fn options(&self) -> PostgresOptions {
        PostgresOptions::new(via(&self.url, self.proxy.addr()))
            .with_tables(&self.trades, &self.candles)
            .with_timeouts(Duration::from_secs(3), Duration::from_secs(5))
    }
}

#[async_trait]
impl ConformanceTarget for PgTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(PostgresWriter::connect(self.options()).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let c = client(&self.url).await;
        let mut out = Vec::new();
        let q = format!(
            "SELECT exchange, symbol, trade_id, price, amount, side, ts, received_at FROM \"{}\"",
            self.trades
        );
        for r in c.query(&q, &[]).await? {
            out.push(Event::Trade(Trade {
                exchange: Arc::from(r.get::<_, &str>(0)),
                symbol: Symbol::parse(r.get(1))?,
                trade_id: TradeId::new(r.get(2)),
                price: r.get(3),
                amount: r.get(4),
                side: match r.get::<_, &str>(5) {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    _ => Side::Unknown,
                },
                timestamp: ts(r.get(6)),
                received_at: ts(r.get(7)),
            }));
        }
        let q = format!(
            "SELECT exchange, symbol, \"interval\", open_time, close_time, open, high, low, close, \
             volume, trades, revision, complete FROM \"{}\"",
            self.candles
        );
        for r in c.query(&q, &[]).await? {
            out.push(Event::Candle(Candle {
                exchange: Arc::from(r.get::<_, &str>(0)),
                symbol: Symbol::parse(r.get(1))?,
                interval: Interval::parse(r.get(2))?,
                open_time: ts(r.get(3)),
                close_time: ts(r.get(4)),
                open: r.get(5),
                high: r.get(6),
                low: r.get(7),
                close: r.get(8),
                volume: r.get(9),
                trades: r.get::<_, i64>(10) as u64,
                revision: r.get::<_, i32>(11) as u32,
                complete: r.get(12),
            }));
        }
        let q = format!(
            "SELECT exchange, symbol, after_trade_id, before_trade_id, from_ts, to_ts, reason, \
             from_ns, to_ns FROM \"{}_gaps\"",
            self.trades
        );
        for r in c.query(&q, &[]).await? {
            let from = ts(r.get(4));
            let to: Option<SystemTime> = r.get(5);
            let (from_ns, to_ns): (i64, Option<i64>) = (r.get(7), r.get(8));
            // The exact nanoseconds are kept beside the microsecond timestamps.
            assert_eq!(from.unix_nanos(), from_ns);
            assert_eq!(to.map(|t| ts(t).unix_nanos()), to_ns);
            out.push(Event::Gap(Gap {
                exchange: Arc::from(r.get::<_, &str>(0)),
                symbol: Symbol::parse(r.get(1))?,
                after_trade_id: TradeId::new(r.get(2)),
                before_trade_id: r.get::<_, Option<&str>>(3).map(TradeId::new),
                from,
                to: to.map(ts),
                reason: serde_json::from_value(serde_json::Value::String(r.get(6)))?,
            }));
        }
        Ok(out)
    }

    fn keyed(&self) -> bool {
        true
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Hold the outage until the writer has tried to reconnect and been refused
        // (bounded), so that the catch-up after it is a real reconnect.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        let mut url = self.url.clone();
        url.set_username("no_such_role_for_crypto_feeder").unwrap();
        let options = PostgresOptions::new(url.as_str()).with_tables(&self.trades, &self.candles);
        Some(
            PostgresWriter::connect(options)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

async fn drop_tables(url: &url::Url, tables: &[&str]) {
    let c = client(url).await;
    for t in tables {
        c.batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\""))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_postgres_writer_conforms_and_rides_out_an_outage() {
    let Some(url) = server().await else { return };
    let upstream = resolve(&format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await
    .unwrap();
    let target = PgTarget {
        proxy: TcpProxy::start(upstream).await.unwrap(),
        trades: unique("trades").replace('-', "_"),
        candles: unique("candles").replace('-', "_"),
        url: url.clone(),
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.passed().len(), 6, "{report}");
    assert!(report.checks.iter().all(|(_, o)| *o == Outcome::Passed));
    // The outage was real: the writer saw errors, and connections were refused.
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.proxy.refused() > 0);
    let gaps = format!("{}_gaps", target.trades);
    drop_tables(&url, &[&target.trades, &target.candles, &gaps]).await;
}

#[tokio::test]
async fn nanoseconds_survive_in_timestamp_ns_and_decimals_are_exact() {
    let Some(url) = server().await else { return };
    let (trades, candles) = (
        unique("ns_trades").replace('-', "_"),
        unique("ns_candles").replace('-', "_"),
    );
    let mut w =
        PostgresWriter::connect(PostgresOptions::new(url.as_str()).with_tables(&trades, &candles))
            .await
            .unwrap();
    let t = Trade {
        exchange: Arc::from("kraken"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::new("x-1"),
        price: "43210.123456789012345678".parse().unwrap(),
        amount: "0.00000001".parse().unwrap(),
        side: Side::Sell,
        timestamp: Timestamp::parse_rfc3339("2024-01-02T03:04:05.123456789Z").unwrap(),
        received_at: Timestamp::now(),
    };
    w.write(&[Event::Trade(t.clone())]).await.unwrap();
    w.close().await.unwrap();
    let c = client(&url).await;
    let row = c
        .query_one(
            &format!("SELECT price, amount, timestamp_ns, ts FROM \"{trades}\""),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Decimal>(0), t.price);
    assert_eq!(row.get::<_, Decimal>(1), t.amount);
    assert_eq!(row.get::<_, i64>(2), t.timestamp.unix_nanos());
    // timestamptz keeps microseconds: the 789 nanoseconds are cut.
    assert_eq!(
        ts(row.get(3)).unix_nanos(),
        t.timestamp.unix_nanos() / 1_000 * 1_000
    );
    drop_tables(&url, &[&trades, &candles]).await;
}

#[tokio::test]
async fn bad_urls_fail_at_build_and_never_show_the_password() {
    let Some(url) = server().await else { return };
    // Nothing listens on a port that was just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let cfg = |u: String| WriterConfig::new("postgres").with_option("url", u);
    let cases = [
        format!("postgres://postgres:hunter2secret@127.0.0.1:{port}/test"),
        {
            let mut u = url.clone();
            u.set_path("/no_such_database_for_crypto_feeder");
            u.set_password(Some("hunter2secret")).unwrap();
            u.to_string()
        },
    ];
    for u in cases {
        let err = match PostgresWriterFactory.build(&cfg(u.clone())).await {
            Ok(_) => panic!("{u}: built"),
            Err(e) => e,
        };
        assert!(!err.is_retriable(), "{err}");
        let shown = format!("{}", feeder_core::writer::ErrorChain(&err));
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
    // Pure validation catches malformed URLs without any I/O.
    let err = PostgresWriterFactory
        .validate(&cfg("mysql://x".into()))
        .unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
}

#[test]
fn the_registry_knows_postgres_and_its_options_come_from_yaml() {
    let mut registry = Registry::new();
    feeder_writers::register(&mut registry);
    let config = Config::from_yaml_str_with_env(
        "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: postgres\n    url: postgres://u:${PW}@h/db\n    table: t\n    schema: market\n",
        &|k| (k == "PW").then(|| "pw".to_string()),
    )
    .unwrap();
    let w = &config.writers[0];
    registry.writer("postgres").unwrap().validate(w).unwrap();
    let o = PostgresOptions::from_config(w).unwrap();
    assert_eq!(
        (o.table.as_str(), o.schema.as_deref()),
        ("t", Some("market"))
    );
    let bad = Config::from_yaml_str(
        "exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n  - type: postgres\n    url: postgres://h/db\n    tabel: t\n",
    )
    .unwrap();
    let err = registry
        .writer("postgres")
        .unwrap()
        .validate(&bad.writers[0])
        .unwrap_err();
    assert!(err.to_string().contains("tabel"), "{err}");
}

#[tokio::test]
async fn the_resume_point_is_the_newest_stored_trade_of_the_stream() {
    let Some(url) = server().await else { return };
    let (trades, candles) = (
        unique("resume_trades").replace('-', "_"),
        unique("resume_candles").replace('-', "_"),
    );
    let options = PostgresOptions::new(url.as_str()).with_tables(&trades, &candles);
    let mut w = PostgresWriter::connect(options.clone()).await.unwrap();
    let btc = Symbol::parse("BTC-USD").unwrap();
    assert_eq!(w.resume_point("coinbase", &btc).await.unwrap(), None);
    let trade = |id: u64, secs: i64| {
        Event::Trade(Trade {
            exchange: Arc::from("coinbase"),
            symbol: btc.clone(),
            trade_id: TradeId::from_u64(id),
            price: "1".parse().unwrap(),
            amount: "1".parse().unwrap(),
            side: Side::Buy,
            timestamp: Timestamp::from_unix_nanos(secs * 1_000_000_000 + 7, 9),
            received_at: Timestamp::now(),
        })
    };
    // Stored out of order: the newest by time (and then id) wins, not the last written.
    w.write(&[trade(99, 100), trade(100, 101), trade(98, 99)])
        .await
        .unwrap();
    w.close().await.unwrap();
    let mut w = PostgresWriter::connect(options).await.unwrap();
    let at = w.resume_point("coinbase", &btc).await.unwrap().unwrap();
    assert_eq!(at.trade_id.as_str(), "100");
    assert_eq!(at.timestamp.unix_nanos(), 101 * 1_000_000_000 + 7);
    assert_eq!(w.resume_point("bitstamp", &btc).await.unwrap(), None);
    drop_tables(&url, &[&trades, &candles]).await;
}

/// A hole recorded again (after a crash between its gap and the trades that follow it) keeps
/// one row, bounded by the widest of its records.
#[tokio::test]
async fn a_gap_recorded_again_keeps_one_row_with_the_widest_bound() {
    use feeder_core::model::GapReason;
    let Some(url) = server().await else { return };
    let (trades, candles) = (
        unique("gap_trades").replace('-', "_"),
        unique("gap_candles").replace('-', "_"),
    );
    let options = PostgresOptions::new(url.as_str()).with_tables(&trades, &candles);
    let mut w = PostgresWriter::connect(options).await.unwrap();
    let gap = |before: Option<u64>| {
        Event::Gap(Gap {
            exchange: Arc::from("bybit"),
            symbol: Symbol::parse("BTC-USDT").unwrap(),
            after_trade_id: TradeId::from_u64(100),
            before_trade_id: before.map(TradeId::from_u64),
            from: Timestamp::from_unix_secs(1_700_000_000),
            to: before.map(|b| Timestamp::from_unix_secs(1_700_000_000 + b as i64)),
            reason: GapReason::VenueLimit,
        })
    };
    let c = client(&url).await;
    let bound = |rows: Vec<tokio_postgres::Row>| -> Vec<Option<String>> {
        rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect()
    };
    let q = format!("SELECT before_trade_id FROM \"{trades}_gaps\"");
    for (write, want) in [
        (Some(150), Some("150")),
        (Some(180), Some("180")),
        (Some(120), Some("180")),
        (None, None),
        (Some(200), None),
    ] {
        w.write(&[gap(write)]).await.unwrap();
        let got = bound(c.query(&q, &[]).await.unwrap());
        assert_eq!(got, [want.map(str::to_owned)], "after writing {write:?}");
    }
    w.close().await.unwrap();
    let gaps = format!("{trades}_gaps");
    drop_tables(&url, &[&trades, &candles, &gaps]).await;
}

#[tokio::test]
async fn a_candles_table_from_before_the_complete_column_gets_it_and_keeps_its_rows() {
    let Some(url) = server().await else { return };
    let (trades, candles) = (
        unique("old_trades").replace('-', "_"),
        unique("old_candles").replace('-', "_"),
    );
    let c = client(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLE \"{candles}\" (exchange text NOT NULL, symbol text NOT NULL,
            \"interval\" text NOT NULL, open_time timestamptz NOT NULL,
            close_time timestamptz NOT NULL, open numeric NOT NULL, high numeric NOT NULL,
            low numeric NOT NULL, close numeric NOT NULL, volume numeric NOT NULL,
            trades bigint NOT NULL, revision integer NOT NULL,
            PRIMARY KEY (exchange, symbol, \"interval\", open_time));
         INSERT INTO \"{candles}\" VALUES ('x', 'BTC-USD', '30m', '2024-01-02T00:00:00Z',
            '2024-01-02T00:30:00Z', 1, 1, 1, 1, 1, 1, 0);"
    ))
    .await
    .unwrap();
    let mut w =
        PostgresWriter::connect(PostgresOptions::new(url.as_str()).with_tables(&trades, &candles))
            .await
            .unwrap();
    let open = Timestamp::parse_rfc3339("2024-01-02T00:30:00Z").unwrap();
    let candle = Candle {
        exchange: Arc::from("x"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        interval: Interval::M30,
        open_time: open,
        close_time: Timestamp::from_unix_secs(open.unix_secs() + 1_800),
        open: Decimal::ONE,
        high: Decimal::ONE,
        low: Decimal::ONE,
        close: Decimal::ONE,
        volume: Decimal::ONE,
        trades: 1,
        revision: 0,
        complete: false,
    };
    w.write(&[Event::Candle(candle)]).await.unwrap();
    w.close().await.unwrap();
    let rows = c
        .query(
            &format!("SELECT complete FROM \"{candles}\" ORDER BY open_time"),
            &[],
        )
        .await
        .unwrap();
    let flags: Vec<bool> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(flags, [true, false], "the old row is taken as complete");
    drop_tables(&url, &[&trades, &candles]).await;
}
