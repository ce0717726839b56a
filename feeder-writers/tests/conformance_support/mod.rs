//! What the store tests share: service addresses from the environment, the skip-or-fail
//! rule for missing services, unique names, and reading files back into events.
#![allow(dead_code)]

pub mod replay;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::{Candle, Event, Interval, Side, Symbol, Timestamp, Trade, TradeId};

/// The value of `var`, or `default`.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Whether a TCP connection to `addr` succeeds within two seconds.
pub async fn reachable(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Called when a service is missing: fails loudly under CI, otherwise prints a note and
/// tells the test to skip.
pub fn missing(service: &str, detail: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{service} is required under CI but {detail} (run .ci/services)");
    }
    eprintln!("SKIPPED: {service} not available ({detail}); set it up with .ci/services");
    true
}

/// A name unique to this run, safe for tables, topics and buckets.
pub fn unique(prefix: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = Timestamp::now().unix_nanos() % 1_000_000_000_000;
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}

/// The first socket address of `host:port`.
pub async fn resolve(host_port: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(host_port).await.ok()?.next()
}

/// Every event in the files under `root`: `.jsonl`, `.csv` and `.parquet` (journals and
/// other files are ignored).
pub fn read_tree(root: &Path) -> Vec<Event> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            match p.extension().and_then(|e| e.to_str()) {
                Some("jsonl") => out.extend(parse_jsonl(&std::fs::read(&p).unwrap())),
                Some("csv") => out.extend(parse_csv(&std::fs::read_to_string(&p).unwrap())),
                // Only store tests built with Parquet write Parquet files.
                #[cfg(feature = "parquet")]
                Some("parquet") => {
                    out.extend(feeder_writers::file::parquet::read_parquet(&p).unwrap())
                }
                _ => {}
            }
        }
    }
    out
}

/// The events of JSON lines.
pub fn parse_jsonl(bytes: &[u8]) -> Vec<Event> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// The events of a CSV file written by the `file` writer (fields without quotes only).
pub fn parse_csv(text: &str) -> Vec<Event> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let candles = header.contains("interval");
    let gaps = header.contains("after_trade_id");
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let ts = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
            let d = |s: &str| s.parse().unwrap();
            if gaps {
                let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
                Event::Gap(feeder_core::model::Gap {
                    exchange: Arc::from(c[0]),
                    symbol: Symbol::parse(c[1]).unwrap(),
                    after_trade_id: TradeId::new(c[2]),
                    before_trade_id: some(c[3]).map(|s| TradeId::new(&s)),
                    from: ts(c[4]),
                    to: some(c[5]).map(|s| ts(&s)),
                    reason: serde_json::from_value(serde_json::Value::String(c[6].into())).unwrap(),
                })
            } else if candles {
                Event::Candle(Candle {
                    exchange: Arc::from(c[0]),
                    symbol: Symbol::parse(c[1]).unwrap(),
                    interval: Interval::parse(c[2]).unwrap(),
                    open_time: ts(c[3]),
                    close_time: ts(c[4]),
                    open: d(c[5]),
                    high: d(c[6]),
                    low: d(c[7]),
                    close: d(c[8]),
                    volume: d(c[9]),
                    trades: c[10].parse().unwrap(),
                    revision: c[11].parse().unwrap(),
                    complete: c[12].parse().unwrap(),
                })
            } else {
                Event::Trade(Trade {
                    exchange: Arc::from(c[0]),
                    symbol: Symbol::parse(c[1]).unwrap(),
                    trade_id: TradeId::new(c[2]),
                    price: d(c[3]),
                    amount: d(c[4]),
                    side: match c[5] {
                        "buy" => Side::Buy,
                        "sell" => Side::Sell,
                        _ => Side::Unknown,
                    },
                    timestamp: ts(c[6]),
                    received_at: ts(c[7]),
                })
            }
        })
        .collect()
}
