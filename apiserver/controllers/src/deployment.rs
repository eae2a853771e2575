//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash),
//! rolled from old to new by the RollingUpdate (maxSurge/maxUnavailable) or Recreate
//! strategy, with revision annotations, history cleanup, pause, and the Available and
//! Progressing conditions `kubectl rollout status` reads.
//!
//! The decisions (`rollout_step` and friends) are pure; `reconcile` applies them through the
//! API. ReplicaSets are written; pods are the ReplicaSet controller's business. ReplicaSets
//! are named by `history::template_hash`, the hash ControllerRevisions are named by too.
//! ReplicaSets are read from their informer's namespace index, the pods of old ReplicaSets
//! from the pod informer's controller-owner index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api_errors::{is_status, not_found};
use crate::events::{EventRecorder, EventType};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::history::template_hash;
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of the Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 5] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

/// What of a template decides its pods (labels without the hash label, annotations,
/// spec), for comparing a ReplicaSet's template with the Deployment's.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.remove(HASH_LABEL);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels).filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        }),
        spec: template.spec.clone(),
    }
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// Resolves an int-or-percent against `total` (percentages round up for surge, down for
/// unavailability).
fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = value
        .cloned()
        .unwrap_or_else(|| IntOrString::String(default.to_owned()));
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = pct * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// maxSurge and maxUnavailable of a RollingUpdate deployment; never both zero.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let ru = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .unwrap_or_default();
    let surge = resolve(ru.max_surge.as_ref(), replicas, true, "25%");
    let mut unavailable = resolve(ru.max_unavailable.as_ref(), replicas, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// New replica counts for ReplicaSets (by name) decided by one rollout step.
pub type Scaling = BTreeMap<String, i32>;

/// One RollingUpdate step: grow the new ReplicaSet within the surge, shrink old ones within
/// the unavailability budget (unhealthy replicas first).
pub fn rolling_step(d: &Deployment, new_rs: &ReplicaSet, old: &[ReplicaSet]) -> Scaling {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, max_unavailable) = surge_and_unavailable(d);
    let mut scaling = Scaling::new();
    let new_name = new_rs.name_any();
    let mut new_replicas = spec_replicas(new_rs);
    let old_total: i32 = old.iter().map(spec_replicas).sum();

    // Scale up the new ReplicaSet.
    if new_replicas > replicas {
        new_replicas = replicas;
        scaling.insert(new_name.clone(), new_replicas);
    } else if new_replicas < replicas {
        let max_total = replicas + surge;
        let current_total = old_total + new_replicas;
        if current_total < max_total {
            let up = (max_total - current_total).min(replicas - new_replicas);
            new_replicas += up;
            scaling.insert(new_name.clone(), new_replicas);
        }
    }

    // Scale down old ReplicaSets.
    if old_total == 0 {
        return scaling;
    }
    let all_total = old_total + new_replicas;
    let min_available = replicas - max_unavailable;
    let (_, _, new_available) = status_of(new_rs);
    let new_unavailable = (new_replicas - new_available).max(0);
    let mut max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return scaling;
    }
    let mut olds: Vec<&ReplicaSet> = old.iter().collect();
    olds.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut counts: Vec<i32> = olds.iter().map(|rs| spec_replicas(rs)).collect();
    // Unhealthy replicas of old ReplicaSets go first.
    for (i, rs) in olds.iter().enumerate() {
        if max_scaled_down <= 0 {
            break;
        }
        let (_, _, available) = status_of(rs);
        let unhealthy = (counts[i] - available).max(0);
        let cut = unhealthy.min(max_scaled_down);
        if cut > 0 {
            counts[i] -= cut;
            max_scaled_down -= cut;
        }
    }
    // Then available ones, as far as availability allows.
    let available_total: i32 = olds
        .iter()
        .zip(&counts)
        .map(|(rs, c)| status_of(rs).2.min(*c))
        .sum::<i32>()
        + new_available;
    let mut budget = (available_total - min_available).min(max_scaled_down);
    for count in counts.iter_mut() {
        if budget <= 0 {
            break;
        }
        let cut = (*count).min(budget);
        *count -= cut;
        budget -= cut;
    }
    for (rs, count) in olds.iter().zip(counts) {
        if count != spec_replicas(rs) {
            scaling.insert(rs.name_any(), count);
        }
    }
    scaling
}

