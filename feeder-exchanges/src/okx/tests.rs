use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::Side;
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> OkxVenue {
    OkxVenue::new(&config("okx", &["BTC-USDT", "ETH-USDT"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_trade.json",
            Data(vec![want(
                "BTC-USDT",
                "557713200",
                "60944.1",
                "0.00012",
                Side::Sell,
                "2024-10-01T13:57:23.385Z",
            )]),
        ),
        (
            "ws_trade_batch.json",
            Data(vec![
                want(
                    "ETH-USDT",
                    "401200001",
                    "2650.5",
                    "1.25",
                    Side::Buy,
                    "2024-10-01T13:57:23.400Z",
                ),
                want(
                    "ETH-USDT",
                    "401200002",
                    "2650.51",
                    "0.000001",
                    Side::Buy,
                    "2024-10-01T13:57:23.400Z",
                ),
            ]),
        ),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USDT",
                "557713201",
                "60944.2",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:23.425Z",
            )]),
        ),
        ("ws_subscribe.json", Control(Frame::Ack)),
        // The keep-alive answer is bare text, not JSON.
        ("ws_pong.txt", Control(Frame::Heartbeat)),
        ("ws_notice_upgrade.json", Control(Frame::Reconnect)),
        ("ws_conn_count.json", Control(Frame::Ignored)),
        ("ws_books.json", Control(Frame::Unrecognized)),
        (
            "ws_error.json",
            Err(|e| matches!(e, ParseError::Venue(m) if m.starts_with("60012: Invalid request"))),
        ),
        ("ws_trade_batch_bad_side.json", Err(is_field)),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "SOL-USDT")),
        ),
        ("ws_trade_bad_ts.json", Err(is_json)),
        ("ws_trade_no_data.json", Err(is_field)),
        ("ws_not_json.txt", Err(is_json)),
        ("ws_truncated.json", Err(is_json)),
    ];
    stream_table(&venue(), "okx", cases);
}

