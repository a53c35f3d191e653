//! One destination's worker: reads the log from the cursor, delivers in order per person, and
//! moves the cursor only past events that are delivered, skipped, dead-lettered or held.
//!
//! Entries are the events the worker holds in memory: those read from the log above the
//! cursor ("window" entries) and those in the durable held list ("held" entries). A person's
//! entries go out one operation at a time, in seq order. A retryable failure moves the person
//! (that entry and the person's later ones) to the held list with a persisted schedule, so the
//! cursor can pass them while everyone else flows.

use crate::identity::IdentityIndex;
use crate::limiter::RateLimiter;
use crate::{DestinationStatus, RouterConfig, SharedStatus};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sluice_core::text::cut;
use sluice_core::{Clock, Event};
use sluice_destinations::{
    DeliveryError, DeliveryEvent, Destination, Mapped, Op, ResolvedIdentity, MAX_LOGGED_BODY,
};
use sluice_log::{EventLog, StoredEvent};
use sluice_store::{
    Backoff, DestinationRecord, DestinationUpdate, HeldEvent, NewDeadLetter, NewDeliveryRecord,
    Progress, Store, StoreError,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The reason stored when a destination pauses itself on a 401/403.
pub const CREDENTIALS_REJECTED: &str = "credentials_rejected";

pub struct WorkerContext {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub identity: Arc<IdentityIndex>,
    pub config: RouterConfig,
    pub status: SharedStatus,
}

/// An event the worker is responsible for.
struct Entry {
    seq: u64,
    source_id: String,
    person: String,
    event: Event,
    ops: Vec<Op>,
    warnings: Vec<String>,
    /// Operations already confirmed (an alias merge is identify, then merge).
    next_op: usize,
    held: bool,
    in_flight: bool,
    attempts: u32,
    first_failed_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl Entry {
    fn held_record(&self) -> HeldEvent {
        HeldEvent {
            seq: self.seq,
            person: self.person.clone(),
            source_id: self.source_id.clone(),
            event_json: self.event.json().to_owned(),
            attempts: self.attempts,
            first_failed_at: self.first_failed_at,
            next_attempt_at: self.next_attempt_at.unwrap_or_default(),
            last_error: self.last_error.clone(),
        }
    }

    fn dead_letter(
        &self,
        reason: String,
        response: Option<String>,
        at: DateTime<Utc>,
    ) -> NewDeadLetter {
        NewDeadLetter {
            seq: self.seq,
            source_id: self.source_id.clone(),
            person: self.person.clone(),
            message_id: self.event.message_id().to_owned(),
            event_type: self
                .event
                .event_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            event_json: self.event.json().to_owned(),
            reason,
            response,
            attempts: self.attempts,
            failed_at: at,
        }
    }
}

/// What happened to one operation of a request.
#[derive(Debug, Clone)]
enum OpOutcome {
    Delivered,
    Refused {
        reason: String,
        response: String,
    },
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Unauthorized {
        reason: String,
    },
}

/// What an in-flight request task hands back.
struct Completed {
    seqs: Vec<u64>,
    outcomes: Vec<OpOutcome>,
    records: Vec<NewDeliveryRecord>,
}

pub struct Worker {
    id: String,
    record: DestinationRecord,
    destination: Arc<dyn Destination>,
    limiter: Arc<RateLimiter>,
    cx: Arc<WorkerContext>,
    cursor: u64,
    read_next: u64,
    entries: BTreeMap<u64, Entry>,
    /// Unresolved entries per person, in seq order (the person's head goes first).
    persons: HashMap<String, Vec<u64>>,
    window_len: usize,
    backoff: Option<Backoff>,
    progress: Progress,
    paused: bool,
    /// When the rate limit next allows a request, if it held one back.
    next_slot: Option<tokio::time::Instant>,
}

/// Fields read from an event's JSON, once.
fn parse_fields(event: &Event) -> Map<String, Value> {
    event.fields()
}

impl Worker {
    pub async fn start(
        record: DestinationRecord,
        destination: Arc<dyn Destination>,
        cx: Arc<WorkerContext>,
    ) -> Result<Self, StoreError> {
        let id = record.id.clone();
        let cursor = cx.store.destination_cursor(&id).await?.unwrap_or(0);
        let backoff = cx.store.destination_backoff(&id).await?;
        let limiter = Arc::new(RateLimiter::new(destination.limits().requests_per_second));
        let mut worker = Self {
            id,
            record,
            destination,
            limiter,
            cx,
            cursor,
            read_next: cursor + 1,
            entries: BTreeMap::new(),
            persons: HashMap::new(),
            window_len: 0,
            backoff,
            progress: Progress::default(),
            paused: false,
            next_slot: None,
        };
        worker.load_held().await?;
        Ok(worker)
    }

    /// Adds held events from the store that the worker does not have yet (at start, and after
    /// a replay put dead letters back).
    async fn load_held(&mut self) -> Result<(), StoreError> {
        for held in self.cx.store.held_events(&self.id).await? {
            if self.entries.contains_key(&held.seq) {
                continue;
            }
            let Ok(event) = Event::from_json(held.event_json.clone()) else {
                tracing::warn!(destination = %self.record.name, seq = held.seq, "a held event is not valid JSON; dropping it");
                self.progress.release.push(held.seq);
                continue;
            };
            let stored = StoredEvent {
                seq: held.seq,
                source_id: held.source_id.clone(),
                received_at: Utc::now(),
                event,
            };
            let mut entry = match self.admit(stored).await? {
                Some(entry) => entry,
                None => {
                    self.progress.release.push(held.seq);
                    continue;
                }
            };
            entry.held = true;
            entry.attempts = held.attempts;
            entry.first_failed_at = held.first_failed_at;
            entry.next_attempt_at = Some(held.next_attempt_at);
            entry.last_error = held.last_error;
            self.insert(entry);
        }
        Ok(())
    }

    /// Maps a stored event. `None` when it needs no delivery (skipped or dead-lettered here).
    async fn admit(&mut self, stored: StoredEvent) -> Result<Option<Entry>, StoreError> {
        let fields = parse_fields(&stored.event);
        let identity = self
            .cx
            .identity
            .resolve(self.cx.store.as_ref(), &stored, &fields)
            .await?;
        let mapped = self.destination.map(&DeliveryEvent {
            seq: stored.seq,
            source_id: &stored.source_id,
            event: &stored.event,
            fields: &fields,
            identity: &identity,
        });
        let person = person_key(&identity);
        let entry = Entry {
            seq: stored.seq,
            source_id: stored.source_id,
            person,
            event: stored.event,
            ops: Vec::new(),
            warnings: Vec::new(),
            next_op: 0,
            held: false,
            in_flight: false,
            attempts: 0,
            first_failed_at: None,
            next_attempt_at: None,
            last_error: None,
        };
        let now = self.cx.clock.now();
        match mapped {
            Mapped::Ops { ops, warnings } if !ops.is_empty() => Ok(Some(Entry {
                ops,
                warnings,
                ..entry
            })),
            Mapped::Ops { .. } => Ok(None),
            Mapped::Skip { reason } => {
                self.record_single(&entry, "skipped", reason, now);
                self.count(|s| s.skipped += 1);
                self.outcome("skipped");
                Ok(None)
            }
            Mapped::Reject { reason } => {
                self.record_single(&entry, "dead_lettered", reason.clone(), now);
                self.progress
                    .dead_letters
                    .push(entry.dead_letter(reason, None, now));
                self.count(|s| s.dead_lettered += 1);
                self.outcome("dead_lettered");
                Ok(None)
            }
        }
    }

    /// A delivery-log line for one event that was not sent.
    fn record_single(&mut self, entry: &Entry, outcome: &str, reason: String, at: DateTime<Utc>) {
        self.progress.deliveries.push(NewDeliveryRecord {
            at,
            outcome: outcome.into(),
            http_status: None,
            latency_ms: 0,
            message_ids: vec![entry.event.message_id().to_owned()],
            request_body: String::new(),
            response_body: String::new(),
            error: Some(reason),
            warnings: Vec::new(),
        });
    }

    fn insert(&mut self, entry: Entry) {
        let persons = self.persons.entry(entry.person.clone()).or_default();
        // Held entries loaded later (a replay) may precede window entries: keep seq order.
        match persons.binary_search(&entry.seq) {
            Ok(_) => return,
            Err(at) => persons.insert(at, entry.seq),
        }
        if !entry.held {
            self.window_len += 1;
        }
        self.entries.insert(entry.seq, entry);
    }

    fn person_is_held(&self, person: &str) -> bool {
        self.persons.get(person).is_some_and(|seqs| {
            seqs.iter()
                .any(|seq| self.entries.get(seq).is_some_and(|e| e.held))
        })
    }

    /// Reads new events from the log, up to the window size and the identity index.
    async fn refill(&mut self) -> Result<(), String> {
        let limit = self.cx.config.window_events.saturating_sub(self.window_len);
        let indexed = self.cx.identity.indexed_through();
        if limit == 0 || self.read_next > indexed {
            return Ok(());
        }
        let max = limit.min((indexed - self.read_next + 1) as usize).min(2000);
        let events = self
            .cx
            .log
            .read(self.read_next, max)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.cx.clock.now();
        for stored in events {
            if stored.seq > indexed {
                break;
            }
            self.read_next = stored.seq + 1;
            if !self.record.receives_from(&stored.source_id) {
                continue;
            }
            let Some(mut entry) = self.admit(stored).await.map_err(|e| e.to_string())? else {
                continue;
            };
            if self.person_is_held(&entry.person) {
                // Behind a held event of the same person: held too, so the cursor can pass.
                entry.held = true;
                entry.next_attempt_at = Some(now);
                self.progress.hold.push(entry.held_record());
            }
            self.insert(entry);
        }
        Ok(())
    }

    /// The cursor: every window event at or below it is resolved.
    fn low_water_mark(&self) -> u64 {
        let first_open = self
            .entries
            .values()
            .find(|e| !e.held)
            .map(|e| e.seq)
            .unwrap_or(self.read_next);
        first_open.saturating_sub(1).max(self.cursor)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let mark = self.low_water_mark();
        if mark > self.cursor {
            self.progress.cursor = Some(mark);
        }
        let progress = std::mem::take(&mut self.progress);
        if progress.is_empty() {
            return Ok(());
        }
        self.cx.store.commit_progress(&self.id, progress).await?;
        self.cursor = mark.max(self.cursor);
        let held = self.entries.values().filter(|e| e.held).count() as u64;
        let name = self.record.name.clone();
        metrics::gauge!("sluice_destination_held_events", "destination" => name.clone())
            .set(held as f64);
        metrics::gauge!("sluice_destination_cursor", "destination" => name).set(self.cursor as f64);
        let (cursor, backoff) = (self.cursor, self.backoff.clone());
        self.count(|s| {
            s.cursor = cursor;
            s.held = held;
            s.backing_off_until = backoff.as_ref().map(|b| b.next_attempt_at);
        });
        Ok(())
    }

    /// Counts events leaving the pipeline, for `/metrics`.
    fn outcome(&self, outcome: &'static str) {
        metrics::counter!("sluice_destination_events_total", "destination" => self.record.name.clone(), "outcome" => outcome).increment(1);
    }

    fn count(&self, update: impl FnOnce(&mut DestinationStatus)) {
        let mut statuses = self.cx.status.lock().unwrap_or_else(|p| p.into_inner());
        update(statuses.entry(self.id.clone()).or_default());
    }

    /// The next request: the head entry of as many persons as fit, one operation per person
    /// (Customer.io documents no order inside a batch). An entry that already failed twice goes
    /// alone, so one poisonous event cannot keep failing its neighbours.
    fn next_batch(&self, now: DateTime<Utc>) -> Vec<u64> {
        let limits = self.destination.limits();
        let mut batch = Vec::new();
        let mut bytes = 16usize;
        let mut seen: HashSet<&str> = HashSet::new();
        for entry in self.entries.values() {
            if !seen.insert(entry.person.as_str()) {
                if seen.len() == self.persons.len() {
                    break; // every person's head has been considered
                }
                continue; // not this person's head
            }
            if entry.in_flight || entry.next_attempt_at.is_some_and(|at| at > now) {
                continue;
            }
            let size = entry.ops[entry.next_op].json.len() + 1;
            let alone = entry.attempts >= 2;
            if alone {
                if batch.is_empty() {
                    return vec![entry.seq];
                }
                continue;
            }
            // (An operation larger than a whole request still goes, alone.)
            if !batch.is_empty() && bytes + size > limits.max_request_bytes {
                break;
            }
            bytes += size;
            batch.push(entry.seq);
            if batch.len() >= limits.max_items {
                break;
            }
        }
        batch
    }

    fn in_backoff(&self, now: DateTime<Utc>) -> bool {
        self.backoff
            .as_ref()
            .is_some_and(|b| b.next_attempt_at > now)
    }

    /// Starts one request in the background.
    fn send(&mut self, seqs: Vec<u64>, tasks: &mut JoinSet<Completed>) {
        let mut ops = Vec::with_capacity(seqs.len());
        let mut ids = Vec::with_capacity(seqs.len());
        let mut warnings = Vec::new();
        for seq in &seqs {
            if let Some(entry) = self.entries.get_mut(seq) {
                entry.in_flight = true;
                ops.push(entry.ops[entry.next_op].clone());
                ids.push(entry.event.message_id().to_owned());
                if entry.next_op == 0 {
                    warnings.extend(
                        entry
                            .warnings
                            .iter()
                            .map(|w| format!("{}: {w}", entry.event.message_id())),
                    );
                }
            }
        }
        let destination = self.destination.clone();
        let limiter = self.limiter.clone();
        let clock = self.cx.clock.clone();
        tasks.spawn(async move {
            let (outcomes, mut records) =
                deliver_narrowing(destination.as_ref(), &limiter, clock.as_ref(), ops, ids).await;
            if let Some(first) = records.first_mut() {
                first.warnings = warnings;
            }
            Completed {
                seqs,
                outcomes,
                records,
            }
        });
    }

    /// Applies a finished request's outcomes.
    async fn complete(&mut self, done: Completed) -> Result<(), StoreError> {
        let now = self.cx.clock.now();
        self.progress.deliveries.extend(done.records);
        let mut any_success = false;
        let mut retry: Option<(String, Option<Duration>)> = None;
        // A retry of one event that already failed twice says more about that event than
        // about the destination: unless rate-limited, it backs off alone.
        let lone_retry = done.seqs.len() == 1
            && self
                .entries
                .get(&done.seqs[0])
                .is_some_and(|e| e.attempts >= 2);
        let mut unauthorized: Option<String> = None;
        for (seq, outcome) in done.seqs.iter().zip(done.outcomes) {
            let Some(entry) = self.entries.get_mut(seq) else {
                continue;
            };
            entry.in_flight = false;
            match outcome {
                OpOutcome::Delivered => {
                    any_success = true;
                    entry.next_op += 1;
                    if entry.next_op >= entry.ops.len() {
                        self.resolve(*seq);
                        self.count(|s| s.delivered += 1);
                        self.outcome("delivered");
                    } else {
                        // The next operation of the same event goes in a later request.
                        entry.next_attempt_at = Some(now);
                    }
                }
                OpOutcome::Refused { reason, response } => {
                    any_success = true;
                    let dead = entry.dead_letter(reason, Some(response), now);
                    self.progress.dead_letters.push(dead);
                    self.resolve(*seq);
                    self.count(|s| s.dead_lettered += 1);
                    self.outcome("dead_lettered");
                }
                OpOutcome::Retry {
                    reason,
                    retry_after,
                } => {
                    self.retry_later(*seq, &reason, retry_after, now);
                    if !lone_retry || retry_after.is_some() {
                        retry = Some((reason, retry_after));
                    }
                }
                OpOutcome::Unauthorized { reason } => unauthorized = Some(reason),
            }
        }
        if let Some(reason) = unauthorized {
            self.count(|s| s.failed_requests += 1);
            self.pause_for_credentials(&reason).await?;
        } else if let Some((reason, retry_after)) = retry {
            let failures = self.backoff.as_ref().map_or(0, |b| b.consecutive_failures) + 1;
            let wait =
                backoff_delay(&self.cx.config, failures).max(retry_after.unwrap_or_default());
            let backoff = Backoff {
                consecutive_failures: failures,
                next_attempt_at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                last_error: reason.clone(),
            };
            self.backoff = Some(backoff.clone());
            self.progress.backoff = Some(Some(backoff));
            self.count(|s| {
                s.failed_requests += 1;
                s.last_error = Some(reason);
            });
        } else if any_success {
            if self.backoff.take().is_some() {
                self.progress.backoff = Some(None);
            }
            // Delivering again: an earlier error is history (the delivery log keeps it).
            self.count(|s| s.last_error = None);
        }
        // Recorded by the next step's commit, after it has sent what is now due.
        Ok(())
    }

    /// Removes a resolved entry (delivered, refused, dead-lettered).
    fn resolve(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        if entry.held {
            self.progress.release.push(seq);
        } else {
            self.window_len -= 1;
        }
        if let Some(seqs) = self.persons.get_mut(&entry.person) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.persons.remove(&entry.person);
            }
        }
    }

    /// A retryable failure: schedule the entry, hold its person, or give up after the window.
    fn retry_later(
        &mut self,
        seq: u64,
        reason: &str,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) {
        let window = chrono::Duration::from_std(self.cx.config.retry_window)
            .unwrap_or(chrono::Duration::MAX);
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        entry.attempts += 1;
        let first = *entry.first_failed_at.get_or_insert(now);
        entry.last_error = Some(reason.to_owned());
        if now - first >= window {
            let dead = entry.dead_letter(
                format!(
                    "still failing after the retry window ({}): {reason}",
                    humanize(self.cx.config.retry_window)
                ),
                None,
                now,
            );
            self.progress.dead_letters.push(dead);
            self.resolve(seq);
            self.count(|s| s.dead_lettered += 1);
            self.outcome("dead_lettered");
            return;
        }
        let wait =
            backoff_delay(&self.cx.config, entry.attempts).max(retry_after.unwrap_or_default());
        entry.next_attempt_at = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
        let person = entry.person.clone();
        // The entry and the person's later window entries move to the held list.
        let seqs = self.persons.get(&person).cloned().unwrap_or_default();
        for other in seqs {
            let Some(e) = self.entries.get_mut(&other) else {
                continue;
            };
            if other == seq {
                let record = e.held_record();
                if e.held {
                    self.progress.reschedule.push(record);
                } else {
                    e.held = true;
                    self.window_len -= 1;
                    self.progress.hold.push(e.held_record());
                }
            } else if !e.held {
                e.held = true;
                self.window_len -= 1;
                e.next_attempt_at = Some(now);
                self.progress.hold.push(e.held_record());
            }
        }
    }

    async fn pause_for_credentials(&mut self, reason: &str) -> Result<(), StoreError> {
        tracing::warn!(destination = %self.record.name, %reason, "the destination rejected the credentials; pausing it until they are updated");
        self.paused = true;
        self.cx
            .store
            .update_destination(
                &self.id,
                DestinationUpdate {
                    paused_reason: Some(Some(format!("{CREDENTIALS_REJECTED}: {reason}"))),
                    ..DestinationUpdate::default()
                },
            )
            .await?;
        self.count(|s| {
            s.state = "credentials_rejected".into();
            s.last_error = Some(reason.to_owned());
        });
        Ok(())
    }

    /// Runs until `stop` turns true or the credentials are rejected.
    ///
    /// Any failure to read the log or to record progress ends the worker without writing
    /// anything more: its memory may then be ahead of the store, and the supervisor restarts it
    /// from the durable state (cursor, held list), which re-sends what was not recorded.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, wake: Arc<Notify>) {
        let name = self.record.name.clone();
        self.count(|s| s.state = "active".into());
        let mut tasks: JoinSet<Completed> = JoinSet::new();
        let mut indexed = self.cx.identity.subscribe();
        let failure = loop {
            if *stop.borrow() || self.paused {
                break None;
            }
            if let Err(error) = self.step(&mut tasks).await {
                break Some(error);
            }
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let recorded = match done {
                        Ok(done) => self.complete(done).await.map_err(|e| e.to_string()),
                        Err(error) => Err(format!("a delivery task failed: {error}")),
                    };
                    if let Err(error) = recorded {
                        break Some(error);
                    }
                }
                _ = tokio::time::sleep(self.cx.config.poll_interval) => {}
                _ = sleep_until_slot(self.next_slot) => {}
                _ = indexed.changed() => {}
                _ = wake.notified() => {
                    if let Err(error) = self.load_held().await {
                        break Some(error.to_string());
                    }
                }
                _ = stop.changed() => {}
            }
        };
        if let Some(error) = failure {
            tracing::warn!(destination = %name, %error, "delivery stopped; restarting from the stored cursor and held list");
            tasks.abort_all();
            self.count(|s| {
                s.state = "restarting".into();
                s.last_error = Some(error);
            });
            return;
        }
        // Let requests already sent finish, so their outcome is recorded.
        while let Some(done) = tasks.join_next().await {
            let Ok(done) = done else { return };
            if self.complete(done).await.is_err() {
                return;
            }
        }
        let _ = self.commit().await;
        if !self.paused {
            self.count(|s| s.state = "stopped".into());
        }
    }

    /// Reads what is new, sends what is due, then records progress. Sending before the store
    /// transaction keeps its fsync off the delivery latency; it is safe because the cursor
    /// only moves in that transaction, together with the held copies and dead letters.
    async fn step(&mut self, tasks: &mut JoinSet<Completed>) -> Result<(), String> {
        self.refill().await?;
        let now = self.cx.clock.now();
        self.next_slot = None;
        while tasks.len() < self.cx.config.max_in_flight && !self.in_backoff(now) {
            let batch = self.next_batch(now);
            if batch.is_empty() {
                break;
            }
            // A batch is built only when it can leave at once, so it holds everything that
            // arrived until then instead of waiting, built, for its turn.
            if let Err(next) = self.limiter.try_acquire() {
                self.next_slot = Some(next);
                break;
            }
            self.send(batch, tasks);
        }
        self.commit().await.map_err(|e| e.to_string())
    }
}

