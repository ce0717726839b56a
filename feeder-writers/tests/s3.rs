//! The `s3` writer against an S3-compatible server (`FEEDER_TEST_S3_ENDPOINT`, default
//! `http://127.0.0.1:5000`, a moto server in CI), through a cuttable proxy for the outage
//! check. Skipped with a note when the server is not reachable, unless `CI` is set.

mod conformance_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance_support::{env_or, missing, parse_jsonl, reachable, resolve, unique};
use feeder_core::model::Event;
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_testkit::proxy::TcpProxy;
use feeder_writers::s3::S3Format;
use feeder_writers::{S3Options, S3Writer};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

/// The endpoint, or `None` (after the skip note) when nothing answers there. Sets dummy
/// credentials for the test server when the environment has none.
async fn server() -> Option<url::Url> {
    let raw = env_or("FEEDER_TEST_S3_ENDPOINT", "http://127.0.0.1:5000");
    let url = url::Url::parse(&raw).expect("FEEDER_TEST_S3_ENDPOINT must be a URL");
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The test server accepts any credentials; set them so that the client never looks
        // for instance credentials.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    match resolve(&addr).await {
        Some(a) if reachable(a).await => Some(url),
        _ => {
            missing("an S3 server", &format!("nothing answers at {addr}"));
            None
        }
    }
}

/// Creates a bucket on the test server (S3 CreateBucket; the test server does not check
/// signatures).
async fn create_bucket(endpoint: &url::Url, bucket: &str) {
    let url = format!("{}/{bucket}", endpoint.as_str().trim_end_matches('/'));
    let r = reqwest::Client::new().put(&url).send().await.unwrap();
    assert!(r.status().is_success(), "creating {bucket}: {}", r.status());
}

fn direct(endpoint: &url::Url, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// Every object under the bucket, with its key.
async fn objects(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = Vec::new();
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.push((m.location.to_string(), bytes.to_vec()));
    }
    out
}

fn decode(key: &str, bytes: Vec<u8>) -> Vec<Event> {
    if key.ends_with(".parquet") {
        feeder_writers::file::parquet::decode_parquet(bytes::Bytes::from(bytes)).unwrap()
    } else {
        parse_jsonl(&bytes)
    }
}

struct S3Target {
    endpoint: url::Url,
    proxy: TcpProxy,
    bucket: String,
    spool: tempfile::TempDir,
    format: S3Format,
}

impl S3Target {
    fn options(&self, bucket: &str) -> S3Options {
        S3Options::new(bucket)
            .with_endpoint(format!("http://{}", self.proxy.addr()))
            .with_prefix("feed")
            .with_spool_dir(self.spool.path())
            .with_format(self.format)
            // Small and short-lived objects, so that uploads happen during the outage.
            .with_object_bounds(4 * 1024, Duration::from_millis(200))
    }
}

#[async_trait]
impl ConformanceTarget for S3Target {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(
            S3Writer::connect(self.options(&self.bucket)).await?,
        ))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        let store = direct(&self.endpoint, &self.bucket);
        let mut out = Vec::new();
        for (key, bytes) in objects(&*store).await {
            assert!(key.starts_with("feed/"), "{key}");
            out.extend(decode(&key, bytes));
        }
        Ok(out)
    }

    fn keyed(&self) -> bool {
        false
    }

    async fn outage(&self) -> bool {
        self.proxy.cut();
        true
    }

    async fn restore(&self) {
        // Writes land in the spool at once, so the suite would bring the server back before
        // any upload was tried: hold the outage until the uploader has hit it (bounded).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.proxy.refused() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proxy.restore();
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        Some(
            S3Writer::connect(self.options("no-such-bucket-for-crypto-feeder"))
                .await
                .map(|w| Box::new(w) as Box<dyn Writer>),
        )
    }
}

async fn conform(format: S3Format) {
    let Some(endpoint) = server().await else {
        return;
    };
    let upstream = resolve(&format!(
        "{}:{}",
        endpoint.host_str().unwrap(),
        endpoint.port_or_known_default().unwrap()
    ))
    .await
    .unwrap();
    let bucket = unique("feeder");
    create_bucket(&endpoint, &bucket).await;
    let target = S3Target {
        endpoint,
        proxy: TcpProxy::start(upstream).await.unwrap(),
        bucket,
        spool: tempfile::tempdir().unwrap(),
        format,
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.checks.iter().all(|(_, o)| *o == Outcome::Passed),
        "{report}"
    );
    // Uploads were tried, and refused, during the outage.
    assert!(target.proxy.refused() > 0);
    // Everything uploaded left the spool.
    assert!(conformance_support::read_tree(&target.spool.path().join("ready")).is_empty());
}

