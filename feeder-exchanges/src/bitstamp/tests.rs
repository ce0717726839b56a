use feeder_core::exchange::{Cursor, Frame, PollRequest, PollVenue, StreamVenue, WsMessage};
use feeder_core::model::{Side, Timestamp, TradeId};
use feeder_core::ParseError;

use super::*;
use crate::test_support::*;

fn venue() -> BitstampVenue {
    BitstampVenue::new(&config("bitstamp", &["BTC-USD", "ETH-USD"], None, None)).unwrap()
}

#[test]
fn websocket_payloads() {
    use Expect::*;
    let cases: Vec<(&str, Expect)> = vec![
        (
            "ws_trade.json",
            Data(vec![want(
                "BTC-USD",
                "359839513",
                "60944",
                "0.00010000",
                Side::Sell,
                "2024-10-01T13:57:23.385000Z",
            )]),
        ),
        (
            "ws_trade_buy_seconds_only.json",
            Data(vec![want(
                "ETH-USD",
                "359839514",
                "2650.50",
                "1.25000000",
                Side::Buy,
                "2024-10-01T13:57:24Z",
            )]),
        ),
        (
            "ws_trade_exponent.json",
            Data(vec![want(
                "BTC-USD",
                "359839515",
                "60945.12",
                "0.00000001",
                Side::Buy,
                "2024-10-01T13:57:25.000001Z",
            )]),
        ),
        (
            "ws_trade_unknown_fields.json",
            Data(vec![want(
                "BTC-USD",
                "359839516",
                "60946",
                "0.5",
                Side::Sell,
                "2024-10-01T13:57:26.123456Z",
            )]),
        ),
        ("ws_subscription_succeeded.json", Control(Frame::Ack)),
        ("ws_heartbeat.json", Control(Frame::Heartbeat)),
        ("ws_request_reconnect.json", Control(Frame::Reconnect)),
        ("ws_unknown_event.json", Control(Frame::Unrecognized)),
        ("ws_trade_private_channel.json", Control(Frame::Ignored)),
        (
            "ws_error.json",
            Err(|e| matches!(e, ParseError::Venue(m) if m == "Bad subscription string.")),
        ),
        (
            "ws_trade_unknown_pair.json",
            Err(|e| matches!(e, ParseError::UnknownSymbol(s) if s == "ltcusd")),
        ),
        ("ws_trade_bad_type.json", Err(is_field)),
        ("ws_trade_bad_price.json", Err(is_field)),
        ("ws_trade_missing_price_str.json", Err(is_json)),
        ("ws_trade_no_data.json", Err(is_field)),
        ("ws_truncated.json", Err(is_json)),
        ("ws_not_an_object.json", Err(is_json)),
        ("ws_no_event.json", Err(is_json)),
    ];
    stream_table(&venue(), "bitstamp", cases);
}

/// Bitstamp writes ids, sides and times as numbers in some places and strings of digits in
/// others, and has switched before: every one of them is read either way, on the stream
/// and over REST. What is not an unsigned 64-bit integer either way is refused, without a
/// trade.
#[test]
fn ids_and_times_as_numbers_or_strings() {
    use Expect::*;
    let v = venue();
    stream_table(
        &v,
        "bitstamp",
        vec![
            (
                "ws_trade_strings_and_numbers.json",
                Data(vec![want(
                    "BTC-USD",
                    "359839520",
                    "60945.50",
                    "0.20000000",
                    Side::Buy,
                    "2024-10-01T13:57:25.123456Z",
                )]),
            ),
            (
                "ws_trade_numeric_seconds_only.json",
                Data(vec![want(
                    "BTC-USD",
                    "359839521",
                    "60945.60",
                    "0.30000000",
                    Side::Sell,
                    "2024-10-01T13:57:26Z",
                )]),
            ),
            ("ws_trade_id_too_large.json", Err(is_json)),
            ("ws_trade_negative_id.json", Err(is_json)),
        ],
    );
    rest_table(
        &v,
        "bitstamp",
        "BTC-USD",
        vec![
            (
                "rest_transactions_numbers.json",
                Data(vec![want(
                    "BTC-USD",
                    "359839540",
                    "60960.5",
                    "0.00000025",
                    Side::Buy,
                    "2024-10-01T13:57:40Z",
                )]),
            ),
            ("rest_negative_tid.json", Err(is_json)),
            ("rest_tid_too_large.json", Err(is_json)),
        ],
    );
}

