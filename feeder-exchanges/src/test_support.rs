//! Plumbing shared by the venues' unit tests: fixtures, configs, symbols, and the table
//! runner every venue's websocket payload test goes through, so that a venue's tests hold
//! only what is particular to that venue.

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{Cursor, Frame, HttpResponse, Page, PollVenue, StreamVenue, Transport};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::ParseError;
use http::HeaderMap;
use url::Url;

/// The receive time every venue test hands the parsers, and checks on each trade.
pub const RECEIVED: Timestamp = Timestamp::from_unix_micros(1_727_791_100_000_001);

/// A config entry for `name` with `symbols` and optional endpoint overrides.
pub fn config(
    name: &str,
    symbols: &[&str],
    rest_url: Option<&str>,
    ws_url: Option<&str>,
) -> ExchangeConfig {
    let mut cfg = ExchangeConfig::new(name, symbols.iter().map(|s| sym(s)).collect());
    cfg.rest_url = rest_url.map(|u| Url::parse(u).unwrap());
    cfg.ws_url = ws_url.map(|u| Url::parse(u).unwrap());
    cfg
}

/// A stored payload, `test_data/<venue>/<file>`.
pub fn payload(venue: &str, file: &str) -> Vec<u8> {
    let path = format!("{}/test_data/{venue}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A canonical symbol from its text.
pub fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// The error of a payload that does not match the wire shape.
pub fn is_json(e: &ParseError) -> bool {
    matches!(e, ParseError::Json(_))
}

/// The error of a payload whose shape fits but one of whose values does not.
pub fn is_field(e: &ParseError) -> bool {
    matches!(e, ParseError::Field { .. })
}

/// A REST body for `symbol` served with status 200 and no headers, parsed by `v`.
pub fn parse_rest<V: PollVenue>(
    v: &V,
    symbol: &str,
    body: &[u8],
    out: &mut Vec<Trade>,
) -> Result<Page, ParseError> {
    let headers = HeaderMap::new();
    let resp = HttpResponse {
        status: 200,
        headers: &headers,
        body,
    };
    v.parse_trades(&sym(symbol), &resp, RECEIVED, out)
}

/// The fields of a trade a test pins, in wire-independent form.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub symbol: String,
    pub id: String,
    pub price: String,
    pub amount: String,
    pub side: Side,
    pub time: String,
}

/// A trade as [`Seen`], with `received_at` checked to be the one passed in.
pub fn seen(t: &Trade, exchange: &str, received_at: Timestamp) -> Seen {
    assert_eq!(&*t.exchange, exchange);
    assert_eq!(t.received_at, received_at);
    Seen {
        symbol: t.symbol.to_string(),
        id: t.trade_id.to_string(),
        price: t.price.to_string(),
        amount: t.amount.to_string(),
        side: t.side,
        time: t.timestamp.to_string(),
    }
}

/// Every trade of `out` as [`Seen`], each checked to come from `exchange` at [`RECEIVED`].
pub fn seen_all(out: &[Trade], exchange: &str) -> Vec<Seen> {
    out.iter().map(|t| seen(t, exchange, RECEIVED)).collect()
}

/// The stored REST payload `test_data/<exchange>/<file>` for `symbol`, parsed by `v`.
pub fn parse_rest_fixture<V: PollVenue>(
    v: &V,
    exchange: &str,
    symbol: &str,
    file: &str,
    out: &mut Vec<Trade>,
) -> Result<Page, ParseError> {
    parse_rest(v, symbol, &payload(exchange, file), out)
}

/// Shorthand for an expected trade.
pub fn want(symbol: &str, id: &str, price: &str, amount: &str, side: Side, time: &str) -> Seen {
    Seen {
        symbol: symbol.to_owned(),
        id: id.to_owned(),
        price: price.to_owned(),
        amount: amount.to_owned(),
        side,
        time: time.to_owned(),
    }
}

/// What one row of a websocket payload table must produce.
pub enum Expect {
    /// A data frame carrying exactly these trades.
    Data(Vec<Seen>),
    /// This control frame, and no trade.
    Control(Frame),
    /// An error the check accepts, and no trade.
    Err(fn(&ParseError) -> bool),
}

/// Runs each (file, expectation) row through `v.parse`, the file read from
/// `test_data/<exchange>/`.
pub fn stream_table<V: StreamVenue>(v: &V, exchange: &str, cases: Vec<(&str, Expect)>) {
    stream_table_with(v, exchange, cases, |file| payload(exchange, file));
}

/// [`stream_table`] with the frame of each row made by `frame` from its file name.
pub fn stream_table_with<V: StreamVenue>(
    v: &V,
    exchange: &str,
    cases: Vec<(&str, Expect)>,
    frame: impl Fn(&str) -> Vec<u8>,
) {
    for (file, expect) in cases {
        let mut out = Vec::new();
        let got = v.parse(&frame(file), RECEIVED, &mut out);
        match expect {
            Expect::Data(want) => {
                assert_eq!(got.unwrap(), Frame::Data, "{file}");
                let got = seen_all(&out, exchange);
                assert_eq!(got, want, "{file}");
            }
            Expect::Control(f) => {
                assert_eq!(got.unwrap(), f, "{file}");
                assert!(out.is_empty(), "{file}");
            }
            Expect::Err(check) => {
                let e = got.expect_err(file);
                assert!(check(&e), "{file}: {e}");
                assert!(out.is_empty(), "{file}");
            }
        }
    }
}

/// Runs each (file, expectation) row through `v.parse_trades` for `symbol`, the body read
/// from `test_data/<exchange>/`. A REST answer has no control frames: a row expecting one
/// is a mistake in the table.
pub fn rest_table<V: PollVenue>(v: &V, exchange: &str, symbol: &str, cases: Vec<(&str, Expect)>) {
    for (file, expect) in cases {
        let mut out = Vec::new();
        let got = parse_rest_fixture(v, exchange, symbol, file, &mut out);
        match expect {
            Expect::Data(want) => {
                got.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(seen_all(&out, exchange), want, "{file}");
            }
            Expect::Control(f) => panic!("{file}: a REST answer is never {f:?}"),
            Expect::Err(check) => {
                let e = got.expect_err(file);
                assert!(check(&e), "{file}: {e}");
                assert!(out.is_empty(), "{file}");
            }
        }
    }
}

/// One row of a [`forward_table`]: the symbol, the last trade seen (id and RFC 3339 time),
/// and the URL the venue asks for the page after it (`None`: it cannot page forward from
/// that trade).
pub type Forward<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// Runs each row through `v.forward_request`: the URL must be the one given, and every
/// request goes out with a User-Agent.
pub fn forward_table<V: PollVenue>(v: &V, cases: &[Forward<'_>]) {
    for &(symbol, id, time, want) in cases {
        let after = Cursor {
            trade_id: TradeId::new(id),
            timestamp: Timestamp::parse_rfc3339(time).unwrap(),
        };
        let got = v
            .forward_request(&sym(symbol), &after)
            .map(|r| r.unwrap_or_else(|e| panic!("{symbol} after {id}: {e}")));
        assert_eq!(
            got.as_ref().map(|r| r.url.as_str()),
            want,
            "{symbol} after {id} at {time}"
        );
        if let Some(r) = got {
            assert!(r.headers.iter().any(|(k, _)| k == "User-Agent"), "{symbol}");
        }
    }
}

/// Checks what every bundled venue's factory promises: it is registered as `name`, offers
/// both transports, and builds an exchange called `name` for `symbol` over either.
pub fn assert_factory_builds_both_transports(
    factory: &dyn feeder_core::feeder::ExchangeFactory,
    name: &str,
    symbol: &str,
) {
    assert_eq!(
        factory.transports(),
        vec![Transport::Websocket, Transport::Rest]
    );
    let mut r = feeder_core::feeder::Registry::new();
    crate::register(&mut r);
    assert!(r.exchange(name).is_some(), "{name} is not registered");
    for transport in [Transport::Websocket, Transport::Rest] {
        let mut cfg = config(name, &[symbol], None, None);
        cfg.transport = transport;
        assert_eq!(factory.build(&cfg).unwrap().name(), name);
    }
}

/// Each of `inputs` is refused by both parsers of `v` (or, on the stream, skipped as a message
/// of no known kind), and nothing is appended.
pub fn assert_garbage_refused<V: StreamVenue + PollVenue>(v: &V, symbol: &str, inputs: &[&[u8]]) {
    for input in inputs {
        let mut out = Vec::new();
        let got = v.parse(input, RECEIVED, &mut out);
        assert!(
            matches!(got, Err(_) | Ok(Frame::Ignored | Frame::Unrecognized)),
            "{}: {got:?}",
            String::from_utf8_lossy(input)
        );
        assert!(parse_rest(v, symbol, input, &mut out).is_err());
        assert!(out.is_empty());
    }
}

/// Checks a venue's fast path (see `crate::scan`) against serde on every stored WebSocket
/// payload of `venue` (`test_data/<venue>/ws_*`): where `scan` reads a payload, `serde` reads
/// it the same, and `scan` reads at least each of `fast` (so the fast path is exercised). Then
/// the same on randomly mutated copies of those payloads.
pub fn fast_path_agrees<T, E>(
    venue: &str,
    scan: impl Fn(&str) -> Option<T>,
    serde: impl Fn(&str) -> Result<T, E>,
    fast: &[&str],
) where
    T: std::fmt::Debug,
    E: std::fmt::Display,
{
    let dir = format!("{}/test_data/{venue}", env!("CARGO_MANIFEST_DIR"));
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("ws_") {
            continue;
        }
        let text = String::from_utf8(payload(venue, &name)).unwrap();
        if let Some(got) = scan(&text) {
            let by_serde = serde(&text)
                .unwrap_or_else(|e| panic!("{name}: the fast path read what serde refuses: {e}"));
            assert_eq!(format!("{got:?}"), format!("{by_serde:?}"), "{name}");
            seen.push(name);
        }
    }
    for f in fast {
        assert!(
            seen.iter().any(|s| s == f),
            "{f} was not read by the fast path"
        );
    }
    agrees_on_mutations(venue, scan, serde);
}

/// [`fast_path_agrees`] on whole outcomes: where a venue's fast path (`fast`) reads a frame,
/// its serde path (`serde`) reads it as data with the same trades, and where `fast` gives up
/// it leaves `out` as it was. `read` names the stored payloads the fast path must read.
pub fn fast_path_agrees_on_trades(
    venue: &str,
    fast: impl Fn(&[u8], &mut Vec<Trade>) -> Option<()>,
    serde: impl Fn(&[u8], &mut Vec<Trade>) -> Result<Frame, ParseError>,
    read: &[&str],
) {
    let before = sample_trade();
    fast_path_agrees(
        venue,
        |text| {
            let mut out = vec![before.clone()];
            let got = fast(text.as_bytes(), &mut out);
            assert!(
                got.is_some() || out == [before.clone()],
                "the fast path gave up but changed the output: {text}"
            );
            got.map(|()| format!("{:?}", &out[1..]))
        },
        |text| {
            let mut out = Vec::new();
            match serde(text.as_bytes(), &mut out) {
                Ok(Frame::Data) => Ok(format!("{out:?}")),
                other => Err(format!("not data: {other:?}")),
            }
        },
        read,
    );
}

/// A trade to put in an output before a parser appends to it.
fn sample_trade() -> Trade {
    Trade {
        exchange: "before".into(),
        symbol: sym("BTC-USD"),
        trade_id: TradeId::from_u64(1),
        price: rust_decimal::Decimal::ONE,
        amount: rust_decimal::Decimal::ONE,
        side: Side::Buy,
        timestamp: RECEIVED,
        received_at: RECEIVED,
    }
}

/// The differential half of [`fast_path_agrees`]: every stored WebSocket payload of `venue`,
/// mutated (each single edit in turn, then a few edits at random: bytes replaced by JSON
/// punctuation, digits or letters, removed or repeated): whenever `scan` reads the result,
/// `serde` reads it too and the same way.
fn agrees_on_mutations<T, E>(
    venue: &str,
    scan: impl Fn(&str) -> Option<T>,
    serde: impl Fn(&str) -> Result<T, E>,
) where
    T: std::fmt::Debug,
    E: std::fmt::Display,
{
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let dir = format!("{}/test_data/{venue}", env!("CARGO_MANIFEST_DIR"));
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ws_"))
        .map(|n| payload(venue, &n))
        .collect();
    corpus.sort();
    let alphabet: &[u8] = b"\"\\{}[],:-.0123456789eEtrufalsn x\t";
    let agree = |bytes: Vec<u8>| {
        let Ok(text) = String::from_utf8(bytes) else {
            return;
        };
        if let Some(got) = scan(&text) {
            match serde(&text) {
                Ok(by_serde) => assert_eq!(format!("{got:?}"), format!("{by_serde:?}"), "{text}"),
                Err(e) => panic!("fast path read what serde refuses ({e}): {text}"),
            }
        }
    };
    // Every single edit first, deterministically: each byte removed, and replaced by each
    // byte of the alphabet (a digit turned into a dot, a quote dropped, ...).
    for original in &corpus {
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes.remove(i);
            agree(bytes);
            for &b in alphabet {
                let mut bytes = original.clone();
                bytes[i] = b;
                agree(bytes);
            }
        }
    }
    // Then random combinations of a few edits.
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..3,
            any::<prop::sample::Index>(),
        ),
        1..4,
    );
    let mut runner = TestRunner::new(Config::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(4096),
    ));
    runner
        .run(&(any::<prop::sample::Index>(), edits), |(which, edits)| {
            let mut bytes = which.get(&corpus).clone();
            for (at, kind, with) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = *with.get(alphabet),
                    1 => {
                        bytes.remove(i);
                    }
                    _ => {
                        let end = (i + 1 + with.index(8)).min(bytes.len());
                        let piece = bytes[i..end].to_vec();
                        bytes.splice(i..i, piece);
                    }
                }
            }
            let Ok(text) = String::from_utf8(bytes) else {
                return Ok(());
            };
            if let Some(got) = scan(&text) {
                match serde(&text) {
                    Ok(by_serde) => prop_assert_eq!(format!("{got:?}"), format!("{by_serde:?}")),
                    Err(e) => {
                        prop_assert!(false, "fast path read what serde refuses ({e}): {text}")
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
