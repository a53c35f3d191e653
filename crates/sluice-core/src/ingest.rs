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
use crate::time::{format_timestamp, parse_timestamp, push_timestamp};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
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
    let text = body_text(body, &ctx.limits)?;
    let fields: TopLevel<'_> = serde_json::from_str(text).map_err(classify)?;
    let mut request = ParsedRequest {
        body_write_key: write_key_of(&fields),
        ..ParsedRequest::default()
    };
    // The write key is read first, so an oversize event from a body-key client is a 400, not a 401.
    if text.len() > ctx.limits.max_event_bytes {
        request.rejected.push(too_large(0, text, ctx.limits));
        return Ok(request);
    }
    let envelope = Envelope {
        received_at: format_timestamp(ctx.received_at),
        ..Envelope::default()
    };
    admit(
        &mut request,
        0,
        text,
        Some(event_type),
        fields,
        &envelope,
        ctx,
    );
    Ok(request)
}

/// Parses a batch envelope (`/v1/batch`, `/v1/import`, `/v1/b`).
pub fn parse_batch(body: &[u8], ctx: &IngestContext) -> Result<ParsedRequest, RequestError> {
    let text = body_text(body, &ctx.limits)?;
    let wire: WireEnvelope<'_> = serde_json::from_str(text).map_err(|e| match classify(e) {
        // The body is an object, so a type error is about `batch`.
        RequestError::NotAnObject if text.starts_with('{') => RequestError::BatchNotArray,
        other => other,
    })?;
    let items = wire.batch.ok_or(RequestError::BatchNotArray)?;
    if items.len() > ctx.limits.max_batch_events {
        return Err(RequestError::TooManyEvents {
            count: items.len(),
            limit: ctx.limits.max_batch_events,
        });
    }
    let envelope = Envelope {
        received_at: format_timestamp(ctx.received_at),
        context: wire.context.and_then(object_entries),
        integrations: wire.integrations.and_then(object_entries),
        sent_at: wire.sent_at.filter(|raw| !is_null(raw)),
    };
    let mut request = ParsedRequest {
        body_write_key: wire.write_key.and_then(string_value),
        ..ParsedRequest::default()
    };
    for (index, item) in items.into_iter().enumerate() {
        let text = item.get();
        if text.len() > ctx.limits.max_event_bytes {
            request.rejected.push(too_large(index, text, ctx.limits));
            continue;
        }
        let Ok(fields) = serde_json::from_str::<TopLevel<'_>>(text) else {
            request.rejected.push(rejection(
                index,
                "invalid_event",
                "each batch item must be a JSON object".into(),
                text,
            ));
            continue;
        };
        if request.body_write_key.is_none() {
            request.body_write_key = write_key_of(&fields);
        }
        admit(&mut request, index, text, None, fields, &envelope, ctx);
    }
    Ok(request)
}

/// An event's top level: keys with their values left as raw JSON text, so nested objects
/// (properties, traits, context.page ...) are copied through without being rebuilt.
type TopLevel<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// An object key, borrowed from the body unless it contains escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The body as trimmed UTF-8 text, once it is known to be non-empty and not nested too deep.
fn body_text<'a>(body: &'a [u8], limits: &Limits) -> Result<&'a str, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::MalformedJson("the body is empty".into()));
    }
    check_depth(body, limits.max_nesting_depth)?;
    std::str::from_utf8(body)
        .map(str::trim)
        .map_err(|e| RequestError::MalformedJson(format!("the body is not UTF-8: {e}")))
}

