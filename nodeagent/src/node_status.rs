//! The Node object the agent registers and the status it reports, as the kubelet writes
//! them: the well-known labels, the not-ready taint it registers with (the node lifecycle
//! controller lifts it once the node is Ready), capacity and allocatable, the four
//! conditions with the kubelet's reasons and messages, addresses, the streaming endpoint's
//! port and nodeInfo. Pure functions; `heartbeat` writes them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::host::{HostInfo, Pressure, go_arch};

/// The most pods the agent takes (the kubelet's default `--max-pods`).
pub const MAX_PODS: u64 = 110;
/// The kubelet version the agent reports (the API it speaks).
pub const KUBELET_VERSION: &str = "v1.33.0";

/// What the agent knows beyond the host: its name, runtime and streaming port.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub node_name: String,
    /// `<runtime>://<version>`, as nodeInfo.containerRuntimeVersion.
    pub runtime_version: String,
    pub streaming_port: u16,
}

fn labels(name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", go_arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", go_arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The Node as first registered: labels, annotations and the not-ready taint; its status is
/// written separately through `nodes/status`.
pub fn registration(agent: &AgentIdentity) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(agent.node_name.clone()),
            labels: Some(labels(&agent.node_name)),
            annotations: Some(
                [
                    ("node.alpha.kubernetes.io/ttl", "0"),
                    (
                        "volumes.kubernetes.io/controller-managed-attach-detach",
                        "true",
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "node.kubernetes.io/not-ready".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
    previous: &[NodeCondition],
) -> NodeCondition {
    // The transition time stays while the status does.
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(since),
    }
}

/// The node's status now, keeping the transition times of conditions that did not change.
pub fn status(
    agent: &AgentIdentity,
    host: &HostInfo,
    pressure: Pressure,
    previous: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let pressure_condition = |type_: &str, on: bool, yes: (&str, &str), no: (&str, &str)| {
        let (reason, message) = if on { yes } else { no };
        condition(
            type_,
            if on { "True" } else { "False" },
            reason,
            message,
            now,
            previous,
        )
    };
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", host.cpus.to_string()),
        ("memory", format!("{}Ki", host.memory_kib)),
        ("pods", MAX_PODS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            pressure_condition(
                "MemoryPressure",
                pressure.memory,
                (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                ),
                (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
            ),
            pressure_condition(
                "DiskPressure",
                pressure.disk,
                ("KubeletHasDiskPressure", "kubelet has disk pressure"),
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ),
            pressure_condition(
                "PIDPressure",
                pressure.pid,
                (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available",
                ),
                (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                now,
                previous,
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: host.address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: agent.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(agent.streaming_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: agent.runtime_version.clone(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.machine_id.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_shows_in_the_conditions() {
        let now = Timestamp::from_second(1_000).unwrap();
        let pressed = Pressure {
            memory: true,
            disk: false,
            pid: false,
        };
        let s = status(&agent(), &host(), pressed, &[], now);
        let memory = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(memory.status, "True");
        assert_eq!(
            memory.reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
        assert_eq!(
            crate::host::mem_available("MemTotal: 10 kB\nMemAvailable:   2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
    }

    fn agent() -> AgentIdentity {
        AgentIdentity {
            node_name: "worker-1".into(),
            runtime_version: "simulated://0.1.0".into(),
            streaming_port: 10250,
        }
    }

    fn host() -> HostInfo {
        HostInfo {
            cpus: 2,
            memory_kib: 24_576_000,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "abc".into(),
            boot_id: "boot".into(),
            address: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn registration_carries_the_kubelet_labels_and_the_not_ready_taint() {
        let node = registration(&agent());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "worker-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!(taints[0].key, "node.kubernetes.io/not-ready");
    }

    #[test]
    fn status_reports_capacity_conditions_and_the_streaming_port() {
        let now = Timestamp::from_second(1_000).unwrap();
        let s = status(&agent(), &host(), Pressure::default(), &[], now);
        let capacity = s.capacity.clone().unwrap();
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "24576000Ki");
        assert_eq!(capacity["pods"].0, "110");
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        // A later heartbeat keeps the transition time and moves the heartbeat.
        let later = Timestamp::from_second(2_000).unwrap();
        let again = status(
            &agent(),
            &host(),
            Pressure::default(),
            &s.conditions.unwrap(),
            later,
        );
        let ready = again
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(later)));
    }
}
