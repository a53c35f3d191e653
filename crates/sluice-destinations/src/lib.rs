//! Destination kinds.
//!
//! This crate owns what each destination is: its configuration (and which fields are secret),
//! how a Segment event maps onto its API ([`Destination::map`]), and one delivery attempt of a
//! batch ([`Destination::deliver`]), classified into delivered, per-item rejections, retryable,
//! permanent or unauthorized. It must not retry, sleep, batch, order, or keep state between
//! attempts: the router owns time, order and durability. A new kind is one file implementing
//! [`DestinationKind`] plus one line in [`registry::builtin`].

pub mod customerio;
mod http;
pub mod registry;
pub mod ulid;
pub mod webhook;

pub use http::MAX_LOGGED_BODY;
pub use registry::{builtin, Registry};

use async_trait::async_trait;
use serde_json::{Map, Value};
use sluice_core::Event;
use std::time::Duration;

/// One event as the router hands it to a destination, with its identity already resolved.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryEvent<'a> {
    /// The event's log sequence number.
    pub seq: u64,
    pub source_id: &'a str,
    pub event: &'a Event,
    /// The event's JSON, parsed once by the router.
    pub fields: &'a Map<String, Value>,
    pub identity: &'a ResolvedIdentity,
}

/// Who an event is about, after identity stitching (see ARCHITECTURE.md, "Identity").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedIdentity {
    /// The event's own userId, else the userId linked to its anonymousId before the event.
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// For an alias: whether `previousId` was only ever an anonymousId (link) or a known userId
    /// (merge), as of the alias's place in the log.
    pub alias: Option<AliasKind>,
}

impl ResolvedIdentity {
    /// The per-person order key: the resolved userId, else the anonymousId.
    pub fn person_key(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.anonymous_id.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasKind {
    /// `previousId` had only been seen as an anonymousId: link it to the userId.
    Link,
    /// `previousId` is a known userId: merge that person into the userId's.
    Merge,
}

/// One operation in a destination's request, already serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub json: String,
}

impl Op {
    pub fn new(value: &Value) -> Self {
        Self {
            json: value.to_string(),
        }
    }
}

/// What a destination makes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Deliver these operations, in this order (each only after the previous was confirmed).
    /// `warnings` name the fields that were dropped or cut to fit the destination's limits.
    Ops { ops: Vec<Op>, warnings: Vec<String> },
    /// The destination cannot take this event (it cannot address the person, say); recorded in
    /// the delivery log with the reason and counted as passed.
    Skip { reason: String },
    /// The event can never be delivered as it is (too large even after dropping fields):
    /// dead-lettered with the reason.
    Reject { reason: String },
}

/// The shape of the requests a destination takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_items: usize,
    pub max_request_bytes: usize,
    pub max_item_bytes: usize,
    /// Requests per second this destination may be sent.
    pub requests_per_second: u32,
}

/// An operation of a batch that the destination refused for good (a 207 per-item error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Index into the batch that was delivered.
    pub index: usize,
    pub reason: String,
}

/// Why a whole request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (5xx, 429, timeouts, connection errors), no sooner than `retry_after`.
    #[error("retryable: {reason}")]
    Retryable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The request as a whole was refused (400); the router narrows it down.
    #[error("refused: {reason}")]
    Permanent { reason: String },
    /// The credentials were rejected (401/403); the destination pauses until they change.
    #[error("credentials rejected: {reason}")]
    Unauthorized { reason: String },
}

/// Everything about one attempt, for the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// The exact body sent.
    pub request_body: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    pub response_body: String,
    /// `Ok` with the per-item rejections (empty when everything was accepted).
    pub result: Result<Vec<ItemError>, DeliveryError>,
}

/// Why a configuration cannot be used; `field` names the offending field (for a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A destination built from its configuration.
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    fn limits(&self) -> BatchLimits;

    /// Maps one event. Pure: the same event and identity always give the same operations, so a
    /// resend after a crash or a replay is deduplicated by the destination.
    fn map(&self, event: &DeliveryEvent<'_>) -> Mapped;

    /// Sends one request holding `ops` (within [`Destination::limits`]). Never retries.
    async fn deliver(&self, ops: &[&Op]) -> DeliveryReport;

    /// Asks the destination whether the credentials are accepted (called when a destination
    /// is created or enabled, and when its credentials change).
    async fn check_credentials(&self) -> Result<(), ConfigError>;
}

/// How the registry builds a kind. One implementation per destination file.
pub trait DestinationKind: Destination + Sized {
    /// The `type` users write (`"customerio"`).
    const KIND: &'static str;
    /// Config fields that are secrets: never returned by the API or logged.
    const SECRET_FIELDS: &'static [&'static str];
    /// Config fields holding URLs whose password and query values may be secrets (a token in
    /// a webhook URL): shown with those parts masked.
    const URL_FIELDS: &'static [&'static str] = &[];

    fn from_config(config: &Value, context: &BuildContext) -> Result<Self, ConfigError>;
}

/// What every destination is built with.
#[derive(Clone, Debug)]
pub struct BuildContext {
    pub http: reqwest::Client,
}

impl BuildContext {
    /// A client with sane timeouts for talking to destinations.
    pub fn new(request_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { http }
    }
}

/// Reads an optional string field of a config object.
pub(crate) fn config_str<'a>(config: &'a Value, field: &str) -> Option<&'a str> {
    config
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Reads a required string field of a config object.
pub(crate) fn required_str<'a>(config: &'a Value, field: &str) -> Result<&'a str, ConfigError> {
    config_str(config, field).ok_or_else(|| ConfigError::new(field, "is required"))
}

/// Reads an optional positive integer field of a config object.
pub(crate) fn config_u64(config: &Value, field: &str) -> Result<Option<u64>, ConfigError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| ConfigError::new(field, "must be a positive integer")),
    }
}
