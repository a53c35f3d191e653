//! Customer.io, through the Track API v2 batch endpoint.
//!
//! The mapping follows `shared/research/customerio-track-api.md` §5 (Segment's own Customer.io
//! destination), with the identity the router resolved: identify → person identify; track →
//! person event with a deterministic ULID id; page/screen → page/screen views; group → object
//! identify with a relationship; alias → link (identify with `anonymous_id`) or merge; the
//! reserved event names → devices, delete, suppress and unsuppress. Customer.io's size limits
//! are enforced field by field: an over-limit field is dropped (or a name cut) with a warning.

use crate::http::{batch_body, classify_status, send, transport_failure, without_url};
use crate::ulid::event_ulid;
use crate::{
    config_str, config_u64, required_str, AliasKind, BatchLimits, BuildContext, ConfigError,
    DeliveryError, DeliveryEvent, DeliveryReport, Destination, DestinationKind, ItemError, Mapped,
    Op,
};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Map, Value};
use sluice_core::text::cut;
use sluice_core::EventType;

/// Documented Track API limits (research file §2).
pub const MAX_ID_BYTES: usize = 150;
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 150;
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1000;
pub const MAX_ATTRIBUTES: usize = 300;
pub const MAX_EVENT_NAME_BYTES: usize = 100;
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
pub const MAX_ITEM_BYTES: usize = 32 * 1024;
pub const MAX_REQUEST_BYTES: usize = 500 * 1000;
pub const MAX_ITEMS: usize = 100;
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 100;

const US_TRACK_URL: &str = "https://track.customer.io";
const EU_TRACK_URL: &str = "https://track-eu.customer.io";

pub struct CustomerIo {
    /// `scheme://host[:port]`, no trailing slash.
    base_url: String,
    authorization: String,
    http: reqwest::Client,
    convert_timestamps: bool,
    max_items: usize,
    requests_per_second: u32,
}

impl DestinationKind for CustomerIo {
    const KIND: &'static str = "customerio";
    const SECRET_FIELDS: &'static [&'static str] = &["api_key"];

    fn from_config(config: &Value, context: &BuildContext) -> Result<Self, ConfigError> {
        let site_id = required_str(config, "site_id")?;
        let api_key = required_str(config, "api_key")?;
        let region = config_str(config, "region").unwrap_or("us");
        let regional = match region.to_ascii_lowercase().as_str() {
            "us" => US_TRACK_URL,
            "eu" => EU_TRACK_URL,
            _ => return Err(ConfigError::new("region", "must be \"us\" or \"eu\"")),
        };
        let base_url = match config_str(config, "track_url") {
            Some(url) => track_root(url)?,
            None => regional.to_owned(),
        };
        let convert_timestamps = match config.get("convert_timestamps") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ConfigError::new(
                    "convert_timestamps",
                    "must be true or false",
                ))
            }
        };
        let max_items = config_u64(config, "batch_size")?.unwrap_or(MAX_ITEMS as u64);
        if max_items > 1000 {
            return Err(ConfigError::new("batch_size", "must be between 1 and 1000"));
        }
        let requests_per_second = config_u64(config, "requests_per_second")?
            .unwrap_or(u64::from(DEFAULT_REQUESTS_PER_SECOND));
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{site_id}:{api_key}"));
        Ok(Self {
            base_url,
            authorization: format!("Basic {credentials}"),
            http: context.http.clone(),
            convert_timestamps,
            max_items: max_items as usize,
            requests_per_second: requests_per_second.min(u64::from(u32::MAX)) as u32,
        })
    }
}

/// A `track_url` override: `scheme://host[:port]`; a trailing `/` or `/api/v1` is dropped.
fn track_root(url: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ConfigError::new(
            "track_url",
            format!("is not a URL ({e}); write it as https://host[:port]"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::new(
            "track_url",
            "must be an http:// or https:// URL with a host",
        ));
    }
    let mut root = url.trim().trim_end_matches('/').to_owned();
    for suffix in ["/api/v1", "/api/v2"] {
        if let Some(stripped) = root.strip_suffix(suffix) {
            root = stripped.to_owned();
        }
    }
    Ok(root)
}

