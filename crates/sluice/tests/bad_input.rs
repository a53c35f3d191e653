//! Hostile and broken input: a clear error, never a panic, memory bounded.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn post_raw(app: &TestApp, path: &str, key: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.base))
        .basic_auth(key, Some(""))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies_get_400_with_the_error_shape() {
    let app = spawn().await;
    let source = app.create_source("bad").await;
    let key = &source.write_key;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("/v1/batch", b"{\"batch\": [".to_vec(), "invalid_json"),
        ("/v1/batch", b"".to_vec(), "invalid_json"),
        ("/v1/track", b"   ".to_vec(), "invalid_json"),
        (
            "/v1/batch",
            b"{\"batch\": \"events\"}".to_vec(),
            "invalid_batch",
        ),
        (
            "/v1/batch",
            b"{\"sentAt\": \"2026-01-01T00:00:00Z\"}".to_vec(),
            "invalid_batch",
        ),
        ("/v1/batch", b"[1,2,3]".to_vec(), "invalid_body"),
        ("/v1/track", b"[1,2,3]".to_vec(), "invalid_body"),
        ("/v1/batch", b"{\"batch\": []}".to_vec(), "empty_batch"),
        (
            "/v1/track",
            b"{\"userId\": \"u\", \"event\": \"\xff\xfe\"}".to_vec(),
            "invalid_json",
        ),
        (
            "/v1/track",
            b"{\"userId\": true, \"event\": \"E\"}".to_vec(),
            "invalid_field",
        ),
        (
            "/v1/track",
            b"{\"userId\": \"u\", \"event\": 7}".to_vec(),
            "invalid_field",
        ),
        (
            "/v1/track",
            b"{\"userId\": \"u\", \"event\": \"E\", \"context\": \"web\"}".to_vec(),
            "invalid_field",
        ),
    ];
    for (path, body, code) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let response = post_raw(&app, path, key, body).await;
        assert_eq!(response.status(), 400, "{path} {shown}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{path} {shown}: {answer}");
    }
    assert!(app.events(&source).await.is_empty());
}

#[tokio::test]
async fn ten_thousand_levels_of_nesting_are_refused_without_a_crash() {
    let app = spawn().await;
    let source = app.create_source("deep").await;
    let depth = 10_000;
    let mut body = String::from("{\"userId\":\"u\",\"event\":\"E\",\"properties\":");
    body.push_str(&"[".repeat(depth));
    body.push_str(&"]".repeat(depth));
    body.push('}');
    let response = post_raw(&app, "/v1/track", &source.write_key, body.into_bytes()).await;
    assert_error(response, 400, "invalid_json").await;
    let mut batch = String::from("{\"batch\":[");
    batch.push_str(&"{\"a\":".repeat(depth));
    batch.push_str(&"}".repeat(depth));
    batch.push_str("]}");
    let response = post_raw(&app, "/v1/batch", &source.write_key, batch.into_bytes()).await;
    assert_error(response, 400, "invalid_json").await;
    // The server is still healthy.
    assert_eq!(
        app.post(
            "/v1/track",
            &source.write_key,
            &json!({"userId": "u", "event": "E"})
        )
        .await
        .status(),
        200
    );
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    String::from_utf8_lossy(&buffer).into_owned()
}

#[tokio::test]
async fn huge_headers_are_refused() {
    let app = spawn().await;
    let mut stream = TcpStream::connect(app.server.addr).await.unwrap();
    let filler = "a".repeat(200_000);
    let request = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_response(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // And the server still serves.
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn slow_clients_time_out() {
    let app = spawn_with(|c| {
        c.collector.request_timeout = "300ms".into();
        c.collector.header_timeout = "300ms".into();
    })
    .await;
    let source = app.create_source("slow").await;

    // Headers that never finish: the connection is closed.
    let mut stream = TcpStream::connect(app.server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body that trickles: 408 with the error shape.
    let mut stream = TcpStream::connect(app.server.addr).await.unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:", source.write_key),
    );
    let head = format!("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 100\r\n\r\n{{\"userId\":");
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{answer}"
    );
    assert!(app.events(&source).await.is_empty());
}
