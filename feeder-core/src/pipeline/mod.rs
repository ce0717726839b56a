//! Pipeline stages.
#![allow(missing_docs)]
pub struct Valve;
pub struct Aggregator;
