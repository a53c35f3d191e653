//! What browsers and mobile SDKs need besides the event endpoints: settings documents that
//! point them here, CORS per source, `/sluice.js` and its snippet, and HTTPS.

mod common;

use common::*;
use serde_json::{json, Value};

async fn create_web_source(app: &TestApp, name: &str, origins: Value) -> Value {
    let response = app
        .http
        .post(format!("{}/api/v1/sources", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "kind": "web", "allowed_origins": origins}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

#[tokio::test]
async fn settings_point_every_sdk_here_and_nowhere_else() {
    let app = spawn().await;
    let source = app.create_source("web").await;
    let host = app.base.trim_start_matches("http://").to_owned();
    for path in [
        format!("/v1/projects/{}/settings", source.write_key),
        format!("/projects/{}/settings", source.write_key),
        // What misconfigured mobile apps ask for.
        format!("/v1/projects/projects/{}/settings", source.write_key),
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .header("origin", "http://page.test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://page.test"
        );
        let settings: Value = response.json().await.unwrap();
        let segment = &settings["integrations"]["Segment.io"];
        assert_eq!(segment["apiKey"], source.write_key.as_str());
        assert_eq!(segment["apiHost"], format!("{host}/v1"));
        assert_eq!(segment["protocol"], "http");
        assert_eq!(
            settings["integrations"].as_object().unwrap().len(),
            1,
            "no other integration"
        );
        assert_eq!(settings["metrics"]["sampleRate"], 0);
        assert_eq!(settings["metrics"]["host"], format!("{host}/v1"));
        assert_eq!(settings["remotePlugins"], json!([]));
        assert!(
            !settings.to_string().contains("segment.io/v1"),
            "nothing points at Segment"
        );
    }
    for bad in [
        "/v1/projects/unknown-key/settings",
        "/projects/x/y/settings",
        "/projects//settings",
        "/projects/%00/settings",
        "/v1/projects/k",
    ] {
        let response = app
            .http
            .get(format!("{}{bad}", app.base))
            .send()
            .await
            .unwrap();
        assert_error(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_configured_public_url_is_what_browsers_are_told() {
    let app = spawn_with(|config| config.public_url = "https://collect.shop.test/".into()).await;
    let source = app.create_source("web").await;
    let settings: Value = app
        .http
        .get(format!(
            "{}/v1/projects/{}/settings",
            app.base, source.write_key
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings["integrations"]["Segment.io"]["apiHost"],
        "collect.shop.test/v1"
    );
    assert_eq!(settings["integrations"]["Segment.io"]["protocol"], "https");
    let snippet: Value = app
        .http
        .get(format!("{}/api/v1/sources/{}/snippet", app.base, source.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snippet["host"], "https://collect.shop.test");
    let html = snippet["snippet"].as_str().unwrap();
    assert!(
        html.contains("https://collect.shop.test/sluice.js"),
        "{html}"
    );
    assert!(html.contains(&source.write_key));
}

#[tokio::test]
async fn origins_a_source_does_not_allow_get_403_and_no_cors_grant() {
    let app = spawn().await;
    let shop = create_web_source(&app, "shop", json!(["https://shop.test"])).await;
    let key = shop["write_key"].as_str().unwrap();
    let event = json!({"userId": "u", "event": "E", "messageId": "m1"});
    let post = |origin: &'static str| {
        app.http
            .post(format!("{}/v1/track", app.base))
            .basic_auth(key, Some(""))
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(event.to_string())
            .send()
    };
    let refused = post("https://evil.test").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin"),
        "no CORS grant"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "origin_not_allowed");
    let accepted = post("https://shop.test").await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        accepted.headers()["access-control-allow-origin"],
        "https://shop.test"
    );
    let source = SourceInfo {
        id: shop["id"].as_str().unwrap().into(),
        write_key: key.into(),
    };
    assert_eq!(
        app.events(&source).await.len(),
        1,
        "the refused event was not stored"
    );
    // Settings for a refused origin are refused too.
    let settings = app
        .http
        .get(format!("{}/v1/projects/{key}/settings", app.base))
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 403);

    // A preflight carries no key: granted to an origin some source allows, refused otherwise.
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/v1/t", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-retry-count",
            )
            .send()
    };
    let granted = preflight("https://shop.test").await.unwrap();
    assert_eq!(granted.status(), 204);
    assert_eq!(
        granted.headers()["access-control-allow-origin"],
        "https://shop.test"
    );
    assert_eq!(
        granted.headers()["access-control-allow-headers"],
        "Content-Type, Authorization, X-Retry-Count"
    );
    let denied = preflight("https://evil.test").await.unwrap();
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    // A source without a list allows any origin, so every preflight is granted again.
    create_web_source(&app, "open", json!([])).await;
    assert_eq!(
        preflight("https://evil.test").await.unwrap().headers()["access-control-allow-origin"],
        "https://evil.test"
    );

    let response = app
        .http
        .post(format!("{}/api/v1/sources", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "bad", "allowed_origins": ["shop.test/path"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fields"], json!(["allowed_origins"]));
}

#[tokio::test]
async fn an_oversized_browser_request_gets_413_with_cors_headers() {
    let app = spawn().await;
    let source = app.create_source("web").await;
    let response = app
        .http
        .post(format!("{}/v1/b", app.base))
        .basic_auth(&source.write_key, Some(""))
        .header("origin", "http://page.test")
        .header("content-type", "text/plain")
        .body(vec![b' '; 600_000])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://page.test"
    );
    assert_error(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn sluice_js_is_served_small_and_gzipped() {
    let app = spawn().await;
    let plain = app
        .http
        .get(format!("{}/sluice.js", app.base))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let script = plain.text().await.unwrap();
    assert!(script.contains("analytics"), "the script defines analytics");
    let gzipped = app
        .http
        .get(format!("{}/sluice.js", app.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let bytes = gzipped.bytes().await.unwrap();
    assert!(bytes.len() <= 6 * 1024, "{} bytes gzipped", bytes.len());
    let mut inflated = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut inflated)
        .unwrap();
    assert_eq!(inflated, script);
}

#[tokio::test]
async fn sluice_serves_https_itself_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            // A server certificate, not a CA (rustls refuses a CA as the end entity).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let app = spawn_with(|config| {
        config.tls_cert = cert.display().to_string();
        config.tls_key = key.display().to_string();
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let https = app.base.replace("http://", "https://");
    let source = create_source_at(&client, &https, TOKEN, "mobile").await;
    let write_key = source["write_key"].as_str().unwrap();
    // The mobile SDKs: gzip + text/plain batches to /v1/b over HTTPS.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, json!({"batch": [{"type": "track", "userId": "u", "event": "App Opened", "messageId": "tls-1"}]}).to_string().as_bytes()).unwrap();
    let response = client
        .post(format!("{https}/v1/b"))
        .basic_auth(write_key, Some(""))
        .header("content-type", "text/plain")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let settings: Value = client
        .get(format!("{https}/projects/{write_key}/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["integrations"]["Segment.io"]["protocol"], "https");
    // Plain HTTP on the TLS port gets nowhere.
    assert!(app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .is_err());
}
