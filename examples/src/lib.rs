//! Examples of extending crypto-feeder from outside its own crates, with exactly the public
//! API the bundled venues and stores use:
//! - [`random_walk`]: a custom [`Exchange`](feeder_core::exchange::Exchange), a synthetic
//!   market that needs no network, and its factory;
//! - [`summary`]: a custom [`Writer`](feeder_core::writer::Writer) that keeps per-symbol
//!   totals, and its factory.
//!
//! The programs in `examples/` put them to work: `embedded` runs a feeder inside a program
//! with its own shutdown, `custom_venue` writes a WebSocket venue in a few lines.
#![deny(missing_docs)]

pub mod random_walk;
pub mod summary;
