//! An append-only writer that undoes a failed batch: every event goes as a JSON line to one
//! file, and a batch that fails halfway is cut back off the file before the error is
//! returned.
//!
//! The writer contract lets the runner call `write` again with the same batch after an
//! error, so a writer either stores nothing of a failed batch or stores it idempotently. A
//! file can only be appended to, so this writer remembers the file's length before each batch
//! and, on any error, truncates the file back to it: the retry then writes the batch once, not
//! one and a half times.

use std::io::Write as _;
use std::path::PathBuf;

use feeder_core::model::write_json_line;
use feeder_core::prelude::*;
use serde::Deserialize;

/// Options of the `append_log` writer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendLogOptions {
    /// The file to append to (created if absent).
    pub path: PathBuf,
}

/// Appends events as JSON lines to one file, a batch at a time, all or nothing.
#[derive(Debug)]
pub struct AppendLog {
    name: String,
    file: std::fs::File,
    /// The file's length after the last batch that was stored whole: where a failed batch is
    /// cut back to.
    stored_len: u64,
    /// Fails the write of the next batch after this many lines (tests only: a disk that
    /// fills up halfway).
    fail_after: Option<usize>,
}

impl AppendLog {
    /// Opens (or creates) the file at `path` to append to.
    pub fn open(name: &str, path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let stored_len = file.metadata()?.len();
        Ok(Self {
            name: name.to_owned(),
            file,
            stored_len,
            fail_after: None,
        })
    }

    /// Makes the next batch fail after `lines` of its lines are on disk, as a disk that fills
    /// up does.
    pub fn fail_next_batch_after(&mut self, lines: usize) {
        self.fail_after = Some(lines);
    }

    /// Appends every line of `batch` and syncs them, one line per write so that a failure can
    /// leave part of a batch behind (which `write` then undoes).
    fn append(&mut self, batch: &[Event]) -> std::io::Result<()> {
        let fail_after = self.fail_after.take();
        let mut line = Vec::with_capacity(256);
        for (i, event) in batch.iter().enumerate() {
            if fail_after == Some(i) {
                return Err(std::io::Error::other("no space left on the device"));
            }
            line.clear();
            write_json_line(event, &mut line);
            self.file.write_all(&line)?;
        }
        self.file.sync_data()
    }
}

#[async_trait]
impl Writer for AppendLog {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        // Blocking file I/O, in a small example; a real store would use spawn_blocking.
        match self.append(batch) {
            Ok(()) => {
                self.stored_len = self.file.metadata()?.len();
                Ok(())
            }
            Err(e) => {
                // Undo: whatever part of the batch reached the file is cut off, so that the
                // runner's retry of the same batch stores it once.
                self.file.set_len(self.stored_len)?;
                Err(WriteError::Io(e))
            }
        }
    }
}

/// Builds [`AppendLog`]s from `type: append_log` entries.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendLogFactory;

#[async_trait]
impl WriterFactory for AppendLogFactory {
    type Options = AppendLogOptions;

    fn check(&self, options: &AppendLogOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        if options.path.as_os_str().is_empty() {
            return Err(config.option_error("path", "must not be empty"));
        }
        Ok(())
    }

    async fn open(
        &self,
        options: AppendLogOptions,
        config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(AppendLog::open(
            config.display_name(),
            &options.path,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64) -> Event {
        Event::Trade(Trade {
            exchange: Arc::from("toy"),
            symbol: Symbol::parse("BTC-USD").expect("a symbol"),
            trade_id: TradeId::from_u64(id),
            price: Decimal::new(4321012, 2),
            amount: Decimal::ONE,
            side: Side::Buy,
            timestamp: Timestamp::from_unix_millis(1_704_164_645_000 + id as i64),
            received_at: Timestamp::from_unix_millis(1_704_164_646_000),
        })
    }

    fn ids(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("the file")
            .lines()
            .map(|l| {
                let start = l.find("\"trade_id\":\"").expect("a trade id") + 12;
                l[start..].split('"').next().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_that_fails_halfway_is_cut_off_and_its_retry_stored_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("trades.jsonl");
        let mut w = AppendLog::open("append_log", &path).expect("opened");
        w.write(&[trade(1), trade(2)]).await.expect("stored");
        let len = std::fs::metadata(&path).expect("the file").len();

        w.fail_next_batch_after(2);
        let batch = [trade(3), trade(4), trade(5)];
        assert!(w.write(&batch).await.is_err());
        assert_eq!(std::fs::metadata(&path).expect("the file").len(), len);
        assert_eq!(ids(&path), ["1", "2"]);

        w.write(&batch).await.expect("the retry is stored");
        assert_eq!(ids(&path), ["1", "2", "3", "4", "5"]);
    }

    #[tokio::test]
    async fn a_reopened_log_appends_after_what_it_holds() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("trades.jsonl");
        AppendLog::open("a", &path)
            .expect("opened")
            .write(&[trade(1)])
            .await
            .expect("stored");
        let mut w = AppendLog::open("a", &path).expect("reopened");
        w.fail_next_batch_after(0);
        assert!(w.write(&[trade(2)]).await.is_err());
        w.write(&[trade(2)]).await.expect("stored");
        assert_eq!(ids(&path), ["1", "2"]);
    }

    #[test]
    fn an_empty_path_is_refused_naming_the_writer_and_key() {
        let cfg = WriterConfig::new("append_log").with_option("path", "");
        let e = AppendLogFactory
            .validate(&cfg)
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("writers[0] (append_log).path: "), "{e}");
    }
}
