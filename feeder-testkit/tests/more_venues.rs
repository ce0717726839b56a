//! The Binance, Bybit, OKX and Kraken mocks against a plain WebSocket / HTTP client and the
//! real parsers of `feeder-exchanges`: what the mocks send must parse back to exactly what
//! they published, and their control messages must mean what the venues' do.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{Frame, PollRequest, PollVenue, StreamVenue, Transport, WsMessage};
use feeder_core::model::{Timestamp, Trade};
use feeder_core::ParseError;
use feeder_exchanges::binance::BinanceVenue;
use feeder_exchanges::bybit::BybitVenue;
use feeder_exchanges::kraken::KrakenVenue;
use feeder_exchanges::okx::OkxVenue;
use feeder_testkit::venues::{
    MockBinance, MockBybit, MockConfig, MockKraken, MockOkx, MockTrade, WsFault,
};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use support::*;

fn parse_one<V: StreamVenue>(venue: &V, text: &str) -> Result<Frame, ParseError> {
    let mut out = Vec::new();
    let f = venue.parse(text.as_bytes(), Timestamp::now(), &mut out);
    assert!(out.is_empty(), "{text}");
    f
}

/// The trades of `published` for the first configured symbol, by id.
fn by_id<'a>(published: &'a [MockTrade], cfg: &ExchangeConfig) -> BTreeMap<String, &'a MockTrade> {
    published
        .iter()
        .filter(|t| t.symbol == cfg.symbols[0])
        .map(|t| (t.trade_id.to_string(), t))
        .collect()
}

#[tokio::test]
async fn binance_combined_stream_round_trip_is_exact() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Websocket);
    let venue = BinanceVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    // The URL names the streams: no message, no acknowledgement.
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    assert_eq!(
        mock.ws_server().paths(),
        ["/stream?streams=btcusdt@trade/ethusdt@trade"]
    );

    let published = mock.publish(40);
    assert!(published.iter().any(|t| t.amount_text.contains('e')));
    assert!(published.iter().all(|t| t.time.digits() == 3));
    let (trades, frames, _) = read_trades(&venue, &mut ws, 40).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_exact(&trades, &published);

    // The server's protocol ping is answered by the client library.
    mock.ping();
    assert!(matches!(
        next_message(&mut ws).await,
        Some(Message::Ping(_))
    ));
    // A live subscription is acknowledged; a bad one is an error.
    send(
        &mut ws,
        WsMessage::Text(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7}"#.into()),
    )
    .await;
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Ack
    );
    send(
        &mut ws,
        WsMessage::Text(r#"{"method":"SUBSCRIBE","params":["xyzusdt@trade"],"id":8}"#.into()),
    )
    .await;
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Venue(_))
    ));
    mock.server_shutdown();
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Reconnect
    );
    mock.send_malformed();
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Json(_))
    ));
}

#[tokio::test]
async fn binance_rest_pages_back_through_historical_trades() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Rest);
    let venue = BinanceVenue::new(&cfg).unwrap();
    let published = mock.publish(2_500);
    let want = by_id(&published, &cfg);
    assert_eq!(want.len(), 1_250);

    let mut out = Vec::new();
    let first = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 1_000);
    let older = first.older.expect("an older page");
    let second = fetch_page(&venue, &cfg, page(&older), &mut out)
        .await
        .unwrap();
    // The history starts within the second page; its older cursor would only repeat it.
    assert!(second.older.is_some());
    let mut got = BTreeMap::new();
    for t in &out {
        got.insert(t.trade_id.to_string(), t);
    }
    assert_eq!(got.len(), want.len());
    for (id, t) in &got {
        assert!(want[id].matches(t), "{t:?} != {:?}", want[id]);
    }
    let reqs = mock.http_server().requests();
    assert_eq!(reqs[0].path, "/api/v3/trades");
    assert_eq!(reqs[0].query_param("symbol"), Some("BTCUSDT"));
    assert_eq!(reqs[0].query_param("limit"), Some("1000"));
    assert_eq!(reqs[1].path, "/api/v3/historicalTrades");
    assert_eq!(reqs[1].query_param("fromId"), Some(older.as_str()));
}

