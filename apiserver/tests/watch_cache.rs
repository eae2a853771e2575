//! The generic store with the watch cache in front of real embedded storage: what list and
//! watch callers observe.

use std::sync::Arc;
use std::time::Duration;

use apiserver::registry::generic_store::{
    GenericStore, ListOptions, UpdateScope, WatchItem, WriteOptions,
};
use apiserver::registry::resource_table::{RESOURCES, ResourceDef, lookup};
use apiserver::registry::selectors::{FieldSelector, LabelSelector};
use apiserver::registry::watch_cache::WatchCache;
use apiserver_storage::Storage;
use apiserver_storage::embedded::EmbeddedStorage;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};

struct Fixture {
    store: GenericStore,
    storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(dir.path()).unwrap());
    let plain = GenericStore::new(storage.clone());
    let namespaces = lookup("", "v1", "namespaces").unwrap();
    plain
        .create(
            namespaces,
            None,
            json!({"metadata": {"name": "default"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let prefixes: Vec<String> = RESOURCES.iter().map(|r| r.key_prefix()).collect();
    let cache = WatchCache::start(storage.clone(), &prefixes).await.unwrap();
    Fixture {
        store: plain.with_watch_cache(cache),
        storage,
        _dir: dir,
    }
}

fn configmaps() -> &'static ResourceDef {
    lookup("", "v1", "configmaps").unwrap()
}

async fn create(f: &Fixture, name: &str, labels: Value) -> Value {
    let body = json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}});
    f.store
        .create(
            configmaps(),
            Some("default"),
            body,
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object
}

async fn next(stream: &mut BoxStream<'static, WatchItem>) -> WatchItem {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10s")
        .expect("the stream is open")
}

fn name_of(item: &WatchItem) -> (&'static str, String) {
    match item {
        WatchItem::Added(o) => ("ADDED", o["metadata"]["name"].as_str().unwrap().to_owned()),
        WatchItem::Modified(o) => (
            "MODIFIED",
            o["metadata"]["name"].as_str().unwrap().to_owned(),
        ),
        WatchItem::Deleted(o) => (
            "DELETED",
            o["metadata"]["name"].as_str().unwrap().to_owned(),
        ),
        WatchItem::InitialEnd(_) => ("INITIAL-END", String::new()),
        WatchItem::Bookmark(_) => ("BOOKMARK", String::new()),
        WatchItem::Error(e) => ("ERROR", e.reason.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_right_after_a_write_sees_it() {
    let f = fixture().await;
    for i in 0..50 {
        let created = create(&f, &format!("c{i:02}"), json!({})).await;
        let page = f
            .store
            .list(configmaps(), Some("default"), &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), i + 1, "list after write {i} missed it");
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(page.resource_version >= rv);
    }
    // Pages continue consistently from storage at the first page's revision.
    let first = f
        .store
        .list(
            configmaps(),
            Some("default"),
            &ListOptions {
                limit: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 20);
    create(&f, "c00-late", json!({})).await;
    let rest = f
        .store
        .list(
            configmaps(),
            Some("default"),
            &ListOptions {
                continue_token: first.continue_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.len(),
        30,
        "the late write is not part of the paged list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_replay_then_follow_and_track_selector_membership() {
    let f = fixture().await;
    let a = create(&f, "a", json!({"app": "web"})).await;
    let from: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    create(&f, "b", json!({"app": "web"})).await;
    let selector = LabelSelector::parse("app=web").unwrap();
    let mut stream = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(from),
            selector,
            FieldSelector::default(),
        )
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("ADDED", "b".into()));
    // Relabelling out of the selector is a deletion for this watcher.
    f.store
        .guaranteed_update(
            configmaps(),
            Some("default"),
            "a",
            UpdateScope::Main,
            &WriteOptions::default(),
            |old| {
                let mut o = old.clone();
                o["metadata"]["labels"]["app"] = json!("db");
                Ok(o)
            },
        )
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("DELETED", "a".into()));
    create(&f, "other", json!({"app": "db"})).await;
    f.store
        .delete(configmaps(), Some("default"), "b", &json!({}), false)
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("DELETED", "b".into()));

    let mut initial = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            None,
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut initial).await), ("ADDED", "a".into()));
    assert_eq!(
        name_of(&next(&mut initial).await),
        ("ADDED", "other".into())
    );
    assert_eq!(name_of(&next(&mut initial).await).0, "INITIAL-END");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_older_than_the_cache_read_storage_history_or_expire() {
    let f = fixture().await;
    let first = create(&f, "early", json!({})).await;
    let early: u64 = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Revision 0 is before the cache started: served from storage history.
    let mut stream = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(0),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("ADDED", "early".into()));
    let later = create(&f, "later", json!({})).await;
    let later: u64 = later["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    f.storage.compact(later - 1).await.unwrap();
    // At or above the compacted revision the cache's window serves the watch.
    let mut stream = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(later - 1),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("ADDED", "later".into()));
    // Below it, the history is gone for cache and storage alike: 410.
    let mut stream = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(early - 1),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        name_of(&next(&mut stream).await),
        ("ERROR", "Expired".into())
    );
    let mut expired = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(0),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    let item = next(&mut expired).await;
    assert_eq!(name_of(&item), ("ERROR", "Expired".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_closed_with_410_never_skipped() {
    let f = fixture().await;
    let start = f.storage.current_revision();
    let mut slow = f
        .store
        .watch(
            configmaps(),
            Some("default".into()),
            Some(start),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .await
        .unwrap();
    // Far more events than the fan-out backlog, while the watcher reads nothing.
    let writes: Vec<_> = (0..9000)
        .map(|i| {
            let store = f.store.clone();
            async move {
                let body = json!({"metadata": {"name": format!("m{i:05}")}});
                store
                    .create(
                        configmaps(),
                        Some("default"),
                        body,
                        &WriteOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        })
        .collect();
    futures::stream::iter(writes)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    // Every event it does get is in order and gapless; then it is closed with 410.
    let mut last = start;
    let mut seen = 0;
    loop {
        match next(&mut slow).await {
            WatchItem::Added(o) => {
                let rv: u64 = o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                // These creates are the only writes: each event is the next revision.
                assert_eq!(rv, last + 1, "events arrive in order without gaps");
                last = rv;
                seen += 1;
            }
            WatchItem::Error(e) => {
                assert_eq!(e.code, 410);
                break;
            }
            other => panic!("unexpected {:?}", name_of(&other)),
        }
    }
    assert!(
        seen < 9000,
        "the slow watcher was closed before the end, not fed a gap"
    );
    // A fresh watch from the current state still works.
    let page = f
        .store
        .list(configmaps(), Some("default"), &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_right_after_a_write_starts_from_a_state_that_holds_it() {
    let f = fixture().await;
    for i in 0..50 {
        create(&f, &format!("w{i:02}"), json!({})).await;
        let mut stream = f
            .store
            .watch(
                configmaps(),
                Some("default".into()),
                None,
                LabelSelector::default(),
                FieldSelector::default(),
            )
            .await
            .unwrap();
        let mut initial = 0;
        loop {
            match next(&mut stream).await {
                WatchItem::Added(_) => initial += 1,
                WatchItem::InitialEnd(_) => break,
                other => panic!("unexpected {:?}", name_of(&other)),
            }
        }
        assert_eq!(
            initial,
            i + 1,
            "the initial state after write {i} missed it"
        );
    }
}
