//! Control-plane state.
//!
//! This crate owns the [`Store`] trait and its backends: sources and their write keys today,
//! destination configurations, cursors, held events, retry schedules and dead letters as the
//! router arrives. It holds no events (those are the log's) and knows nothing about HTTP.
//! Methods are named after use cases; there is no generic query API.

mod delivery;
mod sqlite;
mod sqlite_delivery;

pub use delivery::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of client a source collects from; it decides nothing yet but the snippet shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Web,
    #[default]
    Server,
    Mobile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub kind: SourceKind,
    pub write_key: String,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    pub created_at: DateTime<Utc>,
    /// Requests per second this source may send; `None` = unlimited.
    pub rate_limit_per_second: Option<u32>,
    /// Browser origins (`https://shop.example`) allowed to send with this key; empty = any.
    pub allowed_origins: Vec<String>,
}

impl Source {
    /// Whether a browser page of `origin` may send events with this source's key.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewSource {
    pub name: String,
    pub kind: SourceKind,
    pub rate_limit_per_second: Option<u32>,
    pub allowed_origins: Vec<String>,
}

/// A change to a source; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceUpdate {
    pub name: Option<String>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_second: Option<Option<u32>>,
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a {what} named `{name}` already exists")]
    Conflict { what: &'static str, name: String },
    #[error("store error: {0}")]
    Storage(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_source(&self, new: NewSource) -> Result<Source, StoreError>;
    async fn list_sources(&self) -> Result<Vec<Source>, StoreError>;
    async fn source(&self, id: &str) -> Result<Option<Source>, StoreError>;
    /// The source a write key belongs to. Called on every collection request; must be cheap.
    async fn source_by_write_key(&self, write_key: &str) -> Result<Option<Source>, StoreError>;
    async fn update_source(&self, id: &str, update: SourceUpdate) -> Result<Source, StoreError>;
    async fn delete_source(&self, id: &str) -> Result<(), StoreError>;
    /// Gives the source a new write key; the old one stops working at once.
    async fn rotate_write_key(&self, id: &str) -> Result<Source, StoreError>;

    /// Records that a destination has passed every event up to and including `seq`.
    async fn set_destination_cursor(
        &self,
        destination_id: &str,
        seq: u64,
    ) -> Result<(), StoreError>;
    async fn remove_destination_cursor(&self, destination_id: &str) -> Result<(), StoreError>;
    /// The lowest cursor over every destination that exists, enabled or paused: retention must
    /// not delete anything above it.
    async fn lowest_destination_cursor(&self) -> Result<Option<u64>, StoreError>;

    /// Creates a destination whose cursor starts at `cursor` (every event up to it counts as
    /// passed). 409 on a duplicate name.
    async fn create_destination(
        &self,
        new: NewDestination,
        cursor: u64,
    ) -> Result<DestinationRecord, StoreError>;
    async fn list_destinations(&self) -> Result<Vec<DestinationRecord>, StoreError>;
    async fn destination(&self, id: &str) -> Result<Option<DestinationRecord>, StoreError>;
    async fn update_destination(
        &self,
        id: &str,
        update: DestinationUpdate,
    ) -> Result<DestinationRecord, StoreError>;
    /// Deletes a destination and all of its state (cursor, held events, dead letters,
    /// delivery log, backoff).
    async fn delete_destination(&self, id: &str) -> Result<(), StoreError>;
    async fn destination_cursor(&self, destination_id: &str) -> Result<Option<u64>, StoreError>;

    /// Applies one worker step atomically (see [`Progress`]).
    async fn commit_progress(
        &self,
        destination_id: &str,
        progress: Progress,
    ) -> Result<(), StoreError>;
    /// The held events of a destination, oldest first.
    async fn held_events(&self, destination_id: &str) -> Result<Vec<HeldEvent>, StoreError>;
    async fn destination_backoff(
        &self,
        destination_id: &str,
    ) -> Result<Option<Backoff>, StoreError>;
    /// Dead letters, oldest first.
    async fn dead_letters(
        &self,
        destination_id: &str,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    async fn count_dead_letters(&self, destination_id: &str) -> Result<u64, StoreError>;
    /// Moves the matching dead letters back into the held list, due at `now`, and returns how
    /// many; the worker then delivers them in order with the person's other events.
    async fn replay_dead_letters(
        &self,
        destination_id: &str,
        filter: &DeadLetterFilter,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// The delivery log, newest first.
    async fn deliveries(
        &self,
        destination_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Every identity link and how far the index has read the log.
    async fn identity_links(&self) -> Result<(Vec<IdentityLink>, u64), StoreError>;
    async fn record_identities(&self, batch: IdentityBatch) -> Result<(), StoreError>;
    /// The seq at which `user_id` was first seen as a userId, if ever.
    async fn user_first_seen(&self, user_id: &str) -> Result<Option<u64>, StoreError>;

    /// Whether the storage answers (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A fresh write key: 32 random hex characters.
pub fn new_write_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh secret (the admin token, a dashboard session id or CSRF token): 64 hex characters
/// from two random UUIDs, 244 random bits.
pub fn new_secret_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A fresh source id.
pub fn new_source_id() -> String {
    format!("src_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}
