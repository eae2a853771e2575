//! Template history as ControllerRevisions, shared by the DaemonSet and StatefulSet
//! controllers (upstream's `pkg/controller/history`), and the template hash that names
//! revisions and a Deployment's ReplicaSets.
//!
//! A revision records its owner's pod template as the strategic merge patch that puts it
//! back (`{"spec":{"template":{…, "$patch":"replace"}}}`), in the shape Go gives the template,
//! so `kubectl rollout undo` finds a revision equal to the live template and says it already
//! matches. The update revision is the newest revision recording the current template,
//! renumbered to the newest when an older one does (a rollback) and created when none does;
//! a name taken by a revision with another template is a hash collision, resolved by counting
//! it and hashing again. Revisions beyond `revisionHistoryLimit` go oldest first, except the
//! ones in use.
//!
//! Everything here is pure except `settle_update_revision`, which writes the revision it
//! settles on.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::ReconcileError;
use crate::api_errors::is_status;
use crate::pods;

/// Revision names keep at most this much of the owner's name before the hash.
const MAX_REVISION_PREFIX: usize = 223;

/// The name-safe alphabet upstream encodes hashes with (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of a template: FNV-1a over its canonical JSON and the collision count, spelled in
/// the name-safe alphabet (a Deployment's `pod-template-hash`, a revision's name suffix).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    // Each decimal digit maps into the alphabet by its character code, as upstream does.
    hash.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[d as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The object whose template history is kept.
#[derive(Debug, Clone, Copy)]
pub struct RevisionOwner<'a> {
    /// `DaemonSet` or `StatefulSet` (the owner reference's kind, group `apps/v1`).
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    pub template: &'a PodTemplateSpec,
    /// The label a revision carries its hash in.
    pub hash_label: &'static str,
    /// `status.collisionCount` as the owner hashes it.
    pub collision_count: Option<i32>,
}

impl RevisionOwner<'_> {
    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// The hash naming the revision of the current template.
    pub fn hash(&self) -> String {
        template_hash(self.template, self.collision_count)
    }
}

/// Go's JSON for a pod template, as kubectl and upstream controllers serialize one: the
/// template's `metadata` always present with `creationTimestamp: null`, every container with
/// `resources` (Go cannot omit empty structs). Revision data must look like kubectl's own
/// rendering for `kubectl rollout undo` to see a match.
fn go_template_json(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    let Some(obj) = value.as_object_mut() else {
        return json!({});
    };
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    for container in containers_of(spec) {
        container.entry("resources").or_insert_with(|| json!({}));
    }
    value
}

fn containers_of(spec: &mut Value) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    let spec = spec.as_object_mut();
    spec.into_iter()
        .flat_map(|spec| spec.iter_mut())
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "initContainers" | "containers" | "ephemeralContainers"
            )
        })
        .filter_map(|(_, list)| list.as_array_mut())
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// A revision's `data`: the strategic merge patch that puts `template` back in its owner,
/// `{"spec":{"template":{..., "$patch":"replace"}}}`, which `kubectl rollout undo` sends and
/// `kubectl rollout history --revision` applies.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = go_template_json(template);
    if let Some(obj) = template.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision records, without what Go's rendering added (an empty
/// `resources` is the same as none).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    if let Some(spec) = template.get_mut("spec") {
        for container in containers_of(spec) {
            if container
                .get("resources")
                .and_then(Value::as_object)
                .is_some_and(serde_json::Map::is_empty)
            {
                container.remove("resources");
            }
        }
    }
    serde_json::from_value(template).ok()
}

/// Whether a revision records `template`: its data is the template's, or it decodes to the
/// template (a revision written before its data took Go's shape).
pub fn revision_matches(template: &PodTemplateSpec, revision: &ControllerRevision) -> bool {
    let wanted = revision_data(template);
    revision.data.as_ref().is_some_and(|data| data.0 == wanted)
        || template_of(revision).is_some_and(|t| revision_data(&t) == wanted)
}

/// The hash a revision carries in `label`.
pub fn revision_hash<'a>(revision: &'a ControllerRevision, label: &str) -> Option<&'a str> {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(label))
        .map(String::as_str)
}

/// The revision of the owner's current template, numbered `number`: named
/// `<owner>-<hash>`, labelled with the template's labels and the hash, carrying the owner's
/// annotations, controlled by the owner.
pub fn new_revision(owner: &RevisionOwner, number: i64) -> ControllerRevision {
    let hash = owner.hash();
    let mut labels: BTreeMap<String, String> = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(owner.hash_label.into(), hash.clone());
    let prefix: String = owner.name().chars().take(MAX_REVISION_PREFIX).collect();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}-{hash}")),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone(),
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1", owner.kind, owner.meta,
            )]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(revision_data(owner.template))),
        revision: number,
    }
}

