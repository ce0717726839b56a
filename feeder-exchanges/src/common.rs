//! Small pieces the bundled venues share beyond the public readers of
//! [`feeder_core::venue::read`]: venues' own asset names and instrument list requests.
// With one venue compiled out, some helpers go unused; that is expected.
#![cfg_attr(not(all(feature = "bitstamp", feature = "coinbase")), allow(dead_code))]

use feeder_core::config::{ConfigError, ExchangeConfig};
use url::Url;

// The readers every venue's parser uses, public in `feeder-core` so that a venue of another
// crate reads its payloads the same way. With venues compiled out, some go unused.
#[cfg(any(feature = "bybit", feature = "okx"))]
pub(crate) use feeder_core::venue::read::TextId;
#[allow(unused_imports)]
pub(crate) use feeder_core::venue::read::{
    append_all, decimal, from_json, join_path, missing, rfc3339, side_word, truncate, unix_micros,
    unix_millis, unix_secs, Uint,
};
#[allow(unused_imports)]
pub(crate) use feeder_core::venue::{SymbolTable, USER_AGENT};

/// One venue's own names for assets it does not call by their usual code: Bitfinex's `UST`
/// for Tether (`USDT`), Kraken's `XBT` for bitcoin (`BTC`).
///
/// A normalized symbol always uses the usual code, on every venue: `BTC-USDT` is bitcoin
/// against Tether everywhere, and it is what the configuration names and what trades carry.
/// A venue's own name is only ever on the wire: it is put in by [`AssetAliases::venue_name`]
/// when a name is built and never comes back out, because incoming names are looked up in
/// tables built from the configured symbols. A configured symbol spelled with a venue's own
/// name is refused ([`AssetAliases::check`]): it would write that venue's trades under a name
/// no other venue uses, or under another asset's code (`UST` is also TerraUSD's).
#[cfg(any(feature = "bitfinex", feature = "kraken"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AssetAliases {
    /// The venue, as error messages name it.
    venue: &'static str,
    /// (usual code, the venue's name) pairs; each code and each name once.
    pairs: &'static [(&'static str, &'static str)],
}

/// Bitfinex's asset names, as its pair names use them (`tBTCUST`, `tLINK:UST`, `tDSHUSD`).
/// Source: Bitfinex REST v2, "Configs" (`GET /v2/conf/pub:map:currency:sym`, the currencies
/// whose names differ from their usual codes), <https://docs.bitfinex.com/reference/rest-public-conf>.
#[cfg(feature = "bitfinex")]
pub(crate) const BITFINEX_ASSETS: AssetAliases = AssetAliases {
    venue: "Bitfinex",
    pairs: &[
        ("USDT", "UST"),
        ("USDC", "UDC"),
        ("DASH", "DSH"),
        ("IOTA", "IOT"),
        ("QTUM", "QTM"),
        ("MANA", "MNA"),
        ("DATA", "DAT"),
    ],
};

/// Kraken's asset names as its REST pairs (`XBTUSD`) and WebSocket v1 names (`XBT/USD`) use
/// them; WebSocket v2 uses the usual codes. The `X` / `Z` prefixes of its canonical names
/// (`XXBTZUSD`) are added on top of these by the Kraken module.
/// Source: Kraken REST API, "Get Asset Info" (`XXBT` has the altname `XBT`, `XXDG` has
/// `XDG`), <https://docs.kraken.com/api/docs/rest-api/get-asset-info>.
#[cfg(feature = "kraken")]
pub(crate) const KRAKEN_ASSETS: AssetAliases = AssetAliases {
    venue: "Kraken",
    pairs: &[("BTC", "XBT"), ("DOGE", "XDG")],
};

#[cfg(any(feature = "bitfinex", feature = "kraken"))]
impl AssetAliases {
    /// The venue's name for the asset `code` (`USDT` is `UST` on Bitfinex); other codes are
    /// their own name.
    pub(crate) fn venue_name(self, code: &str) -> &str {
        self.pairs
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(code, |(_, v)| v)
    }

