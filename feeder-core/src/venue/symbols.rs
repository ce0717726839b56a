//! A venue's own names for the configured symbols.

use std::collections::HashMap;

use crate::config::{ConfigError, ExchangeConfig};
use crate::error::ParseError;
use crate::model::Symbol;

use super::read::truncate;

/// The configured symbols by the venue's own name for them (`BTCUSDT`, `tBTCUST`, `XBT/USD`).
///
/// Built from the configuration because a venue name such as `BTCUSDT` does not say where the
/// base ends (`BTC-USDT` or `BTCU-SDT`): names are never split by rule. Two configured
/// symbols that the venue spells the same are refused when the table is built. Looking a
/// name up allocates nothing; it runs for every trade.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    by_venue: HashMap<Box<str>, Symbol>,
    /// The same entries while there are at most [`SCAN_NAMES`]: comparing a few short names
    /// costs less than hashing one.
    few: Vec<(Box<str>, Symbol)>,
}

/// Most names looked up by comparing them one by one (see [`SymbolTable`]).
const SCAN_NAMES: usize = 8;

impl SymbolTable {
    /// The table of `cfg`'s symbols, each under every name `names` gives for it (a venue that
    /// writes a pair two ways, `XBT/USD` and `XBTUSD`, gives both). An error names the entry's
    /// `symbols`.
    pub fn new(
        cfg: &ExchangeConfig,
        names: impl Fn(&Symbol) -> Vec<String>,
    ) -> Result<Self, ConfigError> {
        let mut by_venue = HashMap::with_capacity(cfg.symbols.len());
        for s in &cfg.symbols {
            for name in names(s) {
                match by_venue.get(name.as_str()) {
                    Some(prev) if prev != s => {
                        return Err(cfg.invalid(
                            "symbols",
                            format!("{prev} and {s} are both called {name:?} on this venue"),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        by_venue.insert(name.into_boxed_str(), s.clone());
                    }
                }
            }
        }
        let few = if by_venue.len() <= SCAN_NAMES {
            by_venue
                .iter()
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self { by_venue, few })
    }

    /// The configured symbol the venue calls `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Symbol> {
        if self.by_venue.len() <= SCAN_NAMES {
            return self
                .few
                .iter()
                .find(|(n, _)| n.as_bytes() == name.as_bytes())
                .map(|(_, s)| s);
        }
        self.by_venue.get(name)
    }

    /// The same, as a parse result: an unknown name is [`ParseError::UnknownSymbol`].
    #[inline]
    pub fn resolve(&self, name: &str) -> Result<Symbol, ParseError> {
        self.get(name)
            .cloned()
            .ok_or_else(|| ParseError::UnknownSymbol(truncate(name).to_owned()))
    }

    /// How many venue names the table holds.
    pub fn len(&self) -> usize {
        self.by_venue.len()
    }

    /// Whether the table holds no name.
    pub fn is_empty(&self) -> bool {
        self.by_venue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few names are compared one by one, many are hashed: both find the same symbols.
    #[test]
    fn symbol_tables_small_and_large_find_every_name() {
        for n in [1usize, 3, SCAN_NAMES, SCAN_NAMES + 1, 40] {
            let names: Vec<String> = (0..n).map(|i| format!("C{i:02}-USD")).collect();
            let symbols = names.iter().map(|s| s.parse().unwrap()).collect();
            let cfg = ExchangeConfig::new("x", symbols);
            let table = SymbolTable::new(&cfg, |s| vec![s.as_str().replace('-', "")]).unwrap();
            assert_eq!(table.len(), n);
            for name in &names {
                let venue = name.replace('-', "");
                assert_eq!(table.get(&venue).map(|s| s.as_str()), Some(name.as_str()));
            }
            assert!(table.get("C99USD").is_none());
            assert!(matches!(
                table.resolve("nope"),
                Err(ParseError::UnknownSymbol(_))
            ));
        }
    }

    #[test]
    fn two_symbols_under_one_venue_name_are_refused_naming_the_entry() {
        let cfg = ExchangeConfig::new(
            "acme",
            vec!["BTC-USDT".parse().unwrap(), "BTCU-SDT".parse().unwrap()],
        );
        let e = SymbolTable::new(&cfg, |s| vec![s.as_str().replace('-', "")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("exchanges[0] (acme).symbols: "), "{e}");
        assert!(e.contains("\"BTCUSDT\""), "{e}");
    }
}
