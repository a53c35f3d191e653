//! SQLite for the delivery records: destinations, progress, dead letters, the delivery log
//! and identity links. Free functions over a connection; `sqlite.rs` wires them to the trait.

use crate::delivery::*;
use crate::StoreError;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS destinations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    sources TEXT NOT NULL,
    config TEXT NOT NULL,
    paused_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS held_events (
    destination_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    person TEXT NOT NULL,
    source_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at INTEGER,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    PRIMARY KEY (destination_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    person TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    response TEXT,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters (destination_id, id);
-- An event refused again after a restart (it was above the cursor) is one dead letter, not two.
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_by_event ON dead_letters (destination_id, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    latency_ms INTEGER NOT NULL,
    message_ids TEXT NOT NULL,
    request_body TEXT NOT NULL,
    response_body TEXT NOT NULL,
    error TEXT,
    warnings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination_id, id);
CREATE TABLE IF NOT EXISTS destination_backoff (
    destination_id TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_links (
    anonymous_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (anonymous_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_users (
    user_id TEXT PRIMARY KEY,
    first_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

pub fn storage(e: rusqlite::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

const DESTINATION_COLUMNS: &str =
    "id, name, kind, enabled, sources, config, paused_reason, created_at, updated_at";

fn destination_row(row: &Row<'_>) -> rusqlite::Result<DestinationRecord> {
    let sources: String = row.get(4)?;
    let config: String = row.get(5)?;
    Ok(DestinationRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        enabled: row.get(3)?,
        sources: serde_json::from_str(&sources).unwrap_or_default(),
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        paused_reason: row.get(6)?,
        created_at: from_millis(row.get(7)?),
        updated_at: from_millis(row.get(8)?),
    })
}

/// A write that failed on the unique name is a conflict; anything else a storage error.
pub fn unique_name_error(e: rusqlite::Error, what: &'static str, name: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Conflict {
                what,
                name: name.to_owned(),
            }
        }
        _ => storage(e),
    }
}

pub fn create_destination(
    conn: &mut Connection,
    new: NewDestination,
    cursor: u64,
) -> Result<DestinationRecord, StoreError> {
    let now = Utc::now();
    let record = DestinationRecord {
        id: format!("dst_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        name: new.name,
        kind: new.kind,
        enabled: new.enabled,
        sources: new.sources,
        config: new.config,
        paused_reason: None,
        created_at: from_millis(millis(now)),
        updated_at: from_millis(millis(now)),
    };
    let tx = conn.transaction().map_err(storage)?;
    tx.execute(
        &format!("INSERT INTO destinations ({DESTINATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            record.id,
            record.name,
            record.kind,
            record.enabled,
            json_text(&record.sources),
            json_text(&record.config),
            record.paused_reason,
            millis(record.created_at),
            millis(record.updated_at)
        ],
    )
    .map_err(|e| unique_name_error(e, "destination", &record.name))?;
    tx.execute(
        "INSERT INTO destination_cursors (destination_id, seq) VALUES (?1, ?2)
         ON CONFLICT (destination_id) DO UPDATE SET seq = excluded.seq",
        params![record.id, cursor as i64],
    )
    .map_err(storage)?;
    tx.commit().map_err(storage)?;
    Ok(record)
}

pub fn list_destinations(conn: &Connection) -> Result<Vec<DestinationRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY created_at, name"
        ))
        .map_err(storage)?;
    let rows = stmt.query_map([], destination_row).map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

pub fn destination(conn: &Connection, id: &str) -> Result<Option<DestinationRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?1"),
        [id],
        destination_row,
    )
    .optional()
    .map_err(storage)
}

