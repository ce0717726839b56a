use feeder_core::exchange::{Cursor, Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, Timestamp, TradeId};
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

const SYMBOLS: [&str; 3] = ["BTC-USD", "BTC-USDT", "TESTBTC-TESTUSD"];

fn venue() -> BitfinexVenue {
    BitfinexVenue::new(&config("bitfinex", &SYMBOLS, None, None)).unwrap()
}

/// A venue whose connection subscribed all three symbols: `tBTCUSD` on channel 19111,
/// `tBTCUST` (BTC-USDT) on 19112, `tTESTBTC:TESTUSD` on 19113.
fn subscribed() -> BitfinexVenue {
    let v = venue();
    v.subscribe(&SYMBOLS.map(sym));
    for f in [
        "ws_subscribed.json",
        "ws_subscribed_ust.json",
        "ws_subscribed_colon.json",
    ] {
        assert_eq!(
            v.parse(&payload("bitfinex", f), RECEIVED, &mut Vec::new())
                .unwrap(),
            Frame::Ack
        );
    }
    v
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        ("ws_info.json", Control(Frame::Ack)),
        ("ws_info_reconnect.json", Control(Frame::Reconnect)),
        ("ws_info_maintenance_start.json", Control(Frame::Ignored)),
        ("ws_info_maintenance_end.json", Control(Frame::Reconnect)),
        ("ws_subscribed_book.json", Control(Frame::Ignored)),
        (
            "ws_snapshot.json",
            Data(vec![
                want(
                    "BTC-USD",
                    "401597393",
                    "7244.9",
                    "0.005",
                    Side::Buy,
                    "2019-11-25T15:07:55.039Z",
                ),
                want(
                    "BTC-USD",
                    "401597392",
                    "7245.3",
                    "0.01",
                    Side::Sell,
                    "2019-11-25T15:07:50.503Z",
                ),
            ]),
        ),
        ("ws_snapshot_empty.json", Data(vec![])),
        (
            "ws_te.json",
            Data(vec![want(
                "BTC-USD",
                "401597395",
                "7245.3",
                "0.005",
                Side::Buy,
                "2019-11-25T15:07:58.808Z",
            )]),
        ),
        // The same trade again, as an execution update: not emitted twice.
        ("ws_tu.json", Control(Frame::Ignored)),
        (
            "ws_te_exponent.json",
            Data(vec![want(
                "BTC-USDT",
                "401597396",
                "94012.5",
                "0.000025",
                Side::Sell,
                "2019-11-25T15:07:58.809Z",
            )]),
        ),
        (
            "ws_te_tiny.json",
            Data(vec![want(
                "BTC-USD",
                "401597397",
                "12000",
                "0.00000001",
                Side::Buy,
                "2019-11-25T15:07:58.810Z",
            )]),
        ),
        (
            "ws_te_appended_fields.json",
            Data(vec![want(
                "BTC-USD",
                "401597398",
                "7245.4",
                "1.25",
                Side::Sell,
                "2019-11-25T15:07:58.811Z",
            )]),
        ),
        (
            "ws_te_strings.json",
            Data(vec![want(
                "BTC-USD",
                "401597399",
                "7245.50",
                "0.00010000",
                Side::Sell,
                "2019-11-25T15:07:58.812Z",
            )]),
        ),
        (
            "ws_te_colon.json",
            Data(vec![want(
                "TESTBTC-TESTUSD",
                "401597420",
                "101.25",
                "1.5",
                Side::Sell,
                "2019-11-25T15:07:58.900Z",
            )]),
        ),
        ("ws_hb.json", Control(Frame::Heartbeat)),
        ("ws_pong.json", Control(Frame::Heartbeat)),
        ("ws_fte.json", Control(Frame::Ignored)),
        ("ws_unknown_event.json", Control(Frame::Unrecognized)),
        (
            "ws_error.json",
            Err(|e| matches!(e, ParseError::Venue(m) if m == "10300: symbol: invalid")),
        ),
        (
            "ws_subscribed_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "tLTCUSD")),
        ),
        // Not Bitfinex's name for BTC-USDT (that is tBTCUST): never guessed.
        (
            "ws_subscribed_tether_colon.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "tBTC:USDT")),
        ),
        (
            "ws_unsubscribed_channel.json",
            Err(|e| matches!(e, ParseError::Other(m) if m.contains("55555"))),
        ),
        ("ws_te_missing_price.json", Err(is_json)),
        ("ws_te_bad_amount.json", Err(is_field)),
        ("ws_te_bool_price.json", Err(is_field)),
        ("ws_te_no_trade.json", Err(is_field)),
        ("ws_truncated.json", Err(is_json)),
        ("ws_not_an_array.json", Err(is_json)),
    ];
    stream_table(&subscribed(), "bitfinex", cases);
}

