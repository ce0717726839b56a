//! The stores check: the PostgreSQL, Kafka and S3 writers, each beside a bare client of the
//! same library doing the same work in the same run, on the same rows:
//!
//! - PostgreSQL: the writer (one transaction per batch, `INSERT ... SELECT FROM UNNEST ...
//!   ON CONFLICT DO NOTHING`) against a binary `COPY` of each batch into a table made
//!   `LIKE` the writer's (same columns, key and index), with tokio-postgres.
//! - Kafka: the writer against a bare rdkafka producer with the writer's settings
//!   (idempotence, `acks=all`, lz4, `linger.ms=5`), sending the same keys and JSON payloads
//!   and waiting for every delivery of a batch before the next.
//! - S3: the writer (spool on local disk, upload at completion) against a plain multipart
//!   upload, with object_store, of the same JSON lines, one object per stream.
//!
//! Rows per second are over the whole run of each (for S3, until everything is uploaded);
//! the ratio is taken within a run, and the two go first in turn from run to run.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use feeder_core::config::WriterConfig;
use feeder_core::model::{write_json_line, Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload as _, ObjectStore, ObjectStoreExt as _, PutPayload};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::process;
use crate::scenario;

/// Settings of the stores check.
#[derive(Clone, Debug, clap::Args)]
pub struct StoresArgs {
    /// Trades written by each client in each run.
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// Trades per batch (the writers' default batch size).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Runs; the table shows each store's median run (by ratio); every run is printed.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Stores to run (postgres, kafka, s3).
    #[arg(long, value_delimiter = ',', default_value = "postgres,kafka,s3")]
    pub stores: Vec<String>,
    /// The PostgreSQL server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// The Kafka broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// The S3-compatible server (buckets are created with a plain `PUT`, as moto takes it).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    pub s3_endpoint: String,
    /// A smoke run (few rows, one run).
    #[arg(long)]
    pub quick: bool,
}

/// One client's run.
#[derive(Clone, Debug)]
struct Timed {
    rows: usize,
    seconds: f64,
    cpu_seconds: f64,
    /// Per batch, µs (`write` returning, or the batch's last delivery).
    batch_micros: Vec<f64>,
}

impl Timed {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// One run of one store: the writer and the bare client.
#[derive(Clone, Debug)]
struct Pair {
    writer: Timed,
    bare: Timed,
    /// PostgreSQL only: binary `COPY` into a temporary table, then `INSERT ... SELECT ... ON
    /// CONFLICT DO NOTHING` from it, in one transaction per batch (idempotent, as the writer
    /// must be): what the writer would do with that design.
    staged: Option<Timed>,
    load: String,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.writer.rate() / self.bare.rate().max(1e-9)
    }
}

