use feeder_core::exchange::{Frame, HttpResponse, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, TradeId};
use feeder_core::ParseError;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::test_support::*;

fn venue() -> CoinbaseVenue {
    CoinbaseVenue::new(&config("coinbase", &["BTC-USD", "ETH-USD"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        ("ws_subscriptions.json", Control(Frame::Ack)),
        (
            "ws_last_match.json",
            // Maker bought: the taker sold.
            Data(vec![want(
                "BTC-USD",
                "658232641",
                "60944.12",
                "0.00123456",
                Side::Sell,
                "2024-10-01T13:57:23.385123Z",
            )]),
        ),
        (
            "ws_match.json",
            // Maker sold: the taker bought.
            Data(vec![want(
                "BTC-USD",
                "658232642",
                "60945.01",
                "5.23512000",
                Side::Buy,
                "2024-10-01T13:57:24.028459Z",
            )]),
        ),
        (
            "ws_match_exponent.json",
            Data(vec![want(
                "ETH-USD",
                "431239001",
                "2650.50",
                "0.00000001",
                Side::Sell,
                "2024-10-01T13:57:25.000001Z",
            )]),
        ),
        (
            "ws_match_unknown_fields.json",
            Data(vec![want(
                "BTC-USD",
                "658232643",
                "60946",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:26.100000Z",
            )]),
        ),
        (
            "ws_heartbeat.json",
            Control(Frame::Gap {
                symbol: sym("BTC-USD"),
                last_trade_id: TradeId::from_u64(658_232_650),
            }),
        ),
        ("ws_heartbeat_no_trade_id.json", Control(Frame::Heartbeat)),
        ("ws_ticker.json", Control(Frame::Unrecognized)),
        (
            "ws_error.json",
            Err(|e| {
                matches!(e, ParseError::Venue(m)
                    if m == "Failed to subscribe: BTC-XYZ is not a valid product")
            }),
        ),
        ("ws_match_missing_price.json", Err(is_field)),
        ("ws_match_bad_side.json", Err(is_field)),
        ("ws_match_bad_time.json", Err(is_field)),
        (
            "ws_match_bad_product.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "btc_usd")),
        ),
        ("ws_truncated.json", Err(is_json)),
        ("ws_no_type.json", Err(is_json)),
    ];
    stream_table(&venue(), "coinbase", cases);
}

/// Trade ids are numbers on Coinbase today; written as strings of digits (as REST pages
/// have been, `"trade_id":"18502034"`) they mean the same, on the stream, in heartbeats and
/// over REST. What is not an unsigned 64-bit integer either way is refused, without a trade.
#[test]
fn trade_ids_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "coinbase",
        vec![
            (
                "ws_match_string_trade_id.json",
                Data(vec![want(
                    "BTC-USD",
                    "658232647",
                    "60946",
                    "0.5",
                    Side::Sell,
                    "2024-10-01T13:57:26.400000Z",
                )]),
            ),
            (
                "ws_heartbeat_string_trade_id.json",
                Control(Frame::Gap {
                    symbol: sym("BTC-USD"),
                    last_trade_id: TradeId::from_u64(658_232_651),
                }),
            ),
            ("ws_match_trade_id_too_large.json", Err(is_json)),
            ("ws_match_negative_trade_id.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "coinbase",
        "BTC-USD",
        vec![
            (
                "rest_trades_string_ids.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "18502035",
                        "60950.01000000",
                        "0.01000000",
                        Side::Sell,
                        "2024-10-01T13:57:30.000100Z",
                    ),
                    want(
                        "BTC-USD",
                        "18502034",
                        "60950.00000000",
                        "0.25000000",
                        Side::Buy,
                        "2024-10-01T13:57:29.5Z",
                    ),
                    want(
                        "BTC-USD",
                        "18502033",
                        "60949.99000000",
                        "0.00000001",
                        Side::Buy,
                        "2024-10-01T13:57:29.1Z",
                    ),
                ]),
            ),
            ("rest_trade_id_too_large.json", Err(is_json)),
            ("rest_negative_trade_id.json", Err(is_json)),
        ],
    );
}

