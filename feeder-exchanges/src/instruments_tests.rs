//! Every venue's instrument list, read from a captured real-format answer: the instruments
//! that trade come out normalized (the venue's asset names turned back into the usual codes),
//! the halted, delisted and pre-listed ones do not, and an error answer is an error. A venue
//! whose list asks one more request per instrument (Gemini) has each answer captured under
//! `test_data/<venue>/instruments_details/<last path segment>.json`, and is read through both.

use feeder_core::exchange::{HttpRequest, InstrumentsVenue};
use feeder_core::feeder::Registry;
use feeder_core::ParseError;

use crate::test_support::{config, payload};

/// The registered venue `name`'s instrument list, at `rest_url`.
fn lister(name: &str, rest_url: &str) -> Box<dyn InstrumentsVenue> {
    let mut registry = Registry::new();
    crate::register(&mut registry);
    let factory = registry.exchange(name).unwrap();
    let mut cfg = config(name, &[], Some(rest_url), None);
    cfg.symbols.clear();
    factory
        .instruments(&cfg)
        .unwrap_or_else(|| panic!("{name} lists no instruments"))
        .unwrap()
}

/// The registered venue `name`'s instrument list for a config of `symbols`.
fn lister_for(name: &str, symbols: &[&str]) -> Box<dyn InstrumentsVenue> {
    let registry = {
        let mut r = Registry::new();
        crate::register(&mut r);
        r
    };
    let cfg = config(name, symbols, Some("http://127.0.0.1:9/p"), None);
    registry
        .exchange(name)
        .unwrap()
        .instruments(&cfg)
        .unwrap_or_else(|| panic!("{name} lists no instruments"))
        .unwrap()
}

/// The stored detail answer a detail request asks for: the file named by its last segment.
fn detail_payload(name: &str, req: &HttpRequest) -> Vec<u8> {
    let last = req.url.path_segments().and_then(|mut s| s.next_back());
    payload(
        name,
        &format!("instruments_details/{}.json", last.unwrap_or_default()),
    )
}

/// What `fetch_instruments` would make of the stored answers: the list, then each detail
/// answer the list's answer asks for.
fn parse(name: &str, file: &str) -> Result<Vec<String>, ParseError> {
    let venue = lister(name, "http://127.0.0.1:9");
    let body = payload(name, file);
    let mut out = Vec::new();
    venue.parse_instruments(&body, &mut out)?;
    for req in venue.detail_requests(&body)? {
        venue.parse_detail(&detail_payload(name, &req), &mut out)?;
    }
    let mut names: Vec<String> = out.iter().map(ToString::to_string).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The path and query of `req` under the mock prefix.
fn path_and_query(req: &HttpRequest) -> String {
    match req.url.query() {
        Some(q) => format!("{}?{q}", req.url.path()),
        None => req.url.path().to_owned(),
    }
}

#[test]
fn every_venue_lists_what_trades_in_normalized_form() {
    let rows: [(&str, &[&str]); 9] = [
        (
            "bitfinex",
            &[
                "1INCH-USD",
                "1INCH-USDT",
                "AAVE-USD",
                "BTC-EUR",
                "BTC-USD",
                "BTC-USDT",
                "DASH-BTC",
                "ETH-BTC",
                "ETH-USDT",
                "LINK-USDT",
                "TESTBTC-TESTUSD",
                "USDC-USDT",
                "XMR-BTC",
            ],
        ),
        ("kraken", &["BTC-USD", "BTC-USDT", "DOGE-USD", "ETH-EUR"]),
        ("coinbase", &["BTC-USD", "ETH-USDT"]),
        ("bitstamp", &["BTC-USD", "ETH-EUR", "USDT-USD"]),
        ("binance", &["BTC-USDT", "ETH-BTC"]),
        ("bybit", &["BTC-USDT", "ETH-USDC"]),
        ("okx", &["BTC-USDT", "ETH-USDC"]),
        ("huobi", &["BTC-USDT", "ETH-BTC"]),
        // Closed, cancel-only, limit-only and post-only symbols are out, and so is the
        // perpetual `btcgusdperp` although it is open.
        (
            "gemini",
            &["BTC-USD", "DOGE-USD", "ETH-BTC", "ETH-USD", "GUSD-USD"],
        ),
    ];
    for (name, want) in rows {
        let got = parse(name, "instruments.json").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want.to_vec(), "{name}");
    }
}

