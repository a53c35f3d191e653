//! Every v2 rejection rule: in a batch the bad op gets a 207 error with its `batch_index` while
//! its valid neighbours are accepted; on `/entity` the same op gets a 400 without `batch_index`.

mod common;

use common::{accepted_ops, batch, post, send, start};
use serde_json::{json, Map, Value};

fn identify(id: &str) -> Value {
    json!({"type":"person","action":"identify","identifiers":{"id":id},"attributes":{"plan":"pro"}})
}

fn event(name: &str) -> Value {
    json!({"type":"person","action":"event","identifiers":{"id":"u1"},"name":name,"timestamp":1_704_164_645,"attributes":{"x":1}})
}

/// In a batch `[valid, bad, valid]`: 207, one error at index 1 on `field`, both valid ops
/// accepted. Returns the error.
async fn assert_batch_rejects(bad: &Value, field: &str) -> Value {
    let server = start().await;
    let good = [identify("before"), event("After")];
    let r = batch(&server, &[good[0].clone(), bad.clone(), good[1].clone()]).await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some(common::JSON_UTF8));
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{}", r.body);
    let error = errors[0].clone();
    assert_eq!(error["batch_index"], 1, "{}", r.body);
    assert_eq!(error["field"], field, "{}", r.body);
    assert!(
        error["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.body
    );
    assert!(
        error["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.body
    );
    assert_eq!(accepted_ops(&server), good.to_vec());
    assert!(server.accepted().iter().all(|a| a.api == "v2"));
    server.shutdown().await;
    error
}

/// On `/entity`: 400 with one error (no `batch_index`) whose field is `field`; nothing accepted.
async fn assert_entity_rejects(bad: &Value, field: &str) -> Value {
    let server = start().await;
    let r = post(&server, "/api/v2/entity", bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{}", r.body);
    assert!(errors[0].get("batch_index").is_none(), "{}", r.body);
    assert_eq!(errors[0]["field"], field, "{}", r.body);
    assert!(server.accepted().is_empty());
    server.shutdown().await;
    errors[0].clone()
}

async fn assert_rejected(bad: Value, field: &str) {
    assert_batch_rejects(&bad, field).await;
    assert_entity_rejects(&bad, field).await;
}

async fn assert_entity_accepts(op: Value) {
    let server = start().await;
    post(&server, "/api/v2/entity", &op).await.assert_ok();
    assert_eq!(accepted_ops(&server), vec![op]);
    server.shutdown().await;
}

#[tokio::test]
async fn all_valid_batch_is_200_and_accepted_in_order() {
    let server = start().await;
    let ops = vec![
        identify("u1"),
        event("Signed Up"),
        json!({"type":"person","action":"page","identifiers":{"anonymous_id":"a1"},"name":"https://x/y","id":"ajs-1"}),
        json!({"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"acme"},"attributes":{"name":"Acme"}}),
        json!({"type":"person","action":"merge","primary":{"id":"u1"},"secondary":{"email":"old@x"}}),
        json!({"type":"delivery","action":"event","identifiers":{"id":"dlv-1"},"name":"opened"}),
    ];
    batch(&server, &ops).await.assert_ok();
    assert_eq!(accepted_ops(&server), ops);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_type() {
    let mut op = identify("u1");
    op["type"] = json!("account");
    assert_rejected(op, "type").await;
}

#[tokio::test]
async fn action_not_allowed_for_the_type() {
    assert_rejected(
        json!({"type":"object","action":"event","identifiers":{"object_type_id":"1","object_id":"o"},"name":"n"}),
        "action",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"identify_anonymous","identifiers":{"id":"u1"}}),
        "action",
    )
    .await;
    assert_rejected(
        json!({"type":"delivery","action":"identify","identifiers":{"id":"d"}}),
        "action",
    )
    .await;
}

#[tokio::test]
async fn zero_identifiers() {
    let mut op = identify("u1");
    op["identifiers"] = json!({});
    assert_rejected(op, "identifiers").await;
}

#[tokio::test]
async fn two_identifiers() {
    let mut op = event("E");
    op["identifiers"] = json!({"id":"u1","email":"u1@example.com"});
    assert_rejected(op, "identifiers").await;
}

#[tokio::test]
async fn identify_with_only_anonymous_id() {
    let mut op = identify("u1");
    op["identifiers"] = json!({"anonymous_id":"anon-1"});
    assert_rejected(op, "identifiers.anonymous_id").await;
    // ...while an event by anonymous_id is fine.
    let mut ok = event("Viewed");
    ok["identifiers"] = json!({"anonymous_id":"anon-1"});
    assert_entity_accepts(ok).await;
}

#[tokio::test]
async fn device_and_delete_actions_need_a_strong_identifier() {
    for op in [
        json!({"type":"person","action":"delete","identifiers":{"anonymous_id":"a"}}),
        json!({"type":"person","action":"suppress","identifiers":{"phone":"+15551234567"}}),
        json!({"type":"person","action":"delete_device","identifiers":{"anonymous_id":"a"},"device":{"token":"t"}}),
    ] {
        let field = format!(
            "identifiers.{}",
            op["identifiers"]
                .as_object()
                .and_then(|m| m.keys().next())
                .cloned()
                .unwrap_or_default()
        );
        assert_rejected(op, &field).await;
    }
}

#[tokio::test]
async fn timestamp_in_milliseconds() {
    let mut op = event("E");
    op["timestamp"] = json!(1_704_164_645_000_i64);
    let e = assert_entity_rejects(&op, "timestamp").await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("milliseconds")),
        "{e}"
    );
    assert_batch_rejects(&op, "timestamp").await;
    // The boundary itself is still seconds.
    op["timestamp"] = json!(10_000_000_000_i64);
    assert_entity_accepts(op).await;
}

#[tokio::test]
async fn timestamp_as_float() {
    let mut op = event("E");
    op["timestamp"] = json!(1_704_164_645.5);
    assert_rejected(op, "timestamp").await;
}

#[tokio::test]
async fn timestamp_as_string() {
    let mut op = identify("u1");
    op["timestamp"] = json!("2024-01-02T03:04:05Z");
    assert_rejected(op.clone(), "timestamp").await;
    op["timestamp"] = json!("1704164645");
    assert_rejected(op, "timestamp").await;
}

#[tokio::test]
async fn created_at_in_milliseconds() {
    let mut op = identify("u1");
    op["attributes"]["created_at"] = json!(1_704_164_645_000_i64);
    assert_rejected(op, "attributes.created_at").await;
}

#[tokio::test]
async fn missing_name() {
    let mut op = event("E");
    if let Some(m) = op.as_object_mut() {
        m.remove("name");
    }
    assert_rejected(op, "name").await;
    let mut blank = event("E");
    blank["name"] = json!("   ");
    assert_rejected(blank, "name").await;
}

#[tokio::test]
async fn name_longer_than_100_bytes() {
    assert_rejected(event(&"n".repeat(101)), "name").await;
    // 100 bytes is the limit, multi-byte characters count by bytes.
    assert_entity_accepts(event(&"n".repeat(100))).await;
    assert_rejected(event(&"é".repeat(51)), "name").await;
}

#[tokio::test]
async fn non_string_event_id() {
    let mut op = event("E");
    op["id"] = json!(12345);
    assert_rejected(op, "id").await;
}

#[tokio::test]
async fn event_data_over_100000_bytes() {
    let mut op = event("Big");
    op["attributes"] = json!({ "blob": "x".repeat(100_000) });
    let e = assert_batch_rejects(&op, "attributes").await;
    assert_eq!(e["reason"], "too large");
    // On /entity the request is over the 32 KB body limit before any field is looked at.
    let server = start().await;
    let r = post(&server, "/api/v2/entity", &op).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.errors()[0]["reason"], "request too large");
    assert!(server.accepted().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn more_than_300_attributes() {
    let attrs =
        |n: usize| -> Map<String, Value> { (0..n).map(|i| (format!("a{i}"), json!(i))).collect() };
    let mut op = identify("u1");
    op["attributes"] = Value::Object(attrs(301));
    let e = assert_batch_rejects(&op, "attributes").await;
    assert_eq!(e["reason"], "too many");
    assert_entity_rejects(&op, "attributes").await;
    op["attributes"] = Value::Object(attrs(300));
    assert_entity_accepts(op).await;
}

#[tokio::test]
async fn attribute_name_of_151_bytes() {
    let name = "k".repeat(151);
    let mut op = identify("u1");
    op["attributes"] = json!({ name.clone(): "v" });
    assert_rejected(op, &format!("attributes.{name}")).await;
    let mut ok = identify("u1");
    ok["attributes"] = json!({ "k".repeat(150): "v" });
    assert_entity_accepts(ok).await;
}

#[tokio::test]
async fn attribute_value_of_1001_bytes() {
    let mut op = identify("u1");
    op["attributes"] = json!({ "bio": "v".repeat(1001) });
    assert_rejected(op, "attributes.bio").await;
    // Non-string values count by their serialized size.
    let mut nested = identify("u1");
    nested["attributes"] = json!({ "tags": vec!["abcdefgh"; 100] });
    assert_rejected(nested, "attributes.tags").await;
    let mut ok = identify("u1");
    ok["attributes"] = json!({ "bio": "v".repeat(1000) });
    assert_entity_accepts(ok).await;
}

#[tokio::test]
async fn add_device_without_token() {
    assert_rejected(
        json!({"type":"person","action":"add_device","identifiers":{"id":"u1"},"device":{"platform":"ios"}}),
        "device.token",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"delete_device","identifiers":{"id":"u1"},"device":{}}),
        "device.token",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"add_device","identifiers":{"id":"u1"}}),
        "device",
    )
    .await;
}

