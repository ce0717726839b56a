//! Mock venues on `127.0.0.1:0` (Bitstamp, Coinbase Exchange, Bitfinex, Gemini, Huobi,
//! Binance, Bybit, OKX, Kraken), REST and WebSocket, speaking each venue's exact wire format.
//!
//! A mock generates trades deterministically (prices with 2 decimals, amounts with 8, some in
//! exponent form, microsecond times), sends them to subscribed WebSocket clients, and keeps
//! every one as ground truth ([`MockTrade`]) that its REST API serves for backfill. Faults are
//! injected on demand: dropped or stalled sockets, malformed frames, REST errors, reconnect
//! requests and trades the stream skips.
//!
//! The wire format is written here independently of the parsers in `feeder-exchanges`, so a
//! round trip through both checks one against the other.

pub mod binance;
pub mod bitfinex;
pub mod bitstamp;
pub mod bybit;
pub mod coinbase;
pub mod gemini;
pub mod huobi;
pub mod kraken;
pub mod okx;

mod conn;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::Transport;
use feeder_core::model::{Side, Symbol, Timestamp, Trade};
use rust_decimal::Decimal;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use url::Url;

use crate::http::{HttpServer, Request, Response};
use crate::ws::WsServer;
use crate::WaitTimeout;

pub use binance::MockBinance;
pub use bitfinex::MockBitfinex;
pub use bitstamp::MockBitstamp;
pub use bybit::MockBybit;
pub use coinbase::MockCoinbase;
pub use gemini::MockGemini;
pub use huobi::MockHuobi;
pub use kraken::MockKraken;
pub use okx::MockOkx;

/// Symbols every mock lists as trading besides its configured ones, so that a listing is
/// more than the configuration read back.
pub const ALSO_LISTED: &[&str] = &["LTC-BTC", "XMR-USD"];
/// A symbol every mock lists as not trading, in its venue's own words (Binance's `BREAK`,
/// Gemini's `closed`, Huobi's `offline`, ...), except Bitfinex, whose list names only what
/// trades: it must never come out of a listing of what trades.
pub const HALTED: &str = "OLD-USD";

/// A trade a mock published: the ground truth a client's output is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockTrade {
    /// The normalized symbol.
    pub symbol: Symbol,
    /// The venue's trade id.
    pub trade_id: u64,
    /// The price (two decimals).
    pub price: Decimal,
    /// The amount (eight decimals).
    pub amount: Decimal,
    /// The amount as written on the wire: plain (`0.01500000`) or in exponent form (`25e-8`).
    pub amount_text: String,
    /// The taker's side.
    pub side: Side,
    /// The trade time, with microseconds (milliseconds on venues that send no more).
    pub time: Timestamp,
}

impl MockTrade {
    /// True when `trade` reports this trade exactly: symbol, id, price, amount, taker side
    /// and time.
    pub fn matches(&self, trade: &Trade) -> bool {
        self.matches_to_the_second(trade) && trade.timestamp == self.time
    }

    /// The same, with the time compared to the second only: Bitstamp's REST API gives whole
    /// seconds.
    pub fn matches_to_the_second(&self, trade: &Trade) -> bool {
        trade.symbol == self.symbol
            && trade.trade_id.as_str() == self.trade_id.to_string()
            && trade.price == self.price
            && trade.amount == self.amount
            && trade.side == self.side
            && trade.timestamp.unix_secs() == self.time.unix_secs()
    }

    fn micros(&self) -> i64 {
        self.time.unix_nanos() / 1_000
    }
}

/// Settings of a mock venue.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The symbols the venue lists; trades are published round-robin over them.
    pub symbols: Vec<Symbol>,
    /// Seed of the generator: the same seed gives the same prices, amounts and sides.
    pub seed: u64,
    /// One trade in this many has its amount written in exponent form (0: never).
    pub exponent_every: u64,
    /// How often the venue's own heartbeat goes out, where it has one (Coinbase).
    pub heartbeat_every: Duration,
    /// Stamp trades with simulated times instead of the wall clock: the first trade at
    /// `.0`, each next one `.1` later. Lets a test span hours of candles in a second.
    pub simulated_time: Option<(Timestamp, Duration)>,
    /// Trades come in runs of this many sharing one time, as the fills of one taker order
    /// against several makers do (1: every trade has a time of its own, on venues that
    /// write microseconds). Venues that page by time must neither skip nor repeat the trades
    /// of a run that a page boundary or a cursor cuts through.
    pub fills_per_instant: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            symbols: ["BTC-USD", "ETH-USD"]
                .iter()
                .filter_map(|s| Symbol::parse(s).ok())
                .collect(),
            seed: 42,
            exponent_every: 7,
            heartbeat_every: Duration::from_secs(1),
            simulated_time: None,
            fills_per_instant: 1,
        }
    }
}

