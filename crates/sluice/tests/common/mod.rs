//! Test harness: a real server on an ephemeral port with a manual clock and a temp data folder.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sluice::{Config, RunningServer};
use sluice_core::ManualClock;
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "test-admin-token";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0)
        .single()
        .expect("date")
}

pub struct TestApp {
    pub server: RunningServer,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub dir: Arc<tempfile::TempDir>,
}

pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        admin_token: TOKEN.into(),
        ..Config::default()
    };
    config.log.durability = sluice_log::Durability::None;
    config
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(&dir);
    adjust(&mut config);
    start_in(dir, config).await
}

pub async fn start_in(dir: Arc<tempfile::TempDir>, config: Config) -> TestApp {
    let clock = Arc::new(ManualClock::new(t0()));
    let server = sluice::start(config.clone(), clock.clone())
        .await
        .expect("start");
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    TestApp {
        server,
        base,
        http,
        clock,
        config,
        dir,
    }
}

/// The stdout lines of a started binary.
pub type StdoutLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `sluice serve` on a free port over `data_dir` (with `admin_token`, or none so one is
/// generated) and returns it with its base URL, read from its first stdout line, and the rest of
/// its stdout.
pub async fn start_binary_process(
    data_dir: &std::path::Path,
    admin_token: Option<&str>,
) -> (tokio::process::Child, String, StdoutLines) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("SLUICE_LOG_DURABILITY", "fsync")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    match admin_token {
        Some(token) => command.env("SLUICE_ADMIN_TOKEN", token),
        None => command.env_remove("SLUICE_ADMIN_TOKEN"),
    };
    let mut child = command.spawn().expect("spawn sluice");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("sluice did not start in time")
        .expect("read stdout")
        .expect("a first line");
    let url = first.rsplit(' ').next().expect("url").to_owned();
    assert!(url.starts_with("http://"), "{first}");
    (child, url, lines)
}

/// Creates a source on any running server (the in-process app or a spawned binary).
pub async fn create_source_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> Value {
    let response = http
        .post(format!("{base}/api/v1/sources"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

pub struct SourceInfo {
    pub id: String,
    pub write_key: String,
}

impl TestApp {
    pub async fn restart(self) -> TestApp {
        let TestApp {
            server,
            dir,
            config,
            ..
        } = self;
        server.shutdown().await;
        start_in(dir, config).await
    }

    pub async fn create_source(&self, name: &str) -> SourceInfo {
        let response = self
            .http
            .post(format!("{}/api/v1/sources", self.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"name": name, "kind": "server"}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        SourceInfo {
            id: body["id"].as_str().expect("id").into(),
            write_key: body["write_key"].as_str().expect("key").into(),
        }
    }

    /// Stored events of a source, oldest first.
    pub async fn events(&self, source: &SourceInfo) -> Vec<Value> {
        let page = self.events_page(source).await;
        let mut events: Vec<Value> = page["events"].as_array().expect("events").clone();
        events.reverse();
        events.into_iter().map(|e| e["event"].clone()).collect()
    }

    pub async fn events_page(&self, source: &SourceInfo) -> Value {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sources/{}/events?limit=1000",
                self.base, source.id
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        response.text().await.expect("text")
    }

    /// POSTs and asserts a 200.
    pub async fn post_ok(&self, path: &str, key: &str, body: &Value) {
        let response = self.post(path, key, body).await;
        let status = response.status();
        assert_eq!(
            status,
            200,
            "{path}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// The messageIds in the log, in sequence order.
    pub async fn logged_message_ids(&self) -> Vec<String> {
        use sluice_log::EventLog;
        let events = self.server.log.read(0, 100_000).await.expect("read");
        events
            .iter()
            .map(|e| e.event.message_id().to_owned())
            .collect()
    }

    /// POSTs raw bytes with Basic auth for `key` and the given headers.
    pub async fn post_bytes(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(key, Some(""));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).send().await.expect("send")
    }

    /// POSTs `body` to `path` with Basic auth for `key`.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .basic_auth(key, Some(""))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send")
    }
}

/// Asserts the `/v1` error shape: JSON with `code` and `message`, and CORS headers.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    assert!(
        response
            .headers()
            .contains_key("access-control-allow-origin"),
        "error {status} without CORS headers"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Polls an async `check` every 10 ms until it gives a value; fails after 20 s, naming `what`.
pub async fn eventually_async<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually_async`] for a check that needs no awaiting.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    eventually_async(what, || std::future::ready(check())).await
}
