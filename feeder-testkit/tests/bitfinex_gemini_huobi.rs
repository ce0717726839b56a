//! The Bitfinex, Gemini and Huobi mocks against a plain WebSocket / HTTP client and the real
//! parsers of `feeder-exchanges`: what the mocks send must parse back to exactly what they
//! published.

mod support;

use std::time::Duration;

use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, Transport, WsMessage};
use feeder_core::model::Timestamp;
use feeder_core::ParseError;
use feeder_exchanges::bitfinex::BitfinexVenue;
use feeder_exchanges::gemini::GeminiVenue;
use feeder_exchanges::huobi::HuobiVenue;
use feeder_testkit::venues::{MockBitfinex, MockConfig, MockGemini, MockHuobi, WsFault};

use support::*;

/// Parses the next frame, which must not carry trades.
async fn next_control<V: StreamVenue>(venue: &V, ws: &mut Client) -> Result<Frame, ParseError> {
    let f = next_frame(ws).await.expect("stream ended early");
    let mut out = Vec::new();
    let r = venue.parse(&f, Timestamp::now(), &mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&f));
    r
}

// ---------------------------------------------------------------------------------------
// Bitfinex

#[tokio::test]
async fn bitfinex_stream_round_trip_is_exact_and_tu_repeats_are_dropped() {
    let cfg = MockConfig {
        heartbeat_every: Duration::from_secs(3_600),
        symbols: ["BTC-USD", "ETH-USDT"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
        ..MockConfig::default()
    };
    let mock = MockBitfinex::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Websocket);
    let venue = BitfinexVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    // The greeting, then per symbol an acknowledgement and an (empty) snapshot.
    assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Ack);
    let mut acks = 0;
    for _ in 0..4 {
        match next_control(&venue, &mut ws).await.unwrap() {
            Frame::Ack => acks += 1,
            Frame::Data => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, 2);
    mock.wait_subscriptions(2, WAIT).await.unwrap();

    let published = mock.publish(40);
    assert!(published.iter().any(|t| t.amount_text.contains('e')));
    let (trades, frames, _) = read_frames(&venue, &mut ws, 40).await;
    assert_exact(&trades, &published);
    // Every trade came twice: the `tu` copies were recognized and skipped.
    assert_eq!(frames.len(), 39, "{frames:?}");
    assert!(frames.iter().all(|f| *f == Frame::Ignored));
    assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Ignored);

    // Our ping is answered; heartbeats, reconnect requests and errors come through.
    send(&mut ws, venue.ping().unwrap().message).await;
    assert_eq!(
        next_control(&venue, &mut ws).await.unwrap(),
        Frame::Heartbeat
    );
    mock.heartbeat();
    for _ in 0..2 {
        assert_eq!(
            next_control(&venue, &mut ws).await.unwrap(),
            Frame::Heartbeat
        );
    }
    mock.request_reconnect();
    assert_eq!(
        next_control(&venue, &mut ws).await.unwrap(),
        Frame::Reconnect
    );
    mock.send_malformed();
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Json(_))
    ));
    send(
        &mut ws,
        WsMessage::Text(r#"{"event":"subscribe","channel":"trades","symbol":"tXYZABC"}"#.into()),
    )
    .await;
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Venue(m)) if m.starts_with("10300")
    ));
}

