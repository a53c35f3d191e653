//! Shared helpers for the integration tests.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sluice_testkit::{CioOptions, CioTestServer};

pub const SITE: &str = "SITE_ID_TEST";
pub const KEY: &str = "API_KEY_TEST";
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

pub fn basic(site: &str, key: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{site}:{key}")))
}

pub async fn start() -> CioTestServer {
    CioTestServer::start(CioOptions::default())
        .await
        .expect("start test server")
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }

    /// The `errors` array of a v2 error body.
    pub fn errors(&self) -> Vec<Value> {
        match self.json().get("errors") {
            Some(Value::Array(errors)) => errors.clone(),
            _ => panic!("no errors array in {}", self.body),
        }
    }

    pub fn assert_ok(&self) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(self.body, "{}");
        assert_eq!(self.content_type.as_deref(), Some(JSON_UTF8));
    }
}

/// Send a request with explicit headers and a raw body.
pub async fn send_raw(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let retry_after = header("retry-after");
    let status = response.status().as_u16();
    let body = response.text().await.expect("read body");
    Resp {
        status,
        content_type,
        retry_after,
        body,
    }
}

/// Send with the default credentials and a JSON content type.
pub async fn send(
    server: &CioTestServer,
    method: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> Resp {
    let auth = basic(SITE, KEY);
    send_raw(
        &server.url(),
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

pub async fn post(server: &CioTestServer, path: &str, body: &Value) -> Resp {
    send(server, "POST", path, body.to_string()).await
}

pub async fn batch(server: &CioTestServer, ops: &[Value]) -> Resp {
    post(
        server,
        "/api/v2/batch",
        &serde_json::json!({ "batch": ops }),
    )
    .await
}

pub fn accepted_ops(server: &CioTestServer) -> Vec<Value> {
    server.accepted().into_iter().map(|a| a.op).collect()
}
