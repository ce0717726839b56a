//! Binance, Bybit, OKX and Kraken run by the real drivers against the mock venues of
//! `feeder-testkit`, with a forced disconnect: every published trade must arrive, exactly as
//! published, and nothing else may.

mod support;

use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::{Exchange, ExchangeStats, Transport};
use feeder_core::feeder::ExchangeFactory;
use feeder_core::model::Symbol;
use feeder_exchanges::binance::BinanceFactory;
use feeder_exchanges::bybit::BybitFactory;
use feeder_exchanges::kraken::KrakenFactory;
use feeder_exchanges::okx::OkxFactory;
use feeder_testkit::venues::{
    MockBinance, MockBybit, MockConfig, MockKraken, MockOkx, MockVenue, WsFault,
};

use support::{hang_is_filled_exactly, Running, WAIT};

/// A mock listing only `symbol`, so that an outage's trades are all of one stream.
fn one_symbol(symbol: &str) -> MockConfig {
    MockConfig::with_symbols(&[Symbol::parse(symbol).unwrap()])
}

/// Streams with the first connection dropped after `drop_after` trades; trades published
/// while the client is away come back over REST.
async fn stream_survives_a_drop(
    exchange: Arc<dyn Exchange>,
    mock: &MockVenue,
    subs_per_connection: usize,
    drop_after: usize,
) -> Arc<ExchangeStats> {
    mock.fault_next_connection(WsFault::DropAfter(drop_after));
    let mut run = Running::start(exchange, mock);
    mock.wait_subscriptions(subs_per_connection, WAIT)
        .await
        .unwrap();
    let mut published = mock.publish(30);
    run.until_all(&published).await;
    mock.wait_subscriptions(2 * subs_per_connection, WAIT)
        .await
        .unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly(&mock.published());
    assert!(mock.ws_server().connections() >= 2);
    run.stop().await
}

/// Polls, through one injected rate limit.
async fn polling_survives_a_rate_limit(exchange: Arc<dyn Exchange>, mock: &MockVenue) {
    let published = mock.publish(6);
    mock.fail_rest(1, 429);
    let mut run = Running::start(exchange, mock);
    run.until_all(&published).await;
    let more = mock.publish(6);
    run.until_all(&more).await;
    run.assert_exactly(&mock.published());
    assert!(mock.http_server().requests().len() >= 3);
    run.stop().await;
}

#[tokio::test]
async fn binance_stream_recovers_a_dropped_connection_by_backfill() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Websocket);
    let stats = stream_survives_a_drop(BinanceFactory.build(&cfg).unwrap(), &mock, 1, 7).await;
    assert!(ExchangeStats::get(&stats.backfilled) >= 23, "{stats:?}");
}

/// An outage of 31 of Binance's largest pages is filled forward from the last trade seen,
/// page after page by `fromId`, to the last trade: nothing missing, nothing twice.
#[tokio::test]
async fn binance_outage_of_thousands_of_trades_is_filled_to_the_last() {
    let mock = MockBinance::start_with(one_symbol("BTC-USDT"))
        .await
        .unwrap();
    let lost = 31 * feeder_exchanges::binance::PAGE_LIMIT as usize + 500;
    hang_is_filled_exactly(&BinanceFactory, "binance", &mock, 3, lost).await;
    let forward = mock
        .http_server()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v3/historicalTrades")
        .count();
    // 31 full pages, the 32nd with the rest, and one that brings nothing new.
    assert_eq!(forward, 33);
}

#[tokio::test]
async fn binance_polling_survives_rate_limits() {
    let mock = MockBinance::start().await.unwrap();
    let cfg = mock.exchange_config("binance", Transport::Rest);
    polling_survives_a_rate_limit(BinanceFactory.build(&cfg).unwrap(), &mock).await;
}

#[tokio::test]
async fn bybit_stream_recovers_a_dropped_connection_by_backfill() {
    let mock = MockBybit::start().await.unwrap();
    let cfg = mock.exchange_config("bybit", Transport::Websocket);
    // The 15 BTC trades go out in pushes of up to four, then the connection drops after two
    // ETH trades, in the middle of a push: the other 13 come back over REST. (A symbol with no
    // trade seen before a drop has no cursor, so the driver has nothing to backfill from.)
    let stats = stream_survives_a_drop(BybitFactory.build(&cfg).unwrap(), &mock, 1, 17).await;
    assert!(ExchangeStats::get(&stats.backfilled) >= 13, "{stats:?}");
}

