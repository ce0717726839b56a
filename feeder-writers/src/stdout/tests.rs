use std::sync::{Arc, Mutex};

use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};

use super::*;

/// A sink that records what it was given, write call by write call.
#[derive(Clone, Default)]
struct Recorder {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    flushes: Arc<Mutex<usize>>,
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
}

/// A sink whose reader has gone away.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that fails once with an ordinary I/O error, then works.
struct FailsOnce(bool, Recorder);

impl Write for FailsOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.0 {
            self.0 = true;
            return Err(io::Error::other("device hiccup"));
        }
        self.1.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.1.flush()
    }
}

fn trades(n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::Trade(Trade {
                exchange: Arc::from("bitstamp"),
                symbol: Symbol::parse("BTC-USD").unwrap(),
                trade_id: TradeId::from_u64(i),
                price: "43210.12".parse().unwrap(),
                amount: "0.05".parse().unwrap(),
                side: Side::Buy,
                timestamp: Timestamp::from_unix_micros(1_704_164_645_123_456 + i as i64),
                received_at: Timestamp::from_unix_micros(1_704_164_645_130_201),
            })
        })
        .collect()
}

#[tokio::test]
async fn a_batch_is_one_write_and_one_flush_of_json_lines() {
    let rec = Recorder::default();
    let mut w = StdoutWriter::to_output(Box::new(rec.clone()));
    let batch = trades(50);
    w.write(&batch).await.unwrap();
    w.write(&batch[..3]).await.unwrap();
    w.write(&[]).await.unwrap();
    let writes = rec.writes.lock().unwrap();
    assert_eq!(writes.len(), 2);
    assert_eq!(*rec.flushes.lock().unwrap(), 2);
    let text = String::from_utf8(writes[0].clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50);
    for (line, event) in lines.iter().zip(&batch) {
        assert_eq!(*line, serde_json::to_string(event).unwrap());
    }
    assert_eq!(writes[1].iter().filter(|&&b| b == b'\n').count(), 3);
}

#[tokio::test]
async fn a_broken_pipe_is_terminal_not_a_panic() {
    let mut w = StdoutWriter::to_output(Box::new(ClosedPipe));
    let err = w.write(&trades(2)).await.unwrap_err();
    assert!(!err.is_retriable(), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");
    // It stays failed, and says so again, rather than panicking.
    assert!(!w.write(&trades(1)).await.unwrap_err().is_retriable());
}

#[tokio::test]
async fn other_io_errors_are_retried() {
    let rec = Recorder::default();
    let mut w = StdoutWriter::to_output(Box::new(FailsOnce(false, rec.clone())));
    let batch = trades(4);
    let err = w.write(&batch).await.unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    assert!(rec.writes.lock().unwrap().is_empty());
    w.write(&batch).await.unwrap();
    assert_eq!(rec.writes.lock().unwrap().len(), 1);
}
