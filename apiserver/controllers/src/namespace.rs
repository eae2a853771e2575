//! The Namespace controller: a namespace marked for deletion (phase Terminating, the
//! `kubernetes` finalizer in `spec.finalizers`) has every namespaced object in it deleted;
//! once nothing is left it removes its finalizer through `namespaces/{name}/finalize`, which
//! lets the server delete the namespace. Progress is reported in the namespace's conditions.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use serde_json::json;
use tracing::info;

use crate::api_errors::{is_status, not_found};
use crate::informers::Informer;
use crate::{ControllerContext, ReconcileError};

pub const FINALIZER: &str = "kubernetes";

/// What is left in a namespace after one deletion pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// (resource, count) of objects still present.
    pub objects: Vec<(String, usize)>,
    /// (finalizer, count) on the objects still present.
    pub finalizers: Vec<(String, usize)>,
}

/// The conditions a terminating namespace reports, as upstream words them.
pub fn conditions(
    remaining: &Remaining,
    failures: &[String],
    now: Timestamp,
    old: &[NamespaceCondition],
) -> Vec<NamespaceCondition> {
    let make = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let transition = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NamespaceCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(transition),
        }
    };
    let listed = |items: &[(String, usize)], verb: &str| {
        items
            .iter()
            .map(|(what, n)| format!("{what} {verb} {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        make(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        make(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if failures.is_empty() {
            make(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            make(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join(", ")
                ),
            )
        },
        if remaining.objects.is_empty() {
            make(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            make(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    listed(&remaining.objects, "has")
                ),
            )
        },
        if remaining.finalizers.is_empty() {
            make(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            make(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    listed(&remaining.finalizers, "in")
                ),
            )
        },
    ]
}

pub fn run(
    ctx: ControllerContext,
    namespaces: &mut Informer<Namespace>,
) -> impl std::future::Future<Output = ()> + use<> {
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store());
    let state = Arc::new(ctx);
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_ns: Arc<Namespace>, err: &ReconcileError, _ctx: Arc<ControllerContext>) -> Action {
    crate::retry_after_failure("namespace reconcile failed", err)
}

async fn reconcile(
    ns: Arc<Namespace>,
    ctx: Arc<ControllerContext>,
) -> Result<Action, ReconcileError> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = Remaining::default();
    let mut failures = Vec::new();
    let mut finalizer_counts: std::collections::BTreeMap<String, usize> = Default::default();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &ar);
            if caps.supports_operation(verbs::DELETE_COLLECTION)
                && let Err(e) = api
                    .delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await
            {
                failures.push(format!("{}: {e}", ar.plural));
                continue;
            }
            let left = api.list_metadata(&ListParams::default()).await?;
            if !left.items.is_empty() {
                // Upstream's spelling: resource.group, so core resources end in a dot.
                let label = format!("{}.{}", ar.plural, ar.group);
                remaining.objects.push((label, left.items.len()));
                for item in &left.items {
                    for f in item.metadata.finalizers.iter().flatten() {
                        *finalizer_counts.entry(f.clone()).or_default() += 1;
                    }
                }
            }
        }
    }
    remaining.finalizers = finalizer_counts.into_iter().collect();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let conditions = conditions(&remaining, &failures, Timestamp::now(), &old);
    let strip = |cs: &[NamespaceCondition]| {
        cs.iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.message.clone()))
            .collect::<Vec<_>>()
    };
    if strip(&conditions) != strip(&old) {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
    }
    if !remaining.objects.is_empty() || !failures.is_empty() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Empty: drop our finalizer; the server removes the namespace when none are left.
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    finalized.metadata.managed_fields = None;
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => info!(namespace = %name, "namespace emptied and finalized"),
        Err(e) if not_found(&e) => {}
        Err(e) if is_status(&e, 409) => {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_namespace_reports_its_content_removed() {
        let cs = conditions(&Remaining::default(), &[], Timestamp::now(), &[]);
        let remaining = cs
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.status, "False");
        assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
    }

    #[test]
    fn remaining_objects_and_finalizers_are_named() {
        let left = Remaining {
            objects: vec![("pods.".into(), 2)],
            finalizers: vec![("example.com/keep".into(), 1)],
        };
        let cs = conditions(&left, &[], Timestamp::now(), &[]);
        let content = cs
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(
            content.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances")
        );
        let fins = cs
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(
            fins.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
            )
        );
    }
}