/// Orders revisions oldest first: by revision number, then creation time, then name.
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let at =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                at(a).cmp(&at(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Which revision the owner's current template is.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already records it (its index).
    Latest(usize),
    /// An older revision records it (a rollback): it is renumbered to `revision`.
    Renumber { index: usize, revision: i64 },
    /// No revision records it: this one is created.
    Create(Box<ControllerRevision>),
}

/// Finds or makes the revision of the owner's template among its revisions (sorted oldest
/// first). Among several recording it, the newest is the one.
pub fn choose_update_revision(
    owner: &RevisionOwner,
    revisions: &[ControllerRevision],
) -> UpdateRevision {
    let next = revisions.last().map_or(1, |r| r.revision + 1);
    let last_equal = revisions
        .iter()
        .rposition(|r| revision_matches(owner.template, r));
    match last_equal {
        Some(i) if i + 1 == revisions.len() => UpdateRevision::Latest(i),
        Some(index) => UpdateRevision::Renumber {
            index,
            revision: next,
        },
        None => UpdateRevision::Create(Box::new(new_revision(owner, next))),
    }
}

/// The update revision as written.
#[derive(Debug, Clone)]
pub struct Settled {
    pub revision: ControllerRevision,
    /// Its index among the revisions it was chosen from (`None` when it was created).
    pub index: Option<usize>,
    /// The collision count it took, for the owner's status.
    pub collision_count: Option<i32>,
}

/// Finds, renumbers or creates the update revision among `revisions` (the owner's, sorted
/// oldest first). A name taken by a revision with another template counts as a collision:
/// the count goes up and the template is hashed again, until a name is free or holds this
/// template. The caller writes the returned collision count to the owner's status.
pub async fn settle_update_revision(
    api: &Api<ControllerRevision>,
    owner: &RevisionOwner<'_>,
    revisions: &[ControllerRevision],
) -> Result<Settled, ReconcileError> {
    match choose_update_revision(owner, revisions) {
        UpdateRevision::Latest(i) => Ok(Settled {
            revision: revisions[i].clone(),
            index: Some(i),
            collision_count: owner.collision_count,
        }),
        UpdateRevision::Renumber { index, revision } => {
            let existing = &revisions[index];
            let patch = json!({"revision": revision});
            let renumbered = api
                .patch(
                    &existing.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            Ok(Settled {
                revision: renumbered,
                index: Some(index),
                collision_count: owner.collision_count,
            })
        }
        UpdateRevision::Create(candidate) => {
            let number = candidate.revision;
            let mut candidate = *candidate;
            let mut owner = *owner;
            // Bounded: each round needs a distinct revision already holding the name.
            for _ in 0..64 {
                match api.create(&PostParams::default(), &candidate).await {
                    Ok(created) => {
                        return Ok(Settled {
                            revision: created,
                            index: None,
                            collision_count: owner.collision_count,
                        });
                    }
                    Err(e) if is_status(&e, 409) => {
                        let existing = api.get(&candidate.name_any()).await?;
                        if revision_matches(owner.template, &existing) {
                            return Ok(Settled {
                                revision: existing,
                                index: None,
                                collision_count: owner.collision_count,
                            });
                        }
                        owner.collision_count = Some(owner.collision_count.unwrap_or(0) + 1);
                        candidate = new_revision(&owner, number);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(ReconcileError::Retry(format!(
                "no free revision name for {} {}",
                owner.kind,
                owner.name()
            )))
        }
    }
}

/// The names of the revisions to delete so that at most `limit` of `counted` (sorted oldest
/// first) remain: the oldest ones not `in_use`. Which revisions count toward the limit is the
/// owner's call (the DaemonSet counts every old one, in use or not; the StatefulSet only the
/// ones no pod and neither its current nor update revision uses, as upstream).
pub fn history_to_delete(
    counted: &[&ControllerRevision],
    limit: i32,
    in_use: impl Fn(&ControllerRevision) -> bool,
) -> Vec<String> {
    let mut excess = counted.len().saturating_sub(limit.max(0) as usize);
    let mut doomed = Vec::new();
    for r in counted {
        if excess == 0 {
            break;
        }
        if in_use(r) {
            continue;
        }
        doomed.push(r.name_any());
        excess -= 1;
    }
    doomed
}

#[cfg(test)]
pub mod fixtures {
    //! Owners and templates for revision tests.
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    pub fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    pub fn owner_meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("owner-uid".into()),
            annotations: Some(
                [("kubernetes.io/change-cause".to_owned(), "deploy".to_owned())].into(),
            ),
            ..ObjectMeta::default()
        }
    }

    pub fn owner<'a>(meta: &'a ObjectMeta, template: &'a PodTemplateSpec) -> RevisionOwner<'a> {
        RevisionOwner {
            kind: "StatefulSet",
            meta,
            template,
            hash_label: "controller.kubernetes.io/hash",
            collision_count: Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn template_hashes_are_stable_name_safe_and_change_with_the_template() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
    }

    #[test]
    fn revisions_record_the_template_as_a_replacing_patch_in_gos_shape() {
        let meta = owner_meta();
        let t = template("nginx:2");
        let o = owner(&meta, &t);
        let r = new_revision(&o, 4);
        let hash = template_hash(&t, Some(0));
        assert_eq!(r.name_any(), format!("web-{hash}"));
        assert_eq!(r.revision, 4);
        let labels = r.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(revision_hash(&r, o.hash_label), Some(hash.as_str()));
        let annotations = r.metadata.annotations.as_ref().unwrap();
        assert!(annotations.contains_key("kubernetes.io/change-cause"));
        let owner_ref = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner_ref.kind.as_str(),
                owner_ref.uid.as_str(),
                owner_ref.controller
            ),
            ("StatefulSet", "owner-uid", Some(true))
        );
        assert_eq!(
            &r.data.as_ref().unwrap().0,
            &json!({"spec": {"template": {
                "$patch": "replace",
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:2", "resources": {}}]},
            }}})
        );
        assert_eq!(template_of(&r), Some(t.clone()));
        assert!(revision_matches(&t, &r));
        assert!(!revision_matches(&template("nginx:3"), &r));
        let mut collided = o;
        collided.collision_count = Some(1);
        assert_ne!(new_revision(&collided, 4).name_any(), r.name_any());
    }

    #[test]
    fn revisions_written_before_gos_shape_still_match() {
        let t = template("nginx:1");
        let mut r = new_revision(&owner(&owner_meta(), &t), 1);
        let mut plain = serde_json::to_value(&t).unwrap();
        plain["$patch"] = json!("replace");
        r.data = Some(RawExtension(json!({"spec": {"template": plain}})));
        assert!(revision_matches(&t, &r));
    }

    fn stored(image: &str, revision: i64) -> ControllerRevision {
        new_revision(&owner(&owner_meta(), &template(image)), revision)
    }

    #[test]
    fn the_update_revision_is_reused_renumbered_or_created() {
        let meta = owner_meta();
        let t = template("nginx:1");
        let o = owner(&meta, &t);
        match choose_update_revision(&o, &[]) {
            UpdateRevision::Create(r) => assert_eq!(r.revision, 1),
            other => panic!("{other:?}"),
        }
        let history = [stored("nginx:1", 1), stored("nginx:2", 2)];
        assert_eq!(
            choose_update_revision(&owner(&meta, &template("nginx:2")), &history),
            UpdateRevision::Latest(1)
        );
        let history = [stored("nginx:2", 1), stored("nginx:1", 2)];
        assert_eq!(
            choose_update_revision(&owner(&meta, &template("nginx:2")), &history),
            UpdateRevision::Renumber {
                index: 0,
                revision: 3
            }
        );
        let history = [stored("nginx:1", 1), stored("nginx:3", 2)];
        match choose_update_revision(&owner(&meta, &template("nginx:2")), &history) {
            UpdateRevision::Create(r) => assert_eq!(r.revision, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_unless_in_use() {
        let mut old: Vec<ControllerRevision> =
            (1..=4).map(|n| stored(&format!("nginx:{n}"), n)).collect();
        sort_revisions(&mut old);
        let names: Vec<String> = old.iter().map(|r| r.name_any()).collect();
        let counted: Vec<&ControllerRevision> = old.iter().collect();
        let in_use = |r: &ControllerRevision| r.name_any() == names[0];
        assert_eq!(
            history_to_delete(&counted, 2, in_use),
            [names[1].clone(), names[2].clone()]
        );
        assert!(history_to_delete(&counted, 10, in_use).is_empty());
        assert_eq!(history_to_delete(&counted, 0, |_| false).len(), 4);
    }
}
