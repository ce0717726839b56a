//! Small pieces every venue uses: lenient integer fields, exact decimals, venues' own asset
//! names, endpoint overrides and the choice of driver.
// With one venue compiled out, some helpers go unused; that is expected.
#![cfg_attr(not(all(feature = "bitstamp", feature = "coinbase")), allow(dead_code))]

use std::fmt;
use std::sync::Arc;

use feeder_core::config::{ConfigError, ExchangeConfig};
use feeder_core::exchange::{
    Exchange, PollExchange, PollVenue, StreamExchange, StreamVenue, Transport,
};
use feeder_core::model::{parse_decimal, Side, Timestamp, Trade};
use feeder_core::ParseError;
use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use url::Url;

/// Sent with every REST request: some venues (Coinbase) refuse requests without one.
pub(crate) const USER_AGENT: &str = concat!("crypto-feeder/", env!("CARGO_PKG_VERSION"));

/// An unsigned integer that a venue writes either as a JSON number (`1727791043`) or as a
/// string of digits (`"1727791043"`). Bitstamp does both, sometimes for the same field on
/// different endpoints, and venues change the type of ids and times over the years: every
/// numeric trade id and time is read with this, so a change of type loses nothing. Reading
/// either without allocating keeps the parsers simple. Negative numbers, fractions, numbers
/// beyond 64 bits and anything but digits in a string are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Uint(pub u64);

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
/// JSON number (`2290000000412342771`). Venues switch between the two over the years; either
/// is read without allocating. A number must be whole and fit 64 bits, as with [`Uint`]; a
/// string is kept verbatim, so ids that are not numbers still pass through.
#[cfg(any(feature = "bybit", feature = "okx"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextId<'a> {
    /// Written as a string.
    Text(&'a str),
    /// Written as a number.
    Number(u64),
}

#[cfg(any(feature = "bybit", feature = "okx"))]
impl TextId<'_> {
    /// The trade id, refusing an empty or overlong string.
    pub(crate) fn trade_id(
        self,
        field: &'static str,
    ) -> Result<feeder_core::model::TradeId, ParseError> {
        match self {
            TextId::Number(n) => Ok(feeder_core::model::TradeId::from_u64(n)),
            TextId::Text(s) if s.is_empty() || s.len() > 64 => {
                Err(ParseError::field(field, "empty or too long"))
            }
            TextId::Text(s) => Ok(feeder_core::model::TradeId::new(s)),
        }
    }
}

#[cfg(any(feature = "bybit", feature = "okx"))]
impl<'de: 'a, 'a> Deserialize<'de> for TextId<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextIdVisitor(std::marker::PhantomData))
    }
}

#[cfg(any(feature = "bybit", feature = "okx"))]
struct TextIdVisitor<'a>(std::marker::PhantomData<&'a ()>);

#[cfg(any(feature = "bybit", feature = "okx"))]
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
/// a small trade message. A payload that is not UTF-8 is read as bytes, so the error says where.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    }
}

/// An exact decimal from a wire field, plain or in exponent form.
pub(crate) fn decimal(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    parse_decimal(s).map_err(|e| ParseError::field(field, e))
}

/// A required field that was absent.
pub(crate) fn missing(field: &'static str) -> ParseError {
    ParseError::field(field, "missing")
}

/// Seconds since the epoch as a timestamp, rejecting values that do not fit.
pub(crate) fn unix_secs(field: &'static str, secs: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(secs)
        .ok()
        .filter(|s| s.checked_mul(1_000_000_000).is_some())
        .map(Timestamp::from_unix_secs)
        .ok_or_else(|| ParseError::field(field, format_args!("{secs} is out of range")))
}

/// Microseconds since the epoch as a timestamp with six fractional digits.
pub(crate) fn unix_micros(field: &'static str, micros: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(micros)
        .ok()
        .filter(|m| m.checked_mul(1_000).is_some())
        .map(Timestamp::from_unix_micros)
        .ok_or_else(|| ParseError::field(field, format_args!("{micros} is out of range")))
}

/// Milliseconds since the epoch as a timestamp with three fractional digits.
pub(crate) fn unix_millis(field: &'static str, millis: u64) -> Result<Timestamp, ParseError> {
    i64::try_from(millis)
        .ok()
        .filter(|m| m.checked_mul(1_000_000).is_some())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| ParseError::field(field, format_args!("{millis} is out of range")))
}

/// The configured symbols by the venue's own name for them.
///
/// Built from the configuration because a venue name such as `BTCUSDT` does not say where the
/// base ends (`BTC-USDT` or `BTCU-SDT`): names are never split by rule. Two configured
/// symbols that the venue spells the same are rejected.
#[derive(Clone, Debug, Default)]
pub(crate) struct SymbolTable {
    by_venue: std::collections::HashMap<Box<str>, feeder_core::Symbol>,
    /// The same entries while there are at most [`SCAN_NAMES`]: comparing a few short names
    /// costs less than hashing one, and this lookup runs for every trade.
    few: Vec<(Box<str>, feeder_core::Symbol)>,
}

/// Most names looked up by comparing them one by one (see [`SymbolTable`]).
const SCAN_NAMES: usize = 8;