/// `BTC-USDT` is Tether on Bitfinex as everywhere: configured as `BTC-USDT`, it is
/// subscribed and requested as `tBTCUST` (Bitfinex calls Tether `UST`) and its trades come
/// out as `BTC-USDT`, on the stream and over REST. The mock lists Bitfinex's names only, so
/// `tBTC:USDT` is refused as Bitfinex refuses it.
#[tokio::test]
async fn bitfinex_btc_usdt_is_subscribed_as_tbtcust_and_written_as_btc_usdt() {
    let btc_usdt: feeder_core::model::Symbol = "BTC-USDT".parse().unwrap();
    let cfg = MockConfig {
        heartbeat_every: Duration::from_secs(3_600),
        symbols: vec![btc_usdt.clone()],
        ..MockConfig::default()
    };
    let mock = MockBitfinex::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Websocket);
    assert_eq!(cfg.symbols, std::slice::from_ref(&btc_usdt));
    let venue = BitfinexVenue::new(&cfg).unwrap();
    assert_eq!(
        venue.subscribe(&cfg.symbols),
        [WsMessage::Text(
            r#"{"event":"subscribe","channel":"trades","symbol":"tBTCUST"}"#.into()
        )]
    );
    let mut ws = connect(&venue, &cfg).await;
    assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Ack);
    let ack = next_text(&mut ws).await.expect("no acknowledgement");
    assert!(ack.contains(r#""symbol":"tBTCUST""#), "{ack}");
    let mut out = Vec::new();
    assert_eq!(
        venue
            .parse(ack.as_bytes(), Timestamp::now(), &mut out)
            .unwrap(),
        Frame::Ack
    );
    // The snapshot, empty: nothing was published yet.
    assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Data);
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(10);
    assert!(published.iter().all(|t| t.symbol == btc_usdt));
    let (trades, _, _) = read_frames(&venue, &mut ws, 10).await;
    assert_exact(&trades, &published);
    assert!(trades.iter().all(|t| t.symbol.as_str() == "BTC-USDT"));
    // The `tu` of the last trade.
    assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Ignored);

    let mut page = Vec::new();
    fetch_page(&venue, &cfg, PollRequest::default(), &mut page)
        .await
        .unwrap();
    assert_eq!(
        mock.http_server().requests()[0].path,
        "/v2/trades/tBTCUST/hist"
    );
    let newest_first: Vec<_> = published.iter().rev().cloned().collect();
    assert_exact(&page, &newest_first);

    send(
        &mut ws,
        WsMessage::Text(r#"{"event":"subscribe","channel":"trades","symbol":"tBTC:USDT"}"#.into()),
    )
    .await;
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Venue(m)) if m == "10300: symbol: invalid"
    ));
}

#[tokio::test]
async fn bitfinex_channel_ids_change_with_the_connection_and_snapshots_replay() {
    let mock = MockBitfinex::start().await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Websocket);
    let venue = BitfinexVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::DropAfter(3));
    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    let first = mock.publish(6);
    let (trades, _, _) = read_frames(&venue, &mut ws, 3).await;
    assert_exact(&trades, &first[..3]);
    // The connection drops after the third trade (and its `tu`).
    let mut rest = 0;
    while next_frame(&mut ws).await.is_some() {
        rest += 1;
        assert!(rest < 10, "the connection did not drop");
    }

    // A new connection: new channel ids, and each snapshot holds the symbol's recent trades,
    // the three the old connection missed among them.
    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(4, WAIT).await.unwrap();
    let (snap, frames, _) = read_frames(&venue, &mut ws, 6).await;
    assert_eq!(frames.len(), 3, "greeting and two acks: {frames:?}");
    let mut ids: Vec<_> = snap.iter().map(|t| t.trade_id.to_string()).collect();
    ids.sort();
    let mut want: Vec<_> = first.iter().map(|t| t.trade_id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    for t in &snap {
        let p = first
            .iter()
            .find(|p| p.trade_id.to_string() == t.trade_id.as_str())
            .unwrap();
        assert!(p.matches(t));
    }
    let more = mock.publish(4);
    let (trades, _, _) = read_frames(&venue, &mut ws, 4).await;
    assert_exact(&trades, &more);
}

