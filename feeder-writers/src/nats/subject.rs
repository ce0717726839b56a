//! Subjects from templates, and whether a stream's subjects cover them.
//!
//! A NATS subject is a list of tokens separated by `.`; a token is never empty, holds no
//! whitespace, and `*` or `>` alone are wildcards. A value put into a subject (an exchange
//! name, a symbol, an interval) must therefore stay inside its token whatever it holds:
//! every byte other than an ASCII letter, a digit, `-` or `_` is written `%XX` (its hex
//! code), `%` included, so `BTC-USD` stays as it is, `a.b` becomes `a%2Eb`, and two values
//! never map to the same text. An empty value becomes `%` alone.

use std::fmt::Write as _;

/// A part of a template: literal text or a placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// The values a template can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Exchange,
    Symbol,
    Interval,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        match name {
            "exchange" => Some(Field::Exchange),
            "symbol" => Some(Field::Symbol),
            "interval" => Some(Field::Interval),
            _ => None,
        }
    }
}

/// A subject template such as `trades.{exchange}.{symbol}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`, allowing the placeholders named in `allowed`. The literal text must
    /// make a valid subject without wildcards, whatever the placeholders hold.
    pub(super) fn parse(text: &str, allowed: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?}: a `{{` is not closed"))?;
            let name = &after[..close];
            let field = Field::parse(name)
                .filter(|_| allowed.contains(&name))
                .ok_or_else(|| {
                    format!(
                        "{text:?}: unknown placeholder {{{name}}} (allowed: {})",
                        allowed
                            .iter()
                            .map(|a| format!("{{{a}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            parts.push(Part::Field(field));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let t = Template { parts };
        t.validate().map_err(|e| format!("{text:?}: {e}"))?;
        Ok(t)
    }

    /// Checks the template's own text: the subject it gives is valid for any values (each
    /// value renders as a non-empty run of safe bytes).
    fn validate(&self) -> Result<(), String> {
        for p in &self.parts {
            if let Part::Text(s) = p {
                if s.contains('}') {
                    return Err("a `}` without its `{`".into());
                }
                if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err("a subject holds no whitespace".into());
                }
                if s.contains(['*', '>']) {
                    return Err("wildcards (`*`, `>`) cannot be published to".into());
                }
            }
        }
        if self.marked().split('.').any(str::is_empty) {
            return Err("a subject has no empty token (`..`, or `.` at an end)".into());
        }
        Ok(())
    }

    /// The template's text with a space (which no literal holds) for each placeholder.
    fn marked(&self) -> String {
        let mut text = String::new();
        for p in &self.parts {
            match p {
                Part::Text(s) => text.push_str(s),
                Part::Field(_) => text.push(' '),
            }
        }
        text
    }

    /// The subject for these values.
    pub(super) fn render(&self, exchange: &str, symbol: &str, interval: &str, out: &mut String) {
        out.clear();
        for p in &self.parts {
            match p {
                Part::Text(s) => out.push_str(s),
                Part::Field(Field::Exchange) => escape_token(exchange, out),
                Part::Field(Field::Symbol) => escape_token(symbol, out),
                Part::Field(Field::Interval) => escape_token(interval, out),
            }
        }
    }

    /// The subject with each token that holds a placeholder replaced by `*`: every subject
    /// the template can give matches it.
    pub(super) fn pattern(&self) -> String {
        self.marked()
            .split('.')
            .map(|t| if t.contains(' ') { "*" } else { t })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Appends `value` as the text of one subject token (see the module doc).
pub(super) fn escape_token(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push('%');
        return;
    }
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Whether the stream subject `filter` (which may hold wildcards) matches every subject that
/// `pattern` (where `*` stands for any one token) can stand for.
pub(super) fn covers(filter: &str, pattern: &str) -> bool {
    let mut f = filter.split('.');
    let mut p = pattern.split('.');
    loop {
        match (f.next(), p.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, exchange: &str, symbol: &str) -> String {
        let mut s = String::new();
        t.render(exchange, symbol, "30m", &mut s);
        s
    }

    #[test]
    fn values_stay_inside_their_token() {
        let t = Template::parse("trades.{exchange}.{symbol}", &["exchange", "symbol"]).unwrap();
        assert_eq!(render(&t, "bitstamp", "BTC-USD"), "trades.bitstamp.BTC-USD");
        assert_eq!(render(&t, "a.b", "X/Y"), "trades.a%2Eb.X%2FY");
        assert_eq!(render(&t, "*", ">"), "trades.%2A.%3E");
        assert_eq!(render(&t, "", "a b%"), "trades.%.a%20b%25");
        // Distinct values, distinct subjects: `%` itself is escaped.
        assert_ne!(render(&t, "a%2Eb", "x"), render(&t, "a.b", "x"));
        assert_eq!(t.pattern(), "trades.*.*");
    }

    #[test]
    fn bad_templates_are_refused() {
        let allowed = &["exchange", "symbol"];
        for bad in [
            "",
            "trades.",
            ".trades",
            "a..b",
            "a.*",
            "a.>",
            "a.{exchange}>",
            "a b",
            "t.{interval}",
            "t.{exchange",
            "t.exchange}",
        ] {
            assert!(Template::parse(bad, allowed).is_err(), "{bad:?}");
        }
        let t = Template::parse("x.{exchange}-{symbol}.y", allowed).unwrap();
        assert_eq!(t.pattern(), "x.*.y");
        assert_eq!(render(&t, "k", "A-B"), "x.k-A-B.y");
    }

    #[test]
    fn stream_subjects_cover_patterns() {
        assert!(covers("trades.>", "trades.*.*"));
        assert!(covers("trades.*.*", "trades.*.*"));
        assert!(covers(">", "trades.*.*"));
        assert!(covers("*.*.*", "trades.*.*"));
        assert!(!covers("trades.bitstamp.*", "trades.*.*"));
        assert!(!covers("trades.*", "trades.*.*"));
        assert!(!covers("trades.*.*.*", "trades.*.*"));
        assert!(!covers("candles.>", "trades.*.*"));
        assert!(covers("fixed", "fixed"));
        assert!(!covers("trades.>", "trades"));
    }
}