#[test]
fn parse_appends_without_touching_earlier_trades() {
    let v = venue();
    let mut out = Vec::new();
    v.parse(&payload("bitstamp", "ws_trade.json"), RECEIVED, &mut out)
        .unwrap();
    v.parse(
        &payload("bitstamp", "ws_trade_exponent.json"),
        RECEIVED,
        &mut out,
    )
    .unwrap();
    assert!(v
        .parse(
            &payload("bitstamp", "ws_trade_bad_type.json"),
            RECEIVED,
            &mut out
        )
        .is_err());
    let ids: Vec<_> = out.iter().map(|t| t.trade_id.as_str()).collect();
    assert_eq!(ids, ["359839513", "359839515"]);
}

#[test]
fn taker_side_follows_type() {
    // Bitstamp's `type` is the taker's side: 0 means the taker bought.
    let v = venue();
    let mut out = Vec::new();
    let frame = |ty: u8| {
        format!(
            r#"{{"event":"trade","channel":"live_trades_btcusd","data":{{"id":1,"timestamp":"1727791043","amount_str":"1","price_str":"2","type":{ty}}}}}"#
        )
    };
    v.parse(frame(0).as_bytes(), RECEIVED, &mut out).unwrap();
    v.parse(frame(1).as_bytes(), RECEIVED, &mut out).unwrap();
    assert_eq!(out[0].side, Side::Buy);
    assert_eq!(out[1].side, Side::Sell);
}

/// Tether is `usdt` in Bitstamp's pair names too: `BTC-USDT` is `btcusdt` in channels and
/// requests, and `live_trades_btcusdt` is read back as `BTC-USDT`.
#[test]
fn tether_is_usdt_both_ways() {
    let v = BitstampVenue::new(&config("bitstamp", &["BTC-USDT"], None, None)).unwrap();
    assert_eq!(
        v.subscribe(&[sym("BTC-USDT")]),
        vec![WsMessage::Text(
            r#"{"event":"bts:subscribe","data":{"channel":"live_trades_btcusdt"}}"#.into()
        )]
    );
    let req = v
        .trades_request(&sym("BTC-USDT"), PollRequest::default())
        .unwrap();
    assert_eq!(req.url.path(), "/api/v2/transactions/btcusdt/");
    let mut out = Vec::new();
    v.parse(
        &payload("bitstamp", "ws_trade_usdt.json"),
        RECEIVED,
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].symbol, sym("BTC-USDT"));
}

#[test]
fn subscribe_and_heartbeat_messages() {
    let v = venue();
    let msgs = v.subscribe(&[sym("BTC-USD"), sym("ETH-USD")]);
    assert_eq!(
        msgs,
        vec![
            WsMessage::Text(
                r#"{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}"#.into()
            ),
            WsMessage::Text(
                r#"{"event":"bts:subscribe","data":{"channel":"live_trades_ethusd"}}"#.into()
            ),
        ]
    );
    for m in &msgs {
        let WsMessage::Text(t) = m else {
            unreachable!()
        };
        serde_json::from_str::<serde_json::Value>(t).unwrap();
    }
    let ping = v.ping().unwrap();
    assert_eq!(ping.every, std::time::Duration::from_secs(15));
    assert_eq!(
        ping.message,
        WsMessage::Text(r#"{"event":"bts:heartbeat"}"#.into())
    );
    // The answer to our heartbeat is a heartbeat frame, not something to reply to.
    let mut out = Vec::new();
    assert_eq!(
        v.parse(
            &payload("bitstamp", "ws_heartbeat.json"),
            RECEIVED,
            &mut out
        )
        .unwrap(),
        Frame::Heartbeat
    );
}

#[test]
fn endpoints_default_to_production_and_accept_overrides() {
    let v = venue();
    assert_eq!(v.url(&[]).unwrap().as_str(), "wss://ws.bitstamp.net/");
    let req = v.transactions_request(&sym("BTC-USD"), None, RECEIVED);
    assert_eq!(
        req.url.as_str(),
        "https://www.bitstamp.net/api/v2/transactions/btcusd/?time=minute"
    );
    assert!(req.headers.iter().any(|(k, _)| k == "User-Agent"));

    let cfg = config(
        "bitstamp",
        &["BTC-USD"],
        Some("http://127.0.0.1:4000/mirror"),
        Some("ws://127.0.0.1:4001/"),
    );
    let v = BitstampVenue::new(&cfg).unwrap();
    assert_eq!(v.url(&[]).unwrap().as_str(), "ws://127.0.0.1:4001/");
    let req = v
        .trades_request(&sym("BTC-USD"), PollRequest::default())
        .unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:4000/mirror/api/v2/transactions/btcusd/?time=minute"
    );
}