#[tokio::test]
async fn add_device_with_bad_platform() {
    let op = |platform: Value| json!({"type":"person","action":"add_device","identifiers":{"id":"u1"},"device":{"token":"t","platform":platform}});
    assert_rejected(op(json!("windows")), "device.platform").await;
    assert_rejected(op(json!("iOS")), "device.platform").await;
    assert_rejected(
        json!({"type":"person","action":"add_device","identifiers":{"id":"u1"},"device":{"token":"t"}}),
        "device.platform",
    )
    .await;
    assert_entity_accepts(op(json!("android"))).await;
}

#[tokio::test]
async fn add_device_with_string_last_used() {
    assert_rejected(
        json!({"type":"person","action":"add_device","identifiers":{"id":"u1"},"device":{"token":"t","platform":"ios","last_used":"1704164645"}}),
        "device.last_used",
    )
    .await;
}

#[tokio::test]
async fn merge_with_two_keys_in_primary() {
    assert_rejected(
        json!({"type":"person","action":"merge","primary":{"id":"u1","email":"u1@x"},"secondary":{"id":"u2"}}),
        "primary",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"merge","primary":{"id":"u1"},"secondary":{"anonymous_id":"a"}}),
        "secondary.anonymous_id",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"merge","identifiers":{"id":"u1"},"primary":{"id":"u1"},"secondary":{"id":"u2"}}),
        "identifiers",
    )
    .await;
}

