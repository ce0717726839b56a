//! Trades, candles and the events that carry them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use compact_str::CompactString;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Interval, Symbol, Timestamp};

/// The taker's side of a trade: who crossed the spread.
///
/// Venues encode this differently (some send the maker's side); each venue's parser decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The taker bought (lifted the ask).
    Buy,
    /// The taker sold (hit the bid).
    Sell,
    /// The venue did not say.
    Unknown,
}

impl Side {
    /// `buy`, `sell` or `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
            Side::Unknown => "unknown",
        }
    }

    /// The other side (`Unknown` stays `Unknown`); for venues that report the maker's side.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
            Side::Unknown => Side::Unknown,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A venue's trade id, kept as the venue wrote it. Ids up to 24 bytes are stored inline, so
/// making one does not allocate.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TradeId(CompactString);

impl TradeId {
    /// An id from its text.
    pub fn new(s: &str) -> Self {
        Self(CompactString::new(s))
    }

    /// An id from an integer, formatted without allocating.
    pub fn from_u64(n: u64) -> Self {
        Self(CompactString::new(itoa_buf(n).as_str()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a number, when it is one (all digits, fits in 128 bits).
    pub fn as_number(&self) -> Option<u128> {
        let s = self.0.as_bytes();
        if s.is_empty() || s.len() > 38 {
            return None;
        }
        if s.len() <= 19 {
            // Cannot overflow a u64: the common case, without the general parser.
            let mut n = 0u64;
            for &b in s {
                let d = b.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                n = n * 10 + u64::from(d);
            }
            return Some(u128::from(n));
        }
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0.parse().ok()
    }

    /// Orders two ids by value when both are numbers, which is how venues with increasing ids
    /// say "newer". `None` when either is not numeric.
    pub fn cmp_numeric(&self, other: &TradeId) -> Option<std::cmp::Ordering> {
        Some(self.as_number()?.cmp(&other.as_number()?))
    }
}

/// A stack buffer for formatting an integer.
struct ItoaBuf {
    bytes: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    fn as_str(&self) -> &str {
        // Only ASCII digits are written.
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or("0")
    }
}

fn itoa_buf(mut n: u64) -> ItoaBuf {
    let mut bytes = [0u8; 20];
    let mut i = bytes.len();
    loop {
        i -= 1;
        bytes[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ItoaBuf { bytes, start: i }
}

impl fmt::Display for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl From<&str> for TradeId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// One trade as reported by a venue, normalized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trade {
    /// Registry name of the venue (`bitstamp`, `coinbase`, ...).
    pub exchange: Arc<str>,
    /// Normalized symbol.
    pub symbol: Symbol,
    /// The venue's trade id; with `exchange` and `symbol`, the dedup key.
    pub trade_id: TradeId,
    /// Price, exact.
    pub price: Decimal,
    /// Amount of the base asset, exact.
    pub amount: Decimal,
    /// The taker's side.
    pub side: Side,
    /// The venue's trade time, in the venue's precision.
    pub timestamp: Timestamp,
    /// When the feeder read the message that carried the trade.
    pub received_at: Timestamp,
}

/// Open, high, low, close and volume over one interval of one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candle {
    /// Registry name of the venue.
    pub exchange: Arc<str>,
    /// Normalized symbol.
    pub symbol: Symbol,
    /// Interval length.
    pub interval: Interval,
    /// Start of the interval (inclusive), aligned to a UTC boundary.
    pub open_time: Timestamp,
    /// End of the interval (exclusive).
    pub close_time: Timestamp,
    /// Price of the first trade.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Price of the last trade.
    pub close: Decimal,
    /// Sum of trade amounts.
    pub volume: Decimal,
    /// Number of trades.
    pub trades: u64,
    /// 0 for the first emission; 1, 2, ... for revisions after late trades.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u32,
    /// False when the candle cannot be exact: a recorded gap overlaps its interval, or its
    /// interval began before the point the run resumed from (the trades before it went into
    /// an earlier run). Written only when false.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub complete: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// A hole in a stream that the feeder could not fill: trades published after
/// `after_trade_id` and before `before_trade_id` may be missing from the store.
///
/// Written to every writer like trades and candles, so that the holes in a store can always
/// be listed from the store itself. Where a bound is not known (the stream has not resumed
/// yet when the hole is recorded), it is `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// Registry name of the venue.
    pub exchange: Arc<str>,
    /// Normalized symbol.
    pub symbol: Symbol,
    /// The last trade stored before the hole.
    pub after_trade_id: TradeId,
    /// The first trade stored after the hole, where known.
    pub before_trade_id: Option<TradeId>,
    /// The time of `after_trade_id`.
    pub from: Timestamp,
    /// The time of `before_trade_id`, where known.
    pub to: Option<Timestamp>,
    /// Why the hole could not be filled.
    pub reason: GapReason,
}

/// Why a [`Gap`] could not be filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The venue's REST API cannot reach back that far (it serves only its newest trades).
    VenueLimit,
    /// The backfill kept failing and was given up.
    BackfillFailed,
    /// The exchange runs without backfill (no REST API, or `backfill: false`).
    NoBackfill,
}

impl GapReason {
    /// The name used in the JSON contract (`venue_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::VenueLimit => "venue_limit",
            GapReason::BackfillFailed => "backfill_failed",
            GapReason::NoBackfill => "no_backfill",
        }
    }
}

