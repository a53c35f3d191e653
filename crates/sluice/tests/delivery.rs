//! The delivery engine end to end: Segment-shaped events posted to sluice arrive at the
//! Customer.io-compatible test server (or a webhook), mapped, in order per person, through
//! failures, pauses and replays.

mod common;

use common::*;
use serde_json::{json, Value};
use sluice_testkit::{Chaos, CioOptions, CioTestServer, Scripted};
use std::time::Duration;

async fn cio() -> CioTestServer {
    CioTestServer::start(CioOptions::default())
        .await
        .expect("test server")
}

fn cio_config(server: &CioTestServer) -> Value {
    json!({"site_id": "SITE_ID_TEST", "api_key": "API_KEY_TEST", "track_url": server.url()})
}

/// Quick retries: the tests move the manual clock to make a backoff pass.
fn fast(config: &mut sluice::Config) {
    config.delivery.poll_interval = "10ms".into();
    config.delivery.backoff_base = "1s".into();
    config.delivery.backoff_max = "8s".into();
}

async fn spawn_fast() -> TestApp {
    spawn_with(fast).await
}

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_destination(app: &TestApp, body: Value) -> Value {
    let (status, created) = admin(
        app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}

/// `count` track events spread round-robin over `people` persons `p0…`, each carrying its
/// place in its person's sequence as `properties.n`.
fn steps(people: usize, range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|i| {
            json!({"type": "track", "userId": format!("p{}", i % people), "event": "Step",
                   "messageId": format!("m{i}"), "properties": {"n": i / people}})
        })
        .collect()
}

