//! The `http` writer: one POST per batch, with retries of what a server says is passing.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use feeder_core::config::ConfigError;
use feeder_core::error::truncate_for_log;
use feeder_core::exchange::Backoff;
use feeder_core::model::Event;
use feeder_core::writer::{ErrorChain, Writer};
use feeder_core::{Rejection, WriteError};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use super::bulk::{self, Items};
use super::config::{redacted_url, HttpOptions, Preset, MAX_RETRY_DELAY};
use super::encode;

/// How much of an error answer's body goes into an error message.
const BODY_IN_ERRORS: usize = 300;

/// Why a request to the server failed. The source of a [`WriteError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No answer: connection refused or cut, TLS failure, timeout.
    #[error("no answer")]
    Transport(#[source] reqwest::Error),
    /// The server answered with an error status.
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A 2xx answer whose body could not be read as the preset expects.
    #[error("unreadable answer: {0}")]
    Answer(String),
    /// Some `_bulk` items failed with a status worth retrying (429, 5xx).
    #[error("{failed} bulk items failed for now, first with HTTP {status}: {reason}")]
    Items {
        /// How many items.
        failed: usize,
        /// The status of the first.
        status: u16,
        /// The server's reason for the first.
        reason: String,
    },
}

/// Counters of one [`HttpWriter`], shared with whoever asked for them.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests sent (tries included).
    pub requests: AtomicU64,
    /// Requests sent again by the writer itself after a failure it may outlast.
    pub retries: AtomicU64,
    /// Events the server refused for their content (`_bulk` items with a 4xx).
    pub rejected: AtomicU64,
    /// Bytes of bodies sent, after compression.
    pub body_bytes: AtomicU64,
}

/// POSTs every batch to a URL, in the format of its [`Preset`].
///
/// `write` returns `Ok` once the server answered 2xx (and, for `elasticsearch`, every item
/// of the `_bulk` answer is stored). A 408, 429, 5xx or a request that got no answer is
/// tried again up to `max_retries` times, waiting as the server's `Retry-After` asks or with
/// exponential backoff and jitter; then the batch fails with a retriable error and the runner
/// takes over (its own backoff, queue and spill). Any other 4xx fails the batch with a
/// terminal error that says what the server refused.
pub struct HttpWriter {
    options: HttpOptions,
    client: reqwest::Client,
    /// Content type, encoding, `headers` and the bearer token (marked sensitive).
    headers: HeaderMap,
    stats: Arc<HttpStats>,
    /// The body being built; kept to reuse its capacity.
    body: Vec<u8>,
}

impl std::fmt::Debug for HttpWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What one try of a request came to.
enum Tried {
    /// The server took the whole body.
    Done,
    /// `_bulk`: the server answered; these items are to be sent again (positions in the
    /// batch), and these were refused for their content.
    Partly {
        again: Vec<usize>,
        refused: Vec<Rejection>,
        failure: Option<HttpError>,
    },
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry {
        error: HttpError,
        retry_after: Option<Duration>,
    },
    /// Another try cannot help.
    Fail(WriteError),
}

impl HttpWriter {
    /// Builds the client, reads the bearer token and asks the server once (a `HEAD` of the
    /// URL): bad options, a missing token, a CA file that cannot be read, a server that does
    /// not answer within `timeout` or that refuses the credentials (401, 403) fail here with a
    /// terminal error. Any other answer, even 404 or 405, shows that the server is there.
    pub async fn connect(options: HttpOptions) -> Result<Self, WriteError> {
        options
            .check()
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        let headers = request_headers(&options)?;
        let client = client(&options)?;
        let url = redacted_url(&options.url);
        let probe = client
            .head(options.url.clone())
            .headers(headers.clone())
            .timeout(options.timeout)
            .send()
            .await
            .map_err(|e| {
                WriteError::terminal(
                    format!(
                        "no answer from {url} at start-up (refused, unreachable, timed out, or \
                         its certificate is not trusted: see the cause)"
                    ),
                    HttpError::Transport(e.without_url()),
                )
            })?;
        let status = probe.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(WriteError::terminal(
                format!("{url} refused the credentials (check bearer_token_env or headers)"),
                HttpError::Status {
                    status: status.as_u16(),
                    body: String::new(),
                },
            ));
        }
        tracing::info!(url = %url, preset = options.preset.as_str(), gzip = options.gzip, start_up_status = status.as_u16(), "http writer ready");
        Ok(Self {
            options,
            client,
            headers,
            stats: Arc::new(HttpStats::default()),
            body: Vec::new(),
        })
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The writer's counters.
    pub fn stats(&self) -> Arc<HttpStats> {
        Arc::clone(&self.stats)
    }

