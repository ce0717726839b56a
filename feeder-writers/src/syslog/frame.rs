//! RFC 5424 messages and the octet-counting framing of RFC 6587 (section 3.4.1), pure: events
//! in, bytes out.

use feeder_core::model::{write_json_line, Event, Timestamp};

use super::config::Facility;

/// Severity of every message: informational (6).
const SEVERITY_INFO: u8 = 6;

/// The parts of the header that are the same for every message of a writer.
#[derive(Clone, Debug)]
pub(super) struct Header {
    /// `<PRI>1 `: priority and version.
    pri_version: Vec<u8>,
    /// ` HOSTNAME APP-NAME PROCID `, between the timestamp and the MSGID.
    middle: Vec<u8>,
}

impl Header {
    /// A header for `facility` at informational severity. `hostname` and `app_name` must
    /// already be valid header fields (the options' check sees to it).
    pub(super) fn new(facility: Facility, hostname: &str, app_name: &str, procid: u32) -> Self {
        let pri = u16::from(facility.code()) * 8 + u16::from(SEVERITY_INFO);
        Self {
            pri_version: format!("<{pri}>1 ").into_bytes(),
            middle: format!(" {hostname} {app_name} {procid} ").into_bytes(),
        }
    }
}

/// The TIMESTAMP of messages sent now: UTC with microseconds, the finest RFC 5424 allows.
pub(super) fn now() -> Timestamp {
    Timestamp::from_unix_micros(Timestamp::now().unix_nanos().div_euclid(1_000))
}

/// Appends one message to `out`: the header, no structured data (`-`), and the event's JSON
/// line (as the `file` writer writes it) without its newline as MSG. MSGID is the event's
/// type (`trade`, `candle`, `gap`).
pub(super) fn write_message(header: &Header, time: Timestamp, event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(&header.pri_version);
    time.write_rfc3339(out);
    out.extend_from_slice(&header.middle);
    out.extend_from_slice(event.kind().as_bytes());
    out.extend_from_slice(b" - ");
    write_json_line(event, out);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
}

/// Appends `message` to `out` framed by octet counting: its length in bytes, a space, then
/// the message (no trailer).
pub(super) fn write_octet_counted(message: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use feeder_core::model::{Side, Symbol, Trade, TradeId};
    use rust_decimal::Decimal;

    use super::*;

    fn trade() -> Event {
        Event::Trade(Trade {
            exchange: Arc::from("bitstamp"),
            symbol: Symbol::parse("BTC-USD").unwrap(),
            trade_id: TradeId::new("345612"),
            price: Decimal::new(4_321_012, 2),
            amount: Decimal::new(5, 2),
            side: Side::Buy,
            timestamp: Timestamp::parse_rfc3339("2024-01-02T03:04:05.123456Z").unwrap(),
            received_at: Timestamp::parse_rfc3339("2024-01-02T03:04:05.130201Z").unwrap(),
        })
    }

    #[test]
    fn a_trade_is_one_rfc5424_message_with_its_json_line() {
        let header = Header::new(Facility::Local(0), "feeder-1", "crypto-feeder", 4242);
        let time = Timestamp::parse_rfc3339("2024-01-02T03:04:06.000123Z").unwrap();
        let mut out = Vec::new();
        write_message(&header, time, &trade(), &mut out);
        let mut json = Vec::new();
        write_json_line(&trade(), &mut json);
        let expected = format!(
            "<134>1 2024-01-02T03:04:06.000123Z feeder-1 crypto-feeder 4242 trade - {}",
            std::str::from_utf8(&json).unwrap().trim_end()
        );
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        assert!(!out.contains(&b'\n'));
    }

    #[test]
    fn priority_is_facility_times_eight_plus_informational() {
        for (facility, pri) in [
            (Facility::Kern, "<6>"),
            (Facility::User, "<14>"),
            (Facility::Daemon, "<30>"),
            (Facility::Local(7), "<190>"),
        ] {
            let h = Header::new(facility, "h", "a", 1);
            assert!(h.pri_version.starts_with(pri.as_bytes()), "{facility:?}");
            assert!(h.pri_version.ends_with(b">1 "));
        }
    }

    #[test]
    fn octet_counting_prefixes_the_byte_length() {
        let mut out = Vec::new();
        write_octet_counted(b"<14>1 - - - - - - hi", &mut out);
        // A multi-byte character counts its bytes, not its characters.
        write_octet_counted("é".as_bytes(), &mut out);
        write_octet_counted(b"", &mut out);
        assert_eq!(out, "20 <14>1 - - - - - - hi2 é0 ".as_bytes());
    }

    #[test]
    fn now_has_microsecond_precision() {
        let t = now();
        assert_eq!(t.unix_nanos() % 1_000, 0);
        let mut out = Vec::new();
        t.write_rfc3339(&mut out);
        let text = String::from_utf8(out).unwrap();
        // 2024-01-02T03:04:05.123456Z
        assert_eq!(text.len(), 27, "{text}");
        assert!(text.ends_with('Z'));
    }
}
