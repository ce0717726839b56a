//! The HTTP listener of a [`Monitor`]: metrics, health and the status page.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{encode_metrics, render_page, Monitor};

/// How often the status page reloads itself, in seconds.
const PAGE_REFRESH_SECONDS: u32 = 2;

/// How long one connection may take to send its request; a client that sends nothing is
/// dropped rather than held.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ServeError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// A running listener, from [`serve`]. It stops when its shutdown token is cancelled;
/// [`join`](Server::join) waits for that.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address it listens on (with the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until it has stopped.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the status listener failed");
        }
    }
}

/// Serves `monitor` on `addr` until `shutdown` is cancelled:
///
/// - `GET /metrics`: Prometheus metrics in the text format (version 0.0.4);
/// - `GET /health/live`: 200 while the process runs;
/// - `GET /health/ready`: 200 while the feeder is ready ([`Status::ready`](super::Status::ready)),
///   503 otherwise; the body is the status in JSON, each stream's and writer's state included;
/// - `GET /`: the status page, self-contained HTML that reloads itself.
///
/// Binds at once (so a taken port is an error here, not later). The address is the caller's
/// to choose; `127.0.0.1` keeps it to the machine.
///
/// ```no_run
/// # async fn demo(monitor: feeder_core::observe::Monitor) -> Result<(), feeder_core::observe::ServeError> {
/// use tokio_util::sync::CancellationToken;
/// let stop = CancellationToken::new();
/// let server = feeder_core::observe::serve("127.0.0.1:9898".parse().unwrap(), monitor, stop.clone()).await?;
/// println!("metrics on http://{}/metrics", server.local_addr());
/// // ...
/// stop.cancel();
/// server.join().await;
/// # Ok(()) }
/// ```
pub async fn serve(
    addr: SocketAddr,
    monitor: Monitor,
    shutdown: CancellationToken,
) -> Result<Server, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    tracing::info!(addr = %local, "serving /metrics, /health/live, /health/ready and the status page");
    let task = tokio::spawn(accept_loop(listener, monitor, shutdown));
    Ok(Server { addr: local, task })
}

async fn accept_loop(listener: TcpListener, monitor: Monitor, shutdown: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, monitor.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "status listener: accept failed");
                    // Out of descriptors, say: give the system a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Requests in flight are short; the rest are not waited for.
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn connection(stream: TcpStream, monitor: Monitor) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let monitor = monitor.clone();
        async move { Ok::<_, Infallible>(respond(&req, &monitor)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "status listener: connection ended with an error");
    }
}

fn respond<B>(req: &hyper::Request<B>, monitor: &Monitor) -> hyper::Response<Full<Bytes>> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return reply(405, "text/plain; charset=utf-8", "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(
            200,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            encode_metrics(&monitor.status()),
        ),
        "/health/live" => reply(200, "application/json", "{\"live\":true}\n".into()),
        "/health/ready" => {
            let status = monitor.status();
            let body = serde_json::to_string_pretty(&status)
                .unwrap_or_else(|e| format!("{{\"ready\":{},\"error\":\"{e}\"}}", status.ready));
            reply(
                if status.ready { 200 } else { 503 },
                "application/json",
                body + "\n",
            )
        }
        "/" | "/index.html" => reply(
            200,
            "text/html; charset=utf-8",
            render_page(&monitor.status(), PAGE_REFRESH_SECONDS),
        ),
        _ => reply(404, "text/plain; charset=utf-8", "not found\n".into()),
    }
}

fn reply(status: u16, content_type: &str, body: String) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn every_endpoint_answers_and_the_listener_stops_with_its_token() {
        let monitor = Monitor::new();
        let stop = CancellationToken::new();
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            monitor.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        assert!(get(addr, "/health/live").await.starts_with("HTTP/1.1 200"));
        let ready = get(addr, "/health/ready").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "not running: {ready}");
        assert!(ready.contains("\"ready\": false"), "{ready}");
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("crypto_feeder_ready 0"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(get(addr, "/")
            .await
            .contains("<title>crypto-feeder status</title>"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server.join())
            .await
            .expect("stops");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }
}
