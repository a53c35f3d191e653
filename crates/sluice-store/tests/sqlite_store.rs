use sluice_store::{NewSource, SourceKind, SourceUpdate, SqliteStore, Store, StoreError};

fn new_source(name: &str) -> NewSource {
    NewSource {
        name: name.into(),
        kind: SourceKind::Web,
        rate_limit_per_second: None,
        allowed_origins: Vec::new(),
    }
}

#[tokio::test]
async fn sources_round_trip_and_keys_stop_working_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open");
    let web = store
        .create_source(new_source("web"))
        .await
        .expect("create");
    assert_eq!(web.write_key.len(), 32);
    assert!(matches!(
        store.create_source(new_source("web")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store
            .source_by_write_key(&web.write_key)
            .await
            .expect("lookup"),
        Some(web.clone())
    );
    assert_eq!(
        store.source_by_write_key("unknown").await.expect("lookup"),
        None
    );

    let rotated = store.rotate_write_key(&web.id).await.expect("rotate");
    assert_ne!(rotated.write_key, web.write_key);
    assert_eq!(
        store
            .source_by_write_key(&web.write_key)
            .await
            .expect("lookup"),
        None,
        "old key still works"
    );
    assert_eq!(
        store
            .source_by_write_key(&rotated.write_key)
            .await
            .expect("lookup")
            .map(|s| s.id),
        Some(web.id.clone())
    );

    let renamed = store
        .update_source(
            &web.id,
            SourceUpdate {
                name: Some("site".into()),
                rate_limit_per_second: Some(Some(5)),
                allowed_origins: Some(vec!["https://shop.example".into()]),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        (renamed.name.as_str(), renamed.rate_limit_per_second),
        ("site", Some(5))
    );
    assert!(renamed.allows_origin("https://shop.example"));
    assert!(
        renamed.allows_origin("HTTPS://SHOP.EXAMPLE"),
        "origins compare case-insensitively"
    );
    assert!(!renamed.allows_origin("https://evil.example"));
    assert!(
        web.allows_origin("https://anything.example"),
        "no list = any origin"
    );

    store.delete_source(&web.id).await.expect("delete");
    assert_eq!(
        store
            .source_by_write_key(&rotated.write_key)
            .await
            .expect("lookup"),
        None,
        "deleted key still works"
    );
    assert!(matches!(
        store.delete_source(&web.id).await,
        Err(StoreError::NotFound(_))
    ));

    // Survives reopening.
    let server = store
        .create_source(new_source("server"))
        .await
        .expect("create");
    drop(store);
    let store = SqliteStore::open(dir.path().join("store.db")).expect("reopen");
    assert_eq!(store.list_sources().await.expect("list"), vec![server]);
}

#[tokio::test]
async fn lowest_cursor_covers_every_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open");
    assert_eq!(
        store.lowest_destination_cursor().await.expect("cursor"),
        None
    );
    store.set_destination_cursor("d1", 40).await.expect("set");
    store.set_destination_cursor("d2", 7).await.expect("set");
    assert_eq!(
        store.lowest_destination_cursor().await.expect("cursor"),
        Some(7)
    );
    store.set_destination_cursor("d2", 50).await.expect("set");
    assert_eq!(
        store.lowest_destination_cursor().await.expect("cursor"),
        Some(40)
    );
    store.remove_destination_cursor("d1").await.expect("remove");
    assert_eq!(
        store.lowest_destination_cursor().await.expect("cursor"),
        Some(50)
    );
}

mod delivery_state {
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use sluice_store::*;

    fn held(seq: u64, person: &str) -> HeldEvent {
        HeldEvent {
            seq,
            person: person.into(),
            source_id: "src".into(),
            event_json: format!(r#"{{"type":"track","messageId":"m{seq}"}}"#),
            attempts: 1,
            first_failed_at: Some(Utc.timestamp_opt(1_000, 0).unwrap()),
            next_attempt_at: Utc.timestamp_opt(1_010, 0).unwrap(),
            last_error: Some("HTTP 500".into()),
        }
    }

    fn dead(seq: u64, reason: &str) -> NewDeadLetter {
        NewDeadLetter {
            seq,
            source_id: "src".into(),
            person: "p".into(),
            message_id: format!("m{seq}"),
            event_type: "track".into(),
            event_json: format!(r#"{{"messageId":"m{seq}"}}"#),
            reason: reason.into(),
            response: Some("HTTP 400: {}".into()),
            attempts: 0,
            failed_at: Utc.timestamp_opt(2_000, 0).unwrap(),
        }
    }

    fn record(n: usize) -> NewDeliveryRecord {
        NewDeliveryRecord {
            at: Utc::now(),
            outcome: "delivered".into(),
            http_status: Some(200),
            latency_ms: 3,
            message_ids: vec![format!("m{n}")],
            request_body: "{}".into(),
            response_body: "{}".into(),
            error: None,
            warnings: vec![],
        }
    }

    #[tokio::test]
    async fn progress_is_applied_atomically_and_state_is_removed_with_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
        let new = NewDestination {
            name: "cio".into(),
            kind: "customerio".into(),
            enabled: true,
            sources: vec![],
            config: json!({"site_id": "s", "api_key": "k"}),
        };
        let d = store.create_destination(new.clone(), 7).await.unwrap();
        assert!(matches!(
            store.create_destination(new, 0).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.destination_cursor(&d.id).await.unwrap(), Some(7));
        assert_eq!(store.lowest_destination_cursor().await.unwrap(), Some(7));

        store
            .commit_progress(
                &d.id,
                Progress {
                    cursor: Some(20),
                    hold: vec![held(9, "a"), held(12, "a")],
                    dead_letters: vec![dead(10, "invalid name"), dead(11, "too large")],
                    deliveries: (0..1005).map(record).collect(),
                    backoff: Some(Some(Backoff {
                        consecutive_failures: 2,
                        next_attempt_at: Utc::now(),
                        last_error: "500".into(),
                    })),
                    ..Progress::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.destination_cursor(&d.id).await.unwrap(), Some(20));
        // The cursor never moves back.
        store
            .commit_progress(
                &d.id,
                Progress {
                    cursor: Some(15),
                    ..Progress::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.destination_cursor(&d.id).await.unwrap(), Some(20));
        // Refusing the same event again (a resend after a crash) keeps one dead letter.
        store
            .commit_progress(
                &d.id,
                Progress {
                    dead_letters: vec![dead(10, "invalid name")],
                    ..Progress::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.count_dead_letters(&d.id).await.unwrap(), 2);
        // Holding the same event twice (a resend after a crash) keeps one copy.
        store
            .commit_progress(
                &d.id,
                Progress {
                    hold: vec![held(9, "a")],
                    ..Progress::default()
                },
            )
            .await
            .unwrap();
        let seqs: Vec<u64> = store
            .held_events(&d.id)
            .await
            .unwrap()
            .iter()
            .map(|h| h.seq)
            .collect();
        assert_eq!(seqs, [9, 12]);
        assert_eq!(store.held_events(&d.id).await.unwrap()[0], held(9, "a"));
        assert_eq!(
            store.deliveries(&d.id, 2000).await.unwrap().len(),
            DELIVERY_LOG_LIMIT,
            "the delivery log is capped"
        );
        assert_eq!(
            store.deliveries(&d.id, 1).await.unwrap()[0].message_ids,
            ["m1004"],
            "newest first"
        );
        assert_eq!(
            store
                .destination_backoff(&d.id)
                .await
                .unwrap()
                .unwrap()
                .consecutive_failures,
            2
        );

        // Filtered listing and replay back into the held list.
        let filter = DeadLetterFilter {
            reason_contains: Some("large".into()),
            ..DeadLetterFilter::default()
        };
        let found = store.dead_letters(&d.id, &filter).await.unwrap();
        assert_eq!(found.iter().map(|l| l.seq).collect::<Vec<_>>(), [11]);
        assert_eq!(
            store
                .replay_dead_letters(&d.id, &filter, Utc::now())
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.count_dead_letters(&d.id).await.unwrap(), 1);
        let seqs: Vec<u64> = store
            .held_events(&d.id)
            .await
            .unwrap()
            .iter()
            .map(|h| h.seq)
            .collect();
        assert_eq!(seqs, [9, 11, 12]);

        store
            .commit_progress(
                &d.id,
                Progress {
                    release: vec![9],
                    backoff: Some(None),
                    ..Progress::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.held_events(&d.id).await.unwrap().len(), 2);
        assert_eq!(store.destination_backoff(&d.id).await.unwrap(), None);

        store.delete_destination(&d.id).await.unwrap();
        assert!(store.held_events(&d.id).await.unwrap().is_empty());
        assert_eq!(store.count_dead_letters(&d.id).await.unwrap(), 0);
        assert!(store.deliveries(&d.id, 10).await.unwrap().is_empty());
        assert_eq!(store.lowest_destination_cursor().await.unwrap(), None);
        // A worker finishing after the delete writes nothing back.
        assert!(matches!(
            store
                .commit_progress(
                    &d.id,
                    Progress {
                        cursor: Some(30),
                        ..Progress::default()
                    }
                )
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.lowest_destination_cursor().await.unwrap(), None);
    }

    #[tokio::test]
    async fn identity_links_and_first_sightings_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .record_identities(IdentityBatch {
                    links: vec![IdentityLink {
                        anonymous_id: "a".into(),
                        user_id: "u".into(),
                        seq: 5,
                    }],
                    new_users: vec![("u".into(), 5)],
                    indexed_through: 9,
                })
                .await
                .unwrap();
            // A later sighting does not move the first one.
            store
                .record_identities(IdentityBatch {
                    links: vec![],
                    new_users: vec![("u".into(), 50)],
                    indexed_through: 60,
                })
                .await
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let (links, through) = store.identity_links().await.unwrap();
        assert_eq!(
            links,
            vec![IdentityLink {
                anonymous_id: "a".into(),
                user_id: "u".into(),
                seq: 5
            }]
        );
        assert_eq!(through, 60);
        assert_eq!(store.user_first_seen("u").await.unwrap(), Some(5));
        assert_eq!(store.user_first_seen("nobody").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_store_file_from_before_allowed_origins_is_upgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    {
        // The sources table as the first release created it.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE sources (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
             write_key TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, rate_limit_per_second INTEGER);
             INSERT INTO sources VALUES ('src_old', 'old', 'web', 'k1', 0, NULL);",
        )
        .expect("old schema");
    }
    let store = SqliteStore::open(&path).expect("open upgrades");
    let old = store.source("src_old").await.expect("read").expect("kept");
    assert!(old.allowed_origins.is_empty());
    assert!(old.allows_origin("https://any.example"));
}
