use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue};
use feeder_core::model::Side;
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> BinanceVenue {
    BinanceVenue::new(&config("binance", &["BTC-USDT", "ETH-USDT"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_trade.json",
            // The buyer was the maker: the taker sold.
            Data(vec![want(
                "BTC-USDT",
                "3866013812",
                "60944.01000000",
                "0.00010000",
                Side::Sell,
                "2024-10-01T13:57:23.385Z",
            )]),
        ),
        (
            "ws_trade_taker_buy.json",
            Data(vec![want(
                "ETH-USDT",
                "1597458321",
                "2650.50000000",
                "1.25000000",
                Side::Buy,
                "2024-10-01T13:57:23.390Z",
            )]),
        ),
        (
            "ws_trade_raw.json",
            Data(vec![want(
                "BTC-USDT",
                "3866013813",
                "60944.02000000",
                "0.50000000",
                Side::Buy,
                "2024-10-01T13:57:23.400Z",
            )]),
        ),
        (
            "ws_trade_exponent.json",
            Data(vec![want(
                "BTC-USDT",
                "3866013814",
                "60944.03",
                "0.00000001",
                Side::Sell,
                "2024-10-01T13:57:23.410Z",
            )]),
        ),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USDT",
                "3866013815",
                "60944.04000000",
                "0.00200000",
                Side::Sell,
                "2024-10-01T13:57:23.420Z",
            )]),
        ),
        ("ws_subscribe_result.json", Control(Frame::Ack)),
        ("ws_agg_trade.json", Control(Frame::Unrecognized)),
        ("ws_no_data.json", Control(Frame::Unrecognized)),
        ("ws_server_shutdown.json", Control(Frame::Reconnect)),
        ("ws_server_shutdown_event.json", Control(Frame::Reconnect)),
        (
            "ws_error.json",
            Err(|e| matches!(e, ParseError::Venue(m) if m.starts_with("2: Invalid request"))),
        ),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "LTCUSDT")),
        ),
        ("ws_trade_bad_price.json", Err(is_field)),
        ("ws_trade_missing_maker_flag.json", Err(is_json)),
        ("ws_trade_bad_time.json", Err(is_json)),
        ("ws_data_without_event.json", Err(is_json)),
        ("ws_truncated.json", Err(is_json)),
        ("ws_not_an_object.json", Err(is_json)),
    ];
    stream_table(&venue(), "binance", cases);
}

/// Ids and times are numbers on Binance today; written as strings of digits they mean the
/// same, on the stream and over REST. What is not an unsigned 64-bit integer either way is
/// refused, without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "binance",
        vec![
            (
                "ws_trade_string_id.json",
                Data(vec![want(
                    "BTC-USDT",
                    "3866013817",
                    "60944.01000000",
                    "0.00010000",
                    Side::Sell,
                    "2024-10-01T13:57:23.385Z",
                )]),
            ),
            (
                "ws_trade_string_time.json",
                Data(vec![want(
                    "BTC-USDT",
                    "3866013818",
                    "60944.05000000",
                    "0.00300000",
                    Side::Sell,
                    "2024-10-01T13:57:23.440Z",
                )]),
            ),
            (
                "ws_trade_raw_strings.json",
                Data(vec![want(
                    "ETH-USDT",
                    "1597458322",
                    "2650.51000000",
                    "0.10000000",
                    Side::Buy,
                    "2024-10-01T13:57:23.430Z",
                )]),
            ),
            ("ws_trade_id_too_large.json", Err(is_json)),
            ("ws_trade_negative_id.json", Err(is_json)),
            ("ws_trade_bad_time.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "binance",
        "BTC-USDT",
        vec![
            (
                "rest_trades_strings.json",
                Data(vec![
                    want(
                        "BTC-USDT",
                        "3866013813",
                        "60944.02000000",
                        "0.50000000",
                        Side::Buy,
                        "2024-10-01T13:57:23.400Z",
                    ),
                    want(
                        "BTC-USDT",
                        "3866013814",
                        "60944.03000000",
                        "0.00000001",
                        Side::Sell,
                        "2024-10-01T13:57:23.410Z",
                    ),
                ]),
            ),
            ("rest_id_too_large.json", Err(is_json)),
            ("rest_negative_id.json", Err(is_json)),
        ],
    );
    // Paging reads the ids whatever their type.
    let mut out = Vec::new();
    let page = parse_rest_fixture(
        &v,
        "binance",
        "BTC-USDT",
        "rest_trades_strings.json",
        &mut out,
    );
    assert_eq!(page.unwrap().older.as_deref(), Some("3866012813"));
}

