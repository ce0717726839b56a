//! Trade frames in each venue's exact wire format, pre-encoded as complete server WebSocket
//! frames.
//!
//! Encoding JSON for every trade would make the loopback server, not the feeder, the
//! bottleneck. So a [`Chunk`] of frames is encoded once, and every field that must change from
//! one trade to the next (the trade id, and the times derived from it) is written with a fixed
//! number of digits at a known offset. Sending the next chunk's worth of trades rewrites only
//! those digits in place: the frames stay byte-exact, every id stays unique and increasing,
//! and trade times keep moving forward so the candle aggregator sees a live market.
//!
//! Adding a venue is one [`Venue`] variant: its registry name, how it spells a symbol, and
//! its trade payload in `Venue::encode`.

use std::fmt;
use std::ops::Range;

use anyhow::{anyhow, bail, Context as _};
use feeder_core::model::{Symbol, Timestamp};

/// Ids start here so that every id of a run has the same number of digits (13): a JSON number
/// cannot be zero-padded, but it can be large.
pub const ID_BASE: u64 = 1_000_000_000_000;
/// The last id that still has 13 digits.
const ID_MAX: u64 = 9_999_999_999_999;
/// Frames per chunk: large enough that a throughput run writes big buffers, small enough that
/// rewriting a chunk's digits stays cheap and cache-friendly.
pub const CHUNK_FRAMES: usize = 4096;

/// A venue whose trade stream the benchmark can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Venue {
    /// Coinbase Exchange, `match` messages of the `matches` channel.
    Coinbase,
    /// Bitstamp WebSocket v2, `trade` events of `live_trades_[pair]`.
    Bitstamp,
    /// Binance spot, `trade` events of the `<symbol>@trade` stream (raw, not wrapped in a
    /// combined-stream envelope). Runs only when the registry has a `binance` venue.
    Binance,
}

impl Venue {
    /// Every venue the benchmark knows, in table order.
    pub const ALL: [Venue; 3] = [Venue::Coinbase, Venue::Bitstamp, Venue::Binance];

