//! A headless Chromium driven through chromedriver's WebDriver HTTP API (W3C), with plain
//! reqwest calls: for the dashboard's browser test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A free loopback port (free when this returns; taken soon after by the caller's server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser's binaries; `None` (the test skipped loudly) when they are missing, except under
/// `CI=true`, where that fails: `scripts/services start` installs them.
pub fn binaries() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
                    .map(|p| p.display().to_string())
            })
        })
    };
    match (
        find(&["chromium", "chromium-browser"]),
        find(&["chromedriver"]),
    ) {
        (Some(browser), Some(driver)) => Some((browser, driver)),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "chromium and chromedriver are missing under CI=true: run `scripts/services start`"
            );
            eprintln!("*** SKIPPED: chromium or chromedriver not installed ***");
            None
        }
    }
}

/// One WebDriver session of a headless Chromium, with its chromedriver.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    _driver: Guard,
}

impl Browser {
    pub async fn start(browser: &str, driver: &str) -> Browser {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver = Guard(child);
        wait_for_port(port, "chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        // chest's HTTP chests build reqwest with rustls but no process-wide crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1600"],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            http,
            session,
            base,
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        let body = json!({ "url": url });
        self.call(reqwest::Method::POST, "/url", Some(body)).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.call(reqwest::Method::POST, "/execute/sync", Some(body))
            .await
    }

    /// Polls `script` until it returns something truthy (not `false`, `null` or `0`); that.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.run(script, json!([])).await;
            if !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) {
                return v;
            }
            let state = self
                .run(
                    "return JSON.stringify(window.chestDashboard && window.chestDashboard.error)",
                    json!([]),
                )
                .await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (page error: {state})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`wait_for`](Self::wait_for) a script that ends in `JSON.stringify(…)`: that, parsed.
    pub async fn wait_for_json(&self, what: &str, script: &str) -> Value {
        let text = self.wait_for(what, script).await;
        serde_json::from_str(text.as_str().expect("a JSON text")).unwrap()
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}