/// Whether the Deployment's replica count changed since its active ReplicaSets were last
/// sized (their desired-replicas annotation disagrees): then the change is spread over them
/// instead of taking a rollout step.
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    all.iter()
        .filter(|rs| spec_replicas(rs) > 0)
        .filter_map(|rs| rs.annotations().get(DESIRED_REPLICAS)?.parse::<i32>().ok())
        .any(|desired| desired != replicas)
}

/// The ReplicaSet's share of `to_add` more (or fewer) replicas: its size scaled by the
/// Deployment's new maximum over the maximum it was sized for, limited to what is left.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let fraction = if replicas == 0 {
        -size
    } else {
        let (surge, _) = surge_and_unavailable(d);
        let maximum = replicas + surge;
        let annotated = rs
            .annotations()
            .get(MAX_REPLICAS)
            .and_then(|m| m.parse::<i32>().ok())
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            (f64::from(size) * f64::from(maximum) / f64::from(annotated)).round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Sizes the ReplicaSets for a changed replica count (upstream's `scale`): a single active
/// (or else the newest) ReplicaSet takes the whole count; a saturated new one leaves the old
/// ones at zero; otherwise a rolling Deployment spreads the change over its active
/// ReplicaSets in proportion to their sizes, the largest taking the rounding leftover.
pub fn proportional_scale(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
) -> Scaling {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut scaling = Scaling::new();
    let mut by_age: Vec<&ReplicaSet> = old.iter().collect();
    by_age
        .sort_by_key(|rs| std::cmp::Reverse(rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let mut active: Vec<&ReplicaSet> = by_age
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|rs| spec_replicas(rs) > 0)
        .collect();
    let single = match active.len() {
        0 => new_rs.or(by_age.first().copied()),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = single {
        if spec_replicas(rs) != replicas {
            scaling.insert(rs.name_any(), replicas);
        }
        return scaling;
    }
    if let Some(new_rs) = new_rs {
        let desired = new_rs
            .annotations()
            .get(DESIRED_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok());
        let saturated = spec_replicas(new_rs) == replicas
            && desired == Some(replicas)
            && status_of(new_rs).2 == replicas;
        if saturated {
            for rs in old.iter().filter(|rs| spec_replicas(rs) > 0) {
                scaling.insert(rs.name_any(), 0);
            }
            return scaling;
        }
    }
    if is_recreate(d) {
        return scaling;
    }
    let (surge, _) = surge_and_unavailable(d);
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let current: i32 = active.iter().map(|rs| spec_replicas(rs)).sum();
    let to_add = allowed - current;
    // Growing: larger first, newer first among equals; shrinking: larger, then older first.
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    active.sort_by(|a, b| {
        spec_replicas(b).cmp(&spec_replicas(a)).then(if to_add > 0 {
            created(b).cmp(&created(a))
        } else {
            created(a).cmp(&created(b))
        })
    });
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    for rs in &active {
        let share = proportion(d, rs, to_add, added);
        added += share;
        sizes.push(spec_replicas(rs) + share);
    }
    if let Some(first) = sizes.first_mut() {
        *first = (*first + to_add - added).max(0);
    }
    for (rs, size) in active.iter().zip(sizes) {
        if size != spec_replicas(rs) {
            scaling.insert(rs.name_any(), size);
        }
    }
    scaling
}

/// One Recreate step: old ReplicaSets to zero; the new one up once no old pod is left.
pub fn recreate_step(
    d: &Deployment,
    new_rs: &ReplicaSet,
    old: &[ReplicaSet],
    old_pods_running: bool,
) -> Scaling {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut scaling = Scaling::new();
    for rs in old {
        if spec_replicas(rs) != 0 {
            scaling.insert(rs.name_any(), 0);
        }
    }
    if scaling.is_empty() && !old_pods_running && spec_replicas(new_rs) != replicas {
        scaling.insert(new_rs.name_any(), replicas);
    }
    scaling
}

/// The Deployment's status for its ReplicaSets; conditions are filled in separately.
fn counts(d: &Deployment, new_rs: Option<&ReplicaSet>, all: &[ReplicaSet]) -> serde_json::Value {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let total: i32 = all.iter().map(|rs| status_of(rs).0).sum();
    let ready: i32 = all.iter().map(|rs| status_of(rs).1).sum();
    let available: i32 = all.iter().map(|rs| status_of(rs).2).sum();
    let updated = new_rs.map(|rs| status_of(rs).0).unwrap_or(0);
    json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
    })
}

/// Whether the rollout is complete: every replica updated and available, no old ones left.
fn complete(d: &Deployment, new_rs: &ReplicaSet, all: &[ReplicaSet]) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (new_total, _, new_available) = status_of(new_rs);
    let total: i32 = all.iter().map(|rs| status_of(rs).0).sum();
    new_total == replicas
        && new_available == replicas
        && total == replicas
        && spec_replicas(new_rs) == replicas
}

fn condition(
    d: &Deployment,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let old = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let transition = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    let update = match old {
        Some(o)
            if o.status == status
                && o.reason.as_deref() == Some(reason)
                && o.message.as_deref() == Some(message.as_str()) =>
        {
            o.last_update_time.clone()
        }
        _ => Some(Time(now)),
    };
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: transition,
        last_update_time: update,
    }
}