    /// Encodes the events at `positions` (all of them but for `_bulk` items sent again),
    /// compressed when asked.
    fn encode(&mut self, batch: &[Event], positions: &[usize]) -> Result<Bytes, WriteError> {
        self.body.clear();
        match self.options.preset {
            Preset::Ndjson => encode::ndjson(batch, &mut self.body),
            Preset::Elasticsearch => encode::bulk(batch, positions, &self.options, &mut self.body),
            Preset::Loki => encode::loki(batch, &mut self.body),
        }
        if !self.options.gzip {
            return Ok(Bytes::copy_from_slice(&self.body));
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(self.body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&self.body)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|e| WriteError::Encode(Box::new(e)))
    }

    /// Sends one body and judges the answer.
    async fn try_once(&self, body: Bytes, batch: &[Event], positions: &[usize]) -> Tried {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let sent = self
            .client
            .post(self.options.url.clone())
            .headers(self.headers.clone())
            .timeout(self.options.timeout)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Tried::Retry {
                    error: HttpError::Transport(e.without_url()),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        // The answer is read whole (and within the timeout) before the batch counts.
        let answer = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Tried::Retry {
                    error: HttpError::Transport(e.without_url()),
                    retry_after: None,
                }
            }
        };
        if status.is_success() {
            return match self.options.preset {
                Preset::Elasticsearch => self.judge_bulk(&answer, batch, positions),
                Preset::Ndjson | Preset::Loki => Tried::Done,
            };
        }
        let error = HttpError::Status {
            status: status.as_u16(),
            body: truncate_for_log(&answer, BODY_IN_ERRORS),
        };
        if retriable_status(status) {
            return Tried::Retry { error, retry_after };
        }
        Tried::Fail(WriteError::terminal(
            format!(
                "{} refused the batch: {}",
                redacted_url(&self.options.url),
                advice(status)
            ),
            error,
        ))
    }

    /// Reads a 2xx `_bulk` answer: which items to send again and which were refused.
    fn judge_bulk(&self, answer: &[u8], batch: &[Event], positions: &[usize]) -> Tried {
        let items = match bulk::read(answer, positions.len()) {
            Ok(Items::AllStored) => return Tried::Done,
            Ok(Items::Each(items)) => items,
            // The server may have stored some or all of it: sending it again is safe (ids).
            Err(message) => {
                return Tried::Retry {
                    error: HttpError::Answer(message),
                    retry_after: None,
                }
            }
        };
        let mut again = Vec::new();
        let mut first_retriable = None;
        let mut refused = Vec::new();
        for (&position, item) in positions.iter().zip(items) {
            let versioned = matches!(batch.get(position), Some(Event::Candle(_)));
            match item.outcome(versioned) {
                bulk::Outcome::Stored => {}
                bulk::Outcome::Again => {
                    first_retriable.get_or_insert((item.status, item.reason()));
                    again.push(position);
                }
                bulk::Outcome::Refused => refused.push(Rejection::new(
                    position,
                    HttpError::Status {
                        status: item.status,
                        body: item.reason(),
                    },
                )),
            }
        }
        if !refused.is_empty() {
            self.stats
                .rejected
                .fetch_add(refused.len() as u64, Ordering::Relaxed);
        }
        let failure = first_retriable.map(|(status, reason)| HttpError::Items {
            failed: again.len(),
            status,
            reason,
        });
        if refused.is_empty() && again.is_empty() {
            return Tried::Done;
        }
        Tried::Partly {
            again,
            refused,
            failure,
        }
    }
}

/// Whether a whole-request status is worth another try: the server is busy, failing or
/// timed out, not refusing this body.
fn retriable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// What a refusal most likely means, for the error message.
fn advice(status: StatusCode) -> String {
    let hint = match status.as_u16() {
        400 => "the server cannot read the body (is the preset right for this URL?)",
        401 | 403 => "the credentials were refused (check bearer_token_env or headers)",
        404 => "nothing at this URL (check its path: /_bulk, /loki/api/v1/push, ...)",
        405 => "this URL does not take POST (check its path)",
        413 => "the body is too large for the server (lower batch_size, or set gzip: true)",
        415 => "the server does not take this content type or encoding",
        300..=399 => "the URL redirects elsewhere (set url to where it leads)",
        _ => "the server refused it",
    };
    format!("HTTP {} ({hint}); not retried", status.as_u16())
}