#[test]
fn buyer_is_maker_means_the_taker_sold() {
    assert_eq!(taker_side(true), Side::Sell);
    assert_eq!(taker_side(false), Side::Buy);
    let v = venue();
    let frame = |m: bool| {
        format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":2,"s":"BTCUSDT","t":1,"p":"2","q":"1","T":1,"m":{m},"M":true}}}}"#
        )
    };
    let mut out = Vec::new();
    v.parse(frame(true).as_bytes(), RECEIVED, &mut out).unwrap();
    v.parse(frame(false).as_bytes(), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].side, Side::Sell);
    assert_eq!(out[1].side, Side::Buy);

    let body = br#"[{"id":1,"price":"2","qty":"1","quoteQty":"2","time":1,"isBuyerMaker":true,"isBestMatch":true}]"#;
    let mut out = Vec::new();
    parse_rest(&v, "BTC-USDT", body, &mut out).unwrap();
    assert_eq!(out[0].side, Side::Sell);
}

#[test]
fn symbols_map_only_from_the_configuration() {
    // BTCUSDT cannot be split by rule; only configured symbols are recognised, and two
    // configured symbols Binance would spell the same are rejected.
    assert_eq!(to_venue(&sym("BTC-USDT")), "BTCUSDT");
    assert_eq!(stream_name(&sym("BTC-USDT")), "btcusdt@trade");
    let v = BinanceVenue::new(&config("binance", &["BTCU-SDT"], None, None)).unwrap();
    let mut out = Vec::new();
    v.parse(&payload("binance", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTCU-SDT"));
    assert!(BinanceVenue::new(&config("binance", &["BTC-USDT", "BTCU-SDT"], None, None)).is_err());
    // A symbol outside the configuration is never guessed.
    let mut out = Vec::new();
    let v = BinanceVenue::new(&config("binance", &["ETH-USDT"], None, None)).unwrap();
    assert!(matches!(
        v.parse(&payload("binance", "ws_trade.json"), RECEIVED, &mut out),
        Err(ParseError::UnknownSymbol(_))
    ));
}

/// Tether is `USDT` in Binance's names too: `BTC-USDT` is `btcusdt@trade` and `BTCUSDT` in
/// requests, and `BTCUSDT` is read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = BinanceVenue::new(&config("binance", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.url(&[sym("BTC-USDT")]).unwrap().query(),
        Some("streams=btcusdt@trade")
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.query(), Some("symbol=BTCUSDT&limit=1000"));
    let mut out = Vec::new();
    v.parse(&payload("binance", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn one_combined_stream_url_and_no_subscribe_message() {
    let v = venue();
    let symbols = [sym("BTC-USDT"), sym("ETH-USDT")];
    assert_eq!(
        v.url(&symbols).unwrap().as_str(),
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    );
    assert!(v.subscribe(&symbols).is_empty());
    // Binance pings; the library answers. No keep-alive of our own.
    assert_eq!(v.ping(), None);
    assert!(v.stale_timeout() > std::time::Duration::from_secs(40));

    let cfg = config(
        "binance",
        &["BTC-USDT"],
        Some("http://127.0.0.1:4000/prefix"),
        Some("ws://127.0.0.1:4001/"),
    );
    let v = BinanceVenue::new(&cfg).unwrap();
    assert_eq!(
        v.url(&[sym("BTC-USDT")]).unwrap().as_str(),
        "ws://127.0.0.1:4001/stream?streams=btcusdt@trade"
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/prefix/api/v3/trades?symbol=BTCUSDT&limit=1000"
    );
}

#[test]
fn requests_page_back_through_historical_trades() {
    let v = venue();
    let latest = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        latest.url.as_str(),
        "https://api.binance.com/api/v3/trades?symbol=BTCUSDT&limit=1000"
    );
    let older = v
        .trades_request(
            &sym("ETH-USDT"),
            PollRequest {
                last_seen: None,
                page: Some("1597457321"),
            },
        )
        .unwrap();
    assert_eq!(
        older.url.as_str(),
        "https://api.binance.com/api/v3/historicalTrades?symbol=ETHUSDT&limit=1000&fromId=1597457321"
    );
    assert!(older.headers.iter().all(|(k, _)| !k.starts_with("X-MBX")));
}

#[test]
fn rest_payloads_and_paging() {
    let v = venue();
    let parse =
        |file: &str, out: &mut Vec<_>| parse_rest_fixture(&v, "binance", "BTC-USDT", file, out);
    let mut out = Vec::new();
    let page = parse("rest_trades.json", &mut out).unwrap();
    // The page before starts PAGE_LIMIT ids before the oldest of this one.
    assert_eq!(page.older.as_deref(), Some("3866012810"));
    assert_eq!(
        seen_all(&out, "binance"),
        vec![
            want(
                "BTC-USDT",
                "3866013810",
                "60943.99000000",
                "0.01500000",
                Side::Buy,
                "2024-10-01T13:57:23.100Z"
            ),
            want(
                "BTC-USDT",
                "3866013811",
                "60944.00000000",
                "0.00000001",
                Side::Sell,
                "2024-10-01T13:57:23.385Z"
            ),
            want(
                "BTC-USDT",
                "3866013812",
                "60944.01000000",
                "0.00010000",
                Side::Sell,
                "2024-10-01T13:57:23.385Z"
            ),
        ]
    );
    let mut out = Vec::new();
    assert_eq!(parse("rest_empty.json", &mut out).unwrap().older, None);
    let e = parse("rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "-1121: Invalid symbol."),
        "{e}"
    );
    let e = parse("rest_bad_qty.json", &mut out).unwrap_err();
    assert!(is_field(&e), "{e}");
    assert!(out.is_empty(), "a rejected page appends nothing");

    // The first trades of a symbol: the older page starts at id 0 and the walk ends there.
    let body = br#"[{"id":0,"price":"1","qty":"1","quoteQty":"1","time":1,"isBuyerMaker":false,"isBestMatch":true}]"#;
    let page = parse_rest(&v, "BTC-USDT", body, &mut out).unwrap();
    assert_eq!(page.older, None);
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 10] = [
        b"",
        b"null",
        b"{\"code\":\"x\"}",
        b"{\"stream\":1}",
        b"{\"data\":{\"e\":\"trade\"}}",
        b"{\"data\":[]}",
        b"{\"e\":5}",
        b"\xff\xfe",
        b"[{\"id\":-5}]",
        b"[{\"id\":1,\"price\":\"1\",\"qty\":\"1\",\"time\":18446744073709551615,\"isBuyerMaker\":true}]",
    ];
    for input in inputs {
        let mut out = Vec::new();
        let _ = v.parse(input, RECEIVED, &mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(input));
        assert!(parse_rest(&v, "BTC-USDT", input, &mut out).is_err());
        assert!(out.is_empty());
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&BinanceFactory, "binance", "BTC-USDT");
    let bad = config("binance", &["BTC-USDT"], None, Some("http://h/"));
    assert!(BinanceFactory.build(&bad).is_err());
}

#[test]
fn fast_path_reads_trades_as_serde_does() {
    fast_path_agrees(
        "binance",
        |t| wire::WsTrade::scan(t).map(|trade| format!("{trade:?}")),
        |t| {
            let env: wire::Envelope<'_> = serde_json::from_str(t)?;
            let event = env.data.map_or(t, |d| d.get());
            let trade: wire::WsTrade<'_> = serde_json::from_str(event)?;
            Ok::<_, serde_json::Error>(format!("{trade:?}"))
        },
        &[
            "ws_trade.json",
            "ws_trade_raw.json",
            "ws_trade_exponent.json",
            "ws_trade_taker_buy.json",
            "ws_trade_unknown_fields.json",
            "ws_trade_string_id.json",
            "ws_trade_raw_strings.json",
        ],
    );
}

#[test]
fn forward_pages_start_right_after_the_last_trade_seen() {
    let v = venue();
    forward_table(
        &v,
        &[
            (
                "BTC-USDT",
                "3866013812",
                "2024-10-01T13:57:23.385Z",
                Some("https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT&limit=1000&fromId=3866013813"),
            ),
            (
                "ETH-USDT",
                "0",
                "2024-10-01T13:57:23.385Z",
                Some("https://api.binance.com/api/v3/historicalTrades?symbol=ETHUSDT&limit=1000&fromId=1"),
            ),
            // Not a Binance id: no forward page can be named, the fill walks back instead.
            ("BTC-USDT", "abc", "2024-10-01T13:57:23.385Z", None),
        ],
    );
    assert_eq!(v.request_spacing(), REQUEST_SPACING);
    // 240 requests of weight 25 a minute stay within Binance's 6000.
    assert!(60_000 / REQUEST_SPACING.as_millis() * 25 <= 6_000);
}