#[tokio::test]
async fn binance_historical_trades_walk_forward_from_id_to_the_newest() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Rest);
    let venue = BinanceVenue::new(&cfg).unwrap();
    let published = mock.publish(5_000);
    let from = &published[10];
    let (got, pages) = walk_forward(&venue, &cfg, from, 10).await;
    assert_exact(&got, &published_after(&published, &cfg, from));
    // 2494 trades of the symbol after it: three pages, and one that brings nothing new.
    assert_eq!(pages, 4);
    let reqs = mock.http_server().requests();
    assert!(reqs.iter().all(|r| r.path == "/api/v3/historicalTrades"));
    let first_id = (from.trade_id + 1).to_string();
    assert_eq!(reqs[0].query_param("fromId"), Some(first_id.as_str()));
    assert_eq!(reqs[0].query_param("limit"), Some("1000"));

    // Binance's bounds: `fromId` is a number, `limit` at most 1000.
    let url = |q: &str| {
        let mut u = mock.rest_url().join("/api/v3/historicalTrades").unwrap();
        u.set_query(Some(q));
        feeder_core::exchange::HttpRequest::get(u)
    };
    assert_eq!(get(&url("symbol=BTCUSDT&limit=1001")).await.status(), 400);
    assert_eq!(get(&url("symbol=BTCUSDT&fromId=x")).await.status(), 400);
    assert_eq!(
        get(&url("symbol=BTCUSDT&limit=1000&fromId=1"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn binance_faults_end_the_stream_after_n_trades() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Websocket);
    let venue = BinanceVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::DropAfter(5));
    let mut ws = connect(&venue, &cfg).await;
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let published = mock.publish(10);
    let (trades, _, _) = read_trades(&venue, &mut ws, 5).await;
    assert_exact(&trades, &published[..5]);
    assert_eq!(next_text(&mut ws).await, None);

    mock.fail_rest(1, 429);
    let req = venue
        .trades_request(&cfg.symbols[0], PollRequest::default())
        .unwrap();
    let r = get(&req).await;
    assert_eq!(r.status(), 429);
    assert_eq!(get(&req).await.status(), 200);
}

#[tokio::test]
async fn bybit_stream_round_trip_is_exact_with_batches() {
    let mock = MockBybit::start().await.unwrap();
    let cfg = mock.exchange_config("bybit", Transport::Websocket);
    let venue = BybitVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Ack
    );
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    // Published in one go, trades of one symbol share pushes: in order per symbol.
    let published = mock.publish(20);
    let (trades, frames, data_frames) = read_trades(&venue, &mut ws, published.len()).await;
    assert!(frames.is_empty(), "{frames:?}");
    for symbol in &cfg.symbols {
        let got: Vec<Trade> = trades
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        let want: Vec<MockTrade> = published
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        assert_exact(&got, &want);
    }
    assert!(
        data_frames < published.len(),
        "some pushes carried several trades"
    );
    assert!(trades.iter().all(|t| t.trade_id.as_str().len() == 19));

    // Our ping is answered with a pong; a bad topic is refused.
    send(&mut ws, venue.ping().unwrap().message).await;
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Heartbeat
    );
    send(
        &mut ws,
        WsMessage::Text(r#"{"op":"subscribe","args":["publicTrade.XYZUSDT"]}"#.into()),
    )
    .await;
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Venue(_))
    ));
    mock.send_malformed();
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Json(_))
    ));
}

#[tokio::test]
async fn bybit_rest_serves_the_newest_sixty_and_stalls_on_demand() {
    let mock = MockBybit::start().await.unwrap();
    let cfg = mock.exchange_config("bybit", Transport::Rest);
    let venue = BybitVenue::new(&cfg).unwrap();
    let published = mock.publish(200);
    let mut out = Vec::new();
    let p = fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(p.older, None);
    let want: Vec<&MockTrade> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .take(60)
        .collect();
    assert_eq!(out.len(), 60);
    for (t, p) in out.iter().zip(want) {
        assert!(p.matches(t), "{t:?} != {p:?}");
    }
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, "/v5/market/recent-trade");
    assert_eq!(req.query_param("category"), Some("spot"));
    assert_eq!(req.query_param("limit"), Some("60"));

    // A stalled connection answers nothing, not even our ping.
    mock.fault_next_connection(WsFault::StallAfter(1));
    let ws_cfg = mock.exchange_config("bybit", Transport::Websocket);
    let mut ws = connect(&venue, &ws_cfg).await;
    let _ack = next_text(&mut ws).await.unwrap();
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let published = mock.publish(3);
    let (trades, _, _) = read_trades(&venue, &mut ws, 1).await;
    assert_exact(&trades, &published[..1]);
    send(&mut ws, venue.ping().unwrap().message).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(quiet.is_err(), "a stalled connection sent {quiet:?}");
}

