//! Command-line flags (kube-apiserver's names where they exist), first-start bootstrap of the
//! data dir (PKI, admin kubeconfig, storage, the initial namespaces and system priority
//! classes) and the run loop.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use apiserver_storage::{Storage, embedded::EmbeddedStorage, spawn_periodic_compaction};
use clap::Parser;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

use crate::endpoints::{ApiServer, openapi::OpenApiDocs};
use crate::registry::generic_store::{GenericStore, WriteOptions};
use crate::registry::resource_table;
use crate::registry::resources::cluster_policy::SYSTEM_PRIORITY_CLASSES;
use crate::registry::service_ips::{Cidr, ServiceAllocator, parse_port_range};
use crate::registry::watch_cache::WatchCache;

/// A Kubernetes API server on an embedded, crash-safe store.
#[derive(Debug, Clone, Parser)]
#[command(name = "apiserver", version, about)]
pub struct Flags {
    /// The port to serve HTTPS on.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Where the store, the PKI and the admin kubeconfig live.
    #[arg(long, default_value = ".data")]
    pub data_dir: PathBuf,
    /// Serving certificate (PEM); made from the cluster CA when not given.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM); required with --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that signs client certificates; the cluster CA when not given.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Extra DNS names or IPs for the generated serving certificate.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Storage backend: `embedded` (the default, one machine).
    #[arg(long, default_value = "embedded")]
    pub storage_backend: String,
    /// How often old revisions are compacted (kube-apiserver's --etcd-compaction-interval).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,
    /// Server-side end of watches that set no timeoutSeconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub min_request_timeout: Duration,
    /// The range Service ClusterIPs come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: Cidr,
    /// The range Service NodePorts come from.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: RangeInclusive<u16>,
    /// Where to write the admin kubeconfig (default: <data-dir>/admin.kubeconfig).
    #[arg(long)]
    pub admin_kubeconfig: Option<PathBuf>,
    /// The `iss` of service-account tokens, and their default audience.
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub service_account_issuer: String,
    /// ECDSA P-256 key (PKCS#8 PEM) that signs service-account tokens; made in the data dir's
    /// PKI when not given.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Client certificate the apiserver presents to nodes' streaming servers; made from the
    /// cluster CA when not given.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Key of --kubelet-client-certificate.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// CA bundle that nodes' serving certificates must chain to; the cluster CA when not given.
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Run the controller manager in this process (as `system:kube-controller-manager`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub embedded_controllers: bool,
    /// Node health timings of the embedded controller manager.
    #[command(flatten)]
    pub node_monitor: crate::components::NodeMonitorFlags,
    /// Run the scheduler in this process (as `system:kube-scheduler`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub embedded_scheduler: bool,
    /// Run a component against a running server instead of serving.
    #[command(subcommand)]
    pub component: Option<crate::components::Component>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration unit in {s:?}")),
    }
}

/// Namespaces every cluster has from the start.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap_namespaces(store: &GenericStore) -> Result<()> {
    let namespaces = resource_table::lookup("", "v1", "namespaces").expect("namespaces are served");
    for name in INITIAL_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match store
            .create(namespaces, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) => info!(namespace = name, "created initial namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => bail!("creating namespace {name}: {}", e.message),
        }
    }
    Ok(())
}

/// The system PriorityClasses every cluster has from the start (kube-apiserver's
/// `scheduling/bootstrap-system-priority-classes`); existing ones are left as they are.
async fn bootstrap_priority_classes(store: &GenericStore) -> Result<()> {
    let classes = resource_table::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priority classes are served");
    for class in &SYSTEM_PRIORITY_CLASSES {
        match store
            .create(classes, None, class.object(), &WriteOptions::default())
            .await
        {
            Ok(_) => info!(name = class.name, "created system priority class"),
            Err(e) if e.code == 409 => {}
            Err(e) => bail!("creating priority class {}: {}", class.name, e.message),
        }
    }
    Ok(())
}

/// The `kubernetes` Service in `default`, on the range's first IP, with Endpoints and an
/// EndpointSlice pointing at this apiserver.
async fn bootstrap_kubernetes_service(
    store: &GenericStore,
    ips: &ServiceAllocator,
    address: IpAddr,
    port: u16,
) -> Result<()> {
    let lookup = |g, p| resource_table::lookup(g, "v1", p).expect("served");
    let (services, endpoints, slices) = (
        lookup("", "services"),
        lookup("", "endpoints"),
        lookup("discovery.k8s.io", "endpointslices"),
    );
    let opts = WriteOptions::default();
    let fail = |e: crate::endpoints::status_error::ApiError| anyhow::anyhow!(e.message);
    if store
        .get(services, Some("default"), "kubernetes")
        .await
        .is_err()
    {
        let mut svc = json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ips.cidr.first().to_string(), "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        });
        ips.allocate("default", &mut svc).await.map_err(fail)?;
        store
            .create(services, Some("default"), svc, &opts)
            .await
            .map_err(fail)?;
        info!(ip = %ips.cidr.first(), "created the kubernetes service");
    }
    let ep = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address.to_string()}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (r, body) in [(endpoints, ep), (slices, slice)] {
        // The address and port follow this run's flags.
        let _ = store
            .delete(r, Some("default"), "kubernetes", &json!({}), false)
            .await;
        store
            .create(r, Some("default"), body, &opts)
            .await
            .map_err(fail)?;
    }
    Ok(())
}

