//! The ReplicaSet and ReplicationController controller: keeps `spec.replicas` active pods that
//! match the selector, adopting matching orphans and releasing owned pods that no longer
//! match, and reports replicas, fully labeled, ready and available counts in status.
//!
//! `plan` is the pure decision; `reconcile` carries it out through the API. Creations and
//! deletions in flight are remembered (`Expectations`) so a reconcile that runs before the
//! pod watch has caught up does not create or delete twice. A reconcile reads its namespace's
//! pods from the pod informer's namespace index; claiming and slow-start creation are
//! `pods`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api_errors::not_found;
use crate::events::EventRecorder;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::expectations::Expectations;
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// At most this many pods are created or deleted in one reconcile (upstream's burst).
const BURST: usize = 500;

/// What the controller needs of a ReplicaSet or ReplicationController.
#[derive(Debug, Clone)]
pub struct ReplicaTarget {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub meta: ObjectMeta,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    /// What status says now.
    pub reported: Reported,
}

/// The status an object currently reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub counts: ReplicaCounts,
    pub observed_generation: i64,
    /// Whether it carries a condition (ReplicaFailure, the only one this controller writes).
    pub has_conditions: bool,
}

impl Reported {
    /// From replicas, fully labeled, ready and available counts as status spells them.
    fn new(
        counts: [Option<i32>; 4],
        observed_generation: Option<i64>,
        has_conditions: bool,
    ) -> Self {
        let [replicas, fully_labeled, ready, available] = counts.map(|c| c.unwrap_or(0));
        Reported {
            counts: ReplicaCounts {
                replicas,
                fully_labeled,
                ready,
                available,
            },
            observed_generation: observed_generation.unwrap_or(0),
            has_conditions,
        }
    }
}

/// A kind this controller manages.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    fn target(&self) -> ReplicaTarget;
}

impl Replicated for ReplicaSet {
    fn target(&self) -> ReplicaTarget {
        let spec = self.spec.clone().unwrap_or_default();
        ReplicaTarget {
            api_version: "apps/v1",
            kind: "ReplicaSet",
            meta: self.metadata.clone(),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector: spec.selector,
            template: spec.template.unwrap_or_default(),
            reported: self
                .status
                .as_ref()
                .map(|s| {
                    Reported::new(
                        [
                            Some(s.replicas),
                            s.fully_labeled_replicas,
                            s.ready_replicas,
                            s.available_replicas,
                        ],
                        s.observed_generation,
                        s.conditions.as_ref().is_some_and(|c| !c.is_empty()),
                    )
                })
                .unwrap_or_default(),
        }
    }
}

impl Replicated for ReplicationController {
    fn target(&self) -> ReplicaTarget {
        let spec = self.spec.clone().unwrap_or_default();
        ReplicaTarget {
            api_version: "v1",
            kind: "ReplicationController",
            meta: self.metadata.clone(),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector: LabelSelector {
                match_labels: spec.selector,
                ..LabelSelector::default()
            },
            template: spec.template.unwrap_or_default(),
            reported: self
                .status
                .as_ref()
                .map(|s| {
                    Reported::new(
                        [
                            Some(s.replicas),
                            s.fully_labeled_replicas,
                            s.ready_replicas,
                            s.available_replicas,
                        ],
                        s.observed_generation,
                        s.conditions.as_ref().is_some_and(|c| !c.is_empty()),
                    )
                })
                .unwrap_or_default(),
        }
    }
}

/// The counts reported in status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

/// What one reconcile does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Matching orphans to take (pod names).
    pub adopt: Vec<String>,
    /// Owned pods that no longer match (pod names).
    pub release: Vec<String>,
    /// How many pods to create.
    pub create: usize,
    /// Surplus pods to delete, least valuable first.
    pub delete: Vec<Pod>,
    pub counts: ReplicaCounts,
    /// When a ready pod becomes available, so status is looked at again then.
    pub recheck_after: Option<Duration>,
}