#[tokio::test]
async fn okx_stream_round_trip_text_ping_and_upgrade_notice() {
    let mock = MockOkx::start().await.unwrap();
    let cfg = mock.exchange_config("okx", Transport::Websocket);
    let venue = OkxVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    // One acknowledgement per channel.
    for _ in 0..2 {
        assert_eq!(
            parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
            Frame::Ack
        );
    }
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(30);
    let (trades, frames, data_frames) = read_trades(&venue, &mut ws, published.len()).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert!(
        data_frames < published.len(),
        "some pushes carried several trades"
    );
    for symbol in &cfg.symbols {
        let got: Vec<Trade> = trades
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        let want: Vec<MockTrade> = published
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        assert_exact(&got, &want);
    }

    // The bare-text ping is answered with a bare-text pong.
    send(&mut ws, venue.ping().unwrap().message).await;
    let pong = next_text(&mut ws).await.unwrap();
    assert_eq!(pong, "pong");
    assert_eq!(parse_one(&venue, &pong).unwrap(), Frame::Heartbeat);
    mock.notice_upgrade();
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Reconnect
    );
    send(
        &mut ws,
        WsMessage::Text(
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"XYZ-USDT"}]}"#.into(),
        ),
    )
    .await;
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Venue(_))
    ));
}

#[tokio::test]
async fn okx_rest_pages_back_through_history_trades() {
    let mock = MockOkx::start().await.unwrap();
    let cfg = mock.exchange_config("okx", Transport::Rest);
    let venue = OkxVenue::new(&cfg).unwrap();
    let published = mock.publish(500);
    let want = by_id(&published, &cfg);
    assert_eq!(want.len(), 250);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        let req = match &cursor {
            None => PollRequest::default(),
            Some(c) => page(c),
        };
        match fetch_page(&venue, &cfg, req, &mut out).await.unwrap().older {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // 100 + 100 + 50 + an empty last page.
    assert_eq!(pages, 4);
    assert_eq!(out.len(), 250);
    for t in &out {
        assert!(want[t.trade_id.as_str()].matches(t));
    }
    let reqs = mock.http_server().requests();
    assert_eq!(reqs[0].path, "/api/v5/market/trades");
    assert_eq!(reqs[1].path, "/api/v5/market/history-trades");
    assert_eq!(reqs[1].query_param("type"), Some("1"));
}

#[tokio::test]
async fn okx_history_trades_walk_forward_by_a_window_of_ids() {
    let mock = MockOkx::start().await.unwrap();
    let cfg = mock.exchange_config("okx", Transport::Rest);
    let venue = OkxVenue::new(&cfg).unwrap();
    let published = mock.publish(500);
    let from = &published[10];
    let (got, pages) = walk_forward(&venue, &cfg, from, 10).await;
    // 244 trades of the symbol after it: 100 + 100 + 44, then an empty window.
    assert_exact(&got, &published_after(&published, &cfg, from));
    assert_eq!(pages, 4);
    let reqs = mock.http_server().requests();
    let window = |i: usize| {
        (
            reqs[i].query_param("before").map(str::to_owned),
            reqs[i].query_param("after").map(str::to_owned),
        )
    };
    let id = from.trade_id;
    assert_eq!(
        window(0),
        (Some(id.to_string()), Some((id + 101).to_string()))
    );
    assert_eq!(
        window(1),
        (Some((id + 100).to_string()), Some((id + 201).to_string()))
    );

    // `before` alone is not the page after an id: OKX gives the latest trades.
    let mut url = mock
        .rest_url()
        .join("/api/v5/market/history-trades")
        .unwrap();
    url.set_query(Some(&format!("instId=BTC-USDT&type=1&before={id}&limit=5")));
    let mut out = Vec::new();
    let body = get(&feeder_core::exchange::HttpRequest::get(url))
        .await
        .bytes()
        .await
        .unwrap();
    parse_body(&venue, &cfg, &body, &mut out).unwrap();
    let newest: Vec<u64> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .take(5)
        .map(|t| t.trade_id)
        .collect();
    let got: Vec<u64> = out
        .iter()
        .map(|t| t.trade_id.as_str().parse().unwrap())
        .collect();
    assert_eq!(got, newest);
}

#[tokio::test]
async fn kraken_v2_snapshot_updates_heartbeats_and_pong() {
    let cfg = heartbeat_every(Duration::from_secs(3_600));
    let mock = MockKraken::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Websocket);
    let venue = KrakenVenue::new(&cfg).unwrap();
    let before = mock.publish(4);
    let mut ws = connect(&venue, &cfg).await;
    // status, then per symbol an acknowledgement and a snapshot of its recent trades.
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Ignored
    );
    let mut snapshot = Vec::new();
    let mut acks = 0;
    for _ in 0..4 {
        let text = next_text(&mut ws).await.unwrap();
        match venue
            .parse(text.as_bytes(), Timestamp::now(), &mut snapshot)
            .unwrap()
        {
            Frame::Ack => acks += 1,
            Frame::Data => {}
            other => panic!("{other:?}: {text}"),
        }
    }
    assert_eq!(acks, 2);
    snapshot.sort_by_key(|t| t.timestamp);
    assert_exact(&snapshot, &before);
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(20);
    let (trades, frames, data_frames) = read_trades(&venue, &mut ws, published.len()).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert!(data_frames < published.len());
    for symbol in &cfg.symbols {
        let got: Vec<Trade> = trades
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        let want: Vec<MockTrade> = published
            .iter()
            .filter(|t| &t.symbol == symbol)
            .cloned()
            .collect();
        assert_exact(&got, &want);
    }

    send(&mut ws, venue.ping().unwrap().message).await;
    assert_eq!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()).unwrap(),
        Frame::Heartbeat
    );
    mock.send_malformed();
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Json(_))
    ));
    send(
        &mut ws,
        WsMessage::Text(
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["XYZ/USD"]}}"#.into(),
        ),
    )
    .await;
    assert!(matches!(
        parse_one(&venue, &next_text(&mut ws).await.unwrap()),
        Err(ParseError::Venue(_))
    ));
}