pub struct DeploymentContext {
    pub ctx: ControllerContext,
    /// The ReplicaSets by namespace (what a Deployment may own or adopt).
    pub replica_sets: Indexes<ReplicaSet>,
    /// The pods by controller (whether an old ReplicaSet still runs pods).
    pub pods: Indexes<Pod>,
    pub recorder: EventRecorder,
}

pub fn run(
    ctx: ControllerContext,
    deployments: &mut Informer<Deployment>,
    replica_sets: &mut Informer<ReplicaSet>,
    pods: &mut Informer<Pod>,
) -> impl std::future::Future<Output = ()> + use<> {
    let recorder = ctx.recorder("deployment-controller");
    let state = Arc::new(DeploymentContext {
        ctx,
        replica_sets: replica_sets.indexes(),
        pods: pods.indexes(),
        recorder,
    });
    let controller = Controller::for_shared_stream(deployments.subscribe(), deployments.store())
        .owns_shared_stream(replica_sets.subscribe());
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_d: Arc<Deployment>, err: &ReconcileError, _ctx: Arc<DeploymentContext>) -> Action {
    crate::retry_after_failure("deployment reconcile failed", err)
}

async fn event(state: &DeploymentContext, d: &Deployment, reason: &str, note: String) {
    state
        .recorder
        .record(&d.object_ref(&()), EventType::Normal, reason, "Scale", note)
        .await;
}

