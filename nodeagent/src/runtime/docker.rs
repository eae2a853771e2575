//! The Docker runtime: pods as real containers of the local Docker Engine, through bollard.
//!
//! A pod is a sandbox container (the pause image) that holds the pod's network, IPC and UTS
//! namespaces on Docker's default bridge, and one container per instance of each of the
//! pod's containers, joined to the sandbox (`container:<sandbox>`). Everything carries the
//! pod's labels and this node's name ([`labels`]), so an agent that restarts finds exactly
//! its own containers again, and several agents can share one engine.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, EventsOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, ResizeContainerTTYOptions,
    StartContainerOptions, StatsOptions, StopContainerOptions,
};
use futures::{Stream, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::{
    ByteStream, ContainerInstance, ContainerRuntime, ExecSession, ImageError, ImageRef,
    InstanceState, Launch, LogOptions, PodConnection, RegistryAuth, Resize, Sandbox, Usage, labels,
};
use scheduler::resources::milli;

const SANDBOX: &str = "podsandbox";
const CONTAINER: &str = "container";
const PREFIX: &str = "docker://";

/// The Docker Engine, as one node's runtime.
pub struct DockerRuntime {
    docker: Docker,
    node: String,
    pause_image: String,
    version: String,
    changes: broadcast::Sender<String>,
}

fn bare(id: &str) -> &str {
    id.strip_prefix(PREFIX).unwrap_or(id)
}

fn time_of(text: Option<&str>) -> Option<Timestamp> {
    let t: Timestamp = text?.parse().ok()?;
    // Docker's "never" is year 1.
    (t.as_second() > 0).then_some(t)
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `name[:tag]` or `name@digest` split as the create-image call wants it.
fn image_parts(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_owned(), String::new());
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_owned(),
            image[last_slash + i + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and agrees on an
    /// API version with it.
    pub async fn connect(node: &str, pause_image: &str) -> Result<DockerRuntime> {
        let docker = Docker::connect_with_local_defaults()
            .context("connecting to the Docker Engine")?
            .negotiate_version()
            .await
            .context(
                "reaching the Docker Engine (is it running, and may this user use its socket?)",
            )?;
        let version = docker
            .version()
            .await
            .context("asking the Docker Engine for its version")?;
        let (changes, _) = broadcast::channel(1024);
        let runtime = DockerRuntime {
            docker,
            node: node.to_owned(),
            pause_image: pause_image.to_owned(),
            version: format!("docker://{}", version.version.unwrap_or_default()),
            changes,
        };
        runtime
            .docker
            .inspect_image(pause_image)
            .await
            .with_context(|| {
                format!("the sandbox image {pause_image} is not present (make images builds it)")
            })?;
        runtime.watch_events();
        Ok(runtime)
    }

    /// Creates a container named `name` (not started).
    async fn create_named(
        &self,
        name: String,
        body: ContainerCreateBody,
    ) -> Result<bollard::models::ContainerCreateResponse, bollard::errors::Error> {
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..CreateContainerOptions::default()
                }),
                body,
            )
            .await
    }

    /// Forwards container exits and starts of this node's pods to `changes`.
    fn watch_events(&self) {
        let docker = self.docker.clone();
        let changes = self.changes.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            loop {
                let filters = HashMap::from([
                    ("type".to_owned(), vec!["container".to_owned()]),
                    ("label".to_owned(), vec![format!("{}={node}", labels::NODE)]),
                    (
                        "event".to_owned(),
                        vec!["die".to_owned(), "start".to_owned(), "oom".to_owned()],
                    ),
                ]);
                let mut events = docker.events(Some(EventsOptions {
                    filters: Some(filters),
                    ..EventsOptions::default()
                }));
                while let Some(event) = events.next().await {
                    match event {
                        Ok(e) => {
                            if let Some(uid) = e
                                .actor
                                .and_then(|a| a.attributes)
                                .and_then(|mut a| a.remove(labels::POD_UID))
                            {
                                let _ = changes.send(uid);
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "Docker event stream failed; reconnecting");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn label_filter(&self, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut wanted = vec![format!("{}={}", labels::NODE, self.node)];
        wanted.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        HashMap::from([("label".to_owned(), wanted)])
    }

    async fn list(&self, extra: &[(&str, &str)]) -> Result<Vec<String>> {
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filter(extra)),
                ..ListContainersOptions::default()
            }))
            .await?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(bare(id), None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn image_id(&self, image: &str) -> Option<String> {
        let inspect = self.docker.inspect_image(image).await.ok()?;
        Some(
            match inspect.repo_digests.and_then(|d| d.into_iter().next()) {
                Some(digest) => format!("docker-pullable://{digest}"),
                None => format!("docker://{}", inspect.id.unwrap_or_default()),
            },
        )
    }

    async fn pull(&self, image: &str, auth: &[RegistryAuth]) -> Result<(), ImageError> {
        let (from_image, tag) = image_parts(image);
        let registry = registry_of(image);
        let credentials = auth
            .iter()
            .find(|a| {
                a.server == registry
                    || a.server
                        .trim_start_matches("https://")
                        .trim_end_matches('/')
                        == registry
            })
            .map(|a| DockerCredentials {
                username: Some(a.username.clone()),
                password: Some(a.password.clone()),
                serveraddress: Some(a.server.clone()),
                ..DockerCredentials::default()
            });
        let mut progress = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from_image),
                tag: (!tag.is_empty()).then_some(tag),
                ..CreateImageOptions::default()
            }),
            None,
            credentials,
        );
        while let Some(step) = progress.next().await {
            match step {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(ImageError::Pull(err));
                    }
                }
                Err(e) => return Err(ImageError::Pull(pull_message(image, &e))),
            }
        }
        Ok(())
    }

    fn instance_of(&self, c: ContainerInspectResponse) -> Option<ContainerInstance> {
        let config = c.config.as_ref()?;
        let labels_of = config.labels.as_ref()?;
        if labels_of.get(labels::KIND).map(String::as_str) != Some(CONTAINER) {
            return None;
        }
        let state = c.state.as_ref();
        let running = state.and_then(|s| s.running).unwrap_or(false);
        let started = time_of(state.and_then(|s| s.started_at.as_deref()));
        let finished = time_of(state.and_then(|s| s.finished_at.as_deref()));
        let instance_state = if running {
            InstanceState::Running {
                started_at: started.unwrap_or_else(Timestamp::now),
            }
        } else if let Some(finished_at) = finished.or_else(|| {
            // A container that could not start has an error and no times.
            state
                .and_then(|s| s.error.as_ref())
                .filter(|e| !e.is_empty())
                .map(|_| time_of(c.created.as_deref()).unwrap_or_else(Timestamp::now))
        }) {
            let exit_code = state.and_then(|s| s.exit_code).unwrap_or(0) as i32;
            let error = state
                .and_then(|s| s.error.clone())
                .filter(|e| !e.is_empty());
            let oom = state.and_then(|s| s.oom_killed).unwrap_or(false);
            let reason = if oom {
                "OOMKilled"
            } else if error.is_some() {
                "ContainerCannotRun"
            } else if exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            InstanceState::Exited {
                exit_code,
                reason: reason.into(),
                message: error,
                started_at: started.unwrap_or(finished_at),
                finished_at,
            }
        } else {
            InstanceState::Created
        };
        Some(ContainerInstance {
            id: format!("{PREFIX}{}", c.id.clone().unwrap_or_default()),
            name: labels_of.get(labels::CONTAINER_NAME).cloned()?,
            attempt: labels_of
                .get(labels::RESTART_COUNT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            sandbox_attempt: labels_of
                .get(labels::SANDBOX_ATTEMPT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            image: config.image.clone().unwrap_or_default(),
            image_id: labels_of.get(IMAGE_ID_LABEL).cloned().unwrap_or_default(),
            spec_hash: labels_of
                .get(labels::CONTAINER_HASH)
                .cloned()
                .unwrap_or_default(),
            state: instance_state,
        })
    }
}

/// The image ID a container was started from, as its status reports it.
const IMAGE_ID_LABEL: &str = "io.nodeagent.image-id";

fn pull_message(image: &str, e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            format!("failed to pull image \"{image}\": {message}")
        }
        other => format!("failed to pull image \"{image}\": {other}"),
    }
}

