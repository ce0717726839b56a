//! The conformance suite against the `file` writer in every format. The stores with a
//! server run it in their own test files (postgres.rs, kafka.rs, s3.rs).
//!
//! The replay check (reading a stream back, `conformance_support::replay`) runs here for
//! every writer that can run without a service of its own, and for PostgreSQL.

mod conformance_support;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use conformance_support::replay::{check_events, check_replay, replay, Dataset, Feed};
use conformance_support::{env_or, missing, reachable, resolve, unique};
use feeder_core::model::Event;
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::WriteError;
use feeder_writers::{
    FileFormat, FileOptions, FileWriter, LogWriter, PostgresOptions, PostgresWriter, StdoutWriter,
};

struct FileTarget {
    dir: tempfile::TempDir,
    format: FileFormat,
}

#[async_trait]
impl ConformanceTarget for FileTarget {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        let options = FileOptions::new(self.dir.path()).with_format(self.format);
        Ok(Box::new(FileWriter::open(options)?))
    }

    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        Ok(conformance_support::read_tree(self.dir.path()))
    }

    fn keyed(&self) -> bool {
        false
    }

    async fn build_broken(&self) -> Option<Result<Box<dyn Writer>, WriteError>> {
        // A path that is a regular file cannot be the writer's directory.
        let file = self.dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let options = FileOptions::new(file.join("sub")).with_format(self.format);
        Some(FileWriter::open(options).map(|w| Box::new(w) as Box<dyn Writer>))
    }
}

async fn conform(format: FileFormat) {
    let target = FileTarget {
        dir: tempfile::tempdir().unwrap(),
        format,
    };
    let report = run_conformance(&target)
        .await
        .unwrap_or_else(|e| panic!("{format:?}: {e}"));
    assert_eq!(report.passed().len(), 5, "{report}");
    assert_eq!(
        report
            .checks
            .iter()
            .find(|(n, _)| *n == "outage")
            .unwrap()
            .1,
        Outcome::Skipped("the target cannot take its store down")
    );
}

#[tokio::test]
async fn the_jsonl_file_writer_conforms() {
    conform(FileFormat::Jsonl).await;
}

#[tokio::test]
async fn the_csv_file_writer_conforms() {
    conform(FileFormat::Csv).await;
}

#[tokio::test]
async fn the_parquet_file_writer_conforms() {
    conform(FileFormat::Parquet).await;
}

#[tokio::test]
async fn the_file_writer_reads_back_a_stream_in_every_format() {
    for format in [FileFormat::Jsonl, FileFormat::Csv, FileFormat::Parquet] {
        let target = FileTarget {
            dir: tempfile::tempdir().unwrap(),
            format,
        };
        check_replay(&target, Feed::Data)
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
    }
}

/// A writer built anew for each step, over nothing but itself.
struct Plain(fn() -> Box<dyn Writer>);

#[async_trait]
impl ConformanceTarget for Plain {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        Ok((self.0)())
    }
    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        Ok(Vec::new())
    }
    fn keyed(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn writers_that_cannot_read_back_keep_no_resume_point() {
    check_replay(&Plain(|| Box::new(LogWriter::new())), Feed::Data)
        .await
        .unwrap_or_else(|e| panic!("log: {e}"));
    // Its lines would only clutter the test's output: nothing is written.
    check_replay(&Plain(|| Box::new(StdoutWriter::new())), Feed::Nothing)
        .await
        .unwrap_or_else(|e| panic!("stdout: {e}"));
}

/// PostgreSQL at `FEEDER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
/// or `None` (after the skip note, or failing under `CI`) when nothing answers.
async fn postgres_url() -> Option<String> {
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
        Some(a) if reachable(a).await => Some(raw),
        _ => {
            missing("PostgreSQL", &format!("nothing answers at {addr}"));
            None
        }
    }
}

