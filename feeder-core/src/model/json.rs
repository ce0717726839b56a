//! A fast encoder for the JSON lines contract.
//!
//! Writers encode every event they store, so this path avoids serde's generic machinery and
//! any allocation: decimals are written digit by digit and integers through `Display`,
//! straight into the caller's buffer, timestamps through [`Timestamp::write_rfc3339`], strings through a table-free
//! escaper that matches `serde_json` byte for byte. The output is identical to
//! `serde_json::to_string(&event)` followed by `'\n'`, which the tests check over random
//! events.

use std::fmt::Display;
use std::io::Write as _;

use rust_decimal::Decimal;

use super::{Candle, Event, Gap, Interval, Timestamp, Trade};

/// Appends the JSON form of `event` and a `'\n'` to `out`.
///
/// The bytes are exactly those of `serde_json::to_string(event)` plus the newline, without
/// allocating beyond growing `out`.
pub fn write_json_line(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Trade(t) => write_trade(t, out),
        Event::Candle(c) => write_candle(c, out),
        Event::Gap(g) => write_gap(g, out),
    }
    out.push(b'\n');
}

fn write_gap(g: &Gap, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"gap","exchange":"#);
    write_json_str(&g.exchange, out);
    out.extend_from_slice(br#","symbol":"#);
    write_json_str(g.symbol.as_str(), out);
    out.extend_from_slice(br#","after_trade_id":"#);
    write_json_str(g.after_trade_id.as_str(), out);
    out.extend_from_slice(br#","before_trade_id":"#);
    match &g.before_trade_id {
        Some(id) => write_json_str(id.as_str(), out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","from":"#);
    write_time(g.from, out);
    out.extend_from_slice(br#","to":"#);
    match g.to {
        Some(t) => write_time(t, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","reason":""#);
    out.extend_from_slice(g.reason.as_str().as_bytes());
    out.extend_from_slice(br#""}"#);
}

fn write_trade(t: &Trade, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"trade","exchange":"#);
    write_json_str(&t.exchange, out);
    out.extend_from_slice(br#","symbol":"#);
    write_json_str(t.symbol.as_str(), out);
    out.extend_from_slice(br#","trade_id":"#);
    write_json_str(t.trade_id.as_str(), out);
    out.extend_from_slice(br#","price":""#);
    write_decimal(&t.price, out);
    out.extend_from_slice(br#"","amount":""#);
    write_decimal(&t.amount, out);
    out.extend_from_slice(br#"","side":""#);
    out.extend_from_slice(t.side.as_str().as_bytes());
    out.extend_from_slice(br#"","timestamp":"#);
    write_time(t.timestamp, out);
    out.extend_from_slice(br#","received_at":"#);
    write_time(t.received_at, out);
    out.push(b'}');
}

fn write_candle(c: &Candle, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"candle","exchange":"#);
    write_json_str(&c.exchange, out);
    out.extend_from_slice(br#","symbol":"#);
    write_json_str(c.symbol.as_str(), out);
    out.extend_from_slice(br#","interval":""#);
    write_interval(c.interval, out);
    out.extend_from_slice(br#"","open_time":"#);
    write_time(c.open_time, out);
    out.extend_from_slice(br#","close_time":"#);
    write_time(c.close_time, out);
    for (key, value) in [
        (&br#","open":""#[..], &c.open),
        (br#"","high":""#, &c.high),
        (br#"","low":""#, &c.low),
        (br#"","close":""#, &c.close),
        (br#"","volume":""#, &c.volume),
    ] {
        out.extend_from_slice(key);
        write_decimal(value, out);
    }
    out.extend_from_slice(br#"","trades":"#);
    write_display(&c.trades, out);
    // Same rule as the serde form: revision 0 (the first emission) is left out.
    if c.revision != 0 {
        out.extend_from_slice(br#","revision":"#);
        write_display(&c.revision, out);
    }
    // And a complete candle (nearly all of them) leaves `complete` out.
    if !c.complete {
        out.extend_from_slice(br#","complete":false"#);
    }
    out.push(b'}');
}

/// Writes a value's `Display` form into the buffer. Writing into a `Vec` cannot fail, and the
/// `Display` impls used here (decimals, integers) do not fail either.
fn write_display(value: &impl Display, out: &mut Vec<u8>) {
    let _ = write!(out, "{value}");
}

/// Writes a decimal exactly as its `Display` does (plain digits, the scale's fractional
/// digits kept, no exponent) without going through the formatting machinery: this runs twice
/// per trade.
fn write_decimal(d: &Decimal, out: &mut Vec<u8>) {
    let m = d.mantissa();
    if m == 0 && d.is_sign_negative() {
        // Negative zero: leave its spelling to `Display`.
        write_display(d, out);
        return;
    }
    if m < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut v = m.unsigned_abs();
    // Most prices and amounts fit in 64 bits, where division is much cheaper.
    while v > u128::from(u64::MAX) {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let mut v = v as u64;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = &digits[i..];
    let scale = d.scale() as usize;
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

fn write_time(ts: Timestamp, out: &mut Vec<u8>) {
    out.push(b'"');
    ts.write_rfc3339(out);
    out.push(b'"');
}

/// Writes an interval as its serde form does (`30m`, `1h`, `1d`): in the largest unit that
/// divides it. Intervals are whole minutes, so seconds never appear.
fn write_interval(interval: Interval, out: &mut Vec<u8>) {
    let secs = interval.secs();
    let (n, unit) = if secs % 86_400 == 0 {
        (secs / 86_400, b'd')
    } else if secs % 3_600 == 0 {
        (secs / 3_600, b'h')
    } else if secs % 60 == 0 {
        (secs / 60, b'm')
    } else {
        (secs, b's')
    };
    write_display(&n, out);
    out.push(unit);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a quoted JSON string, escaping as `serde_json` does: `"` and `\` with a
/// backslash, the control characters that have a short form (`\b \t \n \f \r`) with it, the
/// other control characters as `\u00XX` in lower-case hex, and everything else (DEL and all
/// non-ASCII text included) as is.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0C => b'f',
            b'\r' => b'r',
            0x00..=0x1F => b'u',
            _ => continue,
        };
        // Everything before `i` is plain; copy it in one go. Escaped bytes are ASCII, so the
        // slices never split a multi-byte character.
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        if short == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0F)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::model::{GapReason, Side, Symbol, TradeId};

    fn encode(event: &Event) -> String {
        let mut out = Vec::new();
        write_json_line(event, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn expected(event: &Event) -> String {
        let mut s = serde_json::to_string(event).unwrap();
        s.push('\n');
        s
    }

    fn trade(exchange: &str, id: &str) -> Trade {
        Trade {
            exchange: Arc::from(exchange),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::new(id),
            price: "43210.12".parse().unwrap(),
            amount: "-0.0500".parse().unwrap(),
            side: Side::Sell,
            timestamp: Timestamp::from_unix_micros(1_704_164_645_123_456),
            received_at: Timestamp::from_unix_nanos(-1, 9),
        }
    }

    #[test]
    fn matches_the_contract_lines() {
        for line in [
            r#"{"type":"trade","exchange":"bitstamp","symbol":"BTC-USD","trade_id":"345612","price":"43210.12","amount":"0.05","side":"buy","timestamp":"2024-01-02T03:04:05.123456Z","received_at":"2024-01-02T03:04:05.130201Z"}"#,
            r#"{"type":"candle","exchange":"bitstamp","symbol":"BTC-USD","interval":"30m","open_time":"2024-01-02T03:00:00Z","close_time":"2024-01-02T03:30:00Z","open":"43200","high":"43250.5","low":"43190","close":"43210.12","volume":"12.5","trades":431}"#,
            r#"{"type":"candle","exchange":"x","symbol":"A-B","interval":"1d","open_time":"2024-01-02T00:00:00Z","close_time":"2024-01-03T00:00:00Z","open":"1","high":"1","low":"1","close":"1","volume":"0","trades":0,"revision":7}"#,
            r#"{"type":"candle","exchange":"x","symbol":"A-B","interval":"1m","open_time":"2021-03-01T00:00:00Z","close_time":"2021-03-01T00:01:00Z","open":"1","high":"1","low":"1","close":"1","volume":"1","trades":1,"complete":false}"#,
            r#"{"type":"candle","exchange":"x","symbol":"A-B","interval":"1m","open_time":"2021-03-01T00:00:00Z","close_time":"2021-03-01T00:01:00Z","open":"1","high":"1","low":"1","close":"1","volume":"1","trades":1,"revision":1,"complete":false}"#,
        ] {
            let ev: Event = serde_json::from_str(line).unwrap();
            assert_eq!(encode(&ev), format!("{line}\n"));
        }
    }

    #[test]
    fn escapes_strings_like_serde_json() {
        let odd = [
            "",
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\ncr\rtab\tbs\x08ff\x0c",
            "\x00\x01\x1f\x7f",
            "héllo ✓ 𝄞",
            "\"\\\"",
            "end\u{1}",
        ];
        for s in odd {
            let ev = Event::Trade(trade(s, s));
            assert_eq!(encode(&ev), expected(&ev), "{s:?}");
        }
    }

    #[test]
    fn every_interval_is_written_like_its_display() {
        for secs in (60..=86_400).step_by(60) {
            let Ok(interval) = Interval::from_secs(secs) else {
                continue;
            };
            let mut out = Vec::new();
            write_interval(interval, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), interval.to_string());
        }
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        // Mantissas beyond 64 bits too: the encoder has a separate path for them.
        let mantissa = prop_oneof![
            any::<i64>().prop_map(i128::from),
            (-(1i128 << 95)..(1i128 << 95)),
        ];
        (mantissa, 0u32..=28, any::<bool>()).prop_map(|(m, scale, neg)| {
            let mut d = Decimal::from_i128_with_scale(m, 0);
            d.set_sign_negative(neg);
            // A scale up to 28 is always valid for a 96-bit mantissa.
            let _ = d.set_scale(scale);
            d
        })
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        // Every i64 of nanoseconds is within years 1677 to 2262.
        (any::<i64>(), 0u8..=9).prop_map(|(n, d)| Timestamp::from_unix_nanos(n, d))
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_-]{0,12}",
            any::<String>(),
            proptest::collection::vec(0u8..0x80, 0..16).prop_map(|v| String::from_utf8(v).unwrap()),
        ]
    }

    fn symbol() -> impl Strategy<Value = Symbol> {
        ("[A-Z0-9]{1,20}", "[A-Z0-9]{1,20}").prop_map(|(b, q)| Symbol::new(&b, &q).unwrap())
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)]
    }

    fn interval() -> impl Strategy<Value = Interval> {
        prop::sample::select(vec![
            60u32, 300, 900, 1_800, 3_600, 7_200, 14_400, 43_200, 86_400,
        ])
        .prop_map(|s| Interval::from_secs(s).unwrap())
    }

    prop_compose! {
        fn any_trade()(
            exchange in text(), symbol in symbol(), id in text(), price in decimal(),
            amount in decimal(), side in side(), ts in timestamp(), rx in timestamp(),
        ) -> Event {
            Event::Trade(Trade {
                exchange: Arc::from(exchange.as_str()),
                symbol,
                trade_id: TradeId::new(&id),
                price,
                amount,
                side,
                timestamp: ts,
                received_at: rx,
            })
        }
    }

    prop_compose! {
        fn any_candle()(
            exchange in text(), symbol in symbol(), interval in interval(),
            open_time in timestamp(), close_time in timestamp(),
            prices in proptest::collection::vec(decimal(), 5),
            trades in any::<u64>(), revision in prop_oneof![Just(0u32), any::<u32>()],
            complete in any::<bool>(),
        ) -> Event {
            Event::Candle(Candle {
                exchange: Arc::from(exchange.as_str()),
                symbol,
                interval,
                open_time,
                close_time,
                open: prices[0],
                high: prices[1],
                low: prices[2],
                close: prices[3],
                volume: prices[4],
                trades,
                revision,
                complete,
            })
        }
    }

    prop_compose! {
        fn any_gap()(
            exchange in text(), symbol in symbol(), after in text(),
            before in proptest::option::of(text()), from in timestamp(),
            to in proptest::option::of(timestamp()),
            reason in prop::sample::select(vec![
                GapReason::VenueLimit, GapReason::BackfillFailed, GapReason::NoBackfill,
            ]),
        ) -> Event {
            Event::Gap(Gap {
                exchange: Arc::from(exchange.as_str()),
                symbol,
                after_trade_id: TradeId::new(&after),
                before_trade_id: before.map(|b| TradeId::new(&b)),
                from,
                to,
                reason,
            })
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn equals_serde_json_for_any_event(
            ev in prop_oneof![any_trade(), any_candle(), any_gap()],
        ) {
            prop_assert_eq!(encode(&ev), expected(&ev));
        }

        #[test]
        fn appends_without_touching_what_is_there(ev in any_trade(), prefix in text()) {
            let mut out = prefix.clone().into_bytes();
            write_json_line(&ev, &mut out);
            prop_assert!(out.starts_with(prefix.as_bytes()));
            let line = &out[prefix.len()..];
            let want = expected(&ev);
            prop_assert_eq!(line, want.as_bytes());
            // Parsing the line back and encoding it again gives the same bytes.
            let back: Event = serde_json::from_slice(line).unwrap();
            let again = encode(&back);
            prop_assert_eq!(again.as_bytes(), line);
        }
    }
}
