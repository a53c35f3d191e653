//! Validation of Track API v2 operations (`/api/v2/entity` and each item of `/api/v2/batch`) and
//! the field rules shared with the v1 endpoints.
//!
//! The rules follow the documented contract (type × action matrix, op shapes, size limits). Each
//! check reports the first problem it finds as an [`OpError`]; nothing here panics on input.

use serde::Serialize;
use serde_json::{Map, Value};

/// `/api/v2/batch` request body limit. The docs say "500 KB"; we read that as 500,000 bytes.
pub const MAX_BATCH_REQUEST_BYTES: usize = 500_000;
/// `/api/v2/entity` request body limit. The docs say "32 KB"; we read that as 32 × 1024 bytes
/// (the larger reading, so a client that respects 32,000 bytes is never rejected).
pub const MAX_ENTITY_REQUEST_BYTES: usize = 32 * 1024;
/// Limit for one item of a batch, measured on its compact re-serialization (same reading as
/// [`MAX_ENTITY_REQUEST_BYTES`]).
pub const MAX_BATCH_ITEM_BYTES: usize = 32 * 1024;
/// Person ids, object ids and every other identifier value.
pub const MAX_IDENTIFIER_BYTES: usize = 150;
/// Event, page and screen names.
pub const MAX_EVENT_NAME_BYTES: usize = 100;
/// Event data (`attributes` on v2, `data` on v1), compact-serialized.
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
/// Unique attributes per identify call.
pub const MAX_ATTRIBUTES: usize = 300;
/// Attribute names.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 150;
/// Attribute values: strings by byte length, anything else compact-serialized.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1000;
/// All attributes of one object (compact-serialized).
pub const MAX_OBJECT_ATTRIBUTES_BYTES: usize = 100_000;
/// Largest accepted unix timestamp. Anything above is taken for milliseconds and rejected.
pub const MAX_UNIX_SECONDS: i64 = 10_000_000_000;

const PERSON_ACTIONS: &[&str] = &[
    "identify",
    "delete",
    "event",
    "screen",
    "page",
    "add_relationships",
    "delete_relationships",
    "add_device",
    "delete_device",
    "merge",
    "suppress",
    "unsuppress",
];
const OBJECT_ACTIONS: &[&str] = &[
    "identify",
    "identify_anonymous",
    "delete",
    "add_relationships",
    "delete_relationships",
];
const DELIVERY_ACTIONS: &[&str] = &["event"];
/// Identifiers a person op may carry (`anonymous_id` is undocumented but sent by Segment).
const PERSON_IDENTIFIERS: &[&str] = &["id", "email", "cio_id", "phone", "anonymous_id"];
/// Identifiers that name a known person (needed by delete, suppress, devices, merge).
const STRONG_IDENTIFIERS: &[&str] = &["id", "email", "cio_id"];
const PLATFORMS: &[&str] = &["ios", "android"];

/// Why one operation was rejected: the `reason`, `field` and `message` of a Track v2 error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message} ({reason})")]
pub struct OpError {
    /// A short machine-readable kind: `required`, `invalid`, `not allowed`, `too long`, ...
    pub reason: String,
    /// Dotted path of the offending field inside the op (empty for the op as a whole).
    pub field: String,
    /// Human-readable detail.
    pub message: String,
}