#[tokio::test]
async fn the_s3_writer_conforms_with_jsonl_objects() {
    conform(S3Format::Jsonl).await;
}

#[tokio::test]
async fn the_s3_writer_conforms_with_parquet_objects() {
    conform(S3Format::Parquet).await;
}

#[tokio::test]
async fn objects_are_laid_out_by_kind_exchange_symbol_and_day() {
    let Some(endpoint) = server().await else {
        return;
    };
    let bucket = unique("layout");
    create_bucket(&endpoint, &bucket).await;
    let spool = tempfile::tempdir().unwrap();
    let options = S3Options::new(&bucket)
        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
        .with_prefix("/p/q/")
        .with_spool_dir(spool.path());
    let mut w = S3Writer::connect(options).await.unwrap();
    let events = feeder_core::testing::sample_events("bitstamp", 20);
    w.write(&events).await.unwrap();
    w.close().await.unwrap();
    let got = objects(&*direct(&endpoint, &bucket)).await;
    let mut keys: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    let dirs: Vec<String> = keys
        .iter()
        .map(|k| k.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(
        dirs,
        [
            "p/q/candles/bitstamp/BTC-USD/2024-01-02",
            "p/q/candles/bitstamp/ETH-USDT/2024-01-02",
            "p/q/trades/bitstamp/BTC-USD/2024-01-02",
            "p/q/trades/bitstamp/ETH-USDT/2024-01-02",
        ]
    );
    assert!(keys.iter().all(|k| k.ends_with(".jsonl")), "{keys:?}");
    let total: usize = got.into_iter().map(|(k, b)| decode(&k, b).len()).sum();
    assert_eq!(total, events.len());
}

#[tokio::test]
async fn a_spool_left_by_a_crash_is_uploaded_at_the_next_start() {
    let Some(endpoint) = server().await else {
        return;
    };
    let bucket = unique("crash");
    create_bucket(&endpoint, &bucket).await;
    let spool = tempfile::tempdir().unwrap();
    let options = S3Options::new(&bucket)
        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
        .with_spool_dir(spool.path());
    let events = feeder_core::testing::sample_events("crash", 30);
    {
        let mut w = S3Writer::connect(options.clone()).await.unwrap();
        w.write(&events).await.unwrap();
        // Dropped without close: the batch is only in the spool.
    }
    // A torn line, as a crash in the middle of a write leaves.
    let active = spool.path().join("active/trades/crash/BTC-USD/2024-01-02");
    let file = std::fs::read_dir(&active)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"{\"type\":\"tra")
        .unwrap();
    let mut w = S3Writer::connect(options).await.unwrap();
    w.close().await.unwrap();
    let total: usize = objects(&*direct(&endpoint, &bucket))
        .await
        .into_iter()
        .map(|(k, b)| decode(&k, b).len())
        .sum();
    assert_eq!(total, events.len());
}

use std::io::Write as _;

/// A trade of `symbol` on exchange `resume` with a numeric id, at `at` (RFC 3339).
fn trade(symbol: &str, id: u64, at: &str) -> Event {
    let at = feeder_core::model::Timestamp::parse_rfc3339(at).unwrap();
    Event::Trade(feeder_core::model::Trade {
        exchange: Arc::from("resume"),
        symbol: feeder_core::model::Symbol::parse(symbol).unwrap(),
        trade_id: feeder_core::model::TradeId::from_u64(id),
        price: "100.5".parse().unwrap(),
        amount: "0.25".parse().unwrap(),
        side: feeder_core::model::Side::Buy,
        timestamp: at,
        received_at: at,
    })
}

fn symbol(s: &str) -> feeder_core::model::Symbol {
    feeder_core::model::Symbol::parse(s).unwrap()
}

