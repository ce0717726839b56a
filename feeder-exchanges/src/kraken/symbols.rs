//! Kraken's names for a market, which differ by API and by asset age.
//!
//! - WebSocket v2 writes `BTC/USD`: the usual codes, a slash.
//! - REST requests take the pair's alternative name, `XBTUSD`, in Kraken's own asset names
//!   (bitcoin is `XBT`, dogecoin `XDG`, from the alias table the venues share).
//! - REST answers key the trades by the pair's canonical name, which for assets listed
//!   before 2018 carries an `X` (crypto) or `Z` (fiat) prefix: `XXBTZUSD`, `XETHXXBT`,
//!   `USDTZUSD`; newer pairs have none (`SOLUSD`, `XBTUSDT`, `XDGUSD`).
//!
//! All of them map back only to configured symbols, which use the usual codes: a trade of
//! `XXBTZUSD` is written as `BTC-USD`.

use feeder_core::Symbol;

use crate::common::KRAKEN_ASSETS;

/// Crypto assets with a four-letter `X`-prefixed canonical name, by Kraken's names.
const LEGACY_CRYPTO: &[&str] = &[
    "XBT", "XDG", "ETH", "ETC", "LTC", "MLN", "REP", "XLM", "XMR", "XRP", "ZEC",
];
/// Fiat currencies with a four-letter `Z`-prefixed canonical name.
const LEGACY_FIAT: &[&str] = &["USD", "EUR", "GBP", "JPY", "CAD", "AUD"];

/// The WebSocket v2 symbol: `BTC-USD` is `BTC/USD`.
pub fn to_ws(symbol: &Symbol) -> String {
    format!("{}/{}", symbol.base(), symbol.quote())
}

/// The REST request pair: `BTC-USD` is `XBTUSD`.
pub fn to_rest(symbol: &Symbol) -> String {
    format!(
        "{}{}",
        KRAKEN_ASSETS.venue_name(symbol.base()),
        KRAKEN_ASSETS.venue_name(symbol.quote())
    )
}

/// The spellings of an asset inside a canonical pair name.
fn canonical_forms(code: &str) -> Vec<String> {
    let name = KRAKEN_ASSETS.venue_name(code);
    let mut forms = vec![name.to_owned()];
    if LEGACY_CRYPTO.contains(&name) {
        forms.push(format!("X{name}"));
    }
    if LEGACY_FIAT.contains(&name) {
        forms.push(format!("Z{name}"));
    }
    forms
}

/// Every name a REST answer may key `symbol`'s trades by: the request name (`XBTUSD`) and
/// the canonical names (`XXBTZUSD`, ...).
pub fn rest_names(symbol: &Symbol) -> Vec<String> {
    let mut names = Vec::new();
    for b in canonical_forms(symbol.base()) {
        for q in canonical_forms(symbol.quote()) {
            names.push(format!("{b}{q}"));
        }
    }
    names
}

/// Every name a WebSocket message may use for `symbol`: `BTC/USD`, and `XBT/USD` as v1
/// wrote it.
pub fn ws_names(symbol: &Symbol) -> Vec<String> {
    let mut names = vec![to_ws(symbol)];
    let v1 = format!(
        "{}/{}",
        KRAKEN_ASSETS.venue_name(symbol.base()),
        KRAKEN_ASSETS.venue_name(symbol.quote())
    );
    if !names.contains(&v1) {
        names.push(v1);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn names_of_old_and_new_pairs() {
        let btc = sym("BTC-USD");
        assert_eq!(to_ws(&btc), "BTC/USD");
        assert_eq!(to_rest(&btc), "XBTUSD");
        assert!(rest_names(&btc).contains(&"XXBTZUSD".to_owned()));
        assert!(rest_names(&btc).contains(&"XBTUSD".to_owned()));
        assert_eq!(ws_names(&btc), ["BTC/USD", "XBT/USD"]);
        assert!(rest_names(&sym("ETH-BTC")).contains(&"XETHXXBT".to_owned()));
        assert!(rest_names(&sym("USDT-USD")).contains(&"USDTZUSD".to_owned()));
        assert!(rest_names(&sym("BTC-USDT")).contains(&"XBTUSDT".to_owned()));
        assert_eq!(rest_names(&sym("SOL-USD")), ["SOLUSD", "SOLZUSD"]);
        assert_eq!(to_rest(&sym("DOGE-USD")), "XDGUSD");
        assert!(rest_names(&sym("DOGE-USD")).contains(&"XXDGZUSD".to_owned()));
        assert_eq!(to_ws(&sym("DOGE-USD")), "DOGE/USD");
        assert!(rest_names(&sym("DOGE-USD")).contains(&"XDGUSD".to_owned()));
        assert_eq!(ws_names(&sym("DOGE-USD")), ["DOGE/USD", "XDG/USD"]);
        assert_eq!(to_ws(&sym("BTC-USDT")), "BTC/USDT");
        assert_eq!(to_rest(&sym("BTC-USDT")), "XBTUSDT");
    }
}
