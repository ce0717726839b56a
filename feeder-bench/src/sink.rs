//! What sink workers sustain: trades already on a Kafka topic (the feeders' format: JSON
//! lines keyed `exchange:symbol`), read back by the `kafka` source in a consumer group and
//! stored, with one worker and with two in the same group.
//!
//! The topic is filled once, before any timing. Each run is a fresh consumer group (so it
//! reads the whole topic) writing into a fresh store (a PostgreSQL schema, a directory of
//! JSON lines files). A run is timed by what the source commits, which is exactly what every
//! writer has stored: from the first commit to the commit that reaches the end of every
//! partition. The join of the group (seconds on tansu) is left out that way, and so is the
//! first commit interval's share of the trades.
//!
//! Both workers of a two-worker run are in this process, on the same runtime: on one machine
//! they share its cores either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use feeder_core::config::Config;
use feeder_core::feeder::{Feeder, Registry};
use feeder_core::model::{write_json_line, Event, Side, Symbol, Timestamp, Trade, TradeId};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// What to measure.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// PostgreSQL URL, for the `postgres` store.
    pub pg_url: String,
    /// Trades put on the topic.
    pub trades: u64,
    /// Streams (symbols of one venue) the trades are spread over.
    pub streams: usize,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Stores to measure: `postgres`, `jsonl`.
    pub stores: Vec<String>,
    /// Worker counts to measure, as `[1, 2]`.
    pub workers: Vec<usize>,
    /// Longest time one run may take.
    pub timeout: Duration,
}

/// One run's figure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SinkResult {
    /// The store.
    pub store: String,
    /// Workers in the group.
    pub workers: usize,
    /// Trades stored within the timed span.
    pub trades: u64,
    /// Its length.
    pub seconds: f64,
    /// Trades stored per second.
    pub per_second: f64,
}

const VENUE: &str = "bench";

