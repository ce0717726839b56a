use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OUT_DIR" => Some("/tmp/out".into()),
        _ => None,
    }
}

const GOOD: &str = "\
exchanges:
  - name: bitstamp
    symbols: [BTC-USD, ETH-USD]
    transport: rest
    poll_interval: 500ms
    rest_url: http://127.0.0.1:8080
writers:
  - type: file
    path: ${OUT_DIR}
    format: jsonl
    batch_delay: 50ms
  - type: log
";

#[test]
fn a_full_config_parses_with_defaults() {
    let c = Config::from_yaml_str_with_env(GOOD, &env).unwrap();
    assert_eq!(c.exchanges[0].transport, Transport::Rest);
    assert_eq!(c.exchanges[0].poll_interval, Duration::from_millis(500));
    assert_eq!(c.exchanges[0].request_timeout, Duration::from_secs(10));
    assert_eq!(c.pipeline.candles, vec![Interval::M30, Interval::H1]);
    assert!(c.pipeline.dedup);
    assert_eq!(c.writers[0].kind, "file");
    assert_eq!(c.writers[0].batch_delay, Duration::from_millis(50));
    assert_eq!(
        c.writers[0].options.get("path").and_then(|v| v.as_str()),
        Some("/tmp/out")
    );
    assert_eq!(c.writers[1].display_name(), "log");
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
}

