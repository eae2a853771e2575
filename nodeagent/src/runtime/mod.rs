//! Container runtimes: what the agent needs from whatever runs containers. `simulated` keeps
//! containers as state only (for scale tests, as kwok and kubemark do); a Docker runtime
//! through bollard follows.

pub mod simulated;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// A container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub restart_count: i32,
    pub phase: ContainerPhase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerPhase {
    Running {
        started_at: Timestamp,
    },
    Exited {
        exit_code: i32,
        reason: String,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

/// A pod as the runtime runs it: its sandbox's address and its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRuntimeStatus {
    pub ip: String,
    pub started_at: Timestamp,
    pub containers: Vec<ContainerState>,
}

/// What runs a node's pods.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// `<name>://<version>`, for the Node's nodeInfo.
    fn version(&self) -> String;

    /// Converges the runtime to the pod's spec (creating what is missing) and reports it.
    fn sync_pod(
        &self,
        pod: &Pod,
    ) -> impl std::future::Future<Output = anyhow::Result<PodRuntimeStatus>> + Send;

    /// Stops and removes everything of the pod with `uid`.
    fn kill_pod(&self, uid: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;

    /// The uids of the pods the runtime holds.
    fn pod_uids(&self) -> impl std::future::Future<Output = anyhow::Result<Vec<String>>> + Send;
}
