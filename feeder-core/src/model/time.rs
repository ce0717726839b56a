//! UTC timestamps with nanosecond resolution that remember the precision the venue gave.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A UTC instant: nanoseconds since the Unix epoch, plus how many fractional digits of a second
/// the source actually carried (0 to 9).
///
/// The precision matters for the output contract: a venue that reports microseconds is written
/// with six fractional digits, one that reports milliseconds with three, so nothing is invented
/// and nothing is rounded away. Equality and ordering look at the instant only.
#[derive(Clone, Copy, Default)]
pub struct Timestamp {
    nanos: i64,
    digits: u8,
}

/// Error for a timestamp that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl TimestampError {
    fn new(input: &str, reason: &'static str) -> Self {
        let mut input = input.to_owned();
        input.truncate(64);
        Self { input, reason }
    }
}

impl Timestamp {
    /// The Unix epoch with second precision.
    pub const EPOCH: Timestamp = Timestamp {
        nanos: 0,
        digits: 0,
    };

    /// An instant from nanoseconds since the epoch, written with `digits` fractional digits
    /// (clamped to 9).
    pub const fn from_unix_nanos(nanos: i64, digits: u8) -> Self {
        let digits = if digits > 9 { 9 } else { digits };
        Self { nanos, digits }
    }

    /// An instant from whole seconds since the epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self::from_unix_nanos(secs.saturating_mul(NANOS_PER_SEC), 0)
    }

    /// An instant from milliseconds since the epoch (three fractional digits).
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self::from_unix_nanos(millis.saturating_mul(1_000_000), 3)
    }

    /// An instant from microseconds since the epoch (six fractional digits).
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self::from_unix_nanos(micros.saturating_mul(1_000), 6)
    }

    /// The current wall-clock time, with nanosecond precision.
    pub fn now() -> Self {
        let nanos = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        Self::from_unix_nanos(nanos, 9)
    }

    /// Nanoseconds since the epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.nanos
    }

    /// Whole seconds since the epoch (rounded towards negative infinity).
    pub const fn unix_secs(self) -> i64 {
        self.nanos.div_euclid(NANOS_PER_SEC)
    }

    /// Number of fractional digits written when formatted.
    pub const fn digits(self) -> u8 {
        self.digits
    }

    /// The same instant written with another precision.
    pub const fn with_digits(self, digits: u8) -> Self {
        Self::from_unix_nanos(self.nanos, digits)
    }

    /// This instant plus a duration (saturating).
    pub fn saturating_add(self, d: Duration) -> Self {
        let add = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Self::from_unix_nanos(self.nanos.saturating_add(add), self.digits)
    }

    /// Parses seconds since the epoch written as a decimal string, such as `"1700000000"` or
    /// Kraken's `"1688671234.1234567"`, exactly (no floating point). The precision is the
    /// number of fractional digits given (up to 9; more are an error rather than rounded).
    pub fn parse_unix_secs_decimal(s: &str) -> Result<Self, TimestampError> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimestampError::new(s, "expected decimal seconds"));
        }
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimestampError::new(s, "bad fractional seconds"));
        }
        let secs: i64 = int
            .parse()
            .map_err(|_| TimestampError::new(s, "seconds out of range"))?;
        let mut frac_nanos: i64 = 0;
        for b in frac.bytes() {
            frac_nanos = frac_nanos * 10 + i64::from(b - b'0');
        }
        for _ in frac.len()..9 {
            frac_nanos *= 10;
        }
        let nanos = secs
            .checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(|| TimestampError::new(s, "seconds out of range"))?;
        Ok(Self::from_unix_nanos(nanos, frac.len() as u8))
    }

    /// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.123456Z`, or with a numeric offset),
    /// keeping the number of fractional digits it carries.
    ///
    /// The grammar is read here, byte by byte, because it is on the hot path of venues that
    /// send text times and because the number of fractional digits must be kept; the calendar
    /// (which days each month has, and the civil time to instant conversion) is `jiff`'s.
    /// Accepted: `YYYY-MM-DD`, `T`, `t` or a space, `HH:MM:SS`, an optional fraction (digits
    /// past the ninth must be zeros), then `Z`, `z` or `+HH:MM` / `-HH:MM`. A leap second
    /// (`:60`) is read as the first second of the next minute.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(TimestampError::new(s, "too short for RFC 3339"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let mut v: i64 = 0;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return Err(TimestampError::new(s, "expected a digit"));
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Ok(v)
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
            return Err(TimestampError::new(s, "expected YYYY-MM-DDTHH:MM:SS"));
        }
        if b[16] != b':' {
            return Err(TimestampError::new(s, "expected YYYY-MM-DDTHH:MM:SS"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if second > 60 {
            return Err(TimestampError::new(s, "field out of range"));
        }
        let mut i = 19;
        let mut frac: i64 = 0;
        let mut digits = 0u8;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    frac = frac * 10 + i64::from(b[i] - b'0');
                    digits += 1;
                } else if b[i] != b'0' {
                    return Err(TimestampError::new(s, "more than nanosecond precision"));
                }
                i += 1;
            }
            if i == start {
                return Err(TimestampError::new(s, "empty fraction"));
            }
            for _ in digits..9 {
                frac *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return Err(TimestampError::new(s, "offset out of range"));
                }
                let off = oh * 3600 + om * 60;
                if sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(TimestampError::new(s, "expected Z or an offset")),
        };
        // Every field has at most four digits here, so the narrowing casts cannot wrap.
        let civil = jiff::civil::DateTime::new(
            year as i16,
            month as i8,
            day as i8,
            hour as i8,
            minute as i8,
            second.min(59) as i8,
            0,
        )
        .map_err(|_| TimestampError::new(s, "field out of range"))?;
        let utc = jiff::tz::Offset::UTC
            .to_timestamp(civil)
            .map_err(|_| TimestampError::new(s, "field out of range"))?;
        let secs = utc.as_second() + i64::from(second == 60) - offset_secs;
        secs.checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(frac))
            .map(|nanos| Self::from_unix_nanos(nanos, digits))
            .ok_or_else(|| TimestampError::new(s, "outside the years 1677 to 2262"))
    }

    /// Writes the RFC 3339 form (`2024-01-02T03:04:05.123456Z`) into `out` without allocating.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 30];
        let n = self.encode(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Encodes into a fixed buffer; returns the number of bytes written.
    fn encode(self, buf: &mut [u8; 30]) -> usize {
        let secs = self.nanos.div_euclid(NANOS_PER_SEC);
        let frac = self.nanos.rem_euclid(NANOS_PER_SEC);
        // Trades come in time order, so the second is nearly always one formatted just before:
        // the text of the last two (a trade's time and its receive time, usually) is kept per
        // thread and copied.
        LAST_SECONDS.with(|last| {
            let mut cache = last.get();
            let hit = cache.seconds.iter().position(|s| *s == Some(secs));
            let slot = match hit {
                Some(i) => i,
                None => {
                    let i = cache.next;
                    cache.next = 1 - i;
                    cache.seconds[i] = Some(secs);
                    format_second(secs, &mut cache.text[i]);
                    last.set(cache);
                    i
                }
            };
            buf[..19].copy_from_slice(&cache.text[slot]);
        });
        let mut n = 19;
        if self.digits > 0 {
            let d = usize::from(self.digits);
            buf[n] = b'.';
            let mut f = [0u8; 9];
            put_digits(&mut f, frac as u32);
            buf[n + 1..n + 1 + d].copy_from_slice(&f[..d]);
            n += 1 + d;
        }
        buf[n] = b'Z';
        n + 1
    }
}

