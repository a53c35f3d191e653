//! Track API v1 endpoints: validation and translation of each request into the equivalent v2
//! operation (which is what [`crate::AcceptedOp::op`] holds for v1 calls).
//!
//! Leniency follows what the official clients send (see the wire captures): empty or `{}` bodies
//! on DELETE/suppress, `device.last_used` as an integer or a numeric string, `device.attributes`
//! null, extra keys inside `device`, percent-encoded path ids.

use serde_json::{json, Map, Value};

use crate::validate::{
    check_attribute_map, check_event_data, check_event_name, check_merge_side, check_platform,
    check_unix_seconds, OpError, MAX_IDENTIFIER_BYTES,
};

/// A v1 endpoint with its (still percent-encoded) path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V1Route<'a> {
    Identify(&'a str),
    Delete(&'a str),
    Track(&'a str),
    TrackAnonymous,
    AddDevice(&'a str),
    DeleteDevice(&'a str, &'a str),
    Suppress(&'a str),
    Unsuppress(&'a str),
    Merge,
    PushEvent,
    Metric,
}

impl<'a> V1Route<'a> {
    /// Match `segments` (the path after `/api/`, split on `/`) and the method.
    pub(crate) fn parse(method: &str, segments: &[&'a str]) -> Option<Self> {
        Some(match (method, segments) {
            ("PUT", &["v1", "customers", id]) => V1Route::Identify(id),
            ("DELETE", &["v1", "customers", id]) => V1Route::Delete(id),
            ("POST", &["v1", "customers", id, "events"]) => V1Route::Track(id),
            ("POST", &["v1", "events"]) => V1Route::TrackAnonymous,
            ("PUT", &["v1", "customers", id, "devices"]) => V1Route::AddDevice(id),
            ("DELETE", &["v1", "customers", id, "devices", token]) => {
                V1Route::DeleteDevice(id, token)
            }
            ("POST", &["v1", "customers", id, "suppress"]) => V1Route::Suppress(id),
            ("POST", &["v1", "customers", id, "unsuppress"]) => V1Route::Unsuppress(id),
            ("POST", &["v1", "merge_customers"]) => V1Route::Merge,
            ("POST", &["v1", "push", "events"]) => V1Route::PushEvent,
            ("POST", &["v1", "metrics"]) => V1Route::Metric,
            _ => return None,
        })
    }

    /// `/api/v1/metrics` is documented with `security: []`.
    pub(crate) fn needs_auth(&self) -> bool {
        !matches!(self, V1Route::Metric)
    }
}

/// A rejected v1 request. `single` selects the `{"meta":{"error":…}}` shape that
/// `merge_customers` documents; everything else answers `{"meta":{"errors":[…]}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct V1Error {
    pub(crate) message: String,
    pub(crate) single: bool,
}

impl V1Error {
    fn new(message: impl Into<String>) -> Self {
        V1Error {
            message: message.into(),
            single: false,
        }
    }

    pub(crate) fn body(&self) -> String {
        if self.single {
            json!({"meta": {"error": self.message}}).to_string()
        } else {
            json!({"meta": {"errors": [self.message]}}).to_string()
        }
    }
}

impl From<OpError> for V1Error {
    fn from(e: OpError) -> Self {
        let message = if e.field.is_empty() {
            e.message
        } else {
            format!("{}: {}", e.field, e.message)
        };
        V1Error::new(message)
    }
}

/// Decode `%XX` escapes (a `+` stays a `+`). Malformed escapes or non-UTF-8 results are errors.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex)?;
            let lo = bytes.get(i + 2).copied().and_then(hex)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn path_param(raw: &str, what: &str) -> Result<String, V1Error> {
    let value = percent_decode(raw)
        .ok_or_else(|| V1Error::new(format!("{what}: invalid percent-encoding")))?;
    if value.is_empty() {
        return Err(V1Error::new(format!("{what} must not be empty")));
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(V1Error::new(format!(
            "{what} is {} bytes; the limit is {MAX_IDENTIFIER_BYTES}",
            value.len()
        )));
    }
    Ok(value)
}

/// The v2 identifiers for a v1 path identifier: the server infers the kind from the shape, so
/// `cio_<x>` → `{"cio_id": "<x>"}`, a value with `@` → `{"email"}`, anything else → `{"id"}`.
fn person_identifiers(id: &str) -> Value {
    match id.strip_prefix("cio_") {
        Some(rest) if !rest.is_empty() => json!({ "cio_id": rest }),
        _ if id.contains('@') => json!({ "email": id }),
        _ => json!({ "id": id }),
    }
}

/// The body as a JSON object; an empty (or all-whitespace) body counts as `{}`.
fn object_body(body: &[u8]) -> Result<Map<String, Value>, V1Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(V1Error::new("request body must be a JSON object")),
        Err(e) => Err(V1Error::new(format!("malformed JSON: {e}"))),
    }
}

fn base_op(action: &str, identifiers: Value) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("type".into(), json!("person"));
    op.insert("action".into(), json!(action));
    op.insert("identifiers".into(), identifiers);
    op
}

/// Validate a v1 request and build the v2-shaped operation it stands for.
pub(crate) fn to_op(route: V1Route<'_>, body: &[u8]) -> Result<Value, V1Error> {
    match route {
        V1Route::Identify(id) => {
            let ids = person_identifiers(&path_param(id, "customer id")?);
            let attrs = object_body(body)?;
            check_attribute_map(&attrs, "")?;
            let mut op = base_op("identify", ids);
            op.insert("attributes".into(), Value::Object(attrs));
            Ok(Value::Object(op))
        }
        V1Route::Delete(id) | V1Route::Suppress(id) | V1Route::Unsuppress(id) => {
            let ids = person_identifiers(&path_param(id, "customer id")?);
            object_body(body)?;
            let action = match route {
                V1Route::Suppress(_) => "suppress",
                V1Route::Unsuppress(_) => "unsuppress",
                _ => "delete",
            };
            Ok(Value::Object(base_op(action, ids)))
        }
        V1Route::Track(id) => {
            let ids = person_identifiers(&path_param(id, "customer id")?);
            event_op(ids, object_body(body)?, false)
        }
        V1Route::TrackAnonymous => {
            let mut body = object_body(body)?;
            let ids = match body.remove("anonymous_id") {
                None | Some(Value::Null) => json!({}),
                Some(Value::String(a)) if a.is_empty() => json!({}),
                Some(Value::String(a)) if a.len() > MAX_IDENTIFIER_BYTES => {
                    return Err(V1Error::new(format!(
                        "anonymous_id is {} bytes; the limit is {MAX_IDENTIFIER_BYTES}",
                        a.len()
                    )))
                }
                Some(Value::String(a)) => json!({ "anonymous_id": a }),
                Some(_) => return Err(V1Error::new("anonymous_id must be a string")),
            };
            event_op(ids, body, true)
        }
        V1Route::AddDevice(id) => {
            let ids = person_identifiers(&path_param(id, "customer id")?);
            let device = add_device(object_body(body)?)?;
            let mut op = base_op("add_device", ids);
            op.insert("device".into(), device);
            Ok(Value::Object(op))
        }
        V1Route::DeleteDevice(id, token) => {
            let ids = person_identifiers(&path_param(id, "customer id")?);
            let token = path_param(token, "device id")?;
            object_body(body)?;
            let mut op = base_op("delete_device", ids);
            op.insert("device".into(), json!({ "token": token }));
            Ok(Value::Object(op))
        }
        V1Route::Merge => {
            let body = object_body(body)?;
            for side in ["primary", "secondary"] {
                check_merge_side(&body, side).map_err(|e| V1Error {
                    single: true,
                    ..V1Error::from(e)
                })?;
            }
            Ok(json!({
                "type": "person",
                "action": "merge",
                "primary": body.get("primary"),
                "secondary": body.get("secondary"),
            }))
        }
        V1Route::PushEvent => {
            let body = object_body(body)?;
            let delivery_id = required_string(&body, "delivery_id")?;
            let device_id = required_string(&body, "device_id")?;
            let event = required_string(&body, "event")?;
            if !["delivered", "opened", "converted"].contains(&event) {
                return Err(V1Error::new("event must be delivered, opened or converted"));
            }
            let mut op = delivery_op(delivery_id, event, &body)?;
            op.insert("attributes".into(), json!({ "device_token": device_id }));
            Ok(Value::Object(op))
        }
        V1Route::Metric => {
            let body = object_body(body)?;
            let delivery_id = required_string(&body, "delivery_id")?;
            let metric = required_string(&body, "metric")?;
            const METRICS: &[&str] = &[
                "bounced",
                "clicked",
                "converted",
                "deferred",
                "delivered",
                "dropped",
                "opened",
                "spammed",
            ];
            if !METRICS.contains(&metric) {
                return Err(V1Error::new(format!("unknown metric {metric:?}")));
            }
            let mut op = delivery_op(delivery_id, metric, &body)?;
            let rest: Map<String, Value> = body
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "delivery_id" | "metric" | "timestamp"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !rest.is_empty() {
                op.insert("attributes".into(), Value::Object(rest));
            }
            Ok(Value::Object(op))
        }
    }
}

fn required_string<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, V1Error> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(V1Error::new(format!("{key} is required")))
        }
        Some(_) => Err(V1Error::new(format!("{key} must be a string"))),
    }
}