impl MockConfig {
    /// The default settings with these symbols.
    pub fn with_symbols(symbols: &[Symbol]) -> Self {
        Self {
            symbols: symbols.to_vec(),
            ..Self::default()
        }
    }
}

/// A fault that the next WebSocket connection plays (queued with `fault_next_connection`).
///
/// Counts are of trade messages sent on that connection; a count of 0 applies right after
/// the subscription is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsFault {
    /// Drop the TCP connection, without a close frame, after `n` trades.
    DropAfter(usize),
    /// Send a close frame after `n` trades.
    CloseAfter(usize),
    /// Go silent after `n` trades (no trades, no heartbeats, no answers), socket left open.
    StallAfter(usize),
    /// After `after` trades the venue's application hangs (no trades, no heartbeats, no
    /// answers to its own protocol) while its WebSocket library carries on as real servers'
    /// do: a protocol Ping every `ping_every`, and a Pong to every Ping of the client.
    HangAfter {
        /// Trades sent before the hang.
        after: usize,
        /// How often the library pings while the application is hung.
        ping_every: Duration,
    },
    /// Send one malformed frame after `n` trades, then carry on.
    MalformedAfter(usize),
    /// After `after` trades, leave out the next `skip` trades on this connection (they are
    /// still published and served over REST). When they are the newest of their product, the
    /// next Coinbase heartbeat reveals the gap.
    SkipAfter {
        /// Trades sent before the gap.
        after: usize,
        /// Trades left out.
        skip: usize,
    },
    /// Ask the client to reconnect after `n` trades (Bitstamp's `bts:request_reconnect`;
    /// Coinbase has no such message and sends a close frame instead).
    RequestReconnectAfter(usize),
}

/// Something every live connection does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    RequestReconnect,
    Malformed,
    Heartbeat,
    Drop,
}

/// One published trade and whether the stream should leave it out.
#[derive(Debug)]
pub(crate) struct Entry {
    pub trade: MockTrade,
    /// Published "silently": in the history and over REST, never on the stream.
    pub silent: bool,
}

/// The deterministic trade generator.
#[derive(Debug)]
struct Generator {
    rng: fastrand::Rng,
    /// Price in cents per symbol.
    prices: HashMap<Symbol, i64>,
    /// Next trade id per symbol, or one shared counter (key `None`).
    next_id: HashMap<Option<Symbol>, u64>,
    ids_per_symbol: bool,
    first_id: u64,
    last_micros: i64,
    count: u64,
    exponent_every: u64,
    simulated_time: Option<(Timestamp, Duration)>,
    /// Trade times in whole milliseconds (non-decreasing), for venues that send no more.
    millis: bool,
    fills_per_instant: u64,
    /// The time of the last trade made: the next ones of its run take it too.
    last_time: Option<Timestamp>,
}