impl OpError {
    pub(crate) fn new(
        reason: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        OpError {
            reason: reason.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

type Check = Result<(), OpError>;

/// Whether `s` is a canonical ULID: 26 characters of Crockford base32 (no I, L, O, U; either
/// case), the first at most `7` so the value fits 128 bits.
pub fn is_ulid(s: &str) -> bool {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    s.len() == 26
        && s.bytes()
            .all(|b| ALPHABET.contains(&b.to_ascii_uppercase()))
        && s.as_bytes().first().is_some_and(|b| *b <= b'7')
}

/// The time part of a canonical ULID (see [`is_ulid`]): its first 10 Crockford base32
/// characters, case-insensitive, as milliseconds since the Unix epoch. `None` for anything that
/// is not a ULID.
pub fn ulid_time_ms(s: &str) -> Option<u64> {
    if !is_ulid(s) {
        return None;
    }
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    s.bytes().take(10).try_fold(0u64, |acc, b| {
        let digit = ALPHABET.iter().position(|&c| c == b.to_ascii_uppercase())?;
        Some((acc << 5) | digit as u64)
    })
}

/// Compact-serialized size of a JSON value.
pub(crate) fn serialized_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
}

/// Validate one v2 operation against the documented contract. Returns the first problem found.
pub fn validate_op(op: &Value) -> Result<(), OpError> {
    let Some(obj) = op.as_object() else {
        return Err(OpError::new(
            "invalid",
            "",
            "an operation must be a JSON object",
        ));
    };
    let ty = required_str(obj, "type", "")?;
    if !["person", "object", "delivery"].contains(&ty) {
        return Err(OpError::new(
            "invalid",
            "type",
            format!("unknown type {ty:?}; expected person, object or delivery"),
        ));
    }
    let action = required_str(obj, "action", "")?;
    match ty {
        "person" => person_op(obj, action)?,
        "object" => object_op(obj, action)?,
        _ => delivery_op(obj, action)?,
    }
    if let Some(ts) = obj.get("timestamp") {
        check_unix_seconds("timestamp", ts)?;
    }
    Ok(())
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<&'a str, OpError> {
    let field = join(prefix, key);
    match obj.get(key) {
        None | Some(Value::Null) => Err(OpError::new(
            "required",
            field,
            format!("{key} is required"),
        )),
        Some(Value::String(s)) if s.is_empty() => Err(OpError::new(
            "required",
            field,
            format!("{key} must not be empty"),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(OpError::new(
            "invalid",
            field,
            format!("{key} must be a string"),
        )),
    }
}

/// A field that must be present and a JSON object.
fn required_object<'a>(
    value: Option<&'a Value>,
    field: &str,
) -> Result<&'a Map<String, Value>, OpError> {
    match value {
        None | Some(Value::Null) => Err(OpError::new(
            "required",
            field,
            format!("{field} is required"),
        )),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(OpError::new(
            "invalid",
            field,
            format!("{field} must be an object"),
        )),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_action(ty: &str, action: &str, allowed: &[&str]) -> Check {
    if allowed.contains(&action) {
        Ok(())
    } else {
        Err(OpError::new(
            "invalid",
            "action",
            format!("action {action:?} is not allowed for type {ty}"),
        ))
    }
}

/// An integer number of unix seconds, `0..=MAX_UNIX_SECONDS`. Floats, strings and milliseconds
/// are rejected.
pub(crate) fn check_unix_seconds(field: &str, value: &Value) -> Check {
    let Value::Number(n) = value else {
        return Err(OpError::new(
            "invalid",
            field,
            format!("{field} must be an integer unix timestamp in seconds"),
        ));
    };
    match n.as_i64() {
        Some(secs) if (0..=MAX_UNIX_SECONDS).contains(&secs) => Ok(()),
        Some(secs) if secs > MAX_UNIX_SECONDS => Err(OpError::new(
            "invalid",
            field,
            format!("{field} {secs} looks like milliseconds; send unix seconds"),
        )),
        Some(_) => Err(OpError::new(
            "invalid",
            field,
            format!("{field} must not be negative"),
        )),
        None if n.is_u64() => Err(OpError::new(
            "invalid",
            field,
            format!("{field} is out of range; send unix seconds"),
        )),
        None => Err(OpError::new(
            "invalid",
            field,
            format!("{field} must be an integer unix timestamp in seconds, not a float"),
        )),
    }
}

/// Exactly one identifier whose key is in `allowed`, with a non-empty string value of at most
/// [`MAX_IDENTIFIER_BYTES`]. Returns the key.
fn single_identifier<'a>(
    identifiers: Option<&'a Value>,
    field: &str,
    allowed: &[&str],
) -> Result<&'a str, OpError> {
    let ids = required_object(identifiers, field)?;
    if ids.len() != 1 {
        return Err(OpError::new(
            "invalid",
            field,
            format!(
                "exactly one identifier ({}) is required, got {}",
                allowed.join("|"),
                ids.len()
            ),
        ));
    }
    let Some((key, value)) = ids.iter().next() else {
        return Err(OpError::new("invalid", field, "no identifier"));
    };
    if !allowed.contains(&key.as_str()) {
        return Err(OpError::new(
            "invalid",
            join(field, key),
            format!(
                "identifier {key:?} is not allowed here; expected one of {}",
                allowed.join("|")
            ),
        ));
    }
    check_identifier_value(&join(field, key), value)?;
    Ok(key)
}

fn check_identifier_value(field: &str, value: &Value) -> Check {
    match value {
        Value::String(s) if s.is_empty() => Err(OpError::new(
            "invalid",
            field,
            "identifier must not be empty",
        )),
        Value::String(s) if s.len() > MAX_IDENTIFIER_BYTES => Err(OpError::new(
            "too long",
            field,
            format!(
                "identifier is {} bytes; the limit is {MAX_IDENTIFIER_BYTES}",
                s.len()
            ),
        )),
        Value::String(_) => Ok(()),
        _ => Err(OpError::new(
            "invalid",
            field,
            "identifier must be a string",
        )),
    }
}

/// `{object_type_id, object_id}` (type id a string of digits) or `{cio_object_id}`.
fn object_identifiers(identifiers: Option<&Value>, field: &str) -> Check {
    let ids = required_object(identifiers, field)?;
    if ids.len() == 1 && ids.contains_key("cio_object_id") {
        return ids.get("cio_object_id").map_or(Ok(()), |v| {
            check_identifier_value(&join(field, "cio_object_id"), v)
        });
    }
    if ids.len() == 2 && ids.contains_key("object_type_id") && ids.contains_key("object_id") {
        let type_field = join(field, "object_type_id");
        match ids.get("object_type_id") {
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => {
                return Err(OpError::new(
                    "invalid",
                    type_field,
                    "object_type_id must be a string of digits, e.g. \"1\"",
                ))
            }
        }
        return ids.get("object_id").map_or(Ok(()), |v| {
            check_identifier_value(&join(field, "object_id"), v)
        });
    }
    Err(OpError::new(
        "invalid",
        field,
        "object identifiers must be {object_type_id, object_id} or {cio_object_id}",
    ))
}

fn person_op(obj: &Map<String, Value>, action: &str) -> Check {
    check_action("person", action, PERSON_ACTIONS)?;
    if action == "merge" {
        if obj.contains_key("identifiers") {
            return Err(OpError::new(
                "not allowed",
                "identifiers",
                "merge takes primary and secondary, not identifiers",
            ));
        }
        check_merge_side(obj, "primary")?;
        return check_merge_side(obj, "secondary");
    }
    let key = single_identifier(obj.get("identifiers"), "identifiers", PERSON_IDENTIFIERS)?;
    let needs_strong = matches!(
        action,
        "add_device" | "delete_device" | "delete" | "suppress" | "unsuppress"
    );
    if needs_strong && !STRONG_IDENTIFIERS.contains(&key) {
        return Err(OpError::new(
            "invalid",
            join("identifiers", key),
            format!("{action} needs an id, email or cio_id identifier"),
        ));
    }
    match action {
        "identify" => {
            if key == "anonymous_id" {
                return Err(OpError::new(
                    "invalid",
                    "identifiers.anonymous_id",
                    "identify needs an id, email, cio_id or phone; put anonymous_id in attributes",
                ));
            }
            check_identify_attributes(obj.get("attributes"), "attributes")?;
            if let Some(rels) = obj.get("cio_relationships") {
                check_relationships(rels, RelatedTo::Object, false)?;
            }
            Ok(())
        }
        "event" | "page" | "screen" => check_event(obj, "attributes"),
        "add_device" => check_device(obj, true),
        "delete_device" => check_device(obj, false),
        "add_relationships" | "delete_relationships" => {
            let rels = obj.get("cio_relationships").unwrap_or(&Value::Null);
            check_relationships(rels, RelatedTo::Object, true)
        }
        _ => Ok(()),
    }
}

fn object_op(obj: &Map<String, Value>, action: &str) -> Check {
    check_action("object", action, OBJECT_ACTIONS)?;
    object_identifiers(obj.get("identifiers"), "identifiers")?;
    match action {
        "identify" => {
            check_identify_attributes(obj.get("attributes"), "attributes")?;
            if let Some(attrs) = obj.get("attributes") {
                let len = serialized_len(attrs);
                if len > MAX_OBJECT_ATTRIBUTES_BYTES {
                    return Err(OpError::new(
                        "too large",
                        "attributes",
                        format!("object attributes are {len} bytes; the limit is {MAX_OBJECT_ATTRIBUTES_BYTES}"),
                    ));
                }
            }
            if let Some(rels) = obj.get("cio_relationships") {
                check_relationships(rels, RelatedTo::Person, false)?;
            }
            Ok(())
        }
        "identify_anonymous" => {
            let rels = obj.get("cio_relationships").unwrap_or(&Value::Null);
            check_relationships(rels, RelatedTo::AnonymousPerson, true)
        }
        "add_relationships" | "delete_relationships" => {
            let rels = obj.get("cio_relationships").unwrap_or(&Value::Null);
            check_relationships(rels, RelatedTo::Person, true)
        }
        _ => Ok(()),
    }
}

fn delivery_op(obj: &Map<String, Value>, action: &str) -> Check {
    check_action("delivery", action, DELIVERY_ACTIONS)?;
    single_identifier(obj.get("identifiers"), "identifiers", &["id"])?;
    check_event(obj, "attributes")
}

/// `merge`'s `primary` / `secondary`: exactly one of id | email | cio_id.
pub(crate) fn check_merge_side(obj: &Map<String, Value>, side: &str) -> Check {
    single_identifier(obj.get(side), side, STRONG_IDENTIFIERS).map(|_| ())
}

#[derive(Clone, Copy)]
enum RelatedTo {
    Object,
    Person,
    AnonymousPerson,
}

fn check_relationships(rels: &Value, to: RelatedTo, required: bool) -> Check {
    let field = "cio_relationships";
    let items = match rels {
        Value::Null if !required => return Ok(()),
        Value::Array(items) if !items.is_empty() || !required => items,
        Value::Null | Value::Array(_) => {
            return Err(OpError::new(
                "required",
                field,
                "at least one relationship is required",
            ))
        }
        _ => {
            return Err(OpError::new(
                "invalid",
                field,
                "cio_relationships must be an array",
            ))
        }
    };
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}.{i}");
        let Some(item) = item.as_object() else {
            return Err(OpError::new(
                "invalid",
                item_field,
                "a relationship must be an object",
            ));
        };
        let ids_field = format!("{item_field}.identifiers");
        match to {
            RelatedTo::Object => object_identifiers(item.get("identifiers"), &ids_field)?,
            RelatedTo::Person => {
                single_identifier(item.get("identifiers"), &ids_field, PERSON_IDENTIFIERS)?;
            }
            RelatedTo::AnonymousPerson => {
                single_identifier(item.get("identifiers"), &ids_field, &["anonymous_id"])?;
            }
        }
        match item.get("relationship_attributes") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(OpError::new(
                    "invalid",
                    format!("{item_field}.relationship_attributes"),
                    "relationship_attributes must be an object",
                ))
            }
        }
    }
    Ok(())
}