#[test]
fn bad_configs_are_rejected() {
    let swapped = config("bitstamp", &["BTC-USD"], Some("ws://h/"), None);
    assert!(BitstampVenue::new(&swapped).is_err());
    let swapped = config("bitstamp", &["BTC-USD"], None, Some("https://h/"));
    assert!(BitstampVenue::new(&swapped).is_err());
    assert!(BitstampVenue::new(&config("bitstamp", &[], None, None)).is_err());
    assert!(BitstampVenue::new(&config("bitstamp", &["AB-CD", "ABC-D"], None, None)).is_err());
}

#[test]
fn window_is_the_smallest_that_reaches_the_last_trade() {
    let now = Timestamp::from_unix_secs(1_727_800_000);
    let cursor = |ago: i64| Cursor {
        trade_id: TradeId::from_u64(1),
        timestamp: Timestamp::from_unix_secs(1_727_800_000 - ago),
    };
    let cases = [
        (None, Window::Minute),
        (Some(cursor(0)), Window::Minute),
        (Some(cursor(45)), Window::Minute),
        // Within a minute, but not with the margin for skew and latency.
        (Some(cursor(55)), Window::Hour),
        (Some(cursor(3_000)), Window::Hour),
        (Some(cursor(3_595)), Window::Day),
        (Some(cursor(80_000)), Window::Day),
        // Older than Bitstamp can serve: the most it has.
        (Some(cursor(10 * 86_400)), Window::Day),
        // A cursor from the future (clock skew) still asks for the latest.
        (Some(cursor(-30)), Window::Minute),
    ];
    let v = venue();
    for (c, want) in cases {
        assert_eq!(Window::covering(c.as_ref(), now), want, "{c:?}");
        let req = v.transactions_request(&sym("ETH-USD"), c.as_ref(), now);
        assert_eq!(
            req.url.as_str(),
            format!(
                "https://www.bitstamp.net/api/v2/transactions/ethusd/?time={}",
                want.as_str()
            )
        );
    }
}

#[test]
fn rest_payloads() {
    let v = venue();
    let parse =
        |file: &str, out: &mut Vec<_>| parse_rest_fixture(&v, "bitstamp", "BTC-USD", file, out);

    let mut out = Vec::new();
    assert_eq!(
        parse("rest_transactions.json", &mut out).unwrap(),
        Page::default()
    );
    let got = seen_all(&out, "bitstamp");
    assert_eq!(
        got,
        vec![
            want(
                "BTC-USD",
                "359839530",
                "60951.00",
                "0.01500000",
                Side::Sell,
                "2024-10-01T13:57:31Z"
            ),
            want(
                "BTC-USD",
                "359839529",
                "60950.12",
                "0.00000001",
                Side::Buy,
                "2024-10-01T13:57:29Z"
            ),
            want(
                "BTC-USD",
                "359839513",
                "60944",
                "0.00010000",
                Side::Sell,
                "2024-10-01T13:57:23Z"
            ),
        ]
    );

    let mut out = Vec::new();
    parse("rest_transactions_numbers.json", &mut out).unwrap();
    assert_eq!(
        seen_all(&out, "bitstamp"),
        vec![want(
            "BTC-USD",
            "359839540",
            "60960.5",
            "0.00000025",
            Side::Buy,
            "2024-10-01T13:57:40Z"
        )]
    );

    let mut out = Vec::new();
    assert_eq!(parse("rest_empty.json", &mut out).unwrap(), Page::default());
    assert!(out.is_empty());

    let e = parse("rest_error.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m == "Invalid currency pair."),
        "{e}"
    );
    let e = parse("rest_error_object.json", &mut out).unwrap_err();
    assert!(
        matches!(&e, ParseError::Venue(m) if m.contains("Invalid time parameter.")),
        "{e}"
    );

    // A bad trade rejects the page as a whole, leaving earlier trades in `out` alone.
    let mut out = Vec::new();
    parse("rest_transactions_numbers.json", &mut out).unwrap();
    assert!(matches!(
        parse("rest_bad_side.json", &mut out),
        Err(ParseError::Field { .. })
    ));
    assert!(matches!(
        parse("rest_missing_tid.json", &mut out),
        Err(ParseError::Json(_))
    ));
    assert_eq!(out.len(), 1);
}

