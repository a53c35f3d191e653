//! The v1 endpoints, checked against captures of the official clients (customerio-node 4.4.0,
//! customerio PyPI 3.2.0; copied from the wire fixtures) and the shapes other clients send.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{accepted_ops, send, send_raw, start, JSON_UTF8};
use serde_json::{json, Value};
use sluice_testkit::{CioTestServer, Scripted};

const NODE: &str = include_str!("fixtures/customerio-node.json");
const PYTHON: &str = include_str!("fixtures/customerio-python.json");

fn scenario(capture: &str, name: &str) -> Vec<Value> {
    let capture: Value = serde_json::from_str(capture).expect("capture JSON");
    capture["scenarios"][name]["requests"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no requests in scenario {name}"))
}

/// Headers to replay: everything captured except what the HTTP client must set itself.
fn replay_headers(request: &Value) -> Vec<(String, String)> {
    request["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|h| Some((h[0].as_str()?.to_owned(), h[1].as_str()?.to_owned())))
                .filter(|(name, _)| {
                    !["host", "content-length", "connection"]
                        .contains(&name.to_ascii_lowercase().as_str())
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn replay(server: &CioTestServer, request: &Value) -> common::Resp {
    let headers = replay_headers(request);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send_raw(
        &server.url(),
        request["method"].as_str().expect("method"),
        request["path"].as_str().expect("path"),
        &headers,
        request["body_text"].as_str().unwrap_or("").to_owned(),
    )
    .await
}

/// How many ops a captured request stands for.
fn op_count(request: &Value) -> usize {
    match request["body_json"]["batch"].as_array() {
        Some(batch) if request["path"] == "/api/v2/batch" => batch.len(),
        _ => 1,
    }
}

async fn replay_ok_scenario(capture: &str) -> CioTestServer {
    let server = start().await;
    let requests = scenario(capture, "ok");
    assert!(requests.len() >= 15);
    for request in &requests {
        assert!(
            request["headers"]
                .to_string()
                .contains("Basic U0lURV9JRF9URVNUOkFQSV9LRVlfVEVTVA=="),
            "the capture carries the test credentials"
        );
        let r = replay(&server, request).await;
        let expected = request["response_status"]
            .as_u64()
            .expect("response_status");
        let what = format!("{} {}", request["method"], request["path"]);
        assert_eq!(u64::from(r.status), expected, "{what}: {}", r.body);
        if expected == 200 {
            assert_eq!(r.body, "{}", "{what}");
            assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8), "{what}");
        }
    }
    let expected_ops: usize = requests.iter().map(op_count).sum();
    assert_eq!(server.accepted().len(), expected_ops);
    assert!(server.duplicate_event_ids().is_empty());
    let recorded: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    let captured: Vec<String> = requests
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(recorded, captured);
    server
}

fn find<'a>(ops: &'a [Value], action: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    ops.iter()
        .find(|op| op["action"] == action && pred(op))
        .unwrap_or_else(|| panic!("no accepted {action} op matching in {ops:#?}"))
}

/// What the v1 calls of both clients turn into.
fn assert_common_mapping(ops: &[Value]) {
    let identify = find(ops, "identify", |op| {
        op["identifiers"] == json!({"id":"user-123"})
    });
    assert_eq!(identify["type"], "person");
    assert_eq!(identify["attributes"]["created_at"], 1_704_164_645);
    assert_eq!(identify["attributes"]["address"]["city"], "Berlin");
    find(ops, "identify", |op| {
        op["identifiers"] == json!({"email":"jane@example.com"})
    });
    // %2F, %20 and %2B in the path are decoded.
    find(ops, "identify", |op| {
        op["identifiers"] == json!({"id":"user/with space+plus"})
    });
    let tracked = find(ops, "event", |op| op["id"] == "01HXYZEVENTID0000000000000");
    assert_eq!(tracked["timestamp"], 1_704_164_645);
    assert_eq!(tracked["attributes"], json!({"revenue":1}));
    let anon = find(ops, "event", |op| {
        op["identifiers"] == json!({"anonymous_id":"anon-only-999"})
    });
    assert_eq!(anon["name"], "Anonymous Event");
    let page = find(ops, "page", |_| true);
    assert_eq!(page["name"], "https://example.com/pricing");
    let device = find(ops, "add_device", |_| true);
    assert_eq!(device["device"]["token"], "device-token-abc");
    assert_eq!(device["device"]["platform"], "ios");
    assert_eq!(device["device"]["last_used"], 1_704_164_645);
    assert_eq!(device["device"]["attributes"]["app_version"], "1.2.3");
    let deleted = find(ops, "delete_device", |_| true);
    assert_eq!(deleted["device"], json!({"token":"device-token-abc"}));
    for action in ["suppress", "unsuppress", "delete"] {
        find(ops, action, |op| {
            op["identifiers"] == json!({"id":"user-123"})
        });
    }
    let merge = find(ops, "merge", |_| true);
    assert_eq!(merge["primary"], json!({"id":"user-123"}));
    assert_eq!(merge["secondary"], json!({"email":"old@example.com"}));
}

#[tokio::test]
async fn node_client_ok_scenario_replays_to_200() {
    let server = replay_ok_scenario(NODE).await;
    let ops = accepted_ops(&server);
    assert_common_mapping(&ops);
    assert!(server.accepted().iter().all(|a| a.api == "v1"));
    let push = find(&ops, "event", |op| op["type"] == "delivery");
    assert_eq!(push["identifiers"], json!({"id":"dlv-1"}));
    assert_eq!(push["name"], "opened");
    assert_eq!(
        push["attributes"],
        json!({"device_token":"device-token-abc"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn python_client_ok_scenario_replays_to_200() {
    let server = replay_ok_scenario(PYTHON).await;
    let ops = accepted_ops(&server);
    assert_common_mapping(&ops);
    // The v2 batch passes through unchanged.
    let v2: Vec<Value> = server
        .accepted()
        .into_iter()
        .filter(|a| a.api == "v2")
        .map(|a| a.op)
        .collect();
    let batch = scenario(PYTHON, "ok")
        .into_iter()
        .find(|r| r["path"] == "/api/v2/batch")
        .expect("batch request");
    assert_eq!(Some(&v2), batch["body_json"]["batch"].as_array());
    server.shutdown().await;
}

#[tokio::test]
async fn both_clients_on_one_server_dedupe_the_event_id() {
    let server = start().await;
    for capture in [NODE, PYTHON] {
        for request in scenario(capture, "ok") {
            replay(&server, &request).await.assert_ok();
        }
    }
    assert_eq!(
        server.duplicate_event_ids(),
        vec!["01HXYZEVENTID0000000000000"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failure_scenarios_replay_with_scripted_statuses() {
    for capture in [NODE, PYTHON] {
        for name in ["status-500", "status-429-retry-after-2", "status-400"] {
            let server = start().await;
            let requests = scenario(capture, name);
            for request in &requests {
                let status = request["response_status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .expect("status");
                let retry_after = (status == 429).then_some(2);
                server.push_responses([Scripted::Status {
                    status,
                    retry_after,
                    body: None,
                }]);
                let r = replay(&server, request).await;
                assert_eq!(r.status, status, "{name}");
                assert_eq!(r.retry_after.as_deref(), retry_after.map(|_| "2"), "{name}");
                // Node needs a JSON body with meta.error to report something useful.
                assert!(r.json()["meta"]["error"].is_string(), "{name}: {}", r.body);
            }
            assert!(server.accepted().is_empty(), "{name}");
            assert_eq!(server.requests().len(), requests.len());
            server.shutdown().await;
        }
    }
}

#[tokio::test]
async fn lenient_shapes_of_other_clients() {
    let server = start().await;
    // Go: URL-safe base64 auth, last_used as a string, attributes null.
    let go_auth = format!(
        "Basic {}",
        URL_SAFE_NO_PAD.encode("SITE_ID_TEST:API_KEY_TEST")
    );
    let r = send_raw(
        &server.url(),
        "PUT",
        "/api/v1/customers/go-user/devices",
        &[("authorization", &go_auth), ("content-type", "application/json")],
        r#"{"device":{"id":"tok-go","platform":"android","last_used":"1704164645","attributes":null}}"#,
    )
    .await;
    r.assert_ok();
    // Python: extra keys flat inside device, DELETE with a {} body.
    send(
        &server,
        "PUT",
        "/api/v1/customers/py/devices",
        r#"{"device":{"app_version":"2","id":"tok-py","platform":"ios"}}"#,
    )
    .await
    .assert_ok();
    send(
        &server,
        "DELETE",
        "/api/v1/customers/py/devices/tok%2Fpy",
        "{}",
    )
    .await
    .assert_ok();
    send(&server, "DELETE", "/api/v1/customers/py", "")
        .await
        .assert_ok();
    send(
        &server,
        "POST",
        "/api/v1/customers/cio_0300001/suppress",
        "",
    )
    .await
    .assert_ok();
    let ops = accepted_ops(&server);
    assert_eq!(
        ops[0]["device"],
        json!({"token":"tok-go","platform":"android","last_used":1_704_164_645})
    );
    assert_eq!(ops[1]["device"]["attributes"], json!({"app_version":"2"}));
    assert_eq!(ops[2]["device"], json!({"token":"tok/py"}));
    assert_eq!(ops[3]["action"], "delete");
    assert_eq!(ops[4]["identifiers"], json!({"cio_id":"0300001"}));
    server.shutdown().await;
}

async fn assert_v1_400(server: &CioTestServer, method: &str, path: &str, body: &str, needle: &str) {
    let r = send(server, method, path, body.to_owned()).await;
    assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.body);
    assert_eq!(r.content_type.as_deref(), Some(JSON_UTF8));
    let text = r.json()["meta"]["errors"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains(needle), "{text:?} should mention {needle:?}");
}

#[tokio::test]
async fn v1_rejections() {
    let server = start().await;
    let events = "/api/v1/customers/u1/events";
    assert_v1_400(&server, "POST", events, r#"{"data":{}}"#, "name").await;
    assert_v1_400(
        &server,
        "POST",
        "/api/v1/events",
        r#"{"anonymous_id":"a"}"#,
        "name",
    )
    .await;
    assert_v1_400(
        &server,
        "POST",
        events,
        &json!({"name":"n".repeat(101)}).to_string(),
        "name",
    )
    .await;
    assert_v1_400(
        &server,
        "POST",
        events,
        r#"{"name":"E","timestamp":1704164645000}"#,
        "milliseconds",
    )
    .await;
    assert_v1_400(
        &server,
        "POST",
        events,
        r#"{"name":"E","timestamp":"1704164645"}"#,
        "timestamp",
    )
    .await;
    assert_v1_400(
        &server,
        "POST",
        events,
        r#"{"name":"E","type":"click"}"#,
        "type",
    )
    .await;
    assert_v1_400(&server, "POST", events, "{not json", "malformed").await;
    assert_v1_400(
        &server,
        "POST",
        "/api/v1/events",
        r#"{"name":"invite"}"#,
        "recipient",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        "/api/v1/customers/u1/devices",
        r#"{"device":{"platform":"ios"}}"#,
        "device.id",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        "/api/v1/customers/u1/devices",
        r#"{"device":{"id":"t","platform":"web"}}"#,
        "platform",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        "/api/v1/customers/u1/devices",
        r#"{"device":{"id":"t","platform":"ios","last_used":"yesterday"}}"#,
        "last_used",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        "/api/v1/customers/u1",
        r#"{"created_at":"2024-01-01"}"#,
        "created_at",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        "/api/v1/customers/u1",
        &json!({"bio":"v".repeat(1001)}).to_string(),
        "bio",
    )
    .await;
    assert_v1_400(
        &server,
        "PUT",
        &format!("/api/v1/customers/{}", "i".repeat(151)),
        "{}",
        "customer id",
    )
    .await;
    assert_v1_400(&server, "PUT", "/api/v1/customers/bad%zz", "{}", "percent").await;
    assert_v1_400(
        &server,
        "POST",
        "/api/v1/push/events",
        r#"{"delivery_id":"d","device_id":"t","event":"bounced"}"#,
        "event",
    )
    .await;
    // Event data: 100,000 bytes serialized is the limit.
    let data = |n: usize| json!({"name":"E","data":{"blob":"x".repeat(n - 11)}}).to_string(); // {"blob":"…"} = n bytes
    send(&server, "POST", events, data(100_000))
        .await
        .assert_ok();
    assert_v1_400(&server, "POST", events, &data(100_001), "data").await;
    // merge_customers documents the single-error shape.
    let r = send(
        &server,
        "POST",
        "/api/v1/merge_customers",
        r#"{"primary":{"id":"a","email":"b"},"secondary":{"id":"c"}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["meta"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("primary")),
        "{}",
        r.body
    );
    assert_eq!(server.accepted().len(), 1, "only the 100,000-byte event");
    // Unknown endpoints are 404.
    assert_eq!(
        send(&server, "POST", "/api/v1/customers/u1/wat", "{}")
            .await
            .status,
        404
    );
    server.shutdown().await;
}
