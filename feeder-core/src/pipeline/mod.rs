//! Pipeline stages.
#![allow(missing_docs, dead_code, unused_variables)]
use std::sync::Arc;
use std::time::Duration;

use crate::config::LateTradePolicy;
use crate::model::{Candle, Interval, Timestamp, Trade};

pub struct Valve;
impl Valve {
    pub fn new(window: usize) -> Self {
        Valve
    }
    pub fn filter(&mut self, trades: &mut Vec<Trade>) -> usize {
        0
    }
    pub fn duplicates(&self) -> Vec<(Arc<str>, u64)> {
        Vec::new()
    }
    pub fn duplicates_total(&self) -> u64 {
        0
    }
}
pub struct Aggregator;
impl Aggregator {
    pub fn new(intervals: &[Interval], grace: Duration, late: LateTradePolicy) -> Self {
        Aggregator
    }
    pub fn on_trade(&mut self, trade: &Trade, out: &mut Vec<Candle>) {}
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Candle>) {}
    pub fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    pub fn late_trades(&self) -> u64 {
        0
    }
    pub fn open_candles(&self) -> usize {
        0
    }
}