#[async_trait]
impl Destination for CustomerIo {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: self.max_items,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_item_bytes: MAX_ITEM_BYTES,
            requests_per_second: self.requests_per_second,
        }
    }

    fn map(&self, event: &DeliveryEvent<'_>) -> Mapped {
        let mut mapper = Mapper {
            convert_timestamps: self.convert_timestamps,
            warnings: Vec::new(),
        };
        match mapper.map(event) {
            Ok(values) => {
                let ops: Vec<Op> = values.iter().map(Op::new).collect();
                if let Some(big) = ops.iter().find(|op| op.json.len() > MAX_ITEM_BYTES) {
                    return Mapped::Reject {
                        reason: format!(
                            "the Customer.io operation is {} bytes after dropping over-limit \
                             fields; the Track API takes at most {MAX_ITEM_BYTES} bytes per item",
                            big.json.len()
                        ),
                    };
                }
                Mapped::Ops {
                    ops,
                    warnings: mapper.warnings,
                }
            }
            Err(reason) => Mapped::Skip { reason },
        }
    }

    async fn deliver(&self, ops: &[&Op]) -> DeliveryReport {
        let body = batch_body(ops);
        let request = self
            .http
            .post(format!("{}/api/v2/batch", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let answer = match send(request, &body).await {
            Ok(answer) => answer,
            Err(report) => return report,
        };
        let (status, response_body) = match answer.body {
            Ok(text) => (answer.status, text),
            Err(error) => return transport_failure(body, &error),
        };
        let result = if status == 207 {
            item_errors(&response_body, ops.len())
        } else {
            classify_status(status, answer.retry_after, &response_body)
        };
        DeliveryReport {
            request_body: body,
            status: Some(status),
            response_body,
            result,
        }
    }

    async fn check_credentials(&self) -> Result<(), ConfigError> {
        let url = format!("{}/api/v1/accounts/region", self.base_url);
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|e| {
                ConfigError::new(
                    "track_url",
                    format!(
                        "could not reach Customer.io at {url} to check the credentials: {}",
                        without_url(&e)
                    ),
                )
            })?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(ConfigError::new(
                "api_key",
                "Customer.io rejected this Site ID and API key; copy both from Customer.io → \
                 Settings → API Credentials (Track API keys)",
            )),
            status => Err(ConfigError::new(
                "track_url",
                format!("Customer.io answered HTTP {status} to the credentials check at {url}"),
            )),
        }
    }
}

/// The per-item errors of a 207: `{"errors":[{"batch_index","reason","field","message"}]}`.
fn item_errors(body: &str, items: usize) -> Result<Vec<ItemError>, DeliveryError> {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let Some(errors) = parsed.get("errors").and_then(Value::as_array) else {
        return Err(DeliveryError::Permanent {
            reason: format!(
                "HTTP 207 without a readable errors list: {}",
                cut(body, 500)
            ),
        });
    };
    Ok(errors
        .iter()
        .filter_map(|error| {
            let index = error.get("batch_index")?.as_u64()? as usize;
            (index < items).then(|| ItemError {
                index,
                reason: describe_error(error),
            })
        })
        .collect())
}

fn describe_error(error: &Value) -> String {
    let part = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("");
    let mut text = part("reason").to_owned();
    for key in ["field", "message"] {
        if !part(key).is_empty() {
            text.push_str(&format!("; {key}: {}", part(key)));
        }
    }
    text
}

/// Builds the operations for one event, collecting warnings about dropped fields.
struct Mapper {
    convert_timestamps: bool,
    warnings: Vec<String>,
}

