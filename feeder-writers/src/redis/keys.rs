//! Stream keys from templates, and the dedup ids of events.
//!
//! A value put into a key (an exchange name, a symbol, an interval) is written so that it
//! can neither reach into a neighbouring part nor make two streams share a key: `:`, `{`,
//! `}`, `%`, whitespace and any byte outside printable ASCII become `%XX` (the byte's hex
//! code). `BTC-USD` stays as it is. An empty value becomes `%` alone.

use std::fmt::Write as _;

use feeder_core::model::Event;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Exchange,
    Symbol,
    Interval,
}

/// A stream key template such as `trades:{exchange}:{symbol}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeyTemplate {
    parts: Vec<Part>,
}

impl KeyTemplate {
    /// Parses `text`, allowing the placeholders named in `allowed`.
    pub(super) fn parse(text: &str, allowed: &[&str]) -> Result<KeyTemplate, String> {
        if text.is_empty() {
            return Err("a key template cannot be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        loop {
            let Some(open) = rest.find('{') else {
                if rest.contains('}') {
                    return Err(format!("{text:?}: a `}}` without its `{{`"));
                }
                if !rest.is_empty() {
                    parts.push(Part::Text(rest.to_string()));
                }
                break;
            };
            if rest[..open].contains('}') {
                return Err(format!("{text:?}: a `}}` without its `{{`"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?}: a `{{` is not closed"))?;
            let name = &after[..close];
            let part = match name {
                "exchange" => Part::Exchange,
                "symbol" => Part::Symbol,
                "interval" => Part::Interval,
                _ => Part::Text(String::new()),
            };
            if part == Part::Text(String::new()) || !allowed.contains(&name) {
                return Err(format!(
                    "{text:?}: unknown placeholder {{{name}}} (allowed: {})",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?}: a key template holds no whitespace"));
        }
        Ok(KeyTemplate { parts })
    }

    /// The key for these values.
    pub(super) fn render(&self, exchange: &str, symbol: &str, interval: &str) -> String {
        let mut out = String::with_capacity(48);
        for p in &self.parts {
            match p {
                Part::Text(s) => out.push_str(s),
                Part::Exchange => escape(exchange, &mut out),
                Part::Symbol => escape(symbol, &mut out),
                Part::Interval => escape(interval, &mut out),
            }
        }
        out
    }

    /// The template with its placeholders written `*`, to compare templates and for logs.
    pub(super) fn pattern(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(s) => s.as_str(),
                _ => "*",
            })
            .collect()
    }
}

/// Appends `value` to a key or an id (see the module doc).
pub(super) fn escape(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push('%');
        return;
    }
    for b in value.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b':' | b'{' | b'}' | b'%') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The stream key of `event`.
pub(super) fn stream_key(keys: &super::config::Keys, event: &Event) -> String {
    match event {
        Event::Trade(t) => keys.trades.render(&t.exchange, t.symbol.as_str(), ""),
        Event::Candle(c) => {
            keys.candles
                .render(&c.exchange, c.symbol.as_str(), &c.interval.to_string())
        }
        Event::Gap(g) => keys.gaps.render(&g.exchange, g.symbol.as_str(), ""),
    }
}

/// The id under which a stream remembers `event`, and its revision. It names exchange and
/// symbol too, so that events stay apart in a stream whose key template leaves them out.
/// - a trade: `t:exchange:symbol:trade_id`, revision 0;
/// - a candle: `c:exchange:symbol:interval:open_time_ns` with its revision: a later revision
///   replaces the earlier one;
/// - a gap: `g:exchange:symbol:after_trade_id`, revision 0.
pub(super) fn dedup_id(event: &Event, out: &mut String) -> u32 {
    out.clear();
    match event {
        Event::Trade(t) => {
            out.push_str("t:");
            escape(&t.exchange, out);
            out.push(':');
            escape(t.symbol.as_str(), out);
            out.push(':');
            escape(t.trade_id.as_str(), out);
            0
        }
        Event::Candle(c) => {
            out.push_str("c:");
            escape(&c.exchange, out);
            out.push(':');
            escape(c.symbol.as_str(), out);
            let _ = write!(out, ":{}:{}", c.interval, c.open_time.unix_nanos());
            c.revision
        }
        Event::Gap(g) => {
            out.push_str("g:");
            escape(&g.exchange, out);
            out.push(':');
            escape(g.symbol.as_str(), out);
            out.push(':');
            escape(g.after_trade_id.as_str(), out);
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_reach_into_other_parts() {
        let t = KeyTemplate::parse("trades:{exchange}:{symbol}", &["exchange", "symbol"]).unwrap();
        assert_eq!(
            t.render("bitstamp", "BTC-USD", ""),
            "trades:bitstamp:BTC-USD"
        );
        assert_eq!(t.render("a:b", "c", ""), "trades:a%3Ab:c");
        assert_ne!(t.render("a:b", "c", ""), t.render("a", "b:c", ""));
        assert_eq!(t.render("{x}", "a b", ""), "trades:%7Bx%7D:a%20b");
        assert_eq!(t.render("", "%", ""), "trades:%:%25");
        assert_eq!(t.pattern(), "trades:*:*");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "",
            "t:{interval}",
            "t:{exchange",
            "t:}x",
            "a b:{symbol}",
            "t:{}",
        ] {
            assert!(
                KeyTemplate::parse(bad, &["exchange", "symbol"]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dedup_ids_are_distinct() {
        let events = feeder_core::testing::sample_events("x", 200);
        let mut seen = std::collections::HashSet::new();
        let mut id = String::new();
        for e in &events {
            dedup_id(e, &mut id);
            assert!(seen.insert(id.clone()), "{id}");
        }
    }
}
