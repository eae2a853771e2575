//! The StatefulSet controller: keeps `spec.replicas` pods with stable identities
//! (`<set>-<ordinal>`, hostname and subdomain, one PersistentVolumeClaim per claim template
//! and ordinal), creates and removes them in ordinal order (OrderedReady) or all at once
//! (Parallel), rolls them onto new templates (RollingUpdate from the highest ordinal down to
//! the partition, or OnDelete), keeps the template history as ControllerRevisions, and
//! reports replica counts and revisions in status.
//!
//! The decisions are pure functions (`plan`, `revisions_to_delete`, `new_pod`, `claims_for`,
//! `desired_claim_owners`); `reconcile` carries them out through the API. The revisions
//! themselves (data, numbering, collisions) are `history`'s, shared with the DaemonSet
//! controller. Pods and revisions are read from their informers' namespace indexes; claiming
//! is `pods`'s. Pod creations and deletions in flight are remembered so a reconcile that runs
//! before the pod watch has caught up does not repeat them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api_errors::{is_status, not_found, settle_status_write};
use crate::events::{EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::history::{self, RevisionOwner};
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// The pod label naming the pod (so a Service can select one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The pod label naming the ControllerRevision the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The ControllerRevision label holding its hash (as `pkg/controller/history` sets it).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The claim retention choices of `persistentVolumeClaimRetentionPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `whenDeleted: Delete`: the claims go with the set.
    pub delete_when_deleted: bool,
    /// `whenScaled: Delete`: the claims of a scaled-down ordinal go with its pod.
    pub delete_when_scaled: bool,
}

/// The status fields this controller writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetStatus {
    pub observed_generation: i64,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub current_replicas: i32,
    pub updated_replicas: i32,
    pub current_revision: String,
    pub update_revision: String,
    pub collision_count: i32,
}

impl SetStatus {
    /// What the set's status says now.
    pub fn reported(set: &StatefulSet) -> Self {
        let Some(s) = set.status.as_ref() else {
            return SetStatus::default();
        };
        SetStatus {
            observed_generation: s.observed_generation.unwrap_or(0),
            replicas: s.replicas,
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            current_replicas: s.current_replicas.unwrap_or(0),
            updated_replicas: s.updated_replicas.unwrap_or(0),
            current_revision: s.current_revision.clone().unwrap_or_default(),
            update_revision: s.update_revision.clone().unwrap_or_default(),
            collision_count: s.collision_count.unwrap_or(0),
        }
    }
}

/// A StatefulSet with its defaults applied: what the controller decides from.
#[derive(Debug, Clone)]
pub struct SetSpec {
    pub meta: ObjectMeta,
    pub replicas: i32,
    /// The first ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    /// `updateStrategy.type: RollingUpdate` (otherwise OnDelete).
    pub rolling: bool,
    /// `updateStrategy.rollingUpdate.partition`, when `rollingUpdate` is given.
    pub partition: Option<i32>,
    pub min_ready_seconds: i32,
    pub history_limit: i32,
    pub service_name: String,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    pub claim_templates: Vec<PersistentVolumeClaim>,
    pub retention: Retention,
    pub reported: SetStatus,
}

impl SetSpec {
    pub fn of(set: &StatefulSet) -> Self {
        let spec = set.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        let policy = spec
            .persistent_volume_claim_retention_policy
            .unwrap_or_default();
        SetSpec {
            meta: set.metadata.clone(),
            replicas: spec.replicas.unwrap_or(1),
            start: spec.ordinals.and_then(|o| o.start).unwrap_or(0),
            parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
            rolling: strategy.type_.as_deref() != Some("OnDelete"),
            partition: strategy.rolling_update.map(|r| r.partition.unwrap_or(0)),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            history_limit: spec.revision_history_limit.unwrap_or(10),
            service_name: spec.service_name.unwrap_or_default(),
            selector: spec.selector,
            template: spec.template,
            claim_templates: spec.volume_claim_templates.unwrap_or_default(),
            retention: Retention {
                delete_when_deleted: policy.when_deleted.as_deref() == Some("Delete"),
                delete_when_scaled: policy.when_scaled.as_deref() == Some("Delete"),
            },
            reported: SetStatus::reported(set),
        }
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    /// Whether `ordinal` is one the set should have a pod for.
    pub fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start
            && i64::from(ordinal) < i64::from(self.start) + i64::from(self.replicas)
    }

    fn owner_ref(&self) -> OwnerReference {
        pods::controller_ref("apps/v1", "StatefulSet", &self.meta)
    }

    /// The set as the owner of its template history.
    pub fn revision_owner(&self) -> RevisionOwner<'_> {
        RevisionOwner {
            kind: "StatefulSet",
            meta: &self.meta,
            template: &self.template,
            hash_label: REVISION_HASH_LABEL,
            collision_count: Some(self.reported.collision_count),
        }
    }
}

/// The set name and ordinal a pod name spells (`<parent>-<digits>`), if it spells one.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn pod_name(set: &SetSpec, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name())
}

/// The claim of template `template` for the pod of `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// Whether `pod` is (by its name) one of the set's pods.
fn is_member(set: &SetSpec, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or(""))
        .is_some_and(|(parent, _)| parent == set.name())
}

fn ordinal_of(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).map(|(_, o)| o)
}