type MapResult = Result<Vec<Value>, String>;

/// Event names that are operations, not events (research file §5a).
fn reserved_action(name: &str) -> Option<&'static str> {
    Some(match name {
        "Application Installed" | "Application Opened" | "Device Created or Updated" => {
            "add_device"
        }
        "Application Uninstalled" | "Device Deleted" => "delete_device",
        "User Deleted" => "delete",
        "User Suppressed" => "suppress",
        "User Unsuppressed" => "unsuppress",
        _ => return None,
    })
}

impl Mapper {
    fn map(&mut self, e: &DeliveryEvent<'_>) -> MapResult {
        let fields = e.fields;
        let timestamp = fields
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(sluice_core::time::parse_timestamp);
        let unix = timestamp.map(|t| t.timestamp());
        let millis = timestamp.map(|t| t.timestamp_millis());
        let properties = fields.get("properties");
        match e.event.event_type() {
            Some(EventType::Identify) => self.identify(e, unix),
            Some(EventType::Track) => {
                let name = fields.get("event").and_then(Value::as_str).unwrap_or("");
                match reserved_action(name) {
                    Some(action) => self.person_operation(e, action, unix),
                    None => self.event(e, "event", name, unix, millis),
                }
            }
            Some(EventType::Page) => {
                let page_url = fields
                    .get("context")
                    .and_then(|c| c.get("page"))
                    .and_then(|p| p.get("url"));
                let candidates = [
                    properties.and_then(|p| p.get("url")),
                    page_url,
                    fields.get("name"),
                ];
                let name = first_text(candidates)
                    .ok_or("a page view needs properties.url, context.page.url or a name")?;
                self.event(e, "page", name, unix, millis)
            }
            Some(EventType::Screen) => {
                let candidates = [fields.get("name"), properties.and_then(|p| p.get("name"))];
                let name = first_text(candidates).ok_or("a screen view needs a name")?;
                self.event(e, "screen", name, unix, millis)
            }
            Some(EventType::Group) => self.group(e, unix),
            Some(EventType::Alias) => self.alias(e, unix),
            None => Err("the event has no type".into()),
        }
    }

    /// The identifiers of the person the event is about: the resolved userId, else the
    /// anonymousId.
    fn event_identifiers(&self, e: &DeliveryEvent<'_>) -> Result<Value, String> {
        match (&e.identity.user_id, &e.identity.anonymous_id) {
            (Some(user_id), _) => person_identifiers(user_id),
            (None, Some(anonymous_id)) if anonymous_id.len() <= MAX_ID_BYTES => {
                Ok(json!({"anonymous_id": anonymous_id}))
            }
            (None, Some(_)) => Err(format!(
                "the anonymousId is longer than {MAX_ID_BYTES} bytes"
            )),
            (None, None) => Err("the event has neither a userId nor an anonymousId".into()),
        }
    }

    fn identify(&mut self, e: &DeliveryEvent<'_>, unix: Option<i64>) -> MapResult {
        let traits = e.fields.get("traits").and_then(Value::as_object);
        let email = traits.and_then(|t| t.get("email")).and_then(Value::as_str);
        let identifiers =
            match (&e.identity.user_id, email) {
                (Some(user_id), _) => person_identifiers(user_id)?,
                (None, Some(email)) if !email.trim().is_empty() => person_identifiers(email)?,
                _ => return Err(
                    "an identify needs a userId or traits.email to address a Customer.io person"
                        .into(),
                ),
            };
        let mut source = traits.cloned().unwrap_or_default();
        let created_at = source
            .remove("created_at")
            .or_else(|| source.remove("createdAt"));
        source.remove("createdAt");
        let mut attributes = self.person_attributes(source, "traits");
        if let Some(created_at) = created_at {
            match unix_seconds(&created_at) {
                Some(seconds) => {
                    attributes.insert("created_at".into(), seconds.into());
                }
                None => self
                    .warnings
                    .push("traits.created_at dropped: not a timestamp or unix time".into()),
            }
        }
        if let Some(anonymous_id) = &e.identity.anonymous_id {
            attributes.insert("anonymous_id".into(), anonymous_id.clone().into());
        }
        let mut op = json!({"type": "person", "action": "identify", "identifiers": identifiers});
        insert_timestamp(&mut op, unix);
        op["attributes"] = Value::Object(attributes);
        Ok(vec![op])
    }

