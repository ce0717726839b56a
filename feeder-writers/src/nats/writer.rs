//! The `nats` writer: JetStream publishes with a message id per event; a batch counts as
//! written once the stream has acknowledged every message of it.

use std::fmt::Write as _;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use bytes::Bytes;
use feeder_core::config::ConfigError;
use feeder_core::model::{write_json_line, Event};
use feeder_core::writer::Writer;
use feeder_core::WriteError;

use super::config::{redact_url, CreateStream, NatsOptions, Storage, Subjects};
use super::subject::covers;

/// Most publishes awaiting their acknowledgement at once: a batch larger than this is
/// published and acknowledged in parts of this size.
const IN_FLIGHT: usize = 4_096;

/// Publishes events to a JetStream stream.
///
/// Each event is one message on its subject (see [`NatsOptions`]): the event's JSON line
/// without the newline, with the header `Nats-Msg-Id` set to the event's identity (see
/// [`message_id`]). The stream drops a message whose id it has seen within its duplicate
/// window and acknowledges it as a duplicate, so a retried batch stores nothing twice within
/// that window. `write` returns `Ok` once every message of the batch is acknowledged.
pub struct NatsWriter {
    options: NatsOptions,
    subjects: Subjects,
    js: jetstream::Context,
    /// Scratch space for the subject and the message id of the current event.
    subject: String,
    id: String,
}

impl std::fmt::Debug for NatsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NatsWriter {
    /// Connects, and checks that the stream exists and covers the writer's subjects
    /// (creating it with `create_stream`). Bad options, a server that does not answer, bad
    /// credentials, a missing or unfit stream: all fail here with a terminal error.
    pub async fn connect(options: NatsOptions) -> Result<Self, WriteError> {
        let config_error =
            |(key, message): (&str, String)| WriteError::Config(ConfigError::invalid(key, message));
        options.check().map_err(config_error)?;
        let subjects = options.subjects().map_err(config_error)?;
        let shown = redact_url(&options.url);
        let connect = connect_options(&options)?;
        let client = tokio::time::timeout(
            options.connect_timeout,
            connect.connect(options.url.as_str()),
        )
        .await
        .map_err(|_| {
            WriteError::terminal(
                format!(
                    "no NATS server answered at {shown} within {:?}",
                    options.connect_timeout
                ),
                "timed out",
            )
        })?
        .map_err(|e| WriteError::terminal(format!("cannot connect to NATS at {shown}"), e))?;
        // Acknowledgements a failed batch left unawaited hold their slots until
        // `ack_timeout`; room for three batches' worth keeps a retry from waiting on them.
        let js = jetstream::ContextBuilder::new()
            .timeout(options.ack_timeout)
            .ack_timeout(options.ack_timeout)
            .max_ack_inflight(IN_FLIGHT * 3)
            .build(client);
        tokio::time::timeout(
            options.connect_timeout,
            ensure_stream(&js, &options, &subjects),
        )
        .await
        .map_err(|_| {
            WriteError::terminal(
                format!(
                    "JetStream at {shown} did not answer about stream `{}` within {:?}",
                    options.stream, options.connect_timeout
                ),
                "timed out",
            )
        })??;
        tracing::info!(
            url = %shown,
            stream = %options.stream,
            subject = %options.subject,
            candles_subject = %options.candles_subject,
            gaps_subject = %options.gaps_subject,
            "nats writer connected"
        );
        Ok(Self {
            options,
            subjects,
            js,
            subject: String::new(),
            id: String::new(),
        })
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// Publishes `part` and waits for all its acknowledgements.
    async fn publish_part(&mut self, part: &[Event]) -> Result<(), WriteError> {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(part.len());
        let mut payload = Vec::with_capacity(512);
        for event in part {
            address(&self.subjects, event, &mut self.subject);
            message_id(event, &mut self.id);
            payload.clear();
            write_json_line(event, &mut payload);
            payload.pop();
            let message = PublishMessage::build()
                .payload(Bytes::copy_from_slice(&payload))
                .message_id(&self.id);
            let ack = self
                .js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| classify(e, "publishing to NATS"))?;
            acks.push(ack);
        }
        let n = acks.len();
        let results = tokio::time::timeout(
            self.options.ack_timeout,
            futures::future::join_all(acks.into_iter().map(IntoFuture::into_future)),
        )
        .await
        .map_err(|_| {
            WriteError::retriable(
                format!(
                    "NATS stream `{}` did not acknowledge all {n} messages within {:?}",
                    self.options.stream, self.options.ack_timeout
                ),
                "timed out",
            )
        })?;
        let mut duplicates = 0usize;
        let mut failed = 0usize;
        let mut first = None;
        for r in results {
            match r {
                Ok(ack) => duplicates += usize::from(ack.duplicate),
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first {
            return Err(classify(
                e,
                &format!(
                    "{failed} of {n} messages were not acknowledged by NATS stream `{}`",
                    self.options.stream
                ),
            ));
        }
        if duplicates > 0 {
            tracing::debug!(
                stream = %self.options.stream,
                duplicates,
                "messages already in the stream were dropped by it"
            );
        }
        Ok(())
    }
}

/// The client's options: name, timeouts, credentials from the environment, TLS.
fn connect_options(o: &NatsOptions) -> Result<async_nats::ConnectOptions, WriteError> {
    let mut c = async_nats::ConnectOptions::new()
        .name("crypto-feeder")
        .connection_timeout(o.connect_timeout)
        .request_timeout(Some(o.ack_timeout))
        // Reconnects go on forever, a little apart; a batch that meets an outage fails on
        // its acknowledgement timeout and the runner retries it.
        .reconnect_delay_callback(|attempt| {
            let ms = 50u64.saturating_mul(1 << attempt.min(6));
            Duration::from_millis(ms.min(2_000))
        });
    if let (Some(user), Some(var)) = (&o.user, &o.password_env) {
        c = c.user_and_password(user.clone(), secret("password_env", var)?);
    }
    if let Some(var) = &o.token_env {
        c = c.token(secret("token_env", var)?);
    }
    if o.wants_tls() {
        c = c.require_tls(true);
    }
    if let Some(ca) = &o.ca_file {
        if !ca.is_file() {
            return Err(WriteError::Config(ConfigError::invalid(
                "ca_file",
                format!("{} is not a readable file", ca.display()),
            )));
        }
        c = c.add_root_certificates(ca.clone());
    }
    Ok(c)
}

/// The value of the environment variable `var`, named by option `key`.
fn secret(key: &'static str, var: &str) -> Result<String, WriteError> {
    crate::secret::from_env(key, var)
        .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))
}

