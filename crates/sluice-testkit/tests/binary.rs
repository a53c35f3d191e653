//! The `sluice-cio-test-server` binary: the listening line, the control API, a scripted status.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{basic, send_raw, KEY, SITE};
use serde_json::json;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_scripted_responses_via_the_control_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-cio-test-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--region",
            "eu",
            "--api-key",
            KEY,
            "--site-id",
            SITE,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut child = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listening line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let r = send_raw(
        &url,
        "POST",
        "/_test/responses",
        &[],
        r#"[{"status":503,"retry_after":7}]"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let auth = basic(SITE, KEY);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = json!({"batch":[{"type":"person","action":"identify","identifiers":{"id":"u1"}}]})
        .to_string();
    let r = send_raw(&url, "POST", "/api/v2/batch", &headers, body.clone()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.retry_after.as_deref(), Some("7"));
    let r = send_raw(&url, "POST", "/api/v2/batch", &headers, body).await;
    r.assert_ok();

    let accepted = send_raw(&url, "GET", "/_test/accepted", &[], "")
        .await
        .json();
    assert_eq!(
        accepted,
        json!([{"type":"person","action":"identify","identifiers":{"id":"u1"}}])
    );
    let requests = send_raw(&url, "GET", "/_test/requests", &[], "")
        .await
        .json();
    let statuses: Vec<u64> = requests
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["status"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, vec![503, 200]);
    let region = send_raw(&url, "GET", "/api/v1/accounts/region", &headers[..1], "")
        .await
        .json();
    assert_eq!(
        region,
        json!({"url": url, "region": "eu", "environment_id": 1})
    );

    child.0.kill().expect("kill");
    let status = child.0.wait().expect("wait");
    assert!(!status.success(), "killed, so not a clean exit");
}
