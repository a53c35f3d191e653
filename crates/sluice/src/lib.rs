//! The sluice binary's library half: configuration, wiring of the layers into one server, and
//! the HTTP server loop. It owns process concerns (config, data folder, admin token, signals,
//! metrics recorder, background retention) and no domain logic: events are parsed in
//! `sluice-core`, collected in `sluice-collector`, kept in `sluice-log`, managed through
//! `sluice-control`.

pub mod config;
pub mod duration;
pub mod server;
mod tls;

pub use config::Config;
pub use server::{start, RunningServer};