#[test]
fn taker_side_is_the_opposite_of_the_makers() {
    // Coinbase reports the maker's side: "sell" means the taker bought.
    let v = venue();
    let frame = |side: &str| {
        format!(
            r#"{{"type":"match","trade_id":1,"side":"{side}","size":"1","price":"2","product_id":"BTC-USD","time":"2024-10-01T13:57:24.028459Z"}}"#
        )
    };
    let mut out = Vec::new();
    v.parse(frame("sell").as_bytes(), RECEIVED, &mut out)
        .unwrap();
    v.parse(frame("buy").as_bytes(), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].side, Side::Buy);
    assert_eq!(out[1].side, Side::Sell);

    let body =
        br#"[{"trade_id":1,"side":"sell","size":"1","price":"2","time":"2024-10-01T13:57:24Z"}]"#;
    let mut out = Vec::new();
    parse_rest(&v, "BTC-USD", body, &mut out).unwrap();
    assert_eq!(out[0].side, Side::Buy);
}

/// Tether is `USDT` in Coinbase's product ids too: `BTC-USDT` is subscribed, requested and
/// read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = CoinbaseVenue::new(&config("coinbase", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"type":"subscribe","product_ids":["BTC-USDT"],"channels":["matches","heartbeat"]}"#
                .into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.path(), "/products/BTC-USDT/trades");
    let mut out = Vec::new();
    v.parse(
        &payload("coinbase", "ws_match_usdt.json"),
        RECEIVED,
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn products_outside_the_config_keep_their_symbol() {
    let v = venue();
    let frame = br#"{"type":"match","trade_id":7,"side":"buy","size":"1","price":"2","product_id":"SOL-USDC","time":"2024-10-01T13:57:24Z"}"#;
    let mut out = Vec::new();
    v.parse(frame, RECEIVED, &mut out).unwrap();
    assert_eq!(out[0].symbol, sym("SOL-USDC"));
}

#[test]
fn one_subscribe_for_all_symbols() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USD"), sym("ETH-USD")]),
        vec![WsMessage::Text(
            r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","heartbeat"]}"#
                .into()
        )]
    );
    // Coinbase's own heartbeat channel proves life; a protocol ping keeps proxies happy.
    assert!(matches!(
        v.ping().map(|p| p.message),
        Some(WsMessage::Ping(_))
    ));
}

#[test]
fn requests_paginate_with_the_cursor() {
    let v = venue();
    assert_eq!(
        v.url(&[]).unwrap().as_str(),
        "wss://ws-feed.exchange.coinbase.com/"
    );
    let latest = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://api.exchange.coinbase.com/products/BTC-USD/trades?limit=100"
    );
    assert!(latest
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("user-agent") && v.starts_with("crypto-feeder/")));
    let older = v
        .trades_request(
            &sym("ETH-USD"),
            PollRequest {
                last_seen: None,
                page: Some("431239001"),
            },
        )
        .unwrap();
    assert_eq!(
        older.url.as_str(),
        "https://api.exchange.coinbase.com/products/ETH-USD/trades?limit=100&after=431239001"
    );
    // A cursor is data, not URL syntax.
    let odd = v
        .trades_request(
            &sym("ETH-USD"),
            PollRequest {
                last_seen: None,
                page: Some("1&x=2"),
            },
        )
        .unwrap();
    assert_eq!(odd.url.query(), Some("limit=100&after=1%26x%3D2"));

    let cfg = config(
        "coinbase",
        &["BTC-USD"],
        Some("http://127.0.0.1:4000"),
        Some("ws://127.0.0.1:4001/feed"),
    );
    let v = CoinbaseVenue::new(&cfg).unwrap();
    assert_eq!(v.url(&[]).unwrap().as_str(), "ws://127.0.0.1:4001/feed");
    let req = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/products/BTC-USD/trades?limit=100"
    );
}