/// The seconds formatted last on a thread, and their text.
#[derive(Clone, Copy)]
struct SecondsCache {
    seconds: [Option<i64>; 2],
    text: [[u8; 19]; 2],
    /// The entry replaced next.
    next: usize,
}

thread_local! {
    static LAST_SECONDS: std::cell::Cell<SecondsCache> = const {
        std::cell::Cell::new(SecondsCache {
            seconds: [None; 2],
            text: [[0; 19]; 2],
            next: 0,
        })
    };
}

/// The UTC civil time of the second `secs` since the epoch.
fn civil_utc(secs: i64) -> jiff::civil::DateTime {
    // `secs` comes from an `i64` of nanoseconds (the years 1677 to 2262), well inside what
    // `jiff` represents (the years -9999 to 9999); the clamp only keeps this total.
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    jiff::tz::Offset::UTC.to_datetime(ts)
}

/// `YYYY-MM-DDTHH:MM:SS` of the second `secs` since the epoch.
///
/// The calendar is `jiff`'s; the fixed-width digits are written here, into a buffer that
/// cannot overflow, rather than through `jiff`'s printer, which writes through a fallible
/// `fmt::Write` and took twice as long on a cache miss.
fn format_second(secs: i64, buf: &mut [u8; 19]) {
    let t = civil_utc(secs);
    // Years are 1677 to 2262 here (see `civil_utc`); other fields are small and positive.
    put_digits(&mut buf[0..4], t.year().clamp(0, 9999) as u32);
    buf[4] = b'-';
    put_digits(&mut buf[5..7], t.month() as u32);
    buf[7] = b'-';
    put_digits(&mut buf[8..10], t.day() as u32);
    buf[10] = b'T';
    put_digits(&mut buf[11..13], t.hour() as u32);
    buf[13] = b':';
    put_digits(&mut buf[14..16], t.minute() as u32);
    buf[16] = b':';
    put_digits(&mut buf[17..19], t.second() as u32);
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The UTC calendar date of a timestamp as `YYYY-MM-DD`, used for day-split file names.
pub fn utc_date(ts: Timestamp) -> String {
    civil_utc(ts.unix_secs()).date().to_string()
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Timestamp {}
impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}
impl std::hash::Hash for Timestamp {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 30];
        let n = self.encode(&mut buf);
        // The encoder writes ASCII only.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        let n = self.encode(&mut buf);
        s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let date = jiff::civil::Date::new(y as i16, m as i8, d as i8).unwrap();
        let ts = jiff::tz::Offset::UTC
            .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .unwrap();
        ts.as_second().div_euclid(86_400)
    }

    /// Inverse of [`days_from_civil`].
    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let d = civil_utc(z * 86_400).date();
        (
            i64::from(d.year()),
            i64::from(d.month()),
            i64::from(d.day()),
        )
    }

    #[test]
    fn rfc3339_round_trips_with_the_given_precision() {
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:05.123456Z",
            "2024-01-02T03:04:05.123456789Z",
            "2024-01-02T03:04:05.1234567Z",
            "1970-01-01T00:00:00.000000Z",
            "2000-02-29T23:59:59.999999Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let ts = Timestamp::parse_rfc3339(s).unwrap();
            assert_eq!(ts.to_string(), s);
        }
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let ts = Timestamp::parse_rfc3339("2024-01-02T05:04:05.5+02:00").unwrap();
        assert_eq!(ts.to_string(), "2024-01-02T03:04:05.5Z");
    }

    #[test]
    fn known_instants() {
        let ts = Timestamp::parse_rfc3339("2024-01-02T03:04:05.123456Z").unwrap();
        assert_eq!(ts.unix_nanos(), 1_704_164_645_123_456_000);
        assert_eq!(Timestamp::from_unix_micros(1_704_164_645_123_456), ts);
        assert_eq!(
            Timestamp::from_unix_millis(1_704_164_645_123).to_string(),
            "2024-01-02T03:04:05.123Z"
        );
        assert_eq!(utc_date(ts), "2024-01-02");
    }

    #[test]
    fn decimal_seconds_keep_every_digit() {
        let ts = Timestamp::parse_unix_secs_decimal("1688671234.1234567").unwrap();
        assert_eq!(ts.unix_nanos(), 1_688_671_234_123_456_700);
        assert_eq!(ts.to_string(), "2023-07-06T19:20:34.1234567Z");
        assert!(Timestamp::parse_unix_secs_decimal("1.2.3").is_err());
        assert!(Timestamp::parse_unix_secs_decimal("-1").is_err());
        assert!(Timestamp::parse_unix_secs_decimal("1.1234567891").is_err());
    }

    #[test]
    fn rejects_malformed_input() {
        for s in [
            "",
            "2024-01-02",
            "2024-13-02T03:04:05Z",
            "2024-02-30T03:04:05Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05.1234567891Z",
            "2024-01-02X03:04:05Z",
            "2024-01-02T03:04:05Zjunk",
        ] {
            assert!(Timestamp::parse_rfc3339(s).is_err(), "{s}");
        }
    }

    #[test]
    fn civil_conversion_matches_over_a_wide_range() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    /// The per-thread copy of the last second's text must never leak into another second:
    /// repeats, neighbours, day and year boundaries and jumps back, each checked by parsing
    /// the text back.
    #[test]
    fn cached_second_text_matches_every_second() {
        let base = 1_704_067_199; // 2023-12-31T23:59:59
        let mut secs = vec![
            base,
            base,
            base + 1,
            base + 1,
            base,
            base + 86_400,
            -1,
            0,
            -1,
        ];
        secs.extend((0..2_000).map(|i| base + (i * 7919) % 200_000 - 100_000));
        for (i, s) in secs.into_iter().enumerate() {
            let ts = Timestamp::from_unix_nanos(s * 1_000_000_000 + i as i64, 9);
            let text = ts.to_string();
            assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), ts, "{text}");
        }
    }

    /// The calendar code this module had before its calendar was `jiff`'s, kept verbatim (but
    /// for the overflow check at the end of `parse`, which it lacked) as the reference that
    /// the properties below compare with.
    mod before {
        const NANOS_PER_SEC: i64 = 1_000_000_000;
        const SECS_PER_DAY: i64 = 86_400;

        fn is_leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }

        fn days_in_month(y: i64, m: i64) -> i64 {
            match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if is_leap(y) => 29,
                _ => 28,
            }
        }

        fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let mp = (m + 9) % 12;
            let doy = (153 * mp + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        }

        fn civil_from_days(z: i64) -> (i64, i64, i64) {
            let z = z + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let y = yoe + era * 400;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            (if m <= 2 { y + 1 } else { y }, m, d)
        }

        /// The text the formatter wrote for `nanos` with `digits` fractional digits.
        pub fn format(nanos: i64, digits: u8) -> String {
            let secs = nanos.div_euclid(NANOS_PER_SEC);
            let frac = nanos.rem_euclid(NANOS_PER_SEC);
            let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
            let sod = secs.rem_euclid(SECS_PER_DAY);
            let mut out = format!(
                "{:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                y.clamp(0, 9999),
                sod / 3600,
                sod / 60 % 60,
                sod % 60
            );
            if digits > 0 {
                let f = format!("{frac:09}");
                out.push('.');
                out.push_str(&f[..usize::from(digits)]);
            }
            out.push('Z');
            out
        }

        /// What the parser read from `s`: nanoseconds and digits, or `None` for an error.
        pub fn parse(s: &str) -> Option<(i64, u8)> {
            let b = s.as_bytes();
            if b.len() < 20 {
                return None;
            }
            let num = |range: std::ops::Range<usize>| -> Option<i64> {
                let mut v: i64 = 0;
                for &c in &b[range] {
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    v = v * 10 + i64::from(c - b'0');
                }
                Some(v)
            };
            if b[4] != b'-'
                || b[7] != b'-'
                || !matches!(b[10], b'T' | b't' | b' ')
                || b[13] != b':'
                || b[16] != b':'
            {
                return None;
            }
            let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
            let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if !(1..=12).contains(&month)
                || day < 1
                || day > days_in_month(year, month)
                || hour > 23
                || minute > 59
                || second > 60
            {
                return None;
            }
            let mut i = 19;
            let mut frac: i64 = 0;
            let mut digits = 0u8;
            if b[i] == b'.' {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    if i - start < 9 {
                        frac = frac * 10 + i64::from(b[i] - b'0');
                        digits += 1;
                    } else if b[i] != b'0' {
                        return None;
                    }
                    i += 1;
                }
                if i == start {
                    return None;
                }
                for _ in digits..9 {
                    frac *= 10;
                }
            }
            let offset_secs = match b.get(i) {
                Some(b'Z' | b'z') if i + 1 == b.len() => 0,
                Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                    let oh = num(i + 1..i + 3)?;
                    let om = num(i + 4..i + 6)?;
                    if oh > 23 || om > 59 {
                        return None;
                    }
                    let off = oh * 3600 + om * 60;
                    if sign == b'+' {
                        off
                    } else {
                        -off
                    }
                }
                _ => return None,
            };
            let days = days_from_civil(year, month, day);
            let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
            let nanos = secs.checked_mul(NANOS_PER_SEC)?.checked_add(frac)?;
            Some((nanos, digits))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Every instant a `Timestamp` holds from 1970 on (an `i64` of nanoseconds ends in
        /// 2262), at every precision, is written byte for byte as before and reads back.
        #[test]
        fn formats_as_before_and_reads_back(nanos in 0..=i64::MAX, digits in 0u8..=9) {
            let ts = Timestamp::from_unix_nanos(nanos, digits);
            let text = ts.to_string();
            prop_assert_eq!(&text, &before::format(nanos, digits));
            let mut bytes = Vec::new();
            ts.write_rfc3339(&mut bytes);
            prop_assert_eq!(bytes, text.as_bytes());
            let back = Timestamp::parse_rfc3339(&text).unwrap();
            let unit = 10i64.pow(9 - u32::from(digits));
            prop_assert_eq!(back.unix_nanos(), nanos - nanos % unit);
            prop_assert_eq!(back.digits(), digits);
        }

        /// Text of any date from 1970 to 9999, real or not (February 30th, hour 24, second
        /// 60), with any precision, separator and offset, reads as before: the same instant
        /// and digits, or an error where it was one. Years past 2262 do not fit in a
        /// `Timestamp` and are errors.
        #[test]
        fn parses_as_before(
            date in (prop_oneof![3 => 1970i64..=2262, 1 => 2263i64..=9999], 1i64..=13, 0i64..=32),
            time in (0i64..=24, 0i64..=60, 0i64..=61),
            fraction in prop::option::of(("[0-9]{1,9}", prop::option::of("0{1,3}|[1-9]"))),
            sep in prop::sample::select(vec!['T', 't', ' ']),
            zone in prop::option::of((any::<bool>(), 0i64..=24, 0i64..=60)),
            z in prop::sample::select(vec!['Z', 'z']),
        ) {
            let ((year, month, day), (hour, minute, second)) = (date, time);
            let mut text = format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}");
            if let Some((digits, extra)) = fraction {
                text.push('.');
                text.push_str(&digits);
                text.push_str(extra.as_deref().unwrap_or(""));
            }
            match zone {
                Some((east, h, m)) => {
                    text.push_str(&format!("{}{h:02}:{m:02}", if east { '+' } else { '-' }))
                }
                None => text.push(z),
            }
            let now = Timestamp::parse_rfc3339(&text).ok().map(|t| (t.unix_nanos(), t.digits()));
            prop_assert_eq!(now, before::parse(&text), "{}", text);
            if year > 2262 {
                prop_assert!(now.is_none(), "{}", text);
            }
        }
    }
}
