//! Secrets: those named in the config by an environment variable (`password_env`,
//! `token_env`, `bearer_token_env`), where the config holds the variable's name and never
//! the value, and those a user may still write into a URL, hidden before it is shown.

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

/// A server URL, or a comma-separated list of them, with the user information of each
/// (`user:password@`) replaced by `***@`, for logs, errors and `Debug`. What follows the
/// host (path, query) is kept.
pub(crate) fn redact_userinfo(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = match url.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, url),
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((_, host)) => match scheme {
                    Some(scheme) => format!("{scheme}://***@{host}{tail}"),
                    None => format!("***@{host}{tail}"),
                },
                None => url.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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

    #[test]
    fn user_information_is_hidden_in_every_url_of_a_list() {
        assert_eq!(
            redact_userinfo("redis://u:p%40ss@db:6379/0?x=1"),
            "redis://***@db:6379/0?x=1"
        );
        assert_eq!(
            redact_userinfo("nats://a:b@n1:4222,tls://token@n2:4222"),
            "nats://***@n1:4222,tls://***@n2:4222"
        );
        assert_eq!(redact_userinfo("user:pw@host:4222"), "***@host:4222");
        // An `@` after the host is not user information.
        assert_eq!(
            redact_userinfo("redis://db:6379/0?tag=a@b"),
            "redis://db:6379/0?tag=a@b"
        );
        assert_eq!(
            redact_userinfo("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