    fn event(
        &mut self,
        e: &DeliveryEvent<'_>,
        action: &str,
        name: &str,
        unix: Option<i64>,
        millis: Option<i64>,
    ) -> MapResult {
        let identifiers = self.event_identifiers(e)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("a {action} needs a name"));
        }
        let shown = cut(name, MAX_EVENT_NAME_BYTES);
        if shown.len() < name.len() {
            self.warnings.push(format!(
                "the {action} name was cut to {MAX_EVENT_NAME_BYTES} bytes (it had {})",
                name.len()
            ));
        }
        let data = e
            .fields
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let data = self.event_data(data);
        let id = event_ulid(millis.unwrap_or(0), e.source_id, e.event.message_id());
        let mut op = json!({
            "type": "person",
            "action": action,
            "identifiers": identifiers,
            "name": shown,
            "id": id,
        });
        insert_timestamp(&mut op, unix);
        op["attributes"] = Value::Object(data);
        Ok(vec![op])
    }

    /// Device, delete, suppress and unsuppress: operations on a known person.
    fn person_operation(
        &mut self,
        e: &DeliveryEvent<'_>,
        action: &str,
        unix: Option<i64>,
    ) -> MapResult {
        let Some(user_id) = &e.identity.user_id else {
            return Err(format!(
                "{action} needs a known person (a userId); Customer.io cannot apply it to an \
                 anonymous visitor"
            ));
        };
        let identifiers = person_identifiers(user_id)?;
        let mut op = json!({"type": "person", "action": action, "identifiers": identifiers});
        if action == "add_device" || action == "delete_device" {
            let device_context = e.fields.get("context").and_then(|c| c.get("device"));
            let token = device_context
                .and_then(|d| d.get("token"))
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| format!("{action} needs context.device.token"))?;
            let mut device = json!({"token": token});
            if action == "add_device" {
                let kind = device_context
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let platform = device_platform(kind).ok_or_else(|| {
                    format!("add_device needs context.device.type ios or android (got `{kind}`)")
                })?;
                device["platform"] = platform.into();
                if let Some(unix) = unix {
                    device["last_used"] = unix.into();
                }
                let properties = e
                    .fields
                    .get("properties")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut attributes = self.person_attributes(properties, "properties");
                let context = e.fields.get("context");
                for (name, path) in [
                    ("app_version", ["app", "version"]),
                    ("device_model", ["device", "model"]),
                    ("device_os", ["os", "version"]),
                    ("device_locale", ["locale", ""]),
                ] {
                    let value = context
                        .and_then(|c| c.get(path[0]))
                        .and_then(|v| {
                            if path[1].is_empty() {
                                Some(v)
                            } else {
                                v.get(path[1])
                            }
                        })
                        .and_then(Value::as_str);
                    if let Some(value) = value {
                        attributes.entry(name).or_insert_with(|| value.into());
                    }
                }
                if !attributes.is_empty() {
                    device["attributes"] = Value::Object(attributes);
                }
            }
            op["device"] = device;
        }
        Ok(vec![op])
    }

    fn group(&mut self, e: &DeliveryEvent<'_>, unix: Option<i64>) -> MapResult {
        let group_id = e
            .fields
            .get("groupId")
            .and_then(id_text)
            .filter(|g| !g.is_empty())
            .ok_or("a group needs a groupId")?;
        if group_id.len() > MAX_ID_BYTES {
            return Err(format!("the groupId is longer than {MAX_ID_BYTES} bytes"));
        }
        let mut traits = e
            .fields
            .get("traits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let object_type_id = ["object_type_id", "objectTypeId"]
            .iter()
            .filter_map(|k| traits.remove(*k))
            .find_map(|v| id_text(&v))
            .unwrap_or_else(|| "1".into());
        let relationship_attributes = traits.remove("relationshipAttributes");
        if let Some(Value::Object(object_attributes)) = traits.remove("objectAttributes") {
            traits.extend(object_attributes);
        }
        let attributes = self.person_attributes(traits, "traits");
        let (action, person) = match (&e.identity.user_id, &e.identity.anonymous_id) {
            (Some(user_id), _) => ("identify", person_identifiers(user_id)?),
            (None, Some(anonymous_id)) => {
                ("identify_anonymous", json!({"anonymous_id": anonymous_id}))
            }
            (None, None) => return Err("the event has neither a userId nor an anonymousId".into()),
        };
        let mut relationship = json!({"identifiers": person});
        if let Some(Value::Object(extra)) = relationship_attributes {
            relationship["relationship_attributes"] =
                Value::Object(self.person_attributes(extra, "traits.relationshipAttributes"));
        }
        let mut op = json!({
            "type": "object",
            "action": action,
            "identifiers": {"object_type_id": object_type_id, "object_id": group_id},
        });
        insert_timestamp(&mut op, unix);
        op["attributes"] = Value::Object(attributes);
        op["cio_relationships"] = json!([relationship]);
        Ok(vec![op])
    }

    fn alias(&mut self, e: &DeliveryEvent<'_>, unix: Option<i64>) -> MapResult {
        let user_id = e
            .identity
            .user_id
            .as_deref()
            .ok_or("an alias needs a userId")?;
        let previous_id = e
            .fields
            .get("previousId")
            .and_then(id_text)
            .filter(|p| !p.is_empty())
            .ok_or("an alias needs a previousId")?;
        let primary = person_identifiers(user_id)?;
        let mut identify = json!({"type": "person", "action": "identify", "identifiers": primary});
        insert_timestamp(&mut identify, unix);
        match e.identity.alias.unwrap_or(AliasKind::Link) {
            AliasKind::Link => {
                identify["attributes"] = json!({"anonymous_id": previous_id});
                Ok(vec![identify])
            }
            AliasKind::Merge => {
                // The primary must exist before the merge, or Customer.io ignores it: the
                // router sends the identify and waits for it to be confirmed.
                let merge = json!({
                    "type": "person",
                    "action": "merge",
                    "primary": primary,
                    "secondary": person_identifiers(&previous_id)?,
                });
                Ok(vec![identify, merge])
            }
        }
    }

    /// Person, object and relationship attributes: names ≤ 150 B, values ≤ 1000 B, ≤ 300.
    fn person_attributes(&mut self, source: Map<String, Value>, what: &str) -> Map<String, Value> {
        let mut attributes = Map::new();
        for (name, mut value) in source {
            if name.len() > MAX_ATTRIBUTE_NAME_BYTES {
                self.warnings.push(format!(
                    "{what}: an attribute name of {} bytes was dropped (limit {MAX_ATTRIBUTE_NAME_BYTES})",
                    name.len()
                ));
                continue;
            }
            if self.convert_timestamps {
                convert_timestamps(&mut value);
            }
            let size = value_size(&value);
            if size > MAX_ATTRIBUTE_VALUE_BYTES {
                self.warnings.push(format!(
                    "{what}.{name} dropped: {size} bytes (limit {MAX_ATTRIBUTE_VALUE_BYTES})"
                ));
                continue;
            }
            if attributes.len() == MAX_ATTRIBUTES {
                self.warnings.push(format!(
                    "{what}.{name} dropped: more than {MAX_ATTRIBUTES} attributes"
                ));
                continue;
            }
            attributes.insert(name, value);
        }
        attributes
    }

    /// Event data: ≤ 100,000 bytes in all; the largest fields go first when it is over.
    fn event_data(&mut self, mut data: Map<String, Value>) -> Map<String, Value> {
        if self.convert_timestamps {
            for value in data.values_mut() {
                convert_timestamps(value);
            }
        }
        let mut total = Value::Object(data.clone()).to_string().len();
        while total > MAX_EVENT_DATA_BYTES {
            let Some((largest, size)) = data
                .iter()
                .map(|(k, v)| (k.clone(), k.len() + value_size(v) + 4))
                .max_by_key(|(_, size)| *size)
            else {
                break;
            };
            data.remove(&largest);
            total = total.saturating_sub(size);
            self.warnings.push(format!(
                "properties.{largest} dropped: the event data was over {MAX_EVENT_DATA_BYTES} bytes"
            ));
        }
        data
    }
}

