//! Helpers shared by the integration tests. Each test file includes it with `mod common;`.
#![allow(dead_code)] // Each test binary uses a different part.

pub mod nats;
pub mod proxy;

/// A free TCP port on 127.0.0.1 (bound and released: nothing listens there until a test does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The URL of a real server the test needs, from the environment variable `var` (set by
/// `eval "$(scripts/services start)"`). Under `CI=true` a missing variable fails the test;
/// elsewhere the test is skipped, loudly.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set under CI=true: run `eval \"$(scripts/services start)\"` first")
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED: {var} is not set; run `eval \"$(scripts/services start)\"` to test against the real server ***\n"
            );
            None
        }
    }
}

/// A plain-HTTP test client. With chest's HTTP features on (as under `--all-features`), reqwest is
/// built with rustls but no process-wide crypto provider; a client that does not bring its own TLS
/// settings needs one installed first.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Installs ring as the process-wide rustls provider (see [`http_client`]), once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
