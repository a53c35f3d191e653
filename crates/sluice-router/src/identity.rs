//! Identity stitching: anonymousId → userId links, learned from the log in sequence order.
//!
//! The index follows the whole log (every source) from its own persisted position. A link is
//! learned from any event that carries both an anonymousId and a userId (identify, track,
//! page… after login) and from an alias whose `previousId` had only ever been an anonymousId.
//! Each link is stored with the seq that taught it, and an event uses the latest link learned
//! *before* it, so delivering an event again (after a crash or as a replay) resolves it the
//! same way. Destination workers only read events the index has already passed.

use serde_json::Value;
use sluice_destinations::{AliasKind, ResolvedIdentity};
use sluice_log::{EventLog, StoredEvent};
use sluice_store::{IdentityBatch, IdentityLink, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How many userIds the index remembers having recorded, to avoid rewriting them.
const SEEN_USERS_CACHE: usize = 200_000;

pub struct IdentityIndex {
    /// anonymousId → links learned for it, ascending by seq.
    links: RwLock<HashMap<String, Vec<(u64, String)>>>,
    indexed_through: watch::Sender<u64>,
    /// When the position was last written to the store.
    position_saved_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long the index lets appends gather after being woken.
const APPEND_GATHER: Duration = Duration::from_millis(5);

/// How often the index's position is saved when nothing new was learned.
const POSITION_SAVE_INTERVAL: Duration = Duration::from_secs(1);

impl IdentityIndex {
    /// Loads the links learned so far.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let (links, through) = store.identity_links().await?;
        let mut map: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for link in links {
            map.entry(link.anonymous_id)
                .or_default()
                .push((link.seq, link.user_id));
        }
        Ok(Self {
            links: RwLock::new(map),
            indexed_through: watch::Sender::new(through),
            position_saved_at: std::sync::Mutex::new(None),
        })
    }

    /// Every event up to and including this seq has been indexed.
    pub fn indexed_through(&self) -> u64 {
        *self.indexed_through.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.indexed_through.subscribe()
    }

    /// The userId `anonymous_id` was linked to by the latest link learned before `seq`.
    pub fn linked_user(&self, anonymous_id: &str, seq: u64) -> Option<String> {
        let links = self.links.read().unwrap_or_else(|p| p.into_inner());
        links
            .get(anonymous_id)?
            .iter()
            .rev()
            .find(|(learned, _)| *learned < seq)
            .map(|(_, user)| user.clone())
    }

    /// Resolves who a stored event is about (see the module docs).
    pub async fn resolve(
        &self,
        store: &dyn Store,
        stored: &StoredEvent,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<ResolvedIdentity, StoreError> {
        let event = &stored.event;
        let anonymous_id = event.anonymous_id().map(str::to_owned);
        let user_id = match event.user_id() {
            Some(user) => Some(user.to_owned()),
            None => anonymous_id
                .as_deref()
                .and_then(|anon| self.linked_user(anon, stored.seq)),
        };
        let alias = match (
            event.event_type(),
            fields.get("previousId").and_then(Value::as_str),
        ) {
            (Some(sluice_core::EventType::Alias), Some(previous)) => {
                let known_before = store
                    .user_first_seen(previous)
                    .await?
                    .is_some_and(|first| first < stored.seq);
                Some(if known_before {
                    AliasKind::Merge
                } else {
                    AliasKind::Link
                })
            }
            _ => None,
        };
        Ok(ResolvedIdentity {
            user_id,
            anonymous_id,
            alias,
        })
    }

    /// Follows the log until `stop` turns true, learning links.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<dyn EventLog>,
        store: Arc<dyn Store>,
        poll_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seen_users: HashSet<String> = HashSet::new();
        let mut appended = log.appended();
        loop {
            match self
                .index_once(log.as_ref(), store.as_ref(), &mut seen_users)
                .await
            {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "identity index pass failed; will retry"),
            }
            let log_closing = tokio::select! {
                _ = tokio::time::sleep(poll_interval) => false,
                changed = appended.changed() => changed.is_err(),
                _ = stop.wait_for(|s| *s) => return,
            };
            if log_closing {
                // No more notifications: fall back to polling.
                tokio::time::sleep(poll_interval).await;
            } else {
                // Let a burst of appends gather, so one pass reads many of them: under load a
                // pass per group commit costs more than the events it reads.
                tokio::time::sleep(APPEND_GATHER.min(poll_interval)).await;
            }
        }
    }

    /// Indexes the next stretch of the log; `Ok(true)` when there may be more right away.
    pub async fn index_once(
        &self,
        log: &dyn EventLog,
        store: &dyn Store,
        seen_users: &mut HashSet<String>,
    ) -> Result<bool, String> {
        const CHUNK: usize = 2000;
        let from = self.indexed_through() + 1;
        let events = log.read(from, CHUNK).await.map_err(|e| e.to_string())?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(false);
        };
        let mut batch = IdentityBatch {
            indexed_through: last,
            ..IdentityBatch::default()
        };
        // Links of this chunk, visible to the rest of the chunk before they are committed.
        let mut chunk_links: HashMap<String, String> = HashMap::new();
        let mut chunk_users: HashMap<String, u64> = HashMap::new();
        for stored in &events {
            let event = &stored.event;
            if let Some(user) = event.user_id() {
                if !seen_users.contains(user) && !chunk_users.contains_key(user) {
                    chunk_users.insert(user.to_owned(), stored.seq);
                }
            }
            let mut learn = |anonymous_id: &str, user_id: &str| {
                let current = chunk_links
                    .get(anonymous_id)
                    .cloned()
                    .or_else(|| self.linked_user(anonymous_id, u64::MAX));
                if current.as_deref() != Some(user_id) {
                    chunk_links.insert(anonymous_id.to_owned(), user_id.to_owned());
                    batch.links.push(IdentityLink {
                        anonymous_id: anonymous_id.to_owned(),
                        user_id: user_id.to_owned(),
                        seq: stored.seq,
                    });
                }
            };
            if let (Some(anonymous_id), Some(user_id)) = (event.anonymous_id(), event.user_id()) {
                learn(anonymous_id, user_id);
            }
            if event.event_type() == Some(sluice_core::EventType::Alias) {
                let fields = event.fields();
                if let (Some(previous), Some(user_id)) = (
                    fields.get("previousId").and_then(Value::as_str),
                    event.user_id(),
                ) {
                    let seen_in_chunk = chunk_users.get(previous).is_some_and(|s| *s < stored.seq);
                    let known = seen_in_chunk
                        || store
                            .user_first_seen(previous)
                            .await
                            .map_err(|e| e.to_string())?
                            .is_some_and(|first| first < stored.seq);
                    if !known && previous != user_id {
                        learn(previous, user_id);
                    }
                }
            }
        }
        batch.new_users = chunk_users.into_iter().collect();
        let links = batch.links.clone();
        let users: Vec<String> = batch.new_users.iter().map(|(u, _)| u.clone()).collect();
        // A stretch that taught nothing needs no store transaction (an fsync) right away: only
        // the position would be saved, and re-reading from an older one after a restart learns
        // the same links again. It is saved at most once a second then.
        let learned = !batch.links.is_empty() || !batch.new_users.is_empty();
        let position_due = {
            let mut saved = self
                .position_saved_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = saved.is_none_or(|at| at.elapsed() >= POSITION_SAVE_INTERVAL);
            if learned || due {
                *saved = Some(std::time::Instant::now());
            }
            due
        };
        if learned || position_due {
            store
                .record_identities(batch)
                .await
                .map_err(|e| e.to_string())?;
        }
        if seen_users.len() + users.len() > SEEN_USERS_CACHE {
            seen_users.clear();
        }
        seen_users.extend(users);
        {
            let mut map = self.links.write().unwrap_or_else(|p| p.into_inner());
            for link in links {
                map.entry(link.anonymous_id)
                    .or_default()
                    .push((link.seq, link.user_id));
            }
        }
        self.indexed_through.send_replace(last);
        Ok(events.len() == CHUNK)
    }
}
