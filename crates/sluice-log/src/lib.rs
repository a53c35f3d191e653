//! The durable event log.
//!
//! This crate owns the [`EventLog`] trait, the one place where "accepted" becomes "durable":
//! `append` returns only once the events and their dedupe entries are on disk, each with a log
//! sequence number that is strictly increasing and never reused. It also owns the backend-neutral
//! [`conformance`] suite and the SQLite backend. It must not hold consumer state (cursors, held
//! events, retries, dead letters: those live in the store), nor know about HTTP or destinations.

pub mod conformance;
mod dedupe_index;
mod model;
pub mod sqlite;

pub use model::*;
pub use sqlite::{Durability, SqliteLog, SqliteLogOptions};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The durable, ordered log of accepted events. See the crate docs for the invariants.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends the request's accepted events (deduplicated by `(source, messageId)` within the
    /// dedupe window) and records its rejected events. Returns only when all of it is durable;
    /// one admission per accepted event, in order.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError>;

    /// Changes to the seq of the newest committed event, so readers wake on new events
    /// instead of polling (they should still poll now and then).
    fn appended(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Events with `seq >= from_seq`, oldest first, at most `max`.
    async fn read(&self, from_seq: u64, max: usize) -> Result<Vec<StoredEvent>, LogError>;

    /// The newest events of one source, newest first, optionally only those after `after_seq`.
    async fn recent(
        &self,
        source_id: &str,
        limit: usize,
        after_seq: Option<u64>,
    ) -> Result<Vec<StoredEvent>, LogError>;

    /// The newest rejected events of one source, newest first.
    async fn recent_rejected(
        &self,
        source_id: &str,
        limit: usize,
    ) -> Result<Vec<RejectedEvent>, LogError>;

    async fn stats(&self) -> Result<LogStats, LogError>;

    /// The lowest sequence number that the policy keeps: every event below it is older than
    /// `max_age` or pushes the log over `max_bytes`. `None` when the policy keeps everything.
    /// Callers clamp it to the lowest destination cursor before calling [`EventLog::trim`].
    async fn retention_point(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, LogError>;

    /// Deletes every event with `seq < below_seq`. Sequence numbers are never reused.
    async fn trim(&self, below_seq: u64) -> Result<u64, LogError>;

    /// Forgets dedupe entries and rejected-event records received before `before`.
    async fn expire(
        &self,
        dedupe_before: DateTime<Utc>,
        rejected_before: DateTime<Utc>,
    ) -> Result<(), LogError>;

    /// Finishes the appends already queued, then refuses new ones with [`LogError::Closed`].
    async fn close(&self);
}
