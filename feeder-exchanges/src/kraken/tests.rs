use feeder_core::exchange::{Cursor, Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, TradeId};
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> KrakenVenue {
    KrakenVenue::new(&config("kraken", &["BTC-USD", "ETH-USD"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_trade.json",
            Data(vec![want(
                "BTC-USD",
                "74506123",
                "60944.1",
                "0.00012",
                Side::Sell,
                "2024-10-01T13:57:23.385123Z",
            )]),
        ),
        (
            "ws_trade_snapshot.json",
            Data(vec![
                want(
                    "ETH-USD",
                    "41200001",
                    "2650.5",
                    "1.25",
                    Side::Buy,
                    "2024-10-01T13:57:23.400000Z",
                ),
                want(
                    "ETH-USD",
                    "41200002",
                    "2650.51",
                    "0.00001",
                    Side::Sell,
                    "2024-10-01T13:57:23.400001Z",
                ),
            ]),
        ),
        (
            // Numbers with more digits than f64 would print back the same way stay exact.
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USD",
                "74506124",
                "60944.12345",
                "12.34567891",
                Side::Buy,
                "2024-10-01T13:57:23.425Z",
            )]),
        ),
        (
            "ws_trade_v1_name.json",
            Data(vec![want(
                "BTC-USD",
                "74506125",
                "60944.2",
                "0.5",
                Side::Buy,
                "2024-10-01T13:57:23.500000Z",
            )]),
        ),
        ("ws_subscribe.json", Control(Frame::Ack)),
        ("ws_pong.json", Control(Frame::Heartbeat)),
        ("ws_heartbeat.json", Control(Frame::Heartbeat)),
        ("ws_status.json", Control(Frame::Ignored)),
        ("ws_book.json", Control(Frame::Unrecognized)),
        (
            "ws_subscribe_error.json",
            Err(|e| {
                matches!(e, ParseError::Venue(m)
                    if m == "subscribe failed: Currency pair not supported XYZ/USD")
            }),
        ),
        ("ws_trade_batch_bad_side.json", Err(is_field)),
        ("ws_trade_string_price.json", Err(is_field)),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "SOL/USD")),
        ),
        ("ws_trade_missing_id.json", Err(is_json)),
        // v1's array messages have no trade id: not understood, by design.
        ("ws_v1_trade.json", Err(is_json)),
        ("ws_truncated.json", Err(is_json)),
    ];
    stream_table(&venue(), "kraken", cases);
}

/// Trade ids and REST times are numbers on Kraken today; written as strings they mean the
/// same, on the stream and over REST. What is not an unsigned 64-bit integer is refused,
/// without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "kraken",
        vec![
            (
                "ws_trade_string_id.json",
                Data(vec![want(
                    "BTC-USD",
                    "74506126",
                    "60944.3",
                    "0.25",
                    Side::Buy,
                    "2024-10-01T13:57:23.600000Z",
                )]),
            ),
            ("ws_trade_id_too_large.json", Err(is_json)),
            ("ws_trade_negative_id.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "kraken",
        "BTC-USD",
        vec![
            (
                "rest_trades_strings.json",
                Data(vec![
                    want(
                        "BTC-USD",
                        "61044957",
                        "30243.50000",
                        "0.10000000",
                        Side::Buy,
                        "2023-07-06T18:53:23.1234567Z",
                    ),
                    want(
                        "BTC-USD",
                        "61044958",
                        "30243.60000",
                        "0.20000000",
                        Side::Sell,
                        "2023-07-06T18:53:24.5Z",
                    ),
                ]),
            ),
            ("rest_id_too_large.json", Err(is_json)),
            ("rest_negative_id.json", Err(is_json)),
        ],
    );
}

