//! InterPodAffinity: the incoming pod's required pod affinity and anti-affinity, existing pods'
//! required anti-affinity against the incoming pod (symmetry), and the score from preferred
//! terms on both sides plus existing pods' required affinity (upstream's
//! `hardPodAffinityWeight`).
//!
//! [`prepare`] walks every node's pods once and counts, per topology pair (label key and
//! value), the pods matching each side's terms; [`filter`] and [`scores`] then only look up
//! the node's labels, so a node check costs O(terms + node labels), never O(pods).
//!
//! Semantics follow upstream: a nil `labelSelector` selects no pod and an empty one every pod;
//! no `namespaces` and no `namespaceSelector` means the term owner's namespace; an empty
//! `namespaceSelector` means every namespace. `matchLabelKeys` and `mismatchLabelKeys` are
//! merged into the selector (`key in (value)` / `key notin (value)` with the owner's label
//! values), as upstream's API server does when it admits a pod; merging again is harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use kube::ResourceExt;
use kube::core::labels::{Expression, Selector, SelectorExt};

use crate::cache::NodeInfo;

/// Upstream's weight for InterPodAffinity in the default profile.
pub const WEIGHT: i64 = 2;
/// Upstream's default `hardPodAffinityWeight`: what an existing pod's required affinity term
/// matching the incoming pod adds to its topology domain's score.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;
/// The best score a node gets (upstream's 100, times 100).
pub const MAX_SCORE: i64 = 10_000;

pub const AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Namespace name → its labels, for `namespaceSelector`.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// topology key → topology value → count (or score).
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

/// What one pod's affinity term selects, parsed once.
#[derive(Debug, Clone)]
struct Term {
    /// `None`: a nil selector, which selects nothing.
    selector: Option<Selector>,
    namespaces: BTreeSet<String>,
    /// `None`: no namespace selector, which selects nothing beyond `namespaces`.
    namespace_selector: Option<Selector>,
    topology_key: String,
}

