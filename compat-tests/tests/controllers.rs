//! The control loops, driven by the stock kubectl: Deployments become ReplicaSets and pods
//! bound across the registered nodes, roll, roll back, pause, restart and scale; deletes
//! cascade (or orphan); namespaces drain; taints and resource shortages keep pods away with
//! the real reasons. Nodes are Node objects written by the test, and a test double marks
//! bound pods Ready in place of a kubelet.

use compat_tests::TestCluster;
use compat_tests::pod_status_double::PodStatusDouble;
use serde_json::Value;

fn node(name: &str, taint: Option<&str>) -> String {
    let taints = match taint {
        Some(t) => serde_json::json!([{"key": t, "value": "gpu", "effect": "NoSchedule"}]),
        None => serde_json::json!([]),
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    })
    .to_string()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

const V: &str = "1.33";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_roll_scale_roll_back_and_cascade_through_stock_kubectl() {
    let cluster = TestCluster::start_with_controllers().unwrap();
    let _kubelet = PodStatusDouble::start(cluster.client().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    for (name, taint) in [("n1", None), ("n2", None), ("n3", Some("dedicated"))] {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, node(name, taint)).unwrap();
        cluster
            .kubectl(V, &["create", "-f", file.to_str().unwrap()])
            .ok();
    }
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();

    k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = json(&k(&["get", "pods", "-l", "app=web", "-o", "json"]));
    let nodes: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes.iter().all(|n| *n == "n1" || *n == "n2"),
        "the tainted node got a pod: {nodes:?}"
    );
    assert!(
        nodes.contains(&"n1") && nodes.contains(&"n2"),
        "replicas were not spread: {nodes:?}"
    );

    k(&["scale", "deployment", "web", "--replicas=5"]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(
        json(&k(&["get", "pods", "-l", "app=web", "-o", "json"]))["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    k(&["set", "image", "deployment/web", "nginx=nginx:2"]);
    let status = k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let images = |cluster: &TestCluster| -> Vec<String> {
        let pods = json(
            &cluster
                .kubectl(V, &["get", "pods", "-l", "app=web", "-o", "json"])
                .ok(),
        );
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(images(&cluster), vec!["nginx:2"; 5]);
    let history = k(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    k(&["rollout", "undo", "deployment/web"]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(images(&cluster), vec!["nginx:1"; 5]);
    let history = k(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "{history}"
    );

    k(&["rollout", "pause", "deployment/web"]);
    k(&[
        "wait",
        "deployment/web",
        "--for=jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}=DeploymentPaused",
        "--timeout=60s",
    ]);
    let sets_before = json(&k(&["get", "rs", "-l", "app=web", "-o", "json"]))["items"]
        .as_array()
        .unwrap()
        .len();
    k(&["set", "image", "deployment/web", "nginx=nginx:3"]);
    let generation = k(&[
        "get",
        "deployment/web",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    let observed = format!("--for=jsonpath={{.status.observedGeneration}}={generation}");
    k(&["wait", "deployment/web", &observed, "--timeout=60s"]);
    let sets_paused = json(&k(&["get", "rs", "-l", "app=web", "-o", "json"]))["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(sets_before, sets_paused, "a paused deployment rolled");
    k(&["rollout", "resume", "deployment/web"]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(images(&cluster), vec!["nginx:3"; 5]);

    k(&["rollout", "restart", "deployment/web"]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let restarted = json(&k(&["get", "pods", "-l", "app=web", "-o", "json"]));
    assert!(
        restarted["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string())
    );
    // Older kubectls read the same status.
    for v in ["1.27", "1.30"] {
        let status = cluster
            .kubectl(v, &["rollout", "status", "deployment/web", "--timeout=60s"])
            .ok();
        assert!(status.contains("successfully rolled out"), "{v}: {status}");
    }
    // Each scaling is its own event, with its own message.
    let described = k(&["describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(described.contains(" from 0 to 3"), "{described}");
    assert!(described.contains(" from 3 to 5"), "{described}");

    // A pod no node can take says why, as the real scheduler does.
    k(&[
        "run",
        "big",
        "--image=nginx",
        "--overrides={\"spec\":{\"containers\":[{\"name\":\"big\",\"image\":\"nginx\",\"resources\":{\"requests\":{\"cpu\":\"100\"}}}]}}",
    ]);
    k(&[
        "wait",
        "pod/big",
        "--for=condition=PodScheduled=False",
        "--timeout=60s",
    ]);
    let described = k(&["describe", "pod", "big"]);
    assert!(
        described.contains("0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."),
        "{described}"
    );
    assert!(described.contains("FailedScheduling"), "{described}");

    // Delete cascades in the background; kubectl waits until the deployment is gone.
    k(&["delete", "deployment", "web"]);
    k(&[
        "wait",
        "pods",
        "-l",
        "app=web",
        "--for=delete",
        "--timeout=60s",
    ]);
    let left = cluster
        .kubectl(V, &["get", "rs,pods", "-l", "app=web", "-o", "name"])
        .ok();
    assert_eq!(left, "");

    // --cascade=orphan leaves the ReplicaSet and its pods, with no owner.
    k(&[
        "create",
        "deployment",
        "keep",
        "--image=nginx",
        "--replicas=2",
    ]);
    k(&["rollout", "status", "deployment/keep", "--timeout=60s"]);
    k(&["delete", "deployment", "keep", "--cascade=orphan"]);
    let sets = json(&k(&["get", "rs", "-l", "app=keep", "-o", "json"]));
    let sets = sets["items"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    assert!(
        sets[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{:?}",
        sets[0]["metadata"]
    );
    assert_eq!(
        json(&k(&["get", "pods", "-l", "app=keep", "-o", "json"]))["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Deleting a namespace removes everything in it, then the namespace.
    k(&["create", "namespace", "scratch"]);
    k(&[
        "-n",
        "scratch",
        "create",
        "deployment",
        "tmp",
        "--image=nginx",
        "--replicas=2",
    ]);
    k(&[
        "-n",
        "scratch",
        "rollout",
        "status",
        "deployment/tmp",
        "--timeout=60s",
    ]);
    k(&["-n", "scratch", "get", "serviceaccount", "default"]);
    k(&["-n", "scratch", "get", "configmap", "kube-root-ca.crt"]);
    k(&["delete", "namespace", "scratch", "--timeout=60s"]);
    let gone = cluster.kubectl(V, &["get", "namespace", "scratch"]).fails();
    assert!(gone.contains("NotFound"), "{gone}");
}

/// A standalone `apiserver controller-manager` process, killed when dropped.
struct ControllerManager(std::process::Child);

impl ControllerManager {
    fn start(cluster: &TestCluster) -> ControllerManager {
        let child = std::process::Command::new(compat_tests::apiserver_binary())
            .args(["controller-manager", "--kubeconfig"])
            .arg(&cluster.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        ControllerManager(child)
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until the controllers have given deployment `name` its revision.
async fn wait_for_rollout_start(client: &kube::Client, name: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    let has_revision = |d: Option<&Deployment>| {
        d.is_some_and(|d| {
            d.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("deployment.kubernetes.io/revision"))
        })
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        kube::runtime::wait::await_condition(api, name, has_revision),
    )
    .await
    .expect("the controllers did not act within a minute")
    .unwrap();
}

async fn lease_holder(client: &kube::Client) -> (String, i32) {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), "kube-system");
    let spec = api
        .get("kube-controller-manager")
        .await
        .unwrap()
        .spec
        .unwrap();
    (
        spec.holder_identity.unwrap(),
        spec.lease_transitions.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_controller_managers_elect_one_leader_and_hand_over_when_it_dies() {
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let first = ControllerManager::start(&cluster);
    cluster
        .kubectl(V, &["create", "deployment", "a", "--image=nginx"])
        .ok();
    wait_for_rollout_start(&client, "a").await;
    let (leader, transitions) = lease_holder(&client).await;
    assert_eq!(transitions, 0);

    // A second copy waits while the first holds the lease; when the first dies, it takes over.
    let _second = ControllerManager::start(&cluster);
    drop(first);
    cluster
        .kubectl(V, &["create", "deployment", "b", "--image=nginx"])
        .ok();
    wait_for_rollout_start(&client, "b").await;
    let (new_leader, transitions) = lease_holder(&client).await;
    assert_ne!(new_leader, leader);
    assert_eq!(transitions, 1);

    // Standalone, the root CA published comes from the kubeconfig: the cluster's CA.
    let published = cluster
        .kubectl(
            V,
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        )
        .ok();
    let ca = std::fs::read_to_string(cluster.data_dir.path().join("pki/ca.crt")).unwrap();
    assert_eq!(published.trim(), ca.trim());
}
