//! The mapping table, row by row.

use super::*;
use crate::ResolvedIdentity;
use sluice_core::Event;
use std::time::Duration;

fn destination() -> CustomerIo {
    CustomerIo::from_config(
        &json!({"site_id": "site", "api_key": "key"}),
        &BuildContext::new(Duration::from_secs(1)),
    )
    .expect("valid config")
}

const TS: &str = "2026-12-04T10:00:00.000Z";
const TS_UNIX: i64 = 1_796_378_400;

/// Maps `event` (a JSON object; `timestamp` and `messageId` are filled in) with the identity
/// the router would resolve from its own ids, plus `linked_user`.
fn map_with(event: Value, linked_user: Option<&str>, alias: Option<AliasKind>) -> Mapped {
    let mut fields = event.as_object().cloned().expect("object");
    fields.entry("timestamp").or_insert(TS.into());
    fields.entry("messageId").or_insert("m-1".into());
    let event = Event::from_normalised(fields.clone());
    let identity = ResolvedIdentity {
        user_id: event.user_id().or(linked_user).map(str::to_owned),
        anonymous_id: event.anonymous_id().map(str::to_owned),
        alias,
    };
    destination().map(&DeliveryEvent {
        seq: 1,
        source_id: "src_1",
        event: &event,
        fields: &fields,
        identity: &identity,
    })
}

fn ops(mapped: Mapped) -> Vec<Value> {
    match mapped {
        Mapped::Ops { ops, .. } => ops
            .iter()
            .map(|op| serde_json::from_str(&op.json).expect("op JSON"))
            .collect(),
        other => panic!("expected ops, got {other:?}"),
    }
}

