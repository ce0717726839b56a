//! The conformance suite against the `file` writer in every format. The stores with a
//! server run it in their own test files (postgres.rs, kafka.rs, s3.rs).

mod conformance_support;

use async_trait::async_trait;
use feeder_core::model::Event;
use feeder_core::testing::{run_conformance, BoxError, ConformanceTarget, Outcome};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use feeder_writers::{FileFormat, FileOptions, FileWriter};

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
