use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, Symbol};
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> BybitVenue {
    BybitVenue::new(&config("bybit", &["BTC-USDT", "ETH-USDT"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_trade.json",
            Data(vec![want(
                "BTC-USDT",
                "2290000000412342771",
                "60944.01",
                "0.000100",
                Side::Sell,
                "2024-10-01T13:57:23.385Z",
            )]),
        ),
        (
            "ws_trade_batch.json",
            Data(vec![
                want(
                    "ETH-USDT",
                    "2290000000208671001",
                    "2650.50",
                    "1.25",
                    Side::Buy,
                    "2024-10-01T13:57:23.400Z",
                ),
                want(
                    "ETH-USDT",
                    "2290000000208671002",
                    "2650.51",
                    "0.00001",
                    Side::Sell,
                    "2024-10-01T13:57:23.400Z",
                ),
                want(
                    "ETH-USDT",
                    "2290000000208671003",
                    "2650.49",
                    "0.300000",
                    Side::Buy,
                    "2024-10-01T13:57:23.412Z",
                ),
            ]),
        ),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USDT",
                "2290000000412342772",
                "60944.02",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:23.425Z",
            )]),
        ),
        ("ws_subscribe_ok.json", Control(Frame::Ack)),
        ("ws_pong.json", Control(Frame::Heartbeat)),
        ("ws_pong_linear.json", Control(Frame::Heartbeat)),
        ("ws_orderbook.json", Control(Frame::Ignored)),
        ("ws_unknown.json", Control(Frame::Unrecognized)),
        (
            "ws_subscribe_failed.json",
            Err(|e| {
                matches!(e, ParseError::Venue(m)
                    if m == "subscribe failed: error:handler not found,topic:publicTrade.XYZUSDT")
            }),
        ),
        // One bad trade rejects the whole push: nothing half-appended.
        ("ws_trade_batch_bad_side.json", Err(is_field)),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "SOLUSDT")),
        ),
        ("ws_trade_missing_price.json", Err(is_json)),
        ("ws_trade_no_data.json", Err(is_field)),
        ("ws_truncated.json", Err(is_json)),
    ];
    stream_table(&venue(), "bybit", cases);
}

/// Ids are strings and stream times numbers on Bybit today, REST times strings; each is
/// read in the other form too, on the stream and over REST. Ids that are no unsigned 64-bit
/// number when written as one are refused, without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "bybit",
        vec![
            (
                "ws_trade_numeric_id.json",
                Data(vec![want(
                    "BTC-USDT",
                    "2290000000412342775",
                    "60944.01",
                    "0.1",
                    Side::Sell,
                    "2024-10-01T13:57:23.385Z",
                )]),
            ),
            (
                "ws_trade_string_time.json",
                Data(vec![want(
                    "BTC-USDT",
                    "2290000000412342776",
                    "60944.03",
                    "0.002",
                    Side::Buy,
                    "2024-10-01T13:57:23.430Z",
                )]),
            ),
            ("ws_trade_id_too_large.json", Err(is_json)),
            ("ws_trade_negative_id.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "bybit",
        "BTC-USDT",
        vec![
            (
                "rest_trades_numbers.json",
                Data(vec![
                    want(
                        "BTC-USDT",
                        "2290000000412342778",
                        "60944.05",
                        "0.25",
                        Side::Buy,
                        "2024-10-01T13:57:23.450Z",
                    ),
                    want(
                        "BTC-USDT",
                        "2290000000412342777",
                        "60944.04",
                        "0.1",
                        Side::Sell,
                        "2024-10-01T13:57:23.440Z",
                    ),
                ]),
            ),
            ("rest_id_too_large.json", Err(is_json)),
            ("rest_negative_time.json", Err(is_json)),
        ],
    );
}

