//! A kube-rs client against the real server: CRUD, patches, and the kube-runtime watcher
//! with bookmarks through a forced 410 and relist.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;

use compat_tests::TestCluster;

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"suite": "kube-rs"}}, "data": {"k": value}}),
    )
    .unwrap()
}

#[tokio::test]
async fn create_get_list_replace_patch_and_delete() {
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    let created = api
        .create(&PostParams::default(), &configmap("a", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let err = api
        .create(&PostParams::default(), &configmap("a", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    let mut got = api.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "1");
    got.data = Some([("k".to_owned(), "2".to_owned())].into());
    let replaced = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    // Replacing with the stale version conflicts.
    let err = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["m"], "x");
    let strategic = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"s": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.labels.as_ref().unwrap()["s"], "y");
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/m"}])).unwrap();
    let jsonp = api
        .patch("a", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert!(!jsonp.data.as_ref().unwrap().contains_key("m"));

    api.create(&PostParams::default(), &configmap("b", "1"))
        .await
        .unwrap();
    let list = api
        .list(&ListParams::default().labels("suite=kube-rs"))
        .await
        .unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(list.metadata.resource_version.is_some());
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = api
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("b"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("suite=kube-rs"),
    )
    .await
    .unwrap();
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_gets_an_in_stream_410() {
    let cluster = TestCluster::start_with(&["--etcd-compaction-interval", "1s"]).unwrap();
    let client = cluster.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &configmap("old", "1"))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &configmap("newer", "1"))
        .await
        .unwrap();
    // Compaction runs every second and keeps one interval of history; keep asking until the
    // old revision is gone, as a client resuming late would.
    let mut expired = None;
    for _ in 0..100 {
        let mut stream = api
            .watch(&WatchParams::default().timeout(5), &old_rv)
            .await
            .unwrap()
            .boxed();
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
        {
            Some(Ok(WatchEvent::Error(status))) => {
                expired = Some(status);
                break;
            }
            Some(Ok(WatchEvent::Added(_))) => {
                api.patch(
                    "newer",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"tick": "x"}})),
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("unexpected watch item {other:?}"),
        }
    }
    let status = expired.expect("the old revision was never compacted");
    assert_eq!(status.code, 410);
    assert_eq!(status.reason, "Expired");
}

#[tokio::test]
async fn the_runtime_watcher_relists_after_410_and_sees_every_change() {
    let cluster = TestCluster::start_with(&["--etcd-compaction-interval", "1s"]).unwrap();
    let client = cluster.client().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    configmaps
        .create(&PostParams::default(), &configmap("before", "1"))
        .await
        .unwrap();

    // Short server-side timeouts make the watcher resume often from its last revision.
    let config = watcher::Config::default().timeout(1);
    let mut events = watcher(configmaps.clone(), config).boxed();
    let mut init_done = 0;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut churned = false;
    let mut expired = 0;
    while init_done < 2 || !seen.contains("after") {
        let item = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("watcher made no progress")
            .expect("watcher stream ended");
        let event = match item {
            Ok(event) => event,
            // kube-runtime reports the in-stream 410 and then relists by itself.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                assert_eq!(status.reason, "Expired");
                expired += 1;
                continue;
            }
            // Anything else (a slow connection on a loaded machine) the watcher retries by
            // itself, as clients rely on; the deadline above bounds it.
            Err(other) => {
                eprintln!("watcher reported (and retries): {other}");
                continue;
            }
        };
        match event {
            watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                seen.insert(cm.metadata.name.unwrap());
            }
            watcher::Event::InitDone => {
                init_done += 1;
                if init_done == 1 && !churned {
                    churned = true;
                    configmaps
                        .create(&PostParams::default(), &configmap("after", "1"))
                        .await
                        .unwrap();
                    // Writes elsewhere move the revision past the watcher's resume point;
                    // compaction then expires it, so its next watch gets 410 and it relists.
                    for i in 0..20 {
                        let s: Secret =
                            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}}))
                                .unwrap();
                        secrets.create(&PostParams::default(), &s).await.unwrap();
                    }
                }
            }
            _ => {}
        }
    }
    assert!(seen.contains("before") && seen.contains("after"));
    assert!(expired >= 1, "the watcher never saw a 410");
    assert!(init_done >= 2, "the watcher never relisted");
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["s1", "s2"] {
        api.create(&PostParams::default(), &configmap(name, "1"))
            .await
            .unwrap();
    }
    let mut events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("no progress")
            .expect("stream ended");
        let Ok(event) = item else {
            // The watcher retries transient errors by itself; the timeout bounds it.
            continue;
        };
        match event {
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["s1", "s2"]);
    api.create(&PostParams::default(), &configmap("s3", "1"))
        .await
        .unwrap();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("no progress")
            .expect("stream ended");
        // Transient errors are retried by the watcher itself; the timeout bounds them.
        if let Ok(watcher::Event::Apply(cm)) = item {
            assert_eq!(cm.metadata.name.as_deref(), Some("s3"));
            break;
        }
    }
}

