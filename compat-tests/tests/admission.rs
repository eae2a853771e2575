//! Admission and create-time bookkeeping, driven by the stock kubectl: the Priority plugin
//! gives pods the priority and preemption policy of their PriorityClass (or of the global
//! default), refuses unknown classes as kube-apiserver does, and allows one default; the
//! system classes exist from the start; DaemonSets carry their template generation.

use compat_tests::{Kubectl, TestCluster, table_rows};
use serde_json::Value;

const V: &str = "1.33";

/// `kubectl create -f` of a manifest.
fn create(cluster: &TestCluster, manifest: &str) -> Kubectl {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    cluster.kubectl(V, &["create", "-f", file.to_str().unwrap()])
}

fn pod(name: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox:1.36\n"
    )
}

fn get_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&cluster.kubectl(V, &all).ok()).unwrap()
}

#[test]
fn pods_get_the_priority_of_their_class() {
    let cluster = TestCluster::start().unwrap();

    // The system classes are there from the start.
    let rows = table_rows(&cluster.kubectl(V, &["get", "priorityclass"]).ok());
    assert_eq!(
        rows[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    let system: Vec<(&str, &str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        system,
        [
            ("system-cluster-critical", "2000000000", "false"),
            ("system-node-critical", "2000001000", "false"),
        ]
    );

    // Without a default class a pod gets priority 0.
    create(&cluster, &pod("plain", "")).ok();
    let plain = get_json(&cluster, &["pod", "plain"]);
    assert_eq!(plain["spec"]["priority"], 0);
    assert_eq!(plain["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert!(plain["spec"].get("priorityClassName").is_none(), "{plain}");

    // A named class gives its value and preemption policy.
    let out = cluster
        .kubectl(V, &["create", "priorityclass", "high", "--value=1000"])
        .ok();
    assert_eq!(out.trim(), "priorityclass.scheduling.k8s.io/high created");
    create(&cluster, &pod("important", "  priorityClassName: high\n")).ok();
    let important = get_json(&cluster, &["pod", "important"]);
    assert_eq!(important["spec"]["priorityClassName"], "high");
    assert_eq!(important["spec"]["priority"], 1000);
    assert_eq!(
        important["spec"]["preemptionPolicy"],
        "PreemptLowerPriority"
    );
    create(
        &cluster,
        &pod("critical", "  priorityClassName: system-node-critical\n"),
    )
    .ok();
    let critical = get_json(&cluster, &["pod", "critical"]);
    assert_eq!(critical["spec"]["priority"], 2_000_001_000);

    // An unknown class, or a priority of the pod's own that disagrees, is refused.
    let err = create(&cluster, &pod("x", "  priorityClassName: foo\n")).fails();
    assert!(
        err.starts_with("Error from server (Forbidden): error when creating ")
            && err.contains("pods \"x\" is forbidden: no PriorityClass with name foo was found"),
        "{err}"
    );
    let err = create(
        &cluster,
        &pod("rogue", "  priorityClassName: high\n  priority: 5\n"),
    )
    .fails();
    assert!(
        err.contains("pods \"rogue\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"),
        "{err}"
    );
    assert!(
        cluster
            .kubectl(V, &["get", "pod", "x", "rogue", "--ignore-not-found"])
            .ok()
            .trim()
            .is_empty()
    );

    // The global default class applies to pods that name none; there is only one default.
    cluster
        .kubectl(
            V,
            &[
                "create",
                "priorityclass",
                "everyday",
                "--value=10",
                "--global-default",
                "--preemption-policy=Never",
            ],
        )
        .ok();
    let err = cluster
        .kubectl(
            V,
            &[
                "create",
                "priorityclass",
                "another",
                "--value=5",
                "--global-default",
            ],
        )
        .fails();
    assert!(
        err.contains("error: failed to create priorityclass: priorityclasses.scheduling.k8s.io \"another\" is forbidden: PriorityClass everyday is already marked as default. Only one default can exist"),
        "{err}"
    );
    create(&cluster, &pod("defaulted", "")).ok();
    let defaulted = get_json(&cluster, &["pod", "defaulted"]);
    assert_eq!(defaulted["spec"]["priorityClassName"], "everyday");
    assert_eq!(defaulted["spec"]["priority"], 10);
    assert_eq!(defaulted["spec"]["preemptionPolicy"], "Never");

    // Updates keep the priority, and the pod keeps its five-minute tolerations.
    cluster
        .kubectl(V, &["label", "pod", "important", "tier=gold"])
        .ok();
    let important = get_json(&cluster, &["pod", "important"]);
    assert_eq!(important["spec"]["priority"], 1000);
    let tolerations: Vec<(&str, i64)> = important["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or(""),
                t["tolerationSeconds"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        tolerations,
        [
            ("node.kubernetes.io/not-ready", 300),
            ("node.kubernetes.io/unreachable", 300)
        ]
    );
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
";

fn template_generation(cluster: &TestCluster) -> String {
    cluster
        .kubectl(
            V,
            &[
                "get",
                "daemonset",
                "agent",
                "-o",
                r"jsonpath={.metadata.annotations.deprecated\.daemonset\.template\.generation}",
            ],
        )
        .ok()
}

#[test]
fn daemonsets_count_their_template_generations() {
    let cluster = TestCluster::start().unwrap();
    create(&cluster, DAEMONSET).ok();
    assert_eq!(template_generation(&cluster), "1");

    cluster
        .kubectl(
            V,
            &["set", "image", "daemonset/agent", "agent=busybox:1.37"],
        )
        .ok();
    assert_eq!(template_generation(&cluster), "2");
    let ds = get_json(&cluster, &["daemonset", "agent"]);
    assert_eq!(ds["metadata"]["generation"], 2);

    // Neither other changes nor clients move it.
    cluster
        .kubectl(V, &["label", "daemonset", "agent", "tier=base"])
        .ok();
    cluster
        .kubectl(
            V,
            &[
                "annotate",
                "--overwrite",
                "daemonset",
                "agent",
                "deprecated.daemonset.template.generation=9",
            ],
        )
        .ok();
    assert_eq!(template_generation(&cluster), "2");
}