impl std::fmt::Display for GapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What flows from the pipeline to the writers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A trade.
    Trade(Trade),
    /// A closed candle.
    Candle(Candle),
    /// A hole the feeder could not fill.
    Gap(Gap),
}

impl Event {
    /// The venue the event came from.
    pub fn exchange(&self) -> &str {
        match self {
            Event::Trade(t) => &t.exchange,
            Event::Candle(c) => &c.exchange,
            Event::Gap(g) => &g.exchange,
        }
    }

    /// The event's symbol.
    pub fn symbol(&self) -> &Symbol {
        match self {
            Event::Trade(t) => &t.symbol,
            Event::Candle(c) => &c.symbol,
            Event::Gap(g) => &g.symbol,
        }
    }

    /// The time the event is filed under: the trade time, a candle's open time, or the
    /// start of a gap.
    pub fn time(&self) -> Timestamp {
        match self {
            Event::Trade(t) => t.timestamp,
            Event::Candle(c) => c.open_time,
            Event::Gap(g) => g.from,
        }
    }

    /// `trade`, `candle` or `gap`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Trade(_) => "trade",
            Event::Candle(_) => "candle",
            Event::Gap(_) => "gap",
        }
    }
}

/// Error for a decimal that cannot be read exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid decimal {0:?}")]
pub struct DecimalError(String);

/// Parses a venue's decimal string exactly: plain (`"43210.12"`) or in exponent form
/// (`"1e-8"`, `"9.2E-7"`). Never goes through floating point; more than 28 significant digits
/// is an error rather than a rounding.
pub fn parse_decimal(s: &str) -> Result<Decimal, DecimalError> {
    let err = || DecimalError(s.chars().take(64).collect());
    if s.is_empty() || s.len() > 64 {
        return Err(err());
    }
    if s.bytes().any(|b| b == b'e' || b == b'E') {
        let d = Decimal::from_scientific(s).map_err(|_| err())?;
        return Ok(d.normalize());
    }
    if s.bytes().any(|b| b == b'_') {
        return Err(err());
    }
    Decimal::from_str_exact(s).map_err(|_| err())
}

impl FromStr for Side {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            "unknown" => Ok(Side::Unknown),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_in_both_forms() {
        assert_eq!(parse_decimal("43210.12").unwrap().to_string(), "43210.12");
        assert_eq!(
            parse_decimal("0.00000001").unwrap().to_string(),
            "0.00000001"
        );
        assert_eq!(parse_decimal("1e-8").unwrap().to_string(), "0.00000001");
        assert_eq!(parse_decimal("9.2E-7").unwrap().to_string(), "0.00000092");
        assert_eq!(parse_decimal("1.5e3").unwrap().to_string(), "1500");
        assert_eq!(parse_decimal("100.000").unwrap().to_string(), "100.000");
        for bad in ["", "abc", "1.2.3", "1e", "0x10", "1_000", "NaN"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trade_ids_compare_numerically() {
        let a = TradeId::new("99");
        let b = TradeId::from_u64(100);
        assert_eq!(b.as_str(), "100");
        assert_eq!(a.cmp_numeric(&b), Some(std::cmp::Ordering::Less));
        assert_eq!(TradeId::new("abc").cmp_numeric(&b), None);
        assert_eq!(TradeId::from_u64(0).as_str(), "0");
        assert_eq!(TradeId::from_u64(u64::MAX).as_str(), "18446744073709551615");
    }
}
