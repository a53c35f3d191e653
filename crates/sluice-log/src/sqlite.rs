//! The embedded SQLite backend.
//!
//! One writer thread owns the write connection and commits every append that is waiting in one
//! transaction (group commit), so one fsync covers many requests. Readers use their own
//! connection; WAL mode lets them run beside the writer. The writer numbers events itself,
//! continuing from `sqlite_sequence` of an `AUTOINCREMENT` key, which SQLite never lowers, so a
//! sequence number is never reused, even after the table is emptied.

use crate::dedupe_index::DedupeIndex;
use crate::{
    Admission, AppendOutcome, AppendRequest, EventLog, LogError, LogStats, RejectedEvent,
    RetentionPolicy, StoredEvent,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sluice_core::time::time_before;
use sluice_core::Event;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How hard the log works to keep an acknowledged event across a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before acknowledging (SQLite `synchronous=FULL`).
    #[default]
    Fsync,
    /// Leave flushing to the OS (SQLite `synchronous=OFF`): survives a process crash, not a
    /// power cut.
    None,
}

#[derive(Debug, Clone)]
pub struct SqliteLogOptions {
    pub durability: Durability,
    /// Duplicates of a `(source, messageId)` seen within this window are not stored again.
    pub dedupe_window: Duration,
    /// Most appends committed together in one transaction.
    pub max_group_events: usize,
    /// Caps the database size in pages (tests use it to simulate a full disk).
    pub max_page_count: Option<u64>,
}

impl Default for SqliteLogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            dedupe_window: Duration::from_secs(24 * 3600),
            max_group_events: 10_000,
            max_page_count: None,
        }
    }
}

/// An append as the writer thread sees it: already serialised by the caller's task, so the
/// single writer spends its time on SQLite only.
struct AppendJob {
    source_id: String,
    received_at: DateTime<Utc>,
    /// `(messageId, payload JSON)` per accepted event.
    events: Vec<(String, String)>,
    rejected: Vec<sluice_core::Rejection>,
    reply: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

pub struct SqliteLog {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<AppendJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    /// The seq of the newest committed event, bumped by the writer after each commit.
    appended: tokio::sync::watch::Receiver<u64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL
);
-- Which seq ranges belong to which source: one row per append (a request's admitted events get
-- consecutive seqs), not one index entry per event.
CREATE TABLE IF NOT EXISTS source_ranges (
    source_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (source_id, first_seq)
) WITHOUT ROWID;
-- Append-only record of admissions, one row per append: the messageIds of its admitted events,
-- whose seqs are first_seq, first_seq + 1, ... The lookup index is in memory (dedupe_index.rs).
CREATE TABLE IF NOT EXISTS dedupe (
    first_seq INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    message_ids TEXT NOT NULL -- JSON array
);
CREATE TABLE IF NOT EXISTS rejected_events (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    batch_index INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_by_source ON rejected_events (source_id, id);
CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO log_meta (key, value) VALUES ('bytes', 0);
";

fn storage(e: rusqlite::Error) -> LogError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
            LogError::Unavailable(e.to_string())
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            LogError::Unavailable(e.to_string())
        }
        _ => LogError::Storage(e.to_string()),
    }
}

/// The `dedupe.message_ids` column: the admitted messageIds of one append, in seq order.
fn encode_message_ids(ids: &[&str]) -> Result<String, LogError> {
    serde_json::to_string(ids).map_err(|e| LogError::Storage(e.to_string()))
}

