//! Registration and heartbeats: the agent creates its Node (or takes over the one of its name
//! after a restart), writes its status through `nodes/status`, and renews its Lease in
//! `kube-node-lease` every ten seconds; the full status is rewritten every five minutes, as
//! the kubelet's `nodeStatusReportFrequency`, since the Lease is what the node lifecycle
//! controller watches.

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::{info, warn};

use crate::host::{HostInfo, Pressure};
use crate::node_status::{self, AgentIdentity};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The Lease's duration (the kubelet's default) and how often it is renewed.
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Node status is written at least this often, and when it changes (looked at every
/// [`STATUS_CHECK`]), as the kubelet's nodeStatusReportFrequency and UpdateFrequency.
const STATUS_REPORT: Duration = Duration::from_secs(300);
const STATUS_CHECK: Duration = Duration::from_secs(10);

/// The Lease of `node` renewed at `now`.
pub fn lease(node: &Node, now: Timestamp) -> Lease {
    let name = node.metadata.name.clone().unwrap_or_default();
    Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Creates the Node, or finds the one of this name (a restarted agent keeps its Node).
pub async fn register(client: &kube::Client, agent: &AgentIdentity) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &node_status::registration(agent))
        .await
    {
        Ok(node) => {
            info!(node = %agent.node_name, "registered");
            Ok(node)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            info!(node = %agent.node_name, "node already registered");
            api.get(&agent.node_name)
                .await
                .context("reading the registered node")
        }
        Err(e) => Err(e).context("registering the node"),
    }
}

/// Writes the node's status now.
pub async fn report_status(
    client: &kube::Client,
    agent: &AgentIdentity,
    host: &HostInfo,
    pressure: Pressure,
) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(&agent.node_name).await?;
    let previous = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let status = node_status::status(agent, host, pressure, &previous, Timestamp::now());
    Ok(api
        .patch_status(
            &agent.node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?)
}

/// Renews (or recreates) the node's Lease.
pub async fn renew_lease(client: &kube::Client, node: &Node) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let wanted = lease(node, Timestamp::now());
    let name = wanted.metadata.name.clone().unwrap_or_default();
    let patch = json!({"spec": {"renewTime": wanted.spec.as_ref().and_then(|s| s.renew_time.clone()),
                                "holderIdentity": name,
                                "leaseDurationSeconds": LEASE_DURATION_SECONDS}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            api.create(&PostParams::default(), &wanted).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Registers the node and keeps it alive until the task is dropped.
pub async fn run(
    client: kube::Client,
    agent: AgentIdentity,
    host: HostInfo,
    root: std::path::PathBuf,
) -> Result<()> {
    // Until the API server answers, registration is retried (as the kubelet does).
    let mut delay = Duration::from_millis(200);
    let mut pressure = Pressure::read(&root);
    let node = loop {
        let attempt = async {
            let node = register(&client, &agent).await?;
            report_status(&client, &agent, &host, pressure).await?;
            renew_lease(&client, &node).await?;
            anyhow::Ok(node)
        };
        match attempt.await {
            Ok(node) => break node,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "registering the node failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
        }
    };
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_CHECK);
    lease_tick.tick().await;
    status_tick.tick().await;
    let mut reported = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &node).await {
                    warn!(error = %e, "renewing the node lease failed");
                }
            }
            _ = status_tick.tick() => {
                let now = Pressure::read(&root);
                if now == pressure && reported.elapsed() < STATUS_REPORT {
                    continue;
                }
                if now != pressure {
                    info!(?now, "node pressure changed");
                }
                match report_status(&client, &agent, &host, now).await {
                    Ok(_) => {
                        pressure = now;
                        reported = tokio::time::Instant::now();
                    }
                    Err(e) => warn!(error = %e, "reporting node status failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_held_by_the_node_and_owned_by_it() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("worker-1".into()),
                uid: Some("node-uid".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let now = Timestamp::from_second(1_000).unwrap();
        let l = lease(&node, now);
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        assert_eq!(l.metadata.owner_references.unwrap()[0].uid, "node-uid");
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("worker-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }
}
