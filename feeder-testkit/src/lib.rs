//! # feeder-testkit
//!
//! Servers on `127.0.0.1:0` that stand in for exchanges in tests, benchmarks and demos.
//!
//! - [`ws::WsServer`]: a WebSocket server driven by a per-connection handler or by a
//!   [`ws::Step`] script, with fault injection (abrupt drops, stalls, close frames, pings).
//! - [`http::HttpServer`]: an HTTP/1.1 server driven by a handler or by queued responses per
//!   path, recording every request it served.
//! - [`proxy::TcpProxy`]: a TCP proxy in front of a real server whose line can be cut and
//!   restored, to test how store clients ride out an outage.
//!
//! Both bind the loopback interface only, on a port the OS picks, and stop when dropped: every
//! task they spawn is owned by the server value and aborted with it.
//!
//! This generic part knows nothing of venues; the venue mocks built on it ([`venues`]:
//! [`venues::MockBitstamp`], [`venues::MockCoinbase`]) speak each exchange's exact wire
//! format, with generated trades kept as ground truth and faults on demand.
#![deny(missing_docs)]

pub mod http;
pub mod proxy;
pub mod venues;
pub mod ws;

mod log;

pub use log::WaitTimeout;
