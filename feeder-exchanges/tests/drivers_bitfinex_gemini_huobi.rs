//! Bitfinex, Gemini and Huobi run by the real drivers against their mocks in
//! `feeder-testkit`, with a forced disconnect: every published trade must arrive, exactly as
//! published. Repeats (snapshots and backfill overlap the live stream) are what the valve
//! drops downstream, so trades are collected by id.

mod support;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::{Exchange, ExchangeStats, Transport};
use feeder_core::feeder::ExchangeFactory;
use feeder_exchanges::bitfinex::BitfinexFactory;
use feeder_exchanges::gemini::GeminiFactory;
use feeder_exchanges::huobi::HuobiFactory;
use feeder_testkit::venues::{MockBitfinex, MockConfig, MockGemini, MockHuobi, MockVenue, WsFault};

use support::{hang_is_filled_exactly, Running, WAIT};

/// A mock of one symbol whose heartbeats come often enough for a 1 s stale timeout, and
/// whose trades share their time in runs of seven (the fills of one taker order).
fn one_symbol_in_runs(symbol: &str) -> MockConfig {
    MockConfig {
        heartbeat_every: Duration::from_millis(200),
        fills_per_instant: 7,
        ..MockConfig::with_symbols(&[symbol.parse().unwrap()])
    }
}

/// Streams from `mock` through a connection that drops after 5 trades: the trades sent while
/// the client reconnects come back by snapshot or backfill.
async fn stream_survives_a_drop(mock: &MockVenue, exchange: Arc<dyn Exchange>, subs: usize) {
    mock.fault_next_connection(WsFault::DropAfter(5));
    let mut run = Running::start_with_same_repeats(exchange, mock);
    mock.wait_subscriptions(subs, WAIT).await.unwrap();
    let mut published = mock.publish(30);
    run.until_all(&published).await;
    mock.wait_subscriptions(subs * 2, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly(&published);
    assert!(mock.ws_server().connections() >= 2);
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.parse_errors), 0, "{stats:?}");
}

/// Polls `mock` over REST through a rate limit and a server error.
async fn polling_survives_errors(mock: &MockVenue, exchange: Arc<dyn Exchange>) {
    let published = mock.publish(6);
    mock.fail_rest(1, 429);
    mock.fail_rest(1, 503);
    let mut run = Running::start_with_same_repeats(exchange, mock);
    run.until_all(&published).await;
    let more = mock.publish(6);
    run.until_all(&more).await;
    let all: Vec<_> = published.into_iter().chain(more).collect();
    run.assert_exactly(&all);
    assert!(mock.http_server().requests().len() >= 4);
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.parse_errors), 0, "{stats:?}");
}

#[tokio::test]
async fn bitfinex_stream_recovers_a_dropped_connection() {
    let mock = MockBitfinex::start().await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Websocket);
    stream_survives_a_drop(&mock, BitfinexFactory.build(&cfg).unwrap(), 2).await;
}

#[tokio::test]
async fn bitfinex_stream_follows_a_reconnect_request() {
    let mock = MockBitfinex::start().await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Websocket);
    let mut run = Running::start_with_same_repeats(BitfinexFactory.build(&cfg).unwrap(), &mock);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    let mut published = mock.publish(10);
    run.until_all(&published).await;
    // Info 20051: the client reconnects, and the new channel ids map to the right symbols.
    mock.request_reconnect();
    mock.wait_subscriptions(4, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly(&published);
    assert_eq!(mock.ws_server().connections(), 2);
    run.stop().await;
}

/// An outage of several of Bitfinex's largest pages is filled forward by time, each page
/// starting again at the millisecond the last one ended in: nothing missing, nothing twice.
#[tokio::test]
async fn bitfinex_outage_of_several_pages_is_filled_to_the_last() {
    let mock = MockBitfinex::start_with(one_symbol_in_runs("BTC-USD"))
        .await
        .unwrap();
    let lost = 2 * feeder_exchanges::bitfinex::FORWARD_PAGE_LIMIT + 500;
    hang_is_filled_exactly(&BitfinexFactory, "bitfinex", &mock, 3, lost).await;
    let forward = mock
        .http_server()
        .requests()
        .into_iter()
        .filter(|r| r.query_param("sort") == Some("1"))
        .count();
    // Three pages with trades and one that brings nothing new.
    assert_eq!(forward, 4);
}

