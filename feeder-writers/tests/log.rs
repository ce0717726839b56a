//! The `log` and `stdout` writers through their public API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use feeder_core::config::{Config, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::model::{Event, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::writer::Writer;
use feeder_writers::{LogWriter, LogWriterFactory, StdoutWriterFactory};

/// One captured `tracing` event: target, level and fields as text.
#[derive(Debug, Default)]
struct Record {
    target: String,
    level: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A layer that keeps every event it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Record>>>);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut record = Record {
            target: event.metadata().target().to_owned(),
            level: event.metadata().level().to_string(),
            ..Record::default()
        };
        event.record(&mut record);
        self.0.lock().unwrap().push(record);
    }
}

fn trade(id: u64, exchange: &str) -> Event {
    Event::Trade(Trade {
        exchange: Arc::from(exchange),
        symbol: Symbol::parse("ETH-USD").unwrap(),
        trade_id: TradeId::from_u64(id),
        price: "2300.5".parse().unwrap(),
        amount: "1".parse().unwrap(),
        side: Side::Unknown,
        timestamp: Timestamp::from_unix_millis(1_704_164_645_123),
        received_at: Timestamp::from_unix_millis(1_704_164_645_200),
    })
}

#[tokio::test]
async fn the_log_writer_emits_one_event_per_event_with_its_fields() {
    let captured = Capture::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut w = LogWriter::new();
    let batch = vec![trade(1, "kraken"), trade(2, "kra\"ken")];
    w.write(&batch).await.unwrap();
    assert_eq!(w.name(), "log");

    let records = captured.0.lock().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    for (record, event) in records.iter().zip(&batch) {
        assert_eq!(record.level, "INFO");
        assert_eq!(record.target, "feeder::events");
        let field = |name: &str| record.fields.get(name).map(String::as_str);
        assert_eq!(field("exchange"), Some(event.exchange()));
        assert_eq!(field("symbol"), Some("ETH-USD"));
        assert_eq!(field("type"), Some("trade"));
        let json = serde_json::to_string(event).unwrap();
        assert_eq!(field("json"), Some(json.as_str()));
    }
}

#[test]
fn writers_without_options_reject_any_key_with_its_line() {
    let text = "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: log\n    level: debug\n  - type: stdout\n    pretty: true\n";
    let config = Config::from_yaml_str_with_env(text, &|_| None).unwrap();
    let err = LogWriterFactory
        .validate(&config.writers[0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("level") && err.contains("line 6"), "{err}");
    let err = StdoutWriterFactory
        .validate(&config.writers[1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("pretty") && err.contains("line 8"), "{err}");

    LogWriterFactory
        .validate(&WriterConfig::new("log"))
        .unwrap();
    StdoutWriterFactory
        .validate(&WriterConfig::new("stdout"))
        .unwrap();
}

#[tokio::test]
async fn the_factories_build_named_writers() {
    let w = LogWriterFactory
        .build(&WriterConfig::new("log"))
        .await
        .unwrap();
    assert_eq!(w.name(), "log");
    let w = StdoutWriterFactory
        .build(&WriterConfig::new("stdout"))
        .await
        .unwrap();
    assert_eq!(w.name(), "stdout");
    let bad = WriterConfig::new("log").with_option("x", 1);
    assert!(LogWriterFactory.build(&bad).await.is_err());
}