/// A PostgreSQL writer on tables of its own, dropped at the end.
struct PgTables {
    url: String,
    trades: String,
    candles: String,
}

impl PgTables {
    fn new(url: String, prefix: &str) -> Self {
        Self {
            trades: unique(&format!("{prefix}_trades")).replace('-', "_"),
            candles: unique(&format!("{prefix}_candles")).replace('-', "_"),
            url,
        }
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions::new(&self.url).with_tables(&self.trades, &self.candles)
    }

    async fn drop_tables(&self) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        for t in [
            &self.trades,
            &self.candles,
            &format!("{}_gaps", self.trades),
        ] {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\""))
                .await
                .unwrap();
        }
        drop(client);
        driver.await.unwrap().unwrap();
    }
}

#[async_trait]
impl ConformanceTarget for PgTables {
    async fn build(&self) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(PostgresWriter::connect(self.options()).await?))
    }
    async fn read_back(&self) -> Result<Vec<Event>, BoxError> {
        Ok(Vec::new())
    }
    fn keyed(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_postgres_writer_reads_back_a_stream() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let tables = PgTables::new(url, "replay");
    let result = check_replay(&tables, Feed::Data).await;
    tables.drop_tables().await;
    result.unwrap();
}

/// The day file (or, for Parquet, the journal of day 3's part still being written) that
/// holds the trades of BTC-USD on `date`.
fn trades_file(root: &Path, format: FileFormat, date: &str) -> PathBuf {
    let dir = root
        .join("trades")
        .join(conformance_support::replay::EXCHANGE);
    let dir = dir.join("BTC-USD");
    match format {
        FileFormat::Parquet => dir.join(format!("{date}.part-0001.parquet.wal")),
        _ => dir.join(format!("{date}.{}", format.extension())),
    }
}

/// Writes the data set and leaves the writer open (for Parquet, day 3 stays a journal).
async fn written(format: FileFormat) -> (tempfile::TempDir, Box<dyn Writer>, Dataset) {
    let data = Dataset::new();
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions::new(dir.path()).with_format(format);
    let mut w: Box<dyn Writer> = Box::new(FileWriter::open(options).unwrap());
    for batch in data.events() {
        w.write(std::slice::from_ref(batch)).await.unwrap();
    }
    (dir, w, data)
}

#[tokio::test]
async fn a_torn_last_line_is_not_read_back_and_not_an_error() {
    for format in [FileFormat::Jsonl, FileFormat::Csv, FileFormat::Parquet] {
        let (dir, mut w, data) = written(format).await;
        let path = trades_file(dir.path(), format, "2024-03-03");
        // The start of a line for a trade the replay would hand back, cut short by a crash.
        let mut bytes = std::fs::read(&path).unwrap();
        let torn =
            b"{\"type\":\"trade\",\"exchange\":\"replayx\",\"symbol\":\"BTC-USD\",\"trade_id\":\"1";
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        let events = replay(&mut *w, &data)
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"))
            .unwrap();
        check_events(&events, &data).unwrap_or_else(|e| panic!("{format:?}: {e}"));
    }
}

#[tokio::test]
async fn an_unreadable_line_in_the_middle_fails_the_replay_and_names_it() {
    for format in [FileFormat::Jsonl, FileFormat::Csv, FileFormat::Parquet] {
        let (dir, mut w, data) = written(format).await;
        // Day 3 is within the replayed span; its third line is damaged.
        let path = trades_file(dir.path(), format, "2024-03-03");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "not an event");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = w
            .replay(
                conformance_support::replay::EXCHANGE,
                &conformance_support::replay::btc(),
                data.from,
                &data.upto,
                &mut drop,
            )
            .await
            .expect_err("a damaged line must fail the replay");
        assert!(!err.is_retriable(), "{format:?}: {err:?}");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.contains(&path.display().to_string()) && chain.contains("line 3"),
            "{format:?}: {chain}"
        );
    }
}
