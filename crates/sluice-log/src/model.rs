use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::{Event, Rejection};
use std::time::Duration;

/// One request's worth of events, appended atomically.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub source_id: String,
    pub received_at: DateTime<Utc>,
    pub accepted: Vec<Event>,
    pub rejected: Vec<Rejection>,
}

/// What happened to one accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Stored under this sequence number.
    Appended(u64),
    /// Already stored within the dedupe window, under this sequence number.
    Duplicate(u64),
}

impl Admission {
    pub fn seq(self) -> u64 {
        match self {
            Admission::Appended(seq) | Admission::Duplicate(seq) => seq,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub admissions: Vec<Admission>,
}

impl AppendOutcome {
    pub fn duplicates(&self) -> usize {
        self.admissions
            .iter()
            .filter(|a| matches!(a, Admission::Duplicate(_)))
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub seq: u64,
    pub source_id: String,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub received_at: DateTime<Utc>,
    /// The normalised Segment event.
    #[schema(value_type = Object)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RejectedEvent {
    pub source_id: String,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub received_at: DateTime<Utc>,
    pub index: usize,
    pub code: String,
    pub message: String,
    pub payload: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub events: u64,
    /// Bytes of stored event JSON.
    pub bytes: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// How long and how much the log keeps (before destination cursors are taken into account).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log cannot persist right now (disk full, I/O error); the client should retry.
    #[error("the event log cannot persist right now: {0}")]
    Unavailable(String),
    /// The log is shutting down.
    #[error("the event log is closed")]
    Closed,
    #[error("event log storage error: {0}")]
    Storage(String),
}
