//! The collection API end to end: endpoints, auth, encodings, normalisation, limits, errors.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use sluice_log::EventLog;
use std::io::Write;

fn track(id: &str) -> Value {
    json!({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": id})
}

#[tokio::test]
async fn every_single_event_path_stores_its_type() {
    let app = spawn().await;
    let source = app.create_source("web").await;
    let paths = [
        ("identify", "identify"),
        ("track", "track"),
        ("page", "page"),
        ("screen", "screen"),
        ("group", "group"),
        ("alias", "alias"),
        ("i", "identify"),
        ("t", "track"),
        ("p", "page"),
        ("s", "screen"),
        ("g", "group"),
        ("a", "alias"),
    ];
    for (i, (path, _)) in paths.iter().enumerate() {
        let body = json!({"userId": "u1", "messageId": format!("m{i}"), "event": "E", "groupId": "g1", "previousId": "anon-1"});
        let response = app
            .post(&format!("/v1/{path}"), &source.write_key, &body)
            .await;
        assert_eq!(response.status(), 200, "/v1/{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"success": true})
        );
    }
    let stored = app.events(&source).await;
    let types: Vec<&str> = stored.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, paths.iter().map(|(_, t)| *t).collect::<Vec<_>>());
}

#[tokio::test]
async fn batch_import_and_short_batch_paths_store_batches() {
    let app = spawn().await;
    let source = app.create_source("server").await;
    for (i, path) in [
        "/v1/batch",
        "/v1/import",
        "/v1/import/",
        "/v1/b",
        "/v1/batch/",
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"batch": [track(&format!("{i}-a")), track(&format!("{i}-b"))]});
        let response = app.post(path, &source.write_key, &body).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(app.events(&source).await.len(), 10);
}

