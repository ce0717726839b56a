//! Binance, Bybit, OKX and Kraken run by the real drivers against the mock venues of
//! `feeder-testkit`, with a forced disconnect: every published trade must arrive, exactly as
//! published, and nothing else may.

mod support;

use std::sync::Arc;

use feeder_core::exchange::{Exchange, ExchangeStats, Transport};
use feeder_core::feeder::ExchangeFactory;
use feeder_exchanges::binance::BinanceFactory;
use feeder_exchanges::bybit::BybitFactory;
use feeder_exchanges::kraken::KrakenFactory;
use feeder_exchanges::okx::OkxFactory;
use feeder_testkit::venues::{MockBinance, MockBybit, MockKraken, MockOkx, MockVenue, WsFault};

use support::{Running, WAIT};

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

#[tokio::test]
async fn kraken_polling_survives_rate_limits() {
    let mock = MockKraken::start().await.unwrap();
    let cfg = mock.exchange_config("kraken", Transport::Rest);
    polling_survives_a_rate_limit(KrakenFactory.build(&cfg).unwrap(), &mock).await;
}
