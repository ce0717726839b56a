//! Kraken's names for a market, which differ by API and by asset age.
//!
//! - WebSocket v2 writes `BTC/USD` (common asset names, a slash).
//! - REST requests take the pair's alternative name, `XBTUSD` (Kraken calls bitcoin `XBT`
//!   and dogecoin `XDG`).
//! - REST answers key the trades by the pair's canonical name, which for assets listed
//!   before 2018 carries an `X` (crypto) or `Z` (fiat) prefix: `XXBTZUSD`, `XETHXXBT`,
//!   `USDTZUSD`; newer pairs have none (`SOLUSD`, `XBTUSDT`).
//!
//! All of them map back only to configured symbols.

use feeder_core::Symbol;

/// Crypto assets with a four-letter `X`-prefixed canonical name.
const LEGACY_CRYPTO: &[&str] = &[
    "XBT", "XDG", "ETH", "ETC", "LTC", "MLN", "REP", "XLM", "XMR", "XRP", "ZEC",
];
/// Fiat currencies with a four-letter `Z`-prefixed canonical name.
const LEGACY_FIAT: &[&str] = &["USD", "EUR", "GBP", "JPY", "CAD", "AUD"];

/// Kraken's REST name of an asset: `BTC` is `XBT`, `DOGE` is `XDG`.
fn rest_asset(asset: &str) -> &str {
    match asset {
        "BTC" => "XBT",
        "DOGE" => "XDG",
        other => other,
    }
}

/// The common name of an asset, as WebSocket v2 writes it: `XBT` is `BTC`, `XDG` is `DOGE`.
fn ws_asset(asset: &str) -> &str {
    match asset {
        "XBT" => "BTC",
        "XDG" => "DOGE",
        other => other,
    }
}

/// The WebSocket v2 symbol: `BTC-USD` is `BTC/USD`.
pub fn to_ws(symbol: &Symbol) -> String {
    format!("{}/{}", ws_asset(symbol.base()), ws_asset(symbol.quote()))
}

/// The REST request pair: `BTC-USD` is `XBTUSD`.
pub fn to_rest(symbol: &Symbol) -> String {
    format!(
        "{}{}",
        rest_asset(symbol.base()),
        rest_asset(symbol.quote())
    )
}

/// The spellings of an asset inside a canonical pair name.
fn canonical_forms(asset: &str) -> Vec<String> {
    let alt = rest_asset(asset);
    let mut forms = vec![alt.to_owned()];
    if LEGACY_CRYPTO.contains(&alt) {
        forms.push(format!("X{alt}"));
    }
    if LEGACY_FIAT.contains(&alt) {
        forms.push(format!("Z{alt}"));
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

/// Every name a WebSocket v2 message may use for `symbol` (`BTC/USD`, and `XBT/USD` as v1
/// wrote it).
pub fn ws_names(symbol: &Symbol) -> Vec<String> {
    let mut names = vec![to_ws(symbol)];
    let v1 = format!(
        "{}/{}",
        rest_asset(symbol.base()),
        rest_asset(symbol.quote())
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
        // Configured in Kraken's own spelling, the stream still says BTC.
        assert_eq!(to_ws(&sym("XBT-EUR")), "BTC/EUR");
        assert!(rest_names(&sym("ETH-BTC")).contains(&"XETHXXBT".to_owned()));
        assert!(rest_names(&sym("USDT-USD")).contains(&"USDTZUSD".to_owned()));
        assert!(rest_names(&sym("BTC-USDT")).contains(&"XBTUSDT".to_owned()));
        assert_eq!(rest_names(&sym("SOL-USD")), ["SOLUSD", "SOLZUSD"]);
        assert_eq!(to_rest(&sym("DOGE-USD")), "XDGUSD");
        assert!(rest_names(&sym("DOGE-USD")).contains(&"XXDGZUSD".to_owned()));
        assert_eq!(to_ws(&sym("DOGE-USD")), "DOGE/USD");
    }
}
