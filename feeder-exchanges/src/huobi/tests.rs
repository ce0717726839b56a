use std::io::Write;

use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::Side;
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> HuobiVenue {
    HuobiVenue::new(&config("huobi", &["BTC-USDT", "SHIB-USDT"], None, None)).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A stored payload as Huobi sends it: gzip-compressed.
fn frame(file: &str) -> Vec<u8> {
    gzip(&payload("huobi", file))
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_ping.json",
            Control(Frame::Reply(WsMessage::Text(
                r#"{"pong":1492420473027}"#.into(),
            ))),
        ),
        ("ws_ping_bad.json", Err(is_field)),
        ("ws_subbed.json", Control(Frame::Ack)),
        ("ws_unsubbed.json", Control(Frame::Ack)),
        (
            "ws_sub_error.json",
            Err(|e| {
                matches!(e, ParseError::Venue(m)
                    if m == "bad-request: invalid topic market.xyzabc.trade.detail")
            }),
        ),
        (
            "ws_trade.json",
            // tradeId, not the legacy id.
            Data(vec![want(
                "BTC-USDT",
                "102523573486",
                "52648.62",
                "0.006754",
                Side::Buy,
                "2021-09-07T06:09:23.173Z",
            )]),
        ),
        (
            "ws_trade_batch.json",
            Data(vec![
                want(
                    "SHIB-USDT",
                    "102523573500",
                    "0.00000092",
                    "1500000",
                    Side::Sell,
                    "2021-09-07T06:09:23.199Z",
                ),
                want(
                    "SHIB-USDT",
                    "102523573501",
                    "0.00000093",
                    "250000",
                    Side::Buy,
                    "2021-09-07T06:09:23.199Z",
                ),
            ]),
        ),
        (
            "ws_trade_legacy_id_only.json",
            // Longer than 64 bits, kept digit for digit.
            Data(vec![want(
                "BTC-USDT",
                "137005445300359286410323766",
                "52650",
                "0.1",
                Side::Sell,
                "2021-09-07T06:09:23.299Z",
            )]),
        ),
        ("ws_trade_legacy_float_id.json", Err(is_field)),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USDT",
                "102523573600",
                "52651.5",
                "0.5",
                Side::Sell,
                "2021-09-07T06:09:23.399Z",
            )]),
        ),
        ("ws_trade_bad_direction.json", Err(is_field)),
        ("ws_trade_negative_price.json", Err(is_field)),
        (
            "ws_trade_unknown_symbol.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "ltcusdt")),
        ),
        ("ws_trade_missing_amount.json", Err(is_json)),
        ("ws_other_channel.json", Control(Frame::Ignored)),
        ("ws_unknown.json", Control(Frame::Unrecognized)),
        ("ws_truncated.json", Err(is_json)),
    ];
    stream_table_with(&venue(), "huobi", cases, frame);
}

/// Ids and times are numbers on Huobi today; strings of digits mean the same, on the stream
/// and over REST, and the legacy id is read from either. What is not an unsigned 64-bit
/// integer is refused, without a trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table_with(
        &v,
        "huobi",
        vec![
            (
                "ws_trade_string_ids.json",
                Data(vec![want(
                    "BTC-USDT",
                    "102523573700",
                    "52652.5",
                    "0.25",
                    Side::Buy,
                    "2021-09-07T06:09:23.500Z",
                )]),
            ),
            (
                "ws_trade_legacy_id_string.json",
                Data(vec![want(
                    "BTC-USDT",
                    "137005445401359286410323771",
                    "52652.6",
                    "0.5",
                    Side::Sell,
                    "2021-09-07T06:09:23.510Z",
                )]),
            ),
            ("ws_trade_id_too_large.json", Err(is_json)),
            ("ws_trade_negative_id.json", Err(is_json)),
        ],
        frame,
    );
    rest_table(
        &v,
        "huobi",
        "BTC-USDT",
        vec![
            (
                "rest_trades_strings.json",
                Data(vec![
                    want(
                        "BTC-USDT",
                        "102523573800",
                        "52653.5",
                        "0.75",
                        Side::Sell,
                        "2021-09-07T06:09:23.600Z",
                    ),
                    want(
                        "BTC-USDT",
                        "102523573799",
                        "52653.4",
                        "0.1",
                        Side::Buy,
                        "2021-09-07T06:09:23.600Z",
                    ),
                ]),
            ),
            ("rest_trade_id_too_large.json", Err(is_json)),
            ("rest_negative_ts.json", Err(is_json)),
        ],
    );
}

