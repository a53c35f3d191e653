use sluice_store::{NewSource, SourceKind, SqliteStore, Store, StoreError};

fn new_source(name: &str) -> NewSource {
    NewSource {
        name: name.into(),
        kind: SourceKind::Web,
        rate_limit_per_second: None,
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
        .update_source(&web.id, Some("site".into()), Some(Some(5)))
        .await
        .expect("update");
    assert_eq!(
        (renamed.name.as_str(), renamed.rate_limit_per_second),
        ("site", Some(5))
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