#[test]
fn rest_payloads_and_cursor_header() {
    let v = venue();
    let mut headers = HeaderMap::new();
    headers.insert("cb-after", HeaderValue::from_static("658232640"));
    headers.insert("cb-before", HeaderValue::from_static("658232642"));
    let parse = |file: &str, headers: &HeaderMap, out: &mut Vec<_>| {
        let body = payload("coinbase", file);
        let resp = HttpResponse {
            status: 200,
            headers,
            body: &body,
        };
        v.parse_trades(&sym("BTC-USD"), &resp, RECEIVED, out)
    };

    let mut out = Vec::new();
    let page = parse("rest_trades.json", &headers, &mut out).unwrap();
    assert_eq!(page.older.as_deref(), Some("658232640"));
    assert_eq!(
        seen_all(&out, "coinbase"),
        vec![
            want(
                "BTC-USD",
                "658232642",
                "60945.01000000",
                "5.23512000",
                Side::Buy,
                "2024-10-01T13:57:24.028459Z"
            ),
            want(
                "BTC-USD",
                "658232641",
                "60944.12000000",
                "0.00000001",
                Side::Sell,
                "2024-10-01T13:57:23.385123Z"
            ),
            want(
                "BTC-USD",
                "658232640",
                "60944.00000000",
                "0.10000000",
                Side::Sell,
                "2024-10-01T13:57:23.1Z"
            ),
        ]
    );

    // No header: no older page.
    let mut out = Vec::new();
    assert_eq!(
        parse("rest_trades.json", &HeaderMap::new(), &mut out)
            .unwrap()
            .older,
        None
    );
    // An empty page ends the history even when a cursor is sent.
    let mut out = Vec::new();
    assert_eq!(
        parse("rest_empty.json", &headers, &mut out).unwrap().older,
        None
    );
    assert!(out.is_empty());

    let e = parse("rest_error.json", &headers, &mut out).unwrap_err();
    assert!(matches!(&e, ParseError::Venue(m) if m == "NotFound"), "{e}");
    let e = parse("rest_bad_size.json", &headers, &mut out).unwrap_err();
    assert!(matches!(&e, ParseError::Field { field: "size", .. }), "{e}");
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 10] = [
        b"",
        b"null",
        b"{}",
        b"{\"type\":null}",
        b"{\"type\":\"match\"}",
        b"{\"type\":\"heartbeat\",\"product_id\":\"??\",\"last_trade_id\":1}",
        b"{\"type\":\"error\",\"message\":{}}",
        b"\xff\xfe",
        b"[{\"trade_id\":-5}]",
        b"[{\"trade_id\":1,\"side\":\"buy\",\"size\":\"1\",\"price\":\"1\",\"time\":\"9999-99-99T00:00:00Z\"}]",
    ];
    for input in inputs {
        let mut out = Vec::new();
        assert!(
            v.parse(input, RECEIVED, &mut out).is_err(),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(parse_rest(&v, "BTC-USD", input, &mut out).is_err());
        assert!(out.is_empty());
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::exchange::Transport;
    use feeder_core::feeder::{ExchangeFactory, Registry};
    assert_eq!(
        CoinbaseFactory.transports(),
        vec![Transport::Websocket, Transport::Rest]
    );
    let mut r = Registry::new();
    crate::register(&mut r);
    assert!(r.exchange("coinbase").is_some());
    assert_eq!(r.exchange("bitstamp").is_some(), cfg!(feature = "bitstamp"));
    let bad = config("coinbase", &["BTC-USD"], Some("ftp://h/"), None);
    assert!(CoinbaseFactory.build(&bad).is_err());
}

#[test]
fn factory_builds_either_driver() {
    use feeder_core::exchange::Transport;
    use feeder_core::feeder::ExchangeFactory;
    for transport in [Transport::Websocket, Transport::Rest] {
        let mut cfg = config("coinbase", &["BTC-USD"], None, None);
        cfg.transport = transport;
        let ex = CoinbaseFactory.build(&cfg).unwrap();
        assert_eq!(ex.name(), "coinbase");
        cfg.backfill = false;
        assert!(CoinbaseFactory.build(&cfg).is_ok());
    }
}

#[test]
fn fast_path_reads_matches_as_serde_does() {
    fast_path_agrees(
        "coinbase",
        |t| wire::WsMessage::scan(t).map(|m| format!("{m:?}")),
        |t| serde_json::from_str::<wire::WsMessage<'_>>(t).map(|m| format!("{m:?}")),
        &[
            "ws_match.json",
            "ws_last_match.json",
            "ws_match_unknown_fields.json",
            "ws_match_string_trade_id.json",
        ],
    );
}
