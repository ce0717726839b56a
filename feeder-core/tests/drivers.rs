//! The stream and poll drivers against real sockets: a toy venue served by the testkit's mock
//! servers, with faults injected (drops, stalls, reconnect requests, bad payloads, HTTP errors).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feeder_core::exchange::{
    Backoff, Cursor, Exchange, ExchangeContext, ExchangeStats, Frame, HttpRequest, HttpResponse,
    Input, Page, Ping, PollExchange, PollRequest, PollVenue, StreamExchange, StreamVenue,
    WsMessage,
};
use feeder_core::model::{parse_decimal, Gap, Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::{ExchangeError, ParseError};
use feeder_testkit::http::{HttpServer, Request, Response};
use feeder_testkit::ws::{Incoming, Step, WsServer};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

const WAIT: Duration = Duration::from_secs(10);
/// How long `run` may take to return after cancel.
const PROMPT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// The toy venue.

#[derive(Clone)]
struct Toy {
    ws: Url,
    rest: Url,
    stale: Duration,
    ping: Option<Ping>,
}

impl Toy {
    fn new(ws: Url, rest: Url) -> Self {
        Self {
            ws,
            rest,
            stale: Duration::from_secs(30),
            ping: None,
        }
    }
}

/// One frame: a trade (`s`, `id`, `p`, `q`, `t`) or a control message (`ping`, `reconnect`,
/// `ack`, `gap` with `s`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFrame<'a> {
    #[serde(borrow)]
    s: Option<&'a str>,
    id: Option<u64>,
    p: Option<&'a str>,
    q: Option<&'a str>,
    t: Option<&'a str>,
    ping: Option<u64>,
    reconnect: Option<bool>,
    ack: Option<bool>,
    gap: Option<u64>,
    /// A message kind this venue does not know.
    kind: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRestTrade<'a> {
    id: u64,
    p: &'a str,
    q: &'a str,
    t: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePage<'a> {
    #[serde(borrow)]
    trades: Vec<WireRestTrade<'a>>,
    older: Option<String>,
}

fn make_trade(
    symbol: Symbol,
    id: u64,
    p: &str,
    q: &str,
    t: &str,
    received_at: Timestamp,
) -> Result<Trade, ParseError> {
    Ok(Trade {
        exchange: "toy".into(),
        symbol,
        trade_id: TradeId::from_u64(id),
        price: parse_decimal(p).map_err(|e| ParseError::field("p", e))?,
        amount: parse_decimal(q).map_err(|e| ParseError::field("q", e))?,
        side: Side::Buy,
        timestamp: Timestamp::parse_rfc3339(t).map_err(|e| ParseError::field("t", e))?,
        received_at,
    })
}

fn symbol_of(s: &str) -> Result<Symbol, ParseError> {
    Symbol::parse(s).map_err(|_| ParseError::UnknownSymbol(s.to_owned()))
}

impl StreamVenue for Toy {
    fn url(&self, _symbols: &[Symbol]) -> Result<Url, ExchangeError> {
        Ok(self.ws.clone())
    }

    fn subscribe(&self, symbols: &[Symbol]) -> Vec<WsMessage> {
        let list: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
        vec![WsMessage::Text(format!(
            r#"{{"op":"subscribe","symbols":[{}]}}"#,
            list.join(",")
        ))]
    }