/// Runs the check and prints its table.
pub fn run(args: &StoresArgs) -> anyhow::Result<()> {
    let mut args = args.clone();
    if args.quick {
        args.rows = args.rows.min(5_000);
        args.repeat = 1;
    }
    if args.stores.iter().any(|s| s == "s3") && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The local test server takes any credentials; without some the client would ask
        // the instance metadata service. Set before any thread starts.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let rows = trades(args.rows);
    let mut results: Vec<(String, Result<Vec<Pair>, String>)> = Vec::new();
    for store in &args.stores {
        eprintln!("stores: {store}");
        let mut pairs = Vec::new();
        let mut failed = None;
        for i in 0..args.repeat.max(1) {
            let writer_first = i % 2 == 0;
            let r = rt.block_on(async {
                match store.as_str() {
                    "postgres" => postgres(&args, &rows, i, writer_first).await,
                    "kafka" => kafka(&args, &rows, i, writer_first).await,
                    "s3" => s3(&args, &rows, i, writer_first).await,
                    other => bail!("unknown store {other:?} (known: postgres, kafka, s3)"),
                }
            });
            match r {
                Ok(p) => {
                    eprintln!(
                        "  run {}: writer {:.0} rows/s, bare {:.0} rows/s, {:.2}x",
                        i + 1,
                        p.writer.rate(),
                        p.bare.rate(),
                        p.ratio()
                    );
                    pairs.push(p);
                }
                Err(e) => {
                    failed = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        results.push((
            store.clone(),
            match failed {
                Some(e) => Err(e),
                None => Ok(pairs),
            },
        ));
    }
    print_table(&args, &results)
}

/// `n` trades over ten streams of one venue, in the order a venue sends them.
fn trades(n: usize) -> Vec<Event> {
    let exchange: Arc<str> = Arc::from("coinbase");
    let symbols: Vec<Symbol> = [
        "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "DOGE-USD", "ADA-USD", "AVAX-USD", "LINK-USD",
        "DOT-USD", "LTC-USD",
    ]
    .iter()
    .filter_map(|s| Symbol::parse(s).ok())
    .collect();
    let start = Timestamp::now().unix_nanos() / 1_000;
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|i| {
            let symbol = symbols[i % symbols.len()].clone();
            let micros = start + i as i64 * 200;
            Event::Trade(Trade {
                exchange: exchange.clone(),
                symbol,
                trade_id: TradeId::from_u64(1_000_000 + i as u64),
                price: Decimal::new(6_000_000 + rng.i64(-50_000..50_000), 2),
                amount: Decimal::new(rng.i64(1..150_000_000), 8),
                side: if rng.bool() { Side::Buy } else { Side::Sell },
                timestamp: Timestamp::from_unix_micros(micros),
                received_at: Timestamp::from_unix_micros(micros + 150),
            })
        })
        .collect()
}

/// Times one client: the whole run, each batch, and the process's CPU time.
struct Clock {
    cpu: f64,
    start: Instant,
    batch_micros: Vec<f64>,
}

impl Clock {
    fn start() -> anyhow::Result<Clock> {
        Ok(Clock {
            cpu: process::cpu_seconds()?,
            start: Instant::now(),
            batch_micros: Vec::new(),
        })
    }

    /// Records a batch begun at `t`.
    fn lap(&mut self, t: Instant) {
        self.batch_micros.push(t.elapsed().as_secs_f64() * 1e6);
    }

    fn finish(self, rows: usize) -> anyhow::Result<Timed> {
        Ok(Timed {
            rows,
            seconds: self.start.elapsed().as_secs_f64(),
            cpu_seconds: process::cpu_seconds()? - self.cpu,
            batch_micros: self.batch_micros,
        })
    }
}

/// Writes `rows` through `writer` batch by batch.
async fn through_writer(
    writer: &mut dyn Writer,
    rows: &[Event],
    batch: usize,
) -> anyhow::Result<Timed> {
    let mut clock = Clock::start()?;
    for chunk in rows.chunks(batch.max(1)) {
        let t = Instant::now();
        writer.write(chunk).await?;
        clock.lap(t);
    }
    clock.finish(rows.len())
}

async fn open_writer(cfg: &WriterConfig) -> anyhow::Result<Box<dyn Writer>> {
    let registry = scenario::registry();
    let factory = registry
        .writer(&cfg.kind)
        .with_context(|| format!("the {} writer is not in this build", cfg.kind))?;
    factory.validate(cfg)?;
    Ok(factory.build(cfg).await?)
}

/// Runs the writer and the bare client in the order asked.
async fn both<W, B>(writer_first: bool, writer: W, bare: B) -> anyhow::Result<(Timed, Timed)>
where
    W: std::future::Future<Output = anyhow::Result<Timed>>,
    B: std::future::Future<Output = anyhow::Result<Timed>>,
{
    if writer_first {
        let w = writer.await?;
        Ok((w, bare.await?))
    } else {
        let b = bare.await?;
        Ok((writer.await?, b))
    }
}

async fn postgres(
    args: &StoresArgs,
    rows: &[Event],
    run: usize,
    writer_first: bool,
) -> anyhow::Result<Pair> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(&args.postgres_url, tokio_postgres::NoTls),
    )
    .await
    .context("PostgreSQL did not answer within 10 s")?
    .context("cannot reach PostgreSQL")?;
    let driver = tokio::spawn(conn);
    let base = format!("bench_stores_{}_{run}", std::process::id());
    let table = format!("{base}_trades");
    let cfg = WriterConfig::new("postgres")
        .with_option("url", args.postgres_url.clone())
        .with_option("table", table.clone())
        .with_option("candles_table", format!("{base}_candles"))
        .with_option("gaps_table", format!("{base}_gaps"));
    let mut writer = open_writer(&cfg).await?;
    // The bare table: the writer's columns, key and index.
    let bare_table = format!("{base}_bare");
    client
        .batch_execute(&format!(
            "CREATE TABLE {bare_table} (LIKE {table} INCLUDING ALL)"
        ))
        .await?;
    let copy = format!(
        "COPY {bare_table} (exchange, symbol, trade_id, price, amount, side, ts, received_at, \
         timestamp_ns) FROM STDIN (FORMAT binary)"
    );
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::NUMERIC,
        Type::NUMERIC,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT8,
    ];
    let staged_table = format!("{base}_staged");
    let stage = format!("{base}_stage");
    client
        .batch_execute(&format!(
            "CREATE TABLE {staged_table} (LIKE {table} INCLUDING ALL); \
             CREATE TEMPORARY TABLE {stage} (LIKE {table}) ON COMMIT DELETE ROWS"
        ))
        .await?;
    let copy_stage = copy.replace(&bare_table, &stage);
    let insert_staged =
        format!("INSERT INTO {staged_table} SELECT * FROM {stage} ON CONFLICT DO NOTHING");
    let client = &client;
    let bare = async {
        let mut clock = Clock::start()?;
        for chunk in rows.chunks(args.batch.max(1)) {
            let t = Instant::now();
            copy_batch(client, &copy, &types, chunk).await?;
            clock.lap(t);
        }
        clock.finish(rows.len())
    };
    let staged = || {
        staged_batches(
            client,
            &copy_stage,
            &insert_staged,
            &types,
            rows,
            args.batch,
        )
    };
    // The staged variant runs after the other two when the writer goes first, before them
    // otherwise.
    let staged_first = !writer_first;
    let early = if staged_first {
        Some(staged().await)
    } else {
        None
    };
    let result = both(
        writer_first,
        through_writer(writer.as_mut(), rows, args.batch),
        bare,
    )
    .await;
    let staged = match early {
        Some(r) => r,
        None => {
            // Only when the first two ran: a failure there is the one to report.
            match &result {
                Ok(_) => staged().await,
                Err(_) => Err(anyhow::anyhow!("not run")),
            }
        }
    };
    let _ = writer.close().await;
    drop(writer);
    let stored: Option<(i64, i64)> = async {
        let a: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .ok()?
            .get(0);
        let b: i64 = client
            .query_one(&format!("SELECT count(*) FROM {bare_table}"), &[])
            .await
            .ok()?
            .get(0);
        Some((a, b))
    }
    .await;
    let _ = client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}, {base}_candles, {base}_gaps, {bare_table}, \
             {staged_table}, {stage}"
        ))
        .await;
    driver.abort();
    let (writer, bare) = result?;
    if let Some((a, b)) = stored {
        if a as usize != rows.len() || b as usize != rows.len() {
            bail!(
                "stored {a} rows through the writer and {b} bare, of {}",
                rows.len()
            );
        }
    }
    Ok(Pair {
        writer,
        bare,
        staged: Some(staged?),
        load: crate::procfs::load_average(),
    })
}

