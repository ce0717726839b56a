//! The bare client with serde: what a program of its own would do to read trades off the same
//! WebSocket, without the feeder. The pipeline's throughput is compared with it.
//!
//! Each frame is parsed by `serde_json` into a plain struct of the venue's trade fields:
//! price and amount into exact [`Decimal`]s (the one conversion no correct client can skip:
//! money is never a float), every other field as the venue sends it: numbers as integers and
//! strings borrowed from the frame, the trade time included (it is not turned into an
//! instant). The struct is then checked as a client would (a trade of the expected kind) and
//! kept from being optimised away. That is less work than the feeder does per trade (which
//! also parses the time, normalises the symbol and side, and builds an owned trade), so the
//! feeder's ratio against it is conservative.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::wire::Venue;

/// A Coinbase `match` message.
///
/// ```json
/// {"type":"match","trade_id":1000000000001,"maker_order_id":"ac928c66-...","taker_order_id":"132fb6ae-...",
///  "side":"sell","size":"0.01","price":"43210.12","product_id":"BTC-USD","sequence":1000000000001,
///  "time":"2024-01-02T03:04:05.123456Z"}
/// ```
#[derive(Debug, Deserialize)]
struct CoinbaseMatch<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    trade_id: u64,
    side: &'a str,
    #[serde(with = "rust_decimal::serde::str")]
    size: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    price: Decimal,
    product_id: &'a str,
    time: &'a str,
}

/// A Bitstamp `trade` event of a `live_trades_[pair]` channel.
///
/// ```json
/// {"data":{"id":1000000000001,"timestamp":"1704164645","amount":0.01,"amount_str":"0.01",
///  "price":43210.12,"price_str":"43210.12","type":0,"microtimestamp":"1704164645123456",
///  "buy_order_id":1795483484868608,"sell_order_id":1795483485413376},
///  "channel":"live_trades_btcusd","event":"trade"}
/// ```
#[derive(Debug, Deserialize)]
struct BitstampEvent<'a> {
    #[serde(borrow)]
    data: BitstampTrade<'a>,
    channel: &'a str,
    event: &'a str,
}

#[derive(Debug, Deserialize)]
struct BitstampTrade<'a> {
    id: u64,
    #[serde(with = "rust_decimal::serde::str")]
    amount_str: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    price_str: Decimal,
    #[serde(rename = "type")]
    side: u8,
    microtimestamp: &'a str,
}

/// A Binance `trade` event of a `<symbol>@trade` stream.
///
/// ```json
/// {"e":"trade","E":1704164645123,"s":"BTCUSDT","t":1000000000001,"p":"43210.12","q":"0.01",
///  "T":1704164645123,"m":true,"M":true}
/// ```
#[derive(Debug, Deserialize)]
struct BinanceTrade<'a> {
    #[serde(rename = "e")]
    kind: &'a str,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "t")]
    id: u64,
    #[serde(rename = "p", with = "rust_decimal::serde::str")]
    price: Decimal,
    #[serde(rename = "q", with = "rust_decimal::serde::str")]
    amount: Decimal,
    #[serde(rename = "T")]
    time: u64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

/// Parses one frame of `venue` with serde; true when it held a trade.
pub fn parse_trade(venue: Venue, frame: &[u8]) -> bool {
    match venue {
        Venue::Coinbase => match serde_json::from_slice::<CoinbaseMatch<'_>>(frame) {
            Ok(m) => {
                let m = std::hint::black_box(m);
                m.kind == "match"
                    && !m.product_id.is_empty()
                    && !m.side.is_empty()
                    && !m.time.is_empty()
                    && m.trade_id > 0
                    && !m.size.is_zero()
                    && !m.price.is_zero()
            }
            Err(_) => false,
        },
        Venue::Bitstamp => match serde_json::from_slice::<BitstampEvent<'_>>(frame) {
            Ok(e) => {
                let e = std::hint::black_box(e);
                e.event == "trade"
                    && !e.channel.is_empty()
                    && e.data.id > 0
                    && e.data.side <= 1
                    && !e.data.microtimestamp.is_empty()
                    && !e.data.amount_str.is_zero()
                    && !e.data.price_str.is_zero()
            }
            Err(_) => false,
        },
        Venue::Binance => match serde_json::from_slice::<BinanceTrade<'_>>(frame) {
            Ok(t) => {
                let t = std::hint::black_box(t);
                t.kind == "trade"
                    && !t.symbol.is_empty()
                    && t.id > 0
                    && t.time > 0
                    && !t.amount.is_zero()
                    && !t.price.is_zero()
                    && std::hint::black_box(t.buyer_is_maker) == t.buyer_is_maker
            }
            Err(_) => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Chunk, Clock, CHUNK_FRAMES};

    /// Every frame the server sends, of every venue, is a trade to the bare client: otherwise
    /// the client would be timed on errors.
    #[test]
    fn the_bare_client_reads_every_served_frame_as_a_trade() {
        for venue in Venue::ALL {
            let symbols = venue.symbols(3).unwrap();
            let clock = Clock {
                start_micros: 1_704_164_645_123_456,
                step_micros: 1_000,
            };
            let chunk = Chunk::new(venue, &symbols, CHUNK_FRAMES.min(64), clock).unwrap();
            for i in 0..chunk.frames() {
                let p = chunk.payload(i).unwrap();
                assert!(
                    parse_trade(venue, p),
                    "{venue}: {}",
                    String::from_utf8_lossy(p)
                );
            }
            assert!(!parse_trade(venue, br#"{"type":"subscriptions"}"#));
        }
    }
}
