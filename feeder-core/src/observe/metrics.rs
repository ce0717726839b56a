//! Prometheus metrics of a [`Status`].
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: it has no global
//! registry (a library must not install one behind its user's back), and its [`Collector`]
//! reads values at scrape time. The feeder's tasks already keep every count in plain atomics
//! for its summary; the collector reads those when scraped, so metrics add nothing to the
//! path of a trade (a `metrics`-facade recorder would add a second count per event, behind a
//! global). A program with its own registry registers a [`MetricsCollector`] in it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Monitor, Status, LATENCY_BUCKETS};

/// A `prometheus-client` collector of a feeder's metrics, read from its [`Monitor`] at each
/// scrape.
#[derive(Debug, Clone)]
pub struct MetricsCollector {
    monitor: Monitor,
}

impl MetricsCollector {
    /// Collects from `monitor`.
    pub fn new(monitor: Monitor) -> Self {
        Self { monitor }
    }
}

impl Collector for MetricsCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_status(&self.monitor.status(), encoder)
    }
}

/// The metrics of `status` in the Prometheus text format (version 0.0.4).
pub fn encode_metrics(status: &Status) -> String {
    #[derive(Debug)]
    struct Once(Status);
    impl Collector for Once {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_status(&self.0, encoder)
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Once(status.clone())));
    let mut out = String::with_capacity(8 << 10);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// One family: a name, its help and unit, and a value per label set.
fn family<L, F>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, F)>,
) -> Result<(), std::fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    F: Into<Value>,
{
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, v) in rows {
        let fam = m.encode_family(&labels)?;
        match (kind, v.into()) {
            (MetricType::Counter, Value::U(n)) => ConstCounter::new(n).encode(fam)?,
            (MetricType::Counter, Value::F(f)) => ConstCounter::new(f).encode(fam)?,
            (_, Value::U(n)) => {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(fam)?
            }
            (_, Value::F(f)) => ConstGauge::new(f).encode(fam)?,
        }
    }
    Ok(())
}

/// One sample without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    v: impl Into<Value>,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, unit, kind)?;
    match (kind, v.into()) {
        (MetricType::Counter, Value::U(n)) => ConstCounter::new(n).encode(m),
        (MetricType::Counter, Value::F(f)) => ConstCounter::new(f).encode(m),
        (_, Value::U(n)) => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(m),
        (_, Value::F(f)) => ConstGauge::new(f).encode(m),
    }
}