#[test]
fn subscribe_to_v2_with_a_snapshot_and_ping() {
    let v = venue();
    assert_eq!(v.url(&[]).unwrap().as_str(), "wss://ws.kraken.com/v2");
    assert_eq!(
        v.subscribe(&[sym("BTC-USD"), sym("ETH-USD")]),
        vec![WsMessage::Text(
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","ETH/USD"],"snapshot":true}}"#
                .into()
        )]
    );
    assert_eq!(
        v.ping().unwrap().message,
        WsMessage::Text(r#"{"method":"ping"}"#.into())
    );
}

#[test]
fn rest_times_keep_all_seven_digits() {
    // 1688669597.8277369 is 1688669597.827736854... as an f64: the last digit would change.
    let t = rest_time("1688669597.8277369").unwrap();
    assert_eq!(t.unix_nanos(), 1_688_669_597_827_736_900);
    assert_eq!(t.digits(), 7);
    assert_eq!(t.to_string(), "2023-07-06T18:53:17.8277369Z");
    assert_ne!(
        (1688669597.8277369f64 * 1e9) as i64,
        1_688_669_597_827_736_900,
        "f64 would have rounded this time"
    );
    assert!(rest_time("1.6886695978277369e9").is_err());
    assert!(rest_time("-1").is_err());
    assert_eq!(rest_time("\"1688669597.5\"").unwrap().digits(), 1);
}

#[test]
fn rest_payloads_map_the_canonical_pair_name_back() {
    let v = venue();
    let mut out = Vec::new();
    let page = parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_trades.json", &mut out).unwrap();
    // Short of a full page: the newest trades, no page after it.
    assert_eq!(page.older, None);
    assert_eq!(
        seen_all(&out, "kraken"),
        vec![
            want(
                "BTC-USD",
                "61044952",
                "30243.40000",
                "0.34507674",
                Side::Buy,
                "2023-07-06T18:53:17.8277369Z"
            ),
            want(
                "BTC-USD",
                "61044953",
                "30243.30000",
                "0.00376960",
                Side::Sell,
                "2023-07-06T18:53:18.2804112Z"
            ),
            want(
                "BTC-USD",
                "61044956",
                "30243.30000",
                "0.00000001",
                Side::Sell,
                "2023-07-06T18:53:22.698379Z"
            ),
        ]
    );
    let mut out = Vec::new();
    assert_eq!(
        parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_empty.json", &mut out)
            .unwrap()
            .older,
        None
    );
    let e = parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "EQuery:Unknown asset pair"),
        "{e}"
    );
    // XETHZUSD is a configured symbol, but not the one asked for.
    let e =
        parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_other_pair.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::UnknownSymbol(p) if p == "XETHZUSD"),
        "{e}"
    );
    assert!(parse_rest_fixture(&v, "kraken", "ETH-USD", "rest_other_pair.json", &mut out).is_ok());
    out.clear();
    let e =
        parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_no_trade_id.json", &mut out).unwrap_err();
    assert!(is_json(&e), "{e}");
    let e = parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_exponent_time.json", &mut out)
        .unwrap_err();
    assert!(is_field(&e), "{e}");
    assert!(out.is_empty(), "a rejected page appends nothing");
    parse_rest_fixture(&v, "kraken", "BTC-USD", "rest_extra_element.json", &mut out).unwrap();
    assert_eq!(out.len(), 1);
}

/// Symbols use the usual codes; Kraken's own names (`XBT`, `XDG`, the `X` / `Z` prefixes)
/// are only on the wire. Out: `BTC/USD` on the stream, `XBTUSD` in requests. In: `BTC/USD`,
/// `XBT/USD`, `XXBTZUSD`, `XDGUSD`, `XBTUSDT` all come back as the configured symbol.
#[test]
fn symbols_map_to_krakens_names_and_back() {
    let v = KrakenVenue::new(&config(
        "kraken",
        &["BTC-USD", "DOGE-USD", "BTC-USDT"],
        None,
        None,
    ))
    .unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USD"), sym("DOGE-USD"), sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","DOGE/USD","BTC/USDT"],"snapshot":true}}"#
                .into()
        )]
    );
    for (s, pair) in [
        ("BTC-USD", "XBTUSD"),
        ("DOGE-USD", "XDGUSD"),
        ("BTC-USDT", "XBTUSDT"),
    ] {
        let req = v.trades_request(&sym(s), PollRequest::default()).unwrap();
        assert_eq!(req.url.query(), Some(format!("pair={pair}").as_str()));
    }
    for (file, s) in [
        ("ws_trade.json", "BTC-USD"),
        ("ws_trade_v1_name.json", "BTC-USD"),
        ("ws_trade_doge.json", "DOGE-USD"),
    ] {
        let mut out = Vec::new();
        v.parse(&payload("kraken", file), RECEIVED, &mut out)
            .unwrap();
        assert_eq!(out[0].symbol, sym(s), "{file}");
    }
    for (file, s) in [
        ("rest_trades.json", "BTC-USD"),
        ("rest_xdgusd.json", "DOGE-USD"),
        ("rest_xbtusdt.json", "BTC-USDT"),
    ] {
        let mut out = Vec::new();
        parse_rest_fixture(&v, "kraken", s, file, &mut out).unwrap();
        assert!(out.iter().all(|t| t.symbol == sym(s)), "{file}");
    }
    let e = KrakenVenue::new(&config("kraken", &["XBT-USD"], None, None)).unwrap_err();
    assert!(e.to_string().contains("BTC-USD"), "{e}");
}