/// The first of `candidates` that is a non-blank string.
fn first_text<const N: usize>(candidates: [Option<&Value>; N]) -> Option<&str> {
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|s| !s.trim().is_empty())
}

fn insert_timestamp(op: &mut Value, unix: Option<i64>) {
    if let Some(unix) = unix {
        op["timestamp"] = unix.into();
    }
}

/// A string or number id as text.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The identifier rules: `cio_<id>` → `cio_id`, an email → `email`, anything else → `id`.
pub fn person_identifiers(person: &str) -> Result<Value, String> {
    if person.len() > MAX_ID_BYTES {
        return Err(format!(
            "the person id is longer than {MAX_ID_BYTES} bytes, which Customer.io does not accept"
        ));
    }
    if let Some(cio_id) = person.strip_prefix("cio_").filter(|rest| !rest.is_empty()) {
        return Ok(json!({"cio_id": cio_id}));
    }
    if looks_like_email(person) {
        return Ok(json!({"email": person}));
    }
    Ok(json!({"id": person}))
}

fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
        && !domain.contains('@')
}

fn device_platform(kind: &str) -> Option<&'static str> {
    match kind.to_ascii_lowercase().as_str() {
        "ios" | "ipados" | "iphone" | "ipad" | "tvos" | "watchos" => Some("ios"),
        "android" => Some("android"),
        _ => None,
    }
}

