//! The `postgres` writer: one connection, one transaction per batch, inserts through
//! `UNNEST` of parameter arrays (one statement per table, whatever the batch size).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use feeder_core::config::ConfigError;
use feeder_core::exchange::Cursor;
use feeder_core::model::{Candle, Event, Gap, GapReason, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::de::value::StrDeserializer;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Socket, Statement};

use super::config::{quote_ident, PostgresOptions};
use super::tls::{MakeRustlsConnect, TlsSetupError};

/// Stores trades and candles in PostgreSQL tables.
///
/// Trades are inserted with `ON CONFLICT DO NOTHING` on (exchange, symbol, trade_id), so a
/// retried batch stores nothing twice. Candles are upserted on (exchange, symbol, interval,
/// open_time), keeping the highest revision. Each batch is one transaction: `write` returns
/// `Ok` once it is committed.
///
/// `timestamptz` holds microseconds: a trade's exact time, to the nanosecond, is also kept in
/// `timestamp_ns` (nanoseconds since the Unix epoch).
///
/// When the connection drops (server restart, network), the batch fails with a retriable
/// error and the next `write` connects again.
pub struct PostgresWriter {
    options: PostgresOptions,
    config: tokio_postgres::Config,
    /// The TLS client, built once from the options' files; `None` for plain connections.
    tls: Option<MakeRustlsConnect>,
    /// `None` before the first connection and after a connection failed; the next write
    /// connects again.
    conn: Option<Conn>,
    sql: Sql,
    /// Candles of the batch being written, one per key at its highest revision; kept to
    /// reuse the allocation.
    candles: Vec<Candle>,
}

/// An open connection and its prepared statements.
struct Conn {
    client: Client,
    /// Drives the connection's socket; aborted with the connection.
    _driver: AbortOnDrop,
    insert_trades: Statement,
    upsert_candles: Statement,
    insert_gap: Statement,
}

/// The SQL text of a writer, built once from its table names.
struct Sql {
    create: Vec<String>,
    insert_trades: String,
    upsert_candles: String,
    insert_gap: String,
    /// The newest stored trade of one stream, for resuming after a restart.
    last_trade: String,
    /// A stream's trades from a time on that a cursor with a numeric id covers, in the
    /// order of `last_trade`.
    replay_numeric: String,
    /// The same for a cursor whose id is not a number.
    replay_textual: String,
    /// A stream's gaps that overlap a span of time.
    replay_gaps: String,
    /// A stream's candles that open at or after a time.
    replay_candles: String,
}