impl Generator {
    fn new(cfg: &MockConfig, first_id: u64, ids_per_symbol: bool) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(cfg.seed),
            prices: HashMap::new(),
            next_id: HashMap::new(),
            ids_per_symbol,
            first_id,
            last_micros: 0,
            count: 0,
            exponent_every: cfg.exponent_every,
            simulated_time: cfg.simulated_time,
            millis: false,
            fills_per_instant: cfg.fills_per_instant.max(1),
            last_time: None,
        }
    }

    fn next(&mut self, symbol: &Symbol) -> MockTrade {
        self.count += 1;
        let start_cents = match symbol.base() {
            "BTC" => 6_000_000,
            "ETH" => 260_000,
            _ => 10_000,
        };
        let step = self.rng.i64(-500..=500);
        let cents = self.prices.entry(symbol.clone()).or_insert(start_cents);
        *cents = (*cents + step).max(100);
        let price = Decimal::new(*cents, 2);

        let exponent = self.exponent_every > 0 && self.count % self.exponent_every == 0;
        let (amount, amount_text) = if exponent {
            let k = self.rng.i64(1..=999);
            (Decimal::new(k, 8), format!("{k}e-8"))
        } else {
            let sats = self.rng.i64(1..=150_000_000);
            let d = Decimal::new(sats, 8);
            (d, d.to_string())
        };
        let side = if self.rng.bool() {
            Side::Buy
        } else {
            Side::Sell
        };

        let key = self.ids_per_symbol.then(|| symbol.clone());
        let offset = if self.ids_per_symbol {
            // Distinct id ranges per product, as on a venue with per-product ids.
            u64::from(symbol.as_str().bytes().fold(0u8, u8::wrapping_add)) * 1_000_000
        } else {
            0
        };
        let next = self.next_id.entry(key).or_insert(self.first_id + offset);
        let trade_id = *next;
        *next += 1;

        let time = match self.last_time {
            // Within a run of fills, the time of the run's first.
            Some(t) if (self.count - 1) % self.fills_per_instant != 0 => t,
            _ => self.next_time(),
        };
        self.last_time = Some(time);

        MockTrade {
            symbol: symbol.clone(),
            trade_id,
            price,
            amount,
            amount_text,
            side,
            time,
        }
    }

    /// Simulated or wall-clock time: strictly increasing microseconds, or non-decreasing
    /// whole milliseconds, as a venue with millisecond times has several trades a millisecond.
    fn next_time(&mut self) -> Timestamp {
        let now = match self.simulated_time {
            Some((start, step)) => {
                let step = i64::try_from(step.as_micros()).unwrap_or(i64::MAX);
                let n = i64::try_from(self.count - 1).unwrap_or(i64::MAX);
                start.unix_nanos() / 1_000 + n.saturating_mul(step)
            }
            None => Timestamp::now().unix_nanos() / 1_000,
        };
        if self.millis {
            self.last_micros = (now - now % 1_000).max(self.last_micros);
            Timestamp::from_unix_millis(self.last_micros / 1_000)
        } else {
            self.last_micros = now.max(self.last_micros + 1);
            Timestamp::from_unix_micros(self.last_micros)
        }
    }
}

