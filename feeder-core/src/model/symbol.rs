//! Normalized `BASE-QUOTE` symbols.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A normalized market symbol, `BASE-QUOTE` in upper case (`BTC-USD`, `ETH-USDT`).
///
/// Cheap to clone (a shared string), so every trade can carry one without allocating.
/// Venues map it to and from their own spelling (`btcusd`, `XBT/USD`, `tBTCUSD`, ...).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    text: Arc<str>,
    dash: u8,
}

/// Error for a symbol that is not `BASE-QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {0:?}: expected BASE-QUOTE in upper case, such as BTC-USD")]
pub struct SymbolError(String);

impl Symbol {
    /// Parses `BASE-QUOTE`. Both parts are 1 to 20 upper-case ASCII letters or digits.
    pub fn parse(s: &str) -> Result<Self, SymbolError> {
        let err = || SymbolError(s.chars().take(64).collect());
        let (base, quote) = s.split_once('-').ok_or_else(err)?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 20
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        if !ok(base) || !ok(quote) {
            return Err(err());
        }
        Ok(Self {
            text: Arc::from(s),
            dash: base.len() as u8,
        })
    }

    /// Builds a symbol from its parts, upper-casing them (`btc`, `usd` gives `BTC-USD`).
    pub fn new(base: &str, quote: &str) -> Result<Self, SymbolError> {
        Self::parse(&format!(
            "{}-{}",
            base.to_ascii_uppercase(),
            quote.to_ascii_uppercase()
        ))
    }

    /// The base asset (`BTC` in `BTC-USD`).
    pub fn base(&self) -> &str {
        &self.text[..usize::from(self.dash)]
    }

    /// The quote asset (`USD` in `BTC-USD`).
    pub fn quote(&self) -> &str {
        &self.text[usize::from(self.dash) + 1..]
    }

    /// The normalized form, `BASE-QUOTE`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl std::str::FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed inside the visit of the string, so that a config error is placed on the
        // symbol itself (see `TextVisitor`).
        d.deserialize_str(crate::model::interval::TextVisitor {
            expecting: "a symbol such as BTC-USD",
            parse: Symbol::parse,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits() {
        let s = Symbol::parse("BTC-USDT").unwrap();
        assert_eq!((s.base(), s.quote()), ("BTC", "USDT"));
        assert_eq!(Symbol::new("eth", "usd").unwrap().as_str(), "ETH-USD");
    }

    #[test]
    fn rejects_non_normalized_forms() {
        for s in [
            "btc-usd",
            "BTCUSD",
            "BTC-",
            "-USD",
            "BTC-USD-X",
            "BTC/USD",
            "",
        ] {
            assert!(Symbol::parse(s).is_err(), "{s}");
        }
    }
}
