//! The behaviour every [`EventLog`] backend must show. Each backend's tests call [`run_all`];
//! a JetStream backend will run the very same cases.

use crate::{Admission, AppendRequest, EventLog, RetentionPolicy};
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::json;
use sluice_core::{Event, Rejection};
use std::sync::Arc;
use std::time::Duration;

/// A backend under test. `open` on the same value reopens the same storage, as a restart would.
#[async_trait]
pub trait Backend: Send + Sync {
    async fn open(&self, dedupe_window: Duration) -> Arc<dyn EventLog>;
}

/// Runs every case, each against fresh storage from `fresh`.
pub async fn run_all<B: Backend>(fresh: impl Fn() -> B) {
    sequence_numbers_increase_and_survive_restart(&fresh()).await;
    sequence_numbers_are_never_reused_after_trim(&fresh()).await;
    duplicates_within_the_window_are_stored_once(&fresh()).await;
    dedupe_survives_restart(&fresh()).await;
    dedupe_outlives_trimmed_events(&fresh()).await;
    dedupe_is_per_source_and_expires(&fresh()).await;
    read_and_recent_return_what_was_appended(&fresh()).await;
    rejected_events_are_recorded(&fresh()).await;
    retention_point_follows_age_and_size(&fresh()).await;
    closed_log_refuses_appends(&fresh()).await;
    readers_are_told_of_new_events(&fresh()).await;
}

const WINDOW: Duration = Duration::from_secs(3600);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// A normalised track event.
pub fn sample_event(message_id: &str, user_id: &str) -> Event {
    let value = json!({
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id,
        "userId": user_id,
        "properties": {"total": 42},
        "receivedAt": "2026-12-04T12:00:00.000Z",
        "timestamp": "2026-12-04T12:00:00.000Z",
    });
    match value {
        serde_json::Value::Object(fields) => Event::from_normalised(fields),
        _ => unreachable!("a json object literal"),
    }
}

fn request(source: &str, at: DateTime<Utc>, ids: &[&str]) -> AppendRequest {
    AppendRequest {
        source_id: source.into(),
        received_at: at,
        accepted: ids.iter().map(|id| sample_event(id, "user-1")).collect(),
        rejected: Vec::new(),
    }
}

async fn append(
    log: &Arc<dyn EventLog>,
    source: &str,
    at: DateTime<Utc>,
    ids: &[&str],
) -> Vec<Admission> {
    log.append(request(source, at, ids))
        .await
        .expect("append")
        .admissions
}

fn appended(admissions: &[Admission]) -> Vec<u64> {
    admissions
        .iter()
        .map(|a| match a {
            Admission::Appended(seq) => *seq,
            Admission::Duplicate(seq) => panic!("unexpected duplicate of {seq}"),
        })
        .collect()
}

async fn sequence_numbers_increase_and_survive_restart(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let first = appended(&append(&log, "s1", t0(), &["a", "b", "c"]).await);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "seqs must increase: {first:?}"
    );
    let second = appended(&append(&log, "s1", t0(), &["d"]).await);
    assert!(second[0] > first[2]);
    log.close().await;
    let log = backend.open(WINDOW).await;
    let third = appended(&append(&log, "s1", t0(), &["e"]).await);
    assert!(
        third[0] > second[0],
        "seq after restart {third:?} must exceed {second:?}"
    );
    let all = log.read(0, 100).await.expect("read");
    assert_eq!(
        all.iter().map(|e| e.event.message_id()).collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    log.close().await;
}

async fn sequence_numbers_are_never_reused_after_trim(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let seqs = appended(&append(&log, "s1", t0(), &["a", "b"]).await);
    let deleted = log.trim(seqs[1] + 1).await.expect("trim");
    assert_eq!(deleted, 2);
    assert_eq!(log.stats().await.expect("stats").events, 0);
    log.close().await;
    let log = backend.open(WINDOW).await;
    let next = appended(&append(&log, "s1", t0(), &["c"]).await);
    assert!(
        next[0] > seqs[1],
        "seq {} reused after the log was emptied",
        next[0]
    );
    log.close().await;
}

