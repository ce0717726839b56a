//! The bundled venues run by the real drivers against the mock venues of `feeder-testkit`,
//! with faults injected: every published trade must arrive, exactly as published, and nothing
//! else may.
//!
//! One table, [`ROWS`], says what differs between venues; each check is one function that
//! reads a venue's row, stamped into one test per venue by [`per_venue!`], so that a failure
//! names the venue and the check (`stream_recovers_a_dropped_connection::kraken`). A venue a
//! check does not apply to says why in its row, and
//! [`every_check_runs_exactly_where_its_row_says`] keeps the stamped lists and the rows in
//! step. [`every_venue_folder_is_registered_mocked_and_has_payloads`] fails when a venue
//! folder is added without a registry entry, a mock or stored payloads.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{ExchangeStats, Transport};
use feeder_core::feeder::{ExchangeFactory, Registry};
use feeder_core::model::{GapReason, Symbol};
use feeder_testkit::http::Request;
use feeder_testkit::venues::{MockConfig, MockVenue, WsFault};

use support::mock::{self, Mock};
use support::{hang_is_filled_exactly, Precision, Running, WAIT};

/// Whether a check applies to a venue, and if not, why.
#[derive(Clone, Copy, Debug)]
enum Applies<T> {
    /// It does, with what the venue needs for it.
    Yes(T),
    /// It does not, for this reason.
    No(&'static str),
}

impl<T: Copy> Applies<T> {
    /// What the row gives for a check stamped for `venue`.
    fn get(&self, venue: &str, check: &str) -> T {
        match self {
            Applies::Yes(t) => *t,
            Applies::No(why) => panic!("{check} is stamped for {venue}, whose row says: {why}"),
        }
    }

    /// The reason the check does not apply, if it does not.
    fn exempt(&self) -> Option<&'static str> {
        match self {
            Applies::Yes(_) => None,
            Applies::No(why) => Some(why),
        }
    }
}

/// How many of something a check expects.
#[derive(Clone, Copy, Debug)]
enum Count {
    /// Exactly this many.
    Exactly(usize),
    /// This many or more: where the number depends on how the pages fall.
    AtLeast(usize),
}

impl Count {
    fn check(self, got: usize, what: &str) {
        match self {
            Count::Exactly(n) => assert_eq!(got, n, "{what}"),
            Count::AtLeast(n) => assert!(got >= n, "{what}: {got} < {n}"),
        }
    }
}

/// A fill forward over many of the venue's pages.
#[derive(Clone, Copy)]
struct Forward {
    /// Trades published while the stream hangs: more than several of its largest pages.
    lost: usize,
    /// Whether a REST request is a page of the fill forward.
    is_forward: fn(&Request) -> bool,
    /// How many such pages the fill takes, the last one bringing nothing new.
    pages: Count,
}

/// What differs between venues, for the driver checks.
struct Row {
    /// The registry name.
    name: &'static str,
    /// The symbol of the venue's one-symbol mocks, spelled as it lists it.
    symbol: &'static str,
    /// Subscriptions acknowledged per connection, with the mock's default two symbols.
    subs: usize,
    /// How close a trade recovered over REST comes to the streamed one.
    rest_precision: Precision,
    /// After how many trades the first connection drops: late enough, on venues that push
    /// trades in batches, that every symbol had one (a symbol without a trade seen has no
    /// cursor to fill from).
    drop_after: usize,
    /// The least number of trades a drop after `drop_after` of 30 leaves to the backfill.
    backfilled_after_drop: Applies<u64>,
    /// The least number of trades a hang after 5 of 40 leaves to the backfill.
    backfilled_after_stall: Applies<u64>,
    /// Whether the venue asks its clients to reconnect.
    asks_to_reconnect: Applies<()>,
    /// Fills forward over many pages.
    forward: Applies<Forward>,
    /// Serves only this many of its newest trades over REST.
    newest_only: Applies<usize>,
    /// Its heartbeat names the newest trade of each product.
    heartbeat_names_trades: Applies<()>,
    /// It pings its clients at the application level, and wants its number back.
    pings_clients: Applies<()>,
}

const NO_RECONNECT: &str = "the venue has no message that asks its clients to reconnect";
const NO_FORWARD: &str =
    "its REST API gives only the newest trades, never a page after a trade: see newest_only";