/// Identify attributes: an object of at most [`MAX_ATTRIBUTES`] entries, names up to
/// [`MAX_ATTRIBUTE_NAME_BYTES`], values up to [`MAX_ATTRIBUTE_VALUE_BYTES`], `created_at` in
/// integer seconds.
pub(crate) fn check_identify_attributes(attrs: Option<&Value>, field: &str) -> Check {
    let attrs = match attrs {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(attrs)) => attrs,
        Some(_) => {
            return Err(OpError::new(
                "invalid",
                field,
                format!("{field} must be an object"),
            ))
        }
    };
    check_attribute_map(attrs, field)
}

pub(crate) fn check_attribute_map(attrs: &Map<String, Value>, field: &str) -> Check {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(OpError::new(
            "too many",
            field,
            format!("{} attributes; the limit is {MAX_ATTRIBUTES}", attrs.len()),
        ));
    }
    for (name, value) in attrs {
        let attr_field = join(field, name);
        if name.len() > MAX_ATTRIBUTE_NAME_BYTES {
            return Err(OpError::new(
                "too long",
                attr_field,
                format!(
                    "attribute name is {} bytes; the limit is {MAX_ATTRIBUTE_NAME_BYTES}",
                    name.len()
                ),
            ));
        }
        let len = match value {
            Value::String(s) => s.len(),
            other => serialized_len(other),
        };
        if len > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(OpError::new(
                "too long",
                attr_field,
                format!("attribute value is {len} bytes; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}"),
            ));
        }
        if name == "created_at" && !value.is_null() {
            check_unix_seconds(&attr_field, value)?;
        }
    }
    Ok(())
}

