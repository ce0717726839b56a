//! Bitstamp spells a market as its two assets in lower case, run together (`btcusd`).

use std::collections::HashMap;

use feeder_core::config::ConfigError;
use feeder_core::Symbol;

/// Bitstamp's name for a normalized symbol: `BTC-USD` is `btcusd`.
pub fn to_venue(symbol: &Symbol) -> String {
    let mut s = String::with_capacity(symbol.base().len() + symbol.quote().len());
    s.push_str(symbol.base());
    s.push_str(symbol.quote());
    s.make_ascii_lowercase();
    s
}

/// The reverse map, from Bitstamp's names back to the configured symbols.
///
/// It is built from the configured symbols because `btcusd` alone does not say where the base
/// ends; a pair whose name two configured symbols share (`AB-CD` and `ABC-D`) is rejected.
#[derive(Clone, Debug, Default)]
pub struct SymbolMap {
    by_venue: HashMap<Box<str>, Symbol>,
}

impl SymbolMap {
    /// The map for `symbols`.
    pub fn new(symbols: &[Symbol]) -> Result<Self, ConfigError> {
        let mut by_venue = HashMap::with_capacity(symbols.len());
        for s in symbols {
            let name = to_venue(s);
            if let Some(prev) = by_venue.get(name.as_str()) {
                if prev != s {
                    return Err(ConfigError::invalid(
                        "exchanges[bitstamp].symbols",
                        format!("{prev} and {s} are both called {name:?} on Bitstamp"),
                    ));
                }
                continue;
            }
            by_venue.insert(name.into_boxed_str(), s.clone());
        }
        Ok(Self { by_venue })
    }

    /// The configured symbol Bitstamp calls `venue`.
    pub fn from_venue(&self, venue: &str) -> Option<&Symbol> {
        self.by_venue.get(venue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn maps_both_ways() {
        let symbols = [sym("BTC-USD"), sym("ETH-EUR"), sym("USDC-USDT")];
        let map = SymbolMap::new(&symbols).unwrap();
        for (s, v) in symbols.iter().zip(["btcusd", "etheur", "usdcusdt"]) {
            assert_eq!(to_venue(s), v);
            assert_eq!(map.from_venue(v), Some(s));
        }
        assert_eq!(map.from_venue("ltcusd"), None);
        assert_eq!(map.from_venue("BTCUSD"), None);
    }

    #[test]
    fn ambiguous_names_are_rejected() {
        assert!(SymbolMap::new(&[sym("AB-CD"), sym("ABC-D")]).is_err());
        // The same symbol twice is harmless.
        assert!(SymbolMap::new(&[sym("BTC-USD"), sym("BTC-USD")]).is_ok());
    }
}
