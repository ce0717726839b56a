use feeder_core::exchange::{Cursor, Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, Timestamp, TradeId};
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> GeminiVenue {
    GeminiVenue::new(&config("gemini", &["BTC-USD", "ETH-USD"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_l2_initial.json",
            // The book is skipped; the latest trades come out, ids as numbers or strings.
            Data(vec![
                want(
                    "BTC-USD",
                    "2840140800042677",
                    "9122.04",
                    "0.0073173",
                    Side::Sell,
                    "2019-06-19T20:33:20.428Z",
                ),
                want(
                    "BTC-USD",
                    "2840140800042676",
                    "9122.07",
                    "0.00000001",
                    Side::Buy,
                    "2019-06-19T20:33:19.001Z",
                ),
            ]),
        ),
        ("ws_l2_initial_no_trades.json", Data(vec![])),
        ("ws_l2_update.json", Control(Frame::Ignored)),
        (
            "ws_trade.json",
            Data(vec![want(
                "BTC-USD",
                "2840140800042678",
                "9004.21000000",
                "0.09110000",
                Side::Buy,
                "2019-06-19T20:33:20.555Z",
            )]),
        ),
        (
            "ws_trade_string_tid.json",
            Data(vec![want(
                "ETH-USD",
                "2840140800042679",
                "230.5",
                "0.0025",
                Side::Sell,
                "2019-06-19T20:33:20.556Z",
            )]),
        ),
        (
            "ws_trade_auction.json",
            Data(vec![want(
                "BTC-USD",
                "2840140800042680",
                "9004.00",
                "3.1",
                Side::Unknown,
                "2019-06-19T20:33:20.557Z",
            )]),
        ),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USD",
                "2840140800042681",
                "9004.22",
                "0.5",
                Side::Sell,
                "2019-06-19T20:33:20.558Z",
            )]),
        ),
        ("ws_heartbeat.json", Control(Frame::Heartbeat)),
        ("ws_candles.json", Control(Frame::Unrecognized)),
        (
            "ws_error.json",
            Err(|e| {
                matches!(e, ParseError::Venue(m)
                    if m == "InvalidJson: Failed to parse the subscription request")
            }),
        ),
        ("ws_trade_bad_side.json", Err(is_field)),
        ("ws_trade_missing_price.json", Err(is_field)),
        ("ws_trade_bad_tid.json", Err(is_json)),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "LTCUSD")),
        ),
        ("ws_l2_initial_bad_trade.json", Err(is_field)),
        ("ws_no_type.json", Err(is_json)),
        ("ws_truncated.json", Err(is_json)),
    ];
    stream_table(&venue(), "gemini", cases);
}

/// Ids and times are numbers on Gemini today, and strings of digits mean the same, on the
/// stream and over REST. A `trade` without `tid` takes its id from `event_id`; with
/// neither it is refused. What is not an unsigned 64-bit integer is refused, without a
/// trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "gemini",
        vec![
            (
                "ws_trade_string_timestamp.json",
                Data(vec![want(
                    "BTC-USD",
                    "2840140800042684",
                    "9004.25",
                    "0.125",
                    Side::Sell,
                    "2019-06-19T20:33:20.562Z",
                )]),
            ),
            (
                "ws_trade_event_id_only.json",
                Data(vec![want(
                    "BTC-USD",
                    "2840140800042682",
                    "9004.23",
                    "0.25",
                    Side::Buy,
                    "2019-06-19T20:33:20.559Z",
                )]),
            ),
            (
                "ws_trade_event_id_string.json",
                Data(vec![want(
                    "ETH-USD",
                    "2840140800042683",
                    "230.6",
                    "1.5",
                    Side::Sell,
                    "2019-06-19T20:33:20.560Z",
                )]),
            ),
            (
                "ws_l2_initial_event_id.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "2840140800042688",
                        "9122.05",
                        "0.01",
                        Side::Sell,
                        "2019-06-19T20:33:20.570Z",
                    ),
                    want(
                        "BTC-USD",
                        "2840140800042687",
                        "9122.06",
                        "0.02",
                        Side::Buy,
                        "2019-06-19T20:33:20.569Z",
                    ),
                ]),
            ),
            (
                "ws_trade_no_id.json",
                Err(|e| matches!(e, ParseError::Field { field, .. } if *field == "tid")),
            ),
            ("ws_trade_tid_too_large.json", Err(is_json)),
            ("ws_trade_negative_tid.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "gemini",
        "BTC-USD",
        vec![
            (
                "rest_trades_strings.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "2840140800042690",
                        "9004.30",
                        "0.5",
                        Side::Sell,
                        "2019-06-19T20:33:20.590Z",
                    ),
                    want(
                        "BTC-USD",
                        "2840140800042689",
                        "9004.29",
                        "0.25",
                        Side::Buy,
                        "2019-06-19T20:33:20.580Z",
                    ),
                ]),
            ),
            ("rest_tid_too_large.json", Err(is_json)),
            ("rest_negative_timestampms.json", Err(is_json)),
        ],
    );
}