impl SymbolTable {
    /// The table of `cfg`'s symbols, each under every name `names` gives for it.
    pub(crate) fn new(
        cfg: &ExchangeConfig,
        names: impl Fn(&feeder_core::Symbol) -> Vec<String>,
    ) -> Result<Self, ConfigError> {
        let mut by_venue = std::collections::HashMap::with_capacity(cfg.symbols.len());
        for s in &cfg.symbols {
            for name in names(s) {
                match by_venue.get(name.as_str()) {
                    Some(prev) if prev != s => {
                        return Err(ConfigError::invalid(
                            format!("exchanges[{}].symbols", cfg.name),
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
    pub(crate) fn get(&self, name: &str) -> Option<&feeder_core::Symbol> {
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
    pub(crate) fn resolve(&self, name: &str) -> Result<feeder_core::Symbol, ParseError> {
        self.get(name)
            .cloned()
            .ok_or_else(|| ParseError::UnknownSymbol(truncate(name).to_owned()))
    }
}

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
                return Err(ConfigError::invalid(
                    format!("exchanges[{}].symbols", cfg.name),
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

/// An RFC 3339 time, keeping the venue's precision.
pub(crate) fn rfc3339(field: &'static str, s: &str) -> Result<Timestamp, ParseError> {
    Timestamp::parse_rfc3339(s).map_err(|e| ParseError::field(field, e))
}

/// `buy` or `sell` as written by a venue.
pub(crate) fn side_word(field: &'static str, s: &str) -> Result<Side, ParseError> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(ParseError::field(
            field,
            format_args!("expected buy or sell, got {:?}", truncate(other)),
        )),
    }
}

/// Keeps venue-supplied text short in error messages.
pub(crate) fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The endpoint to use: the configured override, or the venue's production default. The
/// override must use one of `schemes` (plain schemes are allowed for mocks and proxies).
pub(crate) fn endpoint(
    configured: Option<&Url>,
    default: &str,
    path: &str,
    schemes: &[&str],
) -> Result<Url, ConfigError> {
    let url = match configured {
        Some(u) => u.clone(),
        None => Url::parse(default).map_err(|e| ConfigError::invalid(path, e.to_string()))?,
    };
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::invalid(
            path,
            format!(
                "unsupported scheme {:?} in {url}; expected one of {}",
                url.scheme(),
                schemes.join(", ")
            ),
        ));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ConfigError::invalid(path, format!("{url} has no host")));
    }
    Ok(url)
}

/// `base` with `segments` appended to its path, so that an override with a path prefix
/// (`http://proxy/bitstamp`) keeps it.
pub(crate) fn join_path(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Wraps a venue in the driver its config asks for: a WebSocket stream (backfilled over the
/// same venue's REST API when enabled) or a REST poll.
pub(crate) fn build_exchange<V>(cfg: &ExchangeConfig, venue: Arc<V>) -> Arc<dyn Exchange>
where
    V: StreamVenue + PollVenue,
{
    match cfg.transport {
        Transport::Websocket => {
            let stream = StreamExchange::new(&cfg.name, venue.clone())
                .with_request_timeout(cfg.request_timeout)
                .with_stale_timeout(cfg.stale_timeout);
            if cfg.backfill {
                Arc::new(stream.with_backfill(venue))
            } else {
                Arc::new(stream)
            }
        }
        Transport::Rest => Arc::new(
            PollExchange::new(&cfg.name, venue, cfg.poll_interval)
                .with_timeout(cfg.request_timeout),
        ),
    }
}

/// The REST endpoint of `cfg` for its instrument list: the override or `default`. The
/// symbols are not looked at (`crypto-feeder symbols` has none).
pub(crate) fn rest_endpoint(cfg: &ExchangeConfig, default: &str) -> Result<Url, ConfigError> {
    endpoint(
        cfg.rest_url.as_ref(),
        default,
        &format!("exchanges[{}].rest_url", cfg.name),
        &["https", "http"],
    )
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

/// Rejects a config without symbols: the venue would connect and stream nothing.
pub(crate) fn require_symbols(cfg: &ExchangeConfig) -> Result<(), ConfigError> {
    if cfg.symbols.is_empty() {
        return Err(ConfigError::invalid(
            format!("exchanges[{}].symbols", cfg.name),
            "at least one symbol is required",
        ));
    }
    Ok(())
}

/// Appends one trade per item, all or nothing: on the first item that cannot be read, what
/// this call appended is removed and the error returned, so a page or a push is either
/// understood whole or reported, never half-appended.
pub(crate) fn append_all<'a, T: 'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Few names are compared one by one, many are hashed: both find the same symbols.
    #[test]
    fn symbol_tables_small_and_large_find_every_name() {
        for n in [1usize, 3, SCAN_NAMES, SCAN_NAMES + 1, 40] {
            let names: Vec<String> = (0..n).map(|i| format!("C{i:02}-USD")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let cfg = crate::test_support::config("x", &refs, None, None);
            let table = SymbolTable::new(&cfg, |s| vec![s.as_str().replace('-', "")]).unwrap();
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
    #[cfg(any(feature = "bybit", feature = "okx"))]
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
    fn endpoint_checks_scheme_and_host() {
        let d = endpoint(None, "https://www.bitstamp.net", "p", &["https", "http"]).unwrap();
        assert_eq!(d.as_str(), "https://www.bitstamp.net/");
        let o = Url::parse("http://127.0.0.1:9000/prefix").unwrap();
        let e = endpoint(Some(&o), "https://x", "p", &["https", "http"]).unwrap();
        assert_eq!(e, o);
        let ws = Url::parse("ws://127.0.0.1:9000").unwrap();
        assert!(endpoint(Some(&ws), "https://x", "p", &["https", "http"]).is_err());
        let nohost = Url::parse("mailto:a@b").unwrap();
        assert!(endpoint(Some(&nohost), "https://x", "p", &["mailto"]).is_err());
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
        assert!(unix_micros("t", u64::MAX).is_err());
        assert_eq!(unix_secs("t", 1).unwrap().unix_nanos(), 1_000_000_000);
        assert_eq!(unix_micros("t", 1).unwrap().digits(), 6);
    }
}
