//! The mock venues against a plain WebSocket / HTTP client and the real parsers of
//! `feeder-exchanges`: what the mocks send must parse back to exactly what they published,
//! and their control messages must mean what the venues' do.
//!
//! Each venue is a type implementing [`Venue`]: its mock, its parser and a [`Row`] that says
//! what differs (opening frames, batching, REST paths and bounds, quirks). Each check is one
//! generic function, stamped into one test per venue by [`per_venue!`], so that a failure
//! names the check and the venue (`stream_round_trip_is_exact::kraken`). A venue a check
//! does not apply to says why in its row, and [`every_check_runs_exactly_where_its_row_says`]
//! keeps the stamped lists and the rows in step.

mod support;

use std::collections::BTreeSet;
use std::ops::Deref;
use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, PollRequest, PollVenue, StreamVenue, Transport, WsMessage,
};
use feeder_core::model::{Symbol, Timestamp, Trade, TradeId};
use feeder_core::ParseError;
use feeder_exchanges::binance::BinanceVenue;
use feeder_exchanges::bitfinex::BitfinexVenue;
use feeder_exchanges::bitstamp::BitstampVenue;
use feeder_exchanges::bybit::BybitVenue;
use feeder_exchanges::coinbase::CoinbaseVenue;
use feeder_exchanges::gemini::GeminiVenue;
use feeder_exchanges::huobi::HuobiVenue;
use feeder_exchanges::kraken::KrakenVenue;
use feeder_exchanges::okx::OkxVenue;
use feeder_testkit::http::Request;
use feeder_testkit::venues::{
    MockBinance, MockBitfinex, MockBitstamp, MockBybit, MockCoinbase, MockConfig, MockGemini,
    MockHuobi, MockKraken, MockOkx, MockTrade, MockVenue, WsFault,
};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use support::*;

// ---------------------------------------------------------------------------------------
// The table

/// Whether a check applies to a venue, and if not, why.
#[derive(Clone, Copy, Debug)]
enum Applies<T> {
    /// It does, with what the venue needs for it.
    Yes(T),
    /// It does not, for this reason.
    No(&'static str),
}

impl<T: Copy> Applies<T> {
    /// What the row gives for `check`, stamped for `venue`.
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
    /// This many or more, where the number depends on how pages fall.
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

/// In what order a stream's trades arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// In the order published.
    Published,
    /// In the order published within each symbol: trades of one symbol share pushes, so
    /// symbols interleave by push, not by trade.
    PerSymbol,
}

/// Frames that come with each streamed trade and carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Companion {
    /// None.
    Nothing,
    /// Bitfinex: each `te` is followed by a `tu` copy of the same trade, to be skipped.
    CopyAfter,
    /// Gemini: each trade is preceded by the book update it caused, to be skipped.
    BookUpdateBefore,
}

/// The order of a REST page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageOrder {
    /// Newest first.
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// How close a parsed trade comes to its ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    /// To the venue's full precision.
    Exact,
    /// To the second: all a venue whose REST API writes whole seconds gives.
    Second,
}

impl Precision {
    fn matches(self, p: &MockTrade, t: &Trade) -> bool {
        match self {
            Precision::Exact => p.matches(t),
            Precision::Second => p.matches_to_the_second(t),
        }
    }
}

/// The first REST page of the first symbol, asked with no cursor.
#[derive(Clone, Copy, Debug)]
struct FirstPage {
    /// Trades published (round-robin over two symbols) before asking.
    publish: usize,
    /// How many of the first symbol's newest trades the page holds.
    holds: usize,
    /// Their order.
    order: PageOrder,
    /// Their precision.
    precision: Precision,
    /// Whether the page hands on a cursor to an older one.
    older: bool,
    /// The request's path.
    path: &'static str,
    /// Query parameters the request must carry.
    query: &'static [(&'static str, &'static str)],
    /// Query parameters it must not carry.
    absent: &'static [&'static str],
}

/// Paging back through the first symbol's whole history by the venue's cursors.
#[derive(Clone, Copy, Debug)]
struct PagingBack {
    /// Trades published (round-robin over two symbols).
    publish: usize,
    /// Pages asked.
    pages: usize,
    /// Whether the last one says there is nothing older (`older: None`); where it does not,
    /// its cursor would only repeat trades already had.
    ends: bool,
    /// Whether pages may overlap at their edges; where they may not, no trade comes twice.
    overlap: bool,
    /// Whether the pages, one after the other, give the trades newest first.
    newest_first: bool,
    /// What the second request must be, given the cursor the first page handed on and the
    /// first symbol's trades, newest first.
    second: fn(&Request, &str, &[MockTrade]),
}

/// Walking forward from a trade, the way the backfill does.
#[derive(Clone, Copy, Debug)]
struct WalkForward {
    /// Trades published, round-robin over the mock's two symbols or all of the first one,
    /// in runs of `fills` sharing a time.
    publish: usize,
    /// Whether the mock lists both its symbols.
    two_symbols: bool,
    /// See [`MockConfig::fills_per_instant`].
    fills: u64,
    /// The index of the trade to walk from.
    from: usize,
    /// Requests the walk takes, the last one bringing nothing new.
    pages: Count,
    /// What every request must carry.
    every: fn(&Request) -> bool,
    /// What the first requests must carry, given the trade walked from.
    first: fn(&[Request], &MockTrade),
}

/// A request the venue refuses or bounds, and what it answers.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// This status.
    Status(u16),
    /// Anything but 200.
    NotOk,
    /// A body that parses (`true`) or is an error of the venue's (`false`).
    Parses(bool),
}

