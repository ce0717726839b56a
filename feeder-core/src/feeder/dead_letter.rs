//! The dead-letter output: trades turned away before the pipeline, with why, as JSON lines.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::model::{write_json_line, Event};
use crate::pipeline::Rejected;

/// Appends one line per turned-away trade to `path` until every sender is gone:
/// `{"type":"rejected","reason":"non_positive_price","trade":{...}}`, the trade in the JSON
/// lines contract. Returns how many lines were written; a file that cannot be written is
/// logged at error level once, and what follows is counted by the sinks as before.
pub(crate) async fn run(mut rx: mpsc::Receiver<Rejected>, path: PathBuf) -> u64 {
    let mut file = match open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the rejected-trades file; rejected trades are only counted");
            while rx.recv().await.is_some() {}
            return 0;
        }
    };
    let mut written = 0u64;
    let mut line = Vec::new();
    while let Some(r) = rx.recv().await {
        line.clear();
        encode(&r, &mut line);
        if let Err(e) = file.write_all(&line).await {
            tracing::error!(path = %path.display(), error = %e, "writing the rejected-trades file failed; rejected trades are only counted from here");
            while rx.recv().await.is_some() {}
            break;
        }
        written += 1;
    }
    let _ = file.flush().await;
    written
}

async fn open(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

/// One dead-letter line.
fn encode(r: &Rejected, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"rejected","reason":""#);
    out.extend_from_slice(r.reason.as_str().as_bytes());
    out.extend_from_slice(br#"","trade":"#);
    write_json_line(&Event::Trade(r.trade.clone()), out);
    // The trade's line ends with a newline; the object closes before it.
    out.pop();
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_decimal, Side, Symbol, Timestamp, Trade, TradeId};
    use crate::pipeline::RejectReason;

    fn trade(symbol: &str, id: u64) -> Trade {
        Trade {
            exchange: std::sync::Arc::from("x"),
            symbol: Symbol::parse(symbol).unwrap(),
            trade_id: TradeId::from_u64(id),
            price: parse_decimal("-1").unwrap(),
            amount: parse_decimal("0.5").unwrap(),
            side: Side::Sell,
            timestamp: Timestamp::from_unix_secs(1_700_000_000),
            received_at: Timestamp::from_unix_secs(1_700_000_001),
        }
    }

    #[tokio::test]
    async fn each_rejected_trade_is_a_line_with_its_reason_and_the_trade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead/rejected.jsonl");
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(rx, path.clone()));
        for (id, reason) in [
            (1, RejectReason::NonPositivePrice),
            (2, RejectReason::TimeOutOfWindow),
        ] {
            tx.send(Rejected {
                trade: trade("BTC-USD", id),
                reason,
            })
            .await
            .unwrap();
        }
        drop(tx);
        assert_eq!(task.await.unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "rejected");
        assert_eq!(lines[0]["reason"], RejectReason::NonPositivePrice.as_str());
        assert_eq!(lines[1]["reason"], RejectReason::TimeOutOfWindow.as_str());
        let back: Event =
            serde_json::from_value(lines[1]["trade"].clone()).expect("the trade in the contract");
        assert_eq!(back, Event::Trade(trade("BTC-USD", 2)));
    }
}