#[test]
fn unknown_key_names_the_key_and_its_line() {
    let text = GOOD.replace(
        "    transport: rest\n",
        "    transport: rest\n    polll_interval: 1s\n",
    );
    let err = Config::from_yaml_str_with_env(&text, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `polll_interval`"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[test]
fn unknown_top_level_and_pipeline_keys_are_rejected() {
    let err = Config::from_yaml_str_with_env(&format!("{GOOD}pipelin:\n  dedup: false\n"), &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `pipelin`") && err.contains("line 13"),
        "{err}"
    );
    let err = Config::from_yaml_str_with_env(&format!("{GOOD}pipeline:\n  dedupe: false\n"), &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `dedupe`") && err.contains("line 14"),
        "{err}"
    );
}

#[test]
fn missing_variable_is_named() {
    let err = Config::from_yaml_str_with_env(GOOD, &|_| None).unwrap_err();
    assert!(
        matches!(&err, ConfigError::MissingEnv { name, line: 9 } if name == "OUT_DIR"),
        "{err}"
    );
}

#[test]
fn writer_options_errors_name_key_and_line() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct FileOpts {
        path: String,
        format: Option<String>,
    }
    let text = GOOD.replace("    format: jsonl\n", "    fromat: jsonl\n");
    let c = Config::from_yaml_str_with_env(&text, &env).unwrap();
    let err = c.writers[0].options::<FileOpts>().unwrap_err().to_string();
    assert!(
        err.starts_with("writers[0] (file): unknown field `fromat`"),
        "{err}"
    );
    assert!(err.ends_with("at line 10"), "{err}");
}

#[test]
fn bad_values_are_rejected_with_their_place() {
    for (from, to, needle) in [
        (
            "poll_interval: 500ms",
            "poll_interval: 5 minutes",
            "invalid duration",
        ),
        (
            "poll_interval: 500ms",
            "poll_interval: 10ms",
            "exchanges[0] (bitstamp).poll_interval",
        ),
        (
            "[BTC-USD, ETH-USD]",
            "[BTC-USD, BTC-USD]",
            "BTC-USD is listed twice",
        ),
        ("[BTC-USD, ETH-USD]", "[btcusd]", "invalid symbol"),
        ("[BTC-USD, ETH-USD]", "[]", "at least one symbol"),
        (
            "transport: rest",
            "transport: carrier-pigeon",
            "unknown variant",
        ),
        (
            "batch_delay: 50ms",
            "batch_delay: soon",
            "writers[0].batch_delay: invalid duration",
        ),
        (
            "rest_url: http://127.0.0.1:8080",
            "rest_url: ftp://x",
            "unsupported scheme",
        ),
        (
            "  - type: log\n",
            "  - type: log\n    name: file\n",
            "two writers are named",
        ),
    ] {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "{from}");
        let err = Config::from_yaml_str_with_env(&text, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{to}: {err}");
    }
}

#[test]
fn candles_and_durations_read_their_syntax() {
    let text = format!(
        "{GOOD}pipeline:\n  candles: [1m, 4h, 1d]\n  candle_grace: 2s\n  late_trades: revise\n"
    );
    let c = Config::from_yaml_str_with_env(&text, &env).unwrap();
    let got: Vec<String> = c.pipeline.candles.iter().map(|i| i.to_string()).collect();
    assert_eq!(got, ["1m", "4h", "1d"]);
    assert_eq!(c.pipeline.candle_grace, Duration::from_secs(2));
    assert_eq!(c.pipeline.late_trades, LateTradePolicy::Revise);
    let err = Config::from_yaml_str_with_env(&format!("{GOOD}pipeline:\n  candles: [7m]\n"), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("divide a day"), "{err}");
}

#[test]
fn a_writer_spill_reads_its_settings() {
    let text = GOOD.replace(
        "  - type: log\n",
        "  - type: log\n    spill:\n      path: /var/spool/feeder\n",
    );
    let c = Config::from_yaml_str_with_env(&text, &env).unwrap();
    let spill = c.writers[1].spill.clone().unwrap();
    assert_eq!(spill.path, std::path::PathBuf::from("/var/spool/feeder"));
    assert_eq!(spill.max_bytes, 1 << 30);
    let bad = text.replace("      path: /var/spool/feeder\n", "      pth: /x\n");
    let err = Config::from_yaml_str_with_env(&bad, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("writers[1].spill: unknown field `pth`") && err.contains("at line 14 "),
        "{err}"
    );
}

#[test]
fn max_clock_skew_defaults_to_a_day_and_must_be_at_least_a_second() {
    let c = Config::from_yaml_str_with_env(GOOD, &env).unwrap();
    assert_eq!(c.pipeline.max_clock_skew, Duration::from_secs(86_400));
    let c =
        Config::from_yaml_str_with_env(&format!("{GOOD}pipeline:\n  max_clock_skew: 2h\n"), &env)
            .unwrap();
    assert_eq!(c.pipeline.max_clock_skew, Duration::from_secs(7_200));
    for (value, needle) in [
        ("500ms", "pipeline.max_clock_skew: must be at least 1s"),
        ("0s", "pipeline.max_clock_skew: must be at least 1s"),
        ("1 day", "unknown unit"),
    ] {
        let err = Config::from_yaml_str_with_env(
            &format!("{GOOD}pipeline:\n  max_clock_skew: {value}\n"),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{value}: {err}");
    }
}

#[test]
fn a_file_larger_than_the_limit_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, "# padding\n".repeat(MAX_CONFIG_BYTES / 10 + 1)).unwrap();
    let err = Config::from_file(&path).unwrap_err();
    assert!(
        matches!(err, ConfigError::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES),
        "{err}"
    );
}

/// A config with every custom-read value on a line of its own: the place each must be
/// reported at when it is wrong.
const EVERY_VALUE: &str = "\
exchanges:
  - name: bitstamp
    symbols:
      - BTC-USD
      - ETH-USD
    transport: rest
    poll_interval: 500ms
    request_timeout: 5s
    stale_timeout: 30s
pipeline:
  candles: [1m, 1h]
  candle_grace: 5s
  max_clock_skew: 1d
  buffer: 32MiB
writers:
  - type: log
    batch_delay: 50ms
    retry_max_delay: 30s
    queue_bytes: 32MiB
    batch_size: 100
    queue_capacity: 8
    when_full: block
    spill:
      path: /tmp/spill
      max_bytes: 1073741824
shutdown_timeout: 10s
";

