//! Every venue's instrument list, read from a captured real-format answer: the instruments
//! that trade come out normalized (the venue's asset names turned back into the usual codes),
//! the halted, delisted and pre-listed ones do not, and an error answer is an error.

use feeder_core::exchange::InstrumentsVenue;
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

fn parse(name: &str, file: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    lister(name, "http://127.0.0.1:9")
        .parse_instruments(&payload(name, file), &mut out)
        .map(|()| {
            let mut names: Vec<String> = out.iter().map(ToString::to_string).collect();
            names.sort();
            names
        })
}

#[test]
fn every_venue_lists_what_trades_in_normalized_form() {
    let rows: [(&str, &[&str]); 8] = [
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
    ];
    for (name, want) in rows {
        let got = parse(name, "instruments.json").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want.to_vec(), "{name}");
    }
}

#[test]
fn every_venue_reports_an_error_answer_as_an_error() {
    for name in [
        "bitfinex", "kraken", "coinbase", "binance", "bybit", "okx", "huobi",
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
    ];
    for (name, want) in rows {
        let url = lister(name, "http://127.0.0.1:9/p")
            .instruments_request()
            .url;
        let got = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        assert_eq!(got, want, "{name}");
    }
}
