//! Bitfinex spells a trading pair `t` + base + quote when both are three letters
//! (`tBTCUSD`), and `t` + base + `:` + quote otherwise (`tTESTBTC:TESTUSD`, `tLINK:UST`).
//!
//! The assets are in Bitfinex's own names, which for some differ from their usual codes:
//! Tether is `UST`, so `BTC-USDT` is `tBTCUST` (see [`BITFINEX_ASSETS`]). The lengths that
//! decide the colon are those of Bitfinex's names (`USDC-USDT` is `tUDCUST`). Names coming
//! back are looked up among the configured symbols' names, so a trade always carries the
//! configured, normalized symbol.

use feeder_core::Symbol;

use crate::common::BITFINEX_ASSETS;

/// Bitfinex's name for a normalized symbol: `BTC-USD` is `tBTCUSD`, `BTC-USDT` is `tBTCUST`,
/// `TESTBTC-TESTUSD` is `tTESTBTC:TESTUSD`.
pub fn to_venue(symbol: &Symbol) -> String {
    let base = BITFINEX_ASSETS.venue_name(symbol.base());
    let quote = BITFINEX_ASSETS.venue_name(symbol.quote());
    let mut s = String::with_capacity(base.len() + quote.len() + 2);
    s.push('t');
    s.push_str(base);
    if base.len() != 3 || quote.len() != 3 {
        s.push(':');
    }
    s.push_str(quote);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn names_use_bitfinexs_asset_names_and_their_lengths() {
        for (s, v) in [
            ("BTC-USD", "tBTCUSD"),
            ("BTC-USDT", "tBTCUST"),
            ("ETH-USDT", "tETHUST"),
            ("USDC-USDT", "tUDCUST"),
            ("DASH-BTC", "tDSHBTC"),
            ("LINK-USDT", "tLINK:UST"),
            ("TESTBTC-TESTUSD", "tTESTBTC:TESTUSD"),
            ("BTC-CNHT", "tBTC:CNHT"),
            ("X-EUR", "tX:EUR"),
        ] {
            assert_eq!(to_venue(&sym(s)), v, "{s}");
        }
    }
}