/// Ids and times are numbers on Bitfinex today; strings of digits mean the same, in
/// updates, snapshots and REST rows. What is not an unsigned 64-bit integer is refused,
/// without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = subscribed();
    stream_table(
        &v,
        "bitfinex",
        vec![
            (
                "ws_te_string_id.json",
                Data(vec![want(
                    "BTC-USD",
                    "401597410",
                    "7246.1",
                    "0.25",
                    Side::Buy,
                    "2019-11-25T15:07:58.830Z",
                )]),
            ),
            (
                "ws_snapshot_strings.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "401597412",
                        "7246.2",
                        "0.1",
                        Side::Buy,
                        "2019-11-25T15:07:58.840Z",
                    ),
                    want(
                        "BTC-USD",
                        "401597411",
                        "7246.3",
                        "0.2",
                        Side::Sell,
                        "2019-11-25T15:07:58.835Z",
                    ),
                ]),
            ),
            ("ws_te_id_too_large.json", Err(is_json)),
            ("ws_te_negative_id.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "bitfinex",
        "BTC-USD",
        vec![
            (
                "rest_trades_strings.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "401597415",
                        "7246.5",
                        "0.3",
                        Side::Buy,
                        "2019-11-25T15:07:58.860Z",
                    ),
                    want(
                        "BTC-USD",
                        "401597414",
                        "7246.4",
                        "0.4",
                        Side::Sell,
                        "2019-11-25T15:07:58.850Z",
                    ),
                ]),
            ),
            ("rest_id_too_large.json", Err(is_json)),
            ("rest_negative_mts.json", Err(is_json)),
        ],
    );
}

#[test]
fn te_and_tu_of_one_trade_emit_it_once() {
    let v = subscribed();
    let mut out = Vec::new();
    for f in ["ws_te.json", "ws_tu.json"] {
        v.parse(&payload("bitfinex", f), RECEIVED, &mut out)
            .unwrap();
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trade_id, TradeId::from_u64(401_597_395));
}

#[test]
fn amount_sign_is_the_taker_side_and_the_amount_is_its_magnitude() {
    let v = subscribed();
    let frame = |amount: &str| format!(r#"[19111,"te",[1,1574694478808,{amount},100]]"#);
    let mut out = Vec::new();
    for a in ["0.5", "-0.5", "-1e-8", "3E-3", "0"] {
        v.parse(frame(a).as_bytes(), RECEIVED, &mut out).unwrap();
    }
    let got: Vec<_> = out.iter().map(|t| (t.side, t.amount.to_string())).collect();
    assert_eq!(
        got,
        [
            (Side::Buy, "0.5".to_owned()),
            (Side::Sell, "0.5".to_owned()),
            (Side::Sell, "0.00000001".to_owned()),
            (Side::Buy, "0.003".to_owned()),
            (Side::Unknown, "0".to_owned()),
        ]
    );
    for bad in ["--1", "-", "- 1", "1e999", "\"-\"", "null"] {
        assert!(
            v.parse(frame(bad).as_bytes(), RECEIVED, &mut out).is_err(),
            "{bad}"
        );
    }
    let negative_price = br#"[19111,"te",[1,1574694478808,1,-100]]"#;
    assert!(v.parse(negative_price, RECEIVED, &mut out).is_err());
}

#[test]
fn channel_ids_belong_to_one_connection() {
    let v = subscribed();
    let te = payload("bitfinex", "ws_te.json");
    let mut out = Vec::new();
    assert_eq!(v.parse(&te, RECEIVED, &mut out).unwrap(), Frame::Data);

    // A new connection subscribes again: channel 19111 means nothing until it is acked anew.
    v.subscribe(&SYMBOLS.map(sym));
    assert!(matches!(
        v.parse(&te, RECEIVED, &mut out),
        Err(ParseError::Other(_))
    ));
    // On the new connection, channel 19111 is BTC-USDT.
    let ack = br#"{"event":"subscribed","channel":"trades","chanId":19111,"symbol":"tBTCUST","pair":"BTCUST"}"#;
    assert_eq!(v.parse(ack, RECEIVED, &mut out).unwrap(), Frame::Ack);
    out.clear();
    v.parse(&te, RECEIVED, &mut out).unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));

    // An unsubscribed channel is forgotten.
    let unsub = br#"{"event":"unsubscribed","status":"OK","chanId":19111}"#;
    assert_eq!(v.parse(unsub, RECEIVED, &mut out).unwrap(), Frame::Ack);
    assert!(v.parse(&te, RECEIVED, &mut out).is_err());
}