/// Ids and times are strings of digits on OKX today; written as JSON numbers they mean the
/// same, on the stream and over REST, and paging still finds the oldest id. Numbers that are
/// no unsigned 64-bit integer are refused, without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "okx",
        vec![
            (
                "ws_trade_numbers.json",
                Data(vec![want(
                    "BTC-USDT",
                    "557713202",
                    "60944.3",
                    "0.01",
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
        "okx",
        "BTC-USDT",
        vec![
            (
                "rest_trades_numbers.json",
                Data(vec![
                    want(
                        "BTC-USDT",
                        "557713204",
                        "60944.5",
                        "0.2",
                        Side::Sell,
                        "2024-10-01T13:57:23.450Z",
                    ),
                    want(
                        "BTC-USDT",
                        "557713203",
                        "60944.4",
                        "0.1",
                        Side::Buy,
                        "2024-10-01T13:57:23.440Z",
                    ),
                ]),
            ),
            ("rest_id_too_large.json", Err(is_json)),
            ("rest_negative_ts.json", Err(is_json)),
        ],
    );
    let mut out = Vec::new();
    let page = parse_rest_fixture(&v, "okx", "BTC-USDT", "rest_trades_numbers.json", &mut out);
    assert_eq!(page.unwrap().older.as_deref(), Some("557713203"));
}

/// Tether is `USDT` in OKX's instrument ids too: `BTC-USDT` is subscribed, requested and
/// read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = OkxVenue::new(&config("okx", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}"#.into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.query(), Some("instId=BTC-USDT&limit=100"));
    let mut out = Vec::new();
    v.parse(&payload("okx", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn one_subscribe_and_a_text_ping() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT"), sym("ETH-USDT")]),
        vec![WsMessage::Text(
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT"}]}"#.into()
        )]
    );
    let ping = v.ping().unwrap();
    assert_eq!(ping.message, WsMessage::Text("ping".into()));
    assert!(ping.every < v.stale_timeout());
    assert!(ping.every < std::time::Duration::from_secs(30));
    assert_eq!(
        v.url(&[]).unwrap().as_str(),
        "wss://ws.okx.com:8443/ws/v5/public"
    );
}

#[test]
fn requests_page_back_by_trade_id() {
    let v = venue();
    let latest = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://www.okx.com/api/v5/market/trades?instId=BTC-USDT&limit=100"
    );
    let older = v
        .trades_request(
            &sym("BTC-USDT"),
            PollRequest {
                last_seen: None,
                page: Some("557713200"),
            },
        )
        .unwrap();
    assert_eq!(
        older.url.as_str(),
        "https://www.okx.com/api/v5/market/history-trades?instId=BTC-USDT&type=1&after=557713200&limit=100"
    );
}

#[test]
fn rest_payloads() {
    let v = venue();
    let parse = |file: &str, out: &mut Vec<_>| parse_rest_fixture(&v, "okx", "BTC-USDT", file, out);
    let mut out = Vec::new();
    let page = parse("rest_trades.json", &mut out).unwrap();
    assert_eq!(page.older.as_deref(), Some("557713200"));
    assert_eq!(
        seen_all(&out, "okx"),
        vec![
            want(
                "BTC-USDT",
                "557713201",
                "60944.2",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:23.425Z"
            ),
            want(
                "BTC-USDT",
                "557713200",
                "60944.1",
                "0.00012",
                Side::Sell,
                "2024-10-01T13:57:23.385Z"
            ),
        ]
    );
    let mut out = Vec::new();
    assert_eq!(parse("rest_empty.json", &mut out).unwrap().older, None);
    let e = parse("rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "51001: Instrument ID does not exist"),
        "{e}"
    );
    let e = parse("rest_wrong_instrument.json", &mut out).unwrap_err();
    assert!(matches!(e, ParseError::UnknownSymbol(_)), "{e}");
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 8] = [
        b"",
        b"null",
        b"pongpong",
        b"{\"arg\":{\"channel\":\"trades\"},\"data\":{}}",
        b"{\"arg\":{\"channel\":\"trades\"},\"data\":[{\"tradeId\":\"1\"}]}",
        b"\xff\xfe",
        b"{\"code\":0}",
        b"{\"event\":5}",
    ];
    assert_garbage_refused(&v, "BTC-USDT", &inputs);
}

#[test]
fn factory_offers_both_transports() {
    assert_factory_builds_both_transports(&OkxFactory, "okx", "BTC-USDT");
}

#[test]
fn forward_pages_are_the_window_of_ids_after_the_last_trade_seen() {
    let v = venue();
    forward_table(
        &v,
        &[
            (
                "BTC-USDT",
                "557713200",
                "2024-10-01T13:57:23.385Z",
                Some("https://www.okx.com/api/v5/market/history-trades?instId=BTC-USDT&type=1&before=557713200&after=557713301&limit=100"),
            ),
            (
                "BTC-USDT",
                "0",
                "2024-10-01T13:57:23.385Z",
                Some("https://www.okx.com/api/v5/market/history-trades?instId=BTC-USDT&type=1&before=0&after=101&limit=100"),
            ),
            // Not an OKX id: no window can be bounded, the fill walks back instead.
            ("BTC-USDT", "a-1", "2024-10-01T13:57:23.385Z", None),
        ],
    );
    // 10 requests a second: the 20 per 2 seconds OKX allows.
    assert_eq!(v.request_spacing(), REQUEST_SPACING);
    assert!(REQUEST_SPACING >= std::time::Duration::from_millis(100));
}

#[test]
fn fast_path_reads_trade_pushes_as_serde_does() {
    let v = venue();
    fast_path_agrees_on_trades(
        "okx",
        |frame, out| v.fast_push(frame, RECEIVED, out),
        |frame, out| v.parse_with_serde(frame, RECEIVED, out),
        &[
            "ws_trade.json",
            "ws_trade_batch.json",
            "ws_trade_numbers.json",
            "ws_trade_unknown_fields.json",
        ],
    );
}