/// Checks that the stream exists and covers every subject the writer publishes to;
/// creates it when missing and `create_stream` is set.
async fn ensure_stream(
    js: &jetstream::Context,
    o: &NatsOptions,
    subjects: &Subjects,
) -> Result<(), WriteError> {
    let patterns = patterns(subjects);
    let info = match js.get_stream(&o.stream).await {
        Ok(stream) => stream.cached_info().clone(),
        Err(e) if is_not_found(&e) => match &o.create_stream {
            Some(create) => create_stream(js, o, create, &patterns).await?,
            None => {
                return Err(WriteError::terminal(
                    format!(
                        "NATS stream `{}` does not exist: create it with subjects {} (and a \
                         duplicate window), or set the writer's option `create_stream` to \
                         let it create the stream",
                        o.stream,
                        patterns.join(", ")
                    ),
                    e,
                ))
            }
        },
        Err(e) => {
            return Err(WriteError::terminal(
                format!(
                    "cannot read NATS stream `{}` (is JetStream enabled on the server?)",
                    o.stream
                ),
                e,
            ))
        }
    };
    let filters = if info.config.subjects.is_empty() {
        // A stream without subjects listens on its own name.
        vec![info.config.name.clone()]
    } else {
        info.config.subjects.clone()
    };
    for pattern in &patterns {
        if !filters.iter().any(|f| covers(f, pattern)) {
            return Err(WriteError::terminal(
                format!(
                    "NATS stream `{}` does not cover the subjects {pattern} the writer \
                     publishes to (its subjects: {}); add them to the stream, or change the \
                     writer's subject options",
                    o.stream,
                    filters.join(", ")
                ),
                "subjects not covered",
            ));
        }
    }
    if info.config.duplicate_window.is_zero() {
        tracing::warn!(
            stream = %o.stream,
            "the NATS stream has no duplicate window: a retried batch is stored twice"
        );
    }
    tracing::debug!(
        stream = %o.stream,
        duplicate_window = ?info.config.duplicate_window,
        "nats stream checked"
    );
    Ok(())
}

fn is_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