fn delivery_op(
    delivery_id: &str,
    name: &str,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, V1Error> {
    let mut op = Map::new();
    op.insert("type".into(), json!("delivery"));
    op.insert("action".into(), json!("event"));
    op.insert("identifiers".into(), json!({ "id": delivery_id }));
    op.insert("name".into(), json!(name));
    if let Some(ts) = body.get("timestamp").filter(|v| !v.is_null()) {
        check_unix_seconds("timestamp", ts)?;
        op.insert("timestamp".into(), ts.clone());
    }
    Ok(op)
}

/// `{name, data?, id?, type?, timestamp?}` → `{type:"person", action:<type>, identifiers, name,
/// id?, timestamp?, attributes:<data>}`. Unknown top-level keys are carried over unchanged.
fn event_op(ids: Value, mut body: Map<String, Value>, anonymous: bool) -> Result<Value, V1Error> {
    check_event_name(body.get("name"))?;
    let action = match body.remove("type") {
        None | Some(Value::Null) => "event".to_owned(),
        Some(Value::String(t)) if ["event", "page", "screen"].contains(&t.as_str()) => t,
        Some(other) => {
            return Err(V1Error::new(format!(
                "type must be event, page or screen, got {other}"
            )))
        }
    };
    match body.get("id") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(V1Error::new("id must be a string (a ULID)")),
    }
    if let Some(ts) = body.get("timestamp").filter(|v| !v.is_null()) {
        check_unix_seconds("timestamp", ts)?;
    }
    let data = body.remove("data");
    check_event_data(data.as_ref(), "data")?;
    if anonymous && ids.as_object().is_some_and(Map::is_empty) {
        // An "invite event": without anonymous_id, data.recipient says who it is for.
        let has_recipient = data
            .as_ref()
            .and_then(|d| d.get("recipient"))
            .is_some_and(|r| r.as_str().is_some_and(|r| !r.is_empty()));
        if !has_recipient {
            return Err(V1Error::new(
                "an anonymous event needs anonymous_id or data.recipient",
            ));
        }
    }
    let mut op = base_op(&action, ids);
    op.extend(body);
    if let Some(data) = data.filter(|d| !d.is_null()) {
        op.insert("attributes".into(), data);
    }
    Ok(Value::Object(op))
}