const NOT_NEWEST_ONLY: &str = "it pages forward from any trade: see forward";
const NO_HEARTBEAT_ID: &str = "its heartbeats, if any, name no trade";
const NO_VENUE_PING: &str =
    "it does not ping its clients at the application level (protocol pings are the WebSocket library's)";

/// One row per bundled venue.
const ROWS: &[Row] = &[
    Row {
        name: "bitstamp",
        symbol: "BTC-USD",
        subs: 2,
        rest_precision: Precision::Second,
        drop_after: 5,
        backfilled_after_drop: Applies::No(
            "a trade recovered over REST has whole seconds only, so which copies count as new depends on the second they fall in",
        ),
        backfilled_after_stall: Applies::No(
            "a trade recovered over REST has whole seconds only, so which copies count as new depends on the second they fall in",
        ),
        asks_to_reconnect: Applies::Yes(()),
        forward: Applies::No(NO_FORWARD),
        newest_only: Applies::No(
            "its REST API gives the last minute of trades, and the mock's are all that recent",
        ),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "coinbase",
        symbol: "BTC-USD",
        subs: 1,
        rest_precision: Precision::Exact,
        drop_after: 7,
        backfilled_after_drop: Applies::Yes(23),
        backfilled_after_stall: Applies::Yes(35),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        forward: Applies::Yes(Forward {
            lost: 31 * feeder_exchanges::coinbase::FORWARD_PAGE_LIMIT as usize,
            is_forward: |r| r.query_param("before").is_some(),
            pages: Count::AtLeast(31),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::Yes(()),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "bitfinex",
        symbol: "BTC-USD",
        subs: 2,
        rest_precision: Precision::Exact,
        drop_after: 5,
        backfilled_after_drop: Applies::No(
            "the new connection's snapshot brings the missed trades back, not the backfill",
        ),
        backfilled_after_stall: Applies::Yes(35),
        asks_to_reconnect: Applies::Yes(()),
        forward: Applies::Yes(Forward {
            lost: 2 * feeder_exchanges::bitfinex::FORWARD_PAGE_LIMIT + 500,
            is_forward: |r| r.query_param("sort") == Some("1"),
            // Three pages with trades and one that brings nothing new.
            pages: Count::Exactly(4),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "gemini",
        symbol: "BTC-USD",
        subs: 1,
        rest_precision: Precision::Exact,
        drop_after: 5,
        backfilled_after_drop: Applies::No(
            "the new connection's first message carries the latest trades, so the backfill finds fewer or none",
        ),
        backfilled_after_stall: Applies::Yes(35),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        forward: Applies::Yes(Forward {
            lost: 5 * feeder_exchanges::gemini::PAGE_LIMIT + 200,
            is_forward: |r| r.query_param("since_tid").is_some(),
            // Six pages with trades and one that brings nothing new.
            pages: Count::Exactly(7),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "huobi",
        symbol: "BTC-USD",
        subs: 2,
        rest_precision: Precision::Exact,
        drop_after: 5,
        backfilled_after_drop: Applies::No(
            "the backfill's newest-2000 page overlaps the stream, so its count is not the number missed",
        ),
        backfilled_after_stall: Applies::Yes(35),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        forward: Applies::No(NO_FORWARD),
        newest_only: Applies::Yes(feeder_exchanges::huobi::PAGE_SIZE),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::Yes(()),
    },
    Row {
        name: "binance",
        symbol: "BTC-USDT",
        subs: 1,
        rest_precision: Precision::Exact,
        drop_after: 7,
        backfilled_after_drop: Applies::Yes(23),
        backfilled_after_stall: Applies::Yes(35),
        asks_to_reconnect: Applies::Yes(()),
        forward: Applies::Yes(Forward {
            lost: 31 * feeder_exchanges::binance::PAGE_LIMIT as usize + 500,
            is_forward: |r| r.path == "/api/v3/historicalTrades",
            // 31 full pages, the 32nd with the rest, and one that brings nothing new.
            pages: Count::Exactly(33),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "bybit",
        symbol: "BTC-USDT",
        subs: 1,
        rest_precision: Precision::Exact,
        // The 15 BTC trades go out in pushes of up to four, then the connection drops after
        // two ETH trades, in the middle of a push: the other 13 come back over REST.
        drop_after: 17,
        backfilled_after_drop: Applies::Yes(13),
        // Only the first symbol's 15: pushes group a symbol's trades, so the five before
        // the hang are all the first symbol's, and the second, with no trade seen, has no
        // cursor to fill from (its trades still all arrive, as the exact check shows).
        backfilled_after_stall: Applies::Yes(15),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        forward: Applies::No(NO_FORWARD),
        newest_only: Applies::Yes(feeder_exchanges::bybit::PAGE_LIMIT as usize),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "okx",
        symbol: "BTC-USDT",
        subs: 1,
        rest_precision: Precision::Exact,
        // 15 BTC trades in pushes of up to three, then the drop after one ETH trade.
        drop_after: 16,
        backfilled_after_drop: Applies::Yes(14),
        // Only the first symbol's 15: pushes group a symbol's trades, so the five before
        // the hang are all the first symbol's, and the second, with no trade seen, has no
        // cursor to fill from (its trades still all arrive, as the exact check shows).
        backfilled_after_stall: Applies::Yes(15),
        asks_to_reconnect: Applies::Yes(()),
        forward: Applies::Yes(Forward {
            lost: 31 * feeder_exchanges::okx::PAGE_LIMIT as usize + 50,
            is_forward: |r| r.query_param("before").is_some(),
            // 31 full windows, the 32nd with the rest, and one that brings nothing new.
            pages: Count::Exactly(33),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
    Row {
        name: "kraken",
        symbol: "BTC-USD",
        subs: 1,
        rest_precision: Precision::Exact,
        // 15 BTC trades in updates of up to five, then the drop after two ETH trades; the
        // rest come back in the new connection's snapshot and over REST.
        drop_after: 17,
        backfilled_after_drop: Applies::No(
            "the new connection's snapshot brings some of the missed trades back, the backfill the rest",
        ),
        // Only the first symbol's 15: pushes group a symbol's trades, so the five before
        // the hang are all the first symbol's, and the second, with no trade seen, has no
        // cursor to fill from (its trades still all arrive, as the exact check shows).
        backfilled_after_stall: Applies::Yes(15),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        forward: Applies::Yes(Forward {
            lost: 5 * feeder_exchanges::kraken::PAGE_LIMIT + 300,
            is_forward: |r| r.query_param("count").is_some(),
            // Pages start again at the instant the last one ended in, so how many there are
            // depends on where the runs of fills fall.
            pages: Count::AtLeast(7),
        }),
        newest_only: Applies::No(NOT_NEWEST_ONLY),
        heartbeat_names_trades: Applies::No(NO_HEARTBEAT_ID),
        pings_clients: Applies::No(NO_VENUE_PING),
    },
];

/// Why `check` does not apply to `row`, or `None` when it does: the one place that ties a
/// check's name to the field of the row it reads.
fn exemption(check: &str, row: &Row) -> Option<&'static str> {
    match check {
        "stream_recovers_a_dropped_connection"
        | "stall_that_keeps_pinging_is_detected_and_filled"
        | "polling_survives_rate_limits_and_errors" => None,
        "stream_follows_a_reconnect_request" => row.asks_to_reconnect.exempt(),
        "outage_of_many_pages_is_filled_to_the_last"
        | "fill_from_inside_a_shared_instant_neither_skips_nor_repeats" => row.forward.exempt(),
        "outage_beyond_the_newest_trades_is_one_gap_with_exact_bounds" => row.newest_only.exempt(),
        "heartbeat_gap_is_backfilled_without_reconnecting" => row.heartbeat_names_trades.exempt(),
        "venue_ping_is_answered_with_its_number" => row.pings_clients.exempt(),
        other => panic!("{other} is not a check of this table"),
    }
}

/// Stamps one test per venue for each check: `check: [venue, ...]` becomes a module `check`
/// with one `#[tokio::test]` per venue that runs `check("venue")`, and the list of what was
/// stamped, [`STAMPED`].
macro_rules! per_venue {
    ($($check:ident: [$($venue:ident),* $(,)?];)*) => {
        $(
            mod $check {
                $(
                    #[tokio::test]
                    async fn $venue() {
                        super::$check(stringify!($venue)).await;
                    }
                )*
            }
        )*
        /// Each check with the venues it was stamped for.
        const STAMPED: &[(&str, &[&str])] = &[
            $((stringify!($check), &[$(stringify!($venue)),*])),*
        ];
    };
}

per_venue! {
    stream_recovers_a_dropped_connection:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    stream_follows_a_reconnect_request: [bitstamp, bitfinex, binance, okx];
    stall_that_keeps_pinging_is_detected_and_filled:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    outage_of_many_pages_is_filled_to_the_last: [coinbase, bitfinex, gemini, binance, okx, kraken];
    fill_from_inside_a_shared_instant_neither_skips_nor_repeats:
        [coinbase, bitfinex, gemini, binance, okx, kraken];
    outage_beyond_the_newest_trades_is_one_gap_with_exact_bounds: [huobi, bybit];
    heartbeat_gap_is_backfilled_without_reconnecting: [coinbase];
    venue_ping_is_answered_with_its_number: [huobi];
    polling_survives_rate_limits_and_errors:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
}

/// The row of `venue`.
fn row(venue: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.name == venue)
        .unwrap_or_else(|| panic!("{venue} has no row"))
}

/// Every bundled venue, registered.
fn registry() -> Registry {
    let mut registry = Registry::new();
    feeder_exchanges::register(&mut registry);
    registry
}

/// The registered factory of `venue`.
fn factory(venue: &str) -> Arc<dyn ExchangeFactory> {
    registry()
        .exchange(venue)
        .unwrap_or_else(|| panic!("{venue} is not registered"))
        .clone()
}

/// Starts `venue`'s mock with `cfg`, or its defaults.
async fn start(venue: &str, cfg: Option<MockConfig>) -> Mock {
    mock::start(venue, cfg)
        .await
        .unwrap_or_else(|| panic!("{venue} has no mock"))
}

/// A mock of the row's one symbol whose heartbeats come often enough for a 1 s stale
/// timeout, and whose trades share their time in runs of `fills` (the fills of one taker
/// order).
fn one_symbol(row: &Row, fills: u64) -> MockConfig {
    MockConfig {
        heartbeat_every: Duration::from_millis(200),
        fills_per_instant: fills,
        ..MockConfig::with_symbols(&[Symbol::parse(row.symbol).unwrap()])
    }
}

/// The mock's usual two symbols for the row's venue, in a config to adjust.
fn two_symbols(row: &Row) -> MockConfig {
    let btc = Symbol::parse(row.symbol).unwrap();
    let eth = Symbol::parse(&format!("ETH-{}", btc.quote())).unwrap();
    MockConfig::with_symbols(&[btc, eth])
}

/// Runs `venue`'s exchange, built from `cfg` by its registered factory, on `mock`; repeats
/// must equal their first copy unless REST copies are coarser than streamed ones.
fn run(venue: &str, cfg: &ExchangeConfig, mock: &MockVenue, same_repeats: bool) -> Running {
    let exchange = factory(venue)
        .build(cfg)
        .unwrap_or_else(|e| panic!("{venue}: {e}"));
    if same_repeats {
        Running::start_with_same_repeats(exchange, mock)
    } else {
        Running::start(exchange, mock)
    }
}

/// A WebSocket config whose feed is given up after a second of silence.
fn stale_after_a_second(mock: &MockVenue, venue: &str) -> ExchangeConfig {
    let mut cfg = mock.exchange_config(venue, Transport::Websocket);
    cfg.stale_timeout = Some(Duration::from_secs(1));
    cfg
}

// ---------------------------------------------------------------------------------------
// The checks

/// The first connection drops after `drop_after` trades: the trades sent while the client
/// reconnects come back by snapshot or backfill, each exactly as published, and nothing else
/// arrives.
async fn stream_recovers_a_dropped_connection(venue: &str) {
    let row = row(venue);
    let mock = start(venue, None).await;
    mock.fault_next_connection(WsFault::DropAfter(row.drop_after));
    let cfg = mock.exchange_config(venue, Transport::Websocket);
    let exact = row.rest_precision == Precision::Exact;
    let mut run = run(venue, &cfg, &mock, exact);
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let mut published = mock.publish(30);
    run.until_all(&published).await;
    mock.wait_subscriptions(2 * row.subs, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly_to(&mock.published(), row.rest_precision);
    assert!(mock.ws_server().connections() >= 2, "{venue}");
    let stats = run.stop().await;
    assert_eq!(
        ExchangeStats::get(&stats.parse_errors),
        0,
        "{venue}: {stats:?}"
    );
    if let Applies::Yes(n) = row.backfilled_after_drop {
        assert!(
            ExchangeStats::get(&stats.backfilled) >= n,
            "{venue}: {stats:?}"
        );
    }
}

/// The venue asks for a reconnect: the client opens a new connection, subscribes again (on
/// Bitfinex the new channel ids map to the right symbols), and misses nothing.
async fn stream_follows_a_reconnect_request(venue: &str) {
    let row = row(venue);
    row.asks_to_reconnect
        .get(venue, "stream_follows_a_reconnect_request");
    let mock = start(venue, None).await;
    let cfg = mock.exchange_config(venue, Transport::Websocket);
    let exact = row.rest_precision == Precision::Exact;
    let mut run = run(venue, &cfg, &mock, exact);
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let mut published = mock.publish(10);
    run.until_all(&published).await;
    mock.ask_to_reconnect();
    mock.wait_subscriptions(2 * row.subs, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly_to(&published, row.rest_precision);
    assert_eq!(mock.ws_server().connections(), 2, "{venue}");
    let stats = run.stop().await;
    assert_eq!(
        ExchangeStats::get(&stats.reconnects),
        1,
        "{venue}: {stats:?}"
    );
}

/// The venue's matching engine hangs after five trades while its WebSocket library keeps
/// pinging and answering pings: the feed is judged by its messages, so the silence is caught
/// within the stale timeout, the client reconnects once, and what was published meanwhile is
/// filled over REST.
async fn stall_that_keeps_pinging_is_detected_and_filled(venue: &str) {
    let row = row(venue);
    let mock = start(
        venue,
        Some(MockConfig {
            heartbeat_every: Duration::from_millis(200),
            ..two_symbols(row)
        }),
    )
    .await;
    mock.fault_next_connection(WsFault::HangAfter {
        after: 5,
        ping_every: Duration::from_millis(100),
    });
    let cfg = stale_after_a_second(&mock, venue);
    let exact = row.rest_precision == Precision::Exact;
    let mut run = run(venue, &cfg, &mock, exact);
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let mut published = mock.publish(40);
    run.until_all(&published).await;
    mock.wait_subscriptions(2 * row.subs, WAIT).await.unwrap();
    published.extend(mock.publish(10));
    run.until_all(&published).await;
    run.assert_exactly_to(&mock.published(), row.rest_precision);
    assert_eq!(mock.ws_server().connections(), 2, "{venue}");
    let stats = run.stop().await;
    assert_eq!(
        ExchangeStats::get(&stats.reconnects),
        1,
        "{venue}: {stats:?}"
    );
    if let Applies::Yes(n) = row.backfilled_after_stall {
        assert!(
            ExchangeStats::get(&stats.backfilled) >= n,
            "{venue}: {stats:?}"
        );
    }
}

/// An outage far longer than any page limit: several of the venue's largest pages are
/// published while the feed hangs, and every one of those trades is filled, oldest first,
/// nothing twice, in as many pages as the venue needs.
async fn outage_of_many_pages_is_filled_to_the_last(venue: &str) {
    let row = row(venue);
    let fwd = row
        .forward
        .get(venue, "outage_of_many_pages_is_filled_to_the_last");
    let mock = start(venue, Some(one_symbol(row, 7))).await;
    hang_is_filled_exactly(&*factory(venue), venue, &mock, 3, fwd.lost).await;
    let pages = mock
        .http_server()
        .requests()
        .iter()
        .filter(|r| (fwd.is_forward)(r))
        .count();
    fwd.pages
        .check(pages, &format!("{venue}: pages of the fill"));
}

/// The stream hangs in the middle of an instant that seven fills share: the fill starts
/// right after the last trade had, brings the four of the instant not yet had and none of
/// the three already had.
async fn fill_from_inside_a_shared_instant_neither_skips_nor_repeats(venue: &str) {
    let row = row(venue);
    row.forward.get(
        venue,
        "fill_from_inside_a_shared_instant_neither_skips_nor_repeats",
    );
    let mock = start(venue, Some(one_symbol(row, 7))).await;
    hang_is_filled_exactly(&*factory(venue), venue, &mock, 3, 11).await;
    let published = mock.published();
    assert_eq!(published[2].time, published[6].time, "{venue}");
    // Where times are finer than the millisecond, the next run has a time of its own;
    // in milliseconds two runs may fall in one.
    if published.iter().all(|t| t.time.digits() > 3) {
        assert_ne!(published[6].time, published[7].time, "{venue}");
    }
}

/// The venue's REST API gives only its newest trades. Down for longer than that, the feeder
/// recovers the newest ones and records exactly one gap whose bounds are the last trade
/// before the outage and the first one recovered after it.
async fn outage_beyond_the_newest_trades_is_one_gap_with_exact_bounds(venue: &str) {
    let row = row(venue);
    let newest = row.newest_only.get(
        venue,
        "outage_beyond_the_newest_trades_is_one_gap_with_exact_bounds",
    );
    let mock = start(venue, Some(one_symbol(row, 1))).await;
    let cfg = stale_after_a_second(&mock, venue);
    mock.fault_next_connection(WsFault::HangAfter {
        after: 3,
        ping_every: Duration::from_millis(100),
    });
    let mut run = run(venue, &cfg, &mock, false);
    mock.wait_subscriptions(1, WAIT).await.unwrap();
    let published = mock.publish(3 + newest + 140);
    let (before, lost) = published.split_at(3);
    let recovered = &lost[lost.len() - newest..];
    run.until_all(before).await;
    run.until_all(recovered).await;
    let after = mock.publish(5);
    run.until_all(&after).await;

    assert_eq!(run.gaps.len(), 1, "{venue}: {:?}", run.gaps);
    let gap = &run.gaps[0];
    assert_eq!(gap.reason, GapReason::VenueLimit, "{venue}");
    assert_eq!(
        gap.after_trade_id.as_str(),
        before[2].trade_id.to_string(),
        "{venue}"
    );
    assert_eq!(gap.from, before[2].time, "{venue}");
    let first = &recovered[0];
    let bound = gap.before_trade_id.as_ref().map(|id| id.to_string());
    assert_eq!(bound, Some(first.trade_id.to_string()), "{venue}");
    assert_eq!(gap.to, Some(first.time), "{venue}");
    // Exactly the trades inside the bounds are missing.
    let missing = lost.len() - newest;
    assert_eq!(
        run.seen_count(),
        published.len() + after.len() - missing,
        "{venue}"
    );
    let stats = run.stop().await;
    assert_eq!(ExchangeStats::get(&stats.gaps), 1, "{venue}: {stats:?}");
}

/// The stream goes quiet after three trades; only the venue's heartbeat says more exist,
/// and those are filled over REST on the same connection.
async fn heartbeat_gap_is_backfilled_without_reconnecting(venue: &str) {
    let row = row(venue);
    row.heartbeat_names_trades
        .get(venue, "heartbeat_gap_is_backfilled_without_reconnecting");
    let mock = start(
        venue,
        Some(MockConfig {
            heartbeat_every: Duration::from_secs(3_600),
            ..two_symbols(row)
        }),
    )
    .await;
    mock.fault_next_connection(WsFault::SkipAfter { after: 3, skip: 9 });
    let cfg = mock.exchange_config(venue, Transport::Websocket);
    let mut run = run(venue, &cfg, &mock, true);
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let published = mock.publish(12);
    run.until_all(&published[..3]).await;
    mock.coinbase_heartbeat();
    run.until_all(&published).await;
    run.assert_exactly(&published);
    assert_eq!(mock.ws_server().connections(), 1, "{venue}");
    run.stop().await;
}

/// Every application ping of the venue is answered with its own number, and trades still
/// flow on the same connection.
async fn venue_ping_is_answered_with_its_number(venue: &str) {
    let row = row(venue);
    row.pings_clients
        .get(venue, "venue_ping_is_answered_with_its_number");
    let mock = start(
        venue,
        Some(MockConfig {
            heartbeat_every: Duration::from_secs(3_600),
            ..two_symbols(row)
        }),
    )
    .await;
    let cfg = mock.exchange_config(venue, Transport::Websocket);
    let mut run = run(venue, &cfg, &mock, true);
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    for n in 1..=3 {
        mock.huobi_ping();
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
        assert_eq!(pongs.len(), n, "{venue}");
    }
    let published = mock.publish(6);
    run.until_all(&published).await;
    run.assert_exactly(&published);
    assert_eq!(mock.ws_server().connections(), 1, "{venue}");
    run.stop().await;
}

/// Polls over REST through a rate limit and a server error: every trade arrives, exactly,
/// and nothing fails to parse.
async fn polling_survives_rate_limits_and_errors(venue: &str) {
    let row = row(venue);
    let mock = start(venue, None).await;
    let cfg = mock.exchange_config(venue, Transport::Rest);
    let published = mock.publish(6);
    mock.fail_rest(1, 429);
    mock.fail_rest(1, 503);
    // Every copy comes over REST, so repeats are alike even where REST is coarse.
    let mut run = run(venue, &cfg, &mock, true);
    run.until_all(&published).await;
    let more = mock.publish(6);
    run.until_all(&more).await;
    run.assert_exactly_to(&mock.published(), row.rest_precision);
    let requests = mock.http_server().requests().len();
    assert!(requests >= 4, "{venue}: {requests} requests");
    let stats = run.stop().await;
    assert_eq!(
        ExchangeStats::get(&stats.parse_errors),
        0,
        "{venue}: {stats:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The table itself

/// A check is stamped for a venue exactly when the venue's row says it applies, and every
/// row is a registered venue: neither list can drift from the other.
#[test]
fn every_check_runs_exactly_where_its_row_says() {
    let registry = registry();
    for row in ROWS {
        assert!(
            registry.exchange(row.name).is_some(),
            "{} is not registered",
            row.name
        );
    }
    for (check, stamped) in STAMPED {
        for row in ROWS {
            let exempt = exemption(check, row);
            let is_stamped = stamped.contains(&row.name);
            assert_eq!(
                is_stamped,
                exempt.is_none(),
                "{check} for {}: stamped {is_stamped}, row says {exempt:?}",
                row.name
            );
        }
        for venue in *stamped {
            assert!(
                ROWS.iter().any(|r| r.name == *venue),
                "{check}: {venue} has no row"
            );
        }
    }
}

/// The venue folders of `feeder-exchanges/src`: each folder whose `mod.rs` implements a
/// stream or poll venue.
fn venue_folders() -> BTreeSet<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut venues = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Ok(module) = std::fs::read_to_string(path.join("mod.rs")) else {
            continue;
        };
        if module.contains("impl StreamVenue for") || module.contains("impl PollVenue for") {
            venues.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    venues
}

/// Each venue folder is registered under its name, has a mock and a row in the tables of
/// these tests, and has stored payloads for each transport it offers: adding a folder and
/// forgetting any of these fails here.
#[tokio::test]
async fn every_venue_folder_is_registered_mocked_and_has_payloads() {
    let venues = venue_folders();
    assert!(venues.len() >= 9, "{venues:?}");
    let registry = registry();
    for venue in &venues {
        let factory = registry
            .exchange(venue)
            .unwrap_or_else(|| panic!("{venue}: not in feeder_exchanges::register"));
        let mock = mock::start(venue, None).await;
        assert!(
            mock.is_some(),
            "{venue}: no mock (feeder_testkit::venues, tests/support/mock.rs)"
        );
        assert!(
            ROWS.iter().any(|r| r.name == venue),
            "{venue}: no row in the driver table"
        );
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("test_data")
            .join(venue);
        let files: Vec<String> = std::fs::read_dir(&data)
            .unwrap_or_else(|e| panic!("{venue}: no stored payloads in {}: {e}", data.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for transport in factory.transports() {
            let prefix = match transport {
                Transport::Websocket => "ws_",
                Transport::Rest => "rest_",
            };
            assert!(
                files.iter().any(|f| f.starts_with(prefix)),
                "{venue}: no stored {prefix}* payload in {}",
                data.display()
            );
        }
    }
    // And nothing registered lacks a folder.
    for (name, _) in registry.exchanges() {
        assert!(
            venues.contains(name),
            "{name} is registered but has no folder"
        );
    }
}
