//! What the command-line tests that need real services share: finding the services and
//! skipping (or, under CI, failing) when one is missing.

use std::time::Duration;

/// Called when a service is missing: fails loudly under CI, otherwise prints a note and
/// tells the test to skip.
pub fn missing(service: &str, detail: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{service} is required under CI but {detail} (run .ci/services)");
    }
    eprintln!("SKIPPED: {service} not available ({detail}); set it up with .ci/services");
    true
}

/// The variable's value when it is set and not empty, else `default`.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Whether something accepts a TCP connection at `host:port` within two seconds.
pub async fn answers(host_port: &str) -> bool {
    let Ok(Some(addr)) = tokio::net::lookup_host(host_port)
        .await
        .map(|mut a| a.next())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
