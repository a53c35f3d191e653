//! Basic auth on every endpoint: both base64 alphabets, padding optional, rotation.

mod common;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{basic, send_raw, JSON_UTF8};
use serde_json::json;
use sluice_testkit::{CioOptions, CioTestServer};

const SITE: &str = "SITE?>";
const KEY: &str = "KEY?>~~";

async fn start_with(site: &str, key: &str) -> CioTestServer {
    CioTestServer::start(CioOptions {
        site_id: site.into(),
        api_key: key.into(),
        region: "eu".into(),
        max_requests_per_second: None,
    })
    .await
    .expect("start")
}

fn identify() -> String {
    json!({"type":"person","action":"identify","identifiers":{"id":"u1"}}).to_string()
}

async fn entity(server: &CioTestServer, authorization: Option<&str>) -> common::Resp {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    send_raw(
        &server.url(),
        "POST",
        "/api/v2/entity",
        &headers,
        identify(),
    )
    .await
}

#[tokio::test]
async fn standard_and_url_safe_base64_padded_or_not() {
    let server = start_with(SITE, KEY).await;
    let creds = format!("{SITE}:{KEY}");
    let standard = STANDARD.encode(&creds);
    let url_safe = URL_SAFE.encode(&creds);
    assert_ne!(
        standard, url_safe,
        "the credentials must exercise both alphabets"
    );
    assert!(standard.contains('+') || standard.contains('/'));
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        let header = format!("Basic {}", engine.encode(&creds));
        entity(&server, Some(&header)).await.assert_ok();
    }
    // Scheme is case-insensitive.
    entity(&server, Some(&format!("basic {url_safe}")))
        .await
        .assert_ok();
    assert_eq!(server.accepted().len(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_everywhere() {
    let server = start_with(SITE, KEY).await;
    let wrong_key = basic(SITE, "KEY?>~");
    let wrong_site = basic("SITE", KEY);
    let url = server.url();
    for auth in [
        Some(wrong_key.as_str()),
        Some(wrong_site.as_str()),
        Some("Basic not-base64!"),
        Some("Bearer abc"),
        None,
    ] {
        let r = entity(&server, auth).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
        assert_eq!(r.json(), json!({"meta":{"error":"Unauthorized request"}}));
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        for (method, path, body) in [
            ("PUT", "/api/v1/customers/u1", "{}"),
            ("POST", "/api/v1/customers/u1/events", r#"{"name":"E"}"#),
            ("POST", "/api/v2/batch", r#"{"batch":[]}"#),
            ("GET", "/api/v1/accounts/region", ""),
            ("GET", "/auth", ""),
        ] {
            let r = send_raw(&url, method, path, &headers, body).await;
            assert_eq!(r.status, 401, "{method} {path} {auth:?}");
        }
    }
    assert!(server.accepted().is_empty());
    let requests = server.requests();
    assert_eq!(requests.len(), 30);
    assert!(requests.iter().all(|r| r.status == 401));
    assert_eq!(
        requests[0].response_body,
        r#"{"meta":{"error":"Unauthorized request"}}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn set_credentials_rotates() {
    let server = start_with(SITE, KEY).await;
    let old = basic(SITE, KEY);
    let new = basic("SITE2", "KEY2");
    entity(&server, Some(&old)).await.assert_ok();
    assert_eq!(entity(&server, Some(&new)).await.status, 401);
    server.set_credentials("SITE2", "KEY2");
    assert_eq!(entity(&server, Some(&old)).await.status, 401);
    entity(&server, Some(&new)).await.assert_ok();
    assert_eq!(server.accepted().len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn region_endpoint_reports_url_and_region() {
    let server = start_with(SITE, KEY).await;
    let auth = basic(SITE, KEY);
    let r = send_raw(
        &server.url(),
        "GET",
        "/api/v1/accounts/region",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
    assert_eq!(
        r.json(),
        json!({"url": server.url(), "region": "eu", "environment_id": 1})
    );
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.url(), format!("http://{}", server.addr()));
    server.shutdown().await;
}