async fn duplicates_within_the_window_are_stored_once(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let first = append(&log, "s1", t0(), &["m1", "m2", "m1"]).await;
    assert!(matches!(first[0], Admission::Appended(_)));
    assert!(matches!(first[1], Admission::Appended(_)));
    assert_eq!(
        first[2],
        Admission::Duplicate(first[0].seq()),
        "a duplicate inside one request"
    );
    let again = append(&log, "s1", t0() + ChronoDuration::minutes(59), &["m2"]).await;
    assert_eq!(again, vec![Admission::Duplicate(first[1].seq())]);
    assert_eq!(log.stats().await.expect("stats").events, 2);
    log.close().await;
}

async fn dedupe_survives_restart(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let first = append(&log, "s1", t0(), &["m1"]).await;
    log.close().await;
    let log = backend.open(WINDOW).await;
    let again = append(&log, "s1", t0() + ChronoDuration::seconds(1), &["m1"]).await;
    assert_eq!(again, vec![Admission::Duplicate(first[0].seq())]);
    log.close().await;
}

async fn dedupe_outlives_trimmed_events(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let first = append(&log, "s1", t0(), &["m1", "m2", "m3"]).await;
    log.trim(first[2].seq() + 1).await.expect("trim");
    assert_eq!(log.stats().await.expect("stats").events, 0);
    let again = append(&log, "s1", t0() + ChronoDuration::minutes(1), &["m2", "m4"]).await;
    assert_eq!(
        again[0],
        Admission::Duplicate(first[1].seq()),
        "trimmed, but still inside the window"
    );
    assert!(matches!(again[1], Admission::Appended(_)));
    log.close().await;
    let log = backend.open(WINDOW).await;
    let after_restart = append(&log, "s1", t0() + ChronoDuration::minutes(2), &["m3", "m4"]).await;
    assert_eq!(after_restart[0], Admission::Duplicate(first[2].seq()));
    assert_eq!(after_restart[1], Admission::Duplicate(again[1].seq()));
    log.close().await;
}

async fn dedupe_is_per_source_and_expires(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    appended(&append(&log, "s1", t0(), &["m1"]).await);
    appended(&append(&log, "s2", t0(), &["m1"]).await);
    // Past the window the same messageId is a new event.
    let later = t0() + ChronoDuration::minutes(61);
    appended(&append(&log, "s1", later, &["m1"]).await);
    // And the window restarts from the re-admission.
    let dup = append(&log, "s1", later + ChronoDuration::minutes(1), &["m1"]).await;
    assert!(matches!(dup[0], Admission::Duplicate(_)));
    // Expiring entries forgets them even inside the configured window.
    log.expire(later + ChronoDuration::seconds(1), t0())
        .await
        .expect("expire");
    appended(&append(&log, "s1", later + ChronoDuration::minutes(2), &["m1"]).await);
    assert_eq!(log.stats().await.expect("stats").events, 4);
    log.close().await;
}

async fn read_and_recent_return_what_was_appended(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let a = appended(&append(&log, "s1", t0(), &["a1", "a2", "a3"]).await);
    let b = appended(&append(&log, "s2", t0(), &["b1"]).await);
    let from_second = log.read(a[1], 10).await.expect("read");
    assert_eq!(
        from_second.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![a[1], a[2], b[0]]
    );
    assert_eq!(from_second[0].event, sample_event("a2", "user-1"));
    assert_eq!(from_second[0].received_at, t0());
    assert_eq!(log.read(a[0], 2).await.expect("read").len(), 2);
    let recent = log.recent("s1", 2, None).await.expect("recent");
    assert_eq!(
        recent
            .iter()
            .map(|e| e.event.message_id())
            .collect::<Vec<_>>(),
        ["a3", "a2"]
    );
    let newer = log.recent("s1", 10, Some(a[1])).await.expect("recent");
    assert_eq!(newer.len(), 1);
    assert_eq!(newer[0].seq, a[2]);
    assert!(log
        .recent("nope", 10, None)
        .await
        .expect("recent")
        .is_empty());
    log.close().await;
}

