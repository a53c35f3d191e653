//! From request body to normalised events: the Segment validation and normalisation rules.
//!
//! The rules, in one place:
//! - `null` at the top level of an event means "absent".
//! - `userId`, `anonymousId`, `groupId`, `previousId` and `messageId` may be numbers; they are
//!   stored as strings. An empty string counts as absent.
//! - Every event needs `userId` or `anonymousId`; track needs `event`, group needs `groupId`,
//!   alias needs `previousId`. Inside a batch every event needs a valid `type`; on a single-event
//!   endpoint the path decides the type.
//! - `messageId` is generated when absent. `writeKey` is removed.
//! - `sentAt` is the event's own, else the batch envelope's. `receivedAt` is the server clock.
//!   `originalTimestamp` is the client's `timestamp` as sent. With both a client timestamp and
//!   `sentAt`, `timestamp = receivedAt - (sentAt - originalTimestamp)` (clock-skew correction);
//!   with only a client timestamp it is kept; with none, `timestamp = receivedAt`. Any
//!   timestamp that does not parse makes the event invalid.
//! - The envelope's `context` and `integrations` are merged into each event's, the event's keys
//!   winning. Nothing else from the envelope reaches an event (Go's batch `messageId` must not).
//! - `context.ip` is filled from the client address when absent.
//! - An event over [`Limits::max_event_bytes`] is invalid; a batch over
//!   [`Limits::max_batch_events`] is refused as a whole.

use crate::event::{Event, EventType};
use crate::limits::Limits;
use crate::time::{format_timestamp, parse_timestamp};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// What the collector knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct IngestContext {
    pub received_at: DateTime<Utc>,
    /// The client's address (after trusted-proxy resolution), for `context.ip`.
    pub client_ip: Option<IpAddr>,
    pub limits: Limits,
}

/// Why one event was not accepted. `code` is a stable machine-readable word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
    /// The event as received (cut to 4 KiB), for the rejected-events record.
    pub payload: String,
}

/// A request that cannot be processed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("`batch` is required and must be an array of events")]
    BatchNotArray,
    #[error("the batch holds {count} events; the limit is {limit} events per batch")]
    TooManyEvents { count: usize, limit: usize },
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::MalformedJson(_) => "invalid_json",
            RequestError::NotAnObject => "invalid_body",
            RequestError::BatchNotArray => "invalid_batch",
            RequestError::TooManyEvents { .. } => "too_many_events",
        }
    }
}

/// The outcome of parsing one request.
#[derive(Debug, Default)]
pub struct ParsedRequest {
    /// A write key carried in the body (envelope or event), for clients that send no header.
    pub body_write_key: Option<String>,
    pub accepted: Vec<Event>,
    pub rejected: Vec<Rejection>,
}

const REJECTED_PAYLOAD_KEEP_BYTES: usize = 4096;

/// Parses the body of a single-event endpoint (`/v1/track`, `/v1/t`, ...).
pub fn parse_single(
    event_type: EventType,
    body: &[u8],
    ctx: &IngestContext,
) -> Result<ParsedRequest, RequestError> {
    let raw: &RawValue = parse_json(body)?;
    let mut request = ParsedRequest::default();
    let fields = match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(RequestError::NotAnObject),
        Err(e) => return Err(RequestError::MalformedJson(e.to_string())),
    };
    request.body_write_key = string_field(&fields, "writeKey");
    let envelope = Envelope::default();
    admit(
        &mut request,
        0,
        raw.get(),
        Some(event_type),
        fields,
        &envelope,
        ctx,
    );
    Ok(request)
}