/// event / page / screen (and delivery events): `name`, optional string `id`, event data.
pub(crate) fn check_event(obj: &Map<String, Value>, data_key: &str) -> Check {
    check_event_name(obj.get("name"))?;
    match obj.get("id") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => {
            return Err(OpError::new(
                "invalid",
                "id",
                "id must be a string (a ULID)",
            ))
        }
    }
    check_event_data(obj.get(data_key), data_key)
}

pub(crate) fn check_event_name(name: Option<&Value>) -> Check {
    match name {
        None | Some(Value::Null) => Err(OpError::new("required", "name", "name is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(OpError::new("required", "name", "name must not be empty"))
        }
        Some(Value::String(s)) if s.len() > MAX_EVENT_NAME_BYTES => Err(OpError::new(
            "too long",
            "name",
            format!(
                "name is {} bytes; the limit is {MAX_EVENT_NAME_BYTES}",
                s.len()
            ),
        )),
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(OpError::new("invalid", "name", "name must be a string")),
    }
}

pub(crate) fn check_event_data(data: Option<&Value>, field: &str) -> Check {
    match data {
        None | Some(Value::Null) => Ok(()),
        Some(data @ Value::Object(_)) => {
            let len = serialized_len(data);
            if len > MAX_EVENT_DATA_BYTES {
                Err(OpError::new(
                    "too large",
                    field,
                    format!("event data is {len} bytes; the limit is {MAX_EVENT_DATA_BYTES}"),
                ))
            } else {
                Ok(())
            }
        }
        Some(_) => Err(OpError::new(
            "invalid",
            field,
            format!("{field} must be an object"),
        )),
    }
}

pub(crate) fn check_platform(field: &str, platform: Option<&Value>) -> Check {
    match platform {
        None | Some(Value::Null) => Err(OpError::new(
            "required",
            field,
            "platform is required (ios or android)",
        )),
        Some(Value::String(p)) if PLATFORMS.contains(&p.as_str()) => Ok(()),
        Some(other) => Err(OpError::new(
            "invalid",
            field,
            format!("platform must be ios or android, got {other}"),
        )),
    }
}

/// v2 `device`: `token` always; for add_device also `platform`, integer `last_used`, object
/// `attributes`.
fn check_device(obj: &Map<String, Value>, add: bool) -> Check {
    let device = required_object(obj.get("device"), "device")?;
    required_str(device, "token", "device")?;
    if !add {
        return Ok(());
    }
    check_platform("device.platform", device.get("platform"))?;
    if let Some(last_used) = device.get("last_used").filter(|v| !v.is_null()) {
        check_unix_seconds("device.last_used", last_used)?;
    }
    match device.get("attributes") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(OpError::new(
            "invalid",
            "device.attributes",
            "device.attributes must be an object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ulid_detection() {
        assert!(is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(is_ulid("01arz3ndektsv4rrffq69g5fav"));
        assert!(!is_ulid("01HXYZEVENTID0000000000000")); // I is not Crockford
        assert!(!is_ulid("81ARZ3NDEKTSV4RRFFQ69G5FAV")); // overflows 128 bits
        assert!(!is_ulid("550e8400-e29b-41d4-a716-446655440000"));
    }

    #[test]
    fn timestamps() {
        assert!(check_unix_seconds("t", &json!(1_704_164_645)).is_ok());
        assert!(check_unix_seconds("t", &json!(MAX_UNIX_SECONDS)).is_ok());
        assert!(check_unix_seconds("t", &json!(MAX_UNIX_SECONDS + 1)).is_err());
        assert!(check_unix_seconds("t", &json!(1_704_164_645.5)).is_err());
        assert!(check_unix_seconds("t", &json!("1704164645")).is_err());
        assert!(check_unix_seconds("t", &json!(-1)).is_err());
        assert!(check_unix_seconds("t", &json!(u64::MAX)).is_err());
    }

    #[test]
    fn object_identifier_shapes() {
        let op = |ids: Value| json!({"type":"object","action":"delete","identifiers":ids});
        assert!(validate_op(&op(json!({"object_type_id":"1","object_id":"acme"}))).is_ok());
        assert!(validate_op(&op(json!({"cio_object_id":"x"}))).is_ok());
        assert!(validate_op(&op(json!({"object_type_id":"one","object_id":"acme"}))).is_err());
        assert!(validate_op(&op(json!({"object_type_id":1,"object_id":"acme"}))).is_err());
        assert!(validate_op(&op(json!({"object_id":"acme"}))).is_err());
    }

    #[test]
    fn segment_shapes_are_valid() {
        for op in [
            json!({"type":"person","action":"event","identifiers":{"anonymous_id":"a1"},"name":"Viewed","id":"m-1","timestamp":1_704_164_645,"attributes":{"x":1}}),
            json!({"type":"object","action":"identify_anonymous","identifiers":{"object_type_id":"1","object_id":"g"},"cio_relationships":[{"identifiers":{"anonymous_id":"a1"}}]}),
            json!({"type":"person","action":"add_device","identifiers":{"id":"u"},"device":{"token":"t","platform":"android","last_used":1_704_164_645,"attributes":{"app_version":"1"}}}),
            json!({"type":"person","action":"add_relationships","identifiers":{"id":"u"},"cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"g"},"relationship_attributes":{"role":"admin"}}]}),
            json!({"type":"delivery","action":"event","identifiers":{"id":"dlv"},"name":"opened","attributes":{"device_token":"t"}}),
        ] {
            assert_eq!(validate_op(&op), Ok(()), "{op}");
        }
    }

    #[test]
    fn ulid_time_part_decodes_to_milliseconds() {
        assert_eq!(
            ulid_time_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            Some(1_469_922_850_259)
        );
        assert_eq!(
            ulid_time_ms("01arz3ndektsv4rrffq69g5fav"),
            Some(1_469_922_850_259)
        );
        assert_eq!(ulid_time_ms("00000000000000000000000000"), Some(0));
        assert_eq!(
            ulid_time_ms("7ZZZZZZZZZ0000000000000000"),
            Some((1 << 48) - 1)
        );
        // 1_700_000_000_000 ms in 5-bit groups: 0,1,17,15,7,30,10,26,0,0.
        assert_eq!(
            ulid_time_ms("01HF7YAT000000000000000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(ulid_time_ms("m-1"), None);
        assert_eq!(ulid_time_ms("8ZZZZZZZZZ0000000000000000"), None);
        assert_eq!(ulid_time_ms("01ARZ3NDEKTSV4RRFFQ69G5FAI"), None);
    }
}