#[tokio::test]
async fn server_side_apply_with_conflicts_metadata_api_entry_and_dynamic_discovery() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{DynamicObject, GroupVersionKind};
    use kube::discovery::Discovery;

    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let manifest = |replicas: i32, image: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "krs", "labels": {"app": "krs"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "krs"}},
                "template": {"metadata": {"labels": {"app": "krs"}},
                    "spec": {"containers": [{"name": "app", "image": image}]}}}
        })
    };

    // Apply creates, then a second manager's different value conflicts until forced.
    let created = deployments
        .patch(
            "krs",
            &PatchParams::apply("krs-owner"),
            &Patch::Apply(manifest(2, "nginx")),
        )
        .await
        .unwrap();
    let entries = created.metadata.managed_fields.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].manager.as_deref(), Some("krs-owner"));
    assert_eq!(entries[0].operation.as_deref(), Some("Apply"));
    let err = deployments
        .patch(
            "krs",
            &PatchParams::apply("krs-rival"),
            &Patch::Apply(manifest(4, "nginx")),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"krs-owner\": .spec.replicas"
    );
    let causes = &status.details.as_ref().unwrap().causes;
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.replicas");
    let forced = deployments
        .patch(
            "krs",
            &PatchParams::apply("krs-rival").force(),
            &Patch::Apply(manifest(4, "nginx")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(4));
    // The first owner drops replicas from its configuration: the rival still owns the field,
    // so it stays.
    let mut without = manifest(0, "nginx");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let applied = deployments
        .patch(
            "krs",
            &PatchParams::apply("krs-owner"),
            &Patch::Apply(without),
        )
        .await
        .unwrap();
    let spec = applied.spec.unwrap();
    assert_eq!(spec.replicas, Some(4));
    // The rival applied the same image, so the image is shared: changing it alone conflicts.
    let err = deployments
        .patch(
            "krs",
            &PatchParams::apply("krs-owner"),
            &Patch::Apply(manifest(4, "nginx:2")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.message.contains("containers[name=\"app\"].image")),
        "{err:?}"
    );
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx")
    );

    // Metadata API: get, list and watch as PartialObjectMetadata.
    let meta = deployments.get_metadata("krs").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("krs"));
    assert_eq!(meta.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    let list = deployments
        .list_metadata(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let mut events = deployments
        .watch_metadata(
            &WatchParams::default(),
            &list.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    deployments
        .patch(
            "krs",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
        )
        .await
        .unwrap();
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Modified(m) => {
            assert_eq!(m.metadata.labels.unwrap()["seen"], "yes");
        }
        other => panic!("{other:?}"),
    }

    // Api::entry: get-or-insert, modify, commit (create, then update).
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut entry = configmaps
        .entry("entry")
        .await
        .unwrap()
        .or_insert(|| configmap("entry", "1"));
    entry.commit(&PostParams::default()).await.unwrap();
    let mut entry = configmaps.entry("entry").await.unwrap().and_modify(|cm| {
        cm.data.as_mut().unwrap().insert("k".into(), "2".into());
    });
    if let kube::api::entry::Entry::Occupied(occupied) = &mut entry {
        occupied.commit(&PostParams::default()).await.unwrap();
    } else {
        panic!("the entry exists");
    }
    assert_eq!(
        configmaps.get("entry").await.unwrap().data.unwrap()["k"],
        "2"
    );

    // Dynamic API over aggregated discovery.
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (resource, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .expect("deployments are discovered");
    assert_eq!(resource.plural, "deployments");
    assert!(caps.supports_operation(kube::discovery::verbs::PATCH));
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let object = dynamic.get("krs").await.unwrap();
    assert_eq!(object.data["spec"]["replicas"], 4);
    let patched = dynamic
        .patch(
            "krs",
            &PatchParams::apply("krs-dynamic").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "krs"}, "spec": {"paused": true}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["paused"], true);
    let managers: Vec<String> = patched
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"krs-dynamic".to_owned()), "{managers:?}");
}