fn one_op(event: Value) -> Value {
    let mut all = ops(map_with(event, None, None));
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn skip_reason(mapped: Mapped) -> String {
    match mapped {
        Mapped::Skip { reason } => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[test]
fn identify_maps_traits_email_created_at_and_anonymous_id() {
    let op = one_op(json!({
        "type": "identify", "userId": "abc123", "anonymousId": "anon-1",
        "traits": {"full_name": "Jane", "email": "jane@example.com",
                   "createdAt": "2026-01-01T00:00:00Z",
                   "person": {"over18": true, "birthdate": "2000-02-03"}}
    }));
    assert_eq!(
        op,
        json!({
            "type": "person", "action": "identify", "identifiers": {"id": "abc123"},
            "timestamp": TS_UNIX,
            "attributes": {"full_name": "Jane", "email": "jane@example.com",
                           "created_at": 1_767_225_600,
                           "person": {"over18": true, "birthdate": 949_536_000},
                           "anonymous_id": "anon-1"}
        })
    );
}

#[test]
fn identify_without_user_id_uses_the_email_else_is_skipped() {
    let op = one_op(json!({"type": "identify", "anonymousId": "a", "traits": {"email": "x@y.io"}}));
    assert_eq!(op["identifiers"], json!({"email": "x@y.io"}));
    assert_eq!(op["attributes"]["anonymous_id"], "a");
    let reason = skip_reason(map_with(
        json!({"type": "identify", "anonymousId": "a", "traits": {"plan": "pro"}}),
        None,
        None,
    ));
    assert!(reason.contains("userId or traits.email"), "{reason}");
}

#[test]
fn identifier_rules_cio_prefix_email_and_id() {
    assert_eq!(
        person_identifiers("cio_03000001").unwrap(),
        json!({"cio_id": "03000001"})
    );
    assert_eq!(
        person_identifiers("jane@example.com").unwrap(),
        json!({"email": "jane@example.com"})
    );
    assert_eq!(person_identifiers("42").unwrap(), json!({"id": "42"}));
    assert_eq!(
        person_identifiers("not an@email").unwrap(),
        json!({"id": "not an@email"})
    );
    assert_eq!(person_identifiers("cio_").unwrap(), json!({"id": "cio_"}));
    assert!(person_identifiers(&"x".repeat(151)).is_err());
}

#[test]
fn track_is_an_event_with_a_deterministic_ulid() {
    let event = json!({"type": "track", "userId": "u1", "event": "Order Completed",
                       "properties": {"total": 30, "at": "2026-12-01T00:00:00Z"}});
    let op = one_op(event.clone());
    assert_eq!(op["type"], "person");
    assert_eq!(op["action"], "event");
    assert_eq!(op["identifiers"], json!({"id": "u1"}));
    assert_eq!(op["name"], "Order Completed");
    assert_eq!(op["timestamp"], TS_UNIX);
    assert_eq!(op["attributes"], json!({"total": 30, "at": 1_796_083_200}));
    let expected_id = crate::ulid::event_ulid(TS_UNIX * 1000, "src_1", "m-1");
    assert_eq!(op["id"], expected_id.as_str());
    assert_eq!(
        one_op(event)["id"],
        expected_id.as_str(),
        "a resend carries the same id"
    );
}

#[test]
fn anonymous_events_use_the_anonymous_id_until_a_link_is_known() {
    let event = json!({"type": "track", "anonymousId": "anon-9", "event": "Viewed"});
    assert_eq!(
        one_op(event.clone())["identifiers"],
        json!({"anonymous_id": "anon-9"})
    );
    let linked = ops(map_with(event, Some("user-9"), None));
    assert_eq!(linked[0]["identifiers"], json!({"id": "user-9"}));
}

#[test]
fn page_is_named_by_properties_url_then_context_url_then_name() {
    let op = one_op(json!({"type": "page", "userId": "u", "name": "Home",
        "properties": {"url": "https://a.io/x", "title": "X"},
        "context": {"page": {"url": "https://a.io/ctx"}}}));
    assert_eq!(
        (op["action"].as_str(), op["name"].as_str()),
        (Some("page"), Some("https://a.io/x"))
    );
    assert_eq!(op["attributes"]["title"], "X");
    let op = one_op(
        json!({"type": "page", "userId": "u", "name": "Home", "context": {"page": {"url": "https://a.io/ctx"}}}),
    );
    assert_eq!(op["name"], "https://a.io/ctx");
    let op = one_op(json!({"type": "page", "userId": "u", "name": "Home"}));
    assert_eq!(op["name"], "Home");
    assert!(
        skip_reason(map_with(json!({"type": "page", "userId": "u"}), None, None))
            .contains("page view")
    );
}

#[test]
fn screen_is_a_screen_view() {
    let op = one_op(
        json!({"type": "screen", "userId": "u", "name": "Settings", "properties": {"tab": 2}}),
    );
    assert_eq!(
        (op["action"].as_str(), op["name"].as_str()),
        (Some("screen"), Some("Settings"))
    );
    assert_eq!(op["attributes"], json!({"tab": 2}));
    assert!(op["id"].as_str().is_some_and(|id| id.len() == 26));
}

#[test]
fn group_is_an_object_with_a_relationship() {
    let op = one_op(json!({"type": "group", "userId": "u1", "groupId": "acme",
        "traits": {"name": "Acme", "objectTypeId": 2, "relationshipAttributes": {"role": "admin"}}}));
    assert_eq!(
        op,
        json!({"type": "object", "action": "identify",
               "identifiers": {"object_type_id": "2", "object_id": "acme"},
               "timestamp": TS_UNIX,
               "attributes": {"name": "Acme"},
               "cio_relationships": [{"identifiers": {"id": "u1"}, "relationship_attributes": {"role": "admin"}}]})
    );
    let op = one_op(json!({"type": "group", "anonymousId": "a1", "groupId": "acme"}));
    assert_eq!(op["action"], "identify_anonymous");
    assert_eq!(op["identifiers"]["object_type_id"], "1");
    assert_eq!(
        op["cio_relationships"],
        json!([{"identifiers": {"anonymous_id": "a1"}}])
    );
}

#[test]
fn alias_links_an_anonymous_id_or_merges_a_known_user() {
    let alias = json!({"type": "alias", "userId": "new-user", "previousId": "anon-7"});
    let link = ops(map_with(alias.clone(), None, Some(AliasKind::Link)));
    assert_eq!(
        link,
        vec![
            json!({"type": "person", "action": "identify", "identifiers": {"id": "new-user"},
                    "timestamp": TS_UNIX, "attributes": {"anonymous_id": "anon-7"}})
        ]
    );
    let merge = ops(map_with(alias, None, Some(AliasKind::Merge)));
    assert_eq!(merge.len(), 2, "identify the primary, then merge");
    assert_eq!(merge[0]["action"], "identify");
    assert_eq!(
        merge[1],
        json!({"type": "person", "action": "merge", "primary": {"id": "new-user"}, "secondary": {"id": "anon-7"}})
    );
}

#[test]
fn device_events_add_and_delete_devices() {
    let context = json!({"device": {"token": "tok-1", "type": "ios", "model": "iPhone16,1"}, "app": {"version": "3.2"}});
    for name in [
        "Application Installed",
        "Application Opened",
        "Device Created or Updated",
    ] {
        let op = one_op(json!({"type": "track", "userId": "u", "event": name, "context": context}));
        assert_eq!(op["action"], "add_device", "{name}");
        assert_eq!(op["device"]["token"], "tok-1");
        assert_eq!(op["device"]["platform"], "ios");
        assert_eq!(op["device"]["last_used"], TS_UNIX);
        assert_eq!(op["device"]["attributes"]["app_version"], "3.2");
        assert_eq!(op["device"]["attributes"]["device_model"], "iPhone16,1");
    }
    for name in ["Application Uninstalled", "Device Deleted"] {
        let op = one_op(json!({"type": "track", "userId": "u", "event": name, "context": context}));
        assert_eq!(op["action"], "delete_device");
        assert_eq!(op["device"], json!({"token": "tok-1"}));
    }
    let android = one_op(
        json!({"type": "track", "userId": "u", "event": "Application Opened",
        "context": {"device": {"token": "t", "type": "Android"}}}),
    );
    assert_eq!(android["device"]["platform"], "android");
    let no_token = skip_reason(map_with(
        json!({"type": "track", "userId": "u", "event": "Application Opened"}),
        None,
        None,
    ));
    assert!(no_token.contains("context.device.token"), "{no_token}");
    let anonymous = skip_reason(map_with(
        json!({"type": "track", "anonymousId": "a", "event": "Application Installed", "context": context}),
        None,
        None,
    ));
    assert!(anonymous.contains("userId"), "{anonymous}");
}

#[test]
fn user_lifecycle_events_delete_suppress_unsuppress() {
    for (name, action) in [
        ("User Deleted", "delete"),
        ("User Suppressed", "suppress"),
        ("User Unsuppressed", "unsuppress"),
    ] {
        let op = one_op(json!({"type": "track", "userId": "u5", "event": name}));
        assert_eq!(
            op,
            json!({"type": "person", "action": action, "identifiers": {"id": "u5"}}),
            "{name}"
        );
    }
}

#[test]
fn over_limit_fields_are_dropped_with_warnings() {
    let mut traits = Map::new();
    traits.insert("n".repeat(151), json!(1));
    traits.insert("big".into(), json!("v".repeat(1001)));
    for i in 0..305 {
        traits.insert(format!("a{i:03}"), json!(i));
    }
    let mapped = map_with(
        json!({"type": "identify", "userId": "u", "traits": traits}),
        None,
        None,
    );
    let Mapped::Ops { ops, warnings } = mapped else {
        panic!("ops")
    };
    let op: Value = serde_json::from_str(&ops[0].json).unwrap();
    let attributes = op["attributes"].as_object().unwrap();
    assert_eq!(attributes.len(), MAX_ATTRIBUTES);
    assert!(!attributes.contains_key("big"));
    assert!(
        warnings.iter().any(|w| w.contains("151 bytes")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("traits.big dropped")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("more than 300")),
        "{warnings:?}"
    );

    let long_name = "e".repeat(120);
    let Mapped::Ops { ops, warnings } = map_with(
        json!({"type": "track", "userId": "u", "event": long_name, "properties": {"blob": "x".repeat(20_000), "keep": 1}}),
        None,
        None,
    ) else {
        panic!("ops")
    };
    let op: Value = serde_json::from_str(&ops[0].json).unwrap();
    assert_eq!(op["name"].as_str().unwrap().len(), MAX_EVENT_NAME_BYTES);
    assert!(warnings.iter().any(|w| w.contains("name was cut")));
    assert_eq!(op["attributes"]["keep"], 1);
}

#[test]
fn event_data_over_100kb_drops_the_largest_fields() {
    let mut properties = Map::new();
    for i in 0..5 {
        properties.insert(format!("p{i}"), json!("x".repeat(30_000)));
    }
    properties.insert("small".into(), json!(1));
    let mut mapper = Mapper {
        convert_timestamps: true,
        warnings: Vec::new(),
    };
    let data = mapper.event_data(properties);
    assert!(Value::Object(data.clone()).to_string().len() <= MAX_EVENT_DATA_BYTES);
    assert_eq!(data.len(), 4, "two 30 KB fields had to go (150 KB → 90 KB)");
    assert!(data.contains_key("small"), "the largest go first");
    assert_eq!(mapper.warnings.len(), 2);
}

#[test]
fn an_item_too_large_for_customerio_is_rejected() {
    // 40 attributes of 900 bytes fit every per-field limit but not 32 KB per item.
    let traits: Map<String, Value> = (0..40)
        .map(|i| (format!("t{i}"), json!("y".repeat(900))))
        .collect();
    let mapped = map_with(
        json!({"type": "identify", "userId": "u", "traits": traits}),
        None,
        None,
    );
    assert!(matches!(mapped, Mapped::Reject { reason } if reason.contains("32768")));
}

#[test]
fn timestamps_convert_only_when_asked() {
    let plain = CustomerIo::from_config(
        &json!({"site_id": "s", "api_key": "k", "convert_timestamps": false}),
        &BuildContext::new(Duration::from_secs(1)),
    )
    .unwrap();
    let mut fields = json!({"type": "track", "userId": "u", "event": "E", "timestamp": TS, "messageId": "m",
                            "properties": {"at": "2026-12-01T00:00:00Z", "not_a_date": "2026-12-01 x"}})
        .as_object().cloned().unwrap();
    let event = Event::from_normalised(fields.clone());
    let identity = ResolvedIdentity {
        user_id: Some("u".into()),
        ..Default::default()
    };
    let Mapped::Ops { ops, .. } = plain.map(&DeliveryEvent {
        seq: 1,
        source_id: "s",
        event: &event,
        fields: &fields,
        identity: &identity,
    }) else {
        panic!()
    };
    assert!(
        ops[0].json.contains("\"at\":\"2026-12-01T00:00:00Z\""),
        "{}",
        ops[0].json
    );
    assert!(
        ops[0].json.contains(&format!("\"timestamp\":{TS_UNIX}")),
        "the event timestamp is always unix"
    );
    fields.clear();
    assert_eq!(iso_to_unix("2026-12-01 x"), None);
    assert_eq!(iso_to_unix("2026-12-01T00:00"), Some(1_796_083_200));
    assert_eq!(iso_to_unix("12/01/2026"), None);
}

#[test]
fn config_is_validated() {
    let context = BuildContext::new(Duration::from_secs(1));
    let error = |config: Value| {
        CustomerIo::from_config(&config, &context)
            .err()
            .expect("invalid")
            .field
    };
    assert_eq!(error(json!({"api_key": "k"})), "site_id");
    assert_eq!(error(json!({"site_id": "s"})), "api_key");
    assert_eq!(
        error(json!({"site_id": "s", "api_key": "k", "region": "asia"})),
        "region"
    );
    assert_eq!(
        error(json!({"site_id": "s", "api_key": "k", "track_url": "ftp://x"})),
        "track_url"
    );
    assert_eq!(
        error(json!({"site_id": "s", "api_key": "k", "batch_size": 0})),
        "batch_size"
    );
    let eu = CustomerIo::from_config(
        &json!({"site_id": "s", "api_key": "k", "region": "eu"}),
        &context,
    )
    .unwrap();
    assert_eq!(eu.base_url, "https://track-eu.customer.io");
    let local = CustomerIo::from_config(
        &json!({"site_id": "s", "api_key": "k", "track_url": "http://127.0.0.1:9/api/v1/"}),
        &context,
    )
    .unwrap();
    assert_eq!(local.base_url, "http://127.0.0.1:9");
    assert_eq!(
        local.authorization,
        "Basic cza6aw==".replace(
            "cza6aw==",
            &base64::engine::general_purpose::STANDARD.encode("s:k")
        )
    );
}

#[test]
fn item_errors_of_a_207_are_read() {
    let body = r#"{"errors":[{"batch_index":1,"reason":"invalid","field":"identifiers","message":"missing"},{"batch_index":9,"reason":"x"}]}"#;
    let errors = item_errors(body, 3).unwrap();
    assert_eq!(
        errors,
        vec![ItemError {
            index: 1,
            reason: "invalid; field: identifiers; message: missing".into()
        }]
    );
    assert!(item_errors("nope", 3).is_err());
}
