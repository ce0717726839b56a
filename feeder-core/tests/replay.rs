//! A capture played back from code: `ReplayExchange` is an `Exchange` like any other, fed
//! here with a capture written through the public `Capture` API and a toy venue.

use std::sync::Arc;
use std::time::Duration;

use feeder_core::config::CaptureConfig;
use feeder_core::exchange::capture::{Capture, Direction, Kind, Record};
use feeder_core::exchange::{
    Completeness, Exchange, ExchangeContext, Frame, HttpRequest, HttpResponse, Input, Page,
    PollRequest, PollVenue, ReplayExchange, ReplaySource, StreamVenue, WsMessage,
};
use feeder_core::model::{parse_decimal, Gap, GapReason, Side, Symbol, Timestamp, Trade};
use feeder_core::{ExchangeError, ParseError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const S: i64 = 1_000_000_000;
/// Receive times: 2024-01-02T00:00:00Z.
const T0: i64 = 1_704_153_600 * S;

/// Frames `SYMBOL ID PRICE`; REST pages of `ID PRICE` lines. Trade `n` is at `T0 + n` s.
struct Toy;

fn trade(symbol: &Symbol, line: &str, received_at: Timestamp) -> Option<Trade> {
    let mut it = line.split_whitespace();
    let id: u64 = it.next()?.parse().ok()?;
    let price = parse_decimal(it.next()?).ok()?;
    Some(Trade {
        exchange: Arc::from("toy"),
        symbol: symbol.clone(),
        trade_id: id.to_string().as_str().into(),
        price,
        amount: parse_decimal("1").ok()?,
        side: Side::Buy,
        timestamp: Timestamp::from_unix_nanos(T0 + id as i64 * S, 9),
        received_at,
    })
}

impl StreamVenue for Toy {
    fn url(&self, _: &[Symbol]) -> Result<url::Url, ExchangeError> {
        Ok(url::Url::parse("ws://127.0.0.1:1/").expect("a URL"))
    }
    fn subscribe(&self, _: &[Symbol]) -> Vec<WsMessage> {
        Vec::new()
    }
    fn parse(
        &self,
        frame: &[u8],
        at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Frame, ParseError> {
        let text =
            std::str::from_utf8(frame).map_err(|_| ParseError::field("frame", "not UTF-8"))?;
        let (sym, rest) = text
            .split_once(' ')
            .ok_or(ParseError::field("frame", "no symbol"))?;
        let sym = Symbol::parse(sym).map_err(|_| ParseError::field("frame", "bad symbol"))?;
        out.push(trade(&sym, rest, at).ok_or(ParseError::field("frame", "bad trade"))?);
        Ok(Frame::Data)
    }
}

impl PollVenue for Toy {
    fn trades_request(&self, _: &Symbol, _: PollRequest<'_>) -> Result<HttpRequest, ExchangeError> {
        Ok(HttpRequest::get(
            url::Url::parse("http://127.0.0.1:1/").expect("a URL"),
        ))
    }
    fn parse_trades(
        &self,
        symbol: &Symbol,
        resp: &HttpResponse<'_>,
        at: Timestamp,
        out: &mut Vec<Trade>,
    ) -> Result<Page, ParseError> {
        assert_eq!(
            resp.headers.get("x-page").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let text =
            std::str::from_utf8(resp.body).map_err(|_| ParseError::field("frame", "not UTF-8"))?;
        // Newest first, as venues answer.
        for line in text.lines() {
            out.push(trade(symbol, line, at).ok_or(ParseError::field("frame", "bad trade"))?);
        }
        Ok(Page::default())
    }
}

fn at(secs: f64) -> Timestamp {
    Timestamp::from_unix_nanos(T0 + (secs * 1e9) as i64, 9)
}

fn rec(kind: Kind, dir: Direction, conn: u64, secs: f64, tag: &str, payload: Vec<u8>) -> Record {
    Record {
        kind,
        direction: dir,
        conn,
        time: at(secs),
        tag: tag.to_owned().into(),
        payload: payload.into(),
    }
}

fn progress(secs: f64, state: u8) -> Record {
    rec(
        Kind::Progress,
        Direction::Local,
        0,
        secs,
        "BTC-USD",
        vec![state],
    )
}

fn frame(secs: f64, text: &str) -> Record {
    rec(
        Kind::WsText,
        Direction::In,
        1,
        secs,
        "",
        text.as_bytes().to_vec(),
    )
}

/// A session: live, two trades, the connection lost, a backfill whose page repeats what was
/// read, live again, a recorded gap, and a last trade.
fn write_capture(dir: &std::path::Path) {
    let capture = Capture::new("toy", CaptureConfig::new(dir));
    let gap = Gap {
        exchange: Arc::from("toy"),
        symbol: Symbol::parse("BTC-USD").unwrap(),
        after_trade_id: "5".into(),
        before_trade_id: Some("7".into()),
        from: at(5.0),
        to: Some(at(7.0)),
        reason: GapReason::NoBackfill,
    };
    let mut answer = Vec::new();
    answer.extend_from_slice(&200u16.to_le_bytes());
    let h = b"x-page: 1\r\n";
    answer.extend_from_slice(&(h.len() as u32).to_le_bytes());
    answer.extend_from_slice(h);
    answer.extend_from_slice(b"4 103\n3 102\n2 101\n1 100\n");
    for r in [
        progress(0.5, 0),
        frame(1.0, "BTC-USD 1 100"),
        frame(2.0, "BTC-USD 2 101"),
        rec(
            Kind::Disconnect,
            Direction::Local,
            1,
            2.5,
            "closed",
            Vec::new(),
        ),
        progress(3.0, 1),
        rec(
            Kind::HttpRequest,
            Direction::Out,
            2,
            4.0,
            "BTC-USD",
            b"http://x/".to_vec(),
        ),
        rec(Kind::HttpResponse, Direction::In, 2, 4.5, "BTC-USD", answer),
        progress(5.0, 0),
        frame(6.0, "BTC-USD 5 104"),
        rec(
            Kind::Gap,
            Direction::Local,
            0,
            7.0,
            "BTC-USD",
            serde_json::to_vec(&gap).unwrap(),
        ),
        frame(30.0, "BTC-USD 6 105"),
        frame(40.0, "BTC-USD 9 109"),
    ] {
        capture.record(r);
    }
}

async fn play(source: ReplaySource) -> Vec<Input> {
    let (tx, mut rx) = mpsc::channel(1024);
    let ctx = ExchangeContext::new(
        vec![Symbol::parse("BTC-USD").unwrap()],
        tx,
        CancellationToken::new(),
    );
    let toy = Arc::new(Toy);
    let exchange = ReplayExchange::new("toy", source.clone())
        .with_stream(toy.clone())
        .with_poll(toy);
    tokio::time::timeout(Duration::from_secs(10), exchange.run(ctx))
        .await
        .expect("the replay ends")
        .expect("the replay succeeds");
    source.wait_finished(1).await;
    let mut inputs = Vec::new();
    while let Ok(i) = rx.try_recv() {
        inputs.push(i);
    }
    inputs
}

fn ids(inputs: &[Input]) -> Vec<(String, Timestamp)> {
    inputs
        .iter()
        .flat_map(Input::trades)
        .map(|t| (t.trade_id.to_string(), t.received_at))
        .collect()
}

fn up_to(inputs: &[Input]) -> Vec<i64> {
    inputs
        .iter()
        .filter_map(|i| match i {
            Input::Progress {
                completeness: Completeness::UpTo(t),
                ..
            } => Some(t.unix_nanos()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_capture_replays_through_the_venues_parsers_on_its_own_clock() {
    let dir = tempfile::tempdir().unwrap();
    write_capture(dir.path());
    let inputs = play(ReplaySource::new(dir.path())).await;

    // Trades keep their captured receive time; the page gives only what is newer than the
    // stream's cursor, oldest first.
    assert_eq!(
        ids(&inputs),
        [
            ("1".into(), at(1.0)),
            ("2".into(), at(2.0)),
            ("3".into(), at(4.5)),
            ("4".into(), at(4.5)),
            ("5".into(), at(6.0)),
            ("6".into(), at(30.0)),
            ("9".into(), at(40.0)),
        ]
    );
    // The replay first says the stream is behind, so the wall clock never runs it on.
    assert!(matches!(
        inputs[0],
        Input::Progress {
            completeness: Completeness::Behind,
            ..
        }
    ));
    assert!(inputs
        .iter()
        .any(|i| matches!(i, Input::Gap(g) if g.after_trade_id.as_str() == "5")));
    // Completeness on the capture's clock, never the replay's: live from trade 1 (read at
    // 1 s), by trade 2 (read at 2 s) it ran on to T0+2s; behind from 3 s, it stays at trade 2
    // until the backfill brings trades 3 and 4; live again, trade 5 (read at 6 s) runs on,
    // so that by trade 6 (read at 30 s) it is at T0+5s+24s, which trade 9 does not pass.
    assert_eq!(up_to(&inputs), [T0 + 2 * S, T0 + 4 * S, T0 + 29 * S]);

    // Twice the same.
    assert_eq!(play(ReplaySource::new(dir.path())).await, inputs);
}

#[tokio::test]
async fn a_window_of_receive_times_keeps_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    write_capture(dir.path());
    let source = ReplaySource::new(dir.path()).window(Some(at(5.0)), Some(at(35.0)));
    let inputs = play(source).await;
    assert_eq!(
        ids(&inputs),
        [("5".into(), at(6.0)), ("6".into(), at(30.0))]
    );
}

#[tokio::test]
async fn a_missing_capture_is_a_terminal_error_that_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::channel(8);
    let ctx = ExchangeContext::new(
        vec![Symbol::parse("BTC-USD").unwrap()],
        tx,
        CancellationToken::new(),
    );
    let source = ReplaySource::new(dir.path());
    let err = ReplayExchange::new("toy", source.clone())
        .with_stream(Arc::new(Toy))
        .run(ctx)
        .await
        .unwrap_err();
    assert!(err.is_terminal());
    assert!(err.to_string().contains("no capture files"), "{err}");
    // It counts as ended, so a program waiting for the replay does not hang.
    source.wait_finished(1).await;
}

/// The toy venue with consecutive ids, as Coinbase's are.
struct Consecutive;

impl StreamVenue for Consecutive {
    fn url(&self, s: &[Symbol]) -> Result<url::Url, ExchangeError> {
        Toy.url(s)
    }
    fn subscribe(&self, s: &[Symbol]) -> Vec<WsMessage> {
        Toy.subscribe(s)
    }
    fn parse(&self, f: &[u8], at: Timestamp, out: &mut Vec<Trade>) -> Result<Frame, ParseError> {
        StreamVenue::parse(&Toy, f, at, out)
    }
    fn ids_are_consecutive(&self) -> bool {
        true
    }
}

/// Live, the driver delivers the trades before a jump in consecutive ids, backfills the
/// hole, then delivers the rest of the burst; a replay that delivered the burst whole would
/// then drop the backfilled trades as older than the cursor.
#[tokio::test]
async fn a_jump_in_consecutive_ids_replays_in_the_order_the_driver_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::new("toy", CaptureConfig::new(dir.path()));
    let mut answer = Vec::new();
    answer.extend_from_slice(&200u16.to_le_bytes());
    let h = b"x-page: 1\r\n";
    answer.extend_from_slice(&(h.len() as u32).to_le_bytes());
    answer.extend_from_slice(h);
    answer.extend_from_slice(b"4 103\n3 102\n2 101\n");
    for r in [
        progress(0.5, 0),
        frame(1.0, "BTC-USD 1 100"),
        frame(2.0, "BTC-USD 2 101"),
        // One burst: 5 jumps over 3 and 4; 6 follows in the same burst.
        frame(3.0, "BTC-USD 5 104"),
        frame(3.0001, "BTC-USD 6 105"),
        progress(3.0002, 1),
        rec(
            Kind::HttpRequest,
            Direction::Out,
            2,
            3.1,
            "BTC-USD",
            b"http://x/".to_vec(),
        ),
        rec(Kind::HttpResponse, Direction::In, 2, 3.2, "BTC-USD", answer),
        progress(3.3, 0),
        frame(4.0, "BTC-USD 7 106"),
    ] {
        capture.record(r);
    }
    drop(capture);
    let (tx, mut rx) = mpsc::channel(1024);
    let ctx = ExchangeContext::new(
        vec![Symbol::parse("BTC-USD").unwrap()],
        tx,
        CancellationToken::new(),
    );
    let source = ReplaySource::new(dir.path());
    ReplayExchange::new("toy", source)
        .with_stream(Arc::new(Consecutive))
        .with_poll(Arc::new(Toy))
        .run(ctx)
        .await
        .unwrap();
    let mut inputs = Vec::new();
    while let Ok(i) = rx.try_recv() {
        inputs.push(i);
    }
    let got: Vec<String> = ids(&inputs).into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, ["1", "2", "3", "4", "5", "6", "7"]);
}
