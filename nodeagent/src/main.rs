//! `nodeagent`: runs the node agent against an API server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use nodeagent::host::HostInfo;
use nodeagent::node_status::AgentIdentity;
use nodeagent::runtime::ContainerRuntime;
use nodeagent::runtime::simulated::SimulatedRuntime;
use nodeagent::{heartbeat, pod_sync};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// Containers as real Docker containers (not built yet).
    Docker,
    /// Containers that exist only as state in this process.
    Simulated,
}

#[derive(Debug, Parser)]
#[command(about = "The node agent: registers a Node and runs the pods bound to it.")]
struct Flags {
    /// Kubeconfig of the API server and of this node's identity.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The Node's name; the host name when not given.
    #[arg(long)]
    node_name: Option<String>,
    #[arg(long, value_enum, default_value = "docker")]
    runtime: Runtime,
    /// The address reported as the node's InternalIP.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// The port of the node's streaming server, as reported in the Node.
    #[arg(long, default_value_t = 10250)]
    streaming_port: u16,
    /// The first three octets of the simulated runtime's pod addresses.
    #[arg(long, default_value = "10.88.0")]
    simulated_pod_prefix: String,
}

async fn client_from(path: &PathBuf) -> Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let flags = Flags::parse();
    let node_name = match &flags.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .context("reading /etc/hostname (or pass --node-name)")?,
    };
    let runtime = match flags.runtime {
        Runtime::Simulated => Arc::new(SimulatedRuntime::new(&flags.simulated_pod_prefix)),
        Runtime::Docker => bail!(
            "the Docker runtime is not built yet; run with --runtime simulated (its pods only exist as state)"
        ),
    };
    let client = client_from(&flags.kubeconfig).await?;
    let agent = AgentIdentity {
        node_name: node_name.clone(),
        runtime_version: runtime.version(),
        streaming_port: flags.streaming_port,
    };
    let host = HostInfo::read(flags.address);
    let heartbeats = heartbeat::run(client.clone(), agent, host);
    let pods = pod_sync::run(client, runtime, node_name, flags.address);
    tokio::select! {
        r = heartbeats => r,
        r = pods => r,
    }
}
