//! What a venue or a writer written in another crate needs, in one `use`:
//!
//! ```
//! use feeder_core::prelude::*;
//! ```
//!
//! It brings the traits to implement ([`StreamVenue`], [`PollVenue`], [`InstrumentsVenue`],
//! [`Exchange`], [`Writer`], [`WriterFactory`]), the description a venue registers
//! ([`VenueSpec`], [`Transports`]), the readers of venue payloads ([`SymbolTable`] and the
//! functions of [`read`]), the model, the errors, the config entries, and the crates their
//! signatures use, re-exported at the versions this crate is built with: [`async_trait`](macro@async_trait),
//! [`CancellationToken`], [`Url`], [`Decimal`], [`Arc`] and [`Duration`]. An outside crate
//! then needs no other dependency than `feeder-core` (add `serde` for `#[derive(Deserialize)]`
//! on writer options, and `tokio` for a `main`).

pub use std::sync::Arc;
pub use std::time::Duration;

pub use async_trait::async_trait;
pub use rust_decimal::Decimal;
pub use tokio_util::sync::CancellationToken;
pub use url::Url;

pub use crate::config::{Config, ConfigError, ExchangeConfig, WriterConfig};
pub use crate::error::{ExchangeError, ParseError, Rejection, WriteError};
pub use crate::exchange::{
    Cursor, Exchange, ExchangeContext, Frame, HttpRequest, HttpResponse, InstrumentsVenue, Page,
    Ping, PollRequest, PollVenue, StreamVenue, Transport, WsMessage,
};
pub use crate::feeder::{ExchangeFactory, Feeder, Registry, Summary, WriterFactory};
pub use crate::model::{Candle, Event, Gap, Side, Symbol, Timestamp, Trade, TradeId};
pub use crate::venue::read::{self, TextId, Uint};
pub use crate::venue::{SymbolTable, Transports, VenueFactory, VenueSpec, USER_AGENT};
pub use crate::writer::Writer;