/// How long the server asked to wait: `Retry-After` in seconds or as an HTTP date, at most
/// [`MAX_RETRY_DELAY`].
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            // A date already past means now.
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_DELAY))
}

/// The headers of every request: the preset's content type, the encoding, the configured
/// headers and the bearer token. Credentials are marked sensitive, so the HTTP stack never
/// shows them.
fn request_headers(options: &HttpOptions) -> Result<HeaderMap, WriteError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(options.preset.content_type()),
    );
    if options.gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    for (name, value) in &options.headers {
        let invalid = |what: &str| {
            WriteError::Config(ConfigError::invalid(
                "headers",
                format!("{name}: not a valid header {what}"),
            ))
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(token) = options.bearer_token_or_config_error()? {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
            WriteError::Config(ConfigError::invalid(
                "bearer_token_env",
                "the token holds characters a header cannot",
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// rustls with the built-in roots plus those of `ca_file`; certificates always verified.
fn client(options: &HttpOptions) -> Result<reqwest::Client, WriteError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        // A redirect would turn the POST into a GET, or carry the credentials to another
        // host: it is reported instead, to be fixed in `url`.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("crypto-feeder/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &options.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            WriteError::Config(ConfigError::invalid(
                "ca_file",
                format!("cannot read {}: {e}", path.display()),
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            WriteError::Config(ConfigError::invalid(
                "ca_file",
                format!(
                    "{} is not a PEM bundle of certificates: {e}",
                    path.display()
                ),
            ))
        })?;
        if certs.is_empty() {
            return Err(WriteError::Config(ConfigError::invalid(
                "ca_file",
                format!("{} holds no certificate", path.display()),
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| WriteError::terminal("building the HTTP client", e.without_url()))
}

#[async_trait]
impl Writer for HttpWriter {
    fn name(&self) -> &str {
        "http"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let url = redacted_url(&self.options.url);
        let mut backoff = Backoff::new(self.options.retry_delay, MAX_RETRY_DELAY);
        // Positions still to be stored: `_bulk` sends again only the items that failed.
        let mut positions: Vec<usize> = (0..batch.len()).collect();
        let mut refused: Vec<Rejection> = Vec::new();
        let mut body = self.encode(batch, &positions)?;
        let tries = self.options.max_retries.saturating_add(1);
        let mut last: Option<HttpError> = None;
        for attempt in 1..=tries {
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let (error, retry_after) = match self.try_once(body.clone(), batch, &positions).await {
                Tried::Done => {
                    return finish(refused);
                }
                Tried::Fail(e) => return Err(e),
                Tried::Partly {
                    again,
                    refused: now_refused,
                    failure,
                } => {
                    refused.extend(now_refused);
                    let Some(failure) = failure.filter(|_| !again.is_empty()) else {
                        return finish(refused);
                    };
                    positions = again;
                    body = self.encode(batch, &positions)?;
                    (failure, None)
                }
                Tried::Retry { error, retry_after } => (error, retry_after),
            };
            if attempt == tries {
                last = Some(error);
                break;
            }
            let delay = retry_after.unwrap_or_else(|| backoff.next_delay());
            tracing::warn!(
                url = %url,
                error = %ErrorChain(&error),
                attempt,
                of = tries,
                retry_in = ?delay,
                events = positions.len(),
                "http request failed; trying again"
            );
            // The runner drops this future at its shutdown deadline, which ends the wait.
            tokio::time::sleep(delay).await;
        }
        let error = last.unwrap_or_else(|| HttpError::Answer("no try was made".into()));
        Err(WriteError::retriable(
            format!(
                "POST {url} still failing after {tries} tries ({} of {} events not stored)",
                positions.len(),
                batch.len()
            ),
            error,
        ))
    }
}

/// The end of a batch whose every event was stored or refused.
fn finish(refused: Vec<Rejection>) -> Result<(), WriteError> {
    if refused.is_empty() {
        Ok(())
    } else {
        Err(WriteError::Rejected(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_DELAY));
        // 2015-10-21T07:28:00Z is 1_445_412_480: twenty seconds later.
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:20 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(20)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:00:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn only_passing_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retriable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!retriable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        assert!(advice(StatusCode::PAYLOAD_TOO_LARGE).contains("batch_size"));
    }
}
