//! The store's records for delivery: destinations, their progress (cursor, held events, dead
//! letters, backoff), the delivery log, and the identity links learned from the log.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationRecord {
    pub id: String,
    pub name: String,
    /// The registry kind (`"customerio"`, `"webhook"`).
    pub kind: String,
    pub enabled: bool,
    /// Source ids it receives; empty = every source.
    pub sources: Vec<String>,
    /// The kind's configuration, secrets included (mask before showing it).
    pub config: Value,
    /// Set while the destination is paused by sluice (`"credentials_rejected: …"`); cleared when
    /// the configuration changes.
    pub paused_reason: Option<String>,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl DestinationRecord {
    pub fn receives_from(&self, source_id: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == source_id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDestination {
    pub name: String,
    pub kind: String,
    pub enabled: bool,
    pub sources: Vec<String>,
    pub config: Value,
}

/// A change to a destination; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationUpdate {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub sources: Option<Vec<String>>,
    pub config: Option<Value>,
    pub paused_reason: Option<Option<String>>,
}

/// An event moved out of log order so the cursor could pass it: it failed and is waiting for
/// a retry, or it belongs to a person who has such an event before it, or it is being replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldEvent {
    pub seq: u64,
    pub person: String,
    pub source_id: String,
    pub event_json: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it first failed; the retry window counts from here (`None`: never failed, held
    /// only behind an earlier event of the same person).
    #[serde(serialize_with = "sluice_core::time::serialize_option")]
    pub first_failed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// An event that left the pipeline without being delivered, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub seq: u64,
    pub source_id: String,
    pub person: String,
    pub message_id: String,
    pub event_type: String,
    /// The stored event.
    #[schema(value_type = Object)]
    pub event: Box<serde_json::value::RawValue>,
    pub reason: String,
    /// The destination's answer (status and body), when there was one.
    pub response: Option<String>,
    pub attempts: u32,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub failed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub seq: u64,
    pub source_id: String,
    pub person: String,
    pub message_id: String,
    pub event_type: String,
    pub event_json: String,
    pub reason: String,
    pub response: Option<String>,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these ids.
    pub ids: Vec<i64>,
    /// Only those whose reason contains this text.
    pub reason_contains: Option<String>,
    /// Only those of this person.
    pub person: Option<String>,
    /// Page: ids above this one.
    pub after_id: Option<i64>,
    pub limit: Option<usize>,
}

/// One attempt (or one skipped event) in a destination's delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub id: i64,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub at: DateTime<Utc>,
    /// `delivered`, `partial`, `failed`, `refused`, `unauthorized`, `skipped`, `dead_lettered`.
    pub outcome: String,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    /// The messageIds the attempt carried.
    pub message_ids: Vec<String>,
    /// The exact body sent (cut at 64 KiB).
    pub request_body: String,
    pub response_body: String,
    pub error: Option<String>,
    /// Fields dropped or cut to fit the destination's limits.
    pub warnings: Vec<String>,
}

/// A learned link: from `seq` on, `anonymous_id` is `user_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityLink {
    pub anonymous_id: String,
    pub user_id: String,
    pub seq: u64,
}

/// What the identity index learned from a stretch of the log, committed at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityBatch {
    pub links: Vec<IdentityLink>,
    /// userIds seen for the first time, with the seq of that first sighting.
    pub new_users: Vec<(String, u64)>,
    /// Every event up to and including this seq has been read.
    pub indexed_through: u64,
}

/// A destination's whole-destination backoff after failed requests, persisted so a restart
/// neither hammers a struggling destination nor forgets how long it has been failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backoff {
    pub consecutive_failures: u32,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: String,
}

/// Everything one step of a destination worker changes, written in one transaction: nothing
/// is passed by the cursor before its held copy or dead letter is durable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub cursor: Option<u64>,
    pub hold: Vec<HeldEvent>,
    /// Held events that were delivered, skipped or dead-lettered.
    pub release: Vec<u64>,
    /// Held events whose retry schedule changed.
    pub reschedule: Vec<HeldEvent>,
    pub dead_letters: Vec<NewDeadLetter>,
    pub deliveries: Vec<NewDeliveryRecord>,
    /// `Some(None)` clears the backoff.
    pub backoff: Option<Option<Backoff>>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        *self == Progress::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDeliveryRecord {
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub message_ids: Vec<String>,
    pub request_body: String,
    pub response_body: String,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// The delivery log keeps this many records per destination.
pub const DELIVERY_LOG_LIMIT: usize = 1000;