/// What differs between venues, for the mock round trips.
#[derive(Clone, Copy, Debug)]
struct Row {
    /// The registry name.
    name: &'static str,
    /// The first of the mock's two default symbols.
    symbol: &'static str,
    /// Frames that open a connection on a venue with no trades yet, acknowledgements,
    /// greetings and (empty) snapshots alike.
    opening: &'static [Frame],
    /// Whether frames are gzip-compressed.
    gzip: bool,
    /// Subscriptions the mock counts per connection.
    subs: usize,
    /// The WebSocket path of the first connection, where the URL names the streams.
    ws_path: Applies<&'static str>,
    order: Order,
    companion: Companion,
    /// Whether a push may carry several trades.
    batches: bool,
    /// Whether our ping is answered, and with what text if it is checked.
    answers_our_ping: Applies<Option<&'static str>>,
    /// Whether `heartbeat()` on the mock sends one heartbeat per subscribed channel.
    heartbeat_on_demand: Applies<()>,
    /// Whether the venue asks its clients to reconnect.
    asks_to_reconnect: Applies<()>,
    /// A subscribe message the venue refuses, and how its error starts.
    bad_subscribe: Applies<(&'static str, &'static str)>,
    /// A subscribe message taken on a live connection: venues whose URL names the streams.
    live_subscribe: Applies<&'static str>,
    /// Whether the server pings at the protocol level, answered by the client library.
    protocol_ping: Applies<()>,
    /// A new connection starts with recent trades: at most this many per symbol (`None`:
    /// all of a short history).
    replays: Applies<Option<usize>>,
    /// Data frames a replay adds to the opening, per symbol that has trades.
    replay_frames: usize,
    /// Whether the venue's own heartbeats come on their own, every `heartbeat_every`.
    timed_heartbeats: Applies<()>,
    first_page: FirstPage,
    paging_back: Applies<PagingBack>,
    walk_forward: Applies<WalkForward>,
    /// Requests out of the venue's bounds, by path and query, and their answers.
    bounds: Applies<(&'static str, &'static [(&'static str, Answer)])>,
}

/// A bundled venue: its mock, its parser and its row.
trait Venue {
    /// The mock.
    type Mock: Deref<Target = MockVenue>;
    /// The parser of `feeder-exchanges`.
    type Parser: StreamVenue + PollVenue;
    /// What differs.
    const ROW: Row;

    /// Starts the mock with `cfg`.
    async fn start(cfg: MockConfig) -> Self::Mock;

    /// The parser for `cfg`.
    fn parser(cfg: &ExchangeConfig) -> Self::Parser;

    /// Sends the venue's heartbeat on every live connection.
    fn heartbeat(_: &Self::Mock) {
        unreachable!("no heartbeat on demand")
    }

    /// Asks every live connection to reconnect.
    fn ask_to_reconnect(_: &Self::Mock) {
        unreachable!("no reconnect request")
    }

    /// Sends a protocol ping on every live connection.
    fn protocol_ping(_: &Self::Mock) {
        unreachable!("no protocol ping")
    }

    /// Venue-specific checks of a streamed round trip: what was published and parsed.
    fn round_trip_quirks(_published: &[MockTrade], _trades: &[Trade]) {}
}

const NO_OWN_PING: &str =
    "the client keeps the connection alive with protocol pings, which the WebSocket library answers";
const NO_HEARTBEAT_ON_DEMAND: &str =
    "the mock has no heartbeat to send on demand (timed ones, if any, are checked apart)";
const NO_RECONNECT: &str = "the venue has no message that asks its clients to reconnect";
const NO_LIVE_SUBSCRIBE: &str =
    "the subscribe message is the opening itself, checked with the opening frames";
const NO_PROTOCOL_PING: &str = "the server does not ping at the protocol level";
const NO_REPLAY: &str = "a new connection starts with live trades only";
const NO_TIMED_HEARTBEAT: &str = "the venue sends no heartbeat of its own on a timer";
const NO_PAGING_BACK: &str = "its REST API gives one page of the newest trades, and no cursor back";
const NO_WALK: &str = "its REST API gives only the newest trades, never the page after a trade";
const NO_BOUNDS: &str = "the mock takes no parameter a client could set out of bounds";

struct Bitstamp;
impl Venue for Bitstamp {
    type Mock = MockBitstamp;
    type Parser = BitstampVenue;
    const ROW: Row = Row {
        name: "bitstamp",
        symbol: "BTC-USD",
        opening: &[Frame::Ack, Frame::Ack],
        gzip: false,
        subs: 2,
        ws_path: Applies::No("subscribes by message"),
        order: Order::Published,
        companion: Companion::Nothing,
        batches: false,
        answers_our_ping: Applies::Yes(None),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::Yes(()),
        bad_subscribe: Applies::Yes((
            r#"{"event":"bts:subscribe","data":{"channel":"live_trades_xyzabc"}}"#,
            "",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::No(NO_REPLAY),
        replay_frames: 0,
        timed_heartbeats: Applies::No(NO_TIMED_HEARTBEAT),
        first_page: FirstPage {
            publish: 30,
            holds: 15,
            order: PageOrder::NewestFirst,
            // Times to the second: all Bitstamp's REST API gives.
            precision: Precision::Second,
            older: false,
            path: "/api/v2/transactions/btcusd/",
            query: &[("time", "minute")],
            absent: &[],
        },
        paging_back: Applies::No(NO_PAGING_BACK),
        walk_forward: Applies::No(NO_WALK),
        bounds: Applies::No(NO_BOUNDS),
    };
    async fn start(cfg: MockConfig) -> MockBitstamp {
        MockBitstamp::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> BitstampVenue {
        BitstampVenue::new(cfg).unwrap()
    }
    fn ask_to_reconnect(m: &MockBitstamp) {
        m.request_reconnect();
    }
}

struct Coinbase;
impl Venue for Coinbase {
    type Mock = MockCoinbase;
    type Parser = CoinbaseVenue;
    const ROW: Row = Row {
        name: "coinbase",
        symbol: "BTC-USD",
        opening: &[Frame::Ack],
        gzip: false,
        subs: 1,
        ws_path: Applies::No("subscribes by message"),
        order: Order::Published,
        companion: Companion::Nothing,
        batches: false,
        answers_our_ping: Applies::No(NO_OWN_PING),
        heartbeat_on_demand: Applies::No(
            "its heartbeat names the newest trade: see heartbeat_names_the_newest_trade",
        ),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        bad_subscribe: Applies::Yes((
            r#"{"type":"subscribe","product_ids":["XYZ-ABC"],"channels":["matches"]}"#,
            "",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        // Each product starts with its latest trade, as a `last_match`.
        replays: Applies::Yes(Some(1)),
        replay_frames: 1,
        timed_heartbeats: Applies::No(
            "its heartbeats name the newest trade, so they parse as gaps: see heartbeat_names_the_newest_trade",
        ),
        first_page: FirstPage {
            publish: 250,
            holds: 100,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            older: true,
            path: "/products/BTC-USD/trades",
            query: &[("limit", "100")],
            absent: &["after"],
        },
        paging_back: Applies::Yes(PagingBack {
            publish: 250,
            // 100 + 25 + an empty last page.
            pages: 3,
            ends: true,
            overlap: false,
            newest_first: true,
            second: |r, _, newest_first| {
                assert_eq!(
                    r.query_param("after"),
                    Some(newest_first[99].trade_id.to_string().as_str())
                );
            },
        }),
        walk_forward: Applies::Yes(WalkForward {
            publish: 2_400,
            two_symbols: true,
            fills: 1,
            from: 10,
            // 1194 trades of the symbol after it, in pages of 1000, then nothing new.
            pages: Count::Exactly(3),
            every: |r| r.query_param("limit") == Some("1000"),
            first: |r, from| {
                assert_eq!(
                    r[0].query_param("before"),
                    Some(from.trade_id.to_string().as_str())
                );
            },
        }),
        bounds: Applies::No(NO_BOUNDS),
    };
    async fn start(cfg: MockConfig) -> MockCoinbase {
        MockCoinbase::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> CoinbaseVenue {
        CoinbaseVenue::new(cfg).unwrap()
    }
}

struct Bitfinex;
impl Venue for Bitfinex {
    type Mock = MockBitfinex;
    type Parser = BitfinexVenue;
    const ROW: Row = Row {
        name: "bitfinex",
        symbol: "BTC-USD",
        // The greeting, then per symbol an acknowledgement and an (empty) snapshot.
        opening: &[Frame::Ack, Frame::Ack, Frame::Ack, Frame::Data, Frame::Data],
        gzip: false,
        subs: 2,
        ws_path: Applies::No("subscribes by message"),
        order: Order::Published,
        companion: Companion::CopyAfter,
        batches: false,
        answers_our_ping: Applies::Yes(None),
        heartbeat_on_demand: Applies::Yes(()),
        asks_to_reconnect: Applies::Yes(()),
        bad_subscribe: Applies::Yes((
            r#"{"event":"subscribe","channel":"trades","symbol":"tXYZABC"}"#,
            "10300",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        // Each subscription's snapshot holds the symbol's recent trades.
        replays: Applies::Yes(None),
        replay_frames: 0,
        timed_heartbeats: Applies::No(
            "its heartbeats are checked on demand, one per channel: see heartbeat_on_demand",
        ),
        first_page: FirstPage {
            publish: 30,
            holds: 15,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            // 15 trades are less than a page.
            older: false,
            path: "/v2/trades/tBTCUSD/hist",
            query: &[("limit", "1000"), ("sort", "-1")],
            absent: &["start"],
        },
        paging_back: Applies::No(
            "it pages back by `end`, a time, not by a cursor: see end_bounds_a_page_from_above",
        ),
        walk_forward: Applies::Yes(WalkForward {
            // Runs of seven trades share a millisecond; 10000 is not a multiple of 7, so
            // page boundaries fall inside milliseconds, as does the cursor.
            publish: 25_000,
            two_symbols: false,
            fills: 7,
            from: 9,
            pages: Count::AtLeast(4),
            every: |r| {
                r.query_param("sort") == Some("1") && r.query_param("limit") == Some("10000")
            },
            first: |r, from| {
                let ms = (from.time.unix_nanos() / 1_000_000).to_string();
                assert_eq!(r[0].query_param("start"), Some(ms.as_str()));
            },
        }),
        // At most 10000 a page.
        bounds: Applies::Yes((
            "/v2/trades/tBTCUSD/hist",
            &[("limit=10001&sort=1", Answer::NotOk)],
        )),
    };
    async fn start(cfg: MockConfig) -> MockBitfinex {
        MockBitfinex::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> BitfinexVenue {
        BitfinexVenue::new(cfg).unwrap()
    }
    fn heartbeat(m: &MockBitfinex) {
        m.heartbeat();
    }
    fn ask_to_reconnect(m: &MockBitfinex) {
        m.request_reconnect();
    }
}

struct Gemini;
impl Venue for Gemini {
    type Mock = MockGemini;
    type Parser = GeminiVenue;
    const ROW: Row = Row {
        name: "gemini",
        symbol: "BTC-USD",
        // Per symbol its book and latest trades (none yet).
        opening: &[Frame::Data, Frame::Data],
        gzip: false,
        subs: 1,
        ws_path: Applies::No("subscribes by message"),
        order: Order::Published,
        companion: Companion::BookUpdateBefore,
        batches: false,
        answers_our_ping: Applies::No(NO_OWN_PING),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        bad_subscribe: Applies::Yes((
            r#"{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["XYZABC"]}]}"#,
            "InvalidSymbol",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::Yes(None),
        replay_frames: 0,
        timed_heartbeats: Applies::Yes(()),
        first_page: FirstPage {
            publish: 30,
            holds: 15,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            older: false,
            path: "/v1/trades/btcusd",
            query: &[("limit_trades", "500")],
            absent: &["since_tid"],
        },
        paging_back: Applies::No(
            "a full page hands on its newest id, a cursor forward: see walk_forward",
        ),
        walk_forward: Applies::Yes(WalkForward {
            publish: 2_400,
            two_symbols: true,
            fills: 1,
            from: 10,
            // 1194 trades of the symbol after it: 500 + 500 + 194, then nothing new.
            pages: Count::Exactly(4),
            every: |r| r.query_param("limit_trades") == Some("500"),
            first: |r, from| {
                let tid = from.trade_id.to_string();
                assert_eq!(r[0].query_param("since_tid"), Some(tid.as_str()));
            },
        }),
        // At most 500 a page.
        bounds: Applies::Yes((
            "/v1/trades/btcusd",
            &[("limit_trades=501", Answer::Status(400))],
        )),
    };
    async fn start(cfg: MockConfig) -> MockGemini {
        MockGemini::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> GeminiVenue {
        GeminiVenue::new(cfg).unwrap()
    }
    fn round_trip_quirks(published: &[MockTrade], _: &[Trade]) {
        // The mock writes some ids as strings, as Gemini does.
        assert!(published.iter().any(|t| t.trade_id % 5 == 0), "string ids");
    }
}

struct Huobi;
impl Venue for Huobi {
    type Mock = MockHuobi;
    type Parser = HuobiVenue;
    const ROW: Row = Row {
        name: "huobi",
        symbol: "BTC-USD",
        opening: &[Frame::Ack, Frame::Ack],
        gzip: true,
        subs: 2,
        ws_path: Applies::No("subscribes by message"),
        order: Order::Published,
        companion: Companion::Nothing,
        batches: false,
        answers_our_ping: Applies::No(
            "the venue pings the client, not the other way round: see venue_ping_is_answered_with_its_number",
        ),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        bad_subscribe: Applies::Yes((
            r#"{"sub":"market.xyzabc.trade.detail","id":"x"}"#,
            "bad-request",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::No(NO_REPLAY),
        replay_frames: 0,
        timed_heartbeats: Applies::No(
            "its timed message is a ping to answer: see venue_ping_is_answered_with_its_number",
        ),
        first_page: FirstPage {
            publish: 30,
            holds: 15,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            older: false,
            path: "/market/history/trade",
            query: &[("symbol", "btcusd"), ("size", "2000")],
            absent: &[],
        },
        paging_back: Applies::No(NO_PAGING_BACK),
        walk_forward: Applies::No(NO_WALK),
        bounds: Applies::No(NO_BOUNDS),
    };
    async fn start(cfg: MockConfig) -> MockHuobi {
        MockHuobi::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> HuobiVenue {
        HuobiVenue::new(cfg).unwrap()
    }
}

struct Binance;
impl Venue for Binance {
    type Mock = MockBinance;
    type Parser = BinanceVenue;
    const ROW: Row = Row {
        name: "binance",
        symbol: "BTC-USDT",
        // The URL names the streams: no message, no acknowledgement.
        opening: &[],
        gzip: false,
        subs: 1,
        ws_path: Applies::Yes("/stream?streams=btcusdt@trade/ethusdt@trade"),
        order: Order::Published,
        companion: Companion::Nothing,
        batches: false,
        answers_our_ping: Applies::No(NO_OWN_PING),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::Yes(()),
        bad_subscribe: Applies::Yes((
            r#"{"method":"SUBSCRIBE","params":["xyzusdt@trade"],"id":8}"#,
            "",
        )),
        live_subscribe: Applies::Yes(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7}"#),
        protocol_ping: Applies::Yes(()),
        replays: Applies::No(NO_REPLAY),
        replay_frames: 0,
        timed_heartbeats: Applies::No(NO_TIMED_HEARTBEAT),
        first_page: FirstPage {
            publish: 2_500,
            holds: 1_000,
            order: PageOrder::OldestFirst,
            precision: Precision::Exact,
            older: true,
            path: "/api/v3/trades",
            query: &[("symbol", "BTCUSDT"), ("limit", "1000")],
            absent: &["fromId"],
        },
        paging_back: Applies::Yes(PagingBack {
            publish: 2_500,
            pages: 2,
            // The history starts within the second page; its older cursor would only
            // repeat it.
            ends: false,
            overlap: true,
            newest_first: false,
            second: |r, older, _| {
                assert_eq!(r.path, "/api/v3/historicalTrades");
                assert_eq!(r.query_param("fromId"), Some(older));
            },
        }),
        walk_forward: Applies::Yes(WalkForward {
            publish: 5_000,
            two_symbols: true,
            fills: 1,
            from: 10,
            // 2494 trades of the symbol after it: three pages, and one that brings nothing new.
            pages: Count::Exactly(4),
            every: |r| {
                r.path == "/api/v3/historicalTrades" && r.query_param("limit") == Some("1000")
            },
            first: |r, from| {
                let first_id = (from.trade_id + 1).to_string();
                assert_eq!(r[0].query_param("fromId"), Some(first_id.as_str()));
            },
        }),
        // `fromId` is a number, `limit` at most 1000.
        bounds: Applies::Yes((
            "/api/v3/historicalTrades",
            &[
                ("symbol=BTCUSDT&limit=1001", Answer::Status(400)),
                ("symbol=BTCUSDT&fromId=x", Answer::Status(400)),
                ("symbol=BTCUSDT&limit=1000&fromId=1", Answer::Status(200)),
            ],
        )),
    };
    async fn start(cfg: MockConfig) -> MockBinance {
        MockBinance::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> BinanceVenue {
        BinanceVenue::new(cfg).unwrap()
    }
    fn ask_to_reconnect(m: &MockBinance) {
        m.server_shutdown();
    }
    fn protocol_ping(m: &MockBinance) {
        m.ping();
    }
    fn round_trip_quirks(published: &[MockTrade], _: &[Trade]) {
        // Binance writes milliseconds.
        assert!(published.iter().all(|t| t.time.digits() == 3));
    }
}

struct Bybit;
impl Venue for Bybit {
    type Mock = MockBybit;
    type Parser = BybitVenue;
    const ROW: Row = Row {
        name: "bybit",
        symbol: "BTC-USDT",
        opening: &[Frame::Ack],
        gzip: false,
        subs: 1,
        ws_path: Applies::No("subscribes by message"),
        order: Order::PerSymbol,
        companion: Companion::Nothing,
        batches: true,
        answers_our_ping: Applies::Yes(None),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        bad_subscribe: Applies::Yes((r#"{"op":"subscribe","args":["publicTrade.XYZUSDT"]}"#, "")),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::No(NO_REPLAY),
        replay_frames: 0,
        timed_heartbeats: Applies::No(NO_TIMED_HEARTBEAT),
        first_page: FirstPage {
            publish: 200,
            // The newest sixty.
            holds: 60,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            older: false,
            path: "/v5/market/recent-trade",
            query: &[("category", "spot"), ("limit", "60")],
            absent: &[],
        },
        paging_back: Applies::No(NO_PAGING_BACK),
        walk_forward: Applies::No(NO_WALK),
        bounds: Applies::No(NO_BOUNDS),
    };
    async fn start(cfg: MockConfig) -> MockBybit {
        MockBybit::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> BybitVenue {
        BybitVenue::new(cfg).unwrap()
    }
    fn round_trip_quirks(_: &[MockTrade], trades: &[Trade]) {
        // Bybit's ids are 19-digit strings.
        assert!(trades.iter().all(|t| t.trade_id.as_str().len() == 19));
    }
}

struct Okx;
impl Venue for Okx {
    type Mock = MockOkx;
    type Parser = OkxVenue;
    const ROW: Row = Row {
        name: "okx",
        symbol: "BTC-USDT",
        // One acknowledgement per channel.
        opening: &[Frame::Ack, Frame::Ack],
        gzip: false,
        subs: 1,
        ws_path: Applies::No("subscribes by message"),
        order: Order::PerSymbol,
        companion: Companion::Nothing,
        batches: true,
        // The bare-text ping is answered with a bare-text pong.
        answers_our_ping: Applies::Yes(Some("pong")),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::Yes(()),
        bad_subscribe: Applies::Yes((
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"XYZ-USDT"}]}"#,
            "",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::No(NO_REPLAY),
        replay_frames: 0,
        timed_heartbeats: Applies::No(NO_TIMED_HEARTBEAT),
        first_page: FirstPage {
            publish: 500,
            holds: 100,
            order: PageOrder::NewestFirst,
            precision: Precision::Exact,
            older: true,
            path: "/api/v5/market/trades",
            query: &[("instId", "BTC-USDT")],
            absent: &[],
        },
        paging_back: Applies::Yes(PagingBack {
            publish: 500,
            // 100 + 100 + 50 + an empty last page.
            pages: 4,
            ends: true,
            overlap: false,
            newest_first: false,
            second: |r, _, _| {
                assert_eq!(r.path, "/api/v5/market/history-trades");
                assert_eq!(r.query_param("type"), Some("1"));
            },
        }),
        walk_forward: Applies::Yes(WalkForward {
            publish: 500,
            two_symbols: true,
            fills: 1,
            from: 10,
            // 244 trades of the symbol after it: 100 + 100 + 44, then an empty window.
            pages: Count::Exactly(4),
            every: |r| r.query_param("before").is_some() && r.query_param("after").is_some(),
            first: |r, from| {
                let window = |i: usize| {
                    (
                        r[i].query_param("before").map(str::to_owned),
                        r[i].query_param("after").map(str::to_owned),
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
            },
        }),
        bounds: Applies::No(
            "its bound is a meaning, not a limit: see before_alone_gives_the_latest_trades",
        ),
    };
    async fn start(cfg: MockConfig) -> MockOkx {
        MockOkx::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> OkxVenue {
        OkxVenue::new(cfg).unwrap()
    }
    fn ask_to_reconnect(m: &MockOkx) {
        m.notice_upgrade();
    }
}

struct Kraken;
impl Venue for Kraken {
    type Mock = MockKraken;
    type Parser = KrakenVenue;
    const ROW: Row = Row {
        name: "kraken",
        symbol: "BTC-USD",
        // `status`, then per symbol an acknowledgement and a snapshot of its recent trades.
        opening: &[
            Frame::Ignored,
            Frame::Ack,
            Frame::Ack,
            Frame::Data,
            Frame::Data,
        ],
        gzip: false,
        subs: 1,
        ws_path: Applies::No("subscribes by message"),
        order: Order::PerSymbol,
        companion: Companion::Nothing,
        batches: true,
        answers_our_ping: Applies::Yes(None),
        heartbeat_on_demand: Applies::No(NO_HEARTBEAT_ON_DEMAND),
        asks_to_reconnect: Applies::No(NO_RECONNECT),
        bad_subscribe: Applies::Yes((
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["XYZ/USD"]}}"#,
            "",
        )),
        live_subscribe: Applies::No(NO_LIVE_SUBSCRIBE),
        protocol_ping: Applies::No(NO_PROTOCOL_PING),
        replays: Applies::Yes(None),
        replay_frames: 0,
        timed_heartbeats: Applies::Yes(()),
        first_page: FirstPage {
            publish: 2_400,
            // The newest 1000, oldest first, with exact times.
            holds: 1_000,
            order: PageOrder::OldestFirst,
            precision: Precision::Exact,
            // `last`: where the next poll starts.
            older: true,
            path: "/0/public/Trades",
            query: &[("pair", "XBTUSD")],
            absent: &["since"],
        },
        paging_back: Applies::No(
            "it pages forward from `since`, handing on `last`: see since_and_last_walk_forward",
        ),
        walk_forward: Applies::Yes(WalkForward {
            // Fills of one taker order share a time: runs of seven, so that the cursor and
            // the page boundaries (1000 is not a multiple of 7) fall inside instants.
            publish: 3_000,
            two_symbols: false,
            fills: 7,
            from: 9,
            pages: Count::Exactly(5),
            every: |r| r.query_param("count") == Some("1000"),
            first: |_, _| {},
        }),
        // `count` from 1 to 1000.
        bounds: Applies::Yes((
            "/0/public/Trades",
            &[
                ("pair=XBTUSD&count=0", Answer::Parses(false)),
                ("pair=XBTUSD&count=1", Answer::Parses(true)),
                ("pair=XBTUSD&count=1000", Answer::Parses(true)),
                ("pair=XBTUSD&count=1001", Answer::Parses(false)),
            ],
        )),
    };
    async fn start(cfg: MockConfig) -> MockKraken {
        MockKraken::start_with(cfg).await.unwrap()
    }
    fn parser(cfg: &ExchangeConfig) -> KrakenVenue {
        KrakenVenue::new(cfg).unwrap()
    }
}

/// Every row, for the checks of the table itself.
const ROWS: &[Row] = &[
    Bitstamp::ROW,
    Coinbase::ROW,
    Bitfinex::ROW,
    Gemini::ROW,
    Huobi::ROW,
    Binance::ROW,
    Bybit::ROW,
    Okx::ROW,
    Kraken::ROW,
];

/// Why `check` does not apply to `row`, or `None` when it does: the one place that ties a
/// check's name to the field of the row it reads.
fn exemption(check: &str, row: &Row) -> Option<&'static str> {
    let only = |venue: &str, why: &'static str| (row.name != venue).then_some(why);
    match check {
        "stream_round_trip_is_exact"
        | "control_frames_mean_what_the_venues_say"
        | "connection_ends_after_n_trades_and_the_next_one_streams_on"
        | "malformed_frame_is_one_error_among_exact_trades"
        | "stalled_connection_is_silent_even_to_pings"
        | "rest_failures_are_injected_then_clear"
        | "rest_serves_the_newest_trades"
        | "same_seed_same_trades"
        | "generator_publishes_at_its_rate" => None,
        "a_connection_opens_with_the_recent_trades" => row.replays.exempt(),
        "heartbeats_arrive_on_their_own" => row.timed_heartbeats.exempt(),
        "rest_pages_back_through_the_history" => row.paging_back.exempt(),
        "history_walks_forward_from_a_trade" => row.walk_forward.exempt(),
        "rest_refuses_what_the_venue_refuses" => row.bounds.exempt(),
        "heartbeat_names_the_newest_trade" => {
            only("coinbase", "only Coinbase's heartbeat names a trade")
        }
        "venue_ping_is_answered_with_its_number" => only(
            "huobi",
            "only Huobi pings its clients with a number to send back",
        ),
        "tether_is_subscribed_by_the_venue_name_and_written_canonically" => only(
            "bitfinex",
            "only Bitfinex spells Tether differently (`UST`) from the canonical `USDT`",
        ),
        "end_bounds_a_page_from_above" => {
            only("bitfinex", "only Bitfinex pages back by a time, `end`")
        }
        "serves_a_week_of_trades_and_no_more" => only(
            "gemini",
            "only Gemini's REST history has a reach in time (seven days)",
        ),
        "polls_the_trades_after_the_last_seen" => only(
            "gemini",
            "only Gemini's poll from a last-seen trade asks for the trades after it (`since_tid`); Kraken's is since_and_last_walk_forward",
        ),
        "since_and_last_walk_forward" => {
            only("kraken", "only Kraken hands on `last` for the next `since`")
        }
        "before_alone_gives_the_latest_trades" => only(
            "okx",
            "only OKX has a window parameter that means nothing alone",
        ),
        other => panic!("{other} is not a check of this table"),
    }
}

/// The type of a venue, from its registry name.
macro_rules! venue_type {
    (bitstamp) => {
        super::Bitstamp
    };
    (coinbase) => {
        super::Coinbase
    };
    (bitfinex) => {
        super::Bitfinex
    };
    (gemini) => {
        super::Gemini
    };
    (huobi) => {
        super::Huobi
    };
    (binance) => {
        super::Binance
    };
    (bybit) => {
        super::Bybit
    };
    (okx) => {
        super::Okx
    };
    (kraken) => {
        super::Kraken
    };
}

/// Stamps one test per venue for each check: `check: [venue, ...]` becomes a module `check`
/// with one `#[tokio::test]` per venue that runs `check::<Venue>()`, and the list of what
/// was stamped, [`STAMPED`].
macro_rules! per_venue {
    ($($check:ident: [$($venue:ident),* $(,)?];)*) => {
        $(
            mod $check {
                $(
                    #[tokio::test]
                    async fn $venue() {
                        super::$check::<venue_type!($venue)>().await;
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
    stream_round_trip_is_exact:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    control_frames_mean_what_the_venues_say:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    a_connection_opens_with_the_recent_trades: [coinbase, bitfinex, gemini, kraken];
    connection_ends_after_n_trades_and_the_next_one_streams_on:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    malformed_frame_is_one_error_among_exact_trades:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    stalled_connection_is_silent_even_to_pings:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    heartbeats_arrive_on_their_own: [gemini, kraken];
    heartbeat_names_the_newest_trade: [coinbase];
    venue_ping_is_answered_with_its_number: [huobi];
    tether_is_subscribed_by_the_venue_name_and_written_canonically: [bitfinex];
    rest_failures_are_injected_then_clear:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    rest_serves_the_newest_trades:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    rest_pages_back_through_the_history: [coinbase, binance, okx];
    end_bounds_a_page_from_above: [bitfinex];
    history_walks_forward_from_a_trade: [coinbase, bitfinex, gemini, binance, okx, kraken];
    rest_refuses_what_the_venue_refuses: [bitfinex, gemini, binance, kraken];
    serves_a_week_of_trades_and_no_more: [gemini];
    polls_the_trades_after_the_last_seen: [gemini];
    since_and_last_walk_forward: [kraken];
    before_alone_gives_the_latest_trades: [okx];
    same_seed_same_trades:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
    generator_publishes_at_its_rate:
        [bitstamp, coinbase, bitfinex, gemini, huobi, binance, bybit, okx, kraken];
}

// ---------------------------------------------------------------------------------------
// Helpers

/// The mock's two default symbols for `row`, heartbeats `every`.
fn two_symbols(row: &Row, every: Duration) -> MockConfig {
    let btc = Symbol::parse(row.symbol).unwrap();
    let eth = Symbol::parse(&format!("ETH-{}", btc.quote())).unwrap();
    MockConfig {
        heartbeat_every: every,
        ..MockConfig::with_symbols(&[btc, eth])
    }
}

/// An hour: keeps the venues' timed heartbeats out of a check.
const QUIET: Duration = Duration::from_secs(3_600);

/// Starts `V`'s mock with its two symbols and no timed heartbeats; returns it with its
/// WebSocket config and parser.
async fn quiet<V: Venue>() -> (V::Mock, ExchangeConfig, V::Parser) {
    let mock = V::start(two_symbols(&V::ROW, QUIET)).await;
    let cfg = mock.exchange_config(V::ROW.name, Transport::Websocket);
    let parser = V::parser(&cfg);
    (mock, cfg, parser)
}

/// Parses the next frame, which must carry no trade.
async fn next_control<V: StreamVenue>(venue: &V, ws: &mut Client) -> Result<Frame, ParseError> {
    let f = next_frame(ws).await.expect("stream ended early");
    let mut out = Vec::new();
    let r = venue.parse(&f, Timestamp::now(), &mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&f));
    r
}

/// Reads the frames that open a connection: the row's opening, plus a replay's data frames
/// when `history` holds trades. Returns the trades replayed; checks the frames' kinds and
/// compression.
async fn read_opening<V: Venue>(
    parser: &V::Parser,
    ws: &mut Client,
    history: &[MockTrade],
) -> Vec<Trade> {
    let row = V::ROW;
    let symbols_with_history: BTreeSet<_> = history.iter().map(|t| t.symbol.clone()).collect();
    let extra = match row.replays {
        Applies::Yes(_) => row.replay_frames * symbols_with_history.len(),
        Applies::No(_) => 0,
    };
    let mut kinds = Vec::new();
    let mut trades = Vec::new();
    for _ in 0..row.opening.len() + extra {
        let f = next_frame(ws).await.expect("stream ended in its opening");
        assert_eq!(
            f.starts_with(b"\x1f\x8b"),
            row.gzip,
            "{}: compression",
            row.name
        );
        let kind = parser
            .parse(&f, Timestamp::now(), &mut trades)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", row.name, String::from_utf8_lossy(&f)));
        kinds.push(kind);
    }
    let mut want: Vec<Frame> = row.opening.to_vec();
    want.extend(std::iter::repeat_n(Frame::Data, extra));
    let key = |f: &Frame| format!("{f:?}");
    kinds.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(kinds, want, "{}: the opening", row.name);
    trades
}

/// The trades of `published` a new connection replays under `V`'s row.
fn replayed<V: Venue>(published: &[MockTrade]) -> Vec<MockTrade> {
    let Applies::Yes(per_symbol) = V::ROW.replays else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let symbols: BTreeSet<_> = published.iter().map(|t| t.symbol.clone()).collect();
    for s in symbols {
        let of: Vec<_> = published
            .iter()
            .filter(|t| t.symbol == s)
            .cloned()
            .collect();
        let keep = per_symbol.unwrap_or(of.len()).min(of.len());
        out.extend(of[of.len() - keep..].iter().cloned());
    }
    out
}

/// `trades` are exactly `published`, in the order `order` promises.
fn assert_in_order(name: &str, order: Order, trades: &[Trade], published: &[MockTrade]) {
    match order {
        Order::Published => assert_exact(trades, published),
        Order::PerSymbol => {
            assert_eq!(trades.len(), published.len(), "{name}");
            let symbols: BTreeSet<_> = published.iter().map(|t| t.symbol.clone()).collect();
            for symbol in &symbols {
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
        }
    }
}

/// `trades` are exactly `published`, whatever their order.
fn assert_same_set(name: &str, trades: &[Trade], published: &[MockTrade]) {
    let mut got: Vec<Trade> = trades.to_vec();
    got.sort_by(|a, b| {
        (a.symbol.as_str(), a.trade_id.as_number())
            .cmp(&(b.symbol.as_str(), b.trade_id.as_number()))
    });
    let mut want: Vec<MockTrade> = published.to_vec();
    want.sort_by(|a, b| (a.symbol.as_str(), a.trade_id).cmp(&(b.symbol.as_str(), b.trade_id)));
    assert_eq!(got.len(), want.len(), "{name}: {got:?}");
    for (t, p) in got.iter().zip(&want) {
        assert!(p.matches(t), "{name}: {t:?}\n!=\n{p:?}");
    }
}

/// Reads frames until the stream ends: none may carry a trade.
async fn assert_ends_without_trades<V: StreamVenue>(name: &str, venue: &V, ws: &mut Client) {
    for _ in 0..50 {
        let Some(f) = next_frame(ws).await else {
            return;
        };
        let mut out = Vec::new();
        let _ = venue.parse(&f, Timestamp::now(), &mut out);
        assert!(out.is_empty(), "{name}: a trade after the end");
    }
    panic!("{name}: the connection did not end");
}

/// A GET of `path?query` on the mock's REST API.
fn rest(mock: &MockVenue, path: &str, query: &str) -> HttpRequest {
    let mut url = mock.rest_url().join(path).unwrap();
    url.set_query(Some(query));
    HttpRequest::get(url)
}

// ---------------------------------------------------------------------------------------
// The stream checks

/// Forty trades published on two symbols parse back exactly, in the order the venue
/// keeps, with each companion frame recognized and skipped.
async fn stream_round_trip_is_exact<V: Venue>() {
    let row = V::ROW;
    let (mock, cfg, parser) = quiet::<V>().await;
    let mut ws = connect(&parser, &cfg).await;
    assert!(read_opening::<V>(&parser, &mut ws, &[]).await.is_empty());
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    if let Applies::Yes(path) = row.ws_path {
        assert_eq!(mock.ws_server().paths(), [path], "{}", row.name);
    }

    let published = mock.publish(40);
    assert!(
        published.iter().any(|t| t.amount_text.contains('e')),
        "{}: some amounts in exponent form",
        row.name
    );
    let (trades, frames, data_frames) = read_frames(&parser, &mut ws, 40).await;
    assert_in_order(row.name, row.order, &trades, &published);
    assert_eq!(mock.published(), published, "{}", row.name);
    let companions = match row.companion {
        Companion::Nothing => 0,
        // The copy of the last trade is still on its way.
        Companion::CopyAfter => published.len() - 1,
        Companion::BookUpdateBefore => published.len(),
    };
    assert_eq!(frames.len(), companions, "{}: {frames:?}", row.name);
    assert!(frames.iter().all(|f| *f == Frame::Ignored), "{frames:?}");
    if row.companion == Companion::CopyAfter {
        assert_eq!(
            next_control(&parser, &mut ws).await.unwrap(),
            Frame::Ignored,
            "{}",
            row.name
        );
    }
    if row.batches {
        assert!(
            data_frames < published.len(),
            "{}: some pushes carried several trades",
            row.name
        );
    } else {
        assert_eq!(
            data_frames,
            published.len(),
            "{}: one trade a frame",
            row.name
        );
    }
    V::round_trip_quirks(&published, &trades);
}

/// What the venue's control messages mean: its answers to our ping, its heartbeats, its
/// reconnect requests, its errors for a bad subscription and for a frame that is not its
/// format, and its protocol pings.
async fn control_frames_mean_what_the_venues_say<V: Venue>() {
    let row = V::ROW;
    let name = row.name;
    let (mock, cfg, parser) = quiet::<V>().await;
    let mut ws = connect(&parser, &cfg).await;
    read_opening::<V>(&parser, &mut ws, &[]).await;
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();

    // The server's protocol ping is answered by the client library.
    if let Applies::Yes(()) = row.protocol_ping {
        V::protocol_ping(&mock);
        assert!(
            matches!(next_message(&mut ws).await, Some(Message::Ping(_))),
            "{name}"
        );
    }
    // Our ping is answered, where the client sends one of its own; elsewhere the client
    // pings at the protocol level, or not at all.
    let ping = parser.ping().map(|p| p.message);
    let own = ping.as_ref().filter(|m| !matches!(m, WsMessage::Ping(_)));
    assert_eq!(
        own.is_some(),
        row.answers_our_ping.exempt().is_none(),
        "{name}: whether the client pings at the application level: {ping:?}"
    );
    if let (Some(ping), Applies::Yes(text)) = (own, row.answers_our_ping) {
        send(&mut ws, ping.clone()).await;
        let f = next_frame(&mut ws).await.expect("no answer to our ping");
        if let Some(text) = text {
            assert_eq!(String::from_utf8_lossy(&f), text, "{name}");
        }
        let mut out = Vec::new();
        assert_eq!(
            parser.parse(&f, Timestamp::now(), &mut out).unwrap(),
            Frame::Heartbeat,
            "{name}"
        );
    }
    // The venue's heartbeat, one per channel.
    if let Applies::Yes(()) = row.heartbeat_on_demand {
        V::heartbeat(&mock);
        for _ in 0..cfg.symbols.len() {
            assert_eq!(
                next_control(&parser, &mut ws).await.unwrap(),
                Frame::Heartbeat,
                "{name}"
            );
        }
    }
    // A live subscription is acknowledged.
    if let Applies::Yes(msg) = row.live_subscribe {
        send(&mut ws, WsMessage::Text(msg.into())).await;
        assert_eq!(
            next_control(&parser, &mut ws).await.unwrap(),
            Frame::Ack,
            "{name}"
        );
    }
    // A bad one is the venue's error.
    if let Applies::Yes((msg, prefix)) = row.bad_subscribe {
        send(&mut ws, WsMessage::Text(msg.into())).await;
        let r = next_control(&parser, &mut ws).await;
        assert!(
            matches!(&r, Err(ParseError::Venue(m)) if m.starts_with(prefix)),
            "{name}: {r:?}"
        );
    }
    mock.send_malformed();
    let r = next_control(&parser, &mut ws).await;
    assert!(matches!(r, Err(ParseError::Json(_))), "{name}: {r:?}");
    // Last, as a venue may close the connection after asking for a new one.
    if let Applies::Yes(()) = row.asks_to_reconnect {
        V::ask_to_reconnect(&mock);
        assert_eq!(
            next_control(&parser, &mut ws).await.unwrap(),
            Frame::Reconnect,
            "{name}"
        );
    }
}

/// A connection to a venue with trades already opens with the recent ones (each product's
/// latest on Coinbase, a snapshot elsewhere), exactly, then streams on without repeating
/// them.
async fn a_connection_opens_with_the_recent_trades<V: Venue>() {
    let row = V::ROW;
    row.replays
        .get(row.name, "a_connection_opens_with_the_recent_trades");
    let (mock, cfg, parser) = quiet::<V>().await;
    let before = mock.publish(6);
    let mut ws = connect(&parser, &cfg).await;
    let replay = read_opening::<V>(&parser, &mut ws, &before).await;
    assert_same_set(row.name, &replay, &replayed::<V>(&before));
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let published = mock.publish(10);
    let (trades, _, _) = read_frames(&parser, &mut ws, 10).await;
    assert_in_order(row.name, row.order, &trades, &published);
}

/// The first connection drops after five trades, a second one is closed after three: each
/// gets exactly its trades and ends with no more. A third connection (on Bitfinex, with new
/// channel ids) opens with what its venue replays and streams on exactly.
async fn connection_ends_after_n_trades_and_the_next_one_streams_on<V: Venue>() {
    let row = V::ROW;
    let name = row.name;
    let (mock, cfg, parser) = quiet::<V>().await;
    mock.fault_next_connection(WsFault::DropAfter(5));
    mock.fault_next_connection(WsFault::CloseAfter(3));
    let mut subs = 0;
    for n in [5, 3] {
        let history = mock.published();
        let mut ws = connect(&parser, &cfg).await;
        let replay = read_opening::<V>(&parser, &mut ws, &history).await;
        assert_same_set(name, &replay, &replayed::<V>(&history));
        subs += row.subs;
        mock.wait_subscriptions(subs, WAIT).await.unwrap();
        let published = mock.publish(10);
        let (trades, _, _) = read_frames(&parser, &mut ws, n).await;
        assert_eq!(trades.len(), n, "{name}");
        if row.order == Order::Published {
            assert_exact(&trades, &published[..n]);
        } else {
            for t in &trades {
                let p = published
                    .iter()
                    .find(|p| p.symbol == t.symbol && p.trade_id.to_string() == t.trade_id.as_str())
                    .unwrap_or_else(|| panic!("{name}: {t:?} was not published"));
                assert!(p.matches(t), "{name}: {t:?} != {p:?}");
            }
        }
        assert_ends_without_trades(name, &parser, &mut ws).await;
    }
    assert_eq!(mock.ws_server().connections(), 2, "{name}");

    let history = mock.published();
    let mut ws = connect(&parser, &cfg).await;
    let replay = read_opening::<V>(&parser, &mut ws, &history).await;
    assert_same_set(name, &replay, &replayed::<V>(&history));
    mock.wait_subscriptions(subs + row.subs, WAIT)
        .await
        .unwrap();
    let more = mock.publish(4);
    let (trades, _, _) = read_frames(&parser, &mut ws, 4).await;
    assert_in_order(name, row.order, &trades, &more);
}

/// A malformed frame after two trades is one format error among trades that still parse
/// exactly.
async fn malformed_frame_is_one_error_among_exact_trades<V: Venue>() {
    let row = V::ROW;
    let (mock, cfg, parser) = quiet::<V>().await;
    mock.fault_next_connection(WsFault::MalformedAfter(2));
    let mut ws = connect(&parser, &cfg).await;
    read_opening::<V>(&parser, &mut ws, &[]).await;
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let published = mock.publish(4);
    let mut trades = Vec::new();
    let mut errors = 0;
    // Bounded: four trades, one malformed frame and the companions of each trade.
    for _ in 0..4 * 2 + 1 {
        if trades.len() >= published.len() {
            break;
        }
        let f = next_frame(&mut ws).await.expect("stream ended early");
        match parser.parse(&f, Timestamp::now(), &mut trades) {
            Ok(_) => {}
            Err(ParseError::Json(_)) => errors += 1,
            Err(e) => panic!("{}: {e}", row.name),
        }
    }
    assert_eq!(errors, 1, "{}", row.name);
    assert_in_order(row.name, row.order, &trades, &published);
}

/// A stalled connection sends one trade, then nothing, not even an answer to our ping,
/// with the socket still open.
async fn stalled_connection_is_silent_even_to_pings<V: Venue>() {
    let row = V::ROW;
    let (mock, cfg, parser) = quiet::<V>().await;
    mock.fault_next_connection(WsFault::StallAfter(1));
    let mut ws = connect(&parser, &cfg).await;
    read_opening::<V>(&parser, &mut ws, &[]).await;
    mock.wait_subscriptions(row.subs, WAIT).await.unwrap();
    let published = mock.publish(4);
    let (trades, _, _) = read_frames(&parser, &mut ws, 1).await;
    assert_exact(&trades, &published[..1]);
    if row.companion == Companion::CopyAfter {
        // The copy belongs to the trade already sent: it is the last thing to come.
        assert_eq!(
            next_control(&parser, &mut ws).await.unwrap(),
            Frame::Ignored,
            "{}",
            row.name
        );
    }
    if let Some(ping) = parser.ping() {
        send(&mut ws, ping.message).await;
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(
        quiet.is_err(),
        "{}: a stalled connection sent {quiet:?}",
        row.name
    );
}

/// Gemini's and Kraken's heartbeats come on their own, every `heartbeat_every`.
async fn heartbeats_arrive_on_their_own<V: Venue>() {
    let row = V::ROW;
    row.timed_heartbeats
        .get(row.name, "heartbeats_arrive_on_their_own");
    let mock = V::start(two_symbols(&row, Duration::from_millis(20))).await;
    let cfg = mock.exchange_config(row.name, Transport::Websocket);
    let parser = V::parser(&cfg);
    let mut ws = connect(&parser, &cfg).await;
    let mut heartbeats = 0;
    for _ in 0..40 {
        if heartbeats >= 2 {
            break;
        }
        if next_control(&parser, &mut ws).await.unwrap() == Frame::Heartbeat {
            heartbeats += 1;
        }
    }
    assert_eq!(heartbeats, 2, "{}", row.name);
}

/// Coinbase's heartbeat names the newest trade of each product, ahead of what the stream
/// sent when the stream skipped some; trades published silently count in it too.
async fn heartbeat_names_the_newest_trade<V: Venue>() {
    assert_eq!(V::ROW.name, "coinbase");
    let cfg = two_symbols(&V::ROW, QUIET);
    let mock = MockCoinbase::start_with(cfg).await.unwrap();
    let cfg = mock.exchange_config("coinbase", Transport::Websocket);
    let venue = CoinbaseVenue::new(&cfg).unwrap();
    mock.fault_next_connection(WsFault::SkipAfter { after: 10, skip: 3 });
    let mut ws = connect(&venue, &cfg).await;
    read_opening::<Coinbase>(&venue, &mut ws, &[]).await;
    mock.wait_subscriptions(1, WAIT).await.unwrap();

    let published = mock.publish(20);
    let (trades, frames, _) = read_frames(&venue, &mut ws, 17).await;
    assert!(frames.is_empty(), "{frames:?}");
    let mut sent = published.clone();
    sent.drain(10..13);
    assert_exact(&trades, &sent);

    mock.heartbeat();
    let mut gaps = Vec::new();
    for _ in 0..2 {
        gaps.push(next_control(&venue, &mut ws).await.unwrap());
    }
    for symbol in &cfg.symbols {
        let newest = published
            .iter()
            .rev()
            .find(|t| &t.symbol == symbol)
            .unwrap();
        let want = Frame::Gap {
            symbol: symbol.clone(),
            last_trade_id: TradeId::from_u64(newest.trade_id),
        };
        assert!(gaps.contains(&want), "{gaps:?}");
    }
    // Silent trades are never streamed but count in the heartbeat.
    let silent = mock.publish_silently(2);
    mock.heartbeat();
    let Frame::Gap {
        last_trade_id,
        symbol,
    } = next_control(&venue, &mut ws).await.unwrap()
    else {
        panic!("not a gap")
    };
    let newest = silent.iter().find(|t| t.symbol == symbol).unwrap();
    assert_eq!(last_trade_id.as_str(), newest.trade_id.to_string());
}

/// Huobi's ping is answered with the same number, and the answer reaches the venue.
async fn venue_ping_is_answered_with_its_number<V: Venue>() {
    assert_eq!(V::ROW.name, "huobi");
    let mock = MockHuobi::start_with(two_symbols(&V::ROW, QUIET))
        .await
        .unwrap();
    let cfg = mock.exchange_config("huobi", Transport::Websocket);
    let venue = HuobiVenue::new(&cfg).unwrap();
    let mut ws = connect(&venue, &cfg).await;
    read_opening::<Huobi>(&venue, &mut ws, &[]).await;
    mock.wait_subscriptions(2, WAIT).await.unwrap();
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

/// `BTC-USDT` is Tether on Bitfinex as everywhere: configured as `BTC-USDT`, it is
/// subscribed and requested as `tBTCUST` (Bitfinex calls Tether `UST`) and its trades come
/// out as `BTC-USDT`, on the stream and over REST. The mock lists Bitfinex's names only, so
/// `tBTC:USDT` is refused as Bitfinex refuses it.
async fn tether_is_subscribed_by_the_venue_name_and_written_canonically<V: Venue>() {
    assert_eq!(V::ROW.name, "bitfinex");
    let btc_usdt: Symbol = "BTC-USDT".parse().unwrap();
    let cfg = MockConfig {
        heartbeat_every: QUIET,
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

// ---------------------------------------------------------------------------------------
// The REST checks

/// The mock's REST config and parser for `V`, on its two symbols.
async fn rest_venue<V: Venue>(cfg: MockConfig) -> (V::Mock, ExchangeConfig, V::Parser) {
    let mock = V::start(cfg).await;
    let cfg = mock.exchange_config(V::ROW.name, Transport::Rest);
    let parser = V::parser(&cfg);
    (mock, cfg, parser)
}

/// REST failures are injected in order, a 429 with `Retry-After: 1`, then clear.
async fn rest_failures_are_injected_then_clear<V: Venue>() {
    let name = V::ROW.name;
    let (mock, cfg, parser) = rest_venue::<V>(two_symbols(&V::ROW, QUIET)).await;
    mock.fail_rest(1, 429);
    mock.fail_rest(1, 503);
    let req = parser
        .trades_request(&cfg.symbols[0], PollRequest::default())
        .unwrap();
    let r = get(&req).await;
    assert_eq!(r.status(), 429, "{name}");
    assert_eq!(r.headers().get("retry-after").unwrap(), "1", "{name}");
    assert_eq!(get(&req).await.status(), 503, "{name}");
    assert_eq!(get(&req).await.status(), 200, "{name}");
}

/// The first page, asked with no cursor, holds the first symbol's newest trades, in the
/// venue's order and precision, from the venue's path and parameters.
async fn rest_serves_the_newest_trades<V: Venue>() {
    let name = V::ROW.name;
    let fp = V::ROW.first_page;
    let (mock, cfg, parser) = rest_venue::<V>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(fp.publish);
    let mut out = Vec::new();
    let page = fetch_page(&parser, &cfg, PollRequest::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(page.older.is_some(), fp.older, "{name}: {:?}", page.older);
    let mut want: Vec<&MockTrade> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .take(fp.holds)
        .collect();
    if fp.order == PageOrder::OldestFirst {
        want.reverse();
    }
    assert_eq!(out.len(), want.len(), "{name}");
    for (t, p) in out.iter().zip(want) {
        assert!(fp.precision.matches(p, t), "{name}: {t:?} != {p:?}");
    }
    let req = &mock.http_server().requests()[0];
    assert_eq!(req.path, fp.path, "{name}");
    for (k, v) in fp.query {
        assert_eq!(req.query_param(k), Some(*v), "{name}: {k}");
    }
    for k in fp.absent {
        assert_eq!(req.query_param(k), None, "{name}: {k}");
    }
    assert!(req.header("user-agent").is_some(), "{name}: a user agent");
}

/// The venue's cursors page back through the first symbol's whole history: every trade,
/// exactly, in as many pages as the venue needs.
async fn rest_pages_back_through_the_history<V: Venue>() {
    let name = V::ROW.name;
    let pb = V::ROW
        .paging_back
        .get(name, "rest_pages_back_through_the_history");
    let (mock, cfg, parser) = rest_venue::<V>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(pb.publish);
    let newest_first: Vec<MockTrade> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    assert_eq!(newest_first.len(), pb.publish / 2, "{name}");
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut first_older = None;
    for n in 1..=pb.pages {
        let req = match &cursor {
            None => PollRequest::default(),
            Some(c) => page(c),
        };
        let older = fetch_page(&parser, &cfg, req, &mut out)
            .await
            .unwrap()
            .older;
        if n == 1 {
            first_older = older.clone();
        }
        if n == pb.pages {
            assert_eq!(older.is_none(), pb.ends, "{name}: the last page");
        } else {
            cursor = Some(older.unwrap_or_else(|| panic!("{name}: page {n} ends the history")));
        }
    }
    let out = if pb.overlap { dedup(out) } else { out };
    if pb.newest_first {
        assert_exact(&out, &newest_first);
    } else {
        assert_same_set(name, &out, &newest_first);
    }
    let reqs = mock.http_server().requests();
    (pb.second)(&reqs[1], first_older.as_deref().unwrap(), &newest_first);
}

/// `trades` with each id once: pages that overlap at their edges repeat a trade.
fn dedup(mut trades: Vec<Trade>) -> Vec<Trade> {
    let mut seen = BTreeSet::new();
    trades.retain(|t| seen.insert((t.symbol.clone(), t.trade_id.to_string())));
    trades
}

/// Bitfinex's `end` bounds a page from above, inclusively.
async fn end_bounds_a_page_from_above<V: Venue>() {
    assert_eq!(V::ROW.name, "bitfinex");
    let (mock, cfg, venue) = rest_venue::<Bitfinex>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(30);
    let want: Vec<_> = published
        .iter()
        .rev()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    let end = (want[5].time.unix_nanos() / 1_000_000).to_string();
    let mut older = Vec::new();
    fetch_page(&venue, &cfg, page(&end), &mut older)
        .await
        .unwrap();
    assert!(older.len() >= want.len() - 5, "{}", older.len());
    assert!(older.iter().all(|t| t.timestamp <= want[5].time));
}

/// Walking forward from a trade the way the backfill does brings every later trade of the
/// symbol exactly once, in order, even from inside an instant that several fills share.
async fn history_walks_forward_from_a_trade<V: Venue>() {
    let name = V::ROW.name;
    let w = V::ROW
        .walk_forward
        .get(name, "history_walks_forward_from_a_trade");
    let symbols = if w.two_symbols {
        two_symbols(&V::ROW, QUIET).symbols
    } else {
        vec![Symbol::parse(V::ROW.symbol).unwrap()]
    };
    let (mock, cfg, parser) = rest_venue::<V>(MockConfig {
        fills_per_instant: w.fills,
        ..MockConfig::with_symbols(&symbols)
    })
    .await;
    let published = mock.publish(w.publish);
    let from = &published[w.from];
    if w.fills > 1 {
        // The whole run of fills `from` is in shares its time, on both sides of it.
        let run = w.from / w.fills as usize * w.fills as usize;
        let run = &published[run..run + w.fills as usize];
        assert!(run.iter().all(|t| t.time == from.time), "{name}: {run:?}");
        assert!(run[0].trade_id < from.trade_id && from.trade_id < run[run.len() - 1].trade_id);
    }
    let (got, pages) = walk_forward(&parser, &cfg, from, 40).await;
    assert_exact(&got, &published_after(&published, &cfg, from));
    w.pages.check(pages, &format!("{name}: pages"));
    let reqs = mock.http_server().requests();
    assert!(reqs.iter().all(w.every), "{name}: {reqs:?}");
    (w.first)(&reqs, from);
}

/// Requests out of the venue's bounds get the venue's answers.
async fn rest_refuses_what_the_venue_refuses<V: Venue>() {
    let name = V::ROW.name;
    let (path, cases) = V::ROW
        .bounds
        .get(name, "rest_refuses_what_the_venue_refuses");
    let (mock, cfg, parser) = rest_venue::<V>(two_symbols(&V::ROW, QUIET)).await;
    mock.publish(10);
    for (query, answer) in cases {
        let r = get(&rest(&mock, path, query)).await;
        match answer {
            Answer::Status(s) => assert_eq!(r.status(), *s, "{name}: {query}"),
            Answer::NotOk => assert_ne!(r.status(), 200, "{name}: {query}"),
            Answer::Parses(ok) => {
                let body = r.bytes().await.unwrap();
                let mut out = Vec::new();
                assert_eq!(
                    parse_body(&parser, &cfg, &body, &mut out).is_ok(),
                    *ok,
                    "{name}: {query}"
                );
            }
        }
    }
}

/// Gemini serves seven days of trades: of two days of trades that started eight days ago,
/// only those of the last week come back.
async fn serves_a_week_of_trades_and_no_more<V: Venue>() {
    assert_eq!(V::ROW.name, "gemini");
    // One trade an hour for two days, starting eight days ago.
    let start =
        Timestamp::from_unix_micros(Timestamp::now().unix_nanos() / 1_000 - 8 * 86_400_000_000);
    let (mock, cfg, venue) = rest_venue::<Gemini>(MockConfig {
        simulated_time: Some((start, Duration::from_secs(3_600))),
        ..MockConfig::with_symbols(&["BTC-USD".parse().unwrap()])
    })
    .await;
    let published = mock.publish(48);
    let week_ago = Timestamp::now().unix_nanos() - 7 * 86_400 * 1_000_000_000;
    let served: Vec<_> = published
        .iter()
        .filter(|t| t.time.unix_nanos() >= week_ago)
        .cloned()
        .collect();
    assert!(served.len() < published.len() && !served.is_empty());
    let body = get(&rest(
        &mock,
        "/v1/trades/btcusd",
        "limit_trades=500&since_tid=0",
    ))
    .await
    .bytes()
    .await
    .unwrap();
    let mut out = Vec::new();
    parse_body(&venue, &cfg, &body, &mut out).unwrap();
    out.reverse();
    assert_exact(&out, &served);
}

/// Gemini polls from the last trade seen: after the fifth trade, the ten that follow it,
/// newest first.
async fn polls_the_trades_after_the_last_seen<V: Venue>() {
    assert_eq!(V::ROW.name, "gemini");
    let (mock, cfg, venue) = rest_venue::<Gemini>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(30);
    let btc: Vec<_> = published
        .iter()
        .filter(|t| t.symbol == cfg.symbols[0])
        .cloned()
        .collect();
    let cursor = Cursor {
        trade_id: TradeId::from_u64(btc[4].trade_id),
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
    assert_eq!(want.len(), 10);
    assert_exact(&after, &want);
}

/// Kraken polls from a cursor by `since`: a full page hands on `last`, and the page from
/// `last` ends the walk, with the cursor's trade again and all after it.
async fn since_and_last_walk_forward<V: Venue>() {
    assert_eq!(V::ROW.name, "kraken");
    let (mock, cfg, venue) = rest_venue::<Kraken>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(2_400);
    let first = published[0].clone();
    let cursor = Cursor {
        trade_id: TradeId::from_u64(first.trade_id),
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
    let got: BTreeSet<String> = out.iter().map(|t| t.trade_id.to_string()).collect();
    assert_eq!(got.len(), 1_200, "the first trade again, and all after it");
    let reqs = mock.http_server().requests();
    assert_eq!(reqs[1].query_param("since"), Some(last.as_str()));
}

/// OKX's `before` alone is not the page after an id: it gives the latest trades.
async fn before_alone_gives_the_latest_trades<V: Venue>() {
    assert_eq!(V::ROW.name, "okx");
    let (mock, cfg, venue) = rest_venue::<Okx>(two_symbols(&V::ROW, QUIET)).await;
    let published = mock.publish(500);
    let id = published[10].trade_id;
    let body = get(&rest(
        &mock,
        "/api/v5/market/history-trades",
        &format!("instId=BTC-USDT&type=1&before={id}&limit=5"),
    ))
    .await
    .bytes()
    .await
    .unwrap();
    let mut out = Vec::new();
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

// ---------------------------------------------------------------------------------------
// The generator behind every mock

/// Two mocks of a venue with the same seed publish the same trades.
async fn same_seed_same_trades<V: Venue>() {
    let a = V::start(two_symbols(&V::ROW, QUIET)).await;
    let b = V::start(two_symbols(&V::ROW, QUIET)).await;
    let strip = |v: Vec<MockTrade>| {
        v.into_iter()
            .map(|t| (t.symbol, t.trade_id, t.price, t.amount_text, t.side))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(a.publish(50)),
        strip(b.publish(50)),
        "{}",
        V::ROW.name
    );
}

/// A mock publishes at the rate asked, with strictly increasing times and ids.
async fn generator_publishes_at_its_rate<V: Venue>() {
    let name = V::ROW.name;
    let mock = V::start(two_symbols(&V::ROW, QUIET)).await;
    mock.generate(1_000);
    mock.wait_published(50, WAIT).await.unwrap();
    mock.generate(0);
    assert!(mock.published_count() >= 50, "{name}");
    // Times never go back, and are strictly increasing where they are finer than the
    // millisecond (at 1000 a second, a venue that writes milliseconds gives several trades
    // one time), so ids and times agree on the order (ids are counted per symbol where the
    // venue counts them so).
    let p = mock.published();
    let micros = p.iter().all(|t| t.time.digits() > 3);
    assert!(
        p.windows(2)
            .all(|w| w[0].time < w[1].time || (!micros && w[0].time == w[1].time)),
        "{name}"
    );
    for symbol in mock.symbols() {
        let ids: Vec<u64> = p
            .iter()
            .filter(|t| &t.symbol == symbol)
            .map(|t| t.trade_id)
            .collect();
        assert!(ids.len() >= 20, "{name}: {symbol}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{name}: {symbol}");
    }
}

// ---------------------------------------------------------------------------------------
// The table itself

/// A check is stamped for a venue exactly when the venue's row says it applies.
#[test]
fn every_check_runs_exactly_where_its_row_says() {
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
    }
}

/// Every venue folder of `feeder-exchanges` has a row here: a venue added without one
/// would go untested against its mock.
#[test]
fn every_venue_folder_has_a_row() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../feeder-exchanges/src");
    let mut folders = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Ok(module) = std::fs::read_to_string(path.join("mod.rs")) else {
            continue;
        };
        if module.contains("impl StreamVenue for") || module.contains("impl PollVenue for") {
            folders.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let rows: BTreeSet<String> = ROWS.iter().map(|r| r.name.to_owned()).collect();
    assert_eq!(folders, rows);
}
