//! The bodies of the three presets, built from a batch into a reused buffer.

use std::io::Write as _;

use feeder_core::model::{write_json_line, write_json_str, Event, Timestamp};

use super::config::HttpOptions;

/// Appends the batch as JSON lines: the bytes the `file` writer writes.
pub(super) fn ndjson(batch: &[Event], out: &mut Vec<u8>) {
    for event in batch {
        write_json_line(event, out);
    }
}

/// Appends an Elasticsearch `_bulk` body for the events of `batch` at `positions`, in that
/// order: one `index` action and one source line per event.
///
/// Each document has a stable `_id` (see [`document_id`]), so that a batch sent again
/// overwrites what the first try stored. A candle is versioned by its revision
/// (`version_type: external_gte`): a revision older than the one the index holds is refused
/// with a 409 and leaves the newer one in place, whatever the order they arrive in.
pub(super) fn bulk(batch: &[Event], positions: &[usize], options: &HttpOptions, out: &mut Vec<u8>) {
    let mut id = String::new();
    for &i in positions {
        let Some(event) = batch.get(i) else { continue };
        let index = match event {
            Event::Trade(_) => options.trades_index(),
            Event::Candle(_) => options.candle_index(),
            Event::Gap(_) => options.gap_index(),
        };
        out.extend_from_slice(br#"{"index":{"_index":"#);
        write_json_str(index, out);
        out.extend_from_slice(br#","_id":"#);
        id.clear();
        document_id(event, &mut id);
        write_json_str(&id, out);
        if let Event::Candle(c) = event {
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                r#","version":{},"version_type":"external_gte""#,
                c.revision
            );
        }
        out.extend_from_slice(b"}}\n");
        write_json_line(event, out);
    }
}

/// The `_id` of an event's document: `exchange:symbol:trade_id` for a trade,
/// `exchange:symbol:interval:open_time` for a candle (all its revisions share it), and
/// `exchange:symbol:gap:after_trade_id` for a gap (the hole after that trade). Times are
/// RFC 3339 with no more fractional digits than they need, so that one instant always gives
/// one id.
pub(super) fn document_id(event: &Event, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str(event.exchange());
    out.push(':');
    out.push_str(event.symbol().as_str());
    out.push(':');
    // Writing into a String cannot fail.
    let _ = match event {
        Event::Trade(t) => write!(out, "{}", t.trade_id.as_str()),
        Event::Candle(c) => write!(out, "{}:{}", c.interval, canonical(c.open_time)),
        Event::Gap(g) => write!(out, "gap:{}", g.after_trade_id.as_str()),
    };
}

/// The same instant with the fewest fractional digits (0, 3, 6 or 9) that keep it exact.
fn canonical(t: Timestamp) -> Timestamp {
    let n = t.unix_nanos().rem_euclid(1_000_000_000);
    let digits = if n == 0 {
        0
    } else if n % 1_000_000 == 0 {
        3
    } else if n % 1_000 == 0 {
        6
    } else {
        9
    };
    t.with_digits(digits)
}

/// The labels of an event's Loki stream: few values each, never an id or a time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StreamLabels<'a> {
    exchange: &'a str,
    symbol: &'a str,
    kind: &'static str,
    /// Candles only: each interval is a stream of its own, in time order.
    interval: Option<feeder_core::model::Interval>,
}

impl<'a> StreamLabels<'a> {
    fn of(event: &'a Event) -> Self {
        Self {
            exchange: event.exchange(),
            symbol: event.symbol().as_str(),
            kind: event.kind(),
            interval: match event {
                Event::Candle(c) => Some(c.interval),
                Event::Trade(_) | Event::Gap(_) => None,
            },
        }
    }
}

/// Appends a Loki push body (JSON): one stream per exchange, symbol and kind (and interval,
/// for candles), each with its events as `[nanosecond time, JSON line]`, oldest first. The
/// time is the one the event is filed under ([`Event::time`]): a trade's venue time, a
/// candle's open time, a gap's start.
pub(super) fn loki(batch: &[Event], out: &mut Vec<u8>) {
    // Streams in the order they first appear; a batch holds few of them.
    let mut streams: Vec<(StreamLabels<'_>, Vec<&Event>)> = Vec::new();
    for event in batch {
        let labels = StreamLabels::of(event);
        match streams.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, events)) => events.push(event),
            None => streams.push((labels, vec![event])),
        }
    }
    let mut line = Vec::new();
    out.extend_from_slice(br#"{"streams":["#);
    for (s, (labels, events)) in streams.iter_mut().enumerate() {
        if s > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"stream":{"exchange":"#);
        write_json_str(labels.exchange, out);
        out.extend_from_slice(br#","symbol":"#);
        write_json_str(labels.symbol, out);
        out.extend_from_slice(br#","kind":"#);
        write_json_str(labels.kind, out);
        if let Some(interval) = labels.interval {
            out.extend_from_slice(br#","interval":"#);
            write_json_str(&interval.to_string(), out);
        }
        out.extend_from_slice(br#"},"values":["#);
        events.sort_by_key(|e| e.time().unix_nanos());
        for (v, event) in events.iter().enumerate() {
            if v > 0 {
                out.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write!(out, r#"["{}","#, event.time().unix_nanos());
            line.clear();
            write_json_line(event, &mut line);
            line.pop();
            // The encoder writes UTF-8 only (it escapes, it never cuts a character).
            write_json_str(&String::from_utf8_lossy(&line), out);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeder_core::testing::sample_events;

    #[test]
    fn every_body_is_the_json_it_claims_to_be() {
        let events = sample_events("x", 100);
        let mut out = Vec::new();
        loki(&events, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let total: usize = v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum();
        assert_eq!(total, events.len());
        out.clear();
        let all: Vec<usize> = (0..events.len()).collect();
        bulk(
            &events,
            &all,
            &HttpOptions::new("http://h/_bulk".parse().unwrap()),
            &mut out,
        );
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2 * events.len());
        assert_eq!(*out.last().unwrap(), b'\n');
    }

    #[test]
    fn one_instant_gives_one_candle_id() {
        let t = Timestamp::from_unix_secs(1_704_153_600);
        for digits in [0, 3, 9] {
            assert_eq!(
                canonical(t.with_digits(digits)).to_string(),
                "2024-01-02T00:00:00Z"
            );
        }
        let ms = Timestamp::from_unix_millis(1_704_153_600_120).with_digits(9);
        assert_eq!(canonical(ms).to_string(), "2024-01-02T00:00:00.120Z");
    }
}