/// Trades of BTC-USD over two days, the newest (id 30) not written last: a late trade of the
/// first day and an older one of the second day follow it.
fn two_days() -> Vec<Event> {
    vec![
        trade("BTC-USD", 10, "2024-03-01T10:00:00Z"),
        trade("BTC-USD", 11, "2024-03-01T10:00:01Z"),
        trade("BTC-USD", 29, "2024-03-02T09:00:00Z"),
        trade("BTC-USD", 30, "2024-03-02T09:00:01Z"),
        trade("BTC-USD", 12, "2024-03-01T23:59:59Z"),
        trade("BTC-USD", 28, "2024-03-02T08:59:59Z"),
        trade("ETH-USDT", 5, "2024-03-01T00:00:00Z"),
    ]
}

async fn resume_bucket(endpoint: &url::Url, name: &str) -> (String, tempfile::TempDir) {
    let bucket = unique(name);
    create_bucket(endpoint, &bucket).await;
    (bucket, tempfile::tempdir().unwrap())
}

fn resume_options(endpoint: &url::Url, bucket: &str, spool: &std::path::Path) -> S3Options {
    S3Options::new(bucket)
        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
        .with_prefix("feed")
        .with_spool_dir(spool)
}

async fn point(w: &mut S3Writer, sym: &str) -> Option<String> {
    w.resume_point("resume", &symbol(sym))
        .await
        .unwrap()
        .map(|c| c.trade_id.as_str().to_string())
}

async fn resume_from_objects_only(format: S3Format) {
    let Some(endpoint) = server().await else {
        return;
    };
    let (bucket, spool) = resume_bucket(&endpoint, "resume-objects").await;
    let options = resume_options(&endpoint, &bucket, spool.path()).with_format(format);
    let mut w = S3Writer::connect(options.clone()).await.unwrap();
    w.write(&two_days()).await.unwrap();
    w.close().await.unwrap();
    drop(w);
    assert!(conformance_support::read_tree(spool.path()).is_empty());

    // A fresh writer with an empty spool of its own: only the bucket can tell.
    let other = tempfile::tempdir().unwrap();
    let mut w = S3Writer::connect(options.with_spool_dir(other.path()))
        .await
        .unwrap();
    assert_eq!(point(&mut w, "BTC-USD").await.as_deref(), Some("30"));
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("5"));
    assert_eq!(point(&mut w, "SOL-USD").await, None);
    assert_eq!(
        w.resume_point("unknown-venue", &symbol("BTC-USD"))
            .await
            .unwrap(),
        None
    );
    w.close().await.unwrap();
}

#[tokio::test]
async fn the_resume_point_comes_from_the_newest_jsonl_object() {
    resume_from_objects_only(S3Format::Jsonl).await;
}

#[tokio::test]
async fn the_resume_point_comes_from_the_newest_parquet_object() {
    resume_from_objects_only(S3Format::Parquet).await;
}

#[tokio::test]
async fn the_resume_point_comes_from_the_spool_before_anything_is_uploaded() {
    let Some(endpoint) = server().await else {
        return;
    };
    let (bucket, spool) = resume_bucket(&endpoint, "resume-spool").await;
    let options = resume_options(&endpoint, &bucket, spool.path());
    {
        // Objects are completed after ten minutes, at 64 MiB, or when their stream moves to
        // a later day: one day per stream stays in `active/`.
        let one_day: Vec<Event> = two_days()
            .into_iter()
            .filter(|e| e.symbol().as_str() == "ETH-USDT" || e.time().unix_secs() >= 1_709_337_600)
            .collect();
        assert_eq!(one_day.len(), 4);
        let mut w = S3Writer::connect(options.clone()).await.unwrap();
        w.write(&one_day).await.unwrap();
        assert!(objects(&*direct(&endpoint, &bucket)).await.is_empty());
        assert_eq!(point(&mut w, "BTC-USD").await.as_deref(), Some("30"));
        assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("5"));
        assert_eq!(point(&mut w, "SOL-USD").await, None);
        // Dropped without close, as a crash leaves it: the spool alone holds the trades.
    }
    assert!(objects(&*direct(&endpoint, &bucket)).await.is_empty());
    // A torn line after the newest trade, as a crash in the middle of a write leaves.
    let dir = spool.path().join("active/trades/resume/BTC-USD/2024-03-02");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(
            b"{\"type\":\"trade\",\"exchange\":\"resume\",\"symbol\":\"BTC-USD\",\"trade_id\":\"99",
        )
        .unwrap();
    // The next start answers the same whether or not its uploader got there first.
    let mut w = S3Writer::connect(options).await.unwrap();
    assert_eq!(point(&mut w, "BTC-USD").await.as_deref(), Some("30"));
    w.close().await.unwrap();
}

