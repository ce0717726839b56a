//! # feeder-bench
//!
//! How fast the whole crypto-feeder pipeline is, measured end to end through public APIs only:
//! a loopback venue server (a child process) blasts pre-encoded frames in a venue's exact wire
//! format; the feeder side is the real venue driver, valve, candle aggregator and a writer,
//! in a fresh process per scenario so that CPU time and peak memory are its own. A bare
//! WebSocket client reading the same frames gives the I/O limit.
//!
//! The binary (`cargo run --release -p feeder-bench -- --help`) runs the suite and prints one
//! table; `feeder-bench memory` watches memory over many streams. Micro-benchmarks of the
//! parsers, the valve, the aggregator and the JSON encoder are in `benches/` (criterion).
//!
//! What is not here: any code path of its own for the feeder. Everything measured is the code
//! users run.
#![deny(missing_docs)]

pub mod bare;
pub mod capture;
pub mod memory;
pub mod probe;
pub mod process;
pub mod procfs;
pub mod real_load;
pub mod scenario;
pub mod server;
pub mod sink;
pub mod stores;
pub mod suite;
pub mod wire;
