//! Container runtimes: the primitives the agent needs from whatever runs containers, in the
//! shape of the CRI (a sandbox per pod holding its network, containers started into it, each
//! start a new instance with its attempt number). What to start, restart or stop is decided
//! by the agent (`pod_actions`), not by the runtime, so both runtimes behave alike.
//!
//! `docker` runs real containers through the Docker Engine; `simulated` keeps containers as
//! state only (for scale tests, as kwok and kubemark do).

pub mod docker;
pub mod simulated;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::io::{AsyncRead, AsyncWrite};

/// A pod's sandbox: the container (or state) that holds its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub ip: String,
    pub created_at: Timestamp,
    /// Whether it still runs (a dead sandbox is replaced, and the pod's containers with it).
    pub running: bool,
    pub attempt: u32,
}

/// What one container instance is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Created but never started.
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`.
        reason: String,
        message: Option<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

/// One instance of a pod's container: every (re)start makes a new one with the next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInstance {
    /// `<runtime>://<id>`, as the API's `containerID`.
    pub id: String,
    /// The container's name in the pod spec.
    pub name: String,
    pub attempt: u32,
    /// The attempt of the sandbox it was started in (a new sandbox starts everything anew).
    pub sandbox_attempt: u32,
    pub image: String,
    pub image_id: String,
    /// The hash of the spec it was started from (a changed spec restarts it).
    pub spec_hash: String,
    pub state: InstanceState,
}

/// A bind mount of a prepared volume into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// Everything a container start needs beyond the pod: resolved environment, mounts, and
/// the command after `$(VAR)` expansion.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub attempt: u32,
    pub spec_hash: String,
    pub env: Vec<(String, String)>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub mounts: Vec<Mount>,
    /// The image as the runtime resolved it (`ensure_image`).
    pub image_ref: String,
    /// The instance whose process namespace this one joins (an ephemeral container's target).
    pub pid_target: Option<String>,
}

/// Credentials for a registry, from the pod's `imagePullSecrets`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub server: String,
}

/// Why an image is not there.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `imagePullPolicy: Never` and the image is not present (`ErrImageNeverPull`).
    #[error("Container image \"{0}\" is not present with pull policy of Never")]
    NeverPull(String),
    /// The pull failed (`ErrImagePull`).
    #[error("{0}")]
    Pull(String),
}

/// The image a container runs, once present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// What the runtime starts containers from.
    pub reference: String,
    /// `imageID` for the status.
    pub image_id: String,
    /// Whether it was pulled just now (for the Pulling/Pulled events).
    pub pulled: bool,
}

/// Options of a log read, as `PodLogOptions` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Resizes a terminal to (width, height).
pub type Resize =
    Box<dyn Fn(u16, u16) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// A started exec (or attach): its output streams, its input, and how it ended.
pub struct ExecSession {
    /// Stdout (with a tty, everything the terminal prints).
    pub stdout: ByteStream,
    /// Stderr, when not a tty.
    pub stderr: Option<ByteStream>,
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Resolves to the exit code once the process ended.
    pub exit: Pin<Box<dyn std::future::Future<Output = anyhow::Result<Option<i32>>> + Send>>,
    /// Resizes the terminal (`tty` only).
    pub resize: Option<Resize>,
}

/// What a running container uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU in billionths of a core, averaged over the last second or so.
    pub cpu_nano_cores: u64,
    /// CPU time used since the container started.
    pub cpu_core_nano_seconds: u64,
    /// Memory in use that cannot be reclaimed at once (usage less inactive file cache).
    pub memory_working_set_bytes: u64,
}

/// A connection into a pod's network namespace (port-forward).
pub trait PodConnection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PodConnection for T {}

/// What runs a node's pods.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// `<name>://<version>`, for the Node's nodeInfo.
    fn version(&self) -> String;

    /// Makes the image present as the pull policy says.
    fn ensure_image(
        &self,
        image: &str,
        policy: &str,
        auth: &[RegistryAuth],
    ) -> impl std::future::Future<Output = Result<ImageRef, ImageError>> + Send;

    /// The pod's newest sandbox, if any.
    fn sandbox(
        &self,
        uid: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<Sandbox>>> + Send;

    /// Creates and starts a new sandbox for the pod.
    fn create_sandbox(
        &self,
        pod: &Pod,
        attempt: u32,
    ) -> impl std::future::Future<Output = anyhow::Result<Sandbox>> + Send;

    /// Every container instance of the pod, running or not (sandboxes excluded).
    fn containers(
        &self,
        uid: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Vec<ContainerInstance>>> + Send;

    /// Creates and starts a container instance in the sandbox; returns its id.
    fn start_container(
        &self,
        sandbox: &Sandbox,
        launch: Launch<'_>,
    ) -> impl std::future::Future<Output = anyhow::Result<String>> + Send;

    /// Stops an instance: SIGTERM, then SIGKILL after `grace`.
    fn stop_container(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;

    /// Removes a stopped instance.
    fn remove_container(
        &self,
        id: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;

    /// Stops (with `grace`) and removes everything of the pod with `uid`, sandbox included.
    fn kill_pod(
        &self,
        uid: &str,
        grace: Duration,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;

    /// The uids of the pods the runtime holds anything of.
    fn pod_uids(&self) -> impl std::future::Future<Output = anyhow::Result<Vec<String>>> + Send;

    /// Pod uids whose containers changed on their own (a container exited), so their
    /// workers look again without waiting for the next resync.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<String>;

    /// The instance's log.
    fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> impl std::future::Future<Output = anyhow::Result<ByteStream>> + Send;

    /// Runs `command` in the instance (or attaches to its main process when `command` is
    /// empty).
    fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: bool,
        stdin: bool,
    ) -> impl std::future::Future<Output = anyhow::Result<ExecSession>> + Send;

    /// A memory-backed (tmpfs) volume for the pod's `emptyDir` `name`, made once and shared
    /// by its containers; returns what a [`Mount`] names as its source.
    fn memory_volume(
        &self,
        uid: &str,
        name: &str,
        size_limit: Option<u64>,
    ) -> impl std::future::Future<Output = anyhow::Result<String>> + Send;

    /// What the running instance uses now.
    fn usage(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<Usage>> + Send;

    /// Opens a TCP connection to `port` inside the sandbox's network namespace.
    fn connect(
        &self,
        sandbox: &Sandbox,
        port: u16,
    ) -> impl std::future::Future<Output = anyhow::Result<Box<dyn PodConnection>>> + Send;
}

/// Labels the runtimes put on what they create, so a restarted agent finds its pods again.
pub mod labels {
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const SANDBOX_ATTEMPT: &str = "io.kubernetes.sandbox.attempt";
    /// `podsandbox` or `container`.
    pub const KIND: &str = "io.kubernetes.docker.type";
    /// The node (agent) that owns it: several agents may share one engine.
    pub const NODE: &str = "io.nodeagent.node";
}

/// The labels of everything created for `pod` on `node`.
pub fn pod_labels(pod: &Pod, node: &str) -> HashMap<String, String> {
    let meta = &pod.metadata;
    HashMap::from([
        (labels::POD_UID.into(), meta.uid.clone().unwrap_or_default()),
        (
            labels::POD_NAME.into(),
            meta.name.clone().unwrap_or_default(),
        ),
        (
            labels::POD_NAMESPACE.into(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        (labels::NODE.into(), node.to_owned()),
    ])
}
