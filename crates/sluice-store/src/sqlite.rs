use crate::sqlite_delivery::{self as delivery, storage, unique_name_error};
use crate::{
    new_source_id, new_write_key, Backoff, DeadLetter, DeadLetterFilter, DeliveryRecord,
    DestinationRecord, DestinationUpdate, HeldEvent, IdentityBatch, IdentityLink, NewDestination,
    NewSource, Progress, Source, SourceKind, SourceUpdate, Store, StoreError,
};
use async_trait::async_trait;
use chrono::DateTime;
use chrono::{TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The embedded store: one SQLite file in the data folder.
///
/// Write-key lookups are served from an in-memory cache that every mutation clears, so a
/// deleted or rotated key stops working at once without a query per request.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    key_cache: Arc<RwLock<HashMap<String, Option<Source>>>>,
    /// Bumped by every mutation, so a lookup that raced a mutation is not cached.
    generation: AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    rate_limit_per_second INTEGER,
    allowed_origins TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS destination_cursors (
    destination_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
";

const KEY_CACHE_LIMIT: usize = 100_000;

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Web => "web",
        SourceKind::Server => "server",
        SourceKind::Mobile => "mobile",
    }
}

fn source_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Source> {
    let kind: String = row.get(2)?;
    Ok(Source {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: match kind.as_str() {
            "web" => SourceKind::Web,
            "mobile" => SourceKind::Mobile,
            _ => SourceKind::Server,
        },
        write_key: row.get(3)?,
        created_at: Utc
            .timestamp_millis_opt(row.get(4)?)
            .single()
            .unwrap_or_default(),
        rate_limit_per_second: row
            .get::<_, Option<i64>>(5)?
            .map(|r| r.clamp(0, u32::MAX as i64) as u32),
        allowed_origins: serde_json::from_str(&row.get::<_, String>(6)?).unwrap_or_default(),
    })
}

const SOURCE_COLUMNS: &str =
    "id, name, kind, write_key, created_at, rate_limit_per_second, allowed_origins";

/// Columns added after the first release, with their definitions: added to older files.
const ADDED_SOURCE_COLUMNS: &[(&str, &str)] = &[("allowed_origins", "TEXT NOT NULL DEFAULT '[]'")];

fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    for (column, definition) in ADDED_SOURCE_COLUMNS {
        let present: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('sources') WHERE name = ?1",
                [column],
                |row| row.get::<_, i64>(0),
            )
            .map_err(storage)?
            > 0;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE sources ADD COLUMN {column} {definition}"
            ))
            .map_err(storage)?;
        }
    }
    Ok(())
}

/// A write that failed on the unique source name is a conflict; anything else a storage error.
fn source_write_error(e: rusqlite::Error, name: &str) -> StoreError {
    unique_name_error(e, "source", name)
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        add_missing_columns(&conn)?;
        conn.execute_batch(delivery::SCHEMA).map_err(storage)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            key_cache: Arc::default(),
            generation: AtomicU64::new(0),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Storage(e.to_string()))?
    }

    /// Runs a mutation and forgets every cached write-key lookup.
    async fn mutate<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let result = self.run(work).await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.key_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        result
    }
}