/// The claims the pod of `ordinal` uses, one per claim template, in template order: named
/// `<template>-<set>-<ordinal>`, labelled with the template's labels and the set's
/// `matchLabels`.
pub fn claims_for(set: &SetSpec, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels = set.selector.match_labels.clone().unwrap_or_default();
    set.claim_templates
        .iter()
        .map(|template| {
            let meta = template.metadata.clone();
            let mut labels = meta.labels.unwrap_or_default();
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(
                        meta.name.as_deref().unwrap_or(""),
                        set.name(),
                        ordinal,
                    )),
                    namespace: Some(set.namespace().to_owned()),
                    labels: Some(labels).filter(|l| !l.is_empty()),
                    annotations: meta.annotations,
                    finalizers: meta.finalizers,
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod of `ordinal` made from `template` (the template of `revision`): named
/// `<set>-<ordinal>`, with its identity labels, hostname and subdomain, owned by the set, and
/// its claims mounted as the volumes named after their templates.
pub fn new_pod(set: &SetSpec, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = pod_name(set, ordinal);
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = Some(set.service_name.clone()).filter(|s| !s.is_empty());
    if !set.claim_templates.is_empty() {
        let mut volumes: Vec<Volume> = set
            .claim_templates
            .iter()
            .zip(claims_for(set, ordinal))
            .map(|(template, claim)| Volume {
                name: template.metadata.name.clone().unwrap_or_default(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.metadata.name.unwrap_or_default(),
                    read_only: Some(false),
                }),
                ..Volume::default()
            })
            .collect();
        let claimed: HashSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
        volumes.extend(
            spec.volumes
                .take()
                .into_iter()
                .flatten()
                .filter(|v| !claimed.contains(&v.name)),
        );
        spec.volumes = Some(volumes);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(set.namespace().to_owned()),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![set.owner_ref()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A revision as the pod plan needs it: its name and the template it records.
#[derive(Debug, Clone)]
pub struct RevisionView {
    pub name: String,
    pub template: PodTemplateSpec,
}

impl RevisionView {
    pub fn of(revision: &ControllerRevision) -> Option<Self> {
        Some(RevisionView {
            name: revision.metadata.name.clone()?,
            template: history::template_of(revision)?,
        })
    }
}

/// The revisions (sorted oldest first) to delete so that at most `revisionHistoryLimit`
/// revisions remain that are neither current, update, nor the revision of a pod (only those
/// count toward the limit, as upstream).
pub fn revisions_to_delete(
    set: &SetSpec,
    revisions: &[ControllerRevision],
    pods: &[&Pod],
    current: &str,
    update: &str,
) -> Vec<String> {
    let mut live: HashSet<&str> = [current, update].into();
    live.extend(pods.iter().filter_map(|p| revision_of(p)));
    let counted: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| !live.contains(n))
        })
        .collect();
    history::history_to_delete(&counted, set.history_limit, |_| false)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && pods::is_available(pod, min_ready_seconds, now)
}

fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    is_terminating(pod) || !is_running_and_available(pod, min_ready_seconds, now)
}

/// The owner references a claim of `pod` should carry under the set's retention policy, or
/// `None` when it already does (or must not be touched: it refers to an earlier set or pod of
/// the same name, or another controller owns it).
pub fn desired_claim_owners(
    set: &SetSpec,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
) -> Option<Vec<OwnerReference>> {
    let set_uid = set.meta.uid.as_deref().unwrap_or("");
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let is_set_ref = |r: &OwnerReference| {
        r.api_version == "apps/v1" && r.kind == "StatefulSet" && r.name == set.name()
    };
    let is_pod_ref =
        |r: &OwnerReference| r.api_version == "v1" && r.kind == "Pod" && r.name == pod_name;
    let stale = refs
        .iter()
        .any(|r| (is_set_ref(r) && r.uid != set_uid) || (is_pod_ref(r) && r.uid != pod_uid));
    if stale {
        return None;
    }
    let retention = set.retention;
    let retain_all = !retention.delete_when_deleted && !retention.delete_when_scaled;
    let other_controller = !retain_all
        && refs
            .iter()
            .any(|r| !is_set_ref(r) && !is_pod_ref(r) && r.controller == Some(true));
    let mut desired: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_set_ref(r) && !is_pod_ref(r))
        .cloned()
        .collect();
    if !other_controller {
        let scaled_down = !ordinal_of(pod).is_some_and(|o| set.in_range(o));
        if retention.delete_when_scaled && scaled_down {
            desired.push(pods::controller_ref("v1", "Pod", &pod.metadata));
        } else if retention.delete_when_deleted && !scaled_down {
            desired.push(set.owner_ref());
        }
    }
    let key = |r: &OwnerReference| (r.uid.clone(), r.controller, r.block_owner_deletion);
    let mut have: Vec<_> = refs.iter().map(key).collect();
    let mut want: Vec<_> = desired.iter().map(key).collect();
    have.sort();
    want.sort();
    (have != want).then_some(desired)
}

/// One write a reconcile makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create a claim for `pod` (before the pod).
    CreateClaim {
        claim: Box<PersistentVolumeClaim>,
        pod: String,
    },
    CreatePod(Box<Pod>),
    DeletePod {
        name: String,
        uid: Option<String>,
    },
    /// Give a pod back its identity labels.
    Relabel {
        name: String,
        labels: BTreeMap<String, String>,
    },
    /// Set a claim's owner references (retention policy).
    SetClaimOwners {
        claim: String,
        uid: Option<String>,
        owners: Vec<OwnerReference>,
    },
}

/// What one reconcile does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The writes, in order; a failed write stops the rest.
    pub steps: Vec<Step>,
    /// The status to report (collision count left to the caller).
    pub status: SetStatus,
    /// When a ready pod becomes available, so the set is looked at again then.
    pub recheck_after: Option<Duration>,
}

