//! Helpers shared by the `chest` binary's tests (each includes it with `mod common;`).
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const CHEST: &str = env!("CARGO_BIN_EXE_chest");

/// A running `chest demo`, stopped with SIGTERM on drop.
pub struct Demo {
    pub child: Child,
    pub url: String,
    /// Kept open so the demo's stdout stays a live pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Demo {
    pub fn start(db: &Path) -> Demo {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: &Path, extra: &[&str]) -> Demo {
        Self::start_in(Path::new("."), db, extra)
    }

    /// Started in folder `cwd`, where a demo writing to a server URL keeps its spool.
    pub fn start_in(cwd: &Path, db: &Path, extra: &[&str]) -> Demo {
        let mut child = Command::new(CHEST)
            .current_dir(cwd)
            .args(["demo", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chest demo");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let url = first
            .trim()
            .rsplit(' ')
            .next()
            .expect("demo prints its URL first")
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        Demo {
            child,
            url,
            _stdout: stdout,
        }
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        self.child.wait().unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn terminate(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A plain-HTTP client. chest's HTTP chests build reqwest with rustls but without a process-wide
/// crypto provider, so a client that does not bring its own TLS settings needs one installed.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Checks that the command of `out` succeeded (else its stderr is the failure).
pub fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The URL of a real server from `var` (set by `eval "$(scripts/services start)"`), and a table
/// name no other test (or run) uses; `None`, and the test skipped loudly, when `var` is not set,
/// except under `CI=true`, where that fails.
pub fn server_table(var: &str, prefix: &str) -> Option<(String, String)> {
    let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{var} is not set under CI=true"
        );
        eprintln!("*** SKIPPED: {var} is not set ***");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Some((url, format!("{prefix}_{}_{nanos}", std::process::id())))
}

/// Runs `sql` on the PostgreSQL server at `url` with psql; its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-Atc", sql])
        .output()
        .unwrap();
    succeeded(&out);
    String::from_utf8(out.stdout).unwrap()
}