#[tokio::test]
async fn metrics_path_is_accepted_and_dropped() {
    let app = spawn().await;
    let source = app.create_source("web").await;
    let response = app
        .http
        .post(format!("{}/v1/m", app.base))
        .header("content-type", "text/plain")
        .body(r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke.track","value":1,"tags":{}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(app.events(&source).await.is_empty());
}

#[tokio::test]
async fn every_write_key_form_authenticates() {
    let app = spawn().await;
    let source = app.create_source("keys").await;
    let key = &source.write_key;
    let headers = [
        format!("Basic {}", STANDARD.encode(format!("{key}:"))),
        format!("Basic {}", STANDARD.encode(key)),
        format!("Basic {}", URL_SAFE_NO_PAD.encode(format!("{key}:"))),
    ];
    for (i, header) in headers.iter().enumerate() {
        let response = app
            .http
            .post(format!("{}/v1/track", app.base))
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(track(&format!("h{i}")).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{header}");
    }
    // writeKey in the batch envelope, in a single event, and in batch items only (analytics-next).
    let bodies = [
        (
            "/v1/batch",
            json!({"writeKey": key, "batch": [track("b1")]}),
        ),
        (
            "/v1/track",
            json!({"writeKey": key, "event": "E", "userId": "u", "messageId": "b2"}),
        ),
        (
            "/v1/b",
            json!({"batch": [{"writeKey": key, "type": "track", "event": "E", "userId": "u", "messageId": "b3"}]}),
        ),
    ];
    for (path, body) in bodies {
        let response = app
            .http
            .post(format!("{}{path}", app.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let stored = app.events(&source).await;
    assert_eq!(stored.len(), 6);
    assert!(
        stored.iter().all(|e| e.get("writeKey").is_none()),
        "writeKey must be stripped"
    );
}

#[tokio::test]
async fn unknown_missing_and_deleted_keys_get_401() {
    let app = spawn().await;
    let source = app.create_source("doomed").await;
    assert_error(
        app.post("/v1/track", "nope", &track("x")).await,
        401,
        "invalid_write_key",
    )
    .await;
    let response = app
        .http
        .post(format!("{}/v1/track", app.base))
        .body(track("x").to_string())
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "missing_write_key").await;
    let response = app
        .http
        .post(format!("{}/v1/track", app.base))
        .header("authorization", "Basic %%%")
        .body(track("x").to_string())
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "invalid_authorization").await;
    app.post_ok("/v1/track", &source.write_key, &track("ok"))
        .await;
    let deleted = app
        .http
        .delete(format!("{}/api/v1/sources/{}", app.base, source.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_error(
        app.post("/v1/track", &source.write_key, &track("late"))
            .await,
        401,
        "invalid_write_key",
    )
    .await;
}

#[tokio::test]
async fn json_and_text_plain_content_types_are_accepted_others_refused() {
    let app = spawn().await;
    let source = app.create_source("ct").await;
    for (i, content_type) in [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "text/plain;charset=UTF-8",
    ]
    .iter()
    .enumerate()
    {
        let response = app
            .post_bytes(
                "/v1/t",
                &source.write_key,
                &[("content-type", *content_type)],
                track(&format!("ct{i}")).to_string(),
            )
            .await;
        assert_eq!(response.status(), 200, "{content_type}");
    }
    let response = app
        .post_bytes(
            "/v1/t",
            &source.write_key,
            &[("content-type", "application/xml")],
            track("xml").to_string(),
        )
        .await;
    assert_error(response, 415, "unsupported_media_type").await;
    assert_eq!(app.events(&source).await.len(), 4);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_decoded_and_bombs_refused() {
    let app = spawn().await;
    let source = app.create_source("zip").await;
    let body = json!({"batch": [track("gz")], "writeKey": source.write_key}).to_string();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(json!({"batch": [track("zlib")]}).to_string().as_bytes())
        .unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(json!({"batch": [track("raw")]}).to_string().as_bytes())
        .unwrap();
    for (encoding, bytes) in [
        ("gzip", gzip(body.as_bytes())),
        ("deflate", zlib.finish().unwrap()),
        ("deflate", raw.finish().unwrap()),
    ] {
        let response = app
            .post_bytes(
                "/v1/b",
                &source.write_key,
                &[
                    ("content-type", "text/plain"),
                    ("content-encoding", encoding),
                ],
                bytes,
            )
            .await;
        assert_eq!(response.status(), 200, "{encoding}");
    }
    assert_eq!(app.events(&source).await.len(), 3);

    // 64 MiB of spaces inside a JSON string compresses to ~64 KiB: refused at 512,000 bytes.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(b"{\"batch\":[],\"pad\":\"").unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        bomb.write_all(&chunk).unwrap();
    }
    bomb.write_all(b"\"}").unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 512_000);
    let response = app
        .post_bytes(
            "/v1/batch",
            &source.write_key,
            &[("content-encoding", "gzip")],
            bomb,
        )
        .await;
    let error = assert_error(response, 413, "payload_too_large").await;
    assert!(error["message"].as_str().unwrap().contains("512000"));

    let response = app
        .post_bytes(
            "/v1/batch",
            &source.write_key,
            &[("content-encoding", "gzip")],
            "not gzip at all",
        )
        .await;
    assert_error(response, 400, "invalid_encoding").await;
    let response = app
        .post_bytes(
            "/v1/batch",
            &source.write_key,
            &[("content-encoding", "br")],
            "x",
        )
        .await;
    assert_error(response, 415, "unsupported_encoding").await;
}

#[tokio::test]
async fn routing_errors_carry_the_json_shape_and_cors() {
    let app = spawn().await;
    let response = app
        .http
        .post(format!("{}/v1/nothing", app.base))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_error(response, 404, "not_found").await;
    let response = app
        .http
        .get(format!("{}/v1/track", app.base))
        .send()
        .await
        .unwrap();
    assert_error(response, 405, "method_not_allowed").await;
    let response = app
        .http
        .put(format!("{}/v1/batch", app.base))
        .send()
        .await
        .unwrap();
    assert_error(response, 405, "method_not_allowed").await;
    let response = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", app.base))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, x-retry-count",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization")
            && allowed.contains("x-retry-count")
            && allowed.contains("content-type")
    );
    assert!(response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("Retry-After"));
}

#[tokio::test]
async fn events_are_normalised_per_the_segment_spec() {
    let app = spawn().await;
    let source = app.create_source("norm").await;
    let received = t0();
    let body = json!({
        "messageId": "batch-level-id",
        "sentAt": "2026-12-04T11:00:10Z",
        "context": {"library": {"name": "analytics-go", "version": "3.0.0"}, "locale": "fr-FR"},
        "integrations": {"All": true, "Mixpanel": false},
        "batch": [
            // Client clock 1 h behind: sent 10 s after the event, so timestamp = received - 10 s.
            {"type": "identify", "userId": 42, "anonymousId": null, "traits": {"plan": "pro"},
             "timestamp": "2026-12-04T11:00:00Z", "context": {"locale": "en-GB"}, "integrations": {"Mixpanel": true}},
            // Its own sentAt wins over the envelope's.
            {"type": "track", "event": "E", "anonymousId": "anon-1", "userId": null,
             "timestamp": "2026-12-04T11:59:50Z", "sentAt": "2026-12-04T11:59:55Z", "context": {"ip": "198.51.100.1"}},
            // No timestamp: receivedAt.
            {"type": "page", "userId": "u3", "name": "Home"},
        ]
    });
    app.post_ok("/v1/batch", &source.write_key, &body).await;
    // A single event without sentAt keeps its own timestamp.
    let single =
        json!({"userId": "u4", "event": "Kept", "timestamp": "2026-12-01T00:00:00.123456+02:00"});
    app.post_ok("/v1/track", &source.write_key, &single).await;

    let stored = app.events(&source).await;
    assert_eq!(stored.len(), 4);
    let identify = &stored[0];
    assert_eq!(identify["userId"], "42", "numeric userId becomes a string");
    assert!(identify.get("anonymousId").is_none(), "null is absent");
    assert_ne!(
        identify["messageId"], "batch-level-id",
        "the envelope messageId must not be copied"
    );
    assert!(
        identify["messageId"].as_str().unwrap().len() >= 32,
        "messageId generated"
    );
    assert_eq!(identify["receivedAt"], "2026-12-04T12:00:00.000Z");
    assert_eq!(identify["originalTimestamp"], "2026-12-04T11:00:00.000Z");
    assert_eq!(identify["sentAt"], "2026-12-04T11:00:10.000Z");
    assert_eq!(identify["timestamp"], "2026-12-04T11:59:50.000Z");
    assert_eq!(
        identify["context"]["locale"], "en-GB",
        "the event's context keys win"
    );
    assert_eq!(
        identify["context"]["library"]["name"], "analytics-go",
        "envelope context merged in"
    );
    assert_eq!(
        identify["context"]["ip"], "127.0.0.1",
        "ip filled from the peer"
    );
    assert_eq!(
        identify["integrations"],
        json!({"All": true, "Mixpanel": true})
    );
    assert_eq!(identify["traits"]["plan"], "pro");

    let track = &stored[1];
    assert_eq!(track["sentAt"], "2026-12-04T11:59:55.000Z");
    assert_eq!(track["timestamp"], "2026-12-04T11:59:55.000Z");
    assert_eq!(
        track["context"]["ip"], "198.51.100.1",
        "an explicit ip is kept"
    );
    assert!(track.get("userId").is_none());

    let page = &stored[2];
    assert_eq!(page["timestamp"], "2026-12-04T12:00:00.000Z");
    assert!(page.get("originalTimestamp").is_none());
    assert_eq!(stored[3]["timestamp"], "2026-11-30T22:00:00.123Z");
    assert!(stored[3].get("sentAt").is_none());
    let _ = received;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let untrusted = spawn().await;
    let source = untrusted.create_source("xff").await;
    let send = |app: &TestApp, key: &str, id: &str| {
        app.http
            .post(format!("{}/v1/track", app.base))
            .basic_auth(key, Some(""))
            .header("x-forwarded-for", "203.0.113.7")
            .body(track(id).to_string())
            .send()
    };
    assert_eq!(
        send(&untrusted, &source.write_key, "a")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        untrusted.events(&source).await[0]["context"]["ip"],
        "127.0.0.1"
    );

    let trusted = spawn_with(|c| c.collector.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let source = trusted.create_source("xff").await;
    assert_eq!(
        send(&trusted, &source.write_key, "b")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        trusted.events(&source).await[0]["context"]["ip"],
        "203.0.113.7"
    );
}

#[tokio::test]
async fn partial_batches_keep_the_valid_events_and_record_the_rest() {
    let app = spawn().await;
    let source = app.create_source("partial").await;
    let big = "x".repeat(33_000);
    let body = json!({"batch": [
        track("good-1"),
        {"type": "track", "userId": "u1"},
        {"type": "track", "event": "E"},
        {"type": "teleport", "userId": "u1"},
        {"type": "track", "event": "E", "userId": "u1", "timestamp": "last tuesday"},
        {"type": "track", "event": "E", "userId": "u1", "properties": {"pad": big}},
        "not an object",
        {"type": "group", "userId": "u1"},
        {"type": "alias", "userId": "u1"},
        {"type": "identify", "userId": {"nested": true}},
        track("good-2"),
    ]});
    let response = app.post("/v1/batch", &source.write_key, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["success"], true);
    let rejected: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        (1, "missing_field"),
        (2, "missing_field"),
        (3, "invalid_field"),
        (4, "invalid_timestamp"),
        (5, "event_too_large"),
        (6, "invalid_event"),
        (7, "missing_field"),
        (8, "missing_field"),
        (9, "invalid_field"),
    ];
    assert_eq!(
        rejected,
        expected
            .iter()
            .map(|(i, c)| (*i, c.to_string()))
            .collect::<Vec<_>>()
    );
    let big_message = answer["rejected"][4]["message"].as_str().unwrap();
    assert!(big_message.contains("32768"), "{big_message}");
    let page = app.events_page(&source).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["rejected"].as_array().unwrap().len(), 9);

    // Every event invalid: 400 with the same detail, and still recorded.
    let body =
        json!({"batch": [{"type": "track", "userId": "u"}, {"type": "group", "userId": "u"}]});
    let error = assert_error(
        app.post("/v1/batch", &source.write_key, &body).await,
        400,
        "invalid_batch",
    )
    .await;
    assert_eq!(error["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.events_page(&source).await["rejected"]
            .as_array()
            .unwrap()
            .len(),
        11
    );
    // A single invalid event is a 400 naming the problem.
    let error = assert_error(
        app.post("/v1/track", &source.write_key, &json!({"userId": "u"}))
            .await,
        400,
        "missing_field",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("event"));
}

#[tokio::test]
async fn request_limits_are_enforced_and_named() {
    let app = spawn().await;
    let source = app.create_source("limits").await;
    let too_many: Vec<Value> = (0..2_501)
        .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": i.to_string()}))
        .collect();
    let error = assert_error(
        app.post("/v1/batch", &source.write_key, &json!({"batch": too_many}))
            .await,
        400,
        "too_many_events",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("2500"));
    let exactly: Vec<Value> = (0..2_500)
        .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": i.to_string()}))
        .collect();
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": exactly}))
        .await;

    let oversize: Vec<Value> = (0..20).map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("o{i}"), "properties": {"pad": "y".repeat(30_000)}})).collect();
    let error = assert_error(
        app.post("/v1/batch", &source.write_key, &json!({"batch": oversize}))
            .await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("512000"));
    let single = json!({"userId": "u", "event": "E", "properties": {"pad": "z".repeat(40_000)}});
    let error = assert_error(
        app.post("/v1/track", &source.write_key, &single).await,
        400,
        "event_too_large",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("32768"));
    // With the key only in the body, an oversize event is still a 400 naming the limit.
    let body_key = json!({"writeKey": source.write_key, "userId": "u", "event": "E", "properties": {"pad": "z".repeat(40_000)}});
    let response = app
        .http
        .post(format!("{}/v1/track", app.base))
        .body(body_key.to_string())
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "event_too_large").await;
    assert_eq!(
        app.events(&source).await.len(),
        1000,
        "only the page limit of the 2,500 accepted"
    );
}

