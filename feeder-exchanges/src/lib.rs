//! # feeder-exchanges
//!
//! The venues bundled with crypto-feeder, one folder each. A venue says only what is specific
//! to it: its endpoints, its subscribe messages, how its symbols are spelled and how its
//! payloads parse. It implements [`StreamVenue`](feeder_core::exchange::StreamVenue) and
//! [`PollVenue`](feeder_core::exchange::PollVenue); the drivers of `feeder-core` do the
//! connecting, reconnecting, polling, paging and backfilling.
//!
//! Parsers are pure and allocation-light: they read borrowed wire structs straight from the
//! payload and append normalized [`Trade`](feeder_core::Trade)s to the caller's buffer.
//!
//! Each venue sits behind a cargo feature of its name (all on by default). [`register`] adds
//! every enabled venue to a [`Registry`].
//!
//! What is not here: the drivers (in `feeder-core`) and mock servers (in `feeder-testkit`).
#![deny(missing_docs)]

#[cfg(any(
    feature = "bitstamp",
    feature = "coinbase",
    feature = "bitfinex",
    feature = "gemini",
    feature = "huobi",
    feature = "binance",
    feature = "bybit",
    feature = "okx",
    feature = "kraken",
))]
mod common;
mod scan;
#[cfg(test)]
pub(crate) mod test_support;

#[cfg(feature = "binance")]
pub mod binance;
#[cfg(feature = "bitfinex")]
pub mod bitfinex;
#[cfg(feature = "bitstamp")]
pub mod bitstamp;
#[cfg(feature = "bybit")]
pub mod bybit;
#[cfg(feature = "coinbase")]
pub mod coinbase;
#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "huobi")]
pub mod huobi;
#[cfg(feature = "kraken")]
pub mod kraken;
#[cfg(feature = "okx")]
pub mod okx;

use feeder_core::feeder::Registry;

/// Registers every venue enabled at build time under its usual name (`bitstamp`,
/// `coinbase`, `bitfinex`, `gemini`, `huobi`, `binance`, `bybit`, `okx`, `kraken`).
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "binance")]
    binance::register(registry);
    #[cfg(feature = "bitfinex")]
    bitfinex::register(registry);
    #[cfg(feature = "bitstamp")]
    bitstamp::register(registry);
    #[cfg(feature = "bybit")]
    bybit::register(registry);
    #[cfg(feature = "coinbase")]
    coinbase::register(registry);
    #[cfg(feature = "gemini")]
    gemini::register(registry);
    #[cfg(feature = "huobi")]
    huobi::register(registry);
    #[cfg(feature = "okx")]
    okx::register(registry);
    #[cfg(feature = "kraken")]
    kraken::register(registry);
    let _ = registry;
}
