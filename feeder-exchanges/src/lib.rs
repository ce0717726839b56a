//! Placeholder.
/// Registers the bundled factories.
pub fn register(_registry: &mut feeder_core::feeder::Registry) {}