    fn parse(
        &self,
        frame: &[u8],
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let w: WireFrame<'_> = serde_json::from_slice(frame)?;
        if let Some(n) = w.ping {
            return Ok(Frame::Reply(WsMessage::Text(format!(r#"{{"pong":{n}}}"#))));
        }
        if w.reconnect == Some(true) {
            return Ok(Frame::Reconnect);
        }
        if w.ack == Some(true) {
            return Ok(Frame::Ack);
        }
        if w.kind.is_some() {
            return Ok(Frame::Unrecognized);
        }
        let s = w.s.ok_or_else(|| ParseError::field("s", "missing"))?;
        if let Some(last) = w.gap {
            return Ok(Frame::Gap {
                symbol: symbol_of(s)?,
                last_trade_id: TradeId::from_u64(last),
            });
        }
        match (w.id, w.p, w.q, w.t) {
            (Some(id), Some(p), Some(q), Some(t)) => {
                out.push(make_trade(symbol_of(s)?, id, p, q, t, received_at)?);
                Ok(Frame::Data)
            }
            _ => Err(ParseError::field("id", "a trade needs id, p, q and t")),
        }
    }

    fn ping(&self) -> Option<Ping> {
        self.ping.clone()
    }

    fn stale_timeout(&self) -> Duration {
        self.stale
    }
}

impl PollVenue for Toy {
    fn trades_request(
        &self,
        symbol: &Symbol,
        req: PollRequest<'_>,
    ) -> Result<HttpRequest, ExchangeError> {
        let mut url = self
            .rest
            .join("/trades")
            .map_err(|e| ExchangeError::Config(e.to_string()))?;
        url.query_pairs_mut().append_pair("symbol", symbol.as_str());
        if let Some(page) = req.page {
            url.query_pairs_mut().append_pair("before", page);
        }
        let mut r = HttpRequest::get(url);
        r.headers.push(("x-toy".into(), "1".into()));
        Ok(r)
    }

    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        received_at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        let page: WirePage<'_> = serde_json::from_slice(resp.body)?;
        for t in &page.trades {
            out.push(make_trade(
                symbol.clone(),
                t.id,
                t.p,
                t.q,
                t.t,
                received_at,
            )?);
        }
        Ok(Page { older: page.older })
    }

    fn max_pages(&self) -> usize {
        5
    }
}

// ---------------------------------------------------------------------------------------------
// What the mock servers send.

fn price(id: u64) -> String {
    format!("{}.250", 100 + id)
}

fn time(id: u64) -> String {
    format!("2024-01-02T03:{:02}:{:02}.123Z", id / 60, id % 60)
}

fn wire(id: u64) -> String {
    format!(
        r#"{{"s":"BTC-USD","id":{id},"p":"{}","q":"0.20","t":"{}"}}"#,
        price(id),
        time(id)
    )
}

fn sends(ids: impl IntoIterator<Item = u64>) -> Vec<Step> {
    ids.into_iter().map(|i| Step::Send(wire(i))).collect()
}

/// The trades the REST mock knows, served newest first, three per page, with an `older`
/// cursor; faults queued in `faults` are answered first.
#[derive(Default)]
struct Book {
    ids: Mutex<Vec<u64>>,
    faults: Mutex<VecDeque<Response>>,
}

const PAGE: usize = 3;

impl Book {
    fn with(ids: impl IntoIterator<Item = u64>) -> Arc<Self> {
        let book = Arc::new(Book::default());
        book.add(ids);
        book
    }

    fn add(&self, ids: impl IntoIterator<Item = u64>) {
        self.ids.lock().unwrap().extend(ids);
    }

    fn fault(&self, resp: Response) {
        self.faults.lock().unwrap().push_back(resp);
    }

    fn answer(&self, req: &Request) -> Response {
        if let Some(f) = self.faults.lock().unwrap().pop_front() {
            return f;
        }
        if req.path != "/trades" || req.query_param("symbol") != Some("BTC-USD") {
            return Response::status(404);
        }
        let before: u64 = match req.query_param("before") {
            Some(b) => match b.parse() {
                Ok(n) => n,
                Err(_) => return Response::status(400),
            },
            None => u64::MAX,
        };
        let mut ids: Vec<u64> = self
            .ids
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|i| *i < before)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let more = ids.len() > PAGE;
        ids.truncate(PAGE);
        let trades: Vec<String> = ids
            .iter()
            .map(|i| {
                format!(
                    r#"{{"id":{i},"p":"{}","q":"0.20","t":"{}"}}"#,
                    price(*i),
                    time(*i)
                )
            })
            .collect();
        let older = match (more, ids.last()) {
            (true, Some(last)) => format!("\"{last}\""),
            _ => "null".into(),
        };
        Response::json(format!(
            r#"{{"trades":[{}],"older":{older}}}"#,
            trades.join(",")
        ))
    }
}

fn rest_server(book: &Arc<Book>) -> HttpServer {
    let book = book.clone();
    HttpServer::start(move |req| {
        let resp = book.answer(&req);
        async move { resp }
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running an exchange.

fn btc() -> Symbol {
    Symbol::parse("BTC-USD").unwrap()
}

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(50)).without_jitter()
}

struct Run {
    ctx: ExchangeContext,
    rx: mpsc::Receiver<Input>,
    task: JoinHandle<Result<(), ExchangeError>>,
    /// Every trade received so far, in arrival order.
    seen: Vec<Trade>,
    /// Every gap recorded so far.
    gaps: Vec<Gap>,
}

impl Run {
    fn start(exchange: impl Exchange, seed: Option<Cursor>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let ctx = ExchangeContext::new(vec![btc()], tx, CancellationToken::new());
        if let Some(c) = seed {
            ctx.cursors.set(btc(), c);
        }
        let run_ctx = ctx.clone();
        let task = tokio::spawn(async move { exchange.run(run_ctx).await });
        Self {
            ctx,
            rx,
            task,
            seen: Vec::new(),
            gaps: Vec::new(),
        }
    }

    /// Takes in one input: trades are added to `seen` and returned, gaps to `gaps`.
    fn take(&mut self, input: Input) -> Vec<Trade> {
        match input {
            Input::Trades(b) => {
                self.seen.extend(b.iter().cloned());
                b
            }
            Input::Gap(g) => {
                self.gaps.push(g);
                Vec::new()
            }
            Input::Progress { .. } | Input::Checkpoint(_) | Input::Resync(_) => Vec::new(),
        }
    }

    /// The next batch of trades.
    async fn batch(&mut self) -> Vec<Trade> {
        loop {
            let input = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("no batch in time")
                .expect("the exchange stopped");
            let b = self.take(input);
            if !b.is_empty() {
                return b;
            }
        }
    }

    /// Receives batches until every id in `ids` was seen.
    async fn until_ids(&mut self, ids: impl IntoIterator<Item = u64>) {
        let want: BTreeSet<u64> = ids.into_iter().collect();
        let deadline = Instant::now() + WAIT;
        while !want.is_subset(&self.seen_ids()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(input)) => {
                    self.take(input);
                }
                Ok(None) => panic!("the exchange stopped; saw {:?}", self.seen_ids()),
                Err(_) => panic!("wanted {want:?}, saw {:?}", self.seen_ids()),
            }
        }
    }

    fn seen_ids(&self) -> BTreeSet<u64> {
        self.seen
            .iter()
            .map(|t| t.trade_id.as_number().unwrap() as u64)
            .collect()
    }

    fn stat(&self, pick: fn(&ExchangeStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        ExchangeStats::get(pick(&self.ctx.stats))
    }

    /// Waits (bounded) until a counter reaches `n`.
    async fn wait_stat(&self, pick: fn(&ExchangeStats) -> &std::sync::atomic::AtomicU64, n: u64) {
        let deadline = Instant::now() + WAIT;
        while self.stat(pick) < n {
            assert!(
                Instant::now() < deadline,
                "counter stuck at {} (wanted {n})",
                self.stat(pick)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Cancels and returns what `run` returned, failing if it took longer than [`PROMPT`].
    async fn stop(self) -> Result<(), ExchangeError> {
        self.ctx.shutdown.cancel();
        tokio::time::timeout(PROMPT, self.task)
            .await
            .expect("run did not return promptly after cancel")
            .expect("run panicked")
    }

    fn assert_nothing_pending(&mut self) {
        let mut next = self.rx.try_recv();
        while let Ok(Input::Progress { .. }) = next {
            next = self.rx.try_recv();
        }
        assert!(
            next.is_err(),
            "an unexpected batch was sent; seen so far {:?}",
            self.seen_ids()
        );
    }
}

fn ids(trades: &[Trade]) -> Vec<u64> {
    trades
        .iter()
        .map(|t| t.trade_id.as_number().unwrap() as u64)
        .collect()
}

fn stream(toy: &Toy) -> StreamExchange<Toy> {
    StreamExchange::new("toy", Arc::new(toy.clone()))
        .with_backoff(fast_backoff())
        .with_request_timeout(Duration::from_secs(5))
}

fn with_backfill(toy: &Toy) -> StreamExchange<Toy> {
    stream(toy).with_backfill(Arc::new(toy.clone()))
}

fn unused_rest() -> Url {
    Url::parse("http://127.0.0.1:9/").unwrap()
}

// ---------------------------------------------------------------------------------------------
// Stream driver.

#[tokio::test]
async fn stream_subscribes_and_delivers_every_trade_in_order_with_exact_decimals() {
    let mut script = vec![Step::Expect(1)];
    script.extend(sends(1..=5));
    let server = WsServer::scripted(script).unwrap();
    let mut toy = Toy::new(server.url().join("/ws?feed=trades").unwrap(), unused_rest());
    toy.ping = None;
    let exchange = stream(&toy);
    assert_eq!(exchange.name(), "toy");
    let mut run = Run::start(exchange, None);

    // Frames that arrive back to back may share a batch.
    let mut got = Vec::new();
    while got.len() < 5 {
        let b = run.batch().await;
        assert!(!b.is_empty(), "no empty batches");
        got.extend(b);
    }
    assert_eq!(ids(&got), [1, 2, 3, 4, 5]);
    let t = &got[2];
    assert_eq!(&*t.exchange, "toy");
    assert_eq!(t.symbol, btc());
    assert_eq!(t.price.to_string(), "103.250");
    assert_eq!(t.amount.to_string(), "0.20");
    assert_eq!(
        t.timestamp,
        Timestamp::parse_rfc3339("2024-01-02T03:00:03.123Z").unwrap()
    );

    let subs = server.wait_messages(1, WAIT).await.unwrap();
    assert_eq!(
        subs[0].message,
        Incoming::Text(r#"{"op":"subscribe","symbols":["BTC-USD"]}"#.into())
    );
    assert_eq!(server.paths(), ["/ws?feed=trades"]);
    run.assert_nothing_pending();
    assert_eq!(run.stat(|s| &s.trades), 5);
    assert_eq!(run.stat(|s| &s.errors), 0);
    assert_eq!(run.stat(|s| &s.parse_errors), 0);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_dropped_socket_reconnects_and_backfills_the_missed_trades() {
    let book = Book::with(1..=10);
    let rest = rest_server(&book);
    let mut first = vec![Step::Expect(1)];
    first.extend(sends(1..=4));
    first.push(Step::Drop);
    let mut second = vec![Step::Expect(1)];
    second.extend(sends(9..=10));
    let server = WsServer::scripted_per_connection(vec![first, second]).unwrap();
    let toy = Toy::new(server.url(), rest.url());
    let mut run = Run::start(with_backfill(&toy), None);

    run.until_ids(1..=10).await;
    assert_eq!(ids(&run.seen[..4]), [1, 2, 3, 4]);
    // The backfill batch comes right after the live trades of the first connection, before
    // anything the second connection streams.
    assert_eq!(ids(&run.seen[4..10]), [5, 6, 7, 8, 9, 10]);
    assert!(run.stat(|s| &s.reconnects) >= 1);
    assert!(run.stat(|s| &s.errors) >= 1);
    assert_eq!(run.stat(|s| &s.backfilled), 6);
    // Subscribed again on the new connection, then walked back page by page until a page reached the cursor.
    let subs = server.wait_messages(2, WAIT).await.unwrap();
    assert_eq!(subs[1].conn, 1);
    let reqs = rest.requests();
    let befores: Vec<Option<&str>> = reqs.iter().map(|r| r.query_param("before")).collect();
    assert_eq!(befores, [None, Some("8"), Some("5")]);
    assert_eq!(reqs[0].header("x-toy"), Some("1"));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_stale_connection_is_replaced() {
    let mut first = vec![Step::Expect(1)];
    first.extend(sends([1]));
    first.push(Step::Stall);
    let mut second = vec![Step::Expect(1)];
    second.extend(sends([2]));
    let server = WsServer::scripted_per_connection(vec![first, second]).unwrap();
    let mut toy = Toy::new(server.url(), unused_rest());
    toy.stale = Duration::from_millis(300);
    let mut run = Run::start(stream(&toy), None);

    run.until_ids([1, 2]).await;
    assert!(server.connections() >= 2);
    // The second connection goes stale in its turn, so later counts may be higher.
    assert!(run.stat(|s| &s.errors) >= 1);
    assert!(run.stat(|s| &s.reconnects) >= 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_venue_reconnect_request_reconnects_without_error() {
    let mut first = vec![Step::Expect(1)];
    first.extend(sends(1..=2));
    first.push(Step::Send(r#"{"reconnect":true}"#.into()));
    first.push(Step::Stall);
    let mut second = vec![Step::Expect(1)];
    second.extend(sends(3..=4));
    let server = WsServer::scripted_per_connection(vec![first, second]).unwrap();
    let toy = Toy::new(server.url(), unused_rest());
    let mut run = Run::start(stream(&toy), None);

    run.until_ids(1..=4).await;
    assert_eq!(ids(&run.seen), [1, 2, 3, 4]);
    assert_eq!(run.stat(|s| &s.reconnects), 1);
    assert_eq!(run.stat(|s| &s.errors), 0);
    assert_eq!(server.connections(), 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_malformed_frames_are_counted_and_skipped() {
    let script = vec![
        Step::Expect(1),
        Step::Send(r#"{"s":"BTC-USD","id":"#.into()),
        Step::Send(r#"{"s":"BTC-USD","id":2,"p":"1e","q":"1","t":"2024-01-02T00:00:00Z"}"#.into()),
        Step::SendBinary(b"\xff\xfe".to_vec()),
        Step::Send(r#"{"ack":true}"#.into()),
        Step::Send(wire(3)),
    ];
    let server = WsServer::scripted(script).unwrap();
    let toy = Toy::new(server.url(), unused_rest());
    let mut run = Run::start(stream(&toy), None);

    let b = run.batch().await;
    assert_eq!(ids(&b), [3]);
    assert_eq!(run.stat(|s| &s.parse_errors), 3);
    assert_eq!(run.stat(|s| &s.errors), 0);
    assert_eq!(server.connections(), 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_answers_app_pings_protocol_pings_and_sends_keepalives() {
    let script = vec![
        Step::Expect(1),
        Step::Send(r#"{"ping":42}"#.into()),
        Step::Expect(1),
        Step::Ping(b"srv".to_vec()),
        Step::ExpectPong,
        Step::Send(wire(1)),
    ];
    let server = WsServer::scripted(script).unwrap();
    let mut toy = Toy::new(server.url(), unused_rest());
    toy.ping = Some(Ping {
        every: Duration::from_millis(50),
        message: WsMessage::Ping(b"ka".to_vec()),
    });
    let mut run = Run::start(stream(&toy), None);

    // The trade only comes once the script saw the reply and the pong.
    assert_eq!(ids(&run.batch().await), [1]);
    let data = server.wait_messages(2, WAIT).await.unwrap();
    assert_eq!(data[1].message, Incoming::Text(r#"{"pong":42}"#.into()));
    let pongs = server
        .wait_received(1, |r| r.message == Incoming::Pong(b"srv".to_vec()), WAIT)
        .await
        .unwrap();
    assert_eq!(pongs.len(), 1);
    server
        .wait_received(2, |r| r.message == Incoming::Ping(b"ka".to_vec()), WAIT)
        .await
        .unwrap();
    run.stop().await.unwrap();
}

/// A burst far longer than one batch (frames read back to back) loses nothing at the batch
/// boundaries.
#[tokio::test]
async fn stream_a_long_burst_arrives_whole() {
    let script = vec![
        Step::Expect(1),
        Step::Burst((1..=2_500).map(wire).collect()),
    ];
    let server = WsServer::scripted(script).unwrap();
    let toy = Toy::new(server.url(), unused_rest());
    let mut run = Run::start(StreamExchange::new("toy", Arc::new(toy)), None);
    run.until_ids(1..=2_500).await;
    assert_eq!(run.seen.len(), 2_500, "each trade once");
    run.stop().await.unwrap();
}

/// A message of a shape the parser does not know is counted, and the stream goes on.
#[tokio::test]
async fn stream_counts_messages_it_does_not_know_and_goes_on() {
    let script = vec![
        Step::Expect(1),
        Step::Send(r#"{"kind":"ticker"}"#.into()),
        Step::Send(wire(1)),
        Step::Send(r#"{"kind":"ticker"}"#.into()),
        Step::Send(wire(2)),
    ];
    let server = WsServer::scripted(script).unwrap();
    let toy = Toy::new(server.url(), unused_rest());
    let mut run = Run::start(StreamExchange::new("toy", Arc::new(toy)), None);
    run.until_ids(1..=2).await;
    assert_eq!(run.stat(|s| &s.unrecognized), 2);
    assert_eq!(run.stat(|s| &s.parse_errors), 0);
    assert_eq!(server.connections(), 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_gap_report_backfills_without_reconnecting() {
    let book = Book::with(1..=6);
    let rest = rest_server(&book);
    let script = vec![
        Step::Expect(1),
        Step::Send(wire(1)),
        Step::Send(r#"{"s":"BTC-USD","gap":6}"#.into()),
        // Not behind any more: no REST call.
        Step::Send(r#"{"s":"BTC-USD","gap":5}"#.into()),
        Step::Send(wire(7)),
    ];
    let server = WsServer::scripted(script).unwrap();
    let toy = Toy::new(server.url(), rest.url());
    let mut run = Run::start(with_backfill(&toy), None);

    run.until_ids(1..=7).await;
    assert_eq!(ids(&run.seen), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(run.stat(|s| &s.backfilled), 5);
    assert_eq!(server.connections(), 1);
    assert_eq!(run.stat(|s| &s.reconnects), 0);
    assert_eq!(rest.requests().len(), 2, "one backfill, two pages");
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_restarted_run_backfills_from_the_seeded_cursor_first() {
    let book = Book::with(1..=6);
    let rest = rest_server(&book);
    let server = WsServer::scripted(vec![Step::Expect(1), Step::Send(wire(7))]).unwrap();
    let toy = Toy::new(server.url(), rest.url());
    let seed = Cursor {
        trade_id: TradeId::from_u64(3),
        timestamp: Timestamp::parse_rfc3339(&time(3)).unwrap(),
    };
    let mut run = Run::start(with_backfill(&toy), Some(seed));

    assert_eq!(ids(&run.batch().await), [4, 5, 6]);
    assert_eq!(ids(&run.batch().await), [7]);
    assert_eq!(run.stat(|s| &s.backfilled), 3);
    assert_eq!(run.stat(|s| &s.reconnects), 0);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_cancel_returns_ok_promptly_while_streaming() {
    let server = WsServer::scripted(vec![Step::Expect(1), Step::Send(wire(1))]).unwrap();
    let toy = Toy::new(server.url(), unused_rest());
    let mut run = Run::start(stream(&toy), None);
    run.batch().await;
    run.stop().await.unwrap();
    // The driver said goodbye with a close frame, so the server's side ended too.
    let deadline = Instant::now() + WAIT;
    while server.finished_connections() < 1 {
        assert!(Instant::now() < deadline, "the connection was not closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stream_cancel_returns_ok_promptly_during_backoff() {
    let toy = Toy::new(refused_url("ws"), unused_rest());
    let exchange = StreamExchange::new("toy", Arc::new(toy)).with_backoff(Backoff::new(
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    let run = Run::start(exchange, None);
    run.wait_stat(|s| &s.errors, 1).await;
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_cancel_returns_ok_promptly_during_a_backfill_request() {
    let rest =
        HttpServer::start(|_| async { Response::json("{}").delayed(Duration::from_secs(60)) })
            .unwrap();
    let server = WsServer::scripted(vec![Step::Expect(1)]).unwrap();
    let toy = Toy::new(server.url(), rest.url());
    let seed = Cursor {
        trade_id: TradeId::from_u64(3),
        timestamp: Timestamp::parse_rfc3339(&time(3)).unwrap(),
    };
    let run = Run::start(
        with_backfill(&toy).with_request_timeout(Duration::from_secs(60)),
        Some(seed),
    );
    rest.wait_requests(1, WAIT).await.unwrap();
    run.stop().await.unwrap();
}

#[tokio::test]
async fn stream_non_websocket_url_is_a_terminal_config_error() {
    let toy = Toy::new(Url::parse("http://127.0.0.1:1/").unwrap(), unused_rest());
    let run = Run::start(stream(&toy), None);
    let err = tokio::time::timeout(PROMPT, run.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ExchangeError::Config(_)), "{err}");
    assert!(err.is_terminal());
}

/// A URL on which nothing listens.
fn refused_url(scheme: &str) -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Url::parse(&format!("{scheme}://{addr}/")).unwrap()
}

#[tokio::test]
async fn stream_backoff_grows_between_failed_connection_attempts() {
    // A server that accepts TCP and hangs up at once: every WebSocket handshake fails.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let _ = tx.send(Instant::now());
            drop(sock);
        }
    });
    let toy = Toy::new(Url::parse(&format!("ws://{addr}/")).unwrap(), unused_rest());
    let exchange = StreamExchange::new("toy", Arc::new(toy)).with_backoff(
        Backoff::new(Duration::from_millis(10), Duration::from_millis(640)).without_jitter(),
    );
    let run = Run::start(exchange, None);

    let mut at = Vec::new();
    for _ in 0..7 {
        at.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let nominal = [10u64, 20, 40, 80, 160, 320];
    for (gap, want) in gaps.iter().zip(nominal) {
        // Never earlier than the backoff says (a little slack for when the accept was seen).
        assert!(
            *gap + Duration::from_millis(5) >= Duration::from_millis(want),
            "{gaps:?}"
        );
    }
    // And the first waits are short: the delay really grows rather than being long throughout.
    assert!(gaps[0] < Duration::from_millis(250), "{gaps:?}");
    assert!(run.stat(|s| &s.errors) >= 6);
    run.stop().await.unwrap();
    acceptor.abort();
}

// ---------------------------------------------------------------------------------------------
// Poll driver.

fn poller(rest: &HttpServer) -> PollExchange<Toy> {
    let toy = Toy::new(Url::parse("ws://127.0.0.1:1/").unwrap(), rest.url());
    PollExchange::new("toy", Arc::new(toy), Duration::from_millis(100))
        .with_timeout(Duration::from_secs(5))
        .with_backoff(fast_backoff())
}

#[tokio::test]
async fn poll_reads_one_page_first_then_pages_back_to_the_cursor_and_sends_only_new_trades() {
    let book = Book::with(1..=5);
    let rest = rest_server(&book);
    let mut run = Run::start(poller(&rest), None);

    // First poll: the newest page only.
    assert_eq!(ids(&run.batch().await), [3, 4, 5]);
    assert_eq!(rest.requests().len(), 1);

    // Seven new trades: three pages back to the cursor (5), in one batch, ascending.
    let before = rest.requests().len();
    book.add(6..=12);
    assert_eq!(ids(&run.batch().await), [6, 7, 8, 9, 10, 11, 12]);
    let reqs = rest.requests();
    let walked: Vec<Option<&str>> = reqs[before..]
        .iter()
        .map(|r| r.query_param("before"))
        .collect();
    assert_eq!(walked, [None, Some("10"), Some("7")]);

    // Nothing new: further polls send nothing. Once three more polls began, the first of
    // them has finished, and anything it found would already be in the channel.
    let n = rest.requests().len();
    rest.wait_requests(n + 3, WAIT).await.unwrap();
    run.assert_nothing_pending();
    assert_eq!(run.stat(|s| &s.trades), 10);
    assert_eq!(run.stat(|s| &s.errors), 0);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_honours_retry_after_on_429() {
    let book = Book::with(1..=2);
    book.fault(Response::status(429).with_header("retry-after", "1"));
    let rest = rest_server(&book);
    // A backoff far longer than the Retry-After: only honouring the header delivers in time.
    let exchange = poller(&rest).with_backoff(Backoff::new(
        Duration::from_secs(30),
        Duration::from_secs(30),
    ));
    let started = Instant::now();
    let mut run = Run::start(exchange, None);

    assert_eq!(ids(&run.batch().await), [1, 2]);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(run.stat(|s| &s.errors), 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_retries_server_errors_then_delivers() {
    let book = Book::with(1..=2);
    book.fault(Response::status(500));
    book.fault(Response::status(503));
    let rest = rest_server(&book);
    let mut run = Run::start(poller(&rest), None);

    assert_eq!(ids(&run.batch().await), [1, 2]);
    assert_eq!(run.stat(|s| &s.errors), 2);
    assert_eq!(
        rest.requests().len(),
        3,
        "the same request, tried three times"
    );
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_gives_up_after_the_attempt_budget_and_tries_again_next_tick() {
    let book = Book::with(1..=2);
    for _ in 0..3 {
        book.fault(Response::status(502));
    }
    let rest = rest_server(&book);
    let mut run = Run::start(poller(&rest).with_attempts(2), None);

    assert_eq!(ids(&run.batch().await), [1, 2]);
    assert_eq!(run.stat(|s| &s.errors), 3);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_client_errors_skip_the_tick_without_failing() {
    let book = Book::with(1..=2);
    book.fault(Response::status(404));
    let rest = rest_server(&book);
    let mut run = Run::start(poller(&rest), None);

    assert_eq!(ids(&run.batch().await), [1, 2]);
    assert_eq!(run.stat(|s| &s.errors), 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_malformed_body_is_counted_and_skipped() {
    let book = Book::with(1..=2);
    book.fault(Response::json(r#"{"trades":[{"id":1,"p":"#));
    book.fault(Response::json(r#"{"trades":[],"older":null,"extra":1}"#));
    let rest = rest_server(&book);
    let mut run = Run::start(poller(&rest), None);

    assert_eq!(ids(&run.batch().await), [1, 2]);
    assert_eq!(run.stat(|s| &s.parse_errors), 2);
    assert_eq!(run.stat(|s| &s.errors), 0);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_cancel_returns_ok_promptly_during_a_request() {
    let rest =
        HttpServer::start(|_| async { Response::json("{}").delayed(Duration::from_secs(60)) })
            .unwrap();
    let run = Run::start(poller(&rest).with_timeout(Duration::from_secs(60)), None);
    rest.wait_requests(1, WAIT).await.unwrap();
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_cancel_returns_ok_promptly_during_a_retry_wait() {
    let book = Book::with(1..=2);
    book.fault(Response::status(429).with_header("retry-after", "120"));
    let rest = rest_server(&book);
    let run = Run::start(poller(&rest), None);
    run.wait_stat(|s| &s.errors, 1).await;
    run.stop().await.unwrap();
}

#[tokio::test]
async fn poll_transport_errors_are_counted_and_retried() {
    let toy = Toy::new(
        Url::parse("ws://127.0.0.1:1/").unwrap(),
        refused_url("http"),
    );
    let exchange = PollExchange::new("toy", Arc::new(toy), Duration::from_millis(50))
        .with_backoff(fast_backoff());
    let run = Run::start(exchange, None);
    run.wait_stat(|s| &s.errors, 3).await;
    run.stop().await.unwrap();
}
