//! The node agent against a real server, on its simulated runtime: it registers a Ready node
//! that the scheduler uses and renews its Lease; the pods bound to it run and report their
//! own addresses; deleted pods go; a killed agent's node turns NotReady and a restarted agent
//! brings it back without duplicating what it runs.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use compat_tests::{TestCluster, eventually, nodeagent_binary};
use serde_json::Value;

const V: &str = "1.33";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(cluster: &TestCluster, node: &str, prefix: &str) -> Agent {
    let child = Command::new(nodeagent_binary())
        .args(["--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .args([
            "--node-name",
            node,
            "--runtime",
            "simulated",
            "--simulated-pod-prefix",
            prefix,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nodeagent (cargo build --bins first)");
    Agent(child)
}

#[test]
fn simulated_nodes_register_run_their_pods_and_recover_after_a_restart() {
    let cluster = TestCluster::start_with(&[
        "--embedded-controllers=true",
        "--embedded-scheduler=true",
        "--node-monitor-grace-period=3s",
        "--node-monitor-period=500ms",
    ])
    .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    let first = start_agent(&cluster, "sim-1", "10.88.1");
    let _second = start_agent(&cluster, "sim-2", "10.88.2");
    k(&[
        "wait",
        "--for=condition=Ready",
        "node/sim-1",
        "node/sim-2",
        "--timeout=60s",
    ]);
    let node = json(&k(&["get", "node", "sim-1", "-o", "json"]));
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "sim-1"
    );
    assert!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("simulated://")
    );
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    // The node lifecycle controller lifted the not-ready taint the agent registered with.
    let untainted = eventually(Duration::from_secs(30), || {
        let node = json(&k(&["get", "node", "sim-1", "-o", "json"]));
        node["spec"]["taints"]
            .as_array()
            .is_none_or(|t| t.is_empty())
            .then_some(())
    });
    assert!(untainted.is_some(), "the not-ready taint stayed");
    let lease = json(&k(&[
        "get",
        "lease",
        "sim-1",
        "-n",
        "kube-node-lease",
        "-o",
        "json",
    ]));
    assert_eq!(lease["spec"]["holderIdentity"], "sim-1");

    k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=4",
    ]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = json(&k(&["get", "pods", "-l", "app=web", "-o", "json"]));
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let mut ips: Vec<&str> = items
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "pods share addresses: {ips:?}");
    for p in items {
        let node = p["spec"]["nodeName"].as_str().unwrap();
        let ip = p["status"]["podIP"].as_str().unwrap();
        let prefix = if node == "sim-1" {
            "10.88.1."
        } else {
            "10.88.2."
        };
        assert!(ip.starts_with(prefix), "{ip} on {node}");
        assert_eq!(p["status"]["hostIP"], "127.0.0.1");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    }
    let table = k(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    assert_eq!(table.matches("Running").count(), 4, "{table}");

    // The agent dies: its node goes NotReady. A new agent brings it back Ready.
    drop(first);
    k(&[
        "wait",
        "--for=condition=Ready=Unknown",
        "node/sim-1",
        "--timeout=30s",
    ]);
    let _restarted = start_agent(&cluster, "sim-1", "10.88.1");
    k(&[
        "wait",
        "--for=condition=Ready",
        "node/sim-1",
        "--timeout=30s",
    ]);

    // Scaling down removes pods; none is left behind.
    k(&["scale", "deployment", "web", "--replicas=1"]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = json(&k(&["get", "pods", "-l", "app=web", "-o", "json"]));
    assert_eq!(pods["items"].as_array().unwrap().len(), 1);
}
