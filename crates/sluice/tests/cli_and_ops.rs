//! The CLI against a running server, the operational endpoints, and graceful shutdown.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn cli(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--server", &app.base, "--token", TOKEN])
        .output()
        .await
        .expect("run sluice")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn source_commands_manage_sources_through_the_admin_api() {
    let app = spawn().await;
    let created = cli(
        &app,
        &["source", "create", "--name", "website", "--kind", "web"],
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    let text = stdout(&created);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("write key: "))
        .expect("the write key is printed")
        .to_owned();
    assert_eq!(key.len(), 32);
    app.post_ok("/v1/track", &key, &json!({"userId": "u", "event": "E"}))
        .await;

    let listed = cli(&app, &["source", "list", "--json"]).await;
    assert!(listed.status.success());
    let sources: Value = serde_json::from_slice(&listed.stdout).expect("--json prints JSON");
    assert_eq!(sources[0]["name"], "website");
    assert_eq!(sources[0]["kind"], "web");

    let duplicate = cli(&app, &["source", "create", "--name", "website"]).await;
    assert!(!duplicate.status.success(), "a duplicate name must fail");
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("409"));

    let rotated = cli(&app, &["source", "rotate-key", "website"]).await;
    assert!(rotated.status.success());
    let new_key = stdout(&rotated)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_key, key);
    let refused = app
        .post("/v1/track", &key, &json!({"userId": "u", "event": "E"}))
        .await;
    assert_eq!(refused.status(), 401, "the old key stops working");

    let deleted = cli(&app, &["source", "delete", "website"]).await;
    assert!(deleted.status.success());
    let again = cli(&app, &["source", "delete", "website"]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no source named"));

    let unauthorised = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["source", "list", "--server", &app.base, "--token", "wrong"])
        .output()
        .await
        .unwrap();
    assert!(!unauthorised.status.success());
    assert!(String::from_utf8_lossy(&unauthorised.stderr).contains("401"));
}

async fn next_json(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a line in time");
    serde_json::from_str(&line.unwrap().unwrap()).unwrap()
}