#[tokio::test]
async fn the_newer_of_spool_and_objects_is_the_resume_point() {
    let Some(endpoint) = server().await else {
        return;
    };
    let (bucket, spool) = resume_bucket(&endpoint, "resume-both").await;
    let options = resume_options(&endpoint, &bucket, spool.path());
    let mut w = S3Writer::connect(options.clone()).await.unwrap();
    w.write(&two_days()).await.unwrap();
    w.close().await.unwrap();
    drop(w);

    let mut w = S3Writer::connect(options).await.unwrap();
    // Spooled only: newer than the objects for BTC-USD, older for ETH-USDT (a late trade
    // of a day the bucket already holds a newer one of).
    w.write(&[
        trade("BTC-USD", 31, "2024-03-02T09:00:02Z"),
        trade("BTC-USD", 32, "2024-03-03T00:00:01Z"),
        trade("ETH-USDT", 4, "2024-02-29T23:00:00Z"),
    ])
    .await
    .unwrap();
    let stored = objects(&*direct(&endpoint, &bucket)).await;
    assert!(
        stored.iter().all(|(k, _)| !k.contains("2024-03-03")),
        "{stored:?}"
    );
    assert_eq!(point(&mut w, "BTC-USD").await.as_deref(), Some("32"));
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("5"));
    w.close().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_newest_object_stops_the_start_naming_its_key() {
    let Some(endpoint) = server().await else {
        return;
    };
    let (bucket, spool) = resume_bucket(&endpoint, "resume-bad").await;
    let options = resume_options(&endpoint, &bucket, spool.path());
    let mut w = S3Writer::connect(options.clone()).await.unwrap();
    w.write(&two_days()).await.unwrap();
    w.close().await.unwrap();
    drop(w);
    // Newer than any part the writer names: 9… sorts after every nanosecond time of now.
    let bad = "feed/trades/resume/BTC-USD/2024-03-02/9999999999999999999-0000.jsonl";
    direct(&endpoint, &bucket)
        .put(
            &object_store::path::Path::from(bad),
            object_store::PutPayload::from_static(b"this is not an event\n"),
        )
        .await
        .unwrap();
    let mut w = S3Writer::connect(options).await.unwrap();
    let err = w
        .resume_point("resume", &symbol("BTC-USD"))
        .await
        .unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    assert!(err.to_string().contains(bad), "{err}");
    // Other streams are not concerned.
    assert_eq!(point(&mut w, "ETH-USDT").await.as_deref(), Some("5"));
    w.close().await.unwrap();
}

#[tokio::test]
async fn plain_http_to_a_remote_endpoint_is_refused_before_any_io() {
    let options = S3Options::new("b").with_endpoint("http://198.51.100.7:9000");
    let err = S3Writer::connect(options).await.unwrap_err();
    assert!(!err.is_retriable());
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains("loopback"), "{chain}");
}

#[tokio::test]
async fn a_missing_bucket_refuses_to_start_naming_it_and_leaves_no_spool_behind() {
    let Some(endpoint) = server().await else {
        return;
    };
    let bucket = unique("never-created");
    let spool = tempfile::tempdir().unwrap();
    let options = S3Options::new(&bucket)
        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
        .with_spool_dir(spool.path().join("spool"));
    let err = S3Writer::connect(options).await.unwrap_err();
    // Terminal: the feeder refuses to start instead of reporting a writer that fails every
    // batch.
    assert!(!err.is_retriable(), "{err}");
    let chain = feeder_core::writer::ErrorChain(&err).to_string();
    assert!(chain.contains(&format!("s3://{bucket}")), "{chain}");
    assert!(chain.contains("check the bucket"), "{chain}");
    // The check comes before the spool is made, so nothing waits there for a bucket that
    // does not exist.
    assert!(!spool.path().join("spool").exists());
}