/// The template and revision name a new pod of `ordinal` is made from: the current revision
/// below the partition, the update revision otherwise.
fn versioned<'a>(
    set: &SetSpec,
    current: &'a RevisionView,
    update: &'a RevisionView,
    ordinal: i32,
) -> &'a RevisionView {
    let below = |n: i32| i64::from(ordinal) < i64::from(set.start) + i64::from(n);
    let at_current = match set.partition {
        None => set.rolling && below(set.reported.current_replicas),
        Some(partition) => below(partition),
    };
    if at_current { current } else { update }
}

/// Claims of `ordinal` that do not exist yet, and whether an existing one stands in the way
/// of a new pod (being deleted, or still owned by an earlier pod of that name).
fn missing_claims(
    set: &SetSpec,
    ordinal: i32,
    existing: &BTreeMap<String, PersistentVolumeClaim>,
) -> (Vec<PersistentVolumeClaim>, bool) {
    let mut missing = Vec::new();
    let mut blocked = false;
    let pod = pod_name(set, ordinal);
    for mut claim in claims_for(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match existing.get(&name) {
            None => {
                // The claims of a wanted ordinal go with the set (whenDeleted: Delete).
                if set.retention.delete_when_deleted {
                    claim.metadata.owner_references = Some(vec![set.owner_ref()]);
                }
                missing.push(claim);
            }
            Some(c) => {
                let stale_pod_owner = set.retention.delete_when_scaled
                    && c.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.kind == "Pod" && r.name == pod);
                blocked |= c.metadata.deletion_timestamp.is_some() || stale_pod_owner;
            }
        }
    }
    (missing, blocked)
}

/// Retention fixes for the claims of an existing pod.
fn claim_owner_steps(
    set: &SetSpec,
    pod: &Pod,
    ordinal: i32,
    existing: &BTreeMap<String, PersistentVolumeClaim>,
    steps: &mut Vec<Step>,
) {
    for claim in claims_for(set, ordinal) {
        let Some(found) = claim.metadata.name.as_ref().and_then(|n| existing.get(n)) else {
            continue;
        };
        if let Some(owners) = desired_claim_owners(set, found, pod) {
            steps.push(Step::SetClaimOwners {
                claim: found.metadata.name.clone().unwrap_or_default(),
                uid: found.metadata.uid.clone(),
                owners,
            });
        }
    }
}

/// Counts `pods` into `status` as upstream does: created pods, running-and-ready ones,
/// available ones, and the non-terminating ones on the current and update revisions.
fn count(set: &SetSpec, pods: &[&Pod], current: &str, update: &str, now: Timestamp) -> SetStatus {
    let mut status = SetStatus {
        observed_generation: set.meta.generation.unwrap_or(0),
        current_revision: current.to_owned(),
        update_revision: update.to_owned(),
        collision_count: set.reported.collision_count,
        ..SetStatus::default()
    };
    for pod in pods {
        status.replicas += 1;
        if is_running_and_ready(pod) {
            status.ready_replicas += 1;
            if is_running_and_available(pod, set.min_ready_seconds, now) {
                status.available_replicas += 1;
            }
        }
        if !is_terminating(pod) {
            let revision = revision_of(pod);
            if revision == Some(current) {
                status.current_replicas += 1;
            }
            if revision == Some(update) {
                status.updated_replicas += 1;
            }
        }
    }
    status
}

