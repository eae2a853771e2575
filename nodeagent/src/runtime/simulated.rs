//! The simulated runtime: pods and containers exist only as state in this process. A pod's
//! containers run from the moment it is synced, each pod gets its own address from the
//! node's range, and nothing touches the host, so one machine can host many nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::{ContainerPhase, ContainerRuntime, ContainerState, PodRuntimeStatus};

pub struct SimulatedRuntime {
    /// The first three octets of the pod addresses (`10.88.0` gives 10.88.0.2 …).
    prefix: String,
    pods: Mutex<HashMap<String, PodRuntimeStatus>>,
    next_host: Mutex<u32>,
}

impl SimulatedRuntime {
    pub fn new(prefix: &str) -> SimulatedRuntime {
        SimulatedRuntime {
            prefix: prefix.to_owned(),
            pods: Mutex::new(HashMap::new()),
            next_host: Mutex::new(2),
        }
    }

    fn allocate_ip(&self) -> String {
        let mut next = self.next_host.lock().unwrap_or_else(|e| e.into_inner());
        let host = *next;
        // .2 to .254, then around again (a simulated node holds at most 110 pods).
        *next = if host >= 254 { 2 } else { host + 1 };
        format!("{}.{host}", self.prefix)
    }
}

impl ContainerRuntime for SimulatedRuntime {
    fn version(&self) -> String {
        format!("simulated://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn sync_pod(&self, pod: &Pod) -> anyhow::Result<PodRuntimeStatus> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(existing) = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
        {
            return Ok(existing.clone());
        }
        let now = Timestamp::now();
        let ip = self.allocate_ip();
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .enumerate()
            .map(|(i, c)| ContainerState {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: format!("simulated://{}", c.image.clone().unwrap_or_default()),
                container_id: format!("simulated://{uid}-{i}"),
                restart_count: 0,
                phase: ContainerPhase::Running { started_at: now },
            })
            .collect();
        let status = PodRuntimeStatus {
            ip,
            started_at: now,
            containers,
        };
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid, status.clone());
        Ok(status)
    }

    async fn kill_pod(&self, uid: &str) -> anyhow::Result<()> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        Ok(())
    }

    async fn pod_uids(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("busybox".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn syncing_is_idempotent_and_pods_get_their_own_addresses() {
        let rt = SimulatedRuntime::new("10.88.0");
        let a = rt.sync_pod(&pod("a")).await.unwrap();
        let again = rt.sync_pod(&pod("a")).await.unwrap();
        assert_eq!(a, again);
        let b = rt.sync_pod(&pod("b")).await.unwrap();
        assert_ne!(a.ip, b.ip);
        assert_eq!(a.containers[0].name, "app");
        let mut uids = rt.pod_uids().await.unwrap();
        uids.sort();
        assert_eq!(uids, ["a", "b"]);
        rt.kill_pod("a").await.unwrap();
        assert_eq!(rt.pod_uids().await.unwrap(), ["b"]);
    }
}