impl Sql {
    fn new(o: &PostgresOptions) -> Self {
        let qualify = |table: &str| match &o.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(table)),
            None => quote_ident(table),
        };
        let trades = qualify(&o.table);
        let candles = qualify(&o.candles_table);
        let mut create = Vec::new();
        if let Some(s) = &o.schema {
            create.push(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(s)));
        }
        create.push(format!(
            "CREATE TABLE IF NOT EXISTS {trades} (
                exchange text NOT NULL,
                symbol text NOT NULL,
                trade_id text NOT NULL,
                price numeric NOT NULL,
                amount numeric NOT NULL,
                side text NOT NULL,
                ts timestamptz NOT NULL,
                received_at timestamptz NOT NULL,
                timestamp_ns bigint NOT NULL,
                PRIMARY KEY (exchange, symbol, trade_id)
            )"
        ));
        // Finds a stream's newest trade at start-up without scanning the stream.
        let time_index = quote_ident(&format!("{}_stream_time", o.table));
        create.push(format!(
            "CREATE INDEX IF NOT EXISTS {time_index} ON {trades} (exchange, symbol, timestamp_ns)"
        ));
        let last_trade = format!(
            "SELECT trade_id, timestamp_ns FROM {trades} WHERE exchange = $1 AND symbol = $2 \
             ORDER BY timestamp_ns DESC, length(trade_id) DESC, trade_id DESC LIMIT 1"
        );
        // `Cursor::covers` in SQL: a trade is covered when it is the cursor's trade, or when
        // both ids are numbers and its id is not greater, or otherwise when it is older.
        // Two statements rather than one with a flag: a cast of the cursor's id to numeric
        // must never be planned for an id that is not a number.
        let replay = |covered: &str| {
            format!(
                "SELECT exchange, symbol, trade_id, price, amount, side, timestamp_ns, \
                 received_at FROM {trades} \
                 WHERE exchange = $1 AND symbol = $2 AND timestamp_ns >= $3 \
                 AND (trade_id = $4 OR {covered}) \
                 ORDER BY timestamp_ns, length(trade_id), trade_id"
            )
        };
        let replay_numeric = replay(
            "CASE WHEN trade_id ~ '^[0-9]{1,38}$' THEN trade_id::numeric <= $4::text::numeric \
             ELSE timestamp_ns < $5 END",
        );
        let replay_textual = replay("timestamp_ns < $5");
        create.push(format!(
            "CREATE TABLE IF NOT EXISTS {candles} (
                exchange text NOT NULL,
                symbol text NOT NULL,
                \"interval\" text NOT NULL,
                open_time timestamptz NOT NULL,
                close_time timestamptz NOT NULL,
                open numeric NOT NULL,
                high numeric NOT NULL,
                low numeric NOT NULL,
                close numeric NOT NULL,
                volume numeric NOT NULL,
                trades bigint NOT NULL,
                revision integer NOT NULL,
                complete boolean NOT NULL DEFAULT true,
                PRIMARY KEY (exchange, symbol, \"interval\", open_time)
            )"
        ));
        // Tables made before candles said whether they are complete: theirs all were taken
        // to be.
        create.push(format!(
            "ALTER TABLE {candles} ADD COLUMN IF NOT EXISTS complete boolean NOT NULL DEFAULT true"
        ));
        let gaps = qualify(&o.gaps_table);
        // A hole recorded again (a crash between its gap and the trades after it) keeps one
        // row, with the widest bound.
        create.push(format!(
            "CREATE TABLE IF NOT EXISTS {gaps} (
                exchange text NOT NULL,
                symbol text NOT NULL,
                after_trade_id text NOT NULL,
                before_trade_id text,
                from_ts timestamptz NOT NULL,
                to_ts timestamptz,
                reason text NOT NULL,
                from_ns bigint NOT NULL,
                to_ns bigint,
                PRIMARY KEY (exchange, symbol, after_trade_id)
            )"
        ));
        let replay_gaps = format!(
            "SELECT after_trade_id, before_trade_id, from_ns, to_ns, reason FROM {gaps} \
             WHERE exchange = $1 AND symbol = $2 AND from_ns <= $3 \
             AND (to_ns IS NULL OR to_ns >= $4) \
             ORDER BY from_ns, after_trade_id"
        );
        let replay_candles = format!(
            "SELECT \"interval\", open_time, close_time, open, high, low, close, volume, \
             trades, revision, complete FROM {candles} \
             WHERE exchange = $1 AND symbol = $2 AND open_time >= $3 \
             ORDER BY open_time, \"interval\""
        );
        let insert_gap = format!(
            "INSERT INTO {gaps} AS g
                (exchange, symbol, after_trade_id, before_trade_id, from_ts, to_ts, reason,
                 from_ns, to_ns)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (exchange, symbol, after_trade_id) DO UPDATE SET
                before_trade_id = EXCLUDED.before_trade_id, to_ts = EXCLUDED.to_ts,
                to_ns = EXCLUDED.to_ns, reason = EXCLUDED.reason
             WHERE g.to_ns IS NOT NULL
                AND (EXCLUDED.to_ns IS NULL OR EXCLUDED.to_ns > g.to_ns)"
        );
        let insert_trades = format!(
            "INSERT INTO {trades}
                (exchange, symbol, trade_id, price, amount, side, ts, received_at, timestamp_ns)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[],
                $5::numeric[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int8[])
             ON CONFLICT DO NOTHING"
        );
        let table = quote_ident(&o.candles_table);
        let upsert_candles = format!(
            "INSERT INTO {candles}
                (exchange, symbol, \"interval\", open_time, close_time, open, high, low, close,
                 volume, trades, revision, complete)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                $5::timestamptz[], $6::numeric[], $7::numeric[], $8::numeric[],
                $9::numeric[], $10::numeric[], $11::int8[], $12::int4[], $13::bool[])
             ON CONFLICT (exchange, symbol, \"interval\", open_time) DO UPDATE SET
                close_time = EXCLUDED.close_time, open = EXCLUDED.open,
                high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                volume = EXCLUDED.volume, trades = EXCLUDED.trades,
                revision = EXCLUDED.revision, complete = EXCLUDED.complete
             WHERE {table}.revision < EXCLUDED.revision"
        );
        Self {
            create,
            insert_trades,
            upsert_candles,
            insert_gap,
            last_trade,
            replay_numeric,
            replay_textual,
            replay_gaps,
            replay_candles,
        }
    }
}