#[tokio::test]
async fn duplicates_are_acknowledged_and_stored_once_across_restarts() {
    let app = spawn().await;
    let source = app.create_source("dupes").await;
    for _ in 0..2 {
        app.post_ok(
            "/v1/batch",
            &source.write_key,
            &json!({"batch": [track("same"), track("same")]}),
        )
        .await;
    }
    assert_eq!(app.events(&source).await.len(), 1);
    let app = app.restart().await;
    app.post_ok("/v1/track", &source.write_key, &track("same"))
        .await;
    assert_eq!(app.events(&source).await.len(), 1);
    // Another source may use the same messageId.
    let other = app.create_source("other").await;
    app.post_ok("/v1/track", &other.write_key, &track("same"))
        .await;
    assert_eq!(app.events(&other).await.len(), 1);
}

#[tokio::test]
async fn dedupe_window_is_configurable() {
    let app = spawn_with(|c| c.collector.dedupe_window = "10m".into()).await;
    let source = app.create_source("window").await;
    app.post_ok("/v1/track", &source.write_key, &track("w"))
        .await;
    app.clock.advance(chrono::Duration::minutes(9));
    app.post_ok("/v1/track", &source.write_key, &track("w"))
        .await;
    assert_eq!(app.events(&source).await.len(), 1);
    app.clock.advance(chrono::Duration::minutes(2));
    app.post_ok("/v1/track", &source.write_key, &track("w"))
        .await;
    assert_eq!(app.events(&source).await.len(), 2);
}

