//! The collection API.
//!
//! This crate owns everything a Segment library talks to under `/v1/*`: routing (full and short
//! paths, batch and import), write-key authentication in all its forms, body limits,
//! decompression, timeouts, CORS, per-source rate limits, the JSON error shape, and the hand-off
//! of parsed events to the [`sluice_log::EventLog`]; and what browsers and mobile SDKs load: the
//! settings documents, `/sluice.js` and its footer snippet. It answers 200 only after the log said the
//! events are durable. It must not deliver events, hold consumer state, or serve the admin API.

mod auth;
mod body;
pub mod browser;
mod cors;
mod error;
mod handler;
mod net;
mod rate_limit;

pub use error::ApiError;
pub use handler::{routes, Collector, CollectorConfig};
pub use net::{client_ip, TrustedProxies};