/// Refuses bodies nested deeper than `limit` arrays/objects, in one pass over the bytes (string
/// contents, most of a body, are skipped with `memchr`).
fn check_depth(body: &[u8], limit: usize) -> Result<(), RequestError> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // Jump to the closing quote, stepping over escapes.
                at += 1;
                while let Some(offset) = body
                    .get(at..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                {
                    at += offset;
                    if body[at] == b'\\' {
                        at += 2;
                        continue;
                    }
                    break;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(RequestError::MalformedJson(format!(
                        "the body nests arrays and objects deeper than {limit} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// A type error means the JSON is sound but not an object; anything else is malformed JSON.
fn classify(error: serde_json::Error) -> RequestError {
    match error.classify() {
        serde_json::error::Category::Data => RequestError::NotAnObject,
        _ => RequestError::MalformedJson(error.to_string()),
    }
}

/// The envelope fields that may reach events.
#[derive(Debug, Default)]
struct Envelope<'a> {
    /// `receivedAt`, formatted once per request.
    received_at: String,
    context: Option<TopLevel<'a>>,
    integrations: Option<TopLevel<'a>>,
    sent_at: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<&'a RawValue>,
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// The entries of a raw JSON object; `None` for anything else.
fn object_entries(raw: &RawValue) -> Option<TopLevel<'_>> {
    if raw.get().starts_with('{') {
        serde_json::from_str(raw.get()).ok()
    } else {
        None
    }
}

fn string_value(raw: &RawValue) -> Option<String> {
    if !raw.get().starts_with('"') {
        return None;
    }
    serde_json::from_str::<String>(raw.get())
        .ok()
        .filter(|s| !s.is_empty())
}

fn write_key_of(fields: &TopLevel<'_>) -> Option<String> {
    fields.get("writeKey").and_then(|raw| string_value(raw))
}

fn too_large(index: usize, text: &str, limits: Limits) -> Rejection {
    rejection(
        index,
        "event_too_large",
        format!(
            "the event is {} bytes; the limit is {} bytes per event",
            text.len(),
            limits.max_event_bytes
        ),
        text,
    )
}

fn rejection(index: usize, code: &'static str, message: String, payload: &str) -> Rejection {
    Rejection {
        index,
        code,
        message,
        payload: crate::text::cut(payload, REJECTED_PAYLOAD_KEEP_BYTES).to_owned(),
    }
}

/// Normalises one event already known to be within the size limit.
fn admit(
    request: &mut ParsedRequest,
    index: usize,
    raw: &str,
    endpoint_type: Option<EventType>,
    fields: TopLevel<'_>,
    envelope: &Envelope<'_>,
    ctx: &IngestContext,
) {
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

fn kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// Reads an identifier that may be sent as a string or a number. `Ok(None)` when absent.
fn take_id(fields: &mut TopLevel<'_>, key: &str) -> Result<Option<String>, Invalid> {
    let Some(raw) = fields.remove(key) else {
        return Ok(None);
    };
    match raw.get().as_bytes().first() {
        Some(b'"') => Ok(string_value(raw)),
        Some(b'-' | b'0'..=b'9') => Ok(Some(raw.get().to_owned())),
        _ if is_null(raw) => Ok(None),
        _ => Err(invalid(
            "invalid_field",
            format!("`{key}` must be a string or a number, not {}", kind(raw)),
        )),
    }
}

fn take_timestamp(fields: &mut TopLevel<'_>, key: &str) -> Result<Option<DateTime<Utc>>, Invalid> {
    match fields.remove(key) {
        None => Ok(None),
        Some(raw) if is_null(raw) => Ok(None),
        Some(raw) => timestamp_value(raw, key).map(Some),
    }
}

fn timestamp_value(raw: &RawValue, key: &str) -> Result<DateTime<Utc>, Invalid> {
    string_value(raw)
        .as_deref()
        .and_then(parse_timestamp)
        .ok_or_else(|| {
            invalid(
                "invalid_timestamp",
                format!("`{key}` is not an ISO-8601 timestamp"),
            )
        })
}

fn take_object<'a>(fields: &mut TopLevel<'a>, key: &str) -> Result<Option<TopLevel<'a>>, Invalid> {
    match fields.remove(key) {
        None => Ok(None),
        Some(raw) if is_null(raw) => Ok(None),
        Some(raw) => object_entries(raw).map(Some).ok_or_else(|| {
            invalid(
                "invalid_field",
                format!("`{key}` must be an object, not {}", kind(raw)),
            )
        }),
    }
}

/// Adds each envelope key the event does not already have (the event's keys win).
fn merge_under<'a>(
    own: Option<TopLevel<'a>>,
    defaults: Option<&TopLevel<'a>>,
) -> Option<TopLevel<'a>> {
    match (own, defaults) {
        (own, None) => own,
        (None, Some(defaults)) => Some(defaults.clone()),
        (Some(mut own), Some(defaults)) => {
            for (key, value) in defaults {
                own.entry(key.clone()).or_insert(value);
            }
            Some(own)
        }
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let needs_escape = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    if !text.bytes().any(needs_escape) {
        out.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Writes `"key":` (with a separating comma after the first member).
fn push_key(out: &mut String, key: &str) {
    if out.len() > 1 {
        out.push(',');
    }
    push_json_string(out, key);
    out.push(':');
}

fn push_string(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_string(out, value);
}

fn push_object(out: &mut String, key: &str, entries: &TopLevel<'_>, extra: Option<(&str, &str)>) {
    push_key(out, key);
    let mut object = String::with_capacity(64);
    object.push('{');
    for (name, value) in entries {
        push_key(&mut object, &name.0);
        object.push_str(value.get());
    }
    if let Some((name, value)) = extra {
        push_string(&mut object, name, value);
    }
    object.push('}');
    out.push_str(&object);
}

fn normalise(
    mut fields: TopLevel<'_>,
    endpoint_type: Option<EventType>,
    envelope: &Envelope<'_>,
    ctx: &IngestContext,
) -> Result<Event, Invalid> {
    fields.retain(|_, raw| !is_null(raw));
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
            Some(raw) => string_value(raw)
                .as_deref()
                .and_then(EventType::from_name)
                .ok_or_else(|| {
                    invalid(
                        "invalid_field",
                        "`type` must be one of identify, track, page, screen, group, alias",
                    )
                })?,
        },
    };
    fields.remove("type");

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

    let mut required_id: Option<(&str, String)> = None;
    match event_type {
        EventType::Track => match fields.get("event") {
            Some(raw) if raw.get().starts_with('"') => {
                if string_value(raw).is_none() {
                    return Err(invalid("missing_field", "`event` is required for track"));
                }
            }
            None => return Err(invalid("missing_field", "`event` is required for track")),
            Some(raw) => {
                return Err(invalid(
                    "invalid_field",
                    format!("`event` must be a string, not {}", kind(raw)),
                ))
            }
        },
        EventType::Group => {
            let group_id = take_id(&mut fields, "groupId")?
                .ok_or_else(|| invalid("missing_field", "`groupId` is required for group"))?;
            required_id = Some(("groupId", group_id));
        }
        EventType::Alias => {
            let previous_id = take_id(&mut fields, "previousId")?
                .ok_or_else(|| invalid("missing_field", "`previousId` is required for alias"))?;
            required_id = Some(("previousId", previous_id));
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
        None => match envelope.sent_at {
            Some(raw) => Some(timestamp_value(raw, "sentAt")?),
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
    let client_ip = ctx.client_ip.map(|ip| ip.to_string());
    let missing_ip = client_ip.as_deref().filter(|_| {
        context
            .as_ref()
            .is_none_or(|c| c.get("ip").is_none_or(|ip| is_null(ip)))
    });
    if let (Some(context), Some(_)) = (context.as_mut(), missing_ip) {
        context.remove("ip");
    }

    let mut out = String::with_capacity(512);
    out.push('{');
    for (key, value) in &fields {
        push_key(&mut out, &key.0);
        out.push_str(value.get());
    }
    push_string(&mut out, "type", event_type.as_str());
    push_string(&mut out, "messageId", &message_id);
    if let Some(id) = &user_id {
        push_string(&mut out, "userId", id);
    }
    if let Some(id) = &anonymous_id {
        push_string(&mut out, "anonymousId", id);
    }
    if let Some((key, id)) = &required_id {
        push_string(&mut out, key, id);
    }
    match (&context, missing_ip) {
        (Some(context), ip) => push_object(&mut out, "context", context, ip.map(|ip| ("ip", ip))),
        (None, Some(ip)) => push_object(&mut out, "context", &TopLevel::new(), Some(("ip", ip))),
        (None, None) => {}
    }
    if let Some(integrations) = &integrations {
        push_object(&mut out, "integrations", integrations, None);
    }
    if let Some(original) = client_timestamp {
        push_key(&mut out, "originalTimestamp");
        push_timestamp(&mut out, original);
    }
    if let Some(sent) = sent_at {
        push_key(&mut out, "sentAt");
        push_timestamp(&mut out, sent);
    }
    push_string(&mut out, "receivedAt", &envelope.received_at);
    push_key(&mut out, "timestamp");
    push_timestamp(&mut out, timestamp);
    out.push('}');
    Ok(Event::new(
        out,
        message_id,
        event_type,
        user_id,
        anonymous_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ctx() -> IngestContext {
        IngestContext {
            received_at: Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap(),
            client_ip: Some("192.0.2.1".parse().unwrap()),
            limits: Limits::default(),
        }
    }

    fn nested(depth: usize) -> String {
        // The event object itself is one level.
        format!(
            r#"{{"userId":"u","event":"E","properties":{}"x"{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    #[test]
    fn nesting_is_limited_and_strings_do_not_count() {
        let limit = Limits::default().max_nesting_depth;
        let ok = parse_single(EventType::Track, nested(limit).as_bytes(), &ctx()).unwrap();
        assert_eq!(ok.accepted.len(), 1);
        let deep = parse_single(EventType::Track, nested(limit + 1).as_bytes(), &ctx());
        assert!(matches!(deep, Err(RequestError::MalformedJson(m)) if m.contains("64 levels")));
        let brackets_in_strings = format!(
            r#"{{"userId":"u","event":"E","properties":{{"s":"{}\"{}"}}}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        let ok = parse_single(EventType::Track, brackets_in_strings.as_bytes(), &ctx()).unwrap();
        assert_eq!(ok.accepted.len(), 1);
        for broken in [
            r#"{"a":"\"#,
            r#"{"a":"\\"#,
            r#"{"a":""#,
            "\"",
            "{\"a\":[[[[",
        ] {
            assert!(
                matches!(
                    parse_single(EventType::Track, broken.as_bytes(), &ctx()),
                    Err(RequestError::MalformedJson(_))
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn nested_values_pass_through_unchanged_and_ip_fills_a_null() {
        let body = r#"{"userId":"u","event":"E","properties":{"b":[1,2.50,{"z":null}],"a":"\u00e9"},"context":{"ip":null,"page":{"url":"https://x"}}}"#;
        let parsed = parse_single(EventType::Track, body.as_bytes(), &ctx()).unwrap();
        let fields = parsed.accepted[0].fields();
        assert_eq!(
            fields["properties"],
            serde_json::json!({"b": [1, 2.5, {"z": null}], "a": "é"})
        );
        assert_eq!(fields["context"]["ip"], "192.0.2.1");
        assert_eq!(fields["context"]["page"]["url"], "https://x");
        let json = parsed.accepted[0].json();
        assert!(
            json.contains(r#"[1,2.50,{"z":null}]"#),
            "raw values are copied as sent: {json}"
        );
        assert_eq!(json.matches("\"ip\"").count(), 1);
    }
}
