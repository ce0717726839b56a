//! A loopback TCP proxy that can cut the line to a real server, for testing how clients of a
//! store (a database, a broker, an object store) ride out an outage.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use feeder_testkit::proxy::TcpProxy;
//! let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await?;
//! // Point the client at proxy.addr() instead of the server.
//! proxy.cut(); // open connections drop, new ones are closed at once
//! proxy.restore(); // new connections reach the server again
//! proxy.set_latency(std::time::Duration::from_millis(100)); // a slow store from now on
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A TCP proxy on `127.0.0.1:0` in front of one upstream address.
///
/// While cut, the listening port stays bound (so clients reconnect to the same address once
/// it is restored) but every connection is closed as soon as it is accepted, and the
/// connections that were open are dropped. Stops when dropped: the accept loop and every
/// connection task are owned by the proxy and aborted with it.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    cut: AtomicBool,
    /// Cancelled by `cut` to drop the connections of the current generation; replaced by
    /// `restore` so that new connections are not born cancelled.
    generation: Mutex<CancellationToken>,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Delay before each chunk read from either side is passed on, in milliseconds.
    latency_ms: AtomicU64,
}

impl Shared {
    fn token(&self) -> CancellationToken {
        match self.generation.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            generation: Mutex::new(CancellationToken::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        Ok(TcpProxy {
            addr,
            upstream,
            shared,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Drops every open connection and closes new ones as soon as they are accepted.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.token().cancel();
    }

    /// Lets new connections through to the server again.
    pub fn restore(&self) {
        if let Ok(mut g) = self.shared.generation.lock() {
            if g.is_cancelled() {
                *g = CancellationToken::new();
            }
        }
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Holds each chunk read from either side for `latency` before passing it on, in open
    /// connections and new ones: a store that stays slow (a far region, an overloaded disk).
    /// Zero passes bytes straight through.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Connections passed through to the server so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once because the proxy was cut.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    // Dropped (and with it every connection task) when the accept loop is aborted.
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((client, _)) = accepted else {
            // Accept errors (out of descriptors, ...) are transient for a test proxy.
            tokio::task::yield_now().await;
            continue;
        };
        if shared.cut.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            // A zero linger makes the close a reset, as a dead server's host would answer.
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let token = shared.token();
        conns.spawn(pipe(client, upstream, token, Arc::clone(&shared)));
    }
}

async fn pipe(
    mut client: TcpStream,
    upstream: SocketAddr,
    cut: CancellationToken,
    shared: Arc<Shared>,
) {
    let mut server = tokio::select! {
        s = TcpStream::connect(upstream) => match s {
            Ok(s) => s,
            Err(_) => return,
        },
        () = cut.cancelled() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut_off = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::join!(
                relay(client_read, server_write, &shared),
                relay(server_read, client_write, &shared),
            )
        };
        tokio::select! {
            _ = both => false,
            () = cut.cancelled() => true,
        }
    };
    if cut_off {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copies one direction, chunk by chunk, each held for the proxy's latency; shuts the
/// writing side down when the reading side ends, as a half-close passes through. A reading
/// side that fails (a peer killed with unread data answers with a reset) ends the writing
/// side too: the other peer must learn that its peer is gone, as it would without the
/// proxy, or a server keeps the dead client's session (and its locks) open.
async fn relay(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = to.shutdown().await;
                return Err(e);
            }
        };
        if n == 0 {
            return to.shutdown().await;
        }
        let latency = shared.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An upstream that echoes every connection.
    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut set = JoinSet::new();
            while let Ok((mut s, _)) = listener.accept().await {
                set.spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, task)
    }

    async fn round_trip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn a_client_that_resets_closes_its_server_connection_too() {
        // A server that reads nothing and waits to see its client go.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let proxy = TcpProxy::start(upstream).await.unwrap();
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        // Killed with unread data on its side: its host answers with a reset.
        server.write_all(b"unread").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while proxy.connections() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        // The bytes are at the client, unread, before it dies: nothing is in flight.
        tokio::time::timeout(Duration::from_secs(5), client.readable())
            .await
            .unwrap()
            .unwrap();
        client.set_zero_linger().unwrap();
        drop(client);
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the server still holds the dead client's connection: {read:?}"
        );
    }

    #[tokio::test]
    async fn passes_bytes_then_cuts_then_restores() {
        let (up, _server) = echo_server().await;
        let proxy = TcpProxy::start(up).await.unwrap();
        assert_eq!(round_trip(proxy.addr(), b"hello").await.unwrap(), b"hello");

        // An open connection is dropped by the cut.
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        proxy.cut();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            open.read_to_end(&mut rest),
        )
        .await
        .expect("the cut did not drop the open connection");
        assert!(ended.is_err() || rest.is_empty());

        // New connections fail while cut.
        assert!(round_trip(proxy.addr(), b"again").await.is_err());
        assert!(proxy.refused() >= 1);

        proxy.restore();
        assert_eq!(round_trip(proxy.addr(), b"back").await.unwrap(), b"back");
        assert_eq!(proxy.connections(), 3);
    }
}