#[test]
fn a_full_page_hands_on_the_last_cursor() {
    let v = venue();
    let rows: Vec<String> = (0..PAGE_LIMIT)
        .map(|i| format!(r#"["1.0","1.0",1688669597.{i:07},"b","l","",{}]"#, 100 + i))
        .collect();
    let body = format!(
        r#"{{"error":[],"result":{{"XXBTZUSD":[{}],"last":"1688669597000099900"}}}}"#,
        rows.join(",")
    );
    let mut out = Vec::new();
    let page = parse_rest(&v, "BTC-USD", body.as_bytes(), &mut out).unwrap();
    assert_eq!(out.len(), PAGE_LIMIT);
    assert_eq!(page.older.as_deref(), Some("1688669597000099900"));
    let bad = body.replace("\"1688669597000099900\"", "\"soon\"");
    let mut out = Vec::new();
    assert!(parse_rest(&v, "BTC-USD", bad.as_bytes(), &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn requests_use_the_cursor_time_or_the_last_cursor() {
    let v = venue();
    let latest = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://api.kraken.com/0/public/Trades?pair=XBTUSD"
    );
    let cursor = Cursor {
        trade_id: TradeId::from_u64(61_044_956),
        timestamp: rest_time("1688669602.698379").unwrap(),
    };
    let since = v
        .trades_request(
            &sym("BTC-USD"),
            PollRequest {
                last_seen: Some(&cursor),
                page: None,
            },
        )
        .unwrap();
    // A microsecond before the last seen trade: a trade at the same instant is not lost.
    assert_eq!(
        since.url.as_str(),
        "https://api.kraken.com/0/public/Trades?pair=XBTUSD&since=1688669602698378000"
    );
    let next = v
        .trades_request(
            &sym("ETH-USD"),
            PollRequest {
                last_seen: Some(&cursor),
                page: Some("1688669602698379000"),
            },
        )
        .unwrap();
    assert_eq!(
        next.url.as_str(),
        "https://api.kraken.com/0/public/Trades?pair=ETHUSD&since=1688669602698379000"
    );
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 9] = [
        b"",
        b"null",
        b"[1]",
        b"{\"channel\":\"trade\",\"data\":{}}",
        b"{\"channel\":\"trade\",\"data\":[{\"trade_id\":1}]}",
        b"\xff\xfe",
        b"{\"error\":[],\"result\":{\"A\":[],\"B\":[]}}",
        b"{\"error\":[],\"result\":{\"XXBTZUSD\":[[1,2,3,4,5,6,7]]}}",
        b"{\"error\":[],\"result\":{\"XXBTZUSD\":[[\"1\",\"1\",[],\"b\",\"l\",\"\",1]]}}",
    ];
    assert_garbage_refused(&v, "BTC-USD", &inputs);
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&KrakenFactory, "kraken", "BTC-USD");
    // Kraken's own name for bitcoin is refused in the configuration.
    assert!(KrakenFactory
        .build(&config("kraken", &["BTC-USD", "XBT-USD"], None, None))
        .is_err());
}

#[test]
fn forward_pages_start_a_microsecond_before_the_last_trade_seen() {
    let v = venue();
    forward_table(
        &v,
        &[
            (
                "BTC-USD",
                "61044956",
                "2023-07-06T18:53:22.698379Z",
                Some("https://api.kraken.com/0/public/Trades?pair=XBTUSD&since=1688669602698378000&count=1000"),
            ),
            // REST's tenths of a microsecond: the margin still covers the whole instant.
            (
                "ETH-USD",
                "61044957",
                "2023-07-06T18:53:17.8277369Z",
                Some("https://api.kraken.com/0/public/Trades?pair=ETHUSD&since=1688669597827735900&count=1000"),
            ),
            // Kraken pages by time, so any trade id will do.
            (
                "BTC-USD",
                "TXID-1",
                "1970-01-01T00:00:00Z",
                Some("https://api.kraken.com/0/public/Trades?pair=XBTUSD&since=0&count=1000"),
            ),
        ],
    );
    assert_eq!(v.request_spacing(), REQUEST_SPACING);
    assert!(REQUEST_SPACING >= std::time::Duration::from_secs(1));
}

#[test]
fn fast_path_reads_trade_pushes_as_serde_does() {
    let v = venue();
    fast_path_agrees_on_trades(
        "kraken",
        |frame, out| v.fast_push(frame, RECEIVED, out),
        |frame, out| v.parse_with_serde(frame, RECEIVED, out),
        &[
            "ws_trade.json",
            "ws_trade_snapshot.json",
            "ws_trade_string_id.json",
            "ws_trade_unknown_fields.json",
        ],
    );
}
