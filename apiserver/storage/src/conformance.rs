//! The conformance suite of the storage contract. Every backend runs every case through
//! [`storage_conformance_tests!`](crate::storage_conformance_tests), which expands to one
//! `#[tokio::test]` per case given an async factory that returns a fresh, empty store.
//!
//! Cases panic with a message naming the broken rule; they are not used by the product path.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::{EventKind, ListRequest, Revision, Storage, StorageError, WatchStream};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> crate::Event {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("watch delivered no event within 10s")
        .expect("watch stream ended")
        .expect("watch stream failed")
}

pub async fn create_then_get_returns_the_value_and_its_revisions(s: &dyn Storage) {
    let before = s.current_revision();
    let kv = s.create("/r/a", b("one")).await.unwrap();
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert!(kv.mod_revision > before, "a write must bump the revision");
    assert_eq!(s.current_revision(), kv.mod_revision);
    let got = s
        .get("/r/a")
        .await
        .unwrap()
        .expect("created key is readable");
    assert_eq!(got, kv);
    assert!(s.get("/r/missing").await.unwrap().is_none());
}

pub async fn create_of_an_existing_key_fails_with_already_exists(s: &dyn Storage) {
    s.create("/r/a", b("one")).await.unwrap();
    let err = s.create("/r/a", b("two")).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(s.get("/r/a").await.unwrap().unwrap().value, b("one"));
}