    /// The registry name (also the exchange name in every trade).
    pub const fn name(self) -> &'static str {
        match self {
            Venue::Coinbase => "coinbase",
            Venue::Bitstamp => "bitstamp",
            Venue::Binance => "binance",
        }
    }

    /// The venue called `name`.
    pub fn parse(name: &str) -> anyhow::Result<Venue> {
        Venue::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| anyhow!("unknown venue {name:?} (known: coinbase, bitstamp, binance)"))
    }

    /// The quote asset the venue's symbols use.
    const fn quote(self) -> &'static str {
        match self {
            Venue::Binance => "USDT",
            Venue::Coinbase | Venue::Bitstamp => "USD",
        }
    }

    /// `count` normalized symbols: `BTC-USD` first, then generated ones (`C01-USD`, ...).
    pub fn symbols(self, count: usize) -> anyhow::Result<Vec<Symbol>> {
        (0..count.max(1))
            .map(|i| {
                let base = if i == 0 {
                    "BTC".to_owned()
                } else {
                    format!("C{i:02}")
                };
                Symbol::new(&base, self.quote()).map_err(|e| anyhow!("symbol {base}: {e}"))
            })
            .collect()
    }

    /// Encodes the payload of one trade, marking the fields that change per trade.
    fn encode(self, p: &mut Payload, t: &Template<'_>) {
        let maker = if t.taker_buys { "sell" } else { "buy" };
        match self {
            Venue::Coinbase => {
                // Field order as the feed sends it; `side` is the maker's.
                p.text(r#"{"type":"match","trade_id":"#);
                p.field(Field::Id);
                p.text(r#","maker_order_id":"ac928c66-ca53-498f-9c13-"#);
                p.text(&format!("{:012x}", t.index));
                p.text(r#"","taker_order_id":"132fb6ae-456b-4654-b4e0-"#);
                p.text(&format!("{:012x}", t.index + 1));
                p.text(r#"","side":""#);
                p.text(maker);
                p.text(r#"","size":""#);
                p.text(t.amount);
                p.text(r#"","price":""#);
                p.text(t.price);
                p.text(r#"","product_id":""#);
                p.text(t.symbol.as_str());
                p.text(r#"","sequence":"#);
                p.field(Field::Id);
                p.text(r#","time":""#);
                p.field(Field::Rfc3339Micros);
                p.text(r#""}"#);
            }
            Venue::Bitstamp => {
                let pair = format!("{}{}", t.symbol.base(), t.symbol.quote()).to_lowercase();
                p.text(r#"{"data":{"id":"#);
                p.field(Field::Id);
                p.text(r#","timestamp":""#);
                p.field(Field::Secs);
                p.text(r#"","amount":"#);
                p.text(t.amount_number);
                p.text(r#","amount_str":""#);
                p.text(t.amount);
                p.text(r#"","price":"#);
                p.text(t.price);
                p.text(r#","price_str":""#);
                p.text(t.price);
                // `type` is the taker's side: 0 buy, 1 sell.
                p.text(if t.taker_buys {
                    r#"","type":0,"microtimestamp":""#
                } else {
                    r#"","type":1,"microtimestamp":""#
                });
                p.field(Field::Micros);
                p.text(&format!(
                    r#"","buy_order_id":{},"sell_order_id":{}}},"channel":"live_trades_{pair}","event":"trade"}}"#,
                    1_795_483_484_868_608 + t.index,
                    1_795_483_485_413_376 + t.index
                ));
            }
            Venue::Binance => {
                // `m`: the buyer is the maker, so the taker sold.
                p.text(r#"{"e":"trade","E":"#);
                p.field(Field::Millis);
                p.text(r#","s":""#);
                p.text(&format!("{}{}", t.symbol.base(), t.symbol.quote()));
                p.text(r#"","t":"#);
                p.field(Field::Id);
                p.text(r#","p":""#);
                p.text(t.price);
                p.text(r#"","q":""#);
                p.text(t.amount);
                p.text(r#"","T":"#);
                p.field(Field::Millis);
                p.text(if t.taker_buys {
                    r#","m":false,"M":true}"#
                } else {
                    r#","m":true,"M":true}"#
                });
            }
        }
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What stays fixed for one frame slot of a chunk.
struct Template<'a> {
    /// Position of the slot in the chunk.
    index: u64,
    symbol: &'a Symbol,
    price: &'a str,
    amount: &'a str,
    /// The amount as a JSON number (Bitstamp also sends that form).
    amount_number: &'a str,
    taker_buys: bool,
}

/// A per-trade field, written with a fixed number of digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// The trade id, 13 digits.
    Id,
    /// Trade time, RFC 3339 with microseconds (27 bytes until the year 10000).
    Rfc3339Micros,
    /// Trade time in seconds since the epoch (10 digits until 2286).
    Secs,
    /// Trade time in milliseconds (13 digits).
    Millis,
    /// Trade time in microseconds (16 digits).
    Micros,
}

impl Field {
    const fn width(self) -> usize {
        match self {
            Field::Id | Field::Millis => 13,
            Field::Rfc3339Micros => 27,
            Field::Secs => 10,
            Field::Micros => 16,
        }
    }
}

/// A patch site: where a field sits in the chunk and which frame it belongs to.
#[derive(Clone, Copy, Debug)]
struct Patch {
    at: usize,
    field: Field,
    frame: usize,
}

/// One payload being encoded.
#[derive(Default)]
struct Payload {
    bytes: Vec<u8>,
    /// Fields, by offset in `bytes`.
    fields: Vec<(usize, Field)>,
}

impl Payload {
    fn text(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
    }

    /// Reserves the field's width; the digits are written by [`Chunk::advance_to`].
    fn field(&mut self, field: Field) {
        self.fields.push((self.bytes.len(), field));
        self.bytes.extend(std::iter::repeat_n(b'0', field.width()));
    }
}

/// How trade times move: the first trade's time and the step between consecutive trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Time of trade 0, in microseconds since the epoch.
    pub start_micros: i64,
    /// Microseconds between consecutive trades (at least 1).
    pub step_micros: i64,
}

/// A chunk of [`CHUNK_FRAMES`] complete, unmasked server WebSocket text frames, whose
/// per-trade digits are rewritten for each successive run of trades.
pub struct Chunk {
    bytes: Vec<u8>,
    /// Offset of each frame; one more entry than frames (the end).
    offsets: Vec<usize>,
    patches: Vec<Patch>,
    clock: Clock,
    /// Trade index of the chunk's first frame, as currently written.
    first: u64,
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("bytes", &self.bytes.len())
            .field("frames", &self.frames())
            .field("first", &self.first)
            .finish()
    }
}

impl Chunk {
    /// Encodes `frames` trade frames of `venue`, round-robin over `symbols`, holding trades
    /// `0..frames`.
    pub fn new(
        venue: Venue,
        symbols: &[Symbol],
        frames: usize,
        clock: Clock,
    ) -> anyhow::Result<Chunk> {
        if symbols.is_empty() || frames == 0 {
            bail!("a chunk needs at least one symbol and one frame");
        }
        if clock.step_micros < 1 {
            bail!("the trade time step must be at least 1 µs");
        }
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(frames + 1);
        let mut patches = Vec::new();
        let mut payload = Payload::default();
        for (i, symbol) in symbols.iter().cycle().take(frames).enumerate() {
            let index = i as u64;
            // Deterministic, varied prices, amounts and sides.
            let cents = 4_321_000 + (index * 37) % 20_000;
            let price = format!("{}.{:02}", cents / 100, cents % 100);
            let sats = 10_000 + (index * 7_919) % 5_000_000;
            let amount = format!("0.{sats:08}");
            let amount_number = amount.trim_end_matches('0').to_owned();
            let template = Template {
                index,
                symbol,
                price: &price,
                amount: &amount,
                amount_number: &amount_number,
                taker_buys: index % 3 != 0,
            };
            payload.bytes.clear();
            payload.fields.clear();
            venue.encode(&mut payload, &template);
            offsets.push(bytes.len());
            write_frame_header(&mut bytes, payload.bytes.len());
            let start = bytes.len();
            bytes.extend_from_slice(&payload.bytes);
            patches.extend(payload.fields.iter().map(|&(at, field)| Patch {
                at: start + at,
                field,
                frame: i,
            }));
        }
        offsets.push(bytes.len());
        let mut chunk = Chunk {
            bytes,
            offsets,
            patches,
            clock,
            first: 0,
        };
        chunk.write_fields()?;
        Ok(chunk)
    }

    /// Frames in the chunk.
    pub fn frames(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The encoded frames.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of frames `range` (frame indexes within the chunk).
    pub fn frame_bytes(&self, range: Range<usize>) -> anyhow::Result<&[u8]> {
        let start = self.offsets.get(range.start).copied();
        let end = self.offsets.get(range.end).copied();
        match (start, end) {
            (Some(s), Some(e)) if s <= e => self.bytes.get(s..e).context("frame range"),
            _ => bail!("frames {range:?} are outside the chunk"),
        }
    }

    /// The payload of frame `i` (without its WebSocket header), for checks and benchmarks.
    pub fn payload(&self, i: usize) -> anyhow::Result<&[u8]> {
        let frame = self.frame_bytes(i..i + 1)?;
        let header = match frame.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            Some(_) => 2,
            None => bail!("empty frame"),
        };
        frame.get(header..).context("frame shorter than its header")
    }

    /// Rewrites the per-trade digits so that the chunk holds trades `first..first + frames`.
    pub fn advance_to(&mut self, first: u64) -> anyhow::Result<()> {
        self.first = first;
        self.write_fields()
    }

    /// The id of trade `k`.
    pub fn trade_id(k: u64) -> u64 {
        ID_BASE + k
    }

    /// The time of trade `k`, in microseconds since the epoch.
    pub fn trade_micros(&self, k: u64) -> i64 {
        let k = i64::try_from(k).unwrap_or(i64::MAX);
        self.clock
            .start_micros
            .saturating_add(k.saturating_mul(self.clock.step_micros))
    }

    fn write_fields(&mut self) -> anyhow::Result<()> {
        let mut scratch = Vec::with_capacity(32);
        for p in &self.patches {
            let k = self.first + p.frame as u64;
            let micros = self.trade_micros(k);
            let slot = self
                .bytes
                .get_mut(p.at..p.at + p.field.width())
                .context("patch site outside the chunk")?;
            match p.field {
                Field::Id => {
                    let id = Self::trade_id(k);
                    if id > ID_MAX {
                        bail!("trade {k} needs more than 13 id digits");
                    }
                    put_digits(slot, id)?;
                }
                Field::Secs => put_digits(slot, unsigned(micros.div_euclid(1_000_000))?)?,
                Field::Millis => put_digits(slot, unsigned(micros.div_euclid(1_000))?)?,
                Field::Micros => put_digits(slot, unsigned(micros)?)?,
                Field::Rfc3339Micros => {
                    scratch.clear();
                    Timestamp::from_unix_micros(micros).write_rfc3339(&mut scratch);
                    if scratch.len() != slot.len() {
                        bail!("time {micros} µs does not fit RFC 3339 with 27 bytes");
                    }
                    slot.copy_from_slice(&scratch);
                }
            }
        }
        Ok(())
    }
}

fn unsigned(v: i64) -> anyhow::Result<u64> {
    u64::try_from(v).map_err(|_| anyhow!("negative time {v}"))
}

/// Writes `v` as exactly `slot.len()` decimal digits.
fn put_digits(slot: &mut [u8], mut v: u64) -> anyhow::Result<()> {
    for b in slot.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
    if v != 0 {
        bail!("value does not fit in {} digits", slot.len());
    }
    Ok(())
}

/// The header of an unmasked server text frame with the FIN bit set.
fn write_frame_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use feeder_core::config::ExchangeConfig;
    use feeder_core::exchange::{Frame, StreamVenue};
    use feeder_core::model::{parse_decimal, Side, Trade};
    use feeder_exchanges::bitstamp::BitstampVenue;
    use feeder_exchanges::coinbase::CoinbaseVenue;

    use super::*;

    const CLOCK: Clock = Clock {
        start_micros: 1_727_791_043_385_001,
        step_micros: 1_000,
    };

    pub(crate) fn config(venue: Venue, symbols: Vec<Symbol>) -> ExchangeConfig {
        let mut cfg = ExchangeConfig::new(venue.name(), symbols);
        cfg.backfill = false;
        cfg
    }

    fn parse_all(venue: Venue, chunk: &Chunk, symbols: &[Symbol]) -> Vec<Trade> {
        let parser: Arc<dyn StreamVenue> = match venue {
            Venue::Coinbase => {
                Arc::new(CoinbaseVenue::new(&config(venue, symbols.to_vec())).unwrap())
            }
            Venue::Bitstamp => {
                Arc::new(BitstampVenue::new(&config(venue, symbols.to_vec())).unwrap())
            }
            Venue::Binance => unreachable!("checked by the registry at run time"),
        };
        let mut out = Vec::new();
        for i in 0..chunk.frames() {
            let frame = parser
                .parse(chunk.payload(i).unwrap(), Timestamp::EPOCH, &mut out)
                .unwrap();
            assert_eq!(frame, Frame::Data);
        }
        out
    }

    #[test]
    fn frames_parse_with_the_real_parsers_and_advance_exactly() {
        for venue in [Venue::Coinbase, Venue::Bitstamp] {
            let symbols = venue.symbols(3).unwrap();
            let mut chunk = Chunk::new(venue, &symbols, 7, CLOCK).unwrap();
            for first in [0, 7, 7_000_000] {
                chunk.advance_to(first).unwrap();
                let trades = parse_all(venue, &chunk, &symbols);
                assert_eq!(trades.len(), 7, "{venue}");
                for (i, t) in trades.iter().enumerate() {
                    let k = first + i as u64;
                    assert_eq!(t.exchange.as_ref(), venue.name());
                    assert_eq!(t.symbol, symbols[i % 3], "{venue}");
                    assert_eq!(t.trade_id.as_str(), (ID_BASE + k).to_string(), "{venue}");
                    assert_eq!(
                        t.timestamp.unix_nanos(),
                        chunk.trade_micros(k) * 1_000,
                        "{venue}"
                    );
                    let side = if i % 3 == 0 { Side::Sell } else { Side::Buy };
                    assert_eq!(t.side, side, "{venue} frame {i}");
                }
                assert_eq!(trades[1].price, parse_decimal("43210.37").unwrap());
                assert_eq!(trades[1].amount, parse_decimal("0.00017919").unwrap());
            }
        }
    }

    #[test]
    fn frame_headers_frame_the_payloads() {
        let symbols = Venue::Coinbase.symbols(1).unwrap();
        let chunk = Chunk::new(Venue::Coinbase, &symbols, 3, CLOCK).unwrap();
        let all = chunk.frame_bytes(0..3).unwrap();
        assert_eq!(all.len(), chunk.bytes().len());
        let first = chunk.frame_bytes(0..1).unwrap();
        assert_eq!(first[0], 0x81);
        assert_eq!(first[1], 126);
        let len = u16::from_be_bytes([first[2], first[3]]) as usize;
        assert_eq!(first.len(), 4 + len);
        assert!(chunk.frame_bytes(2..4).is_err());
    }

    #[test]
    fn ids_that_outgrow_their_digits_are_refused() {
        let symbols = Venue::Binance.symbols(1).unwrap();
        // A 1 µs step keeps the times in range, so that only the ids can overflow.
        let clock = Clock {
            step_micros: 1,
            ..CLOCK
        };
        let mut chunk = Chunk::new(Venue::Binance, &symbols, 2, clock).unwrap();
        assert!(chunk.advance_to(ID_MAX - ID_BASE - 1).is_ok());
        assert!(chunk.advance_to(ID_MAX - ID_BASE).is_err());
        let text = std::str::from_utf8(chunk.payload(0).unwrap()).unwrap();
        assert!(text.starts_with(r#"{"e":"trade","E":"#), "{text}");
    }
}
