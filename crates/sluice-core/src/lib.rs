//! The sluice event model.
//!
//! This crate owns what an event *is*: the Segment message shapes, how a request body becomes
//! normalised events (validation, clock-skew correction, envelope merging), the limits that
//! apply to them, and the injected [`Clock`]. It performs no I/O and knows nothing about HTTP,
//! storage or destinations; everything above it (collector, log, router) builds on these types.

pub mod clock;
pub mod event;
pub mod ingest;
pub mod limits;
pub mod text;
pub mod time;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Event, EventType};
pub use ingest::{
    parse_batch, parse_single, IngestContext, ParsedRequest, Rejection, RequestError,
};
pub use limits::Limits;