pub fn update_destination(
    conn: &Connection,
    id: &str,
    update: DestinationUpdate,
) -> Result<DestinationRecord, StoreError> {
    let current = destination(conn, id)?.ok_or(StoreError::NotFound("destination"))?;
    let name = update.name.unwrap_or(current.name);
    conn.execute(
        "UPDATE destinations SET name = ?2, enabled = ?3, sources = ?4, config = ?5,
         paused_reason = ?6, updated_at = ?7 WHERE id = ?1",
        params![
            id,
            name,
            update.enabled.unwrap_or(current.enabled),
            json_text(&update.sources.unwrap_or(current.sources)),
            json_text(&update.config.unwrap_or(current.config)),
            update.paused_reason.unwrap_or(current.paused_reason),
            millis(Utc::now())
        ],
    )
    .map_err(|e| unique_name_error(e, "destination", &name))?;
    destination(conn, id)?.ok_or(StoreError::NotFound("destination"))
}

pub fn delete_destination(conn: &mut Connection, id: &str) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(storage)?;
    let deleted = tx
        .execute("DELETE FROM destinations WHERE id = ?1", [id])
        .map_err(storage)?;
    if deleted == 0 {
        return Err(StoreError::NotFound("destination"));
    }
    for table in [
        "destination_cursors",
        "held_events",
        "dead_letters",
        "deliveries",
        "destination_backoff",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE destination_id = ?1"),
            [id],
        )
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

pub fn destination_cursor(conn: &Connection, id: &str) -> Result<Option<u64>, StoreError> {
    conn.query_row(
        "SELECT seq FROM destination_cursors WHERE destination_id = ?1",
        [id],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|seq| seq.map(|s| s as u64))
    .map_err(storage)
}

fn upsert_held(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    held: &HeldEvent,
    replace: bool,
) -> Result<(), StoreError> {
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    tx.prepare_cached(&format!(
        "{verb} INTO held_events (destination_id, seq, person, source_id, event_json, attempts,
         first_failed_at, next_attempt_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            held.seq as i64,
            held.person,
            held.source_id,
            held.event_json,
            held.attempts,
            held.first_failed_at.map(millis),
            millis(held.next_attempt_at),
            held.last_error
        ])
    })
    .map_err(storage)?;
    Ok(())
}

pub fn commit_progress(
    conn: &mut Connection,
    id: &str,
    progress: Progress,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(storage)?;
    // A destination deleted meanwhile keeps no state.
    let exists: bool = tx
        .query_row("SELECT 1 FROM destinations WHERE id = ?1", [id], |_| {
            Ok(true)
        })
        .optional()
        .map_err(storage)?
        .unwrap_or(false);
    if !exists {
        return Err(StoreError::NotFound("destination"));
    }
    for held in &progress.hold {
        upsert_held(&tx, id, held, false)?;
    }
    for held in &progress.reschedule {
        upsert_held(&tx, id, held, true)?;
    }
    for seq in &progress.release {
        tx.prepare_cached("DELETE FROM held_events WHERE destination_id = ?1 AND seq = ?2")
            .and_then(|mut stmt| stmt.execute(params![id, *seq as i64]))
            .map_err(storage)?;
    }
    for dead in &progress.dead_letters {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (destination_id, seq, source_id, person, message_id,
             event_type, event_json, reason, response, attempts, failed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                dead.seq as i64,
                dead.source_id,
                dead.person,
                dead.message_id,
                dead.event_type,
                dead.event_json,
                dead.reason,
                dead.response,
                dead.attempts,
                millis(dead.failed_at)
            ])
        })
        .map_err(storage)?;
    }
    for record in &progress.deliveries {
        tx.prepare_cached(
            "INSERT INTO deliveries (destination_id, at, outcome, http_status, latency_ms,
             message_ids, request_body, response_body, error, warnings)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                millis(record.at),
                record.outcome,
                record.http_status,
                record.latency_ms as i64,
                json_text(&record.message_ids),
                record.request_body,
                record.response_body,
                record.error,
                json_text(&record.warnings)
            ])
        })
        .map_err(storage)?;
    }
    if !progress.deliveries.is_empty() {
        tx.prepare_cached(
            "DELETE FROM deliveries WHERE destination_id = ?1 AND id <= (
                SELECT id FROM deliveries WHERE destination_id = ?1
                ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, DELIVERY_LOG_LIMIT as i64]))
        .map_err(storage)?;
    }
    match &progress.backoff {
        Some(Some(backoff)) => {
            tx.execute(
                "INSERT OR REPLACE INTO destination_backoff (destination_id, consecutive_failures,
                 next_attempt_at, last_error) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    backoff.consecutive_failures,
                    millis(backoff.next_attempt_at),
                    backoff.last_error
                ],
            )
            .map_err(storage)?;
        }
        Some(None) => {
            tx.execute(
                "DELETE FROM destination_backoff WHERE destination_id = ?1",
                [id],
            )
            .map_err(storage)?;
        }
        None => {}
    }
    if let Some(cursor) = progress.cursor {
        tx.prepare_cached(
            "INSERT INTO destination_cursors (destination_id, seq) VALUES (?1, ?2)
             ON CONFLICT (destination_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, cursor as i64]))
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