async fn reconcile(
    d: Arc<Deployment>,
    state: Arc<DeploymentContext>,
) -> Result<Action, ReconcileError> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let client = state.ctx.client.clone();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let now = Timestamp::now();

    // The ReplicaSets this Deployment controls (adopting matching orphans).
    let selector = pods::controller_selector(&spec.selector);
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in state.replica_sets.in_namespace(&namespace) {
        if rs.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let labels = rs.labels().clone();
        match pods::controller_of(&rs.metadata) {
            Some(r) if r.uid == uid => owned.push((*rs).clone()),
            None if pods::selects(selector.as_ref(), &labels) => {
                let owner = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
                let patch = pods::ownership_patch(&rs.metadata, &owner, true);
                let adopted = rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                owned.push(adopted);
            }
            _ => {}
        }
    }
    let template = spec.template.clone();
    let wanted = without_hash(&template);
    let max_revision = owned.iter().map(revision_of).max().unwrap_or(0);
    let existing_new = owned
        .iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(without_hash)
                .as_ref()
                == Some(&wanted)
        })
        .cloned();
    let old: Vec<ReplicaSet> = owned
        .iter()
        .filter(|rs| Some(rs.uid()) != existing_new.as_ref().map(|n| n.uid()))
        .cloned()
        .collect();
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, _) = surge_and_unavailable(&d);
    let paused = spec.paused == Some(true);

    // Find or make the new ReplicaSet (not while paused).
    let mut progressing_reason = "ReplicaSetUpdated";
    let new_rs = match existing_new {
        Some(mut rs) => {
            let revision = revision_of(&rs);
            let wanted_revision = if revision < max_revision || revision == 0 {
                max_revision + 1
            } else {
                revision
            };
            let mut annotations = copied_annotations(&d);
            annotations.insert(REVISION.into(), wanted_revision.to_string());
            annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
            annotations.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
            let current = rs.annotations().clone();
            if annotations.iter().any(|(k, v)| current.get(k) != Some(v)) {
                if revision != wanted_revision && revision != 0 {
                    let mut history: Vec<String> = current
                        .get(REVISION_HISTORY)
                        .map(|h| h.split(',').map(str::to_owned).collect())
                        .unwrap_or_default();
                    history.push(revision.to_string());
                    annotations.insert(REVISION_HISTORY.into(), history.join(","));
                }
                let patch = json!({"metadata": {"annotations": annotations}});
                rs = rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
            if !owned
                .iter()
                .any(|o| o.uid() == rs.uid() && revision_of(o) == revision_of(&rs))
            {
                progressing_reason = "FoundNewReplicaSet";
            }
            Some(rs)
        }
        None if paused => None,
        None => {
            Some(create_new_rs(&state, &d, &rs_api, &old, max_revision, replicas, surge).await?)
        }
    };
    if let Some(rs) = &new_rs
        && !owned.iter().any(|o| o.uid() == rs.uid())
    {
        progressing_reason = "NewReplicaSetCreated";
    }

    // The Deployment carries its new ReplicaSet's revision (`kubectl rollout undo` and
    // `rollout history` rely on it).
    if let Some(rs) = &new_rs {
        let revision = revision_of(rs).to_string();
        if d.annotations().get(REVISION) != Some(&revision) {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }

    // Scale.
    let mut all: Vec<ReplicaSet> = old.clone();
    all.extend(new_rs.clone());
    let actives: Vec<&ReplicaSet> = all.iter().collect();
    let resize = paused || is_scaling_event(&d, &actives);
    if resize || new_rs.is_some() {
        let mut scaling = if resize {
            // A replica-count change (or a paused Deployment) sizes the ReplicaSets without
            // a rollout step.
            proportional_scale(&d, new_rs.as_ref(), &old)
        } else if let Some(new_rs) = &new_rs
            && !is_recreate(&d)
        {
            rolling_step(&d, new_rs, &old)
        } else if let Some(new_rs) = &new_rs {
            let old_pods_running = old
                .iter()
                .filter_map(|rs| rs.uid())
                .flat_map(|uid| state.pods.controlled_by(&uid))
                .any(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                });
            recreate_step(&d, new_rs, &old, old_pods_running)
        } else {
            Scaling::new()
        };
        // Active ReplicaSets sized for another replica count are re-annotated even when
        // their size stays, or every later sync would look like a scaling event.
        if resize {
            for rs in all.iter().filter(|rs| spec_replicas(rs) > 0) {
                let stale = [DESIRED_REPLICAS, MAX_REPLICAS]
                    .iter()
                    .zip([replicas, replicas + surge])
                    .any(|(k, v)| rs.annotations().get(*k) != Some(&v.to_string()));
                if stale {
                    scaling.entry(rs.name_any()).or_insert(spec_replicas(rs));
                }
            }
        }
        for (rs_name, count) in &scaling {
            let Some(rs) = all.iter_mut().find(|rs| &rs.name_any() == rs_name) else {
                continue;
            };
            let from = spec_replicas(rs);
            // Guarded by the version read: a step decided on a stale copy fails with a
            // conflict (and is decided again) instead of repeating a scaling and its event.
            let patch = json!({"spec": {"replicas": count}, "metadata": {
                "resourceVersion": rs.resource_version(),
                "annotations": {DESIRED_REPLICAS: replicas.to_string(),
                                MAX_REPLICAS: (replicas + surge).to_string()}}});
            *rs = rs_api
                .patch(rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            if *count == from {
                continue;
            }
            let direction = if *count > from { "up" } else { "down" };
            event(
                &state,
                &d,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {rs_name} from {from} to {count}"),
            )
            .await;
        }
    }

    // History: old, empty ReplicaSets beyond revisionHistoryLimit go, oldest first.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut empty_old: Vec<&ReplicaSet> = all
        .iter()
        .filter(|rs| Some(rs.uid()) != new_rs.as_ref().map(|n| n.uid()))
        .filter(|rs| spec_replicas(rs) == 0 && status_of(rs).0 == 0)
        .collect();
    if empty_old.len() > limit {
        empty_old.sort_by_key(|rs| revision_of(rs));
        let excess = empty_old.len() - limit;
        for rs in empty_old.into_iter().take(excess) {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match rs_api.delete(&rs.name_any(), &params).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Status and conditions.
    let mut status = counts(&d, new_rs.as_ref(), &all);
    let (_, max_unavailable) = surge_and_unavailable(&d);
    let available = status["availableReplicas"].as_i64().unwrap_or(0) as i32;
    let mut conditions = Vec::new();
    conditions.push(if available >= replicas - max_unavailable {
        condition(
            &d,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            &d,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    });
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let previous = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .cloned();
    let mut requeue = None;
    // There is no new ReplicaSet only while paused.
    let progressing = match new_rs.as_ref().filter(|_| !paused) {
        None => condition(
            &d,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        ),
        Some(rs) if complete(&d, rs, &all) => condition(
            &d,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!(
                "ReplicaSet \"{}\" has successfully progressed.",
                rs.name_any()
            ),
            now,
        ),
        Some(rs) => {
            let rs_name = rs.name_any();
            let moved = previous.as_ref().is_none_or(|p| {
                p.reason.as_deref() == Some("DeploymentPaused")
                    || p.reason.as_deref() == Some("NewReplicaSetAvailable")
                    || p.message
                        .as_deref()
                        .is_none_or(|m| !m.contains(&format!("\"{rs_name}\"")))
            }) || d
                .status
                .as_ref()
                .map(|s| (s.updated_replicas, s.available_replicas, s.ready_replicas))
                != Some((
                    status["updatedReplicas"].as_i64().map(|v| v as i32),
                    status["availableReplicas"].as_i64().map(|v| v as i32),
                    status["readyReplicas"].as_i64().map(|v| v as i32),
                ));
            let last_update = previous
                .as_ref()
                .and_then(|p| p.last_update_time.as_ref().map(|t| t.0))
                .unwrap_or(now);
            let timed_out =
                !moved && last_update + jiff::SignedDuration::from_secs(deadline as i64) <= now;
            if timed_out {
                condition(
                    &d,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    now,
                )
            } else {
                if !moved {
                    let left = now.duration_until(
                        last_update + jiff::SignedDuration::from_secs(deadline as i64),
                    );
                    requeue = Duration::try_from(left).ok();
                }
                let message = if progressing_reason == "NewReplicaSetCreated" {
                    format!("Created new replica set \"{rs_name}\"")
                } else if progressing_reason == "FoundNewReplicaSet" {
                    format!("Found new replica set \"{rs_name}\"")
                } else {
                    format!("ReplicaSet \"{rs_name}\" is progressing.")
                };
                let mut c = condition(&d, "Progressing", "True", progressing_reason, message, now);
                if moved {
                    c.last_update_time = Some(Time(now));
                }
                c
            }
        }
    };
    conditions.push(progressing);
    // Keep any condition type this controller does not own (ReplicaFailure).
    status["conditions"] = json!(conditions);
    if let Some(collisions) = d.status.as_ref().and_then(|s| s.collision_count) {
        status["collisionCount"] = json!(collisions);
    }
    let current = serde_json::to_value(d.status.clone().unwrap_or_default()).unwrap_or_default();
    let changed = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .any(|k| current[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0))
        || strip_times(&current["conditions"]) != strip_times(&status["conditions"]);
    if changed {
        let api: Api<Deployment> = Api::namespaced(client, &namespace);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(requeue.unwrap_or(Duration::from_secs(300))))
}

fn strip_times(conditions: &serde_json::Value) -> serde_json::Value {
    let mut c = conditions.clone();
    if let Some(list) = c.as_array_mut() {
        for item in list {
            if let Some(m) = item.as_object_mut() {
                m.remove("lastUpdateTime");
                m.remove("lastTransitionTime");
            }
        }
    }
    c
}

fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn create_new_rs(
    state: &DeploymentContext,
    d: &Deployment,
    rs_api: &Api<ReplicaSet>,
    old: &[ReplicaSet],
    max_revision: i64,
    replicas: i32,
    surge: i32,
) -> Result<ReplicaSet, ReconcileError> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision_count);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), (max_revision + 1).to_string());
    annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
    // The first ReplicaSet starts at full size; later ones start at zero and are grown by
    // the rollout (a Recreate one once the old pods are gone).
    let old_total: i32 = old.iter().map(spec_replicas).sum();
    let initial = if is_recreate(d) || old_total > 0 {
        0
    } else {
        replicas
    };
    let name = format!("{}-{}", d.name_any(), hash);
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "Deployment",
                &d.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(initial),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    match rs_api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            if initial > 0 {
                event(
                    state,
                    d,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {initial}"),
                )
                .await;
            }
            Ok(created)
        }
        Err(e) if is_status(&e, 409) => {
            // A ReplicaSet of that name exists: ours from a stale cache, or someone else's
            // (a hash collision, resolved by counting it and hashing again).
            let existing = rs_api.get(&name).await?;
            let ours = pods::controller_of(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(without_hash)
                == Some(without_hash(&spec.template));
            if ours && same {
                return Ok(existing);
            }
            let api: Api<Deployment> =
                Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
            let patch = json!({"status": {"collisionCount": collision_count.unwrap_or(0) + 1}});
            api.patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Err(ReconcileError::Retry(format!(
                "replica set {name} exists; hashing again"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };

    fn deployment(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn a_rolling_update_surges_first_then_trades_old_for_new() {
        let d = deployment(3, 1, 0);
        let old = [rs("old", 3, 3, 1)];
        // Step 1: the new ReplicaSet may add one pod beyond the three.
        let s = rolling_step(&d, &rs("new", 0, 0, 2), &old);
        assert_eq!(s.get("new"), Some(&1));
        assert_eq!(s.get("old"), None);
        // Step 2: once it is available, one old pod may go.
        let s = rolling_step(&d, &rs("new", 1, 1, 2), &old);
        assert_eq!(s.get("old"), Some(&2));
    }

    #[test]
    fn max_unavailable_lets_old_pods_go_before_new_ones_are_ready() {
        let d = deployment(4, 0, 2);
        let s = rolling_step(&d, &rs("new", 0, 0, 2), &[rs("old", 4, 4, 1)]);
        assert_eq!(s.get("old"), Some(&2));
        assert_eq!(s.get("new"), None);
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let mut d = deployment(3, 0, 0);
        let ru = d
            .spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update
            .as_mut()
            .unwrap();
        ru.max_surge = Some(IntOrString::String("25%".into()));
        ru.max_unavailable = Some(IntOrString::String("25%".into()));
        assert_eq!(surge_and_unavailable(&d), (1, 0));
        assert_eq!(surge_and_unavailable(&deployment(3, 0, 0)), (0, 1));
    }

    #[test]
    fn recreate_waits_for_old_pods_before_growing_the_new_set() {
        let d = deployment(2, 0, 0);
        let new = rs("new", 0, 0, 2);
        assert_eq!(
            recreate_step(&d, &new, &[rs("old", 2, 2, 1)], true).get("old"),
            Some(&0)
        );
        assert!(recreate_step(&d, &new, &[rs("old", 0, 0, 1)], true).is_empty());
        assert_eq!(
            recreate_step(&d, &new, &[rs("old", 0, 0, 1)], false).get("new"),
            Some(&2)
        );
    }

    fn sized_for(mut rs: ReplicaSet, desired: i32, max: i32) -> ReplicaSet {
        rs.metadata.annotations = Some(
            [
                (DESIRED_REPLICAS.to_owned(), desired.to_string()),
                (MAX_REPLICAS.to_owned(), max.to_string()),
            ]
            .into(),
        );
        rs
    }

    #[test]
    fn scaling_mid_rollout_spreads_the_change_in_proportion() {
        // 10 replicas with maxSurge 3, rolled halfway: old 8 + new 5 = 13 (the maximum).
        let old = sized_for(rs("old", 8, 8, 1), 10, 13);
        let new = sized_for(rs("new", 5, 0, 2), 10, 13);
        let d = deployment(15, 3, 0);
        assert!(is_scaling_event(&d, &[&old, &new]));
        // 15 + 3 = 18 allowed, 5 more: 8·18/13 ≈ 11 (+3), 5·18/13 ≈ 7 (+2).
        let s = proportional_scale(&d, Some(&new), std::slice::from_ref(&old));
        assert_eq!(s.get("old"), Some(&11));
        assert_eq!(s.get("new"), Some(&7));
        // Scaling down to 5: 5 + 3 = 8 allowed, 5 fewer, the larger set giving more.
        let d = deployment(5, 3, 0);
        let s = proportional_scale(&d, Some(&new), std::slice::from_ref(&old));
        let total: i32 = s.values().sum();
        assert_eq!(total, 8);
        assert!(s["old"] > s["new"], "{s:?}");
    }

    #[test]
    fn a_single_active_set_takes_the_whole_count_and_a_saturated_new_one_ends_the_old() {
        let old = sized_for(rs("old", 0, 0, 1), 3, 4);
        let new = sized_for(rs("new", 3, 3, 2), 3, 4);
        let d = deployment(6, 1, 0);
        assert!(is_scaling_event(&d, &[&old, &new]));
        let s = proportional_scale(&d, Some(&new), std::slice::from_ref(&old));
        assert_eq!(s, Scaling::from([("new".to_owned(), 6)]));
        // Same count: nothing is a scaling event.
        assert!(!is_scaling_event(&deployment(3, 1, 0), &[&old, &new]));
        let leftover = sized_for(rs("old", 1, 1, 1), 3, 4);
        let saturated = sized_for(rs("new", 3, 3, 2), 3, 4);
        let s = proportional_scale(
            &deployment(3, 1, 0),
            Some(&saturated),
            std::slice::from_ref(&leftover),
        );
        assert_eq!(s, Scaling::from([("old".to_owned(), 0)]));
    }
}