/// Docker's CPU shares for a CPU request, as the kubelet converts them (1 CPU = 1024).
fn cpu_shares(request: Option<&Quantity>) -> Option<i64> {
    Some((milli(request?) * 1024 / 1000).max(2))
}

fn ip_of(c: &ContainerInspectResponse) -> String {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| {
            n.values()
                .filter_map(|e| e.ip_address.clone())
                .find(|ip| !ip.is_empty())
        })
        .unwrap_or_default()
}

fn output_stream(
    output: impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
    keep: fn(&LogOutput) -> bool,
) -> ByteStream {
    Box::pin(
        output
            .try_filter(move |o| futures::future::ready(keep(o)))
            .map_ok(LogOutput::into_bytes)
            .map_err(std::io::Error::other),
    )
}

impl ContainerRuntime for DockerRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    async fn ensure_image(
        &self,
        image: &str,
        policy: &str,
        auth: &[RegistryAuth],
    ) -> Result<ImageRef, ImageError> {
        let present = self.image_id(image).await;
        let pull = match policy {
            "Always" => true,
            "Never" => {
                return present
                    .map(|image_id| ImageRef {
                        reference: image.to_owned(),
                        image_id,
                        pulled: false,
                    })
                    .ok_or_else(|| ImageError::NeverPull(image.to_owned()));
            }
            _ => present.is_none(),
        };
        if pull {
            self.pull(image, auth).await?;
        }
        let image_id = match present.filter(|_| !pull) {
            Some(id) => id,
            None => self.image_id(image).await.ok_or_else(|| {
                ImageError::Pull(format!("image {image} vanished after its pull"))
            })?,
        };
        Ok(ImageRef {
            reference: image.to_owned(),
            image_id,
            pulled: pull,
        })
    }

    async fn sandbox(&self, uid: &str) -> Result<Option<Sandbox>> {
        let mut newest: Option<Sandbox> = None;
        for id in self
            .list(&[(labels::POD_UID, uid), (labels::KIND, SANDBOX)])
            .await?
        {
            let Some(c) = self.inspect(&id).await? else {
                continue;
            };
            let attempt = c
                .config
                .as_ref()
                .and_then(|cfg| cfg.labels.as_ref())
                .and_then(|l| l.get(labels::SANDBOX_ATTEMPT))
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let sandbox = Sandbox {
                id,
                ip: ip_of(&c),
                created_at: time_of(c.created.as_deref()).unwrap_or_else(Timestamp::now),
                running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
                attempt,
            };
            if newest.as_ref().is_none_or(|n| n.attempt <= attempt) {
                newest = Some(sandbox);
            }
        }
        Ok(newest)
    }

    async fn create_sandbox(&self, pod: &Pod, attempt: u32) -> Result<Sandbox> {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        let mut labels_of = super::pod_labels(pod, &self.node);
        labels_of.insert(labels::KIND.into(), SANDBOX.into());
        labels_of.insert(labels::SANDBOX_ATTEMPT.into(), attempt.to_string());
        let host_network = spec.host_network.unwrap_or(false);
        let hostname = spec
            .hostname
            .clone()
            .or_else(|| meta.name.clone())
            .unwrap_or_default()
            .chars()
            .take(63)
            .collect::<String>();
        let name = format!(
            "k8s_POD_{}_{}_{uid}_{attempt}",
            meta.name.as_deref().unwrap_or(""),
            meta.namespace.as_deref().unwrap_or("")
        );
        let body = ContainerCreateBody {
            image: Some(self.pause_image.clone()),
            hostname: (!host_network).then_some(hostname),
            labels: Some(labels_of),
            host_config: Some(HostConfig {
                network_mode: Some(if host_network { "host" } else { "bridge" }.into()),
                ipc_mode: Some(
                    if spec.host_ipc.unwrap_or(false) {
                        "host"
                    } else {
                        "shareable"
                    }
                    .into(),
                ),
                pid_mode: spec.host_pid.unwrap_or(false).then(|| "host".into()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let created = self
            .create_named(name, body)
            .await
            .context("creating the pod sandbox")?;
        self.docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .context("starting the pod sandbox")?;
        let c = self
            .inspect(&created.id)
            .await?
            .ok_or_else(|| anyhow!("the new sandbox vanished"))?;
        let ip = if host_network {
            String::new()
        } else {
            ip_of(&c)
        };
        Ok(Sandbox {
            id: created.id,
            ip,
            created_at: time_of(c.created.as_deref()).unwrap_or_else(Timestamp::now),
            running: true,
            attempt,
        })
    }

    async fn containers(&self, uid: &str) -> Result<Vec<ContainerInstance>> {
        let mut out = Vec::new();
        for id in self
            .list(&[(labels::POD_UID, uid), (labels::KIND, CONTAINER)])
            .await?
        {
            if let Some(instance) = self.inspect(&id).await?.and_then(|c| self.instance_of(c)) {
                out.push(instance);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.attempt.cmp(&b.attempt)));
        Ok(out)
    }

    async fn start_container(&self, sandbox: &Sandbox, launch: Launch<'_>) -> Result<String> {
        let pod = launch.pod;
        let c = launch.container;
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut labels_of = super::pod_labels(pod, &self.node);
        labels_of.insert(labels::KIND.into(), CONTAINER.into());
        labels_of.insert(labels::CONTAINER_NAME.into(), c.name.clone());
        labels_of.insert(labels::RESTART_COUNT.into(), launch.attempt.to_string());
        labels_of.insert(labels::CONTAINER_HASH.into(), launch.spec_hash.clone());
        labels_of.insert(labels::SANDBOX_ATTEMPT.into(), sandbox.attempt.to_string());
        labels_of.insert(
            IMAGE_ID_LABEL.into(),
            self.image_id(&launch.image_ref).await.unwrap_or_default(),
        );
        let security = c.security_context.clone().unwrap_or_default();
        let pod_security = spec.security_context.clone().unwrap_or_default();
        let user = security.run_as_user.or(pod_security.run_as_user).map(|u| {
            match security.run_as_group.or(pod_security.run_as_group) {
                Some(g) => format!("{u}:{g}"),
                None => u.to_string(),
            }
        });
        let resources = c.resources.clone().unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let memory = limits.get("memory").map(|q| milli(q) / 1000);
        let nano_cpus = limits.get("cpu").map(|q| milli(q) * 1_000_000);
        let capabilities = security.capabilities.clone().unwrap_or_default();
        let sandbox_ref = format!("container:{}", sandbox.id);
        let share_pid = spec.share_process_namespace.unwrap_or(false);
        let host_network = spec.host_network.unwrap_or(false);
        let body = ContainerCreateBody {
            image: Some(launch.image_ref.clone()),
            entrypoint: launch.command.clone(),
            cmd: launch.args.clone(),
            env: Some(launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: c.working_dir.clone(),
            user,
            tty: c.tty,
            open_stdin: c.stdin,
            stdin_once: c.stdin_once,
            attach_stdin: c.stdin,
            labels: Some(labels_of),
            host_config: Some(HostConfig {
                network_mode: Some(if host_network {
                    "host".into()
                } else {
                    sandbox_ref.clone()
                }),
                ipc_mode: Some(sandbox_ref.clone()),
                pid_mode: if spec.host_pid.unwrap_or(false) {
                    Some("host".into())
                } else if let Some(target) = &launch.pid_target {
                    Some(format!("container:{}", bare(target)))
                } else if share_pid {
                    Some(sandbox_ref.clone())
                } else {
                    None
                },
                binds: Some(
                    launch
                        .mounts
                        .iter()
                        .map(|m| {
                            format!(
                                "{}:{}:{}",
                                m.host_path,
                                m.container_path,
                                if m.read_only { "ro" } else { "rw" }
                            )
                        })
                        .collect(),
                ),
                memory,
                nano_cpus,
                cpu_shares: cpu_shares(requests.get("cpu")),
                privileged: security.privileged,
                readonly_rootfs: security.read_only_root_filesystem,
                cap_add: capabilities.add,
                cap_drop: capabilities.drop,
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!(
            "k8s_{}_{}_{}_{}_{}",
            c.name,
            meta.name.as_deref().unwrap_or(""),
            meta.namespace.as_deref().unwrap_or(""),
            meta.uid.as_deref().unwrap_or(""),
            launch.attempt
        );
        let created = self
            .create_named(name, body)
            .await
            .with_context(|| format!("creating container {}", c.name))?;
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // The instance stays, exited with Docker's error, so the status can tell why.
            debug!(container = %c.name, error = %e, "container did not start");
        }
        Ok(format!("{PREFIX}{}", created.id))
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        match self
            .docker
            .stop_container(
                bare(id),
                Some(StopContainerOptions {
                    t: Some(grace.as_secs().min(i32::MAX as u64) as i32),
                    ..StopContainerOptions::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                bare(id),
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..RemoveContainerOptions::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<()> {
        let containers = self
            .list(&[(labels::POD_UID, uid), (labels::KIND, CONTAINER)])
            .await?;
        // The containers get their grace period together, then the sandbox goes.
        let stops = containers.iter().map(|id| self.stop_container(id, grace));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        for id in self.list(&[(labels::POD_UID, uid)]).await? {
            self.remove_container(&id).await?;
        }
        // The pod's memory volumes go with it.
        let volumes = self
            .docker
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(self.label_filter(&[(labels::POD_UID, uid)])),
            }))
            .await?;
        for v in volumes.volumes.into_iter().flatten() {
            let removed = self
                .docker
                .remove_volume(
                    &v.name,
                    Some(bollard::query_parameters::RemoveVolumeOptions { force: true }),
                )
                .await;
            if let Err(e) = removed
                && !not_found(&e)
            {
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn pod_uids(&self) -> Result<Vec<String>> {
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filter(&[])),
                ..ListContainersOptions::default()
            }))
            .await?;
        let mut uids: Vec<String> = found
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(labels::POD_UID)))
            .collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<ByteStream> {
        let stream = self.docker.logs(
            bare(id),
            Some(LogsOptions {
                follow: options.follow,
                stdout: true,
                stderr: true,
                timestamps: options.timestamps,
                tail: options
                    .tail_lines
                    .map_or_else(|| "all".to_owned(), |n| n.to_string()),
                since: options
                    .since
                    .map_or(0, |t| t.as_second().clamp(0, i32::MAX as i64) as i32),
                ..LogsOptions::default()
            }),
        );
        Ok(output_stream(stream, |_| true))
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession> {
        let id = bare(id).to_owned();
        if command.is_empty() {
            // Attach to the container's main process.
            let attached = self
                .docker
                .attach_container(
                    &id,
                    Some(AttachContainerOptions {
                        stdin,
                        stdout: true,
                        stderr: true,
                        stream: true,
                        logs: false,
                        ..AttachContainerOptions::default()
                    }),
                )
                .await?;
            let docker = self.docker.clone();
            let wait_id = id.clone();
            let (stdout, stderr) = split_output(attached.output, tty);
            let resize_docker = self.docker.clone();
            let resize_id = id.clone();
            return Ok(ExecSession {
                stdout,
                stderr,
                stdin: stdin.then_some(attached.input),
                exit: Box::pin(async move {
                    let mut wait = docker.wait_container(
                        &wait_id,
                        None::<bollard::query_parameters::WaitContainerOptions>,
                    );
                    match wait.next().await {
                        Some(Ok(w)) => Ok(Some(w.status_code as i32)),
                        Some(Err(bollard::errors::Error::DockerContainerWaitError {
                            code,
                            ..
                        })) => Ok(Some(code as i32)),
                        _ => Ok(None),
                    }
                }),
                resize: tty.then(|| {
                    resize_fn(move |w, h| {
                        let docker = resize_docker.clone();
                        let id = resize_id.clone();
                        Box::pin(async move {
                            let _ = docker
                                .resize_container_tty(
                                    &id,
                                    ResizeContainerTTYOptions {
                                        w: w.into(),
                                        h: h.into(),
                                    },
                                )
                                .await;
                        })
                    })
                }),
            });
        }
        let created = self
            .docker
            .create_exec(
                &id,
                CreateExecOptions {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    cmd: Some(command.to_vec()),
                    ..CreateExecOptions::default()
                },
            )
            .await?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(anyhow!("the exec started detached"));
        };
        let (stdout, stderr) = split_output(output, tty);
        let docker = self.docker.clone();
        let exec_id = created.id.clone();
        let resize_docker = self.docker.clone();
        let resize_id = created.id.clone();
        Ok(ExecSession {
            stdout,
            stderr,
            stdin: stdin.then_some(input),
            exit: Box::pin(async move {
                // The output ends when the process does; its code is read until Docker has it.
                for _ in 0..100 {
                    let inspect = docker.inspect_exec(&exec_id).await?;
                    if inspect.running != Some(true) {
                        return Ok(inspect.exit_code.map(|c| c as i32));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None)
            }),
            resize: tty.then(|| {
                resize_fn(move |w, h| {
                    let docker = resize_docker.clone();
                    let id = resize_id.clone();
                    Box::pin(async move {
                        let _ = docker
                            .resize_exec(
                                &id,
                                ResizeExecOptions {
                                    height: h,
                                    width: w,
                                },
                            )
                            .await;
                    })
                })
            }),
        })
    }

    async fn memory_volume(
        &self,
        uid: &str,
        name: &str,
        size_limit: Option<u64>,
    ) -> Result<String> {
        let volume = format!("k8s_{uid}_{name}");
        let mut options = HashMap::from([
            ("type".to_owned(), "tmpfs".to_owned()),
            ("device".to_owned(), "tmpfs".to_owned()),
        ]);
        if let Some(bytes) = size_limit {
            options.insert("o".into(), format!("size={bytes}"));
        }
        let mut labels_of = HashMap::from([
            (labels::POD_UID.to_owned(), uid.to_owned()),
            (labels::NODE.to_owned(), self.node.clone()),
        ]);
        labels_of.insert(labels::KIND.into(), "volume".into());
        // Creating a volume that exists with the same options returns it.
        self.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(volume.clone()),
                driver: Some("local".into()),
                driver_opts: Some(options),
                labels: Some(labels_of),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the memory volume {volume}"))?;
        Ok(volume)
    }

    async fn usage(&self, id: &str) -> Result<Usage> {
        // Not one-shot: Docker samples twice, a second apart, so the CPU rate comes with it.
        let mut stats = self.docker.stats(
            bare(id),
            Some(StatsOptions {
                stream: false,
                one_shot: false,
            }),
        );
        let s = stats
            .next()
            .await
            .ok_or_else(|| anyhow!("no stats for {id}"))??;
        let total = |c: &Option<bollard::models::ContainerCpuStats>| {
            c.as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let system = |c: &Option<bollard::models::ContainerCpuStats>| {
            c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0)
        };
        let cpus = s
            .cpu_stats
            .as_ref()
            .and_then(|c| c.online_cpus)
            .unwrap_or(1)
            .max(1) as f64;
        let cpu_delta = total(&s.cpu_stats).saturating_sub(total(&s.precpu_stats)) as f64;
        let system_delta = system(&s.cpu_stats).saturating_sub(system(&s.precpu_stats)) as f64;
        let cpu_nano_cores = if system_delta > 0.0 {
            (cpu_delta / system_delta * cpus * 1e9) as u64
        } else {
            0
        };
        let memory = s.memory_stats.as_ref();
        let usage = memory.and_then(|m| m.usage).unwrap_or(0);
        let inactive = memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|st| {
                st.get("inactive_file")
                    .or_else(|| st.get("total_inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        Ok(Usage {
            cpu_nano_cores,
            cpu_core_nano_seconds: total(&s.cpu_stats),
            memory_working_set_bytes: usage.saturating_sub(inactive),
        })
    }

    async fn connect(&self, sandbox: &Sandbox, port: u16) -> Result<Box<dyn PodConnection>> {
        // The sandbox sits on Docker's bridge, which the host routes to: its address is
        // inside the pod's network namespace. A host-network pod listens on the host.
        let ip = if sandbox.ip.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            sandbox.ip.clone()
        };
        let stream = tokio::net::TcpStream::connect((ip.as_str(), port))
            .await
            .with_context(|| format!("connecting to {ip}:{port} in the pod"))?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

fn resize_fn(
    f: impl Fn(u16, u16) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    + Send
    + Sync
    + 'static,
) -> Resize {
    Box::new(f)
}

/// Docker's multiplexed output, split into stdout and stderr (one stream with a tty).
fn split_output(
    output: std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    tty: bool,
) -> (ByteStream, Option<ByteStream>) {
    if tty {
        return (output_stream(output, |_| true), None);
    }
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    let (err_tx, err_rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    tokio::spawn(async move {
        let mut output = output;
        while let Some(item) = output.next().await {
            let sent = match item {
                Ok(LogOutput::StdErr { message }) => err_tx.send(Ok(message)).await,
                Ok(other) => out_tx.send(Ok(other.into_bytes())).await,
                Err(e) => out_tx.send(Err(std::io::Error::other(e))).await,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    (
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx)),
        Some(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            err_rx,
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(image_parts("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            image_parts("127.0.0.1:5000/tools/busybox:1.36"),
            ("127.0.0.1:5000/tools/busybox".into(), "1.36".into())
        );
        assert_eq!(
            image_parts("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox".into(), "latest".into())
        );
        assert_eq!(registry_of("127.0.0.1:5000/busybox"), "127.0.0.1:5000");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("busybox"), "docker.io");
    }
}
