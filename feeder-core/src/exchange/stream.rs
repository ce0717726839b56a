//! The WebSocket session driver.
#![allow(missing_docs, dead_code)]
use std::sync::Arc;

use super::{Backoff, PollVenue, StreamVenue};

/// Runs a [`StreamVenue`].
pub struct StreamExchange<V> {
    name: Arc<str>,
    venue: Arc<V>,
    backfill: Option<Arc<dyn PollVenue>>,
    backoff: Backoff,
}

impl<V: StreamVenue> StreamExchange<V> {
    pub fn new(name: &str, venue: Arc<V>) -> Self {
        Self {
            name: name.into(),
            venue,
            backfill: None,
            backoff: Backoff::default(),
        }
    }
    pub fn with_backfill(mut self, venue: Arc<dyn PollVenue>) -> Self {
        self.backfill = Some(venue);
        self
    }
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}