/// BTC-USDT is Tether on Bitfinex as everywhere: subscribed and requested as `tBTCUST`, its
/// trades written as BTC-USDT. A long name keeps its colon, in Bitfinex's asset names. A
/// symbol configured in Bitfinex's own names is refused, naming the one to configure.
#[test]
fn tether_is_ust_on_the_wire_and_usdt_in_trades() {
    let v = venue();
    let subs = v.subscribe(&[sym("BTC-USDT"), sym("TESTBTC-TESTUSD")]);
    assert_eq!(
        subs,
        vec![
            WsMessage::Text(
                r#"{"event":"subscribe","channel":"trades","symbol":"tBTCUST"}"#.into()
            ),
            WsMessage::Text(
                r#"{"event":"subscribe","channel":"trades","symbol":"tTESTBTC:TESTUSD"}"#.into()
            ),
        ]
    );
    let mut out = Vec::new();
    for f in ["ws_subscribed_ust.json", "ws_te_exponent.json"] {
        v.parse(&payload("bitfinex", f), RECEIVED, &mut out)
            .unwrap();
    }
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.path(), "/v2/trades/tBTCUST/hist");
    let req = v
        .trades_request(&sym("TESTBTC-TESTUSD"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.path(), "/v2/trades/tTESTBTC:TESTUSD/hist");

    let e = BitfinexVenue::new(&config("bitfinex", &["BTC-UST"], None, None)).unwrap_err();
    assert!(e.to_string().contains("BTC-USDT"), "{e}");
}

#[test]
fn subscribe_per_symbol_and_ping() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USD"), sym("BTC-USDT")]),
        vec![
            WsMessage::Text(
                r#"{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}"#.into()
            ),
            WsMessage::Text(
                r#"{"event":"subscribe","channel":"trades","symbol":"tBTCUST"}"#.into()
            ),
        ]
    );
    let ping = v.ping().unwrap();
    assert_eq!(ping.message, WsMessage::Text(PING.into()));
    assert_eq!(v.url(&[]).unwrap().as_str(), DEFAULT_WS_URL);
}

#[test]
fn requests_page_back_with_end_from_the_last_seen_start() {
    let v = venue();
    let latest = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://api-pub.bitfinex.com/v2/trades/tBTCUSD/hist?limit=1000&sort=-1"
    );
    let cursor = Cursor {
        trade_id: TradeId::from_u64(5),
        timestamp: Timestamp::from_unix_micros(1_574_694_478_808_999),
    };
    let older = v
        .trades_request(
            &sym("BTC-USDT"),
            PollRequest {
                last_seen: Some(&cursor),
                page: Some("1574694470503"),
            },
        )
        .unwrap();
    assert_eq!(
        older.url.as_str(),
        "https://api-pub.bitfinex.com/v2/trades/tBTCUST/hist?limit=1000&sort=-1&start=1574694478808&end=1574694470503"
    );
    let cfg = config(
        "bitfinex",
        &["BTC-USD"],
        Some("http://127.0.0.1:4000/bfx"),
        Some("ws://127.0.0.1:4001/ws/2"),
    );
    let v = BitfinexVenue::new(&cfg).unwrap();
    assert_eq!(v.url(&[]).unwrap().as_str(), "ws://127.0.0.1:4001/ws/2");
    let req = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/bfx/v2/trades/tBTCUSD/hist?limit=1000&sort=-1"
    );
}