/// The staged design: per batch, in one transaction, a binary `COPY` into the temporary
/// table, then an idempotent `INSERT ... SELECT` from it.
async fn staged_batches(
    client: &tokio_postgres::Client,
    copy_stage: &str,
    insert: &str,
    types: &[Type],
    rows: &[Event],
    batch: usize,
) -> anyhow::Result<Timed> {
    let mut clock = Clock::start()?;
    for chunk in rows.chunks(batch.max(1)) {
        let t = Instant::now();
        client.batch_execute("BEGIN").await?;
        copy_batch(client, copy_stage, types, chunk).await?;
        client.execute(insert, &[]).await?;
        client.batch_execute("COMMIT").await?;
        clock.lap(t);
    }
    clock.finish(rows.len())
}

/// One batch as one binary `COPY` (`copy` names the table and columns).
async fn copy_batch(
    client: &tokio_postgres::Client,
    copy: &str,
    types: &[Type],
    chunk: &[Event],
) -> anyhow::Result<()> {
    let sink = client.copy_in(copy).await?;
    let w = BinaryCopyInWriter::new(sink, types);
    let mut w = std::pin::pin!(w);
    for e in chunk {
        let Event::Trade(t) = e else { continue };
        let ts = system_time(t.timestamp);
        let received = system_time(t.received_at);
        let ns = t.timestamp.unix_nanos();
        w.as_mut()
            .write(&[
                &&*t.exchange,
                &t.symbol.as_str(),
                &t.trade_id.as_str(),
                &t.price,
                &t.amount,
                &t.side.as_str(),
                &ts,
                &received,
                &ns,
            ])
            .await?;
    }
    w.finish().await?;
    Ok(())
}