/// Parses a batch envelope (`/v1/batch`, `/v1/import`, `/v1/b`).
pub fn parse_batch(body: &[u8], ctx: &IngestContext) -> Result<ParsedRequest, RequestError> {
    let raw: &RawValue = parse_json(body)?;
    let wire: WireEnvelope = serde_json::from_str(raw.get()).map_err(|e| {
        if e.is_data() {
            RequestError::NotAnObject
        } else {
            RequestError::MalformedJson(e.to_string())
        }
    })?;
    let items: Vec<&RawValue> = match wire.batch {
        Some(batch) => {
            serde_json::from_str(batch.get()).map_err(|_| RequestError::BatchNotArray)?
        }
        None => return Err(RequestError::BatchNotArray),
    };
    if items.len() > ctx.limits.max_batch_events {
        return Err(RequestError::TooManyEvents {
            count: items.len(),
            limit: ctx.limits.max_batch_events,
        });
    }
    let envelope = Envelope {
        context: object_or_none(wire.context),
        integrations: object_or_none(wire.integrations),
        sent_at: wire.sent_at.filter(|v| !v.is_null()),
    };
    let mut request = ParsedRequest {
        body_write_key: wire.write_key.and_then(|v| v.as_str().map(str::to_owned)),
        ..ParsedRequest::default()
    };
    for (index, item) in items.into_iter().enumerate() {
        let text = item.get();
        if text.len() > ctx.limits.max_event_bytes {
            request.rejected.push(rejection(
                index,
                "event_too_large",
                format!(
                    "the event is {} bytes; the limit is {} bytes per event",
                    text.len(),
                    ctx.limits.max_event_bytes
                ),
                text,
            ));
            continue;
        }
        let fields = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => fields,
            _ => {
                request.rejected.push(rejection(
                    index,
                    "invalid_event",
                    "each batch item must be a JSON object".into(),
                    text,
                ));
                continue;
            }
        };
        if request.body_write_key.is_none() {
            request.body_write_key = string_field(&fields, "writeKey");
        }
        admit(&mut request, index, text, None, fields, &envelope, ctx);
    }
    Ok(request)
}

fn parse_json(body: &[u8]) -> Result<&RawValue, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::MalformedJson("the body is empty".into()));
    }
    serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson(e.to_string()))
}

/// The envelope fields that may reach events.
#[derive(Debug, Default)]
struct Envelope {
    context: Option<Map<String, Value>>,
    integrations: Option<Map<String, Value>>,
    sent_at: Option<Value>,
}

#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    context: Option<Value>,
    integrations: Option<Value>,
    #[serde(rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey")]
    write_key: Option<Value>,
}

