//! Hand-built requests of the Go, Java, Swift and Kotlin libraries (see fixtures/wire/README.md).

mod common;

use base64::Engine;
use common::*;
use serde_json::Value;
use std::io::Write;

/// Posts a fixture as its library would and returns the stored events, oldest first.
async fn replay(app: &TestApp, name: &str) -> Vec<Value> {
    let source = app.create_source(name).await;
    let path = format!(
        "{}/tests/fixtures/wire/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut body = match fixture.get("raw_body") {
        Some(raw) => raw.as_str().unwrap().to_owned(),
        None => fixture["body"].to_string(),
    };
    body = body.replace("WRITE_KEY", &source.write_key);
    let mut request = app
        .http
        .post(format!("{}{}", app.base, fixture["path"].as_str().unwrap()));
    let headers = fixture["headers"].as_object().unwrap();
    for (name, value) in headers {
        let value = value.as_str().unwrap();
        request = match (name.as_str(), value) {
            ("Authorization", "basic") => request.header(
                "Authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:", source.write_key))
                ),
            ),
            _ => request.header(name.as_str(), value),
        };
    }
    let bytes = if headers.get("Content-Encoding").and_then(Value::as_str) == Some("gzip") {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body.as_bytes()).unwrap();
        encoder.finish().unwrap()
    } else {
        body.into_bytes()
    };
    let response = request.body(bytes).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "{name}: {}",
        response.text().await.unwrap_or_default()
    );
    app.events(&source).await
}

#[tokio::test]
async fn go_envelope_context_reaches_events_but_its_message_id_does_not() {
    let app = spawn().await;
    let events = replay(&app, "go").await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event["context"]["library"]["name"], "analytics-go");
        assert_ne!(event["messageId"], "4f3c1b52-9a65-4a2e-8a0f-1d7c2b3e4f50");
        assert_eq!(event["sentAt"], "2026-12-04T11:59:58.000Z");
    }
    assert_eq!(events[0]["messageId"], "go-1");
    // Sent 8 s and 3 s before sentAt; received at 12:00:00.
    assert_eq!(events[0]["timestamp"], "2026-12-04T11:59:52.000Z");
    assert_eq!(events[1]["timestamp"], "2026-12-04T11:59:57.000Z");
}

#[tokio::test]
async fn java_posts_to_import_with_a_trailing_slash() {
    let app = spawn().await;
    let events = replay(&app, "java").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "Invoice Paid");
    assert_eq!(events[0]["properties"]["amount"], 12.5);
    assert!(
        events[0].get("sequence").is_none(),
        "envelope fields other than context/integrations/sentAt stay out"
    );
    assert_eq!(events[0]["timestamp"], "2026-12-04T11:59:59.000Z");
}

#[tokio::test]
async fn swift_authenticates_with_the_body_write_key_only() {
    let app = spawn().await;
    let events = replay(&app, "swift").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "screen");
    assert_eq!(events[0]["anonymousId"], "swift-anon");
    assert!(events[0].get("writeKey").is_none());
    assert_eq!(events[1]["event"], "Application Opened");
    assert_eq!(events[1]["timestamp"], "2026-12-04T11:59:56.000Z");
}

#[tokio::test]
async fn kotlin_gzip_text_plain_batches_are_accepted() {
    let app = spawn().await;
    let events = replay(&app, "kotlin").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["traits"]["name"], "Ada");
    assert_eq!(events[1]["properties"]["items"], 3);
    assert_eq!(events[1]["context"]["library"]["name"], "analytics-kotlin");
    assert_eq!(events[1]["timestamp"], "2026-12-04T11:59:59.000Z");
}