fn load_source(conn: &Connection, id: &str) -> Result<Source, StoreError> {
    conn.query_row(
        &format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = ?1"),
        [id],
        source_row,
    )
    .optional()
    .map_err(storage)?
    .ok_or(StoreError::NotFound("source"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_source(&self, new: NewSource) -> Result<Source, StoreError> {
        let source = Source {
            id: new_source_id(),
            name: new.name,
            kind: new.kind,
            write_key: new_write_key(),
            created_at: Utc
                .timestamp_millis_opt(Utc::now().timestamp_millis())
                .single()
                .unwrap_or_default(),
            rate_limit_per_second: new.rate_limit_per_second,
            allowed_origins: new.allowed_origins,
        };
        let row = source.clone();
        self.mutate(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO sources ({SOURCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    row.id,
                    row.name,
                    kind_name(row.kind),
                    row.write_key,
                    row.created_at.timestamp_millis(),
                    row.rate_limit_per_second,
                    serde_json::to_string(&row.allowed_origins).unwrap_or_else(|_| "[]".into())
                ],
            )
            .map_err(|e| source_write_error(e, &row.name))?;
            Ok(())
        })
        .await?;
        Ok(source)
    }

    async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SOURCE_COLUMNS} FROM sources ORDER BY created_at, name"
                ))
                .map_err(storage)?;
            let rows = stmt.query_map([], source_row).map_err(storage)?;
            rows.collect::<Result<_, _>>().map_err(storage)
        })
        .await
    }

    async fn source(&self, id: &str) -> Result<Option<Source>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| match load_source(conn, &id) {
            Ok(source) => Ok(Some(source)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn source_by_write_key(&self, write_key: &str) -> Result<Option<Source>, StoreError> {
        if let Some(hit) = self
            .key_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(write_key)
        {
            return Ok(hit.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let key = write_key.to_owned();
        let found = self
            .run(move |conn| {
                conn.query_row(
                    &format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE write_key = ?1"),
                    [key],
                    source_row,
                )
                .optional()
                .map_err(storage)
            })
            .await?;
        let mut cache = self.key_cache.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(found);
        }
        // Unknown keys are cached too (cheap 401s), so bound the cache against key spraying.
        if cache.len() >= KEY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(write_key.to_owned(), found.clone());
        Ok(found)
    }

    async fn update_source(&self, id: &str, update: SourceUpdate) -> Result<Source, StoreError> {
        let id = id.to_owned();
        self.mutate(move |conn| {
            let current = load_source(conn, &id)?;
            let name = update.name.unwrap_or(current.name);
            let rate = update
                .rate_limit_per_second
                .unwrap_or(current.rate_limit_per_second);
            let origins = update.allowed_origins.unwrap_or(current.allowed_origins);
            conn.execute(
                "UPDATE sources SET name = ?2, rate_limit_per_second = ?3, allowed_origins = ?4
                 WHERE id = ?1",
                params![
                    id,
                    name,
                    rate,
                    serde_json::to_string(&origins).unwrap_or_else(|_| "[]".into())
                ],
            )
            .map_err(|e| source_write_error(e, &name))?;
            load_source(conn, &id)
        })
        .await
    }

    async fn delete_source(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.mutate(move |conn| {
            let deleted = conn
                .execute("DELETE FROM sources WHERE id = ?1", [id])
                .map_err(storage)?;
            if deleted == 0 {
                return Err(StoreError::NotFound("source"));
            }
            Ok(())
        })
        .await
    }

    async fn rotate_write_key(&self, id: &str) -> Result<Source, StoreError> {
        let id = id.to_owned();
        self.mutate(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE sources SET write_key = ?2 WHERE id = ?1",
                    params![id, new_write_key()],
                )
                .map_err(storage)?;
            if updated == 0 {
                return Err(StoreError::NotFound("source"));
            }
            load_source(conn, &id)
        })
        .await
    }

    async fn set_destination_cursor(
        &self,
        destination_id: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO destination_cursors (destination_id, seq) VALUES (?1, ?2)
                 ON CONFLICT (destination_id) DO UPDATE SET seq = excluded.seq",
                params![id, seq as i64],
            )
            .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn remove_destination_cursor(&self, destination_id: &str) -> Result<(), StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM destination_cursors WHERE destination_id = ?1",
                [id],
            )
            .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn lowest_destination_cursor(&self) -> Result<Option<u64>, StoreError> {
        self.run(|conn| {
            conn.query_row("SELECT MIN(seq) FROM destination_cursors", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .map(|seq| seq.map(|s| s as u64))
            .map_err(storage)
        })
        .await
    }

    async fn create_destination(
        &self,
        new: NewDestination,
        cursor: u64,
    ) -> Result<DestinationRecord, StoreError> {
        self.run(move |conn| delivery::create_destination(conn, new, cursor))
            .await
    }

    async fn list_destinations(&self) -> Result<Vec<DestinationRecord>, StoreError> {
        self.run(|conn| delivery::list_destinations(conn)).await
    }

    async fn destination(&self, id: &str) -> Result<Option<DestinationRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| delivery::destination(conn, &id)).await
    }

    async fn update_destination(
        &self,
        id: &str,
        update: DestinationUpdate,
    ) -> Result<DestinationRecord, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| delivery::update_destination(conn, &id, update))
            .await
    }

    async fn delete_destination(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |conn| delivery::delete_destination(conn, &id))
            .await
    }

    async fn destination_cursor(&self, destination_id: &str) -> Result<Option<u64>, StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::destination_cursor(conn, &id))
            .await
    }

    async fn commit_progress(
        &self,
        destination_id: &str,
        progress: Progress,
    ) -> Result<(), StoreError> {
        if progress.is_empty() {
            return Ok(());
        }
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::commit_progress(conn, &id, progress))
            .await
    }

    async fn held_events(&self, destination_id: &str) -> Result<Vec<HeldEvent>, StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::held_events(conn, &id)).await
    }

    async fn destination_backoff(
        &self,
        destination_id: &str,
    ) -> Result<Option<Backoff>, StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::destination_backoff(conn, &id))
            .await
    }

    async fn dead_letters(
        &self,
        destination_id: &str,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let (id, filter) = (destination_id.to_owned(), filter.clone());
        self.run(move |conn| delivery::dead_letters(conn, &id, &filter))
            .await
    }

    async fn count_dead_letters(&self, destination_id: &str) -> Result<u64, StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::count_dead_letters(conn, &id))
            .await
    }

    async fn replay_dead_letters(
        &self,
        destination_id: &str,
        filter: &DeadLetterFilter,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (id, filter) = (destination_id.to_owned(), filter.clone());
        self.run(move |conn| delivery::replay_dead_letters(conn, &id, &filter, now))
            .await
    }

    async fn deliveries(
        &self,
        destination_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let id = destination_id.to_owned();
        self.run(move |conn| delivery::deliveries(conn, &id, limit))
            .await
    }

    async fn identity_links(&self) -> Result<(Vec<IdentityLink>, u64), StoreError> {
        self.run(|conn| delivery::identity_links(conn)).await
    }

    async fn record_identities(&self, batch: IdentityBatch) -> Result<(), StoreError> {
        self.run(move |conn| delivery::record_identities(conn, batch))
            .await
    }

    async fn user_first_seen(&self, user_id: &str) -> Result<Option<u64>, StoreError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| delivery::user_first_seen(conn, &user_id))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(storage))
            .await
    }
}