#[tokio::test]
async fn bitfinex_rest_serves_history_in_pages() {
    let mock = MockBitfinex::start().await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Rest);
    let venue = BitfinexVenue::new(&cfg).unwrap();
    let published = mock.publish(30);
    let mut out = Vec::new();
    let page = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(page.older, None, "15 trades are less than a page");
    let want: Vec<_> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    assert_exact(&out, &want);
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, "/v2/trades/tBTCUSD/hist");
    assert_eq!(req.query_param("limit"), Some("1000"));
    assert_eq!(req.query_param("sort"), Some("-1"));

    // `end` bounds a page from above, inclusively.
    let end = (want[5].time.unix_nanos() / 1_000_000).to_string();
    let mut older = Vec::new();
    fetch_page(
        &venue,
        &cfg,
        PollRequest {
            last_seen: None,
            page: Some(&end),
        },
        &mut older,
    )
    .await
    .unwrap();
    assert!(older.len() >= want.len() - 5, "{}", older.len());
    assert!(older.iter().all(|t| t.timestamp <= want[5].time));

    mock.fail_rest(1, 429);
    let req = venue
        .trades_request(&cfg.symbols[0], PollRequest::default())
        .unwrap();
    let r = get(&req).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
}

#[tokio::test]
async fn bitfinex_history_walks_forward_from_the_millisecond_of_a_trade() {
    // Runs of seven trades share a millisecond; 10000 is not a multiple of 7, so page
    // boundaries fall inside milliseconds, as does the cursor.
    let mock = MockBitfinex::start_with(MockConfig {
        fills_per_instant: 7,
        ..MockConfig::with_symbols(&["BTC-USD".parse().unwrap()])
    })
    .await
    .unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Rest);
    let venue = BitfinexVenue::new(&cfg).unwrap();
    let published = mock.publish(25_000);
    let from = &published[9];
    assert_eq!(
        from.time, published[7].time,
        "the cursor is inside a millisecond"
    );
    let (got, pages) = walk_forward(&venue, &cfg, from, 10).await;
    assert_exact(&got, &published_after(&published, &cfg, from));
    assert!(pages >= 4, "{pages}");
    let reqs = mock.http_server().requests();
    assert!(reqs
        .iter()
        .all(|r| r.query_param("sort") == Some("1") && r.query_param("limit") == Some("10000")));
    let ms = (from.time.unix_nanos() / 1_000_000).to_string();
    assert_eq!(reqs[0].query_param("start"), Some(ms.as_str()));

    // Bitfinex's bound: at most 10000 a page.
    let mut url = mock.rest_url().join("/v2/trades/tBTCUSD/hist").unwrap();
    url.set_query(Some("limit=10001&sort=1"));
    let r = get(&feeder_core::exchange::HttpRequest::get(url)).await;
    assert_ne!(r.status(), 200);
}

// ---------------------------------------------------------------------------------------
// Gemini

#[tokio::test]
async fn gemini_stream_round_trip_is_exact_and_book_updates_are_skipped() {
    let cfg = heartbeat_every(Duration::from_secs(3_600));
    let mock = MockGemini::start_with(cfg).await.unwrap();
    let before = mock.publish(4);
    let cfg = mock.exchange_config("gemini", Transport::Websocket);
    let venue = GeminiVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    // Each symbol starts with its book and latest trades, newest first.
    let (initial, frames, _) = read_frames(&venue, &mut ws, 4).await;
    assert!(frames.is_empty(), "{frames:?}");
    let mut want = before.clone();
    want.sort_by_key(|t| (t.symbol.clone(), std::cmp::Reverse(t.trade_id)));
    let mut got = initial.clone();
    got.sort_by_key(|t| (t.symbol.clone(), std::cmp::Reverse(t.trade_id.as_number())));
    assert_exact(&got, &want);
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(40);
    assert!(published.iter().any(|t| t.amount_text.contains('e')));
    assert!(published.iter().any(|t| t.trade_id % 5 == 0), "string ids");
    let (trades, frames, _) = read_frames(&venue, &mut ws, 40).await;
    assert_exact(&trades, &published);
    // One book update per trade, all skipped.
    assert_eq!(frames.len(), 40, "{frames:?}");
    assert!(frames.iter().all(|f| *f == Frame::Ignored));

    mock.send_malformed();
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Json(_))
    ));
    send(
        &mut ws,
        WsMessage::Text(
            r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["XYZABC"]}]}"#.into(),
        ),
    )
    .await;
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Venue(m)) if m.starts_with("InvalidSymbol")
    ));
}