/// Decides what to do for `target` given the pods of its namespace.
pub fn plan(target: &ReplicaTarget, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let deleting = target.meta.deletion_timestamp.is_some();
    let mut plan = Plan::default();
    let empty = BTreeMap::new();
    let selector = pods::controller_selector(&target.selector);
    let claimed = pods::claim(
        &target.meta,
        selector.as_ref(),
        pods.iter().map(AsRef::as_ref),
        |_| true,
    );
    plan.adopt = claimed.adopt.iter().map(|p| p.name_any()).collect();
    plan.release = claimed.release.iter().map(|p| p.name_any()).collect();
    let owned: Vec<&Pod> = claimed.owned.into_iter().chain(claimed.adopt).collect();
    let mut active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    let template_labels = target
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    plan.counts = ReplicaCounts {
        replicas: active.len() as i32,
        fully_labeled: active
            .iter()
            .filter(|p| {
                let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
                template_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .count() as i32,
        ready: active.iter().filter(|p| pods::is_ready(p)).count() as i32,
        available: active
            .iter()
            .filter(|p| pods::is_available(p, target.min_ready_seconds, now))
            .count() as i32,
    };
    if target.min_ready_seconds > 0 {
        plan.recheck_after = active
            .iter()
            .filter_map(|p| pods::ready_since(p))
            .map(|since| since + jiff::SignedDuration::from_secs(target.min_ready_seconds as i64))
            .filter(|at| *at > now)
            .min()
            .and_then(|at| Duration::try_from(now.duration_until(at)).ok());
    }
    if deleting {
        return plan;
    }
    let want = target.replicas.max(0) as usize;
    if active.len() < want {
        plan.create = (want - active.len()).min(BURST);
    } else if active.len() > want {
        let surplus = active.len() - want;
        active.sort_by(|a, b| pods::deletion_order(a, b));
        plan.delete = active
            .into_iter()
            .take(surplus.min(BURST))
            .cloned()
            .collect();
    }
    plan
}

/// The state shared by reconciles of one kind.
pub struct ReplicaContext {
    pub ctx: ControllerContext,
    /// The pods by namespace (what a reconcile may own or adopt).
    pub pods: Indexes<Pod>,
    pub expectations: Expectations,
    pub recorder: EventRecorder,
}

/// Runs the controller for kind `K` until the stream ends.
pub fn run<K: Replicated>(
    ctx: ControllerContext,
    owners: &mut Informer<K>,
    pods: &mut Informer<Pod>,
) -> impl std::future::Future<Output = ()> + use<K> {
    let recorder = ctx.recorder(if K::kind(&()) == "ReplicaSet" {
        "replicaset-controller"
    } else {
        "replication-controller"
    });
    let state = Arc::new(ReplicaContext {
        ctx,
        pods: pods.indexes(),
        expectations: Expectations::default(),
        recorder,
    });
    let controller = Controller::for_shared_stream(owners.subscribe(), owners.store())
        .owns_shared_stream(pods.subscribe());
    async move {
        controller
            .run(reconcile::<K>, error_policy::<K>, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy<K: Replicated>(
    _obj: Arc<K>,
    err: &ReconcileError,
    _ctx: Arc<ReplicaContext>,
) -> Action {
    crate::retry_after_failure(&format!("{} reconcile failed", K::kind(&())), err)
}

async fn reconcile<K: Replicated>(
    obj: Arc<K>,
    state: Arc<ReplicaContext>,
) -> Result<Action, ReconcileError> {
    let target = obj.target();
    let namespace = target.meta.namespace.clone().unwrap_or_default();
    // In-memory state (expectations, backoff) is keyed by uid, so a same-named successor
    // starts afresh.
    let key = target.meta.uid.clone().unwrap_or_default();
    let client = state.ctx.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let in_namespace: Vec<Arc<Pod>> = state.pods.in_namespace(&namespace);
    let settled = state.expectations.satisfied(&key, &in_namespace);
    let now = Timestamp::now();
    let plan = plan(&target, &in_namespace, now);
    let owner = pods::controller_ref(target.api_version, target.kind, &target.meta);
    let reference = obj.object_ref(&());
    let named = |names: &[String]| -> Vec<&Pod> {
        names
            .iter()
            .filter_map(|n| in_namespace.iter().find(|p| &p.name_any() == n))
            .map(AsRef::as_ref)
            .collect()
    };
    let (_, mut failure) = pods::adopt_and_release(
        &pod_api,
        &owner,
        named(&plan.adopt),
        named(&plan.release),
        |_, _| {},
    )
    .await;

    if settled {
        let mut created = Vec::new();
        // Nothing is created while adoption is failing.
        if failure.is_none() && plan.create > 0 {
            let prefix = format!("{}-", target.meta.name.as_deref().unwrap_or("pod"));
            let pod = pods::pod_from_template(&target.template, &namespace, &prefix, owner.clone());
            let made = pods::create_slow_start(
                &pod_api,
                vec![pod; plan.create],
                &state.recorder,
                &reference,
                |_| false,
            )
            .await;
            created = made
                .pods
                .into_iter()
                .filter_map(|p| p.metadata.uid)
                .collect();
            failure = made.error;
        }
        let doomed: Vec<&Pod> = plan.delete.iter().collect();
        let deleted = pods::delete_recorded(&pod_api, &doomed, &state.recorder, &reference).await;
        if let Some(e) = deleted.error {
            failure.get_or_insert(e);
        }
        state.expectations.expect(&key, created, deleted.uids);
    }

    write_status::<K>(&target, &plan.counts, &client, failure.as_ref()).await?;
    if let Some(e) = failure {
        return Err(ReconcileError::Api(e));
    }
    Ok(match plan.recheck_after {
        Some(after) => Action::requeue(after),
        None if !settled => Action::requeue(Duration::from_secs(1)),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

async fn write_status<K: Replicated>(
    target: &ReplicaTarget,
    counts: &ReplicaCounts,
    client: &kube::Client,
    failure: Option<&kube::Error>,
) -> Result<(), ReconcileError> {
    let generation = target.meta.generation.unwrap_or(0);
    let failure_condition = failure.map(|e| {
        json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": e.to_string(), "lastTransitionTime": Timestamp::now().to_string()}])
    });
    let wanted = Reported {
        counts: counts.clone(),
        observed_generation: generation,
        has_conditions: false,
    };
    if failure_condition.is_none() && target.reported == wanted {
        return Ok(());
    }
    let patch = json!({"status": {
        "replicas": counts.replicas,
        "fullyLabeledReplicas": counts.fully_labeled,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "observedGeneration": generation,
        "conditions": failure_condition,
    }});
    let api: Api<K> = Api::namespaced(
        client.clone(),
        target.meta.namespace.as_deref().unwrap_or(""),
    );
    match api
        .patch_status(
            target.meta.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(ReconcileError::Api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn replica_set(replicas: i32) -> ReplicaSet {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn missing_replicas_are_created_and_orphans_adopted() {
        let rs = replica_set(3).target();
        let orphan = Arc::new(pod("orphan", &[("app", "web")]));
        let stranger = Arc::new(pod("other", &[("app", "db")]));
        let plan = plan(&rs, &[orphan, stranger], Timestamp::now());
        assert_eq!(plan.adopt, ["orphan"]);
        assert_eq!(plan.create, 2);
        assert_eq!(plan.counts.replicas, 1);
    }

    #[test]
    fn surplus_pods_are_deleted_least_ready_first() {
        let rs = replica_set(1).target();
        let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.meta);
        let now = Timestamp::now();
        let a = Arc::new(owned_by(ready(pod("a", &[("app", "web")]), now), &owner));
        let b = Arc::new(owned_by(pod("b", &[("app", "web")]), &owner));
        let plan = plan(&rs, &[a, b], now);
        assert_eq!(plan.create, 0);
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].name_any(), "b");
        assert_eq!(plan.counts.ready, 1);
        assert_eq!(plan.counts.available, 1);
    }

    #[test]
    fn owned_pods_that_stop_matching_are_released() {
        let rs = replica_set(1).target();
        let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.meta);
        let relabeled = Arc::new(owned_by(pod("a", &[("app", "debug")]), &owner));
        let plan = plan(&rs, &[relabeled], Timestamp::now());
        assert_eq!(plan.release, ["a"]);
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn pods_of_another_controller_are_left_alone() {
        let rs = replica_set(0).target();
        let other = OwnerReference {
            uid: "someone-else".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let theirs = Arc::new(owned_by(pod("a", &[("app", "web")]), &other));
        let plan = plan(&rs, &[theirs], Timestamp::now());
        assert!(plan.delete.is_empty() && plan.adopt.is_empty());
    }
}