/// Prepares the data dir and serves until the process ends.
pub async fn run(flags: Flags) -> Result<()> {
    if flags.storage_backend != "embedded" {
        bail!(
            "--storage-backend={} is not available; use embedded",
            flags.storage_backend
        );
    }
    std::fs::create_dir_all(&flags.data_dir)
        .with_context(|| format!("creating {}", flags.data_dir.display()))?;
    let pki = certs::Pki::load_or_create(&flags.data_dir.join("pki"))?;
    let (cert, key) = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let hosts = certs::default_serving_hosts(&flags.tls_sans);
            let files =
                pki.ensure_files("apiserver", |p| p.issue_serving("kube-apiserver", &hosts))?;
            (files.cert, files.key)
        }
        _ => bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    let client_ca = flags
        .client_ca_file
        .clone()
        .unwrap_or_else(|| pki.dir().join(certs::CA_CERT));
    let tls = crate::serve::tls_config(&cert, &key, &client_ca)?;
    let signing_key = match &flags.service_account_signing_key_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => pki.ensure_service_account_key()?,
    };
    let tokens = crate::service_account_tokens::TokenSigner::from_pem(
        &signing_key,
        &flags.service_account_issuer,
    )
    .map_err(anyhow::Error::msg)?;
    let (kubelet_cert, kubelet_key) =
        match (&flags.kubelet_client_certificate, &flags.kubelet_client_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => {
                let files = pki.ensure_files("kubelet-client", |p| {
                    p.issue_client("kube-apiserver-kubelet-client", &["system:masters"])
                })?;
                (files.cert, files.key)
            }
            _ => bail!("--kubelet-client-certificate and --kubelet-client-key go together"),
        };
    let kubelet_ca = flags
        .kubelet_certificate_authority
        .clone()
        .unwrap_or_else(|| pki.dir().join(certs::CA_CERT));
    let kubelet =
        crate::kubelet_client::KubeletClient::new(&kubelet_cert, &kubelet_key, &kubelet_ca)?;

    let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let host = match local.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let server_url = format!("https://{host}:{}", local.port());
    let kubeconfig = flags
        .admin_kubeconfig
        .clone()
        .unwrap_or_else(|| flags.data_dir.join("admin.kubeconfig"));
    pki.ensure_kubeconfig(
        &kubeconfig,
        &server_url,
        "kubernetes-admin",
        &["system:masters"],
    )?;

    let metrics = Arc::new(crate::metrics::Metrics::default());
    let embedded: Arc<dyn Storage> =
        Arc::new(EmbeddedStorage::open(&flags.data_dir.join("storage"))?);
    let storage: Arc<dyn Storage> = Arc::new(crate::metrics::MeteredStorage::new(
        embedded,
        metrics.clone(),
    ));
    let _compactor = spawn_periodic_compaction(storage.clone(), flags.etcd_compaction_interval);
    let storage_for_ranges = storage.clone();
    let store = GenericStore::new(storage.clone());
    bootstrap_namespaces(&store).await?;
    bootstrap_priority_classes(&store).await?;
    let prefixes: Vec<String> = resource_table::RESOURCES
        .iter()
        .map(|r| r.key_prefix())
        .collect();
    let cache = WatchCache::start(storage, &prefixes)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let store = store.with_watch_cache(cache);
    let service_ips = ServiceAllocator::new(
        store.clone(),
        storage_for_ranges,
        flags.service_cluster_ip_range,
        flags.service_node_port_range.clone(),
    );
    let services = resource_table::lookup("", "v1", "services").expect("services are served");
    service_ips
        .repair(services)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let advertise = match local.ip() {
        ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    bootstrap_kubernetes_service(&store, &service_ips, advertise, local.port()).await?;
    let server = Arc::new(ApiServer {
        store,
        service_ips,
        openapi: OpenApiDocs::build(),
        default_watch_timeout: flags.min_request_timeout,
        metrics,
        tokens,
        kubelet,
    });
    let root_ca = std::fs::read_to_string(pki.dir().join(certs::CA_CERT))
        .context("reading the cluster CA")?;
    if flags.embedded_controllers {
        let client = crate::in_process::client(
            server.clone(),
            crate::in_process::component_user(controllers::USER),
        );
        tokio::spawn(crate::components::run_controller_manager(
            client,
            root_ca,
            flags.node_monitor.clone(),
        ));
    }
    if flags.embedded_scheduler {
        let client = crate::in_process::client(
            server.clone(),
            crate::in_process::component_user(scheduler::USER),
        );
        tokio::spawn(crate::components::run_scheduler(client));
    }
    info!(address = %local, "serving");
    println!("apiserver listening on {server_url}");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    crate::serve::serve(listener, tls, server).await
}
