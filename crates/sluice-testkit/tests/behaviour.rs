//! Dedupe, scripted responses, chaos, delay, the rate cap, recording, and the control API.

mod common;

use std::time::{Duration, Instant};

use common::{accepted_ops, basic, batch, post, send, send_raw, start, KEY, SITE};
use serde_json::{json, Value};
use sluice_testkit::{Chaos, CioOptions, CioTestServer, Scripted};

fn event(id: &str) -> Value {
    json!({"type":"person","action":"event","identifiers":{"id":"u1"},"name":"Clicked","id":id})
}

fn identify(id: &str) -> Value {
    json!({"type":"person","action":"identify","identifiers":{"id":id}})
}

#[tokio::test]
async fn dedupe_by_event_id_across_endpoints() {
    let server = start().await;
    let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    batch(&server, &[event(ulid), event("msg-1"), event(ulid)])
        .await
        .assert_ok();
    post(&server, "/api/v2/entity", &event("msg-1"))
        .await
        .assert_ok();
    let page =
        json!({"type":"person","action":"page","identifiers":{"id":"u1"},"name":"/p","id":ulid});
    post(&server, "/api/v2/entity", &page).await.assert_ok();
    // v1 events share the same memory.
    send(
        &server,
        "POST",
        "/api/v1/customers/u1/events",
        json!({"name":"Clicked","id":"msg-1"}).to_string(),
    )
    .await
    .assert_ok();
    // Ops without an id, and non-event ops, are never deduplicated.
    let no_id = json!({"type":"person","action":"event","identifiers":{"id":"u1"},"name":"NoId"});
    batch(
        &server,
        &[no_id.clone(), no_id.clone(), identify("u1"), identify("u1")],
    )
    .await
    .assert_ok();

    assert_eq!(
        accepted_ops(&server),
        vec![
            event(ulid),
            event("msg-1"),
            no_id.clone(),
            no_id,
            identify("u1"),
            identify("u1")
        ]
    );
    assert_eq!(
        server.duplicate_event_ids(),
        vec![ulid, "msg-1", ulid, "msg-1"]
    );
    let accepted = server.accepted();
    assert_eq!(accepted[0].event_id_is_ulid(), Some(true));
    assert_eq!(accepted[1].event_id_is_ulid(), Some(false));
    assert_eq!(accepted[2].event_id_is_ulid(), None);
    assert!(accepted
        .windows(2)
        .all(|w| w[0].received_at <= w[1].received_at));
    server.shutdown().await;
}