#[tokio::test]
async fn gemini_heartbeats_and_closes() {
    let cfg = heartbeat_every(Duration::from_millis(20));
    let mock = MockGemini::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Websocket);
    let venue = GeminiVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::CloseAfter(2));
    let mut ws = connect(&venue, &cfg).await;
    for _ in 0..2 {
        assert_eq!(next_control(&venue, &mut ws).await.unwrap(), Frame::Data);
    }
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let mut heartbeats = 0;
    for _ in 0..20 {
        if heartbeats >= 2 {
            break;
        }
        if next_control(&venue, &mut ws).await.unwrap() == Frame::Heartbeat {
            heartbeats += 1;
        }
    }
    assert_eq!(heartbeats, 2);
    let published = mock.publish(5);
    let (trades, _, _) = read_frames(&venue, &mut ws, 2).await;
    assert_exact(&trades, &published[..2]);
    let mut rest = 0;
    while let Some(f) = next_frame(&mut ws).await {
        let mut out = Vec::new();
        venue.parse(&f, Timestamp::now(), &mut out).unwrap();
        assert!(out.is_empty(), "a trade after the close");
        rest += 1;
        assert!(rest < 50, "the connection was not closed");
    }
}

#[tokio::test]
async fn gemini_rest_walks_forward_from_the_last_trade() {
    let mock = MockGemini::start().await.unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Rest);
    let venue = GeminiVenue::new(&cfg).unwrap();
    let published = mock.publish(30);
    let btc: Vec<_> = published
        .iter()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    let mut out = Vec::new();
    let page = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(page.older, None);
    let newest_first: Vec<_> = btc.iter().rev().cloned().collect();
    assert_exact(&out, &newest_first);
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, "/v1/trades/btcusd");
    assert_eq!(req.query_param("limit_trades"), Some("500"));

    // After the fifth trade: the ten that follow it.
    let cursor = feeder_core::exchange::Cursor {
        trade_id: feeder_core::TradeId::from_u64(btc[4].trade_id),
        timestamp: btc[4].time,
    };
    let mut after = Vec::new();
    fetch_page(
        &venue,
        &cfg,
        PollRequest {
            last_seen: Some(&cursor),
            page: None,
        },
        &mut after,
    )
    .await
    .unwrap();
    let want: Vec<_> = btc[5..].iter().rev().cloned().collect();
    assert_exact(&after, &want);

    mock.fail_rest(1, 503);
    let req = venue
        .trades_request(&cfg.symbols[0], PollRequest::default())
        .unwrap();
    assert_eq!(get(&req).await.status(), 503);
    assert_eq!(get(&req).await.status(), 200);
}