/// Tether is `USDT` in Bybit's names too: `BTC-USDT` is `BTCUSDT` in topics and requests,
/// and `BTCUSDT` is read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = BybitVenue::new(&config("bybit", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"op":"subscribe","args":["publicTrade.BTCUSDT"]}"#.into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.query(),
        Some("category=spot&symbol=BTCUSDT&limit=60")
    );
    let mut out = Vec::new();
    v.parse(&payload("bybit", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn nineteen_digit_ids_are_kept_exactly_and_compare_numerically() {
    let v = venue();
    let mut out = Vec::new();
    v.parse(&payload("bybit", "ws_trade_batch.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].trade_id.as_str(), "2290000000208671001");
    assert_eq!(
        out[0].trade_id.cmp_numeric(&out[1].trade_id),
        Some(std::cmp::Ordering::Less)
    );
}

#[test]
fn subscribe_in_chunks_and_ping_every_twenty_seconds() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT"), sym("ETH-USDT")]),
        vec![WsMessage::Text(
            r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","publicTrade.ETHUSDT"]}"#.into()
        )]
    );
    let many: Vec<Symbol> = (0..25).map(|i| sym(&format!("C{i}-USDT"))).collect();
    let msgs = v.subscribe(&many);
    assert_eq!(msgs.len(), 3);
    let ping = v.ping().unwrap();
    assert_eq!(ping.every, std::time::Duration::from_secs(20));
    assert_eq!(ping.message, WsMessage::Text(r#"{"op":"ping"}"#.into()));
    assert_eq!(
        v.url(&[]).unwrap().as_str(),
        "wss://stream.bybit.com/v5/public/spot"
    );
}

#[test]
fn requests_ask_for_the_newest_sixty() {
    let v = venue();
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "https://api.bybit.com/v5/market/recent-trade?category=spot&symbol=BTCUSDT&limit=60"
    );
    assert_eq!(v.max_pages(), 1);
    let cfg = config(
        "bybit",
        &["BTC-USDT"],
        Some("http://127.0.0.1:4000"),
        Some("ws://127.0.0.1:4001/v5/public/spot"),
    );
    let v = BybitVenue::new(&cfg).unwrap();
    assert_eq!(
        v.url(&[]).unwrap().as_str(),
        "ws://127.0.0.1:4001/v5/public/spot"
    );
    assert!(v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap()
        .url
        .as_str()
        .starts_with("http://127.0.0.1:4000/v5/market/recent-trade?"));
}

#[test]
fn rest_payloads() {
    let v = venue();
    let parse =
        |file: &str, out: &mut Vec<_>| parse_rest_fixture(&v, "bybit", "BTC-USDT", file, out);
    let mut out = Vec::new();
    assert_eq!(
        parse("rest_trades.json", &mut out).unwrap(),
        Page::default()
    );
    assert_eq!(
        seen_all(&out, "bybit"),
        vec![
            want(
                "BTC-USDT",
                "2290000000412342772",
                "60944.02",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:23.425Z"
            ),
            want(
                "BTC-USDT",
                "2290000000412342771",
                "60944.01",
                "0.000001",
                Side::Sell,
                "2024-10-01T13:57:23.385Z"
            ),
        ]
    );
    let mut out = Vec::new();
    parse("rest_empty.json", &mut out).unwrap();
    assert!(out.is_empty());
    let e = parse("rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "10001: params error: symbol invalid"),
        "{e}"
    );
    let e = parse("rest_empty_id.json", &mut out).unwrap_err();
    assert!(is_field(&e), "{e}");
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 8] = [
        b"",
        b"null",
        b"[1]",
        b"{\"topic\":\"publicTrade.BTCUSDT\",\"data\":{}}",
        b"{\"topic\":\"publicTrade.BTCUSDT\",\"data\":[{\"i\":\"1\"}]}",
        b"\xff\xfe",
        b"{\"retCode\":\"0\"}",
        b"{\"topic\":5}",
    ];
    assert_garbage_refused(&v, "BTC-USDT", &inputs);
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&BybitFactory, "bybit", "BTC-USDT");
    assert!(BybitFactory
        .build(&config("bybit", &["BTC-USDT", "BTCU-SDT"], None, None))
        .is_err());
}

#[test]
fn fast_path_reads_trade_pushes_as_serde_does() {
    let v = venue();
    fast_path_agrees_on_trades(
        "bybit",
        |frame, out| v.fast_push(frame, RECEIVED, out),
        |frame, out| v.parse_with_serde(frame, RECEIVED, out),
        &[
            "ws_trade.json",
            "ws_trade_batch.json",
            "ws_trade_numeric_id.json",
            "ws_trade_string_time.json",
            "ws_trade_unknown_fields.json",
        ],
    );
}
