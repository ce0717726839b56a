//! Typed errors. Each says whether the failure is worth retrying.

use std::time::Duration;

/// A payload a venue sent that could not be understood. Counted and logged by the drivers,
/// never fatal to the connection.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not valid JSON, or JSON that does not have the expected shape.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field held a value that cannot be used (a bad decimal, time, side, ...).
    #[error("invalid {field}: {reason}")]
    Field {
        /// The field's name on the wire.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A trade for a symbol that was not subscribed.
    #[error("unknown venue symbol {0:?}")]
    UnknownSymbol(String),
    /// The venue reported an error in-band.
    #[error("venue error: {0}")]
    Venue(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ParseError {
    /// A field error.
    pub fn field(field: &'static str, reason: impl std::fmt::Display) -> Self {
        ParseError::Field {
            field,
            reason: reason.to_string(),
        }
    }
}

/// Why an exchange task stopped. The supervisor restarts it with backoff unless the error is
/// terminal.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The WebSocket connection failed or dropped.
    #[error("websocket connection failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// An HTTP request failed before an answer came back.
    #[error("http request to {url} failed")]
    Http {
        /// The request URL (no secrets: venues' public endpoints only).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The venue answered with an HTTP error status.
    #[error("http {status} from {url}")]
    Status {
        /// The status code.
        status: u16,
        /// The request URL.
        url: String,
        /// How long the venue asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// No frame arrived within the stale timeout.
    #[error("connection stale: nothing received for {0:?}")]
    Stale(Duration),
    /// The venue asked us to reconnect, or closed the connection.
    #[error("connection closed by the venue{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    /// A setting is wrong (bad URL, unsupported symbol). Not retried.
    #[error("configuration: {0}")]
    Config(String),
    /// The pipeline behind the exchange has gone away (shutdown). Not retried.
    #[error("pipeline closed")]
    PipelineClosed,
    /// Any other failure, with its cause.
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ExchangeError {
    /// True when restarting cannot help (bad configuration, pipeline gone).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ExchangeError::Config(_) | ExchangeError::PipelineClosed
        )
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ExchangeError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ExchangeError::WebSocket(Box::new(e))
    }
}

/// Why a writer could not store a batch.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file or socket error. Retried.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// The store refused or failed the batch.
    #[error("{context}")]
    Store {
        /// What was being done.
        context: String,
        /// Whether retrying the same batch can succeed.
        retriable: bool,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Encoding an event failed. Not retried.
    #[error("encoding failed")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A setting is wrong. Not retried. `?` turns a
    /// [`ConfigError`](crate::config::ConfigError) (from
    /// [`WriterConfig::options`](crate::config::WriterConfig::options) or
    /// [`WriterConfig::option_error`](crate::config::WriterConfig::option_error)) into this.
    #[error("invalid configuration")]
    Config(#[from] crate::config::ConfigError),
    /// The store holds the whole batch except these events, which it refused one by one
    /// (a value it cannot represent). Not retried: the runner counts the refused events as
    /// rejected and the others as stored.
    #[error("the store refused {} of the batch's events", .0.len())]
    Rejected(Vec<Rejection>),
}

/// One event of a batch that a store refused while it stored the others.
#[derive(Debug)]
pub struct Rejection {
    /// The event's position in the batch passed to `write`.
    pub index: usize,
    /// Why the store cannot hold it.
    pub reason: Box<dyn std::error::Error + Send + Sync>,
}

impl Rejection {
    /// The event at `index` of the batch, refused for `reason`.
    pub fn new(index: usize, reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            index,
            reason: reason.into(),
        }
    }
}

impl WriteError {
    /// A store error that retrying may fix.
    pub fn retriable(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        WriteError::Store {
            context: context.into(),
            retriable: true,
            source: source.into(),
        }
    }

    /// A store error that retrying cannot fix.
    pub fn terminal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        WriteError::Store {
            context: context.into(),
            retriable: false,
            source: source.into(),
        }
    }

    /// Whether the runner should retry the batch.
    pub fn is_retriable(&self) -> bool {
        match self {
            WriteError::Io(_) => true,
            WriteError::Store { retriable, .. } => *retriable,
            WriteError::Encode(_) | WriteError::Config(_) | WriteError::Rejected(_) => false,
        }
    }
}

/// Shortens a payload for a log line: at most `max` bytes, cut on a character boundary.
pub fn truncate_for_log(payload: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(payload);
    if s.len() <= max {
        return s.into_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], payload.len())
}

/// Displays an error with its whole chain of causes, each once: `outer: cause: root cause`.
///
/// Many errors already print their cause in their own message (`IO error: {0}` over an
/// `io::Error` that is also their `source`), and a plain walk of the chain would then print
/// that cause twice. A cause whose text is already on the line is left out; its own causes
/// are still walked, so nothing the line lacks is lost.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        // Bounded, against a chain that loops back on itself.
        for _ in 0..MAX_CHAIN {
            let Some(s) = source else { break };
            let text = s.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = s.source();
        }
        f.write_str(&line)
    }
}

/// Most causes [`ErrorChain`] walks.
const MAX_CHAIN: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message is given, with an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn e(text: &'static str, cause: Option<E>) -> E {
        E(text, cause.map(Box::new))
    }

    #[test]
    fn chain_prints_every_cause_in_order() {
        let err = e("outer", Some(e("middle", Some(e("root", None)))));
        assert_eq!(ErrorChain(&err).to_string(), "outer: middle: root");
    }

    /// A cause already printed by the error that wraps it (as tungstenite's `IO error: {0}`
    /// does with its `io::Error`) appears once, and the causes below it still appear.
    #[test]
    fn a_cause_its_wrapper_already_prints_appears_once() {
        let dns = "failed to lookup address information: Name or service not known";
        let io = std::io::Error::other(dns);
        let ws = tokio_tungstenite::tungstenite::Error::Io(io);
        let err = ExchangeError::from(ws);
        let line = ErrorChain(&err).to_string();
        assert_eq!(line.matches(dns).count(), 1, "{line}");
        assert_eq!(
            line,
            format!("websocket connection failed: IO error: {dns}")
        );

        let err = e(
            "reading: disk full",
            Some(e("disk full", Some(e("ENOSPC", None)))),
        );
        assert_eq!(ErrorChain(&err).to_string(), "reading: disk full: ENOSPC");
    }
}
