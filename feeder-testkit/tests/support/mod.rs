//! Plumbing shared by the mock venue round trips: a plain WebSocket / HTTP client that talks
//! to a mock the way a driver would and hands what it receives to the real parsers.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{
    Cursor, Frame, HttpRequest, HttpResponse, Page, PollRequest, PollVenue, StreamVenue, WsMessage,
};
use feeder_core::model::{Timestamp, Trade, TradeId};
use feeder_core::ParseError;
use feeder_testkit::venues::{MockConfig, MockTrade};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one read of a round trip may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Frames read in a row before a reader gives up looking for one of the kind it wants;
/// control frames are few, so this is only a bound.
const MAX_SKIPPED: usize = 1_000;

/// A client connection to a mock venue.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `venue.url()` and sends its subscribe messages.
pub async fn connect<V: StreamVenue>(venue: &V, cfg: &ExchangeConfig) -> Client {
    let url = venue.url(&cfg.symbols).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    for m in venue.subscribe(&cfg.symbols) {
        send(&mut ws, m).await;
    }
    ws
}

/// Sends `m` as the frame type it names.
pub async fn send(ws: &mut Client, m: WsMessage) {
    let msg = match m {
        WsMessage::Text(t) => Message::text(t),
        WsMessage::Binary(b) => Message::binary(b),
        WsMessage::Ping(p) => Message::Ping(p.into()),
    };
    ws.send(msg).await.unwrap();
}

/// The next message of any kind, or `None` when the stream ended or failed.
pub async fn next_message(ws: &mut Client) -> Option<Message> {
    match tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("nothing arrived in time")
    {
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => None,
        Some(Ok(m)) => Some(m),
    }
}

/// The next text frame, or `None` when the stream ended or failed.
pub async fn next_text(ws: &mut Client) -> Option<String> {
    for _ in 0..MAX_SKIPPED {
        match next_message(ws).await? {
            Message::Text(t) => return Some(t.as_str().to_owned()),
            _ => continue,
        }
    }
    None
}

/// The payload of the next text or binary frame, or `None` when the stream ended or failed.
pub async fn next_frame(ws: &mut Client) -> Option<Vec<u8>> {
    for _ in 0..MAX_SKIPPED {
        match next_message(ws).await? {
            Message::Text(t) => return Some(t.as_str().as_bytes().to_vec()),
            Message::Binary(b) => return Some(b.to_vec()),
            _ => continue,
        }
    }
    None
}

/// Reads text frames until `n` trades were parsed; returns them, the other frames seen and
/// how many data frames carried them.
pub async fn read_trades<V: StreamVenue>(
    venue: &V,
    ws: &mut Client,
    n: usize,
) -> (Vec<Trade>, Vec<Frame>, usize) {
    read(venue, ws, n, false).await
}

/// [`read_trades`] over text and binary frames alike.
pub async fn read_frames<V: StreamVenue>(
    venue: &V,
    ws: &mut Client,
    n: usize,
) -> (Vec<Trade>, Vec<Frame>, usize) {
    read(venue, ws, n, true).await
}

async fn read<V: StreamVenue>(
    venue: &V,
    ws: &mut Client,
    n: usize,
    binary_too: bool,
) -> (Vec<Trade>, Vec<Frame>, usize) {
    let mut trades = Vec::new();
    let mut frames = Vec::new();
    let mut data_frames = 0;
    // Bounded: each read waits at most WAIT and the count of frames is capped.
    for _ in 0..n * 4 + 16 {
        if trades.len() >= n {
            break;
        }
        let f = if binary_too {
            next_frame(ws).await
        } else {
            next_text(ws).await.map(String::into_bytes)
        }
        .expect("stream ended early");
        match venue.parse(&f, Timestamp::now(), &mut trades) {
            Ok(Frame::Data) => data_frames += 1,
            Ok(other) => frames.push(other),
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(&f)),
        }
    }
    (trades, frames, data_frames)
}

/// The parsed trades are exactly the published ones, in order.
pub fn assert_exact(trades: &[Trade], published: &[MockTrade]) {
    assert_eq!(trades.len(), published.len());
    for (t, p) in trades.iter().zip(published) {
        assert!(p.matches(t), "{t:?}\n!=\n{p:?}");
    }
}

