//! The on-disk spill buffer in front of a writer whose queue is full.
//!
//! While a store is down its runner cannot drain its queue; once the queue is full, batches go
//! to a file instead of blocking the pipeline (and so the other writers) or being dropped.
//! Order is kept: once anything is spilled, every later batch is spilled too until the runner
//! has replayed the whole file, after which the queue is used again. The file is bounded;
//! when it is full the writer's `when_full` policy applies. A spill left by a previous run is
//! replayed first.
//!
//! Records are length-prefixed JSON lines: `u32 little-endian length`, then the batch as the
//! project's JSON lines contract.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::model::{write_json_line, Event};

/// Settings of a spill buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillSettings {
    /// The spill file.
    pub path: PathBuf,
    /// Largest size of the file; beyond it the writer's `when_full` policy applies.
    pub max_bytes: u64,
}

/// What a push into the spill did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Stored in the file.
    Spilled,
    /// The file is full.
    Full,
}

struct State {
    file: File,
    /// Bytes written (the end of the file).
    len: u64,
    /// Where the next unreplayed record starts.
    read_at: u64,
}

impl State {
    fn active(&self) -> bool {
        self.read_at < self.len
    }
}

/// A spill file shared by a writer's handle (which appends) and its runner (which replays).
pub(crate) struct Spill {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Woken when a batch is spilled (for the runner) and when space is freed (for a blocked
    /// sender).
    pub(crate) spilled: Notify,
    pub(crate) freed: Notify,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Spill {
    /// Opens (or creates) the spill file; what a previous run left in it will be replayed.
    pub(crate) fn open(settings: &SpillSettings) -> io::Result<Arc<Spill>> {
        if let Some(dir) = settings.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&settings.path)?;
        let len = valid_len(&mut file)?;
        file.set_len(len)?;
        if len > 0 {
            tracing::warn!(path = %settings.path.display(), bytes = len, "replaying a spill left by a previous run");
        }
        Ok(Arc::new(Spill {
            path: settings.path.clone(),
            max_bytes: settings.max_bytes,
            state: Mutex::new(State {
                file,
                len,
                read_at: 0,
            }),
            spilled: Notify::new(),
            freed: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of the file not yet replayed.
    pub(crate) fn pending_bytes(&self) -> u64 {
        let s = self.lock();
        s.len - s.read_at
    }

    /// True while the file holds batches not yet replayed: new batches must follow them.
    pub(crate) fn is_active(&self) -> bool {
        self.lock().active()
    }

    /// Appends a batch, unless that would pass the size bound.
    pub(crate) fn push(&self, batch: &[Event]) -> io::Result<Pushed> {
        let mut buf = Vec::with_capacity(batch.len() * 256 + 4);
        buf.extend_from_slice(&[0; 4]);
        for e in batch {
            write_json_line(e, &mut buf);
        }
        let body = u32::try_from(buf.len() - 4)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "batch too large to spill"))?;
        buf[..4].copy_from_slice(&body.to_le_bytes());
        let mut st = self.lock();
        if st.len + buf.len() as u64 > self.max_bytes {
            return Ok(Pushed::Full);
        }
        let at = st.len;
        st.file.seek(SeekFrom::Start(at))?;
        if let Err(e) = st.file.write_all(&buf) {
            // Leave no partial record behind.
            let _ = st.file.set_len(at);
            return Err(e);
        }
        st.len += buf.len() as u64;
        drop(st);
        self.spilled.notify_one();
        Ok(Pushed::Spilled)
    }

    /// The oldest batch not yet replayed, or `None` when the file has been fully replayed (it
    /// is then emptied, and the queue takes over again). A record that cannot be decoded is
    /// counted in the returned skip count and passed over.
    pub(crate) fn pop(&self) -> io::Result<Option<(Vec<Event>, u64)>> {
        let mut st = self.lock();
        if !st.active() {
            if st.len > 0 {
                st.file.set_len(0)?;
                st.len = 0;
                st.read_at = 0;
                drop(st);
                self.freed.notify_waiters();
            }
            return Ok(None);
        }
        let at = st.read_at;
        st.file.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 4];
        st.file.read_exact(&mut head)?;
        let n = u32::from_le_bytes(head) as usize;
        let mut body = vec![0u8; n];
        st.file.read_exact(&mut body)?;
        st.read_at = at + 4 + n as u64;
        drop(st);
        let mut events = Vec::new();
        let mut bad = 0;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) => bad += 1,
            }
        }
        Ok(Some((events, bad)))
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The length of the complete records at the start of `file` (a crash may have torn the last).
fn valid_len(file: &mut File) -> io::Result<u64> {
    let total = file.metadata()?.len();
    let mut at = 0u64;
    let mut head = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    while at + 4 <= total {
        file.read_exact(&mut head)?;
        let n = u64::from(u32::from_le_bytes(head));
        if at + 4 + n > total {
            break;
        }
        at += 4 + n;
        file.seek(SeekFrom::Start(at))?;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_decimal, Side, Symbol, Timestamp, Trade, TradeId};

    fn batch(from: u64, n: u64) -> Vec<Event> {
        (from..from + n)
            .map(|i| {
                Event::Trade(Trade {
                    exchange: Arc::from("x"),
                    symbol: Symbol::parse("BTC-USD").unwrap(),
                    trade_id: TradeId::from_u64(i),
                    price: parse_decimal("1.5").unwrap(),
                    amount: parse_decimal("0.00000001").unwrap(),
                    side: Side::Sell,
                    timestamp: Timestamp::from_unix_micros(1_700_000_000_000_000 + i as i64),
                    received_at: Timestamp::from_unix_micros(1_700_000_000_000_000 + i as i64),
                })
            })
            .collect()
    }

    #[test]
    fn batches_come_back_in_order_across_a_restart_and_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SpillSettings {
            path: dir.path().join("w.spill"),
            max_bytes: 1 << 20,
        };
        let spill = Spill::open(&settings).unwrap();
        assert!(!spill.is_active());
        for k in 0..3 {
            assert_eq!(spill.push(&batch(k * 10, 10)).unwrap(), Pushed::Spilled);
        }
        assert!(spill.is_active());
        drop(spill);
        // A crash in the middle of a fourth record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&settings.path)
            .unwrap();
        f.write_all(&[200, 0, 0, 0, b'{']).unwrap();
        drop(f);

        let spill = Spill::open(&settings).unwrap();
        assert!(spill.is_active(), "a previous run's spill is replayed");
        let mut got = Vec::new();
        while let Some((events, bad)) = spill.pop().unwrap() {
            assert_eq!(bad, 0);
            got.extend(events);
        }
        assert_eq!(got, batch(0, 30));
        assert!(!spill.is_active());
        assert_eq!(
            std::fs::metadata(&settings.path).unwrap().len(),
            0,
            "emptied once replayed"
        );
    }

    #[test]
    fn a_full_spill_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(&SpillSettings {
            path: dir.path().join("w.spill"),
            max_bytes: 4_000,
        })
        .unwrap();
        let mut pushed = 0;
        while spill.push(&batch(pushed * 5, 5)).unwrap() == Pushed::Spilled {
            pushed += 1;
            assert!(pushed < 100, "the bound is never reached");
        }
        assert!(pushed > 0);
        let (first, _) = spill.pop().unwrap().unwrap();
        assert_eq!(first, batch(0, 5));
    }
}
