//! Candle intervals and the duration syntax shared with the config (`500ms`, `30m`, `1h`).

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Error for a duration or interval that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 500ms, 10s, 30m, 1h, 1d)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: s.chars().take(64).collect(),
        reason,
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("missing unit"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err("missing number"));
    }
    let n: u64 = num.parse().map_err(|_| err("number out of range"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err("unknown unit")),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| err("number out of range"))
}

/// Formats a duration in the largest unit that divides it (`1h`, `90s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A candle interval: whole seconds, from one minute to one day, dividing a day evenly so that
/// candles align to UTC boundaries (`1m`, `5m`, `15m`, `30m`, `1h`, `4h`, `1d`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    secs: u32,
}

impl Interval {
    /// Thirty minutes.
    pub const M30: Interval = Interval { secs: 1_800 };
    /// One hour.
    pub const H1: Interval = Interval { secs: 3_600 };

    /// An interval of `secs` seconds; between 60 and 86 400, a whole number of minutes, and a
    /// divisor of one day.
    pub fn from_secs(secs: u32) -> Result<Self, DurationError> {
        if !(60..=86_400).contains(&secs) || secs % 60 != 0 || 86_400 % secs != 0 {
            return Err(DurationError {
                input: format_duration(Duration::from_secs(u64::from(secs))),
                reason: "a candle interval must be whole minutes from 1m to 1d that divide a day",
            });
        }
        Ok(Self { secs })
    }

    /// Parses `1m` .. `1d`.
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let d = parse_duration(s)?;
        let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        if d.subsec_nanos() != 0 {
            return Err(DurationError {
                input: s.to_owned(),
                reason: "a candle interval must be whole minutes",
            });
        }
        Self::from_secs(secs)
    }

    /// Length in seconds.
    pub const fn secs(self) -> u32 {
        self.secs
    }

    /// Length in nanoseconds.
    pub const fn nanos(self) -> i64 {
        self.secs as i64 * 1_000_000_000
    }

    /// Length as a [`Duration`].
    pub const fn duration(self) -> Duration {
        Duration::from_secs(self.secs as u64)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.duration()))
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Interval {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor {
            expecting: "a candle interval such as 30m or 1h",
            parse: Interval::parse,
        })
    }
}

/// Reads a value written as text with `parse`, inside the deserializer's visit of the scalar.
///
/// Parsing there, rather than after `deserialize` returned the string, is what lets a
/// deserializer that tracks positions (the YAML config's) place an error on the value itself:
/// its key path and line, not those of the enclosing map or list.
pub(crate) struct TextVisitor<T, E> {
    /// What the value should look like, for type errors.
    pub(crate) expecting: &'static str,
    /// The parser of the text.
    pub(crate) parse: fn(&str) -> Result<T, E>,
}

impl<T, E: fmt::Display> de::Visitor<'_> for TextVisitor<T, E> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<Er: de::Error>(self, s: &str) -> Result<T, Er> {
        (self.parse)(s).map_err(Er::custom)
    }
}

/// Serde adapter for `Duration` fields written as `500ms`, `10s`, `30m`, `1h`.
pub mod serde_duration {
    use super::*;

    /// Serializes a duration as text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Deserializes a duration from text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(TextVisitor {
            expecting: "a duration such as 500ms, 10s or 1h",
            parse: parse_duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 parsecs",
            "-1s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    }

    #[test]
    fn intervals_align_to_the_day() {
        assert_eq!(Interval::parse("30m").unwrap(), Interval::M30);
        assert_eq!(Interval::parse("1d").unwrap().to_string(), "1d");
        assert_eq!(Interval::parse("60m").unwrap().to_string(), "1h");
        for bad in ["30s", "7m", "2d", "500ms", "0m"] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
    }
}
