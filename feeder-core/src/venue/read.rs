//! Readers of venue payloads: what every parser needs to turn a venue's fields into a
//! [`Trade`] exactly, with errors that name the field.
//!
//! Each reader takes the field's name, so that an error says which field of the venue's
//! message was wrong (`price: invalid decimal "1.2.3"`). None allocates on success, and they
//! are `#[inline]`: they run for every trade.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use url::Url;

use crate::error::ParseError;
use crate::model::{parse_decimal, Side, Timestamp, Trade, TradeId};

/// An unsigned integer that a venue writes either as a JSON number (`1727791043`) or as a
/// string of digits (`"1727791043"`).
///
/// Bitstamp does both, sometimes for the same field on different endpoints, and venues change
/// the type of ids and times over the years: read every numeric trade id and time with this,
/// so a change of type loses nothing. Negative numbers, fractions, numbers beyond 64 bits and
/// anything but digits in a string are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uint(pub u64);

impl<'de> Deserialize<'de> for Uint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UintVisitor)
    }
}

struct UintVisitor;

impl Visitor<'_> for UintVisitor {
    type Value = Uint;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an unsigned integer, as a number or a string of digits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Uint, E> {
        Ok(Uint(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Uint, E> {
        u64::try_from(v)
            .map(Uint)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Uint, E> {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        v.parse()
            .map(Uint)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// A trade id that a venue keeps as text (`"2290000000412342771"`) and may also write as a
/// JSON number (`2290000000412342771`).
///
/// Venues switch between the two over the years; either is read without allocating. A
/// number must be whole and fit 64 bits, as with [`Uint`]; a string is kept verbatim, so ids
/// that are not numbers still pass through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextId<'a> {
    /// Written as a string.
    Text(&'a str),
    /// Written as a number.
    Number(u64),
}

impl TextId<'_> {
    /// The trade id, refusing an empty string or one longer than 64 bytes.
    #[inline]
    pub fn trade_id(self, field: &'static str) -> Result<TradeId, ParseError> {
        match self {
            TextId::Number(n) => Ok(TradeId::from_u64(n)),
            TextId::Text(s) if s.is_empty() || s.len() > 64 => {
                Err(ParseError::field(field, "empty or too long"))
            }
            TextId::Text(s) => Ok(TradeId::new(s)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TextId<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextIdVisitor(std::marker::PhantomData))
    }
}

struct TextIdVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextIdVisitor<'a> {
    type Value = TextId<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id, as a string or an unsigned integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<TextId<'a>, E> {
        Ok(TextId::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextId<'a>, E> {
        u64::try_from(v)
            .map(TextId::Number)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<TextId<'a>, E> {
        Ok(TextId::Text(v))
    }
}

/// Reads a JSON payload into a borrowed wire type.
///
/// The payload is checked to be UTF-8 once, as a whole, and then read as text: reading bytes
/// would check every string again on its own, which costs more than the rest of the parse of
/// a small trade message. A payload that is not UTF-8 is read as bytes, so the error says
/// where.
#[inline]
pub fn from_json<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    }
}

/// An exact decimal from a wire field, plain (`"43210.12"`) or in exponent form (`"1e-8"`).
#[inline]
pub fn decimal(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    parse_decimal(s).map_err(|e| ParseError::field(field, e))
}

/// A required field that was absent.
pub fn missing(field: &'static str) -> ParseError {
    ParseError::field(field, "missing")
}

/// Seconds since the epoch as a timestamp, refusing values that do not fit.
#[inline]
pub fn unix_secs(field: &'static str, secs: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(secs)
        .ok()
        .filter(|s| s.checked_mul(1_000_000_000).is_some())
        .map(Timestamp::from_unix_secs)
        .ok_or_else(|| ParseError::field(field, format_args!("{secs} is out of range")))
}

/// Milliseconds since the epoch as a timestamp with three fractional digits.
#[inline]
pub fn unix_millis(field: &'static str, millis: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(millis)
        .ok()
        .filter(|m| m.checked_mul(1_000_000).is_some())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| ParseError::field(field, format_args!("{millis} is out of range")))
}

/// Microseconds since the epoch as a timestamp with six fractional digits.
#[inline]
pub fn unix_micros(field: &'static str, micros: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(micros)
        .ok()
        .filter(|m| m.checked_mul(1_000).is_some())
        .map(Timestamp::from_unix_micros)
        .ok_or_else(|| ParseError::field(field, format_args!("{micros} is out of range")))
}

/// An RFC 3339 time, keeping the venue's precision.
#[inline]
pub fn rfc3339(field: &'static str, s: &str) -> Result<Timestamp, ParseError> {
    Timestamp::parse_rfc3339(s).map_err(|e| ParseError::field(field, e))
}

/// `buy` or `sell` as written by a venue. Whether it is the taker's side or the maker's is
/// the venue's to say: a venue that reports the maker's side inverts it
/// ([`Side::opposite`]).
#[inline]
pub fn side_word(field: &'static str, s: &str) -> Result<Side, ParseError> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(ParseError::field(
            field,
            format_args!("expected buy or sell, got {:?}", truncate(other)),
        )),
    }
}

