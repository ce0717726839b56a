//! The mock venues of `feeder-testkit` by registry name: the one place a driver test turns a
//! venue's name into its running mock, and reaches the controls only some mocks have.

use std::ops::Deref;

use feeder_testkit::venues::{
    MockBinance, MockBitfinex, MockBitstamp, MockBybit, MockCoinbase, MockConfig, MockGemini,
    MockHuobi, MockKraken, MockOkx, MockVenue,
};

/// A running mock of one of the bundled venues.
pub enum Mock {
    /// Bitstamp.
    Bitstamp(MockBitstamp),
    /// Coinbase Exchange.
    Coinbase(MockCoinbase),
    /// Bitfinex.
    Bitfinex(MockBitfinex),
    /// Gemini.
    Gemini(MockGemini),
    /// Huobi (HTX).
    Huobi(MockHuobi),
    /// Binance spot.
    Binance(MockBinance),
    /// Bybit spot.
    Bybit(MockBybit),
    /// OKX.
    Okx(MockOkx),
    /// Kraken spot.
    Kraken(MockKraken),
}

/// Starts `name`'s mock with `cfg`, or with the mock's own defaults (its usual symbols) when
/// `cfg` is `None`. `None` when no mock of that name is known here: a venue without a row in
/// this table cannot be driven by any test.
pub async fn start(name: &str, cfg: Option<MockConfig>) -> Option<Mock> {
    macro_rules! start {
        ($variant:ident, $ty:ident) => {
            Mock::$variant(
                match cfg {
                    Some(cfg) => $ty::start_with(cfg).await,
                    None => $ty::start().await,
                }
                .unwrap_or_else(|e| panic!("{name}: the mock did not start: {e}")),
            )
        };
    }
    Some(match name {
        "bitstamp" => start!(Bitstamp, MockBitstamp),
        "coinbase" => start!(Coinbase, MockCoinbase),
        "bitfinex" => start!(Bitfinex, MockBitfinex),
        "gemini" => start!(Gemini, MockGemini),
        "huobi" => start!(Huobi, MockHuobi),
        "binance" => start!(Binance, MockBinance),
        "bybit" => start!(Bybit, MockBybit),
        "okx" => start!(Okx, MockOkx),
        "kraken" => start!(Kraken, MockKraken),
        _ => return None,
    })
}

impl Deref for Mock {
    type Target = MockVenue;

    fn deref(&self) -> &MockVenue {
        match self {
            Mock::Bitstamp(m) => m,
            Mock::Coinbase(m) => m,
            Mock::Bitfinex(m) => m,
            Mock::Gemini(m) => m,
            Mock::Huobi(m) => m,
            Mock::Binance(m) => m,
            Mock::Bybit(m) => m,
            Mock::Okx(m) => m,
            Mock::Kraken(m) => m,
        }
    }
}

impl Mock {
    /// Has the venue ask its clients to reconnect, the way it does before maintenance:
    /// Bitstamp's `bts:request_reconnect`, Bitfinex's info 20051, OKX's upgrade notice
    /// 64008, Binance's `serverShutdown` event. Panics for a venue that has no such message.
    pub fn ask_to_reconnect(&self) {
        match self {
            Mock::Bitstamp(m) => m.request_reconnect(),
            Mock::Bitfinex(m) => m.request_reconnect(),
            Mock::Okx(m) => m.notice_upgrade(),
            Mock::Binance(m) => m.server_shutdown(),
            _ => panic!("this venue never asks its clients to reconnect"),
        }
    }

    /// Sends Coinbase's heartbeat, which names each product's newest trade. Panics for any
    /// other venue.
    pub fn coinbase_heartbeat(&self) {
        match self {
            Mock::Coinbase(m) => m.heartbeat(),
            _ => panic!("only Coinbase's heartbeat names a trade"),
        }
    }

    /// Sends Huobi's application ping, `{"ping": <n>}`. Panics for any other venue.
    pub fn huobi_ping(&self) {
        match self {
            Mock::Huobi(m) => m.ping(),
            _ => panic!("only Huobi pings its clients with a number"),
        }
    }
}
