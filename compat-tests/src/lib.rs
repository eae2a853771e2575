//! Drives a real `apiserver` binary the way users do: a fresh data dir, the stock kubectl
//! binaries (`/usr/lib/google-cloud-sdk/bin/kubectl.1.NN`), and kube-rs clients.
//!
//! The binary is found next to the test executable's target dir (`cargo build --bins` first,
//! as `make test` does) or at `$APISERVER_BIN`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub mod docker_node;
pub mod node_double;
pub mod node_heartbeat_double;
pub mod pod_status_double;

/// Every kubectl on the machine; the compat tests run with each.
pub const KUBECTL_VERSIONS: [&str; 7] = ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"];

/// A running apiserver with its own data dir.
pub struct TestCluster {
    child: Child,
    pub data_dir: tempfile::TempDir,
    pub url: String,
    pub kubeconfig: PathBuf,
}

/// Path of the `apiserver` binary under test.
pub fn apiserver_binary() -> PathBuf {
    if let Ok(p) = std::env::var("APISERVER_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/apiserver
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("apiserver")
}

/// Path of the `nodeagent` binary under test (beside the `apiserver` one, or
/// `$NODEAGENT_BIN`).
pub fn nodeagent_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NODEAGENT_BIN") {
        return PathBuf::from(p);
    }
    apiserver_binary().with_file_name("nodeagent")
}

/// Path of a stock kubectl binary.
pub fn kubectl_binary(version: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"))
}

impl TestCluster {
    /// Starts the API server alone (as kube-apiserver is: no controllers, no scheduler) on a
    /// free loopback port with fresh certificates.
    pub fn start() -> Result<TestCluster> {
        Self::start_with(&[])
    }

    /// Starts the server with its embedded controller manager and scheduler, as `make run`.
    pub fn start_with_controllers() -> Result<TestCluster> {
        Self::start_with(&["--embedded-controllers=true", "--embedded-scheduler=true"])
    }

    /// Starts a server with extra flags.
    pub fn start_with(extra: &[&str]) -> Result<TestCluster> {
        let data_dir = tempfile::tempdir()?;
        Self::start_in(data_dir, extra)
    }

    /// Starts a server on an existing data dir (for restart tests).
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> Result<TestCluster> {
        let binary = apiserver_binary();
        if !binary.exists() {
            bail!(
                "{} is missing; run `cargo build --bins` first (make test does)",
                binary.display()
            );
        }
        let mut child = Command::new(&binary)
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--secure-port", "0", "--bind-address", "127.0.0.1"])
            .args(if extra.iter().any(|a| a.starts_with("--embedded-")) {
                &[][..]
            } else {
                &["--embedded-controllers=false", "--embedded-scheduler=false"][..]
            })
            .args(extra)
            // Quiet servers unless the person running the tests asks for logs.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("apiserver listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let status = child.wait()?;
                    bail!("apiserver exited before serving ({status})");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let kubeconfig = data_dir.path().join("admin.kubeconfig");
        Ok(TestCluster {
            child,
            data_dir,
            url,
            kubeconfig,
        })
    }

    /// Stops the server (SIGKILL) and returns its data dir for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("placeholder dir");
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Runs a kubectl of `version` against this cluster with a fresh discovery cache.
    pub fn kubectl(&self, version: &str, args: &[&str]) -> Kubectl {
        self.kubectl_with_env(version, args, &[])
    }

    pub fn kubectl_with_env(&self, version: &str, args: &[&str], env: &[(&str, &str)]) -> Kubectl {
        let cache = self
            .data_dir
            .path()
            .join(format!("kubectl-cache-{version}"));
        let output = Command::new(kubectl_binary(version))
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl");
        Kubectl {
            args: args.iter().map(|s| s.to_string()).collect(),
            output,
        }
    }

    /// Starts kubectl without waiting for it (for `get -w`).
    pub fn kubectl_spawn(&self, version: &str, args: &[&str]) -> Child {
        let cache = self
            .data_dir
            .path()
            .join(format!("kubectl-cache-{version}"));
        Command::new(kubectl_binary(version))
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl")
    }

    /// `kubectl apply -f` of a manifest given as text, asserting success.
    #[track_caller]
    pub fn apply(&self, version: &str, manifest: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("manifest.yaml");
        std::fs::write(&file, manifest).expect("writing the manifest");
        let path = file.to_str().expect("utf-8 temp path");
        self.kubectl(version, &["apply", "-f", path]).ok()
    }

    /// Starts a server with its controllers and scheduler (and `extra` flags), registers
    /// `nodes` kept alive by a heartbeat double, and starts bound pods with a pod status
    /// double, in place of node agents.
    pub async fn start_with_node_doubles(
        nodes: &[node_heartbeat_double::TestNode],
        extra: &[&str],
    ) -> Result<(
        TestCluster,
        node_heartbeat_double::NodeHeartbeatDouble,
        pod_status_double::PodStatusDouble,
    )> {
        let mut flags = vec!["--embedded-controllers=true", "--embedded-scheduler=true"];
        flags.extend_from_slice(extra);
        let cluster = TestCluster::start_with(&flags)?;
        let client = cluster.client().await?;
        let heartbeats =
            node_heartbeat_double::NodeHeartbeatDouble::register(client.clone(), nodes).await?;
        let kubelet = pod_status_double::PodStatusDouble::start(client);
        Ok((cluster, heartbeats, kubelet))
    }

    /// A kube-rs client authenticated as the admin.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished kubectl run.
pub struct Kubectl {
    pub args: Vec<String>,
    pub output: Output,
}

impl Kubectl {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert!(
            self.output.status.success(),
            "kubectl {:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.args,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn fails(&self) -> String {
        assert!(
            !self.output.status.success(),
            "kubectl {:?} succeeded but should have failed:\n{}",
            self.args,
            self.stdout()
        );
        self.stderr()
    }
}

/// Waits until `f` returns `Some`, checking every 50 ms, for at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Splits table output into rows of whitespace-separated cells (header included).
pub fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}