    /// The usual code of the asset the venue calls `name` (`UST` is `USDT` on Bitfinex).
    pub(crate) fn code_of(self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(_, v)| *v == name)
            .map_or(name, |(c, _)| c)
    }

    /// Refuses configured symbols that name an asset the venue's way instead of by its code,
    /// saying which symbol to configure instead.
    pub(crate) fn check(self, cfg: &ExchangeConfig) -> Result<(), ConfigError> {
        for s in &cfg.symbols {
            let (base, quote) = (self.code_of(s.base()), self.code_of(s.quote()));
            if base != s.base() || quote != s.quote() {
                return Err(cfg.invalid(
                    "symbols",
                    format!(
                        "{s} names an asset as {venue} does; configure {base}-{quote} \
                         (symbols use the usual codes, {venue}'s names are for the wire)",
                        venue = self.venue,
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The REST endpoint of `cfg` for its instrument list: the override or `default`. The
/// symbols are not looked at (`crypto-feeder symbols` has none).
pub(crate) fn rest_endpoint(cfg: &ExchangeConfig, default: &str) -> Result<Url, ConfigError> {
    cfg.rest_endpoint(default)
}

/// A GET of `segments` under `base`, with `query` pairs, as an instrument list request.
pub(crate) fn list_request(
    base: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
) -> feeder_core::exchange::HttpRequest {
    let mut url = join_path(base, segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    feeder_core::exchange::HttpRequest {
        url,
        headers: vec![("User-Agent".to_owned(), USER_AGENT.to_owned())],
    }
}

/// The normalized symbol of a listed instrument, from the usual codes of its assets (any
/// case); `None` when they make none (an asset name with a dot, an empty part): such an
/// instrument cannot be configured, so it is not listed.
pub(crate) fn listed(base: &str, quote: &str) -> Option<feeder_core::Symbol> {
    feeder_core::Symbol::new(base, quote).ok()
}

/// Reads any JSON value as its raw text, for a field converted exactly later: a number's
/// digits as written (never through `f64`), a string with its quotes.
#[cfg(any(feature = "bitfinex", feature = "huobi", feature = "kraken"))]
pub(crate) fn raw_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'de str, D::Error> {
    <&'de serde_json::value::RawValue as serde::Deserialize>::deserialize(d)
        .map(serde_json::value::RawValue::get)
}

/// [`raw_json`] for an optional field: `null` is `None`, as serde reads an absent value.
#[cfg(feature = "huobi")]
pub(crate) fn raw_json_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de str>, D::Error> {
    <Option<&'de serde_json::value::RawValue> as serde::Deserialize>::deserialize(d)
        .map(|raw| raw.map(serde_json::value::RawValue::get))
}

/// Runs a venue's fast path (see [`crate::scan`]) on a frame: `fast` reads the frame's text
/// and appends its trades to `out`, or returns `None` to leave the frame to serde, and then
/// `out` is put back as it was. A frame that is not UTF-8 is left to serde, whose error says
/// where.
pub(crate) fn fast_path(
    frame: &[u8],
    out: &mut Vec<feeder_core::model::Trade>,
    fast: impl FnOnce(&str, &mut Vec<feeder_core::model::Trade>) -> Option<()>,
) -> Option<()> {
    let text = std::str::from_utf8(frame).ok()?;
    let start = out.len();
    let read = fast(text, out);
    if read.is_none() {
        out.truncate(start);
    }
    read
}

/// Rejects a config without symbols: the venue would connect and stream nothing.
pub(crate) fn require_symbols(cfg: &ExchangeConfig) -> Result<(), ConfigError> {
    if cfg.symbols.is_empty() {
        return Err(cfg.invalid("symbols", "at least one symbol is required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table maps one way and back, and a venue name is never also a code in the same
    /// table (or `code_of` would turn a configured code into another asset).
    #[test]
    #[cfg(all(feature = "bitfinex", feature = "kraken"))]
    fn asset_aliases_are_one_to_one() {
        for table in [BITFINEX_ASSETS, KRAKEN_ASSETS] {
            for (i, (code, name)) in table.pairs.iter().enumerate() {
                assert_eq!(table.venue_name(code), *name);
                assert_eq!(table.code_of(name), *code);
                for (j, (c2, n2)) in table.pairs.iter().enumerate() {
                    if i != j {
                        assert!(c2 != code && n2 != name, "{code} {name}");
                    }
                    assert!(c2 != name, "{name} is also a code");
                }
            }
            assert_eq!(table.venue_name("ETH"), "ETH");
            assert_eq!(table.code_of("ETH"), "ETH");
        }
        assert_eq!(BITFINEX_ASSETS.venue_name("USDT"), "UST");
        assert_eq!(BITFINEX_ASSETS.code_of("UST"), "USDT");
        assert_eq!(KRAKEN_ASSETS.venue_name("BTC"), "XBT");
        assert_eq!(KRAKEN_ASSETS.code_of("XDG"), "DOGE");
    }

    #[test]
    #[cfg(all(feature = "bitfinex", feature = "kraken"))]
    fn symbols_in_a_venues_own_asset_names_are_refused() {
        let ok = crate::test_support::config("bitfinex", &["BTC-USDT", "ETH-USD"], None, None);
        assert!(BITFINEX_ASSETS.check(&ok).is_ok());
        let bad = crate::test_support::config("bitfinex", &["ETH-USD", "BTC-UST"], None, None);
        let e = BITFINEX_ASSETS.check(&bad).unwrap_err().to_string();
        assert!(e.contains("BTC-USDT"), "{e}");
        let bad = crate::test_support::config("kraken", &["XBT-EUR"], None, None);
        let e = KRAKEN_ASSETS.check(&bad).unwrap_err().to_string();
        assert!(e.contains("BTC-EUR"), "{e}");
        assert!(KRAKEN_ASSETS
            .check(&crate::test_support::config(
                "kraken",
                &["ETH-XDG"],
                None,
                None
            ))
            .is_err());
    }
}