/// Bytes a value takes: a string's own length, anything else its JSON.
fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    }
}

/// A timestamp as unix seconds: an ISO-8601 string, or a number (milliseconds when it is too
/// large to be seconds).
fn unix_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => iso_to_unix(s).or_else(|| s.trim().parse::<i64>().ok()),
        Value::Number(n) => {
            let n = n.as_f64()?;
            let seconds = if n.abs() >= 1e11 { n / 1000.0 } else { n };
            Some(seconds as i64)
        }
        _ => None,
    }
}

/// Converts, in place and recursively, every strict ISO-8601 date or date-time string
/// (`YYYY-MM-DD[THH:mm[:ss][.fff][Z|±hh:mm]]`) into unix seconds.
fn convert_timestamps(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(unix) = iso_to_unix(s) {
                *value = unix.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(convert_timestamps),
        Value::Object(fields) => fields.values_mut().for_each(convert_timestamps),
        _ => {}
    }
}

fn iso_to_unix(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    if bytes.len() < 10
        || !digits(0..4)
        || bytes[4] != b'-'
        || !digits(5..7)
        || bytes[7] != b'-'
        || !digits(8..10)
    {
        return None;
    }
    if bytes.len() == 10 {
        return chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp());
    }
    if bytes[10] != b'T' {
        return None;
    }
    if let Some(parsed) = sluice_core::time::parse_timestamp(text) {
        return Some(parsed.timestamp());
    }
    // `YYYY-MM-DDTHH:mm` without seconds.
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

#[cfg(test)]
mod tests;