#[tokio::test]
async fn kraken_heartbeats_arrive_on_their_own() {
    let cfg = heartbeat_every(Duration::from_millis(50));
    let mock = MockKraken::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Websocket);
    let venue = KrakenVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    let mut heartbeats = 0;
    for _ in 0..20 {
        let text = next_text(&mut ws).await.unwrap();
        if parse_one(&venue, &text).unwrap() == Frame::Heartbeat {
            heartbeats += 1;
            if heartbeats == 2 {
                break;
            }
        }
    }
    assert_eq!(heartbeats, 2);
}

#[tokio::test]
async fn kraken_trades_walk_forward_through_instants_shared_by_fills() {
    // Fills of one taker order share a time: runs of seven, so that the cursor and the page
    // boundaries (1000 is not a multiple of 7) fall inside instants.
    let mock = MockKraken::start_with(MockConfig {
        fills_per_instant: 7,
        ..MockConfig::with_symbols(&["BTC-USD".parse().unwrap()])
    })
    .await
    .unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Rest);
    let venue = KrakenVenue::new(&cfg).unwrap();
    let published = mock.publish(3_000);
    let from = &published[9];
    assert_eq!(
        from.time, published[7].time,
        "the cursor is inside an instant"
    );
    assert_eq!(from.time, published[13].time);
    let (got, pages) = walk_forward(&venue, &cfg, from, 10).await;
    // Each page starts again at the instant of the last trade of the one before: no trade
    // is skipped, and those already had are not kept twice.
    assert_exact(&got, &published_after(&published, &cfg, from));
    assert_eq!(pages, 5);
    let reqs = mock.http_server().requests();
    assert!(reqs.iter().all(|r| r.query_param("count") == Some("1000")));

    // Kraken's bounds: `count` from 1 to 1000.
    for (count, ok) in [("0", false), ("1", true), ("1000", true), ("1001", false)] {
        let mut url = mock.rest_url().join("/0/public/Trades").unwrap();
        url.set_query(Some(&format!("pair=XBTUSD&count={count}")));
        let body = get(&feeder_core::exchange::HttpRequest::get(url))
            .await
            .bytes()
            .await
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(
            parse_body(&venue, &cfg, &body, &mut out).is_ok(),
            ok,
            "{count}"
        );
    }
}

#[tokio::test]
async fn kraken_rest_walks_forward_from_since_with_last() {
    let mock = MockKraken::start().await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Rest);
    let venue = KrakenVenue::new(&cfg).unwrap();
    let published = mock.publish(2_400);
    let want = by_id(&published, &cfg);
    assert_eq!(want.len(), 1_200);

    // The newest 1000, oldest first, with exact times.
    let mut out = Vec::new();
    fetch_page(&venue, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 1_000);
    for t in &out {
        assert!(want[t.trade_id.as_str()].matches(t), "{t:?}");
    }
    // From the first trade on: a full page hands on `last`, the next one ends the walk.
    let first = published[0].clone();
    let cursor = feeder_core::exchange::Cursor {
        trade_id: feeder_core::TradeId::from_u64(first.trade_id),
        timestamp: first.time,
    };
    let mut out = Vec::new();
    let p = fetch_page(
        &venue,
        &cfg,
        PollRequest {
            last_seen: Some(&cursor),
            page: None,
        },
        &mut out,
    )
    .await
    .unwrap();
    let last = p.older.expect("a full page hands on its last cursor");
    let p = fetch_page(
        &venue,
        &cfg,
        PollRequest {
            last_seen: Some(&cursor),
            page: Some(&last),
        },
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(p.older, None);
    let got: BTreeMap<String, &Trade> = out.iter().map(|t| (t.trade_id.to_string(), t)).collect();
    assert_eq!(got.len(), 1_200, "the first trade again, and all after it");
    let reqs = mock.http_server().requests();
    assert_eq!(reqs[0].path, "/0/public/Trades");
    assert_eq!(reqs[0].query_param("pair"), Some("XBTUSD"));
    assert_eq!(reqs[0].query_param("since"), None);
    assert_eq!(reqs[2].query_param("since"), Some(last.as_str()));
}