/// The subject patterns of the three templates, without repeats.
fn patterns(subjects: &Subjects) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in [&subjects.trades, &subjects.candles, &subjects.gaps] {
        let p = t.pattern();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

async fn create_stream(
    js: &jetstream::Context,
    o: &NatsOptions,
    create: &CreateStream,
    patterns: &[String],
) -> Result<async_nats::jetstream::stream::Info, WriteError> {
    let config = StreamConfig {
        name: o.stream.clone(),
        subjects: patterns.to_vec(),
        duplicate_window: create.duplicate_window,
        storage: match create.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        num_replicas: create.replicas,
        max_age: create.max_age,
        max_bytes: create.max_bytes,
        ..StreamConfig::default()
    };
    match js.create_stream(config).await {
        Ok(mut stream) => {
            tracing::info!(stream = %o.stream, subjects = %patterns.join(", "), "created the NATS stream");
            let info = stream
                .info()
                .await
                .map_err(|e| WriteError::terminal("cannot read the new NATS stream", e))?;
            Ok(info.clone())
        }
        Err(e) => {
            // Another writer may have created it in the meantime.
            if let Ok(stream) = js.get_stream(&o.stream).await {
                return Ok(stream.cached_info().clone());
            }
            Err(WriteError::terminal(
                format!(
                    "cannot create NATS stream `{}` with subjects {}",
                    o.stream,
                    patterns.join(", ")
                ),
                e,
            ))
        }
    }
}

/// Writes the subject of `event` into `out`.
fn address(subjects: &Subjects, event: &Event, out: &mut String) {
    match event {
        Event::Trade(t) => subjects
            .trades
            .render(&t.exchange, t.symbol.as_str(), "", out),
        Event::Candle(c) => {
            let interval = c.interval.to_string();
            subjects
                .candles
                .render(&c.exchange, c.symbol.as_str(), &interval, out);
        }
        Event::Gap(g) => subjects
            .gaps
            .render(&g.exchange, g.symbol.as_str(), "", out),
    }
}

/// Writes the `Nats-Msg-Id` of `event` into `out`:
/// - a trade: `exchange:symbol:trade_id`;
/// - a candle: `candle:exchange:symbol:interval:open_time_ns:revision`, so that each revision
///   is a message of its own;
/// - a gap: `gap:exchange:symbol:after_trade_id`.
///
/// Each part has `%`, `:` and any byte outside printable ASCII written `%XX`, so that parts
/// never run into each other and the id is a valid header value.
pub fn message_id(event: &Event, out: &mut String) {
    out.clear();
    match event {
        Event::Trade(t) => {
            id_part(&t.exchange, out);
            out.push(':');
            id_part(t.symbol.as_str(), out);
            out.push(':');
            id_part(t.trade_id.as_str(), out);
        }
        Event::Candle(c) => {
            out.push_str("candle:");
            id_part(&c.exchange, out);
            out.push(':');
            id_part(c.symbol.as_str(), out);
            let _ = write!(
                out,
                ":{}:{}:{}",
                c.interval,
                c.open_time.unix_nanos(),
                c.revision
            );
        }
        Event::Gap(g) => {
            out.push_str("gap:");
            id_part(&g.exchange, out);
            out.push(':');
            id_part(g.symbol.as_str(), out);
            out.push(':');
            id_part(g.after_trade_id.as_str(), out);
        }
    }
}

fn id_part(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b'%' && b != b':' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Every publish error is retried: a stream that went missing, a full stream or a server
/// away may all come back, and the runner's backoff keeps a retry loop cheap. The error
/// says which it was.
fn classify(e: PublishError, context: &str) -> WriteError {
    WriteError::retriable(context.to_string(), e)
}

#[async_trait]
impl Writer for NatsWriter {
    fn name(&self) -> &str {
        "nats"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        for part in batch.chunks(IN_FLIGHT) {
            self.publish_part(part).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeder_core::testing::sample_events;

    #[test]
    fn message_ids_are_distinct_and_stable() {
        let events = sample_events("bitstamp", 200);
        let mut ids = std::collections::HashSet::new();
        let mut id = String::new();
        for e in &events {
            message_id(e, &mut id);
            assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
            assert!(ids.insert(id.clone()), "{id} twice");
        }
        let Event::Trade(t) = &events[0] else {
            panic!("a trade first")
        };
        message_id(&events[0], &mut id);
        assert_eq!(id, format!("bitstamp:BTC-USD:{}", t.trade_id));
        let mut other = t.clone();
        other.trade_id = feeder_core::model::TradeId::new("a:b c");
        message_id(&Event::Trade(other), &mut id);
        assert_eq!(id, "bitstamp:BTC-USD:a%3Ab%20c");
    }

    #[test]
    fn candle_revisions_get_their_own_ids() {
        let events = sample_events("x", 100);
        let Some(Event::Candle(c)) = events.iter().find(|e| matches!(e, Event::Candle(_))) else {
            panic!("no candle")
        };
        let mut a = String::new();
        let mut b = String::new();
        message_id(&Event::Candle(c.clone()), &mut a);
        let mut later = c.clone();
        later.revision += 1;
        message_id(&Event::Candle(later), &mut b);
        assert_ne!(a, b);
        assert!(a.starts_with("candle:x:"), "{a}");
    }
}
