//! The `postgres` writer over TLS, against a PostgreSQL with `ssl = on` and a test CA
//! (`.ci/services.d/postgres-tls.sh`: port 5433, certificates in
//! `/tmp/crypto-feeder-services/pg-tls/`). Overrides:
//!
//! - `FEEDER_TEST_PG_TLS_URL`: the server, default `postgres://postgres@localhost:5433/test`;
//!   its host must be a name its certificate carries.
//! - `FEEDER_TEST_PG_TLS_DIR`: where `ca.crt`, `other-ca.crt` (a CA that signed nothing the
//!   server shows), `client.crt` and `client.key` (for the role `feeder_cert`) are.
//! - `FEEDER_TEST_PG_TLS_CA`: the CA file alone, default `<dir>/ca.crt`.
//!
//! The tests read back and clean up over plain TCP, which the test server allows on loopback.
//! Skipped with a note when the server is not reachable, unless `CI` is set.

mod conformance_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use conformance_support::{env_or, missing, reachable, unique};
use feeder_core::model::{Candle, Event, Gap, Interval, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::postgres::SslMode;
use feeder_writers::{PostgresOptions, PostgresWriter};
use tokio_postgres::NoTls;

/// The TLS server: its URL (no TLS settings in it), the address it answers on, and the
/// directory of the test certificates.
struct Server {
    url: url::Url,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Server {
    fn ca(&self) -> PathBuf {
        std::env::var_os("FEEDER_TEST_PG_TLS_CA")
            .filter(|v| !v.is_empty())
            .map_or_else(|| self.dir.join("ca.crt"), PathBuf::from)
    }

    /// The server's URL with another host name (the one checked against the certificate)
    /// and `hostaddr` set to where the connection really goes.
    fn named(&self, host: &str, to: SocketAddr) -> String {
        let mut u = self.url.clone();
        u.set_host(Some(host)).unwrap();
        u.set_port(Some(to.port())).unwrap();
        u.query_pairs_mut()
            .append_pair("hostaddr", &to.ip().to_string());
        u.to_string()
    }

    /// The server's URL as it is, to connect by its own name.
    fn direct(&self) -> String {
        self.named(self.url.host_str().unwrap(), self.addr)
    }

    /// A plain client, for reading back and cleaning up.
    async fn plain_client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.direct(), NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    async fn drop_tables(&self, tables: &[&str]) {
        let c = self.plain_client().await;
        for t in tables {
            c.batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\""))
                .await
                .unwrap();
        }
    }
}

/// The TLS server, or `None` (after the skip note) when it is not reachable.
async fn server() -> Option<Server> {
    let raw = env_or(
        "FEEDER_TEST_PG_TLS_URL",
        "postgres://postgres@localhost:5433/test",
    );
    let url = url::Url::parse(&raw).expect("FEEDER_TEST_PG_TLS_URL must be a postgres:// URL");
    let host = url.host_str().unwrap_or("localhost").to_owned();
    let port = url.port().unwrap_or(5432);
    let dir = PathBuf::from(env_or(
        "FEEDER_TEST_PG_TLS_DIR",
        "/tmp/crypto-feeder-services/pg-tls",
    ));
    // `localhost` may resolve to ::1 first, where the test server does not listen.
    let mut found = None;
    if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), port)).await {
        for a in addrs {
            if reachable(a).await {
                found = Some(a);
                break;
            }
        }
    }
    let Some(addr) = found else {
        missing(
            "PostgreSQL with TLS",
            &format!("nothing answers at {host}:{port}"),
        );
        return None;
    };
    let server = Server { url, addr, dir };
    if !server.ca().exists() {
        missing(
            "PostgreSQL with TLS",
            &format!("its CA certificate {} is missing", server.ca().display()),
        );
        return None;
    }
    Some(server)
}

fn ts(t: SystemTime) -> Timestamp {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    };
    Timestamp::from_unix_nanos(nanos, 6)
}