impl Term {
    fn new(term: &PodAffinityTerm, owner: &Pod) -> Result<Term, String> {
        let selector = match &term.label_selector {
            None => None,
            Some(selector) => {
                let mut selector =
                    Selector::try_from(selector.clone()).map_err(|e| e.to_string())?;
                let labels = owner.labels();
                for key in term.match_label_keys.iter().flatten() {
                    if let Some(value) = labels.get(key) {
                        selector
                            .extend(Expression::In(key.clone(), BTreeSet::from([value.clone()])));
                    }
                }
                for key in term.mismatch_label_keys.iter().flatten() {
                    if let Some(value) = labels.get(key) {
                        selector.extend(Expression::NotIn(
                            key.clone(),
                            BTreeSet::from([value.clone()]),
                        ));
                    }
                }
                Some(selector)
            }
        };
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([namespace_of(owner).to_owned()])
        } else {
            listed.into_iter().collect()
        };
        let namespace_selector = term
            .namespace_selector
            .clone()
            .map(Selector::try_from)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Term {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` is one of the pods this term selects. `namespace_labels` are the labels of
    /// `pod`'s namespace, `None` when that namespace is unknown (then only an empty namespace
    /// selector lets it in).
    fn matches(&self, pod: &Pod, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        let in_namespace = self.namespaces.contains(namespace_of(pod))
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.selects_all() || namespace_labels.is_some_and(|l| s.matches(l)));
        in_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(pod.labels()))
    }
}

/// A pod's pod-affinity terms, parsed.
#[derive(Debug, Default)]
struct PodTerms {
    required_affinity: Vec<Term>,
    required_anti_affinity: Vec<Term>,
    preferred_affinity: Vec<(i64, Term)>,
    preferred_anti_affinity: Vec<(i64, Term)>,
}

impl PodTerms {
    /// Parses `pod`'s terms; a term that does not parse is left out and its error pushed.
    fn of(pod: &Pod, errors: &mut Vec<String>) -> PodTerms {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let positive = affinity.and_then(|a| a.pod_affinity.as_ref());
        let negative = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let mut required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
            terms
                .into_iter()
                .flatten()
                .filter_map(|t| Term::new(t, pod).map_err(|e| errors.push(e)).ok())
                .collect()
        };
        let required_affinity = required(positive.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = required(negative.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let mut preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<(i64, Term)> {
            terms
                .into_iter()
                .flatten()
                .filter_map(|w| {
                    Term::new(&w.pod_affinity_term, pod)
                        .map(|t| (i64::from(w.weight), t))
                        .map_err(|e| errors.push(e))
                        .ok()
                })
                .collect()
        };
        let preferred_affinity = preferred(positive.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = preferred(negative.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        PodTerms {
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
        }
    }
}

/// The per-pod state [`filter`] and [`scores`] read, built by [`prepare`].
#[derive(Debug, Default)]
pub struct AffinityState {
    /// The incoming pod's required affinity terms.
    affinity_terms: Vec<Term>,
    /// The incoming pod's required anti-affinity terms.
    anti_affinity_terms: Vec<Term>,
    /// Whether the incoming pod matches all its own required affinity terms.
    matches_own_affinity: bool,
    /// Pods matching all the incoming pod's required affinity terms, per topology pair of
    /// each term.
    affinity_counts: TopologyCounts,
    /// Pods matching one of the incoming pod's required anti-affinity terms.
    anti_affinity_counts: TopologyCounts,
    /// Existing pods' required anti-affinity terms matching the incoming pod.
    existing_anti_affinity_counts: TopologyCounts,
    /// Summed weights per topology pair, for scoring.
    topology_score: TopologyCounts,
    /// Why the incoming pod's own terms cannot be used (a selector that does not parse).
    invalid: Option<String>,
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

fn add(counts: &mut TopologyCounts, key: &str, value: &str, by: i64) {
    *counts
        .entry(key.to_owned())
        .or_default()
        .entry(value.to_owned())
        .or_default() += by;
}

fn count_at(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts
        .get(key)
        .and_then(|values| values.get(value))
        .copied()
        .unwrap_or(0)
}

/// Whether a pod has pod affinity or anti-affinity terms.
pub fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// One pass over every node's pods: what the incoming pod's terms select, which existing pods'
/// anti-affinity terms select the incoming pod, and the score per topology pair. `nodes` are
/// all nodes (not only feasible ones): pods anywhere define the topology domains.
pub fn prepare(pod: &Pod, nodes: &[NodeInfo], namespace_labels: &NamespaceLabels) -> AffinityState {
    let mut errors = Vec::new();
    let own = PodTerms::of(pod, &mut errors);
    let own_namespace_labels = namespace_labels.get(namespace_of(pod));
    // Existing pods' namespace selectors are matched against the incoming pod's namespace;
    // an unknown namespace has no labels.
    let no_labels = BTreeMap::new();
    let incoming_namespace_labels = own_namespace_labels.unwrap_or(&no_labels);
    let mut state = AffinityState {
        matches_own_affinity: !own.required_affinity.is_empty()
            && own
                .required_affinity
                .iter()
                .all(|t| t.matches(pod, own_namespace_labels)),
        invalid: (!errors.is_empty())
            .then(|| format!("invalid pod affinity term: {}", errors.join("; "))),
        ..AffinityState::default()
    };
    let mut ignored = Vec::new();
    for info in nodes {
        let node_labels = info.node.labels();
        if node_labels.is_empty() {
            // No topology label: nothing on this node counts towards any domain.
            continue;
        }
        for existing in &info.pods {
            let existing_namespace_labels = namespace_labels.get(namespace_of(existing));
            let selected = |t: &Term| t.matches(existing, existing_namespace_labels);
            if !own.required_affinity.is_empty() && own.required_affinity.iter().all(selected) {
                for t in &own.required_affinity {
                    if let Some(value) = node_labels.get(&t.topology_key) {
                        add(&mut state.affinity_counts, &t.topology_key, value, 1);
                    }
                }
            }
            for t in &own.required_anti_affinity {
                if let Some(value) = node_labels.get(&t.topology_key)
                    && selected(t)
                {
                    add(&mut state.anti_affinity_counts, &t.topology_key, value, 1);
                }
            }
            let preferred = own
                .preferred_affinity
                .iter()
                .map(|(w, t)| (*w, t))
                .chain(own.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t)));
            for (weight, t) in preferred {
                if let Some(value) = node_labels.get(&t.topology_key)
                    && selected(t)
                {
                    add(&mut state.topology_score, &t.topology_key, value, weight);
                }
            }
            if !has_pod_affinity(existing) {
                continue;
            }
            // Existing pods' terms that do not parse select nothing.
            let theirs = PodTerms::of(existing, &mut ignored);
            ignored.clear();
            let selects_incoming = |t: &Term| t.matches(pod, Some(incoming_namespace_labels));
            for t in &theirs.required_anti_affinity {
                if let Some(value) = node_labels.get(&t.topology_key)
                    && selects_incoming(t)
                {
                    add(
                        &mut state.existing_anti_affinity_counts,
                        &t.topology_key,
                        value,
                        1,
                    );
                }
            }
            let weighted = theirs
                .required_affinity
                .iter()
                .map(|t| (HARD_POD_AFFINITY_WEIGHT, t))
                .chain(theirs.preferred_affinity.iter().map(|(w, t)| (*w, t)))
                .chain(theirs.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t)));
            for (weight, t) in weighted {
                if weight != 0
                    && let Some(value) = node_labels.get(&t.topology_key)
                    && selects_incoming(t)
                {
                    add(&mut state.topology_score, &t.topology_key, value, weight);
                }
            }
        }
    }
    state.affinity_terms = own.required_affinity;
    state.anti_affinity_terms = own.required_anti_affinity;
    state
}

/// Whether `node` satisfies the incoming pod's required affinity: every term's topology label
/// is on the node and its domain holds a pod matching all terms — or no pod anywhere matches
/// them and the pod matches its own terms (the first of a group that attracts itself).
fn satisfies_affinity(state: &AffinityState, labels: &BTreeMap<String, String>) -> bool {
    let mut pods_exist = true;
    for t in &state.affinity_terms {
        let Some(value) = labels.get(&t.topology_key) else {
            return false;
        };
        if count_at(&state.affinity_counts, &t.topology_key, value) <= 0 {
            pods_exist = false;
        }
    }
    pods_exist || (state.affinity_counts.is_empty() && state.matches_own_affinity)
}

fn satisfies_anti_affinity(state: &AffinityState, labels: &BTreeMap<String, String>) -> bool {
    state.anti_affinity_terms.iter().all(|t| {
        labels
            .get(&t.topology_key)
            .is_none_or(|value| count_at(&state.anti_affinity_counts, &t.topology_key, value) <= 0)
    })
}

fn satisfies_existing_anti_affinity(
    state: &AffinityState,
    labels: &BTreeMap<String, String>,
) -> bool {
    state.existing_anti_affinity_counts.is_empty()
        || labels
            .iter()
            .all(|(k, v)| count_at(&state.existing_anti_affinity_counts, k, v) <= 0)
}

/// Whether the incoming pod may go to `node` as far as pod (anti-)affinity decides, with
/// upstream's reason when not (checked in upstream's order).
pub fn filter(state: &AffinityState, _pod: &Pod, node: &NodeInfo) -> Result<(), String> {
    if let Some(why) = &state.invalid {
        return Err(why.clone());
    }
    let labels = node.node.labels();
    if !satisfies_affinity(state, labels) {
        return Err(AFFINITY_RULES_NOT_MATCH.to_owned());
    }
    if !satisfies_anti_affinity(state, labels) {
        return Err(ANTI_AFFINITY_RULES_NOT_MATCH.to_owned());
    }
    if !satisfies_existing_anti_affinity(state, labels) {
        return Err(EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH.to_owned());
    }
    Ok(())
}

/// The score of each feasible node (0–[`MAX_SCORE`], in `feasible`'s order): the summed
/// weights of the node's topology domains, normalized min–max over the feasible nodes as
/// upstream does (all 0 when they are equal). Multiply by [`WEIGHT`] when summing plugins.
pub fn scores(state: &AffinityState, _pod: &Pod, feasible: &[&NodeInfo]) -> Vec<i64> {
    let raw: Vec<i64> = feasible
        .iter()
        .map(|info| {
            let labels = info.node.labels();
            state
                .topology_score
                .iter()
                .filter_map(|(key, values)| labels.get(key).and_then(|v| values.get(v)))
                .sum()
        })
        .collect();
    let (Some(min), Some(max)) = (raw.iter().min().copied(), raw.iter().max().copied()) else {
        return raw;
    };
    let spread = max - min;
    raw.iter()
        .map(|s| {
            if spread > 0 {
                (MAX_SCORE as f64 * ((s - min) as f64 / spread as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, Node, PodAffinity, PodAntiAffinity, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::sync::Arc;

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A node named `name` with its hostname label and, unless empty, a zone.
    fn node(name: &str, zone: &str) -> NodeInfo {
        let mut l = labels(&[(HOST, name)]);
        if !zone.is_empty() {
            l.insert(ZONE.into(), zone.into());
        }
        NodeInfo::new(Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }))
    }

    fn pod(name: &str, namespace: &str, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(labels(&[("app", app)])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: None,
        }
    }

    fn term(app: &str, topology_key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", app)])),
                ..LabelSelector::default()
            }),
            topology_key: topology_key.into(),
            ..PodAffinityTerm::default()
        }
    }

    fn affinity(p: &mut Pod) -> &mut Affinity {
        p.spec
            .get_or_insert_default()
            .affinity
            .get_or_insert_default()
    }

    fn require_affinity(mut p: Pod, t: PodAffinityTerm) -> Pod {
        affinity(&mut p)
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(t);
        p
    }

    fn require_anti_affinity(mut p: Pod, t: PodAffinityTerm) -> Pod {
        affinity(&mut p)
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(t);
        p
    }

    fn prefer(mut p: Pod, weight: i32, t: PodAffinityTerm, anti: bool) -> Pod {
        let weighted = WeightedPodAffinityTerm {
            pod_affinity_term: t,
            weight,
        };
        let a = affinity(&mut p);
        let list = if anti {
            a.pod_anti_affinity
                .get_or_insert_with(PodAntiAffinity::default)
                .preferred_during_scheduling_ignored_during_execution
                .get_or_insert_default()
        } else {
            a.pod_affinity
                .get_or_insert_with(PodAffinity::default)
                .preferred_during_scheduling_ignored_during_execution
                .get_or_insert_default()
        };
        list.push(weighted);
        p
    }

    fn place(nodes: &mut [NodeInfo], on: usize, p: Pod) {
        nodes[on].add_pod(Arc::new(p));
    }

    /// The filter outcome per node, by name.
    fn outcomes(
        p: &Pod,
        nodes: &[NodeInfo],
        ns: &NamespaceLabels,
    ) -> Vec<(String, Result<(), String>)> {
        let state = prepare(p, nodes, ns);
        nodes
            .iter()
            .map(|n| (n.node.name_any(), filter(&state, p, n)))
            .collect()
    }

    fn ok(name: &str) -> (String, Result<(), String>) {
        (name.to_owned(), Ok(()))
    }

    fn err(name: &str, why: &str) -> (String, Result<(), String>) {
        (name.to_owned(), Err(why.to_owned()))
    }

    #[test]
    fn required_affinity_is_satisfied_only_in_the_zone_of_a_matching_pod() {
        let mut nodes = vec![
            node("a1", "a"),
            node("a2", "a"),
            node("b1", "b"),
            node("bare", ""),
        ];
        place(&mut nodes, 0, pod("db-0", "default", "db"));
        place(&mut nodes, 2, pod("cache-0", "default", "cache"));
        let web = require_affinity(pod("web", "default", "web"), term("db", ZONE));
        assert_eq!(
            outcomes(&web, &nodes, &NamespaceLabels::new()),
            [
                ok("a1"),
                ok("a2"),
                err("b1", AFFINITY_RULES_NOT_MATCH),
                err("bare", AFFINITY_RULES_NOT_MATCH),
            ]
        );
        // Two terms: both must hold in the node's domains, by one pod matching both.
        let both = require_affinity(web.clone(), term("cache", ZONE));
        let state = prepare(&both, &nodes, &NamespaceLabels::new());
        for n in &nodes {
            assert_eq!(
                filter(&state, &both, n),
                Err(AFFINITY_RULES_NOT_MATCH.to_owned())
            );
        }
    }

    #[test]
    fn required_anti_affinity_on_hostname_keeps_replicas_apart() {
        let mut nodes = vec![node("n1", "a"), node("n2", "a"), node("n3", "b")];
        place(&mut nodes, 0, pod("web-0", "default", "web"));
        place(&mut nodes, 2, pod("web-other-ns", "prod", "web"));
        let web = require_anti_affinity(pod("web-1", "default", "web"), term("web", HOST));
        assert_eq!(
            outcomes(&web, &nodes, &NamespaceLabels::new()),
            [err("n1", ANTI_AFFINITY_RULES_NOT_MATCH), ok("n2"), ok("n3")]
        );
        // Over zones, the whole zone of web-0 is out.
        let zonal = require_anti_affinity(pod("web-1", "default", "web"), term("web", ZONE));
        assert_eq!(
            outcomes(&zonal, &nodes, &NamespaceLabels::new()),
            [
                err("n1", ANTI_AFFINITY_RULES_NOT_MATCH),
                err("n2", ANTI_AFFINITY_RULES_NOT_MATCH),
                ok("n3"),
            ]
        );
    }

    #[test]
    fn existing_pods_anti_affinity_repels_the_incoming_pod() {
        let mut nodes = vec![node("n1", "a"), node("n2", "a"), node("n3", "b")];
        let loner = require_anti_affinity(pod("loner", "default", "db"), term("web", ZONE));
        place(&mut nodes, 0, loner);
        // The incoming pod has no affinity of its own.
        let web = pod("web", "default", "web");
        assert_eq!(
            outcomes(&web, &nodes, &NamespaceLabels::new()),
            [
                err("n1", EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH),
                err("n2", EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH),
                ok("n3"),
            ]
        );
        // The term covers the loner's namespace only.
        let elsewhere = pod("web", "prod", "web");
        assert_eq!(
            outcomes(&elsewhere, &nodes, &NamespaceLabels::new()),
            [ok("n1"), ok("n2"), ok("n3")]
        );
        // A pod it does not select is welcome.
        assert_eq!(
            outcomes(
                &pod("api", "default", "api"),
                &nodes,
                &NamespaceLabels::new()
            ),
            [ok("n1"), ok("n2"), ok("n3")]
        );
    }

    #[test]
    fn the_first_pod_of_a_self_attracting_group_goes_anywhere_with_the_topology_label() {
        let mut nodes = vec![node("n1", "a"), node("n2", "b"), node("bare", "")];
        let first = require_affinity(pod("db-0", "default", "db"), term("db", ZONE));
        assert_eq!(
            outcomes(&first, &nodes, &NamespaceLabels::new()),
            [ok("n1"), ok("n2"), err("bare", AFFINITY_RULES_NOT_MATCH)]
        );
        // A pod not matching its own term gets no such pass.
        let stranger = require_affinity(pod("web", "default", "web"), term("db", ZONE));
        assert_eq!(
            outcomes(&stranger, &nodes, &NamespaceLabels::new()),
            [
                err("n1", AFFINITY_RULES_NOT_MATCH),
                err("n2", AFFINITY_RULES_NOT_MATCH),
                err("bare", AFFINITY_RULES_NOT_MATCH),
            ]
        );
        // Once one is placed, the next must follow it.
        place(&mut nodes, 1, first.clone());
        assert_eq!(
            outcomes(&first, &nodes, &NamespaceLabels::new()),
            [
                err("n1", AFFINITY_RULES_NOT_MATCH),
                ok("n2"),
                err("bare", AFFINITY_RULES_NOT_MATCH),
            ]
        );
    }

    #[test]
    fn terms_look_in_the_owner_namespace_unless_told_otherwise() {
        let mut nodes = vec![node("n1", "a"), node("n2", "b")];
        place(&mut nodes, 0, pod("db-0", "data", "db"));
        let namespaces = NamespaceLabels::from([
            ("data".to_owned(), labels(&[("team", "storage")])),
            ("default".to_owned(), labels(&[])),
        ]);
        // Same namespace by default: no db pod there, and web does not match its own term.
        let plain = require_affinity(pod("web", "default", "web"), term("db", ZONE));
        assert_eq!(
            outcomes(&plain, &nodes, &namespaces),
            [
                err("n1", AFFINITY_RULES_NOT_MATCH),
                err("n2", AFFINITY_RULES_NOT_MATCH)
            ]
        );
        // Listed namespaces.
        let mut listed = term("db", ZONE);
        listed.namespaces = Some(vec!["data".into()]);
        let by_name = require_affinity(pod("web", "default", "web"), listed);
        assert_eq!(
            outcomes(&by_name, &nodes, &namespaces),
            [ok("n1"), err("n2", AFFINITY_RULES_NOT_MATCH)]
        );
        // A namespace selector over namespace labels.
        let mut selected = term("db", ZONE);
        selected.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "storage")])),
            ..LabelSelector::default()
        });
        let by_label = require_affinity(pod("web", "default", "web"), selected.clone());
        assert_eq!(
            outcomes(&by_label, &nodes, &namespaces),
            [ok("n1"), err("n2", AFFINITY_RULES_NOT_MATCH)]
        );
        selected.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "web")])),
            ..LabelSelector::default()
        });
        let wrong_team = require_affinity(pod("web", "default", "web"), selected.clone());
        assert_eq!(
            outcomes(&wrong_team, &nodes, &namespaces),
            [
                err("n1", AFFINITY_RULES_NOT_MATCH),
                err("n2", AFFINITY_RULES_NOT_MATCH)
            ]
        );
        // An empty namespace selector means every namespace.
        selected.namespace_selector = Some(LabelSelector::default());
        let everywhere = require_affinity(pod("web", "default", "web"), selected);
        assert_eq!(
            outcomes(&everywhere, &nodes, &namespaces),
            [ok("n1"), err("n2", AFFINITY_RULES_NOT_MATCH)]
        );
        // An existing pod's namespace selector is matched against the incoming pod's namespace.
        let mut guard_term = term("web", ZONE);
        guard_term.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "storage")])),
            ..LabelSelector::default()
        });
        place(
            &mut nodes,
            1,
            require_anti_affinity(pod("guard", "default", "db"), guard_term),
        );
        assert_eq!(
            outcomes(&pod("web", "data", "web"), &nodes, &namespaces),
            [ok("n1"), err("n2", EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)]
        );
        assert_eq!(
            outcomes(&pod("web", "default", "web"), &nodes, &namespaces),
            [ok("n1"), ok("n2")]
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_owner_values() {
        let mut nodes = vec![node("n1", "a"), node("n2", "a")];
        let versioned = |name: &str, version: &str| {
            let mut p = pod(name, "default", "web");
            p.metadata
                .labels
                .get_or_insert_default()
                .insert("version".into(), version.into());
            p
        };
        place(&mut nodes, 0, versioned("web-v1", "v1"));
        place(&mut nodes, 1, versioned("web-v2", "v2"));
        let mut t = term("web", HOST);
        t.match_label_keys = Some(vec!["version".into(), "absent".into()]);
        let incoming = require_anti_affinity(versioned("web-v2-b", "v2"), t);
        assert_eq!(
            outcomes(&incoming, &nodes, &NamespaceLabels::new()),
            [ok("n1"), err("n2", ANTI_AFFINITY_RULES_NOT_MATCH)]
        );
        let mut t = term("web", HOST);
        t.mismatch_label_keys = Some(vec!["version".into()]);
        let incoming = require_anti_affinity(versioned("web-v2-b", "v2"), t);
        assert_eq!(
            outcomes(&incoming, &nodes, &NamespaceLabels::new()),
            [err("n1", ANTI_AFFINITY_RULES_NOT_MATCH), ok("n2")]
        );
    }

    #[test]
    fn a_nil_selector_selects_nothing_and_a_bad_one_fails_every_node() {
        let mut nodes = vec![node("n1", "a")];
        place(&mut nodes, 0, pod("web-0", "default", "web"));
        let mut nil = term("web", HOST);
        nil.label_selector = None;
        let p = require_anti_affinity(pod("web-1", "default", "web"), nil);
        assert_eq!(outcomes(&p, &nodes, &NamespaceLabels::new()), [ok("n1")]);
        let mut bad = term("web", HOST);
        bad.label_selector = Some(LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Near".into(),
                    values: None,
                },
            ]),
            ..LabelSelector::default()
        });
        let p = require_anti_affinity(pod("web-1", "default", "web"), bad);
        let outcome = outcomes(&p, &nodes, &NamespaceLabels::new());
        assert!(
            matches!(&outcome[0].1, Err(why) if why.starts_with("invalid pod affinity term")),
            "{outcome:?}"
        );
    }

    #[test]
    fn preferred_terms_score_per_zone_normalized_between_min_and_max() {
        let mut nodes = vec![
            node("n1", "a"),
            node("n2", "a"),
            node("n3", "b"),
            node("n4", "c"),
        ];
        place(&mut nodes, 0, pod("db-0", "default", "db"));
        place(&mut nodes, 2, pod("web-0", "default", "web"));
        let p = prefer(pod("web-1", "default", "web"), 80, term("db", ZONE), false);
        let p = prefer(p, 30, term("web", ZONE), true);
        let state = prepare(&p, &nodes, &NamespaceLabels::new());
        let all: Vec<&NodeInfo> = nodes.iter().collect();
        // Raw: zone a +80, zone b -30, zone c 0; (s - min) / (max - min) × 10,000.
        assert_eq!(scores(&state, &p, &all), [10_000, 10_000, 0, 2727]);
        // Only feasible nodes take part in the normalization.
        assert_eq!(scores(&state, &p, &all[2..]), [0, 10_000]);
        // Equal raw scores give 0.
        let plain = pod("api", "default", "api");
        let state = prepare(&plain, &nodes, &NamespaceLabels::new());
        assert_eq!(scores(&state, &plain, &all), [0, 0, 0, 0]);
    }

    #[test]
    fn existing_pods_terms_score_with_hard_affinity_weight_one() {
        let mut nodes = vec![
            node("n1", "a"),
            node("n2", "a"),
            node("n3", "b"),
            node("n4", "c"),
        ];
        // Wants web on its own host (required): +1 to n3's hostname domain.
        place(
            &mut nodes,
            2,
            require_affinity(pod("sidecar", "default", "agent"), term("web", HOST)),
        );
        // Prefers no web in its zone: -10 to zone a.
        place(
            &mut nodes,
            0,
            prefer(
                pod("quiet", "default", "batch"),
                10,
                term("web", ZONE),
                true,
            ),
        );
        let web = pod("web", "default", "web");
        let state = prepare(&web, &nodes, &NamespaceLabels::new());
        let all: Vec<&NodeInfo> = nodes.iter().collect();
        // Raw n1 -10, n2 -10, n3 +1, n4 0: spread 11.
        assert_eq!(scores(&state, &web, &all), [0, 0, 10_000, 9090]);
        // And its required affinity term does not constrain the incoming pod's filter.
        assert!(nodes.iter().all(|n| filter(&state, &web, n).is_ok()));
    }
}