#[tokio::test]
async fn gemini_trades_walk_forward_from_a_tid() {
    let mock = MockGemini::start().await.unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Rest);
    let venue = GeminiVenue::new(&cfg).unwrap();
    let published = mock.publish(2_400);
    let from = &published[10];
    let (got, pages) = walk_forward(&venue, &cfg, from, 10).await;
    // 1194 trades of the symbol after it: 500 + 500 + 194, then nothing new.
    assert_exact(&got, &published_after(&published, &cfg, from));
    assert_eq!(pages, 4);
    let reqs = mock.http_server().requests();
    let tid = from.trade_id.to_string();
    assert_eq!(reqs[0].query_param("since_tid"), Some(tid.as_str()));
    assert!(reqs
        .iter()
        .all(|r| r.query_param("limit_trades") == Some("500")));

    // Gemini's bound: at most 500 a page.
    let mut url = mock.rest_url().join("/v1/trades/btcusd").unwrap();
    url.set_query(Some("limit_trades=501"));
    let r = get(&feeder_core::exchange::HttpRequest::get(url)).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn gemini_serves_a_week_of_trades_and_no_more() {
    // One trade an hour for two days, starting eight days ago.
    let start =
        Timestamp::from_unix_micros(Timestamp::now().unix_nanos() / 1_000 - 8 * 86_400_000_000);
    let mock = MockGemini::start_with(MockConfig {
        simulated_time: Some((start, Duration::from_secs(3_600))),
        ..MockConfig::with_symbols(&["BTC-USD".parse().unwrap()])
    })
    .await
    .unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Rest);
    let venue = GeminiVenue::new(&cfg).unwrap();
    let published = mock.publish(48);
    let week_ago = Timestamp::now().unix_nanos() - 7 * 86_400 * 1_000_000_000;
    let served: Vec<_> = published
        .iter()
        .filter(|t| t.time.unix_nanos() >= week_ago)
        .cloned()
        .collect();
    assert!(served.len() < published.len() && !served.is_empty());
    let mut url = mock.rest_url().join("/v1/trades/btcusd").unwrap();
    url.set_query(Some("limit_trades=500&since_tid=0"));
    let body = get(&feeder_core::exchange::HttpRequest::get(url))
        .await
        .bytes()
        .await
        .unwrap();
    let mut out = Vec::new();
    parse_body(&venue, &cfg, &body, &mut out).unwrap();
    out.reverse();
    assert_exact(&out, &served);
}

// ---------------------------------------------------------------------------------------
// Huobi

#[tokio::test]
async fn huobi_frames_are_gzip_and_round_trip_exactly() {
    let cfg = heartbeat_every(Duration::from_secs(3_600));
    let mock = MockHuobi::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Websocket);
    let venue = HuobiVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    for _ in 0..2 {
        let f = next_frame(&mut ws).await.unwrap();
        assert_eq!(&f[..2], b"\x1f\x8b", "gzip");
        let mut out = Vec::new();
        assert_eq!(
            venue.parse(&f, Timestamp::now(), &mut out).unwrap(),
            Frame::Ack
        );
    }
    mock.wait_subscriptions(2, WAIT).await.unwrap();

    let published = mock.publish(40);
    assert!(published.iter().any(|t| t.amount_text.contains('e')));
    let (trades, frames, _) = read_frames(&venue, &mut ws, 40).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_exact(&trades, &published);

    mock.send_malformed();
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Json(_))
    ));
    send(
        &mut ws,
        WsMessage::Text(r#"{"sub":"market.xyzabc.trade.detail","id":"x"}"#.into()),
    )
    .await;
    assert!(matches!(
        next_control(&venue, &mut ws).await,
        Err(ParseError::Venue(m)) if m.starts_with("bad-request")
    ));
}

#[tokio::test]
async fn huobi_ping_is_answered_with_the_same_number() {
    let cfg = heartbeat_every(Duration::from_secs(3_600));
    let mock = MockHuobi::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Websocket);
    let venue = HuobiVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    for _ in 0..2 {
        next_control(&venue, &mut ws).await.unwrap();
    }
    mock.ping();
    let Frame::Reply(pong) = next_control(&venue, &mut ws).await.unwrap() else {
        panic!("a ping must be answered")
    };
    let WsMessage::Text(text) = &pong else {
        panic!("{pong:?}")
    };
    assert!(text.starts_with(r#"{"pong":"#), "{text}");
    send(&mut ws, pong.clone()).await;
    mock.ws_server()
        .wait_received(1, |r| r.message.as_text() == Some(text.as_str()), WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn huobi_rest_serves_the_most_recent_trades() {
    let mock = MockHuobi::start().await.unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Rest);
    let venue = HuobiVenue::new(&cfg).unwrap();
    let published = mock.publish(30);
    let mut out = Vec::new();
    let page = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(page.older, None);
    let want: Vec<_> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    assert_exact(&out, &want);
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, "/market/history/trade");
    assert_eq!(req.query_param("symbol"), Some("btcusd"));
    assert_eq!(req.query_param("size"), Some("2000"));
}