/// Venue-supplied text cut to at most 64 bytes (on a character boundary), for error
/// messages: a venue's garbage never fills a log.
pub fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends one trade per item, all or nothing: on the first item that cannot be read, what
/// this call appended is removed and the error returned, so a page or a push is either
/// understood whole or reported, never half-appended.
#[inline]
pub fn append_all<'a, T: 'a>(
    out: &mut Vec<Trade>,
    items: impl IntoIterator<Item = &'a T>,
    mut trade: impl FnMut(&'a T) -> Result<Trade, ParseError>,
) -> Result<(), ParseError> {
    let start = out.len();
    for item in items {
        match trade(item) {
            Ok(t) => out.push(t),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `base` with `segments` appended to its path, its query and fragment dropped, so that an
/// endpoint override with a path prefix (`http://proxy/bitstamp`) keeps it.
pub fn join_path(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_reads_numbers_and_digit_strings_only() {
        let ok = |s: &str| serde_json::from_str::<Uint>(s).map(|u| u.0).ok();
        assert_eq!(ok("42"), Some(42));
        assert_eq!(ok("\"1727791043385000\""), Some(1_727_791_043_385_000));
        assert_eq!(ok("\"18446744073709551615\""), Some(u64::MAX));
        for bad in [
            "-1",
            "1.5",
            "\"\"",
            "\"12a\"",
            "\"-3\"",
            "\"18446744073709551616\"",
            "18446744073709551616",
            "99999999999999999999999999",
            "1e3",
            "\" 5\"",
            "\"+5\"",
            "null",
            "true",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_ids_read_strings_and_whole_numbers_only() {
        let id = |s: &str| {
            serde_json::from_str::<TextId<'_>>(s)
                .ok()
                .and_then(|t| t.trade_id("id").ok())
                .map(|t| t.as_str().to_owned())
        };
        assert_eq!(
            id("\"2290000000412342771\"").as_deref(),
            Some("2290000000412342771")
        );
        assert_eq!(
            id("2290000000412342771").as_deref(),
            Some("2290000000412342771")
        );
        assert_eq!(id("\"a1-b2\"").as_deref(), Some("a1-b2"));
        assert_eq!(
            id("18446744073709551615").as_deref(),
            Some("18446744073709551615")
        );
        for bad in [
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "\"\"",
            "null",
            "true",
            "[1]",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
        let long = format!("\"{}\"", "9".repeat(65));
        assert_eq!(id(&long), None);
    }

    #[test]
    fn join_path_keeps_prefixes() {
        let base = Url::parse("http://h/prefix/").unwrap();
        assert_eq!(
            join_path(&base, &["a", "b", ""]).as_str(),
            "http://h/prefix/a/b/"
        );
        let root = Url::parse("http://h").unwrap();
        assert_eq!(join_path(&root, &["a"]).as_str(), "http://h/a");
    }

    #[test]
    fn times_out_of_range_are_errors() {
        assert!(unix_secs("t", u64::MAX).is_err());
        assert!(unix_millis("t", u64::MAX).is_err());
        assert!(unix_micros("t", u64::MAX).is_err());
        assert_eq!(unix_secs("t", 1).unwrap().unix_nanos(), 1_000_000_000);
        assert_eq!(unix_micros("t", 1).unwrap().digits(), 6);
        assert_eq!(unix_millis("t", 1).unwrap().digits(), 3);
    }

    #[test]
    fn readers_name_the_field_they_refuse() {
        let e = decimal("price", "1.2.3").unwrap_err().to_string();
        assert!(e.contains("price"), "{e}");
        let e = side_word("side", "hold").unwrap_err().to_string();
        assert!(e.contains("side") && e.contains("hold"), "{e}");
        assert_eq!(side_word("side", "sell").unwrap(), Side::Sell);
        let long = "é".repeat(40);
        assert!(truncate(&long).len() <= 64);
    }

    #[test]
    fn append_all_appends_nothing_of_a_page_it_cannot_read_whole() {
        let mut out = Vec::new();
        let t = |id: &u64| -> Result<Trade, ParseError> {
            if *id == 3 {
                return Err(missing("id"));
            }
            Ok(Trade {
                exchange: "x".into(),
                symbol: "BTC-USD".parse().unwrap(),
                trade_id: TradeId::from_u64(*id),
                price: Decimal::ONE,
                amount: Decimal::ONE,
                side: Side::Buy,
                timestamp: Timestamp::from_unix_secs(1),
                received_at: Timestamp::from_unix_secs(1),
            })
        };
        append_all(&mut out, &[1u64, 2], t).unwrap();
        assert_eq!(out.len(), 2);
        assert!(append_all(&mut out, &[4u64, 3], t).is_err());
        assert_eq!(out.len(), 2);
    }
}
