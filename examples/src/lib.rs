//! Examples of extending crypto-feeder from outside its own crates, with exactly the public
//! API the bundled venues and stores use (`feeder_core::prelude`):
//! - [`toy`]: a venue with a WebSocket feed and a REST history, described as data and built
//!   by the generic factory, so that every exchange option applies to it;
//! - [`random_walk`]: a custom [`Exchange`](feeder_core::exchange::Exchange), a synthetic
//!   market that needs no network;
//! - [`append_log`]: an append-only writer that undoes a batch that failed halfway;
//! - [`summary`]: a custom [`Writer`](feeder_core::writer::Writer) that keeps per-symbol
//!   totals, and its factory.
//!
//! The programs in `examples/` put them to work: `embedded` runs a feeder inside a program
//! with its own shutdown, `custom_venue` runs the toy venue against a local server.
#![deny(missing_docs)]

pub mod append_log;
pub mod random_walk;
pub mod summary;
pub mod toy;