#[test]
fn every_venue_reports_an_error_answer_as_an_error() {
    for name in [
        "bitfinex", "kraken", "coinbase", "binance", "bybit", "okx", "huobi", "gemini",
    ] {
        let e = parse(name, "instruments_error.json").expect_err(name);
        assert!(
            matches!(e, ParseError::Venue(_) | ParseError::Json(_)),
            "{name}: {e}"
        );
    }
}

#[test]
fn every_venue_asks_its_documented_endpoint_under_the_configured_prefix() {
    let rows = [
        ("bitfinex", "/p/v2/conf/pub:list:pair:exchange"),
        ("kraken", "/p/0/public/AssetPairs"),
        ("coinbase", "/p/products"),
        ("bitstamp", "/p/api/v2/trading-pairs-info/"),
        ("binance", "/p/api/v3/exchangeInfo"),
        ("bybit", "/p/v5/market/instruments-info?category=spot"),
        ("okx", "/p/api/v5/public/instruments?instType=SPOT"),
        ("huobi", "/p/v1/common/symbols"),
        ("gemini", "/p/v1/symbols"),
    ];
    for (name, want) in rows {
        let got = path_and_query(&lister(name, "http://127.0.0.1:9/p").instruments_request());
        assert_eq!(got, want, "{name}");
    }
}

/// Only Gemini asks about each instrument; every other venue's list says all it needs.
#[test]
fn only_gemini_asks_for_details_and_only_of_what_its_list_names() {
    for name in [
        "bitfinex", "kraken", "coinbase", "bitstamp", "binance", "bybit", "okx", "huobi",
    ] {
        let body = payload(name, "instruments.json");
        let reqs = lister(name, "http://127.0.0.1:9").detail_requests(&body);
        assert!(reqs.unwrap().is_empty(), "{name}");
    }

    let body = payload("gemini", "instruments.json");
    let all: Vec<String> = lister_for("gemini", &[])
        .detail_requests(&body)
        .unwrap()
        .iter()
        .map(path_and_query)
        .collect();
    assert_eq!(all.len(), 10, "{all:?}");
    assert_eq!(all[0], "/p/v1/symbols/details/btcusd");
    assert!(all.contains(&"/p/v1/symbols/details/btcgusdperp".to_owned()));

    // With symbols configured, only theirs: Gemini allows 120 public requests a minute.
    // One that Gemini does not name is not asked about, so it stays unlisted.
    let some: Vec<String> = lister_for("gemini", &["ETH-BTC", "ZEC-USD", "NOPE-USD"])
        .detail_requests(&body)
        .unwrap()
        .iter()
        .map(path_and_query)
        .collect();
    assert_eq!(
        some,
        [
            "/p/v1/symbols/details/ethbtc",
            "/p/v1/symbols/details/zecusd"
        ]
    );
}

/// Gemini's detail answers: an error object is an error, not a symbol that does not trade,
/// and details without a status are refused rather than guessed.
#[test]
fn a_gemini_detail_error_or_a_detail_without_status_is_an_error() {
    let venue = lister("gemini", "http://127.0.0.1:9");
    let mut out = Vec::new();
    let e = venue
        .parse_detail(
            &payload("gemini", "instruments_details_error.json"),
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m.starts_with("InvalidSymbol: Supplied value")),
        "{e}"
    );
    let e = venue
        .parse_detail(
            br#"{"symbol":"BTCUSD","base_currency":"BTC","quote_currency":"USD"}"#,
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Field {
                field: "status",
                ..
            }
        ),
        "{e}"
    );
    assert!(venue.parse_detail(b"[1,2]", &mut out).is_err());
    assert!(out.is_empty(), "{out:?}");
}