#[tokio::test]
async fn bybit_polling_survives_rate_limits() {
    let mock = MockBybit::start().await.unwrap();
    let cfg = mock.exchange_config("bybit", Transport::Rest);
    polling_survives_a_rate_limit(BybitFactory.build(&cfg).unwrap(), &mock).await;
}

#[tokio::test]
async fn okx_stream_recovers_a_dropped_connection_by_backfill() {
    let mock = MockOkx::start().await.unwrap();
    let cfg = mock.exchange_config("okx", Transport::Websocket);
    // 15 BTC trades in pushes of up to three, then the drop after one ETH trade.
    let stats = stream_survives_a_drop(OkxFactory.build(&cfg).unwrap(), &mock, 1, 16).await;
    assert!(ExchangeStats::get(&stats.backfilled) >= 14, "{stats:?}");
}

/// An outage of 31 pages of OKX's history is filled forward, each page the window of 100
/// ids after the last trade delivered: nothing missing, nothing twice.
#[tokio::test]
async fn okx_outage_of_thousands_of_trades_is_filled_to_the_last() {
    let mock = MockOkx::start_with(one_symbol("BTC-USDT")).await.unwrap();
    let lost = 31 * feeder_exchanges::okx::PAGE_LIMIT as usize + 50;
    hang_is_filled_exactly(&OkxFactory, "okx", &mock, 3, lost).await;
    let forward = mock
        .http_server()
        .requests()
        .into_iter()
        .filter(|r| r.query_param("before").is_some())
        .count();
    // 31 full windows, the 32nd with the rest, and one that brings nothing new.
    assert_eq!(forward, 33);
}

#[tokio::test]
async fn okx_polling_survives_rate_limits() {
    let mock = MockOkx::start().await.unwrap();
    let cfg = mock.exchange_config("okx", Transport::Rest);
    polling_survives_a_rate_limit(OkxFactory.build(&cfg).unwrap(), &mock).await;
}

#[tokio::test]
async fn kraken_stream_recovers_a_dropped_connection_by_snapshot_and_backfill() {
    let mock = MockKraken::start().await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Websocket);
    // 15 BTC trades in updates of up to five, then the drop after two ETH trades; the
    // rest come back in the new connection's snapshot and over REST.
    stream_survives_a_drop(KrakenFactory.build(&cfg).unwrap(), &mock, 1, 17).await;
}

/// A Kraken mock of one symbol whose heartbeats come often enough for a 1 s stale timeout,
/// and whose trades share their time in runs of `fills` (the fills of one taker order).
async fn kraken_with_fills(fills: u64) -> MockKraken {
    MockKraken::start_with(MockConfig {
        heartbeat_every: Duration::from_millis(200),
        fills_per_instant: fills,
        ..one_symbol("BTC-USD")
    })
    .await
    .unwrap()
}

/// An outage of several of Kraken's pages is filled forward by time from the last trade
/// seen, each page starting again at the instant the last one ended in: runs of seven fills
/// sharing a time are cut by the cursor and by every page boundary, and nothing is missing
/// or delivered twice.
#[tokio::test]
async fn kraken_outage_of_several_pages_is_filled_to_the_last() {
    let mock = kraken_with_fills(7).await;
    let lost = 5 * feeder_exchanges::kraken::PAGE_LIMIT + 300;
    hang_is_filled_exactly(&KrakenFactory, "kraken", &mock, 3, lost).await;
    let forward = mock
        .http_server()
        .requests()
        .into_iter()
        .filter(|r| r.query_param("count").is_some())
        .count();
    assert!(forward >= 7, "{forward} pages");
}

/// The stream hangs in the middle of an instant that seven fills share: the fill starts at
/// that instant, brings the four not yet had and none of the three already had.
#[tokio::test]
async fn kraken_fill_from_inside_an_instant_neither_skips_nor_repeats() {
    let mock = kraken_with_fills(7).await;
    hang_is_filled_exactly(&KrakenFactory, "kraken", &mock, 3, 11).await;
    let published = mock.published();
    assert_eq!(published[2].time, published[6].time);
    assert_ne!(published[6].time, published[7].time);
}

#[tokio::test]
async fn kraken_polling_survives_rate_limits() {
    let mock = MockKraken::start().await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Rest);
    polling_survives_a_rate_limit(KrakenFactory.build(&cfg).unwrap(), &mock).await;
}
