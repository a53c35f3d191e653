//! What was acknowledged survives: kill -9 during sustained posting, and retention that never
//! deletes what a destination has not yet passed.

mod common;

use common::*;
use serde_json::json;
use sluice_log::{EventLog, RetentionPolicy, SqliteLog, SqliteLogOptions};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Child;

/// Starts the real binary with the test token and keeps draining its stdout.
async fn start_binary(data_dir: &std::path::Path) -> (Child, String) {
    let (child, url, mut lines) = start_binary_process(data_dir, Some(TOKEN)).await;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_binary(dir.path()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let source = create_source_at(&http, &base, TOKEN, "crash").await;
    let key = source["write_key"].as_str().unwrap().to_owned();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (http, base, key, acked) = (http.clone(), base.clone(), key.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            // Bounded: stops at the first failure (the kill) or after 5,000 requests.
            for n in 0..5_000 {
                let ids: Vec<String> = (0..10).map(|i| format!("w{writer}-{n}-{i}")).collect();
                let batch: Vec<_> = ids
                    .iter()
                    .map(
                        |id| json!({"type": "track", "event": "E", "userId": "u", "messageId": id}),
                    )
                    .collect();
                let response = http
                    .post(format!("{base}/v1/batch"))
                    .basic_auth(&key, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    _ => return,
                }
            }
        }));
    }
    // Kill once a good number of requests were acknowledged (polled, with a deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20_000 {
        assert!(
            Instant::now() < deadline,
            "too few acknowledgements before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("kill -9");
    child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();

    // Restart on the same data folder: it recovers and serves.
    let (mut child, base) = start_binary(dir.path()).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let log = SqliteLog::open(dir.path().join("log.db"), SqliteLogOptions::default()).unwrap();
    let stored: HashSet<String> = log
        .read(0, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.message_id().to_owned())
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    log.close().await;
}

#[tokio::test]
async fn retention_trims_by_age_but_never_above_a_destination_cursor() {
    let app = spawn().await;
    let source = app.create_source("old").await;
    for id in ["old-1", "old-2", "old-3"] {
        let body = json!({"userId": "u", "event": "E", "messageId": id});
        app.post_ok("/v1/track", &source.write_key, &body).await;
    }
    app.clock.advance(chrono::Duration::days(2));
    for id in ["new-1", "new-2"] {
        let body = json!({"userId": "u", "event": "E", "messageId": id});
        app.post_ok("/v1/track", &source.write_key, &body).await;
    }
    let seqs: Vec<u64> = app
        .server
        .log
        .read(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs.len(), 5);

    let mut config = app.config.clone();
    config.log.retention_max_age = "1d".into();
    let durations = config.durations().unwrap();
    let policy = RetentionPolicy {
        max_age: durations.retention_max_age,
        max_bytes: None,
    };
    let retain = || {
        sluice::server::retain(
            app.server.log.as_ref(),
            app.server.store.as_ref(),
            app.clock.as_ref(),
            &policy,
            &durations,
            u64::MAX,
        )
    };

    // A (paused or slow) destination has passed only the first event.
    app.server
        .store
        .set_destination_cursor("slow", seqs[0])
        .await
        .unwrap();
    app.server
        .store
        .set_destination_cursor("fast", seqs[4])
        .await
        .unwrap();
    assert_eq!(retain().await.unwrap(), 1);
    let left = app.logged_message_ids().await;
    assert_eq!(left, ["old-2", "old-3", "new-1", "new-2"]);

    app.server
        .store
        .set_destination_cursor("slow", seqs[4])
        .await
        .unwrap();
    assert_eq!(retain().await.unwrap(), 2);
    let left = app.logged_message_ids().await;
    assert_eq!(
        left,
        ["new-1", "new-2"],
        "young events stay even when every destination passed them"
    );

    // A size cap trims the oldest, also bounded by cursors.
    let bytes = app.server.log.stats().await.unwrap().bytes;
    let by_size = RetentionPolicy {
        max_age: None,
        max_bytes: Some(bytes / 2),
    };
    let deleted = sluice::server::retain(
        app.server.log.as_ref(),
        app.server.store.as_ref(),
        app.clock.as_ref(),
        &by_size,
        &durations,
        u64::MAX,
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
}