impl std::fmt::Debug for PostgresWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresWriter")
            .field("options", &self.options)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresWriter {
    /// Connects, creates the tables if absent and prepares the statements. A bad URL, an
    /// unknown user or database, a refused password, a TLS file that cannot be read, a server
    /// certificate that fails its check or a server that does not answer within
    /// `connect_timeout` fail here with a terminal error that says which.
    pub async fn connect(options: PostgresOptions) -> Result<Self, WriteError> {
        let (config, tls) = options
            .connection_config()
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        options
            .check()
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        let tls = match tls {
            None => None,
            Some(settings) => Some(MakeRustlsConnect::new(&settings).map_err(|e| {
                let context = match &e {
                    TlsSetupError::Rustls(_) => "cannot set up TLS for the postgres writer",
                    _ => "cannot read the postgres writer's TLS files",
                };
                WriteError::terminal(context, e)
            })?),
        };
        if options.plain_over_network() {
            tracing::warn!(
                url = %options.redacted_url(),
                "postgres writer connects without TLS to a host off this machine: its traffic, \
                 password included, is readable on the way; set sslmode: verify-full"
            );
        }
        let sql = Sql::new(&options);
        let mut writer = Self {
            options,
            config,
            tls,
            conn: None,
            sql,
            candles: Vec::new(),
        };
        match writer.open().await {
            Ok(conn) => writer.conn = Some(conn),
            Err(e) => {
                return Err(WriteError::terminal(
                    format!(
                        "cannot start the postgres writer on {}",
                        writer.options.redacted_url()
                    ),
                    e,
                ))
            }
        }
        tracing::info!(
            url = %writer.options.redacted_url(),
            table = %writer.options.table,
            candles_table = %writer.options.candles_table,
            "postgres writer connected"
        );
        Ok(writer)
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// Opens a connection, creates the tables and prepares the statements, within
    /// `connect_timeout`.
    async fn open(&self) -> Result<Conn, OpenError> {
        let limit = self.options.connect_timeout;
        let setup = async {
            let (client, driver) = match &self.tls {
                Some(tls) => connect_with(&self.config, tls.clone()).await?,
                None => connect_with(&self.config, NoTls).await?,
            };
            for statement in &self.sql.create {
                client.batch_execute(statement).await?;
            }
            let insert_trades = client.prepare(&self.sql.insert_trades).await?;
            let upsert_candles = client.prepare(&self.sql.upsert_candles).await?;
            let insert_gap = client.prepare(&self.sql.insert_gap).await?;
            Ok::<_, tokio_postgres::Error>(Conn {
                client,
                _driver: driver,
                insert_trades,
                upsert_candles,
                insert_gap,
            })
        };
        match tokio::time::timeout(limit, setup).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(OpenError::Postgres(e)),
            Err(_) => Err(OpenError::Timeout(limit)),
        }
    }

    /// Opens a connection when there is none or it was closed, for the reads made at
    /// start-up; a failure is worth asking again.
    async fn connect_if_needed(&mut self) -> Result<(), WriteError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            let conn = self.open().await.map_err(|e| {
                WriteError::retriable(
                    format!("cannot connect to {}", self.options.redacted_url()),
                    e,
                )
            })?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    async fn store(&mut self, batch: &[Event]) -> Result<(), tokio_postgres::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let trades = TradeColumns::of(batch);
        latest_revisions(batch, &mut self.candles);
        let candles = CandleColumns::of(&self.candles);
        let tx = conn.client.transaction().await?;
        if !trades.exchange.is_empty() {
            tx.execute(
                &conn.insert_trades,
                &[
                    &trades.exchange,
                    &trades.symbol,
                    &trades.trade_id,
                    &trades.price,
                    &trades.amount,
                    &trades.side,
                    &trades.ts,
                    &trades.received_at,
                    &trades.timestamp_ns,
                ],
            )
            .await?;
        }
        if !candles.exchange.is_empty() {
            tx.execute(
                &conn.upsert_candles,
                &[
                    &candles.exchange,
                    &candles.symbol,
                    &candles.interval,
                    &candles.open_time,
                    &candles.close_time,
                    &candles.open,
                    &candles.high,
                    &candles.low,
                    &candles.close,
                    &candles.volume,
                    &candles.trades,
                    &candles.revision,
                    &candles.complete,
                ],
            )
            .await?;
        }
        for gap in batch.iter().filter_map(|e| match e {
            Event::Gap(g) => Some(g),
            _ => None,
        }) {
            let to_ns = gap.to.map(|t| t.unix_nanos());
            tx.execute(
                &conn.insert_gap,
                &[
                    &&*gap.exchange,
                    &gap.symbol.as_str(),
                    &gap.after_trade_id.as_str(),
                    &gap.before_trade_id.as_ref().map(|id| id.as_str()),
                    &system_time(gap.from),
                    &gap.to.map(system_time),
                    &gap.reason.as_str(),
                    &gap.from.unix_nanos(),
                    &to_ns,
                ],
            )
            .await?;
        }
        tx.commit().await
    }
}

