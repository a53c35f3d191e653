//! A Customer.io Track API-compatible test server.
//!
//! This crate owns a local stand-in for `track.customer.io` that sluice's end-to-end tests and
//! benchmark deliver to: Basic auth (standard and URL-safe base64), the v1 endpoints the official
//! clients call, v2 `/entity` and `/batch` with the documented type × action matrix, op shapes and
//! size limits (200 / 207 / 400 / 401 answers in the documented shapes), event-id dedupe, an
//! optional token-bucket rate cap, scripted responses, seeded chaos, artificial latency, a
//! record of every request and every accepted operation (off in bench mode), and counters with a
//! delivery-latency histogram for benchmarks. The same state is reachable from Rust
//! ([`CioTestServer`]) and over HTTP under `/_test/*` (used by the `sluice-cio-test-server`
//! binary). It must not depend on other sluice crates, reach the real Customer.io, or be used
//! outside tests and benchmarks.

mod auth;
mod control;
mod rng;
mod server;
mod stats;
mod v1;
mod validate;

pub use server::{AcceptedOp, Chaos, CioOptions, CioTestServer, RecordedRequest, Scripted};
pub use validate::{
    is_ulid, ulid_time_ms, validate_op, OpError, MAX_ATTRIBUTES, MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES, MAX_BATCH_ITEM_BYTES, MAX_BATCH_REQUEST_BYTES,
    MAX_ENTITY_REQUEST_BYTES, MAX_EVENT_DATA_BYTES, MAX_EVENT_NAME_BYTES, MAX_IDENTIFIER_BYTES,
    MAX_OBJECT_ATTRIBUTES_BYTES, MAX_UNIX_SECONDS,
};
