//! The JSON of each venue's hot trade message three ways, into the same `Trade` (exact
//! decimals, time, symbol): the venue's serde path (`parse_with_serde`), its parser as it runs
//! (the in-place scanner of `feeder-exchanges/src/scan.rs` first), and `sonic-rs` reading the
//! same message into borrowed structs, converted with the same readers.
//!
//! `cargo bench -p feeder-bench --bench json` (add `-- <venue>` for one venue). Each frame is
//! the venue's documented trade message, as stored in `feeder-exchanges/test_data`. Huobi's
//! frames are gzip on the wire: `huobi` is the inflated JSON, `huobi_gzip` the whole frame.
//!
//! Before measuring, each venue's three readings are checked to give the same trades.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use feeder_core::config::ExchangeConfig;
use feeder_core::exchange::{Frame, StreamVenue};
use feeder_core::model::{Side, Symbol, Timestamp, Trade, TradeId};
use feeder_core::venue::read::{decimal, rfc3339, side_word, unix_micros, unix_millis};
use feeder_core::ParseError;
use serde::Deserialize;
use sonic_rs::LazyValue;

/// A reader of one frame into trades.
type Read<'v> = Box<dyn Fn(&[u8], &mut Vec<Trade>) -> Result<(), String> + 'v>;

/// One venue's message, and its three readers.
struct Case<'v> {
    name: &'static str,
    frame: Vec<u8>,
    serde: Read<'v>,
    fast: Read<'v>,
    sonic: Option<Read<'v>>,
}