/// When the rolling update is done (every wanted pod exists, is ready and on the update
/// revision), the update revision becomes the current one.
pub fn complete_rolling_update(set: &SetSpec, status: &mut SetStatus) {
    if set.rolling
        && status.updated_replicas == set.replicas
        && status.ready_replicas == set.replicas
        && status.replicas == set.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Decides what to do for `set` given the pods it owns, the claims of its namespace and its
/// current and update revisions.
pub fn plan(
    set: &SetSpec,
    current: &RevisionView,
    update: &RevisionView,
    pods: &[&Pod],
    claims: &BTreeMap<String, PersistentVolumeClaim>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let count_wanted = set.replicas.max(0) as usize;
    let mut replicas: Vec<Option<&Pod>> = vec![None; count_wanted];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ordinal) = ordinal_of(pod) else {
            continue;
        };
        if set.in_range(ordinal) {
            replicas[(ordinal - set.start) as usize] = Some(*pod);
        } else {
            condemned.push((ordinal, *pod));
        }
    }
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    let mrs = set.min_ready_seconds;
    let present: Vec<&Pod> = replicas
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().map(|(_, p)| *p))
        .collect();
    plan.status = count(set, &present, &current.name, &update.name, now);
    if mrs > 0 {
        plan.recheck_after = present
            .iter()
            .filter_map(|p| pods::ready_since(p))
            .map(|since| since + jiff::SignedDuration::from_secs(i64::from(mrs)))
            .filter(|at| *at > now)
            .min()
            .and_then(|at| Duration::try_from(now.duration_until(at)).ok());
    }
    if set.meta.deletion_timestamp.is_some() {
        return plan;
    }
    let monotonic = !set.parallel;
    let steps = &mut plan.steps;

    // The pods that should exist, lowest ordinal first.
    for (index, slot) in replicas.iter().enumerate() {
        let ordinal = set.start + index as i32;
        match slot {
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") => {
                // Deleted now, made again once it is gone.
                if !is_terminating(pod) {
                    steps.push(Step::DeletePod {
                        name: pod.name_any(),
                        uid: pod.metadata.uid.clone(),
                    });
                }
                if monotonic {
                    return plan;
                }
            }
            None => {
                let (missing, blocked) = missing_claims(set, ordinal, claims);
                if !blocked {
                    let pod = pod_name(set, ordinal);
                    steps.extend(missing.into_iter().map(|claim| Step::CreateClaim {
                        claim: Box::new(claim),
                        pod: pod.clone(),
                    }));
                    let revision = versioned(set, current, update, ordinal);
                    let pod = new_pod(set, &revision.template, &revision.name, ordinal);
                    steps.push(Step::CreatePod(Box::new(pod)));
                }
                if monotonic {
                    return plan;
                }
            }
            Some(pod) => {
                if phase(pod) == "Pending" {
                    let (missing, _) = missing_claims(set, ordinal, claims);
                    steps.extend(missing.into_iter().map(|claim| Step::CreateClaim {
                        claim: Box::new(claim),
                        pod: pod.name_any(),
                    }));
                }
                if monotonic && is_unavailable(pod, mrs, now) {
                    return plan;
                }
                let name = pod.name_any();
                let labels = pod.metadata.labels.as_ref();
                if labels.and_then(|l| l.get(POD_NAME_LABEL)) != Some(&name) {
                    steps.push(Step::Relabel {
                        labels: [
                            (POD_NAME_LABEL.to_owned(), name.clone()),
                            (POD_INDEX_LABEL.to_owned(), ordinal.to_string()),
                        ]
                        .into(),
                        name,
                    });
                }
                claim_owner_steps(set, pod, ordinal, claims, steps);
            }
        }
    }

    // Claims of the pods about to go are handed to them (whenScaled: Delete).
    for (ordinal, pod) in &condemned {
        claim_owner_steps(set, pod, *ordinal, claims, steps);
    }

    // Surplus pods go highest ordinal first; in order, only once every lower pod is
    // available, one at a time, and an unavailable one only if it is the first such.
    let first_unavailable = condemned
        .iter()
        .rev()
        .find(|(_, p)| is_unavailable(p, mrs, now))
        .map(|(o, _)| *o);
    for (ordinal, pod) in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic
            && !is_running_and_available(pod, mrs, now)
            && first_unavailable != Some(*ordinal)
        {
            return plan;
        }
        steps.push(Step::DeletePod {
            name: pod.name_any(),
            uid: pod.metadata.uid.clone(),
        });
        if monotonic {
            return plan;
        }
    }

    if !set.rolling {
        return plan;
    }
    // Rolling update: the highest ordinal not on the update revision is deleted (and made
    // again from it), one at a time, waiting for each to be available again; ordinals below
    // the partition stay.
    let update_min = set.partition.unwrap_or(0).max(0) as usize;
    for slot in replicas.iter().skip(update_min).rev() {
        let Some(pod) = slot else {
            return plan;
        };
        if revision_of(pod) != Some(update.name.as_str()) && !is_terminating(pod) {
            steps.push(Step::DeletePod {
                name: pod.name_any(),
                uid: pod.metadata.uid.clone(),
            });
            if revision_of(pod) == Some(current.name.as_str()) {
                plan.status.current_replicas -= 1;
            }
            return plan;
        }
        if is_unavailable(pod, mrs, now) {
            return plan;
        }
    }
    plan
}

/// Sorts `objects` of the set's namespace into owned (adoptions included: the plan counts
/// them), to adopt (orphans that match the selector and `member`) and to release (owned ones
/// that no longer match).
pub fn claim<'a, K: Resource + 'a>(
    set: &SetSpec,
    objects: impl IntoIterator<Item = &'a K>,
    member: impl Fn(&K) -> bool,
) -> pods::Claim<'a, K> {
    let selector = pods::controller_selector(&set.selector);
    let mut claimed = pods::claim(&set.meta, selector.as_ref(), objects, member);
    claimed.owned.extend(claimed.adopt.iter().copied());
    claimed
}

/// The state shared by reconciles.
struct SetContext {
    ctx: ControllerContext,
    /// The pods by namespace (what a set may own or adopt).
    pods: Indexes<Pod>,
    /// The ControllerRevisions by namespace (what a set may own or adopt).
    revisions: Indexes<ControllerRevision>,
    expectations: Expectations,
    recorder: EventRecorder,
}

/// Runs the StatefulSet controller until the streams end.
pub fn run(
    ctx: ControllerContext,
    stateful_sets: &mut Informer<StatefulSet>,
    pods: &mut Informer<Pod>,
    revisions: &mut Informer<ControllerRevision>,
) -> impl std::future::Future<Output = ()> + use<> {
    let recorder = ctx.recorder("statefulset-controller");
    let state = Arc::new(SetContext {
        ctx,
        pods: pods.indexes(),
        revisions: revisions.indexes(),
        expectations: Expectations::default(),
        recorder,
    });
    let controller =
        Controller::for_shared_stream(stateful_sets.subscribe(), stateful_sets.store())
            .owns_shared_stream(pods.subscribe())
            .owns_shared_stream(revisions.subscribe());
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_set: Arc<StatefulSet>, err: &ReconcileError, _state: Arc<SetContext>) -> Action {
    crate::retry_after_failure("statefulset reconcile failed", err)
}

