use async_trait::async_trait;
use sluice_core::Rejection;
use sluice_log::conformance::{self, sample_event, Backend};
use sluice_log::{AppendRequest, Durability, EventLog, LogError, SqliteLog, SqliteLogOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Sqlite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fresh() -> Sqlite {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.db");
    Sqlite { _dir: dir, path }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, dedupe_window: Duration) -> Arc<dyn EventLog> {
        let options = SqliteLogOptions {
            dedupe_window,
            ..SqliteLogOptions::default()
        };
        Arc::new(SqliteLog::open(&self.path, options).expect("open"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    conformance::run_all(fresh).await;
}

#[tokio::test]
async fn fsync_durability_means_synchronous_full() {
    let storage = fresh();
    let log = SqliteLog::open(&storage.path, SqliteLogOptions::default()).expect("open");
    assert_eq!(log.synchronous_level().expect("level"), 2, "FULL");
    log.close().await;
    let none = SqliteLogOptions {
        durability: Durability::None,
        ..SqliteLogOptions::default()
    };
    let log = SqliteLog::open(&storage.path, none).expect("open");
    assert_eq!(log.synchronous_level().expect("level"), 0, "OFF");
    log.close().await;
}

#[tokio::test]
async fn a_full_disk_is_reported_as_unavailable_and_keeps_nothing() {
    let storage = fresh();
    let options = SqliteLogOptions {
        max_page_count: Some(40),
        ..SqliteLogOptions::default()
    };
    let log = SqliteLog::open(&storage.path, options).expect("open");
    let mut outcome = Ok(Default::default());
    let mut appended = 0u64;
    for batch in 0..200 {
        let accepted = (0..50)
            .map(|i| sample_event(&format!("m-{batch}-{i}"), "u"))
            .collect();
        outcome = log
            .append(AppendRequest {
                source_id: "s".into(),
                received_at: chrono::Utc::now(),
                accepted,
                rejected: Vec::<Rejection>::new(),
            })
            .await;
        if outcome.is_err() {
            break;
        }
        appended += 50;
    }
    assert!(
        matches!(outcome, Err(LogError::Unavailable(_))),
        "{outcome:?}"
    );
    // The failed group left nothing behind: every stored event was acknowledged.
    assert_eq!(log.stats().await.expect("stats").events, appended);
    log.close().await;
}

#[tokio::test]
async fn an_unbounded_dedupe_window_keeps_working() {
    // Used to overflow `receivedAt - window` and kill the writer thread.
    let storage = fresh();
    let log = storage.open(Duration::MAX).await;
    let request = || AppendRequest {
        source_id: "s".into(),
        received_at: chrono::Utc::now(),
        accepted: vec![sample_event("m1", "u")],
        rejected: Vec::new(),
    };
    let first = log.append(request()).await.expect("first append");
    let again = log.append(request()).await.expect("second append");
    assert_eq!(
        again.admissions,
        vec![sluice_log::Admission::Duplicate(first.admissions[0].seq())]
    );
    log.close().await;
}