fn system_time(ts: Timestamp) -> std::time::SystemTime {
    let n = ts.unix_nanos();
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

async fn kafka(
    args: &StoresArgs,
    rows: &[Event],
    run: usize,
    writer_first: bool,
) -> anyhow::Result<Pair> {
    let topic = format!("bench-stores-{}-{run}", std::process::id());
    let brokers: Vec<String> = args.kafka_brokers.split(',').map(str::to_owned).collect();
    let mut create = serde_yaml_ng::Mapping::new();
    create.insert("partitions".into(), 1.into());
    create.insert("replication_factor".into(), 1.into());
    let cfg = WriterConfig::new("kafka")
        .with_option(
            "brokers",
            serde_yaml_ng::Value::Sequence(brokers.iter().map(|b| b.as_str().into()).collect()),
        )
        .with_option("topic", topic.clone())
        .with_option("candles_topic", format!("{topic}-candles"))
        .with_option("create_topics", serde_yaml_ng::Value::Mapping(create));
    let mut writer = open_writer(&cfg).await?;
    // The writer's settings (feeder-writers' kafka client): the same batching, compression,
    // idempotence and acknowledgements.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", args.kafka_brokers.as_str())
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("client.id", "feeder-bench-bare")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .context("creating the bare producer")?;
    // Both clients connect, get their producer id and learn the topic's leader before the
    // clock starts: one record each, not timed.
    let warm = rows.get(..1).unwrap_or_default();
    writer.write(warm).await?;
    for e in warm {
        let mut buf = Vec::new();
        write_json_line(e, &mut buf);
        let record = FutureRecord::to(topic.as_str())
            .key("warm-up")
            .payload(buf.as_slice());
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => {}
            Err((e, _)) => bail!("the bare producer's first record: {e}"),
        }
    }
    let bare = async {
        let mut clock = Clock::start()?;
        let mut key = String::new();
        let mut buf = Vec::new();
        for chunk in rows.chunks(args.batch.max(1)) {
            let t = Instant::now();
            let mut pending = Vec::with_capacity(chunk.len());
            for e in chunk {
                key.clear();
                key.push_str(e.exchange());
                key.push(':');
                key.push_str(e.symbol().as_str());
                buf.clear();
                write_json_line(e, &mut buf);
                let value = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let record = FutureRecord::to(topic.as_str())
                    .key(key.as_str())
                    .payload(value);
                match producer.send_result(record) {
                    Ok(f) => pending.push(f),
                    Err((e, _)) => bail!("queueing a message: {e}"),
                }
            }
            for f in pending {
                match f.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => bail!("a delivery failed: {e}"),
                    Err(_) => bail!("a delivery was cancelled"),
                }
            }
            clock.lap(t);
        }
        clock.finish(rows.len())
    };
    let result = both(
        writer_first,
        through_writer(writer.as_mut(), rows, args.batch),
        bare,
    )
    .await;
    let _ = writer.close().await;
    let (writer, bare) = result?;
    Ok(Pair {
        writer,
        bare,
        staged: None,
        load: crate::procfs::load_average(),
    })
}

