//! The control plane.
//!
//! This crate owns the admin REST API under `/api/v1/*` (and, later, the dashboard): managing
//! sources and their write keys, reading back what arrived, and managing destinations, their
//! delivery log and dead letters (through the router, which it syncs after every change). Every route requires the admin
//! token, compared in constant time. It changes state only through the [`sluice_store::Store`]
//! and reads events only through the [`sluice_log::EventLog`]; it never writes events and never
//! shows a secret other than a source's own write key to the admin.

mod admin;
mod dashboard;
mod destinations;
mod error;
mod sessions;

pub use admin::AdminState;
pub use sessions::Sessions;

/// The admin API and the dashboard.
pub fn routes(state: AdminState) -> axum::Router {
    admin::routes(state.clone()).merge(dashboard::routes(state))
}
pub use error::AdminError;
