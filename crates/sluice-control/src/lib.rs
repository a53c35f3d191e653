//! The control plane.
//!
//! This crate owns the admin REST API under `/api/v1/*` (and, later, the dashboard): managing
//! sources and their write keys, reading back what arrived, and managing destinations, their
//! delivery log and dead letters (through the router, which it syncs after every change). Every route requires the admin
//! token, compared in constant time. It changes state only through the [`sluice_store::Store`]
//! and reads events only through the [`sluice_log::EventLog`]; it never writes events and never
//! shows a secret other than a source's own write key to the admin.

mod admin;
mod destinations;
mod error;

pub use admin::{routes, AdminState};
pub use error::AdminError;