/// Sends `req` as a GET with its headers.
pub async fn get(req: &HttpRequest) -> reqwest::Response {
    let mut b = reqwest::Client::new().get(req.url.as_str());
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    b.send().await.unwrap()
}

/// Fetches a page of the first configured symbol the way the poll driver would, and parses it.
pub async fn fetch_page<V: PollVenue>(
    venue: &V,
    cfg: &ExchangeConfig,
    req: PollRequest<'_>,
    out: &mut Vec<Trade>,
) -> Result<Page, ParseError> {
    let symbol = &cfg.symbols[0];
    let req = venue.trades_request(symbol, req).unwrap();
    let resp = get(&req).await;
    assert_eq!(resp.status(), 200, "{}", req.url);
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let r = HttpResponse {
        status: 200,
        headers: &headers,
        body: &body,
    };
    venue.parse_trades(symbol, &r, Timestamp::now(), out)
}

/// A request for the page the venue named `p`.
pub fn page(p: &str) -> PollRequest<'_> {
    PollRequest {
        last_seen: None,
        page: Some(p),
    }
}

/// A mock whose venue heartbeats every `every`; an hour keeps heartbeats out of a test.
pub fn heartbeat_every(every: Duration) -> MockConfig {
    MockConfig {
        heartbeat_every: every,
        ..MockConfig::default()
    }
}

/// Parses a REST body of the first configured symbol, served with status 200.
pub fn parse_body<V: PollVenue>(
    venue: &V,
    cfg: &ExchangeConfig,
    body: &[u8],
    out: &mut Vec<Trade>,
) -> Result<Page, ParseError> {
    let headers = http::HeaderMap::new();
    let r = HttpResponse {
        status: 200,
        headers: &headers,
        body,
    };
    venue.parse_trades(&cfg.symbols[0], &r, Timestamp::now(), out)
}

/// Fetches and parses the page the venue names after `after` for the first configured symbol.
pub async fn fetch_forward<V: PollVenue>(
    venue: &V,
    cfg: &ExchangeConfig,
    after: &Cursor,
    out: &mut Vec<Trade>,
) -> Result<Page, ParseError> {
    let symbol = &cfg.symbols[0];
    let req = venue
        .forward_request(symbol, after)
        .expect("the venue pages forward")
        .unwrap();
    let resp = get(&req).await;
    assert_eq!(resp.status(), 200, "{}", req.url);
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let r = HttpResponse {
        status: 200,
        headers: &headers,
        body: &body,
    };
    venue.parse_trades(symbol, &r, Timestamp::now(), out)
}

/// Walks forward from `from` the way the backfill does: each page keeps only the trades
/// newer than the cursor, oldest first, and moves the cursor to its newest, until a page
/// brings nothing new. Returns the trades in order and how many requests were made; panics
/// past `max_pages` requests.
pub async fn walk_forward<V: PollVenue>(
    venue: &V,
    cfg: &ExchangeConfig,
    from: &MockTrade,
    max_pages: usize,
) -> (Vec<Trade>, usize) {
    let mut cursor = Cursor {
        trade_id: TradeId::from_u64(from.trade_id),
        timestamp: from.time,
    };
    let mut all = Vec::new();
    for pages in 1..=max_pages {
        let mut page = Vec::new();
        fetch_forward(venue, cfg, &cursor, &mut page).await.unwrap();
        page.retain(|t| cursor.is_older_than(t));
        page.sort_by_key(|t| t.trade_id.as_number());
        let Some(last) = page.last() else {
            return (all, pages);
        };
        cursor = Cursor {
            trade_id: last.trade_id.clone(),
            timestamp: last.timestamp,
        };
        all.extend(page);
    }
    panic!("still new trades after {max_pages} pages");
}

/// The trades of the first configured symbol published after `from`, in order.
pub fn published_after(
    published: &[MockTrade],
    cfg: &ExchangeConfig,
    from: &MockTrade,
) -> Vec<MockTrade> {
    published
        .iter()
        .filter(|t| t.symbol == cfg.symbols[0] && t.trade_id > from.trade_id)
        .cloned()
        .collect()
}
