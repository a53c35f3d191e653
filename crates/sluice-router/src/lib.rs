//! The delivery engine.
//!
//! This crate owns getting accepted events to destinations: one worker per enabled
//! destination reading the log from its durable cursor, the identity index that stitches
//! anonymous activity to people, ordering per person, batching, rate limits, retries with
//! persisted backoff, the held list, dead letters and the delivery log. It must not accept
//! events, serve HTTP, or know any destination's wire format (that is `sluice-destinations`);
//! all of its state lives in the store, so a restart resumes exactly where it stopped.

pub mod identity;
mod limiter;
mod worker;

pub use identity::IdentityIndex;
pub use worker::{backoff_delay, CREDENTIALS_REJECTED};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::Clock;
use sluice_destinations::{BuildContext, Destination, Registry};
use sluice_log::EventLog;
use sluice_store::{DestinationRecord, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use worker::{Worker, WorkerContext};

/// Delivery settings shared by every destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterConfig {
    /// How often an idle worker looks for new events.
    pub poll_interval: Duration,
    /// How long an event is retried before it is dead-lettered.
    pub retry_window: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Events read ahead of the cursor, per destination.
    pub window_events: usize,
    /// Requests in flight at once, per destination.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            retry_window: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            window_events: 10_000,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What a destination is doing, for the API and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DestinationStatus {
    /// `active`, `disabled`, `credentials_rejected`, `stopped`.
    pub state: String,
    /// Events delivered since this process started.
    pub delivered: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    pub failed_requests: u64,
    /// Events waiting in the held list.
    pub held: u64,
    pub cursor: u64,
    /// Events in the log above the cursor: not yet delivered (or held, or skipped).
    pub backlog: u64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "sluice_core::time::serialize_option")]
    pub backing_off_until: Option<DateTime<Utc>>,
}

pub(crate) type SharedStatus = Arc<Mutex<HashMap<String, DestinationStatus>>>;

struct Running {
    /// The record the worker was started with; any change restarts it.
    record: DestinationRecord,
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a stopping worker may take to finish its in-flight requests before it is
/// aborted (safe: what it did not record is above the cursor and is sent again).
const WORKER_STOP_GRACE: Duration = Duration::from_secs(5);

impl Running {
    async fn stop_within(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!(destination = %self.record.name, "delivery did not stop in time; aborted (unrecorded requests are sent again)");
            self.task.abort();
        }
    }
}

/// The delivery engine's handle.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    cx: Arc<WorkerContext>,
    registry: Registry,
    build: BuildContext,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    stop: watch::Sender<bool>,
}

