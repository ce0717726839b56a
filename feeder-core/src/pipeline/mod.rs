//! Pipeline stages between the exchanges and the writers.
//!
//! - [`TradeRules`]: what a trade must be to enter at all (positive price and amount, a time
//!   near its receipt, an id in line with its stream); checked where exchanges hand trades
//!   over, before the resume cursors move.
//! - [`Valve`]: drops trades already seen, keyed by (exchange, symbol, trade id), in bounded
//!   memory, and only those.
//! - [`Aggregator`]: builds OHLCV [`Candle`](crate::model::Candle)s from unique trades and
//!   emits each one when its stream is known complete past its interval (its completeness
//!   watermark), saying whether it can be exact.
//!
//! Both are plain synchronous structs with no clock of their own (time is passed in), so they
//! can be driven by the orchestrator, by an embedding program, or by a test, identically.

mod aggregator;
mod validate;
mod valve;
mod watermark;

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::Symbol;

pub use aggregator::Aggregator;
pub(crate) use validate::LogGate;
pub(crate) use validate::Screen;
pub use validate::{IdJumpLimit, RejectReason, Rejected, TradeRules, CONFIRMATIONS};
pub use valve::{Valve, ValveCounts, Verdict};
pub(crate) use watermark::Watermark;

/// Per-stream state keyed by (exchange, symbol), looked up without building a key.
///
/// The nested maps let a lookup borrow `&str` and `&Symbol` straight from the trade; the cache
/// of the last stream makes the common case (a batch of one stream) a pointer comparison.
/// Entries are never removed: a feeder has a fixed, small set of streams.
#[derive(Debug)]
struct Streams<T> {
    index: HashMap<Arc<str>, HashMap<Symbol, usize>>,
    /// The entries, in creation order; `index` points into it.
    items: Vec<Stream<T>>,
    /// Index of the stream looked up last, if any.
    last: Option<usize>,
}

#[derive(Debug)]
struct Stream<T> {
    exchange: Arc<str>,
    symbol: Symbol,
    state: T,
}

impl<T> Default for Streams<T> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            items: Vec::new(),
            last: None,
        }
    }
}

impl<T> Streams<T> {
    /// The position of the stream, created with `make` if it is new.
    fn position(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        make: impl FnOnce() -> T,
    ) -> usize {
        if let Some(i) = self.last {
            if let Some(s) = self.items.get(i) {
                if *s.exchange == **exchange && s.symbol == *symbol {
                    return i;
                }
            }
        }
        let found = self
            .index
            .get(&**exchange)
            .and_then(|by_symbol| by_symbol.get(symbol))
            .copied();
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.items.len();
                self.items.push(Stream {
                    exchange: exchange.clone(),
                    symbol: symbol.clone(),
                    state: make(),
                });
                self.index
                    .entry(exchange.clone())
                    .or_default()
                    .insert(symbol.clone(), i);
                i
            }
        };
        self.last = Some(i);
        i
    }

    /// The stream's entry, created with `make` if it is new.
    fn get_or_insert_with(
        &mut self,
        exchange: &Arc<str>,
        symbol: &Symbol,
        make: impl FnOnce() -> T,
    ) -> Option<&mut Stream<T>> {
        let i = self.position(exchange, symbol, make);
        self.items.get_mut(i)
    }

    /// The stream's entry, if it exists.
    fn get(&self, exchange: &str, symbol: &Symbol) -> Option<&Stream<T>> {
        let i = *self.index.get(exchange)?.get(symbol)?;
        self.items.get(i)
    }

    fn iter(&self) -> impl Iterator<Item = &Stream<T>> {
        self.items.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Stream<T>> {
        self.items.iter_mut()
    }
}
