//! Kraken (in progress).
/// Registers nothing yet.
pub fn register(_r: &mut feeder_core::feeder::Registry) {}