#[test]
fn garbage_never_panics() {
    let v = venue();
    let inputs: [&[u8]; 12] = [
        b"",
        b"null",
        b"\"trade\"",
        b"{}",
        b"{\"event\":7}",
        b"{\"event\":\"trade\",\"channel\":\"live_trades_btcusd\",\"data\":\"x\"}",
        b"{\"event\":\"trade\",\"channel\":\"live_trades_btcusd\",\"data\":{\"id\":-1}}",
        b"{\"event\":\"bts:error\",\"data\":[]}",
        b"\xff\xfe",
        b"[{\"date\":\"99999999999999999999\"}]",
        b"[{\"date\":\"18446744073709551615\",\"tid\":1,\"price\":\"1\",\"amount\":\"1\",\"type\":0}]",
        b"{\"reason\":null}",
    ];
    for input in inputs {
        let mut out = Vec::new();
        let _ = v.parse(input, RECEIVED, &mut out);
        let r = parse_rest(&v, "BTC-USD", input, &mut out);
        assert!(r.is_err(), "{}", String::from_utf8_lossy(input));
        assert!(out.is_empty());
    }
}

#[test]
fn factory_offers_both_transports() {
    use feeder_core::exchange::Transport;
    use feeder_core::feeder::{ExchangeFactory, Registry};
    assert_eq!(
        BitstampFactory.transports(),
        vec![Transport::Websocket, Transport::Rest]
    );
    let mut r = Registry::new();
    crate::register(&mut r);
    assert!(r.exchange("bitstamp").is_some());
    assert!(BitstampFactory
        .build(&config("bitstamp", &[], None, None))
        .is_err());
}

#[test]
fn factory_builds_either_driver() {
    use feeder_core::exchange::Transport;
    use feeder_core::feeder::ExchangeFactory;
    for transport in [Transport::Websocket, Transport::Rest] {
        let mut cfg = config("bitstamp", &["BTC-USD"], None, None);
        cfg.transport = transport;
        let ex = BitstampFactory.build(&cfg).unwrap();
        assert_eq!(ex.name(), "bitstamp");
        cfg.backfill = false;
        assert!(BitstampFactory.build(&cfg).is_ok());
    }
}

#[test]
fn fast_path_reads_trades_as_serde_does() {
    fast_path_agrees(
        "bitstamp",
        |t| wire::scan_trade(t).map(|(channel, trade)| format!("{channel} {trade:?}")),
        |t| {
            let env: wire::Envelope<'_> = serde_json::from_str(t)?;
            let data = env.data.map_or("null", |d| d.get());
            let trade: wire::WsTrade<'_> = serde_json::from_str(data)?;
            Ok::<_, serde_json::Error>(format!("{} {trade:?}", env.channel))
        },
        &[
            "ws_trade.json",
            "ws_trade_buy_seconds_only.json",
            "ws_trade_exponent.json",
            "ws_trade_unknown_fields.json",
            "ws_trade_strings_and_numbers.json",
            "ws_trade_numeric_seconds_only.json",
        ],
    );
}
