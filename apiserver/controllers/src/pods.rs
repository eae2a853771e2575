//! What workload controllers know about pods: readiness and availability, which objects a
//! controller owns (`claim`: what it controls, adopts and releases), making a pod from a
//! template, and the order in which surplus pods go — pure functions over k8s-openapi types.
//!
//! Two helpers make the writes every workload controller makes the same way:
//! `adopt_and_release` patches the controller references a claim decided on, and
//! `create_slow_start` creates pods in batches of 1, 2, 4, … stopping at the first failure,
//! recording SuccessfulCreate/FailedCreate events (upstream's `slowStartBatch`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::labels::{Selector, SelectorExt};

use crate::api_errors::not_found;
use crate::events::{EventRecorder, EventType};

/// Whether a pod is being deleted or has finished (it no longer counts as a replica).
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| {
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(min_ready_seconds as i64) <= now,
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The owner reference a controller puts on what it makes or adopts.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch that adopts an object for `owner` (adding its controller reference) or
/// releases it (removing it). The object's uid rides along so the write lands on this object.
pub fn ownership_patch(
    meta: &ObjectMeta,
    owner: &OwnerReference,
    adopt: bool,
) -> serde_json::Value {
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    if adopt {
        refs.push(owner.clone());
    }
    serde_json::json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}})
}

/// A controller's selector, ready to match labels (kube-core's `Selector`). An empty or
/// malformed selector gives `None`: a controller never selects everything.
pub fn controller_selector(selector: &LabelSelector) -> Option<Selector> {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        return None;
    }
    Selector::try_from(selector.clone()).ok()
}

/// Whether `labels` match a compiled controller selector.
pub fn selects(selector: Option<&Selector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| s.matches(labels))
}

/// What a controller finds among the candidates of its namespace.
#[derive(Debug)]
pub struct Claim<'a, K> {
    /// Controlled by it and still selected (or all it controls while it is being deleted).
    pub owned: Vec<&'a K>,
    /// Selected orphans, not being deleted, to take (not in `owned` until adopted).
    pub adopt: Vec<&'a K>,
    /// Controlled by it but no longer selected, to let go.
    pub release: Vec<&'a K>,
}

