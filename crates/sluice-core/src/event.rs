//! A normalised Segment event, as it is stored in the log and handed to destinations.

use serde::{Deserialize, Serialize};
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

/// A validated, normalised event. Invariants (established by [`crate::ingest`]): it is a JSON
/// object with a valid `type`, a string `messageId`, at least one of `userId`/`anonymousId` as a
/// non-empty string, `receivedAt` and `timestamp`, and no `writeKey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event(Map<String, Value>);

impl Event {
    /// Wraps an already-normalised object (for example one read back from the log).
    pub fn from_normalised(fields: Map<String, Value>) -> Self {
        Self(fields)
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_fields(self) -> Map<String, Value> {
        self.0
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn event_type(&self) -> Option<EventType> {
        self.str_field("type").and_then(EventType::from_name)
    }

    pub fn message_id(&self) -> &str {
        self.str_field("messageId").unwrap_or_default()
    }

    pub fn user_id(&self) -> Option<&str> {
        self.str_field("userId")
    }

    pub fn anonymous_id(&self) -> Option<&str> {
        self.str_field("anonymousId")
    }

    pub fn to_json(&self) -> String {
        // A map of JSON values always serialises.
        serde_json::to_string(&self.0).unwrap_or_default()
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
