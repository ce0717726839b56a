//! The orchestrator.
#![allow(missing_docs)]
mod registry;
pub use registry::{ExchangeFactory, Registry, WriterFactory};
pub struct Feeder;