fn symbols(n: usize) -> Vec<Symbol> {
    (0..n)
        .map(|i| Symbol::parse(&format!("S{i}-USD")).expect("a valid symbol"))
        .collect()
}

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Creates `topic` and fills it with `opts.trades` trades, round-robin over the streams.
/// Returns the end offset of each partition.
async fn fill(opts: &SinkOptions, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let admin: AdminClient<DefaultClientContext> = client(&opts.brokers)
        .create()
        .context("kafka admin client")?;
    let created = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                opts.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .context("creating the topic")?;
    for r in created {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    let producer: FutureProducer = client(&opts.brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("kafka producer")?;
    let syms = symbols(opts.streams);
    let venue: Arc<str> = Arc::from(VENUE);
    let start = Timestamp::now().unix_nanos();
    let mut pending = Vec::with_capacity(10_000);
    let mut buf = Vec::new();
    for i in 0..opts.trades {
        let symbol = &syms[i as usize % syms.len()];
        let at = Timestamp::from_unix_nanos(start + i as i64 * 1_000, 9);
        let trade = Trade {
            exchange: venue.clone(),
            symbol: symbol.clone(),
            trade_id: TradeId::from_u64(i / syms.len() as u64 + 1),
            price: rust_decimal::Decimal::new(4_321_012 + (i % 1000) as i64, 2),
            amount: rust_decimal::Decimal::new(5 + (i % 7) as i64, 3),
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            timestamp: at,
            received_at: at,
        };
        buf.clear();
        write_json_line(&Event::Trade(trade), &mut buf);
        let key = format!("{VENUE}:{symbol}");
        let value = buf.strip_suffix(b"\n").unwrap_or(&buf);
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(value)) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    delivered(&mut pending).await?;
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        if pending.len() >= 10_000 {
            delivered(&mut pending).await?;
        }
    }
    delivered(&mut pending).await?;
    producer.flush(Duration::from_secs(30))?;
    let brokers = opts.brokers.clone();
    let (topic, partitions) = (topic.to_owned(), opts.partitions);
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client(&brokers).create()?;
        (0..partitions)
            .map(|p| {
                let (_, high) = c.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
                Ok((p, high))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await?
}

/// Waits for every delivery report of `pending`.
async fn delivered(pending: &mut Vec<DeliveryFuture>) -> anyhow::Result<()> {
    for f in pending.drain(..) {
        f.await
            .context("a delivery report was dropped")?
            .map_err(|(e, _)| e)
            .context("producing")?;
    }
    Ok(())
}

/// What the group has committed, summed over the partitions.
fn committed(consumer: &BaseConsumer, topic: &str, ends: &[(i32, i64)]) -> anyhow::Result<i64> {
    let mut list = TopicPartitionList::new();
    for (p, _) in ends {
        list.add_partition(topic, *p);
    }
    let got = consumer.committed_offsets(list, Duration::from_secs(5))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum())
}

fn worker_config(
    opts: &SinkOptions,
    topic: &str,
    group: &str,
    store: &str,
    at: &str,
) -> anyhow::Result<Config> {
    let syms: Vec<String> = symbols(opts.streams)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let writer = match store {
        "postgres" => format!(
            "  - type: postgres\n    url: {}\n    schema: {at}\n",
            opts.pg_url
        ),
        "jsonl" => format!("  - type: file\n    path: {at}\n    format: jsonl\n"),
        other => bail!("unknown store {other:?} (postgres, jsonl)"),
    };
    let text = format!(
        "exchanges:\n  - name: kafka\n    symbols: [{syms}]\n    options:\n      brokers: {brokers}\n      \
         topic: {topic}\n      group_id: {group}\n      venues: [{VENUE}]\n      commit_interval: 500ms\n\
         pipeline:\n  candles: [1m]\nwriters:\n{writer}shutdown_timeout: 30s\n",
        syms = syms.join(", "),
        brokers = opts.brokers,
    );
    Ok(Config::from_yaml_str(&text)?)
}

/// One run: `workers` workers of a fresh group into a fresh `store`.
async fn one(
    opts: &SinkOptions,
    topic: &str,
    ends: &[(i32, i64)],
    store: &str,
    workers: usize,
) -> anyhow::Result<SinkResult> {
    let t = Timestamp::now().unix_nanos() % 1_000_000_000_000;
    let group = format!("bench_sink_{t}");
    let dir = tempfile::tempdir()?;
    let at = match store {
        "postgres" => format!("bench_sink_{t}"),
        _ => dir.path().join("out").display().to_string(),
    };
    let mut registry = Registry::new();
    feeder_writers::register(&mut registry);
    let shutdown = CancellationToken::new();
    // Every worker is ready before any joins the group, so that they join together and the
    // group forms once.
    let mut feeders = Vec::new();
    for _ in 0..workers {
        let config = worker_config(opts, topic, &group, store, &at)?;
        feeders.push(
            Feeder::from_config(config, &registry)
                .await
                .context("starting a worker")?,
        );
    }
    let runs: Vec<_> = feeders
        .into_iter()
        .map(|f| tokio::spawn(f.run(shutdown.clone())))
        .collect();
    let total: i64 = ends.iter().map(|(_, h)| h).sum();
    let watch: BaseConsumer = client(&opts.brokers).set("group.id", &group).create()?;
    let watch = Arc::new(watch);
    let deadline = Instant::now() + opts.timeout;
    let mut first: Option<(Instant, i64)> = None;
    let last = loop {
        let (w, topic_name, e) = (watch.clone(), topic.to_owned(), ends.to_vec());
        let done = tokio::task::spawn_blocking(move || committed(&w, &topic_name, &e)).await??;
        let now = Instant::now();
        if done > 0 && first.is_none() {
            first = Some((now, done));
        }
        if done >= total {
            break now;
        }
        if now > deadline {
            shutdown.cancel();
            bail!("{store} with {workers} worker(s): {done} of {total} committed in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    for r in runs {
        let summary = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .context("a worker did not stop")??;
        if summary.lost_anything() {
            bail!("a worker lost events: {summary:?}");
        }
    }
    if store == "postgres" {
        let (c, conn) = tokio_postgres::connect(&opts.pg_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM \"{at}\".trades"), &[])
            .await?
            .get(0);
        c.batch_execute(&format!("DROP SCHEMA \"{at}\" CASCADE"))
            .await?;
        if n != opts.trades as i64 {
            bail!("postgres holds {n} of {} trades", opts.trades);
        }
    }
    let (t0, at_first) = first.unwrap_or((last, 0));
    let seconds = last.duration_since(t0).as_secs_f64().max(1e-3);
    let trades = (total - at_first).max(0) as u64;
    Ok(SinkResult {
        store: store.to_owned(),
        workers,
        trades,
        seconds,
        per_second: trades as f64 / seconds,
    })
}

/// Fills a topic, then measures each store with each worker count; prints a table.
pub async fn run(opts: &SinkOptions) -> anyhow::Result<Vec<SinkResult>> {
    let t = Timestamp::now().unix_nanos() % 1_000_000_000_000;
    let topic = format!("bench_sink_trades_{t}");
    let filling = Instant::now();
    let ends = fill(opts, &topic).await?;
    eprintln!(
        "sink: {} trades of {} streams on {topic} ({} partitions) in {:.1}s",
        opts.trades,
        opts.streams,
        opts.partitions,
        filling.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for store in &opts.stores {
        for &workers in &opts.workers {
            let r = one(opts, &topic, &ends, store, workers).await?;
            eprintln!(
                "sink: {store} with {workers} worker(s): {:.0} trades/s ({} in {:.2}s)",
                r.per_second, r.trades, r.seconds
            );
            results.push(r);
        }
    }
    Ok(results)
}

/// The results as a table.
pub fn table(results: &[SinkResult]) -> String {
    let mut out = String::from("store     workers  trades/s   trades   seconds\n");
    for r in results {
        out.push_str(&format!(
            "{:<9} {:>7} {:>9.0} {:>8} {:>9.2}\n",
            r.store, r.workers, r.per_second, r.trades, r.seconds
        ));
    }
    out
}