fn trade(id: u64) -> Event {
    Event::Trade(Trade {
        exchange: Arc::from("bitstamp"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: "43210.12".parse().unwrap(),
        amount: "0.05".parse().unwrap(),
        side: Side::Buy,
        timestamp: Timestamp::from_unix_micros(1_700_000_000_000_000 + id as i64),
        received_at: Timestamp::now(),
    })
}

struct TlsTarget {
    server: Server,
    proxy: TcpProxy,
    trades: String,
    candles: String,
}

impl TlsTarget {
    /// Through the proxy on 127.0.0.1, still checking the server's own name: `host` stays
    /// the name the certificate carries and `hostaddr` sends the connection to the proxy.
    fn options(&self) -> PostgresOptions {
        let host = self.server.url.host_str().unwrap().to_owned();
        PostgresOptions::new(self.server.named(&host, self.proxy.addr()))
            .with_sslmode(SslMode::VerifyFull)
            .with_sslrootcert(self.server.ca())
            .with_tables(&self.trades, &self.candles)
            .with_timeouts(Duration::from_secs(3), Duration::from_secs(5))
    }
}

#[async_trait]
impl ConformanceTarget for TlsTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(PostgresWriter::connect(self.options()).await?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let c = self.server.plain_client().await;
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
                side: r
                    .get::<_, &str>(5)
                    .parse()
                    .map_err(|()| "a side that is not buy, sell or unknown")?,
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
            "SELECT exchange, symbol, after_trade_id, before_trade_id, from_ts, to_ts, reason \
             FROM \"{}_gaps\"",
            self.trades
        );
        for r in c.query(&q, &[]).await? {
            out.push(Event::Gap(Gap {
                exchange: Arc::from(r.get::<_, &str>(0)),
                symbol: Symbol::parse(r.get(1))?,
                after_trade_id: TradeId::new(r.get(2)),
                before_trade_id: r.get::<_, Option<&str>>(3).map(TradeId::new),
                from: ts(r.get(4)),
                to: r.get::<_, Option<SystemTime>>(5).map(ts),
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
        // (bounded), so that the catch-up after it is a real reconnect, with a new handshake.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        // A server whose certificate does not pass: checked against the wrong CA.
        let options = self
            .options()
            .with_sslrootcert(self.server.dir.join("other-ca.crt"));
        Some(
            PostgresWriter::connect(options)
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

#[tokio::test]
async fn the_postgres_writer_conforms_over_verified_tls_through_an_outage() {
    let Some(server) = server().await else { return };
    let target = TlsTarget {
        proxy: TcpProxy::start(server.addr).await.unwrap(),
        trades: unique("tls_trades").replace('-', "_"),
        candles: unique("tls_candles").replace('-', "_"),
        server,
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    assert_eq!(report.passed().len(), 6, "{report}");
    // The outage was real: the writer saw errors, and connections were refused.
    assert!(report.outage_errors > 0, "{report:?}");
    assert!(target.proxy.refused() > 0);
    let gaps = format!("{}_gaps", target.trades);
    target
        .server
        .drop_tables(&[&target.trades, &target.candles, &gaps])
        .await;
}

/// The writer's connection is TLS as the server sees it (not a plain connection that
/// happened to work).
#[tokio::test]
async fn the_server_sees_the_writers_connection_encrypted() {
    let Some(server) = server().await else { return };
    let app = unique("feeder_tls_app").replace('-', "_");
    let (trades, candles) = (
        unique("tls_seen").replace('-', "_"),
        unique("tls_seen_c").replace('-', "_"),
    );
    let mut url = url::Url::parse(&server.direct()).unwrap();
    url.query_pairs_mut().append_pair("application_name", &app);
    let options = PostgresOptions::new(url.as_str())
        .with_sslmode(SslMode::VerifyFull)
        .with_sslrootcert(server.ca())
        .with_tables(&trades, &candles);
    let mut w = PostgresWriter::connect(options).await.unwrap();
    w.write(&[trade(1)]).await.unwrap();
    let c = server.plain_client().await;
    let row = c
        .query_one(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert!(row.get::<_, &str>(1).starts_with("TLSv1."));
    let stored: i64 = c
        .query_one(&format!("SELECT count(*) FROM \"{trades}\""), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    w.close().await.unwrap();
    server.drop_tables(&[&trades, &candles]).await;
}

/// What a connection attempt ended with, as a user reads it: the whole error chain.
async fn attempt(options: PostgresOptions) -> Result<(), String> {
    match PostgresWriter::connect(
        options.with_timeouts(Duration::from_secs(5), Duration::from_secs(5)),
    )
    .await
    {
        Ok(mut w) => {
            w.close().await.unwrap();
            Ok(())
        }
        Err(e) => {
            assert!(!e.is_retriable(), "{e}");
            Err(ErrorChain(&e).to_string())
        }
    }
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_a_certificate_error() {
    let Some(server) = server().await else { return };
    let other = server.dir.join("other-ca.crt");
    // A password in the URL must not show in the error (the server does not ask for it).
    let mut url = url::Url::parse(&server.direct()).unwrap();
    url.set_password(Some("hunter2secret")).unwrap();
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
        let shown = attempt(
            PostgresOptions::new(url.as_str())
                .with_sslmode(mode)
                .with_sslrootcert(&other),
        )
        .await
        .unwrap_err();
        assert!(
            shown.contains("certificate failed verification"),
            "{mode}: {shown}"
        );
        // rustls's own word for it is kept in the chain.
        assert!(shown.contains("UnknownIssuer"), "{mode}: {shown}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
    // Without sslrootcert the Mozilla roots are used, which do not hold the test CA.
    let shown = attempt(PostgresOptions::new(server.direct()).with_sslmode(SslMode::VerifyFull))
        .await
        .unwrap_err();
    assert!(shown.contains("UnknownIssuer"), "{shown}");
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_carry() {
    let Some(server) = server().await else { return };
    // The right server, reached at its address, but asked for by a name its certificate
    // does not carry.
    let stranger = server.named("pg-tls.invalid", server.addr);
    let shown = attempt(
        PostgresOptions::new(&stranger)
            .with_sslmode(SslMode::VerifyFull)
            .with_sslrootcert(server.ca()),
    )
    .await
    .unwrap_err();
    assert!(shown.contains("certificate failed verification"), "{shown}");
    assert!(shown.contains("not valid for name"), "{shown}");
    // The same name is fine where only the chain is checked, and where the user asked for
    // encryption alone; the chain check still holds for verify-ca.
    let (trades, candles) = (
        unique("tls_name").replace('-', "_"),
        unique("tls_name_c").replace('-', "_"),
    );
    let ok = |mode, root: Option<PathBuf>| {
        let mut o = PostgresOptions::new(&stranger)
            .with_sslmode(mode)
            .with_tables(&trades, &candles);
        if let Some(r) = root {
            o = o.with_sslrootcert(r);
        }
        o
    };
    attempt(ok(SslMode::VerifyCa, Some(server.ca())))
        .await
        .unwrap();
    attempt(ok(SslMode::Require, None)).await.unwrap();
    assert!(
        attempt(ok(SslMode::VerifyCa, Some(server.dir.join("other-ca.crt"))))
            .await
            .is_err()
    );
    server.drop_tables(&[&trades, &candles]).await;
}

/// A server (or something in between) that answers the TLS request with "no": under every
/// mode that asks for TLS the connection fails; only `prefer` goes on without it.
#[tokio::test]
async fn a_server_without_tls_is_refused_unless_tls_is_only_preferred() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refuser = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Bounded: one connection per attempt below.
        for _ in 0..4 {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            s.read_exact(&mut request).await.unwrap();
            // SSLRequest: length 8, code 80877103.
            assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
            s.write_all(b"N").await.unwrap();
            // What follows (a plain start-up under `prefer`) is dropped unanswered.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        }
    });
    let url = format!(
        "postgres://postgres@localhost:{}/test?hostaddr=127.0.0.1",
        addr.port()
    );
    // The compiled-in roots: no certificate is ever looked at, as TLS is refused first.
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
        let shown = attempt(PostgresOptions::new(&url).with_sslmode(mode))
            .await
            .unwrap_err();
        assert!(shown.contains("does not support TLS"), "{mode}: {shown}");
    }
    // `prefer` goes on in plain text (and then fails here, as nothing answers the start-up).
    let shown = attempt(PostgresOptions::new(&url).with_sslmode(SslMode::Prefer))
        .await
        .unwrap_err();
    assert!(!shown.contains("does not support TLS"), "{shown}");
    refuser.await.unwrap();
}

#[tokio::test]
async fn a_client_certificate_signs_its_role_in() {
    let Some(server) = server().await else { return };
    let (cert, key) = (server.dir.join("client.crt"), server.dir.join("client.key"));
    if !cert.exists() && missing("a client certificate", "client.crt is missing") {
        return;
    }
    let mut url = url::Url::parse(&server.direct()).unwrap();
    url.set_username("feeder_cert").unwrap();
    let (trades, candles) = (
        unique("tls_cert").replace('-', "_"),
        unique("tls_cert_c").replace('-', "_"),
    );
    let options = PostgresOptions::new(url.as_str())
        .with_sslmode(SslMode::VerifyFull)
        .with_sslrootcert(server.ca())
        .with_tables(&trades, &candles);
    let shown = attempt(options.clone()).await.unwrap_err();
    assert!(shown.contains("certificate"), "{shown}");
    let mut w = PostgresWriter::connect(options.with_client_cert(&cert, &key))
        .await
        .unwrap();
    w.write(&[trade(7)]).await.unwrap();
    w.close().await.unwrap();
    server.drop_tables(&[&trades, &candles]).await;
}

/// SCRAM over TLS with `channel_binding=require`: the password exchange is bound to the
/// server's certificate, which only works if the hash of it is the one the server makes.
#[tokio::test]
async fn scram_is_bound_to_the_tls_channel() {
    let Some(server) = server().await else { return };
    let mut url = url::Url::parse(&server.direct()).unwrap();
    url.set_username("feeder_scram").unwrap();
    url.set_password(Some("feeder-scram-test")).unwrap();
    url.query_pairs_mut()
        .append_pair("channel_binding", "require");
    let (trades, candles) = (
        unique("tls_scram").replace('-', "_"),
        unique("tls_scram_c").replace('-', "_"),
    );
    let options = PostgresOptions::new(url.as_str())
        .with_sslmode(SslMode::VerifyFull)
        .with_sslrootcert(server.ca())
        .with_tables(&trades, &candles);
    attempt(options).await.unwrap();
    server.drop_tables(&[&trades, &candles]).await;
}

/// Over the server's Unix socket, where PostgreSQL never offers TLS, `prefer` connects in
/// plain text as it always did, and `require` is refused rather than let through.
#[tokio::test]
async fn the_unix_socket_stays_plain_under_prefer_and_is_refused_under_require() {
    let Some(server) = server().await else { return };
    let dir = env_or("FEEDER_TEST_PG_TLS_SOCKET_DIR", "/var/run/postgresql");
    let port = server.url.port().unwrap_or(5432);
    let socket = PathBuf::from(&dir).join(format!(".s.PGSQL.{port}"));
    if !socket.exists()
        && missing(
            "PostgreSQL's Unix socket",
            &format!("{} is missing", socket.display()),
        )
    {
        return;
    }
    let (trades, candles) = (
        unique("tls_unix").replace('-', "_"),
        unique("tls_unix_c").replace('-', "_"),
    );
    let url =
        |mode: &str| format!("host={dir} port={port} user=postgres dbname=test sslmode={mode}");
    attempt(PostgresOptions::new(url("prefer")).with_tables(&trades, &candles))
        .await
        .unwrap();
    let shown = attempt(PostgresOptions::new(url("require")).with_tables(&trades, &candles))
        .await
        .unwrap_err();
    assert!(shown.contains("does not support TLS"), "{shown}");
    server.drop_tables(&[&trades, &candles]).await;
}
