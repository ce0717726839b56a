//! Raw capture of a venue's traffic, and its replay.
//!
//! With `capture` set on an exchange ([`CaptureConfig`](crate::config::CaptureConfig)), the
//! drivers record every WebSocket frame received and sent, every REST request and answer
//! (backfill and polling), and what they reported of each stream's completeness and holes,
//! in order, each with its receive time in nanoseconds, its connection number and its
//! direction. A [`Capture`] hands each record to a writer thread through a bounded queue, so
//! the feed never waits for the disk: when the queue is full, or the disk is (or the size
//! limit is reached), records are dropped and counted, an error is logged and the feed goes
//! on. The files rotate and are zstd-compressed in blocks; their layout is in [`format`](mod@format).
//!
//! [`ReplayExchange`] plays a capture back through the venue's own parsers into any
//! pipeline; `crypto-feeder replay` does that for a configuration.

pub mod format;
mod replay;
mod writer;

pub use format::{CaptureError, Direction, Kind, Reader, Record};
pub use replay::{ReplayExchange, ReplaySource, Speed};
pub use writer::{capture_files, Capture, CaptureStats};

use super::session::End;
use super::ExchangeContext;

/// `ctx` with its sink recording completeness and gaps into `capture` too.
pub(crate) fn attach(mut ctx: ExchangeContext, capture: Option<&Capture>) -> ExchangeContext {
    if let Some(c) = capture {
        ctx.sink = ctx.sink.with_capture(c.clone());
    }
    ctx
}

/// Why a connection ended, for its [`Kind::Disconnect`] record.
pub(crate) fn ending(end: &End) -> String {
    match end {
        End::Shutdown => "shutdown".into(),
        End::Reconnect => "the venue asked to reconnect".into(),
        End::Failed(e) | End::Fatal(e) => crate::error::ErrorChain(e).to_string(),
    }
}
