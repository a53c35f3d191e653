//! A normalised Segment event, as it is stored in the log and handed to destinations.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Identify,
        EventType::Track,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Identify => "identify",
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    /// Parses a full type name (`"track"`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Parses an endpoint path segment: the full name or analytics-next's first-letter short
    /// path (`t`, `i`, `p`, `s`, `g`, `a`).
    pub fn from_path(segment: &str) -> Option<Self> {
        if segment.len() == 1 {
            Self::ALL
                .into_iter()
                .find(|t| t.as_str().starts_with(segment))
        } else {
            Self::from_name(segment)
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, normalised event, held as its JSON text (which is what the log stores and the
/// API returns) plus the few fields every layer asks for. Invariants (established by
/// [`crate::ingest`]): a JSON object with a valid `type`, a string `messageId`, at least one of
/// `userId`/`anonymousId` as a non-empty string, `receivedAt` and `timestamp`, no `writeKey`.
#[derive(Debug, Clone)]
pub struct Event {
    /// Valid JSON by construction (built by the normaliser or read back from the log).
    json: String,
    message_id: String,
    event_type: Option<EventType>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
}

/// The fields read back from stored JSON.
#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "type")]
    event_type: Option<EventType>,
    #[serde(rename = "messageId", default)]
    message_id: String,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<String>,
}

impl Event {
    /// Built by the normaliser, which already knows the identity fields.
    pub(crate) fn new(
        json: String,
        message_id: String,
        event_type: EventType,
        user_id: Option<String>,
        anonymous_id: Option<String>,
    ) -> Self {
        Self {
            json,
            message_id,
            event_type: Some(event_type),
            user_id,
            anonymous_id,
        }
    }

    /// Reads an event back from its stored JSON.
    pub fn from_json(json: String) -> Result<Self, serde_json::Error> {
        let identity: Identity = serde_json::from_str(&json)?;
        Ok(Self {
            json,
            message_id: identity.message_id,
            event_type: identity.event_type,
            user_id: identity.user_id,
            anonymous_id: identity.anonymous_id,
        })
    }

    /// Wraps an already-normalised object (tests, fixtures).
    pub fn from_normalised(fields: Map<String, Value>) -> Self {
        let json = serde_json::to_string(&fields).unwrap_or_else(|_| "{}".into());
        // Serialised JSON always reads back.
        Self::from_json(json).unwrap_or_else(|_| Self {
            json: "{}".into(),
            message_id: String::new(),
            event_type: None,
            user_id: None,
            anonymous_id: None,
        })
    }

    /// The event as a JSON object (parses the text).
    pub fn fields(&self) -> Map<String, Value> {
        serde_json::from_str(&self.json).unwrap_or_default()
    }

    pub fn event_type(&self) -> Option<EventType> {
        self.event_type
    }

    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    pub fn anonymous_id(&self) -> Option<&str> {
        self.anonymous_id.as_deref()
    }

    /// The stored JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// `(messageId, JSON text)`, without copying the text.
    pub fn into_message_id_and_json(self) -> (String, String) {
        (self.message_id, self.json)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.json).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_map_to_types() {
        for (path, expected) in [
            ("t", EventType::Track),
            ("i", EventType::Identify),
            ("p", EventType::Page),
            ("s", EventType::Screen),
            ("g", EventType::Group),
            ("a", EventType::Alias),
            ("track", EventType::Track),
            ("alias", EventType::Alias),
        ] {
            assert_eq!(EventType::from_path(path), Some(expected), "{path}");
        }
        assert_eq!(EventType::from_path("x"), None);
        assert_eq!(EventType::from_path("b"), None);
        assert_eq!(EventType::from_path("tracks"), None);
    }
}