/// v1 `{"device": {id, platform, last_used?, attributes?, <extra>…}}` → v2 `device` with `token`,
/// integer `last_used`, and extra keys folded into `attributes`.
fn add_device(mut body: Map<String, Value>) -> Result<Value, V1Error> {
    let mut device = match body.remove("device") {
        Some(Value::Object(device)) => device,
        None | Some(Value::Null) => return Err(V1Error::new("device is required")),
        Some(_) => return Err(V1Error::new("device must be an object")),
    };
    let token = match device.remove("id") {
        Some(Value::String(t)) if !t.is_empty() => t,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(V1Error::new("device.id is required"))
        }
        Some(_) => return Err(V1Error::new("device.id must be a string")),
    };
    check_platform("device.platform", device.get("platform"))?;
    let platform = device.remove("platform").unwrap_or(Value::Null);
    let last_used = match device.remove("last_used") {
        None | Some(Value::Null) => None,
        // Go's client sends it as a string.
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(n) => Some(json!(n)),
            Err(_) => {
                return Err(V1Error::new(
                    "device.last_used must be an integer unix timestamp (or a numeric string)",
                ))
            }
        },
        Some(other) => Some(other),
    };
    if let Some(last_used) = &last_used {
        check_unix_seconds("device.last_used", last_used)?;
    }
    let mut attributes = match device.remove("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a,
        Some(_) => return Err(V1Error::new("device.attributes must be an object")),
    };
    // Python's client puts extra attributes flat inside `device`.
    attributes.extend(device);
    let mut out = Map::new();
    out.insert("token".into(), json!(token));
    out.insert("platform".into(), platform);
    if let Some(last_used) = last_used {
        out.insert("last_used".into(), last_used);
    }
    if !attributes.is_empty() {
        out.insert("attributes".into(), Value::Object(attributes));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(
            percent_decode("user%2Fwith%20space%2Bplus").as_deref(),
            Some("user/with space+plus")
        );
        assert_eq!(
            percent_decode("jane%40example.com").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn infers_identifier_kind() {
        assert_eq!(
            person_identifiers("cio_03000001"),
            json!({"cio_id":"03000001"})
        );
        assert_eq!(person_identifiers("a@b.c"), json!({"email":"a@b.c"}));
        assert_eq!(person_identifiers("user-1"), json!({"id":"user-1"}));
    }

    #[test]
    fn go_style_device() {
        let op = to_op(
            V1Route::AddDevice("u1"),
            br#"{"device":{"id":"tok","platform":"android","last_used":"1704164645","attributes":null}}"#,
        );
        assert_eq!(
            op,
            Ok(
                json!({"type":"person","action":"add_device","identifiers":{"id":"u1"},
                "device":{"token":"tok","platform":"android","last_used":1_704_164_645}})
            )
        );
    }
}
