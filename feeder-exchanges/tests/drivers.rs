//! The bundled venues run by the real drivers against the mock venues of `feeder-testkit`,
//! with faults injected: every published trade must arrive, exactly as published.

mod support;

use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{ExchangeStats, Transport};
use feeder_core::feeder::ExchangeFactory;
use feeder_core::model::{GapReason, Symbol};
use feeder_exchanges::bitstamp::BitstampFactory;
use feeder_exchanges::bybit::BybitFactory;
use feeder_exchanges::coinbase::CoinbaseFactory;
use feeder_testkit::venues::{
    MockBitstamp, MockBybit, MockCoinbase, MockConfig, MockVenue, WsFault,
};

use support::{Running, WAIT};

#[tokio::test]
async fn coinbase_stream_recovers_a_dropped_connection_by_backfill() {
    let mock = MockCoinbase::start().await.unwrap();
    mock.fault_next_connection(WsFault::DropAfter(7));
    let cfg = mock.exchange_config("coinbase", Transport::Websocket);
    let mut run = Running::start(CoinbaseFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(1, WAIT).await.unwrap();
    // Seven go out on the first connection; the rest only over REST after the reconnect.
    let mut published = mock.publish(30);
    run.until_all(&published).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;

    for p in &published {
        assert!(p.matches(run.get(p)), "{:?} != {p:?}", run.get(p));
    }
    assert!(mock.ws_server().connections() >= 2);
    let stats = run.stop().await;
    assert!(ExchangeStats::get(&stats.backfilled) >= 23, "{stats:?}");
}

#[tokio::test]
async fn coinbase_heartbeat_gap_is_backfilled_without_reconnecting() {
    let cfg = MockConfig {
        heartbeat_every: Duration::from_secs(3_600),
        ..MockConfig::default()
    };
    let mock = MockCoinbase::start_with(cfg).await.unwrap();
    // The stream goes quiet after three trades; only the venue's heartbeat says more exist.
    mock.fault_next_connection(WsFault::SkipAfter { after: 3, skip: 9 });
    let cfg = mock.exchange_config("coinbase", Transport::Websocket);
    let mut run = Running::start(CoinbaseFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let published = mock.publish(12);
    run.until_all(&published[..3]).await;
    mock.heartbeat();
    run.until_all(&published).await;
    for p in &published {
        assert!(p.matches(run.get(p)));
    }
    assert_eq!(mock.ws_server().connections(), 1);
    run.stop().await;
}

/// The next connection's application hangs after `after` trades while its WebSocket library
/// keeps pinging; the returned config gives a silent feed up after a second.
fn hang_next(mock: &MockVenue, name: &str, after: usize) -> ExchangeConfig {
    mock.fault_next_connection(WsFault::HangAfter {
        after,
        ping_every: Duration::from_millis(100),
    });
    let mut cfg = mock.exchange_config(name, Transport::Websocket);
    cfg.stale_timeout = Some(Duration::from_secs(1));
    cfg
}

/// A Coinbase server whose matching engine hangs while its WebSocket library keeps pinging
/// and answering pings: the feed is judged by its messages, so the silence is caught within
/// the stale timeout, and what was published meanwhile is filled over REST.
#[tokio::test]
async fn coinbase_stall_that_keeps_pinging_is_detected_and_filled() {
    let cfg = MockConfig {
        heartbeat_every: Duration::from_millis(200),
        ..MockConfig::default()
    };
    let mock = MockCoinbase::start_with(cfg).await.unwrap();
    let cfg = hang_next(&mock, "coinbase", 5);
    let mut run = Running::start(CoinbaseFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let mut published = mock.publish(40);
    run.until_all(&published).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    for p in &published {
        assert!(p.matches(run.get(p)), "{:?} != {p:?}", run.get(p));
    }
    assert_eq!(mock.ws_server().connections(), 2);
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.reconnects), 1, "{stats:?}");
    assert!(ExchangeStats::get(&stats.backfilled) >= 35, "{stats:?}");
}

/// An outage far longer than any page limit: 31 of Coinbase's largest pages are published
/// while the feed hangs, and every one of those trades is filled, oldest first.
#[tokio::test]
async fn coinbase_outage_of_thousands_of_trades_is_filled_to_the_last() {
    let cfg = MockConfig {
        heartbeat_every: Duration::from_millis(200),
        symbols: vec![feeder_core::model::Symbol::parse("BTC-USD").unwrap()],
        exponent_every: 0,
        ..MockConfig::default()
    };
    let mock = MockCoinbase::start_with(cfg).await.unwrap();
    let cfg = hang_next(&mock, "coinbase", 3);
    let mut run = Running::start(CoinbaseFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let pages = 31 * feeder_exchanges::coinbase::FORWARD_PAGE_LIMIT as usize;
    let mut published = mock.publish(3 + pages);
    run.until_all(&published).await;
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    for p in &published {
        assert!(p.matches(run.get(p)), "{:?} != {p:?}", run.get(p));
    }
    let stats = run.stop().await;
    assert!(
        ExchangeStats::get(&stats.backfilled) >= pages as u64,
        "{stats:?}"
    );
}

/// Bybit's REST API gives only its newest trades. Down for longer than that, the feeder
/// recovers the newest ones and records exactly one gap whose bounds are the last trade
/// before the outage and the first one recovered after it.
#[tokio::test]
async fn bybit_outage_beyond_its_newest_trades_is_one_gap_with_exact_bounds() {
    let cfg = MockConfig {
        symbols: vec![Symbol::parse("BTC-USDT").unwrap()],
        ..MockConfig::default()
    };
    let mock = MockBybit::start_with(cfg).await.unwrap();
    let cfg = hang_next(&mock, "bybit", 3);
    let mut run = Running::start(BybitFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let newest = feeder_exchanges::bybit::PAGE_LIMIT as usize;
    let published = mock.publish(3 + 200);
    let (before, lost) = published.split_at(3);
    let recovered = &lost[lost.len() - newest..];
    run.until_all(before).await;
    run.until_all(recovered).await;
    let after = mock.publish(5);
    run.until_all(&after).await;

    assert_eq!(run.gaps.len(), 1, "{:?}", run.gaps);
    let gap = &run.gaps[0];
    assert_eq!(gap.reason, GapReason::VenueLimit);
    assert_eq!(gap.after_trade_id.as_str(), before[2].trade_id.to_string());
    assert_eq!(gap.from, before[2].time);
    let first = &recovered[0];
    let bound = gap.before_trade_id.as_ref().map(|id| id.to_string());
    assert_eq!(bound, Some(first.trade_id.to_string()));
    assert_eq!(gap.to, Some(first.time));
    // Exactly the trades inside the bounds are missing.
    let missing = lost.len() - newest;
    assert_eq!(run.seen_count(), published.len() + after.len() - missing);
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.gaps), 1, "{stats:?}");
}

#[tokio::test]
async fn bitstamp_stream_recovers_drops_and_reconnect_requests() {
    let mock = MockBitstamp::start().await.unwrap();
    mock.fault_next_connection(WsFault::DropAfter(5));
    let cfg = mock.exchange_config("bitstamp", Transport::Websocket);
    let mut run = Running::start(BitstampFactory.build(&cfg).unwrap(), &mock);

    mock.wait_subscriptions(2, WAIT).await.unwrap();
    let mut published = mock.publish(20);
    run.until_all(&published).await;
    mock.wait_subscriptions(4, WAIT).await.unwrap();

    // Bitstamp asks for a reconnect: the client opens a new connection and resubscribes.
    mock.request_reconnect();
    mock.wait_subscriptions(6, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;

    for p in &published {
        // Trades recovered over REST carry whole seconds only.
        assert!(
            p.matches_to_the_second(run.get(p)),
            "{:?} != {p:?}",
            run.get(p)
        );
    }
    assert_eq!(mock.ws_server().connections(), 3);
    run.stop().await;
}

#[tokio::test]
async fn rest_polling_survives_rate_limits() {
    let mock = MockCoinbase::start().await.unwrap();
    let cfg = mock.exchange_config("coinbase", Transport::Rest);
    let published = mock.publish(6);
    mock.fail_rest(1, 429);
    let mut run = Running::start(CoinbaseFactory.build(&cfg).unwrap(), &mock);
    run.until_all(&published).await;
    let more = mock.publish(6);
    run.until_all(&more).await;
    for p in published.iter().chain(&more) {
        assert!(p.matches(run.get(p)));
    }
    assert!(mock.http_server().requests().len() >= 3);
    run.stop().await;
}
