//! # feeder-core
//!
//! The library at the heart of crypto-feeder: it collects trades from crypto exchanges and
//! hands them, deduplicated and with OHLCV candles built along the way, to any number of
//! stores.
//!
//! What is here:
//! - [`model`]: [`Trade`], [`Candle`], [`Event`],
//!   exact decimals and nanosecond timestamps; their JSON form is the project's contract.
//! - [`exchange`]: the [`Exchange`](exchange::Exchange) trait, the small venue traits
//!   ([`StreamVenue`](exchange::StreamVenue), [`PollVenue`](exchange::PollVenue)) and the
//!   drivers that run them.
//! - [`writer`]: the [`Writer`](writer::Writer) trait and the runner around each writer.
//! - [`pipeline`]: the dedup [`Valve`](pipeline::Valve) and the candle
//!   [`Aggregator`](pipeline::Aggregator), plain structs usable on their own.
//! - [`venue`]: a venue described as data ([`VenueSpec`](venue::VenueSpec)), the one
//!   factory that builds every venue from it, and the readers its parser needs
//!   ([`SymbolTable`](venue::SymbolTable), [`read`](venue::read)).
//! - [`prelude`]: what a venue or a writer in another crate needs, in one `use`.
//! - [`budget`]: the bounds in bytes of the queues between the tasks.
//! - [`observe`]: a [`Monitor`](observe::Monitor) of a running feeder (its streams'
//!   and writers' state, rates and counters) and, with the `observe` feature, the HTTP
//!   listener of Prometheus metrics, health checks and a status page.
//! - [`feeder`]: the orchestrator that builds all of it from a [`config::Config`], supervises
//!   it and shuts it down cleanly.
//!
//! What is not here: concrete venues (`feeder-exchanges`), concrete stores (`feeder-writers`)
//! and the command line (`feeder-cli`).
#![deny(missing_docs)]

pub mod budget;
pub mod config;
pub mod error;
pub mod exchange;
pub mod feeder;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod prelude;
#[cfg(feature = "testing")]
pub mod testing;
pub mod venue;
pub mod writer;

pub use error::{ExchangeError, ParseError, Rejection, WriteError};
pub use model::{Candle, Event, Side, Symbol, Timestamp, Trade, TradeId};