fn stored(venue: &str, file: &str) -> Vec<u8> {
    let path = format!(
        "{}/../feeder-exchanges/test_data/{venue}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config(name: &str, symbol: &str) -> ExchangeConfig {
    ExchangeConfig::new(name, vec![Symbol::parse(symbol).expect("symbol")])
}

/// `parse`, as data.
fn data(r: Result<Frame, ParseError>) -> Result<(), String> {
    match r {
        Ok(Frame::Data) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A venue's `parse` and `parse_with_serde` as readers.
macro_rules! readers {
    ($v:expr) => {{
        let v = Arc::new($v);
        let (a, b) = (v.clone(), v);
        (
            Box::new(move |f: &[u8], out: &mut Vec<Trade>| {
                data(b.parse_with_serde(f, Timestamp::EPOCH, out))
            }) as Read<'static>,
            Box::new(move |f: &[u8], out: &mut Vec<Trade>| data(a.parse(f, Timestamp::EPOCH, out)))
                as Read<'static>,
        )
    }};
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The trade a sonic-rs reader makes, with the fields every venue sets the same way.
fn trade(
    exchange: &Arc<str>,
    symbol: &Symbol,
    trade_id: TradeId,
    price: rust_decimal::Decimal,
    amount: rust_decimal::Decimal,
    side: Side,
    timestamp: Timestamp,
) -> Trade {
    Trade {
        exchange: exchange.clone(),
        symbol: symbol.clone(),
        trade_id,
        price,
        amount,
        side,
        timestamp,
        received_at: Timestamp::EPOCH,
    }
}

/// A symbol by the venue's name for it: the one configured, compared as the venues do for a
/// few names.
fn lookup<'s>(name: &str, wire: &str, symbol: &'s Symbol) -> Result<&'s Symbol, String> {
    if name == wire {
        Ok(symbol)
    } else {
        Err(format!("unknown symbol {name}"))
    }
}

fn cases() -> Vec<Case<'static>> {
    use feeder_exchanges::*;
    let mut cases = Vec::new();

    // Coinbase `match`.
    {
        #[derive(Deserialize)]
        struct Match<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            trade_id: u64,
            product_id: &'a str,
            price: &'a str,
            size: &'a str,
            side: &'a str,
            time: &'a str,
        }
        let v = coinbase::CoinbaseVenue::new(&config("coinbase", "BTC-USD")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("coinbase".into(), Symbol::parse("BTC-USD").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Match<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.kind != "match" {
                return Err("not a match".into());
            }
            out.push(trade(
                &ex,
                lookup(m.product_id, "BTC-USD", &sym)?,
                TradeId::from_u64(m.trade_id),
                decimal("price", m.price).map_err(err)?,
                decimal("size", m.size).map_err(err)?,
                side_word("side", m.side).map_err(err)?.opposite(),
                rfc3339("time", m.time).map_err(err)?,
            ));
            Ok(())
        });
        cases.push(Case {
            name: "coinbase",
            frame: stored("coinbase", "ws_match.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Bitstamp `trade`.
    {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            event: &'a str,
            channel: &'a str,
            #[serde(borrow)]
            data: Data<'a>,
        }
        #[derive(Deserialize)]
        struct Data<'a> {
            id: u64,
            price_str: &'a str,
            amount_str: &'a str,
            #[serde(rename = "type")]
            side: u64,
            microtimestamp: &'a str,
        }
        let v = bitstamp::BitstampVenue::new(&config("bitstamp", "BTC-USD")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("bitstamp".into(), Symbol::parse("BTC-USD").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Envelope<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.event != "trade" {
                return Err("not a trade".into());
            }
            let pair = m.channel.strip_prefix("live_trades_").ok_or("channel")?;
            let micros: u64 = m.data.microtimestamp.parse().map_err(err)?;
            out.push(trade(
                &ex,
                lookup(pair, "btcusd", &sym)?,
                TradeId::from_u64(m.data.id),
                decimal("price_str", m.data.price_str).map_err(err)?,
                decimal("amount_str", m.data.amount_str).map_err(err)?,
                match m.data.side {
                    0 => Side::Buy,
                    1 => Side::Sell,
                    _ => return Err("type".into()),
                },
                unix_micros("microtimestamp", micros).map_err(err)?,
            ));
            Ok(())
        });
        cases.push(Case {
            name: "bitstamp",
            frame: stored("bitstamp", "ws_trade.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Binance raw `trade`.
    {
        #[derive(Deserialize)]
        struct Event<'a> {
            e: &'a str,
            s: &'a str,
            t: u64,
            p: &'a str,
            q: &'a str,
            #[serde(rename = "T")]
            time: u64,
            m: bool,
        }
        let v = binance::BinanceVenue::new(&config("binance", "BTC-USDT")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("binance".into(), Symbol::parse("BTC-USDT").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Event<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.e != "trade" {
                return Err("not a trade".into());
            }
            out.push(trade(
                &ex,
                lookup(m.s, "BTCUSDT", &sym)?,
                TradeId::from_u64(m.t),
                decimal("p", m.p).map_err(err)?,
                decimal("q", m.q).map_err(err)?,
                if m.m { Side::Sell } else { Side::Buy },
                unix_millis("T", m.time).map_err(err)?,
            ));
            Ok(())
        });
        cases.push(Case {
            name: "binance",
            frame: stored("binance", "ws_trade_raw.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // OKX `trades` push.
    {
        #[derive(Deserialize)]
        struct Push<'a> {
            #[serde(borrow)]
            arg: Arg<'a>,
            #[serde(borrow)]
            data: Vec<OkxTrade<'a>>,
        }
        #[derive(Deserialize)]
        struct Arg<'a> {
            channel: &'a str,
        }
        #[derive(Deserialize)]
        struct OkxTrade<'a> {
            #[serde(rename = "instId")]
            inst_id: &'a str,
            #[serde(rename = "tradeId")]
            trade_id: &'a str,
            px: &'a str,
            sz: &'a str,
            side: &'a str,
            ts: &'a str,
        }
        let v = okx::OkxVenue::new(&config("okx", "BTC-USDT")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("okx".into(), Symbol::parse("BTC-USDT").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Push<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.arg.channel != "trades" {
                return Err("not trades".into());
            }
            for t in &m.data {
                out.push(trade(
                    &ex,
                    lookup(t.inst_id, "BTC-USDT", &sym)?,
                    TradeId::new(t.trade_id),
                    decimal("px", t.px).map_err(err)?,
                    decimal("sz", t.sz).map_err(err)?,
                    side_word("side", t.side).map_err(err)?,
                    unix_millis("ts", t.ts.parse().map_err(err)?).map_err(err)?,
                ));
            }
            Ok(())
        });
        cases.push(Case {
            name: "okx",
            frame: stored("okx", "ws_trade.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Bybit `publicTrade` push.
    {
        #[derive(Deserialize)]
        struct Push<'a> {
            topic: &'a str,
            #[serde(borrow)]
            data: Vec<BybitTrade<'a>>,
        }
        #[derive(Deserialize)]
        struct BybitTrade<'a> {
            i: &'a str,
            #[serde(rename = "T")]
            time: u64,
            p: &'a str,
            v: &'a str,
            #[serde(rename = "S")]
            side: &'a str,
            s: &'a str,
        }
        let v = bybit::BybitVenue::new(&config("bybit", "BTC-USDT")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("bybit".into(), Symbol::parse("BTC-USDT").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Push<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if !m.topic.starts_with("publicTrade.") {
                return Err("not a trade".into());
            }
            for t in &m.data {
                out.push(trade(
                    &ex,
                    lookup(t.s, "BTCUSDT", &sym)?,
                    TradeId::new(t.i),
                    decimal("p", t.p).map_err(err)?,
                    decimal("v", t.v).map_err(err)?,
                    match t.side {
                        "Buy" => Side::Buy,
                        "Sell" => Side::Sell,
                        _ => return Err("S".into()),
                    },
                    unix_millis("T", t.time).map_err(err)?,
                ));
            }
            Ok(())
        });
        cases.push(Case {
            name: "bybit",
            frame: stored("bybit", "ws_trade.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Kraken v2 `trade` push: price and quantity are JSON numbers, read from their text.
    {
        #[derive(Deserialize)]
        struct Push<'a> {
            channel: &'a str,
            #[serde(borrow)]
            data: Vec<KrakenTrade<'a>>,
        }
        #[derive(Deserialize)]
        struct KrakenTrade<'a> {
            symbol: &'a str,
            side: &'a str,
            #[serde(borrow)]
            price: LazyValue<'a>,
            #[serde(borrow)]
            qty: LazyValue<'a>,
            trade_id: u64,
            timestamp: &'a str,
        }
        let v = kraken::KrakenVenue::new(&config("kraken", "BTC-USD")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("kraken".into(), Symbol::parse("BTC-USD").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Push<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.channel != "trade" {
                return Err("not a trade".into());
            }
            for t in &m.data {
                out.push(trade(
                    &ex,
                    lookup(t.symbol, "BTC/USD", &sym)?,
                    TradeId::from_u64(t.trade_id),
                    decimal("price", t.price.as_raw_str()).map_err(err)?,
                    decimal("qty", t.qty.as_raw_str()).map_err(err)?,
                    side_word("side", t.side).map_err(err)?,
                    rfc3339("timestamp", t.timestamp).map_err(err)?,
                ));
            }
            Ok(())
        });
        cases.push(Case {
            name: "kraken",
            frame: stored("kraken", "ws_trade.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Bitfinex `te`: an array, `[CHANNEL_ID,"te",[ID,MTS,AMOUNT,PRICE]]`.
    {
        let v = bitfinex::BitfinexVenue::new(&config("bitfinex", "BTC-USD")).expect("venue");
        v.subscribe(&[Symbol::parse("BTC-USD").unwrap()]);
        let ack = stored("bitfinex", "ws_subscribed.json");
        assert_eq!(
            v.parse(&ack, Timestamp::EPOCH, &mut Vec::new())
                .expect("ack"),
            Frame::Ack
        );
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("bitfinex".into(), Symbol::parse("BTC-USD").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let (chan_id, kind, row): (u64, &str, (u64, u64, LazyValue<'_>, LazyValue<'_>)) =
                sonic_rs::from_slice(f).map_err(err)?;
            if kind != "te" || chan_id != 19111 {
                return Err("not a te of ours".into());
            }
            let amount = row.2.as_raw_str();
            let (side, magnitude) = match amount.strip_prefix('-') {
                Some(m) => (Side::Sell, m),
                None => (Side::Buy, amount),
            };
            out.push(trade(
                &ex,
                &sym,
                TradeId::from_u64(row.0),
                decimal("PRICE", row.3.as_raw_str()).map_err(err)?,
                decimal("AMOUNT", magnitude).map_err(err)?,
                side,
                unix_millis("MTS", row.1).map_err(err)?,
            ));
            Ok(())
        });
        cases.push(Case {
            name: "bitfinex",
            frame: stored("bitfinex", "ws_te.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Gemini `trade`.
    {
        #[derive(Deserialize)]
        struct GeminiTrade<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            symbol: &'a str,
            tid: u64,
            timestamp: u64,
            price: &'a str,
            quantity: &'a str,
            side: &'a str,
        }
        let v = gemini::GeminiVenue::new(&config("gemini", "BTC-USD")).expect("venue");
        let (serde, fast) = readers!(v);
        let (ex, sym): (Arc<str>, Symbol) = ("gemini".into(), Symbol::parse("BTC-USD").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: GeminiTrade<'_> = sonic_rs::from_slice(f).map_err(err)?;
            if m.kind != "trade" {
                return Err("not a trade".into());
            }
            out.push(trade(
                &ex,
                lookup(m.symbol, "BTCUSD", &sym)?,
                TradeId::from_u64(m.tid),
                decimal("price", m.price).map_err(err)?,
                decimal("quantity", m.quantity).map_err(err)?,
                side_word("side", m.side).map_err(err)?,
                unix_millis("timestamp", m.timestamp).map_err(err)?,
            ));
            Ok(())
        });
        cases.push(Case {
            name: "gemini",
            frame: stored("gemini", "ws_trade.json"),
            serde,
            fast,
            sonic: Some(sonic),
        });
    }

    // Huobi trade detail, inflated, and then as it comes: gzip.
    {
        #[derive(Deserialize)]
        struct Push<'a> {
            ch: &'a str,
            #[serde(borrow)]
            tick: Tick<'a>,
        }
        #[derive(Deserialize)]
        struct Tick<'a> {
            #[serde(borrow)]
            data: Vec<HuobiTrade<'a>>,
        }
        #[derive(Deserialize)]
        struct HuobiTrade<'a> {
            #[serde(rename = "tradeId")]
            trade_id: u64,
            ts: u64,
            #[serde(borrow)]
            amount: LazyValue<'a>,
            #[serde(borrow)]
            price: LazyValue<'a>,
            direction: &'a str,
        }
        let v = huobi::HuobiVenue::new(&config("huobi", "BTC-USDT")).expect("venue");
        let v = Arc::new(v);
        let (serde, fast) = readers!(v.clone());
        let (ex, sym): (Arc<str>, Symbol) = ("huobi".into(), Symbol::parse("BTC-USDT").unwrap());
        let sonic: Read = Box::new(move |f, out| {
            let m: Push<'_> = sonic_rs::from_slice(f).map_err(err)?;
            let name =
                m.ch.strip_prefix("market.")
                    .and_then(|r| r.strip_suffix(".trade.detail"))
                    .ok_or("not a trade detail")?;
            let symbol = lookup(name, "btcusdt", &sym)?;
            for t in &m.tick.data {
                out.push(trade(
                    &ex,
                    symbol,
                    TradeId::from_u64(t.trade_id),
                    decimal("price", t.price.as_raw_str()).map_err(err)?,
                    decimal("amount", t.amount.as_raw_str()).map_err(err)?,
                    side_word("direction", t.direction).map_err(err)?,
                    unix_millis("ts", t.ts).map_err(err)?,
                ));
            }
            Ok(())
        });
        let json = stored("huobi", "ws_trade.json");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).expect("gzip");
        let gzip = gz.finish().expect("gzip");
        cases.push(Case {
            name: "huobi",
            frame: json,
            serde,
            fast,
            sonic: Some(sonic),
        });
        let (serde, fast) = readers!(v);
        cases.push(Case {
            name: "huobi_gzip",
            frame: gzip,
            serde,
            fast,
            sonic: None,
        });
    }
    cases
}

/// The three readings of a case give the same trades.
fn check(case: &Case<'_>) {
    let read = |r: &Read<'_>| {
        let mut out = Vec::new();
        r(&case.frame, &mut out).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(!out.is_empty(), "{}: no trade", case.name);
        out
    };
    let by_serde = read(&case.serde);
    assert_eq!(read(&case.fast), by_serde, "{}: fast path", case.name);
    if let Some(sonic) = &case.sonic {
        assert_eq!(read(sonic), by_serde, "{}: sonic-rs", case.name);
    }
}

fn json(c: &mut Criterion) {
    for case in cases() {
        check(&case);
        let mut g = c.benchmark_group(format!("json/{}", case.name));
        g.throughput(Throughput::Elements(1));
        let mut out = Vec::with_capacity(4);
        let mut run = |id: &str, r: &Read<'_>| {
            g.bench_function(id, |b| {
                b.iter(|| {
                    out.clear();
                    black_box(r(black_box(&case.frame), &mut out)).expect("reads");
                })
            });
        };
        run("serde", &case.serde);
        run("fast", &case.fast);
        if let Some(sonic) = &case.sonic {
            run("sonic", sonic);
        }
        g.finish();
    }
}

criterion_group!(benches, json);
criterion_main!(benches);
