//! The controller manager and the scheduler as components of this binary: embedded in the
//! server (through in-process clients) or standalone against a server
//! (`apiserver controller-manager --kubeconfig F`, `apiserver scheduler --kubeconfig F`).
//! Either way they campaign for their Lease in `kube-system`, so several copies are safe;
//! an embedded one that loses its lease campaigns again, a standalone one exits.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use controllers::leader_election::{LeaseLock, LeaseTiming};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tracing::warn;

/// A component run on its own.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Component {
    /// Run the controller manager against a server.
    ControllerManager {
        /// Kubeconfig of the server and of the controller manager's identity.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The cluster CA published as `kube-root-ca.crt`; the kubeconfig's CA when not given.
        #[arg(long)]
        root_ca_file: Option<PathBuf>,
        #[command(flatten)]
        node_monitor: NodeMonitorFlags,
    },
    /// Run the scheduler against a server.
    Scheduler {
        /// Kubeconfig of the server and of the scheduler's identity.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
}

/// How the node lifecycle controller judges node health (kube-controller-manager's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeMonitorFlags {
    /// How long a node may go without a heartbeat before it is marked Unknown.
    #[arg(long, default_value = "50s", value_parser = crate::config::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long a new node has to post its first status.
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    pub node_startup_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub node_monitor_period: Duration,
}

impl NodeMonitorFlags {
    fn monitor(&self) -> controllers::node_lifecycle::NodeMonitor {
        controllers::node_lifecycle::NodeMonitor {
            grace_period: self.node_monitor_grace_period,
            startup_grace_period: self.node_startup_grace_period,
            period: self.node_monitor_period,
        }
    }
}

/// A name unique to this process, for leases and events.
fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Runs an embedded component for as long as the server runs: whenever it stops (its lease
/// lost, a watch ended) it campaigns again.
async fn keep_running<F, Fut>(what: &str, run: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    loop {
        if let Err(e) = run().await {
            warn!(component = what, error = %e, "stopped; campaigning again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The embedded controller manager.
pub async fn run_controller_manager(
    client: kube::Client,
    root_ca: String,
    node_monitor: NodeMonitorFlags,
) {
    keep_running("controller manager", || {
        let options = controllers::Options {
            identity: identity(),
            root_ca: root_ca.clone(),
            lease: LeaseTiming::default(),
            node_monitor: node_monitor.monitor(),
        };
        controllers::run(client.clone(), options)
    })
    .await
}

async fn scheduler_while_leading(client: kube::Client) -> Result<()> {
    let identity = identity();
    let lock = LeaseLock {
        api: Api::<Lease>::namespaced(client.clone(), "kube-system"),
        name: scheduler::LEASE.into(),
        identity: identity.clone(),
        timing: LeaseTiming::default(),
    };
    lock.run_while_leading(scheduler::run(client, identity))
        .await
}

/// The embedded scheduler.
pub async fn run_scheduler(client: kube::Client) {
    keep_running("scheduler", || scheduler_while_leading(client.clone())).await
}

async fn client_from(kubeconfig: &PathBuf) -> Result<(kube::Client, kube::Config)> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok((kube::Client::try_from(config.clone())?, config))
}

/// Runs a component on its own until it fails or loses its lease.
pub async fn run_standalone(component: Component) -> Result<()> {
    match component {
        Component::ControllerManager {
            kubeconfig,
            root_ca_file,
            node_monitor,
        } => {
            let (client, config) = client_from(&kubeconfig).await?;
            let root_ca = match root_ca_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let ders = config.root_cert.unwrap_or_default();
                    ders.iter()
                        .map(|der| pem_certificate(der))
                        .collect::<Vec<_>>()
                        .join("")
                }
            };
            controllers::run(
                client,
                controllers::Options {
                    identity: identity(),
                    root_ca,
                    lease: LeaseTiming::default(),
                    node_monitor: node_monitor.monitor(),
                },
            )
            .await
        }
        Component::Scheduler { kubeconfig } => {
            let (client, _) = client_from(&kubeconfig).await?;
            scheduler_while_leading(client).await
        }
    }
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