fn held_row(row: &Row<'_>) -> rusqlite::Result<HeldEvent> {
    Ok(HeldEvent {
        seq: row.get::<_, i64>(0)? as u64,
        person: row.get(1)?,
        source_id: row.get(2)?,
        event_json: row.get(3)?,
        attempts: row.get(4)?,
        first_failed_at: row.get::<_, Option<i64>>(5)?.map(from_millis),
        next_attempt_at: from_millis(row.get(6)?),
        last_error: row.get(7)?,
    })
}

pub fn held_events(conn: &Connection, id: &str) -> Result<Vec<HeldEvent>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, person, source_id, event_json, attempts, first_failed_at,
             next_attempt_at, last_error FROM held_events WHERE destination_id = ?1 ORDER BY seq",
        )
        .map_err(storage)?;
    let rows = stmt.query_map([id], held_row).map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

pub fn destination_backoff(conn: &Connection, id: &str) -> Result<Option<Backoff>, StoreError> {
    conn.query_row(
        "SELECT consecutive_failures, next_attempt_at, last_error FROM destination_backoff
         WHERE destination_id = ?1",
        [id],
        |row| {
            Ok(Backoff {
                consecutive_failures: row.get(0)?,
                next_attempt_at: from_millis(row.get(1)?),
                last_error: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(storage)
}

const DEAD_LETTER_WHERE: &str = "destination_id = ?1 AND id > ?2
    AND (?3 IS NULL OR instr(reason, ?3) > 0)
    AND (?4 IS NULL OR person = ?4)
    AND (?5 IS NULL OR id IN (SELECT value FROM json_each(?5)))";

fn dead_letter_params<'a>(
    id: &'a str,
    filter: &'a DeadLetterFilter,
) -> (
    &'a str,
    i64,
    Option<&'a str>,
    Option<&'a str>,
    Option<String>,
    i64,
) {
    (
        id,
        filter.after_id.unwrap_or(0),
        filter.reason_contains.as_deref(),
        filter.person.as_deref(),
        (!filter.ids.is_empty()).then(|| json_text(&filter.ids)),
        filter.limit.map(|l| l as i64).unwrap_or(-1),
    )
}

pub fn dead_letters(
    conn: &Connection,
    id: &str,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>, StoreError> {
    let (id, after, reason, person, ids, limit) = dead_letter_params(id, filter);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT id, seq, source_id, person, message_id, event_type, event_json, reason,
             response, attempts, failed_at FROM dead_letters WHERE {DEAD_LETTER_WHERE}
             ORDER BY id LIMIT ?6"
        ))
        .map_err(storage)?;
    let rows = stmt
        .query_map(params![id, after, reason, person, ids, limit], |row| {
            let event_json: String = row.get(6)?;
            Ok(DeadLetter {
                id: row.get(0)?,
                seq: row.get::<_, i64>(1)? as u64,
                source_id: row.get(2)?,
                person: row.get(3)?,
                message_id: row.get(4)?,
                event_type: row.get(5)?,
                event: serde_json::value::RawValue::from_string(event_json).unwrap_or_else(|_| {
                    serde_json::value::RawValue::from_string("null".into())
                        .unwrap_or_else(|_| unreachable!("null is JSON"))
                }),
                reason: row.get(7)?,
                response: row.get(8)?,
                attempts: row.get(9)?,
                failed_at: from_millis(row.get(10)?),
            })
        })
        .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

pub fn count_dead_letters(conn: &Connection, id: &str) -> Result<u64, StoreError> {
    conn.query_row(
        "SELECT COUNT(*) FROM dead_letters WHERE destination_id = ?1",
        [id],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(storage)
}

pub fn replay_dead_letters(
    conn: &mut Connection,
    id: &str,
    filter: &DeadLetterFilter,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let chosen = dead_letters(conn, id, filter)?;
    let tx = conn.transaction().map_err(storage)?;
    for dead in &chosen {
        let held = HeldEvent {
            seq: dead.seq,
            person: dead.person.clone(),
            source_id: dead.source_id.clone(),
            event_json: dead.event.get().to_owned(),
            attempts: 0,
            first_failed_at: None,
            next_attempt_at: now,
            last_error: Some(format!("replayed after: {}", dead.reason)),
        };
        upsert_held(&tx, id, &held, true)?;
        tx.execute("DELETE FROM dead_letters WHERE id = ?1", [dead.id])
            .map_err(storage)?;
    }
    tx.commit().map_err(storage)?;
    Ok(chosen.len() as u64)
}

pub fn deliveries(
    conn: &Connection,
    id: &str,
    limit: usize,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, at, outcome, http_status, latency_ms, message_ids, request_body,
             response_body, error, warnings FROM deliveries WHERE destination_id = ?1
             ORDER BY id DESC LIMIT ?2",
        )
        .map_err(storage)?;
    let rows = stmt
        .query_map(params![id, limit as i64], |row| {
            let message_ids: String = row.get(5)?;
            let warnings: String = row.get(9)?;
            Ok(DeliveryRecord {
                id: row.get(0)?,
                at: from_millis(row.get(1)?),
                outcome: row.get(2)?,
                http_status: row.get(3)?,
                latency_ms: row.get::<_, i64>(4)? as u64,
                message_ids: serde_json::from_str(&message_ids).unwrap_or_default(),
                request_body: row.get(6)?,
                response_body: row.get(7)?,
                error: row.get(8)?,
                warnings: serde_json::from_str(&warnings).unwrap_or_default(),
            })
        })
        .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

const INDEXED_THROUGH: &str = "identity_indexed_through";

pub fn identity_links(conn: &Connection) -> Result<(Vec<IdentityLink>, u64), StoreError> {
    let mut stmt = conn
        .prepare("SELECT anonymous_id, user_id, seq FROM identity_links ORDER BY seq")
        .map_err(storage)?;
    let links = stmt
        .query_map([], |row| {
            Ok(IdentityLink {
                anonymous_id: row.get(0)?,
                user_id: row.get(1)?,
                seq: row.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(storage)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(storage)?;
    let through = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = ?1",
            [INDEXED_THROUGH],
            |row| row.get::<_, i64>(0),
        )
        .optional()
        .map_err(storage)?
        .unwrap_or(0);
    Ok((links, through as u64))
}

pub fn record_identities(conn: &mut Connection, batch: IdentityBatch) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(storage)?;
    for link in &batch.links {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO identity_links (anonymous_id, seq, user_id) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![link.anonymous_id, link.seq as i64, link.user_id])
        })
        .map_err(storage)?;
    }
    for (user_id, seq) in &batch.new_users {
        tx.prepare_cached("INSERT OR IGNORE INTO known_users (user_id, first_seq) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![user_id, *seq as i64]))
            .map_err(storage)?;
    }
    tx.execute(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
        params![INDEXED_THROUGH, batch.indexed_through as i64],
    )
    .map_err(storage)?;
    tx.commit().map_err(storage)
}

pub fn user_first_seen(conn: &Connection, user_id: &str) -> Result<Option<u64>, StoreError> {
    conn.query_row(
        "SELECT first_seq FROM known_users WHERE user_id = ?1",
        [user_id],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|seq| seq.map(|s| s as u64))
    .map_err(storage)
}