async fn reconcile(
    obj: Arc<StatefulSet>,
    state: Arc<SetContext>,
) -> Result<Action, ReconcileError> {
    let set = SetSpec::of(&obj);
    let namespace = set.namespace().to_owned();
    // In-memory state (expectations, backoff) is keyed by uid, so a same-named successor
    // starts afresh.
    let key = obj
        .uid()
        .unwrap_or_else(|| format!("{namespace}/{}", set.name()));
    let client = state.ctx.client.clone();
    let pods_here = state.pods.in_namespace(&namespace);
    if !state.expectations.satisfied(&key, &pods_here) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let owner = set.owner_ref();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let revision_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);

    let pod_claim = claim(&set, pods_here.iter().map(AsRef::as_ref), |p| {
        is_member(&set, p)
    });
    let (_, failure) = pods::adopt_and_release(
        &pod_api,
        &owner,
        pod_claim.adopt.clone(),
        pod_claim.release.clone(),
        |_, _| {},
    )
    .await;
    if let Some(e) = failure {
        return Err(e.into());
    }

    let revisions_here = state.revisions.in_namespace(&namespace);
    let revision_claim = claim(&set, revisions_here.iter().map(AsRef::as_ref), |_| true);
    let (_, failure) = pods::adopt_and_release(
        &revision_api,
        &owner,
        revision_claim.adopt.clone(),
        revision_claim.release.clone(),
        |_, _| {},
    )
    .await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut revisions: Vec<ControllerRevision> =
        revision_claim.owned.iter().map(|r| (*r).clone()).collect();
    history::sort_revisions(&mut revisions);

    let settled =
        history::settle_update_revision(&revision_api, &set.revision_owner(), &revisions).await?;
    let update = settled.revision;
    let collision_count = settled.collision_count.unwrap_or(0);
    let current = revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(set.reported.current_revision.as_str()))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let malformed = |r: &ControllerRevision| {
        ReconcileError::Retry(format!("revision {} records no pod template", r.name_any()))
    };
    let current_view = RevisionView::of(&current).ok_or_else(|| malformed(&current))?;
    let update_view = RevisionView::of(&update).ok_or_else(|| malformed(&update))?;

    let claims: BTreeMap<String, PersistentVolumeClaim> = if set.claim_templates.is_empty() {
        BTreeMap::new()
    } else {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect()
    };

    let plan = plan(
        &set,
        &current_view,
        &update_view,
        &pod_claim.owned,
        &claims,
        Timestamp::now(),
    );
    let failure = carry_out(&state, &obj, &set, &key, &plan.steps).await;

    let mut status = plan.status.clone();
    status.collision_count = collision_count;
    complete_rolling_update(&set, &mut status);
    if status != set.reported {
        write_status(&client, &set, &status).await?;
    }

    for name in revisions_to_delete(
        &set,
        &revisions,
        &pod_claim.owned,
        &current_view.name,
        &update_view.name,
    ) {
        match revision_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut requeue = plan.recheck_after;
    if set.min_ready_seconds > 0 && status.available_replicas != set.replicas {
        let after = Duration::from_secs(set.min_ready_seconds.unsigned_abs().into());
        requeue = Some(requeue.map_or(after, |r| r.min(after)));
    }
    Ok(Action::requeue(requeue.unwrap_or(Duration::from_secs(300))))
}