fn decode_message_ids(column: &str) -> Result<Vec<String>, LogError> {
    serde_json::from_str(column).map_err(|e| LogError::Storage(format!("dedupe record: {e}")))
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn open_connection(path: &Path, options: &SqliteLogOptions) -> Result<Connection, LogError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(storage)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(storage)?;
    // Bigger pages: fewer b-tree splits and fewer, larger writes when the WAL is checkpointed.
    // Takes effect only when the file is created.
    conn.pragma_update(None, "page_size", 16_384)
        .map_err(storage)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(storage)?;
    let synchronous = match options.durability {
        Durability::Fsync => "FULL",
        Durability::None => "OFF",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(storage)?;
    // A larger page cache keeps index pages out of read() copies on the writer's path. (A
    // whole-file mmap was faster still but made RSS grow with the log; not worth it.)
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(storage)?;
    if let Some(pages) = options.max_page_count {
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(storage)?;
    }
    Ok(conn)
}

impl SqliteLog {
    /// Opens (creating when needed) the log at `path` and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, options: SqliteLogOptions) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let write_conn = open_connection(&path, &options)?;
        write_conn.execute_batch(SCHEMA).map_err(storage)?;
        let reader = open_connection(&path, &options)?;
        let (appended_tx, appended) = tokio::sync::watch::channel(0);
        let writer = Writer::open(write_conn, options, appended_tx)?;
        let (sender, receiver) = mpsc::channel::<AppendJob>(4096);
        let writer = std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| LogError::Storage(e.to_string()))?;
        Ok(Self {
            path,
            jobs: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            reader: Arc::new(Mutex::new(reader)),
            appended,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite `synchronous` level the log runs with (2 = FULL, 0 = OFF), read back from the
    /// database; asserted by tests so "fsync" cannot silently become a no-op.
    pub fn synchronous_level(&self) -> Result<i64, LogError> {
        // The writer and the reader are opened with the same options, so they share the level.
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.pragma_query_value(None, "synchronous", |row| row.get(0))
            .map_err(storage)
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, LogError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            work(&conn).map_err(storage)
        })
        .await
        .map_err(|e| LogError::Storage(e.to_string()))?
    }
}

struct Writer {
    conn: Connection,
    options: SqliteLogOptions,
    dedupe: DedupeIndex,
    appended: tokio::sync::watch::Sender<u64>,
}

impl Writer {
    /// Takes the write connection and rebuilds the dedupe index from the `dedupe` table.
    fn open(
        conn: Connection,
        options: SqliteLogOptions,
        appended: tokio::sync::watch::Sender<u64>,
    ) -> Result<Self, LogError> {
        let mut dedupe = DedupeIndex::new();
        {
            let mut stmt = conn
                .prepare("SELECT first_seq, source_id, received_at, message_ids FROM dedupe ORDER BY first_seq")
                .map_err(storage)?;
            let mut rows = stmt.query([]).map_err(storage)?;
            while let Some(row) = rows.next().map_err(storage)? {
                let first_seq: i64 = row.get(0).map_err(storage)?;
                let source_id: String = row.get(1).map_err(storage)?;
                let received_at: i64 = row.get(2).map_err(storage)?;
                let ids: String = row.get(3).map_err(storage)?;
                for (offset, message_id) in decode_message_ids(&ids)?.iter().enumerate() {
                    let key = dedupe.key(&source_id, message_id);
                    dedupe.record(key, (first_seq + offset as i64) as u64, received_at);
                }
            }
        }
        if dedupe.len() > 0 {
            tracing::info!(entries = dedupe.len(), "dedupe index rebuilt");
        }
        Ok(Self {
            conn,
            options,
            dedupe,
            appended,
        })
    }

