//! Where a durable store left off, asked of its writer once per stream before anything runs.
//!
//! A writer that cannot answer is not started without an answer: it would then write again
//! what its store already holds. The question is retried with the writer's backoff, every
//! failure is logged as an error, and after [`RESUME_ATTEMPTS`] the run gives up on it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{ErrorChain, Writer};
use crate::error::WriteError;
use crate::exchange::{Backoff, Cursor};
use crate::model::Symbol;

/// How many times a writer is asked where its store left off before the run gives up.
pub const RESUME_ATTEMPTS: u32 = 8;

/// Where a store left off: the newest trade it holds per (exchange, symbol), for the streams
/// of which it holds any.
pub type ResumePoints = Vec<(Arc<str>, Symbol, Cursor)>;

/// A writer that could not say where its store left off; the run does not start it.
#[derive(Debug, thiserror::Error)]
#[error(
    "writer {writer} cannot read where its store left off on {exchange} {symbol} \
     ({attempts} attempts)"
)]
pub struct ResumeError {
    /// The writer's name.
    pub writer: String,
    /// The exchange of the stream asked about.
    pub exchange: String,
    /// The symbol of the stream asked about.
    pub symbol: Symbol,
    /// How many times it was asked.
    pub attempts: u32,
    /// The last failure.
    #[source]
    pub source: WriteError,
}

/// Asks `writer` (named `name`) where its store left off on each of `streams`. A failure
/// is retried with `retry` up to [`RESUME_ATTEMPTS`] times in all, unless it is terminal or
/// `stop` is cancelled.
pub(crate) async fn resume_points(
    name: &str,
    writer: &mut dyn Writer,
    streams: &[(Arc<str>, Symbol)],
    mut retry: Backoff,
    stop: &CancellationToken,
) -> Result<ResumePoints, ResumeError> {
    let mut out = Vec::new();
    for (exchange, symbol) in streams {
        let mut attempts = 0;
        let point = loop {
            attempts += 1;
            let e = match writer.resume_point(exchange, symbol).await {
                Ok(point) => break point,
                Err(e) => e,
            };
            let give_up = !e.is_retriable() || attempts >= RESUME_ATTEMPTS;
            if give_up || stop.is_cancelled() {
                tracing::error!(
                    writer = name,
                    exchange = %exchange,
                    symbol = %symbol,
                    attempts,
                    error = %ErrorChain(&e),
                    "cannot read where the store left off; not starting the writer without it"
                );
                return Err(ResumeError {
                    writer: name.to_owned(),
                    exchange: exchange.to_string(),
                    symbol: symbol.clone(),
                    attempts,
                    source: e,
                });
            }
            let delay = retry.next_delay();
            tracing::error!(
                writer = name,
                exchange = %exchange,
                symbol = %symbol,
                attempt = attempts,
                retry_in = ?delay,
                error = %ErrorChain(&e),
                "cannot read where the store left off; will ask again"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {}
            }
        };
        retry.reset();
        if let Some(cursor) = point {
            out.push((exchange.clone(), symbol.clone(), cursor));
        }
    }
    Ok(out)
}
