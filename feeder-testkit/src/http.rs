//! An HTTP/1.1 server on `127.0.0.1:0`, driven by a handler or by queued responses per path.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use feeder_testkit::http::{HttpServer, Response};
//!
//! // `/trades` answers 429 once, then the same page forever.
//! let server = HttpServer::scripted([(
//!     "/trades",
//!     vec![
//!         Response::status(429).with_header("retry-after", "1"),
//!         Response::json(r#"[{"id":1}]"#),
//!     ],
//! )])?;
//! let base = server.url(); // http://127.0.0.1:PORT
//! # let _ = base; Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::log::{Log, WaitTimeout};

/// A request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query (`/api/v2/transactions/btcusd/`).
    pub path: String,
    /// The raw query string, without `?`, if there was one.
    pub raw_query: Option<String>,
    /// The query, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering (to exercise client timeouts).
    pub delay: Duration,
}

impl Response {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Self {
        Self::status(200)
            .with_header("content-type", "application/json")
            .with_body(body.into().into_bytes())
    }

    /// A 200 with a plain text body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::status(200)
            .with_header("content-type", "text/plain")
            .with_body(body.into().into_bytes())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// An HTTP/1.1 server on `127.0.0.1:0` that records every request. Stops (and drops every
/// connection) when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<Log<Request>>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks in a JoinSet: aborting it drops them all.
        self.task.abort();
    }
}

impl HttpServer {
    /// Starts a server that answers every request with `handler`. Must be called within a
    /// Tokio runtime.
    pub fn start<F, Fut>(handler: F) -> std::io::Result<Self>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let requests = Log::new();
        let task = tokio::spawn(accept_loop(listener, Arc::new(handler), requests.clone()));
        Ok(Self {
            addr,
            requests,
            task,
        })
    }

    /// Starts a server that answers each path with its queued responses in order; the last
    /// one repeats once the others are used. Other paths get a 404.
    pub fn scripted<P: Into<String>>(
        routes: impl IntoIterator<Item = (P, Vec<Response>)>,
    ) -> std::io::Result<Self> {
        let routes: HashMap<String, Mutex<VecDeque<Response>>> = routes
            .into_iter()
            .map(|(p, r)| (p.into(), Mutex::new(r.into())))
            .collect();
        let routes = Arc::new(routes);
        Self::start(move |req| {
            let resp = next_response(&routes, &req.path);
            async move { resp }
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing path).
    pub fn url(&self) -> Url {
        // A socket address always forms a valid URL authority.
        Url::parse(&format!("http://{}", self.addr)).unwrap_or_else(|_| unreachable!())
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.snapshot()
    }

    /// Waits until `n` requests arrived, at most `timeout`; returns all of them.
    pub async fn wait_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Request>, WaitTimeout> {
        self.requests.wait(n, timeout).await
    }

    /// Waits until `n` requests match `pred`, at most `timeout`; returns those.
    pub async fn wait_requests_matching(
        &self,
        n: usize,
        pred: impl Fn(&Request) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Request>, WaitTimeout> {
        self.requests.wait_counted(n, pred, timeout).await
    }
}

fn next_response(routes: &HashMap<String, Mutex<VecDeque<Response>>>, path: &str) -> Response {
    let Some(queue) = routes.get(path) else {
        return Response::status(404);
    };
    let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
    if queue.len() > 1 {
        queue.pop_front().unwrap_or_else(|| Response::status(404))
    } else {
        queue
            .front()
            .cloned()
            .unwrap_or_else(|| Response::status(404))
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, handler: Arc<F>, requests: Arc<Log<Request>>)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "http mock: accept failed");
                        continue;
                    }
                };
                tasks.spawn(serve(stream, handler.clone(), requests.clone()));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn serve<F, Fut>(stream: TcpStream, handler: Arc<F>, requests: Arc<Log<Request>>)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let requests = requests.clone();
        async move {
            let req = match read_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "http mock: could not read a request body");
                    return Ok::<_, Infallible>(to_hyper(Response::status(400)));
                }
            };
            requests.push(req.clone());
            let resp = handler(req).await;
            if !resp.delay.is_zero() {
                tokio::time::sleep(resp.delay).await;
            }
            Ok(to_hyper(resp))
        }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "http mock: connection ended with an error");
    }
}

async fn read_request(req: hyper::Request<hyper::body::Incoming>) -> Result<Request, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let raw_query = parts.uri.query().map(str::to_owned);
    let query = raw_query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        raw_query,
        query,
        headers,
        body,
    })
}

fn to_hyper(resp: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                out.headers_mut().append(n, v);
            }
            _ => tracing::warn!(name, value, "http mock: skipped an invalid response header"),
        }
    }
    out
}
