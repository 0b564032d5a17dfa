//! nats-server child processes of a test's own (single servers and 3-node JetStream clusters on
//! free loopback ports), for tests that stop, kill and restart a server: never the shared ones.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The nats-server binary: `CHEST_TEST_NATS_SERVER` (set by `scripts/services`), else
/// `nats-server` on the PATH. `None` (skip, loudly) outside CI when neither is there.
pub fn nats_server_binary() -> Option<String> {
    if let Some(path) = std::env::var("CHEST_TEST_NATS_SERVER")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Some(path);
    }
    let on_path = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    on_path
        .then(|| "nats-server".to_owned())
        .or_else(|| super::service_url("CHEST_TEST_NATS_SERVER"))
}

/// One nats-server with JetStream, a child of the test, its store in a temporary folder that
/// outlives restarts.
pub struct NatsServer {
    binary: String,
    args: Vec<String>,
    pub port: u16,
    child: Option<Child>,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// A single server; `extra` arguments are added (`--auth TOKEN`, say).
    pub fn start(binary: &str, extra: &[&str]) -> NatsServer {
        Self::spawn(
            binary,
            free_port(),
            extra.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn spawn(binary: &str, port: u16, extra: Vec<String>) -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        let mut args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.path().display().to_string(),
        ];
        args.extend(extra);
        let mut server = NatsServer {
            binary: binary.to_owned(),
            args,
            port,
            child: None,
            _store: store,
        };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server still running");
        let log = std::fs::File::create(self._store.path().join("log")).unwrap();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server on {} did not start: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._store.path().join("log")).unwrap_or_default()
    }

    /// SIGKILLs the server (no goodbye to clients or peers) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERMs the server (a clean shutdown) and waits for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            child.wait().unwrap();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node JetStream cluster of the test's own on free ports.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(binary: &str) -> NatsCluster {
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_urls = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..3)
            .map(|i| {
                let extra = vec![
                    "--server_name".into(),
                    format!("node{i}-{}", client[0]),
                    "--cluster_name".into(),
                    format!("chest-{}", client[0]),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".into(),
                    route_urls.clone(),
                ];
                NatsServer::spawn(binary, client[i], extra)
            })
            .collect();
        NatsCluster { nodes }
    }

    /// `nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, the chest URL's server list.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("nats://{}", hosts.join(","))
    }
}

/// The store folder is kept for a post-mortem when a test fails.
pub fn store_of(server: &NatsServer) -> PathBuf {
    server._store.path().to_owned()
}
