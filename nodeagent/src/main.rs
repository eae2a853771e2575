//! `nodeagent`: runs the node agent against an API server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use nodeagent::host::HostInfo;
use nodeagent::node_status::AgentIdentity;
use nodeagent::probes::Prober;
use nodeagent::runtime::ContainerRuntime;
use nodeagent::runtime::docker::DockerRuntime;
use nodeagent::runtime::simulated::SimulatedRuntime;
use nodeagent::{heartbeat, pod_sync, static_pods, streaming};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// Containers as real Docker containers of the local engine.
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
    /// The image of pod sandboxes (the Makefile's `images` target builds it).
    #[arg(long, default_value = "nodeagent-pause:1")]
    pod_infra_container_image: String,
    /// The streaming server's certificate (logs, exec, attach, port-forward); without it
    /// the node serves no streams.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates the streaming server accepts.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// A folder of Pod manifests run as static pods (with mirror pods in the API).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Where pod volumes are kept.
    #[arg(long, default_value = "/var/lib/nodeagent")]
    root_dir: PathBuf,
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
    let client = client_from(&flags.kubeconfig).await?;
    match flags.runtime {
        Runtime::Simulated => {
            let runtime = Arc::new(SimulatedRuntime::new(&flags.simulated_pod_prefix));
            run(flags, node_name, client, runtime).await
        }
        Runtime::Docker => {
            let runtime = DockerRuntime::connect(&node_name, &flags.pod_infra_container_image)
                .await
                .context(
                    "the Docker runtime (use --runtime simulated for a node without containers)",
                )?;
            run(flags, node_name, client, Arc::new(runtime)).await
        }
    }
}

async fn run<R: ContainerRuntime>(
    flags: Flags,
    node_name: String,
    client: kube::Client,
    runtime: Arc<R>,
) -> Result<()> {
    std::fs::create_dir_all(&flags.root_dir)
        .with_context(|| format!("creating {}", flags.root_dir.display()))?;
    let agent = AgentIdentity {
        node_name: node_name.clone(),
        runtime_version: runtime.version(),
        streaming_port: flags.streaming_port,
    };
    let host = HostInfo::read(flags.address);
    let heartbeats = heartbeat::run(client.clone(), agent, host, flags.root_dir.clone());
    let node = Arc::new(pod_sync::Node {
        events: controllers::events::EventRecorder::new(client.clone(), "kubelet", &node_name),
        client,
        runtime,
        name: node_name,
        host_ip: flags.address,
        root: flags.root_dir.clone(),
        prober: Prober::new(),
    });
    let streams = async {
        match (
            &flags.tls_cert_file,
            &flags.tls_private_key_file,
            &flags.client_ca_file,
        ) {
            (Some(cert), Some(key), Some(client_ca)) => {
                streaming::serve(
                    std::net::SocketAddr::new(flags.address, flags.streaming_port),
                    streaming::TlsFiles {
                        cert,
                        key,
                        client_ca,
                    },
                    streaming::Access::default(),
                    node.runtime.clone(),
                    node.client.clone(),
                    node.name.clone(),
                )
                .await
            }
            (None, None, None) => {
                tracing::warn!(
                    "no --tls-cert-file: this node serves no logs, exec, attach or port-forward"
                );
                futures::future::pending().await
            }
            _ => anyhow::bail!(
                "--tls-cert-file, --tls-private-key-file and --client-ca-file go together"
            ),
        }
    };
    let (statics_tx, statics) = tokio::sync::mpsc::channel(64);
    if let Some(dir) = flags.pod_manifest_path.clone() {
        tokio::spawn(static_pods::run(
            dir,
            node.name.clone(),
            node.client.clone(),
            statics_tx,
        ));
    }
    let pods = pod_sync::run(node.clone(), statics);
    tokio::select! {
        r = heartbeats => r,
        r = pods => r,
        r = streams => r,
    }
}