pub async fn update_on_a_stale_revision_conflicts_and_carries_the_winner(s: &dyn Storage) {
    let first = s.create("/r/a", b("one")).await.unwrap();
    let second = s
        .update("/r/a", first.mod_revision, b("two"))
        .await
        .unwrap();
    assert!(second.mod_revision > first.mod_revision);
    assert_eq!(second.create_revision, first.create_revision);
    let err = s
        .update("/r/a", first.mod_revision, b("three"))
        .await
        .unwrap_err();
    match err {
        StorageError::Conflict { current, .. } => {
            assert_eq!(
                current.expect("conflict carries the current value").value,
                b("two")
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.get("/r/a").await.unwrap().unwrap().value, b("two"));
}

pub async fn update_and_delete_of_a_missing_key_are_not_found(s: &dyn Storage) {
    let err = s.update("/r/none", 1, b("x")).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    let err = s.delete("/r/none", None).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
}

pub async fn delete_honours_its_precondition_and_returns_the_last_value(s: &dyn Storage) {
    let kv = s.create("/r/a", b("one")).await.unwrap();
    let err = s
        .delete("/r/a", Some(kv.mod_revision + 100))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    let deleted = s.delete("/r/a", Some(kv.mod_revision)).await.unwrap();
    assert_eq!(deleted.value, b("one"));
    assert!(deleted.mod_revision > kv.mod_revision);
    assert!(s.get("/r/a").await.unwrap().is_none());
    // A key can be created again after deletion, with a new create revision.
    let again = s.create("/r/a", b("two")).await.unwrap();
    assert!(again.create_revision > deleted.mod_revision);
}

pub async fn list_reads_a_prefix_in_key_order_at_a_revision(s: &dyn Storage) {
    s.create("/r/p/b", b("b1")).await.unwrap();
    s.create("/r/p/a", b("a1")).await.unwrap();
    s.create("/r/q/z", b("other prefix")).await.unwrap();
    let at = s.current_revision();
    let a = s.get("/r/p/a").await.unwrap().unwrap();
    s.update("/r/p/a", a.mod_revision, b("a2")).await.unwrap();
    s.delete("/r/p/b", None).await.unwrap();
    s.create("/r/p/c", b("c1")).await.unwrap();

    let now = s
        .list(ListRequest {
            prefix: "/r/p/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/r/p/a", "/r/p/c"]);
    assert_eq!(now.items[0].value, b("a2"));
    assert_eq!(now.revision, s.current_revision());
    assert!(!now.more);

    let then = s
        .list(ListRequest {
            prefix: "/r/p/".into(),
            revision: Some(at),
            ..Default::default()
        })
        .await
        .unwrap();
    let old: Vec<_> = then
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(old, [("/r/p/a", b("a1")), ("/r/p/b", b("b1"))]);
    assert_eq!(then.revision, at);
}

pub async fn paged_lists_stay_consistent_across_writes(s: &dyn Storage) {
    for i in 0..10 {
        s.create(&format!("/r/items/{i:02}"), b("v")).await.unwrap();
    }
    let first = s
        .list(ListRequest {
            prefix: "/r/items/".into(),
            limit: Some(4),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 4);
    assert!(first.more);
    // Writes between pages must not show up in later pages read at the first page's revision.
    s.delete("/r/items/05", None).await.unwrap();
    s.create("/r/items/99", b("late")).await.unwrap();
    let mut all: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut after = all.last().cloned();
    loop {
        let page = s
            .list(ListRequest {
                prefix: "/r/items/".into(),
                revision: Some(first.revision),
                start_after: after.clone(),
                limit: Some(4),
            })
            .await
            .unwrap();
        assert_eq!(page.revision, first.revision);
        all.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = all.last().cloned();
        if !page.more {
            break;
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/r/items/{i:02}")).collect();
    assert_eq!(all, expected);
}

pub async fn watch_replays_history_then_follows_live_writes_in_order(s: &dyn Storage) {
    let start = s.current_revision();
    let a = s.create("/r/w/a", b("1")).await.unwrap();
    s.create("/r/other/x", b("not watched")).await.unwrap();
    let a2 = s.update("/r/w/a", a.mod_revision, b("2")).await.unwrap();
    let mut stream = s.watch("/r/w/", start).await.unwrap();
    let e1 = next_event(&mut stream).await;
    assert_eq!(
        (e1.kind, e1.kv.value.clone(), e1.prev.clone()),
        (EventKind::Put, b("1"), None)
    );
    let e2 = next_event(&mut stream).await;
    assert_eq!(e2.kv.mod_revision, a2.mod_revision);
    assert_eq!(e2.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    // Live events after the replay.
    s.create("/r/w/b", b("x")).await.unwrap();
    let deleted = s.delete("/r/w/a", None).await.unwrap();
    let e3 = next_event(&mut stream).await;
    assert_eq!(e3.kv.key, "/r/w/b");
    let e4 = next_event(&mut stream).await;
    assert_eq!(e4.kind, EventKind::Delete);
    assert_eq!(
        e4.kv.value,
        b("2"),
        "a deletion event carries the last value"
    );
    assert_eq!(e4.kv.mod_revision, deleted.mod_revision);
    assert!(e1.revision() < e2.revision() && e2.revision() < e3.revision());
}

pub async fn watch_from_the_current_revision_sees_only_new_writes(s: &dyn Storage) {
    s.create("/r/w/old", b("1")).await.unwrap();
    let mut stream = s.watch("/r/w/", s.current_revision()).await.unwrap();
    s.create("/r/w/new", b("2")).await.unwrap();
    let e = next_event(&mut stream).await;
    assert_eq!(e.kv.key, "/r/w/new");
}

pub async fn compaction_expires_old_revisions_but_keeps_current_values(s: &dyn Storage) {
    let a = s.create("/r/c/a", b("1")).await.unwrap();
    let mut rev = a.mod_revision;
    for i in 2..=20 {
        rev = s
            .update("/r/c/a", rev, b(&i.to_string()))
            .await
            .unwrap()
            .mod_revision;
    }
    s.create("/r/c/gone", b("x")).await.unwrap();
    s.delete("/r/c/gone", None).await.unwrap();
    let target = s.current_revision();
    s.compact(target).await.unwrap();
    assert_eq!(s.compacted_revision(), target);

    let err = s
        .list(ListRequest {
            prefix: "/r/c/".into(),
            revision: Some(a.mod_revision),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Compacted { .. }), "{err:?}");
    let err = s
        .watch("/r/c/", a.mod_revision)
        .await
        .err()
        .expect("watch below compaction");
    assert!(matches!(err, StorageError::Compacted { .. }), "{err:?}");

    let now = s
        .list(ListRequest {
            prefix: "/r/c/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].value, b("20"));
    assert_eq!(now.items[0].create_revision, a.create_revision);
    // Writes and watches keep working after compaction.
    let mut stream = s.watch("/r/c/", target).await.unwrap();
    s.update("/r/c/a", rev, b("21")).await.unwrap();
    assert_eq!(next_event(&mut stream).await.kv.value, b("21"));
}

pub async fn large_values_round_trip(s: &dyn Storage) {
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    s.create("/r/big", Bytes::from(big.clone())).await.unwrap();
    assert_eq!(
        s.get("/r/big").await.unwrap().unwrap().value.as_ref(),
        &big[..]
    );
}

pub async fn concurrent_compare_and_swap_loses_no_update(s: Arc<dyn Storage>) {
    s.create("/r/counter", b("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                loop {
                    let cur = s.get("/r/counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    match s
                        .update("/r/counter", cur.mod_revision, b(&(n + 1).to_string()))
                        .await
                    {
                        Ok(_) => break,
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = s.get("/r/counter").await.unwrap().unwrap();
    assert_eq!(v.value, b("200"));
}

pub async fn many_keys_list_completely(s: &dyn Storage) {
    let keys: Vec<String> = (0..2000).map(|i| format!("/r/many/{i:05}")).collect();
    let writes = keys.iter().map(|k| s.create(k, b("v")));
    for w in futures::future::join_all(writes).await {
        w.unwrap();
    }
    let all = s
        .list(ListRequest {
            prefix: "/r/many/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2000);
    let revisions: std::collections::HashSet<Revision> =
        all.items.iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(revisions.len(), 2000, "every write has its own revision");
}

/// Expands to one `#[tokio::test]` per conformance case. `$factory` is an async expression
/// evaluated per test that yields `(store, guard)`; the guard (e.g. a temp dir) lives as long as
/// the test.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($factory:expr) => {
        $crate::storage_conformance_tests!(@cases $factory;
            create_then_get_returns_the_value_and_its_revisions,
            create_of_an_existing_key_fails_with_already_exists,
            update_on_a_stale_revision_conflicts_and_carries_the_winner,
            update_and_delete_of_a_missing_key_are_not_found,
            delete_honours_its_precondition_and_returns_the_last_value,
            list_reads_a_prefix_in_key_order_at_a_revision,
            paged_lists_stay_consistent_across_writes,
            watch_replays_history_then_follows_live_writes_in_order,
            watch_from_the_current_revision_sees_only_new_writes,
            compaction_expires_old_revisions_but_keeps_current_values,
            large_values_round_trip,
            many_keys_list_completely,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_compare_and_swap_loses_no_update() {
            let (store, _guard) = $factory.await;
            let store: std::sync::Arc<dyn $crate::Storage> = std::sync::Arc::new(store);
            $crate::conformance::concurrent_compare_and_swap_loses_no_update(store).await;
        }
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory.await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}
