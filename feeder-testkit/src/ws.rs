//! A WebSocket server on `127.0.0.1:0`, driven by a handler per connection or by a script.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use feeder_testkit::ws::{Step, WsServer};
//!
//! // Every connection: wait for the subscribe message, send two frames, then drop the socket.
//! let server = WsServer::scripted(vec![
//!     Step::Expect(1),
//!     Step::Send(r#"{"id":1}"#.into()),
//!     Step::Send(r#"{"id":2}"#.into()),
//!     Step::Drop,
//! ])?;
//! let url = server.url(); // ws://127.0.0.1:PORT/
//! # let _ = url; Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use crate::log::{Log, WaitTimeout};

/// The error of a WebSocket operation (the client went away, the socket failed).
pub type WsError = tokio_tungstenite::tungstenite::Error;

/// How long [`WsConn::close`] waits for the client to answer the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A message a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A protocol ping (already answered with a pong).
    Ping(Vec<u8>),
    /// A protocol pong.
    Pong(Vec<u8>),
}

impl Incoming {
    /// True for text and binary frames, false for control frames.
    pub fn is_data(&self) -> bool {
        matches!(self, Incoming::Text(_) | Incoming::Binary(_))
    }

    /// The text of a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Incoming::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A message a client sent, with the connection it came on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The connection's index: 0 for the first accepted, 1 for the next, ...
    pub conn: usize,
    /// The message.
    pub message: Incoming,
}

/// What the server shares with its connection tasks.
#[derive(Debug)]
struct Shared {
    accepted: AtomicUsize,
    finished: AtomicUsize,
    /// The request path of every accepted connection, in order.
    paths: Arc<Log<String>>,
    received: Arc<Log<Received>>,
}

/// One accepted WebSocket connection, handed to the server's handler.
///
/// Every method returns an error or `None` once the client is gone; none panics.
pub struct WsConn {
    index: usize,
    path: String,
    peer: SocketAddr,
    ws: WebSocketStream<TcpStream>,
    received: Arc<Log<Received>>,
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn")
            .field("index", &self.index)
            .field("path", &self.path)
            .field("peer", &self.peer)
            .finish()
    }
}

impl WsConn {
    /// The connection's index: 0 for the first accepted, 1 for the next, ...
    pub fn index(&self) -> usize {
        self.index
    }

    /// The path and query of the upgrade request (`/ws?streams=btcusdt@trade`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The next text or binary message, answering pings on the way; `None` once the client
    /// closed or dropped the connection.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            let msg = self.recv_frame().await?;
            if msg.is_data() {
                return Some(msg);
            }
        }
    }

    /// The next message of any kind, pings and pongs included (pings are answered before
    /// they are returned); `None` once the client closed or dropped the connection.
    pub async fn recv_frame(&mut self) -> Option<Incoming> {
        loop {
            let msg = match self.ws.next().await? {
                Ok(m) => m,
                Err(_) => return None,
            };
            let incoming = match msg {
                Message::Text(t) => Incoming::Text(t.as_str().to_owned()),
                Message::Binary(b) => Incoming::Binary(b.to_vec()),
                Message::Ping(p) => {
                    // The pong is queued by the library; flush so it leaves now rather than
                    // with the next write.
                    if self.ws.flush().await.is_err() {
                        return None;
                    }
                    Incoming::Ping(p.to_vec())
                }
                Message::Pong(p) => Incoming::Pong(p.to_vec()),
                Message::Close(_) => {
                    // Complete the closing handshake; errors mean the client is gone anyway.
                    let _ = self.ws.flush().await;
                    return None;
                }
                Message::Frame(_) => continue,
            };
            self.received.push(Received {
                conn: self.index,
                message: incoming.clone(),
            });
            return Some(incoming);
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), WsError> {
        self.ws.send(Message::text(text.into())).await
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<(), WsError> {
        self.ws.send(Message::binary(data)).await
    }

    /// Queues `frames` as text frames and writes them in one flush.
    pub async fn send_burst(&mut self, frames: &[String]) -> Result<(), WsError> {
        for f in frames {
            self.ws.feed(Message::text(f.clone())).await?;
        }
        self.ws.flush().await
    }

    /// Sends a protocol ping.
    pub async fn send_ping(&mut self, payload: Vec<u8>) -> Result<(), WsError> {
        self.ws.send(Message::Ping(payload.into())).await
    }

    /// Sends a close frame and waits (briefly) for the client to answer it.
    pub async fn close(&mut self) -> Result<(), WsError> {
        self.ws.close(None).await?;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
        Ok(())
    }

    /// Drops the TCP connection without a close frame, as a crashed server or a broken
    /// network would.
    pub fn drop_abruptly(self) {
        drop(self.ws);
    }

    /// Holds the connection open without sending anything, answering pings, until the client
    /// leaves.
    pub async fn stall(&mut self) {
        while self.recv_frame().await.is_some() {}
    }

    /// Holds the connection open as a server whose application hung while its WebSocket
    /// library goes on: a protocol Ping every `every`, and a Pong to each Ping of the client.
    /// Nothing else is sent. Returns when the client leaves.
    pub async fn hang_pinging(&mut self, every: Duration) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                msg = self.recv_frame() => if msg.is_none() { return },
                _ = ticks.tick() => if self.send_ping(b"lib".to_vec()).await.is_err() { return },
            }
        }
    }

    /// Holds the connection open and reads nothing at all, not even pings: a peer that hung.
    /// Returns only when the server is dropped.
    pub async fn freeze(&mut self) {
        std::future::pending::<()>().await;
    }
}

