//! The `redis` writer: one script call per batch appends its events to their streams, each
//! at most once, in one round trip.

use std::collections::HashMap;

use async_trait::async_trait;
use feeder_core::config::ConfigError;
use feeder_core::model::{write_json_line, Event};
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, Script};

use super::config::{redact_url, Keys, RedisOptions};
use super::keys::{dedup_id, stream_key};

/// The script that stores a batch (see WRITERS.md, `redis`, for its rules and limits).
const SCRIPT: &str = include_str!("script.lua");

/// Appends events to Redis streams.
///
/// Each event is one stream entry with the field `event` holding its JSON line (without the
/// newline), with an id the server gives at arrival (`*`). A server-side script stores each
/// batch in one call: it skips an event whose id its stream remembers (the last
/// `dedup_window` ids per stream), replaces a candle's earlier revision by a later one, and
/// trims each stream with `MAXLEN ~`. So a retried batch stores nothing twice, and an older
/// trade that arrives after a newer one is stored all the same.
pub struct RedisWriter {
    options: RedisOptions,
    keys: Keys,
    client: Client,
    script: Script,
    /// The open connection; dropped after an I/O error or a timeout and opened again by the
    /// next batch.
    conn: Option<MultiplexedConnection>,
}

impl std::fmt::Debug for RedisWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What the script did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stored {
    added: u64,
    replaced: u64,
    duplicates: u64,
}

impl RedisWriter {
    /// Connects, authenticates and loads the script. Bad options, a server that does not
    /// answer and bad credentials all fail here with a terminal error.
    pub async fn connect(options: RedisOptions) -> Result<Self, WriteError> {
        let config_error =
            |(key, message): (&str, String)| WriteError::Config(ConfigError::invalid(key, message));
        options.check().map_err(config_error)?;
        let keys = options.keys().map_err(config_error)?;
        let client = client(&options)?;
        let mut writer = Self {
            options,
            keys,
            client,
            script: Script::new(SCRIPT),
            conn: None,
        };
        let shown = redact_url(&writer.options.url);
        let check = async {
            let conn = writer.connection().await?;
            let _: String = redis::cmd("PING")
                .query_async(conn)
                .await
                .map_err(|e| WriteError::terminal(format!("Redis at {shown} refused PING"), e))?;
            writer.load_script().await
        };
        // Every failure at start is for the operator to fix: terminal.
        check.await.map_err(|e| match e {
            WriteError::Store {
                context, source, ..
            } => WriteError::Store {
                context,
                retriable: false,
                source,
            },
            other => other,
        })?;
        tracing::info!(
            url = %shown,
            key = %writer.options.key,
            candles_key = %writer.options.candles_key,
            gaps_key = %writer.options.gaps_key,
            maxlen = writer.options.maxlen,
            dedup_window = writer.options.dedup_window,
            "redis writer connected"
        );
        Ok(writer)
    }