/// Asserts that each person's steps arrived complete and in order.
fn assert_steps_in_order(all: &[Value], people: usize, per_person: u64) {
    for person in 0..people {
        let seen: Vec<u64> = all
            .iter()
            .filter(|op| op["identifiers"]["id"] == format!("p{person}"))
            .map(|op| op["attributes"]["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(
            seen,
            (0..per_person).collect::<Vec<_>>(),
            "order of p{person}"
        );
    }
}

fn ops(server: &CioTestServer) -> Vec<Value> {
    server.accepted().into_iter().map(|a| a.op).collect()
}

async fn wait_for_ops(server: &CioTestServer, count: usize) -> Vec<Value> {
    eventually(&format!("{count} accepted ops"), || {
        let all = ops(server);
        (all.len() >= count).then_some(all)
    })
    .await
}

#[tokio::test]
async fn a_customerio_destination_receives_every_call_mapped() {
    let app = spawn_fast().await;
    let server = cio().await;
    let source = app.create_source("web").await;
    let created = create_destination(
        &app,
        json!({"name": "cio-prod", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    assert_eq!(
        created["config"]["api_key"], "••••TEST",
        "the key is masked"
    );
    assert!(!created.to_string().contains("API_KEY_TEST"));

    let batch = json!({"batch": [
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
         "traits": {"email": "jane@example.com", "createdAt": "2026-01-01T00:00:00Z", "plan": "pro"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m2", "properties": {"total": 30}},
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "m3", "properties": {"url": "https://shop.test/"}},
        {"type": "screen", "userId": "u1", "name": "Settings", "messageId": "m4"},
        {"type": "group", "userId": "u1", "groupId": "acme", "messageId": "m5", "traits": {"name": "Acme"}},
        {"type": "track", "anonymousId": "a9", "event": "Browsed", "messageId": "m6"},
        {"type": "track", "userId": "u1", "event": "Application Opened", "messageId": "m7",
         "context": {"device": {"token": "tok-1", "type": "ios"}}},
        {"type": "track", "userId": "u1", "event": "Application Opened", "messageId": "m8"},
        {"type": "track", "userId": "u2", "event": "Application Uninstalled", "messageId": "m9",
         "context": {"device": {"token": "tok-2", "type": "android"}}},
        {"type": "track", "userId": "u2", "event": "User Suppressed", "messageId": "m10"},
        {"type": "track", "userId": "u2", "event": "User Unsuppressed", "messageId": "m11"},
        {"type": "track", "userId": "u2", "event": "User Deleted", "messageId": "m12"}
    ]});
    app.post_ok("/v1/batch", &source.write_key, &batch).await;

    let all = wait_for_ops(&server, 11).await;
    let by_action =
        |action: &str| -> Vec<&Value> { all.iter().filter(|op| op["action"] == action).collect() };
    let identify = by_action("identify")
        .into_iter()
        .find(|op| op["type"] == "person")
        .expect("identify");
    assert_eq!(identify["identifiers"], json!({"id": "u1"}));
    assert_eq!(identify["attributes"]["email"], "jane@example.com");
    assert_eq!(identify["attributes"]["created_at"], 1_767_225_600);
    assert_eq!(identify["attributes"]["anonymous_id"], "a1");
    let events = by_action("event");
    assert_eq!(events.len(), 2);
    let order = events
        .iter()
        .find(|op| op["name"] == "Order Completed")
        .expect("track");
    assert_eq!(order["attributes"]["total"], 30);
    assert!(order["id"].as_str().is_some_and(|id| id.len() == 26));
    assert!(order["timestamp"].is_i64());
    let anonymous = events
        .iter()
        .find(|op| op["name"] == "Browsed")
        .expect("anonymous");
    assert_eq!(anonymous["identifiers"], json!({"anonymous_id": "a9"}));
    assert_eq!(by_action("page")[0]["name"], "https://shop.test/");
    assert_eq!(by_action("screen")[0]["name"], "Settings");
    let group = all.iter().find(|op| op["type"] == "object").expect("group");
    assert_eq!(
        group["identifiers"],
        json!({"object_type_id": "1", "object_id": "acme"})
    );
    assert_eq!(
        group["cio_relationships"][0]["identifiers"],
        json!({"id": "u1"})
    );
    assert_eq!(by_action("add_device")[0]["device"]["token"], "tok-1");
    assert_eq!(
        by_action("delete_device")[0]["device"],
        json!({"token": "tok-2"})
    );
    // u2's lifecycle operations arrive in the order they were sent.
    let u2: Vec<&str> = all
        .iter()
        .filter(|op| op["identifiers"] == json!({"id": "u2"}))
        .map(|op| op["action"].as_str().unwrap())
        .collect();
    assert_eq!(u2, ["delete_device", "suppress", "unsuppress", "delete"]);

    // The Application Opened without a token is in the delivery log as skipped, with a reason.
    let id = created["id"].as_str().unwrap();
    let deliveries = eventually_async("the skipped event in the delivery log", || async {
        let (_, log) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}/deliveries?limit=100"),
            None,
        )
        .await;
        let list = log["deliveries"].as_array().cloned().unwrap_or_default();
        list.iter()
            .any(|d| d["outcome"] == "skipped")
            .then_some(list)
    })
    .await;
    let skipped = deliveries
        .iter()
        .find(|d| d["outcome"] == "skipped")
        .unwrap();
    assert_eq!(skipped["message_ids"], json!(["m8"]));
    assert!(skipped["error"]
        .as_str()
        .unwrap()
        .contains("context.device.token"));
    let sent = deliveries
        .iter()
        .find(|d| d["outcome"] == "delivered")
        .expect("an attempt");
    assert!(sent["request_body"]
        .as_str()
        .unwrap()
        .starts_with("{\"batch\":["));
    assert_eq!(sent["http_status"], 200);

    let metrics = app.metrics_text().await;
    for line in [
        r#"sluice_destination_events_total{destination="cio-prod",outcome="delivered"}"#,
        r#"sluice_destination_events_total{destination="cio-prod",outcome="skipped"}"#,
        r#"sluice_delivery_requests_total{outcome="delivered"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }

    // One request never carries two operations for one person.
    for request in server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v2/batch")
    {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        let people: Vec<String> = body["batch"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["type"] == "person")
            .map(|op| op["identifiers"].to_string())
            .collect();
        let unique: std::collections::HashSet<_> = people.iter().collect();
        assert_eq!(
            unique.len(),
            people.len(),
            "two ops for one person in {}",
            request.body
        );
    }
}

#[tokio::test]
async fn rejected_credentials_and_duplicate_names_are_refused_before_anything_is_activated() {
    let app = spawn_fast().await;
    let server = cio().await;
    let mut bad = cio_config(&server);
    bad["api_key"] = "wrong".into();
    let (status, body) = admin(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(json!({"name": "cio", "type": "customerio", "config": bad})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"], json!(["config.api_key"]));
    assert!(body["message"].as_str().unwrap().contains("rejected"));
    let (_, list) = admin(&app, reqwest::Method::GET, "/api/v1/destinations", None).await;
    assert_eq!(list["destinations"], json!([]), "nothing was created");

    let (status, body) = admin(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(json!({"name": "cio", "type": "customerio", "config": {"site_id": "s"}})),
    )
    .await;
    assert_eq!(
        (status, body["fields"].clone()),
        (422, json!(["config.api_key"]))
    );
    let (status, body) = admin(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(json!({"name": "x", "type": "mailchimp", "config": {}})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("customerio, webhook"),
        "{body}"
    );

    create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let (status, body) = admin(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(json!({"name": "cio", "type": "customerio", "config": cio_config(&server)})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
}

#[tokio::test]
async fn a_new_destination_starts_now_unless_asked_to_backfill() {
    let app = spawn_fast().await;
    let (now_server, oldest_server) = (cio().await, cio().await);
    let source = app.create_source("server").await;
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "Before", "messageId": "b1"}),
    )
    .await;
    create_destination(
        &app,
        json!({"name": "now", "type": "customerio", "config": cio_config(&now_server)}),
    )
    .await;
    create_destination(&app, json!({"name": "old", "type": "customerio", "start": "oldest", "config": cio_config(&oldest_server)})).await;
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "After", "messageId": "a1"}),
    )
    .await;
    let names = |server: &CioTestServer| {
        ops(server)
            .iter()
            .map(|op| op["name"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    eventually("backfill", || {
        (names(&oldest_server) == ["Before", "After"]).then_some(())
    })
    .await;
    eventually("now", || (names(&now_server) == ["After"]).then_some(())).await;
}

#[tokio::test]
async fn retries_honour_retry_after_and_keep_each_persons_order() {
    let app = spawn_with(|config| {
        fast(config);
        config.delivery.max_in_flight = 1;
    })
    .await;
    let server = cio().await;
    let source = app.create_source("server").await;
    create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    server.push_responses([Scripted::status(503), Scripted::rate_limited(30)]);
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"type": "track", "userId": format!("p{}", i % 2), "event": format!("E{i}"), "messageId": format!("m{i}")}))
        .collect();
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": events}))
        .await;

    // The 503, then (after its backoff on the manual clock) the 429; after the 429 nothing is
    // sent until its Retry-After has passed.
    let statuses = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v2/batch")
            .map(|r| r.status)
            .collect::<Vec<u16>>()
    };
    eventually("a 503", || (statuses() == [503]).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        statuses(),
        [503],
        "the backoff after a 503 is at least half a second"
    );
    app.clock.advance(chrono::Duration::seconds(2));
    eventually("a 429", || (statuses() == [503, 429]).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batch_requests = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v2/batch")
            .count()
    };
    assert_eq!(
        batch_requests(),
        2,
        "a request went out before Retry-After passed"
    );
    assert!(ops(&server).is_empty());
    app.clock.advance(chrono::Duration::seconds(29));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(batch_requests(), 2, "Retry-After is 30 s, not 29");
    // Advance in steps past every backoff until all six are delivered.
    let all = eventually_async("all six delivered", || async {
        app.clock.advance(chrono::Duration::seconds(10));
        let all = ops(&server);
        (all.len() == 6).then_some(all)
    })
    .await;
    for person in ["p0", "p1"] {
        let names: Vec<&str> = all
            .iter()
            .filter(|op| op["identifiers"]["id"] == person)
            .map(|op| op["name"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..6)
            .filter(|i| format!("p{}", i % 2) == person)
            .map(|i| format!("E{i}"))
            .collect();
        assert_eq!(names, expected, "order of {person}");
    }
}

#[tokio::test]
async fn a_failing_person_is_held_while_everyone_else_flows() {
    let app = spawn_with(|config| {
        fast(config);
        config.delivery.max_in_flight = 1;
    })
    .await;
    let server = cio().await;
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let track = |user: &str, name: &str| json!({"userId": user, "event": name, "messageId": format!("{user}-{name}")});
    let batch_statuses = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v2/batch")
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };

    // poison's first event fails alone (attempt 1), then alongside alice's (attempt 2), then
    // alone again: from its third attempt on, a failing event goes in a request of its own.
    server.push_responses([
        Scripted::status(500),
        Scripted::status(500),
        Scripted::status(500),
    ]);
    app.post_ok("/v1/track", &source.write_key, &track("poison", "P1"))
        .await;
    eventually("first failure", || {
        (batch_statuses().len() == 1).then_some(())
    })
    .await;
    app.post_ok("/v1/track", &source.write_key, &track("poison", "P2"))
        .await;
    app.post_ok("/v1/track", &source.write_key, &track("alice", "A1"))
        .await;
    app.clock.advance(chrono::Duration::seconds(10));
    eventually("second failure", || {
        (batch_statuses().len() == 2).then_some(())
    })
    .await;
    app.clock.advance(chrono::Duration::seconds(10));
    eventually("alice delivered while poison fails", || {
        ops(&server)
            .iter()
            .any(|op| op["identifiers"]["id"] == "alice")
            .then_some(())
    })
    .await;
    assert_eq!(batch_statuses(), [500, 500, 500, 200]);
    assert!(ops(&server)
        .iter()
        .all(|op| op["identifiers"]["id"] != "poison"));
    let (_, shown) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/destinations/{id}"),
        None,
    )
    .await;
    assert_eq!(shown["status"]["held"], 2, "P1 and P2 are held: {shown}");
    // More of alice's events flow while poison is still held.
    app.post_ok("/v1/track", &source.write_key, &track("alice", "A2"))
        .await;
    eventually("A2", || {
        ops(&server)
            .iter()
            .any(|op| op["name"] == "A2")
            .then_some(())
    })
    .await;
    // poison recovers: both of its events arrive, in order.
    let poison = eventually_async("poison delivered", || async {
        app.clock.advance(chrono::Duration::seconds(10));
        let names: Vec<String> = ops(&server)
            .iter()
            .filter(|op| op["identifiers"]["id"] == "poison")
            .map(|op| op["name"].as_str().unwrap().to_owned())
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(poison, ["P1", "P2"]);
    let (_, shown) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/destinations/{id}"),
        None,
    )
    .await;
    assert_eq!(shown["status"]["held"], 0, "{shown}");
}

#[tokio::test]
async fn a_refused_batch_is_narrowed_to_the_bad_event_which_can_be_replayed() {
    let app = spawn_with(|config| {
        fast(config);
        config.delivery.max_in_flight = 1;
    })
    .await;
    let server = cio().await;
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // 4 events: the whole batch, then its first half, then its first event are refused.
    let refused = Scripted::Status {
        status: 400,
        retry_after: None,
        body: Some(r#"{"errors":[{"reason":"invalid","field":"name","message":"bad"}]}"#.into()),
    };
    server.push_responses([refused.clone(), refused.clone(), refused]);
    let events: Vec<Value> = (0..4).map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": format!("E{i}"), "messageId": format!("m{i}")})).collect();
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": events}))
        .await;
    let delivered = wait_for_ops(&server, 3).await;
    let mut names: Vec<&str> = delivered
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["E1", "E2", "E3"]);
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v2/batch")
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["batch"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [4, 2, 1, 1, 2], "bisected");

    let dead = eventually_async("a dead letter", || async {
        let (_, list) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}/dead-letters"),
            None,
        )
        .await;
        (list["dead_letters"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["message_id"], "m0");
    assert_eq!(letter["event"]["event"], "E0");
    assert!(
        letter["response"].as_str().unwrap().contains("HTTP 400"),
        "{letter}"
    );
    assert!(
        letter["reason"].as_str().unwrap().contains("invalid"),
        "{letter}"
    );

    // A 207 refuses one item of a batch; the others are accepted.
    server.push_responses([Scripted::Status {
        status: 207,
        retry_after: None,
        body: Some(
            r#"{"errors":[{"batch_index":1,"reason":"invalid","field":"x","message":"no"}]}"#
                .into(),
        ),
    }]);
    let more: Vec<Value> = (4..7).map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": format!("E{i}"), "messageId": format!("m{i}")})).collect();
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": more}))
        .await;
    eventually_async("two dead letters", || async {
        let (_, list) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}/dead-letters"),
            None,
        )
        .await;
        (list["total"] == 2).then_some(())
    })
    .await;

    // Replaying the first one (by its reason filter) delivers it.
    let (status, replay) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/dead-letters/replay"),
        Some(json!({"ids": [letter["id"]]})),
    )
    .await;
    assert_eq!((status, replay["replayed"].as_u64()), (200, Some(1)));
    eventually("the replayed event", || {
        ops(&server)
            .iter()
            .any(|op| op["name"] == "E0")
            .then_some(())
    })
    .await;
    let (_, list) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/destinations/{id}/dead-letters"),
        None,
    )
    .await;
    assert_eq!(list["total"], 1, "the replayed letter left the list");
}

