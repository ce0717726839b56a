//! The mock venues against a plain WebSocket / HTTP client and the real parsers of
//! `feeder-exchanges`: what the mocks send must parse back to exactly what they published.

mod support;

use std::time::Duration;

use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, Transport, WsMessage};
use feeder_core::model::Timestamp;
use feeder_core::ParseError;
use feeder_exchanges::bitstamp::BitstampVenue;
use feeder_exchanges::coinbase::CoinbaseVenue;
use feeder_testkit::venues::{MockBitstamp, MockCoinbase, MockTrade, WsFault};
use futures::StreamExt;

use support::*;

#[tokio::test]
async fn bitstamp_stream_round_trip_is_exact() {
    let mock = MockBitstamp::start().await.unwrap();
    let cfg = mock.exchange_config("bitstamp", Transport::Websocket);
    let venue = BitstampVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    // One acknowledgement per symbol, parsed as such.
    for _ in 0..2 {
        let ack = next_text(&mut ws).await.unwrap();
        assert_eq!(
            venue
                .parse(ack.as_bytes(), Timestamp::now(), &mut Vec::new())
                .unwrap(),
            Frame::Ack
        );
    }
    mock.wait_subscriptions(2, WAIT).await.unwrap();

    let published = mock.publish(40);
    assert!(
        published.iter().any(|t| t.amount_text.contains('e')),
        "some amounts in exponent form"
    );
    let (trades, frames, _) = read_trades(&venue, &mut ws, 40).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_exact(&trades, &published);
    assert_eq!(mock.published(), published);

    // Our heartbeat is answered; the venue's reconnect request and errors come through.
    send(&mut ws, venue.ping().unwrap().message).await;
    let hb = next_text(&mut ws).await.unwrap();
    assert_eq!(
        venue
            .parse(hb.as_bytes(), Timestamp::now(), &mut Vec::new())
            .unwrap(),
        Frame::Heartbeat
    );
    mock.request_reconnect();
    let rr = next_text(&mut ws).await.unwrap();
    assert_eq!(
        venue
            .parse(rr.as_bytes(), Timestamp::now(), &mut Vec::new())
            .unwrap(),
        Frame::Reconnect
    );
    mock.send_malformed();
    let bad = next_text(&mut ws).await.unwrap();
    assert!(matches!(
        venue.parse(bad.as_bytes(), Timestamp::now(), &mut Vec::new()),
        Err(ParseError::Json(_))
    ));
    send(
        &mut ws,
        WsMessage::Text(
            r#"{"event":"bts:subscribe","data":{"channel":"live_trades_xyzabc"}}"#.into(),
        ),
    )
    .await;
    let err = next_text(&mut ws).await.unwrap();
    assert!(matches!(
        venue.parse(err.as_bytes(), Timestamp::now(), &mut Vec::new()),
        Err(ParseError::Venue(_))
    ));
}

#[tokio::test]
async fn bitstamp_rest_serves_the_history_in_its_window() {
    let mock = MockBitstamp::start().await.unwrap();
    let cfg = mock.exchange_config("bitstamp", Transport::Rest);
    let venue = BitstampVenue::new(&cfg).unwrap();
    let published = mock.publish(30);
    let mut out = Vec::new();
    let page = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(page.older, None);
    // BTC-USD only, newest first, times to the second (all Bitstamp's REST API gives).
    let want: Vec<_> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .collect();
    assert_eq!(out.len(), want.len());
    for (t, p) in out.iter().zip(want) {
        assert!(p.matches_to_the_second(t), "{t:?} != {p:?}");
    }
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, "/api/v2/transactions/btcusd/");
    assert_eq!(req.query_param("time"), Some("minute"));
}

#[tokio::test]
async fn rest_failures_are_injected_then_clear() {
    let mock = MockBitstamp::start().await.unwrap();
    let cfg = mock.exchange_config("bitstamp", Transport::Rest);
    let venue = BitstampVenue::new(&cfg).unwrap();
    mock.fail_rest(1, 429);
    mock.fail_rest(1, 503);
    let req = venue
        .trades_request(&cfg.symbols[0], PollRequest::default())
        .unwrap();
    let r = get(&req).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    assert_eq!(get(&req).await.status(), 503);
    assert_eq!(get(&req).await.status(), 200);
}

