//! Fuzzing the config loader: any text gives a config or an error that says something, never
//! a panic. Mutations start from a valid config so that they reach deep into the schema.

use feeder_core::config::Config;
use proptest::prelude::*;

const VALID: &str = "\
exchanges:
  - name: bitstamp
    symbols: [BTC-USD, ETH-USD]
    transport: rest
    poll_interval: 500ms
    rest_url: http://127.0.0.1:8080
    stale_timeout: 2s
pipeline:
  candles: [1m, 30m, 1h]
  candle_grace: 5s
  late_trades: revise
writers:
  - type: file
    path: ${OUT}
    format: jsonl
    batch_delay: 50ms
    spill:
      path: /tmp/spill
  - type: log
    name: audit
shutdown_timeout: 10s
";

fn env(name: &str) -> Option<String> {
    (name == "OUT").then(|| "/tmp/out".to_owned())
}

fn load(text: &str) {
    match Config::from_yaml_str_with_env(text, &env) {
        Ok(c) => {
            // What loads is valid.
            c.validate().unwrap();
            assert!(!c.exchanges.is_empty() && !c.writers.is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

#[test]
fn the_seed_config_is_valid() {
    Config::from_yaml_str_with_env(VALID, &env).unwrap();
}

proptest! {
    #[test]
    fn any_text_is_a_config_or_an_error(text in "\\PC{0,300}") {
        load(&text);
    }

    #[test]
    fn mutated_configs_are_a_config_or_an_error(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, "[ -~\\n]{0,12}"), 1..5),
    ) {
        let mut text = VALID.to_owned();
        for (at, cut, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(i..end, &insert);
        }
        load(&text);
    }
}