/// One step of a scripted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for this many text or binary messages from the client.
    Expect(usize),
    /// Send a text frame.
    Send(String),
    /// Send a binary frame.
    SendBinary(Vec<u8>),
    /// Send these text frames in one write, as a busy server's buffer does: the client
    /// finds them all waiting at once.
    Burst(Vec<String>),
    /// Send a protocol ping.
    Ping(Vec<u8>),
    /// Wait for a protocol pong from the client.
    ExpectPong,
    /// Wait this long (pacing only; tests synchronize on [`WsServer`]'s waits).
    Pause(Duration),
    /// Send a close frame and end the connection.
    Close,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Hold the connection open silently until the client leaves.
    Stall,
}

/// Plays `script` on `conn`. After the last step the connection is held open silently.
async fn play(mut conn: WsConn, script: Arc<Vec<Step>>) {
    for step in script.iter() {
        let ok = match step {
            Step::Expect(n) => {
                let mut ok = true;
                for _ in 0..*n {
                    if conn.recv().await.is_none() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Step::Send(text) => conn.send_text(text.clone()).await.is_ok(),
            Step::SendBinary(data) => conn.send_binary(data.clone()).await.is_ok(),
            Step::Burst(frames) => conn.send_burst(frames).await.is_ok(),
            Step::Ping(payload) => conn.send_ping(payload.clone()).await.is_ok(),
            Step::ExpectPong => loop {
                match conn.recv_frame().await {
                    Some(Incoming::Pong(_)) => break true,
                    Some(_) => {}
                    None => break false,
                }
            },
            Step::Pause(d) => {
                tokio::time::sleep(*d).await;
                true
            }
            Step::Close => {
                let _ = conn.close().await;
                return;
            }
            Step::Drop => {
                conn.drop_abruptly();
                return;
            }
            Step::Stall => {
                conn.stall().await;
                return;
            }
        };
        if !ok {
            return;
        }
    }
    conn.stall().await;
}

/// A WebSocket server on `127.0.0.1:0`. Stops (and drops every connection) when dropped.
#[derive(Debug)]
pub struct WsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for WsServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks in a JoinSet: aborting it drops them all.
        self.task.abort();
    }
}

impl WsServer {
    /// Starts a server that calls `handler` for every accepted connection. Must be called
    /// within a Tokio runtime.
    pub fn start<F, Fut>(handler: F) -> std::io::Result<Self>
    where
        F: Fn(WsConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            accepted: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            paths: Log::new(),
            received: Log::new(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::new(handler), shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Starts a server on which every connection plays `script`.
    pub fn scripted(script: Vec<Step>) -> std::io::Result<Self> {
        let script = Arc::new(script);
        Self::start(move |conn| play(conn, script.clone()))
    }

    /// Starts a server on which connection `i` plays `scripts[i]`; connections beyond the
    /// list are held open silently.
    pub fn scripted_per_connection(scripts: Vec<Vec<Step>>) -> std::io::Result<Self> {
        let scripts: Arc<Vec<Arc<Vec<Step>>>> =
            Arc::new(scripts.into_iter().map(Arc::new).collect());
        Self::start(move |conn| {
            let script = scripts
                .get(conn.index())
                .cloned()
                .unwrap_or_else(|| Arc::new(vec![Step::Stall]));
            play(conn, script)
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> Url {
        // A socket address always forms a valid URL authority.
        Url::parse(&format!("ws://{}/", self.addr)).unwrap_or_else(|_| unreachable!())
    }

    /// WebSocket connections accepted so far (handshake completed).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose handler has returned.
    pub fn finished_connections(&self) -> usize {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// The request paths (with query) of the accepted connections, in order.
    pub fn paths(&self) -> Vec<String> {
        self.shared.paths.snapshot()
    }

    /// Every message clients sent so far (pings and pongs included), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.snapshot()
    }

    /// Waits until `n` connections were accepted, at most `timeout`.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.shared.paths.wait(n, timeout).await.map(|_| ())
    }

    /// Waits until clients sent `n` text or binary messages in all, at most `timeout`;
    /// returns those messages.
    pub async fn wait_messages(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        self.shared
            .received
            .wait_counted(n, |r| r.message.is_data(), timeout)
            .await
    }

    /// Waits until `n` received messages match `pred`, at most `timeout`; returns those.
    pub async fn wait_received(
        &self,
        n: usize,
        pred: impl Fn(&Received) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        self.shared.received.wait_counted(n, pred, timeout).await
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, handler: Arc<F>, shared: Arc<Shared>)
where
    F: Fn(WsConn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "ws mock: accept failed");
                        continue;
                    }
                };
                tasks.spawn(serve(stream, peer, handler.clone(), shared.clone()));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn serve<F, Fut>(stream: TcpStream, peer: SocketAddr, handler: Arc<F>, shared: Arc<Shared>)
where
    F: Fn(WsConn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let mut path = String::from("/");
    // The error type is fixed by the handshake library's callback signature.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "ws mock: handshake failed");
            return;
        }
    };
    let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
    shared.paths.push(path.clone());
    let conn = WsConn {
        index,
        path,
        peer,
        ws,
        received: shared.received.clone(),
    };
    handler(conn).await;
    shared.finished.fetch_add(1, Ordering::SeqCst);
}
