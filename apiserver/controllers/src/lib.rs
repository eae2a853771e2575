//! The controller manager: the control loops that turn desired state into pods, each an API
//! client (kube-rs `kube::runtime`), never a storage reader. Runs in-process with the API
//! server (through its request handler, with its own identity) or as a separate process with
//! a kubeconfig, under Lease-based leader election so several copies are safe.
//!
//! One file per controller: `replicaset` (ReplicaSets and ReplicationControllers),
//! `deployment`, `daemonset`, `statefulset`, `job` (with the TTL-after-finished cleanup),
//! `cronjob`, `garbage_collector`, `namespace`, `service_account` (default service accounts
//! and the root CA ConfigMap), `endpoints`, `endpoint_slices` and `node_lifecycle` (node
//! health, taints and eviction).
//!
//! What they share:
//! - `informers`: one watch per kind, reflected into a store, with `Indexes` by namespace and
//!   by controller owner uid so a reconcile reads the objects it concerns instead of scanning
//!   the kind;
//! - `pods`: what workload controllers know about pods, claiming (adopt/release) and
//!   slow-start creation;
//! - `expectations`: pod creations, deletions and finalizer removals issued but not yet seen;
//! - `history`: ControllerRevisions for DaemonSets and StatefulSets, and the template hash
//!   that also names a Deployment's ReplicaSets;
//! - `node_fit`: whether a pod spec fits a node (node name, selector, affinity, taints);
//! - `api_errors`: what an API error says (status code, namespace terminating);
//! - `events`: writing their events; `leader_election`: the Lease protocol.

pub mod api_errors;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoint_slices;
pub mod endpoints;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod history;
pub mod informers;
pub mod job;
pub mod leader_election;
pub mod namespace;
pub mod node_fit;
pub mod node_lifecycle;
pub mod pods;
pub mod replicaset;
pub mod service_account;
pub mod statefulset;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
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

/// What a controller does after a failed reconcile: a conflict (its write lost a race with a
/// newer version, which its own event brings) is retried soon and quietly; anything else is
/// logged and retried after two seconds.
pub fn retry_after_failure(what: &str, err: &ReconcileError) -> kube::runtime::controller::Action {
    use std::time::Duration;
    match err {
        ReconcileError::Api(e) if api_errors::is_status(e, 409) => {
            tracing::debug!(error = %err, "{what}; retrying");
            kube::runtime::controller::Action::requeue(Duration::from_millis(200))
        }
        _ => {
            tracing::warn!(error = %err, "{what}");
            kube::runtime::controller::Action::requeue(Duration::from_secs(2))
        }
    }
}

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's name in leases and events.
    pub identity: String,
    /// The cluster CA (PEM), published as `kube-root-ca.crt` in every namespace.
    pub root_ca: String,
    pub lease: LeaseTiming,
    /// How node health is judged (the node lifecycle controller's timings).
    pub node_monitor: node_lifecycle::NodeMonitor,
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
    let mut namespaces = Informer::new(Api::<Namespace>::all(client.clone()), config.clone());
    let mut services = Informer::new(Api::<Service>::all(client.clone()), config.clone());
    let mut endpoints = Informer::new(Api::<Endpoints>::all(client.clone()), config.clone());
    let mut slices = Informer::new(
        Api::<EndpointSlice>::all(client.clone()),
        config.clone().labels(&format!(
            "{}={}",
            endpoint_slices::MANAGED_BY_LABEL,
            endpoint_slices::MANAGED_BY
        )),
    );
    let mut nodes = Informer::new(Api::<Node>::all(client.clone()), config.clone());
    let mut jobs = Informer::new(Api::<Job>::all(client.clone()), config.clone());
    let mut cron_jobs = Informer::new(Api::<CronJob>::all(client.clone()), config.clone());
    let mut daemon_sets = Informer::new(Api::<DaemonSet>::all(client.clone()), config.clone());
    let mut stateful_sets = Informer::new(Api::<StatefulSet>::all(client.clone()), config.clone());
    let mut revisions = Informer::new(
        Api::<ControllerRevision>::all(client.clone()),
        config.clone(),
    );
    let mut leases = Informer::new(
        Api::<Lease>::namespaced(client.clone(), node_lifecycle::LEASE_NAMESPACE),
        config,
    );

    let mut tasks = JoinSet::new();
    tasks.spawn(replicaset::run::<ReplicaSet>(
        ctx.clone(),
        &mut replica_sets,
        &mut pods,
    ));
    tasks.spawn(replicaset::run::<ReplicationController>(
        ctx.clone(),
        &mut controllers,
        &mut pods,
    ));
    tasks.spawn(deployment::run(
        ctx.clone(),
        &mut deployments,
        &mut replica_sets,
        &mut pods,
    ));
    tasks.spawn(namespace::run(ctx.clone(), &mut namespaces));
    tasks.spawn(service_account::run(
        ctx.clone(),
        options.root_ca.clone(),
        &mut namespaces,
    ));
    tasks.spawn(endpoints::run(
        ctx.clone(),
        &mut services,
        &mut pods,
        &mut endpoints,
    ));
    tasks.spawn(endpoint_slices::run(
        ctx.clone(),
        &mut services,
        &mut pods,
        &mut nodes,
        &mut slices,
    ));
    tasks.spawn(job::run(ctx.clone(), &mut jobs, &mut pods));
    tasks.spawn(cronjob::run(ctx.clone(), &mut cron_jobs, &mut jobs));
    tasks.spawn(daemonset::run(
        ctx.clone(),
        &mut daemon_sets,
        &mut pods,
        &mut nodes,
        &mut revisions,
    ));
    tasks.spawn(statefulset::run(
        ctx.clone(),
        &mut stateful_sets,
        &mut pods,
        &mut revisions,
    ));
    tasks.spawn(node_lifecycle::run(
        ctx.clone(),
        options.node_monitor.clone(),
        &mut nodes,
        &mut leases,
        &mut pods,
    ));
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
    services.start(&mut tasks);
    endpoints.start(&mut tasks);
    slices.start(&mut tasks);
    nodes.start(&mut tasks);
    jobs.start(&mut tasks);
    cron_jobs.start(&mut tasks);
    daemon_sets.start(&mut tasks);
    stateful_sets.start(&mut tasks);
    revisions.start(&mut tasks);
    leases.start(&mut tasks);
    // Every task runs forever; the first to end ends the manager (and drops the others).
    tasks.join_next().await;
    anyhow::bail!("a controller stopped")
}