/// Connects, and spawns the task that drives the connection's socket. The task is aborted
/// (closing the socket) when the returned guard is dropped, as when the set-up after this
/// fails or times out.
async fn connect_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<(Client, AbortOnDrop), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    }));
    Ok((client, driver))
}

/// A spawned task that is aborted when this value is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{}", describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A plainer first line for the common start-up failures; the source chain keeps the
/// server's own message.
fn describe(e: &tokio_postgres::Error) -> &'static str {
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            "authentication failed (check the user and password)"
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => "the database does not exist",
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            "permission denied (the user must be able to create and write the tables)"
        }
        Some(_) => "the server refused the set-up",
        None if certificate_refused(e) => {
            "the server's TLS certificate failed verification (check sslrootcert, and under \
             sslmode=verify-full that the certificate names the host connected to)"
        }
        None => "cannot connect",
    }
}

/// Whether the connection failed because the server's certificate did not pass its check.
fn certificate_refused(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        // The TLS layer hands rustls's error over inside an `io::Error`, whose `source` skips
        // it.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(c, |inner| inner as &(dyn std::error::Error + 'static));
        if let Some(rustls::Error::InvalidCertificate(_)) = inner.downcast_ref::<rustls::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether retrying a batch after `e` can succeed: connection trouble, server restarts,
/// resource shortages and transaction conflicts can; bad data and bad SQL cannot.
fn is_retriable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let class = code.code().get(..2).unwrap_or("");
            !matches!(class, "22" | "23" | "42" | "0A" | "28" | "3D" | "3F")
        }
    }
}

#[async_trait]
impl Writer for PostgresWriter {
    fn name(&self) -> &str {
        "postgres"
    }

