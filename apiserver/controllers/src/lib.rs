//! The controller manager: the control loops that turn desired state into pods, each an API
//! client (kube-rs `kube::runtime`), never a storage reader. Runs in-process with the API
//! server (through its request handler, with its own identity) or as a separate process with
//! a kubeconfig, under Lease-based leader election so several copies are safe.
//!
//! One file per controller: `replicaset` (ReplicaSets and ReplicationControllers),
//! `deployment`, `garbage_collector`, `namespace`, `service_account` (default service
//! accounts and the root CA ConfigMap). `informers` shares one watch per kind between them;
//! `pods` holds what they know about pods; `events` writes their events; `leader_election` the
//! Lease protocol.

pub mod deployment;
pub mod events;
pub mod garbage_collector;
pub mod informers;
pub mod leader_election;
pub mod namespace;
pub mod pods;
pub mod replicaset;
pub mod service_account;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController};
use kube::api::Api;
use kube::runtime::watcher;
use tokio::task::JoinSet;
use tracing::info;

use crate::events::EventRecorder;
use crate::informers::Informer;
use crate::leader_election::{LeaseLock, LeaseTiming};

/// The user the controller manager acts as.
pub const USER: &str = "system:kube-controller-manager";
/// Its lease in `kube-system`.
pub const LEASE: &str = "kube-controller-manager";

/// What every controller is given.
#[derive(Clone)]
pub struct ControllerContext {
    pub client: kube::Client,
    /// This process's name in leases and events.
    pub identity: String,
}

impl ControllerContext {
    /// An event recorder reporting as `controller`.
    pub fn recorder(&self, controller: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), controller, &self.identity)
    }
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Retry(String),
}

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's name in leases and events.
    pub identity: String,
    /// The cluster CA (PEM), published as `kube-root-ca.crt` in every namespace.
    pub root_ca: String,
    pub lease: LeaseTiming,
}

/// Runs the controllers while this process holds the controller-manager lease; returns an
/// error when the lease is lost or a controller stops.
pub async fn run(client: kube::Client, options: Options) -> anyhow::Result<()> {
    let lock = LeaseLock {
        api: Api::<Lease>::namespaced(client.clone(), "kube-system"),
        name: LEASE.into(),
        identity: options.identity.clone(),
        timing: options.lease.clone(),
    };
    lock.run_while_leading(run_controllers(client, options))
        .await
}

async fn run_controllers(client: kube::Client, options: Options) -> anyhow::Result<()> {
    info!(identity = %options.identity, "controller manager leading");
    let ctx = ControllerContext {
        client: client.clone(),
        identity: options.identity.clone(),
    };
    let config = watcher::Config::default();
    let mut pods = Informer::new(Api::<Pod>::all(client.clone()), config.clone());
    let mut replica_sets = Informer::new(Api::<ReplicaSet>::all(client.clone()), config.clone());
    let mut controllers = Informer::new(
        Api::<ReplicationController>::all(client.clone()),
        config.clone(),
    );
    let mut deployments = Informer::new(Api::<Deployment>::all(client.clone()), config.clone());
    let mut namespaces = Informer::new(Api::<Namespace>::all(client.clone()), config);

    let mut tasks = JoinSet::new();
    let rs = replicaset::run::<ReplicaSet>(ctx.clone(), &mut replica_sets, &mut pods);
    let rc = replicaset::run::<ReplicationController>(ctx.clone(), &mut controllers, &mut pods);
    let deploy = deployment::run(ctx.clone(), &mut deployments, &mut replica_sets, &mut pods);
    let ns = namespace::run(ctx.clone(), &mut namespaces);
    let sa = service_account::run(ctx.clone(), options.root_ca.clone(), &mut namespaces);
    tasks.spawn(rs);
    tasks.spawn(rc);
    tasks.spawn(deploy);
    tasks.spawn(ns);
    tasks.spawn(sa);
    let gc_ctx = ctx.clone();
    tasks.spawn(async move {
        if let Err(e) = garbage_collector::run(gc_ctx).await {
            tracing::error!(error = %e, "garbage collector stopped");
        }
    });
    pods.start(&mut tasks);
    replica_sets.start(&mut tasks);
    controllers.start(&mut tasks);
    deployments.start(&mut tasks);
    namespaces.start(&mut tasks);
    // Every task runs forever; the first to end ends the manager (and drops the others).
    tasks.join_next().await;
    anyhow::bail!("a controller stopped")
}