async fn s3(
    args: &StoresArgs,
    rows: &[Event],
    run: usize,
    writer_first: bool,
) -> anyhow::Result<Pair> {
    let endpoint = url::Url::parse(&args.s3_endpoint).context("the S3 endpoint")?;
    if !matches!(
        endpoint.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]")
    ) {
        bail!("the stores check runs against a local S3 server only");
    }
    let bucket = format!("bench-stores-{}-{run}", std::process::id());
    create_bucket(&endpoint, &bucket).await?;
    let spool = tempfile::Builder::new()
        .prefix("feeder-bench-spool-")
        .tempdir()
        .context("creating the spool directory")?;
    let cfg = WriterConfig::new("s3")
        .with_option("bucket", bucket.clone())
        .with_option("prefix", "writer")
        .with_option("region", "us-east-1")
        .with_option("endpoint", endpoint.as_str().trim_end_matches('/'))
        .with_option("format", "jsonl")
        .with_option("spool_dir", spool.path().to_string_lossy().into_owned());
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_endpoint(endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&bucket)
            .build()
            .context("the bare S3 client")?,
    );
    let batch = args.batch;
    let writer_run = async {
        let mut writer = open_writer(&cfg).await?;
        let mut clock = Clock::start()?;
        for chunk in rows.chunks(batch.max(1)) {
            let t = Instant::now();
            writer.write(chunk).await?;
            clock.lap(t);
        }
        // Everything is in the bucket once close returns.
        writer.close().await?;
        clock.finish(rows.len())
    };
    let bare_run = async {
        let mut clock = Clock::start()?;
        // One object per stream, JSON lines, as the writer lays them out.
        let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
        for e in rows {
            let name = format!("{}/{}", e.exchange(), e.symbol().as_str());
            let body = match streams.iter_mut().find(|(n, _)| *n == name) {
                Some((_, b)) => b,
                None => {
                    streams.push((name, Vec::new()));
                    &mut streams.last_mut().context("just pushed")?.1
                }
            };
            write_json_line(e, body);
        }
        for (name, body) in streams {
            let t = Instant::now();
            let path = ObjectPath::from(format!("bare/{name}/part.jsonl"));
            let mut upload = store.put_multipart(&path).await?;
            // Parts of 5 MiB, S3's smallest but the last.
            let body = bytes::Bytes::from(body);
            let mut at = 0;
            while at < body.len() {
                let end = (at + (5 << 20)).min(body.len());
                upload
                    .put_part(PutPayload::from(body.slice(at..end)))
                    .await?;
                at = end;
            }
            upload.complete().await?;
            clock.lap(t);
        }
        clock.finish(rows.len())
    };
    let (writer, bare) = both(writer_first, writer_run, bare_run).await?;
    Ok(Pair {
        writer,
        bare,
        staged: None,
        load: crate::procfs::load_average(),
    })
}