#[test]
fn plain_json_is_read_too() {
    let v = venue();
    let mut out = Vec::new();
    let f = v
        .parse(&payload("huobi", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(f, Frame::Data);
    assert_eq!(out[0].trade_id.as_str(), "102523573486");
}

#[test]
fn bad_gzip_and_bombs_are_errors_not_panics() {
    let v = venue();
    let mut out = Vec::new();
    for bad in [
        &b"\x1f\x8b\x08\x00garbage"[..],
        b"\x00\x01\x02",
        b"",
        &gzip(b"{\"ping\":1}")[..10],
    ] {
        assert!(
            matches!(v.parse(bad, RECEIVED, &mut out), Err(ParseError::Other(_))),
            "{bad:?}"
        );
    }
    // Over the cap: refused, however well it compresses.
    let bomb = gzip(&vec![b' '; MAX_INFLATED + 1]);
    assert!(bomb.len() < 100_000);
    let e = v.parse(&bomb, RECEIVED, &mut out).unwrap_err();
    assert!(e.to_string().contains("over"), "{e}");
    // Exactly at the cap it inflates (and is then JSON, or not).
    let mut buf = Vec::new();
    gunzip_into(&gzip(b"12345"), 5, &mut buf).unwrap();
    assert_eq!(buf, b"12345");
    assert!(gunzip_into(&gzip(b"123456"), 5, &mut buf).is_err());
    assert!(out.is_empty());
    // The venue still works after all that.
    assert_eq!(
        v.parse(&frame("ws_subbed.json"), RECEIVED, &mut out)
            .unwrap(),
        Frame::Ack
    );
}

#[test]
fn every_ping_is_answered_with_its_number() {
    let v = venue();
    for n in ["0", "1700000000000", "18446744073709551615"] {
        let f = v
            .parse(
                &gzip(format!(r#"{{"ping":{n}}}"#).as_bytes()),
                RECEIVED,
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(
            f,
            Frame::Reply(WsMessage::Text(format!(r#"{{"pong":{n}}}"#)))
        );
    }
    for bad in ["-1", "1.5", "\"1\"", "{}"] {
        assert!(
            v.parse(
                &gzip(format!(r#"{{"ping":{bad}}}"#).as_bytes()),
                RECEIVED,
                &mut Vec::new()
            )
            .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn subscribe_and_symbols() {
    let v = venue();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT"), sym("SHIB-USDT")]),
        vec![
            WsMessage::Text(r#"{"sub":"market.btcusdt.trade.detail","id":"btcusdt"}"#.into()),
            WsMessage::Text(r#"{"sub":"market.shibusdt.trade.detail","id":"shibusdt"}"#.into()),
        ]
    );
    assert_eq!(v.url(&[]).unwrap().as_str(), DEFAULT_WS_URL);
    assert_eq!(to_venue(&sym("ETH-BTC")), "ethbtc");
    assert!(HuobiVenue::new(&config("huobi", &["AB-CD", "ABC-D"], None, None)).is_err());
}

/// Tether is `usdt` in Huobi's names too: `BTC-USDT` is `btcusdt` in topics and requests,
/// and `market.btcusdt.trade.detail` is read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = HuobiVenue::new(&config("huobi", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"sub":"market.btcusdt.trade.detail","id":"btcusdt"}"#.into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.query(), Some("symbol=btcusdt&size=2000"));
    let mut out = Vec::new();
    v.parse(&frame("ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn requests_ask_for_the_most_recent_trades() {
    let v = venue();
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "https://api.huobi.pro/market/history/trade?symbol=btcusdt&size=2000"
    );
    assert_eq!(v.max_pages(), 1);
    let cfg = config(
        "huobi",
        &["BTC-USDT"],
        Some("http://127.0.0.1:4000/htx"),
        Some("ws://127.0.0.1:4001/ws"),
    );
    let v = HuobiVenue::new(&cfg).unwrap();
    assert_eq!(v.url(&[]).unwrap().as_str(), "ws://127.0.0.1:4001/ws");
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/htx/market/history/trade?symbol=btcusdt&size=2000"
    );
}

#[test]
fn rest_payloads() {
    let v = venue();
    let mut out = Vec::new();
    let page = parse_rest_fixture(&v, "huobi", "BTC-USDT", "rest_trades.json", &mut out).unwrap();
    assert_eq!(page.older, None);
    assert_eq!(
        seen_all(&out, "huobi"),
        vec![
            want(
                "BTC-USDT",
                "102523573486",
                "52648.62",
                "0.006754",
                Side::Buy,
                "2021-09-07T06:09:23.173Z"
            ),
            want(
                "BTC-USDT",
                "102523573485",
                "52648.61",
                "0.00000001",
                Side::Sell,
                "2021-09-07T06:09:23.173Z"
            ),
            want(
                "BTC-USDT",
                "102523573400",
                "52600",
                "2.5",
                Side::Sell,
                "2021-09-07T06:09:22.001Z"
            ),
        ]
    );
    let mut out = Vec::new();
    parse_rest_fixture(&v, "huobi", "BTC-USDT", "rest_empty.json", &mut out).unwrap();
    assert!(out.is_empty());
    let e = parse_rest_fixture(&v, "huobi", "BTC-USDT", "rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "invalid-parameter: invalid symbol"),
        "{e}"
    );
    let e =
        parse_rest_fixture(&v, "huobi", "BTC-USDT", "rest_bad_price.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Field { field: "price", .. }),
        "{e}"
    );
    assert!(out.is_empty(), "a rejected page appends nothing");
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 9] = [
        b"null",
        b"{}",
        b"[]",
        b"{\"ch\":7}",
        b"{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{}}",
        b"{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[{}]}}",
        b"{\"status\":\"error\"}",
        b"\xff\xfe",
        b"{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[{\"tradeId\":1,\"ts\":99999999999999999999,\"amount\":1,\"price\":1,\"direction\":\"buy\"}]}}",
    ];
    for input in inputs {
        let mut out = Vec::new();
        let _ = v.parse(input, RECEIVED, &mut out);
        let _ = v.parse(&gzip(input), RECEIVED, &mut out);
        let _ = parse_rest(&v, "BTC-USDT", input, &mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::feeder::ExchangeFactory;
    assert_factory_builds_both_transports(&HuobiFactory, "huobi", "BTC-USDT");
    assert!(HuobiFactory
        .build(&config("huobi", &["BTC-USDT"], None, Some("http://h/")))
        .is_err());
}

/// On the inflated JSON, as the fast path reads it after gzip.
#[test]
fn fast_path_reads_trade_details_as_serde_does() {
    let v = venue();
    fast_path_agrees_on_trades(
        "huobi",
        |json, out| v.fast_push(json, RECEIVED, out),
        |json, out| v.parse_json_with_serde(json, RECEIVED, out),
        &[
            "ws_trade.json",
            "ws_trade_batch.json",
            "ws_trade_legacy_id_only.json",
            "ws_trade_legacy_id_string.json",
            "ws_trade_string_ids.json",
            "ws_trade_unknown_fields.json",
        ],
    );
}

/// The whole parser, gzip included, reads a trade frame as its serde path does.
#[test]
fn compressed_trade_frames_read_the_same_either_way() {
    let v = venue();
    for file in ["ws_trade.json", "ws_trade_batch.json", "ws_trade_unknown_symbol.json"] {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let got = v.parse(&frame(file), RECEIVED, &mut fast);
        let want = v.parse_with_serde(&frame(file), RECEIVED, &mut slow);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{file}");
        assert_eq!(fast, slow, "{file}");
    }
}
