//! Shards: several feeders dividing the configured streams between them.
//!
//! Each stream (exchange, symbol) belongs to exactly one of `count` shards: shard
//! `fnv1a64("exchange:symbol") % count`, where `fnv1a64` is the 64-bit FNV-1a hash (offset
//! basis `0xcbf29ce484222325`, prime `0x100000001b3`) of the UTF-8 bytes of the exchange's
//! registry name, a colon and the normalized symbol (`bitstamp:BTC-USD`). The hash is written
//! out here rather than taken from the standard library, whose hasher may change between
//! releases: every feeder of a cluster, whatever its build, platform or version, places each
//! stream in the same shard.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, ExchangeConfig};
use crate::model::Symbol;

/// This feeder's share of the streams (the `shard` key):
///
/// ```yaml
/// shard: { index: 0, count: 2 }   # this feeder follows the streams of shard 0 of 2
/// ```
///
/// The feeder follows only the streams of its shard among those its `exchanges` list; an
/// exchange left with none of its symbols is not started. Two feeders with the same shard
/// (and the same lists) follow the same streams: a redundant pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// This feeder's shard, from 0 to `count - 1`.
    pub index: u32,
    /// How many shards the streams are divided into.
    pub count: u32,
}

impl ShardConfig {
    /// Whether the stream (`exchange`, `symbol`) belongs to this shard.
    pub fn owns(&self, exchange: &str, symbol: &Symbol) -> bool {
        shard_of(exchange, symbol, self.count) == self.index
    }

    /// Checks `index < count` and `count >= 1`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::invalid("shard.count", "must be at least 1"));
        }
        if self.index >= self.count {
            return Err(ConfigError::invalid(
                "shard.index",
                format!("must be below count ({})", self.count),
            ));
        }
        Ok(())
    }
}

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard, of `count`, that the stream (`exchange`, `symbol`) belongs to: the FNV-1a hash
/// of `exchange:symbol`, modulo `count` (0 when `count` is 0).
pub fn shard_of(exchange: &str, symbol: &Symbol, count: u32) -> u32 {
    if count == 0 {
        return 0;
    }
    let mut key = Vec::with_capacity(exchange.len() + 1 + symbol.as_str().len());
    key.extend_from_slice(exchange.as_bytes());
    key.push(b':');
    key.extend_from_slice(symbol.as_str().as_bytes());
    (fnv1a64(&key) % u64::from(count)) as u32
}

impl Config {
    /// The exchanges this feeder follows: all of them without a `shard`; with one, each
    /// with only the symbols of its shard, and those left with none left out.
    pub fn owned_exchanges(&self) -> Vec<ExchangeConfig> {
        let Some(shard) = self.shard else {
            return self.exchanges.clone();
        };
        self.exchanges
            .iter()
            .filter_map(|ex| {
                let mut ex = ex.clone();
                let name = ex.name.clone();
                ex.symbols.retain(|s| shard.owns(&name, s));
                (!ex.symbols.is_empty()).then_some(ex)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_64_as_published() {
        // The reference values of the FNV-1a test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_stream_keeps_its_shard_across_builds() {
        // Pinned: changing these moves streams between the feeders of a running cluster.
        let btc = Symbol::parse("BTC-USD").unwrap();
        let eth = Symbol::parse("ETH-USD").unwrap();
        let got: Vec<u32> = [("bitstamp", &btc), ("bitstamp", &eth), ("coinbase", &btc)]
            .iter()
            .map(|(e, s)| shard_of(e, s, 4))
            .collect();
        let want: Vec<u32> = [
            b"bitstamp:BTC-USD" as &[u8],
            b"bitstamp:ETH-USD",
            b"coinbase:BTC-USD",
        ]
        .iter()
        .map(|k| (fnv1a64(k) % 4) as u32)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn shards_together_cover_each_stream_exactly_once() {
        let venues = ["bitstamp", "coinbase", "kraken", "binance"];
        let symbols: Vec<Symbol> = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-EUR", "LTC-BTC"]
            .iter()
            .map(|s| Symbol::parse(s).unwrap())
            .collect();
        for count in 1..=5 {
            let mut per_shard = vec![0usize; count as usize];
            for v in venues {
                for s in &symbols {
                    let owners: Vec<u32> = (0..count)
                        .filter(|&index| ShardConfig { index, count }.owns(v, s))
                        .collect();
                    assert_eq!(owners.len(), 1, "{v}:{s} in {owners:?} of {count}");
                    per_shard[owners[0] as usize] += 1;
                }
            }
            assert_eq!(
                per_shard.iter().sum::<usize>(),
                venues.len() * symbols.len()
            );
        }
    }

    #[test]
    fn two_shard_configs_divide_the_exchanges_lists() {
        let text = |index: u32| {
            format!(
                "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD, ETH-USD, SOL-USD, XRP-USD]\n  \
                 - name: coinbase\n    symbols: [BTC-USD, ETH-USD, SOL-USD, XRP-USD]\n\
                 writers:\n  - type: log\nshard: {{ index: {index}, count: 2 }}\n"
            )
        };
        let mut seen = std::collections::BTreeMap::new();
        for index in 0..2 {
            let config = Config::from_yaml_str(&text(index)).unwrap();
            for ex in config.owned_exchanges() {
                for s in ex.symbols {
                    *seen.entry(format!("{}:{s}", ex.name)).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    }

    #[test]
    fn a_shard_outside_its_count_is_refused() {
        for (shard, key) in [
            ("{ index: 2, count: 2 }", "shard.index"),
            ("{ index: 0, count: 0 }", "shard.count"),
        ] {
            let text = format!(
                "exchanges:\n  - name: bitstamp\n    symbols: [BTC-USD]\nwriters:\n  - type: log\nshard: {shard}\n"
            );
            let err = Config::from_yaml_str(&text)
                .and_then(|c| c.validate().map(|()| c))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