/// Sorts `candidates` for the controller `owner`: what it owns, what it adopts and what it
/// releases. An object is selected when `selector` matches its labels and `member` holds;
/// objects of another controller are left alone, and an owner being deleted keeps what it
/// controls and adopts nothing (upstream's `ClaimObject`).
///
/// Candidates may be objects or shared (`Arc`) ones; the claim holds them as given.
pub fn claim<'a, K, T>(
    owner: &ObjectMeta,
    selector: Option<&Selector>,
    candidates: impl IntoIterator<Item = &'a T>,
    member: impl Fn(&K) -> bool,
) -> Claim<'a, T>
where
    K: kube::Resource,
    T: std::borrow::Borrow<K> + 'a,
{
    let uid = owner.uid.as_deref().unwrap_or("");
    let deleting = owner.deletion_timestamp.is_some();
    let empty = BTreeMap::new();
    let mut claimed = Claim {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for object in candidates {
        let meta = object.borrow().meta();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        let matches = selects(selector, labels) && member(object.borrow());
        match controller_of(meta) {
            Some(r) if r.uid == uid => {
                if matches || deleting {
                    claimed.owned.push(object);
                } else {
                    claimed.release.push(object);
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && meta.deletion_timestamp.is_none() {
                    claimed.adopt.push(object);
                }
            }
        }
    }
    claimed
}

/// Patches the controller reference `owner` onto `adopt` and off `release`; `decorate` may
/// add to an adoption's patch (the Job controller's finalizer). An object already gone is
/// skipped; the others are all tried. Returns the adopted objects as written and the first
/// error.
pub async fn adopt_and_release<'a, K>(
    api: &Api<K>,
    owner: &OwnerReference,
    adopt: impl IntoIterator<Item = &'a K>,
    release: impl IntoIterator<Item = &'a K>,
    decorate: impl Fn(&K, &mut serde_json::Value),
) -> (Vec<K>, Option<kube::Error>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'a,
{
    let mut adopted = Vec::new();
    let mut failure = None;
    let adoptions = adopt.into_iter().map(|o| (o, true));
    for (object, take) in adoptions.chain(release.into_iter().map(|o| (o, false))) {
        let mut patch = ownership_patch(object.meta(), owner, take);
        if take {
            decorate(object, &mut patch);
        }
        match api
            .patch(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(written) if take => adopted.push(written),
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (adopted, failure)
}

/// What `create_slow_start` made.
#[derive(Debug, Default)]
pub struct Created {
    /// The pods created, as the server returned them.
    pub pods: Vec<Pod>,
    /// The first failure, after which nothing more was tried.
    pub error: Option<kube::Error>,
}

/// Creates `pods` in batches of 1, 2, 4, …, each batch at once, stopping after the first
/// batch with a failure (upstream's slow start, so a quota or admission refusal costs one
/// request, not hundreds). Records SuccessfulCreate or FailedCreate on `reference` for each;
/// errors `skip` says are expected (a namespace being deleted) are neither recorded nor
/// failures.
pub async fn create_slow_start(
    api: &Api<Pod>,
    pods: Vec<Pod>,
    recorder: &EventRecorder,
    reference: &ObjectReference,
    skip: impl Fn(&kube::Error) -> bool,
) -> Created {
    let mut created = Created::default();
    let mut rest = pods.as_slice();
    let mut batch = 1;
    while !rest.is_empty() && created.error.is_none() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        rest = later;
        batch *= 2;
        let params = PostParams::default();
        let results =
            futures::future::join_all(now.iter().map(|pod| api.create(&params, pod))).await;
        for result in results {
            match result {
                Ok(pod) => {
                    recorder
                        .record(
                            reference,
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("Created pod: {}", pod.name_any()),
                        )
                        .await;
                    created.pods.push(pod);
                }
                Err(e) if skip(&e) => {}
                Err(e) => {
                    recorder
                        .record(
                            reference,
                            EventType::Warning,
                            "FailedCreate",
                            "Create",
                            format!("Error creating: {e}"),
                        )
                        .await;
                    created.error.get_or_insert(e);
                }
            }
        }
    }
    created
}

/// What `delete_recorded` deleted.
#[derive(Debug, Default)]
pub struct Deleted {
    /// The uids of the pods deleted.
    pub uids: Vec<String>,
    /// The first failure.
    pub error: Option<kube::Error>,
}

/// Deletes `pods` at once, each only if it is still the same pod (uid precondition), and
/// records SuccessfulDelete/FailedDelete events as upstream's pod control does; a pod
/// already gone is no failure and no event.
pub async fn delete_recorded(
    api: &Api<Pod>,
    pods: &[&Pod],
    recorder: &EventRecorder,
    reference: &ObjectReference,
) -> Deleted {
    let results = futures::future::join_all(pods.iter().map(|pod| {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        async move { (*pod, api.delete(&pod.name_any(), &params).await) }
    }))
    .await;
    let mut deleted = Deleted::default();
    for (pod, result) in results {
        match result {
            Ok(_) => {
                deleted.uids.extend(pod.metadata.uid.clone());
                recorder
                    .record(
                        reference,
                        EventType::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {}", pod.name_any()),
                    )
                    .await;
            }
            Err(e) if not_found(&e) => {}
            Err(e) => {
                recorder
                    .record(
                        reference,
                        EventType::Warning,
                        "FailedDelete",
                        "Delete",
                        format!("Error deleting: {e}"),
                    )
                    .await;
                deleted.error.get_or_insert(e);
            }
        }
    }
    deleted
}

/// A pod for `template`, named `<prefix><random>` by the server, owned by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The order in which surplus pods are deleted: the ones that cost least to lose come first
/// (unscheduled before scheduled, pending before running, not ready before ready, more
/// restarts before fewer, newer before older).
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

#[cfg(test)]
pub mod fixtures {
    //! Builders for pods in controller tests.
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                creation_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        }
    }

    pub fn ready(mut pod: Pod, since: Timestamp) -> Pod {
        let status = pod.status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..PodCondition::default()
        }]);
        pod
    }

    pub fn owned_by(mut pod: Pod, owner: &OwnerReference) -> Pod {
        pod.metadata.owner_references = Some(vec![owner.clone()]);
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let p = ready(pod("a", &[]), t0);
        assert!(is_available(&p, 0, t0));
        assert!(!is_available(
            &p,
            10,
            t0 + jiff::SignedDuration::from_secs(9)
        ));
        assert!(is_available(
            &p,
            10,
            t0 + jiff::SignedDuration::from_secs(10)
        ));
        assert!(!is_available(&pod("b", &[]), 0, t0));
    }

    #[test]
    fn selectors_match_labels_and_expressions_and_empty_matches_nothing() {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let by_label = LabelSelector {
            match_labels: Some(labels.clone()),
            ..LabelSelector::default()
        };
        let compiled = controller_selector(&by_label);
        assert!(selects(compiled.as_ref(), &labels));
        assert!(!selects(compiled.as_ref(), &BTreeMap::new()));
        assert!(controller_selector(&LabelSelector::default()).is_none());
    }

    #[test]
    fn claims_adopt_matching_orphans_and_release_mismatches() {
        let meta = ObjectMeta {
            uid: Some("ds-uid".into()),
            ..ObjectMeta::default()
        };
        let selector = Selector::from_iter([("app", "agent")]);
        let owner = controller_ref("apps/v1", "DaemonSet", &meta);
        let orphan = pod("orphan", &[("app", "agent")]);
        let relabeled = owned_by(pod("relabeled", &[("app", "debug")]), &owner);
        let mine = owned_by(pod("mine", &[("app", "agent")]), &owner);
        let mut going = pod("going", &[("app", "agent")]);
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        let candidates = [orphan, relabeled, mine, going];
        let c = claim::<Pod, _>(&meta, Some(&selector), &candidates, |_| true);
        let n = |v: &[&Pod]| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(n(&c.owned), ["mine"]);
        assert_eq!(n(&c.adopt), ["orphan"]);
        assert_eq!(n(&c.release), ["relabeled"]);
        // An owner being deleted keeps what it controls and adopts nothing.
        let mut deleting = meta.clone();
        deleting.deletion_timestamp = candidates[3].metadata.deletion_timestamp.clone();
        let c = claim(&deleting, Some(&selector), &candidates, |_| true);
        assert_eq!(n(&c.owned), ["relabeled", "mine"]);
        assert!(c.adopt.is_empty() && c.release.is_empty());
    }

    #[test]
    fn unready_and_unscheduled_pods_are_deleted_first() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let mut scheduled = ready(pod("running", &[]), t0);
        scheduled.spec.as_mut().unwrap().node_name = Some("n1".into());
        let pending = pod("pending", &[]);
        let mut pods = [scheduled, pending];
        pods.sort_by(deletion_order);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("pending"));
    }
}
