//! Secrets named in the config by an environment variable (`password_env`, `token_env`,
//! `bearer_token_env`): the config holds the variable's name, never the value.

/// The value of the environment variable `var`, which option `key` names. A variable that
/// is not set, is empty (or only blanks) or is not UTF-8 is an error naming the option and
/// the variable, never the value.
pub(crate) fn from_env(key: &'static str, var: &str) -> Result<String, (&'static str, String)> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err((key, format!("the environment variable {var} is empty"))),
        Err(std::env::VarError::NotPresent) => {
            Err((key, format!("the environment variable {var} is not set")))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err((
            key,
            format!("the environment variable {var} is not valid UTF-8"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_variable_names_the_option_and_the_variable() {
        let (key, message) =
            from_env("password_env", "FEEDER_SECRET_NEVER_SET_ANYWHERE").unwrap_err();
        assert_eq!(key, "password_env");
        assert!(
            message.contains("FEEDER_SECRET_NEVER_SET_ANYWHERE is not set"),
            "{message}"
        );
        // PATH is set on every machine the tests run on, and is not blank.
        assert!(from_env("token_env", "PATH").is_ok());
    }
}