#[tokio::test]
async fn scripted_429_500_401_then_normal() {
    let server = start().await;
    server.push_responses([
        Scripted::rate_limited(2),
        Scripted::status(500),
        Scripted::Status {
            status: 401,
            retry_after: None,
            body: None,
        },
        Scripted::Status {
            status: 400,
            retry_after: None,
            body: Some(r#"{"meta":{"errors":["nope"]}}"#.into()),
        },
    ]);
    let r = batch(&server, &[identify("a")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after.as_deref(), Some("2"));
    assert_eq!(r.content_type.as_deref(), Some(common::JSON_UTF8));
    assert!(r.json()["meta"]["error"].is_string());
    let r = send(&server, "PUT", "/api/v1/customers/u1", "{}").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.retry_after, None);
    let r = post(&server, "/api/v2/entity", &identify("b")).await;
    assert_eq!(r.status, 401);
    let r = batch(&server, &[identify("c")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, r#"{"meta":{"errors":["nope"]}}"#);
    assert!(
        server.accepted().is_empty(),
        "scripted failures accept nothing"
    );
    // The queue is empty again.
    batch(&server, &[identify("d")]).await.assert_ok();
    assert_eq!(accepted_ops(&server), vec![identify("d")]);
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 500, 401, 400, 200]);
    server.shutdown().await;
}

#[tokio::test]
async fn scripted_responses_skip_the_region_endpoint() {
    let server = start().await;
    server.push_responses([Scripted::status(503)]);
    let auth = basic(SITE, KEY);
    let r = send_raw(
        &server.url(),
        "GET",
        "/api/v1/accounts/region",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(batch(&server, &[identify("a")]).await.status, 503);
    server.shutdown().await;
}

async fn chaos_run(seed: u64) -> (Vec<u16>, usize, Vec<Option<String>>) {
    let server = start().await;
    server.set_chaos(Chaos {
        seed,
        server_error_rate: 0.3,
        rate_limit_rate: 0.2,
        retry_after_secs: 3,
    });
    let mut statuses = Vec::new();
    let mut retry_afters = Vec::new();
    for i in 0..60 {
        let r = batch(&server, &[identify(&format!("u{i}"))]).await;
        statuses.push(r.status);
        retry_afters.push(r.retry_after);
    }
    let accepted = server.accepted().len();
    server.shutdown().await;
    (statuses, accepted, retry_afters)
}

#[tokio::test]
async fn chaos_with_a_seed_is_random_but_reproducible() {
    let (statuses, accepted, retry_afters) = chaos_run(42).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let server_errors = statuses
        .iter()
        .filter(|s| [500, 502, 503].contains(*s))
        .count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + server_errors + limited, 60, "{statuses:?}");
    assert!(ok >= 10, "{statuses:?}");
    assert!(server_errors >= 5, "{statuses:?}");
    assert!(limited >= 3, "{statuses:?}");
    assert_eq!(accepted, ok);
    for (status, retry_after) in statuses.iter().zip(&retry_afters) {
        assert_eq!(*status == 429, retry_after.as_deref() == Some("3"));
    }
    let (again, _, _) = chaos_run(42).await;
    assert_eq!(statuses, again, "same seed, same sequence");
    let (other, _, _) = chaos_run(7).await;
    assert_ne!(statuses, other);
}

#[tokio::test]
async fn chaos_off_with_zero_rates() {
    let server = start().await;
    server.set_chaos(Chaos {
        seed: 1,
        server_error_rate: 1.0,
        rate_limit_rate: 0.0,
        retry_after_secs: 1,
    });
    assert!([500, 502, 503].contains(&batch(&server, &[identify("a")]).await.status));
    server.set_chaos(Chaos::default());
    batch(&server, &[identify("a")]).await.assert_ok();
    server.shutdown().await;
}

#[tokio::test]
async fn delay_slows_track_requests_only() {
    let server = start().await;
    server.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    batch(&server, &[identify("a")]).await.assert_ok();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    let auth = basic(SITE, KEY);
    let r = send_raw(
        &server.url(),
        "GET",
        "/api/v1/accounts/region",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    server.set_delay(Duration::ZERO);
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_requests_are_visible_with_status_0() {
    let server = start().await;
    server.set_delay(Duration::from_millis(400));
    let url = server.url();
    let pending = tokio::spawn(async move {
        let auth = basic(SITE, KEY);
        send_raw(
            &url,
            "PUT",
            "/api/v1/customers/slow",
            &[("authorization", &auth)],
            "{}",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, 0);
    let r = pending.await.expect("join");
    r.assert_ok();
    assert_eq!(server.requests()[0].status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_cap_answers_429_with_retry_after_1() {
    let server = CioTestServer::start(CioOptions {
        max_requests_per_second: Some(5),
        ..CioOptions::default()
    })
    .await
    .expect("start");
    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = batch(&server, &[identify(&format!("u{i}"))]).await;
        if r.status == 429 {
            assert_eq!(r.retry_after.as_deref(), Some("1"));
        }
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 10,
        "{statuses:?}"
    );
    assert_eq!(
        server.accepted().len(),
        statuses.iter().filter(|s| **s == 200).count()
    );
    // Tokens come back over time.
    tokio::time::sleep(Duration::from_millis(450)).await;
    batch(&server, &[identify("later")]).await.assert_ok();
    server.set_max_requests_per_second(None);
    for _ in 0..10 {
        batch(&server, &[identify("free")]).await.assert_ok();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn records_every_request_and_clear_forgets() {
    let server = start().await;
    batch(&server, &[identify("a")]).await.assert_ok();
    let r = send(&server, "POST", "/api/v1/customers/u1/events", "{}").await;
    assert_eq!(r.status, 400);
    let r = send(&server, "GET", "/api/v1/nothing/here?x=1", "").await;
    assert_eq!(r.status, 404);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/api/v2/batch");
    assert_eq!(
        requests[0].body,
        json!({"batch":[identify("a")]}).to_string()
    );
    assert_eq!(
        requests[0].header("Authorization"),
        Some(basic(SITE, KEY).as_str())
    );
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(
        (requests[0].status, requests[0].response_body.as_str()),
        (200, "{}")
    );
    assert_eq!(requests[1].status, 400);
    assert!(
        requests[1].response_body.contains("name"),
        "{}",
        requests[1].response_body
    );
    assert_eq!(requests[2].path, "/api/v1/nothing/here?x=1");
    server.push_responses([Scripted::status(500)]);
    assert_eq!(batch(&server, &[event("e1")]).await.status, 500);
    assert!(
        server.accepted().len() == 1,
        "the scripted 500 accepted nothing"
    );
    server.push_responses([Scripted::status(500)]);
    server.clear();
    assert!(server.requests().is_empty());
    assert!(server.accepted().is_empty());
    // The queued 500 is gone, and so is the dedupe memory.
    batch(&server, &[event("e1")]).await.assert_ok();
    batch(&server, &[event("e1")]).await.assert_ok();
    assert_eq!(server.accepted().len(), 1);
    assert_eq!(server.duplicate_event_ids(), vec!["e1"]);
    server.shutdown().await;
}

#[tokio::test]
async fn control_api_drives_the_same_state() {
    let server = start().await;
    let url = server.url();
    let control = |method: &'static str, path: &'static str, body: Value| {
        let url = url.clone();
        async move {
            send_raw(
                &url,
                method,
                path,
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await
        }
    };
    let r = control(
        "POST",
        "/_test/responses",
        json!([{"status":503,"retry_after":4}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = batch(&server, &[identify("a")]).await;
    assert_eq!((r.status, r.retry_after.as_deref()), (503, Some("4")));

    batch(&server, &[event("x"), event("x")]).await.assert_ok();
    let r = control("GET", "/_test/accepted", Value::Null).await;
    assert_eq!(r.json(), json!([event("x")]));
    let r = control("GET", "/_test/duplicates", Value::Null).await;
    assert_eq!(r.json(), json!(["x"]));
    let r = control("GET", "/_test/requests", Value::Null).await;
    let recorded = r.json();
    assert_eq!(
        recorded.as_array().map(Vec::len),
        Some(2),
        "control calls are not recorded"
    );
    assert_eq!(recorded[0]["status"], 503);
    assert_eq!(recorded[1]["path"], "/api/v2/batch");

    let r = control(
        "POST",
        "/_test/credentials",
        json!({"site_id":"S2","api_key":"K2"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(batch(&server, &[identify("a")]).await.status, 401);
    server.set_credentials(SITE, KEY);

    control(
        "POST",
        "/_test/chaos",
        json!({"seed":1,"server_error_rate":1.0,"rate_limit_rate":0.0,"retry_after_secs":1}),
    )
    .await;
    assert!([500, 502, 503].contains(&batch(&server, &[identify("a")]).await.status));
    control("POST", "/_test/chaos", json!({"seed":1})).await;
    batch(&server, &[identify("a")]).await.assert_ok();

    control("POST", "/_test/delay", json!({"ms":250})).await;
    let started = Instant::now();
    batch(&server, &[identify("a")]).await.assert_ok();
    assert!(started.elapsed() >= Duration::from_millis(250));
    control("POST", "/_test/delay", json!({"ms":0})).await;

    control("POST", "/_test/rate", json!({"max_rps":1})).await;
    batch(&server, &[identify("a")]).await.assert_ok();
    assert_eq!(batch(&server, &[identify("a")]).await.status, 429);
    control("POST", "/_test/rate", json!({"max_rps":null})).await;

    let r = control("POST", "/_test/clear", Value::Null).await;
    assert_eq!(r.status, 200);
    assert!(server.requests().is_empty() && server.accepted().is_empty());

    // Bad control input is a 400, unknown calls 404; nothing panics.
    assert_eq!(
        control("POST", "/_test/responses", json!([{"status":2000}]))
            .await
            .status,
        400
    );
    assert_eq!(
        control("POST", "/_test/chaos", json!({"server_error_rate":2.0}))
            .await
            .status,
        400
    );
    assert_eq!(
        control("POST", "/_test/delay", json!("soon")).await.status,
        400
    );
    assert_eq!(control("GET", "/_test/nope", Value::Null).await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn start_on_a_given_address() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let server = CioTestServer::start_on(addr, CioOptions::default())
        .await
        .expect("start_on");
    assert_eq!(server.addr(), addr);
    batch(&server, &[identify("a")]).await.assert_ok();
    server.shutdown().await;
}