    fn run(mut self, mut receiver: mpsc::Receiver<AppendJob>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < self.options.max_group_events {
                match receiver.try_recv() {
                    Ok(job) => {
                        events += job.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::debug!("log writer stopped");
    }

    fn commit_group(&mut self, group: Vec<AppendJob>) {
        let mark = self.dedupe.mark();
        let result = self.write_group(&group);
        if result.is_err() {
            // Nothing of the group was kept, so none of it may count as seen.
            self.dedupe.roll_back(mark);
        }
        match result {
            Ok(outcomes) => {
                let newest = outcomes
                    .iter()
                    .flat_map(|o| &o.admissions)
                    .filter_map(|a| match a {
                        Admission::Appended(seq) => Some(*seq),
                        Admission::Duplicate(_) => None,
                    })
                    .max();
                if let Some(newest) = newest {
                    self.appended.send_replace(newest);
                }
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = group.len(), "log append failed; nothing of this group was kept");
                let message = error.to_string();
                let unavailable = matches!(error, LogError::Unavailable(_));
                for job in group {
                    let error = if unavailable {
                        LogError::Unavailable(message.clone())
                    } else {
                        LogError::Storage(message.clone())
                    };
                    let _ = job.reply.send(Err(error));
                }
            }
        }
    }

    fn write_group(&mut self, group: &[AppendJob]) -> Result<Vec<AppendOutcome>, LogError> {
        let dedupe_window = self.options.dedupe_window;
        if let Some(first) = group.first() {
            self.dedupe
                .expire(millis(time_before(first.received_at, dedupe_window)));
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(storage)?;
        // The writer is the only writer, so it numbers events itself.
        let mut next_seq: i64 = tx
            .query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_err(storage)?
            + 1;
        let mut outcomes = Vec::with_capacity(group.len());
        let mut added_bytes: i64 = 0;
        {
            let mut record_dedupe = tx
                .prepare_cached(
                    "INSERT INTO dedupe (first_seq, source_id, received_at, message_ids) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(storage)?;
            let mut earlier_admission = tx
                .prepare_cached(
                    "SELECT first_seq, source_id, received_at, message_ids FROM dedupe
                     WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1",
                )
                .map_err(storage)?;
            let mut insert_event = tx
                .prepare_cached(
                    "INSERT INTO events (seq, source_id, received_at, payload) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(storage)?;
            let mut insert_range = tx
                .prepare_cached(
                    "INSERT INTO source_ranges (source_id, first_seq, last_seq) VALUES (?1, ?2, ?3)",
                )
                .map_err(storage)?;
            let mut insert_rejected = tx
                .prepare_cached(
                    "INSERT INTO rejected_events (source_id, received_at, batch_index, code, message, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(storage)?;
            for job in group {
                let received_at = millis(job.received_at);
                let window_start = millis(time_before(job.received_at, dedupe_window));
                let mut admissions = Vec::with_capacity(job.events.len());
                let first_seq = next_seq;
                let mut admitted_ids: Vec<&str> = Vec::with_capacity(job.events.len());
                for (message_id, payload) in &job.events {
                    let key = self.dedupe.key(&job.source_id, message_id);
                    if let Some(seq) = self.dedupe.get(key) {
                        // Confirm against the admission record (this append's, still in memory,
                        // or a durable row): same identity, inside the window.
                        let seq_i = seq as i64;
                        let confirmed = if seq_i >= first_seq {
                            admitted_ids.get((seq_i - first_seq) as usize)
                                == Some(&message_id.as_str())
                        } else {
                            let earlier: Option<(i64, String, i64, String)> = earlier_admission
                                .query_row([seq_i], |row| {
                                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                                })
                                .optional()
                                .map_err(storage)?;
                            earlier.is_some_and(|(first, source, at, ids)| {
                                source == job.source_id
                                    && at >= window_start
                                    && decode_message_ids(&ids)
                                        .ok()
                                        .and_then(|ids| {
                                            ids.into_iter().nth((seq_i - first) as usize)
                                        })
                                        .is_some_and(|id| id == *message_id)
                            })
                        };
                        if confirmed {
                            admissions.push(Admission::Duplicate(seq));
                            continue;
                        }
                    }
                    admitted_ids.push(message_id);
                    insert_event
                        .execute(params![next_seq, job.source_id, received_at, payload])
                        .map_err(storage)?;
                    added_bytes += payload.len() as i64;
                    // Recorded at once so a repeat later in this group is caught; rolled
                    // back by `commit_group` if the transaction fails.
                    self.dedupe.record(key, next_seq as u64, received_at);
                    admissions.push(Admission::Appended(next_seq as u64));
                    next_seq += 1;
                }
                if next_seq > first_seq {
                    insert_range
                        .execute(params![job.source_id, first_seq, next_seq - 1])
                        .map_err(storage)?;
                    let ids = encode_message_ids(&admitted_ids)?;
                    record_dedupe
                        .execute(params![first_seq, job.source_id, received_at, ids])
                        .map_err(storage)?;
                }
                for rejected in &job.rejected {
                    insert_rejected
                        .execute(params![
                            job.source_id,
                            received_at,
                            rejected.index as i64,
                            rejected.code,
                            rejected.message,
                            rejected.payload
                        ])
                        .map_err(storage)?;
                }
                outcomes.push(AppendOutcome { admissions });
            }
            if added_bytes > 0 {
                tx.execute(
                    "UPDATE log_meta SET value = value + ?1 WHERE key = 'bytes'",
                    [added_bytes],
                )
                .map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)?;
        Ok(outcomes)
    }
}

fn stored_event(row: &rusqlite::Row<'_>) -> Result<StoredEvent, rusqlite::Error> {
    let payload: String = row.get(3)?;
    let event = Event::from_json(payload).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredEvent {
        seq: row.get::<_, i64>(0)? as u64,
        source_id: row.get(1)?,
        received_at: from_millis(row.get(2)?),
        event,
    })
}

#[async_trait]
impl EventLog for SqliteLog {
    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.clone()
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError> {
        let sender = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(LogError::Closed)?;
        let (reply, receiver) = oneshot::channel();
        let events = request
            .accepted
            .into_iter()
            .map(Event::into_message_id_and_json)
            .collect();
        let job = AppendJob {
            source_id: request.source_id,
            received_at: request.received_at,
            events,
            rejected: request.rejected,
            reply,
        };
        sender.send(job).await.map_err(|_| LogError::Closed)?;
        receiver.await.map_err(|_| LogError::Closed)?
    }

    async fn read(&self, from_seq: u64, max: usize) -> Result<Vec<StoredEvent>, LogError> {
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, source_id, received_at, payload FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![from_seq as i64, max as i64], stored_event)?;
            rows.collect()
        })
        .await
    }

    async fn recent(
        &self,
        source_id: &str,
        limit: usize,
        after_seq: Option<u64>,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let source_id = source_id.to_owned();
        let after = after_seq.map_or(0, |s| s as i64);
        self.with_reader(move |conn| {
            let mut ranges = conn.prepare_cached(
                "SELECT first_seq, last_seq FROM source_ranges
                 WHERE source_id = ?1 AND last_seq > ?2 ORDER BY first_seq DESC",
            )?;
            let mut in_range = conn.prepare_cached(
                "SELECT seq, source_id, received_at, payload FROM events
                 WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let mut events = Vec::with_capacity(limit.min(1024));
            let mut rows = ranges.query(params![source_id, after])?;
            while let Some(row) = rows.next()? {
                if events.len() >= limit {
                    break;
                }
                let first: i64 = row.get(0)?;
                let last: i64 = row.get(1)?;
                let wanted = (limit - events.len()) as i64;
                let found = in_range
                    .query_map(params![first.max(after + 1), last, wanted], stored_event)?;
                for event in found {
                    events.push(event?);
                }
            }
            Ok(events)
        })
        .await
    }

    async fn recent_rejected(
        &self,
        source_id: &str,
        limit: usize,
    ) -> Result<Vec<RejectedEvent>, LogError> {
        let source_id = source_id.to_owned();
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT source_id, received_at, batch_index, code, message, payload FROM rejected_events
                 WHERE source_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![source_id, limit as i64], |row| {
                Ok(RejectedEvent {
                    source_id: row.get(0)?,
                    received_at: from_millis(row.get(1)?),
                    index: row.get::<_, i64>(2)? as usize,
                    code: row.get(3)?,
                    message: row.get(4)?,
                    payload: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        self.with_reader(|conn| {
            let (first, last): (Option<i64>, Option<i64>) =
                conn.query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let events = match (first, last) {
                (Some(_), Some(_)) => conn.query_row("SELECT COUNT(*) FROM events", [], |row| {
                    row.get::<_, i64>(0)
                })?,
                _ => 0,
            };
            let bytes: i64 = conn.query_row(
                "SELECT value FROM log_meta WHERE key = 'bytes'",
                [],
                |row| row.get(0),
            )?;
            Ok(LogStats {
                events: events as u64,
                bytes: bytes.max(0) as u64,
                first_seq: first.map(|s| s as u64),
                last_seq: last.map(|s| s as u64),
            })
        })
        .await
    }

    async fn retention_point(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, LogError> {
        if policy.max_age.is_none() && policy.max_bytes.is_none() {
            return Ok(None);
        }
        let age_cutoff = policy.max_age.map(|age| millis(time_before(now, age)));
        let max_bytes = policy.max_bytes;
        self.with_reader(move |conn| {
            let total: i64 = conn.query_row("SELECT value FROM log_meta WHERE key = 'bytes'", [], |row| row.get(0))?;
            let mut excess_bytes = max_bytes.map_or(0, |max| (total.max(0) as u64).saturating_sub(max));
            // Walk from the oldest event until one is young enough and the rest fits.
            let mut stmt = conn.prepare_cached(
                "SELECT seq, received_at, length(payload) FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1000",
            )?;
            let mut from: i64 = 0;
            let mut point: Option<u64> = None;
            loop {
                let rows: Vec<(i64, i64, i64)> = stmt
                    .query_map([from], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                if rows.is_empty() {
                    // Every event is past the policy.
                    return Ok(point);
                }
                for (seq, received_at, len) in rows {
                    let too_old = age_cutoff.is_some_and(|cutoff| received_at < cutoff);
                    if !too_old && excess_bytes == 0 {
                        return Ok(point.map(|_| seq as u64));
                    }
                    excess_bytes = excess_bytes.saturating_sub(len.max(0) as u64);
                    point = Some(seq as u64 + 1);
                    from = seq + 1;
                }
            }
        })
        .await
    }

    async fn trim(&self, below_seq: u64) -> Result<u64, LogError> {
        // Deletes go through the reader connection in short IMMEDIATE transactions, so the
        // group-commit writer waits (busy timeout) at most one chunk.
        self.with_reader(move |conn| {
            let mut deleted_total = 0u64;
            loop {
                let tx = rusqlite::Transaction::new_unchecked(
                    conn,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let chunk_end: Option<i64> = tx
                    .query_row(
                        "SELECT seq FROM events WHERE seq < ?1 ORDER BY seq LIMIT 1 OFFSET 9999",
                        [below_seq as i64],
                        |row| row.get(0),
                    )
                    .optional()?;
                let upper = chunk_end.map_or(below_seq as i64, |seq| seq + 1);
                let freed: i64 = tx.query_row(
                    "SELECT COALESCE(SUM(length(payload)), 0) FROM events WHERE seq < ?1",
                    [upper],
                    |row| row.get(0),
                )?;
                let deleted = tx.execute("DELETE FROM events WHERE seq < ?1", [upper])?;
                if chunk_end.is_none() {
                    // Ranges wholly below the cut go too; one straddling it stays, and reads
                    // skip its deleted part.
                    tx.execute("DELETE FROM source_ranges WHERE last_seq < ?1", [upper])?;
                }
                tx.execute(
                    "UPDATE log_meta SET value = MAX(value - ?1, 0) WHERE key = 'bytes'",
                    [freed],
                )?;
                tx.commit()?;
                deleted_total += deleted as u64;
                if chunk_end.is_none() || deleted == 0 {
                    return Ok(deleted_total);
                }
            }
        })
        .await
    }

    async fn expire(
        &self,
        dedupe_before: DateTime<Utc>,
        rejected_before: DateTime<Utc>,
    ) -> Result<(), LogError> {
        self.with_reader(move |conn| {
            // Admissions are appended in seq order with (nearly) increasing times, so the
            // expired ones are a prefix: find its end, then delete it in short transactions.
            let end: Option<i64> = conn
                .query_row(
                    "SELECT first_seq FROM dedupe WHERE received_at >= ?1 ORDER BY first_seq LIMIT 1",
                    [millis(dedupe_before)],
                    |row| row.get(0),
                )
                .optional()?;
            let end = match end {
                Some(seq) => seq,
                None => conn.query_row("SELECT COALESCE(MAX(first_seq), 0) + 1 FROM dedupe", [], |row| row.get(0))?,
            };
            loop {
                let deleted = conn.execute(
                    "DELETE FROM dedupe WHERE first_seq IN (SELECT first_seq FROM dedupe WHERE first_seq < ?1 ORDER BY first_seq LIMIT 10000)",
                    [end],
                )?;
                if deleted < 10_000 {
                    break;
                }
            }
            conn.execute(
                "DELETE FROM rejected_events WHERE received_at < ?1",
                [millis(rejected_before)],
            )?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        // Dropping the sender lets the writer drain what is queued and stop.
        let sender = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}