#[tokio::test]
async fn rejected_credentials_pause_the_destination_until_they_are_updated() {
    let app = spawn_fast().await;
    let server = cio().await;
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    server.set_credentials("SITE_ID_TEST", "ROTATED_KEY");
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E1", "messageId": "m1"}),
    )
    .await;
    let shown = eventually_async("credentials rejected", || async {
        let (_, shown) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}"),
            None,
        )
        .await;
        (shown["status"]["state"] == "credentials_rejected").then_some(shown)
    })
    .await;
    assert!(shown["paused_reason"]
        .as_str()
        .unwrap()
        .starts_with("credentials_rejected"));
    assert_eq!(shown["dead_letters"], 0, "nothing is dead-lettered");
    assert!(
        shown["status"]["failed_requests"].as_u64().unwrap() >= 1,
        "the refused request counts: {shown}"
    );
    assert!(
        shown["status"]["backlog"].as_u64().unwrap() >= 1,
        "the waiting event shows: {shown}"
    );
    let requests_while_paused = server.requests().len();
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E2", "messageId": "m2"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.requests().len(),
        requests_while_paused,
        "a paused destination sends nothing"
    );

    // A wrong key is refused with a 422 and the destination stays paused.
    let (status, _) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/destinations/{id}"),
        Some(json!({"config": {"api_key": "still-wrong"}})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, shown) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/destinations/{id}"),
        Some(json!({"config": {"api_key": "ROTATED_KEY"}})),
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["paused_reason"], Value::Null);
    assert_eq!(shown["config"]["api_key"], "••••_KEY");
    let names = eventually("delivery resumed", || {
        let names: Vec<String> = ops(&server)
            .iter()
            .map(|op| op["name"].as_str().unwrap().to_owned())
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(names, ["E1", "E2"]);
    let shown = eventually_async("the old error cleared", || async {
        let (_, shown) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}"),
            None,
        )
        .await;
        (shown["status"]["last_error"].is_null() && shown["status"]["backlog"] == 0)
            .then_some(shown)
    })
    .await;
    assert_eq!(shown["status"]["state"], "active");
}

