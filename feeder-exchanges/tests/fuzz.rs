//! Fuzzing every venue parser: random bytes and mutations of the real-format payloads in
//! `test_data/` must give a trade list or an error, never a panic, and never trades that
//! break the model's promises. CI runs a small number of cases; raise `PROPTEST_CASES` to fuzz
//! longer. Failing inputs are saved by proptest under `proptest-regressions/` and replayed on
//! every run.

use std::path::Path;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{HttpResponse, PollVenue, StreamVenue};
use feeder_core::model::{Symbol, Timestamp, Trade};
use proptest::prelude::*;

/// A parser behind a closure: bytes in, trades appended, whether it parsed.
type Parser = Box<dyn Fn(&[u8], &mut Vec<Trade>) -> bool>;

/// One venue's two parsers, behind closures so that every venue fits one table.
struct Target {
    name: &'static str,
    stream: Parser,
    rest: Parser,
}

fn symbols() -> Vec<Symbol> {
    ["BTC-USD", "ETH-USD", "BTC-USDT"]
        .iter()
        .map(|s| Symbol::parse(s).unwrap())
        .collect()
}

fn target<V: StreamVenue + PollVenue>(name: &'static str, venue: V) -> Target {
    let venue = std::sync::Arc::new(venue);
    let rest_venue = venue.clone();
    let headers = http::HeaderMap::new();
    Target {
        name,
        stream: Box::new(move |bytes, out| venue.parse(bytes, Timestamp::now(), out).is_ok()),
        rest: Box::new(move |bytes, out| {
            let resp = HttpResponse {
                status: 200,
                headers: &headers,
                body: bytes,
            };
            rest_venue
                .parse_trades(&symbols()[0], &resp, Timestamp::now(), out)
                .is_ok()
        }),
    }
}

// Each venue is pushed under its own feature, so a `vec![]` literal cannot list them.
#[allow(clippy::vec_init_then_push)]
fn targets() -> Vec<Target> {
    let cfg = |name: &str| ExchangeConfig::new(name, symbols());
    #[allow(unused_mut)]
    let mut t = Vec::new();
    #[cfg(feature = "bitstamp")]
    t.push(target(
        "bitstamp",
        feeder_exchanges::bitstamp::BitstampVenue::new(&cfg("bitstamp")).unwrap(),
    ));
    #[cfg(feature = "coinbase")]
    t.push(target(
        "coinbase",
        feeder_exchanges::coinbase::CoinbaseVenue::new(&cfg("coinbase")).unwrap(),
    ));
    #[cfg(feature = "bitfinex")]
    t.push(target(
        "bitfinex",
        feeder_exchanges::bitfinex::BitfinexVenue::new(&cfg("bitfinex")).unwrap(),
    ));
    #[cfg(feature = "gemini")]
    t.push(target(
        "gemini",
        feeder_exchanges::gemini::GeminiVenue::new(&cfg("gemini")).unwrap(),
    ));
    #[cfg(feature = "huobi")]
    t.push(target(
        "huobi",
        feeder_exchanges::huobi::HuobiVenue::new(&cfg("huobi")).unwrap(),
    ));
    #[cfg(feature = "binance")]
    t.push(target(
        "binance",
        feeder_exchanges::binance::BinanceVenue::new(&cfg("binance")).unwrap(),
    ));
    #[cfg(feature = "bybit")]
    t.push(target(
        "bybit",
        feeder_exchanges::bybit::BybitVenue::new(&cfg("bybit")).unwrap(),
    ));
    #[cfg(feature = "okx")]
    t.push(target(
        "okx",
        feeder_exchanges::okx::OkxVenue::new(&cfg("okx")).unwrap(),
    ));
    #[cfg(feature = "kraken")]
    t.push(target(
        "kraken",
        feeder_exchanges::kraken::KrakenVenue::new(&cfg("kraken")).unwrap(),
    ));
    t
}

/// The captured payloads of a venue.
fn corpus(venue: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(venue);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Trades that parsed must keep the model's promises.
fn check(venue: &str, trades: &[Trade]) {
    for t in trades {
        assert_eq!(&*t.exchange, venue);
        assert!(!t.trade_id.as_str().is_empty(), "empty trade id: {t:?}");
        // Exact decimals render without exponent and parse back to themselves.
        for d in [t.price, t.amount] {
            let text = d.to_string();
            assert!(!text.contains(['e', 'E']), "{text}");
            assert_eq!(feeder_core::model::parse_decimal(&text).unwrap(), d);
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize, usize),
    Insert(usize, Vec<u8>),
    Number(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Cut(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "1e400",
                "-0",
                "99999999999999999999999999999999999",
                "0.0000000000000000000000000000001",
                "NaN",
                "18446744073709551616",
                "-1",
                "\"\"",
                "null",
                "[]",
                "{}",
                "1E-7",
            ])
        )
            .prop_map(|(i, s)| Mutation::Number(i, s)),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let at = |i: usize| {
            if bytes.is_empty() {
                0
            } else {
                i % (bytes.len() + 1)
            }
        };
        match m {
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] ^= b | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Cut(i, n) => {
                let i = at(*i);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Insert(i, b) => {
                let i = at(*i);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Number(i, s) => {
                // Replace the digit run at or after `i` with a hostile number.
                let start = bytes
                    .iter()
                    .skip(at(*i))
                    .position(u8::is_ascii_digit)
                    .map(|p| p + at(*i));
                if let Some(start) = start {
                    let end = bytes[start..]
                        .iter()
                        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                        .map_or(bytes.len(), |p| start + p);
                    bytes.splice(start..end, s.bytes());
                }
            }
        }
    }
    bytes
}

fn run_all(bytes: &[u8]) {
    for t in targets() {
        let mut out = Vec::new();
        if (t.stream)(bytes, &mut out) {
            check(t.name, &out);
        }
        out.clear();
        if (t.rest)(bytes, &mut out) {
            check(t.name, &out);
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let all: Vec<Vec<u8>> = targets().iter().flat_map(|t| corpus(t.name)).collect();
        prop_assume!(!all.is_empty());
        let base = all[pick.index(all.len())].clone();
        run_all(&apply(base, &muts));
    }
}

#[test]
fn every_venue_has_a_corpus() {
    for t in targets() {
        assert!(
            corpus(t.name).len() >= 5,
            "{} needs real-format payloads",
            t.name
        );
    }
}

#[test]
fn huge_and_deeply_nested_payloads_are_errors_not_crashes() {
    let deep = "[".repeat(100_000);
    let wide = format!("[{}]", "1,".repeat(200_000) + "1");
    for bytes in [deep.as_bytes(), wide.as_bytes(), &[0xff, 0xfe, 0x00][..]] {
        for t in targets() {
            let mut out = Vec::new();
            assert!(!(t.stream)(bytes, &mut out) || out.is_empty(), "{}", t.name);
        }
    }
}
