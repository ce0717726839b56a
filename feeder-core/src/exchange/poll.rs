//! The REST poll driver.
#![allow(missing_docs, dead_code)]
use std::sync::Arc;
use std::time::Duration;

use super::PollVenue;

/// Runs a [`PollVenue`].
pub struct PollExchange<V> {
    name: Arc<str>,
    venue: Arc<V>,
    interval: Duration,
    timeout: Duration,
}

impl<V: PollVenue> PollExchange<V> {
    pub fn new(name: &str, venue: Arc<V>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            venue,
            interval,
            timeout: Duration::from_secs(10),
        }
    }
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
