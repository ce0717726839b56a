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
//! Each venue is one folder with a `VENUE` description ([`VenueSpec`](feeder_core::venue::VenueSpec))
//! and one line in the `venues!` list of this file, behind a cargo feature of its name (all
//! on by default). [`register`] adds every enabled venue to a [`Registry`].
//!
//! What is not here: the drivers (in `feeder-core`) and mock servers (in `feeder-testkit`).
#![deny(missing_docs)]

mod common;
#[cfg(all(
    test,
    feature = "bitstamp",
    feature = "coinbase",
    feature = "bitfinex",
    feature = "huobi",
    feature = "binance",
    feature = "bybit",
    feature = "okx",
    feature = "kraken",
))]
mod instruments_tests;
mod scan;
#[cfg(test)]
pub(crate) mod test_support;

use feeder_core::feeder::Registry;

/// Declares each venue's module and registers its `VENUE` description, from one list: a
/// venue cannot be compiled in and left unregistered. `name: "feature"` builds the venue
/// only with that cargo feature; a bare `name` always builds it.
macro_rules! venues {
    ($($name:ident $(: $feature:literal)?),* $(,)?) => {
        $(
            $(#[cfg(feature = $feature)])?
            pub mod $name;
        )*

        /// Registers every venue enabled at build time under its usual name (`bitstamp`,
        /// `coinbase`, `bitfinex`, `gemini`, `huobi`, `binance`, `bybit`, `okx`, `kraken`),
        /// each built by the generic [`VenueFactory`](feeder_core::venue::VenueFactory) from
        /// its `VENUE` description.
        pub fn register(registry: &mut Registry) {
            $(
                $(#[cfg(feature = $feature)])?
                registry.register_venue($name::VENUE);
            )*
            let _ = registry;
        }
    };
}

// The bundled venues, one line each: the module, and the cargo feature that builds it.
venues! {
    binance: "binance",
    bitfinex: "bitfinex",
    bitstamp: "bitstamp",
    bybit: "bybit",
    coinbase: "coinbase",
    gemini: "gemini",
    huobi: "huobi",
    kraken: "kraken",
    okx: "okx",
}

/// How far back each bundled venue can fill, one row per venue: the README's table of
/// guarantees is this one.
#[cfg(all(
    test,
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
mod reach {
    use feeder_core::exchange::{Cursor, PollVenue};
    use feeder_core::model::{Timestamp, TradeId};

    use crate::test_support::{config, sym};

    /// Whether `v` pages forward from a trade of `symbol`, and how far apart its pages go.
    fn forward<V: PollVenue>(v: &V, symbol: &str) -> (bool, std::time::Duration) {
        let after = Cursor {
            trade_id: TradeId::from_u64(1_000_000),
            timestamp: Timestamp::from_unix_micros(1_727_791_043_385_000),
        };
        let pages = v.forward_request(&sym(symbol), &after).is_some();
        (pages, v.request_spacing())
    }

    #[test]
    fn every_venue_fills_forward_where_its_api_allows_and_no_faster_than_it_allows() {
        let cfg = |name: &str, s: &str| config(name, &[s], None, None);
        let ms = std::time::Duration::from_millis;
        let rows = [
            (
                "coinbase",
                forward(
                    &crate::coinbase::CoinbaseVenue::new(&cfg("coinbase", "BTC-USD")).unwrap(),
                    "BTC-USD",
                ),
                (true, ms(100)),
            ),
            (
                "binance",
                forward(
                    &crate::binance::BinanceVenue::new(&cfg("binance", "BTC-USDT")).unwrap(),
                    "BTC-USDT",
                ),
                (true, ms(250)),
            ),
            (
                "okx",
                forward(
                    &crate::okx::OkxVenue::new(&cfg("okx", "BTC-USDT")).unwrap(),
                    "BTC-USDT",
                ),
                (true, ms(100)),
            ),
            (
                "kraken",
                forward(
                    &crate::kraken::KrakenVenue::new(&cfg("kraken", "BTC-USD")).unwrap(),
                    "BTC-USD",
                ),
                (true, ms(1_000)),
            ),
            (
                "bitfinex",
                forward(
                    &crate::bitfinex::BitfinexVenue::new(&cfg("bitfinex", "BTC-USD")).unwrap(),
                    "BTC-USD",
                ),
                (true, ms(4_000)),
            ),
            (
                "gemini",
                forward(
                    &crate::gemini::GeminiVenue::new(&cfg("gemini", "BTC-USD")).unwrap(),
                    "BTC-USD",
                ),
                (true, ms(1_000)),
            ),
            // A window back from now, the newest 60, the newest 2000: walked back, and what
            // they cannot reach is a gap.
            (
                "bitstamp",
                forward(
                    &crate::bitstamp::BitstampVenue::new(&cfg("bitstamp", "BTC-USD")).unwrap(),
                    "BTC-USD",
                ),
                (false, ms(0)),
            ),
            (
                "bybit",
                forward(
                    &crate::bybit::BybitVenue::new(&cfg("bybit", "BTC-USDT")).unwrap(),
                    "BTC-USDT",
                ),
                (false, ms(0)),
            ),
            (
                "huobi",
                forward(
                    &crate::huobi::HuobiVenue::new(&cfg("huobi", "BTC-USDT")).unwrap(),
                    "BTC-USDT",
                ),
                (false, ms(0)),
            ),
        ];
        let mut registry = feeder_core::feeder::Registry::new();
        crate::register(&mut registry);
        for (name, got, want) in rows {
            assert!(
                registry.exchange(name).is_some(),
                "{name} is not registered"
            );
            assert_eq!(got, want, "{name}");
        }
    }
}