#[tokio::test]
async fn one_destination_down_does_not_slow_another_and_disable_delete_work() {
    let app = spawn_fast().await;
    let (down, up) = (cio().await, cio().await);
    down.set_chaos(Chaos {
        seed: 1,
        server_error_rate: 1.0,
        rate_limit_rate: 0.0,
        retry_after_secs: 0,
    });
    let source = app.create_source("server").await;
    let broken = create_destination(
        &app,
        json!({"name": "down", "type": "customerio", "config": cio_config(&down)}),
    )
    .await;
    let healthy = create_destination(
        &app,
        json!({"name": "up", "type": "customerio", "config": cio_config(&up)}),
    )
    .await;
    let events: Vec<Value> = (0..300).map(|i| json!({"type": "track", "userId": format!("u{}", i % 50), "event": "E", "messageId": format!("m{i}"), "properties": {"i": i}})).collect();
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": events}))
        .await;
    wait_for_ops(&up, 300).await;
    assert!(ops(&down).is_empty());
    assert!(
        !down.requests().is_empty(),
        "the broken destination was tried"
    );

    // Disabling stops delivery; enabling resumes; deleting removes the state.
    let up_id = healthy["id"].as_str().unwrap();
    let (status, _) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/destinations/{up_id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "z", "event": "While disabled", "messageId": "d1"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ops(&up).len(), 300);
    let (status, _) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/destinations/{up_id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    wait_for_ops(&up, 301).await;

    let down_id = broken["id"].as_str().unwrap();
    let (status, _) = admin(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/destinations/{down_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/destinations/{down_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let tried = down.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        down.requests().len(),
        tried,
        "a deleted destination sends nothing"
    );
    assert_eq!(app.server.store.held_events(down_id).await.unwrap(), vec![]);
}

#[tokio::test]
async fn anonymous_activity_is_stitched_to_the_person_across_sources() {
    let app = spawn_fast().await;
    let server = cio().await;
    let web = app.create_source("web").await;
    let backend = app.create_source("backend").await;
    create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    // Browsing anonymously on the web...
    app.post_ok(
        "/v1/page",
        &web.write_key,
        &json!({"anonymousId": "anon-1", "name": "Pricing", "messageId": "w1"}),
    )
    .await;
    wait_for_ops(&server, 1).await;
    // ...then the server identifies the person with that anonymousId...
    app.post_ok("/v1/identify", &backend.write_key, &json!({"userId": "user-1", "anonymousId": "anon-1", "traits": {"email": "a@b.io"}, "messageId": "s1"})).await;
    // ...and later anonymous-only web events go to the person.
    app.post_ok(
        "/v1/track",
        &web.write_key,
        &json!({"anonymousId": "anon-1", "event": "Clicked Buy", "messageId": "w2"}),
    )
    .await;
    // A later identify with another userId starts a new link, without rewriting history.
    app.post_ok(
        "/v1/identify",
        &backend.write_key,
        &json!({"userId": "user-2", "anonymousId": "anon-1", "messageId": "s2"}),
    )
    .await;
    app.post_ok(
        "/v1/track",
        &web.write_key,
        &json!({"anonymousId": "anon-1", "event": "Clicked Again", "messageId": "w3"}),
    )
    .await;
    // An alias whose previousId was only ever anonymous links it.
    app.post_ok(
        "/v1/alias",
        &backend.write_key,
        &json!({"userId": "user-3", "previousId": "anon-7", "messageId": "s3"}),
    )
    .await;
    app.post_ok(
        "/v1/track",
        &web.write_key,
        &json!({"anonymousId": "anon-7", "event": "After Alias", "messageId": "w4"}),
    )
    .await;
    let all = wait_for_ops(&server, 7).await;
    let find = |name: &str| {
        all.iter()
            .find(|op| op["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {all:?}"))
    };
    assert_eq!(
        find("Pricing")["identifiers"],
        json!({"anonymous_id": "anon-1"}),
        "earlier activity stays anonymous"
    );
    let identify = all
        .iter()
        .find(|op| op["action"] == "identify" && op["identifiers"]["id"] == "user-1")
        .unwrap();
    assert_eq!(
        identify["attributes"]["anonymous_id"], "anon-1",
        "identify carries anonymous_id so Customer.io merges"
    );
    assert_eq!(find("Clicked Buy")["identifiers"], json!({"id": "user-1"}));
    assert_eq!(
        find("Clicked Again")["identifiers"],
        json!({"id": "user-2"})
    );
    let link = all
        .iter()
        .find(|op| op["action"] == "identify" && op["identifiers"]["id"] == "user-3")
        .unwrap();
    assert_eq!(link["attributes"]["anonymous_id"], "anon-7");
    assert_eq!(find("After Alias")["identifiers"], json!({"id": "user-3"}));
}

#[tokio::test]
async fn an_alias_of_a_known_user_merges_after_the_primary_is_identified() {
    let app = spawn_fast().await;
    let server = cio().await;
    let source = app.create_source("server").await;
    create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    app.post_ok(
        "/v1/identify",
        &source.write_key,
        &json!({"userId": "old-id", "messageId": "i1"}),
    )
    .await;
    app.post_ok(
        "/v1/alias",
        &source.write_key,
        &json!({"userId": "new-id", "previousId": "old-id", "messageId": "al1"}),
    )
    .await;
    let all = wait_for_ops(&server, 3).await;
    let position = |action: &str, id: &str| {
        all.iter()
            .position(|op| {
                op["action"] == action
                    && (op["identifiers"]["id"] == id || op["primary"]["id"] == id)
            })
            .unwrap_or_else(|| panic!("{action} {id} in {all:?}"))
    };
    assert!(
        position("identify", "new-id") < position("merge", "new-id"),
        "primary identified first"
    );
    assert_eq!(
        all[position("merge", "new-id")]["secondary"],
        json!({"id": "old-id"})
    );
}

#[tokio::test]
async fn a_webhook_destination_gets_signed_batches_on_the_same_machinery() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            let failures = failures.clone();
            async move {
                if failures.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let signature = headers
                    .get("x-sluice-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                sink.lock().unwrap().push((signature, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = spawn_fast().await;
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "hook", "type": "webhook", "config": {"url": url, "secret": "s3cret"}}),
    )
    .await;
    assert_eq!(created["config"]["secret"], "••••cret");
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E", "messageId": "m1"}),
    )
    .await;
    let (signature, body) = eventually_async("a delivered webhook", || async {
        app.clock.advance(chrono::Duration::seconds(5));
        received.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(
        signature,
        sluice_destinations::webhook::signature("s3cret", body.as_bytes())
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["batch"][0]["event"]["messageId"], "m1");
    assert_eq!(parsed["batch"][0]["user_id"], "u");
}

#[tokio::test]
async fn kill_9_during_delivery_then_restart_delivers_everything_once_in_order() {
    let server = cio().await;
    // Slow answers, so requests are in flight when sluice dies.
    server.set_delay(Duration::from_millis(150));
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, base, _lines) = start_binary_process(dir.path(), Some(TOKEN)).await;
    let http = reqwest::Client::new();
    let source = create_source_at(&http, &base, TOKEN, "server").await;
    let key = source["write_key"].as_str().unwrap().to_owned();
    let response = http
        .post(format!("{base}/api/v1/destinations"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    const PEOPLE: usize = 40;
    const PER_PERSON: usize = 50;
    for chunk in 0..(PEOPLE * PER_PERSON / 100) {
        let batch = steps(PEOPLE, chunk * 100..(chunk + 1) * 100);
        let response = http
            .post(format!("{base}/v1/batch"))
            .basic_auth(&key, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Kill once some events were delivered and more requests are in flight.
    eventually("deliveries under way", || {
        (server.accepted().len() >= 100).then_some(())
    })
    .await;
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
    let before_restart = server.accepted().len();
    assert!(
        before_restart < PEOPLE * PER_PERSON,
        "killed too late to prove anything"
    );

    let (_child, _base, _lines) = start_binary_process(dir.path(), Some(TOKEN)).await;
    let all = eventually("every event delivered after the restart", || {
        let all = ops(&server);
        (all.len() >= PEOPLE * PER_PERSON).then_some(all)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all_after = ops(&server);
    assert_eq!(
        all_after.len(),
        PEOPLE * PER_PERSON,
        "an event arrived twice under a new id"
    );
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|op| op["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), PEOPLE * PER_PERSON);
    assert_steps_in_order(&all, PEOPLE, PER_PERSON as u64);
    println!(
        "delivered before the kill: {before_restart}; resent after the restart and deduplicated by id: {}",
        server.duplicate_event_ids().len()
    );
}

#[tokio::test]
async fn order_per_person_survives_random_5xx_and_429() {
    let app = spawn_fast().await;
    let server = cio().await;
    server.set_chaos(Chaos {
        seed: 7,
        server_error_rate: 0.25,
        rate_limit_rate: 0.15,
        retry_after_secs: 1,
    });
    let source = app.create_source("server").await;
    create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    const PEOPLE: usize = 15;
    let batch = steps(PEOPLE, 0..300);
    app.post_ok("/v1/batch", &source.write_key, &json!({"batch": batch}))
        .await;
    let all = eventually_async("all delivered through the chaos", || async {
        app.clock.advance(chrono::Duration::seconds(5));
        let all = ops(&server);
        (all.len() >= 300).then_some(all)
    })
    .await;
    let failures = server.requests().iter().filter(|r| r.status >= 429).count();
    assert!(failures >= 5, "the chaos produced only {failures} failures");
    assert_eq!(all.len(), 300);
    assert_steps_in_order(&all, PEOPLE, 20);
}

#[tokio::test]
async fn an_event_failing_past_the_retry_window_is_dead_lettered() {
    let app = spawn_with(|config| {
        fast(config);
        config.delivery.retry_window = "1m".into();
    })
    .await;
    let server = cio().await;
    server.set_chaos(Chaos {
        seed: 1,
        server_error_rate: 1.0,
        rate_limit_rate: 0.0,
        retry_after_secs: 0,
    });
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "cio", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "Doomed", "messageId": "d1"}),
    )
    .await;
    let letters = eventually_async("a dead letter after the window", || async {
        app.clock.advance(chrono::Duration::seconds(8));
        let (_, list) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/destinations/{id}/dead-letters"),
            None,
        )
        .await;
        (list["dead_letters"].as_array().map(Vec::len) == Some(1)).then_some(list)
    })
    .await;
    let letter = &letters["dead_letters"][0];
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("retry window (1 min)")),
        "{letters}"
    );
    assert!(letter["attempts"].as_u64().unwrap() >= 2, "{letter}");
    let (_, shown) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/destinations/{id}"),
        None,
    )
    .await;
    assert_eq!(shown["status"]["held"], 0);
}

#[tokio::test]
async fn a_destination_created_in_the_store_starts_without_a_restart_and_honours_its_sources() {
    use sluice_store::NewDestination;
    let app = spawn_fast().await;
    let server = cio().await;
    let web = app.create_source("web").await;
    let backend = app.create_source("backend").await;
    // Created behind the API's back: the router's supervisor picks it up on its own.
    app.server
        .store
        .create_destination(
            NewDestination {
                name: "web-only".into(),
                kind: "customerio".into(),
                enabled: true,
                sources: vec![web.id.clone()],
                config: cio_config(&server),
            },
            0,
        )
        .await
        .unwrap();
    app.post_ok(
        "/v1/track",
        &backend.write_key,
        &json!({"userId": "u", "event": "From Backend", "messageId": "b1"}),
    )
    .await;
    app.post_ok(
        "/v1/track",
        &web.write_key,
        &json!({"userId": "u", "event": "From Web", "messageId": "w1"}),
    )
    .await;
    let all = wait_for_ops(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: Vec<&str> = all.iter().map(|op| op["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["From Web"]);
    assert_eq!(
        ops(&server).len(),
        1,
        "the backend source is not routed here"
    );
}

#[tokio::test]
async fn a_slow_destination_does_not_hold_up_its_own_reconfiguration() {
    let app = spawn_fast().await;
    let server = cio().await;
    // Answers take far longer than the grace a stopping worker gets.
    server.set_delay(Duration::from_secs(60));
    let source = app.create_source("server").await;
    let created = create_destination(
        &app,
        json!({"name": "slow", "type": "customerio", "config": cio_config(&server)}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E", "messageId": "m1"}),
    )
    .await;
    eventually("a request in flight", || {
        server
            .requests()
            .iter()
            .any(|r| r.path == "/api/v2/batch" && r.status == 0)
            .then_some(())
    })
    .await;
    let (status, shown) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/destinations/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == "/api/v2/batch" && r.status == 0),
        "the change returned without waiting for the slow answer"
    );
    assert_eq!(
        app.server.store.destination_cursor(&id).await.unwrap(),
        Some(0),
        "nothing unconfirmed was passed"
    );
}