    /// The stream's newest stored trade (by trade time, then id).
    async fn resume_point(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
    ) -> Result<Option<Cursor>, WriteError> {
        self.connect_if_needed().await?;
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        let row = conn
            .client
            .query_opt(&self.sql.last_trade, &[&exchange, &symbol.as_str()])
            .await
            .map_err(|e| WriteError::retriable("reading the newest stored trade failed", e))?;
        Ok(row.map(|r| {
            let id: String = r.get(0);
            let ns: i64 = r.get(1);
            Cursor {
                trade_id: TradeId::new(&id),
                timestamp: Timestamp::from_unix_nanos(ns, 9),
            }
        }))
    }

    /// Streams the stream's trades from `from` on that `upto` covers, ordered as
    /// [`resume_point`](Writer::resume_point) orders them (by trade time, then by id, numeric
    /// ids as numbers), a row at a time as the server sends them, and its gaps that overlap
    /// them, each just before the first trade later than its start; then its candles that
    /// open at or after `from`.
    async fn replay(
        &mut self,
        exchange: &str,
        symbol: &Symbol,
        from: Timestamp,
        upto: &Cursor,
        out: &mut (dyn FnMut(Event) + Send),
    ) -> Result<bool, WriteError> {
        self.connect_if_needed().await?;
        let (Some(conn), sql) = (&self.conn, &self.sql) else {
            return Ok(false);
        };
        let read = |e| {
            let context = "reading the stored trades back failed";
            if is_retriable(&e) {
                WriteError::retriable(context, e)
            } else {
                WriteError::terminal(context, e)
            }
        };
        let (from_ns, upto_ns) = (from.unix_nanos(), upto.timestamp.unix_nanos());
        let exchange_arc: Arc<str> = Arc::from(exchange);
        let mut gaps: VecDeque<Gap> = VecDeque::new();
        for row in conn
            .client
            .query(
                &sql.replay_gaps,
                &[&exchange, &symbol.as_str(), &upto_ns, &from_ns],
            )
            .await
            .map_err(read)?
        {
            gaps.push_back(gap_of(&row, &exchange_arc, symbol).map_err(unreadable_row)?);
        }
        let trades = match upto.trade_id.as_number() {
            Some(_) => &sql.replay_numeric,
            None => &sql.replay_textual,
        };
        let params: [&(dyn ToSql + Sync); 5] = [
            &exchange,
            &symbol.as_str(),
            &from_ns,
            &upto.trade_id.as_str(),
            &upto_ns,
        ];
        // Rows come off the socket as they are read: the connection waits for this loop
        // rather than buffer the result.
        let rows = conn
            .client
            .query_raw(trades.as_str(), params)
            .await
            .map_err(read)?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.next().await {
            let trade =
                trade_of(&row.map_err(read)?, &exchange_arc, symbol).map_err(unreadable_row)?;
            while gaps.front().is_some_and(|g| g.from < trade.timestamp) {
                if let Some(gap) = gaps.pop_front() {
                    out(Event::Gap(gap));
                }
            }
            out(Event::Trade(trade));
        }
        for gap in gaps {
            out(Event::Gap(gap));
        }
        // Candles are few (one per interval and stream per interval's length).
        for row in conn
            .client
            .query(
                &sql.replay_candles,
                &[&exchange, &symbol.as_str(), &system_time(from)],
            )
            .await
            .map_err(read)?
        {
            out(Event::Candle(
                candle_of(&row, &exchange_arc, symbol).map_err(unreadable_row)?,
            ));
        }
        Ok(true)
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            match self.open().await {
                Ok(conn) => {
                    tracing::info!(url = %self.options.redacted_url(), "postgres writer reconnected");
                    self.conn = Some(conn);
                }
                Err(e) => {
                    let retriable = match &e {
                        OpenError::Postgres(pg) => is_retriable(pg),
                        OpenError::Timeout(_) => true,
                    };
                    let context = format!("cannot reconnect to {}", self.options.redacted_url());
                    return Err(if retriable {
                        WriteError::retriable(context, e)
                    } else {
                        WriteError::terminal(context, e)
                    });
                }
            }
        }
        let limit = self.options.write_timeout;
        match tokio::time::timeout(limit, self.store(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let retriable = is_retriable(&e);
                if retriable {
                    // The connection may be broken or mid-transaction: start afresh.
                    self.conn = None;
                }
                let context = "postgres rejected the batch";
                Err(if retriable {
                    WriteError::retriable(context, e)
                } else {
                    WriteError::terminal(context, e)
                })
            }
            Err(_) => {
                self.conn = None;
                Err(WriteError::retriable(
                    format!("postgres did not store the batch within {limit:?}"),
                    "write timeout",
                ))
            }
        }
    }

    async fn close(&mut self) -> Result<(), WriteError> {
        // Every acknowledged batch is committed; closing only releases the connection.
        self.conn = None;
        Ok(())
    }
}