fn object_or_none(value: Option<Value>) -> Option<Map<String, Value>> {
    match value {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn string_field(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn rejection(index: usize, code: &'static str, message: String, payload: &str) -> Rejection {
    let mut end = payload.len().min(REJECTED_PAYLOAD_KEEP_BYTES);
    while !payload.is_char_boundary(end) {
        end -= 1;
    }
    Rejection {
        index,
        code,
        message,
        payload: payload[..end].to_owned(),
    }
}

fn admit(
    request: &mut ParsedRequest,
    index: usize,
    raw: &str,
    endpoint_type: Option<EventType>,
    fields: Map<String, Value>,
    envelope: &Envelope,
    ctx: &IngestContext,
) {
    if raw.len() > ctx.limits.max_event_bytes {
        request.rejected.push(rejection(
            index,
            "event_too_large",
            format!(
                "the event is {} bytes; the limit is {} bytes per event",
                raw.len(),
                ctx.limits.max_event_bytes
            ),
            raw,
        ));
        return;
    }
    match normalise(fields, endpoint_type, envelope, ctx) {
        Ok(event) => request.accepted.push(event),
        Err(invalid) => request
            .rejected
            .push(rejection(index, invalid.code, invalid.message, raw)),
    }
}

struct Invalid {
    code: &'static str,
    message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

/// Reads an identifier that may be sent as a string or a number. `Ok(None)` when absent.
fn take_id(fields: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Invalid> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(
            "invalid_field",
            format!("`{key}` must be a string or a number, not {}", kind(&other)),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_timestamp(
    fields: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, Invalid> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => timestamp_value(&value, key).map(Some),
    }
}

fn timestamp_value(value: &Value, key: &str) -> Result<DateTime<Utc>, Invalid> {
    value.as_str().and_then(parse_timestamp).ok_or_else(|| {
        invalid(
            "invalid_timestamp",
            format!("`{key}` is not an ISO-8601 timestamp"),
        )
    })
}

fn take_object(
    fields: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<Map<String, Value>>, Invalid> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(invalid(
            "invalid_field",
            format!("`{key}` must be an object, not {}", kind(&other)),
        )),
    }
}

/// Adds each envelope key the event does not already have (the event's keys win).
fn merge_under(
    own: Option<Map<String, Value>>,
    defaults: Option<&Map<String, Value>>,
) -> Option<Map<String, Value>> {
    match (own, defaults) {
        (own, None) => own,
        (None, Some(defaults)) => Some(defaults.clone()),
        (Some(mut own), Some(defaults)) => {
            for (key, value) in defaults {
                own.entry(key.clone()).or_insert_with(|| value.clone());
            }
            Some(own)
        }
    }
}

fn normalise(
    mut fields: Map<String, Value>,
    endpoint_type: Option<EventType>,
    envelope: &Envelope,
    ctx: &IngestContext,
) -> Result<Event, Invalid> {
    fields.retain(|_, value| !value.is_null());
    fields.remove("writeKey");

    let event_type = match endpoint_type {
        Some(t) => t,
        None => match fields.get("type") {
            None => {
                return Err(invalid(
                    "missing_field",
                    "`type` is required for every event in a batch",
                ))
            }
            Some(value) => value
                .as_str()
                .and_then(EventType::from_name)
                .ok_or_else(|| {
                    invalid(
                        "invalid_field",
                        "`type` must be one of identify, track, page, screen, group, alias",
                    )
                })?,
        },
    };

    let user_id = take_id(&mut fields, "userId")?;
    let anonymous_id = take_id(&mut fields, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(invalid(
            "missing_field",
            "`userId` or `anonymousId` is required",
        ));
    }
    let message_id =
        take_id(&mut fields, "messageId")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    match event_type {
        EventType::Track => match fields.get("event") {
            Some(Value::String(name)) if !name.is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(invalid("missing_field", "`event` is required for track"))
            }
            Some(other) => {
                return Err(invalid(
                    "invalid_field",
                    format!("`event` must be a string, not {}", kind(other)),
                ))
            }
        },
        EventType::Group => {
            let group_id = take_id(&mut fields, "groupId")?
                .ok_or_else(|| invalid("missing_field", "`groupId` is required for group"))?;
            fields.insert("groupId".into(), Value::String(group_id));
        }
        EventType::Alias => {
            let previous_id = take_id(&mut fields, "previousId")?
                .ok_or_else(|| invalid("missing_field", "`previousId` is required for alias"))?;
            fields.insert("previousId".into(), Value::String(previous_id));
        }
        EventType::Identify | EventType::Page | EventType::Screen => {}
    }

    // Timestamps and clock-skew correction.
    let client_timestamp = match take_timestamp(&mut fields, "timestamp")? {
        Some(ts) => {
            fields.remove("originalTimestamp");
            Some(ts)
        }
        None => take_timestamp(&mut fields, "originalTimestamp")?,
    };
    let sent_at = match take_timestamp(&mut fields, "sentAt")? {
        Some(ts) => Some(ts),
        None => match &envelope.sent_at {
            Some(value) => Some(timestamp_value(value, "sentAt")?),
            None => None,
        },
    };
    let received_at = ctx.received_at;
    let timestamp = match (client_timestamp, sent_at) {
        (Some(original), Some(sent)) => received_at - (sent - original),
        (Some(original), None) => original,
        (None, _) => received_at,
    };
    fields.remove("receivedAt");

    let mut context = merge_under(
        take_object(&mut fields, "context")?,
        envelope.context.as_ref(),
    );
    let integrations = merge_under(
        take_object(&mut fields, "integrations")?,
        envelope.integrations.as_ref(),
    );
    if let Some(ip) = ctx.client_ip {
        let context = context.get_or_insert_with(Map::new);
        if context.get("ip").is_none_or(Value::is_null) {
            context.insert("ip".into(), Value::String(ip.to_string()));
        }
    }

    fields.insert("type".into(), Value::String(event_type.as_str().into()));
    fields.insert("messageId".into(), Value::String(message_id));
    if let Some(id) = user_id {
        fields.insert("userId".into(), Value::String(id));
    }
    if let Some(id) = anonymous_id {
        fields.insert("anonymousId".into(), Value::String(id));
    }
    if let Some(context) = context {
        fields.insert("context".into(), Value::Object(context));
    }
    if let Some(integrations) = integrations {
        fields.insert("integrations".into(), Value::Object(integrations));
    }
    if let Some(original) = client_timestamp {
        fields.insert(
            "originalTimestamp".into(),
            Value::String(format_timestamp(original)),
        );
    }
    if let Some(sent) = sent_at {
        fields.insert("sentAt".into(), Value::String(format_timestamp(sent)));
    }
    fields.insert(
        "receivedAt".into(),
        Value::String(format_timestamp(received_at)),
    );
    fields.insert(
        "timestamp".into(),
        Value::String(format_timestamp(timestamp)),
    );
    Ok(Event::from_normalised(fields))
}