#[test]
fn rest_payloads() {
    let v = venue();
    let mut out = Vec::new();
    let page = parse_rest_fixture(&v, "bitfinex", "BTC-USD", "rest_trades.json", &mut out).unwrap();
    // Fewer than a full page: nothing older to ask for.
    assert_eq!(page.older, None);
    assert_eq!(
        seen_all(&out, "bitfinex"),
        vec![
            want(
                "BTC-USD",
                "401597395",
                "7245.3",
                "0.005",
                Side::Buy,
                "2019-11-25T15:07:58.808Z"
            ),
            want(
                "BTC-USD",
                "401597393",
                "7244.9",
                "0.01",
                Side::Sell,
                "2019-11-25T15:07:55.039Z"
            ),
            want(
                "BTC-USD",
                "401597392",
                "7245.3",
                "0.000025",
                Side::Sell,
                "2019-11-25T15:07:50.503Z"
            ),
        ]
    );
    let mut out = Vec::new();
    assert_eq!(
        parse_rest_fixture(&v, "bitfinex", "BTC-USD", "rest_empty.json", &mut out)
            .unwrap()
            .older,
        None
    );
    let e = parse_rest_fixture(&v, "bitfinex", "BTC-USD", "rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == r#"10020 "limit: invalid""#),
        "{e}"
    );
    let e = parse_rest_fixture(&v, "bitfinex", "BTC-USD", "rest_rate_limit.json", &mut out)
        .unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "ERR_RATE_LIMIT"),
        "{e}"
    );
    let e =
        parse_rest_fixture(&v, "bitfinex", "BTC-USD", "rest_bad_price.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Field { field: "PRICE", .. }),
        "{e}"
    );
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn a_full_page_names_the_next_end() {
    let v = venue();
    let page = |same_ms: bool| {
        let rows: Vec<String> = (0..PAGE_LIMIT)
            .map(|i| {
                let ms = if same_ms {
                    1_574_694_478_000
                } else {
                    1_574_694_478_000 - i
                };
                format!("[{},{ms},0.1,100]", 10_000 - i)
            })
            .collect();
        format!("[{}]", rows.join(","))
    };
    let mut out = Vec::new();
    let p = parse_rest(&v, "BTC-USD", page(false).as_bytes(), &mut out).unwrap();
    assert_eq!(p.older.as_deref(), Some("1574694477001"));
    assert_eq!(out.len(), PAGE_LIMIT);
    // A page within one millisecond must still move back.
    let p = parse_rest(&v, "BTC-USD", page(true).as_bytes(), &mut out).unwrap();
    assert_eq!(p.older.as_deref(), Some("1574694477999"));
}

#[test]
fn garbage_never_panics() {
    let v = subscribed();
    let inputs: [&[u8]; 14] = [
        b"",
        b"null",
        b"{}",
        b"[]",
        b"[19111]",
        b"[\"x\",\"hb\"]",
        b"[-1,\"hb\"]",
        b"[19111,\"te\",[]]",
        b"[19111,\"te\",[1,2,3,4]",
        b"[19111,[[1]]]",
        b"[19111,[1,2,3,4]]",
        b"{\"event\":\"subscribed\",\"channel\":\"trades\"}",
        b"\xff\xfe",
        b"[19111,\"te\",[1,99999999999999999999,1,1]]",
    ];
    for input in inputs {
        let mut out = Vec::new();
        assert!(
            v.parse(input, RECEIVED, &mut out).is_err(),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(out.is_empty());
        assert!(parse_rest(&v, "BTC-USD", input, &mut out).is_err() || out.is_empty());
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&BitfinexFactory, "bitfinex", "BTC-USD");
    let bad = config("bitfinex", &["BTC-USD"], Some("ftp://h/"), None);
    assert!(BitfinexFactory.build(&bad).is_err());
    assert!(BitfinexFactory
        .build(&config("bitfinex", &[], None, None))
        .is_err());
}

#[test]
fn forward_pages_start_at_the_millisecond_of_the_last_trade_seen() {
    let v = venue();
    forward_table(
        &v,
        &[
            (
                "BTC-USD",
                "401597395",
                "2019-11-25T15:07:58.808999Z",
                Some("https://api-pub.bitfinex.com/v2/trades/tBTCUSD/hist?limit=10000&sort=1&start=1574694478808"),
            ),
            // BTC-USDT is Bitfinex's tBTCUST.
            (
                "BTC-USDT",
                "401597396",
                "2019-11-25T15:07:58.808Z",
                Some("https://api-pub.bitfinex.com/v2/trades/tBTCUST/hist?limit=10000&sort=1&start=1574694478808"),
            ),
            // The page is named by time alone.
            (
                "BTC-USD",
                "x",
                "1970-01-01T00:00:00Z",
                Some("https://api-pub.bitfinex.com/v2/trades/tBTCUSD/hist?limit=10000&sort=1&start=0"),
            ),
        ],
    );
    // 15 requests a minute.
    assert_eq!(v.request_spacing(), REQUEST_SPACING);
    assert!(REQUEST_SPACING >= std::time::Duration::from_secs(4));
}

#[test]
fn fast_path_reads_te_as_serde_does() {
    let v = subscribed();
    fast_path_agrees_on_trades(
        "bitfinex",
        |frame, out| v.fast_te(frame, RECEIVED, out),
        |frame, out| v.parse_with_serde(frame, RECEIVED, out),
        &[
            "ws_te.json",
            "ws_te_appended_fields.json",
            "ws_te_colon.json",
            "ws_te_exponent.json",
            "ws_te_string_id.json",
            "ws_te_strings.json",
            "ws_te_tiny.json",
        ],
    );
}