#[tokio::test]
async fn coinbase_stream_round_trip_is_exact_and_heartbeat_reveals_gaps() {
    let cfg = heartbeat_every(Duration::from_secs(3_600));
    let mock = MockCoinbase::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("coinbase", Transport::Websocket);
    let venue = CoinbaseVenue::new(&cfg).unwrap();
    let before = mock.publish(2);
    mock.fault_next_connection(WsFault::SkipAfter { after: 10, skip: 3 });
    let mut ws = connect(&venue, &cfg).await;
    let ack = next_text(&mut ws).await.unwrap();
    assert_eq!(
        venue
            .parse(ack.as_bytes(), Timestamp::now(), &mut Vec::new())
            .unwrap(),
        Frame::Ack
    );
    // Each product starts with its latest trade, as a last_match.
    let (last, _, _) = read_trades(&venue, &mut ws, 2).await;
    assert_exact(&last, &before);
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(20);
    let (trades, frames, _) = read_trades(&venue, &mut ws, 17).await;
    assert!(frames.is_empty(), "{frames:?}");
    let mut sent = published.clone();
    sent.drain(10..13);
    assert_exact(&trades, &sent);

    // The heartbeat names the newest trade of each product, ahead of what the stream sent.
    mock.heartbeat();
    let mut gaps = Vec::new();
    for _ in 0..2 {
        let hb = next_text(&mut ws).await.unwrap();
        gaps.push(
            venue
                .parse(hb.as_bytes(), Timestamp::now(), &mut Vec::new())
                .unwrap(),
        );
    }
    for symbol in &cfg.symbols {
        let newest = published
            .iter()
            .rev()
            .find(|t| &t.symbol == symbol)
            .unwrap();
        let want = Frame::Gap {
            symbol: symbol.clone(),
            last_trade_id: feeder_core::TradeId::from_u64(newest.trade_id),
        };
        assert!(gaps.contains(&want), "{gaps:?}");
    }
    // Silent trades are never streamed but count in the heartbeat.
    let silent = mock.publish_silently(2);
    mock.heartbeat();
    let hb = next_text(&mut ws).await.unwrap();
    let Frame::Gap {
        last_trade_id,
        symbol,
    } = venue
        .parse(hb.as_bytes(), Timestamp::now(), &mut Vec::new())
        .unwrap()
    else {
        panic!("not a gap: {hb}")
    };
    let newest = silent.iter().find(|t| t.symbol == symbol).unwrap();
    assert_eq!(last_trade_id.as_str(), newest.trade_id.to_string());
}

#[tokio::test]
async fn coinbase_rest_paginates_back_through_the_whole_history() {
    let mock = MockCoinbase::start().await.unwrap();
    let cfg = mock.exchange_config("coinbase", Transport::Rest);
    let venue = CoinbaseVenue::new(&cfg).unwrap();
    let published = mock.publish(250);
    let want: Vec<_> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    assert_eq!(want.len(), 125);

    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        let page = fetch_page(
            &venue,
            &cfg,
            PollRequest {
                last_seen: None,
                page: cursor.as_deref(),
            },
            &mut out,
        )
        .await
        .unwrap();
        match page.older {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // 100 + 25 + an empty last page.
    assert_eq!(pages, 3);
    assert_exact(&out, &want);
    let reqs = mock.http_server().requests();
    assert_eq!(reqs[0].path, "/products/BTC-USD/trades");
    assert_eq!(reqs[0].query_param("limit"), Some("100"));
    assert!(reqs[0].header("user-agent").is_some());
    assert_eq!(
        reqs[1].query_param("after"),
        Some(want[99].trade_id.to_string().as_str())
    );
}

#[tokio::test]
async fn dropped_and_closed_connections_end_after_n_trades() {
    let mock = MockCoinbase::start().await.unwrap();
    let cfg = mock.exchange_config("coinbase", Transport::Websocket);
    let venue = CoinbaseVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::DropAfter(5));
    mock.fault_next_connection(WsFault::CloseAfter(3));
    for (n, last_matches) in [(5, 0), (3, 2)] {
        let mut ws = connect(&venue, &cfg).await;
        let _ack = next_text(&mut ws).await.unwrap();
        // On the second connection each product starts with its latest trade.
        let (last, _, _) = read_trades(&venue, &mut ws, last_matches).await;
        assert_eq!(last.len(), last_matches);
        let subs = mock.ws_server().connections();
        mock.wait_subscriptions(subs, WAIT).await.unwrap();
        let published = mock.publish(10);
        let (trades, _, _) = read_trades(&venue, &mut ws, n).await;
        assert_exact(&trades, &published[..n]);
        assert_eq!(next_text(&mut ws).await, None, "the stream ends after {n}");
    }
}

#[tokio::test]
async fn malformed_and_stall_faults() {
    let mock = MockBitstamp::start().await.unwrap();
    let cfg = mock.exchange_config("bitstamp", Transport::Websocket);
    let venue = BitstampVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::MalformedAfter(2));
    mock.fault_next_connection(WsFault::StallAfter(1));

    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    let published = mock.publish(4);
    let mut trades = Vec::new();
    let mut errors = 0;
    for _ in 0..2 + 4 + 1 {
        let t = next_text(&mut ws).await.unwrap();
        match venue.parse(t.as_bytes(), Timestamp::now(), &mut trades) {
            Ok(_) => {}
            Err(ParseError::Json(_)) => errors += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(errors, 1);
    assert_exact(&trades, &published);

    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(4, WAIT).await.unwrap();
    let published = mock.publish(4);
    let (trades, _, _) = read_trades(&venue, &mut ws, 1).await;
    assert_exact(&trades, &published[..1]);
    // Silent from now on, even to our heartbeat, with the socket still open.
    send(&mut ws, venue.ping().unwrap().message).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(quiet.is_err(), "a stalled connection sent {quiet:?}");
}

#[tokio::test]
async fn same_seed_same_trades() {
    let a = MockCoinbase::start().await.unwrap();
    let b = MockCoinbase::start().await.unwrap();
    let strip = |v: Vec<MockTrade>| {
        v.into_iter()
            .map(|t| (t.symbol, t.trade_id, t.price, t.amount_text, t.side))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a.publish(50)), strip(b.publish(50)));
}

#[tokio::test]
async fn generator_publishes_at_its_rate() {
    let mock = MockBitstamp::start().await.unwrap();
    mock.generate(1_000);
    mock.wait_published(50, WAIT).await.unwrap();
    mock.generate(0);
    let n = mock.published_count();
    assert!(n >= 50);
    // Times are strictly increasing, so ids and times agree on the order.
    let p = mock.published();
    assert!(p
        .windows(2)
        .all(|w| w[0].time < w[1].time && w[0].trade_id < w[1].trade_id));
}
