//! A test double of the kubelet's registration and heartbeats, until the node agent exists:
//! registers Node objects reporting Ready, with capacity and the well-known hostname, OS and
//! architecture labels, and renews each node's Lease in
//! `kube-node-lease` every second, as a kubelet does, until the node is silenced or the
//! double dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How a test node looks.
#[derive(Debug, Clone, Default)]
pub struct TestNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)` taints.
    pub taints: Vec<(String, String, String)>,
}

impl TestNode {
    pub fn named(name: &str) -> TestNode {
        TestNode {
            name: name.into(),
            ..TestNode::default()
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> TestNode {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> TestNode {
        self.taints.push((key.into(), value.into(), effect.into()));
        self
    }
}

/// Registered nodes whose leases are renewed while alive.
pub struct NodeHeartbeatDouble {
    beating: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeHeartbeatDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeHeartbeatDouble {
    /// Registers `nodes` (Ready, 4 CPUs, 8Gi, 110 pods) with their leases and starts renewing.
    pub async fn register(client: kube::Client, nodes: &[TestNode]) -> Result<NodeHeartbeatDouble> {
        let node_api: Api<Node> = Api::all(client.clone());
        let lease_api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        for n in nodes {
            let now = jiff::Timestamp::now().to_string();
            // The well-known labels a kubelet registers with.
            let mut labels = n.labels.clone();
            for (k, v) in [
                ("kubernetes.io/hostname", n.name.as_str()),
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", nodeagent::host::go_arch()),
            ] {
                labels.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            }
            let taints: Vec<_> = n
                .taints
                .iter()
                .map(|(k, v, e)| json!({"key": k, "value": v, "effect": e}))
                .collect();
            let capacity = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": n.name, "labels": labels},
                "spec": {"taints": taints},
            }))?;
            let created = node_api.create(&PostParams::default(), &node).await?;
            let status = json!({"status": {
                "capacity": capacity, "allocatable": capacity,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": now, "lastTransitionTime": now}],
            }});
            node_api
                .patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": n.name, "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": n.name,
                    "uid": created.metadata.uid}]},
                "spec": {"holderIdentity": n.name, "leaseDurationSeconds": 40,
                         "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
            }))?;
            lease_api.create(&PostParams::default(), &lease).await?;
        }
        let beating = Arc::new(Mutex::new(
            nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        ));
        let names = beating.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let alive = names.lock().expect("heartbeat lock").clone();
                for name in alive {
                    let renew = jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                        .to_string();
                    let patch = json!({"spec": {"renewTime": renew}});
                    let _ = lease_api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
        });
        Ok(NodeHeartbeatDouble { beating, task })
    }

    /// Stops renewing `node`'s lease, as if its kubelet died.
    pub fn silence(&self, node: &str) {
        self.beating
            .lock()
            .expect("heartbeat lock")
            .retain(|n| n != node);
    }
}