/// Makes the writes of a plan in order, recording events; stops at the first failure and
/// returns it.
async fn carry_out(
    state: &SetContext,
    obj: &StatefulSet,
    set: &SetSpec,
    key: &str,
    steps: &[Step],
) -> Option<ReconcileError> {
    let client = &state.ctx.client;
    let namespace = set.namespace();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let reference = obj.object_ref(&());
    let set_name = set.name();
    let event = |type_: EventType, reason: &'static str, action: &'static str, note: String| {
        let reference = reference.clone();
        async move {
            state
                .recorder
                .record(&reference, type_, reason, action, note)
                .await;
        }
    };
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    let mut failure = None;
    for step in steps {
        match step {
            Step::CreateClaim { claim, pod } => {
                let claim_name = claim.name_any();
                match claim_api.create(&PostParams::default(), claim).await {
                    Ok(_) => {
                        event(
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success"),
                        )
                        .await;
                    }
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => {
                        event(
                            EventType::Warning,
                            "FailedCreate",
                            "Create",
                            format!("create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"),
                        )
                        .await;
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            Step::CreatePod(pod) => {
                let name = pod.name_any();
                match pod_api.create(&PostParams::default(), pod).await {
                    Ok(p) => {
                        created.extend(p.metadata.uid);
                        event(
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("create Pod {name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                    }
                    Err(e) => {
                        if !is_status(&e, 409) {
                            event(
                                EventType::Warning,
                                "FailedCreate",
                                "Create",
                                format!(
                                    "create Pod {name} in StatefulSet {set_name} failed error: {e}"
                                ),
                            )
                            .await;
                        }
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            Step::DeletePod { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match pod_api.delete(name, &params).await {
                    Ok(_) => {
                        deleted.extend(uid.clone());
                        event(
                            EventType::Normal,
                            "SuccessfulDelete",
                            "Delete",
                            format!("delete Pod {name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                    }
                    Err(e) if not_found(&e) => {}
                    Err(e) => {
                        event(
                            EventType::Warning,
                            "FailedDelete",
                            "Delete",
                            format!(
                                "delete Pod {name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        )
                        .await;
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            Step::Relabel { name, labels } => {
                let patch = json!({"metadata": {"labels": labels}});
                match pod_api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        event(
                            EventType::Normal,
                            "SuccessfulUpdate",
                            "Update",
                            format!("update Pod {name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                    }
                    Err(e) if not_found(&e) => {}
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            Step::SetClaimOwners { claim, uid, owners } => {
                let patch = json!({"metadata": {"ownerReferences": owners, "uid": uid}});
                match claim_api
                    .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
        }
    }
    state.expectations.expect(key, created, deleted);
    failure
}

async fn write_status(
    client: &kube::Client,
    set: &SetSpec,
    status: &SetStatus,
) -> Result<(), ReconcileError> {
    let patch = json!({"metadata": {"resourceVersion": set.meta.resource_version}, "status": {
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "currentReplicas": status.current_replicas,
        "updatedReplicas": status.updated_replicas,
        "currentRevision": status.current_revision,
        "updateRevision": status.update_revision,
        "collisionCount": status.collision_count,
    }});
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), set.namespace());
    let written = api
        .patch_status(set.name(), &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    Ok(settle_status_write(written)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::{owned_by, pod, ready};
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetOrdinals,
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
        StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    fn sts(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("sts-uid".into()),
                generation: Some(2),
                annotations: Some(
                    [("kubernetes.io/change-cause".to_owned(), "v2".to_owned())].into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..LabelSelector::default()
                },
                service_name: Some("web-svc".into()),
                template: template("nginx:2"),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(0),
                        max_unavailable: None,
                    }),
                }),
                revision_history_limit: Some(10),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn set(replicas: i32) -> SetSpec {
        SetSpec::of(&sts(replicas))
    }

    fn claim_template(name: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("tier".to_owned(), "storage".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        }
    }

    fn with_claims(mut set: SetSpec) -> SetSpec {
        set.claim_templates = vec![claim_template("data")];
        set
    }

    /// The current revision (nginx:1) and the update revision (the set's nginx:2).
    fn revisions() -> (RevisionView, RevisionView) {
        (
            RevisionView {
                name: "web-old".into(),
                template: template("nginx:1"),
            },
            RevisionView {
                name: "web-new".into(),
                template: template("nginx:2"),
            },
        )
    }

    /// A pod of the set at `revision`, running and ready when `is_ready` (else pending).
    fn member(set: &SetSpec, ordinal: i32, revision: &str, is_ready: bool) -> Pod {
        let name = pod_name(set, ordinal);
        let p = pod(
            &name,
            &[
                ("app", "web"),
                (REVISION_LABEL, revision),
                (POD_NAME_LABEL, &name),
            ],
        );
        let p = owned_by(p, &set.owner_ref());
        if is_ready { ready(p, t0()) } else { p }
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(t0()));
        p
    }

    fn phase_of(mut p: Pod, phase: &str) -> Pod {
        if let Some(s) = p.status.as_mut() {
            s.phase = Some(phase.into());
        }
        p
    }

    fn run_plan(set: &SetSpec, pods: &[Pod], claims: &[PersistentVolumeClaim]) -> Plan {
        let (current, update) = revisions();
        let refs: Vec<&Pod> = pods.iter().collect();
        let claims = claims.iter().map(|c| (c.name_any(), c.clone())).collect();
        plan(set, &current, &update, &refs, &claims, t0())
    }

    fn summary(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::CreateClaim { claim, pod } => format!("claim {} for {pod}", claim.name_any()),
                Step::CreatePod(p) => format!("create {}", p.name_any()),
                Step::DeletePod { name, .. } => format!("delete {name}"),
                Step::Relabel { name, .. } => format!("relabel {name}"),
                Step::SetClaimOwners { claim, .. } => format!("owners {claim}"),
            })
            .collect()
    }

    fn created(plan: &Plan) -> Vec<&Pod> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::CreatePod(p) => Some(&**p),
                _ => None,
            })
            .collect()
    }

    fn label<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
        p.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn pod_names_spell_the_set_and_ordinal() {
        assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
        assert_eq!(parent_and_ordinal("my-db-0"), Some(("my-db", 0)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-1a"), None);
        assert_eq!(parent_and_ordinal("web-99999999999"), None);
        assert_eq!(claim_name("data", "web", 3), "data-web-3");
    }

    #[test]
    fn a_new_pod_has_its_identity_and_claims() {
        let mut s = set(5);
        s.claim_templates = vec![claim_template("data"), claim_template("logs")];
        let mut t = template("nginx:2");
        let spec = t.spec.as_mut().unwrap();
        spec.volumes = Some(vec![
            Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                name: "cache".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]);
        let p = new_pod(&s, &t, "web-abc", 3);
        assert_eq!(p.metadata.name.as_deref(), Some("web-3"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(label(&p, "app"), Some("web"));
        assert_eq!(label(&p, POD_NAME_LABEL), Some("web-3"));
        assert_eq!(label(&p, POD_INDEX_LABEL), Some("3"));
        assert_eq!(label(&p, REVISION_LABEL), Some("web-abc"));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "sts-uid")
        );
        assert_eq!(owner.controller, Some(true));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-3"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
        let volumes: Vec<(&str, Option<&str>)> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            volumes,
            [
                ("data", Some("data-web-3")),
                ("logs", Some("logs-web-3")),
                ("cache", None)
            ]
        );
        let claims = claims_for(&s, 3);
        assert_eq!(claims[1].name_any(), "logs-web-3");
        let labels = claims[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("storage"));
    }

    #[test]
    fn ordered_ready_creates_each_ordinal_after_the_lower_ones_are_ready() {
        let s = with_claims(set(3));
        let p = run_plan(&s, &[], &[]);
        assert_eq!(
            summary(&p.steps),
            ["claim data-web-0 for web-0", "create web-0"]
        );

        let claims = claims_for(&s, 0);
        let pending = member(&s, 0, "web-new", false);
        assert!(run_plan(&s, &[pending], &claims).steps.is_empty());

        let running = member(&s, 0, "web-new", true);
        let p = run_plan(&s, &[running], &claims);
        assert_eq!(
            summary(&p.steps),
            ["claim data-web-1 for web-1", "create web-1"]
        );
    }

    #[test]
    fn ordinals_start_where_the_spec_says() {
        let mut obj = sts(2);
        obj.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(5) });
        let s = SetSpec::of(&obj);
        let first = member(&s, 5, "web-new", true);
        let p = run_plan(&s, &[first], &[]);
        assert_eq!(summary(&p.steps), ["create web-6"]);
        let out_of_range = member(&s, 0, "web-new", true);
        let p = run_plan(&s, &[member(&s, 5, "web-new", true), out_of_range], &[]);
        assert_eq!(summary(&p.steps), ["create web-6"]);
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_ordinal_once_the_rest_are_ready() {
        let s = set(1);
        let all_ready: Vec<Pod> = (0..3).map(|o| member(&s, o, "web-new", true)).collect();
        assert_eq!(
            summary(&run_plan(&s, &all_ready, &[]).steps),
            ["delete web-2"]
        );

        let mut pods = all_ready.clone();
        pods[2] = terminating(pods[2].clone());
        assert!(
            run_plan(&s, &pods, &[]).steps.is_empty(),
            "waits for web-2 to go"
        );

        let mut pods = all_ready.clone();
        pods[0] = member(&s, 0, "web-new", false);
        assert!(run_plan(&s, &pods, &[]).steps.is_empty(), "waits for web-0");

        // An unready surplus pod goes only if it is the lowest unready one.
        let mut pods = all_ready.clone();
        pods[2] = member(&s, 2, "web-new", false);
        assert_eq!(summary(&run_plan(&s, &pods, &[]).steps), ["delete web-2"]);
        pods[1] = member(&s, 1, "web-new", false);
        assert!(run_plan(&s, &pods, &[]).steps.is_empty());
    }

    #[test]
    fn parallel_creates_and_deletes_without_waiting() {
        let mut obj = sts(3);
        obj.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        let s = SetSpec::of(&obj);
        let p = run_plan(&s, &[], &[]);
        assert_eq!(
            summary(&p.steps),
            ["create web-0", "create web-1", "create web-2"]
        );

        let mut obj = sts(1);
        obj.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        let s = SetSpec::of(&obj);
        let pods: Vec<Pod> = (0..3).map(|o| member(&s, o, "web-new", false)).collect();
        assert_eq!(
            summary(&run_plan(&s, &pods, &[]).steps),
            ["delete web-2", "delete web-1"]
        );
    }

    #[test]
    fn a_failed_pod_is_deleted_and_made_again_once_gone() {
        let s = set(2);
        let failed = phase_of(member(&s, 0, "web-new", false), "Failed");
        assert_eq!(
            summary(&run_plan(&s, &[failed], &[]).steps),
            ["delete web-0"]
        );
        assert_eq!(summary(&run_plan(&s, &[], &[]).steps), ["create web-0"]);
    }

    #[test]
    fn rolling_update_replaces_the_highest_outdated_ordinal_one_at_a_time() {
        let s = set(3);
        let old: Vec<Pod> = (0..3).map(|o| member(&s, o, "web-old", true)).collect();
        let p = run_plan(&s, &old, &[]);
        assert_eq!(summary(&p.steps), ["delete web-2"]);
        assert_eq!(p.status.current_replicas, 2);
        assert_eq!(p.status.updated_replicas, 0);

        // Made again from the update revision.
        let p = run_plan(&s, &old[..2], &[]);
        let new = created(&p);
        assert_eq!(label(new[0], REVISION_LABEL), Some("web-new"));
        let image = new[0].spec.as_ref().unwrap().containers[0].image.as_deref();
        assert_eq!(image, Some("nginx:2"));

        let mut pods = old.clone();
        pods[2] = member(&s, 2, "web-new", false);
        assert!(run_plan(&s, &pods, &[]).steps.is_empty(), "waits for web-2");
        pods[2] = member(&s, 2, "web-new", true);
        assert_eq!(summary(&run_plan(&s, &pods, &[]).steps), ["delete web-1"]);
    }

    #[test]
    fn the_partition_keeps_lower_ordinals_on_the_current_revision() {
        let mut obj = sts(3);
        let strategy = obj.spec.as_mut().unwrap().update_strategy.as_mut().unwrap();
        strategy.rolling_update.as_mut().unwrap().partition = Some(2);
        let s = SetSpec::of(&obj);
        let pods = [
            member(&s, 0, "web-old", true),
            member(&s, 1, "web-old", true),
            member(&s, 2, "web-new", true),
        ];
        assert!(run_plan(&s, &pods, &[]).steps.is_empty());
        let p = run_plan(&s, &pods[..1], &[]);
        assert_eq!(label(created(&p)[0], REVISION_LABEL), Some("web-old"));
        let p = run_plan(&s, &pods[..2], &[]);
        assert_eq!(label(created(&p)[0], REVISION_LABEL), Some("web-new"));
        // Not complete: the update stops at the partition.
        let mut status = run_plan(&s, &pods, &[]).status;
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.current_revision, "web-old");
    }

    #[test]
    fn on_delete_only_remakes_deleted_pods_from_the_update_revision() {
        let mut obj = sts(2);
        obj.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        let s = SetSpec::of(&obj);
        let pods = [
            member(&s, 0, "web-old", true),
            member(&s, 1, "web-old", true),
        ];
        assert!(run_plan(&s, &pods, &[]).steps.is_empty());
        let p = run_plan(&s, &pods[..1], &[]);
        assert_eq!(label(created(&p)[0], REVISION_LABEL), Some("web-new"));
    }

    #[test]
    fn status_counts_pods_and_promotes_the_update_revision_when_done() {
        let s = set(3);
        let pods = [
            member(&s, 0, "web-old", true),
            member(&s, 1, "web-new", true),
            member(&s, 2, "web-new", false),
        ];
        let mut status = run_plan(&s, &pods, &[]).status;
        complete_rolling_update(&s, &mut status);
        assert_eq!(
            status,
            SetStatus {
                observed_generation: 2,
                replicas: 3,
                ready_replicas: 2,
                available_replicas: 2,
                current_replicas: 1,
                updated_replicas: 2,
                current_revision: "web-old".into(),
                update_revision: "web-new".into(),
                collision_count: 0,
            }
        );
        let done: Vec<Pod> = (0..3).map(|o| member(&s, o, "web-new", true)).collect();
        let mut status = run_plan(&s, &done, &[]).status;
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.current_revision, "web-new");
        assert_eq!(status.current_replicas, 3);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut s = set(2);
        s.min_ready_seconds = 10;
        let (current, update) = revisions();
        let fresh = ready(
            owned_by(
                pod("web-0", &[("app", "web"), (REVISION_LABEL, "web-new")]),
                &s.owner_ref(),
            ),
            t0() - jiff::SignedDuration::from_secs(4),
        );
        let p = plan(&s, &current, &update, &[&fresh], &BTreeMap::new(), t0());
        assert_eq!(
            (p.status.ready_replicas, p.status.available_replicas),
            (1, 0)
        );
        assert_eq!(p.recheck_after, Some(Duration::from_secs(6)));
        assert!(
            created(&p).is_empty(),
            "web-1 waits for web-0 to be available"
        );
    }

    fn stored(set: &SetSpec, image: &str, revision: i64) -> ControllerRevision {
        let mut s = set.clone();
        s.template = template(image);
        s.reported.collision_count = 0;
        history::new_revision(&s.revision_owner(), revision)
    }

    #[test]
    fn history_keeps_live_revisions_and_the_newest_others() {
        let mut s = set(1);
        s.history_limit = 1;
        let mut history: Vec<ControllerRevision> = (1..=5)
            .map(|n| stored(&s, &format!("nginx:{n}"), n))
            .collect();
        history::sort_revisions(&mut history);
        let names: Vec<String> = history.iter().map(|r| r.name_any()).collect();
        let on_two = member(&s, 0, &names[1], true);
        let doomed = revisions_to_delete(&s, &history, &[&on_two], &names[2], &names[4]);
        assert_eq!(doomed, [names[0].clone()]);
        s.history_limit = 0;
        let doomed = revisions_to_delete(&s, &history, &[&on_two], &names[2], &names[4]);
        assert_eq!(doomed, [names[0].clone(), names[3].clone()]);
    }

    #[test]
    fn claims_follow_the_retention_policy() {
        let mut s = with_claims(set(1));
        s.retention = Retention {
            delete_when_deleted: true,
            delete_when_scaled: true,
        };
        let kept = member(&s, 0, "web-new", true);
        let surplus = member(&s, 1, "web-new", true);
        let mut kept_claim = claims_for(&s, 0).remove(0);
        kept_claim.metadata.uid = Some("c0".into());
        let owners = desired_claim_owners(&s, &kept_claim, &kept).unwrap();
        assert_eq!(owners, [s.owner_ref()]);
        kept_claim.metadata.owner_references = Some(owners);
        assert_eq!(desired_claim_owners(&s, &kept_claim, &kept), None);

        let mut surplus_claim = claims_for(&s, 1).remove(0);
        surplus_claim.metadata.owner_references = Some(vec![s.owner_ref()]);
        let owners = desired_claim_owners(&s, &surplus_claim, &surplus).unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Pod", "uid-web-1")
        );

        // Before the surplus pod goes, its claim is handed to it.
        let p = run_plan(
            &s,
            &[kept.clone(), surplus.clone()],
            &[kept_claim, surplus_claim.clone()],
        );
        assert_eq!(summary(&p.steps), ["owners data-web-1", "delete web-1"]);

        // A claim another controller owns is left alone.
        let mut foreign = surplus_claim.clone();
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            uid: "someone".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        assert_eq!(desired_claim_owners(&s, &foreign, &surplus), None);

        // Retain: the set's and pod's references are removed.
        s.retention = Retention::default();
        assert_eq!(
            desired_claim_owners(&s, &surplus_claim, &surplus),
            Some(vec![])
        );
        // New claims of wanted ordinals carry the set's reference when they go with it.
        let mut obj = sts(1);
        obj.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            });
        let s = with_claims(SetSpec::of(&obj));
        match &run_plan(&s, &[], &[]).steps[0] {
            Step::CreateClaim { claim, .. } => {
                assert_eq!(claim.metadata.owner_references, Some(vec![s.owner_ref()]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn orphans_named_for_the_set_are_adopted_and_strays_released() {
        let s = set(2);
        let orphan = pod("web-1", &[("app", "web")]);
        let other_set = pod("webby-0", &[("app", "web")]);
        let relabeled = owned_by(pod("web-0", &[("app", "debug")]), &s.owner_ref());
        let all = [orphan, other_set, relabeled];
        let claimed = claim(&s, all.iter(), |p| is_member(&s, p));
        let names = |v: &[&Pod]| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&claimed.adopt), ["web-1"]);
        assert_eq!(names(&claimed.owned), ["web-1"]);
        assert_eq!(names(&claimed.release), ["web-0"]);
    }

    #[test]
    fn a_pod_missing_its_name_label_is_relabelled() {
        let s = set(1);
        let mut p = member(&s, 0, "web-new", true);
        p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        assert_eq!(summary(&run_plan(&s, &[p], &[]).steps), ["relabel web-0"]);
    }
}