/// The stream hangs in the middle of a millisecond that seven trades share: the fill starts
/// at that millisecond, brings the four not yet had and none of the three already had.
#[tokio::test]
async fn bitfinex_fill_from_inside_a_millisecond_neither_skips_nor_repeats() {
    let mock = MockBitfinex::start_with(one_symbol_in_runs("BTC-USD"))
        .await
        .unwrap();
    hang_is_filled_exactly(&BitfinexFactory, "bitfinex", &mock, 3, 11).await;
    let published = mock.published();
    assert_eq!(published[2].time, published[6].time);
}

#[tokio::test]
async fn bitfinex_polling_survives_rate_limits() {
    let mock = MockBitfinex::start().await.unwrap();
    let cfg = mock.exchange_config("bitfinex", Transport::Rest);
    polling_survives_errors(&mock, BitfinexFactory.build(&cfg).unwrap()).await;
}

#[tokio::test]
async fn gemini_stream_recovers_a_dropped_connection() {
    let mock = MockGemini::start().await.unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Websocket);
    stream_survives_a_drop(&mock, GeminiFactory.build(&cfg).unwrap(), 1).await;
}

/// An outage of several of Gemini's pages is filled forward by `since_tid` from the last
/// trade seen: nothing missing, nothing twice.
#[tokio::test]
async fn gemini_outage_of_several_pages_is_filled_to_the_last() {
    let mock = MockGemini::start_with(one_symbol_in_runs("BTC-USD"))
        .await
        .unwrap();
    let lost = 5 * feeder_exchanges::gemini::PAGE_LIMIT + 200;
    hang_is_filled_exactly(&GeminiFactory, "gemini", &mock, 3, lost).await;
    let forward = mock
        .http_server()
        .requests()
        .into_iter()
        .filter(|r| r.query_param("since_tid").is_some())
        .count();
    // Six pages with trades and one that brings nothing new.
    assert_eq!(forward, 7);
}

#[tokio::test]
async fn gemini_polling_survives_rate_limits() {
    let mock = MockGemini::start().await.unwrap();
    let cfg = mock.exchange_config("gemini", Transport::Rest);
    polling_survives_errors(&mock, GeminiFactory.build(&cfg).unwrap()).await;
}

#[tokio::test]
async fn huobi_stream_recovers_a_dropped_connection() {
    let mock = MockHuobi::start().await.unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Websocket);
    stream_survives_a_drop(&mock, HuobiFactory.build(&cfg).unwrap(), 2).await;
}

#[tokio::test]
async fn huobi_stream_answers_every_ping_with_its_number() {
    let mock = MockHuobi::start_with(MockConfig {
        heartbeat_every: Duration::from_secs(3_600),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Websocket);
    let mut run = Running::start_with_same_repeats(HuobiFactory.build(&cfg).unwrap(), &mock);
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    for n in 1..=3 {
        mock.ping();
        let pongs = mock
            .ws_server()
            .wait_received(
                n,
                |r| {
                    r.message
                        .as_text()
                        .is_some_and(|t| t.starts_with(r#"{"pong":"#))
                },
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(pongs.len(), n);
    }
    // Trades still flow on the same connection.
    let published = mock.publish(6);
    run.until_all(&published).await;
    run.assert_exactly(&published);
    assert_eq!(mock.ws_server().connections(), 1);
    run.stop().await;
}

#[tokio::test]
async fn huobi_polling_survives_rate_limits() {
    let mock = MockHuobi::start().await.unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Rest);
    polling_survives_errors(&mock, HuobiFactory.build(&cfg).unwrap()).await;
}