#[test]
fn side_is_the_takers() {
    let v = venue();
    let frame = |side: &str| {
        format!(
            r#"{{"type":"trade","symbol":"BTCUSD","event_id":1,"timestamp":1,"price":"1","quantity":"1","side":"{side}","tid":1}}"#
        )
    };
    let mut out = Vec::new();
    for s in ["buy", "sell"] {
        v.parse(frame(s).as_bytes(), RECEIVED, &mut out).unwrap();
    }
    assert_eq!(out[0].side, Side::Buy);
    assert_eq!(out[1].side, Side::Sell);
}

#[test]
fn symbols_map_both_ways_and_clashes_are_rejected() {
    assert_eq!(to_venue(&sym("BTC-USD")), "BTCUSD");
    assert_eq!(to_venue(&sym("GUSD-USD")), "GUSDUSD");
    let v = venue();
    assert_eq!(v.symbol("BTCUSD").unwrap(), &sym("BTC-USD"));
    assert!(v.symbol("btcusd").is_err());
    assert!(GeminiVenue::new(&config("gemini", &["AB-CD", "ABC-D"], None, None)).is_err());
    assert!(GeminiVenue::new(&config("gemini", &["BTC-USD", "BTC-USD"], None, None)).is_ok());
}

/// Tether is `USDT` in Gemini's names too: `BTC-USDT` is `BTCUSDT` on the stream and
/// `btcusdt` in REST paths, and `BTCUSDT` is read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = GeminiVenue::new(&config("gemini", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["BTCUSDT"]}]}"#.into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.path(), "/v1/trades/btcusdt");
    let mut out = Vec::new();
    v.parse(&payload("gemini", "ws_trade_usdt.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn one_subscribe_for_all_symbols() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USD"), sym("ETH-USD")]),
        vec![WsMessage::Text(
            r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD","ETHUSD"]}]}"#
                .into()
        )]
    );
    assert_eq!(v.url(&[]).unwrap().as_str(), DEFAULT_WS_URL);
    assert!(matches!(
        v.ping().map(|p| p.message),
        Some(WsMessage::Ping(_))
    ));
}

#[test]
fn requests_continue_after_the_last_seen_trade() {
    let v = venue();
    let latest = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://api.gemini.com/v1/trades/btcusd?limit_trades=500"
    );
    let cursor = Cursor {
        trade_id: TradeId::from_u64(2_840_140_800_042_677),
        timestamp: Timestamp::from_unix_millis(1_560_976_400_428),
    };
    let since = v
        .trades_request(
            &sym("ETH-USD"),
            PollRequest {
                last_seen: Some(&cursor),
                page: None,
            },
        )
        .unwrap();
    assert_eq!(
        since.url.as_str(),
        "https://api.gemini.com/v1/trades/ethusd?limit_trades=500&since_tid=2840140800042677"
    );
    let next = v
        .trades_request(
            &sym("ETH-USD"),
            PollRequest {
                last_seen: Some(&cursor),
                page: Some("2840140800043177"),
            },
        )
        .unwrap();
    assert_eq!(
        next.url.query(),
        Some("limit_trades=500&since_tid=2840140800043177")
    );

    let cfg = config(
        "gemini",
        &["BTC-USD"],
        Some("http://127.0.0.1:4000"),
        Some("ws://127.0.0.1:4001/v2/marketdata"),
    );
    let v = GeminiVenue::new(&cfg).unwrap();
    assert_eq!(
        v.url(&[]).unwrap().as_str(),
        "ws://127.0.0.1:4001/v2/marketdata"
    );
    let req = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/v1/trades/btcusd?limit_trades=500"
    );
}