/// Resolves when the rate limiter's next slot opens (never, when none is pending).
async fn sleep_until_slot(slot: Option<tokio::time::Instant>) {
    match slot {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn person_key(identity: &ResolvedIdentity) -> String {
    identity.person_key().unwrap_or_default().to_owned()
}

/// Exponential backoff with full jitter between half and all of `base · 2^(n-1)`, capped.
pub fn backoff_delay(config: &RouterConfig, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = config
        .backoff_base
        .saturating_mul(1u32 << exponent)
        .min(config.backoff_max);
    let half = ceiling / 2;
    half + half.mul_f64(fastrand::f64())
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{} ms", duration.as_millis()),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Sends `ops`; a request refused as a whole (400) is split in halves until the refused
/// operations are found, so one bad event never takes good ones with it.
async fn deliver_narrowing(
    destination: &dyn Destination,
    limiter: &RateLimiter,
    clock: &dyn Clock,
    ops: Vec<Op>,
    ids: Vec<String>,
) -> (Vec<OpOutcome>, Vec<NewDeliveryRecord>) {
    let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
    let mut records = Vec::new();
    let mut pending = vec![(0usize, ops.len())];
    while let Some((start, end)) = pending.pop() {
        if (start, end) != (0, ops.len()) {
            // The first request took its slot before it was built; the narrowing ones wait.
            limiter.acquire().await;
        }
        let refs: Vec<&Op> = ops[start..end].iter().collect();
        let at = clock.now();
        let started = std::time::Instant::now();
        let report = destination.deliver(&refs).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let response = format!(
            "HTTP {}: {}",
            report.status.map_or("-".to_string(), |s| s.to_string()),
            cut(&report.response_body, 2000)
        );
        let (outcome, error) = match &report.result {
            Ok(errors) if errors.is_empty() => ("delivered", None),
            Ok(errors) => ("partial", Some(format!("{} refused", errors.len()))),
            Err(DeliveryError::Permanent { reason }) => ("refused", Some(reason.clone())),
            Err(DeliveryError::Retryable { reason, .. }) => ("failed", Some(reason.clone())),
            Err(DeliveryError::Unauthorized { reason }) => ("unauthorized", Some(reason.clone())),
        };
        metrics::counter!("sluice_delivery_requests_total", "outcome" => outcome).increment(1);
        metrics::histogram!("sluice_delivery_request_seconds").record(latency_ms as f64 / 1000.0);
        records.push(NewDeliveryRecord {
            at,
            outcome: outcome.into(),
            http_status: report.status,
            latency_ms,
            message_ids: ids[start..end].to_vec(),
            request_body: cut(&report.request_body, MAX_LOGGED_BODY).to_owned(),
            response_body: cut(&report.response_body, MAX_LOGGED_BODY).to_owned(),
            error,
            warnings: Vec::new(),
        });
        match report.result {
            Ok(errors) => {
                for slot in &mut outcomes[start..end] {
                    *slot = Some(OpOutcome::Delivered);
                }
                for error in errors {
                    outcomes[start + error.index] = Some(OpOutcome::Refused {
                        reason: error.reason,
                        response: response.clone(),
                    });
                }
            }
            Err(DeliveryError::Permanent { reason }) => {
                if end - start > 1 {
                    let middle = start + (end - start) / 2;
                    pending.push((middle, end));
                    pending.push((start, middle));
                } else {
                    outcomes[start] = Some(OpOutcome::Refused { reason, response });
                }
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                for slot in &mut outcomes[start..end] {
                    *slot = Some(OpOutcome::Retry {
                        reason: reason.clone(),
                        retry_after,
                    });
                }
            }
            Err(DeliveryError::Unauthorized { reason }) => {
                // Nothing more goes out with rejected credentials.
                for slot in outcomes.iter_mut().filter(|s| s.is_none()) {
                    *slot = Some(OpOutcome::Unauthorized {
                        reason: reason.clone(),
                    });
                }
                break;
            }
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(OpOutcome::Retry {
                reason: "not attempted".into(),
                retry_after: None,
            })
        })
        .collect();
    (outcomes, records)
}