#[tokio::test]
async fn tail_prints_stored_events_as_json_lines() {
    let app = spawn().await;
    let source = app.create_source("tailed").await;
    for id in ["t1", "t2", "t3"] {
        app.post_ok(
            "/v1/track",
            &source.write_key,
            &json!({"userId": "u", "event": "E", "messageId": id}),
        )
        .await;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "tail", "--source", "tailed", "--last", "2", "--server", &app.base, "--token", TOKEN,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_json(&mut lines).await["event"]["messageId"], "t2");
    assert_eq!(next_json(&mut lines).await["event"]["messageId"], "t3");
    // New events keep coming.
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E", "messageId": "t4"}),
    )
    .await;
    assert_eq!(next_json(&mut lines).await["event"]["messageId"], "t4");
    child.start_kill().unwrap();
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let app = spawn().await;
    let source = app.create_source("ops").await;
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"log": true, "store": true})
    );
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E"}),
    )
    .await;
    app.post("/v1/track", &source.write_key, &json!({"userId": "u"}))
        .await;
    let metrics = app.metrics_text().await;
    for expected in [
        r#"sluice_http_requests_total{endpoint="track",status="200"}"#,
        r#"sluice_http_requests_total{endpoint="track",status="400"}"#,
        r#"sluice_events_total{endpoint="track",outcome="accepted"}"#,
        r#"sluice_events_total{endpoint="track",outcome="rejected"}"#,
        "sluice_log_append_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(
        !metrics.contains(&source.write_key),
        "no write key in metrics"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_and_flushes_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, mut lines) = start_binary_process(dir.path(), None).await;
    // No token configured: one is generated into a private file and printed once.
    use std::os::unix::fs::PermissionsExt;
    let token_file = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut printed = String::new();
    for _ in 0..2 {
        printed.push_str(&lines.next_line().await.unwrap().unwrap());
    }
    assert!(printed.contains(&token), "{printed}");
    let http = reqwest::Client::new();
    let source = create_source_at(&http, &base, &token, "s").await;
    let response = http
        .post(format!("{base}/v1/batch"))
        .basic_auth(source["write_key"].as_str().unwrap(), Some(""))
        .json(&json!({"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "before-term"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    use sluice_log::EventLog;
    let log = sluice_log::SqliteLog::open(dir.path().join("log.db"), Default::default()).unwrap();
    let stored = log.read(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event.message_id(), "before-term");
    log.close().await;
}

#[tokio::test]
async fn destination_and_dead_letter_commands_work_through_the_admin_api() {
    let app = spawn_with(|config| config.delivery.poll_interval = "10ms".into()).await;
    let server = sluice_testkit::CioTestServer::start(sluice_testkit::CioOptions::default())
        .await
        .expect("test server");
    let url = server.url();
    let rejected = cli(
        &app,
        &[
            "destination",
            "create",
            "customerio",
            "--name",
            "cio",
            "--site-id",
            "SITE_ID_TEST",
            "--api-key",
            "nope",
            "--track-url",
            &url,
        ],
    )
    .await;
    assert_eq!(
        rejected.status.code(),
        Some(1),
        "a rejected key fails the command"
    );
    assert!(
        String::from_utf8_lossy(&rejected.stderr).contains("rejected"),
        "{rejected:?}"
    );
    let created = cli(
        &app,
        &[
            "destination",
            "create",
            "customerio",
            "--name",
            "cio",
            "--site-id",
            "SITE_ID_TEST",
            "--api-key",
            "API_KEY_TEST",
            "--track-url",
            &url,
        ],
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    assert!(
        !stdout(&created).contains("API_KEY_TEST"),
        "the key is never printed"
    );
    let listed = cli(&app, &["destination", "list"]).await;
    assert!(stdout(&listed).contains("cio"), "{listed:?}");
    let shown = cli(&app, &["destination", "show", "cio", "--json"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown["config"]["api_key"], "••••TEST");

    // A refused event becomes a dead letter; the CLI lists and replays it.
    server.push_responses([sluice_testkit::Scripted::status(400)]);
    let source = app.create_source("server").await;
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "E", "messageId": "m1"}),
    )
    .await;
    eventually_async("a dead letter listed by the CLI", || async {
        let listed = cli(&app, &["dead-letters", "list", "--destination", "cio"]).await;
        stdout(&listed).starts_with("1 dead letters").then_some(())
    })
    .await;
    let replayed = cli(&app, &["dead-letters", "replay", "--destination", "cio"]).await;
    assert!(
        stdout(&replayed).contains("replayed 1 dead letters"),
        "{replayed:?}"
    );
    assert!(
        String::from_utf8_lossy(&replayed.stderr).contains("1/1"),
        "a progress bar: {replayed:?}"
    );
    eventually("the replayed event", || {
        (!server.accepted().is_empty()).then_some(())
    })
    .await;
    let disabled = cli(&app, &["destination", "disable", "cio"]).await;
    assert!(stdout(&disabled).contains("disabled"), "{disabled:?}");
    let deleted = cli(&app, &["destination", "delete", "cio"]).await;
    assert!(deleted.status.success());
    let missing = cli(&app, &["destination", "show", "cio"]).await;
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test]
async fn the_event_stream_pushes_new_events_as_server_sent_events() {
    let app = spawn().await;
    let source = app.create_source("web").await;
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "Before", "messageId": "before"}),
    )
    .await;
    let mut stream = app
        .http
        .get(format!(
            "{}/api/v1/sources/{}/events/stream",
            app.base, source.id
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    app.post_ok(
        "/v1/track",
        &source.write_key,
        &json!({"userId": "u", "event": "Live", "messageId": "live-1"}),
    )
    .await;
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !received.contains("live-1") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an event within 20 s")
            .expect("read")
            .expect("the stream stays open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("event: event"), "{received}");
    assert!(
        !received.contains("\"before\""),
        "only events after the connection: {received}"
    );
    let data = received
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let event: Value = serde_json::from_str(data).expect("JSON data");
    assert_eq!(event["event"]["event"], "Live");
    // A reconnecting client resumes after its Last-Event-ID.
    let seq = event["seq"].as_u64().unwrap();
    let mut resumed = app
        .http
        .get(format!(
            "{}/api/v1/sources/{}/events/stream",
            app.base, source.id
        ))
        .bearer_auth(TOKEN)
        .header("last-event-id", (seq - 1).to_string())
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(20), resumed.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("live-1"));
    // The admin token is required.
    let anonymous = app
        .http
        .get(format!(
            "{}/api/v1/sources/{}/events/stream",
            app.base, source.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_route() {
    let app = spawn().await;
    let response = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/destinations",
            "/api/v1/destinations/{id}",
            "/api/v1/destinations/{id}/dead-letters",
            "/api/v1/destinations/{id}/dead-letters/replay",
            "/api/v1/destinations/{id}/deliveries",
            "/api/v1/sources",
            "/api/v1/sources/{id}",
            "/api/v1/sources/{id}/events",
            "/api/v1/sources/{id}/events/stream",
            "/api/v1/sources/{id}/rotate-key",
            "/api/v1/sources/{id}/snippet",
        ]
    );
    for schema in [
        "Source",
        "DestinationView",
        "CreateDestination",
        "ErrorBody",
        "DeadLetter",
        "DeliveryRecord",
        "StoredEvent",
        "DestinationStatus",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is described"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    let create = &doc["paths"]["/api/v1/destinations"]["post"];
    assert!(create["responses"]["422"].is_object() && create["responses"]["201"].is_object());
    // Every documented operation is really served (the router is built from the same list).
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let url = format!("{}{}", app.base, path.replace("{id}", "nope"));
            let response = app
                .http
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_ne!(
                response.status(),
                405,
                "{method} {path} is documented but not routed"
            );
        }
    }
}
