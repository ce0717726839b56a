//! The runner around one writer.
#![allow(missing_docs)]
pub struct RunnerSettings;
pub enum WhenFull {}
pub struct WriterHandle;
pub struct WriterRunner;
pub struct WriterStats;
