//! A real node for compat tests: the `nodeagent` binary on the local Docker Engine, with its
//! own node identity (`system:node:<name>`) and streaming server, as `make run` starts it.
//! What it runs is observed through the `docker` CLI, as a person at the machine would.
//!
//! Each node has a unique name, so tests sharing the engine never see each other's
//! containers; dropping the node stops the agent and removes whatever it left behind.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{TestCluster, nodeagent_binary};

/// A node agent on the Docker Engine.
pub struct DockerNode {
    pub name: String,
    pub streaming_port: u16,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    manifests: Option<PathBuf>,
    agent: Option<Child>,
}

/// Fails clearly when the engine or the images `make images` builds are missing.
pub fn require_docker() -> Result<()> {
    let ok = Command::new("docker")
        .args(["image", "inspect", "busybox:latest", "nodeagent-pause:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "these tests need a reachable Docker Engine with the images busybox:latest and \
             nodeagent-pause:1 (make images builds them; make test runs it)"
        );
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl DockerNode {
    /// Registers a node named `<prefix>-<random>` for `cluster` and starts its agent.
    pub fn start(cluster: &TestCluster, prefix: &str) -> Result<DockerNode> {
        Self::start_with_manifests(cluster, prefix, None)
    }

    /// Like [`DockerNode::start`], with static pod manifests read from `manifests`.
    pub fn start_with_manifests(
        cluster: &TestCluster,
        prefix: &str,
        manifests: Option<PathBuf>,
    ) -> Result<DockerNode> {
        require_docker()?;
        let name = format!(
            "{prefix}-{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .subsec_nanos()
                ^ std::process::id()
        );
        let dir = tempfile::tempdir()?;
        let pki = certs::Pki::load_or_create(&cluster.data_dir.path().join("pki"))?;
        let identity = pki.write_node_identity(dir.path(), &name, "127.0.0.1", &cluster.url)?;
        let mut node = DockerNode {
            name,
            streaming_port: free_port()?,
            dir,
            kubeconfig: identity.kubeconfig,
            manifests,
            agent: None,
        };
        node.start_agent()?;
        Ok(node)
    }

    fn start_agent(&mut self) -> Result<()> {
        let d = self.dir.path();
        let mut command = Command::new(nodeagent_binary());
        if let Some(m) = &self.manifests {
            command.arg("--pod-manifest-path").arg(m);
        }
        let child = command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--node-name", &self.name, "--runtime", "docker"])
            .args(["--address", "127.0.0.1"])
            .args(["--streaming-port", &self.streaming_port.to_string()])
            .arg("--tls-cert-file")
            .arg(d.join("kubelet.crt"))
            .arg("--tls-private-key-file")
            .arg(d.join("kubelet.key"))
            .arg("--client-ca-file")
            .arg(d.join("ca.crt"))
            .arg("--root-dir")
            .arg(d.join("root"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nodeagent (cargo build --bins first)")?;
        self.agent = Some(child);
        Ok(())
    }

    /// Kills the agent (SIGKILL), leaving its containers running.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again after [`DockerNode::kill_agent`].
    pub fn restart_agent(&mut self) -> Result<()> {
        self.kill_agent();
        self.start_agent()
    }

    /// `docker ps -a` of this node: (name, state) of every container, sandboxes included.
    pub fn containers(&self) -> Vec<(String, String)> {
        let out = Command::new("docker")
            .args(["ps", "-a", "--filter"])
            .arg(format!("label=io.nodeagent.node={}", self.name))
            .args(["--format", "{{.Names}} {{.State}}"])
            .output()
            .expect("running docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, s)| (n.to_owned(), s.to_owned()))
            .collect()
    }

    /// The running app containers (not sandboxes) of pods whose names start with `pod`.
    pub fn running_app_containers(&self, pod: &str) -> Vec<String> {
        self.containers()
            .into_iter()
            .filter(|(name, state)| {
                state == "running"
                    && !name.starts_with("k8s_POD_")
                    && name.split('_').nth(2).is_some_and(|p| p.starts_with(pod))
            })
            .map(|(name, _)| name)
            .collect()
    }
}

impl Drop for DockerNode {
    fn drop(&mut self) {
        self.kill_agent();
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=io.nodeagent.node={}", self.name))
            .output();
        if let Ok(out) = ids {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Memory-backed emptyDir volumes outlive a killed agent's pods.
        if let Ok(out) = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter"])
            .arg(format!("label=io.nodeagent.node={}", self.name))
            .output()
        {
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f"])
                    .args(&names)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
