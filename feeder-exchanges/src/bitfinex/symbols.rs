//! Bitfinex spells a trading pair `t` + base + quote when both are three letters
//! (`tBTCUSD`), and `t` + base + `:` + quote otherwise (`tTESTBTC:TESTUSD`, `tBTC:CNHT`).
//!
//! Bitfinex has its own asset names (`UST` for Tether, `DSH`, ...): configure the symbol as
//! Bitfinex names the assets (`BTC-UST` for `tBTCUST`).

use std::collections::HashMap;

use feeder_core::Symbol;

/// Bitfinex's name for a normalized symbol: `BTC-USD` is `tBTCUSD`, `BTC-USDT` is
/// `tBTC:USDT`.
pub fn to_venue(symbol: &Symbol) -> String {
    let (base, quote) = (symbol.base(), symbol.quote());
    let mut s = String::with_capacity(base.len() + quote.len() + 2);
    s.push('t');
    s.push_str(base);
    if base.len() != 3 || quote.len() != 3 {
        s.push(':');
    }
    s.push_str(quote);
    s
}

/// The reverse map, from Bitfinex's names back to the configured symbols (so a trade's symbol
/// is a shared clone, not a fresh allocation). The spelling rule is one-to-one: a name with
/// a colon splits there, one without is three letters and three.
#[derive(Clone, Debug, Default)]
pub struct SymbolMap {
    by_venue: HashMap<Box<str>, Symbol>,
}

impl SymbolMap {
    /// The map for `symbols`.
    pub fn new(symbols: &[Symbol]) -> Self {
        Self {
            by_venue: symbols
                .iter()
                .map(|s| (to_venue(s).into_boxed_str(), s.clone()))
                .collect(),
        }
    }

    /// The configured symbol Bitfinex calls `venue`.
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
        let symbols = [
            sym("BTC-USD"),
            sym("ETH-UST"),
            sym("BTC-USDT"),
            sym("TESTBTC-TESTUSD"),
            sym("X-EUR"),
        ];
        let map = SymbolMap::new(&symbols);
        let names = [
            "tBTCUSD",
            "tETHUST",
            "tBTC:USDT",
            "tTESTBTC:TESTUSD",
            "tX:EUR",
        ];
        for (s, v) in symbols.iter().zip(names) {
            assert_eq!(to_venue(s), v);
            assert_eq!(map.from_venue(v), Some(s));
        }
        assert_eq!(map.from_venue("tLTCUSD"), None);
        assert_eq!(map.from_venue("BTCUSD"), None);
        assert_eq!(map.from_venue("tbtcusd"), None);
    }
}