/// A sample's value.
enum Value {
    U(u64),
    F(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::U(n)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::F(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::U(u64::from(b))
    }
}

fn encode_status(s: &Status, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let enc = &mut enc;
    let stream = |x: &super::StreamStatus| {
        [
            ("exchange", x.exchange.to_string()),
            ("symbol", x.symbol.to_string()),
        ]
    };
    let streams = &s.streams;
    macro_rules! per_stream {
        ($name:expr, $help:expr, $unit:expr, $kind:expr, $val:expr) => {
            family(
                enc,
                $name,
                $help,
                $unit,
                $kind,
                streams.iter().map(|x| (stream(x), $val(x))),
            )?
        };
    }
    per_stream!(
        "crypto_feeder_trades",
        "Unique trades passed on to the writers.",
        None,
        Counter,
        |x: &super::StreamStatus| x.trades
    );
    per_stream!(
        "crypto_feeder_duplicates",
        "Trades dropped as already seen.",
        None,
        Counter,
        |x: &super::StreamStatus| x.duplicates
    );
    per_stream!(
        "crypto_feeder_backfilled_trades",
        "Trades recovered over REST.",
        None,
        Counter,
        |x: &super::StreamStatus| x.backfilled
    );
    per_stream!(
        "crypto_feeder_gaps",
        "Holes recorded as gap events.",
        None,
        Counter,
        |x: &super::StreamStatus| x.gaps
    );
    family(
        enc,
        "crypto_feeder_last_trade_age",
        "Time since the venue time of the newest trade passed on.",
        Some(&Unit::Seconds),
        Gauge,
        streams
            .iter()
            .filter_map(|x| Some((stream(x), x.last_trade_age_seconds?))),
    )?;
    family(
        enc,
        "crypto_feeder_watermark_lag",
        "How far the stream's completeness watermark is behind the wall clock (while candles are built).",
        Some(&Unit::Seconds),
        Gauge,
        streams
            .iter()
            .filter_map(|x| Some((stream(x), x.watermark_lag_seconds?))),
    )?;
    per_stream!(
        "crypto_feeder_stream_up",
        "1 while the stream is connected, caught up and fresh.",
        None,
        Gauge,
        |x: &super::StreamStatus| x.ready
    );

    let ex = &s.exchanges;
    macro_rules! per_exchange {
        ($name:expr, $help:expr, $val:expr) => {
            family(
                enc,
                $name,
                $help,
                None,
                Counter,
                ex.iter()
                    .map(|x| ([("exchange", x.name.to_string())], $val(x))),
            )?
        };
    }
    per_exchange!(
        "crypto_feeder_received_trades",
        "Trades received from the exchange, before dedup.",
        |x: &super::ExchangeStatus| x.received
    );
    per_exchange!(
        "crypto_feeder_parse_errors",
        "Payloads that could not be parsed.",
        |x: &super::ExchangeStatus| x.parse_errors
    );
    per_exchange!(
        "crypto_feeder_unrecognized_messages",
        "Messages of a shape the parser does not know.",
        |x: &super::ExchangeStatus| x.unrecognized
    );
    per_exchange!(
        "crypto_feeder_reconnects",
        "Reconnects to the venue.",
        |x: &super::ExchangeStatus| x.reconnects
    );
    per_exchange!(
        "crypto_feeder_exchange_errors",
        "Connection-level failures.",
        |x: &super::ExchangeStatus| x.errors
    );
    per_exchange!(
        "crypto_feeder_exchange_restarts",
        "Restarts of the exchange by the supervisor.",
        |x: &super::ExchangeStatus| x.restarts
    );
    per_exchange!(
        "crypto_feeder_rejected_trades",
        "Trades turned away as impossible (price, amount or time).",
        |x: &super::ExchangeStatus| x.rejected
    );
    per_exchange!(
        "crypto_feeder_quarantined_trades",
        "Trades held back for an id far out of line.",
        |x: &super::ExchangeStatus| x.quarantined
    );

    let w = &s.writers;
    let writer = |x: &super::WriterStatus| [("writer", x.name.to_string())];
    macro_rules! per_writer {
        ($name:expr, $help:expr, $unit:expr, $kind:expr, $val:expr) => {
            family(
                enc,
                $name,
                $help,
                $unit,
                $kind,
                w.iter().map(|x| (writer(x), $val(x))),
            )?
        };
    }
    per_writer!(
        "crypto_feeder_writer_events",
        "Events stored.",
        None,
        Counter,
        |x: &super::WriterStatus| x.events
    );
    per_writer!(
        "crypto_feeder_writer_batches",
        "Batches stored.",
        None,
        Counter,
        |x: &super::WriterStatus| x.batches
    );
    per_writer!(
        "crypto_feeder_writer_errors",
        "Failed writes, flushes and closes.",
        None,
        Counter,
        |x: &super::WriterStatus| x.errors
    );
    per_writer!(
        "crypto_feeder_writer_retries",
        "Retries of failed batches.",
        None,
        Counter,
        |x: &super::WriterStatus| x.retries
    );
    per_writer!(
        "crypto_feeder_writer_dropped_events",
        "Events given up on (full queue under drop, terminal error, shutdown deadline).",
        None,
        Counter,
        |x: &super::WriterStatus| x.dropped
    );
    per_writer!(
        "crypto_feeder_writer_rejected_events",
        "Events the store refused one by one.",
        None,
        Counter,
        |x: &super::WriterStatus| x.rejected
    );
    per_writer!(
        "crypto_feeder_writer_queue_events",
        "Events waiting in the writer's queue.",
        None,
        Gauge,
        |x: &super::WriterStatus| x.queued_events
    );
    per_writer!(
        "crypto_feeder_writer_queue",
        "Estimated size of the events waiting in the writer's queue.",
        Some(&Unit::Bytes),
        Gauge,
        |x: &super::WriterStatus| x.queued_bytes
    );
    per_writer!(
        "crypto_feeder_writer_spill",
        "Size of the spill file not yet replayed.",
        Some(&Unit::Bytes),
        Gauge,
        |x: &super::WriterStatus| x.spill_bytes
    );
    per_writer!(
        "crypto_feeder_writer_up",
        "1 unless the writer has been failing for longer than its retry delay.",
        None,
        Gauge,
        |x: &super::WriterStatus| x.ready
    );
    {
        let mut m = enc.encode_descriptor(
            "crypto_feeder_writer_batch_write_duration",
            "Duration of each write that stored its batch.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for x in w {
            let h = &x.write_latency;
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.buckets.iter().copied())
                .collect();
            let labels = writer(x);
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                h.sum.as_secs_f64(),
                h.count,
                &buckets,
                None,
            )?;
        }
    }

    single(
        enc,
        "crypto_feeder_ready",
        "1 while the feeder is ready (what /health/ready answers 200 to).",
        None,
        Gauge,
        s.ready,
    )?;
    single(
        enc,
        "crypto_feeder_uptime",
        "Time since the feeder started running.",
        Some(&Unit::Seconds),
        Gauge,
        s.uptime_seconds,
    )?;
    if let Some(rss) = s.process.resident_memory_bytes {
        single(
            enc,
            "process_resident_memory",
            "Resident memory size.",
            Some(&Unit::Bytes),
            Gauge,
            rss,
        )?;
    }
    if let Some(cpu) = s.process.cpu_seconds {
        single(
            enc,
            "process_cpu",
            "User and system CPU time spent.",
            Some(&Unit::Seconds),
            Counter,
            cpu,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::ExchangeStats;
    use crate::model::{Symbol, Timestamp};
    use std::sync::Arc;

    #[test]
    fn metrics_follow_the_naming_conventions_and_carry_their_labels() {
        let symbols = [Symbol::parse("BTC-USD").unwrap()];
        let stats = Arc::new(ExchangeStats::for_symbols(&symbols));
        let m = Monitor::new();
        m.watch_exchange("bitstamp", stats.clone());
        m.running();
        stats
            .streams
            .iter()
            .next()
            .unwrap()
            .1
            .passed(7, Timestamp::now());
        ExchangeStats::add(&stats.parse_errors, 2);
        let text = encode_metrics(&m.status());
        assert!(
            text.contains(
                "crypto_feeder_trades_total{exchange=\"bitstamp\",symbol=\"BTC-USD\"} 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE crypto_feeder_trades_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("crypto_feeder_parse_errors_total{exchange=\"bitstamp\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE crypto_feeder_last_trade_age_seconds gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("crypto_feeder_ready 0\n"),
            "no writer, no connection: {text}"
        );
        assert!(
            text.contains("crypto_feeder_stream_up{exchange=\"bitstamp\",symbol=\"BTC-USD\"} 0\n"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
    }
}
