//! Micro-benchmarks of the hot path, piece by piece: each venue's parser on a real-format trade
//! frame, the dedup valve, the candle aggregator and the JSON lines encoder (against
//! `serde_json`, which it must match byte for byte).
//!
//! `cargo bench -p feeder-bench` (add `-- <filter>` for one group).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use feeder_bench::scenario::exchange_config;
use feeder_bench::wire::{Chunk, Clock, Venue};
use feeder_core::config::LateTradePolicy;
use feeder_core::exchange::StreamVenue;
use feeder_core::model::{write_json_line, Event, Interval, Timestamp, Trade, TradeId};
use feeder_core::pipeline::{Aggregator, Valve};
use feeder_exchanges::binance::BinanceVenue;
use feeder_exchanges::bitstamp::BitstampVenue;
use feeder_exchanges::coinbase::CoinbaseVenue;
use url::Url;

const CLOCK: Clock = Clock {
    start_micros: 1_727_791_043_385_001,
    step_micros: 1_000,
};

/// Each bundled venue's parser, with a chunk of frames in its wire format. A new venue is one
/// more entry here.
fn parsers() -> Vec<(Venue, Arc<dyn StreamVenue>)> {
    let url = Url::parse("ws://127.0.0.1:1/").expect("static URL");
    let cfg = |v: Venue| exchange_config(v, v.symbols(1).expect("symbols"), url.clone());
    vec![
        (
            Venue::Coinbase,
            Arc::new(CoinbaseVenue::new(&cfg(Venue::Coinbase)).expect("coinbase venue")),
        ),
        (
            Venue::Bitstamp,
            Arc::new(BitstampVenue::new(&cfg(Venue::Bitstamp)).expect("bitstamp venue")),
        ),
        (
            Venue::Binance,
            Arc::new(BinanceVenue::new(&cfg(Venue::Binance)).expect("binance venue")),
        ),
    ]
}

/// `n` real trades, as the Coinbase parser makes them from the wire.
fn trades(n: usize) -> Vec<Trade> {
    let venue = Venue::Coinbase;
    let symbols = venue.symbols(1).expect("symbols");
    let chunk = Chunk::new(venue, &symbols, n, CLOCK).expect("chunk");
    let url = Url::parse("ws://127.0.0.1:1/").expect("static URL");
    let parser = CoinbaseVenue::new(&exchange_config(venue, symbols, url)).expect("venue");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        parser
            .parse(chunk.payload(i).expect("frame"), Timestamp::now(), &mut out)
            .expect("parse");
    }
    out
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (venue, parser) in parsers() {
        let symbols = venue.symbols(1).expect("symbols");
        let chunk = Chunk::new(venue, &symbols, 1, CLOCK).expect("chunk");
        let frame = chunk.payload(0).expect("frame").to_vec();
        let mut out = Vec::with_capacity(4);
        g.bench_function(venue.name(), |b| {
            b.iter(|| {
                out.clear();
                let f = parser.parse(black_box(&frame), Timestamp::EPOCH, &mut out);
                black_box(f).expect("parses");
            })
        });
    }
    g.finish();
}

fn valve(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let template = trades(BATCH);
    let mut g = c.benchmark_group("valve");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut valve = Valve::new(10_000);
    let mut next_id = 10_000_000_000_000u64;
    g.bench_function("filter_1000_new", |b| {
        b.iter_batched(
            || {
                // Fresh, increasing ids: the common case, where every trade passes.
                let mut batch = template.clone();
                for t in &mut batch {
                    t.trade_id = TradeId::from_u64(next_id);
                    next_id += 1;
                }
                batch
            },
            |mut batch| {
                let dropped = valve.filter(&mut batch);
                black_box((dropped, batch))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn aggregator(c: &mut Criterion) {
    const N: usize = 4_096;
    // 4 s of trades, all inside one 30m and one 1h candle: the steady state.
    let batch = trades(N);
    let mut g = c.benchmark_group("aggregator");
    g.throughput(Throughput::Elements(N as u64));
    let mut agg = Aggregator::new(
        &[Interval::M30, Interval::H1],
        Duration::from_secs(5),
        LateTradePolicy::Drop,
    );
    let mut out = Vec::new();
    g.bench_function("on_trade_30m_1h", |b| {
        b.iter(|| {
            for t in &batch {
                agg.on_trade(black_box(t), t.received_at, &mut out);
            }
            out.clear();
        })
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let event = Event::Trade(trades(1).pop().expect("one trade"));
    let mut buf = Vec::with_capacity(512);
    let mut g = c.benchmark_group("json_line");
    g.throughput(Throughput::Elements(1));
    g.bench_function("write_json_line", |b| {
        b.iter(|| {
            buf.clear();
            write_json_line(black_box(&event), &mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&event)).expect("serializes");
            buf.push(b'\n');
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, valve, aggregator, json);
criterion_main!(benches);