/// Creates `bucket` with S3's CreateBucket (a `PUT` of the bucket's path), which the local
/// test server takes unsigned.
async fn create_bucket(endpoint: &url::Url, bucket: &str) -> anyhow::Result<()> {
    let url = format!("{}/{bucket}", endpoint.as_str().trim_end_matches('/'));
    let r = reqwest::Client::new()
        .put(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("cannot reach S3 at {endpoint}"))?;
    if !r.status().is_success() {
        bail!("creating the bucket {bucket}: {}", r.status());
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn print_table(
    args: &StoresArgs,
    results: &[(String, Result<Vec<Pair>, String>)],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nstores: {} trades per client per run in batches of {}; writer and bare client in the same run, each going first in turn; median run by ratio of {} run(s)",
        args.rows,
        args.batch,
        args.repeat.max(1)
    )?;
    let header = format!(
        "{:<9} {:<26} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "store", "client", "rows/s", "ratio", "CPU s/1M", "p50 µs", "p99 µs", "max µs"
    );
    writeln!(out, "{header}")?;
    writeln!(out, "{}", "-".repeat(header.chars().count()))?;
    let mut notes = Vec::new();
    for (store, r) in results {
        let pairs = match r {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => continue,
            Err(e) => {
                writeln!(out, "{store:<9} FAILED or unreachable (see below)")?;
                notes.push(format!("{store}: {e}"));
                continue;
            }
        };
        let mut sorted: Vec<&Pair> = pairs.iter().collect();
        sorted.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        let m = sorted[sorted.len() / 2];
        let (bare_name, writer_name) = match store.as_str() {
            "postgres" => ("bare binary COPY", "postgres writer"),
            "kafka" => ("bare rdkafka producer", "kafka writer"),
            "s3" => ("bare multipart upload", "s3 writer (to uploaded)"),
            _ => ("bare", "writer"),
        };
        let unit = if store == "s3" { "object" } else { "batch" };
        let mut clients = vec![
            (bare_name, &m.bare, "100%".to_owned()),
            (writer_name, &m.writer, format!("{:.0}%", 100.0 * m.ratio())),
        ];
        if let Some(st) = &m.staged {
            clients.push((
                "staged COPY + INSERT",
                st,
                format!("{:.0}%", 100.0 * st.rate() / m.bare.rate().max(1e-9)),
            ));
        }
        for (name, t, ratio) in clients {
            let mut lat = t.batch_micros.clone();
            lat.sort_by(f64::total_cmp);
            writeln!(
                out,
                "{:<9} {:<26} {:>11.0} {:>8} {:>10.2} {:>10.0} {:>10.0} {:>10.0}",
                store,
                name,
                t.rate(),
                ratio,
                t.cpu_seconds * 1e6 / t.rows.max(1) as f64,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                lat.last().copied().unwrap_or(0.0)
            )?;
        }
        for (i, p) in pairs.iter().enumerate() {
            let staged = p.staged.as_ref().map_or(String::new(), |st| {
                format!(
                    ", staged COPY + INSERT {:.0} rows/s ({:.2})",
                    st.rate(),
                    st.rate() / p.bare.rate().max(1e-9)
                )
            });
            notes.push(format!(
                "{store} run {}: writer {:.0} rows/s, bare {:.0} rows/s, ratio {:.2}{staged} (load {}; latency per {unit})",
                i + 1,
                p.writer.rate(),
                p.bare.rate(),
                p.ratio(),
                p.load
            ));
        }
    }
    for n in notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_distinct_trades_over_ten_streams() {
        let rows = trades(1_000);
        assert_eq!(rows.len(), 1_000);
        let mut keys: Vec<(String, String)> = rows
            .iter()
            .map(|e| match e {
                Event::Trade(t) => (t.symbol.as_str().to_owned(), t.trade_id.to_string()),
                _ => unreachable!("only trades"),
            })
            .collect();
        let streams: std::collections::BTreeSet<&str> =
            keys.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(streams.len(), 10);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 1_000);
    }

    #[test]
    fn percentiles_of_sorted_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
