//! `GET /_test/stats`, `POST /_test/stats/reset` and bench mode (no recording).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{batch, send_raw, start};
use serde_json::{json, Value};
use sluice_testkit::ulid_time_ms;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID with time part `ms` and the random part `random` (80 bits).
fn ulid(ms: u64, random: u128) -> String {
    let value = (u128::from(ms) << 80) | (random & ((1 << 80) - 1));
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 0x1f) as usize] as char)
        .collect()
}

fn now_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_millis()).expect("ms fit")
}

fn event(id: &str) -> Value {
    json!({"type":"person","action":"event","identifiers":{"id":"u1"},"name":"Clicked","id":id})
}

async fn stats(url: &str) -> Value {
    let r = send_raw(url, "GET", "/_test/stats", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn ulid_helper_round_trips_through_the_decoder() {
    for ms in [0, 1, 1_700_000_000_000, (1 << 48) - 1] {
        assert_eq!(ulid_time_ms(&ulid(ms, 12_345)), Some(ms));
    }
}

#[tokio::test]
async fn stats_count_requests_ops_duplicates_and_latency() {
    let server = start().await;
    let url = server.url();
    let empty = stats(&url).await;
    assert_eq!(empty["requests"], 0);
    assert_eq!(empty["accepted_ops"], 0);
    assert_eq!(empty["latency_ms"]["count"], 0);

    // An event sent "1.5 s ago" and a person op without an id.
    let sent = now_ms() - 1_500;
    let id = ulid(sent, 7);
    let identify = json!({"type":"person","action":"identify","identifiers":{"id":"u1"}});
    batch(&server, &[event(&id), identify]).await.assert_ok();
    let s = stats(&url).await;
    assert_eq!(s["requests"], 1, "{s}");
    assert_eq!(s["accepted_ops"], 2, "{s}");
    assert_eq!(s["duplicate_ids"], 0, "{s}");
    assert_eq!(s["status_counts"], json!({"200": 1}), "{s}");
    assert_eq!(
        s["latency_ms"]["count"], 1,
        "only the event has a ULID: {s}"
    );
    let p50 = s["latency_ms"]["p50"].as_u64().expect("p50");
    assert!((1_500..10_000).contains(&p50), "{s}");
    assert_eq!(s["latency_ms"]["max"], p50);

    // The same id again is a duplicate; a bad op is a 207; no auth is a 401.
    let bad = json!({"type":"person","action":"fly","identifiers":{"id":"u1"}});
    let r = batch(&server, &[event(&id), bad]).await;
    assert_eq!(r.status, 207, "{}", r.body);
    let r = send_raw(&url, "POST", "/api/v2/batch", &[], "{}").await;
    assert_eq!(r.status, 401);
    let s = stats(&url).await;
    assert_eq!(s["requests"], 3, "{s}");
    assert_eq!(s["accepted_ops"], 2, "{s}");
    assert_eq!(s["duplicate_ids"], 1, "{s}");
    assert_eq!(
        s["status_counts"],
        json!({"200": 1, "207": 1, "401": 1}),
        "{s}"
    );
    assert_eq!(s["latency_ms"]["count"], 1, "{s}");

    // Reset zeroes the counters but keeps the dedupe memory.
    let r = send_raw(&url, "POST", "/_test/stats/reset", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = stats(&url).await;
    assert_eq!(s["requests"], 0, "{s}");
    assert_eq!(s["accepted_ops"], 0, "{s}");
    assert_eq!(s["status_counts"], json!({}), "{s}");
    assert_eq!(s["latency_ms"]["count"], 0, "{s}");
    batch(&server, &[event(&id)]).await.assert_ok();
    let s = stats(&url).await;
    assert_eq!(s["accepted_ops"], 0, "{s}");
    assert_eq!(s["duplicate_ids"], 1, "{s}");
    assert_eq!(server.stats(), s);
}

#[tokio::test]
async fn without_recording_nothing_is_kept_but_everything_is_counted() {
    let server = start().await;
    server.set_recording(false);
    let url = server.url();
    let now = now_ms();
    let ops: Vec<Value> = (0..100).map(|i| event(&ulid(now, i))).collect();
    batch(&server, &ops).await.assert_ok();
    batch(&server, &ops[..10]).await.assert_ok();

    assert!(server.requests().is_empty());
    assert!(server.accepted().is_empty());
    assert!(server.duplicate_event_ids().is_empty());
    for list in ["requests", "accepted", "duplicates"] {
        let r = send_raw(&url, "GET", &format!("/_test/{list}"), &[], "").await;
        assert_eq!(r.json(), json!([]), "{list}");
    }
    let s = server.stats();
    assert_eq!(s["requests"], 2, "{s}");
    assert_eq!(s["accepted_ops"], 100, "{s}");
    assert_eq!(s["duplicate_ids"], 10, "{s}");
    assert_eq!(s["latency_ms"]["count"], 100, "{s}");
    assert!(
        s["latency_ms"]["p99"].as_u64().expect("p99") < 10_000,
        "{s}"
    );

    // Recording back on: new requests are kept again.
    server.set_recording(true);
    batch(&server, &[event(&ulid(now, 1_000))])
        .await
        .assert_ok();
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.accepted().len(), 1);
}
