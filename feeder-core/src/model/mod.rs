//! The data model: what a trade, a candle and an event are, exactly.
//!
//! Prices and amounts are [`Decimal`](rust_decimal::Decimal)s parsed from the venue's text,
//! never `f64`. Times are [`Timestamp`]s with nanosecond resolution that keep the venue's
//! precision. The serde form of [`Event`] is the JSON lines contract of the project.

mod interval;
mod json;
mod symbol;
mod time;
mod trade;

pub use interval::{format_duration, parse_duration, serde_duration, DurationError, Interval};
pub use json::{write_json_line, write_json_str};
pub use symbol::{Symbol, SymbolError};
pub use time::{utc_date, Timestamp, TimestampError};
pub use trade::{parse_decimal, Candle, DecimalError, Event, Gap, GapReason, Side, Trade, TradeId};

#[cfg(test)]
mod contract_tests {
    use super::*;

    const TRADE: &str = r#"{"type":"trade","exchange":"bitstamp","symbol":"BTC-USD","trade_id":"345612","price":"43210.12","amount":"0.05","side":"buy","timestamp":"2024-01-02T03:04:05.123456Z","received_at":"2024-01-02T03:04:05.130201Z"}"#;
    const CANDLE: &str = r#"{"type":"candle","exchange":"bitstamp","symbol":"BTC-USD","interval":"30m","open_time":"2024-01-02T03:00:00Z","close_time":"2024-01-02T03:30:00Z","open":"43200","high":"43250.5","low":"43190","close":"43210.12","volume":"12.5","trades":431}"#;

    #[test]
    fn json_contract_round_trips_byte_for_byte() {
        for line in [TRADE, CANDLE] {
            let ev: Event = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&ev).unwrap(), line);
        }
    }

    #[test]
    fn json_contract_fields_have_their_meaning() {
        let Event::Trade(t) = serde_json::from_str(TRADE).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.side, Side::Buy);
        assert_eq!(t.price, parse_decimal("43210.12").unwrap());
        assert_eq!(t.timestamp.digits(), 6);
        assert_eq!(t.symbol.base(), "BTC");
        let Event::Candle(c) = serde_json::from_str(CANDLE).unwrap() else {
            panic!("not a candle")
        };
        assert_eq!(c.interval, Interval::M30);
        assert_eq!(c.trades, 431);
        assert_eq!(c.revision, 0);
    }

    #[test]
    fn revised_candles_say_so() {
        let Event::Candle(mut c) = serde_json::from_str(CANDLE).unwrap() else {
            panic!("not a candle")
        };
        c.revision = 2;
        let line = serde_json::to_string(&Event::Candle(c.clone())).unwrap();
        assert!(line.ends_with(r#""trades":431,"revision":2}"#), "{line}");
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            Event::Candle(c)
        );
    }

    #[test]
    fn incomplete_candles_say_so_and_complete_ones_say_nothing() {
        let Event::Candle(mut c) = serde_json::from_str(CANDLE).unwrap() else {
            panic!("not a candle")
        };
        assert!(c.complete, "a candle without the field is complete");
        c.complete = false;
        c.revision = 1;
        let line = serde_json::to_string(&Event::Candle(c.clone())).unwrap();
        assert!(
            line.ends_with(r#""trades":431,"revision":1,"complete":false}"#),
            "{line}"
        );
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            Event::Candle(c)
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        let extra = TRADE.replace(r#""side":"buy""#, r#""side":"buy","x":1"#);
        assert!(serde_json::from_str::<Event>(&extra).is_err());
        let bad_side = TRADE.replace(r#""side":"buy""#, r#""side":"long""#);
        assert!(serde_json::from_str::<Event>(&bad_side).is_err());
        let bad_sym = TRADE.replace("BTC-USD", "btcusd");
        assert!(serde_json::from_str::<Event>(&bad_sym).is_err());
    }
}
