//! The `capture` option of an exchange: a raw record of what the venue sent and was sent.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ByteSize;
use crate::model::serde_duration;

/// Where and how an exchange records its raw traffic (every WebSocket frame received and
/// sent, every REST request and answer), for replay with `crypto-feeder replay`.
///
/// ```yaml
/// capture: { path: /var/lib/feeder/capture, rotate: 1h, compression: zstd }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The directory of the capture files, created if missing. Files are named
    /// `<exchange>-<UTC start>-<n>.fcap[.zst]`, so several exchanges may share it.
    pub path: PathBuf,
    /// A new file is started after this long (default 1h).
    #[serde(default = "default_rotate", with = "serde_duration")]
    pub rotate: Duration,
    /// `zstd` (default) or `none`.
    #[serde(default)]
    pub compression: CaptureCompression,
    /// Stop capturing (with an error in the log, the feed going on) once the files of this
    /// run hold this many bytes. Unset: no limit but the disk's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// Records waiting for the capture's writer thread; when it is full, records are dropped
    /// and counted rather than slowing the feed (default 65536).
    #[serde(default = "default_queue")]
    pub queue: usize,
}

/// How capture files are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureCompression {
    /// zstd, one frame per block of records written together.
    #[default]
    Zstd,
    /// Plain records.
    None,
}

fn default_rotate() -> Duration {
    Duration::from_secs(3600)
}

fn default_queue() -> usize {
    65_536
}

impl CaptureConfig {
    /// Capture into `path` with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            rotate: default_rotate(),
            compression: CaptureCompression::default(),
            max_size: None,
            queue: default_queue(),
        }
    }

    /// What is wrong with these settings, if anything (the key and why).
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        if self.rotate < Duration::from_secs(1) {
            return Some(("capture.rotate", "must be at least 1s".into()));
        }
        if self.queue == 0 {
            return Some(("capture.queue", "must be at least 1".into()));
        }
        if self.path.as_os_str().is_empty() {
            return Some(("capture.path", "must not be empty".into()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ByteSize, CaptureCompression, Config};
    use std::time::Duration;

    fn config(capture: &str) -> String {
        format!(
            "exchanges:
  - name: coinbase
    symbols: [BTC-USD]
    capture: {capture}
writers:
  - type: log
"
        )
    }

    #[test]
    fn capture_reads_with_its_defaults() {
        let c = Config::from_yaml_str(&config("{ path: /tmp/cap }")).unwrap();
        let cap = c.exchanges[0].capture.clone().unwrap();
        assert_eq!(cap.rotate, Duration::from_secs(3600));
        assert_eq!(cap.compression, CaptureCompression::Zstd);
        assert_eq!(cap.max_size, None);
        let c = Config::from_yaml_str(&config(
            "{ path: /tmp/cap, rotate: 10m, compression: none, max_size: 1GiB }",
        ))
        .unwrap();
        let cap = c.exchanges[0].capture.clone().unwrap();
        assert_eq!(cap.rotate, Duration::from_secs(600));
        assert_eq!(cap.compression, CaptureCompression::None);
        assert_eq!(cap.max_size, Some(ByteSize(1 << 30)));
    }

    #[test]
    fn bad_capture_settings_name_their_key() {
        for (capture, named) in [
            ("{ path: /tmp/cap, rotat: 1h }", "rotat"),
            ("{ path: /tmp/cap, compression: lz4 }", "lz4"),
            ("{ path: /tmp/cap, rotate: 10ms }", "capture.rotate"),
            ("{ path: /tmp/cap, queue: 0 }", "capture.queue"),
        ] {
            let err = Config::from_yaml_str(&config(capture))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named) && err.contains("line 4"), "{err}");
        }
    }
}
