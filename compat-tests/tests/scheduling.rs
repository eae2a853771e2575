//! The scheduler's cross-node rules, driven by the stock kubectl: pod anti-affinity keeps
//! replicas apart (and says why the one left over waits), pod affinity brings a pod to its
//! peer, topology spread constraints balance zones that resource scoring alone would not,
//! and a high-priority pod preempts a low-priority one that holds the room it needs.
//!
//! Nodes are registered and kept alive by a heartbeat double and bound pods are started by a
//! pod status double, in place of the node agent.

use std::collections::BTreeMap;
use std::time::Duration;

use compat_tests::node_heartbeat_double::TestNode;
use compat_tests::{TestCluster, eventually};
use serde_json::Value;

const V: &str = "1.33";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// Node name of each pod with `selector`, "" for pods not bound.
fn placements(cluster: &TestCluster, selector: &str) -> Vec<String> {
    let pods = json(
        &cluster
            .kubectl(V, &["get", "pods", "-l", selector, "-o", "json"])
            .ok(),
    );
    let mut nodes: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
        .collect();
    nodes.sort();
    nodes
}

fn per_node(nodes: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for n in nodes {
        *counts.entry(n.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_keeps_replicas_apart_and_affinity_brings_a_pod_to_its_peer() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1"), TestNode::named("n2")], &[])
            .await
            .unwrap();
    cluster.apply(
        V,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: db}}
            topologyKey: kubernetes.io/hostname
      containers: [{name: db, image: "db:1"}]
"#,
    );
    // Two replicas on two nodes; the third has nowhere to go.
    let placed = eventually(Duration::from_secs(30), || {
        let p = placements(&cluster, "app=db");
        (p.len() == 3 && p.iter().filter(|n| !n.is_empty()).count() == 2).then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "two db pods were not placed: {:?}\n{}",
            placements(&cluster, "app=db"),
            cluster
                .kubectl(V, &["describe", "pods", "-l", "app=db"])
                .ok()
        )
    });
    assert_eq!(placed, ["", "n1", "n2"], "{placed:?}");
    let pending = json(
        &cluster
            .kubectl(
                V,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=db",
                    "--field-selector",
                    "spec.nodeName=",
                    "-o",
                    "json",
                ],
            )
            .ok(),
    );
    let name = pending["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let described = eventually(Duration::from_secs(30), || {
        let d = cluster.kubectl(V, &["describe", "pod", &name]).ok();
        d.contains("FailedScheduling").then_some(d)
    })
    .expect("no FailedScheduling event");
    assert!(
        described
            .contains("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."),
        "{described}"
    );
    assert!(
        described.contains("No preemption victims found for incoming pod"),
        "{described}"
    );

    // A cache pod that must sit next to a db pod, and prefers n2: it goes where a db pod is.
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: cache, labels: {app: cache}}
spec:
  affinity:
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: db}}
        topologyKey: kubernetes.io/hostname
  containers: [{name: cache, image: "cache:1"}]
"#,
    );
    let node = eventually(Duration::from_secs(30), || {
        let p = placements(&cluster, "app=cache");
        p.first().filter(|n| !n.is_empty()).cloned()
    })
    .expect("the cache pod was not placed");
    assert!(node == "n1" || node == "n2", "{node}");
    // Nothing matches this affinity anywhere but itself does not match it: it waits.
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: lonely, labels: {app: lonely}}
spec:
  affinity:
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: missing}}
        topologyKey: kubernetes.io/hostname
  containers: [{name: lonely, image: "lonely:1"}]
"#,
    );
    let described = eventually(Duration::from_secs(30), || {
        let d = cluster.kubectl(V, &["describe", "pod", "lonely"]).ok();
        d.contains("FailedScheduling").then_some(d)
    })
    .expect("no FailedScheduling event for lonely");
    assert!(
        described.contains("node(s) didn't match pod affinity rules"),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_balances_zones_that_resource_scoring_would_not() {
    let nodes = [
        TestNode::named("a1").label("topology.kubernetes.io/zone", "a"),
        TestNode::named("a2").label("topology.kubernetes.io/zone", "a"),
        TestNode::named("b1").label("topology.kubernetes.io/zone", "b"),
    ];
    let (cluster, _nodes, _kubelet) = TestCluster::start_with_node_doubles(&nodes, &[])
        .await
        .unwrap();
    cluster.apply(
        V,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: web}}
      containers: [{name: web, image: "web:1"}]
"#,
    );
    cluster
        .kubectl(V, &["rollout", "status", "deployment/web", "--timeout=60s"])
        .ok();
    let counts = per_node(&placements(&cluster, "app=web"));
    let zone_a = counts.get("a1").unwrap_or(&0) + counts.get("a2").unwrap_or(&0);
    let zone_b = *counts.get("b1").unwrap_or(&0);
    // Spread evenly over nodes, zone a would hold four; the constraint makes it three each.
    assert_eq!((zone_a, zone_b), (3, 3), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_low_priority_one_holding_its_room() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    k(&["create", "priorityclass", "high", "--value=1000"]);
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: low}
spec:
  containers:
  - {name: app, image: "app:1", resources: {requests: {cpu: "3"}}}
"#,
    );
    k(&["wait", "--for=condition=Ready", "pod/low", "--timeout=30s"]);
    let low_uid = k(&["get", "pod", "low", "-o", "jsonpath={.metadata.uid}"]);
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: high}
spec:
  priorityClassName: high
  containers:
  - {name: app, image: "app:1", resources: {requests: {cpu: "3"}}}
"#,
    );
    let high = json(&k(&["get", "pod", "high", "-o", "json"]));
    assert_eq!(high["spec"]["priority"], 1000);
    // The low pod goes; the high one takes its place.
    k(&["wait", "--for=delete", "pod/low", "--timeout=30s"]);
    k(&["wait", "--for=condition=Ready", "pod/high", "--timeout=30s"]);
    let high = json(&k(&["get", "pod", "high", "-o", "json"]));
    assert_eq!(high["spec"]["nodeName"], "n1");
    let events = k(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.uid={low_uid}"),
    ]);
    let high_uid = high["metadata"]["uid"].as_str().unwrap();
    assert!(
        events.contains(&format!("Preempted by pod {high_uid} on node n1")),
        "{events}"
    );
    // An equal-priority pod cannot preempt: it waits, saying so.
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: peer}
spec:
  priorityClassName: high
  containers:
  - {name: app, image: "app:1", resources: {requests: {cpu: "3"}}}
"#,
    );
    let described = eventually(Duration::from_secs(30), || {
        let d = k(&["describe", "pod", "peer"]);
        d.contains("FailedScheduling").then_some(d)
    })
    .expect("no FailedScheduling event for peer");
    assert!(described.contains("1 Insufficient cpu"), "{described}");
    assert!(
        described.contains("No preemption victims found for incoming pod"),
        "{described}"
    );
    assert!(k(&["get", "pod", "high"]).contains("Running"));
}