/// State shared by a mock's servers, connection tasks and handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: MockConfig,
    gen: Mutex<Generator>,
    history: Mutex<Vec<Entry>>,
    /// Count of published trades: connection tasks wake on it.
    published: watch::Sender<usize>,
    /// Count of acknowledged subscriptions, for tests to wait on.
    subscribed: watch::Sender<usize>,
    conn_faults: Mutex<VecDeque<WsFault>>,
    rest_failures: Mutex<VecDeque<u16>>,
    control: broadcast::Sender<Control>,
    sequence: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(cfg: MockConfig, first_id: u64, ids_per_symbol: bool) -> Arc<Self> {
        Arc::new(Self {
            gen: Mutex::new(Generator::new(&cfg, first_id, ids_per_symbol)),
            cfg,
            history: Mutex::new(Vec::new()),
            published: watch::channel(0).0,
            subscribed: watch::channel(0).0,
            conn_faults: Mutex::new(VecDeque::new()),
            rest_failures: Mutex::new(VecDeque::new()),
            control: broadcast::channel(64).0,
            sequence: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Generates and publishes `n` trades, round-robin over the symbols.
    pub(crate) fn publish(&self, n: usize, silent: bool) -> Vec<MockTrade> {
        if self.cfg.symbols.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(n);
        {
            let mut gen = lock(&self.gen);
            let mut history = lock(&self.history);
            for _ in 0..n {
                let i = history.len() % self.cfg.symbols.len();
                let t = gen.next(&self.cfg.symbols[i]);
                out.push(t.clone());
                history.push(Entry { trade: t, silent });
            }
            self.published.send_replace(history.len());
        }
        out
    }

    /// The same as [`Shared::new`], with trade times in whole milliseconds.
    pub(crate) fn new_millis(cfg: MockConfig, first_id: u64, ids_per_symbol: bool) -> Arc<Self> {
        let mut gen = Generator::new(&cfg, first_id, ids_per_symbol);
        gen.millis = true;
        let shared = Self::new(cfg, first_id, ids_per_symbol);
        *lock(&shared.gen) = gen;
        shared
    }

    pub(crate) fn published(&self) -> Vec<MockTrade> {
        lock(&self.history)
            .iter()
            .map(|e| e.trade.clone())
            .collect()
    }

    pub(crate) fn published_count(&self) -> usize {
        *self.published.borrow()
    }

    pub(crate) fn subscribe_published(&self) -> watch::Receiver<usize> {
        self.published.subscribe()
    }

    /// Runs `f` over the history.
    pub(crate) fn with_history<R>(&self, f: impl FnOnce(&[Entry]) -> R) -> R {
        f(&lock(&self.history))
    }

    /// The newest trade of `symbol`, sent or not.
    pub(crate) fn last_trade(&self, symbol: &Symbol) -> Option<MockTrade> {
        lock(&self.history)
            .iter()
            .rev()
            .find(|e| &e.trade.symbol == symbol)
            .map(|e| e.trade.clone())
    }

    /// The newest trade of `symbol` among the first `upto` published.
    pub(crate) fn last_trade_before(&self, symbol: &Symbol, upto: usize) -> Option<MockTrade> {
        let h = lock(&self.history);
        h.get(..upto.min(h.len()))
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|e| &e.trade.symbol == symbol)
            .map(|e| e.trade.clone())
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The symbols the instrument list names as trading: the configured ones and
    /// [`ALSO_LISTED`].
    pub(crate) fn listed(&self) -> Vec<Symbol> {
        let mut all = self.cfg.symbols.clone();
        for s in ALSO_LISTED.iter().filter_map(|s| Symbol::parse(s).ok()) {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        all
    }

    /// Every symbol the instrument list names, with whether it trades: [`Self::listed`]
    /// trading, then [`HALTED`] not (each mock says so in its venue's own words).
    pub(crate) fn listing(&self) -> Vec<(Symbol, bool)> {
        let mut all: Vec<(Symbol, bool)> = self.listed().into_iter().map(|s| (s, true)).collect();
        if let Ok(halted) = Symbol::parse(HALTED) {
            if !all.iter().any(|(s, _)| s == &halted) {
                all.push((halted, false));
            }
        }
        all
    }

    /// The listed symbol the venue calls `venue_name`.
    pub(crate) fn symbol(
        &self,
        venue_name: &str,
        to_venue: impl Fn(&Symbol) -> String,
    ) -> Option<Symbol> {
        self.cfg
            .symbols
            .iter()
            .find(|s| to_venue(s) == venue_name)
            .cloned()
    }

    pub(crate) fn subscription_acked(&self) {
        self.subscribed.send_modify(|n| *n += 1);
    }

    pub(crate) async fn wait_subscriptions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let mut rx = self.subscribed.subscribe();
        let ok = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await,
            Ok(Ok(_))
        );
        if ok {
            Ok(())
        } else {
            Err(WaitTimeout {
                wanted: n,
                got: *self.subscribed.borrow(),
            })
        }
    }

    pub(crate) async fn wait_published(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let mut rx = self.published.subscribe();
        let ok = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await,
            Ok(Ok(_))
        );
        if ok {
            Ok(())
        } else {
            Err(WaitTimeout {
                wanted: n,
                got: self.published_count(),
            })
        }
    }

    pub(crate) fn push_fault(&self, f: WsFault) {
        lock(&self.conn_faults).push_back(f);
    }

    pub(crate) fn take_fault(&self) -> Option<WsFault> {
        lock(&self.conn_faults).pop_front()
    }

    pub(crate) fn fail_rest(&self, count: usize, status: u16) {
        lock(&self.rest_failures).extend(std::iter::repeat_n(status, count));
    }

    /// The injected failure for this REST request, if one is queued.
    pub(crate) fn rest_failure(&self) -> Option<Response> {
        let status = lock(&self.rest_failures).pop_front()?;
        let resp = Response::status(status)
            .with_header("content-type", "application/json")
            .with_body(br#"{"message":"injected failure"}"#.to_vec());
        Some(if status == 429 {
            resp.with_header("retry-after", "1")
        } else {
            resp
        })
    }

    pub(crate) fn control(&self, c: Control) {
        // No receiver means no live connection: nothing to do.
        let _ = self.control.send(c);
    }

    pub(crate) fn subscribe_control(&self) -> broadcast::Receiver<Control> {
        self.control.subscribe()
    }
}

/// Publishes trades at a steady rate until dropped.
#[derive(Debug)]
pub struct Generating {
    task: JoinHandle<()>,
}

impl Drop for Generating {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns the rate generator: `per_second` trades a second, in batches every 10 ms.
pub(crate) fn generate(shared: Arc<Shared>, per_second: u32) -> Generating {
    let task = tokio::spawn(async move {
        if per_second == 0 {
            return;
        }
        const TICK: Duration = Duration::from_millis(10);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Thousandths of a trade carried over, so low rates still come out exact on average.
        let per_tick_milli = u64::from(per_second) * 10;
        let mut carry = 0u64;
        loop {
            tick.tick().await;
            carry += per_tick_milli;
            let n = carry / 1_000;
            carry %= 1_000;
            if n > 0 {
                shared.publish(usize::try_from(n).unwrap_or(usize::MAX), false);
            }
        }
    });
    Generating { task }
}

/// A running mock venue: its WebSocket and REST servers, its generator and its ground truth.
/// [`MockBitstamp`] and [`MockCoinbase`] dereference to it. Everything stops when it is
/// dropped.
#[derive(Debug)]
pub struct MockVenue {
    shared: Arc<Shared>,
    ws: WsServer,
    http: HttpServer,
    generating: Mutex<Option<Generating>>,
}

impl MockVenue {
    fn start<W: conn::Wire>(
        shared: Arc<Shared>,
        wire: Arc<W>,
        rest: impl Fn(&Shared, &Request) -> Response + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let ws = {
            let shared = shared.clone();
            WsServer::start(move |c| conn::serve(c, shared.clone(), wire.clone()))?
        };
        let http = {
            let shared = shared.clone();
            let rest = Arc::new(rest);
            HttpServer::start(move |req| {
                let resp = shared.rest_failure().unwrap_or_else(|| rest(&shared, &req));
                async move { resp }
            })?
        };
        Ok(Self {
            shared,
            ws,
            http,
            generating: Mutex::new(None),
        })
    }

    /// The REST base URL, `http://127.0.0.1:PORT`.
    pub fn rest_url(&self) -> Url {
        self.http.url()
    }

    /// The WebSocket URL, `ws://127.0.0.1:PORT/`.
    pub fn ws_url(&self) -> Url {
        self.ws.url()
    }

    /// The symbols the venue lists.
    pub fn symbols(&self) -> &[Symbol] {
        &self.shared.cfg.symbols
    }

    /// Generates `n` trades (round-robin over the symbols), sends each to the connections
    /// subscribed to its symbol, and returns them.
    pub fn publish(&self, n: usize) -> Vec<MockTrade> {
        self.shared.publish(n, false)
    }

    /// Generates `n` trades that only the REST API and the ground truth see, never the
    /// stream: a gap for the client to notice (from a Coinbase heartbeat) and backfill.
    pub fn publish_silently(&self, n: usize) -> Vec<MockTrade> {
        self.shared.publish(n, true)
    }

    /// Publishes `per_second` trades a second from now on (replacing an earlier rate; 0
    /// stops).
    pub fn generate(&self, per_second: u32) {
        let g = (per_second > 0).then(|| generate(self.shared.clone(), per_second));
        *lock(&self.generating) = g;
    }

    /// Every trade published so far, in order: the ground truth.
    pub fn published(&self) -> Vec<MockTrade> {
        self.shared.published()
    }

    /// How many trades were published so far.
    pub fn published_count(&self) -> usize {
        self.shared.published_count()
    }

    /// Waits until `n` trades were published in all, at most `timeout`.
    pub async fn wait_published(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.shared.wait_published(n, timeout).await
    }

    /// Waits until `n` subscriptions were acknowledged in all (over every connection), at
    /// most `timeout`.
    pub async fn wait_subscriptions(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.shared.wait_subscriptions(n, timeout).await
    }

    /// Queues a fault for the next WebSocket connection (one fault per connection, in order).
    pub fn fault_next_connection(&self, fault: WsFault) {
        self.shared.push_fault(fault);
    }

    /// Answers the next `count` REST requests with `status` (a 429 carries
    /// `Retry-After: 1`).
    pub fn fail_rest(&self, count: usize, status: u16) {
        self.shared.fail_rest(count, status);
    }

    /// Sends a malformed frame on every live connection now.
    pub fn send_malformed(&self) {
        self.shared.control(Control::Malformed);
    }

    /// Drops every live connection now, without a close frame.
    pub fn drop_connections(&self) {
        self.shared.control(Control::Drop);
    }

    /// The WebSocket server: connections, received messages, waits.
    pub fn ws_server(&self) -> &WsServer {
        &self.ws
    }

    /// The REST server: requests received, waits.
    pub fn http_server(&self) -> &HttpServer {
        &self.http
    }

    /// A config entry for `name` pointing at this mock, over `transport`, with backfill on.
    pub fn exchange_config(&self, name: &str, transport: Transport) -> ExchangeConfig {
        let mut cfg = ExchangeConfig::new(name, self.shared.cfg.symbols.clone());
        cfg.transport = transport;
        cfg.poll_interval = Duration::from_millis(200);
        cfg.request_timeout = Duration::from_secs(5);
        cfg.rest_url = Some(self.rest_url());
        cfg.ws_url = Some(self.ws_url());
        cfg
    }
}
