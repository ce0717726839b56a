//! `${VAR}` interpolation from the environment.

use super::ConfigError;

/// Largest a config may be once interpolated: far more than any real one, and small enough
/// that a hostile one is refused before it costs memory or time.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Largest value one `${NAME}` may bring in (a secret, a URL, a list of brokers).
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`. `$${` writes a literal `${`.
/// Lines that are only a comment are left alone, so a commented-out secret need not exist.
/// A missing variable is an error naming it and its line, as is a value larger than
/// [`MAX_VALUE_BYTES`]; a result larger than [`MAX_CONFIG_BYTES`] is an error too. One pass
/// over `text`: the time and memory it takes are bounded by those limits.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = Expanded(String::with_capacity(text.len().min(MAX_CONFIG_BYTES)));
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push(line, line_no)?;
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push(&rest[..pos], line_no)?;
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push("${", line_no)?;
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let end = tail.find('}').ok_or_else(|| ConfigError::Interpolation {
                    line: line_no,
                    reason: "`${` without a closing `}`".into(),
                })?;
                let name = &tail[..end];
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(ConfigError::Interpolation {
                        line: line_no,
                        reason: format!("invalid variable name {name:?}"),
                    });
                }
                let value = lookup(name).ok_or_else(|| ConfigError::MissingEnv {
                    name: name.to_owned(),
                    line: line_no,
                })?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(ConfigError::ValueTooLarge {
                        name: name.to_owned(),
                        len: value.len(),
                        limit: MAX_VALUE_BYTES,
                        line: line_no,
                    });
                }
                out.push(&value, line_no)?;
                rest = &tail[end + 1..];
            } else {
                out.push("$", line_no)?;
                rest = &after[1..];
            }
        }
        out.push(rest, line_no)?;
    }
    Ok(out.0)
}

/// The interpolated text, which refuses to grow past [`MAX_CONFIG_BYTES`].
struct Expanded(String);

impl Expanded {
    fn push(&mut self, s: &str, line: usize) -> Result<(), ConfigError> {
        if self.0.len() + s.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                limit: MAX_CONFIG_BYTES,
                line,
            });
        }
        self.0.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PASS").then(|| "s3cret".to_owned())
    }

    #[test]
    fn substitutes_and_escapes() {
        let got = interpolate("a: ${PASS}\nb: $${PASS}\nc: $5\n# d: ${NOPE}\n", &env).unwrap();
        assert_eq!(got, "a: s3cret\nb: ${PASS}\nc: $5\n# d: ${NOPE}\n");
    }

    #[test]
    fn missing_variable_names_it_and_its_line() {
        let err = interpolate("a: 1\nurl: ${DB_URL}\n", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable DB_URL is not set (line 2)"
        );
        assert!(interpolate("a: ${UNCLOSED\n", &env).is_err());
        assert!(interpolate("a: ${BAD-NAME}\n", &env).is_err());
    }

    /// A config as in the report: 56 KB, most of it references to one large variable.
    fn hostile(value_len: usize) -> (String, impl Fn(&str) -> Option<String>) {
        let mut text = String::from("exchanges:\n  - name: x\n    symbols: [BTC-USD]\nwriters:\n");
        while text.len() < 56_000 {
            text.push_str("  - type: log\n    name: \"${HUGE}\"\n");
        }
        let value = "x".repeat(value_len);
        (text, move |name: &str| {
            (name == "HUGE").then(|| value.clone())
        })
    }

    #[test]
    fn a_value_larger_than_the_limit_is_refused_naming_it() {
        let at_limit = "v".repeat(MAX_VALUE_BYTES);
        let env = |_: &str| Some(at_limit.clone());
        assert_eq!(
            interpolate("a: ${BIG}\n", &env).unwrap().len(),
            4 + MAX_VALUE_BYTES
        );

        let over = "v".repeat(MAX_VALUE_BYTES + 1);
        let env = |_: &str| Some(over.clone());
        let err = interpolate("a: 1\nb: ${BIG}\n", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable BIG is 65537 bytes, more than the 65536 a value may have \
             (line 2)"
        );
    }

    #[test]
    fn a_config_larger_than_the_limit_after_interpolation_is_refused() {
        // Each value is within its limit; together they are not.
        let value = "v".repeat(60_000);
        let env = |_: &str| Some(value.clone());
        let text = "a: ${V}\n".repeat(18);
        let err = interpolate(&text, &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the config is larger than 1048576 bytes after interpolation (line 18)"
        );
        assert!(interpolate(&"a: ${V}\n".repeat(17), &env).is_ok());
        // Without any variable too.
        let plain = "# padding\n".repeat(MAX_CONFIG_BYTES / 10 + 1);
        assert!(matches!(
            interpolate(&plain, &|_| None),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn hostile_configs_fail_fast_instead_of_exhausting_memory() {
        for value_len in [131_072, 60_000] {
            let (text, env) = hostile(value_len);
            let started = std::time::Instant::now();
            let err = crate::config::Config::from_yaml_str_with_env(&text, &env).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::TooLarge { .. } | ConfigError::ValueTooLarge { .. }
                ),
                "{err}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{value_len}"
            );
        }
    }
}