#[tokio::test]
async fn rate_limited_sources_get_429_with_both_headers() {
    let app = spawn().await;
    let source = app.create_source("limited").await;
    let patched = app
        .http
        .patch(format!("{}/api/v1/sources/{}", app.base, source.id))
        .bearer_auth(TOKEN)
        .json(&json!({"rate_limit_per_second": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.post_ok("/v1/track", &source.write_key, &track("r1"))
        .await;
    app.post_ok("/v1/track", &source.write_key, &track("r2"))
        .await;
    let limited = app.post("/v1/track", &source.write_key, &track("r3")).await;
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()["x-ratelimit-reset"], "1");
    assert_error(limited, 429, "rate_limited").await;
    app.clock.advance(chrono::Duration::seconds(1));
    app.post_ok("/v1/track", &source.write_key, &track("r3"))
        .await;
    assert_eq!(
        app.events(&source).await.len(),
        3,
        "nothing of the refused request was stored"
    );
}

#[tokio::test]
async fn a_log_that_cannot_persist_answers_503_never_200() {
    let app = spawn().await;
    let source = app.create_source("closing").await;
    app.server.log.close().await;
    let response = app
        .post("/v1/track", &source.write_key, &track("lost?"))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, 503, "unavailable").await;
}

#[tokio::test]
async fn admin_api_requires_the_token() {
    let app = spawn().await;
    let response = app
        .http
        .get(format!("{}/api/v1/sources", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .http
        .get(format!("{}/api/v1/sources", app.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .http
        .post(format!("{}/api/v1/sources", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "", "kind": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["fields"],
        json!(["name"])
    );
    app.create_source("dup").await;
    let response = app
        .http
        .post(format!("{}/api/v1/sources", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "dup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
}
