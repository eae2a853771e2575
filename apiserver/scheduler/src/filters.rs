//! Feasibility filters, each answering with upstream's reason when a node does not fit:
//! NodeName, NodeUnschedulable, NodeResourcesFit (requests against allocatable minus what is
//! bound), NodeAffinity (nodeSelector and required node affinity), TaintToleration and
//! NodePorts. Taint and affinity matching live in `controllers::node_fit`, shared with the
//! DaemonSet controller.

use std::collections::BTreeMap;

use controllers::node_fit::{affinity_matches, tolerated, untolerated_taint};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, PodSpec, Taint};
use kube::ResourceExt;

use crate::resources::{milli, pod_requests};

/// What the pods bound to a node use.
#[derive(Debug, Clone, Default)]
pub struct NodeUsage {
    pub requested: BTreeMap<String, i64>,
    /// CPU and memory requested, counting pods that ask for none as the scoring defaults.
    pub non_zero: BTreeMap<String, i64>,
    pub pods: i64,
    /// (protocol, hostIP, hostPort) taken, with how many pods hold each.
    pub host_ports: BTreeMap<(String, String, i32), usize>,
}

impl NodeUsage {
    /// Charges a pod's requests, count and host ports.
    pub fn add(&mut self, pod: &Pod) {
        self.charge(pod, 1);
    }

    /// Takes back what `add` charged for the same pod.
    pub fn remove(&mut self, pod: &Pod) {
        self.charge(pod, -1);
    }

    fn charge(&mut self, pod: &Pod, sign: i64) {
        let requests = pod_requests(pod);
        for (name, default) in crate::scores::DEFAULTS {
            let v = requests
                .get(name)
                .copied()
                .filter(|v| *v > 0)
                .unwrap_or(default);
            *self.non_zero.entry(name.to_owned()).or_default() += sign * v;
        }
        for (k, v) in requests {
            *self.requested.entry(k).or_default() += sign * v;
        }
        self.pods += sign;
        for port in host_ports(pod) {
            let held = self.host_ports.entry(port.clone()).or_default();
            if sign > 0 {
                *held += 1;
            } else {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    self.host_ports.remove(&port);
                }
            }
        }
    }
}

fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                port,
            ))
        })
        .collect()
}

/// Why `node` cannot take `pod`, or Ok when it can. Filters run in upstream's order and the
/// first that fails answers (resource fit names every resource that is short).
pub fn check(pod: &Pod, node: &Node, used: &NodeUsage) -> Result<(), Vec<String>> {
    let empty_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let empty_node_spec = NodeSpec::default();
    let node_spec = node.spec.as_ref().unwrap_or(&empty_node_spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let unschedulable = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    if node_spec.unschedulable == Some(true) && !tolerated(tolerations, &unschedulable) {
        return Err(vec!["node(s) were unschedulable".to_owned()]);
    }
    if let Some(want) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && want != node.name_any()
    {
        return Err(vec![
            "node(s) didn't match the requested node name".to_owned(),
        ]);
    }
    let taints = node_spec.taints.as_deref().unwrap_or_default();
    if let Some(taint) = untolerated_taint(taints, tolerations, |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    }) {
        return Err(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )]);
    }
    if !affinity_matches(pod, node) {
        return Err(vec![
            "node(s) didn't match Pod's node affinity/selector".to_owned(),
        ]);
    }
    let wanted = host_ports(pod);
    if wanted.iter().any(|(proto, ip, port)| {
        used.host_ports.keys().any(|(p, i, n)| {
            p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0")
        })
    }) {
        return Err(vec![
            "node(s) didn't have free ports for the requested pod ports".to_owned(),
        ]);
    }
    let short = resource_shortfalls(pod, node, used);
    if short.is_empty() { Ok(()) } else { Err(short) }
}

/// `Too many pods` and `Insufficient <resource>` for requests beyond what is left.
pub fn resource_shortfalls(pod: &Pod, node: &Node, used: &NodeUsage) -> Vec<String> {
    let empty = BTreeMap::new();
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .unwrap_or(&empty);
    let mut why = Vec::new();
    let max_pods = allocatable
        .get("pods")
        .map(|q| milli(q) / 1000)
        .unwrap_or(110);
    if used.pods + 1 > max_pods {
        why.push("Too many pods".to_owned());
    }
    for (name, want) in pod_requests(pod) {
        if want == 0 {
            continue;
        }
        let has = allocatable.get(&name).map(milli).unwrap_or(0);
        let taken = used.requested.get(&name).copied().unwrap_or(0);
        if taken + want > has {
            why.push(format!("Insufficient {name}"));
        }
    }
    why
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, NodeSpec, NodeStatus, PodSpec, ResourceRequirements, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity(cpu.into())),
                    ("memory".to_owned(), Quantity(memory.into())),
                    ("pods".to_owned(), Quantity(pods.into())),
                ])),
                ..NodeStatus::default()
            }),
        }
    }

    pub fn pod(cpu: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into()))])),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn node_name_must_match() {
        let mut p = pod("1");
        p.spec.as_mut().unwrap().node_name = Some("other".into());
        let err = check(&p, &node("n1", "4", "8Gi", "110"), &NodeUsage::default()).unwrap_err();
        assert_eq!(err, ["node(s) didn't match the requested node name"]);
    }

    #[test]
    fn unschedulable_nodes_are_skipped() {
        let mut n = node("n1", "4", "8Gi", "110");
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(
            check(&pod("1"), &n, &NodeUsage::default()).unwrap_err(),
            ["node(s) were unschedulable"]
        );
    }

    #[test]
    fn requests_must_fit_what_bound_pods_leave() {
        let n = node("n1", "2", "8Gi", "110");
        let mut used = NodeUsage::default();
        used.add(&pod("1500m"));
        assert_eq!(
            check(&pod("1"), &n, &used).unwrap_err(),
            ["Insufficient cpu"]
        );
        assert!(check(&pod("500m"), &n, &used).is_ok());
        let full = node("n2", "4", "8Gi", "1");
        assert_eq!(
            check(&pod("1"), &full, &used).unwrap_err(),
            ["Too many pods"]
        );
    }

    #[test]
    fn node_selector_and_required_affinity_must_match_labels() {
        let mut n = node("n1", "4", "8Gi", "110");
        n.metadata.labels = Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]));
        let mut p = pod("1");
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".to_owned(), "hdd".to_owned())]));
        assert_eq!(
            check(&p, &n, &NodeUsage::default()).unwrap_err(),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]));
        assert!(check(&p, &n, &NodeUsage::default()).is_ok());
    }

    #[test]
    fn untolerated_taints_keep_pods_away_and_tolerations_let_them_in() {
        let mut n = node("n1", "4", "8Gi", "110");
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        n.spec.as_mut().unwrap().taints = Some(vec![taint]);
        let mut p = pod("1");
        assert_eq!(
            check(&p, &n, &NodeUsage::default()).unwrap_err(),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]);
        assert!(check(&p, &n, &NodeUsage::default()).is_ok());
    }

    #[test]
    fn host_ports_cannot_be_taken_twice() {
        let n = node("n1", "4", "8Gi", "110");
        let mut p = pod("1");
        p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..ContainerPort::default()
        }]);
        let mut used = NodeUsage::default();
        used.add(&p);
        assert_eq!(
            check(&p, &n, &used).unwrap_err(),
            ["node(s) didn't have free ports for the requested pod ports"]
        );
    }
}