/// Each value read by the project's own parsers (durations, sizes, intervals, symbols) and
/// each of a writer's common settings is reported, when bad, with its key path and its own
/// line, not those of the map or list around it.
#[test]
fn a_bad_value_names_its_key_and_its_line() {
    Config::from_yaml_str_with_env(EVERY_VALUE, &env).unwrap();
    for (from, to, key, line) in [
        (
            "poll_interval: 500ms",
            "poll_interval: 5x",
            "exchanges[0].poll_interval",
            7,
        ),
        (
            "request_timeout: 5s",
            "request_timeout: 5",
            "exchanges[0].request_timeout",
            8,
        ),
        (
            "stale_timeout: 30s",
            "stale_timeout: soon",
            "exchanges[0].stale_timeout",
            9,
        ),
        (
            "      - ETH-USD",
            "      - ethusd",
            "exchanges[0].symbols[1]",
            5,
        ),
        (
            "candles: [1m, 1h]",
            "candles: [1m, 7m]",
            "pipeline.candles[1]",
            11,
        ),
        (
            "candle_grace: 5s",
            "candle_grace: 5 s",
            "pipeline.candle_grace",
            12,
        ),
        (
            "max_clock_skew: 1d",
            "max_clock_skew: 1 day",
            "pipeline.max_clock_skew",
            13,
        ),
        ("buffer: 32MiB", "buffer: 32MB", "pipeline.buffer", 14),
        (
            "batch_delay: 50ms",
            "batch_delay: 50",
            "writers[0].batch_delay",
            17,
        ),
        (
            "retry_max_delay: 30s",
            "retry_max_delay: 30x",
            "writers[0].retry_max_delay",
            18,
        ),
        (
            "queue_bytes: 32MiB",
            "queue_bytes: -1",
            "writers[0].queue_bytes",
            19,
        ),
        (
            "batch_size: 100",
            "batch_size: many",
            "writers[0].batch_size",
            20,
        ),
        (
            "queue_capacity: 8",
            "queue_capacity: -8",
            "writers[0].queue_capacity",
            21,
        ),
        (
            "when_full: block",
            "when_full: panic",
            "writers[0].when_full",
            22,
        ),
        (
            "max_bytes: 1073741824",
            "max_bytes: 1GiB",
            "writers[0].spill.max_bytes",
            25,
        ),
        (
            "shutdown_timeout: 10s",
            "shutdown_timeout: 10",
            "shutdown_timeout",
            26,
        ),
    ] {
        let text = EVERY_VALUE.replace(from, to);
        assert_ne!(text, EVERY_VALUE, "{from}");
        let err = Config::from_yaml_str_with_env(&text, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!(" {key}: ")), "{to}: {err}");
        assert!(
            err.contains(&format!(" at line {line} column ")),
            "{to}: {err}"
        );
    }
}

#[test]
fn metrics_listen_and_status_interval_are_read_and_checked() {
    let c = Config::from_yaml_str_with_env(GOOD, &env).unwrap();
    assert_eq!(c.metrics, None, "no listener unless asked for");
    assert_eq!(c.status_interval, Duration::from_secs(60));
    let text = format!("{GOOD}metrics:\n  listen: 127.0.0.1:9898\nstatus_interval: 5s\n");
    let c = Config::from_yaml_str_with_env(&text, &env).unwrap();
    assert_eq!(
        c.metrics.unwrap().listen,
        "127.0.0.1:9898".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(c.status_interval, Duration::from_secs(5));
    let bad = format!("{GOOD}metrics:\n  listen: localhost\n");
    let err = Config::from_yaml_str_with_env(&bad, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.listen") || err.contains("line 14"),
        "{err}"
    );
    let typo = format!("{GOOD}metrics:\n  listn: 127.0.0.1:1\n");
    let err = Config::from_yaml_str_with_env(&typo, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `listn`"), "{err}");
    let fast = format!("{GOOD}status_interval: 100ms\n");
    let err = Config::from_yaml_str_with_env(&fast, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("status_interval: must be at least 1s"),
        "{err}"
    );
}