/// A stored row that cannot be read back as the event it holds: it stays so however often
/// it is asked.
fn unreadable_row(e: Box<dyn std::error::Error + Send + Sync>) -> WriteError {
    WriteError::terminal("a stored row cannot be read back", e)
}

type RowResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A trade from a row of the replay statements (`exchange, symbol, trade_id, price, amount,
/// side, timestamp_ns, received_at`); the stream's names are those asked for.
fn trade_of(row: &Row, exchange: &Arc<str>, symbol: &Symbol) -> RowResult<Trade> {
    let id: &str = row.try_get(2)?;
    let side: &str = row.try_get(5)?;
    let received: SystemTime = row.try_get(7)?;
    Ok(Trade {
        exchange: Arc::clone(exchange),
        symbol: symbol.clone(),
        trade_id: TradeId::new(id),
        price: row.try_get(3)?,
        amount: row.try_get(4)?,
        side: side
            .parse()
            .map_err(|()| format!("trade {id}: side {side:?} is not buy, sell or unknown"))?,
        timestamp: Timestamp::from_unix_nanos(row.try_get(6)?, 9),
        received_at: timestamp(received),
    })
}

/// A gap from a row of the gaps replay statement (`after_trade_id, before_trade_id,
/// from_ns, to_ns, reason`).
fn gap_of(row: &Row, exchange: &Arc<str>, symbol: &Symbol) -> RowResult<Gap> {
    let before: Option<&str> = row.try_get(1)?;
    let to: Option<i64> = row.try_get(3)?;
    let reason: &str = row.try_get(4)?;
    Ok(Gap {
        exchange: Arc::clone(exchange),
        symbol: symbol.clone(),
        after_trade_id: TradeId::new(row.try_get(0)?),
        before_trade_id: before.map(TradeId::new),
        from: Timestamp::from_unix_nanos(row.try_get(2)?, 9),
        to: to.map(|ns| Timestamp::from_unix_nanos(ns, 9)),
        reason: GapReason::deserialize(StrDeserializer::<serde::de::value::Error>::new(reason))?,
    })
}

/// A candle from a row of the candles replay statement (`interval, open_time, close_time,
/// open, high, low, close, volume, trades, revision, complete`).
fn candle_of(row: &Row, exchange: &Arc<str>, symbol: &Symbol) -> RowResult<Candle> {
    let interval: &str = row.try_get(0)?;
    let trades: i64 = row.try_get(8)?;
    let revision: i32 = row.try_get(9)?;
    Ok(Candle {
        exchange: Arc::clone(exchange),
        symbol: symbol.clone(),
        interval: interval
            .parse()
            .map_err(|e| format!("candle interval {interval:?}: {e}"))?,
        open_time: timestamp(row.try_get(1)?),
        close_time: timestamp(row.try_get(2)?),
        open: row.try_get(3)?,
        high: row.try_get(4)?,
        low: row.try_get(5)?,
        close: row.try_get(6)?,
        volume: row.try_get(7)?,
        trades: u64::try_from(trades).map_err(|_| format!("candle trades {trades} < 0"))?,
        revision: u32::try_from(revision).map_err(|_| format!("candle revision {revision} < 0"))?,
        complete: row.try_get(10)?,
    })
}