#[tokio::test]
async fn object_identifier_rules() {
    assert_rejected(
        json!({"type":"object","action":"identify","identifiers":{"object_type_id":"company","object_id":"acme"}}),
        "identifiers.object_type_id",
    )
    .await;
    assert_rejected(
        json!({"type":"object","action":"delete","identifiers":{"id":"acme"}}),
        "identifiers",
    )
    .await;
    assert_rejected(
        json!({"type":"person","action":"event","identifiers":{"id":"i".repeat(151)},"name":"E"}),
        "identifiers.id",
    )
    .await;
}

#[tokio::test]
async fn relationship_actions_need_relationships() {
    assert_rejected(
        json!({"type":"object","action":"add_relationships","identifiers":{"object_type_id":"1","object_id":"o"},"cio_relationships":[]}),
        "cio_relationships",
    )
    .await;
    assert_rejected(
        json!({"type":"object","action":"identify_anonymous","identifiers":{"object_type_id":"1","object_id":"o"},"cio_relationships":[{"identifiers":{"id":"u1"}}]}),
        "cio_relationships.0.identifiers.id",
    )
    .await;
}

#[tokio::test]
async fn item_over_32_kib() {
    let mut op = event("Big");
    op["attributes"] = json!({ "blob": "x".repeat(33 * 1024) });
    let e = assert_batch_rejects(&op, "").await;
    assert_eq!(e["reason"], "item too large");
    let server = start().await;
    let r = post(&server, "/api/v2/entity", &op).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.errors()[0]["reason"], "request too large");
    server.shutdown().await;
    // Just under the item limit is fine.
    let mut ok = event("Big");
    ok["attributes"] = json!({ "blob": "x".repeat(31 * 1024) });
    let server = start().await;
    batch(&server, &[ok]).await.assert_ok();
    assert_eq!(server.accepted().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn request_over_500_kb() {
    let server = start().await;
    let item = |i: usize| {
        let mut op = event("Chunk");
        op["attributes"] = json!({ "blob": "x".repeat(30_000), "i": i });
        op
    };
    let ops: Vec<Value> = (0..17).map(item).collect(); // ~510 KB
    let body = json!({ "batch": ops }).to_string();
    assert!(body.len() > 500_000);
    let r = send(&server, "POST", "/api/v2/batch", body).await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(300)]);
    let errors = r.errors();
    assert_eq!(errors[0]["reason"], "request too large");
    assert!(errors[0].get("batch_index").is_none());
    assert!(server.accepted().is_empty());
    // 16 of them (~480 KB) are accepted.
    let ops: Vec<Value> = (0..16).map(item).collect();
    batch(&server, &ops).await.assert_ok();
    assert_eq!(server.accepted().len(), 16);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_json() {
    let server = start().await;
    for path in ["/api/v2/batch", "/api/v2/entity"] {
        let r = send(&server, "POST", path, r#"{"batch":[{"type":"person""#).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let errors = r.errors();
        assert_eq!(errors[0]["reason"], "malformed json", "{path}");
        assert!(errors[0].get("batch_index").is_none());
        let r = send(&server, "POST", path, "[1,2]").await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let r = send(&server, "POST", path, "").await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    for body in [r#"{"ops":[]}"#, r#"{"batch":{"type":"person"}}"#] {
        let r = send(&server, "POST", "/api/v2/batch", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.errors()[0]["field"], "batch");
    }
    // A batch item that is not an object is a per-item error.
    let r = batch(&server, &[json!("nope"), identify("u1")]).await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.errors()[0]["batch_index"], 0);
    assert_eq!(accepted_ops(&server), vec![identify("u1")]);
    server.shutdown().await;
}

#[tokio::test]
async fn several_bad_items_each_get_their_index() {
    let server = start().await;
    let mut bad_ts = event("E");
    bad_ts["timestamp"] = json!(1.5);
    let ops = [
        json!({"type":"nope"}),
        identify("u1"),
        bad_ts,
        event("Fine"),
        json!({"type":"person","action":"event","identifiers":{"id":"u1"}}),
    ];
    let r = batch(&server, &ops).await;
    assert_eq!(r.status, 207);
    let got: Vec<(u64, String)> = r
        .errors()
        .iter()
        .map(|e| {
            (
                e["batch_index"].as_u64().unwrap_or(99),
                e["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "type".into()),
            (2, "timestamp".into()),
            (4, "name".into())
        ]
    );
    assert_eq!(accepted_ops(&server), vec![identify("u1"), event("Fine")]);
    server.shutdown().await;
}