async fn rejected_events_are_recorded(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let mut req = request("s1", t0(), &["ok"]);
    req.rejected.push(Rejection {
        index: 1,
        code: "missing_field",
        message: "`event` is required for track".into(),
        payload: "{\"type\":\"track\"}".into(),
    });
    log.append(req).await.expect("append");
    let rejected = log.recent_rejected("s1", 10).await.expect("rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 1);
    assert_eq!(rejected[0].code, "missing_field");
    assert_eq!(rejected[0].payload, "{\"type\":\"track\"}");
    log.expire(t0(), t0() + ChronoDuration::seconds(1))
        .await
        .expect("expire");
    assert!(log
        .recent_rejected("s1", 10)
        .await
        .expect("rejected")
        .is_empty());
    log.close().await;
}

async fn retention_point_follows_age_and_size(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let old = appended(&append(&log, "s1", t0(), &["o1", "o2"]).await);
    let young = appended(&append(&log, "s1", t0() + ChronoDuration::hours(2), &["y1", "y2"]).await);
    let now = t0() + ChronoDuration::hours(3);
    assert_eq!(
        log.retention_point(&RetentionPolicy::default(), now)
            .await
            .expect("point"),
        None
    );
    let by_age = RetentionPolicy {
        max_age: Some(Duration::from_secs(2 * 3600)),
        max_bytes: None,
    };
    assert_eq!(
        log.retention_point(&by_age, now).await.expect("point"),
        Some(young[0])
    );
    let keep_all = RetentionPolicy {
        max_age: Some(Duration::from_secs(5 * 3600)),
        max_bytes: None,
    };
    assert_eq!(
        log.retention_point(&keep_all, now).await.expect("point"),
        None
    );
    let stats = log.stats().await.expect("stats");
    let one_event = stats.bytes / 4;
    assert!(one_event > 0);
    let by_size = RetentionPolicy {
        max_age: None,
        max_bytes: Some(one_event * 3),
    };
    assert_eq!(
        log.retention_point(&by_size, now).await.expect("point"),
        Some(old[1])
    );
    let nothing_fits = RetentionPolicy {
        max_age: None,
        max_bytes: Some(0),
    };
    assert_eq!(
        log.retention_point(&nothing_fits, now)
            .await
            .expect("point"),
        Some(young[1] + 1)
    );
    log.trim(young[0]).await.expect("trim");
    let left = log.stats().await.expect("stats");
    assert_eq!(left.events, 2);
    assert_eq!(left.first_seq, Some(young[0]));
    assert_eq!(left.bytes, one_event * 2);
    log.close().await;
}

async fn closed_log_refuses_appends(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    appended(&append(&log, "s1", t0(), &["a"]).await);
    log.close().await;
    let refused = log.append(request("s1", t0(), &["b"])).await;
    assert!(
        matches!(refused, Err(crate::LogError::Closed)),
        "{refused:?}"
    );
}

async fn readers_are_told_of_new_events(backend: &dyn Backend) {
    let log = backend.open(WINDOW).await;
    let mut appended_rx = log.appended();
    let seqs = appended(&append(&log, "s1", t0(), &["a", "b"]).await);
    tokio::time::timeout(Duration::from_secs(5), appended_rx.changed())
        .await
        .expect("told within 5 s")
        .expect("sender alive");
    assert_eq!(*appended_rx.borrow_and_update(), seqs[1]);
    // A duplicate is not news.
    let again = append(&log, "s1", t0(), &["a"]).await;
    assert!(matches!(again[0], Admission::Duplicate(_)));
    assert!(!appended_rx.has_changed().expect("sender alive"));
    log.close().await;
}