impl Router {
    /// Loads the identity index and starts the identity follower and the supervisor, which
    /// keeps one worker per enabled destination (checked every second, and at once on
    /// [`Router::sync`]).
    pub async fn start(
        log: Arc<dyn EventLog>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        registry: Registry,
        config: RouterConfig,
    ) -> Result<Self, StoreError> {
        let identity = Arc::new(IdentityIndex::load(store.as_ref()).await?);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(identity.clone().run(
            log.clone(),
            store.clone(),
            config.poll_interval,
            stop_rx.clone(),
        ));
        let router = Self {
            inner: Arc::new(Inner {
                cx: Arc::new(WorkerContext {
                    log,
                    store,
                    clock,
                    identity,
                    config,
                    status: SharedStatus::default(),
                }),
                registry,
                build: BuildContext::new(config.request_timeout),
                running: tokio::sync::Mutex::new(HashMap::new()),
                stop,
            }),
        };
        let supervisor = router.clone();
        let mut stop_rx = stop_rx;
        tokio::spawn(async move {
            loop {
                if let Err(error) = supervisor.sync().await {
                    tracing::warn!(%error, "could not load the destinations; will retry");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(router)
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The HTTP client settings destinations are built with.
    pub fn build_context(&self) -> &BuildContext {
        &self.inner.build
    }

    /// Builds a destination from a record (validating its configuration).
    pub fn build(
        &self,
        record: &DestinationRecord,
    ) -> Result<Arc<dyn Destination>, sluice_destinations::ConfigError> {
        self.inner
            .registry
            .build(&record.kind, &record.config, &self.inner.build)
    }

    pub fn identity(&self) -> &IdentityIndex {
        &self.inner.cx.identity
    }

    /// Brings the workers in line with the store: starts the enabled destinations, stops the
    /// disabled, paused and deleted ones, restarts those whose record changed.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let records = self.inner.cx.store.list_destinations().await?;
        let mut running = self.inner.running.lock().await;
        let wanted: HashMap<&str, &DestinationRecord> = records
            .iter()
            .filter(|r| r.enabled && r.paused_reason.is_none())
            .map(|r| (r.id.as_str(), r))
            .collect();
        let stale: Vec<String> = running
            .iter()
            .filter(|(id, worker)| {
                wanted.get(id.as_str()) != Some(&&worker.record) || worker.task.is_finished()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(worker) = running.remove(&id) {
                worker.stop_within(WORKER_STOP_GRACE).await;
            }
        }
        // Destinations without a worker still show where their cursor is.
        let mut idle_cursors = HashMap::new();
        for record in records.iter().filter(|r| !running.contains_key(&r.id)) {
            if let Some(cursor) = self.inner.cx.store.destination_cursor(&record.id).await? {
                idle_cursors.insert(record.id.clone(), cursor);
            }
        }
        {
            let mut statuses = self
                .inner
                .cx
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            statuses.retain(|id, _| records.iter().any(|r| &r.id == id));
            for (id, cursor) in idle_cursors {
                statuses.entry(id).or_default().cursor = cursor;
            }
            for record in &records {
                let status = statuses.entry(record.id.clone()).or_default();
                if !record.enabled {
                    status.state = "disabled".into();
                } else if let Some(reason) = &record.paused_reason {
                    status.state = "credentials_rejected".into();
                    status.last_error = Some(reason.clone());
                }
            }
        }
        for (id, record) in wanted {
            if running.contains_key(id) {
                continue;
            }
            let destination = match self.build(record) {
                Ok(destination) => destination,
                Err(error) => {
                    tracing::warn!(destination = %record.name, %error, "cannot build the destination");
                    continue;
                }
            };
            // One destination that cannot start must not keep the others from starting.
            let worker = match Worker::start(record.clone(), destination, self.inner.cx.clone())
                .await
            {
                Ok(worker) => worker,
                Err(error) => {
                    tracing::warn!(destination = %record.name, %error, "cannot start delivery; will retry");
                    continue;
                }
            };
            let (stop, stop_rx) = watch::channel(false);
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(worker.run(stop_rx, wake.clone()));
            tracing::info!(destination = %record.name, kind = %record.kind, "delivery started");
            running.insert(
                id.to_owned(),
                Running {
                    record: record.clone(),
                    stop,
                    wake,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Tells a destination's worker that its held list changed (after a replay).
    pub async fn wake(&self, destination_id: &str) {
        if let Some(worker) = self.inner.running.lock().await.get(destination_id) {
            worker.wake.notify_one();
        }
    }

    pub fn status(&self, destination_id: &str) -> DestinationStatus {
        let mut status = self
            .inner
            .cx
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(destination_id)
            .cloned()
            .unwrap_or_default();
        // The index is at most a poll behind the log; what lies above the cursor is waiting.
        let newest = self.inner.cx.identity.indexed_through();
        status.backlog = newest.saturating_sub(status.cursor);
        status
    }

    /// Stops every worker after its in-flight requests finish and records their outcome.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let mut running = self.inner.running.lock().await;
        for (_, worker) in running.drain() {
            worker.stop_within(WORKER_STOP_GRACE).await;
        }
    }
}