    /// The options the writer was built with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The open connection, or a new one.
    async fn connection(&mut self) -> Result<&mut MultiplexedConnection, WriteError> {
        if let Some(conn) = self.conn.take() {
            return Ok(self.conn.insert(conn));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.write_timeout));
        let timeout = self.options.connect_timeout;
        let conn = tokio::time::timeout(
            timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| {
            WriteError::retriable(
                format!(
                    "Redis at {} did not answer within {timeout:?}",
                    redact_url(&self.options.url)
                ),
                "timed out",
            )
        })?
        .map_err(|e| {
            WriteError::retriable(
                format!(
                    "cannot connect to Redis at {}",
                    redact_url(&self.options.url)
                ),
                e,
            )
        })?;
        Ok(self.conn.insert(conn))
    }

    async fn load_script(&mut self) -> Result<(), WriteError> {
        let conn = self.connection().await?;
        let result: Result<String, RedisError> = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query_async(conn)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(e, "loading the redis writer's script")),
        }
    }

    /// Classifies an error, and drops the connection after one that may have broken it.
    fn failed(&mut self, e: RedisError, context: &str) -> WriteError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            self.conn = None;
            return WriteError::retriable(context.to_string(), e);
        }
        if e.code() == Some("WRONGTYPE") {
            // A key in the way: nothing of the batch was stored, and a retry cannot help.
            return WriteError::terminal(context.to_string(), e);
        }
        WriteError::retriable(context.to_string(), e)
    }

    /// The script call that stores `batch`.
    fn command(&self, batch: &[Event]) -> redis::Cmd {
        let mut streams: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut per_event = Vec::with_capacity(batch.len());
        for event in batch {
            let key = stream_key(&self.keys, event);
            let n = match streams.get(&key) {
                Some(&n) => n,
                None => {
                    order.push(key.clone());
                    streams.insert(key, order.len());
                    order.len()
                }
            };
            per_event.push(n);
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(order.len() * 3);
        for key in &order {
            cmd.arg(key)
                .arg(format!("{key}:dedup"))
                .arg(format!("{key}:dedup:order"));
        }
        cmd.arg(self.options.maxlen).arg(self.options.dedup_window);
        let mut id = String::new();
        let mut payload = Vec::with_capacity(512);
        for (event, n) in batch.iter().zip(per_event) {
            let revision = dedup_id(event, &mut id);
            payload.clear();
            write_json_line(event, &mut payload);
            payload.pop();
            cmd.arg(n).arg(&id).arg(revision).arg(&payload);
        }
        cmd
    }

    /// Runs `cmd`, loading the script once if the server does not have it (after a restart
    /// or a `SCRIPT FLUSH`).
    async fn run(&mut self, cmd: &redis::Cmd) -> Result<Stored, WriteError> {
        for _ in 0..2 {
            let conn = self.connection().await?;
            let result: Result<(u64, u64, u64), RedisError> = cmd.query_async(conn).await;
            match result {
                Ok((added, replaced, duplicates)) => {
                    return Ok(Stored {
                        added,
                        replaced,
                        duplicates,
                    })
                }
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    self.load_script().await?;
                }
                Err(e) => return Err(self.failed(e, "storing a batch in Redis")),
            }
        }
        Err(WriteError::retriable(
            "storing a batch in Redis",
            "the server lost the writer's script again right after it was loaded",
        ))
    }
}

/// The client for the options: credentials from the environment, TLS roots from `ca_file`.
fn client(o: &RedisOptions) -> Result<Client, WriteError> {
    let bad_url = |e: RedisError| {
        WriteError::Config(ConfigError::invalid(
            "url",
            format!("{}: {e}", redact_url(&o.url)),
        ))
    };
    let mut info = o.url.as_str().into_connection_info().map_err(bad_url)?;
    if let Some(var) = &o.password_env {
        let password = crate::secret::from_env("password_env", var)
            .map_err(|(key, message)| WriteError::Config(ConfigError::invalid(key, message)))?;
        let mut settings = info.redis_settings().clone().set_password(password);
        if let Some(user) = &o.username {
            settings = settings.set_username(user);
        }
        info = info.set_redis_settings(settings);
    }
    match &o.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                WriteError::Config(ConfigError::invalid(
                    "ca_file",
                    format!("cannot read {}: {e}", path.display()),
                ))
            })?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| WriteError::terminal("cannot set up TLS for Redis", e))
        }
        None => Client::open(info).map_err(bad_url),
    }
}

#[async_trait]
impl Writer for RedisWriter {
    fn name(&self) -> &str {
        "redis"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let cmd = self.command(batch);
        let stored = self.run(&cmd).await?;
        if stored.duplicates > 0 || stored.replaced > 0 {
            tracing::debug!(
                added = stored.added,
                replaced = stored.replaced,
                duplicates = stored.duplicates,
                "redis streams already held some events of the batch"
            );
        }
        Ok(())
    }
}
