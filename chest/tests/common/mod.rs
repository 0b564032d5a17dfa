//! Helpers shared by the integration tests. Each test file includes it with `mod common;`.
#![allow(dead_code)] // Each test binary uses a different part.

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
