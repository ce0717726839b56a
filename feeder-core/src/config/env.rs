//! `${VAR}` interpolation from the environment.

use super::ConfigError;

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`. `$${` writes a literal `${`.
/// Lines that are only a comment are left alone, so a commented-out secret need not exist.
/// A missing variable is an error naming it and its line.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let end = tail.find('}').ok_or_else(|| ConfigError::Interpolation {
                    line: i + 1,
                    reason: "`${` without a closing `}`".into(),
                })?;
                let name = &tail[..end];
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(ConfigError::Interpolation {
                        line: i + 1,
                        reason: format!("invalid variable name {name:?}"),
                    });
                }
                let value = lookup(name).ok_or_else(|| ConfigError::MissingEnv {
                    name: name.to_owned(),
                    line: i + 1,
                })?;
                out.push_str(&value);
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    Ok(out)
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
}