#[test]
fn rest_payloads() {
    let v = venue();
    let mut out = Vec::new();
    let page = parse_rest_fixture(&v, "gemini", "BTC-USD", "rest_trades.json", &mut out).unwrap();
    assert_eq!(page.older, None);
    assert_eq!(
        seen_all(&out, "gemini"),
        vec![
            want(
                "BTC-USD",
                "2840140800042678",
                "9004.21",
                "0.0911",
                Side::Buy,
                "2019-06-19T20:33:20.555Z"
            ),
            want(
                "BTC-USD",
                "2840140800042677",
                "9122.04",
                "0.0073173",
                Side::Sell,
                "2019-06-19T20:33:20.428Z"
            ),
            want(
                "BTC-USD",
                "2840140800042676",
                "9122.07",
                "0.00000001",
                Side::Unknown,
                "2019-06-19T20:33:19.001Z"
            ),
        ]
    );
    // A reversed trade is not a trade.
    let mut out = Vec::new();
    parse_rest_fixture(&v, "gemini", "BTC-USD", "rest_broken.json", &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trade_id.as_str(), "2840140800042677");

    let mut out = Vec::new();
    assert_eq!(
        parse_rest_fixture(&v, "gemini", "BTC-USD", "rest_empty.json", &mut out)
            .unwrap()
            .older,
        None
    );
    let e = parse_rest_fixture(&v, "gemini", "BTC-USD", "rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "InvalidSymbol: Supplied value 'btcxyz' is not a valid symbol"),
        "{e}"
    );
    let e =
        parse_rest_fixture(&v, "gemini", "BTC-USD", "rest_bad_amount.json", &mut out).unwrap_err();
    assert!(
        matches!(
            &e,
            ParseError::Field {
                field: "quantity",
                ..
            }
        ),
        "{e}"
    );
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn a_full_page_continues_after_its_newest_trade() {
    let v = venue();
    let rows: Vec<String> = (0..PAGE_LIMIT)
        .map(|i| {
            format!(
                r#"{{"timestampms":{},"tid":{},"price":"1","amount":"1","type":"buy"}}"#,
                1_560_976_400_000u64 + i as u64,
                1_000 + i
            )
        })
        .collect();
    let mut out = Vec::new();
    let page = parse_rest(
        &v,
        "BTC-USD",
        format!("[{}]", rows.join(",")).as_bytes(),
        &mut out,
    )
    .unwrap();
    assert_eq!(page.older.as_deref(), Some("1499"));
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 10] = [
        b"",
        b"null",
        b"{}",
        b"[]",
        b"{\"type\":7}",
        b"{\"type\":\"trade\"}",
        b"{\"type\":\"l2_updates\",\"trades\":[{}]}",
        b"{\"type\":\"l2_updates\",\"trades\":{}}",
        b"\xff\xfe",
        b"{\"type\":\"trade\",\"symbol\":\"BTCUSD\",\"tid\":1,\"timestamp\":18446744073709551615,\"price\":\"1\",\"quantity\":\"1\",\"side\":\"buy\"}",
    ];
    for input in inputs {
        let mut out = Vec::new();
        assert!(
            v.parse(input, RECEIVED, &mut out).is_err(),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(out.is_empty());
        let _ = parse_rest(&v, "BTC-USD", input, &mut out);
        assert!(out.is_empty());
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&GeminiFactory, "gemini", "BTC-USD");
    assert!(GeminiFactory
        .build(&config("gemini", &["BTC-USD"], Some("ftp://h/"), None))
        .is_err());
}

#[test]
fn forward_pages_are_the_trades_since_the_last_tid_seen() {
    let v = venue();
    forward_table(
        &v,
        &[
            (
                "BTC-USD",
                "2840140800",
                "2024-10-01T13:57:23.385Z",
                Some(
                    "https://api.gemini.com/v1/trades/btcusd?limit_trades=500&since_tid=2840140800",
                ),
            ),
            (
                "ETH-USD",
                "0",
                "2024-10-01T13:57:23.385Z",
                Some("https://api.gemini.com/v1/trades/ethusd?limit_trades=500&since_tid=0"),
            ),
            // Not a Gemini tid: no page can be named after it.
            ("BTC-USD", "t-1", "2024-10-01T13:57:23.385Z", None),
        ],
    );
    // One a second, as Gemini asks (and half its 120 a minute).
    assert_eq!(v.request_spacing(), REQUEST_SPACING);
    assert!(REQUEST_SPACING >= std::time::Duration::from_secs(1));
}

#[test]
fn fast_path_reads_trades_as_serde_does() {
    let v = venue();
    fast_path_agrees_on_trades(
        "gemini",
        |frame, out| v.fast_push(frame, RECEIVED, out),
        |frame, out| v.parse_with_serde(frame, RECEIVED, out),
        &[
            "ws_trade.json",
            "ws_trade_auction.json",
            "ws_trade_event_id_only.json",
            "ws_trade_event_id_string.json",
            "ws_trade_string_tid.json",
            "ws_trade_string_timestamp.json",
            "ws_trade_unknown_fields.json",
        ],
    );
}