/// A `timestamptz` read back: microseconds, as the column keeps them.
fn timestamp(t: SystemTime) -> Timestamp {
    let micros = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
    };
    Timestamp::from_unix_micros(micros)
}

/// Nanoseconds since the epoch as a `SystemTime`, the type the driver binds to
/// `timestamptz` (which keeps microseconds).
pub(super) fn system_time(ts: Timestamp) -> SystemTime {
    let n = ts.unix_nanos();
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// The trades of a batch as one array per column.
#[derive(Default)]
struct TradeColumns<'a> {
    exchange: Vec<&'a str>,
    symbol: Vec<&'a str>,
    trade_id: Vec<&'a str>,
    price: Vec<Decimal>,
    amount: Vec<Decimal>,
    side: Vec<&'static str>,
    ts: Vec<SystemTime>,
    received_at: Vec<SystemTime>,
    timestamp_ns: Vec<i64>,
}

impl<'a> TradeColumns<'a> {
    fn of(batch: &'a [Event]) -> Self {
        let mut c = Self::default();
        for t in batch.iter().filter_map(|e| match e {
            Event::Trade(t) => Some(t),
            Event::Candle(_) | Event::Gap(_) => None,
        }) {
            c.push(t);
        }
        c
    }

    fn push(&mut self, t: &'a Trade) {
        self.exchange.push(&t.exchange);
        self.symbol.push(t.symbol.as_str());
        self.trade_id.push(t.trade_id.as_str());
        self.price.push(t.price);
        self.amount.push(t.amount);
        self.side.push(t.side.as_str());
        self.ts.push(system_time(t.timestamp));
        self.received_at.push(system_time(t.received_at));
        self.timestamp_ns.push(t.timestamp.unix_nanos());
    }
}

/// Keeps, per candle key, only the highest revision in the batch: one `INSERT ... ON
/// CONFLICT DO UPDATE` may not touch a row twice.
fn latest_revisions(batch: &[Event], out: &mut Vec<Candle>) {
    out.clear();
    for c in batch.iter().filter_map(|e| match e {
        Event::Candle(c) => Some(c),
        Event::Trade(_) | Event::Gap(_) => None,
    }) {
        let same = |x: &Candle| {
            x.open_time == c.open_time
                && x.interval == c.interval
                && x.symbol == c.symbol
                && x.exchange == c.exchange
        };
        match out.iter_mut().find(|x| same(x)) {
            Some(x) if c.revision > x.revision => *x = c.clone(),
            Some(_) => {}
            None => out.push(c.clone()),
        }
    }
}

/// The candles of a batch as one array per column.
#[derive(Default)]
struct CandleColumns<'a> {
    exchange: Vec<&'a str>,
    symbol: Vec<&'a str>,
    interval: Vec<String>,
    open_time: Vec<SystemTime>,
    close_time: Vec<SystemTime>,
    open: Vec<Decimal>,
    high: Vec<Decimal>,
    low: Vec<Decimal>,
    close: Vec<Decimal>,
    volume: Vec<Decimal>,
    trades: Vec<i64>,
    revision: Vec<i32>,
    complete: Vec<bool>,
}

impl<'a> CandleColumns<'a> {
    fn of(candles: &'a [Candle]) -> Self {
        let mut c = Self::default();
        for k in candles {
            c.exchange.push(&k.exchange);
            c.symbol.push(k.symbol.as_str());
            c.interval.push(k.interval.to_string());
            c.open_time.push(system_time(k.open_time));
            c.close_time.push(system_time(k.close_time));
            c.open.push(k.open);
            c.high.push(k.high);
            c.low.push(k.low);
            c.close.push(k.close);
            c.volume.push(k.volume);
            c.trades.push(i64::try_from(k.trades).unwrap_or(i64::MAX));
            c.revision
                .push(i32::try_from(k.revision).unwrap_or(i32::MAX));
            c.complete.push(k.complete);
        }
        c
    }
}
